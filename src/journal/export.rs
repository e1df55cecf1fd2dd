//! Export to a stream and import from one.
//!
//! - `jsonl`: one JSON object per line and record — `seq`, `kind`, `input` (for a decision), `object`, and `parts`
//!   with every part's JSON inlined, byte for byte — for people and for `jq`.
//! - `bin`: `KRJB` and a format byte, then length-prefixed sealed frames (crc32 each): an object once, a blob once
//!   (before the first record that refers to it), then records that refer to blobs by hash. Compact, and checked.
//!
//! Import detects the format, re-checks everything (blob hashes, frame crcs), redacts again (a file may come from
//! anywhere; a job's output lines as lines), and appends: records get new seqs, decisions are pointed at their
//! inputs' new seqs. Job output (`logs` records) is carried both ways like any record.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::blob::Hash;
use super::read::{Entry, Scanned};
use super::record::{VOLATILE_PARTS, seal, unseal};
use super::store::Store;
use super::{Damage, Journal, JournalError, Kind};
use crate::machine::{ObjectRef, Part};

const BIN_MAGIC: &[u8; 5] = b"KRJB\x01";

/// The largest frame an import accepts: no part comes near it, and a damaged length must not allocate gigabytes.
const MAX_FRAME: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Bin,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "bin" => Ok(ExportFormat::Bin),
            other => Err(format!("unknown export format {other:?}: expected jsonl or bin")),
        }
    }
}

/// What an export wrote, and the damage it stepped over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub records: u64,
    pub damage: Vec<Damage>,
}

/// What an import appended, and what it had to leave out (by the seq the record had in the file, and why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub format: Option<ExportFormat>,
    pub records: u64,
    pub skipped: Vec<(u64, String)>,
}

#[derive(Serialize, Deserialize)]
struct JsonRecord {
    seq: u64,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<u64>,
    object: Option<ObjectRef>,
    parts: std::collections::BTreeMap<String, Box<RawValue>>,
}

#[derive(Serialize, Deserialize)]
enum BinItem {
    Object {
        id: u64,
        object: ObjectRef,
    },
    Blob {
        hash: Hash,
        bytes: Vec<u8>,
    },
    /// A record's parts: the volatile ones inline, the others by the hash of a blob sent before.
    Record {
        seq: u64,
        object: Option<u64>,
        kind: Kind,
        parts: Vec<(String, BinValue)>,
    },
}

#[derive(Serialize, Deserialize)]
enum BinValue {
    Inline(Vec<u8>),
    Blob(Hash),
}

/// Writes the bin form, each object and blob once.
struct BinWriter<'w, W: Write> {
    out: &'w mut W,
    objects: HashMap<ObjectRef, u64>,
    blobs: HashSet<Hash>,
}

impl<W: Write> BinWriter<'_, W> {
    fn item(&mut self, item: &BinItem) -> Result<(), JournalError> {
        let frame = seal(item)?;
        let length = u32::try_from(frame.len()).map_err(|_| JournalError::Export {
            seq: 0,
            message: format!("a frame of {} bytes does not fit the bin format", frame.len()),
        })?;
        self.out.write_all(&length.to_le_bytes())?;
        Ok(self.out.write_all(&frame)?)
    }

    fn record(&mut self, entry: Entry) -> Result<(), JournalError> {
        let object = match entry.object {
            Some(object) => Some(match self.objects.get(&object) {
                Some(&id) => id,
                None => {
                    let id = self.objects.len() as u64 + 1;
                    self.item(&BinItem::Object { id, object: object.clone() })?;
                    self.objects.insert(object, id);
                    id
                }
            }),
            None => None,
        };
        let mut parts = Vec::with_capacity(entry.parts.len());
        for part in entry.parts {
            let value = if VOLATILE_PARTS.contains(&part.name.as_str()) {
                BinValue::Inline(part.json)
            } else {
                let hash = Hash::of(&part.json);
                if self.blobs.insert(hash) {
                    self.item(&BinItem::Blob { hash, bytes: part.json })?;
                }
                BinValue::Blob(hash)
            };
            parts.push((part.name, value));
        }
        self.item(&BinItem::Record { seq: entry.seq, object, kind: entry.kind, parts })
    }
}

enum Sink<'w, W: Write> {
    Jsonl(&'w mut W),
    Bin(BinWriter<'w, W>),
}

impl<W: Write> Sink<'_, W> {
    fn record(&mut self, entry: Entry) -> Result<(), JournalError> {
        match self {
            Sink::Jsonl(out) => {
                let mut line = serde_json::to_vec(&json_record(entry)?)?;
                line.push(b'\n');
                Ok(out.write_all(&line)?)
            }
            Sink::Bin(bin) => bin.record(entry),
        }
    }
}

fn json_record(entry: Entry) -> Result<JsonRecord, JournalError> {
    let parts = entry
        .parts
        .into_iter()
        .map(|part| {
            let text = String::from_utf8(part.json).map_err(|error| JournalError::Export {
                seq: entry.seq,
                message: format!("part {} is not UTF-8: {error}", part.name),
            })?;
            Ok((part.name, RawValue::from_string(text)?))
        })
        .collect::<Result<_, JournalError>>()?;
    let input = match entry.kind {
        Kind::Decision { input } => Some(input),
        _ => None,
    };
    Ok(JsonRecord { seq: entry.seq, kind: entry.kind.name().to_string(), input, object: entry.object, parts })
}

impl<S: Store> Journal<S> {
    /// Writes every record (or one object's, with the session headers) to `out`, stepping over damage.
    pub fn export<W: Write>(
        &self,
        out: &mut W,
        format: ExportFormat,
        object: Option<&ObjectRef>,
    ) -> Result<ExportReport, JournalError> {
        let mut report = ExportReport::default();
        let scanned: Box<dyn Iterator<Item = Result<Scanned, JournalError>> + '_> = match object {
            None => Box::new(self.scan()),
            Some(object) => Box::new(merge_by_seq(self.sessions(), self.scan_object(object))),
        };
        let mut sink = match format {
            ExportFormat::Bin => {
                out.write_all(BIN_MAGIC)?;
                Sink::Bin(BinWriter { out, objects: HashMap::new(), blobs: HashSet::new() })
            }
            ExportFormat::Jsonl => Sink::Jsonl(out),
        };
        for item in scanned {
            match item? {
                Scanned::Record(entry) => {
                    report.records += 1;
                    sink.record(entry)?;
                }
                Scanned::Damage(damage) => report.damage.push(damage),
            }
        }
        Ok(report)
    }

    /// Appends the records of an export (either format, detected) and commits them.
    pub fn import<R: BufRead>(&mut self, input: &mut R) -> Result<ImportReport, JournalError> {
        let head = input.fill_buf()?;
        let mut report = ImportReport::default();
        if head.starts_with(BIN_MAGIC) {
            input.consume(BIN_MAGIC.len());
            report.format = Some(ExportFormat::Bin);
            self.import_bin(input, &mut report)?;
        } else if head.iter().find(|b| !b.is_ascii_whitespace()).is_none_or(|&b| b == b'{') {
            report.format = Some(ExportFormat::Jsonl);
            self.import_jsonl(input, &mut report)?;
        } else {
            return Err(JournalError::Import { item: 0, message: "neither a jsonl nor a bin export".to_string() });
        }
        self.commit()?;
        Ok(report)
    }

    fn import_jsonl<R: BufRead>(&mut self, input: &mut R, report: &mut ImportReport) -> Result<(), JournalError> {
        let mut seqs = HashMap::new();
        for (number, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let item = number as u64 + 1;
            let record: JsonRecord = serde_json::from_str(&line)
                .map_err(|error| JournalError::Import { item, message: format!("line {item}: {error}") })?;
            let kind = match (record.kind.as_str(), record.input) {
                ("session", None) => Kind::Session,
                ("input", None) => Kind::Input,
                ("decision", Some(input)) => Kind::Decision { input },
                ("logs", None) => Kind::Logs,
                (kind, _) => {
                    return Err(JournalError::Import { item, message: format!("line {item}: unknown kind {kind:?}") });
                }
            };
            let parts = record
                .parts
                .into_iter()
                .map(|(name, json)| Part { name, json: json.get().as_bytes().to_vec() })
                .collect::<Vec<_>>();
            self.import_record(&mut seqs, report, record.seq, kind, record.object.as_ref(), &parts)?;
        }
        Ok(())
    }

    fn import_bin<R: BufRead>(&mut self, input: &mut R, report: &mut ImportReport) -> Result<(), JournalError> {
        let (mut objects, mut blobs, mut seqs) = (HashMap::new(), HashMap::new(), HashMap::new());
        let mut item = 0;
        while !input.fill_buf()?.is_empty() {
            item += 1;
            let failure = |message: String| JournalError::Import { item, message };
            let mut length = [0; 4];
            input.read_exact(&mut length)?;
            let length = u32::from_le_bytes(length) as usize;
            if length > MAX_FRAME {
                return Err(failure(format!("a frame of {length} bytes")));
            }
            let mut frame = vec![0; length];
            input.read_exact(&mut frame)?;
            match unseal::<BinItem>(&frame).map_err(|error| failure(format!("{error:?}")))? {
                BinItem::Object { id, object } => {
                    objects.insert(id, object);
                }
                BinItem::Blob { hash, bytes } => {
                    if !hash.verifies(&bytes) {
                        return Err(failure(format!("blob {hash} does not match its hash")));
                    }
                    blobs.insert(hash, bytes);
                }
                BinItem::Record { seq, object, kind, parts } => {
                    let object = match object {
                        Some(id) => Some(objects.get(&id).ok_or_else(|| failure(format!("unknown object {id}")))?),
                        None => None,
                    };
                    let parts = parts
                        .into_iter()
                        .map(|(name, value)| match value {
                            BinValue::Inline(json) => Ok(Part { name, json }),
                            BinValue::Blob(hash) => blobs
                                .get(&hash)
                                .map(|json| Part { name, json: json.clone() })
                                .ok_or_else(|| failure(format!("blob {hash} comes before its content"))),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let object = object.cloned();
                    self.import_record(&mut seqs, report, seq, kind, object.as_ref(), &parts)?;
                }
            }
        }
        Ok(())
    }

    /// Appends one imported record, its decision pointed at the new seq of its input.
    fn import_record(
        &mut self,
        seqs: &mut HashMap<u64, u64>,
        report: &mut ImportReport,
        old_seq: u64,
        kind: Kind,
        object: Option<&ObjectRef>,
        parts: &[Part],
    ) -> Result<(), JournalError> {
        let kind = match kind {
            Kind::Decision { input } => match seqs.get(&input) {
                Some(&input) => Kind::Decision { input },
                None => return skip(report, old_seq, format!("answers seq {input}, which the file does not hold")),
            },
            other => other,
        };
        let seq = match (kind, object) {
            (Kind::Logs, Some(object)) => {
                let logs = parts.iter().find(|part| part.name == super::LOGS_PART).map(|part| {
                    serde_json::from_slice::<super::JobLogs>(&part.json).map_err(|error| error.to_string())
                });
                match logs {
                    Some(Ok(logs)) => self.append_logs(object, &logs)?,
                    Some(Err(why)) => return skip(report, old_seq, format!("job output that does not decode: {why}")),
                    None => return skip(report, old_seq, "job output without its lines".to_string()),
                }
            }
            (Kind::Logs, None) => return skip(report, old_seq, "job output that belongs to no object".to_string()),
            _ => self.append(kind, object, parts)?,
        };
        seqs.insert(old_seq, seq);
        report.records += 1;
        Ok(())
    }
}

/// Leaves a record of the file out, saying why.
fn skip(report: &mut ImportReport, old_seq: u64, why: String) -> Result<(), JournalError> {
    report.skipped.push((old_seq, why));
    Ok(())
}

/// Two scans in one seq order (each is in seq order already).
fn merge_by_seq<'a>(
    a: impl Iterator<Item = Result<Scanned, JournalError>> + 'a,
    b: impl Iterator<Item = Result<Scanned, JournalError>> + 'a,
) -> impl Iterator<Item = Result<Scanned, JournalError>> + 'a {
    let seq = |item: &Result<Scanned, JournalError>| match item {
        Ok(Scanned::Record(entry)) => entry.seq,
        Ok(Scanned::Damage(damage)) => damage.seq,
        Err(_) => 0,
    };
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if seq(x) <= seq(y) => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rstest::rstest;

    use super::super::record::seq_key;
    use super::super::store::TreeId;
    use super::super::testing::{scan_all, write};
    use super::super::{DamageKind, MemStore, Session};
    use super::*;

    fn source() -> Journal<MemStore> {
        let mut journal = Journal::in_memory().unwrap();
        let session = Session {
            operator: "0.1.0".into(),
            started: Time(jiff::Timestamp::UNIX_EPOCH),
            config: serde_json::json!({"clusterDomain": "cluster.local"}),
        };
        journal.append_session(&session).unwrap();
        write(&mut journal, 2, 6);
        journal.commit().unwrap();
        journal
    }

    fn export(
        journal: &Journal<MemStore>,
        format: ExportFormat,
        object: Option<&ObjectRef>,
    ) -> (Vec<u8>, ExportReport) {
        let mut out = Vec::new();
        let report = journal.export(&mut out, format, object).unwrap();
        (out, report)
    }

    #[rstest]
    #[case::jsonl(ExportFormat::Jsonl)]
    #[case::bin(ExportFormat::Bin)]
    fn an_export_imports_into_the_same_records(#[case] format: ExportFormat) {
        let journal = source();
        let (bytes, report) = export(&journal, format, None);
        assert_eq!(report, ExportReport { records: 25, damage: vec![] });
        let mut copy = Journal::in_memory().unwrap();
        let imported = copy.import(&mut bytes.as_slice()).unwrap();
        assert_eq!(imported, ImportReport { format: Some(format), records: 25, skipped: vec![] });
        assert_eq!(scan_all(&copy), scan_all(&journal));
        assert_eq!(copy.durable(), 25);
    }

    #[test]
    fn jsonl_is_one_readable_line_per_record_and_bin_is_smaller() {
        let journal = source();
        let (jsonl, _) = export(&journal, ExportFormat::Jsonl, None);
        let text = String::from_utf8(jsonl.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 25);
        assert_eq!(
            lines[0],
            r#"{"seq":1,"kind":"session","object":null,"parts":{"session":{"operator":"0.1.0","started":"1970-01-01T00:00:00Z","config":{"clusterDomain":"cluster.local"}}}}"#
        );
        assert!(lines[2].starts_with(r#"{"seq":3,"kind":"decision","input":2,"object":{"kind":"RayCluster","namespace":"team-0","name":"raycluster-0","#), "{}", lines[2]);
        let (bin, _) = export(&journal, ExportFormat::Bin, None);
        assert!(bin.len() * 3 < jsonl.len() * 2, "bin {} vs jsonl {}", bin.len(), jsonl.len());
    }

    #[rstest]
    #[case::jsonl(ExportFormat::Jsonl)]
    #[case::bin(ExportFormat::Bin)]
    fn one_object_exports_with_the_sessions_and_imports_renumbered(#[case] format: ExportFormat) {
        let journal = source();
        let object = journal.objects().unwrap()[1].object.clone();
        let (bytes, report) = export(&journal, format, Some(&object));
        assert_eq!(report.records, 13);
        let mut copy = Journal::in_memory().unwrap();
        copy.import(&mut bytes.as_slice()).unwrap();
        let (entries, damage) = scan_all(&copy);
        assert_eq!(damage, []);
        assert_eq!(entries[0].kind, Kind::Session);
        assert_eq!(entries[2].kind, Kind::Decision { input: 2 }, "was seq 5 answering seq 4");
        assert_eq!(entries[1].input().unwrap(), journal.entry(4).unwrap().input().unwrap());
    }

    #[rstest]
    #[case::jsonl(ExportFormat::Jsonl)]
    #[case::bin(ExportFormat::Bin)]
    fn job_output_is_carried_and_its_lines_redacted_again(#[case] format: ExportFormat) {
        let mut journal = source();
        let object = journal.objects().unwrap()[0].object.clone();
        let lines = |lines: &[&str]| lines.iter().map(|line| line.to_string()).collect();
        let logs = super::super::JobLogs {
            job_id: "job-1".into(),
            first_line: 4,
            lines: lines(&["step 1", "REDIS_PASSWORD=s3"]),
            time: Time(jiff::Timestamp::UNIX_EPOCH),
            complete: true,
        };
        // Written around the journal's own redaction, as a file from elsewhere may hold it.
        let part = Part { name: super::super::LOGS_PART.into(), json: serde_json::to_vec(&logs).unwrap() };
        let seq = journal.append(Kind::Logs, Some(&object), &[part]).unwrap();
        journal.commit().unwrap();
        let (bytes, report) = export(&journal, format, Some(&object));
        assert_eq!(report.records, 14);
        let mut copy = Journal::in_memory().unwrap();
        assert_eq!(copy.import(&mut bytes.as_slice()).unwrap().records, 14);
        let (entries, damage) = scan_all(&copy);
        assert_eq!(damage, []);
        let last = entries.last().unwrap();
        assert_eq!((last.kind, last.object.as_ref()), (Kind::Logs, Some(&object)));
        let expected = super::super::JobLogs { lines: lines(&["step 1", "REDIS_PASSWORD=<redacted>"]), ..logs };
        assert_eq!(last.logs().unwrap(), expected);
        assert_eq!(
            copy.logged_output(&object, "job-1").unwrap(),
            crate::journal::LoggedOutput { lines: 6, complete: true }
        );
        assert_eq!(journal.entry(seq).unwrap().kind, Kind::Logs);
    }

    #[test]
    fn an_export_steps_over_damage_and_an_import_over_orphans() {
        let journal = source();
        journal.store.remove(TreeId::Records, &seq_key(2)).unwrap();
        let (bytes, report) = export(&journal, ExportFormat::Jsonl, None);
        assert_eq!(report.damage, [super::super::Damage { seq: 2, kind: DamageKind::Missing { last: 2 } }]);
        let mut copy = Journal::in_memory().unwrap();
        let imported = copy.import(&mut bytes.as_slice()).unwrap();
        assert_eq!(imported.records, 23);
        assert_eq!(imported.skipped, [(3, "answers seq 2, which the file does not hold".to_string())]);
    }

    #[rstest]
    #[case::not_an_export(b"PK\x03\x04zip".to_vec(), "import, item 0: neither a jsonl nor a bin export")]
    #[case::bad_line(b"{\"seq\":1}\n".to_vec(), "import, item 1: line 1: missing field `kind` at line 1 column 9")]
    #[case::flipped_frame({
        let (mut bytes, _) = export(&source(), ExportFormat::Bin, None);
        bytes[40] ^= 1;
        bytes
    }, "import, item 1: Crc")]
    #[case::truncated_frame({
        let (mut bytes, _) = export(&source(), ExportFormat::Bin, None);
        bytes.truncate(30);
        bytes
    }, "failed to fill whole buffer")]
    fn a_bad_file_is_refused(#[case] bytes: Vec<u8>, #[case] message: &str) {
        let mut copy = Journal::in_memory().unwrap();
        assert_eq!(copy.import(&mut bytes.as_slice()).unwrap_err().to_string(), message);
    }
}
