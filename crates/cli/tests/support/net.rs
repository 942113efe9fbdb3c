//! A CNI network of the test's own: its name, bridge (`pp<pid>x<n>`), a /24 (or smaller)
//! that no route of the host uses, its configuration, cache and host-local lease
//! directories in the test's scratch directory. On drop it removes the bridge and any
//! iptables rule that still names its subnet, bridge or pods, so even a failed test leaves
//! nothing on the host. Declare it before the `Pods`, so that the pods go first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use peapod_pod::peapod_net::ipnet::Ipv4Net;
use peapod_pod::peapod_net::{default_list, host_routes, overlaps};

use super::pods::Pods;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct TestNet {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub dir: PathBuf,
    _scratch: tempfile::TempDir,
}

/// Whether the CNI plugins and iptables are here, else says why the test is skipped.
pub fn available() -> bool {
    for tool in [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/portmap",
        "/usr/lib/cni/firewall",
    ] {
        if !Path::new(tool).exists() {
            eprintln!("skipped: {tool} is missing (containernetworking-plugins)");
            return false;
        }
    }
    if Command::new("iptables").arg("--version").output().is_err() {
        eprintln!("skipped: no iptables");
        return false;
    }
    true
}

/// A network of the test's own and the test's pods, whose `peapod` is given its
/// directories; `None` after saying why the test is skipped.
pub fn pods_on(prefix: u8) -> Option<(TestNet, Pods)> {
    if !available() {
        return None;
    }
    let net = TestNet::new(prefix);
    let mut pods = Pods::new()?;
    pods.env = net.env();
    Some((net, pods))
}

impl TestNet {
    /// A network of `prefix` (24, or 30 for a tiny one), its files in a directory of its
    /// own; [`TestNet::env`] gives the variables that make `peapod` use them.
    pub fn new(prefix: u8) -> TestNet {
        TestNet::named(None, prefix)
    }

    /// [`TestNet::new`], with this network name (`peapod`: the default network, of the
    /// test's own directories).
    pub fn named(name: Option<&str>, prefix: u8) -> TestNet {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = name.map_or_else(|| format!("ppt{pid}x{n}"), str::to_owned);
        let bridge = format!("pp{pid}x{n}");
        assert!(bridge.len() <= 15, "{bridge}");
        let scratch = tempfile::Builder::new()
            .prefix("peapod-net-")
            .tempdir()
            .expect("tempdir");
        let dir = scratch.path().to_owned();
        let subnet = free_subnet(pid, n, prefix);
        let list = default_list(&name, &bridge, subnet, Some(&dir.join("ipam")));
        std::fs::create_dir_all(dir.join("net.d")).expect("net.d");
        std::fs::write(
            dir.join(format!("net.d/{name}.conflist")),
            serde_json::to_vec_pretty(&list).expect("json"),
        )
        .expect("conflist");
        TestNet {
            name,
            bridge,
            subnet,
            dir,
            _scratch: scratch,
        }
    }

    /// The variables that point `peapod` at this network's configuration and cache.
    pub fn env(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("PEAPOD_CNI_CONFIG_DIR".into(), self.dir.join("net.d")),
            ("PEAPOD_CNI_CACHE_DIR".into(), self.dir.join("cache")),
        ]
    }

    /// What names this network in a rule: its subnet (as a whole and its addresses'
    /// first three octets), its bridge, and its name unless it is the default `peapod`,
    /// which other tests' networks (and the fast path's table) are named too.
    fn marks(&self) -> Vec<String> {
        let mut marks = vec![self.subnet.to_string(), self.prefix(), self.bridge.clone()];
        if self.name != "peapod" {
            marks.push(self.name.clone());
        }
        marks
    }

    /// The gateway address (the bridge's).
    pub fn gateway(&self) -> String {
        let base = u32::from(self.subnet.network());
        std::net::Ipv4Addr::from(base + 1).to_string()
    }

    /// The gateway's first three octets with the dot (`10.192.7.`): what an address the
    /// network hands out starts with, for the /24 and longer prefixes the tests use.
    pub fn prefix(&self) -> String {
        let gateway = self.gateway();
        let cut = gateway.rfind('.').map_or(0, |i| i + 1);
        gateway[..cut].to_owned()
    }

    /// What of the host names this network: veths on its bridge, leases, cache entries,
    /// iptables and nftables lines naming its subnet or bridge.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let links = output(&["ip", "-o", "link", "show", "master", &self.bridge]);
        left.extend(links.lines().map(|l| format!("link: {l}")));
        let leases = self.dir.join("ipam").join(&self.name);
        for entry in std::fs::read_dir(&leases).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                left.push(format!("lease: {name}"));
            }
        }
        for entry in std::fs::read_dir(self.dir.join("cache/results"))
            .into_iter()
            .flatten()
            .flatten()
        {
            left.push(format!("cache: {}", entry.file_name().to_string_lossy()));
        }
        let subnet = self.subnet.to_string();
        let prefix = subnet
            .rsplit_once('.')
            .map(|x| x.0)
            .unwrap_or_default()
            .to_owned()
            + ".";
        for line in output(&["iptables-save"]).lines() {
            if self.marks().iter().any(|m| line.contains(m.as_str())) || line.contains(&prefix) {
                left.push(format!("rule: {}", line.trim()));
            }
        }
        // nftables by address and bridge only: the default network's name is also the
        // name of the fast path's table (`inet peapod`), which other pods may be using.
        for line in output(&["nft", "list", "ruleset"]).lines() {
            if line.contains(&prefix) || line.contains(&self.bridge) {
                left.push(format!("rule: {}", line.trim()));
            }
        }
        left
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Rules a failed test's pods may have left, by what they name.
        let marks = self.marks();
        remove_rules_naming(&marks.iter().map(String::as_str).collect::<Vec<_>>());
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Deletes the iptables rules that contain any of `marks`, and the chains they jump to
/// (the per-pod chains the plugins make), as a reboot would leave none of them.
pub fn remove_rules_naming(marks: &[&str]) {
    let mut table = String::new();
    let mut chains = Vec::new();
    for line in output(&["iptables-save"]).lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        if marks.iter().any(|m| rule.contains(m)) {
            let words = split_rule(rule);
            if let Some(at) = words.iter().position(|w| w == "-j") {
                if let Some(target) = words.get(at + 1).filter(|t| t.starts_with("CNI-")) {
                    chains.push((table.clone(), target.clone()));
                }
            }
            let mut args = vec![
                "-w".to_owned(),
                "-t".to_owned(),
                table.clone(),
                "-D".to_owned(),
            ];
            args.extend(words);
            let _ = Command::new("iptables").args(&args).output();
        }
    }
    for (table, chain) in chains {
        let _ = Command::new("iptables")
            .args(["-w", "-t", &table, "-F", &chain])
            .output();
        let _ = Command::new("iptables")
            .args(["-w", "-t", &table, "-X", &chain])
            .output();
    }
}

/// An iptables-save rule as arguments (its comments are in double quotes, with `\"` inside).
fn split_rule(rule: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        args.push(current);
    }
    args
}

fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A subnet of `prefix` in 10.192.0.0/11 that overlaps no route of the host, starting at a
/// place given by the test process and fixture number, so that concurrent test processes
/// (other worktrees) are unlikely to pick the same one before either has its route.
fn free_subnet(pid: u32, n: u32, prefix: u8) -> Ipv4Net {
    let within: Ipv4Net = "10.192.0.0/11".parse().expect("net");
    let candidates: Vec<Ipv4Net> = within.subnets(prefix).expect("prefix").collect();
    let routes = host_routes();
    let start = (pid as usize * 7919 + n as usize * 104_729) % candidates.len();
    candidates
        .iter()
        .cycle()
        .skip(start)
        .take(candidates.len())
        .find(|c| !routes.iter().any(|r| overlaps(*r, **c)))
        .copied()
        .expect("a free subnet")
}
