//! The Services KubeRay v1.3.0 creates (`common/service.go`, spec §4.1 step 7, §6.7, §6.8): a RayCluster's head
//! Service, its optional serve Service and headless worker Service, and a RayService's own head and serve Services
//! that follow whichever cluster is serving.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::names::{
    check_label, check_name, cluster_name, head_service_name, headless_worker_service_name, serve_service_name,
    service_fqdn,
};
use super::{BuildError, controller_owner_reference};
use crate::api::constants::{
    APPLICATION_NAME, CLIENT_PORT_NAME, COMPONENT_NAME, DASHBOARD_PORT_NAME, DEFAULT_CLIENT_PORT,
    DEFAULT_DASHBOARD_PORT, DEFAULT_GCS_SERVER_PORT, DEFAULT_METRICS_PORT, DEFAULT_SERVING_PORT,
    ENABLE_SERVE_SERVICE_ANNOTATION, GCS_SERVER_PORT_NAME, K8S_APP_NAME_LABEL, K8S_CREATED_BY_LABEL, METRICS_PORT_NAME,
    NODE_TYPE_HEAD, NODE_TYPE_WORKER, RAY_CLUSTER_LABEL, RAY_CLUSTER_SERVING_SERVICE_LABEL, RAY_ID_LABEL,
    RAY_NODE_TYPE_LABEL, RAY_ORIGINATED_FROM_CR_NAME_LABEL, RAY_ORIGINATED_FROM_CRD_LABEL, SERVING_PORT_NAME,
};
use crate::api::raycluster::CreatorKind;
use crate::api::{RayCluster, RayService};
use crate::config::OperatorConfig;

/// KubeRay's `RayClusterHeadlessServiceLabelKey`: the label by which the headless worker Service is found again.
const HEADLESS_WORKER_SERVICE_LABEL: &str = "ray.io/headless-worker-svc";
const SERVICE_APP_PROTOCOL: &str = "tcp";
const SERVICE_TYPE_CLUSTER_IP: &str = "ClusterIP";
const CLUSTER_IP_NONE: &str = "None";
/// The head Pod label value that puts a Pod behind a RayService's serve Service.
const SERVE_SELECTOR_TRUE: &str = "true";
/// Documents without a namespace are applied to this one.
const DEFAULT_NAMESPACE: &str = "default";

/// The RayCluster's head Service `<c>-head-svc` (§6.8), merged into the user's `headService` when there is one.
pub fn head_service(cluster: &RayCluster, config: &OperatorConfig) -> Service {
    let app_name = cluster
        .spec
        .head_group_spec
        .template
        .metadata
        .as_ref()
        .and_then(|meta| meta.labels.as_ref())
        .and_then(|labels| labels.get(K8S_APP_NAME_LABEL))
        .map_or(APPLICATION_NAME, String::as_str);
    let annotations = cluster.spec.head_service_annotations.clone().unwrap_or_default();
    build_head_service(cluster, app_name, annotations, config)
}

/// The standalone RayCluster's serve Service (annotation `ray.io/enable-serve-service: "true"`); Ok(None) without
/// the annotation; Err(BuildError::MissingServePort) when the head container has no port named `serve`.
pub fn serve_service(cluster: &RayCluster) -> Result<Option<Service>, BuildError> {
    let enabled = cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(ENABLE_SERVE_SERVICE_ANNOTATION))
        .is_some_and(|value| value == "true");
    if !enabled {
        return Ok(None);
    }
    let ports = serve_port(cluster);
    if ports.is_empty() {
        return Err(BuildError::MissingServePort);
    }
    let name = cluster_name(cluster);
    Ok(Some(Service {
        metadata: ObjectMeta {
            name: Some(serve_service_name(name)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(serve_service_labels(name, CreatorKind::RayCluster)),
            owner_references: Some(vec![controller_owner_reference(cluster)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(RAY_CLUSTER_LABEL.to_string(), name.to_string())])),
            ports: Some(ports),
            type_: non_empty(cluster.spec.head_group_spec.service_type.as_deref()),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}

/// `<c>-headless-worker-svc` when any group has numOfHosts > 1, else None.
pub fn headless_worker_service(cluster: &RayCluster) -> Option<Service> {
    if !cluster.spec.worker_groups().iter().any(|group| group.num_of_hosts > 1) {
        return None;
    }
    let name = cluster_name(cluster);
    Some(Service {
        metadata: ObjectMeta {
            name: Some(headless_worker_service_name(name)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(HEADLESS_WORKER_SERVICE_LABEL.to_string(), name.to_string())])),
            owner_references: Some(vec![controller_owner_reference(cluster)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(CLUSTER_IP_NONE.to_string()),
            selector: Some(BTreeMap::from([
                (RAY_CLUSTER_LABEL.to_string(), name.to_string()),
                (RAY_NODE_TYPE_LABEL.to_string(), NODE_TYPE_WORKER.to_string()),
            ])),
            type_: Some(SERVICE_TYPE_CLUSTER_IP.to_string()),
            // Multi-host workers find each other through it before any of them is ready.
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// RayService `<s>-head-svc` pointing at `cluster` (a copy of that cluster's head Service, §4.1 step 7).
pub fn rayservice_head_service(service: &RayService, cluster: &RayCluster, config: &OperatorConfig) -> Service {
    // KubeRay builds this copy without the template's app name label and without `headServiceAnnotations`.
    let mut head = build_head_service(cluster, APPLICATION_NAME, BTreeMap::new(), config);
    let service_name = service.metadata.name.as_deref().unwrap_or_default();
    head.metadata.name = Some(check_name(&format!("{service_name}-head-svc")));
    head.metadata.namespace = service.metadata.namespace.clone();
    head.metadata.labels = Some(BTreeMap::from([
        (RAY_ORIGINATED_FROM_CR_NAME_LABEL.to_string(), service_name.to_string()),
        (RAY_ORIGINATED_FROM_CRD_LABEL.to_string(), CreatorKind::RayService.as_str().to_string()),
        (RAY_NODE_TYPE_LABEL.to_string(), NODE_TYPE_HEAD.to_string()),
        (RAY_ID_LABEL.to_string(), check_label(&format!("{service_name}-{NODE_TYPE_HEAD}"))),
    ]));
    head.metadata.owner_references = Some(vec![controller_owner_reference(service)]);
    head
}

/// RayService serve Service `<s>-serve-svc` (or `spec.serveService.metadata.name`), selector
/// {ray.io/cluster: <cluster>, ray.io/serve: "true"}, one port named `serve`.
pub fn rayservice_serve_service(service: &RayService, cluster: &RayCluster) -> Result<Service, BuildError> {
    let service_name = service.metadata.name.as_deref().unwrap_or_default();
    let cluster_ports = serve_port(cluster);
    let user_service = service.spec.serve_service.as_ref();
    if cluster_ports.is_empty() && user_service.is_none() {
        return Err(BuildError::MissingServePort);
    }
    let defaults = ServiceDefaults {
        name: serve_service_name(service_name),
        namespace: service.metadata.namespace.clone(),
        labels: serve_service_labels(service_name, CreatorKind::RayService),
        selector: BTreeMap::from([
            (RAY_CLUSTER_LABEL.to_string(), cluster_name(cluster).to_string()),
            (RAY_CLUSTER_SERVING_SERVICE_LABEL.to_string(), SERVE_SELECTOR_TRUE.to_string()),
        ]),
        annotations: BTreeMap::new(),
        service_type: non_empty(
            service.spec.ray_cluster_config.as_ref().and_then(|spec| spec.head_group_spec.service_type.as_deref()),
        ),
        owner_references: Some(vec![controller_owner_reference(service)]),
    };
    Ok(match user_service {
        Some(user) => {
            // The cluster's serve port wins; only without one is the user's port named `serve` kept.
            let ports = if cluster_ports.is_empty() { user_serve_port(user) } else { cluster_ports };
            let mut merged = defaults.merge_into(user.clone());
            merged.spec.get_or_insert_with(ServiceSpec::default).ports = Some(ports);
            merged
        }
        None => defaults.into_service(cluster_ports),
    })
}

/// `<svc>.<ns>.svc.<domain>:<port named dashboard>` of a cluster's head Service (§3.2 FetchHeadServiceURL);
/// Err(BuildError::MissingDashboardPort) when no port is named `dashboard`.
pub fn dashboard_address(cluster: &RayCluster, config: &OperatorConfig) -> Result<String, BuildError> {
    let head = head_service(cluster, config);
    let port = head
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_ref())
        .and_then(|ports| ports.iter().find(|port| port.name.as_deref() == Some(DASHBOARD_PORT_NAME)))
        .map(|port| port.port)
        .ok_or(BuildError::MissingDashboardPort)?;
    let name = head.metadata.name.as_deref().unwrap_or_default();
    let namespace = head.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    Ok(format!("{}:{port}", service_fqdn(name, namespace, &config.cluster_domain)))
}

/// KubeRay's getServicePorts, by name: the head Ray container's ports (an unnamed one is `<port>-port`), or the 5
/// defaults when it declares none, plus `metrics` when missing. The Ray container is the first one.
pub(crate) fn head_container_ports(cluster: &RayCluster) -> BTreeMap<String, i32> {
    let declared = cluster
        .spec
        .head_group_spec
        .template
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.first())
        .and_then(|container| container.ports.as_ref());
    let mut ports: BTreeMap<String, i32> = declared
        .into_iter()
        .flatten()
        .map(|port| {
            let name = port.name.clone().filter(|name| !name.is_empty());
            (name.unwrap_or_else(|| format!("{}-port", port.container_port)), port.container_port)
        })
        .collect();
    if ports.is_empty() {
        ports = BTreeMap::from([
            (CLIENT_PORT_NAME.to_string(), DEFAULT_CLIENT_PORT),
            (GCS_SERVER_PORT_NAME.to_string(), DEFAULT_GCS_SERVER_PORT),
            (DASHBOARD_PORT_NAME.to_string(), DEFAULT_DASHBOARD_PORT),
            (METRICS_PORT_NAME.to_string(), DEFAULT_METRICS_PORT),
            (SERVING_PORT_NAME.to_string(), DEFAULT_SERVING_PORT),
        ]);
    }
    ports.entry(METRICS_PORT_NAME.to_string()).or_insert(DEFAULT_METRICS_PORT);
    ports
}

fn build_head_service(
    cluster: &RayCluster,
    app_name: &str,
    annotations: BTreeMap<String, String>,
    config: &OperatorConfig,
) -> Service {
    let name = cluster_name(cluster);
    let selector = BTreeMap::from([
        (RAY_CLUSTER_LABEL.to_string(), name.to_string()),
        (RAY_NODE_TYPE_LABEL.to_string(), NODE_TYPE_HEAD.to_string()),
        (RAY_ID_LABEL.to_string(), check_label(&format!("{name}-{NODE_TYPE_HEAD}"))),
        (K8S_APP_NAME_LABEL.to_string(), app_name.to_string()),
        (K8S_CREATED_BY_LABEL.to_string(), COMPONENT_NAME.to_string()),
    ]);
    // Sorted by name (the map's order), so that a rebuilt Service never differs only in its port order.
    let ports: Vec<ServicePort> = head_container_ports(cluster)
        .into_iter()
        .map(|(name, port)| ServicePort {
            name: Some(name),
            port,
            app_protocol: Some(SERVICE_APP_PROTOCOL.to_string()),
            ..ServicePort::default()
        })
        .collect();
    let service_type = non_empty(cluster.spec.head_group_spec.service_type.as_deref());
    let defaults = ServiceDefaults {
        name: head_service_name(cluster),
        namespace: cluster.metadata.namespace.clone(),
        labels: selector.clone(),
        selector,
        annotations,
        service_type,
        owner_references: Some(vec![controller_owner_reference(cluster)]),
    };
    match &cluster.spec.head_group_spec.head_service {
        Some(user) => {
            // KubeRay neither sorts these nor makes a user's Service headless.
            let mut merged = defaults.merge_into(user.clone());
            merged.spec.get_or_insert_with(ServiceSpec::default).ports.get_or_insert_with(Vec::new).extend(ports);
            merged
        }
        None => {
            let headless = !config.enable_ray_head_cluster_ip_service
                && defaults.service_type.as_deref().is_none_or(|kind| kind == SERVICE_TYPE_CLUSTER_IP);
            let mut service = defaults.into_service(ports);
            if headless {
                // At most one head Pod stands behind it, and its address is wanted even before it is ready.
                let spec = service.spec.get_or_insert_with(ServiceSpec::default);
                spec.cluster_ip = Some(CLUSTER_IP_NONE.to_string());
                spec.publish_not_ready_addresses = Some(true);
            }
            service
        }
    }
}

/// What KubeRay imposes on a Service it builds, and how it merges a user-provided one (`headService`,
/// `serveService`): the selector is replaced, KubeRay's labels and annotations win, and the name and type are only
/// defaulted, while the namespace is always the owner's.
struct ServiceDefaults {
    name: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    service_type: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
}

impl ServiceDefaults {
    fn into_service(self, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(self.name),
                namespace: self.namespace,
                labels: Some(self.labels),
                annotations: Some(self.annotations).filter(|annotations| !annotations.is_empty()),
                owner_references: self.owner_references,
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(self.selector),
                ports: Some(ports),
                type_: self.service_type,
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn merge_into(self, mut user: Service) -> Service {
        let metadata = &mut user.metadata;
        metadata.labels.get_or_insert_with(BTreeMap::new).extend(self.labels);
        let mut annotations = metadata.annotations.take().unwrap_or_default();
        annotations.extend(self.annotations);
        metadata.annotations = Some(annotations).filter(|annotations| !annotations.is_empty());
        if metadata.name.as_deref().is_none_or(str::is_empty) {
            metadata.name = Some(self.name);
        }
        metadata.namespace = self.namespace;
        metadata.owner_references = self.owner_references;
        let spec = user.spec.get_or_insert_with(ServiceSpec::default);
        spec.selector = Some(self.selector);
        if spec.type_.as_deref().is_none_or(str::is_empty) {
            spec.type_ = self.service_type;
        }
        user.status = None;
        user
    }
}

/// The one `serve` port of a serve Service, from the head container (no appProtocol); empty when there is none.
fn serve_port(cluster: &RayCluster) -> Vec<ServicePort> {
    head_container_ports(cluster)
        .get(SERVING_PORT_NAME)
        .map(|port| ServicePort { name: Some(SERVING_PORT_NAME.to_string()), port: *port, ..ServicePort::default() })
        .into_iter()
        .collect()
}

/// The first port named `serve` of a user's `serveService`, reduced to its name and number.
fn user_serve_port(user: &Service) -> Vec<ServicePort> {
    user.spec
        .as_ref()
        .and_then(|spec| spec.ports.as_ref())
        .and_then(|ports| ports.iter().find(|port| port.name.as_deref() == Some(SERVING_PORT_NAME)))
        .map(|port| ServicePort { name: port.name.clone(), port: port.port, ..ServicePort::default() })
        .into_iter()
        .collect()
}

fn serve_service_labels(owner_name: &str, owner_kind: CreatorKind) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RAY_ORIGINATED_FROM_CR_NAME_LABEL.to_string(), owner_name.to_string()),
        (RAY_ORIGINATED_FROM_CRD_LABEL.to_string(), owner_kind.as_str().to_string()),
        (RAY_CLUSTER_SERVING_SERVICE_LABEL.to_string(), format!("{owner_name}-serve")),
    ])
}

/// An empty Go string is an absent field.
fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|value| !value.is_empty()).map(str::to_string)
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use rstest::rstest;

    use super::*;
    use crate::api::RayServiceSpec;
    use crate::api::document::{RayObject, decode, parse_yaml_stream};
    use crate::api::raycluster::{HeadGroupSpec, RayClusterSpec, WorkerGroupSpec};

    fn container_ports(ports: &[(&str, i32)]) -> Option<Vec<ContainerPort>> {
        let ports: Vec<ContainerPort> = ports
            .iter()
            .map(|(name, port)| ContainerPort {
                name: Some(name.to_string()).filter(|name| !name.is_empty()),
                container_port: *port,
                ..ContainerPort::default()
            })
            .collect();
        Some(ports).filter(|ports| !ports.is_empty())
    }

    /// `raycluster` in `ns`, with a uid, whose head Ray container declares `ports` ("" for an unnamed port).
    pub(crate) fn cluster_with_ports(ports: &[(&str, i32)]) -> RayCluster {
        let mut cluster = RayCluster::new(
            "raycluster",
            RayClusterSpec {
                head_group_spec: HeadGroupSpec {
                    template: PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            containers: vec![Container {
                                name: "ray-head".to_string(),
                                ports: container_ports(ports),
                                ..Container::default()
                            }],
                            ..PodSpec::default()
                        }),
                    },
                    ..HeadGroupSpec::default()
                },
                ..RayClusterSpec::default()
            },
        );
        cluster.metadata.namespace = Some("ns".to_string());
        cluster.metadata.uid = Some("cluster-uid".to_string());
        cluster
    }

    pub(crate) fn cluster() -> RayCluster {
        cluster_with_ports(&[])
    }

    fn with_service_type(mut cluster: RayCluster, service_type: Option<&str>) -> RayCluster {
        cluster.spec.head_group_spec.service_type = service_type.map(str::to_string);
        cluster
    }

    pub(crate) fn with_annotation(mut cluster: RayCluster, key: &str, value: &str) -> RayCluster {
        cluster.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(key.to_string(), value.to_string());
        cluster
    }

    pub(crate) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn ports_of(service: &Service) -> Vec<(String, i32, Option<String>)> {
        service
            .spec
            .iter()
            .flat_map(|spec| spec.ports.iter().flatten())
            .map(|port| (port.name.clone().unwrap_or_default(), port.port, port.app_protocol.clone()))
            .collect()
    }

    fn tcp(name: &str, port: i32) -> (String, i32, Option<String>) {
        (name.to_string(), port, Some("tcp".to_string()))
    }

    fn plain(name: &str, port: i32) -> (String, i32, Option<String>) {
        (name.to_string(), port, None)
    }

    fn spec_of(service: &Service) -> ServiceSpec {
        service.spec.clone().unwrap_or_default()
    }

    fn owner_of(service: &Service) -> Vec<(String, String, String, Option<bool>)> {
        service
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|owner| (owner.kind.clone(), owner.name.clone(), owner.uid.clone(), owner.controller))
            .collect()
    }

    fn head_labels(app_name: &str) -> BTreeMap<String, String> {
        map(&[
            ("app.kubernetes.io/created-by", "kuberay-operator"),
            ("app.kubernetes.io/name", app_name),
            ("ray.io/cluster", "raycluster"),
            ("ray.io/identifier", "raycluster-head"),
            ("ray.io/node-type", "head"),
        ])
    }

    #[rstest]
    #[case::five_defaults_when_none_declared(&[], vec![
        tcp("client", 10001), tcp("dashboard", 8265), tcp("gcs-server", 6379), tcp("metrics", 8080), tcp("serve", 8000),
    ])]
    #[case::declared_sorted_by_name_unnamed_port_named_after_number_metrics_added(
        &[("gcs-server", 6379), ("dashboard", 8265), ("", 9999)],
        vec![tcp("9999-port", 9999), tcp("dashboard", 8265), tcp("gcs-server", 6379), tcp("metrics", 8080)],
    )]
    #[case::declared_metrics_kept(&[("metrics", 9090), ("client", 10001)], vec![tcp("client", 10001), tcp("metrics", 9090)])]
    fn head_service_ports_follow_the_head_container(
        #[case] declared: &[(&str, i32)],
        #[case] expected: Vec<(String, i32, Option<String>)>,
    ) {
        assert_eq!(ports_of(&head_service(&cluster_with_ports(declared), &OperatorConfig::default())), expected);
    }

    #[test]
    fn head_service_is_named_labelled_and_owned_after_the_cluster() {
        let service = head_service(&cluster(), &OperatorConfig::default());
        assert_eq!(service.metadata.name.as_deref(), Some("raycluster-head-svc"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(service.metadata.labels, Some(head_labels("kuberay")));
        assert_eq!(spec_of(&service).selector, Some(head_labels("kuberay")));
        assert_eq!(service.metadata.annotations, None);
        assert_eq!(
            owner_of(&service),
            vec![("RayCluster".to_string(), "raycluster".to_string(), "cluster-uid".to_string(), Some(true))]
        );
    }

    #[test]
    fn head_service_takes_the_app_name_of_the_head_template() {
        let mut cluster = cluster();
        cluster.spec.head_group_spec.template.metadata =
            Some(ObjectMeta { labels: Some(map(&[(K8S_APP_NAME_LABEL, "my-app")])), ..ObjectMeta::default() });
        let service = head_service(&cluster, &OperatorConfig::default());
        assert_eq!(service.metadata.labels, Some(head_labels("my-app")));
        assert_eq!(spec_of(&service).selector, Some(head_labels("my-app")));
    }

    #[test]
    fn head_service_carries_head_service_annotations() {
        let mut cluster = cluster();
        cluster.spec.head_service_annotations = Some(map(&[("team", "ray")]));
        let service = head_service(&cluster, &OperatorConfig::default());
        assert_eq!(service.metadata.annotations, Some(map(&[("team", "ray")])));
    }

    #[rstest]
    #[case::unset_is_headless(None, false, Some("None"), Some(true), None)]
    #[case::empty_is_headless(Some(""), false, Some("None"), Some(true), None)]
    #[case::cluster_ip_is_headless(Some("ClusterIP"), false, Some("None"), Some(true), Some("ClusterIP"))]
    #[case::cluster_ip_service_knob(Some("ClusterIP"), true, None, None, Some("ClusterIP"))]
    #[case::unset_with_knob(None, true, None, None, None)]
    #[case::node_port_is_not_headless(Some("NodePort"), false, None, None, Some("NodePort"))]
    #[case::load_balancer_is_not_headless(Some("LoadBalancer"), false, None, None, Some("LoadBalancer"))]
    fn head_service_is_headless_for_cluster_ip_types(
        #[case] service_type: Option<&str>,
        #[case] enable_cluster_ip_service: bool,
        #[case] cluster_ip: Option<&str>,
        #[case] publish_not_ready: Option<bool>,
        #[case] expected_type: Option<&str>,
    ) {
        let config =
            OperatorConfig { enable_ray_head_cluster_ip_service: enable_cluster_ip_service, ..Default::default() };
        let spec = spec_of(&head_service(&with_service_type(cluster(), service_type), &config));
        assert_eq!(spec.cluster_ip.as_deref(), cluster_ip);
        assert_eq!(spec.publish_not_ready_addresses, publish_not_ready);
        assert_eq!(spec.type_.as_deref(), expected_type);
    }

    fn user_service(name: Option<&str>, service_type: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: name.map(str::to_string),
                namespace: Some("elsewhere".to_string()),
                labels: Some(map(&[("custom", "label"), (RAY_CLUSTER_LABEL, "not-mine")])),
                annotations: Some(map(&[("custom", "annotation"), ("team", "user")])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(map(&[("app", "whatever")])),
                type_: service_type.map(str::to_string),
                ports: Some(vec![ServicePort {
                    name: Some("user".to_string()),
                    port: 12345,
                    target_port: Some(IntOrString::Int(12345)),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn cluster_with_user_head_service(name: Option<&str>, user_type: Option<&str>) -> RayCluster {
        let mut cluster =
            with_service_type(cluster_with_ports(&[("dashboard", 8265), ("gcs-server", 6379)]), Some("NodePort"));
        cluster.spec.head_group_spec.head_service = Some(user_service(name, user_type));
        cluster.spec.head_service_annotations = Some(map(&[("team", "ray")]));
        cluster
    }

    #[test]
    fn user_head_service_is_merged_with_kuberays() {
        let service = head_service(&cluster_with_user_head_service(Some("mine"), None), &OperatorConfig::default());
        let mut labels = head_labels("kuberay");
        labels.insert("custom".to_string(), "label".to_string());
        assert_eq!(service.metadata.labels, Some(labels), "KubeRay's labels win over the user's");
        assert_eq!(spec_of(&service).selector, Some(head_labels("kuberay")), "the user's selector is ignored");
        assert_eq!(
            service.metadata.annotations,
            Some(map(&[("custom", "annotation"), ("team", "ray")])),
            "headServiceAnnotations win"
        );
        assert_eq!(
            ports_of(&service),
            vec![plain("user", 12345), tcp("dashboard", 8265), tcp("gcs-server", 6379), tcp("metrics", 8080)],
            "the default ports are appended"
        );
        assert_eq!(service.metadata.namespace.as_deref(), Some("ns"), "the namespace is always the cluster's");
        assert_eq!(service.metadata.owner_references.map(|owners| owners.len()), Some(1));
    }

    #[rstest]
    #[case::name_kept(Some("mine"), "mine")]
    #[case::name_defaulted(None, "raycluster-head-svc")]
    #[case::empty_name_defaulted(Some(""), "raycluster-head-svc")]
    fn user_head_service_name_is_defaulted(#[case] name: Option<&str>, #[case] expected: &str) {
        let service = head_service(&cluster_with_user_head_service(name, None), &OperatorConfig::default());
        assert_eq!(service.metadata.name.as_deref(), Some(expected));
    }

    #[rstest]
    #[case::type_defaulted_to_service_type(None, Some("NodePort"))]
    #[case::empty_type_defaulted(Some(""), Some("NodePort"))]
    #[case::user_type_kept(Some("LoadBalancer"), Some("LoadBalancer"))]
    fn user_head_service_type_is_defaulted(#[case] user_type: Option<&str>, #[case] expected: Option<&str>) {
        let service = head_service(&cluster_with_user_head_service(None, user_type), &OperatorConfig::default());
        assert_eq!(spec_of(&service).type_.as_deref(), expected);
    }

    #[test]
    fn user_head_service_of_cluster_ip_type_is_not_made_headless() {
        let cluster = with_service_type(cluster_with_user_head_service(None, None), None);
        let spec = spec_of(&head_service(&cluster, &OperatorConfig::default()));
        assert_eq!((spec.cluster_ip, spec.publish_not_ready_addresses, spec.type_), (None, None, None));
    }

    #[test]
    fn custom_head_service_sample_is_merged() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/kuberay-v1.3.0/samples/ray-cluster.custom-head-service.yaml"
        );
        let text = std::fs::read_to_string(path).expect("the sample is readable");
        let documents = parse_yaml_stream(&text).expect("the sample is YAML");
        let Some(Ok(Some(RayObject::Cluster(cluster)))) = documents.first().map(decode) else {
            panic!("the sample is one RayCluster");
        };
        let service = head_service(&cluster, &OperatorConfig::default());
        assert_eq!(service.metadata.name.as_deref(), Some("custom-ray-head-service-name"));
        assert_eq!(service.metadata.namespace, None);
        let mut labels = head_labels("kuberay");
        labels.insert("ray.io/cluster".to_string(), "custom-head-svc".to_string());
        labels.insert("ray.io/identifier".to_string(), "custom-head-svc-head".to_string());
        let selector = labels.clone();
        labels.insert("custom-label".to_string(), "custom-ray-head-service-label".to_string());
        assert_eq!(service.metadata.labels, Some(labels));
        assert_eq!(
            service.metadata.annotations,
            Some(map(&[("custom-annotation", "custom-ray-head-service-annotation")]))
        );
        let spec = spec_of(&service);
        assert_eq!(spec.selector, Some(selector));
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(
            ports_of(&service),
            vec![
                plain("custom-ray-head-service-port", 12345),
                tcp("client", 10001),
                tcp("dashboard", 8265),
                tcp("gcs-server", 6379),
                tcp("metrics", 8080),
            ]
        );
        assert_eq!(
            spec.ports.iter().flatten().next().and_then(|port| port.target_port.clone()),
            Some(IntOrString::Int(12345)),
            "the user's ports are kept as written"
        );
    }

    #[rstest]
    #[case::no_annotation(None)]
    #[case::false_value(Some("false"))]
    #[case::only_lower_case_true(Some("True"))]
    fn serve_service_needs_the_annotation(#[case] value: Option<&str>) {
        let cluster = match value {
            Some(value) => with_annotation(cluster(), ENABLE_SERVE_SERVICE_ANNOTATION, value),
            None => cluster(),
        };
        assert_eq!(serve_service(&cluster), Ok(None));
    }

    #[rstest]
    #[case::default_serve_port(&[], None, 8000, None)]
    #[case::declared_serve_port(&[("serve", 9000)], Some("NodePort"), 9000, Some("NodePort"))]
    fn serve_service_of_a_standalone_cluster(
        #[case] declared: &[(&str, i32)],
        #[case] service_type: Option<&str>,
        #[case] serve_port: i32,
        #[case] expected_type: Option<&str>,
    ) {
        let cluster = with_annotation(
            with_service_type(cluster_with_ports(declared), service_type),
            ENABLE_SERVE_SERVICE_ANNOTATION,
            "true",
        );
        let service = serve_service(&cluster).expect("buildable").expect("enabled");
        assert_eq!(service.metadata.name.as_deref(), Some("raycluster-serve-svc"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            service.metadata.labels,
            Some(map(&[
                ("ray.io/originated-from-cr-name", "raycluster"),
                ("ray.io/originated-from-crd", "RayCluster"),
                ("ray.io/serve", "raycluster-serve"),
            ]))
        );
        let spec = spec_of(&service);
        assert_eq!(spec.selector, Some(map(&[("ray.io/cluster", "raycluster")])));
        assert_eq!(spec.type_.as_deref(), expected_type);
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(ports_of(&service), vec![plain("serve", serve_port)]);
        assert_eq!(owner_of(&service).len(), 1);
    }

    #[test]
    fn serve_service_without_a_serve_port_is_an_error() {
        let cluster =
            with_annotation(cluster_with_ports(&[("dashboard", 8265)]), ENABLE_SERVE_SERVICE_ANNOTATION, "true");
        let error = serve_service(&cluster).err().map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "Please specify the port named 'serve' in the Ray head container; otherwise, the Kubernetes service for Ray Serve will not be created."
            )
        );
    }

    fn with_hosts(mut cluster: RayCluster, hosts: &[i32]) -> RayCluster {
        cluster.spec.worker_group_specs = Some(
            hosts
                .iter()
                .enumerate()
                .map(|(index, hosts)| WorkerGroupSpec {
                    group_name: format!("group-{index}"),
                    num_of_hosts: *hosts,
                    ..WorkerGroupSpec::default()
                })
                .collect(),
        );
        cluster
    }

    #[rstest]
    #[case::no_groups(&[], false)]
    #[case::single_host_groups(&[1, 1], false)]
    #[case::one_multi_host_group(&[1, 4], true)]
    fn headless_worker_service_only_for_multi_host_groups(#[case] hosts: &[i32], #[case] expected: bool) {
        assert_eq!(headless_worker_service(&with_hosts(cluster(), hosts)).is_some(), expected);
    }

    #[test]
    fn headless_worker_service_selects_the_workers() {
        let service = headless_worker_service(&with_hosts(cluster(), &[2])).expect("multi-host");
        assert_eq!(service.metadata.name.as_deref(), Some("raycluster-headless-worker-svc"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(service.metadata.labels, Some(map(&[("ray.io/headless-worker-svc", "raycluster")])));
        let spec = spec_of(&service);
        assert_eq!(spec.selector, Some(map(&[("ray.io/cluster", "raycluster"), ("ray.io/node-type", "worker")])));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.ports, None);
        assert_eq!(owner_of(&service).len(), 1);
    }

    fn ray_service(serve_service: Option<Service>, service_type: Option<&str>) -> RayService {
        let mut service = RayService::new(
            "my-svc",
            RayServiceSpec {
                serve_service,
                ray_cluster_config: Some(with_service_type(cluster(), service_type).spec),
                ..RayServiceSpec::default()
            },
        );
        service.metadata.namespace = Some("ns".to_string());
        service.metadata.uid = Some("service-uid".to_string());
        service
    }

    #[test]
    fn rayservice_head_service_copies_the_clusters_with_its_own_name_and_labels() {
        let mut cluster = cluster_with_ports(&[("dashboard", 8265)]);
        cluster.metadata.name = Some("my-svc-raycluster-abcde".to_string());
        cluster.spec.head_service_annotations = Some(map(&[("team", "ray")]));
        cluster.spec.head_group_spec.template.metadata =
            Some(ObjectMeta { labels: Some(map(&[(K8S_APP_NAME_LABEL, "my-app")])), ..ObjectMeta::default() });
        let service = rayservice_head_service(&ray_service(None, None), &cluster, &OperatorConfig::default());
        assert_eq!(service.metadata.name.as_deref(), Some("my-svc-head-svc"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            service.metadata.labels,
            Some(map(&[
                ("ray.io/identifier", "my-svc-head"),
                ("ray.io/node-type", "head"),
                ("ray.io/originated-from-cr-name", "my-svc"),
                ("ray.io/originated-from-crd", "RayService"),
            ]))
        );
        assert_eq!(service.metadata.annotations, None, "KubeRay builds it without headServiceAnnotations");
        let spec = spec_of(&service);
        assert_eq!(
            spec.selector,
            Some(map(&[
                ("app.kubernetes.io/created-by", "kuberay-operator"),
                ("app.kubernetes.io/name", "kuberay"),
                ("ray.io/cluster", "my-svc-raycluster-abcde"),
                ("ray.io/identifier", "my-svc-raycluster-abcde-head"),
                ("ray.io/node-type", "head"),
            ]))
        );
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(ports_of(&service), vec![tcp("dashboard", 8265), tcp("metrics", 8080)]);
        assert_eq!(
            owner_of(&service),
            vec![("RayService".to_string(), "my-svc".to_string(), "service-uid".to_string(), Some(true))]
        );
    }

    fn serve_port_service(name: Option<&str>, ports: &[(&str, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: name.map(str::to_string),
                labels: Some(map(&[("custom", "label"), ("ray.io/serve", "mine")])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(map(&[("app", "whatever")])),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port)| ServicePort {
                            name: Some(name.to_string()),
                            port: *port,
                            target_port: Some(IntOrString::Int(*port)),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    #[rstest]
    #[case::cluster_serve_port(&[], None, vec![plain("serve", 8000)], "my-svc-serve-svc")]
    #[case::cluster_port_wins_over_users(
        &[],
        Some(serve_port_service(Some("user-serve"), &[("other", 1), ("serve", 9000)])),
        vec![plain("serve", 8000)],
        "user-serve",
    )]
    #[case::users_serve_port_without_clusters(
        &[("dashboard", 8265)],
        Some(serve_port_service(None, &[("other", 1), ("serve", 9000)])),
        vec![plain("serve", 9000)],
        "my-svc-serve-svc",
    )]
    #[case::no_serve_port_anywhere_with_user_service(
        &[("dashboard", 8265)],
        Some(serve_port_service(None, &[("other", 1)])),
        vec![],
        "my-svc-serve-svc",
    )]
    fn rayservice_serve_service_has_one_serve_port(
        #[case] declared: &[(&str, i32)],
        #[case] user: Option<Service>,
        #[case] expected_ports: Vec<(String, i32, Option<String>)>,
        #[case] expected_name: &str,
    ) {
        let has_user = user.is_some();
        let mut cluster = cluster_with_ports(declared);
        cluster.metadata.name = Some("my-svc-raycluster-abcde".to_string());
        let service = rayservice_serve_service(&ray_service(user, None), &cluster).expect("buildable");
        assert_eq!(service.metadata.name.as_deref(), Some(expected_name));
        assert_eq!(service.metadata.namespace.as_deref(), Some("ns"));
        let mut labels = map(&[
            ("ray.io/originated-from-cr-name", "my-svc"),
            ("ray.io/originated-from-crd", "RayService"),
            ("ray.io/serve", "my-svc-serve"),
        ]);
        if has_user {
            labels.insert("custom".to_string(), "label".to_string());
        }
        assert_eq!(service.metadata.labels, Some(labels), "KubeRay's labels win over the user's");
        let spec = spec_of(&service);
        assert_eq!(
            spec.selector,
            Some(map(&[("ray.io/cluster", "my-svc-raycluster-abcde"), ("ray.io/serve", "true")]))
        );
        assert_eq!(ports_of(&service), expected_ports);
        assert!(spec.ports.iter().flatten().all(|port| port.target_port.is_none()), "only name and port are kept");
        assert_eq!(owner_of(&service).first().map(|owner| owner.0.as_str()), Some("RayService"));
    }

    #[rstest]
    #[case::from_the_rayservice_spec(None, Some("NodePort"), Some("NodePort"))]
    #[case::user_type_kept(Some("LoadBalancer"), Some("NodePort"), Some("LoadBalancer"))]
    #[case::unset(None, None, None)]
    fn rayservice_serve_service_type(
        #[case] user_type: Option<&str>,
        #[case] service_type: Option<&str>,
        #[case] expected: Option<&str>,
    ) {
        let mut user = serve_port_service(None, &[("serve", 9000)]);
        if let Some(spec) = user.spec.as_mut() {
            spec.type_ = user_type.map(str::to_string);
        }
        let service = rayservice_serve_service(&ray_service(Some(user), service_type), &cluster()).expect("buildable");
        assert_eq!(spec_of(&service).type_.as_deref(), expected);
    }

    #[test]
    fn rayservice_serve_service_without_any_serve_port_is_an_error() {
        let result = rayservice_serve_service(&ray_service(None, None), &cluster_with_ports(&[("dashboard", 8265)]));
        assert_eq!(result, Err(BuildError::MissingServePort));
    }

    #[rstest]
    #[case::default_head_service(cluster(), "cluster.local", Ok("raycluster-head-svc.ns.svc.cluster.local:8265"))]
    #[case::declared_dashboard_port(
        cluster_with_ports(&[("dashboard", 8300)]),
        "example.org",
        Ok("raycluster-head-svc.ns.svc.example.org:8300"),
    )]
    #[case::user_head_service_name(
        cluster_with_user_head_service(Some("mine"), None),
        "cluster.local",
        Ok("mine.ns.svc.cluster.local:8265")
    )]
    #[case::no_namespace_is_default(
        { let mut cluster = cluster(); cluster.metadata.namespace = None; cluster },
        "cluster.local",
        Ok("raycluster-head-svc.default.svc.cluster.local:8265"),
    )]
    #[case::no_dashboard_port(cluster_with_ports(&[("gcs-server", 6379)]), "cluster.local", Err(BuildError::MissingDashboardPort))]
    fn dashboard_address_is_the_head_service_fqdn(
        #[case] cluster: RayCluster,
        #[case] domain: &str,
        #[case] expected: Result<&str, BuildError>,
    ) {
        let config = OperatorConfig { cluster_domain: domain.to_string(), ..Default::default() };
        assert_eq!(dashboard_address(&cluster, &config), expected.map(str::to_string));
    }
}
