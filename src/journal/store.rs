//! The handful of operations the journal needs from a key-value store: a fixed set of ordered trees with insert,
//! get, remove, range scans and one durability point. [`SledStore`] keeps a journal on disk; [`MemStore`] holds one
//! in memory (tests, and replaying an export file without writing it anywhere).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::JournalError;

/// The trees of a journal. Keys of `Records`, `Objects` and `Retired` are big-endian sequence numbers, so that key
/// order is sequence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TreeId {
    /// seq → sealed record.
    Records,
    /// content hash → part bytes.
    Blobs,
    /// object id ++ seq → nothing: the per-object index.
    Index,
    /// object id → sealed object entry.
    Objects,
    /// name → sealed value (the low-water mark).
    Meta,
    /// first seq → sealed last seq: ranges that retention removed above the low-water mark.
    Retired,
}

impl TreeId {
    pub const ALL: [TreeId; 6] =
        [TreeId::Records, TreeId::Blobs, TreeId::Index, TreeId::Objects, TreeId::Meta, TreeId::Retired];

    fn name(self) -> &'static str {
        match self {
            TreeId::Records => "records",
            TreeId::Blobs => "blobs",
            TreeId::Index => "index",
            TreeId::Objects => "objects",
            TreeId::Meta => "meta",
            TreeId::Retired => "retired",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

pub type KeyValue<B> = (B, B);

/// An ordered key-value store with named trees and an explicit durability point.
pub trait Store {
    /// The store's byte buffer, handed out without a copy where the store allows it.
    type Bytes: AsRef<[u8]> + Clone;
    /// A scan over `[from, to)` of one tree, in key order.
    type Range: Iterator<Item = Result<KeyValue<Self::Bytes>, JournalError>>;

    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Self::Bytes>, JournalError>;
    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), JournalError>;
    fn remove(&self, tree: TreeId, key: &[u8]) -> Result<(), JournalError>;
    /// Keys from `from` (inclusive) to `to` (exclusive; `None`: to the end).
    fn range(&self, tree: TreeId, from: &[u8], to: Option<&[u8]>) -> Self::Range;
    fn last(&self, tree: TreeId) -> Result<Option<KeyValue<Self::Bytes>>, JournalError>;
    /// Makes everything written so far durable: when this returns, a crash loses none of it.
    fn flush(&self) -> Result<(), JournalError>;
    /// What the store occupies: its files on disk, or its keys and values in memory.
    fn bytes_on_disk(&self) -> Result<u64, JournalError>;
}

fn upper(to: Option<&[u8]>) -> Bound<Vec<u8>> {
    to.map_or(Bound::Unbounded, |to| Bound::Excluded(to.to_vec()))
}

/// Sled 0.34 may panic on a damaged file (a corrupt length, an impossible page); the journal reports that as an
/// error instead, so that damage never takes the operator or a replay down.
fn guarded<T>(operation: impl FnOnce() -> Result<T, sled::Error>) -> Result<T, JournalError> {
    match catch_unwind(AssertUnwindSafe(operation)) {
        Ok(result) => result.map_err(JournalError::from),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(JournalError::StorePanicked(message))
        }
    }
}

/// Options of the sled store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page cache, in bytes (its memory bound).
    pub cache_bytes: u64,
    /// The zstd level sled compresses its log with, or None for none. sled stores every small entry with some
    /// hundred bytes of node and log overhead and rewrites nodes as they fill; compression takes that (and the JSON
    /// of the parts) down by about half, at a cost in CPU that `make bench` shows next to uncompressed sled's.
    pub compression: Option<i32>,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions { cache_bytes: 1 << 30, compression: Some(3) }
    }
}

impl SledOptions {
    /// The sled configuration for a database at `path` (the benchmark's raw baseline uses it too).
    pub fn config(&self, path: &Path) -> sled::Config {
        // Only `commit` decides when data becomes durable: sled's periodic background flush would add fsyncs that
        // promise nothing to anyone.
        let config = sled::Config::new().path(path).cache_capacity(self.cache_bytes).flush_every_ms(None);
        match self.compression {
            Some(level) => config.use_compression(true).compression_factor(level),
            None => config,
        }
    }
}

/// The journal on disk: one sled database with a tree per [`TreeId`].
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    path: PathBuf,
}

impl SledStore {
    pub fn open(path: &Path, options: &SledOptions) -> Result<SledStore, JournalError> {
        let config = options.config(path);
        let db = open_when_unlocked(&config)?;
        let trees = TreeId::ALL.iter().map(|tree| guarded(|| db.open_tree(tree.name()))).collect::<Result<_, _>>()?;
        Ok(SledStore { db, trees, path: path.to_path_buf() })
    }

    fn tree(&self, tree: TreeId) -> &sled::Tree {
        &self.trees[tree.slot()]
    }
}

/// Opens sled, waiting a little for its file lock: a `Db` dropped in this process releases the lock only once
/// sled's background writers let go of it, shortly after the drop.
fn open_when_unlocked(config: &sled::Config) -> Result<sled::Db, JournalError> {
    let mut attempts = 0;
    loop {
        match guarded(|| config.open()) {
            Err(JournalError::Sled(sled::Error::Io(error)))
                if attempts < 100 && error.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// A sled range whose every step is guarded against sled's panics.
pub struct SledRange(sled::Iter);

impl Iterator for SledRange {
    type Item = Result<KeyValue<sled::IVec>, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        match catch_unwind(AssertUnwindSafe(|| self.0.next())) {
            Ok(item) => item.map(|result| result.map_err(JournalError::from)),
            Err(_) => Some(Err(JournalError::StorePanicked("sled panicked while iterating".to_string()))),
        }
    }
}

impl Store for SledStore {
    type Bytes = sled::IVec;
    type Range = SledRange;

    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<sled::IVec>, JournalError> {
        guarded(|| self.tree(tree).get(key))
    }

    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), JournalError> {
        guarded(|| self.tree(tree).insert(key, value).map(drop))
    }

    fn remove(&self, tree: TreeId, key: &[u8]) -> Result<(), JournalError> {
        guarded(|| self.tree(tree).remove(key).map(drop))
    }

    fn range(&self, tree: TreeId, from: &[u8], to: Option<&[u8]>) -> SledRange {
        let bounds = (Bound::Included(from.to_vec()), upper(to));
        SledRange(self.tree(tree).range::<Vec<u8>, _>(bounds))
    }

    fn last(&self, tree: TreeId) -> Result<Option<KeyValue<sled::IVec>>, JournalError> {
        guarded(|| self.tree(tree).last())
    }

    fn flush(&self) -> Result<(), JournalError> {
        guarded(|| self.db.flush().map(drop))
    }

    fn bytes_on_disk(&self) -> Result<u64, JournalError> {
        Ok(directory_bytes(&self.path)?)
    }
}

/// The size of every file under `path`: sled's `size_on_disk` leaves out its snapshots and configuration.
pub(crate) fn directory_bytes(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() { directory_bytes(&entry.path())? } else { metadata.len() };
    }
    Ok(total)
}

type MemTree = BTreeMap<Vec<u8>, Arc<[u8]>>;

/// A journal held in memory. Its flush is a no-op: nothing it holds survives the process.
#[derive(Default)]
pub struct MemStore {
    trees: RwLock<[MemTree; TreeId::ALL.len()]>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn read<T>(&self, tree: TreeId, f: impl FnOnce(&MemTree) -> T) -> T {
        let trees = self.trees.read().unwrap_or_else(PoisonError::into_inner);
        f(&trees[tree.slot()])
    }

    fn write<T>(&self, tree: TreeId, f: impl FnOnce(&mut MemTree) -> T) -> T {
        let mut trees = self.trees.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut trees[tree.slot()])
    }
}

impl Store for MemStore {
    type Bytes = Arc<[u8]>;
    type Range = std::vec::IntoIter<Result<KeyValue<Arc<[u8]>>, JournalError>>;

    fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Arc<[u8]>>, JournalError> {
        Ok(self.read(tree, |t| t.get(key).cloned()))
    }

    fn insert(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), JournalError> {
        self.write(tree, |t| t.insert(key.to_vec(), value.into()));
        Ok(())
    }

    fn remove(&self, tree: TreeId, key: &[u8]) -> Result<(), JournalError> {
        self.write(tree, |t| t.remove(key));
        Ok(())
    }

    /// A snapshot of the range: a scan sees the tree as it was when it started.
    fn range(&self, tree: TreeId, from: &[u8], to: Option<&[u8]>) -> Self::Range {
        let bounds = (Bound::Included(from.to_vec()), upper(to));
        self.read(tree, |t| {
            t.range::<Vec<u8>, _>(bounds).map(|(k, v)| Ok((Arc::from(k.as_slice()), v.clone()))).collect::<Vec<_>>()
        })
        .into_iter()
    }

    fn last(&self, tree: TreeId) -> Result<Option<KeyValue<Arc<[u8]>>>, JournalError> {
        Ok(self.read(tree, |t| t.last_key_value().map(|(k, v)| (Arc::from(k.as_slice()), v.clone()))))
    }

    fn flush(&self) -> Result<(), JournalError> {
        Ok(())
    }

    fn bytes_on_disk(&self) -> Result<u64, JournalError> {
        let trees = self.trees.read().unwrap_or_else(PoisonError::into_inner);
        Ok(trees.iter().flat_map(|t| t.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn keys<S: Store>(store: &S, tree: TreeId, from: &[u8], to: Option<&[u8]>) -> Vec<Vec<u8>> {
        store.range(tree, from, to).map(|kv| kv.unwrap().0.as_ref().to_vec()).collect()
    }

    fn exercise<S: Store>(store: &S) {
        for key in [3u8, 1, 2, 9] {
            store.insert(TreeId::Records, &[key], &[key * 10]).unwrap();
        }
        store.insert(TreeId::Blobs, &[5], b"other tree").unwrap();
        assert_eq!(keys(store, TreeId::Records, &[2], Some(&[9])), vec![vec![2], vec![3]]);
        assert_eq!(keys(store, TreeId::Records, &[2], None), vec![vec![2], vec![3], vec![9]]);
        assert_eq!(store.get(TreeId::Records, &[3]).unwrap().map(|v| v.as_ref().to_vec()), Some(vec![30]));
        assert!(store.get(TreeId::Records, &[5]).unwrap().is_none(), "trees are separate");
        store.remove(TreeId::Records, &[9]).unwrap();
        assert_eq!(store.last(TreeId::Records).unwrap().map(|(k, _)| k.as_ref().to_vec()), Some(vec![3]));
        store.flush().unwrap();
        assert!(store.bytes_on_disk().unwrap() > 0);
    }

    #[rstest]
    #[case::memory(false)]
    #[case::sled(true)]
    fn both_stores_keep_ordered_separate_trees(#[case] on_disk: bool) {
        if on_disk {
            let dir = tempfile::tempdir().unwrap();
            exercise(&SledStore::open(&dir.path().join("sled"), &SledOptions::default()).unwrap());
        } else {
            exercise(&MemStore::new());
        }
    }
}
