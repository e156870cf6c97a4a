//! Identity records in SQL: password hashes, sessions, API tokens, login throttling, and the
//! grants a user's RoleBindings give.

use flotilla_core::kinds::RoleBindingSpec;
use flotilla_core::rbac::Grant;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::Shared;
use crate::StoreError;
use crate::types::{ApiToken, Session, ThrottleState};

pub(crate) async fn grants_of(shared: &Shared, user: &str) -> Result<Vec<Grant>, StoreError> {
    let rows =
        sqlx::query(shared.dialect.select_bindings_of_user()).bind(user.to_string()).fetch_all(&shared.pool).await?;
    let mut grants = Vec::with_capacity(rows.len());
    for row in rows {
        let spec: String = row.try_get("spec")?;
        match serde_json::from_str::<RoleBindingSpec>(&spec) {
            Ok(binding) => grants.push(binding.grant()),
            Err(error) => {
                tracing::warn!(%error, user, "ignoring a role binding that no longer parses")
            }
        }
    }
    Ok(grants)
}

pub(crate) async fn password_hash(pool: &AnyPool, user: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT password_hash FROM credentials WHERE user_name = $1")
        .bind(user.to_string())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.try_get("password_hash")).transpose()?)
}

pub(crate) async fn set_password(
    connection: &mut AnyConnection,
    user: &str,
    hash: &str,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credentials (user_name, password_hash, updated_micros) VALUES ($1, $2, $3) \
         ON CONFLICT (user_name) DO UPDATE SET password_hash = excluded.password_hash, updated_micros = excluded.updated_micros",
    )
    .bind(user.to_string())
    .bind(hash.to_string())
    .bind(now.as_microsecond())
    .execute(&mut *connection)
    .await?;
    // A new password ends every session of the user.
    sqlx::query("DELETE FROM sessions WHERE user_name = $1").bind(user.to_string()).execute(&mut *connection).await?;
    Ok(())
}

pub(crate) async fn session(pool: &AnyPool, id_hash: &str) -> Result<Option<Session>, StoreError> {
    let row = sqlx::query("SELECT id_hash, user_name, created_micros, expires_micros FROM sessions WHERE id_hash = $1")
        .bind(id_hash.to_string())
        .fetch_optional(pool)
        .await?;
    row.map(|row| -> Result<Session, StoreError> {
        Ok(Session {
            id_hash: row.try_get("id_hash")?,
            user: row.try_get("user_name")?,
            created_micros: row.try_get("created_micros")?,
            expires_micros: row.try_get("expires_micros")?,
        })
    })
    .transpose()
}

pub(crate) async fn insert_session(connection: &mut AnyConnection, session: &Session) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO sessions (id_hash, user_name, created_micros, expires_micros) VALUES ($1, $2, $3, $4)")
        .bind(session.id_hash.clone())
        .bind(session.user.clone())
        .bind(session.created_micros)
        .bind(session.expires_micros)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

pub(crate) async fn delete_session(connection: &mut AnyConnection, id_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash.to_string()).execute(&mut *connection).await?;
    Ok(())
}

const TOKEN_COLUMNS: &str = "id, user_name, name, secret_hash, created_micros, expires_micros, revoked_micros";

fn token_from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        created_micros: row.try_get("created_micros")?,
        expires_micros: row.try_get("expires_micros")?,
        revoked_micros: row.try_get("revoked_micros")?,
    })
}

pub(crate) async fn token_by_secret(pool: &AnyPool, secret_hash: &str) -> Result<Option<ApiToken>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(secret_hash.to_string()).fetch_optional(pool).await?;
    row.as_ref().map(token_from_row).transpose()
}

pub(crate) async fn tokens_of(pool: &AnyPool, user: &str) -> Result<Vec<ApiToken>, StoreError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY created_micros, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user.to_string()).fetch_all(pool).await?;
    rows.iter().map(token_from_row).collect()
}

pub(crate) async fn insert_token(connection: &mut AnyConnection, token: &ApiToken) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, user_name, name, secret_hash, created_micros, expires_micros, revoked_micros) VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(token.id.clone())
    .bind(token.user.clone())
    .bind(token.name.clone())
    .bind(token.secret_hash.clone())
    .bind(token.created_micros)
    .bind(token.expires_micros)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Revokes a token of `user`; false when there is no such unrevoked token.
pub(crate) async fn revoke_token(
    connection: &mut AnyConnection,
    id: &str,
    user: &str,
    now: jiff::Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE api_tokens SET revoked_micros = $1 WHERE id = $2 AND user_name = $3 AND revoked_micros IS NULL",
    )
    .bind(now.as_microsecond())
    .bind(id.to_string())
    .bind(user.to_string())
    .execute(&mut *connection)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(crate) async fn throttle(pool: &AnyPool, key: &str) -> Result<Option<ThrottleState>, StoreError> {
    let row =
        sqlx::query("SELECT failures, first_failure_micros, locked_until_micros FROM login_throttle WHERE key = $1")
            .bind(key.to_string())
            .fetch_optional(pool)
            .await?;
    row.map(|row| -> Result<ThrottleState, StoreError> {
        Ok(ThrottleState {
            failures: row.try_get::<i64, _>("failures")? as u32,
            first_failure_micros: row.try_get("first_failure_micros")?,
            locked_until_micros: row.try_get("locked_until_micros")?,
        })
    })
    .transpose()
}

pub(crate) async fn set_throttle(
    connection: &mut AnyConnection,
    key: &str,
    state: Option<&ThrottleState>,
) -> Result<(), StoreError> {
    match state {
        None => {
            sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                .bind(key.to_string())
                .execute(&mut *connection)
                .await?;
        }
        Some(state) => {
            sqlx::query(
                "INSERT INTO login_throttle (key, failures, first_failure_micros, locked_until_micros) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, first_failure_micros = excluded.first_failure_micros, locked_until_micros = excluded.locked_until_micros",
            )
            .bind(key.to_string())
            .bind(i64::from(state.failures))
            .bind(state.first_failure_micros)
            .bind(state.locked_until_micros)
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}
