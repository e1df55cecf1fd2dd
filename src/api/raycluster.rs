//! `RayCluster` (`ray.io/v1`), as KubeRay v1.3.0's `raycluster_types.go` defines it, plus
//! `autoscalerOptions.version` (DEVIATIONS 10).
//!
//! Every optional field is an `Option` that is skipped when absent, so a manifest serializes back to the fields it
//! had. Enum-like strings whose unknown values KubeRay reports from its own validation (not from the CRD) stay
//! strings here, so that such an object can still be read and told what is wrong with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, EnvVarSource, PodTemplateSpec, ResourceRequirements, SecurityContext, Service, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The CEL rules KubeRay's CRDs put on `managedBy`.
pub(crate) fn managed_by_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <String as JsonSchema>::json_schema(generator);
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([
            {"message": "the managedBy field is immutable", "rule": "self == oldSelf"},
            {"message": "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
             "rule": "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']"},
        ]),
    );
    schema
}

/// `conditions` is a list map keyed by `type`, as metav1.Condition lists are.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<Condition> as JsonSchema>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayCluster",
    namespaced,
    status = "RayClusterStatus",
    category = "all",
    derive = "PartialEq",
    derive = "Default",
    doc = "RayCluster is the Schema for the RayClusters API",
    printcolumn = r#"{"name": "desired workers", "type": "integer", "jsonPath": ".status.desiredWorkerReplicas"}"#,
    printcolumn = r#"{"name": "available workers", "type": "integer", "jsonPath": ".status.availableWorkerReplicas"}"#,
    printcolumn = r#"{"name": "cpus", "type": "string", "jsonPath": ".status.desiredCPU"}"#,
    printcolumn = r#"{"name": "memory", "type": "string", "jsonPath": ".status.desiredMemory"}"#,
    printcolumn = r#"{"name": "gpus", "type": "string", "jsonPath": ".status.desiredGPU"}"#,
    printcolumn = r#"{"name": "tpus", "type": "string", "jsonPath": ".status.desiredTPU", "priority": 1}"#,
    printcolumn = r#"{"name": "status", "type": "string", "jsonPath": ".status.state"}"#,
    printcolumn = r#"{"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name": "head pod IP", "type": "string", "jsonPath": ".status.head.podIP", "priority": 1}"#,
    printcolumn = r#"{"name": "head service IP", "type": "string", "jsonPath": ".status.head.serviceIP", "priority": 1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterSpec {
    /// Deletes every Pod of the cluster while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Another controller owns this cluster when set to anything but `ray.io/kuberay-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "managed_by_schema")]
    pub managed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_options: Option<AutoscalerOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_service_annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_in_tree_autoscaling: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_fault_tolerance_options: Option<GcsFaultToleranceOptions>,
    pub head_group_spec: HeadGroupSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_group_specs: Option<Vec<WorkerGroupSpec>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Read by the autoscaler, not the operator; the autoscaler's default is 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscaling_mode: Option<UpscalingMode>,
    /// DEVIATIONS 10: `v1` or `v2` (KubeRay v1.4+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<AutoscalerVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpscalingMode {
    Default,
    Aggressive,
    Conservative,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalerVersion {
    V1,
    V2,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsFaultToleranceOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_username: Option<RedisCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_password: Option<RedisCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_storage_namespace: Option<String>,
    pub redis_address: String,
}

/// A Redis username or password, given literally or by reference (to a Secret, usually).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisCredential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadGroupSpec {
    /// The head Service's type; ClusterIP (the default) makes it headless (§6.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// A Service to merge the operator's head Service into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_service: Option<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_ingress: Option<bool>,
    #[serde(default)]
    pub ray_start_params: BTreeMap<String, String>,
    pub template: PodTemplateSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerGroupSpec {
    /// Not user-facing: the RayJob `DeleteWorkers` policy sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    pub group_name: String,
    #[serde(default = "default_zero", skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default = "default_zero", skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    #[serde(default = "default_max_replicas", skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Honoured only by autoscaler v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i32>,
    #[serde(default)]
    pub ray_start_params: BTreeMap<String, String>,
    pub template: PodTemplateSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_strategy: Option<ScaleStrategy>,
    /// Pods per replica (multi-host groups such as TPU slices).
    #[serde(default = "default_num_of_hosts")]
    pub num_of_hosts: i32,
}

// The CRD's defaults, applied when a manifest is read so that a file means what the API server would store.
fn default_zero() -> Option<i32> {
    Some(0)
}
fn default_max_replicas() -> Option<i32> {
    Some(i32::MAX)
}
fn default_num_of_hosts() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_to_delete: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterStatus {
    /// Deprecated (`ready` | `suspended`), but RayJob v1.3.0 still gates on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, rename = "desiredCPU", skip_serializing_if = "Option::is_none")]
    pub desired_cpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_memory: Option<Quantity>,
    #[serde(default, rename = "desiredGPU", skip_serializing_if = "Option::is_none")]
    pub desired_gpu: Option<Quantity>,
    #[serde(default, rename = "desiredTPU", skip_serializing_if = "Option::is_none")]
    pub desired_tpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_transition_times: Option<BTreeMap<String, Time>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_worker_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadInfo {
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "serviceIP", skip_serializing_if = "Option::is_none")]
    pub service_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// Values of the deprecated `status.state`.
pub mod cluster_state {
    pub const READY: &str = "ready";
    pub const SUSPENDED: &str = "suspended";
}

/// The kind of object that created a RayCluster, from its `ray.io/originated-from-crd` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CreatorKind {
    RayCluster,
    RayJob,
    RayService,
}

impl CreatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CreatorKind::RayCluster => "RayCluster",
            CreatorKind::RayJob => "RayJob",
            CreatorKind::RayService => "RayService",
        }
    }
}

impl RayClusterSpec {
    /// `enableInTreeAutoscaling: true`.
    pub fn autoscaling_enabled(&self) -> bool {
        self.enable_in_tree_autoscaling == Some(true)
    }

    /// The GCS port: `headGroupSpec.rayStartParams["port"]`, else 6379.
    pub fn head_port(&self) -> String {
        self.head_group_spec
            .ray_start_params
            .get("port")
            .cloned()
            .unwrap_or_else(|| crate::api::constants::DEFAULT_GCS_SERVER_PORT.to_string())
    }

    pub fn worker_groups(&self) -> &[WorkerGroupSpec] {
        self.worker_group_specs.as_deref().unwrap_or_default()
    }

    /// GCS fault tolerance is on when the annotation `ray.io/ft-enabled` of the object holding this spec is `true`
    /// (any case) or `gcsFaultToleranceOptions` is set (§5.1).
    pub fn gcs_ft_enabled(&self, annotations: &BTreeMap<String, String>) -> bool {
        annotations
            .get(crate::api::constants::RAY_FT_ENABLED_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || self.gcs_fault_tolerance_options.is_some()
    }
}

impl RayCluster {
    pub fn gcs_ft_enabled(&self) -> bool {
        self.spec.gcs_ft_enabled(self.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()))
    }

    /// Who created this cluster: RayCluster itself unless the label says RayJob or RayService.
    pub fn creator(&self) -> CreatorKind {
        match self
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::api::constants::RAY_ORIGINATED_FROM_CRD_LABEL))
            .map(String::as_str)
        {
            Some("RayJob") => CreatorKind::RayJob,
            Some("RayService") => CreatorKind::RayService,
            _ => CreatorKind::RayCluster,
        }
    }
}

impl WorkerGroupSpec {
    /// KubeRay's GetWorkerGroupDesiredReplicas (§2.2): suspended → 0; min > max → max; replicas unset or below
    /// min → min; above max → max.
    pub fn desired_replicas(&self) -> i32 {
        let min = self.min_replicas.unwrap_or(0);
        let max = self.max_replicas.unwrap_or(i32::MAX);
        if self.suspend == Some(true) {
            0
        } else if min > max {
            max
        } else {
            match self.replicas {
                None => min,
                Some(replicas) if replicas < min => min,
                Some(replicas) if replicas > max => max,
                Some(replicas) => replicas,
            }
        }
    }

    /// Pods per replica: `numOfHosts`, at least 1.
    pub fn hosts(&self) -> i32 {
        self.num_of_hosts.max(1)
    }
}
