//! Reading decisions back: replay (today's machines against the recorded Inputs and memories), the audit timeline
//! of an object, and the chain of Inputs that led to a state (`kuberay journal replay|audit|why`). Job output
//! ([`Kind::Logs`]) is read alongside for the audit; no machine reads it, so replay steps over it.
//!
//! Replay runs the machines on the Inputs as the journal holds them, that is redacted, and redacts what they decide
//! the same way before comparing: a machine that only copies secrets reproduces the same placeholders (DESIGN.md).

use std::collections::{BTreeMap, BTreeSet};

use super::redact::redact_part;
use super::store::Store;
use super::{Damage, DamageKind, Entry, JobLogs, Journal, JournalError, Kind, Scanned};
use crate::config::OperatorConfig;
use crate::machine::{Decision, Input, Machine, MachineKind, Memory, ObjectRef, Part, machine_for};

/// An Input and the Decision taken on it, read back together.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub input_seq: u64,
    pub decision_seq: u64,
    pub input: Input,
    pub memory: Memory,
    pub decision: Decision,
    /// The session this step ran in: an index into [`History::configs`].
    pub session: usize,
}

impl Step {
    /// The state the object was in before this step, as the machine's definition spells it.
    pub fn from_state(&self) -> String {
        crate::machine::state_before(&self.memory, &self.input)
    }
}

/// Lines of a job's output, as journaled under its object.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    pub seq: u64,
    pub object: ObjectRef,
    pub logs: JobLogs,
}

/// What a walk over the journal met: the steps, and damage where a record should have been.
#[derive(Debug, Default)]
pub struct History {
    pub steps: Vec<Step>,
    /// The job output met, in seq order.
    pub logs: Vec<Logged>,
    pub damage: Vec<Damage>,
    /// Records read, of every kind.
    pub records: u64,
    /// The configurations of the sessions the steps ran in (each step's `session` indexes it).
    pub configs: Vec<OperatorConfig>,
}

/// Reads the steps of every object (or of the objects given), pairing each Decision with its Input; the
/// configuration of the session each step ran in comes along, for replay.
pub fn history<S: Store>(journal: &Journal<S>, objects: Option<&[ObjectRef]>) -> Result<History, JournalError> {
    let mut history = History::default();
    let mut inputs: BTreeMap<u64, Entry> = BTreeMap::new();
    let scans: Vec<_> = match objects {
        None => vec![journal.scan()],
        Some(objects) => objects.iter().map(|object| journal.scan_object(object)).collect(),
    };
    // Sessions are read in full: a step runs under the latest session header before it.
    let mut sessions: Vec<(u64, OperatorConfig)> = Vec::new();
    for scanned in journal.sessions() {
        match scanned {
            Ok(Scanned::Record(entry)) => match entry.session().and_then(|s| Ok(serde_json::from_value(s.config)?)) {
                Ok(config) => sessions.push((entry.seq, config)),
                Err(e) => history.damage.push(Damage { seq: entry.seq, kind: DamageKind::Corrupt(e.to_string()) }),
            },
            Ok(Scanned::Damage(damage)) => history.damage.push(damage),
            Err(e) => history.damage.push(Damage { seq: 0, kind: DamageKind::Unreadable(e.to_string()) }),
        }
    }
    history.configs =
        std::iter::once(OperatorConfig::default()).chain(sessions.iter().map(|(_, c)| c.clone())).collect();
    for scanned in scans.into_iter().flatten() {
        let entry = match scanned {
            Ok(Scanned::Record(entry)) => entry,
            Ok(Scanned::Damage(damage)) => {
                history.damage.push(damage);
                continue;
            }
            Err(e) => {
                history.damage.push(Damage { seq: 0, kind: DamageKind::Unreadable(e.to_string()) });
                continue;
            }
        };
        history.records += 1;
        match entry.kind {
            Kind::Session => {}
            Kind::Logs => match (entry.logs(), entry.object) {
                (Ok(logs), Some(object)) => history.logs.push(Logged { seq: entry.seq, object, logs }),
                (Err(e), _) => history.damage.push(Damage { seq: entry.seq, kind: DamageKind::Corrupt(e.to_string()) }),
                (Ok(_), None) => {
                    let why = "job output that belongs to no object".to_string();
                    history.damage.push(Damage { seq: entry.seq, kind: DamageKind::Corrupt(why) });
                }
            },
            Kind::Input => {
                inputs.insert(entry.seq, entry);
            }
            Kind::Decision { input } => {
                // The latest session header before the Input (0: none, the default configuration).
                let session = sessions.partition_point(|(seq, _)| *seq < input);
                let input_entry = inputs.remove(&input).map_or_else(|| journal.entry(input), Ok);
                let step = input_entry.and_then(|input_entry| {
                    Ok(Step {
                        input_seq: input,
                        decision_seq: entry.seq,
                        input: input_entry.input()?,
                        memory: input_entry.memory()?,
                        decision: entry.decision()?,
                        session,
                    })
                });
                match step {
                    Ok(step) => history.steps.push(step),
                    // A Decision that cannot be paired with its Input is damage at its seq; the walk goes on.
                    Err(e) => history.damage.push(Damage { seq: entry.seq, kind: DamageKind::Corrupt(e.to_string()) }),
                }
            }
        }
    }
    Ok(history)
}

/// A Decision today's machine takes differently from the recorded one.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    pub seq: u64,
    pub object: ObjectRef,
    pub recorded: Decision,
    pub replayed: Decision,
}

#[derive(Debug, Default)]
pub struct ReplayReport {
    pub records: u64,
    pub objects: BTreeSet<ObjectRef>,
    pub divergences: Vec<Divergence>,
    pub damage: Vec<Damage>,
    /// Steps of kinds no machine steps (yet): they cannot be replayed, and say so.
    pub unknown: BTreeSet<MachineKind>,
}

/// Re-runs every recorded Input through today's machines, from the recorded memory, and compares the Decisions
/// (both redacted).
pub fn replay<S: Store>(journal: &Journal<S>, objects: Option<&[ObjectRef]>) -> Result<ReplayReport, JournalError> {
    let history = history(journal, objects)?;
    let mut report = ReplayReport { records: history.records, damage: history.damage, ..ReplayReport::default() };
    let mut machines: BTreeMap<(MachineKind, usize), Box<dyn Machine>> = BTreeMap::new();
    for step in history.steps {
        let kind = step.input.object.kind;
        report.objects.insert(step.input.object.clone());
        let machine = match machines.entry((kind, step.session)) {
            std::collections::btree_map::Entry::Occupied(found) => found.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                match history.configs.get(step.session).and_then(|config| machine_for(kind, config)) {
                    Some(machine) => slot.insert(machine),
                    None => {
                        report.unknown.insert(kind);
                        continue;
                    }
                }
            }
        };
        let replayed = machine.step(&step.memory, &step.input);
        if redacted_parts(&replayed)? != redacted_parts(&step.decision)? {
            report.divergences.push(Divergence {
                seq: step.decision_seq,
                object: step.input.object,
                recorded: step.decision,
                replayed,
            });
        }
    }
    Ok(report)
}

/// Whether a step, as the journal records it (redacted), will replay into the Decision it produced — what
/// [`replay`] finds later, checked as the step is taken. Only a step whose Input or memory redaction changed can
/// diverge (the machine is pure), so only those are stepped again.
/// `parts` are the Input record's ([`super::input_parts`]).
pub fn replays(machine: &dyn Machine, parts: &[Part], decision: &Decision) -> Result<bool, JournalError> {
    let mut changed = false;
    let mut recorded = Vec::with_capacity(parts.len());
    for part in parts {
        let redacted = redact_part(part)?;
        changed |= matches!(redacted, std::borrow::Cow::Owned(_));
        recorded.push(redacted.into_owned());
    }
    if !changed {
        return Ok(true);
    }
    let recorded_input = Input::from_parts(&recorded)?;
    let recorded_memory: Memory = match recorded.iter().find(|part| part.name == super::MEMORY_PART) {
        Some(part) => serde_json::from_slice(&part.json)?,
        None => Memory::default(),
    };
    let replayed = machine.step(&recorded_memory, &recorded_input);
    Ok(redacted_parts(&replayed)? == redacted_parts(decision)?)
}

fn redacted_parts(decision: &Decision) -> Result<Vec<Part>, JournalError> {
    let mut parts = Vec::new();
    for part in decision.parts()? {
        parts.push(redact_part(&part)?.into_owned());
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::machine::fixture::{Fixture, run_with};

    /// Journals a fixture as a machine that differs from today's would have: every decision to create a Pod had
    /// another reason.
    fn journal_of_a_changed_machine() -> (Journal<crate::journal::store::MemStore>, Vec<u64>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/raycluster/first-time-provisioned.yaml");
        let fixture = Fixture::load(&path).unwrap();
        let config = fixture.config.operator_config().unwrap();
        let machine = machine_for(MachineKind::RayCluster, &config).unwrap();
        let mut journal = Journal::in_memory().unwrap();
        let mut changed = Vec::new();
        let report = run_with(
            MachineKind::RayCluster,
            &mut |memory, input| {
                let seq = journal.append_input(input, memory).map_err(|e| e.to_string())?;
                let decision = machine.step(memory, input);
                let mut recorded = decision.clone();
                if recorded.commands.iter().any(|c| c.summary().starts_with("create Pod")) {
                    recorded.reason = "YesterdaysReason".to_string();
                    changed.push(seq + 1);
                }
                journal.append_decision(&input.object, seq, &recorded).map_err(|e| e.to_string())?;
                // The fixture goes on with today's decision; the journal holds the changed machine's.
                Ok(decision)
            },
            &fixture,
        );
        assert_eq!(report.mismatch, None);
        journal.commit().unwrap();
        (journal, changed)
    }

    #[test]
    fn replay_reports_the_decisions_a_changed_machine_took() {
        let (journal, changed) = journal_of_a_changed_machine();
        assert!(!changed.is_empty());
        let report = replay(&journal, None).unwrap();
        let diverged: Vec<u64> = report.divergences.iter().map(|d| d.seq).collect();
        assert_eq!(diverged, changed);
        assert!(report.divergences.iter().all(|d| d.recorded.reason == "YesterdaysReason"));
        assert!(report.divergences.iter().all(|d| d.replayed.reason != "YesterdaysReason"));
        assert!(report.damage.is_empty());
    }

    #[test]
    fn history_pairs_every_decision_with_its_input_and_memory() {
        let (journal, _) = journal_of_a_changed_machine();
        let history = history(&journal, None).unwrap();
        assert!(history.damage.is_empty());
        assert_eq!(history.records, 2 * history.steps.len() as u64);
        for pair in history.steps.windows(2) {
            // Each step starts from the memory the previous Decision left.
            assert_eq!(pair[1].memory, pair[0].decision.memory);
            assert_eq!(pair[1].input_seq, pair[0].decision_seq + 1);
        }
        assert_eq!(history.steps[0].from_state(), "New");
    }

    /// A machine that puts the head's `redis-password` start parameter into its Decision: in an env value (which the
    /// journal redacts the same way) or in its reason (which it does not).
    struct Echo {
        into_reason: bool,
    }

    impl Machine for Echo {
        fn kind(&self) -> MachineKind {
            MachineKind::RayCluster
        }

        fn step(&self, _: &Memory, input: &Input) -> Decision {
            let crate::machine::Observation::RayCluster(observation) = &input.observation else { unreachable!() };
            let params = observation.cluster.as_ref().map(|c| c.spec.head_group_spec.ray_start_params.clone());
            let secret = params.and_then(|p| p.get("redis-password").cloned()).unwrap_or_default();
            let env = serde_json::json!({"kind": "Pod", "env": [{"name": "REDIS_PASSWORD", "value": secret}]});
            Decision {
                next: "Provisioning".to_string(),
                commands: vec![crate::machine::Command::Create { object: env }],
                reason: if self.into_reason { secret } else { "Reconciled".to_string() },
                explanation: String::new(),
                memory: Memory::default(),
            }
        }
    }

    #[rstest::rstest]
    #[case::secret_copied_where_it_is_redacted_again(false, "s3cret", true)]
    #[case::secret_leaked_where_it_is_not(true, "s3cret", false)]
    #[case::no_secret_at_all(true, "$REDIS_PASSWORD", true)]
    fn a_step_replays_unless_redaction_changes_its_decision(
        #[case] into_reason: bool,
        #[case] password: &str,
        #[case] replayable: bool,
    ) {
        let mut cluster = crate::api::RayCluster::new("c", Default::default());
        cluster.spec.head_group_spec.ray_start_params.insert("redis-password".to_string(), password.to_string());
        let input = Input {
            object: ObjectRef {
                kind: MachineKind::RayCluster,
                namespace: "ns".to_string(),
                name: "c".to_string(),
                uid: "u".to_string(),
            },
            trigger: crate::machine::Trigger::Resync,
            now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            observation: crate::machine::Observation::RayCluster(crate::machine::ClusterObservation {
                cluster: Some(cluster),
                ..Default::default()
            }),
        };
        let machine = Echo { into_reason };
        let decision = machine.step(&Memory::default(), &input);
        let parts = super::super::input_parts(&input, &Memory::default()).unwrap();
        assert_eq!(replays(&machine, &parts, &decision).unwrap(), replayable);
    }
}
