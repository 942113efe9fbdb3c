//! The docker-style commands on a detached container: `wait` for its exit status, `stop`
//! it (its StopSignal, then SIGKILL), `remove` it (and wait for its monitor to be gone).

use std::time::Duration;

use anyhow::anyhow;
use nix::sys::signal::Signal;
use peapod_state::{ContainerId, ProcessIdentity, Status};

use crate::kill::{kill_container, wait_gone};
use crate::{Error, Result, Runtime};

/// How long a stopped or removed container's monitor is given to record the exit and go.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the processes of a container have to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the container's monitor (its recorded owner) still runs.
fn monitor_alive(owner: Option<ProcessIdentity>) -> bool {
    owner.is_some_and(|owner| owner.is_alive() && owner.pid != std::process::id() as i32)
}

/// Blocks until container `id` has exited; its exit status as its monitor recorded it.
pub(crate) fn wait(rt: &Runtime, id: &str) -> Result<i32> {
    let id: ContainerId = id.parse()?;
    loop {
        let (record, status) = rt.snapshot(&id)?;
        if let Some(exit) = record.exit {
            return Ok(exit.code);
        }
        let live = matches!(status, Status::Created | Status::Running | Status::Paused);
        if !live && !monitor_alive(record.owner) {
            return Err(Error::runtime(anyhow!(
                "container {id} has stopped without a recorded exit status (only a `run -d` \
                 container has a monitor that records it)"
            )));
        }
        match record.process.filter(|_| live) {
            Some(process) => wait_for_exit(process),
            // Exited: its monitor is about to record it.
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Blocks until `process` has exited.
fn wait_for_exit(process: ProcessIdentity) {
    wait_gone(&[process], Duration::MAX);
}

/// Stops container `id`: its StopSignal (else SIGTERM), then SIGKILL to all its processes
/// after `timeout`; returns once it has exited and its monitor has recorded that.
pub(crate) fn stop(rt: &Runtime, id: &str, timeout: Duration) -> Result<()> {
    let cid: ContainerId = id.parse()?;
    let (record, status) = mark_stopped(rt, &cid)?;
    let Some(process) = record
        .process
        .filter(|_| matches!(status, Status::Created | Status::Running | Status::Paused))
    else {
        // Between two runs of a restart policy: its monitor sees the mark and ends.
        wait_for_monitor(rt, &cid, false);
        return Ok(());
    };
    let signal = crate::image::stop_signal_of(&record).unwrap_or(Signal::SIGTERM);
    // A paused container cannot act on a signal: only SIGKILL ends it.
    let signal = if status == Status::Paused {
        Signal::SIGKILL
    } else {
        signal
    };
    match kill_container(rt, id, signal, false) {
        Ok(()) | Err(Error::NotRunning) => {}
        Err(e) => return Err(e),
    }
    if !wait_gone(&[process], timeout) {
        tracing::debug!("container {id} still runs after {timeout:?}: SIGKILL");
        match kill_container(rt, id, Signal::SIGKILL, true) {
            Ok(()) | Err(Error::NotRunning) => {}
            Err(e) => return Err(e),
        }
        if !wait_gone(&[process], KILL_TIMEOUT) {
            return Err(Error::runtime(anyhow!(
                "container {id}: process {} did not die within {KILL_TIMEOUT:?}",
                process.pid
            )));
        }
    }
    wait_for_monitor(rt, &cid, false);
    Ok(())
}

/// Marks container `id` as stopped by hand when it has a restart policy (under its lock,
/// where its monitor reads it before it starts it again), so that its monitor leaves it
/// stopped; its record and status.
fn mark_stopped(rt: &Runtime, id: &ContainerId) -> Result<(peapod_state::Record, Status)> {
    let entry = rt.store()?.load(id)?;
    let mut record = crate::state::recorded(&entry)?;
    let status = record.status(entry.dir());
    if record.restart_policy.is_some() && !record.stopped_by_user {
        record.stopped_by_user = true;
        entry.save(&record, peapod_state::Durability::Synced)?;
    }
    Ok((record, status))
}

/// Waits (a while) for the monitor of stopped container `id` to have recorded its exit (and
/// removed it after `--rm`) and, with a restart policy or `done`, to have ended (its log
/// written to the end).
fn wait_for_monitor(rt: &Runtime, id: &ContainerId, done: bool) {
    let deadline = std::time::Instant::now() + MONITOR_TIMEOUT;
    while std::time::Instant::now() < deadline {
        match rt.snapshot(id) {
            Ok((record, _))
                if monitor_alive(record.owner)
                    && (done || record.exit.is_none() || record.restart_policy.is_some()) =>
            {
                std::thread::sleep(Duration::from_millis(2))
            }
            _ => break,
        }
    }
}

/// Stops container `id` as [`stop`] does, then starts it again under a new monitor
/// (`restart`): a `run -d` container only.
pub(crate) fn restart(
    rt: &Runtime,
    id: &str,
    timeout: Duration,
    exec: impl FnOnce(crate::logfile::LogLimits) -> Option<Vec<std::ffi::CString>>,
) -> Result<()> {
    let cid: ContainerId = id.parse()?;
    // Refused before it is stopped, if it could not be started again.
    crate::restart::Launch::load(rt, &cid)?;
    stop(rt, id, timeout)?;
    start(rt, id, exec)
}

/// `start` of a `run -d` container, as docker's: nothing to do while it runs (or its monitor
/// is about to start it again); once it has exited, started again under a new monitor.
pub(crate) fn start(
    rt: &Runtime,
    id: &str,
    exec: impl FnOnce(crate::logfile::LogLimits) -> Option<Vec<std::ffi::CString>>,
) -> Result<()> {
    let cid: ContainerId = id.parse()?;
    let (record, status) = rt.snapshot(&cid)?;
    if status != Status::Stopped || (record.restarting && monitor_alive(record.owner)) {
        return Ok(());
    }
    // A monitor that has just seen it exit is done first.
    wait_for_monitor(rt, &cid, true);
    crate::monitor::start_again(rt, id, exec)
}

/// Removes container `id` (`rm`): as `delete` (refused while it runs, unless `force`), then
/// waits for its monitor to be gone, so that nothing of it is left when this returns.
pub(crate) fn remove(rt: &Runtime, id: &str, force: bool) -> Result<()> {
    let cid: ContainerId = id.parse()?;
    let owner = match rt.snapshot(&cid) {
        Ok((record, _)) => record.owner.filter(|o| monitor_alive(Some(*o))),
        Err(_) => None,
    };
    crate::delete::delete(rt, &cid, force)?;
    if let Some(owner) = owner {
        // After the delete, which released the lock the monitor may be waiting for.
        if !wait_gone(&[owner], MONITOR_TIMEOUT) {
            tracing::warn!("container {id}: its monitor {} is still running", owner.pid);
        }
    }
    Ok(())
}
