//! Buffers for direct I/O (`O_DIRECT`): [`BUFFER`] bytes at an address aligned to [`ALIGN`],
//! kept in a [`BufferPool`] between uses, so that filling one touches memory already mapped
//! (on a virtual machine whose host takes back freed memory, a fresh page costs tens of
//! microseconds the first time it is written).
//!
//! A pool with a budget for recent blobs ([`super::recent`]) maps all the buffers it may keep
//! once, in a thread of its own, when its store opens ([`BufferPool::fill`]): otherwise every
//! large push while recent blobs hold buffers fills fresh ones. On this project's machines,
//! 256 MiB pushes into fresh buffers ran at 200-1000 MiB/s (9 of 12 under 1000, a third under
//! 500), into buffers mapped when the store opened at 926-1144 MiB/s (12 of 12); mapping them
//! when the first large push started (so beside it) still left the next two at 340-600 MiB/s.
//! Mapping 576 MiB takes 0.25-0.3 s of one core.

use std::sync::{Arc, Mutex, MutexGuard};

use super::recent::{Chunks, RecentBlobs};
use crate::digest::Digest;

/// Offsets, lengths and buffer addresses of direct I/O are multiples of this: the page size,
/// which no block device's logical block exceeds on the machines this runs on.
pub(super) const ALIGN: usize = 4096;
/// Bytes of one buffer: of one direct write or read.
pub(super) const BUFFER: usize = 4 * 1024 * 1024;
/// Buffers a pool keeps besides its recent blobs' budget, at most (more are made when more
/// transfers run at once, and dropped after).
const POOL_KEEPS: usize = 16;

/// A buffer of [`BUFFER`] bytes whose first byte is at an address aligned to [`ALIGN`].
pub(super) struct AlignedBuffer {
    bytes: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    fn new() -> Self {
        let bytes = vec![0u8; BUFFER + ALIGN];
        // The allocation never moves (the vector is never grown), so neither does `start`.
        let start = bytes.as_ptr().align_offset(ALIGN);
        Self { bytes, start }
    }

    /// A buffer whose every page is mapped: written once (a fresh allocation's pages are
    /// mapped when first written, not when allocated).
    fn mapped() -> Self {
        let mut buffer = Self::new();
        for page in buffer.as_mut_slice().chunks_mut(ALIGN) {
            page[0] = 1;
        }
        buffer
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..self.start + BUFFER]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + BUFFER]
    }
}

/// Aligned buffers shared by the transfers of one store, and the recent blobs kept in some of
/// them ([`RecentBlobs`]).
///
/// The pool keeps up to [`POOL_KEEPS`] buffers plus the recent blobs' budget, free or holding
/// recent blobs. Once it made that many, a transfer needing a buffer takes back those of the
/// least recently used blob rather than mapping fresh memory.
pub(super) struct BufferPool {
    state: Mutex<PoolState>,
    /// Whether [`BufferPool::fill`] was started.
    filling: std::sync::atomic::AtomicBool,
}

struct PoolState {
    free: Vec<AlignedBuffer>,
    /// Buffers made and not dropped since: free, lent out or holding recent blobs.
    made: usize,
    recent: RecentBlobs,
    /// Buffers held by uploads in progress for the recent blobs ([`Pending`]).
    pending: usize,
}

impl PoolState {
    fn keeps(&self) -> usize {
        POOL_KEEPS + self.recent.budget()
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new(0)
    }
}

impl BufferPool {
    /// A pool whose recent blobs may hold `recent_budget` buffers (none with 0).
    pub(super) fn new(recent_budget: usize) -> Self {
        Self {
            state: Mutex::new(PoolState {
                free: Vec::new(),
                made: 0,
                recent: RecentBlobs::new(recent_budget),
                pending: 0,
            }),
            filling: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Maps every buffer the pool may keep, in a thread of its own, the first time it is
    /// called on a pool with a budget for recent blobs (see the module's documentation).
    pub(super) fn fill(pool: &Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        if pool.filling.load(Relaxed) || pool.recent_budget() == 0 || pool.filling.swap(true, Relaxed) {
            return;
        }
        let pool = pool.clone();
        let spawned = std::thread::Builder::new().name("registry-buffers".into()).spawn(move || {
            loop {
                {
                    let mut state = pool.lock();
                    if state.made >= state.keeps() {
                        return;
                    }
                    state.made += 1;
                }
                pool.give_back(AlignedBuffer::mapped());
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the thread mapping the registry's buffers: they are mapped as used");
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub(super) fn take(&self) -> AlignedBuffer {
        loop {
            let mut state = self.lock();
            if let Some(buffer) = state.free.pop() {
                return buffer;
            }
            if state.made >= state.keeps()
                && let Some(oldest) = state.recent.evict_oldest()
            {
                // Its buffers come back to the pool as it is dropped (but those a pull still
                // sends), outside the lock.
                drop(state);
                drop(oldest);
                continue;
            }
            state.made += 1;
            drop(state);
            return AlignedBuffer::new();
        }
    }

    pub(super) fn give_back(&self, buffer: AlignedBuffer) {
        let mut state = self.lock();
        if state.free.len() + state.recent.held() < state.keeps() {
            state.free.push(buffer);
        } else {
            state.made = state.made.saturating_sub(1);
            drop(state);
            drop(buffer);
        }
    }

    /// Buffers the recent blobs may hold in all.
    pub(super) fn recent_budget(&self) -> usize {
        self.lock().recent.budget()
    }

    /// The content of `digest`, if it is kept.
    pub(super) fn recent(&self, digest: &Digest) -> Option<Chunks> {
        self.lock().recent.get(digest)
    }

    /// How many recent blobs are kept and the bytes of their content; the bytes of all the
    /// buffers the pool made and holds (free, lent out, or holding recent blobs).
    pub(super) fn memory(&self) -> (usize, u64, u64) {
        let state = self.lock();
        let (blobs, bytes) = state.recent.kept();
        (blobs, bytes, (state.made * BUFFER) as u64)
    }

    /// Stops keeping `digest`.
    pub(super) fn forget_recent(&self, digest: &Digest) {
        let gone = self.lock().recent.forget(digest);
        drop(gone);
    }

    /// The buffers waiting in the pool.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.lock().free.len()
    }

    /// The buffers made and not dropped since.
    #[cfg(test)]
    fn made(&self) -> usize {
        self.lock().made
    }
}

/// The content of an upload in progress, kept in the pooled buffers it was gathered into while
/// it may become a recent blob. The buffers all uploads in progress keep count against the
/// recent blobs' budget too, so that uploads left unfinished (until their clean-up) cannot hold
/// more memory than that.
pub(super) struct Pending {
    chunks: Vec<bytes::Bytes>,
    pool: Arc<BufferPool>,
}

impl Pending {
    pub(super) fn new(pool: Arc<BufferPool>) -> Self {
        Self { chunks: Vec::new(), pool }
    }

    /// Keeps `chunk` (a pooled buffer, a [`bytes::Bytes`] of its own) after the others; false,
    /// keeping nothing, when the uploads in progress already keep the budget's worth.
    #[must_use]
    pub(super) fn push(&mut self, chunk: bytes::Bytes) -> bool {
        let mut state = self.pool.lock();
        if state.pending >= state.recent.budget() {
            return false;
        }
        state.pending += 1;
        drop(state);
        self.chunks.push(chunk);
        true
    }

    /// The bytes kept.
    pub(super) fn len(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.len() as u64).sum()
    }

    /// Keeps the content as the recent blob `digest` (if it fits the budget).
    pub(super) fn into_recent(mut self, digest: Digest) {
        let chunks = std::mem::take(&mut self.chunks);
        let mut state = self.pool.lock();
        state.pending -= chunks.len();
        let gone = state.recent.keep(digest, chunks);
        drop(state);
        drop(gone);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        state.pending = state.pending.saturating_sub(self.chunks.len());
        drop(state);
        self.chunks.clear();
    }
}

/// The first `len` bytes of a pooled buffer, as the owner of a [`bytes::Bytes`]: the buffer
/// goes back to its pool when the last `Bytes` made from it is dropped (sent).
pub(super) struct PooledBytes {
    buffer: Option<AlignedBuffer>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl PooledBytes {
    pub(super) fn new(buffer: AlignedBuffer, len: usize, pool: Arc<BufferPool>) -> Self {
        Self { buffer: Some(buffer), len: len.min(BUFFER), pool }
    }
}

impl AsRef<[u8]> for PooledBytes {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], |buffer| &buffer.as_slice()[..self.len])
    }
}

impl Drop for PooledBytes {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

/// Gathers an append's chunks for the writer. Chunks that add up to less than one buffer (a
/// small append: a manifest, a config, a small layer) are handed out as they are, with no
/// copy and no buffer taken. From the chunk that reaches a buffer's worth on, everything is
/// copied into pooled buffers, one after the other, and each full buffer is handed out as a
/// [`bytes::Bytes`] (its buffer goes back to the pool when the last `Bytes` of it is dropped):
/// a large append's bytes leave the receiver's buffers at once (hyper then reuses its read
/// buffer rather than allocating fresh memory), and reach the disk from aligned memory
/// already mapped.
pub(super) struct Gathering {
    /// The chunks of an append still smaller than a buffer, as they were given.
    held: Vec<bytes::Bytes>,
    held_len: usize,
    /// Whether the append reached a buffer's worth: everything is copied from then on.
    copying: bool,
    filling: Filling,
}

impl Gathering {
    pub(super) fn new(pool: Arc<BufferPool>) -> Self {
        Self { held: Vec::new(), held_len: 0, copying: false, filling: Filling::new(pool) }
    }

    /// Takes `chunk` after the chunks given before, adding each buffer it fills to `full`.
    pub(super) fn push(&mut self, chunk: &bytes::Bytes, full: &mut Vec<bytes::Bytes>) {
        if !self.copying {
            if self.held_len + chunk.len() < BUFFER {
                self.held_len += chunk.len();
                self.held.push(chunk.clone());
                return;
            }
            self.copying = true;
            for held in std::mem::take(&mut self.held) {
                self.filling.copy(&held, full);
            }
        }
        self.filling.copy(chunk, full);
    }

    /// Whether the chunks handed out are pooled buffers, each a [`bytes::Bytes`] of its own:
    /// the append reached a buffer's worth.
    pub(super) fn pooled(&self) -> bool {
        self.copying
    }

    /// What was given since the last full buffer: the chunks of a small append as they were
    /// given, or the last, partly filled buffer.
    pub(super) fn rest(&mut self) -> Vec<bytes::Bytes> {
        self.held_len = 0;
        let mut rest = std::mem::take(&mut self.held);
        rest.extend(self.filling.rest());
        rest
    }
}

/// Copies bytes into pooled buffers, one after the other, and hands out each buffer it fills
/// as a [`bytes::Bytes`] (its buffer goes back to the pool when the last `Bytes` of it is
/// dropped).
pub(super) struct Filling {
    pool: Arc<BufferPool>,
    buffer: Option<AlignedBuffer>,
    filled: usize,
}

impl Filling {
    pub(super) fn new(pool: Arc<BufferPool>) -> Self {
        Self { pool, buffer: None, filled: 0 }
    }

    /// Whether no bytes wait in a partly filled buffer.
    pub(super) fn is_empty(&self) -> bool {
        self.buffer.is_none()
    }

    /// Copies `bytes` after those copied before, adding each buffer it fills to `full`.
    pub(super) fn copy(&mut self, mut bytes: &[u8], full: &mut Vec<bytes::Bytes>) {
        while !bytes.is_empty() {
            let mut buffer = self.buffer.take().unwrap_or_else(|| self.pool.take());
            let taken = bytes.len().min(BUFFER - self.filled);
            buffer.as_mut_slice()[self.filled..self.filled + taken].copy_from_slice(&bytes[..taken]);
            self.filled += taken;
            bytes = &bytes[taken..];
            if self.filled == BUFFER {
                full.push(bytes::Bytes::from_owner(PooledBytes::new(buffer, BUFFER, self.pool.clone())));
                self.filled = 0;
            } else {
                self.buffer = Some(buffer);
            }
        }
    }

    /// The bytes copied since the last full buffer, if any.
    pub(super) fn rest(&mut self) -> Option<bytes::Bytes> {
        let buffer = self.buffer.take()?;
        let len = std::mem::take(&mut self.filled);
        Some(bytes::Bytes::from_owner(PooledBytes::new(buffer, len, self.pool.clone())))
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed test

    use super::*;
    use crate::storage::fs::recent::tests::digest;

    /// Chunks of a large append, of odd sizes, come out as whole aligned buffers, then the
    /// rest, in order; every buffer goes back to the pool once the last `Bytes` of it is
    /// dropped.
    #[test]
    fn gathering_hands_out_whole_aligned_buffers_and_returns_them_to_the_pool() {
        let content: Vec<u8> = (0..(2 * BUFFER + BUFFER / 2) as u32).map(|i| (i % 251) as u8).collect();
        let pool = Arc::new(BufferPool::default());
        let mut gathering = Gathering::new(pool.clone());
        let mut full = Vec::new();
        for chunk in content.chunks(300_007) {
            gathering.push(&bytes::Bytes::copy_from_slice(chunk), &mut full);
        }
        assert_eq!(full.len(), 2, "two buffers filled");
        for buffer in &full {
            assert_eq!(buffer.len(), BUFFER);
            assert_eq!(buffer.as_ptr().addr() % ALIGN, 0, "a full buffer starts at an aligned address");
        }
        let rest = gathering.rest();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].len(), BUFFER / 2);
        assert!(gathering.rest().is_empty(), "the rest is handed out once");
        assert!([&full[0][..], &full[1][..], &rest[0][..]].concat() == content, "the bytes, in order");

        let copy = full[0].clone();
        drop((full, rest));
        assert_eq!(pool.kept(), 2, "a buffer still held is not back in the pool");
        drop(copy);
        assert_eq!(pool.kept(), 3);
        // Gathering again takes buffers from the pool, not new ones.
        let mut again = Vec::new();
        Gathering::new(pool.clone()).push(&bytes::Bytes::from(content[..BUFFER].to_vec()), &mut again);
        assert_eq!(again.len(), 1, "a chunk of exactly one buffer fills one");
        assert_eq!(pool.kept(), 2);
    }

    /// Once a pool made all the buffers it may keep, taking one more takes back the buffers
    /// of the least recently used recent blob rather than making a new one.
    #[test]
    fn a_full_pool_takes_back_the_oldest_recent_blob_before_making_more() {
        let pool = Arc::new(BufferPool::new(2));
        let mut taken: Vec<AlignedBuffer> = (0..POOL_KEEPS + 2).map(|_| pool.take()).collect();
        assert_eq!(pool.made(), POOL_KEEPS + 2);
        for number in [1, 2] {
            let buffer = taken.pop().unwrap();
            let mut pending = Pending::new(pool.clone());
            assert!(pending.push(bytes::Bytes::from_owner(PooledBytes::new(buffer, BUFFER, pool.clone()))));
            pending.into_recent(digest(number));
        }
        taken.into_iter().for_each(|buffer| pool.give_back(buffer));
        assert_eq!(pool.kept(), POOL_KEEPS, "free and recent buffers together stay within the pool's keep");
        let again: Vec<AlignedBuffer> = (0..POOL_KEEPS + 1).map(|_| pool.take()).collect();
        assert_eq!(pool.made(), POOL_KEEPS + 2, "no buffer made: the oldest recent blob's was taken back");
        assert!(pool.recent(&digest(1)).is_none(), "the oldest recent blob is gone");
        assert!(pool.recent(&digest(2)).is_some(), "the newer one stays");
        // With no recent blob left to take back, a buffer is made.
        pool.forget_recent(&digest(2));
        let more: Vec<AlignedBuffer> = (0..2).map(|_| pool.take()).collect();
        assert_eq!(pool.made(), POOL_KEEPS + 3);
        drop((again, more));
    }

    /// The uploads in progress keep at most the recent blobs' budget of buffers between them;
    /// a buffer kept again once one of them is dropped or has become a recent blob.
    #[test]
    fn uploads_in_progress_keep_at_most_the_budget_between_them() {
        let pool = Arc::new(BufferPool::new(3));
        let chunk = || bytes::Bytes::from_owner(PooledBytes::new(pool.take(), BUFFER, pool.clone()));
        let (mut first, mut second) = (Pending::new(pool.clone()), Pending::new(pool.clone()));
        assert!(first.push(chunk()) && first.push(chunk()));
        assert!(second.push(chunk()));
        assert!(!second.push(chunk()), "a fourth buffer is over the budget");
        assert_eq!(first.len(), 2 * BUFFER as u64);
        drop(first);
        assert!(second.push(chunk()), "the dropped upload's buffers no longer count");
        second.into_recent(digest(1));
        let mut third = Pending::new(pool.clone());
        assert!(third.push(chunk()) && third.push(chunk()) && third.push(chunk()), "nor a recent blob's");
        assert_eq!(pool.recent(&digest(1)).map(|chunks| chunks.len()), Some(2));
    }

    /// Filling maps every buffer the pool may keep, once, in a thread of its own; a pool
    /// without a budget for recent blobs is not filled.
    #[test]
    fn filling_maps_every_buffer_the_pool_may_keep_once() {
        let unbudgeted = Arc::new(BufferPool::default());
        BufferPool::fill(&unbudgeted);
        let pool = Arc::new(BufferPool::new(3));
        BufferPool::fill(&pool);
        BufferPool::fill(&pool);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.kept() < POOL_KEEPS + 3 {
            assert!(std::time::Instant::now() < deadline, "the pool was filled with {} buffers", pool.kept());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(pool.made(), POOL_KEEPS + 3, "filled once, up to what it may keep");
        assert_eq!(pool.kept(), POOL_KEEPS + 3);
        let taken: Vec<AlignedBuffer> = (0..POOL_KEEPS + 3).map(|_| pool.take()).collect();
        assert_eq!(pool.made(), POOL_KEEPS + 3, "the buffers taken are the filled ones");
        assert_eq!((unbudgeted.made(), unbudgeted.kept()), (0, 0));
        drop(taken);
    }

    /// The chunks of an append smaller than a buffer are handed out as they were given: no
    /// copy, no buffer taken from the pool.
    #[test]
    fn a_small_append_is_handed_out_as_it_came() {
        let pool = Arc::new(BufferPool::default());
        let mut gathering = Gathering::new(pool.clone());
        let chunks: Vec<bytes::Bytes> =
            (0..3u8).map(|number| bytes::Bytes::from(vec![number; BUFFER / 4 + number as usize])).collect();
        let mut full = Vec::new();
        for chunk in &chunks {
            gathering.push(chunk, &mut full);
        }
        assert!(full.is_empty());
        let rest = gathering.rest();
        assert_eq!(rest.len(), 3);
        for (given, out) in chunks.iter().zip(&rest) {
            assert_eq!(given.as_ptr(), out.as_ptr(), "a small append's chunk was copied");
            assert_eq!(given.len(), out.len());
        }
        drop(gathering);
        assert_eq!(pool.kept(), 0, "a small append took a buffer from the pool");
    }
}
