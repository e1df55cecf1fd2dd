//! RayJob submitters on the simulated cluster with a real Ray head configured (`RayDashboard::Real`): the command
//! runs as a local process, in wall-clock time, and ends with its Pod, the processes it started included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kuberay::sim::{ControllerConfig, RayDashboard, Sim, SimConfig, WallClock};
use serde_json::json;

/// Whether a process runs (a zombie, killed and not yet reaped, does not).
fn runs(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_submitters_processes_end_with_its_pod() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // Nothing listens there, and no `ray` CLI needs to exist: the command goes on to start a process of its own.
    let config = SimConfig {
        clock: Arc::new(WallClock),
        ray_dashboard: RayDashboard::Real("http://127.0.0.1:9".into()),
        ..SimConfig::default()
    };
    let sim = Sim::new(config);
    let controllers = ControllerConfig {
        pod_start_delay: Duration::from_millis(100),
        pod_ready_delay: Duration::from_millis(100),
        ..ControllerConfig::default()
    };
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(controllers).await });
    let script = format!(
        "ray job submit --address http://job-head-svc.default.svc.cluster.local:8265 -- echo hi; sleep 60 & echo $! > {}; wait",
        pidfile.display()
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "job-abcde"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "ray-job-submitter", "image": "rayproject/ray:2.41.0", "command": ["bash", "-c", script]}
        ]},
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let read_pid = |path: &Path| std::fs::read_to_string(path).ok().filter(|pid| pid.ends_with('\n'));
    wait_for("the submitter starts its process", || read_pid(&pidfile).is_some());
    let pid = read_pid(&pidfile).unwrap().trim().to_string();
    assert!(runs(&pid), "the submitter's process runs");
    pods.delete("job-abcde", &DeleteParams::default()).await.unwrap();
    wait_for("the process ends with its Pod", || !runs(&pid));
}
