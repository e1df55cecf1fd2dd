//! The kinds the simulated API server serves: the built-in ones from a table, and one per served version of every
//! CustomResourceDefinition created through the API. Also the discovery documents built from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::error::GroupResource;

/// A resource as storage knows it: objects are kept per group and plural, whatever version they were written in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub group: String,
    pub plural: String,
}

/// Everything the server needs to know to serve one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    /// Served versions; the first is the preferred (and storage) one.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// A `/status` subresource: the main endpoint ignores status, `/status` changes only status.
    pub status_subresource: bool,
    /// `metadata.generation` is kept and bumped on changes outside metadata (and status).
    pub generation: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// Defined by a CRD: its lists carry `apiVersion` and `kind` on every item, and it has no strategic merge patch.
    pub custom: bool,
    /// A delete that removes the object at once answers with the object rather than a `Status`.
    pub delete_returns_object: bool,
    /// Deleting without a propagation policy orphans dependents (`batch/v1` Jobs) instead of collecting them.
    pub orphans_by_default: bool,
    /// The CRD that defines a custom resource: its schemas and printer columns.
    pub definition: Option<Arc<Value>>,
}

impl ResourceType {
    pub fn id(&self) -> ResourceId {
        ResourceId { group: self.group.clone(), plural: self.plural.clone() }
    }

    pub fn group_resource(&self) -> GroupResource<'_> {
        GroupResource { group: &self.group, resource: &self.plural }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_string() } else { format!("{}/{version}", self.group) }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The CRD's entry for one version of a custom resource.
    pub fn crd_version(&self, version: &str) -> Option<&Value> {
        self.definition
            .as_deref()?
            .pointer("/spec/versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
    }

    /// A custom resource's `openAPIV3Schema` at one version.
    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.crd_version(version)?.pointer("/schema/openAPIV3Schema")
    }
}

/// One row of the built-in table.
#[derive(Clone, Copy)]
struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    generation: bool,
    returns_object: bool,
    orphans: bool,
    all: bool,
    short_names: &'static [&'static str],
    fields: &'static [&'static str],
}

impl Builtin {
    const fn namespaced(group: &'static str, version: &'static str, plural: &'static str, kind: &'static str) -> Self {
        Builtin {
            group,
            version,
            plural,
            kind,
            namespaced: true,
            status: false,
            generation: false,
            returns_object: false,
            orphans: false,
            all: false,
            short_names: &[],
            fields: &[],
        }
    }

    const fn cluster(group: &'static str, version: &'static str, plural: &'static str, kind: &'static str) -> Self {
        Builtin { namespaced: false, ..Builtin::namespaced(group, version, plural, kind) }
    }

    /// A status subresource and a generation: the shape of every workload kind.
    const fn workload(self) -> Self {
        Builtin { status: true, generation: true, ..self }
    }

    const fn status(self) -> Self {
        Builtin { status: true, ..self }
    }

    const fn generation(self) -> Self {
        Builtin { generation: true, ..self }
    }

    const fn returns_object(self) -> Self {
        Builtin { returns_object: true, ..self }
    }

    const fn in_all(self) -> Self {
        Builtin { all: true, ..self }
    }

    const fn short(self, short_names: &'static [&'static str]) -> Self {
        Builtin { short_names, ..self }
    }

    const fn fields(self, fields: &'static [&'static str]) -> Self {
        Builtin { fields, ..self }
    }

    fn resource_type(&self) -> ResourceType {
        ResourceType {
            group: self.group.to_string(),
            versions: vec![self.version.to_string()],
            plural: self.plural.to_string(),
            singular: self.kind.to_lowercase(),
            kind: self.kind.to_string(),
            namespaced: self.namespaced,
            status_subresource: self.status,
            generation: self.generation,
            short_names: self.short_names.iter().map(|s| s.to_string()).collect(),
            categories: if self.all { vec!["all".to_string()] } else { Vec::new() },
            selectable_fields: self.fields.iter().map(|s| s.to_string()).collect(),
            custom: false,
            delete_returns_object: self.returns_object,
            orphans_by_default: self.orphans,
            definition: None,
        }
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
];

/// The built-in kinds, in the order discovery lists their groups. Flags follow each kind's registry strategy in
/// Kubernetes 1.33 (status subresource, generation, what a delete answers, the default propagation).
const BUILTINS: &[Builtin] = &[
    Builtin::cluster("", "v1", "namespaces", "Namespace")
        .status()
        .returns_object()
        .short(&["ns"])
        .fields(&["status.phase"]),
    Builtin::namespaced("", "v1", "pods", "Pod").workload().returns_object().in_all().short(&["po"]).fields(POD_FIELDS),
    Builtin::namespaced("", "v1", "services", "Service").status().returns_object().in_all().short(&["svc"]),
    Builtin::namespaced("", "v1", "endpoints", "Endpoints").short(&["ep"]),
    Builtin::namespaced("", "v1", "events", "Event").short(&["ev"]).fields(EVENT_FIELDS),
    Builtin::namespaced("", "v1", "serviceaccounts", "ServiceAccount").returns_object().short(&["sa"]),
    Builtin::namespaced("", "v1", "secrets", "Secret").fields(&["type"]),
    Builtin::namespaced("", "v1", "configmaps", "ConfigMap").short(&["cm"]),
    Builtin::namespaced("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim").status().short(&["pvc"]),
    Builtin::cluster("", "v1", "persistentvolumes", "PersistentVolume").status().short(&["pv"]),
    Builtin::cluster("", "v1", "nodes", "Node").status().short(&["no"]).fields(&["spec.unschedulable"]),
    Builtin::namespaced("", "v1", "resourcequotas", "ResourceQuota").status().short(&["quota"]),
    Builtin::namespaced("", "v1", "limitranges", "LimitRange").short(&["limits"]),
    Builtin::namespaced("apps", "v1", "deployments", "Deployment").workload().in_all().short(&["deploy"]),
    Builtin::namespaced("apps", "v1", "statefulsets", "StatefulSet").workload().in_all().short(&["sts"]),
    Builtin::namespaced("apps", "v1", "replicasets", "ReplicaSet").workload().in_all().short(&["rs"]),
    Builtin::namespaced("apps", "v1", "daemonsets", "DaemonSet").workload().in_all().short(&["ds"]),
    Builtin::namespaced("batch", "v1", "jobs", "Job").workload().in_all().fields(&["status.successful"]),
    Builtin::namespaced("batch", "v1", "cronjobs", "CronJob").workload().in_all().short(&["cj"]),
    Builtin::namespaced("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Builtin::namespaced("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Builtin::cluster("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole"),
    Builtin::cluster("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding"),
    Builtin::namespaced("networking.k8s.io", "v1", "ingresses", "Ingress").workload().short(&["ing"]),
    Builtin::namespaced("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy").generation().short(&["netpol"]),
    Builtin::cluster("networking.k8s.io", "v1", "ingressclasses", "IngressClass"),
    Builtin::namespaced("coordination.k8s.io", "v1", "leases", "Lease"),
    Builtin::namespaced("events.k8s.io", "v1", "events", "Event").short(&["ev"]),
    Builtin::namespaced("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Builtin::namespaced("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget").workload().short(&["pdb"]),
    Builtin::namespaced("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
        .status()
        .short(&["hpa"]),
    Builtin::cluster("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass").short(&["pc"]),
    Builtin::cluster("storage.k8s.io", "v1", "storageclasses", "StorageClass").returns_object().short(&["sc"]),
    Builtin::cluster("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition")
        .workload()
        .short(&["crd", "crds"]),
];

/// Jobs of `batch/v1` orphan their Pods unless told otherwise (the API server keeps this for compatibility).
fn orphans_by_default(group: &str, plural: &str) -> bool {
    group == "batch" && plural == "jobs"
}

pub const CRD_GROUP: &str = "apiextensions.k8s.io";
pub const CRD_PLURAL: &str = "customresourcedefinitions";

/// Every kind served now.
#[derive(Clone, Debug)]
pub struct Registry {
    types: BTreeMap<ResourceId, ResourceType>,
    /// Group names in discovery order: built-in groups first, then CRD groups as they appear.
    group_order: Vec<String>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut registry = Registry { types: BTreeMap::new(), group_order: Vec::new() };
        for builtin in BUILTINS {
            let mut resource = builtin.resource_type();
            resource.orphans_by_default = orphans_by_default(builtin.group, builtin.plural);
            registry.insert(resource);
        }
        registry
    }
}

impl Registry {
    fn insert(&mut self, resource: ResourceType) {
        if !self.group_order.contains(&resource.group) {
            self.group_order.push(resource.group.clone());
        }
        self.types.insert(resource.id(), resource);
    }

    pub fn get(&self, id: &ResourceId) -> Option<&ResourceType> {
        self.types.get(id)
    }

    /// The resource served at `GROUP/VERSION/PLURAL`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&ResourceId { group: group.to_string(), plural: plural.to_string() })
            .filter(|t| t.serves(version))
    }

    pub fn types(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Serves the resource a CRD defines (replacing what an earlier version of the CRD defined). `None` for a CRD
    /// that names a built-in resource or defines nothing servable.
    pub fn register_crd(&mut self, crd: &Value) -> Option<ResourceType> {
        let resource = resource_of_crd(crd)?;
        if self.types.get(&resource.id()).is_some_and(|existing| !existing.custom) {
            return None;
        }
        self.insert(resource.clone());
        Some(resource)
    }

    pub fn unregister(&mut self, id: &ResourceId) {
        if self.types.get(id).is_some_and(|t| t.custom) {
            self.types.remove(id);
            if !self.types.values().any(|t| t.group == id.group) {
                self.group_order.retain(|g| *g != id.group);
            }
        }
    }

    /// `/api`: the core group's versions.
    pub fn core_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })
    }

    /// `/apis`: every named group with its versions.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self.group_order.iter().filter(|g| !g.is_empty()).map(|g| self.group(g)).collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/apis/GROUP`.
    pub fn group_document(&self, group: &str) -> Option<Value> {
        self.group_order.iter().any(|g| g == group && !g.is_empty()).then(|| {
            let mut document = self.group(group);
            document["apiVersion"] = json!("v1");
            document
        })
    }

    fn group(&self, group: &str) -> Value {
        let mut versions: Vec<&str> = Vec::new();
        let mut preferred = None;
        for resource in self.types.values().filter(|t| t.group == group) {
            preferred.get_or_insert(resource.preferred_version());
            for version in &resource.versions {
                if !versions.contains(&version.as_str()) {
                    versions.push(version);
                }
            }
        }
        let version_entry = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
        json!({
            "kind": "APIGroup",
            "name": group,
            "versions": versions.iter().map(|v| version_entry(v)).collect::<Vec<_>>(),
            "preferredVersion": version_entry(preferred.unwrap_or("v1")),
        })
    }

    /// `/api/v1`, `/apis/GROUP/VERSION`: the resources of one group version, with their subresources.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        let mut resources = Vec::new();
        for resource in self.types.values().filter(|t| t.group == group && t.serves(version)) {
            let mut entry = json!({
                "name": resource.plural,
                "singularName": resource.singular,
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": verbs,
            });
            if !resource.short_names.is_empty() {
                entry["shortNames"] = json!(resource.short_names);
            }
            if !resource.categories.is_empty() {
                entry["categories"] = json!(resource.categories);
            }
            resources.push(entry);
            if resource.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", resource.plural),
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }
}

/// The resource a CRD object defines: its served versions (the storage version first), names, scope, and the status
/// subresource if any served version declares one.
pub fn resource_of_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let text = |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_string();
    let list = |value: Option<&Value>| -> Vec<String> {
        value.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
    };
    let served: Vec<&Value> = spec
        .get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .collect();
    let mut versions: Vec<String> = Vec::new();
    for version in &served {
        let name = text(version.get("name"));
        if version.get("storage").and_then(Value::as_bool).unwrap_or(false) {
            versions.insert(0, name);
        } else {
            versions.push(name);
        }
    }
    let status_subresource = served.iter().any(|v| v.pointer("/subresources/status").is_some());
    let selectable_fields = served
        .iter()
        .flat_map(|v| v.get("selectableFields").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
        .map(|path| path.trim_start_matches('.').to_string())
        .collect();
    let plural = text(names.get("plural"));
    let kind = text(names.get("kind"));
    if versions.is_empty() || plural.is_empty() || kind.is_empty() {
        return None;
    }
    let singular = names.get("singular").and_then(Value::as_str).map_or_else(|| kind.to_lowercase(), str::to_string);
    Some(ResourceType {
        group: text(spec.get("group")),
        versions,
        plural,
        singular,
        kind,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        status_subresource,
        generation: true,
        short_names: list(names.get("shortNames")),
        categories: list(names.get("categories")),
        selectable_fields,
        custom: true,
        delete_returns_object: true,
        orphans_by_default: false,
        definition: Some(Arc::new(crd.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(scope: &str, versions: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": scope,
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": versions,
            }
        })
    }

    #[test]
    fn builtins_carry_their_strategies() {
        let registry = Registry::default();
        let pods = registry.find("", "v1", "pods").unwrap();
        assert!(pods.status_subresource && pods.generation && pods.delete_returns_object);
        let configmaps = registry.find("", "v1", "configmaps").unwrap();
        assert!(!configmaps.status_subresource && !configmaps.generation && !configmaps.delete_returns_object);
        assert!(registry.find("batch", "v1", "jobs").unwrap().orphans_by_default);
        assert!(!registry.find("apps", "v1", "deployments").unwrap().orphans_by_default);
        assert!(!registry.find("", "v1", "namespaces").unwrap().namespaced);
        assert!(registry.find("", "v2", "pods").is_none());
    }

    #[test]
    fn a_crd_serves_its_served_versions_with_the_storage_version_preferred() {
        let versions = json!([
            {"name": "v1alpha1", "served": true, "storage": false},
            {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
            {"name": "v0", "served": false, "storage": false},
        ]);
        let widget = resource_of_crd(&crd("Namespaced", versions)).unwrap();
        assert_eq!(widget.versions, ["v1", "v1alpha1"]);
        assert!(widget.status_subresource && widget.namespaced && widget.custom && widget.generation);
        assert_eq!(widget.short_names, ["wd"]);
        let cluster =
            resource_of_crd(&crd("Cluster", json!([{"name": "v1", "served": true, "storage": true}]))).unwrap();
        assert!(!cluster.namespaced && !cluster.status_subresource);
    }

    #[test]
    fn discovery_lists_registered_groups_and_status_subresources() {
        let mut registry = Registry::default();
        registry.register_crd(&crd("Namespaced", json!([{"name": "v1", "served": true, "storage": true}])));
        let groups = registry.group_list();
        let names: Vec<&str> =
            groups["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(names.first(), Some(&"apps"));
        assert_eq!(names.last(), Some(&"example.com"));
        let core = registry.resource_list("", "v1").unwrap();
        let resources: Vec<&str> =
            core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(resources.contains(&"pods/status") && !resources.contains(&"configmaps/status"), "{resources:?}");
        registry.unregister(&ResourceId { group: "example.com".into(), plural: "widgets".into() });
        assert!(registry.group_document("example.com").is_none());
        assert!(registry.resource_list("example.com", "v1").is_none());
    }

    #[test]
    fn a_crd_cannot_replace_a_builtin() {
        let mut registry = Registry::default();
        let mut pods = crd("Namespaced", json!([{"name": "v1", "served": true, "storage": true}]));
        pods["spec"]["group"] = json!("");
        pods["spec"]["names"]["plural"] = json!("pods");
        assert_eq!(registry.register_crd(&pods), None);
        assert!(!registry.find("", "v1", "pods").unwrap().custom);
    }
}
