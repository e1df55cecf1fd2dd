//! A synthetic but realistic workload for the journal's benchmarks and tests: RayClusters going through their
//! lifecycle — Pods created from the real builders, coming up, a worker replaced now and then, status written when
//! it changes, periodic resyncs — as the Inputs and Decisions the engine would journal. Only its shape matters (what
//! repeats, what changes, how large it is), not that a machine would take exactly these decisions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::api::{RayCluster, RayClusterStatus};
use crate::build::names::rand5;
use crate::build::pod::{head_pod, worker_pod};
use crate::config::OperatorConfig;
use crate::machine::observe::ReadyCondition;
use crate::machine::{
    ClusterObservation, Command, Decision, Expectation, Input, MachineKind, Memory, ObjectRef, Observation,
    OwnedObject, PodView, ServiceView, Trigger, WatchEvent,
};

/// A RayCluster shaped like KubeRay's `ray-cluster.sample.yaml`, with the metadata the API server adds.
pub fn cluster(namespace: &str, name: &str, uid: &str) -> RayCluster {
    let container = |name: &str, memory: &str| {
        json!({"name": name, "image": "rayproject/ray:2.41.0",
               "resources": {"limits": {"cpu": "1", "memory": memory}, "requests": {"cpu": "1", "memory": memory}},
               "ports": [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
                         {"containerPort": 10001, "name": "client"}]})
    };
    let manifest = json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1, "resourceVersion": "1",
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {
            "rayVersion": "2.41.0",
            "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0"},
                              "template": {"spec": {"containers": [container("ray-head", "2G")]}}},
            "workerGroupSpecs": [{"groupName": "workergroup", "replicas": 2, "minReplicas": 1, "maxReplicas": 5,
                                  "rayStartParams": {}, "template": {"spec": {"containers": [container("ray-worker", "1G")]}}}]
        }
    });
    // The manifest is a literal of this file: it always parses.
    serde_json::from_value(manifest).unwrap_or_else(|_| RayCluster::new(name, Default::default()))
}

fn at(seconds: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_735_689_600 + seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// A Pod's IP: fixed for its life, as the kubelet assigns it once.
fn pod_ip(name: &str) -> String {
    let hash = name.bytes().fold(0u32, |hash, byte| hash.wrapping_mul(31).wrapping_add(u32::from(byte)));
    format!("10.{}.{}.{}", hash >> 16 & 0xff, hash >> 8 & 0xff, hash & 0xff)
}

/// One cluster's lifecycle, step by step.
struct Lifecycle {
    object: ObjectRef,
    cluster: RayCluster,
    head: Value,
    worker: Value,
    step: u64,
    resource_version: u64,
    /// Pods by name: (node type, group, steps since created).
    pods: BTreeMap<String, (String, String, u64)>,
    replaced: u64,
}

impl Lifecycle {
    fn new(index: usize) -> Lifecycle {
        let (namespace, name, uid) = (
            format!("team-{}", index % 7),
            format!("raycluster-{index}"),
            format!("9b1f6c52-0000-4000-8000-{index:012}"),
        );
        let cluster = cluster(&namespace, &name, &uid);
        let config = OperatorConfig::default();
        let group = cluster.spec.worker_group_specs.iter().flatten().next().cloned().unwrap_or_default();
        let body = |pod| serde_json::to_value(pod).unwrap_or(Value::Null);
        Lifecycle {
            object: ObjectRef { kind: MachineKind::RayCluster, namespace, name, uid },
            head: body(head_pod(&cluster, &config)),
            worker: body(worker_pod(&cluster, &group, &config)),
            cluster,
            step: 0,
            resource_version: 1,
            pods: BTreeMap::new(),
            replaced: 0,
        }
    }

    fn pod_name(&self, node_type: &str, serial: u64) -> String {
        format!("{}-{node_type}-{}", self.object.name, rand5(&format!("{}/{serial}", self.object.uid)))
    }

    fn views(&self) -> Vec<PodView> {
        self.pods
            .iter()
            .map(|(name, (node_type, group, age))| {
                let running = *age >= 2;
                PodView {
                    name: name.clone(),
                    uid: format!("{}-{name}", self.object.uid),
                    node_type: node_type.clone(),
                    group: group.clone(),
                    phase: if running { "Running" } else { "Pending" }.to_string(),
                    ready: Some(ReadyCondition {
                        status: if *age >= 3 { "True" } else { "False" }.to_string(),
                        reason: if *age >= 3 { "" } else { "ContainersNotReady" }.to_string(),
                        message: String::new(),
                    }),
                    ray_container_terminated: false,
                    restart_policy: "Always".to_string(),
                    terminating: false,
                    pod_ip: if running { pod_ip(name) } else { String::new() },
                }
            })
            .collect()
    }

    fn status(&self, ready: usize) -> RayClusterStatus {
        let ready_state = ready == 3;
        RayClusterStatus {
            state: ready_state.then(|| "ready".to_string()),
            ready_worker_replicas: Some(ready.saturating_sub(1) as i32),
            available_worker_replicas: Some(ready.saturating_sub(1) as i32),
            desired_worker_replicas: Some(2),
            min_worker_replicas: Some(1),
            max_worker_replicas: Some(5),
            observed_generation: Some(1),
            last_update_time: Some(at(self.step as i64 * 5)),
            endpoints: Some(
                [("client", "10001"), ("dashboard", "8265"), ("gcs-server", "6379")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
            ),
            ..Default::default()
        }
    }

    /// The next (Input, Decision) of this cluster.
    fn next(&mut self) -> (Input, Decision) {
        let step = self.step;
        self.step += 1;
        // Every 40 steps a worker Pod fails and is replaced.
        if step > 0 && step.is_multiple_of(40) {
            let victim = self.pods.iter().find(|(_, (node_type, _, _))| node_type == "worker").map(|(n, _)| n.clone());
            if let Some(victim) = victim {
                self.pods.remove(&victim);
            }
        }
        let mut commands = Vec::new();
        let mut expectations = BTreeMap::new();
        if !self.pods.values().any(|(node_type, _, _)| node_type == "head") {
            commands.push(Command::Create { object: self.head.clone() });
            self.pods.insert(self.pod_name("head", 0), ("head".into(), "headgroup".into(), 0));
        }
        let workers = self.pods.values().filter(|(node_type, _, _)| node_type == "worker").count();
        for _ in workers..2 {
            self.replaced += 1;
            commands.push(Command::Create { object: self.worker.clone() });
            self.pods.insert(self.pod_name("worker", self.replaced), ("worker".into(), "workergroup".into(), 0));
            expectations.insert("workergroup".to_string(), Expectation { creates: 1, ..Expectation::default() });
        }
        let views = self.views();
        let ready = views.iter().filter(|view| view.is_ready()).count();
        // Status is written when something a status shows changed, and refreshed every 12 steps (a minute).
        let changed =
            !commands.is_empty() || self.pods.values().any(|(_, _, age)| *age <= 3) || step.is_multiple_of(12);
        if changed {
            self.resource_version += 1;
            let status = self.status(ready);
            commands.push(Command::WriteStatus { status: serde_json::to_value(&status).unwrap_or(Value::Null) });
            self.cluster.status = Some(status);
        }
        self.cluster.metadata.resource_version = Some(self.resource_version.to_string());
        commands.push(Command::RequeueAfter { millis: 300_000 });
        let trigger = match step % 3 {
            0 => Trigger::Resync,
            1 => Trigger::Timer { name: "requeue".into() },
            _ => Trigger::Watch { kind: "Pod".into(), name: views[0].name.clone(), event: WatchEvent::Applied },
        };
        let input = Input {
            object: self.object.clone(),
            trigger,
            now: at(step as i64 * 5),
            observation: Observation::RayCluster(ClusterObservation {
                cluster: Some(self.cluster.clone()),
                pods: views,
                services: vec![ServiceView {
                    name: format!("{}-head-svc", self.object.name),
                    cluster_ip: "None".into(),
                    ..Default::default()
                }],
                jobs: Vec::new(),
                owned: vec![OwnedObject { kind: "Service".into(), name: format!("{}-head-svc", self.object.name) }],
            }),
        };
        let next = if ready == 3 { "Ready" } else { "Provisioning" };
        let decision = Decision {
            next: next.to_string(),
            reason: if commands.len() > 2 { "PodsCreated" } else { "Reconciled" }.to_string(),
            explanation: format!("{ready} of 3 Pods ready; {} commands", commands.len()),
            memory: Memory { state: next.to_string(), expectations, timers: BTreeMap::new() },
            commands,
        };
        for pod in self.pods.values_mut() {
            pod.2 += 1;
        }
        (input, decision)
    }
}

/// `steps` transitions of each of `clusters` clusters, interleaved as a busy operator would journal them.
pub fn transitions(clusters: usize, steps: usize) -> impl Iterator<Item = (Input, Decision)> {
    let mut lifecycles: Vec<Lifecycle> = (0..clusters).map(Lifecycle::new).collect();
    (0..clusters * steps).map(move |n| lifecycles[n % clusters].next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_creates_pods_then_settles() {
        let steps: Vec<(Input, Decision)> = transitions(1, 45).collect();
        let creates = |d: &Decision| d.commands.iter().filter(|c| matches!(c, Command::Create { .. })).count();
        assert_eq!(creates(&steps[0].1), 3, "head and two workers");
        assert_eq!(steps[10].1.next, "Ready");
        assert_eq!(steps[10].1.commands, vec![Command::RequeueAfter { millis: 300_000 }]);
        assert_eq!(creates(&steps[40].1), 1, "a replaced worker");
        let Observation::RayCluster(observation) = &steps[10].0.observation else { unreachable!() };
        assert_eq!(observation.pods.len(), 3);
        assert!(observation.pods.iter().all(PodView::is_ready));
    }
}
