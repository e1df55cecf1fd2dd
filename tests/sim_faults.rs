//! The fault knobs of the simulated cluster, seen from a client: refused writes, lost, swapped and late watch
//! events, watches cut with 410, dashboards that answer too late. The same seed gives the same faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kuberay::sim::{ControllerConfig, Faults, Sim, SimConfig, TokioClock};
use serde_json::json;

fn sim(faults: Faults) -> Sim {
    Sim::new(SimConfig { seed: 1, faults, ..SimConfig::default() })
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

/// The status code of each of `count` creates.
async fn create_codes(sim: &Sim, count: usize) -> Vec<u16> {
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let mut codes = Vec::new();
    for index in 0..count {
        codes.push(match api.create(&PostParams::default(), &configmap(&format!("c{index}"))).await {
            Ok(_) => 201,
            Err(kube::Error::Api(status)) => status.code,
            Err(other) => panic!("{other}"),
        });
    }
    codes
}

#[tokio::test]
async fn writes_are_refused_by_fraction_and_seed() {
    let faults = Faults { seed: 3, conflict_writes: 0.2, throttle_writes: 0.2, fail_writes: 0.2, ..Faults::default() };
    let first = create_codes(&sim(faults.clone()), 40).await;
    assert_eq!(first, create_codes(&sim(faults.clone()), 40).await, "the same seed refuses the same writes");
    for code in [201, 409, 429, 500] {
        assert!(first.contains(&code), "{code} in {first:?}");
    }
    let refused = sim(faults);
    let api: Api<ConfigMap> = Api::namespaced(refused.client(), "default");
    let created = create_codes(&refused, 40).await.iter().filter(|c| **c == 201).count();
    assert_eq!(api.list(&Default::default()).await.unwrap().items.len(), created, "a refused write has no effect");
}

#[tokio::test]
async fn a_throttled_write_says_when_to_come_back() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let sim = sim(Faults { throttle_writes: 1.0, ..Faults::default() });
    let request = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(r#"{"metadata":{"name":"a"}}"#)))
        .unwrap();
    let answer = sim.service().oneshot(request).await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.headers()["retry-after"].to_str().unwrap()), (429, "1"));
    let status: serde_json::Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (status["reason"].clone(), status["details"]["retryAfterSeconds"].clone()),
        (json!("TooManyRequests"), json!(1))
    );
}

/// The names of the events a watch from `0` receives while `names` are created, until it is quiet for 5 s.
async fn watched(sim: &Sim, names: &[&str]) -> Vec<String> {
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let mut stream = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    for name in names {
        api.create(&PostParams::default(), &configmap(name)).await.unwrap();
    }
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        seen.push(match event.unwrap() {
            WatchEvent::Added(object) => object.metadata.name.unwrap(),
            WatchEvent::Error(error) => format!("ERROR {}", error.code),
            other => format!("{other:?}"),
        });
    }
    seen
}

const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

#[tokio::test(start_paused = true)]
async fn watch_events_are_lost_by_fraction_and_seed() {
    let faults = Faults { seed: 5, drop_watch_events: 0.5, ..Faults::default() };
    let first = watched(&sim(faults.clone()), &NAMES).await;
    assert_eq!(first, watched(&sim(faults), &NAMES).await);
    assert!(!first.is_empty() && first.len() < NAMES.len(), "{first:?}");
    assert!(watched(&sim(Faults { drop_watch_events: 1.0, ..Faults::default() }), &NAMES).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn watch_events_held_back_come_after_the_next() {
    let swapped = watched(&sim(Faults { reorder_watch_events: 1.0, ..Faults::default() }), &NAMES[..4]).await;
    assert_eq!(swapped, ["b", "a", "d", "c"]);
}

#[tokio::test(start_paused = true)]
async fn watch_events_come_late() {
    let sim = sim(Faults { delay_watch_events: Duration::from_secs(3), ..Faults::default() });
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let mut stream = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    api.create(&PostParams::default(), &configmap("late")).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(2), stream.next()).await.is_err(), "not before 3 s");
    assert!(tokio::time::timeout(Duration::from_secs(2), stream.next()).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn watches_are_cut_with_410_after_so_many_events() {
    let cut = watched(&sim(Faults { expire_watches_after: Some(2), ..Faults::default() }), &NAMES[..4]).await;
    assert_eq!(cut, ["a", "b", "ERROR 410"]);
}

#[tokio::test(start_paused = true)]
async fn dashboards_can_answer_too_late() {
    let clock = Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let faults = Faults { dashboard_timeouts: 1.0, dashboard_hang: Duration::from_secs(60), ..Faults::default() };
    let sim = Sim::new(SimConfig { clock, faults, ..SimConfig::default() });
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(ControllerConfig::default()).await });
    let labels = json!({"ray.io/node-type": "head", "ray.io/cluster": "c"});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "c-head", "labels": labels},
        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.41.0"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(sim.client(), "default").create(&PostParams::default(), &pod).await.unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "c-head-svc"},
        "spec": {"selector": labels, "ports": [{"name": "dashboard", "port": 8265}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(sim.client(), "default").create(&PostParams::default(), &service).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let version = || http::Request::get("/api/version").body(Bytes::new()).unwrap();
    let late = tokio::time::timeout(Duration::from_secs(5), sim.send("c-head-svc:8265", version())).await;
    assert!(late.is_err(), "a client with a 5 s timeout gives up");
    let answered = tokio::time::timeout(Duration::from_secs(61), sim.send("c-head-svc:8265", version())).await;
    assert_eq!(answered.unwrap().unwrap().status(), 200);
}
