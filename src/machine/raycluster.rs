//! The RayCluster lifecycle machine: KubeRay v1.3.0's RayCluster controller (spec §2, §5.3) with DEVIATIONS 2, 5,
//! 9 and 15, as a pure step from the engine's memory and an observation to a Decision. Its states, guards and
//! transitions are `state-machines/raycluster.yaml`; [`RayClusterMachine::transitions`] is the same table as data.
//!
//! One step is one pass of KubeRay's reconcile (§2.1): managedBy, deletion (GCS FT cleanup, §5.3), spec and status
//! validation, the GCS FT finalizer, the sub-reconcilers in order, then the status (§2.3), written only when it
//! changed, and a requeue. The Decision's state is read off the status the pass leaves behind (its conditions), so
//! the state never disagrees with what the API server shows.
//!
//! What the machine expects of the executor: it runs a Decision's commands in order and stops at the first that
//! fails, so an event that follows a create or a delete reports it only once it happened (KubeRay's reconcile
//! stops at its first error too). `AlreadyExists` on a create and `NotFound` on a delete count as success. The
//! failure comes back as an Input whose trigger is `Outcome { command: <its summary>, outcome }`; the machine then
//! reports it (a Warning Event, `ReplicaFailure` for a Pod, §2.3) instead of reconciling again in that step, and asks
//! for the usual 2 s requeue. `RequeueAfter` comes back as the timer [`REQUEUE_TIMER`]; the deletion deadline of
//! DEVIATIONS 9 is the timer [`DELETION_TIMEOUT_TIMER`] in the memory.
//!
//! Pods are created with `generateName`, so the API server names them; scale expectations in the memory (§2.2) hold
//! a group back until the observation shows every create and delete it was sent, so a stale observation never
//! creates a Pod twice. A create still unseen after 30 s is given up, as KubeRay's expectations do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;
use serde_json::json;

use super::fsm;
use super::fsm::To;
use super::observe::{ClusterObservation, OwnedObject, PodView};
use super::{
    Command, Decision, EventKind, Expectation, Input, Machine, MachineKind, Memory, Observation, Outcome, Target,
    Trigger,
};
use crate::api::RayCluster;
use crate::api::constants::*;
use crate::api::quantity::Amount;
use crate::api::raycluster::{HeadInfo, RayClusterStatus, WorkerGroupSpec, cluster_state};
use crate::api::validation::validate_ray_cluster;
use crate::build::names::{
    head_pod_generate_name, redis_cleanup_job_name, serve_service_name, worker_pod_generate_name,
};
use crate::build::{ingress, pod, rbac, redis_cleanup, service};
use crate::config::{Feature, OperatorConfig};

/// The objects whose existence a pass reads, by kind and name in the cluster's namespace (KubeRay gets them by
/// name): the autoscaler's ServiceAccount, Role and RoleBinding, and the head Ingress. The runtime lists those that
/// exist in the observation's `owned`, whoever created them.
pub fn existence_checks(cluster: &RayCluster) -> Vec<OwnedObject> {
    let named =
        |kind: &str, name: Option<String>| OwnedObject { kind: kind.to_string(), name: name.unwrap_or_default() };
    let mut checks = Vec::new();
    if let Some(binding) = rbac::autoscaler_role_binding(cluster) {
        let accounts =
            binding.subjects.iter().flatten().map(|subject| named("ServiceAccount", Some(subject.name.clone())));
        checks.extend(accounts);
        checks.extend(rbac::autoscaler_role(cluster).map(|role| named("Role", role.metadata.name)));
        checks.push(named("RoleBinding", binding.metadata.name));
    }
    checks.extend(ingress::head_ingress(cluster).map(|ingress| named("Ingress", ingress.metadata.name)));
    checks
}

/// The timer a `RequeueAfter` command comes back as.
pub const REQUEUE_TIMER: &str = "requeue";
/// DEVIATIONS 9: fires at `deletionTimestamp` + `ray.io/gcs-ft-deletion-timeout`.
pub const DELETION_TIMEOUT_TIMER: &str = "gcs-ft-deletion-timeout";

/// KubeRay's `DefaultRequeueDuration`.
const SHORT_REQUEUE_SECONDS: u64 = 2;
/// §5.3: head Pods take longer than 2 s to terminate.
const HEAD_TERMINATION_REQUEUE_SECONDS: u64 = 10;
/// KubeRay's `ExpectationsTimeout`.
const EXPECTATION_TIMEOUT_SECONDS: i64 = 30;
/// KubeRay v1.7's Event when the deletion timeout removes the finalizer (DEVIATIONS 9).
const FORCE_DELETED_STUCK_CLUSTER: &str = "ForceDeletedStuckCluster";
// Event reasons of `utils/constant.go` that `api::constants` does not list.
const FAILED_TO_CREATE_SERVICE_ACCOUNT: &str = "FailedToCreateServiceAccount";
const FAILED_TO_CREATE_ROLE: &str = "FailedToCreateRole";
const FAILED_TO_CREATE_ROLE_BINDING: &str = "FailedToCreateRoleBinding";
const FAILED_TO_CREATE_INGRESS: &str = "FailedToCreateIngress";
/// What the API server says of a write that lost a race.
const CONFLICT_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

pub struct RayClusterMachine {
    pub config: OperatorConfig,
}

/// The machine's states, as `state-machines/raycluster.yaml` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The engine has no memory of the object (its first step, or a new operator replica).
    New,
    /// `spec.managedBy` names another controller.
    Unmanaged,
    /// The spec or the status fails validation; nothing is created.
    Invalid,
    /// `RayClusterProvisioned` is not True yet.
    Provisioning,
    /// Every Pod has been running and ready once (`RayClusterProvisioned` True; sticky).
    Provisioned,
    /// `RayClusterSuspending`: the Pods are being deleted.
    Suspending,
    /// `RayClusterSuspended`: no Pods until the cluster is resumed.
    Suspended,
    /// `deletionTimestamp` is set.
    Deleting,
    /// The RayCluster is gone.
    Deleted,
}

impl State {
    pub const ALL: [State; 9] = [
        State::New,
        State::Unmanaged,
        State::Invalid,
        State::Provisioning,
        State::Provisioned,
        State::Suspending,
        State::Suspended,
        State::Deleting,
        State::Deleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::New => "New",
            State::Unmanaged => "Unmanaged",
            State::Invalid => "Invalid",
            State::Provisioning => "Provisioning",
            State::Provisioned => "Provisioned",
            State::Suspending => "Suspending",
            State::Suspended => "Suspended",
            State::Deleting => "Deleting",
            State::Deleted => "Deleted",
        }
    }

    /// The state a memory names; an empty (or unknown) memory is `New`, which is always safe.
    pub fn of_memory(memory: &Memory) -> State {
        State::ALL.into_iter().find(|state| state.name() == memory.state).unwrap_or(State::New)
    }

    fn is_live(self) -> bool {
        LIVE.contains(&self)
    }
}

/// Why a Decision was taken: the reason of the transition it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    ClusterGone,
    ManagedExternally,
    GcsFtDeletionTimeout,
    CommandFailed,
    DeletingPods,
    RedisCleanupJobCreated,
    RedisCleanupRunning,
    RedisCleanupComplete,
    RedisCleanupFailed,
    BeingDeleted,
    InvalidRayClusterSpec,
    InvalidRayClusterStatus,
    AddGcsFtFinalizer,
    RayClusterPodsProvisioning,
    ResumeRequested,
    AllPodRunningAndReadyFirstTime,
    RayClusterSuspending,
    RayClusterSuspended,
    Reconciled,
    ReplicaFailure,
    ReconcileError,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::ClusterGone => "ClusterGone",
            Reason::ManagedExternally => "ManagedExternally",
            Reason::GcsFtDeletionTimeout => "GcsFtDeletionTimeout",
            Reason::CommandFailed => "CommandFailed",
            Reason::DeletingPods => "DeletingPods",
            Reason::RedisCleanupJobCreated => "RedisCleanupJobCreated",
            Reason::RedisCleanupRunning => "RedisCleanupRunning",
            Reason::RedisCleanupComplete => "RedisCleanupComplete",
            Reason::RedisCleanupFailed => "RedisCleanupFailed",
            Reason::BeingDeleted => "BeingDeleted",
            Reason::InvalidRayClusterSpec => "InvalidRayClusterSpec",
            Reason::InvalidRayClusterStatus => "InvalidRayClusterStatus",
            Reason::AddGcsFtFinalizer => "AddGcsFtFinalizer",
            Reason::RayClusterPodsProvisioning => "RayClusterPodsProvisioning",
            Reason::ResumeRequested => "ResumeRequested",
            Reason::AllPodRunningAndReadyFirstTime => "AllPodRunningAndReadyFirstTime",
            Reason::RayClusterSuspending => "RayClusterSuspending",
            Reason::RayClusterSuspended => "RayClusterSuspended",
            Reason::Reconciled => "Reconciled",
            Reason::ReplicaFailure => "ReplicaFailure",
            Reason::ReconcileError => "ReconcileError",
        }
    }
}

// ---- the transition table ----

/// The states in which the machine reconciles.
const LIVE: [State; 4] = [State::Provisioning, State::Provisioned, State::Suspending, State::Suspended];
/// States from which a reconcile pass starts afresh, reading the state off the status.
const ENTRY: [State; 3] = [State::New, State::Unmanaged, State::Invalid];
const BEFORE_DELETION: [State; 7] = [
    State::New,
    State::Unmanaged,
    State::Invalid,
    State::Provisioning,
    State::Provisioned,
    State::Suspending,
    State::Suspended,
];
/// States a deletion is first seen from, and Deleting itself (managedBy is checked first, so never Unmanaged).
const DELETABLE: [State; 7] = [
    State::New,
    State::Invalid,
    State::Provisioning,
    State::Provisioned,
    State::Suspending,
    State::Suspended,
    State::Deleting,
];
const ENTRY_AND_PROVISIONING: [State; 4] = [State::New, State::Unmanaged, State::Invalid, State::Provisioning];
const ENTRY_AND_RUNNING: [State; 5] =
    [State::New, State::Unmanaged, State::Invalid, State::Provisioning, State::Provisioned];
const ENTRY_AND_SUSPENDING: [State; 4] = [State::New, State::Unmanaged, State::Invalid, State::Suspending];

/// Everything a reconcile pass may issue (§2.1 step 6, §2.2, §2.3), and the Warning Events of a failure it reports.
const RECONCILE_COMMANDS: &[&str] = &[
    "create ServiceAccount",
    "event Normal CreatedServiceAccount",
    "event Warning AutoscalerServiceAccountNotFound",
    "create Role",
    "event Normal CreatedRole",
    "create RoleBinding",
    "event Normal CreatedRoleBinding",
    "create Ingress",
    "event Normal CreatedIngress",
    "create Service",
    "event Normal CreatedService",
    "delete-collection Pod",
    "event Normal DeletedPod",
    "delete Pod",
    "event Normal DeletedHeadPod",
    "create Pod",
    "event Normal CreatedHeadPod",
    "event Normal DeletedWorkerPod",
    "event Normal CreatedWorkerPod",
    "event Warning FailedToCreateHeadPod",
    "event Warning FailedToCreateWorkerPod",
    "event Warning FailedToDeleteHeadPod",
    "event Warning FailedToDeleteWorkerPod",
    "event Warning FailedToDeletePodCollection",
    "event Warning FailedToDeleteWorkerPodCollection",
    "event Warning FailedToCreateService",
    "event Warning FailedToCreateServiceAccount",
    "event Warning FailedToCreateRole",
    "event Warning FailedToCreateRoleBinding",
    "event Warning FailedToCreateIngress",
    "write-status",
    "requeue",
];
const CLEANUP_COMMANDS: &[&str] = &["delete-collection Pod", "remove-finalizer"];

type Rule = fsm::Rule<State, Reason>;
fsm::named_by_name!(State, Reason);

const RULES: &[Rule] = &[
    Rule {
        from: &State::ALL,
        to: To::State(State::Deleted),
        guard: "cluster_absent",
        reason: Reason::ClusterGone,
        commands: &[],
    },
    Rule {
        from: &BEFORE_DELETION,
        to: To::State(State::Unmanaged),
        guard: "managed_elsewhere",
        reason: Reason::ManagedExternally,
        commands: &[],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "deletion_timed_out",
        reason: Reason::GcsFtDeletionTimeout,
        commands: &["remove-finalizer", "event Warning ForceDeletedStuckCluster"],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "cleanup_command_failed",
        reason: Reason::CommandFailed,
        commands: &["event Warning FailedToCreateRedisCleanupJob", "requeue"],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "head_pods_remain",
        reason: Reason::DeletingPods,
        commands: &["delete-collection Pod", "requeue"],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "cleanup_job_missing",
        reason: Reason::RedisCleanupJobCreated,
        commands: &["delete-collection Pod", "create Job", "event Normal CreatedRedisCleanupJob", "requeue"],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "cleanup_job_running",
        reason: Reason::RedisCleanupRunning,
        commands: &["delete-collection Pod", "requeue"],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "cleanup_job_complete",
        reason: Reason::RedisCleanupComplete,
        commands: CLEANUP_COMMANDS,
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "cleanup_job_failed",
        reason: Reason::RedisCleanupFailed,
        commands: CLEANUP_COMMANDS,
    },
    Rule {
        from: &DELETABLE,
        to: To::State(State::Deleting),
        guard: "deletion_without_cleanup",
        reason: Reason::BeingDeleted,
        commands: &[],
    },
    Rule {
        from: &BEFORE_DELETION,
        to: To::State(State::Invalid),
        guard: "spec_invalid",
        reason: Reason::InvalidRayClusterSpec,
        commands: &["event Warning InvalidRayClusterSpec", "write-status"],
    },
    Rule {
        from: &BEFORE_DELETION,
        to: To::State(State::Invalid),
        guard: "status_invalid",
        reason: Reason::InvalidRayClusterStatus,
        commands: &["event Warning InvalidRayClusterStatus", "requeue"],
    },
    Rule {
        from: &ENTRY,
        to: To::State(State::Provisioning),
        guard: "finalizer_missing",
        reason: Reason::AddGcsFtFinalizer,
        commands: &["add-finalizer", "requeue"],
    },
    Rule {
        from: &LIVE,
        to: To::Same,
        guard: "finalizer_missing",
        reason: Reason::AddGcsFtFinalizer,
        commands: &["add-finalizer", "requeue"],
    },
    Rule {
        from: &ENTRY,
        to: To::State(State::Provisioning),
        guard: "provisioning",
        reason: Reason::RayClusterPodsProvisioning,
        commands: RECONCILE_COMMANDS,
    },
    Rule {
        from: &[State::Suspended],
        to: To::State(State::Provisioning),
        guard: "resumed",
        reason: Reason::ResumeRequested,
        commands: RECONCILE_COMMANDS,
    },
    Rule {
        from: &ENTRY_AND_PROVISIONING,
        to: To::State(State::Provisioned),
        guard: "all_pods_ready",
        reason: Reason::AllPodRunningAndReadyFirstTime,
        commands: RECONCILE_COMMANDS,
    },
    Rule {
        from: &ENTRY_AND_RUNNING,
        to: To::State(State::Suspending),
        guard: "suspend_requested",
        reason: Reason::RayClusterSuspending,
        commands: RECONCILE_COMMANDS,
    },
    Rule {
        from: &ENTRY_AND_SUSPENDING,
        to: To::State(State::Suspended),
        guard: "pods_gone_while_suspending",
        reason: Reason::RayClusterSuspended,
        commands: RECONCILE_COMMANDS,
    },
    Rule { from: &LIVE, to: To::Same, guard: "pass_clean", reason: Reason::Reconciled, commands: RECONCILE_COMMANDS },
    Rule {
        from: &LIVE,
        to: To::Same,
        guard: "pass_replica_failure",
        reason: Reason::ReplicaFailure,
        commands: RECONCILE_COMMANDS,
    },
    Rule {
        from: &LIVE,
        to: To::Same,
        guard: "pass_error",
        reason: Reason::ReconcileError,
        commands: RECONCILE_COMMANDS,
    },
    Rule { from: &LIVE, to: To::Same, guard: "command_failed", reason: Reason::CommandFailed, commands: &["requeue"] },
];

impl RayClusterMachine {
    /// The transition table as data; a test holds it equal to `state-machines/raycluster.yaml`.
    pub fn transitions() -> Vec<fsm::Transition> {
        fsm::table(RULES)
    }
}

impl Machine for RayClusterMachine {
    fn kind(&self) -> MachineKind {
        MachineKind::RayCluster
    }

    fn step(&self, memory: &Memory, input: &Input) -> Decision {
        let from = State::of_memory(memory);
        let observed = match &input.observation {
            Observation::RayCluster(observation) => Some(observation),
            Observation::RayJob(_) => None,
        };
        let Some((observation, cluster)) =
            observed.and_then(|observation| observation.cluster.as_ref().map(|cluster| (observation, cluster)))
        else {
            let explanation = "The RayCluster is gone; its expectations and timers are dropped.";
            return Decision::gone(State::Deleted.name(), Reason::ClusterGone.name(), explanation);
        };
        let mut pass = Pass {
            config: &self.config,
            input,
            observation,
            cluster,
            namespace: &input.object.namespace,
            name: &input.object.name,
            now: whole_seconds(&input.now),
            from,
            memory: Memory { state: String::new(), ..memory.clone() },
            commands: Vec::new(),
            notes: Vec::new(),
        };
        let (next, reason) = pass.run();
        pass.memory.state = next.name().to_string();
        Decision {
            next: next.name().to_string(),
            commands: pass.commands,
            reason: reason.name().to_string(),
            explanation: pass.notes.join(" "),
            memory: pass.memory,
        }
    }
}

/// Why a pass stopped: KubeRay's reconcile error. A Pod failure carries one of §2.3's `ReplicaFailure` reasons.
#[derive(Debug)]
enum PassError {
    Replica { reason: &'static str, message: String },
    Other(String),
}

impl PassError {
    /// KubeRay joins the marker and the API error (`errors.Join`): the message is both, one per line.
    fn replica(reason: &'static str, error: &str) -> PassError {
        PassError::Replica { reason, message: format!("{reason}\n{error}") }
    }

    fn message(&self) -> &str {
        match self {
            PassError::Replica { message, .. } | PassError::Other(message) => message,
        }
    }
}

/// A failed command of an earlier Decision, as the Input's trigger reports it.
struct Failure {
    summary: String,
    message: String,
}

/// Which Pods a `DeleteCollection` selects, besides `ray.io/cluster=<c>`.
#[derive(Clone, Copy)]
enum Selection<'a> {
    All,
    Group(&'a str),
    NodeType(&'a str),
}

impl Selection<'_> {
    fn matches(self, pod: &PodView) -> bool {
        match self {
            Selection::All => true,
            Selection::Group(group) => pod.group == group,
            Selection::NodeType(node_type) => pod.node_type == node_type,
        }
    }

    fn labels(self, cluster: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([(RAY_CLUSTER_LABEL.to_string(), cluster.to_string())]);
        match self {
            Selection::All => {}
            Selection::Group(group) => {
                labels.insert(RAY_NODE_GROUP_LABEL.to_string(), group.to_string());
            }
            Selection::NodeType(node_type) => {
                labels.insert(RAY_NODE_TYPE_LABEL.to_string(), node_type.to_string());
            }
        }
        labels
    }
}

/// One step in the making.
struct Pass<'a> {
    config: &'a OperatorConfig,
    input: &'a Input,
    observation: &'a ClusterObservation,
    cluster: &'a RayCluster,
    namespace: &'a str,
    name: &'a str,
    now: Time,
    from: State,
    memory: Memory,
    commands: Vec<Command>,
    /// Sentences of the explanation.
    notes: Vec<String>,
}

impl Pass<'_> {
    fn run(&mut self) -> (State, Reason) {
        if let Some(manager) = self.cluster.spec.managed_by.as_deref().filter(|manager| *manager != KUBERAY_MANAGED_BY)
        {
            self.note(format!("spec.managedBy is {manager}: another controller manages this RayCluster."));
            self.memory.expectations.clear();
            self.memory.timers.clear();
            return (State::Unmanaged, Reason::ManagedExternally);
        }
        self.observe_expectations();
        self.memory.timers.remove(DELETION_TIMEOUT_TIMER);
        // Before validation, unlike KubeRay: a cluster whose spec became invalid must still be cleaned up and lose
        // its finalizer (DEVIATIONS 9).
        if self.cluster.metadata.deletion_timestamp.is_some() {
            return self.deletion();
        }
        let problems = validate_ray_cluster(self.cluster, &self.config.feature_gates);
        if !problems.is_empty() {
            return self.invalid_spec(&problems);
        }
        let conditions = self.old_status().conditions.unwrap_or_default();
        if is_true(&conditions, RAY_CLUSTER_SUSPENDING) && is_true(&conditions, RAY_CLUSTER_SUSPENDED) {
            return self.invalid_status();
        }
        if self.redis_cleanup_applies() && !self.has_cleanup_finalizer() {
            return self.add_finalizer();
        }
        self.reconcile()
    }

    fn note(&mut self, sentence: impl Into<String>) {
        self.notes.push(sentence.into());
    }

    fn event(&mut self, kind: EventKind, reason: &str, message: String) {
        self.commands.push(Command::RecordEvent { kind, reason: reason.to_string(), message });
    }

    fn requeue(&mut self, seconds: u64) {
        self.commands.push(Command::RequeueAfter { millis: seconds * 1000 });
    }

    fn qualified(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    fn old_status(&self) -> RayClusterStatus {
        self.cluster.status.clone().unwrap_or_default()
    }

    fn conditions_gate(&self) -> bool {
        self.config.feature_gates.enabled(Feature::RayClusterStatusConditions)
    }

    /// The failed command this step reports, if the Input is such an outcome.
    fn failure(&self) -> Option<Failure> {
        let Trigger::Outcome { command, outcome } = &self.input.trigger else { return None };
        let message = match outcome {
            Outcome::Failed { message } => message.clone(),
            Outcome::Conflict => CONFLICT_MESSAGE.to_string(),
            Outcome::Ok | Outcome::NotFound | Outcome::AlreadyExists => return None,
        };
        Some(Failure { summary: command.clone(), message })
    }

    /// Where a step that computes no status leaves the object: where it was, or, when it was not reconciling,
    /// where its status says it is.
    fn resting_state(&self) -> State {
        if self.from.is_live() { self.from } else { self.state_of(&self.old_status()) }
    }

    /// The state a status shows (§2.3's conditions; the deprecated `state` when the conditions gate is off).
    fn state_of(&self, status: &RayClusterStatus) -> State {
        if self.conditions_gate() {
            let conditions = status.conditions.as_deref().unwrap_or_default();
            if is_true(conditions, RAY_CLUSTER_SUSPENDED) {
                State::Suspended
            } else if is_true(conditions, RAY_CLUSTER_SUSPENDING) {
                State::Suspending
            } else if is_true(conditions, RAY_CLUSTER_PROVISIONED) {
                State::Provisioned
            } else {
                State::Provisioning
            }
        } else if self.cluster.spec.suspend == Some(true) {
            if status.state.as_deref() == Some(cluster_state::SUSPENDED) { State::Suspended } else { State::Suspending }
        } else if status.state.as_deref() == Some(cluster_state::READY) {
            State::Provisioned
        } else {
            State::Provisioning
        }
    }

    // ---- scale expectations ----

    /// Settles the expectations against the observation: a Pod of the group not seen before is one of the creates;
    /// a deleted Pod no longer shown is done. Creates unseen for 30 s are given up.
    fn observe_expectations(&mut self) {
        let pods = &self.observation.pods;
        let now = self.now.0;
        self.memory.expectations.retain(|group, expectation| {
            for pod in pods.iter().filter(|pod| pod.group == *group) {
                if !expectation.seen.contains(&pod.name) {
                    expectation.seen.push(pod.name.clone());
                    expectation.creates = expectation.creates.saturating_sub(1);
                }
            }
            expectation.deletes.retain(|name| pods.iter().any(|pod| pod.name == *name));
            let expired = expectation.since.as_ref().is_some_and(|since| {
                since
                    .0
                    .checked_add(jiff::SignedDuration::from_secs(EXPECTATION_TIMEOUT_SECONDS))
                    .is_ok_and(|t| t <= now)
            });
            if expired {
                expectation.creates = 0;
            }
            expectation.creates > 0 || !expectation.deletes.is_empty()
        });
    }

    fn satisfied(&self, group: &str) -> bool {
        !self.memory.expectations.contains_key(group)
    }

    fn expectation(&mut self, group: &str) -> &mut Expectation {
        let seen = self.observation.pods.iter().filter(|pod| pod.group == group).map(|pod| pod.name.clone()).collect();
        self.memory
            .expectations
            .entry(group.to_string())
            .or_insert_with(|| Expectation { seen, ..Expectation::default() })
    }

    fn expect_create(&mut self, group: &str) {
        let now = self.now.clone();
        let expectation = self.expectation(group);
        expectation.creates += 1;
        expectation.since.get_or_insert(now);
    }

    fn expect_delete(&mut self, group: &str, pod: &str) {
        self.expectation(group).deletes.push(pod.to_string());
    }

    /// Forgets what a failed command was expected to do: it never happened.
    fn forget(&mut self, group: &str, deleted_pod: Option<&str>) {
        if let Some(expectation) = self.memory.expectations.get_mut(group) {
            match deleted_pod {
                Some(pod) => expectation.deletes.retain(|name| name != pod),
                None => expectation.creates = expectation.creates.saturating_sub(1),
            }
            if expectation.creates == 0 && expectation.deletes.is_empty() {
                self.memory.expectations.remove(group);
            }
        }
    }

    // ---- deletion (§2.1 step 5, §5.3, DEVIATIONS 9) ----

    /// §5.3 applies when GCS FT is on and `ENABLE_GCS_FT_REDIS_CLEANUP` is not `false`.
    fn redis_cleanup_applies(&self) -> bool {
        self.config.enable_gcs_ft_redis_cleanup && self.cluster.gcs_ft_enabled()
    }

    fn has_cleanup_finalizer(&self) -> bool {
        self.cluster.metadata.finalizers.iter().flatten().any(|f| f == GCS_FT_REDIS_CLEANUP_FINALIZER)
    }

    fn deletion(&mut self) -> (State, Reason) {
        if !self.redis_cleanup_applies() {
            self.note("The RayCluster is being deleted and has no Redis storage to clean up: nothing to do.");
            return (State::Deleting, Reason::BeingDeleted);
        }
        let timeout = deletion_timeout_seconds(self.cluster);
        let deadline = self
            .cluster
            .metadata
            .deletion_timestamp
            .as_ref()
            .and_then(|deleted| deleted.0.checked_add(jiff::SignedDuration::from_secs(timeout)).ok())
            .map(Time);
        let job = self.observation.jobs.iter().find(|job| {
            job.labels.get(RAY_CLUSTER_LABEL).map(String::as_str) == Some(self.name)
                && job.labels.get(RAY_NODE_TYPE_LABEL).map(String::as_str) == Some(NODE_TYPE_REDIS_CLEANUP)
        });
        let finished = job.is_some_and(|job| job.complete || job.failed);
        if let Some(deadline) = deadline {
            if deadline.0 <= self.now.0 && !finished {
                return self.force_remove_finalizer(timeout);
            }
            self.memory.timers.insert(DELETION_TIMEOUT_TIMER.to_string(), deadline);
        }
        if let Some(failure) = self.failure() {
            let job_name = redis_cleanup_job_name(self.name);
            if failure.summary == create_summary("Job", &job_name) {
                let message =
                    format!("Failed to create Redis cleanup Job {}, {}", self.qualified(&job_name), failure.message);
                self.event(EventKind::Warning, FAILED_TO_CREATE_REDIS_CLEANUP_JOB, message);
            }
            self.note(format!("`{}` failed: {}; trying again in 2 s.", failure.summary, failure.message));
            self.requeue(SHORT_REQUEUE_SECONDS);
            return (State::Deleting, Reason::CommandFailed);
        }
        let heads = self.delete_all_pods(Selection::NodeType(NODE_TYPE_HEAD));
        self.delete_all_pods(Selection::NodeType(NODE_TYPE_WORKER));
        if heads > 0 {
            self.note("Waiting for the head Pod to terminate: the GCS must stop writing before Redis is cleaned up.");
            self.requeue(HEAD_TERMINATION_REQUEUE_SECONDS);
            return (State::Deleting, Reason::DeletingPods);
        }
        match job {
            Some(job) if job.complete || job.failed => {
                self.commands.push(Command::RemoveFinalizer { finalizer: GCS_FT_REDIS_CLEANUP_FINALIZER.to_string() });
                self.memory.timers.remove(DELETION_TIMEOUT_TIMER);
                if job.complete {
                    self.note(format!("The Redis cleanup Job {} completed: the finalizer goes.", job.name));
                    (State::Deleting, Reason::RedisCleanupComplete)
                } else {
                    self.note(format!(
                        "The Redis cleanup Job {} failed; the finalizer goes anyway (best effort), and the storage \
                         namespace may need deleting by hand.",
                        job.name
                    ));
                    (State::Deleting, Reason::RedisCleanupFailed)
                }
            }
            Some(job) => {
                self.note(format!("The Redis cleanup Job {} is still running.", job.name));
                self.requeue(SHORT_REQUEUE_SECONDS);
                (State::Deleting, Reason::RedisCleanupRunning)
            }
            None => {
                let head = pod::head_pod(self.cluster, self.config);
                let job = redis_cleanup::redis_cleanup_job(self.cluster, &head);
                let job_name = job.metadata.name.clone().unwrap_or_default();
                if let Err(error) = self.create(&job) {
                    self.note(error.message().to_string());
                    self.requeue(SHORT_REQUEUE_SECONDS);
                    return (State::Deleting, Reason::CommandFailed);
                }
                let message = format!("Created Redis cleanup Job {}", self.qualified(&job_name));
                self.event(EventKind::Normal, CREATED_REDIS_CLEANUP_JOB, message);
                self.note(format!("The head Pod is gone: created the Redis cleanup Job {job_name}."));
                self.requeue(SHORT_REQUEUE_SECONDS);
                (State::Deleting, Reason::RedisCleanupJobCreated)
            }
        }
    }

    fn force_remove_finalizer(&mut self, timeout: i64) -> (State, Reason) {
        self.commands.push(Command::RemoveFinalizer { finalizer: GCS_FT_REDIS_CLEANUP_FINALIZER.to_string() });
        let head = pod::head_pod(self.cluster, self.config);
        let storage_namespace = head
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(RAY_EXTERNAL_STORAGE_NS_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        let message = format!(
            "The Redis cleanup of RayCluster {} did not finish within {timeout}s of its deletion; removed the \
             finalizer {GCS_FT_REDIS_CLEANUP_FINALIZER}. The storage namespace {storage_namespace} may remain in \
             Redis and need deleting by hand.",
            self.qualified(self.name)
        );
        self.event(EventKind::Warning, FORCE_DELETED_STUCK_CLUSTER, message);
        self.note(format!("The Redis cleanup did not finish within {timeout}s of the deletion: the finalizer goes."));
        (State::Deleting, Reason::GcsFtDeletionTimeout)
    }

    /// KubeRay's `deleteAllPods`: one DeleteAllOf when any selected Pod is not yet terminating. Returns how many
    /// selected Pods remain, terminating or not.
    fn delete_all_pods(&mut self, selection: Selection) -> usize {
        let selected: Vec<&PodView> = self.observation.pods.iter().filter(|pod| selection.matches(pod)).collect();
        if selected.iter().any(|pod| !pod.terminating) {
            self.commands.push(Command::DeleteCollection {
                kind: "Pod".to_string(),
                namespace: self.namespace.to_string(),
                labels: selection.labels(self.name),
            });
        }
        selected.len()
    }

    // ---- validation, finalizer ----

    /// DEVIATIONS 15: a Warning Event with KubeRay's message, and the problems in `status.reason`; no Pods.
    fn invalid_spec(&mut self, problems: &[String]) -> (State, Reason) {
        let problems = problems.join("; ");
        let message = format!("The RayCluster spec is invalid {}: {problems}", self.qualified(self.name));
        self.event(EventKind::Warning, INVALID_RAY_CLUSTER_SPEC, message);
        let old = self.old_status();
        if old.reason.as_deref() != Some(problems.as_str()) {
            let new = RayClusterStatus { reason: Some(problems.clone()), ..old };
            self.write_status(&new);
        }
        self.note(format!("The spec is invalid ({problems}): nothing is created until it is fixed."));
        (State::Invalid, Reason::InvalidRayClusterSpec)
    }

    fn invalid_status(&mut self) -> (State, Reason) {
        let message = format!(
            "The RayCluster status is invalid {}, invalid RayCluster State: rayv1.RayClusterSuspending and \
             rayv1.RayClusterSuspended conditions should not be both true",
            self.qualified(self.name)
        );
        self.event(EventKind::Warning, INVALID_RAY_CLUSTER_STATUS, message);
        self.note("RayClusterSuspending and RayClusterSuspended are both True: the status is invalid.");
        self.requeue(SHORT_REQUEUE_SECONDS);
        (State::Invalid, Reason::InvalidRayClusterStatus)
    }

    /// §5.3: nothing else is reconciled until the finalizer is on.
    fn add_finalizer(&mut self) -> (State, Reason) {
        let next = self.resting_state();
        if let Some(failure) = self.failure() {
            self.note(format!("`{}` failed: {}; trying again in 2 s.", failure.summary, failure.message));
            self.requeue(SHORT_REQUEUE_SECONDS);
            return (next, Reason::CommandFailed);
        }
        self.commands.push(Command::AddFinalizer { finalizer: GCS_FT_REDIS_CLEANUP_FINALIZER.to_string() });
        self.requeue(SHORT_REQUEUE_SECONDS);
        self.note("GCS fault tolerance is on: the Redis cleanup finalizer goes on before anything is created.");
        (next, Reason::AddGcsFtFinalizer)
    }

    // ---- the reconcile pass (§2.1 steps 6–8) ----

    fn reconcile(&mut self) -> (State, Reason) {
        let error = match self.failure() {
            Some(failure) => match self.reported(&failure) {
                Some(error) => Some(error),
                None => {
                    self.note(format!("`{}` failed: {}; trying again in 2 s.", failure.summary, failure.message));
                    self.requeue(SHORT_REQUEUE_SECONDS);
                    return (self.resting_state(), Reason::CommandFailed);
                }
            },
            None => self.reconcile_children().err(),
        };
        if let Some(error) = &error {
            self.note(format!("The pass stopped: {}.", error.message().replace('\n', ": ").trim_end_matches('.')));
        }
        let old = self.old_status();
        let status = self.calculate_status(error.as_ref());
        let written = match &status {
            Ok(new) => {
                let changed = status_differs(&old, new);
                self.note(format!(
                    "{} of {} worker Pods ready; the status {}.",
                    new.ready_worker_replicas.unwrap_or(0),
                    new.desired_worker_replicas.unwrap_or(0),
                    if changed { "changed and is written" } else { "is unchanged" }
                ));
                if changed {
                    self.write_status(new);
                }
                changed
            }
            Err(message) => {
                self.note(format!("No status this pass: {message}."));
                false
            }
        };
        let seconds = if error.is_some() || status.is_err() || written {
            SHORT_REQUEUE_SECONDS
        } else {
            self.config.raycluster_default_requeue_seconds
        };
        self.requeue(seconds);
        let next = match &status {
            Ok(new) => self.state_of(new),
            Err(_) => self.resting_state(),
        };
        let reason = match (self.from, next) {
            (from, next) if from == next => match (&error, &status) {
                (Some(PassError::Replica { .. }), _) => Reason::ReplicaFailure,
                (Some(PassError::Other(_)), _) | (None, Err(_)) => Reason::ReconcileError,
                (None, Ok(_)) => Reason::Reconciled,
            },
            (State::Suspended, State::Provisioning) => Reason::ResumeRequested,
            (_, State::Provisioned) => Reason::AllPodRunningAndReadyFirstTime,
            (_, State::Suspending) => Reason::RayClusterSuspending,
            (_, State::Suspended) => Reason::RayClusterSuspended,
            _ => Reason::RayClusterPodsProvisioning,
        };
        (next, reason)
    }

    fn write_status(&mut self, status: &RayClusterStatus) {
        match serde_json::to_value(status) {
            Ok(status) => self.commands.push(Command::WriteStatus { status }),
            Err(error) => self.note(format!("The status cannot be encoded: {error}.")),
        }
    }

    /// The failure of a command of the reconcile pass, reported as KubeRay reports it when the call fails: a
    /// Warning Event and the pass's error. None for commands whose failure only asks for another try.
    fn reported(&mut self, failure: &Failure) -> Option<PassError> {
        let (verb, rest) = failure.summary.split_once(' ')?;
        let (kind, target) = rest.split_once(' ')?;
        let error = failure.message.as_str();
        match (verb, kind) {
            ("create", "Pod") if target == head_pod_generate_name(self.name) => {
                self.forget(HEAD_GROUP_NAME, None);
                let message = format!("Failed to create head Pod {}, {error}", self.qualified(target));
                self.event(EventKind::Warning, FAILED_TO_CREATE_HEAD_POD, message);
                Some(PassError::replica(FAILED_CREATE_HEAD_POD, error))
            }
            ("create", "Pod") => {
                let group = self
                    .cluster
                    .spec
                    .worker_groups()
                    .iter()
                    .find(|group| worker_pod_generate_name(self.name, &group.group_name) == target)?
                    .group_name
                    .clone();
                self.forget(&group, None);
                let message = format!("Failed to create worker Pod {}, {error}", self.qualified(target));
                self.event(EventKind::Warning, FAILED_TO_CREATE_WORKER_POD, message);
                Some(PassError::replica(FAILED_CREATE_WORKER_POD, error))
            }
            ("delete", "Pod") => {
                let group = self
                    .memory
                    .expectations
                    .iter()
                    .find(|(_, expectation)| expectation.deletes.iter().any(|name| name == target))
                    .map(|(group, _)| group.clone())
                    .or_else(|| {
                        self.observation.pods.iter().find(|pod| pod.name == target).map(|pod| pod.group.clone())
                    })
                    .unwrap_or_default();
                self.forget(&group, Some(target));
                if group == HEAD_GROUP_NAME {
                    let message = format!("Failed deleting head Pod {}, {error}", self.qualified(target));
                    self.event(EventKind::Warning, FAILED_TO_DELETE_HEAD_POD, message);
                    Some(PassError::replica(FAILED_DELETE_HEAD_POD, error))
                } else {
                    let message = format!("Failed deleting worker Pod {}, {error}", self.qualified(target));
                    self.event(EventKind::Warning, FAILED_TO_DELETE_WORKER_POD, message);
                    Some(PassError::replica(FAILED_DELETE_WORKER_POD, error))
                }
            }
            ("delete-collection", "Pod") => self.reported_collection(&failure.summary, error),
            ("create", "Service") if target == serve_service_name(self.name) => {
                Some(PassError::Other(error.to_string()))
            }
            ("create", "Service" | "ServiceAccount" | "Role" | "RoleBinding" | "Ingress") => {
                let (reason, what) = match kind {
                    "Service" => (FAILED_TO_CREATE_SERVICE, "service"),
                    "ServiceAccount" => (FAILED_TO_CREATE_SERVICE_ACCOUNT, "service account"),
                    "Role" => (FAILED_TO_CREATE_ROLE, "role"),
                    "RoleBinding" => (FAILED_TO_CREATE_ROLE_BINDING, "role binding"),
                    _ => (FAILED_TO_CREATE_INGRESS, "ingress"),
                };
                let message = format!("Failed creating {what} {}, {error}", self.qualified(target));
                self.event(EventKind::Warning, reason, message);
                Some(PassError::Other(error.to_string()))
            }
            _ => None,
        }
    }

    fn reported_collection(&mut self, summary: &str, error: &str) -> Option<PassError> {
        let summary_of = |selection: Selection| {
            Command::DeleteCollection {
                kind: "Pod".to_string(),
                namespace: self.namespace.to_string(),
                labels: selection.labels(self.name),
            }
            .summary()
        };
        if summary == summary_of(Selection::All) {
            let message =
                format!("Failed deleting Pods due to suspension for RayCluster {}, {error}", self.qualified(self.name));
            self.event(EventKind::Warning, FAILED_TO_DELETE_POD_COLLECTION, message);
            return Some(PassError::replica(FAILED_DELETE_ALL_PODS, error));
        }
        let group = self
            .cluster
            .spec
            .worker_groups()
            .iter()
            .find(|group| summary == summary_of(Selection::Group(&group.group_name)))?
            .group_name
            .clone();
        let message = format!(
            "Failed deleting worker Pods for suspended group {group} in RayCluster {}, {error}",
            self.qualified(self.name)
        );
        self.event(EventKind::Warning, FAILED_TO_DELETE_WORKER_POD_COLLECTION, message);
        Some(PassError::replica(FAILED_DELETE_WORKER_POD, error))
    }

    fn create(&mut self, object: &impl Serialize) -> Result<(), PassError> {
        let object = serde_json::to_value(object).map_err(|e| PassError::Other(format!("cannot encode: {e}")))?;
        self.commands.push(Command::Create { object });
        Ok(())
    }

    fn owned(&self, kind: &str, name: &str) -> bool {
        self.observation.owned.iter().any(|object| object.kind == kind && object.name == name)
    }

    /// §2.1 step 6: the sub-reconcilers in KubeRay's order, stopping at the first error.
    fn reconcile_children(&mut self) -> Result<(), PassError> {
        self.reconcile_autoscaler_rbac()?;
        self.reconcile_ingress()?;
        self.reconcile_head_service()?;
        self.reconcile_headless_service()?;
        self.reconcile_serve_service()?;
        self.reconcile_pods()
    }

    fn reconcile_autoscaler_rbac(&mut self) -> Result<(), PassError> {
        let Some(binding) = rbac::autoscaler_role_binding(self.cluster) else { return Ok(()) };
        let account = binding.subjects.iter().flatten().next().map(|s| s.name.clone()).unwrap_or_default();
        if !self.owned("ServiceAccount", &account) {
            match rbac::autoscaler_service_account(self.cluster) {
                Some(service_account) => {
                    self.create(&service_account)?;
                    let message = format!("Created service account {}", self.qualified(&account));
                    self.event(EventKind::Normal, CREATED_SERVICE_ACCOUNT, message);
                }
                None => {
                    let message = format!(
                        "Failed to reconcile RayCluster {}. If users specify ServiceAccountName for the head Pod, they \
                         need to create a ServiceAccount themselves. However, ServiceAccount {account} is not found. \
                         Please create one. See the PR description of https://github.com/ray-project/kuberay/pull/1128 \
                         for more details.",
                        self.qualified(self.name)
                    );
                    self.event(EventKind::Warning, AUTOSCALER_SERVICE_ACCOUNT_NOT_FOUND, message);
                    return Err(PassError::Other(format!("serviceaccounts \"{account}\" not found")));
                }
            }
        }
        if let Some(role) = rbac::autoscaler_role(self.cluster) {
            let name = role.metadata.name.clone().unwrap_or_default();
            if !self.owned("Role", &name) {
                self.create(&role)?;
                self.event(EventKind::Normal, CREATED_ROLE, format!("Created role {}", self.qualified(&name)));
            }
        }
        let name = binding.metadata.name.clone().unwrap_or_default();
        if !self.owned("RoleBinding", &name) {
            self.create(&binding)?;
            let message = format!("Created role binding {}", self.qualified(&name));
            self.event(EventKind::Normal, CREATED_ROLE_BINDING, message);
        }
        Ok(())
    }

    fn reconcile_ingress(&mut self) -> Result<(), PassError> {
        let Some(ingress) = ingress::head_ingress(self.cluster) else { return Ok(()) };
        let name = ingress.metadata.name.clone().unwrap_or_default();
        if !self.owned("Ingress", &name) {
            self.create(&ingress)?;
            self.event(EventKind::Normal, CREATED_INGRESS, format!("Created ingress {}", self.qualified(&name)));
        }
        Ok(())
    }

    /// The Services labelled as this cluster's head Service (`ray.io/cluster`, `ray.io/node-type=head`).
    fn head_services(&self) -> Vec<&super::ServiceView> {
        self.observation
            .services
            .iter()
            .filter(|service| {
                service.labels.get(RAY_CLUSTER_LABEL).map(String::as_str) == Some(self.name)
                    && service.labels.get(RAY_NODE_TYPE_LABEL).map(String::as_str) == Some(NODE_TYPE_HEAD)
            })
            .collect()
    }

    fn reconcile_head_service(&mut self) -> Result<(), PassError> {
        let found: Vec<String> = self.head_services().iter().map(|service| service.name.clone()).collect();
        match found.len() {
            0 => {
                let service = service::head_service(self.cluster, self.config);
                let name = service.metadata.name.clone().unwrap_or_default();
                self.create(&service)?;
                self.event(EventKind::Normal, CREATED_SERVICE, format!("Created service {}", self.qualified(&name)));
                Ok(())
            }
            1 => Ok(()),
            count => Err(PassError::Other(format!("{count} head service found {found:?}"))),
        }
    }

    fn reconcile_headless_service(&mut self) -> Result<(), PassError> {
        let Some(service) = service::headless_worker_service(self.cluster) else { return Ok(()) };
        let labels = service.metadata.labels.clone().unwrap_or_default();
        let exists = self
            .observation
            .services
            .iter()
            .any(|found| labels.iter().all(|(key, value)| found.labels.get(key) == Some(value)));
        if !exists {
            let name = service.metadata.name.clone().unwrap_or_default();
            self.create(&service)?;
            self.event(EventKind::Normal, CREATED_SERVICE, format!("Created service {}", self.qualified(&name)));
        }
        Ok(())
    }

    /// KubeRay creates the serve Service without an Event.
    fn reconcile_serve_service(&mut self) -> Result<(), PassError> {
        let built = service::serve_service(self.cluster);
        if matches!(built, Ok(None)) {
            return Ok(());
        }
        let name = serve_service_name(self.name);
        if self.observation.services.iter().any(|service| service.name == name) {
            return Ok(());
        }
        match built {
            Ok(Some(service)) => self.create(&service),
            Ok(None) => Ok(()),
            Err(error) => Err(PassError::Other(error.to_string())),
        }
    }

    // ---- Pods (§2.2) ----

    fn reconcile_pods(&mut self) -> Result<(), PassError> {
        let conditions = self.old_status().conditions.unwrap_or_default();
        let suspending = is_true(&conditions, RAY_CLUSTER_SUSPENDING);
        let suspended = is_true(&conditions, RAY_CLUSTER_SUSPENDED);
        let gate = self.conditions_gate();
        let suspend = self.cluster.spec.suspend == Some(true);
        if suspending || (!gate && suspend) {
            self.delete_all_pods(Selection::All);
            let message = format!("Deleted Pods for RayCluster {} due to suspension", self.qualified(self.name));
            self.event(EventKind::Normal, DELETED_POD, message);
            self.note("Suspending: every Pod is deleted.");
            return Ok(());
        }
        if gate && suspended {
            self.note("Suspended: no Pods.");
            return Ok(());
        }
        if gate && suspend {
            self.note("Suspension requested: RayClusterSuspending goes True first, then the Pods are deleted.");
            return Ok(());
        }
        self.reconcile_head_pod()?;
        for group in self.cluster.spec.worker_groups() {
            self.reconcile_worker_group(group)?;
        }
        Ok(())
    }

    fn reconcile_head_pod(&mut self) -> Result<(), PassError> {
        if !self.satisfied(HEAD_GROUP_NAME) {
            self.note("The head's creates or deletes are not observed yet: the head waits.");
            return Ok(());
        }
        let heads: Vec<&PodView> = self.observation.pods.iter().filter(|pod| pod.node_type == NODE_TYPE_HEAD).collect();
        match heads.as_slice() {
            [] => {
                let head = pod::head_pod(self.cluster, self.config);
                let generate_name = head.metadata.generate_name.clone().unwrap_or_default();
                self.create(&head)?;
                self.expect_create(HEAD_GROUP_NAME);
                let message = format!("Created head Pod {}", self.qualified(&generate_name));
                self.event(EventKind::Normal, CREATED_HEAD_POD, message);
                self.note("No head Pod: one is created.");
                Ok(())
            }
            [head] => {
                let Some(reason) = should_delete(head, NODE_TYPE_HEAD) else { return Ok(()) };
                let head = (*head).clone();
                self.delete_pod(&head, HEAD_GROUP_NAME);
                let message = format!("Deleted head Pod {}; {}", self.qualified(&head.name), pod_state(&head));
                self.event(EventKind::Normal, DELETED_HEAD_POD, message);
                Err(PassError::Other(reason))
            }
            many => {
                let extra: Vec<PodView> = many
                    .iter()
                    .filter(|pod| pod.phase != "Running" && pod.phase != "Pending")
                    .map(|pod| (*pod).clone())
                    .collect();
                for pod in &extra {
                    self.delete_pod(pod, HEAD_GROUP_NAME);
                }
                self.note(format!("{} head Pods: those neither Running nor Pending are deleted.", many.len()));
                Ok(())
            }
        }
    }

    fn delete_pod(&mut self, pod: &PodView, group: &str) {
        self.commands.push(Command::Delete {
            target: Target { kind: "Pod".to_string(), namespace: self.namespace.to_string(), name: pod.name.clone() },
            uid: Some(pod.uid.clone()).filter(|uid| !uid.is_empty()),
        });
        self.expect_delete(group, &pod.name);
    }

    fn reconcile_worker_group(&mut self, group: &WorkerGroupSpec) -> Result<(), PassError> {
        let group_name = group.group_name.as_str();
        if !self.satisfied(group_name) {
            self.note(format!("Group {group_name} waits for its creates and deletes to be observed."));
            return Ok(());
        }
        if group.suspend == Some(true) {
            self.delete_all_pods(Selection::Group(group_name));
            let message = format!(
                "Deleted all pods for suspended worker group {group_name} in RayCluster {}",
                self.qualified(self.name)
            );
            self.event(EventKind::Normal, DELETED_WORKER_POD, message);
            return Ok(());
        }
        let pods: Vec<PodView> = self.observation.pods.iter().filter(|pod| pod.group == group_name).cloned().collect();
        let unhealthy: Vec<&PodView> =
            pods.iter().filter(|pod| should_delete(pod, NODE_TYPE_WORKER).is_some()).collect();
        for pod in &unhealthy {
            self.delete_pod(pod, group_name);
            let message = format!("Deleted worker Pod {}; {}", self.qualified(&pod.name), pod_state(pod));
            self.event(EventKind::Normal, DELETED_WORKER_POD, message);
        }
        if !unhealthy.is_empty() {
            return Err(PassError::Other(format!("delete {} unhealthy worker Pods", unhealthy.len())));
        }
        // Every pass, whatever the replicas (the autoscaler clears the list, not the operator); a name the
        // observation does not show is already gone, and a Pod is never deleted by name alone.
        let mut deleted = Vec::new();
        for name in group.scale_strategy.iter().flat_map(|s| s.workers_to_delete.iter().flatten()) {
            let Some(pod) = self.observation.pods.iter().find(|pod| pod.name == *name).cloned() else { continue };
            self.delete_pod(&pod, group_name);
            self.event(EventKind::Normal, DELETED_WORKER_POD, format!("Deleted pod {}", self.qualified(name)));
            deleted.push(name.clone());
        }
        let running: Vec<&PodView> = pods.iter().filter(|pod| !deleted.contains(&pod.name)).collect();
        let expected = i64::from(group.desired_replicas()) * i64::from(group.hosts());
        let diff = expected - i64::try_from(running.len()).unwrap_or(i64::MAX);
        if diff > 0 {
            let worker = pod::worker_pod(self.cluster, group, self.config);
            let generate_name = worker.metadata.generate_name.clone().unwrap_or_default();
            for _ in 0..diff {
                self.create(&worker)?;
                self.expect_create(group_name);
                let message = format!("Created worker Pod {}", self.qualified(&generate_name));
                self.event(EventKind::Normal, CREATED_WORKER_POD, message);
            }
            self.note(format!("Group {group_name}: {diff} worker Pods created ({expected} expected)."));
        } else if diff < 0 {
            let autoscaling = self.cluster.spec.autoscaling_enabled();
            if autoscaling && !self.config.enable_random_pod_delete {
                self.note(format!(
                    "Group {group_name} has {} Pods more than {expected}, but the autoscaler alone decides which go.",
                    -diff
                ));
                return Ok(());
            }
            let surplus: Vec<PodView> =
                running.iter().take(usize::try_from(-diff).unwrap_or(usize::MAX)).map(|pod| (*pod).clone()).collect();
            for pod in &surplus {
                self.delete_pod(pod, group_name);
                self.event(EventKind::Normal, DELETED_WORKER_POD, format!("Deleted Pod {}", self.qualified(&pod.name)));
            }
            self.note(format!("Group {group_name}: {} worker Pods deleted ({expected} expected).", surplus.len()));
        }
        Ok(())
    }

    // ---- status (§2.3) ----

    /// KubeRay's `calculateStatus`, from the observation (which does not show this pass's commands yet). Err when
    /// the head Pods or Services make it impossible; nothing is written then.
    fn calculate_status(&self, error: Option<&PassError>) -> Result<RayClusterStatus, String> {
        let cluster = self.cluster;
        let now = &self.now;
        let gate = self.conditions_gate();
        let pods = &self.observation.pods;
        let old = self.old_status();
        let mut new = old.clone();
        let mut conditions = old.conditions.clone().unwrap_or_default();
        if gate {
            match error {
                Some(PassError::Replica { reason, message }) => {
                    set_condition(&mut conditions, RAY_CLUSTER_REPLICA_FAILURE, "True", reason, message, now)
                }
                Some(PassError::Other(_)) => {}
                None => conditions.retain(|condition| condition.type_ != RAY_CLUSTER_REPLICA_FAILURE),
            }
        }
        new.observed_generation = cluster.metadata.generation;
        let workers = || pods.iter().filter(|pod| pod.node_type == NODE_TYPE_WORKER);
        new.ready_worker_replicas = Some(count(workers().filter(|pod| pod.phase == "Running" && pod.is_ready())));
        new.available_worker_replicas = Some(count(workers().filter(|pod| pod.phase == "Running")));
        let groups = cluster.spec.worker_groups();
        let active = || groups.iter().filter(|group| group.suspend != Some(true));
        // Go's int32 arithmetic, wrapping as KubeRay's does; DEVIATIONS 2 multiplies by numOfHosts.
        let desired = groups.iter().fold(0i32, |sum, g| sum.wrapping_add(g.desired_replicas().wrapping_mul(g.hosts())));
        new.desired_worker_replicas = Some(desired);
        new.min_worker_replicas =
            Some(active().fold(0i32, |sum, g| sum.wrapping_add(g.min_replicas.unwrap_or(0).wrapping_mul(g.hosts()))));
        new.max_worker_replicas =
            Some(active().fold(0i32, |sum, g| sum.wrapping_add(g.max_replicas.unwrap_or(0).wrapping_mul(g.hosts()))));
        let resources = desired_resources(cluster);
        let quantity = |amount: Option<&Amount>| Some(Quantity(amount.copied().unwrap_or_default().canonical()));
        new.desired_cpu = quantity(resources.get("cpu"));
        new.desired_memory = quantity(resources.get("memory"));
        let mut gpus = Amount::default();
        for (_, amount) in resources.iter().filter(|(name, amount)| name.ends_with(GPU_SUFFIX) && !amount.is_zero()) {
            gpus.add(*amount);
        }
        new.desired_gpu = quantity(Some(&gpus));
        new.desired_tpu = quantity(resources.get(TPU_RESOURCE));

        let all_running = all_pods_running(pods);
        if error.is_none() && i64::try_from(pods.len()).ok() == Some(i64::from(desired) + 1) && all_running {
            new.state = Some(cluster_state::READY.to_string());
        }
        // DEVIATIONS 15 keeps validation problems in `reason`; a valid spec clears them (KubeRay clears it on ready).
        new.reason = None;

        let heads: Vec<&PodView> = pods.iter().filter(|pod| pod.node_type == NODE_TYPE_HEAD).collect();
        let head = match heads.as_slice() {
            [] => None,
            [head] => Some(*head),
            _ => return Err(format!("found multiple heads. filter labels {}", self.head_filter())),
        };
        if gate {
            match head {
                None => set_condition(
                    &mut conditions,
                    HEAD_POD_READY,
                    "False",
                    HEAD_POD_NOT_FOUND,
                    "Head Pod not found",
                    now,
                ),
                Some(head) => {
                    let (status, reason, message) = match &head.ready {
                        Some(ready) => {
                            let reason = match ready.reason.as_str() {
                                "" if ready.status == "True" => HEAD_POD_RUNNING_AND_READY,
                                "" => UNKNOWN_REASON,
                                reason => reason,
                            };
                            (ready.status.as_str(), reason, ready.message.as_str())
                        }
                        None => ("False", UNKNOWN_REASON, ""),
                    };
                    set_condition(&mut conditions, HEAD_POD_READY, status, reason, message, now);
                }
            }
            let suspending = is_true(&conditions, RAY_CLUSTER_SUSPENDING);
            let suspended = is_true(&conditions, RAY_CLUSTER_SUSPENDED);
            if !is_true(&conditions, RAY_CLUSTER_PROVISIONED) && !suspended {
                if all_running {
                    let message = "All Ray Pods are ready for the first time";
                    set_condition(
                        &mut conditions,
                        RAY_CLUSTER_PROVISIONED,
                        "True",
                        ALL_POD_RUNNING_AND_READY_FIRST_TIME,
                        message,
                        now,
                    );
                } else {
                    let message = "RayCluster Pods are being provisioned for first time";
                    set_condition(
                        &mut conditions,
                        RAY_CLUSTER_PROVISIONED,
                        "False",
                        RAY_CLUSTER_PODS_PROVISIONING,
                        message,
                        now,
                    );
                }
            }
            let suspend = cluster.spec.suspend == Some(true);
            if suspending {
                if pods.is_empty() {
                    let message = "RayCluster has been suspended";
                    set_condition(
                        &mut conditions,
                        RAY_CLUSTER_PROVISIONED,
                        "False",
                        RAY_CLUSTER_PODS_PROVISIONING,
                        message,
                        now,
                    );
                    set_condition(&mut conditions, RAY_CLUSTER_SUSPENDING, "False", RAY_CLUSTER_SUSPENDING, "", now);
                    set_condition(&mut conditions, RAY_CLUSTER_SUSPENDED, "True", RAY_CLUSTER_SUSPENDED, "", now);
                }
            } else if suspended {
                // DEVIATIONS 5: removing `spec.suspend` resumes, as `false` does.
                if !suspend {
                    set_condition(&mut conditions, RAY_CLUSTER_SUSPENDED, "False", RAY_CLUSTER_SUSPENDED, "", now);
                }
            } else {
                set_condition(&mut conditions, RAY_CLUSTER_SUSPENDED, "False", RAY_CLUSTER_SUSPENDED, "", now);
                let status = if suspend { "True" } else { "False" };
                set_condition(&mut conditions, RAY_CLUSTER_SUSPENDING, status, RAY_CLUSTER_SUSPENDING, "", now);
            }
        }
        new.conditions = Some(conditions).filter(|conditions| !conditions.is_empty());
        if cluster.spec.suspend == Some(true) && pods.is_empty() {
            new.state = Some(cluster_state::SUSPENDED.to_string());
        }

        let head_services = self.head_services();
        if let Some(service) = head_services.first() {
            let mut endpoints = new.endpoints.clone().unwrap_or_default();
            for port in service.ports.iter().filter(|port| !port.name.is_empty()) {
                let value = match (port.node_port.filter(|port| *port != 0), port.target_port.as_deref()) {
                    (Some(node_port), _) => node_port.to_string(),
                    (None, Some(target)) if !target.is_empty() && target != "0" => target.to_string(),
                    _ => continue,
                };
                endpoints.insert(port.name.clone(), value);
            }
            new.endpoints = Some(endpoints).filter(|endpoints| !endpoints.is_empty());
        }
        let filter = self.head_service_filter();
        let service = match head_services.as_slice() {
            [] => {
                return Err(format!("unable to find head service. cluster name {}, filter labels {filter}", self.name));
            }
            [service] => *service,
            _ => {
                return Err(format!(
                    "found multiple head services. cluster name {}, filter labels {filter}",
                    self.name
                ));
            }
        };
        let service_ip = match service.cluster_ip.as_str() {
            "" => return Err(format!("head service IP is empty. cluster name {}, filter labels {filter}", self.name)),
            "None" => head.map(|head| head.pod_ip.clone()).unwrap_or_default(),
            ip => ip.to_string(),
        };
        let non_empty = |value: String| Some(value).filter(|value| !value.is_empty());
        new.head = Some(HeadInfo {
            pod_ip: head.and_then(|head| non_empty(head.pod_ip.clone())),
            pod_name: head.and_then(|head| non_empty(head.name.clone())),
            service_ip: non_empty(service_ip),
            service_name: non_empty(service.name.clone()),
        });

        new.last_update_time = Some(now.clone());
        if old.state != new.state
            && let Some(state) = &new.state
        {
            new.state_transition_times.get_or_insert_with(BTreeMap::new).insert(state.clone(), now.clone());
        }
        Ok(new)
    }

    /// KubeRay prints its label filters as Go prints a map.
    fn head_filter(&self) -> String {
        format!("map[{RAY_CLUSTER_LABEL}:{} {RAY_NODE_TYPE_LABEL}:{NODE_TYPE_HEAD}]", self.name)
    }

    fn head_service_filter(&self) -> String {
        format!("[{} {}]", self.namespace, self.head_filter())
    }
}

/// Whether two statuses differ in what KubeRay compares (`inconsistentRayClusterStatus`): not `lastUpdateTime`,
/// `observedGeneration` or the desired resources. Absent and zero values are the same, as Go's omitempty makes them.
fn status_differs(old: &RayClusterStatus, new: &RayClusterStatus) -> bool {
    let compared = |status: &RayClusterStatus| {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let number = |value: Option<i32>| value.unwrap_or(0);
        let head = status.head.clone().unwrap_or_default();
        (
            (text(&status.state), text(&status.reason)),
            [
                number(status.ready_worker_replicas),
                number(status.available_worker_replicas),
                number(status.desired_worker_replicas),
                number(status.min_worker_replicas),
                number(status.max_worker_replicas),
            ],
            status.endpoints.clone().unwrap_or_default(),
            [text(&head.pod_ip), text(&head.pod_name), text(&head.service_ip), text(&head.service_name)],
            status.conditions.clone().unwrap_or_default(),
        )
    };
    compared(old) != compared(new)
}

/// meta.SetStatusCondition: `lastTransitionTime` moves only when the status changes.
fn set_condition(conditions: &mut Vec<Condition>, type_: &str, status: &str, reason: &str, message: &str, now: &Time) {
    match conditions.iter_mut().find(|condition| condition.type_ == type_) {
        Some(condition) => {
            if condition.status != status {
                condition.status = status.to_string();
                condition.last_transition_time = now.clone();
            }
            condition.reason = reason.to_string();
            condition.message = message.to_string();
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now.clone(),
            observed_generation: None,
        }),
    }
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|condition| condition.type_ == type_ && condition.status == "True")
}

/// KubeRay's `CheckAllPodsRunning`: at least one Pod, all Running, none with a Ready condition that is not True.
fn all_pods_running(pods: &[PodView]) -> bool {
    !pods.is_empty()
        && pods
            .iter()
            .all(|pod| pod.phase == "Running" && pod.ready.as_ref().is_none_or(|ready| ready.status == "True"))
}

/// KubeRay's `shouldDeletePod`: why the Pod must go, or None to keep it.
fn should_delete(pod: &PodView, node_type: &str) -> Option<String> {
    let name = &pod.name;
    if pod.phase == "Failed" || pod.phase == "Succeeded" {
        return Some(format!(
            "The {node_type} Pod {name} status is {} which is a terminal state. KubeRay will delete the Pod and create \
             new Pods in the next reconciliation if necessary.",
            pod.phase
        ));
    }
    if pod.phase == "Running" && pod.ray_container_terminated && pod.restart_policy == "Never" {
        return Some(format!(
            "The Pod status of the {node_type} Pod {name} is Running, and the Ray container terminated status is \
             terminated. The container is unable to restart due to its restart policy Never, so KubeRay will delete it."
        ));
    }
    None
}

/// The part of KubeRay's deletion Events that describes the Pod.
fn pod_state(pod: &PodView) -> String {
    let terminated = if pod.ray_container_terminated { "terminated" } else { "nil" };
    format!(
        "Pod status: {}; Pod restart policy: {}; Ray container terminated status: {terminated}",
        pod.phase, pod.restart_policy
    )
}

fn count<'a>(pods: impl Iterator<Item = &'a PodView>) -> i32 {
    i32::try_from(pods.count()).unwrap_or(i32::MAX)
}

/// §2.3's desired resources, by resource name: the head Pod's plus `replicas × numOfHosts` times each group's Pod's
/// (DEVIATIONS 2), suspended groups excluded. Per container the request is preferred over the limit.
fn desired_resources(cluster: &RayCluster) -> BTreeMap<String, Amount> {
    let mut totals: BTreeMap<String, Amount> = BTreeMap::new();
    let mut add_pod = |template: &k8s_openapi::api::core::v1::PodTemplateSpec, times: i64| {
        if times <= 0 {
            return;
        }
        let mut pod: Vec<(String, Amount)> = Vec::new();
        for container in template.spec.iter().flat_map(|spec| spec.containers.iter()) {
            let resources = container.resources.as_ref();
            let requests = resources.and_then(|r| r.requests.clone()).unwrap_or_default();
            let limits = resources.and_then(|r| r.limits.clone()).unwrap_or_default();
            let limits_only = limits.into_iter().filter(|(name, _)| !requests.contains_key(name));
            for (name, quantity) in requests.clone().into_iter().chain(limits_only) {
                let Some(amount) = Amount::parse(&quantity.0) else { continue };
                match pod.iter_mut().find(|(known, _)| *known == name) {
                    Some((_, total)) => total.add(amount),
                    None => pod.push((name, amount)),
                }
            }
        }
        for (name, amount) in pod {
            totals.entry(name).or_default().add(amount.times(times));
        }
    };
    add_pod(&cluster.spec.head_group_spec.template, 1);
    for group in cluster.spec.worker_groups().iter().filter(|group| group.suspend != Some(true)) {
        add_pod(&group.template, i64::from(group.replicas.unwrap_or(0)) * i64::from(group.hosts()));
    }
    totals
}

/// DEVIATIONS 9: `ray.io/gcs-ft-deletion-timeout` in seconds; 300 when absent or not a number of seconds.
fn deletion_timeout_seconds(cluster: &RayCluster) -> i64 {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(GCS_FT_DELETION_TIMEOUT_ANNOTATION))
        .and_then(|value| value.trim().parse::<i64>().ok())
        .filter(|seconds| *seconds >= 0)
        .unwrap_or(DEFAULT_GCS_FT_DELETION_TIMEOUT_SECONDS)
}

/// The summary of a create of `kind` named `name`, as `Command::summary` writes it.
fn create_summary(kind: &str, name: &str) -> String {
    Command::Create { object: json!({"kind": kind, "metadata": {"name": name}}) }.summary()
}

/// Times on the wire have whole seconds; a step works with what a replay of the journal will see.
fn whole_seconds(time: &Time) -> Time {
    jiff::Timestamp::from_second(time.0.as_second()).map(Time).unwrap_or_else(|_| time.clone())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    use super::*;
    use crate::api::raycluster::{HeadGroupSpec, RayClusterSpec};
    use crate::machine::observe::{ReadyCondition, ServicePortView, ServiceView};
    use crate::machine::{ObjectRef, Outcome};

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_735_689_600 + second).unwrap())
    }

    type Resources<'a> = &'a [(&'a str, &'a str)];

    fn template(container: &str, requests: Resources, limits: Resources) -> PodTemplateSpec {
        let list = |pairs: Resources| {
            Some(pairs.iter().map(|(name, value)| (name.to_string(), Quantity(value.to_string()))).collect())
                .filter(|list: &BTreeMap<String, Quantity>| !list.is_empty())
        };
        let container = Container {
            name: container.to_string(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Container::default()
        };
        PodTemplateSpec { metadata: None, spec: Some(PodSpec { containers: vec![container], ..PodSpec::default() }) }
    }

    fn group(name: &str, replicas: i32) -> WorkerGroupSpec {
        WorkerGroupSpec {
            group_name: name.to_string(),
            replicas: Some(replicas),
            min_replicas: Some(0),
            max_replicas: Some(10),
            template: template("ray-worker", &[], &[]),
            num_of_hosts: 1,
            ..WorkerGroupSpec::default()
        }
    }

    fn cluster(groups: Vec<WorkerGroupSpec>) -> RayCluster {
        let spec = RayClusterSpec {
            head_group_spec: HeadGroupSpec { template: template("ray-head", &[], &[]), ..HeadGroupSpec::default() },
            worker_group_specs: Some(groups),
            ..RayClusterSpec::default()
        };
        let mut cluster = RayCluster::new("c", spec);
        cluster.metadata = ObjectMeta {
            name: Some("c".to_string()),
            namespace: Some("ns".to_string()),
            uid: Some("uid-c".to_string()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        cluster
    }

    fn pod(name: &str, node_type: &str, group: &str, phase: &str) -> PodView {
        PodView {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            node_type: node_type.to_string(),
            group: group.to_string(),
            phase: phase.to_string(),
            ready: Some(ReadyCondition { status: "True".to_string(), ..ReadyCondition::default() }),
            ..PodView::default()
        }
    }

    fn head_service() -> ServiceView {
        ServiceView {
            name: "c-head-svc".to_string(),
            labels: BTreeMap::from([
                (RAY_CLUSTER_LABEL.to_string(), "c".to_string()),
                (RAY_NODE_TYPE_LABEL.to_string(), NODE_TYPE_HEAD.to_string()),
            ]),
            cluster_ip: "None".to_string(),
            ports: vec![ServicePortView { name: "dashboard".to_string(), port: 8265, ..ServicePortView::default() }],
            ..ServiceView::default()
        }
    }

    fn input(cluster: RayCluster, pods: Vec<PodView>, trigger: Trigger) -> Input {
        Input {
            object: ObjectRef {
                kind: MachineKind::RayCluster,
                namespace: "ns".to_string(),
                name: "c".to_string(),
                uid: "uid-c".to_string(),
            },
            trigger,
            now: at(100),
            observation: Observation::RayCluster(ClusterObservation {
                cluster: Some(cluster),
                pods,
                services: vec![head_service()],
                ..ClusterObservation::default()
            }),
        }
    }

    fn machine() -> RayClusterMachine {
        RayClusterMachine { config: OperatorConfig::default() }
    }

    fn running_cluster_pods() -> Vec<PodView> {
        vec![
            pod("c-head-a", NODE_TYPE_HEAD, HEAD_GROUP_NAME, "Running"),
            pod("c-w-worker-b", NODE_TYPE_WORKER, "w", "Running"),
        ]
    }

    fn written_status(decision: &Decision) -> Option<RayClusterStatus> {
        decision.commands.iter().find_map(|command| match command {
            Command::WriteStatus { status } => serde_json::from_value(status.clone()).ok(),
            _ => None,
        })
    }

    fn summaries(decision: &Decision) -> Vec<String> {
        decision.commands.iter().map(Command::summary).collect()
    }

    #[test]
    fn the_transition_table_is_the_definition_file() {
        assert_eq!(RayClusterMachine::transitions(), fsm::definition("raycluster").unwrap().transitions);
    }

    #[rstest]
    #[case::failed(
        "Failed",
        false,
        "",
        Some(
            "The worker Pod p status is Failed which is a terminal state. KubeRay will delete the Pod and create new Pods in the next reconciliation if necessary."
        )
    )]
    #[case::succeeded(
        "Succeeded",
        false,
        "Always",
        Some(
            "The worker Pod p status is Succeeded which is a terminal state. KubeRay will delete the Pod and create new Pods in the next reconciliation if necessary."
        )
    )]
    #[case::terminated_never(
        "Running",
        true,
        "Never",
        Some(
            "The Pod status of the worker Pod p is Running, and the Ray container terminated status is terminated. The container is unable to restart due to its restart policy Never, so KubeRay will delete it."
        )
    )]
    #[case::terminated_but_restarts("Running", true, "Always", None)]
    #[case::running("Running", false, "Never", None)]
    #[case::pending("Pending", false, "", None)]
    fn should_delete_follows_kuberay(
        #[case] phase: &str,
        #[case] terminated: bool,
        #[case] restart_policy: &str,
        #[case] reason: Option<&str>,
    ) {
        let pod = PodView {
            name: "p".to_string(),
            phase: phase.to_string(),
            ray_container_terminated: terminated,
            restart_policy: restart_policy.to_string(),
            ..PodView::default()
        };
        assert_eq!(should_delete(&pod, NODE_TYPE_WORKER).as_deref(), reason);
    }

    #[rstest]
    #[case::same_status_keeps_the_time("False", "Other", at(0))]
    #[case::new_status_moves_it("True", "Other", at(50))]
    fn set_condition_moves_the_transition_time_only_with_the_status(
        #[case] status: &str,
        #[case] reason: &str,
        #[case] time: Time,
    ) {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, HEAD_POD_READY, "False", "First", "m", &at(0));
        set_condition(&mut conditions, HEAD_POD_READY, status, reason, "n", &at(50));
        assert_eq!(conditions.len(), 1);
        assert_eq!((conditions[0].status.as_str(), conditions[0].reason.as_str()), (status, reason));
        assert_eq!(conditions[0].message, "n");
        assert_eq!(conditions[0].last_transition_time, time);
    }

    #[rstest]
    #[case::bookkeeping_only(|s: &mut RayClusterStatus| { s.last_update_time = Some(at(9)); s.observed_generation = Some(7); }, false)]
    #[case::zero_is_absent(|s: &mut RayClusterStatus| s.ready_worker_replicas = Some(0), false)]
    #[case::empty_endpoints_are_absent(|s: &mut RayClusterStatus| s.endpoints = Some(BTreeMap::new()), false)]
    #[case::desired_resources_are_not_compared(|s: &mut RayClusterStatus| s.desired_cpu = Some(Quantity("4".into())), false)]
    #[case::count(|s: &mut RayClusterStatus| s.available_worker_replicas = Some(1), true)]
    #[case::state(|s: &mut RayClusterStatus| s.state = Some("ready".into()), true)]
    #[case::head(|s: &mut RayClusterStatus| s.head = Some(HeadInfo { pod_ip: Some("10.0.0.1".into()), ..HeadInfo::default() }), true)]
    #[case::condition(|s: &mut RayClusterStatus| set_condition(s.conditions.get_or_insert_with(Vec::new), HEAD_POD_READY, "True", "r", "", &at(0)), true)]
    fn status_writes_follow_what_kuberay_compares(#[case] change: fn(&mut RayClusterStatus), #[case] differs: bool) {
        let old = RayClusterStatus::default();
        let mut new = old.clone();
        change(&mut new);
        assert_eq!(status_differs(&old, &new), differs);
    }

    #[test]
    fn desired_resources_prefer_requests_count_hosts_and_skip_suspended_groups() {
        let mut cluster = cluster(vec![
            WorkerGroupSpec {
                template: template(
                    "ray-worker",
                    &[("cpu", "500m")],
                    &[("cpu", "2"), ("memory", "1Gi"), ("nvidia.com/gpu", "1")],
                ),
                num_of_hosts: 2,
                ..group("multi", 3)
            },
            WorkerGroupSpec {
                suspend: Some(true),
                template: template("ray-worker", &[("cpu", "8")], &[]),
                ..group("off", 1)
            },
        ]);
        cluster.spec.head_group_spec.template =
            template("ray-head", &[("cpu", "1"), ("memory", "2Gi")], &[("cpu", "1")]);
        let resources = desired_resources(&cluster);
        let printed: BTreeMap<&str, String> = resources.iter().map(|(k, v)| (k.as_str(), v.canonical())).collect();
        assert_eq!(
            printed,
            BTreeMap::from([
                ("cpu", "4".to_string()),
                ("memory", "8Gi".to_string()),
                ("nvidia.com/gpu", "6".to_string())
            ])
        );
    }

    #[rstest]
    #[case::absent(None, 300)]
    #[case::given(Some("120"), 120)]
    #[case::not_a_number(Some("2m"), 300)]
    #[case::negative(Some("-5"), 300)]
    fn deletion_timeout_comes_from_the_annotation(#[case] value: Option<&str>, #[case] seconds: i64) {
        let mut cluster = cluster(Vec::new());
        if let Some(value) = value {
            cluster.metadata.annotations =
                Some(BTreeMap::from([(GCS_FT_DELETION_TIMEOUT_ANNOTATION.to_string(), value.to_string())]));
        }
        assert_eq!(deletion_timeout_seconds(&cluster), seconds);
    }

    /// A failed command of the reconcile pass is reported with KubeRay's Event and, for a Pod, `ReplicaFailure`.
    #[rstest]
    #[case::head_create(
        "create Pod c-head-",
        Reason::ReplicaFailure,
        Some(FAILED_CREATE_HEAD_POD),
        Some(FAILED_TO_CREATE_HEAD_POD)
    )]
    #[case::worker_create(
        "create Pod c-w-worker-",
        Reason::ReplicaFailure,
        Some(FAILED_CREATE_WORKER_POD),
        Some(FAILED_TO_CREATE_WORKER_POD)
    )]
    #[case::head_delete(
        "delete Pod c-head-a",
        Reason::ReplicaFailure,
        Some(FAILED_DELETE_HEAD_POD),
        Some(FAILED_TO_DELETE_HEAD_POD)
    )]
    #[case::worker_delete(
        "delete Pod c-w-worker-b",
        Reason::ReplicaFailure,
        Some(FAILED_DELETE_WORKER_POD),
        Some(FAILED_TO_DELETE_WORKER_POD)
    )]
    #[case::suspension(
        "delete-collection Pod ray.io/cluster=c",
        Reason::ReplicaFailure,
        Some(FAILED_DELETE_ALL_PODS),
        Some(FAILED_TO_DELETE_POD_COLLECTION)
    )]
    #[case::suspended_group(
        "delete-collection Pod ray.io/cluster=c,ray.io/group=w",
        Reason::ReplicaFailure,
        Some(FAILED_DELETE_WORKER_POD),
        Some(FAILED_TO_DELETE_WORKER_POD_COLLECTION)
    )]
    #[case::service("create Service c-head-svc", Reason::ReconcileError, None, Some(FAILED_TO_CREATE_SERVICE))]
    #[case::role("create Role c", Reason::ReconcileError, None, Some(FAILED_TO_CREATE_ROLE))]
    #[case::serve_service_has_no_event("create Service c-serve-svc", Reason::ReconcileError, None, None)]
    #[case::status_write("write-status", Reason::CommandFailed, None, None)]
    fn failed_commands_are_reported(
        #[case] command: &str,
        #[case] reason: Reason,
        #[case] replica_failure: Option<&str>,
        #[case] event: Option<&str>,
    ) {
        let mut cluster = cluster(vec![group("w", 1)]);
        cluster.status = Some(RayClusterStatus {
            conditions: Some(vec![Condition {
                type_: RAY_CLUSTER_PROVISIONED.to_string(),
                status: "True".to_string(),
                reason: ALL_POD_RUNNING_AND_READY_FIRST_TIME.to_string(),
                message: String::new(),
                last_transition_time: at(0),
                observed_generation: None,
            }]),
            ..RayClusterStatus::default()
        });
        let outcome = Outcome::Failed { message: "boom".to_string() };
        let trigger = Trigger::Outcome { command: command.to_string(), outcome };
        let memory = Memory { state: "Provisioned".to_string(), ..Memory::default() };
        let decision = machine().step(&memory, &input(cluster, running_cluster_pods(), trigger));
        assert_eq!((decision.next.as_str(), decision.reason.as_str()), ("Provisioned", reason.name()));
        let events: Vec<&str> = decision
            .commands
            .iter()
            .filter_map(|command| match command {
                Command::RecordEvent { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(events, event.into_iter().collect::<Vec<_>>());
        let failure = written_status(&decision)
            .and_then(|status| status.conditions)
            .and_then(|conditions| conditions.into_iter().find(|c| c.type_ == RAY_CLUSTER_REPLICA_FAILURE));
        assert_eq!(failure.as_ref().map(|c| c.reason.as_str()), replica_failure);
        if let Some(failure) = failure {
            assert_eq!(failure.message, format!("{}\nboom", failure.reason));
        }
        assert_eq!(summaries(&decision).last().map(String::as_str), Some("requeue 2s"));
    }

    #[test]
    fn a_conflict_is_a_failure_with_the_api_servers_words() {
        let trigger = Trigger::Outcome { command: "create Pod c-head-".to_string(), outcome: Outcome::Conflict };
        let decision = machine().step(&Memory::default(), &input(cluster(vec![group("w", 1)]), Vec::new(), trigger));
        let message = written_status(&decision)
            .and_then(|status| status.conditions)
            .and_then(|conditions| conditions.into_iter().find(|c| c.type_ == RAY_CLUSTER_REPLICA_FAILURE))
            .map(|condition| condition.message);
        assert_eq!(message, Some(format!("{FAILED_CREATE_HEAD_POD}\n{CONFLICT_MESSAGE}")));
    }

    #[rstest]
    #[case::new_pod_meets_a_create(vec!["c-w-worker-old", "c-w-worker-new"], 10, None)]
    #[case::unseen_create_waits(vec!["c-w-worker-old"], 10, Some(1))]
    #[case::unseen_create_is_given_up_after_30s(vec!["c-w-worker-old"], 30, None)]
    fn creates_are_expected_until_a_new_pod_shows_or_30s_pass(
        #[case] pods: Vec<&str>,
        #[case] seconds_later: i64,
        #[case] creates_left: Option<u32>,
    ) {
        let expectation = Expectation {
            creates: 1,
            seen: vec!["c-w-worker-old".to_string()],
            since: Some(at(100 - seconds_later)),
            ..Expectation::default()
        };
        let memory = Memory {
            state: "Provisioned".to_string(),
            expectations: BTreeMap::from([("w".to_string(), expectation)]),
            ..Memory::default()
        };
        let mut observed = vec![pod("c-head-a", NODE_TYPE_HEAD, HEAD_GROUP_NAME, "Running")];
        observed.extend(pods.iter().map(|name| pod(name, NODE_TYPE_WORKER, "w", "Running")));
        let cluster = cluster(vec![group("w", 2)]);
        let decision = machine().step(&memory, &input(cluster, observed, Trigger::Resync));
        let created = summaries(&decision).iter().filter(|s| s.starts_with("create Pod")).count();
        match creates_left {
            Some(left) => {
                assert_eq!(decision.memory.expectations.get("w").map(|e| e.creates), Some(left));
                assert_eq!(created, 0, "the group waits");
            }
            None => assert_eq!(created, 2 - pods.len()),
        }
    }

    #[rstest]
    #[case::ready(Some(false), Some("ready"), State::Provisioned)]
    #[case::suspend_requested(Some(true), Some("ready"), State::Suspending)]
    #[case::suspended(Some(true), Some("suspended"), State::Suspended)]
    #[case::resumed(None, Some("suspended"), State::Provisioning)]
    #[case::new(None, None, State::Provisioning)]
    fn without_conditions_the_state_comes_from_status_state(
        #[case] suspend: Option<bool>,
        #[case] state: Option<&str>,
        #[case] expected: State,
    ) {
        let mut cluster = cluster(Vec::new());
        cluster.spec.suspend = suspend;
        let config = OperatorConfig {
            feature_gates: crate::config::FeatureGates::default().with(Feature::RayClusterStatusConditions, false),
            ..OperatorConfig::default()
        };
        let input = input(cluster.clone(), Vec::new(), Trigger::Resync);
        let Observation::RayCluster(observation) = &input.observation else { unreachable!() };
        let pass = Pass {
            config: &config,
            input: &input,
            observation,
            cluster: &cluster,
            namespace: "ns",
            name: "c",
            now: at(0),
            from: State::New,
            memory: Memory::default(),
            commands: Vec::new(),
            notes: Vec::new(),
        };
        let status = RayClusterStatus { state: state.map(str::to_string), ..RayClusterStatus::default() };
        assert_eq!(pass.state_of(&status), expected);
    }

    #[test]
    fn an_unknown_memory_state_is_new() {
        assert_eq!(State::of_memory(&Memory { state: "Bogus".to_string(), ..Memory::default() }), State::New);
        assert_eq!(State::of_memory(&Memory::default()), State::New);
    }

    #[rstest]
    #[case::plain(None, false, &[])]
    #[case::autoscaler(None, true, &[("ServiceAccount", "c"), ("Role", "c"), ("RoleBinding", "c")])]
    #[case::autoscaler_with_users_account(Some("mine"), true, &[("ServiceAccount", "mine"), ("Role", "c"), ("RoleBinding", "c")])]
    fn existence_checks_name_what_the_autoscaler_rbac_reads(
        #[case] account: Option<&str>,
        #[case] autoscaling: bool,
        #[case] expected: &[(&str, &str)],
    ) {
        let mut cluster = cluster(vec![group("g", 1)]);
        cluster.spec.enable_in_tree_autoscaling = Some(autoscaling);
        if let Some(spec) = cluster.spec.head_group_spec.template.spec.as_mut() {
            spec.service_account_name = account.map(str::to_string);
        }
        let checks: Vec<(String, String)> =
            existence_checks(&cluster).into_iter().map(|object| (object.kind, object.name)).collect();
        let expected: Vec<(String, String)> = expected.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect();
        assert_eq!(checks, expected);
    }
}
