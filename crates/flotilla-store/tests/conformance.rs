//! Runs the conformance suite on SQLite and on PostgreSQL, and checks what only a real SQL
//! store can show: it survives a reopen, it detects tampering with the audit log, and a change
//! whose audit record cannot be written is not made.
//!
//! The PostgreSQL tests need `FLOTILLA_TEST_POSTGRES_URL` (`scripts/test` starts a throwaway
//! server and sets it). Each test creates a database of its own on that server and drops it
//! afterwards. Without the variable the PostgreSQL tests fail, unless `FLOTILLA_SKIP_POSTGRES=1`
//! says to skip them.

use std::future::Future;
use std::sync::Arc;

use flotilla_core::Object;
use flotilla_core::audit::Actor;
use flotilla_core::kinds::KindRegistry;
use flotilla_core::operation::{Operation, OperationError, OperationVerb};
use flotilla_store::sql::{Dialect, SqlStore, SqlStoreOptions, SystemClock, redact_url};
use flotilla_store::{ApiToken, Change, Committed, Mutation, Store, StoreError, conformance};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};
use tempfile::TempDir;

const AUDIT_KEY: &[u8] = b"flotilla-conformance-audit-key";
const POSTGRES_URL_VAR: &str = "FLOTILLA_TEST_POSTGRES_URL";
const SKIP_POSTGRES_VAR: &str = "FLOTILLA_SKIP_POSTGRES";

async fn open(url: &str) -> SqlStore {
    open_with(SqlStoreOptions::new(url, AUDIT_KEY.to_vec())).await
}

const MASTER_KEY: [u8; 32] = *b"flotilla-conformance-master-key!";

/// [`open`] with secret fields encrypted at rest.
async fn open_sealed(url: &str, key: [u8; 32]) -> SqlStore {
    open_with(SqlStoreOptions::new(url, AUDIT_KEY.to_vec()).with_master_key(key.to_vec())).await
}

async fn open_with(options: SqlStoreOptions) -> SqlStore {
    let url = options.url.clone();
    SqlStore::connect(options, Arc::new(KindRegistry::builtin()), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|error| panic!("cannot open the store at {}: {error}", redact_url(&url)))
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

/// `sqlite:///abs/path/flotilla.db?mode=rwc`: the absolute path after `sqlite://`; `mode=rwc`
/// creates the file when it does not exist.
fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}/flotilla.db?mode=rwc", dir.path().display())
}

/// Runs `test` on a new SQLite database in a temporary directory.
async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = TempDir::new().expect("a temporary directory");
    test(sqlite_url(&dir)).await;
}

/// The PostgreSQL server to test against; `None` when told to skip.
fn postgres_server() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var(SKIP_POSTGRES_VAR).is_ok_and(|v| v == "1") => {
            eprintln!("skipped: {SKIP_POSTGRES_VAR}=1 and {POSTGRES_URL_VAR} is not set");
            None
        }
        _ => panic!(
            "{POSTGRES_URL_VAR} is not set, so the PostgreSQL store cannot be tested. Run `scripts/test`, \
             which starts a throwaway PostgreSQL and sets it, or set it yourself to a server where the \
             user may create databases (e.g. postgres://postgres@127.0.0.1:5432/postgres); each test \
             creates and drops a database of its own. To skip these tests, set {SKIP_POSTGRES_VAR}=1."
        ),
    }
}

/// `url` with its database (the path) replaced by `database`, query string kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Runs `test` on a new PostgreSQL database, dropped afterwards (best effort) even when the
/// test fails.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server) = postgres_server() else {
        return;
    };
    let database = format!("flotilla_conf_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", redact_url(&server)));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("cannot create database {database}: {error}"));
    let outcome = tokio::spawn(test(with_database(&server, &database))).await;
    let dropped = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .execute(&mut admin)
        .await;
    if let Err(error) = dropped {
        eprintln!("warning: could not drop test database {database}: {error}");
    }
    let _ = admin.close().await;
    if let Err(error) = outcome {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("the test task did not finish: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn actor() -> Actor {
    Actor {
        user: "admin".into(),
        auth: "session".into(),
        source_ip: "127.0.0.1".into(),
        user_agent: "conformance-test".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
}

fn document(kind: &str, name: &str, spec: serde_json::Value) -> Object {
    KindRegistry::builtin()
        .parse_document(json!({"apiVersion": "flotilla.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}))
        .unwrap_or_else(|errors| panic!("invalid test document: {errors}"))
}

fn workspace(name: &str, description: &str) -> Object {
    document("Workspace", name, json!({"description": description}))
}

async fn commit(
    store: &SqlStore,
    verb: OperationVerb,
    object: &Object,
    precondition: Option<u64>,
) -> Result<Committed, StoreError> {
    let operation = Operation {
        id: uuid::Uuid::new_v4().to_string(),
        verb,
        key: object.key(),
        object: Some(object.clone()),
        precondition,
    };
    store.commit(Mutation { actor: actor(), change: Change::Object(operation) }).await
}

async fn create(store: &SqlStore, object: &Object) -> Object {
    commit(store, OperationVerb::Create, object, None)
        .await
        .unwrap_or_else(|error| panic!("create {} failed: {error}", object.key()))
        .object
        .expect("a create returns the object")
}

fn rv(object: &Object) -> u64 {
    object.resource_version().expect("a stored object has a resourceVersion")
}

async fn execute(store: &SqlStore, sql: &str) {
    store.execute_unchecked(sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
}

// ---------------------------------------------------------------------------------------------
// Test bodies, each run on both databases
// ---------------------------------------------------------------------------------------------

/// The whole suite, twice on one database: cases must not trip over what earlier runs left.
async fn conformance_suite(url: String) {
    let store = open(&url).await;
    conformance::run_all(&store).await;
    conformance::run_all(&store).await;
}

/// The suite with secret fields encrypted at rest: nothing a caller sees changes.
async fn sealed_conformance_suite(url: String) {
    let store = open_sealed(&url, MASTER_KEY).await;
    conformance::run_all(&store).await;
}

/// A secret field is ciphertext in the database file, plaintext to callers; writing the same
/// value again changes nothing; without the key it stays sealed, with another it does not open.
#[allow(clippy::unwrap_used)] // a panic is a failed test
async fn secrets_are_sealed_at_rest(url: String) {
    let store = open_sealed(&url, MASTER_KEY).await;
    let registry = document(
        "ExternalRegistry",
        "hub",
        json!({"url": "https://registry.example.com", "credentials": {"username": "ci", "password": "hunter2-hunter2"}}),
    );
    let created = create(&store, &registry).await;
    assert_eq!(created.spec["credentials"]["password"], "hunter2-hunter2", "the writer gets its value back");
    assert_eq!(store.get(&created.key()).await.unwrap().unwrap().spec, created.spec, "and so do readers");
    let again = commit(&store, OperationVerb::Apply, &registry, None).await.expect("apply the same");
    assert_eq!(again.outcome, flotilla_core::audit::Outcome::Unchanged, "the same value is no change");
    drop(store);

    let path = url.trim_start_matches("sqlite://").split('?').next().unwrap().to_string();
    let raw: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT spec FROM objects WHERE kind = 'ExternalRegistry'", [], |row| row.get(0))
        .unwrap();
    assert!(!raw.contains("hunter2") && raw.contains("sealed:v1:"), "at rest: {raw}");

    let without_key = open(&url).await;
    let sealed = without_key.get(&created.key()).await.unwrap().unwrap();
    assert!(sealed.spec["credentials"]["password"].as_str().unwrap().starts_with("sealed:v1:"));
    drop(without_key);
    let wrong_key = open_sealed(&url, [9u8; 32]).await;
    assert!(wrong_key.get(&created.key()).await.is_err(), "another key does not open it");
}

/// The caching decorator the API puts in front of the store is a Store too, and passes the
/// same suite: its own writes invalidate what they change.
async fn cached_conformance_suite(url: String) {
    use flotilla_store::cached::{CachedStore, ObjectCaching};
    let store: Arc<dyn Store> = Arc::new(open(&url).await);
    for caching in [ObjectCaching::AuthorizationOnly, ObjectCaching::All] {
        let cached = CachedStore::new(store.clone(), std::time::Duration::from_secs(60), caching);
        conformance::run_all(&cached).await;
    }
}

/// What was acknowledged before the store was closed is there after it is reopened, and the
/// audit chain continues where it ended.
async fn survives_reopening(url: String) {
    let store = open(&url).await;
    let created = create(&store, &workspace("durable", "kept across restarts")).await;
    create(&store, &document("User", "dana", json!({"email": "dana@example.com"}))).await;
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string();
    store
        .commit(Mutation {
            actor: actor(),
            change: Change::SetPassword { user: "dana".into(), password_hash: hash.clone() },
        })
        .await
        .expect("set password");
    let token = ApiToken {
        id: "tok-durable".into(),
        user: "dana".into(),
        name: "ci".into(),
        secret_hash: "f".repeat(64),
        created_micros: 1,
        expires_micros: i64::MAX,
        revoked_micros: None,
    };
    let last =
        store.commit(Mutation { actor: actor(), change: Change::CreateToken(token.clone()) }).await.expect("token").seq;
    drop(store);

    let store = open(&url).await;
    assert_eq!(store.get(&created.key()).await.expect("get"), Some(created.clone()), "the object survives");
    assert_eq!(store.password_hash("dana").await.expect("password_hash"), Some(hash));
    assert_eq!(store.token_by_secret(&token.secret_hash).await.expect("token"), Some(token));
    let report = store.audit_verify().await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.last_seq), (4, last));

    let updated = commit(&store, OperationVerb::Update, &workspace("durable", "changed"), Some(rv(&created)))
        .await
        .expect("update after reopening")
        .object
        .expect("object");
    assert_eq!(rv(&updated), last + 1, "the chain continues where it ended");
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    let report = store.audit_verify().await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.last_seq), (5, last + 1));
}

/// Editing or deleting audit records under the store is reported by `audit_verify`.
async fn detects_tampering(url: String) {
    let store = open(&url).await;
    let mut seqs = Vec::new();
    for index in 0..8 {
        seqs.push(rv(&create(&store, &workspace(&format!("tamper-{index}"), "x")).await));
    }
    let report = store.audit_verify().await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 8);

    let edited = seqs[2];
    store
        .execute_unchecked(&format!("UPDATE audit_records SET user_name = 'mallory' WHERE seq = {edited}"))
        .await
        .expect("edit a record");
    let report = store.audit_verify().await.expect("verify");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].seq, edited);
    assert!(report.problems[0].problem.contains("edited"), "{report:?}");
    assert_eq!(store.audit_record(edited).await.expect("record").expect("exists").user, "mallory");

    let deleted = seqs[5];
    store
        .execute_unchecked(&format!("DELETE FROM audit_records WHERE seq = {deleted}"))
        .await
        .expect("delete a record");
    let report = store.audit_verify().await.expect("verify");
    assert_eq!(report.records, 7);
    assert_eq!(report.problems.len(), 2, "{report:?}");
    assert!(report.problems.iter().any(|p| p.seq == edited && p.problem.contains("edited")), "{report:?}");
    assert!(report.problems.iter().any(|p| p.seq == deleted && p.problem.contains("missing")), "{report:?}");

    let last = seqs[7];
    store
        .execute_unchecked(&format!("DELETE FROM audit_records WHERE seq = {last}"))
        .await
        .expect("delete the last record");
    let report = store.audit_verify().await.expect("verify");
    assert!(
        report.problems.iter().any(|p| p.seq == last && p.problem.contains("missing") && p.problem.contains("head")),
        "a record deleted from the end is caught against the chain head: {report:?}"
    );
}

/// Makes inserting an audit record fail with "audit disk full" (only where `condition` holds,
/// when given), through a trigger named `fail_audit`.
async fn fail_audit_writes(store: &SqlStore, condition: Option<&str>) {
    match store.dialect() {
        Dialect::Sqlite => {
            let when = condition.map(|c| format!("WHEN {c} ")).unwrap_or_default();
            let trigger = format!(
                "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_records {when}\
                 BEGIN SELECT RAISE(ABORT, 'audit disk full'); END;"
            );
            execute(store, &trigger).await
        }
        Dialect::Postgres => {
            execute(
                store,
                "CREATE FUNCTION fail_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit disk full'; END $$ LANGUAGE plpgsql",
            )
            .await;
            let when = condition.map(|c| format!("WHEN ({c}) ")).unwrap_or_default();
            let trigger = format!(
                "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_records FOR EACH ROW {when}EXECUTE FUNCTION fail_audit()"
            );
            execute(store, &trigger).await;
        }
    }
}

/// When the audit record cannot be written, the change is not made and the caller is told.
async fn failed_audit_write_prevents_the_change(url: String) {
    let store = open(&url).await;
    let kept = create(&store, &workspace("kept", "before")).await;
    fail_audit_writes(&store, None).await;

    let lost = workspace("lost", "never stored");
    match commit(&store, OperationVerb::Create, &lost, None).await {
        Err(StoreError::AuditWrite(message)) => assert!(message.contains("audit disk full"), "{message}"),
        other => panic!("a create whose audit record fails must be AuditWrite, got {other:?}"),
    }
    assert_eq!(store.get(&lost.key()).await.expect("get"), None, "the object was not created");

    match commit(&store, OperationVerb::Update, &workspace("kept", "after"), Some(rv(&kept))).await {
        Err(StoreError::AuditWrite(_)) => {}
        other => panic!("an update whose audit record fails must be AuditWrite, got {other:?}"),
    }
    assert_eq!(store.get(&kept.key()).await.expect("get"), Some(kept.clone()), "the update was not made");
    match commit(&store, OperationVerb::Create, &kept, None).await {
        Err(StoreError::AuditWrite(_)) => {}
        other => panic!("a refusal whose record cannot be written is AuditWrite too, got {other:?}"),
    }
    match store
        .commit(Mutation {
            actor: actor(),
            change: Change::SetPassword { user: "nobody".into(), password_hash: "x".into() },
        })
        .await
    {
        Err(StoreError::AuditWrite(_)) => {}
        other => panic!("a refused password change whose record cannot be written is AuditWrite, got {other:?}"),
    }

    match store.dialect() {
        Dialect::Sqlite => execute(&store, "DROP TRIGGER fail_audit").await,
        Dialect::Postgres => execute(&store, "DROP TRIGGER fail_audit ON audit_records").await,
    }
    let report = store.audit_verify().await.expect("verify");
    assert!(report.is_intact(), "failed writes leave no gap in the chain: {report:?}");
    assert_eq!((report.records, report.last_seq), (1, rv(&kept)));
    let created = create(&store, &lost).await;
    assert_eq!(rv(&created), rv(&kept) + 1, "the next write takes the next sequence number");
    assert_eq!(store.get(&lost.key()).await.expect("get"), Some(created));
    match commit(&store, OperationVerb::Create, &lost, None).await {
        Err(StoreError::Operation(OperationError::AlreadyExists(_))) => {}
        other => panic!("with the audit log writable again, refusals are refusals: {other:?}"),
    }
}

/// Two stores on one database (two control-plane replicas) write one chain between them.
async fn replicas_share_one_chain(url: String) {
    let (first, second) = (open(&url).await, open(&url).await);
    const EACH: usize = 60;
    let objects =
        |replica: usize| -> Vec<Object> { (0..EACH).map(|i| workspace(&format!("r{replica}-{i:02}"), "x")).collect() };
    let (mine, theirs) = (objects(1), objects(2));
    let (a, b) = futures::future::join(
        futures::future::join_all(mine.iter().map(|o| commit(&first, OperationVerb::Create, o, None))),
        futures::future::join_all(theirs.iter().map(|o| commit(&second, OperationVerb::Create, o, None))),
    )
    .await;
    let mut seqs = std::collections::BTreeSet::new();
    for result in a.into_iter().chain(b) {
        let committed = result.unwrap_or_else(|error| panic!("a replica's create failed: {error}"));
        assert!(seqs.insert(committed.seq), "sequence number {} given twice", committed.seq);
    }
    assert_eq!(seqs.len(), 2 * EACH);
    assert_eq!(seqs.last().copied(), Some(2 * EACH as u64), "one gap-free sequence across replicas");
    for store in [&first, &second] {
        let report = store.audit_verify().await.expect("verify");
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, 2 * EACH as u64);
        let other = store.get(&theirs[0].key()).await.expect("get");
        assert!(other.is_some(), "each replica reads what the other wrote");
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/// One mutation of a batch failing after it wrote (its audit record refused) takes nothing of
/// the others with it: they commit, with consecutive sequence numbers, and it leaves no trace.
async fn a_late_failure_leaves_the_rest_of_the_batch(url: String) {
    let store = open(&url).await;
    fail_audit_writes(&store, Some("NEW.name = 'lost'")).await;
    // Committed at once: the writer takes them in one batch (or a few).
    let names = ["one", "two", "lost", "three", "four"];
    let objects: Vec<_> = names.iter().map(|name| workspace(name, "batched")).collect();
    let outcomes =
        futures::future::join_all(objects.iter().map(|object| commit(&store, OperationVerb::Create, object, None)))
            .await;
    let mut seqs = Vec::new();
    for (name, outcome) in names.iter().zip(outcomes) {
        match (*name, outcome) {
            ("lost", Err(StoreError::AuditWrite(message))) => assert!(message.contains("audit disk full"), "{message}"),
            ("lost", other) => panic!("the create whose record fails must be AuditWrite, got {other:?}"),
            (_, Ok(committed)) => seqs.push(committed.seq),
            (name, Err(error)) => panic!("{name} was refused with its batch: {error:?}"),
        }
    }
    assert_eq!(store.get(&workspace("lost", "").key()).await.expect("get"), None, "no trace of the failed create");
    for name in ["one", "two", "three", "four"] {
        assert!(store.get(&workspace(name, "").key()).await.expect("get").is_some(), "{name} was kept");
    }
    seqs.sort();
    assert_eq!(seqs, vec![1, 2, 3, 4], "consecutive sequence numbers, no gap for the failed one");
    let report = store.audit_verify().await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.last_seq), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance() {
    on_sqlite(conformance_suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sealed_conformance() {
    on_sqlite(sealed_conformance_suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_secrets_are_sealed_at_rest() {
    on_sqlite(secrets_are_sealed_at_rest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cached_conformance() {
    on_sqlite(cached_conformance_suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_reopening() {
    on_sqlite(survives_reopening).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_detects_tampering() {
    on_sqlite(detects_tampering).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failed_audit_write_prevents_the_change() {
    on_sqlite(failed_audit_write_prevents_the_change).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_late_failure_leaves_the_rest_of_the_batch() {
    on_sqlite(a_late_failure_leaves_the_rest_of_the_batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replicas_share_one_chain() {
    on_sqlite(replicas_share_one_chain).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_late_failure_leaves_the_rest_of_the_batch() {
    on_postgres(a_late_failure_leaves_the_rest_of_the_batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    on_postgres(conformance_suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sealed_conformance() {
    on_postgres(sealed_conformance_suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_reopening() {
    on_postgres(survives_reopening).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_detects_tampering() {
    on_postgres(detects_tampering).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failed_audit_write_prevents_the_change() {
    on_postgres(failed_audit_write_prevents_the_change).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_share_one_chain() {
    on_postgres(replicas_share_one_chain).await;
}

#[test]
fn database_names_replace_the_url_path() {
    assert_eq!(with_database("postgres://u@h:5432/flotilla_test", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
}
