//! `kuberay journal ...` and `kuberay fixture run`: reading, replaying and explaining recorded decisions, and
//! driving machines through fixtures on the engine's path.

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use super::{EXIT_INVALID, EXIT_OK, EXIT_UNREADABLE};
use crate::engine::Engine;
use crate::journal::history::{self, History, Logged, Step};
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
    Audit {
        object: String,
        /// Also a Ray job's output, each line `  JOB_ID | LINE` under the transition after which it arrived.
        #[arg(long)]
        logs: bool,
    },
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
        JournalCommand::Audit { object, logs } => audit(&journal, &object, logs, out, err)?,
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

fn history_of<S: Store>(
    journal: &Journal<S>,
    name: &str,
    err: &mut dyn Write,
) -> std::io::Result<Option<(History, i32)>> {
    let Some(objects) = objects_named(journal, name, err)? else { return Ok(None) };
    let history = history::history(journal, Some(&objects)).map_err(std::io::Error::other)?;
    let code = print_damage(&history.damage, err)?;
    Ok(Some((history, code)))
}

/// `TIME TRIGGER FROM -> TO REASON [COMMANDS]`, one line per transition, TIME being the Input's `now`; with `logs`,
/// the Ray job output journaled after each transition (and before the next), one `  JOB_ID | LINE` per line.
pub fn audit<S: Store>(
    journal: &Journal<S>,
    name: &str,
    logs: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let Some((history, code)) = history_of(journal, name, err)? else { return Ok(EXIT_INVALID) };
    let steps = &history.steps;
    let mut output = history.logs.iter().filter(|_| logs).peekable();
    let incarnations: BTreeSet<&str> = steps.iter().map(|step| step.input.object.uid.as_str()).collect();
    let mut uid = None;
    for step in steps {
        while let Some(logged) = output.next_if(|logged| logged.seq < step.decision_seq) {
            print_output(logged, out)?;
        }
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
    for logged in output {
        print_output(logged, out)?;
    }
    Ok(code)
}

fn print_output(logged: &Logged, out: &mut dyn Write) -> std::io::Result<()> {
    for line in &logged.logs.lines {
        writeln!(out, "{}", format!("  {} | {line}", logged.logs.job_id).trim_end())?;
    }
    Ok(())
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
    let Some((History { steps, .. }, code)) = history_of(journal, name, err)? else { return Ok(EXIT_INVALID) };
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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::journal::{JobLogs, synthetic};

    fn logs(job_id: &str, first_line: u64, lines: &[&str]) -> JobLogs {
        JobLogs {
            job_id: job_id.into(),
            first_line,
            lines: lines.iter().map(|line| line.to_string()).collect(),
            time: Time(jiff::Timestamp::UNIX_EPOCH),
            complete: false,
        }
    }

    fn audit_text(journal: &Journal<crate::journal::store::MemStore>, logs: bool) -> String {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = audit(journal, "raycluster/team-0/raycluster-0", logs, &mut out, &mut err).unwrap();
        assert_eq!((code, String::from_utf8(err).unwrap()), (EXIT_OK, String::new()));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn audit_shows_job_output_under_the_transition_it_followed() {
        let mut journal = Journal::in_memory().unwrap();
        let mut steps = synthetic::transitions(1, 3);
        let mut step = |journal: &mut Journal<_>| {
            let (input, decision) = steps.next().unwrap();
            let seq = journal.append_input(&input, &Default::default()).unwrap();
            journal.append_decision(&input.object, seq, &decision).unwrap();
            input.object
        };
        let object = step(&mut journal);
        journal.append_logs(&object, &logs("job-1", 0, &["one", ""])).unwrap();
        journal.append_logs(&object, &logs("job-1", 2, &["two"])).unwrap();
        step(&mut journal);
        step(&mut journal);
        journal.append_logs(&object, &logs("job-2", 0, &["last TOKEN=t"])).unwrap();
        journal.commit().unwrap();

        let plain = audit_text(&journal, false);
        let transitions: Vec<&str> = plain.lines().collect();
        assert_eq!(transitions.len(), 3, "{plain}");
        assert!(!plain.contains(" | "), "without --logs the timeline is the transitions alone: {plain}");
        let expected = format!(
            "{}\n  job-1 | one\n  job-1 |\n  job-1 | two\n{}\n{}\n  job-2 | last TOKEN=<redacted>\n",
            transitions[0], transitions[1], transitions[2]
        );
        assert_eq!(audit_text(&journal, true), expected);
    }

    #[test]
    fn replay_steps_over_job_output() {
        let config = crate::config::OperatorConfig::default();
        let started = Time(jiff::Timestamp::UNIX_EPOCH);
        let mut engine = Engine::start(Journal::in_memory().unwrap(), &config, started).unwrap();
        let (input, _) = synthetic::transitions(1, 1).next().unwrap();
        engine.journal_logs(&input.object, &logs("job-1", 0, &["early"])).unwrap();
        engine.step(&Default::default(), &input).unwrap();
        engine.journal_logs(&input.object, &logs("job-1", 1, &["late"])).unwrap();
        engine.commit().unwrap();
        let journal = engine.into_journal();
        let mut out = Vec::new();
        let code = replay(&journal, None, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().last(), Some("replayed 5 records, 1 objects, 0 divergences"), "{out}");
        assert_eq!(code, EXIT_OK);
        let mut out = Vec::new();
        assert_eq!(why(&journal, "raycluster/team-0/raycluster-0", None, &mut out, &mut Vec::new()).unwrap(), EXIT_OK);
        assert!(String::from_utf8(out).unwrap().contains("state: "));
    }
}
