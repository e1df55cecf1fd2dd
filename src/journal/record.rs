//! The record format: plain structs encoded with bincode, each sealed in a frame that carries the format version
//! and a crc32, so that a flipped byte is detected before anything is decoded.
//!
//! A frame is `[version: u8][crc32 of version and payload: u32 LE][payload]`. Version 1 is the only one so far; a
//! reader meeting a newer one reports it instead of guessing.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::JournalError;
use super::blob::Hash;

pub const FORMAT_VERSION: u8 = 1;

const HEADER: usize = 5;

/// Decoding never trusts a length prefix beyond this: a damaged frame must not make bincode allocate gigabytes.
const DECODE_LIMIT: usize = 256 << 20;

/// Why a frame could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    Truncated,
    Crc,
    UnknownVersion(u8),
    Undecodable(String),
}

/// Encodes `value` into a sealed frame.
pub fn seal<T: Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    let mut frame = vec![FORMAT_VERSION, 0, 0, 0, 0];
    bincode::serde::encode_into_std_write(value, &mut frame, bincode::config::standard())?;
    let crc = frame_crc(frame[0], &frame[HEADER..]);
    frame[1..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// Checks and decodes a sealed frame.
pub fn unseal<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    let (header, payload) = frame.split_at_checked(HEADER).ok_or(FrameError::Truncated)?;
    let stored = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    if frame_crc(header[0], payload) != stored {
        return Err(FrameError::Crc);
    }
    if header[0] != FORMAT_VERSION {
        return Err(FrameError::UnknownVersion(header[0]));
    }
    decode(payload)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    match bincode::serde::decode_from_slice(bytes, config) {
        Ok((value, read)) if read == bytes.len() => Ok(value),
        Ok(_) => Err(FrameError::Undecodable("trailing bytes".to_string())),
        Err(error) => Err(FrameError::Undecodable(error.to_string())),
    }
}

fn frame_crc(version: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[version]);
    hasher.update(payload);
    hasher.finalize()
}

/// What a record is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The operator's start: its version and the configuration the machines run with.
    Session,
    /// An Input of one object.
    Input,
    /// The Decision a machine took on the Input journaled at `input`.
    Decision { input: u64 },
    /// Output lines of a Ray job the operator tailed ([`super::JobLogs`]); no machine reads it.
    Logs,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Input => "input",
            Kind::Decision { .. } => "decision",
            Kind::Logs => "logs",
        }
    }
}

/// Parts that differ from one record to the next — the time, the trigger, the words of a decision, a job's output
/// lines — are kept in the record itself. The others (a spec, a status, Pods, the memory, command bodies) are listed by name and hash in
/// a manifest, itself a blob: while they stay the same, successive records share one manifest. Naming a part here
/// only moves where it is stored; a part left out costs space, never correctness.
pub const VOLATILE_PARTS: [&str; 6] = ["now", "trigger", "next", "reason", "explanation", "logs"];

/// A part kept in its record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InlinePart {
    pub name: String,
    pub json: Vec<u8>,
}

/// A record as stored under its seq.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's own seq, checked against its key: a record found under another key is damage.
    pub seq: u64,
    /// The object id (the seq of the object's first record), or None for a session.
    pub object: Option<u64>,
    pub kind: Kind,
    pub inline: Vec<InlinePart>,
    /// The blob of the [`Manifest`] of the other parts, if there are any.
    pub manifest: Option<Hash>,
}

/// The parts of a record stored as blobs: names and hashes, sorted by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub parts: Vec<(String, Hash)>,
}

impl Manifest {
    /// Encodes the manifest as a blob's bytes (no frame: the blob's hash checks it).
    pub fn encode(&self) -> Result<Vec<u8>, JournalError> {
        Ok(bincode::serde::encode_to_vec(self, bincode::config::standard())?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, FrameError> {
        decode(bytes)
    }
}

/// An object the journal has records of.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub object: crate::machine::ObjectRef,
    /// When an Input first showed the object gone (milliseconds since the epoch); retention counts from there.
    pub gone_at_ms: Option<i64>,
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn key_seq(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

/// The per-object index key: the object id, then the seq, so that one object's records are one range.
pub fn index_key(object: u64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&object.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub fn index_key_seq(key: &[u8]) -> Option<u64> {
    key.get(8..).and_then(key_seq)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn record() -> StoredRecord {
        StoredRecord {
            seq: 7,
            object: Some(3),
            kind: Kind::Decision { input: 6 },
            inline: vec![InlinePart { name: "next".into(), json: b"\"Ready\"".to_vec() }],
            manifest: Some(Hash::of(b"manifest")),
        }
    }

    #[test]
    fn a_record_survives_its_frame() {
        let frame = seal(&record()).unwrap();
        assert_eq!(frame[0], FORMAT_VERSION);
        assert_eq!(unseal::<StoredRecord>(&frame), Ok(record()));
    }

    #[rstest]
    #[case::truncated_header(|f: &mut Vec<u8>| f.truncate(3), FrameError::Truncated)]
    #[case::flipped_payload(|f: &mut Vec<u8>| f[9] ^= 0x40, FrameError::Crc)]
    #[case::flipped_crc(|f: &mut Vec<u8>| f[2] ^= 1, FrameError::Crc)]
    #[case::cut_payload(|f: &mut Vec<u8>| { f.pop(); }, FrameError::Crc)]
    fn a_damaged_frame_is_refused(#[case] damage: fn(&mut Vec<u8>), #[case] expected: FrameError) {
        let mut frame = seal(&record()).unwrap();
        damage(&mut frame);
        assert_eq!(unseal::<StoredRecord>(&frame), Err(expected));
    }

    #[test]
    fn a_newer_format_is_named_not_guessed() {
        let mut frame = seal(&record()).unwrap();
        frame[0] = 2;
        let crc = frame_crc(2, &frame[HEADER..]);
        frame[1..HEADER].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(unseal::<StoredRecord>(&frame), Err(FrameError::UnknownVersion(2)));
    }

    #[test]
    fn a_manifest_survives_its_encoding() {
        let manifest =
            Manifest { parts: vec![("cluster/spec".into(), Hash::of(b"{}")), ("memory".into(), Hash::of(b"[]"))] };
        assert_eq!(Manifest::decode(&manifest.encode().unwrap()), Ok(manifest));
        assert!(matches!(Manifest::decode(b"\x05ab"), Err(FrameError::Undecodable(_))));
    }

    #[test]
    fn index_keys_sort_by_object_then_seq() {
        let mut keys = [index_key(2, 1), index_key(1, 300), index_key(1, 2)];
        keys.sort();
        assert_eq!(keys.map(|k| index_key_seq(&k).unwrap()), [2, 300, 1]);
    }
}
