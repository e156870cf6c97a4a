//! The conformance suite: what every [`Store`] implementation must do, checked against a
//! real store.
//!
//! Each case is a `pub async fn` taking `&dyn Store`; it panics, like a failing test, with a
//! message saying what the store did wrong. [`run_all`] runs every case in turn. Other crates
//! reach the suite through the `testsuite` feature; this crate runs it on SQLite and on
//! PostgreSQL in `tests/conformance.rs`.
//!
//! # Expected use
//! - Give the suite a store of its own database. Cases name their objects, users and keys
//!   with a random suffix, so they can share that database with each other and with earlier
//!   runs, but run them one at a time: [`audit_verify_counts_every_record`] counts every
//!   record of the log, which other writers would change under it.
//! - The suite writes only valid objects (apiVersion `flotilla.io/v1`, parsed through
//!   [`KindRegistry::builtin`]), as the API layer hands them to the store.

// A conformance case reports a failure by panicking, as a test does.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use flotilla_core::audit::{Actor, AuditRecord, Outcome};
use flotilla_core::diff::Change as FieldChange;
use flotilla_core::kinds::KindRegistry;
use flotilla_core::operation::{Operation, OperationError, OperationVerb};
use flotilla_core::rbac::{Grant, Role};
use flotilla_core::selector::Selector;
use flotilla_core::{Object, ObjectKey, ValidationErrors};
use futures::future::join_all;
use serde_json::{Value, json};

use crate::registry::{NewManifest, RegistryChange, RegistryRefusal, RepositoryQuery};
use crate::types::{
    ApiToken, AuditNote, AuditQuery, Change, Committed, ListQuery, LoginGrant, MAX_PAGE, Mutation, Session, SortBy,
    SummaryBy, ThrottleState,
};
use crate::{Store, StoreError};

/// Runs every case, one after the other.
pub async fn run_all(store: &dyn Store) {
    store.ping().await.expect("ping answers");
    create_then_get(store).await;
    update_and_delete(store).await;
    apply_unchanged(store).await;
    references_are_checked(store).await;
    list_label_selectors(store).await;
    list_name_contains(store).await;
    list_by_project(store).await;
    list_paging(store).await;
    audit_records_describe_mutations(store).await;
    audit_queries_filter_and_page(store).await;
    audit_summary_counts(store).await;
    secrets_never_reach_the_audit_log(store).await;
    identity_passwords(store).await;
    identity_sessions(store).await;
    identity_tokens(store).await;
    identity_throttle(store).await;
    grants_of_user(store).await;
    group_commit_concurrency(store).await;
    registry_pushes_tags_and_deletions(store).await;
    registry_rules_hold_in_the_transaction(store).await;
    registry_garbage_is_what_nothing_references(store).await;
    applications_are_found_by_the_images_they_run(store).await;
    audit_verify_counts_every_record(store).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

static KINDS: LazyLock<KindRegistry> = LazyLock::new(KindRegistry::builtin);

const SOURCE_IP: &str = "192.0.2.17";
const USER_AGENT: &str = "flotilla-conformance/1.0";

/// A short random suffix that makes names unique across cases and runs (a valid DNS label
/// part and label value).
fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn actor(user: &str) -> Actor {
    Actor {
        user: user.to_string(),
        auth: "token".into(),
        source_ip: SOURCE_IP.into(),
        user_agent: USER_AGENT.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// A valid object of `kind`, parsed as the API parses documents.
fn document(kind: &str, metadata: Value, spec: Value) -> Object {
    KINDS
        .parse_document(json!({"apiVersion": "flotilla.io/v1", "kind": kind, "metadata": metadata, "spec": spec}))
        .unwrap_or_else(|errors| panic!("the suite's own {kind} document is invalid: {errors}"))
}

fn workspace(name: &str, labels: Value, spec: Value) -> Object {
    document("Workspace", json!({"name": name, "labels": labels}), spec)
}

fn project(name: &str, workspace: &str, quota: Option<Value>) -> Object {
    let mut spec = json!({"workspace": workspace, "description": "conformance project"});
    if let Some(quota) = quota {
        spec["quota"] = quota;
    }
    document("Project", json!({"name": name}), spec)
}

fn local_cluster(name: &str) -> Object {
    document("Cluster", json!({"name": name}), json!({"type": "local"}))
}

fn environment(project: &str, name: &str, clusters: &[&str], labels: Value) -> Object {
    document(
        "Environment",
        json!({"name": name, "project": project, "labels": labels}),
        json!({"tier": "test", "clusters": clusters}),
    )
}

fn user(name: &str) -> Object {
    document("User", json!({"name": name}), json!({"displayName": "Conformance", "email": "conformance@example.com"}))
}

fn role_binding(name: &str, spec: Value) -> Object {
    document("RoleBinding", json!({"name": name}), spec)
}

fn operation(verb: OperationVerb, object: &Object, precondition: Option<u64>) -> Operation {
    Operation {
        id: uuid::Uuid::new_v4().to_string(),
        verb,
        key: object.key(),
        object: Some(object.clone()),
        precondition,
    }
}

fn deletion(key: &ObjectKey, precondition: Option<u64>) -> Operation {
    Operation {
        id: uuid::Uuid::new_v4().to_string(),
        verb: OperationVerb::Delete,
        key: key.clone(),
        object: None,
        precondition,
    }
}

async fn submit(store: &dyn Store, actor: &Actor, operation: Operation) -> Result<Committed, StoreError> {
    store.commit(Mutation { actor: actor.clone(), change: Change::Object(operation) }).await
}

async fn submit_change(store: &dyn Store, actor: &Actor, change: Change) -> Result<Committed, StoreError> {
    store.commit(Mutation { actor: actor.clone(), change }).await
}

/// Creates `object` and returns it as stored.
async fn create(store: &dyn Store, actor: &Actor, object: &Object) -> Object {
    let committed = submit(store, actor, operation(OperationVerb::Create, object, None))
        .await
        .unwrap_or_else(|error| panic!("creating {} failed: {error}", object.key()));
    committed.object.unwrap_or_else(|| panic!("the create of {} returned no object", object.key()))
}

fn rv(object: &Object) -> u64 {
    object.resource_version().unwrap_or_else(|| panic!("{} carries no resourceVersion", object.key()))
}

async fn get(store: &dyn Store, key: &ObjectKey) -> Option<Object> {
    store.get(key).await.unwrap_or_else(|error| panic!("get {key} failed: {error}"))
}

/// The validation errors of a refused mutation; panics unless it was refused as invalid.
fn invalid(result: Result<Committed, StoreError>, what: &str) -> ValidationErrors {
    match result {
        Err(StoreError::Operation(OperationError::Invalid(errors))) => errors,
        other => panic!("{what}: expected the store to refuse it as invalid, got {other:?}"),
    }
}

fn has_path(errors: &ValidationErrors, path: &str) -> bool {
    errors.0.iter().any(|error| error.path == path)
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect())
}

/// Walks every page of a list; returns the items and the size of every page.
async fn list_all(store: &dyn Store, query: &ListQuery) -> (Vec<Object>, Vec<usize>) {
    let mut query = query.clone();
    let mut items = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = store.list(&query).await.unwrap_or_else(|error| panic!("list {query:?} failed: {error}"));
        pages.push(page.items.len());
        items.extend(page.items);
        match page.continue_token {
            Some(token) => query.continue_token = Some(token),
            None => return (items, pages),
        }
        assert!(pages.len() <= 10_000, "a list never ends: the continue token does not advance");
    }
}

fn names(objects: &[Object]) -> Vec<String> {
    objects.iter().map(|o| o.metadata.name.clone()).collect()
}

/// Walks every page of an audit query.
async fn audit_all(store: &dyn Store, query: &AuditQuery) -> Vec<AuditRecord> {
    let mut query = query.clone();
    let mut records = Vec::new();
    loop {
        let page =
            store.audit_query(&query).await.unwrap_or_else(|error| panic!("audit query {query:?} failed: {error}"));
        records.extend(page.records);
        match page.next_cursor {
            Some(cursor) => {
                assert!(query.cursor != Some(cursor), "an audit query never ends: the cursor does not advance");
                query.cursor = Some(cursor);
            }
            None => return records,
        }
    }
}

fn seqs(records: &[AuditRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn parse_json(text: Option<&String>, what: &str) -> Value {
    let text = text.unwrap_or_else(|| panic!("the audit record has no {what}"));
    serde_json::from_str(text).unwrap_or_else(|error| panic!("the {what} of an audit record is not JSON: {error}"))
}

fn changes_of(record: &AuditRecord) -> Vec<FieldChange> {
    let text = record.changes.as_deref().unwrap_or_else(|| panic!("audit record {} has no changes", record.seq));
    serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("the changes of record {} do not parse: {error}", record.seq))
}

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

/// A create stamps the server fields and is read back as acknowledged; a second create of the
/// same key is refused.
pub async fn create_then_get(store: &dyn Store) {
    let actor = actor("conformance");
    let name = format!("cg-{}", unique());
    let desired = workspace(&name, labels(&[("team", "payments")]), json!({"description": "first"}));
    let committed = submit(store, &actor, operation(OperationVerb::Create, &desired, None))
        .await
        .expect("creating a new workspace succeeds");
    assert_eq!(committed.outcome, Outcome::Success);
    let created = committed.object.clone().expect("a create returns the stored object");
    assert_eq!(created.resource_version(), Some(committed.seq), "resourceVersion is the commit's sequence number");
    assert_eq!(created.metadata.generation, Some(1));
    let uid = created.metadata.uid.clone().expect("a created object has a uid");
    assert!(!uid.is_empty());
    let created_at = created.metadata.creation_timestamp.expect("a created object has a creationTimestamp");
    assert_eq!(created.metadata.update_timestamp, Some(created_at), "updateTimestamp equals creationTimestamp");
    assert_eq!(created.spec, desired.spec);
    assert_eq!(created.metadata.labels, desired.metadata.labels);
    assert_eq!(created.api_version, "flotilla.io/v1");

    let fetched = get(store, &desired.key()).await.expect("the created object is found");
    assert_eq!(fetched, created, "get returns exactly the object the create acknowledged");

    let again = submit(store, &actor, operation(OperationVerb::Create, &desired, None)).await;
    match again {
        Err(StoreError::Operation(OperationError::AlreadyExists(key))) => assert_eq!(key, desired.key()),
        other => panic!("a second create of {} must be AlreadyExists, got {other:?}", desired.key()),
    }
    assert_eq!(get(store, &desired.key()).await, Some(created.clone()), "a refused create changes nothing");

    let other = create(store, &actor, &workspace(&format!("cg-{}", unique()), json!({}), json!({}))).await;
    assert_ne!(other.metadata.uid, created.metadata.uid, "every object gets its own uid");
    assert!(rv(&other) > rv(&created), "resource versions grow with every commit");

    let missing = ObjectKey::new("Workspace", None, format!("cg-missing-{}", unique()));
    assert_eq!(get(store, &missing).await, None, "get of a missing object is None");
}

/// Updates honour the resourceVersion precondition and keep identity; deletes remove.
pub async fn update_and_delete(store: &dyn Store) {
    let actor = actor("conformance");
    let name = format!("ud-{}", unique());
    let created = create(store, &actor, &workspace(&name, json!({}), json!({"description": "v1"}))).await;
    let key = created.key();

    let changed = workspace(&name, json!({}), json!({"description": "v2"}));
    let committed = submit(store, &actor, operation(OperationVerb::Update, &changed, Some(rv(&created))))
        .await
        .expect("an update with the current resourceVersion succeeds");
    assert_eq!(committed.outcome, Outcome::Success);
    let updated = committed.object.clone().expect("an update returns the stored object");
    assert_eq!(updated.resource_version(), Some(committed.seq));
    assert!(rv(&updated) > rv(&created));
    assert_eq!(updated.metadata.generation, Some(2), "a spec change bumps the generation");
    assert_eq!(updated.metadata.uid, created.metadata.uid, "an update keeps the uid");
    assert_eq!(updated.metadata.creation_timestamp, created.metadata.creation_timestamp);
    assert!(updated.metadata.update_timestamp >= created.metadata.update_timestamp);
    assert_eq!(updated.spec["description"], json!("v2"));
    assert_eq!(get(store, &key).await, Some(updated.clone()), "get returns the updated object");

    // Labels only: a new resourceVersion, the same generation.
    let relabelled = workspace(&name, labels(&[("tier", "gold")]), json!({"description": "v2"}));
    let committed = submit(store, &actor, operation(OperationVerb::Update, &relabelled, Some(rv(&updated))))
        .await
        .expect("a label update succeeds");
    let relabelled = committed.object.expect("an update returns the stored object");
    assert_eq!(relabelled.metadata.generation, Some(2), "a label-only change keeps the generation");
    assert_eq!(relabelled.resource_version(), Some(committed.seq));
    assert_eq!(relabelled.metadata.labels.get("tier").map(String::as_str), Some("gold"));

    // A stale precondition is a conflict naming both versions, and changes nothing.
    let stale = workspace(&name, json!({}), json!({"description": "lost update"}));
    match submit(store, &actor, operation(OperationVerb::Update, &stale, Some(rv(&created)))).await {
        Err(StoreError::Operation(OperationError::Conflict { key: conflict_key, expected, current })) => {
            assert_eq!(conflict_key, key);
            assert_eq!(expected, rv(&created));
            assert_eq!(current, rv(&relabelled));
        }
        other => panic!("an update with a stale resourceVersion must be a Conflict, got {other:?}"),
    }
    match submit(store, &actor, deletion(&key, Some(rv(&updated)))).await {
        Err(StoreError::Operation(OperationError::Conflict { expected, current, .. })) => {
            assert_eq!((expected, current), (rv(&updated), rv(&relabelled)));
        }
        other => panic!("a delete with a stale resourceVersion must be a Conflict, got {other:?}"),
    }
    assert_eq!(get(store, &key).await, Some(relabelled.clone()), "refused writes change nothing");

    // An update of a missing object is NotFound.
    let missing = workspace(&format!("ud-missing-{}", unique()), json!({}), json!({}));
    match submit(store, &actor, operation(OperationVerb::Update, &missing, None)).await {
        Err(StoreError::Operation(OperationError::NotFound(k))) => assert_eq!(k, missing.key()),
        other => panic!("an update of a missing object must be NotFound, got {other:?}"),
    }

    // Delete with the current precondition removes it.
    let committed =
        submit(store, &actor, deletion(&key, Some(rv(&relabelled)))).await.expect("a delete with the current rv works");
    assert_eq!(committed.outcome, Outcome::Success);
    assert!(committed.object.is_none(), "a delete returns no object");
    assert!(committed.seq > rv(&relabelled));
    assert_eq!(get(store, &key).await, None, "a deleted object is gone");
    match submit(store, &actor, deletion(&key, None)).await {
        Err(StoreError::Operation(OperationError::NotFound(k))) => assert_eq!(k, key),
        other => panic!("a delete of a missing object must be NotFound, got {other:?}"),
    }

    // The name can be reused; the new object is a new object.
    let recreated = create(store, &actor, &workspace(&name, json!({}), json!({"description": "v1"}))).await;
    assert_ne!(recreated.metadata.uid, created.metadata.uid, "a recreated object gets a new uid");
    assert_eq!(recreated.metadata.generation, Some(1));
}

/// An apply of what is already stored writes nothing.
pub async fn apply_unchanged(store: &dyn Store) {
    let actor = actor("conformance");
    let name = format!("ap-{}", unique());
    let desired = workspace(&name, labels(&[("env", "ci")]), json!({"description": "applied"}));
    let first = submit(store, &actor, operation(OperationVerb::Apply, &desired, None))
        .await
        .expect("an apply of a new object creates it");
    assert_eq!(first.outcome, Outcome::Success);
    let stored = first.object.clone().expect("an apply returns the object");
    assert_eq!(stored.metadata.generation, Some(1));
    assert_eq!(stored.resource_version(), Some(first.seq));

    let second = submit(store, &actor, operation(OperationVerb::Apply, &desired, None))
        .await
        .expect("an identical apply succeeds");
    assert_eq!(second.outcome, Outcome::Unchanged, "an identical apply is Unchanged");
    assert_eq!(second.object.as_ref(), Some(&stored), "an unchanged apply returns the stored object as it was");
    let fetched = get(store, &desired.key()).await.expect("the applied object exists");
    assert_eq!(rv(&fetched), rv(&stored), "an unchanged apply does not make a new resourceVersion");
    assert_eq!(fetched, stored);
    let record =
        store.audit_record(second.seq).await.expect("audit_record works").expect("the unchanged apply is recorded");
    assert_eq!(record.action, "apply");
    assert_eq!(record.outcome, "unchanged");
    assert_eq!(record.name.as_deref(), Some(name.as_str()));

    let changed = workspace(&name, labels(&[("env", "ci")]), json!({"description": "applied again"}));
    let third = submit(store, &actor, operation(OperationVerb::Apply, &changed, None))
        .await
        .expect("an apply with a change updates");
    assert_eq!(third.outcome, Outcome::Success);
    let updated = third.object.expect("an apply returns the object");
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.resource_version(), Some(third.seq));
    assert_eq!(updated.metadata.uid, stored.metadata.uid);
}

/// Objects naming missing objects, or not fitting them, are refused with the field's path.
pub async fn references_are_checked(store: &dyn Store) {
    let actor = actor("conformance");
    let suffix = unique();

    let missing_workspace = format!("rf-nows-{suffix}");
    let orphan = project(&format!("rf-orphan-{suffix}"), &missing_workspace, None);
    let errors =
        invalid(submit(store, &actor, operation(OperationVerb::Create, &orphan, None)).await, "orphan project");
    assert!(has_path(&errors, "spec.workspace"), "the error names spec.workspace: {errors}");
    assert!(errors.to_string().contains(&missing_workspace), "the error names the missing workspace: {errors}");
    assert_eq!(get(store, &orphan.key()).await, None, "a refused create stores nothing");
    let records = audit_all(
        store,
        &AuditQuery { kind: Some("Project".into()), name: Some(orphan.metadata.name.clone()), ..AuditQuery::default() },
    )
    .await;
    assert_eq!(records.len(), 1, "the refused create is recorded");
    assert_eq!(records[0].outcome, "invalid");

    let workspace_name = format!("rf-ws-{suffix}");
    create(store, &actor, &workspace(&workspace_name, json!({}), json!({"quota": {"cpu": "4", "memory": "8Gi"}})))
        .await;
    let greedy = project(&format!("rf-greedy-{suffix}"), &workspace_name, Some(json!({"cpu": "8", "memory": "4Gi"})));
    let errors =
        invalid(submit(store, &actor, operation(OperationVerb::Create, &greedy, None)).await, "over-quota project");
    assert!(has_path(&errors, "spec.quota.cpu"), "the error names spec.quota.cpu: {errors}");
    assert!(!has_path(&errors, "spec.quota.memory"), "memory fits, so it is not named: {errors}");

    let modest_name = format!("rf-modest-{suffix}");
    let modest =
        create(store, &actor, &project(&modest_name, &workspace_name, Some(json!({"cpu": "2", "memory": "4Gi"}))))
            .await;
    let grown = project(&modest_name, &workspace_name, Some(json!({"cpu": "2", "memory": "16Gi"})));
    let errors = invalid(
        submit(store, &actor, operation(OperationVerb::Update, &grown, Some(rv(&modest)))).await,
        "project update over quota",
    );
    assert!(has_path(&errors, "spec.quota.memory"), "updates are checked too: {errors}");

    // The projects of a workspace share its quota: together they must fit.
    let sibling =
        create(store, &actor, &project(&format!("rf-sib-{suffix}"), &workspace_name, Some(json!({"cpu": "2"})))).await;
    let crowded = project(&format!("rf-crowd-{suffix}"), &workspace_name, Some(json!({"cpu": "1"})));
    let errors = invalid(
        submit(store, &actor, operation(OperationVerb::Create, &crowded, None)).await,
        "projects together over the workspace quota",
    );
    assert!(has_path(&errors, "spec.quota.cpu"), "the sum over the quota is named: {errors}");
    let shrunk = workspace(&workspace_name, json!({}), json!({"quota": {"cpu": "3", "memory": "8Gi"}}));
    let errors = invalid(
        submit(store, &actor, operation(OperationVerb::Update, &shrunk, None)).await,
        "workspace quota below its projects'",
    );
    assert!(has_path(&errors, "spec.quota.cpu"), "a workspace cannot shrink below its projects: {errors}");
    let delete_sibling =
        Operation { id: unique(), verb: OperationVerb::Delete, key: sibling.key(), object: None, precondition: None };
    submit(store, &actor, delete_sibling).await.expect("the sibling deletes");

    let cluster_name = format!("rf-cl-{suffix}");
    let missing_cluster = environment(&modest_name, "dev", &[&cluster_name], json!({}));
    let errors =
        invalid(submit(store, &actor, operation(OperationVerb::Create, &missing_cluster, None)).await, "no cluster");
    assert!(has_path(&errors, "spec.clusters[0]"), "the error names spec.clusters[0]: {errors}");
    create(store, &actor, &local_cluster(&cluster_name)).await;
    let missing_project = environment(&format!("rf-nopr-{suffix}"), "dev", &[&cluster_name], json!({}));
    let errors =
        invalid(submit(store, &actor, operation(OperationVerb::Create, &missing_project, None)).await, "no project");
    assert!(has_path(&errors, "metadata.project"), "the error names metadata.project: {errors}");
    create(store, &actor, &environment(&modest_name, "dev", &[&cluster_name], json!({}))).await;

    let binding = role_binding(
        &format!("rf-rb-{suffix}"),
        json!({"user": format!("rf-nouser-{suffix}"), "role": "viewer", "project": modest_name}),
    );
    let errors = invalid(submit(store, &actor, operation(OperationVerb::Create, &binding, None)).await, "no user");
    assert!(has_path(&errors, "spec.user"), "the error names spec.user: {errors}");
    assert!(!has_path(&errors, "spec.project"), "the project exists: {errors}");

    // What is referenced cannot be deleted; once the referrer is gone, it can.
    let workspace_key = flotilla_core::ObjectKey::new("Workspace", None, &workspace_name);
    let delete_workspace = Operation {
        id: unique(),
        verb: OperationVerb::Delete,
        key: workspace_key.clone(),
        object: None,
        precondition: None,
    };
    match submit(store, &actor, delete_workspace.clone()).await {
        Err(StoreError::Operation(OperationError::InUse { key, referrers })) => {
            assert_eq!(key, workspace_key);
            assert_eq!(referrers, vec![format!("Project/{modest_name}")], "the referrer is named");
        }
        other => panic!("deleting a referenced workspace must be refused as in use, got {other:?}"),
    }
    assert!(get(store, &workspace_key).await.is_some(), "the refused delete changed nothing");
    let env_key = flotilla_core::ObjectKey::new("Environment", Some(modest_name.clone()), "dev");
    let project_key = flotilla_core::ObjectKey::new("Project", None, &modest_name);
    for key in [env_key, project_key] {
        let delete = Operation { id: unique(), verb: OperationVerb::Delete, key, object: None, precondition: None };
        submit(store, &actor, delete).await.expect("referrers delete in order");
    }
    submit(store, &actor, delete_workspace).await.expect("an unreferenced workspace deletes");
}

/// Label selectors filter on the server, with Kubernetes semantics.
pub async fn list_label_selectors(store: &dyn Store) {
    let actor = actor("conformance");
    let run = unique();
    let specs: [&[(&str, &str)]; 6] = [
        &[("tier", "prod"), ("team", "a")],
        &[("tier", "prod")],
        &[("tier", "test"), ("team", "b")],
        &[("tier", "dev"), ("team", "a")],
        &[("team", "c")],
        &[("tier", "test")],
    ];
    let mut all_labels = Vec::new();
    for (index, pairs) in specs.iter().enumerate() {
        let mut pairs = pairs.to_vec();
        pairs.push(("run", run.as_str()));
        let object = workspace(&format!("ls-{run}-{index}"), labels(&pairs), json!({}));
        all_labels.push(object.metadata.labels.clone());
        create(store, &actor, &object).await;
    }
    let cases: [(&str, &[usize]); 9] = [
        ("", &[0, 1, 2, 3, 4, 5]),
        ("tier=prod", &[0, 1]),
        ("tier!=prod", &[2, 3, 4, 5]),
        ("tier in (prod, test)", &[0, 1, 2, 5]),
        ("tier notin (prod, test)", &[3, 4]),
        ("team", &[0, 2, 3, 4]),
        ("!team", &[1, 5]),
        ("tier=prod,team", &[0]),
        ("tier=prod,!team,team notin (a)", &[1]),
    ];
    for (text, expected) in cases {
        let selector_text = if text.is_empty() { format!("run={run}") } else { format!("run={run},{text}") };
        let selector = Selector::parse(&selector_text).expect("the suite's selectors parse");
        let query =
            ListQuery { kind: "Workspace".into(), selector: selector.clone(), limit: MAX_PAGE, ..Default::default() };
        let page = store.list(&query).await.unwrap_or_else(|error| panic!("list {selector_text:?} failed: {error}"));
        assert!(page.continue_token.is_none(), "a list of {} items fits one page", expected.len());
        let found: BTreeSet<String> = names(&page.items).into_iter().collect();
        let wanted: BTreeSet<String> = expected.iter().map(|i| format!("ls-{run}-{i}")).collect();
        assert_eq!(found, wanted, "selector {selector_text:?}");
        let model: BTreeSet<String> =
            (0..specs.len()).filter(|i| selector.matches(&all_labels[*i])).map(|i| format!("ls-{run}-{i}")).collect();
        assert_eq!(found, model, "selector {selector_text:?} agrees with Selector::matches");
        for item in &page.items {
            assert!(selector.matches(&item.metadata.labels), "{} does not match {selector_text:?}", item.key());
        }
    }
}

/// `name_contains` filters by substring, with no wildcard characters.
pub async fn list_name_contains(store: &dyn Store) {
    let actor = actor("conformance");
    let run = unique();
    for name in ["red-1", "red-2", "blue-1"] {
        create(store, &actor, &workspace(&format!("nc-{run}-{name}"), labels(&[("run", &run)]), json!({}))).await;
    }
    let selector = Selector::parse(&format!("run={run}")).expect("selector parses");
    let cases: [(String, bool, &[&str]); 6] = [
        (format!("{run}-red"), false, &["red-1", "red-2"]),
        (format!("nc-{run}"), false, &["blue-1", "red-1", "red-2"]),
        ("blue".into(), true, &["blue-1"]),
        // Not "-1": the random run id may itself start with a 1 after its "nc-".
        ("d-1".into(), true, &["red-1"]),
        ("_".into(), true, &[]),
        ("%".into(), true, &[]),
    ];
    for (fragment, with_selector, expected) in cases {
        let query = ListQuery {
            kind: "Workspace".into(),
            name_contains: Some(fragment.clone()),
            selector: if with_selector { selector.clone() } else { Selector::default() },
            limit: MAX_PAGE,
            ..Default::default()
        };
        let (items, _) = list_all(store, &query).await;
        let found: BTreeSet<String> = names(&items).into_iter().collect();
        let wanted: BTreeSet<String> = expected.iter().map(|n| format!("nc-{run}-{n}")).collect();
        assert_eq!(found, wanted, "name_contains {fragment:?}");
    }
}

/// Project-scoped kinds are listed and read per project.
pub async fn list_by_project(store: &dyn Store) {
    let actor = actor("conformance");
    let run = unique();
    let workspace_name = format!("lp-{run}");
    let cluster_name = format!("lp-{run}");
    let (first, second) = (format!("lp-{run}-a"), format!("lp-{run}-b"));
    create(store, &actor, &workspace(&workspace_name, json!({}), json!({}))).await;
    create(store, &actor, &local_cluster(&cluster_name)).await;
    create(store, &actor, &project(&first, &workspace_name, None)).await;
    create(store, &actor, &project(&second, &workspace_name, None)).await;
    let run_label = labels(&[("run", &run)]);
    create(store, &actor, &environment(&first, "dev", &[&cluster_name], run_label.clone())).await;
    create(store, &actor, &environment(&first, "prod", &[&cluster_name], run_label.clone())).await;
    let second_dev = create(store, &actor, &environment(&second, "dev", &[&cluster_name], run_label)).await;

    let list = |project: Option<&String>| ListQuery {
        kind: "Environment".into(),
        project: project.cloned(),
        selector: Selector::parse(&format!("run={run}")).expect("selector parses"),
        limit: MAX_PAGE,
        ..Default::default()
    };
    let (items, _) = list_all(store, &list(Some(&first))).await;
    let found: BTreeSet<(Option<String>, String)> =
        items.iter().map(|o| (o.metadata.project.clone(), o.metadata.name.clone())).collect();
    assert_eq!(
        found,
        BTreeSet::from([(Some(first.clone()), "dev".to_string()), (Some(first.clone()), "prod".to_string())]),
        "the project filter keeps only that project's environments"
    );
    let (items, _) = list_all(store, &list(Some(&second))).await;
    assert_eq!(items, vec![second_dev.clone()], "the second project has only its dev environment");
    let (items, _) = list_all(store, &list(None)).await;
    assert_eq!(items.len(), 3, "without a project filter every project's environments are listed");

    let key = ObjectKey::new("Environment", Some(second.clone()), "dev");
    assert_eq!(get(store, &key).await, Some(second_dev), "get reads within the project");
    let elsewhere = ObjectKey::new("Environment", Some(format!("lp-{run}-c")), "dev");
    assert_eq!(get(store, &elsewhere).await, None, "the same name in another project is another object");
}

/// Keyset paging walks every item exactly once, in order, for every sort and direction; a
/// malformed continue token is refused.
pub async fn list_paging(store: &dyn Store) {
    let actor = actor("conformance");
    let run = unique();
    const COUNT: usize = 12;
    let mut stored = Vec::new();
    for index in 0..COUNT {
        let object = workspace(&format!("pg-{run}-{index:02}"), labels(&[("run", &run)]), json!({}));
        stored.push(create(store, &actor, &object).await);
    }
    // Update in another order than creation, so that the update order differs.
    for step in 0..COUNT {
        let index = (step * 5) % COUNT;
        let current = &stored[index];
        let changed = workspace(&current.metadata.name, labels(&[("run", &run)]), json!({"description": "touched"}));
        let committed = submit(store, &actor, operation(OperationVerb::Update, &changed, Some(rv(current))))
            .await
            .expect("an update succeeds");
        stored[index] = committed.object.expect("an update returns the object");
    }
    let mut sorted_names: Vec<String> = names(&stored);
    sorted_names.sort();
    let selector = Selector::parse(&format!("run={run}")).expect("selector parses");
    for sort in [SortBy::Name, SortBy::CreationTimestamp, SortBy::UpdateTimestamp] {
        for descending in [false, true] {
            for limit in [1u32, 5, 12, 50] {
                let query = ListQuery {
                    kind: "Workspace".into(),
                    selector: selector.clone(),
                    sort,
                    descending,
                    limit,
                    ..Default::default()
                };
                let what = format!("sort {sort:?}, descending {descending}, limit {limit}");
                let (items, pages) = list_all(store, &query).await;
                assert_eq!(items.len(), COUNT, "{what}: every item once ({pages:?})");
                let distinct: BTreeSet<String> = names(&items).into_iter().collect();
                assert_eq!(distinct.len(), COUNT, "{what}: no item twice");
                assert!(pages.iter().all(|n| *n <= limit as usize), "{what}: pages respect the limit: {pages:?}");
                assert_eq!(pages.len(), COUNT.div_ceil(limit as usize), "{what}: page count {pages:?}");
                match sort {
                    SortBy::Name => {
                        let mut wanted = sorted_names.clone();
                        if descending {
                            wanted.reverse();
                        }
                        assert_eq!(names(&items), wanted, "{what}: ordered by name");
                    }
                    SortBy::CreationTimestamp | SortBy::UpdateTimestamp => {
                        let stamps: Vec<_> = items
                            .iter()
                            .map(|o| match sort {
                                SortBy::CreationTimestamp => o.metadata.creation_timestamp,
                                _ => o.metadata.update_timestamp,
                            })
                            .collect();
                        let ordered = stamps.windows(2).all(|w| if descending { w[0] >= w[1] } else { w[0] <= w[1] });
                        assert!(ordered, "{what}: ordered by timestamp: {stamps:?}");
                    }
                }
            }
        }
    }

    let unlimited = ListQuery { kind: "Workspace".into(), selector: selector.clone(), limit: 0, ..Default::default() };
    let page = store.list(&unlimited).await.expect("list without a limit");
    assert_eq!((page.items.len(), page.continue_token), (COUNT, None), "limit 0 means the default page size");

    let base = ListQuery { kind: "Workspace".into(), selector: selector.clone(), limit: 5, ..Default::default() };
    for token in ["not a token!", "e30", "", "eyJpZCI6Im5vIn0"] {
        let query = ListQuery { continue_token: Some(token.to_string()), ..base.clone() };
        match store.list(&query).await {
            Err(StoreError::InvalidQuery(_)) => {}
            other => panic!("a malformed continue token {token:?} must be InvalidQuery, got {other:?}"),
        }
    }
    let by_name = store.list(&base).await.expect("first page");
    let token = by_name.continue_token.expect("12 items in pages of 5 have a second page");
    let query = ListQuery { sort: SortBy::CreationTimestamp, continue_token: Some(token), ..base };
    match store.list(&query).await {
        Err(StoreError::InvalidQuery(_)) => {}
        other => panic!("a name-sorted token used for another sort must be InvalidQuery, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

/// Every mutation, successful or refused, leaves a record saying who did what, from where,
/// and what changed.
pub async fn audit_records_describe_mutations(store: &dyn Store) {
    let user = format!("alice-{}", unique());
    let actor = actor(&user);
    let name = format!("ar-{}", unique());
    let key = ObjectKey::new("Workspace", None, &name);

    let create_op =
        operation(OperationVerb::Create, &workspace(&name, json!({}), json!({"description": "before"})), None);
    let created = submit(store, &actor, create_op.clone()).await.expect("create");
    let created_object = created.object.clone().expect("object");
    let update_op = operation(
        OperationVerb::Update,
        &workspace(&name, json!({}), json!({"description": "after"})),
        Some(rv(&created_object)),
    );
    let updated = submit(store, &actor, update_op.clone()).await.expect("update");
    let conflict_op = operation(
        OperationVerb::Update,
        &workspace(&name, json!({}), json!({"description": "stale"})),
        Some(rv(&created_object)),
    );
    let conflict = submit(store, &actor, conflict_op.clone()).await;
    assert!(
        matches!(conflict, Err(StoreError::Operation(OperationError::Conflict { .. }))),
        "a stale update is a conflict: {conflict:?}"
    );
    let delete_op = deletion(&key, Some(updated.seq));
    let deleted = submit(store, &actor, delete_op.clone()).await.expect("delete");

    let query = AuditQuery {
        kind: Some("Workspace".into()),
        name: Some(name.clone()),
        newest_first: true,
        ..Default::default()
    };
    let records = store.audit_query(&query).await.expect("audit query").records;
    let actions: Vec<(&str, &str)> = records.iter().map(|r| (r.action.as_str(), r.outcome.as_str())).collect();
    assert_eq!(
        actions,
        vec![("delete", "success"), ("update", "conflict"), ("update", "success"), ("create", "success")],
        "newest first, every mutation recorded"
    );
    let operation_ids: Vec<Option<&str>> = records.iter().map(|r| r.operation_id.as_deref()).collect();
    assert_eq!(
        operation_ids,
        vec![
            Some(delete_op.id.as_str()),
            Some(conflict_op.id.as_str()),
            Some(update_op.id.as_str()),
            Some(create_op.id.as_str())
        ]
    );
    for record in &records {
        assert_eq!(record.user, user);
        assert_eq!(record.auth, "token");
        assert_eq!(record.source_ip, SOURCE_IP);
        assert_eq!(record.user_agent, USER_AGENT);
        assert_eq!(record.request_id, actor.request_id);
        assert_eq!(record.kind.as_deref(), Some("Workspace"));
        assert_eq!(record.name.as_deref(), Some(name.as_str()));
        assert_eq!(record.project, None);
        assert_eq!(record.hash.len(), 64, "records are sealed with a SHA-256 hash");
        assert_eq!(record.hash, record.compute_hash(), "the stored hash covers the stored fields");
        let single = store.audit_record(record.seq).await.expect("audit_record").expect("the record exists");
        assert_eq!(&single, record, "audit_record returns the same record");
    }
    let (delete_record, conflict_record, update_record, create_record) =
        (&records[0], &records[1], &records[2], &records[3]);
    assert_eq!(create_record.seq, created.seq, "a write's record has the write's sequence number");
    assert_eq!(update_record.seq, updated.seq);
    assert_eq!(delete_record.seq, deleted.seq);
    assert!(update_record.seq < conflict_record.seq && conflict_record.seq < delete_record.seq);

    assert_eq!(create_record.before, None);
    let after = parse_json(create_record.after.as_ref(), "after");
    assert_eq!(after["metadata"]["name"], json!(name));
    assert_eq!(after["spec"]["description"], json!("before"));

    let before = parse_json(update_record.before.as_ref(), "before");
    let after = parse_json(update_record.after.as_ref(), "after");
    assert_eq!(before["spec"]["description"], json!("before"));
    assert_eq!(after["spec"]["description"], json!("after"));
    let changes = changes_of(update_record);
    let description = changes
        .iter()
        .find(|c| c.path == "spec.description")
        .unwrap_or_else(|| panic!("the update's changes name spec.description: {changes:?}"));
    assert_eq!(description.before, Some(json!("before")));
    assert_eq!(description.after, Some(json!("after")));
    assert!(changes.iter().all(|c| c.path != "metadata.resourceVersion"), "bookkeeping is not a change: {changes:?}");

    assert!(conflict_record.before.is_none() && conflict_record.after.is_none(), "a refusal changes nothing");
    let message = conflict_record.message.as_deref().expect("a refusal says why");
    assert!(message.contains("stale"), "the conflict record explains itself: {message}");

    let before = parse_json(delete_record.before.as_ref(), "before");
    assert_eq!(before["spec"]["description"], json!("after"));
    assert_eq!(delete_record.after, None);
}

/// Audit queries filter by user, action, outcome, project and time, and page newest-first
/// and oldest-first with a cursor.
pub async fn audit_queries_filter_and_page(store: &dyn Store) {
    let run = unique();
    let bob = format!("bob-{run}");
    let carol = format!("carol-{run}");
    let (as_bob, as_carol) = (actor(&bob), actor(&carol));
    let project_name = format!("aq-{run}");
    create(store, &as_bob, &workspace(&project_name, json!({}), json!({}))).await;
    create(store, &as_bob, &local_cluster(&project_name)).await;
    create(store, &as_bob, &project(&project_name, &project_name, None)).await;
    let env = create(store, &as_bob, &environment(&project_name, "qa", &[&project_name], json!({}))).await;
    let mut changed = env.clone();
    changed.spec["description"] = json!("changed");
    submit(store, &as_bob, operation(OperationVerb::Update, &changed, Some(rv(&env)))).await.expect("update");
    let conflict = submit(store, &as_bob, operation(OperationVerb::Update, &changed, Some(rv(&env)))).await;
    assert!(matches!(conflict, Err(StoreError::Operation(OperationError::Conflict { .. }))), "{conflict:?}");
    let note = AuditNote {
        action: "get".into(),
        kind: Some("Environment".into()),
        project: Some(project_name.clone()),
        name: Some("qa".into()),
        outcome: Some(Outcome::Denied),
        message: Some("user may not get".into()),
    };
    let noted = submit_change(store, &as_bob, Change::Record(note)).await.expect("an audit-only record is written");
    assert_eq!(noted.outcome, Outcome::Denied);
    assert!(noted.object.is_none());
    create(store, &as_carol, &workspace(&format!("aq-{run}-carol"), json!({}), json!({}))).await;

    let by_bob = AuditQuery { user: Some(bob.clone()), limit: MAX_PAGE, ..Default::default() };
    let all = audit_all(store, &by_bob).await;
    assert_eq!(all.len(), 7, "bob's seven requests are recorded: {:?}", seqs(&all));
    assert!(all.iter().all(|r| r.user == bob), "the user filter keeps only bob's records");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first is ascending");
    let denied = &all[6];
    assert_eq!((denied.action.as_str(), denied.outcome.as_str()), ("get", "denied"));
    assert_eq!(denied.seq, noted.seq);
    assert_eq!(denied.message.as_deref(), Some("user may not get"));

    let updates = audit_all(store, &AuditQuery { action: Some("update".into()), ..by_bob.clone() }).await;
    let outcomes: Vec<&str> = updates.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["success", "conflict"], "the action filter keeps bob's two updates");
    let conflicts = audit_all(store, &AuditQuery { outcome: Some("conflict".into()), ..by_bob.clone() }).await;
    assert_eq!(seqs(&conflicts), vec![updates[1].seq], "the outcome filter keeps the conflict");

    let in_project = audit_all(store, &AuditQuery { project: Some(project_name.clone()), ..Default::default() }).await;
    let expected: Vec<u64> =
        all.iter().filter(|r| r.project.as_deref() == Some(project_name.as_str())).map(|r| r.seq).collect();
    assert_eq!(expected.len(), 4, "the environment's create, update, conflict and the denied read");
    assert_eq!(seqs(&in_project), expected, "the project filter keeps the project's records");
    assert!(in_project.iter().all(|r| r.kind.as_deref() == Some("Environment")));

    let (since, until) = (all[1].time_micros, all[5].time_micros);
    let window =
        audit_all(store, &AuditQuery { since_micros: Some(since), until_micros: Some(until), ..by_bob.clone() }).await;
    let expected: Vec<u64> =
        all.iter().filter(|r| r.time_micros >= since && r.time_micros < until).map(|r| r.seq).collect();
    assert!(!expected.is_empty());
    assert_eq!(seqs(&window), expected, "since is inclusive, until exclusive");
    let later = audit_all(store, &AuditQuery { since_micros: Some(all[6].time_micros), ..by_bob.clone() }).await;
    assert!(later.iter().all(|r| r.time_micros >= all[6].time_micros) && later.iter().any(|r| r.seq == all[6].seq));
    let earlier = audit_all(store, &AuditQuery { until_micros: Some(all[0].time_micros), ..by_bob.clone() }).await;
    assert!(earlier.is_empty(), "nothing of bob's is older than his first record");

    let newest_first = AuditQuery { limit: 2, newest_first: true, ..by_bob.clone() };
    let mut cursor = None;
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.audit_query(&AuditQuery { cursor, ..newest_first.clone() }).await.expect("audit page");
        pages += 1;
        assert!(page.records.len() <= 2, "pages respect the limit");
        walked.extend(seqs(&page.records));
        match page.next_cursor {
            Some(next) => {
                assert_eq!(Some(next), page.records.last().map(|r| r.seq), "the cursor is the page's last record");
                cursor = Some(next);
            }
            None => break,
        }
        assert!(pages < 100, "the cursor does not advance");
    }
    let mut reversed = seqs(&all);
    reversed.reverse();
    assert_eq!(walked, reversed, "newest-first paging walks every record once, newest first");
    assert_eq!(pages, 4, "seven records in pages of two");
    let oldest_first = audit_all(store, &AuditQuery { limit: 3, ..by_bob.clone() }).await;
    assert_eq!(seqs(&oldest_first), seqs(&all), "oldest-first paging walks every record once");

    let carols = audit_all(store, &AuditQuery { user: Some(carol.clone()), ..Default::default() }).await;
    assert_eq!(carols.len(), 1);
}

/// The summary report counts by user, action and day, including what was just written.
pub async fn audit_summary_counts(store: &dyn Store) {
    let run = unique();
    let dave = format!("dave-{run}");
    let erin = format!("erin-{run}");
    let as_dave = actor(&dave);
    let name = format!("as-{run}");
    let created = create(store, &as_dave, &workspace(&name, json!({}), json!({}))).await;
    let changed = workspace(&name, json!({}), json!({"description": "x"}));
    submit(store, &as_dave, operation(OperationVerb::Update, &changed, Some(rv(&created)))).await.expect("update");
    let stale = submit(store, &as_dave, operation(OperationVerb::Update, &changed, Some(rv(&created)))).await;
    assert!(stale.is_err());
    for _ in 0..2 {
        let note = AuditNote { action: "delete".into(), outcome: Some(Outcome::Denied), ..Default::default() };
        submit_change(store, &as_dave, Change::Record(note)).await.expect("record");
    }
    create(store, &actor(&erin), &workspace(&format!("as-{run}-erin"), json!({}), json!({}))).await;

    let by_user = store.audit_summary(&AuditQuery::default(), SummaryBy::User).await.expect("summary by user");
    let rows: BTreeMap<&str, (u64, u64, u64)> =
        by_user.iter().map(|r| (r.key.as_str(), (r.count, r.denied, r.failed))).collect();
    assert_eq!(rows.get(dave.as_str()), Some(&(5, 2, 1)), "dave: 5 records, 2 denied, 1 failed (the conflict)");
    assert_eq!(rows.get(erin.as_str()), Some(&(1, 0, 0)), "erin: 1 record");

    let of_dave = AuditQuery { user: Some(dave.clone()), ..Default::default() };
    let by_action = store.audit_summary(&of_dave, SummaryBy::Action).await.expect("summary by action");
    let rows: BTreeMap<&str, (u64, u64, u64)> =
        by_action.iter().map(|r| (r.key.as_str(), (r.count, r.denied, r.failed))).collect();
    assert_eq!(
        rows,
        BTreeMap::from([("create", (1, 0, 0)), ("delete", (2, 2, 0)), ("update", (2, 0, 1))]),
        "dave's records by action"
    );

    let records = audit_all(store, &of_dave).await;
    let mut days: BTreeMap<String, u64> = BTreeMap::new();
    for record in &records {
        let day = jiff::Timestamp::from_microsecond(record.time_micros).expect("valid time").strftime("%Y-%m-%d");
        *days.entry(day.to_string()).or_default() += 1;
    }
    let by_day = store.audit_summary(&of_dave, SummaryBy::Day).await.expect("summary by day");
    let rows: BTreeMap<String, u64> = by_day.iter().map(|r| (r.key.clone(), r.count)).collect();
    assert_eq!(rows, days, "dave's records by UTC day (YYYY-MM-DD)");
    assert_eq!(rows.values().sum::<u64>(), 5);
}

/// A Cluster's credentials never reach an audit record in clear text; records show a keyed
/// hash instead, which still tells whether the secret changed.
pub async fn secrets_never_reach_the_audit_log(store: &dyn Store) {
    let actor = actor("conformance");
    let name = format!("sc-{}", unique());
    let secrets: Vec<String> = (0..3).map(|_| format!("kubetoken-{}", uuid::Uuid::new_v4().simple())).collect();
    let cluster = |credentials: &str, description: &str| {
        document(
            "Cluster",
            json!({"name": name}),
            json!({
                "type": "kubernetes",
                "apiServer": "https://k8s.example.com:6443",
                "token": credentials,
                "description": description,
            }),
        )
    };
    let created = create(store, &actor, &cluster(&secrets[0], "one")).await;
    let stored = get(store, &created.key()).await.expect("the cluster exists");
    assert_eq!(stored.spec["token"], json!(secrets[0]), "the store keeps the credentials for the runtime");
    let rotated =
        submit(store, &actor, operation(OperationVerb::Update, &cluster(&secrets[1], "one"), Some(rv(&created))))
            .await
            .expect("rotate credentials")
            .object
            .expect("object");
    let described =
        submit(store, &actor, operation(OperationVerb::Update, &cluster(&secrets[1], "two"), Some(rv(&rotated))))
            .await
            .expect("change description")
            .object
            .expect("object");
    let refused =
        submit(store, &actor, operation(OperationVerb::Update, &cluster(&secrets[2], "three"), Some(rv(&created))))
            .await;
    assert!(matches!(refused, Err(StoreError::Operation(OperationError::Conflict { .. }))), "{refused:?}");
    submit(store, &actor, deletion(&created.key(), Some(rv(&described)))).await.expect("delete");

    let records =
        audit_all(store, &AuditQuery { kind: Some("Cluster".into()), name: Some(name.clone()), ..Default::default() })
            .await;
    assert_eq!(records.len(), 5, "create, two updates, a conflict and a delete");
    let hashed = |value: &Value| value.as_str().is_some_and(|s| s.starts_with("hmac-sha256:") && s.len() > 20);
    let create_after = parse_json(records[0].after.as_ref(), "after");
    assert!(hashed(&create_after["spec"]["token"]), "credentials are a keyed hash: {create_after}");
    let rotation = changes_of(&records[1]);
    let change = rotation
        .iter()
        .find(|c| c.path == "spec.token")
        .unwrap_or_else(|| panic!("a rotation shows as a change of spec.token: {rotation:?}"));
    let (before, after) = (change.before.clone().expect("before"), change.after.clone().expect("after"));
    assert!(hashed(&before) && hashed(&after), "{change:?}");
    assert_ne!(before, after, "a different secret has a different keyed hash");
    let description_change = changes_of(&records[2]);
    assert!(
        description_change.iter().all(|c| c.path != "spec.token"),
        "the same secret has the same keyed hash: {description_change:?}"
    );
    assert!(description_change.iter().any(|c| c.path == "spec.description"));

    let everything = audit_all(store, &AuditQuery { limit: MAX_PAGE, ..Default::default() }).await;
    for record in &everything {
        let text = serde_json::to_string(record).expect("a record serializes");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "record {} contains a secret in clear text: {text}", record.seq);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

fn session_for(user: &str) -> Session {
    let now = now_micros();
    Session {
        id_hash: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
        user: user.to_string(),
        created_micros: now,
        expires_micros: now + 3_600_000_000,
    }
}

fn token_for(user: &str, name: &str) -> ApiToken {
    let now = now_micros();
    ApiToken {
        id: format!("tok-{}", unique()),
        user: user.to_string(),
        name: name.to_string(),
        secret_hash: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
        created_micros: now,
        expires_micros: now + 86_400_000_000,
        revoked_micros: None,
    }
}

fn login(
    user: &str,
    outcome: Outcome,
    grant: Option<LoginGrant>,
    throttle: Vec<(String, Option<ThrottleState>)>,
) -> Change {
    Change::Login { user: user.to_string(), outcome, message: None, grant, throttle }
}

/// Password hashes are set only for existing users and read back.
pub async fn identity_passwords(store: &dyn Store) {
    let admin = actor("admin");
    let name = format!("pw-{}", unique());
    let missing = format!("pw-missing-{}", unique());
    let change = Change::SetPassword { user: missing.clone(), password_hash: "$argon2id$v=19$x".into() };
    match submit_change(store, &admin, change).await {
        Err(StoreError::Operation(OperationError::NotFound(key))) => {
            assert_eq!(key, ObjectKey::new("User", None, &missing))
        }
        other => panic!("setting the password of a missing user must be NotFound, got {other:?}"),
    }
    assert_eq!(store.password_hash(&missing).await.expect("password_hash"), None);

    create(store, &admin, &user(&name)).await;
    assert_eq!(store.password_hash(&name).await.expect("password_hash"), None, "no password yet");
    let first = format!("$argon2id$v=19$m=19456,t=2,p=1${}", unique());
    let committed =
        submit_change(store, &admin, Change::SetPassword { user: name.clone(), password_hash: first.clone() })
            .await
            .expect("set password");
    assert_eq!(committed.outcome, Outcome::Success);
    assert_eq!(store.password_hash(&name).await.expect("password_hash"), Some(first.clone()));
    let record = store.audit_record(committed.seq).await.expect("audit_record").expect("recorded");
    assert_eq!(record.action, "user.set-password");
    assert_eq!(record.name.as_deref(), Some(name.as_str()));
    let text = serde_json::to_string(&record).expect("serializes");
    assert!(!text.contains(&first), "the password hash is not in the audit record");

    let second = format!("$argon2id$v=19$m=19456,t=2,p=1${}", unique());
    submit_change(store, &admin, Change::SetPassword { user: name.clone(), password_hash: second.clone() })
        .await
        .expect("change password");
    assert_eq!(
        store.password_hash(&name).await.expect("password_hash"),
        Some(second),
        "a new password replaces the old"
    );
}

/// A successful login creates a session; logout and a password change end it.
pub async fn identity_sessions(store: &dyn Store) {
    let admin = actor("admin");
    let name = format!("ss-{}", unique());
    create(store, &admin, &user(&name)).await;

    let session = session_for(&name);
    let committed = submit_change(
        store,
        &actor(&name),
        login(&name, Outcome::Success, Some(LoginGrant::Session(session.clone())), Vec::new()),
    )
    .await
    .expect("login");
    assert_eq!(committed.outcome, Outcome::Success);
    assert_eq!(store.session(&session.id_hash).await.expect("session"), Some(session.clone()));
    let record = store.audit_record(committed.seq).await.expect("audit_record").expect("recorded");
    assert_eq!(
        (record.action.as_str(), record.outcome.as_str(), record.user.as_str()),
        ("login", "success", name.as_str())
    );
    assert!(
        !serde_json::to_string(&record).expect("serializes").contains(&session.id_hash),
        "no session id in records"
    );

    submit_change(store, &actor(&name), Change::EndSession { id_hash: session.id_hash.clone(), user: name.clone() })
        .await
        .expect("logout");
    assert_eq!(store.session(&session.id_hash).await.expect("session"), None, "logout ends the session");

    let second = session_for(&name);
    submit_change(
        store,
        &actor(&name),
        login(&name, Outcome::Success, Some(LoginGrant::Session(second.clone())), vec![]),
    )
    .await
    .expect("login");
    assert!(store.session(&second.id_hash).await.expect("session").is_some());
    submit_change(store, &admin, Change::SetPassword { user: name.clone(), password_hash: "$argon2id$new".into() })
        .await
        .expect("set password");
    assert_eq!(store.session(&second.id_hash).await.expect("session"), None, "a new password ends every session");
    assert_eq!(store.session("no-such-session").await.expect("session"), None);
}

/// API tokens are found by secret hash and by user, and revoked once.
pub async fn identity_tokens(store: &dyn Store) {
    let admin = actor("admin");
    let name = format!("tk-{}", unique());
    create(store, &admin, &user(&name)).await;
    assert!(store.tokens_of(&name).await.expect("tokens_of").is_empty());

    let token = token_for(&name, "ci");
    let committed =
        submit_change(store, &actor(&name), Change::CreateToken(token.clone())).await.expect("create token");
    assert_eq!(committed.outcome, Outcome::Success);
    assert_eq!(store.token_by_secret(&token.secret_hash).await.expect("token_by_secret"), Some(token.clone()));
    let record = store.audit_record(committed.seq).await.expect("audit_record").expect("recorded");
    assert_eq!(record.action, "token.create");
    assert!(
        !serde_json::to_string(&record).expect("serializes").contains(&token.secret_hash),
        "the secret hash is not in the audit record"
    );

    let via_login = token_for(&name, "login");
    submit_change(
        store,
        &actor(&name),
        login(&name, Outcome::Success, Some(LoginGrant::Token(via_login.clone())), vec![]),
    )
    .await
    .expect("login with a token grant");
    assert_eq!(store.token_by_secret(&via_login.secret_hash).await.expect("token_by_secret"), Some(via_login.clone()));
    let mut listed = store.tokens_of(&name).await.expect("tokens_of");
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut wanted = vec![token.clone(), via_login.clone()];
    wanted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, wanted, "tokens_of lists the user's tokens");

    let someone_else = Change::RevokeToken { id: token.id.clone(), user: format!("tk-other-{}", unique()) };
    match submit_change(store, &admin, someone_else).await {
        Err(StoreError::Operation(OperationError::NotFound(_))) => {}
        other => panic!("revoking another user's token must be NotFound, got {other:?}"),
    }
    submit_change(store, &actor(&name), Change::RevokeToken { id: token.id.clone(), user: name.clone() })
        .await
        .expect("revoke");
    let revoked = store.token_by_secret(&token.secret_hash).await.expect("token_by_secret").expect("still listed");
    assert!(revoked.revoked_micros.is_some(), "a revoked token has revoked_micros: {revoked:?}");
    assert_eq!(ApiToken { revoked_micros: None, ..revoked }, token, "revoking changes nothing else");
    match submit_change(store, &actor(&name), Change::RevokeToken { id: token.id.clone(), user: name.clone() }).await {
        Err(StoreError::Operation(OperationError::NotFound(key))) => assert_eq!(key.name, token.id),
        other => panic!("revoking twice must be NotFound, got {other:?}"),
    }
    let other = store.token_by_secret(&via_login.secret_hash).await.expect("token_by_secret").expect("exists");
    assert_eq!(other.revoked_micros, None, "only the named token is revoked");
}

/// Login throttling state is upserted, read back and cleared.
pub async fn identity_throttle(store: &dyn Store) {
    let name = format!("th-{}", unique());
    let user_key = format!("user:{name}");
    let suffix = unique();
    let ip_key = format!("ip:2001:db8::{}:{}:{}", &suffix[..4], &suffix[4..8], &suffix[8..]);
    let now = now_micros();
    let first = ThrottleState { failures: 1, first_failure_micros: now, locked_until_micros: 0 };
    let committed = submit_change(
        store,
        &actor(&name),
        login(&name, Outcome::Denied, None, vec![(user_key.clone(), Some(first)), (ip_key.clone(), Some(first))]),
    )
    .await
    .expect("a failed login is recorded");
    assert_eq!(committed.outcome, Outcome::Denied);
    let record = store.audit_record(committed.seq).await.expect("audit_record").expect("recorded");
    assert_eq!((record.action.as_str(), record.outcome.as_str()), ("login", "denied"));
    assert_eq!(store.throttle(&user_key).await.expect("throttle"), Some(first));
    assert_eq!(store.throttle(&ip_key).await.expect("throttle"), Some(first));

    let locked = ThrottleState { failures: 5, first_failure_micros: now, locked_until_micros: now + 900_000_000 };
    submit_change(store, &actor(&name), login(&name, Outcome::Denied, None, vec![(user_key.clone(), Some(locked))]))
        .await
        .expect("a second failed login");
    assert_eq!(store.throttle(&user_key).await.expect("throttle"), Some(locked), "the state is replaced");
    assert_eq!(store.throttle(&ip_key).await.expect("throttle"), Some(first), "other keys are untouched");

    submit_change(store, &actor(&name), login(&name, Outcome::Success, None, vec![(user_key.clone(), None)]))
        .await
        .expect("a successful login clears the user key");
    assert_eq!(store.throttle(&user_key).await.expect("throttle"), None, "None clears a key");
    assert_eq!(store.throttle(&ip_key).await.expect("throttle"), Some(first));
    submit_change(store, &actor(&name), login(&name, Outcome::Success, None, vec![(ip_key.clone(), None)]))
        .await
        .expect("clear");
    assert_eq!(store.throttle(&ip_key).await.expect("throttle"), None);
}

/// `grants_of` returns the grants of the user's RoleBindings, and only those.
pub async fn grants_of_user(store: &dyn Store) {
    let admin = actor("admin");
    let run = unique();
    let (alice, bob) = (format!("ga-{run}"), format!("gb-{run}"));
    let (workspace_name, project_name) = (format!("gw-{run}"), format!("gp-{run}"));
    create(store, &admin, &user(&alice)).await;
    create(store, &admin, &user(&bob)).await;
    create(store, &admin, &workspace(&workspace_name, json!({}), json!({}))).await;
    create(store, &admin, &project(&project_name, &workspace_name, None)).await;
    create(
        store,
        &admin,
        &role_binding(
            &format!("g1-{run}"),
            json!({"user": alice, "role": "workspace-admin", "workspace": workspace_name}),
        ),
    )
    .await;
    let narrowed = create(
        store,
        &admin,
        &role_binding(
            &format!("g2-{run}"),
            json!({"user": alice, "role": "developer", "project": project_name, "environments": ["test"]}),
        ),
    )
    .await;
    let bobs = create(
        store,
        &admin,
        &role_binding(&format!("g3-{run}"), json!({"user": bob, "role": "viewer", "project": project_name})),
    )
    .await;

    let workspace_admin = Grant {
        role: Role::WorkspaceAdmin,
        workspace: Some(workspace_name.clone()),
        project: None,
        environments: None,
    };
    let developer = Grant {
        role: Role::Developer,
        workspace: None,
        project: Some(project_name.clone()),
        environments: Some(vec!["test".into()]),
    };
    let sorted = |mut grants: Vec<Grant>| {
        grants.sort_by_key(|g| format!("{g:?}"));
        grants
    };
    let of_alice = store.grants_of(&alice).await.expect("grants_of");
    assert_eq!(sorted(of_alice), sorted(vec![workspace_admin.clone(), developer]), "alice's two bindings");
    let of_bob = store.grants_of(&bob).await.expect("grants_of");
    assert_eq!(of_bob, vec![Grant::project(Role::Viewer, &project_name)], "bob's binding only");
    assert!(store.grants_of(&format!("gz-{run}")).await.expect("grants_of").is_empty(), "no bindings, no grants");

    submit(store, &admin, deletion(&narrowed.key(), None)).await.expect("delete binding");
    assert_eq!(
        store.grants_of(&alice).await.expect("grants_of"),
        vec![workspace_admin],
        "a deleted binding grants nothing"
    );
    let promoted =
        role_binding(&format!("g3-{run}"), json!({"user": bob, "role": "maintainer", "project": project_name}));
    submit(store, &admin, operation(OperationVerb::Update, &promoted, Some(rv(&bobs)))).await.expect("update binding");
    assert_eq!(
        store.grants_of(&bob).await.expect("grants_of"),
        vec![Grant::project(Role::Maintainer, &project_name)],
        "an updated binding grants its new role"
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency and the chain
// ---------------------------------------------------------------------------------------------

/// Many concurrent commits (group commit) all succeed with distinct sequence numbers; a
/// refused mutation in a batch does not affect the others; the chain stays intact.
pub async fn group_commit_concurrency(store: &dyn Store) {
    let actor = actor("conformance");
    let run = unique();
    const COUNT: usize = 200;
    let objects: Vec<Object> =
        (0..COUNT).map(|i| workspace(&format!("gc-{run}-{i:03}"), labels(&[("run", &run)]), json!({}))).collect();
    let results =
        join_all(objects.iter().map(|o| submit(store, &actor, operation(OperationVerb::Create, o, None)))).await;
    let mut by_name = BTreeMap::new();
    for (object, result) in objects.iter().zip(results) {
        let committed = result.unwrap_or_else(|error| panic!("concurrent create of {} failed: {error}", object.key()));
        let stored = committed.object.expect("a create returns the object");
        assert_eq!(stored.resource_version(), Some(committed.seq));
        by_name.insert(stored.metadata.name.clone(), committed.seq);
    }
    let distinct: BTreeSet<u64> = by_name.values().copied().collect();
    assert_eq!(distinct.len(), COUNT, "every commit has its own sequence number");
    let query = ListQuery {
        kind: "Workspace".into(),
        selector: Selector::parse(&format!("run={run}")).expect("selector"),
        limit: MAX_PAGE,
        ..Default::default()
    };
    let (items, _) = list_all(store, &query).await;
    assert_eq!(items.len(), COUNT, "every concurrent create is stored");
    for item in &items {
        assert_eq!(item.resource_version(), by_name.get(&item.metadata.name).copied(), "{}", item.key());
    }

    // Pairs racing to create the same name: exactly one of each pair wins.
    const PAIRS: usize = 50;
    let contenders: Vec<Object> = (0..PAIRS * 2)
        .map(|i| workspace(&format!("gd-{run}-{:02}", i / 2), json!({}), json!({"description": format!("c{i}")})))
        .collect();
    let results =
        join_all(contenders.iter().map(|o| submit(store, &actor, operation(OperationVerb::Create, o, None)))).await;
    for (pair, outcomes) in results.chunks(2).enumerate() {
        let winners: Vec<&Committed> = outcomes.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "exactly one create of pair {pair} wins: {outcomes:?}");
        let loser = outcomes.iter().find(|r| r.is_err()).expect("one loses");
        assert!(
            matches!(loser, Err(StoreError::Operation(OperationError::AlreadyExists(_)))),
            "the other is AlreadyExists: {loser:?}"
        );
        let winner = winners[0].object.clone().expect("object");
        assert_eq!(get(store, &winner.key()).await, Some(winner), "the winner is what is stored");
    }

    let report = store.audit_verify().await.expect("audit_verify");
    assert!(report.is_intact(), "the chain is intact after concurrent commits: {report:?}");
}

/// `audit_verify` walks the whole chain: intact after a series of writes, counting every
/// record. Counts the whole log, so no other writer may run meanwhile.
pub async fn audit_verify_counts_every_record(store: &dyn Store) {
    let actor = actor("conformance");
    let run = unique();
    for index in 0..5 {
        create(store, &actor, &workspace(&format!("av-{run}-{index}"), json!({}), json!({}))).await;
    }
    let first = workspace(&format!("av-{run}-0"), json!({}), json!({}));
    assert!(submit(store, &actor, operation(OperationVerb::Create, &first, None)).await.is_err());
    let last_seq = submit(store, &actor, deletion(&first.key(), None)).await.expect("delete").seq;

    let report = store.audit_verify().await.expect("audit_verify");
    assert!(report.is_intact(), "the chain is intact: {report:?}");
    assert!(!report.truncated);
    let records = audit_all(store, &AuditQuery { limit: MAX_PAGE, ..Default::default() }).await;
    assert_eq!(report.records, records.len() as u64, "verify counts every record");
    assert_eq!(report.last_seq, records.last().map(|r| r.seq).unwrap_or_default());
    assert_eq!(report.last_seq, last_seq, "the chain ends at the last commit");
    assert!(records.windows(2).all(|w| w[1].seq == w[0].seq + 1), "sequence numbers have no gaps");
    assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash), "every record links to its predecessor");
}

// ---------------------------------------------------------------------------------------------
// Registry index
// ---------------------------------------------------------------------------------------------

/// A made-up digest, unique per call.
fn fake_digest() -> String {
    format!("sha256:{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A workspace and a project with `registry` settings; the project's name.
async fn registry_project(store: &dyn Store, actor: &Actor, registry: Value) -> String {
    let name = format!("reg-{}", unique());
    create(store, actor, &workspace(&name, json!({}), json!({}))).await;
    let mut project = project(&name, &name, None);
    project.spec["registry"] = registry;
    create(store, actor, &project).await;
    name
}

async fn link(store: &dyn Store, actor: &Actor, repository: &str, digest: &str, size: u64) -> Result<(), StoreError> {
    let change = RegistryChange::LinkBlob { repository: repository.into(), digest: digest.into(), size };
    submit_change(store, actor, Change::Registry(change)).await.map(|_| ())
}

fn image_manifest(digest: &str, size: u64) -> NewManifest {
    NewManifest {
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size,
        subject: None,
        artifact_type: None,
    }
}

async fn push(
    store: &dyn Store,
    actor: &Actor,
    repository: &str,
    manifest: NewManifest,
    references: &[&str],
    tag: Option<&str>,
) -> Result<Committed, StoreError> {
    let change = RegistryChange::PutManifest {
        repository: repository.into(),
        manifest,
        references: references.iter().map(|r| r.to_string()).collect(),
        tag: tag.map(str::to_string),
    };
    submit_change(store, actor, Change::Registry(change)).await
}

async fn registry_change(store: &dyn Store, actor: &Actor, change: RegistryChange) -> Result<Committed, StoreError> {
    submit_change(store, actor, Change::Registry(change)).await
}

/// The newest audit record of `action` by `user`.
async fn last_record(store: &dyn Store, user: &str, action: &str) -> AuditRecord {
    let query = AuditQuery {
        user: Some(user.into()),
        action: Some(action.into()),
        newest_first: true,
        limit: 1,
        ..AuditQuery::default()
    };
    let page = store.audit_query(&query).await.expect("audit query");
    page.records.into_iter().next().unwrap_or_else(|| panic!("no {action} record of {user}"))
}

pub async fn registry_pushes_tags_and_deletions(store: &dyn Store) {
    let admin = actor(&format!("pusher-{}", unique()));
    let project = registry_project(store, &admin, json!({})).await;
    let repository = format!("{project}/web");
    let index = store.registry();
    let (config, layer, manifest) = (fake_digest(), fake_digest(), fake_digest());
    link(store, &admin, &repository, &config, 100).await.expect("link the config");
    link(store, &admin, &repository, &layer, 5000).await.expect("link the layer");
    assert_eq!(index.linked_blob(&repository, &layer).await.expect("read"), Some(5000));
    assert_eq!(
        index.linked_blob(&format!("{project}/api"), &layer).await.expect("read"),
        None,
        "links are per repository"
    );
    assert!(index.manifest(&repository, &manifest).await.expect("read").is_none());

    let stray = fake_digest();
    let refused =
        push(store, &admin, &repository, image_manifest(&manifest, 400), &[&config, &stray], Some("1.0")).await;
    assert!(
        matches!(refused, Err(StoreError::Registry(RegistryRefusal::UnknownReference { ref digest, .. })) if *digest == stray),
        "a manifest referring to a blob the repository does not have is refused: {refused:?}"
    );
    assert!(index.tag(&repository, "1.0").await.expect("read").is_none(), "nothing of the refused push remains");

    push(store, &admin, &repository, image_manifest(&manifest, 400), &[&config, &layer], Some("1.0"))
        .await
        .expect("push the manifest");
    let stored = index.manifest(&repository, &manifest).await.expect("read").expect("the manifest is indexed");
    assert_eq!(stored.total_size, 5500, "the manifest with its config and layer");
    assert_eq!(stored.pushed_by, admin.user);
    let tag = index.tag(&repository, "1.0").await.expect("read").expect("the tag is indexed");
    assert_eq!((tag.digest.as_str(), tag.pushed_by.as_str()), (manifest.as_str(), admin.user.as_str()));
    let tagged = index.tagged_manifest(&repository, "1.0").await.expect("read").expect("the tag's manifest");
    assert_eq!((tagged.digest.as_str(), tagged.total_size), (manifest.as_str(), 5500));
    assert!(index.tagged_manifest(&repository, "2.0").await.expect("read").is_none(), "no such tag");
    let record = last_record(store, &admin.user, "registry.push").await;
    assert_eq!(record.kind.as_deref(), Some("Repository"));
    assert_eq!(record.project.as_deref(), Some(project.as_str()));
    assert_eq!(record.name, Some(format!("{repository}:1.0")));
    assert_eq!(parse_json(record.after.as_ref(), "after")["digest"], json!(manifest));
    assert!(record.before.is_none(), "a new tag has no before");

    // Moving the tag keeps the old digest in the record's before.
    let second = fake_digest();
    push(store, &admin, &repository, image_manifest(&second, 300), &[&config], Some("1.0"))
        .await
        .expect("move the tag");
    push(store, &admin, &repository, image_manifest(&second, 300), &[&config], Some("stable"))
        .await
        .expect("tag again");
    let record = last_record(store, &admin.user, "registry.push").await;
    assert_eq!(record.name, Some(format!("{repository}:stable")));
    let moved = index.tag(&repository, "1.0").await.expect("read").expect("tag");
    assert_eq!(moved.digest, second);
    let tagged = index.tagged_manifest(&repository, "1.0").await.expect("read").expect("the tag's manifest");
    assert_eq!((tagged.digest.as_str(), tagged.size), (second.as_str(), 300), "the tag's new manifest");
    let tags: Vec<String> = index.tags(&repository, None, 10).await.expect("tags").into_iter().map(|t| t.tag).collect();
    assert_eq!(tags, ["1.0", "stable"]);
    let after_first: Vec<String> =
        index.tags(&repository, Some("1.0"), 10).await.expect("tags").into_iter().map(|t| t.tag).collect();
    assert_eq!(after_first, ["stable"]);
    assert_eq!(index.tags_of(&repository, &second).await.expect("tags").len(), 2);
    let newest_first: Vec<String> =
        index.manifests(&repository, None, 10).await.expect("manifests").into_iter().map(|m| m.digest).collect();
    assert_eq!(newest_first, [second.clone(), manifest.clone()]);
    let next: Vec<String> = index
        .manifests(&repository, Some(&second), 10)
        .await
        .expect("manifests")
        .into_iter()
        .map(|m| m.digest)
        .collect();
    assert_eq!(next, std::slice::from_ref(&manifest), "the page after the newest");
    let summary = index.repository(&repository).await.expect("read").expect("the repository is indexed");
    assert_eq!((summary.project.as_str(), summary.manifests, summary.tags), (project.as_str(), 2, 2));
    let listed = index
        .repositories(&RepositoryQuery { project: Some(project.clone()), limit: 10, ..RepositoryQuery::default() })
        .await
        .expect("repositories");
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), [repository.as_str()]);

    // Referrers: a manifest whose subject is another.
    let signature = NewManifest {
        subject: Some(manifest.clone()),
        artifact_type: Some("application/x-sig".into()),
        ..image_manifest(&fake_digest(), 200)
    };
    push(store, &admin, &repository, signature.clone(), &[&config], None).await.expect("push a referrer");
    let referrers = index.referrers(&repository, &manifest).await.expect("referrers");
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].artifact_type.as_deref(), Some("application/x-sig"));

    // Deletions, audited; an unknown one is refused and audited too.
    registry_change(store, &admin, RegistryChange::DeleteTag { repository: repository.clone(), tag: "stable".into() })
        .await
        .expect("delete a tag");
    assert!(index.tag(&repository, "stable").await.expect("read").is_none());
    registry_change(
        store,
        &admin,
        RegistryChange::DeleteManifest { repository: repository.clone(), digest: second.clone() },
    )
    .await
    .expect("delete a manifest");
    assert!(index.manifest(&repository, &second).await.expect("read").is_none());
    assert!(index.tag(&repository, "1.0").await.expect("read").is_none(), "its tags go with it");
    let record = last_record(store, &admin.user, "registry.delete").await;
    assert_eq!(parse_json(record.before.as_ref(), "before")["tags"], json!(["1.0"]));
    let again = registry_change(
        store,
        &admin,
        RegistryChange::DeleteManifest { repository: repository.clone(), digest: second },
    )
    .await;
    assert!(matches!(again, Err(StoreError::Registry(RegistryRefusal::UnknownReference { .. }))), "{again:?}");
    assert_eq!(last_record(store, &admin.user, "registry.delete").await.outcome, "not-found");

    let nowhere = link(store, &admin, &format!("nowhere-{}/web", unique()), &fake_digest(), 1).await;
    assert!(matches!(nowhere, Err(StoreError::Registry(RegistryRefusal::UnknownProject(_)))), "{nowhere:?}");
}

pub async fn registry_rules_hold_in_the_transaction(store: &dyn Store) {
    let admin = actor(&format!("rules-{}", unique()));
    let project = registry_project(
        store,
        &admin,
        json!({"storageQuota": "10k", "immutableTags": [{"repositories": ["web"], "tags": ["v*"]}]}),
    )
    .await;
    let (web, api) = (format!("{project}/web"), format!("{project}/api"));
    let index = store.registry();
    let (layer, first, second) = (fake_digest(), fake_digest(), fake_digest());
    link(store, &admin, &web, &layer, 6000).await.expect("within the quota");
    link(store, &admin, &api, &layer, 6000).await.expect("a blob the project holds already counts once");
    assert_eq!(index.usage(&project).await.expect("usage"), 6000);
    let over = link(store, &admin, &api, &fake_digest(), 5000).await;
    match over {
        Err(StoreError::Registry(RegistryRefusal::QuotaExceeded { quota, used, adding, .. })) => {
            assert_eq!((quota, used, adding), (10_000, 6000, 5000))
        }
        other => panic!("a blob over the quota is refused, not {other:?}"),
    }
    assert_eq!(last_record(store, &admin.user, "registry.link").await.outcome, "denied", "the refusal is audited");

    push(store, &admin, &web, image_manifest(&first, 100), &[&layer], Some("v1")).await.expect("push v1");
    let overwrite = push(store, &admin, &web, image_manifest(&second, 100), &[&layer], Some("v1")).await;
    assert!(
        matches!(overwrite, Err(StoreError::Registry(RegistryRefusal::ImmutableTag { ref tag, .. })) if tag == "v1"),
        "an immutable tag is not overwritten: {overwrite:?}"
    );
    assert_eq!(index.tag(&web, "v1").await.expect("read").expect("tag").digest, first);
    assert!(index.manifest(&web, &second).await.expect("read").is_none(), "the refused manifest is not indexed");
    push(store, &admin, &web, image_manifest(&first, 100), &[&layer], Some("v1")).await.expect("the same digest again");
    let delete_tag =
        registry_change(store, &admin, RegistryChange::DeleteTag { repository: web.clone(), tag: "v1".into() }).await;
    assert!(matches!(delete_tag, Err(StoreError::Registry(RegistryRefusal::ImmutableTag { .. }))), "{delete_tag:?}");
    let delete_manifest = registry_change(
        store,
        &admin,
        RegistryChange::DeleteManifest { repository: web.clone(), digest: first.clone() },
    )
    .await;
    assert!(
        matches!(delete_manifest, Err(StoreError::Registry(RegistryRefusal::ImmutableTag { .. }))),
        "{delete_manifest:?}"
    );
    push(store, &admin, &web, image_manifest(&second, 100), &[&layer], Some("latest"))
        .await
        .expect("latest is mutable");
    push(store, &admin, &api, image_manifest(&second, 100), &[&layer], Some("v1"))
        .await
        .expect("v* is immutable in web only");
    push(store, &admin, &api, image_manifest(&first, 100), &[&layer], Some("v1")).await.expect("so api's v1 moves");
}

pub async fn registry_garbage_is_what_nothing_references(store: &dyn Store) {
    let admin = actor(&format!("gc-{}", unique()));
    let project = registry_project(store, &admin, json!({})).await;
    let repository = format!("{project}/web");
    let index = store.registry();
    let (kept, garbage, manifest) = (fake_digest(), fake_digest(), fake_digest());
    link(store, &admin, &repository, &kept, 10).await.expect("link");
    link(store, &admin, &repository, &garbage, 10).await.expect("link");
    push(store, &admin, &repository, image_manifest(&manifest, 10), &[&kept], Some("1")).await.expect("push");
    let cutoff = now_micros() + 1_000_000;
    let found = index.unreferenced_blobs(cutoff, 100_000).await.expect("unreferenced");
    assert!(found.contains(&garbage), "an unreferenced blob is garbage");
    assert!(!found.contains(&kept) && !found.contains(&manifest), "referenced blobs and manifests are not");
    let late = fake_digest();
    link(store, &admin, &repository, &late, 10).await.expect("link");
    // The project's usage counts each blob once, and drops a blob's size when its last link
    // in the project goes.
    let used = index.usage(&project).await.expect("usage");
    let api = format!("{project}/api");
    link(store, &admin, &api, &late, 10).await.expect("link in a second repository");
    assert_eq!(index.usage(&project).await.expect("usage"), used, "a blob the project holds counts once");
    registry_change(store, &admin, RegistryChange::UnlinkBlob { repository: api.clone(), digest: late.clone() })
        .await
        .expect("unlink");
    assert_eq!(index.usage(&project).await.expect("usage"), used, "web still links it");
    let spare = fake_digest();
    link(store, &admin, &api, &spare, 7).await.expect("link");
    assert_eq!(index.usage(&project).await.expect("usage"), used + 7);
    registry_change(store, &admin, RegistryChange::UnlinkBlob { repository: api.clone(), digest: spare.clone() })
        .await
        .expect("unlink");
    assert_eq!(index.usage(&project).await.expect("usage"), used, "its last link gone, the blob no longer counts");
    let forget = RegistryChange::ForgetBlobs {
        digests: vec![garbage.clone(), kept.clone(), late.clone()],
        linked_before_micros: now_micros() - 60_000_000,
    };
    registry_change(store, &admin, forget).await.expect("nothing linked a minute ago");
    assert!(index.blob(&garbage).await.expect("read").is_some(), "the cutoff protects recent links");
    let forget =
        RegistryChange::ForgetBlobs { digests: vec![garbage.clone(), kept.clone()], linked_before_micros: cutoff };
    registry_change(store, &admin, forget).await.expect("forget");
    assert!(index.blob(&garbage).await.expect("read").is_none(), "the garbage is forgotten");
    assert_eq!(index.usage(&project).await.expect("usage"), used - 10, "forgotten garbage no longer counts");
    assert_eq!(index.linked_blob(&repository, &garbage).await.expect("read"), None);
    assert!(index.blob(&kept).await.expect("read").is_some(), "a referenced blob is kept even when named");
    let record = last_record(store, &admin.user, "registry.gc").await;
    assert_eq!(parse_json(record.after.as_ref(), "after")["blobs"], json!([garbage]));
}

/// The image index follows an Application's creates, updates and deletion, and matches a
/// repository by tag or digest, never a repository whose name merely starts the same.
pub async fn applications_are_found_by_the_images_they_run(store: &dyn Store) {
    let admin = actor(&format!("images-{}", unique()));
    let name = format!("img-{}", unique());
    create(store, &admin, &workspace(&name, json!({}), json!({}))).await;
    create(store, &admin, &project(&name, &name, None)).await;
    create(store, &admin, &local_cluster(&name)).await;
    create(store, &admin, &environment(&name, "test", &[&name], json!({}))).await;
    let repository = format!("registry.test:5000/{name}/web");
    let application = |app: &str, images: &[String]| {
        let components: Vec<Value> =
            images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
        document(
            "Application",
            json!({"name": app, "project": name}),
            json!({"environment": "test", "components": components}),
        )
    };
    let digest = fake_digest();
    let by_tag =
        create(store, &admin, &application("by-tag", &[format!("{repository}:1"), format!("{repository}-api:1")]))
            .await;
    create(store, &admin, &application("by-digest", &[format!("{repository}@{digest}")])).await;
    create(store, &admin, &application("other", &[format!("{repository}x:1")])).await;
    let users = store.registry().image_users(std::slice::from_ref(&repository), 100).await.expect("image users");
    let found: Vec<(String, String)> = users.iter().map(|u| (u.key.name.clone(), u.image.clone())).collect();
    assert_eq!(
        found,
        [
            ("by-digest".to_string(), format!("{repository}@{digest}")),
            ("by-tag".to_string(), format!("{repository}:1"))
        ],
        "by tag and by digest, not web-api nor webx"
    );

    let moved = application("by-tag", &[format!("{repository}:2")]);
    submit(store, &admin, operation(OperationVerb::Update, &moved, Some(rv(&by_tag)))).await.expect("update");
    submit(store, &admin, deletion(&ObjectKey::new("Application", Some(name.clone()), "by-digest"), None))
        .await
        .expect("delete");
    let users = store.registry().image_users(std::slice::from_ref(&repository), 100).await.expect("image users");
    let found: Vec<&str> = users.iter().map(|u| u.image.as_str()).collect();
    assert_eq!(found, [format!("{repository}:2")], "an update replaces the images; a deletion removes them");
    assert!(store.registry().image_users(&[], 100).await.expect("no repositories").is_empty());
}
