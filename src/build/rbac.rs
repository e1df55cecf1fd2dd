//! The ServiceAccount, Role and RoleBinding that let a RayCluster's autoscaler sidecar read Pods and patch its
//! RayCluster (`common/rbac.go`, spec §6.8, §7). KubeRay creates them only while autoscaling is on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::controller_owner_reference;
use super::names::{check_name, cluster_name};
use crate::api::RayCluster;
use crate::api::constants::{
    APPLICATION_NAME, COMPONENT_NAME, GROUP, K8S_APP_NAME_LABEL, K8S_CREATED_BY_LABEL, RAY_CLUSTER_LABEL,
};

const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

/// Only when the user did not name one: a ServiceAccount the user names is theirs to create, because one owned by
/// a cluster would vanish with it while a RayService's next cluster still needs it (KubeRay issue #1123).
pub fn autoscaler_service_account(cluster: &RayCluster) -> Option<ServiceAccount> {
    if !cluster.spec.autoscaling_enabled() || user_service_account_name(cluster).is_some() {
        return None;
    }
    Some(ServiceAccount { metadata: metadata(cluster, service_account_name(cluster)), ..ServiceAccount::default() })
}

pub fn autoscaler_role(cluster: &RayCluster) -> Option<Role> {
    if !cluster.spec.autoscaling_enabled() {
        return None;
    }
    let rule = |api_group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![api_group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(|verb| verb.to_string()).collect(),
        ..PolicyRule::default()
    };
    Some(Role {
        metadata: metadata(cluster, role_name(cluster)),
        rules: Some(vec![rule("", "pods", &["get", "list", "watch"]), rule(GROUP, "rayclusters", &["get", "patch"])]),
    })
}

pub fn autoscaler_role_binding(cluster: &RayCluster) -> Option<RoleBinding> {
    if !cluster.spec.autoscaling_enabled() {
        return None;
    }
    Some(RoleBinding {
        metadata: metadata(cluster, role_name(cluster)),
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: service_account_name(cluster),
            namespace: cluster.metadata.namespace.clone(),
            ..Subject::default()
        }]),
        role_ref: RoleRef { api_group: RBAC_API_GROUP.to_string(), kind: "Role".to_string(), name: role_name(cluster) },
    })
}

fn user_service_account_name(cluster: &RayCluster) -> Option<&str> {
    let spec = cluster.spec.head_group_spec.template.spec.as_ref()?;
    spec.service_account_name.as_deref().filter(|name| !name.is_empty())
}

/// The head Pod's ServiceAccount: the user's, else the cluster's name; clipped by CheckName.
fn service_account_name(cluster: &RayCluster) -> String {
    check_name(user_service_account_name(cluster).unwrap_or(cluster_name(cluster)))
}

fn role_name(cluster: &RayCluster) -> String {
    check_name(cluster_name(cluster))
}

fn metadata(cluster: &RayCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            (RAY_CLUSTER_LABEL.to_string(), cluster_name(cluster).to_string()),
            (K8S_APP_NAME_LABEL.to_string(), APPLICATION_NAME.to_string()),
            (K8S_CREATED_BY_LABEL.to_string(), COMPONENT_NAME.to_string()),
        ])),
        owner_references: Some(vec![controller_owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::build::service::tests::{cluster, map};

    fn autoscaling(enabled: Option<bool>, service_account: Option<&str>) -> RayCluster {
        let mut cluster = cluster();
        cluster.spec.enable_in_tree_autoscaling = enabled;
        if let Some(spec) = cluster.spec.head_group_spec.template.spec.as_mut() {
            spec.service_account_name = service_account.map(str::to_string);
        }
        cluster
    }

    fn kuberay_labels() -> Option<BTreeMap<String, String>> {
        Some(map(&[
            ("app.kubernetes.io/created-by", "kuberay-operator"),
            ("app.kubernetes.io/name", "kuberay"),
            ("ray.io/cluster", "raycluster"),
        ]))
    }

    #[rstest]
    #[case::unset(None, false)]
    #[case::disabled(Some(false), false)]
    #[case::enabled(Some(true), true)]
    fn rbac_only_with_autoscaling(#[case] enabled: Option<bool>, #[case] expected: bool) {
        let cluster = autoscaling(enabled, None);
        assert_eq!(autoscaler_service_account(&cluster).is_some(), expected);
        assert_eq!(autoscaler_role(&cluster).is_some(), expected);
        assert_eq!(autoscaler_role_binding(&cluster).is_some(), expected);
    }

    #[rstest]
    #[case::named_after_the_cluster(None, Some("raycluster"))]
    #[case::empty_name_is_unset(Some(""), Some("raycluster"))]
    #[case::users_own_is_not_created(Some("my-sa"), None)]
    fn service_account_only_when_the_user_named_none(
        #[case] service_account: Option<&str>,
        #[case] expected: Option<&str>,
    ) {
        let account = autoscaler_service_account(&autoscaling(Some(true), service_account));
        assert_eq!(account.as_ref().and_then(|account| account.metadata.name.as_deref()), expected);
    }

    #[test]
    fn service_account_is_labelled_and_owned() {
        let account = autoscaler_service_account(&autoscaling(Some(true), None)).expect("autoscaling");
        assert_eq!(account.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(account.metadata.labels, kuberay_labels());
        assert_eq!(account.metadata.owner_references.map(|owners| owners.len()), Some(1));
    }

    #[test]
    fn role_lets_the_autoscaler_read_pods_and_patch_its_cluster() {
        let role = autoscaler_role(&autoscaling(Some(true), None)).expect("autoscaling");
        assert_eq!(role.metadata.name.as_deref(), Some("raycluster"));
        assert_eq!(role.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(role.metadata.labels, kuberay_labels());
        let rules: Vec<_> = role
            .rules
            .unwrap_or_default()
            .into_iter()
            .map(|rule| (rule.api_groups.unwrap_or_default(), rule.resources.unwrap_or_default(), rule.verbs))
            .collect();
        let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        assert_eq!(
            rules,
            vec![
                (strings(&[""]), strings(&["pods"]), strings(&["get", "list", "watch"])),
                (strings(&["ray.io"]), strings(&["rayclusters"]), strings(&["get", "patch"])),
            ]
        );
    }

    #[rstest]
    #[case::clusters_own_account(None, "raycluster")]
    #[case::users_account(Some("my-sa"), "my-sa")]
    #[case::users_account_clipped_by_check_name(Some("1-sa"), "r-sa")]
    fn role_binding_binds_the_head_service_account(#[case] service_account: Option<&str>, #[case] subject: &str) {
        let binding = autoscaler_role_binding(&autoscaling(Some(true), service_account)).expect("autoscaling");
        assert_eq!(binding.metadata.name.as_deref(), Some("raycluster"));
        assert_eq!(binding.metadata.labels, kuberay_labels());
        assert_eq!(
            binding.subjects,
            Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: subject.to_string(),
                namespace: Some("ns".to_string()),
                api_group: None,
            }])
        );
        assert_eq!(
            binding.role_ref,
            RoleRef {
                api_group: "rbac.authorization.k8s.io".to_string(),
                kind: "Role".to_string(),
                name: "raycluster".to_string()
            }
        );
    }

    #[test]
    fn long_cluster_names_are_clipped_by_check_name() {
        let mut cluster = autoscaling(Some(true), None);
        cluster.metadata.name = Some(format!("{}{}", "x".repeat(10), "a".repeat(50)));
        let clipped = "a".repeat(50);
        let binding = autoscaler_role_binding(&cluster).expect("autoscaling");
        assert_eq!(binding.metadata.name.as_deref(), Some(clipped.as_str()));
        assert_eq!(binding.role_ref.name, clipped);
        assert_eq!(binding.subjects.map(|subjects| subjects[0].name.clone()), Some(clipped.clone()));
        let role = autoscaler_role(&cluster).expect("autoscaling");
        assert_eq!(role.metadata.name.as_deref(), Some(clipped.as_str()));
        let account = autoscaler_service_account(&cluster).expect("autoscaling");
        assert_eq!(account.metadata.name.as_deref(), Some(clipped.as_str()));
    }
}
