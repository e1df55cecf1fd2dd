//! What several black-box tests share. Each test crate uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use kuberay::sim::{ControllerConfig, Sim, SimConfig};
use serde_json::json;

/// The address a real cluster gives the dashboard of [`head`]'s RayCluster `c`.
pub const DASHBOARD: &str = "c-head-svc.default.svc.cluster.local:8265";

/// A simulated cluster with the head Pod of RayCluster `c` and its head Service; with the controllers on, the Pod
/// runs and is ready (its dashboard answering) after the kubelet's delays.
pub async fn head(config: SimConfig, controllers: ControllerConfig) -> Sim {
    let sim = Sim::new(config);
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(controllers).await });
    let client = sim.client();
    let labels = json!({"ray.io/node-type": "head", "ray.io/cluster": "c"});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "c-head-abcde", "labels": labels},
        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.41.0",
                                 "ports": [{"name": "dashboard", "containerPort": 8265}]}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default").create(&PostParams::default(), &pod).await.unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "c-head-svc"},
        "spec": {"selector": labels, "ports": [{"name": "dashboard", "port": 8265, "targetPort": "dashboard"}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(client, "default").create(&PostParams::default(), &service).await.unwrap();
    sim
}

pub async fn after(seconds: f64) {
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
}

/// KubeRay v1.3.0's sample manifests (`../shared/kuberay-v1.3.0/samples`, sub-folders included), sorted.
pub fn kuberay_samples() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).expect("samples dir").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kuberay-v1.3.0/samples"), &mut out);
    out
}

/// A RayJob in `default` that submits `entrypoint` in `mode` to a cluster of `cluster_spec`.
pub fn rayjob(name: &str, mode: &str, entrypoint: &str, cluster_spec: serde_json::Value) -> kuberay::api::RayJob {
    serde_json::from_value(json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"submissionMode": mode, "entrypoint": entrypoint, "rayClusterSpec": cluster_spec},
    }))
    .expect("a valid RayJob")
}

/// Polls `probe` (in wall-clock time, every 100 ms) until it answers, for at most `limit`.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
