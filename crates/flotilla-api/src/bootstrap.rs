//! First start: the platform admin and the built-in local cluster.
//!
//! Idempotent and safe when several replicas start at once: each step checks what exists
//! and an "already exists" from a racing replica counts as done. Every step is a normal,
//! audited mutation by the `system` actor.

use flotilla_core::Object;
use flotilla_core::audit::Actor;
use flotilla_core::kinds::KindRegistry;
use flotilla_core::operation::{Operation, OperationError, OperationVerb};
use flotilla_store::{Change, Mutation, Store, StoreError};
use serde_json::json;

/// Name of the first admin.
pub const ADMIN_USER: &str = "admin";
/// Name of the built-in cluster (the embedded runtime).
pub const LOCAL_CLUSTER: &str = "local";

/// What bootstrap did that the operator must know.
#[derive(Debug, Default)]
pub struct BootstrapReport {
    /// A generated admin password, to be printed once. `None` when the admin already had a
    /// password or the configured one was used.
    pub generated_admin_password: Option<String>,
    pub created_admin: bool,
    pub created_local_cluster: bool,
}

fn system_actor() -> Actor {
    Actor {
        user: "system".into(),
        auth: "system".into(),
        source_ip: String::new(),
        user_agent: format!("flotilla-server/{}", env!("CARGO_PKG_VERSION")),
        request_id: "bootstrap".into(),
    }
}

async fn create_if_missing(
    store: &dyn Store,
    kinds: &KindRegistry,
    document: serde_json::Value,
) -> Result<bool, StoreError> {
    let object: Object = kinds.parse_document(document).map_err(OperationError::Invalid)?;
    if store.get(&object.key()).await?.is_some() {
        return Ok(false);
    }
    let operation = Operation {
        id: uuid::Uuid::new_v4().to_string(),
        verb: OperationVerb::Create,
        key: object.key(),
        object: Some(object),
        precondition: None,
    };
    match store.commit(Mutation { actor: system_actor(), change: Change::Object(operation) }).await {
        Ok(_) => Ok(true),
        Err(StoreError::Operation(OperationError::AlreadyExists(_))) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Ensures the admin (with a password) and the local cluster exist.
pub async fn bootstrap(
    store: &dyn Store,
    kinds: &KindRegistry,
    configured_password: Option<&str>,
) -> Result<BootstrapReport, StoreError> {
    let created_admin = create_if_missing(
        store,
        kinds,
        json!({"apiVersion": flotilla_core::API_VERSION, "kind": "User",
               "metadata": {"name": ADMIN_USER}, "spec": {"displayName": "Platform administrator"}}),
    )
    .await?;
    create_if_missing(
        store,
        kinds,
        json!({"apiVersion": flotilla_core::API_VERSION, "kind": "RoleBinding",
               "metadata": {"name": "platform-admin"}, "spec": {"user": ADMIN_USER, "role": "admin"}}),
    )
    .await?;
    let mut generated_admin_password = None;
    if store.password_hash(ADMIN_USER).await?.is_none() {
        let password = match configured_password {
            Some(password) => password.to_string(),
            None => {
                let generated = flotilla_identity::generate_password();
                generated_admin_password = Some(generated.clone());
                generated
            }
        };
        let hash = tokio::task::spawn_blocking(move || flotilla_identity::hash_password(&password))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        store
            .commit(Mutation {
                actor: system_actor(),
                change: Change::SetPassword { user: ADMIN_USER.into(), password_hash: hash },
            })
            .await?;
    }
    let created_local_cluster = create_if_missing(
        store,
        kinds,
        json!({"apiVersion": flotilla_core::API_VERSION, "kind": "Cluster",
               "metadata": {"name": LOCAL_CLUSTER, "labels": {"cloud": "on-prem", "tier": "non-prod", "flotilla.io/builtin": "true"}},
               "spec": {"type": "local", "displayName": "Embedded runtime (containerd)"}}),
    )
    .await?;
    Ok(BootstrapReport { generated_admin_password, created_admin, created_local_cluster })
}
