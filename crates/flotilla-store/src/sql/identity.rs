//! Identity records in SQL: password hashes, sessions, API tokens, login throttling, and the
//! grants a user's RoleBindings give.

use flotilla_core::kinds::RoleBindingSpec;
use flotilla_core::rbac::Grant;

use super::Dialect;
use super::exec::{Bind, Executor, SqlRow};
use crate::StoreError;
use crate::types::{ApiToken, Session, ThrottleState};

pub(crate) async fn grants_of<E: Executor>(
    exec: &mut E,
    dialect: Dialect,
    user: &str,
) -> Result<Vec<Grant>, StoreError> {
    let specs = exec.fetch_all(dialect.select_bindings_of_user(), &[user.into()], |row| row.text(0)).await?;
    let mut grants = Vec::with_capacity(specs.len());
    for spec in specs {
        match serde_json::from_str::<RoleBindingSpec>(&spec) {
            Ok(binding) => grants.push(binding.grant()),
            Err(error) => {
                tracing::warn!(%error, user, "ignoring a role binding that no longer parses")
            }
        }
    }
    Ok(grants)
}

pub(crate) async fn password_hash<E: Executor>(exec: &mut E, user: &str) -> Result<Option<String>, StoreError> {
    exec.fetch_optional("SELECT password_hash FROM credentials WHERE user_name = $1", &[user.into()], |row| row.text(0))
        .await
}

pub(crate) async fn set_password<E: Executor>(
    exec: &mut E,
    user: &str,
    hash: &str,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    exec.execute(
        "INSERT INTO credentials (user_name, password_hash, updated_micros) VALUES ($1, $2, $3) \
         ON CONFLICT (user_name) DO UPDATE SET password_hash = excluded.password_hash, updated_micros = excluded.updated_micros",
        &[user.into(), hash.into(), Bind::Int(now.as_microsecond())],
    )
    .await?;
    // A new password ends every session of the user.
    exec.execute("DELETE FROM sessions WHERE user_name = $1", &[user.into()]).await?;
    Ok(())
}

pub(crate) async fn session<E: Executor>(exec: &mut E, id_hash: &str) -> Result<Option<Session>, StoreError> {
    exec.fetch_optional(
        "SELECT id_hash, user_name, created_micros, expires_micros FROM sessions WHERE id_hash = $1",
        &[id_hash.into()],
        |row| {
            Ok(Session {
                id_hash: row.text(0)?,
                user: row.text(1)?,
                created_micros: row.int(2)?,
                expires_micros: row.int(3)?,
            })
        },
    )
    .await
}

pub(crate) async fn insert_session<E: Executor>(exec: &mut E, session: &Session) -> Result<(), StoreError> {
    exec.execute(
        "INSERT INTO sessions (id_hash, user_name, created_micros, expires_micros) VALUES ($1, $2, $3, $4)",
        &[
            session.id_hash.as_str().into(),
            session.user.as_str().into(),
            Bind::Int(session.created_micros),
            Bind::Int(session.expires_micros),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn delete_session<E: Executor>(exec: &mut E, id_hash: &str) -> Result<(), StoreError> {
    exec.execute("DELETE FROM sessions WHERE id_hash = $1", &[id_hash.into()]).await?;
    Ok(())
}

/// The columns of a token row, in the positions [`token_from_row`] reads.
const TOKEN_COLUMNS: &str = "id, user_name, name, secret_hash, created_micros, expires_micros, revoked_micros";

fn token_from_row(row: &dyn SqlRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.text(0)?,
        user: row.text(1)?,
        name: row.text(2)?,
        secret_hash: row.text(3)?,
        created_micros: row.int(4)?,
        expires_micros: row.int(5)?,
        revoked_micros: row.opt_int(6)?,
    })
}

pub(crate) async fn token_by_secret<E: Executor>(
    exec: &mut E,
    secret_hash: &str,
) -> Result<Option<ApiToken>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = $1");
    exec.fetch_optional(&sql, &[secret_hash.into()], token_from_row).await
}

pub(crate) async fn tokens_of<E: Executor>(exec: &mut E, user: &str) -> Result<Vec<ApiToken>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY created_micros, id");
    exec.fetch_all(&sql, &[user.into()], token_from_row).await
}

pub(crate) async fn insert_token<E: Executor>(exec: &mut E, token: &ApiToken) -> Result<(), StoreError> {
    exec.execute(
        "INSERT INTO api_tokens (id, user_name, name, secret_hash, created_micros, expires_micros, revoked_micros) VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        &[
            token.id.as_str().into(),
            token.user.as_str().into(),
            token.name.as_str().into(),
            token.secret_hash.as_str().into(),
            Bind::Int(token.created_micros),
            Bind::Int(token.expires_micros),
        ],
    )
    .await?;
    Ok(())
}

/// Revokes a token of `user`; false when there is no such unrevoked token.
pub(crate) async fn revoke_token<E: Executor>(
    exec: &mut E,
    id: &str,
    user: &str,
    now: jiff::Timestamp,
) -> Result<bool, StoreError> {
    let changed = exec
        .execute(
            "UPDATE api_tokens SET revoked_micros = $1 WHERE id = $2 AND user_name = $3 AND revoked_micros IS NULL",
            &[Bind::Int(now.as_microsecond()), id.into(), user.into()],
        )
        .await?;
    Ok(changed == 1)
}

pub(crate) async fn throttle<E: Executor>(exec: &mut E, key: &str) -> Result<Option<ThrottleState>, StoreError> {
    exec.fetch_optional(
        "SELECT failures, first_failure_micros, locked_until_micros FROM login_throttle WHERE key = $1",
        &[key.into()],
        |row| {
            Ok(ThrottleState {
                failures: row.int(0)? as u32,
                first_failure_micros: row.int(1)?,
                locked_until_micros: row.int(2)?,
            })
        },
    )
    .await
}

pub(crate) async fn set_throttle<E: Executor>(
    exec: &mut E,
    key: &str,
    state: Option<&ThrottleState>,
) -> Result<(), StoreError> {
    match state {
        None => {
            exec.execute("DELETE FROM login_throttle WHERE key = $1", &[key.into()]).await?;
        }
        Some(state) => {
            exec.execute(
                "INSERT INTO login_throttle (key, failures, first_failure_micros, locked_until_micros) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, first_failure_micros = excluded.first_failure_micros, locked_until_micros = excluded.locked_until_micros",
                &[
                    key.into(),
                    Bind::Int(i64::from(state.failures)),
                    Bind::Int(state.first_failure_micros),
                    Bind::Int(state.locked_until_micros),
                ],
            )
            .await?;
        }
    }
    Ok(())
}
