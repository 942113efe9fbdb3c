//! The fast path's masquerade, published ports and forwarding, in an nftables table of
//! peapod's own (`table inet peapod`), changed by one `nft -f -` batch per attach and per
//! detach (a batch is one kernel transaction: all of it or none).
//!
//! The table's base chains hold fixed rules that look the packet up in maps keyed by a
//! pod's address or published port; a pod adds only its elements and two chains of its own
//! (`pod_HASH_out`, `pod_HASH_in`, the hash of its attachment's id):
//!
//! - postrouting: `ip saddr vmap @masq` jumps to the pod's `_out` chain, which masquerades
//!   what leaves its subnet (not multicast), as the bridge plugin's `ipMasq`; DNATed traffic
//!   into a pod from the host's loopback or from its subnet (hairpin) jumps to its `_in`
//!   chain and is masqueraded, as portmap's `CNI-HOSTPORT-MASQ`;
//! - prerouting and output: traffic to a local address and a published port is DNATed to
//!   the pod (`@ports` for every address, `@ports_at` for one host address);
//! - forward: accepted only to a pod's address for established connections and from a
//!   pod's address, as the firewall plugin's rules; the policy is accept, so nothing that
//!   another table drops becomes reachable.
//!
//! Teardown is made to work whatever is left: each element and chain is added before it is
//! deleted, in the same batch, so a half-made or already removed attachment deletes fine.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rscni_types::ipnet::Ipv4Net;

use crate::cni::PortMapping;
use crate::{Error, Result};

/// The table.
pub const TABLE: &str = "inet peapod";

/// The `nft` binary, when installed.
pub(crate) fn binary() -> Option<PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// One pod's part of the table.
pub(crate) struct PodRules<'a> {
    /// The attachment's id (the chains' names hash it).
    pub id: &'a str,
    pub ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub ports: &'a [PortMapping],
}

/// The table, its base chains, maps and fixed rules (idempotent: the fixed rules are
/// flushed and written again in every batch).
fn base() -> String {
    let mut b = format!("add table {TABLE}\n");
    for (chain, spec) in [
        (
            "postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
        ),
        (
            "prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
        ),
        (
            "output",
            "type nat hook output priority -100; policy accept;",
        ),
        (
            "forward",
            "type filter hook forward priority filter; policy accept;",
        ),
    ] {
        b += &format!("add chain {TABLE} {chain} {{ {spec} }}\nflush chain {TABLE} {chain}\n");
    }
    for (map, spec) in [
        ("masq", "type ipv4_addr : verdict;"),
        ("inbound", "type ipv4_addr : verdict;"),
        ("pods", "type ipv4_addr;"),
        (
            "ports",
            "type inet_proto . inet_service : ipv4_addr . inet_service;",
        ),
        (
            "ports_at",
            "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
        ),
    ] {
        let kind = if map == "pods" { "set" } else { "map" };
        b += &format!("add {kind} {TABLE} {map} {{ {spec} }}\n");
    }
    b += &format!(
        "add rule {TABLE} postrouting ip saddr vmap @masq\n\
         add rule {TABLE} postrouting ct status dnat ip daddr vmap @inbound\n"
    );
    for chain in ["prerouting", "output"] {
        b += &format!(
            "add rule {TABLE} {chain} fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @ports_at\n\
             add rule {TABLE} {chain} fib daddr type local dnat ip to meta l4proto . th dport map @ports\n"
        );
    }
    b += &format!(
        "add rule {TABLE} forward ip daddr @pods ct state established,related accept\n\
         add rule {TABLE} forward ip saddr @pods accept\n"
    );
    b
}

/// The pod's chains' prefix: `pod_` and 16 hex digits of its id.
fn chain(id: &str) -> String {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("pod_{hash:016x}")
}

/// The pod's elements: `(set or map, element)`.
fn elements(pod: &PodRules<'_>) -> Vec<(&'static str, String)> {
    let c = chain(pod.id);
    let ip = pod.ip;
    let mut out = vec![
        ("masq", format!("{ip} : jump {c}_out")),
        ("inbound", format!("{ip} : jump {c}_in")),
        ("pods", ip.to_string()),
    ];
    for p in pod.ports {
        // Only a protocol nft knows by this name goes into the batch's text (a cached
        // entry's ports are read back from disk).
        let Some(protocol) = ["tcp", "udp", "sctp"]
            .into_iter()
            .find(|known| *known == p.protocol)
        else {
            continue;
        };
        let key = format!("{protocol} . {}", p.host_port);
        let to = format!("{ip} . {}", p.container_port);
        match p.host_ip {
            Some(IpAddr::V4(host)) if !host.is_unspecified() => {
                out.push(("ports_at", format!("{host} . {key} : {to}")));
            }
            _ => out.push(("ports", format!("{key} : {to}"))),
        }
    }
    out
}

/// The pod's two chains, made empty and filled.
fn chains(pod: &PodRules<'_>) -> String {
    let c = chain(pod.id);
    let subnet = pod.subnet;
    format!(
        "add chain {TABLE} {c}_out\nflush chain {TABLE} {c}_out\n\
         add rule {TABLE} {c}_out ip daddr {subnet} return\n\
         add rule {TABLE} {c}_out ip daddr != 224.0.0.0/4 masquerade\n\
         add chain {TABLE} {c}_in\nflush chain {TABLE} {c}_in\n\
         add rule {TABLE} {c}_in ip saddr {{ 127.0.0.0/8, {subnet} }} masquerade\n"
    )
}

/// The batch that adds the pod's rules.
pub(crate) fn add_batch(pod: &PodRules<'_>) -> String {
    let mut b = base() + &chains(pod);
    for (set, element) in elements(pod) {
        b += &format!("add element {TABLE} {set} {{ {element} }}\n");
    }
    b
}

/// The batch that removes the pod's rules, whatever of them is there.
pub(crate) fn del_batch(pod: &PodRules<'_>) -> String {
    let mut b = base() + &chains(pod);
    for (set, element) in elements(pod) {
        let key = element.split(" : ").next().unwrap_or(&element).to_owned();
        b += &format!(
            "add element {TABLE} {set} {{ {element} }}\ndelete element {TABLE} {set} {{ {key} }}\n"
        );
    }
    let c = chain(pod.id);
    for suffix in ["out", "in"] {
        b += &format!("flush chain {TABLE} {c}_{suffix}\ndelete chain {TABLE} {c}_{suffix}\n");
    }
    b
}

/// An `nft -f -` running a batch.
pub(crate) struct Pending {
    child: std::process::Child,
}

fn failure(message: String) -> Error {
    Error::Plugin {
        network: crate::config::DEFAULT_NETWORK.to_owned(),
        plugin: "nftables".to_owned(),
        command: "nft -f -",
        message,
    }
}

/// Starts `nft -f -` on `batch` (its input written and closed): the caller does its
/// netlink work meanwhile, then [`Pending::wait`]s.
pub(crate) fn spawn(batch: &str) -> Result<Pending> {
    let nft = binary().ok_or_else(|| Error::Invalid("nft is not installed".to_owned()))?;
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failure(format!("cannot run {}: {e}", nft.display())))?;
    // A batch is a few kB at most: it fits in the pipe, so writing it never blocks.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(batch.as_bytes()));
    let pending = Pending { child };
    match written {
        Some(Err(e)) => {
            let _ = pending.wait();
            Err(failure(e.to_string()))
        }
        _ => Ok(pending),
    }
}

impl Pending {
    /// Waits for `nft`: its first error line when it failed.
    pub(crate) fn wait(self) -> Result<()> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| failure(e.to_string()))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let first = text
            .lines()
            .find(|l| l.starts_with("Error"))
            .or_else(|| text.lines().next())
            .unwrap_or("failed");
        Err(failure(first.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_rules_are_its_elements_and_chains_only() {
        let ports = [
            "8080:80".parse().expect("port"),
            "127.0.0.1:53:5353/udp".parse().expect("port"),
        ];
        let pod = PodRules {
            id: "peapod-1-web",
            ip: "10.9.0.5".parse().expect("ip"),
            subnet: "10.9.0.0/24".parse().expect("net"),
            ports: &ports,
        };
        let add = add_batch(&pod);
        let c = chain("peapod-1-web");
        assert!(
            add.contains(&format!(
                "add element inet peapod masq {{ 10.9.0.5 : jump {c}_out }}"
            )),
            "{add}"
        );
        assert!(
            add.contains("add element inet peapod ports { tcp . 8080 : 10.9.0.5 . 80 }"),
            "{add}"
        );
        assert!(
            add.contains(
                "add element inet peapod ports_at { 127.0.0.1 . udp . 53 : 10.9.0.5 . 5353 }"
            ),
            "{add}"
        );
        // Nothing is accepted but to and from the pods' addresses.
        for line in add
            .lines()
            .filter(|l| l.contains(" accept") && l.starts_with("add rule"))
        {
            assert!(line.contains("@pods"), "{line}");
        }
        let odd = [PortMapping {
            host_ip: None,
            host_port: 1,
            container_port: 2,
            protocol: "tcp; flush ruleset".to_owned(),
        }];
        let injected = add_batch(&PodRules { ports: &odd, ..pod });
        assert!(!injected.contains("flush ruleset"), "{injected}");
        let del = del_batch(&pod);
        assert!(
            del.contains("delete element inet peapod ports { tcp . 8080 }"),
            "{del}"
        );
        assert!(
            del.contains(&format!("delete chain inet peapod {c}_in")),
            "{del}"
        );
    }
}
