//! `RayService` (`ray.io/v1`), as KubeRay v1.3.0's `rayservice_types.go` defines it, plus
//! `rayClusterDeletionDelaySeconds` (DEVIATIONS 3).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::raycluster::{RayClusterSpec, RayClusterStatus, conditions_schema};

/// DEVIATIONS 3: the default delay before an old cluster of a RayService is deleted.
pub const DEFAULT_RAY_CLUSTER_DELETION_DELAY_SECONDS: i32 = 60;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayService",
    namespaced,
    status = "RayServiceStatuses",
    category = "all",
    derive = "PartialEq",
    derive = "Default",
    doc = "RayService is the Schema for the rayservices API",
    printcolumn = r#"{"name": "service status", "type": "string", "jsonPath": ".status.serviceStatus"}"#,
    printcolumn = r#"{"name": "num serve endpoints", "type": "string", "jsonPath": ".status.numServeEndpoints"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceSpec {
    /// Deprecated and unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_unhealthy_second_threshold: Option<i32>,
    /// Deprecated and unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_unhealthy_second_threshold: Option<i32>,
    /// DEVIATIONS 3: seconds an old cluster is kept after the switch-over (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_deletion_delay_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_service: Option<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<RayServiceUpgradeStrategy>,
    /// The multi-application Serve config, as a YAML string.
    #[serde(default, rename = "serveConfigV2", skip_serializing_if = "Option::is_none")]
    pub serve_config_v2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_config: Option<RayClusterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_head_pod_from_serve_svc: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceUpgradeStrategy {
    /// `NewCluster` | `None`; KubeRay validates it in the controller, not in the CRD.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// `spec.upgradeStrategy.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeStrategy {
    NewCluster,
    None,
}

impl UpgradeStrategy {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "NewCluster" => Some(UpgradeStrategy::NewCluster),
            "None" => Some(UpgradeStrategy::None),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceStatuses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Deprecated: `Running` iff the Ready condition is True, else empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_service_status: Option<RayServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_service_status: Option<RayServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_serve_endpoints: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_statuses: Option<BTreeMap<String, AppStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_cluster_status: Option<RayClusterStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_deployment_statuses: Option<BTreeMap<String, ServeDeploymentStatus>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServeDeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
