//! The delivery center's OCI registry.
//!
//! So far: its storage, index, the Distribution API and its bearer tokens. `flotilla-api`
//! serves the API at `/v2/` behind the token flow (see its `registry` module).
//!
//! - [`digest`]: content digests (`sha256:<hex>`, as the OCI specifications define them) and
//!   computing them while the bytes stream through.
//! - [`storage`]: the [`storage::BlobStore`] trait every storage backend implements (the
//!   filesystem under the data dir now, S3-compatible object storage later), with resumable
//!   uploads whose content becomes visible only once its digest is verified.
//! - [`storage::fs`]: the filesystem implementation.
//! - [`names`]: repository names and tags, validated (and so safe as path components).
//! - The index (which blobs, manifests and tags each repository has, who pushed what) is in
//!   the store: [`flotilla_store::registry`], so that a push commits with its audit record.
//! - [`gc`]: garbage collection of blobs nothing references, safe while pushes run.
//! - [`remote`]: a client of other registries (oci-client); [`replicate`]: copying images
//!   between registries for replication rules.
//! - [`http`]: the OCI Distribution API under `/v2/`, with the mapping of errors to the
//!   specification's codes and statuses in one place.
//! - [`test_image`]: small real images (layer tars, an OCI image layout) for tests;
//!   [`test_registry`]: Debian's `docker-registry` on loopback, the peer of tests and benchmarks.
//! - [`token`]: bearer tokens of the Docker/OCI token flow (scopes, signing, challenges).
//! - [`conformance`]: the behaviour every implementation must show; each implementation's
//!   tests run it.

pub mod conformance;
pub mod digest;
pub mod gc;
pub mod http;
pub mod manifest_cache;
pub mod names;
pub mod remote;
pub mod replicate;
pub mod storage;
pub mod test_image;
pub mod test_registry;
pub mod token;

pub use digest::Digest;
pub use storage::{BlobStore, BlobStream, StorageError, UploadId};
