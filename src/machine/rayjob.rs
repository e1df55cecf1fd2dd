//! The RayJob lifecycle machine: KubeRay v1.3.0's RayJob controller (spec §3) with DEVIATIONS 1, 4, 6, 7, 8, 11, 12
//! and 14, as a pure step from the engine's memory and an observation to a Decision. Its states, guards and
//! transitions are `state-machines/rayjob.yaml`; [`RayJobMachine::transitions`] is the same table as data.
//!
//! One step is one pass of KubeRay's reconcile (§3.1): managedBy, deletion (stop the Ray job, then drop the
//! finalizer), validation (DEVIATIONS 4: `ValidationFailed` until a new generation), the switch on
//! `status.jobDeploymentStatus`, the backoff check, and the status, written when anything in it changed (KubeRay
//! writes only when `jobStatus` or `jobDeploymentStatus` changed; DEVIATIONS 8's failure start time needs more). The
//! Decision's state is read off the status the step leaves behind, so it never disagrees with the API server.
//!
//! What the machine expects of the executor: as for the RayCluster machine, it runs a Decision's commands in order,
//! stops at the first that fails and reports it as an Input whose trigger is `Outcome { command: <its summary>,
//! outcome }`; `AlreadyExists` on a create and `NotFound` on a delete count as success. Two commands go to the Ray
//! dashboard at `address` (`host:port`, `status.dashboardURL`): `SubmitJob` POSTs the body to `/api/jobs/` — a
//! dashboard that already knows the submission id is a success too, since HTTPMode resubmits whenever the job is not
//! found (§3.4) — and `StopJob` POSTs `/api/jobs/<id>/stop`. A failed `StopJob` during deletion is only reported: the
//! next step removes the finalizer anyway (best effort, as KubeRay).
//!
//! What the machine expects of the runtime: whenever the RayJob has a dashboard URL and a job id and is Running (or
//! Waiting with a job id), the runtime asks the dashboard `GET /api/jobs/<status.jobId>` before the step and puts the
//! answer in the observation's `dashboard`, so that the answer is journaled with the Input like a watch event and a
//! replay decides the same. `RequeueAfter` comes back as the timer `requeue`; the deadlines, the status-check timeout
//! and the TTL are timers in the memory, computed from times in the status, so they survive a restart.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::fsm;
use super::fsm::To;
use super::observe::{DashboardAnswer, DashboardJob, JobObservation};
use super::{Command, Decision, EventKind, Input, Machine, MachineKind, Memory, Observation, Outcome, Target, Trigger};
use crate::api::constants::*;
use crate::api::rayjob::{DeletionPolicy, JobDeploymentStatus, JobStatus, RayJobStatus, SubmissionMode};
use crate::api::validation::{validate_ray_job, validate_ray_job_status};
use crate::api::{RayCluster, RayJob};
use crate::build::cluster::{cluster_for_rayjob, rayjob_cluster_name, rayjob_submission_id};
use crate::build::names::service_fqdn;
use crate::build::submitter::submitter_job;
use crate::config::{Feature, OperatorConfig};

/// The timer a `RequeueAfter` command comes back as.
pub const REQUEUE_TIMER: &str = "requeue";
/// `status.startTime` + `activeDeadlineSeconds`.
pub const ACTIVE_DEADLINE_TIMER: &str = "active-deadline";
/// DEVIATIONS 7: `status.startTime` + `preRunningDeadlineSeconds`.
pub const PRE_RUNNING_DEADLINE_TIMER: &str = "pre-running-deadline";
/// DEVIATIONS 8: `status.jobStatusCheckFailureStartTime` + `RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS`.
pub const STATUS_CHECK_TIMER: &str = "status-check-timeout";
/// §3.5: `status.endTime` + `ttlSecondsAfterFinished`, when something is to be deleted then.
pub const TTL_TIMER: &str = "ttl";

/// KubeRay's `RayJobDefaultRequeueDuration`.
const REQUEUE_SECONDS: u64 = 3;
/// KubeRay's `RayJobDefaultClusterSelectorKey`.
const CLUSTER_SELECTOR_KEY: &str = "ray.io/cluster";
// Reasons and Event reasons KubeRay (v1.3.0 to v1.7) uses that `api::constants` does not list.
const DELETED_RAY_JOB_SUBMITTER: &str = "DeletedRayJobSubmitter";
const VALIDATION_FAILED: &str = "ValidationFailed";
const APP_FAILED: &str = "AppFailed";
const SUBMISSION_FAILED: &str = "SubmissionFailed";
const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
const PRE_RUNNING_DEADLINE_EXCEEDED: &str = "PreRunningDeadlineExceeded";
const JOB_STATUS_CHECK_TIMEOUT_EXCEEDED: &str = "JobStatusCheckTimeoutExceeded";

pub struct RayJobMachine {
    pub config: OperatorConfig,
}

/// The machine's states, as `state-machines/rayjob.yaml` spells them: the `JobDeploymentStatus` values (`""` is
/// New), plus Unmanaged, Deleting and Deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    New,
    Unmanaged,
    Initializing,
    Waiting,
    Running,
    Complete,
    Failed,
    Suspending,
    Suspended,
    Retrying,
    ValidationFailed,
    Deleting,
    Deleted,
}

impl State {
    pub const ALL: [State; 13] = [
        State::New,
        State::Unmanaged,
        State::Initializing,
        State::Waiting,
        State::Running,
        State::Complete,
        State::Failed,
        State::Suspending,
        State::Suspended,
        State::Retrying,
        State::ValidationFailed,
        State::Deleting,
        State::Deleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::New => "New",
            State::Unmanaged => "Unmanaged",
            State::Initializing => "Initializing",
            State::Waiting => "Waiting",
            State::Running => "Running",
            State::Complete => "Complete",
            State::Failed => "Failed",
            State::Suspending => "Suspending",
            State::Suspended => "Suspended",
            State::Retrying => "Retrying",
            State::ValidationFailed => "ValidationFailed",
            State::Deleting => "Deleting",
            State::Deleted => "Deleted",
        }
    }

    /// The states only the memory knows: the status shows none of them.
    const UNSHOWN: [State; 3] = [State::Unmanaged, State::Deleting, State::Deleted];

    fn of_deployment(status: JobDeploymentStatus) -> State {
        match status {
            JobDeploymentStatus::New => State::New,
            JobDeploymentStatus::Initializing => State::Initializing,
            JobDeploymentStatus::Running => State::Running,
            JobDeploymentStatus::Complete => State::Complete,
            JobDeploymentStatus::Failed => State::Failed,
            JobDeploymentStatus::Suspending => State::Suspending,
            JobDeploymentStatus::Suspended => State::Suspended,
            JobDeploymentStatus::Retrying => State::Retrying,
            JobDeploymentStatus::Waiting => State::Waiting,
            JobDeploymentStatus::ValidationFailed => State::ValidationFailed,
        }
    }
}

/// The state a RayJob's status shows it in (its `jobDeploymentStatus`), unless the memory holds one the status never
/// shows (Unmanaged, Deleting, Deleted), or the RayJob is gone; None when neither tells.
pub fn state_shown(memory: &Memory, observation: &JobObservation) -> Option<State> {
    let remembered = State::ALL.into_iter().find(|state| state.name() == memory.state);
    if let Some(state) = remembered.filter(|state| State::UNSHOWN.contains(state)) {
        return Some(state);
    }
    let status = observation.job.as_ref()?.status.as_ref();
    Some(State::of_deployment(status.and_then(|status| status.job_deployment_status).unwrap_or_default()))
}

/// Why a Decision was taken: the reason of the transition it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    JobGone,
    ManagedExternally,
    BeingDeleted,
    StopJobFailed,
    ValidationFailed,
    SpecUnchanged,
    SpecChanged,
    InvalidRayJobStatus,
    CommandFailed,
    Initialized,
    ReconcileError,
    Suspending,
    DeadlineExceeded,
    PreRunningDeadlineExceeded,
    CreatedRayCluster,
    WaitingForCluster,
    ClusterReady,
    WaitingForJobId,
    JobIdSet,
    SubmissionFailed,
    AppFailed,
    JobFinished,
    JobStatusCheckTimeoutExceeded,
    Retrying,
    SubmittedJob,
    DashboardUnreachable,
    Reconciled,
    ReleasingResources,
    Suspended,
    NewAttempt,
    StillSuspended,
    Resumed,
    TtlPending,
    DeletedCluster,
    SuspendedWorkers,
    DeletedSelf,
    Finished,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::JobGone => "JobGone",
            Reason::ManagedExternally => "ManagedExternally",
            Reason::BeingDeleted => "BeingDeleted",
            Reason::StopJobFailed => "StopJobFailed",
            Reason::ValidationFailed => "ValidationFailed",
            Reason::SpecUnchanged => "SpecUnchanged",
            Reason::SpecChanged => "SpecChanged",
            Reason::InvalidRayJobStatus => "InvalidRayJobStatus",
            Reason::CommandFailed => "CommandFailed",
            Reason::Initialized => "Initialized",
            Reason::ReconcileError => "ReconcileError",
            Reason::Suspending => "Suspending",
            Reason::DeadlineExceeded => "DeadlineExceeded",
            Reason::PreRunningDeadlineExceeded => "PreRunningDeadlineExceeded",
            Reason::CreatedRayCluster => "CreatedRayCluster",
            Reason::WaitingForCluster => "WaitingForCluster",
            Reason::ClusterReady => "ClusterReady",
            Reason::WaitingForJobId => "WaitingForJobId",
            Reason::JobIdSet => "JobIdSet",
            Reason::SubmissionFailed => "SubmissionFailed",
            Reason::AppFailed => "AppFailed",
            Reason::JobFinished => "JobFinished",
            Reason::JobStatusCheckTimeoutExceeded => "JobStatusCheckTimeoutExceeded",
            Reason::Retrying => "Retrying",
            Reason::SubmittedJob => "SubmittedJob",
            Reason::DashboardUnreachable => "DashboardUnreachable",
            Reason::Reconciled => "Reconciled",
            Reason::ReleasingResources => "ReleasingResources",
            Reason::Suspended => "Suspended",
            Reason::NewAttempt => "NewAttempt",
            Reason::StillSuspended => "StillSuspended",
            Reason::Resumed => "Resumed",
            Reason::TtlPending => "TtlPending",
            Reason::DeletedCluster => "DeletedCluster",
            Reason::SuspendedWorkers => "SuspendedWorkers",
            Reason::DeletedSelf => "DeletedSelf",
            Reason::Finished => "Finished",
        }
    }
}

// ---- the transition table ----

use State as S;

const BEFORE_DELETION: [State; 11] = [
    S::New,
    S::Unmanaged,
    S::Initializing,
    S::Waiting,
    S::Running,
    S::Complete,
    S::Failed,
    S::Suspending,
    S::Suspended,
    S::Retrying,
    S::ValidationFailed,
];
/// States a deletion is first seen from, and Deleting itself (managedBy is checked first, so never Unmanaged).
const DELETABLE: [State; 11] = [
    S::New,
    S::Initializing,
    S::Waiting,
    S::Running,
    S::Complete,
    S::Failed,
    S::Suspending,
    S::Suspended,
    S::Retrying,
    S::ValidationFailed,
    S::Deleting,
];
/// States a RayJob whose status shows no deployment status is in: New, or Unmanaged while another controller had it.
const ENTRY: [State; 2] = [S::New, S::Unmanaged];
const DEADLINED: [State; 3] = [S::Initializing, S::Waiting, S::Running];
const FINISHED: [State; 2] = [S::Complete, S::Failed];
const STATUS_WRITE: &[&str] = &["write-status", "requeue"];

type Rule = fsm::Rule<State, Reason>;
fsm::named_by_name!(State, Reason);

const RULES: &[Rule] = &[
    Rule { from: &S::ALL, to: To::State(S::Deleted), guard: "job_absent", reason: Reason::JobGone, commands: &[] },
    Rule {
        from: &BEFORE_DELETION,
        to: To::State(S::Unmanaged),
        guard: "managed_elsewhere",
        reason: Reason::ManagedExternally,
        commands: &[],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(S::Deleting),
        guard: "being_deleted",
        reason: Reason::BeingDeleted,
        commands: &["stop-job", "remove-finalizer", "requeue"],
    },
    Rule {
        from: &DELETABLE,
        to: To::State(S::Deleting),
        guard: "stop_job_failed",
        reason: Reason::StopJobFailed,
        commands: &["remove-finalizer", "requeue"],
    },
    Rule {
        from: &BEFORE_DELETION,
        to: To::State(S::ValidationFailed),
        guard: "spec_invalid",
        reason: Reason::ValidationFailed,
        commands: &["event Warning InvalidRayJobSpec", "write-status"],
    },
    Rule {
        from: &[S::New, S::Unmanaged, S::ValidationFailed],
        to: To::State(S::ValidationFailed),
        guard: "generation_unchanged",
        reason: Reason::SpecUnchanged,
        commands: &[],
    },
    Rule {
        from: &[S::New, S::Unmanaged, S::ValidationFailed],
        to: To::State(S::New),
        guard: "generation_changed",
        reason: Reason::SpecChanged,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::New, S::Unmanaged, S::Waiting],
        to: To::State(S::Waiting),
        guard: "status_invalid",
        reason: Reason::InvalidRayJobStatus,
        commands: &["event Warning InvalidRayJobStatus", "requeue"],
    },
    Rule {
        from: &BEFORE_DELETION,
        to: To::Same,
        guard: "command_failed",
        reason: Reason::CommandFailed,
        commands: &["event Warning FailedToCreateRayCluster", "event Warning FailedToCreateRayJobSubmitter", "requeue"],
    },
    Rule {
        from: &ENTRY,
        to: To::State(S::Initializing),
        guard: "new",
        reason: Reason::Initialized,
        commands: &["add-finalizer", "write-status", "requeue"],
    },
    Rule {
        from: &ENTRY,
        to: To::State(S::New),
        guard: "selector_without_cluster_name",
        reason: Reason::ReconcileError,
        commands: &["add-finalizer", "requeue"],
    },
    Rule {
        from: &DEADLINED,
        to: To::State(S::Suspending),
        guard: "suspend_requested",
        reason: Reason::Suspending,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &DEADLINED,
        to: To::State(S::Failed),
        guard: "active_deadline_passed",
        reason: Reason::DeadlineExceeded,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Initializing, S::Waiting],
        to: To::State(S::Failed),
        guard: "pre_running_deadline_passed",
        reason: Reason::PreRunningDeadlineExceeded,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Initializing, S::Running],
        to: To::Same,
        guard: "cluster_missing",
        reason: Reason::CreatedRayCluster,
        commands: &["create RayCluster", "event Normal CreatedRayCluster", "requeue"],
    },
    Rule {
        from: &[S::Initializing, S::Running],
        to: To::Same,
        guard: "reconcile_error",
        reason: Reason::ReconcileError,
        commands: &["requeue"],
    },
    Rule {
        from: &[S::Initializing],
        to: To::Same,
        guard: "cluster_not_ready",
        reason: Reason::WaitingForCluster,
        commands: &["requeue"],
    },
    Rule {
        from: &[S::Initializing],
        to: To::State(S::Waiting),
        guard: "cluster_ready_interactive",
        reason: Reason::ClusterReady,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Initializing],
        to: To::State(S::Running),
        guard: "cluster_ready",
        reason: Reason::ClusterReady,
        commands: &["create Job", "event Normal CreatedRayJobSubmitter", "write-status", "requeue"],
    },
    Rule {
        from: &[S::Waiting],
        to: To::Same,
        guard: "job_id_unset",
        reason: Reason::WaitingForJobId,
        commands: &["requeue"],
    },
    Rule {
        from: &[S::Waiting],
        to: To::State(S::Running),
        guard: "job_id_set",
        reason: Reason::JobIdSet,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Running],
        to: To::State(S::Failed),
        guard: "submitter_failed",
        reason: Reason::SubmissionFailed,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Running],
        to: To::State(S::Failed),
        guard: "job_failed",
        reason: Reason::AppFailed,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Running],
        to: To::State(S::Complete),
        guard: "job_finished",
        reason: Reason::JobFinished,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Running],
        to: To::State(S::Failed),
        guard: "status_check_timed_out",
        reason: Reason::JobStatusCheckTimeoutExceeded,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Running],
        to: To::State(S::Retrying),
        guard: "retry_allowed",
        reason: Reason::Retrying,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Running],
        to: To::Same,
        guard: "job_not_found_http",
        reason: Reason::SubmittedJob,
        commands: &["submit-job", "write-status", "requeue"],
    },
    Rule {
        from: &[S::Running],
        to: To::Same,
        guard: "dashboard_unreachable",
        reason: Reason::DashboardUnreachable,
        commands: STATUS_WRITE,
    },
    Rule { from: &[S::Running], to: To::Same, guard: "running", reason: Reason::Reconciled, commands: STATUS_WRITE },
    Rule {
        from: &[S::Suspending, S::Retrying],
        to: To::Same,
        guard: "resources_remain",
        reason: Reason::ReleasingResources,
        commands: &[
            "delete RayCluster",
            "event Normal DeletedRayCluster",
            "delete Job",
            "event Normal DeletedRayJobSubmitter",
            "requeue",
        ],
    },
    Rule {
        from: &[S::Suspending],
        to: To::State(S::Suspended),
        guard: "resources_released",
        reason: Reason::Suspended,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Retrying],
        to: To::State(S::New),
        guard: "resources_released",
        reason: Reason::NewAttempt,
        commands: STATUS_WRITE,
    },
    Rule {
        from: &[S::Suspended],
        to: To::Same,
        guard: "suspend_kept",
        reason: Reason::StillSuspended,
        commands: &["requeue"],
    },
    Rule {
        from: &[S::Suspended],
        to: To::State(S::New),
        guard: "resumed",
        reason: Reason::Resumed,
        commands: STATUS_WRITE,
    },
    Rule { from: &FINISHED, to: To::Same, guard: "ttl_pending", reason: Reason::TtlPending, commands: &[] },
    Rule {
        from: &FINISHED,
        to: To::Same,
        guard: "delete_cluster",
        reason: Reason::DeletedCluster,
        commands: &["delete RayCluster", "event Normal DeletedRayCluster"],
    },
    Rule {
        from: &FINISHED,
        to: To::Same,
        guard: "delete_workers",
        reason: Reason::SuspendedWorkers,
        commands: &["patch RayCluster", "event Normal UpdatedRayCluster"],
    },
    Rule {
        from: &FINISHED,
        to: To::Same,
        guard: "delete_self",
        reason: Reason::DeletedSelf,
        commands: &["delete RayJob"],
    },
    Rule { from: &FINISHED, to: To::Same, guard: "nothing_to_delete", reason: Reason::Finished, commands: &[] },
];

impl RayJobMachine {
    /// The transition table as data; a test holds it equal to `state-machines/rayjob.yaml`.
    pub fn transitions() -> Vec<fsm::Transition> {
        fsm::table(RULES)
    }
}

impl Machine for RayJobMachine {
    fn kind(&self) -> MachineKind {
        MachineKind::RayJob
    }

    /// The memory is not read: the state is the status's, and timers are recomputed from times in the status.
    fn step(&self, _memory: &Memory, input: &Input) -> Decision {
        let gone = |explanation: &str| Decision::gone(State::Deleted.name(), Reason::JobGone.name(), explanation);
        let Observation::RayJob(observation) = &input.observation else {
            return gone("The Input observes no RayJob.");
        };
        let Some(job) = &observation.job else {
            return gone("The RayJob is gone; its timers are dropped.");
        };
        let old = job.status.clone().unwrap_or_default();
        let mut pass = Pass {
            config: &self.config,
            input,
            observation,
            job,
            namespace: &input.object.namespace,
            name: &input.object.name,
            now: whole_seconds(&input.now),
            new: old.clone(),
            old,
            commands: Vec::new(),
            notes: Vec::new(),
            ttl: None,
        };
        let (next, reason) = pass.run();
        let timers = pass.timers(next);
        Decision {
            next: next.name().to_string(),
            commands: pass.commands,
            reason: reason.name().to_string(),
            explanation: pass.notes.join(" "),
            memory: Memory { state: next.name().to_string(), expectations: Default::default(), timers },
        }
    }
}

/// How a branch of the switch ended: with a new status to check against the backoff limit and write (KubeRay's
/// `break`), or with its commands already issued (KubeRay's `return`).
enum Flow {
    Update(Reason),
    Return(State, Reason),
}

/// What is deleted once a finished job's TTL has passed (§3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    DeleteCluster,
    SuspendWorkers,
    DeleteSelf,
}

struct Pass<'a> {
    config: &'a OperatorConfig,
    input: &'a Input,
    observation: &'a JobObservation,
    job: &'a RayJob,
    namespace: &'a str,
    name: &'a str,
    now: Time,
    old: RayJobStatus,
    new: RayJobStatus,
    commands: Vec<Command>,
    notes: Vec<String>,
    /// When a pending shutdown is due.
    ttl: Option<Time>,
}

impl Pass<'_> {
    fn run(&mut self) -> (State, Reason) {
        if let Some(manager) = self.job.spec.managed_by.as_deref().filter(|manager| *manager != KUBERAY_MANAGED_BY) {
            self.note(format!("spec.managedBy is {manager}: another controller manages this RayJob."));
            return (State::Unmanaged, Reason::ManagedExternally);
        }
        if self.job.metadata.deletion_timestamp.is_some() {
            return self.deletion();
        }
        let problems = validate_ray_job(self.job, &self.config.feature_gates);
        if self.deployment() == JobDeploymentStatus::ValidationFailed {
            if self.old.observed_generation == self.job.metadata.generation {
                self.note("The spec failed validation and has not changed since.");
                return (State::ValidationFailed, Reason::SpecUnchanged);
            }
            if problems.is_empty() {
                // DEVIATIONS 4: a new generation starts again from New.
                self.new = RayJobStatus {
                    job_deployment_status: Some(JobDeploymentStatus::New),
                    reason: None,
                    message: None,
                    observed_generation: self.job.metadata.generation,
                    ..self.old.clone()
                };
                self.write_status();
                self.requeue();
                self.note("The spec changed and is valid now: the job starts again from New.");
                return (State::New, Reason::SpecChanged);
            }
        }
        if !problems.is_empty() {
            return self.validation_failed(&problems.join("; "));
        }
        if let Some(problem) = validate_ray_job_status(self.job).into_iter().next() {
            let message = format!("The RayJob status is invalid {}: {problem}", self.qualified(self.name));
            self.event(EventKind::Warning, INVALID_RAY_JOB_STATUS, message);
            self.requeue();
            self.note(problem);
            return (State::Waiting, Reason::InvalidRayJobStatus);
        }
        if let Some(reason) = self.report_failure() {
            return (self.state_of_old(), reason);
        }
        let flow = match self.deployment() {
            JobDeploymentStatus::New | JobDeploymentStatus::ValidationFailed => self.initialize(),
            JobDeploymentStatus::Initializing => self.initializing(),
            JobDeploymentStatus::Waiting => self.waiting(),
            JobDeploymentStatus::Running => self.running(),
            JobDeploymentStatus::Suspending | JobDeploymentStatus::Retrying => self.release(),
            JobDeploymentStatus::Suspended => self.suspended(),
            JobDeploymentStatus::Complete | JobDeploymentStatus::Failed => self.finished(),
        };
        match flow {
            Flow::Return(state, reason) => (state, reason),
            Flow::Update(reason) => {
                let reason = self.check_backoff_limit(reason);
                self.write_status();
                self.requeue();
                (State::of_deployment(self.new.job_deployment_status.unwrap_or_default()), reason)
            }
        }
    }

    fn note(&mut self, sentence: impl Into<String>) {
        self.notes.push(sentence.into());
    }

    fn event(&mut self, kind: EventKind, reason: &str, message: String) {
        self.commands.push(Command::RecordEvent { kind, reason: reason.to_string(), message });
    }

    fn requeue(&mut self) {
        self.commands.push(Command::RequeueAfter { millis: REQUEUE_SECONDS * 1000 });
    }

    fn qualified(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    fn deployment(&self) -> JobDeploymentStatus {
        self.old.job_deployment_status.unwrap_or_default()
    }

    fn state_of_old(&self) -> State {
        State::of_deployment(self.deployment())
    }

    fn mode(&self) -> SubmissionMode {
        self.job.spec.mode().unwrap_or(SubmissionMode::K8sJob)
    }

    fn selector_mode(&self) -> bool {
        self.job.spec.cluster_selector.as_ref().is_some_and(|selector| !selector.is_empty())
    }

    fn cluster_name(&self) -> String {
        self.new.ray_cluster_name.clone().unwrap_or_default()
    }

    fn job_id(&self) -> String {
        self.new.job_id.clone().unwrap_or_default()
    }

    fn dashboard_url(&self) -> String {
        self.new.dashboard_url.clone().unwrap_or_default()
    }

    fn write_status(&mut self) {
        if self.new == self.old {
            self.note("The status is unchanged.");
            return;
        }
        match serde_json::to_value(&self.new) {
            Ok(status) => self.commands.push(Command::WriteStatus { status }),
            Err(error) => self.note(format!("The status cannot be encoded: {error}.")),
        }
    }

    fn create(&mut self, object: &impl Serialize) -> bool {
        match serde_json::to_value(object) {
            Ok(object) => {
                self.commands.push(Command::Create { object });
                true
            }
            Err(error) => {
                self.note(format!("The object cannot be encoded: {error}."));
                false
            }
        }
    }

    fn delete(&mut self, kind: &str, name: &str, uid: Option<&String>) {
        self.commands.push(Command::Delete {
            target: Target { kind: kind.to_string(), namespace: self.namespace.to_string(), name: name.to_string() },
            uid: uid.filter(|uid| !uid.is_empty()).cloned(),
        });
    }

    fn reconcile_error(&mut self, message: String) -> Flow {
        self.note(format!("{message}; trying again in 3 s."));
        self.requeue();
        Flow::Return(self.state_of_old(), Reason::ReconcileError)
    }

    // ---- deletion, validation, failures ----

    fn deletion(&mut self) -> (State, Reason) {
        let has_finalizer = self.job.metadata.finalizers.iter().flatten().any(|f| f == RAYJOB_STOP_JOB_FINALIZER);
        if !has_finalizer {
            self.note("The RayJob is being deleted and holds no finalizer of ours.");
            return (State::Deleting, Reason::BeingDeleted);
        }
        let stop_failed = matches!(&self.input.trigger, Trigger::Outcome { command, outcome }
            if command.starts_with("stop-job ") && !matches!(outcome, Outcome::Ok));
        let reason = if stop_failed {
            self.note("Stopping the Ray job failed; the finalizer goes anyway (best effort).");
            Reason::StopJobFailed
        } else {
            let terminal = self.old.job_status.unwrap_or_default().is_terminal();
            let (address, job_id) = (self.dashboard_url(), self.job_id());
            if !terminal && !address.is_empty() && !job_id.is_empty() {
                self.note(format!("The Ray job {job_id} is not finished: it is stopped first."));
                self.commands.push(Command::StopJob { address, job_id });
            }
            Reason::BeingDeleted
        };
        self.commands.push(Command::RemoveFinalizer { finalizer: RAYJOB_STOP_JOB_FINALIZER.to_string() });
        self.requeue();
        (State::Deleting, reason)
    }

    /// DEVIATIONS 4: the problems go to a Warning Event and to the status, which stays ValidationFailed until a new
    /// generation of the spec.
    fn validation_failed(&mut self, problems: &str) -> (State, Reason) {
        let message = format!("The RayJob spec is invalid {}: {problems}", self.qualified(self.name));
        self.event(EventKind::Warning, INVALID_RAY_JOB_SPEC, message);
        self.new.job_deployment_status = Some(JobDeploymentStatus::ValidationFailed);
        self.new.reason = Some(VALIDATION_FAILED.to_string());
        self.new.message = Some(problems.to_string());
        self.new.observed_generation = self.job.metadata.generation;
        self.write_status();
        self.note(format!("The spec is invalid ({problems}): nothing is done until it changes."));
        (State::ValidationFailed, Reason::ValidationFailed)
    }

    /// Reports the failed command of the step before, if this Input is one: a Warning Event for a failed create of
    /// the cluster or the submitter, as KubeRay records it, and another look in 3 s.
    fn report_failure(&mut self) -> Option<Reason> {
        let Trigger::Outcome { command, outcome } = &self.input.trigger else { return None };
        let message = match outcome {
            Outcome::Failed { message } => message.clone(),
            Outcome::Conflict => "the object has been modified; please apply your changes to the latest version and \
                                  try again"
                .to_string(),
            Outcome::Ok | Outcome::NotFound | Outcome::AlreadyExists => return None,
        };
        if let Some(cluster) = command.strip_prefix("create RayCluster ") {
            let text = format!("Failed to create RayCluster {}: {message}", self.qualified(cluster));
            self.event(EventKind::Warning, FAILED_TO_CREATE_RAY_CLUSTER, text);
        } else if let Some(job) = command.strip_prefix("create Job ") {
            let text = format!("Failed to create new Kubernetes Job {}: {message}", self.qualified(job));
            self.event(EventKind::Warning, FAILED_TO_CREATE_RAY_JOB_SUBMITTER, text);
        }
        self.note(format!("`{command}` failed: {message}; trying again in 3 s."));
        self.requeue();
        Some(Reason::CommandFailed)
    }

    // ---- the switch (§3.2) ----

    /// New: the finalizer, then the ids every later step builds on, persisted before any cluster or submission.
    fn initialize(&mut self) -> Flow {
        let has_finalizer = self.job.metadata.finalizers.iter().flatten().any(|f| f == RAYJOB_STOP_JOB_FINALIZER);
        if !has_finalizer {
            self.commands.push(Command::AddFinalizer { finalizer: RAYJOB_STOP_JOB_FINALIZER.to_string() });
        }
        let attempt = self.old.failed.unwrap_or(0);
        if self.mode() != SubmissionMode::Interactive && self.job_id().is_empty() {
            self.new.job_id = Some(rayjob_submission_id(self.job, attempt));
        }
        if self.cluster_name().is_empty() {
            let name = if self.selector_mode() {
                let selector = self.job.spec.cluster_selector.clone().unwrap_or_default();
                match selector.get(CLUSTER_SELECTOR_KEY) {
                    Some(name) => name.clone(),
                    None => {
                        return self.reconcile_error(format!(
                            "failed to get cluster name in ClusterSelector map, the default key is \
                             {CLUSTER_SELECTOR_KEY}"
                        ));
                    }
                }
            } else {
                rayjob_cluster_name(self.job, attempt)
            };
            self.new.ray_cluster_name = Some(name);
        }
        self.new.job_status = Some(self.new.job_status.unwrap_or_default());
        self.new.job_deployment_status = Some(JobDeploymentStatus::Initializing);
        self.new.start_time = Some(self.now.clone());
        self.note(format!(
            "Attempt {attempt}: the RayCluster is {} and the submission id {}.",
            self.cluster_name(),
            if self.job_id().is_empty() { "left to spec.jobId" } else { self.new.job_id.as_deref().unwrap_or("") }
        ));
        Flow::Update(Reason::Initialized)
    }

    fn suspend_requested(&mut self) -> bool {
        if self.job.spec.suspend != Some(true) {
            return false;
        }
        self.new.job_deployment_status = Some(JobDeploymentStatus::Suspending);
        self.note("spec.suspend is true: the cluster and the submitter go, and the job waits Suspended.");
        true
    }

    fn deadline(&self, seconds: Option<i32>) -> Option<Time> {
        let start = self.old.start_time.as_ref()?;
        let seconds = seconds?;
        start.0.checked_add(jiff::SignedDuration::from_secs(i64::from(seconds))).ok().map(Time)
    }

    fn active_deadline_passed(&mut self) -> bool {
        let Some(deadline) = self.deadline(self.job.spec.active_deadline_seconds) else { return false };
        if self.now.0 < deadline.0 {
            return false;
        }
        let seconds = self.job.spec.active_deadline_seconds.unwrap_or_default();
        self.fail(
            DEADLINE_EXCEEDED,
            format!(
                "The RayJob has passed the activeDeadlineSeconds. StartTime: {}. ActiveDeadlineSeconds: {seconds}",
                go_time(self.old.start_time.as_ref())
            ),
        );
        true
    }

    fn pre_running_deadline_passed(&mut self) -> bool {
        let Some(deadline) = self.deadline(self.job.spec.pre_running_deadline_seconds) else { return false };
        if self.now.0 < deadline.0 {
            return false;
        }
        let seconds = self.job.spec.pre_running_deadline_seconds.unwrap_or_default();
        self.fail(
            PRE_RUNNING_DEADLINE_EXCEEDED,
            format!(
                "The RayJob has passed the preRunningDeadlineSeconds. StartTime: {}. PreRunningDeadlineSeconds: \
                 {seconds}",
                go_time(self.old.start_time.as_ref())
            ),
        );
        true
    }

    fn fail(&mut self, reason: &str, message: String) {
        self.note(message.clone());
        self.new.job_deployment_status = Some(JobDeploymentStatus::Failed);
        self.new.reason = Some(reason.to_string());
        self.new.message = Some(message);
    }

    /// KubeRay's getOrCreateRayClusterInstance: the cluster, or how the step ends without one.
    fn cluster(&mut self) -> Result<&RayCluster, Flow> {
        if let Some(cluster) = &self.observation.cluster {
            return Ok(cluster);
        }
        let name = self.cluster_name();
        if self.selector_mode() {
            return Err(self.reconcile_error(format!(
                "we have choosed the cluster selector mode, failed to find the cluster named {name}, err: \
                 rayclusters.ray.io \"{name}\" not found"
            )));
        }
        let cluster = match cluster_for_rayjob(self.job, &name, &self.job_id()) {
            Ok(cluster) => cluster,
            Err(error) => return Err(self.reconcile_error(error.to_string())),
        };
        if self.create(&cluster) {
            self.event(EventKind::Normal, CREATED_RAY_CLUSTER, format!("Created RayCluster {}", self.qualified(&name)));
        }
        self.note(format!("No RayCluster {name}: it is created."));
        self.requeue();
        Err(Flow::Return(self.state_of_old(), Reason::CreatedRayCluster))
    }

    /// What stops a job before or while it runs, in KubeRay's order: suspend, then the active deadline, then (before
    /// Running only) the pre-running deadline.
    fn interruption(&mut self, before_running: bool) -> Option<Flow> {
        if self.suspend_requested() {
            Some(Flow::Update(Reason::Suspending))
        } else if self.active_deadline_passed() {
            Some(Flow::Update(Reason::DeadlineExceeded))
        } else if before_running && self.pre_running_deadline_passed() {
            Some(Flow::Update(Reason::PreRunningDeadlineExceeded))
        } else {
            None
        }
    }

    fn initializing(&mut self) -> Flow {
        if let Some(flow) = self.interruption(true) {
            return flow;
        }
        let cluster = match self.cluster() {
            Ok(cluster) => cluster.clone(),
            Err(flow) => return flow,
        };
        if self.dashboard_url().is_empty() {
            if !usable(&cluster) {
                self.note("The RayCluster is not provisioned with a ready head yet.");
                self.requeue();
                return Flow::Return(State::Initializing, Reason::WaitingForCluster);
            }
            let Some(service) = &self.observation.head_service else {
                self.note("The RayCluster's head Service is not there yet.");
                self.requeue();
                return Flow::Return(State::Initializing, Reason::WaitingForCluster);
            };
            let Some(port) = service.ports.iter().find(|port| port.name == DASHBOARD_PORT_NAME) else {
                return self.reconcile_error("dashboard port is not found".to_string());
            };
            let host = service_fqdn(&service.name, self.namespace, &self.config.cluster_domain);
            self.new.dashboard_url = Some(format!("{host}:{}", port.port));
        }
        match self.mode() {
            SubmissionMode::Interactive => {
                self.new.job_deployment_status = Some(JobDeploymentStatus::Waiting);
                self.note("InteractiveMode: the cluster is ready; waiting for spec.jobId.");
                return Flow::Update(Reason::ClusterReady);
            }
            SubmissionMode::K8sJob if self.observation.submitter.is_none() => {
                let built = submitter_job(self.job, &cluster.spec, &self.job_id(), &self.dashboard_url());
                let submitter = match built {
                    Ok(submitter) => submitter,
                    Err(error) => return self.reconcile_error(error.to_string()),
                };
                if self.create(&submitter) {
                    let message = format!("Created Kubernetes Job {}", self.qualified(self.name));
                    self.event(EventKind::Normal, CREATED_RAY_JOB_SUBMITTER, message);
                }
            }
            SubmissionMode::K8sJob | SubmissionMode::Http | SubmissionMode::Sidecar => {}
        }
        self.new.job_deployment_status = Some(JobDeploymentStatus::Running);
        self.note(format!("The cluster is ready at {}: the job runs ({}).", self.dashboard_url(), self.mode()));
        Flow::Update(Reason::ClusterReady)
    }

    /// DEVIATIONS 6: Waiting honours suspend and the deadlines.
    fn waiting(&mut self) -> Flow {
        if let Some(flow) = self.interruption(true) {
            return flow;
        }
        match self.job.spec.job_id.clone().filter(|id| !id.is_empty()) {
            None => {
                self.note("Waiting for spec.jobId.");
                self.requeue();
                Flow::Return(State::Waiting, Reason::WaitingForJobId)
            }
            Some(id) => {
                self.note(format!("spec.jobId is {id}: the job runs."));
                self.new.job_id = Some(id);
                self.new.job_deployment_status = Some(JobDeploymentStatus::Running);
                Flow::Update(Reason::JobIdSet)
            }
        }
    }

    fn running(&mut self) -> Flow {
        if let Some(flow) = self.interruption(false) {
            return flow;
        }
        let k8s_job_mode = self.mode() == SubmissionMode::K8sJob;
        let submitter = self.observation.submitter.clone();
        if k8s_job_mode {
            let Some(submitter) = &submitter else {
                return self.reconcile_error(format!("jobs.batch \"{}\" not found", self.name));
            };
            if submitter.failed {
                self.new.job_deployment_status = Some(JobDeploymentStatus::Failed);
                if self.old.job_status == Some(JobStatus::Failed) {
                    self.new.reason = Some(APP_FAILED.to_string());
                    self.note("The submitter Job failed, and so did the Ray job.");
                    return Flow::Update(Reason::AppFailed);
                }
                let message = format!(
                    "Job submission has failed. Reason: {}. Message: {}",
                    submitter.failed_reason, submitter.failed_message
                );
                self.note(message.clone());
                self.new.reason = Some(SUBMISSION_FAILED.to_string());
                self.new.message = Some(message);
                return Flow::Update(Reason::SubmissionFailed);
            }
        }
        let cluster = match self.cluster() {
            Ok(cluster) => cluster.clone(),
            Err(flow) => return flow,
        };
        match self.observation.dashboard.clone() {
            None => {
                self.note("No dashboard answer in this Input.");
                Flow::Update(Reason::Reconciled)
            }
            Some(DashboardAnswer::NotFound) => {
                self.new.job_status_check_failure_start_time = None;
                if self.mode() == SubmissionMode::Http {
                    let submission = match submission(self.job, &self.job_id()) {
                        Ok(submission) => submission,
                        Err(error) => return self.reconcile_error(error),
                    };
                    self.commands.push(Command::SubmitJob { address: self.dashboard_url(), submission });
                    self.note(format!("The dashboard does not know {}: it is submitted.", self.job_id()));
                    return Flow::Update(Reason::SubmittedJob);
                }
                self.note(format!("The dashboard does not know {} yet.", self.job_id()));
                Flow::Update(Reason::Reconciled)
            }
            Some(DashboardAnswer::Unreachable { message }) => self.unreachable(&message),
            Some(DashboardAnswer::Job(info)) => self.judge(&cluster, &info, submitter.as_ref()),
        }
    }

    /// DEVIATIONS 8: the first failed status check starts a clock; a good answer stops it; the timeout fails the job.
    fn unreachable(&mut self, message: &str) -> Flow {
        let timeout = self.config.rayjob_status_check_timeout_seconds;
        let start = self.old.job_status_check_failure_start_time.clone().unwrap_or_else(|| self.now.clone());
        self.new.job_status_check_failure_start_time = Some(start.clone());
        let elapsed = self.now.0.as_second() - start.0.as_second();
        if elapsed >= i64::try_from(timeout).unwrap_or(i64::MAX) {
            self.fail(
                JOB_STATUS_CHECK_TIMEOUT_EXCEEDED,
                format!("Failed to get the job status from the dashboard for {timeout} seconds: {message}"),
            );
            return Flow::Update(Reason::JobStatusCheckTimeoutExceeded);
        }
        self.note(format!("The dashboard did not answer ({message}); failing for {elapsed} of {timeout} s."));
        Flow::Update(Reason::DashboardUnreachable)
    }

    fn judge(&mut self, cluster: &RayCluster, info: &DashboardJob, submitter: Option<&super::JobView>) -> Flow {
        let Ok(status) = serde_json::from_value::<JobStatus>(json!(info.status)) else {
            return self.reconcile_error(format!("unknown Ray job status {:?}", info.status));
        };
        let mut terminal = status.is_terminal();
        if self.mode() == SubmissionMode::K8sJob {
            // §3.2: the submitter must have finished too, so that its logs are complete (KubeRay PR #1919).
            terminal = terminal && submitter.is_some_and(|job| job.complete || job.failed);
        }
        let (deployment, reason, why) = match (terminal, status) {
            (true, JobStatus::Failed) => (JobDeploymentStatus::Failed, Some(APP_FAILED), Reason::AppFailed),
            (true, _) => (JobDeploymentStatus::Complete, None, Reason::JobFinished),
            (false, _) => (JobDeploymentStatus::Running, None, Reason::Reconciled),
        };
        self.new.ray_cluster_status = cluster.status.clone();
        self.new.job_status = Some(status);
        self.new.job_deployment_status = Some(deployment);
        self.new.reason = reason.map(str::to_string);
        self.new.message = Some(info.message.clone()).filter(|message| !message.is_empty());
        self.new.job_status_check_failure_start_time = None;
        self.note(format!("The Ray job is {}.", info.status));
        Flow::Update(why)
    }

    /// Suspending and Retrying: the cluster (unless selected) and the submitter go, and only once both are gone does
    /// the status move on, so nothing leaks.
    fn release(&mut self) -> Flow {
        let mut remaining = Vec::new();
        if !self.selector_mode()
            && let Some(cluster) = &self.observation.cluster
        {
            let name = self.cluster_name();
            if cluster.metadata.deletion_timestamp.is_none() {
                self.delete("RayCluster", &name, cluster.metadata.uid.as_ref());
                self.event(
                    EventKind::Normal,
                    DELETED_RAY_CLUSTER,
                    format!("Deleted cluster {}", self.qualified(&name)),
                );
            }
            remaining.push(format!("RayCluster {name}"));
        }
        if let Some(submitter) = self.observation.submitter.clone() {
            if !submitter.terminating {
                self.delete("Job", &submitter.name, None);
                let message = format!("Deleted submitter K8s Job {}", self.qualified(&submitter.name));
                self.event(EventKind::Normal, DELETED_RAY_JOB_SUBMITTER, message);
            }
            remaining.push(format!("Job {}", submitter.name));
        }
        if !remaining.is_empty() {
            self.note(format!("Waiting for {} to go.", remaining.join(" and ")));
            self.requeue();
            return Flow::Return(self.state_of_old(), Reason::ReleasingResources);
        }
        let retrying = self.deployment() == JobDeploymentStatus::Retrying;
        self.new = RayJobStatus {
            ray_cluster_status: Some(Default::default()),
            ray_cluster_name: None,
            dashboard_url: None,
            job_id: None,
            message: None,
            reason: None,
            job_status: Some(JobStatus::New),
            job_deployment_status: Some(if retrying {
                JobDeploymentStatus::New
            } else {
                JobDeploymentStatus::Suspended
            }),
            ..self.old.clone()
        };
        if retrying {
            self.note("The failed attempt's resources are gone: the next attempt starts from New.");
            Flow::Update(Reason::NewAttempt)
        } else {
            self.note("The resources are gone: the job is suspended.");
            Flow::Update(Reason::Suspended)
        }
    }

    fn suspended(&mut self) -> Flow {
        if self.job.spec.suspend == Some(true) {
            self.requeue();
            return Flow::Return(State::Suspended, Reason::StillSuspended);
        }
        self.note("spec.suspend is no longer true: the job starts again from New.");
        self.new.job_status = Some(JobStatus::New);
        self.new.job_deployment_status = Some(JobDeploymentStatus::New);
        Flow::Update(Reason::Resumed)
    }

    fn finished(&mut self) -> Flow {
        let state = self.state_of_old();
        let Some(shutdown) = shutdown(self.job, self.config) else {
            self.note("The job is finished; nothing is to be deleted.");
            return Flow::Return(state, Reason::Finished);
        };
        let ttl = i64::from(self.job.spec.ttl_seconds_after_finished.unwrap_or(0));
        let end = self.old.end_time.clone().unwrap_or_else(|| self.now.clone());
        let due = end.0.checked_add(jiff::SignedDuration::from_secs(ttl)).map(Time).unwrap_or(end);
        let cluster = self.observation.cluster.as_ref();
        let live_cluster = cluster.filter(|cluster| cluster.metadata.deletion_timestamp.is_none());
        let pending = match shutdown {
            Shutdown::DeleteCluster => live_cluster.is_some(),
            Shutdown::SuspendWorkers => live_cluster.is_some_and(|cluster| {
                cluster.spec.worker_group_specs.iter().flatten().any(|group| group.suspend != Some(true))
            }),
            Shutdown::DeleteSelf => true,
        };
        if !pending {
            self.note("The job is finished and what it shuts down is gone.");
            return Flow::Return(state, Reason::Finished);
        }
        if self.now.0 < due.0 {
            self.note(format!("The job is finished; {shutdown:?} waits for ttlSecondsAfterFinished ({ttl} s)."));
            self.ttl = Some(due);
            return Flow::Return(state, Reason::TtlPending);
        }
        let name = self.cluster_name();
        match (shutdown, live_cluster) {
            (Shutdown::DeleteCluster, Some(cluster)) => {
                self.delete("RayCluster", &name, cluster.metadata.uid.as_ref());
                self.event(
                    EventKind::Normal,
                    DELETED_RAY_CLUSTER,
                    format!("Deleted cluster {}", self.qualified(&name)),
                );
                Flow::Return(state, Reason::DeletedCluster)
            }
            (Shutdown::SuspendWorkers, Some(cluster)) => {
                let mut groups = cluster.spec.worker_group_specs.clone().unwrap_or_default();
                for group in &mut groups {
                    group.suspend = Some(true);
                }
                self.commands.push(Command::Patch {
                    target: Target {
                        kind: "RayCluster".to_string(),
                        namespace: self.namespace.to_string(),
                        name: name.clone(),
                    },
                    patch: json!({"spec": {"workerGroupSpecs": groups}}),
                    resource_version: cluster.metadata.resource_version.clone(),
                });
                let message = format!(
                    "Set the `suspend` field to true for all worker groups in cluster {}",
                    self.qualified(&name)
                );
                self.event(EventKind::Normal, UPDATED_RAY_CLUSTER, message);
                Flow::Return(state, Reason::SuspendedWorkers)
            }
            _ => {
                self.delete("RayJob", self.name, self.job.metadata.uid.as_ref());
                self.note("The job is finished: the RayJob itself goes.");
                Flow::Return(state, Reason::DeletedSelf)
            }
        }
    }

    /// KubeRay's checkBackoffLimitAndUpdateStatusIfNeeded, with the end time its status update sets.
    fn check_backoff_limit(&mut self, reason: Reason) -> Reason {
        let deployment = self.new.job_deployment_status.unwrap_or_default();
        let mut failed = self.old.failed.unwrap_or(0);
        let mut succeeded = self.old.succeeded.unwrap_or(0);
        if deployment == JobDeploymentStatus::Failed {
            failed += 1;
        }
        if deployment == JobDeploymentStatus::Complete && self.new.job_status == Some(JobStatus::Succeeded) {
            succeeded += 1;
        }
        self.new.failed = Some(failed);
        self.new.succeeded = Some(succeeded);
        let finished = matches!(deployment, JobDeploymentStatus::Complete | JobDeploymentStatus::Failed);
        let changed = self.new.job_status != self.old.job_status
            || self.new.job_deployment_status != self.old.job_deployment_status;
        if finished && changed {
            self.new.end_time = Some(self.now.clone());
        }
        let deadline = matches!(self.new.reason.as_deref(), Some(DEADLINE_EXCEEDED | PRE_RUNNING_DEADLINE_EXCEEDED));
        let retry = deployment == JobDeploymentStatus::Failed
            && self.job.spec.backoff_limit.is_some_and(|limit| failed < limit.saturating_add(1))
            && !deadline;
        if !retry {
            return reason;
        }
        self.note(format!(
            "Attempt {failed} of {} failed: the job is retried on a new cluster.",
            self.job.spec.backoff_limit.unwrap_or(0).saturating_add(1)
        ));
        self.new.job_deployment_status = Some(JobDeploymentStatus::Retrying);
        self.new.end_time = self.old.end_time.clone();
        Reason::Retrying
    }

    /// The timers of the state the step leaves the job in, from times in the status.
    fn timers(&self, next: State) -> std::collections::BTreeMap<String, Time> {
        let mut timers = std::collections::BTreeMap::new();
        let status = &self.new;
        let add = |timers: &mut std::collections::BTreeMap<String, Time>, name: &str, seconds: Option<i64>| {
            let start = status.start_time.as_ref();
            if let (Some(start), Some(seconds)) = (start, seconds)
                && let Ok(at) = start.0.checked_add(jiff::SignedDuration::from_secs(seconds))
            {
                timers.insert(name.to_string(), Time(at));
            }
        };
        let spec = &self.job.spec;
        if matches!(next, State::Initializing | State::Waiting | State::Running) {
            add(&mut timers, ACTIVE_DEADLINE_TIMER, spec.active_deadline_seconds.map(i64::from));
        }
        if matches!(next, State::Initializing | State::Waiting) {
            add(&mut timers, PRE_RUNNING_DEADLINE_TIMER, spec.pre_running_deadline_seconds.map(i64::from));
        }
        if next == State::Running
            && let Some(start) = &status.job_status_check_failure_start_time
        {
            let timeout = i64::try_from(self.config.rayjob_status_check_timeout_seconds).unwrap_or(i64::MAX);
            if let Ok(at) = start.0.checked_add(jiff::SignedDuration::from_secs(timeout)) {
                timers.insert(STATUS_CHECK_TIMER.to_string(), Time(at));
            }
        }
        if let Some(due) = &self.ttl {
            timers.insert(TTL_TIMER.to_string(), due.clone());
        }
        timers
    }
}

/// §3.5 with DEVIATIONS 12: what goes once `endTime + ttlSecondsAfterFinished` has passed.
fn shutdown(job: &RayJob, config: &OperatorConfig) -> Option<Shutdown> {
    if job.spec.cluster_selector.as_ref().is_some_and(|selector| !selector.is_empty()) {
        return None;
    }
    let gate = config.feature_gates.enabled(Feature::RayJobDeletionPolicy);
    match job.spec.deletion().filter(|_| gate) {
        Some(DeletionPolicy::DeleteCluster) => Some(Shutdown::DeleteCluster),
        Some(DeletionPolicy::DeleteWorkers) => Some(Shutdown::SuspendWorkers),
        Some(DeletionPolicy::DeleteSelf) => Some(Shutdown::DeleteSelf),
        Some(DeletionPolicy::DeleteNone) => None,
        None if job.spec.shutdown_after_job_finishes == Some(true) => {
            if config.delete_rayjob_cr_after_job_finishes {
                Some(Shutdown::DeleteSelf)
            } else {
                Some(Shutdown::DeleteCluster)
            }
        }
        None => None,
    }
}

/// §3.4: the POST /api/jobs/ body (omitempty except the entrypoint, which HTTPMode sends untrimmed).
fn submission(job: &RayJob, job_id: &str) -> Result<Value, String> {
    let spec = &job.spec;
    let mut body = Map::new();
    body.insert("entrypoint".to_string(), json!(spec.entrypoint.clone().unwrap_or_default()));
    body.insert("submission_id".to_string(), json!(job_id));
    if let Some(metadata) = spec.metadata.as_ref().filter(|metadata| !metadata.is_empty()) {
        body.insert("metadata".to_string(), json!(metadata));
    }
    if let Some(yaml) = spec.runtime_env_yaml.as_deref().filter(|yaml| !yaml.trim().is_empty()) {
        let env: Value =
            serde_saphyr::from_str(yaml).map_err(|e| format!("failed to unmarshal RuntimeEnvYAML: {e}"))?;
        body.insert("runtime_env".to_string(), env);
    }
    if let Some(cpus) = spec.entrypoint_num_cpus.filter(|cpus| *cpus != 0.0) {
        body.insert("entrypoint_num_cpus".to_string(), json!(cpus));
    }
    if let Some(gpus) = spec.entrypoint_num_gpus.filter(|gpus| *gpus != 0.0) {
        body.insert("entrypoint_num_gpus".to_string(), json!(gpus));
    }
    if let Some(resources) = spec.entrypoint_resources.as_deref().filter(|text| !text.is_empty()) {
        let resources: Value =
            serde_json::from_str(resources).map_err(|e| format!("invalid entrypointResources: {e}"))?;
        body.insert("entrypoint_resources".to_string(), resources);
    }
    Ok(Value::Object(body))
}

/// DEVIATIONS 11: the cluster is usable once `RayClusterProvisioned` and `HeadPodReady` are True; the deprecated
/// `state: ready` still counts (the conditions gate may be off).
fn usable(cluster: &RayCluster) -> bool {
    let status = cluster.status.clone().unwrap_or_default();
    let conditions: Vec<Condition> = status.conditions.unwrap_or_default();
    let is_true = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    (is_true(RAY_CLUSTER_PROVISIONED) && is_true(HEAD_POD_READY))
        || status.state.as_deref() == Some(crate::api::raycluster::cluster_state::READY)
}

/// Go's `%v` of a `*metav1.Time`: `2025-01-01 00:00:00 +0000 UTC`.
fn go_time(time: Option<&Time>) -> String {
    match time {
        Some(time) => time.0.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        None => "<nil>".to_string(),
    }
}

/// Times on the wire have whole seconds; a step works with what a replay of the journal will see.
fn whole_seconds(time: &Time) -> Time {
    jiff::Timestamp::from_second(time.0.as_second()).map(Time).unwrap_or_else(|_| time.clone())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::config::FeatureGates;

    #[test]
    fn the_transition_table_is_the_definition_file() {
        assert_eq!(RayJobMachine::transitions(), fsm::definition("rayjob").unwrap().transitions);
    }

    /// A RayJob as the API server holds it (the CRD's defaults filled in), with these spec fields.
    fn job(spec: Value) -> RayJob {
        serde_json::from_value(
            json!({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}, "spec": spec}),
        )
        .unwrap()
    }

    #[rstest]
    #[case::entrypoint_untrimmed(json!({"entrypoint": " python a.py "}), json!({"entrypoint": " python a.py ", "submission_id": "j-1"}))]
    #[case::runtime_env_as_a_map(
        json!({"entrypoint": "e", "runtimeEnvYAML": "pip: [requests]\nenv_vars: {A: b}"}),
        json!({"entrypoint": "e", "submission_id": "j-1", "runtime_env": {"pip": ["requests"], "env_vars": {"A": "b"}}})
    )]
    #[case::metadata(json!({"entrypoint": "e", "metadata": {"k": "v"}}), json!({"entrypoint": "e", "submission_id": "j-1", "metadata": {"k": "v"}}))]
    #[case::resources_as_numbers_and_a_map(
        json!({"entrypoint": "e", "entrypointNumCpus": 1.5, "entrypointNumGpus": 0.0, "entrypointResources": "{\"TPU\": 4}"}),
        json!({"entrypoint": "e", "submission_id": "j-1", "entrypoint_num_cpus": 1.5, "entrypoint_resources": {"TPU": 4}})
    )]
    fn the_submission_is_kuberays_post_body(#[case] spec: Value, #[case] body: Value) {
        assert_eq!(submission(&job(spec), "j-1"), Ok(body));
    }

    #[rstest]
    #[case::no_policy_no_shutdown(json!({}), "", &[], None)]
    #[case::shutdown_deletes_the_cluster(json!({"shutdownAfterJobFinishes": true}), "", &[], Some(Shutdown::DeleteCluster))]
    #[case::shutdown_deletes_the_job_when_told(
        json!({"shutdownAfterJobFinishes": true}), "", &[("DELETE_RAYJOB_CR_AFTER_JOB_FINISHES", "true")], Some(Shutdown::DeleteSelf)
    )]
    #[case::policy_over_shutdown(json!({"shutdownAfterJobFinishes": true, "deletionPolicy": "DeleteWorkers"}), "", &[], Some(Shutdown::SuspendWorkers))]
    #[case::delete_none(json!({"deletionPolicy": "DeleteNone"}), "", &[], None)]
    #[case::delete_self(json!({"deletionPolicy": "DeleteSelf"}), "", &[], Some(Shutdown::DeleteSelf))]
    #[case::gate_off_ignores_the_policy(
        json!({"shutdownAfterJobFinishes": true, "deletionPolicy": "DeleteSelf"}), "RayJobDeletionPolicy=false", &[], Some(Shutdown::DeleteCluster)
    )]
    #[case::selected_clusters_stay(json!({"shutdownAfterJobFinishes": true, "clusterSelector": {"ray.io/cluster": "c"}}), "", &[], None)]
    fn what_goes_after_the_job_finishes(
        #[case] spec: Value,
        #[case] gates: &str,
        #[case] env: &[(&str, &str)],
        #[case] expected: Option<Shutdown>,
    ) {
        let config = OperatorConfig {
            feature_gates: FeatureGates::parse(gates).unwrap(),
            ..OperatorConfig::from_lookup(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
        };
        assert_eq!(shutdown(&job(spec), &config), expected);
    }

    #[rstest]
    #[case::both_conditions(json!({"conditions": [
        {"type": "RayClusterProvisioned", "status": "True", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"},
        {"type": "HeadPodReady", "status": "True", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}), true)]
    #[case::head_not_ready(json!({"conditions": [
        {"type": "RayClusterProvisioned", "status": "True", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"},
        {"type": "HeadPodReady", "status": "False", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}), false)]
    #[case::deprecated_state(json!({"state": "ready"}), true)]
    #[case::nothing_yet(json!({}), false)]
    fn a_cluster_is_usable_on_its_conditions(#[case] status: Value, #[case] expected: bool) {
        let cluster: RayCluster = serde_json::from_value(json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"},
            "spec": {"headGroupSpec": {"rayStartParams": {}, "template": {}}}, "status": status
        }))
        .unwrap();
        assert_eq!(usable(&cluster), expected);
    }

    #[test]
    fn times_print_as_go_prints_them() {
        let time = Time("2025-03-04T05:06:07Z".parse().unwrap());
        assert_eq!(go_time(Some(&time)), "2025-03-04 05:06:07 +0000 UTC");
        assert_eq!(go_time(None), "<nil>");
    }

    #[test]
    fn an_observation_without_the_job_is_a_gone_job() {
        let input = Input {
            object: crate::machine::ObjectRef {
                kind: MachineKind::RayJob,
                namespace: "ns".into(),
                name: "j".into(),
                uid: "u".into(),
            },
            trigger: Trigger::Resync,
            now: Time(jiff::Timestamp::UNIX_EPOCH),
            observation: Observation::RayJob(JobObservation::default()),
        };
        let decision = RayJobMachine { config: OperatorConfig::default() }.step(&Memory::default(), &input);
        assert_eq!((decision.next.as_str(), decision.reason.as_str()), ("Deleted", "JobGone"));
    }
}
