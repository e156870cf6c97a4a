//! `flotilla-net`: the CNI plugin containerd's CRI plugin calls for every pod. It gives each
//! environment a network of its own: it picks the network by the pod's namespace (one per
//! environment), delegates to the standard `bridge` plugin with that network's bridge and
//! subnet, and keeps environments apart with firewall rules (traffic between two Flotilla
//! bridges is dropped; within one it is accepted).
//!
//! containerd's CRI plugin of containerd 1.6 uses a single network configuration for all
//! pods; this plugin is how one configuration serves many isolated networks (as Multus does
//! for Kubernetes). It speaks the CNI protocol: the command in `CNI_COMMAND`, the pod in
//! `CNI_ARGS`, the configuration on stdin, the result or an error as JSON on stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::iptables;

/// The file name the plugin is installed under, in the CNI plugin directory.
pub const PLUGIN_NAME: &str = "flotilla-net";

/// Bridges of environment networks start with this, so that one rule covers them all.
pub const BRIDGE_PREFIX: &str = "flt";

const ISOLATION_CHAIN: &str = "FLOTILLA-ISOLATION";

/// The host-wide lock that set-ups and removals of networks take turns by (see
/// [`lock_rules`]).
const RULES_LOCK: &str = "/run/flotilla-net.lock";

/// The plugin's entry in the conflist.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    /// One `<namespace>.json` ([`EnvironmentNetwork`]) per environment.
    pub networks_dir: PathBuf,
    /// Where the standard plugins are (`bridge`, `host-local`).
    pub delegate_dir: PathBuf,
    /// Where host-local keeps its address leases.
    pub ipam_dir: PathBuf,
}

/// The network of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentNetwork {
    /// Linux bridge (starts with [`BRIDGE_PREFIX`], at most 15 characters).
    pub bridge: String,
    /// IPv4 subnet (`10.89.3.0/24`).
    pub subnet: String,
}

impl EnvironmentNetwork {
    /// The bridge's own address (the instances' gateway and name server): the subnet's first.
    pub fn gateway(&self) -> Option<std::net::Ipv4Addr> {
        self.subnet.parse::<ipnet::Ipv4Net>().ok().and_then(|net| net.hosts().next())
    }

    /// Writes the network of pod namespace `namespace` where the plugin reads it.
    pub fn install(&self, networks_dir: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(networks_dir)?;
        let path = networks_dir.join(format!("{namespace}.json"));
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(temporary, path)
    }
}

/// The conflist containerd reads: this plugin alone (published ports are the services'
/// business: see [`crate::services`]).
pub fn conflist(config: &PluginConfig) -> Value {
    let mut plugin = serde_json::to_value(config).unwrap_or(Value::Null);
    plugin["type"] = json!(PLUGIN_NAME);
    json!({"cniVersion": "1.0.0", "name": "flotilla", "plugins": [plugin]})
}

/// Prepares the plugin directory containerd is pointed at: `plugin` (the executable acting
/// as [`PLUGIN_NAME`]) and links to every standard plugin of `system_dir`.
pub fn prepare_bin_dir(bin_dir: &Path, plugin: &Path, system_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(bin_dir)?;
    let link = |target: &Path, name: &std::ffi::OsStr| -> std::io::Result<()> {
        let path = bin_dir.join(name);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, path)
    };
    for entry in std::fs::read_dir(system_dir)? {
        let entry = entry?;
        link(&entry.path(), &entry.file_name())?;
    }
    link(plugin, std::ffi::OsStr::new(PLUGIN_NAME))
}

/// A CNI error result.
#[derive(Debug)]
struct PluginError {
    code: u32,
    message: String,
}

fn error(code: u32, message: impl Into<String>) -> PluginError {
    PluginError { code, message: message.into() }
}

/// The value of `key` in `CNI_ARGS` (`K8S_POD_NAMESPACE=x;K8S_POD_NAME=y`).
fn cni_arg(args: &str, key: &str) -> Option<String> {
    args.split(';').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
}

/// Adds `network`'s isolation and masquerading rules unless they are there (what a pod's
/// set-up does once its bridge is up).
pub fn set_up_rules(network: &EnvironmentNetwork) -> Result<(), String> {
    let _turn = lock_rules().map_err(|e| format!("cannot lock {RULES_LOCK}: {e}"))?;
    isolate(&network.bridge)?;
    masquerade(network)
}

/// Waits for the host-wide lock over the rules of environment networks, held until the file
/// is dropped. Every set-up and removal checks what is there before changing it; pods start
/// in plugin processes of their own and networks are removed by the control plane, so
/// without turns two pods of one environment add a rule twice, and a removal can delete the
/// isolation chain (and the jump to it) while another network's set-up is filling it.
fn lock_rules() -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(RULES_LOCK)?;
    file.lock()?;
    Ok(file)
}

/// Traffic between two environment bridges is dropped; within one bridge it is accepted.
fn isolate(bridge: &str) -> Result<(), String> {
    // The last rule added: once it is there, the network is set up (one call per pod, not
    // seven: each iptables run reads the whole table).
    if iptables::run(&["-C", ISOLATION_CHAIN, "-i", bridge, "-o", bridge, "-j", "ACCEPT"]).unwrap_or(false) {
        return Ok(());
    }
    let _ = iptables::run(&["-N", ISOLATION_CHAIN]);
    iptables::ensure_rule("filter", "FORWARD", &["-j", ISOLATION_CHAIN], true)?;
    let all = format!("{BRIDGE_PREFIX}+");
    iptables::ensure_rule("filter", ISOLATION_CHAIN, &["-i", &all, "-o", &all, "-j", "DROP"], false)?;
    iptables::ensure_rule("filter", ISOLATION_CHAIN, &["-i", bridge, "-o", bridge, "-j", "ACCEPT"], true)
}

/// One masquerading rule per network for traffic leaving it (as Docker has per bridge),
/// rather than the bridge plugin's chain per pod: the nat table stays small with thousands
/// of instances, and a pod's start and stop run no iptables at all once it is there.
fn masquerade(network: &EnvironmentNetwork) -> Result<(), String> {
    let rule = ["-s", network.subnet.as_str(), "!", "-o", network.bridge.as_str(), "-j", "MASQUERADE"];
    iptables::ensure_rule("nat", "POSTROUTING", &rule, false)
}

/// Removes a network no pod uses any more: its bridge, and its isolation and masquerading
/// rules. Failures are logged: what is left is harmless and removed with a later network
/// of the same environment.
pub fn remove_network(network: &EnvironmentNetwork) {
    match Command::new("ip").args(["link", "delete", network.bridge.as_str()]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) if String::from_utf8_lossy(&output.stderr).contains("Cannot find device") => {}
        Ok(output) => tracing::warn!(
            bridge = %network.bridge,
            error = %String::from_utf8_lossy(&output.stderr).trim(),
            "cannot delete the bridge"
        ),
        Err(error) => tracing::warn!(bridge = %network.bridge, %error, "cannot run ip"),
    }
    remove_isolation(std::slice::from_ref(&network.bridge));
}

/// Removes the isolation and masquerading rules of `bridges` (networks that are gone), and
/// the isolation chain once no bridge has a rule in it.
pub fn remove_isolation(bridges: &[String]) {
    // Removed even without turns: rules left behind would outlive their network.
    let _turn = lock_rules().inspect_err(|error| tracing::warn!(%error, "cannot lock {RULES_LOCK}"));
    let nat = Command::new("iptables").args(["-w", "5", "-t", "nat", "-S", "POSTROUTING"]).output();
    let nat = nat.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for bridge in bridges {
        for line in nat.lines().filter(|l| l.ends_with(&format!("! -o {bridge} -j MASQUERADE"))) {
            let rule: Vec<&str> = line.split_whitespace().skip(2).collect();
            iptables::delete_rule("nat", "POSTROUTING", &rule);
        }
    }
    for bridge in bridges {
        iptables::delete_rule("filter", ISOLATION_CHAIN, &["-i", bridge, "-o", bridge, "-j", "ACCEPT"]);
    }
    let listed = Command::new("iptables").args(["-w", "5", "-S", ISOLATION_CHAIN]).output();
    let in_use = listed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("-j ACCEPT"));
    if !in_use {
        iptables::delete_rule("filter", "FORWARD", &["-j", ISOLATION_CHAIN]);
        let _ = iptables::run(&["-F", ISOLATION_CHAIN]);
        let _ = iptables::run(&["-X", ISOLATION_CHAIN]);
    }
}

fn run_command(command: &str, stdin: &[u8]) -> Result<Vec<u8>, PluginError> {
    if command == "VERSION" {
        return Ok(serde_json::to_vec(&json!({
            "cniVersion": "1.0.0",
            "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
        }))
        .unwrap_or_default());
    }
    let conf: Value = serde_json::from_slice(stdin).map_err(|e| error(6, format!("invalid configuration: {e}")))?;
    let plugin: PluginConfig = serde_json::from_value(conf.clone())
        .map_err(|e| error(7, format!("invalid {PLUGIN_NAME} configuration: {e}")))?;
    let args = std::env::var("CNI_ARGS").unwrap_or_default();
    let Some(namespace) = cni_arg(&args, "K8S_POD_NAMESPACE") else {
        return Err(error(7, "CNI_ARGS has no K8S_POD_NAMESPACE: the pod's environment is unknown"));
    };
    let path = plugin.networks_dir.join(format!("{namespace}.json"));
    let network: EnvironmentNetwork = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(6, format!("{}: {e}", path.display())))?,
        // Nothing to undo for a network that is gone.
        Err(_) if command == "DEL" => return Ok(Vec::new()),
        Err(e) => return Err(error(11, format!("no network for environment {namespace:?} ({}: {e})", path.display()))),
    };
    if !network.bridge.starts_with(BRIDGE_PREFIX) || network.bridge.len() > 15 {
        return Err(error(
            7,
            format!("bridge {:?} must start with {BRIDGE_PREFIX:?} and fit in 15 characters", network.bridge),
        ));
    }
    let mut delegate = json!({
        "cniVersion": conf.get("cniVersion").cloned().unwrap_or(json!("1.0.0")),
        "name": format!("flotilla-{namespace}"),
        "type": "bridge",
        "bridge": network.bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": network.subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": plugin.ipam_dir,
        },
    });
    if let Some(previous) = conf.get("prevResult") {
        delegate["prevResult"] = previous.clone();
    }
    let bridge_plugin = plugin.delegate_dir.join("bridge");
    let mut child = Command::new(&bridge_plugin)
        .env("CNI_PATH", &plugin.delegate_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| error(999, format!("cannot run {}: {e}", bridge_plugin.display())))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(&serde_json::to_vec(&delegate).unwrap_or_default()).map_err(|e| error(999, e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| error(999, e.to_string()))?;
    if !output.status.success() {
        // The delegate's error result is already CNI JSON: pass it on.
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or(text);
        return Err(error(999, format!("bridge plugin: {message}")));
    }
    if command == "ADD" {
        set_up_rules(&network).map_err(|message| error(999, message))?;
    }
    Ok(output.stdout)
}

/// Runs the plugin: reads the environment and stdin, writes the result to stdout; the
/// process's exit code.
pub fn main() -> i32 {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = Vec::new();
    if command != "VERSION" && std::io::stdin().read_to_end(&mut stdin).is_err() {
        return 1;
    }
    let mut stdout = std::io::stdout();
    match run_command(&command, &stdin) {
        Ok(result) => {
            let _ = stdout.write_all(&result);
            0
        }
        Err(PluginError { code, message }) => {
            let _ = serde_json::to_writer(&mut stdout, &json!({"cniVersion": "1.0.0", "code": code, "msg": message}));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_is_read_from_the_cni_args() {
        let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop--test;K8S_POD_NAME=web-1";
        assert_eq!(cni_arg(args, "K8S_POD_NAMESPACE").as_deref(), Some("shop--test"));
        assert_eq!(cni_arg(args, "K8S_POD_UID"), None);
    }

    #[test]
    fn the_conflist_names_the_plugin_and_its_directories() {
        let config =
            PluginConfig { networks_dir: "/n".into(), delegate_dir: "/usr/lib/cni".into(), ipam_dir: "/i".into() };
        let list = conflist(&config);
        assert_eq!(list["plugins"][0]["type"], PLUGIN_NAME);
        assert_eq!(list["plugins"][0]["networksDir"], "/n");
        assert_eq!(list["plugins"].as_array().map(Vec::len), Some(1));
    }
}
