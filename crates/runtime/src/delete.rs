//! Deleting: removes a container's state, killing its process first when it is only
//! created, or running and `--force` is given.

use std::time::Duration;

use anyhow::anyhow;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use peapod_state::{ContainerId, Entry, ProcessIdentity, Status};

use crate::kill::{container_pids, own_pid_namespace, wait_gone};
use crate::{Error, Result, Runtime};

/// How long `delete` waits for killed processes to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Deletes container `id` (see the module doc).
pub(crate) fn delete(rt: &Runtime, id: &ContainerId, force: bool) -> Result<()> {
    let entry = match rt.store()?.load(id) {
        Ok(entry) => entry,
        // As runc: podman and containerd call `delete --force` to clean up after a failed
        // `create`, which may have left nothing to delete.
        Err(peapod_state::Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    delete_entry(entry, force)
}

/// Deletes the container of the locked `entry`.
pub(crate) fn delete_entry(entry: Entry, force: bool) -> Result<()> {
    let id = entry.id().clone();
    let id = &id;
    let record = match entry.record() {
        Ok(Some(record)) => record,
        // A `create` that died half-way may have left no record: there is nothing to stop.
        Ok(None) => {
            crate::cgroups::remove_unrecorded(id)?;
            release_layers(id, &entry)?;
            entry.remove()?;
            return Ok(());
        }
        Err(peapod_state::Error::Corrupt { .. }) if force => return delete_corrupt(entry),
        Err(e) => return Err(e.into()),
    };
    let status = record.status(entry.dir());
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(Error::runtime(anyhow!(
            "container {id} is {}: stop it first, or delete it with --force",
            status.as_str()
        )));
    }
    let live = matches!(status, Status::Created | Status::Running | Status::Paused);
    let process = record.process.filter(|_| live);
    // PID 1 of a PID namespace of its own, not frozen: SIGKILL to it kills every process of
    // the namespace, and the kernel has reaped them all before it is a zombie. No freezing,
    // no search of /proc; what may still be in the cgroup is emptied below.
    let alone = status != Status::Paused && process.is_some_and(|p| own_pid_namespace(p).is_some());
    if let Some(process) = process.filter(|_| alone) {
        kill_and_wait(id, process, false)?;
    }
    let cgroup = crate::cgroups::of_record(&record)?;
    // Nothing left to kill but what may still be in the cgroup (the container seen dead, or
    // killed above): its removal is tried first, and only a cgroup the kernel finds busy is
    // emptied as below.
    let kill_in_cgroup = live && !alone;
    let removed = match &cgroup {
        Some(cgroup) if !kill_in_cgroup => cgroup.remove_if_empty().map_err(Error::runtime)?,
        _ => false,
    };
    if let Some(cgroup) = cgroup.as_ref().filter(|_| !removed) {
        // Every process in it, also those outside the container's PID namespace (or of a
        // container without one), frozen first so that none forks away; and the leftovers
        // of a stopped one.
        crate::cgroups::empty(cgroup, kill_in_cgroup)?;
    }
    if let Some(process) = process.filter(|_| !alone) {
        // Without a cgroup, the processes of its PID namespace are found in /proc.
        kill_and_wait(id, process, cgroup.is_none())?;
    }
    if let Some(cgroup) = cgroup.as_ref().filter(|_| !removed) {
        cgroup.remove().map_err(Error::runtime)?;
    }
    crate::cgroups::stop_recorded_scope(record.cgroup_unit.as_deref(), &record.cgroup_paths)?;
    release_layers(id, &entry)?;
    entry.remove()?;
    // After the container is gone (runtime-spec, "Lifecycle" step 12); the record still
    // has what the hooks are told.
    let pid = record.process.map_or(0, |p| p.pid);
    crate::create::run_logged_hooks(&record, "poststop", "stopped", pid);
    Ok(())
}

/// `delete --force` of a container whose `state.json` does not parse: whatever can still be
/// read of it (its process, its cgroup) is killed and removed, else what is at its default
/// cgroup path; then its directory goes.
fn delete_corrupt(entry: Entry) -> Result<()> {
    let id = entry.id().clone();
    let salvaged = entry.salvage();
    tracing::warn!("container {id}: its state file is corrupt; removing what can be found");
    if let Some(process) = salvaged.process.filter(|p| p.is_alive()) {
        kill_and_wait(&id, process, true)?;
    }
    match crate::cgroups::open(&salvaged.cgroup_paths)? {
        Some(cgroup) => {
            crate::cgroups::empty(&cgroup, true)?;
            cgroup.remove().map_err(Error::runtime)?;
        }
        None => crate::cgroups::remove_unrecorded(&id)?,
    }
    crate::cgroups::stop_recorded_scope(None, &salvaged.cgroup_paths)?;
    release_layers(&id, &entry)?;
    entry.remove()?;
    Ok(())
}

/// Releases the image layers of the container (its writable layer goes), once its processes
/// are gone; kept with the state entry when that fails, for the next `delete` to retry.
fn release_layers(id: &ContainerId, entry: &Entry) -> Result<()> {
    crate::image::release(id.as_str(), entry.dir()).map_err(Error::runtime)
}

/// SIGKILL to `process`, and with `search` to every process /proc shows in its PID
/// namespace; then waits for `process` to be gone.
fn kill_and_wait(id: &ContainerId, process: ProcessIdentity, search: bool) -> Result<()> {
    let pids = match search {
        true => container_pids(process),
        false => vec![process.pid],
    };
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if !wait_gone(&[process], KILL_TIMEOUT) {
        return Err(Error::runtime(anyhow!(
            "container {id}: process {} did not die within {KILL_TIMEOUT:?}",
            process.pid
        )));
    }
    Ok(())
}
