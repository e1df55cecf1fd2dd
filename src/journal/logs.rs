//! Job output: the lines a Ray job printed, as the operator tailed them from the dashboard, journaled under the
//! RayJob's object between its Inputs and Decisions, in the order they arrived.
//!
//! A log record (kind [`Kind::Logs`]) holds one part, `logs` (kept in the record: lines never repeat), the JSON of
//! [`JobLogs`]. Its lines are redacted before they are written ([`redact::redact_log_line`]). No machine reads them:
//! replay, `why` and the divergence checks step over them; retention removes them with their object's records.
//!
//! Each record says where its lines start in the job's whole output (`firstLine`), so that a tail started again —
//! after a restart, or a broken connection, when the dashboard sends the whole backlog again — knows how many lines
//! the journal already holds ([`Journal::logged_output`]) even when retention removed earlier records. The record
//! written when the dashboard closed the tail says so (`complete`): the job's output is all in the journal, and
//! nothing needs to fetch it again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

use super::record::{StoredRecord, index_key, index_key_seq, seq_key, unseal};
use super::store::{Store, TreeId};
use super::{Journal, JournalError, Kind, redact};
use crate::machine::{ObjectRef, Part};

/// The name of a log record's part.
pub const LOGS_PART: &str = "logs";

/// Lines of one Ray job's output that arrived together.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobLogs {
    /// The Ray job (`status.jobId`) that printed them: a RayJob that retries runs several.
    pub job_id: String,
    /// Where the first of `lines` is in the job's whole output, from 0.
    pub first_line: u64,
    /// The lines, without their line ends.
    pub lines: Vec<String>,
    /// When they arrived.
    pub time: Time,
    /// The dashboard closed the tail after these lines: the job has ended, and its output is all journaled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub complete: bool,
}

/// What the journal holds of one job's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoggedOutput {
    /// How many of its lines, from the first.
    pub lines: u64,
    /// Whether they are all of them ([`JobLogs::complete`]).
    pub complete: bool,
}

impl JobLogs {
    /// How many lines of the job's output this record and the ones before it cover.
    pub fn end(&self) -> u64 {
        self.first_line + self.lines.len() as u64
    }

    fn from_part(json: &[u8]) -> Result<JobLogs, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

impl<S: Store> Journal<S> {
    /// Journals lines of a job's output under `object`, redacted; returns the record's seq.
    pub fn append_logs(&mut self, object: &ObjectRef, logs: &JobLogs) -> Result<u64, JournalError> {
        let lines = logs.lines.iter().map(|line| redact::redact_log_line(line).into_owned()).collect();
        let redacted = JobLogs { lines, ..logs.clone() };
        let part = Part { name: LOGS_PART.to_string(), json: serde_json::to_vec(&redacted)? };
        self.append(Kind::Logs, Some(object), &[part])
    }

    /// What the journal holds of job `job_id`'s output under `object` (appended records included, durable or not):
    /// the end of the furthest of its log records, and whether one of them completed it. Records that do not decode
    /// count for nothing (a scan reports them).
    pub fn logged_output(&self, object: &ObjectRef, job_id: &str) -> Result<LoggedOutput, JournalError> {
        let mut logged = LoggedOutput::default();
        let Some(&id) = self.object_ids.get(object) else { return Ok(logged) };
        for item in self.store.range(TreeId::Index, &index_key(id, self.low_water), Some(&index_key(id, u64::MAX))) {
            let (key, _) = item?;
            let Some(seq) = index_key_seq(key.as_ref()) else { continue };
            let Some(frame) = self.store.get(TreeId::Records, &seq_key(seq))? else { continue };
            let Ok(record) = unseal::<StoredRecord>(frame.as_ref()) else { continue };
            if record.kind != Kind::Logs || record.seq != seq {
                continue;
            }
            let part = record.inline.iter().find(|part| part.name == LOGS_PART);
            if let Some(logs) = part.and_then(|part| JobLogs::from_part(&part.json).ok())
                && logs.job_id == job_id
            {
                logged.lines = logged.lines.max(logs.end());
                logged.complete |= logs.complete;
            }
        }
        Ok(logged)
    }
}

impl super::Entry {
    /// The lines of a log record.
    pub fn logs(&self) -> Result<JobLogs, JournalError> {
        if self.kind != Kind::Logs {
            return Err(JournalError::WrongKind { seq: self.seq, found: self.kind.name(), wanted: Kind::Logs.name() });
        }
        let part = self.parts.iter().find(|part| part.name == LOGS_PART);
        let part = part.ok_or_else(|| crate::machine::PartsError::Missing(LOGS_PART.to_string()))?;
        Ok(JobLogs::from_part(&part.json)?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{open, scan_all, seqs, split, write};
    use super::super::{Damage, DamageKind, Retention, Scanned};
    use super::*;
    use crate::machine::Observation;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    fn logs(job_id: &str, first_line: u64, lines: &[&str]) -> JobLogs {
        JobLogs {
            job_id: job_id.into(),
            first_line,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            time: at(10),
            complete: false,
        }
    }

    #[test]
    fn log_records_come_back_redacted_in_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = open(dir.path());
        let written = write(&mut journal, 1, 1);
        let object = written[0].input.object.clone();
        let seq = journal.append_logs(&object, &logs("job-1", 0, &["start", "HF_TOKEN=s3cret", ""])).unwrap();
        write(&mut journal, 1, 1);
        journal.commit().unwrap();
        drop(journal);

        let journal = open(dir.path());
        let (entries, damage) = scan_all(&journal);
        assert_eq!((seqs(&entries), damage), (vec![1, 2, 3, 4, 5], vec![]));
        let entry = journal.entry(seq).unwrap();
        assert_eq!((entry.kind, entry.object.as_ref()), (Kind::Logs, Some(&object)));
        assert_eq!(entry.logs().unwrap(), logs("job-1", 0, &["start", "HF_TOKEN=<redacted>", ""]));
        let (mine, _) = split(journal.scan_object(&object));
        assert_eq!(seqs(&mine), [1, 2, 3, 4, 5], "the lines belong to the object");
        assert_eq!(entry.decision().unwrap_err().to_string(), "seq 3 is a logs record, not a decision");
        assert_eq!(journal.entry(1).unwrap().logs().unwrap_err().to_string(), "seq 1 is a input record, not a logs");
        let stored = std::fs::read_dir(dir.path().join("sled")).unwrap().map(|f| std::fs::read(f.unwrap().path()));
        for bytes in stored.filter_map(Result::ok) {
            assert!(!bytes.windows(6).any(|w| w == b"s3cret"), "the secret reached the disk");
        }
    }

    #[test]
    fn the_journal_knows_how_many_lines_of_each_job_it_holds() {
        let mut journal = Journal::in_memory().unwrap();
        let written = write(&mut journal, 2, 1);
        let (first, second) = (&written[0].input.object, &written[1].input.object);
        assert_eq!(journal.logged_output(first, "job-1").unwrap().lines, 0);
        journal.append_logs(first, &logs("job-1", 0, &["a", "b"])).unwrap();
        journal.append_logs(first, &logs("job-1", 2, &["c"])).unwrap();
        journal.append_logs(first, &logs("job-2", 0, &["x"])).unwrap();
        journal.append_logs(second, &logs("job-1", 0, &["y", "z", "w", "v"])).unwrap();
        assert_eq!(journal.logged_output(first, "job-1").unwrap().lines, 3, "before the commit too");
        assert_eq!(journal.logged_output(first, "job-2").unwrap().lines, 1);
        assert_eq!(journal.logged_output(second, "job-1").unwrap().lines, 4);
        assert_eq!(journal.logged_output(second, "job-3").unwrap().lines, 0);
    }

    #[test]
    fn retention_removes_log_records_with_their_object() {
        let mut journal = Journal::in_memory().unwrap();
        let written = write(&mut journal, 2, 1);
        let (gone, kept) = (written[0].input.clone(), &written[1].input.object);
        journal.append_logs(&gone.object, &logs("job-1", 0, &["a"])).unwrap();
        journal.append_logs(kept, &logs("job-1", 0, &["b"])).unwrap();
        let mut deleted = gone.clone();
        deleted.now = at(100);
        deleted.observation = Observation::RayCluster(Default::default());
        journal.append_input(&deleted, &Default::default()).unwrap();
        let policy = Retention { gone_ttl: Duration::from_secs(60), max_bytes: None };
        let report = journal.retain(&policy, jiff::Timestamp::from_second(200).unwrap()).unwrap();
        assert_eq!((report.objects, report.records), (1, 4), "input, decision, logs and the gone input");
        let (entries, damage) = scan_all(&journal);
        assert_eq!((seqs(&entries), damage), (vec![3, 4, 6], vec![]), "nothing removed is reported missing");
        assert_eq!(journal.logged_output(&gone.object, "job-1").unwrap().lines, 0);
        assert_eq!(journal.logged_output(kept, "job-1").unwrap().lines, 1);
    }

    #[rstest::rstest]
    #[case::flipped_byte(|frame: &mut Vec<u8>| frame[12] ^= 0x08, DamageKind::Corrupt("crc mismatch".into()))]
    #[case::cut(|frame: &mut Vec<u8>| frame.truncate(4), DamageKind::Corrupt("truncated".into()))]
    fn a_damaged_log_record_is_damage_at_its_seq(#[case] damage: fn(&mut Vec<u8>), #[case] kind: DamageKind) {
        let mut journal = Journal::in_memory().unwrap();
        let written = write(&mut journal, 1, 2);
        let object = written[0].input.object.clone();
        journal.append_logs(&object, &logs("job-1", 0, &["a", "b"])).unwrap();
        journal.commit().unwrap();
        let mut frame = journal.store.get(TreeId::Records, &seq_key(5)).unwrap().unwrap().to_vec();
        damage(&mut frame);
        journal.store.insert(TreeId::Records, &seq_key(5), &frame).unwrap();
        let (entries, found) = scan_all(&journal);
        assert_eq!((seqs(&entries), found.clone()), (vec![1, 2, 3, 4], vec![Damage { seq: 5, kind: kind.clone() }]));
        assert_eq!(journal.read(5).unwrap(), Scanned::Damage(Damage { seq: 5, kind }));
        assert_eq!(journal.logged_output(&object, "job-1").unwrap().lines, 0, "damaged lines count for nothing");
    }

    #[test]
    fn a_log_record_whose_part_does_not_decode_is_an_error_not_a_panic() {
        let mut journal = Journal::in_memory().unwrap();
        let written = write(&mut journal, 1, 1);
        let object = &written[0].input.object;
        let part = Part { name: LOGS_PART.into(), json: br#"{"jobId": 3}"#.to_vec() };
        let seq = journal.append(Kind::Logs, Some(object), &[part]).unwrap();
        assert!(matches!(journal.entry(seq).unwrap().logs(), Err(JournalError::Json(_))));
        assert_eq!(journal.logged_output(object, "3").unwrap().lines, 0);
    }
}
