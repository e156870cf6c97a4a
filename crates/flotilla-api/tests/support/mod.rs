//! Test harness: a real API server on loopback over a real SQLite store in a temp dir.
#![allow(dead_code, clippy::unwrap_used)] // test harness: a panic is a failed test

use std::sync::Arc;

use flotilla_client::Client;
use flotilla_config::Config;
use flotilla_core::kinds::KindRegistry;
use flotilla_store::sql::{SqlStore, SqlStoreOptions, SystemClock};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ADMIN_PASSWORD: &str = "admin password for tests";

pub struct TestServer {
    pub base: String,
    pub store: Arc<SqlStore>,
    pub dir: TempDir,
    pub admin: Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..Config::default()
        };
        adjust(&mut config);
        let kinds = Arc::new(KindRegistry::builtin());
        let options =
            SqlStoreOptions::new(config.database_url(), b"test audit key".to_vec()).with_master_key(vec![3u8; 32]);
        let store = Arc::new(SqlStore::connect(options, kinds.clone(), Arc::new(SystemClock)).await.unwrap());
        flotilla_api::bootstrap::bootstrap(store.as_ref(), &kinds, config.admin_password.as_deref()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // As the server does: the address actually bound (the registry's own host name).
        config.listen = listener.local_addr().unwrap();
        let app = flotilla_api::app(store.clone(), kinds, Arc::new(config), Arc::new(SystemClock));
        tokio::spawn(flotilla_api::serve(listener, app, std::future::pending()));
        let anonymous = Client::new(&base, None).unwrap();
        let login = anonymous.login_token("admin", ADMIN_PASSWORD, "tests", None).await.unwrap();
        let admin = anonymous.with_token(Some(login.token));
        Self { base, store, dir, admin }
    }

    pub fn anonymous(&self) -> Client {
        Client::new(&self.base, None).unwrap()
    }

    /// Creates a user with a password and returns a client logged in as it.
    pub async fn user(&self, name: &str) -> Client {
        self.admin
            .create(
                "users",
                None,
                &json!({"apiVersion": "flotilla.io/v1", "kind": "User", "metadata": {"name": name}, "spec": {}}),
            )
            .await
            .unwrap();
        let password = format!("{name} password 123");
        self.admin.set_password(name, None, &password).await.unwrap();
        let login = self.anonymous().login_token(name, &password, "tests", None).await.unwrap();
        self.anonymous().with_token(Some(login.token))
    }

    /// Grants `role` to `user` (as admin), optionally in a project, narrowed to environments.
    pub async fn grant(&self, user: &str, role: &str, project: Option<&str>, environments: Option<&[&str]>) {
        let mut spec = json!({"user": user, "role": role});
        if let Some(project) = project {
            spec["project"] = json!(project);
        }
        if let Some(envs) = environments {
            spec["environments"] = json!(envs);
        }
        let name = format!("{user}-{role}-{}", project.unwrap_or("platform"));
        self.admin.create("rolebindings", None, &json!({"apiVersion": "flotilla.io/v1", "kind": "RoleBinding", "metadata": {"name": name}, "spec": spec})).await.unwrap();
    }

    /// A workspace `retail`, project `shop` in it, and environments `test` and `prod` on the local cluster.
    pub async fn seed_shop(&self) {
        let yaml = "\
apiVersion: flotilla.io/v1
kind: Workspace
metadata: {name: retail}
spec: {displayName: Retail, quota: {cpu: '64', memory: 256Gi, instances: 500}}
---
apiVersion: flotilla.io/v1
kind: Project
metadata: {name: shop, labels: {tier: core}}
spec: {workspace: retail, quota: {cpu: '16', memory: 64Gi}}
---
apiVersion: flotilla.io/v1
kind: Environment
metadata: {name: test, project: shop}
spec: {tier: test, clusters: [local]}
---
apiVersion: flotilla.io/v1
kind: Environment
metadata: {name: prod, project: shop}
spec: {tier: prod, clusters: [local]}
";
        let result = self.admin.apply(yaml.into()).await.unwrap();
        assert_eq!(result["failed"], 0, "{result}");
    }
}

pub fn environment(name: &str, project: &str, tier: &str) -> Value {
    json!({"apiVersion": "flotilla.io/v1", "kind": "Environment", "metadata": {"name": name, "project": project}, "spec": {"tier": tier, "clusters": ["local"]}})
}
