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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

/// controller-runtime's `SetControllerReference`: `controller` and `blockOwnerDeletion` set. An owner read from a
/// manifest has no uid yet; the reference then carries an empty uid rather than failing.
pub fn controller_owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

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
