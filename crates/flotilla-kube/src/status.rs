//! What a workload's Kubernetes objects say, turned into the status every driver reports
//! (pure): per component the counts and rollout phase of its Deployment or StatefulSet,
//! each pod as an instance (its revision found through its template hash), and the Events
//! of those objects.

use std::collections::HashMap;

use flotilla_driver::status::{
    ComponentStatus, Event, EventType, InstanceState, InstanceStatus, RolloutPhase, WorkloadStatus,
};
use flotilla_driver::workload::labels;
use serde_json::Value;

fn micros(timestamp: &Value) -> Option<i64> {
    timestamp.as_str()?.parse::<jiff::Timestamp>().ok().map(|t| t.as_microsecond())
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The instance a pod is; `revisions` maps template hashes to the revision that last had
/// them, `fallback` is the revision of a hash not seen (applied before a restart).
fn instance(pod: &Value, revisions: &HashMap<String, u64>, fallback: u64) -> InstanceStatus {
    let labels_of = &pod["metadata"]["labels"];
    let container = &pod["status"]["containerStatuses"][0];
    let restarts = container["restartCount"].as_u64().unwrap_or(0) as u32;
    let waiting = &container["state"]["waiting"];
    let terminated = &container["state"]["terminated"];
    let state = if pod["metadata"]["deletionTimestamp"].is_string() {
        InstanceState::Terminating
    } else if let Some(reason) = waiting["reason"].as_str() {
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => InstanceState::ImagePullError {
                message: waiting["message"].as_str().unwrap_or(reason).to_string(),
                retry_in_seconds: 0,
            },
            "CrashLoopBackOff" => InstanceState::CrashLoop {
                exit_code: container["lastState"]["terminated"]["exitCode"].as_i64().unwrap_or(0) as i32,
                backoff_seconds: 0,
            },
            other => InstanceState::Pending { reason: other.to_string() },
        }
    } else if terminated.is_object() {
        if terminated["reason"] == "OOMKilled" {
            InstanceState::OomKilled
        } else {
            InstanceState::Exited { exit_code: terminated["exitCode"].as_i64().unwrap_or(0) as i32 }
        }
    } else if container["state"]["running"].is_object() {
        InstanceState::Running { ready: ready(pod) }
    } else {
        let reason = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            .and_then(|c| c["reason"].as_str())
            .unwrap_or("Pending");
        InstanceState::Pending { reason: reason.to_string() }
    };
    let hash = labels_of[labels::TEMPLATE].as_str().unwrap_or_default();
    InstanceStatus {
        name: pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        component: labels_of[labels::COMPONENT].as_str().unwrap_or_default().to_string(),
        revision: revisions.get(hash).copied().unwrap_or(fallback),
        state,
        ip: pod["status"]["podIP"].as_str().map(str::to_string),
        restarts,
        started_micros: micros(&pod["status"]["startTime"]),
    }
}

/// One component's counts from its Deployment or StatefulSet and pods.
fn component(object: &Value, desired_hash: &str, pods: &[&Value]) -> ComponentStatus {
    let name = object["metadata"]["labels"][labels::COMPONENT].as_str().unwrap_or_default().to_string();
    let desired = object["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
    let current: Vec<&&Value> =
        pods.iter().filter(|p| p["metadata"]["labels"][labels::TEMPLATE].as_str() == Some(desired_hash)).collect();
    let updated = current.len() as u32;
    let updated_ready = current.iter().filter(|p| ready(p)).count() as u32;
    let ready_count = pods.iter().filter(|p| ready(p)).count() as u32;
    let observed = object["status"]["observedGeneration"].as_i64() >= object["metadata"]["generation"].as_i64();
    let exceeded = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
    // A condition speaks of the generation the controller last observed: right after an
    // update it is still the previous revision's.
    let phase = if exceeded && observed {
        RolloutPhase::DeadlineExceeded
    } else if observed && updated == desired && updated_ready == desired && pods.len() as u32 == desired {
        RolloutPhase::Complete
    } else {
        RolloutPhase::Progressing
    };
    let message = pods.iter().find_map(|p| {
        let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        match waiting["reason"].as_str() {
            Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "CrashLoopBackOff") => {
                waiting["message"].as_str().map(str::to_string)
            }
            _ => None,
        }
    });
    ComponentStatus { name, desired, updated, updated_ready, ready: ready_count, phase, message, service: None }
}

/// The status of a workload from its objects.
///
/// - `objects`: its Deployments and StatefulSets;
/// - `desired_hashes`: per component, the template hash of the revision being rolled out;
/// - `revisions`: template hash to revision, for the instances;
/// - `events`: Events of the namespace (those of other objects are left out).
pub fn workload_status(
    revision: u64,
    objects: &[Value],
    desired_hashes: &HashMap<String, String>,
    revisions: &HashMap<String, u64>,
    pods: &[Value],
    events: &[Value],
) -> WorkloadStatus {
    let mut components = Vec::new();
    for object in objects {
        let name = object["metadata"]["labels"][labels::COMPONENT].as_str().unwrap_or_default();
        let own: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["labels"][labels::COMPONENT] == name).collect();
        let hash = desired_hashes
            .get(name)
            .cloned()
            .or_else(|| object["spec"]["template"]["metadata"]["labels"][labels::TEMPLATE].as_str().map(str::to_string))
            .unwrap_or_default();
        components.push(component(object, &hash, &own));
    }
    components.sort_by(|a, b| a.name.cmp(&b.name));
    let mut instances: Vec<InstanceStatus> = pods.iter().map(|p| instance(p, revisions, revision)).collect();
    instances.sort_by(|a, b| (&a.component, &a.name).cmp(&(&b.component, &b.name)));
    let names: Vec<&str> = pods.iter().chain(objects.iter()).filter_map(|o| o["metadata"]["name"].as_str()).collect();
    let mut events: Vec<Event> = events
        .iter()
        .filter(|e| e["involvedObject"]["name"].as_str().is_some_and(|n| names.contains(&n)))
        .map(|e| {
            let involved = e["involvedObject"]["name"].as_str().unwrap_or_default();
            let pod = pods.iter().find(|p| p["metadata"]["name"] == involved);
            Event {
                time_micros: micros(&e["lastTimestamp"]).or_else(|| micros(&e["eventTime"])).unwrap_or_default(),
                kind: if e["type"] == "Warning" { EventType::Warning } else { EventType::Normal },
                reason: e["reason"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
                component: pod
                    .or_else(|| objects.iter().find(|o| o["metadata"]["name"] == involved))
                    .and_then(|o| o["metadata"]["labels"][labels::COMPONENT].as_str())
                    .map(str::to_string),
                instance: pod.map(|_| involved.to_string()),
            }
        })
        .collect();
    events.sort_by_key(|e| e.time_micros);
    let keep = events.len().saturating_sub(100);
    events.drain(..keep);
    WorkloadStatus { revision, components, instances, events, warnings: Vec::new() }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(generation: i64, observed: i64, reason: &str) -> Value {
        json!({"metadata": {"name": "web-api", "generation": generation, "labels": {"flotilla.io/component": "api"}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"flotilla.io/template-hash": "h1"}}}},
            "status": {"observedGeneration": observed, "conditions": [{"type": "Progressing", "status": "False", "reason": reason}]}})
    }

    #[test]
    fn a_missed_deadline_counts_only_for_the_generation_it_was_observed_for() {
        let pod = json!({"metadata": {"name": "web-api-1", "labels": {"flotilla.io/component": "api", "flotilla.io/template-hash": "h1"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [{"state": {"running": {}}}]}});
        let hashes = HashMap::from([("api".to_string(), "h1".to_string())]);
        let status =
            |object: Value| workload_status(3, &[object], &hashes, &HashMap::new(), std::slice::from_ref(&pod), &[]);
        let stale = status(deployment(3, 2, "ProgressDeadlineExceeded"));
        assert_eq!(stale.components[0].phase, RolloutPhase::Progressing, "the update is not observed yet");
        let missed = status(deployment(3, 3, "ProgressDeadlineExceeded"));
        assert_eq!(missed.components[0].phase, RolloutPhase::DeadlineExceeded);
        let done = status(deployment(3, 3, "NewReplicaSetAvailable"));
        assert_eq!(done.components[0].phase, RolloutPhase::Complete);
        assert_eq!(done.instances[0].revision, 3, "an unknown hash counts for the current revision");
    }
}
