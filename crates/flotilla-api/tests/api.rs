//! End-to-end tests of the REST API over loopback, against a real SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use flotilla_client::ClientError;
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, environment};

fn code(error: &ClientError) -> &str {
    error.code().unwrap_or("<no code>")
}

async fn audit_of(server: &TestServer, params: &[(&str, &str)]) -> Vec<Value> {
    let params: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let page = server.admin.audit_query(&params).await.unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn stale_update_is_refused_with_409() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let env = server.admin.get("environments", Some("shop"), "test").await.unwrap();
    let mut first = serde_json::to_value(&env).unwrap();
    first["spec"]["description"] = json!("first writer");
    let updated = server.admin.update("environments", Some("shop"), "test", &first).await.unwrap();
    assert_ne!(updated.metadata.resource_version, env.metadata.resource_version);
    assert_eq!(updated.metadata.generation, Some(2));
    let mut stale = serde_json::to_value(&env).unwrap();
    stale["spec"]["description"] = json!("second writer, stale");
    let error = server.admin.update("environments", Some("shop"), "test", &stale).await.unwrap_err();
    assert_eq!(error.status(), Some(409));
    assert_eq!(code(&error), "Conflict");
    let ClientError::Api { details, .. } = &error else { panic!() };
    assert_eq!(details["currentResourceVersion"], json!(updated.metadata.resource_version.clone().unwrap()));
    let now = server.admin.get("environments", Some("shop"), "test").await.unwrap();
    assert_eq!(now.spec["description"], "first writer", "the stale write changed nothing");
    let records = audit_of(&server, &[("kind", "Environment"), ("name", "test"), ("outcome", "conflict")]).await;
    assert_eq!(records.len(), 1, "the refused write is audited");
}

#[tokio::test]
async fn viewer_reads_but_cannot_write_and_the_attempt_is_audited() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let viewer = server.user("vera").await;
    server.grant("vera", "viewer", Some("shop"), None).await;
    let env = viewer.get("environments", Some("shop"), "prod").await.unwrap();
    assert_eq!(env.spec["tier"], "prod");
    let error =
        viewer.create("environments", Some("shop"), &environment("staging", "shop", "staging")).await.unwrap_err();
    assert_eq!(error.status(), Some(403), "{error}");
    assert!(error.to_string().contains("vera"), "{error}");
    let mut changed = serde_json::to_value(&env).unwrap();
    changed["spec"]["tier"] = json!("test");
    assert_eq!(viewer.update("environments", Some("shop"), "prod", &changed).await.unwrap_err().status(), Some(403));
    assert_eq!(viewer.delete("environments", Some("shop"), "prod", None).await.unwrap_err().status(), Some(403));
    assert!(server.admin.get("environments", Some("shop"), "staging").await.is_err());
    let denied = audit_of(&server, &[("user", "vera"), ("outcome", "denied")]).await;
    assert_eq!(denied.len(), 3, "{denied:?}");
    // A user without any grant sees nothing of the project.
    let stranger = server.user("stan").await;
    assert_eq!(stranger.get("environments", Some("shop"), "prod").await.unwrap_err().status(), Some(403));
    assert_eq!(stranger.list("environments", Some("shop"), &[]).await.unwrap_err().status(), Some(403));
}

#[tokio::test]
async fn only_a_platform_admin_mounts_a_directory_of_the_node() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let owner = server.user("olga").await;
    server.grant("olga", "owner", Some("shop"), None).await;
    let app = |host_path: Option<&str>| {
        let mut volume = json!({"name": "data", "mountPath": "/data", "scratch": {}});
        if let Some(path) = host_path {
            volume = json!({"name": "data", "mountPath": "/data", "hostPath": path});
        }
        json!({"apiVersion": "flotilla.io/v1", "kind": "Application", "metadata": {"name": "web", "project": "shop"},
               "spec": {"environment": "test", "components": [{"name": "web", "image": "web:1", "volumes": [volume]}]}})
    };
    let error = owner.create("applications", Some("shop"), &app(Some("/var/log"))).await.unwrap_err();
    assert_eq!(error.status(), Some(403), "{error}");
    assert!(error.to_string().contains("spec.components[0].volumes[0].hostPath"), "{error}");
    owner.create("applications", Some("shop"), &app(None)).await.expect("a scratch volume is the owner's to use");
    let admin_app = server.admin.update("applications", Some("shop"), "web", &app(Some("/var/log"))).await.unwrap();
    assert_eq!(admin_app.spec["components"][0]["volumes"][0]["hostPath"], "/var/log");
    owner.delete("applications", Some("shop"), "web", None).await.expect("removing it needs no admin");
}

#[tokio::test]
async fn nobody_grants_above_their_own_role() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    server.user("bob").await;
    let maintainer = server.user("mia").await;
    server.grant("mia", "maintainer", Some("shop"), None).await;
    let binding = |name: &str, spec: Value| json!({"apiVersion": "flotilla.io/v1", "kind": "RoleBinding", "metadata": {"name": name}, "spec": spec});
    let error = maintainer
        .create("rolebindings", None, &binding("bob-admin", json!({"user": "bob", "role": "admin"})))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(403), "{error}");
    assert!(error.to_string().contains("platform admin"), "{error}");
    let error = maintainer
        .create("rolebindings", None, &binding("bob-owner", json!({"user": "bob", "role": "owner", "project": "shop"})))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(403));
    maintainer
        .create(
            "rolebindings",
            None,
            &binding(
                "bob-dev",
                json!({"user": "bob", "role": "developer", "project": "shop", "environments": ["test"]}),
            ),
        )
        .await
        .unwrap();
    // Escalating an existing binding is judged on both the old and the new grant.
    let mut existing = serde_json::to_value(server.admin.get("rolebindings", None, "bob-dev").await.unwrap()).unwrap();
    existing["spec"]["role"] = json!("owner");
    assert_eq!(maintainer.update("rolebindings", None, "bob-dev", &existing).await.unwrap_err().status(), Some(403));
}

#[tokio::test]
async fn environment_narrowed_role_acts_only_in_its_environments() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let maintainer = server.user("tess").await;
    server.grant("tess", "maintainer", Some("shop"), Some(&["test"])).await;
    let mut test_env =
        serde_json::to_value(server.admin.get("environments", Some("shop"), "test").await.unwrap()).unwrap();
    test_env["spec"]["description"] = json!("tess was here");
    maintainer.update("environments", Some("shop"), "test", &test_env).await.unwrap();
    let mut prod_env =
        serde_json::to_value(server.admin.get("environments", Some("shop"), "prod").await.unwrap()).unwrap();
    prod_env["spec"]["description"] = json!("tess was here");
    let error = maintainer.update("environments", Some("shop"), "prod", &prod_env).await.unwrap_err();
    assert_eq!(error.status(), Some(403));
    assert!(error.to_string().contains("prod"), "{error}");
}

#[tokio::test]
async fn every_write_is_audited_with_user_ip_and_diff() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let developer = server.user("dana").await.with_user_agent("dana-agent/1.0");
    server.grant("dana", "maintainer", Some("shop"), None).await;
    let created = developer.create("environments", Some("shop"), &environment("qa", "shop", "test")).await.unwrap();
    assert_eq!(
        created.metadata.labels["flotilla.io/environment"], "qa",
        "the server labels what acts in an environment"
    );
    let mut changed = serde_json::to_value(&created).unwrap();
    changed["spec"]["tier"] = json!("staging");
    changed["metadata"]["labels"] = json!({"owner": "dana"});
    developer.update("environments", Some("shop"), "qa", &changed).await.unwrap();
    developer.delete("environments", Some("shop"), "qa", None).await.unwrap();
    let records = audit_of(&server, &[("kind", "Environment"), ("name", "qa"), ("user", "dana")]).await;
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["delete", "update", "create"], "newest first");
    for record in &records {
        assert_eq!(record["sourceIp"], "127.0.0.1");
        assert_eq!(record["userAgent"], "dana-agent/1.0");
        assert_eq!(record["auth"], "token");
        assert_eq!(record["outcome"], "success");
        assert_eq!(record["project"], "shop");
    }
    let update = &records[1];
    assert_eq!(update["before"]["spec"]["tier"], "test");
    assert_eq!(update["after"]["spec"]["tier"], "staging");
    let changes: Vec<&str> =
        update["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(changes, vec!["metadata.labels.owner", "spec.tier"]);
    assert_eq!(records[0]["after"], Value::Null, "a delete has no after");
    assert_eq!(records[0]["before"]["metadata"]["name"], "qa");
    // The resource version of a write is the sequence number of its audit record.
    assert_eq!(records[2]["seq"].as_u64().unwrap().to_string(), created.metadata.resource_version.unwrap());
}

#[tokio::test]
async fn a_failed_audit_write_prevents_the_change() {
    let server = TestServer::start().await;
    server
        .store
        .execute_unchecked(
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'audit disk full'); END;",
        )
        .await
        .unwrap();
    let workspace =
        json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": "doomed"}, "spec": {}});
    let error = server.admin.create("workspaces", None, &workspace).await.unwrap_err();
    assert_eq!(code(&error), "AuditWriteFailed", "{error}");
    assert_eq!(error.status(), Some(503));
    server.store.execute_unchecked("DROP TRIGGER fail_audit").await.unwrap();
    let missing = server.admin.get("workspaces", None, "doomed").await.unwrap_err();
    assert_eq!(missing.status(), Some(404), "the change did not happen");
    let report = server.admin.audit_verify().await.unwrap();
    assert_eq!(report["problems"], json!([]), "the chain is intact after the refused write");
}

#[tokio::test]
async fn tampering_with_one_record_is_detected() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let report = server.admin.audit_verify().await.unwrap();
    assert_eq!(report["problems"], json!([]));
    let records = report["records"].as_u64().unwrap();
    assert!(records >= 8, "{report}");
    server.store.execute_unchecked("UPDATE audit_records SET user_name = 'mallory' WHERE seq = 5").await.unwrap();
    let report = server.admin.audit_verify().await.unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["seq"], 5);
    assert!(problems[0]["problem"].as_str().unwrap().contains("edited"));
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let untrusted = TestServer::start().await;
    let response = untrusted
        .admin
        .send(untrusted.admin.request(Method::POST, "/api/v1/workspaces").header("x-forwarded-for", "203.0.113.66").json(
            &json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": "spoof"}, "spec": {}}),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let record = &audit_of(&untrusted, &[("kind", "Workspace"), ("name", "spoof")]).await[0];
    assert_eq!(record["sourceIp"], "127.0.0.1", "the socket peer is recorded, not the header");

    let trusting = TestServer::start_with(|config| config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    trusting
        .admin
        .send(trusting.admin.request(Method::POST, "/api/v1/workspaces").header("x-forwarded-for", "198.51.100.7").json(
            &json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": "proxied"}, "spec": {}}),
        ))
        .await
        .unwrap();
    let record = &audit_of(&trusting, &[("kind", "Workspace"), ("name", "proxied")]).await[0];
    assert_eq!(record["sourceIp"], "198.51.100.7", "a trusted proxy's header is believed");
}

#[tokio::test]
async fn invalid_documents_list_every_error_with_its_path() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let bad = json!({"apiVersion": "flotilla.io/v1", "kind": "Environment",
        "metadata": {"name": "Bad_Name", "project": "shop", "labels": {"ok": "bad value!"}},
        "spec": {"tier": "production", "clusters": ["local", "nowhere"], "colour": "red"}});
    let error = server.admin.create("environments", Some("shop"), &bad).await.unwrap_err();
    assert_eq!(error.status(), Some(422));
    let ClientError::Api { details, .. } = &error else { panic!() };
    let paths: Vec<&str> = details.as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    for expected in ["metadata.name", "metadata.labels[\"ok\"]", "spec.tier"] {
        assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
    }
    assert!(error.to_string().contains("colour"), "{error}");
    // A reference to something that does not exist is refused with its path.
    let dangling = environment("edge", "shop", "test");
    let mut dangling = dangling;
    dangling["spec"]["clusters"] = json!(["local", "nowhere"]);
    let error = server.admin.create("environments", Some("shop"), &dangling).await.unwrap_err();
    let ClientError::Api { details, .. } = &error else { panic!() };
    assert_eq!(details[0]["path"], "spec.clusters[1]", "{error}");
    // A project quota above its workspace's is refused.
    let greedy = json!({"apiVersion": "flotilla.io/v1", "kind": "Project", "metadata": {"name": "greedy"}, "spec": {"workspace": "retail", "quota": {"cpu": "65"}}});
    let error = server.admin.create("projects", None, &greedy).await.unwrap_err();
    assert!(error.to_string().contains("spec.quota.cpu"), "{error}");
}

#[tokio::test]
async fn apply_creates_configures_and_reports_lines() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let again = server
        .admin
        .apply("apiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {name: retail}\nspec: {displayName: Retail, quota: {cpu: '64', memory: 256Gi, instances: 500}}\n".into())
        .await
        .unwrap();
    assert_eq!(again["results"][0]["result"], "unchanged");
    let yaml = "\
apiVersion: flotilla.io/v1
kind: Workspace
metadata: {name: retail}
spec: {displayName: Retail Group}
---
apiVersion: flotilla.io/v1
kind: Environment
metadata: {name: perf, project: shop}
spec:
  tier: fast
  clusters: [local]
---
apiVersion: flotilla.io/v1
kind: Environment
metadata: {name: perf2, project: shop}
spec: {tier: test, clusters: [local]}
";
    let result = server.admin.apply(yaml.into()).await.unwrap();
    let results = result["results"].as_array().unwrap();
    assert_eq!(result["failed"], 1);
    assert_eq!(results[0]["result"], "configured");
    assert_eq!(results[1]["result"], "failed");
    assert_eq!(results[1]["line"], 6, "the document starts on line 6");
    assert_eq!(results[1]["error"]["details"][0]["path"], "spec.tier");
    assert_eq!(results[1]["error"]["details"][0]["line"], 10, "the field error names its line in the file");
    assert_eq!(results[2]["result"], "created");
}

#[tokio::test]
async fn lists_are_filtered_sorted_and_paged_on_the_server() {
    let server = TestServer::start().await;
    let mut yaml = String::new();
    for i in 0..25 {
        let tier = if i % 2 == 0 { "prod" } else { "test" };
        yaml.push_str(&format!(
            "---\napiVersion: flotilla.io/v1\nkind: Workspace\nmetadata: {{name: ws-{i:02}, labels: {{tier: {tier}}}}}\nspec: {{}}\n"
        ));
    }
    assert_eq!(server.admin.apply(yaml).await.unwrap()["failed"], 0);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params =
            vec![("labelSelector", "tier=prod".to_string()), ("limit", "5".to_string()), ("order", "desc".to_string())];
        if let Some(token) = &token {
            params.push(("continue", token.clone()));
        }
        let page = server.admin.list("workspaces", None, &params).await.unwrap();
        names.extend(
            page["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..25).rev().filter(|i| i % 2 == 0).map(|i| format!("ws-{i:02}")).collect();
    assert_eq!(names, expected);
    let bad =
        server.admin.list("workspaces", None, &[("labelSelector", "tier in prod".to_string())]).await.unwrap_err();
    assert_eq!(bad.status(), Some(422));
    let searched = server.admin.list("workspaces", None, &[("q", "ws-1".to_string())]).await.unwrap();
    assert_eq!(searched["items"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn sessions_need_the_csrf_token_and_tokens_can_be_revoked() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "admin", "password": support::ADMIN_PASSWORD, "mode": "session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrfToken"].as_str().unwrap().to_string();
    let workspace =
        json!({"apiVersion": "flotilla.io/v1", "kind": "Workspace", "metadata": {"name": "via-console"}, "spec": {}});
    let url = format!("{}/api/v1/workspaces", server.base);
    let without = http.post(&url).header("cookie", &session).json(&workspace).send().await.unwrap();
    assert_eq!(without.status(), 403, "a cross-site write without the CSRF token is refused");
    let with =
        http.post(&url).header("cookie", &session).header("x-csrf-token", &csrf).json(&workspace).send().await.unwrap();
    assert_eq!(with.status(), 201);
    let read = http.get(&url).header("cookie", &session).send().await.unwrap();
    assert_eq!(read.status(), 200, "reads need no CSRF token");
    // Tokens: create, use, revoke, refused.
    let created = server.admin.create_token("automation", Some(1)).await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let automation = server.anonymous().with_token(Some(token));
    assert_eq!(automation.whoami().await.unwrap()["user"], "admin");
    server.admin.revoke_token(created["id"].as_str().unwrap()).await.unwrap();
    let error = automation.whoami().await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert!(error.to_string().contains("revoked"), "{error}");
    let listed = server.admin.list_tokens().await.unwrap();
    assert!(listed.to_string().contains("automation") && !listed.to_string().contains("flt_"), "{listed}");
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_user_out_and_are_audited() {
    let server = TestServer::start_with(|config| {
        config.login.max_failures = 3;
        config.login.lockout_secs = 60;
    })
    .await;
    let anonymous = server.anonymous();
    for _ in 0..3 {
        let error = anonymous.login_token("admin", "wrong password!", "t", None).await.unwrap_err();
        assert_eq!(error.status(), Some(401));
    }
    let error = anonymous.login_token("admin", support::ADMIN_PASSWORD, "t", None).await.unwrap_err();
    assert_eq!(error.status(), Some(429), "locked even with the right password: {error}");
    let failures = audit_of(&server, &[("action", "login"), ("outcome", "denied")]).await;
    assert_eq!(failures.len(), 4);
    assert!(failures.iter().all(|r| r["user"] == "admin" && r["sourceIp"] == "127.0.0.1"));
    assert!(
        !serde_json::to_string(&failures).unwrap().contains("wrong password"),
        "passwords never reach the audit log"
    );
    let unknown = anonymous.login_token("nobody", "whatever it is", "t", None).await.unwrap_err();
    assert_eq!(unknown.to_string(), "invalid user name or password", "same answer for unknown users");
}

#[tokio::test]
async fn secrets_never_leave_in_clear_text() {
    let server = TestServer::start().await;
    let cluster = json!({"apiVersion": "flotilla.io/v1", "kind": "Cluster", "metadata": {"name": "prod-east", "labels": {"cloud": "aws"}},
        "spec": {"type": "kubernetes", "apiServer": "https://10.0.0.1:6443", "token": "super-secret-token"}});
    let created = server.admin.create("clusters", None, &cluster).await.unwrap();
    assert_eq!(created.spec["token"], "(redacted)");
    let fetched = server.admin.get("clusters", None, "prod-east").await.unwrap();
    assert_eq!(fetched.spec["token"], "(redacted)");
    let records = audit_of(&server, &[("kind", "Cluster"), ("name", "prod-east")]).await;
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("super-secret-token"), "{text}");
    assert!(records[0]["after"]["spec"]["token"].as_str().unwrap().starts_with("hmac-sha256:"));

    // A Secret shows its keys, never its values, in answers and in the audit log.
    server.seed_shop().await;
    let secret = json!({"apiVersion": "flotilla.io/v1", "kind": "Secret", "metadata": {"name": "db", "project": "shop"},
        "spec": {"environment": "test", "data": {"password": "hunter2-db-password"}}});
    let created = server.admin.create("secrets", Some("shop"), &secret).await.unwrap();
    assert_eq!(created.spec["data"], json!({"password": "(redacted)"}));
    let listed = server.admin.list("secrets", Some("shop"), &[]).await.unwrap();
    assert_eq!(listed["items"][0]["spec"]["data"], json!({"password": "(redacted)"}));
    let records = audit_of(&server, &[("kind", "Secret"), ("name", "db")]).await;
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("hunter2-db-password"), "{text}");
}

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let document: Value = server
        .anonymous()
        .send(server.anonymous().request(Method::GET, "/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() > 20);
    let mut checked = 0;
    for (path, methods) in paths {
        let concrete = path
            .replace("{project}", "shop")
            .replace("{name}", "does-not-exist")
            .replace("{id}", "does-not-exist")
            .replace("{seq}", "999999");
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = server
                .admin
                .request(method.clone(), &concrete)
                .body("{}")
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(!body.contains("no route for"), "{method} {path} is documented but not routed");
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked}");
    // And an undocumented path is not routed.
    let response = server.admin.request(Method::GET, "/api/v1/not-a-thing").send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = TestServer::start().await;
    let anonymous = server.anonymous();
    for path in ["/healthz", "/readyz"] {
        let response = anonymous.send(anonymous.request(Method::GET, path)).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    server.admin.list("workspaces", None, &[]).await.unwrap();
    let _ = server.admin.get("workspaces", None, "absent").await;
    let metrics = anonymous.send(anonymous.request(Method::GET, "/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("flotilla_http_requests_total{method=\"GET\",route=\"/api/v1/workspaces\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/api/v1/workspaces/{name}\",status=\"404\""), "{metrics}");
    assert!(metrics.contains("flotilla_http_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("flotilla_store_operation_duration_seconds_count{operation=\"list\"}"), "{metrics}");
    let unauthenticated = anonymous.list("workspaces", None, &[]).await.unwrap_err();
    assert_eq!(unauthenticated.status(), Some(401));
}

#[tokio::test]
async fn audit_queries_export_and_summary() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let summary = server.admin.audit_summary(&[("by", "action".to_string())]).await.unwrap();
    let rows = summary["rows"].as_array().unwrap();
    let apply = rows.iter().find(|r| r["key"] == "apply").unwrap();
    assert_eq!(apply["count"], 4);
    let by_day = server.admin.audit_summary(&[("by", "day".to_string())]).await.unwrap();
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    assert_eq!(by_day["rows"][0]["key"], today);
    let csv = server.admin.audit_export(&[("action", "apply".to_string())]).await.unwrap().text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("seq,time,user"));
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[1].contains(",apply,Workspace,,retail,success,"), "{csv}");
    let recent = server.admin.audit_query(&[("since", "1h".to_string()), ("limit", "2".to_string())]).await.unwrap();
    assert_eq!(recent["items"].as_array().unwrap().len(), 2);
    assert!(recent["nextCursor"].is_u64());
    let viewer = server.user("victor").await;
    assert_eq!(viewer.audit_query(&[]).await.unwrap_err().status(), Some(403));
}

#[tokio::test]
async fn access_review_answers_as_the_request_itself_is_decided() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let dana = server.user("dana").await;
    server.grant("dana", "developer", Some("shop"), Some(&["test"])).await;
    let can = |verb: &'static str, environment: &'static str| {
        let dana = dana.clone();
        async move {
            let query = format!("/api/v1/auth/can?verb={verb}&kind=Application&project=shop&environment={environment}");
            let response = dana.send(dana.request(reqwest::Method::GET, &query)).await.unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(can("create", "test").await, json!({"allowed": true}));
    let refused = can("create", "prod").await;
    assert_eq!(refused["allowed"], false);
    assert!(refused["reason"].as_str().unwrap().contains("prod"), "{refused}");
    // The request itself is decided the same way.
    let app = |environment: &str| {
        json!({"apiVersion": "flotilla.io/v1", "kind": "Application", "metadata": {"name": format!("web-{environment}"), "project": "shop"},
            "spec": {"environment": environment, "components": [{"name": "web", "image": "registry.example/web:1"}]}})
    };
    dana.create("applications", Some("shop"), &app("test")).await.unwrap();
    let error = dana.create("applications", Some("shop"), &app("prod")).await.unwrap_err();
    assert_eq!(error.status(), Some(403));
    // Bad questions are named.
    let bad = dana.send(dana.request(reqwest::Method::GET, "/api/v1/auth/can?verb=fly&kind=Nope")).await.unwrap_err();
    assert_eq!(bad.status(), Some(422));
    assert!(bad.to_string().contains("verb"), "{bad}");
}
