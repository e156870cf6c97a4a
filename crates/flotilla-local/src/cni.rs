//! CNI configuration of the embedded runtime's pod network: a Linux bridge with host-local
//! addresses, masquerading to the outside, and port mappings on the host (`portmap`).

use std::path::Path;

use serde_json::json;

use crate::LocalError;

/// A bridge network.
#[derive(Debug, Clone)]
pub struct BridgeNetwork {
    /// CNI network name.
    pub name: String,
    /// Linux bridge device (at most 15 characters).
    pub bridge: String,
    /// IPv4 subnet in CIDR notation (`10.88.0.0/24`).
    pub subnet: String,
}

impl BridgeNetwork {
    /// The conflist. No `loopback` plugin: containerd's CRI plugin sets up `lo` itself.
    pub fn conflist(&self) -> serde_json::Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }

    /// Writes the conflist where containerd's CRI plugin reads it.
    pub fn install(&self, conf_dir: &Path) -> Result<(), LocalError> {
        std::fs::create_dir_all(conf_dir).map_err(LocalError::io(format!("cannot create {}", conf_dir.display())))?;
        let path = conf_dir.join(format!("10-{}.conflist", self.name));
        let text = serde_json::to_string_pretty(&self.conflist()).unwrap_or_default();
        std::fs::write(&path, text).map_err(LocalError::io(format!("cannot write {}", path.display())))
    }
}
