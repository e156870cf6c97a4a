//! `pods/{name}/exec` of the fake API server, over WebSocket with the `v4.channel.k8s.io`
//! subprotocol the real one speaks: each binary frame starts with its channel (1 stdout,
//! 2 stderr, 3 the final `Status`, which carries a non-zero exit code as a cause).
//!
//! A simulated container has no process of its own, so the command runs as a process of the
//! test machine, with only the container's environment (its values, and those it takes from
//! Secrets) and a scratch directory: what the driver is tested for here is the protocol and
//! the environment, not what a container's file system holds.

use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{FakeState, authorized, status};

/// The environment a container of `pod` would have.
fn environment(state: &FakeState, namespace: &str, container: &Value) -> Vec<(String, String)> {
    let secrets = state.objects.get(&("v1".to_string(), "secrets".to_string(), Some(namespace.to_string())));
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|var| {
            let name = var["name"].as_str()?.to_string();
            if let Some(value) = var["value"].as_str() {
                return Some((name, value.to_string()));
            }
            let reference = &var["valueFrom"]["secretKeyRef"];
            let secret = secrets?.get(reference["name"].as_str()?)?;
            let encoded = secret["data"][reference["key"].as_str()?].as_str()?;
            let value = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            Some((name, String::from_utf8_lossy(&value).into_owned()))
        })
        .collect()
}

pub(crate) async fn exec(
    State(shared): State<Arc<Mutex<FakeState>>>,
    Path((namespace, pod_name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (command, env) = {
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
        (command, environment(&state, &namespace, &container))
    };
    if command.is_empty() {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "you must specify at least one command".into());
    }
    upgrade.protocols(["v4.channel.k8s.io"]).on_upgrade(move |socket| run(socket, command, env)).into_response()
}

async fn run(mut socket: WebSocket, command: Vec<String>, env: Vec<(String, String)>) {
    let output = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env)
        .current_dir(std::env::temp_dir())
        .output()
        .await;
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
            match output.status.code() {
                Some(0) => json!({"metadata": {}, "status": "Success"}),
                code => {
                    let code = code.unwrap_or(137);
                    json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                        "message": format!("command terminated with non-zero exit code: exit status {code}"),
                        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
                }
            }
        }
        Err(error) => json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
            "message": format!("failed to exec in container: {error}")}),
    };
    let _ = socket.send(frame(3, result.to_string().as_bytes())).await;
    let _ = socket.send(Message::Close(None)).await;
}
