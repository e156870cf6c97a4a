//! What the API server asks of the kubelet for a pod it runs: `pods/log` from the
//! containers' CRI log files, `pods/exec` through the CRI, and `metrics.k8s.io` usage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_local::cri::api;
use serde_json::{Value, json};

use super::{Kubelet, name_of};

/// `pods/{name}/log` of a pod this kubelet runs: its container's CRI log file (`container`,
/// `previous`, `sinceSeconds`/`sinceTime`, `tailLines`, `timestamps`, `follow`), stdout and
/// stderr merged into one text as the API serves it. `None` when the kubelet does not run
/// the pod (yet).
pub(crate) fn log(
    kubelet: &Arc<Kubelet>,
    pod: &Value,
    query: &BTreeMap<String, String>,
) -> Option<Result<axum::response::Response, String>> {
    use axum::response::IntoResponse;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let pod_name = name_of(pod);
    let containers = kubelet.view.containers(&namespace, &pod_name)?;
    let wanted = query.get("container");
    let Some(container) = containers.iter().find(|c| wanted.is_none_or(|w| &c.name == w)) else {
        return Some(Err(format!("container {wanted:?} is not valid for pod {pod_name}")));
    };
    let previous = query.get("previous").is_some_and(|p| p == "true");
    let path = if previous {
        match &container.previous_log {
            Some(path) => path.clone(),
            None => return Some(Err(format!("previous terminated container {:?} not found", container.name))),
        }
    } else {
        container.log.clone()
    };
    let since_micros = match (query.get("sinceTime"), query.get("sinceSeconds")) {
        (Some(time), _) => time.parse::<jiff::Timestamp>().ok().map(|t| t.as_microsecond()),
        (None, Some(seconds)) => {
            seconds.parse::<i64>().ok().map(|s| jiff::Timestamp::now().as_microsecond() - s * 1_000_000)
        }
        _ => None,
    };
    let tail = query.get("tailLines").and_then(|t| t.parse::<usize>().ok());
    let timestamps = query.get("timestamps").is_some_and(|t| t == "true");
    let render = move |lines: Vec<flotilla_driver::LogLine>| -> String {
        lines
            .into_iter()
            .map(|line| {
                if timestamps {
                    let time = jiff::Timestamp::from_microsecond(line.time_micros).unwrap_or_default();
                    format!("{time} {}\n", line.text)
                } else {
                    format!("{}\n", line.text)
                }
            })
            .collect()
    };
    // What the file holds now, then (following) what is written to it.
    let mut follower = flotilla_local::logs::Follower::new(path, pod_name.clone());
    let existing: Vec<_> =
        follower.poll().into_iter().filter(|l| since_micros.is_none_or(|since| l.time_micros >= since)).collect();
    let first = render(flotilla_local::logs::tail(existing, tail));
    if query.get("follow").is_none_or(|f| f != "true") || previous {
        return Some(Ok(first.into_response()));
    }
    let kubelet = kubelet.clone();
    let name = container.name.clone();
    let lines = futures::stream::unfold(follower, move |mut follower| {
        let (kubelet, namespace, pod_name, name, render) =
            (kubelet.clone(), namespace.clone(), pod_name.clone(), name.clone(), render);
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // The stream ends with the pod.
                kubelet.view.containers(&namespace, &pod_name)?.iter().find(|c| c.name == name)?;
                let lines = follower.poll();
                if !lines.is_empty() {
                    let chunk = axum::body::Bytes::from(render(lines));
                    return Some((Ok::<_, std::io::Error>(chunk), follower));
                }
            }
        }
    });
    let first = futures::stream::once(async move { Ok(axum::body::Bytes::from(first)) });
    Some(Ok(axum::body::Body::from_stream(futures::StreamExt::chain(first, lines)).into_response()))
}

/// Runs `command` in a container this kubelet runs (through the CRI): stdout, stderr and
/// the exit code; `Err` when the container does not run.
pub(crate) async fn exec(
    kubelet: &Kubelet,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: Vec<String>,
) -> Result<api::ExecSyncResponse, String> {
    let containers = kubelet.view.containers(namespace, pod).ok_or_else(|| format!("pod {pod} does not run"))?;
    let found = containers
        .iter()
        .find(|c| container.is_none_or(|w| c.name == w))
        .ok_or_else(|| format!("container {container:?} is not valid for pod {pod}"))?;
    let id = found.id.clone().ok_or_else(|| format!("container {} is not running", found.name))?;
    let mut cri = kubelet.cri.clone();
    cri.exec_sync(&id, command, 60).await.map_err(|e| format!("failed to exec in container: {e}"))
}

/// `PodMetrics` containers of a pod this kubelet runs: usage of those that reported some.
pub(crate) fn usage(kubelet: &Kubelet, namespace: &str, pod: &str) -> Vec<Value> {
    kubelet
        .view
        .containers(namespace, pod)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let (nanocores, memory) = c.usage?;
            Some(json!({"name": c.name, "usage": {"cpu": format!("{nanocores}n"), "memory": format!("{}Ki", memory / 1024)}}))
        })
        .collect()
}
