//! Every manifest the renderer produces, for a wide set of application specs, is valid for
//! real Kubernetes: checked with PyPI `kubernetes-validate` in strict mode (a field that does
//! not exist is an error) against Kubernetes 1.29 and 1.33.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use flotilla_core::kinds::{ApplicationSpec, SecretKeyRef};
use flotilla_driver::workload::{Workload, WorkloadKey};
use flotilla_kube::render::{environment_objects, render};
use serde_json::{Value, json};

/// The Kubernetes versions manifests must be valid for.
const VERSIONS: &[&str] = &["1.29.0", "1.33.0"];

fn specs() -> Vec<(&'static str, Value)> {
    vec![
        ("minimal", json!({"environment": "test", "components": [{"name": "worker", "image": "registry.local/w:1"}]})),
        (
            "web",
            json!({"environment": "prod", "config": {"mode": "fast", "nginx.conf": "server {}\n"},
            "restartedAt": "2026-12-06T10:00:00Z", "selfHeal": true,
            "components": [{
                "name": "web", "image": "registry.local/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "command": ["/bin/httpd"], "args": ["-f", "-p", "8080"], "replicas": 4,
                "env": [{"name": "MODE", "fromConfig": "mode"}, {"name": "PLAIN", "value": "x"},
                        {"name": "RELEASED", "value": "2026-12-06"}, {"name": "ENABLED", "value": "yes"},
                        {"name": "DB_PASSWORD", "fromSecret": {"secret": "db", "key": "password"}}],
                "files": [{"path": "/etc/nginx/nginx.conf", "fromConfig": "nginx.conf", "mode": 420},
                          {"path": "/run/secrets/db", "fromSecret": {"secret": "db", "key": "password"}}],
                "ports": [{"name": "http", "port": 8080, "publish": 30080}, {"name": "metrics-endpoint-long", "port": 9090},
                          {"name": "dns", "port": 53, "protocol": "udp", "publish": 5353}],
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                "probes": {"startup": {"tcp": {"port": "http"}, "failureThreshold": 30},
                           "readiness": {"http": {"port": "http", "path": "/ready"}, "periodSeconds": 2},
                           "liveness": {"exec": {"command": ["/bin/cat", "/tmp/healthy"]}, "initialDelaySeconds": 5}},
                "volumes": [{"name": "cache", "mountPath": "/cache", "scratch": {"sizeLimit": "512Mi"}},
                            {"name": "tmp", "mountPath": "/tmp", "scratch": {}},
                            {"name": "logs", "mountPath": "/var/log/host", "hostPath": "/var/log", "readOnly": true},
                            {"name": "uploads", "mountPath": "/uploads", "persistent": {"size": "10Gi"}}],
                "update": {"maxSurge": "50%", "maxUnavailable": 0, "progressDeadlineSeconds": 120}
            }]}),
        ),
        (
            "stateful",
            json!({"environment": "prod", "components": [{
                "name": "db", "image": "registry.local/pg:15", "replicas": 3,
                "ports": [{"name": "pg", "port": 5432}],
                "volumes": [{"name": "data", "mountPath": "/var/lib/postgresql", "persistent": {"size": "20Gi"}},
                            {"name": "wal", "mountPath": "/wal", "persistent": {"size": "5Gi"}}],
                "scheduling": {"stableIdentity": true, "spread": true, "nodeSelector": {"disk": "ssd"},
                    "nodeAffinity": {
                        "required": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
                                     {"key": "gpu", "operator": "DoesNotExist"}],
                        "preferred": [{"weight": 20, "key": "cpu-generation", "operator": "Gt", "values": ["3"]},
                                      {"weight": 80, "key": "spot", "operator": "NotIn", "values": ["true"]}]},
                    "tolerations": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                                    {"operator": "Exists"}]}
            }]}),
        ),
        (
            "autoscaled",
            json!({"environment": "test", "components": [
                {"name": "api", "image": "registry.local/api:2", "replicas": 3,
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                 "autoscaling": {"minReplicas": 2, "maxReplicas": 20, "targetCpuPercent": 70, "targetMemoryPercent": 80},
                 "ports": [{"name": "grpc", "port": 50051}]},
                {"name": "batch", "image": "registry.local/batch:2", "restartPolicy": "Never",
                 "resources": {"requests": {"cpu": "1"}},
                 "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetCpuPercent": 90}}
            ]}),
        ),
        (
            "long-names",
            json!({"environment": "staging-environment-with-a-rather-long-name-for-testing", "components": [{
                "name": "component-with-a-name-as-long-as-kubernetes-allows-for-a-label1",
                "image": "registry.local/x:1", "ports": [{"name": "http", "port": 80}],
                "volumes": [{"name": "state", "mountPath": "/state", "persistent": {"size": "1Gi"}}],
                "scheduling": {"stableIdentity": true}}]}),
        ),
    ]
}

/// Every object of every spec, one YAML stream per spec (as `flotilla render` prints).
fn render_all(dir: &Path) -> Vec<PathBuf> {
    let secret = |r: &SecretKeyRef| Some(format!("value of {}/{}", r.secret, r.key));
    specs()
        .into_iter()
        .map(|(name, spec)| {
            let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
            let application = if name == "long-names" { "a".repeat(63) } else { format!("app-{name}") };
            let key = WorkloadKey { project: "shop".into(), environment: spec.environment.clone(), application };
            let workload = Workload::resolve(key.clone(), 7, &spec, &secret).unwrap();
            let mut objects = environment_objects(&key.project, &key.environment);
            objects.extend(render(&workload).objects);
            // Written as `flotilla render` writes them: quoted so that a YAML 1.1 reader such as
            // the validator's keeps the restart time and date-like values strings.
            let stream: String =
                objects.iter().map(|o| format!("---\n{}", serde_saphyr::to_string(o).unwrap())).collect();
            let path = dir.join(format!("{name}.yaml"));
            std::fs::write(&path, stream).unwrap();
            path
        })
        .collect()
}

/// Runs kubernetes-validate (strict) on `files` for `version`: its exit status and output.
fn validate(version: &str, files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--no-warn", "--quiet", "-k", version])
        .args(files)
        .output()
        .expect("kubernetes-validate runs (scripts/install-deps test installs it; scripts/test puts it on PATH)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn every_rendered_manifest_is_valid_for_kubernetes_1_29_and_1_33() {
    let dir = tempfile::tempdir().unwrap();
    let files = render_all(dir.path());
    let kinds: std::collections::BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines().filter_map(|l| l.strip_prefix("kind: ").map(str::to_string)).collect::<Vec<_>>()
        })
        .collect();
    for kind in [
        "Namespace",
        "NetworkPolicy",
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "the specs render a {kind}: {kinds:?}");
    }
    for version in VERSIONS {
        let (valid, output) = validate(version, &files);
        assert!(valid, "manifests invalid for Kubernetes {version}:\n{output}");
    }
}

#[test]
fn the_validator_refuses_a_field_kubernetes_does_not_have() {
    // The check above means something only if a wrong field fails it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.yaml");
    let mut deployment = render(
        &Workload::resolve(
            WorkloadKey { project: "p".into(), environment: "e".into(), application: "a".into() },
            1,
            &serde_json::from_value(json!({"environment": "e", "components": [{"name": "c", "image": "i"}]})).unwrap(),
            &|_| None,
        )
        .unwrap(),
    )
    .objects
    .into_iter()
    .find(|o| o["kind"] == "Deployment")
    .unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    std::fs::write(&path, serde_norway::to_string(&deployment).unwrap()).unwrap();
    for version in VERSIONS {
        let (valid, output) = validate(version, std::slice::from_ref(&path));
        assert!(!valid && output.contains("imagePullPolicyy"), "{version}: {output}");
    }
}
