//! Pausing and resuming: the cgroup freezer stops and restarts every process of
//! a container; `state` says `paused` in between, as runc's.

use anyhow::anyhow;
use peapod_cgroups::Cgroup;
use peapod_state::{ContainerId, Status};

use crate::{Error, Result, Runtime};

pub(crate) fn pause(rt: &Runtime, id: &str) -> Result<()> {
    let cgroup = cgroup_if(
        rt,
        id,
        Status::Running,
        "only a running container can be paused",
    )?;
    cgroup
        .freeze(crate::cgroups::TIMEOUT)
        .map_err(Error::runtime)?;
    Ok(())
}

pub(crate) fn resume(rt: &Runtime, id: &str) -> Result<()> {
    let cgroup = cgroup_if(rt, id, Status::Paused, "not paused")?;
    cgroup.thaw().map_err(Error::runtime)?;
    Ok(())
}

/// The cgroup of container `id` when its status is `wanted`; else the error `refusal`.
fn cgroup_if(rt: &Runtime, id: &str, wanted: Status, refusal: &str) -> Result<Cgroup> {
    let id: ContainerId = id.parse()?;
    let entry = rt.store()?.load(&id)?;
    let record = entry.record()?;
    let status = record
        .as_ref()
        .map_or(Status::Stopped, |r| r.status(entry.dir()));
    match (status == wanted, &record) {
        (true, Some(record)) => crate::cgroups::required(&id, record),
        _ => Err(Error::runtime(anyhow!(
            "container {id} is {}: {refusal}",
            status.as_str()
        ))),
    }
}
