//! The writer task: group commit of mutations with their audit records.
//!
//! # Expected flow
//! Callers queue a [`WriteRequest`]; the task takes everything queued (up to a batch size),
//! opens one write transaction, locks the audit chain head, and applies each mutation: plan
//! the change against the current rows, write it, append its audit record to the chain. A
//! refused mutation (conflict, not found, invalid) is undone and a record of the refusal is
//! appended instead. Undoing is by a savepoint per mutation, or, where the database counts
//! the rows it changes (SQLite), without: a mutation refused before it wrote needs no
//! undoing, and one that fails after it wrote sends the batch round again with savepoints. The head is stored and the
//! transaction committed; only then is every caller answered.
//!
//! # Guarantees
//! - A change and its audit record commit together or not at all: if appending the record
//!   fails, the change is rolled back and the caller gets [`StoreError::AuditWrite`].
//! - No caller is acknowledged before the commit is durable; if the commit fails, every
//!   caller of the batch gets an error and nothing of the batch is visible. (A driver may
//!   make the commit durable after the transaction ends, [`Batch::settle`]: SQLite syncs its
//!   log on another thread while the next batch is written.)

use std::time::{Duration, Instant};

use flotilla_core::audit::{AuditRecord, Outcome, redact};
use flotilla_core::diff::diff;
use flotilla_core::kinds::{KindInfo, Related};
use flotilla_core::operation::{OperationError, Planned, WriteStamp, plan};
use flotilla_core::validation::ValidationErrors;
use flotilla_core::{Object, ObjectKey};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::exec::{Bind, Executor};
use super::{Shared, audit, identity, objects, registry};
use crate::StoreError;
use crate::registry::RegistryRefusal;
use crate::types::{AuditNote, Change, Committed, LoginGrant, Mutation};

pub(crate) struct WriteRequest {
    pub(crate) mutation: Mutation,
    pub(crate) reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// The mutations of one batch and the callers waiting for them.
pub(crate) struct Batch {
    pub(crate) mutations: Vec<Mutation>,
    replies: Vec<oneshot::Sender<Result<Committed, StoreError>>>,
}

impl Batch {
    pub(crate) fn with_capacity(max_batch: usize) -> Self {
        Self { mutations: Vec::with_capacity(max_batch), replies: Vec::with_capacity(max_batch) }
    }

    /// Takes `first` and whatever else is already queued, up to `max_batch`.
    pub(crate) fn fill(&mut self, first: WriteRequest, queue: &mut mpsc::Receiver<WriteRequest>, max_batch: usize) {
        self.push(first);
        self.top_up(queue, max_batch);
    }

    /// Adds whatever is queued now, up to `max_batch` in all.
    pub(crate) fn top_up(&mut self, queue: &mut mpsc::Receiver<WriteRequest>, max_batch: usize) {
        while self.mutations.len() < max_batch {
            match queue.try_recv() {
                Ok(request) => self.push(request),
                Err(_) => break,
            }
        }
    }

    fn push(&mut self, request: WriteRequest) {
        self.mutations.push(request.mutation);
        self.replies.push(request.reply);
    }

    /// Answers every caller of the batch (all with the error if the batch failed) and empties it.
    pub(crate) fn finish(&mut self, outcome: Result<Vec<Result<Committed, StoreError>>, StoreError>) {
        self.settle(outcome).answer(Ok(()));
    }

    /// Empties the batch into the answers of its callers, to be given once its commit is
    /// durable ([`Settled::answer`]).
    pub(crate) fn settle(&mut self, outcome: Result<Vec<Result<Committed, StoreError>>, StoreError>) -> Settled {
        let results = match outcome {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, batch = self.mutations.len(), "write batch failed; nothing of it was committed");
                self.mutations.iter().map(|_| Err(StoreError::Backend(error.to_string()))).collect()
            }
        };
        self.mutations.clear();
        Settled { replies: std::mem::take(&mut self.replies), results }
    }
}

/// The answers of a committed (or failed) batch, not given yet.
pub(crate) struct Settled {
    replies: Vec<oneshot::Sender<Result<Committed, StoreError>>>,
    results: Vec<Result<Committed, StoreError>>,
}

impl Settled {
    #[cfg(test)]
    pub(crate) fn new(
        replies: Vec<oneshot::Sender<Result<Committed, StoreError>>>,
        results: Vec<Result<Committed, StoreError>>,
    ) -> Self {
        Self { replies, results }
    }

    /// Answers every caller; when the commit could not be made durable (`Err` says why), a
    /// caller whose mutation was applied gets that error rather than a success.
    pub(crate) fn answer(self, durable: Result<(), &str>) {
        for (reply, result) in self.replies.into_iter().zip(self.results) {
            let result = match (durable, result) {
                (Err(why), Ok(_)) => Err(StoreError::Backend(format!("the commit could not be made durable: {why}"))),
                (_, result) => result,
            };
            let _ = reply.send(result);
        }
    }
}

/// The chain head while a batch is being written.
struct Head {
    seq: u64,
    hash: String,
}

/// What applying a mutation produced, before its record joins the chain.
struct Applied {
    outcome: Outcome,
    object: Option<Object>,
    /// `None` for a change that is not audited on its own (a registry blob link).
    record: Option<AuditRecord>,
}

/// Commits `mutations` in one transaction on `exec`; rolls everything back if any statement
/// outside a mutation's own savepoint (or the commit) fails.
pub(crate) async fn commit_batch<E: Executor>(
    shared: &Shared,
    exec: &mut E,
    mutations: &[Mutation],
) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
    let started = Instant::now();
    exec.execute(shared.dialect.begin_write(), &[]).await?;
    let began = started.elapsed();
    let mut committing = Duration::ZERO;
    let mut written = write_batch(shared, exec, mutations, false).await;
    if matches!(written, Ok(Pass::Retry)) {
        // A mutation failed after it had written: the batch again, each in its savepoint.
        exec.execute("ROLLBACK", &[]).await?;
        exec.execute(shared.dialect.begin_write(), &[]).await?;
        written = write_batch(shared, exec, mutations, true).await;
    }
    let written = match written {
        Ok(Pass::Retry) => Err(StoreError::Backend("a write batch failed twice".into())),
        Ok(Pass::Done(results)) => {
            let commit_started = Instant::now();
            let committed = exec.execute("COMMIT", &[]).await.map(|_| results);
            committing = commit_started.elapsed();
            committed
        }
        Err(error) => Err(error),
    };
    if written.is_err() {
        // Best effort: a failed COMMIT may already have ended the transaction.
        let _ = exec.execute("ROLLBACK", &[]).await;
    }
    let elapsed = started.elapsed();
    if elapsed >= SLOW_BATCH {
        tracing::warn!(batch = mutations.len(), ?elapsed, begin = ?began, commit = ?committing, "slow write batch");
    }
    written
}

/// A batch taking this long is logged: it delays every caller in it.
const SLOW_BATCH: Duration = Duration::from_millis(50);

/// How a pass over a batch ended.
enum Pass {
    Done(Vec<Result<Committed, StoreError>>),
    /// Without savepoints, a mutation failed after it had written something: only rolling
    /// back the whole transaction undoes that.
    Retry,
}

/// Applies `mutations` in the open transaction. With `savepoints`, each mutation runs in its
/// own savepoint, rolled back when it is refused or its audit record cannot be written.
/// Without (where the executor counts the rows it changes), a mutation refused before it
/// wrote anything needs no undoing, and one that fails later ends the pass with
/// [`Pass::Retry`]: savepoints cost a copy of every page a mutation touches.
async fn write_batch<E: Executor>(
    shared: &Shared,
    exec: &mut E,
    mutations: &[Mutation],
    savepoints: bool,
) -> Result<Pass, StoreError> {
    let head = exec
        .fetch_optional(shared.dialect.select_head_for_update(), &[], |row| {
            Ok(Head { seq: row.int(0)? as u64, hash: row.text(1)? })
        })
        .await?;
    let mut head = head.ok_or_else(|| StoreError::Backend("the audit chain head row is missing".into()))?;
    let mut results = Vec::with_capacity(mutations.len());
    for mutation in mutations {
        let guarded = savepoints || exec.rows_changed().is_none();
        if guarded {
            exec.execute("SAVEPOINT mutation", &[]).await?;
        }
        let changed_before = exec.rows_changed();
        let now = to_micros(shared.clock.now());
        let seq = head.seq + 1;
        let result = match apply(shared, exec, mutation, seq, now).await {
            Ok(Applied { outcome, object, record: None }) => Ok(Committed { seq: head.seq, outcome, object }),
            Ok(Applied { outcome, object, record: Some(record) }) => {
                match audit::append(exec, &mut head_ref(&mut head), record).await {
                    Ok(()) => Ok(Committed { seq, outcome, object }),
                    Err(_) if !guarded => return Ok(Pass::Retry),
                    Err(error) => {
                        exec.execute("ROLLBACK TO SAVEPOINT mutation", &[]).await?;
                        Err(StoreError::AuditWrite(error.to_string()))
                    }
                }
            }
            Err(refusal) => {
                if guarded {
                    exec.execute("ROLLBACK TO SAVEPOINT mutation", &[]).await?;
                } else if exec.rows_changed() != changed_before {
                    return Ok(Pass::Retry);
                }
                let record = refusal_record(mutation, &refusal, now);
                match audit::append(exec, &mut head_ref(&mut head), record).await {
                    Ok(()) => Err(refusal),
                    Err(_) if !guarded => return Ok(Pass::Retry),
                    Err(error) => {
                        exec.execute("ROLLBACK TO SAVEPOINT mutation", &[]).await?;
                        Err(StoreError::AuditWrite(error.to_string()))
                    }
                }
            }
        };
        if guarded {
            exec.execute("RELEASE SAVEPOINT mutation", &[]).await?;
        }
        results.push(result);
    }
    exec.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[Bind::Int(head.seq as i64), Bind::Text(head.hash.clone())],
    )
    .await?;
    Ok(Pass::Done(results))
}

/// `now` truncated to the microseconds the tables keep, so that the object a write returns
/// (and its audit record) carries the timestamps a later read returns.
fn to_micros(now: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
}

fn head_ref(head: &mut Head) -> audit::ChainHead<'_> {
    audit::ChainHead { seq: &mut head.seq, hash: &mut head.hash }
}

/// A record with the actor of `mutation` and no chain fields yet.
fn base_record(mutation: &Mutation, now: jiff::Timestamp, action: &str) -> AuditRecord {
    let actor = &mutation.actor;
    AuditRecord {
        seq: 0,
        id: uuid::Uuid::new_v4().to_string(),
        time_micros: now.as_microsecond(),
        user: actor.user.clone(),
        auth: actor.auth.clone(),
        source_ip: actor.source_ip.clone(),
        user_agent: actor.user_agent.clone(),
        request_id: actor.request_id.clone(),
        action: action.to_string(),
        kind: None,
        project: None,
        name: None,
        outcome: Outcome::Success.as_str().to_string(),
        message: None,
        operation_id: None,
        before: None,
        after: None,
        changes: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn target(record: &mut AuditRecord, key: &ObjectKey) {
    record.kind = Some(key.kind.clone());
    record.project = key.project.clone();
    record.name = Some(key.name.clone());
}

/// The audit record of a mutation that was refused.
fn refusal_record(mutation: &Mutation, refusal: &StoreError, now: jiff::Timestamp) -> AuditRecord {
    let (action, key) = describe(&mutation.change);
    let mut record = base_record(mutation, now, &action);
    if let Some(key) = key {
        target(&mut record, &key);
    }
    if let Change::Object(operation) = &mutation.change {
        record.operation_id = Some(operation.id.clone());
    }
    let outcome = match refusal {
        StoreError::Operation(
            OperationError::Conflict { .. } | OperationError::AlreadyExists(_) | OperationError::InUse { .. },
        ) => Outcome::Conflict,
        StoreError::Operation(OperationError::NotFound(_)) => Outcome::NotFound,
        StoreError::Operation(OperationError::Invalid(_)) => Outcome::Invalid,
        StoreError::Registry(RegistryRefusal::ImmutableTag { .. }) => Outcome::Conflict,
        StoreError::Registry(RegistryRefusal::QuotaExceeded { .. }) => Outcome::Denied,
        StoreError::Registry(RegistryRefusal::UnknownReference { .. } | RegistryRefusal::UnknownProject(_)) => {
            Outcome::NotFound
        }
        _ => Outcome::Error,
    };
    record.outcome = outcome.as_str().to_string();
    record.message = Some(refusal.to_string());
    record
}

/// The action name and target of a change, for records.
fn describe(change: &Change) -> (String, Option<ObjectKey>) {
    match change {
        Change::Object(operation) => (operation.verb.as_str().to_string(), Some(operation.key.clone())),
        Change::SetPassword { user, .. } => ("user.set-password".into(), Some(ObjectKey::new("User", None, user))),
        Change::Login { .. } => ("login".into(), None),
        Change::EndSession { .. } => ("logout".into(), None),
        Change::CreateToken(token) => ("token.create".into(), Some(ObjectKey::new("ApiToken", None, &token.id))),
        Change::RevokeToken { id, .. } => ("token.revoke".into(), Some(ObjectKey::new("ApiToken", None, id))),
        Change::Record(note) => (note.action.clone(), None),
        Change::Registry(change) => {
            let (action, key) = registry::describe(change);
            (action.to_string(), key)
        }
    }
}

/// The JSON text of an object as audit records keep it: secrets replaced by keyed hashes.
fn redacted_json(shared: &Shared, info: &KindInfo, object: &Object) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    redact(&mut value, info.secret_paths, &shared.audit_key);
    value
}

async fn apply<E: Executor>(
    shared: &Shared,
    exec: &mut E,
    mutation: &Mutation,
    seq: u64,
    now: jiff::Timestamp,
) -> Result<Applied, StoreError> {
    let (action, key) = describe(&mutation.change);
    let mut record = base_record(mutation, now, &action);
    if let Some(key) = &key {
        target(&mut record, key);
    }
    let mut outcome = Outcome::Success;
    let mut object = None;
    match &mutation.change {
        Change::Object(operation) => {
            record.operation_id = Some(operation.id.clone());
            let info = shared.kinds.lookup(&operation.key.kind).cloned().ok_or_else(|| {
                let mut errors = ValidationErrors::default();
                errors.push("kind", format!("unknown kind {:?}", operation.key.kind));
                OperationError::Invalid(errors)
            })?;
            let current = match objects::get_with_id(exec, &operation.key).await? {
                Some((id, stored)) => Some((id, shared.open(stored)?)),
                None => None,
            };
            let stamp = WriteStamp { resource_version: seq, now, new_uid: uuid::Uuid::new_v4().to_string() };
            let planned = plan(operation, current.as_ref().map(|(_, o)| o), &stamp)?;
            if let Some(after) = planned.after()
                && !matches!(planned, Planned::Unchanged(_))
            {
                check_references(exec, &info, after, planned.before().is_some()).await?;
            }
            let row_id = current.as_ref().map(|(id, _)| *id);
            match (&planned, row_id) {
                (Planned::Create(after), _) => {
                    let id = objects::insert(exec, &shared.seal(after)?).await?;
                    objects::write_references(exec, id, &info.references(after), true).await?;
                    objects::write_images(exec, id, &info.images(after), true).await?;
                }
                (Planned::Update { after, .. }, Some(id)) => {
                    objects::update(exec, id, &shared.seal(after)?).await?;
                    objects::write_references(exec, id, &info.references(after), false).await?;
                    objects::write_images(exec, id, &info.images(after), false).await?;
                }
                (Planned::Delete(_), Some(id)) => {
                    let referrers = objects::referrers(exec, &operation.key, 5).await?;
                    if !referrers.is_empty() {
                        return Err(OperationError::InUse { key: operation.key.clone(), referrers }.into());
                    }
                    objects::delete(exec, id).await?;
                }
                _ => {}
            }
            if matches!(planned, Planned::Unchanged(_)) {
                outcome = Outcome::Unchanged;
            }
            let before = planned.before().map(|o| redacted_json(shared, &info, o));
            let after = planned.after().map(|o| redacted_json(shared, &info, o));
            let changes = diff(before.as_ref(), after.as_ref());
            if !matches!(planned, Planned::Unchanged(_)) {
                record.before = before.map(|v| v.to_string());
                record.after = after.map(|v| v.to_string());
                if !changes.is_empty() {
                    record.changes = Some(serde_json::to_string(&changes).unwrap_or_default());
                }
            }
            object = planned.after().cloned();
        }
        Change::SetPassword { user, password_hash } => {
            let user_key = ObjectKey::new("User", None, user);
            if objects::get_with_id(exec, &user_key).await?.is_none() {
                return Err(OperationError::NotFound(user_key).into());
            }
            identity::set_password(exec, user, password_hash, now).await?;
            record.message = Some("password changed".into());
        }
        Change::Login { user, outcome: login_outcome, message, grant, throttle } => {
            record.user = user.clone();
            outcome = *login_outcome;
            record.message = message.clone();
            for (key, state) in throttle {
                identity::set_throttle(exec, key, state.as_ref()).await?;
            }
            match grant {
                Some(LoginGrant::Session(session)) => identity::insert_session(exec, session).await?,
                Some(LoginGrant::Token(token)) => {
                    identity::insert_token(exec, token).await?;
                    record.kind = Some("ApiToken".into());
                    record.name = Some(token.id.clone());
                }
                None => {}
            }
        }
        Change::EndSession { id_hash, .. } => identity::delete_session(exec, id_hash).await?,
        Change::CreateToken(token) => {
            identity::insert_token(exec, token).await?;
            record.after = Some(serde_json::to_string(token).unwrap_or_default());
        }
        Change::RevokeToken { id, user } => {
            if !identity::revoke_token(exec, id, user, now).await? {
                return Err(OperationError::NotFound(ObjectKey::new("ApiToken", None, id)).into());
            }
        }
        Change::Record(AuditNote { kind, project, name, outcome: note_outcome, message, .. }) => {
            record.kind = kind.clone();
            record.project = project.clone();
            record.name = name.clone();
            record.message = message.clone();
            outcome = note_outcome.unwrap_or(Outcome::Success);
        }
        Change::Registry(change) => {
            if !registry::apply(exec, change, &mutation.actor.user, now.as_microsecond(), &mut record).await? {
                return Ok(Applied { outcome, object, record: None });
            }
        }
    }
    record.outcome = outcome.as_str().to_string();
    Ok(Applied { outcome, object, record: Some(record) })
}

/// Refuses an object whose references name objects that do not exist, or that does not fit
/// the objects it references and the siblings sharing its budget (a project's quota, with its
/// workspace's other projects, within the workspace's), or (on update) no longer holds the
/// objects referring to it (a workspace quota below its projects').
async fn check_references<E: Executor>(
    exec: &mut E,
    info: &KindInfo,
    object: &Object,
    is_update: bool,
) -> Result<(), StoreError> {
    let mut errors = ValidationErrors::default();
    let mut referenced = Vec::new();
    for reference in info.references(object) {
        match objects::get_with_id(exec, &reference.key).await? {
            Some((_, found)) => referenced.push(found),
            None => {
                errors.push(reference.path, format!("{} {:?} does not exist", reference.key.kind, reference.key.name))
            }
        }
    }
    errors.into_result().map_err(OperationError::Invalid)?;
    let siblings = match info.budget_reference(object) {
        Some(budget) => objects::referring_objects(exec, &budget.key, Some(info.kind), Some(&object.key())).await?,
        None => Vec::new(),
    };
    let related = Related { referenced: &referenced, siblings: &siblings };
    info.validate_against(object, &related).map_err(OperationError::Invalid)?;
    if is_update {
        let dependents = objects::referring_objects(exec, &object.key(), None, None).await?;
        info.validate_against_dependents(object, &dependents).map_err(OperationError::Invalid)?;
    }
    Ok(())
}
