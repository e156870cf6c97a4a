//! A fake Kubernetes API server, in process, for tests: no API server can be installed on
//! the machines the tests run on, and `kube-fake-client` does not follow current kube.
//!
//! It speaks the API's HTTP conventions for the verbs the driver uses: `/version`; get and
//! list (label and field selectors, `limit` and `continue` paging) of any resource under
//! `/api/v1` and `/apis/{group}/{version}`, cluster-scoped or namespaced; create and
//! delete; bearer-token authentication (401) and per-resource denial (403), answered as
//! `Status` objects the way the real server answers them. Objects are plain JSON, stored by
//! group/version, resource, namespace and name, each write taking the next
//! `resourceVersion`. It grows with the driver: every verb the driver gains is added here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Where an object lives: group/version (`v1`, `apps/v1`), resource (plural), namespace.
type Collection = (String, String, Option<String>);

#[derive(Default)]
struct FakeState {
    token: String,
    git_version: String,
    objects: BTreeMap<Collection, BTreeMap<String, Value>>,
    resource_version: u64,
    /// Resources the token may not touch (answered 403).
    forbidden: BTreeSet<String>,
}

/// A running fake API server on a loopback port.
pub struct FakeApiServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
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

impl FakeApiServer {
    /// Starts a server that accepts `token` and reports Kubernetes `git_version`.
    pub async fn start(token: &str, git_version: &str) -> FakeApiServer {
        let state = Arc::new(Mutex::new(FakeState {
            token: token.to_string(),
            git_version: git_version.to_string(),
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { url, state, task }
    }

    /// Stores `object` (with `apiVersion`, `kind`, `metadata.name`, and `metadata.namespace`
    /// when namespaced) as if created through the API.
    pub fn insert(&self, object: Value) {
        let mut state = self.state.lock().expect("fake state");
        let collection = (
            object["apiVersion"].as_str().expect("apiVersion").to_string(),
            plural(object["kind"].as_str().expect("kind")),
            object["metadata"]["namespace"].as_str().map(str::to_string),
        );
        state.store(collection, object);
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

    /// A client configuration (YAML kubeconfig) for this server with `token`.
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            self.url
        )
    }
}

impl FakeState {
    fn store(&mut self, collection: Collection, mut object: Value) -> Value {
        self.resource_version += 1;
        let name = object["metadata"]["name"].as_str().expect("metadata.name").to_string();
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{}", self.resource_version));
        }
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        self.objects.entry(collection).or_default().insert(name, object.clone());
        object
    }
}

/// A `Status` answer, as the API server gives for every failure.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

/// A request's target: the collection, and the object's name for a single-object verb.
fn route(path: &str) -> Option<(Collection, Option<String>)> {
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
    match rest {
        [resource] => Some(((group_version, resource.to_string(), namespace), None)),
        [resource, name] => Some(((group_version, resource.to_string(), namespace), Some(name.to_string()))),
        _ => None,
    }
}

/// The value at a dotted field path (`status.phase`), as text.
fn field(object: &Value, path: &str) -> String {
    let value = path.split('.').fold(object, |value, part| &value[part]);
    value.as_str().map(str::to_string).unwrap_or_default()
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

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().expect("fake state");
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == state.token);
    if !authorized {
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
    let Some(((group_version, resource, namespace), name)) = route(uri.path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {}", uri.path()));
    };
    if state.forbidden.contains(&resource) {
        let message =
            format!("{resource} is forbidden: User \"system:serviceaccount:flotilla\" cannot {method} {resource}");
        return status(StatusCode::FORBIDDEN, "Forbidden", message);
    }
    let collection = (group_version.clone(), resource.clone(), namespace.clone());
    match (method, name) {
        (Method::GET, Some(name)) => match state.objects.get(&collection).and_then(|items| items.get(&name)) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => status(StatusCode::NOT_FOUND, "NotFound", format!("{resource} \"{name}\" not found")),
        },
        (Method::GET, None) => {
            let labels = query.get("labelSelector").cloned().unwrap_or_default();
            let fields = query.get("fieldSelector").cloned().unwrap_or_default();
            let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
            let after = query.get("continue").cloned().unwrap_or_default();
            let mut items: Vec<(String, Value)> = state
                .objects
                .iter()
                .filter(|((gv, r, ns), _)| {
                    gv == &group_version && r == &resource && (namespace.is_none() || ns == &namespace)
                })
                .flat_map(|((_, _, ns), objects)| {
                    objects
                        .iter()
                        .map(move |(name, object)| (format!("{}/{name}", ns.clone().unwrap_or_default()), object))
                })
                .filter(|(_, object)| {
                    matches(&labels, &|key| object["metadata"]["labels"][key].as_str().map(str::to_string))
                        && matches(&fields, &|key| Some(field(object, key)))
                })
                .filter(|(position, _)| after.is_empty() || position.as_str() > after.as_str())
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
            axum::Json(json!({"apiVersion": group_version, "kind": format!("{kind}List"), "metadata": metadata,
                "items": items.into_iter().map(|(_, o)| o).collect::<Vec<_>>()}))
            .into_response()
        }
        (Method::POST, None) => {
            let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "the body is not a JSON object".into());
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "metadata.name: Required value".into());
            };
            if state.objects.get(&collection).is_some_and(|items| items.contains_key(&name)) {
                return status(StatusCode::CONFLICT, "AlreadyExists", format!("{resource} \"{name}\" already exists"));
            }
            if let Some(namespace) = &namespace {
                object["metadata"]["namespace"] = json!(namespace);
            }
            let stored = state.store(collection, object);
            (StatusCode::CREATED, axum::Json(stored)).into_response()
        }
        (Method::DELETE, Some(name)) => {
            match state.objects.get_mut(&collection).and_then(|items| items.remove(&name)) {
                Some(object) => axum::Json(object).into_response(),
                None => status(StatusCode::NOT_FOUND, "NotFound", format!("{resource} \"{name}\" not found")),
            }
        }
        (method, _) => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} is not supported")),
    }
}
