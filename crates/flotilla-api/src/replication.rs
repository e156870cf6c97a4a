//! Running replication rules: by hand (`POST …/replicationrules/{name}/run`), on their cron
//! schedule ([`schedule`], a task of the server), and, for push rules marked `onPush`, right
//! after a matching tag is pushed ([`after_push`]).
//!
//! The built-in registry takes part through its own Distribution API, at the address the
//! server listens on, with a registry token minted for the run (subject
//! `system:replication`, the run's repositories only, one hour). So an image pulled in is
//! checked, indexed and audited like any push, and the project's rules (quota, immutable
//! tags) hold. Each run is audited as `replication.run` with what it copied.
//!
//! Caveats: the schedule is kept in memory. After a restart a rule next runs at its next
//! scheduled time (a run missed while the server was down is not made up), and with several
//! control-plane replicas each runs the schedule (copies are idempotent: the second finds
//! everything in place).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use flotilla_core::audit::{Actor, Outcome};
use flotilla_core::kinds::{Direction, ExternalRegistrySpec, ReplicationRuleSpec};
use flotilla_core::rbac::Verb;
use flotilla_core::{Object, ObjectKey};
use flotilla_registry::remote::{Endpoint, Remote};
use flotilla_registry::replicate::{CopyReport, plan, run_rule};
use flotilla_registry::token::{Access, Claims};
use flotilla_store::registry::RepositoryQuery;
use flotilla_store::{AuditNote, Change, ListQuery, Mutation};
use oci_client::secrets::RegistryAuth;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::objects::authorize;
use crate::state::AppState;

/// The subject of the tokens replication runs with.
pub(crate) const SUBJECT: &str = "system:replication";
/// How often the schedule is looked at.
const TICK: Duration = Duration::from_secs(15);

/// `POST /api/v1/projects/{project}/replicationrules/{name}/run`: runs the rule now and
/// answers what it copied (needs the right to change the rule).
pub async fn run_now(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new("ReplicationRule", Some(project), &name);
    let object = state.store.get(&key).await?.ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let info =
        state.kinds.lookup("ReplicationRule").ok_or_else(|| ApiError::Internal("no ReplicationRule kind".into()))?;
    authorize(&state, &caller, Verb::Update, "replication.run", info, &object).await?;
    let report = run(&state, &object, None, &caller.actor()).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// Runs `rule` (an object), for one `(path, tag)` when given; audits the run.
pub async fn run(
    state: &AppState,
    rule: &Object,
    only: Option<(&str, &str)>,
    actor: &Actor,
) -> Result<CopyReport, ApiError> {
    let key = rule.key();
    let project = key.project.clone().unwrap_or_default();
    let spec: ReplicationRuleSpec = serde_json::from_value(rule.spec.clone())
        .map_err(|e| ApiError::Internal(format!("stored {key} is damaged: {e}")))?;
    let result = copy(state, &project, &spec, only).await;
    let (outcome, message) = match &result {
        Ok(report) if report.failures.is_empty() => (Outcome::Success, json!(report).to_string()),
        Ok(report) => (Outcome::Error, json!(report).to_string()),
        Err(error) => (Outcome::Error, error.to_string()),
    };
    let note = AuditNote {
        action: "replication.run".into(),
        kind: Some("ReplicationRule".into()),
        project: Some(project.clone()),
        name: Some(key.name.clone()),
        outcome: Some(outcome),
        message: Some(message),
    };
    state.store.commit(Mutation { actor: actor.clone(), change: Change::Record(note) }).await?;
    result
}

async fn copy(
    state: &AppState,
    project: &str,
    spec: &ReplicationRuleSpec,
    only: Option<(&str, &str)>,
) -> Result<CopyReport, ApiError> {
    let external = external_registry(state, &spec.registry, "spec.registry").await?;
    let local_paths = match (only, spec.direction) {
        (Some((path, _)), _) => vec![path.to_string()],
        (None, Direction::Push) => project_repositories(state, project).await?,
        (None, Direction::Pull) => Vec::new(),
    };
    let pairs = plan(spec, project, &local_paths, &external).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let local = local_registry(state, pairs.iter().map(|p| p.local.clone()).collect())?;
    Ok(run_rule(spec, &pairs, &local, &external, only.map(|(_, tag)| tag)).await)
}

/// A client of the `ExternalRegistry` called `name` (named by the field at `path`).
pub(crate) async fn external_registry(state: &AppState, name: &str, path: &str) -> Result<Remote, ApiError> {
    let key = ObjectKey::new("ExternalRegistry", None, name);
    let object =
        state.store.get(&key).await?.ok_or_else(|| ApiError::bad_field(path, format!("{key} does not exist")))?;
    let registry: ExternalRegistrySpec =
        serde_json::from_value(object.spec).map_err(|e| ApiError::Internal(format!("stored {key} is damaged: {e}")))?;
    let (host, plain_http) =
        registry.host().ok_or_else(|| ApiError::bad_field(path, format!("{key} has no usable URL")))?;
    let auth = match &registry.credentials {
        Some(credentials) => RegistryAuth::Basic(credentials.username.clone(), credentials.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    Ok(Remote::new(Endpoint { host, plain_http, insecure: registry.insecure, auth }))
}

/// The paths (inside the project) of every repository of `project`.
async fn project_repositories(state: &AppState, project: &str) -> Result<Vec<String>, ApiError> {
    let mut paths = Vec::new();
    let mut after = None;
    loop {
        let query = RepositoryQuery {
            project: Some(project.to_string()),
            after: after.clone(),
            limit: 1000,
            ..Default::default()
        };
        let page = state.store.registry().repositories(&query).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        let full = page.len() == 1000;
        paths.extend(page.into_iter().filter_map(|r| r.name.split_once('/').map(|(_, path)| path.to_string())));
        if !full {
            break;
        }
    }
    Ok(paths)
}

/// The built-in registry as a remote, with a token for `repositories` alone (subject
/// `system:replication`, or `subject`).
pub(crate) fn local_registry(state: &AppState, repositories: Vec<String>) -> Result<Remote, ApiError> {
    local_registry_as(state, SUBJECT, repositories)
}

pub(crate) fn local_registry_as(
    state: &AppState,
    subject: &str,
    repositories: Vec<String>,
) -> Result<Remote, ApiError> {
    let service = state.registry.as_ref().ok_or_else(|| ApiError::Unavailable("the registry is not served".into()))?;
    let now = state.clock.now().as_second();
    let access = repositories
        .into_iter()
        .map(|name| Access { kind: "repository".into(), name, actions: vec!["pull".into(), "push".into()] })
        .collect();
    let token = service.tokens.issue(&Claims { sub: subject.into(), access, iat: now, exp: now + 3600 });
    let host = state.config.listen.to_string().replace("0.0.0.0:", "127.0.0.1:");
    Ok(Remote::new(Endpoint { host, plain_http: true, insecure: false, auth: RegistryAuth::Bearer(token) }))
}

fn system_actor() -> Actor {
    system_actor_named(SUBJECT)
}

/// The actor of the server's own work, audited as `user` (`system`, `system:replication`).
pub(crate) fn system_actor_named(user: &str) -> Actor {
    Actor { user: user.into(), auth: "system".into(), request_id: uuid::Uuid::new_v4().to_string(), ..Actor::default() }
}

/// Every replication rule, page by page.
async fn all_rules(state: &AppState) -> Result<Vec<Object>, ApiError> {
    let mut rules = Vec::new();
    let mut continue_token = None;
    loop {
        let query = ListQuery {
            kind: "ReplicationRule".into(),
            limit: 1000,
            continue_token: continue_token.clone(),
            ..ListQuery::default()
        };
        let page = state.store.list(&query).await?;
        rules.extend(page.items);
        match page.continue_token {
            Some(next) => continue_token = Some(next),
            None => return Ok(rules),
        }
    }
}

/// Runs the rules whose schedule is due, until the task is dropped (see the module's
/// caveats).
pub async fn schedule(state: AppState) {
    let next_runs: Arc<Mutex<HashMap<ObjectKey, (String, jiff::Timestamp)>>> = Arc::default();
    let running: Arc<Mutex<std::collections::HashSet<ObjectKey>>> = Arc::default();
    loop {
        tokio::time::sleep(TICK).await;
        let rules = match all_rules(&state).await {
            Ok(rules) => rules,
            Err(error) => {
                tracing::warn!(%error, "cannot list replication rules; trying again");
                continue;
            }
        };
        let now = state.clock.now();
        for rule in rules {
            let Ok(spec) = serde_json::from_value::<ReplicationRuleSpec>(rule.spec.clone()) else { continue };
            let Some(expression) = spec.schedule.clone().filter(|_| !spec.disabled) else { continue };
            let key = rule.key();
            let mut next_runs = next_runs.lock().await;
            // A new or changed schedule starts counting now.
            let due = match next_runs.get(&key) {
                Some((known, due)) if *known == expression => *due,
                _ => match flotilla_core::schedule::next_after(&expression, now) {
                    Ok(due) => {
                        next_runs.insert(key.clone(), (expression.clone(), due));
                        continue;
                    }
                    Err(_) => continue,
                },
            };
            if due > now || !running.lock().await.insert(key.clone()) {
                continue;
            }
            if let Ok(next) = flotilla_core::schedule::next_after(&expression, now) {
                next_runs.insert(key.clone(), (expression, next));
            }
            let (state, running) = (state.clone(), running.clone());
            tokio::spawn(async move {
                if let Err(error) = run(&state, &rule, None, &system_actor()).await {
                    tracing::warn!(%error, rule = %key, "scheduled replication failed");
                }
                running.lock().await.remove(&key);
            });
        }
    }
}

/// After `tag` of `repository` was pushed: runs the project's push rules marked `onPush`
/// that select it, for that tag alone.
pub async fn after_push(state: AppState, repository: String, tag: String) {
    let Some((project, path)) = repository.split_once('/') else { return };
    let query = ListQuery {
        kind: "ReplicationRule".into(),
        project: Some(project.to_string()),
        limit: 1000,
        ..ListQuery::default()
    };
    let rules = match state.store.list(&query).await {
        Ok(page) => page.items,
        Err(error) => {
            tracing::warn!(%error, %repository, "cannot list replication rules after a push");
            return;
        }
    };
    for rule in rules {
        let Ok(spec) = serde_json::from_value::<ReplicationRuleSpec>(rule.spec.clone()) else { continue };
        if spec.disabled || !spec.on_push || spec.direction != Direction::Push {
            continue;
        }
        if spec.selects_repository(path)
            && spec.selects_tag(&tag)
            && let Err(error) = run(&state, &rule, Some((path, &tag)), &system_actor()).await
        {
            tracing::warn!(%error, rule = %rule.key(), "replication after a push failed");
        }
    }
}
