//! The Ingress KubeRay v1.3.0 puts in front of a RayCluster's dashboard (`common/ingress.go`, spec §6.8).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::controller_owner_reference;
use super::names::{check_label, cluster_name, head_service_name, ingress_name};
use super::service::head_container_ports;
use crate::api::RayCluster;
use crate::api::constants::{
    APPLICATION_NAME, COMPONENT_NAME, DASHBOARD_PORT_NAME, DEFAULT_DASHBOARD_PORT, INGRESS_CLASS_ANNOTATION,
    K8S_APP_NAME_LABEL, K8S_CREATED_BY_LABEL, NODE_TYPE_HEAD, RAY_CLUSTER_LABEL, RAY_ID_LABEL,
};

const PATH_TYPE_EXACT: &str = "Exact";

/// `<c>-head-ingress` when `headGroupSpec.enableIngress` is true, else None.
pub fn head_ingress(cluster: &RayCluster) -> Option<Ingress> {
    if cluster.spec.head_group_spec.enable_ingress != Some(true) {
        return None;
    }
    let name = cluster_name(cluster);
    let cluster_annotations = cluster.metadata.annotations.clone().unwrap_or_default();
    let ingress_class_name = cluster_annotations.get(INGRESS_CLASS_ANNOTATION).cloned();
    // Every other cluster annotation is copied so that users can configure their ingress controller; the class goes
    // to `ingressClassName` only, because setting both the deprecated annotation and the field is rejected.
    let annotations: BTreeMap<String, String> =
        cluster_annotations.into_iter().filter(|(key, _)| key != INGRESS_CLASS_ANNOTATION).collect();
    let dashboard_port =
        head_container_ports(cluster).get(DASHBOARD_PORT_NAME).copied().unwrap_or(DEFAULT_DASHBOARD_PORT);
    let path = HTTPIngressPath {
        path: Some(format!("/{name}/(.*)")),
        path_type: PATH_TYPE_EXACT.to_string(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: head_service_name(cluster),
                port: Some(ServiceBackendPort { number: Some(dashboard_port), ..ServiceBackendPort::default() }),
            }),
            ..IngressBackend::default()
        },
    };
    Some(Ingress {
        metadata: ObjectMeta {
            name: Some(ingress_name(name)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (RAY_CLUSTER_LABEL.to_string(), name.to_string()),
                (RAY_ID_LABEL.to_string(), check_label(&format!("{name}-{NODE_TYPE_HEAD}"))),
                (K8S_APP_NAME_LABEL.to_string(), APPLICATION_NAME.to_string()),
                (K8S_CREATED_BY_LABEL.to_string(), COMPONENT_NAME.to_string()),
            ])),
            annotations: Some(annotations).filter(|annotations| !annotations.is_empty()),
            owner_references: Some(vec![controller_owner_reference(cluster)]),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name,
            rules: Some(vec![IngressRule {
                http: Some(HTTPIngressRuleValue { paths: vec![path] }),
                ..IngressRule::default()
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::build::service::tests::{cluster, cluster_with_ports, map, with_annotation};

    fn with_ingress(mut cluster: RayCluster, enable: Option<bool>) -> RayCluster {
        cluster.spec.head_group_spec.enable_ingress = enable;
        cluster
    }

    fn only_path(ingress: &Ingress) -> HTTPIngressPath {
        let rules = ingress.spec.as_ref().and_then(|spec| spec.rules.clone()).unwrap_or_default();
        assert_eq!(rules.len(), 1);
        let paths = rules.into_iter().flat_map(|rule| rule.http).flat_map(|http| http.paths).collect::<Vec<_>>();
        assert_eq!(paths.len(), 1);
        paths.into_iter().next().expect("one path")
    }

    #[rstest]
    #[case::unset(None, false)]
    #[case::disabled(Some(false), false)]
    #[case::enabled(Some(true), true)]
    fn ingress_only_when_enabled(#[case] enable: Option<bool>, #[case] expected: bool) {
        assert_eq!(head_ingress(&with_ingress(cluster(), enable)).is_some(), expected);
    }

    #[test]
    fn ingress_routes_the_cluster_path_to_the_head_dashboard() {
        let ingress = head_ingress(&with_ingress(cluster(), Some(true))).expect("enabled");
        assert_eq!(ingress.metadata.name.as_deref(), Some("raycluster-head-ingress"));
        assert_eq!(ingress.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            ingress.metadata.labels,
            Some(map(&[
                ("app.kubernetes.io/created-by", "kuberay-operator"),
                ("app.kubernetes.io/name", "kuberay"),
                ("ray.io/cluster", "raycluster"),
                ("ray.io/identifier", "raycluster-head"),
            ]))
        );
        assert_eq!(ingress.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        let path = only_path(&ingress);
        assert_eq!(path.path.as_deref(), Some("/raycluster/(.*)"));
        assert_eq!(path.path_type, "Exact");
        let backend = path.backend.service.expect("a Service backend");
        assert_eq!(backend.name, "raycluster-head-svc");
        assert_eq!(backend.port.and_then(|port| port.number), Some(8265));
    }

    #[rstest]
    #[case::declared_dashboard_port(&[("dashboard", 8300)], 8300)]
    #[case::no_dashboard_port_falls_back_to_8265(&[("gcs-server", 6379)], 8265)]
    fn ingress_backend_port_is_the_dashboard_port(#[case] declared: &[(&str, i32)], #[case] expected: i32) {
        let ingress = head_ingress(&with_ingress(cluster_with_ports(declared), Some(true))).expect("enabled");
        let port = only_path(&ingress).backend.service.and_then(|service| service.port).and_then(|port| port.number);
        assert_eq!(port, Some(expected));
    }

    #[test]
    fn ingress_backend_follows_a_user_head_service_name() {
        let mut cluster = with_ingress(cluster(), Some(true));
        cluster.spec.head_group_spec.head_service = Some(k8s_openapi::api::core::v1::Service {
            metadata: ObjectMeta { name: Some("mine".to_string()), ..ObjectMeta::default() },
            ..Default::default()
        });
        let ingress = head_ingress(&cluster).expect("enabled");
        assert_eq!(only_path(&ingress).backend.service.map(|service| service.name).as_deref(), Some("mine"));
    }

    #[rstest]
    #[case::no_annotations(&[], None, None)]
    #[case::class_goes_to_the_field_only(&[("kubernetes.io/ingress.class", "nginx")], Some("nginx"), None)]
    #[case::other_annotations_copied(
        &[("kubernetes.io/ingress.class", "nginx"), ("nginx.ingress.kubernetes.io/rewrite-target", "/$1")],
        Some("nginx"),
        Some(&[("nginx.ingress.kubernetes.io/rewrite-target", "/$1")][..]),
    )]
    fn ingress_copies_cluster_annotations_but_the_class(
        #[case] annotations: &[(&str, &str)],
        #[case] class: Option<&str>,
        #[case] copied: Option<&[(&str, &str)]>,
    ) {
        let cluster = annotations
            .iter()
            .fold(with_ingress(cluster(), Some(true)), |cluster, (key, value)| with_annotation(cluster, key, value));
        let ingress = head_ingress(&cluster).expect("enabled");
        assert_eq!(ingress.spec.and_then(|spec| spec.ingress_class_name).as_deref(), class);
        assert_eq!(ingress.metadata.annotations, copied.map(map));
    }
}
