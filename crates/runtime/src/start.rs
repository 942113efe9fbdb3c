//! Starting a created container: releases a created container's process from its exec fifo.

use std::time::Duration;

use anyhow::anyhow;
use peapod_state::{ContainerId, Status};

use crate::{Error, Result, Runtime};

/// How long `start` waits for a live container process to reach its barrier.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn start(rt: &Runtime, id: &str) -> Result<()> {
    let id: ContainerId = id.parse()?;
    let entry = rt.store()?.load(&id)?;
    let record = crate::state::recorded(&entry)?;
    match record.status(entry.dir()) {
        Status::Created => {}
        Status::Running | Status::Paused => {
            return Err(Error::runtime(anyhow!("container {id} is already running")))
        }
        Status::Stopped | Status::Creating => {
            return Err(Error::runtime(anyhow!(
                "container {id} is stopped: its process has exited; delete it"
            )))
        }
    }
    let process = record.process;
    let alive = || process.is_some_and(|p| p.is_alive());
    peapod_container::start_fifo(&entry.exec_fifo(), alive, START_TIMEOUT)?;
    let pid = process.map_or(0, |p| p.pid);
    crate::create::run_logged_hooks(&record, "poststart", "running", pid);
    Ok(())
}
