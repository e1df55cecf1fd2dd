//! The `kuberay` binary as a user runs it: output lines and exit codes of `validate`, `render` and `crd`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::path::PathBuf;
use std::process::{Command, Output};

fn kuberay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuberay")).args(args).output().expect("kuberay runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A manifest file in a fresh temporary directory of this test.
fn manifest(test: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuberay-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, text).expect("manifest written");
    path
}

const VALID_CLUSTER: &str = "apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: good, namespace: team}
spec:
  headGroupSpec:
    rayStartParams: {}
    template: {spec: {containers: [{name: ray-head, image: 'rayproject/ray:2.41.0'}]}}
";

#[test]
fn valid_objects_print_ok_and_other_kinds_are_skipped() {
    let path =
        manifest("ok", &format!("{VALID_CLUSTER}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\n"));
    let output = kuberay(&["validate", "-f", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "RayCluster team/good: ok\nConfigMap default/settings: skipped\n");
}

#[test]
fn every_problem_gets_a_line_naming_the_object_and_the_exit_code_is_1() {
    let path = manifest(
        "invalid",
        "apiVersion: ray.io/v1
kind: RayJob
metadata: {generateName: job-}
spec:
  submissionMode: Sometimes
  rayClusterSpec:
    headGroupSpec:
      rayStartParams: {}
      template: {spec: {containers: []}}
    workerGroupSpecs:
    - {groupName: g, replicas: -1, minReplicas: 0, maxReplicas: 3, rayStartParams: {}, template: {spec: {containers: [{name: w}]}}}
",
    );
    let output = kuberay(&["validate", "-f", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    assert!(lines.iter().all(|line| line.starts_with("RayJob default/job-*: error: ")), "{out}");
    assert!(out.contains("spec.submissionMode"), "{out}");
    assert!(out.contains("headGroupSpec should have at least one container"), "{out}");
    assert!(out.contains("negative replicas"), "{out}");
}

#[test]
fn a_wrong_type_is_an_invalid_spec_naming_the_field() {
    let path = manifest("wrong-type", &VALID_CLUSTER.replace("rayStartParams: {}", "rayStartParams: [oops]"));
    let output = kuberay(&["validate", "-f", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("RayCluster team/good: error: spec.headGroupSpec.rayStartParams: "));
}

#[test]
fn unparsable_yaml_exits_2_with_file_line_and_column() {
    let path = manifest("broken", "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: [\n");
    let output = kuberay(&["validate", "-f", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(path.to_str().expect("utf-8 path")) && err.contains("line ") && err.contains("column "),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_exits_2_and_a_file_without_ray_objects_exits_0() {
    assert_eq!(kuberay(&["validate", "-f", "/nonexistent/manifest.yaml"]).status.code(), Some(2));
    let path = manifest("none", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n");
    assert_eq!(kuberay(&["validate", "-f", path.to_str().expect("utf-8 path")]).status.code(), Some(0));
}

#[test]
fn feature_gates_change_validation() {
    let path = manifest(
        "gates",
        "apiVersion: ray.io/v1
kind: RayJob
metadata: {name: j}
spec:
  deletionPolicy: DeleteCluster
  rayClusterSpec:
    headGroupSpec: {rayStartParams: {}, template: {spec: {containers: [{name: h}]}}}
",
    );
    let path = path.to_str().expect("utf-8 path");
    assert_eq!(kuberay(&["validate", "-f", path]).status.code(), Some(0));
    let gated = kuberay(&["validate", "--feature-gates", "RayJobDeletionPolicy=false", "-f", path]);
    assert_eq!(gated.status.code(), Some(1));
    assert_eq!(
        stdout(&gated),
        "RayJob default/j: error: RayJobDeletionPolicy feature gate must be enabled to use the DeletionPolicy feature\n"
    );
}

#[test]
fn render_prints_the_same_bytes_twice_as_yaml_or_json() {
    let path = manifest("render", VALID_CLUSTER);
    let path = path.to_str().expect("utf-8 path");
    let yaml = kuberay(&["render", "-f", path]);
    assert_eq!(yaml.status.code(), Some(0));
    assert_eq!(yaml.stdout, kuberay(&["render", "-f", path]).stdout);
    let text = stdout(&yaml);
    assert_eq!(text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: ")), 2, "{text}");
    let json: serde_json::Value = serde_json::from_slice(&kuberay(&["render", "-o", "json", "-f", path]).stdout)
        .expect("render -o json prints JSON");
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["kind"], "Service");
    assert_eq!(json["items"][1]["metadata"]["generateName"], "good-head-");
}

#[test]
fn crd_prints_the_three_crds_as_deploy_holds_them() {
    let output = kuberay(&["crd"]);
    assert_eq!(output.status.code(), Some(0));
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
    let stored: String = ["ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml"]
        .iter()
        .map(|file| std::fs::read_to_string(deploy.join(file)).expect("deploy/crds file"))
        .collect();
    assert!(stdout(&output) == stored, "`kuberay crd` differs from deploy/crds");
}
