//! Environments are isolated on the network: each gets a bridge and subnet of its own through
//! the `flotilla-net` CNI plugin, pods of one environment reach each other, and a pod of
//! another environment cannot reach them. Set-ups and removals of networks running at once
//! leave each other's rules whole.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::{Duration, Instant};

use flotilla_local::cri::{Cri, api};
use flotilla_local::oci_archive::LayerFile;

const IMAGE: &str = "flotilla.local/test/net:1";

/// Runs a pod of one container in `namespace`; returns (container id, pod IP).
async fn pod(
    cri: &mut Cri,
    runtime: &support::Runtime,
    namespace: &str,
    name: &str,
    command: &[&str],
) -> (String, String) {
    let logs = runtime.dir.join("logs").join(name);
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-{}", runtime.short),
            namespace: namespace.into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        labels: runtime.selector(),
        linux: Some(api::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let sandbox_id = cri.run_pod_sandbox(sandbox.clone()).await.unwrap_or_else(|e| panic!("sandbox {name}: {e}"));
    let container = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: "main".into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: "main.log".into(),
        linux: Some(api::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let id = cri.create_container(&sandbox_id, container, sandbox).await.unwrap();
    cri.start_container(&id).await.unwrap();
    let ip = cri.pod_ip(&sandbox_id).await.unwrap().expect("an address");
    (id, ip)
}

/// Whether `from` gets the page of `to_ip` over HTTP within two seconds. (`nc`, not busybox's
/// `wget`: the static `wget` crashes looking the `http` service up without NSS.)
async fn reaches(cri: &mut Cri, from: &str, to_ip: &str) -> (bool, String) {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {to_ip} 8080");
    let output = cri.exec_sync(from, vec!["/bin/sh".into(), "-c".into(), script], 10).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let text = format!("exit {}: {stdout}{}", output.exit_code, String::from_utf8_lossy(&output.stderr));
    (stdout.contains("200 OK"), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_their_own_environment_and_not_another() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = id[..5].to_string();
    let octet = u8::from_str_radix(&id[6..8], 16).unwrap();
    let (prod, test) = (format!("p{short}--prod"), format!("p{short}--test"));
    let options = support::Options {
        cleanup_labels: Vec::new(),
        environments: vec![
            (prod.clone(), format!("flt{short}p"), format!("10.214.{octet}.0/24")),
            (test.clone(), format!("flt{short}t"), format!("10.215.{octet}.0/24")),
        ],
        per_environment_networks: true,
        ..Default::default()
    };
    let prod_bridge = format!("flt{short}p");
    let bridge = prod_bridge.clone();
    support::with_runtime_options(options, move |runtime| async move {
        let page = LayerFile { path: "www/index.html".into(), mode: 0o644, content: b"prod data\n".to_vec() };
        runtime.import_busybox(IMAGE, &["/bin/sh"], vec![page]).await;
        let mut cri = Cri::connect(&runtime.socket).await.unwrap();
        let (_, server_ip) =
            pod(&mut cri, &runtime, &prod, "server", &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]).await;
        let (neighbour, neighbour_ip) = pod(&mut cri, &runtime, &prod, "neighbour", &["/bin/sleep", "3600"]).await;
        let (outsider, outsider_ip) = pod(&mut cri, &runtime, &test, "outsider", &["/bin/sleep", "3600"]).await;
        assert!(server_ip.starts_with(&format!("10.214.{octet}.")), "{server_ip}");
        assert!(neighbour_ip.starts_with(&format!("10.214.{octet}.")), "{neighbour_ip}");
        assert!(outsider_ip.starts_with(&format!("10.215.{octet}.")), "{outsider_ip}: the test environment's subnet");

        let started = Instant::now();
        loop {
            let (ok, output) = reaches(&mut cri, &neighbour, &server_ip).await;
            if ok {
                assert!(output.contains("prod data"), "{output}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a pod of the same environment gets no answer: {output}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The outsider's own network works: it reaches a server of its own environment...
        let (_, own_server_ip) =
            pod(&mut cri, &runtime, &test, "test-server", &["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]).await;
        let started = Instant::now();
        while !reaches(&mut cri, &outsider, &own_server_ip).await.0 {
            assert!(started.elapsed() < Duration::from_secs(10), "the test environment's own server is unreachable");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // ...but not prod's.
        let (ok, output) = reaches(&mut cri, &outsider, &server_ip).await;
        assert!(!ok, "a pod of another environment must not reach prod: {output}");

        // Traffic leaving a network is masqueraded by one rule per network, not a chain per pod.
        let nat = std::process::Command::new("iptables").args(["-t", "nat", "-S", "POSTROUTING"]).output().unwrap();
        let nat = String::from_utf8_lossy(&nat.stdout).to_string();
        let prod_rule = format!("-A POSTROUTING -s 10.214.{octet}.0/24 ! -o {bridge} -j MASQUERADE");
        assert_eq!(nat.lines().filter(|l| *l == prod_rule).count(), 1, "{nat}");
        let per_pod = nat.lines().filter(|l| l.contains(&format!("-s 10.214.{octet}."))).count();
        assert_eq!(per_pod, 1, "no rule per pod: {nat}");
    })
    .await;
    let nat = std::process::Command::new("iptables").args(["-t", "nat", "-S", "POSTROUTING"]).output().unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout).to_string();
    assert!(!nat.contains(&prod_bridge), "removed with the network: {nat}");
}

/// Pods of several environments being set up while other networks are removed, as on a busy
/// host: every network set up has its rules exactly once (its ACCEPT and masquerading rule,
/// the shared DROP rule and the jump to the isolation chain), and a removed one has none.
/// The networks are rules only (no bridge; TEST-NET-1 addresses): nothing reaches them.
#[test]
fn rules_set_up_and_removed_at_once_stay_whole() {
    use flotilla_local::cni_plugin::{EnvironmentNetwork, remove_isolation, set_up_rules};
    assert!(nix::unistd::Uid::effective().is_root(), "this test changes the firewall: run it as root");
    let short = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let networks: Vec<EnvironmentNetwork> = (0..6u8)
        .map(|n| EnvironmentNetwork { bridge: format!("flt{short}t{n}"), subnet: format!("192.0.2.{}/28", n * 16) })
        .collect();
    let rules = || {
        let listed = |table: &str| std::process::Command::new("iptables-save").args(["-t", table]).output().unwrap();
        let (filter, nat) = (listed("filter"), listed("nat"));
        format!("{}{}", String::from_utf8_lossy(&filter.stdout), String::from_utf8_lossy(&nat.stdout))
    };
    let count = |rules: &str, wanted: &str| rules.lines().filter(|line| *line == wanted).count();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = networks
            .iter()
            .map(|network| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    let own = [
                        format!("-A FLOTILLA-ISOLATION -i {0} -o {0} -j ACCEPT", network.bridge),
                        format!("-A POSTROUTING -s {} ! -o {} -j MASQUERADE", network.subnet, network.bridge),
                    ];
                    for round in 0..5 {
                        // Two pods of the environment set up at once.
                        std::thread::scope(|pods| {
                            let both = [pods.spawn(|| set_up_rules(network)), pods.spawn(|| set_up_rules(network))];
                            for pod in both {
                                pod.join().unwrap().unwrap();
                            }
                        });
                        let now = rules();
                        for (rule, times) in [
                            (own[0].as_str(), count(&now, &own[0])),
                            (own[1].as_str(), count(&now, &own[1])),
                            ("-A FORWARD -j FLOTILLA-ISOLATION", count(&now, "-A FORWARD -j FLOTILLA-ISOLATION")),
                            (
                                "-A FLOTILLA-ISOLATION -i flt+ -o flt+ -j DROP",
                                count(&now, "-A FLOTILLA-ISOLATION -i flt+ -o flt+ -j DROP"),
                            ),
                        ] {
                            if times != 1 {
                                failures.push(format!("{} round {round}: {rule:?} {times} times", network.bridge));
                            }
                        }
                        remove_isolation(std::slice::from_ref(&network.bridge));
                        let now = rules();
                        failures.extend(
                            own.iter()
                                .filter(|rule| count(&now, rule) > 0)
                                .map(|rule| format!("{} round {round}: {rule:?} left", network.bridge)),
                        );
                    }
                    failures
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    let bridges: Vec<String> = networks.iter().map(|n| n.bridge.clone()).collect();
    remove_isolation(&bridges);
    assert!(failures.is_empty(), "{failures:#?}");
}
