//! `pods/NAME/log?follow=true` on the simulated cluster, read as the operator or `kubectl logs -f` reads it
//! (`Api::<Pod>::log_stream`), in paused time: lines arrive as the simulated containers write them, and the stream
//! ends when the container exits or its Pod is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kuberay::sim::{ControllerConfig, Sim, SimConfig, TokioClock};
use serde_json::json;
use tokio::time::Instant;

/// A cluster whose kubelet starts Pods after 1 s and runs those that end for 5 s (the defaults), with a Pod created
/// at time 0.
async fn cluster_with(name: &str, restart_policy: &str) -> Api<Pod> {
    let clock = std::sync::Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
    let sim = Sim::new(SimConfig { seed: 1, clock, ..SimConfig::default() });
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(ControllerConfig::default()).await });
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "main", "image": "python:3", "command": ["python"], "args": ["train.py"]}],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods
}

fn follow() -> LogParams {
    LogParams { follow: true, ..LogParams::default() }
}

/// Each line of a followed log with when it arrived (since `start`), until the stream ends; and when it ended.
async fn read_following(pods: &Api<Pod>, name: &str, params: &LogParams, start: Instant) -> (Vec<(String, f64)>, f64) {
    let mut lines = pods.log_stream(name, params).await.unwrap().lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.try_next().await.unwrap() {
        seen.push((line, start.elapsed().as_secs_f64()));
    }
    (seen, start.elapsed().as_secs_f64())
}

#[tokio::test(start_paused = true)]
async fn follow_streams_each_line_as_it_is_written_and_ends_when_the_container_exits() {
    let start = Instant::now();
    let pods = cluster_with("train", "Never").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (seen, ended) = read_following(&pods, "train", &follow(), start).await;
    // Started at 1 s, it writes its command line, then a line at each third of its 5 s run, the last as it exits.
    let expected = [("python train.py", 1.5), ("simulated step 1 of 3", 1.0 + 5.0 / 3.0)];
    let expected =
        expected.into_iter().chain([("simulated step 2 of 3", 1.0 + 10.0 / 3.0), ("simulated step 3 of 3", 6.0)]);
    assert_eq!(seen.len(), 4, "{seen:?}");
    for ((line, arrived), (text, written)) in seen.iter().zip(expected) {
        assert_eq!(line, text);
        // A line reaches the follower at once, or at its next look (every 100 ms) when no object changed with it.
        assert!((written..=written + 0.1).contains(arrived), "{line} written at {written}, arrived at {arrived}");
    }
    assert_eq!(ended, 6.0);
    let phase = pods.get("train").await.unwrap().status.unwrap().phase.unwrap();
    assert_eq!(phase, "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn following_an_exited_container_answers_what_it_wrote_and_ends() {
    let start = Instant::now();
    let pods = cluster_with("train", "Never").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let tail = LogParams { tail_lines: Some(2), ..follow() };
    let (seen, ended) = read_following(&pods, "train", &tail, start).await;
    assert_eq!(seen, [("simulated step 2 of 3".to_string(), 7.0), ("simulated step 3 of 3".to_string(), 7.0)]);
    assert_eq!(ended, 7.0);
}

#[tokio::test(start_paused = true)]
async fn following_a_server_ends_when_its_pod_is_deleted() {
    let start = Instant::now();
    let pods = cluster_with("web", "Always").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reader = {
        let pods = pods.clone();
        tokio::spawn(async move { read_following(&pods, "web", &follow(), start).await })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!reader.is_finished(), "a running server's log stays open");
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    let (seen, ended) = reader.await.unwrap();
    assert_eq!(seen, [("python train.py".to_string(), 2.0)]);
    assert_eq!(ended, 62.0);
}

#[tokio::test(start_paused = true)]
async fn following_a_container_not_started_yet_is_refused_as_without_follow() {
    let pods = cluster_with("train", "Never").await;
    match pods.log_stream("train", &follow()).await {
        Err(kube::Error::Api(status)) => assert_eq!(
            (status.code, status.message.as_str()),
            (400, "container \"main\" in pod \"train\" is waiting to start: ContainerCreating")
        ),
        Err(other) => panic!("expected 400, got {other:?}"),
        Ok(_) => panic!("expected 400, got a stream"),
    }
}
