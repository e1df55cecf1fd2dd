//! Failures as the API server reports them: a `Status` object with the real HTTP code, reason and message.

use serde_json::{Value, json};

/// A resource named as the API server names it in messages: `pods`, `rayclusters.ray.io`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupResource<'a> {
    pub group: &'a str,
    pub resource: &'a str,
}

impl GroupResource<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() { self.resource.to_string() } else { format!("{}.{}", self.resource, self.group) }
    }

    fn details(&self, name: &str) -> Value {
        json!({"name": name, "group": self.group, "kind": self.resource})
    }
}

/// One field problem of a 422 Invalid answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub reason: CauseReason,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CauseReason {
    Required,
    Invalid,
    /// A value of the wrong JSON type.
    TypeInvalid,
    /// A value outside an enumeration.
    NotSupported,
    Forbidden,
}

impl Cause {
    pub fn new(field: &str, reason: CauseReason, detail: impl Into<String>) -> Cause {
        Cause { field: field.to_string(), reason, detail: detail.into() }
    }

    /// `Required value`, `Invalid value: "x": …`, `Unsupported value: "x": …`, `Forbidden: …` as field.ErrorList
    /// prints them (the detail, when there is one, after a colon).
    fn message(&self) -> String {
        let prefix = match self.reason {
            CauseReason::Required => "Required value",
            CauseReason::Invalid | CauseReason::TypeInvalid => "Invalid value",
            CauseReason::NotSupported => "Unsupported value",
            CauseReason::Forbidden => "Forbidden",
        };
        if self.detail.is_empty() { prefix.to_string() } else { format!("{prefix}: {}", self.detail) }
    }

    fn reason(&self) -> &'static str {
        match self.reason {
            CauseReason::Required => "FieldValueRequired",
            CauseReason::Invalid => "FieldValueInvalid",
            CauseReason::TypeInvalid => "FieldValueTypeInvalid",
            CauseReason::NotSupported => "FieldValueNotSupported",
            CauseReason::Forbidden => "FieldValueForbidden",
        }
    }
}

/// What the API server says of a field it dropped (a warning) or refused (under `fieldValidation=Strict`).
pub fn unknown_field_warning(field: &str) -> String {
    format!("unknown field \"{field}\"")
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    fn with_details(self, details: Value) -> ApiError {
        ApiError { details: Some(details), ..self }
    }

    pub fn not_found(resource: GroupResource, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", resource.qualified()))
            .with_details(resource.details(name))
    }

    /// A path that names no resource the server serves.
    pub fn no_such_path() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    pub fn already_exists(resource: GroupResource, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", resource.qualified()))
            .with_details(resource.details(name))
    }

    /// `Operation cannot be fulfilled on pods "x": <why>`.
    pub fn conflict(resource: GroupResource, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", resource.qualified()),
        )
        .with_details(resource.details(name))
    }

    pub fn stale_resource_version(resource: GroupResource, name: &str) -> ApiError {
        ApiError::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// A server-side apply that would take fields another manager owns.
    pub fn apply_conflicts(resource: GroupResource, name: &str, conflicts: &[(String, String)]) -> ApiError {
        let lines: Vec<String> =
            conflicts.iter().map(|(manager, field)| format!("conflict with \"{manager}\": {field}")).collect();
        let count = conflicts.len();
        let plural = if count == 1 { "" } else { "s" };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""), "field": field})
            })
            .collect();
        let mut details = resource.details(name);
        details["causes"] = Value::Array(causes);
        ApiError::new(409, "Conflict", format!("Apply failed with {count} conflict{plural}: {}", lines.join("\n")))
            .with_details(details)
    }

    /// `Pod "x" is invalid: metadata.name: Required value: …` (the kind, qualified by group outside the core).
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[Cause]) -> ApiError {
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let listed: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message())).collect();
        let joined = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let details = json!({
            "name": name,
            "group": group,
            "kind": kind,
            "causes": causes
                .iter()
                .map(|c| json!({"reason": c.reason(), "message": c.message(), "field": c.field}))
                .collect::<Vec<_>>(),
        });
        ApiError::new(422, "Invalid", format!("{qualified_kind} \"{name}\" is invalid: {joined}")).with_details(details)
    }

    /// A request the server could not apply as a patch (a failed JSON patch `test`, a path that is not there).
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }

    /// A body with fields its kind does not know, under `fieldValidation=Strict`.
    pub fn strict_decoding(kind: &str, version: &str, unknown_fields: &[String]) -> ApiError {
        let fields: Vec<String> = unknown_fields.iter().map(|field| unknown_field_warning(field)).collect();
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            fields.join(", ")
        ))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// `pods "x" is forbidden: <why>`.
    pub fn forbidden(resource: GroupResource, name: &str, why: &str) -> ApiError {
        ApiError::new(403, "Forbidden", format!("{} \"{name}\" is forbidden: {why}", resource.qualified()))
            .with_details(resource.details(name))
    }

    /// A resourceVersion older than what the server still remembers.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn method_not_allowed_because(message: &str) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// An overloaded server's answer; the client should come back in a second.
    pub fn too_many_requests() -> ApiError {
        ApiError::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
        .with_details(json!({"retryAfterSeconds": 1}))
    }

    /// A proxied request that reaches nothing.
    pub fn service_unavailable(message: &str) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// An `Accept` header that offers no media type the server writes.
    pub fn not_acceptable() -> ApiError {
        ApiError::new(406, "NotAcceptable", "only the following media types are accepted: application/json")
    }

    pub fn internal(message: &str) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {message}"))
            .with_details(json!({"causes": [{"message": message}]}))
    }

    /// The `Status` object the API server answers with.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: GroupResource = GroupResource { group: "", resource: "pods" };
    const RAYCLUSTERS: GroupResource = GroupResource { group: "ray.io", resource: "rayclusters" };

    #[test]
    fn not_found_names_the_qualified_resource() {
        assert_eq!(ApiError::not_found(PODS, "a").message, "pods \"a\" not found");
        let error = ApiError::not_found(RAYCLUSTERS, "b");
        assert_eq!(error.message, "rayclusters.ray.io \"b\" not found");
        assert_eq!(error.status()["details"], json!({"name": "b", "group": "ray.io", "kind": "rayclusters"}));
        assert_eq!(error.status()["code"], 404);
    }

    #[test]
    fn a_stale_update_is_the_real_conflict_message() {
        let error = ApiError::stale_resource_version(PODS, "a");
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert_eq!(
            error.message,
            "Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to \
             the latest version and try again"
        );
    }

    #[test]
    fn invalid_lists_one_cause_bare_and_several_in_brackets() {
        let required = Cause::new("metadata.name", CauseReason::Required, "name or generateName is required");
        assert_eq!(
            ApiError::invalid("Pod", "", "", std::slice::from_ref(&required)).message,
            "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required"
        );
        let forbidden = Cause::new("metadata.finalizers", CauseReason::Forbidden, "no new finalizers");
        let error = ApiError::invalid("RayCluster", "ray.io", "c", &[required, forbidden]);
        assert_eq!(
            error.message,
            "RayCluster.ray.io \"c\" is invalid: [metadata.name: Required value: name or generateName is required, \
             metadata.finalizers: Forbidden: no new finalizers]"
        );
        assert_eq!(error.status()["details"]["causes"][1]["reason"], "FieldValueForbidden");
    }

    #[test]
    fn apply_conflicts_name_the_manager_and_the_field() {
        let error = ApiError::apply_conflicts(PODS, "a", &[("kubectl".to_string(), ".spec.x".to_string())]);
        assert_eq!(error.message, "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.x");
        assert_eq!(error.status()["details"]["causes"][0]["field"], ".spec.x");
    }
}
