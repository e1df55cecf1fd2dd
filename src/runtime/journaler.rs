//! The engine behind a channel, with group commit: steps that arrive together are journaled and stepped in one
//! batch and made durable by one commit, and only then answered — so a command never runs before the Decision that
//! holds it is durable (write-ahead), and a burst of steps costs one flush.
//!
//! A job's output lines ([`Journaler::logs`]) take the same channel, so they land in the journal in the order they
//! arrived relative to the steps; they need no answer and are made durable by the batch's commit like the rest.
//!
//! The batch runs on tokio's blocking pool: sled's flush blocks, and a blocking task also keeps paused (simulated)
//! time from jumping ahead while the disk works. Between batches, every [`RETENTION_INTERVAL`], the task applies the
//! journal's retention policy, so that a long-running operator's journal stays bounded.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::metrics::Metrics;
use crate::clock::Clock;
use crate::engine::{Engine, EngineError};
use crate::journal::store::Store;
use crate::journal::{JobLogs, LoggedOutput, Retention};
use crate::machine::{Decision, Input, Memory, ObjectRef};

/// The most steps one commit covers: a bound on how long the first of them waits.
const MAX_BATCH: usize = 256;
/// How often retention runs.
pub const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

type Reply = oneshot::Sender<Result<Decision, Arc<EngineError>>>;
type LoggedReply = oneshot::Sender<Result<LoggedOutput, Arc<EngineError>>>;

enum Request {
    /// The Input boxed: it is large, and the other requests are small.
    Step {
        memory: Memory,
        input: Box<Input>,
        reply: Reply,
    },
    Logs {
        object: ObjectRef,
        logs: JobLogs,
    },
    Logged {
        object: ObjectRef,
        job_id: String,
        reply: LoggedReply,
    },
}

/// A handle on the journaling engine; cloning shares it.
#[derive(Clone)]
pub struct Journaler {
    requests: mpsc::Sender<Request>,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Engine(#[from] Arc<EngineError>),
    #[error("the journal has stopped")]
    Stopped,
}

impl Journaler {
    /// Starts the engine's task; it ends, after a last commit, when every handle is dropped.
    pub fn start<S: Store + Send + 'static>(
        engine: Engine<S>,
        retention: Retention,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> (Journaler, JournalTask<S>) {
        let (requests, receiver) = mpsc::channel(MAX_BATCH * 4);
        let task = JournalTask { engine: Some(engine), requests: receiver, retention, clock, metrics };
        (Journaler { requests }, task)
    }

    /// Journals the Input, steps the machine, journals the Decision, and returns it once it is durable.
    pub async fn step(&self, memory: Memory, input: Input) -> Result<Decision, StepError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Step { memory, input: Box::new(input), reply })
            .await
            .map_err(|_| StepError::Stopped)?;
        Ok(answer.await.map_err(|_| StepError::Stopped)??)
    }

    /// Journals lines of a job's output after whatever was sent before; durable with the batch they land in.
    pub async fn logs(&self, object: ObjectRef, logs: JobLogs) -> Result<(), StepError> {
        self.requests.send(Request::Logs { object, logs }).await.map_err(|_| StepError::Stopped)
    }

    /// What the journal holds of job `job_id`'s output for `object`, counting everything sent before.
    pub async fn logged_output(&self, object: ObjectRef, job_id: String) -> Result<LoggedOutput, StepError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Logged { object, job_id, reply }).await.map_err(|_| StepError::Stopped)?;
        Ok(answer.await.map_err(|_| StepError::Stopped)??)
    }
}

/// The engine's side: run it with [`JournalTask::run`]; it gives the engine back when it ends.
pub struct JournalTask<S: Store> {
    engine: Option<Engine<S>>,
    requests: mpsc::Receiver<Request>,
    retention: Retention,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl<S: Store + Send + 'static> JournalTask<S> {
    pub async fn run(mut self) -> Result<Engine<S>, Arc<EngineError>> {
        let mut retention = tokio::time::interval(RETENTION_INTERVAL);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retention.tick().await;
        loop {
            let first = tokio::select! {
                first = self.requests.recv() => first,
                _ = retention.tick() => {
                    self.retain().await?;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let Some(engine) = self.engine.take() else { break };
            let metrics = self.metrics.clone();
            let (engine, answers) = tokio::task::spawn_blocking(move || step_batch(engine, batch, &metrics))
                .await
                .map_err(|e| Arc::new(EngineError::Stopped(e.to_string())))?;
            self.engine = Some(engine);
            // A caller that went away (shutdown) needs no answer.
            for answer in answers {
                match answer {
                    Answer::Decision(reply, decision) => drop(reply.send(decision)),
                    Answer::Logged(reply, logged) => drop(reply.send(logged)),
                }
            }
        }
        let mut engine = self.engine.take().ok_or_else(|| Arc::new(EngineError::Stopped("lost".to_string())))?;
        engine.commit().map_err(Arc::new)?;
        Ok(engine)
    }
}

impl<S: Store + Send + 'static> JournalTask<S> {
    async fn retain(&mut self) -> Result<(), Arc<EngineError>> {
        let Some(mut engine) = self.engine.take() else { return Ok(()) };
        let (policy, now) = (self.retention.clone(), Time(self.clock.now()));
        let (engine, retained) = tokio::task::spawn_blocking(move || {
            let retained = engine.retain(&policy, now);
            (engine, retained)
        })
        .await
        .map_err(|e| Arc::new(EngineError::Stopped(e.to_string())))?;
        self.engine = Some(engine);
        match retained {
            Ok(report) if report.records > 0 => {
                tracing::info!(records = report.records, objects = report.objects, "journal retention");
            }
            Ok(_) => {}
            // Retention failing leaves the journal larger, not wrong: the operator goes on.
            Err(error) => tracing::warn!(%error, "journal retention failed"),
        }
        Ok(())
    }
}

enum Answer {
    Decision(Reply, Result<Decision, Arc<EngineError>>),
    Logged(LoggedReply, Result<LoggedOutput, Arc<EngineError>>),
}

fn step_batch<S: Store>(mut engine: Engine<S>, batch: Vec<Request>, metrics: &Metrics) -> (Engine<S>, Vec<Answer>) {
    let divergences = engine.divergences();
    let mut stepped: Vec<(Reply, Result<Decision, EngineError>)> = Vec::with_capacity(batch.len());
    let mut answers = Vec::new();
    for request in batch {
        match request {
            Request::Step { memory, input, reply } => stepped.push((reply, engine.step(&memory, &input))),
            Request::Logs { object, logs } => {
                if let Err(error) = engine.journal_logs(&object, &logs) {
                    // Lost lines are a gap in the record of the job's output, not in the operator's decisions.
                    tracing::warn!(%object, job_id = %logs.job_id, %error, "job output not journaled");
                }
            }
            Request::Logged { object, job_id, reply } => {
                let logged = engine.journal().logged_output(&object, &job_id).map_err(|e| Arc::new(e.into()));
                answers.push(Answer::Logged(reply, logged));
            }
        }
    }
    metrics.divergences(engine.divergences() - divergences);
    let started = Instant::now();
    let committed = engine.commit();
    metrics.commit(started.elapsed());
    match committed {
        Ok(_) => answers
            .extend(stepped.into_iter().map(|(reply, decision)| Answer::Decision(reply, decision.map_err(Arc::new)))),
        Err(error) => {
            // Nothing of this batch is durable, so none of its commands may run.
            let error = Arc::new(error);
            answers.extend(stepped.into_iter().map(|(reply, _)| Answer::Decision(reply, Err(error.clone()))));
        }
    }
    if let Ok(bytes) = engine.journal().bytes_on_disk() {
        metrics.journal_bytes(bytes);
    }
    (engine, answers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::TokioClock;
    use crate::config::OperatorConfig;
    use crate::journal::Journal;
    use crate::machine::{ClusterObservation, MachineKind, ObjectRef, Observation, Trigger};

    fn gone_cluster(now: Time) -> Input {
        let object = ObjectRef {
            kind: MachineKind::RayCluster,
            namespace: "ns".to_string(),
            name: "c".to_string(),
            uid: "uid-c".to_string(),
        };
        Input {
            object,
            trigger: Trigger::Resync,
            now,
            observation: Observation::RayCluster(ClusterObservation::default()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn steps_are_durable_when_answered_and_retention_runs_between_batches() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
        let now = Time(clock.now());
        let engine = Engine::start(Journal::in_memory().unwrap(), &OperatorConfig::default(), now.clone()).unwrap();
        let retention = Retention { gone_ttl: Duration::from_secs(60), max_bytes: None };
        let (journaler, task) = Journaler::start(engine, retention, clock.clone(), Arc::new(Metrics::new()));
        let task = tokio::spawn(task.run());
        let decision = journaler.step(Memory::default(), gone_cluster(now)).await.unwrap();
        assert_eq!(decision.next, "Deleted");
        tokio::time::sleep(RETENTION_INTERVAL * 2).await;
        drop(journaler);
        let engine = task.await.unwrap().unwrap();
        let stats = engine.journal().stats().unwrap();
        assert_eq!(engine.journal().durable(), engine.journal().next_seq() - 1, "everything answered is durable");
        assert_eq!(stats.objects, 0, "the gone object's records went after its time to live: {stats:?}");
    }
}
