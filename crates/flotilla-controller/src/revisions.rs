//! The revision history of applications: when the controller hands a new revision to a
//! cluster it records it as an `ApplicationRevision` (the spec as rolled out, and why it
//! changed), and keeps the newest [`REVISION_HISTORY`] of each application.

use std::sync::Arc;

use flotilla_core::audit::Actor;
use flotilla_core::kinds::ApplicationSpec;
use flotilla_core::kinds::application_revision::{
    APPLICATION_LABEL, ApplicationRevisionSpec, CHANGE_CAUSE_ANNOTATION, REVISION_HISTORY,
};
use flotilla_core::operation::{Operation, OperationError, OperationVerb};
use flotilla_core::selector::Selector;
use flotilla_core::{Object, ObjectKey, ObjectMeta};
use flotilla_store::{Change, ListQuery, Mutation, Store, StoreError};

/// The audit actor of what the controller writes.
pub fn system_actor(request_id: String) -> Actor {
    Actor {
        user: "system".into(),
        auth: "system".into(),
        source_ip: String::new(),
        user_agent: "flotilla-controller".into(),
        request_id,
    }
}

/// Records `revision` of `application` (once), then drops the oldest beyond the history.
pub async fn record(
    store: &Arc<dyn Store>,
    application: &Object,
    spec: &ApplicationSpec,
    revision: u64,
) -> Result<(), StoreError> {
    let Some(project) = application.metadata.project.clone() else { return Ok(()) };
    let name = &application.metadata.name;
    let revision_spec = ApplicationRevisionSpec {
        application: name.clone(),
        revision,
        template: spec.clone(),
        cause: application.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION).cloned(),
    };
    let object_name = ApplicationRevisionSpec::object_name(name, revision);
    let mut metadata =
        ObjectMeta { name: object_name.clone(), project: Some(project.clone()), ..ObjectMeta::default() };
    metadata.labels.insert(APPLICATION_LABEL.into(), name.clone());
    let object = Object {
        api_version: application.api_version.clone(),
        kind: "ApplicationRevision".into(),
        metadata,
        spec: serde_json::to_value(&revision_spec).unwrap_or_default(),
        status: serde_json::Value::Null,
    };
    let key = ObjectKey::new("ApplicationRevision", Some(project.clone()), &object_name);
    // Recorded before (an earlier try, a restarted control plane): a second create would be
    // refused, and the refusal audited, on every try.
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    let operation = Operation {
        id: format!("revision-{project}-{object_name}"),
        verb: OperationVerb::Create,
        key,
        object: Some(object),
        precondition: None,
    };
    let actor = system_actor(format!("revision-{name}-{revision}"));
    match store.commit(Mutation { actor: actor.clone(), change: Change::Object(operation) }).await {
        Ok(_) | Err(StoreError::Operation(OperationError::AlreadyExists(_))) => {}
        Err(error) => return Err(error),
    }
    prune(store, &project, name, actor).await
}

/// Deletes every revision of `application` but the newest [`REVISION_HISTORY`].
async fn prune(store: &Arc<dyn Store>, project: &str, application: &str, actor: Actor) -> Result<(), StoreError> {
    delete_all_but(store, project, application, REVISION_HISTORY, actor).await
}

/// Deletes the whole history of an application that is gone.
pub async fn forget(store: &Arc<dyn Store>, project: &str, application: &str) -> Result<(), StoreError> {
    delete_all_but(store, project, application, 0, system_actor(format!("forget-{application}"))).await
}

async fn delete_all_but(
    store: &Arc<dyn Store>,
    project: &str,
    application: &str,
    keep: usize,
    actor: Actor,
) -> Result<(), StoreError> {
    let mut revisions = list(store, project, application).await?;
    if revisions.len() <= keep {
        return Ok(());
    }
    revisions.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    for (_, object) in revisions.into_iter().skip(keep) {
        let operation = Operation {
            id: format!("prune-{project}-{}", object.metadata.name),
            verb: OperationVerb::Delete,
            key: object.key(),
            object: None,
            precondition: None,
        };
        match store.commit(Mutation { actor: actor.clone(), change: Change::Object(operation) }).await {
            Ok(_) | Err(StoreError::Operation(OperationError::NotFound(_))) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The annotation on a revision whose rollout completed: one to roll back to.
pub const ROLLED_OUT_ANNOTATION: &str = "flotilla.io/rolled-out";

/// Marks `revision` of `application` as rolled out (once), so that after a restart the
/// controller still knows where to roll back to.
pub async fn mark_rolled_out(
    store: &Arc<dyn Store>,
    project: &str,
    application: &str,
    revision: u64,
) -> Result<(), StoreError> {
    let key = ObjectKey::new(
        "ApplicationRevision",
        Some(project.to_string()),
        ApplicationRevisionSpec::object_name(application, revision),
    );
    let Some(mut object) = store.get(&key).await? else { return Ok(()) };
    if object.metadata.annotations.contains_key(ROLLED_OUT_ANNOTATION) {
        return Ok(());
    }
    object.metadata.annotations.insert(ROLLED_OUT_ANNOTATION.into(), "true".into());
    let operation = Operation {
        id: format!("rolled-out-{project}-{}", key.name),
        verb: OperationVerb::Update,
        key: key.clone(),
        precondition: object.resource_version(),
        object: Some(object),
    };
    let actor = system_actor(format!("rolled-out-{application}-{revision}"));
    match store.commit(Mutation { actor, change: Change::Object(operation) }).await {
        Ok(_) | Err(StoreError::Operation(OperationError::Conflict { .. })) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The newest revision below `below` whose rollout completed, with its spec.
pub async fn last_rolled_out(
    store: &Arc<dyn Store>,
    project: &str,
    application: &str,
    below: u64,
) -> Result<Option<(u64, ApplicationSpec)>, StoreError> {
    let revisions = list(store, project, application).await?;
    Ok(revisions
        .into_iter()
        .filter(|(revision, object)| {
            *revision < below && object.metadata.annotations.contains_key(ROLLED_OUT_ANNOTATION)
        })
        .max_by_key(|(revision, _)| *revision)
        .and_then(|(revision, object)| {
            serde_json::from_value::<ApplicationRevisionSpec>(object.spec).ok().map(|s| (revision, s.template))
        }))
}

/// The recorded revisions of `application`: (revision, object), in no particular order.
pub async fn list(store: &Arc<dyn Store>, project: &str, application: &str) -> Result<Vec<(u64, Object)>, StoreError> {
    let selector = Selector::parse(&format!("{APPLICATION_LABEL}={application}")).unwrap_or_default();
    let query = ListQuery {
        kind: "ApplicationRevision".into(),
        project: Some(project.to_string()),
        selector,
        limit: flotilla_store::MAX_PAGE,
        ..ListQuery::default()
    };
    let page = store.list(&query).await?;
    Ok(page
        .items
        .into_iter()
        .filter_map(|object| {
            let spec: ApplicationRevisionSpec = serde_json::from_value(object.spec.clone()).ok()?;
            (spec.application == application).then_some((spec.revision, object))
        })
        .collect())
}
