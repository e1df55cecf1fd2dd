//! `RayJob` (`ray.io/v1`), as KubeRay v1.3.0's `rayjob_types.go` defines it, plus SidecarMode,
//! `preRunningDeadlineSeconds`, `status.jobStatusCheckFailureStartTime` and the `ValidationFailed` deployment status
//! (DEVIATIONS 4, 7, 8, 14).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::raycluster::{RayClusterSpec, RayClusterStatus, managed_by_schema};

fn deletion_policy_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <String as JsonSchema>::json_schema(generator);
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "message": "the deletionPolicy field value must be either 'DeleteCluster', 'DeleteWorkers', 'DeleteSelf', or 'DeleteNone'",
            "rule": "self in ['DeleteCluster', 'DeleteWorkers', 'DeleteSelf', 'DeleteNone']",
        }]),
    );
    schema
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayJob",
    namespaced,
    status = "RayJobStatus",
    category = "all",
    derive = "PartialEq",
    derive = "Default",
    doc = "RayJob is the Schema for the rayjobs API",
    printcolumn = r#"{"name": "job status", "type": "string", "jsonPath": ".status.jobStatus"}"#,
    printcolumn = r#"{"name": "deployment status", "type": "string", "jsonPath": ".status.jobDeploymentStatus"}"#,
    printcolumn = r#"{"name": "ray cluster name", "type": "string", "jsonPath": ".status.rayClusterName"}"#,
    printcolumn = r#"{"name": "start time", "type": "string", "jsonPath": ".status.startTime"}"#,
    printcolumn = r#"{"name": "end time", "type": "string", "jsonPath": ".status.endTime"}"#,
    printcolumn = r#"{"name": "age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayJobSpec {
    /// Seconds from `status.startTime` after which the job fails with `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i32>,
    /// DEVIATIONS 7: seconds from `status.startTime` within which the job must reach Running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_running_deadline_seconds: Option<i32>,
    /// RayJob-level retries; each retry runs on a new RayCluster.
    #[serde(default = "default_zero", skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_spec: Option<RayClusterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter_pod_template: Option<PodTemplateSpec>,
    /// Passed to Ray as `--metadata-json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Selects an existing cluster by `ray.io/cluster` instead of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter_config: Option<SubmitterConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "managed_by_schema")]
    pub managed_by: Option<String>,
    /// `DeleteCluster` | `DeleteWorkers` | `DeleteSelf` | `DeleteNone` (see [`DeletionPolicy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "deletion_policy_schema")]
    pub deletion_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    #[serde(default, rename = "runtimeEnvYAML", skip_serializing_if = "Option::is_none")]
    pub runtime_env_yaml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `K8sJobMode` (default) | `HTTPMode` | `InteractiveMode` | `SidecarMode` (see [`SubmissionMode`]).
    #[serde(default = "default_submission_mode", skip_serializing_if = "Option::is_none")]
    pub submission_mode: Option<String>,
    /// A JSON object of custom resources, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint_resources: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint_num_cpus: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint_num_gpus: Option<f32>,
    #[serde(default = "default_zero", skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_after_job_finishes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

// The CRD's defaults, applied when a manifest is read so that a file means what the API server would store.
fn default_zero() -> Option<i32> {
    Some(0)
}
fn default_submission_mode() -> Option<String> {
    Some(SubmissionMode::K8sJob.as_str().to_string())
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitterConfig {
    /// The submitter Job's own `backoffLimit` (the operator's default is 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_name: Option<String>,
    /// `host:port` with no scheme.
    #[serde(default, rename = "dashboardURL", skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_deployment_status: Option<JobDeploymentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    #[serde(default = "default_zero", skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<i32>,
    #[serde(default = "default_zero", skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// DEVIATIONS 8: when the dashboard's status checks began to fail while Running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status_check_failure_start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_status: Option<RayClusterStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The Ray job's own status, as the dashboard reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum JobStatus {
    #[default]
    #[serde(rename = "")]
    New,
    #[serde(rename = "PENDING")]
    Pending,
    #[serde(rename = "RUNNING")]
    Running,
    #[serde(rename = "STOPPED")]
    Stopped,
    #[serde(rename = "SUCCEEDED")]
    Succeeded,
    #[serde(rename = "FAILED")]
    Failed,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Stopped | JobStatus::Succeeded | JobStatus::Failed)
    }
}

/// Where the RayJob stands in its own lifecycle (§3.2).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum JobDeploymentStatus {
    #[default]
    #[serde(rename = "")]
    New,
    Initializing,
    Running,
    Complete,
    Failed,
    Suspending,
    Suspended,
    Retrying,
    Waiting,
    ValidationFailed,
}

/// `spec.submissionMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubmissionMode {
    K8sJob,
    Http,
    Interactive,
    Sidecar,
}

impl SubmissionMode {
    pub const ALL: [SubmissionMode; 4] =
        [SubmissionMode::K8sJob, SubmissionMode::Http, SubmissionMode::Interactive, SubmissionMode::Sidecar];

    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionMode::K8sJob => "K8sJobMode",
            SubmissionMode::Http => "HTTPMode",
            SubmissionMode::Interactive => "InteractiveMode",
            SubmissionMode::Sidecar => "SidecarMode",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == value)
    }
}

impl fmt::Display for SubmissionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `spec.deletionPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletionPolicy {
    DeleteCluster,
    DeleteWorkers,
    DeleteSelf,
    DeleteNone,
}

impl DeletionPolicy {
    pub const ALL: [DeletionPolicy; 4] = [
        DeletionPolicy::DeleteCluster,
        DeletionPolicy::DeleteWorkers,
        DeletionPolicy::DeleteSelf,
        DeletionPolicy::DeleteNone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::DeleteCluster => "DeleteCluster",
            DeletionPolicy::DeleteWorkers => "DeleteWorkers",
            DeletionPolicy::DeleteSelf => "DeleteSelf",
            DeletionPolicy::DeleteNone => "DeleteNone",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|policy| policy.as_str() == value)
    }
}

impl RayJobSpec {
    /// The submission mode, or `None` when the field holds an unknown value (validation reports it).
    pub fn mode(&self) -> Option<SubmissionMode> {
        match &self.submission_mode {
            None => Some(SubmissionMode::K8sJob),
            Some(value) => SubmissionMode::parse(value),
        }
    }

    pub fn deletion(&self) -> Option<DeletionPolicy> {
        self.deletion_policy.as_deref().and_then(DeletionPolicy::parse)
    }
}
