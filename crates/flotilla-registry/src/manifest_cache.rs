//! Manifests' bytes kept in memory by digest: every pull asks for its manifest first, and a
//! deployment of many instances asks for the same few again and again.
//!
//! Content is addressed by its digest, so an entry is never stale: a digest names the same
//! bytes whichever replica stored them and whenever. Whether a repository still has the
//! manifest is the index's answer, asked before the cache; a deleted manifest is refused
//! there. The cache is bounded by the bytes it holds; quick_cache's eviction keeps the
//! manifests asked for often.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// What the registry's cache holds at most.
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// A typical manifest's size, to size the cache's table.
const TYPICAL_MANIFEST_BYTES: u64 = 2048;

/// Weighs an entry by its bytes (at least one, so an empty manifest still counts).
#[derive(Clone)]
struct ByLength;

impl Weighter<String, Bytes> for ByLength {
    fn weight(&self, _digest: &String, content: &Bytes) -> u64 {
        content.len().max(1) as u64
    }
}

/// Manifest bytes by digest, bounded by their total size.
pub struct ManifestCache {
    entries: Cache<String, Bytes, ByLength>,
}

impl ManifestCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let items = (capacity_bytes / TYPICAL_MANIFEST_BYTES).max(1) as usize;
        Self { entries: Cache::with_weighter(items, capacity_bytes, ByLength) }
    }

    /// The content of the manifest `digest`, if held.
    pub fn get(&self, digest: &str) -> Option<Bytes> {
        self.entries.get(digest)
    }

    /// Keeps `content`, which the caller read as the blob `digest` (a `Bytes` clone shares it).
    pub fn insert(&self, digest: &str, content: Bytes) {
        self.entries.insert(digest.to_string(), content);
    }

    /// The bytes held.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

impl Default for ManifestCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_was_given_and_never_more_than_its_bound() {
        let cache = ManifestCache::new(64 * 1024);
        cache.insert("sha256:aa", Bytes::from_static(b"{\"schemaVersion\":2}"));
        assert_eq!(cache.get("sha256:aa").as_deref(), Some(&b"{\"schemaVersion\":2}"[..]));
        assert!(cache.get("sha256:bb").is_none());
        for n in 0..200 {
            cache.insert(&format!("sha256:{n:04}"), Bytes::from(vec![b'x'; 1024]));
            assert!(cache.weight() <= 64 * 1024, "{} bytes held after {n} inserts", cache.weight());
        }
        let held = (0..200).filter(|n| cache.get(&format!("sha256:{n:04}")).is_some()).count();
        assert!((1..64).contains(&held), "{held} of 200 1 KiB manifests held in 64 KiB");
    }

    #[test]
    fn a_manifest_larger_than_the_bound_is_not_kept() {
        let cache = ManifestCache::new(1024);
        cache.insert("sha256:big", Bytes::from(vec![b'x'; 4096]));
        assert!(cache.get("sha256:big").is_none());
        assert_eq!(cache.weight(), 0);
    }
}
