//! [`CachedStore`]: a [`Store`] decorator that keeps the lookups every authenticated request
//! makes (token, session, user, grants, a project's workspace) in memory for a short time.
//!
//! # Guarantees
//! - A write through this store invalidates what it could have changed before it returns, so
//!   a replica always sees its own writes (a revoked token is refused at once).
//! - Another replica's write is seen within the TTL: a revoked token or a removed grant may
//!   keep working on *other* replicas for at most that long. With one replica (the embedded
//!   default) there is no staleness at all.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_core::audit::{AuditRecord, VerifyReport};
use flotilla_core::rbac::Grant;
use flotilla_core::{Object, ObjectKey};

use crate::types::*;
use crate::{Store, StoreError};

/// Kinds whose single-object reads are cached (read on every request for authorization).
const CACHED_KINDS: &[&str] = &["User", "Project"];

/// Entries kept before the cache starts over (a bound on memory, not a tuning knob).
const MAX_ENTRIES: usize = 100_000;

struct TtlMap<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }

    fn clear(&self) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// See the module documentation.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    tokens: TtlMap<String, Option<ApiToken>>,
    sessions: TtlMap<String, Option<Session>>,
    grants: TtlMap<String, Vec<Grant>>,
    objects: TtlMap<ObjectKey, Option<Object>>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            inner,
            tokens: TtlMap::new(ttl),
            sessions: TtlMap::new(ttl),
            grants: TtlMap::new(ttl),
            objects: TtlMap::new(ttl),
        }
    }

    fn invalidate(&self, change: &Change) {
        match change {
            Change::Object(operation) => {
                let kind = operation.key.kind.as_str();
                if CACHED_KINDS.contains(&kind) {
                    self.objects.clear();
                }
                if kind == "RoleBinding" || kind == "User" {
                    self.grants.clear();
                }
            }
            Change::RevokeToken { .. } | Change::CreateToken(_) => self.tokens.clear(),
            Change::EndSession { .. } | Change::SetPassword { .. } | Change::Login { .. } => {
                self.sessions.clear();
                self.tokens.clear();
            }
            Change::Record(_) => {}
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn commit(&self, mutation: Mutation) -> Result<Committed, StoreError> {
        // Invalidate before and after: a concurrent read between the two cannot re-cache the
        // old value for longer than this call.
        self.invalidate(&mutation.change);
        let change = mutation.change.clone();
        let result = self.inner.commit(mutation).await;
        self.invalidate(&change);
        result
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        if !CACHED_KINDS.contains(&key.kind.as_str()) {
            return self.inner.get(key).await;
        }
        if let Some(found) = self.objects.get(key) {
            return Ok(found);
        }
        let found = self.inner.get(key).await?;
        self.objects.put(key.clone(), found.clone());
        Ok(found)
    }

    async fn list(&self, query: &ListQuery) -> Result<ObjectPage, StoreError> {
        self.inner.list(query).await
    }

    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        if let Some(found) = self.grants.get(&user.to_string()) {
            return Ok(found);
        }
        let found = self.inner.grants_of(user).await?;
        self.grants.put(user.to_string(), found.clone());
        Ok(found)
    }

    async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.inner.password_hash(user).await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        if let Some(found) = self.sessions.get(&id_hash.to_string()) {
            return Ok(found);
        }
        let found = self.inner.session(id_hash).await?;
        self.sessions.put(id_hash.to_string(), found.clone());
        Ok(found)
    }

    async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        if let Some(found) = self.tokens.get(&secret_hash.to_string()) {
            return Ok(found);
        }
        let found = self.inner.token_by_secret(secret_hash).await?;
        self.tokens.put(secret_hash.to_string(), found.clone());
        Ok(found)
    }

    async fn tokens_of(&self, user: &str) -> Result<Vec<ApiToken>, StoreError> {
        self.inner.tokens_of(user).await
    }

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleState>, StoreError> {
        self.inner.throttle(key).await
    }

    async fn audit_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.audit_query(query).await
    }

    async fn audit_summary(&self, query: &AuditQuery, by: SummaryBy) -> Result<Vec<SummaryRow>, StoreError> {
        self.inner.audit_summary(query, by).await
    }

    async fn audit_verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.audit_verify().await
    }

    async fn audit_record(&self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        self.inner.audit_record(seq).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
