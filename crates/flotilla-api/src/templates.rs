//! Making applications from templates: `POST …/templates/{name}/instantiate` (a project's
//! template) and `POST /api/v1/platformtemplates/{name}/instantiate` (a shared one, into the
//! project the body names).
//!
//! The caller must be able to read the template and to create the Application. Values are
//! checked against the version's parameter schema (errors at `values.<parameter>`), the
//! Application is rendered ([`TemplateSpec::render`]) and then created exactly as
//! `POST …/applications` creates one: validated (errors at `spec.…`), quota-checked and
//! audited in its transaction. It carries the annotation `flotilla.io/template`
//! (`Template/<project>/<name>@<version>` or `PlatformTemplate/<name>@<version>`).
//! With `dryRun`, the rendered Application is returned and nothing is written.
//!
//! The other way, `POST …/applications/{name}/save-as-template` saves an Application's spec
//! as a new version of a template, chosen fields becoming parameters
//! ([`TemplateVersion::from_application`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use flotilla_core::audit::Outcome;
use flotilla_core::kinds::{ParameterFrom, PlatformTemplateSpec, TemplateSpec, TemplateVersion};
use flotilla_core::rbac::Verb;
use flotilla_core::{Object, ObjectKey};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::{self, authorize, refuse};
use crate::state::AppState;

/// The annotation naming the template an Application was made from.
pub const TEMPLATE_ANNOTATION: &str = "flotilla.io/template";

/// Body of an instantiation.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstantiateRequest {
    /// The new Application's name.
    pub name: String,
    /// The project to create it in: required for a platform template, and for a project's
    /// template it must be that project (or left out).
    #[serde(default)]
    pub project: Option<String>,
    /// The template version; the newest when left out.
    #[serde(default)]
    pub version: Option<String>,
    /// Parameter values; the schema's defaults fill in the rest.
    #[serde(default)]
    pub values: Value,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Render and validate only; create nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /api/v1/projects/{project}/templates/{name}/instantiate`.
pub async fn instantiate_project_template(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Json(request): Json<InstantiateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if request.project.as_ref().is_some_and(|p| *p != project) {
        return Err(ApiError::bad_field("project", "a project's template makes applications in that project only"));
    }
    let key = ObjectKey::new("Template", Some(project.clone()), &name);
    let (object, spec) = template::<TemplateSpec>(&state, &caller, &key).await?;
    instantiate(state, caller, &object, &spec, project, request).await
}

/// `POST /api/v1/platformtemplates/{name}/instantiate`.
pub async fn instantiate_platform_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(request): Json<InstantiateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = request
        .project
        .clone()
        .ok_or_else(|| ApiError::bad_field("project", "name the project to create the application in"))?;
    let key = ObjectKey::new("PlatformTemplate", None, &name);
    let (object, spec) = template::<PlatformTemplateSpec>(&state, &caller, &key).await?;
    instantiate(state, caller, &object, &spec.0, project, request).await
}

/// The template at `key`, once the caller may read it.
async fn template<S: serde::de::DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    key: &ObjectKey,
) -> Result<(Object, S), ApiError> {
    let object = state.store.get(key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info = state.kinds.lookup(&key.kind).ok_or_else(|| ApiError::Internal(format!("no {} kind", key.kind)))?;
    authorize(state, caller, Verb::Get, "instantiate", info, &object).await?;
    let spec = serde_json::from_value(object.spec.clone())
        .map_err(|e| ApiError::Internal(format!("stored {key} is damaged: {e}")))?;
    Ok((object, spec))
}

async fn instantiate(
    state: AppState,
    caller: Caller,
    template: &Object,
    spec: &TemplateSpec,
    project: String,
    request: InstantiateRequest,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let application_key = ObjectKey::new("Application", Some(project.clone()), &request.name);
    let rendered = match spec.render(request.version.as_deref(), &request.values) {
        Ok(rendered) => rendered,
        Err(errors) => {
            let error = ApiError::invalid(errors);
            return Err(refuse(&state, &caller, "create", Some(&application_key), Outcome::Invalid, error).await);
        }
    };
    let version = spec.version(request.version.as_deref()).map(|v| v.version.clone()).unwrap_or_default();
    let source = template.key().to_string();
    let document = json!({
        "apiVersion": flotilla_core::API_VERSION,
        "kind": "Application",
        "metadata": {
            "name": request.name,
            "project": project,
            "labels": request.labels,
            "annotations": {TEMPLATE_ANNOTATION: format!("{source}@{version}")},
        },
        "spec": rendered,
    });
    if request.dry_run {
        let object = state.kinds.parse_document(document).map_err(ApiError::invalid)?;
        return Ok((StatusCode::OK, Json(serde_json::to_value(object).unwrap_or_default())));
    }
    let info =
        state.kinds.lookup("Application").cloned().ok_or_else(|| ApiError::Internal("no Application kind".into()))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = Bytes::from(document.to_string());
    let (status, Json(created)) = objects::create(state, caller, info, Some(project), headers, body).await?;
    Ok((status, Json(serde_json::to_value(created).unwrap_or_default())))
}

/// Body of `POST …/applications/{name}/save-as-template`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaveRequest {
    /// The template to create, or to add a version to.
    pub template: String,
    /// A platform template (shared by every project; platform admins) instead of the project's.
    #[serde(default)]
    pub platform: bool,
    /// The new version's name.
    pub version: String,
    /// `NAME=PATH` (`image=components[0].image`): the field becomes parameter NAME, its
    /// current value the default.
    #[serde(default)]
    pub parameters: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /api/v1/projects/{project}/applications/{name}/save-as-template`: the application's
/// spec as a new version of a template, created or updated through the objects path (so with
/// its rights, validation and audit).
pub async fn save_application(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Json(request): Json<SaveRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = ObjectKey::new("Application", Some(project.clone()), &name);
    let application = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info = state.kinds.lookup("Application").ok_or_else(|| ApiError::Internal("no Application kind".into()))?;
    authorize(&state, &caller, Verb::Get, "get", info, &application).await?;
    let mut parameters = Vec::new();
    let mut errors = flotilla_core::ValidationErrors::default();
    for (index, text) in request.parameters.iter().enumerate() {
        match ParameterFrom::parse(text) {
            Ok(parameter) => parameters.push(parameter),
            Err(problem) => errors.push(format!("parameters[{index}]"), problem),
        }
    }
    errors.into_result().map_err(ApiError::invalid)?;
    let version = TemplateVersion::from_application(&request.version, &application.spec, &parameters)
        .map_err(ApiError::invalid)?;
    let (kind, plural, template_project) = if request.platform {
        ("PlatformTemplate", "platformtemplates", None)
    } else {
        ("Template", "templates", Some(project.clone()))
    };
    let template_key = ObjectKey::new(kind, template_project.clone(), &request.template);
    let info = state.kinds.lookup(plural).cloned().ok_or_else(|| ApiError::Internal(format!("no {kind} kind")))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match state.store.get(&template_key).await? {
        Some(existing) => {
            let mut spec: TemplateSpec = serde_json::from_value(existing.spec.clone())
                .or_else(|_| serde_json::from_value::<PlatformTemplateSpec>(existing.spec.clone()).map(|p| p.0))
                .map_err(|e| ApiError::Internal(format!("stored {template_key} is damaged: {e}")))?;
            spec.versions.push(version);
            if request.description.is_some() {
                spec.description = request.description.clone();
            }
            let mut document = serde_json::to_value(&existing).map_err(|e| ApiError::Internal(e.to_string()))?;
            document["spec"] = serde_json::to_value(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
            let body = Bytes::from(document.to_string());
            let Json(updated) =
                objects::update(state, caller, info, template_project, request.template, headers, body).await?;
            Ok((StatusCode::OK, Json(serde_json::to_value(updated).unwrap_or_default())))
        }
        None => {
            let spec = TemplateSpec { description: request.description.clone(), versions: vec![version] };
            let mut metadata = json!({"name": request.template});
            if let Some(project) = &template_project {
                metadata["project"] = json!(project);
            }
            let document =
                json!({"apiVersion": flotilla_core::API_VERSION, "kind": kind, "metadata": metadata, "spec": spec});
            let body = Bytes::from(document.to_string());
            let (status, Json(created)) = objects::create(state, caller, info, template_project, headers, body).await?;
            Ok((status, Json(serde_json::to_value(created).unwrap_or_default())))
        }
    }
}
