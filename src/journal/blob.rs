//! Content addressing: a part's bytes are stored once in the blob tree, keyed by their hash, however many records
//! refer to them.
//!
//! The hash is blake3 cut to 128 bits. The content comes from users (specs, Pod templates), so the hash must resist
//! deliberate collisions — a crafted collision would show one object's spec in another object's records — which
//! rules out xxhash; blake3 is several times faster than sha1 (already a dependency, and broken for collisions).
//! 128 bits keep a collision out of reach and halve the reference every record carries.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::record::{Manifest, StoredRecord};
use super::store::{Store, TreeId};

/// The content hash of a blob.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hash(pub [u8; 16]);

impl std::hash::Hash for Hash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

/// A map keyed by content hashes: their bytes are uniform already, so the first eight serve as the map's hash
/// (scans look blobs up by the million).
pub type HashMapByHash<V> = HashMap<Hash, V, BuildHasherDefault<HashPrefix>>;

#[derive(Default)]
pub struct HashPrefix(u64);

impl std::hash::Hasher for HashPrefix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut prefix = [0; 8];
        let len = bytes.len().min(8);
        prefix[..len].copy_from_slice(&bytes[..len]);
        self.0 ^= u64::from_le_bytes(prefix);
    }
}

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        let digest = blake3::hash(bytes);
        let mut hash = [0; 16];
        hash.copy_from_slice(&digest.as_bytes()[..16]);
        Hash(hash)
    }

    /// Whether `bytes` are what this hash names: a blob flipped on disk no longer matches its key.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        Hash::of(bytes) == *self
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Why a blob could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobFault {
    Missing,
    /// Its bytes no longer match its hash, or a manifest's bytes do not decode.
    Corrupt,
    /// The store failed to read it.
    Unreadable(String),
}

/// Blobs read so far are remembered up to this many bytes, then forgotten whole.
const CACHE_BYTES: usize = 64 << 20;

/// Reads blobs and manifests, each checked against its hash once and then remembered: a value many records share
/// (a spec, a manifest) is read and hashed once per scan.
pub struct BlobReader<'s, S: Store> {
    store: &'s S,
    blobs: HashMapByHash<S::Bytes>,
    manifests: HashMapByHash<Arc<Manifest>>,
    cached_bytes: usize,
}

impl<'s, S: Store> BlobReader<'s, S> {
    pub fn new(store: &'s S) -> Self {
        BlobReader { store, blobs: HashMapByHash::default(), manifests: HashMapByHash::default(), cached_bytes: 0 }
    }

    pub fn blob(&mut self, hash: &Hash) -> Result<S::Bytes, BlobFault> {
        if let Some(bytes) = self.blobs.get(hash) {
            return Ok(bytes.clone());
        }
        let bytes = match self.store.get(TreeId::Blobs, &hash.0) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(BlobFault::Missing),
            Err(error) => return Err(BlobFault::Unreadable(error.to_string())),
        };
        if !hash.verifies(bytes.as_ref()) {
            return Err(BlobFault::Corrupt);
        }
        if self.cached_bytes > CACHE_BYTES {
            self.blobs.clear();
            self.manifests.clear();
            self.cached_bytes = 0;
        }
        self.cached_bytes += bytes.as_ref().len();
        self.blobs.insert(*hash, bytes.clone());
        Ok(bytes)
    }

    pub fn manifest(&mut self, hash: &Hash) -> Result<Arc<Manifest>, BlobFault> {
        if let Some(manifest) = self.manifests.get(hash) {
            return Ok(manifest.clone());
        }
        let bytes = self.blob(hash)?;
        let manifest = Arc::new(Manifest::decode(bytes.as_ref()).map_err(|_| BlobFault::Corrupt)?);
        self.manifests.insert(*hash, manifest.clone());
        Ok(manifest)
    }

    /// Every blob a record needs: its manifest and the blobs the manifest lists.
    pub fn blobs_of(&mut self, record: &StoredRecord) -> Result<Vec<Hash>, BlobFault> {
        let Some(hash) = record.manifest else { return Ok(Vec::new()) };
        let manifest = self.manifest(&hash)?;
        Ok(std::iter::once(hash).chain(manifest.parts.iter().map(|(_, part)| *part)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_names_its_content_only() {
        let hash = Hash::of(b"{\"replicas\":3}");
        assert!(hash.verifies(b"{\"replicas\":3}"));
        assert!(!hash.verifies(b"{\"replicas\":4}"));
        assert_eq!(hash.to_string().len(), 32);
        assert_eq!(Hash::of(b"").to_string(), "af1349b9f5f9a1a6a0404dea36dcc949");
    }
}
