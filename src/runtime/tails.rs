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
//!   doubles up to [`RETRY_MAX`]; the first failure of a run of them is logged, the rest are not.
//! - When the RayJob leaves Running its task drains: it goes on reading until the dashboard closes the tail (about
//!   3 s after the job ended) or [`DRAIN_GRACE`] has passed, so that the job's last lines — which may arrive after
//!   the step that saw the job end — are kept. It reconnects no more.
//! - The record written when the dashboard closes the tail marks the output complete. A RayJob found Complete or
//!   Failed whose job's output is not complete in the journal — the operator stopped while it drained, or was down
//!   while the job ran — has the rest fetched once per run: one connection, read as a drain (the dashboard sends
//!   the backlog of an ended job and closes). A job whose output is complete is never connected to again.
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

/// The job a tail follows: where its dashboard is, its id, and whether it has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub job_id: String,
    /// The RayJob is Complete or Failed: what the journal lacks of the output is fetched once, not followed.
    pub ended: bool,
}

impl Target {
    /// The job to tail after `decision` was taken on `input`: a RayJob left Running (or Complete or Failed: ended), in
    /// HTTPMode or SidecarMode, with a job id and a dashboard address — read off the status the Decision writes, else
    /// the one observed.
    pub fn of(input: &Input, decision: &Decision) -> Option<Target> {
        let Observation::RayJob(observation) = &input.observation else { return None };
        let job = observation.job.as_ref()?;
        let tailed = matches!(job.spec.mode(), Some(SubmissionMode::Http | SubmissionMode::Sidecar));
        let ended = [State::Complete.name(), State::Failed.name()].contains(&decision.next.as_str());
        if !tailed || !(ended || decision.next == State::Running.name()) {
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
            ended,
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
    /// The ended job (uid, job id) of each RayJob whose output was drained or fetched in this run.
    ended: HashMap<Key, (String, String)>,
}

impl Tails {
    /// Follows a RayJob's Decision: starts the tail of `target` (draining one of another job or incarnation), keeps
    /// the one already following it, or drains it when there is nothing to follow any more; for an ended job, once
    /// per run, drains the tail that followed it or else fetches what the journal lacks of its output.
    pub fn follow(&mut self, key: &Key, object: &ObjectRef, target: Option<Target>, context: &Context) {
        let same_job = |tail: &Tail, target: &Target| {
            tail.object.uid == object.uid
                && tail.target.job_id == target.job_id
                && tail.target.address == target.address
        };
        let followed = match (&target, self.following.get(key)) {
            (Some(target), Some(tail)) => same_job(tail, target),
            _ => false,
        };
        if followed && target.as_ref().is_some_and(|target| !target.ended) {
            return;
        }
        if let Some(tail) = self.following.remove(key) {
            tail.drain.send_replace(true);
            self.draining.retain(|task| !task.is_finished());
            self.draining.push(tail.task);
        }
        let Some(target) = target else { return };
        if target.ended {
            let job = (object.uid.clone(), target.job_id.clone());
            if self.ended.get(key) == Some(&job) {
                return;
            }
            self.ended.insert(key.clone(), job);
            if !followed {
                // Read as a drain from the start: one connection, no retries.
                let (_, draining) = watch::channel(true);
                self.draining.push(tokio::spawn(follow(context.clone(), object.clone(), target, draining)));
            }
            return;
        }
        let (drain, draining) = watch::channel(false);
        let task = tokio::spawn(follow(context.clone(), object.clone(), target.clone(), draining));
        self.following.insert(key.clone(), Tail { object: object.clone(), target, drain, task });
    }

    /// Stops a RayJob's tail at once (the RayJob is gone).
    pub fn stop(&mut self, key: &Key) {
        self.ended.remove(key);
        if let Some(tail) = self.following.remove(key) {
            tail.task.abort();
        }
    }

    /// Stops every tail at once (the lead is lost, or the operator stops) and waits until they have let go of the
    /// journaler.
    pub async fn stop_all(&mut self) {
        // A replica that leads again looks at every ended job again.
        self.ended.clear();
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
/// Running. Nothing to do when the journal holds the whole output.
async fn follow(context: Context, object: ObjectRef, target: Target, mut drain: watch::Receiver<bool>) {
    let Ok(logged) = context.journaler.logged_output(object.clone(), target.job_id.clone()).await else {
        return;
    };
    if logged.complete {
        return;
    }
    let mut position = logged.lines;
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
            Err(error) => error,
        };
        if *drain.borrow() {
            tracing::info!(%object, job_id = %target.job_id, error = %failure, "the rest of the job's output cannot be fetched");
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
                    self.journal(&mut seen, std::mem::take(&mut partial), false).await;
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
            let closed = matches!(ended, Some(Ended::Closed));
            let last = if closed { std::mem::take(&mut partial) } else { String::new() };
            self.journal(&mut seen, complete + &last, closed).await;
            if let Some(ended) = ended {
                return ended;
            }
        }
    }

    /// Journals the lines of `text` the journal does not hold yet; `complete`: they end the job's output, which the
    /// record says even when there are none.
    async fn journal(&mut self, seen: &mut u64, text: String, complete: bool) {
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
        let Some(first_line) = first_line.or(complete.then_some(self.position)) else { return };
        let time = Time(self.context.clock.now());
        let logs = JobLogs { job_id: self.target.job_id.clone(), first_line, lines, time, complete };
        self.position = logs.end();
        // The journaler gone means the operator is stopping: nothing more to journal.
        let _ = self.context.journaler.logs(self.object.clone(), logs).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::clock::TokioClock;
    use crate::config::OperatorConfig;
    use crate::engine::Engine;
    use crate::journal::history::history;
    use crate::journal::store::MemStore;
    use crate::journal::{Journal, Retention};
    use crate::machine::{JobObservation, MachineKind, Memory, Trigger};
    use crate::runtime::journaler::JournalTask;
    use crate::runtime::metrics::Metrics;

    /// One connection of a scripted dashboard: refused, or these frames, each after its delay, then the end.
    enum Connection {
        Refused(RayError),
        Frames(Vec<(u64, Result<&'static str, RayError>)>),
    }

    /// A dashboard whose tails follow a script, one connection per tail; past the script, nothing is there.
    struct Scripted {
        connections: Mutex<Vec<Connection>>,
        tails: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl crate::ray::Transport for Scripted {
        async fn send(&self, _: http::Request<Bytes>) -> crate::ray::Result<http::Response<Bytes>> {
            Err(RayError::Unavailable("not scripted".into()))
        }

        async fn tail(&self, path: &str) -> crate::ray::Result<LogStream> {
            self.tails.lock().unwrap().push(path.to_string());
            let mut connections = self.connections.lock().unwrap();
            let next = if connections.is_empty() {
                Connection::Refused(RayError::Unavailable("gone".into()))
            } else {
                connections.remove(0)
            };
            match next {
                Connection::Refused(error) => Err(error),
                Connection::Frames(frames) => Ok(futures::stream::iter(frames)
                    .then(|(delay, frame)| async move {
                        tokio::time::sleep(Duration::from_secs(delay)).await;
                        frame.map(str::to_string)
                    })
                    .boxed()),
            }
        }
    }

    fn object() -> ObjectRef {
        ObjectRef { kind: MachineKind::RayJob, namespace: "ns".into(), name: "job".into(), uid: "uid-1".into() }
    }

    fn key() -> Key {
        Key { kind: MachineKind::RayJob, namespace: "ns".into(), name: "job".into() }
    }

    fn target() -> Target {
        Target { address: "job-head-svc.ns.svc.cluster.local:8265".into(), job_id: "job-1".into(), ended: false }
    }

    struct Running {
        context: Context,
        task: JoinHandle<Result<Engine<MemStore>, Arc<crate::engine::EngineError>>>,
        dashboard: Arc<Scripted>,
    }

    fn start(connections: Vec<Connection>) -> Running {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at("2025-01-01T00:00:00Z".parse().unwrap()));
        let config = OperatorConfig::default();
        let engine = Engine::start(Journal::in_memory().unwrap(), &config, Time(clock.now())).unwrap();
        let retention = Retention { gone_ttl: Duration::from_secs(60), max_bytes: None };
        let (journaler, task): (Journaler, JournalTask<MemStore>) =
            Journaler::start(engine, retention, clock.clone(), Arc::new(Metrics::new()));
        let dashboard = Arc::new(Scripted { connections: Mutex::new(connections), tails: Mutex::new(Vec::new()) });
        let transport = dashboard.clone();
        let dashboards =
            Dashboards::Custom(Arc::new(move |_: &str| -> Arc<dyn crate::ray::Transport> { transport.clone() }));
        Running { context: Context { journaler, dashboards, clock }, task: tokio::spawn(task.run()), dashboard }
    }

    /// Stops the tails and the journal; the log records journaled.
    async fn records(mut tails: Tails, running: Running) -> Vec<JobLogs> {
        tails.stop_all().await;
        drop(running.context);
        let journal = running.task.await.unwrap().unwrap().into_journal();
        history(&journal, Some(&[object()])).unwrap().logs.into_iter().map(|logged| logged.logs).collect()
    }

    /// The job output journaled, one record per element.
    async fn journaled(tails: Tails, running: Running) -> Vec<(u64, Vec<String>)> {
        records(tails, running).await.into_iter().map(|logs| (logs.first_line, logs.lines)).collect()
    }

    async fn journal_lines(running: &Running, first_line: u64, text: &[&str]) {
        let time = Time(running.context.clock.now());
        let logs = JobLogs { job_id: "job-1".into(), first_line, lines: lines(text), time, complete: false };
        running.context.journaler.logs(object(), logs).await.unwrap();
    }

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| line.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn lines_are_journaled_once_across_failures_and_reconnects() {
        let running = start(vec![
            Connection::Refused(RayError::NotFound("Job job-1 does not exist".into())),
            Connection::Frames(vec![
                (1, Ok("l0\nl1\nl2\n")),
                (1, Ok("l3\npar")),
                (1, Err(RayError::Unavailable("cut".into()))),
            ]),
            Connection::Frames(vec![(1, Ok("l0\nl1\nl2\nl3\n")), (0, Ok("partial\n\nl6\n")), (1, Ok("l7"))]),
        ]);
        // What an earlier run journaled: the backlog's first two lines.
        journal_lines(&running, 0, &["l0", "l1"]).await;
        let mut tails = Tails::default();
        tails.follow(&key(), &object(), Some(target()), &running.context);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let task = tails.following.get(&key()).map(|tail| tail.task.is_finished());
        assert_eq!(task, Some(true), "the dashboard closed the tail: the job has ended");
        assert_eq!(running.dashboard.tails.lock().unwrap().len(), 3, "refused, broken off, closed");
        let dashboard = running.dashboard.clone();
        assert_eq!(
            journaled(tails, running).await,
            [
                (0, lines(&["l0", "l1"])),
                (2, lines(&["l2"])),
                (3, lines(&["l3"])),
                (4, lines(&["partial", "", "l6"])),
                (7, lines(&["l7"])),
            ],
            "the unfinished `par` of the broken connection came whole with the next one"
        );
        assert_eq!(dashboard.tails.lock().unwrap()[0], "/api/jobs/job-1/logs/tail");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tail_drains_when_the_job_leaves_running_and_stops_when_it_is_gone() {
        let running = start(vec![
            Connection::Frames(vec![(1, Ok("a\n")), (5, Ok("b\n")), (20, Ok("too late\n"))]),
            Connection::Frames(vec![(1, Ok("x\n")), (100, Ok("never\n"))]),
        ]);
        let mut tails = Tails::default();
        tails.follow(&key(), &object(), Some(target()), &running.context);
        tokio::time::sleep(Duration::from_secs(2)).await;
        tails.follow(&key(), &object(), Some(target()), &running.context);
        assert_eq!(running.dashboard.tails.lock().unwrap().len(), 1, "the same job keeps its tail");
        tails.follow(&key(), &object(), None, &running.context);
        assert!(tails.following.is_empty());
        tokio::time::sleep(DRAIN_GRACE + Duration::from_secs(1)).await;
        assert!(tails.draining.iter().all(JoinHandle::is_finished), "drained within the grace");
        let other = Target { job_id: "job-2".into(), ..target() };
        tails.follow(&key(), &object(), Some(other), &running.context);
        tokio::time::sleep(Duration::from_secs(2)).await;
        tails.stop(&key());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let journal = journaled(tails, running).await;
        assert_eq!(journal, [(0, lines(&["a"])), (1, lines(&["b"])), (0, lines(&["x"]))]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_jobs_missing_output_is_fetched_once_and_complete_output_never_again() {
        let running = start(vec![Connection::Frames(vec![(1, Ok("l0\nl1\n")), (0, Ok("l2\n"))])]);
        // An operator stopped while it drained: the first line only.
        journal_lines(&running, 0, &["l0"]).await;
        let ended = Target { ended: true, ..target() };
        let mut tails = Tails::default();
        tails.follow(&key(), &object(), Some(ended.clone()), &running.context);
        tokio::time::sleep(Duration::from_secs(10)).await;
        tails.follow(&key(), &object(), Some(ended.clone()), &running.context);
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The lead lost and regained: every ended job is looked at again, and this one's output is complete.
        tails.stop_all().await;
        tails.follow(&key(), &object(), Some(ended), &running.context);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(running.dashboard.tails.lock().unwrap().len(), 1, "one connection in all");
        let found: Vec<(u64, Vec<String>, bool)> =
            records(tails, running).await.into_iter().map(|l| (l.first_line, l.lines, l.complete)).collect();
        assert_eq!(found, [(0, lines(&["l0"]), false), (1, lines(&["l1", "l2"]), true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_job_whose_dashboard_is_gone_is_tried_once() {
        let running = start(Vec::new());
        let mut tails = Tails::default();
        tails.follow(&key(), &object(), Some(Target { ended: true, ..target() }), &running.context);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(running.dashboard.tails.lock().unwrap().len(), 1);
        assert_eq!(journaled(tails, running).await, []);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_tail_closed_by_the_dashboard_completes_the_output() {
        let running = start(vec![Connection::Frames(vec![(1, Ok("a\n")), (4, Ok("b\n"))])]);
        let mut tails = Tails::default();
        tails.follow(&key(), &object(), Some(target()), &running.context);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The job ended: the RayJob is Complete; its tail drains to the dashboard's close, and is not fetched again.
        tails.follow(&key(), &object(), Some(Target { ended: true, ..target() }), &running.context);
        tokio::time::sleep(Duration::from_secs(10)).await;
        tails.follow(&key(), &object(), Some(Target { ended: true, ..target() }), &running.context);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(running.dashboard.tails.lock().unwrap().len(), 1);
        let found: Vec<(Vec<String>, bool)> =
            records(tails, running).await.into_iter().map(|l| (l.lines, l.complete)).collect();
        assert_eq!(found, [(lines(&["a"]), false), (lines(&["b"]), true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_up_to_the_maximum() {
        let running = start(Vec::new());
        let mut tails = Tails::default();
        tails.follow(&key(), &object(), Some(target()), &running.context);
        tokio::time::sleep(Duration::from_secs(2 + 4 + 8 + 16 + 30 + 30) + Duration::from_millis(500)).await;
        assert_eq!(running.dashboard.tails.lock().unwrap().len(), 7, "at 0, 2, 6, 14, 30, 60 and 90 s");
        journaled(tails, running).await;
    }

    fn job_step(
        mode: &str,
        next: &str,
        observed: serde_json::Value,
        written: Option<serde_json::Value>,
    ) -> (Input, Decision) {
        let job: crate::api::RayJob = serde_json::from_value(json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "job", "namespace": "ns", "uid": "uid-1"},
            "spec": {"submissionMode": mode, "entrypoint": "echo hi"},
            "status": observed,
        }))
        .unwrap();
        let input = Input {
            object: object(),
            trigger: Trigger::Resync,
            now: Time(jiff::Timestamp::UNIX_EPOCH),
            observation: Observation::RayJob(JobObservation { job: Some(job), ..Default::default() }),
        };
        let decision = Decision {
            next: next.into(),
            commands: written.into_iter().map(|status| Command::WriteStatus { status }).collect(),
            reason: "Reconciled".into(),
            explanation: String::new(),
            memory: Memory::default(),
        };
        (input, decision)
    }

    #[rstest]
    #[case::http_running("HTTPMode", "Running", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, Some(("d:8265", "j", false)))]
    #[case::sidecar_running("SidecarMode", "Running", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, Some(("d:8265", "j", false)))]
    #[case::k8s_job_mode("K8sJobMode", "Running", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, None)]
    #[case::interactive_mode("InteractiveMode", "Running", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, None)]
    #[case::complete("HTTPMode", "Complete", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, Some(("d:8265", "j", true)))]
    #[case::failed("SidecarMode", "Failed", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, Some(("d:8265", "j", true)))]
    #[case::initializing("HTTPMode", "Initializing", json!({"jobId": "j", "dashboardURL": "d:8265"}), None, None)]
    #[case::no_job_id("HTTPMode", "Running", json!({"dashboardURL": "d:8265"}), None, None)]
    #[case::empty_dashboard("HTTPMode", "Running", json!({"jobId": "j", "dashboardURL": ""}), None, None)]
    #[case::written_by_the_decision("HTTPMode", "Running", json!({}), Some(json!({"jobId": "j2", "dashboardURL": "e:8265"})), Some(("e:8265", "j2", false)))]
    fn running_and_ended_http_and_sidecar_jobs_are_tailed(
        #[case] mode: &str,
        #[case] next: &str,
        #[case] observed: serde_json::Value,
        #[case] written: Option<serde_json::Value>,
        #[case] expected: Option<(&str, &str, bool)>,
    ) {
        let (input, decision) = job_step(mode, next, observed, written);
        let expected =
            expected.map(|(address, job_id, ended)| Target { address: address.into(), job_id: job_id.into(), ended });
        assert_eq!(Target::of(&input, &decision), expected);
    }
}
