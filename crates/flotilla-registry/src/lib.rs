//! The delivery center's OCI registry.
//!
//! This first part is its storage: blobs (image layers, configs, manifests, artifacts) kept
//! by content address.
//!
//! - [`digest`]: content digests (`sha256:<hex>`, as the OCI specifications define them) and
//!   computing them while the bytes stream through.
//! - [`storage`]: the [`storage::BlobStore`] trait every storage backend implements (the
//!   filesystem under the data dir now, S3-compatible object storage later), with resumable
//!   uploads whose content becomes visible only once its digest is verified.
//! - [`storage::fs`]: the filesystem implementation.
//! - [`conformance`]: the behaviour every implementation must show; each implementation's
//!   tests run it.

pub mod conformance;
pub mod digest;
pub mod storage;

pub use digest::Digest;
pub use storage::{BlobStore, BlobStream, StorageError, UploadId};
