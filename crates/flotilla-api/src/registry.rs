//! The delivery center's registry, served at `/v2/` with the token flow Docker and OCI
//! clients speak.
//!
//! # Expected flow
//! A client's request without a token is refused with `401` and a challenge naming
//! `/v2/token`, the service and the scope it needs. The client asks `/v2/token` with its
//! credentials (HTTP Basic: a user name and its password, or an API token in place of the
//! password; or none, anonymously). The token grants, of the actions asked for, those the
//! user's project roles allow ([`Principal::registry_actions`]: a repository's first path
//! component is its project). The registry then serves each request the token covers.
//!
//! Password checks go through the login throttling and are audited as logins. Manifest
//! pushes, pulls and deletions are audited with the user, address and outcome.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flotilla_core::ObjectKey;
use flotilla_core::audit::Outcome;
use flotilla_core::kinds::{ProjectSpec, RobotSpec, UserSpec};
use flotilla_core::rbac::{Principal, RegistryAction};
use flotilla_core::registry::{parse_robot_account, split_repository};
use flotilla_registry::gc::{GcError, apply_retention, collect_garbage};
use flotilla_registry::http::{Audited, Registry, Target, target};
use flotilla_registry::storage::fs::{FsBlobStore, FsOptions};
use flotilla_registry::token::{self, Access, Claims, TokenKey};
use flotilla_store::{AuditNote, Change, Mutation, Store};
use serde_json::{Value, json};

use crate::auth::{Meta, actor, check_password};
use crate::context::RequestMeta;
use crate::error::ApiError;
use crate::state::AppState;

/// The `service` of the token flow.
pub const SERVICE: &str = "flotilla";

/// How long a registry token lasts.
const TOKEN_SECONDS: i64 = 300;

/// The registry and the key its tokens are signed with.
pub struct RegistryService {
    pub registry: Arc<Registry>,
    /// The registry's blob storage, for what it holds in memory (`/metrics`).
    pub blobs: Arc<FsBlobStore>,
    pub tokens: TokenKey,
    /// Proxy-cache fetches in progress.
    pub fetches: crate::proxy::Fetches,
}

impl RegistryService {
    /// Opens the registry kept under `<data dir>/registry` (its blobs stored with `options`),
    /// with its token key (made on first use, readable by the owner only).
    pub fn open(data_dir: &Path, options: FsOptions, store: Arc<dyn Store>) -> Result<Self, String> {
        let dir = data_dir.join("registry");
        let blobs = Arc::new(FsBlobStore::open_with(&dir, options).map_err(|e| e.to_string())?);
        let key_path = dir.join("token.key");
        let key = match std::fs::read(&key_path) {
            Ok(key) => key,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let key = flotilla_identity::random_string(64).into_bytes();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&key_path)
                    .map_err(|e| format!("cannot create {}: {e}", key_path.display()))?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("{}: {e}", key_path.display()))?;
                key
            }
            Err(error) => return Err(format!("cannot read {}: {error}", key_path.display())),
        };
        let tokens = TokenKey::new(key).ok_or_else(|| format!("{} holds too short a key", key_path.display()))?;
        Ok(Self { registry: Arc::new(Registry::new(blobs.clone(), store)), blobs, tokens, fetches: Default::default() })
    }
}

/// `/v2/token` and the guarded `/v2/` routes.
pub fn routes(state: AppState, service: Arc<RegistryService>) -> Router<AppState> {
    let guarded = flotilla_registry::http::router(service.registry.clone())
        .layer(middleware::from_fn_with_state((state, service.clone()), guard));
    Router::new()
        .route("/v2/token", get(issue_token))
        .route_service("/v2/", guarded.clone())
        .route_service("/v2/{*path}", guarded)
        .layer(Extension(service))
}

fn now_seconds(state: &AppState) -> i64 {
    state.clock.now().as_second()
}

/// The user name and secret of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Err(ApiError::Unauthenticated("the token endpoint takes HTTP Basic credentials".into()));
    };
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::Unauthenticated("malformed Basic credentials".into()))?;
    let (user, secret) =
        decoded.split_once(':').ok_or_else(|| ApiError::Unauthenticated("malformed Basic credentials".into()))?;
    Ok(Some((user.to_string(), secret.to_string())))
}

/// Who asks `/v2/token` for a token.
enum Requester {
    Anonymous,
    User(Principal),
    /// A project's robot account (`robot$<project>+<name>`).
    Robot {
        account: String,
        project: String,
        spec: RobotSpec,
    },
}

impl Requester {
    fn subject(&self) -> String {
        match self {
            Requester::Anonymous => ANONYMOUS.to_string(),
            Requester::User(principal) => principal.user.clone(),
            Requester::Robot { account, .. } => account.clone(),
        }
    }
}

/// The subject of tokens given without credentials.
const ANONYMOUS: &str = "anonymous";

/// Authenticates `user` by `secret`: a robot by its secret; a user by one of its API tokens,
/// else its password.
async fn authenticate(state: &AppState, meta: &RequestMeta, user: &str, secret: &str) -> Result<Requester, ApiError> {
    if let Some((project, name)) = parse_robot_account(user) {
        let robot = authenticate_robot(state, user, project, name, secret).await;
        if let Err(error) = &robot {
            let note = AuditNote {
                action: "login".into(),
                kind: Some("Robot".into()),
                project: Some(project.to_string()),
                name: Some(name.to_string()),
                outcome: Some(Outcome::Denied),
                message: Some(error.to_string()),
            };
            state
                .store
                .commit(Mutation { actor: actor(meta, user, "robot-secret"), change: Change::Record(note) })
                .await?;
        }
        return robot;
    }
    let now = state.clock.now().as_microsecond();
    if let Some(record) = state.store.token_by_secret(&flotilla_identity::secret_hash(secret)).await?
        && record.user == user
    {
        if record.revoked_micros.is_some() || record.expires_micros <= now {
            return Err(ApiError::Unauthenticated("this API token was revoked or has expired".into()));
        }
        let account = state.store.get(&ObjectKey::new("User", None, user)).await?;
        if account.and_then(|o| serde_json::from_value::<UserSpec>(o.spec).ok()).is_none_or(|spec| spec.disabled) {
            return Err(ApiError::Unauthenticated(format!("user {user:?} is disabled or no longer exists")));
        }
        return Ok(Requester::User(Principal { grants: state.store.grants_of(user).await?, user: user.to_string() }));
    }
    let clear = check_password(state, meta, user, secret, "registry-password").await?;
    let success = Mutation {
        actor: actor(meta, user, "registry-password"),
        change: Change::Login {
            user: user.to_string(),
            outcome: Outcome::Success,
            message: Some("registry token issued".into()),
            grant: None,
            throttle: clear,
        },
    };
    state.store.commit(success).await?;
    Ok(Requester::User(Principal { grants: state.store.grants_of(user).await?, user: user.to_string() }))
}

/// A robot's secret is one of the API tokens of its account; the Robot must still exist,
/// be enabled and not have expired.
async fn authenticate_robot(
    state: &AppState,
    account: &str,
    project: &str,
    name: &str,
    secret: &str,
) -> Result<Requester, ApiError> {
    let now = state.clock.now().as_microsecond();
    let record = state
        .store
        .token_by_secret(&flotilla_identity::secret_hash(secret))
        .await?
        .filter(|record| record.user == account)
        .ok_or_else(|| ApiError::Unauthenticated(format!("wrong secret for robot {account:?}")))?;
    if record.revoked_micros.is_some() || record.expires_micros <= now {
        return Err(ApiError::Unauthenticated(format!("the secret of robot {account:?} was replaced or has expired")));
    }
    let spec = state
        .store
        .get(&ObjectKey::new("Robot", Some(project.to_string()), name))
        .await?
        .and_then(|object| serde_json::from_value::<RobotSpec>(object.spec).ok())
        .ok_or_else(|| ApiError::Unauthenticated(format!("robot {account:?} no longer exists")))?;
    if spec.disabled || spec.expires_micros().is_none_or(|expiry| expiry <= now) {
        return Err(ApiError::Unauthenticated(format!("robot {account:?} is disabled or has expired")));
    }
    Ok(Requester::Robot { account: account.to_string(), project: project.to_string(), spec })
}

/// The project a repository belongs to, when it exists.
async fn project_of(state: &AppState, repository: &str) -> Result<Option<ProjectSpec>, ApiError> {
    let (project, _) = split_repository(repository);
    Ok(state
        .store
        .get(&ObjectKey::new("Project", None, project))
        .await?
        .and_then(|object| serde_json::from_value::<ProjectSpec>(object.spec).ok()))
}

/// What `requester` may do to `repository`: what its project roles (or a robot's
/// permissions) allow, and pull from the project's public repositories for anyone.
async fn repository_actions(
    state: &AppState,
    requester: &Requester,
    repository: &str,
) -> Result<Vec<RegistryAction>, ApiError> {
    let Some(project_spec) = project_of(state, repository).await? else { return Ok(Vec::new()) };
    let (project, path) = split_repository(repository);
    let mut actions = match requester {
        Requester::User(principal) => principal.registry_actions(project, Some(&project_spec.workspace)),
        Requester::Robot { project: own, spec, .. } if own == project => {
            spec.actions(path, state.clock.now().as_microsecond())
        }
        Requester::Robot { .. } | Requester::Anonymous => Vec::new(),
    };
    if project_spec.registry.as_ref().is_some_and(|settings| settings.is_public(path)) {
        actions.push(RegistryAction::Pull);
    }
    Ok(actions)
}

/// `GET /v2/token?service=flotilla&scope=…`: a token for what the caller may do of what it
/// asks.
async fn issue_token(
    State(state): State<AppState>,
    Extension(service): Extension<Arc<RegistryService>>,
    Meta(meta): Meta,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requested = token::parse_scopes(query.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()))
        .map_err(|e| ApiError::bad_field("scope", e.to_string()))?;
    let requester = match basic_credentials(&headers)? {
        Some((user, secret)) => authenticate(&state, &meta, &user, &secret).await?,
        None => Requester::Anonymous,
    };
    let mut granted = Vec::new();
    for access in requested {
        let allowed: Vec<String> = if access.kind == "registry" {
            match &requester {
                Requester::User(principal) if principal.is_admin() => access.actions.clone(),
                _ => Vec::new(),
            }
        } else {
            let may = repository_actions(&state, &requester, &access.name).await?;
            access
                .actions
                .iter()
                .filter(|action| RegistryAction::parse(action).is_some_and(|a| may.contains(&a)))
                .cloned()
                .collect()
        };
        if !allowed.is_empty() {
            granted.push(Access { actions: allowed, ..access });
        }
    }
    let now = now_seconds(&state);
    let claims = Claims { sub: requester.subject(), access: granted, iat: now, exp: now + TOKEN_SECONDS };
    let token = service.tokens.issue(&claims);
    let issued_at = state.clock.now().to_string();
    Ok(Json(json!({"token": token, "access_token": token, "expires_in": TOKEN_SECONDS, "issued_at": issued_at})))
}

impl RegistryService {
    /// Runs retention and then garbage collection every `interval`, as `system`, until the
    /// task is dropped. A failed run is logged and tried again at the next interval.
    ///
    /// Caveat: the sweep lock that keeps a collection from deleting a blob between its
    /// upload and its link is per process. With several control-plane replicas sharing one
    /// blob storage, run collection on one of them only.
    pub async fn maintain(
        self: Arc<Self>,
        clock: Arc<dyn flotilla_store::sql::Clock>,
        interval: Duration,
        grace: Duration,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let actor = system_actor();
            if let Err(error) = self.upkeep(&actor, clock.now().as_microsecond(), grace, true).await {
                tracing::warn!(%error, "registry upkeep failed; trying again at the next interval");
            }
        }
    }

    /// Retention (when `retention`), then garbage collection, as of `now_micros`.
    pub async fn upkeep(
        &self,
        actor: &flotilla_core::audit::Actor,
        now_micros: i64,
        grace: Duration,
        retention: bool,
    ) -> Result<Value, GcError> {
        let retained = if retention { Some(apply_retention(&self.registry, actor, now_micros).await?) } else { None };
        let collected = collect_garbage(&self.registry, actor, grace, now_micros).await?;
        Ok(json!({"retention": retained, "gc": collected}))
    }
}

fn system_actor() -> flotilla_core::audit::Actor {
    crate::replication::system_actor_named("system")
}

/// Body of `POST /api/v1/registry/gc`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcRequest {
    /// Apply the projects' retention rules first (default true).
    #[serde(default)]
    pub retention: Option<bool>,
    /// Keep blobs linked within this many seconds (default: `registry.gc_grace_secs`).
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// `POST /api/v1/registry/gc`: retention and garbage collection now (platform admins).
pub async fn run_gc(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    body: Option<Json<GcRequest>>,
) -> Result<Json<Value>, ApiError> {
    if !caller.principal.is_admin() {
        return Err(ApiError::Forbidden("only a platform admin runs the registry's garbage collection".into()));
    }
    let service = state.registry.as_ref().ok_or_else(|| ApiError::Unavailable("the registry is not served".into()))?;
    let request = body.map(|Json(request)| request).unwrap_or_default();
    let grace = Duration::from_secs(request.grace_secs.unwrap_or(state.config.registry.gc_grace_secs));
    let now = state.clock.now().as_microsecond();
    let report = service
        .upkeep(&caller.actor(), now, grace, request.retention.unwrap_or(true))
        .await
        .map_err(|error| ApiError::Internal(format!("registry garbage collection failed: {error}")))?;
    Ok(Json(report))
}

/// What a request under `/v2/` needs its token to allow.
#[derive(Debug, PartialEq, Eq)]
enum Needs {
    /// `/v2/`: any valid token.
    Token,
    Catalog,
    Repository {
        name: String,
        action: RegistryAction,
        manifest: Option<String>,
    },
}

fn needs(method: &Method, path: &str) -> Option<Needs> {
    let by_method = match *method {
        Method::GET | Method::HEAD => RegistryAction::Pull,
        Method::DELETE => RegistryAction::Delete,
        _ => RegistryAction::Push,
    };
    let repository = |name: String, action, manifest| Some(Needs::Repository { name, action, manifest });
    match target(path)? {
        Target::Base => Some(Needs::Token),
        Target::Catalog => Some(Needs::Catalog),
        Target::Tags(name) | Target::Referrers(name, _) => repository(name, RegistryAction::Pull, None),
        // An upload in progress is only ever written to, whatever the method.
        Target::Uploads(name, _) => repository(name, RegistryAction::Push, None),
        Target::Blob(name, _) => repository(name, by_method, None),
        Target::Manifest(name, reference) => repository(name, by_method, Some(reference)),
    }
}

fn refuse(request_host: &str, scope: Option<String>, token_given: bool) -> Response {
    let realm = format!("http://{request_host}/v2/token");
    let error = token_given.then_some("insufficient_scope");
    let challenge = token::challenge(&realm, SERVICE, scope.as_deref(), error);
    let body = json!({"errors": [{"code": if token_given { "DENIED" } else { "UNAUTHORIZED" },
        "message": if token_given { "the token does not allow this" } else { "authentication required" }, "detail": {}}]});
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    response
}

/// Checks every request under `/v2/` against its bearer token, and audits manifest pushes,
/// pulls and deletions.
async fn guard(
    State((state, service)): State<(AppState, Arc<RegistryService>)>,
    mut request: Request,
    next: Next,
) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_string();
    let Some(needed) = needs(request.method(), request.uri().path()) else { return next.run(request).await };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::to_string);
    let claims = presented.as_deref().and_then(|token| service.tokens.verify(token, now_seconds(&state)).ok());
    let (allowed, scope) = match (&needed, &claims) {
        (Needs::Token, claims) => (claims.is_some(), None),
        (Needs::Catalog, claims) => {
            (claims.as_ref().is_some_and(Claims::allows_catalog), Some("registry:catalog:*".into()))
        }
        (Needs::Repository { name, action, .. }, claims) => {
            let actions =
                if *action == RegistryAction::Pull { "pull".to_string() } else { format!("pull,{}", action.as_str()) };
            (claims.as_ref().is_some_and(|c| c.allows(name, *action)), Some(format!("repository:{name}:{actions}")))
        }
    };
    if !allowed {
        return refuse(&host, scope, claims.is_some());
    }
    // A mount from a repository the token cannot pull from is an ordinary upload.
    if let (Needs::Repository { .. }, Some(claims)) = (&needed, &claims)
        && let Ok(Query(pairs)) = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        && let Some(from) = pairs.get("from")
        && !claims.allows(from, RegistryAction::Pull)
        && let Ok(uri) = request.uri().path().parse::<Uri>()
    {
        *request.uri_mut() = uri;
    }
    let method = request.method().clone();
    let meta = request.extensions().get::<RequestMeta>().cloned();
    if let (Some(meta), Some(claims)) = (&meta, &claims) {
        request.extensions_mut().insert(actor(meta, &claims.sub, "registry-token"));
    }
    // A proxy-cache project fetches what is pulled from it and not here yet (not for the
    // cache's own requests while it fills: they would wait for themselves).
    if let Needs::Repository { name, action: RegistryAction::Pull, manifest: Some(reference) } = &needed
        && claims.as_ref().is_some_and(|c| c.sub != crate::proxy::SUBJECT)
    {
        crate::proxy::fill(&state, &service.fetches, name, reference).await;
    }
    let response = next.run(request).await;
    // A tag pushed: the project's on-push replication rules copy it.
    if let Needs::Repository { name, action: RegistryAction::Push, manifest: Some(reference) } = &needed
        && method == Method::PUT
        && response.status() == StatusCode::CREATED
        && !reference.contains(':')
        && claims.as_ref().is_some_and(|c| c.sub != crate::replication::SUBJECT && c.sub != crate::proxy::SUBJECT)
    {
        tokio::spawn(crate::replication::after_push(state.clone(), name.clone(), reference.clone()));
    }
    // The store audits the changes it makes or refuses; pulls, and changes refused before
    // they reached it, are audited here.
    let audited = response.extensions().get::<Audited>().is_some();
    if let (Needs::Repository { name, action, manifest: Some(reference) }, Some(claims), Some(meta)) =
        (needed, claims, meta)
        && method != Method::HEAD
        && !audited
    {
        let status = response.status();
        let note = AuditNote {
            action: format!("registry.{}", action.as_str()),
            kind: Some("Repository".into()),
            project: name.split('/').next().map(str::to_string),
            name: Some(format!("{name}@{reference}")),
            outcome: Some(if status.is_success() { Outcome::Success } else { Outcome::Error }),
            message: Some(format!("{method} manifest {reference} of {name}: {}", status.as_u16())),
        };
        let mutation = Mutation { actor: actor(&meta, &claims.sub, "registry-token"), change: Change::Record(note) };
        if let Err(error) = state.store.commit(mutation).await {
            tracing::error!(%error, repository = %name, "cannot audit a registry operation");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_needs_its_action() {
        let repo = |name: &str, action, manifest: Option<&str>| {
            Some(Needs::Repository { name: name.into(), action, manifest: manifest.map(str::to_string) })
        };
        assert_eq!(needs(&Method::GET, "/v2/"), Some(Needs::Token));
        assert_eq!(needs(&Method::GET, "/v2/_catalog"), Some(Needs::Catalog));
        assert_eq!(needs(&Method::GET, "/v2/shop/web/manifests/1"), repo("shop/web", RegistryAction::Pull, Some("1")));
        assert_eq!(needs(&Method::PUT, "/v2/shop/web/manifests/1"), repo("shop/web", RegistryAction::Push, Some("1")));
        assert_eq!(
            needs(&Method::DELETE, "/v2/shop/web/manifests/1"),
            repo("shop/web", RegistryAction::Delete, Some("1"))
        );
        assert_eq!(needs(&Method::HEAD, "/v2/shop/web/blobs/sha256:ab"), repo("shop/web", RegistryAction::Pull, None));
        assert_eq!(needs(&Method::POST, "/v2/shop/web/blobs/uploads/"), repo("shop/web", RegistryAction::Push, None));
        assert_eq!(needs(&Method::GET, "/v2/shop/web/blobs/uploads/x"), repo("shop/web", RegistryAction::Push, None));
        assert_eq!(
            needs(&Method::DELETE, "/v2/shop/web/blobs/uploads/x"),
            repo("shop/web", RegistryAction::Push, None)
        );
        assert_eq!(needs(&Method::GET, "/v2/shop/web/tags/list"), repo("shop/web", RegistryAction::Pull, None));
        assert_eq!(
            needs(&Method::GET, "/v2/shop/web/referrers/sha256:ab"),
            repo("shop/web", RegistryAction::Pull, None)
        );
        assert_eq!(needs(&Method::GET, "/v2/nothing"), None);
    }
}
