//! A pod's published host ports, held for its life.
//!
//! Before anything of the pod is made, every `-p`/`hostPort` is claimed in the host's
//! network namespace ([`peapod_net::ports::claim`]: a port some socket has, another pod's of
//! any state root included, is refused naming its holder). Once the infra process runs, the
//! sockets go to a process of their own, the pod's port holder, which keeps them (never
//! accepting) until the infra process is gone, as conmon holds a podman container's ports.
//!
//! Why a process of its own: the infra process lives exactly as long as the pod, but it is
//! made in the pod's namespaces by `clone3` from peapod, and descriptors reach it only at
//! fixed numbers (`preserve_fds`), which peapod's own open files (the pod's lock) occupy; a
//! pin is a bind mount, which holds a namespace, not a socket; and only a played pod has a
//! monitor. The holder waits on a pidfd of the infra process (while it is still our
//! unreaped child, so no PID reuse can fool it), sits in the infra process's cgroup (so
//! that `pod stop` ends it with the pod's processes, and a refusal can name the pod), and is
//! recorded in `pod.json` (`port_holder`), so that `pod stop` waits for it to be gone: the
//! ports are free when `pod rm` returns. A peapod killed before the holder has them takes
//! them with it (they are its descriptors); one killed after leaves a pod whose infra
//! process, and so whose holder, ends when the next command reaps it.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use peapod_net::ports::HeldPort;
use peapod_runtime::Error as RuntimeError;
use peapod_state::ProcessIdentity;

use crate::network::NetworkOptions;
use crate::PodRecord;

/// Claims every host port the pod publishes; the options with each host port 0 (docker's
/// `-P`: any free one) replaced by the port the kernel picked.
pub(crate) fn claim(
    options: &NetworkOptions,
) -> Result<(Vec<HeldPort>, NetworkOptions), RuntimeError> {
    let ports = options
        .ports
        .iter()
        .map(|p| (p.host_ip, p.host_port, p.protocol.as_str()));
    let held = peapod_net::ports::claim_all(ports)
        .map_err(|e| RuntimeError::runtime(anyhow::Error::new(e)))?;
    let mut options = options.clone();
    for (mapping, held) in options.ports.iter_mut().zip(&held) {
        mapping.host_port = held.port();
    }
    Ok((held, options))
}

/// Hands the claimed ports to the pod's port holder (see the module doc), which keeps them
/// while the infra process of `record` lives; records it.
pub(crate) fn hold(held: Vec<HeldPort>, record: &mut PodRecord) -> Result<(), RuntimeError> {
    let Some(infra) = record.infra.filter(|_| !held.is_empty()) else {
        return Ok(());
    };
    let sockets: Vec<OwnedFd> = held.into_iter().map(HeldPort::into_fd).collect();
    let pidfd = peapod_runtime::daemon::pidfd_open(infra.pid);
    let mut keep: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    keep.extend(pidfd.as_ref().map(|p| p.as_raw_fd()));
    let infra_cgroup = crate::infra::cgroup_paths(record)
        .and_then(|paths| peapod_runtime::cgroups::open(&paths))
        .ok()
        .flatten();
    let pid = peapod_runtime::daemon::spawn(c"peapod-ports", &keep, move || {
        if let Some(cgroup) = &infra_cgroup {
            let _ = cgroup.add(std::process::id());
        }
        wait_for_exit(infra, pidfd);
        drop(sockets);
        0
    })?;
    record.port_holder = ProcessIdentity::of(pid.as_raw());
    Ok(())
}

/// Returns once `process` has exited.
fn wait_for_exit(process: ProcessIdentity, pidfd: Option<OwnedFd>) {
    match pidfd {
        Some(pidfd) => loop {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(n) if n > 0 => return,
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => return,
            }
        },
        // Before Linux 5.3: the process's identity, once a second.
        None => {
            while process.is_alive() {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_port_0_becomes_the_free_port_claimed() {
        let mapping = |host_port, protocol: &str| peapod_net::PortMapping {
            host_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            host_port,
            container_port: 80,
            protocol: protocol.to_owned(),
        };
        let options = NetworkOptions {
            ports: vec![mapping(0, "tcp"), mapping(0, "udp")],
            ..NetworkOptions::default()
        };
        let (held, resolved) = claim(&options).expect("claim");
        assert_eq!(held.len(), 2);
        for (held, mapping) in held.iter().zip(&resolved.ports) {
            assert_ne!(mapping.host_port, 0);
            assert_eq!(mapping.host_port, held.port());
            assert_eq!(mapping.protocol, held.protocol());
        }
    }
}
