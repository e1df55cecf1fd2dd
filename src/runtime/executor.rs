//! The executor: a Decision's commands against the API server, in order, stopping at the first that fails (the
//! contract in `machine::raycluster`'s docs). Every command is idempotent: AlreadyExists on a create and NotFound on
//! a delete are success; deletes carry the uid as a precondition; finalizers and status are written with the
//! observed resourceVersion, so a write based on a stale observation is refused (409) and the machine looks again.
//!
//! Events are recorded with kube's events Recorder (`events.k8s.io/v1`); an Event that cannot be written is logged
//! and does not stop the commands after it — as KubeRay's recorder, it is best effort.

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};

use super::Dashboards;
use crate::machine::{Command, EventKind, ObjectRef, Outcome, Target};

/// The field manager of every write (KubeRay's manager name).
pub const FIELD_MANAGER: &str = "kuberay-operator";

/// The group, version and plural of each kind the machines write (all namespaced); None for a kind they never
/// write.
fn api_resource(kind: &str) -> Option<ApiResource> {
    let (group, version, plural) = match kind {
        "Pod" => ("", "v1", "pods"),
        "Service" => ("", "v1", "services"),
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "Secret" => ("", "v1", "secrets"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Job" => ("batch", "v1", "jobs"),
        "Role" => ("rbac.authorization.k8s.io", "v1", "roles"),
        "RoleBinding" => ("rbac.authorization.k8s.io", "v1", "rolebindings"),
        "Ingress" => ("networking.k8s.io", "v1", "ingresses"),
        "RayCluster" => ("ray.io", "v1", "rayclusters"),
        "RayJob" => ("ray.io", "v1", "rayjobs"),
        "RayService" => ("ray.io", "v1", "rayservices"),
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some(ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// What the executor needs of the machine's own object: the object as observed (finalizers and status are written
/// against its resourceVersion).
pub struct Own<'a> {
    pub object: &'a ObjectRef,
    /// The observed object as JSON, or None when it is gone. A Decision's own writes advance it (resourceVersion,
    /// finalizers), as KubeRay's in-place `Update` does, so that its next write does not conflict with its last.
    pub observed: Option<Value>,
}

pub struct Executor {
    client: kube::Client,
    recorder: Recorder,
    dashboards: Dashboards,
}

impl Executor {
    pub fn new(client: kube::Client, dashboards: Dashboards) -> Executor {
        let reporter = Reporter { controller: FIELD_MANAGER.to_string(), instance: None };
        Executor { recorder: Recorder::new(client.clone(), reporter), client, dashboards }
    }

    pub fn dashboards(&self) -> &Dashboards {
        &self.dashboards
    }

    /// Runs one command. `Err` is the outcome the machine must hear about.
    pub async fn execute(&self, own: &mut Own<'_>, command: &Command) -> Result<(), Outcome> {
        // A submission the dashboard already knows, and a stop of a job it does not, are success (idempotent).
        let dashboard = match command {
            Command::SubmitJob { address, submission } => Some(self.dashboards.submit(address, submission).await),
            Command::StopJob { address, job_id } => Some(self.dashboards.stop(address, job_id).await),
            _ => None,
        };
        if let Some(result) = dashboard {
            return result.map_err(|message| Outcome::Failed { message });
        }
        self.send(own, command).await.or_else(|error| judge(command, error))
    }

    async fn send(&self, own: &mut Own<'_>, command: &Command) -> Result<(), kube::Error> {
        match command {
            Command::Create { object } => self.create(own.object, object).await,
            Command::Delete { target, uid } => self.delete(target, uid.as_deref()).await,
            Command::DeleteCollection { kind, namespace, labels } => {
                let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let api = self.api(kind, namespace)?;
                api.delete_collection(&DeleteParams::background(), &ListParams::default().labels(&selector.join(",")))
                    .await
                    .map(drop)
            }
            Command::Patch { target, patch, resource_version } => {
                let mut patch = patch.clone();
                if let Some(version) = resource_version {
                    patch["metadata"]["resourceVersion"] = json!(version);
                }
                let api = self.api(&target.kind, &target.namespace)?;
                api.patch(&target.name, &patch_params(), &Patch::Merge(&patch)).await.map(drop)
            }
            Command::AddFinalizer { finalizer } => self.finalizers(own, finalizer, true).await,
            Command::RemoveFinalizer { finalizer } => self.finalizers(own, finalizer, false).await,
            Command::WriteStatus { status } => self.write_status(own, status).await,
            Command::RecordEvent { kind, reason, message } => {
                self.record(own.object, *kind, reason, message).await;
                Ok(())
            }
            // The runtime arms the requeue timer; nothing to send.
            Command::RequeueAfter { .. } => Ok(()),
            Command::SubmitJob { .. } | Command::StopJob { .. } => Err(failure("a dashboard command is no API call")),
        }
    }

    fn api(&self, kind: &str, namespace: &str) -> Result<Api<DynamicObject>, kube::Error> {
        let resource = api_resource(kind).ok_or_else(|| unsupported(kind))?;
        Ok(Api::namespaced_with(self.client.clone(), namespace, &resource))
    }

    async fn create(&self, own: &ObjectRef, object: &Value) -> Result<(), kube::Error> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or(&own.namespace);
        let api = self.api(kind, namespace)?;
        let object: DynamicObject = serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
        api.create(&params, &object).await.map(drop)
    }

    async fn delete(&self, target: &Target, uid: Option<&str>) -> Result<(), kube::Error> {
        let api = self.api(&target.kind, &target.namespace)?;
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            // A Job's Pods go with it (the API server orphans them by default).
            propagation_policy: (target.kind == "Job").then_some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        api.delete(&target.name, &params).await.map(drop)
    }

    /// The machine's own object's finalizers, rewritten against the observed resourceVersion.
    async fn finalizers(&self, own: &mut Own<'_>, finalizer: &str, add: bool) -> Result<(), kube::Error> {
        let observed = own.observed.as_ref().ok_or_else(|| gone(own.object))?;
        let mut finalizers: Vec<Value> = observed["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        finalizers.retain(|f| f.as_str() != Some(finalizer));
        if add {
            finalizers.push(json!(finalizer));
        }
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": observed["metadata"]["resourceVersion"],
        }});
        let api = self.api(own.object.kind.resource_kind(), &own.object.namespace)?;
        let written = api.patch(&own.object.name, &patch_params(), &Patch::Merge(&patch)).await?;
        advance(own, &written, Some(finalizers));
        Ok(())
    }

    /// Replaces the status through the status subresource, as KubeRay's `Status().Update` does.
    async fn write_status(&self, own: &mut Own<'_>, status: &Value) -> Result<(), kube::Error> {
        let mut object = own.observed.clone().ok_or_else(|| gone(own.object))?;
        object["status"] = status.clone();
        let object: DynamicObject = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
        let api = self.api(own.object.kind.resource_kind(), &own.object.namespace)?;
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
        let written = api.replace_status(&own.object.name, &params, &object).await?;
        advance(own, &written, None);
        Ok(())
    }

    async fn record(&self, own: &ObjectRef, kind: EventKind, reason: &str, message: &str) {
        let event = Event {
            type_: match kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: reason.to_string(),
            note: Some(message.to_string()),
            action: reason.to_string(),
            secondary: None,
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("ray.io/v1".to_string()),
            kind: Some(own.kind.resource_kind().to_string()),
            name: Some(own.name.clone()),
            namespace: Some(own.namespace.clone()),
            uid: Some(own.uid.clone()),
            ..Default::default()
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(object = %own, reason, %error, "cannot record an Event");
        }
    }
}

/// The own object as this Decision's write left it.
fn advance(own: &mut Own<'_>, written: &DynamicObject, finalizers: Option<Vec<Value>>) {
    if let Some(observed) = own.observed.as_mut() {
        observed["metadata"]["resourceVersion"] = json!(written.metadata.resource_version);
        if let Some(finalizers) = finalizers {
            observed["metadata"]["finalizers"] = json!(finalizers);
        }
    }
}

fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() }
}

fn unsupported(kind: &str) -> kube::Error {
    failure(&format!("the operator does not write {kind} objects"))
}

fn failure(message: &str) -> kube::Error {
    kube::Error::Api(kube::core::Status::failure(message, "BadRequest").boxed())
}

fn gone(object: &ObjectRef) -> kube::Error {
    kube::Error::Api(kube::core::Status::failure(&format!("{object} is gone"), "NotFound").with_code(404).boxed())
}

/// What an API error means for the machine: AlreadyExists on a create and NotFound on a delete are success.
fn judge(command: &Command, error: kube::Error) -> Result<(), Outcome> {
    let (code, reason, message) = match &error {
        kube::Error::Api(status) => (status.code, status.reason.clone(), status.message.clone()),
        other => (0, String::new(), other.to_string()),
    };
    let deleting = matches!(command, Command::Delete { .. } | Command::DeleteCollection { .. });
    match (code, reason.as_str()) {
        (409, "AlreadyExists") if matches!(command, Command::Create { .. }) => Ok(()),
        (404, _) if deleting => Ok(()),
        (409, "AlreadyExists") => Err(Outcome::AlreadyExists),
        (409, "Conflict") => Err(Outcome::Conflict),
        (404, _) => Err(Outcome::NotFound),
        _ => Err(Outcome::Failed { message }),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("m", reason).with_code(code).boxed())
    }

    fn create() -> Command {
        Command::Create { object: json!({"kind": "Pod"}) }
    }

    fn delete() -> Command {
        let target = Target { kind: "Pod".into(), namespace: "ns".into(), name: "p".into() };
        Command::Delete { target, uid: None }
    }

    #[rstest]
    #[case::create_exists(create(), 409, "AlreadyExists", Ok(()))]
    #[case::delete_gone(delete(), 404, "NotFound", Ok(()))]
    #[case::delete_precondition(delete(), 409, "Conflict", Err(Outcome::Conflict))]
    #[case::status_stale(Command::WriteStatus { status: json!({}) }, 409, "Conflict", Err(Outcome::Conflict))]
    #[case::status_gone(Command::WriteStatus { status: json!({}) }, 404, "NotFound", Err(Outcome::NotFound))]
    #[case::create_forbidden(create(), 403, "Forbidden", Err(Outcome::Failed { message: "m".into() }))]
    fn api_errors_become_outcomes(
        #[case] command: Command,
        #[case] code: u16,
        #[case] reason: &str,
        #[case] expected: Result<(), Outcome>,
    ) {
        assert_eq!(judge(&command, api_error(code, reason)), expected);
    }

    #[rstest]
    #[case("Pod", Some("pods"))]
    #[case("RoleBinding", Some("rolebindings"))]
    #[case("RayCluster", Some("rayclusters"))]
    #[case("Deployment", None)]
    fn every_kind_a_machine_writes_has_its_plural(#[case] kind: &str, #[case] plural: Option<&str>) {
        assert_eq!(api_resource(kind).map(|resource| resource.plural), plural.map(str::to_string));
    }
}
