//! Objects in SQL: row mapping, reads, server-side filtered and keyset-paged lists, and the
//! writes the writer task performs inside its transaction.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_core::kinds::Reference;
use flotilla_core::selector::Requirement;
use flotilla_core::{API_VERSION, Object, ObjectKey, ObjectMeta};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Executor, Row};

use crate::StoreError;
use crate::types::{DEFAULT_PAGE, ListQuery, MAX_PAGE, ObjectPage, SortBy};

const COLUMNS: &str = "id, kind, project, name, uid, resource_version, generation, labels, annotations, spec, status, created_micros, updated_micros";

/// A value bound to a `$N` placeholder of a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds SQL text with numbered placeholders and collects their values.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
}

impl SqlBuilder {
    pub(crate) fn new(sql: &str) -> Self {
        Self { sql: sql.to_string(), binds: Vec::new() }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.sql.push_str(&format!("${}", self.binds.len()));
        self
    }

    pub(crate) fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(value.into()))
    }

    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    pub(crate) fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.sql.clone()));
        for bind in &self.binds {
            query = match bind {
                Bind::Text(text) => query.bind(text.clone()),
                Bind::Int(int) => query.bind(*int),
            };
        }
        query
    }
}

pub(crate) fn micros_to_timestamp(micros: i64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(micros).ok()
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("corrupt {column} column: {e}")))
}

pub(crate) fn object_from_row(row: &AnyRow) -> Result<(i64, Object), StoreError> {
    let id: i64 = row.try_get("id")?;
    let project: String = row.try_get("project")?;
    let labels: String = row.try_get("labels")?;
    let annotations: String = row.try_get("annotations")?;
    let spec: String = row.try_get("spec")?;
    let status: String = row.try_get("status")?;
    let object = Object {
        api_version: API_VERSION.to_string(),
        kind: row.try_get("kind")?,
        metadata: ObjectMeta {
            name: row.try_get("name")?,
            project: if project.is_empty() { None } else { Some(project) },
            uid: Some(row.try_get("uid")?),
            labels: parse_json(&labels, "labels")?,
            annotations: parse_json(&annotations, "annotations")?,
            resource_version: Some(row.try_get::<i64, _>("resource_version")?.to_string()),
            generation: Some(row.try_get("generation")?),
            creation_timestamp: micros_to_timestamp(row.try_get("created_micros")?),
            update_timestamp: micros_to_timestamp(row.try_get("updated_micros")?),
        },
        spec: parse_json(&spec, "spec")?,
        status: parse_json(&status, "status")?,
    };
    Ok((id, object))
}

/// Reads one object (with its row id) through any executor: the pool or a transaction.
pub(crate) async fn get_with_id<'e, E>(executor: E, key: &ObjectKey) -> Result<Option<(i64, Object)>, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let sql = format!("SELECT {COLUMNS} FROM objects WHERE kind = $1 AND project = $2 AND name = $3");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(key.kind.clone())
        .bind(key.project.clone().unwrap_or_default())
        .bind(key.name.clone())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(object_from_row).transpose()
}

pub(crate) async fn get(pool: &AnyPool, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
    Ok(get_with_id(pool, key).await?.map(|(_, object)| object))
}

/// Where the previous page ended.
#[derive(Debug, Serialize, Deserialize)]
struct ContinueToken {
    /// The sort column's value of the last item (text or integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<i64>,
    /// Row id of the last item: the tie-breaker.
    id: i64,
}

fn encode_token(token: &ContinueToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(token).unwrap_or_default())
}

fn decode_token(text: &str) -> Result<ContinueToken, StoreError> {
    URL_SAFE_NO_PAD.decode(text).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).ok_or_else(|| {
        StoreError::InvalidQuery("malformed continue token: pass the one the previous page returned".into())
    })
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn label_condition(builder: &mut SqlBuilder, requirement: &Requirement) {
    let exists = |builder: &mut SqlBuilder, negated: bool, key: &str| {
        builder.push(if negated { " AND NOT EXISTS (" } else { " AND EXISTS (" });
        builder.push("SELECT 1 FROM object_labels l WHERE l.object_id = o.id AND l.key = ");
        builder.text(key);
    };
    match requirement {
        Requirement::Equals(key, value) | Requirement::NotEquals(key, value) => {
            exists(builder, matches!(requirement, Requirement::NotEquals(..)), key);
            builder.push(" AND l.value = ").text(value.as_str()).push(")");
        }
        Requirement::In(key, values) | Requirement::NotIn(key, values) => {
            exists(builder, matches!(requirement, Requirement::NotIn(..)), key);
            builder.push(" AND l.value IN (");
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    builder.push(", ");
                }
                builder.text(value.as_str());
            }
            builder.push("))");
        }
        Requirement::Exists(key) | Requirement::NotExists(key) => {
            exists(builder, matches!(requirement, Requirement::NotExists(..)), key);
            builder.push(")");
        }
    }
}

pub(crate) async fn list(pool: &AnyPool, query: &ListQuery) -> Result<ObjectPage, StoreError> {
    let limit = match query.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let (column, numeric) = match query.sort {
        SortBy::Name => ("o.name", false),
        SortBy::CreationTimestamp => ("o.created_micros", true),
        SortBy::UpdateTimestamp => ("o.updated_micros", true),
    };
    let columns: String = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ");
    let mut builder = SqlBuilder::new(&format!("SELECT {columns} FROM objects o WHERE o.kind = "));
    builder.text(query.kind.as_str());
    if let Some(project) = &query.project {
        builder.push(" AND o.project = ").text(project.as_str());
    }
    if let Some(fragment) = query.name_contains.as_deref().filter(|f| !f.is_empty()) {
        builder.push(" AND o.name LIKE ").text(format!("%{}%", escape_like(fragment))).push(" ESCAPE '\\'");
    }
    for requirement in &query.selector.0 {
        label_condition(&mut builder, requirement);
    }
    if let Some(token) = &query.continue_token {
        let token = decode_token(token)?;
        let comparison = if query.descending { "<" } else { ">" };
        let value = |builder: &mut SqlBuilder| -> Result<(), StoreError> {
            match (numeric, &token.t, token.n) {
                (false, Some(text), _) => builder.text(text.as_str()),
                (true, _, Some(number)) => builder.int(number),
                _ => {
                    return Err(StoreError::InvalidQuery("continue token does not match the sort order".into()));
                }
            };
            Ok(())
        };
        builder.push(&format!(" AND ({column} {comparison} "));
        value(&mut builder)?;
        builder.push(&format!(" OR ({column} = "));
        value(&mut builder)?;
        builder.push(&format!(" AND o.id {comparison} ")).int(token.id).push("))");
    }
    let direction = if query.descending { "DESC" } else { "ASC" };
    builder.push(&format!(" ORDER BY {column} {direction}, o.id {direction} LIMIT "));
    builder.int(i64::from(limit) + 1);
    let rows = builder.query().fetch_all(pool).await?;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last: Option<(i64, i64, String)> = None;
    for row in rows.iter().take(limit as usize) {
        let (id, object) = object_from_row(row)?;
        let sort_number: i64 = match query.sort {
            SortBy::CreationTimestamp => row.try_get("created_micros")?,
            SortBy::UpdateTimestamp => row.try_get("updated_micros")?,
            SortBy::Name => 0,
        };
        last = Some((id, sort_number, object.metadata.name.clone()));
        items.push(object);
    }
    let continue_token = match (rows.len() > limit as usize, last) {
        (true, Some((id, number, name))) => {
            Some(encode_token(&ContinueToken { t: (!numeric).then_some(name), n: numeric.then_some(number), id }))
        }
        _ => None,
    };
    Ok(ObjectPage { items, continue_token })
}

fn micros(timestamp: Option<jiff::Timestamp>) -> i64 {
    timestamp.map(|t| t.as_microsecond()).unwrap_or_default()
}

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// Inserts a new object and its labels; returns its row id.
pub(crate) async fn insert(connection: &mut AnyConnection, object: &Object) -> Result<i64, StoreError> {
    let meta = &object.metadata;
    let row = sqlx::query(
        "INSERT INTO objects (kind, project, name, uid, resource_version, generation, labels, annotations, spec, status, created_micros, updated_micros) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(object.kind.clone())
    .bind(meta.project.clone().unwrap_or_default())
    .bind(meta.name.clone())
    .bind(meta.uid.clone().unwrap_or_default())
    .bind(object.resource_version().unwrap_or_default() as i64)
    .bind(meta.generation.unwrap_or(1))
    .bind(json_text(&meta.labels))
    .bind(json_text(&meta.annotations))
    .bind(json_text(&object.spec))
    .bind(json_text(&object.status))
    .bind(micros(meta.creation_timestamp))
    .bind(micros(meta.update_timestamp))
    .fetch_one(&mut *connection)
    .await?;
    let id: i64 = row.try_get("id")?;
    write_labels(connection, id, object).await?;
    Ok(id)
}

/// Replaces an existing object's content (row `id`) and labels.
pub(crate) async fn update(connection: &mut AnyConnection, id: i64, object: &Object) -> Result<(), StoreError> {
    let meta = &object.metadata;
    sqlx::query(
        "UPDATE objects SET resource_version = $1, generation = $2, labels = $3, annotations = $4, spec = $5, status = $6, updated_micros = $7 WHERE id = $8",
    )
    .bind(object.resource_version().unwrap_or_default() as i64)
    .bind(meta.generation.unwrap_or(1))
    .bind(json_text(&meta.labels))
    .bind(json_text(&meta.annotations))
    .bind(json_text(&object.spec))
    .bind(json_text(&object.status))
    .bind(micros(meta.update_timestamp))
    .bind(id)
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM object_labels WHERE object_id = $1").bind(id).execute(&mut *connection).await?;
    write_labels(connection, id, object).await
}

pub(crate) async fn delete(connection: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM object_labels WHERE object_id = $1").bind(id).execute(&mut *connection).await?;
    sqlx::query("DELETE FROM objects WHERE id = $1").bind(id).execute(&mut *connection).await?;
    Ok(())
}

/// Replaces the references held by object row `id` (`fresh`: a new row, which has none yet).
pub(crate) async fn write_references(
    connection: &mut AnyConnection,
    id: i64,
    references: &[Reference],
    fresh: bool,
) -> Result<(), StoreError> {
    if !fresh {
        sqlx::query("DELETE FROM object_refs WHERE from_id = $1").bind(id).execute(&mut *connection).await?;
    }
    for reference in references {
        sqlx::query(
            "INSERT INTO object_refs (from_id, path, to_kind, to_project, to_name) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(reference.path.clone())
        .bind(reference.key.kind.clone())
        .bind(reference.key.project.clone().unwrap_or_default())
        .bind(reference.key.name.clone())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

/// The objects referring to `target`, optionally only of `kind` and without `exclude`.
pub(crate) async fn referring_objects(
    connection: &mut AnyConnection,
    target: &ObjectKey,
    kind: Option<&str>,
    exclude: Option<&ObjectKey>,
) -> Result<Vec<Object>, StoreError> {
    let columns: String = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ");
    let mut builder = SqlBuilder::new(&format!(
        "SELECT DISTINCT {columns} FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE r.to_kind = "
    ));
    builder.text(target.kind.as_str());
    builder.push(" AND r.to_project = ").text(target.project.clone().unwrap_or_default());
    builder.push(" AND r.to_name = ").text(target.name.as_str());
    if let Some(kind) = kind {
        builder.push(" AND o.kind = ").text(kind);
    }
    if let Some(exclude) = exclude {
        builder.push(" AND NOT (o.kind = ").text(exclude.kind.as_str());
        builder.push(" AND o.project = ").text(exclude.project.clone().unwrap_or_default());
        builder.push(" AND o.name = ").text(exclude.name.as_str()).push(")");
    }
    let rows = builder.query().fetch_all(&mut *connection).await?;
    rows.iter().map(|row| object_from_row(row).map(|(_, object)| object)).collect()
}

/// Up to `limit` objects referring to `key`, as `Kind/[project/]name`.
pub(crate) async fn referrers(
    connection: &mut AnyConnection,
    key: &ObjectKey,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.kind, o.project, o.name FROM object_refs r JOIN objects o ON o.id = r.from_id \
         WHERE r.to_kind = $1 AND r.to_project = $2 AND r.to_name = $3 ORDER BY o.kind, o.project, o.name LIMIT $4",
    )
    .bind(key.kind.clone())
    .bind(key.project.clone().unwrap_or_default())
    .bind(key.name.clone())
    .bind(limit)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| {
            let project: String = row.try_get("project")?;
            let kind: String = row.try_get("kind")?;
            let name: String = row.try_get("name")?;
            Ok(ObjectKey::new(kind, (!project.is_empty()).then_some(project), name).to_string())
        })
        .collect()
}

/// Inserts the labels of object row `id`, in one statement.
async fn write_labels(connection: &mut AnyConnection, id: i64, object: &Object) -> Result<(), StoreError> {
    if object.metadata.labels.is_empty() {
        return Ok(());
    }
    let mut builder = SqlBuilder::new("INSERT INTO object_labels (object_id, key, value) VALUES ");
    for (index, (key, value)) in object.metadata.labels.iter().enumerate() {
        builder.push(if index == 0 { "(" } else { ", (" });
        builder.int(id).push(", ").text(key.as_str()).push(", ").text(value.as_str()).push(")");
    }
    builder.query().execute(&mut *connection).await?;
    Ok(())
}
