//! Ports as docker shows and chooses them: `--expose` and an image's `ExposedPorts`, `-P`'s
//! choice of a free host port for each, `peapod port`, and `ps`'s PORTS column.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use anyhow::anyhow;
use peapod_pod::peapod_net::PortMapping;
use peapod_runtime::{Error, Runtime};

use crate::args::PortArgs;
use crate::output::outln;

/// The kernel's ephemeral range, which docker's `-P` takes its host ports from.
const PORT_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Docker's range when the kernel's cannot be read.
const DEFAULT_RANGE: (u16, u16) = (49153, 65535);

/// A container port: `80/tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Exposed {
    pub port: u16,
    pub protocol: String,
}

impl std::fmt::Display for Exposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// Ports as a message lists them: `80/tcp, 53/udp`.
pub(crate) fn list(ports: &[Exposed]) -> String {
    let words: Vec<String> = ports.iter().map(ToString::to_string).collect();
    words.join(", ")
}

/// `PORT[/PROTO]`: one container port (tcp when no protocol is said).
pub(crate) fn parse_exposed(s: &str) -> Result<Exposed, String> {
    match parse_expose(s)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one port, not the range {s:?}")),
    }
}

/// `--expose PORT[/PROTO]` or `FROM-TO[/PROTO]`.
pub(crate) fn parse_expose(s: &str) -> Result<Vec<Exposed>, String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, p @ ("tcp" | "udp" | "sctp"))) => (ports, p),
        Some((_, p)) => return Err(format!("unknown protocol {p:?} (tcp, udp or sctp)")),
        None => (s, "tcp"),
    };
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} is not a port (1 to 65535)"))
    };
    let (from, to) = match ports.split_once('-') {
        Some((from, to)) => (port(from)?, port(to)?),
        None => (port(ports)?, port(ports)?),
    };
    if from > to {
        return Err(format!("{s:?}: the range ends before it starts"));
    }
    Ok((from..=to)
        .map(|port| Exposed {
            port,
            protocol: protocol.to_owned(),
        })
        .collect())
}

/// The ports an image's config exposes: its `ExposedPorts` keys (`80/tcp`).
pub(crate) fn image_exposed(image: &str, keys: Vec<String>) -> Result<Vec<Exposed>, Error> {
    let mut exposed = Vec::new();
    for key in keys {
        let ports = parse_expose(&key).map_err(|e| {
            Error::runtime(anyhow!(
                "image {image}: its ExposedPorts entry {key:?}: {e}"
            ))
        })?;
        exposed.extend(ports);
    }
    Ok(exposed)
}

/// `-P`: `exposed` published each on a free host port, besides the mappings `-p` gave
/// (a port `-p` publishes is not published again).
pub(crate) fn publish_all(
    rt: &Runtime,
    explicit: &[PortMapping],
    exposed: &[Exposed],
) -> Result<Vec<PortMapping>, Error> {
    let mut taken: HashSet<(u16, String)> = peapod_pod::published_ports(rt)
        .into_iter()
        .chain(explicit.iter().cloned())
        .map(|m| (m.host_port, m.protocol))
        .collect();
    let mut mappings = explicit.to_vec();
    let mut seen = HashSet::new();
    for port in exposed {
        let published = mappings
            .iter()
            .any(|m| m.container_port == port.port && m.protocol == port.protocol);
        if published || !seen.insert(port.clone()) {
            continue;
        }
        let host_port = free_host_port(&port.protocol, &taken).ok_or_else(|| {
            Error::runtime(anyhow!(
                "-P: no free host port for {port} in the ephemeral range"
            ))
        })?;
        taken.insert((host_port, port.protocol.clone()));
        mappings.push(PortMapping {
            host_ip: None,
            host_port,
            container_port: port.port,
            protocol: port.protocol.clone(),
        });
    }
    Ok(mappings)
}

/// A host port of the ephemeral range that nothing listens on and no container of this
/// state root publishes, as docker's allocator picks them; begun at a random place, so
/// that two `run -P` at once (no daemon keeps a list) are unlikely to try the same one.
fn free_host_port(protocol: &str, taken: &HashSet<(u16, String)>) -> Option<u16> {
    let (low, high) = ephemeral_range();
    let size = u32::from(high - low) + 1;
    let start = random_below(size);
    (0..size)
        .map(|i| low + ((start + i) % size) as u16)
        .find(|port| !taken.contains(&(*port, protocol.to_owned())) && is_free(*port, protocol))
}

/// Whether a socket can be bound to `port` on every address now.
fn is_free(port: u16, protocol: &str) -> bool {
    match protocol {
        "udp" => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
        // SCTP ports are told free by TCP's, as no listener of ours could hold one.
        _ => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok(),
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`).
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string(PORT_RANGE_FILE).unwrap_or_default();
    let mut numbers = text
        .split_whitespace()
        .filter_map(|n| n.parse::<u16>().ok());
    match (numbers.next(), numbers.next()) {
        (Some(low), Some(high)) if 0 < low && low <= high => (low, high),
        _ => DEFAULT_RANGE,
    }
}

/// A number below `n` from the kernel's randomness (a generated id's first digits).
fn random_below(n: u32) -> u32 {
    let id = peapod_runtime::flags::generated_id();
    let digits = id.get(..8).and_then(|d| u32::from_str_radix(d, 16).ok());
    digits.unwrap_or(std::process::id()) % n.max(1)
}

/// The mappings by container port and protocol, as docker lists them.
fn sorted(mappings: &[PortMapping]) -> Vec<&PortMapping> {
    let mut sorted: Vec<&PortMapping> = mappings.iter().collect();
    sorted.sort_by(|a, b| (a.container_port, &a.protocol).cmp(&(b.container_port, &b.protocol)));
    sorted
}

/// Mappings as docker's `ps` shows them: `0.0.0.0:8080->80/tcp, ...`.
pub(crate) fn column(mappings: &[PortMapping]) -> String {
    sorted(mappings)
        .into_iter()
        .map(|m| format!("{}->{}/{}", host_address(m), m.container_port, m.protocol))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `0.0.0.0:8080`, `[::1]:8080`.
fn host_address(m: &PortMapping) -> String {
    match m.host_ip {
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", m.host_port),
        Some(ip) => format!("{ip}:{}", m.host_port),
        None => format!("0.0.0.0:{}", m.host_port),
    }
}

/// `peapod port ID [PRIVATE]`: each mapping as docker's `port` prints it
/// (`80/tcp -> 0.0.0.0:32768`), or the host address of one container port.
pub(crate) fn print(rt: &Runtime, args: &PortArgs) -> Result<i32, Error> {
    // A container that does not exist is an error, not an empty list; one that has exited
    // publishes nothing, as docker's.
    let container = crate::ps::Container::load(rt, &args.id)?;
    let mappings = container.ports(rt);
    match &args.private {
        None => {
            for m in sorted(&mappings) {
                outln!("{}/{} -> {}", m.container_port, m.protocol, host_address(m));
            }
        }
        Some(private) => {
            let found: Vec<&PortMapping> = mappings
                .iter()
                .filter(|m| m.container_port == private.port && m.protocol == private.protocol)
                .collect();
            if found.is_empty() {
                return Err(Error::Reported {
                    code: 1,
                    message: format!("no public port '{private}' published for {}", args.id),
                });
            }
            for m in found {
                outln!("{}", host_address(m));
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_takes_ports_ranges_and_protocols() {
        assert_eq!(
            parse_exposed("80").map(|e| e.to_string()),
            Ok("80/tcp".into())
        );
        assert_eq!(
            parse_exposed("53/udp").map(|e| e.to_string()),
            Ok("53/udp".into())
        );
        assert_eq!(parse_expose("8000-8002").map(|v| v.len()), Ok(3));
        assert!(parse_expose("0").is_err());
        assert!(parse_expose("80/icmp").is_err());
        assert!(parse_expose("90-80").is_err());
        assert!(parse_exposed("80-81").is_err());
    }

    #[test]
    fn mappings_read_as_dockers_ps_column() {
        let m = |ip: Option<&str>, host, container, protocol: &str| PortMapping {
            host_ip: ip.map(|i| i.parse().expect("ip")),
            host_port: host,
            container_port: container,
            protocol: protocol.to_owned(),
        };
        assert_eq!(
            column(&[
                m(None, 8080, 80, "tcp"),
                m(Some("127.0.0.1"), 53, 53, "udp")
            ]),
            // Sorted by container port.
            "127.0.0.1:53->53/udp, 0.0.0.0:8080->80/tcp"
        );
        assert_eq!(column(&[m(Some("::1"), 1, 2, "tcp")]), "[::1]:1->2/tcp");
    }

    #[test]
    fn a_free_port_is_in_the_range_and_not_taken() {
        let (low, high) = ephemeral_range();
        let port = free_host_port("tcp", &HashSet::new()).expect("a free port");
        assert!((low..=high).contains(&port));
        let taken: HashSet<(u16, String)> = (low..=high)
            .filter(|p| *p != port)
            .map(|p| (p, "tcp".to_owned()))
            .collect();
        // Only one is left: it is found, whatever the random start.
        assert_eq!(free_host_port("tcp", &taken), Some(port));
    }
}
