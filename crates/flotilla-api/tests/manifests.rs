//! `GET …/applications/{name}/manifests`: what an application becomes on a Kubernetes
//! cluster, for review and GitOps export: Secret values never shown, the cluster chosen from
//! the environment, readers allowed and strangers refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn an_application_renders_for_its_kubernetes_cluster_without_secret_values() {
    let server = TestServer::start().await;
    server.seed_shop().await;
    let admin = &server.admin;
    let cluster = json!({"apiVersion": "flotilla.io/v1", "kind": "Cluster", "metadata": {"name": "east"},
        "spec": {"type": "kubernetes", "apiServer": "https://10.0.0.1:6443", "token": "t0ken-never-shown"}});
    admin.create("clusters", None, &cluster).await.unwrap();
    let staging = json!({"apiVersion": "flotilla.io/v1", "kind": "Environment", "metadata": {"name": "staging", "project": "shop"},
        "spec": {"tier": "test", "clusters": ["local", "east"]}});
    admin.create("environments", Some("shop"), &staging).await.unwrap();
    let secret = json!({"apiVersion": "flotilla.io/v1", "kind": "Secret", "metadata": {"name": "db", "project": "shop"},
        "spec": {"environment": "staging", "data": {"password": "hunter2-in-the-manifest?"}}});
    admin.create("secrets", Some("shop"), &secret).await.unwrap();
    let app = json!({"apiVersion": "flotilla.io/v1", "kind": "Application", "metadata": {"name": "web", "project": "shop"},
        "spec": {"environment": "staging", "components": [{"name": "api", "image": "registry.local/api:1", "replicas": 2,
            "env": [{"name": "DB_PASSWORD", "fromSecret": {"secret": "db", "key": "password"}}],
            "ports": [{"name": "http", "port": 8080, "publish": 8080}],
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}});
    admin.create("applications", Some("shop"), &app).await.unwrap();

    // The environment's first Kubernetes cluster is chosen (local is the embedded runtime).
    let answer = admin.application_manifests("shop", "web", None).await.unwrap();
    assert_eq!(answer["cluster"], "east");
    assert_eq!(answer["namespace"], "shop-staging");
    let kinds: Vec<&str> = answer["objects"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Namespace", "NetworkPolicy", "Secret", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"],
        "{answer:#}"
    );
    let secret = answer["objects"].as_array().unwrap().iter().find(|o| o["kind"] == "Secret").unwrap();
    assert_eq!(secret["stringData"], json!({"env.DB_PASSWORD": "(redacted)"}));
    assert!(!answer.to_string().contains("hunter2"), "no secret value: {answer}");
    let deployment = answer["objects"].as_array().unwrap().iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["metadata"]["labels"]["flotilla.io/revision"], "1");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "256Mi"})
    );
    let warnings = answer["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("node port range")), "{warnings:?}");

    // Naming the embedded runtime, or an environment without a Kubernetes cluster, is refused.
    let local = admin.application_manifests("shop", "web", Some("local")).await.unwrap_err();
    assert_eq!(local.status(), Some(400), "{local}");
    let test_app = json!({"apiVersion": "flotilla.io/v1", "kind": "Application", "metadata": {"name": "t", "project": "shop"},
        "spec": {"environment": "test", "components": [{"name": "a", "image": "i"}]}});
    admin.create("applications", Some("shop"), &test_app).await.unwrap();
    let none = admin.application_manifests("shop", "t", None).await.unwrap_err();
    assert!(none.to_string().contains("no Kubernetes cluster"), "{none}");
    // Another cluster than the environment's renders, with a warning.
    let other = admin.application_manifests("shop", "t", Some("east")).await.unwrap();
    assert!(other["warnings"][0].as_str().unwrap().contains("does not deploy to cluster \"east\""), "{other}");

    // A viewer of the project reads them; a user without a role in it does not.
    let viewer = server.user("vera").await;
    server.grant("vera", "viewer", Some("shop"), None).await;
    assert_eq!(viewer.application_manifests("shop", "web", None).await.unwrap()["cluster"], "east");
    let stranger = server.user("sam").await;
    let refused = stranger.application_manifests("shop", "web", None).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
}
