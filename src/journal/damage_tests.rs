//! Bytes flipped anywhere in sled's files: opening and scanning the journal never panics, never returns a record
//! that differs from what was written, and never loses a record without reporting it.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use super::testing::{Rng, open, write};
use super::{Damage, DamageKind, Entry, Journal, JournalError, Kind, Scanned, SledOptions};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { found.extend(files(&path)) } else { found.push(path) }
    }
    found.sort();
    found
}

fn copy_dir(from: &Path, to: &Path) {
    for file in files(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

/// What was written at each seq.
type Expected = BTreeMap<u64, (Kind, serde_json::Value)>;

fn content(entry: &Entry) -> Result<serde_json::Value, JournalError> {
    Ok(match entry.kind {
        Kind::Input => serde_json::to_value(entry.input()?)?,
        Kind::Decision { .. } => serde_json::to_value(entry.decision()?)?,
        Kind::Session => serde_json::to_value(entry.session()?)?,
        Kind::Logs => serde_json::to_value(entry.logs()?)?,
    })
}

/// Whether `damage` accounts for `seq`.
fn covers(damage: &Damage, seq: u64) -> bool {
    match damage.kind {
        DamageKind::Missing { last } => (damage.seq..=last).contains(&seq),
        // A damaged marker or meta value makes no claim about a record; it is reported, which is what matters.
        DamageKind::Marker(_) | DamageKind::Meta(_) => true,
        _ => damage.seq == seq,
    }
}

enum Outcome {
    Refused,
    Reported,
    Clean,
}

/// Opens the damaged copy and checks everything it returns against what was written.
fn check(dir: &Path, expected: &Expected) -> Result<Outcome, String> {
    let journal = match Journal::open(dir, &SledOptions { cache_bytes: 8 << 20, ..SledOptions::default() }) {
        Ok(journal) => journal,
        Err(_) => return Ok(Outcome::Refused),
    };
    let mut damage = journal.recovery().damage.clone();
    let mut returned = Vec::new();
    for item in journal.scan() {
        match item {
            Ok(Scanned::Record(entry)) => {
                let (kind, value) = expected.get(&entry.seq).ok_or(format!("seq {} was never written", entry.seq))?;
                if entry.kind != *kind || content(&entry).map_err(|e| e.to_string())? != *value {
                    return Err(format!("seq {} came back different", entry.seq));
                }
                returned.push(entry.seq);
            }
            Ok(Scanned::Damage(found)) => damage.push(found),
            Err(_) => return Ok(Outcome::Refused),
        }
    }
    for &seq in expected.keys() {
        if !returned.contains(&seq) && !damage.iter().any(|d| covers(d, seq)) {
            return Err(format!("seq {seq} is gone and nothing said so (damage: {damage:?})"));
        }
    }
    Ok(if damage.is_empty() { Outcome::Clean } else { Outcome::Reported })
}

#[test]
fn flipped_bytes_in_sleds_files_never_panic_nor_pass_unnoticed() {
    let original = tempfile::tempdir().unwrap();
    let mut expected = Expected::new();
    {
        let mut journal = open(original.path());
        for written in write(&mut journal, 3, 40) {
            expected.insert(written.input_seq, (Kind::Input, serde_json::to_value(&written.input).unwrap()));
            let decision =
                (Kind::Decision { input: written.input_seq }, serde_json::to_value(&written.decision).unwrap());
            expected.insert(written.decision_seq, decision);
        }
        journal.commit().unwrap();
    }
    let sled_files: Vec<(PathBuf, u64)> = files(&original.path().join("sled"))
        .into_iter()
        .map(|file| {
            let len = std::fs::metadata(&file).unwrap().len();
            (file.strip_prefix(original.path()).unwrap().to_path_buf(), len)
        })
        .filter(|(_, len)| *len > 0)
        .collect();
    let total: u64 = sled_files.iter().map(|(_, len)| len).sum();

    let rounds = std::env::var("JOURNAL_FLIP_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(120);
    let mut rng = Rng::new(0x5eed_f11b);
    let (mut refused, mut reported, mut clean) = (0, 0, 0);
    for round in 0..rounds {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        // A spot anywhere in sled's files, every byte equally likely; one to four bytes flipped there.
        let mut spot = rng.below(total);
        let (file, len) = sled_files
            .iter()
            .find(|(_, len)| {
                spot < *len || {
                    spot -= len;
                    false
                }
            })
            .unwrap();
        let path = copy.path().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        for offset in spot..(spot + 1 + rng.below(4)).min(*len) {
            bytes[offset as usize] ^= 1 << rng.below(8);
        }
        std::fs::write(&path, bytes).unwrap();

        match catch_unwind(AssertUnwindSafe(|| check(copy.path(), &expected))) {
            Ok(Ok(Outcome::Refused)) => refused += 1,
            Ok(Ok(Outcome::Reported)) => reported += 1,
            Ok(Ok(Outcome::Clean)) => clean += 1,
            Ok(Err(failure)) => panic!("round {round}, {} at {spot}: {failure}", file.display()),
            Err(_) => panic!("round {round}, {} at {spot}: a panic", file.display()),
        }
    }
    eprintln!("{rounds} rounds: {refused} refused to open or scan, {reported} reported damage, {clean} clean");
    assert_eq!(refused + reported + clean, rounds);
}
