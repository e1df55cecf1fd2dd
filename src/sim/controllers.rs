//! The controllers of the simulated cluster, acting through the store exactly as clients do (their writes are
//! watch events like any other): a kubelet that runs Pods, the Endpoints controller, and the Job controller.
//!
//! - **kubelet**: a new Pod goes Running after [`ControllerConfig::pod_start_delay`] (a pod IP from 10.244.0.0/16,
//!   host IP 10.0.0.1, running containers, PodScheduled and Initialized), and Ready after
//!   [`ControllerConfig::pod_ready_delay`] more (while every container runs). How long a container runs depends on
//!   what it runs: a container of a Ray node's Pod (labelled `ray.io/node-type` and no Job's: the node, the autoscaler,
//!   any sidecar) until its Pod goes; a RayJob submitter (a command that runs `ray job submit`) until its command ends
//!   ([`super::submitter`], run by [`super::Sim::run_controllers`]); anything else, in a Pod whose restartPolicy is
//!   not `Always`, for [`ControllerConfig::pod_run_duration`], then exits 0. A Pod whose containers have all exited
//!   is Succeeded when they all exited 0, else Failed. A failing Pod (it matches [`ControllerConfig::failing_pods`],
//!   is named in [`ControllerConfig::failing_pod_names`], or is drawn with [`ControllerConfig::failure_rate`] and
//!   its seed) has every container exit 1 after the run duration when it does not restart; a failing `Always` Pod
//!   never gets Ready (its containers wait in CrashLoopBackOff with one restart).
//!
//!   Each container's output ([`pod_log`], `pods/NAME/log`) starts with the command line it runs (`command` and
//!   `args`, or `<image entrypoint>`); a container that runs for the run duration then writes `simulated step K of
//!   3` at each third of its run, the last one as it exits. A submitter's output is what its command prints.
//!   `follow` streams what is written until the container terminates or its Pod is deleted ([`LogCursor`]).
//!
//!   Approximations: no nodes or scheduling (`spec.nodeName` stays as written), no probes, no in-place restarts of
//!   `OnFailure` containers (the Pod fails), no restart of an exited container in an `Always` Pod, no graceful
//!   termination, and no `previous`, `sinceSeconds` or `limitBytes` logs.
//! - **Endpoints**: every Service with a selector has an Endpoints object of its name whose addresses are the
//!   ready matching Pods with an IP (the others under `notReadyAddresses`; all of them with
//!   `publishNotReadyAddresses`, as a Ray head Service has), ports resolved from the Service's `targetPort` (named
//!   ports from the first Pod's containers); it is deleted with its Service. A Pod's change recomputes only the
//!   Endpoints of the Services that select it (before or after), and a Job's Pods are found through the store's
//!   owner index: a step costs what changed, not what exists.
//! - **Jobs**: creates the Pods of a Job from its template (`generateName: <job>-`, controlled by the Job) up to
//!   `parallelism` while fewer than `completions` succeeded; counts `active`, `ready`, `succeeded`, `failed`; ends
//!   `Complete` (with `SuccessCriteriaMet`) or `Failed` (with `FailureTarget`; `BackoffLimitExceeded` once more
//!   Pods failed than `backoffLimit`, `DeadlineExceeded` after `activeDeadlineSeconds`), deleting its active Pods
//!   when it fails; a suspended Job has its active Pods deleted. Indexed completion, pod failure and success
//!   policies, and `ttlSecondsAfterFinished` are not simulated.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::clock::format_time;
use super::error::ApiError;
use super::network;
use super::resources::{ResourceId, ResourceType};
use super::selector::LabelSelector;
use super::store::{
    ChangeKind, DeleteOptions, FieldValidation, ListOptions, Propagation, Store, Subresource, WatchPoll,
};
use super::submitter::Submitter;

/// How the simulated kubelet paces and fails Pods.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerConfig {
    pub pod_start_delay: Duration,
    pub pod_ready_delay: Duration,
    /// How long a Pod whose restartPolicy is not `Always` runs before its containers exit.
    pub pod_run_duration: Duration,
    /// Pods this label selector matches fail (empty: none do).
    pub failing_pods: LabelSelector,
    /// Pods of these names fail.
    pub failing_pod_names: BTreeSet<String>,
    /// The share of Pods (0.0 to 1.0) that fail at random: which ones is a function of `failure_seed` and the
    /// Pod's uid, so the same seed and the same requests fail the same Pods, in any order.
    pub failure_rate: f64,
    pub failure_seed: u64,
}

impl ControllerConfig {
    /// Whether the kubelet fails this Pod: by label, by name, or at random with the seed.
    fn fails(&self, pod: &Value) -> bool {
        let by_label = !self.failing_pods.is_empty() && self.failing_pods.matches(pod);
        let by_name = self.failing_pod_names.contains(text(pod, "/metadata/name"));
        by_label || by_name || (self.failure_rate > 0.0 && self.draw(text(pod, "/metadata/uid")) < self.failure_rate)
    }

    /// A number in [0, 1) drawn from the seed and the uid alone.
    fn draw(&self, uid: &str) -> f64 {
        let digest = blake3::hash(format!("{}/{uid}", self.failure_seed).as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            pod_start_delay: Duration::from_secs(1),
            pod_ready_delay: Duration::from_secs(1),
            pod_run_duration: Duration::from_secs(5),
            failing_pods: LabelSelector::default(),
            failing_pod_names: BTreeSet::new(),
            failure_rate: 0.0,
            failure_seed: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Start,
    Ready,
    /// A container that runs to completion writes its K-th line.
    Progress(u32),
    Finish,
    JobDeadline,
}

/// One object: namespace, name and uid (a recreated object is another one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Instance {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A container whose command the kubelet does not end on its timer: a RayJob submitter ([`super::submitter`]), to
/// be run by the caller of [`Controllers::step`].
pub(crate) struct Launch {
    pub pod: Instance,
    pub container: Value,
    pub submitter: Submitter,
}

/// The state of the controllers between steps: where they are in the watch history, and their timers.
pub struct Controllers {
    config: ControllerConfig,
    cursors: BTreeMap<ResourceId, u64>,
    timers: BTreeMap<(Instant, u64), (Step, Instance)>,
    sequence: u64,
    started: HashSet<String>,
    /// Jobs (by uid) whose activeDeadlineSeconds timer fired.
    past_deadline: HashSet<String>,
    next_pod_ip: u32,
    /// The selectors of the Services that have one, by namespace and name: a Pod's change touches only the
    /// Services that select it (before or after), so that a step does not list every Pod.
    selectors: BTreeMap<String, BTreeMap<String, LabelSelector>>,
    launches: Vec<Launch>,
}

const HOST_IP: &str = "10.0.0.1";
/// How many `simulated step K of N` lines a container that runs to completion writes over its run.
const PROGRESS_LINES: u32 = 3;
/// Bounds the rounds of one step: each round reacts to the previous round's writes.
const MAX_ROUNDS: usize = 16;

fn resource(store: &Store, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    store.registry().find(group, version, plural).cloned()
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn target_of(object: &Value) -> Instance {
    Instance {
        namespace: text(object, "/metadata/namespace").to_string(),
        name: text(object, "/metadata/name").to_string(),
        uid: text(object, "/metadata/uid").to_string(),
    }
}

fn controller_uid(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid").and_then(Value::as_str))
}

fn phase(pod: &Value) -> &str {
    text(pod, "/status/phase")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Ready")
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn is_deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Everything the controllers touched in one round of changes.
#[derive(Default)]
struct Touched {
    /// Services (namespace, name) whose Endpoints may be stale.
    services: BTreeSet<(String, String)>,
    jobs: BTreeSet<(String, String)>,
    new_pods: Vec<Arc<Value>>,
}

impl Controllers {
    pub fn new(config: ControllerConfig) -> Controllers {
        Controllers {
            config,
            cursors: BTreeMap::new(),
            timers: BTreeMap::new(),
            sequence: 0,
            started: HashSet::new(),
            past_deadline: HashSet::new(),
            next_pod_ip: u32::from(Ipv4Addr::new(10, 244, 0, 2)),
            selectors: BTreeMap::new(),
            launches: Vec::new(),
        }
    }

    /// The submitter containers started since the last call.
    pub(crate) fn take_launches(&mut self) -> Vec<Launch> {
        std::mem::take(&mut self.launches)
    }

    /// When the next timer fires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    fn schedule(&mut self, at: Instant, step: Step, target: Instance) {
        self.sequence += 1;
        self.timers.insert((at, self.sequence), (step, target));
    }

    /// Reacts to every change since the last step and to the timers due by `now`.
    pub fn step(&mut self, store: &mut Store, now: Instant) {
        let due: Vec<(Step, Instance)> = {
            let later = self.timers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut self.timers, later).into_values().collect()
        };
        let mut touched = Touched::default();
        for (step, target) in due {
            match step {
                Step::JobDeadline => {
                    self.past_deadline.insert(target.uid);
                    touched.jobs.insert((target.namespace, target.name));
                }
                pod_step => self.advance_pod(store, pod_step, &target, now),
            }
        }
        for _ in 0..MAX_ROUNDS {
            self.collect_changes(store, &mut touched);
            if touched.services.is_empty() && touched.jobs.is_empty() && touched.new_pods.is_empty() {
                break;
            }
            let round = std::mem::take(&mut touched);
            for pod in round.new_pods {
                let target = target_of(&pod);
                if !is_deleting(&pod) && phase(&pod) == "Pending" && self.started.insert(target.uid.clone()) {
                    self.schedule(now + self.config.pod_start_delay, Step::Start, target);
                }
            }
            for (namespace, name) in &round.services {
                reconcile_endpoints(store, namespace, name);
            }
            for (namespace, name) in &round.jobs {
                self.reconcile_job(store, namespace, name, now);
            }
        }
    }

    /// Reads the history of Services, Pods and Jobs since the last look (everything, after a gap).
    fn collect_changes(&mut self, store: &Store, touched: &mut Touched) {
        for (group, plural) in [("", "services"), ("", "pods"), ("batch", "jobs")] {
            let id = ResourceId { group: group.to_string(), plural: plural.to_string() };
            let cursor = self.cursors.get(&id).copied().unwrap_or(0);
            let changes: Vec<(Arc<Value>, Option<Arc<Value>>, bool)> = match store.changes_since(&id, cursor) {
                WatchPoll::Changes { changes, cursor } => {
                    self.cursors.insert(id.clone(), cursor);
                    changes.into_iter().map(|c| (c.object, c.previous, c.kind == ChangeKind::Deleted)).collect()
                }
                WatchPoll::Expired { .. } => {
                    self.cursors.insert(id.clone(), store.resource_version());
                    if plural == "services" {
                        self.selectors.clear();
                    }
                    let Some(kind) = store.registry().get(&id).cloned() else { continue };
                    let current = store.list(&kind, None, &ListOptions::default()).map(|page| page.items);
                    current.unwrap_or_default().into_iter().map(|object| (object, None, false)).collect()
                }
                WatchPoll::Closed => continue,
            };
            for (object, previous, deleted) in changes {
                let namespace = text(&object, "/metadata/namespace").to_string();
                let name = text(&object, "/metadata/name").to_string();
                match plural {
                    "services" => {
                        let selector =
                            object.pointer("/spec/selector").and_then(Value::as_object).filter(|s| !s.is_empty());
                        let selectors = self.selectors.entry(namespace.clone()).or_default();
                        match selector.filter(|_| !deleted) {
                            Some(selector) => selectors.insert(name.clone(), LabelSelector::from_labels(selector)),
                            None => selectors.remove(&name),
                        };
                        touched.services.insert((namespace, name));
                    }
                    "pods" => {
                        if let Some((resource, job)) = controller_uid(&object).and_then(|uid| store.by_uid(uid))
                            && resource.group == "batch"
                            && resource.plural == "jobs"
                        {
                            touched.jobs.insert((namespace.clone(), text(&job, "/metadata/name").to_string()));
                        }
                        for (service, selector) in self.selectors.get(&namespace).into_iter().flatten() {
                            if selector.matches(&object) || previous.as_deref().is_some_and(|p| selector.matches(p)) {
                                touched.services.insert((namespace.clone(), service.clone()));
                            }
                        }
                        touched.new_pods.push(object);
                    }
                    _ => {
                        touched.jobs.insert((namespace, name));
                    }
                }
            }
        }
    }

    fn pod_ip(&mut self) -> String {
        let ip = Ipv4Addr::from(self.next_pod_ip);
        self.next_pod_ip += 1;
        ip.to_string()
    }

    fn advance_pod(&mut self, store: &mut Store, step: Step, target: &Instance, now: Instant) {
        let Some(pods) = resource(store, "", "v1", "pods") else { return };
        let Ok(pod) = store.get(&pods, Some(&target.namespace), &target.name) else { return };
        if text(&pod, "/metadata/uid") != target.uid || is_deleting(&pod) || is_terminal(&pod) {
            return;
        }
        let time = format_time(store.now());
        let failing = self.config.fails(&pod);
        let restarts = text(&pod, "/spec/restartPolicy") == "Always";
        let mut next = pod.as_ref().clone();
        match step {
            Step::Start => {
                let mut ends = false;
                for container in containers(&pod) {
                    match runs(&pod, container) {
                        Runs::Submitter(submitter) => {
                            self.launches.push(Launch { pod: target.clone(), container: container.clone(), submitter })
                        }
                        runs => {
                            store.append_log(&target.uid, text(container, "/name"), &command_line(container));
                            ends |= matches!(runs, Runs::ToCompletion);
                        }
                    }
                }
                let ip = self.pod_ip();
                next["status"] = running_status(&pod, &ip, &time);
                self.schedule(now + self.config.pod_ready_delay, Step::Ready, target.clone());
                if !restarts && (ends || failing) {
                    // Scheduled before Finish, so that the last line is written before the container exits.
                    for line in 1..=PROGRESS_LINES {
                        let at = now + self.config.pod_run_duration * line / PROGRESS_LINES;
                        self.schedule(at, Step::Progress(line), target.clone());
                    }
                    self.schedule(now + self.config.pod_run_duration, Step::Finish, target.clone());
                }
            }
            Step::Progress(line) => {
                for container in containers(&pod).filter(|c| matches!(runs(&pod, c), Runs::ToCompletion)) {
                    store.append_log(
                        &target.uid,
                        text(container, "/name"),
                        &format!("simulated step {line} of {PROGRESS_LINES}"),
                    );
                }
                return;
            }
            Step::Ready if failing && restarts => {
                set_containers(&mut next, &json!({"waiting": {"reason": "CrashLoopBackOff"}}), false, 1)
            }
            Step::Ready => {
                for status in container_statuses(&mut next) {
                    let running = status.pointer("/state/running").is_some();
                    status["ready"] = json!(running);
                }
                settle(&mut next, &time);
            }
            Step::Finish => {
                let ending: Vec<String> = containers(&pod)
                    .filter(|c| failing || matches!(runs(&pod, c), Runs::ToCompletion))
                    .map(|c| text(c, "/name").to_string())
                    .collect();
                for name in ending {
                    terminate(&mut next, &name, i32::from(failing), &time);
                }
                settle(&mut next, &time);
            }
            Step::JobDeadline => return,
        }
        let _ = store.update(
            &pods,
            Some(&target.namespace),
            &target.name,
            next,
            Subresource::Status,
            FieldValidation::Ignore,
        );
    }

    fn reconcile_job(&mut self, store: &mut Store, namespace: &str, name: &str, now: Instant) {
        let (Some(jobs), Some(pods)) = (resource(store, "batch", "v1", "jobs"), resource(store, "", "v1", "pods"))
        else {
            return;
        };
        let Ok(job) = store.get(&jobs, Some(namespace), name) else { return };
        let finished = ["Complete", "Failed"].iter().any(|t| has_condition(&job, t));
        if is_deleting(&job) || finished {
            return;
        }
        let uid = text(&job, "/metadata/uid").to_string();
        let owned: Vec<Arc<Value>> = store
            .dependents_of(&uid)
            .into_iter()
            .filter(|(resource, pod)| *resource == &pods.id() && controller_uid(pod) == Some(uid.as_str()))
            .map(|(_, pod)| pod)
            .collect();
        let active: Vec<&Arc<Value>> = owned.iter().filter(|p| !is_terminal(p) && !is_deleting(p)).collect();
        let count = |phase_name: &str| owned.iter().filter(|p| phase(p) == phase_name).count() as i64;
        let (succeeded, failed) = (count("Succeeded"), count("Failed"));
        let spec_number = |field: &str, default: i64| {
            job.pointer(&format!("/spec/{field}")).and_then(Value::as_i64).unwrap_or(default)
        };
        let completions = spec_number("completions", 1);
        let parallelism = spec_number("parallelism", 1);
        let time = format_time(store.now());
        let mut status = job.get("status").cloned().unwrap_or(json!({}));
        if status.get("startTime").is_none() && !job.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false)
        {
            status["startTime"] = json!(time);
            if let Some(seconds) = job.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_u64) {
                self.schedule(now + Duration::from_secs(seconds), Step::JobDeadline, target_of(&job));
            }
        }
        let deadline_passed = self.past_deadline.contains(&uid);
        let failure = if failed > spec_number("backoffLimit", 6) {
            Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
        } else if deadline_passed {
            Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
        } else {
            None
        };
        let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
        let mut active_count = active.len() as i64;
        if failure.is_some() || suspended {
            for pod in &active {
                let _ = store.delete(&pods, Some(namespace), text(pod, "/metadata/name"), &background());
            }
            active_count = 0;
        } else if succeeded < completions {
            let wanted = parallelism.min(completions - succeeded) - active_count;
            for _ in 0..wanted.max(0) {
                if store.create(&pods, Some(namespace), pod_for(&job), FieldValidation::Ignore).is_ok() {
                    active_count += 1;
                }
            }
        }
        status["active"] = json!(active_count);
        status["ready"] = json!(active.iter().filter(|p| is_ready(p)).count());
        status["succeeded"] = json!(succeeded);
        status["failed"] = json!(failed);
        status["terminating"] = json!(0);
        status["uncountedTerminatedPods"] = json!({});
        if let Some((reason, message)) = failure {
            add_condition(&mut status, "FailureTarget", reason, message, &time);
            add_condition(&mut status, "Failed", reason, message, &time);
        } else if succeeded >= completions {
            add_condition(
                &mut status,
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &time,
            );
            add_condition(
                &mut status,
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &time,
            );
            status["completionTime"] = json!(time);
        }
        if job.get("status") != Some(&status) {
            let mut next = job.as_ref().clone();
            next["status"] = status;
            let _ = store.update(&jobs, Some(namespace), name, next, Subresource::Status, FieldValidation::Ignore);
        }
    }
}

/// The words a container runs: its `command`, then its `args`.
pub(super) fn command_words(container: &Value) -> Vec<&str> {
    ["command", "args"]
        .iter()
        .filter_map(|field| container.get(*field).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// What a container runs, as one line.
fn command_line(container: &Value) -> String {
    let words = command_words(container);
    if words.is_empty() { "<image entrypoint>".to_string() } else { words.join(" ") }
}

/// The options of a `pods/NAME/log` request.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub container: Option<String>,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
}

/// `pods/NAME/log`: a cursor on a container's output at the first line to serve, or the kubelet's refusal (no such
/// Pod or container, or a container not started yet).
pub fn pod_log(store: &Store, namespace: &str, name: &str, options: &LogOptions) -> Result<LogCursor, ApiError> {
    let pods = resource(store, "", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = store.get(&pods, Some(namespace), name)?;
    let names: Vec<&str> = containers(&pod).map(|c| text(c, "/name")).collect();
    let container = match (options.container.as_deref(), names.as_slice()) {
        (Some(container), _) => container,
        (None, [only]) => only,
        (None, many) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                many.join(" ")
            )));
        }
    };
    if !names.contains(&container) {
        return Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}")));
    }
    if !container_in_state(&pod, container, "running") && !container_in_state(&pod, container, "terminated") {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let uid = text(&pod, "/metadata/uid").to_string();
    let written = store.log(&uid, container).len();
    Ok(LogCursor {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid,
        container: container.to_string(),
        next_line: options.tail_lines.map_or(0, |tail| written.saturating_sub(tail)),
        timestamps: options.timestamps,
    })
}

/// Where a reader of one container's output is: a plain `pods/NAME/log` reads once, `follow` until the end.
#[derive(Clone, Debug)]
pub struct LogCursor {
    namespace: String,
    name: String,
    /// The Pod's uid: a new Pod of the same name is another log.
    uid: String,
    container: String,
    next_line: usize,
    timestamps: bool,
}

/// What a [`LogCursor`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// The lines written since the last read, each ending with a newline.
    pub text: String,
    /// No more lines will come: the container terminated, or its Pod is being deleted or gone.
    pub ended: bool,
}

impl LogCursor {
    /// The lines written since the last read.
    pub fn read(&mut self, store: &Store) -> LogChunk {
        let pod = resource(store, "", "v1", "pods")
            .and_then(|pods| store.get(&pods, Some(&self.namespace), &self.name).ok())
            .filter(|pod| text(pod, "/metadata/uid") == self.uid);
        let lines = store.log(&self.uid, &self.container);
        let unread = lines.get(self.next_line..).unwrap_or_default();
        self.next_line = self.next_line.max(lines.len());
        let text =
            unread
                .iter()
                .map(|line| {
                    if self.timestamps { format!("{} {}\n", line.time, line.text) } else { format!("{}\n", line.text) }
                })
                .collect();
        let ended = pod.is_none_or(|pod| is_deleting(&pod) || container_in_state(&pod, &self.container, "terminated"));
        LogChunk { text, ended }
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten()
}

/// Whether the named container's status is in `state` (`running`, `terminated`, `waiting`).
fn container_in_state(pod: &Value, container: &str, state: &str) -> bool {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| text(c, "/name") == container && c.pointer(&format!("/state/{state}")).is_some())
}

fn background() -> DeleteOptions {
    DeleteOptions { propagation: Some(Propagation::Background), ..DeleteOptions::default() }
}

/// A Pod of a Job, as the Job controller makes it from the template.
fn pod_for(job: &Value) -> Value {
    let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut metadata = template.get("metadata").cloned().unwrap_or(json!({}));
    metadata["generateName"] = json!(format!("{}-", text(job, "/metadata/name")));
    metadata["ownerReferences"] = json!([{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": text(job, "/metadata/name"),
        "uid": text(job, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    json!({"metadata": metadata, "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

fn has_condition(object: &Value, kind: &str) -> bool {
    object.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind) && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn add_condition(status: &mut Value, kind: &str, reason: &str, message: &str, time: &str) {
    let condition = json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": time, "lastTransitionTime": time,
    });
    match status.get_mut("conditions").and_then(Value::as_array_mut) {
        Some(conditions) => conditions.push(condition),
        None => status["conditions"] = json!([condition]),
    }
}

fn running_status(pod: &Value, ip: &str, time: &str) -> Value {
    let conditions: Vec<Value> = [
        ("PodReadyToStartContainers", "True"),
        ("Initialized", "True"),
        ("Ready", "False"),
        ("ContainersReady", "False"),
        ("PodScheduled", "True"),
    ]
    .iter()
    .map(|(kind, status)| json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": time}))
    .collect();
    let mut status = pod.get("status").cloned().unwrap_or(json!({}));
    status["phase"] = json!("Running");
    status["conditions"] = json!(conditions);
    status["hostIP"] = json!(HOST_IP);
    status["hostIPs"] = json!([{"ip": HOST_IP}]);
    status["podIP"] = json!(ip);
    status["podIPs"] = json!([{"ip": ip}]);
    status["startTime"] = json!(time);
    let uid = text(pod, "/metadata/uid");
    let statuses: Vec<Value> = containers(pod)
        .map(|c| {
            let name = text(c, "/name");
            json!({
                "name": name,
                "image": c.get("image").cloned().unwrap_or(Value::Null),
                "imageID": "",
                "containerID": format!("sim://{uid}/{name}"),
                "ready": false,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": time}},
            })
        })
        .collect();
    status["containerStatuses"] = json!(statuses);
    status
}

fn set_condition(pod: &mut Value, kind: &str, value: &str, time: &str) {
    for condition in pod.pointer_mut("/status/conditions").and_then(Value::as_array_mut).into_iter().flatten() {
        if condition.get("type").and_then(Value::as_str) == Some(kind) && condition["status"] != json!(value) {
            condition["status"] = json!(value);
            condition["lastTransitionTime"] = json!(time);
        }
    }
}

fn set_containers(pod: &mut Value, state: &Value, ready: bool, restarts: u32) {
    for container in pod.pointer_mut("/status/containerStatuses").and_then(Value::as_array_mut).into_iter().flatten() {
        container["state"] = state.clone();
        container["ready"] = json!(ready);
        container["started"] = json!(state.get("running").is_some());
        container["restartCount"] = json!(restarts);
    }
}

/// How the simulated kubelet runs a container (module docs).
enum Runs {
    /// A container of a Ray node's Pod (the Ray node, the autoscaler, a user's sidecar; not a Job's): until its Pod
    /// goes.
    Forever,
    /// A RayJob submitter: until its command ends ([`super::submitter`]).
    Submitter(Submitter),
    /// Anything else: for [`ControllerConfig::pod_run_duration`] in a Pod that does not restart it.
    ToCompletion,
}

fn runs(pod: &Value, container: &Value) -> Runs {
    if let Some(submitter) = Submitter::of(container) {
        Runs::Submitter(submitter)
    } else if pod.pointer("/metadata/labels/ray.io~1node-type").is_some() && !controlled_by_a_job(pod) {
        Runs::Forever
    } else {
        Runs::ToCompletion
    }
}

/// A Job's Pod (the Redis cleanup Job's carries the head's labels) runs to completion.
fn controlled_by_a_job(pod: &Value) -> bool {
    let owners = pod.pointer("/metadata/ownerReferences").and_then(Value::as_array).into_iter().flatten();
    owners.into_iter().any(|owner| owner["kind"] == "Job" && owner["controller"] == true)
}

fn container_statuses(pod: &mut Value) -> impl Iterator<Item = &mut Value> {
    pod.pointer_mut("/status/containerStatuses").and_then(Value::as_array_mut).into_iter().flatten()
}

/// The named container exits with `code`.
fn terminate(pod: &mut Value, container: &str, code: i32, time: &str) {
    let started = pod.pointer("/status/startTime").cloned().unwrap_or(json!(time));
    let reason = if code == 0 { "Completed" } else { "Error" };
    for status in container_statuses(pod).filter(|status| text(status, "/name") == container) {
        status["state"] =
            json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": time}});
        status["ready"] = json!(false);
        status["started"] = json!(false);
    }
}

/// The Pod's readiness and phase from its containers': Ready while every container is; once every container has
/// exited, Succeeded when all exited 0, else Failed.
fn settle(pod: &mut Value, time: &str) {
    let statuses: Vec<Value> = container_statuses(pod).map(|status| status.clone()).collect();
    let ready = if statuses.iter().all(|status| status["ready"] == json!(true)) { "True" } else { "False" };
    set_condition(pod, "ContainersReady", ready, time);
    set_condition(pod, "Ready", ready, time);
    let exit_codes: Vec<i64> =
        statuses.iter().filter_map(|status| status.pointer("/state/terminated/exitCode")?.as_i64()).collect();
    if !statuses.is_empty() && exit_codes.len() == statuses.len() {
        pod["status"]["phase"] = json!(if exit_codes.iter().all(|code| *code == 0) { "Succeeded" } else { "Failed" });
    }
}

/// Whether the Pod is still this instance, running, and not being deleted.
pub(crate) fn is_live(store: &Store, pod: &Instance) -> bool {
    resource(store, "", "v1", "pods")
        .and_then(|pods| store.get(&pods, Some(&pod.namespace), &pod.name).ok())
        .is_some_and(|found| text(&found, "/metadata/uid") == pod.uid && !is_deleting(&found) && !is_terminal(&found))
}

/// A container of a live Pod exits with `code` (a submitter's command ended).
pub(crate) fn finish_container(store: &mut Store, pod: &Instance, container: &str, code: i32) {
    let Some(pods) = resource(store, "", "v1", "pods") else { return };
    if !is_live(store, pod) {
        return;
    }
    let Ok(current) = store.get(&pods, Some(&pod.namespace), &pod.name) else { return };
    let time = format_time(store.now());
    let mut next = current.as_ref().clone();
    terminate(&mut next, container, code, &time);
    settle(&mut next, &time);
    let _ = store.update(&pods, Some(&pod.namespace), &pod.name, next, Subresource::Status, FieldValidation::Ignore);
}

/// Where `127.0.0.1:PORT` or `localhost:PORT` leads from inside a Pod: the Pod itself.
pub(crate) fn own_port(store: &Store, pod: &Instance, authority: &str) -> Result<network::Target, ApiError> {
    let refused = || ApiError::service_unavailable(&format!("dial tcp {authority}: connect: connection refused"));
    let port = authority.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).ok_or_else(refused)?;
    let pods = resource(store, "", "v1", "pods").ok_or_else(refused)?;
    let found = store.get(&pods, Some(&pod.namespace), &pod.name).map_err(|_| refused())?;
    if text(&found, "/metadata/uid") != pod.uid {
        return Err(refused());
    }
    Ok(network::Target { pod: found, port })
}

/// Brings the Endpoints of a Service in line with the Pods it selects, or removes them with the Service.
fn reconcile_endpoints(store: &mut Store, namespace: &str, name: &str) {
    let (Some(services), Some(pods), Some(endpoints)) = (
        resource(store, "", "v1", "services"),
        resource(store, "", "v1", "pods"),
        resource(store, "", "v1", "endpoints"),
    ) else {
        return;
    };
    let Ok(service) = store.get(&services, Some(namespace), name) else {
        if let Ok(existing) = store.get(&endpoints, Some(namespace), name)
            && existing.pointer("/metadata/labels/endpoints.kubernetes.io~1managed-by").is_some()
        {
            let _ = store.delete(&endpoints, Some(namespace), name, &background());
        }
        return;
    };
    let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object).filter(|s| !s.is_empty()) else {
        return;
    };
    let options = ListOptions { labels: LabelSelector::from_labels(selector), ..ListOptions::default() };
    let selected = store.list(&pods, Some(namespace), &options).map(|page| page.items).unwrap_or_default();
    let matching: Vec<&Arc<Value>> = selected
        .iter()
        .filter(|pod| !is_terminal(pod) && !is_deleting(pod) && !text(pod, "/status/podIP").is_empty())
        .collect();
    let desired = endpoints_for(&service, &matching);
    match store.get(&endpoints, Some(namespace), name) {
        Ok(current) => {
            if current.get("subsets") != desired.get("subsets")
                || current.pointer("/metadata/labels") != desired.pointer("/metadata/labels")
            {
                let mut next = current.as_ref().clone();
                next["metadata"]["labels"] = desired["metadata"]["labels"].clone();
                match desired.get("subsets") {
                    Some(subsets) => next["subsets"] = subsets.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("subsets");
                        }
                    }
                }
                let _ =
                    store.update(&endpoints, Some(namespace), name, next, Subresource::Main, FieldValidation::Ignore);
            }
        }
        Err(_) => {
            let _ = store.create(&endpoints, Some(namespace), desired, FieldValidation::Ignore);
        }
    }
}

fn endpoints_for(service: &Value, pods: &[&Arc<Value>]) -> Value {
    let address = |pod: &Value| {
        json!({
            "ip": text(pod, "/status/podIP"),
            "targetRef": {"kind": "Pod", "namespace": text(pod, "/metadata/namespace"), "name": text(pod, "/metadata/name"),
                          "uid": text(pod, "/metadata/uid")},
        })
    };
    let by_ip = |pods: Vec<&&Arc<Value>>| -> Vec<Value> {
        let mut sorted = pods;
        sorted.sort_by_key(|pod| text(pod, "/status/podIP").parse::<Ipv4Addr>().ok());
        sorted.into_iter().map(|pod| address(pod)).collect()
    };
    // A Service that publishes not-ready addresses (a Ray head Service does) lists every Pod as ready.
    let publish_all = service.pointer("/spec/publishNotReadyAddresses").and_then(Value::as_bool).unwrap_or(false);
    let ready = by_ip(pods.iter().filter(|p| publish_all || is_ready(p)).collect());
    let not_ready = by_ip(pods.iter().filter(|p| !publish_all && !is_ready(p)).collect());
    let ports: Vec<Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|port| {
            let target = port.get("targetPort").or_else(|| port.get("port")).cloned().unwrap_or(Value::Null);
            let number = match &target {
                Value::String(named) => pods.first().and_then(|pod| named_port(pod, named)).unwrap_or(Value::Null),
                other => other.clone(),
            };
            let mut entry = json!({"port": number, "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(name) = port.get("name") {
                entry["name"] = name.clone();
            }
            entry
        })
        .collect();
    let mut labels = service.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels["endpoints.kubernetes.io/managed-by"] = json!("endpoint-controller");
    if text(service, "/spec/clusterIP") == "None" {
        labels["service.kubernetes.io/headless"] = json!("");
    }
    let mut endpoints = json!({
        "metadata": {"name": text(service, "/metadata/name"), "namespace": text(service, "/metadata/namespace"), "labels": labels},
    });
    if !ready.is_empty() || !not_ready.is_empty() {
        let mut subset = json!({"ports": ports});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        endpoints["subsets"] = json!([subset]);
    }
    endpoints
}

fn named_port(pod: &Value, name: &str) -> Option<Value> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort").cloned())
}
