//! [`FsBlobStore`]: blobs as files in a directory (under the data dir).
//!
//! Layout: `blobs/sha256/<first two hex digits>/<hex digits>` and `uploads/<upload id>`, on
//! one file system. An upload is a file of its own; finishing it checks the digest, syncs
//! the file, renames it into place and syncs the directory, so a blob file only ever exists
//! whole and durable. The digest is computed as the chunks are written; after a restart it
//! is computed again from the upload's file when the upload next grows or finishes.
//!
//! An append is a pipeline of three threads, so that a large push goes at the speed of its
//! slowest stage (one core's SHA-256) rather than of all of them in turn: the task receiving
//! the body copies the chunks of a large append into pooled aligned buffers and hands each
//! full one (a small append's chunks as they are) to a thread that hashes and to one that
//! writes ([`writer`]: whole aligned buffers past the page cache, as they are, the rest
//! through it). Once the blob is in place, the buffers of a large push are kept as a recent
//! blob, within a memory budget ([`recent`]): pulls of it are sent from them. Otherwise the
//! first read of a large blob goes past the page cache too, the next ones through it
//! ([`reader`]).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use super::{BlobStore, BlobStream, StorageError, UploadId};
use crate::digest::{self, Digest, Hasher};

mod aligned;
mod reader;
mod recent;
mod writer;

use aligned::{BufferPool, Gathering, Pending};
use writer::UploadWriter;

/// Bytes read at once when streaming a blob or hashing an upload again.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes read at once when sending a blob.
const SEND_CHUNK: usize = 1024 * 1024;
/// Buffers of an upload (of [`aligned::BUFFER`] bytes) received but not yet hashed, or not
/// yet written, at most. Each hand-over may wake a sleeping thread, which on a virtual machine
/// costs an interrupt to another CPU: it is done per buffer, not per chunk received.
const PIPELINE_BUFFERS: usize = 2;

/// How an [`FsBlobStore`] uses the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsOptions {
    /// Large uploads written, and large blobs read, past the page cache where the file
    /// system allows it (modules `writer` and `reader`); otherwise all through the page cache, as
    /// on a file system that refuses `O_DIRECT`.
    pub direct_io: bool,
    /// Memory for large blobs just pushed, kept in the buffers their push filled so that the
    /// pulls that follow are sent from memory (module `recent`); 0 keeps none.
    pub recent_blobs_bytes: u64,
}

impl FsOptions {
    /// [`FsOptions::recent_blobs_bytes`] unless configured: 512 MiB.
    pub const RECENT_BLOBS_BYTES: u64 = 512 * 1024 * 1024;
}

impl Default for FsOptions {
    fn default() -> Self {
        Self { direct_io: true, recent_blobs_bytes: Self::RECENT_BLOBS_BYTES }
    }
}

/// What an [`FsBlobStore`] holds in memory, and how often it served a read from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUse {
    /// Recent blobs kept in memory (module `recent`).
    pub recent_blobs: usize,
    /// Bytes of their content.
    pub recent_blob_bytes: u64,
    /// Bytes of every buffer the store made and holds: free, lent to transfers, or holding
    /// recent blobs.
    pub buffer_bytes: u64,
    /// Reads served from a recent blob since the store opened.
    pub reads_from_memory: u64,
}

/// Blob storage in a directory.
pub struct FsBlobStore {
    root: PathBuf,
    /// Uploads being written by this process: one writer at a time, and the hash so far.
    uploads: std::sync::Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<Progress>>>>,
    /// Aligned buffers for direct writes (uploads) and reads (large blobs).
    buffers: Arc<BufferPool>,
    /// Reads of large blobs, and appends, that may go past the page cache at once (each
    /// holds a few buffers); more go through the page cache meanwhile.
    direct_reads: Arc<tokio::sync::Semaphore>,
    direct_writes: Arc<tokio::sync::Semaphore>,
    /// Large blobs read past the page cache lately: the next read of one goes through it.
    read_before: quick_cache::sync::Cache<Digest, ()>,
    /// Reads served from a recent blob.
    reads_from_memory: std::sync::atomic::AtomicU64,
    options: FsOptions,
}

/// Large blobs [`FsBlobStore::read_before`] remembers, at most.
const READ_BEFORE_REMEMBERED: usize = 4096;

/// What is known of an upload's content: the hash of its first `bytes` bytes, and the content
/// itself while it may become a recent blob (module `recent`).
#[derive(Default)]
struct Progress {
    hashed: Option<(u64, Hasher)>,
    /// All of the upload so far, in pooled buffers, while every append of it reached a
    /// buffer's worth (so its bytes were gathered into such buffers) and they fit the recent
    /// blobs' budget.
    content: Option<Pending>,
}

impl FsBlobStore {
    /// Opens (creating as needed) the store in `root`, with the default [`FsOptions`].
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_with(root, FsOptions::default())
    }

    /// Opens (creating as needed) the store in `root`.
    pub fn open_with(root: impl Into<PathBuf>, options: FsOptions) -> Result<Self, StorageError> {
        let root = root.into();
        for dir in [root.join("blobs").join("sha256"), root.join("uploads")] {
            std::fs::create_dir_all(&dir).map_err(StorageError::io(format!("cannot create {}", dir.display())))?;
        }
        let recent_budget = usize::try_from(options.recent_blobs_bytes / aligned::BUFFER as u64).unwrap_or(usize::MAX);
        let buffers = Arc::new(BufferPool::new(recent_budget));
        // Before the first push needs them: see module `aligned`.
        BufferPool::fill(&buffers);
        Ok(Self {
            root,
            uploads: std::sync::Mutex::default(),
            buffers,
            direct_reads: Arc::new(tokio::sync::Semaphore::new(reader::DIRECT_READS)),
            direct_writes: Arc::new(tokio::sync::Semaphore::new(writer::DIRECT_WRITES)),
            read_before: quick_cache::sync::Cache::new(READ_BEFORE_REMEMBERED),
            reads_from_memory: std::sync::atomic::AtomicU64::new(0),
            options,
        })
    }

    /// What the store holds in memory (for the server's metrics).
    pub fn memory(&self) -> MemoryUse {
        let (recent_blobs, recent_blob_bytes, buffer_bytes) = self.buffers.memory();
        let reads_from_memory = self.reads_from_memory.load(std::sync::atomic::Ordering::Relaxed);
        MemoryUse { recent_blobs, recent_blob_bytes, buffer_bytes, reads_from_memory }
    }

    fn blob_path(&self, digest: &Digest) -> Result<PathBuf, StorageError> {
        digest::supported(digest)?;
        // A SHA-256 digest's encoded part is 64 lowercase hex digits: safe as a file name.
        let hex = digest.digest();
        Ok(self.root.join("blobs").join("sha256").join(&hex[..2]).join(hex))
    }

    fn upload_path(&self, upload: &UploadId) -> PathBuf {
        self.root.join("uploads").join(upload.as_str())
    }

    fn progress(&self, upload: &UploadId) -> Arc<tokio::sync::Mutex<Progress>> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|poison| poison.into_inner());
        uploads.entry(upload.clone()).or_default().clone()
    }

    fn forget(&self, upload: &UploadId) {
        self.uploads.lock().unwrap_or_else(|poison| poison.into_inner()).remove(upload);
    }

    /// The size of an upload's file; [`StorageError::UnknownUpload`] when there is none.
    async fn upload_len(&self, upload: &UploadId) -> Result<u64, StorageError> {
        match tokio::fs::metadata(self.upload_path(upload)).await {
            Ok(metadata) => Ok(metadata.len()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::UnknownUpload(upload.to_string()))
            }
            Err(error) => Err(StorageError::io(format!("cannot read upload {upload}"))(error)),
        }
    }

    /// The hash of the upload's first `len` bytes: from memory, or read again from its file.
    async fn hashed(&self, upload: &UploadId, progress: &mut Progress, len: u64) -> Result<Hasher, StorageError> {
        if let Some((bytes, hasher)) = &progress.hashed
            && *bytes == len
        {
            return Ok(hasher.clone());
        }
        let path = self.upload_path(upload);
        let mut file =
            tokio::fs::File::open(&path).await.map_err(StorageError::io(format!("cannot open upload {upload}")))?;
        let mut hasher = Hasher::default();
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut left = len;
        while left > 0 {
            let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let read = file
                .read(&mut buffer[..want])
                .await
                .map_err(StorageError::io(format!("cannot read upload {upload}")))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            left -= read as u64;
        }
        progress.hashed = Some((len, hasher.clone()));
        Ok(hasher)
    }
}

/// The rest of `file` as a stream of chunks of [`SEND_CHUNK`] bytes, each read on the
/// blocking pool while the one before it is being sent (one read ahead).
fn read_ahead(file: std::fs::File, context: String) -> BlobStream {
    type Pending = tokio::task::JoinHandle<(std::fs::File, std::io::Result<Vec<u8>>)>;
    fn next_chunk(mut file: std::fs::File) -> Pending {
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buffer = vec![0u8; SEND_CHUNK];
            let mut filled = 0;
            // Fill the chunk (a read may return less), stopping at the end of the file.
            let result = loop {
                match file.read(&mut buffer[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(read) => {
                        filled += read;
                        if filled == buffer.len() {
                            break Ok(());
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => break Err(error),
                }
            };
            buffer.truncate(filled);
            (file, result.map(|()| buffer))
        })
    }
    futures::stream::unfold(Some(next_chunk(file)), move |pending: Option<Pending>| {
        let context = context.clone();
        async move {
            let (file, result) = match pending?.await {
                Ok(done) => done,
                Err(error) => {
                    return Some((Err(StorageError::io(context)(std::io::Error::other(error.to_string()))), None));
                }
            };
            match result {
                Ok(chunk) if chunk.is_empty() => None,
                // A short chunk is the last: no read after it.
                Ok(chunk) if chunk.len() < SEND_CHUNK => Some((Ok(bytes::Bytes::from(chunk)), None)),
                Ok(chunk) => Some((Ok(bytes::Bytes::from(chunk)), Some(next_chunk(file)))),
                Err(error) => Some((Err(StorageError::io(context)(error)), None)),
            }
        }
    })
    .boxed()
}

/// A recent blob's content from `offset` on, as it is kept (no copy).
fn from_memory(chunks: &[bytes::Bytes], offset: u64) -> BlobStream {
    let mut skip = offset;
    let mut rest = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let len = chunk.len() as u64;
        if skip >= len {
            skip -= len;
            continue;
        }
        rest.push(Ok(chunk.slice(usize::try_from(skip).unwrap_or(usize::MAX)..)));
        skip = 0;
    }
    futures::stream::iter(rest).boxed()
}

/// Adds every chunk it is sent to `hasher`, until the sender is dropped.
fn hash_chunks(mut hasher: Hasher, mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Hasher {
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    hasher
}

/// Writes every chunk it is sent, until the sender is dropped, and returns how many bytes it
/// wrote.
///
/// Nothing is synced here: the one sync at the end of the upload makes the blob durable. On
/// this project's machines, syncing as the file grew (a `fdatasync` in a thread beside the
/// writes, or `posix_fadvise(POSIX_FADV_DONTNEED)` every 32 MiB of writes through the page
/// cache) made a 256 MiB upload 1.5 to 3 times slower as often as it made it faster: every
/// `fdatasync` commits the journal, which the appends then wait for. Direct writes
/// ([`writer`]) start the disk early without either.
fn write_chunks(
    mut writer: UploadWriter,
    mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> std::io::Result<u64> {
    while let Some(chunk) = chunks.blocking_recv() {
        writer.write(&chunk)?;
    }
    writer.finish()
}

/// Syncs a directory, so that a rename or a new file in it survives a crash.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle =
        tokio::fs::File::open(dir).await.map_err(StorageError::io(format!("cannot open {}", dir.display())))?;
    handle.sync_all().await.map_err(StorageError::io(format!("cannot sync {}", dir.display())))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)?).await {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::io(format!("cannot read blob {digest}"))(error)),
        }
    }

    async fn read(&self, digest: &Digest, offset: u64) -> Result<BlobStream, StorageError> {
        enum Opened {
            Cached(std::fs::File),
            Pooled(reader::PooledRead),
        }
        let path = self.blob_path(digest)?;
        if let Some(chunks) = self.buffers.recent(digest) {
            self.reads_from_memory.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(from_memory(&chunks, offset));
        }
        let direct_reads = self.direct_reads.clone();
        let direct_io = self.options.direct_io;
        let read_before = self.read_before.get(digest).is_some();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<Opened> {
            use std::io::Seek;
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            if direct_io
                && size >= reader::DIRECT_FROM
                && let Ok(permit) = direct_reads.try_acquire_owned()
                // Read again: through the page cache, into the same buffers.
                && let Some(first) = if read_before { file.try_clone().ok() } else { reader::open_direct(&path) }
            {
                return Ok(Opened::Pooled(reader::PooledRead { files: (first, file), size, permit }));
            }
            if offset > 0 {
                file.seek(SeekFrom::Start(offset))?;
            }
            Ok(Opened::Cached(file))
        })
        .await
        .map_err(|e| StorageError::io(format!("cannot open blob {digest}"))(std::io::Error::other(e.to_string())))?;
        let context = format!("cannot read blob {digest}");
        match opened {
            Ok(Opened::Cached(file)) => Ok(read_ahead(file, context)),
            Ok(Opened::Pooled(reading)) => {
                self.read_before.insert(digest.clone(), ());
                Ok(reader::pooled_chunks(reading, offset, self.buffers.clone(), context))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::BlobNotFound(digest.clone()))
            }
            Err(error) => Err(StorageError::io(format!("cannot open blob {digest}"))(error)),
        }
    }

    async fn read_small(&self, digest: &Digest) -> Result<bytes::Bytes, StorageError> {
        // A manifest from the page cache reads in microseconds: on this thread, without the
        // hops to the blocking pool that opening and reading through tokio::fs cost.
        match std::fs::read(self.blob_path(digest)?) {
            Ok(content) => Ok(content.into()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::BlobNotFound(digest.clone()))
            }
            Err(error) => Err(StorageError::io(format!("cannot read blob {digest}"))(error)),
        }
    }

    async fn start_upload(&self) -> Result<UploadId, StorageError> {
        let upload = UploadId::new();
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.upload_path(&upload))
            .await
            .map_err(StorageError::io(format!("cannot create upload {upload}")))?;
        Ok(upload)
    }

    async fn upload_size(&self, upload: &UploadId) -> Result<u64, StorageError> {
        self.upload_len(upload).await
    }

    async fn append(&self, upload: &UploadId, offset: u64, mut data: BlobStream) -> Result<u64, StorageError> {
        // The lock is owned so that the writing thread can hold it: if this future is dropped
        // (the client went away), the next append to the upload waits for the writes queued.
        let mut progress = self.progress(upload).lock_owned().await;
        let start = self.upload_len(upload).await.inspect_err(|_| self.forget(upload))?;
        if offset != start {
            return Err(StorageError::OffsetMismatch { expected: start, given: offset });
        }
        let hasher = self.hashed(upload, &mut progress, start).await?;
        // The upload's content so far, kept on while it may become a recent blob.
        let mut content = match progress.content.take() {
            _ if start == 0 && self.buffers.recent_budget() > 0 => Some(Pending::new(self.buffers.clone())),
            Some(content) if content.len() == start => Some(content),
            _ => None,
        };
        let path = self.upload_path(upload);
        let writer =
            UploadWriter::open(&path, start, self.options.direct_io, self.buffers.clone(), self.direct_writes.clone())
                .map_err(StorageError::io(format!("cannot open upload {upload}")))?;
        // Three stages on as many threads: this task receives, a blocking thread hashes and
        // another writes. SHA-256 is the one stage that cannot be split, so nothing else runs
        // on its thread. This task copies the chunks of a large append into pooled aligned
        // buffers as they arrive (so hyper reuses its read buffer rather than allocating fresh
        // memory for the next reads) and hands each full buffer to both threads; a small
        // append's chunks are handed over as they are, at its end.
        let (to_hasher, for_hasher) = tokio::sync::mpsc::channel::<bytes::Bytes>(PIPELINE_BUFFERS);
        let (to_writer, for_writer) = tokio::sync::mpsc::channel::<bytes::Bytes>(PIPELINE_BUFFERS);
        let hashing = tokio::task::spawn_blocking(move || hash_chunks(hasher, for_hasher));
        let writing = tokio::task::spawn_blocking(move || {
            let written = write_chunks(writer, for_writer);
            (progress, written)
        });
        let mut outcome = Ok(());
        let mut gathering = Gathering::new(self.buffers.clone());
        let mut full = Vec::new();
        'receiving: loop {
            let next = data.next().await;
            let end = !matches!(next, Some(Ok(_)));
            match next {
                Some(Ok(chunk)) => gathering.push(&chunk, &mut full),
                Some(Err(error)) => outcome = Err(error),
                None => {}
            }
            if end {
                full.extend(gathering.rest());
            }
            for buffer in full.drain(..) {
                if let Some(kept) = &mut content
                    && !(gathering.pooled() && kept.push(buffer.clone()))
                {
                    content = None;
                }
                // A send fails only when the writer stopped on an error, reported below.
                if to_hasher.send(buffer.clone()).await.is_err() || to_writer.send(buffer).await.is_err() {
                    break 'receiving;
                }
            }
            if end {
                break;
            }
        }
        drop((to_hasher, to_writer));
        let lost = |error: tokio::task::JoinError| {
            StorageError::io(format!("cannot write upload {upload}"))(std::io::Error::other(error.to_string()))
        };
        let hasher = hashing.await.map_err(lost)?;
        let (mut progress, written) = writing.await.map_err(lost)?;
        match written {
            Ok(written) => {
                // Every chunk written was hashed: the hasher is sent each chunk first.
                let size = start + written;
                progress.hashed = Some((size, hasher));
                progress.content = content.filter(|_| outcome.is_ok());
                outcome.map(|()| size)
            }
            Err(error) => {
                // What was written is unknown: the next append hashes the file again.
                progress.hashed = None;
                progress.content = None;
                Err(StorageError::io(format!("cannot write upload {upload}"))(error))
            }
        }
    }

    async fn finish_upload(&self, upload: &UploadId, digest: &Digest) -> Result<u64, StorageError> {
        let target = self.blob_path(digest)?;
        let progress = self.progress(upload);
        let mut progress = progress.lock().await;
        let size = self.upload_len(upload).await.inspect_err(|_| self.forget(upload))?;
        let computed = self.hashed(upload, &mut progress, size).await?.finish();
        let content = progress.content.take();
        let source = self.upload_path(upload);
        self.forget(upload);
        if &computed != digest {
            let _ = tokio::fs::remove_file(&source).await;
            return Err(StorageError::DigestMismatch { expected: digest.clone(), computed });
        }
        // Kept once the blob is in place (and durable), never before.
        let keep_recent = |content: Option<Pending>| {
            if let Some(content) = content
                && size >= reader::DIRECT_FROM
                && content.len() == size
            {
                content.into_recent(digest.clone());
            }
        };
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            // The same content is already there (its digest says so): one copy is enough.
            let _ = tokio::fs::remove_file(&source).await;
            keep_recent(content);
            return Ok(size);
        }
        let file =
            tokio::fs::File::open(&source).await.map_err(StorageError::io(format!("cannot open upload {upload}")))?;
        file.sync_data().await.map_err(StorageError::io(format!("cannot sync upload {upload}")))?;
        drop(file);
        let dir = target.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        tokio::fs::create_dir_all(&dir).await.map_err(StorageError::io(format!("cannot create {}", dir.display())))?;
        tokio::fs::rename(&source, &target)
            .await
            .map_err(StorageError::io(format!("cannot move upload {upload} into place as {digest}")))?;
        sync_dir(&dir).await?;
        keep_recent(content);
        Ok(size)
    }

    async fn cancel_upload(&self, upload: &UploadId) -> Result<(), StorageError> {
        let progress = self.progress(upload);
        let _writing = progress.lock().await;
        self.forget(upload);
        match tokio::fs::remove_file(self.upload_path(upload)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::UnknownUpload(upload.to_string()))
            }
            Err(error) => Err(StorageError::io(format!("cannot remove upload {upload}"))(error)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.buffers.forget_recent(digest);
        match tokio::fs::remove_file(self.blob_path(digest)?).await {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(StorageError::io(format!("cannot remove blob {digest}"))(error)),
        }
    }

    async fn remove_stale_uploads(&self, idle: std::time::Duration) -> Result<usize, StorageError> {
        let dir = self.root.join("uploads");
        let mut entries =
            tokio::fs::read_dir(&dir).await.map_err(StorageError::io(format!("cannot list {}", dir.display())))?;
        let mut removed = 0;
        while let Some(entry) =
            entries.next_entry().await.map_err(StorageError::io(format!("cannot list {}", dir.display())))?
        {
            let Ok(upload) = UploadId::parse(&entry.file_name().to_string_lossy()) else { continue };
            let modified = entry.metadata().await.ok().and_then(|m| m.modified().ok());
            let stale = modified.and_then(|m| m.elapsed().ok()).is_some_and(|age| age >= idle);
            if stale {
                // Not while a chunk is being written to it.
                let progress = self.progress(&upload);
                let Ok(_writing) = progress.try_lock() else { continue };
                self.forget(&upload);
                if tokio::fs::remove_file(entry.path()).await.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    async fn list(&self) -> Result<Vec<Digest>, StorageError> {
        let root = self.root.join("blobs").join("sha256");
        tokio::task::spawn_blocking(move || {
            let mut digests = Vec::new();
            let shards =
                std::fs::read_dir(&root).map_err(StorageError::io(format!("cannot list {}", root.display())))?;
            for shard in shards.flatten() {
                let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
                for file in files.flatten() {
                    // Anything that is not a digest's file (none is made here) is not a blob.
                    if let Ok(digest) = digest::parse(&format!("sha256:{}", file.file_name().to_string_lossy())) {
                        digests.push(digest);
                    }
                }
            }
            digests.sort_by(|a, b| a.digest().cmp(b.digest()));
            Ok(digests)
        })
        .await
        .map_err(|e| StorageError::Body(format!("listing blobs failed: {e}")))?
    }
}
