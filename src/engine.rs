//! The path every decision takes (DESIGN.md): the Input is journaled with the memory it steps from, the machine
//! steps, the Decision is journaled. Its commands may run only once [`Engine::commit`] has made it durable
//! (write-ahead); many steps share one commit (group commit). The runtime and `kuberay fixture run` step machines
//! through here, and replay reads what it wrote.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::config::OperatorConfig;
use crate::journal::store::{SledStore, Store};
use crate::journal::{JobLogs, Journal, JournalError, Session};
use crate::journal::{Retention, RetentionReport};
use crate::machine::{Decision, Input, Machine, MachineKind, Memory, ObjectRef, machine_for};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the configuration does not serialize: {0}")]
    Config(#[from] serde_json::Error),
    #[error("no machine steps {0:?} objects yet")]
    NoMachine(MachineKind),
    #[error("the engine's task stopped: {0}")]
    Stopped(String),
}

/// The machines of one operator configuration over one journal.
pub struct Engine<S: Store = SledStore> {
    journal: Journal<S>,
    machines: BTreeMap<MachineKind, Box<dyn Machine>>,
    /// Steps that will not replay as they were taken (see [`crate::journal::history::replays`]).
    divergences: u64,
}

impl<S: Store> Engine<S> {
    /// Starts a session: its header records the configuration the machines run with, so that replay runs them the
    /// same way.
    pub fn start(mut journal: Journal<S>, config: &OperatorConfig, now: Time) -> Result<Self, EngineError> {
        let session = Session {
            operator: env!("CARGO_PKG_VERSION").to_string(),
            started: now,
            config: serde_json::to_value(config)?,
        };
        journal.append_session(&session)?;
        let machines = MachineKind::ALL
            .into_iter()
            .filter_map(|kind| machine_for(kind, config).map(|machine| (kind, machine)))
            .collect();
        Ok(Engine { journal, machines, divergences: 0 })
    }

    /// One step: journal the Input and the memory, step the machine, journal the Decision. The Decision is not
    /// durable (and its commands must not run) until [`Engine::commit`].
    pub fn step(&mut self, memory: &Memory, input: &Input) -> Result<Decision, EngineError> {
        let kind = input.object.kind;
        let machine = self.machines.get(&kind).ok_or(EngineError::NoMachine(kind))?;
        // Made once: the journal stores them, and the replay check reads them redacted.
        let parts = crate::journal::input_parts(input, memory)?;
        let input_seq = self.journal.append_input_parts(input, &parts)?;
        let decision = machine.step(memory, input);
        let decision_seq = self.journal.append_decision(&input.object, input_seq, &decision)?;
        if !crate::journal::history::replays(machine.as_ref(), &parts, &decision)? {
            self.divergences += 1;
            tracing::warn!(object = %input.object, seq = decision_seq, "this step will not replay as it was taken");
        }
        Ok(decision)
    }

    /// Journals lines of a job's output under its object, between the steps: no machine reads them. Durable with
    /// the next [`Engine::commit`].
    pub fn journal_logs(&mut self, object: &ObjectRef, logs: &JobLogs) -> Result<u64, EngineError> {
        Ok(self.journal.append_logs(object, logs)?)
    }

    /// How many steps so far will not replay as they were taken.
    pub fn divergences(&self) -> u64 {
        self.divergences
    }

    /// Makes every step so far durable at one point; returns the durable seq.
    pub fn commit(&mut self) -> Result<u64, EngineError> {
        Ok(self.journal.commit()?)
    }

    /// Applies retention to the journal (records of objects long gone, the oldest past the size cap).
    pub fn retain(&mut self, policy: &Retention, now: Time) -> Result<RetentionReport, EngineError> {
        Ok(self.journal.retain(policy, now.0)?)
    }

    pub fn journal(&self) -> &Journal<S> {
        &self.journal
    }

    pub fn into_journal(self) -> Journal<S> {
        self.journal
    }
}
