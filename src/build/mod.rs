//! Desired objects as pure functions of a spec: what the operator creates for a RayCluster, a RayJob and a
//! RayService, exactly as KubeRay v1.3.0 builds them (spec §3.3, §4.2, §5, §6, §7) with DEVIATIONS' fixes.
//! Nothing here reads a clock, draws randomness or does I/O.

pub mod cluster;
pub mod ingress;
pub mod names;
pub mod pod;
pub mod rbac;
pub mod redis_cleanup;
pub mod render;
pub mod service;
pub mod submitter;

/// Why a desired object cannot be built from a spec; the message is KubeRay's where KubeRay has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(
        "Please specify the port named 'serve' in the Ray head container; otherwise, the Kubernetes service for Ray Serve will not be created."
    )]
    MissingServePort,
    #[error("dashboard port is not found")]
    MissingDashboardPort,
    #[error("{what} has no container")]
    NoContainer { what: String },
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The submitter command cannot be built from the RayJob (`metadata` with an old or unparsable `rayVersion`, a
    /// `runtimeEnvYAML` that is not YAML).
    #[error("{message}")]
    SubmitterCommand { message: String },
}
