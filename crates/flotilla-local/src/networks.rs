//! The network of each environment: a bridge and a /24 subnet, allocated on first use and
//! kept in the directory `flotilla-net` reads (one file per pod namespace), so that it
//! survives restarts and every pod of the environment lands on it; released when the
//! environment's last application is deleted.

use std::path::PathBuf;

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
}

impl NetworkAllocator {
    pub fn new(dir: impl Into<PathBuf>, second_octet: u8) -> Self {
        Self { dir: dir.into(), second_octet, lock: std::sync::Mutex::new(()), cached: std::sync::Mutex::new(None) }
    }

    /// The pod namespace of an environment (its network is chosen by it).
    pub fn namespace(project: &str, environment: &str) -> String {
        format!("{project}--{environment}")
    }

    /// The network of `namespace`, allocating it if it has none.
    pub fn ensure(&self, namespace: &str) -> Result<EnvironmentNetwork, LocalError> {
        let _guard = self.lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let path = self.dir.join(format!("{namespace}.json"));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(network) = serde_json::from_slice::<EnvironmentNetwork>(&bytes)
        {
            return Ok(network);
        }
        let mut used = std::collections::BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if let Ok(bytes) = std::fs::read(entry.path())
                    && let Ok(network) = serde_json::from_slice::<EnvironmentNetwork>(&bytes)
                {
                    used.insert(network.subnet);
                }
            }
        }
        let subnet = (0..=255u16)
            .map(|n| format!("10.{}.{n}.0/24", self.second_octet))
            .find(|s| !used.contains(s))
            .ok_or_else(|| LocalError::Containerd("all 256 environment networks are allocated".into()))?;
        let hash = hex::encode(Sha256::digest(namespace.as_bytes()));
        let network = EnvironmentNetwork { bridge: format!("{BRIDGE_PREFIX}{}", &hash[..10]), subnet };
        network.install(&self.dir, namespace).map_err(LocalError::io(format!("cannot write {}", path.display())))?;
        *self.cached.lock().unwrap_or_else(|poison| poison.into_inner()) = None;
        Ok(network)
    }

    /// Forgets the network of `namespace` (its subnet may be allocated again) and returns it;
    /// `None` when it had none.
    pub fn release(&self, namespace: &str) -> Option<EnvironmentNetwork> {
        let _guard = self.lock.lock().unwrap_or_else(|poison| poison.into_inner());
        let path = self.dir.join(format!("{namespace}.json"));
        let network = serde_json::from_slice::<EnvironmentNetwork>(&std::fs::read(&path).ok()?).ok()?;
        std::fs::remove_file(&path).ok()?;
        *self.cached.lock().unwrap_or_else(|poison| poison.into_inner()) = None;
        Some(network)
    }

    /// Every allocated network, read from the directory once and again after an allocation.
    pub fn all(&self) -> Vec<EnvironmentNetwork> {
        let mut cached = self.cached.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(networks) = cached.as_ref() {
            return networks.clone();
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let networks: Vec<EnvironmentNetwork> = entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        *cached = Some(networks.clone());
        networks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_allocated_once_and_apart() {
        let dir = tempfile::tempdir().unwrap();
        let allocator = NetworkAllocator::new(dir.path(), 89);
        let prod = allocator.ensure("shop--prod").unwrap();
        let test = allocator.ensure("shop--test").unwrap();
        assert_ne!(prod.subnet, test.subnet);
        assert_ne!(prod.bridge, test.bridge);
        assert!(prod.bridge.len() <= 15 && prod.bridge.starts_with("flt"));
        assert_eq!(allocator.ensure("shop--prod").unwrap(), prod, "kept");
        let again = NetworkAllocator::new(dir.path(), 89);
        assert_eq!(again.ensure("shop--test").unwrap(), test, "kept across restarts");
        assert_eq!(again.release("shop--prod"), Some(prod.clone()));
        assert_eq!(again.release("shop--prod"), None, "released once");
        assert_eq!(again.all(), vec![test], "forgotten");
        assert_eq!(again.ensure("shop--stage").unwrap().subnet, prod.subnet, "its subnet is free again");
    }
}
