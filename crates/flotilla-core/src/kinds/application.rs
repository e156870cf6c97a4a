//! `Application`: what an application team deploys to one environment of a project. One or
//! more components, each a set of identical instances of one image, with its ports, probes,
//! resources, volumes and update strategy. No servers in sight: the cluster the environment
//! is bound to decides where instances run.
//!
//! The same spec runs on the embedded runtime and on Kubernetes; fields that only one of them
//! can honour (scheduling hints) are kept and reported where ignored.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quantity::{ResourceQuota, parse_bytes, parse_cpu_millis};
use super::{Category, KindSpec, ProjectSpec, Reference, Related, Scope};
use crate::object::ObjectMeta;
use crate::validation::{ValidationErrors, check_data_key, check_dns_label};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSpec {
    /// The environment of the project the application runs in.
    pub environment: String,
    #[schemars(length(min = 1, max = 32))]
    pub components: Vec<Component>,
    /// Configuration values, used by components as environment variables or files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// On a Kubernetes cluster, put back what was changed out of band (drift is always
    /// reported; the embedded runtime always converges).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_heal: bool,
    /// Setting it (an RFC 3339 time: `flotilla rollout restart` writes now) restarts every
    /// instance, rolling, as a new revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

/// A set of identical instances of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    pub name: String,
    /// Image reference: `registry/repository:tag` or `…@sha256:…`.
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's command (the entrypoint's arguments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Configuration and secret values mounted as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub probes: Probes,
    #[serde(default = "one")]
    #[schemars(range(max = 1000))]
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub update: UpdateStrategy,
    #[serde(default)]
    pub scheduling: Scheduling,
    /// Elastic scaling between bounds (instead of a fixed `replicas`, which is then where it
    /// starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

fn one() -> u32 {
    1
}

/// An environment variable: exactly one of `value`, `fromConfig`, `fromSecret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A key of the application's `spec.config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_secret: Option<SecretKeyRef>,
}

/// One key of a `Secret` of the same project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub secret: String,
    pub key: String,
}

/// A file in the container with a configuration or secret value: exactly one of
/// `fromConfig`, `fromSecret`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileMount {
    /// Absolute path of the file in the container.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_secret: Option<SecretKeyRef>,
    /// Permission bits (octal in YAML: `0o440` or `288`); default 0444, secrets 0400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 0o777))]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// A port the component listens on. Components with ports get a service address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    /// Also publish the service on this port of the host (admins and prod policies decide
    /// who may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub publish: Option<u16>,
}

/// CPU (`500m`, `2`) and memory (`256Mi`) of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Amounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// What one instance is guaranteed (`requests`) and may not exceed (`limits`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub requests: Amounts,
    #[serde(default)]
    pub limits: Amounts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// Until it succeeds, the other probes do not run (slow starters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
    /// Failing: the instance receives no traffic, and a rollout waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Failing: the container is restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

/// A health check: exactly one of `http`, `tcp`, `exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    #[serde(default)]
    #[schemars(range(max = 3600))]
    pub initial_delay_seconds: u32,
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
}

fn ten() -> u32 {
    10
}

fn three() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpProbe {
    #[serde(default = "root_path")]
    pub path: String,
    /// A port number or the name of one of the component's ports.
    pub port: PortRef,
}

fn root_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpProbe {
    pub port: PortRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecProbe {
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
}

/// A port by number or by the name of one of the component's ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// Storage mounted into every instance: exactly one of `persistent`, `scratch`, `hostPath`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    /// Absolute path in the container.
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    /// A named volume that outlives instances and revisions (kept when the app is deleted
    /// only if asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentVolume>,
    /// Empty at instance start, removed with the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchVolume>,
    /// A directory of the node. Platform admins only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolume {
    /// Requested size (`1Gi`).
    pub size: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScratchVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// How a new revision replaces the old one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateStrategy {
    /// Instances above `replicas` during a rollout: a number or a percentage (`25%`).
    #[serde(default = "quarter")]
    pub max_surge: IntOrPercent,
    /// Instances below `replicas` that may be unavailable during a rollout.
    #[serde(default = "quarter")]
    pub max_unavailable: IntOrPercent,
    /// A rollout that makes no progress for this long is rolled back.
    #[serde(default = "ten_minutes")]
    #[schemars(range(min = 1, max = 86400))]
    pub progress_deadline_seconds: u32,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        Self { max_surge: quarter(), max_unavailable: quarter(), progress_deadline_seconds: ten_minutes() }
    }
}

fn quarter() -> IntOrPercent {
    IntOrPercent::Percent("25%".into())
}

fn ten_minutes() -> u32 {
    600
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u32),
    Percent(String),
}

impl IntOrPercent {
    /// The absolute number for `total` instances; percentages round up for a surge and down
    /// for unavailability, as Kubernetes does.
    pub fn resolve(&self, total: u32, round_up: bool) -> Result<u32, String> {
        match self {
            IntOrPercent::Int(n) => Ok(*n),
            IntOrPercent::Percent(text) => {
                let number = text
                    .strip_suffix('%')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| *n <= 100)
                    .ok_or_else(|| format!("{text:?} is neither a number nor a percentage such as \"25%\""))?;
                let scaled = u64::from(total) * u64::from(number);
                Ok(if round_up { scaled.div_ceil(100) } else { scaled / 100 } as u32)
            }
        }
    }
}

/// Where instances may run. Honoured where the cluster gives them a meaning (Kubernetes);
/// the single-node embedded runtime reports them as ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scheduling {
    /// Node labels an instance's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Spread instances over nodes (soft anti-affinity between instances of the component).
    #[serde(default)]
    pub spread: bool,
    /// Give each instance a stable name and its own persistent volumes (a StatefulSet on
    /// Kubernetes).
    #[serde(default)]
    pub stable_identity: bool,
    /// Node labels instances must run on (`required`, all of them) or would rather
    /// (`preferred`, weighed).
    #[serde(default, skip_serializing_if = "NodeAffinity::is_empty")]
    pub node_affinity: NodeAffinity,
    /// Node taints instances tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl Scheduling {
    /// Whether any hint is given (the single-node embedded runtime honours none).
    pub fn has_hints(&self) -> bool {
        !self.node_selector.is_empty() || self.spread || !self.node_affinity.is_empty() || !self.tolerations.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinity {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<NodeRequirement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred: Vec<PreferredNode>,
}

impl NodeAffinity {
    pub fn is_empty(&self) -> bool {
        self.required.is_empty() && self.preferred.is_empty()
    }
}

/// A condition on a node label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeRequirement {
    pub key: String,
    pub operator: NodeOperator,
    /// Values for `In`/`NotIn`; one integer for `Gt`/`Lt`; none for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A node condition instances would rather have, with its weight (1–100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredNode {
    #[schemars(range(min = 1, max = 100))]
    pub weight: u32,
    pub key: String,
    pub operator: NodeOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodeOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// A taint instances may be placed on (or stay on, for `NoExecute`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Taint key; empty with `Exists` tolerates every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Which effect is tolerated; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// With `NoExecute`: how long an instance stays once the taint appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// Elastic scaling: the number of instances follows their CPU or memory use, relative to
/// their requests, between `minReplicas` and `maxReplicas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: u32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: u32,
    /// Average CPU use to keep, in percent of the CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_percent: Option<u32>,
    /// Average memory use to keep, in percent of the memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_memory_percent: Option<u32>,
}

impl Component {
    /// What the component's instances hold of a quota: requests (limits where no request is
    /// given) times replicas.
    pub fn usage(&self) -> ResourceQuota {
        let per_instance = |request: &Option<String>, limit: &Option<String>| request.clone().or_else(|| limit.clone());
        let cpu = per_instance(&self.resources.requests.cpu, &self.resources.limits.cpu)
            .and_then(|c| parse_cpu_millis(&c).ok())
            .map(|m| format!("{}m", m * u64::from(self.most_replicas())));
        let memory = per_instance(&self.resources.requests.memory, &self.resources.limits.memory)
            .and_then(|m| parse_bytes(&m).ok())
            .map(|b| (b * u64::from(self.most_replicas())).to_string());
        ResourceQuota { cpu, memory, instances: Some(self.most_replicas()) }
    }

    /// The most instances the component may run: `replicas`, or the autoscaling maximum.
    pub fn most_replicas(&self) -> u32 {
        self.autoscaling.as_ref().map_or(self.replicas, |a| a.max_replicas.max(self.replicas))
    }

    /// The number of a port given by number or name.
    pub fn port_number(&self, port: &PortRef) -> Option<u16> {
        match port {
            PortRef::Number(n) => Some(*n),
            PortRef::Name(name) => self.ports.iter().find(|p| &p.name == name).map(|p| p.port),
        }
    }
}

impl ApplicationSpec {
    /// What the whole application holds of its project's quota.
    pub fn usage(&self) -> ResourceQuota {
        let mut cpu = None::<u64>;
        let mut memory = None::<u64>;
        let mut instances = 0u32;
        for component in &self.components {
            let usage = component.usage();
            if let Some(c) = usage.cpu.and_then(|c| parse_cpu_millis(&c).ok()) {
                cpu = Some(cpu.unwrap_or_default() + c);
            }
            if let Some(m) = usage.memory.and_then(|m| parse_bytes(&m).ok()) {
                memory = Some(memory.unwrap_or_default() + m);
            }
            instances += component.most_replicas();
        }
        ResourceQuota {
            cpu: cpu.map(|c| format!("{c}m")),
            memory: memory.map(|m| m.to_string()),
            instances: Some(instances),
        }
    }

    /// The Secrets the application reads, with the field paths naming them.
    fn secret_refs(&self) -> Vec<(String, &SecretKeyRef)> {
        let mut found = Vec::new();
        for (c, component) in self.components.iter().enumerate() {
            for (e, env) in component.env.iter().enumerate() {
                if let Some(secret) = &env.from_secret {
                    found.push((format!("spec.components[{c}].env[{e}].fromSecret.secret"), secret));
                }
            }
            for (f, file) in component.files.iter().enumerate() {
                if let Some(secret) = &file.from_secret {
                    found.push((format!("spec.components[{c}].files[{f}].fromSecret.secret"), secret));
                }
            }
        }
        found
    }
}

fn check_amount(
    value: &Option<String>,
    path: String,
    parse: fn(&str) -> Result<u64, String>,
    errors: &mut ValidationErrors,
) {
    if let Some(value) = value
        && let Err(problem) = parse(value)
    {
        errors.push(path, problem);
    }
}

fn check_absolute_path(path: &str, field: String, errors: &mut ValidationErrors) {
    if !path.starts_with('/') {
        errors.push(field, format!("{path:?} must be an absolute path"));
    } else if path.split('/').any(|segment| segment == "..") {
        errors.push(field, format!("{path:?} must not contain \"..\""));
    }
}

/// An environment variable name as POSIX shells accept it.
fn check_env_name(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!valid)
        .then(|| format!("{name:?} is not a valid variable name (letters, digits and _, not starting with a digit)"))
}

impl Probe {
    fn validate(&self, component: &Component, path: &str, errors: &mut ValidationErrors) {
        let kinds = [self.http.is_some(), self.tcp.is_some(), self.exec.is_some()].iter().filter(|k| **k).count();
        if kinds != 1 {
            errors.push(path.to_string(), "set exactly one of http, tcp, exec");
        }
        let port = self.http.as_ref().map(|h| (&h.port, "http")).or(self.tcp.as_ref().map(|t| (&t.port, "tcp")));
        if let Some((port, kind)) = port
            && component.port_number(port).is_none_or(|n| n == 0)
        {
            errors.push(format!("{path}.{kind}.port"), format!("{port:?} names no port of the component"));
        }
        if let Some(http) = &self.http
            && !http.path.starts_with('/')
        {
            errors.push(format!("{path}.http.path"), "must start with /");
        }
        if self.timeout_seconds > self.period_seconds {
            errors.push(format!("{path}.timeoutSeconds"), "must not exceed periodSeconds");
        }
    }
}

/// Checks node conditions and tolerations the way the Kubernetes API server does.
fn validate_scheduling(scheduling: &Scheduling, at: &str, errors: &mut ValidationErrors) {
    let requirement =
        |key: &str, operator: NodeOperator, values: &[String], path: String, errors: &mut ValidationErrors| {
            if key.is_empty() {
                errors.push(format!("{path}.key"), "must not be empty");
            }
            match operator {
                NodeOperator::In | NodeOperator::NotIn if values.is_empty() => {
                    errors.push(format!("{path}.values"), "In and NotIn need at least one value")
                }
                NodeOperator::Exists | NodeOperator::DoesNotExist if !values.is_empty() => {
                    errors.push(format!("{path}.values"), "Exists and DoesNotExist take no values")
                }
                NodeOperator::Gt | NodeOperator::Lt if values.len() != 1 || values[0].parse::<i64>().is_err() => {
                    errors.push(format!("{path}.values"), "Gt and Lt take exactly one integer")
                }
                _ => {}
            }
        };
    for (r, required) in scheduling.node_affinity.required.iter().enumerate() {
        let path = format!("{at}.nodeAffinity.required[{r}]");
        requirement(&required.key, required.operator, &required.values, path, errors);
    }
    for (p, preferred) in scheduling.node_affinity.preferred.iter().enumerate() {
        let path = format!("{at}.nodeAffinity.preferred[{p}]");
        requirement(&preferred.key, preferred.operator, &preferred.values, path, errors);
    }
    for (t, toleration) in scheduling.tolerations.iter().enumerate() {
        let path = format!("{at}.tolerations[{t}]");
        match toleration.operator {
            TolerationOperator::Exists if toleration.value.is_some() => {
                errors.push(format!("{path}.value"), "must be empty with operator Exists")
            }
            TolerationOperator::Equal if toleration.key.as_deref().is_none_or(str::is_empty) => {
                errors.push(format!("{path}.key"), "is required with operator Equal")
            }
            _ => {}
        }
        if toleration.toleration_seconds.is_some() && toleration.effect != Some(TaintEffect::NoExecute) {
            errors.push(format!("{path}.tolerationSeconds"), "only applies to effect NoExecute");
        }
    }
}

impl KindSpec for ApplicationSpec {
    const KIND: &'static str = "Application";
    const PLURAL: &'static str = "applications";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::Workload;

    fn images(&self) -> Vec<String> {
        let mut images: Vec<String> = self.components.iter().map(|c| c.image.clone()).collect();
        images.sort();
        images.dedup();
        images
    }

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(problem) = check_dns_label(&self.environment) {
            errors.push("spec.environment", problem);
        }
        if let Some(time) = &self.restarted_at
            && time.parse::<jiff::Timestamp>().is_err()
        {
            errors.push("spec.restartedAt", format!("{time:?} is not an RFC 3339 time (2026-12-06T10:00:00Z)"));
        }
        for key in self.config.keys() {
            if let Some(problem) = check_data_key(key) {
                errors.push(format!("spec.config[{key:?}]"), problem);
            }
        }
        for (c, component) in self.components.iter().enumerate() {
            let at = format!("spec.components[{c}]");
            if let Some(problem) = check_dns_label(&component.name) {
                errors.push(format!("{at}.name"), problem);
            }
            if self.components[..c].iter().any(|other| other.name == component.name) {
                errors.push(format!("{at}.name"), format!("component {:?} is defined twice", component.name));
            }
            if component.image.trim().is_empty() || component.image.chars().any(char::is_whitespace) {
                errors.push(format!("{at}.image"), "must be an image reference such as registry/repository:tag");
            }
            for (e, env) in component.env.iter().enumerate() {
                let path = format!("{at}.env[{e}]");
                if let Some(problem) = check_env_name(&env.name) {
                    errors.push(format!("{path}.name"), problem);
                }
                if component.env[..e].iter().any(|other| other.name == env.name) {
                    errors.push(format!("{path}.name"), format!("{:?} is set twice", env.name));
                }
                let sources = [env.value.is_some(), env.from_config.is_some(), env.from_secret.is_some()];
                if sources.iter().filter(|s| **s).count() != 1 {
                    errors.push(path.clone(), "set exactly one of value, fromConfig, fromSecret");
                }
                if let Some(key) = &env.from_config
                    && !self.config.contains_key(key)
                {
                    errors.push(format!("{path}.fromConfig"), format!("{key:?} is not a key of spec.config"));
                }
            }
            for (f, file) in component.files.iter().enumerate() {
                let path = format!("{at}.files[{f}]");
                check_absolute_path(&file.path, format!("{path}.path"), errors);
                if component.files[..f].iter().any(|other| other.path == file.path) {
                    errors.push(format!("{path}.path"), format!("{:?} is mounted twice", file.path));
                }
                if file.from_config.is_some() == file.from_secret.is_some() {
                    errors.push(path.clone(), "set exactly one of fromConfig, fromSecret");
                }
                if let Some(key) = &file.from_config
                    && !self.config.contains_key(key)
                {
                    errors.push(format!("{path}.fromConfig"), format!("{key:?} is not a key of spec.config"));
                }
            }
            for (p, port) in component.ports.iter().enumerate() {
                let path = format!("{at}.ports[{p}]");
                if let Some(problem) = check_dns_label(&port.name) {
                    errors.push(format!("{path}.name"), problem);
                }
                if component.ports[..p].iter().any(|other| other.name == port.name) {
                    errors.push(format!("{path}.name"), format!("port {:?} is defined twice", port.name));
                }
                if component.ports[..p].iter().any(|other| other.port == port.port && other.protocol == port.protocol) {
                    errors.push(format!("{path}.port"), format!("{} is listed twice", port.port));
                }
                if port.port == 0 {
                    errors.push(format!("{path}.port"), "must be between 1 and 65535");
                }
                if let Some(published) = port.publish {
                    let elsewhere = self.components.iter().enumerate().any(|(oc, other)| {
                        other.ports.iter().enumerate().any(|(op, o)| (oc, op) < (c, p) && o.publish == Some(published))
                    });
                    if elsewhere {
                        errors.push(format!("{path}.publish"), format!("host port {published} is published twice"));
                    }
                }
            }
            let resources = &component.resources;
            check_amount(&resources.requests.cpu, format!("{at}.resources.requests.cpu"), parse_cpu_millis, errors);
            check_amount(&resources.limits.cpu, format!("{at}.resources.limits.cpu"), parse_cpu_millis, errors);
            check_amount(&resources.requests.memory, format!("{at}.resources.requests.memory"), parse_bytes, errors);
            check_amount(&resources.limits.memory, format!("{at}.resources.limits.memory"), parse_bytes, errors);
            let over = |request: &Option<String>, limit: &Option<String>, parse: fn(&str) -> Result<u64, String>| matches!((request.as_deref().map(parse), limit.as_deref().map(parse)), (Some(Ok(r)), Some(Ok(l))) if r > l);
            if over(&resources.requests.cpu, &resources.limits.cpu, parse_cpu_millis) {
                errors.push(format!("{at}.resources.requests.cpu"), "must not exceed limits.cpu");
            }
            if over(&resources.requests.memory, &resources.limits.memory, parse_bytes) {
                errors.push(format!("{at}.resources.requests.memory"), "must not exceed limits.memory");
            }
            for (name, probe) in [
                ("startup", &component.probes.startup),
                ("readiness", &component.probes.readiness),
                ("liveness", &component.probes.liveness),
            ] {
                if let Some(probe) = probe {
                    probe.validate(component, &format!("{at}.probes.{name}"), errors);
                }
            }
            for (v, volume) in component.volumes.iter().enumerate() {
                let path = format!("{at}.volumes[{v}]");
                if let Some(problem) = check_dns_label(&volume.name) {
                    errors.push(format!("{path}.name"), problem);
                }
                if component.volumes[..v].iter().any(|other| other.name == volume.name) {
                    errors.push(format!("{path}.name"), format!("volume {:?} is defined twice", volume.name));
                }
                check_absolute_path(&volume.mount_path, format!("{path}.mountPath"), errors);
                let sources = [volume.persistent.is_some(), volume.scratch.is_some(), volume.host_path.is_some()];
                if sources.iter().filter(|s| **s).count() != 1 {
                    errors.push(path.clone(), "set exactly one of persistent, scratch, hostPath");
                }
                if let Some(persistent) = &volume.persistent {
                    check_amount(
                        &Some(persistent.size.clone()),
                        format!("{path}.persistent.size"),
                        parse_bytes,
                        errors,
                    );
                }
                if let Some(scratch) = &volume.scratch {
                    check_amount(&scratch.size_limit, format!("{path}.scratch.sizeLimit"), parse_bytes, errors);
                }
                if let Some(host) = &volume.host_path {
                    check_absolute_path(host, format!("{path}.hostPath"), errors);
                }
            }
            validate_scheduling(&component.scheduling, &format!("{at}.scheduling"), errors);
            if let Some(autoscaling) = &component.autoscaling {
                let path = format!("{at}.autoscaling");
                if autoscaling.min_replicas == 0 || autoscaling.min_replicas > autoscaling.max_replicas {
                    errors.push(format!("{path}.minReplicas"), "must be at least 1 and at most maxReplicas");
                }
                if autoscaling.target_cpu_percent.is_none() && autoscaling.target_memory_percent.is_none() {
                    errors.push(path.clone(), "set targetCpuPercent, targetMemoryPercent or both");
                }
                if autoscaling.target_cpu_percent.is_some() && resources.requests.cpu.is_none() {
                    errors.push(
                        format!("{path}.targetCpuPercent"),
                        "needs resources.requests.cpu: it is a percentage of it",
                    );
                }
                if autoscaling.target_memory_percent.is_some() && resources.requests.memory.is_none() {
                    errors.push(
                        format!("{path}.targetMemoryPercent"),
                        "needs resources.requests.memory: it is a percentage of it",
                    );
                }
            }
            let update = &component.update;
            for (field, value, round_up) in
                [("maxSurge", &update.max_surge, true), ("maxUnavailable", &update.max_unavailable, false)]
            {
                if let Err(problem) = value.resolve(component.replicas, round_up) {
                    errors.push(format!("{at}.update.{field}"), problem);
                }
            }
            if let (Ok(0), Ok(0)) = (
                update.max_surge.resolve(component.replicas, true),
                update.max_unavailable.resolve(component.replicas, false),
            ) && component.replicas > 0
            {
                errors.push(
                    format!("{at}.update"),
                    "maxSurge and maxUnavailable cannot both be 0: the rollout could never proceed",
                );
            }
        }
    }

    fn references(&self, meta: &ObjectMeta) -> Vec<Reference> {
        let Some(project) = &meta.project else { return Vec::new() };
        let mut references = vec![
            Reference::new("metadata.project", "Project", None, project),
            Reference::new("spec.environment", "Environment", Some(project.clone()), &self.environment),
        ];
        for (path, secret) in self.secret_refs() {
            if !references.iter().any(|r| r.key.kind == "Secret" && r.key.name == secret.secret) {
                references.push(Reference::new(path, "Secret", Some(project.clone()), &secret.secret));
            }
        }
        references
    }

    fn budget_reference(&self, meta: &ObjectMeta) -> Option<Reference> {
        meta.project.as_ref().map(|p| Reference::new("metadata.project", "Project", None, p))
    }

    /// The project's quota holds every application of the project (this one included), and
    /// every Secret key read exists.
    fn validate_against(&self, meta: &ObjectMeta, related: &Related<'_>, errors: &mut ValidationErrors) {
        for (path, secret) in self.secret_refs() {
            let found = related.referenced.iter().find(|o| o.kind == "Secret" && o.metadata.name == secret.secret);
            let Some(object) = found else { continue };
            let environment = object.spec.get("environment").and_then(|e| e.as_str()).unwrap_or_default();
            if environment != self.environment {
                errors.push(
                    path.clone(),
                    format!(
                        "Secret {:?} belongs to environment {environment:?}, not {:?}",
                        secret.secret, self.environment
                    ),
                );
            } else if object.spec.get("data").and_then(|d| d.get(&secret.key)).is_none() {
                let key_path = path.trim_end_matches(".secret").to_string() + ".key";
                errors.push(key_path, format!("Secret {:?} has no key {:?}", secret.secret, secret.key));
            }
        }
        let Some(project) = related.referenced.iter().find(|o| o.kind == "Project") else { return };
        let Ok(project_spec) = serde_json::from_value::<ProjectSpec>(project.spec.clone()) else { return };
        let Some(quota) = &project_spec.quota else { return };
        let siblings: Vec<ResourceQuota> = related
            .siblings
            .iter()
            .filter_map(|o| serde_json::from_value::<ApplicationSpec>(o.spec.clone()).ok())
            .map(|a| a.usage())
            .collect();
        let project_name = meta.project.clone().unwrap_or_default();
        self.usage().validate_allocation(
            &siblings,
            quota,
            "spec.components",
            &format!("project {project_name:?}"),
            "the project's other applications",
            errors,
        );
    }

    fn environment(&self, _meta: &ObjectMeta) -> Option<String> {
        Some(self.environment.clone())
    }

    /// A hostPath volume reaches the node's own files: platform admins only.
    fn requires_platform_admin(&self) -> Option<String> {
        self.components.iter().enumerate().find_map(|(c, component)| {
            component.volumes.iter().enumerate().find(|(_, v)| v.host_path.is_some()).map(|(v, _)| {
                format!("spec.components[{c}].volumes[{v}].hostPath mounts a directory of the node: only a platform admin may")
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::KindRegistry;
    use crate::object::Object;

    fn document(spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "flotilla.io/v1", "kind": "Application",
               "metadata": {"name": "web", "project": "shop"}, "spec": spec})
    }

    fn paths(spec: serde_json::Value) -> Vec<String> {
        let errors = KindRegistry::builtin().parse_document(document(spec)).unwrap_err();
        errors.0.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_full_application_parses_with_defaults() {
        let object = KindRegistry::builtin()
            .parse_document(document(json!({
                "environment": "test",
                "config": {"greeting": "hello"},
                "components": [{
                    "name": "api", "image": "registry.local/shop/api:1.0",
                    "env": [{"name": "GREETING", "fromConfig": "greeting"}, {"name": "MODE", "value": "fast"}],
                    "ports": [{"name": "http", "port": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                    "probes": {"readiness": {"http": {"port": "http", "path": "/ready"}}},
                    "replicas": 3
                }]
            })))
            .unwrap();
        let spec: ApplicationSpec = serde_json::from_value(object.spec).unwrap();
        let api = &spec.components[0];
        assert_eq!(api.restart_policy, RestartPolicy::Always);
        assert_eq!(api.update.progress_deadline_seconds, 600);
        let readiness = api.probes.readiness.as_ref().unwrap();
        assert_eq!((readiness.period_seconds, readiness.failure_threshold), (10, 3));
        assert_eq!(api.port_number(&readiness.http.as_ref().unwrap().port), Some(8080));
        let usage = spec.usage();
        assert_eq!(usage.cpu.as_deref(), Some("300m"));
        assert_eq!(usage.memory.as_deref(), Some((3 * 64 * 1024 * 1024).to_string().as_str()));
        assert_eq!(usage.instances, Some(3));
    }

    #[test]
    fn every_mistake_is_listed_at_its_path() {
        let found = paths(json!({
            "environment": "Test",
            "components": [
                {"name": "api", "image": "a:1",
                 "env": [{"name": "1X", "value": "a", "fromConfig": "missing"}],
                 "ports": [{"name": "http", "port": 8080}, {"name": "http", "port": 8080}],
                 "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "lots"}},
                 "probes": {"liveness": {"tcp": {"port": "grpc"}, "http": {"port": 8080}}},
                 "volumes": [{"name": "data", "mountPath": "relative"}],
                 "update": {"maxSurge": 0, "maxUnavailable": "0%"}},
                {"name": "api", "image": "has space"}
            ]
        }));
        for expected in [
            "spec.environment",
            "spec.components[0].env[0].name",
            "spec.components[0].env[0]",
            "spec.components[0].env[0].fromConfig",
            "spec.components[0].ports[1].name",
            "spec.components[0].ports[1].port",
            "spec.components[0].resources.limits.memory",
            "spec.components[0].resources.requests.cpu",
            "spec.components[0].probes.liveness",
            "spec.components[0].volumes[0].mountPath",
            "spec.components[0].volumes[0]",
            "spec.components[0].update",
            "spec.components[1].name",
            "spec.components[1].image",
        ] {
            assert!(found.iter().any(|p| p == expected), "{expected} missing from {found:?}");
        }
    }

    #[test]
    fn scheduling_and_autoscaling_are_checked_as_kubernetes_would() {
        let found = paths(json!({"environment": "test", "components": [{"name": "a", "image": "a",
            "resources": {"requests": {"memory": "64Mi"}},
            "autoscaling": {"minReplicas": 5, "maxReplicas": 2, "targetCpuPercent": 70},
            "scheduling": {
                "nodeAffinity": {
                    "required": [{"key": "zone", "operator": "In"}, {"key": "gpu", "operator": "Exists", "values": ["x"]}],
                    "preferred": [{"weight": 50, "key": "cpu", "operator": "Gt", "values": ["fast"]}]},
                "tolerations": [{"operator": "Exists", "value": "x"}, {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}}]}));
        let at = "spec.components[0]";
        for expected in [
            "autoscaling.minReplicas",
            "autoscaling.targetCpuPercent",
            "scheduling.nodeAffinity.required[0].values",
            "scheduling.nodeAffinity.required[1].values",
            "scheduling.nodeAffinity.preferred[0].values",
            "scheduling.tolerations[0].value",
            "scheduling.tolerations[1].tolerationSeconds",
        ] {
            assert!(found.contains(&format!("{at}.{expected}")), "{expected} missing from {found:?}");
        }
        // An autoscaled component holds its maximum of the quota.
        let spec: ApplicationSpec = serde_json::from_value(json!({"environment": "test", "components": [{"name": "a",
            "image": "a", "replicas": 2, "resources": {"requests": {"cpu": "100m"}},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetCpuPercent": 70}}]}))
        .unwrap();
        assert_eq!((spec.usage().cpu.as_deref(), spec.usage().instances), (Some("600m"), Some(6)));
    }

    #[test]
    fn schema_errors_name_the_field() {
        let found = paths(
            json!({"environment": "test", "components": [{"name": "a", "image": "a", "replicas": -1, "colour": 1}]}),
        );
        assert!(found.contains(&"spec.components[0].replicas".to_string()), "{found:?}");
        assert!(found.contains(&"spec.components[0].colour".to_string()), "{found:?}");
        assert_eq!(paths(json!({"components": []})), vec!["spec.environment", "spec.components"]);
    }

    #[test]
    fn percentages_resolve_like_kubernetes() {
        let quarter = IntOrPercent::Percent("25%".into());
        assert_eq!(quarter.resolve(10, true), Ok(3));
        assert_eq!(quarter.resolve(10, false), Ok(2));
        assert_eq!(IntOrPercent::Int(2).resolve(10, true), Ok(2));
        assert!(IntOrPercent::Percent("120%".into()).resolve(10, true).is_err());
    }

    fn object(kind: &str, name: &str, project: Option<&str>, spec: serde_json::Value) -> Object {
        let mut document =
            json!({"apiVersion": "flotilla.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec});
        if let Some(project) = project {
            document["metadata"]["project"] = json!(project);
        }
        serde_json::from_value(document).unwrap()
    }

    #[test]
    fn the_project_quota_holds_all_its_applications_and_the_message_says_by_how_much() {
        let project =
            object("Project", "shop", None, json!({"workspace": "retail", "quota": {"cpu": "1", "instances": 4}}));
        let other = object(
            "Application",
            "other",
            Some("shop"),
            json!({"environment": "test", "components": [{"name": "a", "image": "a", "replicas": 2, "resources": {"requests": {"cpu": "300m"}}}]}),
        );
        let spec: ApplicationSpec = serde_json::from_value(json!({"environment": "test",
            "components": [{"name": "b", "image": "b", "replicas": 3, "resources": {"requests": {"cpu": "200m"}}}]}))
        .unwrap();
        let meta: ObjectMeta = serde_json::from_value(json!({"name": "web", "project": "shop"})).unwrap();
        let mut errors = ValidationErrors::default();
        let referenced = [project];
        let siblings = [other];
        spec.validate_against(&meta, &Related { referenced: &referenced, siblings: &siblings }, &mut errors);
        let text = errors.to_string();
        assert!(text.contains("spec.components.cpu"), "{text}");
        assert!(text.contains("600m allocated") && text.contains("1200m") && text.contains("1000m"), "{text}");
        assert!(text.contains("spec.components.instances") && text.contains("5"), "{text}");
    }

    #[test]
    fn secrets_must_exist_in_the_same_environment_with_the_key() {
        let spec: ApplicationSpec =
            serde_json::from_value(json!({"environment": "test", "components": [{"name": "a", "image": "a",
            "env": [{"name": "DB", "fromSecret": {"secret": "db", "key": "password"}}],
            "files": [{"path": "/run/key", "fromSecret": {"secret": "tls", "key": "key"}}]}]}))
            .unwrap();
        let meta: ObjectMeta = serde_json::from_value(json!({"name": "web", "project": "shop"})).unwrap();
        let references = spec.references(&meta);
        assert!(references.iter().any(|r| r.key.kind == "Secret" && r.key.name == "db"), "{references:?}");
        let db = object("Secret", "db", Some("shop"), json!({"environment": "test", "data": {"user": "u"}}));
        let tls = object("Secret", "tls", Some("shop"), json!({"environment": "prod", "data": {"key": "k"}}));
        let mut errors = ValidationErrors::default();
        let referenced = [db, tls];
        spec.validate_against(&meta, &Related { referenced: &referenced, siblings: &[] }, &mut errors);
        let text = errors.to_string();
        assert!(
            text.contains("spec.components[0].env[0].fromSecret.key") && text.contains("no key \"password\""),
            "{text}"
        );
        assert!(text.contains("spec.components[0].files[0].fromSecret.secret") && text.contains("\"prod\""), "{text}");
    }
}
