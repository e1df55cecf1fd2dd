//! `make bench`: the journal's figures next to raw sled's, measured in one run, then divan's micro-benchmarks.
//!
//! - append: synthetic transitions journaled (Inputs and Decisions, group commit every `GROUP` records) against raw
//!   sled — the journal's sled configuration — storing each record's whole JSON under its seq with one `insert`,
//!   flushed at the same points (and, for reference, the same with sled's compression off);
//! - replay: every record read back — the journal's scan (crc, parts resolved, blobs checked) against raw sled's
//!   iteration with a crc32 over each value; then both decoding to Inputs and Decisions;
//! - bytes per journaled transition over a long synthetic run, everything on disk included;
//! - job output: lines journaled as the operator's tails journal them (records of `OUTPUT_LINES_PER_RECORD` lines,
//!   redacted, under one RayJob) against raw sled storing each record's JSON, and the look-up a tail makes when it
//!   starts (what the journal holds of a job's output) over that RayJob's records.
//!
//! Sizes: `JOURNAL_BENCH_TRANSITIONS` (default 10,000) for append and replay, `JOURNAL_BENCH_LONG` (default 40,000)
//! for the long run, `JOURNAL_BENCH_OUTPUT_LINES` (default 100,000) for job output.

// A benchmark has nothing to recover from: it stops at the first failure, loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kuberay::journal::synthetic::transitions;
use kuberay::journal::{JobLogs, Journal, Kind, Scanned, SledOptions};
use kuberay::machine::{Decision, Input, ObjectRef};

/// Records per durability point, for the journal and the baseline alike.
const GROUP: usize = 64;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(m) if m.is_dir() => directory_bytes(&entry.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn rate(records: usize, elapsed: Duration) -> f64 {
    records as f64 / elapsed.as_secs_f64()
}

struct Figures {
    records: usize,
    elapsed: Duration,
    bytes: u64,
}

impl Figures {
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<28} {:>10.0} records/s  {:>7.0} bytes/record on disk",
            rate(self.records, self.elapsed),
            self.bytes as f64 / self.records as f64
        )
    }
}

fn journal_append(dir: &Path, work: &[(Input, Decision)], options: &SledOptions) -> Figures {
    let mut journal = Journal::open(dir, options).expect("open");
    let start = Instant::now();
    let mut pending = 0;
    for (input, decision) in work {
        let seq = journal.append_input(input, &Default::default()).expect("append input");
        journal.append_decision(&input.object, seq, decision).expect("append decision");
        pending += 2;
        if pending >= GROUP {
            journal.commit().expect("commit");
            pending = 0;
        }
    }
    journal.commit().expect("commit");
    let elapsed = start.elapsed();
    let bytes = journal.stats().expect("stats").bytes_on_disk;
    Figures { records: work.len() * 2, elapsed, bytes }
}

/// Raw sled with the journal's configuration: each record's whole JSON under its seq, serialized as it is stored.
fn raw_append_json(dir: &Path, options: &SledOptions, records: impl Iterator<Item = Vec<u8>>) -> Figures {
    let db = options.config(dir).open().expect("open");
    let tree = db.open_tree("records").expect("tree");
    let start = Instant::now();
    let mut seq: u64 = 0;
    for json in records {
        seq += 1;
        tree.insert(seq.to_be_bytes(), json).expect("insert");
        if seq.is_multiple_of(GROUP as u64) {
            db.flush().expect("flush");
        }
    }
    db.flush().expect("flush");
    let elapsed = start.elapsed();
    drop(tree);
    drop(db);
    Figures { records: seq as usize, elapsed, bytes: directory_bytes(dir) }
}

/// Raw sled storing the transitions' Inputs and Decisions.
fn raw_append(dir: &Path, work: &[(Input, Decision)], options: &SledOptions) -> Figures {
    let records = work.iter().flat_map(|(input, decision)| {
        [serde_json::to_vec(input).expect("json"), serde_json::to_vec(decision).expect("json")]
    });
    raw_append_json(dir, options, records)
}

/// Lines per job-output record: a tail's frame holds the lines of about a second.
const OUTPUT_LINES_PER_RECORD: usize = 10;

/// The records of a job's output: numbered training-log lines, as a Ray driver prints them.
fn output_records(lines: usize) -> Vec<JobLogs> {
    let time = Time(jiff::Timestamp::UNIX_EPOCH);
    (0..lines.div_ceil(OUTPUT_LINES_PER_RECORD))
        .map(|record| {
            let first = record * OUTPUT_LINES_PER_RECORD;
            let lines = (first..(first + OUTPUT_LINES_PER_RECORD).min(lines))
                .map(|line| {
                    format!("(train_fn pid=4242) step {line}: loss=0.{:04} lr=0.001 throughput=812.3/s", line % 9973)
                })
                .collect();
            JobLogs {
                job_id: "rayjob-sample-abcde".into(),
                first_line: first as u64,
                lines,
                time: time.clone(),
                complete: false,
            }
        })
        .collect()
}

/// Job output journaled under one RayJob, and how long the look-up of what the journal holds of it takes.
fn output_append(dir: &Path, object: &ObjectRef, records: &[JobLogs], options: &SledOptions) -> (Figures, Duration) {
    let mut journal = Journal::open(dir, options).expect("open");
    let start = Instant::now();
    for (index, logs) in records.iter().enumerate() {
        journal.append_logs(object, logs).expect("append logs");
        if (index + 1) % GROUP == 0 {
            journal.commit().expect("commit");
        }
    }
    journal.commit().expect("commit");
    let elapsed = start.elapsed();
    let bytes = journal.stats().expect("stats").bytes_on_disk;
    let looked_up = Instant::now();
    let logged = journal.logged_output(object, "rayjob-sample-abcde").expect("logged output");
    let lookup = looked_up.elapsed();
    assert_eq!(logged.lines, records.last().map_or(0, JobLogs::end));
    (Figures { records: records.len(), elapsed, bytes }, lookup)
}

/// The best of `ROUNDS` runs, raw and journal taking turns: the machine is shared, and turns spread the noise
/// evenly over both.
const ROUNDS: usize = 3;

fn best(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by_key(|run| run.elapsed);
    runs.swap_remove(0)
}

/// Reads every record back; with `decode`, into Inputs and Decisions too.
fn journal_replay(dir: &Path, decode: bool) -> (usize, Duration) {
    let journal = Journal::open(dir, &SledOptions::default()).expect("open");
    let start = Instant::now();
    let mut records = 0;
    for item in journal.scan() {
        let Scanned::Record(entry) = item.expect("scan") else { panic!("damage in a fresh journal") };
        if decode {
            match entry.kind {
                Kind::Input => drop(std::hint::black_box(entry.input().expect("input"))),
                Kind::Decision { .. } => drop(std::hint::black_box(entry.decision().expect("decision"))),
                Kind::Logs => drop(std::hint::black_box(entry.logs().expect("logs"))),
                Kind::Session => {}
            }
        }
        records += 1;
    }
    (records, start.elapsed())
}

fn raw_replay(dir: &Path, decode: bool) -> (usize, Duration) {
    let db = SledOptions::default().config(dir).open().expect("open");
    let tree = db.open_tree("records").expect("tree");
    let start = Instant::now();
    let mut records = 0;
    let mut checksum = 0u32;
    for item in tree.iter() {
        let (key, value) = item.expect("iter");
        checksum ^= crc32fast::hash(&value);
        if decode {
            if u64::from_be_bytes(key.as_ref().try_into().expect("key")) % 2 == 1 {
                std::hint::black_box(serde_json::from_slice::<Input>(&value).expect("input"));
            } else {
                std::hint::black_box(serde_json::from_slice::<Decision>(&value).expect("decision"));
            }
        }
        records += 1;
    }
    std::hint::black_box(checksum);
    (records, start.elapsed())
}

fn report() {
    let count = size("JOURNAL_BENCH_TRANSITIONS", 10_000);
    let work: Vec<(Input, Decision)> = transitions(50, count.div_ceil(50)).take(count).collect();
    let root = tempfile::tempdir().expect("tempdir");
    let options = SledOptions::default();
    let dir = |name: String| root.path().join(name);

    println!("journal benchmark: {count} transitions ({} records), group commit every {GROUP} records", count * 2);
    let (mut raws, mut journals) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        raws.push(raw_append(&dir(format!("raw{round}")), &work, &options));
        journals.push(journal_append(&dir(format!("journal{round}")), &work, &options));
    }
    let (raw, journal) = (best(raws), best(journals));
    let uncompressed = raw_append(&dir("uncompressed".into()), &work, &SledOptions { compression: None, ..options });
    println!("{}", uncompressed.line("append, raw sled uncompressed"));
    println!("{}", raw.line("append, raw sled"));
    println!("{}", journal.line("append, journal"));
    let ratio = rate(journal.records, journal.elapsed) / rate(raw.records, raw.elapsed);
    println!("append: journal at {:.0}% of raw sled (target >= 50%)", ratio * 100.0);

    let (raw_dir, journal_dir) = (dir("raw0".into()), dir("journal0".into()));
    for decode in [false, true] {
        let what = if decode { "read + decode to Input/Decision" } else { "read + crc + parts" };
        let (mut raw, mut journal) = (Duration::MAX, Duration::MAX);
        let mut records = 0;
        for _ in 0..ROUNDS {
            let (raw_records, raw_time) = raw_replay(&raw_dir, decode);
            let (journal_records, journal_time) = journal_replay(&journal_dir, decode);
            assert_eq!(raw_records, journal_records);
            (raw, journal, records) = (raw.min(raw_time), journal.min(journal_time), raw_records);
        }
        println!(
            "replay, {what}: raw sled {:.0} records/s, journal {:.0} records/s, journal at {:.0}% of raw",
            rate(records, raw),
            rate(records, journal),
            rate(records, journal) / rate(records, raw) * 100.0
        );
    }

    let long = size("JOURNAL_BENCH_LONG", 40_000);
    let long_work: Vec<_> = transitions(100, long.div_ceil(100)).take(long).collect();
    let figures = journal_append(&dir("long".into()), &long_work, &options);
    println!(
        "bytes per journaled transition over {long} transitions of 100 clusters: {:.0} (target <= 1024)",
        figures.bytes as f64 / long as f64
    );

    let lines = size("JOURNAL_BENCH_OUTPUT_LINES", 100_000);
    let records = output_records(lines);
    let object = work[0].0.object.clone();
    let (mut raws, mut journals, mut lookups) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let json = records.iter().map(|logs| serde_json::to_vec(logs).expect("json"));
        raws.push(raw_append_json(&dir(format!("raw-output{round}")), &options, json));
        let (figures, lookup) = output_append(&dir(format!("output{round}")), &object, &records, &options);
        journals.push(figures);
        lookups.push(lookup);
    }
    let (raw, journal) = (best(raws), best(journals));
    let per_line = |figures: &Figures| rate(lines, figures.elapsed);
    println!(
        "job output, {lines} lines in records of {OUTPUT_LINES_PER_RECORD}: raw sled {:.0} lines/s ({:.0} bytes/line), \
         journal {:.0} lines/s ({:.0} bytes/line), journal at {:.0}% of raw",
        per_line(&raw),
        raw.bytes as f64 / lines as f64,
        per_line(&journal),
        journal.bytes as f64 / lines as f64,
        per_line(&journal) / per_line(&raw) * 100.0
    );
    let lookup = lookups.into_iter().min().unwrap_or_default();
    println!("what the journal holds of a job's output, looked up over its {} records: {lookup:?}", records.len());
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, where divan alone checks its
    // benchmarks once and the report is skipped.
    if std::env::args().any(|arg| arg == "--bench") {
        report();
    }
    divan::main();
}

mod micro {
    use kuberay::journal::redact::redact_json;
    use kuberay::journal::synthetic::transitions;
    use kuberay::journal::{Journal, blob::Hash};
    use kuberay::machine::Command;

    fn head_pod_json() -> Vec<u8> {
        let (_, decision) = transitions(1, 1).next().expect("a transition");
        let Some(Command::Create { object }) = decision.commands.into_iter().next() else { panic!("a create first") };
        serde_json::to_vec(&object).expect("json")
    }

    #[divan::bench]
    fn hash_a_head_pod(bencher: divan::Bencher) {
        let json = head_pod_json();
        bencher.counter(divan::counter::BytesCount::of_slice(&json)).bench(|| Hash::of(divan::black_box(&json)));
    }

    #[divan::bench]
    fn redact_a_head_pod(bencher: divan::Bencher) {
        let json = head_pod_json();
        bencher.bench(|| redact_json(divan::black_box(&json)).map(|redacted| redacted.len()));
    }

    #[divan::bench]
    fn parts_of_an_input(bencher: divan::Bencher) {
        let (input, _) = transitions(1, 5).last().expect("a transition");
        bencher.bench(|| input.parts().map(|parts| parts.len()));
    }

    /// One step of the RayCluster machine on a realistic Input (a provisioned cluster with its Pods and Services):
    /// the pure decision alone, without the journal.
    #[divan::bench]
    fn step_the_raycluster_machine(bencher: divan::Bencher) {
        let config = kuberay::config::OperatorConfig::default();
        let machine =
            kuberay::machine::machine_for(kuberay::machine::MachineKind::RayCluster, &config).expect("machine");
        let work: Vec<_> = transitions(1, 5).collect();
        let (input, decision) = work.last().expect("a transition");
        let memory = decision.memory.clone();
        bencher.bench(|| machine.step(divan::black_box(&memory), divan::black_box(input)).commands.len());
    }

    /// A transition appended to a journal in memory: the journal's own work, without sled.
    #[divan::bench]
    fn append_a_transition_in_memory(bencher: divan::Bencher) {
        let work: Vec<_> = transitions(10, 20).collect();
        let mut journal = Journal::in_memory().expect("journal");
        let mut next = work.iter().cycle();
        bencher.bench_local(|| {
            let (input, decision) = next.next().expect("cycle");
            let seq = journal.append_input(input, &Default::default()).expect("input");
            journal.append_decision(&input.object, seq, decision).expect("decision")
        });
    }
}
