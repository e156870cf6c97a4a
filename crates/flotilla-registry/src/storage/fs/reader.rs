//! Reading a large blob into pooled buffers: past the page cache, the first time.
//!
//! A blob of at least [`DIRECT_FROM`] bytes is read with `O_DIRECT` into pooled aligned
//! buffers, [`READS_IN_FLIGHT`] reads at once, each buffer sent as it is (no copy) and given
//! back to the pool once sent. Smaller blobs (manifests, configs, small layers) are read
//! through the page cache, where the ones asked for often stay. A large blob read again
//! (another node pulling the same layer, a re-pull) goes through the page cache into the
//! same buffers: that read fills the cache, the ones after it are served from memory, and
//! readers at once share the disk reads of the pages they all want.
//!
//! Why: the upload path writes all but the first few MiB of a large blob past the page cache
//! ([`super::writer`]), so its first pull reads from the disk whichever way it reads. Through
//! the page cache that read also fills fresh pages, which on this project's virtual machines
//! cost more than the disk itself (a 256 MiB blob read once at 250-360 MiB/s through the page
//! cache, at 1.6-1.9 GB/s directly). Large layers also no longer push the small, often-read
//! blobs and the database out of the cache, unless they are read again. The cost: where
//! filling fresh pages is cheap, a page cache holding the blob from its push serves the
//! first pull faster (the benchmark at bcb97e0: 1.19 GB/s read directly, against
//! distribution's 1.56 GB/s from the page cache it had just written the blob through).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;

use super::aligned::{ALIGN, BUFFER, BufferPool, PooledBytes};
use crate::storage::{BlobStream, StorageError};

/// Blobs of at least this many bytes are read past the page cache.
pub(super) const DIRECT_FROM: u64 = BUFFER as u64;
/// Blobs read past the page cache at once, at most; others read through the page cache
/// meanwhile. Each holds up to [`READS_IN_FLIGHT`] + 1 buffers of [`BUFFER`] bytes, so this
/// bounds the memory large pulls take (a deployment's nodes pulling the same layer at once).
pub(super) const DIRECT_READS: usize = 8;
/// Direct reads of one blob running at once, so that the disk always has several requests
/// queued (on this project's virtual disk, 256 MiB read at 0.9-1.3 GB/s with two at once,
/// 1.6-1.9 GB/s with four).
const READS_IN_FLIGHT: usize = 4;

/// Opens the blob at `path` for a direct read; `None` when its file system refuses
/// `O_DIRECT` (read it through the page cache then).
pub(super) fn open_direct(path: &Path) -> Option<File> {
    File::options().read(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

/// A large blob opened for reading into pooled buffers.
pub(super) struct PooledRead {
    /// The file opened by [`open_direct`] (or as usual, for a blob read before), and the
    /// same file opened as usual, read should a direct read be refused (`EINVAL`: a device
    /// whose blocks are larger than [`ALIGN`]).
    pub(super) files: (File, File),
    /// The blob's size.
    pub(super) size: u64,
    /// One of the [`DIRECT_READS`], held until the stream is dropped.
    pub(super) permit: tokio::sync::OwnedSemaphorePermit,
}

/// The blob from `offset` on, as chunks of up to [`BUFFER`] bytes.
pub(super) fn pooled_chunks(read: PooledRead, offset: u64, pool: Arc<BufferPool>, context: String) -> BlobStream {
    let PooledRead { files, size, permit } = read;
    let files = Arc::new(files);
    // Direct reads start at multiples of ALIGN: the first chunk drops what precedes `offset`.
    let first = if offset >= size { size } else { offset - offset % ALIGN as u64 };
    futures::stream::iter((first..size).step_by(BUFFER))
        .map(move |at| {
            let (files, pool) = (files.clone(), pool.clone());
            tokio::task::spawn_blocking(move || {
                let (direct, cached) = &*files;
                match read_chunk(direct, at, size, &pool) {
                    Err(error) if error.raw_os_error() == Some(libc::EINVAL) => read_chunk(cached, at, size, &pool),
                    read => read,
                }
                .map(|chunk| (at, chunk))
            })
        })
        .buffered(READS_IN_FLIGHT)
        .map(move |joined| {
            let _reading = &permit;
            let lost = |error: io::Error| StorageError::io(context.clone())(error);
            let (at, chunk) = joined.map_err(|error| lost(io::Error::other(error.to_string())))?.map_err(lost)?;
            let chunk = bytes::Bytes::from_owner(chunk);
            let skip = usize::try_from(offset.saturating_sub(at)).unwrap_or(usize::MAX).min(chunk.len());
            Ok(chunk.slice(skip..))
        })
        .boxed()
}

/// Reads up to [`BUFFER`] bytes at `at` (a multiple of [`ALIGN`]) into a pooled buffer.
fn read_chunk(file: &File, at: u64, size: u64, pool: &Arc<BufferPool>) -> io::Result<PooledBytes> {
    let mut buffer = pool.take();
    let want = usize::try_from(size - at).unwrap_or(usize::MAX).min(BUFFER);
    let mut filled = 0;
    // Every read but the one reaching the end of the file returns whole blocks, so each one
    // starts aligned; the buffer asked for is always whole blocks (the last block read whole).
    let end = want.div_ceil(ALIGN) * ALIGN;
    while filled < want {
        match file.read_at(&mut buffer.as_mut_slice()[filled..end], at + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                pool.give_back(buffer);
                return Err(error);
            }
        }
    }
    if filled < want {
        pool.give_back(buffer);
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the blob ended {} bytes early", want - filled),
        ));
    }
    Ok(PooledBytes::new(buffer, want, pool.clone()))
}
