//! Host ports a pod publishes: checked and held, as podman's conmon and docker's
//! docker-proxy hold theirs.
//!
//! The `portmap` plugin only writes DNAT rules: by itself it neither checks that the port is
//! free (a second pod, or a host service listening on it, is silently shadowed) nor keeps
//! anything else from binding it later. [`claim`] binds the port in the caller's (the host's)
//! network namespace, a listening socket for TCP and a bound one for UDP, never accepted nor
//! read: a port some socket already has fails with "address already in use" naming who holds
//! it when it can be found ([`holder`]: the process, and the pod when it is a peapod pod's).
//! Whoever keeps the [`HeldPort`] keeps the port: nothing else can bind it (another pod of any
//! state root, which claims the same way, included) until that socket is closed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[derive(Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
}

/// A port that could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Another socket has it.
    #[error("cannot publish {address}/{protocol}: address already in use{}", holder_text(.holder))]
    InUse {
        /// The address and port asked for.
        address: SocketAddr,
        /// `tcp` or `udp`.
        protocol: String,
        /// Who holds it, when found: `pod web (process 1234)`, `process 1234 (nginx)`.
        holder: Option<String>,
    },
    /// A protocol peapod cannot hold a port of.
    #[error("cannot publish port {port}/{protocol}: only tcp and udp ports are published")]
    Protocol {
        /// The port.
        port: u16,
        /// The protocol asked for.
        protocol: String,
    },
    /// Any other failure of the socket calls.
    #[error("cannot publish {address}/{protocol}: {source}")]
    Os {
        /// The address and port asked for.
        address: SocketAddr,
        /// `tcp` or `udp`.
        protocol: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn holder_text(holder: &Option<String>) -> String {
    holder
        .as_ref()
        .map(|h| format!(" (held by {h})"))
        .unwrap_or_default()
}

/// A host port bound by [`claim`]: nothing else binds it while this socket is open.
#[derive(Debug)]
pub struct HeldPort {
    socket: OwnedFd,
    address: SocketAddr,
    protocol: &'static str,
}

impl HeldPort {
    /// The port: the one asked for, or the one the kernel picked for port 0.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address and port it is bound to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `tcp` or `udp`.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// The socket, for a process that is to hold the port.
    pub fn into_fd(self) -> OwnedFd {
        self.socket
    }
}

impl AsFd for HeldPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Binds `port` of `host_ip` (all IPv4 addresses when `None`) for `protocol` (`tcp` or
/// `udp`) in this process's network namespace, and for TCP listens (never accepting); port
/// 0 takes a free one (see [`HeldPort::port`]). A port another socket has is refused with
/// [`PortError::InUse`], naming its holder where found.
pub fn claim(host_ip: Option<IpAddr>, port: u16, protocol: &str) -> Result<HeldPort, PortError> {
    let ip = host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let address = SocketAddr::new(ip, port);
    let (kind, protocol) = match protocol {
        "tcp" => (Kind::Tcp, "tcp"),
        "udp" => (Kind::Udp, "udp"),
        other => {
            return Err(PortError::Protocol {
                port,
                protocol: other.to_owned(),
            })
        }
    };
    let os = |source| PortError::Os {
        address,
        protocol: protocol.to_owned(),
        source,
    };
    // std's: close-on-exec; for TCP SO_REUSEADDR, as docker and podman (a port whose last
    // connections linger in TIME_WAIT is free; a listener still conflicts), and a listen;
    // for UDP none, since it would let two sockets share the port.
    let bound: std::io::Result<(OwnedFd, SocketAddr)> = match kind {
        Kind::Tcp => std::net::TcpListener::bind(address)
            .and_then(|l| Ok((l.local_addr()?, OwnedFd::from(l))))
            .map(|(a, s)| (s, a)),
        Kind::Udp => std::net::UdpSocket::bind(address)
            .and_then(|u| Ok((u.local_addr()?, OwnedFd::from(u))))
            .map(|(a, s)| (s, a)),
    };
    let (socket, local) = match bound {
        Ok(bound) => bound,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(PortError::InUse {
                address,
                protocol: protocol.to_owned(),
                holder: holder(port, protocol),
            })
        }
        Err(e) => return Err(os(e)),
    };
    let port = local.port();
    Ok(HeldPort {
        socket,
        address: SocketAddr::new(ip, port),
        protocol,
    })
}

/// Claims every port of `ports` (`(host IP, port, protocol)`); on the first refusal those
/// claimed are let go and the refusal returned.
pub fn claim_all<'a>(
    ports: impl IntoIterator<Item = (Option<IpAddr>, u16, &'a str)>,
) -> Result<Vec<HeldPort>, PortError> {
    ports
        .into_iter()
        .map(|(ip, port, protocol)| claim(ip, port, protocol))
        .collect()
}

/// Who holds `port` for `protocol` in this network namespace: the process with a socket
/// bound to it (`ss -lp` finds it the same way), and the peapod pod its cgroup says it is
/// of. `None` when no process of ours to see has it (another user's, in a rootless run).
pub fn holder(port: u16, protocol: &str) -> Option<String> {
    let inodes = socket_inodes(port, protocol);
    if inodes.is_empty() {
        return None;
    }
    let pid = process_with_socket(&inodes)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let comm = comm.trim();
    Some(match pod_of(pid) {
        Some(pod) => format!("{pod} (process {pid})"),
        None => format!("process {pid} ({comm})"),
    })
}

/// The inodes of the sockets bound to `port` (listening, for TCP) in `/proc/net/*`.
fn socket_inodes(port: u16, protocol: &str) -> Vec<u64> {
    // `st` 0A is LISTEN; a bound UDP socket is 07 (CLOSE).
    let state = if protocol == "tcp" { "0A" } else { "07" };
    let mut inodes = Vec::new();
    for table in [protocol.to_owned(), format!("{protocol}6")] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(st), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *st == state {
                inodes.extend(inode.parse::<u64>().ok().filter(|i| *i != 0));
            }
        }
    }
    inodes
}

/// A process with one of `inodes` among its descriptors.
fn process_with_socket(inodes: &[u64]) -> Option<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let processes = std::fs::read_dir("/proc").ok()?;
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// `pod NAME` (or `container ID` for a lone container's network pod) when process `pid` is
/// in a peapod pod's cgroup (`.../peapod/pod:NAME:TAG/...`, TAG its state root's).
fn pod_of(pid: u32) -> Option<String> {
    pod_in(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// [`pod_of`] from the text of `/proc/PID/cgroup`.
fn pod_in(text: &str) -> Option<String> {
    let name = text
        .lines()
        .filter_map(|line| line.split_once("/pod:").map(|(_, rest)| rest))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .map(|dir| dir.rsplit_once(':').map_or(dir, |(name, _tag)| name))
        .next()?;
    Some(match name.strip_prefix("net-") {
        Some(container) => format!("container {container}"),
        None => format!("pod {name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_named_from_its_cgroup_without_its_state_roots_tag() {
        let text = "0::/user.slice/peapod/pod:web.1:0a1b2c3d/infra\n";
        assert_eq!(pod_in(text).as_deref(), Some("pod web.1"));
        let text = "12:pids:/peapod/pod:net-abc:0a1b2c3d\n0::/peapod/pod:net-abc:0a1b2c3d\n";
        assert_eq!(pod_in(text).as_deref(), Some("container abc"));
        assert_eq!(pod_in("0::/peapod/web\n"), None);
    }

    /// A free TCP port of 127.0.0.1 below the kernel's ephemeral range, claimed: no port-0
    /// bind or outgoing connection of a test running beside this one can take it in the
    /// moment between its release and its second claim, as one from the range could.
    fn a_port_no_one_is_given(localhost: Option<IpAddr>) -> HeldPort {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("the ephemeral port range");
        let first: u16 = range
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("the range's first port");
        // Start at a place of this process's own, so that two runs side by side part ways.
        let span = first.saturating_sub(1024).max(1);
        let start = 1024 + (std::process::id() % u32::from(span)) as u16;
        (0..span.min(500))
            .map(|i| 1024 + (start - 1024 + i) % span)
            .find_map(|port| claim(localhost, port, "tcp").ok())
            .expect("a free port below the ephemeral range")
    }

    #[test]
    fn a_claimed_port_is_refused_to_a_second_claim_and_free_once_let_go() {
        let localhost = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let held = a_port_no_one_is_given(localhost);
        let port = held.port();
        assert_ne!(port, 0);
        let err = claim(localhost, port, "tcp").expect_err("taken");
        let text = err.to_string();
        assert!(text.contains("address already in use"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}/tcp")), "{text}");
        // This very process holds it.
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        // The wildcard address conflicts with a listener on one address.
        assert!(claim(None, port, "tcp").is_err());
        drop(held);
        claim(localhost, port, "tcp").expect("free again");
    }

    #[test]
    fn udp_ports_are_held_too_and_other_protocols_refused() {
        let localhost = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let held = claim(localhost, 0, "udp").expect("a free port");
        let err = claim(localhost, held.port(), "udp").expect_err("taken");
        assert!(matches!(err, PortError::InUse { .. }), "{err}");
        assert!(matches!(
            claim(localhost, 80, "sctp"),
            Err(PortError::Protocol { .. })
        ));
    }
}
