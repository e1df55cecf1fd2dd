//! Reading a journal: scans in seq order that report damage and go on, single records, objects and totals.

use std::collections::VecDeque;

use jiff::Timestamp;

use super::blob::{BlobFault, BlobReader, Hash};
use super::record::{StoredRecord, index_key, index_key_seq, key_seq, seq_key, unseal};
use super::store::{Store, TreeId};
use super::{Damage, DamageKind, Journal, JournalError, Kind, SESSIONS, Session};
use crate::machine::{Decision, Input, Memory, ObjectRef, Part};

/// A record read back whole: its parts' bytes resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// The record's object (None for a session header).
    pub object: Option<ObjectRef>,
    pub kind: Kind,
    pub parts: Vec<Part>,
}

impl Entry {
    pub fn input(&self) -> Result<Input, JournalError> {
        self.expect(Kind::Input)?;
        Ok(Input::from_parts(&self.parts)?)
    }

    /// The engine's memory before the step this Input started (empty for records written without one).
    pub fn memory(&self) -> Result<Memory, JournalError> {
        self.expect(Kind::Input)?;
        match self.parts.iter().find(|part| part.name == super::MEMORY_PART) {
            Some(part) => Ok(serde_json::from_slice(&part.json)?),
            None => Ok(Memory::default()),
        }
    }

    pub fn decision(&self) -> Result<Decision, JournalError> {
        if !matches!(self.kind, Kind::Decision { .. }) {
            return Err(self.wrong_kind("decision"));
        }
        Ok(Decision::from_parts(&self.parts)?)
    }

    pub fn session(&self) -> Result<Session, JournalError> {
        self.expect(Kind::Session)?;
        let part = self.parts.iter().find(|part| part.name == "session");
        let part = part.ok_or_else(|| crate::machine::PartsError::Missing("session".to_string()))?;
        Ok(serde_json::from_slice(&part.json)?)
    }

    /// The bytes this record's parts hold.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|part| part.json.len()).sum()
    }

    fn expect(&self, kind: Kind) -> Result<(), JournalError> {
        if self.kind == kind { Ok(()) } else { Err(self.wrong_kind(kind.name())) }
    }

    fn wrong_kind(&self, wanted: &'static str) -> JournalError {
        JournalError::WrongKind { seq: self.seq, found: self.kind.name(), wanted }
    }
}

/// One step of a scan: a record, or damage where a record should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scanned {
    Record(Entry),
    Damage(Damage),
}

/// An object of the journal and how much of it the journal holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    pub object: ObjectRef,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// When an Input first showed the object gone.
    pub gone_at: Option<Timestamp>,
}

/// Totals of a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub objects: u64,
    pub records: u64,
    pub blobs: u64,
    /// Everything the journal occupies on disk: sled's files and the marker.
    pub bytes_on_disk: u64,
    pub low_water: u64,
    pub durable: u64,
}

/// Reads records, their parts resolved through a [`BlobReader`].
struct Reader<'j, S: Store> {
    journal: &'j Journal<S>,
    blobs: BlobReader<'j, S>,
}

impl<'j, S: Store> Reader<'j, S> {
    fn new(journal: &'j Journal<S>) -> Self {
        Reader { journal, blobs: BlobReader::new(&journal.store) }
    }

    /// Decodes the record stored under `seq`. Damage is the answer, not an error, so that a scan goes on.
    fn read(&mut self, seq: u64, frame: &[u8]) -> Scanned {
        match self.entry(seq, frame) {
            Ok(entry) => Scanned::Record(entry),
            Err(kind) => Scanned::Damage(Damage { seq, kind }),
        }
    }

    fn entry(&mut self, seq: u64, frame: &[u8]) -> Result<Entry, DamageKind> {
        let record = match unseal::<StoredRecord>(frame) {
            Ok(record) if record.seq == seq => record,
            Ok(record) => return Err(DamageKind::Corrupt(format!("holds seq {}", record.seq))),
            Err(error) => return Err(Damage::frame(seq, error).kind),
        };
        let object = match record.object {
            Some(id) => Some(self.journal.object_of(id).ok_or(DamageKind::UnknownObject(id))?.clone()),
            None => None,
        };
        let mut parts: Vec<Part> =
            record.inline.into_iter().map(|part| Part { name: part.name, json: part.json }).collect();
        if let Some(hash) = record.manifest {
            let manifest = self.blobs.manifest(&hash).map_err(|fault| fault_kind(fault, "manifest", hash))?;
            for (name, hash) in &manifest.parts {
                let bytes = self.blobs.blob(hash).map_err(|fault| fault_kind(fault, name, *hash))?;
                parts.push(Part { name: name.clone(), json: bytes.as_ref().to_vec() });
            }
        }
        Ok(Entry { seq, object, kind: record.kind, parts })
    }
}

fn fault_kind(fault: BlobFault, part: &str, hash: Hash) -> DamageKind {
    match fault {
        BlobFault::Missing => DamageKind::MissingBlob { part: part.to_string(), hash },
        BlobFault::Corrupt => DamageKind::CorruptBlob { part: part.to_string(), hash },
        BlobFault::Unreadable(why) => DamageKind::Unreadable(why),
    }
}

enum Source<S: Store> {
    /// Every record from the low-water mark on; `expected` is the seq that should come next.
    All { records: S::Range, expected: u64 },
    /// One object's records (or the sessions') through the index.
    Object { id: u64, index: S::Range },
}

/// A scan over records in seq order, yielding records and damage. It goes on past damage; a store error ends it.
pub struct Scan<'j, S: Store> {
    reader: Reader<'j, S>,
    source: Source<S>,
    pending: VecDeque<Scanned>,
    done: bool,
}

impl<S: Store> Iterator for Scan<'_, S> {
    type Item = Result<Scanned, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(scanned) = self.pending.pop_front() {
                return Some(Ok(scanned));
            }
            if self.done {
                return None;
            }
            match self.step() {
                Ok(()) => {}
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
    }
}

impl<S: Store> Scan<'_, S> {
    /// Moves the scan one stored entry on, queueing what it finds.
    fn step(&mut self) -> Result<(), JournalError> {
        let journal = self.reader.journal;
        match &mut self.source {
            Source::All { records, expected } => match records.next().transpose()? {
                Some((key, frame)) => {
                    let Some(seq) = key_seq(key.as_ref()) else {
                        let why = format!("a key of {} bytes in the record tree", key.as_ref().len());
                        self.pending
                            .push_back(Scanned::Damage(Damage { seq: *expected, kind: DamageKind::Corrupt(why) }));
                        return Ok(());
                    };
                    if seq > *expected {
                        self.pending.extend(missing(journal, *expected, seq - 1));
                    }
                    *expected = seq.max(*expected) + 1;
                    self.pending.push_back(self.reader.read(seq, frame.as_ref()));
                }
                None => {
                    self.done = true;
                    self.pending.extend(missing(journal, *expected, journal.durable));
                }
            },
            Source::Object { id, index } => match index.next().transpose()? {
                Some((key, _)) => {
                    let Some(seq) = index_key_seq(key.as_ref()) else { return Ok(()) };
                    match journal.store.get(TreeId::Records, &seq_key(seq)) {
                        Ok(Some(frame)) => match self.reader.read(seq, frame.as_ref()) {
                            // An index entry left by an append that failed half-way, its seq later reused.
                            Scanned::Record(entry) if entry.object.as_ref() != journal.object_of(*id) => {}
                            scanned => self.pending.push_back(scanned),
                        },
                        Ok(None) => self.pending.extend(missing(journal, seq, seq)),
                        Err(error) => {
                            let kind = DamageKind::Unreadable(error.to_string());
                            self.pending.push_back(Scanned::Damage(Damage { seq, kind }));
                        }
                    }
                }
                None => self.done = true,
            },
        }
        Ok(())
    }
}

fn missing<S: Store>(journal: &Journal<S>, first: u64, last: u64) -> impl Iterator<Item = Scanned> {
    let pieces = if first <= last { journal.uncovered(first, last) } else { Vec::new() };
    pieces.into_iter().map(|(seq, last)| Scanned::Damage(Damage { seq, kind: DamageKind::Missing { last } }))
}

impl<S: Store> Journal<S> {
    /// Every record from the low-water mark on, in seq order, with damage reported where it is found: corrupt
    /// records, gaps, records lost below the durable seq, missing or corrupt blobs.
    pub fn scan(&self) -> Scan<'_, S> {
        let records = self.store.range(TreeId::Records, &seq_key(self.low_water), None);
        self.scan_from(Source::All { records, expected: self.low_water })
    }

    /// One object's records in seq order (through the per-object index), with damage where a record is missing or
    /// does not check out. An object the journal does not know yields nothing.
    pub fn scan_object(&self, object: &ObjectRef) -> Scan<'_, S> {
        match self.object_ids.get(object) {
            Some(&id) => self.scan_index(id),
            None => Scan { done: true, ..self.scan_index(SESSIONS) },
        }
    }

    /// The session headers, in seq order.
    pub fn sessions(&self) -> Scan<'_, S> {
        self.scan_index(SESSIONS)
    }

    fn scan_index(&self, id: u64) -> Scan<'_, S> {
        let index = self.store.range(TreeId::Index, &index_key(id, self.low_water), Some(&index_key(id, u64::MAX)));
        self.scan_from(Source::Object { id, index })
    }

    fn scan_from(&self, source: Source<S>) -> Scan<'_, S> {
        Scan { reader: Reader::new(self), source, pending: VecDeque::new(), done: false }
    }

    /// The record at `seq`, or the damage found there.
    pub fn read(&self, seq: u64) -> Result<Scanned, JournalError> {
        let last = self.next_seq - 1;
        let retired = self.retired.range(..=seq).next_back().is_some_and(|(_, &end)| seq <= end);
        if seq < self.low_water || seq > last || retired {
            return Err(JournalError::NotFound { seq, low_water: self.low_water, last });
        }
        Ok(match self.store.get(TreeId::Records, &seq_key(seq))? {
            Some(frame) => Reader::new(self).read(seq, frame.as_ref()),
            None => Scanned::Damage(Damage { seq, kind: DamageKind::Missing { last: seq } }),
        })
    }

    /// The record at `seq`, as an error when it is damaged.
    pub fn entry(&self, seq: u64) -> Result<Entry, JournalError> {
        match self.read(seq)? {
            Scanned::Record(entry) => Ok(entry),
            Scanned::Damage(damage) => Err(JournalError::Damaged(damage)),
        }
    }

    fn object_of(&self, id: u64) -> Option<&ObjectRef> {
        self.objects.get(&id).map(|entry| &entry.object)
    }

    /// Every object with records, ordered by kind, namespace, name and uid.
    pub fn objects(&self) -> Result<Vec<ObjectSummary>, JournalError> {
        let mut summaries = Vec::with_capacity(self.objects.len());
        for (&id, entry) in &self.objects {
            let mut seqs = self
                .store
                .range(TreeId::Index, &index_key(id, self.low_water), Some(&index_key(id, u64::MAX)))
                .map(|item| item.map(|(key, _)| index_key_seq(key.as_ref()).unwrap_or(0)));
            let Some(first_seq) = seqs.next().transpose()? else { continue };
            let (records, last_seq) =
                seqs.try_fold((1, first_seq), |(count, _), seq| seq.map(|seq| (count + 1, seq)))?;
            summaries.push(ObjectSummary {
                object: entry.object.clone(),
                records,
                first_seq,
                last_seq,
                gone_at: entry.gone_at_ms.and_then(|ms| Timestamp::from_millisecond(ms).ok()),
            });
        }
        summaries.sort_by(|a, b| a.object.cmp(&b.object));
        Ok(summaries)
    }

    /// The objects named `KIND/NAMESPACE/NAME` (one per uid the name was used with), oldest first.
    pub fn find_objects(&self, name: &str) -> Vec<ObjectRef> {
        self.objects.values().filter(|entry| entry.object.to_string() == name).map(|e| e.object.clone()).collect()
    }

    /// What the store occupies (without the marker): the runtime's journal-size gauge.
    pub fn bytes_on_disk(&self) -> Result<u64, JournalError> {
        self.store.bytes_on_disk()
    }

    pub fn stats(&self) -> Result<Stats, JournalError> {
        let count = |tree, from: &[u8]| -> Result<u64, JournalError> {
            self.store.range(tree, from, None).try_fold(0, |count, item| item.map(|_| count + 1))
        };
        let marker = match &self.marker {
            Some(marker) => std::fs::metadata(marker.path()).map_or(0, |m| m.len()),
            None => 0,
        };
        Ok(Stats {
            objects: self.objects.len() as u64,
            records: count(TreeId::Records, &seq_key(self.low_water))?,
            blobs: count(TreeId::Blobs, &[])?,
            bytes_on_disk: self.store.bytes_on_disk()? + marker,
            low_water: self.low_water,
            durable: self.durable,
        })
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::super::record::seal;
    use super::super::testing::{open, scan_all, seqs, split, write};
    use super::*;
    use crate::machine::MachineKind;

    fn stored(journal: &Journal<impl Store>, seq: u64) -> StoredRecord {
        unseal(journal.store.get(TreeId::Records, &seq_key(seq)).unwrap().unwrap().as_ref()).unwrap()
    }

    /// The blob of record 3's metadata: its resourceVersion is its own.
    fn first_blob(journal: &Journal<impl Store>, seq: u64) -> (String, Hash) {
        let manifest = BlobReader::new(&journal.store).manifest(&stored(journal, seq).manifest.unwrap()).unwrap();
        manifest.parts.iter().find(|(name, _)| name == "cluster/metadata").cloned().unwrap()
    }

    #[rstest]
    #[case::flipped_record(|j: &Journal| {
        let mut frame = j.store.get(TreeId::Records, &seq_key(3)).unwrap().unwrap().to_vec();
        frame[20] ^= 0x10;
        j.store.insert(TreeId::Records, &seq_key(3), &frame).unwrap();
    }, |_: &Journal| DamageKind::Corrupt("crc mismatch".into()))]
    #[case::record_under_another_seq(|j: &Journal| {
        let frame = j.store.get(TreeId::Records, &seq_key(4)).unwrap().unwrap();
        j.store.insert(TreeId::Records, &seq_key(3), &frame).unwrap();
    }, |_: &Journal| DamageKind::Corrupt("holds seq 4".into()))]
    #[case::removed_record(|j: &Journal| j.store.remove(TreeId::Records, &seq_key(3)).unwrap(),
        |_: &Journal| DamageKind::Missing { last: 3 })]
    #[case::removed_blob(|j: &Journal| j.store.remove(TreeId::Blobs, &first_blob(j, 3).1 .0).unwrap(),
        |j: &Journal| { let (part, hash) = first_blob(j, 3); DamageKind::MissingBlob { part, hash } })]
    #[case::flipped_blob(|j: &Journal| {
        let hash = first_blob(j, 3).1;
        let mut bytes = j.store.get(TreeId::Blobs, &hash.0).unwrap().unwrap().to_vec();
        bytes[1] ^= 0x20;
        j.store.insert(TreeId::Blobs, &hash.0, &bytes).unwrap();
    }, |j: &Journal| { let (part, hash) = first_blob(j, 3); DamageKind::CorruptBlob { part, hash } })]
    #[case::newer_format(|j: &Journal| {
        let frame = j.store.get(TreeId::Records, &seq_key(3)).unwrap().unwrap().to_vec();
        let mut newer = vec![9];
        let crc = { let mut h = crc32fast::Hasher::new(); h.update(&[9]); h.update(&frame[5..]); h.finalize() };
        newer.extend(crc.to_le_bytes());
        newer.extend(&frame[5..]);
        j.store.insert(TreeId::Records, &seq_key(3), &newer).unwrap();
    }, |_: &Journal| DamageKind::UnknownVersion(9))]
    fn a_scan_reports_damage_where_it_is_and_goes_on(
        #[case] damage: fn(&Journal),
        #[case] expected: fn(&Journal) -> DamageKind,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        write(&mut journal, 1, 3);
        journal.commit().unwrap();
        let kind = expected(&journal);
        damage(&journal);
        let (entries, found) = scan_all(&journal);
        assert_eq!(found, [Damage { seq: 3, kind: kind.clone() }]);
        assert_eq!(seqs(&entries), [1, 2, 4, 5, 6]);
        let object = entries[0].object.clone().unwrap();
        let (entries, found) = split(journal.scan_object(&object));
        assert_eq!((seqs(&entries), found), (vec![1, 2, 4, 5, 6], vec![Damage { seq: 3, kind: kind.clone() }]));
        assert_eq!(journal.read(3).unwrap(), Scanned::Damage(Damage { seq: 3, kind }));
    }

    #[test]
    fn a_record_of_an_unknown_object_is_damage() {
        let mut journal = Journal::in_memory().unwrap();
        write(&mut journal, 1, 1);
        journal.store.remove(TreeId::Objects, &seq_key(1)).unwrap();
        journal.objects.clear();
        let (entries, damage) = scan_all(&journal);
        assert!(entries.is_empty());
        assert_eq!(damage, [1, 2].map(|seq| Damage { seq, kind: DamageKind::UnknownObject(1) }));
    }

    #[test]
    fn one_objects_records_are_its_own() {
        let mut journal = Journal::in_memory().unwrap();
        let written = write(&mut journal, 3, 2);
        journal.commit().unwrap();
        let second = &written[1].input.object;
        let (entries, damage) = split(journal.scan_object(second));
        assert_eq!((seqs(&entries), damage), (vec![3, 4, 9, 10], vec![]));
        let stranger = ObjectRef { uid: "other".into(), ..second.clone() };
        assert_eq!(journal.scan_object(&stranger).count(), 0);
    }

    #[test]
    fn objects_and_totals() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        let written = write(&mut journal, 2, 3);
        // The name of the first cluster again, under a new uid: a new object.
        let mut reborn = written[0].input.clone();
        reborn.object.uid = "reborn".into();
        journal.append_input(&reborn, &Default::default()).unwrap();
        journal.commit().unwrap();

        let summaries = journal.objects().unwrap();
        let rows: Vec<(String, String, u64, u64, u64)> = summaries
            .iter()
            .map(|s| (s.object.to_string(), s.object.uid.clone(), s.records, s.first_seq, s.last_seq))
            .collect();
        let uid = |n| format!("9b1f6c52-0000-4000-8000-00000000000{n}");
        assert_eq!(
            rows,
            [
                ("raycluster/team-0/raycluster-0".into(), uid(0), 6, 1, 10),
                ("raycluster/team-0/raycluster-0".into(), "reborn".into(), 1, 13, 13),
                ("raycluster/team-1/raycluster-1".into(), uid(1), 6, 3, 12),
            ]
        );
        let named = journal.find_objects("raycluster/team-0/raycluster-0");
        assert_eq!(named.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(), [uid(0).as_str(), "reborn"]);
        assert_eq!(named[0].kind, MachineKind::RayCluster);

        let stats = journal.stats().unwrap();
        assert_eq!((stats.objects, stats.records, stats.low_water, stats.durable), (3, 13, 1, 13));
        assert!(stats.blobs > 5 && stats.bytes_on_disk > 1000, "{stats:?}");
    }

    #[test]
    fn reading_outside_the_journal_is_an_error_not_damage() {
        let mut journal = Journal::in_memory().unwrap();
        write(&mut journal, 1, 1);
        let error = journal.read(3).unwrap_err();
        assert_eq!(error.to_string(), "seq 3 is not in the journal (it holds 1 to 2)");
        assert!(matches!(journal.read(0), Err(JournalError::NotFound { seq: 0, .. })));
        journal.store.insert(TreeId::Records, &seq_key(2), &seal(&"not a record").unwrap()).unwrap();
        assert!(matches!(journal.entry(2), Err(JournalError::Damaged(Damage { seq: 2, .. }))));
    }
}
