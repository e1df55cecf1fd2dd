//! Reading manifests: a YAML stream becomes documents, and each `ray.io/v1` document becomes a typed Ray object —
//! or an error that names the field (a wrong type, a missing required field, an unknown enum value).

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{RayCluster, RayJob, RayService};

/// A Ray object read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum RayObject {
    Cluster(Box<RayCluster>),
    Job(Box<RayJob>),
    Service(Box<RayService>),
}

impl RayObject {
    pub fn kind(&self) -> &'static str {
        match self {
            RayObject::Cluster(_) => "RayCluster",
            RayObject::Job(_) => "RayJob",
            RayObject::Service(_) => "RayService",
        }
    }

    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            RayObject::Cluster(object) => serde_json::to_value(object),
            RayObject::Job(object) => serde_json::to_value(object),
            RayObject::Service(object) => serde_json::to_value(object),
        }
    }
}

/// A YAML stream that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Parses every document of a YAML stream into JSON trees; empty documents are skipped. Numbers with a leading
/// zero are octal, as the API server's YAML 1.1 reader takes them (the samples' `defaultMode: 0777` is 511).
pub fn parse_yaml_stream(text: &str) -> Result<Vec<Value>, YamlError> {
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    serde_saphyr::from_multiple_with_options::<Value>(text, options)
        .map(|documents| documents.into_iter().filter(|document| !document.is_null()).collect())
        .map_err(|error| {
            let location = error.location();
            YamlError {
                line: location.as_ref().map_or(0, |l| l.line()),
                column: location.as_ref().map_or(0, |l| l.column()),
                message: first_line(&error.to_string()),
            }
        })
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

/// Who a document is, as `kuberay validate` prints it: `KIND NAMESPACE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    /// The name, or `generateName` followed by `*` when the document has only that.
    pub name: String,
}

impl Identity {
    pub fn of(document: &Value) -> Identity {
        let text = |pointer: &str| document.pointer(pointer).and_then(Value::as_str).map(str::to_string);
        let name = text("/metadata/name")
            .or_else(|| text("/metadata/generateName").map(|prefix| format!("{prefix}*")))
            .unwrap_or_default();
        Identity {
            api_version: text("/apiVersion").unwrap_or_default(),
            kind: text("/kind").unwrap_or_default(),
            namespace: text("/metadata/namespace").unwrap_or_else(|| "default".to_string()),
            name,
        }
    }

    pub fn is_ray(&self) -> bool {
        self.api_version == "ray.io/v1" && matches!(self.kind.as_str(), "RayCluster" | "RayJob" | "RayService")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A document that is a Ray object in name but not in shape; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// Decodes a `ray.io/v1` document into its kind; `Ok(None)` for any other kind.
pub fn decode(document: &Value) -> Result<Option<RayObject>, DecodeError> {
    let identity = Identity::of(document);
    if !identity.is_ray() {
        return Ok(None);
    }
    let object = match identity.kind.as_str() {
        "RayCluster" => RayObject::Cluster(Box::new(decode_as(document)?)),
        "RayJob" => RayObject::Job(Box::new(decode_as(document)?)),
        _ => RayObject::Service(Box::new(decode_as(document)?)),
    };
    Ok(Some(object))
}

/// Deserializes with the path of the failing field, e.g. `spec.workerGroupSpecs[0].replicas`.
pub fn decode_as<T: DeserializeOwned>(document: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        DecodeError {
            path: if path == "." { "(document)".to_string() } else { path },
            message: error.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        parse_yaml_stream(text).ok().and_then(|docs| docs.into_iter().next()).unwrap_or(Value::Null)
    }

    #[test]
    fn wrong_type_names_the_field() {
        let document = one(
            "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: c}\nspec:\n  headGroupSpec:\n    rayStartParams: {}\n    template: {spec: {containers: [{name: ray-head}]}}\n  workerGroupSpecs:\n  - groupName: g\n    replicas: lots\n    rayStartParams: {}\n    template: {}\n",
        );
        let error = decode(&document).err();
        assert_eq!(error.as_ref().map(|e| e.path.as_str()), Some("spec.workerGroupSpecs[0].replicas"));
        assert!(error.is_some_and(|e| e.message.contains("invalid type")));
    }

    #[test]
    fn other_kinds_are_not_decoded() {
        let document = one("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n");
        assert_eq!(decode(&document), Ok(None));
    }

    #[test]
    fn generate_name_only_is_shown_with_a_star() {
        let identity = Identity::of(&one("apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {generateName: job-}\n"));
        assert_eq!(identity.to_string(), "RayJob default/job-*");
    }

    #[test]
    fn leading_zero_numbers_are_octal_as_kubernetes_reads_them() {
        assert_eq!(one("defaultMode: 0777\n")["defaultMode"], 511);
    }

    #[test]
    fn broken_yaml_reports_line_and_column() {
        let error = parse_yaml_stream("a: b\nc: [d\n").err();
        assert!(error.is_some_and(|e| e.line >= 2), "a YAML error carries its position");
    }
}
