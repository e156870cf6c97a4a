//! Services on the embedded runtime, for real: a component's service name resolves inside
//! another container to its service address; connections to the address are spread over
//! every ready instance and never reach one that is not ready; the published port answers
//! on the host's loopback; deleting the application removes its rules; a stopped runtime
//! loads none.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_driver::ClusterDriver;
use flotilla_driver::status::WorkloadStatus;
use flotilla_driver::workload::WorkloadKey;
use flotilla_local::driver::LocalDriver;
use flotilla_local::services::{self, Chains};
use serde_json::json;
use support::drivers::*;

/// Runs `script` with `sh -c` in the client instance; its standard output.
async fn in_client(driver: &LocalDriver, key: &WorkloadKey, script: &str) -> String {
    let command = vec!["/bin/sh".into(), "-c".into(), script.to_string()];
    let output = driver.exec(key, "client", None, command).await.unwrap();
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The instance names that answered `requests` connections to `target`, as seen from the
/// client (each web instance serves its host name, which is its instance name).
async fn answers(driver: &LocalDriver, key: &WorkloadKey, target: &str, requests: u32) -> Vec<String> {
    let script = format!(
        "for i in $(seq {requests}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target} 8080 | tail -n 1; done"
    );
    in_client(driver, key, &script).await.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

fn web_names(status: &WorkloadStatus, ready_only: bool) -> BTreeSet<String> {
    status
        .instances
        .iter()
        .filter(|i| i.component == "web" && (!ready_only || i.is_ready()))
        .map(|i| i.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_resolve_balance_over_ready_instances_and_publish_on_the_host() {
    with_driver_runtime(|runtime, key| async move {
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![]).await;
        let driver = start_driver(&runtime).await;
        let host_port = 20000 + u16::from_str_radix(&runtime.short[..3], 16).unwrap() % 10000;
        let web = json!({
            "name": "web", "image": IMAGE, "replicas": 3,
            "command": ["/bin/sh", "-c", "mkdir -p /www /tmp; hostname > /www/index.html; touch /tmp/ready; exec httpd -f -p 8080 -h /www"],
            "ports": [{"name": "http", "port": 8080, "publish": host_port}],
            "probes": {"readiness": {"exec": {"command": ["/bin/cat", "/tmp/ready"]}, "periodSeconds": 1}}
        });
        let client = json!({"name": "client", "image": IMAGE, "command": ["/bin/sleep", "3600"]});
        driver.apply(&workload(&key, 1, json!({"environment": "test", "components": [web, client]}))).await.unwrap();
        let status = wait_for(&driver, &key, 60, "every instance ready", |s| complete(s, 1)).await;
        let service = component(&status, "web").service.clone().expect("web has ports, so a service");
        assert!(runtime.service_range.contains(&service.address.parse::<std::net::Ipv4Addr>().unwrap()), "{service:?}");
        assert_eq!(service.dns_name, format!("web.shop.test.{}.flotilla.internal", key.project));
        assert!(component(&status, "client").service.is_none(), "no ports, no service");

        // The name resolves inside another container, in full and by the short name.
        let lookup = in_client(&driver, &key, &format!("nslookup {}", service.dns_name)).await;
        assert!(lookup.contains(&service.address), "{lookup}");
        // The C library's resolver (as applications use it) tries the search domains.
        let short = in_client(&driver, &key, "ping -c 1 -W 1 web.shop 2>&1").await;
        assert!(
            short.contains(&format!("PING web.shop ({})", service.address)),
            "the search domains find the environment's service: {short}"
        );
        let missing = in_client(&driver, &key, &format!("nslookup nothing.shop.test.{}.flotilla.internal", key.project)).await;
        assert!(!missing.contains(&service.address), "{missing}");

        // Spread over all three ready instances, by name and by address.
        let all = web_names(&status, true);
        assert_eq!(all.len(), 3);
        let seen: BTreeSet<String> = answers(&driver, &key, "web.shop", 40).await.into_iter().collect();
        assert_eq!(seen, all, "every ready instance answers through the service name");
        let seen: BTreeSet<String> = answers(&driver, &key, &service.address, 40).await.into_iter().collect();
        assert_eq!(seen, all, "every ready instance answers through the service address");

        // One instance stops being ready: it gets no more connections.
        let drained = all.iter().next().unwrap().clone();
        let output =
            driver.exec(&key, "web", Some(&drained), vec!["/bin/sh".into(), "-c".into(), "rm /tmp/ready".into()]).await.unwrap();
        assert_eq!(output.exit_code, 0);
        let status = wait_for(&driver, &key, 20, "the drained instance not ready", |s| {
            component(s, "web").ready == 2
        })
        .await;
        assert!(!web_names(&status, true).contains(&drained));
        let event = status.events.iter().find(|e| e.reason == "Unhealthy").expect("an event says why");
        assert_eq!(event.instance.as_deref(), Some(drained.as_str()), "{event:?}");
        assert!(event.message.contains("readiness probe failed") && event.message.contains("/tmp/ready"), "{event:?}");
        tokio::time::sleep(Duration::from_millis(700)).await; // the rules follow within a reconcile
        let seen: BTreeSet<String> = answers(&driver, &key, &service.address, 30).await.into_iter().collect();
        assert!(!seen.contains(&drained), "a not-ready instance gets no traffic: {seen:?}");
        assert_eq!(seen.len(), 2, "{seen:?}");

        // The published port answers on the host's loopback with one of the ready instances.
        let page = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut page = String::new();
            stream.read_to_string(&mut page).unwrap();
            page
        })
        .await
        .unwrap();
        let answered = page.lines().last().unwrap_or_default().trim().to_string();
        assert!(seen.contains(&answered), "{page}");

        // Deleting the application removes its rules: the address is no longer translated.
        driver.delete(&key, false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let rules = std::process::Command::new("iptables").args(["-t", "nat", "-S"]).output().unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(!rules.contains(&format!("{}/32", service.address)), "{rules}");
        assert!(!rules.contains(&format!("--dport {host_port} ")), "{rules}");
    })
    .await;
}

/// The runtime's chains in the nat and filter tables.
fn chains_of(chains: &Chains) -> Vec<String> {
    ["nat", "filter"].iter().flat_map(|table| flotilla_local::iptables::chains(table, chains.prefix())).collect()
}

/// Removes a test's chains when it ends, also when it fails.
struct RemovesChains(Chains);

impl Drop for RemovesChains {
    fn drop(&mut self) {
        services::remove(&self.0);
    }
}

/// A driver dropped while its last rule load waits on the blocking pool: the load must not
/// bring back the rules removed after the drop (as a test's clean-up, or a newer driver of
/// the same directory, removes or replaces them).
#[test]
fn a_stopped_runtime_loads_no_rules() {
    let dir = tempfile::tempdir().unwrap();
    let chains = Chains::of(&dir.path().join("runtime"));
    let _removes = RemovesChains(chains.clone());
    let stopped = AtomicBool::new(true);
    services::apply(&chains, &[], &[], &stopped).unwrap();
    assert_eq!(chains_of(&chains), Vec::<String>::new(), "a stopped runtime loaded rules");
    stopped.store(false, Ordering::SeqCst);
    services::apply(&chains, &[], &[], &stopped).unwrap();
    let prefix = chains.prefix();
    let loaded: BTreeSet<String> = chains_of(&chains).into_iter().collect();
    let expected = BTreeSet::from([format!("{prefix}SVC"), format!("{prefix}MASQ"), format!("{prefix}FW")]);
    assert_eq!(loaded, expected, "a running runtime's empty rules are its three chains");
    services::remove(&chains);
    assert_eq!(chains_of(&chains), Vec::<String>::new(), "removed chains are gone");
}
