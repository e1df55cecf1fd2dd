//! The operator at scale (`make bench`): `kuberay sim serve` and `kuberay run` as separate processes, so that the
//! operator's memory is read alone. From a cold start (the operator running, no RayCluster yet), 1,000 RayClusters of
//! one head and two workers are created at once; printed are the time until every Pod is ready, the time until every
//! cluster is `RayClusterProvisioned`, how long after Pod readiness the last cluster was provisioned, the operator's
//! peak RSS (VmHWM), its RSS per Ray Pod next to KubeRay's chart budget (about 1 MiB per Ray Pod), and transitions
//! per second (from its `/metrics`). Under `cargo test` it runs with 10 clusters, only to see that it works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing bench should stop loudly

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kuberay::api::RayCluster;
use serde_json::json;

fn cluster_count() -> usize {
    if std::env::args().any(|arg| arg == "--bench") { 1_000 } else { 10 }
}

/// Kills the child when the bench ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kuberay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kuberay"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `kuberay sim serve` on a free port; returns once it serves.
fn serve(kubeconfig: &Path) -> Process {
    let mut child = kuberay()
        .args(["sim", "serve", "--port", "0", "--kubeconfig-out", kubeconfig.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("serving"), "{first}");
    Process(child)
}

fn operator(kubeconfig: &Path, journal: &Path, metrics_port: u16) -> Process {
    let child = kuberay()
        .args(["run", "--enable-leader-election", "false", "--reconcile-concurrency", "16", "--log-level", "warn"])
        .args(["--journal", journal.to_str().unwrap(), "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("KUBECONFIG", kubeconfig)
        .spawn()
        .unwrap();
    Process(child)
}

/// The peak resident set of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    rss(pid, "VmHWM:")
}

/// A resident-set figure of `/proc/PID/status`, in bytes.
fn rss(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A GET on the operator's health and metrics port (plain HTTP/1.1, read to the end).
fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.starts_with("HTTP/1.1 200").then_some(answer)
}

/// The sum of a counter's series in a `/metrics` answer.
fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn raycluster(index: usize) -> RayCluster {
    let container = |name: &str| json!({"name": name, "image": "rayproject/ray:2.41.0"});
    serde_json::from_value(json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": format!("bench-{index:04}")},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container("ray-head")]}}},
            "workerGroupSpecs": [{
                "groupName": "workers", "replicas": 2, "minReplicas": 0, "maxReplicas": 4, "rayStartParams": {},
                "template": {"spec": {"containers": [container("ray-worker")]}}
            }]
        }
    }))
    .unwrap()
}

fn provisioned(cluster: &RayCluster) -> bool {
    let conditions = cluster.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "RayClusterProvisioned" && c.status == "True"))
}

fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn main() {
    let count = cluster_count();
    let dir: PathBuf = std::env::temp_dir().join(format!("kuberay-bench-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let _server = serve(&kubeconfig);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let options = KubeConfigOptions::default();
        let config =
            kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&kubeconfig).unwrap(), &options).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        kuberay::cli::apply::Applier::new(client.clone()).crds().await.unwrap();
        let metrics_port = free_port();
        let operator = operator(&kubeconfig, &dir.join("journal"), metrics_port);
        while get(metrics_port, "/readyz").is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let idle_rss = peak_rss(operator.0.id());

        let clusters: Api<RayCluster> = Api::namespaced(client.clone(), "default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let start = Instant::now();
        for index in 0..count {
            clusters.create(&PostParams::default(), &raycluster(index)).await.unwrap();
        }
        let created = start.elapsed();
        let (mut pods_ready, mut all_provisioned) = (None, None);
        while all_provisioned.is_none() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(start.elapsed() < Duration::from_secs(600), "not provisioned within 600 s");
            if pods_ready.is_none() {
                let listed = pods.list(&ListParams::default().labels("ray.io/cluster")).await.unwrap().items;
                if listed.len() == count * 3 && listed.iter().all(ready) {
                    pods_ready = Some(start.elapsed());
                }
            }
            let listed = clusters.list(&ListParams::default()).await.unwrap().items;
            if pods_ready.is_some() && listed.iter().filter(|c| provisioned(c)).count() == count {
                all_provisioned = Some(start.elapsed());
            }
        }
        let (pods_ready, all_provisioned) = (pods_ready.unwrap(), all_provisioned.unwrap());
        let metrics = get(metrics_port, "/metrics").unwrap();
        let transitions = counter_sum(&metrics, "kuberay_engine_transitions_total");
        let peak = peak_rss(operator.0.id());
        let settled = rss(operator.0.id(), "VmRSS:");
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        println!(
            "operator at scale: {count} RayClusters x (1 head + 2 workers) = {} Pods, from a cold start",
            count * 3
        );
        println!("  created in                 {:>8.2} s", created.as_secs_f64());
        println!("  every Pod ready after      {:>8.2} s", pods_ready.as_secs_f64());
        println!("  every cluster provisioned  {:>8.2} s", all_provisioned.as_secs_f64());
        println!(
            "  provisioned after readiness{:>8.2} s (target: within 60 s)",
            (all_provisioned - pods_ready).as_secs_f64()
        );
        println!(
            "  operator peak RSS          {:>8.1} MiB (idle before the clusters: {:.1} MiB; target: <= 100 MiB)",
            mib(peak),
            mib(idle_rss)
        );
        println!("  operator RSS once settled  {:>8.1} MiB", mib(settled));
        println!(
            "  RSS per Ray Pod            {:>8.3} MiB ({:.1}% of KubeRay's chart budget of about 1 MiB per Ray Pod)",
            mib(peak) / (count * 3) as f64,
            100.0 * mib(peak) / (count * 3) as f64
        );
        println!(
            "  transitions                {transitions:>8} ({:.0}/s until every cluster was provisioned)",
            transitions / all_provisioned.as_secs_f64()
        );
        drop(operator);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
