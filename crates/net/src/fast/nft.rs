//! The fast path's masquerade, published ports and forwarding, in an nftables table of
//! peapod's own (`table inet peapod`).
//!
//! The table's chains hold fixed rules that look the packet up in sets and maps keyed by a
//! pod's address or published port, so that a pod adds and removes only elements: one
//! nf_tables transaction over netlink, in-process ([`nfnl`](super::nfnl)), per attach and
//! per detach. The fixed part ([`base`]) is `nft -f -`'s: written when that transaction
//! finds a set or chain missing (the first pod since boot, or a table an older peapod made),
//! then the transaction is made again. A change of the fixed rules needs a set or chain of a
//! new name, so that a table of the old layout is found missing it.
//!
//! - postrouting: `ip saddr vmap @masq` jumps to `pod_out`, which masquerades what leaves
//!   the pod's subnet (`@local`: address . subnet), not multicast, as the bridge plugin's
//!   `ipMasq`; DNATed traffic into a pod jumps to `pod_in`, which masquerades it when it
//!   comes from the host's loopback or from the pod's subnet (hairpin), as portmap's
//!   `CNI-HOSTPORT-MASQ`;
//! - prerouting and output: traffic to a local address and a published port is DNATed to
//!   the pod (`@ports` for every address, `@ports_at` for one host address);
//! - forward: accepted only to a pod's address for established connections and from a
//!   pod's address, as the firewall plugin's rules; the policy is accept, so nothing that
//!   another table drops becomes reachable.
//!
//! A detach adds each element before it deletes it, in the same transaction, so a
//! half-made or already removed attachment deletes fine. Attachments of the first fast
//! path ([`KIND_V1`](super::KIND_V1): a pair of chains per pod) are removed by an `nft`
//! batch of their own ([`v1_del_batch`]).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rscni_types::ipnet::Ipv4Net;

use super::nfnl::{self, Change, Data, Element};
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

/// The table, its chains, sets, maps and fixed rules (idempotent: the fixed rules are
/// flushed and written again).
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
    for chain in [OUT, IN] {
        b += &format!("add chain {TABLE} {chain}\nflush chain {TABLE} {chain}\n");
    }
    for (map, spec) in [
        ("masq", "type ipv4_addr : verdict;"),
        ("inbound", "type ipv4_addr : verdict;"),
        ("pods", "type ipv4_addr;"),
        ("local", "type ipv4_addr . ipv4_addr; flags interval;"),
        (
            "ports",
            "type inet_proto . inet_service : ipv4_addr . inet_service;",
        ),
        (
            "ports_at",
            "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
        ),
    ] {
        let kind = if spec.contains(':') { "map" } else { "set" };
        b += &format!("add {kind} {TABLE} {map} {{ {spec} }}\n");
    }
    b += &format!(
        "add rule {TABLE} postrouting ip saddr vmap @masq\n\
         add rule {TABLE} postrouting ct status dnat ip daddr vmap @inbound\n\
         add rule {TABLE} {OUT} ip saddr . ip daddr @local return\n\
         add rule {TABLE} {OUT} ip daddr != 224.0.0.0/4 masquerade\n\
         add rule {TABLE} {IN} ip daddr . ip saddr @local masquerade\n\
         add rule {TABLE} {IN} ip saddr 127.0.0.0/8 masquerade\n"
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

/// The table's name (family inet).
const NAME: &str = "peapod";
/// The chain a pod's outgoing traffic jumps to.
const OUT: &str = "pod_out";
/// The chain DNATed traffic into a pod jumps to.
const IN: &str = "pod_in";

/// An address's bytes.
fn addr(ip: Ipv4Addr) -> [u8; 4] {
    ip.octets()
}

/// A protocol or port as a concatenation's field: its bytes first, padded to 4.
fn field(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out[..bytes.len().min(4)].copy_from_slice(&bytes[..bytes.len().min(4)]);
    out
}

/// The IP protocol numbers of the protocols a port may be published for.
fn protocol(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

/// The pod's elements.
pub(crate) fn elements(pod: &PodRules<'_>) -> Vec<Element> {
    let ip = addr(pod.ip);
    let range = |last: Ipv4Addr| [ip, addr(last)].concat();
    let mut out = vec![
        Element {
            set: "masq",
            key: ip.to_vec(),
            key_end: None,
            data: Data::Jump(OUT),
        },
        Element {
            set: "inbound",
            key: ip.to_vec(),
            key_end: None,
            data: Data::Jump(IN),
        },
        Element {
            set: "pods",
            key: ip.to_vec(),
            key_end: None,
            data: Data::None,
        },
        Element {
            set: "local",
            key: range(pod.subnet.network()),
            key_end: Some(range(pod.subnet.broadcast())),
            data: Data::None,
        },
    ];
    for p in pod.ports {
        // Only a protocol of the three: a cached entry's ports are read back from disk.
        let Some(number) = protocol(&p.protocol) else {
            continue;
        };
        let key = [field(&[number]), field(&p.host_port.to_be_bytes())].concat();
        let to = [ip, field(&p.container_port.to_be_bytes())].concat();
        let (set, key) = match p.host_ip {
            Some(IpAddr::V4(host)) if !host.is_unspecified() => {
                ("ports_at", [addr(host).to_vec(), key].concat())
            }
            _ => ("ports", key),
        };
        out.push(Element {
            set,
            key,
            key_end: None,
            data: Data::Value(to),
        });
    }
    out
}

/// Adds the pod's elements (`Change::Add`) or removes them (`Change::Remove`), in one
/// transaction; the fixed part first where it is missing.
pub(crate) fn apply(pod: &PodRules<'_>, change: Change) -> Result<()> {
    let elements = elements(pod);
    let failed = |e: std::io::Error| failure("netlink", e.to_string());
    match nfnl::apply(NAME, &elements, change) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            tracing::debug!("{TABLE}: writing its chains, sets and rules");
            run(&base())?;
            nfnl::apply(NAME, &elements, change).map_err(failed)
        }
        done => done.map_err(failed),
    }
}

/// The chains' prefix of a pod attached by the first fast path: `pod_` and 16 hex digits
/// of its id.
fn v1_chain(id: &str) -> String {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("pod_{hash:016x}")
}

/// The batch that removes what the first fast path made for a pod, whatever of it is
/// there: its elements (each added first) and its two chains (each made first).
pub(crate) fn v1_del_batch(pod: &PodRules<'_>) -> String {
    let c = v1_chain(pod.id);
    let mut b = base() + &format!("add chain {TABLE} {c}_out\nadd chain {TABLE} {c}_in\n");
    let ip = pod.ip;
    let mut elements = vec![
        ("masq", format!("{ip} : jump {c}_out")),
        ("inbound", format!("{ip} : jump {c}_in")),
        ("pods", ip.to_string()),
    ];
    for p in pod.ports {
        // Only a protocol nft knows by this name goes into the batch's text.
        if protocol(&p.protocol).is_none() {
            continue;
        }
        let key = format!("{} . {}", p.protocol, p.host_port);
        let to = format!("{ip} . {}", p.container_port);
        match p.host_ip {
            Some(IpAddr::V4(host)) if !host.is_unspecified() => {
                elements.push(("ports_at", format!("{host} . {key} : {to}")));
            }
            _ => elements.push(("ports", format!("{key} : {to}"))),
        }
    }
    for (set, element) in elements {
        let key = element.split(" : ").next().unwrap_or(&element).to_owned();
        b += &format!(
            "add element {TABLE} {set} {{ {element} }}\ndelete element {TABLE} {set} {{ {key} }}\n"
        );
    }
    for suffix in ["out", "in"] {
        b += &format!("flush chain {TABLE} {c}_{suffix}\ndelete chain {TABLE} {c}_{suffix}\n");
    }
    b
}

fn failure(command: &'static str, message: String) -> Error {
    Error::Plugin {
        network: crate::config::DEFAULT_NETWORK.to_owned(),
        plugin: "nftables".to_owned(),
        command,
        message,
    }
}

/// Runs `nft -f -` on `batch`: its first error line when it fails.
pub(crate) fn run(batch: &str) -> Result<()> {
    let nft = binary().ok_or_else(|| Error::Invalid("nft is not installed".to_owned()))?;
    let failed = |e: std::io::Error| failure("nft -f -", e.to_string());
    let mut child = Command::new(&nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failure("nft -f -", format!("cannot run {}: {e}", nft.display())))?;
    // A batch is a few kB at most: it fits in the pipe, so writing it never blocks.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(batch.as_bytes()));
    let out = child.wait_with_output().map_err(failed)?;
    if let Some(Err(e)) = written {
        return Err(failed(e));
    }
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let first = text
        .lines()
        .find(|l| l.starts_with("Error"))
        .or_else(|| text.lines().next())
        .unwrap_or("failed");
    Err(failure("nft -f -", first.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(ports: &[PortMapping]) -> PodRules<'_> {
        PodRules {
            id: "peapod-1-web",
            ip: "10.9.0.5".parse().expect("ip"),
            subnet: "10.9.0.0/24".parse().expect("net"),
            ports,
        }
    }

    #[test]
    fn a_pods_elements_are_its_address_subnet_and_ports_as_the_kernel_keeps_them() {
        let ports = [
            "8080:80".parse().expect("port"),
            "127.0.0.1:53:5353/udp".parse().expect("port"),
            PortMapping {
                host_ip: None,
                host_port: 1,
                container_port: 2,
                protocol: "tcp; flush ruleset".to_owned(),
            },
        ];
        let all = elements(&web(&ports));
        let of = |set: &str| {
            all.iter()
                .filter(|e| e.set == set)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(of("masq")[0].data, Data::Jump(OUT));
        assert_eq!(of("inbound")[0].data, Data::Jump(IN));
        assert_eq!(of("pods")[0].key, [10, 9, 0, 5]);
        let local = &of("local")[0];
        assert_eq!(local.key, [10, 9, 0, 5, 10, 9, 0, 0]);
        assert_eq!(
            local.key_end.as_deref(),
            Some(&[10, 9, 0, 5, 10, 9, 0, 255][..])
        );
        // tcp . 8080 : 10.9.0.5 . 80, each field padded to 4 bytes; the unknown protocol
        // is left out.
        let published = of("ports");
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].key, [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(
            published[0].data,
            Data::Value(vec![10, 9, 0, 5, 0, 80, 0, 0])
        );
        let at = of("ports_at");
        assert_eq!(at[0].key, [127, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(at[0].data, Data::Value(vec![10, 9, 0, 5, 0x14, 0xe9, 0, 0]));
        // Nothing is accepted but to and from the pods' addresses.
        let fixed = base();
        for line in fixed
            .lines()
            .filter(|l| l.contains(" accept") && l.starts_with("add rule"))
        {
            assert!(line.contains("@pods"), "{line}");
        }
        let v1 = v1_del_batch(&web(&ports));
        assert!(!v1.contains("flush ruleset"), "{v1}");
        assert!(
            v1.contains("delete element inet peapod ports { tcp . 8080 }"),
            "{v1}"
        );
    }

    fn listed() -> String {
        let out = Command::new("nft")
            .args(["list", "table", "inet", NAME])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// In a network namespace of the test's own (the host's table is not touched): a pod's
    /// elements added over netlink onto a table an older peapod made, twice, and removed,
    /// twice; the older peapod's pod removed by its own batch.
    #[test]
    fn a_pods_elements_come_and_go_in_one_transaction_each() {
        if !nix::unistd::geteuid().is_root() || binary().is_none() {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let test = std::thread::spawn(|| {
            // This thread alone, and the nft it starts, are in the new namespace.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let ports: [PortMapping; 1] = ["8080:80".parse().expect("port")];
            let old_ports: [PortMapping; 1] = ["9090:90".parse().expect("port")];
            let old = PodRules {
                id: "peapod-1-old",
                ip: "10.9.0.9".parse().expect("ip"),
                ..web(&old_ports)
            };
            let c = v1_chain(old.id);
            // The first fast path's table and pod: no `local` set, no `pod_out` chain.
            run(&format!(
                "add table {TABLE}\n\
                 add map {TABLE} masq {{ type ipv4_addr : verdict; }}\n\
                 add set {TABLE} pods {{ type ipv4_addr; }}\n\
                 add map {TABLE} ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
                 add chain {TABLE} {c}_out\n\
                 add rule {TABLE} {c}_out ip daddr 10.9.0.0/24 return\n\
                 add element {TABLE} masq {{ 10.9.0.9 : jump {c}_out }}\n\
                 add element {TABLE} pods {{ 10.9.0.9 }}\n\
                 add element {TABLE} ports {{ tcp . 9090 : 10.9.0.9 . 90 }}\n"
            ))
            .expect("the first fast path's objects");
            let pod = web(&ports);
            for _ in 0..2 {
                apply(&pod, Change::Add).expect("add");
            }
            let table = listed();
            for wanted in [
                "10.9.0.5 : jump pod_out",
                "10.9.0.5 : jump pod_in",
                "10.9.0.5 . 10.9.0.0/24",
                "tcp . 8080 : 10.9.0.5 . 80",
                "10.9.0.9 : jump pod_",
            ] {
                assert!(table.contains(wanted), "{wanted} not in {table}");
            }
            run(&v1_del_batch(&old)).expect("the old pod removed");
            for _ in 0..2 {
                apply(&pod, Change::Remove).expect("remove");
            }
            let table = listed();
            assert!(!table.contains("10.9.0."), "{table}");
            assert!(table.contains("chain pod_out"), "{table}");
        });
        test.join().expect("the test's thread");
    }
}
