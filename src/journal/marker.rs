//! The durability marker: a small file beside sled's, rewritten atomically at each durability point, that says
//! up to which seq the journal promised durability and where retention left the low-water mark.
//!
//! It lives outside sled because sled can silently drop what follows a damaged spot of its log: records missing
//! below the marker's seq are then reported as damage instead of looking like a journal that simply ended there.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::JournalError;

const FILE: &str = "durable";
const TEMPORARY: &str = "durable.tmp";

/// What the marker holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarkerState {
    /// Every seq up to this one was durable when the marker was written.
    pub durable: u64,
    /// Retention removed every seq below this one.
    pub low_water: u64,
}

/// What reading the marker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkerRead {
    /// No marker: the journal never reached a durability point.
    Absent,
    Valid(MarkerState),
    /// The file is there but does not check out.
    Damaged(String),
}

pub struct Marker {
    dir: PathBuf,
}

impl Marker {
    pub fn new(dir: &Path) -> Marker {
        Marker { dir: dir.to_path_buf() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn read(&self) -> Result<MarkerRead, JournalError> {
        let bytes = match fs::read(self.path()) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(MarkerRead::Absent),
            Err(source) => return Err(JournalError::Marker { path: self.path(), source }),
        };
        Ok(match parse(&bytes) {
            Some(state) => MarkerRead::Valid(state),
            None => MarkerRead::Damaged(String::from_utf8_lossy(&bytes).chars().take(80).collect()),
        })
    }

    /// Writes the marker so that a crash leaves either the old or the new one: a temporary file, fsynced, renamed
    /// over the marker, and the directory fsynced so that the rename itself is durable.
    pub fn write(&self, state: MarkerState) -> Result<(), JournalError> {
        let io = |source| JournalError::Marker { path: self.path(), source };
        let temporary = self.dir.join(TEMPORARY);
        let mut file = File::create(&temporary).map_err(io)?;
        file.write_all(render(state).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&temporary, self.path()).map_err(io)?;
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io)
    }
}

fn body(state: MarkerState) -> String {
    format!("durable={} low_water={}", state.durable, state.low_water)
}

fn render(state: MarkerState) -> String {
    let body = body(state);
    format!("{body} crc={:08x}\n", crc32fast::hash(body.as_bytes()))
}

fn parse(bytes: &[u8]) -> Option<MarkerState> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    let (body_text, crc) = text.rsplit_once(" crc=")?;
    let mut fields = body_text.split(' ');
    let durable = fields.next()?.strip_prefix("durable=")?.parse().ok()?;
    let low_water = fields.next()?.strip_prefix("low_water=")?.parse().ok()?;
    let state = MarkerState { durable, low_water };
    let expected = format!("{:08x}", crc32fast::hash(body(state).as_bytes()));
    (fields.next().is_none() && crc == expected && body(state) == body_text).then_some(state)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn a_written_marker_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Marker::new(dir.path());
        assert_eq!(marker.read().unwrap(), MarkerRead::Absent);
        marker.write(MarkerState { durable: 42, low_water: 7 }).unwrap();
        marker.write(MarkerState { durable: 43, low_water: 7 }).unwrap();
        assert_eq!(marker.read().unwrap(), MarkerRead::Valid(MarkerState { durable: 43, low_water: 7 }));
        assert_eq!(fs::read_to_string(marker.path()).unwrap(), "durable=43 low_water=7 crc=c075e13d\n");
        assert!(!dir.path().join(TEMPORARY).exists());
    }

    #[rstest]
    #[case::digit_changed("durable=44 low_water=7 crc=c075e13d\n")]
    #[case::torn("durable=43 low_wa")]
    #[case::empty("")]
    #[case::leading_zero("durable=043 low_water=7 crc=c075e13d\n")]
    fn a_damaged_marker_is_named(#[case] content: &str) {
        let dir = tempfile::tempdir().unwrap();
        let marker = Marker::new(dir.path());
        fs::write(marker.path(), content).unwrap();
        assert!(matches!(marker.read().unwrap(), MarkerRead::Damaged(_)), "{content:?}");
    }
}
