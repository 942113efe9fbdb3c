//! User-mode networks for rootless pods: `pasta` (passt) or `slirp4netns`, a process of the
//! caller's that is started against the pod's network namespace (and the user namespace
//! owning it), gives it an interface with [`ADDRESS`], a default route through [`GATEWAY`]
//! and a DNS forwarder at [`DNS`] (slirp4netns's fixed addresses, which pasta is told to
//! use too), and forwards the published ports from the host's address to the pod. Neither
//! needs any privilege; the caller kills the process (by the pid [`start`] returns) when
//! the pod goes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Error, PortMapping, Result};

/// The pod's address on a user-mode network.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// Its prefix length.
pub const PREFIX: u8 = 24;
/// Its gateway (the host, as seen from the pod; loopback services are not reachable).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Its resolver: forwarded to the host's.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// How long the network helper may take to set the namespace up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which user-mode network program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `pasta`, of the passt package.
    Pasta,
    /// `slirp4netns`.
    Slirp4netns,
}

impl Program {
    /// The program's name (as `--network` takes it).
    pub fn name(self) -> &'static str {
        match self {
            Program::Pasta => "pasta",
            Program::Slirp4netns => "slirp4netns",
        }
    }

    /// The program's path in `$PATH`, if it is installed.
    pub fn find(self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(self.name()))
            .find(|file| file.is_file())
    }

    /// pasta where it is installed, else slirp4netns, as podman picks; `None` when neither is.
    pub fn default_available() -> Option<Program> {
        [Program::Pasta, Program::Slirp4netns]
            .into_iter()
            .find(|p| p.find().is_some())
    }
}

/// The namespaces the helper works on, by their `/proc/PID/ns` files (the infra process's).
#[derive(Debug, Clone)]
pub struct Target {
    /// The network namespace.
    pub netns: PathBuf,
    /// The user namespace that owns it, when it is not the caller's.
    pub userns: Option<PathBuf>,
}

/// Starts `program` against `target`, forwarding `ports` from the host, with its files
/// (pid file, API socket) in `dir`; returns once the namespace is set up, with the pid of
/// the process that keeps the network going (in its own process group, detached from the
/// caller's terminal). On failure nothing of it is left running.
pub fn start(program: Program, target: &Target, ports: &[PortMapping], dir: &Path) -> Result<i32> {
    let binary = program.find().ok_or_else(|| {
        Error::Invalid(format!(
            "--network {0}: {0} is not installed (Debian: {1})",
            program.name(),
            match program {
                Program::Pasta => "apt install passt",
                Program::Slirp4netns => "apt install slirp4netns",
            }
        ))
    })?;
    match program {
        Program::Pasta => pasta(&binary, target, ports, dir),
        Program::Slirp4netns => slirp4netns(&binary, target, ports, dir),
    }
}

/// pasta's `-t`/`-u` value of one published port: `[ADDR/]HOST_PORT:POD_PORT`.
fn pasta_port(port: &PortMapping) -> String {
    let address = port.host_ip.map(|ip| format!("{ip}/")).unwrap_or_default();
    format!("{address}{}:{}", port.host_port, port.container_port)
}

/// The arguments of pasta: the fixed addresses, no automatic forwarding either way (only
/// the published ports; the host's loopback is not reachable from the pod).
fn pasta_args(target: &Target, ports: &[PortMapping], pid_file: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--config-net",
        "--quiet",
        "--no-map-gw",
        "-a",
        &ADDRESS.to_string(),
        "-n",
        &PREFIX.to_string(),
        "-g",
        &GATEWAY.to_string(),
        "--dns-forward",
        &DNS.to_string(),
        "-T",
        "none",
        "-U",
        "none",
    ]
    .map(str::to_owned)
    .to_vec();
    for (flag, protocol) in [("-t", "tcp"), ("-u", "udp")] {
        let mut any = false;
        for port in ports.iter().filter(|p| p.protocol == protocol) {
            args.extend([flag.to_owned(), pasta_port(port)]);
            any = true;
        }
        if !any {
            args.extend([flag.to_owned(), "none".to_owned()]);
        }
    }
    args.extend(["-P".to_owned(), pid_file.display().to_string()]);
    args.extend(["--netns".to_owned(), target.netns.display().to_string()]);
    if let Some(userns) = &target.userns {
        args.extend(["--userns".to_owned(), userns.display().to_string()]);
    }
    args
}

/// pasta sets the namespace up, then forks into the background and exits: its exit status
/// says whether it worked, and its pid file names the process that stays.
fn pasta(binary: &Path, target: &Target, ports: &[PortMapping], dir: &Path) -> Result<i32> {
    if let Some(p) = ports
        .iter()
        .find(|p| p.protocol != "tcp" && p.protocol != "udp")
    {
        return Err(Error::Invalid(format!(
            "--network pasta forwards tcp and udp, not {}",
            p.protocol
        )));
    }
    let pid_file = dir.join(PASTA_PID);
    let output = Command::new(binary)
        .args(pasta_args(target, ports, &pid_file))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .output()
        .map_err(crate::error::io("cannot run", binary))?;
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if !output.status.success() {
        if let Some(pid) = pid {
            kill(pid);
        }
        return Err(Error::Invalid(format!(
            "pasta failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    pid.ok_or_else(|| Error::Invalid(format!("pasta wrote no pid to {}", pid_file.display())))
}

/// slirp4netns stays in the foreground: it is started in a process group of its own and
/// says it is ready on a pipe; the ports go through its API socket.
fn slirp4netns(binary: &Path, target: &Target, ports: &[PortMapping], dir: &Path) -> Result<i32> {
    let socket = dir.join("slirp4netns.sock");
    let (ready_read, ready_write) =
        nix::unistd::pipe().map_err(|e| Error::Invalid(format!("cannot make a pipe: {e}")))?;
    let mut command = Command::new(binary);
    command
        .args(["--configure", "--mtu", "65520", "--disable-host-loopback"])
        .arg("--api-socket")
        .arg(&socket)
        .args(["--ready-fd", "3"]);
    if let Some(userns) = &target.userns {
        command.arg("--userns-path").arg(userns);
    }
    command
        .args(["--netns-type", "path"])
        .arg(&target.netns)
        .arg(crate::usermode::INTERFACE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let ready_fd = ready_write.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it gives the child the pipe as descriptor 3
    // (without close-on-exec) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(ready_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(crate::error::io("cannot run", binary))?;
    drop(ready_write);
    let pid = child.id() as i32;
    // As pasta's own: for [`leftover`], should the caller die before recording it.
    let _ = std::fs::write(dir.join(SLIRP4NETNS_PID), pid.to_string());
    let ready = wait_ready(ready_read)
        .and_then(|()| ports.iter().try_for_each(|port| add_hostfwd(&socket, port)));
    if let Err(e) = ready {
        kill(pid);
        let mut child = child;
        let _ = child.wait();
        return Err(e);
    }
    Ok(pid)
}

/// The pid files of the helpers, in the directory [`start`] was given.
const PASTA_PID: &str = "pasta.pid";
const SLIRP4NETNS_PID: &str = "slirp4netns.pid";

/// The helper [`start`] left running for `dir` when its caller died before recording its
/// pid: the pid in its pid file, if that process is still a helper started for `dir` (its
/// command line names a file in `dir`, so a reused pid is never taken for it).
pub fn leftover(dir: &Path) -> Option<i32> {
    let dir_text = dir.to_str()?;
    [PASTA_PID, SLIRP4NETNS_PID].into_iter().find_map(|file| {
        let pid: i32 = std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let named = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg.starts_with(dir_text.as_bytes()) && arg.len() > dir_text.len());
        named.then_some(pid)
    })
}

/// The interface slirp4netns makes in the pod's namespace.
pub const INTERFACE: &str = "tap0";

/// Waits for slirp4netns to write to its ready pipe (it writes `1` once configured).
fn wait_ready(pipe: OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let fd = PollFd::new(pipe.as_fd(), PollFlags::POLLIN);
    let timeout = PollTimeout::try_from(READY_TIMEOUT.as_millis() as i32)
        .map_err(|e| Error::Invalid(format!("timeout: {e}")))?;
    match poll(&mut [fd], timeout) {
        Ok(n) if n > 0 => {}
        _ => {
            return Err(Error::Invalid(format!(
                "slirp4netns did not set the network up within {READY_TIMEOUT:?}"
            )))
        }
    }
    let mut byte = [0u8; 1];
    let mut file = std::fs::File::from(pipe);
    match file.read(&mut byte) {
        Ok(1) => Ok(()),
        _ => Err(Error::Invalid(
            "slirp4netns exited before the network was up".to_owned(),
        )),
    }
}

/// Asks slirp4netns (on its API socket) to forward one port.
fn add_hostfwd(socket: &Path, port: &PortMapping) -> Result<()> {
    let host_addr = port.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": port.protocol,
            "host_addr": host_addr.to_string(),
            "host_port": port.host_port,
            "guest_port": port.container_port,
        }
    });
    let failed = |what: String| Error::Invalid(format!("slirp4netns: port {}: {what}", port));
    let mut stream = UnixStream::connect(socket).map_err(|e| failed(e.to_string()))?;
    stream
        .set_read_timeout(Some(READY_TIMEOUT))
        .map_err(|e| failed(e.to_string()))?;
    stream
        .write_all(request.to_string().as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| failed(e.to_string()))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| failed(e.to_string()))?;
    let reply: serde_json::Value =
        serde_json::from_str(&reply).map_err(|e| failed(format!("{e}: {reply:?}")))?;
    match reply.get("error") {
        Some(error) => Err(failed(error.to_string())),
        None => Ok(()),
    }
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasta_forwards_only_the_published_ports() {
        let target = Target {
            netns: "/proc/7/ns/net".into(),
            userns: Some("/proc/7/ns/user".into()),
        };
        let ports = [
            "127.0.0.1:8080:80".parse().unwrap(),
            "53:53/udp".parse().unwrap(),
        ];
        let args = pasta_args(&target, &ports, Path::new("/d/pasta.pid")).join(" ");
        assert!(args.contains("-t 127.0.0.1/8080:80"), "{args}");
        assert!(args.contains("-u 53:53"), "{args}");
        assert!(args.contains("-T none -U none"), "{args}");
        assert!(
            args.ends_with("--netns /proc/7/ns/net --userns /proc/7/ns/user"),
            "{args}"
        );
        let none = pasta_args(&target, &[], Path::new("/p")).join(" ");
        assert!(
            none.contains("-t none") && none.contains("-u none"),
            "{none}"
        );
    }
}
