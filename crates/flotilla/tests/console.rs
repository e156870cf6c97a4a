//! The web console end to end in a real browser: the server (with its embedded runtime and
//! the console built into it) is prepared here, then `console/e2e/console.test.mjs` drives
//! Debian's Chromium through playwright-core: log in, the clusters page, an application
//! created from the form (a missing image refused at its field), watched until ready,
//! found by search, scaled, its logs read and searched, its metrics charted, rolled back,
//! restarted, the rollback's audit
//! record and diff found (and exported as CSV), a template instantiated through its schema
//! form (a value out of range refused at its parameter), an API token made, used and
//! revoked, a repository and its version in the delivery center, an application deleted
//! after its name is typed, a session ended on the server bringing back the login page,
//! YAML refused with each error at its line, the language switched, logging out, and a viewer of the project offered no
//! action that would change anything (the API refusing them anyway). Screenshots go to
//! `$FLOTILLA_CONSOLE_SCREENSHOTS` (an absolute path; the committed ones are in docs/console,
//! see its README), else under the target directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

const VIEWER_PASSWORD: &str = "viewer test password";

/// A template of a web component: image, replicas (at least 1) and a greeting to choose.
fn web_template(project: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "flotilla.io/v1", "kind": "Template",
        "metadata": {"name": "web-template", "project": project},
        "spec": {"description": "A web server on port 8080", "versions": [{"version": "1.0",
            "parameters": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "description": "the image to run"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 2},
                "greeting": {"type": "string", "enum": ["hello", "bonjour"], "default": "hello"}}},
            "application": {"environment": "test", "components": [{"name": "web", "image": "${image}",
                "replicas": "${replicas}", "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                "env": [{"name": "GREETING", "value": "${greeting}"}], "ports": [{"name": "http", "port": 8080}],
                "probes": {"readiness": {"http": {"port": 8080, "path": "/"}, "periodSeconds": 1}}}]}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_drives_the_platform_in_chromium() {
    let console = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../console");
    assert!(
        console.join("node_modules/playwright-core").exists(),
        "console/node_modules is missing: scripts/test (or scripts/build-console) installs it"
    );
    assert!(flotilla_console::is_built(), "the server was built without the console: run scripts/build-console first");
    let screenshots = std::env::var("FLOTILLA_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    with_server_dir(move |dir, socket, short| async move {
        let (mut server, admin, project) = prepare(&dir, &socket, &short).await;
        admin.create("templates", Some(&project), &web_template(&project)).await.expect("the template");
        // An artifact in the registry: a repository with a version for the delivery center.
        let bundle = dir.join("release.sql");
        std::fs::write(&bundle, "create table orders (id bigint primary key);\n").unwrap();
        admin.upload_artifact(&project, "sql/release", "1.0.0", &bundle, None).await.expect("the artifact");
        // A viewer of the project: sees, is offered nothing to change.
        let user = serde_json::json!({"apiVersion": "flotilla.io/v1", "kind": "User", "metadata": {"name": "vera"}, "spec": {}});
        admin.create("users", None, &user).await.expect("the viewer");
        admin.set_password("vera", None, VIEWER_PASSWORD).await.expect("the viewer's password");
        let binding = serde_json::json!({"apiVersion": "flotilla.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "vera-viewer"}, "spec": {"user": "vera", "role": "viewer", "project": project}});
        admin.create("rolebindings", None, &binding).await.expect("the viewer's binding");
        let status = Command::new("node")
            .args(["--test", "--test-concurrency=1", "e2e/console.test.mjs"])
            .current_dir(&console)
            .env("FLOTILLA_URL", admin.base())
            .env("FLOTILLA_PASSWORD", PASSWORD)
            .env("FLOTILLA_VIEWER", "vera")
            .env("FLOTILLA_VIEWER_PASSWORD", VIEWER_PASSWORD)
            .env("FLOTILLA_PROJECT", &project)
            .env("FLOTILLA_IMAGE", IMAGE)
            .env("SCREENSHOT_DIR", &screenshots)
            .status()
            .expect("node runs");
        terminate(&mut server);
        assert!(status.success(), "the console's end-to-end steps failed (their output is above)");
    })
    .await;
}
