//! The CustomResourceDefinitions of the three kinds, generated from the types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{RayCluster, RayJob, RayService};

/// The three CRDs, in the order `kuberay crd` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![RayCluster::crd(), RayJob::crd(), RayService::crd()]
}
