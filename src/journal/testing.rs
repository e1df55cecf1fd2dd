//! Helpers shared by the journal's tests.

use std::path::Path;

use super::store::Store;
use super::{Damage, Entry, Journal, Scanned, SledOptions};
use crate::machine::{Decision, Input};

/// A small cache: tests open many journals.
pub fn open(dir: &Path) -> Journal {
    Journal::open(dir, &SledOptions { cache_bytes: 8 << 20, ..SledOptions::default() }).unwrap()
}

/// A journaled transition: the seqs of its Input and Decision, and what was written.
pub struct Written {
    pub input_seq: u64,
    pub decision_seq: u64,
    pub input: Input,
    pub decision: Decision,
}

/// Journals `steps` transitions of each of `clusters` synthetic clusters (not committed).
pub fn write<S: Store>(journal: &mut Journal<S>, clusters: usize, steps: usize) -> Vec<Written> {
    super::synthetic::transitions(clusters, steps)
        .map(|(input, decision)| {
            let input_seq = journal.append_input(&input, &Default::default()).unwrap();
            let decision_seq = journal.append_decision(&input.object, input_seq, &decision).unwrap();
            Written { input_seq, decision_seq, input, decision }
        })
        .collect()
}

/// Everything a scan yields, records and damage apart.
pub fn scan_all<S: Store>(journal: &Journal<S>) -> (Vec<Entry>, Vec<Damage>) {
    split(journal.scan())
}

pub fn split(scan: impl Iterator<Item = Result<Scanned, super::JournalError>>) -> (Vec<Entry>, Vec<Damage>) {
    let (mut entries, mut damage) = (Vec::new(), Vec::new());
    for item in scan {
        match item.unwrap() {
            Scanned::Record(entry) => entries.push(entry),
            Scanned::Damage(found) => damage.push(found),
        }
    }
    (entries, damage)
}

pub fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

/// A small deterministic generator (xorshift64*): a failing round can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}
