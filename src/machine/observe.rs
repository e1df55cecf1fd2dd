//! Observations: the compact projections of Kubernetes objects that Inputs carry. A machine reads only these, so
//! the runtime caches and journals only what decisions depend on (DESIGN.md: inputs are level-triggered
//! observations).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Part, PartsError, list_parts, part, take, take_list};
use crate::api::{RayCluster, RayJob};

/// What the RayCluster machine sees: the cluster and the objects it owns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ClusterObservation {
    /// The RayCluster as the API server holds it, or None once it is gone.
    pub cluster: Option<RayCluster>,
    /// The Pods labelled `ray.io/cluster=<c>`, sorted by name.
    pub pods: Vec<PodView>,
    /// The Services the cluster owns, sorted by name.
    pub services: Vec<ServiceView>,
    /// The Jobs labelled `ray.io/cluster=<c>` (the Redis cleanup Job), sorted by name.
    pub jobs: Vec<JobView>,
    /// Other owned objects whose existence is all that matters (ServiceAccount, Role, RoleBinding, Ingress).
    pub owned: Vec<OwnedObject>,
}

/// A Pod as the machines see it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    /// `ray.io/node-type` (`head`, `worker`, `redis-cleanup`).
    pub node_type: String,
    /// `ray.io/group`.
    pub group: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`, or empty before the kubelet).
    pub phase: String,
    /// The `Ready` condition, when the Pod has one.
    pub ready: Option<ReadyCondition>,
    /// Whether the Ray container (`containers[0]`, found by name among the statuses) has terminated.
    pub ray_container_terminated: bool,
    /// `spec.restartPolicy`, empty when unset.
    pub restart_policy: String,
    /// Whether the Pod is being deleted.
    pub terminating: bool,
    pub pod_ip: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadyCondition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl PodView {
    pub fn of(pod: &Pod) -> PodView {
        let meta = &pod.metadata;
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
        let status = pod.status.as_ref();
        let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|conditions| {
            conditions.iter().find(|c| c.type_ == "Ready").map(|c| ReadyCondition {
                status: c.status.clone(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            })
        });
        let ray_container = pod.spec.as_ref().and_then(|spec| spec.containers.first()).map(|c| c.name.as_str());
        let ray_container_terminated = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|statuses| statuses.iter().find(|s| Some(s.name.as_str()) == ray_container))
            .and_then(|s| s.state.as_ref())
            .is_some_and(|state| state.terminated.is_some());
        PodView {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            node_type: label(crate::api::constants::RAY_NODE_TYPE_LABEL),
            group: label(crate::api::constants::RAY_NODE_GROUP_LABEL),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            ready,
            ray_container_terminated,
            restart_policy: pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            pod_ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(|ready| ready.status == "True")
    }
}

/// A Service as the machines see it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub selector: BTreeMap<String, String>,
    /// `spec.clusterIP`: empty before the API server assigns one, `None` for a headless Service.
    pub cluster_ip: String,
    pub ports: Vec<ServicePortView>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePortView {
    pub name: String,
    pub port: i32,
    pub node_port: Option<i32>,
    /// `targetPort` as a string (it may be a number or a name).
    pub target_port: Option<String>,
}

impl ServiceView {
    pub fn of(service: &Service) -> ServiceView {
        let spec = service.spec.as_ref();
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| ServicePortView {
                        name: p.name.clone().unwrap_or_default(),
                        port: p.port,
                        node_port: p.node_port,
                        target_port: p.target_port.as_ref().map(|t| match t {
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                        }),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ServiceView {
            name: service.metadata.name.clone().unwrap_or_default(),
            labels: service.metadata.labels.clone().unwrap_or_default(),
            selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
            cluster_ip: spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default(),
            ports,
        }
    }
}

/// A batch Job as the machines see it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct JobView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// A `Complete` condition with status True.
    pub complete: bool,
    /// A `Failed` condition with status True.
    pub failed: bool,
    /// That `Failed` condition's reason and message (the RayJob's `SubmissionFailed` message quotes them).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failed_reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failed_message: String,
    /// Whether the Job is being deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminating: bool,
}

impl JobView {
    pub fn of(job: &Job) -> JobView {
        let condition = |type_: &str| {
            job.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == type_ && c.status == "True"))
        };
        let failure = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True"));
        JobView {
            name: job.metadata.name.clone().unwrap_or_default(),
            labels: job.metadata.labels.clone().unwrap_or_default(),
            complete: condition("Complete"),
            failed: condition("Failed"),
            failed_reason: failure.and_then(|c| c.reason.clone()).unwrap_or_default(),
            failed_message: failure.and_then(|c| c.message.clone()).unwrap_or_default(),
            terminating: job.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// An owned object known by kind and name only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnedObject {
    pub kind: String,
    pub name: String,
}

/// A custom resource as three parts under `prefix` (metadata, spec, status): the spec rarely changes, so it dedupes.
fn resource_parts(
    prefix: &str,
    metadata: &ObjectMeta,
    spec: &impl Serialize,
    status: &impl Serialize,
) -> Result<Vec<Part>, PartsError> {
    Ok(vec![
        part(format!("{prefix}/metadata"), metadata)?,
        part(format!("{prefix}/spec"), spec)?,
        part(format!("{prefix}/status"), status)?,
    ])
}

/// The resource [`resource_parts`] split, or None when the parts hold none.
fn take_resource<Spec: DeserializeOwned, Status: DeserializeOwned, K>(
    parts: &BTreeMap<String, &[u8]>,
    prefix: &str,
    join: impl FnOnce(ObjectMeta, Spec, Option<Status>) -> K,
) -> Result<Option<K>, PartsError> {
    let spec = format!("{prefix}/spec");
    if !parts.contains_key(&spec) {
        return Ok(None);
    }
    let metadata = take(parts, &format!("{prefix}/metadata"))?;
    Ok(Some(join(metadata, take(parts, &spec)?, take(parts, &format!("{prefix}/status"))?)))
}

impl ClusterObservation {
    /// The cluster in three parts (metadata, spec, status: the spec rarely changes and dedupes), then one part per
    /// owned object.
    pub(super) fn parts(&self) -> Result<Vec<Part>, PartsError> {
        let mut parts = Vec::new();
        if let Some(cluster) = &self.cluster {
            parts.extend(resource_parts("cluster", &cluster.metadata, &cluster.spec, &cluster.status)?);
        }
        parts.extend(list_parts("pods", &self.pods)?);
        parts.extend(list_parts("services", &self.services)?);
        parts.extend(list_parts("jobs", &self.jobs)?);
        parts.extend(list_parts("owned", &self.owned)?);
        Ok(parts)
    }

    pub(super) fn from_parts(parts: &BTreeMap<String, &[u8]>) -> Result<ClusterObservation, PartsError> {
        let cluster = take_resource(parts, "cluster", |metadata, spec, status| RayCluster { metadata, spec, status })?;
        Ok(ClusterObservation {
            cluster,
            pods: take_list(parts, "pods")?,
            services: take_list(parts, "services")?,
            jobs: take_list(parts, "jobs")?,
            owned: take_list(parts, "owned")?,
        })
    }
}

/// What the RayJob machine sees: the job, the cluster it runs on, that cluster's head Service, its submitter Job and
/// the dashboard's answer about its Ray job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct JobObservation {
    /// The RayJob as the API server holds it, or None once it is gone.
    pub job: Option<RayJob>,
    /// The RayCluster named by `status.rayClusterName`, as the API server holds it.
    pub cluster: Option<RayCluster>,
    /// That cluster's head Service (labels `ray.io/cluster=<c>`, `ray.io/node-type=head`).
    pub head_service: Option<ServiceView>,
    /// The batch Job named after the RayJob (the K8sJobMode submitter).
    pub submitter: Option<JobView>,
    /// The dashboard's answer for `status.jobId`. The runtime asks whenever the job has a dashboard URL and a job id
    /// and is Running (or Waiting with a job id), and journals the answer with the Input like a watch event.
    pub dashboard: Option<DashboardAnswer>,
}

/// What `GET /api/jobs/<id>` said.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum DashboardAnswer {
    Job(DashboardJob),
    /// 404: the dashboard does not know the submission id.
    NotFound,
    /// No answer (a timeout, a refused connection, a 5xx).
    Unreachable {
        message: String,
    },
}

/// The dashboard's `RayJobInfo`, as much of it as the machine reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct DashboardJob {
    /// `PENDING`, `RUNNING`, `STOPPED`, `SUCCEEDED` or `FAILED`.
    pub status: String,
    pub message: String,
    /// Milliseconds since the epoch, as the dashboard gives them.
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
}

impl JobObservation {
    /// The job and the cluster in three parts each (metadata, spec, status), then the rest.
    pub(super) fn parts(&self) -> Result<Vec<Part>, PartsError> {
        let mut parts = Vec::new();
        if let Some(job) = &self.job {
            parts.extend(resource_parts("job", &job.metadata, &job.spec, &job.status)?);
        }
        if let Some(cluster) = &self.cluster {
            parts.extend(resource_parts("cluster", &cluster.metadata, &cluster.spec, &cluster.status)?);
        }
        parts.push(part("head-service", &self.head_service)?);
        parts.push(part("submitter", &self.submitter)?);
        parts.push(part("dashboard", &self.dashboard)?);
        Ok(parts)
    }

    pub(super) fn from_parts(parts: &BTreeMap<String, &[u8]>) -> Result<JobObservation, PartsError> {
        let job = take_resource(parts, "job", |metadata, spec, status| RayJob { metadata, spec, status })?;
        let cluster = take_resource(parts, "cluster", |metadata, spec, status| RayCluster { metadata, spec, status })?;
        Ok(JobObservation {
            job,
            cluster,
            head_service: take(parts, "head-service")?,
            submitter: take(parts, "submitter")?,
            dashboard: take(parts, "dashboard")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::machine::{Command, Decision, Input, MachineKind, Memory, ObjectRef, Observation, Trigger, WatchEvent};

    fn failed_head() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("c-head-abcde".into());
        pod.metadata.labels = Some([("ray.io/node-type".to_string(), "head".to_string())].into());
        pod.spec = Some(PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container { name: "ray-head".into(), ..Default::default() }],
            restart_policy: Some("Never".into()),
            ..Default::default()
        });
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Some("ContainersNotReady".into()),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "ray-head".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated { exit_code: 1, ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn a_pod_view_holds_what_should_delete_pod_reads() {
        let view = PodView::of(&failed_head());
        assert_eq!(view.node_type, "head");
        assert_eq!(view.phase, "Running");
        assert!(view.ray_container_terminated);
        assert_eq!(view.restart_policy, "Never");
        assert!(!view.is_ready());
        assert_eq!(view.ready.map(|r| r.reason), Some("ContainersNotReady".to_string()));
    }

    #[test]
    fn inputs_and_decisions_survive_their_parts() {
        let cluster = RayCluster::new("c", Default::default());
        let input = Input {
            object: ObjectRef {
                kind: MachineKind::RayCluster,
                namespace: "ns".into(),
                name: "c".into(),
                uid: "u".into(),
            },
            trigger: Trigger::Watch { kind: "Pod".into(), name: "c-head-abcde".into(), event: WatchEvent::Applied },
            now: Time(jiff::Timestamp::UNIX_EPOCH),
            observation: Observation::RayCluster(ClusterObservation {
                cluster: Some(cluster),
                pods: vec![PodView::of(&failed_head()), PodView::default()],
                ..Default::default()
            }),
        };
        assert_eq!(Input::from_parts(&input.parts().unwrap()).unwrap(), input);
        let decision = Decision {
            next: "Provisioning".into(),
            commands: vec![Command::RequeueAfter { millis: 2000 }, Command::AddFinalizer { finalizer: "f".into() }],
            reason: "r".into(),
            explanation: "e".into(),
            memory: Memory::default(),
        };
        assert_eq!(Decision::from_parts(&decision.parts().unwrap()).unwrap(), decision);
    }

    #[test]
    fn job_inputs_survive_their_parts() {
        // As read from the API server: the CRD's defaults filled in.
        let job: RayJob = serde_json::from_value(serde_json::json!(
            {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}, "spec": {}, "status": {}}
        ))
        .unwrap();
        let input = Input {
            object: ObjectRef { kind: MachineKind::RayJob, namespace: "ns".into(), name: "j".into(), uid: "u".into() },
            trigger: Trigger::Resync,
            now: Time(jiff::Timestamp::UNIX_EPOCH),
            observation: Observation::RayJob(JobObservation {
                job: Some(job),
                cluster: Some(RayCluster::new("c", Default::default())),
                head_service: Some(ServiceView { name: "c-head-svc".into(), ..Default::default() }),
                submitter: Some(JobView { name: "j".into(), complete: true, ..Default::default() }),
                dashboard: Some(DashboardAnswer::Job(DashboardJob {
                    status: "RUNNING".into(),
                    start_time: Some(1),
                    ..Default::default()
                })),
            }),
        };
        assert_eq!(Input::from_parts(&input.parts().unwrap()).unwrap(), input);
    }
}
