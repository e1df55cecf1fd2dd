//! The `ray.io/v1` API: the three kinds, their CRDs, KubeRay's names and constants, and validation.

pub mod constants;
pub mod crd;
pub mod document;
pub mod quantity;
pub mod raycluster;
pub mod rayjob;
pub mod rayservice;
pub mod validation;

pub use raycluster::{RayCluster, RayClusterSpec, RayClusterStatus};
pub use rayjob::{RayJob, RayJobSpec, RayJobStatus};
pub use rayservice::{RayService, RayServiceSpec, RayServiceStatuses};
