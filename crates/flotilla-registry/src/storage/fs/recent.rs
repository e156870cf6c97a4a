//! [`RecentBlobs`]: large blobs just pushed, kept in memory in the buffers their push filled,
//! so that the pulls that follow a push (a pipeline deploying what it built, nodes pulling a
//! new layer) are sent from memory rather than read from the disk.
//!
//! Why: a large upload is written past the page cache ([`super::writer`]), so its first
//! read comes from the disk ([`super::reader`]). On this project's machines that read runs at
//! 0.9-1.6 GB/s, while sending from memory over loopback runs at 2.1-3.4 GB/s; filling the
//! page cache as the blob is written instead costs the push what it gains the pull (fresh
//! page-cache pages fill at 240-340 MB/s there). The buffers a push filled hold the blob
//! already: keeping them costs no copy, only the memory, which is bounded by a budget
//! ([`crate::storage::fs::FsOptions::recent_blobs_bytes`]).
//!
//! This module is the bookkeeping only (no I/O): which blobs are kept, in which order they
//! leave. The least recently pushed or read blob leaves first, when a new one needs room or
//! the pool needs its buffers back ([`super::aligned::BufferPool`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::digest::Digest;

/// A kept blob: its content, in the buffers (one [`Bytes`] per buffer) its push filled.
pub(super) type Chunks = Arc<[Bytes]>;

/// Blobs kept in memory, within a budget of buffers.
pub(super) struct RecentBlobs {
    /// Buffers the kept blobs may hold in all.
    budget: usize,
    /// Buffers the kept blobs hold.
    held: usize,
    /// Bytes of the kept blobs' content.
    bytes: u64,
    blobs: HashMap<Digest, Chunks>,
    /// The kept blobs, least recently used first.
    order: VecDeque<Digest>,
}

impl RecentBlobs {
    pub(super) fn new(budget: usize) -> Self {
        Self { budget, held: 0, bytes: 0, blobs: HashMap::new(), order: VecDeque::new() }
    }

    /// Buffers the kept blobs may hold in all.
    pub(super) fn budget(&self) -> usize {
        self.budget
    }

    /// Buffers the kept blobs hold.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// How many blobs are kept, and the bytes of their content.
    pub(super) fn kept(&self) -> (usize, u64) {
        (self.blobs.len(), self.bytes)
    }

    /// Keeps `chunks` as the content of `digest`, making room by letting the least recently
    /// used blobs go. What no longer is kept is returned, for the caller to drop once it no
    /// longer holds the lock around this (dropping gives buffers back to the pool): the blobs
    /// that made room, or `chunks` itself when it alone is larger than the budget.
    pub(super) fn keep(&mut self, digest: Digest, chunks: Vec<Bytes>) -> Vec<Chunks> {
        let chunks: Chunks = chunks.into();
        if chunks.len() > self.budget {
            return vec![chunks];
        }
        let mut gone: Vec<Chunks> = self.forget(&digest).into_iter().collect();
        while self.held + chunks.len() > self.budget {
            match self.evict_oldest() {
                Some(oldest) => gone.push(oldest),
                None => break,
            }
        }
        self.held += chunks.len();
        self.bytes += content_len(&chunks);
        self.blobs.insert(digest.clone(), chunks);
        self.order.push_back(digest);
        gone
    }

    /// The content of `digest` if it is kept, which then leaves last.
    pub(super) fn get(&mut self, digest: &Digest) -> Option<Chunks> {
        let chunks = self.blobs.get(digest)?.clone();
        if let Some(at) = self.order.iter().position(|kept| kept == digest) {
            self.order.remove(at);
        }
        self.order.push_back(digest.clone());
        Some(chunks)
    }

    /// Stops keeping `digest` (the blob was deleted); its content, to drop as
    /// [`keep`](Self::keep) says.
    pub(super) fn forget(&mut self, digest: &Digest) -> Option<Chunks> {
        let chunks = self.blobs.remove(digest)?;
        self.order.retain(|kept| kept != digest);
        self.let_go(&chunks);
        Some(chunks)
    }

    /// Lets the least recently used blob go; its content, to drop as [`keep`](Self::keep)
    /// says.
    pub(super) fn evict_oldest(&mut self) -> Option<Chunks> {
        let oldest = self.order.pop_front()?;
        let chunks = self.blobs.remove(&oldest)?;
        self.let_go(&chunks);
        Some(chunks)
    }

    fn let_go(&mut self, chunks: &[Bytes]) {
        self.held -= chunks.len();
        self.bytes -= content_len(chunks);
    }
}

fn content_len(chunks: &[Bytes]) -> u64 {
    chunks.iter().map(|chunk| chunk.len() as u64).sum()
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed test

    use super::*;

    /// A digest made of the byte `n` (the pool's tests use it too).
    pub(in crate::storage::fs) fn digest(n: u8) -> Digest {
        crate::digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn chunks(count: usize, byte: u8) -> Vec<Bytes> {
        (0..count).map(|_| Bytes::from(vec![byte; 8])).collect()
    }

    #[test]
    fn the_least_recently_used_blob_makes_room_first() {
        let mut recent = RecentBlobs::new(5);
        assert!(recent.keep(digest(1), chunks(2, 1)).is_empty());
        assert!(recent.keep(digest(2), chunks(2, 2)).is_empty());
        assert_eq!(recent.held(), 4);
        // Reading blob 1 makes blob 2 the least recently used.
        assert_eq!(recent.get(&digest(1)).unwrap()[0][0], 1);
        let gone = recent.keep(digest(3), chunks(2, 3));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0][0][0], 2, "blob 2 made room");
        assert!(recent.get(&digest(2)).is_none());
        assert!(recent.get(&digest(1)).is_some() && recent.get(&digest(3)).is_some());
        assert_eq!(recent.held(), 4);
    }

    #[test]
    fn a_blob_larger_than_the_budget_is_not_kept_and_evicts_nothing() {
        let mut recent = RecentBlobs::new(3);
        recent.keep(digest(1), chunks(2, 1));
        let gone = recent.keep(digest(2), chunks(4, 2));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].len(), 4, "the blob given back");
        assert!(recent.get(&digest(1)).is_some(), "blob 1 stays");
        assert!(recent.get(&digest(2)).is_none());
        assert_eq!(recent.held(), 2);
    }

    #[test]
    fn forgetting_and_keeping_again_count_each_buffer_once() {
        let mut recent = RecentBlobs::new(4);
        recent.keep(digest(1), chunks(2, 1));
        let gone = recent.keep(digest(1), chunks(3, 9));
        assert_eq!(gone.len(), 1, "the old content of the same digest goes");
        assert_eq!(recent.held(), 3);
        assert_eq!(recent.kept(), (1, 3 * 8), "one blob of three 8-byte chunks");
        assert_eq!(recent.get(&digest(1)).unwrap().len(), 3);
        assert_eq!(recent.forget(&digest(1)).unwrap().len(), 3);
        assert_eq!(recent.held(), 0);
        assert_eq!(recent.kept(), (0, 0));
        assert!(recent.forget(&digest(1)).is_none());
        assert!(recent.evict_oldest().is_none());
    }
}
