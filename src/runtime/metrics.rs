//! The operator's Prometheus metrics: KubeRay v1.7.0's per-object gauges (spec §14), which users already dashboard
//! on, and the engine's own counters (inputs, transitions, commands, journal commits, leadership, queue depth).
//!
//! KubeRay collects its per-object gauges by listing the objects at every scrape. Here the runtime observes each
//! object as it steps it and forgets it when it is deleted, so a scrape never reaches the API server; the series an
//! object exported are remembered so that a changed label (a new deployment status, a condition that flipped) and a
//! deleted object leave no stale series behind.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::constants::{
    RAY_CLUSTER_PROVISIONED, RAY_ORIGINATED_FROM_CRD_LABEL, RAY_SERVICE_READY, UPGRADE_IN_PROGRESS,
};
use crate::api::rayjob::JobDeploymentStatus;
use crate::api::{RayCluster, RayJob, RayService};
use crate::machine::{MachineKind, Outcome, Trigger};

/// Label sets in the order they are written: the object's identity first, then what varies.
type Labels = Vec<(&'static str, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter>;

/// Group-commit flushes range from a page-cache write (tens of µs) to an fsync on a slow disk (hundreds of ms).
const COMMIT_BUCKETS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// KubeRay v1.7.0's per-object gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ObjectGauge {
    ClusterInfo,
    ClusterConditionProvisioned,
    ClusterProvisionedDuration,
    JobInfo,
    JobDeploymentStatus,
    JobExecutionDuration,
    ServiceInfo,
    ServiceConditionReady,
    ServiceConditionUpgradeInProgress,
}

impl ObjectGauge {
    /// In declaration order, so that a gauge's discriminant is its index.
    const ALL: [ObjectGauge; 9] = [
        ObjectGauge::ClusterInfo,
        ObjectGauge::ClusterConditionProvisioned,
        ObjectGauge::ClusterProvisionedDuration,
        ObjectGauge::JobInfo,
        ObjectGauge::JobDeploymentStatus,
        ObjectGauge::JobExecutionDuration,
        ObjectGauge::ServiceInfo,
        ObjectGauge::ServiceConditionReady,
        ObjectGauge::ServiceConditionUpgradeInProgress,
    ];

    fn name(self) -> &'static str {
        match self {
            ObjectGauge::ClusterInfo => "kuberay_cluster_info",
            ObjectGauge::ClusterConditionProvisioned => "kuberay_cluster_condition_provisioned",
            ObjectGauge::ClusterProvisionedDuration => "kuberay_cluster_provisioned_duration_seconds",
            ObjectGauge::JobInfo => "kuberay_job_info",
            ObjectGauge::JobDeploymentStatus => "kuberay_job_deployment_status",
            ObjectGauge::JobExecutionDuration => "kuberay_job_execution_duration_seconds",
            ObjectGauge::ServiceInfo => "kuberay_service_info",
            ObjectGauge::ServiceConditionReady => "kuberay_service_condition_ready",
            ObjectGauge::ServiceConditionUpgradeInProgress => "kuberay_service_condition_upgrade_in_progress",
        }
    }

    fn help(self) -> &'static str {
        match self {
            ObjectGauge::ClusterInfo => "Metadata information about RayCluster custom resources",
            ObjectGauge::ClusterConditionProvisioned => "Indicates whether the RayCluster is provisioned",
            ObjectGauge::ClusterProvisionedDuration => {
                "The time, in seconds, from a RayCluster's creation until its RayClusterProvisioned condition became True"
            }
            ObjectGauge::JobInfo => "Metadata information about RayJob custom resources",
            ObjectGauge::JobDeploymentStatus => "The RayJob's current deployment status",
            ObjectGauge::JobExecutionDuration => {
                "Duration of a RayJob attempt, from its start until it reached Retrying or a terminal deployment status"
            }
            ObjectGauge::ServiceInfo => "Metadata information about RayService custom resources",
            ObjectGauge::ServiceConditionReady => "Describes whether the RayService is ready",
            ObjectGauge::ServiceConditionUpgradeInProgress => {
                "Describes whether the RayService is performing a zero-downtime upgrade"
            }
        }
    }

    /// KubeRay keeps one execution-duration series per finished attempt until the RayJob is deleted, so a later
    /// observation of the same job does not take it away; every other gauge shows the object as it is now.
    fn kept_until_forgotten(self) -> bool {
        self == ObjectGauge::JobExecutionDuration
    }
}

/// One Ray object whose series are exported.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ObjectKey {
    kind: MachineKind,
    namespace: String,
    name: String,
    uid: String,
}

/// The operator's metrics registry. Share it behind an `Arc`: every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    /// Indexed by `ObjectGauge as usize`, as `ObjectGauge::ALL` lists them.
    object_gauges: [GaugeFamily; ObjectGauge::ALL.len()],
    exported: Mutex<HashMap<ObjectKey, Vec<(ObjectGauge, Labels)>>>,
    inputs: CounterFamily,
    transitions: CounterFamily,
    step_errors: CounterFamily,
    commands: CounterFamily,
    journal_bytes: Gauge<u64, AtomicU64>,
    commit_seconds: Histogram,
    commits: Counter,
    divergences: Counter,
    leader: Gauge<u64, AtomicU64>,
    queue_depth: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let object_gauges = ObjectGauge::ALL.map(|gauge| {
            let family = GaugeFamily::default();
            registry.register(gauge.name(), gauge.help(), family.clone());
            family
        });
        // Counters are registered without `_total`: the OpenMetrics encoder appends it.
        let mut counters = |name: &str, help: &str| {
            let family = CounterFamily::default();
            registry.register(name, help, family.clone());
            family
        };
        let inputs = counters("kuberay_engine_inputs", "Inputs stepped, by machine and what woke the engine");
        let transitions = counters("kuberay_engine_transitions", "State transitions, by machine, states and reason");
        let step_errors = counters("kuberay_engine_step_errors", "Steps that failed, by machine");
        let commands =
            counters("kuberay_commands", "Commands executed against Kubernetes, by machine, verb and outcome");
        let journal_bytes = Gauge::default();
        registry.register("kuberay_journal_bytes", "Bytes the journal takes on disk", journal_bytes.clone());
        let commit_seconds = Histogram::new(COMMIT_BUCKETS);
        registry.register(
            "kuberay_journal_commit_seconds",
            "Latency of a journal group-commit flush",
            commit_seconds.clone(),
        );
        let commits = Counter::default();
        registry.register("kuberay_journal_commits", "Journal group commits flushed", commits.clone());
        let divergences = Counter::default();
        registry.register(
            "kuberay_replay_divergences",
            "Replayed steps whose decision differed from the journaled one",
            divergences.clone(),
        );
        let leader = Gauge::default();
        registry.register("kuberay_leader", "1 while this replica holds the leader lease, else 0", leader.clone());
        let queue_depth = Gauge::default();
        registry.register("kuberay_workqueue_depth", "Objects waiting to be stepped", queue_depth.clone());
        Metrics {
            registry,
            object_gauges,
            exported: Mutex::default(),
            inputs,
            transitions,
            step_errors,
            commands,
            journal_bytes,
            commit_seconds,
            commits,
            divergences,
            leader,
            queue_depth,
        }
    }

    /// The registry in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail and every label is a plain string, so there is no error to report; a
        // partial text would still be the best answer to a scrape.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Exports a RayCluster's info, provisioned condition and, once provisioned, its provisioning duration.
    pub fn observe_cluster(&self, cluster: &RayCluster) {
        let meta = &cluster.metadata;
        let conditions = cluster.status.as_ref().and_then(|status| status.conditions.as_deref());
        // KubeRay names the kind that created the cluster by this label, not by the owner reference.
        let owner_kind = meta
            .labels
            .as_ref()
            .and_then(|labels| labels.get(RAY_ORIGINATED_FROM_CRD_LABEL))
            .map_or("None", String::as_str);
        let provisioned = find_condition(conditions, RAY_CLUSTER_PROVISIONED).filter(|c| c.status == "True");
        let mut series = vec![
            (ObjectGauge::ClusterInfo, labels(meta, [("owner_kind", owner_kind.to_string())]), 1.0),
            (
                ObjectGauge::ClusterConditionProvisioned,
                labels(meta, [("condition", bool_label(provisioned.is_some()))]),
                1.0,
            ),
        ];
        let duration = provisioned
            .zip(meta.creation_timestamp.as_ref())
            .map(|(c, created)| seconds_between(created, &c.last_transition_time));
        series.extend(duration.map(|seconds| (ObjectGauge::ClusterProvisionedDuration, labels(meta, []), seconds)));
        self.replace(key(MachineKind::RayCluster, meta), series);
    }

    pub fn forget_cluster(&self, namespace: &str, name: &str, uid: &str) {
        self.forget(MachineKind::RayCluster, namespace, name, uid);
    }

    /// Exports a RayJob's info and deployment status and, for an attempt that ended (Complete, Failed or Retrying,
    /// with both start and end times), its execution duration.
    pub fn observe_job(&self, job: &RayJob) {
        let meta = &job.metadata;
        let status = job.status.as_ref();
        let deployment_status = status.and_then(|s| s.job_deployment_status).unwrap_or_default();
        let status_label = deployment_status_label(deployment_status);
        let mut series = vec![
            (ObjectGauge::JobInfo, labels(meta, []), 1.0),
            (ObjectGauge::JobDeploymentStatus, labels(meta, [("deployment_status", status_label.clone())]), 1.0),
        ];
        let attempt_ended = matches!(
            deployment_status,
            JobDeploymentStatus::Complete | JobDeploymentStatus::Failed | JobDeploymentStatus::Retrying
        );
        let times = status.and_then(|s| s.start_time.as_ref().zip(s.end_time.as_ref()));
        if let (true, Some((start, end))) = (attempt_ended, times) {
            // The reconcile that moves a job to Failed (and from there to Retrying) also counts that failure in
            // `status.failed`; KubeRay labels the attempt with the count from before it.
            let failed = status.and_then(|s| s.failed).unwrap_or(0);
            let this_attempt_failed = deployment_status != JobDeploymentStatus::Complete;
            let retry_count = if this_attempt_failed { failed.saturating_sub(1).max(0) } else { failed };
            let extra = [("job_deployment_status", status_label), ("retry_count", retry_count.to_string())];
            series.push((ObjectGauge::JobExecutionDuration, labels(meta, extra), seconds_between(start, end)));
        }
        self.replace(key(MachineKind::RayJob, meta), series);
    }

    pub fn forget_job(&self, namespace: &str, name: &str, uid: &str) {
        self.forget(MachineKind::RayJob, namespace, name, uid);
    }

    /// Exports a RayService's info and its Ready and UpgradeInProgress conditions.
    pub fn observe_service(&self, service: &RayService) {
        let meta = &service.metadata;
        let conditions = service.status.as_ref().and_then(|status| status.conditions.as_deref());
        let is_true = |type_: &str| bool_label(find_condition(conditions, type_).is_some_and(|c| c.status == "True"));
        let series = vec![
            (ObjectGauge::ServiceInfo, labels(meta, []), 1.0),
            (ObjectGauge::ServiceConditionReady, labels(meta, [("condition", is_true(RAY_SERVICE_READY))]), 1.0),
            (
                ObjectGauge::ServiceConditionUpgradeInProgress,
                labels(meta, [("condition", is_true(UPGRADE_IN_PROGRESS))]),
                1.0,
            ),
        ];
        self.replace(key(MachineKind::RayService, meta), series);
    }

    pub fn forget_service(&self, namespace: &str, name: &str, uid: &str) {
        self.forget(MachineKind::RayService, namespace, name, uid);
    }

    pub fn input(&self, kind: MachineKind, trigger: &Trigger) {
        let trigger = match trigger {
            Trigger::Watch { .. } => "watch",
            Trigger::Timer { .. } => "timer",
            Trigger::Outcome { .. } => "outcome",
            Trigger::Resync => "resync",
        };
        self.inputs.get_or_create(&machine_labels(kind, [("trigger", trigger.to_string())])).inc();
    }

    pub fn transition(&self, kind: MachineKind, from: &str, to: &str, reason: &str) {
        let extra = [("from", from.to_string()), ("to", to.to_string()), ("reason", reason.to_string())];
        self.transitions.get_or_create(&machine_labels(kind, extra)).inc();
    }

    pub fn step_error(&self, kind: MachineKind) {
        self.step_errors.get_or_create(&machine_labels(kind, [])).inc();
    }

    pub fn journal_bytes(&self, bytes: u64) {
        self.journal_bytes.set(bytes);
    }

    /// One group commit flushed in `latency`.
    pub fn commit(&self, latency: Duration) {
        self.commit_seconds.observe(latency.as_secs_f64());
        self.commits.inc();
    }

    /// `count` more replayed steps diverged from the journal.
    pub fn divergences(&self, count: u64) {
        self.divergences.inc_by(count);
    }

    /// A command ran; `summary` is `Command::summary()`, whose first word is the verb.
    pub fn command(&self, kind: MachineKind, summary: &str, outcome: &Outcome) {
        let verb = summary.split_whitespace().next().unwrap_or_default();
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::Conflict => "conflict",
            Outcome::NotFound => "not_found",
            Outcome::AlreadyExists => "already_exists",
            Outcome::Failed { .. } => "failed",
        };
        let extra = [("command", verb.to_string()), ("outcome", outcome.to_string())];
        self.commands.get_or_create(&machine_labels(kind, extra)).inc();
    }

    pub fn leader(&self, leading: bool) {
        self.leader.set(u64::from(leading));
    }

    pub fn queue_depth(&self, depth: usize) {
        self.queue_depth.set(u64::try_from(depth).unwrap_or(u64::MAX));
    }

    /// Sets an object's series to `series`, removing those it exported before and no longer does.
    fn replace(&self, key: ObjectKey, series: Vec<(ObjectGauge, Labels, f64)>) {
        let mut exported = self.exported();
        let mut kept: Vec<(ObjectGauge, Labels)> = Vec::with_capacity(series.len());
        for (gauge, labels) in exported.remove(&key).unwrap_or_default() {
            let still_exported = series.iter().any(|(g, l, _)| *g == gauge && *l == labels);
            if still_exported || gauge.kept_until_forgotten() {
                kept.push((gauge, labels));
            } else {
                self.family(gauge).remove(&labels);
            }
        }
        for (gauge, labels, value) in series {
            self.family(gauge).get_or_create(&labels).set(value);
            if !kept.iter().any(|(g, l)| *g == gauge && *l == labels) {
                kept.push((gauge, labels));
            }
        }
        exported.insert(key, kept);
    }

    fn forget(&self, kind: MachineKind, namespace: &str, name: &str, uid: &str) {
        let key = ObjectKey { kind, namespace: namespace.to_string(), name: name.to_string(), uid: uid.to_string() };
        for (gauge, labels) in self.exported().remove(&key).unwrap_or_default() {
            self.family(gauge).remove(&labels);
        }
    }

    fn family(&self, gauge: ObjectGauge) -> &GaugeFamily {
        &self.object_gauges[gauge as usize]
    }

    fn exported(&self) -> MutexGuard<'_, HashMap<ObjectKey, Vec<(ObjectGauge, Labels)>>> {
        // A panic while the lock was held can at worst leave one object's bookkeeping stale; metrics must go on.
        self.exported.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(kind: MachineKind, meta: &ObjectMeta) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

fn labels<const N: usize>(meta: &ObjectMeta, extra: [(&'static str, String); N]) -> Labels {
    let identity = [
        ("name", meta.name.clone().unwrap_or_default()),
        ("namespace", meta.namespace.clone().unwrap_or_default()),
        ("uid", meta.uid.clone().unwrap_or_default()),
    ];
    identity.into_iter().chain(extra).collect()
}

fn machine_labels<const N: usize>(kind: MachineKind, extra: [(&'static str, String); N]) -> Labels {
    [("machine", kind.cli_name().to_string())].into_iter().chain(extra).collect()
}

fn find_condition<'a>(conditions: Option<&'a [Condition]>, type_: &str) -> Option<&'a Condition> {
    conditions.unwrap_or_default().iter().find(|condition| condition.type_ == type_)
}

/// KubeRay writes condition labels with Go's `strconv.FormatBool`.
fn bool_label(value: bool) -> String {
    value.to_string()
}

fn seconds_between(from: &Time, to: &Time) -> f64 {
    to.0.duration_since(from.0).as_secs_f64()
}

/// The status as it is written in the object (`""` for New), from its serde name.
fn deployment_status_label(status: JobDeploymentStatus) -> String {
    serde_json::to_value(status).ok().and_then(|value| value.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rstest::rstest;

    use super::*;
    use crate::api::raycluster::{RayClusterSpec, RayClusterStatus};
    use crate::api::rayjob::{RayJobSpec, RayJobStatus};
    use crate::api::rayservice::{RayServiceSpec, RayServiceStatuses};
    use crate::machine::WatchEvent;

    /// Seconds after the objects' creation.
    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_735_689_600 + second).unwrap())
    }

    fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".to_string()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(at(0)),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
            ..ObjectMeta::default()
        }
    }

    fn condition(type_: &str, status: &str, second: i64) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: at(second),
            reason: "Test".to_string(),
            message: String::new(),
            observed_generation: None,
        }
    }

    fn cluster(name: &str, labels: &[(&str, &str)], conditions: Option<Vec<Condition>>) -> RayCluster {
        let mut cluster = RayCluster::new(name, RayClusterSpec::default());
        cluster.metadata = meta(name, labels);
        cluster.status = Some(RayClusterStatus { conditions, ..RayClusterStatus::default() });
        cluster
    }

    fn job(status: JobDeploymentStatus, start: Option<i64>, end: Option<i64>, failed: Option<i32>) -> RayJob {
        let mut job = RayJob::new("j", RayJobSpec::default());
        job.metadata = meta("j", &[]);
        job.status = Some(RayJobStatus {
            job_deployment_status: Some(status),
            start_time: start.map(at),
            end_time: end.map(at),
            failed,
            ..RayJobStatus::default()
        });
        job
    }

    fn service(conditions: Vec<Condition>) -> RayService {
        let mut service = RayService::new("s", RayServiceSpec::default());
        service.metadata = meta("s", &[]);
        service.status = Some(RayServiceStatuses { conditions: Some(conditions), ..RayServiceStatuses::default() });
        service
    }

    /// The sample lines of every metric whose name starts with `prefix`, sorted.
    fn series(metrics: &Metrics, prefix: &str) -> Vec<String> {
        let mut lines: Vec<String> =
            metrics.encode().lines().filter(|line| line.starts_with(prefix)).map(str::to_string).collect();
        lines.sort();
        lines
    }

    const C: &str = r#"name="c",namespace="default",uid="uid-c""#;
    const J: &str = r#"name="j",namespace="default",uid="uid-j""#;
    const S: &str = r#"name="s",namespace="default",uid="uid-s""#;

    #[rstest]
    #[case::provisioned_standalone(
        &[],
        Some(vec![condition(RAY_CLUSTER_PROVISIONED, "True", 90)]),
        &[
            format!("kuberay_cluster_condition_provisioned{{{C},condition=\"true\"}} 1.0"),
            format!("kuberay_cluster_info{{{C},owner_kind=\"None\"}} 1.0"),
            format!("kuberay_cluster_provisioned_duration_seconds{{{C}}} 90.0"),
        ],
    )]
    #[case::created_by_a_rayjob_not_provisioned(
        &[(RAY_ORIGINATED_FROM_CRD_LABEL, "RayJob")],
        Some(vec![condition(RAY_CLUSTER_PROVISIONED, "False", 30)]),
        &[
            format!("kuberay_cluster_condition_provisioned{{{C},condition=\"false\"}} 1.0"),
            format!("kuberay_cluster_info{{{C},owner_kind=\"RayJob\"}} 1.0"),
        ],
    )]
    #[case::without_the_condition(
        &[(RAY_ORIGINATED_FROM_CRD_LABEL, "RayService")],
        None,
        &[
            format!("kuberay_cluster_condition_provisioned{{{C},condition=\"false\"}} 1.0"),
            format!("kuberay_cluster_info{{{C},owner_kind=\"RayService\"}} 1.0"),
        ],
    )]
    fn a_cluster_exports_kuberay_gauges(
        #[case] labels: &[(&str, &str)],
        #[case] conditions: Option<Vec<Condition>>,
        #[case] expected: &[String],
    ) {
        let metrics = Metrics::new();
        metrics.observe_cluster(&cluster("c", labels, conditions));
        assert_eq!(series(&metrics, "kuberay_cluster_"), expected);
    }

    #[test]
    fn a_flipped_condition_replaces_its_series() {
        let metrics = Metrics::new();
        metrics.observe_cluster(&cluster("c", &[], Some(vec![condition(RAY_CLUSTER_PROVISIONED, "False", 0)])));
        metrics.observe_cluster(&cluster("c", &[], Some(vec![condition(RAY_CLUSTER_PROVISIONED, "True", 12)])));
        assert_eq!(
            series(&metrics, "kuberay_cluster_condition_provisioned"),
            [format!("kuberay_cluster_condition_provisioned{{{C},condition=\"true\"}} 1.0")]
        );
    }

    #[test]
    fn forgetting_a_cluster_removes_its_series_only() {
        let metrics = Metrics::new();
        let provisioned = || Some(vec![condition(RAY_CLUSTER_PROVISIONED, "True", 5)]);
        metrics.observe_cluster(&cluster("c", &[], provisioned()));
        metrics.observe_cluster(&cluster("d", &[], provisioned()));
        metrics.forget_cluster("default", "d", "uid-d");
        assert_eq!(
            series(&metrics, "kuberay_cluster_"),
            [
                format!("kuberay_cluster_condition_provisioned{{{C},condition=\"true\"}} 1.0"),
                format!("kuberay_cluster_info{{{C},owner_kind=\"None\"}} 1.0"),
                format!("kuberay_cluster_provisioned_duration_seconds{{{C}}} 5.0"),
            ]
        );
        metrics.forget_cluster("default", "c", "uid-c");
        assert_eq!(series(&metrics, "kuberay_cluster_"), Vec::<String>::new());
    }

    #[test]
    fn forgetting_needs_the_uid_of_the_observed_object() {
        let metrics = Metrics::new();
        metrics.observe_cluster(&cluster("c", &[], None));
        metrics.forget_cluster("default", "c", "uid-of-an-earlier-c");
        assert_eq!(series(&metrics, "kuberay_cluster_info").len(), 1);
    }

    #[rstest]
    #[case::new(JobDeploymentStatus::New, None, None, None, "", None)]
    #[case::running_exports_no_duration(JobDeploymentStatus::Running, Some(10), None, Some(0), "Running", None)]
    #[case::complete_first_attempt(
        JobDeploymentStatus::Complete,
        Some(10),
        Some(130),
        Some(0),
        "Complete",
        Some(r#"job_deployment_status="Complete",retry_count="0"} 120.0"#)
    )]
    #[case::failed_labels_the_failures_before_it(
        JobDeploymentStatus::Failed,
        Some(10),
        Some(40),
        Some(2),
        "Failed",
        Some(r#"job_deployment_status="Failed",retry_count="1"} 30.0"#)
    )]
    #[case::retrying_after_the_first_attempt(
        JobDeploymentStatus::Retrying,
        Some(0),
        Some(7),
        Some(1),
        "Retrying",
        Some(r#"job_deployment_status="Retrying",retry_count="0"} 7.0"#)
    )]
    #[case::complete_after_a_retry(
        JobDeploymentStatus::Complete,
        Some(0),
        Some(2),
        Some(1),
        "Complete",
        Some(r#"job_deployment_status="Complete",retry_count="1"} 2.0"#)
    )]
    #[case::failed_without_an_end_time(JobDeploymentStatus::Failed, Some(0), None, Some(1), "Failed", None)]
    fn a_job_exports_kuberay_gauges(
        #[case] status: JobDeploymentStatus,
        #[case] start: Option<i64>,
        #[case] end: Option<i64>,
        #[case] failed: Option<i32>,
        #[case] deployment_status: &str,
        #[case] duration: Option<&str>,
    ) {
        let metrics = Metrics::new();
        metrics.observe_job(&job(status, start, end, failed));
        let mut expected =
            vec![format!("kuberay_job_deployment_status{{{J},deployment_status=\"{deployment_status}\"}} 1.0")];
        expected.extend(duration.map(|tail| format!("kuberay_job_execution_duration_seconds{{{J},{tail}")));
        expected.push(format!("kuberay_job_info{{{J}}} 1.0"));
        assert_eq!(series(&metrics, "kuberay_job_"), expected);
    }

    #[test]
    fn an_attempt_duration_stays_until_the_job_is_forgotten() {
        let metrics = Metrics::new();
        metrics.observe_job(&job(JobDeploymentStatus::Retrying, Some(0), Some(7), Some(1)));
        metrics.observe_job(&job(JobDeploymentStatus::Running, Some(20), None, Some(1)));
        assert_eq!(
            series(&metrics, "kuberay_job_"),
            [
                format!("kuberay_job_deployment_status{{{J},deployment_status=\"Running\"}} 1.0"),
                format!(
                    "kuberay_job_execution_duration_seconds{{{J},job_deployment_status=\"Retrying\",retry_count=\"0\"}} 7.0"
                ),
                format!("kuberay_job_info{{{J}}} 1.0"),
            ]
        );
        metrics.forget_job("default", "j", "uid-j");
        assert_eq!(series(&metrics, "kuberay_job_"), Vec::<String>::new());
    }

    #[rstest]
    #[case::ready(vec![condition(RAY_SERVICE_READY, "True", 1)], "true", "false")]
    #[case::upgrading(
        vec![condition(RAY_SERVICE_READY, "True", 1), condition(UPGRADE_IN_PROGRESS, "True", 2)], "true", "true"
    )]
    #[case::not_ready(vec![condition(RAY_SERVICE_READY, "False", 1), condition(UPGRADE_IN_PROGRESS, "False", 2)], "false", "false")]
    #[case::without_conditions(vec![], "false", "false")]
    fn a_service_exports_kuberay_gauges(
        #[case] conditions: Vec<Condition>,
        #[case] ready: &str,
        #[case] upgrading: &str,
    ) {
        let metrics = Metrics::new();
        metrics.observe_service(&service(conditions));
        assert_eq!(
            series(&metrics, "kuberay_service_"),
            [
                format!("kuberay_service_condition_ready{{{S},condition=\"{ready}\"}} 1.0"),
                format!("kuberay_service_condition_upgrade_in_progress{{{S},condition=\"{upgrading}\"}} 1.0"),
                format!("kuberay_service_info{{{S}}} 1.0"),
            ]
        );
        metrics.forget_service("default", "s", "uid-s");
        assert_eq!(series(&metrics, "kuberay_service_"), Vec::<String>::new());
    }

    fn watch() -> Trigger {
        Trigger::Watch { kind: "Pod".to_string(), name: "p".to_string(), event: WatchEvent::Applied }
    }

    #[rstest]
    #[case::input_watch(
        |m: &Metrics| { m.input(MachineKind::RayCluster, &watch()); m.input(MachineKind::RayCluster, &watch()) },
        "kuberay_engine_inputs",
        &[r#"kuberay_engine_inputs_total{machine="raycluster",trigger="watch"} 2"#],
    )]
    #[case::input_timer_outcome_resync(
        |m: &Metrics| {
            m.input(MachineKind::RayJob, &Trigger::Timer { name: "requeue".to_string() });
            m.input(MachineKind::RayJob, &Trigger::Outcome { command: "create Pod x".to_string(), outcome: Outcome::Ok });
            m.input(MachineKind::RayService, &Trigger::Resync);
        },
        "kuberay_engine_inputs",
        &[
            r#"kuberay_engine_inputs_total{machine="rayjob",trigger="outcome"} 1"#,
            r#"kuberay_engine_inputs_total{machine="rayjob",trigger="timer"} 1"#,
            r#"kuberay_engine_inputs_total{machine="rayservice",trigger="resync"} 1"#,
        ],
    )]
    #[case::transition(
        |m: &Metrics| m.transition(MachineKind::RayCluster, "Provisioning", "Ready", "AllPodsReady"),
        "kuberay_engine_transitions",
        &[r#"kuberay_engine_transitions_total{machine="raycluster",from="Provisioning",to="Ready",reason="AllPodsReady"} 1"#],
    )]
    #[case::step_error(
        |m: &Metrics| m.step_error(MachineKind::RayService),
        "kuberay_engine_step_errors",
        &[r#"kuberay_engine_step_errors_total{machine="rayservice"} 1"#],
    )]
    #[case::journal_bytes_is_set_not_added(
        |m: &Metrics| { m.journal_bytes(10); m.journal_bytes(4096) },
        "kuberay_journal_bytes",
        &["kuberay_journal_bytes 4096"],
    )]
    #[case::commit(
        |m: &Metrics| { m.commit(Duration::from_millis(3)); m.commit(Duration::from_micros(200)) },
        "kuberay_journal_commit",
        &[
            r#"kuberay_journal_commit_seconds_bucket{le="+Inf"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.0001"} 0"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.00025"} 1"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.0005"} 1"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.001"} 1"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.0025"} 1"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.005"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.01"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.025"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.05"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.1"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.25"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="0.5"} 2"#,
            r#"kuberay_journal_commit_seconds_bucket{le="1.0"} 2"#,
            "kuberay_journal_commit_seconds_count 2",
            "kuberay_journal_commit_seconds_sum 0.0032",
            "kuberay_journal_commits_total 2",
        ],
    )]
    #[case::divergences_add_up(
        |m: &Metrics| { m.divergences(2); m.divergences(3) },
        "kuberay_replay_divergences",
        &["kuberay_replay_divergences_total 5"],
    )]
    #[case::commands_by_verb_and_outcome(
        |m: &Metrics| {
            m.command(MachineKind::RayCluster, "create Pod raycluster-kuberay-head-", &Outcome::Ok);
            m.command(MachineKind::RayCluster, "create Service raycluster-kuberay-head-svc", &Outcome::Ok);
            m.command(MachineKind::RayCluster, "delete Pod p", &Outcome::NotFound);
            m.command(MachineKind::RayCluster, "write-status", &Outcome::Conflict);
            m.command(MachineKind::RayJob, "create RayCluster j-abcde", &Outcome::AlreadyExists);
            m.command(MachineKind::RayJob, "patch Job j", &Outcome::Failed { message: "boom".to_string() });
        },
        "kuberay_commands",
        &[
            r#"kuberay_commands_total{machine="raycluster",command="create",outcome="ok"} 2"#,
            r#"kuberay_commands_total{machine="raycluster",command="delete",outcome="not_found"} 1"#,
            r#"kuberay_commands_total{machine="raycluster",command="write-status",outcome="conflict"} 1"#,
            r#"kuberay_commands_total{machine="rayjob",command="create",outcome="already_exists"} 1"#,
            r#"kuberay_commands_total{machine="rayjob",command="patch",outcome="failed"} 1"#,
        ],
    )]
    #[case::leader(|m: &Metrics| m.leader(true), "kuberay_leader", &["kuberay_leader 1"])]
    #[case::leadership_lost(|m: &Metrics| { m.leader(true); m.leader(false) }, "kuberay_leader", &["kuberay_leader 0"])]
    #[case::queue_depth(|m: &Metrics| m.queue_depth(17), "kuberay_workqueue_depth", &["kuberay_workqueue_depth 17"])]
    fn engine_metrics(#[case] record: fn(&Metrics), #[case] prefix: &str, #[case] expected: &[&str]) {
        let metrics = Metrics::new();
        record(&metrics);
        assert_eq!(series(&metrics, prefix), expected);
    }

    #[test]
    fn gauges_are_listed_in_declaration_order() {
        for (index, gauge) in ObjectGauge::ALL.into_iter().enumerate() {
            assert_eq!(gauge as usize, index, "{gauge:?}");
        }
    }
}
