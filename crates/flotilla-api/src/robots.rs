//! Secrets of robot accounts (`Robot` objects): `POST …/robots/{name}/secret` issues a new
//! secret, shown once, and revokes the ones issued before it.
//!
//! A robot's secret is kept like an API token (only its SHA-256), under the account name
//! `robot$<project>+<name>`, and expires with the robot. No `User` of that name can exist
//! (`$` is in no user name), so the secret opens the registry's token flow
//! ([`crate::registry`]) and nothing else: the REST API refuses it as it refuses a disabled
//! user. Issuing takes the right to change the Robot (a refusal is audited as
//! `robot.secret`); the new secret and the revocations are audited as `token.create` and
//! `token.revoke` by the issuer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flotilla_core::ObjectKey;
use flotilla_core::kinds::RobotSpec;
use flotilla_core::rbac::Verb;
use flotilla_core::registry::robot_account;
use flotilla_store::{ApiToken, Change, Mutation};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::authorize;
use crate::state::AppState;

/// `POST /api/v1/projects/{project}/robots/{name}/secret`.
pub async fn issue_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = ObjectKey::new("Robot", Some(project.clone()), &name);
    let object = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info = state.kinds.lookup("Robot").ok_or_else(|| ApiError::Internal("no Robot kind".into()))?;
    authorize(&state, &caller, Verb::Update, "robot.secret", info, &object).await?;
    let spec: RobotSpec =
        serde_json::from_value(object.spec).map_err(|e| ApiError::Internal(format!("stored {key} is damaged: {e}")))?;
    let now = state.clock.now().as_microsecond();
    let expires = spec.expires_micros().unwrap_or(now);
    if spec.disabled || expires <= now {
        return Err(ApiError::bad_field(
            "spec",
            format!("{key} is disabled or has expired: enable or extend it first"),
        ));
    }
    let account = robot_account(&project, &name);
    let earlier = state.store.tokens_of(&account).await?;
    let (id, secret, secret_hash) = flotilla_identity::new_api_token();
    let record = ApiToken {
        id,
        user: account.clone(),
        name: "robot".into(),
        secret_hash,
        created_micros: now,
        expires_micros: expires,
        revoked_micros: None,
    };
    let token_id = record.id.clone();
    state.store.commit(Mutation { actor: caller.actor(), change: Change::CreateToken(record) }).await?;
    // The new secret exists before the old ones stop working: a failure in between leaves
    // the robot with a secret more, never with none.
    for token in earlier.into_iter().filter(|token| token.revoked_micros.is_none()) {
        let change = Change::RevokeToken { id: token.id, user: account.clone() };
        state.store.commit(Mutation { actor: caller.actor(), change }).await?;
    }
    let expires_at = jiff::Timestamp::from_microsecond(expires).map(|t| t.to_string()).unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(json!({"account": account, "secret": secret, "tokenId": token_id, "expiresAt": expires_at})),
    ))
}
