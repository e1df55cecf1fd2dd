//! The journal: every Input and every Decision, durable before any command of the Decision runs (DESIGN.md:
//! write-ahead), kept small by content addressing, with secrets redacted, damage reported and never hidden.
//!
//! Layout of a journal directory: `sled/` (the store, see [`store::TreeId`] for its trees) and `durable` (the
//! [`marker`]). Records carry a global sequence number (`seq`, from 1); each belongs to an object (or, for a
//! session header, to none) and is indexed per object. A record holds its volatile parts (the time, the trigger,
//! the words of a decision) and the hash of a manifest naming the blobs of the others, so that what repeats from
//! one step to the next — a spec, Pods, command bodies, and the manifest itself — is stored once ([`record`]).
//!
//! Writing: [`Journal::append_input`], [`Journal::append_decision`], [`Journal::append_session`] and
//! [`Journal::append_logs`] (a Ray job's output, [`logs`]) return the new record's seq at once; [`Journal::commit`] makes everything appended so far durable at one point (group commit)
//! and returns the durable seq. Reading: [`Journal::scan`] and [`Journal::scan_object`] yield records and
//! [`Damage`] reports in seq order, going on past damage.

pub mod blob;
mod export;
pub mod history;
mod logs;
pub mod marker;
mod read;
pub mod record;
pub mod redact;
mod retention;
pub mod store;
pub mod synthetic;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

use crate::machine::{Decision, Input, Memory, ObjectRef, Observation, Part, PartsError};
use blob::{BlobReader, Hash};
use marker::{Marker, MarkerRead, MarkerState};
use record::{
    FrameError, InlinePart, Manifest, StoredObject, StoredRecord, VOLATILE_PARTS, index_key, key_seq, seal, seq_key,
    unseal,
};
use store::{MemStore, SledStore, Store, TreeId};

pub use export::{ExportFormat, ExportReport, ImportReport};
pub use logs::{JobLogs, LOGS_PART, LoggedOutput};
pub use read::{Entry, ObjectSummary, Scan, Scanned, Stats};
pub use record::Kind;
pub use retention::{Retention, RetentionReport};
pub use store::SledOptions;

/// The parts an Input record holds: the Input's own, and the memory the step starts from.
pub fn input_parts(input: &Input, memory: &Memory) -> Result<Vec<Part>, JournalError> {
    let mut parts = input.parts()?;
    parts.push(Part { name: MEMORY_PART.to_string(), json: serde_json::to_vec(memory)? });
    Ok(parts)
}

/// Everything that can go wrong with a journal, other than damage found in its data (which is [`Damage`], reported
/// alongside what could be read).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("sled panicked (its files are likely damaged): {0}")]
    StorePanicked(String),
    #[error("{path}: {source}")]
    Marker { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("encoding a record: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error(transparent)]
    Parts(#[from] PartsError),
    #[error("a part is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Damaged(Damage),
    #[error("seq {seq} is not in the journal (it holds {low_water} to {last})")]
    NotFound { seq: u64, low_water: u64, last: u64 },
    #[error("seq {seq} is a {found} record, not a {wanted}")]
    WrongKind { seq: u64, found: &'static str, wanted: &'static str },
    #[error("the decision at seq {decision} answers seq {input}, which is not an earlier record")]
    InputNotBefore { decision: u64, input: u64 },
    #[error("import, item {item}: {message}")]
    Import { item: u64, message: String },
    #[error("export, seq {seq}: {message}")]
    Export { seq: u64, message: String },
}

/// Damage found in a journal: what is wrong, and at which seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The record concerned (for an object entry, the object's id: the seq of its first record; 0 when no seq
    /// applies).
    pub seq: u64,
    pub kind: DamageKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageKind {
    /// The record fails its crc, cannot be decoded, or is stored under another seq.
    Corrupt(String),
    /// The record was written by a newer format than this build reads.
    UnknownVersion(u8),
    /// The records from `seq` to `last` are gone, though retention did not remove them: a gap, or records lost
    /// below the durable seq the marker promised.
    Missing { last: u64 },
    /// A part's blob is missing.
    MissingBlob { part: String, hash: Hash },
    /// A part's blob no longer matches its hash.
    CorruptBlob { part: String, hash: Hash },
    /// The record names an object the journal has no (intact) entry for.
    UnknownObject(u64),
    /// The store failed to read the record.
    Unreadable(String),
    /// The durability marker does not check out: what was promised durable is unknown.
    Marker(String),
    /// A value of the meta tree (the low-water mark) or an object entry does not check out.
    Meta(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.kind {
            DamageKind::Corrupt(why) => write!(f, "seq {seq}: corrupt record ({why})"),
            DamageKind::UnknownVersion(version) => write!(f, "seq {seq}: record format {version} is unknown"),
            DamageKind::Missing { last } if *last == seq => write!(f, "seq {seq}: record missing"),
            DamageKind::Missing { last } => write!(f, "seq {seq}: records {seq}..={last} missing"),
            DamageKind::MissingBlob { part, hash } => write!(f, "seq {seq}: part {part} missing (blob {hash})"),
            DamageKind::CorruptBlob { part, hash } => write!(f, "seq {seq}: part {part} corrupt (blob {hash})"),
            DamageKind::UnknownObject(id) => write!(f, "seq {seq}: object {id} unknown"),
            DamageKind::Unreadable(why) => write!(f, "seq {seq}: unreadable ({why})"),
            DamageKind::Marker(why) => write!(f, "durability marker damaged: {why}"),
            DamageKind::Meta(why) => write!(f, "seq {seq}: {why}"),
        }
    }
}

impl Damage {
    fn frame(seq: u64, error: FrameError) -> Damage {
        let kind = match error {
            FrameError::UnknownVersion(version) => DamageKind::UnknownVersion(version),
            FrameError::Truncated => DamageKind::Corrupt("truncated".to_string()),
            FrameError::Crc => DamageKind::Corrupt("crc mismatch".to_string()),
            FrameError::Undecodable(why) => DamageKind::Corrupt(why),
        };
        Damage { seq, kind }
    }
}

/// The header of an operator session: what the machines ran with, so that replay can run them the same way.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Session {
    /// The operator's version.
    pub operator: String,
    pub started: Time,
    /// The operator configuration (feature gates and env knobs) as JSON.
    pub config: serde_json::Value,
}

/// What opening a journal found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Damage found on opening: a damaged marker, damaged object entries, records lost below the durable seq.
    pub damage: Vec<Damage>,
    /// A torn tail: records past the last durability point from the first one that is damaged or out of sequence,
    /// cut (never promised durable, so nothing is lost that anyone was told was kept).
    pub cut: Option<Cut>,
    /// Intact records past the marker's seq (written but not yet marked when the process stopped), now marked.
    pub adopted: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The first seq cut; the journal goes on from here.
    pub from: u64,
    /// How many records were removed.
    pub records: u64,
}

/// The part of an Input record that holds the engine's memory for the object before the step.
pub const MEMORY_PART: &str = "memory";

/// How many recently written blobs the journal remembers (a part by the hash of its unredacted bytes, a manifest by
/// its own), so that a part seen before is neither redacted nor looked up again. Forgotten whole when full.
const SEEN_CAPACITY: usize = 1 << 16;

const LOW_WATER_KEY: &[u8] = b"low_water";

/// The index id of records without an object (session headers). Object ids are seqs, which start at 1.
const SESSIONS: u64 = 0;

/// A journal over a [`Store`]: on disk ([`Journal::open`]) or in memory ([`Journal::in_memory`]).
pub struct Journal<S: Store = SledStore> {
    store: S,
    marker: Option<Marker>,
    /// Object id → entry, and the way back.
    objects: BTreeMap<u64, StoredObject>,
    object_ids: HashMap<ObjectRef, u64>,
    /// Ranges (first → last) that retention removed above the low-water mark.
    retired: BTreeMap<u64, u64>,
    low_water: u64,
    durable: u64,
    next_seq: u64,
    /// Blobs written lately, by the hash of their unredacted bytes: see [`SEEN_CAPACITY`].
    seen: HashMap<Hash, Hash>,
    recovery: Recovery,
}

impl Journal<SledStore> {
    /// Opens (or creates) the journal in `dir`, recovering from a crash: a torn tail past the last durability point
    /// is cut, intact records past it are kept; see [`Journal::recovery`].
    pub fn open(dir: &Path, options: &SledOptions) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir)?;
        let store = SledStore::open(&dir.join("sled"), options)?;
        Journal::with_store(store, Some(Marker::new(dir)))
    }
}

impl Journal<MemStore> {
    pub fn in_memory() -> Result<Self, JournalError> {
        Journal::with_store(MemStore::new(), None)
    }
}

impl<S: Store> Journal<S> {
    fn with_store(store: S, marker: Option<Marker>) -> Result<Self, JournalError> {
        let mut journal = Journal {
            store,
            marker,
            objects: BTreeMap::new(),
            object_ids: HashMap::new(),
            retired: BTreeMap::new(),
            low_water: 1,
            durable: 0,
            next_seq: 1,
            seen: HashMap::new(),
            recovery: Recovery::default(),
        };
        journal.recover()?;
        Ok(journal)
    }

    fn recover(&mut self) -> Result<(), JournalError> {
        let marker = match self.marker.as_ref().map(Marker::read).transpose()? {
            None | Some(MarkerRead::Absent) => Some(MarkerState::default()),
            Some(MarkerRead::Valid(state)) => Some(state),
            Some(MarkerRead::Damaged(content)) => {
                self.recovery.damage.push(Damage { seq: 0, kind: DamageKind::Marker(format!("{content:?}")) });
                None
            }
        };
        self.low_water = self.read_low_water()?.max(marker.map_or(1, |m| m.low_water)).max(1);
        self.load_objects()?;
        self.load_retired()?;
        let last = self.last_seq()?;
        match marker {
            Some(marker) => self.recover_tail(marker.durable)?,
            // Without a marker that checks out, nothing tells a torn tail from records promised durable: keep
            // everything, and let scans report what is damaged.
            None => self.durable = last.max(self.low_water - 1),
        }
        if let Some(marker) = marker
            && last < marker.durable
        {
            let lost = self.uncovered(last.max(self.low_water - 1) + 1, marker.durable);
            self.recovery
                .damage
                .extend(lost.into_iter().map(|(seq, last)| Damage { seq, kind: DamageKind::Missing { last } }));
        }
        self.next_seq = self.durable.max(marker.map_or(0, |m| m.durable)) + 1;
        if self.recovery.cut.is_some() || self.recovery.adopted > 0 {
            self.mark_durable()?;
        }
        Ok(())
    }

    /// Keeps the intact, gapless run of records past the marker's seq and cuts the rest.
    fn recover_tail(&mut self, marked: u64) -> Result<(), JournalError> {
        let start = (marked + 1).max(self.low_water);
        let mut expected = start;
        let mut torn = false;
        for item in self.store.range(TreeId::Records, &seq_key(start), None) {
            let (key, value) = item?;
            if key_seq(key.as_ref()) != Some(expected) || !self.intact(expected, value.as_ref()) {
                torn = true;
                break;
            }
            expected += 1;
        }
        self.durable = marked.max(expected - 1);
        self.recovery.adopted = expected - start;
        if torn {
            let records = self.cut_from(expected)?;
            self.recovery.cut = Some(Cut { from: expected, records });
        }
        Ok(())
    }

    /// Whether a record past the marker is whole: its frame, its seq, its object and every blob it needs.
    fn intact(&self, seq: u64, frame: &[u8]) -> bool {
        let Ok(record) = unseal::<StoredRecord>(frame) else { return false };
        let known_object = record.object.is_none_or(|id| self.objects.contains_key(&id));
        let mut blobs = BlobReader::new(&self.store);
        record.seq == seq
            && known_object
            && blobs.blobs_of(&record).is_ok_and(|hashes| hashes.iter().all(|hash| blobs.blob(hash).is_ok()))
    }

    /// Removes every record from `from` on, with their index entries and the objects they introduced.
    fn cut_from(&mut self, from: u64) -> Result<u64, JournalError> {
        let mut records = 0;
        let keys: Vec<S::Bytes> = self.keys(TreeId::Records, &seq_key(from), None)?;
        for key in keys {
            self.store.remove(TreeId::Records, key.as_ref())?;
            records += 1;
        }
        for id in self.objects.keys().copied().chain([SESSIONS]) {
            for key in self.keys(TreeId::Index, &index_key(id, from), Some(&index_key(id, u64::MAX)))? {
                self.store.remove(TreeId::Index, key.as_ref())?;
            }
        }
        let introduced: Vec<u64> = self.objects.range(from..).map(|(&id, _)| id).collect();
        for id in introduced {
            self.forget_object(id)?;
        }
        self.store.flush()?;
        Ok(records)
    }

    fn keys(&self, tree: TreeId, from: &[u8], to: Option<&[u8]>) -> Result<Vec<S::Bytes>, JournalError> {
        self.store.range(tree, from, to).map(|item| item.map(|(key, _)| key)).collect()
    }

    fn last_seq(&self) -> Result<u64, JournalError> {
        Ok(self.store.last(TreeId::Records)?.and_then(|(key, _)| key_seq(key.as_ref())).unwrap_or(0))
    }

    fn read_low_water(&mut self) -> Result<u64, JournalError> {
        let Some(bytes) = self.store.get(TreeId::Meta, LOW_WATER_KEY)? else { return Ok(1) };
        match unseal::<u64>(bytes.as_ref()) {
            Ok(low_water) => Ok(low_water),
            Err(error) => {
                let why = format!("low-water mark unreadable: {error:?}");
                self.recovery.damage.push(Damage { seq: 0, kind: DamageKind::Meta(why) });
                Ok(1)
            }
        }
    }

    fn load_objects(&mut self) -> Result<(), JournalError> {
        for item in self.store.range(TreeId::Objects, &[], None) {
            let (key, value) = item?;
            let id = key_seq(key.as_ref()).unwrap_or(0);
            match unseal::<StoredObject>(value.as_ref()) {
                Ok(entry) => {
                    self.object_ids.insert(entry.object.clone(), id);
                    self.objects.insert(id, entry);
                }
                Err(error) => {
                    let why = format!("object entry unreadable: {error:?}");
                    self.recovery.damage.push(Damage { seq: id, kind: DamageKind::Meta(why) });
                }
            }
        }
        Ok(())
    }

    fn load_retired(&mut self) -> Result<(), JournalError> {
        for item in self.store.range(TreeId::Retired, &[], None) {
            let (key, value) = item?;
            match (key_seq(key.as_ref()), unseal::<u64>(value.as_ref())) {
                (Some(first), Ok(last)) => {
                    self.retired.insert(first, last);
                }
                (first, _) => {
                    let why = "retired range unreadable: what retention removed there may be reported missing";
                    self.recovery.damage.push(Damage { seq: first.unwrap_or(0), kind: DamageKind::Meta(why.into()) });
                }
            }
        }
        Ok(())
    }

    /// The pieces of `first..=last` that neither the low-water mark nor a retired range accounts for.
    fn uncovered(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        let mut pieces = Vec::new();
        let mut next = first.max(self.low_water);
        let from = self.retired.range(..=next).next_back().map_or(next, |(&start, _)| start);
        for (&start, &end) in self.retired.range(from..=last) {
            if start > next {
                pieces.push((next, start - 1));
            }
            next = next.max(end.saturating_add(1));
        }
        if next <= last {
            pieces.push((next, last));
        }
        pieces
    }

    /// What opening the journal found and did.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The last seq made durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Every seq below this one was removed by retention.
    pub fn low_water(&self) -> u64 {
        self.low_water
    }

    /// The seq the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Journals an Input with the memory the machine steps from (replay starts from it); returns its seq.
    pub fn append_input(&mut self, input: &Input, memory: &Memory) -> Result<u64, JournalError> {
        self.append_input_parts(input, &input_parts(input, memory)?)
    }

    /// [`Journal::append_input`] with the parts already made ([`input_parts`]).
    pub fn append_input_parts(&mut self, input: &Input, parts: &[Part]) -> Result<u64, JournalError> {
        let seq = self.append(Kind::Input, Some(&input.object), parts)?;
        if observes_gone(&input.observation) {
            self.mark_gone(&input.object, input.now.0.as_millisecond())?;
        }
        Ok(seq)
    }

    /// Journals the Decision a machine took on the Input journaled at `input`; returns its seq.
    pub fn append_decision(
        &mut self,
        object: &ObjectRef,
        input: u64,
        decision: &Decision,
    ) -> Result<u64, JournalError> {
        self.append(Kind::Decision { input }, Some(object), &decision.parts()?)
    }

    /// Journals a session header; returns its seq.
    pub fn append_session(&mut self, session: &Session) -> Result<u64, JournalError> {
        let part = Part { name: "session".to_string(), json: serde_json::to_vec(session)? };
        self.append(Kind::Session, None, &[part])
    }

    /// Journals a record of any kind from its parts (redacted here, before anything is written). The record is
    /// durable once [`Journal::commit`] returns a seq at least its own.
    pub fn append(&mut self, kind: Kind, object: Option<&ObjectRef>, parts: &[Part]) -> Result<u64, JournalError> {
        let seq = self.next_seq;
        if let Kind::Decision { input } = kind
            && input >= seq
        {
            return Err(JournalError::InputNotBefore { decision: seq, input });
        }
        let (mut inline, mut listed) = (Vec::new(), Vec::new());
        for part in parts {
            if VOLATILE_PARTS.contains(&part.name.as_str()) {
                let json = redact::redact_json(&part.json)?.into_owned();
                inline.push(InlinePart { name: part.name.clone(), json });
            } else {
                listed.push((part.name.clone(), self.put_part(&part.json)?));
            }
        }
        // One order whatever order the parts came in (an import's JSON object, say): by name.
        inline.sort_by(|a, b| a.name.cmp(&b.name));
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let manifest = if listed.is_empty() { None } else { Some(self.put_manifest(&Manifest { parts: listed })?) };
        let object = object.map(|object| self.intern(object, seq)).transpose()?;
        self.store.insert(TreeId::Index, &index_key(object.unwrap_or(SESSIONS), seq), &[])?;
        let record = StoredRecord { seq, object, kind, inline, manifest };
        self.store.insert(TreeId::Records, &seq_key(seq), &seal(&record)?)?;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Redacts a part and stores it as a blob; returns its hash. A part seen lately is neither redacted nor looked
    /// up again.
    fn put_part(&mut self, raw: &[u8]) -> Result<Hash, JournalError> {
        let raw_hash = Hash::of(raw);
        if let Some(&hash) = self.seen.get(&raw_hash) {
            return Ok(hash);
        }
        let json = redact::redact_json(raw)?;
        let hash = match json {
            std::borrow::Cow::Borrowed(_) => raw_hash,
            std::borrow::Cow::Owned(ref redacted) => Hash::of(redacted),
        };
        self.put_blob(&hash, &json)?;
        self.remember(raw_hash, hash);
        Ok(hash)
    }

    fn put_manifest(&mut self, manifest: &Manifest) -> Result<Hash, JournalError> {
        let bytes = manifest.encode()?;
        let hash = Hash::of(&bytes);
        if !self.seen.contains_key(&hash) {
            self.put_blob(&hash, &bytes)?;
            self.remember(hash, hash);
        }
        Ok(hash)
    }

    /// Stores a blob unless an intact one is already there: a blob damaged on disk is rewritten by the next record
    /// that needs it.
    fn put_blob(&self, hash: &Hash, bytes: &[u8]) -> Result<(), JournalError> {
        match self.store.get(TreeId::Blobs, &hash.0)? {
            Some(stored) if hash.verifies(stored.as_ref()) => Ok(()),
            _ => self.store.insert(TreeId::Blobs, &hash.0, bytes),
        }
    }

    fn remember(&mut self, key: Hash, hash: Hash) {
        if self.seen.len() >= SEEN_CAPACITY {
            self.seen.clear();
        }
        self.seen.insert(key, hash);
    }

    fn intern(&mut self, object: &ObjectRef, seq: u64) -> Result<u64, JournalError> {
        if let Some(&id) = self.object_ids.get(object) {
            return Ok(id);
        }
        let entry = StoredObject { object: object.clone(), gone_at_ms: None };
        self.store.insert(TreeId::Objects, &seq_key(seq), &seal(&entry)?)?;
        self.object_ids.insert(object.clone(), seq);
        self.objects.insert(seq, entry);
        Ok(seq)
    }

    fn mark_gone(&mut self, object: &ObjectRef, at_ms: i64) -> Result<(), JournalError> {
        let Some(&id) = self.object_ids.get(object) else { return Ok(()) };
        let Some(entry) = self.objects.get_mut(&id) else { return Ok(()) };
        if entry.gone_at_ms.is_none() {
            entry.gone_at_ms = Some(at_ms);
            let sealed = seal(entry)?;
            self.store.insert(TreeId::Objects, &seq_key(id), &sealed)?;
        }
        Ok(())
    }

    fn forget_object(&mut self, id: u64) -> Result<(), JournalError> {
        self.store.remove(TreeId::Objects, &seq_key(id))?;
        if let Some(entry) = self.objects.remove(&id) {
            self.object_ids.remove(&entry.object);
        }
        Ok(())
    }

    /// Makes every record appended so far durable — one flush of the store, then the marker — and returns the
    /// durable seq. A command may run once this returns a seq at least that of the Decision holding it.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        if self.next_seq - 1 > self.durable {
            self.store.flush()?;
            self.durable = self.next_seq - 1;
            self.mark_durable()?;
        }
        Ok(self.durable)
    }

    fn mark_durable(&self) -> Result<(), JournalError> {
        match &self.marker {
            Some(marker) => marker.write(MarkerState { durable: self.durable, low_water: self.low_water }),
            None => Ok(()),
        }
    }
}

/// Whether an Input shows its object gone from the API server: retention counts its time to live from there.
fn observes_gone(observation: &Observation) -> bool {
    match observation {
        Observation::RayCluster(cluster) => cluster.cluster.is_none(),
        Observation::RayJob(job) => job.job.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::testing::{open, scan_all, seqs, write};
    use super::*;
    use crate::machine::Command;

    #[test]
    fn appends_take_consecutive_seqs_and_one_commit_makes_them_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        let written = write(&mut journal, 2, 3);
        assert_eq!(
            written.iter().map(|w| (w.input_seq, w.decision_seq)).collect::<Vec<_>>(),
            [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]
        );
        assert_eq!(journal.durable(), 0);
        assert_eq!(journal.commit().unwrap(), 12);
        assert_eq!(std::fs::read_to_string(dir.path().join("durable")).unwrap().split(' ').next(), Some("durable=12"));
        assert_eq!(journal.commit().unwrap(), 12, "nothing new, nothing to flush");
        drop(journal);

        let journal = open(dir.path());
        assert_eq!((journal.durable(), journal.next_seq()), (12, 13));
        assert_eq!(journal.recovery(), &Recovery::default());
    }

    #[test]
    fn inputs_and_decisions_come_back_as_they_were() {
        let mut journal = Journal::in_memory().unwrap();
        let written = write(&mut journal, 1, 5);
        journal.commit().unwrap();
        for w in &written {
            assert_eq!(journal.entry(w.input_seq).unwrap().input().unwrap(), w.input);
            let entry = journal.entry(w.decision_seq).unwrap();
            assert_eq!(entry.kind, Kind::Decision { input: w.input_seq });
            assert_eq!(entry.object.as_ref(), Some(&w.input.object));
            assert_eq!(entry.decision().unwrap(), w.decision);
        }
        let wrong = journal.entry(1).unwrap().decision().unwrap_err();
        assert_eq!(wrong.to_string(), "seq 1 is a input record, not a decision");
    }

    #[test]
    fn a_session_header_keeps_the_configuration() {
        let mut journal = Journal::in_memory().unwrap();
        let session = Session {
            operator: "0.1.0".into(),
            started: Time(jiff::Timestamp::UNIX_EPOCH),
            config: serde_json::json!({"clusterDomain": "cluster.local"}),
        };
        let seq = journal.append_session(&session).unwrap();
        let entry = journal.entry(seq).unwrap();
        assert_eq!((entry.kind, &entry.object), (Kind::Session, &None));
        assert_eq!(entry.session().unwrap(), session);
    }

    #[test]
    fn repeated_values_are_stored_once() {
        let mut journal = Journal::in_memory().unwrap();
        let (input, decision) = synthetic::transitions(1, 1).next().unwrap();
        let first = journal.append_input(&input, &Default::default()).unwrap();
        journal.append_decision(&input.object, first, &decision).unwrap();
        let blobs = journal.stats().unwrap().blobs;
        let again = journal.append_input(&input, &Default::default()).unwrap();
        journal.append_decision(&input.object, again, &decision).unwrap();
        assert_eq!(journal.stats().unwrap().blobs, blobs, "the same Input and Decision add no blob");
        let head_creates = decision.commands.iter().filter(|c| matches!(c, Command::Create { .. })).count();
        assert_eq!(head_creates, 3);
        // The two identical worker bodies are one blob: the 3 creates hold 2 distinct bodies.
        let record =
            unseal::<StoredRecord>(&journal.store.get(TreeId::Records, &seq_key(2)).unwrap().unwrap()).unwrap();
        let manifest = BlobReader::new(&journal.store).manifest(&record.manifest.unwrap()).unwrap();
        let commands: Vec<&Hash> =
            manifest.parts.iter().filter(|(name, _)| name.starts_with("command/")).map(|(_, hash)| hash).collect();
        let bodies: std::collections::HashSet<&Hash> = commands.iter().copied().collect();
        assert_eq!((commands.len(), bodies.len()), (5, 4), "head, worker twice, status, requeue");
        let inline: Vec<&str> = record.inline.iter().map(|part| part.name.as_str()).collect();
        assert_eq!(inline, ["explanation", "next", "reason"]);
    }

    #[test]
    fn a_decision_answers_an_earlier_record() {
        let mut journal = Journal::in_memory().unwrap();
        let (input, decision) = synthetic::transitions(1, 1).next().unwrap();
        let error = journal.append_decision(&input.object, 1, &decision).unwrap_err();
        assert_eq!(error.to_string(), "the decision at seq 1 answers seq 1, which is not an earlier record");
    }

    #[test]
    fn an_input_showing_the_object_gone_starts_its_retention_clock() {
        let mut journal = Journal::in_memory().unwrap();
        let (mut input, _) = synthetic::transitions(1, 1).next().unwrap();
        journal.append_input(&input, &Default::default()).unwrap();
        assert_eq!(journal.objects().unwrap()[0].gone_at, None);
        input.now = Time(jiff::Timestamp::from_second(100).unwrap());
        input.observation = Observation::RayCluster(Default::default());
        journal.append_input(&input, &Default::default()).unwrap();
        input.now = Time(jiff::Timestamp::from_second(200).unwrap());
        journal.append_input(&input, &Default::default()).unwrap();
        assert_eq!(journal.objects().unwrap()[0].gone_at, Some(jiff::Timestamp::from_second(100).unwrap()));
    }

    /// Writes 3 committed transitions (seqs 1..=6), then puts the store's tail in the given shape behind the
    /// journal's back, as a crash would leave it.
    fn crashed_with(tail: impl FnOnce(&Journal)) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        write(&mut journal, 1, 3);
        journal.commit().unwrap();
        tail(&journal);
        journal.store.flush().unwrap();
        drop(journal);
        let journal = open(dir.path());
        (dir, journal)
    }

    fn copy_record(journal: &Journal, from: u64, to: u64, edit: impl FnOnce(&mut StoredRecord)) {
        let frame = journal.store.get(TreeId::Records, &seq_key(from)).unwrap().unwrap();
        let mut record = unseal::<StoredRecord>(&frame).unwrap();
        record.seq = to;
        edit(&mut record);
        journal.store.insert(TreeId::Records, &seq_key(to), &seal(&record).unwrap()).unwrap();
    }

    #[rstest]
    #[case::garbage_past_the_marker(
        |j: &Journal| j.store.insert(TreeId::Records, &seq_key(7), b"\x01torn").unwrap(), 7, 1)]
    #[case::gap_past_the_marker(|j: &Journal| copy_record(j, 5, 8, |_| ()), 7, 1)]
    #[case::intact_then_torn(|j: &Journal| {
        copy_record(j, 5, 7, |_| ());
        j.store.insert(TreeId::Records, &seq_key(8), &[1, 2, 3, 4, 5, 6]).unwrap();
        copy_record(j, 5, 9, |_| ());
    }, 8, 2)]
    #[case::manifest_never_written(|j: &Journal| copy_record(j, 5, 7, |r| r.manifest = Some(Hash::of(b"lost"))), 7, 1)]
    fn a_torn_tail_past_the_marker_is_cut(#[case] tail: fn(&Journal), #[case] from: u64, #[case] records: u64) {
        let (_dir, mut journal) = crashed_with(tail);
        assert_eq!(journal.recovery().cut, Some(Cut { from, records }));
        assert!(journal.recovery().damage.is_empty());
        assert_eq!(journal.next_seq(), from);
        let (entries, damage) = scan_all(&journal);
        assert_eq!(seqs(&entries), (1..from).collect::<Vec<_>>());
        assert_eq!(damage, []);
        let (input, _) = synthetic::transitions(1, 1).next().unwrap();
        assert_eq!(
            journal.append_input(&input, &Default::default()).unwrap(),
            from,
            "the journal goes on where the cut was"
        );
    }

    #[test]
    fn intact_records_past_the_marker_are_adopted() {
        let (dir, journal) = crashed_with(|j| {
            copy_record(j, 5, 7, |_| ());
            copy_record(j, 6, 8, |r| r.kind = Kind::Decision { input: 7 });
        });
        assert_eq!((journal.recovery().adopted, journal.recovery().cut), (2, None));
        assert_eq!(journal.durable(), 8);
        assert!(std::fs::read_to_string(dir.path().join("durable")).unwrap().starts_with("durable=8 "));
    }

    #[test]
    fn records_lost_below_the_marker_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        write(&mut journal, 1, 3);
        journal.commit().unwrap();
        drop(journal);
        marker::Marker::new(dir.path()).write(MarkerState { durable: 9, low_water: 1 }).unwrap();

        let journal = open(dir.path());
        let lost = Damage { seq: 7, kind: DamageKind::Missing { last: 9 } };
        assert_eq!(journal.recovery().damage, std::slice::from_ref(&lost));
        assert_eq!(lost.to_string(), "seq 7: records 7..=9 missing");
        assert_eq!(journal.next_seq(), 10, "a seq once promised durable is never reused");
        let (entries, damage) = scan_all(&journal);
        assert_eq!((entries.len(), damage), (6, vec![lost]));
    }

    #[test]
    fn a_damaged_marker_is_reported_and_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        write(&mut journal, 1, 3);
        journal.commit().unwrap();
        journal.store.insert(TreeId::Records, &seq_key(8), b"torn").unwrap();
        journal.store.flush().unwrap();
        drop(journal);
        std::fs::write(dir.path().join("durable"), "durable=6 low_wat").unwrap();

        let journal = open(dir.path());
        let damage = &journal.recovery().damage;
        assert!(matches!(&damage[..], [Damage { seq: 0, kind: DamageKind::Marker(_) }]), "{damage:?}");
        assert_eq!(journal.recovery().cut, None);
        let (entries, damage) = scan_all(&journal);
        assert_eq!(entries.len(), 6);
        assert_eq!(
            damage,
            [
                Damage { seq: 7, kind: DamageKind::Missing { last: 7 } },
                Damage { seq: 8, kind: DamageKind::Corrupt("truncated".into()) }
            ]
        );
    }

    #[test]
    fn a_canary_secret_never_reaches_the_disk() {
        const CANARY: &str = "Canary7f3a9c";
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        let (mut input, mut decision) = synthetic::transitions(1, 1).next().unwrap();
        let Observation::RayCluster(observation) = &mut input.observation else { unreachable!() };
        let cluster = observation.cluster.as_mut().unwrap();
        let spec = &mut cluster.spec;
        let credential =
            || Some(crate::api::raycluster::RedisCredential { value: Some(CANARY.into()), value_from: None });
        spec.gcs_fault_tolerance_options = Some(crate::api::raycluster::GcsFaultToleranceOptions {
            redis_username: credential(),
            redis_password: credential(),
            external_storage_namespace: None,
            redis_address: format!("redis://admin:{CANARY}@redis:6379"),
        });
        spec.head_group_spec.ray_start_params.insert("redis-password".into(), CANARY.into());
        let container = &mut spec.head_group_spec.template.spec.as_mut().unwrap().containers[0];
        container.env = Some(
            [
                ("RAY_REDIS_ADDRESS", format!(":{CANARY}@redis:6379")),
                ("HF_TOKEN", CANARY.into()),
                ("db_secret", CANARY.into()),
                ("MY_PASSWORD", CANARY.into()),
            ]
            .into_iter()
            .map(|(name, value)| k8s_openapi::api::core::v1::EnvVar {
                name: name.into(),
                value: Some(value),
                value_from: None,
            })
            .collect(),
        );
        let config = crate::config::OperatorConfig::default();
        let cluster = cluster.clone();
        let mut legacy = cluster.clone();
        legacy.spec.gcs_fault_tolerance_options = None;
        let head = crate::build::pod::head_pod(&cluster, &config);
        let bodies = [
            serde_json::to_value(&head).unwrap(),
            serde_json::to_value(crate::build::pod::head_pod(&legacy, &config)).unwrap(),
            serde_json::to_value(crate::build::redis_cleanup::redis_cleanup_job(&cluster, &head)).unwrap(),
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis"},
                               "data": {"password": data_encoding::BASE64.encode(CANARY.as_bytes())},
                               "stringData": {"password": CANARY}}),
        ];
        for body in &bodies {
            assert!(body.to_string().contains(CANARY) || body["kind"] == "Secret", "the canary is in {body}");
        }
        decision.commands = bodies.into_iter().map(|object| Command::Create { object }).collect();
        let seq = journal.append_input(&input, &Default::default()).unwrap();
        journal.append_decision(&input.object, seq, &decision).unwrap();
        journal.commit().unwrap();
        let exported = {
            let mut out = Vec::new();
            journal.export(&mut out, ExportFormat::Jsonl, None).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(exported.contains(redact::REDACTED));
        drop(journal);

        let needles = [CANARY.as_bytes().to_vec(), data_encoding::BASE64.encode(CANARY.as_bytes()).into_bytes()];
        let mut files = 0;
        for file in walk(dir.path()) {
            let bytes = std::fs::read(&file).unwrap();
            files += 1;
            for needle in &needles {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{} holds the canary", file.display());
            }
        }
        assert!(files >= 3, "sled's files and the marker were read");
        assert!(!exported.contains(CANARY));
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|entry| {
                let path = entry.unwrap().path();
                if path.is_dir() { walk(&path) } else { vec![path] }
            })
            .collect()
    }
}
