//! The CustomResourceDefinitions of the three kinds, generated from the types (`kuberay crd`, `deploy/crds/`).
//!
//! Descriptions are left out, as KubeRay's controller-gen does (`crd:maxDescLen=0`): with them the embedded Pod
//! templates make a RayJob CRD of about 1 MiB of JSON, near etcd's request limit and far past the 256 KiB that
//! client-side `kubectl apply` can keep in its last-applied annotation.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use kube::CustomResourceExt;
use serde_json::Value;

use super::{RayCluster, RayJob, RayService};

/// The file names under `deploy/crds/`, in the order of [`crds`].
pub const CRD_FILES: [&str; 3] = ["ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml"];

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("the generated schema of {crd} does not convert back: {source}")]
    Schema { crd: String, source: serde_json::Error },
    #[error("cannot render {crd} as YAML: {message}")]
    Yaml { crd: String, message: String },
}

/// The three CRDs, in the order of [`CRD_FILES`].
pub fn crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    [RayCluster::crd(), RayJob::crd(), RayService::crd()].into_iter().map(finish).collect()
}

/// Each CRD as the YAML document `deploy/crds/` holds.
pub fn crd_yaml_documents() -> Result<Vec<String>, CrdError> {
    crds()?
        .iter()
        .map(|crd| {
            serde_saphyr::to_string(crd)
                .map(|yaml| format!("---\n{yaml}"))
                .map_err(|e| CrdError::Yaml { crd: crd_name(crd), message: e.to_string() })
        })
        .collect()
}

fn crd_name(crd: &CustomResourceDefinition) -> String {
    crd.metadata.name.clone().unwrap_or_default()
}

/// Strips descriptions, and declares the root's `apiVersion`, `kind` and `metadata` as controller-gen does (the API
/// server knows them anyway; declaring them keeps `kubectl explain` and schema-walking clients whole).
fn finish(mut crd: CustomResourceDefinition) -> Result<CustomResourceDefinition, CrdError> {
    let name = crd_name(&crd);
    for version in &mut crd.spec.versions {
        let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.take()) else { continue };
        let mut tree = serde_json::to_value(schema).map_err(|source| CrdError::Schema { crd: name.clone(), source })?;
        strip_descriptions(&mut tree);
        if let Some(properties) = tree.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
            properties.insert("kind".into(), serde_json::json!({"type": "string"}));
            properties.insert("metadata".into(), serde_json::json!({"type": "object"}));
        }
        let stripped: JSONSchemaProps =
            serde_json::from_value(tree).map_err(|source| CrdError::Schema { crd: name.clone(), source })?;
        if let Some(validation) = version.schema.as_mut() {
            validation.open_api_v3_schema = Some(stripped);
        }
    }
    Ok(crd)
}

/// Removes `description` from every schema node, but not a property that happens to be named `description`.
fn strip_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(node) => {
            node.remove("description");
            for (keyword, child) in node.iter_mut() {
                match keyword.as_str() {
                    // Maps from property names to schemas: recurse into each schema, never drop a name.
                    "properties" | "patternProperties" => {
                        if let Value::Object(properties) = child {
                            properties.values_mut().for_each(strip_descriptions);
                        }
                    }
                    // Values, not schemas.
                    "default" | "enum" | "example" | "x-kubernetes-validations" => {}
                    _ => strip_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn v1_schema(crd: &Value) -> &Value {
        crd["spec"]["versions"]
            .as_array()
            .and_then(|versions| versions.iter().find(|v| v["name"] == "v1"))
            .map(|v| &v["schema"]["openAPIV3Schema"])
            .unwrap_or(&Value::Null)
    }

    /// Every property path of a schema, `[]` for list items and `{}` for map values.
    fn paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                let path = format!("{prefix}.{name}");
                out.insert(path.clone());
                paths(child, &path, out);
            }
        }
        if let Some(items) = schema.get("items") {
            paths(items, &format!("{prefix}[]"), out);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            paths(values, &format!("{prefix}{{}}"), out);
        }
    }

    /// Fields of KubeRay's v1.3.0 CRDs that ours leave out on purpose: a path fragment, and the reason.
    const DELIBERATELY_LEFT_OUT: &[(&str, &str)] = &[(
        ".spec.resourceClaims[].source",
        "Kubernetes 1.31 removed PodResourceClaim.source (its two fields moved up into the claim, where ours has \
         them); our Pod templates follow the Kubernetes 1.33 API",
    )];

    #[test]
    fn our_crds_hold_every_field_of_kuberays() {
        let ours = crds().expect("CRDs generate");
        let kuberay = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kuberay-v1.3.0/crd/bases");
        for (crd, file) in ours.iter().zip(CRD_FILES) {
            let text = std::fs::read_to_string(kuberay.join(file)).expect("KubeRay CRD readable");
            let theirs = crate::api::document::parse_yaml_stream(&text).expect("KubeRay CRD parses");
            let mut expected = BTreeSet::new();
            paths(v1_schema(&theirs[0]), "", &mut expected);
            let mut actual = BTreeSet::new();
            paths(v1_schema(&serde_json::to_value(crd).expect("CRD serializes")), "", &mut actual);
            let missing: Vec<_> = expected
                .difference(&actual)
                .filter(|path| !DELIBERATELY_LEFT_OUT.iter().any(|(fragment, _)| path.contains(fragment)))
                .collect();
            assert!(missing.is_empty(), "{file}: fields of KubeRay's CRD missing from ours: {missing:#?}");
        }
    }

    #[test]
    fn crds_are_v1_only_with_status_and_kuberays_columns() {
        for crd in crds().expect("CRDs generate") {
            assert_eq!(crd.spec.versions.len(), 1);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1");
            assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
            assert!(version.additional_printer_columns.as_ref().is_some_and(|c| !c.is_empty()));
            assert_eq!(crd.spec.names.categories.as_deref(), Some(&["all".to_string()][..]));
        }
    }

    #[test]
    fn schemas_are_structural_and_small() {
        for crd in crds().expect("CRDs generate") {
            let json = serde_json::to_string(&crd).expect("CRD serializes");
            for forbidden in ["\"$ref\"", "\"anyOf\"", "\"oneOf\"", "\"allOf\"", "\"description\":\""] {
                assert!(!json.contains(forbidden), "{}: {forbidden} in the schema", crd_name(&crd));
            }
            assert!(json.len() < 512 * 1024, "{} is {} bytes of JSON", crd_name(&crd), json.len());
        }
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let cluster = serde_json::to_value(&crds().expect("CRDs generate")[0]).expect("serializes");
        let conditions = &v1_schema(&cluster)["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
    }

    #[test]
    fn managed_by_carries_kuberays_cel_rules() {
        let cluster = serde_json::to_value(&crds().expect("CRDs generate")[0]).expect("serializes");
        let rules = &v1_schema(&cluster)["properties"]["spec"]["properties"]["managedBy"]["x-kubernetes-validations"];
        assert_eq!(rules[0]["rule"], "self == oldSelf");
        assert_eq!(rules[1]["rule"], "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']");
    }

    #[test]
    fn a_property_named_description_survives() {
        let mut schema = serde_json::json!({
            "description": "drop me",
            "properties": {"description": {"type": "string", "description": "drop me too"}},
        });
        strip_descriptions(&mut schema);
        assert_eq!(schema, serde_json::json!({"properties": {"description": {"type": "string"}}}));
    }

    #[test]
    fn deploy_crds_are_up_to_date() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
        for (file, generated) in CRD_FILES.iter().zip(crd_yaml_documents().expect("CRDs render")) {
            let stored = std::fs::read_to_string(deploy.join(file)).unwrap_or_default();
            assert!(stored == generated, "deploy/crds/{file} is stale: run `make crds`");
        }
    }
}
