//! Rendering (pure): one revision of an application becomes the Kubernetes objects that run
//! it, in the namespace of its project environment.
//!
//! Per environment ([`environment_objects`]): the Namespace, and a NetworkPolicy that lets
//! pods be reached only from their own namespace, so environments are isolated from each
//! other as on the embedded runtime.
//!
//! Per component ([`render`]): a Deployment, or a StatefulSet (with a headless Service and a
//! volume claim per instance) when the component asks for stable identity; a Service when
//! it has ports (NodePort for published ports, with a NetworkPolicy letting those in); a
//! ConfigMap of its configuration files and a Secret of its secret values (env and files);
//! a PersistentVolumeClaim per persistent volume of a Deployment; a HorizontalPodAutoscaler
//! when it autoscales; a PodDisruptionBudget when it runs more than one instance.
//!
//! Every object carries the workload's labels (project, environment, application,
//! component, revision) and `app.kubernetes.io/managed-by: flotilla`. Selectors use the
//! labels that never change (not the revision), and pod templates carry the component's
//! template hash instead of the revision: scaling or going back to an earlier spec changes
//! no pod template, so no pod restarts, as on the embedded runtime.

use std::collections::BTreeMap;

use base64::Engine;
use flotilla_core::kinds::{NodeOperator, Protocol, RestartPolicy, TaintEffect, TolerationOperator};
use flotilla_driver::workload::{
    ComponentWorkload, ProbeAction, ResolvedProbe, VolumeSource, Workload, WorkloadKey, labels,
};
use serde_json::{Map, Value, json};
use sha2::Digest;

/// Labels marking what Flotilla manages.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "flotilla");
/// The NetworkPolicy isolating an environment's namespace.
pub const ISOLATION_POLICY: &str = "flotilla-environment-isolation";
/// Longest name of a StatefulSet: its pods' `controller-revision-hash` label (name + `-` +
/// a 10-character hash) must fit in 63 characters.
const STATEFUL_SET_NAME_MAX: usize = 52;
/// Longest DNS label (object names that become DNS names: Services, Namespaces).
const LABEL_MAX: usize = 63;

/// What a workload renders to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Objects in the order they are applied (configuration before what mounts it).
    pub objects: Vec<Value>,
    /// What Kubernetes cannot honour as asked, and what was done instead.
    pub warnings: Vec<String>,
}

/// A DNS label made of `parts` joined by `-`, at most `max` long: shortened with a hash of the
/// whole when longer, and starting with a letter (Service names must).
fn dns_name(parts: &[&str], max: usize) -> String {
    let joined = parts.join("-");
    let mut name = if joined.starts_with(|c: char| c.is_ascii_lowercase()) { joined } else { format!("x-{joined}") };
    if name.len() > max {
        let hash = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..4]);
        name.truncate(max - hash.len() - 1);
        let trimmed = name.trim_end_matches('-').to_string();
        name = format!("{trimmed}-{hash}");
    }
    name
}

/// The namespace of a project environment.
pub fn namespace_name(project: &str, environment: &str) -> String {
    dns_name(&[project, environment], LABEL_MAX)
}

fn environment_labels(project: &str, environment: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), project.to_string()),
        (labels::ENVIRONMENT.to_string(), environment.to_string()),
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
    ])
}

/// The Namespace of a project environment and the NetworkPolicy isolating it: pods there
/// take connections from pods of the same namespace only (published ports have policies of
/// their own).
pub fn environment_objects(project: &str, environment: &str) -> Vec<Value> {
    let namespace = namespace_name(project, environment);
    let labels = environment_labels(project, environment);
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}}),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": ISOLATION_POLICY, "namespace": namespace, "labels": labels},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}
        }),
    ]
}

/// The names of a component's objects.
struct Names {
    /// Deployment or StatefulSet, Service, HPA, PDB.
    workload: String,
    config: String,
    secret: String,
    /// The headless Service of a StatefulSet.
    headless: String,
    published: String,
}

impl Names {
    fn of(application: &str, component: &str, stateful: bool) -> Self {
        let max = if stateful { STATEFUL_SET_NAME_MAX } else { LABEL_MAX };
        let workload = dns_name(&[application, component], max);
        Names {
            config: format!("{workload}-files"),
            secret: format!("{workload}-secret"),
            headless: format!("{workload}-pods"),
            published: format!("{workload}-published"),
            workload,
        }
    }
}

/// Labels that select a component's pods (never change during its life).
fn selector(key: &WorkloadKey, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), key.project.clone()),
        (labels::ENVIRONMENT.to_string(), key.environment.clone()),
        (labels::APPLICATION.to_string(), key.application.clone()),
        (labels::COMPONENT.to_string(), component.to_string()),
    ])
}

/// A container port name (IANA service name: at most 15 characters, with a letter).
fn container_port_name(name: &str) -> Option<&str> {
    (name.len() <= 15 && name.chars().any(|c| c.is_ascii_lowercase())).then_some(name)
}

fn protocol(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// How long a container that failed its liveness or startup probe gets to stop before it is
/// killed: as on the embedded runtime (Kubernetes would otherwise take the pod's 30 s).
pub const PROBE_KILL_GRACE_SECONDS: u32 = 5;

/// A probe; `kills` for liveness and startup probes (a failure restarts the container).
fn probe(probe: &ResolvedProbe, kills: bool) -> Value {
    let mut value = match &probe.action {
        ProbeAction::Http { port, path } => json!({"httpGet": {"port": port, "path": path}}),
        ProbeAction::Tcp { port } => json!({"tcpSocket": {"port": port}}),
        ProbeAction::Exec { command } => json!({"exec": {"command": command}}),
    };
    value["initialDelaySeconds"] = json!(probe.initial_delay_seconds);
    value["periodSeconds"] = json!(probe.period_seconds);
    value["timeoutSeconds"] = json!(probe.timeout_seconds);
    value["successThreshold"] = json!(probe.success_threshold);
    value["failureThreshold"] = json!(probe.failure_threshold);
    if kills {
        value["terminationGracePeriodSeconds"] = json!(PROBE_KILL_GRACE_SECONDS);
    }
    value
}

/// CPU in Kubernetes' canonical form: whole cores as a number, else millicores (`250m`).
pub fn cpu_quantity(millis: u64) -> String {
    if millis.is_multiple_of(1000) { (millis / 1000).to_string() } else { format!("{millis}m") }
}

/// Bytes in Kubernetes' canonical form: the largest binary suffix that divides them exactly
/// (`64Mi`, `10Gi`), else a plain number. The API server answers in this form, so a spec
/// compared with what it reads back does not differ in notation only.
pub fn bytes_quantity(bytes: u64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes == 0 {
        return "0".into();
    }
    let mut value = bytes;
    let mut suffix = None;
    for candidate in SUFFIXES {
        if !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = Some(candidate);
    }
    format!("{value}{}", suffix.unwrap_or_default())
}

/// The key of a secret env value in the component's Secret.
fn env_key(name: &str) -> String {
    format!("env.{name}")
}

fn file_key(index: usize) -> String {
    format!("file-{index}")
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn node_requirement(key: &str, operator: NodeOperator, values: &[String]) -> Value {
    let operator = match operator {
        NodeOperator::In => "In",
        NodeOperator::NotIn => "NotIn",
        NodeOperator::Exists => "Exists",
        NodeOperator::DoesNotExist => "DoesNotExist",
        NodeOperator::Gt => "Gt",
        NodeOperator::Lt => "Lt",
    };
    let mut requirement = json!({"key": key, "operator": operator});
    if !values.is_empty() {
        requirement["values"] = json!(values);
    }
    requirement
}

/// `affinity`, `nodeSelector` and `tolerations` of a pod spec.
fn scheduling(component: &ComponentWorkload, selector: &BTreeMap<String, String>, pod: &mut Map<String, Value>) {
    let scheduling = &component.scheduling;
    if !scheduling.node_selector.is_empty() {
        pod.insert("nodeSelector".into(), json!(scheduling.node_selector));
    }
    let mut affinity = Map::new();
    let node = &scheduling.node_affinity;
    if !node.is_empty() {
        let mut node_affinity = Map::new();
        if !node.required.is_empty() {
            let expressions: Vec<Value> =
                node.required.iter().map(|r| node_requirement(&r.key, r.operator, &r.values)).collect();
            node_affinity.insert(
                "requiredDuringSchedulingIgnoredDuringExecution".into(),
                json!({"nodeSelectorTerms": [{"matchExpressions": expressions}]}),
            );
        }
        if !node.preferred.is_empty() {
            let preferred: Vec<Value> = node
                .preferred
                .iter()
                .map(|p| {
                    json!({"weight": p.weight,
                        "preference": {"matchExpressions": [node_requirement(&p.key, p.operator, &p.values)]}})
                })
                .collect();
            node_affinity.insert("preferredDuringSchedulingIgnoredDuringExecution".into(), json!(preferred));
        }
        affinity.insert("nodeAffinity".into(), Value::Object(node_affinity));
    }
    if scheduling.spread {
        affinity.insert(
            "podAntiAffinity".into(),
            json!({"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}}]}),
        );
    }
    if !affinity.is_empty() {
        pod.insert("affinity".into(), Value::Object(affinity));
    }
    if !scheduling.tolerations.is_empty() {
        let tolerations: Vec<Value> = scheduling
            .tolerations
            .iter()
            .map(|t| {
                let mut toleration = Map::new();
                if let Some(key) = &t.key {
                    toleration.insert("key".into(), json!(key));
                }
                let operator = match t.operator {
                    TolerationOperator::Equal => "Equal",
                    TolerationOperator::Exists => "Exists",
                };
                toleration.insert("operator".into(), json!(operator));
                if let Some(value) = &t.value {
                    toleration.insert("value".into(), json!(value));
                }
                if let Some(effect) = t.effect {
                    let effect = match effect {
                        TaintEffect::NoSchedule => "NoSchedule",
                        TaintEffect::PreferNoSchedule => "PreferNoSchedule",
                        TaintEffect::NoExecute => "NoExecute",
                    };
                    toleration.insert("effect".into(), json!(effect));
                }
                if let Some(seconds) = t.toleration_seconds {
                    toleration.insert("tolerationSeconds".into(), json!(seconds));
                }
                Value::Object(toleration)
            })
            .collect();
        pod.insert("tolerations".into(), json!(tolerations));
    }
}

/// Renders every component of `workload` (not the environment's objects: see
/// [`environment_objects`]).
pub fn render(workload: &Workload) -> Rendered {
    let mut rendered = Rendered { objects: Vec::new(), warnings: Vec::new() };
    for component in &workload.components {
        render_component(workload, component, &mut rendered);
    }
    rendered
}

fn render_component(workload: &Workload, component: &ComponentWorkload, out: &mut Rendered) {
    let key = &workload.key;
    let namespace = namespace_name(&key.project, &key.environment);
    let stateful = component.scheduling.stable_identity;
    let names = Names::of(&key.application, &component.name, stateful);
    let mut object_labels = workload.labels(&component.name);
    object_labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    let selector = selector(key, &component.name);
    let metadata = |name: &str| json!({"name": name, "namespace": namespace, "labels": object_labels});
    let warn =
        |out: &mut Rendered, message: String| out.warnings.push(format!("component {:?}: {message}", component.name));

    // Configuration files and secret values.
    let config_files: Vec<(usize, _)> = component.files.iter().enumerate().filter(|(_, f)| !f.secret).collect();
    let secret_files: Vec<(usize, _)> = component.files.iter().enumerate().filter(|(_, f)| f.secret).collect();
    if !config_files.is_empty() {
        let mut data = BTreeMap::new();
        let mut binary = BTreeMap::new();
        for (index, file) in &config_files {
            match std::str::from_utf8(&file.content) {
                Ok(text) => data.insert(file_key(*index), json!(text)),
                Err(_) => binary.insert(file_key(*index), json!(base64(&file.content))),
            };
        }
        let mut config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(&names.config)});
        if !data.is_empty() {
            config_map["data"] = json!(data);
        }
        if !binary.is_empty() {
            config_map["binaryData"] = json!(binary);
        }
        out.objects.push(config_map);
    }
    let secret_env: Vec<&(String, String)> =
        component.env.iter().filter(|(name, _)| component.secret_env.contains(name)).collect();
    if !secret_env.is_empty() || !secret_files.is_empty() {
        let mut data = BTreeMap::new();
        for (name, value) in &secret_env {
            data.insert(env_key(name), base64(value.as_bytes()));
        }
        for (index, file) in &secret_files {
            data.insert(file_key(*index), base64(&file.content));
        }
        out.objects.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(&names.secret),
            "type": "Opaque", "data": data}));
    }

    // The container.
    let env: Vec<Value> = component
        .env
        .iter()
        .map(|(name, value)| {
            if component.secret_env.contains(name) {
                json!({"name": name, "valueFrom": {"secretKeyRef": {"name": names.secret, "key": env_key(name)}}})
            } else {
                json!({"name": name, "value": value})
            }
        })
        .collect();
    let mut container = Map::new();
    container.insert("name".into(), json!(component.name));
    container.insert("image".into(), json!(component.image));
    if !component.command.is_empty() {
        container.insert("command".into(), json!(component.command));
    }
    if !component.args.is_empty() {
        container.insert("args".into(), json!(component.args));
    }
    if !env.is_empty() {
        container.insert("env".into(), json!(env));
    }
    if !component.ports.is_empty() {
        let ports: Vec<Value> = component
            .ports
            .iter()
            .map(|p| {
                let mut port = json!({"containerPort": p.port, "protocol": protocol(p.protocol)});
                if let Some(name) = container_port_name(&p.name) {
                    port["name"] = json!(name);
                }
                port
            })
            .collect();
        container.insert("ports".into(), json!(ports));
    }
    let mut requests = Map::new();
    let mut limits = Map::new();
    if let Some(cpu) = component.cpu_request_millis {
        requests.insert("cpu".into(), json!(cpu_quantity(cpu)));
    }
    if let Some(memory) = component.memory_request_bytes {
        requests.insert("memory".into(), json!(bytes_quantity(memory)));
    }
    if let Some(cpu) = component.cpu_limit_millis {
        limits.insert("cpu".into(), json!(cpu_quantity(cpu)));
    }
    if let Some(memory) = component.memory_limit_bytes {
        limits.insert("memory".into(), json!(bytes_quantity(memory)));
    }
    if !requests.is_empty() || !limits.is_empty() {
        let mut resources = Map::new();
        if !requests.is_empty() {
            resources.insert("requests".into(), Value::Object(requests));
        }
        if !limits.is_empty() {
            resources.insert("limits".into(), Value::Object(limits));
        }
        container.insert("resources".into(), Value::Object(resources));
    }
    for (field, resolved) in [
        ("startupProbe", &component.startup),
        ("readinessProbe", &component.readiness),
        ("livenessProbe", &component.liveness),
    ] {
        if let Some(resolved) = resolved {
            container.insert(field.into(), probe(resolved, field != "readinessProbe"));
        }
    }

    // Volumes and mounts.
    let mut volumes: Vec<Value> = Vec::new();
    let mut mounts: Vec<Value> = Vec::new();
    let mut claim_templates: Vec<Value> = Vec::new();
    if !config_files.is_empty() {
        let items: Vec<Value> = config_files
            .iter()
            .map(|(i, f)| json!({"key": file_key(*i), "path": file_key(*i), "mode": f.mode}))
            .collect();
        volumes.push(json!({"name": "flotilla-files", "configMap": {"name": names.config, "items": items}}));
    }
    if !secret_files.is_empty() {
        let items: Vec<Value> = secret_files
            .iter()
            .map(|(i, f)| json!({"key": file_key(*i), "path": file_key(*i), "mode": f.mode}))
            .collect();
        volumes.push(json!({"name": "flotilla-secret-files", "secret": {"secretName": names.secret, "items": items}}));
    }
    for (index, file) in component.files.iter().enumerate() {
        let volume = if file.secret { "flotilla-secret-files" } else { "flotilla-files" };
        mounts.push(json!({"name": volume, "mountPath": file.path, "subPath": file_key(index), "readOnly": true}));
    }
    let replicas = component.replicas;
    for volume in &component.volumes {
        let volume_name = format!("volume-{}", volume.name);
        mounts.push(json!({"name": volume_name, "mountPath": volume.mount_path, "readOnly": volume.read_only}));
        match &volume.source {
            VolumeSource::Persistent { size_bytes } => {
                let claim_spec = json!({"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": bytes_quantity(*size_bytes)}}});
                if stateful {
                    claim_templates
                        .push(json!({"metadata": {"name": volume_name, "labels": selector}, "spec": claim_spec}));
                } else {
                    let claim = dns_name(&[&names.workload, &volume.name], LABEL_MAX);
                    let mut claim_metadata = metadata(&claim);
                    // A claim outlives revisions: its labels do not name one.
                    claim_metadata["labels"].as_object_mut().map(|l| l.remove(labels::REVISION));
                    out.objects.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": claim_metadata, "spec": claim_spec}));
                    volumes.push(json!({"name": volume_name, "persistentVolumeClaim": {"claimName": claim}}));
                    if replicas > 1 || component.autoscaling.is_some() {
                        warn(
                            out,
                            format!(
                                "instances share the ReadWriteOnce volume {:?}: they must run on one node; \
                                 set scheduling.stableIdentity for a volume each",
                                volume.name
                            ),
                        );
                    }
                }
            }
            VolumeSource::Scratch { size_limit_bytes } => {
                let empty_dir = match size_limit_bytes {
                    Some(limit) => json!({"sizeLimit": bytes_quantity(*limit)}),
                    None => json!({}),
                };
                volumes.push(json!({"name": volume_name, "emptyDir": empty_dir}));
            }
            VolumeSource::HostPath { path } => {
                volumes.push(json!({"name": volume_name, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}));
            }
        }
    }
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), json!(mounts));
    }

    // The pod template.
    if component.restart_policy != RestartPolicy::Always {
        warn(
            out,
            format!(
                "restartPolicy {:?} is not possible for a Deployment or StatefulSet on Kubernetes: Always is used",
                component.restart_policy
            ),
        );
    }
    let mut pod_labels = selector.clone();
    pod_labels.insert(labels::TEMPLATE.into(), component.template_hash());
    pod_labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    let mut pod = Map::new();
    pod.insert("containers".into(), json!([Value::Object(container)]));
    pod.insert("restartPolicy".into(), json!("Always"));
    // Instances talk to the Kubernetes API only when given an identity for it, and their
    // environment holds what the application sets, not every Service of the namespace.
    pod.insert("automountServiceAccountToken".into(), json!(false));
    pod.insert("enableServiceLinks".into(), json!(false));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), json!(volumes));
    }
    scheduling(component, &selector, &mut pod);
    let mut template = json!({"metadata": {"labels": pod_labels}, "spec": Value::Object(pod)});
    if let Some(time) = &component.restarted_at {
        // As `kubectl rollout restart` does: a changed pod template replaces every pod.
        template["metadata"]["annotations"] = json!({"flotilla.io/restarted-at": time});
    }

    // Deployment or StatefulSet.
    let mut spec = Map::new();
    if component.autoscaling.is_none() {
        // With an autoscaler, the replica count is its to set.
        spec.insert("replicas".into(), json!(replicas));
    }
    spec.insert("selector".into(), json!({"matchLabels": selector}));
    spec.insert("template".into(), template);
    spec.insert("revisionHistoryLimit".into(), json!(10));
    let (max_surge, max_unavailable) = match (component.max_surge, component.max_unavailable) {
        (0, 0) => (1, 0),
        pair => pair,
    };
    let kind = if stateful {
        spec.insert("serviceName".into(), json!(names.headless));
        spec.insert("podManagementPolicy".into(), json!("Parallel"));
        spec.insert("updateStrategy".into(), json!({"type": "RollingUpdate"}));
        if !claim_templates.is_empty() {
            spec.insert("volumeClaimTemplates".into(), json!(claim_templates));
        }
        let headless_ports: Vec<Value> = component
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "port": p.port, "targetPort": p.port, "protocol": protocol(p.protocol)}))
            .collect();
        let mut headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(&names.headless),
            "spec": {"clusterIP": "None", "selector": selector, "publishNotReadyAddresses": true}});
        if !headless_ports.is_empty() {
            headless["spec"]["ports"] = json!(headless_ports);
        }
        out.objects.push(headless);
        "StatefulSet"
    } else {
        spec.insert("progressDeadlineSeconds".into(), json!(component.progress_deadline_seconds));
        spec.insert(
            "strategy".into(),
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}}),
        );
        "Deployment"
    };
    out.objects.push(json!({"apiVersion": "apps/v1", "kind": kind, "metadata": metadata(&names.workload),
        "spec": Value::Object(spec)}));

    // The Service, and the policy letting published ports in.
    if !component.ports.is_empty() {
        let published: Vec<_> = component.ports.iter().filter(|p| p.publish.is_some()).collect();
        let ports: Vec<Value> = component
            .ports
            .iter()
            .map(|p| {
                let mut port =
                    json!({"name": p.name, "port": p.port, "targetPort": p.port, "protocol": protocol(p.protocol)});
                if let Some(host_port) = p.publish {
                    if (30000..=32767).contains(&host_port) {
                        port["nodePort"] = json!(host_port);
                    } else {
                        warn(
                            out,
                            format!(
                                "port {:?} is published on {host_port}, outside Kubernetes' node port range \
                                 (30000-32767): the cluster picks the node port",
                                p.name
                            ),
                        );
                    }
                }
                port
            })
            .collect();
        let service_type = if published.is_empty() { "ClusterIP" } else { "NodePort" };
        out.objects.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(&names.workload),
            "spec": {"type": service_type, "selector": selector, "ports": ports}}));
        if !published.is_empty() {
            let ports: Vec<Value> =
                published.iter().map(|p| json!({"port": p.port, "protocol": protocol(p.protocol)})).collect();
            out.objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": metadata(&names.published),
                "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"],
                    "ingress": [{"ports": ports}]}}));
        }
    }

    // Elastic scaling.
    if let Some(autoscaling) = &component.autoscaling {
        let mut metrics = Vec::new();
        for (resource, target) in
            [("cpu", autoscaling.target_cpu_percent), ("memory", autoscaling.target_memory_percent)]
        {
            if let Some(percent) = target {
                metrics.push(json!({"type": "Resource", "resource": {"name": resource,
                    "target": {"type": "Utilization", "averageUtilization": percent}}}));
            }
        }
        out.objects.push(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(&names.workload),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": names.workload},
                "minReplicas": autoscaling.min_replicas, "maxReplicas": autoscaling.max_replicas, "metrics": metrics}}));
    }

    // Voluntary disruptions (node drains) take at most what a rollout may.
    let fewest = component.autoscaling.as_ref().map_or(replicas, |a| a.min_replicas);
    if fewest > 1 {
        out.objects.push(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(&names.workload),
            "spec": {"maxUnavailable": max_unavailable.max(1), "selector": {"matchLabels": selector}}}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_in_canonical_form() {
        assert_eq!(
            (cpu_quantity(2000), cpu_quantity(250), cpu_quantity(1500)),
            ("2".into(), "250m".into(), "1500m".into())
        );
        assert_eq!(bytes_quantity(64 << 20), "64Mi");
        assert_eq!(bytes_quantity(10 << 30), "10Gi");
        assert_eq!(
            (bytes_quantity(1536), bytes_quantity(3 << 10)),
            ("1536".into(), "3Ki".into()),
            "1.5Ki stays in bytes"
        );
        assert_eq!(bytes_quantity(1000), "1000");
    }

    #[test]
    fn names_are_dns_labels_within_their_limits() {
        assert_eq!(namespace_name("shop", "test"), "shop-test");
        assert_eq!(dns_name(&["3d", "web"], 63), "x-3d-web", "a Service name starts with a letter");
        let long = "a".repeat(63);
        let name = dns_name(&[&long, "web"], STATEFUL_SET_NAME_MAX);
        assert_eq!(name.len(), STATEFUL_SET_NAME_MAX);
        assert_ne!(name, dns_name(&[&long, "api"], STATEFUL_SET_NAME_MAX), "the hash keeps shortened names apart");
    }
}
