//! [`CachedStore`]: a [`Store`] decorator that keeps the lookups every authenticated request
//! makes (token, session, user, grants, a project's workspace) in memory for a short time.
//!
//! # Guarantees
//! - A write through this store invalidates what it could have changed before it returns, so
//!   a replica always sees its own writes (a revoked token is refused at once).
//! - A value read from the database while a write was invalidating is not cached, so an
//!   invalidation cannot be undone by a concurrent reader.
//! - With [`ObjectCaching::All`] (a store only this process writes) every object read is
//!   served from memory and stays coherent, as all writes pass through here.
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

/// A map whose entries expire, and which refuses a value loaded before an invalidation:
/// a reader that read the database before a write committed, and finishes after the write
/// invalidated, would otherwise cache the old value (a revoked token, an old object).
struct TtlMap<K, V> {
    state: Mutex<TtlState<K, V>>,
    ttl: Duration,
}

struct TtlState<K, V> {
    entries: HashMap<K, (Instant, V)>,
    /// Incremented by every invalidation.
    generation: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration) -> Self {
        Self { state: Mutex::new(TtlState { entries: HashMap::new(), generation: 0 }), ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TtlState<K, V>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached value, or the generation to hand to [`TtlMap::put`] after loading it.
    fn get(&self, key: &K) -> Result<V, u64> {
        let state = self.lock();
        match state.entries.get(key) {
            Some((at, value)) if at.elapsed() < self.ttl => Ok(value.clone()),
            _ => Err(state.generation),
        }
    }

    /// Caches a value loaded when the map was at `generation`, unless something was
    /// invalidated since.
    fn put(&self, generation: u64, key: K, value: V) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.clear();
        }
        state.entries.insert(key, (Instant::now(), value));
    }

    fn remove(&self, key: &K) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.remove(key);
    }

    fn clear(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.entries.clear();
    }
}

/// Which objects a [`CachedStore`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectCaching {
    /// Only what authorization reads on every request (User, Project). For stores shared by
    /// several replicas, whose writes this one does not see.
    AuthorizationOnly,
    /// Every object read by key. Only for a store this process alone writes (embedded
    /// SQLite), where every write passes through this cache and it is always coherent.
    All,
}

/// See the module documentation.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    tokens: TtlMap<String, Option<ApiToken>>,
    sessions: TtlMap<String, Option<Session>>,
    grants: TtlMap<String, Vec<Grant>>,
    objects: TtlMap<ObjectKey, Option<Object>>,
    object_caching: ObjectCaching,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, ttl: Duration, object_caching: ObjectCaching) -> Self {
        Self {
            inner,
            tokens: TtlMap::new(ttl),
            sessions: TtlMap::new(ttl),
            grants: TtlMap::new(ttl),
            objects: TtlMap::new(ttl),
            object_caching,
        }
    }

    fn caches(&self, kind: &str) -> bool {
        self.object_caching == ObjectCaching::All || CACHED_KINDS.contains(&kind)
    }

    fn invalidate(&self, change: &Change) {
        match change {
            Change::Object(operation) => {
                let kind = operation.key.kind.as_str();
                if self.caches(kind) {
                    self.objects.remove(&operation.key);
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
            Change::Record(_) | Change::Registry(_) => {}
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
        if !self.caches(&key.kind) {
            return self.inner.get(key).await;
        }
        let generation = match self.objects.get(key) {
            Ok(found) => return Ok(found),
            Err(generation) => generation,
        };
        let found = self.inner.get(key).await?;
        self.objects.put(generation, key.clone(), found.clone());
        Ok(found)
    }

    async fn list(&self, query: &ListQuery) -> Result<ObjectPage, StoreError> {
        self.inner.list(query).await
    }

    async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        let generation = match self.grants.get(&user.to_string()) {
            Ok(found) => return Ok(found),
            Err(generation) => generation,
        };
        let found = self.inner.grants_of(user).await?;
        self.grants.put(generation, user.to_string(), found.clone());
        Ok(found)
    }

    async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.inner.password_hash(user).await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let generation = match self.sessions.get(&id_hash.to_string()) {
            Ok(found) => return Ok(found),
            Err(generation) => generation,
        };
        let found = self.inner.session(id_hash).await?;
        self.sessions.put(generation, id_hash.to_string(), found.clone());
        Ok(found)
    }

    async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let generation = match self.tokens.get(&secret_hash.to_string()) {
            Ok(found) => return Ok(found),
            Err(generation) => generation,
        };
        let found = self.inner.token_by_secret(secret_hash).await?;
        self.tokens.put(generation, secret_hash.to_string(), found.clone());
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

    fn registry(&self) -> &dyn crate::registry::RegistryReads {
        self.inner.registry()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_loaded_before_an_invalidation_is_not_cached() {
        let map: TtlMap<&str, u32> = TtlMap::new(Duration::from_secs(60));
        let Err(generation) = map.get(&"token") else { panic!("empty map") };
        map.remove(&"token"); // a revocation commits while the reader is in the database
        map.put(generation, "token", 1); // the reader comes back with the old value
        assert!(map.get(&"token").is_err(), "the stale value must not be cached");
        let Err(generation) = map.get(&"token") else { panic!() };
        map.put(generation, "token", 2);
        assert_eq!(map.get(&"token"), Ok(2));
    }

    #[test]
    fn entries_expire() {
        let map: TtlMap<&str, u32> = TtlMap::new(Duration::ZERO);
        let Err(generation) = map.get(&"k") else { panic!() };
        map.put(generation, "k", 1);
        assert!(map.get(&"k").is_err());
    }
}
