//! The simulated cluster at scale (`make bench`): Pod creates per second through `kube::Client` with 3 watchers
//! attached and the controllers running, the watch fan-out (events per second delivered to the 3 watchers) over
//! 10,000 Pods, and the memory the simulated cluster holds per 1,000 Pods (live bytes, counted by this binary's
//! global allocator; printed first). Uses divan: no other bench existed to set the harness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing bench should stop loudly

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use divan::Bencher;
use divan::counter::ItemsCount;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kuberay::sim::{ControllerConfig, Sim, SimConfig};
use serde_json::json;

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const WATCHERS: usize = 3;

/// 10,000 Pods under `cargo bench` (which passes `--bench`); 100 when `cargo test` runs each bench once, only to
/// see that it works.
fn pod_count() -> usize {
    if std::env::args().any(|arg| arg == "--bench") { 10_000 } else { 100 }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A Pod as a RayCluster's worker looks, roughly: labels, one container with resources and ports.
fn pod(index: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("worker-{index}"), "labels": {"ray.io/cluster": "bench", "ray.io/node-type": "worker", "ray.io/group": "small"}},
        "spec": {"containers": [{
            "name": "ray-worker", "image": "rayproject/ray:2.41.0",
            "command": ["/bin/bash", "-lc", "--"], "args": ["ulimit -n 65536; ray start --address=bench-head-svc:6379 --block"],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
            "ports": [{"name": "metrics", "containerPort": 8080}],
        }]},
    }))
    .unwrap()
}

fn api_server() -> Sim {
    Sim::new(SimConfig { history_per_resource: 4 * pod_count(), ..SimConfig::default() })
}

/// A simulated cluster with its controllers running (the kubelet starts the Pods as they come).
fn cluster() -> Sim {
    let sim = api_server();
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(ControllerConfig::default()).await });
    sim
}

/// Watchers that each count events until they have seen every Pod added.
fn watchers(sim: &Sim) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..WATCHERS)
        .map(|_| {
            let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
            tokio::spawn(async move {
                let mut stream = pods.watch(&WatchParams::default(), "0").await.unwrap().boxed();
                let (mut events, mut added) = (0, 0);
                while added < pod_count() {
                    match stream.next().await {
                        Some(Ok(WatchEvent::Added(_))) => added += 1,
                        Some(Ok(_)) => {}
                        other => panic!("watch ended: {other:?}"),
                    }
                    events += 1;
                }
                events
            })
        })
        .collect()
}

async fn create_pods(sim: &Sim, count: usize) {
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    for index in 0..count {
        pods.create(&PostParams::default(), &pod(index)).await.unwrap();
    }
}

/// 10,000 Pod creates through the in-process transport while 3 watchers follow.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn creates(bencher: Bencher) {
    let runtime = runtime();
    bencher
        .counter(ItemsCount::new(pod_count()))
        .with_inputs(|| runtime.block_on(async { cluster() }))
        .bench_local_values(|sim| {
            runtime.block_on(async {
                let watching = watchers(&sim);
                create_pods(&sim, pod_count()).await;
                drop(watching);
            })
        });
}

/// The 10,000 ADDED events of 10,000 Pod creates delivered to each of 3 watchers (the API server alone, so that
/// no kubelet update adds to the events counted).
#[divan::bench(sample_count = 3, sample_size = 1)]
fn watch_fan_out(bencher: Bencher) {
    let runtime = runtime();
    let events = ItemsCount::new(pod_count() * WATCHERS);
    bencher.counter(events).with_inputs(|| runtime.block_on(async { api_server() })).bench_local_values(|sim| {
        runtime.block_on(async {
            let watching = watchers(&sim);
            create_pods(&sim, pod_count()).await;
            let mut delivered = 0;
            for watcher in watching {
                delivered += watcher.await.unwrap();
            }
            divan::black_box(delivered)
        })
    });
}

/// The live bytes the simulated cluster holds for 1,000 more Pods (the average of two thousands), their watch
/// history included.
fn memory_per_thousand_pods() -> isize {
    let runtime = runtime();
    runtime.block_on(async {
        let sim = api_server();
        create_pods(&sim, 1_000).await;
        let before = LIVE.load(Ordering::Relaxed);
        let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
        for index in 1_000..3_000 {
            pods.create(&PostParams::default(), &pod(index)).await.unwrap();
        }
        let after = LIVE.load(Ordering::Relaxed);
        drop(sim);
        (after - before) / 2
    })
}

fn main() {
    let bytes = memory_per_thousand_pods();
    println!("simulated cluster memory: {bytes} bytes per 1,000 Pods ({} KiB per Pod)", bytes / 1_000 / 1024);
    divan::main();
}
