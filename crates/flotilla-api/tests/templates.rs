//! Templates over the API: a project's template and a platform template instantiated into
//! Applications, values checked against the parameter schema with their paths, dry runs,
//! and the caller's rights.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use serde_json::{Value, json};
use support::TestServer;

fn template(kind: &str, project: Option<&str>) -> Value {
    let mut metadata = json!({"name": "web-service"});
    if let Some(project) = project {
        metadata["project"] = json!(project);
    }
    json!({"apiVersion": "flotilla.io/v1", "kind": kind, "metadata": metadata, "spec": {
    "description": "a web service behind one port",
    "versions": [
        {"version": "1.0", "parameters": {"type": "object", "required": ["image"], "properties": {"image": {"type": "string"}}},
         "application": {"environment": "test", "components": [{"name": "web", "image": "${image}"}]}},
        {"version": "2.0", "parameters": {"type": "object", "additionalProperties": false, "required": ["image"], "properties": {
            "image": {"type": "string", "description": "the image to run"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 20, "default": 2},
            "environment": {"type": "string", "enum": ["test", "prod"], "default": "test"}}},
         "application": {"environment": "${environment}", "components": [
            {"name": "web", "image": "${image}", "replicas": "${replicas}", "ports": [{"name": "http", "port": 8080}]}]}}
    ]}})
}

fn paths(error: &flotilla_client::ClientError) -> Vec<String> {
    let flotilla_client::ClientError::Api { details, .. } = error else { panic!("not an API error: {error:?}") };
    let mut found: Vec<String> =
        details.as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap().to_string()).collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_make_applications_from_checked_values() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    server.admin.create("templates", Some("shop"), &template("Template", Some("shop"))).await.unwrap();

    // Bad values are refused, every one at its path, and nothing is created.
    let body = json!({"name": "storefront", "values": {"replicas": 0, "environment": "staging", "colour": "red"}});
    let refused = server.admin.instantiate_template(Some("shop"), "web-service", &body, false).await.unwrap_err();
    assert_eq!(refused.status(), Some(422));
    assert_eq!(paths(&refused), ["values.colour", "values.environment", "values.image", "values.replicas"]);
    assert_eq!(server.admin.get("applications", Some("shop"), "storefront").await.unwrap_err().status(), Some(404));

    // A dry run renders with the defaults and writes nothing.
    let body = json!({"name": "storefront", "values": {"image": "registry.test/shop/web:1"}});
    let rendered = server.admin.instantiate_template(Some("shop"), "web-service", &body, true).await.unwrap();
    assert_eq!(rendered["spec"]["components"][0]["replicas"], 2);
    assert_eq!(rendered["spec"]["environment"], "test");
    assert_eq!(server.admin.get("applications", Some("shop"), "storefront").await.unwrap_err().status(), Some(404));

    // Created: typed values, the template and version it came from, audited as a create.
    let body = json!({"name": "storefront", "values": {"image": "registry.test/shop/web:1", "replicas": 3}});
    let created = server.admin.instantiate_template(Some("shop"), "web-service", &body, false).await.unwrap();
    assert_eq!(created["metadata"]["annotations"]["flotilla.io/template"], "Template/shop/web-service@2.0");
    let stored = server.admin.get("applications", Some("shop"), "storefront").await.unwrap();
    assert_eq!(stored.spec["components"][0]["replicas"], 3);
    let audit =
        server.admin.audit_query(&[("kind", "Application".into()), ("name", "storefront".into())]).await.unwrap();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"create"), "{audit}");

    // An older version, by name.
    let body = json!({"name": "legacy", "version": "1.0", "values": {"image": "busybox"}});
    server.admin.instantiate_template(Some("shop"), "web-service", &body, false).await.unwrap();
    let unknown = json!({"name": "x", "version": "9", "values": {}});
    let refused = server.admin.instantiate_template(Some("shop"), "web-service", &unknown, false).await.unwrap_err();
    assert_eq!(paths(&refused), ["version"]);

    // A rendered Application that is itself invalid is refused at its spec path.
    let body = json!({"name": "Bad_Name", "values": {"image": "busybox"}});
    let refused = server.admin.instantiate_template(Some("shop"), "web-service", &body, false).await.unwrap_err();
    assert_eq!(paths(&refused), ["metadata.name"]);

    // A viewer reads templates but cannot make applications; a platform template serves
    // every project.
    let vera = server.user("vera").await;
    server.grant("vera", "viewer", Some("shop"), None).await;
    vera.get("templates", Some("shop"), "web-service").await.expect("a viewer reads the template");
    let body = json!({"name": "viewer-app", "values": {"image": "busybox"}});
    let denied = vera.instantiate_template(Some("shop"), "web-service", &body, false).await.unwrap_err();
    assert_eq!(denied.status(), Some(403));
    server.admin.create("platformtemplates", None, &template("PlatformTemplate", None)).await.unwrap();
    let shared = json!({"name": "from-platform", "project": "shop", "values": {"image": "busybox"}});
    let made = server.admin.instantiate_template(None, "web-service", &shared, false).await.unwrap();
    assert_eq!(made["metadata"]["annotations"]["flotilla.io/template"], "PlatformTemplate/web-service@2.0");
    let no_project = json!({"name": "nowhere", "values": {"image": "busybox"}});
    assert_eq!(
        paths(&server.admin.instantiate_template(None, "web-service", &no_project, false).await.unwrap_err()),
        ["project"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_saved_as_a_template_makes_its_siblings() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let app = json!({"apiVersion": "flotilla.io/v1", "kind": "Application", "metadata": {"name": "web", "project": "shop"},
        "spec": {"environment": "test", "components": [{"name": "web", "image": "registry.test/shop/web:1", "replicas": 2,
            "command": ["sh", "-c", "echo ${HOME}"]}]}});
    server.admin.create("applications", Some("shop"), &app).await.unwrap();

    let request = json!({"template": "from-web", "version": "1", "parameters": ["image=components[0].image", "replicas=components[0].replicas"]});
    let saved = server.admin.save_as_template("shop", "web", &request).await.unwrap();
    assert_eq!(saved["spec"]["versions"][0]["parameters"]["properties"]["replicas"]["default"], 2, "{saved}");
    let body = json!({"name": "web-copy", "values": {"image": "registry.test/shop/web:2"}});
    let made = server.admin.instantiate_template(Some("shop"), "from-web", &body, false).await.unwrap();
    let component = &made["spec"]["components"][0];
    assert_eq!(
        (component["image"].clone(), component["replicas"].clone()),
        (json!("registry.test/shop/web:2"), json!(2))
    );
    assert_eq!(component["command"][2], "echo ${HOME}", "text that looks like a placeholder stays text");

    // Saving again adds a version; a field the application lacks is refused at its parameter.
    let second = json!({"template": "from-web", "version": "2", "parameters": ["image=components[0].image"]});
    let saved = server.admin.save_as_template("shop", "web", &second).await.unwrap();
    assert_eq!(saved["spec"]["versions"].as_array().unwrap().len(), 2);
    let again = server.admin.save_as_template("shop", "web", &second).await.unwrap_err();
    assert_eq!(paths(&again), ["spec.versions[2].version"], "a version is listed once");
    let bad = json!({"template": "from-web", "version": "3", "parameters": ["tag=components[4].image"]});
    assert_eq!(paths(&server.admin.save_as_template("shop", "web", &bad).await.unwrap_err()), ["parameters[0]"]);
}
