//! The network of each environment: a bridge and a /24 subnet, allocated on first use and
//! kept in the directory `flotilla-net` reads (one file per pod namespace), so that it
//! survives restarts and every pod of the environment lands on it; released when the
//! environment's last application is deleted. A subnet the host already routes (a LAN,
//! another runtime's bridge) is never allocated: a second route to it would send the pods'
//! traffic to whichever interface the kernel picks. Only a route covering the whole range
//! (a VPN's 10.0.0.0/8) is lived with, when no subnet is clear of it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use sha2::{Digest, Sha256};

use crate::LocalError;
use crate::cni_plugin::{BRIDGE_PREFIX, EnvironmentNetwork};

/// Allocates environment networks from `10.<second_octet>.N.0/24`.
#[derive(Debug)]
pub struct NetworkAllocator {
    dir: PathBuf,
    second_octet: u8,
    lock: std::sync::Mutex<()>,
    /// What [`Self::all`] read last; dropped when this allocator adds a network (it is the
    /// directory's only writer; the plugin only reads it).
    cached: std::sync::Mutex<Option<Vec<EnvironmentNetwork>>>,
    /// What the host routes now (read at each allocation).
    routes: fn() -> Vec<HostRoute>,
}

/// One IPv4 route of the host's main routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub interface: String,
    pub network: Ipv4Net,
}

/// The host's IPv4 routes but the default one, from `/proc/net/route` (none when unreadable).
pub fn host_routes() -> Vec<HostRoute> {
    std::fs::read_to_string("/proc/net/route").map(|text| parse_routes(&text)).unwrap_or_default()
}

/// Parses the text of `/proc/net/route`: a header line, then per route the interface,
/// destination, gateway, flags, refcount, use, metric and mask, addresses as the kernel's
/// native-endian hex of the network-order word. The default route (mask 0) is left out.
fn parse_routes(text: &str) -> Vec<HostRoute> {
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(|w| Ipv4Addr::from(w.to_ne_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (interface, destination, mask) = (fields.first()?, word(fields.get(1)?)?, word(fields.get(7)?)?);
            let prefix = u32::from(mask).count_ones() as u8;
            let network = Ipv4Net::new(destination, prefix).ok()?.trunc();
            (prefix > 0).then(|| HostRoute { interface: interface.to_string(), network })
        })
        .collect()
}

impl NetworkAllocator {
    pub fn new(dir: impl Into<PathBuf>, second_octet: u8) -> Self {
        Self {
            dir: dir.into(),
            second_octet,
            lock: std::sync::Mutex::new(()),
            cached: std::sync::Mutex::new(None),
            routes: host_routes,
        }
    }

    /// The pod namespace of an environment (its network is chosen by it).
    pub fn namespace(project: &str, environment: &str) -> String {
        format!("{project}--{environment}")
    }

    /// The network of `namespace`, allocating it if it has none.
    pub fn ensure(&self, namespace: &str) -> Result<EnvironmentNetwork, LocalError> {
        let _guard = self.lock.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(network) = self.get(namespace) {
            return Ok(network);
        }
        let used = self.allocated().into_iter().map(|(_, network)| network.subnet).collect();
        let subnet = self.free_subnet(&used)?.to_string();
        let hash = hex::encode(Sha256::digest(namespace.as_bytes()));
        let network = EnvironmentNetwork { bridge: format!("{BRIDGE_PREFIX}{}", &hash[..10]), subnet };
        network
            .install(&self.dir, namespace)
            .map_err(LocalError::io(format!("cannot write {}", self.path(namespace).display())))?;
        *self.cached.lock().unwrap_or_else(|poison| poison.into_inner()) = None;
        Ok(network)
    }

    /// The first /24 of `10.<second_octet>.0.0/16` not in `used` that no route of the host
    /// overlaps; failing that, the first that only routes covering the whole /16 overlap (the
    /// bridge's route, more specific, wins for its addresses: the host no longer reaches
    /// those behind the broad route, and a warning says so); an error naming a clash when
    /// every one is routed more specifically.
    fn free_subnet(&self, used: &std::collections::BTreeSet<String>) -> Result<Ipv4Net, LocalError> {
        let routes = (self.routes)();
        let free: Vec<Ipv4Net> = (0..=255u8)
            .map(|n| Ipv4Net::new(Ipv4Addr::new(10, self.second_octet, n, 0), 24).expect("a /24 is a valid prefix"))
            .filter(|subnet| !used.contains(&subnet.to_string()))
            .collect();
        let overlapping = |subnet: &Ipv4Net| -> Vec<&HostRoute> {
            routes.iter().filter(|r| r.network.contains(subnet) || subnet.contains(&r.network)).collect()
        };
        if let Some(subnet) = free.iter().find(|subnet| overlapping(subnet).is_empty()) {
            return Ok(*subnet);
        }
        // A route covering all of 10.<second_octet>.0.0/16 (a VPN's 10.0.0.0/8) cannot be
        // avoided in it; a more specific one is a network of its own to keep away from.
        let shadowed = free.iter().find_map(|subnet| {
            let routes = overlapping(subnet);
            routes.iter().all(|r| r.network.prefix_len() <= 16).then(|| (*subnet, routes[0].clone()))
        });
        if let Some((subnet, broader)) = shadowed {
            tracing::warn!(
                %subnet,
                route = %broader.network,
                interface = %broader.interface,
                "every free environment network lies in a route of this host: this one's addresses are now \
                 reached on its bridge, not through the route (set runtime.network_octet to a /16 the host \
                 does not route)"
            );
            return Ok(subnet);
        }
        let clash =
            free.first().and_then(|subnet| overlapping(subnet).into_iter().find(|r| r.network.prefix_len() > 16));
        Err(LocalError::Network(match clash {
            Some(route) => format!(
                "no free environment network in 10.{}.0.0/16: {} allocated, the others are routed by this host \
                 (such as {} on {}); set runtime.network_octet to a /16 the host does not route",
                self.second_octet,
                used.len(),
                route.network,
                route.interface
            ),
            None => format!("all 256 environment networks in 10.{}.0.0/16 are allocated", self.second_octet),
        }))
    }

    /// The network allocated to `namespace`, if any.
    pub fn get(&self, namespace: &str) -> Option<EnvironmentNetwork> {
        serde_json::from_slice(&std::fs::read(self.path(namespace)).ok()?).ok()
    }

    /// The file of `namespace`'s network (what `flotilla-net` reads).
    fn path(&self, namespace: &str) -> PathBuf {
        self.dir.join(format!("{namespace}.json"))
    }

    /// Forgets the network of `namespace` (its subnet may be allocated again) and returns it;
    /// `None` when it had none.
    pub fn release(&self, namespace: &str) -> Option<EnvironmentNetwork> {
        let _guard = self.lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let network = self.get(namespace)?;
        std::fs::remove_file(self.path(namespace)).ok()?;
        *self.cached.lock().unwrap_or_else(|poison| poison.into_inner()) = None;
        Some(network)
    }

    /// Every allocated network, read from the directory once and again after an allocation.
    pub fn all(&self) -> Vec<EnvironmentNetwork> {
        let mut cached = self.cached.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(networks) = cached.as_ref() {
            return networks.clone();
        }
        let networks: Vec<EnvironmentNetwork> = self.allocated().into_iter().map(|(_, network)| network).collect();
        *cached = Some(networks.clone());
        networks
    }

    /// Every allocated network with the pod namespace it is allocated to, read from the
    /// directory now (a file being written, `*.json.tmp`, is not one yet).
    pub fn allocated(&self) -> Vec<(String, EnvironmentNetwork)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|entry| {
                let namespace = entry.file_name().to_str()?.strip_suffix(".json")?.to_string();
                let network = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
                Some((namespace, network))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed_by(dir: &std::path::Path, octet: u8, routes: fn() -> Vec<HostRoute>) -> NetworkAllocator {
        NetworkAllocator { routes, ..NetworkAllocator::new(dir, octet) }
    }

    fn route(interface: &str, network: &str) -> HostRoute {
        HostRoute { interface: interface.into(), network: network.parse().unwrap() }
    }

    #[test]
    fn routes_are_read_as_the_kernel_prints_them() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    wg0\t0000590A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                    broken\tzz\n";
        assert_eq!(parse_routes(text), vec![route("eth0", "192.0.2.0/24"), route("wg0", "10.89.0.0/16")]);
        // This host's own table parses (whatever it holds, no route is the default one).
        assert!(host_routes().iter().all(|r| r.network.prefix_len() > 0));
    }

    #[test]
    fn a_subnet_the_host_routes_is_not_allocated_while_another_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let allocator = routed_by(dir.path(), 89, || {
            vec![route("eth1", "10.89.0.0/24"), route("tun0", "10.89.2.0/23"), route("wg0", "10.0.0.0/8")]
        });
        assert_eq!(allocator.ensure("shop--prod").unwrap().subnet, "10.89.1.0/24", "only the broad route covers it");
        assert_eq!(allocator.ensure("shop--test").unwrap().subnet, "10.89.4.0/24");

        // Every /24 inside 10.89.0.0/16 is routed as specifically: nothing is allocated.
        let dir = tempfile::tempdir().unwrap();
        let every = || {
            let mut routes = vec![route("wg0", "10.0.0.0/8")];
            routes.extend((0..=255).map(|n| route("eth9", &format!("10.89.{n}.0/24"))));
            routes
        };
        let error = routed_by(dir.path(), 89, every).ensure("shop--prod").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("10.89.0.0/24 on eth9") && message.contains("runtime.network_octet"), "{message}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing allocated");

        // The whole /16 routed elsewhere: no subnet is clear of it, so the first one only the
        // broader route covers is taken.
        let dir = tempfile::tempdir().unwrap();
        let allocator = routed_by(dir.path(), 89, || vec![route("wg0", "10.89.0.0/16"), route("eth1", "10.89.0.0/24")]);
        assert_eq!(allocator.ensure("shop--prod").unwrap().subnet, "10.89.1.0/24");
    }

    #[test]
    fn networks_are_allocated_once_and_apart() {
        let dir = tempfile::tempdir().unwrap();
        let allocator = routed_by(dir.path(), 89, Vec::new);
        let prod = allocator.ensure("shop--prod").unwrap();
        let test = allocator.ensure("shop--test").unwrap();
        assert_ne!(prod.subnet, test.subnet);
        assert_ne!(prod.bridge, test.bridge);
        assert!(prod.bridge.len() <= 15 && prod.bridge.starts_with("flt"));
        assert_eq!(allocator.ensure("shop--prod").unwrap(), prod, "kept");
        let again = routed_by(dir.path(), 89, Vec::new);
        assert_eq!(again.ensure("shop--test").unwrap(), test, "kept across restarts");
        assert_eq!(again.release("shop--prod"), Some(prod.clone()));
        assert_eq!(again.release("shop--prod"), None, "released once");
        assert_eq!(again.all(), vec![test.clone()], "forgotten");
        assert_eq!(again.allocated(), vec![("shop--test".to_string(), test)]);
        assert_eq!(again.ensure("shop--stage").unwrap().subnet, prod.subnet, "its subnet is free again");
    }
}
