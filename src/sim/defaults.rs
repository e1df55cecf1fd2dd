//! What the API server's registry strategies do to particular kinds on create and update: defaults, allocated
//! addresses, the initial status, and the validation that protects the simulated cluster's own invariants.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::error::{Cause, CauseReason};
use super::resources::{CRD_GROUP, CRD_PLURAL, ResourceType};

/// The finalizer that keeps a CRD until its custom resources are gone.
pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// The namespace controller's entry in `spec.finalizers`.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Cluster IPs and node ports handed out so far.
#[derive(Clone, Debug)]
pub struct Allocator {
    next_cluster_ip: u32,
    next_node_port: u16,
}

impl Default for Allocator {
    fn default() -> Self {
        // 10.96.0.1 is the `kubernetes` Service's, as in a kubeadm cluster (service CIDR 10.96.0.0/12).
        Allocator { next_cluster_ip: u32::from(Ipv4Addr::new(10, 96, 0, 1)), next_node_port: 30000 }
    }
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        let ip = Ipv4Addr::from(self.next_cluster_ip);
        self.next_cluster_ip += 1;
        ip.to_string()
    }

    fn node_port(&mut self) -> u16 {
        let port = self.next_node_port;
        self.next_node_port = if port >= 32767 { 30000 } else { port + 1 };
        port
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Namespace,
    Pod,
    Service,
    Job,
    Crd,
    Other,
}

fn kind_of(resource: &ResourceType) -> Kind {
    match (resource.group.as_str(), resource.plural.as_str()) {
        ("", "namespaces") => Kind::Namespace,
        ("", "pods") => Kind::Pod,
        ("", "services") => Kind::Service,
        ("batch", "jobs") => Kind::Job,
        (CRD_GROUP, CRD_PLURAL) => Kind::Crd,
        _ => Kind::Other,
    }
}

/// Names of namespaces and Services are DNS labels; every other name is a DNS subdomain.
pub fn check_name(resource: &ResourceType, name: &str) -> Option<Cause> {
    let label = matches!(kind_of(resource), Kind::Namespace | Kind::Service);
    let (valid, max) = if label { (is_dns_label(name), 63) } else { (name.split('.').all(is_dns_label), 253) };
    if name.len() > max {
        return Some(Cause::new(
            "metadata.name",
            CauseReason::Invalid,
            format!("\"{name}\": must be no more than {max} characters"),
        ));
    }
    if valid {
        return None;
    }
    let detail = if label {
        format!(
            "\"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
             start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    } else {
        format!(
            "\"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    };
    Some(Cause::new("metadata.name", CauseReason::Invalid, detail))
}

fn is_dns_label(part: &str) -> bool {
    !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !part.starts_with('-')
        && !part.ends_with('-')
}

/// The status a new object starts with when its kind has a status subresource (what a client sent is dropped).
pub fn initial_status(resource: &ResourceType, object: &Value) -> Option<Value> {
    match kind_of(resource) {
        Kind::Namespace => Some(json!({"phase": "Active"})),
        Kind::Pod => Some(json!({"phase": "Pending", "qosClass": qos_class(object)})),
        Kind::Service => Some(json!({"loadBalancer": {}})),
        Kind::Job => Some(json!({})),
        Kind::Crd | Kind::Other => None,
    }
}

/// Defaults and checks on create. `now` stamps conditions.
pub fn on_create(
    resource: &ResourceType,
    object: &mut Value,
    now: &str,
    allocator: &mut Allocator,
) -> Result<(), Vec<Cause>> {
    match kind_of(resource) {
        Kind::Namespace => {
            namespace_defaults(object);
            object["spec"]["finalizers"] = json!([NAMESPACE_FINALIZER]);
            Ok(())
        }
        Kind::Pod => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec_defaults(spec);
            }
            Ok(())
        }
        Kind::Service => service_defaults(object, None, allocator),
        Kind::Job => job_defaults(object),
        Kind::Crd => crd_defaults(object, now),
        Kind::Other => Ok(()),
    }
}

/// Defaults and checks on update; `current` is the stored object.
pub fn on_update(
    resource: &ResourceType,
    object: &mut Value,
    current: &Value,
    allocator: &mut Allocator,
) -> Result<(), Vec<Cause>> {
    match kind_of(resource) {
        Kind::Namespace => {
            namespace_defaults(object);
            // `spec.finalizers` belongs to the namespace controller (the `finalize` subresource).
            object["spec"]["finalizers"] = current.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            Ok(())
        }
        Kind::Pod => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec_defaults(spec);
            }
            Ok(())
        }
        Kind::Service => service_defaults(object, Some(current), allocator),
        Kind::Job => {
            // The selector and its labels are immutable: an update that leaves them out keeps the stored ones.
            if object.pointer("/spec/selector").is_none()
                && let Some(selector) = current.pointer("/spec/selector")
            {
                object["spec"]["selector"] = selector.clone();
                if let Some(labels) = current.pointer("/spec/template/metadata/labels") {
                    merge_missing(&mut object["spec"]["template"]["metadata"]["labels"], labels);
                }
            }
            job_defaults(object)
        }
        Kind::Crd => crd_check(object),
        Kind::Other => Ok(()),
    }
}

fn set_default(map: &mut Value, key: &str, value: Value) {
    if let Some(entries) = map.as_object_mut() {
        entries.entry(key.to_string()).or_insert(value);
    }
}

fn merge_missing(target: &mut Value, defaults: &Value) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let (Some(target), Some(defaults)) = (target.as_object_mut(), defaults.as_object()) {
        for (key, value) in defaults {
            target.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

fn namespace_defaults(object: &mut Value) {
    let name = object.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
}

/// The Pod defaults a reader of a Pod most often meets; the many others of `SetDefaults_PodSpec` are left out.
fn pod_spec_defaults(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let image = container.get("image").and_then(Value::as_str).unwrap_or_default();
            let tag = image.rsplit('/').next().and_then(|last| last.split_once(':')).map(|(_, tag)| tag);
            let policy =
                if tag.is_none_or(|t| t == "latest") && !image.contains('@') { "Always" } else { "IfNotPresent" };
            set_default(container, "imagePullPolicy", json!(policy));
            set_default(container, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(container, "terminationMessagePolicy", json!("File"));
            set_default(container, "resources", json!({}));
            for port in container.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

/// Guaranteed when every container's requests equal its limits for cpu and memory, BestEffort when no container
/// asks for anything, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|list| pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let amount = |c: &Value, kind: &str, resource: &str| c.pointer(&format!("/resources/{kind}/{resource}")).cloned();
    let asks_nothing = containers.iter().all(|c| {
        ["requests", "limits"]
            .iter()
            .all(|kind| c.pointer(&format!("/resources/{kind}")).and_then(Value::as_object).is_none_or(Map::is_empty))
    });
    if asks_nothing {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|resource| {
            let limit = amount(c, "limits", resource);
            let request = amount(c, "requests", resource).or_else(|| limit.clone());
            limit.is_some() && request == limit
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

fn service_defaults(object: &mut Value, current: Option<&Value>, allocator: &mut Allocator) -> Result<(), Vec<Cause>> {
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    let spec = &mut object["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    let node_ports = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
    let stored_ports: Vec<Value> =
        current.and_then(|c| c.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
    for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        set_default(port, "protocol", json!("TCP"));
        let number = port.get("port").cloned().unwrap_or(Value::Null);
        set_default(port, "targetPort", number.clone());
        if node_ports && port.get("nodePort").is_none() {
            let stored = stored_ports.iter().find(|p| p.get("port") == Some(&number)).and_then(|p| p.get("nodePort"));
            let node_port = stored.cloned().unwrap_or_else(|| json!(allocator.node_port()));
            port["nodePort"] = node_port;
        }
    }
    if service_type == "ExternalName" {
        return Ok(());
    }
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or_default().to_string();
    let stored = current.and_then(|c| c.pointer("/spec/clusterIP")).and_then(Value::as_str).map(str::to_string);
    let cluster_ip = match (requested.as_str(), stored) {
        ("", Some(stored)) => stored,
        ("", None) => allocator.cluster_ip(),
        (requested, Some(stored)) if requested != stored => {
            return Err(vec![Cause::new("spec.clusterIPs[0]", CauseReason::Invalid, "field is immutable")]);
        }
        (requested, _) => requested.to_string(),
    };
    spec["clusterIP"] = json!(cluster_ip);
    spec["clusterIPs"] = json!([cluster_ip]);
    if cluster_ip != "None" {
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if node_ports {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    Ok(())
}

fn job_defaults(object: &mut Value) -> Result<(), Vec<Cause>> {
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    let uid = object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = object.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let spec = &mut object["spec"];
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec.get("podFailurePolicy").is_none() {
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    }
    if spec.get("manualSelector").and_then(Value::as_bool) != Some(true) && spec.get("selector").is_none() {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = json!({
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        });
        merge_missing(&mut spec["template"]["metadata"]["labels"], &labels);
    }
    let restart = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str);
    if !matches!(restart, Some("Never" | "OnFailure")) {
        return Err(vec![Cause::new(
            "spec.template.spec.restartPolicy",
            CauseReason::Required,
            "valid values: \"OnFailure\", \"Never\"",
        )]);
    }
    if let Some(pod_spec) = spec.pointer_mut("/template/spec") {
        pod_spec_defaults(pod_spec);
    }
    Ok(())
}

fn crd_check(object: &Value) -> Result<(), Vec<Cause>> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let (group, plural, name) = (text("/spec/group"), text("/spec/names/plural"), text("/metadata/name"));
    let mut causes = Vec::new();
    if group.is_empty() {
        causes.push(Cause::new("spec.group", CauseReason::Required, ""));
    }
    if plural.is_empty() {
        causes.push(Cause::new("spec.names.plural", CauseReason::Required, ""));
    }
    if text("/spec/names/kind").is_empty() {
        causes.push(Cause::new("spec.names.kind", CauseReason::Required, ""));
    }
    if name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "metadata.name",
            CauseReason::Invalid,
            format!("\"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let storage = object.pointer("/spec/versions").and_then(Value::as_array).map_or(0, |versions| {
        versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count()
    });
    if storage != 1 {
        causes.push(Cause::new(
            "spec.versions",
            CauseReason::Invalid,
            "must have exactly one version marked as storage version",
        ));
    }
    if causes.is_empty() { Ok(()) } else { Err(causes) }
}

/// A new CRD is checked, gets its cleanup finalizer, and is established at once (names accepted, no conflicts).
fn crd_defaults(object: &mut Value, now: &str) -> Result<(), Vec<Cause>> {
    crd_check(object)?;
    let kind = object.pointer("/spec/names/kind").cloned().unwrap_or(Value::Null);
    let kind_text = kind.as_str().unwrap_or_default().to_string();
    let names = &mut object["spec"]["names"];
    set_default(names, "listKind", json!(format!("{kind_text}List")));
    set_default(names, "singular", json!(kind_text.to_lowercase()));
    let accepted = names.clone();
    let finalizers = &mut object["metadata"]["finalizers"];
    if !finalizers.is_array() {
        *finalizers = json!([]);
    }
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == CRD_CLEANUP_FINALIZER)
    {
        list.push(json!(CRD_CLEANUP_FINALIZER));
    }
    let stored: Vec<Value> = object
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    object["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::super::resources::Registry;
    use super::*;

    fn resource(group: &str, plural: &str) -> ResourceType {
        let registry = Registry::default();
        registry.types().find(|t| t.group == group && t.plural == plural).cloned().unwrap()
    }

    #[rstest]
    #[case::subdomain_with_dots("pods", "a.b-c", true)]
    #[case::uppercase("pods", "Abc", false)]
    #[case::service_no_dots("services", "a.b", false)]
    #[case::service_label("services", "raycluster-head-svc", true)]
    #[case::leading_dash("configmaps", "-a", false)]
    fn names_follow_rfc_1123(#[case] plural: &str, #[case] name: &str, #[case] valid: bool) {
        assert_eq!(check_name(&resource("", plural), name).is_none(), valid);
    }

    #[rstest]
    #[case::best_effort(json!([{"name": "c"}]), "BestEffort")]
    #[case::burstable(json!([{"name": "c", "resources": {"requests": {"cpu": "1"}}}]), "Burstable")]
    #[case::guaranteed(json!([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]), "Guaranteed")]
    #[case::unequal(json!([{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]), "Burstable")]
    fn pods_get_their_qos_class(#[case] containers: Value, #[case] class: &str) {
        let pod = json!({"spec": {"containers": containers}});
        assert_eq!(initial_status(&resource("", "pods"), &pod), Some(json!({"phase": "Pending", "qosClass": class})));
    }

    #[test]
    fn services_get_a_cluster_ip_unless_headless_and_keep_it_on_update() {
        let services = resource("", "services");
        let mut allocator = Allocator::default();
        let mut service = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        on_create(&services, &mut service, "t", &mut allocator).unwrap();
        assert_eq!(service["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(service["spec"]["type"], "ClusterIP");
        assert_eq!(service["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        let mut headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        on_create(&services, &mut headless, "t", &mut allocator).unwrap();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut replaced = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        on_update(&services, &mut replaced, &service, &mut allocator).unwrap();
        assert_eq!(replaced["spec"]["clusterIP"], "10.96.0.1");
        let mut changed = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.9"}});
        assert!(on_update(&services, &mut changed, &service, &mut allocator).is_err());
    }

    #[test]
    fn jobs_get_a_selector_on_their_uid_and_need_a_restart_policy() {
        let jobs = resource("batch", "jobs");
        let mut allocator = Allocator::default();
        let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i:1"}]}});
        let mut job = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": template}});
        on_create(&jobs, &mut job, "t", &mut allocator).unwrap();
        assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}));
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        assert_eq!((job["spec"]["backoffLimit"].clone(), job["spec"]["completions"].clone()), (json!(6), json!(1)));
        let mut always = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": []}}}});
        let causes = on_create(&jobs, &mut always, "t", &mut allocator).unwrap_err();
        assert_eq!(causes[0].field, "spec.template.spec.restartPolicy");
    }

    #[test]
    fn a_crd_is_established_with_a_cleanup_finalizer() {
        let crds = resource(CRD_GROUP, CRD_PLURAL);
        let mut crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true}]},
        });
        on_create(&crds, &mut crd, "2025-01-01T00:00:00Z", &mut Allocator::default()).unwrap();
        assert_eq!(crd["metadata"]["finalizers"], json!([CRD_CLEANUP_FINALIZER]));
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        crd["metadata"]["name"] = json!("widgets");
        let causes = on_update(&crds, &mut crd.clone(), &crd, &mut Allocator::default()).unwrap_err();
        assert_eq!(causes[0].detail, "\"widgets\": must be spec.names.plural+\".\"+spec.group");
    }
}
