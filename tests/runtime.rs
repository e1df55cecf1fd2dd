//! The operator runtime end to end on the simulated cluster, in simulated time: the RayCluster lifecycle as a user
//! drives it through the API (create, scale, delete Pods, suspend, delete with GCS fault tolerance), operator
//! restarts and failovers, and leader election. Every run's journal replays with no divergence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failing test should stop loudly

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kuberay::api::RayCluster;
use kuberay::api::rayjob::JobDeploymentStatus;
use kuberay::clock::TokioClock;
use kuberay::config::OperatorConfig;
use kuberay::engine::Engine;
use kuberay::journal::Journal;
use kuberay::journal::Retention;
use kuberay::journal::store::MemStore;
use kuberay::runtime::leader::LeaderElection;
use kuberay::runtime::metrics::Metrics;
use kuberay::runtime::watch::Namespaces;
use kuberay::runtime::{self, Reports, RuntimeConfig};
use kuberay::sim::{ControllerConfig, Faults, Sim, SimConfig};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

const NS: &str = "default";

fn start_time() -> jiff::Timestamp {
    "2025-06-01T00:00:00Z".parse().unwrap()
}

/// A simulated cluster with its kubelet and Job controller running, on tokio's (paused) clock.
fn cluster(controllers: ControllerConfig) -> Sim {
    faulty_cluster(controllers, Faults::default())
}

fn faulty_cluster(controllers: ControllerConfig, faults: Faults) -> Sim {
    let clock = Arc::new(TokioClock::starting_at(start_time()));
    let sim = Sim::new(SimConfig { seed: 7, clock, faults, ..SimConfig::default() });
    let running = sim.clone();
    tokio::spawn(async move { running.run_controllers(controllers).await });
    sim
}

async fn install_crds(sim: &Sim) {
    let mut applier = kuberay::cli::apply::Applier::new(sim.client());
    applier.crds().await.unwrap();
}

/// One operator replica on the in-process transport.
struct Operator {
    stop: Arc<Notify>,
    task: JoinHandle<Result<Engine<MemStore>, runtime::RuntimeError>>,
}

impl Operator {
    fn start(sim: &Sim, journal: Journal<MemStore>, election: Option<LeaderElection>) -> Operator {
        let clock = Arc::new(TokioClock::starting_at(start_time()));
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(kuberay::clock::Clock::now(clock.as_ref()));
        let config = OperatorConfig::default();
        let engine = Engine::start(journal, &config, now).unwrap();
        let runtime_config = RuntimeConfig {
            operator: config,
            concurrency: 4,
            namespaces: Namespaces::All,
            clock,
            leader_election: election,
            dashboards: kuberay::sim::ray_transport::dashboards(sim),
            retention: Retention { gone_ttl: Duration::from_secs(86_400), max_bytes: None },
        };
        let (ready, _) = watch::channel(false);
        let reports = Reports { metrics: Arc::new(Metrics::new()), transitions: None, ready: Arc::new(ready) };
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let client = sim.client();
        let task = tokio::spawn(async move {
            runtime::run(client, engine, runtime_config, reports, async move { stopped.notified().await }).await
        });
        Operator { stop, task }
    }

    /// Stops the replica gracefully and hands its journal back.
    async fn stop(self) -> Journal<MemStore> {
        self.stop.notify_one();
        self.task.await.unwrap().unwrap().into_journal()
    }

    /// Kills the replica: no graceful shutdown; what it journaled is lost with it.
    fn kill(self) {
        self.task.abort();
    }
}

fn assert_replays(journal: &Journal<MemStore>) {
    let report = kuberay::journal::history::replay(journal, None).unwrap();
    assert!(report.records > 0);
    assert_eq!(report.divergences.len(), 0, "{:?}", report.divergences);
}

fn raycluster(name: &str, workers: i32, extra: Value) -> RayCluster {
    let mut manifest = json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.41.0"}]}}
            },
            "workerGroupSpecs": [{
                "groupName": "workers",
                "replicas": workers,
                "minReplicas": 0,
                "maxReplicas": 10,
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}
            }]
        }
    });
    json_patch::merge(&mut manifest, &extra);
    serde_json::from_value(manifest).unwrap()
}

async fn create(sim: &Sim, cluster: &RayCluster) {
    let api: Api<RayCluster> = Api::namespaced(sim.client(), NS);
    api.create(&PostParams::default(), cluster).await.unwrap();
}

async fn patch(sim: &Sim, name: &str, patch: Value) {
    let api: Api<RayCluster> = Api::namespaced(sim.client(), NS);
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn get(sim: &Sim, name: &str) -> Option<RayCluster> {
    Api::<RayCluster>::namespaced(sim.client(), NS).get_opt(name).await.unwrap()
}

async fn pods(sim: &Sim, cluster: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(sim.client(), NS);
    let mut pods = api.list(&ListParams::default().labels(&format!("ray.io/cluster={cluster}"))).await.unwrap().items;
    pods.retain(|pod| pod.metadata.deletion_timestamp.is_none());
    pods
}

fn names_of(pods: &[Pod], node_type: &str) -> BTreeSet<String> {
    pods.iter()
        .filter(|pod| {
            pod.metadata.labels.as_ref().and_then(|l| l.get("ray.io/node-type")).map(String::as_str) == Some(node_type)
        })
        .map(|pod| pod.metadata.name.clone().unwrap())
        .collect()
}

fn condition(cluster: &RayCluster, type_: &str) -> Option<String> {
    let conditions = cluster.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

/// Waits (in simulated time) until `check` holds of the cluster, or fails naming what was seen last.
async fn until<T>(sim: &Sim, name: &str, what: &str, check: impl Fn(Option<&RayCluster>, &[Pod]) -> Option<T>) -> T {
    let mut last = String::new();
    for _ in 0..600 {
        let cluster = get(sim, name).await;
        let pods = pods(sim, name).await;
        if let Some(found) = check(cluster.as_ref(), &pods) {
            return found;
        }
        last = format!("status {:?}, pods {:?}", cluster.and_then(|c| c.status), names_of(&pods, "worker"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what}: not within 300 s; last seen: {last}");
}

fn provisioned(cluster: Option<&RayCluster>, _: &[Pod]) -> Option<RayCluster> {
    cluster.filter(|c| condition(c, "RayClusterProvisioned").as_deref() == Some("True")).cloned()
}

fn workers(count: usize) -> impl Fn(Option<&RayCluster>, &[Pod]) -> Option<BTreeSet<String>> {
    move |_, pods| {
        let ready =
            pods.iter().filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
        let names = names_of(pods, "worker");
        (names.len() == count && ready == count + 1).then_some(names)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_is_provisioned_with_the_status_of_spec_2_3() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 2, json!({}))).await;
    let cluster = until(&sim, "c", "provisioned", provisioned).await;
    let status = cluster.status.clone().unwrap();
    assert_eq!(status.state.as_deref(), Some("ready"));
    assert_eq!(status.ready_worker_replicas, Some(2));
    assert_eq!(status.available_worker_replicas, Some(2));
    assert_eq!(status.desired_worker_replicas, Some(2));
    assert_eq!(condition(&cluster, "HeadPodReady").as_deref(), Some("True"));
    let head = status.head.unwrap();
    assert!(head.pod_ip.is_some_and(|ip| !ip.is_empty()));
    assert!(head.service_ip.is_some_and(|ip| !ip.is_empty()));
    assert_eq!(status.endpoints.unwrap().get("dashboard").map(String::as_str), Some("8265"));
    let pods = pods(&sim, "c").await;
    assert_eq!((names_of(&pods, "head").len(), names_of(&pods, "worker").len()), (1, 2));
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(sim.client(), NS);
    let mut reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("c"))
        .filter_map(|event| event.reason)
        .collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons, ["CreatedHeadPod", "CreatedService", "CreatedWorkerPod"], "KubeRay's Event reasons");
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn workers_scale_up_down_and_by_name() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 1, json!({}))).await;
    until(&sim, "c", "one worker", workers(1)).await;
    patch(&sim, "c", json!({"spec": {"workerGroupSpecs": [{"groupName": "workers", "replicas": 3, "minReplicas": 0, "maxReplicas": 10, "rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}}]}})).await;
    let three = until(&sim, "c", "three workers", workers(3)).await;
    let chosen = three.iter().next().unwrap().clone();
    patch(&sim, "c", json!({"spec": {"workerGroupSpecs": [{"groupName": "workers", "replicas": 2, "minReplicas": 0, "maxReplicas": 10, "rayStartParams": {}, "scaleStrategy": {"workersToDelete": [chosen]}, "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}}]}})).await;
    let two = until(&sim, "c", "two workers", workers(2)).await;
    assert!(!two.contains(&chosen), "{chosen} was named for deletion: {two:?}");
    assert!(two.is_subset(&three), "no worker was replaced: {two:?} of {three:?}");
    patch(&sim, "c", json!({"spec": {"workerGroupSpecs": [{"groupName": "workers", "replicas": 0, "minReplicas": 0, "maxReplicas": 10, "rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}}]}})).await;
    until(&sim, "c", "no worker", workers(0)).await;
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_head_and_a_failed_worker_are_replaced() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    let never = json!({"spec": {"workerGroupSpecs": [{"groupName": "workers", "replicas": 1, "minReplicas": 0, "maxReplicas": 10, "rayStartParams": {},
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}}]}});
    create(&sim, &raycluster("c", 1, never)).await;
    let first_workers = until(&sim, "c", "provisioned", workers(1)).await;
    let head = names_of(&pods(&sim, "c").await, "head").into_iter().next().unwrap();
    let api: Api<Pod> = Api::namespaced(sim.client(), NS);
    api.delete(&head, &DeleteParams::default()).await.unwrap();
    until(&sim, "c", "a new head", |_, pods| {
        let heads = names_of(pods, "head");
        (heads.len() == 1 && !heads.contains(&head)).then_some(())
    })
    .await;
    let worker = first_workers.into_iter().next().unwrap();
    let failed = json!({"status": {"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}]}});
    api.patch_status(&worker, &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    let replaced = until(&sim, "c", "a new worker", workers(1)).await;
    assert!(!replaced.contains(&worker));
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_suspended_cluster_has_no_pods_until_resumed() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 2, json!({}))).await;
    until(&sim, "c", "provisioned", provisioned).await;
    patch(&sim, "c", json!({"spec": {"suspend": true}})).await;
    until(&sim, "c", "suspended", |cluster, pods| {
        let suspended = cluster.and_then(|c| condition(c, "RayClusterSuspended"));
        (pods.is_empty() && suspended.as_deref() == Some("True")).then_some(())
    })
    .await;
    patch(&sim, "c", json!({"spec": {"suspend": false}})).await;
    until(&sim, "c", "resumed", workers(2)).await;
    let cluster = get(&sim, "c").await.unwrap();
    assert_eq!(condition(&cluster, "RayClusterSuspended").as_deref(), Some("False"));
    assert_replays(&operator.stop().await);
}

fn gcs_ft(timeout: Option<&str>) -> Value {
    let mut extra = json!({"spec": {"gcsFaultToleranceOptions": {"redisAddress": "redis:6379"}}});
    if let Some(timeout) = timeout {
        extra["metadata"] = json!({"annotations": {"ray.io/gcs-ft-deletion-timeout": timeout}});
    }
    extra
}

#[tokio::test(start_paused = true)]
async fn gcs_ft_deletion_runs_the_redis_cleanup_job_first() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 1, gcs_ft(None))).await;
    let cluster = until(&sim, "c", "provisioned", provisioned).await;
    assert_eq!(cluster.metadata.finalizers, Some(vec!["ray.io/gcs-ft-redis-cleanup-finalizer".to_string()]));
    Api::<RayCluster>::namespaced(sim.client(), NS).delete("c", &DeleteParams::default()).await.unwrap();
    // The cluster goes only once the cleanup Job has completed: a watch sees the Job complete, then the cluster go.
    let jobs: Api<Job> = Api::namespaced(sim.client(), NS);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let watching = tokio::spawn(async move {
        let mut stream = std::pin::pin!(kube::runtime::watcher(jobs, Default::default()));
        while let Some(Ok(event)) = futures::StreamExt::next(&mut stream).await {
            if let kube::runtime::watcher::Event::Apply(job) | kube::runtime::watcher::Event::InitApply(job) = event {
                let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
                let complete = conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True");
                record.lock().unwrap().push((job.metadata.name.unwrap_or_default(), complete));
            }
        }
    });
    until(&sim, "c", "gone after the cleanup", |cluster, _| cluster.is_none().then_some(())).await;
    watching.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&("c-redis-cleanup".to_string(), true)), "the Redis cleanup Job completed: {seen:?}");
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_stuck_redis_cleanup_gives_way_after_the_deletion_timeout() {
    // The cleanup Job's Pod runs for an hour: longer than the 120 s timeout.
    let sim = cluster(ControllerConfig { pod_run_duration: Duration::from_secs(3600), ..ControllerConfig::default() });
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 1, gcs_ft(Some("120")))).await;
    until(&sim, "c", "provisioned", provisioned).await;
    let deleted_at = tokio::time::Instant::now();
    Api::<RayCluster>::namespaced(sim.client(), NS).delete("c", &DeleteParams::default()).await.unwrap();
    until(&sim, "c", "gone after the timeout", |cluster, _| cluster.is_none().then_some(())).await;
    let waited = deleted_at.elapsed();
    assert!(waited >= Duration::from_secs(118) && waited < Duration::from_secs(140), "gone after {waited:?}");
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_operator_converges_without_a_duplicate_pod() {
    let sim = cluster(ControllerConfig { pod_start_delay: Duration::from_secs(5), ..ControllerConfig::default() });
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 3, json!({}))).await;
    // Stopped in the middle: the Pods are created but not running yet.
    until(&sim, "c", "pods created", |_, pods| (pods.len() == 4).then_some(())).await;
    let journal = operator.stop().await;
    let operator = Operator::start(&sim, journal, None);
    until(&sim, "c", "provisioned", provisioned).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(pods(&sim, "c").await.len(), 4, "one head and three workers, none twice");
    let journal = operator.stop().await;
    assert_eq!(journal.sessions().count(), 2, "both runs are in one journal");
    assert_replays(&journal);
}

#[tokio::test(start_paused = true)]
async fn a_failover_to_an_empty_journal_converges() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let first = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    create(&sim, &raycluster("c", 2, json!({}))).await;
    until(&sim, "c", "pods created", |_, pods| (!pods.is_empty()).then_some(())).await;
    first.kill();
    let second = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    patch(&sim, "c", json!({"spec": {"workerGroupSpecs": [{"groupName": "workers", "replicas": 3, "minReplicas": 0, "maxReplicas": 10, "rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.41.0"}]}}}]}})).await;
    until(&sim, "c", "three workers", workers(3)).await;
    until(&sim, "c", "provisioned", provisioned).await;
    assert_replays(&second.stop().await);
}

#[tokio::test(start_paused = true)]
async fn with_leader_election_only_one_replica_acts() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let election = |identity: &str| Some(LeaderElection { duration: 4, grace: 1, ..LeaderElection::new(NS, identity) });
    let leader = Operator::start(&sim, Journal::in_memory().unwrap(), election("one"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let standby = Operator::start(&sim, Journal::in_memory().unwrap(), election("two"));
    create(&sim, &raycluster("c", 2, json!({}))).await;
    until(&sim, "c", "provisioned", provisioned).await;
    let leader_journal = leader.stop().await;
    let standby_journal = standby.stop().await;
    let steps = |journal: &Journal<MemStore>| kuberay::journal::history::replay(journal, None).unwrap().objects.len();
    assert_eq!((steps(&leader_journal), steps(&standby_journal)), (1, 0), "only the leader stepped");
    assert_replays(&leader_journal);
}

fn rayjob(name: &str, mode: &str, entrypoint: &str) -> kuberay::api::RayJob {
    let cluster_spec = serde_json::to_value(raycluster("unused", 1, json!({})).spec).unwrap();
    common::rayjob(name, mode, entrypoint, cluster_spec)
}

fn rayjob_http(name: &str) -> kuberay::api::RayJob {
    rayjob(name, "HTTPMode", "python -c \"print('hello')\"")
}

/// Waits (in simulated time) until the RayJob is in one of `states`.
async fn until_job_in(sim: &Sim, name: &str, states: &[JobDeploymentStatus]) -> kuberay::api::RayJob {
    for _ in 0..1200 {
        let job = rayjob_state(sim, name).await.unwrap();
        if job.status.as_ref().and_then(|s| s.job_deployment_status).is_some_and(|state| states.contains(&state)) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("RayJob {name} never reached {states:?}: {:?}", rayjob_state(sim, name).await.and_then(|job| job.status));
}

/// What each container of the Pods of submitter Job `name` wrote.
async fn submitter_logs(sim: &Sim, name: &str) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(sim.client(), NS);
    let mut logs = Vec::new();
    for pod in pods.list(&ListParams::default().labels(&format!("job-name={name}"))).await.unwrap() {
        logs.push(pods.logs(&pod.metadata.name.unwrap(), &Default::default()).await.unwrap());
    }
    logs
}

async fn rayjob_state(sim: &Sim, name: &str) -> Option<kuberay::api::RayJob> {
    Api::<kuberay::api::RayJob>::namespaced(sim.client(), NS).get_opt(name).await.unwrap()
}

/// The submissions the job's cluster's dashboard holds, by submission id.
async fn submissions(sim: &Sim, job: &kuberay::api::RayJob) -> Vec<String> {
    submissions_answered(sim, job).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_http_mode_rayjob_runs_once_to_complete_even_across_a_restart() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    let api: Api<kuberay::api::RayJob> = Api::namespaced(sim.client(), NS);
    api.create(&PostParams::default(), &rayjob_http("job")).await.unwrap();
    // Stopped as soon as the job runs (the submission may or may not have been made), then restarted.
    let mut running = None;
    for _ in 0..600 {
        let job = rayjob_state(&sim, "job").await.unwrap();
        let status = job.status.clone().unwrap_or_default();
        if status.job_deployment_status == Some(kuberay::api::rayjob::JobDeploymentStatus::Running) {
            running = Some(job);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let running = running.expect("the RayJob runs");
    let first = operator.stop().await;
    let operator = Operator::start(&sim, first, None);
    let done = until_job_in(&sim, "job", &[JobDeploymentStatus::Complete]).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.job_status.map(|s| format!("{s:?}")), Some("Succeeded".to_string()));
    let job_id = status.job_id.clone().unwrap();
    assert_eq!(running.status.unwrap().job_id, Some(job_id.clone()), "the submission id was fixed before Running");
    assert_eq!(submissions(&sim, &done).await, vec![job_id], "one submission, with the id fixed in status");
    assert_replays(&operator.stop().await);
}

/// What the submitter of a RayJob wrote: the Pods of its submitter Job, or the sidecar container of its head.
async fn submitter_output(sim: &Sim, mode: &str, status: &kuberay::api::rayjob::RayJobStatus) -> String {
    if mode != "SidecarMode" {
        return submitter_logs(sim, "job").await.concat();
    }
    let pods = Api::<Pod>::namespaced(sim.client(), NS);
    let cluster = status.ray_cluster_name.clone().unwrap();
    let heads = ListParams::default().labels(&format!("ray.io/cluster={cluster},ray.io/node-type=head"));
    let head = pods.list(&heads).await.unwrap().items.remove(0).metadata.name.unwrap();
    let params = kube::api::LogParams { container: Some("ray-job-submitter".to_string()), ..Default::default() };
    pods.logs(&head, &params).await.unwrap()
}

#[rstest::rstest]
#[case::k8s_job_mode("K8sJobMode")]
#[case::sidecar_mode("SidecarMode")]
#[tokio::test(start_paused = true)]
async fn a_submitter_submits_once_and_the_rayjob_completes(#[case] mode: &str) {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    let api: Api<kuberay::api::RayJob> = Api::namespaced(sim.client(), NS);
    api.create(&PostParams::default(), &rayjob("job", mode, "bash -c 'echo hello from the job && sleep 4'"))
        .await
        .unwrap();
    let done = until_job_in(&sim, "job", &[JobDeploymentStatus::Complete, JobDeploymentStatus::Failed]).await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        (status.job_deployment_status, status.job_status.map(|s| format!("{s:?}"))),
        (Some(JobDeploymentStatus::Complete), Some("Succeeded".to_string()))
    );
    let job_id = status.job_id.clone().unwrap();
    assert_eq!(submissions(&sim, &done).await, vec![job_id.clone()]);
    // In SidecarMode the RayJob completes by the dashboard's word, while the submitter may still be following.
    let mut output = String::new();
    for _ in 0..20 {
        output = submitter_output(&sim, mode, &status).await;
        if output.contains("succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for line in [
        format!("Job '{job_id}' submitted successfully"),
        "hello from the job".to_string(),
        format!("Job '{job_id}' succeeded"),
    ] {
        assert!(output.contains(&line), "{line:?} missing from the submitter's output:\n{output}");
    }
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_failing_entrypoint_fails_the_rayjob_and_its_submitter_without_a_second_submission() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    let api: Api<kuberay::api::RayJob> = Api::namespaced(sim.client(), NS);
    let entrypoint = "python -c \"import sys; sys.exit(1)\"";
    api.create(&PostParams::default(), &rayjob("job", "K8sJobMode", entrypoint)).await.unwrap();
    let done = until_job_in(&sim, "job", &[JobDeploymentStatus::Complete, JobDeploymentStatus::Failed]).await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        (status.job_deployment_status, status.reason.map(|r| r.to_string())),
        (Some(JobDeploymentStatus::Failed), Some("AppFailed".to_string()))
    );
    assert_eq!(submissions(&sim, &done).await, vec![status.job_id.clone().unwrap()]);
    // The submitter fails too (DEVIATIONS 1), and its retries follow the one job instead of submitting again.
    let jobs = Api::<Job>::namespaced(sim.client(), NS);
    let mut failed = None;
    for _ in 0..120 {
        let submitter = jobs.get("job").await.unwrap();
        let conditions = submitter.status.and_then(|s| s.conditions).unwrap_or_default();
        if let Some(condition) = conditions.into_iter().find(|c| c.type_ == "Failed" && c.status == "True") {
            failed = Some(condition);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(failed.and_then(|c| c.reason), Some("BackoffLimitExceeded".to_string()));
    let logs = submitter_logs(&sim, "job").await;
    assert_eq!(logs.len(), 3, "three attempts (backoffLimit 2)");
    let submitted = logs.iter().filter(|log| log.contains("submitted successfully")).count();
    assert_eq!(submitted, 1, "{logs:#?}");
    assert!(logs.iter().all(|log| log.contains("failed")), "{logs:#?}");
    assert_replays(&operator.stop().await);
}

#[tokio::test(start_paused = true)]
async fn a_jobs_output_is_journaled_once_and_whole_across_restarts() {
    let sim = cluster(ControllerConfig::default());
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    let mut job = rayjob_http("job");
    // Four lines of its own, written at 3, 6, 9 and 12 s of a 12 s run, after Ray's two.
    job.spec.entrypoint = Some("echo one; sleep 6; echo two; sleep 6; echo three; echo four".to_string());
    Api::<kuberay::api::RayJob>::namespaced(sim.client(), NS).create(&PostParams::default(), &job).await.unwrap();
    until_job_in(&sim, "job", &[JobDeploymentStatus::Running]).await;
    // Some of the output is journaled, then the operator restarts while the job runs on.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let first = operator.stop().await;
    let object = first.find_objects("rayjob/default/job").pop().unwrap();
    let job_id = rayjob_state(&sim, "job").await.unwrap().status.unwrap().job_id.unwrap();
    let before_restart = first.logged_output(&object, &job_id).unwrap().lines;
    assert!(before_restart >= 2, "the first run journaled some output ({before_restart} lines)");
    let operator = Operator::start(&sim, first, None);
    until_job_in(&sim, "job", &[JobDeploymentStatus::Complete]).await;
    // Stopped at once: the dashboard closes the tail about 3 s after the job ended, so the drain is cut short and the
    // output is not complete; the next run fetches what is missing of the ended job's output.
    let second = operator.stop().await;
    let cut = second.logged_output(&object, &job_id).unwrap();
    assert!(!cut.complete, "the drain was cut short: {cut:?}");
    let operator = Operator::start(&sim, second, None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let journal = operator.stop().await;

    let done = rayjob_state(&sim, "job").await.unwrap();
    let address = done.status.as_ref().and_then(|s| s.dashboard_url.clone()).unwrap();
    let dashboard =
        kuberay::ray::DashboardClient::new(kuberay::sim::ray_transport::SimTransport::new(sim.clone(), &address));
    let output = dashboard.job_logs(&job_id).await.unwrap();
    let expected: Vec<&str> = output.lines().collect();
    assert_eq!(expected.len(), 6, "Ray's two lines and the job's four: {output}");
    assert_eq!(&expected[2..], ["one", "two", "three", "four"]);
    let complete = kuberay::journal::LoggedOutput { lines: 6, complete: true };
    assert_eq!(journal.logged_output(&object, &job_id).unwrap(), complete);

    let history = kuberay::journal::history::history(&journal, Some(std::slice::from_ref(&object))).unwrap();
    let journaled: Vec<&str> =
        history.logs.iter().flat_map(|logged| logged.logs.lines.iter().map(String::as_str)).collect();
    assert_eq!(journaled, expected, "every line once, in order");
    let (mut audit, mut err) = (Vec::new(), Vec::new());
    kuberay::cli::audit(&journal, "rayjob/default/job", true, &mut audit, &mut err).unwrap();
    let audit = String::from_utf8(audit).unwrap();
    let shown: Vec<&str> = audit.lines().filter_map(|line| line.strip_prefix(&format!("  {job_id} | "))).collect();
    assert_eq!(shown, expected, "{audit}");
    let running = audit.lines().position(|line| line.contains(" -> Running ")).unwrap();
    let first_output = audit.lines().position(|line| line.starts_with("  ")).unwrap();
    assert!(running < first_output, "the output is under the transitions after Running:\n{audit}");
    let mut plain = Vec::new();
    kuberay::cli::audit(&journal, "rayjob/default/job", false, &mut plain, &mut err).unwrap();
    let plain = String::from_utf8(plain).unwrap();
    assert_eq!(
        plain,
        audit.lines().filter(|line| !line.starts_with("  ")).map(|line| format!("{line}\n")).collect::<String>()
    );
    assert_replays(&journal);
}

/// The core promise under the faults a real cluster has: watches cut off with 410 (the operator relists), writes
/// refused with 409/429/500, dashboards that answer after the client gave up (a submission then takes effect
/// unacknowledged). Lost or swapped watch events are left out: an API server never does that, and a cache they made
/// stale stays stale until its next relist, in KubeRay as here.
/// Every RayJob, in each submission mode, still completes with exactly one job on its cluster, the one whose id was
/// fixed in its status.
#[tokio::test(start_paused = true)]
async fn under_injected_faults_every_rayjob_runs_its_job_exactly_once() {
    let faults = Faults {
        seed: 11,
        expire_watches_after: Some(25),
        conflict_writes: 0.05,
        throttle_writes: 0.02,
        fail_writes: 0.02,
        dashboard_timeouts: 0.2,
        dashboard_hang: Duration::from_secs(3),
        ..Faults::default()
    };
    let sim = faulty_cluster(ControllerConfig::default(), faults);
    install_crds(&sim).await;
    let operator = Operator::start(&sim, Journal::in_memory().unwrap(), None);
    let api: Api<kuberay::api::RayJob> = Api::namespaced(sim.client(), NS);
    let jobs = [("http-a", "HTTPMode"), ("http-b", "HTTPMode"), ("k8s", "K8sJobMode"), ("sidecar", "SidecarMode")];
    for (name, mode) in jobs {
        let job = rayjob(name, mode, "bash -c 'echo working && sleep 5'");
        // A refused create (an injected fault) is the user's to retry, as kubectl's user would.
        while api.create(&PostParams::default(), &job).await.is_err() {}
    }
    for (name, mode) in jobs {
        let done = until_job_in(&sim, name, &[JobDeploymentStatus::Complete, JobDeploymentStatus::Failed]).await;
        let status = done.status.clone().unwrap();
        assert_eq!(status.job_deployment_status, Some(JobDeploymentStatus::Complete), "{name} ({mode}): {status:?}");
        let mut submitted = Err(kuberay::ray::RayError::Other("not asked".into()));
        // The dashboard may hang (a fault): ask until it answers.
        for _ in 0..10 {
            submitted = submissions_answered(&sim, &done).await;
            if submitted.is_ok() {
                break;
            }
        }
        assert_eq!(submitted.unwrap(), vec![status.job_id.clone().unwrap()], "{name} ({mode})");
    }
    let journal = operator.stop().await;
    let history = kuberay::journal::history::history(&journal, None).unwrap();
    let failed = history.steps.iter().filter(|step| step.decision.reason == "CommandFailed").count();
    assert!(failed > 0, "the faults made commands fail");
    assert_replays(&journal);
}

/// The submissions the job's cluster's dashboard holds, or its failure to answer.
async fn submissions_answered(sim: &Sim, job: &kuberay::api::RayJob) -> Result<Vec<String>, kuberay::ray::RayError> {
    let address = job.status.as_ref().and_then(|s| s.dashboard_url.clone()).unwrap();
    let client =
        kuberay::ray::DashboardClient::new(kuberay::sim::ray_transport::SimTransport::new(sim.clone(), &address));
    Ok(client.list_jobs().await?.into_iter().filter_map(|job| job.submission_id).collect())
}
