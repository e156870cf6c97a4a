//! The Kubernetes CRI API (runtime.v1) of containerd, over its Unix socket.
//!
//! [`Cri`] wraps the generated clients with the calls the runtime makes, mapping each failure
//! to [`LocalError::Cri`] with the call's name. Requests are the CRI's own types: the
//! embedded runtime builds pods the way a kubelet does.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
pub use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::LocalError;

/// A connection to a CRI runtime.
#[derive(Debug, Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

fn failed(call: &'static str) -> impl FnOnce(tonic::Status) -> LocalError {
    move |status| LocalError::Cri { call, status: status.message().to_string() }
}

/// `NotFound` as success: for calls whose goal is that something is gone.
fn gone_is_done<T>(result: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    match result {
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        other => other.map(|_| ()),
    }
}

impl Cri {
    /// Connects to the socket (the connection is made lazily again after a failure).
    pub async fn connect(socket: &Path) -> Result<Self, LocalError> {
        let path: PathBuf = socket.to_path_buf();
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| LocalError::Containerd(e.to_string()))?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|e| LocalError::Containerd(format!("cannot connect to {}: {e}", socket.display())))?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    /// The socket this connects to (for what the CRI has no call for: image imports).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The runtime's name and version (`containerd 1.6.20~ds1`).
    pub async fn version(&mut self) -> Result<String, LocalError> {
        let version =
            self.runtime.version(api::VersionRequest::default()).await.map_err(failed("Version"))?.into_inner();
        Ok(format!("{} {}", version.runtime_name, version.runtime_version))
    }

    /// Whether `image` is present; its image ID when it is.
    pub async fn image_id(&mut self, image: &str) -> Result<Option<String>, LocalError> {
        let request = api::ImageStatusRequest {
            image: Some(api::ImageSpec { image: image.to_string(), ..Default::default() }),
            verbose: false,
        };
        let status = self.images.image_status(request).await.map_err(failed("ImageStatus"))?.into_inner();
        Ok(status.image.map(|i| i.id))
    }

    /// Pulls `image` (registry configuration comes from containerd's `certs.d`).
    pub async fn pull_image(&mut self, image: &str) -> Result<String, LocalError> {
        let request = api::PullImageRequest {
            image: Some(api::ImageSpec { image: image.to_string(), ..Default::default() }),
            ..Default::default()
        };
        let pulled = self.images.pull_image(request).await.map_err(failed("PullImage"))?.into_inner();
        Ok(pulled.image_ref)
    }

    /// Creates and starts a pod sandbox (its network namespace, IP and pause container).
    pub async fn run_pod_sandbox(&mut self, config: api::PodSandboxConfig) -> Result<String, LocalError> {
        let request = api::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        Ok(self.runtime.run_pod_sandbox(request).await.map_err(failed("RunPodSandbox"))?.into_inner().pod_sandbox_id)
    }

    pub async fn pod_sandbox_status(&mut self, id: &str) -> Result<api::PodSandboxStatus, LocalError> {
        let request = api::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false };
        let response = self.runtime.pod_sandbox_status(request).await.map_err(failed("PodSandboxStatus"))?;
        response
            .into_inner()
            .status
            .ok_or_else(|| LocalError::Cri { call: "PodSandboxStatus", status: format!("no status for {id}") })
    }

    /// The pod's IP address.
    pub async fn pod_ip(&mut self, id: &str) -> Result<Option<String>, LocalError> {
        Ok(self.pod_sandbox_status(id).await?.network.map(|n| n.ip).filter(|ip| !ip.is_empty()))
    }

    pub async fn list_pod_sandboxes(
        &mut self,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<Vec<api::PodSandbox>, LocalError> {
        let filter = api::PodSandboxFilter { label_selector: labels, ..Default::default() };
        let request = api::ListPodSandboxRequest { filter: Some(filter) };
        Ok(self.runtime.list_pod_sandbox(request).await.map_err(failed("ListPodSandbox"))?.into_inner().items)
    }

    /// Stops a pod's containers and sandbox and releases its network; a pod already gone is
    /// stopped (the CRI asks this call to be idempotent).
    pub async fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), LocalError> {
        let request = api::StopPodSandboxRequest { pod_sandbox_id: id.to_string() };
        gone_is_done(self.runtime.stop_pod_sandbox(request).await).map_err(failed("StopPodSandbox"))
    }

    /// Removes a stopped pod; a pod already gone is removed.
    pub async fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), LocalError> {
        let request = api::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() };
        gone_is_done(self.runtime.remove_pod_sandbox(request).await).map_err(failed("RemovePodSandbox"))
    }

    /// Creates a container in a sandbox created from `sandbox`.
    pub async fn create_container(
        &mut self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox: api::PodSandboxConfig,
    ) -> Result<String, LocalError> {
        let request = api::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox),
        };
        Ok(self.runtime.create_container(request).await.map_err(failed("CreateContainer"))?.into_inner().container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), LocalError> {
        let request = api::StartContainerRequest { container_id: id.to_string() };
        self.runtime.start_container(request).await.map_err(failed("StartContainer"))?;
        Ok(())
    }

    pub async fn container_status(&mut self, id: &str) -> Result<api::ContainerStatus, LocalError> {
        let request = api::ContainerStatusRequest { container_id: id.to_string(), verbose: false };
        let response = self.runtime.container_status(request).await.map_err(failed("ContainerStatus"))?;
        response
            .into_inner()
            .status
            .ok_or_else(|| LocalError::Cri { call: "ContainerStatus", status: format!("no status for {id}") })
    }

    pub async fn list_containers(
        &mut self,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<Vec<api::Container>, LocalError> {
        let filter = api::ContainerFilter { label_selector: labels, ..Default::default() };
        let request = api::ListContainersRequest { filter: Some(filter) };
        Ok(self.runtime.list_containers(request).await.map_err(failed("ListContainers"))?.into_inner().containers)
    }

    /// Stops a container: SIGTERM, then SIGKILL after `timeout_seconds`.
    pub async fn stop_container(&mut self, id: &str, timeout_seconds: i64) -> Result<(), LocalError> {
        let request = api::StopContainerRequest { container_id: id.to_string(), timeout: timeout_seconds };
        self.runtime.stop_container(request).await.map_err(failed("StopContainer"))?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<(), LocalError> {
        let request = api::RemoveContainerRequest { container_id: id.to_string() };
        self.runtime.remove_container(request).await.map_err(failed("RemoveContainer"))?;
        Ok(())
    }

    pub async fn container_stats(&mut self, id: &str) -> Result<api::ContainerStats, LocalError> {
        let request = api::ContainerStatsRequest { container_id: id.to_string() };
        let response = self.runtime.container_stats(request).await.map_err(failed("ContainerStats"))?;
        response
            .into_inner()
            .stats
            .ok_or_else(|| LocalError::Cri { call: "ContainerStats", status: format!("no stats for {id}") })
    }

    pub async fn pod_sandbox_stats(&mut self, id: &str) -> Result<api::PodSandboxStats, LocalError> {
        let request = api::PodSandboxStatsRequest { pod_sandbox_id: id.to_string() };
        let response = self.runtime.pod_sandbox_stats(request).await.map_err(failed("PodSandboxStats"))?;
        response
            .into_inner()
            .stats
            .ok_or_else(|| LocalError::Cri { call: "PodSandboxStats", status: format!("no stats for {id}") })
    }

    /// Makes containerd reopen a container's log file (after it was rotated).
    pub async fn reopen_container_log(&mut self, id: &str) -> Result<(), LocalError> {
        let request = api::ReopenContainerLogRequest { container_id: id.to_string() };
        self.runtime.reopen_container_log(request).await.map_err(failed("ReopenContainerLog"))?;
        Ok(())
    }

    /// Runs `command` in a running container and waits for it (at most `timeout_seconds`).
    pub async fn exec_sync(
        &mut self,
        container_id: &str,
        command: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<api::ExecSyncResponse, LocalError> {
        let request =
            api::ExecSyncRequest { container_id: container_id.to_string(), cmd: command, timeout: timeout_seconds };
        Ok(self.runtime.exec_sync(request).await.map_err(failed("ExecSync"))?.into_inner())
    }
}
