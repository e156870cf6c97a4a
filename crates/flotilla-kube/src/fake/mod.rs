//! A fake Kubernetes API server, in process, for tests: no API server can be installed on
//! the machines the tests run on, and `kube-fake-client` does not follow current kube.
//!
//! It speaks the API's HTTP conventions for the verbs the driver uses: `/version`; get, list
//! (label and field selectors, `limit` and `continue` paging) and watch (`?watch=true` from a
//! `resourceVersion`, `410 Gone` when that is too old) of any resource under `/api/v1` and
//! `/apis/{group}/{version}`, cluster-scoped or namespaced; create; server-side apply
//! (`PATCH` with `application/apply-patch+yaml`: fields the manager applied before and no
//! longer applies are removed, the rest merged, `generation` bumped when `spec` changes);
//! JSON merge patch; delete, one object or a collection by label selector; bearer-token
//! authentication (401) and per-resource denial (403), all failures answered as `Status`
//! objects the way the real server answers them. Every write takes the next
//! `resourceVersion`.
//!
//! `pods/exec` speaks the WebSocket channel protocol ([`exec`]).
//!
//! With [`FakeApiServer::run_pods`], a [`kubelet`] runs the pods for real on a CRI runtime
//! (containerd): containers are processes, and logs, exec, probes, restarts and metrics are
//! theirs. Without it, the simulation stands in for them as described below.
//!
//! [`simulate`] plays the controllers and the kubelet: Deployments roll out through
//! ReplicaSets within maxSurge/maxUnavailable and report progress (and a missed progress
//! deadline), StatefulSets replace their pods in order, pods are scheduled on a node, pull
//! their image (a registry that does not answer fails the pull), start and become ready, and
//! Events say what happened. What a simulated container does is decided by its spec alone:
//! it listens on the ports it declares, so a probe of another port fails.

mod exec;
mod kubelet;
mod simulate;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Where an object lives: group/version (`v1`, `apps/v1`), resource (plural), namespace.
pub(crate) type Collection = (String, String, Option<String>);

/// How many past changes a watch can start from.
const HISTORY: usize = 20_000;

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    resource_version: u64,
    collection: Collection,
    kind: &'static str,
    object: Value,
}

pub(crate) struct FakeState {
    token: String,
    git_version: String,
    pub(crate) objects: BTreeMap<Collection, BTreeMap<String, Value>>,
    resource_version: u64,
    /// Resources the token may not touch (answered 403).
    forbidden: BTreeSet<String>,
    /// What each field manager last applied to each object (server-side apply).
    applied: BTreeMap<(Collection, String), Value>,
    history: VecDeque<Change>,
    changes: broadcast::Sender<Change>,
    /// List requests (not watches) served, by resource.
    lists: BTreeMap<String, u64>,
    /// Requests for one object, by resource.
    gets: BTreeMap<String, u64>,
    /// Whether `metrics.k8s.io` is served (a metrics-server is installed).
    metrics: bool,
    /// The kubelet running pods on a CRI runtime, when there is one ([`FakeApiServer::run_pods`]).
    kubelet: Option<Arc<kubelet::Kubelet>>,
    next_event: u64,
}

/// A running fake API server on a loopback port.
pub struct FakeApiServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The plural resource name of a kind, as the API server names its collection.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// The collection `object` belongs to.
pub(crate) fn collection_of(object: &Value) -> Collection {
    (
        object["apiVersion"].as_str().unwrap_or_default().to_string(),
        plural(object["kind"].as_str().unwrap_or_default()),
        object["metadata"]["namespace"].as_str().map(str::to_string),
    )
}

impl FakeApiServer {
    /// Starts a server that accepts `token` and reports Kubernetes `git_version`, with its
    /// controllers and kubelet simulated.
    pub async fn start(token: &str, git_version: &str) -> FakeApiServer {
        let (changes, _) = broadcast::channel(4096);
        let state = Arc::new(Mutex::new(FakeState {
            token: token.to_string(),
            git_version: git_version.to_string(),
            objects: BTreeMap::new(),
            resource_version: 0,
            forbidden: BTreeSet::new(),
            applied: BTreeMap::new(),
            history: VecDeque::new(),
            changes,
            lists: BTreeMap::new(),
            gets: BTreeMap::new(),
            metrics: false,
            kubelet: None,
            next_event: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .route("/api/v1/namespaces/{namespace}/pods/{name}/exec", axum::routing::get(exec::exec).post(exec::exec))
            .fallback(handle)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let simulation = tokio::spawn(simulate::run(state.clone()));
        FakeApiServer { url, state, tasks: vec![server, simulation] }
    }

    /// From now on, pods scheduled to the node run for real on the CRI runtime at `socket`
    /// (its CNI network gives them addresses), with their files under `dir`; every sandbox
    /// carries `labels`. The simulation still schedules them; this kubelet does the rest.
    pub async fn run_pods(
        &mut self,
        socket: &std::path::Path,
        labels: std::collections::HashMap<String, String>,
        dir: std::path::PathBuf,
    ) {
        let cri = flotilla_local::cri::Cri::connect(socket).await.expect("the CRI runtime answers");
        let kubelet = Arc::new(kubelet::Kubelet::new(cri, labels, dir));
        self.state.lock().expect("fake state").kubelet = Some(kubelet.clone());
        self.tasks.push(tokio::spawn(kubelet::run(self.state.clone(), kubelet)));
    }

    /// Stores `object` (with `apiVersion`, `kind`, `metadata.name`, and `metadata.namespace`
    /// when namespaced) as if created through the API.
    pub fn insert(&self, object: Value) {
        let mut state = self.state.lock().expect("fake state");
        state.store(collection_of(&object), object);
    }

    /// A node with `cpu` and `memory` allocatable, ready, and a default storage class: what
    /// a small working cluster has.
    pub fn add_node(&self, name: &str, cpu: &str, memory: &str) {
        self.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1"}}}));
        self.insert(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "fake.csi",
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}));
    }

    /// Makes every request on `resource` (`nodes`) answer 403, as a missing RBAC rule does.
    pub fn forbid(&self, resource: &str) {
        self.state.lock().expect("fake state").forbidden.insert(resource.to_string());
    }

    /// Every stored object of `resource`, any namespace.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        let state = self.state.lock().expect("fake state");
        state
            .objects
            .iter()
            .filter(|((_, r, _), _)| r == resource)
            .flat_map(|(_, items)| items.values().cloned())
            .collect()
    }

    /// Serves `metrics.k8s.io` from now on, as a cluster with a metrics-server does: every
    /// running pod uses 2.5 millicores and 12 MiB.
    pub fn serve_metrics(&self) {
        self.state.lock().expect("fake state").metrics = true;
    }

    /// How many list requests (not watches) of `resource` were served.
    pub fn list_requests(&self, resource: &str) -> u64 {
        self.state.lock().expect("fake state").lists.get(resource).copied().unwrap_or(0)
    }

    /// How many requests for one object of `resource` were served.
    pub fn get_requests(&self, resource: &str) -> u64 {
        self.state.lock().expect("fake state").gets.get(resource).copied().unwrap_or(0)
    }

    /// Changes an object out of band, as another client would (a JSON merge patch).
    pub fn edit(&self, resource: &str, namespace: &str, name: &str, patch: &Value) {
        let mut state = self.state.lock().expect("fake state");
        let key = state
            .objects
            .keys()
            .find(|(_, r, ns)| r == resource && ns.as_deref() == Some(namespace))
            .cloned()
            .expect("the collection exists");
        let mut object = state.objects[&key].get(name).cloned().expect("the object exists");
        merge(&mut object, patch);
        state.store(key, object);
    }

    /// A client configuration (YAML kubeconfig) for this server with `token`.
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            self.url
        )
    }
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Removes from `target` the fields of `before` that `after` no longer has (what a manager
/// stopped applying), recursing into objects both have.
fn remove_dropped(target: &mut Value, before: &Value, after: &Value) {
    let (Some(target), Some(before)) = (target.as_object_mut(), before.as_object()) else { return };
    for (key, old) in before {
        match after.get(key) {
            None => {
                target.remove(key);
            }
            Some(new) => {
                if let Some(inner) = target.get_mut(key) {
                    remove_dropped(inner, old, new);
                }
            }
        }
    }
}

impl FakeState {
    /// Records an Event about `involved`, as the component that saw it words it.
    pub(crate) fn event(&mut self, namespace: &str, involved: &Value, kind: &str, reason: &str, message: String) {
        self.next_event += 1;
        let now = simulate::now_rfc3339();
        let involved_name = involved["metadata"]["name"].as_str().unwrap_or_default();
        let event = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{involved_name}.{:x}", self.next_event), "namespace": namespace},
            "involvedObject": {"kind": involved["kind"], "name": involved_name, "namespace": namespace,
                "uid": involved["metadata"]["uid"], "apiVersion": involved["apiVersion"]},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "fake"}});
        self.store(("v1".to_string(), "events".to_string(), Some(namespace.to_string())), event);
    }

    /// Stores `object` at the next resource version and tells watchers.
    pub(crate) fn store(&mut self, collection: Collection, mut object: Value) -> Value {
        self.resource_version += 1;
        let name = object["metadata"]["name"].as_str().expect("metadata.name").to_string();
        let existing = self.objects.get(&collection).and_then(|items| items.get(&name)).cloned();
        let metadata = &mut object["metadata"];
        metadata["resourceVersion"] = json!(self.resource_version.to_string());
        match &existing {
            Some(old) => {
                for field in ["uid", "creationTimestamp"] {
                    metadata[field] = old["metadata"][field].clone();
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = old.get("spec") != object.get("spec");
                object["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
            }
            None => {
                metadata["uid"] = json!(format!("uid-{}", self.resource_version));
                metadata["creationTimestamp"] = json!(simulate::now_rfc3339());
                metadata["generation"] = json!(1);
            }
        }
        let kind = if existing.is_some() { "MODIFIED" } else { "ADDED" };
        self.objects.entry(collection.clone()).or_default().insert(name, object.clone());
        self.record(collection, kind, object.clone());
        object
    }

    /// Removes an object; what it was.
    pub(crate) fn remove(&mut self, collection: &Collection, name: &str) -> Option<Value> {
        let object = self.objects.get_mut(collection)?.remove(name)?;
        self.resource_version += 1;
        self.applied.retain(|(c, n), _| !(c == collection && n == name));
        let mut deleted = object.clone();
        deleted["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(collection.clone(), "DELETED", deleted);
        Some(object)
    }

    fn record(&mut self, collection: Collection, kind: &'static str, object: Value) {
        let change = Change { resource_version: self.resource_version, collection, kind, object };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        let _ = self.changes.send(change);
    }

    /// Server-side apply of `applied` by `manager` (one manager's view: what it applied
    /// before and not now is removed; what it applies is merged over the live object).
    fn apply(&mut self, collection: Collection, name: &str, manager: &str, applied: Value) -> Value {
        let key = (collection.clone(), format!("{name}\u{0}{manager}"));
        let live = self.objects.get(&collection).and_then(|items| items.get(name)).cloned();
        let mut object = match live {
            Some(mut live) => {
                if let Some(before) = self.applied.get(&key) {
                    remove_dropped(&mut live, before, &applied);
                }
                merge(&mut live, &applied);
                live
            }
            None => applied.clone(),
        };
        // Apply never sets status: the live object's is kept.
        if let Some(fields) = object.as_object_mut() {
            fields.remove("status");
        }
        if let Some(status) =
            self.objects.get(&collection).and_then(|items| items.get(name)).and_then(|o| o.get("status")).cloned()
        {
            object["status"] = status;
        }
        // Who applied it, as the real server records it (without the field sets).
        let entry = json!({"manager": manager, "operation": "Apply", "apiVersion": object["apiVersion"],
            "time": simulate::now_rfc3339(), "fieldsType": "FieldsV1"});
        let mut managers: Vec<Value> = object["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["manager"] != manager)
            .collect();
        managers.push(entry);
        object["metadata"]["managedFields"] = Value::Array(managers);
        self.applied.insert(key, applied);
        self.store(collection, object)
    }
}

/// Whether the request carries the token the server accepts.
fn authorized(state: &FakeState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == state.token)
}

/// A `Status` answer, as the API server gives for every failure.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

/// A request's target: the collection, the object's name, and a subresource (`log`).
fn route(path: &str) -> Option<(Collection, Option<String>, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(namespace.to_string()), rest),
        rest => (None, rest),
    };
    let collection = |resource: &str| (group_version.clone(), resource.to_string(), namespace.clone());
    match rest {
        [resource] => Some((collection(resource), None, None)),
        [resource, name] => Some((collection(resource), Some(name.to_string()), None)),
        [resource, name, sub] => Some((collection(resource), Some(name.to_string()), Some(sub.to_string()))),
        _ => None,
    }
}

/// The value at a dotted field path (`status.phase`), as text.
fn field(object: &Value, path: &str) -> String {
    let value = path.split('.').fold(object, |value, part| &value[part]);
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether `object` matches a selector (`a=b,c!=d,e,!f`) read from `get` (labels or fields).
fn matches(selector: &str, get: &dyn Fn(&str) -> Option<String>) -> bool {
    selector.split(',').filter(|term| !term.is_empty()).all(|term| {
        if let Some((key, value)) = term.split_once("!=") {
            get(key.trim()).as_deref() != Some(value.trim())
        } else if let Some((key, value)) = term.split_once('=') {
            get(key.trim()).as_deref() == Some(value.trim_start_matches('=').trim())
        } else if let Some(key) = term.strip_prefix('!') {
            get(key.trim()).is_none()
        } else {
            get(term.trim()).is_some()
        }
    })
}

/// Whether `object` matches the request's label and field selectors.
fn selected(object: &Value, query: &BTreeMap<String, String>) -> bool {
    let labels = query.get("labelSelector").map(String::as_str).unwrap_or_default();
    let fields = query.get("fieldSelector").map(String::as_str).unwrap_or_default();
    matches(labels, &|key| object["metadata"]["labels"][key].as_str().map(str::to_string))
        && matches(fields, &|key| Some(field(object, key)))
}

fn in_collection(candidate: &Collection, wanted: &Collection) -> bool {
    candidate.0 == wanted.0 && candidate.1 == wanted.1 && (wanted.2.is_none() || candidate.2 == wanted.2)
}

async fn handle(
    State(shared): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock().expect("fake state");
    if !authorized(&state, &headers) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into());
    }
    if uri.path() == "/version" {
        let version = state.git_version.clone();
        let minor = version.split('.').nth(1).unwrap_or_default().to_string();
        return axum::Json(json!({"major": "1", "minor": minor, "gitVersion": version, "gitCommit": "fake",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"}))
        .into_response();
    }
    let Some((collection, name, subresource)) = route(uri.path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {}", uri.path()));
    };
    let resource = collection.1.clone();
    if state.forbidden.contains(&resource) {
        let message =
            format!("{resource} is forbidden: User \"system:serviceaccount:flotilla\" cannot {method} {resource}");
        return status(StatusCode::FORBIDDEN, "Forbidden", message);
    }
    let not_found = |name: &str| status(StatusCode::NOT_FOUND, "NotFound", format!("{resource} \"{name}\" not found"));
    if collection.0 == "metrics.k8s.io/v1beta1" {
        if !state.metrics || resource != "pods" || method != Method::GET {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource".into(),
            );
        }
        return axum::Json(simulate::pod_metrics(&state, collection.2.as_deref(), &query)).into_response();
    }
    match (method, name, subresource) {
        (Method::GET, Some(name), Some(sub)) if sub == "log" => {
            match (state.objects.get(&collection).and_then(|items| items.get(&name)), &state.kubelet) {
                (None, _) => not_found(&name),
                (Some(pod), None) => simulate::log(pod, &query),
                (Some(pod), Some(kubelet)) => match kubelet::log(kubelet, pod, &query) {
                    Some(Ok(response)) => response,
                    Some(Err(message)) => status(StatusCode::BAD_REQUEST, "BadRequest", message),
                    None => status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("container in pod \"{name}\" is waiting to start: ContainerCreating"),
                    ),
                },
            }
        }
        (Method::GET, Some(name), None) => {
            *state.gets.entry(resource.clone()).or_default() += 1;
            match state.objects.get(&collection).and_then(|items| items.get(&name)) {
                Some(object) => axum::Json(object.clone()).into_response(),
                None => not_found(&name),
            }
        }
        (Method::GET, None, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            let since: u64 =
                query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(state.resource_version);
            if since > 0 && state.history.front().is_some_and(|oldest| oldest.resource_version > since + 1) {
                return status(StatusCode::GONE, "Expired", format!("too old resource version: {since}"));
            }
            let backlog: Vec<Change> = state
                .history
                .iter()
                .filter(|c| c.resource_version > since && in_collection(&c.collection, &collection))
                .cloned()
                .collect();
            let receiver = state.changes.subscribe();
            drop(state);
            watch(collection, query, backlog, receiver, since)
        }
        (Method::GET, None, None) => {
            *state.lists.entry(resource.clone()).or_default() += 1;
            let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
            let after = query.get("continue").cloned().unwrap_or_default();
            let mut items: Vec<(String, Value)> = state
                .objects
                .iter()
                .filter(|(c, _)| in_collection(c, &collection))
                .flat_map(|((_, _, ns), objects)| {
                    objects
                        .iter()
                        .map(move |(name, object)| (format!("{}/{name}", ns.clone().unwrap_or_default()), object))
                })
                .filter(|(position, object)| {
                    selected(object, &query) && (after.is_empty() || position.as_str() > after.as_str())
                })
                .map(|(position, object)| (position, object.clone()))
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let more = items.len() > limit;
            items.truncate(limit);
            let mut metadata = json!({"resourceVersion": state.resource_version.to_string()});
            if more && let Some((last, _)) = items.last() {
                metadata["continue"] = json!(last);
            }
            let kind = items.first().and_then(|(_, o)| o["kind"].as_str()).unwrap_or("Object").to_string();
            axum::Json(json!({"apiVersion": collection.0, "kind": format!("{kind}List"), "metadata": metadata,
                "items": items.into_iter().map(|(_, o)| o).collect::<Vec<_>>()}))
            .into_response()
        }
        (Method::POST, None, None) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "the body is not a JSON object".into());
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "metadata.name: Required value".into());
            };
            if state.objects.get(&collection).is_some_and(|items| items.contains_key(&name)) {
                return status(StatusCode::CONFLICT, "AlreadyExists", format!("{resource} \"{name}\" already exists"));
            }
            if let Some(namespace) = &collection.2 {
                object["metadata"]["namespace"] = json!(namespace);
            }
            let stored = state.store(collection, object);
            (StatusCode::CREATED, axum::Json(stored)).into_response()
        }
        (Method::PATCH, Some(name), None) => {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "the body is not JSON".into());
            };
            if content_type.starts_with("application/apply-patch") {
                let Some(manager) = query.get("fieldManager").cloned() else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "fieldManager is required for apply".into());
                };
                if patch["metadata"]["name"].as_str() != Some(name.as_str()) {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "the name in the body differs".into());
                }
                let mut patch = patch;
                if let Some(namespace) = &collection.2 {
                    patch["metadata"]["namespace"] = json!(namespace);
                }
                let existed = state.objects.get(&collection).is_some_and(|items| items.contains_key(&name));
                let stored = state.apply(collection, &name, &manager, patch);
                let code = if existed { StatusCode::OK } else { StatusCode::CREATED };
                (code, axum::Json(stored)).into_response()
            } else if content_type.starts_with("application/merge-patch+json") {
                let Some(mut object) = state.objects.get(&collection).and_then(|items| items.get(&name)).cloned()
                else {
                    return not_found(&name);
                };
                merge(&mut object, &patch);
                axum::Json(state.store(collection, object)).into_response()
            } else {
                status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!("{content_type} is not supported"),
                )
            }
        }
        (Method::DELETE, Some(name), None) => {
            // DeleteOptions' preconditions: the object must still be the one the client saw.
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let live = state.objects.get(&collection).and_then(|items| items.get(&name));
            if let Some(live) = live {
                for field in ["uid", "resourceVersion"] {
                    let wanted = &options["preconditions"][field];
                    if !wanted.is_null() && wanted != &live["metadata"][field] {
                        let message = format!(
                            "Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {}",
                            live["metadata"][field]
                        );
                        return status(StatusCode::CONFLICT, "Conflict", message);
                    }
                }
            }
            match state.remove(&collection, &name) {
                Some(object) => {
                    if collection.1 == "namespaces" {
                        // The namespace controller deletes everything in it.
                        let inside: Vec<(Collection, String)> = state
                            .objects
                            .iter()
                            .filter(|(c, _)| c.2.as_deref() == Some(name.as_str()))
                            .flat_map(|(c, items)| items.keys().map(move |n| (c.clone(), n.clone())))
                            .collect();
                        for (c, n) in inside {
                            state.remove(&c, &n);
                        }
                    }
                    axum::Json(object).into_response()
                }
                None => not_found(&name),
            }
        }
        (Method::DELETE, None, None) => {
            let names: Vec<(Collection, String)> = state
                .objects
                .iter()
                .filter(|(c, _)| in_collection(c, &collection))
                .flat_map(|(c, items)| {
                    items.iter().filter(|(_, o)| selected(o, &query)).map(move |(n, _)| (c.clone(), n.clone()))
                })
                .collect();
            let mut removed = Vec::new();
            for (c, n) in names {
                removed.extend(state.remove(&c, &n));
            }
            axum::Json(json!({"apiVersion": collection.0, "kind": "List", "metadata": {}, "items": removed}))
                .into_response()
        }
        (method, _, _) => {
            status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} is not supported here"))
        }
    }
}

/// A watch response: the backlog after `since`, then changes as they happen, one JSON event
/// per line, for as long as the client listens (or `timeoutSeconds`).
fn watch(
    collection: Collection,
    query: BTreeMap<String, String>,
    backlog: Vec<Change>,
    mut receiver: broadcast::Receiver<Change>,
    since: u64,
) -> Response {
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(300));
    let (sender, events) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    tokio::spawn(async move {
        let line = |change: &Change| {
            let mut text = json!({"type": change.kind, "object": change.object}).to_string();
            text.push('\n');
            Bytes::from(text)
        };
        let mut last = since;
        for change in &backlog {
            if selected(&change.object, &query) && sender.send(Ok(line(change))).await.is_err() {
                return;
            }
            last = change.resource_version;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, receiver.recv()).await;
            let change = match next {
                Ok(Ok(change)) => change,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "Expired", "code": 410, "message": "the watch fell behind"}});
                    let _ = sender.send(Ok(Bytes::from(format!("{gone}\n")))).await;
                    return;
                }
                _ => return,
            };
            if change.resource_version <= last || !in_collection(&change.collection, &collection) {
                continue;
            }
            last = change.resource_version;
            if selected(&change.object, &query) && sender.send(Ok(line(&change))).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_stream(events);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "watch".into()))
}

/// The receiving end of a channel as a stream.
fn futures_stream(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
