//! `GET /api/v1/auth/can`: whether the caller may do something, decided by the same policy
//! that decides the real request (as Kubernetes' SelfSubjectAccessReview), so the console
//! offers only the actions the API would accept, without a copy of the rules.

use axum::Json;
use axum::extract::{Query, State};
use flotilla_core::rbac::{Decision, Target, Verb};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::Workspaces;
use crate::state::AppState;

/// Query of `GET /api/v1/auth/can`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessQuery {
    /// `get`, `list`, `create`, `update` or `delete`.
    pub verb: String,
    /// The kind (`Application`) or its plural (`applications`).
    pub kind: String,
    pub project: Option<String>,
    pub environment: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessAnswer {
    pub allowed: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn verb(text: &str) -> Result<Verb, ApiError> {
    Ok(match text {
        "get" => Verb::Get,
        "list" => Verb::List,
        "create" => Verb::Create,
        "update" => Verb::Update,
        "delete" => Verb::Delete,
        other => {
            return Err(ApiError::bad_field("verb", format!("{other:?} is not get, list, create, update or delete")));
        }
    })
}

pub async fn can(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AccessQuery>,
) -> Result<Json<AccessAnswer>, ApiError> {
    let verb = verb(&query.verb)?;
    let info = state
        .kinds
        .lookup(&query.kind)
        .or_else(|| state.kinds.by_plural(&query.kind))
        .cloned()
        .ok_or_else(|| ApiError::bad_field("kind", format!("unknown kind {:?}", query.kind)))?;
    let workspace = match &query.project {
        Some(project) => Workspaces::default().of(&state, project).await?,
        None => None,
    };
    let target = Target {
        kind: info.kind,
        category: Some(info.category),
        name: query.name.as_deref(),
        workspace: workspace.as_deref(),
        project: query.project.as_deref(),
        environment: query.environment.as_deref(),
        subject: None,
    };
    Ok(Json(match caller.principal.authorize(verb, &target) {
        Decision::Allow => AccessAnswer { allowed: true, reason: None },
        Decision::Deny(reason) => AccessAnswer { allowed: false, reason: Some(reason) },
    }))
}
