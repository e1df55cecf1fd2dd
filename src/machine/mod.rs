//! The engine core: the one path every decision takes (`../shared/DESIGN.md`).
//!
//! An [`Input`] is a level-triggered observation of one Ray object — the trigger that woke the engine, the time, and
//! a compact projection of the object and everything it owns. A [`Machine`] turns the engine's [`Memory`] for that
//! object and an Input into a [`Decision`]: the next state, the commands to run, a reason and an explanation, and the
//! memory to carry to the next step. `step` is pure: no I/O, no clock, no randomness, so a journaled Input replays
//! into the same Decision.
//!
//! Inputs and Decisions are serde types; the journal splits them into content-addressed parts ([`Input::parts`],
//! [`Decision::parts`]) so that what repeats from one step to the next (a spec, a Pod body) is stored once.

pub mod fixture;
pub mod fsm;
pub mod observe;
pub mod raycluster;
pub mod rayjob;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use observe::{
    ClusterObservation, DashboardAnswer, DashboardJob, JobObservation, JobView, OwnedObject, PodView, ServiceView,
};

/// Which machine an object belongs to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MachineKind {
    RayCluster,
    RayJob,
    RayService,
}

impl MachineKind {
    pub const ALL: [MachineKind; 3] = [MachineKind::RayCluster, MachineKind::RayJob, MachineKind::RayService];

    /// The lower-case kind of object names on the command line: `raycluster/default/raycluster-kuberay`.
    pub fn cli_name(self) -> &'static str {
        match self {
            MachineKind::RayCluster => "raycluster",
            MachineKind::RayJob => "rayjob",
            MachineKind::RayService => "rayservice",
        }
    }

    /// The kind of the custom resource: `RayCluster`.
    pub fn resource_kind(self) -> &'static str {
        match self {
            MachineKind::RayCluster => "RayCluster",
            MachineKind::RayJob => "RayJob",
            MachineKind::RayService => "RayService",
        }
    }
}

/// The Ray object a machine steps: its kind, namespace, name and uid (a new uid is a new object, even under a name
/// used before).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: MachineKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl fmt::Display for ObjectRef {
    /// `KIND/NAMESPACE/NAME`, as every `journal` command names objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.cli_name(), self.namespace, self.name)
    }
}

/// What woke the engine for this object. Kept for the audit trail: a machine decides from the observation, never
/// from the trigger alone, so a lost or repeated event cannot wedge it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A watch event on the object itself or on something it owns.
    Watch { kind: String, name: String, event: WatchEvent },
    /// A timer the machine asked for (a requeue, a deadline, a deletion delay).
    Timer { name: String },
    /// The outcome of a command of an earlier Decision.
    Outcome { command: String, outcome: Outcome },
    /// A periodic look with nothing in particular changed.
    Resync,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Applied,
    Deleted,
}

/// How a command fared against the API server or the dashboard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Conflict,
    NotFound,
    AlreadyExists,
    Failed { message: String },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Watch { kind, name, event } => write!(f, "watch:{event:?}:{kind}/{name}"),
            Trigger::Timer { name } => write!(f, "timer:{name}"),
            Trigger::Outcome { command, outcome } => write!(f, "outcome:{command}:{outcome:?}"),
            Trigger::Resync => f.write_str("resync"),
        }
    }
}

/// Everything a machine may read for one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Input {
    pub object: ObjectRef,
    pub trigger: Trigger,
    /// The time of this step; the machine reads no clock.
    pub now: Time,
    pub observation: Observation,
}

/// The projection of the object and what it owns, per machine.
// One Observation is built per step and moved whole into its Input; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Observation {
    RayCluster(ClusterObservation),
    RayJob(JobObservation),
}

/// The engine's memory for one object: what a machine expects to see but has not yet (creates and deletes in
/// flight), the timers it asked for, and the state it left the object in. Every Decision carries the memory to
/// use for the next step, so it is journaled with it; an empty memory is always safe (a new replica starts so).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// The state name of the last Decision (empty before the first).
    pub state: String,
    /// Scale expectations (§2.2): Pods created or deleted that the observation does not show yet, by group.
    pub expectations: BTreeMap<String, Expectation>,
    /// Timers by name, with the time at which they fire.
    pub timers: BTreeMap<String, Time>,
}

/// Pods of one group in flight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// How many creates have been issued that the observation does not show yet.
    pub creates: u32,
    /// Pods whose deletion has been issued and that the observation still shows.
    pub deletes: Vec<String>,
    /// The group's Pods the observation has shown since the expectation was opened. Created Pods are named by the
    /// API server (`generateName`), so a Pod missing from this list is how one of the creates becomes visible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
    /// When the creates were issued. Creates still unseen 30 s later are given up (KubeRay's expectation timeout),
    /// so a Pod removed before it was ever observed, or a create that was never sent, cannot hold its group forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// A machine's answer to one Input.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Decision {
    /// The state the object is now in, as the machine's definition spells it.
    pub next: String,
    pub commands: Vec<Command>,
    /// A short, stable reason (the transition's reason in the machine's definition).
    pub reason: String,
    /// A human-readable sentence: why this Decision.
    pub explanation: String,
    /// The memory for the next step of this object.
    pub memory: Memory,
}

/// What the executor does, in order, once the Decision holding it is durable. Every command is idempotent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    /// Create an object (a full body with `apiVersion` and `kind`; a name, or `generateName` under expectations).
    Create {
        object: Value,
    },
    /// Delete one object; `uid`, when given, is a precondition (never delete a namesake).
    Delete {
        target: Target,
        uid: Option<String>,
    },
    /// Delete every object of a kind that carries all these labels.
    DeleteCollection {
        kind: String,
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    /// A JSON merge patch on an object (labels, annotations, a field), guarded by `resource_version` when given.
    Patch {
        target: Target,
        patch: Value,
        resource_version: Option<String>,
    },
    /// Add or remove a finalizer on the machine's own object.
    AddFinalizer {
        finalizer: String,
    },
    RemoveFinalizer {
        finalizer: String,
    },
    /// Replace the status of the machine's own object (written only when it changed).
    WriteStatus {
        status: Value,
    },
    /// A Kubernetes Event on the machine's own object.
    RecordEvent {
        kind: EventKind,
        reason: String,
        message: String,
    },
    /// Look again after this many milliseconds.
    RequeueAfter {
        millis: u64,
    },
    /// `POST /api/jobs/` on the dashboard at `address` (host:port) with this body (§3.4). AlreadyExists (the
    /// submission id is known) is success.
    SubmitJob {
        address: String,
        submission: Value,
    },
    /// `POST /api/jobs/<job_id>/stop` on the dashboard at `address`.
    StopJob {
        address: String,
        job_id: String,
    },
}

/// An object addressed by kind, namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

impl Command {
    /// A one-line summary for audit lines and outcome triggers, e.g. `create Pod raycluster-kuberay-head-`.
    pub fn summary(&self) -> String {
        let name_of = |object: &Value| {
            let meta = &object["metadata"];
            meta["name"].as_str().or_else(|| meta["generateName"].as_str()).unwrap_or_default().to_string()
        };
        match self {
            Command::Create { object } => {
                format!("create {} {}", object["kind"].as_str().unwrap_or_default(), name_of(object))
            }
            Command::Delete { target, .. } => format!("delete {} {}", target.kind, target.name),
            Command::DeleteCollection { kind, labels, .. } => {
                let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("delete-collection {kind} {}", selector.join(","))
            }
            Command::Patch { target, .. } => format!("patch {} {}", target.kind, target.name),
            Command::AddFinalizer { finalizer } => format!("add-finalizer {finalizer}"),
            Command::RemoveFinalizer { finalizer } => format!("remove-finalizer {finalizer}"),
            Command::WriteStatus { .. } => "write-status".to_string(),
            Command::RecordEvent { kind, reason, .. } => format!("event {kind:?} {reason}"),
            Command::RequeueAfter { millis } => format!("requeue {}s", millis / 1000),
            Command::SubmitJob { submission, .. } => {
                format!("submit-job {}", submission["submission_id"].as_str().unwrap_or_default())
            }
            Command::StopJob { job_id, .. } => format!("stop-job {job_id}"),
        }
    }
}

/// A state machine: a pure function from (memory, input) to a decision. Machines are shared by the workers that
/// step objects concurrently, hence Send + Sync.
pub trait Machine: Send + Sync {
    fn kind(&self) -> MachineKind;
    fn step(&self, memory: &Memory, input: &Input) -> Decision;
}

/// The state an object was in before a step, as its machine's definition spells it: what the last Decision left in
/// the memory, except where the object's status is the durable record of the state (a RayJob's
/// `jobDeploymentStatus`), so that a replica with an empty memory (a restart, a failover) reports the transition
/// from where the object really was, not from the initial state.
pub fn state_before(memory: &Memory, input: &Input) -> String {
    if let Observation::RayJob(observation) = &input.observation
        && let Some(state) = rayjob::state_shown(memory, observation)
    {
        return state.name().to_string();
    }
    if memory.state.is_empty() {
        fsm::definition_of(input.object.kind).map(|d| d.initial).unwrap_or_default()
    } else {
        memory.state.clone()
    }
}

/// The machine that steps objects of `kind` under `config`; None for a kind no machine steps yet.
pub fn machine_for(kind: MachineKind, config: &crate::config::OperatorConfig) -> Option<Box<dyn Machine>> {
    match kind {
        MachineKind::RayCluster => Some(Box::new(raycluster::RayClusterMachine { config: config.clone() })),
        MachineKind::RayJob => Some(Box::new(rayjob::RayJobMachine { config: config.clone() })),
        MachineKind::RayService => None,
    }
}

/// A part of an Input or a Decision that the journal stores once, content-addressed: a name and canonical JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub json: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PartsError {
    #[error("part {name}: {source}")]
    Json { name: String, source: serde_json::Error },
    #[error("part {0} is missing")]
    Missing(String),
    #[error("no machine steps {0:?} objects yet")]
    NoMachine(MachineKind),
}

pub(crate) fn part(name: impl Into<String>, value: &impl Serialize) -> Result<Part, PartsError> {
    let name = name.into();
    serde_json::to_vec(value)
        .map(|json| Part { name: name.clone(), json })
        .map_err(|source| PartsError::Json { name, source })
}

pub(crate) fn take<T: serde::de::DeserializeOwned>(
    parts: &BTreeMap<String, &[u8]>,
    name: &str,
) -> Result<T, PartsError> {
    let json = parts.get(name).ok_or_else(|| PartsError::Missing(name.to_string()))?;
    serde_json::from_slice(json).map_err(|source| PartsError::Json { name: name.to_string(), source })
}

/// Parts of a list: one per element, so that unchanged elements (a Pod, a command body) dedupe across records.
pub(crate) fn list_parts<T: Serialize>(prefix: &str, items: &[T]) -> Result<Vec<Part>, PartsError> {
    items.iter().enumerate().map(|(index, item)| part(format!("{prefix}/{index:06}"), item)).collect()
}

pub(crate) fn take_list<T: serde::de::DeserializeOwned>(
    parts: &BTreeMap<String, &[u8]>,
    prefix: &str,
) -> Result<Vec<T>, PartsError> {
    let start = format!("{prefix}/");
    parts
        .range(start.clone()..)
        .take_while(|(name, _)| name.starts_with(&start))
        .map(|(name, json)| {
            serde_json::from_slice(json).map_err(|source| PartsError::Json { name: name.clone(), source })
        })
        .collect()
}

impl Input {
    /// The Input as parts: the envelope, then the observation split so that what rarely changes is its own part.
    pub fn parts(&self) -> Result<Vec<Part>, PartsError> {
        let mut parts = vec![part("object", &self.object)?, part("trigger", &self.trigger)?, part("now", &self.now)?];
        match &self.observation {
            Observation::RayCluster(observation) => parts.extend(observation.parts()?),
            Observation::RayJob(observation) => parts.extend(observation.parts()?),
        }
        Ok(parts)
    }

    pub fn from_parts(parts: &[Part]) -> Result<Input, PartsError> {
        let by_name: BTreeMap<String, &[u8]> = parts.iter().map(|p| (p.name.clone(), p.json.as_slice())).collect();
        let object: ObjectRef = take(&by_name, "object")?;
        let observation = match object.kind {
            MachineKind::RayCluster => Observation::RayCluster(ClusterObservation::from_parts(&by_name)?),
            MachineKind::RayJob => Observation::RayJob(JobObservation::from_parts(&by_name)?),
            other => return Err(PartsError::NoMachine(other)),
        };
        Ok(Input { object, trigger: take(&by_name, "trigger")?, now: take(&by_name, "now")?, observation })
    }
}

impl Decision {
    /// The Decision on an object that is gone: no commands, and a memory that names `next` and nothing else (its
    /// expectations and timers dropped).
    pub fn gone(next: &str, reason: &str, explanation: &str) -> Decision {
        Decision {
            next: next.to_string(),
            commands: Vec::new(),
            reason: reason.to_string(),
            explanation: explanation.to_string(),
            memory: Memory { state: next.to_string(), ..Memory::default() },
        }
    }

    /// The Decision as parts: one per command (identical Pod bodies dedupe), the memory, and the rest.
    pub fn parts(&self) -> Result<Vec<Part>, PartsError> {
        let mut parts = vec![
            part("next", &self.next)?,
            part("reason", &self.reason)?,
            part("explanation", &self.explanation)?,
            part("memory", &self.memory)?,
        ];
        parts.extend(list_parts("command", &self.commands)?);
        Ok(parts)
    }

    pub fn from_parts(parts: &[Part]) -> Result<Decision, PartsError> {
        let by_name: BTreeMap<String, &[u8]> = parts.iter().map(|p| (p.name.clone(), p.json.as_slice())).collect();
        Ok(Decision {
            next: take(&by_name, "next")?,
            commands: take_list(&by_name, "command")?,
            reason: take(&by_name, "reason")?,
            explanation: take(&by_name, "explanation")?,
            memory: take(&by_name, "memory")?,
        })
    }
}
