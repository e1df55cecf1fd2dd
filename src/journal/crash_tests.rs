//! The crash test: a child process appends and commits while this one kills it with SIGKILL at random moments;
//! after each kill the journal reopens with every record the child reported durable, and nothing corrupt.
//!
//! The child is this test binary run again (`crash_child`, selected by name, doing its work only when the
//! environment names a journal): no extra binary to build or keep in step, and the child runs the very code under
//! test. Half of the kills are followed by tearing what the child wrote after its last durability point, as a power
//! loss would leave writes that were under way: the journal must find that torn tail and cut it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::marker::{Marker, MarkerRead};
use super::testing::{Rng, open, scan_all};
use super::{Journal, Kind, synthetic};

const CHILD_DIR: &str = "KUBERAY_JOURNAL_CRASH_DIR";
const CHILD_SEED: &str = "KUBERAY_JOURNAL_CRASH_SEED";
/// sled's file as it was at the child's last durability point.
const IMAGE: &str = "db-at-durable";

/// The writer. Prints `ready` once the journal is open, then `durable SEQ` after each commit, once it has saved an
/// image of sled's file as it was at that point.
#[test]
#[ignore = "the writer that a_killed_writer_loses_nothing_it_reported_durable starts and kills"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let dir = Path::new(&dir);
    let seed = std::env::var(CHILD_SEED).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = Rng::new(seed);
    let mut journal = open(dir);
    // Built before `ready`, so that the child spends its time appending and committing, where kills matter.
    let prepared: Vec<_> = synthetic::transitions(3, 60).collect();
    let mut transitions = prepared.iter().cycle();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    loop {
        for _ in 0..1 + rng.below(8) {
            let (input, decision) = transitions.next().unwrap();
            let seq = journal.append_input(input, &Default::default()).unwrap();
            journal.append_decision(&input.object, seq, decision).unwrap();
        }
        let durable = journal.commit().unwrap();
        let temporary = dir.join("image.tmp");
        std::fs::copy(dir.join("sled/db"), &temporary).unwrap();
        std::fs::rename(&temporary, dir.join(IMAGE)).unwrap();
        writeln!(out, "durable {durable}").unwrap();
        out.flush().unwrap();
    }
}

/// What the child said before it died: the last seq it reported durable.
#[derive(Default)]
struct Said {
    durable: u64,
}

fn run_and_kill(dir: &Path, rng: &mut Rng) -> Said {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "journal::crash_tests::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, rng.next().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // Only whole lines: the kill may cut the last one short.
        while stdout.read_line(&mut line).is_ok_and(|read| read > 0) && line.ends_with('\n') {
            if lines.send(line.trim_end().to_string()).is_err() {
                break;
            }
            line.clear();
        }
    });
    // One kill in eight lands anywhere, opening and recovery included; the others while it writes.
    if rng.below(8) > 0 {
        // The test harness prints `test NAME ... ` first, on the same line.
        let ready = received.iter().any(|line| line.ends_with("ready"));
        assert!(ready, "the child never opened its journal");
    }
    std::thread::sleep(Duration::from_millis(rng.below(30)));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let mut said = Said::default();
    for line in received.try_iter() {
        let words: Vec<&str> = line.split(' ').collect();
        if let ["durable", seq] = words[..]
            && let Ok(durable) = seq.parse()
        {
            said = Said { durable };
        }
    }
    said
}

/// Tears the writes the child made after its last durability point, as a power loss in the middle of them would
/// leave them: the bytes that changed since then (against the image the child saved at that point) are kept up to a
/// random one, which is garbled, and the rest are undone. Only when nothing was made durable after the image.
fn tear(dir: &Path, said: &Said, rng: &mut Rng) -> bool {
    let marked = match Marker::new(dir).read().unwrap() {
        MarkerRead::Valid(state) => state.durable,
        _ => 0,
    };
    if marked != said.durable || said.durable == 0 {
        return false;
    }
    let image = std::fs::read(dir.join(IMAGE)).unwrap();
    let db = dir.join("sled/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let changed: Vec<usize> = (0..bytes.len()).filter(|&i| image.get(i) != Some(&bytes[i])).collect();
    if changed.is_empty() {
        return false;
    }
    let torn = rng.below(changed.len() as u64) as usize;
    for &i in &changed[torn..] {
        bytes[i] = image.get(i).copied().unwrap_or(0);
    }
    bytes[changed[torn]] ^= 0x5a;
    std::fs::write(&db, bytes).unwrap();
    true
}

/// Everything the journal holds is whole, gapless from the start, and reaches at least `promised`.
fn verify(journal: &Journal, promised: u64, round: u64) {
    assert_eq!(journal.recovery().damage, [], "round {round}");
    let (entries, damage) = scan_all(journal);
    assert_eq!(damage, [], "round {round}");
    assert!(journal.durable() >= promised, "round {round}: durable {} < reported {promised}", journal.durable());
    assert_eq!(entries.len() as u64, journal.durable(), "round {round}: gapless from 1");
    for (entry, seq) in entries.iter().zip(1..) {
        assert_eq!(entry.seq, seq, "round {round}");
        match entry.kind {
            Kind::Input => drop(entry.input().unwrap()),
            Kind::Decision { input } => {
                entry.decision().unwrap();
                assert_eq!(entries[input as usize - 1].kind, Kind::Input, "round {round}: seq {seq}");
            }
            Kind::Session | Kind::Logs => unreachable!("the child writes inputs and decisions only"),
        }
    }
}

#[test]
fn a_killed_writer_loses_nothing_it_reported_durable() {
    let rounds: u64 = std::env::var("JOURNAL_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    let seed = std::env::var("JOURNAL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash test: {rounds} rounds, JOURNAL_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut dir = tempfile::tempdir().unwrap();
    let mut promised = 0;
    let (mut torn, mut cut, mut adopted, mut records) = (0, 0, 0, 0);
    for round in 0..rounds {
        // A fresh journal now and then keeps each reopen's full check short.
        if round % 25 == 0 {
            dir = tempfile::tempdir().unwrap();
            promised = 0;
        }
        let said = run_and_kill(dir.path(), &mut rng);
        promised = promised.max(said.durable);
        if rng.below(2) == 0 && tear(dir.path(), &said, &mut rng) {
            torn += 1;
        }
        let journal = open(dir.path());
        verify(&journal, promised, round);
        cut += u64::from(journal.recovery().cut.is_some());
        adopted += u64::from(journal.recovery().adopted > 0);
        records = records.max(journal.durable());
    }
    eprintln!("crash test: {torn} torn tails, {cut} cut, {adopted} adopted, up to {records} records per journal");
}
