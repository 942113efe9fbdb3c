//! One container, compared with the host and with the other members of its pod.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::snapshot::{CgroupLine, Limits, Snapshot};
use crate::why;
use crate::Result;

/// Another process to compare namespaces with: a member of the same pod, or its infra.
#[derive(Debug, Clone)]
pub struct Peer {
    /// How to call it (`infra`, a container id).
    pub name: String,
    /// Its host PID.
    pub pid: i32,
}

/// Whose a namespace is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "whose", content = "with")]
pub enum Owner {
    /// The container's alone.
    Own,
    /// The host's (that of PID 1, or of peapod itself where PID 1 is not readable).
    Host,
    /// Shared with these members of its pod.
    Shared(Vec<String>),
}

/// One namespace kind of the container.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceRow {
    /// Its `/proc/PID/ns` name (`mnt`, `net`, ...).
    pub kind: String,
    /// The namespace's inode.
    pub inode: u64,
    /// Whose it is.
    pub owner: Owner,
}

/// One process of the container.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRow {
    /// Its PID on the host.
    pub pid: i32,
    /// Its PID in the container's PID namespace.
    pub pid_inside: i32,
    /// Its command line.
    pub command: String,
}

/// Capability sets as names.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// What the process may use now.
    pub effective: Vec<String>,
    /// What it, or anything it runs, may ever get.
    pub bounding: Vec<String>,
    /// What a program it execs keeps.
    pub ambient: Vec<String>,
}

/// What the kernel holds for one container.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    /// The container's id.
    pub id: String,
    /// Its process (PID 1 inside, when it has its own PID namespace).
    pub pid: i32,
    /// Every process in it.
    pub processes: Vec<ProcessRow>,
    /// Its namespaces, and whose each one is.
    pub namespaces: Vec<NamespaceRow>,
    /// Its user namespace's maps (empty: the host's ids).
    pub uid_map: Vec<[u64; 3]>,
    /// See [`ContainerReport::uid_map`].
    pub gid_map: Vec<[u64; 3]>,
    /// Where its `/` is on the host.
    pub root: PathBuf,
    /// Its mount table.
    pub mounts: Vec<[String; 4]>,
    /// How many mounts the host's mount namespace has, for comparison.
    pub host_mounts: usize,
    /// Its cgroup in each hierarchy.
    pub cgroups: Vec<CgroupLine>,
    /// The limits in force and the usage of its cgroup, where it has one.
    pub limits: Option<Limits>,
    /// Its capability sets.
    pub capabilities: Capabilities,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
    /// `none`, `strict` or `filter`.
    pub seccomp: String,
    /// How many seccomp filters are stacked.
    pub seccomp_filters: u32,
    /// The interfaces of its network namespace.
    pub interfaces: Vec<String>,
    /// The addresses there.
    pub addresses: Vec<String>,
}

/// The reference for "the host's": PID 1 where it is readable (as root), else the reader.
pub(crate) fn host() -> Result<Snapshot> {
    match Snapshot::of(1) {
        Ok(init) if init.namespaces.len() > 1 => Ok(init),
        _ => Snapshot::of(std::process::id() as i32),
    }
}

impl ContainerReport {
    /// Reads container `id`'s process `pid` and compares it with the host and with `peers`
    /// (the other members of its pod); `cgroup` is its cgroup as recorded, for limits and,
    /// without a PID namespace of its own, for its processes.
    pub fn build(
        id: &str,
        pid: i32,
        peers: &[Peer],
        cgroup: Option<&peapod_cgroups::Cgroup>,
    ) -> Result<ContainerReport> {
        let me = Snapshot::of(pid)?;
        let host = host()?;
        let peers: Vec<(String, Snapshot)> = peers
            .iter()
            .filter_map(|p| Some((p.name.clone(), Snapshot::of(p.pid).ok()?)))
            .collect();
        let namespaces = me
            .namespaces
            .iter()
            .map(|(kind, &inode)| {
                let shared: Vec<String> = peers
                    .iter()
                    .filter(|(_, s)| s.namespaces.get(kind) == Some(&inode))
                    .map(|(name, _)| name.clone())
                    .collect();
                let owner = if host.namespaces.get(kind) == Some(&inode) {
                    Owner::Host
                } else if !shared.is_empty() {
                    Owner::Shared(shared)
                } else {
                    Owner::Own
                };
                NamespaceRow {
                    kind: kind.clone(),
                    inode,
                    owner,
                }
            })
            .collect::<Vec<_>>();
        let own_pid_namespace = namespaces
            .iter()
            .any(|n| n.kind == "pid" && n.owner == Owner::Own);
        let pids: Vec<i32> = match (own_pid_namespace, cgroup) {
            (true, _) => Snapshot::pids_in_pid_namespace_of(pid),
            (false, Some(cgroup)) => cgroup
                .procs()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| i32::try_from(p).ok())
                .collect(),
            (false, None) => vec![pid],
        };
        let processes = pids
            .into_iter()
            .filter_map(|p| {
                let s = if p == pid {
                    me.clone()
                } else {
                    Snapshot::of(p).ok()?
                };
                Some(ProcessRow {
                    pid: p,
                    pid_inside: s.inner_pid(),
                    command: s.command,
                })
            })
            .collect();
        Ok(ContainerReport {
            id: id.to_owned(),
            pid,
            processes,
            namespaces,
            uid_map: me.uid_map.clone(),
            gid_map: me.gid_map.clone(),
            root: me.root.clone(),
            mounts: me.mounts.clone(),
            host_mounts: host.mounts.len(),
            cgroups: me.cgroups.clone(),
            limits: cgroup.map(Limits::of),
            capabilities: Capabilities {
                effective: capability_names(me.cap_effective),
                bounding: capability_names(me.cap_bounding),
                ambient: capability_names(me.cap_ambient),
            },
            no_new_privs: me.no_new_privs,
            seccomp: match me.seccomp_mode {
                0 => "none",
                1 => "strict",
                _ => "filter",
            }
            .to_owned(),
            seccomp_filters: me.seccomp_filters,
            interfaces: me.interfaces.clone(),
            addresses: me.addresses.clone(),
        })
    }

    /// The report as text; `why` adds a sentence on what each isolation means, `mounts`
    /// lists the mount table.
    pub fn render(&self, why: bool, mounts: bool) -> String {
        let mut out = String::new();
        let explain = |out: &mut String, sentence: String| {
            if why {
                let _ = writeln!(out, "      {sentence}");
            }
        };
        let _ = writeln!(out, "container {} (host PID {})", self.id, self.pid);
        let _ = writeln!(out, "processes:");
        let _ = writeln!(out, "  {:<10} {:<8} COMMAND", "HOST PID", "INSIDE");
        for p in &self.processes {
            let _ = writeln!(out, "  {:<10} {:<8} {}", p.pid, p.pid_inside, p.command);
        }
        if self
            .processes
            .iter()
            .any(|p| p.pid == self.pid && p.pid_inside == 1)
        {
            explain(&mut out, why::PID_1.to_owned());
        }
        let _ = writeln!(out, "namespaces:");
        for n in &self.namespaces {
            let whose = match &n.owner {
                Owner::Own => "its own".to_owned(),
                Owner::Host => "the host's".to_owned(),
                Owner::Shared(with) => format!("shared with {}", with.join(", ")),
            };
            let _ = writeln!(out, "  {:<7} {:<12} {whose}", n.kind, n.inode);
            explain(&mut out, why::namespace(&n.kind, &n.owner));
        }
        let _ = write!(out, "user:   ");
        match self.uid_map.first() {
            Some(&[inside, outside, count])
                if !(inside == 0 && outside == 0 && count >= u64::from(u32::MAX)) =>
            {
                let _ = writeln!(
                    out,
                    "uid {inside}..{} inside is {outside}..{} on the host ({} map line(s))",
                    inside + count.saturating_sub(1),
                    outside + count.saturating_sub(1),
                    self.uid_map.len()
                );
                explain(&mut out, why::mapped_root(inside, outside));
            }
            _ => {
                let _ = writeln!(out, "the host's ids (no user namespace of its own)");
                explain(&mut out, why::HOST_ROOT.to_owned());
            }
        }
        let _ = writeln!(
            out,
            "root:   {} ({} mounts in its mount namespace; the host has {})",
            self.root.display(),
            self.mounts.len(),
            self.host_mounts
        );
        explain(&mut out, why::ROOT.to_owned());
        if mounts {
            for [fstype, source, target, options] in &self.mounts {
                let _ = writeln!(out, "  {fstype:<8} {source:<16} {target:<24} {options}");
            }
        }
        let _ = writeln!(out, "cgroup:");
        for c in &self.cgroups {
            let name = if c.hierarchy.is_empty() {
                "(v2)"
            } else {
                c.hierarchy.as_str()
            };
            let _ = writeln!(out, "  {name:<16} {}", c.path);
        }
        match &self.limits {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  limits: memory {}, cpus {}, pids {}",
                    l.memory_limit.map_or("none".into(), mib),
                    l.cpus.map_or("none".into(), |c| format!("{c:.2}")),
                    l.pids_limit.map_or("none".into(), |p| p.to_string())
                );
                let _ = writeln!(
                    out,
                    "  usage:  memory {}, cpu {:.2} s, {} task(s)",
                    mib(l.memory_usage),
                    l.cpu_usage_ns as f64 / 1e9,
                    l.pids_current
                );
                explain(&mut out, why::CGROUP.to_owned());
            }
            None => {
                let _ = writeln!(out, "  no cgroup of its own (rootless without limits)");
            }
        }
        let _ = writeln!(out, "privileges:");
        let list = |caps: &[String]| match caps.is_empty() {
            true => "none".to_owned(),
            false => caps
                .iter()
                .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let _ = writeln!(out, "  effective: {}", list(&self.capabilities.effective));
        let _ = writeln!(out, "  bounding:  {}", list(&self.capabilities.bounding));
        let _ = writeln!(out, "  ambient:   {}", list(&self.capabilities.ambient));
        explain(
            &mut out,
            why::capabilities(self.capabilities.bounding.len()),
        );
        let _ = writeln!(
            out,
            "  no_new_privs: {}; seccomp: {} ({} filter(s))",
            if self.no_new_privs { "set" } else { "not set" },
            self.seccomp,
            self.seccomp_filters
        );
        explain(&mut out, why::seccomp(&self.seccomp, self.no_new_privs));
        let _ = writeln!(
            out,
            "network: {} ({})",
            self.interfaces.join(", "),
            if self.addresses.is_empty() {
                "no address".to_owned()
            } else {
                self.addresses.join(", ")
            }
        );
        explain(&mut out, why::network(&self.interfaces));
        out
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The names of the capabilities whose bits are set in `mask` (bit N is capability N).
fn capability_names(mask: u64) -> Vec<String> {
    peapod_container::ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, cap)| {
            let name = cap.to_string();
            match name.starts_with("CAP_") {
                true => name,
                false => format!("CAP_{name}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits_become_names() {
        assert_eq!(capability_names(0), Vec::<String>::new());
        assert_eq!(capability_names(1), ["CAP_CHOWN"]);
        assert_eq!(capability_names(1 << 21), ["CAP_SYS_ADMIN"]);
    }
}
