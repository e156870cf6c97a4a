//! The fake cluster's controllers and kubelet, ten passes a second.
//!
//! - Deployment controller: one ReplicaSet per pod template (named by its hash, so going
//!   back to an earlier template scales its ReplicaSet up again), a rolling update within
//!   maxSurge/maxUnavailable, status counts, and the `Progressing` condition (turning to
//!   `ProgressDeadlineExceeded` when nothing moved for `progressDeadlineSeconds`).
//! - ReplicaSet and StatefulSet controllers: pods to the wanted count (StatefulSets by
//!   ordinal, replaced highest first once the others are ready; a claim per instance).
//! - Garbage collector: what an owner no longer exists for goes.
//! - Scheduler and kubelet: a pod goes to the first node, pulls its image (one from a
//!   registry on this machine that does not answer fails, retried), runs, and is ready once
//!   its readiness probe would pass: a simulated container listens on the ports it declares.
//! - Events for what happened, as the real components word them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;

use super::{Collection, FakeState};

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

fn seconds_since(timestamp: &Value) -> i64 {
    timestamp
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| jiff::Timestamp::now().as_second() - t.as_second())
}

/// Runs the simulation until the task is aborted.
pub(crate) async fn run(state: Arc<Mutex<FakeState>>) {
    let mut pass = Pass::default();
    loop {
        {
            let mut state = state.lock().expect("fake state");
            pass.run(&mut state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the simulation remembers between passes.
#[derive(Default)]
struct Pass {
    next_ip: u32,
    /// Per pod (namespace/name): when its image pull was last tried and whether it worked.
    pulls: BTreeMap<String, (i64, bool)>,
}

fn collection(group_version: &str, resource: &str, namespace: &str) -> Collection {
    (group_version.to_string(), resource.to_string(), Some(namespace.to_string()))
}

fn items(state: &FakeState, group_version: &str, resource: &str) -> Vec<(String, Value)> {
    state
        .objects
        .iter()
        .filter(|((gv, r, _), _)| gv == group_version && r == resource)
        .flat_map(|((_, _, ns), objects)| objects.values().map(move |o| (ns.clone().unwrap_or_default(), o.clone())))
        .collect()
}

fn name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn owner(object: &Value) -> Option<String> {
    object["metadata"]["ownerReferences"][0]["name"].as_str().map(str::to_string)
}

fn template_hash(template: &Value) -> String {
    hex::encode(&sha2::Sha256::digest(template.to_string().as_bytes())[..5])
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// An int-or-percent of a rolling update, resolved against `total`.
fn resolve(value: &Value, total: i64, round_up: bool, default: i64) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(default),
        Value::String(text) => text
            .strip_suffix('%')
            .and_then(|n| n.parse::<i64>().ok())
            .map_or(default, |p| if round_up { (total * p + 99) / 100 } else { total * p / 100 }),
        _ => default,
    }
}

/// Stores `object` only when it changed (no churn of resource versions for watchers).
fn save(state: &mut FakeState, collection: Collection, before: &Value, object: Value) {
    if before != &object {
        state.store(collection, object);
    }
}

impl Pass {
    fn run(&mut self, state: &mut FakeState) {
        self.collect_garbage(state);
        for (namespace, deployment) in items(state, "apps/v1", "deployments") {
            self.deployment(state, &namespace, deployment);
        }
        for (namespace, replica_set) in items(state, "apps/v1", "replicasets") {
            self.replica_set(state, &namespace, replica_set);
        }
        for (namespace, stateful_set) in items(state, "apps/v1", "statefulsets") {
            self.stateful_set(state, &namespace, stateful_set);
        }
        for (namespace, claim) in items(state, "v1", "persistentvolumeclaims") {
            if claim["status"]["phase"] != "Bound" {
                let mut bound = claim.clone();
                bound["status"] = json!({"phase": "Bound", "accessModes": claim["spec"]["accessModes"]});
                save(state, collection("v1", "persistentvolumeclaims", &namespace), &claim, bound);
            }
        }
        for (namespace, pod) in items(state, "v1", "pods") {
            self.kubelet(state, &namespace, pod);
        }
    }

    /// Removes ReplicaSets, pods and claims whose owner is gone.
    fn collect_garbage(&mut self, state: &mut FakeState) {
        let exists = |state: &FakeState, resource: &str, namespace: &str, name: &str| {
            state.objects.get(&collection("apps/v1", resource, namespace)).is_some_and(|items| items.contains_key(name))
        };
        let mut doomed = Vec::new();
        for (namespace, replica_set) in items(state, "apps/v1", "replicasets") {
            if let Some(owner) = owner(&replica_set)
                && !exists(state, "deployments", &namespace, &owner)
            {
                doomed.push(collection_and_name("apps/v1", "replicasets", &namespace, &replica_set));
            }
        }
        for (namespace, pod) in items(state, "v1", "pods") {
            let kind = pod["metadata"]["ownerReferences"][0]["kind"].as_str().unwrap_or_default();
            let resource = if kind == "StatefulSet" { "statefulsets" } else { "replicasets" };
            if let Some(owner) = owner(&pod)
                && !exists(state, resource, &namespace, &owner)
            {
                doomed.push(collection_and_name("v1", "pods", &namespace, &pod));
            }
        }
        for (collection, name) in doomed {
            state.remove(&collection, &name);
        }
    }

    fn deployment(&mut self, state: &mut FakeState, namespace: &str, deployment: Value) {
        let deployment_name = name(&deployment);
        let spec = &deployment["spec"];
        let replicas = spec["replicas"].as_i64().unwrap_or(1);
        let template = &spec["template"];
        let hash = template_hash(template);
        let new_name = format!("{deployment_name}-{hash}");
        let rs_collection = collection("apps/v1", "replicasets", namespace);
        let owned: Vec<Value> = items(state, "apps/v1", "replicasets")
            .into_iter()
            .filter(|(ns, rs)| ns == namespace && owner(rs).as_deref() == Some(&deployment_name))
            .map(|(_, rs)| rs)
            .collect();
        let mut progressed = false;
        if !owned.iter().any(|rs| name(rs) == new_name) {
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let mut pod_template = template.clone();
            pod_template["metadata"]["labels"] = labels.clone();
            let replica_set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": new_name, "namespace": namespace, "labels": labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name,
                        "uid": deployment["metadata"]["uid"], "controller": true}]},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"pod-template-hash": hash}}, "template": pod_template}});
            state.store(rs_collection.clone(), replica_set);
            progressed = true;
        }
        let owned: Vec<Value> = items(state, "apps/v1", "replicasets")
            .into_iter()
            .filter(|(ns, rs)| ns == namespace && owner(rs).as_deref() == Some(&deployment_name))
            .map(|(_, rs)| rs)
            .collect();
        let counts: Vec<(Value, i64, i64)> = owned
            .iter()
            .map(|rs| {
                let pods = pods_of(state, namespace, &name(rs));
                let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
                (rs.clone(), rs["spec"]["replicas"].as_i64().unwrap_or(0), ready)
            })
            .collect();
        let surge = resolve(&spec["strategy"]["rollingUpdate"]["maxSurge"], replicas, true, 1);
        let unavailable = resolve(&spec["strategy"]["rollingUpdate"]["maxUnavailable"], replicas, false, 0);
        let total: i64 = counts.iter().map(|(_, wanted, _)| wanted).sum();
        let total_ready: i64 = counts.iter().map(|(_, _, ready)| ready).sum();
        let mut wanted: BTreeMap<String, i64> = counts.iter().map(|(rs, w, _)| (name(rs), *w)).collect();
        // Scale the new ReplicaSet up within the surge, or down to the replicas.
        let new_wanted = wanted.get(&new_name).copied().unwrap_or(0);
        let target = if new_wanted < replicas {
            let room = (replicas + surge - total).max(0);
            new_wanted + room.min(replicas - new_wanted)
        } else {
            replicas
        };
        wanted.insert(new_name.clone(), target);
        // Scale old ones down: unready instances first, then ready ones above minimum availability.
        let mut budget = (total_ready - (replicas - unavailable)).max(0);
        for (rs, old_wanted, ready) in &counts {
            if name(rs) == new_name || *old_wanted == 0 {
                continue;
            }
            let unready = (old_wanted - ready).max(0);
            let remove_ready = budget.min(*ready);
            budget -= remove_ready;
            wanted.insert(name(rs), old_wanted - unready - remove_ready);
        }
        for (rs, old_wanted, _) in &counts {
            let new_count = wanted[&name(rs)];
            if new_count != *old_wanted {
                let mut scaled = rs.clone();
                scaled["spec"]["replicas"] = json!(new_count);
                save(state, rs_collection.clone(), rs, scaled);
                let verb = if new_count > *old_wanted { "up" } else { "down" };
                let message = format!("Scaled {verb} replica set {} from {old_wanted} to {new_count}", name(rs));
                state.event(namespace, &deployment, "Normal", "ScalingReplicaSet", message);
                progressed = true;
            }
        }

        // Status.
        let all_pods: Vec<Value> = owned.iter().flat_map(|rs| pods_of(state, namespace, &name(rs))).collect();
        let new_pods: Vec<&Value> =
            all_pods.iter().filter(|p| p["metadata"]["labels"]["pod-template-hash"] == json!(hash)).collect();
        let updated = new_pods.len() as i64;
        let updated_ready = new_pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let ready = all_pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let old_status = &deployment["status"];
        if old_status["updatedReplicas"].as_i64() != Some(updated)
            || old_status["readyReplicas"].as_i64() != Some(ready)
            || old_status["observedGeneration"] != deployment["metadata"]["generation"]
        {
            progressed = true;
        }
        let complete = updated == replicas && updated_ready == replicas && all_pods.len() as i64 == replicas;
        let previous = old_status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Progressing")
            .cloned()
            .unwrap_or(Value::Null);
        let deadline = spec["progressDeadlineSeconds"].as_i64().unwrap_or(600);
        let now = now_rfc3339();
        let progressing = if complete {
            let since = if previous["reason"] == "NewReplicaSetAvailable" {
                previous["lastUpdateTime"].clone()
            } else {
                json!(now)
            };
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                "message": format!("ReplicaSet \"{new_name}\" has successfully progressed."), "lastUpdateTime": since})
        } else if progressed || previous.is_null() || previous["reason"] == "NewReplicaSetAvailable" {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                "message": format!("ReplicaSet \"{new_name}\" is progressing."), "lastUpdateTime": now})
        } else if previous["reason"] == "ProgressDeadlineExceeded"
            || seconds_since(&previous["lastUpdateTime"]) > deadline
        {
            if previous["reason"] != "ProgressDeadlineExceeded" {
                let message = format!("Deployment {deployment_name:?} exceeded its progress deadline");
                state.event(namespace, &deployment, "Warning", "ProgressDeadlineExceeded", message);
            }
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                "lastUpdateTime": previous["lastUpdateTime"]})
        } else {
            previous.clone()
        };
        let available =
            json!({"type": "Available", "status": if ready >= replicas - unavailable { "True" } else { "False" }});
        let mut updated_deployment = deployment.clone();
        updated_deployment["status"] = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": all_pods.len(), "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": ready, "unavailableReplicas": (replicas - ready).max(0),
            "conditions": [available, progressing],
        });
        save(state, collection("apps/v1", "deployments", namespace), &deployment, updated_deployment);
    }

    /// Pods to the ReplicaSet's count: new ones named `<set>-<random>`, extra ones (unready first) deleted.
    fn replica_set(&mut self, state: &mut FakeState, namespace: &str, replica_set: Value) {
        let wanted = replica_set["spec"]["replicas"].as_i64().unwrap_or(0);
        let set_name = name(&replica_set);
        let mut pods: Vec<Value> = items(state, "v1", "pods")
            .into_iter()
            .filter(|(ns, pod)| ns == namespace && owner(pod).as_deref() == Some(&set_name))
            .map(|(_, pod)| pod)
            .collect();
        let pods_collection = collection("v1", "pods", namespace);
        if (pods.len() as i64) < wanted {
            for _ in pods.len() as i64..wanted {
                let suffix: String = (0..5)
                    .map(|_| {
                        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
                        alphabet[rand::random_range(0..alphabet.len())] as char
                    })
                    .collect();
                let pod = new_pod(&replica_set, "ReplicaSet", &format!("{set_name}-{suffix}"), namespace);
                state.store(pods_collection.clone(), pod);
            }
        } else if (pods.len() as i64) > wanted {
            pods.sort_by_key(|p| {
                (pod_ready(p), std::cmp::Reverse(p["metadata"]["resourceVersion"].clone().to_string()))
            });
            for pod in pods.iter().take(pods.len() - wanted as usize) {
                state.remove(&pods_collection, &name(pod));
            }
        }
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let mut updated = replica_set.clone();
        updated["status"] = json!({"replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": replica_set["metadata"]["generation"]});
        save(state, collection("apps/v1", "replicasets", namespace), &replica_set, updated);
    }

    fn stateful_set(&mut self, state: &mut FakeState, namespace: &str, stateful_set: Value) {
        let set_name = name(&stateful_set);
        let replicas = stateful_set["spec"]["replicas"].as_i64().unwrap_or(1);
        let revision = format!("{set_name}-{}", template_hash(&stateful_set["spec"]["template"]));
        let pods_collection = collection("v1", "pods", namespace);
        let mut pods: BTreeMap<i64, Value> = BTreeMap::new();
        for (ns, pod) in items(state, "v1", "pods") {
            if ns == namespace
                && owner(&pod).as_deref() == Some(&set_name)
                && let Some(ordinal) = name(&pod).rsplit('-').next().and_then(|o| o.parse::<i64>().ok())
            {
                pods.insert(ordinal, pod);
            }
        }
        for ordinal in 0..replicas {
            if pods.contains_key(&ordinal) {
                continue;
            }
            let pod_name = format!("{set_name}-{ordinal}");
            let mut pod = new_pod(&stateful_set, "StatefulSet", &pod_name, namespace);
            pod["metadata"]["labels"]["controller-revision-hash"] = json!(revision);
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
            for claim in stateful_set["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
                let claim_name = format!("{}-{pod_name}", name(claim));
                let exists = state
                    .objects
                    .get(&collection("v1", "persistentvolumeclaims", namespace))
                    .is_some_and(|items| items.contains_key(&claim_name));
                if !exists {
                    let mut object = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim_name, "namespace": namespace, "labels": claim["metadata"]["labels"]},
                        "spec": claim["spec"]});
                    if object["metadata"]["labels"].is_null() {
                        object["metadata"]["labels"] = json!({});
                    }
                    state.store(collection("v1", "persistentvolumeclaims", namespace), object);
                }
            }
            state.store(pods_collection.clone(), pod);
        }
        for (ordinal, pod) in &pods {
            if *ordinal >= replicas {
                state.remove(&pods_collection, &name(pod));
            }
        }
        // Rolling update: once every pod is there and ready, replace the highest outdated one.
        let current: Vec<&Value> = pods.iter().filter(|(o, _)| **o < replicas).map(|(_, p)| p).collect();
        if current.len() as i64 == replicas
            && current.iter().all(|p| pod_ready(p))
            && let Some(outdated) =
                current.iter().rev().find(|p| p["metadata"]["labels"]["controller-revision-hash"] != json!(revision))
        {
            state.remove(&pods_collection, &name(outdated));
        }
        let updated =
            current.iter().filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == json!(revision)).count();
        let ready = current.iter().filter(|p| pod_ready(p)).count();
        let mut object = stateful_set.clone();
        object["status"] = json!({"observedGeneration": stateful_set["metadata"]["generation"], "replicas": current.len(),
            "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": updated,
            "currentRevision": revision, "updateRevision": revision});
        save(state, collection("apps/v1", "statefulsets", namespace), &stateful_set, object);
    }

    /// The scheduler and the kubelet for one pod.
    fn kubelet(&mut self, state: &mut FakeState, namespace: &str, pod: Value) {
        let pods_collection = collection("v1", "pods", namespace);
        let pod_name = name(&pod);
        let key = format!("{namespace}/{pod_name}");
        if pod["status"]["phase"] == "Succeeded" || pod["status"]["phase"] == "Failed" {
            return;
        }
        let mut updated = pod.clone();
        if pod["spec"]["nodeName"].is_null() {
            let Some(node) = items(state, "v1", "nodes").first().map(|(_, n)| name(n)) else { return };
            updated["spec"]["nodeName"] = json!(node);
            state.event(namespace, &pod, "Normal", "Scheduled", format!("Successfully assigned {key} to {node}"));
        }
        if state.kubelet.is_some() {
            // A kubelet runs the pods for real (`kubelet`): only scheduling is simulated.
            save(state, pods_collection, &pod, updated);
            return;
        }
        let container = &pod["spec"]["containers"][0];
        let image = container["image"].as_str().unwrap_or_default().to_string();
        let now = jiff::Timestamp::now().as_second();
        let (tried, pulled) = self.pulls.get(&key).copied().unwrap_or((0, false));
        if !pulled && now - tried >= 5 {
            let works = pullable(&image);
            self.pulls.insert(key.clone(), (now, works.is_ok()));
            match works {
                Ok(()) => state.event(
                    namespace,
                    &pod,
                    "Normal",
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                ),
                Err(message) => state.event(namespace, &pod, "Warning", "Failed", message),
            }
        }
        let (_, pulled) = self.pulls.get(&key).copied().unwrap_or((0, false));
        let container_name = container["name"].clone();
        let mut status = pod["status"].clone();
        if !pulled {
            let message = format!("failed to pull and unpack image \"{image}\": the registry did not answer");
            status = json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": container_name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}]});
        } else {
            if status["podIP"].is_null() {
                self.next_ip += 1;
                status["podIP"] = json!(format!("10.244.{}.{}", self.next_ip / 250, self.next_ip % 250 + 2));
                status["startTime"] = json!(now_rfc3339());
                state.event(namespace, &pod, "Normal", "Started", format!("Started container {container_name}"));
            }
            let started = status["startTime"].clone();
            let ports: Vec<i64> = container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["containerPort"].as_i64())
                .collect();
            let probe = &container["readinessProbe"];
            let probed_port = probe["httpGet"]["port"].as_i64().or(probe["tcpSocket"]["port"].as_i64());
            let listening = probed_port.is_none_or(|port| ports.contains(&port));
            let delay = probe["initialDelaySeconds"].as_i64().unwrap_or(0);
            let ready = listening && seconds_since(&started) >= delay;
            if !listening && !pod_ready(&pod) && pod["status"]["conditions"].is_null() {
                let message = format!(
                    "Readiness probe failed: dial tcp {}:{}: connect: connection refused",
                    status["podIP"].as_str().unwrap_or_default(),
                    probed_port.unwrap_or_default()
                );
                state.event(namespace, &pod, "Warning", "Unhealthy", message);
            }
            let flag = if ready { "True" } else { "False" };
            status["phase"] = json!("Running");
            status["hostIP"] = json!("10.0.0.10");
            status["conditions"] = json!([{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": flag}, {"type": "Ready", "status": flag}]);
            status["containerStatuses"] = json!([{"name": container_name, "image": image, "imageID": format!("sha256:{}", template_hash(&json!(image))),
                "containerID": format!("containerd://{}", template_hash(&json!(key))), "ready": ready, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": started}}}]);
        }
        updated["status"] = status;
        save(state, pods_collection, &pod, updated);
    }
}

/// The pods `owner` owns.
fn pods_of(state: &FakeState, namespace: &str, owner_name: &str) -> Vec<Value> {
    items(state, "v1", "pods")
        .into_iter()
        .filter(|(ns, pod)| ns == namespace && owner(pod).as_deref() == Some(owner_name))
        .map(|(_, pod)| pod)
        .collect()
}

fn collection_and_name(group_version: &str, resource: &str, namespace: &str, object: &Value) -> (Collection, String) {
    (collection(group_version, resource, namespace), name(object))
}

/// A pod of `owner` (a ReplicaSet or StatefulSet) from its template.
fn new_pod(owner: &Value, owner_kind: &str, pod_name: &str, namespace: &str) -> Value {
    let template = &owner["spec"]["template"];
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": namespace, "labels": template["metadata"]["labels"],
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": name(owner),
                "uid": owner["metadata"]["uid"], "controller": true}]},
        "spec": template["spec"], "status": {"phase": "Pending"}})
}

/// Whether `image` can be pulled: images of a registry on this machine (`127.0.0.1:PORT/…`,
/// `localhost:PORT/…`) only when something answers there; others are taken as present.
fn pullable(image: &str) -> Result<(), String> {
    let Some((host, _)) = image.split_once('/') else { return Ok(()) };
    let Some(port) = host.strip_prefix("127.0.0.1:").or_else(|| host.strip_prefix("localhost:")) else { return Ok(()) };
    let address = format!("127.0.0.1:{port}");
    let Ok(socket) = address.parse() else { return Ok(()) };
    std::net::TcpStream::connect_timeout(&socket, Duration::from_millis(200)).map(|_| ()).map_err(|e| {
        format!("Failed to pull image \"{image}\": failed to resolve reference \"{image}\": dial tcp {address}: {e}")
    })
}

/// `PodMetrics` of the running pods of `namespace` matching the request's selectors (those a
/// kubelet has no usage of yet are left out, as metrics-server leaves them out).
pub(crate) fn pod_metrics(state: &FakeState, namespace: Option<&str>, query: &BTreeMap<String, String>) -> Value {
    let items: Vec<Value> = items(state, "v1", "pods")
        .into_iter()
        .filter(|(ns, pod)| {
            namespace.is_none_or(|n| n == ns) && pod["status"]["phase"] == "Running" && super::selected(pod, query)
        })
        .filter_map(|(ns, pod)| {
            let containers: Vec<Value> = match &state.kubelet {
                Some(kubelet) => super::kubelet::usage(kubelet, &ns, &name(&pod)),
                None => pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| json!({"name": c["name"], "usage": {"cpu": "2500000n", "memory": "12Mi"}}))
                    .collect(),
            };
            (!containers.is_empty()).then(|| {
                json!({"metadata": {"name": name(&pod), "namespace": ns, "labels": pod["metadata"]["labels"]},
                    "timestamp": now_rfc3339(), "window": "15s", "containers": containers})
            })
        })
        .collect();
    json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items})
}

/// The log of a pod's simulated container: a line saying it started, then (with
/// `follow=true`) a line every 200 ms for as long as the client reads, each with its time
/// when `timestamps=true`.
pub(crate) fn log(pod: &Value, query: &BTreeMap<String, String>) -> axum::response::Response {
    let container = pod["spec"]["containers"][0]["name"].as_str().unwrap_or_default().to_string();
    let pod_name = name(pod);
    let timestamps = query.get("timestamps").is_some_and(|t| t == "true");
    let stamp = move |text: String| {
        if timestamps { format!("{} {text}\n", jiff::Timestamp::now()) } else { format!("{text}\n") }
    };
    let first = stamp(format!("container {container} of pod {pod_name} started"));
    if query.get("follow").is_none_or(|f| f != "true") {
        return axum::response::IntoResponse::into_response(first);
    }
    let lines = futures::stream::unfold(0u64, move |n| {
        let (container, pod_name) = (container.clone(), pod_name.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let line = stamp(format!("container {container} of pod {pod_name} is running ({n})"));
            Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(line)), n + 1))
        }
    });
    let body = futures::stream::once(async move { Ok(axum::body::Bytes::from(first)) }).chain(lines);
    axum::response::IntoResponse::into_response(axum::body::Body::from_stream(body))
}
