//! The head and worker Pods KubeRay v1.3.0 creates for a RayCluster (`common/pod.go`: `DefaultHeadPodTemplate`,
//! `DefaultWorkerPodTemplate`, `BuildPod`; spec §5.2, §6.1–§6.8, §7, §4.4), with DEVIATIONS 10's autoscaler
//! version. The steps run in KubeRay's order, because that order is visible in the Pod: env vars are appended one
//! after another, and the `wait-gcs-ready` init container copies the Ray container's env before the operator
//! appends its own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, Pod,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names;
use crate::api::RayCluster;
use crate::api::constants::{
    APPLICATION_NAME, AUTOSCALER_CONTAINER, COMPONENT_NAME, DEFAULT_DASHBOARD_AGENT_LISTEN_PORT,
    DEFAULT_DASHBOARD_PORT, DEFAULT_METRICS_PORT, DEFAULT_SERVING_PORT, GPU_SUFFIX, HEAD_GROUP_NAME,
    K8S_APP_NAME_LABEL, K8S_CREATED_BY_LABEL, KUBERAY_VERSION, METRICS_PORT_NAME, NEURON_CORE_RESOURCE, NODE_TYPE_HEAD,
    NODE_TYPE_WORKER, RAY_CLUSTER_LABEL, RAY_CLUSTER_SERVING_SERVICE_LABEL, RAY_ENABLE_AUTOSCALER_V2,
    RAY_EXTERNAL_STORAGE_NS, RAY_EXTERNAL_STORAGE_NS_ANNOTATION, RAY_FT_ENABLED_ANNOTATION,
    RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S, RAY_ID_LABEL, RAY_NODE_GROUP_LABEL, RAY_NODE_LABEL, RAY_NODE_TYPE_LABEL,
    RAY_OVERWRITE_CONTAINER_CMD_ANNOTATION, RAY_REDIS_ADDRESS, REDIS_PASSWORD, REDIS_USERNAME, SERVING_PORT_NAME,
    TPU_RESOURCE, WAIT_GCS_READY_CONTAINER,
};
use crate::api::quantity::Amount;
use crate::api::raycluster::{AutoscalerVersion, CreatorKind, RedisCredential, WorkerGroupSpec};
use crate::config::OperatorConfig;

// Env vars of §6.3 and §4.4.
const FQ_RAY_IP: &str = "FQ_RAY_IP";
const RAY_IP: &str = "RAY_IP";
const RAY_CLUSTER_NAME: &str = "RAY_CLUSTER_NAME";
const RAY_CLOUD_INSTANCE_ID: &str = "RAY_CLOUD_INSTANCE_ID";
const RAY_NODE_TYPE_NAME: &str = "RAY_NODE_TYPE_NAME";
const KUBERAY_GEN_RAY_START_CMD: &str = "KUBERAY_GEN_RAY_START_CMD";
const RAY_PORT: &str = "RAY_PORT";
const RAY_ADDRESS: &str = "RAY_ADDRESS";
const RAY_USAGE_STATS_KUBERAY_IN_USE: &str = "RAY_USAGE_STATS_KUBERAY_IN_USE";
const RAY_USAGE_STATS_EXTRA_TAGS: &str = "RAY_USAGE_STATS_EXTRA_TAGS";
const RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE: &str = "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE";
const RAY_SERVICE_ENV: [(&str, &str); 3] = [
    ("RAY_timeout_ms_task_wait_for_death_info", "0"),
    ("RAY_gcs_server_request_timeout_seconds", "5"),
    ("RAY_SERVE_KV_TIMEOUT_S", "5"),
];
const WORKER_GCS_RECONNECT_TIMEOUT_S: &str = "600";

// Volumes of §6.4.
const SHARED_MEMORY_VOLUME: &str = "shared-mem";
const SHARED_MEMORY_MOUNT_PATH: &str = "/dev/shm";
const RAY_LOG_VOLUME: &str = "ray-logs";
const RAY_LOG_MOUNT_PATH: &str = "/tmp/ray";

/// What KubeRay runs its generated commands with (§6.2).
const SHELL_COMMAND: [&str; 3] = ["/bin/bash", "-lc", "--"];
const ULIMIT_COMMAND: &str = "ulimit -n 65536";
const AUTOSCALER_ARGS: &str =
    "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)";

/// `ray start` flags whose `false` value is passed on rather than dropped (`--log-color` is auto|false|true).
const FLAGS_WITH_FALSE_VALUE: [&str; 2] = ["log-color", "include-dashboard"];
/// Container resources that become a custom Ray resource, and the Ray resource's name.
const CUSTOM_ACCELERATORS: [(&str, &str); 2] = [(NEURON_CORE_RESOURCE, "neuron_cores"), (TPU_RESOURCE, "TPU")];

/// The head Pod of `cluster`, as KubeRay v1.3.0 creates it (without a name: the API server draws one from
/// `generateName`).
pub fn head_pod(cluster: &RayCluster, config: &OperatorConfig) -> Pod {
    build_pod(cluster, Node::Head, config)
}

/// One worker Pod of `group`; every Pod of a group is the same until the API server names it.
pub fn worker_pod(cluster: &RayCluster, group: &WorkerGroupSpec, config: &OperatorConfig) -> Pod {
    build_pod(cluster, Node::Worker(group), config)
}

/// The full `ray start ...` line (§6.1) for the head or a group, as KUBERAY_GEN_RAY_START_CMD shows it; a worker's
/// `--address` names the head Service in the operator's `CLUSTER_DOMAIN`.
pub fn ray_start_command(cluster: &RayCluster, group: Option<&WorkerGroupSpec>, config: &OperatorConfig) -> String {
    let node = group.map_or(Node::Head, Node::Worker);
    node_ray_start_command(cluster, node, &head_fqdn(cluster, config))
}

/// The labels of the head Pod (§6.8, §4.4): the Redis cleanup Job copies them and the head Service selects on some.
pub fn head_pod_labels(cluster: &RayCluster) -> BTreeMap<String, String> {
    pod_labels(cluster, Node::Head)
}

/// Which Pod of the cluster is being built.
#[derive(Clone, Copy)]
enum Node<'a> {
    Head,
    Worker(&'a WorkerGroupSpec),
}

impl<'a> Node<'a> {
    fn template(self, cluster: &'a RayCluster) -> &'a PodTemplateSpec {
        match self {
            Node::Head => &cluster.spec.head_group_spec.template,
            Node::Worker(group) => &group.template,
        }
    }

    fn user_start_params(self, cluster: &'a RayCluster) -> &'a BTreeMap<String, String> {
        match self {
            Node::Head => &cluster.spec.head_group_spec.ray_start_params,
            Node::Worker(group) => &group.ray_start_params,
        }
    }

    fn node_type(self) -> &'static str {
        match self {
            Node::Head => NODE_TYPE_HEAD,
            Node::Worker(_) => NODE_TYPE_WORKER,
        }
    }

    fn group_name(self) -> &'a str {
        match self {
            Node::Head => HEAD_GROUP_NAME,
            Node::Worker(group) => &group.group_name,
        }
    }

    fn is_head(self) -> bool {
        matches!(self, Node::Head)
    }
}

fn build_pod(cluster: &RayCluster, node: Node, config: &OperatorConfig) -> Pod {
    let template = node.template(cluster);
    let fqdn = head_fqdn(cluster, config);
    let head_port = cluster.spec.head_port();
    let autoscaling = cluster.spec.autoscaling_enabled();
    let autoscaler_version =
        cluster.spec.autoscaler_options.as_ref().and_then(|options| options.version).filter(|_| autoscaling);
    let ray_start = node_ray_start_command(cluster, node, &fqdn);
    let metadata = pod_metadata(cluster, node, template);
    let overwrite_command = metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(RAY_OVERWRITE_CONTAINER_CMD_ANNOTATION))
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let mut spec = template.spec.clone().unwrap_or_default();

    // DefaultHeadPodTemplate / DefaultWorkerPodTemplate.
    match node {
        Node::Head if autoscaling => {
            spec.service_account_name = Some(names::check_name(&autoscaler_service_account(cluster, &spec)));
            let image = spec.containers.first().and_then(|ray| ray.image.clone());
            spec.containers.push(autoscaler_container(cluster, image));
            if let Some(version) = autoscaler_version {
                let enabled = version == AutoscalerVersion::V2;
                if let Some(ray) = spec.containers.first_mut() {
                    env_mut(ray).push(env_value(RAY_ENABLE_AUTOSCALER_V2, &enabled.to_string()));
                }
            }
        }
        Node::Worker(_) if config.enable_init_container_injection => {
            if let Some(wait) = spec.containers.first().map(|ray| wait_gcs_ready_container(ray, &fqdn, &head_port)) {
                spec.init_containers.get_or_insert_with(Vec::new).push(wait);
            }
        }
        _ => {}
    }
    if let Some(ray) = spec.containers.first_mut() {
        inject_gcs_fault_tolerance(cluster, node, ray);
        add_metrics_port(ray);
    }
    if autoscaler_version == Some(AutoscalerVersion::V2) {
        spec.restart_policy = Some("Never".to_string());
    }

    // BuildPod.
    add_volumes(&mut spec, node.is_head() && autoscaling);
    if let Some(ray) = spec.containers.first_mut() {
        wrap_command(ray, &ray_start, overwrite_command);
    }
    for init in spec.init_containers.iter_mut().flatten() {
        let env = env_mut(init);
        env.push(env_value(FQ_RAY_IP, &fqdn));
        env.push(env_value(RAY_IP, ray_ip(&fqdn)));
    }
    if let Some(ray) = spec.containers.first_mut() {
        inject_ray_env(ray, cluster, node, &fqdn, &head_port, &ray_start);
        if config.enable_probes_injection {
            inject_probes(ray, node, cluster.creator());
        }
    }
    Pod { metadata, spec: Some(spec), status: None }
}

/// The head Service's FQDN, which workers and init containers dial.
fn head_fqdn(cluster: &RayCluster, config: &OperatorConfig) -> String {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    names::service_fqdn(&names::head_service_name(cluster), namespace, &config.cluster_domain)
}

/// `RAY_IP` is the part of the FQDN before the first dot: the head Service's name.
fn ray_ip(fqdn: &str) -> &str {
    fqdn.split('.').next().unwrap_or(fqdn)
}

/// The template's metadata with KubeRay's name, namespace, labels, annotations and controller reference. The worker
/// template's name is cleared (replicas would clash); the head's is kept, as KubeRay keeps it.
fn pod_metadata(cluster: &RayCluster, node: Node, template: &PodTemplateSpec) -> ObjectMeta {
    let cluster_name = names::cluster_name(cluster);
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.generate_name = Some(match node {
        Node::Head => names::head_pod_generate_name(cluster_name),
        Node::Worker(group) => names::worker_pod_generate_name(cluster_name, &group.group_name),
    });
    if !node.is_head() {
        metadata.name = None;
    }
    metadata.namespace = cluster.metadata.namespace.clone();
    metadata.labels = Some(pod_labels(cluster, node));
    let annotations = pod_annotations(cluster, node, metadata.annotations.take().unwrap_or_default());
    metadata.annotations = Some(annotations).filter(|annotations| !annotations.is_empty());
    let owner = super::controller_owner_reference(cluster);
    let owners = metadata.owner_references.get_or_insert_with(Vec::new);
    match owners.iter_mut().find(|existing| existing.kind == owner.kind && existing.name == owner.name) {
        Some(existing) => *existing = owner,
        None => owners.push(owner),
    }
    metadata
}

/// KubeRay's labels, overridable by the template except for the node type, group and cluster; a RayService's head
/// starts out of the serve Service (`ray.io/serve=false`) and its workers in it.
fn pod_labels(cluster: &RayCluster, node: Node) -> BTreeMap<String, String> {
    let cluster_name = names::cluster_name(cluster);
    let identifier = names::check_label(&format!("{cluster_name}-{}", node.node_type()));
    let mut labels: BTreeMap<String, String> = [
        (RAY_NODE_LABEL, "yes"),
        (RAY_CLUSTER_LABEL, cluster_name),
        (RAY_NODE_TYPE_LABEL, node.node_type()),
        (RAY_NODE_GROUP_LABEL, node.group_name()),
        (RAY_ID_LABEL, identifier.as_str()),
        (K8S_APP_NAME_LABEL, APPLICATION_NAME),
        (K8S_CREATED_BY_LABEL, COMPONENT_NAME),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    let template_labels = node.template(cluster).metadata.as_ref().and_then(|metadata| metadata.labels.as_ref());
    for (key, value) in template_labels.into_iter().flatten() {
        if ![RAY_NODE_TYPE_LABEL, RAY_NODE_GROUP_LABEL, RAY_CLUSTER_LABEL].contains(&key.as_str()) {
            labels.insert(key.clone(), value.clone());
        }
    }
    if cluster.creator() == CreatorKind::RayService {
        labels.insert(RAY_CLUSTER_SERVING_SERVICE_LABEL.to_string(), (!node.is_head()).to_string());
    }
    labels
}

/// The template's annotations, plus the cluster's command-overwrite flag and, on the head, the GCS FT annotations.
fn pod_annotations(
    cluster: &RayCluster,
    node: Node,
    mut annotations: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    if cluster_annotation(cluster, RAY_OVERWRITE_CONTAINER_CMD_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        annotations.insert(RAY_OVERWRITE_CONTAINER_CMD_ANNOTATION.to_string(), "true".to_string());
    }
    if node.is_head() {
        annotations.insert(RAY_FT_ENABLED_ANNOTATION.to_string(), cluster.gcs_ft_enabled().to_string());
        if cluster.gcs_ft_enabled() {
            annotations.insert(RAY_EXTERNAL_STORAGE_NS_ANNOTATION.to_string(), external_storage_namespace(cluster));
        }
    }
    annotations
}

fn cluster_annotation<'a>(cluster: &'a RayCluster, key: &str) -> Option<&'a str> {
    cluster.metadata.annotations.as_ref().and_then(|annotations| annotations.get(key)).map(String::as_str)
}

/// The storage namespace of GCS FT (§5.2): `externalStorageNamespace`, else the annotation, else the cluster uid.
fn external_storage_namespace(cluster: &RayCluster) -> String {
    cluster
        .spec
        .gcs_fault_tolerance_options
        .as_ref()
        .map(|options| options.external_storage_namespace.as_deref().unwrap_or_default())
        .filter(|namespace| !namespace.is_empty())
        .or_else(|| cluster_annotation(cluster, RAY_EXTERNAL_STORAGE_NS_ANNOTATION))
        .or(cluster.metadata.uid.as_deref())
        .unwrap_or_default()
        .to_string()
}

/// GCS FT env (§5.2): workers get a long GCS reconnect timeout; the head gets its storage namespace and Redis
/// address and credentials.
fn inject_gcs_fault_tolerance(cluster: &RayCluster, node: Node, ray: &mut Container) {
    if !cluster.gcs_ft_enabled() {
        return;
    }
    let env = env_mut(ray);
    if !node.is_head() {
        push_env_if_absent(env, RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S, WORKER_GCS_RECONNECT_TIMEOUT_S);
        return;
    }
    push_env_if_absent(env, RAY_EXTERNAL_STORAGE_NS, &external_storage_namespace(cluster));
    match &cluster.spec.gcs_fault_tolerance_options {
        Some(options) => {
            env.push(env_value(RAY_REDIS_ADDRESS, &options.redis_address));
            let credentials = [(REDIS_USERNAME, &options.redis_username), (REDIS_PASSWORD, &options.redis_password)];
            for (name, credential) in credentials {
                if let Some(RedisCredential { value, value_from }) = credential {
                    env.push(EnvVar { name: name.to_string(), value: value.clone(), value_from: value_from.clone() });
                }
            }
        }
        // The legacy annotation path: the Redis cleanup Job reads a literal password from REDIS_PASSWORD.
        None => {
            if let Some(password) = cluster.spec.head_group_spec.ray_start_params.get("redis-password")
                && !env_exists(env, REDIS_PASSWORD)
            {
                env.push(env_value(REDIS_PASSWORD, password));
            }
        }
    }
}

/// The `ray start` line of a node: the user's params completed as KubeRay completes them (§6.1, §5.2, §7).
fn node_ray_start_command(cluster: &RayCluster, node: Node, fqdn: &str) -> String {
    let mut params = node.user_start_params(cluster).clone();
    let head_port = cluster.spec.head_port();
    match node {
        Node::Worker(_) => {
            params.entry("address".to_string()).or_insert_with(|| format!("{fqdn}:{head_port}"));
        }
        Node::Head => {
            params.entry("dashboard-host".to_string()).or_insert_with(|| "0.0.0.0".to_string());
        }
    }
    params.entry("metrics-export-port".to_string()).or_insert_with(|| DEFAULT_METRICS_PORT.to_string());
    params.insert("block".to_string(), "true".to_string());
    params
        .entry("dashboard-agent-listen-port".to_string())
        .or_insert_with(|| DEFAULT_DASHBOARD_AGENT_LISTEN_PORT.to_string());
    if node.is_head() {
        if cluster.spec.autoscaling_enabled() {
            params.insert("no-monitor".to_string(), "true".to_string());
        }
        // The credentials reach `ray start` through the env vars that inject_gcs_fault_tolerance sets.
        if let Some(options) = cluster.spec.gcs_fault_tolerance_options.as_ref().filter(|_| cluster.gcs_ft_enabled()) {
            if options.redis_username.is_some() {
                params.insert("redis-username".to_string(), format!("${REDIS_USERNAME}"));
            }
            if options.redis_password.is_some() {
                params.insert("redis-password".to_string(), format!("${REDIS_PASSWORD}"));
            }
        }
    }
    let resources = node.template(cluster).spec.as_ref().and_then(|spec| spec.containers.first()?.resources.as_ref());
    add_resource_params(&mut params, resources);
    let flags = render_start_params(&params);
    match node {
        Node::Head => format!("ray start --head {flags}"),
        Node::Worker(_) => format!("ray start {flags}"),
    }
}

/// `num-cpus`, `memory`, `num-gpus` and custom accelerators from the Ray container's resources, where the user gave
/// none (`generateRayStartCommand`).
fn add_resource_params(params: &mut BTreeMap<String, String>, resources: Option<&ResourceRequirements>) {
    let empty = BTreeMap::new();
    let limits = resources.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
    let requests = resources.and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
    if !params.contains_key("num-cpus")
        && let Some(cpus) = nonzero_quantity(limits, "cpu").or_else(|| nonzero_quantity(requests, "cpu"))
    {
        params.insert("num-cpus".to_string(), cpus.value().to_string());
    }
    if !params.contains_key("memory")
        && let Some(memory) = nonzero_quantity(limits, "memory")
    {
        params.insert("memory".to_string(), memory.value().to_string());
    }
    add_accelerator_params(params, limits);
}

fn nonzero_quantity(list: &BTreeMap<String, Quantity>, name: &str) -> Option<Amount> {
    list.get(name).and_then(|quantity| Amount::parse(&quantity.0)).filter(|quantity| !quantity.is_zero())
}

/// `num-gpus` from the first non-zero `*gpu` limit, and the first custom accelerator into the `resources` JSON,
/// both in sorted resource-name order (`addWellKnownAcceleratorResources`).
fn add_accelerator_params(params: &mut BTreeMap<String, String>, limits: &BTreeMap<String, Quantity>) {
    if limits.is_empty() {
        return;
    }
    // KubeRay only logs a `resources` param that is not a JSON object of numbers, and then adds neither.
    let Some(mut ray_resources) = resources_param(params) else {
        return;
    };
    let mut accelerator_present = CUSTOM_ACCELERATORS.iter().any(|(_, ray_name)| ray_resources.contains_key(*ray_name));
    for (name, quantity) in limits {
        let Some(quantity) = Amount::parse(&quantity.0).filter(|quantity| !quantity.is_zero()) else {
            continue;
        };
        if !params.contains_key("num-gpus") && name.ends_with(GPU_SUFFIX) {
            params.insert("num-gpus".to_string(), quantity.value().to_string());
        }
        let accelerator = CUSTOM_ACCELERATORS.iter().find(|(resource, _)| *resource == name.as_str());
        if let Some((_, ray_name)) = accelerator.filter(|_| !accelerator_present) {
            ray_resources.insert((*ray_name).to_string(), quantity.as_f64());
            params.insert("resources".to_string(), format!("'{}'", go_json_object(&ray_resources)));
            accelerator_present = true;
        }
    }
}

/// The `resources` param as a map; quotes (`'`, `"`, backtick) and spaces around it are ignored.
fn resources_param(params: &BTreeMap<String, String>) -> Option<BTreeMap<String, f64>> {
    match params.get("resources") {
        None => Some(BTreeMap::new()),
        Some(text) => serde_json::from_str(text.trim_matches(|c| matches!(c, '\'' | '"' | '`' | ' '))).ok(),
    }
}

/// A JSON object as Go's encoding/json writes a `map[string]float64`: sorted keys, no spaces, `4` rather than `4.0`.
fn go_json_object(map: &BTreeMap<String, f64>) -> String {
    let entries: Vec<String> = map
        .iter()
        .map(|(key, value)| format!("{}:{}", serde_json::Value::from(key.as_str()), go_json_number(*value)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// Go's float64 JSON form: plain decimals in [1e-6, 1e21), exponent form (`1e+21`, `1e-7`) outside.
fn go_json_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-6..1e21).contains(&magnitude) {
        return format!("{value}");
    }
    let text = format!("{value:e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) if !exponent.starts_with('-') => format!("{mantissa}e+{exponent}"),
        _ => text,
    }
}

/// `convertParamMap`: sorted flags, `" --k "` for true, `" --k=v "` otherwise, `false` dropped except where it is
/// a value.
fn render_start_params(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(key, value)| {
            let lower = value.to_lowercase();
            let boolean = lower == "true" || lower == "false";
            match (boolean && !FLAGS_WITH_FALSE_VALUE.contains(&key.as_str()), lower == "true") {
                (true, true) => format!(" --{key} "),
                (true, false) => String::new(),
                (false, _) => format!(" --{key}={value} "),
            }
        })
        .collect()
}

/// §6.2: the user's command runs first, then `ray start`; a command that starts Ray itself, or the overwrite
/// annotation, keeps the container's command as it is.
fn wrap_command(ray: &mut Container, ray_start: &str, overwrite: bool) {
    let user_command: String =
        ray.command.iter().flatten().chain(ray.args.iter().flatten()).map(|part| format!(" {part} ")).collect();
    if overwrite || user_command.contains("ray start") {
        return;
    }
    let generated = format!("{ULIMIT_COMMAND}; {ray_start}");
    ray.command = Some(SHELL_COMMAND.iter().map(|part| part.to_string()).collect());
    ray.args = Some(vec![if user_command.is_empty() { generated } else { format!("{user_command} && {generated}") }]);
}

/// §6.3, in KubeRay's order.
fn inject_ray_env(ray: &mut Container, cluster: &RayCluster, node: Node, fqdn: &str, head_port: &str, start: &str) {
    let creator = cluster.creator();
    let env = env_mut(ray);
    if !node.is_head() {
        env.push(env_value(FQ_RAY_IP, fqdn));
        env.push(env_value(RAY_IP, ray_ip(fqdn)));
    }
    env.push(env_field(RAY_CLUSTER_NAME, &format!("metadata.labels['{RAY_CLUSTER_LABEL}']")));
    env.push(env_field(RAY_CLOUD_INSTANCE_ID, "metadata.name"));
    env.push(env_field(RAY_NODE_TYPE_NAME, &format!("metadata.labels['{RAY_NODE_GROUP_LABEL}']")));
    env.push(env_value(KUBERAY_GEN_RAY_START_CMD, start));
    push_env_if_absent(env, RAY_PORT, head_port);
    if creator == CreatorKind::RayService {
        for (name, value) in RAY_SERVICE_ENV {
            push_env_if_absent(env, name, value);
        }
    }
    let address_host = if node.is_head() { "127.0.0.1" } else { fqdn };
    push_env_if_absent(env, RAY_ADDRESS, &format!("{address_host}:{head_port}"));
    push_env_if_absent(env, RAY_USAGE_STATS_KUBERAY_IN_USE, "1");
    if node.is_head() {
        let tags = format!("kuberay_version={KUBERAY_VERSION};kuberay_crd={}", creator.as_str());
        env.push(env_value(RAY_USAGE_STATS_EXTRA_TAGS, &tags));
    }
    push_env_if_absent(env, RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE, "1");
}

fn env_mut(container: &mut Container) -> &mut Vec<EnvVar> {
    container.env.get_or_insert_with(Vec::new)
}

fn env_exists(env: &[EnvVar], name: &str) -> bool {
    env.iter().any(|var| var.name == name)
}

fn push_env_if_absent(env: &mut Vec<EnvVar>, name: &str, value: &str) {
    if !env_exists(env, name) {
        env.push(env_value(name, value));
    }
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.to_string()), value_from: None }
}

fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.to_string(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}

/// §6.7: Prometheus scrapes the `metrics` port.
fn add_metrics_port(ray: &mut Container) {
    let ports = ray.ports.get_or_insert_with(Vec::new);
    if !ports.iter().any(|port| port.name.as_deref() == Some(METRICS_PORT_NAME)) {
        ports.push(ContainerPort {
            name: Some(METRICS_PORT_NAME.to_string()),
            container_port: DEFAULT_METRICS_PORT,
            ..ContainerPort::default()
        });
    }
}

/// §6.4: the object store's `/dev/shm`, and the log directory the autoscaler shares with the head.
fn add_volumes(spec: &mut PodSpec, autoscaler_logs: bool) {
    let PodSpec { containers, volumes, .. } = spec;
    if let Some(ray) = containers.first_mut() {
        add_empty_dir(ray, volumes, SHARED_MEMORY_VOLUME, SHARED_MEMORY_MOUNT_PATH, Some("Memory"));
    }
    if !autoscaler_logs {
        return;
    }
    let autoscaler = containers.iter().position(|container| container.name == AUTOSCALER_CONTAINER);
    for index in [Some(0), autoscaler].into_iter().flatten() {
        if let Some(container) = containers.get_mut(index) {
            add_empty_dir(container, volumes, RAY_LOG_VOLUME, RAY_LOG_MOUNT_PATH, None);
        }
    }
}

/// Mounts the emptyDir `name` at `path` unless something is mounted there already. A memory-backed one is as large
/// as the container's memory limit, else its request.
fn add_empty_dir(
    container: &mut Container,
    volumes: &mut Option<Vec<Volume>>,
    name: &str,
    path: &str,
    medium: Option<&str>,
) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if mounts.iter().any(|mount| mount.mount_path == path) {
        return;
    }
    mounts.push(VolumeMount { name: name.to_string(), mount_path: path.to_string(), ..VolumeMount::default() });
    let volumes = volumes.get_or_insert_with(Vec::new);
    if volumes.iter().any(|volume| volume.name == name) {
        return;
    }
    let memory = |list: Option<&BTreeMap<String, Quantity>>| list.and_then(|list| list.get("memory")).cloned();
    let size_limit = medium.filter(|medium| *medium == "Memory").and_then(|_| {
        let resources = container.resources.as_ref();
        memory(resources.and_then(|r| r.limits.as_ref()))
            .or_else(|| memory(resources.and_then(|r| r.requests.as_ref())))
    });
    volumes.push(Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource { medium: medium.map(str::to_string), size_limit }),
        ..Volume::default()
    });
}

/// §6.6: exec probes against the raylet (and, on the head, the GCS), unless the user set one.
fn inject_probes(ray: &mut Container, node: Node, creator: CreatorKind) {
    let raylet = health_check(2, DEFAULT_DASHBOARD_AGENT_LISTEN_PORT, "api/local_raylet_healthz");
    let mut checks = vec![raylet];
    if node.is_head() {
        checks.push(health_check(10, DEFAULT_DASHBOARD_PORT, "api/gcs_healthz"));
    }
    let timeout = if node.is_head() { 5 } else { 2 };
    if ray.liveness_probe.is_none() {
        ray.liveness_probe = Some(exec_probe(&checks, 30, timeout, 120));
    }
    if ray.readiness_probe.is_none() {
        // A RayService worker leaves the serve Service as soon as its proxy fails one check.
        let serving_worker = !node.is_head() && creator == CreatorKind::RayService;
        let failure_threshold = if serving_worker {
            let serve_port = container_port(ray, SERVING_PORT_NAME).unwrap_or(DEFAULT_SERVING_PORT);
            checks.push(health_check(10, serve_port, "-/healthz"));
            1
        } else {
            10
        };
        ray.readiness_probe = Some(exec_probe(&checks, 10, timeout, failure_threshold));
    }
}

fn health_check(timeout_seconds: i32, port: i32, path: &str) -> String {
    format!("wget -T {timeout_seconds} -q -O- http://localhost:{port}/{path} | grep success")
}

fn exec_probe(checks: &[String], initial_delay: i32, timeout: i32, failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec!["bash".to_string(), "-c".to_string(), checks.join(" && ")]) }),
        initial_delay_seconds: Some(initial_delay),
        timeout_seconds: Some(timeout),
        period_seconds: Some(5),
        success_threshold: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn container_port(container: &Container, name: &str) -> Option<i32> {
    container.ports.iter().flatten().find(|port| port.name.as_deref() == Some(name)).map(|port| port.container_port)
}

/// §6.5: workers wait until the GCS answers, quietly for the first 120 s.
fn wait_gcs_ready_container(ray: &Container, fqdn: &str, head_port: &str) -> Container {
    Container {
        name: WAIT_GCS_READY_CONTAINER.to_string(),
        image: ray.image.clone(),
        image_pull_policy: ray.image_pull_policy.clone(),
        command: Some(SHELL_COMMAND.iter().map(|part| part.to_string()).collect()),
        args: Some(vec![wait_gcs_ready_script(&format!("{fqdn}:{head_port}"))]),
        security_context: ray.security_context.clone(),
        // TLS settings of the Ray container live in its env and mounts; the health check needs them too.
        env: ray.env.clone(),
        volume_mounts: ray.volume_mounts.clone(),
        resources: Some(fixed_resources("200m", "256Mi")),
        ..Container::default()
    }
}

/// KubeRay's script, byte for byte: the tab indentation is its Go source's.
fn wait_gcs_ready_script(address: &str) -> String {
    let lines = [
        (5, "SECONDS=0".to_string()),
        (5, "while true; do".to_string()),
        (6, "if (( SECONDS <= 120 )); then".to_string()),
        (7, format!("if ray health-check --address {address} > /dev/null 2>&1; then")),
        (8, "echo \"GCS is ready.\"".to_string()),
        (8, "break".to_string()),
        (7, "fi".to_string()),
        (7, "echo \"$SECONDS seconds elapsed: Waiting for GCS to be ready.\"".to_string()),
        (6, "else".to_string()),
        (7, format!("if ray health-check --address {address}; then")),
        (8, "echo \"GCS is ready. Any error messages above can be safely ignored.\"".to_string()),
        (8, "break".to_string()),
        (7, "fi".to_string()),
        (
            7,
            "echo \"$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, refer to the FAQ \
             at https://github.com/ray-project/kuberay/blob/master/docs/guidance/FAQ.md.\""
                .to_string(),
        ),
        (6, "fi".to_string()),
        (6, "sleep 5".to_string()),
        (5, "done".to_string()),
    ];
    let body: String = lines.iter().map(|(tabs, line)| format!("{}{line}\n", "\t".repeat(*tabs))).collect();
    format!("\n{body}\t\t\t\t")
}

/// Requests equal to limits.
fn fixed_resources(cpu: &str, memory: &str) -> ResourceRequirements {
    let list: BTreeMap<String, Quantity> =
        [("cpu", cpu), ("memory", memory)].into_iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect();
    ResourceRequirements { limits: Some(list.clone()), requests: Some(list), ..ResourceRequirements::default() }
}

/// The head's ServiceAccount with autoscaling: the template's, else one named after the cluster (§6.8).
fn autoscaler_service_account(cluster: &RayCluster, spec: &PodSpec) -> String {
    spec.service_account_name
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| names::cluster_name(cluster).to_string())
}

/// §7: the `autoscaler` sidecar (`BuildAutoscalerContainer`), with `autoscalerOptions` merged in.
fn autoscaler_container(cluster: &RayCluster, head_image: Option<String>) -> Container {
    let mut container = Container {
        name: AUTOSCALER_CONTAINER.to_string(),
        image: head_image,
        image_pull_policy: Some("IfNotPresent".to_string()),
        env: Some(vec![
            env_field(RAY_CLUSTER_NAME, &format!("metadata.labels['{RAY_CLUSTER_LABEL}']")),
            env_field("RAY_CLUSTER_NAMESPACE", "metadata.namespace"),
            env_field("RAY_HEAD_POD_NAME", "metadata.name"),
            env_value("KUBERAY_CRD_VER", "v1"),
        ]),
        command: Some(SHELL_COMMAND.iter().map(|part| part.to_string()).collect()),
        args: Some(vec![AUTOSCALER_ARGS.to_string()]),
        resources: Some(fixed_resources("500m", "512Mi")),
        ..Container::default()
    };
    let Some(options) = cluster.spec.autoscaler_options.as_ref() else {
        return container;
    };
    if let Some(resources) = &options.resources {
        container.resources = Some(resources.clone());
    }
    if let Some(image) = &options.image {
        container.image = Some(image.clone());
    }
    if let Some(policy) = &options.image_pull_policy {
        container.image_pull_policy = Some(policy.clone());
    }
    append_nonempty(&mut container.env, &options.env);
    append_nonempty(&mut container.env_from, &options.env_from);
    append_nonempty(&mut container.volume_mounts, &options.volume_mounts);
    if let Some(security_context) = &options.security_context {
        container.security_context = Some(security_context.clone());
    }
    container
}

fn append_nonempty<T: Clone>(target: &mut Option<Vec<T>>, extra: &Option<Vec<T>>) {
    if let Some(extra) = extra.as_ref().filter(|extra| !extra.is_empty()) {
        target.get_or_insert_with(Vec::new).extend(extra.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::SecurityContext;
    use rstest::rstest;

    use super::*;
    use crate::api::RayClusterSpec;
    use crate::api::constants::RAY_ORIGINATED_FROM_CRD_LABEL;
    use crate::api::document::{RayObject, decode, parse_yaml_stream};
    use crate::api::raycluster::{AutoscalerOptions, GcsFaultToleranceOptions, HeadGroupSpec};

    // ---- fixtures ----

    fn ray_container(name: &str) -> Container {
        Container { name: name.to_string(), image: Some("rayproject/ray:2.41.0".to_string()), ..Container::default() }
    }

    fn template(container: Container) -> PodTemplateSpec {
        PodTemplateSpec { metadata: None, spec: Some(PodSpec { containers: vec![container], ..PodSpec::default() }) }
    }

    fn group(name: &str) -> WorkerGroupSpec {
        WorkerGroupSpec {
            group_name: name.to_string(),
            replicas: Some(1),
            min_replicas: Some(0),
            max_replicas: Some(5),
            template: template(ray_container("ray-worker")),
            num_of_hosts: 1,
            ..WorkerGroupSpec::default()
        }
    }

    /// A cluster `raycluster` in `default` with uid `uid-1`, a head and one worker group `small`, no resources.
    fn cluster() -> RayCluster {
        let mut cluster = RayCluster::new(
            "raycluster",
            RayClusterSpec {
                head_group_spec: HeadGroupSpec { template: template(ray_container("ray-head")), ..Default::default() },
                worker_group_specs: Some(vec![group("small")]),
                ..RayClusterSpec::default()
            },
        );
        cluster.metadata.namespace = Some("default".to_string());
        cluster.metadata.uid = Some("uid-1".to_string());
        cluster
    }

    fn with(mut cluster: RayCluster, change: impl FnOnce(&mut RayCluster)) -> RayCluster {
        change(&mut cluster);
        cluster
    }

    fn head_container(cluster: &mut RayCluster) -> &mut Container {
        &mut cluster.spec.head_group_spec.template.spec.as_mut().unwrap().containers[0]
    }

    fn worker_group(cluster: &mut RayCluster) -> &mut WorkerGroupSpec {
        &mut cluster.spec.worker_group_specs.as_mut().unwrap()[0]
    }

    fn worker_container(cluster: &mut RayCluster) -> &mut Container {
        &mut worker_group(cluster).template.spec.as_mut().unwrap().containers[0]
    }

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect())
    }

    fn resources(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Option<ResourceRequirements> {
        Some(ResourceRequirements {
            limits: quantities(limits).filter(|l| !l.is_empty()),
            requests: quantities(requests).filter(|r| !r.is_empty()),
            ..ResourceRequirements::default()
        })
    }

    fn created_by(kind: &str) -> impl FnOnce(&mut RayCluster) {
        let kind = kind.to_string();
        move |cluster| {
            cluster.metadata.labels = Some([(RAY_ORIGINATED_FROM_CRD_LABEL.to_string(), kind)].into());
        }
    }

    fn annotate(key: &str, value: &str) -> impl FnOnce(&mut RayCluster) {
        let (key, value) = (key.to_string(), value.to_string());
        move |cluster| {
            cluster.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(key, value);
        }
    }

    fn env(name: &str, value: &str) -> EnvVar {
        env_value(name, value)
    }

    fn config() -> OperatorConfig {
        OperatorConfig::default()
    }

    fn head(cluster: &RayCluster) -> Pod {
        head_pod(cluster, &config())
    }

    fn worker(cluster: &RayCluster) -> Pod {
        worker_pod(cluster, &cluster.spec.worker_groups()[0], &config())
    }

    fn spec(pod: &Pod) -> &PodSpec {
        pod.spec.as_ref().unwrap()
    }

    fn ray(pod: &Pod) -> &Container {
        &spec(pod).containers[0]
    }

    fn env_names(container: &Container) -> Vec<&str> {
        container.env.iter().flatten().map(|var| var.name.as_str()).collect()
    }

    fn env_text<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
        container.env.iter().flatten().find(|var| var.name == name).and_then(|var| var.value.as_deref())
    }

    fn args(pod: &Pod) -> &str {
        &ray(pod).args.as_ref().unwrap()[0]
    }

    fn probe_command(probe: &Option<Probe>) -> &str {
        &probe.as_ref().unwrap().exec.as_ref().unwrap().command.as_ref().unwrap()[2]
    }

    const FQDN: &str = "raycluster-head-svc.default.svc.cluster.local";
    const HEAD_ENV: [&str; 9] = [
        "RAY_CLUSTER_NAME",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_NODE_TYPE_NAME",
        "KUBERAY_GEN_RAY_START_CMD",
        "RAY_PORT",
        "RAY_ADDRESS",
        "RAY_USAGE_STATS_KUBERAY_IN_USE",
        "RAY_USAGE_STATS_EXTRA_TAGS",
        "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE",
    ];

    #[rstest]
    #[case::integer(4.0, "4")]
    #[case::fraction(0.5, "0.5")]
    #[case::large(1e21, "1e+21")]
    #[case::tiny(1e-7, "1e-7")]
    fn json_numbers_follow_go(#[case] value: f64, #[case] text: &str) {
        assert_eq!(go_json_number(value), text);
    }

    // ---- §6.1 ray start ----

    #[test]
    fn head_example_of_the_spec_is_reproduced_byte_for_byte() {
        let cluster =
            with(cluster(), |c| head_container(c).resources = resources(&[("cpu", "1"), ("memory", "1Gi")], &[]));
        assert_eq!(
            args(&head(&cluster)),
            "ulimit -n 65536; ray start --head  --block  --dashboard-agent-listen-port=52365  \
             --dashboard-host=0.0.0.0  --memory=1073741824  --metrics-export-port=8080  --num-cpus=1 "
        );
    }

    /// The head's line when neither params nor resources add anything.
    const HEAD_PLAIN: &str = "ray start --head  --block  --dashboard-agent-listen-port=52365  \
                              --dashboard-host=0.0.0.0  --metrics-export-port=8080 ";

    #[rstest]
    #[case::no_resources(&[], &[], &[], HEAD_PLAIN)]
    #[case::cpu_limit_rounded_up(&[("cpu", "500m")], &[], &[], " --num-cpus=1 ")]
    #[case::cpu_request_when_no_limit(&[], &[("cpu", "3")], &[], " --num-cpus=3 ")]
    #[case::cpu_request_when_limit_zero(&[("cpu", "0")], &[("cpu", "2500m")], &[], " --num-cpus=3 ")]
    #[case::memory_from_limit(&[("memory", "2G")], &[("memory", "1G")], &[], " --memory=2000000000 ")]
    #[case::user_cpus_kept(&[("cpu", "4")], &[], &[("num-cpus", "0")], " --num-cpus=0 ")]
    #[case::first_nonzero_gpu(&[("amd.com/gpu", "0"), ("nvidia.com/gpu", "2")], &[], &[], " --num-gpus=2 ")]
    #[case::tpu_resource(&[("google.com/tpu", "4")], &[], &[], " --resources='{\"TPU\":4}' ")]
    #[case::neuron_first_in_sorted_order(
        &[("google.com/tpu", "4"), ("aws.amazon.com/neuroncore", "2")], &[], &[],
        " --resources='{\"neuron_cores\":2}' "
    )]
    #[case::tpu_merged_into_resources(
        &[("google.com/tpu", "4")], &[], &[("resources", "'{\"custom\": 1.5}'")],
        " --resources='{\"TPU\":4,\"custom\":1.5}' "
    )]
    #[case::existing_accelerator_kept(
        &[("google.com/tpu", "4")], &[], &[("resources", "'{\"TPU\": 8}'")], " --resources='{\"TPU\": 8}' "
    )]
    #[case::unparsable_resources_add_nothing(
        &[("nvidia.com/gpu", "1")], &[], &[("resources", "{oops")], &format!("{HEAD_PLAIN} --resources={{oops ")
    )]
    #[case::block_always_true(&[], &[], &[("block", "false")], HEAD_PLAIN)]
    #[case::false_dropped(&[], &[], &[("disable-usage-stats", "False")], HEAD_PLAIN)]
    #[case::true_is_bare_flag(&[], &[], &[("disable-usage-stats", "TRUE")], " --disable-usage-stats ")]
    #[case::log_color_false_kept(&[], &[], &[("log-color", "false")], " --log-color=false ")]
    #[case::include_dashboard_false_kept(&[], &[], &[("include-dashboard", "false")], " --include-dashboard=false ")]
    #[case::user_dashboard_host_kept(&[], &[], &[("dashboard-host", "127.0.0.1")], " --dashboard-host=127.0.0.1 ")]
    fn head_ray_start_params(
        #[case] limits: &[(&str, &str)],
        #[case] requests: &[(&str, &str)],
        #[case] params: &[(&str, &str)],
        #[case] expected_part: &str,
    ) {
        let cluster = with(cluster(), |c| {
            head_container(c).resources = resources(limits, requests);
            c.spec.head_group_spec.ray_start_params =
                params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        });
        let line = ray_start_command(&cluster, None, &OperatorConfig::default());
        assert!(line.starts_with("ray start --head  --block "), "{line}");
        assert!(line.contains(expected_part), "{line:?} lacks {expected_part:?}");
    }

    #[rstest]
    #[case::address_defaults_to_head_service(&[], &[], &format!(
        "ray start  --address={FQDN}:6379  --block  --dashboard-agent-listen-port=52365  --metrics-export-port=8080 "
    ))]
    #[case::address_uses_head_port(&[("port", "6380")], &[], &format!(" --address={FQDN}:6380 "))]
    #[case::user_address_kept(&[], &[("address", "elsewhere:1")], " --address=elsewhere:1 ")]
    fn worker_ray_start_params(
        #[case] head_params: &[(&str, &str)],
        #[case] worker_params: &[(&str, &str)],
        #[case] expected_part: &str,
    ) {
        let to_map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let cluster = with(cluster(), |c| {
            c.spec.head_group_spec.ray_start_params = to_map(head_params);
            worker_group(c).ray_start_params = to_map(worker_params);
        });
        let line = ray_start_command(&cluster, Some(&cluster.spec.worker_groups()[0]), &OperatorConfig::default());
        assert!(line.contains(expected_part), "{line:?} lacks {expected_part:?}");
        assert_eq!(env_text(ray(&worker(&cluster)), KUBERAY_GEN_RAY_START_CMD), Some(line.as_str()));
    }

    #[test]
    fn autoscaling_turns_the_monitor_off_on_the_head_only() {
        let cluster = with(cluster(), |c| c.spec.enable_in_tree_autoscaling = Some(true));
        assert!(ray_start_command(&cluster, None, &OperatorConfig::default()).contains(" --no-monitor "));
        assert!(
            !ray_start_command(&cluster, cluster.spec.worker_groups().first(), &OperatorConfig::default())
                .contains("no-monitor")
        );
    }

    #[test]
    fn worker_address_follows_the_cluster_domain() {
        let config = OperatorConfig { cluster_domain: "example.org".to_string(), ..config() };
        let cluster = cluster();
        let pod = worker_pod(&cluster, &cluster.spec.worker_groups()[0], &config);
        let fqdn = "raycluster-head-svc.default.svc.example.org";
        assert!(args(&pod).contains(&format!(" --address={fqdn}:6379 ")));
        assert_eq!(env_text(ray(&pod), FQ_RAY_IP), Some(fqdn));
    }

    // ---- §6.2 command ----

    #[rstest]
    #[case::generated(None, None, &[], Some(vec!["/bin/bash", "-lc", "--"]), Some(" --metrics-export-port=8080 "))]
    #[case::user_command_runs_first(
        Some(vec!["sleep", "10"]), None, &[],
        Some(vec!["/bin/bash", "-lc", "--"]), Some(" sleep  10  && ulimit -n 65536; ray start --head ")
    )]
    #[case::user_args_too(
        Some(vec!["/bin/bash", "-c"]), Some(vec!["echo hi"]), &[],
        Some(vec!["/bin/bash", "-lc", "--"]), Some(" /bin/bash  -c  echo hi  && ulimit")
    )]
    #[case::user_ray_start_kept(
        Some(vec!["ray start --head --block"]), None, &[], Some(vec!["ray start --head --block"]), None
    )]
    #[case::overwrite_annotation(
        Some(vec!["python", "x.py"]), None, &[(RAY_OVERWRITE_CONTAINER_CMD_ANNOTATION, "True")],
        Some(vec!["python", "x.py"]), None
    )]
    fn container_command(
        #[case] command: Option<Vec<&str>>,
        #[case] user_args: Option<Vec<&str>>,
        #[case] annotations: &[(&str, &str)],
        #[case] expected_command: Option<Vec<&str>>,
        #[case] args_part: Option<&str>,
    ) {
        let to_strings = |parts: Option<Vec<&str>>| parts.map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let cluster = with(cluster(), |c| {
            head_container(c).command = to_strings(command);
            head_container(c).args = to_strings(user_args.clone());
            c.metadata.annotations = Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        });
        let pod = head(&cluster);
        assert_eq!(ray(&pod).command, to_strings(expected_command));
        match args_part {
            Some(part) => assert!(args(&pod).contains(part), "{:?} lacks {part:?}", args(&pod)),
            None => assert_eq!(ray(&pod).args, to_strings(user_args)),
        }
        assert_eq!(
            env_text(ray(&pod), KUBERAY_GEN_RAY_START_CMD),
            Some(ray_start_command(&cluster, None, &OperatorConfig::default()).as_str())
        );
    }

    // ---- §6.3 env ----

    #[rstest]
    #[case::head(None, true, vec![], HEAD_ENV.to_vec())]
    #[case::worker(None, false, vec![], [&[FQ_RAY_IP, RAY_IP][..], &HEAD_ENV[..7], &HEAD_ENV[8..]].concat())]
    #[case::user_env_first_and_kept(None, true, vec![env("A", "1"), env("RAY_PORT", "7000"), env("RAY_ADDRESS", "x:1")],
        vec!["A", "RAY_PORT", "RAY_ADDRESS", "RAY_CLUSTER_NAME", "RAY_CLOUD_INSTANCE_ID", "RAY_NODE_TYPE_NAME",
             "KUBERAY_GEN_RAY_START_CMD", "RAY_USAGE_STATS_KUBERAY_IN_USE", "RAY_USAGE_STATS_EXTRA_TAGS",
             "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"])]
    #[case::rayservice_head(Some("RayService"), true, vec![],
        vec!["RAY_CLUSTER_NAME", "RAY_CLOUD_INSTANCE_ID", "RAY_NODE_TYPE_NAME", "KUBERAY_GEN_RAY_START_CMD", "RAY_PORT",
             "RAY_timeout_ms_task_wait_for_death_info", "RAY_gcs_server_request_timeout_seconds",
             "RAY_SERVE_KV_TIMEOUT_S", "RAY_ADDRESS", "RAY_USAGE_STATS_KUBERAY_IN_USE", "RAY_USAGE_STATS_EXTRA_TAGS",
             "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"])]
    #[case::rayservice_var_set_by_user(Some("RayService"), false, vec![env("RAY_SERVE_KV_TIMEOUT_S", "9")],
        vec!["RAY_SERVE_KV_TIMEOUT_S", FQ_RAY_IP, RAY_IP, "RAY_CLUSTER_NAME", "RAY_CLOUD_INSTANCE_ID",
             "RAY_NODE_TYPE_NAME", "KUBERAY_GEN_RAY_START_CMD", "RAY_PORT", "RAY_timeout_ms_task_wait_for_death_info",
             "RAY_gcs_server_request_timeout_seconds", "RAY_ADDRESS", "RAY_USAGE_STATS_KUBERAY_IN_USE",
             "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"])]
    fn env_order(
        #[case] creator: Option<&str>,
        #[case] is_head: bool,
        #[case] user_env: Vec<EnvVar>,
        #[case] expected: Vec<&str>,
    ) {
        let cluster = with(cluster(), |c| {
            if let Some(kind) = creator {
                created_by(kind)(c);
            }
            let container = if is_head { head_container(c) } else { worker_container(c) };
            container.env = Some(user_env).filter(|e| !e.is_empty());
        });
        let pod = if is_head { head(&cluster) } else { worker(&cluster) };
        assert_eq!(env_names(ray(&pod)), expected);
    }

    #[rstest]
    #[case::head_address(true, RAY_ADDRESS, "127.0.0.1:6379")]
    #[case::worker_address(false, RAY_ADDRESS, &format!("{FQDN}:6379"))]
    #[case::worker_fqdn(false, FQ_RAY_IP, FQDN)]
    #[case::worker_ray_ip(false, RAY_IP, "raycluster-head-svc")]
    #[case::port(false, RAY_PORT, "6379")]
    #[case::usage(true, RAY_USAGE_STATS_KUBERAY_IN_USE, "1")]
    #[case::disk(true, RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE, "1")]
    #[case::tags(true, RAY_USAGE_STATS_EXTRA_TAGS, "kuberay_version=v1.3.0;kuberay_crd=RayCluster")]
    fn env_values(#[case] is_head: bool, #[case] name: &str, #[case] value: &str) {
        let cluster = cluster();
        let pod = if is_head { head(&cluster) } else { worker(&cluster) };
        assert_eq!(env_text(ray(&pod), name), Some(value));
    }

    #[test]
    fn extra_tags_name_the_creator_and_field_refs_point_at_labels() {
        let cluster = with(cluster(), created_by("RayJob"));
        let pod = head(&cluster);
        assert_eq!(env_text(ray(&pod), RAY_USAGE_STATS_EXTRA_TAGS), Some("kuberay_version=v1.3.0;kuberay_crd=RayJob"));
        let field_paths: Vec<&str> = ray(&pod)
            .env
            .iter()
            .flatten()
            .filter_map(|var| Some(var.value_from.as_ref()?.field_ref.as_ref()?.field_path.as_str()))
            .collect();
        assert_eq!(
            field_paths,
            ["metadata.labels['ray.io/cluster']", "metadata.name", "metadata.labels['ray.io/group']"]
        );
    }

    #[test]
    fn init_containers_get_the_head_address() {
        let cluster = with(cluster(), |c| {
            let spec = c.spec.head_group_spec.template.spec.as_mut().unwrap();
            spec.init_containers = Some(vec![Container { env: Some(vec![env("X", "y")]), ..ray_container("tls") }]);
        });
        let pod = head(&cluster);
        let init = &spec(&pod).init_containers.as_ref().unwrap()[0];
        assert_eq!(env_names(init), ["X", FQ_RAY_IP, RAY_IP]);
        assert_eq!(env_text(init, FQ_RAY_IP), Some(FQDN));
        assert_eq!(env_text(init, RAY_IP), Some("raycluster-head-svc"));
    }

    // ---- §6.4 volumes ----

    #[rstest]
    #[case::memory_limit(&[("memory", "2Gi")], &[("memory", "1Gi")], Some("2Gi"))]
    #[case::memory_request(&[("cpu", "1")], &[("memory", "1Gi")], Some("1Gi"))]
    #[case::no_memory(&[("cpu", "1")], &[], None)]
    fn shared_memory_size(
        #[case] limits: &[(&str, &str)],
        #[case] requests: &[(&str, &str)],
        #[case] size: Option<&str>,
    ) {
        let cluster = with(cluster(), |c| worker_container(c).resources = resources(limits, requests));
        let pod = worker(&cluster);
        let volume = &spec(&pod).volumes.as_ref().unwrap()[0];
        assert_eq!(volume.name, SHARED_MEMORY_VOLUME);
        let empty_dir = volume.empty_dir.as_ref().unwrap();
        assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
        assert_eq!(empty_dir.size_limit, size.map(|s| Quantity(s.to_string())));
        let mounts = ray(&pod).volume_mounts.as_ref().unwrap();
        assert_eq!((mounts[0].name.as_str(), mounts[0].mount_path.as_str()), ("shared-mem", "/dev/shm"));
    }

    #[test]
    fn a_user_mount_at_dev_shm_wins() {
        let mount = VolumeMount { name: "mine".to_string(), mount_path: "/dev/shm".to_string(), ..Default::default() };
        let cluster = with(cluster(), |c| head_container(c).volume_mounts = Some(vec![mount.clone()]));
        let pod = head(&cluster);
        assert_eq!(spec(&pod).volumes, None);
        assert_eq!(ray(&pod).volume_mounts, Some(vec![mount]));
    }

    #[test]
    fn autoscaler_logs_are_shared_with_the_head() {
        let cluster = with(cluster(), |c| c.spec.enable_in_tree_autoscaling = Some(true));
        let pod = head(&cluster);
        let volumes: Vec<&str> = spec(&pod).volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["shared-mem", "ray-logs"]);
        assert_eq!(spec(&pod).volumes.as_ref().unwrap()[1].empty_dir, Some(EmptyDirVolumeSource::default()));
        for container in &spec(&pod).containers {
            let mounts = container.volume_mounts.iter().flatten();
            assert!(mounts.clone().any(|m| m.name == "ray-logs" && m.mount_path == "/tmp/ray"), "{}", container.name);
        }
    }

    // ---- §6.5 init container ----

    /// KubeRay v1.3.0's script for the fixture cluster, spelled out with its Go source's tab indentation.
    const WAIT_GCS_READY_SCRIPT: &str = concat!(
        "\n",
        "\t\t\t\t\tSECONDS=0\n",
        "\t\t\t\t\twhile true; do\n",
        "\t\t\t\t\t\tif (( SECONDS <= 120 )); then\n",
        "\t\t\t\t\t\t\tif ray health-check --address raycluster-head-svc.default.svc.cluster.local:6379 \
         > /dev/null 2>&1; then\n",
        "\t\t\t\t\t\t\t\techo \"GCS is ready.\"\n",
        "\t\t\t\t\t\t\t\tbreak\n",
        "\t\t\t\t\t\t\tfi\n",
        "\t\t\t\t\t\t\techo \"$SECONDS seconds elapsed: Waiting for GCS to be ready.\"\n",
        "\t\t\t\t\t\telse\n",
        "\t\t\t\t\t\t\tif ray health-check --address raycluster-head-svc.default.svc.cluster.local:6379; then\n",
        "\t\t\t\t\t\t\t\techo \"GCS is ready. Any error messages above can be safely ignored.\"\n",
        "\t\t\t\t\t\t\t\tbreak\n",
        "\t\t\t\t\t\t\tfi\n",
        "\t\t\t\t\t\t\techo \"$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, \
         refer to the FAQ at https://github.com/ray-project/kuberay/blob/master/docs/guidance/FAQ.md.\"\n",
        "\t\t\t\t\t\tfi\n",
        "\t\t\t\t\t\tsleep 5\n",
        "\t\t\t\t\tdone\n",
        "\t\t\t\t",
    );

    #[test]
    fn workers_wait_for_the_gcs() {
        let security = SecurityContext { run_as_user: Some(1000), ..Default::default() };
        let cluster = with(cluster(), |c| {
            let container = worker_container(c);
            container.env = Some(vec![env("RAY_USE_TLS", "1")]);
            container.image_pull_policy = Some("Always".to_string());
            container.security_context = Some(security.clone());
        });
        let pod = worker(&cluster);
        let init = &spec(&pod).init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, WAIT_GCS_READY_CONTAINER);
        assert_eq!(init.image.as_deref(), Some("rayproject/ray:2.41.0"));
        assert_eq!(init.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(init.security_context, Some(security));
        assert_eq!(init.command, Some(vec!["/bin/bash".to_string(), "-lc".to_string(), "--".to_string()]));
        assert_eq!(init.resources, Some(fixed_resources("200m", "256Mi")));
        assert_eq!(env_names(init), ["RAY_USE_TLS", FQ_RAY_IP, RAY_IP]);
        assert_eq!(init.args, Some(vec![WAIT_GCS_READY_SCRIPT.to_string()]));
    }

    #[test]
    fn init_container_injection_can_be_disabled() {
        let config = OperatorConfig { enable_init_container_injection: false, ..config() };
        let cluster = cluster();
        assert_eq!(spec(&worker_pod(&cluster, &cluster.spec.worker_groups()[0], &config)).init_containers, None);
        assert_eq!(spec(&head(&cluster)).init_containers, None, "the head never waits");
    }

    // ---- §6.6 probes ----

    const RAYLET_CHECK: &str = "wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success";
    const GCS_CHECK: &str = "wget -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success";

    #[rstest]
    #[case::head(None, true, format!("{RAYLET_CHECK} && {GCS_CHECK}"), format!("{RAYLET_CHECK} && {GCS_CHECK}"), 5, 10)]
    #[case::worker(None, false, RAYLET_CHECK.to_string(), RAYLET_CHECK.to_string(), 2, 10)]
    #[case::rayservice_head(
        Some("RayService"), true,
        format!("{RAYLET_CHECK} && {GCS_CHECK}"), format!("{RAYLET_CHECK} && {GCS_CHECK}"), 5, 10
    )]
    #[case::rayservice_worker(Some("RayService"), false, RAYLET_CHECK.to_string(),
        format!("{RAYLET_CHECK} && wget -T 10 -q -O- http://localhost:8000/-/healthz | grep success"), 2, 1)]
    fn probes(
        #[case] creator: Option<&str>,
        #[case] is_head: bool,
        #[case] liveness: String,
        #[case] readiness: String,
        #[case] timeout: i32,
        #[case] readiness_failures: i32,
    ) {
        let cluster = with(cluster(), |c| {
            if let Some(kind) = creator {
                created_by(kind)(c);
            }
        });
        let pod = if is_head { head(&cluster) } else { worker(&cluster) };
        let container = ray(&pod);
        assert_eq!(probe_command(&container.liveness_probe), liveness);
        assert_eq!(probe_command(&container.readiness_probe), readiness);
        let timings = |probe: &Option<Probe>| {
            let p = probe.as_ref().unwrap();
            (p.initial_delay_seconds, p.timeout_seconds, p.period_seconds, p.success_threshold, p.failure_threshold)
        };
        assert_eq!(timings(&container.liveness_probe), (Some(30), Some(timeout), Some(5), Some(1), Some(120)));
        assert_eq!(
            timings(&container.readiness_probe),
            (Some(10), Some(timeout), Some(5), Some(1), Some(readiness_failures))
        );
    }

    #[test]
    fn serve_check_uses_the_serve_port() {
        let port = ContainerPort { name: Some("serve".to_string()), container_port: 9000, ..Default::default() };
        let cluster = with(with(cluster(), created_by("RayService")), |c| worker_container(c).ports = Some(vec![port]));
        let pod = worker(&cluster);
        assert!(probe_command(&ray(&pod).readiness_probe).ends_with("http://localhost:9000/-/healthz | grep success"));
    }

    #[test]
    fn user_probes_and_the_switch_are_honoured() {
        let user_probe = Probe { period_seconds: Some(99), ..Probe::default() };
        let cluster = with(cluster(), |c| head_container(c).readiness_probe = Some(user_probe.clone()));
        let pod = head(&cluster);
        assert_eq!(ray(&pod).readiness_probe, Some(user_probe));
        assert!(ray(&pod).liveness_probe.is_some());
        let config = OperatorConfig { enable_probes_injection: false, ..config() };
        let pod = head_pod(&cluster, &config);
        assert_eq!(ray(&pod).liveness_probe, None);
    }

    // ---- §6.7 ports ----

    #[rstest]
    #[case::appended(vec![("dashboard", 8265)], vec![("dashboard", 8265), ("metrics", 8080)])]
    #[case::user_metrics_kept(vec![("metrics", 9090)], vec![("metrics", 9090)])]
    fn metrics_port(#[case] declared: Vec<(&str, i32)>, #[case] expected: Vec<(&str, i32)>) {
        let to_ports = |pairs: Vec<(&str, i32)>| {
            pairs
                .into_iter()
                .map(|(name, port)| ContainerPort {
                    name: Some(name.to_string()),
                    container_port: port,
                    ..ContainerPort::default()
                })
                .collect::<Vec<_>>()
        };
        let cluster = with(cluster(), |c| worker_container(c).ports = Some(to_ports(declared)));
        assert_eq!(ray(&worker(&cluster)).ports, Some(to_ports(expected)));
    }

    // ---- §6.8 labels and names ----

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[rstest]
    #[case::head(None, true, &[], &[
        ("app.kubernetes.io/created-by", "kuberay-operator"), ("app.kubernetes.io/name", "kuberay"),
        ("ray.io/cluster", "raycluster"), ("ray.io/group", "headgroup"), ("ray.io/identifier", "raycluster-head"),
        ("ray.io/is-ray-node", "yes"), ("ray.io/node-type", "head")])]
    #[case::worker(None, false, &[], &[
        ("app.kubernetes.io/created-by", "kuberay-operator"), ("app.kubernetes.io/name", "kuberay"),
        ("ray.io/cluster", "raycluster"), ("ray.io/group", "small"), ("ray.io/identifier", "raycluster-worker"),
        ("ray.io/is-ray-node", "yes"), ("ray.io/node-type", "worker")])]
    #[case::user_overrides_all_but_three(None, false, &[
        ("app.kubernetes.io/name", "mine"), ("ray.io/identifier", "me"), ("team", "a"),
        ("ray.io/node-type", "head"), ("ray.io/group", "other"), ("ray.io/cluster", "other")], &[
        ("app.kubernetes.io/created-by", "kuberay-operator"), ("app.kubernetes.io/name", "mine"),
        ("ray.io/cluster", "raycluster"), ("ray.io/group", "small"), ("ray.io/identifier", "me"),
        ("ray.io/is-ray-node", "yes"), ("ray.io/node-type", "worker"), ("team", "a")])]
    #[case::rayservice_head_not_serving(Some("RayService"), true, &[("ray.io/serve", "true")], &[
        ("app.kubernetes.io/created-by", "kuberay-operator"), ("app.kubernetes.io/name", "kuberay"),
        ("ray.io/cluster", "raycluster"), ("ray.io/group", "headgroup"), ("ray.io/identifier", "raycluster-head"),
        ("ray.io/is-ray-node", "yes"), ("ray.io/node-type", "head"), ("ray.io/serve", "false")])]
    #[case::rayservice_worker_serving(Some("RayService"), false, &[], &[
        ("app.kubernetes.io/created-by", "kuberay-operator"), ("app.kubernetes.io/name", "kuberay"),
        ("ray.io/cluster", "raycluster"), ("ray.io/group", "small"), ("ray.io/identifier", "raycluster-worker"),
        ("ray.io/is-ray-node", "yes"), ("ray.io/node-type", "worker"), ("ray.io/serve", "true")])]
    fn pod_labels_follow_kuberay(
        #[case] creator: Option<&str>,
        #[case] is_head: bool,
        #[case] template_labels: &[(&str, &str)],
        #[case] expected: &[(&str, &str)],
    ) {
        let cluster = with(cluster(), |c| {
            if let Some(kind) = creator {
                created_by(kind)(c);
            }
            let template = if is_head { &mut c.spec.head_group_spec.template } else { &mut worker_group(c).template };
            template.metadata = Some(ObjectMeta { labels: Some(labels(template_labels)), ..ObjectMeta::default() });
        });
        let pod = if is_head { head(&cluster) } else { worker(&cluster) };
        assert_eq!(pod.metadata.labels, Some(labels(expected)));
        if is_head {
            assert_eq!(head_pod_labels(&cluster), labels(expected));
        }
    }

    #[rstest]
    #[case::head(true, "raycluster-head-", Some("kept"))]
    #[case::worker(false, "raycluster-small-worker-", None)]
    fn names_namespace_and_owner(#[case] is_head: bool, #[case] generate_name: &str, #[case] name: Option<&str>) {
        let cluster = with(cluster(), |c| {
            let template = if is_head { &mut c.spec.head_group_spec.template } else { &mut worker_group(c).template };
            let metadata = ObjectMeta {
                name: Some("kept".to_string()),
                namespace: Some("elsewhere".to_string()),
                ..ObjectMeta::default()
            };
            template.metadata = Some(metadata);
        });
        let pod = if is_head { head(&cluster) } else { worker(&cluster) };
        assert_eq!(pod.metadata.generate_name.as_deref(), Some(generate_name));
        assert_eq!(pod.metadata.name.as_deref(), name);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ray.io/v1", "RayCluster", "raycluster", "uid-1")
        );
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    }

    #[test]
    fn a_cluster_without_uid_still_owns_its_pods() {
        let cluster = with(cluster(), |c| c.metadata.uid = None);
        let owners = head(&cluster).metadata.owner_references.unwrap();
        assert_eq!((owners.len(), owners[0].name.as_str(), owners[0].uid.as_str()), (1, "raycluster", ""));
    }

    // ---- §5.2 GCS fault tolerance ----

    fn ft_options(change: impl FnOnce(&mut GcsFaultToleranceOptions)) -> impl FnOnce(&mut RayCluster) {
        move |cluster| {
            let mut options =
                GcsFaultToleranceOptions { redis_address: "redis:6379".to_string(), ..Default::default() };
            change(&mut options);
            cluster.spec.gcs_fault_tolerance_options = Some(options);
        }
    }

    fn annotations(pod: &Pod) -> Vec<(&str, &str)> {
        pod.metadata.annotations.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[rstest]
    #[case::off(with(cluster(), |_| ()), vec![("ray.io/ft-enabled", "false")], vec![])]
    #[case::annotation_uses_uid(with(cluster(), annotate(RAY_FT_ENABLED_ANNOTATION, "TRUE")),
        vec![("ray.io/external-storage-namespace", "uid-1"), ("ray.io/ft-enabled", "true")],
        vec![("RAY_external_storage_namespace", "uid-1")])]
    #[case::annotated_namespace(
        with(
            with(cluster(), annotate(RAY_FT_ENABLED_ANNOTATION, "true")),
            annotate(RAY_EXTERNAL_STORAGE_NS_ANNOTATION, "ns-a")
        ),
        vec![("ray.io/external-storage-namespace", "ns-a"), ("ray.io/ft-enabled", "true")],
        vec![("RAY_external_storage_namespace", "ns-a")])]
    #[case::legacy_password(with(with(cluster(), annotate(RAY_FT_ENABLED_ANNOTATION, "true")), |c| {
            c.spec.head_group_spec.ray_start_params.insert("redis-password".into(), "5241590000000000".into());
        }),
        vec![("ray.io/external-storage-namespace", "uid-1"), ("ray.io/ft-enabled", "true")],
        vec![("RAY_external_storage_namespace", "uid-1"), ("REDIS_PASSWORD", "5241590000000000")])]
    #[case::options(with(with(cluster(), annotate(RAY_EXTERNAL_STORAGE_NS_ANNOTATION, "ns-a")), ft_options(|o| {
            o.external_storage_namespace = Some("ns-b".into());
            o.redis_password = Some(RedisCredential { value: Some("pw".into()), value_from: None });
            o.redis_username = Some(RedisCredential { value: Some("user".into()), value_from: None });
        })),
        vec![("ray.io/external-storage-namespace", "ns-b"), ("ray.io/ft-enabled", "true")],
        vec![("RAY_external_storage_namespace", "ns-b"), ("RAY_REDIS_ADDRESS", "redis:6379"),
             ("REDIS_USERNAME", "user"), ("REDIS_PASSWORD", "pw")])]
    fn gcs_fault_tolerance_on_the_head(
        #[case] cluster: RayCluster,
        #[case] expected_annotations: Vec<(&str, &str)>,
        #[case] expected_env: Vec<(&str, &str)>,
    ) {
        let pod = head(&cluster);
        assert_eq!(annotations(&pod), expected_annotations);
        let env: Vec<(&str, &str)> = ray(&pod)
            .env
            .iter()
            .flatten()
            .take_while(|var| var.name != RAY_CLUSTER_NAME)
            .map(|var| (var.name.as_str(), var.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(env, expected_env);
    }

    #[test]
    fn redis_credentials_reach_ray_start_through_env() {
        let secret = EnvVarSource {
            secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                name: "redis".to_string(),
                key: "password".to_string(),
                optional: None,
            }),
            ..EnvVarSource::default()
        };
        let cluster = with(
            cluster(),
            ft_options(|o| {
                o.redis_password = Some(RedisCredential { value: None, value_from: Some(secret.clone()) });
                o.redis_username = Some(RedisCredential { value: Some("user".into()), value_from: None });
            }),
        );
        let line = ray_start_command(&cluster, None, &OperatorConfig::default());
        assert!(line.contains(" --redis-password=$REDIS_PASSWORD  --redis-username=$REDIS_USERNAME "), "{line}");
        let pod = head(&cluster);
        let password = ray(&pod).env.iter().flatten().find(|var| var.name == REDIS_PASSWORD).unwrap();
        assert_eq!((password.value.as_ref(), password.value_from.as_ref()), (None, Some(&secret)));
    }

    #[rstest]
    #[case::ft_on(with(cluster(), ft_options(|_| ())), vec![], Some("600"))]
    #[case::user_value_kept(
        with(cluster(), ft_options(|_| ())), vec![env(RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S, "60")], Some("60")
    )]
    #[case::ft_off(cluster(), vec![], None)]
    fn workers_reconnect_to_a_restarted_gcs(
        #[case] cluster: RayCluster,
        #[case] user_env: Vec<EnvVar>,
        #[case] timeout: Option<&str>,
    ) {
        let cluster = with(cluster, |c| worker_container(c).env = Some(user_env).filter(|e| !e.is_empty()));
        let pod = worker(&cluster);
        assert_eq!(env_text(ray(&pod), RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S), timeout);
        assert_eq!(pod.metadata.annotations, None, "FT annotations are the head's");
        let init = &spec(&pod).init_containers.as_ref().unwrap()[0];
        assert_eq!(env_text(init, RAY_GCS_RPC_SERVER_RECONNECT_TIMEOUT_S), timeout.filter(|t| *t == "60"));
    }

    // ---- §7 autoscaler and DEVIATIONS 10 ----

    fn autoscaling(options: Option<AutoscalerOptions>) -> impl FnOnce(&mut RayCluster) {
        move |cluster| {
            cluster.spec.enable_in_tree_autoscaling = Some(true);
            cluster.spec.autoscaler_options = options;
        }
    }

    #[test]
    fn autoscaler_sidecar_defaults() {
        let pod = head(&with(cluster(), autoscaling(None)));
        assert_eq!(spec(&pod).service_account_name.as_deref(), Some("raycluster"));
        let autoscaler = &spec(&pod).containers[1];
        assert_eq!(autoscaler.name, "autoscaler");
        assert_eq!(autoscaler.image.as_deref(), Some("rayproject/ray:2.41.0"));
        assert_eq!(autoscaler.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            env_names(autoscaler),
            ["RAY_CLUSTER_NAME", "RAY_CLUSTER_NAMESPACE", "RAY_HEAD_POD_NAME", "KUBERAY_CRD_VER"]
        );
        assert_eq!(env_text(autoscaler, "KUBERAY_CRD_VER"), Some("v1"));
        assert_eq!(autoscaler.command, Some(vec!["/bin/bash".into(), "-lc".into(), "--".into()]));
        assert_eq!(
            autoscaler.args,
            Some(vec![
                "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
                    .to_string()
            ])
        );
        assert_eq!(autoscaler.resources, Some(fixed_resources("500m", "512Mi")));
        assert_eq!(autoscaler.liveness_probe, None, "only the Ray container is probed");
        assert!(!env_names(ray(&pod)).contains(&RAY_ENABLE_AUTOSCALER_V2));
        assert_eq!(spec(&pod).restart_policy, None);
    }

    #[test]
    fn autoscaler_options_override_and_append() {
        let extra_mount = VolumeMount { name: "cfg".into(), mount_path: "/cfg".into(), ..Default::default() };
        let options = AutoscalerOptions {
            image: Some("custom:1".into()),
            image_pull_policy: Some("Always".into()),
            resources: resources(&[("cpu", "1")], &[]),
            env: Some(vec![env("EXTRA", "1")]),
            volume_mounts: Some(vec![extra_mount.clone()]),
            security_context: Some(SecurityContext { privileged: Some(false), ..Default::default() }),
            ..AutoscalerOptions::default()
        };
        let cluster = with(with(cluster(), autoscaling(Some(options.clone()))), |c| {
            c.spec.head_group_spec.template.spec.as_mut().unwrap().service_account_name = Some("sa".into())
        });
        let pod = head(&cluster);
        assert_eq!(spec(&pod).service_account_name.as_deref(), Some("sa"));
        let autoscaler = &spec(&pod).containers[1];
        assert_eq!(autoscaler.image.as_deref(), Some("custom:1"));
        assert_eq!(autoscaler.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(autoscaler.resources, options.resources);
        assert_eq!(autoscaler.security_context, options.security_context);
        assert_eq!(env_names(autoscaler).last(), Some(&"EXTRA"));
        let mounts: Vec<&str> = autoscaler.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(mounts, ["/cfg", "/tmp/ray"]);
    }

    #[rstest]
    #[case::v2(AutoscalerVersion::V2, "true", Some("Never"))]
    #[case::v1(AutoscalerVersion::V1, "false", None)]
    fn autoscaler_version(#[case] version: AutoscalerVersion, #[case] env: &str, #[case] restart: Option<&str>) {
        let options = AutoscalerOptions { version: Some(version), ..AutoscalerOptions::default() };
        let cluster = with(cluster(), autoscaling(Some(options)));
        let head = head(&cluster);
        assert_eq!(env_names(ray(&head))[0], RAY_ENABLE_AUTOSCALER_V2, "set before the operator's own env");
        assert_eq!(env_text(ray(&head), RAY_ENABLE_AUTOSCALER_V2), Some(env));
        assert_eq!(spec(&head).restart_policy.as_deref(), restart);
        let worker = worker(&cluster);
        assert_eq!(spec(&worker).restart_policy.as_deref(), restart);
        assert_eq!(env_text(ray(&worker), RAY_ENABLE_AUTOSCALER_V2), None);
    }

    #[test]
    fn autoscaler_version_needs_autoscaling() {
        let options = AutoscalerOptions { version: Some(AutoscalerVersion::V2), ..AutoscalerOptions::default() };
        let cluster = with(cluster(), |c| c.spec.autoscaler_options = Some(options));
        assert_eq!(spec(&head(&cluster)).restart_policy, None);
        assert_eq!(spec(&head(&cluster)).containers.len(), 1);
    }

    // ---- a KubeRay sample, end to end ----

    #[test]
    fn ray_cluster_sample_head_pod() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/kuberay-v1.3.0/samples/ray-cluster.sample.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let document = parse_yaml_stream(&text).unwrap().remove(0);
        let Some(RayObject::Cluster(cluster)) = decode(&document).unwrap() else { panic!("not a RayCluster") };
        let mut cluster = *cluster;
        cluster.metadata.namespace = Some("default".to_string());
        let pod = head(&cluster);
        let start = "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  \
                     --memory=2000000000  --metrics-export-port=8080  --num-cpus=1 ";
        assert_eq!(ray(&pod).command, Some(vec!["/bin/bash".into(), "-lc".into(), "--".into()]));
        assert_eq!(ray(&pod).args, Some(vec![format!("ulimit -n 65536; {start}")]));
        assert_eq!(env_names(ray(&pod)), HEAD_ENV);
        assert_eq!(env_text(ray(&pod), KUBERAY_GEN_RAY_START_CMD), Some(start));
        let ports: Vec<(&str, i32)> =
            ray(&pod).ports.iter().flatten().map(|p| (p.name.as_deref().unwrap(), p.container_port)).collect();
        assert_eq!(ports, [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("metrics", 8080)]);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("raycluster-kuberay-head-"));
        assert_eq!(annotations(&pod), [("ray.io/ft-enabled", "false")]);
        let shm = &spec(&pod).volumes.as_ref().unwrap()[0];
        assert_eq!(shm.empty_dir.as_ref().unwrap().size_limit, Some(Quantity("2G".to_string())));

        let worker = worker_pod(&cluster, &cluster.spec.worker_groups()[0], &config());
        assert_eq!(
            env_text(ray(&worker), KUBERAY_GEN_RAY_START_CMD),
            Some(
                "ray start  --address=raycluster-kuberay-head-svc.default.svc.cluster.local:6379  --block  \
                 --dashboard-agent-listen-port=52365  --memory=1000000000  --metrics-export-port=8080  --num-cpus=1 "
            )
        );
        assert_eq!(worker.metadata.generate_name.as_deref(), Some("raycluster-kuberay-workergroup-worker-"));
    }
}
