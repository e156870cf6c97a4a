//! A client of another registry's Distribution API (`oci-client`: the token flow, plain HTTP
//! or TLS), with the operations replication and the proxy cache need: tags and catalog,
//! manifests as raw bytes, blobs as streams.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::Value;

use crate::http::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Where and how to reach a registry.
#[derive(Clone)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP instead of TLS.
    pub plain_http: bool,
    /// Accept a certificate that does not verify.
    pub insecure: bool,
    pub auth: RegistryAuth,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Endpoint").field("host", &self.host).field("plain_http", &self.plain_http).finish()
    }
}

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub digest: String,
    pub media_type: String,
    pub document: Value,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// The descriptors it refers to: an index's manifests, or an image's config and layers.
    pub fn children(&self) -> Vec<(String, u64)> {
        let descriptor = |d: &Value| Some((d.get("digest")?.as_str()?.to_string(), d.get("size")?.as_u64()?));
        if self.is_index() {
            return self.document["manifests"].as_array().into_iter().flatten().filter_map(descriptor).collect();
        }
        let mut found: Vec<(String, u64)> = descriptor(&self.document["config"]).into_iter().collect();
        found.extend(self.document["layers"].as_array().into_iter().flatten().filter_map(descriptor));
        found
    }
}

const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];

/// A connected registry.
pub struct Remote {
    client: Client,
    endpoint: Endpoint,
}

impl Remote {
    pub fn new(endpoint: Endpoint) -> Self {
        let config = ClientConfig {
            protocol: if endpoint.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            accept_invalid_certificates: endpoint.insecure,
            use_monolithic_push: true,
            ..ClientConfig::default()
        };
        Self { client: Client::new(config), endpoint }
    }

    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    fn reference(&self, repository: &str, reference: &str) -> Reference {
        if reference.contains(':') {
            Reference::with_digest(self.endpoint.host.clone(), repository.to_string(), reference.to_string())
        } else {
            Reference::with_tag(self.endpoint.host.clone(), repository.to_string(), reference.to_string())
        }
    }

    fn failed(&self, what: &str) -> impl Fn(OciDistributionError) -> RemoteError + '_ {
        let registry = self.endpoint.host.clone();
        let what = what.to_string();
        move |error| RemoteError::Registry { registry: registry.clone(), message: format!("{what}: {error}") }
    }

    /// Gets (or reuses) a token for `operation` on `image`'s repository, for the calls of
    /// oci-client that do not authenticate by themselves (blobs, manifest pushes).
    async fn authenticate(&self, image: &Reference, operation: RegistryOperation) -> Result<(), OciDistributionError> {
        self.client.auth(image, &self.endpoint.auth, operation).await.map(|_| ())
    }

    /// Every tag of `repository` (paged).
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RemoteError> {
        let image = self.reference(repository, "latest");
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = self
                .client
                .list_tags(&image, &self.endpoint.auth, Some(1000), last.as_deref())
                .await
                .map_err(self.failed(&format!("listing the tags of {repository}")))?;
            let count = page.tags.len();
            tags.extend(page.tags.into_iter().filter(|tag| Some(tag) != last.as_ref()));
            if count < 1000 {
                return Ok(tags);
            }
        }
    }

    /// The repositories of the registry's catalog (registries without one refuse).
    pub async fn catalog(&self) -> Result<Vec<String>, RemoteError> {
        let image = self.reference("library/catalog", "latest");
        self.client
            .catalog(&image, &self.endpoint.auth, None, None)
            .await
            .map(|page| page.repositories)
            .map_err(self.failed("listing the catalog"))
    }

    /// The manifest `reference` (tag or digest) of `repository`, verified against its digest.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, RemoteError> {
        let image = self.reference(repository, reference);
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&image, &self.endpoint.auth, ACCEPTED)
            .await
            .map_err(self.failed(&format!("fetching {repository}:{reference}")))?;
        let computed = crate::digest::of(&bytes).to_string();
        if computed != digest || (reference.contains(':') && reference != computed) {
            return Err(RemoteError::Invalid(format!(
                "{}/{repository}:{reference} answered a manifest whose digest is {computed}",
                self.endpoint.host
            )));
        }
        let document: Value = serde_json::from_slice(&bytes)
            .map_err(|e| RemoteError::Invalid(format!("{repository}:{reference} is not JSON: {e}")))?;
        let media_type = document
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| document.get("manifests").map(|_| OCI_INDEX.to_string()))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Manifest { bytes, digest: computed, media_type, document })
    }

    /// The digest of the manifest `reference`, when the registry answers one (`None` when it
    /// has none, or cannot say: the caller then copies rather than skips).
    pub async fn manifest_digest(&self, repository: &str, reference: &str) -> Option<String> {
        let image = self.reference(repository, reference);
        self.client.fetch_manifest_digest(&image, &self.endpoint.auth).await.ok()
    }

    pub async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool, RemoteError> {
        let image = self.reference(repository, digest);
        // A refused token shows in the request that follows, with its reason.
        self.authenticate(&image, RegistryOperation::Pull).await.ok();
        self.client.blob_exists(&image, digest).await.map_err(self.failed(&format!("checking {digest}")))
    }

    /// The blob's content, as a stream.
    pub async fn blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, RemoteError> {
        let image = self.reference(repository, digest);
        // A refused token shows in the request that follows, with its reason.
        self.authenticate(&image, RegistryOperation::Pull).await.ok();
        let sized =
            self.client.pull_blob_stream(&image, digest).await.map_err(self.failed(&format!("fetching {digest}")))?;
        Ok(sized.stream)
    }

    /// Uploads a blob of `size` bytes from `content`.
    pub async fn push_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        content: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> Result<(), RemoteError> {
        let image = self.reference(repository, digest);
        self.authenticate(&image, RegistryOperation::Push)
            .await
            .map_err(self.failed(&format!("authenticating to push to {repository}")))?;
        let stream = content.map_err(|e| OciDistributionError::GenericError(Some(e.to_string()))).boxed();
        self.client
            .push_blob_stream(&image, stream, digest, Some(size))
            .await
            .map(|_| ())
            .map_err(self.failed(&format!("uploading {digest} to {repository}")))
    }

    /// Stores `manifest` as `reference` (a tag, or its digest) of `repository`.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), RemoteError> {
        let image = self.reference(repository, reference);
        self.authenticate(&image, RegistryOperation::Push)
            .await
            .map_err(self.failed(&format!("authenticating to push to {repository}")))?;
        let content_type = manifest
            .media_type
            .parse()
            .map_err(|_| RemoteError::Invalid(format!("media type {:?} is not a header value", manifest.media_type)))?;
        self.client
            .push_manifest_raw(&image, manifest.bytes.clone(), content_type)
            .await
            .map(|_| ())
            .map_err(self.failed(&format!("storing {repository}:{reference}")))
    }
}
