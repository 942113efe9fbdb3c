//! The default network's fast path: what the `bridge`, `host-local`, `portmap`, `firewall`
//! and `tuning` plugins of peapod's own default network do, done in-process (netlink for
//! the bridge, the veth pair and the addresses; one nftables transaction of set elements
//! for masquerade and published ports), for the network `peapod` only, and only while its configuration list
//! is exactly what peapod writes ([`recognise`]); every other network runs its plugins.
//!
//! An attachment is cached as the CNI path's are (the same file, written before anything
//! is made, with kind [`KIND`]), so `pod rm`, `pod stop` and the reaper of a killed
//! peapod's leftovers undo it through [`Cni::del`](crate::Cni::del) whichever path made it.
//! Leases are host-local's files in host-local's directory ([`ipam`]): the two paths never
//! hand out the same address.

pub(crate) mod ipam;
mod link;
mod nfnl;
pub mod nft;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rscni_types::ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::cache::{self, CacheEntry};
use crate::cni::{parse_result, Added, Attachment, PortMapping};
use crate::config::{default_list, NetworkList, DEFAULT_NETWORK};
use crate::{Error, Result};

use link::Rtnl;
use nfnl::Change;

/// The `kind` of a cache entry the fast path makes.
pub const KIND: &str = "peapodFastV2";
/// The `kind` of a cache entry of the first fast path (a pair of nftables chains per pod),
/// which is still undone.
pub const KIND_V1: &str = "peapodFastV1";

/// The default network as peapod wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultNet {
    bridge: String,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    data_dir: Option<PathBuf>,
}

/// The default network's settings when `list` is exactly the list peapod writes for it
/// ([`default_list`] of its own bridge, subnet and lease directory); `None` for any other
/// list (a user's network, or the default one changed by hand), which keeps its plugins.
pub(crate) fn recognise(list: &NetworkList) -> Option<DefaultNet> {
    if list.name != DEFAULT_NETWORK {
        return None;
    }
    let bridge = list.raw["plugins"][0]["bridge"].as_str()?;
    // An interface name (it is also a path below /proc/sys/net/ipv4/conf).
    let valid_name = !matches!(bridge, "" | "." | "..")
        && bridge.len() <= 15
        && bridge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let [subnet] = list.subnets()[..] else {
        return None;
    };
    let data_dir = list.raw["plugins"][0]["ipam"]["dataDir"]
        .as_str()
        .map(PathBuf::from);
    let same = default_list(&list.name, bridge, subnet, data_dir.as_deref()) == list.raw;
    (valid_name && same && subnet.prefix_len() <= 30).then(|| DefaultNet {
        bridge: bridge.to_owned(),
        subnet,
        gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
        data_dir,
    })
}

/// The host's end of the attachment's veth pair: `veth` and 8 hex digits of its id, as the
/// bridge plugin names its own (but stable, so that a teardown finds it without a result).
fn host_veth(id: &str, ifname: &str) -> String {
    let hash = id
        .bytes()
        .chain(*b"/")
        .chain(ifname.bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    format!("veth{hash:08x}")
}

/// ADD through the fast path: the cache entry first, then the lease (recorded at once),
/// the bridge, the veth pair, the pod's side, the nftables batch. A failure undoes what
/// was made.
pub(crate) fn add(
    file: &Path,
    list: &NetworkList,
    net: &DefaultNet,
    att: &Attachment,
) -> Result<Added> {
    let capability_args = match att.ports.is_empty() {
        true => serde_json::Map::new(),
        false => [("portMappings".to_owned(), json!(att.ports))]
            .into_iter()
            .collect(),
    };
    let mut entry = CacheEntry {
        kind: KIND.to_owned(),
        container_id: att.container_id.clone(),
        if_name: att.ifname.clone(),
        network_name: list.name.clone(),
        netns: att.netns.clone(),
        cni_args: att.ip.map_or_else(
            || "IgnoreUnknown=1".to_owned(),
            |ip| format!("IgnoreUnknown=1;IP={ip}"),
        ),
        capability_args,
        config: list.raw.clone(),
        result: None,
        owner: att.owner.clone(),
    };
    cache::save(file, &entry)?;
    let started = std::time::Instant::now();
    let attached = attach(file, &mut entry, net, att);
    tracing::debug!("peapod: fast path ADD took {:?}", started.elapsed());
    match attached {
        Ok(result) => Ok(Added {
            cache_file: file.to_owned(),
            result: parse_result(&result)?,
        }),
        Err(e) => {
            match detach(&entry) {
                Ok(()) => {
                    let _ = std::fs::remove_file(file);
                }
                Err(undo) => tracing::warn!("undoing the failed attachment: {undo}"),
            }
            Err(e)
        }
    }
}

fn setup(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Plugin {
        network: DEFAULT_NETWORK.to_owned(),
        plugin: "fast path".to_owned(),
        command: "ADD",
        message: format!("{what}: {e}"),
    }
}

fn attach(
    file: &Path,
    entry: &mut CacheEntry,
    net: &DefaultNet,
    att: &Attachment,
) -> Result<Value> {
    let wanted = match att.ip {
        None => None,
        Some(IpAddr::V4(ip)) => Some(ip),
        Some(ip) => return Err(Error::Invalid(format!("{ip}: the default network is IPv4"))),
    };
    let leases = ipam::lease_dir(net.data_dir.as_deref(), DEFAULT_NETWORK);
    let ip = ipam::reserve(
        &leases,
        net.subnet,
        net.gateway,
        &att.container_id,
        &att.ifname,
        wanted,
    )?;
    let veth = host_veth(&att.container_id, &att.ifname);
    let result = result_of(net, &veth, &att.ifname, &att.netns, ip);
    // Recorded before anything else is made: a teardown then knows the address.
    entry.result = Some(result.clone());
    cache::save(file, entry)?;
    link(net, &veth, att, ip)?;
    let rules = nft::PodRules {
        id: &att.container_id,
        ip,
        subnet: net.subnet,
        ports: &att.ports,
    };
    nft::apply(&rules, Change::Add)?;
    Ok(result)
}

/// The bridge, the veth pair and the pod's side of it.
fn link(net: &DefaultNet, veth: &str, att: &Attachment, ip: Ipv4Addr) -> Result<()> {
    let prefix = net.subnet.prefix_len();
    sysctl("net/ipv4/ip_forward", "1")?;
    let mut host = Rtnl::new().map_err(setup("rtnetlink".into()))?;
    let bridge = host
        .ensure_bridge(&net.bridge)
        .map_err(setup(format!("bridge {}", net.bridge)))?;
    host.add_address(bridge, net.gateway, prefix, true)
        .and_then(|()| host.set_up(bridge, None))
        .map_err(setup(format!("bridge {}", net.bridge)))?;
    host.delete(veth).map_err(setup(format!("stale {veth}")))?;
    host.create_veth(veth, &att.ifname, &att.netns)
        .map_err(setup(format!("veth {veth}")))?;
    let index = host
        .index(veth)
        .and_then(|i| i.ok_or_else(|| std::io::Error::other("vanished")))
        .map_err(setup(format!("veth {veth}")))?;
    host.set_up(index, Some(bridge))
        .and_then(|()| host.hairpin(index))
        .map_err(setup(format!("veth {veth} on {}", net.bridge)))?;
    let mut pod = Rtnl::inside(&att.netns).map_err(setup(format!("{}", att.netns.display())))?;
    let eth = pod
        .index(&att.ifname)
        .and_then(|i| i.ok_or_else(|| std::io::Error::other("missing")))
        .and_then(|eth| {
            pod.add_address(eth, ip, prefix, false)?;
            pod.set_up(eth, None)?;
            pod.add_default_route(eth, net.gateway)
        });
    eth.map_err(setup(format!("{} in the pod", att.ifname)))?;
    if !att.ports.is_empty() {
        // As portmap: DNAT of the host's loopback addresses to the pod, on the bridge only.
        sysctl(&format!("net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
    }
    Ok(())
}

/// The result the bridge plugin would give (cniVersion 1.0.0).
fn result_of(net: &DefaultNet, veth: &str, ifname: &str, netns: &Path, ip: Ipv4Addr) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": net.bridge},
            {"name": veth},
            {"name": ifname, "sandbox": netns},
        ],
        "ips": [{
            "interface": 2,
            "address": format!("{ip}/{}", net.subnet.prefix_len()),
            "gateway": net.gateway.to_string(),
        }],
        "routes": [{"dst": "0.0.0.0/0", "gw": net.gateway.to_string()}],
        "dns": {},
    })
}

fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(crate::error::io("cannot write", &path))
}

/// DEL of an attachment the fast path made: the nftables elements (and the chains of a
/// [`KIND_V1`] attachment), the veth pair (taken down and off the bridge, deleted by the
/// kernel with the pod's network namespace), the lease; each is tried, whatever is already gone, and the first failure
/// reported.
pub(crate) fn detach(entry: &CacheEntry) -> Result<()> {
    let started = std::time::Instant::now();
    let detached = detach_all(entry);
    tracing::debug!("peapod: fast path DEL took {:?}", started.elapsed());
    detached
}

fn detach_all(entry: &CacheEntry) -> Result<()> {
    let list = NetworkList::parse(Path::new("<cache>"), entry.config.to_string().as_bytes())?;
    let net = recognise(&list).ok_or_else(|| Error::BadConfig {
        path: PathBuf::from("<cache>"),
        problem: "a fast-path attachment of a network that is not peapod's default".to_owned(),
    })?;
    let mut first: Option<Error> = None;
    let ip = entry
        .result
        .as_ref()
        .and_then(|r| r["ips"][0]["address"].as_str())
        .and_then(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok());
    let ports: Vec<PortMapping> = entry
        .capability_args
        .get("portMappings")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default();
    if let Some(ip) = ip {
        let rules = nft::PodRules {
            id: &entry.container_id,
            ip,
            subnet: net.subnet,
            ports: &ports,
        };
        let removed = match entry.kind.as_str() {
            KIND_V1 => nft::run(&nft::v1_del_batch(&rules)),
            _ => nft::apply(&rules, Change::Remove),
        };
        if let Err(e) = removed {
            first.get_or_insert(e);
        }
    }
    // Down and off the bridge: the kernel deletes the pair with the pod's namespace, which
    // goes when its pin does, right after this DEL.
    let veth = host_veth(&entry.container_id, &entry.if_name);
    if let Err(e) = Rtnl::new().and_then(|mut host| host.detach(&veth)) {
        first.get_or_insert(setup(format!("veth {veth}"))(e));
    }
    let leases = ipam::lease_dir(net.data_dir.as_deref(), DEFAULT_NETWORK);
    if let Err(e) = ipam::release(&leases, &entry.container_id, &entry.if_name) {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_list_as_peapod_writes_it_is_recognised() {
        let subnet: Ipv4Net = "10.90.3.0/24".parse().expect("net");
        let parse = |v: &Value| NetworkList::parse(Path::new("x"), v.to_string().as_bytes());
        let ours = default_list(DEFAULT_NETWORK, "peapod0", subnet, Some(Path::new("/l")));
        let net = recognise(&parse(&ours).expect("list")).expect("recognised");
        assert_eq!(net.bridge, "peapod0");
        assert_eq!(net.gateway.to_string(), "10.90.3.1");
        assert_eq!(net.data_dir.as_deref(), Some(Path::new("/l")));
        assert!(recognise(
            &parse(&default_list(DEFAULT_NETWORK, "peapod0", subnet, None)).expect("list")
        )
        .is_some());
        // Another name, or any change made by hand: the plugins run.
        assert!(
            recognise(&parse(&default_list("other", "peapod0", subnet, None)).expect("list"))
                .is_none()
        );
        let mut changed = ours.clone();
        changed["plugins"][0]["hairpinMode"] = json!(false);
        assert!(recognise(&parse(&changed).expect("list")).is_none());
        let mut extra = ours;
        extra["plugins"]
            .as_array_mut()
            .expect("plugins")
            .push(json!({"type": "bandwidth"}));
        assert!(recognise(&parse(&extra).expect("list")).is_none());
        let dots = default_list(DEFAULT_NETWORK, "..", subnet, None);
        assert!(recognise(&parse(&dots).expect("list")).is_none());
        assert_eq!(host_veth("a", "eth0"), host_veth("a", "eth0"));
        assert_ne!(host_veth("a", "eth0"), host_veth("b", "eth0"));
    }
}
