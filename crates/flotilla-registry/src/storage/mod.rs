//! Blob storage: the [`BlobStore`] trait, its errors and upload identifiers.
//!
//! # Expected flow
//! A push starts an upload ([`BlobStore::start_upload`]), sends its content in one piece or
//! in chunks ([`BlobStore::append`], each at the offset the upload has reached, so that a
//! client can resume after asking [`BlobStore::upload_size`]), then names the digest it
//! expects ([`BlobStore::finish_upload`]). Only then, and only if the content has that
//! digest, does the blob become visible. A pull asks [`BlobStore::stat`] and streams
//! [`BlobStore::read`].
//!
//! # Guarantees (checked by [`crate::conformance`])
//! - A blob is visible whole or not at all: an upload that is cancelled, abandoned, fails
//!   its digest check or is cut short by a crash never shows as a blob.
//! - A blob's content always has its digest.
//! - Appending at an offset other than the upload's size changes nothing and says which
//!   offset was expected.
//! - Finishing an upload of a blob that already exists keeps one copy.

pub mod fs;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::digest::{Digest, DigestError};

/// Bytes of a blob or of an upload's chunk, as they stream.
pub type BlobStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Identifies an upload in progress (a UUID, as in the upload URLs of the OCI Distribution
/// API).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Parses an id given by a client: only what [`UploadId::new`] makes is accepted, so an
    /// id is always safe as a file or object name.
    pub fn parse(text: &str) -> Result<Self, StorageError> {
        let uuid = uuid::Uuid::parse_str(text).map_err(|_| StorageError::UnknownUpload(text.to_string()))?;
        let canonical = uuid.hyphenated().to_string();
        if canonical != text {
            return Err(StorageError::UnknownUpload(text.to_string()));
        }
        Ok(Self(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors of blob storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} is not in the registry")]
    BlobNotFound(Digest),
    #[error("upload {0} is not in progress")]
    UnknownUpload(String),
    #[error("the chunk starts at byte {given}, but the upload has {expected} bytes: send from byte {expected}")]
    OffsetMismatch { expected: u64, given: u64 },
    #[error("the content's digest is {computed}, not {expected}: nothing was stored")]
    DigestMismatch { expected: Digest, computed: Digest },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The stream of a chunk failed (the client went away).
    #[error("the upload's content could not be read: {0}")]
    Body(String),
}

impl StorageError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Where blobs are kept. Every implementation runs [`crate::conformance`].
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The blob's size in bytes, or `None` when there is no such blob.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// The blob's bytes from `offset` on (0 for all of it, more for a ranged read).
    async fn read(&self, digest: &Digest, offset: u64) -> Result<BlobStream, StorageError>;

    /// A small blob (a manifest) whole, in one piece. The default collects [`BlobStore::read`].
    async fn read_small(&self, digest: &Digest) -> Result<bytes::Bytes, StorageError> {
        use futures::TryStreamExt;
        let chunks: Vec<bytes::Bytes> = self.read(digest, 0).await?.try_collect().await?;
        Ok(chunks.concat().into())
    }

    /// Starts an upload.
    async fn start_upload(&self) -> Result<UploadId, StorageError>;

    /// How many bytes the upload has received (where the next chunk must start).
    async fn upload_size(&self, upload: &UploadId) -> Result<u64, StorageError>;

    /// Appends `data` to the upload; `offset` must be [`BlobStore::upload_size`]. Returns the
    /// new size.
    async fn append(&self, upload: &UploadId, offset: u64, data: BlobStream) -> Result<u64, StorageError>;

    /// Makes the upload's content the blob `digest`, if that is its digest: the upload ends
    /// either way. Returns the blob's size.
    async fn finish_upload(&self, upload: &UploadId, digest: &Digest) -> Result<u64, StorageError>;

    /// Abandons an upload.
    async fn cancel_upload(&self, upload: &UploadId) -> Result<(), StorageError>;

    /// Removes a blob; `false` when there was none.
    async fn delete(&self, digest: &Digest) -> Result<bool, StorageError>;

    /// Every blob (for garbage collection).
    async fn list(&self) -> Result<Vec<Digest>, StorageError>;

    /// Abandons the uploads that have not grown for `idle` (clients that went away), and
    /// says how many.
    async fn remove_stale_uploads(&self, idle: std::time::Duration) -> Result<usize, StorageError>;
}
