//! Every one of KubeRay v1.3.0's 56 sample manifests parses, validates, round-trips and renders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::path::Path;

use kuberay::api::document::{self, Identity, RayObject};
use kuberay::build::render;
use kuberay::cli::{self, OutputFormat};
use kuberay::config::{FeatureGates, OperatorConfig};
use serde_json::Value;

fn ray_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("sample readable");
    let documents = document::parse_yaml_stream(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    documents.into_iter().filter(|d| Identity::of(d).is_ray()).collect()
}

/// Whether every non-null value of `original` is in `serialized`: quantities and int-or-string values compare as
/// strings (`cpu: 1` equals `cpu: "1"`) and numbers by value (`2` equals `2.0`).
fn holds(original: &Value, serialized: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, serialized) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want.iter().filter(|(_, v)| !v.is_null()) {
                match have.get(key) {
                    Some(found) => holds(value, found, &format!("{path}.{key}"), lost),
                    None => lost.push(format!("{path}.{key}")),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (index, (value, found)) in want.iter().zip(have).enumerate() {
                holds(value, found, &format!("{path}[{index}]"), lost);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) if a.to_string() == *b => {}
        (a, b) if a == b => {}
        _ => lost.push(format!("{path}: {original} became {serialized}")),
    }
}

#[test]
fn there_are_56_samples() {
    assert_eq!(common::kuberay_samples().len(), 56);
}

#[test]
fn every_sample_round_trips_without_losing_a_field() {
    let mut ray_objects = 0;
    for path in common::kuberay_samples() {
        for original in ray_documents(&path) {
            let identity = Identity::of(&original);
            let object = document::decode(&original)
                .unwrap_or_else(|e| panic!("{}: {identity}: {e}", path.display()))
                .expect("a Ray object");
            let serialized = object.to_value().expect("serializes");
            let reparsed = document::decode(&serialized).expect("re-decodes").expect("a Ray object");
            assert_eq!(object, reparsed, "{}: {identity} changes on a second round trip", path.display());
            let mut lost = Vec::new();
            holds(&original, &serialized, "", &mut lost);
            assert!(lost.is_empty(), "{}: {identity} loses {lost:#?}", path.display());
            ray_objects += 1;
        }
    }
    assert!(ray_objects >= 54, "only {ray_objects} Ray objects found in the samples");
}

#[test]
fn every_sample_validates() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::validate(&common::kuberay_samples(), &FeatureGates::default(), &mut out, &mut err).expect("writes");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, cli::EXIT_OK, "{out}{}", String::from_utf8_lossy(&err));
    assert!(!out.contains(": error:"), "{out}");
    assert_eq!(out.lines().filter(|line| line.ends_with(": ok")).count(), 54, "{out}");
}

#[test]
fn every_sample_renders_and_rendering_is_deterministic() {
    let config = OperatorConfig::default();
    // `ray-job.use-existing-raycluster.yaml` selects a cluster that no sample defines.
    let existing = document::decode(&document::parse_yaml_stream(
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: ray-cluster-kuberay}\nspec:\n  rayVersion: '2.41.0'\n  headGroupSpec:\n    rayStartParams: {}\n    template: {spec: {containers: [{name: ray-head, image: 'rayproject/ray:2.41.0'}]}}\n",
    ).expect("parses")[0]);
    let Ok(Some(RayObject::Cluster(existing))) = existing else { panic!("a RayCluster") };
    for path in common::kuberay_samples() {
        for original in ray_documents(&path) {
            let object = document::decode(&original).expect("decodes").expect("a Ray object");
            let render = || render::render(&object, &config, std::slice::from_ref(existing.as_ref()));
            let first = render().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(first, render().expect("renders twice"), "{}: render is not deterministic", path.display());
            let kinds: Vec<&str> = first.iter().filter_map(|o| o["kind"].as_str()).collect();
            match &object {
                RayObject::Job(job) if job.spec.suspend == Some(true) => assert!(kinds.is_empty()),
                RayObject::Job(job) if job.spec.cluster_selector.is_some() => assert_eq!(kinds, ["Job"]),
                _ => assert!(kinds.contains(&"Pod"), "{}: no Pods rendered", path.display()),
            }
        }
    }
}

#[test]
fn render_of_the_basic_sample_is_a_head_a_worker_and_a_service() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kuberay-v1.3.0/samples/ray-cluster.sample.yaml");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code =
        cli::render(&[path], OutputFormat::Json, &OperatorConfig::default(), &mut out, &mut err).expect("writes");
    assert_eq!(code, cli::EXIT_OK, "{}", String::from_utf8_lossy(&err));
    let list: Value = serde_json::from_slice(&out).expect("a JSON List");
    let kinds: Vec<(&str, &str)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().or(o["metadata"]["generateName"].as_str()).unwrap_or_default();
            (o["kind"].as_str().unwrap_or_default(), name)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Service", "raycluster-kuberay-head-svc"),
            ("Pod", "raycluster-kuberay-head-"),
            ("Pod", "raycluster-kuberay-workergroup-worker-"),
        ]
    );
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|o| o["kind"] == "Pod")
            .all(|pod| pod["metadata"]["name"].is_null())
    );
}
