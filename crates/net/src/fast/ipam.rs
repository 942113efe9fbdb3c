//! Leases kept as the `host-local` plugin keeps them, in the same directory and format, so
//! that the CNI path and the fast path never hand out the same address and either can
//! release what the other leased: `DATA_DIR/NETWORK/IP` holding `ID\r\nIFNAME`, made with
//! `O_EXCL`; `last_reserved_ip.0` the last address handed out (the next search starts
//! after it); every change under an exclusive `flock` of `DATA_DIR/NETWORK/lock`.

use std::fs::File;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use rscni_types::ipnet::Ipv4Net;

use crate::error::io;
use crate::{Error, Result};

/// host-local's default `dataDir`.
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// host-local's separator of the lease file's two lines.
const LINE_BREAK: &str = "\r\n";
/// The last address handed out of the first (only) range set.
const LAST_RESERVED: &str = "last_reserved_ip.0";

/// The lease directory of `network` (host-local's `dataDir`, else its default).
pub(crate) fn lease_dir(data_dir: Option<&Path>, network: &str) -> PathBuf {
    data_dir
        .unwrap_or(Path::new(DEFAULT_DATA_DIR))
        .join(network)
}

/// The lease directory, locked as host-local locks it, while this lives.
struct Locked {
    dir: PathBuf,
    _lock: Flock<File>,
}

fn lock(dir: &Path) -> Result<Locked> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io("cannot make", dir))?;
    let path = dir.join("lock");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io("cannot open", &path))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| io("cannot lock", &path)(e.into()))?;
    Ok(Locked {
        dir: dir.to_owned(),
        _lock: lock,
    })
}

/// Leases an address of `subnet` (between its first and last host, the gateway left out)
/// to `id`/`ifname`: `wanted` when given, else the first free one after the last handed
/// out, round the range.
pub(crate) fn reserve(
    dir: &Path,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    id: &str,
    ifname: &str,
    wanted: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let leases = lock(dir)?;
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()).saturating_sub(1);
    if let Some(ip) = wanted {
        let n = u32::from(ip);
        if n < first || n > last || ip == gateway {
            return Err(Error::Invalid(format!(
                "requested IP address {ip} is not available in range set {subnet}"
            )));
        }
        return match leases.take(ip, id, ifname)? {
            true => Ok(ip),
            false => Err(Error::Invalid(format!(
                "requested IP address {ip} is not available in range set {subnet}"
            ))),
        };
    }
    let after = std::fs::read_to_string(leases.dir.join(LAST_RESERVED))
        .ok()
        .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|n| (first..=last).contains(n))
        .unwrap_or(last);
    let count = last.saturating_sub(first) + 1;
    for step in 1..=count {
        let n = first + (after - first + step) % count;
        let ip = Ipv4Addr::from(n);
        if ip != gateway && leases.take(ip, id, ifname)? {
            let path = leases.dir.join(LAST_RESERVED);
            std::fs::write(&path, ip.to_string()).map_err(io("cannot write", &path))?;
            return Ok(ip);
        }
    }
    Err(Error::Invalid(format!(
        "no IP addresses available in range set: {subnet}"
    )))
}

impl Locked {
    /// Makes the lease file of `ip`; false when it exists (leased).
    fn take(&self, ip: Ipv4Addr, id: &str, ifname: &str) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match file {
            Ok(mut f) => {
                f.write_all(format!("{}{LINE_BREAK}{ifname}", id.trim()).as_bytes())
                    .map_err(io("cannot write", &path))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("cannot make", &path)(e)),
        }
    }
}

/// Releases every lease of `id`/`ifname` (and of `id` alone, host-local's older format).
pub(crate) fn release(dir: &Path, id: &str, ifname: &str) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let leases = lock(dir)?;
    let ours = format!("{}{LINE_BREAK}{ifname}", id.trim());
    let entries = std::fs::read_dir(&leases.dir).map_err(io("cannot read", &leases.dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.parse::<std::net::IpAddr>().is_err() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.trim() == ours || text.trim() == id.trim() {
            std::fs::remove_file(entry.path()).map_err(io("cannot remove", &entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_host_locals_files_round_the_range() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("net");
        let subnet: Ipv4Net = "10.9.0.0/29".parse().expect("net");
        let gw: Ipv4Addr = "10.9.0.1".parse().expect("ip");
        let a = reserve(&dir, subnet, gw, "a", "eth0", None).expect("a");
        assert_eq!(a.to_string(), "10.9.0.2");
        assert_eq!(
            std::fs::read_to_string(dir.join("10.9.0.2")).expect("lease"),
            "a\r\neth0"
        );
        let b = reserve(&dir, subnet, gw, "b", "eth0", None).expect("b");
        assert_eq!(b.to_string(), "10.9.0.3");
        release(&dir, "a", "eth0").expect("release");
        assert!(!dir.join("10.9.0.2").exists());
        // The next search starts after the last handed out: .4, .5, .6, then .2 again.
        for want in ["10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.0.2"] {
            let ip = reserve(&dir, subnet, gw, "c", "eth0", None).expect("c");
            assert_eq!(ip.to_string(), want);
        }
        let full = reserve(&dir, subnet, gw, "d", "eth0", None).expect_err("full");
        assert!(
            full.to_string().contains("no IP addresses available"),
            "{full}"
        );
        reserve(&dir, subnet, gw, "d", "eth0", Some(gw)).expect_err("the gateway");
        reserve(&dir, subnet, gw, "d", "eth0", Some(b)).expect_err("taken");
    }
}
