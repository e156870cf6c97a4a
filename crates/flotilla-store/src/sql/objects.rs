//! Objects in SQL: row mapping, reads, server-side filtered and keyset-paged lists, and the
//! writes the writer task performs inside its transaction.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_core::kinds::Reference;
use flotilla_core::selector::Requirement;
use flotilla_core::{API_VERSION, Object, ObjectKey, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::exec::{Bind, Executor, SqlBuilder, SqlRow};
use crate::StoreError;
use crate::registry::ImageUser;
use crate::types::{DEFAULT_PAGE, ListQuery, MAX_PAGE, ObjectPage, SortBy};

/// The columns of an object row, in the positions [`object_from_row`] reads.
const COLUMNS: &str = "id, kind, project, name, uid, resource_version, generation, labels, annotations, spec, status, created_micros, updated_micros";
const CREATED_COLUMN: usize = 11;
const UPDATED_COLUMN: usize = 12;

/// [`COLUMNS`] of the objects table aliased `o`.
fn o_columns() -> String {
    COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn micros_to_timestamp(micros: i64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(micros).ok()
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("corrupt {column} column: {e}")))
}

pub(crate) fn object_from_row(row: &dyn SqlRow) -> Result<(i64, Object), StoreError> {
    let id = row.int(0)?;
    let project = row.text(2)?;
    let object = Object {
        api_version: API_VERSION.to_string(),
        kind: row.text(1)?,
        metadata: ObjectMeta {
            name: row.text(3)?,
            project: if project.is_empty() { None } else { Some(project) },
            uid: Some(row.text(4)?),
            labels: parse_json(&row.text(7)?, "labels")?,
            annotations: parse_json(&row.text(8)?, "annotations")?,
            resource_version: Some(row.int(5)?.to_string()),
            generation: Some(row.int(6)?),
            creation_timestamp: micros_to_timestamp(row.int(CREATED_COLUMN)?),
            update_timestamp: micros_to_timestamp(row.int(UPDATED_COLUMN)?),
        },
        spec: parse_json(&row.text(9)?, "spec")?,
        status: parse_json(&row.text(10)?, "status")?,
    };
    Ok((id, object))
}

/// Reads one object with its row id.
pub(crate) async fn get_with_id<E: Executor>(
    exec: &mut E,
    key: &ObjectKey,
) -> Result<Option<(i64, Object)>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM objects WHERE kind = $1 AND project = $2 AND name = $3");
    let binds = [key.kind.as_str().into(), key.project.clone().unwrap_or_default().into(), key.name.as_str().into()];
    exec.fetch_optional(&sql, &binds, object_from_row).await
}

pub(crate) async fn get<E: Executor>(exec: &mut E, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
    Ok(get_with_id(exec, key).await?.map(|(_, object)| object))
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

pub(crate) async fn list<E: Executor>(exec: &mut E, query: &ListQuery) -> Result<ObjectPage, StoreError> {
    let limit = match query.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let (column, numeric) = match query.sort {
        SortBy::Name => ("o.name", false),
        SortBy::CreationTimestamp => ("o.created_micros", true),
        SortBy::UpdateTimestamp => ("o.updated_micros", true),
    };
    let mut builder = SqlBuilder::new(&format!("SELECT {} FROM objects o WHERE o.kind = ", o_columns()));
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
    let sort_column = match query.sort {
        SortBy::CreationTimestamp => Some(CREATED_COLUMN),
        SortBy::UpdateTimestamp => Some(UPDATED_COLUMN),
        SortBy::Name => None,
    };
    let rows = exec
        .fetch_all(&builder.sql, &builder.binds, |row| {
            let sort_number = match sort_column {
                Some(column) => row.int(column)?,
                None => 0,
            };
            Ok((object_from_row(row)?, sort_number))
        })
        .await?;
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last: Option<(i64, i64, String)> = None;
    for ((id, object), sort_number) in rows.into_iter().take(limit as usize) {
        last = Some((id, sort_number, object.metadata.name.clone()));
        items.push(object);
    }
    let continue_token = match (more, last) {
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
pub(crate) async fn insert<E: Executor>(exec: &mut E, object: &Object) -> Result<i64, StoreError> {
    let meta = &object.metadata;
    let binds = [
        object.kind.as_str().into(),
        meta.project.clone().unwrap_or_default().into(),
        meta.name.as_str().into(),
        meta.uid.clone().unwrap_or_default().into(),
        Bind::Int(object.resource_version().unwrap_or_default() as i64),
        Bind::Int(meta.generation.unwrap_or(1)),
        json_text(&meta.labels).into(),
        json_text(&meta.annotations).into(),
        json_text(&object.spec).into(),
        json_text(&object.status).into(),
        Bind::Int(micros(meta.creation_timestamp)),
        Bind::Int(micros(meta.update_timestamp)),
    ];
    let id = exec
        .fetch_optional(
            "INSERT INTO objects (kind, project, name, uid, resource_version, generation, labels, annotations, spec, status, created_micros, updated_micros) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &binds,
            |row| row.int(0),
        )
        .await?
        .ok_or_else(|| StoreError::Backend("INSERT … RETURNING id returned no row".into()))?;
    write_labels(exec, id, object).await?;
    Ok(id)
}

/// Replaces an existing object's content (row `id`) and labels.
pub(crate) async fn update<E: Executor>(exec: &mut E, id: i64, object: &Object) -> Result<(), StoreError> {
    let meta = &object.metadata;
    let binds = [
        Bind::Int(object.resource_version().unwrap_or_default() as i64),
        Bind::Int(meta.generation.unwrap_or(1)),
        json_text(&meta.labels).into(),
        json_text(&meta.annotations).into(),
        json_text(&object.spec).into(),
        json_text(&object.status).into(),
        Bind::Int(micros(meta.update_timestamp)),
        Bind::Int(id),
    ];
    exec.execute(
        "UPDATE objects SET resource_version = $1, generation = $2, labels = $3, annotations = $4, spec = $5, status = $6, updated_micros = $7 WHERE id = $8",
        &binds,
    )
    .await?;
    exec.execute("DELETE FROM object_labels WHERE object_id = $1", &[Bind::Int(id)]).await?;
    write_labels(exec, id, object).await
}

pub(crate) async fn delete<E: Executor>(exec: &mut E, id: i64) -> Result<(), StoreError> {
    exec.execute("DELETE FROM object_labels WHERE object_id = $1", &[Bind::Int(id)]).await?;
    exec.execute("DELETE FROM object_images WHERE object_id = $1", &[Bind::Int(id)]).await?;
    exec.execute("DELETE FROM objects WHERE id = $1", &[Bind::Int(id)]).await?;
    Ok(())
}

/// Replaces the references held by object row `id` (`fresh`: a new row, which has none yet).
pub(crate) async fn write_references<E: Executor>(
    exec: &mut E,
    id: i64,
    references: &[Reference],
    fresh: bool,
) -> Result<(), StoreError> {
    if !fresh {
        exec.execute("DELETE FROM object_refs WHERE from_id = $1", &[Bind::Int(id)]).await?;
    }
    for reference in references {
        let binds = [
            Bind::Int(id),
            reference.path.as_str().into(),
            reference.key.kind.as_str().into(),
            reference.key.project.clone().unwrap_or_default().into(),
            reference.key.name.as_str().into(),
        ];
        exec.execute(
            "INSERT INTO object_refs (from_id, path, to_kind, to_project, to_name) VALUES ($1, $2, $3, $4, $5)",
            &binds,
        )
        .await?;
    }
    Ok(())
}

/// Replaces the images object row `id` runs (`fresh`: a new row, which has none yet).
pub(crate) async fn write_images<E: Executor>(
    exec: &mut E,
    id: i64,
    images: &[String],
    fresh: bool,
) -> Result<(), StoreError> {
    if !fresh {
        exec.execute("DELETE FROM object_images WHERE object_id = $1", &[Bind::Int(id)]).await?;
    }
    if images.is_empty() {
        return Ok(());
    }
    let mut builder = SqlBuilder::new("INSERT INTO object_images (object_id, image) VALUES ");
    for (index, image) in images.iter().enumerate() {
        builder.push(if index == 0 { "(" } else { ", (" });
        builder.int(id).push(", ").text(image.as_str()).push(")");
    }
    exec.execute(&builder.sql, &builder.binds).await?;
    Ok(())
}

/// Objects running an image of one of `repositories` (`host/path`, no tag or digest): each
/// with the image as written, at most `limit`, in key order.
pub(crate) async fn image_users<E: Executor>(
    exec: &mut E,
    repositories: &[String],
    limit: i64,
) -> Result<Vec<ImageUser>, StoreError> {
    if repositories.is_empty() {
        return Ok(Vec::new());
    }
    // `repo:tag` and `repo@digest` as byte ranges (`;` follows `:`, `A` follows `@`), which
    // the index on `image` serves.
    let mut builder = SqlBuilder::new(
        "SELECT o.kind, o.project, o.name, i.image FROM object_images i JOIN objects o ON o.id = i.object_id WHERE ",
    );
    for (index, repository) in repositories.iter().enumerate() {
        if index > 0 {
            builder.push(" OR ");
        }
        builder.push("i.image = ").text(repository.as_str());
        for (first, after) in [(':', ';'), ('@', 'A')] {
            builder.push(" OR (i.image >= ").text(format!("{repository}{first}"));
            builder.push(" AND i.image < ").text(format!("{repository}{after}")).push(")");
        }
    }
    builder.push(" ORDER BY o.kind, o.project, o.name, i.image LIMIT ").int(limit);
    exec.fetch_all(&builder.sql, &builder.binds, |row| {
        let project = row.text(1)?;
        Ok(ImageUser {
            key: ObjectKey::new(row.text(0)?, (!project.is_empty()).then_some(project), row.text(2)?),
            image: row.text(3)?,
        })
    })
    .await
}

/// The objects referring to `target`, optionally only of `kind` and without `exclude`.
pub(crate) async fn referring_objects<E: Executor>(
    exec: &mut E,
    target: &ObjectKey,
    kind: Option<&str>,
    exclude: Option<&ObjectKey>,
) -> Result<Vec<Object>, StoreError> {
    let mut builder = SqlBuilder::new(&format!(
        "SELECT DISTINCT {} FROM object_refs r JOIN objects o ON o.id = r.from_id WHERE r.to_kind = ",
        o_columns()
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
    exec.fetch_all(&builder.sql, &builder.binds, |row| object_from_row(row).map(|(_, object)| object)).await
}

/// Up to `limit` objects referring to `key`, as `Kind/[project/]name`.
pub(crate) async fn referrers<E: Executor>(
    exec: &mut E,
    key: &ObjectKey,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let binds = [
        key.kind.as_str().into(),
        key.project.clone().unwrap_or_default().into(),
        key.name.as_str().into(),
        Bind::Int(limit),
    ];
    exec.fetch_all(
        "SELECT o.kind, o.project, o.name FROM object_refs r JOIN objects o ON o.id = r.from_id \
         WHERE r.to_kind = $1 AND r.to_project = $2 AND r.to_name = $3 ORDER BY o.kind, o.project, o.name LIMIT $4",
        &binds,
        |row| {
            let project = row.text(1)?;
            Ok(ObjectKey::new(row.text(0)?, (!project.is_empty()).then_some(project), row.text(2)?).to_string())
        },
    )
    .await
}

/// Inserts the labels of object row `id`, in one statement.
async fn write_labels<E: Executor>(exec: &mut E, id: i64, object: &Object) -> Result<(), StoreError> {
    if object.metadata.labels.is_empty() {
        return Ok(());
    }
    let mut builder = SqlBuilder::new("INSERT INTO object_labels (object_id, key, value) VALUES ");
    for (index, (key, value)) in object.metadata.labels.iter().enumerate() {
        builder.push(if index == 0 { "(" } else { ", (" });
        builder.int(id).push(", ").text(key.as_str()).push(", ").text(value.as_str()).push(")");
    }
    exec.execute(&builder.sql, &builder.binds).await?;
    Ok(())
}
