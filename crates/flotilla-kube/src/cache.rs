//! Watch-fed caches of a cluster's objects, so that a status or a drift check costs no
//! request to the API server: pods and every kind Flotilla applies (namespaces included),
//! only what is labelled as Flotilla's, and Events, each kept by a reflector (an initial paged
//! list, then a watch, resumed or relisted after errors with back-off), as Kubernetes' own
//! controllers keep theirs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use flotilla_driver::workload::labels;

use crate::render::MANAGED_BY;

/// The caches of one cluster; their watches stop when it is dropped.
pub struct Caches {
    pub deployments: Cache,
    pub stateful_sets: Cache,
    pub pods: Cache,
    /// Indexed by namespace.
    pub events: Cache,
    /// Every applied kind by plural (Deployments and StatefulSets too).
    applied: HashMap<String, (ApiResource, Store<DynamicObject>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Caches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What an object is indexed by (`None`: not indexed).
type IndexKey = fn(&DynamicObject) -> Option<String>;

/// The references of a cache's objects by index key, kept in step with the store from the
/// same watch events (a relist builds a new index and swaps it in when complete, as the
/// store does), so a lookup costs what it finds rather than a scan of the whole cluster.
#[derive(Default)]
struct Index {
    by_key: HashMap<String, HashSet<ObjectRef<DynamicObject>>>,
    key_of: HashMap<ObjectRef<DynamicObject>, String>,
    /// The index a relist is building.
    next: Option<Box<Index>>,
}

impl Index {
    fn insert(&mut self, reference: ObjectRef<DynamicObject>, key: Option<String>) {
        self.remove(&reference);
        if let Some(key) = key {
            self.by_key.entry(key.clone()).or_default().insert(reference.clone());
            self.key_of.insert(reference, key);
        }
    }

    fn remove(&mut self, reference: &ObjectRef<DynamicObject>) {
        if let Some(key) = self.key_of.remove(reference)
            && let Some(references) = self.by_key.get_mut(&key)
        {
            references.remove(reference);
            if references.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    fn apply(&mut self, event: &watcher::Event<DynamicObject>, key_of: IndexKey, resource: &ApiResource) {
        let reference = |object: &DynamicObject| ObjectRef::from_obj_with(object, resource.clone());
        match event {
            watcher::Event::Apply(object) => self.insert(reference(object), key_of(object)),
            watcher::Event::Delete(object) => self.remove(&reference(object)),
            watcher::Event::Init => self.next = Some(Box::default()),
            watcher::Event::InitApply(object) => {
                if let Some(next) = self.next.as_mut() {
                    next.insert(reference(object), key_of(object));
                }
            }
            watcher::Event::InitDone => {
                if let Some(next) = self.next.take() {
                    *self = *next;
                }
            }
        }
    }
}

/// One watched kind: the reflector's store and an index over it.
pub struct Cache {
    pub store: Store<DynamicObject>,
    index: Arc<RwLock<Index>>,
}

impl Cache {
    /// The cached objects with index key `key`.
    pub fn indexed(&self, key: &str) -> Vec<Arc<DynamicObject>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.by_key.get(key).into_iter().flatten().filter_map(|reference| self.store.get(reference)).collect()
    }
}

/// The index key of an object of one application: `<namespace>/<application>`.
pub fn application_key(namespace: &str, application: &str) -> String {
    format!("{namespace}/{application}")
}

fn by_application(object: &DynamicObject) -> Option<String> {
    let application = object.metadata.labels.as_ref()?.get(labels::APPLICATION)?;
    Some(application_key(object.metadata.namespace.as_deref()?, application))
}

fn by_namespace(object: &DynamicObject) -> Option<String> {
    object.data["involvedObject"]["namespace"].as_str().or(object.metadata.namespace.as_deref()).map(str::to_string)
}

/// A cache of `resource` (cluster-wide, only objects matching `labels` when given) kept by
/// a reflector running in a task, indexed by `key_of`.
fn cached(
    client: &kube::Client,
    resource: ApiResource,
    labels: Option<&str>,
    key_of: IndexKey,
) -> (Cache, tokio::task::JoinHandle<()>) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let index = Arc::new(RwLock::new(Index::default()));
    let mut config = watcher::Config::default().page_size(500);
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let indexing = index.clone();
    let task = tokio::spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(event) => indexing.write().unwrap_or_else(|e| e.into_inner()).apply(&event, key_of, &resource),
                    Err(error) => tracing::debug!(resource = %resource.plural, %error, "watch failed; retrying"),
                }
                futures::future::ready(())
            })
            .await;
    });
    (Cache { store, index }, task)
}

/// The resource of a kind (`""` is the core group).
pub(crate) fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

impl Caches {
    /// Starts the watches of the cluster behind `client`; `applied` are the kinds Flotilla
    /// applies besides Deployments and StatefulSets.
    pub fn start(client: &kube::Client, applied: &[ApiResource]) -> Caches {
        let ours = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let deployment = api_resource("apps", "v1", "Deployment", "deployments");
        let stateful_set = api_resource("apps", "v1", "StatefulSet", "statefulsets");
        let pod = api_resource("", "v1", "Pod", "pods");
        let event = api_resource("", "v1", "Event", "events");
        let (deployments, a) = cached(client, deployment.clone(), Some(&ours), by_application);
        let (stateful_sets, b) = cached(client, stateful_set.clone(), Some(&ours), by_application);
        let (pods, c) = cached(client, pod, Some(&ours), by_application);
        let (events, d) = cached(client, event, None, by_namespace);
        let mut tasks = vec![a, b, c, d];
        let mut stores = HashMap::from([
            (deployment.plural.clone(), (deployment, deployments.store.clone())),
            (stateful_set.plural.clone(), (stateful_set, stateful_sets.store.clone())),
        ]);
        for resource in applied {
            if !stores.contains_key(&resource.plural) {
                let (cache, task) = cached(client, resource.clone(), Some(&ours), |_| None);
                tasks.push(task);
                stores.insert(resource.plural.clone(), (resource.clone(), cache.store));
            }
        }
        Caches { deployments, stateful_sets, pods, events, applied: stores, tasks }
    }

    /// Whether the caches a status is made from have their initial list, waiting at most
    /// `patience` (zero: whether they have now).
    pub async fn ready(&self, patience: Duration) -> bool {
        let all = async {
            for cache in [&self.deployments, &self.stateful_sets, &self.pods, &self.events] {
                if cache.store.wait_until_ready().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(patience, all).await.unwrap_or(false)
    }

    /// The cached object of an applied kind: `None` when that cache has not synced (or the
    /// kind is not cached), `Some(None)` when there is no such object of ours.
    pub async fn applied(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Option<Arc<DynamicObject>>> {
        let (resource, store) = self.applied.get(plural)?;
        tokio::time::timeout(Duration::ZERO, store.wait_until_ready()).await.ok()?.ok()?;
        let mut reference = ObjectRef::new_with(name, resource.clone());
        if let Some(namespace) = namespace {
            reference = reference.within(namespace);
        }
        Some(store.get(&reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, application: &str) -> DynamicObject {
        let resource = api_resource("", "v1", "Pod", "pods");
        let mut object = DynamicObject::new(name, &resource).within("shop-test");
        object.metadata.labels = Some([(labels::APPLICATION.to_string(), application.to_string())].into());
        object
    }

    fn names(index: &Index, key: &str) -> Vec<String> {
        let mut names: Vec<String> = index.by_key.get(key).into_iter().flatten().map(|r| r.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_index_follows_applies_relabels_deletes_and_relists() {
        let resource = api_resource("", "v1", "Pod", "pods");
        let mut index = Index::default();
        let apply =
            |index: &mut Index, event: watcher::Event<DynamicObject>| index.apply(&event, by_application, &resource);
        apply(&mut index, watcher::Event::Apply(pod("a-1", "a")));
        apply(&mut index, watcher::Event::Apply(pod("a-2", "a")));
        apply(&mut index, watcher::Event::Apply(pod("b-1", "b")));
        assert_eq!(names(&index, "shop-test/a"), ["a-1", "a-2"]);
        // Relabelled: it moves.
        apply(&mut index, watcher::Event::Apply(pod("a-2", "b")));
        assert_eq!(names(&index, "shop-test/a"), ["a-1"]);
        assert_eq!(names(&index, "shop-test/b"), ["a-2", "b-1"]);
        apply(&mut index, watcher::Event::Delete(pod("a-1", "a")));
        assert!(!index.by_key.contains_key("shop-test/a"), "an emptied key goes");
        // A relist: the old index serves until the new one is complete.
        apply(&mut index, watcher::Event::Init);
        apply(&mut index, watcher::Event::InitApply(pod("c-1", "c")));
        assert_eq!(names(&index, "shop-test/b"), ["a-2", "b-1"]);
        apply(&mut index, watcher::Event::InitDone);
        assert_eq!(names(&index, "shop-test/c"), ["c-1"]);
        assert!(names(&index, "shop-test/b").is_empty(), "what the relist did not see is gone");
    }
}
