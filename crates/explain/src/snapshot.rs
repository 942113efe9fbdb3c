//! One process as the kernel describes it under `/proc/PID`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nix::unistd::Pid;
use peapod_ns::{Namespace, NamespaceId};
use serde::Serialize;

use crate::{Error, Result};

/// What `/proc/PID` says of a process, read at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Its PID on the host (in the reader's PID namespace).
    pub pid: i32,
    /// Its command line, space-joined.
    pub command: String,
    /// Its PID in each nested PID namespace, outermost first (`NSpid`).
    pub nspid: Vec<i32>,
    /// Its real uid as the reader sees it.
    pub uid: u32,
    /// Capability sets (`CapEff`, `CapPrm`, `CapBnd`, `CapAmb`, `CapInh`).
    pub cap_effective: u64,
    /// See [`Snapshot::cap_effective`].
    pub cap_permitted: u64,
    /// See [`Snapshot::cap_effective`].
    pub cap_bounding: u64,
    /// See [`Snapshot::cap_effective`].
    pub cap_ambient: u64,
    /// See [`Snapshot::cap_effective`].
    pub cap_inheritable: u64,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
    /// `Seccomp`: 0 none, 1 strict, 2 filter.
    pub seccomp_mode: u8,
    /// `Seccomp_filters`: how many filters are stacked.
    pub seccomp_filters: u32,
    /// The inode of each namespace, by its `/proc/PID/ns` name.
    pub namespaces: BTreeMap<String, u64>,
    /// `uid_map` lines: inside, outside, count.
    pub uid_map: Vec<[u64; 3]>,
    /// `gid_map` lines.
    pub gid_map: Vec<[u64; 3]>,
    /// Where its `/` is on the host (`/proc/PID/root`).
    pub root: PathBuf,
    /// Its mount table: type, source, target and options of each mount, in order.
    pub mounts: Vec<[String; 4]>,
    /// Its cgroup in each hierarchy (`/proc/PID/cgroup`).
    pub cgroups: Vec<CgroupLine>,
    /// The network interfaces of its network namespace.
    pub interfaces: Vec<String>,
    /// The addresses in its network namespace (local IPv4 ones, and IPv6 with interface).
    pub addresses: Vec<String>,
}

/// One line of `/proc/PID/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLine {
    /// The hierarchy: its controllers (`memory`, `cpu,cpuacct`), `name=systemd`, or empty
    /// for the unified one.
    pub hierarchy: String,
    /// The path, relative to the root the reader's cgroup namespace sees.
    pub path: String,
}

/// The limits in force and the usage now of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    /// Memory limit in bytes (`None`: unlimited).
    pub memory_limit: Option<u64>,
    /// Memory in use, in bytes.
    pub memory_usage: u64,
    /// CPU quota as a number of CPUs (`None`: unlimited).
    pub cpus: Option<f64>,
    /// CPU time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Pids limit (`None`: unlimited).
    pub pids_limit: Option<u64>,
    /// Tasks in the cgroup.
    pub pids_current: u64,
}

impl Limits {
    /// The limits and usage of `cgroup`.
    pub fn of(cgroup: &peapod_cgroups::Cgroup) -> Limits {
        let stats = cgroup.stats().unwrap_or_default();
        // v1 says "no limit" with the largest page-aligned i64 (9223372036854771712), v2 with
        // `max`: anything from 2^62 up is none.
        let memory_limit =
            (stats.memory_limit != 0 && stats.memory_limit < 1 << 62).then_some(stats.memory_limit);
        Limits {
            memory_limit,
            memory_usage: stats.memory_usage,
            cpus: cpus(cgroup),
            cpu_usage_ns: stats.cpu_usage_ns,
            pids_limit: (stats.pids_limit != 0).then_some(stats.pids_limit),
            pids_current: stats.pids_current,
        }
    }
}

/// The CFS quota as a number of CPUs: v2 `cpu.max` (`QUOTA PERIOD`), v1 `cpu.cfs_quota_us`
/// over `cpu.cfs_period_us`.
fn cpus(cgroup: &peapod_cgroups::Cgroup) -> Option<f64> {
    let read = |name: &str| {
        let path = cgroup.file("cpu", name)?;
        std::fs::read_to_string(path).ok()
    };
    let (quota, period) = if cgroup.is_v2() {
        let max = read("cpu.max")?;
        let mut parts = max.split_whitespace();
        (parts.next()?.to_owned(), parts.next()?.to_owned())
    } else {
        (read("cpu.cfs_quota_us")?, read("cpu.cfs_period_us")?)
    };
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

impl Snapshot {
    /// Reads process `pid`. Parts the reader may not see (another user's process, without
    /// root) are left empty; a process that is gone is an error.
    pub fn of(pid: i32) -> Result<Snapshot> {
        let dir = format!("/proc/{pid}");
        let status =
            std::fs::read_to_string(format!("{dir}/status")).map_err(|source| {
                match source.kind() {
                    std::io::ErrorKind::NotFound => Error::Gone(pid),
                    _ => Error::Read {
                        path: format!("{dir}/status"),
                        source,
                    },
                }
            })?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let hex = |name: &str| u64::from_str_radix(&field(name), 16).unwrap_or(0);
        let read =
            |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_default();
        let command = std::fs::read(format!("{dir}/cmdline"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut namespaces = BTreeMap::new();
        for kind in Namespace::ALL {
            if let Ok(id) = NamespaceId::of(Some(Pid::from_raw(pid)), kind) {
                namespaces.insert(kind.proc_name().to_owned(), id.inode);
            }
        }
        Ok(Snapshot {
            pid,
            command,
            nspid: field("NSpid")
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            uid: field("Uid")
                .split_whitespace()
                .next()
                .and_then(|u| u.parse().ok())
                .unwrap_or(0),
            cap_effective: hex("CapEff"),
            cap_permitted: hex("CapPrm"),
            cap_bounding: hex("CapBnd"),
            cap_ambient: hex("CapAmb"),
            cap_inheritable: hex("CapInh"),
            no_new_privs: field("NoNewPrivs") == "1",
            seccomp_mode: field("Seccomp").parse().unwrap_or(0),
            seccomp_filters: field("Seccomp_filters").parse().unwrap_or(0),
            namespaces,
            uid_map: id_map(&read("uid_map")),
            gid_map: id_map(&read("gid_map")),
            root: std::fs::read_link(format!("{dir}/root")).unwrap_or_default(),
            mounts: read("mountinfo").lines().filter_map(mount_line).collect(),
            cgroups: read("cgroup").lines().filter_map(cgroup_line).collect(),
            interfaces: interfaces(&read("net/dev")),
            addresses: addresses(&read("net/fib_trie"), &read("net/if_inet6")),
        })
    }

    /// Its PID inside its own (innermost) PID namespace.
    pub fn inner_pid(&self) -> i32 {
        self.nspid.last().copied().unwrap_or(self.pid)
    }

    /// The PIDs (on the host) of every process in the PID namespace of `pid`, sorted.
    pub fn pids_in_pid_namespace_of(pid: i32) -> Vec<i32> {
        let Ok(theirs) = NamespaceId::of(Some(Pid::from_raw(pid)), Namespace::Pid) else {
            return vec![pid];
        };
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                NamespaceId::of(Some(Pid::from_raw(*p)), Namespace::Pid).ok() == Some(theirs)
            })
            .collect();
        pids.sort_unstable();
        pids
    }
}

fn id_map(text: &str) -> Vec<[u64; 3]> {
    text.lines()
        .filter_map(|l| {
            let n: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (n.len() == 3).then(|| [n[0], n[1], n[2]])
        })
        .collect()
}

/// `ID PARENT MAJ:MIN ROOT TARGET OPTIONS ... - TYPE SOURCE SUPER` as type, source, target,
/// options.
fn mount_line(line: &str) -> Option<[String; 4]> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    Some([
        right.next()?.to_owned(),
        right.next()?.to_owned(),
        left.get(4)?.to_string(),
        left.get(5)?.to_string(),
    ])
}

fn cgroup_line(line: &str) -> Option<CgroupLine> {
    let mut parts = line.splitn(3, ':');
    let (_, hierarchy, path) = (parts.next()?, parts.next()?, parts.next()?);
    Some(CgroupLine {
        hierarchy: hierarchy.to_owned(),
        path: path.to_owned(),
    })
}

/// The interface names of `/proc/PID/net/dev` (after its two header lines).
fn interfaces(dev: &str) -> Vec<String> {
    dev.lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_owned()))
        .collect()
}

/// The local IPv4 addresses of `fib_trie` (a `|-- ADDR` line followed by `/32 host LOCAL`)
/// and the IPv6 ones of `if_inet6`, each once.
fn addresses(fib_trie: &str, if_inet6: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last = None;
    for line in fib_trie.lines() {
        let line = line.trim_start_matches([' ', '|', '+', '-']);
        if line.contains("/32 host LOCAL") {
            if let Some(addr) = last.take() {
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        } else if line.chars().next().is_some_and(|c| c.is_ascii_digit()) && !line.contains('/') {
            last = Some(line.trim().to_owned());
        }
    }
    for line in if_inet6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [hex, _, prefix, _, _, name] = fields[..] {
            let groups: Vec<&str> = (0..8).filter_map(|i| hex.get(i * 4..i * 4 + 4)).collect();
            let prefix = u32::from_str_radix(prefix, 16).unwrap_or(0);
            let addr: std::net::Ipv6Addr = groups
                .join(":")
                .parse()
                .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
            out.push(format!("{addr}/{prefix} ({name})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = Snapshot::of(std::process::id() as i32).expect("self");
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.namespaces.contains_key("mnt"), "{me:?}");
        assert!(!me.mounts.is_empty());
        assert_eq!(me.inner_pid(), *me.nspid.last().expect("NSpid"));
    }

    #[test]
    fn a_gone_process_says_so() {
        assert!(matches!(Snapshot::of(i32::MAX), Err(Error::Gone(_))));
    }

    #[test]
    fn addresses_from_fib_trie_and_if_inet6() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.0.2\n        /32 host LOCAL\n\
                   Local:\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 10.0.0.2\n        /32 host LOCAL\n";
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            addresses(fib, v6),
            ["10.0.0.2", "127.0.0.1", "::1/128 (lo)"]
        );
    }

    #[test]
    fn mountinfo_and_cgroup_lines() {
        let m = mount_line("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw")
            .expect("line");
        assert_eq!(
            m,
            ["ext3", "/dev/root", "/mnt2", "rw,noatime"].map(String::from)
        );
        let c = cgroup_line("4:memory:/peapod/web").expect("line");
        assert_eq!(
            (c.hierarchy.as_str(), c.path.as_str()),
            ("memory", "/peapod/web")
        );
        assert_eq!(
            id_map("         0     100000      65536\n"),
            [[0, 100000, 65536]]
        );
    }
}
