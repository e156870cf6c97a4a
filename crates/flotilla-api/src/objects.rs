//! Declarative objects over HTTP: list, get, create, update, delete per kind, and `apply` of
//! many documents at once.
//!
//! Every write is authorized against the caller's grants (for RoleBindings: "nobody grants
//! above their own"), turned into an [`Operation`] and committed with its audit record.
//! Refused writes (invalid, denied) are audited too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use flotilla_core::audit::Outcome;
use flotilla_core::kinds::{Category, KindInfo, RoleBindingSpec, Scope};
use flotilla_core::operation::{Operation, OperationVerb};
use flotilla_core::rbac::{Decision, Target, Verb};
use flotilla_core::selector::Selector;
use flotilla_core::{Object, ObjectKey, ValidationErrors};
use flotilla_store::{AuditNote, Change, ListQuery, Mutation, SortBy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::documents::{self, Document};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Query parameters of a list.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// Label selector, e.g. `tier=prod,region in (eu,us)`.
    pub label_selector: Option<String>,
    /// Substring of the name.
    pub q: Option<String>,
    /// `name` (default), `creationTimestamp` or `updateTimestamp`.
    pub sort: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    pub limit: Option<u32>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    /// For project-scoped kinds listed across projects: only this project.
    pub project: Option<String>,
}

/// Query parameters of a delete.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteParams {
    /// Refuse (409) unless the object is still at this version.
    pub resource_version: Option<u64>,
}

/// Where an object sits, for the policy.
#[derive(Debug, Default)]
struct Placement {
    workspace: Option<String>,
    project: Option<String>,
    environment: Option<String>,
    subject: Option<String>,
    binding: Option<RoleBindingSpec>,
}

/// Project -> workspace lookups, cached for one request.
#[derive(Default)]
pub(crate) struct Workspaces(HashMap<String, Option<String>>);

impl Workspaces {
    pub(crate) async fn of(&mut self, state: &AppState, project: &str) -> Result<Option<String>, ApiError> {
        if let Some(found) = self.0.get(project) {
            return Ok(found.clone());
        }
        let workspace = state
            .store
            .get(&ObjectKey::new("Project", None, project))
            .await?
            .and_then(|p| p.spec.get("workspace").and_then(Value::as_str).map(str::to_string));
        self.0.insert(project.to_string(), workspace.clone());
        Ok(workspace)
    }
}

async fn place(
    state: &AppState,
    info: &KindInfo,
    object: &Object,
    cache: &mut Workspaces,
) -> Result<Placement, ApiError> {
    let mut placement = Placement { environment: info.environment_of(object), ..Placement::default() };
    match (info.kind, info.scope) {
        ("Workspace", _) => placement.workspace = Some(object.metadata.name.clone()),
        ("Project", _) => {
            placement.project = Some(object.metadata.name.clone());
            placement.workspace = info.workspace_of(object);
        }
        ("RoleBinding", _) => {
            if let Ok(binding) = serde_json::from_value::<RoleBindingSpec>(object.spec.clone()) {
                placement.subject = Some(binding.user.clone());
                placement.project = binding.project.clone();
                placement.workspace = match (&binding.workspace, &binding.project) {
                    (Some(workspace), _) => Some(workspace.clone()),
                    (None, Some(project)) => cache.of(state, project).await?,
                    (None, None) => None,
                };
                placement.binding = Some(binding);
            }
        }
        (_, Scope::Project) => {
            placement.project = object.metadata.project.clone();
            if let Some(project) = &object.metadata.project {
                placement.workspace = cache.of(state, project).await?;
            }
        }
        (_, Scope::Global) => {}
    }
    Ok(placement)
}

fn decide(caller: &Caller, verb: Verb, info: &KindInfo, object: &Object, placement: &Placement) -> Decision {
    // Creating or changing it takes an admin; removing it does not.
    if matches!(verb, Verb::Create | Verb::Update)
        && !caller.principal.is_admin()
        && let Some(reason) = info.requires_platform_admin(object)
    {
        return Decision::Deny(reason);
    }
    if info.category == Category::Access && verb.is_write() {
        return match &placement.binding {
            Some(binding) => {
                let project_workspace = if binding.project.is_some() { placement.workspace.as_deref() } else { None };
                caller.principal.can_grant(&binding.grant(), project_workspace)
            }
            None => Decision::Deny("the role binding does not parse".into()),
        };
    }
    caller.principal.authorize(
        verb,
        &Target {
            kind: info.kind,
            category: Some(info.category),
            name: Some(&object.metadata.name),
            workspace: placement.workspace.as_deref(),
            project: placement.project.as_deref(),
            environment: placement.environment.as_deref(),
            subject: placement.subject.as_deref(),
        },
    )
}

/// Records a refused write and returns the error to send.
pub(crate) async fn refuse(
    state: &AppState,
    caller: &Caller,
    action: &str,
    key: Option<&ObjectKey>,
    outcome: Outcome,
    error: ApiError,
) -> ApiError {
    let note = AuditNote {
        action: action.to_string(),
        kind: key.map(|k| k.kind.clone()),
        project: key.and_then(|k| k.project.clone()),
        name: key.map(|k| k.name.clone()),
        outcome: Some(outcome),
        message: Some(error.to_string()),
    };
    match state.store.commit(Mutation { actor: caller.actor(), change: Change::Record(note) }).await {
        Ok(_) => error,
        Err(audit_error) => ApiError::from(audit_error),
    }
}

/// May `caller` do `verb` to `object`? A refused write is audited as `action`.
pub(crate) async fn authorize(
    state: &AppState,
    caller: &Caller,
    verb: Verb,
    action: &str,
    info: &KindInfo,
    object: &Object,
) -> Result<(), ApiError> {
    if verb.is_write() {
        return authorize_write(state, caller, verb, action, info, &[object]).await;
    }
    let placement = place(state, info, object, &mut Workspaces::default()).await?;
    match decide(caller, verb, info, object, &placement) {
        Decision::Deny(reason) => Err(ApiError::Forbidden(reason)),
        Decision::Allow => Ok(()),
    }
}

async fn authorize_write(
    state: &AppState,
    caller: &Caller,
    verb: Verb,
    action: &str,
    info: &KindInfo,
    objects: &[&Object],
) -> Result<(), ApiError> {
    let mut cache = Workspaces::default();
    for object in objects {
        let placement = place(state, info, object, &mut cache).await?;
        if let Decision::Deny(reason) = decide(caller, verb, info, object, &placement) {
            return Err(refuse(
                state,
                caller,
                action,
                Some(&object.key()),
                Outcome::Denied,
                ApiError::Forbidden(reason),
            )
            .await);
        }
    }
    Ok(())
}

/// Tells the controllers that `key` was written, so that they act now, not at their next pass.
fn written(state: &AppState, key: &ObjectKey) {
    if let Some(observed) = &state.observed {
        observed.written(key);
    }
}

/// An object as the API shows it: secrets are never returned.
pub fn present(info: &KindInfo, mut object: Object) -> Object {
    for path in info.secret_paths {
        let mut cursor = Some(&mut object.spec);
        for segment in path.split('.') {
            cursor = cursor.and_then(|value| value.get_mut(segment));
        }
        match cursor {
            // A map of secrets (a Secret's `data`): its keys are shown, not its values.
            Some(Value::Object(members)) => {
                for member in members.values_mut() {
                    *member = Value::String("(redacted)".into());
                }
            }
            Some(value) if !value.is_null() => *value = Value::String("(redacted)".into()),
            _ => {}
        }
    }
    object
}

fn sort_of(params: &ListParams) -> Result<(SortBy, bool), ApiError> {
    let sort = match params.sort.as_deref() {
        None | Some("name") => SortBy::Name,
        Some("creationTimestamp") => SortBy::CreationTimestamp,
        Some("updateTimestamp") => SortBy::UpdateTimestamp,
        Some(other) => {
            return Err(ApiError::bad_field(
                "sort",
                format!("{other:?} is not one of name, creationTimestamp, updateTimestamp"),
            ));
        }
    };
    let descending = match params.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(ApiError::bad_field("order", format!("{other:?} is not one of asc, desc"))),
    };
    Ok((sort, descending))
}

/// `GET` a collection: server-side filtered, sorted and paged.
pub async fn list(
    state: AppState,
    caller: Caller,
    info: Arc<KindInfo>,
    path_project: Option<String>,
    params: ListParams,
) -> Result<Json<Value>, ApiError> {
    let selector = match &params.label_selector {
        Some(text) => Selector::parse(text).map_err(|e| ApiError::bad_field("labelSelector", e))?,
        None => Selector::default(),
    };
    let (sort, descending) = sort_of(&params)?;
    let project = path_project.clone().or(params.project.clone());
    let mut cache = Workspaces::default();
    let sees_everything = caller.principal.is_admin() || caller.principal.is_auditor();
    // Under /projects/{p}/…: one decision for the whole project.
    let mut filter_items = !sees_everything;
    if let Some(project) = &path_project {
        let workspace = cache.of(&state, project).await?;
        let target = Target {
            kind: info.kind,
            category: Some(info.category),
            name: None,
            workspace: workspace.as_deref(),
            project: Some(project),
            environment: None,
            subject: None,
        };
        if let Decision::Deny(reason) = caller.principal.authorize(Verb::List, &target) {
            return Err(ApiError::Forbidden(reason));
        }
        filter_items = false;
    } else if !sees_everything && !caller.principal.may_list(info.category) {
        return Err(ApiError::Forbidden(format!("user {:?} may not list {} objects", caller.user(), info.kind)));
    }
    let query = ListQuery {
        kind: info.kind.to_string(),
        project,
        selector,
        name_contains: params.q.clone(),
        sort,
        descending,
        limit: params.limit.unwrap_or(0),
        continue_token: params.continue_token.clone(),
    };
    let page = state.store.list(&query).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for object in page.items {
        if filter_items {
            let placement = place(&state, &info, &object, &mut cache).await?;
            if !decide(&caller, Verb::Get, &info, &object, &placement).is_allowed() {
                continue;
            }
        }
        items.push(present(&info, object));
    }
    if let Some(observed) = &state.observed {
        for object in &mut items {
            if let Some(mut status) = observed.status_of(object).await {
                // A list shows where each object stands; its instances, events and nodes are in
                // its GET.
                if let Some(fields) = status.as_object_mut() {
                    for detail in ["instances", "events", "nodes"] {
                        fields.remove(detail);
                    }
                }
                object.status = status;
            }
        }
    }
    let mut metadata = json!({});
    if let Some(token) = page.continue_token {
        metadata["continue"] = Value::String(token);
    }
    Ok(Json(json!({
        "apiVersion": flotilla_core::API_VERSION,
        "kind": format!("{}List", info.kind),
        "metadata": metadata,
        "items": items,
    })))
}

/// `GET` one object.
pub async fn get(
    state: AppState,
    caller: Caller,
    info: Arc<KindInfo>,
    project: Option<String>,
    name: String,
) -> Result<Json<Object>, ApiError> {
    let key = ObjectKey::new(info.kind, project, &name);
    let Some(object) = state.store.get(&key).await? else {
        return Err(ApiError::NotFound(format!("{key} not found")));
    };
    let placement = place(&state, &info, &object, &mut Workspaces::default()).await?;
    if let Decision::Deny(reason) = decide(&caller, Verb::Get, &info, &object, &placement) {
        return Err(ApiError::Forbidden(reason));
    }
    let mut object = object;
    if let Some(observed) = &state.observed
        && let Some(status) = observed.status_of(&object).await
    {
        object.status = status;
    }
    Ok(Json(present(&info, object)))
}

/// A write request's body and where it was sent.
struct Incoming<'a> {
    action: &'a str,
    project: Option<String>,
    /// The name in the URL (updates); `None` for creates.
    name: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// Parses and validates a body as an object of `info`'s kind at `project`/`name`.
async fn object_from_body(
    state: &AppState,
    caller: &Caller,
    info: &KindInfo,
    incoming: Incoming<'_>,
) -> Result<Object, ApiError> {
    let Incoming { action, project, name, headers, body } = incoming;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let key_hint = name.map(|n| ObjectKey::new(info.kind, project.clone(), n));
    let mut value = match documents::parse_one(body, content_type) {
        Ok(value) => value,
        Err(message) => {
            let error = ApiError::bad_field("", message);
            return Err(refuse(state, caller, action, key_hint.as_ref(), Outcome::Invalid, error).await);
        }
    };
    // The path decides the project: fill it in, or refuse a contradiction.
    let mut errors = ValidationErrors::default();
    if let (Some(project), Some(Value::Object(metadata))) = (&project, value.get_mut("metadata")) {
        match metadata.get("project").and_then(Value::as_str) {
            None => {
                metadata.insert("project".into(), Value::String(project.clone()));
            }
            Some(found) if found != project => {
                errors.push("metadata.project", format!("{found:?} does not match the project {project:?} in the URL"))
            }
            Some(_) => {}
        }
    }
    let object = match state.kinds.parse_document(value) {
        Ok(object) => Some(object),
        Err(found) => {
            errors.0.extend(found.0);
            None
        }
    };
    if let Some(object) = &object {
        if object.kind != info.kind {
            errors.push("kind", format!("{:?} sent to the {} endpoint", object.kind, info.plural));
        }
        if let Some(name) = name
            && object.metadata.name != name
        {
            errors.push(
                "metadata.name",
                format!("{:?} does not match the name {name:?} in the URL", object.metadata.name),
            );
        }
    }
    match object {
        Some(object) if errors.is_empty() => Ok(object),
        _ => Err(refuse(state, caller, action, key_hint.as_ref(), Outcome::Invalid, ApiError::invalid(errors)).await),
    }
}

fn operation(verb: OperationVerb, key: ObjectKey, object: Option<Object>, precondition: Option<u64>) -> Operation {
    Operation { id: uuid::Uuid::new_v4().to_string(), verb, key, object, precondition }
}

/// `POST` a new object to a collection.
pub async fn create(
    state: AppState,
    caller: Caller,
    info: Arc<KindInfo>,
    project: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Object>), ApiError> {
    let object = object_from_body(
        &state,
        &caller,
        &info,
        Incoming { action: "create", project, name: None, headers: &headers, body: &body },
    )
    .await?;
    authorize_write(&state, &caller, Verb::Create, "create", &info, &[&object]).await?;
    let op = operation(OperationVerb::Create, object.key(), Some(object), None);
    let key = op.key.clone();
    let committed = state.store.commit(Mutation { actor: caller.actor(), change: Change::Object(op) }).await?;
    written(&state, &key);
    let object = committed.object.ok_or_else(|| ApiError::Internal("create returned no object".into()))?;
    Ok((StatusCode::CREATED, Json(present(&info, object))))
}

/// `PUT` an object: replaces spec, labels and annotations. A `metadata.resourceVersion` in
/// the body is a precondition (409 when stale).
pub async fn update(
    state: AppState,
    caller: Caller,
    info: Arc<KindInfo>,
    project: Option<String>,
    name: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Object>, ApiError> {
    let object = object_from_body(
        &state,
        &caller,
        &info,
        Incoming { action: "update", project, name: Some(&name), headers: &headers, body: &body },
    )
    .await?;
    let existing = state.store.get(&object.key()).await?;
    let mut subjects = vec![&object];
    subjects.extend(existing.as_ref());
    authorize_write(&state, &caller, Verb::Update, "update", &info, &subjects).await?;
    let precondition = object.resource_version();
    let op = operation(OperationVerb::Update, object.key(), Some(object), precondition);
    let key = op.key.clone();
    let committed = state.store.commit(Mutation { actor: caller.actor(), change: Change::Object(op) }).await?;
    written(&state, &key);
    let object = committed.object.ok_or_else(|| ApiError::Internal("update returned no object".into()))?;
    Ok(Json(present(&info, object)))
}

/// `DELETE` an object.
pub async fn delete(
    state: AppState,
    caller: Caller,
    info: Arc<KindInfo>,
    project: Option<String>,
    name: String,
    params: DeleteParams,
) -> Result<StatusCode, ApiError> {
    let key = ObjectKey::new(info.kind, project.clone(), &name);
    let existing = state.store.get(&key).await?;
    // A missing object is judged by its key alone, so that a refusal does not reveal absence.
    let stand_in = existing.clone().unwrap_or_else(|| {
        let mut object = Object::new(info.kind, &name);
        object.metadata.project = project;
        object
    });
    authorize_write(&state, &caller, Verb::Delete, "delete", &info, &[&stand_in]).await?;
    let op = operation(OperationVerb::Delete, key, None, params.resource_version);
    let written_key = op.key.clone();
    state.store.commit(Mutation { actor: caller.actor(), change: Change::Object(op) }).await?;
    written(&state, &written_key);
    Ok(StatusCode::NO_CONTENT)
}

/// The result of applying one document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// 0-based index of the document in the request.
    pub document: usize,
    /// Line of the request body where the document starts.
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `created`, `configured`, `unchanged` or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// `POST /api/v1/apply`: create-or-update every document of a YAML/JSON stream, in order.
/// Each document succeeds or fails on its own, like `kubectl apply`.
pub async fn apply(State(state): State<AppState>, caller: Caller, body: Bytes) -> Result<Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::BadRequest(format!("body is not UTF-8: {e}")))?;
    let documents = documents::parse_many(text);
    if documents.is_empty() {
        return Err(ApiError::BadRequest("the body holds no document".into()));
    }
    let mut results = Vec::with_capacity(documents.len());
    for document in documents {
        results.push(apply_one(&state, &caller, document).await);
    }
    let failed = results.iter().filter(|r| r.result == "failed").count();
    Ok(Json(json!({ "results": results, "failed": failed })))
}

async fn apply_one(state: &AppState, caller: &Caller, document: Document) -> ApplyResult {
    let mut result = ApplyResult {
        document: document.index,
        line: document.line,
        kind: None,
        project: None,
        name: None,
        result: "failed",
        resource_version: None,
        error: None,
    };
    let located = Document { value: Ok(Value::Null), ..document.clone() };
    let outcome = async {
        let value = match document.value {
            Ok(value) => value,
            Err(message) => {
                return Err(
                    refuse(state, caller, "apply", None, Outcome::Invalid, ApiError::bad_field("", message)).await
                );
            }
        };
        result.kind = value.get("kind").and_then(Value::as_str).map(str::to_string);
        result.name = value.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string);
        result.project = value.pointer("/metadata/project").and_then(Value::as_str).map(str::to_string);
        let object = match state.kinds.parse_document(value) {
            Ok(object) => object,
            Err(errors) => {
                let key = result
                    .kind
                    .clone()
                    .zip(result.name.clone())
                    .map(|(k, n)| ObjectKey::new(k, result.project.clone(), n));
                return Err(
                    refuse(state, caller, "apply", key.as_ref(), Outcome::Invalid, ApiError::invalid(errors)).await
                );
            }
        };
        let info =
            state.kinds.lookup(&object.kind).cloned().ok_or_else(|| ApiError::Internal("kind vanished".into()))?;
        let existing = state.store.get(&object.key()).await?;
        let verb = if existing.is_some() { Verb::Update } else { Verb::Create };
        let mut subjects = vec![&object];
        subjects.extend(existing.as_ref());
        authorize_write(state, caller, verb, "apply", &info, &subjects).await?;
        let precondition = object.resource_version();
        let op = operation(OperationVerb::Apply, object.key(), Some(object), precondition);
        let key = op.key.clone();
        let committed = state.store.commit(Mutation { actor: caller.actor(), change: Change::Object(op) }).await?;
        written(state, &key);
        Ok((existing.is_some(), committed))
    }
    .await;
    match outcome {
        Ok((existed, committed)) => {
            result.result = match (committed.outcome, existed) {
                (Outcome::Unchanged, _) => "unchanged",
                (_, true) => "configured",
                (_, false) => "created",
            };
            result.resource_version = committed.object.and_then(|o| o.metadata.resource_version);
        }
        Err(error) => {
            let mut body = error.body();
            // Point each field error at its line in the file.
            if let Value::Array(details) = &mut body.details {
                for detail in details {
                    let line = detail.get("path").and_then(Value::as_str).and_then(|path| located.line_of(path));
                    if let (Some(line), Value::Object(map)) = (line, detail) {
                        map.insert("line".into(), json!(line));
                    }
                }
            }
            result.error = Some(body);
        }
    }
    result
}
