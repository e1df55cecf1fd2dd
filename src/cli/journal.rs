//! `kuberay journal ...` and `kuberay fixture run`: reading, replaying and explaining recorded decisions, and
//! driving machines through fixtures on the engine's path.

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use super::{EXIT_INVALID, EXIT_OK, EXIT_UNREADABLE};
use crate::engine::Engine;
use crate::journal::history::{self, Step};
use crate::journal::store::Store;
use crate::journal::{Damage, ExportFormat, Journal, SledOptions};
use crate::machine::{Command as MachineCommand, ObjectRef, fixture};

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Re-run every recorded Input through today's machines and compare the Decisions.
    Replay {
        /// Replay an export (jsonl or bin, detected) instead of the journal directory.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Only this object (`KIND/NAMESPACE/NAME`).
        #[arg(long)]
        object: Option<String>,
    },
    /// An object's timeline: `TIME TRIGGER FROM -> TO REASON [COMMANDS]`, one line per transition.
    Audit { object: String },
    /// The Inputs that led to an object's current (or the Nth) state, oldest first, and its conditions.
    Why {
        object: String,
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Totals, then one line per object: `OBJ RECORDS`.
    Stats,
    /// Write the journal (or one object's records) to a file.
    Export {
        #[arg(long)]
        object: Option<String>,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
        format: FormatArg,
    },
    /// Read an export into the journal.
    Import { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Bin,
}

#[derive(Subcommand, Debug)]
pub enum FixtureCommand {
    /// Drive the machines through fixtures on the engine's path, journal every step, and check expectations.
    Run {
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "./journal")]
        journal: PathBuf,
    },
}

/// Exit code when the journal is damaged: what was read is reported, and so is the damage.
pub const EXIT_DAMAGED: i32 = 2;

pub fn journal(dir: &Path, command: JournalCommand, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    if let JournalCommand::Replay { file: Some(file), object } = &command {
        let mut journal = Journal::in_memory().map_err(std::io::Error::other)?;
        let report = journal
            .import(&mut BufReader::new(std::fs::File::open(file)?))
            .map_err(|e| std::io::Error::other(format!("{}: {e}", file.display())))?;
        for (seq, why) in &report.skipped {
            writeln!(err, "{}: record {seq} left out: {why}", file.display())?;
        }
        return replay(&journal, object.as_deref(), out);
    }
    if !dir.exists() && !matches!(command, JournalCommand::Import { .. }) {
        writeln!(err, "error: no journal at {}", dir.display())?;
        return Ok(EXIT_UNREADABLE);
    }
    let mut journal = Journal::open(dir, &SledOptions::default()).map_err(std::io::Error::other)?;
    let opened = report_recovery(&journal, out)?;
    let code = match command {
        JournalCommand::Replay { object, .. } => replay(&journal, object.as_deref(), out)?,
        JournalCommand::Audit { object } => audit(&journal, &object, out, err)?,
        JournalCommand::Why { object, seq } => why(&journal, &object, seq, out, err)?,
        JournalCommand::Stats => stats(&journal, out)?,
        JournalCommand::Export { object, output, format } => {
            export(&journal, object.as_deref(), &output, format, out, err)?
        }
        JournalCommand::Import { file } => {
            let report = journal
                .import(&mut BufReader::new(std::fs::File::open(&file)?))
                .map_err(|e| std::io::Error::other(format!("{}: {e}", file.display())))?;
            journal.commit().map_err(std::io::Error::other)?;
            for (seq, why) in &report.skipped {
                writeln!(err, "{}: record {seq} left out: {why}", file.display())?;
            }
            writeln!(out, "imported {} records", report.records)?;
            EXIT_OK
        }
    };
    Ok(code.max(opened))
}

/// What opening found: damage and a cut torn tail are said, and damage makes the command exit 2.
fn report_recovery<S: Store>(journal: &Journal<S>, out: &mut dyn Write) -> std::io::Result<i32> {
    let recovery = journal.recovery();
    if let Some(cut) = recovery.cut {
        writeln!(out, "torn tail cut: {} records from seq {} (never promised durable)", cut.records, cut.from)?;
    }
    print_damage(&recovery.damage, out)
}

fn print_damage(damage: &[Damage], out: &mut dyn Write) -> std::io::Result<i32> {
    for damage in damage {
        writeln!(out, "damage: {damage}")?;
    }
    Ok(if damage.is_empty() { EXIT_OK } else { EXIT_DAMAGED })
}

/// The objects a `KIND/NAMESPACE/NAME` names (one per uid the journal has seen under that name).
fn objects_named<S: Store>(
    journal: &Journal<S>,
    name: &str,
    err: &mut dyn Write,
) -> std::io::Result<Option<Vec<ObjectRef>>> {
    let objects = journal.find_objects(name);
    if objects.is_empty() {
        writeln!(
            err,
            "error: the journal has no object {name} (names are KIND/NAMESPACE/NAME, e.g. raycluster/default/raycluster-kuberay)"
        )?;
        return Ok(None);
    }
    Ok(Some(objects))
}

fn replay<S: Store>(journal: &Journal<S>, object: Option<&str>, out: &mut dyn Write) -> std::io::Result<i32> {
    let objects = object.map(|name| journal.find_objects(name));
    let report = history::replay(journal, objects.as_deref()).map_err(std::io::Error::other)?;
    for divergence in &report.divergences {
        writeln!(
            out,
            "divergence at seq {} {}: recorded {}, replayed {}",
            divergence.seq,
            divergence.object,
            decision_line(&divergence.recorded),
            decision_line(&divergence.replayed)
        )?;
    }
    for kind in &report.unknown {
        writeln!(out, "not replayed: no machine steps {kind:?} objects in this build")?;
    }
    let damaged = print_damage(&report.damage, out)?;
    let damage_note =
        if report.damage.is_empty() { String::new() } else { format!(", {} damaged", report.damage.len()) };
    writeln!(
        out,
        "replayed {} records, {} objects, {} divergences{damage_note}",
        report.records,
        report.objects.len(),
        report.divergences.len()
    )?;
    Ok(if damaged != EXIT_OK {
        damaged
    } else if report.divergences.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID
    })
}

fn decision_line(decision: &crate::machine::Decision) -> String {
    format!("{} {}{}", decision.next, decision.reason, commands_suffix(&decision.commands))
}

fn commands_suffix(commands: &[MachineCommand]) -> String {
    if commands.is_empty() {
        String::new()
    } else {
        format!(" [{}]", commands.iter().map(MachineCommand::summary).collect::<Vec<_>>().join(", "))
    }
}

fn steps_of<S: Store>(
    journal: &Journal<S>,
    name: &str,
    err: &mut dyn Write,
) -> std::io::Result<Option<(Vec<Step>, i32)>> {
    let Some(objects) = objects_named(journal, name, err)? else { return Ok(None) };
    let history = history::history(journal, Some(&objects)).map_err(std::io::Error::other)?;
    let code = print_damage(&history.damage, err)?;
    Ok(Some((history.steps, code)))
}

/// `TIME TRIGGER FROM -> TO REASON [COMMANDS]`, one line per transition, TIME being the Input's `now`.
fn audit<S: Store>(journal: &Journal<S>, name: &str, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let Some((steps, code)) = steps_of(journal, name, err)? else { return Ok(EXIT_INVALID) };
    let incarnations: BTreeSet<&str> = steps.iter().map(|step| step.input.object.uid.as_str()).collect();
    let mut uid = None;
    for step in &steps {
        // A name reused after a deletion is a new object: each incarnation under its uid.
        if incarnations.len() > 1 && uid != Some(&step.input.object.uid) {
            uid = Some(&step.input.object.uid);
            writeln!(out, "# {} uid {}", step.input.object, step.input.object.uid)?;
        }
        writeln!(
            out,
            "{} {} {} -> {} {}{}",
            step.input.now.0,
            step.input.trigger,
            step.from_state(),
            step.decision.next,
            step.decision.reason,
            commands_suffix(&step.decision.commands)
        )?;
    }
    Ok(code)
}

/// The Inputs that led to the state at `seq` (or the last): those whose Decisions changed the state, wrote the
/// status or acted, oldest first, each with its seq; then the state and its conditions.
fn why<S: Store>(
    journal: &Journal<S>,
    name: &str,
    seq: Option<u64>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let Some((steps, code)) = steps_of(journal, name, err)? else { return Ok(EXIT_INVALID) };
    let before = |step: &&Step| seq.is_none_or(|seq| step.input_seq <= seq);
    // The incarnation (uid) whose state is asked for: the one of the last step at or before the seq.
    let Some(uid) = steps.iter().filter(before).max_by_key(|step| step.input_seq).map(|s| &s.input.object.uid) else {
        writeln!(err, "error: {name} has no step at or before seq {}", seq.unwrap_or_default())?;
        return Ok(EXIT_INVALID);
    };
    let upto: Vec<&Step> = steps.iter().filter(before).filter(|step| &step.input.object.uid == uid).collect();
    let Some(last) = upto.last() else { return Ok(EXIT_INVALID) };
    for step in upto.iter().filter(|step| {
        step.from_state() != step.decision.next
            || step.decision.commands.iter().any(|c| !matches!(c, MachineCommand::RequeueAfter { .. }))
    }) {
        writeln!(
            out,
            "{} {} {}: {} -> {} {}: {}",
            step.input_seq,
            step.input.now.0,
            step.input.trigger,
            step.from_state(),
            step.decision.next,
            step.decision.reason,
            step.decision.explanation
        )?;
    }
    writeln!(out, "state: {}", last.decision.next)?;
    if let Some(conditions) = last_conditions(&upto) {
        writeln!(out, "conditions: {conditions}")?;
    }
    Ok(code)
}

/// The conditions of the last status written up to here, else of the last status observed.
fn last_conditions(steps: &[&Step]) -> Option<String> {
    let written = steps.iter().rev().find_map(|step| {
        step.decision.commands.iter().rev().find_map(|command| match command {
            MachineCommand::WriteStatus { status } => Some(status.clone()),
            _ => None,
        })
    });
    let observed = || {
        steps.last().and_then(|step| match &step.input.observation {
            crate::machine::Observation::RayCluster(observation) => {
                observation.cluster.as_ref().and_then(|c| serde_json::to_value(&c.status).ok())
            }
            crate::machine::Observation::RayJob(observation) => {
                observation.job.as_ref().and_then(|j| serde_json::to_value(&j.status).ok())
            }
        })
    };
    let status = written.or_else(observed)?;
    let conditions = status.get("conditions")?.as_array()?;
    let shown: Vec<String> = conditions
        .iter()
        .map(|c| {
            let field = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            format!("{}={} ({})", field("type"), field("status"), field("reason"))
        })
        .collect();
    Some(shown.join(", "))
}

fn stats<S: Store>(journal: &Journal<S>, out: &mut dyn Write) -> std::io::Result<i32> {
    let stats = journal.stats().map_err(std::io::Error::other)?;
    writeln!(out, "objects {}, records {}, bytes on disk {}", stats.objects, stats.records, stats.bytes_on_disk)?;
    writeln!(out, "blobs {}, durable seq {}, low-water mark {}", stats.blobs, stats.durable, stats.low_water)?;
    for summary in journal.objects().map_err(std::io::Error::other)? {
        writeln!(out, "{} {}", summary.object, summary.records)?;
    }
    Ok(EXIT_OK)
}

fn export<S: Store>(
    journal: &Journal<S>,
    object: Option<&str>,
    output: &Path,
    format: FormatArg,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let objects = match object {
        Some(name) => match objects_named(journal, name, err)? {
            Some(objects) => objects.into_iter().map(Some).collect(),
            None => return Ok(EXIT_INVALID),
        },
        None => vec![None],
    };
    let format = match format {
        FormatArg::Jsonl => ExportFormat::Jsonl,
        FormatArg::Bin => ExportFormat::Bin,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(output)?);
    let mut records = 0;
    let mut code = EXIT_OK;
    for object in objects {
        let report = journal.export(&mut file, format, object.as_ref()).map_err(std::io::Error::other)?;
        records += report.records;
        code = code.max(print_damage(&report.damage, err)?);
    }
    file.flush()?;
    writeln!(out, "exported {records} records to {}", output.display())?;
    Ok(code)
}

/// Drives each fixture through the engine (journaling every step) and checks its expectations.
pub fn fixture_run(files: &[PathBuf], dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let mut journal = Some(Journal::open(dir, &SledOptions::default()).map_err(std::io::Error::other)?);
    for path in files {
        let fixture = match fixture::Fixture::load(path) {
            Ok(fixture) => fixture,
            Err(e) => {
                writeln!(err, "{}: {e}", path.display())?;
                return Ok(EXIT_UNREADABLE);
            }
        };
        let config = fixture.config.operator_config().map_err(std::io::Error::other)?;
        let kind = fixture.machine_kind().map_err(std::io::Error::other)?;
        let started = fixture.start_time().map_err(std::io::Error::other)?;
        let Some(opened) = journal.take() else { break };
        let mut engine = Engine::start(opened, &config, started).map_err(std::io::Error::other)?;
        let mut failure = None;
        let report = fixture::run_with(
            kind,
            &mut |memory, input| {
                engine.step(memory, input).map_err(|e| {
                    let message = e.to_string();
                    failure = Some(message.clone());
                    message
                })
            },
            &fixture,
        );
        engine.commit().map_err(std::io::Error::other)?;
        journal = Some(engine.into_journal());
        if let Some(message) = failure {
            writeln!(err, "{}: the engine failed: {message}", path.display())?;
            return Ok(EXIT_UNREADABLE);
        }
        match report.mismatch {
            None => writeln!(out, "ok {} ({} steps)", report.fixture, report.steps.len())?,
            Some(mismatch) => {
                writeln!(out, "FAIL {} ({}): {mismatch}", report.fixture, path.display())?;
                return Ok(EXIT_INVALID);
            }
        }
    }
    Ok(EXIT_OK)
}
