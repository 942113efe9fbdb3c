//! A pod: its infra process, its pinned namespaces, and who of its members shares what.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::report::host;
use crate::snapshot::{Limits, Snapshot};
use crate::Result;

/// A member of a pod as the caller knows it.
#[derive(Debug, Clone)]
pub struct PodMember {
    /// Its container id.
    pub name: String,
    /// Its host PID, while it runs.
    pub pid: Option<i32>,
}

/// One row of the matrix: a member (or the infra process) and its namespaces.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    /// Its name (`infra` for the infra process).
    pub name: String,
    /// Its host PID, while it runs.
    pub pid: Option<i32>,
    /// For each kind: `pod` (the pod's shared namespace), `host`, `own`, or `-` when it is
    /// not running.
    pub namespaces: BTreeMap<String, String>,
}

/// What the kernel holds for a pod.
#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    /// The pod's name.
    pub name: String,
    /// The infra process's host PID, while it runs.
    pub infra_pid: Option<i32>,
    /// The namespaces the pod pins, by kind, with their inodes.
    pub pinned: BTreeMap<String, u64>,
    /// The infra process and each member, with whose each namespace is.
    pub members: Vec<MemberRow>,
    /// The pod cgroup's limits and usage (all its containers together), where it has one.
    pub limits: Option<Limits>,
}

/// The namespace kinds of the matrix, in the order of its columns.
const KINDS: [&str; 7] = ["net", "ipc", "uts", "pid", "mnt", "cgroup", "user"];

impl PodReport {
    /// Reads the infra process and the members, and compares their namespaces with the
    /// ones the pod pins (`pinned`: kind → inode).
    pub fn build(
        name: &str,
        infra_pid: Option<i32>,
        pinned: BTreeMap<String, u64>,
        members: &[PodMember],
        cgroup: Option<&peapod_cgroups::Cgroup>,
    ) -> Result<PodReport> {
        let host = host()?;
        let row = |name: &str, pid: Option<i32>| {
            let snapshot = pid.and_then(|p| Snapshot::of(p).ok());
            let namespaces = KINDS
                .iter()
                .map(|kind| {
                    let inode = snapshot.as_ref().and_then(|s| s.namespaces.get(*kind));
                    let whose = match inode {
                        None => "-",
                        Some(i) if pinned.get(*kind) == Some(i) => "pod",
                        Some(i) if host.namespaces.get(*kind) == Some(i) => "host",
                        Some(_) => "own",
                    };
                    ((*kind).to_owned(), whose.to_owned())
                })
                .collect();
            MemberRow {
                name: name.to_owned(),
                pid: snapshot.map(|s| s.pid),
                namespaces,
            }
        };
        let mut rows = vec![row("infra", infra_pid)];
        rows.extend(members.iter().map(|m| row(&m.name, m.pid)));
        Ok(PodReport {
            name: name.to_owned(),
            infra_pid: rows[0].pid,
            pinned,
            members: rows,
            limits: cgroup.map(Limits::of),
        })
    }

    /// The report as text: the pinned namespaces and the matrix of members and kinds.
    pub fn render(&self, why: bool) -> String {
        let mut out = String::new();
        let infra = self
            .infra_pid
            .map_or("not running".to_owned(), |p| format!("host PID {p}"));
        let _ = writeln!(out, "pod {} (infra process: {infra})", self.name);
        let pinned: Vec<String> = self
            .pinned
            .iter()
            .map(|(k, i)| format!("{k} {i}"))
            .collect();
        let _ = writeln!(out, "pinned namespaces: {}", pinned.join(", "));
        if why {
            let _ = writeln!(
                out,
                "      the infra process holds these namespaces (and bind mounts pin them), so \
                 they outlive any one container; each container joins them."
            );
        }
        let _ = write!(out, "  {:<20} {:<8}", "MEMBER", "PID");
        for kind in KINDS {
            let _ = write!(out, " {kind:<6}");
        }
        let _ = writeln!(out);
        for m in &self.members {
            let pid = m.pid.map_or("-".to_owned(), |p| p.to_string());
            let _ = write!(out, "  {:<20} {pid:<8}", m.name);
            for kind in KINDS {
                let cell = m.namespaces.get(kind).map_or("-", String::as_str);
                let _ = write!(out, " {cell:<6}");
            }
            let _ = writeln!(out);
        }
        if why {
            let _ = writeln!(
                out,
                "      pod: the pod's shared namespace; own: the container's alone; host: the \
                 host's. Each container keeps its own mount namespace and root."
            );
        }
        if let Some(l) = &self.limits {
            let _ = writeln!(
                out,
                "pod cgroup: memory limit {}, pids limit {}, {} task(s) now",
                l.memory_limit
                    .map_or("none".to_owned(), |m| format!("{m} bytes")),
                l.pids_limit.map_or("none".to_owned(), |p| p.to_string()),
                l.pids_current
            );
        }
        out
    }
}
