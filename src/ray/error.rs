//! What can go wrong talking to a dashboard, and how a dashboard's answer becomes one of these.
//!
//! A real head's error bodies are `text/plain`, often a Python traceback, never JSON; the status code alone can
//! mislead (a duplicate `submission_id` is a 500 wrapping the agent's 400), so the body decides where it can.

use http::StatusCode;

/// How much of a body an error keeps: enough for the last lines of a traceback.
const BODY_LIMIT: usize = 4000;

/// The last line of a real head's answer to a duplicate submission ends with this
/// (`ValueError: Job with submission_id <id> already exists. Please use a different submission_id.`).
const DUPLICATE: &str = " already exists. Please use a different submission_id";
const DUPLICATE_PREFIX: &str = "Job with submission_id ";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RayError {
    /// 404: no such job (`Job <id> does not exist on the cluster`, KubeRay's words), or no such endpoint.
    #[error("{0}")]
    NotFound(String),
    /// The dashboard refused a submission whose `submission_id` it already knows (HTTP 500 on Ray 2.60).
    #[error("Job with submission_id {submission_id} already exists on the cluster")]
    AlreadyExists { submission_id: String },
    /// The dashboard could not be reached, did not answer in time, or a gateway in between said so (502, 503, 504).
    #[error("the Ray dashboard is unavailable: {0}")]
    Unavailable(String),
    /// The dashboard refused the request (any other non-2xx answer), with its body.
    #[error("the Ray dashboard answered {status}: {body}")]
    BadRequest { status: u16, body: String },
    /// An answer the client does not understand, with the body.
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RayError> = std::result::Result<T, E>;

/// Whether a request could not get through (connect failures, timeouts, gateways).
pub fn is_unavailable_status(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// A body as text for an error, cut to its last [`BODY_LIMIT`] bytes (a traceback's end says the most).
pub fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end();
    if text.len() <= BODY_LIMIT {
        return text.to_string();
    }
    let mut start = text.len() - BODY_LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// The error for a non-2xx answer.
pub fn from_status(status: StatusCode, body: &[u8]) -> RayError {
    let text = String::from_utf8_lossy(body);
    if let Some(submission_id) = duplicate_submission(&text) {
        return RayError::AlreadyExists { submission_id };
    }
    let body = body_text(body);
    match status {
        StatusCode::NOT_FOUND => RayError::NotFound(body),
        status if is_unavailable_status(status) => RayError::Unavailable(format!("{status}: {body}")),
        status => RayError::BadRequest { status: status.as_u16(), body },
    }
}

/// The id a duplicate-submission answer names.
fn duplicate_submission(text: &str) -> Option<String> {
    let before = &text[..text.find(DUPLICATE)?];
    let start = before.rfind(DUPLICATE_PREFIX)? + DUPLICATE_PREFIX.len();
    Some(before[start..].to_string())
}

/// An answer whose body does not parse as `what`.
pub fn unreadable(what: &str, error: &serde_json::Error, body: &[u8]) -> RayError {
    RayError::Other(format!("cannot read the Ray dashboard's answer to {what}: {error}; body: {}", body_text(body)))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// The real head's answer to a duplicate submission (spec §3.3).
    const DUPLICATE_BODY: &str = "Traceback (most recent call last):\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 419, in submit_job\n    resp = await job_agent_client.submit_job_internal(submit_request)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 148, in submit_job_internal\n    await self._raise_error(resp)\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_head.py\", line 134, in _raise_error\n    raise RuntimeError(f\"Request failed with status code {status}: {error_text}.\")\nRuntimeError: Request failed with status code 400: Traceback (most recent call last):\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_agent.py\", line 45, in submit_job\n    submission_id = await self.get_job_manager().submit_job(\n                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \".venv/lib/python3.11/site-packages/ray/dashboard/modules/job/job_manager.py\", line 553, in submit_job\n    raise ValueError(\nValueError: Job with submission_id job-abc already exists. Please use a different submission_id.\n.\n";

    const NON_TERMINAL_DELETE: &str = "Traceback (most recent call last):\n  File \"job_head.py\", line 500, in delete_job\nRuntimeError: Attempted to delete job 'job-abc', but it is in a non-terminal state PENDING.\n";

    #[rstest]
    #[case::duplicate_is_500_on_ray_2_60(500, DUPLICATE_BODY, RayError::AlreadyExists { submission_id: "job-abc".into() })]
    #[case::duplicate_as_the_agent_says_it(400, "ValueError: Job with submission_id rayjob-x-5ngqv already exists. Please use a different submission_id.", RayError::AlreadyExists { submission_id: "rayjob-x-5ngqv".into() })]
    #[case::unknown_job(404, "Job nope does not exist", RayError::NotFound("Job nope does not exist".into()))]
    #[case::non_terminal_delete(500, NON_TERMINAL_DELETE, RayError::BadRequest { status: 500, body: NON_TERMINAL_DELETE.trim_end().into() })]
    #[case::missing_entrypoint(400, "TypeError: JobSubmitRequest.__init__() missing 1 required positional argument: 'entrypoint'\n", RayError::BadRequest { status: 400, body: "TypeError: JobSubmitRequest.__init__() missing 1 required positional argument: 'entrypoint'".into() })]
    #[case::malformed_json(500, "500 Internal Server Error\n\nServer got itself in trouble", RayError::BadRequest { status: 500, body: "500 Internal Server Error\n\nServer got itself in trouble".into() })]
    #[case::browser_post(405, "'POST' method not allowed for browser traffic.", RayError::BadRequest { status: 405, body: "'POST' method not allowed for browser traffic.".into() })]
    #[case::token_auth(401, "Unauthorized: Missing authentication token", RayError::BadRequest { status: 401, body: "Unauthorized: Missing authentication token".into() })]
    #[case::bad_gateway(502, "error reaching http://x/api/version: connection refused", RayError::Unavailable("502 Bad Gateway: error reaching http://x/api/version: connection refused".into()))]
    #[case::no_endpoints(503, "no endpoints available for service \"c-head-svc\"", RayError::Unavailable("503 Service Unavailable: no endpoints available for service \"c-head-svc\"".into()))]
    #[case::gateway_timeout(504, "", RayError::Unavailable("504 Gateway Timeout: ".into()))]
    fn answers_map_to_errors(#[case] status: u16, #[case] body: &str, #[case] expected: RayError) {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(from_status(status, body.as_bytes()), expected);
    }

    #[test]
    fn long_bodies_keep_their_end() {
        let body = format!("{}\nValueError: the reason", "x".repeat(10_000));
        let text = body_text(body.as_bytes());
        assert_eq!(text.chars().count(), BODY_LIMIT + 1);
        assert!(text.starts_with('…') && text.ends_with("\nValueError: the reason"), "{text}");
    }

    #[test]
    fn errors_say_what_happened() {
        let duplicate = RayError::AlreadyExists { submission_id: "job-abc".into() };
        assert_eq!(duplicate.to_string(), "Job with submission_id job-abc already exists on the cluster");
        let refused = RayError::BadRequest { status: 400, body: "bad".into() };
        assert_eq!(refused.to_string(), "the Ray dashboard answered 400: bad");
    }
}
