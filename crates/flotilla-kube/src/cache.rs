//! Watch-fed caches of a cluster's objects, so that a status costs no request to the API
//! server: Deployments, StatefulSets and pods labelled as Flotilla's, and Events, each kept
//! by a reflector (an initial paged list, then a watch, resumed or relisted after errors
//! with back-off), as Kubernetes' own controllers keep theirs.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::render::MANAGED_BY;

/// The caches of one cluster; their watches stop when it is dropped.
pub struct Caches {
    pub deployments: Store<DynamicObject>,
    pub stateful_sets: Store<DynamicObject>,
    pub pods: Store<DynamicObject>,
    pub events: Store<DynamicObject>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Caches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A store of `resource` (cluster-wide, only objects matching `labels` when given) kept by
/// a reflector running in a task.
fn cached(
    client: &kube::Client,
    resource: ApiResource,
    labels: Option<&str>,
) -> (Store<DynamicObject>, tokio::task::JoinHandle<()>) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let mut config = watcher::Config::default().page_size(500);
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    let plural = resource.plural.clone();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let task = tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(error) = event {
                    tracing::debug!(resource = %plural, %error, "watch failed; retrying");
                }
                futures::future::ready(())
            })
            .await;
    });
    (reader, task)
}

/// The resource of a kind (`""` is the core group).
pub(crate) fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

impl Caches {
    /// Starts the watches of the cluster behind `client`.
    pub fn start(client: &kube::Client) -> Caches {
        let ours = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let (deployments, a) = cached(client, api_resource("apps", "v1", "Deployment", "deployments"), Some(&ours));
        let (stateful_sets, b) = cached(client, api_resource("apps", "v1", "StatefulSet", "statefulsets"), Some(&ours));
        let (pods, c) = cached(client, api_resource("", "v1", "Pod", "pods"), Some(&ours));
        let (events, d) = cached(client, api_resource("", "v1", "Event", "events"), None);
        Caches { deployments, stateful_sets, pods, events, tasks: vec![a, b, c, d] }
    }

    /// Whether every cache has its initial list, waiting at most `patience` (zero: whether
    /// they have now).
    pub async fn ready(&self, patience: Duration) -> bool {
        let all = async {
            for store in [&self.deployments, &self.stateful_sets, &self.pods, &self.events] {
                if store.wait_until_ready().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(patience, all).await.unwrap_or(false)
    }
}
