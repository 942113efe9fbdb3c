//! Network configuration lists (`.conflist` files) found by name in the configuration
//! directories, checked with `rscni-types`, and peapod's default network `peapod`, written
//! when asked for and missing, on a subnet no route of the host uses.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rscni_types::ipnet::Ipv4Net;
use rscni_types::types::NetConfList;
use serde_json::{json, Value};

use crate::error::io;
use crate::{Error, Result};

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "peapod";
/// The default network's bridge in peapod's own configuration directory.
pub const DEFAULT_BRIDGE: &str = "peapod0";
/// peapod's own configuration directory, whose default network has [`DEFAULT_BRIDGE`].
pub const DEFAULT_CONFIG_DIR: &str = "/etc/peapod/net.d";
/// podman's default network, which the default network must not overlap.
const PODMAN_SUBNET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 88, 0, 0), 16);

/// One network: a configuration list as read, and what peapod needs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// `name`.
    pub name: String,
    /// The file it came from (or `<cache>` when read back from a cached attachment).
    pub path: PathBuf,
    /// The list as written: each plugin gets its own object of it, unchanged but for the
    /// keys the runtime injects.
    pub raw: Value,
    /// `cniVersion`, as written.
    pub version: String,
    /// `disableCheck`.
    pub disable_check: bool,
}

impl NetworkList {
    /// Checks and reads a configuration list.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<NetworkList> {
        let bad = |problem: String| Error::BadConfig {
            path: path.to_owned(),
            problem,
        };
        let raw: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let list: NetConfList = serde_json::from_value(raw.clone())
            .map_err(|e| bad(format!("not a CNI configuration list: {e}")))?;
        list.version()
            .map_err(|e| bad(format!("cniVersion {:?}: {e}", list.cni_version)))?;
        let name_ok = list
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && list
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            return Err(bad(format!("invalid network name {:?}", list.name)));
        }
        if list.plugins.is_empty() {
            return Err(bad("no plugins".to_owned()));
        }
        for (i, plugin) in list.plugins.iter().enumerate() {
            if plugin.r#type.is_empty() || plugin.r#type.contains('/') {
                return Err(bad(format!(
                    "plugins[{i}].type {:?} is not a plugin name",
                    plugin.r#type
                )));
            }
        }
        Ok(NetworkList {
            name: list.name,
            path: path.to_owned(),
            raw,
            version: list.cni_version,
            disable_check: list.disable_check,
        })
    }

    /// The plugin objects, in order.
    pub fn plugins(&self) -> Vec<&Value> {
        self.raw["plugins"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// The IPv4 subnets its IPAM hands out (`ipam.subnet` and `ipam.ranges[][].subnet`).
    pub fn subnets(&self) -> Vec<Ipv4Net> {
        let mut found = Vec::new();
        collect_subnets(&self.raw, &mut found);
        found
    }
}

fn collect_subnets(value: &Value, found: &mut Vec<Ipv4Net>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str().and_then(|s| s.parse().ok())) {
                    ("subnet", Some(net)) => found.push(net),
                    _ => collect_subnets(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_subnets(v, found)),
        _ => {}
    }
}

/// Every configuration list in `dirs` (`*.conflist`, in name order, earlier directories
/// first), each read or the error that makes it unusable.
fn all(dirs: &[PathBuf]) -> Vec<Result<NetworkList>> {
    let mut lists = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conflist"))
            .collect();
        files.sort();
        for file in files {
            lists.push(
                std::fs::read(&file)
                    .map_err(io("cannot read", &file))
                    .and_then(|bytes| NetworkList::parse(&file, &bytes)),
            );
        }
    }
    lists
}

/// The network `name` from `dirs`. When it is not there, a malformed list is reported
/// (it may have been the one meant), else that the network does not exist.
pub fn find(dirs: &[PathBuf], name: &str) -> Result<NetworkList> {
    let mut first_bad = None;
    for list in all(dirs) {
        match list {
            Ok(list) if list.name == name => return Ok(list),
            Ok(_) => {}
            Err(e) => {
                first_bad.get_or_insert(e);
            }
        }
    }
    Err(first_bad.unwrap_or_else(|| Error::NotFound {
        name: name.to_owned(),
        dirs: join(dirs),
    }))
}

pub(crate) fn join(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The bridge of the default network written into the configuration directory `dir`:
/// [`DEFAULT_BRIDGE`] in peapod's own ([`DEFAULT_CONFIG_DIR`]), else `peapod` and eight hex
/// digits of the directory's path, so that the default network of another directory (a
/// test's, a second installation's) never shares a bridge with it.
pub fn default_bridge(dir: &Path) -> String {
    if dir == Path::new(DEFAULT_CONFIG_DIR) {
        return DEFAULT_BRIDGE.to_owned();
    }
    // FNV-1a: stable across builds, since the name is written into the configuration.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    format!("peapod{hash:08x}")
}

/// Where host-local keeps the leases of a default network with bridge `bridge`: below the
/// CNI cache directory `cache_dir`, one directory per bridge, so that two default networks
/// (both named `peapod`) never share leases, and removing a cache removes its leases.
pub fn default_lease_dir(cache_dir: &Path, bridge: &str) -> PathBuf {
    cache_dir.join("networks").join(bridge)
}

/// The network `name`; for [`DEFAULT_NETWORK`] missing from every directory, writes it into
/// the first one first (see [`default_list`]), with a bridge ([`default_bridge`]) and a
/// lease directory below `cache_dir` ([`default_lease_dir`]) of its own.
pub fn find_or_default(dirs: &[PathBuf], name: &str, cache_dir: &Path) -> Result<NetworkList> {
    match find(dirs, name) {
        Err(Error::NotFound { .. }) if name == DEFAULT_NETWORK => {
            let Some(dir) = dirs.first() else {
                return Err(Error::Invalid(
                    "no network configuration directory".to_owned(),
                ));
            };
            let taken: Vec<Ipv4Net> = all(dirs)
                .into_iter()
                .flatten()
                .flat_map(|l| l.subnets())
                .chain(host_routes())
                .chain([PODMAN_SUBNET])
                .collect();
            let subnet = pick_subnet(
                Ipv4Net::new_assert(Ipv4Addr::new(10, 90, 0, 0), 16),
                24,
                &taken,
            )
            .ok_or_else(|| {
                Error::Invalid("no free /24 in 10.90.0.0/16 for the default network".to_owned())
            })?;
            let bridge = default_bridge(dir);
            let leases = default_lease_dir(cache_dir, &bridge);
            let text = serde_json::to_vec_pretty(&default_list(
                DEFAULT_NETWORK,
                &bridge,
                subnet,
                Some(&leases),
            ))
            .map_err(|e| Error::Invalid(e.to_string()))?;
            let path = dir.join(format!("{DEFAULT_NETWORK}.conflist"));
            write_new(&path, &text)?;
            tracing::info!(
                "wrote the default network {} ({subnet}, bridge {bridge}, leases in {}) to {}",
                DEFAULT_NETWORK,
                leases.display(),
                path.display()
            );
            find(dirs, name)
        }
        other => other,
    }
}

/// Writes `path` atomically unless it exists (then another command wrote it first).
fn write_new(path: &Path, text: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io("cannot make", dir))?;
    let tmp = dir.join(format!(".{}.{}", std::process::id(), "tmp"));
    std::fs::write(&tmp, text).map_err(io("cannot write", &tmp))?;
    // link(2) fails when the name exists: the first writer wins, nothing is overwritten.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("cannot write", path)(e)),
    }
}

/// A network as peapod's default is: a bridge that is the gateway, with masquerade, IPs
/// from `host-local` on `subnet` (its `.1` the gateway; leases in `data_dir` when given),
/// then `portmap` (published ports), `firewall` (forwarding to and from the bridge allowed)
/// and `tuning`.
pub fn default_list(name: &str, bridge: &str, subnet: Ipv4Net, data_dir: Option<&Path>) -> Value {
    let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let mut ipam = json!({
        "type": "host-local",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": subnet.to_string(), "gateway": gateway.to_string()}]],
    });
    if let Some(dir) = data_dir {
        ipam["dataDir"] = json!(dir);
    }
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "capabilities": {"ips": true},
                "ipam": ipam,
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning"},
        ],
    })
}

/// The IPv4 destinations of the host's routes (`/proc/net/route`), the default route left
/// out (every subnet is inside it).
pub fn host_routes() -> Vec<Ipv4Net> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the address as the integer its bytes (network order) make in
            // the host's order: those bytes again are the address.
            let prefix = mask.count_ones() as u8;
            let dst = Ipv4Addr::from(dst.to_ne_bytes());
            (prefix > 0)
                .then(|| Ipv4Net::new(dst, prefix).ok())
                .flatten()
        })
        .collect()
}

/// The first `/prefix` of `within` that overlaps none of `taken`.
pub fn pick_subnet(within: Ipv4Net, prefix: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    within
        .subnets(prefix)
        .ok()?
        .find(|candidate| !taken.iter().any(|t| overlaps(*t, *candidate)))
}

/// Whether two networks share an address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_subnet_avoids_what_is_taken() {
        let within: Ipv4Net = "10.90.0.0/16".parse().expect("net");
        let taken: Vec<Ipv4Net> = ["10.90.0.0/24", "10.90.1.128/25", "10.88.0.0/16"]
            .iter()
            .map(|s| s.parse().expect("net"))
            .collect();
        assert_eq!(
            pick_subnet(within, 24, &taken),
            Some("10.90.2.0/24".parse().expect("net"))
        );
    }

    #[test]
    fn each_configuration_directory_gets_a_bridge_and_leases_of_its_own() {
        assert_eq!(default_bridge(Path::new(DEFAULT_CONFIG_DIR)), "peapod0");
        let a = default_bridge(Path::new("/tmp/a/net.d"));
        let b = default_bridge(Path::new("/tmp/b/net.d"));
        assert_ne!(a, b);
        assert_ne!(a, DEFAULT_BRIDGE);
        assert!(a.len() <= 15, "{a} is too long for an interface name");
        assert_eq!(a, default_bridge(Path::new("/tmp/a/net.d")));
        assert_ne!(
            default_lease_dir(Path::new("/c"), &a),
            default_lease_dir(Path::new("/c"), &b)
        );
    }

    #[test]
    fn malformed_lists_say_what_and_where() {
        let path = Path::new("/x/a.conflist");
        let e = NetworkList::parse(path, b"{\"name\": ")
            .expect_err("bad")
            .to_string();
        assert!(e.starts_with("/x/a.conflist: not JSON"), "{e}");
        let e = NetworkList::parse(path, br#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#)
            .expect_err("bad")
            .to_string();
        assert_eq!(e, "/x/a.conflist: no plugins");
        let e = NetworkList::parse(
            path,
            br#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
        )
        .expect_err("bad")
        .to_string();
        assert!(
            e.contains("not a CNI configuration list: missing field `name`"),
            "{e}"
        );
        let good = default_list("n", "b0", "10.1.2.0/24".parse().expect("net"), None);
        let list = NetworkList::parse(path, good.to_string().as_bytes()).expect("good");
        assert_eq!(
            list.subnets(),
            ["10.1.2.0/24".parse::<Ipv4Net>().expect("net")]
        );
        assert_eq!(list.plugins().len(), 4);
    }
}
