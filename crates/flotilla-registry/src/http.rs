//! The OCI Distribution API (v1.1) under `/v2/`: blobs (monolithic, chunked and resumable
//! uploads, cross-repository mounts, ranged reads), manifests and indexes (OCI and Docker
//! media types) by tag or digest, tag lists and the catalog with paging, deletion, and the
//! referrers API.
//!
//! This router has no authentication of its own: `flotilla-api`'s `registry` module serves
//! it behind the token flow and project roles, and audits what it does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use flotilla_core::audit::Actor;
use flotilla_store::registry::{NewManifest, RegistryChange, RegistryReads, RegistryRefusal, RepositoryQuery};
use flotilla_store::{Change, Mutation, Store, StoreError};

use crate::digest::{self, Digest};
use crate::manifest_cache::ManifestCache;
use crate::names;
use crate::storage::{BlobStore, BlobStream, StorageError, UploadId};

mod unread_body;
pub use unread_body::close_if_body_unread;

/// The largest manifest accepted (the specification suggests registries accept at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Tags or repositories in one page when the client does not ask for fewer.
const DEFAULT_PAGE: u32 = 1000;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What the API serves from: blob storage and the store, which keeps the index
/// ([`flotilla_store::registry`]).
pub struct Registry {
    pub blobs: Arc<dyn BlobStore>,
    pub store: Arc<dyn Store>,
    /// Held shared from the moment a blob is stored until the index links it, and exclusively
    /// while garbage collection deletes blobs: a blob is never deleted between the two.
    pub(crate) sweep: tokio::sync::RwLock<()>,
    /// Manifests' bytes by digest, for pulls.
    manifests: ManifestCache,
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, store: Arc<dyn Store>) -> Self {
        Self { blobs, store, sweep: tokio::sync::RwLock::new(()), manifests: ManifestCache::default() }
    }

    fn index(&self) -> &dyn RegistryReads {
        self.store.registry()
    }

    /// Commits a change to the index; the store audits it (and its refusal).
    async fn change(&self, actor: &Actor, change: RegistryChange) -> Result<(), ApiError> {
        let mutation = Mutation { actor: actor.clone(), change: Change::Registry(change) };
        self.store.commit(mutation).await.map(|_| ()).map_err(|error| ApiError::from(error).audited())
    }
}

/// Marks a response whose operation the store has audited (success or refusal), so that the
/// layer serving the router does not audit it again.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// Who is asking, for the index's audit records, when the serving layer does not say: the
/// request extensions carry an [`Actor`] otherwise.
fn anonymous() -> Actor {
    Actor { user: "anonymous".into(), auth: "none".into(), ..Actor::default() }
}

/// The `/v2/` routes. A response that refuses a request before reading its body closes the
/// connection ([`close_if_body_unread`]).
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2/", any(dispatch))
        .route("/v2/{*path}", any(dispatch))
        .with_state(registry)
        .layer(axum::middleware::from_fn(close_if_body_unread))
}

/// An error in the specification's format: `{"errors": [{"code", "message", "detail"}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(header::HeaderName, String)>,
    audited: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), headers: Vec::new(), audited: false }
    }

    fn audited(mut self) -> Self {
        self.audited = true;
        self
    }

    /// The same refusal with another status and code (an unknown reference is a missing blob
    /// to one request and a missing manifest to another).
    fn into_unknown(mut self, code: &'static str, status: StatusCode) -> Self {
        if self.code == "NAME_UNKNOWN" || self.code == "MANIFEST_BLOB_UNKNOWN" {
            self.code = code;
            self.status = status;
        }
        self
    }

    fn with_header(mut self, name: header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message, "detail": {}}]});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.audited {
            response.extensions_mut().insert(Audited);
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        with_api_version(response)
    }
}

/// The one place storage errors become statuses and codes.
impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::BlobNotFound(_) => Self::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", error.to_string()),
            StorageError::UnknownUpload(_) => {
                Self::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", error.to_string())
            }
            StorageError::OffsetMismatch { expected, .. } => {
                Self::new(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", error.to_string())
                    .with_header(header::RANGE, range(*expected))
            }
            StorageError::DigestMismatch { .. } | StorageError::Digest(_) => {
                Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", error.to_string())
            }
            StorageError::Body(_) => Self::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", error.to_string()),
            StorageError::Io { .. } => {
                tracing::error!(%error, "registry storage failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error")
            }
        }
    }
}

/// The one place the store's errors become statuses and codes.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Registry(RegistryRefusal::ImmutableTag { .. } | RegistryRefusal::QuotaExceeded { .. }) => {
                Self::new(StatusCode::FORBIDDEN, "DENIED", error.to_string())
            }
            StoreError::Registry(RegistryRefusal::UnknownReference { .. }) => {
                Self::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", error.to_string())
            }
            StoreError::Registry(RegistryRefusal::UnknownProject(_)) => {
                Self::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", error.to_string())
            }
            StoreError::Closed => Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", error.to_string()),
            _ => {
                tracing::error!(%error, "the registry's index failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error")
            }
        }
    }
}

impl From<digest::DigestError> for ApiError {
    fn from(error: digest::DigestError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", error.to_string())
    }
}

impl From<names::NameError> for ApiError {
    fn from(error: names::NameError) -> Self {
        match error {
            names::NameError::Repository(_) => Self::new(StatusCode::BAD_REQUEST, "NAME_INVALID", error.to_string()),
            names::NameError::Tag(_) => Self::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", error.to_string()),
        }
    }
}

type ApiResult = Result<Response, ApiError>;

fn with_api_version(mut response: Response) -> Response {
    response.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    response
}

/// `Range: 0-<last byte>` of an upload that has `size` bytes (`0-0` when empty, as
/// distribution answers).
fn range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn respond(status: StatusCode, headers: Vec<(&'static str, String)>, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    with_api_version(response)
}

async fn base() -> Response {
    respond(StatusCode::OK, vec![("Content-Type", "application/json".into())], Body::from("{}"))
}

/// What a path under `/v2/` names (repository names not validated yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/v2/` itself.
    Base,
    Catalog,
    Tags(String),
    /// An upload of the repository: none yet (`POST …/blobs/uploads/`) or this one.
    Uploads(String, Option<String>),
    Blob(String, String),
    Manifest(String, String),
    Referrers(String, String),
}

/// What `path` (the request's whole path) names; `None` for no endpoint of the API.
pub fn target(path: &str) -> Option<Target> {
    let path = path.strip_prefix("/v2/")?;
    if path.is_empty() {
        return Some(Target::Base);
    }
    if path == "_catalog" {
        return Some(Target::Catalog);
    }
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some(Target::Tags(name.to_string()));
    }
    if let Some(name) = path.strip_suffix("/blobs/uploads/").or_else(|| path.strip_suffix("/blobs/uploads")) {
        return Some(Target::Uploads(name.to_string(), None));
    }
    for (marker, make) in [
        ("/blobs/uploads/", (|n, r| Target::Uploads(n, Some(r))) as fn(String, String) -> Target),
        ("/blobs/", Target::Blob),
        ("/manifests/", Target::Manifest),
        ("/referrers/", Target::Referrers),
    ] {
        if let Some((name, rest)) = path.rsplit_once(marker)
            && !rest.is_empty()
            && !rest.contains('/')
        {
            return Some(make(name.to_string(), rest.to_string()));
        }
    }
    None
}

async fn dispatch(
    State(registry): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    actor: Option<Extension<Actor>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = actor.map_or_else(anonymous, |Extension(actor)| actor);
    // From the URI rather than a path parameter: the router may be mounted under routes
    // that capture parameters of their own.
    let result = match target(uri.path()) {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("no such endpoint: {}", uri.path()))),
        Some(target) => handle(&registry, &actor, method, target, &query, &headers, body).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    registry: &Registry,
    actor: &Actor,
    method: Method,
    target: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let unsupported = || ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method not allowed here");
    match target {
        Target::Base => Ok(base().await),
        Target::Catalog if method == Method::GET => catalog(registry, query).await,
        Target::Tags(name) if method == Method::GET => tags(registry, &name, query).await,
        Target::Uploads(name, upload) => {
            names::repository(&name)?;
            match (method, upload) {
                (Method::POST, None) => start_upload(registry, actor, &name, query, body).await,
                (Method::PATCH, Some(upload)) => patch_upload(registry, &name, &upload, headers, body).await,
                (Method::PUT, Some(upload)) => finish_upload(registry, actor, &name, &upload, query, body).await,
                (Method::GET, Some(upload)) => upload_status(registry, &name, &upload).await,
                (Method::DELETE, Some(upload)) => {
                    registry.blobs.cancel_upload(&UploadId::parse(&upload)?).await?;
                    Ok(respond(StatusCode::NO_CONTENT, vec![], Body::empty()))
                }
                _ => Err(unsupported()),
            }
        }
        Target::Blob(name, digest) => {
            names::repository(&name)?;
            let digest = digest::parse(&digest)?;
            match method {
                Method::GET | Method::HEAD => get_blob(registry, &name, &digest, headers, method == Method::HEAD).await,
                Method::DELETE => {
                    let change = RegistryChange::UnlinkBlob { repository: name.clone(), digest: digest.to_string() };
                    registry
                        .change(actor, change)
                        .await
                        .map_err(|e| e.into_unknown("BLOB_UNKNOWN", StatusCode::NOT_FOUND))?;
                    Ok(audited(respond(StatusCode::ACCEPTED, vec![], Body::empty())))
                }
                _ => Err(unsupported()),
            }
        }
        Target::Manifest(name, reference) => {
            names::repository(&name)?;
            match method {
                Method::PUT => put_manifest(registry, actor, &name, &reference, headers, body).await,
                Method::GET | Method::HEAD => get_manifest(registry, &name, &reference, method == Method::HEAD).await,
                Method::DELETE => delete_manifest(registry, actor, &name, &reference).await,
                _ => Err(unsupported()),
            }
        }
        Target::Referrers(name, digest) if method == Method::GET => {
            names::repository(&name)?;
            referrers(registry, &name, &digest::parse(&digest)?, query).await
        }
        _ => Err(unsupported()),
    }
}

fn audited(mut response: Response) -> Response {
    response.extensions_mut().insert(Audited);
    response
}

fn body_stream(body: Body) -> BlobStream {
    body.into_data_stream().map_err(|error| StorageError::Body(error.to_string())).boxed()
}

fn upload_location(name: &str, upload: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{upload}")
}

fn upload_accepted(name: &str, upload: &UploadId, size: u64, status: StatusCode) -> Response {
    respond(
        status,
        vec![
            ("Location", upload_location(name, upload)),
            ("Range", range(size)),
            ("Docker-Upload-UUID", upload.to_string()),
            ("Content-Length", "0".into()),
        ],
        Body::empty(),
    )
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    respond(
        StatusCode::CREATED,
        vec![
            ("Location", format!("/v2/{name}/blobs/{digest}")),
            ("Docker-Content-Digest", digest.to_string()),
            ("Content-Length", "0".into()),
        ],
        Body::empty(),
    )
}

/// Links a blob into `name`; the caller holds `registry.sweep` shared since the blob was
/// stored or found.
async fn link(registry: &Registry, actor: &Actor, name: &str, digest: &Digest, size: u64) -> Result<(), ApiError> {
    let change = RegistryChange::LinkBlob { repository: name.to_string(), digest: digest.to_string(), size };
    registry.change(actor, change).await
}

async fn start_upload(
    registry: &Registry,
    actor: &Actor,
    name: &str,
    query: &HashMap<String, String>,
    body: Body,
) -> ApiResult {
    if let (Some(mount), Some(from)) = (query.get("mount"), query.get("from")) {
        let digest = digest::parse(mount)?;
        // Mounted only from a repository that has it; otherwise an ordinary upload starts.
        let _sweep = registry.sweep.read().await;
        if names::repository(from).is_ok()
            && let Some(size) = registry.index().linked_blob(from, digest.as_ref()).await?
            && registry.blobs.stat(&digest).await?.is_some()
        {
            link(registry, actor, name, &digest, size).await?;
            return Ok(blob_created(name, &digest));
        }
    }
    let upload = registry.blobs.start_upload().await?;
    if let Some(digest) = query.get("digest") {
        let digest = digest::parse(digest)?;
        registry.blobs.append(&upload, 0, body_stream(body)).await?;
        let _sweep = registry.sweep.read().await;
        let size = registry.blobs.finish_upload(&upload, &digest).await?;
        link(registry, actor, name, &digest, size).await?;
        return Ok(blob_created(name, &digest));
    }
    Ok(upload_accepted(name, &upload, 0, StatusCode::ACCEPTED))
}

/// The start of a `Content-Range: <start>-<end>` header (`bytes=` tolerated).
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim().trim_start_matches("bytes=").trim_start_matches("bytes ");
    let start = text.split_once('-').map(|(start, _)| start).unwrap_or(text);
    start.trim().parse::<u64>().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
            format!("Content-Range {text:?} is not <start>-<end>"),
        )
    })
}

async fn patch_upload(registry: &Registry, name: &str, upload: &str, headers: &HeaderMap, body: Body) -> ApiResult {
    let upload = UploadId::parse(upload)?;
    let offset = match content_range_start(headers)? {
        Some(start) => start,
        None => registry.blobs.upload_size(&upload).await?,
    };
    let size = registry.blobs.append(&upload, offset, body_stream(body)).await?;
    Ok(upload_accepted(name, &upload, size, StatusCode::ACCEPTED))
}

async fn finish_upload(
    registry: &Registry,
    actor: &Actor,
    name: &str,
    upload: &str,
    query: &HashMap<String, String>,
    body: Body,
) -> ApiResult {
    let upload = UploadId::parse(upload)?;
    let Some(digest) = query.get("digest") else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "the digest query parameter is missing"));
    };
    let digest = digest::parse(digest)?;
    let size = registry.blobs.upload_size(&upload).await?;
    registry.blobs.append(&upload, size, body_stream(body)).await?;
    let _sweep = registry.sweep.read().await;
    let size = registry.blobs.finish_upload(&upload, &digest).await?;
    link(registry, actor, name, &digest, size).await?;
    Ok(blob_created(name, &digest))
}

async fn upload_status(registry: &Registry, name: &str, upload: &str) -> ApiResult {
    let upload = UploadId::parse(upload)?;
    let size = registry.blobs.upload_size(&upload).await?;
    Ok(upload_accepted(name, &upload, size, StatusCode::NO_CONTENT))
}

/// `Range: bytes=<start>-[<end>]`, resolved against a blob of `size` bytes.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default();
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UNKNOWN",
            format!("range {text:?} is not within {size} bytes"),
        )
        .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    let spec = text.strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
    let (start, end) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let start: u64 = start.trim().parse().map_err(|_| unsatisfiable())?;
    let end: u64 =
        if end.trim().is_empty() { size.saturating_sub(1) } else { end.trim().parse().map_err(|_| unsatisfiable())? };
    if start >= size || end < start {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end.min(size - 1))))
}

async fn get_blob(registry: &Registry, name: &str, digest: &Digest, headers: &HeaderMap, head: bool) -> ApiResult {
    let Some(size) = registry.index().linked_blob(name, digest.as_ref()).await? else {
        return Err(StorageError::BlobNotFound(digest.clone()).into());
    };
    let range = requested_range(headers, size)?;
    let (start, length) = range.map_or((0, size), |(start, end)| (start, end - start + 1));
    let mut response_headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("Docker-Content-Digest", digest.to_string()),
        ("Content-Length", length.to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    let status = match range {
        Some((start, end)) => {
            response_headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    if head {
        return Ok(respond(status, response_headers, Body::empty()));
    }
    let stream = registry.blobs.read(digest, start).await?;
    let limited = stream
        .scan(length, |left, chunk| {
            let chunk = chunk.map(|mut bytes: Bytes| {
                bytes.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= bytes.len() as u64;
                bytes
            });
            futures::future::ready(Some(chunk))
        })
        .take_while(|chunk| futures::future::ready(chunk.as_ref().map_or(true, |bytes| !bytes.is_empty())));
    Ok(respond(status, response_headers, Body::from_stream(limited)))
}

/// A manifest's content checked before it is stored: its media type, and the subject and
/// artifact type the referrers API reports.
fn check_manifest(content: &[u8], content_type: Option<&str>) -> Result<(NewManifest, Value), ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message);
    let document: Value =
        serde_json::from_slice(content).map_err(|e| invalid(format!("the manifest is not JSON: {e}")))?;
    let declared = document.get("mediaType").and_then(Value::as_str);
    let media_type = match (content_type, declared) {
        (Some(given), Some(declared)) if given != declared => {
            return Err(invalid(format!("Content-Type {given} differs from the manifest's mediaType {declared}")));
        }
        (_, Some(declared)) => declared.to_string(),
        (Some(given), None) => given.to_string(),
        (None, None) => return Err(invalid("neither a Content-Type nor a mediaType names the manifest's type".into())),
    };
    if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST].contains(&media_type.as_str()) {
        return Err(invalid(format!(
            "media type {media_type} is not an image manifest or index ({OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, \
             {DOCKER_MANIFEST_LIST})"
        )));
    }
    if document.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2".into()));
    }
    let subject = document.pointer("/subject/digest").and_then(Value::as_str).map(str::to_string);
    let artifact_type = document
        .get("artifactType")
        .or_else(|| if media_type == OCI_MANIFEST { document.pointer("/config/mediaType") } else { None })
        .and_then(Value::as_str)
        .map(str::to_string);
    let manifest = NewManifest {
        digest: digest::of(content).to_string(),
        media_type,
        size: content.len() as u64,
        subject,
        artifact_type,
    };
    Ok((manifest, document))
}

/// The digests a manifest refers to that must already be in the repository: blobs (config
/// and layers) for an image manifest, manifests for an index. Each must be well formed.
fn references(document: &Value, media_type: &str) -> Result<Vec<String>, ApiError> {
    let digests = |pointer: &str| -> Vec<String> {
        document
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items.iter().filter_map(|i| i.get("digest").and_then(Value::as_str).map(str::to_string)).collect()
            })
            .unwrap_or_default()
    };
    let mut found = if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
        digests("/manifests")
    } else {
        let mut blobs = digests("/layers");
        blobs.extend(document.pointer("/config/digest").and_then(Value::as_str).map(str::to_string));
        blobs
    };
    for reference in &found {
        digest::parse(reference).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", format!("reference {reference:?}: {e}"))
        })?;
    }
    found.sort();
    found.dedup();
    Ok(found)
}

async fn put_manifest(
    registry: &Registry,
    actor: &Actor,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let content = axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("a manifest is at most {MAX_MANIFEST_BYTES} bytes"),
        )
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let (manifest, document) = check_manifest(&content, content_type)?;
    let digest = digest::parse(&manifest.digest)?;
    let tag = if reference.contains(':') {
        let named = digest::parse(reference)?;
        if named != digest {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("the manifest's digest is {digest}, not {named}"),
            ));
        }
        None
    } else {
        names::tag(reference)?;
        Some(reference.to_string())
    };
    let references = references(&document, &manifest.media_type)?;
    let subject = manifest.subject.clone();
    let upload = registry.blobs.start_upload().await?;
    registry.blobs.append(&upload, 0, futures::stream::once(async move { Ok(content) }).boxed()).await?;
    let _sweep = registry.sweep.read().await;
    registry.blobs.finish_upload(&upload, &digest).await?;
    registry
        .change(actor, RegistryChange::PutManifest { repository: name.to_string(), manifest, references, tag })
        .await?;
    let mut response_headers = vec![
        ("Location", format!("/v2/{name}/manifests/{digest}")),
        ("Docker-Content-Digest", digest.to_string()),
        ("Content-Length", "0".to_string()),
    ];
    if let Some(subject) = subject {
        response_headers.push(("OCI-Subject", subject));
    }
    Ok(audited(respond(StatusCode::CREATED, response_headers, Body::empty())))
}

async fn get_manifest(registry: &Registry, name: &str, reference: &str, head: bool) -> ApiResult {
    let unknown = || {
        ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("{name}:{reference} is not in the registry"))
    };
    let manifest = if reference.contains(':') {
        let digest = digest::parse(reference)?;
        registry.index().manifest(name, digest.as_ref()).await?
    } else {
        names::tag(reference)?;
        registry.index().tagged_manifest(name, reference).await?
    };
    let manifest = manifest.ok_or_else(unknown)?;
    let content = if head {
        None
    } else if let Some(content) = registry.manifests.get(&manifest.digest) {
        Some(content)
    } else {
        let content = registry.blobs.read_small(&digest::parse(&manifest.digest)?).await?;
        registry.manifests.insert(&manifest.digest, content.clone());
        Some(content)
    };
    let response_headers = vec![
        ("Content-Type", manifest.media_type),
        ("Docker-Content-Digest", manifest.digest),
        ("Content-Length", manifest.size.to_string()),
    ];
    Ok(respond(StatusCode::OK, response_headers, content.map_or_else(Body::empty, Body::from)))
}

async fn delete_manifest(registry: &Registry, actor: &Actor, name: &str, reference: &str) -> ApiResult {
    let change = if reference.contains(':') {
        RegistryChange::DeleteManifest { repository: name.to_string(), digest: digest::parse(reference)?.to_string() }
    } else {
        names::tag(reference)?;
        RegistryChange::DeleteTag { repository: name.to_string(), tag: reference.to_string() }
    };
    registry.change(actor, change).await.map_err(|e| e.into_unknown("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND))?;
    Ok(audited(respond(StatusCode::ACCEPTED, vec![], Body::empty())))
}

/// `n` (page size) and `last` (the page starts after it) of a list request.
fn paging(query: &HashMap<String, String>) -> Result<(u32, Option<String>), ApiError> {
    let limit = match query.get("n") {
        Some(n) => n.parse::<u32>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", format!("n={n} is not a number"))
        })?,
        None => DEFAULT_PAGE,
    };
    Ok((limit.min(10 * DEFAULT_PAGE), query.get("last").cloned()))
}

fn page_response(path: &str, limit: usize, items: &[String], body: Value) -> Response {
    let mut response_headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(last) = items.last().filter(|_| items.len() == limit && limit > 0) {
        response_headers.push(("Link", format!("<{path}?n={limit}&last={last}>; rel=\"next\"")));
    }
    respond(StatusCode::OK, response_headers, Body::from(body.to_string()))
}

async fn tags(registry: &Registry, name: &str, query: &HashMap<String, String>) -> ApiResult {
    names::repository(name)?;
    let (limit, last) = paging(query)?;
    let tags: Vec<String> =
        registry.index().tags(name, last.as_deref(), limit).await?.into_iter().map(|t| t.tag).collect();
    if tags.is_empty() && last.is_none() && registry.index().repository(name).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not in the registry"),
        ));
    }
    Ok(page_response(&format!("/v2/{name}/tags/list"), limit as usize, &tags, json!({"name": name, "tags": tags})))
}

async fn catalog(registry: &Registry, query: &HashMap<String, String>) -> ApiResult {
    let (limit, last) = paging(query)?;
    let page = RepositoryQuery { after: last, limit, ..RepositoryQuery::default() };
    let repositories: Vec<String> = registry.index().repositories(&page).await?.into_iter().map(|r| r.name).collect();
    Ok(page_response("/v2/_catalog", limit as usize, &repositories, json!({"repositories": repositories})))
}

async fn referrers(registry: &Registry, name: &str, subject: &Digest, query: &HashMap<String, String>) -> ApiResult {
    let wanted = query.get("artifactType");
    let manifests: Vec<Value> = registry
        .index()
        .referrers(name, subject.as_ref())
        .await?
        .into_iter()
        .filter(|manifest| wanted.is_none_or(|wanted| manifest.artifact_type.as_ref() == Some(wanted)))
        .map(|manifest| {
            let mut descriptor =
                json!({"mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.size});
            if let Some(artifact_type) = manifest.artifact_type {
                descriptor["artifactType"] = json!(artifact_type);
            }
            descriptor
        })
        .collect();
    let mut response_headers = vec![("Content-Type", OCI_INDEX.to_string())];
    if wanted.is_some() {
        response_headers.push(("OCI-Filters-Applied", "artifactType".to_string()));
    }
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    Ok(respond(StatusCode::OK, response_headers, Body::from(body.to_string())))
}
