//! The operator's knobs: KubeRay's feature gates (`--feature-gates`) and operator env vars (spec §1.4).
//! Builders, validation and machines take them as an input, so that every decision is a function of what it is
//! given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A feature gate we know, with its default (DEVIATIONS 12: `RayJobDeletionPolicy` is on by default).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    RayClusterStatusConditions,
    RayJobDeletionPolicy,
}

impl Feature {
    pub const ALL: [Feature; 2] = [Feature::RayClusterStatusConditions, Feature::RayJobDeletionPolicy];

    pub fn name(self) -> &'static str {
        match self {
            Feature::RayClusterStatusConditions => "RayClusterStatusConditions",
            Feature::RayJobDeletionPolicy => "RayJobDeletionPolicy",
        }
    }

    fn default_enabled(self) -> bool {
        match self {
            Feature::RayClusterStatusConditions | Feature::RayJobDeletionPolicy => true,
        }
    }
}

/// Serialized into each journal session, so that replay runs the machines with the gates they ran with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureGates {
    overrides: BTreeMap<Feature, bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeatureGateError {
    #[error("invalid feature gate {0:?}: expected NAME=true|false")]
    Malformed(String),
    #[error("unrecognized feature gate: {0}")]
    Unknown(String),
}

impl FeatureGates {
    /// Parses KubeRay's flag syntax: `Name=true,Other=false`.
    pub fn parse(flag: &str) -> Result<Self, FeatureGateError> {
        let mut gates = FeatureGates::default();
        for item in flag.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| FeatureGateError::Malformed(item.to_string()))?;
            let feature = Feature::ALL
                .into_iter()
                .find(|feature| feature.name() == name.trim())
                .ok_or_else(|| FeatureGateError::Unknown(name.trim().to_string()))?;
            let enabled = value.trim().parse::<bool>().map_err(|_| FeatureGateError::Malformed(item.to_string()))?;
            gates.overrides.insert(feature, enabled);
        }
        Ok(gates)
    }

    pub fn with(mut self, feature: Feature, enabled: bool) -> Self {
        self.overrides.insert(feature, enabled);
        self
    }

    pub fn enabled(&self, feature: Feature) -> bool {
        self.overrides.get(&feature).copied().unwrap_or_else(|| feature.default_enabled())
    }
}

/// The operator env vars of spec §1.4, read once at start-up (and journaled with each session).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OperatorConfig {
    pub feature_gates: FeatureGates,
    /// `ENABLE_INIT_CONTAINER_INJECTION` (only a case-insensitive `false` disables it).
    pub enable_init_container_injection: bool,
    /// `ENABLE_PROBES_INJECTION`.
    pub enable_probes_injection: bool,
    /// `ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE`: a ClusterIP head Service instead of a headless one.
    pub enable_ray_head_cluster_ip_service: bool,
    /// `CLUSTER_DOMAIN`.
    pub cluster_domain: String,
    /// `RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV`.
    pub raycluster_default_requeue_seconds: u64,
    /// `ENABLE_GCS_FT_REDIS_CLEANUP`.
    pub enable_gcs_ft_redis_cleanup: bool,
    /// `ENABLE_ZERO_DOWNTIME`.
    pub enable_zero_downtime: bool,
    /// `ENABLE_RANDOM_POD_DELETE`.
    pub enable_random_pod_delete: bool,
    /// `DELETE_RAYJOB_CR_AFTER_JOB_FINISHES`.
    pub delete_rayjob_cr_after_job_finishes: bool,
    /// `RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS` (DEVIATIONS 8).
    pub rayjob_status_check_timeout_seconds: u64,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig::from_lookup(|_| None)
    }
}

impl OperatorConfig {
    /// Reads the knobs through `lookup` (the process env in the operator; a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let not_false = |name: &str| lookup(name).is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
        let is_true = |name: &str| lookup(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let seconds =
            |name: &str, default: u64| lookup(name).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(default);
        OperatorConfig {
            feature_gates: FeatureGates::default(),
            enable_init_container_injection: not_false("ENABLE_INIT_CONTAINER_INJECTION"),
            enable_probes_injection: not_false("ENABLE_PROBES_INJECTION"),
            enable_ray_head_cluster_ip_service: is_true("ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE"),
            cluster_domain: lookup("CLUSTER_DOMAIN")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "cluster.local".to_string()),
            raycluster_default_requeue_seconds: seconds("RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV", 300),
            enable_gcs_ft_redis_cleanup: not_false("ENABLE_GCS_FT_REDIS_CLEANUP"),
            enable_zero_downtime: not_false("ENABLE_ZERO_DOWNTIME"),
            enable_random_pod_delete: is_true("ENABLE_RANDOM_POD_DELETE"),
            delete_rayjob_cr_after_job_finishes: is_true("DELETE_RAYJOB_CR_AFTER_JOB_FINISHES"),
            rayjob_status_check_timeout_seconds: seconds("RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS", 300),
        }
    }

    pub fn from_env() -> Self {
        OperatorConfig::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn deletion_policy_gate_is_on_by_default() {
        assert!(FeatureGates::default().enabled(Feature::RayJobDeletionPolicy));
        assert!(FeatureGates::default().enabled(Feature::RayClusterStatusConditions));
    }

    #[rstest]
    #[case("RayJobDeletionPolicy=false", Feature::RayJobDeletionPolicy, false)]
    #[case("RayClusterStatusConditions=false,RayJobDeletionPolicy=true", Feature::RayClusterStatusConditions, false)]
    #[case("", Feature::RayJobDeletionPolicy, true)]
    fn gates_parse_kuberays_flag_syntax(#[case] flag: &str, #[case] feature: Feature, #[case] enabled: bool) {
        assert_eq!(FeatureGates::parse(flag).map(|g| g.enabled(feature)), Ok(enabled));
    }

    #[rstest]
    #[case("RayJobDeletionPolicy", FeatureGateError::Malformed("RayJobDeletionPolicy".into()))]
    #[case("Nope=true", FeatureGateError::Unknown("Nope".into()))]
    #[case("RayJobDeletionPolicy=maybe", FeatureGateError::Malformed("RayJobDeletionPolicy=maybe".into()))]
    fn bad_gates_are_reported(#[case] flag: &str, #[case] error: FeatureGateError) {
        assert_eq!(FeatureGates::parse(flag), Err(error));
    }

    #[test]
    fn env_knobs_follow_kuberays_parsing() {
        let env: BTreeMap<&str, &str> = [
            ("ENABLE_INIT_CONTAINER_INJECTION", "FALSE"),
            ("ENABLE_PROBES_INJECTION", "no"),
            ("ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE", "True"),
            ("CLUSTER_DOMAIN", "example.org"),
        ]
        .into();
        let config = OperatorConfig::from_lookup(|name| env.get(name).map(|v| v.to_string()));
        assert!(!config.enable_init_container_injection);
        assert!(config.enable_probes_injection, "only `false` disables probe injection");
        assert!(config.enable_ray_head_cluster_ip_service);
        assert_eq!(config.cluster_domain, "example.org");
        assert_eq!(config.raycluster_default_requeue_seconds, 300);
    }
}
