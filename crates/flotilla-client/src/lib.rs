//! Typed HTTP client of Flotilla's REST API, shared by the CLI, the tests and the benchmark.
//!
//! Errors keep the server's `{code, message, details}` so callers can show every field error.

use std::time::Duration;

use flotilla_core::Object;
pub use reqwest::Method;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Errors of API calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached at all.
    #[error("cannot reach the Flotilla server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error.
    #[error("{message}")]
    Api { status: u16, code: String, message: String, details: Value },
    /// The server answered something this client does not understand.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
    /// The client is misconfigured (e.g. a malformed server URL).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The server's error code (`Invalid`, `Conflict`, `Forbidden`, …), if it answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The response of a token login.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenLogin {
    pub user: String,
    pub token: String,
    pub token_id: String,
    pub expires_at: String,
}

/// What the server says about one kind.
#[derive(Debug, Clone, Deserialize)]
pub struct KindDescription {
    pub kind: String,
    pub plural: String,
    /// `global` or `project`.
    pub scope: String,
}

/// A client bound to one server and (optionally) one API token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    user_agent: String,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!("server URL {base:?} must start with http:// or https://")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self { http, base, token, user_agent: format!("flotilla-cli/{}", env!("CARGO_PKG_VERSION")) })
    }

    /// The same client with another user agent (audit records show it).
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = user_agent.to_string();
        self
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same client (token, user agent) for a server at another address.
    pub fn with_base(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_string();
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`), with the token and user agent set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).header("user-agent", &self.user_agent);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), reason: describe_transport_error(&e) })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(api_error(status, &text))
    }

    async fn json<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        let text = response.text().await.map_err(|e| ClientError::Decode(e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Decode(format!("{e}: {}", text.chars().take(200).collect::<String>())))
    }

    /// Logs in and returns a new API token.
    pub async fn login_token(
        &self,
        username: &str,
        password: &str,
        token_name: &str,
        ttl_days: Option<u32>,
    ) -> Result<TokenLogin, ClientError> {
        let body = serde_json::json!({"username": username, "password": password, "mode": "token", "tokenName": token_name, "ttlDays": ttl_days});
        self.json(self.request(Method::POST, "/api/v1/auth/login").json(&body)).await
    }

    pub async fn whoami(&self) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/auth/whoami")).await
    }

    pub async fn kinds(&self) -> Result<Vec<KindDescription>, ClientError> {
        #[derive(Deserialize)]
        struct Kinds {
            items: Vec<KindDescription>,
        }
        let kinds: Kinds = self.json(self.request(Method::GET, "/api/v1/kinds")).await?;
        Ok(kinds.items)
    }

    /// Path of a collection: `/api/v1/{plural}` or `/api/v1/projects/{project}/{plural}`.
    pub fn collection_path(plural: &str, project: Option<&str>) -> String {
        match project {
            Some(project) => format!("/api/v1/projects/{}/{plural}", encode(project)),
            None => format!("/api/v1/{plural}"),
        }
    }

    fn item_path(plural: &str, project: Option<&str>, name: &str) -> String {
        format!("{}/{}", Self::collection_path(plural, project), encode(name))
    }

    /// One page of a list; `params` are query parameters (`labelSelector`, `limit`, …).
    pub async fn list(
        &self,
        plural: &str,
        project: Option<&str>,
        params: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, &Self::collection_path(plural, project)).query(params)).await
    }

    pub async fn get(&self, plural: &str, project: Option<&str>, name: &str) -> Result<Object, ClientError> {
        self.json(self.request(Method::GET, &Self::item_path(plural, project, name))).await
    }

    pub async fn create(&self, plural: &str, project: Option<&str>, object: &Value) -> Result<Object, ClientError> {
        self.json(self.request(Method::POST, &Self::collection_path(plural, project)).json(object)).await
    }

    pub async fn update(
        &self,
        plural: &str,
        project: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Object, ClientError> {
        self.json(self.request(Method::PUT, &Self::item_path(plural, project, name)).json(object)).await
    }

    pub async fn delete(
        &self,
        plural: &str,
        project: Option<&str>,
        name: &str,
        resource_version: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut request = self.request(Method::DELETE, &Self::item_path(plural, project, name));
        if let Some(rv) = resource_version {
            request = request.query(&[("resourceVersion", rv.to_string())]);
        }
        self.send(request).await.map(|_| ())
    }

    /// Applies a YAML (or JSON) stream of documents; returns the per-document results.
    pub async fn apply(&self, documents: String) -> Result<Value, ClientError> {
        self.json(
            self.request(Method::POST, "/api/v1/apply").header("content-type", "application/yaml").body(documents),
        )
        .await
    }

    /// An application's logs as a response streaming NDJSON lines (see the API); with
    /// `follow` it stays open until dropped.
    pub async fn application_logs(
        &self,
        project: &str,
        name: &str,
        params: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let path = format!("{}/logs", Self::item_path("applications", Some(project), name));
        let following = params.iter().any(|(k, v)| *k == "follow" && v == "true");
        let mut request = self.request(Method::GET, &path).query(params);
        if following {
            request = request.timeout(Duration::from_secs(365 * 24 * 3600));
        }
        self.send(request).await
    }

    /// Runs `command` in an instance of `component` (`instance`: a particular one).
    pub async fn application_exec(
        &self,
        project: &str,
        name: &str,
        component: &str,
        instance: Option<&str>,
        command: &[String],
    ) -> Result<Value, ClientError> {
        let path = format!("{}/exec", Self::item_path("applications", Some(project), name));
        let body = serde_json::json!({"component": component, "instance": instance, "command": command});
        self.json(self.request(Method::POST, &path).json(&body)).await
    }

    /// The resource use of each instance.
    pub async fn application_metrics(&self, project: &str, name: &str) -> Result<Value, ClientError> {
        let path = format!("{}/metrics", Self::item_path("applications", Some(project), name));
        self.json(self.request(Method::GET, &path)).await
    }

    /// The Kubernetes objects an application becomes on `cluster` (default: the first
    /// Kubernetes cluster of its environment).
    pub async fn application_manifests(
        &self,
        project: &str,
        name: &str,
        cluster: Option<&str>,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/manifests", Self::item_path("applications", Some(project), name));
        let mut request = self.request(Method::GET, &path);
        if let Some(cluster) = cluster {
            request = request.query(&[("cluster", cluster)]);
        }
        self.json(request).await
    }

    /// Uploads the image archive at `archive` into `cluster`, streamed from the file.
    pub async fn import_images(&self, cluster: &str, archive: &std::path::Path) -> Result<Value, ClientError> {
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", archive.display())))?;
        let length = file.metadata().await.map(|m| m.len()).ok();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut request = self
            .request(Method::POST, &format!("{}/images", Self::item_path("clusters", None, cluster)))
            .header("content-type", "application/x-tar")
            .timeout(Duration::from_secs(3600))
            .body(body);
        if let Some(length) = length {
            request = request.header("content-length", length);
        }
        self.json(request).await
    }

    pub async fn audit_query(&self, params: &[(&str, String)]) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/audit").query(params)).await
    }

    pub async fn audit_summary(&self, params: &[(&str, String)]) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/audit/summary").query(params)).await
    }

    pub async fn audit_verify(&self) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/audit/verify")).await
    }

    /// The CSV export as a response, to be streamed by the caller.
    pub async fn audit_export(&self, params: &[(&str, String)]) -> Result<reqwest::Response, ClientError> {
        self.send(self.request(Method::GET, "/api/v1/audit/export").query(params)).await
    }

    pub async fn create_token(&self, name: &str, ttl_days: Option<u32>) -> Result<Value, ClientError> {
        self.json(
            self.request(Method::POST, "/api/v1/tokens").json(&serde_json::json!({"name": name, "ttlDays": ttl_days})),
        )
        .await
    }

    pub async fn list_tokens(&self) -> Result<Value, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/tokens")).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("/api/v1/tokens/{}", encode(id)))).await.map(|_| ())
    }

    pub async fn set_password(&self, user: &str, current: Option<&str>, new: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({"currentPassword": current, "newPassword": new});
        self.send(self.request(Method::PUT, &format!("/api/v1/users/{}/password", encode(user))).json(&body))
            .await
            .map(|_| ())
    }

    /// Ends the session or revokes the token this client uses.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::POST, "/api/v1/auth/logout")).await.map(|_| ())
    }

    /// A new secret of robot `name` of `project` (earlier ones stop working).
    pub async fn issue_robot_secret(&self, project: &str, name: &str) -> Result<Value, ClientError> {
        let path = format!("{}/secret", Self::item_path("robots", Some(project), name));
        self.json(self.request(Method::POST, &path)).await
    }

    /// A page of `project`'s registry repositories.
    pub async fn repositories(&self, project: &str, params: &[(&str, String)]) -> Result<Value, ClientError> {
        let path = format!("/api/v1/projects/{}/repositories", encode(project));
        self.json(self.request(Method::GET, &path).query(params)).await
    }

    /// A page of the versions of `repository` (its path inside `project`).
    pub async fn repository_versions(
        &self,
        project: &str,
        repository: &str,
        params: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let path = format!("/api/v1/projects/{}/repositories/{}/versions", encode(project), encode(repository));
        self.json(self.request(Method::GET, &path).query(params)).await
    }

    /// Creates (or with `dry_run` renders) an Application from a template: a project's when
    /// `template_project` is given, else a platform template. `body` is the request without
    /// `dryRun`.
    pub async fn instantiate_template(
        &self,
        template_project: Option<&str>,
        template: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value, ClientError> {
        let plural = if template_project.is_some() { "templates" } else { "platformtemplates" };
        let path = format!("{}/instantiate", Self::item_path(plural, template_project, template));
        let mut body = body.clone();
        body["dryRun"] = Value::Bool(dry_run);
        self.json(self.request(Method::POST, &path).json(&body)).await
    }

    /// Stores the file at `path` as `version` of `repository` (its path inside `project`).
    pub async fn upload_artifact(
        &self,
        project: &str,
        repository: &str,
        version: &str,
        path: &std::path::Path,
        artifact_type: Option<&str>,
    ) -> Result<Value, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
        let length = file.metadata().await.map(|m| m.len()).ok();
        let filename = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "artifact".into());
        let mut query = vec![("filename", filename)];
        if let Some(artifact_type) = artifact_type {
            query.push(("type", artifact_type.to_string()));
        }
        let url = Self::artifact_path(project, repository, version);
        let mut request = self
            .request(Method::PUT, &url)
            .query(&query)
            .header("content-type", "application/octet-stream")
            .timeout(Duration::from_secs(3600))
            .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)));
        if let Some(length) = length {
            request = request.header("content-length", length);
        }
        self.json(request).await
    }

    /// The file of `version` of `repository`, as a response to stream.
    pub async fn download_artifact(
        &self,
        project: &str,
        repository: &str,
        version: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let url = Self::artifact_path(project, repository, version);
        self.send(self.request(Method::GET, &url).timeout(Duration::from_secs(3600))).await
    }

    fn artifact_path(project: &str, repository: &str, version: &str) -> String {
        format!(
            "/api/v1/projects/{}/repositories/{}/artifacts/{}",
            encode(project),
            encode(repository),
            encode(version)
        )
    }

    /// Saves application `name` of `project` as a new version of a template (`body`: template,
    /// version, parameters, platform, description).
    pub async fn save_as_template(&self, project: &str, name: &str, body: &Value) -> Result<Value, ClientError> {
        let path = format!("{}/save-as-template", Self::item_path("applications", Some(project), name));
        self.json(self.request(Method::POST, &path).json(body)).await
    }

    /// Retention (unless `retention` is false) and garbage collection of the registry now.
    pub async fn registry_gc(&self, retention: bool, grace_secs: Option<u64>) -> Result<Value, ClientError> {
        let body = serde_json::json!({"retention": retention, "graceSecs": grace_secs});
        self.json(self.request(Method::POST, "/api/v1/registry/gc").json(&body)).await
    }
}

fn encode(segment: &str) -> String {
    segment
        .chars()
        .map(
            |c| {
                if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                    c.to_string()
                } else {
                    format!("%{:02X}", c as u32)
                }
            },
        )
        .collect()
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        reason = format!("{reason}: {inner}");
        source = inner.source();
    }
    if error.is_connect() {
        reason.push_str(" (is `flotilla server` running there?)");
    } else if error.is_timeout() {
        reason.push_str(" (timed out)");
    }
    reason
}

fn api_error(status: StatusCode, text: &str) -> ClientError {
    match serde_json::from_str::<Value>(text) {
        Ok(body) if body.get("code").is_some() => ClientError::Api {
            status: status.as_u16(),
            code: body["code"].as_str().unwrap_or_default().to_string(),
            message: body["message"].as_str().unwrap_or_default().to_string(),
            details: body.get("details").cloned().unwrap_or(Value::Null),
        },
        _ => ClientError::Api {
            status: status.as_u16(),
            code: status.canonical_reason().unwrap_or("Error").replace(' ', ""),
            message: format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()),
            details: Value::Null,
        },
    }
}
