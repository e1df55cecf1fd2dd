//! Retention: an object's records go some time after an Input showed the object gone, and the oldest records go
//! when the journal outgrows its cap. Both are recorded before anything is removed — the low-water mark (in the
//! meta tree and the marker) below which everything was removed, and the ranges removed above it — so that what
//! retention removed is never mistaken for damage, even after a crash half-way. Blobs no record refers to any more
//! are collected.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;

use super::blob::{BlobReader, Hash};
use super::record::{StoredRecord, index_key, index_key_seq, key_seq, seal, seq_key, unseal};
use super::store::{Store, TreeId};
use super::{Journal, JournalError, Kind, LOW_WATER_KEY, SESSIONS};

/// What to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How long an object's records stay once an Input showed the object gone.
    pub gone_ttl: Duration,
    /// The most bytes of live data (records, index entries and blobs, keys included) to keep: past it, the oldest
    /// records go first. sled's files run larger than this by its space amplification, and shrink as it reclaims
    /// its segments. None: no cap.
    pub max_bytes: Option<u64>,
}

/// What one pass of retention removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub objects: u64,
    pub records: u64,
    pub blobs: u64,
    pub low_water: u64,
}

/// A live record as retention weighs it: what it costs (key, value, index entry), the blobs it keeps alive (its
/// manifest and what that lists) and its kind — when it decodes: a damaged record keeps nothing alive.
struct LiveRecord {
    seq: u64,
    size: u64,
    blobs: Vec<Hash>,
    kind: Option<Kind>,
}

/// What an index entry costs besides its 16-byte key: nothing is stored in it.
const INDEX_ENTRY_BYTES: u64 = 16;

impl<S: Store> Journal<S> {
    /// Applies `policy` as of `now`. Commits what was appended first: retention only ever removes durable records.
    pub fn retain(&mut self, policy: &Retention, now: Timestamp) -> Result<RetentionReport, JournalError> {
        self.commit()?;
        let mut report = RetentionReport::default();
        let ttl_ms = i64::try_from(policy.gone_ttl.as_millis()).unwrap_or(i64::MAX);
        let expired: Vec<u64> = self
            .objects
            .iter()
            .filter(|(_, entry)| {
                entry.gone_at_ms.is_some_and(|gone| gone.saturating_add(ttl_ms) <= now.as_millisecond())
            })
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            report.records += self.retire_object(id)?;
            report.objects += 1;
        }
        if let Some(max_bytes) = policy.max_bytes
            && let Some(low_water) = self.low_water_for(max_bytes)?
        {
            let before = self.objects.len() as u64;
            report.records += self.advance_low_water(low_water)?;
            report.objects += before - self.objects.len() as u64;
        }
        report.blobs = self.collect_blobs()?;
        self.store.flush()?;
        self.mark_durable()?;
        report.low_water = self.low_water;
        Ok(report)
    }

    /// Removes every record of one object: first the ranges they leave are recorded as retired, then they go.
    fn retire_object(&mut self, id: u64) -> Result<u64, JournalError> {
        let index: Vec<S::Bytes> = self.keys(TreeId::Index, &index_key(id, 0), Some(&index_key(id, u64::MAX)))?;
        let seqs: Vec<u64> = index.iter().filter_map(|key| index_key_seq(key.as_ref())).collect();
        let low_water = self.low_water;
        for &seq in seqs.iter().filter(|&&seq| seq >= low_water) {
            self.add_retired(seq)?;
        }
        for (key, seq) in index.iter().zip(&seqs) {
            self.store.remove(TreeId::Records, &seq_key(*seq))?;
            self.store.remove(TreeId::Index, key.as_ref())?;
        }
        self.forget_object(id)?;
        Ok(seqs.len() as u64)
    }

    /// Records `seq` as retired, merged with the ranges on either side so that ranges stay few.
    fn add_retired(&mut self, seq: u64) -> Result<(), JournalError> {
        let before = self.retired.range(..seq).next_back().map(|(&start, &end)| (start, end));
        let (mut start, mut end) = (seq, seq);
        if let Some((before_start, before_end)) = before {
            if before_end >= seq {
                return Ok(());
            }
            if before_end + 1 == seq {
                start = before_start;
            }
        }
        if let Some(after_end) = self.retired.remove(&(seq + 1)) {
            self.store.remove(TreeId::Retired, &seq_key(seq + 1))?;
            end = after_end;
        }
        self.retired.insert(start, end);
        self.store.insert(TreeId::Retired, &seq_key(start), &seal(&end)?)
    }

    /// The lowest low-water mark that brings the live data under `max_bytes`, or None when it is under already.
    /// A blob's bytes count as freed with the last record that refers to it; the mark never parts a Decision from
    /// the Input it answers.
    fn low_water_for(&self, max_bytes: u64) -> Result<Option<u64>, JournalError> {
        let mut blob_bytes: HashMap<Hash, u64> = HashMap::new();
        for item in self.store.range(TreeId::Blobs, &[], None) {
            let (key, value) = item?;
            if let Ok(hash) = key.as_ref().try_into() {
                blob_bytes.insert(Hash(hash), (key.as_ref().len() + value.as_ref().len()) as u64);
            }
        }
        let mut live: u64 = blob_bytes.values().sum();
        let records = self.records()?;
        let mut last_use: HashMap<Hash, u64> = HashMap::new();
        for record in &records {
            live += record.size;
            for hash in &record.blobs {
                last_use.insert(*hash, record.seq);
            }
        }
        if live <= max_bytes {
            return Ok(None);
        }
        let mut freed = 0;
        let mut records = records.into_iter().peekable();
        while let Some(LiveRecord { seq, size, blobs, .. }) = records.next() {
            freed += size;
            // A record may name a blob twice (two identical Pod bodies): it is freed once.
            let last: HashSet<Hash> = blobs.into_iter().filter(|hash| last_use.get(hash) == Some(&seq)).collect();
            freed += last.iter().map(|hash| blob_bytes.get(hash).copied().unwrap_or(0)).sum::<u64>();
            let orphans_next = matches!(records.peek(), Some(LiveRecord { kind: Some(Kind::Decision { input }), .. }) if *input <= seq);
            if live - freed <= max_bytes && !orphans_next {
                return Ok(Some(seq + 1));
            }
        }
        Ok(Some(self.next_seq))
    }

    /// Every live record, in seq order.
    fn records(&self) -> Result<Vec<LiveRecord>, JournalError> {
        let mut blobs = BlobReader::new(&self.store);
        let mut records = Vec::new();
        for item in self.store.range(TreeId::Records, &seq_key(self.low_water), None) {
            let (key, value) = item?;
            let Some(seq) = key_seq(key.as_ref()) else { continue };
            let size = (key.as_ref().len() + value.as_ref().len()) as u64 + INDEX_ENTRY_BYTES;
            let record = unseal::<StoredRecord>(value.as_ref()).ok();
            let kind = record.as_ref().map(|record| record.kind);
            let needed = record.and_then(|record| blobs.blobs_of(&record).ok()).unwrap_or_default();
            records.push(LiveRecord { seq, size, blobs: needed, kind });
        }
        Ok(records)
    }

    /// Moves the low-water mark up to `low_water` — recorded first, in the meta tree and the marker — then removes
    /// what lies below it.
    fn advance_low_water(&mut self, low_water: u64) -> Result<u64, JournalError> {
        self.low_water = low_water;
        self.store.insert(TreeId::Meta, LOW_WATER_KEY, &seal(&low_water)?)?;
        self.store.flush()?;
        self.mark_durable()?;
        let mut removed = 0;
        for key in self.keys(TreeId::Records, &[], Some(&seq_key(low_water)))? {
            self.store.remove(TreeId::Records, key.as_ref())?;
            removed += 1;
        }
        let ids: Vec<u64> = self.objects.keys().copied().collect();
        for id in ids.iter().copied().chain([SESSIONS]) {
            for key in self.keys(TreeId::Index, &index_key(id, 0), Some(&index_key(id, low_water)))? {
                self.store.remove(TreeId::Index, key.as_ref())?;
            }
        }
        for id in ids {
            let mut rest = self.store.range(TreeId::Index, &index_key(id, low_water), Some(&index_key(id, u64::MAX)));
            if rest.next().transpose()?.is_none() {
                self.forget_object(id)?;
            }
        }
        let below: Vec<u64> =
            self.retired.iter().filter(|&(_, &end)| end < low_water).map(|(&start, _)| start).collect();
        for start in below {
            self.retired.remove(&start);
            self.store.remove(TreeId::Retired, &seq_key(start))?;
        }
        Ok(removed)
    }

    /// Removes the blobs no live record refers to. A record that does not decode keeps nothing alive: it is
    /// reported as damage either way.
    fn collect_blobs(&mut self) -> Result<u64, JournalError> {
        let referenced: HashSet<Hash> = self.records()?.into_iter().flat_map(|record| record.blobs).collect();
        let mut removed = 0;
        for key in self.keys(TreeId::Blobs, &[], None)? {
            let live = key.as_ref().try_into().is_ok_and(|hash| referenced.contains(&Hash(hash)));
            if !live {
                self.store.remove(TreeId::Blobs, key.as_ref())?;
                removed += 1;
            }
        }
        // The parts remembered by their raw hash may name blobs just removed.
        self.seen.clear();
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{open, scan_all, seqs, write};
    use super::*;
    use crate::machine::{ObjectRef, Observation};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    /// Two clusters, 4 steps each (seqs 1..=16); then an Input showing the first one gone at t=1000 (seq 17).
    fn with_a_gone_cluster(journal: &mut Journal<impl Store>) -> ObjectRef {
        let written = write(journal, 2, 4);
        let mut gone = written[0].input.clone();
        gone.now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1000));
        gone.observation = Observation::RayCluster(Default::default());
        journal.append_input(&gone, &Default::default()).unwrap();
        gone.object
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_gone_objects_records_go_after_its_ttl_and_are_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        let gone = with_a_gone_cluster(&mut journal);
        let policy = Retention { gone_ttl: DAY, max_bytes: None };
        let blobs = journal.stats().unwrap().blobs;

        let early = journal.retain(&policy, at(1000 + 86_399)).unwrap();
        assert_eq!(early, RetentionReport { objects: 0, records: 0, blobs: 0, low_water: 1 });

        let report = journal.retain(&policy, at(1000 + 86_400)).unwrap();
        assert_eq!((report.objects, report.records, report.low_water), (1, 9, 1));
        assert!(report.blobs > 0 && journal.stats().unwrap().blobs == blobs - report.blobs, "{report:?}");
        assert_eq!(journal.scan_object(&gone).count(), 0);
        assert_eq!(journal.objects().unwrap().len(), 1);
        let (entries, damage) = scan_all(&journal);
        assert_eq!((seqs(&entries), damage), (vec![3, 4, 7, 8, 11, 12, 15, 16], vec![]));
        assert_eq!(journal.retired, [(1, 2), (5, 6), (9, 10), (13, 14), (17, 17)].into());
        drop(journal);

        let journal = open(dir.path());
        assert_eq!(journal.recovery().damage, []);
        let (entries, damage) = scan_all(&journal);
        assert_eq!((entries.len(), damage), (8, vec![]));
        let survivor = &entries[0];
        assert!(survivor.input().is_ok(), "the blobs the survivor needs were kept");
    }

    #[test]
    fn a_size_cap_moves_the_low_water_mark_and_keeps_decisions_with_their_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        write(&mut journal, 2, 20);
        journal.commit().unwrap();
        let live = |j: &Journal| -> u64 {
            let tree =
                |tree| j.store.range(tree, &[], None).map(|kv| kv.unwrap()).map(|(k, v)| (k.len() + v.len()) as u64);
            tree(TreeId::Records).sum::<u64>()
                + tree(TreeId::Blobs).sum::<u64>()
                + 16 * tree(TreeId::Index).count() as u64
        };
        let before = live(&journal);
        let cap = before / 2;

        let report = journal.retain(&Retention { gone_ttl: DAY, max_bytes: Some(cap) }, at(0)).unwrap();
        assert!(report.low_water > 1 && report.records == report.low_water - 1, "{report:?}");
        assert!(live(&journal) <= cap, "{} > {cap}", live(&journal));
        let (entries, damage) = scan_all(&journal);
        assert_eq!(damage, []);
        assert_eq!(entries[0].seq, report.low_water);
        assert_eq!(entries[0].kind, Kind::Input, "the first record kept is no Decision without its Input");
        assert_eq!(journal.retain(&Retention { gone_ttl: DAY, max_bytes: Some(cap) }, at(0)).unwrap().records, 0);
        drop(journal);

        let journal = open(dir.path());
        assert_eq!((journal.low_water(), journal.recovery().damage.clone()), (report.low_water, vec![]));
        assert!(
            std::fs::read_to_string(dir.path().join("durable"))
                .unwrap()
                .contains(&format!(" low_water={} ", report.low_water))
        );
        assert!(matches!(journal.read(1), Err(JournalError::NotFound { .. })));
        assert_eq!(scan_all(&journal).1, []);
    }

    #[test]
    fn retired_seqs_merge_into_ranges() {
        let mut journal = Journal::in_memory().unwrap();
        for seq in [5, 9, 7, 6, 8, 3] {
            journal.add_retired(seq).unwrap();
        }
        assert_eq!(journal.retired, [(3, 3), (5, 9)].into());
        assert_eq!(journal.uncovered(1, 12), [(1, 2), (4, 4), (10, 12)]);
        assert_eq!(journal.uncovered(6, 8), []);
        let stored: Vec<u64> = journal
            .store
            .range(TreeId::Retired, &[], None)
            .map(|kv| key_seq(kv.unwrap().0.as_ref()).unwrap())
            .collect();
        assert_eq!(stored, [3, 5]);
    }
}
