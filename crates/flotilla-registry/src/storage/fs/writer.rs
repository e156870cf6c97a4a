//! [`UploadWriter`]: how an upload's bytes reach its file.
//!
//! An append smaller than [`BATCH`] bytes (small layers, configs, every manifest) goes through
//! the page cache, as any file is written. A larger one is written past the page cache
//! (`O_DIRECT`) in whole buffers of [`BATCH`] bytes aligned to [`ALIGN`], by a thread of its
//! own, in order, while the next fills. The store hands over such buffers (it gathers what it
//! receives into them: [`super::aligned::Gathering`]), which are written as they are, from
//! the first on; other bytes (an append starting off a block) go through the page cache for
//! the first batch's worth (its writeback then started, not waited for), then are copied
//! into buffers of the writer's own. What is left at the end (less than a batch) is written
//! directly too but for its last partial block, which goes through the page cache. Through
//! the page cache, each 4 MiB of fresh pages cost the server ~15-20 ms of CPU on these
//! machines (a 256 MiB push's first and last 4 MiB did). The one sync at the end of the
//! upload makes all of it durable (for 256 MiB: 0.3-2.5 ms).
//!
//! Why: through the page cache, a large upload waits at its end for one sync that writes all
//! of it, and on a virtual machine whose host takes back freed memory it first pays for
//! every fresh page it fills. On this project's machines: SHA-256 runs at ~1.5 GB/s on one
//! core; 256 MiB written through the page cache and synced, 290-420 MB/s (fresh pages alone
//! fill at 240-340 MB/s; 2.5-2.9 GB/s right after other pages were freed); written directly,
//! 1.0-1.4 GB/s. Written directly, the disk works while the upload arrives, from buffers
//! kept in a [`BufferPool`] (already mapped), and the final sync has little left to do.
//!
//! The cost: a large blob is not in the page cache after its push, so its first pull reads
//! it from the disk, unless the blob is still kept in memory as a recent blob
//! ([`super::recent`]).
//!
//! A file system that refuses `O_DIRECT` (when the file is opened, or on a write), or a store
//! opened with `direct_io` off, gets every byte through the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::aligned::{self, BufferPool, Filling};

/// Bytes of one direct write.
const BATCH: usize = aligned::BUFFER;
const ALIGN: usize = aligned::ALIGN;
/// Appends that may write directly at once, at most.
pub(super) const DIRECT_WRITES: usize = 8;

/// Writes the bytes of one append to an upload's file, from a given offset on.
///
/// Bytes land in the file in order: those through the page cache before any batch, each
/// batch after the one before it (one flushing thread), the rest only once every batch is
/// written. So whatever stops an append (an error, its client going away, the process dying)
/// leaves the upload's file a prefix of what was sent, from which it can resume.
///
/// An append gathers bytes for direct writes only while it holds one of the store's
/// [`DIRECT_WRITES`] permits (each such append holds up to five buffers); without one, or
/// when the file system refuses `O_DIRECT`, all of it goes through the page cache.
pub(super) struct UploadWriter {
    /// The file, through the page cache.
    file: File,
    /// The same file opened with `O_DIRECT`; `None` when the file system refuses it. It
    /// moves to the flushing thread when that starts.
    direct: Option<File>,
    /// Bytes copied into a buffer and not yet written, at `position` in the file.
    filling: Filling,
    position: u64,
    /// Bytes known written: those through the page cache, and the batches the flusher has
    /// returned.
    written: u64,
    /// The thread writing full batches, started by the first one.
    flusher: Option<Flusher>,
    /// The store's permits for appends that write directly; this append's, once it has one.
    direct_writes: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Everything goes through the page cache: no permit was left, or no `O_DIRECT`.
    all_cached: bool,
}

impl UploadWriter {
    /// Opens the upload at `path` to write from `offset` on (its current length); with
    /// `direct_io` false, all of it goes through the page cache.
    pub(super) fn open(
        path: &Path,
        offset: u64,
        direct_io: bool,
        pool: Arc<BufferPool>,
        direct_writes: Arc<tokio::sync::Semaphore>,
    ) -> io::Result<Self> {
        let file = File::options().write(true).open(path)?;
        let direct =
            direct_io.then(|| File::options().write(true).custom_flags(libc::O_DIRECT).open(path).ok()).flatten();
        Ok(Self {
            file,
            all_cached: direct.is_none(),
            direct,
            filling: Filling::new(pool),
            position: offset,
            written: 0,
            flusher: None,
            direct_writes,
            permit: None,
        })
    }

    /// Writes `chunk` after those written before (possibly only at [`finish`](Self::finish)).
    /// A chunk of a whole buffer at an aligned address (the store gathers received bytes into
    /// such buffers) is written directly as it is; other bytes are copied into buffers first.
    pub(super) fn write(&mut self, chunk: &Bytes) -> io::Result<()> {
        if self.permit.is_some() {
            return self.gather(chunk);
        }
        if (self.written >= BATCH as u64 || is_whole_buffer(chunk)) && !self.all_cached {
            match self.direct_writes.clone().try_acquire_owned() {
                Ok(permit) => {
                    self.permit = Some(permit);
                    self.start_writeback();
                    return self.gather(chunk);
                }
                Err(_) => self.all_cached = true,
            }
        }
        // Through the page cache as it arrives: an append smaller than a batch (no copy, no
        // wait at the end), the first batch's worth of one in other pieces, and all of one
        // without a permit.
        self.file.write_all_at(chunk, self.position)?;
        self.position += chunk.len() as u64;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Starts writing the bytes written so far through the page cache to the disk, without
    /// waiting: they then reach it while the rest arrives, rather than in the final sync
    /// (`POSIX_FADV_DONTNEED` starts the writeback of dirty pages and leaves them cached until
    /// it ends). Only advice: a refusal changes nothing but the time of the final sync.
    fn start_writeback(&self) {
        let start = self.position - self.written;
        if let Some(len) = std::num::NonZeroU64::new(self.written) {
            let _ = rustix::fs::fadvise(&self.file, start, Some(len), rustix::fs::Advice::DontNeed);
        }
    }

    /// Writes what is left and returns how many bytes were written in all. The last buffer,
    /// partly filled, is written past the page cache too, but for its last partial block.
    pub(super) fn finish(mut self) -> io::Result<u64> {
        self.stop_flusher()?;
        if let Some(last) = self.filling.rest() {
            let (whole, rest) = last.split_at(last.len() - last.len() % ALIGN);
            write_batch(&self.file, &mut self.direct, whole, self.position)?;
            self.file.write_all_at(rest, self.position + whole.len() as u64)?;
            self.written += last.len() as u64;
        }
        Ok(self.written)
    }

    /// Copies `bytes` into the buffer, handing it to the flusher each time it is full; the
    /// bytes before the first multiple of [`ALIGN`] are written at once.
    fn gather(&mut self, chunk: &Bytes) -> io::Result<()> {
        let mut bytes = chunk.as_ref();
        let misaligned = (self.position % ALIGN as u64) as usize;
        if self.filling.is_empty() && misaligned == 0 && is_whole_buffer(chunk) {
            return self.submit(chunk.clone());
        }
        if self.filling.is_empty() && misaligned != 0 {
            let head = bytes.len().min(ALIGN - misaligned);
            self.file.write_all_at(&bytes[..head], self.position)?;
            self.position += head as u64;
            self.written += head as u64;
            bytes = &bytes[head..];
        }
        let mut full = Vec::new();
        self.filling.copy(bytes, &mut full);
        full.into_iter().try_for_each(|batch| self.submit(batch))
    }

    /// Hands a full buffer to the flusher, starting it with the first, once fewer than
    /// [`Flusher::IN_FLIGHT`] are queued.
    fn submit(&mut self, batch: Bytes) -> io::Result<()> {
        let flusher = match &mut self.flusher {
            Some(flusher) => flusher,
            None => {
                let cached = self.file.try_clone()?;
                self.flusher.insert(Flusher::start(cached, self.direct.take())?)
            }
        };
        self.written += (flusher.written(Flusher::IN_FLIGHT)? * BATCH) as u64;
        flusher.send(batch, self.position)?;
        self.position += BATCH as u64;
        Ok(())
    }

    /// Waits for the flusher to write what it was given, then lets it end; the first error it
    /// met, if any.
    fn stop_flusher(&mut self) -> io::Result<()> {
        let Some(flusher) = self.flusher.take() else { return Ok(()) };
        let (batches, direct, outcome) = flusher.stop();
        self.direct = direct;
        self.written += (batches * BATCH) as u64;
        outcome
    }
}

impl Drop for UploadWriter {
    fn drop(&mut self) {
        // Whatever was queued is written before the upload's next writer can start.
        let _ = self.stop_flusher();
    }
}

/// The thread that writes full buffers, one after the other, while the next ones fill. A
/// buffer goes back to its pool when the thread has written it (and no one else holds it).
struct Flusher {
    queue: Option<std::sync::mpsc::SyncSender<(Bytes, u64)>>,
    done: std::sync::mpsc::Receiver<io::Result<()>>,
    /// Ends with the direct file (`None` once a direct write was refused).
    thread: Option<std::thread::JoinHandle<Option<File>>>,
    in_flight: usize,
}

impl Flusher {
    /// Buffers given to the flusher and not yet returned, at most (one being written, two
    /// waiting), so that neither the disk nor the bytes arriving wait for the other when its
    /// pace varies (a virtual disk's does, by tens of percent from one second to the next).
    const IN_FLIGHT: usize = 3;

    fn start(cached: File, direct: Option<File>) -> io::Result<Self> {
        let (queue, batches) = std::sync::mpsc::sync_channel::<(Bytes, u64)>(Self::IN_FLIGHT);
        let (written, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("upload-flush".into()).spawn(move || {
            let mut direct = direct;
            for (batch, position) in batches {
                let outcome = write_batch(&cached, &mut direct, &batch, position);
                drop(batch);
                let failed = outcome.is_err();
                if written.send(outcome).is_err() || failed {
                    break;
                }
            }
            direct
        })?;
        Ok(Self { queue: Some(queue), done, thread: Some(thread), in_flight: 0 })
    }

    fn send(&mut self, batch: Bytes, position: u64) -> io::Result<()> {
        let queued = self.queue.as_ref().map(|queue| queue.send((batch, position)));
        if let Some(Ok(())) = queued {
            self.in_flight += 1;
            return Ok(());
        }
        // The thread stopped on an error: that error.
        Err(self.first_error())
    }

    /// How many batches the thread has written since last asked, waiting until fewer than
    /// `most` are in flight; the thread's error if it met one.
    fn written(&mut self, most: usize) -> io::Result<usize> {
        let mut written = 0;
        loop {
            let next = if self.in_flight >= most { self.done.recv().ok() } else { self.done.try_recv().ok() };
            match next {
                Some(Ok(())) => {
                    self.in_flight -= 1;
                    written += 1;
                }
                Some(Err(error)) => return Err(error),
                None if self.in_flight >= most => return Err(self.first_error()),
                None => return Ok(written),
            }
        }
    }

    fn first_error(&mut self) -> io::Error {
        self.done
            .try_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| io::Error::other("the thread writing the upload stopped"))
    }

    /// Lets the thread write what it was given and end: how many batches it wrote since last
    /// asked, the direct file, and its error if it met one.
    fn stop(mut self) -> (usize, Option<File>, io::Result<()>) {
        self.queue = None;
        let mut written = 0;
        let mut outcome = Ok(());
        for returned in self.done.iter() {
            match returned {
                Ok(()) => written += 1,
                Err(error) => outcome = Err(error),
            }
        }
        let mut direct = None;
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(file) => direct = file,
                Err(_) if outcome.is_ok() => outcome = Err(io::Error::other("the thread writing the upload panicked")),
                Err(_) => {}
            }
        }
        (written, direct, outcome)
    }
}

/// Whether `chunk` is a whole batch at an aligned address: one that can be written directly as
/// it is.
fn is_whole_buffer(chunk: &[u8]) -> bool {
    chunk.len() == BATCH && chunk.as_ptr().addr().is_multiple_of(ALIGN)
}

/// Writes one full batch at `position`: directly while the file system allows it, through
/// the page cache once it refused (`EINVAL`: this file system, or this device's alignment).
fn write_batch(cached: &File, direct: &mut Option<File>, bytes: &[u8], position: u64) -> io::Result<()> {
    if let Some(file) = direct {
        match file.write_all_at(bytes, position) {
            Ok(()) => return Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(%error, "direct write refused; writing through the page cache");
                *direct = None;
            }
            Err(error) => return Err(error),
        }
    }
    cached.write_all_at(bytes, position)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use super::*;

    /// A direct write the file system refuses (`EINVAL`, as for a device whose blocks are
    /// larger than [`ALIGN`]) is written through the page cache instead, and so is every
    /// batch after it. The refusal is provoked with a buffer one byte off alignment, which
    /// the kernel refuses the same way.
    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache_from_then_on() {
        // On a disk: tmpfs refuses O_DIRECT when the file is opened, not on a write.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("upload");
        let cached = File::options().create_new(true).read(true).write(true).open(&path).unwrap();
        let direct = File::options().write(true).custom_flags(libc::O_DIRECT).open(&path);
        let mut direct = Some(direct.expect("/var/tmp accepts O_DIRECT (a disk file system)"));
        let mut buffer = BufferPool::default().take();
        for (i, byte) in buffer.as_mut_slice().iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
        let misaligned = &buffer.as_slice()[1..1 + 2 * ALIGN];

        write_batch(&cached, &mut direct, misaligned, 0).unwrap();
        assert!(direct.is_none(), "the refused direct write is not tried again");
        let aligned = &buffer.as_slice()[..2 * ALIGN];
        write_batch(&cached, &mut direct, aligned, 2 * ALIGN as u64).unwrap();

        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), 4 * ALIGN);
        assert!(written[..2 * ALIGN] == *misaligned, "the refused batch is in the file");
        assert!(written[2 * ALIGN..] == *aligned, "the batch after it is in the file");
    }

    /// Whole aligned buffers are written as they are, from an append's first on: the
    /// writer copies nothing into buffers of its own (it would take them from the pool,
    /// which would then keep one more), and the file is what was written.
    #[test]
    fn whole_aligned_buffers_are_written_without_a_copy() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("upload");
        File::create(&path).unwrap();
        let pool = Arc::new(BufferPool::default());
        let batches: Vec<Bytes> = (0..4u8)
            .map(|number| {
                let mut buffer = pool.take();
                buffer.as_mut_slice().fill(number + 1);
                Bytes::from_owner(aligned::PooledBytes::new(buffer, BATCH, pool.clone()))
            })
            .collect();
        let permits = Arc::new(tokio::sync::Semaphore::new(DIRECT_WRITES));
        let mut writer = UploadWriter::open(&path, 0, true, pool.clone(), permits).unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 4 * BATCH as u64);
        drop(batches);
        assert_eq!(pool.kept(), 4, "the writer took a buffer of its own");
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), 4 * BATCH);
        for (number, batch) in written.chunks(BATCH).enumerate() {
            assert!(batch.iter().all(|&byte| byte == number as u8 + 1), "batch {number} is in place");
        }
    }

    /// A direct write that fails for any other reason fails the append: it is not retried
    /// through the page cache, which would hide a failing disk.
    #[test]
    fn a_direct_write_failing_otherwise_fails_the_batch() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("upload");
        let cached = File::options().create_new(true).read(true).write(true).open(&path).unwrap();
        // Opened read-only: the write fails with EBADF.
        let mut direct = Some(File::options().read(true).custom_flags(libc::O_DIRECT).open(&path).unwrap());
        let buffer = BufferPool::default().take();
        let error = write_batch(&cached, &mut direct, &buffer.as_slice()[..ALIGN], 0).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EBADF));
        assert!(direct.is_some());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "nothing written through the page cache");
    }
}
