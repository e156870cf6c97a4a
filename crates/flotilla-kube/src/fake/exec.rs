//! `pods/{name}/exec` of the fake API server, over WebSocket with the `v4.channel.k8s.io`
//! subprotocol the real one speaks: each binary frame starts with its channel (1 stdout,
//! 2 stderr, 3 the final `Status`, which carries a non-zero exit code as a cause).
//!
//! When a [`kubelet`](super::kubelet) runs the pod, the command runs in its container through
//! the CRI. A simulated container has no process of its own, so there the command runs as a
//! process of the test machine, with only the container's environment (its values, and
//! those it takes from ConfigMaps and Secrets) and a scratch directory: what the driver is
//! tested for there is the protocol and the environment, not a container's file system.

use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::kubelet::{self, Kubelet};
use super::{FakeState, authorized, status};

/// Where the command runs.
enum Runner {
    /// In the container, through the kubelet's CRI runtime.
    Container { kubelet: Arc<Kubelet>, namespace: String, pod: String, container: String },
    /// As a process of this machine with the container's environment (simulated pods).
    Host { env: Vec<(String, String)> },
}

pub(crate) async fn exec(
    State(shared): State<Arc<Mutex<FakeState>>>,
    Path((namespace, pod_name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (command, runner) = {
        let state = shared.lock().expect("fake state");
        if !authorized(&state, &headers) {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into());
        }
        let pods = state.objects.get(&("v1".to_string(), "pods".to_string(), Some(namespace.clone())));
        let Some(pod) = pods.and_then(|p| p.get(&pod_name)) else {
            return status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{pod_name}\" not found"));
        };
        if pod["status"]["phase"] != "Running" {
            return status(StatusCode::BAD_REQUEST, "BadRequest", format!("pod {pod_name} is not running"));
        }
        let wanted = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.clone());
        let container = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| wanted.as_deref().is_none_or(|w| c["name"] == w))
            .cloned();
        let Some(container) = container else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("container {wanted:?} is not valid for pod {pod_name}"),
            );
        };
        let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
        let runner = match &state.kubelet {
            Some(kubelet) => Runner::Container {
                kubelet: kubelet.clone(),
                namespace: namespace.clone(),
                pod: pod_name.clone(),
                container: container["name"].as_str().unwrap_or_default().to_string(),
            },
            None => match kubelet::environment(&state, &namespace, &container) {
                Ok(env) => Runner::Host { env },
                Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", message),
            },
        };
        (command, runner)
    };
    if command.is_empty() {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "you must specify at least one command".into());
    }
    upgrade.protocols(["v4.channel.k8s.io"]).on_upgrade(move |socket| run(socket, command, runner)).into_response()
}

/// What a command wrote and how it exited (`None`: killed by a signal).
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: Option<i32>,
}

async fn execute(command: Vec<String>, runner: Runner) -> Result<Output, String> {
    match runner {
        Runner::Container { kubelet, namespace, pod, container } => {
            let output = kubelet::exec(&kubelet, &namespace, &pod, Some(&container), command).await?;
            Ok(Output { stdout: output.stdout, stderr: output.stderr, code: Some(output.exit_code) })
        }
        Runner::Host { env } => {
            let output = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .envs(env)
                .current_dir(std::env::temp_dir())
                .output()
                .await
                .map_err(|e| format!("failed to exec in container: {e}"))?;
            Ok(Output { stdout: output.stdout, stderr: output.stderr, code: output.status.code() })
        }
    }
}

async fn run(mut socket: WebSocket, command: Vec<String>, runner: Runner) {
    let output = execute(command, runner).await;
    let frame = |channel: u8, bytes: &[u8]| {
        let mut data = Vec::with_capacity(bytes.len() + 1);
        data.push(channel);
        data.extend_from_slice(bytes);
        Message::Binary(data.into())
    };
    let result = match output {
        Ok(output) => {
            if !output.stdout.is_empty() {
                let _ = socket.send(frame(1, &output.stdout)).await;
            }
            if !output.stderr.is_empty() {
                let _ = socket.send(frame(2, &output.stderr)).await;
            }
            match output.code {
                Some(0) => json!({"metadata": {}, "status": "Success"}),
                code => {
                    let code = code.unwrap_or(137);
                    json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                        "message": format!("command terminated with non-zero exit code: exit status {code}"),
                        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
                }
            }
        }
        Err(message) => json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "message": message}),
    };
    let _ = socket.send(frame(3, result.to_string().as_bytes())).await;
    let _ = socket.send(Message::Close(None)).await;
}
