//! Buffers for direct I/O (`O_DIRECT`): [`BUFFER`] bytes at an address aligned to [`ALIGN`],
//! kept in a [`BufferPool`] between uses, so that filling one touches memory already mapped
//! (on a virtual machine whose host takes back freed memory, a fresh page costs tens of
//! microseconds the first time it is written).

use std::sync::{Arc, Mutex};

/// Offsets, lengths and buffer addresses of direct I/O are multiples of this: the page size,
/// which no block device's logical block exceeds on the machines this runs on.
pub(super) const ALIGN: usize = 4096;
/// Bytes of one buffer: of one direct write or read.
pub(super) const BUFFER: usize = 4 * 1024 * 1024;
/// Buffers a pool keeps, at most (more are made when more transfers run at once, and dropped
/// after).
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

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..self.start + BUFFER]
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + BUFFER]
    }
}

/// Aligned buffers shared by the transfers of one store.
#[derive(Default)]
pub(super) struct BufferPool {
    free: Mutex<Vec<AlignedBuffer>>,
}

impl BufferPool {
    pub(super) fn take(&self) -> AlignedBuffer {
        self.free.lock().unwrap_or_else(|poison| poison.into_inner()).pop().unwrap_or_else(AlignedBuffer::new)
    }

    pub(super) fn give_back(&self, buffer: AlignedBuffer) {
        let mut free = self.free.lock().unwrap_or_else(|poison| poison.into_inner());
        if free.len() < POOL_KEEPS {
            free.push(buffer);
        }
    }

    /// The buffers waiting in the pool.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|poison| poison.into_inner()).len()
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
