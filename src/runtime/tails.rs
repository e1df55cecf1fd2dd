//! Following the output of running Ray jobs: while a RayJob's latest Decision leaves it Running in HTTPMode or
//! SidecarMode with a job id and a dashboard address, and this replica leads, one task per (RayJob, job id) follows
//! the dashboard's log tail and sends the lines to the journaler — the steps' channel, so the journal holds them in
//! the order they arrived among the Decisions ([`crate::journal::JobLogs`]). In K8sJobMode the submitter Pod prints
//! the output; an InteractiveMode job is the user's own.
//!
//! - Lines that arrive together (one frame, or frames already waiting) are one record.
//! - The dashboard sends the whole backlog first whenever a tail connects. A task asks the journal how many lines of
//!   the job it already holds and skips that many, so that neither a restart nor a reconnect journals a line twice.
//! - A tail that fails (the dashboard unreachable, the job not submitted yet) is tried again after a delay that
//!   doubles up to [`RETRY_MAX`]; the first failure of a run of them is logged, the rest are not. A transport that
//!   cannot tail at all (through the API server's proxy) is said once, at debug, and the task ends.
//! - When the RayJob leaves Running its task drains: it goes on reading until the dashboard closes the tail (about
//!   3 s after the job ended) or [`DRAIN_GRACE`] has passed, so that the job's last lines — which may arrive after
//!   the step that saw the job end — are kept. It reconnects no more.
//! - A RayJob deleted, the lead lost, or the operator stopping: its task is aborted at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::dashboards::Dashboards;
use super::index::Key;
use super::journaler::Journaler;
use crate::api::rayjob::SubmissionMode;
use crate::clock::Clock;
use crate::journal::JobLogs;
use crate::machine::rayjob::State;
use crate::machine::{Command, Decision, Input, ObjectRef, Observation};
use crate::ray::{LogStream, RayError};

/// The first delay before a failed tail is tried again.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest delay between tries.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a tail goes on reading once its RayJob has left Running.
pub const DRAIN_GRACE: Duration = Duration::from_secs(15);

/// The job a tail follows: where its dashboard is, and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub job_id: String,
}

impl Target {
    /// The job to tail after `decision` was taken on `input`: a RayJob left Running, in HTTPMode or SidecarMode, with
    /// a job id and a dashboard address — read off the status the Decision writes, else the one observed.
    pub fn of(input: &Input, decision: &Decision) -> Option<Target> {
        let Observation::RayJob(observation) = &input.observation else { return None };
        let job = observation.job.as_ref()?;
        let tailed = matches!(job.spec.mode(), Some(SubmissionMode::Http | SubmissionMode::Sidecar));
        if decision.next != State::Running.name() || !tailed {
            return None;
        }
        let written = decision.commands.iter().rev().find_map(|command| match command {
            Command::WriteStatus { status } => Some(status),
            _ => None,
        });
        let observed = job.status.as_ref();
        let field = |name: &str, observed: Option<&String>| {
            let written = written.and_then(|status| status.get(name)).and_then(Value::as_str);
            written.map(str::to_string).or_else(|| observed.cloned()).filter(|value| !value.is_empty())
        };
        Some(Target {
            address: field("dashboardURL", observed.and_then(|status| status.dashboard_url.as_ref()))?,
            job_id: field("jobId", observed.and_then(|status| status.job_id.as_ref()))?,
        })
    }
}

/// What a tail task needs.
#[derive(Clone)]
pub struct Context {
    pub journaler: Journaler,
    pub dashboards: Dashboards,
    pub clock: Arc<dyn Clock>,
}

struct Tail {
    object: ObjectRef,
    target: Target,
    drain: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The tails of one operator: at most one following per RayJob, and those draining.
#[derive(Default)]
pub struct Tails {
    following: HashMap<Key, Tail>,
    draining: Vec<JoinHandle<()>>,
}

impl Tails {
    /// Follows a RayJob's Decision: starts the tail of `target` (draining one of another job or incarnation), keeps
    /// the one already following it, or drains it when there is nothing to tail any more.
    pub fn follow(&mut self, key: &Key, object: &ObjectRef, target: Option<Target>, context: &Context) {
        let unchanged = match (&target, self.following.get(key)) {
            (Some(target), Some(tail)) => tail.object.uid == object.uid && &tail.target == target,
            _ => false,
        };
        if unchanged {
            return;
        }
        if let Some(tail) = self.following.remove(key) {
            tail.drain.send_replace(true);
            self.draining.retain(|task| !task.is_finished());
            self.draining.push(tail.task);
        }
        if let Some(target) = target {
            let (drain, draining) = watch::channel(false);
            let task = tokio::spawn(follow(context.clone(), object.clone(), target.clone(), draining));
            self.following.insert(key.clone(), Tail { object: object.clone(), target, drain, task });
        }
    }

    /// Stops a RayJob's tail at once (the RayJob is gone).
    pub fn stop(&mut self, key: &Key) {
        if let Some(tail) = self.following.remove(key) {
            tail.task.abort();
        }
    }

    /// Stops every tail at once (the lead is lost, or the operator stops) and waits until they have let go of the
    /// journaler.
    pub async fn stop_all(&mut self) {
        let tasks: Vec<JoinHandle<()>> =
            self.following.drain().map(|(_, tail)| tail.task).chain(self.draining.drain(..)).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// How reading one connection ended.
enum Ended {
    /// The dashboard closed the tail: the job has ended.
    Closed,
    /// The connection broke off: connect again.
    Broken(RayError),
    /// Drained: the grace is over, or the runtime let go.
    Drained,
}

/// One tail task: connect, skip what the journal holds, journal the rest; again after a failure, while the RayJob is
/// Running.
async fn follow(context: Context, object: ObjectRef, target: Target, mut drain: watch::Receiver<bool>) {
    let Ok(mut position) = context.journaler.logged_lines(object.clone(), target.job_id.clone()).await else {
        return;
    };
    let mut delay = RETRY_FIRST;
    let mut failing = false;
    let mut deadline: Option<Instant> = None;
    loop {
        let failure = match context.dashboards.tail(&target.address, &target.job_id).await {
            Ok(stream) => {
                delay = RETRY_FIRST;
                failing = false;
                let mut reader = Reader { context: &context, object: &object, target: &target, position };
                let ended = reader.read(stream, &mut drain, &mut deadline).await;
                position = reader.position;
                match ended {
                    Ended::Closed | Ended::Drained => return,
                    Ended::Broken(error) => error,
                }
            }
            Err(RayError::Unsupported(what)) => {
                tracing::debug!(%object, job_id = %target.job_id, "{what} is not supported here: the job's output is not journaled");
                return;
            }
            Err(error) => error,
        };
        if *drain.borrow() {
            return;
        }
        if !failing {
            tracing::info!(%object, job_id = %target.job_id, error = %failure, "cannot follow the job's output; trying again");
            failing = true;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = drain.wait_for(|draining| *draining) => return,
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Reads one connection's frames into log records.
struct Reader<'a> {
    context: &'a Context,
    object: &'a ObjectRef,
    target: &'a Target,
    /// Lines of the job's output the journal holds (or has been sent).
    position: u64,
}

impl Reader<'_> {
    async fn read(
        &mut self,
        mut stream: LogStream,
        drain: &mut watch::Receiver<bool>,
        deadline: &mut Option<Instant>,
    ) -> Ended {
        // Lines of this connection so far (its backlog counts from 0), and a line not yet ended by `\n`.
        let mut seen = 0;
        let mut partial = String::new();
        loop {
            if deadline.is_none() && *drain.borrow() {
                *deadline = Some(Instant::now() + DRAIN_GRACE);
            }
            let until_deadline = async {
                match *deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let frame = tokio::select! {
                frame = stream.next() => frame,
                changed = drain.changed(), if deadline.is_none() => match changed {
                    Ok(()) => continue,
                    Err(_) => return Ended::Drained,
                },
                () = until_deadline => {
                    self.journal(&mut seen, std::mem::take(&mut partial)).await;
                    return Ended::Drained;
                }
            };
            let mut text = String::new();
            let mut ended = None;
            match frame {
                Some(Ok(frame)) => text.push_str(&frame),
                Some(Err(error)) => return Ended::Broken(error),
                None => ended = Some(Ended::Closed),
            }
            // Frames already waiting arrived together with this one.
            while ended.is_none() {
                match stream.next().now_or_never() {
                    Some(Some(Ok(frame))) => text.push_str(&frame),
                    Some(Some(Err(error))) => ended = Some(Ended::Broken(error)),
                    Some(None) => ended = Some(Ended::Closed),
                    None => break,
                }
            }
            partial.push_str(&text);
            let complete = match partial.rfind('\n') {
                Some(end) => {
                    let rest = partial.split_off(end + 1);
                    std::mem::replace(&mut partial, rest)
                }
                None => String::new(),
            };
            let last = if matches!(ended, Some(Ended::Closed)) { std::mem::take(&mut partial) } else { String::new() };
            self.journal(&mut seen, complete + &last).await;
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Journals the lines of `text` the journal does not hold yet.
    async fn journal(&mut self, seen: &mut u64, text: String) {
        let mut lines = Vec::new();
        let mut first_line = None;
        for line in text.split_terminator('\n') {
            let index = *seen;
            *seen += 1;
            if index >= self.position {
                first_line.get_or_insert(index);
                lines.push(line.strip_suffix('\r').unwrap_or(line).to_string());
            }
        }
        let Some(first_line) = first_line else { return };
        let logs = JobLogs { job_id: self.target.job_id.clone(), first_line, lines, time: Time(self.context.clock.now()) };
        self.position = logs.end();
        // The journaler gone means the operator is stopping: nothing more to journal.
        let _ = self.context.journaler.logs(self.object.clone(), logs).await;
    }
}
