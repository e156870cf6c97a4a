//! One instance of a component as a CRI pod: the sandbox (hostname, network, name server,
//! log directory) and its container (image, command, env, files, volumes, CPU and
//! memory limits), labelled so that the runtime finds its own pods again after a restart.
//!
//! Configuration and secret files are written under the instance's directory on the host
//! and bind-mounted read-only, one by one; secret files are readable by their owner only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flotilla_driver::workload::{ComponentWorkload, VolumeSource, Workload, labels};

use crate::LocalError;
use crate::cri::api;

/// The label naming an instance (its pod).
pub const INSTANCE_LABEL: &str = "flotilla.io/instance";

/// CFS period for CPU limits, as the kubelet uses.
const CPU_PERIOD_MICROS: i64 = 100_000;

/// One instance to create.
#[derive(Debug, Clone)]
pub struct InstancePlan<'a> {
    pub workload: &'a Workload,
    pub component: &'a ComponentWorkload,
    /// Unique and DNS-safe: `<component>-<revision>-<suffix>`.
    pub name: String,
    /// The pod namespace: the environment's network is chosen by it.
    pub namespace: String,
    /// Where this instance's files and logs live on the host.
    pub dir: PathBuf,
    /// Where named persistent volumes live: `<volumes_dir>/<volume name>`.
    pub volumes_dir: PathBuf,
    /// DNS servers and search domains for the instance.
    pub dns: Option<api::DnsConfig>,
}

impl InstancePlan<'_> {
    fn labels(&self) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = self.workload.labels(&self.component.name).into_iter().collect();
        labels.insert(INSTANCE_LABEL.to_string(), self.name.clone());
        labels.insert(labels::TEMPLATE.to_string(), self.component.template_hash());
        labels
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The log file of the instance's container.
    pub fn log_file(&self) -> PathBuf {
        self.log_dir().join(format!("{}.log", self.component.name))
    }

    /// The pod sandbox.
    pub fn sandbox(&self) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.name.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_dir().display().to_string(),
            dns_config: self.dns.clone(),
            // Published ports belong to the service (see `services`), not to one instance.
            port_mappings: Vec::new(),
            labels: self.labels(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: pod_cgroup(&self.name),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Writes the configuration and secret files the container mounts; returns the mounts.
    pub fn write_files(&self) -> Result<Vec<api::Mount>, LocalError> {
        use std::os::unix::fs::PermissionsExt;
        let files_dir = self.dir.join("files");
        let mut mounts = Vec::with_capacity(self.component.files.len());
        for (index, file) in self.component.files.iter().enumerate() {
            let host = files_dir.join(index.to_string());
            std::fs::create_dir_all(&files_dir)
                .map_err(LocalError::io(format!("cannot create {}", files_dir.display())))?;
            std::fs::write(&host, &file.content).map_err(LocalError::io(format!("cannot write {}", host.display())))?;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(file.mode))
                .map_err(LocalError::io(format!("cannot set the mode of {}", host.display())))?;
            mounts.push(api::Mount {
                container_path: file.path.clone(),
                host_path: host.display().to_string(),
                readonly: true,
                ..Default::default()
            });
        }
        Ok(mounts)
    }

    /// The volume mounts, creating the host directories they need.
    pub fn volume_mounts(&self) -> Result<Vec<api::Mount>, LocalError> {
        let mut mounts = Vec::with_capacity(self.component.volumes.len());
        for volume in &self.component.volumes {
            let host: PathBuf = match &volume.source {
                VolumeSource::Persistent { .. } => self.volumes_dir.join(&volume.name),
                VolumeSource::Scratch { .. } => self.dir.join("scratch").join(&volume.name),
                VolumeSource::HostPath { path } => PathBuf::from(path),
            };
            if !matches!(volume.source, VolumeSource::HostPath { .. }) {
                std::fs::create_dir_all(&host).map_err(LocalError::io(format!("cannot create {}", host.display())))?;
            }
            mounts.push(api::Mount {
                container_path: volume.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: volume.read_only,
                ..Default::default()
            });
        }
        Ok(mounts)
    }

    /// The container, given the mounts of [`Self::write_files`] and [`Self::volume_mounts`].
    pub fn container(&self, mounts: Vec<api::Mount>) -> api::ContainerConfig {
        let component = self.component;
        let resources = api::LinuxContainerResources {
            cpu_period: component.cpu_limit_millis.map_or(0, |_| CPU_PERIOD_MICROS),
            cpu_quota: component.cpu_limit_millis.map_or(0, cpu_quota),
            cpu_shares: cpu_shares(component.cpu_request_millis.or(component.cpu_limit_millis)),
            memory_limit_in_bytes: component.memory_limit_bytes.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: component.name.clone(), attempt: 0 }),
            image: Some(api::ImageSpec { image: component.image.clone(), ..Default::default() }),
            command: component.command.clone(),
            args: component.args.clone(),
            envs: component
                .env
                .iter()
                .map(|(key, value)| api::KeyValue { key: key.clone(), value: value.clone() })
                .collect(),
            mounts,
            labels: self.labels(),
            log_path: format!("{}.log", component.name),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(resources),
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// As the kubelet sets them: the pod's network and IPC, and a process namespace of the
/// container's own (its command is PID 1, as on Kubernetes).
pub fn namespaces() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// CPU quota per period for a limit in millicores (100m → 10 ms per 100 ms).
fn cpu_quota(millis: u64) -> i64 {
    (i64::try_from(millis).unwrap_or(i64::MAX / 100) * CPU_PERIOD_MICROS / 1000).max(1000)
}

/// CPU shares for a request in millicores, as the kubelet computes them (1 core = 1024).
fn cpu_shares(millis: Option<u64>) -> i64 {
    match millis {
        None => 2,
        Some(millis) => (i64::try_from(millis).unwrap_or(i64::MAX / 1024) * 1024 / 1000).max(2),
    }
}

/// The cgroup (below each controller's root) holding an instance's containers; the runtime
/// reads its I/O counters and removes it with the instance (runc never removes parents).
pub fn pod_cgroup(instance: &str) -> String {
    format!("/flotilla/{instance}")
}

/// Bytes read from and written to storage by the instance's containers: the cgroup v1
/// `blkio` counters where the kernel keeps them, else the sum of `/proc/<pid>/io` over the
/// processes in the pod's cgroups (which forgets processes that have exited).
pub fn disk_io(instance: &str) -> (u64, u64) {
    let path = format!("/sys/fs/cgroup/blkio{}/blkio.throttle.io_service_bytes", pod_cgroup(instance));
    let from_blkio = parse_blkio(&std::fs::read_to_string(path).unwrap_or_default());
    if from_blkio != (0, 0) {
        return from_blkio;
    }
    let root = PathBuf::from(format!("/sys/fs/cgroup/memory{}", pod_cgroup(instance)));
    let mut totals = (0, 0);
    for pid in cgroup_pids(&root) {
        let (read, written) = parse_proc_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default());
        totals.0 += read;
        totals.1 += written;
    }
    totals
}

/// (read, write) bytes of a `blkio.throttle.io_service_bytes` file.
fn parse_blkio(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, operation, bytes] = fields.as_slice() {
            let bytes: u64 = bytes.parse().unwrap_or(0);
            match *operation {
                "Read" => totals.0 += bytes,
                "Write" => totals.1 += bytes,
                _ => {}
            }
        }
    }
    totals
}

/// (read_bytes, write_bytes) of a `/proc/<pid>/io` file.
fn parse_proc_io(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse::<u64>().ok()))
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// Every process in the cgroup at `root` and the cgroups below it.
fn cgroup_pids(root: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|line| line.trim().parse::<u32>().ok()));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    pids
}

/// Removes an instance's pod cgroup from every controller (after its sandbox is removed).
pub fn remove_pod_cgroup(instance: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for controller in controllers.flatten() {
        let path = controller.path().join(pod_cgroup(instance).trim_start_matches('/'));
        let _ = std::fs::remove_dir(path);
    }
}

/// The label selector of everything of one workload.
pub fn workload_selector(workload: &flotilla_driver::workload::WorkloadKey) -> HashMap<String, String> {
    HashMap::from([
        (labels::PROJECT.to_string(), workload.project.clone()),
        (labels::ENVIRONMENT.to_string(), workload.environment.clone()),
        (labels::APPLICATION.to_string(), workload.application.clone()),
    ])
}

/// A directory for instance `name` under `root`.
pub fn instance_dir(root: &Path, name: &str) -> PathBuf {
    root.join("instances").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_converted_as_the_kubelet_does() {
        assert_eq!(cpu_quota(500), 50_000);
        assert_eq!(cpu_quota(2000), 200_000);
        assert_eq!(cpu_quota(1), 1000, "the kernel's minimum quota");
        assert_eq!(cpu_shares(Some(250)), 256);
        assert_eq!(cpu_shares(None), 2);
    }

    #[test]
    fn disk_counters_are_read_from_blkio_or_proc() {
        let blkio = "8:0 Read 4096\n8:0 Write 8192\n8:16 Read 1024\nTotal 13312\n";
        assert_eq!(parse_blkio(blkio), (5120, 8192));
        let io = "rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 12288\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_proc_io(io), (4096, 12288));
        let all = cgroup_pids(Path::new("/sys/fs/cgroup/memory"));
        assert!(all.contains(&std::process::id()), "the root memory cgroup and those below hold this process");
    }
}
