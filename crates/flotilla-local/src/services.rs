//! Services of the embedded runtime: every component with ports gets a stable virtual
//! address from the service range and a DNS name ([`crate::dns`]). Connections to the address
//! (and to a port the component publishes on the host) are spread over the component's
//! **ready** instances by NAT rules in the kernel, as kube-proxy's iptables mode does, so
//! traffic keeps flowing while the control plane restarts.
//!
//! The rules of one runtime live in chains named after it (`FLT-<id>-…`, `id` from its
//! directory), so runtimes on one host never touch each other's rules. Each change reloads
//! them all through one `iptables-restore` (atomic per table):
//!
//! - nat `FLT-<id>-SVC` (from PREROUTING and OUTPUT): virtual address or published host
//!   port -> the service port's chain, which marks the connection for masquerading and picks
//!   an endpoint with equal probability;
//! - nat `FLT-<id>-MASQ` (first in POSTROUTING): masquerades marked connections, so that
//!   replies come back through the host whatever the client (an instance of the same bridge,
//!   the instance itself, the host, another machine);
//! - filter `FLT-<id>-FW` (INPUT, FORWARD, OUTPUT): rejects connections to a service with
//!   no ready instance at once, and drops packets to 127.0.0.0/8 arriving from instances
//!   (published ports are reachable on the host's loopback, which needs `route_localnet` on
//!   the bridges; this rule keeps instances from reaching the host's loopback services).
//!
//! Clients see the host's bridge address as the source of service connections (as with
//! kube-proxy's `masqueradeAll`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use flotilla_core::kinds::Protocol;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LocalError;
use crate::iptables;

/// The connection mark bit that asks for masquerading.
const MASQUERADE_MARK: &str = "0x4000/0x4000";

/// Names one component's service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    pub project: String,
    pub environment: String,
    pub application: String,
    pub component: String,
}

impl ServiceKey {
    /// `<component>.<application>.<environment>.<project>.<domain>`.
    pub fn dns_name(&self, domain: &str) -> String {
        format!("{}.{}.{}.{}.{domain}", self.component, self.application, self.environment, self.project)
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.project, self.environment, self.application, self.component)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub protocol: Protocol,
    /// The port of the service address and of the instances.
    pub port: u16,
    /// Also reachable on this port of every host address.
    pub publish: Option<u16>,
}

/// One component's service as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub address: Ipv4Addr,
    pub ports: Vec<ServicePort>,
    /// Addresses of the ready instances.
    pub endpoints: Vec<Ipv4Addr>,
}

/// The chains of the runtime whose directory is `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chains {
    prefix: String,
}

impl Chains {
    pub fn of(root: &Path) -> Self {
        let hash = hex::encode(Sha256::digest(root.as_os_str().as_encoded_bytes()));
        Self { prefix: format!("FLT-{}-", &hash[..6]) }
    }

    /// What the names of all the runtime's chains start with (`FLT-<id>-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn services(&self) -> String {
        format!("{}SVC", self.prefix)
    }

    fn masquerade(&self) -> String {
        format!("{}MASQ", self.prefix)
    }

    fn firewall(&self) -> String {
        format!("{}FW", self.prefix)
    }

    /// The chain of one port of one service (at most 28 characters, as iptables requires).
    fn port(&self, key: &ServiceKey, port: &str) -> String {
        let hash = hex::encode(Sha256::digest(format!("{key}:{port}").as_bytes()));
        format!("{}{}", self.prefix, &hash[..12])
    }

    /// The jumps into our chains from the built-in ones: (table, built-in chain, our chain).
    fn hooks(&self) -> [(&'static str, &'static str, String); 6] {
        [
            ("nat", "PREROUTING", self.services()),
            ("nat", "OUTPUT", self.services()),
            ("nat", "POSTROUTING", self.masquerade()),
            ("filter", "INPUT", self.firewall()),
            ("filter", "FORWARD", self.firewall()),
            ("filter", "OUTPUT", self.firewall()),
        ]
    }
}

fn protocol(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The `iptables-restore` input for `services`; `stale` are chains of ours that existed
/// before and are no longer wanted (they are flushed and deleted).
pub fn render(chains: &Chains, services: &[Service], stale: &BTreeSet<String>) -> String {
    let mut nat = String::new();
    let mut nat_chains = vec![chains.services(), chains.masquerade()];
    let mut filter = String::new();
    let services_chain = chains.services();
    let firewall = chains.firewall();
    let _ = writeln!(nat, "-A {} -m mark --mark {MASQUERADE_MARK} -j MASQUERADE", chains.masquerade());
    let _ = writeln!(
        filter,
        "-A {firewall} -i {}+ ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        crate::cni_plugin::BRIDGE_PREFIX
    );
    for service in services {
        for port in &service.ports {
            let proto = protocol(port.protocol);
            let comment = format!("-m comment --comment \"{}:{}\"", service.key, port.name);
            let matches = {
                let mut matches =
                    vec![format!("-d {}/32 -p {proto} -m {proto} --dport {}", service.address, port.port)];
                if let Some(host_port) = port.publish {
                    matches.push(format!("-p {proto} -m addrtype --dst-type LOCAL -m {proto} --dport {host_port}"));
                }
                matches
            };
            if service.endpoints.is_empty() {
                for matched in &matches {
                    let _ = writeln!(filter, "-A {firewall} {matched} {comment} -j REJECT");
                }
                continue;
            }
            let chain = chains.port(&service.key, &port.name);
            for matched in &matches {
                let _ = writeln!(nat, "-A {services_chain} {matched} {comment} -j {chain}");
            }
            let _ = writeln!(nat, "-A {chain} -j MARK --set-xmark {MASQUERADE_MARK}");
            let count = service.endpoints.len();
            for (index, endpoint) in service.endpoints.iter().enumerate() {
                let remaining = count - index;
                let pick = if remaining > 1 {
                    format!("-m statistic --mode random --probability {:.11} ", 1.0 / remaining as f64)
                } else {
                    String::new()
                };
                let _ = writeln!(nat, "-A {chain} -p {proto} {pick}-j DNAT --to-destination {endpoint}:{}", port.port);
            }
            nat_chains.push(chain);
        }
    }
    let mut out = String::from("*nat\n");
    for chain in &nat_chains {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let wanted: BTreeSet<&String> = nat_chains.iter().collect();
    let gone: Vec<&String> = stale.iter().filter(|c| !wanted.contains(c)).collect();
    for chain in &gone {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    out.push_str(&nat);
    for chain in &gone {
        let _ = writeln!(out, "-X {chain}");
    }
    let _ = write!(out, "COMMIT\n*filter\n:{firewall} - [0:0]\n{filter}COMMIT\n");
    out
}

/// Held while a runtime's rules change ([`apply`], [`remove`]): each is several `iptables`
/// runs, and one interleaved with the other leaves hooks to chains that were just removed
/// (a driver dropped while its last `apply` still runs on the blocking pool, then removed);
/// an `apply` that gets its turn after the removal sees its runtime stopped.
static CHANGING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn changing() -> std::sync::MutexGuard<'static, ()> {
    CHANGING.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Loads the rules of `services`, replacing the runtime's previous ones, unless `stopped` is
/// set once the change may start: a runtime stops (its driver is dropped) while a load it
/// asked for may still wait for its turn on the blocking pool, and a load after the stop
/// would bring back rules that were removed since, or overwrite a newer runtime's. The flag
/// is read under the lock that [`remove`] takes too, so a stopped runtime's rules, once
/// removed, stay removed. Blocking.
pub fn apply(chains: &Chains, services: &[Service], bridges: &[String], stopped: &AtomicBool) -> Result<(), String> {
    let _changing = changing();
    if stopped.load(Ordering::SeqCst) {
        return Ok(());
    }
    let stale: BTreeSet<String> = iptables::chains("nat", &chains.prefix).into_iter().collect();
    iptables::restore(&render(chains, services, &stale))?;
    for (table, builtin, chain) in chains.hooks() {
        iptables::ensure_rule(table, builtin, &["-j", &chain], true)?;
    }
    // Published ports answer on the host's loopback too: the kernel routes 127.0.0.0/8
    // sources to a bridge only with route_localnet (the firewall chain keeps it one-way).
    for bridge in bridges {
        let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
        if Path::new(&path).exists() {
            std::fs::write(&path, "1").map_err(|e| format!("cannot write {path}: {e}"))?;
        }
    }
    Ok(())
}

/// Removes every rule and chain of the runtime. Blocking.
pub fn remove(chains: &Chains) {
    let _changing = changing();
    for (table, builtin, chain) in chains.hooks() {
        iptables::delete_rule(table, builtin, &["-j", &chain]);
    }
    for table in ["nat", "filter"] {
        let ours = iptables::chains(table, &chains.prefix);
        for chain in &ours {
            let _ = iptables::run(&["-t", table, "-F", chain]);
        }
        for chain in &ours {
            let _ = iptables::run(&["-t", table, "-X", chain]);
        }
    }
}

/// Hands out service addresses from one range and remembers them in a file, so that a
/// service keeps its address across restarts of the control plane.
#[derive(Debug)]
pub struct AddressAllocator {
    range: Ipv4Net,
    file: PathBuf,
    assigned: BTreeMap<ServiceKey, Ipv4Addr>,
    /// Grows with every change, so that users of [`Self::all`] rebuild only after one.
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct Assignment {
    service: ServiceKey,
    address: Ipv4Addr,
}

impl AddressAllocator {
    /// Reads the addresses already assigned (kept in `file`).
    pub fn open(range: Ipv4Net, file: PathBuf) -> Self {
        let assigned = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Vec<Assignment>>(&bytes).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| range.contains(&a.address))
            .map(|a| (a.service, a.address))
            .collect();
        Self { range, file, assigned, version: 0 }
    }

    /// Changes with every assignment or release.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The address of `service`, assigning the lowest free one if it has none.
    pub fn ensure(&mut self, service: &ServiceKey) -> Result<Ipv4Addr, LocalError> {
        if let Some(address) = self.assigned.get(service) {
            return Ok(*address);
        }
        let used: BTreeSet<Ipv4Addr> = self.assigned.values().copied().collect();
        let address = self.range.hosts().find(|a| !used.contains(a)).ok_or_else(|| {
            LocalError::Containerd(format!("the service range {} has no free address left", self.range))
        })?;
        self.assigned.insert(service.clone(), address);
        self.save()?;
        Ok(address)
    }

    /// Frees the addresses of services `keep` does not want.
    pub fn retain(&mut self, keep: impl Fn(&ServiceKey) -> bool) -> Result<(), LocalError> {
        let before = self.assigned.len();
        self.assigned.retain(|service, _| keep(service));
        if self.assigned.len() != before { self.save() } else { Ok(()) }
    }

    /// Every assigned address.
    pub fn all(&self) -> impl Iterator<Item = (&ServiceKey, Ipv4Addr)> {
        self.assigned.iter().map(|(service, address)| (service, *address))
    }

    fn save(&mut self) -> Result<(), LocalError> {
        self.version += 1;
        let list: Vec<Assignment> = self
            .assigned
            .iter()
            .map(|(service, address)| Assignment { service: service.clone(), address: *address })
            .collect();
        let temporary = self.file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(parent) = self.file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&temporary, serde_json::to_vec(&list).unwrap_or_default())?;
            std::fs::rename(&temporary, &self.file)
        };
        write().map_err(LocalError::io(format!("cannot write {}", self.file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(component: &str) -> ServiceKey {
        ServiceKey {
            project: "shop".into(),
            environment: "prod".into(),
            application: "store".into(),
            component: component.into(),
        }
    }

    fn service(endpoints: &[&str], publish: Option<u16>) -> Service {
        Service {
            key: key("web"),
            address: "10.96.0.1".parse().unwrap(),
            ports: vec![ServicePort { name: "http".into(), protocol: Protocol::Tcp, port: 8080, publish }],
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn endpoints_are_picked_with_equal_probability() {
        let chains = Chains::of(Path::new("/var/lib/flotilla/runtime"));
        let rules = render(&chains, &[service(&["10.89.0.2", "10.89.0.3", "10.89.0.4"], None)], &BTreeSet::new());
        let dnat: Vec<&str> = rules.lines().filter(|l| l.contains("-j DNAT")).collect();
        assert_eq!(dnat.len(), 3, "{rules}");
        assert!(dnat[0].contains("--probability 0.33333333333") && dnat[0].ends_with("10.89.0.2:8080"), "{rules}");
        assert!(dnat[1].contains("--probability 0.50000000000") && dnat[1].ends_with("10.89.0.3:8080"), "{rules}");
        assert!(!dnat[2].contains("statistic") && dnat[2].ends_with("10.89.0.4:8080"), "{rules}");
        assert!(rules.contains("-d 10.96.0.1/32 -p tcp -m tcp --dport 8080"), "{rules}");
        assert!(!rules.contains("REJECT"), "{rules}");
    }

    #[test]
    fn a_service_without_ready_instances_refuses_connections() {
        let chains = Chains::of(Path::new("/r"));
        let rules = render(&chains, &[service(&[], Some(30080))], &BTreeSet::new());
        assert!(!rules.contains("-j DNAT"), "{rules}");
        let rejects: Vec<&str> = rules.lines().filter(|l| l.ends_with("-j REJECT")).collect();
        assert_eq!(rejects.len(), 2, "address and published port: {rules}");
        assert!(rejects[1].contains("--dst-type LOCAL") && rejects[1].contains("--dport 30080"), "{rules}");
    }

    #[test]
    fn published_ports_reach_the_same_chain_and_stale_chains_are_deleted() {
        let chains = Chains::of(Path::new("/r"));
        let port_chain = chains.port(&key("web"), "http");
        assert!(port_chain.len() <= 28, "{port_chain}");
        let stale = BTreeSet::from([port_chain.clone(), chains.port(&key("gone"), "http")]);
        let rules = render(&chains, &[service(&["10.89.0.2"], Some(30080))], &stale);
        let jumps = rules.lines().filter(|l| l.ends_with(&format!("-j {port_chain}"))).count();
        assert_eq!(jumps, 2, "{rules}");
        assert!(rules.contains(&format!("-X {}", chains.port(&key("gone"), "http"))), "{rules}");
        assert!(!rules.contains(&format!("-X {port_chain}")), "a wanted chain is kept: {rules}");
        let declared = rules.find(&format!(":{}", chains.port(&key("gone"), "http"))).unwrap();
        let deleted = rules.find(&format!("-X {}", chains.port(&key("gone"), "http"))).unwrap();
        assert!(declared < deleted, "flushed before it is deleted");
    }

    #[test]
    fn addresses_are_stable_and_freed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services.json");
        let range: Ipv4Net = "10.96.0.0/30".parse().unwrap();
        let mut allocator = AddressAllocator::open(range, file.clone());
        let web = allocator.ensure(&key("web")).unwrap();
        let api = allocator.ensure(&key("api")).unwrap();
        assert_eq!((web, api), ("10.96.0.1".parse().unwrap(), "10.96.0.2".parse().unwrap()));
        assert!(allocator.ensure(&key("third")).is_err(), "a /30 has two host addresses");
        let mut reopened = AddressAllocator::open(range, file);
        assert_eq!(reopened.ensure(&key("api")).unwrap(), api, "kept across restarts");
        reopened.retain(|k| k.component != "web").unwrap();
        assert_eq!(reopened.ensure(&key("third")).unwrap(), web, "a freed address is reused");
    }
}
