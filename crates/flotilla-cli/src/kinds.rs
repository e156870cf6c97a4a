//! Kinds as the user types them (`ws`, `workspaces`, `Workspace`) resolved against the kinds
//! the server knows, and the table columns of each kind.

use flotilla_client::KindDescription;
use serde_json::Value;

use crate::error::CliError;
use crate::output::{Table, age_since};

/// Short aliases: alias, kind (lower case).
const ALIASES: &[(&str, &str)] = &[
    ("ws", "workspace"),
    ("env", "environment"),
    ("envs", "environment"),
    ("rb", "rolebinding"),
    ("rbs", "rolebinding"),
    ("proj", "project"),
    ("projs", "project"),
    ("app", "application"),
    ("apps", "application"),
    ("rev", "applicationrevision"),
    ("revs", "applicationrevision"),
];

/// Finds a kind by name (any case), plural, singular lower case, or short alias.
pub fn resolve<'k>(kinds: &'k [KindDescription], input: &str) -> Result<&'k KindDescription, CliError> {
    let lower = input.trim().to_ascii_lowercase();
    let wanted = ALIASES.iter().find(|(alias, _)| *alias == lower).map(|(_, kind)| *kind).unwrap_or(&lower);
    kinds
        .iter()
        .find(|k| k.kind.to_ascii_lowercase() == wanted || k.plural.to_ascii_lowercase() == wanted)
        .ok_or_else(|| CliError::UnknownKind { kind: input.to_string(), known: known_kinds(kinds) })
}

/// One line per kind: `  Workspace (workspaces, ws)`.
fn known_kinds(kinds: &[KindDescription]) -> String {
    let mut lines: Vec<String> = kinds
        .iter()
        .map(|k| {
            let lower = k.kind.to_ascii_lowercase();
            let mut names = vec![k.plural.clone()];
            names.extend(ALIASES.iter().filter(|(_, kind)| *kind == lower).map(|(alias, _)| alias.to_string()));
            format!("  {} ({})", k.kind, names.join(", "))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

pub fn is_project_scoped(kind: &KindDescription) -> bool {
    kind.scope == "project"
}

/// `workspace/retail`, or `environment/shop/prod` for project-scoped objects.
pub fn object_ref(kind: &str, project: Option<&str>, name: &str) -> String {
    match project {
        Some(project) => format!("{}/{project}/{name}", kind.to_ascii_lowercase()),
        None => format!("{}/{name}", kind.to_ascii_lowercase()),
    }
}

fn text(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// Where a role binding (or a grant) applies: `platform`, `workspace/retail`,
/// `project/shop`, `project/shop (test,staging)`.
pub fn scope_text(spec: &Value) -> String {
    let environments = match spec.get("environments").and_then(Value::as_array) {
        Some(list) => {
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            format!(" ({})", names.join(","))
        }
        None => String::new(),
    };
    match (spec.get("workspace").and_then(Value::as_str), spec.get("project").and_then(Value::as_str)) {
        (_, Some(project)) => format!("project/{project}{environments}"),
        (Some(workspace), None) => format!("workspace/{workspace}"),
        (None, None) => "platform".to_string(),
    }
}

fn labels(object: &Value) -> String {
    match object.pointer("/metadata/labels").and_then(Value::as_object) {
        Some(map) if !map.is_empty() => {
            map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".to_string(),
    }
}

/// Computes a kind's own cells of one object.
type Cells = fn(&Value) -> Vec<String>;

/// The kind-specific columns: headers and cell values.
fn kind_columns(kind: &str) -> (&'static [&'static str], Cells) {
    match kind {
        "Workspace" => (&["DISPLAY NAME"], |o| vec![text(o, "/spec/displayName")]),
        "Project" => (&["WORKSPACE"], |o| vec![text(o, "/spec/workspace")]),
        "Environment" => (&["TIER", "CLUSTERS"], |o| vec![text(o, "/spec/tier"), text(o, "/spec/clusters")]),
        "Cluster" => (&["TYPE", "LABELS"], |o| vec![text(o, "/spec/type"), labels(o)]),
        "User" => (&["DISPLAY NAME", "EMAIL", "DISABLED"], |o| {
            let disabled = o.pointer("/spec/disabled").and_then(Value::as_bool).unwrap_or(false);
            vec![text(o, "/spec/displayName"), text(o, "/spec/email"), disabled.to_string()]
        }),
        "RoleBinding" => (&["USER", "ROLE", "SCOPE"], |o| {
            let spec = o.get("spec").cloned().unwrap_or(Value::Null);
            vec![text(o, "/spec/user"), text(o, "/spec/role"), scope_text(&spec)]
        }),
        "Application" => (&["ENVIRONMENT", "READY", "REVISION", "STATUS"], application_cells),
        "Secret" => (&["ENVIRONMENT", "KEYS"], |o| {
            let keys = o.pointer("/spec/data").and_then(Value::as_object).map_or(0, |d| d.len());
            vec![text(o, "/spec/environment"), keys.to_string()]
        }),
        "ApplicationRevision" => (&["APPLICATION", "REVISION", "CAUSE"], |o| {
            vec![text(o, "/spec/application"), text(o, "/spec/revision"), text(o, "/spec/cause")]
        }),
        _ => (&[], |_| Vec::new()),
    }
}

/// An application's environment, ready/desired instances, the revision the cluster runs and
/// where its rollout stands (as the cluster reports it).
fn application_cells(object: &Value) -> Vec<String> {
    let components = object.pointer("/status/components").and_then(Value::as_array).cloned().unwrap_or_default();
    let count = |name: &str| components.iter().filter_map(|c| c.get(name).and_then(Value::as_u64)).sum::<u64>();
    let phases: Vec<&str> = components.iter().filter_map(|c| c.get("phase").and_then(Value::as_str)).collect();
    let (ready, revision, status) = if object.pointer("/status/revision").is_none() {
        ("-".to_string(), "-".to_string(), "NotRunning".to_string())
    } else {
        let status = if phases.contains(&"deadlineExceeded") {
            "DeadlineExceeded"
        } else if phases.iter().all(|p| *p == "complete") {
            "Running"
        } else {
            "Progressing"
        };
        (format!("{}/{}", count("ready"), count("desired")), text(object, "/status/revision"), status.to_string())
    };
    vec![text(object, "/spec/environment"), ready, revision, status]
}

/// The table of objects of one kind: NAME, PROJECT (project-scoped kinds), the kind's own
/// columns, AGE.
pub fn object_table(kind: &KindDescription, objects: &[Value], now: jiff::Timestamp) -> Table {
    let scoped = is_project_scoped(kind);
    let (extra_headers, extra) = kind_columns(&kind.kind);
    let mut headers = vec!["NAME"];
    if scoped {
        headers.push("PROJECT");
    }
    headers.extend_from_slice(extra_headers);
    headers.push("AGE");
    let mut table = Table::new(headers);
    for object in objects {
        let mut cells = vec![text(object, "/metadata/name")];
        if scoped {
            cells.push(text(object, "/metadata/project"));
        }
        cells.extend(extra(object));
        cells.push(age_since(object.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now));
        table.row(cells);
    }
    table
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn applications_show_where_they_stand() {
        let app = |status: Value| json!({"spec": {"environment": "prod"}, "status": status});
        assert_eq!(application_cells(&app(json!({}))), vec!["prod", "-", "-", "NotRunning"]);
        let running = app(json!({"revision": 4, "components": [
            {"ready": 3, "desired": 3, "phase": "complete"}, {"ready": 1, "desired": 1, "phase": "complete"}]}));
        assert_eq!(application_cells(&running), vec!["prod", "4/4", "4", "Running"]);
        let stuck =
            app(json!({"revision": 5, "components": [{"ready": 2, "desired": 3, "phase": "deadlineExceeded"}]}));
        assert_eq!(application_cells(&stuck)[3], "DeadlineExceeded");
    }

    fn kinds() -> Vec<KindDescription> {
        [
            ("Workspace", "workspaces", "global"),
            ("Project", "projects", "global"),
            ("Environment", "environments", "project"),
            ("Cluster", "clusters", "global"),
            ("User", "users", "global"),
            ("RoleBinding", "rolebindings", "global"),
        ]
        .into_iter()
        .map(|(kind, plural, scope)| KindDescription { kind: kind.into(), plural: plural.into(), scope: scope.into() })
        .collect()
    }

    #[test]
    fn resolves_names_plurals_and_aliases() {
        let kinds = kinds();
        for (input, expected) in [
            ("workspace", "Workspace"),
            ("workspaces", "Workspace"),
            ("Workspace", "Workspace"),
            ("WORKSPACES", "Workspace"),
            ("ws", "Workspace"),
            ("env", "Environment"),
            ("envs", "Environment"),
            ("environments", "Environment"),
            ("rb", "RoleBinding"),
            ("rolebinding", "RoleBinding"),
            ("RoleBindings", "RoleBinding"),
            ("proj", "Project"),
            ("user", "User"),
            ("clusters", "Cluster"),
        ] {
            assert_eq!(resolve(&kinds, input).unwrap().kind, expected, "{input}");
        }
        let error = resolve(&kinds, "pods").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let text = error.to_string();
        assert!(text.starts_with("unknown kind \"pods\"; known kinds:\n"), "{text}");
        assert!(text.contains("  Workspace (workspaces, ws)"), "{text}");
        assert!(text.contains("  Environment (environments, env, envs)"), "{text}");
    }

    #[test]
    fn tables_have_kind_specific_columns() {
        let now: jiff::Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        let kinds = kinds();
        let envs = vec![json!({
            "kind": "Environment",
            "metadata": {"name": "prod", "project": "shop", "creationTimestamp": "2026-01-09T22:00:00Z"},
            "spec": {"tier": "prod", "clusters": ["east", "west"]}
        })];
        assert_eq!(
            object_table(&kinds[2], &envs, now).render(),
            "NAME   PROJECT   TIER   CLUSTERS    AGE\nprod   shop      prod   east,west   2h\n"
        );
        let bindings = vec![
            json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-06T00:00:00Z"}, "spec": {"user": "alice", "role": "admin"}}),
            json!({"metadata": {"name": "b", "creationTimestamp": "2026-01-09T23:59:55Z"}, "spec": {"user": "bob", "role": "developer", "project": "shop", "environments": ["test", "staging"]}}),
            json!({"metadata": {"name": "c"}, "spec": {"user": "carol", "role": "workspace-admin", "workspace": "retail"}}),
        ];
        assert_eq!(
            object_table(&kinds[5], &bindings, now).render(),
            "NAME   USER    ROLE              SCOPE                         AGE\n\
             a      alice   admin             platform                      4d\n\
             b      bob     developer         project/shop (test,staging)   5s\n\
             c      carol   workspace-admin   workspace/retail              <unknown>\n"
        );
        let clusters = vec![
            json!({"metadata": {"name": "local", "labels": {"region": "eu", "tier": "prod"}, "creationTimestamp": "2026-01-09T23:57:00Z"}, "spec": {"type": "local"}}),
        ];
        assert_eq!(
            object_table(&kinds[3], &clusters, now).render(),
            "NAME    TYPE    LABELS                AGE\nlocal   local   region=eu,tier=prod   3m\n"
        );
        let users = vec![
            json!({"metadata": {"name": "bob"}, "spec": {"displayName": "Bob B", "email": "bob@example.com", "disabled": true}}),
        ];
        assert!(
            object_table(&kinds[4], &users, now)
                .render()
                .contains("bob    Bob B          bob@example.com   true       <unknown>")
        );
        let unknown = KindDescription { kind: "Gadget".into(), plural: "gadgets".into(), scope: "project".into() };
        assert_eq!(
            object_table(&unknown, &[json!({"metadata": {"name": "g", "project": "p"}})], now).render(),
            "NAME   PROJECT   AGE\ng      p         <unknown>\n"
        );
        assert_eq!(object_ref("Environment", Some("shop"), "prod"), "environment/shop/prod");
        assert_eq!(object_ref("Workspace", None, "retail"), "workspace/retail");
    }
}
