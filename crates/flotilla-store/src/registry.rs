//! The registry's index in the store: which blobs each repository may serve, its manifests
//! (media type, size, subject, artifact type, who pushed it and when) and its tags. The
//! content itself is in the registry's blob storage.
//!
//! Changes ([`RegistryChange`]) go through [`crate::Store::commit`] like every other
//! mutation, so a push's audit record commits with it, and the project's rules (immutable
//! tags, storage quota) are checked inside the same transaction against the Project as it is
//! then. Reads go through [`RegistryReads`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A change to the registry's index.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    /// Lets `repository` serve a blob of `size` bytes (pushed there or mounted from another
    /// repository). Refused when it would take the project over its storage quota. Not
    /// audited on its own: a push is audited with its manifest.
    LinkBlob { repository: String, digest: String, size: u64 },
    /// A manifest (its content a blob) and, when given, `tag` pointing at it. Every digest
    /// in `references` (config, layers, or an index's manifests) must be in the repository.
    /// Refused when `tag` is immutable and points elsewhere. Audited as `registry.push`.
    PutManifest { repository: String, manifest: NewManifest, references: Vec<String>, tag: Option<String> },
    /// A manifest and every tag pointing at it; refused when one of them is immutable.
    /// Audited as `registry.delete`.
    DeleteManifest { repository: String, digest: String },
    /// Refused when the tag is immutable. Audited as `registry.delete`.
    DeleteTag { repository: String, tag: String },
    /// Audited as `registry.delete`.
    UnlinkBlob { repository: String, digest: String },
    /// Garbage collection's sweep of the index: forgets the blobs among `digests` that
    /// nothing references (no manifest is or refers to them) and that were last linked before
    /// `linked_before_micros`. Checked again here, in the writer, so a push that committed
    /// meanwhile keeps its blobs. Audited as `registry.gc`.
    ForgetBlobs { digests: Vec<String>, linked_before_micros: i64 },
}

/// A manifest being pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewManifest {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
}

/// A manifest as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest's own bytes.
    pub size: u64,
    /// The manifest with what it refers to (config and layers, or an index's manifests).
    pub total_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub pushed_by: String,
    pub pushed_micros: i64,
}

/// A tag and the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRecord {
    pub tag: String,
    pub digest: String,
    pub pushed_by: String,
    pub pushed_micros: i64,
}

/// A repository and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRecord {
    pub name: String,
    pub project: String,
    pub manifests: u64,
    pub tags: u64,
    pub created_micros: i64,
    pub updated_micros: i64,
}

/// A page of repositories, in name order.
#[derive(Debug, Clone, Default)]
pub struct RepositoryQuery {
    /// Only this project's repositories.
    pub project: Option<String>,
    /// Only names containing this.
    pub name_contains: Option<String>,
    /// Names after this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// A blob the index knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub digest: String,
    pub size: u64,
    pub linked_micros: i64,
}

/// An object running an image of a repository (see [`RegistryReads::image_users`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub key: flotilla_core::ObjectKey,
    /// The image as the object names it (`host/repo:tag`, `host/repo@sha256:…`).
    pub image: String,
}

/// What a project's rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryRefusal {
    #[error("tag {tag:?} of {repository} is immutable: it cannot be overwritten or deleted")]
    ImmutableTag { repository: String, tag: String },
    #[error(
        "project {project:?} would exceed its registry storage quota of {quota} bytes: {used} bytes are stored and this adds {adding}"
    )]
    QuotaExceeded { project: String, quota: u64, used: u64, adding: u64 },
    #[error("{digest} is not in {repository}")]
    UnknownReference { repository: String, digest: String },
    #[error("project {0:?} does not exist")]
    UnknownProject(String),
}

/// Reads of the registry's index.
#[async_trait]
pub trait RegistryReads: Send + Sync {
    /// The size of a blob `repository` may serve.
    async fn linked_blob(&self, repository: &str, digest: &str) -> Result<Option<u64>, StoreError>;
    async fn blob(&self, digest: &str) -> Result<Option<BlobRecord>, StoreError>;
    async fn manifest(&self, repository: &str, digest: &str) -> Result<Option<ManifestRecord>, StoreError>;
    async fn tag(&self, repository: &str, tag: &str) -> Result<Option<TagRecord>, StoreError>;
    /// The manifest `tag` points at, in one read (what every pull by tag asks first).
    async fn tagged_manifest(&self, repository: &str, tag: &str) -> Result<Option<ManifestRecord>, StoreError>;
    /// Tags in lexical order after `after`, at most `limit`.
    async fn tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Vec<TagRecord>, StoreError>;
    /// The tags pointing at one manifest.
    async fn tags_of(&self, repository: &str, digest: &str) -> Result<Vec<TagRecord>, StoreError>;
    /// Manifests, newest push first; the page starts after the manifest `after` names.
    async fn manifests(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ManifestRecord>, StoreError>;
    async fn repository(&self, name: &str) -> Result<Option<RepositoryRecord>, StoreError>;
    async fn repositories(&self, query: &RepositoryQuery) -> Result<Vec<RepositoryRecord>, StoreError>;
    /// The manifests of `repository` whose subject is `subject`.
    async fn referrers(&self, repository: &str, subject: &str) -> Result<Vec<ManifestRecord>, StoreError>;
    /// Whether an index (a manifest list) of `repository` refers to the manifest `digest`.
    async fn referenced_by_index(&self, repository: &str, digest: &str) -> Result<bool, StoreError>;
    /// Bytes the project stores: each blob it links counted once.
    async fn usage(&self, project: &str) -> Result<u64, StoreError>;
    /// Objects (Applications) running an image of one of `repositories`, each named with its
    /// host (`127.0.0.1:8080/shop/web`), by tag or digest; at most `limit`.
    async fn image_users(&self, repositories: &[String], limit: u32) -> Result<Vec<ImageUser>, StoreError>;
    /// Blobs nothing references, last linked before `linked_before_micros`, at most `limit`.
    async fn unreferenced_blobs(&self, linked_before_micros: i64, limit: u32) -> Result<Vec<String>, StoreError>;
}
