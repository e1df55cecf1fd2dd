//! The bodies the dashboard takes and answers, as a real Ray 2.60 head sends them
//! (`../shared/spec/ray-dashboard-api.md`). Unknown fields are ignored and every field a head may leave out or set to
//! null is optional: newer heads add fields, older ones lack some.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /api/jobs/`. Fields left `None` are not sent (KubeRay's `omitempty`); a field the head does not know is
/// refused with 400, so nothing else may be added here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    pub entrypoint: String,
    /// The head generates `raysubmit_<16 characters>` when it is left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_env: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_num_cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_num_gpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint_resources: Option<BTreeMap<String, f64>>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct SubmitResponse {
    pub submission_id: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Running,
    Stopped,
    Succeeded,
    Failed,
}

impl JobStatus {
    /// The status as the dashboard spells it (`SUCCEEDED`).
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Running => "RUNNING",
            JobStatus::Stopped => "STOPPED",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
        }
    }

    /// STOPPED, SUCCEEDED and FAILED: the job will not change again (KubeRay's `IsJobTerminal`).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Stopped | JobStatus::Succeeded | JobStatus::Failed)
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobType {
    Submission,
    Driver,
}

/// The driver of a job whose entrypoint called `ray.init()`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DriverInfo {
    pub id: Option<String>,
    pub node_ip_address: Option<String>,
    /// A string in the head's answers (`"21800"`).
    pub pid: Option<String>,
}

/// `GET /api/jobs/<id>`, and each item of `GET /api/jobs/`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct JobInfo {
    #[serde(rename = "type")]
    pub job_type: Option<JobType>,
    /// The Ray job id: null unless the entrypoint called `ray.init()`.
    pub job_id: Option<String>,
    /// Null for DRIVER jobs.
    pub submission_id: Option<String>,
    pub driver_info: Option<DriverInfo>,
    pub status: JobStatus,
    #[serde(default)]
    pub entrypoint: String,
    pub message: Option<String>,
    /// `JobErrorType` (`JOB_ENTRYPOINT_COMMAND_ERROR`, `RUNTIME_ENV_SETUP_FAILURE`, …), kept as text: Ray adds values.
    pub error_type: Option<String>,
    /// Epoch milliseconds.
    pub start_time: Option<u64>,
    /// Epoch milliseconds.
    pub end_time: Option<u64>,
    /// Null (not `{}`) when the submission had none.
    pub metadata: Option<BTreeMap<String, String>>,
    pub runtime_env: Option<Value>,
    pub driver_agent_http_address: Option<String>,
    pub driver_node_id: Option<String>,
    pub driver_exit_code: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct StopResponse {
    pub stopped: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct DeleteResponse {
    pub deleted: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct LogsResponse {
    pub logs: String,
}

/// `GET /api/version`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct VersionInfo {
    /// The dashboard API's version (`"4"`).
    pub version: String,
    pub ray_version: String,
    pub ray_commit: Option<String>,
    pub session_name: Option<String>,
}

/// `GET /api/serve/applications/`: what the operator reads of it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ServeDetails {
    pub proxy_location: Option<String>,
    /// Empty before any deploy and after `DELETE /api/serve/applications/`.
    #[serde(default)]
    pub applications: BTreeMap<String, ServeApplication>,
    pub target_capacity: Option<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplicationStatus {
    NotStarted,
    Deploying,
    DeployFailed,
    Running,
    Unhealthy,
    Deleting,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ServeApplication {
    pub name: Option<String>,
    /// Null when the application failed to deploy.
    pub route_prefix: Option<String>,
    pub status: ApplicationStatus,
    /// Empty while healthy; a traceback when the import failed.
    #[serde(default)]
    pub message: String,
    pub last_deployed_time_s: Option<f64>,
    pub deployed_app_config: Option<Value>,
    /// Empty when the application failed before its deployments were built.
    #[serde(default)]
    pub deployments: BTreeMap<String, ServeDeployment>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    Updating,
    Healthy,
    Unhealthy,
    DeployFailed,
    Upscaling,
    Downscaling,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ServeDeployment {
    pub name: Option<String>,
    pub status: DeploymentStatus,
    /// `DeploymentStatusTrigger` (`CONFIG_UPDATE_COMPLETED`, `REPLICA_STARTUP_FAILED`, …), kept as text.
    pub status_trigger: Option<String>,
    #[serde(default)]
    pub message: String,
    pub target_num_replicas: Option<u64>,
    #[serde(default)]
    pub replicas: Vec<ServeReplica>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ServeReplica {
    pub replica_id: Option<String>,
    pub actor_name: Option<String>,
    pub node_ip: Option<String>,
    /// `ReplicaState` (`STARTING`, `RUNNING`, …), kept as text.
    pub state: Option<String>,
}
