//! The operator runtime: watch → Input → journal → machine → executor (`../shared/DESIGN.md`, "The one path every
//! decision takes"), against any API server a `kube::Client` reaches — a real cluster for `kuberay run`, the
//! simulated one in-process for `kuberay sim run` and the end-to-end tests.
//!
//! One dispatcher task owns the caches ([`index`]), the work queue ([`queue`]) and the engine's memory of each
//! object. Watch events fold into the caches and wake the objects they concern; timers the machines asked for wake
//! them too. For each object taken off the queue the dispatcher takes one consistent snapshot of the caches (the
//! Input), and a step task journals it and steps the machine ([`journaler`], group-committed), then — only once the
//! Decision is durable, and only while this replica leads ([`leader`]) — runs its commands ([`executor`]). A command
//! that fails comes back as the object's next Input. One step at a time per object, up to `concurrency` objects at
//! once.
//!
//! RayJobs take the same path; before a RayJob that is Running (or Waiting) is stepped, its step task asks the Ray
//! dashboard about `status.jobId` ([`dashboards`]) and puts the answer in the Input, so the answer is journaled like a
//! watch event and replay reproduces the job's decisions. `SubmitJob` and `StopJob` go to the dashboard; a
//! submission the dashboard already knows counts as done, so a step repeated after a crash never submits twice.
//!
//! While a RayJob runs in HTTPMode or SidecarMode, the dispatcher also follows its job's output ([`tails`]): the
//! lines go to the journal through the steps' channel, between the Decisions they arrived among.
//!
//! Nothing is stepped until every watched kind has been listed once (`/readyz` says so), so a first Input never
//! misses a Pod that exists. The engine's memory (scale expectations, timers) lives here; a new replica starts with
//! none, which is safe: its caches are fresh.
//!
//! Durable timers: the RayCluster machine's one deadline (DEVIATIONS 9's deletion timeout) is computed from the
//! `deletionTimestamp` and an annotation, both in the API server, so a restart re-arms it from there; requeues are
//! not durable and need not be (every restart lists and steps every object).

pub mod dashboards;
pub mod executor;
pub mod health;
pub mod index;
pub mod journaler;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod tails;
pub mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use tokio::sync::{mpsc, watch as channel};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::rayjob::JobDeploymentStatus;
use crate::clock::Clock;
use crate::config::OperatorConfig;
use crate::engine::Engine;
use crate::journal::Retention;
use crate::journal::store::Store;
use crate::machine::JobObservation;
use crate::machine::{Command, Decision, Input, MachineKind, Memory, ObjectRef, Observation, Trigger};
pub use dashboards::Dashboards;
use executor::{Executor, Own};
use index::{Change, Index, Key};
use journaler::Journaler;
use leader::{LeaderElection, leads};
use metrics::Metrics;
use queue::Queue;
use tails::{Tails, Target};

/// How long a step whose journaling failed waits before it is tried again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// The timer a failed step comes back as.
const RETRY_TIMER: &str = "retry";

/// How the runtime runs.
#[derive(Clone)]
pub struct RuntimeConfig {
    pub operator: OperatorConfig,
    /// How many objects are stepped at once (`--reconcile-concurrency`).
    pub concurrency: usize,
    pub namespaces: watch::Namespaces,
    pub clock: Arc<dyn Clock>,
    pub leader_election: Option<LeaderElection>,
    /// How Ray dashboards are reached.
    pub dashboards: Dashboards,
    /// What the journal keeps ([`journaler::RETENTION_INTERVAL`]).
    pub retention: Retention,
}

/// A Decision as `kuberay sim run` prints it: `TIME KIND/NAMESPACE/NAME FROM -> TO REASON`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub time: Time,
    pub object: ObjectRef,
    pub from: String,
    pub to: String,
    pub reason: String,
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = crate::clock::format_time(self.time.0);
        write!(f, "{time} {} {} -> {} {}", self.object, self.from, self.to, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    #[error("the journal: {0}")]
    Journal(#[from] Arc<crate::engine::EngineError>),
}

/// What the runtime reports to whoever runs it.
#[derive(Clone)]
pub struct Reports {
    pub metrics: Arc<Metrics>,
    /// Every Decision that changed an object's state.
    pub transitions: Option<mpsc::UnboundedSender<Transition>>,
    /// True once every watched kind has been listed.
    pub ready: Arc<channel::Sender<bool>>,
}

/// Runs the operator until `shutdown` completes; then lets the steps in flight finish, commits the journal, and
/// gives the engine back.
pub async fn run<S: Store + Send + 'static>(
    client: kube::Client,
    engine: Engine<S>,
    config: RuntimeConfig,
    reports: Reports,
    shutdown: impl Future<Output = ()>,
) -> Result<Engine<S>, RuntimeError> {
    let leading = leader::elect(client.clone(), config.leader_election.as_ref()).await?;
    let (journaler, journal_task) =
        Journaler::start(engine, config.retention.clone(), config.clock.clone(), reports.metrics.clone());
    let journal_task = tokio::spawn(journal_task.run());
    let (changes, receiver) = mpsc::channel(1024);
    watch::spawn_all(&client, &config.namespaces, changes);
    let tail_context = tails::Context {
        journaler: journaler.clone(),
        dashboards: config.dashboards.clone(),
        clock: config.clock.clone(),
    };
    let shared = Arc::new(Shared {
        journaler,
        executor: Executor::new(client, config.dashboards.clone()),
        leading: leading.clone(),
        metrics: reports.metrics.clone(),
    });
    let dispatcher = Dispatcher {
        index: Index::default(),
        queue: Queue::default(),
        tracked: HashMap::new(),
        steps: JoinSet::new(),
        tails: Tails::default(),
        tail_context,
        shared,
        scopes: config.namespaces.scopes(),
        config,
        reports,
        leading,
    };
    dispatcher.run(receiver, shutdown).await;
    let engine = journal_task.await.map_err(|e| Arc::new(crate::engine::EngineError::Stopped(e.to_string())))??;
    Ok(engine)
}

/// What the step tasks share.
struct Shared {
    journaler: Journaler,
    executor: Executor,
    leading: channel::Receiver<bool>,
    metrics: Arc<Metrics>,
}

/// The engine's memory of one object, and which object (uid) it is of.
struct Tracked {
    uid: String,
    memory: Memory,
}

struct Dispatcher {
    index: Index,
    queue: Queue,
    tracked: HashMap<Key, Tracked>,
    steps: JoinSet<Stepped>,
    /// The log tails of running Ray jobs ([`tails`]).
    tails: Tails,
    tail_context: tails::Context,
    shared: Arc<Shared>,
    scopes: Vec<Option<String>>,
    config: RuntimeConfig,
    reports: Reports,
    leading: channel::Receiver<bool>,
}

/// A finished step.
struct Stepped {
    key: Key,
    input: Input,
    from: Memory,
    result: Result<Executed, String>,
}

struct Executed {
    decision: Decision,
    /// The first command that failed, as the trigger of the object's next step.
    failure: Option<Trigger>,
}

impl Dispatcher {
    async fn run(mut self, mut changes: mpsc::Receiver<Change>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut was_leading = leads(&self.leading);
        let mut leading = self.leading.clone();
        loop {
            self.dispatch();
            let deadline = self.queue.next_deadline();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                change = changes.recv() => match change {
                    Some(change) => self.fold(change),
                    None => break,
                },
                Some(stepped) = self.steps.join_next() => match stepped {
                    Ok(stepped) => self.finish(stepped),
                    Err(error) => tracing::error!(%error, "a step task failed"),
                },
                () = timer => self.queue.fire(Instant::now()),
                changed = leading.changed(), if was_leading || leading.has_changed().is_ok() => {
                    let now_leading = changed.is_ok() && leads(&leading);
                    if now_leading && !was_leading {
                        tracing::info!("leading: stepping every object");
                        for key in self.index.object_keys() {
                            self.queue.push(key, Trigger::Resync);
                        }
                    } else if !now_leading && was_leading {
                        tracing::warn!("no longer leading: commands stop");
                        self.tails.stop_all().await;
                    }
                    was_leading = now_leading;
                    self.shared.metrics.leader(now_leading);
                }
            }
            self.shared.metrics.queue_depth(self.queue.depth());
        }
        while let Some(stepped) = self.steps.join_next().await {
            if let Ok(stepped) = stepped {
                self.finish(stepped);
            }
        }
        // The tails hold the journaler: the journal's task ends (with its last commit) once they are gone.
        self.tails.stop_all().await;
    }

    fn fold(&mut self, change: Change) {
        for (key, trigger) in self.index.apply(change) {
            self.shared.metrics.input(key.kind, &trigger);
            self.queue.push(key, trigger);
        }
        if !*self.reports.ready.borrow() && self.index.synced(&watch::WATCHED, &self.scopes) {
            self.reports.ready.send_replace(true);
            tracing::info!("caches synced");
        }
    }

    /// Starts steps while there is room, the caches are synced, and this replica leads.
    fn dispatch(&mut self) {
        if !*self.reports.ready.borrow() || !leads(&self.leading) {
            return;
        }
        while self.steps.len() < self.config.concurrency.max(1) {
            let Some((key, trigger)) = self.queue.pop() else { return };
            let Some(input) = self.input(&key, trigger) else {
                self.queue.done(&key);
                continue;
            };
            let tracked = self
                .tracked
                .entry(key.clone())
                .or_insert_with(|| Tracked { uid: input.object.uid.clone(), memory: Memory::default() });
            if tracked.uid != input.object.uid {
                // A new object under a name used before: nothing the engine remembers is about it.
                *tracked = Tracked { uid: input.object.uid.clone(), memory: Memory::default() };
            }
            let memory = tracked.memory.clone();
            let shared = self.shared.clone();
            self.steps.spawn(step(shared, key, memory, input));
        }
    }

    /// The Input for `key` from the caches; None for an object neither observed nor remembered.
    fn input(&self, key: &Key, trigger: Trigger) -> Option<Input> {
        let (observation, metadata) = match key.kind {
            MachineKind::RayCluster => {
                let observation = self.index.observe_cluster(key);
                let metadata = observation.cluster.as_ref().map(|cluster| cluster.metadata.clone());
                (Observation::RayCluster(observation), metadata)
            }
            MachineKind::RayJob => {
                let observation = self.index.observe_job(key);
                let metadata = observation.job.as_ref().map(|job| job.metadata.clone());
                (Observation::RayJob(observation), metadata)
            }
            MachineKind::RayService => return None,
        };
        let uid = match metadata {
            Some(metadata) => metadata.uid.unwrap_or_default(),
            None => self.tracked.get(key)?.uid.clone(),
        };
        let object = ObjectRef { kind: key.kind, namespace: key.namespace.clone(), name: key.name.clone(), uid };
        let now = Time(self.config.clock.now());
        Some(Input { object, trigger, now, observation })
    }

    fn finish(&mut self, stepped: Stepped) {
        let Stepped { key, input, from, result } = stepped;
        self.queue.done(&key);
        let metrics = &self.shared.metrics;
        let executed = match result {
            Ok(executed) => executed,
            Err(error) => {
                metrics.step_error(key.kind);
                tracing::error!(object = %input.object, %error, "step failed; retrying");
                self.queue.set_timers(&key, vec![(Instant::now() + RETRY_AFTER_ERROR, RETRY_TIMER.to_string())]);
                return;
            }
        };
        let Executed { decision, failure } = executed;
        let from_state = crate::machine::state_before(&from, &input);
        metrics.transition(key.kind, &from_state, &decision.next, &decision.reason);
        if from_state != decision.next {
            tracing::info!(object = %input.object, from = %from_state, to = %decision.next, reason = %decision.reason, "transition");
            if let Some(transitions) = &self.reports.transitions {
                let _ = transitions.send(Transition {
                    time: input.now.clone(),
                    object: input.object.clone(),
                    from: from_state,
                    to: decision.next.clone(),
                    reason: decision.reason.clone(),
                });
            }
        }
        let gone = match &input.observation {
            Observation::RayCluster(observation) => {
                match &observation.cluster {
                    Some(cluster) => metrics.observe_cluster(cluster),
                    None => metrics.forget_cluster(&key.namespace, &key.name, &input.object.uid),
                }
                observation.cluster.is_none()
            }
            Observation::RayJob(observation) => {
                match &observation.job {
                    Some(job) => metrics.observe_job(job),
                    None => metrics.forget_job(&key.namespace, &key.name, &input.object.uid),
                }
                observation.job.is_none()
            }
        };
        if gone {
            self.tracked.remove(&key);
            self.queue.set_timers(&key, Vec::new());
            self.tails.stop(&key);
            return;
        }
        if key.kind == MachineKind::RayJob && leads(&self.leading) {
            self.tails.follow(&key, &input.object, Target::of(&input, &decision), &self.tail_context);
        }
        self.queue.set_timers(&key, timers(&decision, &input.now, self.config.clock.as_ref()));
        if let Some(tracked) = self.tracked.get_mut(&key) {
            tracked.memory = decision.memory;
        }
        if let Some(failure) = failure {
            metrics.input(key.kind, &failure);
            self.queue.push(key, failure);
        }
    }
}

/// The timers a Decision leaves: those in its memory, and its requeue.
fn timers(decision: &Decision, now: &Time, clock: &dyn Clock) -> Vec<(Instant, String)> {
    let instant_of = |at: &Time| {
        let wait = at.0.duration_since(clock.now());
        Instant::now() + Duration::try_from(wait).unwrap_or(Duration::ZERO)
    };
    let mut timers: Vec<(Instant, String)> =
        decision.memory.timers.iter().map(|(name, at)| (instant_of(at), name.clone())).collect();
    for command in &decision.commands {
        if let Command::RequeueAfter { millis } = command {
            let at = now.0.checked_add(jiff::SignedDuration::from_millis(*millis as i64)).unwrap_or(now.0);
            timers.push((instant_of(&Time(at)), crate::machine::raycluster::REQUEUE_TIMER.to_string()));
        }
    }
    timers
}

/// The dashboard address and job id to ask about, when the RayJob machine reads the answer: a job with both, Running
/// or Waiting (`JobObservation::dashboard`).
fn dashboard_question(observation: &JobObservation) -> Option<(String, String)> {
    let status = observation.job.as_ref()?.status.as_ref()?;
    let asks =
        matches!(status.job_deployment_status, Some(JobDeploymentStatus::Running | JobDeploymentStatus::Waiting));
    let address = status.dashboard_url.clone().filter(|url| !url.is_empty())?;
    let job_id = status.job_id.clone().filter(|id| !id.is_empty())?;
    asks.then_some((address, job_id))
}

/// The machine's own object as observed, as JSON.
fn own_json(observation: &Observation) -> Option<Value> {
    match observation {
        Observation::RayCluster(observation) => serde_json::to_value(observation.cluster.as_ref()?).ok(),
        Observation::RayJob(observation) => serde_json::to_value(observation.job.as_ref()?).ok(),
    }
}

/// One step of one object: journal and step (durable on return), then the commands, in order, while leading.
async fn step(shared: Arc<Shared>, key: Key, memory: Memory, mut input: Input) -> Stepped {
    if let Observation::RayJob(observation) = &mut input.observation
        && let Some((address, job_id)) = dashboard_question(observation)
    {
        observation.dashboard = Some(shared.executor.dashboards().job_info(&address, &job_id).await);
    }
    let decision = match shared.journaler.step(memory.clone(), input.clone()).await {
        Ok(decision) => decision,
        Err(error) => return Stepped { key, input, from: memory, result: Err(error.to_string()) },
    };
    // The object as JSON only for a Decision that writes its finalizers or status (against its resourceVersion).
    let writes_own = decision.commands.iter().any(|command| {
        matches!(command, Command::AddFinalizer { .. } | Command::RemoveFinalizer { .. } | Command::WriteStatus { .. })
    });
    let observed = if writes_own { own_json(&input.observation) } else { None };
    let mut own = Own { object: &input.object, observed };
    let mut failure = None;
    for command in &decision.commands {
        if !leads(&shared.leading) {
            tracing::warn!(object = %input.object, "lost the lease: the rest of this Decision's commands are not run");
            break;
        }
        let summary = command.summary();
        let outcome = shared.executor.execute(&mut own, command).await;
        shared.metrics.command(key.kind, &summary, outcome.as_ref().err().unwrap_or(&crate::machine::Outcome::Ok));
        if let Err(outcome) = outcome {
            tracing::debug!(object = %input.object, command = %summary, ?outcome, "command failed");
            failure = Some(Trigger::Outcome { command: summary, outcome });
            break;
        }
    }
    Stepped { key, input, from: memory, result: Ok(Executed { decision, failure }) }
}
