//! The route table: every route is added here together with its OpenAPI description, so the
//! router and the served OpenAPI document cannot drift apart (a test also walks the document
//! against the running server).
//!
//! Kind routes are generated from the kind registry: a kind added later gets its collection
//! and item routes, its schema and its documentation without touching this file.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{MethodRouter, delete, get, post, put};
use flotilla_core::kinds::{KindInfo, KindRegistry, Scope};
use serde_json::{Value, json};

use crate::auth::{self, Caller};
use crate::state::AppState;
use crate::{
    access, artifacts, audit, health, images, manifests, objects, operate, registry, replication, repositories, robots,
    templates,
};

/// A documented route.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path template (`{param}`), the same for axum and OpenAPI.
    pub path: String,
    pub operation_id: String,
    pub summary: String,
    pub tag: String,
    /// Whether the route needs a session or an API token.
    pub authenticated: bool,
    /// Schema of the request body, if any.
    pub request: Option<Value>,
    /// Schema of the success response body.
    pub response: Option<Value>,
    /// Success status code.
    pub status: u16,
    /// Query parameters: name and description.
    pub query: Vec<(&'static str, &'static str)>,
}

impl RouteDoc {
    fn new(
        method: &'static str,
        path: impl Into<String>,
        operation_id: impl Into<String>,
        tag: &str,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            method,
            path: path.into(),
            operation_id: operation_id.into(),
            summary: summary.into(),
            tag: tag.to_string(),
            authenticated: true,
            request: None,
            response: None,
            status: 200,
            query: Vec::new(),
        }
    }

    fn public(mut self) -> Self {
        self.authenticated = false;
        self
    }

    fn request(mut self, schema: Value) -> Self {
        self.request = Some(schema);
        self
    }

    fn response(mut self, status: u16, schema: Value) -> Self {
        self.status = status;
        self.response = Some(schema);
        self
    }

    fn no_content(mut self) -> Self {
        self.status = 204;
        self
    }

    fn query(mut self, params: &[(&'static str, &'static str)]) -> Self {
        self.query = params.to_vec();
        self
    }
}

/// Router and documentation, built together.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    pub docs: Vec<RouteDoc>,
}

impl Routes {
    fn add(&mut self, doc: RouteDoc, handler: MethodRouter<AppState>) {
        let router = std::mem::take(&mut self.router);
        self.router = router.route(&doc.path, handler);
        self.docs.push(doc);
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteDoc>) {
        (self.router, self.docs)
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

const LIST_PARAMS: &[(&str, &str)] = &[
    ("labelSelector", "Label selector, e.g. `tier=prod,region in (eu,us),!legacy`"),
    ("q", "Substring of the name"),
    ("sort", "`name` (default), `creationTimestamp` or `updateTimestamp`"),
    ("order", "`asc` (default) or `desc`"),
    ("limit", "Page size (default 100, at most 1000)"),
    ("continue", "The `metadata.continue` token of the previous page"),
];

const AUDIT_PARAMS: &[(&str, &str)] = &[
    ("user", "User name"),
    ("action", "Action, e.g. `create`, `update`, `delete`, `apply`, `login`, `token.create`"),
    ("kind", "Kind of the target object"),
    ("name", "Name of the target object"),
    ("project", "Project of the target object"),
    ("outcome", "`success`, `unchanged`, `denied`, `invalid`, `conflict`, `not-found`, `error`"),
    ("since", "RFC 3339 time or an age (`30m`, `24h`, `7d`)"),
    ("until", "RFC 3339 time or an age"),
    ("limit", "Page size (default 100)"),
    ("cursor", "The `nextCursor` of the previous page"),
];

fn add_kind(routes: &mut Routes, info: &Arc<KindInfo>) {
    let kind = info.kind;
    let plural = info.plural;
    let object = schema_ref(kind);
    let list = json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "metadata": {"type": "object", "properties": {"continue": {"type": "string"}}},
        "items": {"type": "array", "items": object.clone()}}});
    let (collection, item, scope_note) = match info.scope {
        Scope::Global => (format!("/api/v1/{plural}"), format!("/api/v1/{plural}/{{name}}"), ""),
        Scope::Project => (
            format!("/api/v1/projects/{{project}}/{plural}"),
            format!("/api/v1/projects/{{project}}/{plural}/{{name}}"),
            " in a project",
        ),
    };
    let (i1, i2, i3, i4, i5) = (info.clone(), info.clone(), info.clone(), info.clone(), info.clone());
    let scoped = info.scope == Scope::Project;
    let list_handler = move |State(state): State<AppState>,
                             caller: Caller,
                             project: Option<Path<String>>,
                             Query(params): Query<objects::ListParams>| {
        let info = i1.clone();
        async move { objects::list(state, caller, info, project.map(|p| p.0), params).await }
    };
    let create_handler = move |State(state): State<AppState>,
                               caller: Caller,
                               project: Option<Path<String>>,
                               headers: HeaderMap,
                               body: Bytes| {
        let info = i2.clone();
        async move { objects::create(state, caller, info, project.map(|p| p.0), headers, body).await }
    };
    routes.add(
        RouteDoc::new("get", &collection, format!("list{kind}"), kind, format!("List {kind} objects{scope_note}"))
            .query(LIST_PARAMS)
            .response(200, list),
        get(list_handler.clone()),
    );
    routes.add(
        RouteDoc::new("post", &collection, format!("create{kind}"), kind, format!("Create a {kind}{scope_note}"))
            .request(object.clone())
            .response(201, object.clone()),
        post(create_handler),
    );
    if scoped {
        let all_projects = format!("/api/v1/{plural}");
        routes.add(
            RouteDoc::new(
                "get",
                &all_projects,
                format!("list{kind}AllProjects"),
                kind,
                format!("List {kind} objects across the projects the caller may see"),
            )
            .query(&[LIST_PARAMS, &[("project", "Only this project")]].concat())
            .response(200, json!({"type": "object"})),
            get(list_handler),
        );
    }
    let split = move |path: Path<Vec<String>>| -> (Option<String>, String) {
        let mut parts = path.0;
        let name = parts.pop().unwrap_or_default();
        (parts.pop(), name)
    };
    routes.add(
        RouteDoc::new("get", &item, format!("get{kind}"), kind, format!("Get a {kind}")).response(200, object.clone()),
        get(move |State(state): State<AppState>, caller: Caller, path: Path<Vec<String>>| {
            let info = i3.clone();
            let (project, name) = split(path);
            async move { objects::get(state, caller, info, project, name).await }
        }),
    );
    routes.add(
        RouteDoc::new(
            "put",
            &item,
            format!("update{kind}"),
            kind,
            format!("Replace a {kind}; metadata.resourceVersion, when given, must be current (else 409)"),
        )
        .request(object.clone())
        .response(200, object),
        put(
            move |State(state): State<AppState>,
                  caller: Caller,
                  path: Path<Vec<String>>,
                  headers: HeaderMap,
                  body: Bytes| {
                let info = i4.clone();
                let (project, name) = split(path);
                async move { objects::update(state, caller, info, project, name, headers, body).await }
            },
        ),
    );
    routes.add(
        RouteDoc::new("delete", &item, format!("delete{kind}"), kind, format!("Delete a {kind}"))
            .query(&[("resourceVersion", "Refuse (409) unless the object is at this version")])
            .no_content(),
        delete(
            move |State(state): State<AppState>,
                  caller: Caller,
                  path: Path<Vec<String>>,
                  Query(params): Query<objects::DeleteParams>| {
                let info = i5.clone();
                let (project, name) = split(path);
                async move { objects::delete(state, caller, info, project, name, params).await }
            },
        ),
    );
}

/// Every route of the server.
pub fn routes(kinds: &KindRegistry) -> Routes {
    let mut routes = Routes::default();
    routes.add(
        RouteDoc::new("get", "/healthz", "healthz", "health", "Liveness: the process serves requests").public(),
        get(health::healthz),
    );
    routes.add(
        RouteDoc::new("get", "/readyz", "readyz", "health", "Readiness: the store answers").public(),
        get(health::readyz),
    );
    routes.add(
        RouteDoc::new("get", "/metrics", "metrics", "health", "Prometheus metrics (text format)").public(),
        get(health::metrics),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/openapi.json", "openapi", "meta", "This OpenAPI document").public(),
        get(health::openapi),
    );
    routes.add(
        RouteDoc::new(
            "get",
            "/api/v1/kinds",
            "listKinds",
            "meta",
            "The kinds this server knows, with their plural and scope",
        ),
        get(health::kinds),
    );
    routes.add(
        RouteDoc::new("post", "/api/v1/auth/login", "login", "auth", "Log in: `mode: session` sets an HttpOnly cookie and returns the CSRF token; `mode: token` returns an API token")
            .public()
            .request(schema_ref("LoginRequest"))
            .response(200, json!({"type": "object"})),
        post(auth::login),
    );
    routes.add(
        RouteDoc::new(
            "post",
            "/api/v1/auth/logout",
            "logout",
            "auth",
            "End the session (or revoke the token) of this request",
        )
        .no_content(),
        post(auth::logout),
    );
    routes.add(
        RouteDoc::new(
            "get",
            "/api/v1/auth/whoami",
            "whoami",
            "auth",
            "The caller, its grants, and (for sessions) the CSRF token",
        )
        .response(200, json!({"type": "object"})),
        get(auth::whoami),
    );
    routes.add(
        RouteDoc::new(
            "get",
            "/api/v1/auth/can",
            "canI",
            "auth",
            "Whether the caller may do a verb on a kind (in a project, environment, by name), as the same policy would decide the request",
        )
        .query(&[
            ("verb", "get, list, create, update or delete"),
            ("kind", "A kind or its plural"),
            ("project", "The project"),
            ("environment", "The environment"),
            ("name", "The object's name"),
        ])
        .response(200, serde_json::to_value(schemars::schema_for!(access::AccessAnswer)).unwrap_or_default()),
        get(access::can),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/tokens", "listTokens", "auth", "The caller's API tokens (never their secrets)")
            .response(200, json!({"type": "object"})),
        get(auth::list_tokens),
    );
    routes.add(
        RouteDoc::new("post", "/api/v1/tokens", "createToken", "auth", "Create an API token of the caller; the token is shown once")
            .request(json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "ttlDays": {"type": "integer"}}}))
            .response(201, json!({"type": "object"})),
        post(auth::create_token),
    );
    routes.add(
        RouteDoc::new("delete", "/api/v1/tokens/{id}", "revokeToken", "auth", "Revoke one of the caller's API tokens")
            .no_content(),
        delete(auth::revoke_token),
    );
    routes.add(
        RouteDoc::new("put", "/api/v1/users/{name}/password", "setPassword", "auth", "Change one's own password (with currentPassword) or, as admin, anyone's")
            .request(json!({"type": "object", "required": ["newPassword"], "properties": {"currentPassword": {"type": "string"}, "newPassword": {"type": "string"}}}))
            .no_content(),
        put(auth::set_password),
    );
    routes.add(
        RouteDoc::new(
            "post",
            "/api/v1/apply",
            "apply",
            "objects",
            "Create or update every document of a YAML/JSON stream, in order",
        )
        .request(json!({"type": "string", "description": "YAML documents separated by ---, or JSON"}))
        .response(200, json!({"type": "object"})),
        post(objects::apply).layer(DefaultBodyLimit::max(16 * 1024 * 1024)),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/audit", "queryAudit", "audit", "Audit records, newest first")
            .query(AUDIT_PARAMS)
            .response(200, json!({"type": "object"})),
        get(audit::query),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/audit/records/{seq}", "getAuditRecord", "audit", "One audit record")
            .response(200, json!({"type": "object"})),
        get(audit::record),
    );
    routes.add(
        RouteDoc::new(
            "get",
            "/api/v1/audit/export",
            "exportAudit",
            "audit",
            "Matching audit records as CSV, oldest first",
        )
        .query(AUDIT_PARAMS),
        get(audit::export),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/audit/summary", "auditSummary", "audit", "Counts by user, action or day")
            .query(&[AUDIT_PARAMS, &[("by", "`user` (default), `action` or `day`")]].concat())
            .response(200, json!({"type": "object"})),
        get(audit::summary),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/audit/verify", "verifyAudit", "audit", "Verify the audit hash chain")
            .response(200, json!({"type": "object"})),
        get(audit::verify),
    );
    for info in kinds.iter() {
        add_kind(&mut routes, info);
    }
    add_operations(&mut routes);
    add_delivery(&mut routes);
    routes
}

/// Logs, exec and metrics of running applications; image imports into clusters.
fn add_operations(routes: &mut Routes) {
    routes.add(
        RouteDoc::new("post", "/api/v1/clusters/{name}/images", "importImages", "operations", "Load the images of an OCI or Docker image archive (the request body) into the cluster; platform admins; audited")
            .request(json!({"type": "string", "format": "binary", "description": "an OCI or Docker image archive (tar)"}))
            .response(200, json!({"type": "object", "properties": {"cluster": {"type": "string"}, "images": {"type": "array", "items": {"type": "string"}}}})),
        post(images::import).layer(DefaultBodyLimit::disable()),
    );
    let app = "/api/v1/projects/{project}/applications/{name}";
    routes.add(
        RouteDoc::new("get", format!("{app}/logs"), "applicationLogs", "operations", "The application's log lines as NDJSON (`timeMicros`, `instance`, `stream`, `text`), oldest first; with `follow`, new lines as they are written")
            .query(&[
                ("component", "Only this component's instances"),
                ("instance", "Only this instance"),
                ("follow", "`true`: keep streaming new lines"),
                ("since", "Lines since this long ago (`30s`, `10m`, `2h`, `1d`) or this RFC 3339 time"),
                ("tail", "The last N lines of each instance"),
            ]),
        get(operate::logs),
    );
    routes.add(
        RouteDoc::new("post", format!("{app}/exec"), "applicationExec", "operations", "Run a command in a running instance (audited; needs the right to change the application)")
            .request(serde_json::to_value(schemars::schema_for!(operate::ExecRequest)).unwrap_or_default())
            .response(200, json!({"type": "object", "properties": {"exitCode": {"type": "integer"}, "stdout": {"type": "string"}, "stderr": {"type": "string"}}})),
        post(operate::exec),
    );
    routes.add(
        RouteDoc::new(
            "get",
            format!("{app}/metrics"),
            "applicationMetrics",
            "operations",
            "CPU time, memory, network and disk counters of each instance, now",
        )
        .response(200, json!({"type": "object", "properties": {"items": {"type": "array"}}})),
        get(operate::metrics),
    );
    routes.add(
        RouteDoc::new("get", format!("{app}/manifests"), "applicationManifests", "operations", "The Kubernetes objects the application becomes on a Kubernetes cluster (Secret values redacted), with what that cluster cannot honour as asked")
            .query(&[("cluster", "The Kubernetes cluster (default: the first of the application's environment)")])
            .response(200, json!({"type": "object", "properties": {"cluster": {"type": "string"}, "namespace": {"type": "string"}, "revision": {"type": "integer"}, "objects": {"type": "array"}, "warnings": {"type": "array", "items": {"type": "string"}}}})),
        get(manifests::manifests),
    );
    routes.add(
        RouteDoc::new("get", "/metrics/instances", "instanceMetrics", "operations", "Every instance's CPU, memory, network and disk counters in the Prometheus text format (platform admins and auditors)"),
        get(operate::instance_metrics),
    );
}

/// The delivery center's REST routes (the registry itself is served at `/v2/`).
fn add_delivery(routes: &mut Routes) {
    routes.add(
        RouteDoc::new("post", "/api/v1/projects/{project}/robots/{name}/secret", "issueRobotSecret", "delivery", "Issue a new secret for a robot account (shown once; earlier secrets stop working); needs the right to change the Robot; audited")
            .response(201, json!({"type": "object", "properties": {"account": {"type": "string"}, "secret": {"type": "string"}, "tokenId": {"type": "string"}, "expiresAt": {"type": "string"}}})),
        post(robots::issue_secret),
    );
    routes.add(
        RouteDoc::new("post", "/api/v1/registry/gc", "registryGc", "delivery", "Apply the projects' retention rules, then delete the blobs nothing references (platform admins; audited)")
            .request(json!({"type": "object", "properties": {"retention": {"type": "boolean"}, "graceSecs": {"type": "integer"}}}))
            .response(200, json!({"type": "object", "properties": {"retention": {"type": ["object", "null"]}, "gc": {"type": "object"}}})),
        post(registry::run_gc),
    );
    let paging: &[(&str, &str)] =
        &[("limit", "Page size (default 100, at most 1000)"), ("continue", "The `continue` of the previous page")];
    routes.add(
        RouteDoc::new("get", "/api/v1/projects/{project}/repositories", "listRepositories", "delivery", "The project's registry repositories, by name (needs any role in the project)")
            .query(&[paging, &[("q", "Substring of the name")]].concat())
            .response(200, json!({"type": "object", "properties": {"items": {"type": "array"}, "continue": {"type": ["string", "null"]}}})),
        get(repositories::list),
    );
    routes.add(
        RouteDoc::new("get", "/api/v1/projects/{project}/repositories/{repository}/versions", "listRepositoryVersions", "delivery", "A repository's versions, newest push first: digest, tags, size, pushing user and time, and the applications running each (the repository path inside the project, slashes encoded as %2F)")
            .query(paging)
            .response(200, json!({"type": "object", "properties": {"repository": {"type": "object"}, "items": {"type": "array"}, "continue": {"type": ["string", "null"]}}})),
        get(repositories::versions),
    );
    let instantiate = serde_json::to_value(schemars::schema_for!(templates::InstantiateRequest)).unwrap_or_default();
    let made = json!({"type": "object", "description": "the Application created (201), or rendered (200, dryRun)"});
    routes.add(
        RouteDoc::new("post", "/api/v1/projects/{project}/templates/{name}/instantiate", "instantiateTemplate", "delivery", "Create an Application from a version of the project's template with parameter values (errors at values.<parameter> or spec.<field>); dryRun renders only")
            .request(instantiate.clone())
            .response(201, made.clone()),
        post(templates::instantiate_project_template),
    );
    routes.add(
        RouteDoc::new(
            "post",
            "/api/v1/platformtemplates/{name}/instantiate",
            "instantiatePlatformTemplate",
            "delivery",
            "Create an Application in the project the body names from a version of a platform template",
        )
        .request(instantiate)
        .response(201, made),
        post(templates::instantiate_platform_template),
    );
    routes.add(
        RouteDoc::new("post", "/api/v1/projects/{project}/applications/{name}/save-as-template", "saveApplicationAsTemplate", "delivery", "Save the application's spec as a new version of a template (created when missing); each NAME=PATH parameter replaces that field, its value the default")
            .request(serde_json::to_value(schemars::schema_for!(templates::SaveRequest)).unwrap_or_default())
            .response(201, json!({"type": "object", "description": "the Template (201 created, 200 a version added)"})),
        post(templates::save_application),
    );
    routes.add(
        RouteDoc::new("post", "/api/v1/projects/{project}/replicationrules/{name}/run", "runReplicationRule", "delivery", "Run a replication rule now and answer what it copied (needs the right to change the rule; audited as replication.run)")
            .response(200, json!({"type": "object", "properties": {"tags": {"type": "integer"}, "unchanged": {"type": "integer"}, "manifests": {"type": "integer"}, "blobs": {"type": "integer"}, "bytes": {"type": "integer"}, "failures": {"type": "array", "items": {"type": "string"}}}})),
        post(replication::run_now),
    );
    let artifact = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{version}";
    routes.add(
        RouteDoc::new("put", artifact, "uploadArtifact", "delivery", "Store a file (the body) as version {version} of a repository, an OCI artifact (needs the right to push; audited as a push)")
            .query(&[("filename", "The file's name, given back on download"), ("type", "The artifact type (a media type); application/vnd.flotilla.file.v1 when left out")])
            .request(json!({"type": "string", "format": "binary"}))
            .response(201, json!({"type": "object", "properties": {"digest": {"type": "string"}, "sha256": {"type": "string"}, "size": {"type": "integer"}}})),
        put(artifacts::upload).layer(DefaultBodyLimit::disable()),
    );
    routes.add(
        RouteDoc::new("get", artifact, "downloadArtifact", "delivery", "The file of a version, with its name (Content-Disposition) and SHA-256 (X-Checksum-Sha256); needs the right to pull; audited"),
        get(artifacts::download),
    );
}
