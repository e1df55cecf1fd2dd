//! The Ray dashboard client: jobs, logs and serve applications, as KubeRay's `dashboard_httpclient.go` uses them
//! (`../shared/spec/kuberay-v1.3.0.md` §3.4) and as a real Ray 2.60 head answers them
//! (`../shared/spec/ray-dashboard-api.md`).
//!
//! One [`DashboardClient`] talks to one head's dashboard over a [`Transport`]: directly over HTTP
//! ([`HttpTransport`], where an address [`Resolver`] maps `<svc>.<ns>.svc.cluster.local:8265` to a URL), through the
//! API server's `services/proxy` ([`ProxyTransport`]), or in-process to the simulated cluster
//! (`crate::sim::ray_transport::SimTransport`). Errors are [`RayError`]s: a 404 on a job is KubeRay's
//! `Job <id> does not exist on the cluster`; a duplicate `submission_id` is [`RayError::AlreadyExists`] (the head
//! answers it with a 500 whose traceback says so).

pub mod error;
pub mod transport;
pub mod types;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::{RayError, Result};
pub use transport::{DEFAULT_TIMEOUT, HttpTransport, LogStream, ProxyTransport, Resolver, Transport};
pub use types::{
    ApplicationStatus, DeploymentStatus, DriverInfo, JobInfo, JobStatus, JobType, ServeApplication, ServeDeployment,
    ServeDetails, ServeReplica, SubmitRequest, VersionInfo,
};

/// Sent with every request: a head refuses POSTs from browser-like user agents (405).
const USER_AGENT: &str = "kuberay";

/// A client of one Ray head's dashboard. Cloning shares the transport.
#[derive(Clone)]
pub struct DashboardClient {
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for DashboardClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardClient").finish_non_exhaustive()
    }
}

/// What a path segment escapes: everything but RFC 3986's unreserved characters (ids are Kubernetes names plus a
/// suffix, so in practice nothing).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A job's path, its id one path segment.
fn job_path(id: &str) -> String {
    format!("/api/jobs/{}", utf8_percent_encode(id, SEGMENT))
}

/// KubeRay's words for a 404 on a job.
fn job_not_found(id: &str, error: RayError) -> RayError {
    match error {
        RayError::NotFound(_) => RayError::NotFound(format!("Job {id} does not exist on the cluster")),
        other => other,
    }
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| error::unreadable(what, &e, body))
}

impl DashboardClient {
    pub fn new(transport: impl Transport + 'static) -> DashboardClient {
        DashboardClient { transport: Arc::new(transport) }
    }

    pub fn with_transport(transport: Arc<dyn Transport>) -> DashboardClient {
        DashboardClient { transport }
    }

    /// Over HTTP to the dashboard at `address` (`<svc>.<ns>.svc.cluster.local:8265`), as `resolver` maps it.
    pub fn http(address: &str, resolver: &Resolver) -> Result<DashboardClient> {
        Ok(DashboardClient::new(HttpTransport::new(address, resolver)?))
    }

    /// The body of a 2xx answer to `method path`; any other answer as its error.
    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let mut request = http::Request::builder().method(method).uri(path).header(header::USER_AGENT, USER_AGENT);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map(Bytes::from).unwrap_or_default())
            .map_err(|e| RayError::Other(format!("cannot build a request for {path}: {e}")))?;
        let response = self.transport.send(request).await?;
        if response.status().is_success() {
            Ok(response.into_body())
        } else {
            Err(error::from_status(response.status(), response.body()))
        }
    }

    fn json_body(what: &str, value: &impl serde::Serialize) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| RayError::Other(format!("cannot encode {what}: {e}")))
    }

    /// `GET /api/version`: answers once the dashboard is up.
    pub async fn version(&self) -> Result<VersionInfo> {
        let body = self.call(Method::GET, "/api/version", None).await?;
        parse("GET /api/version", &body)
    }

    /// `POST /api/jobs/`; answers the submission id (the head's own when the request had none).
    /// [`RayError::AlreadyExists`] when the head already knows the request's `submission_id`.
    pub async fn submit_job(&self, request: &SubmitRequest) -> Result<String> {
        let body = Self::json_body("the job submission", request)?;
        let answer = self.call(Method::POST, "/api/jobs/", Some(body)).await?;
        parse::<types::SubmitResponse>("POST /api/jobs/", &answer).map(|r| r.submission_id)
    }

    /// `GET /api/jobs/<id>` (a submission id, or a Ray job id).
    pub async fn job_info(&self, id: &str) -> Result<JobInfo> {
        let path = job_path(id);
        let body = self.call(Method::GET, &path, None).await.map_err(|e| job_not_found(id, e))?;
        parse(&format!("GET {path}"), &body)
    }

    /// `GET /api/jobs/`: every job the head knows, submissions first. A 404 (a head without the jobs API) is no
    /// jobs, as in KubeRay.
    pub async fn list_jobs(&self) -> Result<Vec<JobInfo>> {
        match self.call(Method::GET, "/api/jobs/", None).await {
            Ok(body) => parse("GET /api/jobs/", &body),
            Err(RayError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/jobs/<id>/stop`: `true` when this stopped the job, `false` when it had already ended. As
    /// KubeRay's `StopJob`, a `false` for a job that has not ended is an error.
    pub async fn stop_job(&self, id: &str) -> Result<bool> {
        let path = format!("{}/stop", job_path(id));
        let body = self.call(Method::POST, &path, None).await.map_err(|e| job_not_found(id, e))?;
        let stopped = parse::<types::StopResponse>(&format!("POST {path}"), &body)?.stopped;
        if !stopped {
            let job = self.job_info(id).await?;
            if !job.status.is_terminal() {
                return Err(RayError::Other(format!(
                    "the Ray dashboard did not stop job {id}, which is {:?}",
                    job.status
                )));
            }
        }
        Ok(stopped)
    }

    /// `DELETE /api/jobs/<id>`: the job's record goes (not its log file). A job that has not ended is refused
    /// (500, [`RayError::BadRequest`]): stop it first.
    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        let path = job_path(id);
        let body = self.call(Method::DELETE, &path, None).await.map_err(|e| job_not_found(id, e))?;
        parse::<types::DeleteResponse>(&format!("DELETE {path}"), &body).map(|r| r.deleted)
    }

    /// `GET /api/jobs/<id>/logs`: the whole log so far (empty before the job runs).
    pub async fn job_logs(&self, id: &str) -> Result<String> {
        let path = format!("{}/logs", job_path(id));
        let body = self.call(Method::GET, &path, None).await.map_err(|e| job_not_found(id, e))?;
        parse::<types::LogsResponse>(&format!("GET {path}"), &body).map(|r| r.logs)
    }

    /// The websocket `/api/jobs/<id>/logs/tail`: the backlog, then new lines about once a second, until the job has
    /// ended ([`LogStream`]). Read the job's status to know how it ended.
    pub async fn tail_job_logs(&self, id: &str) -> Result<LogStream> {
        self.transport.tail(&format!("{}/logs/tail", job_path(id))).await.map_err(|e| job_not_found(id, e))
    }

    /// `GET /api/serve/applications/`.
    pub async fn serve_applications(&self) -> Result<ServeDetails> {
        let body = self.call(Method::GET, "/api/serve/applications/", None).await?;
        parse("GET /api/serve/applications/", &body)
    }

    /// `PUT /api/serve/applications/` with a serve config (`serveConfigV2` as JSON). A config the head does not
    /// validate is [`RayError::BadRequest`] (400) with pydantic's message.
    pub async fn put_serve_applications(&self, config: &Value) -> Result<()> {
        let body = Self::json_body("the serve config", config)?;
        self.call(Method::PUT, "/api/serve/applications/", Some(body)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use http::StatusCode;
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    const PENDING: &str = r#"{"type": "SUBMISSION", "job_id": null, "submission_id": "job-abc", "driver_info": null, "status": "PENDING", "entrypoint": "python -c \"import time; [print(i, flush=True) or time.sleep(0.5) for i in range(10)]\"", "message": "Job has not started yet.", "error_type": null, "start_time": 1795933441431, "end_time": null, "metadata": {"k": "v"}, "runtime_env": {}, "driver_agent_http_address": null, "driver_node_id": null, "driver_exit_code": null}"#;
    const SUCCEEDED: &str = r#"{"type": "SUBMISSION", "job_id": null, "submission_id": "job-abc", "driver_info": null, "status": "SUCCEEDED", "entrypoint": "python -c \"import time; [print(i, flush=True) or time.sleep(0.5) for i in range(10)]\"", "message": "Job finished successfully.", "error_type": null, "start_time": 1795933441431, "end_time": 1795933449214, "metadata": {"k": "v"}, "runtime_env": {}, "driver_agent_http_address": "http://192.0.2.2:52365", "driver_node_id": "cd8eea565674afb3d547554bd6aba1cf66d7cb455096bf55cdf228ac", "driver_exit_code": 0}"#;
    const FAILED: &str = r#"{"type": "SUBMISSION", "job_id": null, "submission_id": "job-fail", "driver_info": null, "status": "FAILED", "entrypoint": "python -c \"import sys; print(\\\"about to fail\\\"); sys.exit(1)\"", "message": "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\nabout to fail\n", "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR", "start_time": 1795933519867, "end_time": 1795933524032, "metadata": null, "runtime_env": null, "driver_agent_http_address": "http://192.0.2.2:52365", "driver_node_id": "cd8eea565674afb3d547554bd6aba1cf66d7cb455096bf55cdf228ac", "driver_exit_code": 1}"#;
    const STOPPED: &str = r#"{"type": "SUBMISSION", "job_id": null, "submission_id": "job-long", "driver_info": null, "status": "STOPPED", "entrypoint": "sleep 60", "message": "Job was intentionally stopped.", "error_type": null, "start_time": 1795933491791, "end_time": 1795933509075, "metadata": {"k": "v"}, "runtime_env": {}, "driver_agent_http_address": "http://192.0.2.2:52365", "driver_node_id": "cd8e", "driver_exit_code": null}"#;
    const DRIVER: &str = r#"{"type": "SUBMISSION", "job_id": "02000000", "submission_id": "rayjob", "driver_info": {"id": "02000000", "node_ip_address": "192.0.2.2", "pid": "21800"}, "status": "RUNNING", "entrypoint": "python rayjob.py", "message": "Job is currently running.", "error_type": null, "start_time": 1, "end_time": null, "metadata": null, "runtime_env": null, "driver_agent_http_address": "http://192.0.2.2:52365", "driver_node_id": "cd8e", "driver_exit_code": null, "a_field_of_ray_2_99": [1]}"#;

    fn job(status: JobStatus, id: &str) -> JobInfo {
        JobInfo {
            job_type: Some(JobType::Submission),
            job_id: None,
            submission_id: Some(id.to_string()),
            driver_info: None,
            status,
            entrypoint: String::new(),
            message: None,
            error_type: None,
            start_time: None,
            end_time: None,
            metadata: None,
            runtime_env: None,
            driver_agent_http_address: None,
            driver_node_id: None,
            driver_exit_code: None,
        }
    }

    #[rstest]
    #[case::pending(PENDING, JobStatus::Pending, Some("Job has not started yet."), None, None, None)]
    #[case::succeeded(
        SUCCEEDED,
        JobStatus::Succeeded,
        Some("Job finished successfully."),
        None,
        Some(1795933449214),
        Some(0)
    )]
    #[case::failed(
        FAILED,
        JobStatus::Failed,
        Some(
            "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\nabout to fail\n"
        ),
        Some("JOB_ENTRYPOINT_COMMAND_ERROR"),
        Some(1795933524032),
        Some(1)
    )]
    #[case::stopped(
        STOPPED,
        JobStatus::Stopped,
        Some("Job was intentionally stopped."),
        None,
        Some(1795933509075),
        None
    )]
    fn job_bodies_parse(
        #[case] body: &str,
        #[case] status: JobStatus,
        #[case] message: Option<&str>,
        #[case] error_type: Option<&str>,
        #[case] end_time: Option<u64>,
        #[case] exit_code: Option<i64>,
    ) {
        let info: JobInfo = parse("test", body.as_bytes()).unwrap();
        assert_eq!(
            (info.status, info.message.as_deref(), info.error_type.as_deref(), info.end_time, info.driver_exit_code),
            (status, message, error_type, end_time, exit_code)
        );
        assert_eq!(info.job_type, Some(JobType::Submission));
    }

    #[test]
    fn metadata_and_drivers_parse_and_unknown_fields_are_ignored() {
        let pending: JobInfo = parse("test", PENDING.as_bytes()).unwrap();
        assert_eq!(pending.metadata, Some(BTreeMap::from([("k".to_string(), "v".to_string())])));
        assert_eq!((pending.runtime_env, pending.start_time), (Some(json!({})), Some(1795933441431)));
        let failed: JobInfo = parse("test", FAILED.as_bytes()).unwrap();
        assert_eq!((failed.metadata, failed.runtime_env), (None, None));
        let driver: JobInfo = parse("test", DRIVER.as_bytes()).unwrap();
        assert_eq!(driver.job_id.as_deref(), Some("02000000"));
        assert_eq!(
            driver.driver_info,
            Some(DriverInfo {
                id: Some("02000000".into()),
                node_ip_address: Some("192.0.2.2".into()),
                pid: Some("21800".into())
            })
        );
        let minimal: JobInfo = parse("test", br#"{"status": "RUNNING"}"#).unwrap();
        assert_eq!(minimal, JobInfo { job_type: None, submission_id: None, ..job(JobStatus::Running, "") });
    }

    #[rstest]
    #[case::unknown_status(br#"{"status": "EXPLODED"}"#.as_slice(), "cannot read the Ray dashboard's answer to test: unknown variant `EXPLODED`")]
    #[case::not_json(b"<html>proxy error</html>".as_slice(), "cannot read the Ray dashboard's answer to test: expected value at line 1 column 1; body: <html>proxy error</html>")]
    fn bodies_not_understood_are_errors_with_the_body(#[case] body: &[u8], #[case] start: &str) {
        let error = parse::<JobInfo>("test", body).unwrap_err();
        assert!(matches!(&error, RayError::Other(m) if m.starts_with(start)), "{error}");
    }

    #[test]
    fn submissions_leave_out_what_is_not_set() {
        let minimal = SubmitRequest { entrypoint: "echo hi".into(), ..SubmitRequest::default() };
        assert_eq!(serde_json::to_string(&minimal).unwrap(), r#"{"entrypoint":"echo hi"}"#);
        let full = SubmitRequest {
            entrypoint: "python x.py".into(),
            submission_id: Some("job-abc".into()),
            metadata: Some(BTreeMap::from([("k".into(), "v".into())])),
            runtime_env: Some(json!({"env_vars": {"FOO": "bar"}})),
            entrypoint_num_cpus: Some(0.5),
            entrypoint_num_gpus: None,
            entrypoint_memory: None,
            entrypoint_resources: Some(BTreeMap::from([("TPU".into(), 1.0)])),
        };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"{"entrypoint":"python x.py","submission_id":"job-abc","metadata":{"k":"v"},"runtime_env":{"env_vars":{"FOO":"bar"}},"entrypoint_num_cpus":0.5,"entrypoint_resources":{"TPU":1.0}}"#
        );
    }

    #[test]
    fn serve_bodies_parse() {
        let empty: ServeDetails =
            parse("test", br#"{"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": null}"#)
                .unwrap();
        assert_eq!(empty, ServeDetails::default());
        let running = json!({
            "controller_info": {"node_id": "cd8e"}, "proxy_location": "HeadOnly",
            "applications": {
                "hello": {"name": "hello", "route_prefix": "/", "docs_path": null, "status": "RUNNING", "message": "",
                    "last_deployed_time_s": 1795933719.1646435, "source": "declarative",
                    "deployments": {"Hello": {"name": "Hello", "status": "HEALTHY", "status_trigger": "CONFIG_UPDATE_COMPLETED",
                        "message": "", "target_num_replicas": 1, "required_resources": {"CPU": 0.1},
                        "replicas": [{"node_ip": "192.0.2.2", "actor_name": "SERVE_REPLICA::hello#Hello#ucl9rqs4", "replica_id": "ucl9rqs4", "state": "RUNNING", "pid": 8207}],
                        "recent_dead_replicas": []}}},
                "broken": {"name": "broken", "route_prefix": null, "status": "DEPLOY_FAILED",
                    "message": "Deploying app 'broken' failed with exception:\nModuleNotFoundError: No module named 'does_not_exist'",
                    "deployments": {}, "deployment_topology": null}},
            "target_capacity": null, "target_groups": [], "restores_unset_config_options": true,
        });
        let details: ServeDetails = parse("test", running.to_string().as_bytes()).unwrap();
        assert_eq!(details.proxy_location.as_deref(), Some("HeadOnly"));
        let hello = &details.applications["hello"];
        assert_eq!((hello.status, hello.route_prefix.as_deref()), (ApplicationStatus::Running, Some("/")));
        let deployment = &hello.deployments["Hello"];
        assert_eq!(
            (deployment.status, deployment.status_trigger.as_deref(), deployment.target_num_replicas),
            (DeploymentStatus::Healthy, Some("CONFIG_UPDATE_COMPLETED"), Some(1))
        );
        assert_eq!(deployment.replicas[0].replica_id.as_deref(), Some("ucl9rqs4"));
        let broken = &details.applications["broken"];
        assert_eq!((broken.status, broken.route_prefix.as_deref()), (ApplicationStatus::DeployFailed, None));
        assert!(broken.message.ends_with("No module named 'does_not_exist'") && broken.deployments.is_empty());
    }

    /// A transport that answers from a script and records the requests.
    struct Scripted {
        answers: Mutex<Vec<(u16, &'static str)>>,
        seen: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Transport for Scripted {
        async fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
            let content_type = request.headers().get(header::CONTENT_TYPE).map(|c| c.to_str().unwrap().to_string());
            let agent = request.headers().get(header::USER_AGENT).unwrap().to_str().unwrap().to_string();
            let body = String::from_utf8(request.body().to_vec()).unwrap();
            self.seen.lock().unwrap().push(format!(
                "{} {} {agent} {content_type:?} {body}",
                request.method(),
                request.uri()
            ));
            let (status, body) = self.answers.lock().unwrap().remove(0);
            let mut response = http::Response::new(Bytes::from_static(body.as_bytes()));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok(response)
        }

        async fn tail(&self, path: &str) -> Result<LogStream> {
            self.seen.lock().unwrap().push(format!("TAIL {path}"));
            let (status, body) = self.answers.lock().unwrap().remove(0);
            Err(super::error::from_status(StatusCode::from_u16(status).unwrap(), body.as_bytes()))
        }
    }

    fn scripted(answers: Vec<(u16, &'static str)>) -> (DashboardClient, Arc<Scripted>) {
        let transport = Arc::new(Scripted { answers: Mutex::new(answers), seen: Mutex::new(Vec::new()) });
        (DashboardClient::with_transport(transport.clone()), transport)
    }

    fn seen(transport: &Scripted) -> Vec<String> {
        transport.seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn requests_go_to_kuberays_paths() {
        let (client, transport) = scripted(vec![
            (200, r#"{"job_id": "job-abc", "submission_id": "job-abc"}"#),
            (200, r#"{"logs": "0\n1\n"}"#),
            (200, r#"{"deleted": true}"#),
            (200, ""),
        ]);
        let request =
            SubmitRequest { entrypoint: "echo hi".into(), submission_id: Some("job-abc".into()), ..Default::default() };
        assert_eq!(client.submit_job(&request).await.unwrap(), "job-abc");
        assert_eq!(client.job_logs("job-abc").await.unwrap(), "0\n1\n");
        assert!(client.delete_job("job-abc").await.unwrap());
        client.put_serve_applications(&json!({"applications": []})).await.unwrap();
        assert_eq!(
            seen(&transport),
            [
                r#"POST /api/jobs/ kuberay Some("application/json") {"entrypoint":"echo hi","submission_id":"job-abc"}"#,
                "GET /api/jobs/job-abc/logs kuberay None ",
                "DELETE /api/jobs/job-abc kuberay None ",
                r#"PUT /api/serve/applications/ kuberay Some("application/json") {"applications":[]}"#,
            ]
        );
    }

    #[rstest]
    #[case::stopped_now(vec![(200, r#"{"stopped": true}"#)], Ok(true))]
    #[case::already_ended(vec![(200, r#"{"stopped": false}"#), (200, SUCCEEDED)], Ok(false))]
    #[case::not_stopped_yet_running(vec![(200, r#"{"stopped": false}"#), (200, PENDING)], Err(RayError::Other("the Ray dashboard did not stop job job-abc, which is Pending".into())))]
    #[case::unknown(vec![(404, "Job job-abc does not exist")], Err(RayError::NotFound("Job job-abc does not exist on the cluster".into())))]
    #[tokio::test]
    async fn stop_follows_kuberays_stop_job(#[case] answers: Vec<(u16, &'static str)>, #[case] expected: Result<bool>) {
        let (client, _) = scripted(answers);
        assert_eq!(client.stop_job("job-abc").await, expected);
    }

    #[tokio::test]
    async fn job_404s_say_so_in_kuberays_words_and_list_404_is_empty() {
        let (client, _) = scripted(vec![(404, "Job nope does not exist"), (404, "404: Not Found")]);
        assert_eq!(client.job_info("nope").await.unwrap_err().to_string(), "Job nope does not exist on the cluster");
        assert_eq!(client.list_jobs().await.unwrap(), Vec::new());
    }

    #[tokio::test]
    async fn a_tail_of_an_unknown_job_is_not_found() {
        let (client, transport) = scripted(vec![(404, "Job ID does not exist")]);
        let unknown = client.tail_job_logs("job-abc").await.err();
        assert_eq!(unknown, Some(RayError::NotFound("Job job-abc does not exist on the cluster".into())));
        assert_eq!(seen(&transport), ["TAIL /api/jobs/job-abc/logs/tail"]);
    }
}
