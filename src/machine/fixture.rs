//! Scenario fixtures (`fixtures/<machine>/*.yaml`) and their runner: a pure, in-memory drive of a machine.
//!
//! A fixture holds Kubernetes objects and steps. Each step changes the objects (create, merge-patch, delete, or
//! set Pod status), moves the clock, names the trigger (a watch event, a timer, a resync, or the outcome of the
//! command that failed in the step before), and states what the machine must decide: the next state, the reason,
//! the commands (by `Command::summary`), and optionally Events, status fields and memory. The runner builds each
//! Input from the objects with the `observe` views, steps the machine, compares, and then executes the Decision's
//! commands on its objects as a well-behaved API server would (a step may make one command fail, or skip the
//! execution). A step marked `stale` observes a lagging cache: the objects as they were before the previous step's
//! commands ran (or as the previous stale step saw them), with this step's changes and the objects it `catchUp`s.
//!
//! Every Decision must also be a transition of the machine's definition (`state-machines/`) issuing only commands
//! it lists. Each fixture starts from empty memory, and its objects get uids derived from the fixture's name, so
//! fixtures that reuse names never share an object.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::fsm::{self, Definition};
use super::observe::{
    ClusterObservation, DashboardAnswer, DashboardJob, JobObservation, JobView, OwnedObject, PodView, ServiceView,
};
use super::{
    Command, Decision, Input, Machine, MachineKind, Memory, ObjectRef, Observation, Outcome, Trigger, WatchEvent,
};
use crate::api::constants::{NODE_TYPE_HEAD, RAY_CLUSTER_LABEL, RAY_NODE_TYPE_LABEL};
use crate::api::document::decode_as;
use crate::api::{RayCluster, RayJob};
use crate::config::{FeatureGates, OperatorConfig};

/// Kinds whose existence alone the RayCluster machine reads.
const OWNED_KINDS: [&str; 4] = ["ServiceAccount", "Role", "RoleBinding", "Ingress"];
const DEFAULT_NAMESPACE: &str = "default";
const DEFAULT_START: &str = "2025-01-01T00:00:00Z";

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// The file's stem; it seeds the uids.
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub config: FixtureConfig,
    /// The clock at the first step (RFC 3339), 2025-01-01T00:00:00Z unless given.
    #[serde(default)]
    pub start: Option<String>,
    /// The objects before the first step; the first RayCluster is the machine's object.
    pub objects: Vec<Value>,
    pub steps: Vec<Step>,
}

/// The operator's env knobs and feature gates for this fixture.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FixtureConfig {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub feature_gates: String,
}

impl FixtureConfig {
    pub fn operator_config(&self) -> Result<OperatorConfig, FixtureError> {
        let feature_gates = FeatureGates::parse(&self.feature_gates).map_err(|e| FixtureError(e.to_string()))?;
        Ok(OperatorConfig { feature_gates, ..OperatorConfig::from_lookup(|name| self.env.get(name).cloned()) })
    }
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step shows, for the reader.
    #[serde(default)]
    pub note: String,
    /// How far the clock moves before the step: `2s`, `5m`, `1h`.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub changes: Vec<Change>,
    pub trigger: TriggerSpec,
    /// Observe a lagging cache: it misses what the previous step's commands did, and stays behind over consecutive
    /// stale steps.
    #[serde(default)]
    pub stale: bool,
    /// On a stale step, the objects (`KIND/NAME`) the lagging cache has caught up on.
    #[serde(default, rename = "catchUp")]
    pub catch_up: Vec<String>,
    /// Whether the runner executes the Decision's commands after the step.
    #[serde(default = "yes")]
    pub execute: bool,
    /// Make one of the Decision's commands fail when it is executed.
    #[serde(default)]
    pub fail: Option<FailSpec>,
    /// What the Ray dashboard answers about the RayJob's `status.jobId` from this step on.
    #[serde(default)]
    pub dashboard: Option<DashboardSpec>,
    pub expect: Expect,
}

/// A dashboard answer as fixtures write it: `notFound`, `{unreachable: MESSAGE}` or `{status: S, message: M}`.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum DashboardSpec {
    Word(String),
    Unreachable {
        unreachable: String,
    },
    Job {
        status: String,
        #[serde(default)]
        message: String,
    },
}

impl DashboardSpec {
    fn answer(&self) -> Result<DashboardAnswer, String> {
        match self {
            DashboardSpec::Word(word) if word == "notFound" => Ok(DashboardAnswer::NotFound),
            DashboardSpec::Word(word) => Err(format!("unknown dashboard answer {word}")),
            DashboardSpec::Unreachable { unreachable } => {
                Ok(DashboardAnswer::Unreachable { message: unreachable.clone() })
            }
            DashboardSpec::Job { status, message } => Ok(DashboardAnswer::Job(DashboardJob {
                status: status.clone(),
                message: message.clone(),
                start_time: None,
                end_time: None,
            })),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TriggerSpec {
    Resync,
    /// The failure of the command the previous step's `fail` made fail.
    Outcome,
    /// `KIND/NAME`: an Applied event, or Deleted when the object is gone.
    Watch(String),
    Timer(String),
}

/// One change to the objects before a step. Objects are chosen by `name`, or by a label `select`or (`k=v,k=v`;
/// all of the kind when empty) of which the first `count` by name are taken.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Change {
    Create(Value),
    Patch {
        kind: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        select: Option<String>,
        #[serde(default)]
        count: Option<usize>,
        /// A JSON merge patch.
        merge: Value,
    },
    /// A RayCluster with finalizers, or any object when `graceful`, gets a `deletionTimestamp`; others go at once.
    Delete {
        kind: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        select: Option<String>,
        #[serde(default)]
        count: Option<usize>,
        #[serde(default)]
        graceful: bool,
    },
    /// Sets the status of Pods as a kubelet would.
    Pods {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        select: Option<String>,
        #[serde(default)]
        count: Option<usize>,
        #[serde(default)]
        phase: Option<String>,
        #[serde(default)]
        ready: Option<bool>,
        /// The Ray container (`containers[0]`) has terminated.
        #[serde(default)]
        terminated: Option<bool>,
        #[serde(default)]
        ip: Option<String>,
    },
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    /// The summary of the command that fails; the ones after it do not run.
    pub command: String,
    pub message: String,
    /// Which of the commands with that summary fails (1 = the first).
    #[serde(default)]
    pub occurrence: Option<usize>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The state before the step ([`super::state_before`]), when the fixture checks it.
    #[serde(default)]
    pub from: Option<String>,
    pub next: String,
    pub reason: String,
    /// Every command's summary, in order.
    pub commands: Vec<String>,
    /// Events that must be among the Decision's, each as `KIND REASON: MESSAGE`.
    #[serde(default)]
    pub events: Vec<String>,
    /// Fields of the status after the step (the one written, else the one observed); `conditions` is a map by type,
    /// and `null` means absent.
    #[serde(default)]
    pub status: Option<Value>,
    /// Fields of the memory the Decision carries.
    #[serde(default)]
    pub memory: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FixtureError(pub String);

impl Fixture {
    /// The machine this fixture drives: the kind of its first Ray object.
    pub fn machine_kind(&self) -> Result<MachineKind, FixtureError> {
        self.objects
            .iter()
            .find_map(|object| match object["kind"].as_str() {
                Some("RayCluster") => Some(MachineKind::RayCluster),
                Some("RayJob") => Some(MachineKind::RayJob),
                Some("RayService") => Some(MachineKind::RayService),
                _ => None,
            })
            .ok_or_else(|| FixtureError("no RayCluster, RayJob or RayService among the objects".to_string()))
    }

    /// The clock at the first step.
    pub fn start_time(&self) -> Result<Time, FixtureError> {
        let start = self.start.as_deref().unwrap_or(DEFAULT_START);
        start.parse::<jiff::Timestamp>().map(Time).map_err(|e| FixtureError(format!("start: {start}: {e}")))
    }

    pub fn parse(text: &str) -> Result<Fixture, FixtureError> {
        serde_saphyr::from_str(text).map_err(|e| FixtureError(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|e| FixtureError(format!("{}: {e}", path.display())))?;
        Fixture::parse(&text).map_err(|e| FixtureError(format!("{}: {e}", path.display())))
    }
}

/// One step as it ran: the memory it started from, the Input, the Decision, and the index of the definition's
/// transition it followed (None when it follows none, which is a mismatch).
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub memory: Memory,
    pub input: Input,
    pub decision: Decision,
    pub transition: Option<usize>,
}

/// The first difference between a fixture and what the machine did; steps count from 1 (0: before any step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub step: usize,
    pub what: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {}: expected {}, got {}", self.step, self.what, self.expected, self.actual)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub fixture: String,
    /// Every step that ran, the mismatching one included.
    pub steps: Vec<StepRecord>,
    pub mismatch: Option<Mismatch>,
}

/// Drives `machine` through `fixture` from empty memory; stops at the first mismatch.
pub fn run(machine: &dyn Machine, fixture: &Fixture) -> Report {
    run_with(machine.kind(), &mut |memory, input| Ok(machine.step(memory, input)), fixture)
}

/// Steps one machine's object, from memory and an Input to a Decision: the machine itself, or the engine that
/// journals around it.
pub type Stepper<'a> = dyn FnMut(&Memory, &Input) -> Result<Decision, String> + 'a;

/// [`run`] with the steps taken by `step` (the engine's path in `kuberay fixture run`).
pub fn run_with(kind: MachineKind, step: &mut Stepper<'_>, fixture: &Fixture) -> Report {
    let mut report = Report { fixture: fixture.name.clone(), steps: Vec::new(), mismatch: None };
    if let Err(mismatch) = drive(kind, step, fixture, &mut report.steps) {
        report.mismatch = Some(mismatch);
    }
    report
}

fn mismatch(step: usize, what: &str, expected: impl fmt::Display, actual: impl fmt::Display) -> Mismatch {
    Mismatch { step, what: what.to_string(), expected: expected.to_string(), actual: actual.to_string() }
}

fn drive(
    kind: MachineKind,
    step_machine: &mut Stepper<'_>,
    fixture: &Fixture,
    records: &mut Vec<StepRecord>,
) -> Result<(), Mismatch> {
    let setup = |what: &str, error: String| mismatch(0, what, "a usable fixture", error);
    let definition = fsm::definition_of(kind).map_err(|e| setup("definition", e.to_string()))?;
    let mut now = fixture.start_time().map_err(|e| setup("start", e.0))?.0;
    let mut store = Store::new(fixture).map_err(|e| setup("objects", e))?;
    let object = store.machine_object(kind).map_err(|e| setup("objects", e))?;
    let mut memory = Memory::default();
    let mut before_commands: Option<Store> = None;
    let mut lagging: Option<Store> = None;
    let mut failed: Option<(String, Outcome)> = None;
    let mut dashboard: Option<DashboardAnswer> = None;
    for (index, step) in fixture.steps.iter().enumerate() {
        let number = index + 1;
        if let Some(spec) = &step.dashboard {
            dashboard =
                Some(spec.answer().map_err(|e| mismatch(number, "dashboard", "notFound, unreachable or a status", e))?);
        }
        if let Some(after) = &step.after {
            let duration =
                parse_duration(after).ok_or_else(|| mismatch(number, "after", "a duration like 2s", after))?;
            now = now.checked_add(duration).map_err(|e| mismatch(number, "after", "a time in range", e))?;
        }
        lagging = if step.stale { lagging.or_else(|| before_commands.take()) } else { None };
        for change in &step.changes {
            store.apply(change, now).map_err(|e| mismatch(number, "change", "a change that applies", e))?;
            if let Some(lagging) = lagging.as_mut() {
                // What the lagging cache does not show yet cannot be changed in it.
                let _ = lagging.apply(change, now);
            }
        }
        if let Some(lagging) = lagging.as_mut() {
            for target in &step.catch_up {
                let (kind, name) =
                    target.split_once('/').ok_or_else(|| mismatch(number, "catchUp", "KIND/NAME", target))?;
                lagging.catch_up(&store, kind, name);
            }
        }
        let trigger = match &step.trigger {
            TriggerSpec::Resync => Trigger::Resync,
            TriggerSpec::Timer(name) => Trigger::Timer { name: name.clone() },
            TriggerSpec::Outcome => match failed.take() {
                Some((command, outcome)) => Trigger::Outcome { command, outcome },
                None => return Err(mismatch(number, "trigger", "a command that failed in the step before", "none")),
            },
            TriggerSpec::Watch(target) => {
                let (kind, name) =
                    target.split_once('/').ok_or_else(|| mismatch(number, "trigger", "watch: KIND/NAME", target))?;
                let event = if store.get(kind, name).is_some() { WatchEvent::Applied } else { WatchEvent::Deleted };
                Trigger::Watch { kind: kind.to_string(), name: name.to_string(), event }
            }
        };
        let seen = lagging.as_ref().unwrap_or(&store);
        let observation = seen
            .observe(&object, dashboard.as_ref())
            .map_err(|e| mismatch(number, "observation", "decodable objects", e))?;
        let input = Input { object: object.clone(), trigger, now: Time(now), observation };
        let decision = step_machine(&memory, &input).map_err(|e| mismatch(number, "step", "a journaled step", e))?;
        let from = super::state_before(&memory, &input);
        let transition = definition.transition(&from, &decision.next, &decision.reason);
        let record = StepRecord { memory: memory.clone(), input, decision, transition };
        let checked = check(number, &step.expect, &definition, &from, &record);
        let decision = record.decision.clone();
        records.push(record);
        checked?;
        before_commands = Some(store.clone());
        failed = if step.execute { store.execute(&decision.commands, step.fail.as_ref(), now) } else { None };
        memory = decision.memory;
    }
    Ok(())
}

fn check(
    number: usize,
    expect: &Expect,
    definition: &Definition,
    from: &str,
    record: &StepRecord,
) -> Result<(), Mismatch> {
    let decision = &record.decision;
    let transition = record.transition.ok_or_else(|| {
        let actual = format!("{from} -> {} {}", decision.next, decision.reason);
        mismatch(number, "transition", format!("one of state-machines/{}.yaml", definition.name), actual)
    })?;
    if let Some(expected) = expect.from.as_deref().filter(|expected| *expected != from) {
        return Err(mismatch(number, "from", expected, from));
    }
    let summaries: Vec<String> = decision.commands.iter().map(Command::summary).collect();
    let allowed = &definition.transitions[transition];
    if let Some(summary) = summaries.iter().find(|summary| !allowed.allows_command(summary)) {
        return Err(mismatch(number, "command", format!("one of {:?}", allowed.commands), summary));
    }
    if decision.next != expect.next {
        return Err(mismatch(number, "next", &expect.next, &decision.next));
    }
    if decision.reason != expect.reason {
        return Err(mismatch(number, "reason", &expect.reason, &decision.reason));
    }
    if summaries != expect.commands {
        return Err(mismatch(number, "commands", format!("{:?}", expect.commands), format!("{summaries:?}")));
    }
    let events: Vec<String> = decision
        .commands
        .iter()
        .filter_map(|command| match command {
            Command::RecordEvent { kind, reason, message } => Some(format!("{kind:?} {reason}: {message}")),
            _ => None,
        })
        .collect();
    if let Some(missing) = expect.events.iter().find(|event| !events.contains(event)) {
        return Err(mismatch(number, "event", missing, format!("{events:?}")));
    }
    if let Some(expected) = &expect.status {
        let written = decision.commands.iter().rev().find_map(|command| match command {
            Command::WriteStatus { status } => Some(status.clone()),
            _ => None,
        });
        let observed = || match &record.input.observation {
            Observation::RayCluster(observation) => observation
                .cluster
                .as_ref()
                .and_then(|cluster| serde_json::to_value(&cluster.status).ok())
                .unwrap_or(Value::Null),
            Observation::RayJob(observation) => {
                observation.job.as_ref().and_then(|job| serde_json::to_value(&job.status).ok()).unwrap_or(Value::Null)
            }
        };
        let actual = conditions_by_type(written.unwrap_or_else(observed));
        subset(expected, &actual, "status")
            .map_err(|(path, expected, actual)| mismatch(number, &path, expected, actual))?;
    }
    if let Some(expected) = &expect.memory {
        let actual = serde_json::to_value(&decision.memory).unwrap_or(Value::Null);
        subset(expected, &actual, "memory")
            .map_err(|(path, expected, actual)| mismatch(number, &path, expected, actual))?;
    }
    Ok(())
}

/// `status.conditions` as a map by type, as fixtures state them.
fn conditions_by_type(mut status: Value) -> Value {
    if let Some(conditions) = status.get("conditions").and_then(Value::as_array).cloned() {
        let by_type: serde_json::Map<String, Value> = conditions
            .into_iter()
            .filter_map(|mut condition| {
                let kind = condition.as_object_mut()?.remove("type")?;
                Some((kind.as_str()?.to_string(), condition))
            })
            .collect();
        status["conditions"] = Value::Object(by_type);
    }
    status
}

/// Whether every field of `expected` is in `actual` with the same value (`null`: absent); the first difference as
/// (path, expected, actual).
fn subset(expected: &Value, actual: &Value, path: &str) -> Result<(), (String, String, String)> {
    match (expected, actual) {
        (Value::Object(fields), _) => fields.iter().try_for_each(|(key, value)| {
            let inner = actual.get(key).unwrap_or(&Value::Null);
            subset(value, inner, &format!("{path}.{key}"))
        }),
        (Value::Array(items), Value::Array(actual_items)) if items.len() == actual_items.len() => items
            .iter()
            .zip(actual_items)
            .enumerate()
            .try_for_each(|(index, (item, actual_item))| subset(item, actual_item, &format!("{path}[{index}]"))),
        _ if expected == actual => Ok(()),
        _ => Err((path.to_string(), expected.to_string(), actual.to_string())),
    }
}

/// `2s`, `90s`, `5m`, `1h`.
fn parse_duration(text: &str) -> Option<jiff::SignedDuration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let number = number.parse::<i64>().ok()?;
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        _ => return None,
    };
    Some(jiff::SignedDuration::from_secs(seconds))
}

/// A deterministic uid in the usual 8-4-4-4-12 form.
fn derived_uid(fixture: &str, kind: &str, name: &str) -> String {
    let hex: String =
        Sha1::digest(format!("{fixture}/{kind}/{name}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The fixture's objects, by kind and name, in one namespace: what the API server holds.
#[derive(Clone, Debug)]
struct Store {
    fixture: String,
    namespace: String,
    /// The kind and name of the machine's own object, which finalizer and status commands address.
    own: (String, String),
    objects: BTreeMap<(String, String), Value>,
    /// How many objects were created with `generateName`, to name the next one.
    generated: usize,
}

impl Store {
    fn new(fixture: &Fixture) -> Result<Store, String> {
        let namespace = fixture
            .objects
            .iter()
            .find_map(|object| object["metadata"]["namespace"].as_str())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let kind = fixture.machine_kind().map_err(|e| e.0)?.resource_kind().to_string();
        let name = fixture
            .objects
            .iter()
            .find(|object| object["kind"].as_str() == Some(kind.as_str()))
            .and_then(|object| object["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string();
        let mut store = Store {
            fixture: fixture.name.clone(),
            namespace,
            own: (kind, name),
            objects: BTreeMap::new(),
            generated: 0,
        };
        for object in &fixture.objects {
            store.insert(object.clone(), None)?;
        }
        Ok(store)
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.to_string(), name.to_string()))
    }

    /// Takes the object as `truth` holds it (or its absence).
    fn catch_up(&mut self, truth: &Store, kind: &str, name: &str) {
        let key = (kind.to_string(), name.to_string());
        match truth.objects.get(&key) {
            Some(object) => self.objects.insert(key, object.clone()),
            None => self.objects.remove(&key),
        };
    }

    /// Stores an object, naming it from `generateName` and giving it a uid, a namespace and, for a Service that
    /// needs one, a cluster IP. Err when the name is taken.
    fn insert(&mut self, mut object: Value, now: Option<jiff::Timestamp>) -> Result<String, String> {
        let kind = object["kind"].as_str().ok_or("an object without kind")?.to_string();
        let name = match object["metadata"]["name"].as_str() {
            Some(name) => name.to_string(),
            None => {
                let prefix = object["metadata"]["generateName"].as_str().ok_or("an object without a name")?;
                self.generated += 1;
                format!("{prefix}{:05}", self.generated)
            }
        };
        if self.get(&kind, &name).is_some() {
            return Err(format!("{kind} {name} already exists"));
        }
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(name);
        metadata["namespace"] = json!(self.namespace);
        if metadata["uid"].is_null() {
            metadata["uid"] = json!(derived_uid(&self.fixture, &kind, &name));
        }
        if let Some(now) = now {
            metadata["creationTimestamp"] = serde_json::to_value(Time(now)).unwrap_or(Value::Null);
        }
        if kind == "Service" {
            let count = self.objects.keys().filter(|(k, _)| k == "Service").count();
            default_service_fields(&mut object, count);
        }
        self.objects.insert((kind, name.clone()), object);
        Ok(name)
    }

    /// The names of the objects of `kind` chosen by `name` or by `select`/`count`.
    fn chosen(&self, kind: &str, name: Option<&str>, select: Option<&str>, count: Option<usize>) -> Vec<String> {
        if let Some(name) = name {
            return self.get(kind, name).map(|_| vec![name.to_string()]).unwrap_or_default();
        }
        let selector: Vec<(&str, &str)> =
            select.unwrap_or_default().split(',').filter(|s| !s.is_empty()).filter_map(|s| s.split_once('=')).collect();
        self.objects
            .iter()
            .filter(|((k, _), object)| {
                k == kind
                    && selector.iter().all(|(key, value)| object["metadata"]["labels"][*key].as_str() == Some(*value))
            })
            .map(|((_, name), _)| name.clone())
            .take(count.unwrap_or(usize::MAX))
            .collect()
    }

    fn apply(&mut self, change: &Change, now: jiff::Timestamp) -> Result<(), String> {
        match change {
            Change::Create(object) => self.insert(object.clone(), Some(now)).map(|_| ()),
            Change::Patch { kind, name, select, count, merge } => {
                let chosen = self.chosen(kind, name.as_deref(), select.as_deref(), *count);
                if chosen.is_empty() {
                    return Err(format!("no {kind} to patch"));
                }
                for name in chosen {
                    if let Some(object) = self.objects.get_mut(&(kind.clone(), name)) {
                        merge_patch(object, merge);
                    }
                }
                Ok(())
            }
            Change::Delete { kind, name, select, count, graceful } => {
                let chosen = self.chosen(kind, name.as_deref(), select.as_deref(), *count);
                if chosen.is_empty() {
                    return Err(format!("no {kind} to delete"));
                }
                for name in chosen {
                    self.delete(kind, &name, *graceful, now);
                }
                Ok(())
            }
            Change::Pods { name, select, count, phase, ready, terminated, ip } => {
                let chosen = self.chosen("Pod", name.as_deref(), select.as_deref(), *count);
                if chosen.is_empty() {
                    return Err(format!("no Pod matches {select:?}"));
                }
                for name in chosen {
                    let Some(pod) = self.objects.get_mut(&("Pod".to_string(), name)) else { continue };
                    if let Some(phase) = phase {
                        pod["status"]["phase"] = json!(phase);
                    }
                    if let Some(ready) = ready {
                        let status = if *ready { "True" } else { "False" };
                        pod["status"]["conditions"] = json!([{"type": "Ready", "status": status}]);
                    }
                    if let Some(terminated) = terminated {
                        let container = pod["spec"]["containers"][0]["name"].clone();
                        let state =
                            if *terminated { json!({"terminated": {"exitCode": 1}}) } else { json!({"running": {}}) };
                        pod["status"]["containerStatuses"] = json!([{"name": container, "state": state}]);
                    }
                    if let Some(ip) = ip {
                        pod["status"]["podIP"] = json!(ip);
                    }
                }
                Ok(())
            }
        }
    }

    /// A RayCluster with finalizers, or any object deleted gracefully, is marked; everything else goes.
    fn delete(&mut self, kind: &str, name: &str, graceful: bool, now: jiff::Timestamp) {
        let key = (kind.to_string(), name.to_string());
        let Some(object) = self.objects.get_mut(&key) else { return };
        let finalized = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if graceful || finalized {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = serde_json::to_value(Time(now)).unwrap_or(Value::Null);
            }
        } else {
            self.objects.remove(&key);
        }
    }

    /// Executes commands in order as the executor does: it stops at the first failure (the `fail`ed command, or a
    /// uid precondition that does not hold) and returns it; AlreadyExists and NotFound count as success.
    fn execute(
        &mut self,
        commands: &[Command],
        fail: Option<&FailSpec>,
        now: jiff::Timestamp,
    ) -> Option<(String, Outcome)> {
        let mut occurrences = 0;
        for command in commands {
            let summary = command.summary();
            if let Some(fail) = fail.filter(|fail| fail.command == summary) {
                occurrences += 1;
                if occurrences == fail.occurrence.unwrap_or(1) {
                    return Some((summary, Outcome::Failed { message: fail.message.clone() }));
                }
            }
            if let Err(outcome) = self.execute_one(command, now) {
                return Some((summary, outcome));
            }
        }
        None
    }

    fn execute_one(&mut self, command: &Command, now: jiff::Timestamp) -> Result<(), Outcome> {
        match command {
            Command::Create { object } => {
                // AlreadyExists is success: commands are idempotent.
                let _ = self.insert(object.clone(), Some(now));
            }
            Command::Delete { target, uid } => {
                if let Some(object) = self.get(&target.kind, &target.name) {
                    let actual = object["metadata"]["uid"].as_str().unwrap_or_default();
                    if uid.as_deref().is_some_and(|uid| uid != actual) {
                        return Err(Outcome::Failed {
                            message: format!(
                                "Precondition failed: UID in precondition: {}, UID in object meta: {actual}",
                                uid.as_deref().unwrap_or_default()
                            ),
                        });
                    }
                    self.delete(&target.kind, &target.name, false, now);
                }
            }
            Command::DeleteCollection { kind, labels, .. } => {
                let select: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for name in self.chosen(kind, None, Some(&select.join(",")), None) {
                    self.delete(kind, &name, false, now);
                }
            }
            Command::Patch { target, patch, .. } => {
                if let Some(object) = self.objects.get_mut(&(target.kind.clone(), target.name.clone())) {
                    merge_patch(object, patch);
                }
            }
            Command::AddFinalizer { finalizer } | Command::RemoveFinalizer { finalizer } => {
                let adding = matches!(command, Command::AddFinalizer { .. });
                let key = self.own.clone();
                let Some(cluster) = self.objects.get_mut(&key) else { return Err(Outcome::NotFound) };
                let mut finalizers: Vec<Value> =
                    cluster["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
                finalizers.retain(|f| f.as_str() != Some(finalizer.as_str()));
                if adding {
                    finalizers.push(json!(finalizer));
                }
                let gone = finalizers.is_empty() && !cluster["metadata"]["deletionTimestamp"].is_null();
                cluster["metadata"]["finalizers"] = json!(finalizers);
                if gone {
                    self.objects.remove(&key);
                }
            }
            Command::WriteStatus { status } => match self.objects.get_mut(&self.own) {
                Some(own) => own["status"] = status.clone(),
                None => return Err(Outcome::NotFound),
            },
            // The dashboard is not part of the store: a fixture states its answers.
            Command::RecordEvent { .. }
            | Command::RequeueAfter { .. }
            | Command::SubmitJob { .. }
            | Command::StopJob { .. } => {}
        }
        Ok(())
    }

    /// The machine's object: the first Ray object of its kind.
    fn machine_object(&self, kind: MachineKind) -> Result<ObjectRef, String> {
        let wanted = match kind {
            MachineKind::RayCluster => "RayCluster",
            MachineKind::RayJob => "RayJob",
            MachineKind::RayService => "RayService",
        };
        let ((_, name), object) =
            self.objects.iter().find(|((k, _), _)| k == wanted).ok_or(format!("no {wanted} among the objects"))?;
        Ok(ObjectRef {
            kind,
            namespace: self.namespace.clone(),
            name: name.clone(),
            uid: object["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// What the runtime would show the machine of `object`: its caches, and for a RayJob the dashboard's answer.
    fn observe(&self, object: &ObjectRef, dashboard: Option<&DashboardAnswer>) -> Result<Observation, String> {
        if object.kind == MachineKind::RayJob {
            return self.observe_job(object, dashboard);
        }
        let decode_error = |kind: &str, name: &str, e: String| format!("{kind} {name}: {e}");
        let cluster = match self.get("RayCluster", &object.name) {
            Some(value) => Some(
                decode_as::<RayCluster>(value).map_err(|e| decode_error("RayCluster", &object.name, e.to_string()))?,
            ),
            None => None,
        };
        let of_cluster = |value: &Value| value["metadata"]["labels"][RAY_CLUSTER_LABEL].as_str() == Some(&object.name);
        let owned_by_cluster = |value: &Value| {
            value["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|owners| owners.iter().any(|owner| owner["uid"].as_str() == Some(&object.uid)))
        };
        let mut observation = ClusterObservation { cluster, ..ClusterObservation::default() };
        for ((kind, name), value) in &self.objects {
            match kind.as_str() {
                "Pod" if of_cluster(value) => {
                    let pod: Pod =
                        serde_json::from_value(value.clone()).map_err(|e| decode_error(kind, name, e.to_string()))?;
                    observation.pods.push(PodView::of(&pod));
                }
                "Service" if of_cluster(value) || owned_by_cluster(value) => {
                    let service: Service =
                        serde_json::from_value(value.clone()).map_err(|e| decode_error(kind, name, e.to_string()))?;
                    observation.services.push(ServiceView::of(&service));
                }
                "Job" if of_cluster(value) => {
                    let job: Job =
                        serde_json::from_value(value.clone()).map_err(|e| decode_error(kind, name, e.to_string()))?;
                    observation.jobs.push(JobView::of(&job));
                }
                kind if OWNED_KINDS.contains(&kind) => {
                    observation.owned.push(OwnedObject { kind: kind.to_string(), name: name.clone() })
                }
                _ => {}
            }
        }
        Ok(Observation::RayCluster(observation))
    }
}

impl Store {
    fn observe_job(&self, object: &ObjectRef, dashboard: Option<&DashboardAnswer>) -> Result<Observation, String> {
        let decode_error = |kind: &str, name: &str, e: String| format!("{kind} {name}: {e}");
        let job = match self.get("RayJob", &object.name) {
            Some(value) => {
                Some(decode_as::<RayJob>(value).map_err(|e| decode_error("RayJob", &object.name, e.to_string()))?)
            }
            None => None,
        };
        let cluster_name = job
            .as_ref()
            .and_then(|job| job.status.as_ref())
            .and_then(|s| s.ray_cluster_name.clone())
            .unwrap_or_default();
        let cluster = match self.get("RayCluster", &cluster_name) {
            Some(value) => Some(
                decode_as::<RayCluster>(value).map_err(|e| decode_error("RayCluster", &cluster_name, e.to_string()))?,
            ),
            None => None,
        };
        let head_service = self
            .objects
            .iter()
            .find(|((kind, _), value)| {
                let labels = &value["metadata"]["labels"];
                kind == "Service"
                    && !cluster_name.is_empty()
                    && labels[RAY_CLUSTER_LABEL].as_str() == Some(cluster_name.as_str())
                    && labels[RAY_NODE_TYPE_LABEL].as_str() == Some(NODE_TYPE_HEAD)
            })
            .map(|((kind, name), value)| {
                serde_json::from_value::<Service>(value.clone())
                    .map(|service| ServiceView::of(&service))
                    .map_err(|e| decode_error(kind, name, e.to_string()))
            })
            .transpose()?;
        let submitter = self
            .get("Job", &object.name)
            .map(|value| {
                serde_json::from_value::<Job>(value.clone())
                    .map(|job| JobView::of(&job))
                    .map_err(|e| decode_error("Job", &object.name, e.to_string()))
            })
            .transpose()?;
        Ok(Observation::RayJob(JobObservation { job, cluster, head_service, submitter, dashboard: dashboard.cloned() }))
    }
}

/// What the API server fills in a new Service: a cluster IP (unless headless) and each port's `targetPort`.
fn default_service_fields(service: &mut Value, services_before: usize) {
    let spec = &mut service["spec"];
    if spec["clusterIP"].as_str().unwrap_or_default().is_empty() {
        spec["clusterIP"] = json!(format!("10.96.0.{}", services_before + 10));
    }
    for port in spec["ports"].as_array_mut().into_iter().flatten() {
        if port["targetPort"].is_null() {
            port["targetPort"] = port["port"].clone();
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            if let Some(object) = target.as_object_mut() {
                object.remove(key);
            }
        } else {
            merge_patch(&mut target[key.as_str()], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use rstest::rstest;

    use super::*;
    use crate::machine::machine_for;
    use crate::machine::raycluster::RayClusterMachine;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    fn run_file(path: &Path) -> Report {
        let fixture = Fixture::load(path).unwrap();
        assert_eq!(Some(fixture.name.as_str()), path.file_stem().and_then(|s| s.to_str()), "name is the file's stem");
        let machine = machine_for(fixture.machine_kind().unwrap(), &fixture.config.operator_config().unwrap()).unwrap();
        run(machine.as_ref(), &fixture)
    }

    #[rstest]
    fn fixture(#[files("fixtures/*/*.yaml")] path: PathBuf) {
        let report = run_file(&path);
        if let Some(mismatch) = report.mismatch {
            panic!("{}: {mismatch}", path.display());
        }
    }

    fn tiny_fixture(steps: &str) -> Fixture {
        Fixture::parse(&format!(
            "name: tiny\ndescription: d\nobjects:\n  - {{apiVersion: ray.io/v1, kind: RayCluster, metadata: {{name: c}}, \
             spec: {{managedBy: example.com/other, headGroupSpec: {{template: {{spec: {{containers: [{{name: h}}]}}}}}}}}}}\nsteps:\n{steps}"
        ))
        .unwrap()
    }

    /// A machine that always answers the same, to see what the runner makes of it.
    struct Fixed(&'static str, &'static str, Vec<Command>);

    impl Machine for Fixed {
        fn kind(&self) -> MachineKind {
            MachineKind::RayCluster
        }

        fn step(&self, _: &Memory, _: &Input) -> Decision {
            Decision {
                next: self.0.to_string(),
                commands: self.2.clone(),
                reason: self.1.to_string(),
                explanation: String::new(),
                memory: Memory { state: self.0.to_string(), ..Memory::default() },
            }
        }
    }

    const UNMANAGED_STEP: &str =
        "  - trigger: resync\n    expect: {next: Unmanaged, reason: ManagedExternally, commands: []}\n";

    #[rstest]
    #[case::listed(Fixed("Unmanaged", "ManagedExternally", vec![]), None)]
    #[case::unlisted_transition(Fixed("Provisioned", "ManagedExternally", vec![]), Some("step 1: transition: expected one of state-machines/raycluster.yaml, got New -> Provisioned ManagedExternally"))]
    #[case::unlisted_command(Fixed("Unmanaged", "ManagedExternally", vec![Command::RequeueAfter { millis: 2000 }]), Some("step 1: command: expected one of [], got requeue 2s"))]
    fn the_runner_holds_decisions_to_the_definition(#[case] machine: Fixed, #[case] mismatch: Option<&str>) {
        let report = run(&machine, &tiny_fixture(UNMANAGED_STEP));
        assert_eq!(report.mismatch.map(|m| m.to_string()).as_deref(), mismatch);
        assert_eq!(report.steps.len(), 1, "the mismatching step is recorded too");
    }

    #[test]
    fn the_first_mismatch_names_its_step_and_field() {
        let steps = format!(
            "{UNMANAGED_STEP}  - trigger: resync\n    expect: {{next: Unmanaged, reason: Other, commands: []}}\n"
        );
        let report = run(&RayClusterMachine { config: OperatorConfig::default() }, &tiny_fixture(&steps));
        assert_eq!(
            report.mismatch.map(|m| m.to_string()),
            Some("step 2: reason: expected Other, got ManagedExternally".to_string())
        );
    }

    #[test]
    fn inputs_carry_the_fixtures_uids_and_clock() {
        let steps = format!(
            "{UNMANAGED_STEP}  - after: 90s\n    trigger: {{timer: requeue}}\n    expect: {{next: Unmanaged, reason: ManagedExternally, commands: []}}\n"
        );
        let report = run(&RayClusterMachine { config: OperatorConfig::default() }, &tiny_fixture(&steps));
        assert_eq!(report.mismatch, None);
        let input = &report.steps[1].input;
        assert_eq!(input.object.uid, derived_uid("tiny", "RayCluster", "c"));
        assert_eq!(input.now, Time("2025-01-01T00:01:30Z".parse().unwrap()));
        assert_eq!(input.trigger, Trigger::Timer { name: "requeue".to_string() });
        assert_eq!(report.steps[1].memory.state, "Unmanaged", "each step starts from the memory of the one before");
    }

    #[rstest]
    #[case::fields(json!({"a": 1}), json!({"a": 1, "b": 2}), Ok(()))]
    #[case::null_is_absent(json!({"c": null}), json!({"a": 1}), Ok(()))]
    #[case::null_rejects_present(json!({"a": null}), json!({"a": 1}), Err(("s.a", "null", "1")))]
    #[case::nested(json!({"a": {"b": "x"}}), json!({"a": {"b": "y"}}), Err(("s.a.b", "\"x\"", "\"y\"")))]
    #[case::arrays_by_position(json!([{"a": 1}]), json!([{"a": 1, "b": 2}]), Ok(()))]
    #[case::array_length(json!([1]), json!([1, 2]), Err(("s", "[1]", "[1,2]")))]
    fn expected_fields_are_a_subset(
        #[case] expected: Value,
        #[case] actual: Value,
        #[case] result: Result<(), (&str, &str, &str)>,
    ) {
        let result = result.map_err(|(p, e, a)| (p.to_string(), e.to_string(), a.to_string()));
        assert_eq!(subset(&expected, &actual, "s"), result);
    }

    #[test]
    fn conditions_are_compared_by_type() {
        let status = json!({"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]});
        assert_eq!(
            conditions_by_type(status),
            json!({"conditions": {"A": {"status": "True"}, "B": {"status": "False"}}})
        );
    }

    #[rstest]
    #[case("2s", Some(2))]
    #[case("5m", Some(300))]
    #[case("1h", Some(3600))]
    #[case("10", None)]
    #[case("1d", None)]
    fn durations(#[case] text: &str, #[case] seconds: Option<i64>) {
        assert_eq!(parse_duration(text), seconds.map(jiff::SignedDuration::from_secs));
    }

    #[test]
    fn merge_patches_replace_lists_and_drop_nulls() {
        let mut target = json!({"spec": {"suspend": true, "groups": [1, 2]}, "keep": 1});
        merge_patch(&mut target, &json!({"spec": {"suspend": null, "groups": [3]}}));
        assert_eq!(target, json!({"spec": {"groups": [3]}, "keep": 1}));
    }

    fn store() -> Store {
        Store::new(&tiny_fixture(UNMANAGED_STEP)).unwrap()
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    #[test]
    fn the_store_names_generated_objects_and_fills_in_services() {
        let mut store = store();
        let pod = json!({"kind": "Pod", "metadata": {"generateName": "c-head-"}});
        let service =
            json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "p", "port": 80}]}});
        assert_eq!(
            store.execute(&[Command::Create { object: pod }, Command::Create { object: service }], None, now()),
            None
        );
        let created = store.get("Pod", "c-head-00001").unwrap();
        assert_eq!(created["metadata"]["uid"], json!(derived_uid("tiny", "Pod", "c-head-00001")));
        let service = store.get("Service", "s").unwrap();
        assert_eq!(
            (service["spec"]["clusterIP"].as_str(), service["spec"]["ports"][0]["targetPort"].as_i64()),
            (Some("10.96.0.10"), Some(80))
        );
    }

    #[test]
    fn the_store_stops_at_the_failing_command() {
        let mut store = store();
        let pod = |name: &str| Command::Create { object: json!({"kind": "Pod", "metadata": {"name": name}}) };
        let fail = FailSpec { command: "create Pod b".to_string(), message: "no".to_string(), occurrence: None };
        let failed = store.execute(&[pod("a"), pod("b"), pod("c")], Some(&fail), now());
        assert_eq!(failed, Some(("create Pod b".to_string(), Outcome::Failed { message: "no".to_string() })));
        assert!(store.get("Pod", "a").is_some());
        assert!(store.get("Pod", "c").is_none());
    }

    #[test]
    fn a_uid_precondition_protects_a_namesake() {
        let mut store = store();
        store.insert(json!({"kind": "Pod", "metadata": {"name": "p", "uid": "new"}}), None).unwrap();
        let target = crate::machine::Target { kind: "Pod".into(), namespace: "default".into(), name: "p".into() };
        let failed = store.execute(&[Command::Delete { target, uid: Some("old".into()) }], None, now());
        assert!(matches!(failed, Some((_, Outcome::Failed { .. }))));
        assert!(store.get("Pod", "p").is_some());
    }

    #[test]
    fn removing_the_last_finalizer_of_a_deleted_cluster_removes_it() {
        let mut store = store();
        let finalizer = || "f".to_string();
        store.execute(&[Command::AddFinalizer { finalizer: finalizer() }], None, now());
        store.delete("RayCluster", "c", false, now());
        assert!(store.get("RayCluster", "c").is_some_and(|c| !c["metadata"]["deletionTimestamp"].is_null()));
        store.execute(&[Command::RemoveFinalizer { finalizer: finalizer() }], None, now());
        assert!(store.get("RayCluster", "c").is_none());
    }

    #[rstest]
    #[case::raycluster("raycluster")]
    #[case::rayjob("rayjob")]
    fn every_transition_is_exercised_by_a_fixture(#[case] machine: &str) {
        let definition = fsm::definition(machine).unwrap();
        let mut exercised = BTreeSet::new();
        for entry in std::fs::read_dir(format!("{FIXTURES}/{machine}")).unwrap() {
            let report = run_file(&entry.unwrap().path());
            exercised.extend(report.steps.iter().filter_map(|step| step.transition));
        }
        let missing: Vec<String> = (0..definition.transitions.len())
            .filter(|index| !exercised.contains(index))
            .map(|index| {
                let transition = &definition.transitions[index];
                format!("{}: {} -> {} {}", index + 1, transition.from.join(","), transition.to, transition.reason)
            })
            .collect();
        assert!(missing.is_empty(), "transitions no fixture exercises:\n{}", missing.join("\n"));
    }
}
