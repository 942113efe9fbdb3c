//! A pod's network: none (only `lo`), the host's, or a CNI network its pinned network
//! namespace is attached to (ADD after the infra process pinned it, DEL before the pin goes),
//! and the `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` its containers get, kept in
//! the pod's directory (`etc/`) and bind-mounted into each container, as the kubelet does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use oci_spec::runtime::{LinuxNamespaceType, MountBuilder, Spec};
use peapod_net::etc::DnsSettings;
use peapod_net::{Attachment, Cni, PortMapping};
use peapod_runtime::{Error as RuntimeError, Runtime};
use serde::{Deserialize, Serialize};

use peapod_net::usermode::{self, Program};
use peapod_state::ProcessIdentity;

use crate::{PodEntry, PodRecord};

/// The interface of a pod on its network.
pub const IFNAME: &str = "eth0";

/// The pod's [`NetworkRecord`] as it was before ADD, beside `pod.json`.
pub(crate) const NETWORK_FILE: &str = "network.json";

/// Which network a pod is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PodNetwork {
    /// A network namespace of its own with only `lo`.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace of its own attached to this CNI network.
    Cni(String),
    /// A user-mode network of pasta's (rootless).
    Pasta,
    /// A user-mode network of slirp4netns's (rootless).
    Slirp4netns,
}

impl PodNetwork {
    /// The user-mode program of a pasta or slirp4netns network.
    pub fn user_mode(&self) -> Option<Program> {
        match self {
            PodNetwork::Pasta => Some(Program::Pasta),
            PodNetwork::Slirp4netns => Some(Program::Slirp4netns),
            _ => None,
        }
    }

    /// A rootless pod's network when none is named: pasta where it is installed, else
    /// slirp4netns, else only `lo` (as podman picks).
    pub fn rootless_default() -> PodNetwork {
        match Program::default_available() {
            Some(Program::Pasta) => PodNetwork::Pasta,
            Some(Program::Slirp4netns) => PodNetwork::Slirp4netns,
            None => PodNetwork::None,
        }
    }
}

impl std::str::FromStr for PodNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<PodNetwork, String> {
        match s {
            "none" => Ok(PodNetwork::None),
            "host" => Ok(PodNetwork::Host),
            "pasta" => Ok(PodNetwork::Pasta),
            "slirp4netns" => Ok(PodNetwork::Slirp4netns),
            name if !name.is_empty()
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) =>
            {
                Ok(PodNetwork::Cni(name.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is not a network name (none, host, pasta, slirp4netns, or a CNI network)"
            )),
        }
    }
}

impl std::fmt::Display for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodNetwork::None => f.write_str("none"),
            PodNetwork::Host => f.write_str("host"),
            PodNetwork::Cni(name) => f.write_str(name),
            PodNetwork::Pasta => f.write_str("pasta"),
            PodNetwork::Slirp4netns => f.write_str("slirp4netns"),
        }
    }
}

/// A pod's network as `pod create` and `pod play` take it.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// The network.
    pub network: PodNetwork,
    /// Published ports (`-p`), through the network's `portmap` plugin.
    pub ports: Vec<PortMapping>,
    /// An address to ask the network's IPAM for.
    pub ip: Option<IpAddr>,
    /// `--dns`, `--dns-search` and resolver options.
    pub dns: DnsSettings,
    /// `--add-host NAME:IP` and `hostAliases`: extra lines of `/etc/hosts`.
    pub add_hosts: Vec<(String, IpAddr)>,
    /// Where the networks, plugins and the attachment cache are.
    pub cni: Cni,
    /// The host name `/etc/hosts` and `/etc/hostname` give, when not the pod's (a lone
    /// container's own).
    pub hostname: Option<String>,
}

/// What `pod.json` records of the pod's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The network.
    pub network: PodNetwork,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// The address asked for.
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// The addresses the network gave (CIDR), while attached.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The resolver settings.
    #[serde(default)]
    pub dns: DnsSettings,
    /// Extra `/etc/hosts` entries.
    #[serde(default)]
    pub add_hosts: Vec<(String, IpAddr)>,
    /// The attachment's cache entry (recorded before ADD runs, so that `pod rm` undoes
    /// even an ADD cut short).
    #[serde(default)]
    pub cache_file: Option<PathBuf>,
    /// The plugin directories DEL runs from.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// The plugins' timeout, in seconds.
    #[serde(default)]
    pub timeout_seconds: u64,
    /// The host name of the `/etc` files, when not the pod's.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The pasta or slirp4netns process of a user-mode network, killed with the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<ProcessIdentity>,
}

impl NetworkRecord {
    /// The record of a pod about to be made with `options`.
    pub(crate) fn new(options: &NetworkOptions) -> NetworkRecord {
        NetworkRecord {
            network: options.network.clone(),
            ports: options.ports.clone(),
            ip: options.ip,
            addresses: Vec::new(),
            dns: options.dns.clone(),
            add_hosts: options.add_hosts.clone(),
            cache_file: None,
            plugin_dirs: options.cni.plugin_dirs.clone(),
            timeout_seconds: options.cni.timeout.as_secs(),
            hostname: options.hostname.clone(),
            helper: None,
        }
    }

    /// The first address, without its prefix.
    pub fn ip(&self) -> Option<String> {
        self.addresses
            .first()
            .map(|a| a.split('/').next().unwrap_or(a).to_owned())
    }
}

/// Checks a pod's network options against its shared namespaces, before anything is made.
pub(crate) fn check(
    options: &NetworkOptions,
    shares_net: bool,
    rootless: bool,
) -> Result<(), RuntimeError> {
    let usage = |m: String| Err(RuntimeError::usage(anyhow!(m)));
    let user_mode = options.network.user_mode().is_some();
    match &options.network {
        PodNetwork::Cni(name) if rootless => usage(format!(
            "--network {name}: a CNI network needs root; rootless, use pasta or slirp4netns"
        )),
        network if user_mode && !rootless => usage(format!(
            "--network {network} is for rootless pods; as root use a CNI network"
        )),
        network if user_mode && options.ip.is_some() => usage(format!(
            "--ip needs a CNI network, not --network {network}"
        )),
        network if options.network.user_mode().is_some_and(|p| p.find().is_none()) => {
            usage(format!(
                "--network {network}: {network} is not installed (Debian: apt install {})",
                match network {
                    PodNetwork::Pasta => "passt",
                    _ => "slirp4netns",
                }
            ))
        }
        network if user_mode && !shares_net => usage(format!(
            "--network {network} needs the pod to share its net namespace (--share ...,net)"
        )),
        PodNetwork::Cni(name) if !shares_net => usage(format!(
            "--network {name} needs the pod to share its net namespace (--share ...,net)"
        )),
        PodNetwork::None | PodNetwork::Host if !options.ports.is_empty() => usage(format!(
            "--publish needs a network (a CNI one; rootless: pasta or slirp4netns), not --network {}",
            options.network
        )),
        PodNetwork::None | PodNetwork::Host if options.ip.is_some() => usage(format!(
            "--ip needs a CNI network, not --network {}",
            options.network
        )),
        _ => Ok(()),
    }
}

/// The `CNI_CONTAINERID` of pod `name` under state root `root`: unique on the host, as
/// host-local keys its leases by it and two state roots may both have a pod `web`.
fn container_id(root: &Path, name: &str) -> String {
    // FNV-1a: short, stable across builds (the id is kept in the cache across upgrades).
    let hash = root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("peapod-{:08x}-{name}", hash as u32)
}

/// Attaches the pod's pinned network namespace to its CNI network (when it has one) and
/// writes its `/etc` files. The cache entry is recorded before ADD.
pub(crate) fn connect(
    rt: &Runtime,
    entry: &PodEntry,
    record: &mut PodRecord,
    options: &NetworkOptions,
) -> Result<(), RuntimeError> {
    let mut net = NetworkRecord::new(options);
    if let PodNetwork::Cni(name) = &options.network {
        let list = options.cni.network(name).map_err(RuntimeError::runtime)?;
        let id = container_id(&rt.root, &record.name);
        let file = peapod_net::cache_path(&options.cni.cache_dir, &list.name, &id, IFNAME);
        net.cache_file = Some(file);
        record.network = Some(net.clone());
        // Also on its own: should `pod.json` be damaged, `pod rm -f` still finds the
        // attachment to undo (see `PodEntry::salvage`).
        entry.save_json(NETWORK_FILE, &net)?;
        entry.save(record)?;
        let added = options
            .cni
            .add(
                &list,
                &Attachment {
                    container_id: id,
                    netns: entry.dir().join("ns/net"),
                    ifname: IFNAME.to_owned(),
                    ports: options.ports.clone(),
                    ip: options.ip,
                    owner: serde_json::json!({"root": rt.root, "pod": record.name}),
                },
            )
            .map_err(RuntimeError::runtime)?;
        net.addresses = added.addresses().iter().map(ToString::to_string).collect();
    }
    if let Some(program) = options.network.user_mode() {
        connect_user_mode(entry, record, &mut net, program)?;
    }
    record.network = Some(net);
    entry.save(record)?;
    write_etc(entry, record)
}

/// Starts the pasta or slirp4netns of the pod against its infra process's network namespace
/// (and the user namespace owning it), recorded before the pod is: `pod rm` kills it.
fn connect_user_mode(
    entry: &PodEntry,
    record: &mut PodRecord,
    net: &mut NetworkRecord,
    program: Program,
) -> Result<(), RuntimeError> {
    let infra = record
        .infra
        .filter(ProcessIdentity::is_alive)
        .ok_or_else(|| RuntimeError::runtime(anyhow!("pod {}: no infra process", record.name)))?;
    let ns = |kind: &str| PathBuf::from(format!("/proc/{}/ns/{kind}", infra.pid));
    let target = usermode::Target {
        netns: ns("net"),
        userns: record.rootless.then(|| ns("user")),
    };
    // Recorded first: a `pod rm` after a crash then looks for the helper's pid file.
    record.network = Some(net.clone());
    entry.save(record)?;
    let pid = usermode::start(program, &target, &net.ports, entry.dir())
        .map_err(|e| RuntimeError::runtime(anyhow::Error::new(e)))?;
    net.helper = ProcessIdentity::of(pid);
    net.addresses = vec![format!("{}/{}", usermode::ADDRESS, usermode::PREFIX)];
    // Saved at once: a `pod create` killed now leaves a helper that `pod rm` finds.
    record.network = Some(net.clone());
    entry.save(record)?;
    // The pod may have died meanwhile: then its network goes too.
    if !infra.is_alive() {
        return Err(RuntimeError::runtime(anyhow!(
            "pod {}: its infra process died while its network was set up",
            record.name
        )));
    }
    Ok(())
}

/// Writes `etc/hosts`, `etc/hostname` and `etc/resolv.conf` into the pod's directory.
fn write_etc(entry: &PodEntry, record: &PodRecord) -> Result<(), RuntimeError> {
    let Some(net) = &record.network else {
        return Ok(());
    };
    let hostname = net
        .hostname
        .clone()
        .or_else(|| record.hostname.clone())
        .unwrap_or_else(|| record.name.clone());
    let addresses: Vec<IpAddr> = net
        .addresses
        .iter()
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    let resolv = match net.network {
        // The host's resolvers, loopback ones included, are reachable from its namespace.
        PodNetwork::Host if net.dns == DnsSettings::default() => {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        }
        // The helper's forwarder, unless --dns names others.
        PodNetwork::Pasta | PodNetwork::Slirp4netns if net.dns.servers.is_empty() => {
            let mut dns = net.dns.clone();
            dns.servers = vec![usermode::DNS.into()];
            peapod_net::etc::host_resolv_conf(&dns)
        }
        _ => peapod_net::etc::host_resolv_conf(&net.dns),
    };
    let dir = entry.subdir("etc")?;
    for (file, text) in [
        (
            "hosts",
            peapod_net::etc::hosts(&hostname, &addresses, &net.add_hosts),
        ),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .map_err(|e| RuntimeError::runtime(anyhow!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Undoes the pod's attachment (DEL with what ADD had), while its network namespace is
/// still pinned; forgets its addresses.
pub(crate) fn disconnect(record: &mut PodRecord) -> Result<(), RuntimeError> {
    let Some(net) = &mut record.network else {
        return Ok(());
    };
    let Some(file) = &net.cache_file else {
        return Ok(());
    };
    let cni = Cni {
        plugin_dirs: net.plugin_dirs.clone(),
        timeout: Duration::from_secs(net.timeout_seconds.max(1)),
        ..Cni::default()
    };
    cni.del(file).map_err(RuntimeError::runtime)?;
    net.addresses.clear();
    Ok(())
}

/// Bind-mounts the pod's `/etc` files into a container's spec, and for a pod on the host's
/// network, leaves the container in the host's network namespace.
pub(crate) fn join(
    spec: &mut Spec,
    record: &PodRecord,
    pod_dir: &Path,
) -> Result<(), RuntimeError> {
    let Some(net) = &record.network else {
        return Ok(());
    };
    if net.network == PodNetwork::Host {
        if let Some(linux) = spec.linux_mut() {
            let mut namespaces = linux.namespaces().clone().unwrap_or_default();
            namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
            linux.set_namespaces(Some(namespaces));
        }
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for file in ["hosts", "hostname", "resolv.conf"] {
        let destination = PathBuf::from("/etc").join(file);
        mounts.retain(|m| m.destination() != &destination);
        mounts.push(
            MountBuilder::default()
                .destination(destination)
                .typ("bind")
                .source(pod_dir.join("etc").join(file))
                .options(vec!["bind".to_owned()])
                .build()
                .map_err(|e| RuntimeError::runtime(anyhow!("cannot describe a mount: {e}")))?,
        );
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Undoes the attachments a killed peapod left under this state root: cache entries whose
/// pod no longer exists.
pub fn reap(rt: &Runtime, cni: &Cni) {
    let pods = rt.root.join(".pods");
    for (file, cached) in cni.cached() {
        let owner_root = cached.owner["root"].as_str().map(PathBuf::from);
        let Some(pod) = cached.owner["pod"].as_str() else {
            continue;
        };
        if owner_root.as_deref() != Some(rt.root.as_path()) || pods.join(pod).exists() {
            continue;
        }
        match cni.del(&file) {
            Ok(()) => tracing::info!(
                "removed the network attachment of a pod that is gone: {}",
                file.display()
            ),
            Err(e) => tracing::warn!(
                "cannot remove the leftover attachment {}: {e}",
                file.display()
            ),
        }
    }
}

/// The label that marks the hidden pod holding a lone container's network (`run --net
/// NAME`), naming the container.
pub const CONTAINER_NETWORK_LABEL: &str = "io.peapod.container-network";

/// The name of the hidden pod of container `id`'s network.
fn container_network_pod(id: &str) -> String {
    format!("net-{id}")
}

/// Gives a lone container (`peapod run --net NAME`) a network namespace on a CNI network
/// (rootless: pasta's or slirp4netns's, with the hidden pod's user namespace):
/// a hidden pod that shares only its network namespace (the container keeps its own host
/// name, IPC and PID namespaces), with the same wiring as a pod's (ADD after the pin, the
/// `/etc` files with the container's `hostname`, DEL before the pin goes). Returns the
/// hidden pod's name, which the container joins as a pod; [`remove_container_network`]
/// removes it. Hidden pods whose container is gone are removed first.
pub fn create_container_network(
    rt: &Runtime,
    id: &str,
    hostname: &str,
    options: &NetworkOptions,
    init_path: Option<&Path>,
) -> Result<String, RuntimeError> {
    check(options, true, rt.rootless)?;
    if !rt.rootless {
        reap(rt, &options.cni);
    }
    crate::lifecycle::reap(rt);
    let pod = container_network_pod(id);
    let name = crate::PodStore::parse_name(&pod)?;
    let init = peapod_runtime::init::locate(init_path).map_err(RuntimeError::usage)?;
    let mut record = PodRecord::new(&name);
    record.shared = vec!["net".to_owned()];
    record
        .labels
        .insert(CONTAINER_NETWORK_LABEL.to_owned(), id.to_owned());
    record.owner = peapod_state::ProcessIdentity::of(std::process::id() as i32);
    let mut options = options.clone();
    options.hostname = Some(hostname.to_owned());
    let entry = crate::lifecycle::make(rt, &name, record, &init, None, &options)?;
    crate::lifecycle::made(&entry)?;
    Ok(pod)
}

/// Removes the network of lone container `id` (its hidden pod: DEL, unpin), if it has one.
pub fn remove_container_network(rt: &Runtime, id: &str) -> Result<(), RuntimeError> {
    let pod = container_network_pod(id);
    let Ok(name) = crate::PodStore::parse_name(&pod) else {
        return Ok(());
    };
    match crate::lifecycle::pods(rt)?.load(&name) {
        Ok(entry) => drop(entry),
        Err(crate::Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    crate::remove(rt, &pod, true)
}

/// Whether lone container `id` has a network of its own (a hidden pod), without opening the
/// pods' store: one `stat`, for a caller (`peapod-oci delete`) that hands such a container
/// to `peapod`, which removes the network with it.
pub fn has_container_network(root: &std::path::Path, id: &str) -> bool {
    crate::PodStore::dir_of(root)
        .join(container_network_pod(id))
        .exists()
}

/// The ports published for lone container `id` (`run -p`, `-P`), as its network recorded
/// them; none when it has no network of its own.
pub fn container_ports(rt: &Runtime, id: &str) -> Vec<PortMapping> {
    let Ok(name) = crate::PodStore::parse_name(&container_network_pod(id)) else {
        return Vec::new();
    };
    let Ok(store) = crate::lifecycle::pods(rt) else {
        return Vec::new();
    };
    store
        .load(&name)
        .ok()
        .and_then(|e| e.record().ok().flatten())
        .and_then(|r| r.network)
        .map(|n| n.ports)
        .unwrap_or_default()
}

/// The host ports every pod and lone container of this state root publishes, as their
/// records say (a port the portmap plugin forwards has no listening socket to find).
pub fn published_ports(rt: &Runtime) -> Vec<PortMapping> {
    let Ok(store) = crate::lifecycle::pods(rt) else {
        return Vec::new();
    };
    store
        .names()
        .unwrap_or_default()
        .iter()
        .filter_map(|name| store.load(name).ok()?.record().ok().flatten()?.network)
        .flat_map(|n| n.ports)
        .collect()
}
