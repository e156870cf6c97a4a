//! The registry's index: which blobs each repository may serve, its manifests (with their
//! media type, subject and artifact type, for the referrers API) and its tags. The content
//! itself (blobs and manifests alike) is in the [`crate::storage::BlobStore`].
//!
//! [`FsIndex`] keeps it in files under the data dir, each written whole and durably
//! (temporary file, sync, rename, sync of the directory) before a push is answered, in the
//! layout `repositories/<name>/{_layers/<hex>, _manifests/<hex>.json,
//! _tags/<tag>, _referrers/<subject hex>/<hex>}`. Path components starting with `_` cannot be
//! part of a repository name, so the two never mix.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::{self, Digest};
use crate::storage::StorageError;
use crate::storage::fs::sync_dir;

/// What the index knows of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The registry's index of repositories.
#[async_trait]
pub trait Index: Send + Sync + 'static {
    /// Lets `repository` serve the blob (pushed there or mounted from another repository).
    async fn link_blob(&self, repository: &str, digest: &Digest) -> Result<(), StorageError>;
    async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StorageError>;
    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StorageError>;
    /// Records a manifest (its content is a blob), and points `tag` at it when given.
    async fn put_manifest(
        &self,
        repository: &str,
        digest: &Digest,
        entry: &ManifestEntry,
        tag: Option<&str>,
    ) -> Result<(), StorageError>;
    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<ManifestEntry>, StorageError>;
    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>, StorageError>;
    /// Removes a manifest and every tag pointing at it.
    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, StorageError>;
    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, StorageError>;
    /// Tags in lexical order after `after`, at most `limit`.
    async fn tags(&self, repository: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError>;
    /// Whether anything was ever pushed to the repository.
    async fn has_repository(&self, repository: &str) -> Result<bool, StorageError>;
    /// Repositories in lexical order after `after`, at most `limit`.
    async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError>;
    /// The manifests whose subject is `subject`.
    async fn referrers(&self, repository: &str, subject: &Digest)
    -> Result<Vec<(Digest, ManifestEntry)>, StorageError>;
}

/// The index in files.
pub struct FsIndex {
    root: PathBuf,
}

impl FsIndex {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into().join("repositories");
        std::fs::create_dir_all(&root).map_err(StorageError::io(format!("cannot create {}", root.display())))?;
        Ok(Self { root })
    }

    /// The directory of a repository; names are validated by the API before they get here.
    fn repository(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn hex(digest: &Digest) -> &str {
    digest.digest()
}

/// Writes `content` to `path` whole and durably: a temporary file next to it, synced, then
/// renamed, and the directory synced.
async fn write_whole(path: &Path, content: &[u8]) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let failed = || StorageError::io(format!("cannot write {}", path.display()));
    tokio::fs::create_dir_all(dir).await.map_err(StorageError::io(format!("cannot create {}", dir.display())))?;
    let temporary = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let mut file = tokio::fs::File::create(&temporary).await.map_err(failed())?;
    tokio::io::AsyncWriteExt::write_all(&mut file, content).await.map_err(failed())?;
    file.sync_all().await.map_err(failed())?;
    tokio::fs::rename(&temporary, path).await.map_err(failed())?;
    sync_dir(dir).await
}

async fn exists(path: &Path) -> Result<bool, StorageError> {
    tokio::fs::try_exists(path).await.map_err(StorageError::io(format!("cannot read {}", path.display())))
}

async fn remove(path: &Path) -> Result<bool, StorageError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StorageError::io(format!("cannot remove {}", path.display()))(error)),
    }
}

/// The names in a directory (none if it does not exist), without temporary files.
async fn names(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(StorageError::io(format!("cannot list {}", dir.display()))(error)),
    };
    let mut names = Vec::new();
    while let Some(entry) =
        entries.next_entry().await.map_err(StorageError::io(format!("cannot list {}", dir.display())))?
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn page(mut names: Vec<String>, after: Option<&str>, limit: usize) -> Vec<String> {
    names.retain(|name| after.is_none_or(|after| name.as_str() > after));
    names.truncate(limit);
    names
}

#[async_trait]
impl Index for FsIndex {
    async fn link_blob(&self, repository: &str, digest: &Digest) -> Result<(), StorageError> {
        write_whole(&self.repository(repository).join("_layers").join(hex(digest)), b"").await
    }

    async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StorageError> {
        exists(&self.repository(repository).join("_layers").join(hex(digest))).await
    }

    async fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StorageError> {
        remove(&self.repository(repository).join("_layers").join(hex(digest))).await
    }

    async fn put_manifest(
        &self,
        repository: &str,
        digest: &Digest,
        entry: &ManifestEntry,
        tag: Option<&str>,
    ) -> Result<(), StorageError> {
        let dir = self.repository(repository);
        let json = serde_json::to_vec(entry).map_err(|e| StorageError::Body(e.to_string()))?;
        write_whole(&dir.join("_manifests").join(format!("{}.json", hex(digest))), &json).await?;
        if let Some(subject) = entry.subject.as_deref().and_then(|s| digest::parse(s).ok()) {
            write_whole(&dir.join("_referrers").join(hex(&subject)).join(hex(digest)), b"").await?;
        }
        if let Some(tag) = tag {
            write_whole(&dir.join("_tags").join(tag), digest.to_string().as_bytes()).await?;
        }
        Ok(())
    }

    async fn manifest(&self, repository: &str, digest: &Digest) -> Result<Option<ManifestEntry>, StorageError> {
        let path = self.repository(repository).join("_manifests").join(format!("{}.json", hex(digest)));
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Body(format!("{} is damaged: {e}", path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::io(format!("cannot read {}", path.display()))(error)),
        }
    }

    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>, StorageError> {
        let path = self.repository(repository).join("_tags").join(tag);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => Ok(Some(digest::parse(text.trim())?)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::io(format!("cannot read {}", path.display()))(error)),
        }
    }

    async fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, StorageError> {
        let dir = self.repository(repository);
        let Some(entry) = self.manifest(repository, digest).await? else { return Ok(false) };
        for tag in names(&dir.join("_tags")).await? {
            if self.resolve_tag(repository, &tag).await?.as_ref() == Some(digest) {
                remove(&dir.join("_tags").join(&tag)).await?;
            }
        }
        if let Some(subject) = entry.subject.as_deref().and_then(|s| digest::parse(s).ok()) {
            remove(&dir.join("_referrers").join(hex(&subject)).join(hex(digest))).await?;
        }
        remove(&dir.join("_manifests").join(format!("{}.json", hex(digest)))).await
    }

    async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, StorageError> {
        remove(&self.repository(repository).join("_tags").join(tag)).await
    }

    async fn tags(&self, repository: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        Ok(page(names(&self.repository(repository).join("_tags")).await?, after, limit))
    }

    async fn has_repository(&self, repository: &str) -> Result<bool, StorageError> {
        let dir = self.repository(repository);
        Ok(exists(&dir.join("_layers")).await? || exists(&dir.join("_manifests")).await?)
    }

    async fn repositories(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        let root = self.root.clone();
        let all = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut pending = vec![(root.clone(), String::new())];
            while let Some((dir, name)) = pending.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                let mut is_repository = false;
                for entry in entries.flatten() {
                    let file = entry.file_name().to_string_lossy().to_string();
                    if file.starts_with('_') {
                        is_repository = true;
                    } else if !file.starts_with('.') && entry.path().is_dir() {
                        let child = if name.is_empty() { file } else { format!("{name}/{file}") };
                        pending.push((entry.path(), child));
                    }
                }
                if is_repository {
                    found.push(name);
                }
            }
            found.sort();
            found
        })
        .await
        .map_err(|e| StorageError::Body(format!("listing repositories failed: {e}")))?;
        Ok(page(all, after, limit))
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> Result<Vec<(Digest, ManifestEntry)>, StorageError> {
        let mut found = Vec::new();
        for name in names(&self.repository(repository).join("_referrers").join(hex(subject))).await? {
            let Ok(digest) = digest::parse(&format!("sha256:{name}")) else { continue };
            if let Some(entry) = self.manifest(repository, &digest).await? {
                found.push((digest, entry));
            }
        }
        Ok(found)
    }
}
