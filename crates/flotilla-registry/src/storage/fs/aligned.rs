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
