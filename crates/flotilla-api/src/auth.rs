//! Authentication: who is calling.
//!
//! Two kinds of credentials: API tokens (`Authorization: Bearer flt_…`, for the CLI and
//! automation) and console sessions (an HttpOnly, SameSite=Strict cookie, plus the
//! `X-CSRF-Token` header on every write). Only SHA-256 hashes of either are stored. The
//! login endpoint hands out both, checks argon2id password hashes, and locks a user name or a
//! source address out after repeated failures. Every login, failed or not, is audited.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_config::LoginConfig;
use flotilla_core::ObjectKey;
use flotilla_core::audit::{Actor, Outcome};
use flotilla_core::kinds::UserSpec;
use flotilla_core::rbac::{Grant, Principal};
use flotilla_store::{ApiToken, AuditNote, Change, LoginGrant, Mutation, Session, ThrottleState};
use serde::{Deserialize, Serialize};

use crate::context::RequestMeta;
use crate::error::ApiError;
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "flotilla_session";

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Token { id: String },
    Session { secret: String },
}

/// An authenticated caller, with the grants of its RoleBindings.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub method: AuthMethod,
    pub meta: RequestMeta,
}

impl Caller {
    pub fn user(&self) -> &str {
        &self.principal.user
    }

    /// The audit actor of this caller's requests.
    pub fn actor(&self) -> Actor {
        actor(
            &self.meta,
            &self.principal.user,
            match self.method {
                AuthMethod::Token { .. } => "token",
                AuthMethod::Session { .. } => "session",
            },
        )
    }
}

pub fn actor(meta: &RequestMeta, user: &str, auth: &str) -> Actor {
    Actor {
        user: user.to_string(),
        auth: auth.to_string(),
        source_ip: meta.source_ip.to_string(),
        user_agent: meta.user_agent.clone(),
        request_id: meta.request_id.clone(),
    }
}

fn request_meta(parts: &Parts) -> Result<RequestMeta, ApiError> {
    parts
        .extensions
        .get::<RequestMeta>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("request context middleware is not installed".into()))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

fn now_micros(state: &AppState) -> i64 {
    state.clock.now().as_microsecond()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let meta = request_meta(parts)?;
        let now = now_micros(state);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        let (user, method) = if let Some(token) = bearer {
            let record =
                state.store.token_by_secret(&flotilla_identity::secret_hash(token.trim())).await?.ok_or_else(|| {
                    ApiError::Unauthenticated("unknown API token: log in again (flotilla login)".into())
                })?;
            if record.revoked_micros.is_some() {
                return Err(ApiError::Unauthenticated(
                    "this API token was revoked: log in again (flotilla login)".into(),
                ));
            }
            if record.expires_micros <= now {
                return Err(ApiError::Expired("this API token has expired: log in again (flotilla login)".into()));
            }
            (record.user, AuthMethod::Token { id: record.id })
        } else if let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) {
            let session = state
                .store
                .session(&flotilla_identity::secret_hash(secret))
                .await?
                .ok_or_else(|| ApiError::Unauthenticated("session ended: log in again".into()))?;
            if session.expires_micros <= now {
                return Err(ApiError::Expired("session expired: log in again".into()));
            }
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let presented = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
                if !flotilla_identity::csrf_matches(secret, presented) {
                    return Err(ApiError::Csrf);
                }
            }
            (session.user, AuthMethod::Session { secret: secret.to_string() })
        } else {
            return Err(ApiError::Unauthenticated(
                "authentication required: send an API token (Authorization: Bearer …) or log in".into(),
            ));
        };
        let account = state.store.get(&ObjectKey::new("User", None, &user)).await?;
        let disabled = account
            .and_then(|object| serde_json::from_value::<UserSpec>(object.spec).ok())
            .is_none_or(|spec| spec.disabled);
        if disabled {
            return Err(ApiError::Unauthenticated(format!("user {user:?} is disabled or no longer exists")));
        }
        let grants = state.store.grants_of(&user).await?;
        Ok(Caller { principal: Principal { user, grants }, method, meta })
    }
}

/// The request context without authentication (login).
pub struct Meta(pub RequestMeta);

impl FromRequestParts<AppState> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        request_meta(parts).map(Meta)
    }
}

/// What a failed login does to a throttle key: count it (within the window) and lock once
/// the threshold is reached, doubling the lockout with each further failure.
pub fn after_failure(previous: Option<ThrottleState>, now: i64, policy: &LoginConfig, threshold: u32) -> ThrottleState {
    let window = policy.window_secs as i64 * 1_000_000;
    let mut state = match previous {
        Some(state) if now - state.first_failure_micros <= window || state.locked_until_micros > now => state,
        _ => ThrottleState { failures: 0, first_failure_micros: now, locked_until_micros: 0 },
    };
    state.failures += 1;
    if state.failures >= threshold {
        let doublings = (state.failures - threshold).min(20);
        let lockout = policy.lockout_secs.saturating_mul(1 << doublings).min(policy.max_lockout_secs);
        state.locked_until_micros = now + lockout as i64 * 1_000_000;
    }
    state
}

/// Seconds a key is still locked for, if it is.
pub fn locked_for(state: Option<&ThrottleState>, now: i64) -> Option<u64> {
    state.filter(|s| s.locked_until_micros > now).map(|s| ((s.locked_until_micros - now) / 1_000_000).max(1) as u64)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// `session` (console: sets the cookie) or `token` (CLI: returns an API token).
    #[serde(default)]
    pub mode: LoginMode,
    /// Name of the API token (mode `token`).
    #[serde(default)]
    pub token_name: Option<String>,
    /// Lifetime of the API token in days (mode `token`).
    #[serde(default)]
    pub ttl_days: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    #[default]
    Session,
    Token,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    pub expires_at: String,
}

fn timestamp_text(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

fn token_ttl(state: &AppState, requested_days: Option<u32>) -> Result<i64, ApiError> {
    let tokens = &state.config.tokens;
    let days = requested_days.unwrap_or(tokens.default_ttl_days);
    if days == 0 || days > tokens.max_ttl_days {
        return Err(ApiError::bad_field("ttlDays", format!("must be between 1 and {} days", tokens.max_ttl_days)));
    }
    Ok(i64::from(days) * 86_400 * 1_000_000)
}

fn new_token(
    state: &AppState,
    user: &str,
    name: Option<String>,
    ttl_days: Option<u32>,
) -> Result<(ApiToken, String), ApiError> {
    let now = now_micros(state);
    let (id, token, secret_hash) = flotilla_identity::new_api_token();
    let name = name.unwrap_or_else(|| "cli".into());
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_field("tokenName", "must be 1 to 64 characters"));
    }
    let record = ApiToken {
        id,
        user: user.to_string(),
        name,
        secret_hash,
        created_micros: now,
        expires_micros: now + token_ttl(state, ttl_days)?,
        revoked_micros: None,
    };
    Ok((record, token))
}

/// Checks `password` for `username` under the login throttling (per user and per source
/// address): a locked-out key, a wrong password or a disabled user is audited as a denied
/// login (authenticated `how`) and refused. On success, returns the throttle updates the
/// successful login's audit record carries.
pub(crate) async fn check_password(
    state: &AppState,
    meta: &RequestMeta,
    username: &str,
    password: &str,
    how: &str,
) -> Result<Vec<(String, Option<ThrottleState>)>, ApiError> {
    let now = now_micros(state);
    let policy = &state.config.login;
    let user_key = format!("user:{username}");
    let ip_key = format!("ip:{}", meta.source_ip);
    let user_state = state.store.throttle(&user_key).await?;
    let ip_state = state.store.throttle(&ip_key).await?;
    let denied = |message: &str, throttle: Vec<(String, Option<ThrottleState>)>| Mutation {
        actor: actor(meta, username, how),
        change: Change::Login {
            user: username.to_string(),
            outcome: Outcome::Denied,
            message: Some(message.to_string()),
            grant: None,
            throttle,
        },
    };
    if let Some(retry_after_secs) = locked_for(user_state.as_ref(), now).or(locked_for(ip_state.as_ref(), now)) {
        state.store.commit(denied("locked out after repeated failures", vec![])).await?;
        return Err(ApiError::Locked { retry_after_secs });
    }
    let hash = state.store.password_hash(username).await?;
    let account = state.store.get(&ObjectKey::new("User", None, username)).await?;
    let disabled =
        account.and_then(|o| serde_json::from_value::<UserSpec>(o.spec).ok()).is_none_or(|spec| spec.disabled);
    let password = password.to_string();
    let verified = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => flotilla_identity::verify_password(&password, &hash),
        None => {
            flotilla_identity::verify_dummy(&password);
            false
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !verified || disabled {
        let reason = if verified { "user is disabled" } else { "invalid user name or password" };
        let throttle = vec![
            (user_key, Some(after_failure(user_state, now, policy, policy.max_failures))),
            (ip_key, Some(after_failure(ip_state, now, policy, policy.max_failures.saturating_mul(4)))),
        ];
        state.store.commit(denied(reason, throttle)).await?;
        return Err(ApiError::Unauthenticated("invalid user name or password".into()));
    }
    Ok(vec![(user_key, None)])
}

/// `POST /api/v1/auth/login`
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(request): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let username = request.username.trim().to_string();
    if username.is_empty() {
        return Err(ApiError::bad_field("username", "is required"));
    }
    let now = now_micros(&state);
    let audit_login = |outcome: Outcome,
                       message: &str,
                       grant: Option<LoginGrant>,
                       throttle: Vec<(String, Option<ThrottleState>)>| Mutation {
        actor: actor(&meta, &username, "password"),
        change: Change::Login { user: username.clone(), outcome, message: Some(message.to_string()), grant, throttle },
    };
    let clear = check_password(&state, &meta, &username, &request.password, "password").await?;
    match request.mode {
        LoginMode::Token => {
            let (record, token) = new_token(&state, &username, request.token_name, request.ttl_days)?;
            let response = LoginResponse {
                user: username.clone(),
                csrf_token: None,
                token: Some(token),
                token_id: Some(record.id.clone()),
                expires_at: timestamp_text(record.expires_micros),
            };
            state
                .store
                .commit(audit_login(Outcome::Success, "API token issued", Some(LoginGrant::Token(record)), clear))
                .await?;
            Ok(Json(response).into_response())
        }
        LoginMode::Session => {
            let (secret, id_hash) = flotilla_identity::new_session_secret();
            let ttl = state.config.sessions.ttl_secs;
            let session = Session {
                id_hash,
                user: username.clone(),
                created_micros: now,
                expires_micros: now + ttl as i64 * 1_000_000,
            };
            let response = LoginResponse {
                user: username.clone(),
                csrf_token: Some(flotilla_identity::csrf_token(&secret)),
                token: None,
                token_id: None,
                expires_at: timestamp_text(session.expires_micros),
            };
            state
                .store
                .commit(audit_login(Outcome::Success, "session started", Some(LoginGrant::Session(session)), clear))
                .await?;
            let secure = if state.config.sessions.secure_cookie { "; Secure" } else { "" };
            let cookie = format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}");
            let mut response = Json(response).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            Ok(response)
        }
    }
}

/// `POST /api/v1/auth/logout`: ends the session (or revokes the token) the request used.
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let actor = caller.actor();
    match &caller.method {
        AuthMethod::Session { secret } => {
            let id_hash = flotilla_identity::secret_hash(secret);
            state
                .store
                .commit(Mutation { actor, change: Change::EndSession { id_hash, user: caller.user().to_string() } })
                .await?;
        }
        AuthMethod::Token { id } => {
            state
                .store
                .commit(Mutation {
                    actor,
                    change: Change::RevokeToken { id: id.clone(), user: caller.user().to_string() },
                })
                .await?;
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    pub user: String,
    pub auth: &'static str,
    pub grants: Vec<Grant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// `GET /api/v1/auth/whoami`
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    let (auth, csrf_token) = match &caller.method {
        AuthMethod::Token { .. } => ("token", None),
        AuthMethod::Session { secret } => ("session", Some(flotilla_identity::csrf_token(secret))),
    };
    Json(WhoAmI { user: caller.principal.user.clone(), auth, grants: caller.principal.grants, csrf_token })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    #[serde(default)]
    pub ttl_days: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// Shown once; only its hash is kept.
    pub token: String,
    #[serde(flatten)]
    pub record: TokenView,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<&ApiToken> for TokenView {
    fn from(token: &ApiToken) -> Self {
        Self {
            id: token.id.clone(),
            name: token.name.clone(),
            created_at: timestamp_text(token.created_micros),
            expires_at: timestamp_text(token.expires_micros),
            revoked_at: token.revoked_micros.map(timestamp_text),
        }
    }
}

/// `POST /api/v1/tokens`: a new API token of the caller.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (record, token) = new_token(&state, caller.user(), Some(request.name), request.ttl_days)?;
    let view = TokenView::from(&record);
    state.store.commit(Mutation { actor: caller.actor(), change: Change::CreateToken(record) }).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, record: view })))
}

/// `GET /api/v1/tokens`: the caller's tokens (never their secrets).
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let tokens = state.store.tokens_of(caller.user()).await?;
    let items: Vec<TokenView> = tokens.iter().map(TokenView::from).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// `DELETE /api/v1/tokens/{id}`: revokes one of the caller's tokens.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let change = Change::RevokeToken { id, user: caller.user().to_string() };
    state.store.commit(Mutation { actor: caller.actor(), change }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPasswordRequest {
    /// Required when changing one's own password.
    #[serde(default)]
    pub current_password: Option<String>,
    pub new_password: String,
}

/// `PUT /api/v1/users/{name}/password`: a user changes their own password (proving the
/// current one), or a platform admin sets anyone's.
pub async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(request): Json<SetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let refuse = |message: String| async {
        let note = AuditNote {
            action: "user.set-password".into(),
            kind: Some("User".into()),
            name: Some(name.clone()),
            outcome: Some(Outcome::Denied),
            message: Some(message.clone()),
            ..AuditNote::default()
        };
        state.store.commit(Mutation { actor: caller.actor(), change: Change::Record(note) }).await?;
        Err::<StatusCode, ApiError>(ApiError::Forbidden(message))
    };
    if caller.user() == name {
        let current = request.current_password.clone().unwrap_or_default();
        let hash = state.store.password_hash(&name).await?;
        let ok =
            tokio::task::spawn_blocking(move || hash.is_some_and(|h| flotilla_identity::verify_password(&current, &h)))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        if !ok {
            return refuse("currentPassword is wrong".into()).await;
        }
    } else if !caller.principal.is_admin() {
        return refuse(format!("user {:?} may not set the password of {name:?}", caller.user())).await;
    }
    flotilla_identity::check_password_policy(&request.new_password)
        .map_err(|e| ApiError::bad_field("newPassword", e.to_string()))?;
    let new_password = request.new_password;
    let password_hash = tokio::task::spawn_blocking(move || flotilla_identity::hash_password(&new_password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .commit(Mutation { actor: caller.actor(), change: Change::SetPassword { user: name, password_hash } })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LoginConfig {
        LoginConfig { max_failures: 3, window_secs: 60, lockout_secs: 10, max_lockout_secs: 100 }
    }

    #[test]
    fn locks_after_threshold_and_doubles() {
        let second = 1_000_000;
        let mut state = None;
        for _ in 0..2 {
            state = Some(after_failure(state, 0, &policy(), 3));
        }
        assert_eq!(locked_for(state.as_ref(), 0), None);
        state = Some(after_failure(state, 0, &policy(), 3));
        assert_eq!(locked_for(state.as_ref(), 0), Some(10));
        state = Some(after_failure(state, 0, &policy(), 3));
        assert_eq!(locked_for(state.as_ref(), 0), Some(20));
        for _ in 0..10 {
            state = Some(after_failure(state, 0, &policy(), 3));
        }
        assert_eq!(locked_for(state.as_ref(), 0), Some(100), "capped");
        assert_eq!(locked_for(state.as_ref(), 101 * second), None);
        let fresh = after_failure(state, 1000 * second, &policy(), 3);
        assert_eq!(fresh.failures, 1, "old failures are forgotten after the window");
    }

    #[test]
    fn cookie_parsing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; flotilla_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
