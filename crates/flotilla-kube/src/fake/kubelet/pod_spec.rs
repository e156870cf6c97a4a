//! What a pod's spec asks of the node, in the runtime's terms: probes, the container's
//! CRI configuration, its environment (values, ConfigMap and Secret keys, `envFrom`) and its
//! volumes (ConfigMap and Secret files, emptyDirs, claims) as host directories. A missing
//! source or key is an error naming it, as the kubelet reports it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use flotilla_core::kinds::quantity::{parse_bytes, parse_cpu_millis};
use flotilla_driver::workload::{ProbeAction, ResolvedProbe};
use flotilla_local::cri::api;
use serde_json::Value;

use super::{Kubelet, PodRun, log_path, pod_dir};
use crate::fake::FakeState;

/// A container's probe in the driver's terms (named ports resolved against its ports).
pub(super) fn resolve_probe(container: &Value, field: &str) -> Option<ResolvedProbe> {
    let probe = container.get(field).filter(|p| p.is_object())?;
    let port = |value: &Value| -> Option<u16> {
        match value {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(name) => container["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
    };
    let action = if let Some(http) = probe.get("httpGet") {
        ProbeAction::Http { port: port(&http["port"])?, path: http["path"].as_str().unwrap_or("/").to_string() }
    } else if let Some(tcp) = probe.get("tcpSocket") {
        ProbeAction::Tcp { port: port(&tcp["port"])? }
    } else {
        let command = probe["exec"]["command"].as_array()?.iter().filter_map(|c| c.as_str().map(str::to_string));
        ProbeAction::Exec { command: command.collect() }
    };
    let number = |key: &str, default: u32| probe[key].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(default);
    Some(ResolvedProbe {
        action,
        initial_delay_seconds: number("initialDelaySeconds", 0),
        period_seconds: number("periodSeconds", 10),
        timeout_seconds: number("timeoutSeconds", 1),
        success_threshold: number("successThreshold", 1),
        failure_threshold: number("failureThreshold", 3),
    })
}

/// The CRI container for container `index` of the pod: its env and volumes resolved against
/// the API's ConfigMaps, Secrets and claims (an `Err` names what is missing).
pub(super) fn container_config(
    state: &FakeState,
    kubelet: &Kubelet,
    run: &PodRun,
    index: usize,
) -> Result<api::ContainerConfig, String> {
    let container = &run.containers[index];
    let spec = &container.spec;
    let pod = state
        .objects
        .get(&("v1".to_string(), "pods".to_string(), Some(run.namespace.clone())))
        .and_then(|pods| pods.get(&run.name))
        .ok_or_else(|| format!("pod {} is gone", run.name))?;
    let envs = environment(state, &run.namespace, spec)?
        .into_iter()
        .map(|(key, value)| api::KeyValue { key, value })
        .collect();
    let mounts = mounts(state, &kubelet.dir, &run.uid, &run.namespace, &pod["spec"], spec)?;
    let strings = |value: &Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
    };
    let limits = &spec["resources"]["limits"];
    let cpu_millis = limits["cpu"].as_str().and_then(|q| parse_cpu_millis(q).ok());
    let memory = limits["memory"].as_str().and_then(|q| parse_bytes(q).ok());
    let resources = api::LinuxContainerResources {
        cpu_period: cpu_millis.map_or(0, |_| 100_000),
        cpu_quota: cpu_millis.map_or(0, |m| i64::try_from(m * 100).unwrap_or(i64::MAX).max(1000)),
        memory_limit_in_bytes: memory.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        ..Default::default()
    };
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: container.name(), attempt: container.attempt }),
        image: Some(api::ImageSpec {
            image: spec["image"].as_str().unwrap_or_default().to_string(),
            ..Default::default()
        }),
        command: strings(&spec["command"]),
        args: strings(&spec["args"]),
        working_dir: spec["workingDir"].as_str().unwrap_or_default().to_string(),
        envs,
        mounts,
        labels: kubelet.labels.clone(),
        log_path: log_path(&container.name(), container.attempt),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(flotilla_local::instance::namespaces()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

fn namespaced<'a>(state: &'a FakeState, namespace: &str, resource: &str, name: &str) -> Option<&'a Value> {
    state.objects.get(&("v1".to_string(), resource.to_string(), Some(namespace.to_string())))?.get(name)
}

/// The key/value pairs of a ConfigMap (`data`) or Secret (`data`, base64).
fn source_data(state: &FakeState, namespace: &str, resource: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let object = namespaced(state, namespace, resource, name)?;
    let data = object["data"].as_object().cloned().unwrap_or_default();
    Some(
        data.into_iter()
            .filter_map(|(key, value)| {
                let text = value.as_str()?;
                let bytes = if resource == "secrets" {
                    base64::engine::general_purpose::STANDARD.decode(text).ok()?
                } else {
                    text.as_bytes().to_vec()
                };
                Some((key, bytes))
            })
            .collect(),
    )
}

/// The environment of `container` in `namespace`: `env` values and references to ConfigMap
/// and Secret keys, and `envFrom` sources. A missing source or key is an error, as on a node.
pub(crate) fn environment(
    state: &FakeState,
    namespace: &str,
    container: &Value,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let (resource, reference) = match (source.get("configMapRef"), source.get("secretRef")) {
            (Some(reference), _) => ("configmaps", reference),
            (_, Some(reference)) => ("secrets", reference),
            _ => continue,
        };
        let name = reference["name"].as_str().unwrap_or_default();
        let prefix = source["prefix"].as_str().unwrap_or_default();
        let data =
            source_data(state, namespace, resource, name).ok_or_else(|| format!("{resource} \"{name}\" not found"))?;
        env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned())));
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default().to_string();
        if let Some(value) = var["value"].as_str() {
            env.push((name, value.to_string()));
            continue;
        }
        let from = &var["valueFrom"];
        let (resource, reference) = match (from.get("configMapKeyRef"), from.get("secretKeyRef")) {
            (Some(reference), _) => ("configmaps", reference),
            (_, Some(reference)) => ("secrets", reference),
            _ => continue,
        };
        let source = reference["name"].as_str().unwrap_or_default();
        let key = reference["key"].as_str().unwrap_or_default();
        let value = source_data(state, namespace, resource, source)
            .and_then(|data| data.get(key).cloned())
            .ok_or_else(|| format!("couldn't find key {key} in {resource} {namespace}/{source}"))?;
        env.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    Ok(env)
}

/// The container's volume mounts as host directories under the pod's directory: ConfigMap
/// and Secret volumes written out (their `items`, or every key) and emptyDirs; and claims,
/// one directory per claim under `root` (outliving the pod).
fn mounts(
    state: &FakeState,
    root: &Path,
    uid: &str,
    namespace: &str,
    pod_spec: &Value,
    container: &Value,
) -> Result<Vec<api::Mount>, String> {
    let volumes: BTreeMap<String, &Value> = pod_spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    let pod_dir = pod_dir(root, uid);
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume_name = mount["name"].as_str().unwrap_or_default();
        let volume = volumes.get(volume_name).ok_or_else(|| format!("volume {volume_name:?} is not in the pod"))?;
        let host = if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
            namespaced(state, namespace, "persistentvolumeclaims", claim)
                .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
            root.join("claims").join(namespace).join(claim)
        } else if volume.get("emptyDir").is_some() {
            pod_dir.join("volumes").join(volume_name)
        } else {
            let (resource, source, name) = match (volume.get("configMap"), volume.get("secret")) {
                (Some(source), _) => ("configmaps", source, source["name"].as_str().unwrap_or_default()),
                (_, Some(source)) => ("secrets", source, source["secretName"].as_str().unwrap_or_default()),
                _ => return Err(format!("volume {volume_name:?} has a source this node does not support")),
            };
            let data = source_data(state, namespace, resource, name)
                .ok_or_else(|| format!("{resource} \"{name}\" not found"))?;
            let dir = pod_dir.join("volumes").join(volume_name);
            let items: Vec<(String, String, u32)> = match source["items"].as_array() {
                Some(items) => items
                    .iter()
                    .map(|i| {
                        let mode = i["mode"].as_u64().or(source["defaultMode"].as_u64()).unwrap_or(0o644);
                        (
                            i["key"].as_str().unwrap_or_default().into(),
                            i["path"].as_str().unwrap_or_default().into(),
                            mode as u32,
                        )
                    })
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone(), 0o644)).collect(),
            };
            for (key, path, mode) in items {
                let content = data.get(&key).ok_or_else(|| format!("couldn't find key {key} in {resource} {name}"))?;
                let file = dir.join(&path);
                write_file(&file, content, mode)?;
            }
            dir
        };
        std::fs::create_dir_all(&host).map_err(|e| format!("cannot create {}: {e}", host.display()))?;
        let host = match mount["subPath"].as_str().filter(|s| !s.is_empty()) {
            Some(sub) => host.join(sub),
            None => host,
        };
        mounts.push(api::Mount {
            container_path: mount["mountPath"].as_str().unwrap_or_default().to_string(),
            host_path: host.display().to_string(),
            readonly: mount["readOnly"].as_bool().unwrap_or(false),
            ..Default::default()
        });
    }
    Ok(mounts)
}

fn write_file(file: &Path, content: &[u8], mode: u32) -> Result<(), String> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(file, content).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", file.display()))
}
