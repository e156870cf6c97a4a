//! What the control plane asks a cluster to run: one revision of one application in one
//! environment, with every value resolved (configuration and secret values looked up,
//! quantities in base units, percentages turned into numbers). A driver needs nothing else.

use std::collections::BTreeMap;

use flotilla_core::kinds::quantity::{parse_bytes, parse_cpu_millis};
use flotilla_core::kinds::{
    ApplicationSpec, Autoscaling, Component, PortRef, Probe, Protocol, RestartPolicy, Scheduling, SecretKeyRef,
};
use serde::{Deserialize, Serialize};

/// Names one application in one environment of one project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadKey {
    pub project: String,
    pub environment: String,
    pub application: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.environment, self.application)
    }
}

/// One revision of an application, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub key: WorkloadKey,
    /// The application revision this is (1, 2, …); instances carry it.
    pub revision: u64,
    pub components: Vec<ComponentWorkload>,
    /// Correct drift (objects changed out of band) instead of only reporting it.
    #[serde(default)]
    pub self_heal: bool,
}

/// A probe with its target resolved to a port number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProbeAction {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedProbe {
    pub action: ProbeAction,
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A file written into every instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub publish: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// Named, outlives instances; `size_bytes` requested.
    Persistent {
        size_bytes: u64,
    },
    Scratch {
        size_limit_bytes: Option<u64>,
    },
    HostPath {
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedVolume {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
    pub source: VolumeSource,
}

/// One component, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentWorkload {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Name to value, secrets included (drivers must not log them).
    pub env: Vec<(String, String)>,
    /// The names in `env` whose values come from Secrets (kept out of plain manifests).
    #[serde(default)]
    pub secret_env: Vec<String>,
    pub files: Vec<ResolvedFile>,
    pub ports: Vec<ResolvedPort>,
    pub cpu_request_millis: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_request_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub startup: Option<ResolvedProbe>,
    pub readiness: Option<ResolvedProbe>,
    pub liveness: Option<ResolvedProbe>,
    pub replicas: u32,
    pub volumes: Vec<ResolvedVolume>,
    pub restart_policy: RestartPolicy,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub progress_deadline_seconds: u32,
    pub scheduling: Scheduling,
    /// Elastic scaling bounds and targets; `replicas` is where it starts.
    #[serde(default)]
    pub autoscaling: Option<Autoscaling>,
    /// When a restart of every instance was asked for (part of the template: a new value
    /// replaces every instance, rolling).
    #[serde(default)]
    pub restarted_at: Option<String>,
}

/// A configuration or secret value the spec names but that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ResolveError {
    pub path: String,
    pub message: String,
}

fn resolve_probe(component: &Component, probe: &Probe, path: &str) -> Result<ResolvedProbe, ResolveError> {
    let port = |port: &PortRef, kind: &str| {
        component.port_number(port).ok_or_else(|| ResolveError {
            path: format!("{path}.{kind}.port"),
            message: format!("{port:?} names no port of the component"),
        })
    };
    let action = match (&probe.http, &probe.tcp, &probe.exec) {
        (Some(http), _, _) => ProbeAction::Http { port: port(&http.port, "http")?, path: http.path.clone() },
        (_, Some(tcp), _) => ProbeAction::Tcp { port: port(&tcp.port, "tcp")? },
        (_, _, Some(exec)) => ProbeAction::Exec { command: exec.command.clone() },
        _ => return Err(ResolveError { path: path.to_string(), message: "no http, tcp or exec".into() }),
    };
    Ok(ResolvedProbe {
        action,
        initial_delay_seconds: probe.initial_delay_seconds,
        period_seconds: probe.period_seconds,
        timeout_seconds: probe.timeout_seconds,
        success_threshold: probe.success_threshold,
        failure_threshold: probe.failure_threshold,
    })
}

impl Workload {
    /// Resolves an application's spec. `secret` looks a key of a Secret up (in the
    /// application's project); its values end up in env and files, never in errors.
    pub fn resolve(
        key: WorkloadKey,
        revision: u64,
        spec: &ApplicationSpec,
        secret: &dyn Fn(&SecretKeyRef) -> Option<String>,
    ) -> Result<Self, ResolveError> {
        let mut components = Vec::with_capacity(spec.components.len());
        for (c, component) in spec.components.iter().enumerate() {
            let at = format!("spec.components[{c}]");
            let lookup = |config: &Option<String>, secret_ref: &Option<SecretKeyRef>, path: String| {
                if let Some(key) = config {
                    spec.config.get(key).cloned().ok_or(ResolveError {
                        path: format!("{path}.fromConfig"),
                        message: format!("{key:?} is not a key of spec.config"),
                    })
                } else if let Some(reference) = secret_ref {
                    secret(reference).ok_or(ResolveError {
                        path: format!("{path}.fromSecret"),
                        message: format!("Secret {:?} has no key {:?}", reference.secret, reference.key),
                    })
                } else {
                    Err(ResolveError { path, message: "no value".into() })
                }
            };
            let mut env = Vec::with_capacity(component.env.len());
            for (e, var) in component.env.iter().enumerate() {
                let value = match &var.value {
                    Some(value) => value.clone(),
                    None => lookup(&var.from_config, &var.from_secret, format!("{at}.env[{e}]"))?,
                };
                env.push((var.name.clone(), value));
            }
            let secret_env = component.env.iter().filter(|v| v.from_secret.is_some()).map(|v| v.name.clone()).collect();
            let mut files = Vec::with_capacity(component.files.len());
            for (f, file) in component.files.iter().enumerate() {
                let content = lookup(&file.from_config, &file.from_secret, format!("{at}.files[{f}]"))?;
                let secret_file = file.from_secret.is_some();
                files.push(ResolvedFile {
                    path: file.path.clone(),
                    content: content.into_bytes(),
                    mode: file.mode.unwrap_or(if secret_file { 0o400 } else { 0o444 }),
                    secret: secret_file,
                });
            }
            let probe = |probe: &Option<Probe>, name: &str| {
                probe.as_ref().map(|p| resolve_probe(component, p, &format!("{at}.probes.{name}"))).transpose()
            };
            let update = &component.update;
            let resolve_percent = |value: &flotilla_core::kinds::IntOrPercent, round_up: bool, field: &str| {
                value
                    .resolve(component.replicas, round_up)
                    .map_err(|message| ResolveError { path: format!("{at}.update.{field}"), message })
            };
            let volumes = component
                .volumes
                .iter()
                .map(|volume| ResolvedVolume {
                    name: volume.name.clone(),
                    mount_path: volume.mount_path.clone(),
                    read_only: volume.read_only,
                    source: match (&volume.persistent, &volume.scratch, &volume.host_path) {
                        (Some(p), _, _) => {
                            VolumeSource::Persistent { size_bytes: parse_bytes(&p.size).unwrap_or_default() }
                        }
                        (_, Some(s), _) => VolumeSource::Scratch {
                            size_limit_bytes: s.size_limit.as_deref().and_then(|l| parse_bytes(l).ok()),
                        },
                        (_, _, Some(path)) => VolumeSource::HostPath { path: path.clone() },
                        _ => VolumeSource::Scratch { size_limit_bytes: None },
                    },
                })
                .collect();
            let resources = &component.resources;
            components.push(ComponentWorkload {
                name: component.name.clone(),
                image: component.image.clone(),
                command: component.command.clone(),
                args: component.args.clone(),
                env,
                secret_env,
                files,
                ports: component
                    .ports
                    .iter()
                    .map(|p| ResolvedPort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: p.protocol,
                        publish: p.publish,
                    })
                    .collect(),
                cpu_request_millis: resources.requests.cpu.as_deref().and_then(|c| parse_cpu_millis(c).ok()),
                cpu_limit_millis: resources.limits.cpu.as_deref().and_then(|c| parse_cpu_millis(c).ok()),
                memory_request_bytes: resources.requests.memory.as_deref().and_then(|m| parse_bytes(m).ok()),
                memory_limit_bytes: resources.limits.memory.as_deref().and_then(|m| parse_bytes(m).ok()),
                startup: probe(&component.probes.startup, "startup")?,
                readiness: probe(&component.probes.readiness, "readiness")?,
                liveness: probe(&component.probes.liveness, "liveness")?,
                replicas: component.replicas,
                volumes,
                restart_policy: component.restart_policy,
                max_surge: resolve_percent(&update.max_surge, true, "maxSurge")?,
                max_unavailable: resolve_percent(&update.max_unavailable, false, "maxUnavailable")?,
                progress_deadline_seconds: update.progress_deadline_seconds,
                scheduling: component.scheduling.clone(),
                autoscaling: component.autoscaling.clone(),
                restarted_at: spec.restarted_at.clone(),
            });
        }
        Ok(Workload { key, revision, components, self_heal: spec.self_heal })
    }

    /// Labels every object of this workload carries, so that a driver finds (and adopts)
    /// what is its own and touches nothing else.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::PROJECT.to_string(), self.key.project.clone()),
            (labels::ENVIRONMENT.to_string(), self.key.environment.clone()),
            (labels::APPLICATION.to_string(), self.key.application.clone()),
            (labels::COMPONENT.to_string(), component.to_string()),
            (labels::REVISION.to_string(), self.revision.to_string()),
        ])
    }
}

impl ComponentWorkload {
    /// A digest of what an instance of this component is (image, command, env, files,
    /// ports, resources, probes, volumes, policy, scheduling), leaving out how many there are
    /// and how they are rolled out. Instances whose hash matches the desired one are kept as
    /// they are: scaling restarts nothing, and rolling back to an earlier spec keeps the
    /// instances that already run it (Kubernetes' pod-template-hash).
    pub fn template_hash(&self) -> String {
        use sha2::Digest;
        let template = ComponentWorkload {
            replicas: 0,
            max_surge: 0,
            max_unavailable: 0,
            progress_deadline_seconds: 0,
            autoscaling: None,
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&template).unwrap_or_default();
        hex::encode(&sha2::Sha256::digest(&bytes)[..8])
    }
}

/// The label keys on everything a driver creates.
pub mod labels {
    pub const PROJECT: &str = "flotilla.io/project";
    pub const ENVIRONMENT: &str = "flotilla.io/environment";
    pub const APPLICATION: &str = "flotilla.io/application";
    pub const COMPONENT: &str = "flotilla.io/component";
    pub const REVISION: &str = "flotilla.io/revision";
    /// [`super::ComponentWorkload::template_hash`] of the instance.
    pub const TEMPLATE: &str = "flotilla.io/template-hash";
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key() -> WorkloadKey {
        WorkloadKey { project: "shop".into(), environment: "test".into(), application: "web".into() }
    }

    #[test]
    fn values_are_resolved_and_quantities_are_in_base_units() {
        let spec: ApplicationSpec = serde_json::from_value(json!({
            "environment": "test",
            "config": {"greeting": "hello", "conf": "port=80\n"},
            "components": [{
                "name": "api", "image": "registry.local/api:1", "replicas": 4,
                "env": [{"name": "GREETING", "fromConfig": "greeting"},
                        {"name": "DB_PASSWORD", "fromSecret": {"secret": "db", "key": "password"}}],
                "files": [{"path": "/etc/api.conf", "fromConfig": "conf"},
                          {"path": "/run/secrets/db", "fromSecret": {"secret": "db", "key": "password"}}],
                "ports": [{"name": "http", "port": 8080}],
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                "probes": {"readiness": {"http": {"port": "http", "path": "/ready"}}}
            }]
        }))
        .unwrap();
        let secret = |r: &SecretKeyRef| (r.secret == "db" && r.key == "password").then(|| "s3cret".to_string());
        let workload = Workload::resolve(key(), 7, &spec, &secret).unwrap();
        let api = &workload.components[0];
        assert_eq!(api.env, vec![("GREETING".into(), "hello".into()), ("DB_PASSWORD".into(), "s3cret".into())]);
        assert_eq!(api.secret_env, ["DB_PASSWORD"], "which values are secret is kept");
        assert_eq!(api.files[0].content, b"port=80\n");
        assert_eq!((api.files[0].mode, api.files[1].mode, api.files[1].secret), (0o444, 0o400, true));
        assert_eq!((api.cpu_request_millis, api.cpu_limit_millis), (Some(250), Some(1000)));
        assert_eq!(api.memory_limit_bytes, Some(128 * 1024 * 1024));
        assert_eq!((api.max_surge, api.max_unavailable), (1, 1), "25% of 4");
        let readiness = api.readiness.as_ref().unwrap();
        assert_eq!(readiness.action, ProbeAction::Http { port: 8080, path: "/ready".into() });
        assert_eq!(workload.labels("api")["flotilla.io/revision"], "7");
    }

    #[test]
    fn a_restart_changes_the_template_and_scaling_does_not() {
        let spec = |extra: serde_json::Value| {
            let mut spec = json!({"environment": "test", "components": [{"name": "api", "image": "a", "replicas": 2}]});
            for (key, value) in extra.as_object().unwrap() {
                spec[key] = value.clone();
            }
            let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
            Workload::resolve(key(), 1, &spec, &|_| None).unwrap().components[0].template_hash()
        };
        let plain = spec(json!({}));
        let mut scaled = json!({"environment": "test", "components": [{"name": "api", "image": "a", "replicas": 5}]});
        let scaled_spec: ApplicationSpec = serde_json::from_value(scaled.take()).unwrap();
        let scaled_hash = Workload::resolve(key(), 2, &scaled_spec, &|_| None).unwrap().components[0].template_hash();
        assert_eq!(plain, scaled_hash, "scaling keeps the template");
        let restarted = spec(json!({"restartedAt": "2026-12-06T10:00:00Z"}));
        assert_ne!(plain, restarted, "a restart changes it");
        assert_ne!(restarted, spec(json!({"restartedAt": "2026-12-06T11:00:00Z"})), "and so does the next one");
    }

    #[test]
    fn a_missing_secret_is_named_by_path_without_values() {
        let spec: ApplicationSpec = serde_json::from_value(json!({"environment": "test", "components": [{
            "name": "api", "image": "a", "env": [{"name": "X", "fromSecret": {"secret": "db", "key": "gone"}}]}]}))
        .unwrap();
        let error = Workload::resolve(key(), 1, &spec, &|_| None).unwrap_err();
        assert_eq!(error.path, "spec.components[0].env[0].fromSecret");
        assert!(error.message.contains("\"gone\""), "{error}");
    }
}
