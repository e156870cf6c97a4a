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
//! ([`super::writer`]), so its first pull reads from the disk whichever way it reads (unless
//! the blob is still a recent one, kept in memory: [`super::recent`]). Through
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
            tokio::task::spawn_blocking(move || read_either(&files, at, size, &pool).map(|chunk| (at, chunk)))
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

/// Reads the chunk at `at` from the first of `files` (opened by [`open_direct`]), or from the
/// second (opened as usual) should the first refuse the read (`EINVAL`). Any other error is
/// the read's: retried through the page cache, it would hide a failing disk.
fn read_either(files: &(File, File), at: u64, size: u64, pool: &Arc<BufferPool>) -> io::Result<PooledBytes> {
    let (direct, cached) = files;
    match read_chunk(direct, at, size, pool) {
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => read_chunk(cached, at, size, pool),
        read => read,
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use super::*;

    /// A blob of one buffer and a partial one, on a disk (tmpfs refuses `O_DIRECT`).
    fn blob() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..BUFFER as u32 + 5000).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        (dir, path, content)
    }

    /// A refused direct read (`EINVAL`) is read through the page cache instead. No device
    /// here refuses an aligned direct read, so a file whose every read is refused with
    /// `EINVAL` stands in for the direct one: procfs's `clear_refs`, which is write-only.
    #[test]
    fn a_refused_direct_read_goes_through_the_page_cache() {
        let (_dir, path, content) = blob();
        let refusing =
            File::open("/proc/self/clear_refs").expect("root opens clear_refs to read (scripts/test runs as root)");
        let mut probe = [0u8; 8];
        let refused = refusing.read_at(&mut probe, 0).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EINVAL), "the stand-in refuses reads as a device would");
        let files = (refusing, File::open(&path).unwrap());
        let pool = Arc::new(BufferPool::default());
        let size = content.len() as u64;
        let first = read_either(&files, 0, size, &pool).unwrap();
        assert!(first.as_ref() == &content[..BUFFER], "the first chunk");
        let last = read_either(&files, BUFFER as u64, size, &pool).unwrap();
        assert!(last.as_ref() == &content[BUFFER..], "the last, partial chunk");
        // The direct file, as the store opens it, reads the same.
        let files = (open_direct(&path).expect("/var/tmp accepts O_DIRECT"), File::open(&path).unwrap());
        assert!(read_either(&files, BUFFER as u64, size, &pool).unwrap().as_ref() == &content[BUFFER..]);
    }

    /// Any other error of a direct read fails the read.
    #[test]
    fn a_direct_read_failing_otherwise_fails() {
        let (_dir, path, content) = blob();
        // Opened write-only: the read fails with EBADF.
        let failing = File::options().write(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();
        let files = (failing, File::open(&path).unwrap());
        let read = read_either(&files, 0, content.len() as u64, &Arc::new(BufferPool::default()));
        assert_eq!(read.err().and_then(|error| error.raw_os_error()), Some(libc::EBADF));
    }
}
