//! ADD, CHECK and DEL of a configuration list, as libcni does them: each plugin in order
//! with the previous one's result as `prevResult` (DEL in reverse, each with the cached
//! result), the runtime's capability arguments as `runtimeConfig` for the plugins that
//! declare them, every call within a timeout. A failed ADD is undone with a DEL.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rscni_types::ipnet::IpNet;
use rscni_types::types::CNIResult;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cache::{self, CacheEntry};
use crate::config::{self, NetworkList};
use crate::exec::{error_line, invoke, Failure, Invocation};
use crate::{Error, Result};

/// Where peapod finds networks and plugins and keeps its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cni {
    /// The configuration directories, searched in order; the default network is written
    /// into the first.
    pub config_dirs: Vec<PathBuf>,
    /// The plugin directories (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// The result cache (`results/` below it).
    pub cache_dir: PathBuf,
    /// How long one plugin call may take.
    pub timeout: Duration,
    /// How the default network is attached (every other network runs its plugins).
    pub backend: Backend,
}

/// How peapod's own default network is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// In-process ([`crate::fast`]): netlink and one nftables transaction, while the default
    /// network's list is the one peapod wrote and `nft` is installed; else its plugins.
    #[default]
    Fast,
    /// Its CNI plugins, as every other network.
    Cni,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "fast" => Ok(Backend::Fast),
            "cni" => Ok(Backend::Cni),
            _ => Err(format!("{s:?} is not a network backend (fast or cni)")),
        }
    }
}

impl Default for Cni {
    /// peapod's own directories as root (`/etc/peapod/net.d`, `/var/lib/peapod/cni`), the
    /// plugins where Debian and the upstream releases put them.
    fn default() -> Cni {
        Cni {
            config_dirs: vec![PathBuf::from(config::DEFAULT_CONFIG_DIR)],
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            cache_dir: PathBuf::from("/var/lib/peapod/cni"),
            timeout: Duration::from_secs(30),
            backend: Backend::default(),
        }
    }
}

/// A published port: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The host's address it listens on; all when `None`.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// The host's port.
    pub host_port: u16,
    /// The pod's port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl std::str::FromStr for PortMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<PortMapping, String> {
        let (ports, protocol) = match s.rsplit_once('/') {
            Some((ports, p @ ("tcp" | "udp" | "sctp"))) => (ports, p.to_owned()),
            Some((_, p)) => return Err(format!("unknown protocol {p:?} (tcp, udp or sctp)")),
            None => (s, "tcp".to_owned()),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} is not a port (1 to 65535)"))
        };
        // An IPv6 host address is written in brackets: [::1]:8080:80.
        let (host_ip, rest) = match s.starts_with('[') {
            true => {
                let (ip, rest) = ports
                    .trim_start_matches('[')
                    .split_once("]:")
                    .ok_or("expected [HOST_IP]:HOST_PORT:CONTAINER_PORT")?;
                (Some(ip.to_owned()), rest.to_owned())
            }
            false => match ports.split(':').collect::<Vec<_>>().as_slice() {
                [ip, host, ctr] => (Some((*ip).to_owned()), format!("{host}:{ctr}")),
                _ => (None, ports.to_owned()),
            },
        };
        let (host, container) = rest
            .split_once(':')
            .ok_or("expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]")?;
        let host_ip = match host_ip.filter(|ip| !ip.is_empty()) {
            Some(ip) => Some(
                ip.parse()
                    .map_err(|_| format!("{ip:?} is not an IP address"))?,
            ),
            None => None,
        };
        Ok(PortMapping {
            host_ip,
            host_port: port(host)?,
            container_port: port(container)?,
            protocol,
        })
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(
            f,
            "{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// One network namespace to attach: `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and what
/// the runtime asks of the plugins.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: unique on the host.
    pub container_id: String,
    /// The network namespace (a pinned `/proc/PID/ns/net`).
    pub netns: PathBuf,
    /// `CNI_IFNAME` (`eth0`).
    pub ifname: String,
    /// Published ports (the `portMappings` capability).
    pub ports: Vec<PortMapping>,
    /// An address to ask IPAM for (`IP=` in `CNI_ARGS`, which host-local reads).
    pub ip: Option<IpAddr>,
    /// Kept in the cache entry: who made it.
    pub owner: Value,
}

/// An attachment made.
#[derive(Debug, Clone)]
pub struct Added {
    /// Its cache entry, which [`Cni::del`] takes.
    pub cache_file: PathBuf,
    /// The last plugin's result.
    pub result: CNIResult,
}

impl Added {
    /// The addresses given to the namespace's interface (with their prefix).
    pub fn addresses(&self) -> Vec<IpNet> {
        addresses(&self.result)
    }
}

/// The addresses of a result that are on an interface inside the namespace (or on no
/// interface in particular).
pub fn addresses(result: &CNIResult) -> Vec<IpNet> {
    result
        .ips
        .iter()
        .filter(|ip| match ip.interface {
            Some(i) => result
                .interfaces
                .get(i as usize)
                .is_some_and(|iface| iface.sandbox.as_deref().is_some_and(|s| !s.is_empty())),
            None => true,
        })
        .map(|ip| ip.address)
        .collect()
}

/// Reads a plugin's result, of cniVersion 1.0.0 or 0.4.0 (or 0.3.x, which is 0.4.0's
/// layout): `ips[].version`, which only the older layout has, is ignored.
pub fn parse_result(value: &Value) -> Result<CNIResult> {
    serde_json::from_value(value.clone())
        .map_err(|e| Error::Invalid(format!("a plugin's result does not parse: {e}")))
}

impl Cni {
    /// The network `name` (the default `peapod` is written first when missing).
    pub fn network(&self, name: &str) -> Result<NetworkList> {
        config::find_or_default(&self.config_dirs, name, &self.cache_dir)
    }

    /// The binary of plugin `kind`.
    fn plugin(&self, network: &str, kind: &str) -> Result<PathBuf> {
        self.plugin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::PluginNotFound {
                network: network.to_owned(),
                plugin: kind.to_owned(),
                dirs: config::join(&self.plugin_dirs),
            })
    }

    /// ADD: attaches the namespace to the network. Every plugin binary is found first, so a
    /// missing one changes nothing; a plugin that fails is followed by a DEL of the list, so
    /// nothing half-made stays.
    pub fn add(&self, list: &NetworkList, att: &Attachment) -> Result<Added> {
        let file = cache::path(&self.cache_dir, &list.name, &att.container_id, &att.ifname);
        if let Some(net) = self.fast_path(list) {
            return crate::fast::add(&file, list, &net, att);
        }
        for plugin in list.plugins() {
            self.plugin(&list.name, plugin["type"].as_str().unwrap_or_default())?;
        }
        let mut capability_args = serde_json::Map::new();
        if !att.ports.is_empty() {
            capability_args.insert("portMappings".to_owned(), json!(att.ports));
        }
        let cni_args = match att.ip {
            Some(ip) => format!("IgnoreUnknown=1;IP={ip}"),
            None => "IgnoreUnknown=1".to_owned(),
        };
        let mut entry = CacheEntry {
            kind: "cniCacheV1".to_owned(),
            container_id: att.container_id.clone(),
            if_name: att.ifname.clone(),
            network_name: list.name.clone(),
            netns: att.netns.clone(),
            cni_args,
            capability_args,
            config: list.raw.clone(),
            result: None,
            owner: att.owner.clone(),
        };
        cache::save(&file, &entry)?;
        let mut prev: Option<Value> = None;
        for plugin in list.plugins() {
            // Each result is cached as the chain goes, so that an ADD cut short (peapod
            // killed in a later plugin) is undone by a DEL that has a `prevResult`: the
            // firewall and portmap plugins remove their rules only when given one.
            let added = self
                .call(&entry, plugin, "ADD", prev.as_ref())
                .and_then(|result| {
                    if let Some(result) = &result {
                        let mut cached = entry.clone();
                        cached.result = Some(result.clone());
                        cache::save(&file, &cached)?;
                    }
                    Ok(result)
                });
            match added {
                Ok(Some(result)) => prev = Some(result),
                Ok(None) => {}
                Err(e) => {
                    entry.result = prev;
                    if let Err(undo) = self.del_entry(&entry) {
                        tracing::warn!("undoing the failed ADD: {undo}");
                        let _ = cache::save(&file, &entry);
                    } else {
                        let _ = std::fs::remove_file(&file);
                    }
                    return Err(e);
                }
            }
        }
        let result = prev.clone().unwrap_or_else(|| json!({}));
        entry.result = Some(result.clone());
        cache::save(&file, &entry)?;
        Ok(Added {
            cache_file: file,
            result: parse_result(&result)?,
        })
    }

    /// The default network's settings when it is attached through the fast path.
    fn fast_path(&self, list: &NetworkList) -> Option<crate::fast::DefaultNet> {
        if self.backend != Backend::Fast || crate::fast::nft::binary().is_none() {
            return None;
        }
        crate::fast::recognise(list)
    }

    /// CHECK: asks each plugin whether the attachment is still as ADD made it (not for
    /// lists with `disableCheck`, nor before cniVersion 0.4.0, which has no CHECK).
    pub fn check(&self, cache_file: &Path) -> Result<()> {
        let Some(entry) = cache::load(cache_file)? else {
            return Err(Error::Invalid(format!(
                "no attachment cached in {}",
                cache_file.display()
            )));
        };
        if [crate::fast::KIND, crate::fast::KIND_V1].contains(&entry.kind.as_str()) {
            return Ok(());
        }
        let list = NetworkList::parse(Path::new("<cache>"), entry.config.to_string().as_bytes())?;
        let old = list
            .version
            .split('.')
            .next()
            .is_some_and(|major| major == "0")
            && !list.version.starts_with("0.4");
        if list.disable_check || old {
            return Ok(());
        }
        for plugin in list.plugins() {
            self.call(&entry, plugin, "CHECK", entry.result.as_ref())?;
        }
        Ok(())
    }

    /// DEL: undoes the attachment cached in `cache_file` with the configuration and result
    /// it was made with, then forgets it. No entry: nothing to do. A failed DEL keeps the
    /// entry, so that it can be tried again.
    pub fn del(&self, cache_file: &Path) -> Result<()> {
        let Some(entry) = cache::load(cache_file)? else {
            return Ok(());
        };
        match entry.kind.as_str() {
            crate::fast::KIND | crate::fast::KIND_V1 => crate::fast::detach(&entry)?,
            _ => self.del_entry(&entry)?,
        }
        match std::fs::remove_file(cache_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::error::io("cannot remove", cache_file)(e)),
        }
    }

    /// Every cached attachment, with its file: a runtime finds its leftovers among them.
    pub fn cached(&self) -> Vec<(PathBuf, CacheEntry)> {
        cache::entries(&self.cache_dir)
    }

    /// Runs DEL of every plugin in reverse order, each with the cached result; every plugin
    /// is tried, and the first failure reported.
    fn del_entry(&self, entry: &CacheEntry) -> Result<()> {
        let list = NetworkList::parse(Path::new("<cache>"), entry.config.to_string().as_bytes())?;
        let mut first = None;
        for plugin in list.plugins().into_iter().rev() {
            if let Err(e) = self.call(entry, plugin, "DEL", entry.result.as_ref()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// One plugin call; its result for an ADD that printed one.
    fn call(
        &self,
        entry: &CacheEntry,
        plugin: &Value,
        command: &'static str,
        prev: Option<&Value>,
    ) -> Result<Option<Value>> {
        let network = entry.network_name.clone();
        let kind = plugin["type"].as_str().unwrap_or_default().to_owned();
        let binary = self.plugin(&network, &kind)?;
        let stdin = plugin_config(entry, plugin, prev);
        let stdin = serde_json::to_vec(&stdin).map_err(|e| Error::Invalid(e.to_string()))?;
        // A DEL after the namespace went (a reboot, a pin removed) passes none, as the
        // specification allows: the plugins then release what is outside it.
        let netns = Some(entry.netns.as_path()).filter(|p| command != "DEL" || p.exists());
        let started = std::time::Instant::now();
        let output = invoke(&Invocation {
            binary: &binary,
            command,
            container_id: &entry.container_id,
            netns,
            ifname: &entry.if_name,
            args: &entry.cni_args,
            path: &self.plugin_dirs,
            stdin: &stdin,
            timeout: self.timeout,
        });
        tracing::debug!("{network}: {kind} {command} took {:?}", started.elapsed());
        let output = match output {
            Ok(output) => output,
            Err(Failure::Timeout) => {
                return Err(Error::Timeout {
                    network,
                    plugin: kind,
                    command,
                    seconds: self.timeout.as_secs(),
                })
            }
            Err(Failure::Io(e)) => {
                return Err(Error::Plugin {
                    network,
                    plugin: kind,
                    command,
                    message: format!("cannot run {}: {e}", binary.display()),
                })
            }
        };
        if !output.success {
            return Err(Error::Plugin {
                network,
                plugin: kind,
                command,
                message: error_line(&output),
            });
        }
        if command != "ADD" || output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(&output.stdout).map_err(|e| Error::Plugin {
            network: network.clone(),
            plugin: kind.clone(),
            command,
            message: format!("its result is not JSON: {e}"),
        })?;
        parse_result(&value).map_err(|e| Error::Plugin {
            network,
            plugin: kind,
            command,
            message: e.to_string(),
        })?;
        Ok(Some(value))
    }
}

/// The configuration a plugin reads on stdin: its own object of the list, with the list's
/// `name` and `cniVersion`, the previous result, and `runtimeConfig` holding the capability
/// arguments it declares (and only those, as the specification says).
fn plugin_config(entry: &CacheEntry, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = json!(entry.network_name);
    conf["cniVersion"] = entry.config["cniVersion"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    let mut runtime = serde_json::Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (cap, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(arg) = entry.capability_args.get(cap) {
                    runtime.insert(cap.clone(), arg.clone());
                }
            }
        }
    }
    if !runtime.is_empty() {
        conf["runtimeConfig"] = Value::Object(runtime);
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p: PortMapping = "18080:80".parse().expect("parses");
        assert_eq!(
            (
                p.host_ip,
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            (None, 18080, 80, "tcp")
        );
        let p: PortMapping = "127.0.0.1:53:5353/udp".parse().expect("parses");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(p.to_string(), "127.0.0.1:53->5353/udp");
        assert!("80".parse::<PortMapping>().is_err());
        assert!("0:80".parse::<PortMapping>().is_err());
        assert!("1:2/icmp".parse::<PortMapping>().is_err());
        assert!("x.y:1:2".parse::<PortMapping>().is_err());
    }

    #[test]
    fn results_of_1_0_0_and_0_4_0_parse() {
        let v100 = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "pp0", "mac": "aa:bb:cc:dd:ee:ff"}, {"name": "eth0", "mac": "aa:bb:cc:dd:ee:00", "sandbox": "/run/x"}],
            "ips": [{"interface": 1, "address": "10.9.0.5/24", "gateway": "10.9.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}], "dns": {}});
        let v040 = json!({"cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/x"}],
            "ips": [{"version": "4", "interface": 0, "address": "10.9.0.6/24", "gateway": "10.9.0.1"}],
            "dns": {}});
        let r = parse_result(&v100).expect("1.0.0");
        assert_eq!(
            addresses(&r),
            ["10.9.0.5/24".parse::<IpNet>().expect("net")]
        );
        let r = parse_result(&v040).expect("0.4.0");
        assert_eq!(
            addresses(&r),
            ["10.9.0.6/24".parse::<IpNet>().expect("net")]
        );
    }

    #[test]
    fn a_plugin_gets_only_the_capabilities_it_declares() {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]),
        );
        let entry = CacheEntry {
            kind: "cniCacheV1".into(),
            container_id: "c".into(),
            if_name: "eth0".into(),
            network_name: "n".into(),
            netns: "/x".into(),
            cni_args: String::new(),
            capability_args: caps,
            config: json!({"cniVersion": "0.4.0"}),
            result: None,
            owner: Value::Null,
        };
        let prev = json!({"cniVersion": "0.4.0"});
        let portmap = plugin_config(
            &entry,
            &json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            Some(&prev),
        );
        assert_eq!(portmap["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(portmap["name"], "n");
        assert_eq!(portmap["cniVersion"], "0.4.0");
        let bridge = plugin_config(&entry, &json!({"type": "bridge"}), None);
        assert!(bridge.get("runtimeConfig").is_none() && bridge.get("prevResult").is_none());
    }
}
