//! The real kubectl, with its default validation, against `kuberay sim serve`: the CRDs and every KubeRay sample
//! created, then get, get -o yaml, get -w, label, patch, delete held by a finalizer, and the server's answers to
//! objects that break the CRD schema. kubectl must be on PATH: these tests fail, loudly, without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kuberay::api::document::parse_yaml_stream;
use serde_json::Value;

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("kubectl")).find(|candidate| candidate.is_file()).unwrap_or_else(
        || panic!("kubectl is not on PATH: these tests drive the real kubectl against `kuberay sim serve`; install it"),
    )
}

/// A simulated cluster served by `kuberay sim serve --port 0`, and kubectl set up to reach it.
struct Cluster {
    _server: Running,
    dir: PathBuf,
    kubectl: PathBuf,
}

impl Cluster {
    fn start(name: &str) -> Cluster {
        let kubectl = kubectl_binary();
        let dir = std::env::temp_dir().join(format!("kuberay-sim-kubectl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kuberay"))
            .args(["sim", "serve", "--port", "0", "--kubeconfig-out", kubeconfig.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let server = Running(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.starts_with("serving the simulated cluster on http://127.0.0.1:"), "{line}");
        Cluster { _server: server, dir, kubectl }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.kubectl);
        // Its own cache, so that no run reads the discovery or OpenAPI documents of another.
        command
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs kubectl and answers its standard output; fails the test, with kubectl's errors, when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "kubectl {}:\n{stdout}\n{stderr}", args.join(" "));
        stdout.into_owned()
    }

    /// Runs kubectl with `input` on its standard input, expecting it to fail; answers its standard error.
    fn refused(&self, args: &[&str], input: &str) -> String {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success(), "kubectl {} succeeded", args.join(" "));
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Writes YAML documents to a file of the test's directory.
    fn file(&self, name: &str, documents: &[&Value]) -> PathBuf {
        let path = self.dir.join(name);
        let text: Vec<String> = documents.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
        std::fs::write(&path, text.join("\n---\n")).unwrap();
        path
    }

    fn create_crds(&self) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds");
        let created = self.ok(&["create", "-f", crds.to_str().unwrap()]);
        assert_eq!(
            created.lines().collect::<Vec<_>>(),
            [
                "customresourcedefinition.apiextensions.k8s.io/rayclusters.ray.io created",
                "customresourcedefinition.apiextensions.k8s.io/rayjobs.ray.io created",
                "customresourcedefinition.apiextensions.k8s.io/rayservices.ray.io created",
            ]
        );
    }
}

fn names_its_namespace(document: &Value) -> bool {
    document.pointer("/metadata/namespace").and_then(Value::as_str).is_some_and(|ns| !ns.is_empty())
}

fn count_of(documents: &[Value], kind: &str) -> usize {
    documents.iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind)).count()
}

#[test]
fn kubectl_creates_the_crds_and_every_kuberay_sample() {
    let cluster = Cluster::start("samples");
    cluster.create_crds();
    let files = common::kuberay_samples();
    assert_eq!(files.len(), 56);
    let mut all = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let documents = parse_yaml_stream(&std::fs::read_to_string(file).unwrap()).unwrap();
        let namespace = format!("sample-{index}");
        assert_eq!(cluster.ok(&["create", "namespace", &namespace]), format!("namespace/{namespace} created\n"));
        let (own, rest): (Vec<&Value>, Vec<&Value>) = documents.iter().partition(|d| names_its_namespace(d));
        if !own.is_empty() {
            let path = cluster.file(&format!("own-{index}.yaml"), &own);
            cluster.ok(&["create", "-f", path.to_str().unwrap()]);
        }
        if !rest.is_empty() {
            let path = if own.is_empty() { file.clone() } else { cluster.file(&format!("rest-{index}.yaml"), &rest) };
            let created = cluster.ok(&["create", "-n", &namespace, "-f", path.to_str().unwrap()]);
            assert_eq!(created.lines().count(), rest.len(), "{}: {created}", file.display());
        }
        all.extend(documents);
    }
    for (plural, kind) in [("rayclusters", "RayCluster"), ("rayjobs", "RayJob"), ("rayservices", "RayService")] {
        let listed = cluster.ok(&["get", plural, "-A", "-o", "name"]);
        assert_eq!(listed.lines().count(), count_of(&all, kind), "{plural}:\n{listed}");
    }
    let configmaps = cluster.ok(&["get", "configmaps", "-A", "--no-headers"]);
    assert!(configmaps.lines().count() >= count_of(&all, "ConfigMap"), "{configmaps}");
}

#[test]
fn kubectl_gets_watches_labels_patches_and_deletes() {
    let cluster = Cluster::start("lifecycle");
    cluster.create_crds();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kuberay-v1.3.0/samples/ray-cluster.sample.yaml");
    cluster.ok(&["create", "namespace", "team"]);
    assert_eq!(
        cluster.ok(&["create", "-n", "team", "-f", sample.to_str().unwrap()]),
        "raycluster.ray.io/raycluster-kuberay created\n"
    );

    let table = cluster.ok(&["get", "rayclusters", "-n", "team"]);
    let header: Vec<&str> =
        table.lines().next().unwrap().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "DESIRED WORKERS", "AVAILABLE WORKERS", "CPUS", "MEMORY", "GPUS", "STATUS", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("raycluster-kuberay "), "{table}");
    let wide = cluster.ok(&["get", "rayclusters", "-n", "team", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("HEAD POD IP"), "{wide}");

    let yaml = cluster.ok(&["get", "raycluster", "raycluster-kuberay", "-n", "team", "-o", "yaml"]);
    let object = &parse_yaml_stream(&yaml).unwrap()[0];
    assert_eq!(object["kind"], "RayCluster");
    assert_eq!(object["metadata"]["namespace"], "team");
    assert_eq!(object["spec"]["workerGroupSpecs"][0]["numOfHosts"], 1, "the CRD's default");

    // A watch in one kubectl sees the label another kubectl sets.
    let mut watcher = cluster
        .command(&[
            "get",
            "raycluster",
            "raycluster-kuberay",
            "-n",
            "team",
            "-w",
            "-o",
            "jsonpath={.metadata.name}:{.metadata.labels.team}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let _watching = Running(watcher);
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || received.recv_timeout(Duration::from_secs(20)).expect("a watch event");
    assert_eq!(next(), "raycluster-kuberay:");
    assert_eq!(
        cluster.ok(&["label", "raycluster", "raycluster-kuberay", "-n", "team", "team=ray"]),
        "raycluster.ray.io/raycluster-kuberay labeled\n"
    );
    assert_eq!(next(), "raycluster-kuberay:ray");

    let hold = r#"{"metadata":{"finalizers":["example.com/hold"]},"spec":{"suspend":true}}"#;
    assert_eq!(
        cluster.ok(&["patch", "raycluster", "raycluster-kuberay", "-n", "team", "--type=merge", "-p", hold]),
        "raycluster.ray.io/raycluster-kuberay patched\n"
    );
    assert_eq!(next(), "raycluster-kuberay:ray");
    let suspended = cluster.ok(&[
        "get",
        "raycluster",
        "raycluster-kuberay",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.suspend} {.metadata.generation}",
    ]);
    assert_eq!(suspended, "true 2");

    // kubectl delete waits while the finalizer holds the object, and returns once it is removed.
    let deleting = Running(
        cluster
            .command(&["delete", "raycluster", "raycluster-kuberay", "-n", "team"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(next(), "raycluster-kuberay:ray");
    let marked = cluster.ok(&[
        "get",
        "raycluster",
        "raycluster-kuberay",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(marked.ends_with('Z'), "{marked}");
    let mut deleting = deleting;
    assert!(deleting.0.try_wait().unwrap().is_none(), "kubectl delete waits for the finalizer");
    let release = r#"{"metadata":{"finalizers":null}}"#;
    cluster.ok(&["patch", "raycluster", "raycluster-kuberay", "-n", "team", "--type=merge", "-p", release]);
    assert!(deleting.0.wait().unwrap().success());
    let gone = cluster.run(&["get", "raycluster", "raycluster-kuberay", "-n", "team"]);
    assert_eq!(
        String::from_utf8_lossy(&gone.stderr),
        "Error from server (NotFound): rayclusters.ray.io \"raycluster-kuberay\" not found\n"
    );
}

#[test]
fn kubectl_reports_the_servers_schema_validation() {
    let cluster = Cluster::start("schema");
    cluster.create_crds();
    let headless = r#"{"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"}, "spec": {}}"#;
    let invalid = cluster.refused(&["create", "-f", "-"], headless);
    assert_eq!(invalid, "The RayCluster \"c\" is invalid: spec.headGroupSpec: Required value\n");
    let typo = r#"{"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"},
                   "spec": {"headGroupSpec": {"template": {}}, "typo": 1}}"#;
    let strict = cluster.refused(&["create", "-f", "-"], typo);
    assert!(strict.contains("strict decoding error: unknown field \"spec.typo\""), "{strict}");
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}"#;
    let path = cluster.file("pod.json", &[&serde_json::from_str(pod).unwrap()]);
    assert_eq!(cluster.ok(&["create", "-f", path.to_str().unwrap()]), "pod/p created\n");
    let explained = cluster.ok(&["explain", "raycluster.spec.headGroupSpec"]);
    assert!(explained.contains("FIELD: headGroupSpec <Object>"), "{explained}");
}
