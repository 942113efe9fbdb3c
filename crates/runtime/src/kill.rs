//! Killing: signals a container's process (or every process in it), and finds those
//! processes.

use std::str::FromStr;

use anyhow::anyhow;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use peapod_ns::{Namespace, NamespaceId};
use peapod_state::{ContainerId, Entry, ProcessIdentity, Record, Status};

use crate::{Error, Result, Runtime};

/// Parses `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let parsed = match s.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let upper = s.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            Signal::from_str(&name).ok()
        }
    };
    parsed.ok_or_else(|| Error::usage(anyhow!("unknown signal {s:?}")))
}

/// The PIDs (in our PID namespace) of every process in the PID namespace of `init`, when
/// that is not ours; else only `init` itself.
pub fn container_pids(init: ProcessIdentity) -> Vec<i32> {
    let Some(theirs) = own_pid_namespace(init) else {
        return vec![init.pid];
    };
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            NamespaceId::of(Some(Pid::from_raw(*pid)), Namespace::Pid).ok() == Some(theirs)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The PID namespace `init` is PID 1 of, when that is not ours: then every process of it
/// dies with `init` (the kernel kills the namespace). `None` for a container that joined
/// another's PID namespace (a pod's), where it is not PID 1 and the others are not its own,
/// or one without a PID namespace.
pub(crate) fn own_pid_namespace(init: ProcessIdentity) -> Option<NamespaceId> {
    let own = NamespaceId::of(None, Namespace::Pid).ok();
    let theirs = NamespaceId::of(Some(Pid::from_raw(init.pid)), Namespace::Pid).ok()?;
    (Some(theirs) != own && is_namespace_init(init.pid)).then_some(theirs)
}

/// Whether `pid` is PID 1 of its own PID namespace (the last `NSpid` of its status).
fn is_namespace_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("NSpid:"))?.to_owned();
            line.split_whitespace().last().map(|last| last == "1")
        })
        .unwrap_or(true)
}

/// Waits (bounded by `timeout`; `Duration::MAX` is no bound) until none of `processes` is
/// alive; whether they all went. Each is waited for on a pidfd, which wakes this at its exit
/// (a killed container's, `delete --force`, is waited for by every delete); without
/// `pidfd_open` (before Linux 5.3) they are looked at every 2 ms.
pub fn wait_gone(processes: &[ProcessIdentity], timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now().checked_add(timeout);
    for process in processes {
        wait_exit_on_pidfd(*process, deadline);
    }
    loop {
        if processes.iter().all(|p| !p.is_alive()) {
            return true;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Waits until `process` has exited or `deadline` has passed, on a pidfd; at once when it is
/// gone already or the kernel has no `pidfd_open`.
fn wait_exit_on_pidfd(process: ProcessIdentity, deadline: Option<std::time::Instant>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let Some(pidfd) = crate::daemon::pidfd_open(process.pid) else {
        return;
    };
    // Checked after the pidfd is open: it then names this very process, not a later one
    // with its PID.
    if !process.is_alive() {
        return;
    }
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&pidfd),
        PollFlags::POLLIN,
    )];
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                // At most PollTimeout's i32 milliseconds at a time; the loop goes on.
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => continue,
            Ok(0) if deadline.is_some_and(|d| std::time::Instant::now() < d) => continue,
            // Readable (it exited), the deadline passed, or poll failed: the caller looks.
            _ => return,
        }
    }
}

/// Whether a container in this state has processes to signal or list.
pub fn is_live(status: Status) -> bool {
    matches!(status, Status::Created | Status::Running | Status::Paused)
}

/// Every process of the container: those in its cgroup (as runc lists them), or without a
/// cgroup those of its PID namespace while `init` lives.
pub(crate) fn all_pids(record: &Record, init: Option<ProcessIdentity>) -> Result<Vec<i32>> {
    match (crate::cgroups::of_record(record)?, init) {
        (Some(cgroup), _) => {
            let pids = cgroup.procs().map_err(Error::runtime)?;
            Ok(pids
                .into_iter()
                .filter_map(|p| i32::try_from(p).ok())
                .collect())
        }
        (None, Some(init)) => Ok(container_pids(init)),
        (None, None) => Ok(Vec::new()),
    }
}

/// Container `id`'s locked entry, record and process, when that process is live (created,
/// running or paused); `None` when it has exited or was never recorded. The caller signals
/// while it holds the entry, so that no `delete` (after which the pid could be reused) comes
/// in between.
fn live_process(rt: &Runtime, id: &str) -> Result<Option<(Entry, Record, ProcessIdentity)>> {
    let id: ContainerId = id.parse()?;
    let entry = rt.store()?.load(&id)?;
    let Some(record) = entry.record()? else {
        return Ok(None);
    };
    match record
        .process
        .filter(|_| is_live(record.status(entry.dir())))
    {
        Some(process) => Ok(Some((entry, record, process))),
        None => Ok(None),
    }
}

pub(crate) fn kill_container(rt: &Runtime, id: &str, signal: Signal, all: bool) -> Result<()> {
    if all {
        return kill_all(rt, id, signal);
    }
    // As runc: signalling its exited process is "container not running" with status 1,
    // which containerd's shim takes as "already exited" when it stops a task.
    let Some((_entry, _record, process)) = live_process(rt, id)? else {
        return Err(Error::NotRunning);
    };
    signal_each(&[process.pid], signal)
}

/// `kill --all`: every process in the container's cgroup, whatever the state of its first
/// process, as runc does. When that process has exited, what it started can live on in the
/// cgroup (in a pod's shared PID namespace nothing kills them with it), and a client stopping
/// the container relies on this to end them. Without a cgroup, the processes of its PID
/// namespace while its first process lives; signalling a container that has none left is
/// done.
fn kill_all(rt: &Runtime, id: &str, signal: Signal) -> Result<()> {
    let id: ContainerId = id.parse()?;
    // Held while signalling, so that no `delete` (after which a pid could be reused) comes in
    // between.
    let entry = rt.store()?.load(&id)?;
    let Some(record) = entry.record()? else {
        return Ok(());
    };
    let live = record
        .process
        .filter(|_| is_live(record.status(entry.dir())));
    let pids = all_pids(&record, live)?;
    signal_each(&pids, signal)
}

fn signal_each(pids: &[i32], signal: Signal) -> Result<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => {
                return Err(Error::runtime(anyhow!(
                    "cannot send {signal} to {pid}: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// The PIDs of every process of container `id`. One whose process has exited has none: an
/// empty list, as runc answers, so that a client asking (containerd's shim for `ctr task
/// ps`, or while it tears a task down) is not handed an error for a state it can see for
/// itself.
pub(crate) fn pids(rt: &Runtime, id: &str) -> Result<Vec<i32>> {
    match live_process(rt, id)? {
        Some((_entry, record, process)) => all_pids(&record, Some(process)),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        for s in ["TERM", "SIGTERM", "sigterm", "15"] {
            assert_eq!(parse_signal(s).ok(), Some(Signal::SIGTERM), "{s}");
        }
        assert_eq!(parse_signal("KILL").ok(), Some(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
