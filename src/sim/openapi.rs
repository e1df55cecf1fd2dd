//! OpenAPI v3 as kubectl reads it: `/openapi/v3` lists one document per group version (with a content hash in its
//! URL, as the API server gives it), and each document has the paths of its kinds and the schemas they use.
//!
//! What kubectl needs from them: with its default validation (`--validate=strict`) it looks for the PATCH operation
//! of the kind being written and for its `fieldValidation` query parameter; finding it, it leaves validation to the
//! server (`?fieldValidation=Strict`) instead of validating client-side against `/openapi/v2`, which is not served.
//! `kubectl explain` reads the schemas. Built-in schemas come from k8s-openapi (descriptions dropped to keep the
//! documents small); a custom resource's is its CRD's `openAPIV3Schema`. Approximation: the paths hold the get,
//! list, create, update, patch and delete operations with their main query parameters only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::resources::{Registry, ResourceType};

/// The schemas of the built-in kinds: every definition by name, and the name of each kind's schema.
struct Builtins {
    definitions: Map<String, Value>,
    kinds: BTreeMap<(&'static str, &'static str), String>,
}

fn builtins() -> &'static Builtins {
    static BUILTINS: OnceLock<Builtins> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, events, networking};
        use k8s_openapi::api::{policy, rbac, scheduling, storage};
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

        let mut settings = schemars::generate::SchemaSettings::openapi3();
        settings.transforms = Vec::new();
        let mut generator = settings.into_generator();
        let mut kinds = BTreeMap::new();
        let mut add = |kind: (&'static str, &'static str), name: String| {
            kinds.insert(kind, name);
        };
        macro_rules! register {
            ($($kind:ty),* $(,)?) => {$(
                generator.subschema_for::<$kind>();
                add(
                    (<$kind as k8s_openapi::Resource>::GROUP, <$kind as k8s_openapi::Resource>::KIND),
                    <$kind as schemars::JsonSchema>::schema_name().into_owned(),
                );
            )*};
        }
        register!(
            core::v1::Namespace,
            core::v1::Pod,
            core::v1::Service,
            core::v1::Endpoints,
            core::v1::Event,
            core::v1::ServiceAccount,
            core::v1::Secret,
            core::v1::ConfigMap,
            core::v1::PersistentVolumeClaim,
            core::v1::PersistentVolume,
            core::v1::Node,
            core::v1::ResourceQuota,
            core::v1::LimitRange,
            apps::v1::Deployment,
            apps::v1::StatefulSet,
            apps::v1::ReplicaSet,
            apps::v1::DaemonSet,
            batch::v1::Job,
            batch::v1::CronJob,
            rbac::v1::Role,
            rbac::v1::RoleBinding,
            rbac::v1::ClusterRole,
            rbac::v1::ClusterRoleBinding,
            networking::v1::Ingress,
            networking::v1::NetworkPolicy,
            networking::v1::IngressClass,
            coordination::v1::Lease,
            events::v1::Event,
            discovery::v1::EndpointSlice,
            policy::v1::PodDisruptionBudget,
            autoscaling::v2::HorizontalPodAutoscaler,
            scheduling::v1::PriorityClass,
            storage::v1::StorageClass,
            CustomResourceDefinition,
        );
        let mut definitions = generator.take_definitions(false);
        for schema in definitions.values_mut() {
            compact(schema);
        }
        Builtins { definitions, kinds }
    })
}

/// Drops descriptions from a schema and the schemas inside it (a property named `description` stays).
fn compact(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else { return };
    map.remove("description");
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "properties" => value.as_object_mut().into_iter().flat_map(|p| p.values_mut()).for_each(compact),
            "items" | "additionalProperties" | "not" => compact(value),
            "allOf" | "anyOf" | "oneOf" => value.as_array_mut().into_iter().flatten().for_each(compact),
            _ => {}
        }
    }
}

/// `/api/v1` → `api/v1`, `/apis/ray.io/v1` → `apis/ray.io/v1`: the keys of the index.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3`: every served group version and where its document is.
pub fn index(registry: &Registry) -> Value {
    let group_versions: BTreeSet<(String, String)> =
        registry.types().flat_map(|t| t.versions.iter().map(|v| (t.group.clone(), v.clone()))).collect();
    let paths: Map<String, Value> = group_versions
        .iter()
        .filter_map(|(group, version)| {
            let path = group_version_path(group, version);
            let document = document(registry, &path)?;
            let hash = hex_upper(&Sha1::digest(document.to_string().as_bytes()));
            Some((path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")})))
        })
        .collect();
    json!({"paths": paths})
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/GROUP/VERSION`.
pub fn document(registry: &Registry, path: &str) -> Option<Value> {
    let kinds: Vec<(&ResourceType, &str)> = registry
        .types()
        .flat_map(|t| t.versions.iter().map(move |v| (t, v.as_str())))
        .filter(|(t, v)| group_version_path(&t.group, v) == path)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for (resource, version) in kinds {
        let Some((name, schema)) = kind_schema(resource, version) else { continue };
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        schemas.insert(name, schema);
        paths.extend(operations(resource, version, &reference));
    }
    add_referenced(&mut schemas);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::http::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The name and schema of a kind, with its group, version and kind marked as the API server marks them.
fn kind_schema(resource: &ResourceType, version: &str) -> Option<(String, Value)> {
    let gvk = json!([{"group": resource.group, "version": version, "kind": resource.kind}]);
    let (name, mut schema) = if resource.custom {
        let reversed: Vec<&str> = resource.group.split('.').rev().collect();
        let name = format!("{}.{version}.{}", reversed.join("."), resource.kind);
        (name, resource.schema(version).cloned().unwrap_or_else(|| json!({"type": "object"})))
    } else {
        let builtins = builtins();
        let name = builtins.kinds.get(&(resource.group.as_str(), resource.kind.as_str()))?.clone();
        let schema = builtins.definitions.get(&name)?.clone();
        (name, schema)
    };
    schema["x-kubernetes-group-version-kind"] = gvk;
    Some((name, schema))
}

/// Adds the built-in definitions the schemas refer to, and those they refer to in turn.
fn add_referenced(schemas: &mut Map<String, Value>) {
    let definitions = &builtins().definitions;
    let mut pending: Vec<String> = schemas.values().flat_map(references).collect();
    while let Some(name) = pending.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        if let Some(schema) = definitions.get(&name) {
            pending.extend(references(schema));
            schemas.insert(name, schema.clone());
        }
    }
}

fn references(schema: &Value) -> Vec<String> {
    match schema {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value.as_str()) {
                ("$ref", Some(target)) => {
                    target.strip_prefix("#/components/schemas/").map(str::to_string).into_iter().collect()
                }
                _ => references(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// The paths of one kind: its collection and its items, namespaced or not.
fn operations(resource: &ResourceType, version: &str, reference: &Value) -> Map<String, Value> {
    let prefix = if resource.group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{}/{version}", resource.group)
    };
    let collection = if resource.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("{prefix}/{}", resource.plural)
    };
    let gvk = json!({"group": resource.group, "version": version, "kind": resource.kind});
    let answer = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
    let operation = |verb: &str, action: &str, parameters: &[&str]| {
        json!({
            "operationId": format!("{verb}{}", resource.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": parameters.iter().map(|p| parameter(p)).collect::<Vec<_>>(),
            "responses": answer,
        })
    };
    let writes = ["dryRun", "fieldManager", "fieldValidation"];
    let mut paths = Map::new();
    paths.insert(
        collection.clone(),
        json!({
            "get": operation("list", "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"]),
            "post": operation("create", "post", &writes),
        }),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": operation("read", "get", &[]),
            "put": operation("replace", "put", &writes),
            "patch": operation("patch", "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
            "delete": operation("delete", "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
        }),
    );
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_parameters(document: &Value, path: &str) -> Vec<String> {
        document["paths"][path]["patch"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_index_names_a_document_per_group_version_with_its_hash() {
        let index = index(&Registry::default());
        let core = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(core.starts_with("/openapi/v3/api/v1?hash=") && core.len() == "/openapi/v3/api/v1?hash=".len() + 40);
        assert!(index["paths"]["apis/batch/v1"].is_object());
        assert!(index["paths"]["apis/ray.io/v1"].is_null());
    }

    #[test]
    fn documents_advertise_field_validation_on_patch_and_hold_the_schemas() {
        let document = document(&Registry::default(), "api/v1").unwrap();
        let pod_path = "/api/v1/namespaces/{namespace}/pods/{name}";
        assert_eq!(patch_parameters(&document, pod_path), ["dryRun", "fieldManager", "fieldValidation", "force"]);
        assert_eq!(
            document["paths"][pod_path]["patch"]["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        let schemas = &document["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["properties"]["spec"]["$ref"], "#/components/schemas/io.k8s.api.core.v1.PodSpec");
        assert!(pod.get("description").is_none());
        assert!(schemas["io.k8s.api.core.v1.Container"]["properties"]["image"].is_object(), "referenced schemas");
        assert!(document["paths"]["/api/v1/namespaces/{name}"].is_object(), "cluster-scoped paths");
    }

    #[test]
    fn a_crd_group_gets_the_crd_schema() {
        let mut registry = Registry::default();
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]},
        });
        registry.register_crd(&crd);
        let document = document(&registry, "apis/example.com/v1").unwrap();
        let widget = &document["components"]["schemas"]["com.example.v1.Widget"];
        assert_eq!(widget["properties"]["spec"], json!({"type": "object"}));
        assert_eq!(widget["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert_eq!(
            patch_parameters(&document, "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"),
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
    }
}
