//! `peapod pause` and `peapod resume`: the cgroup freezer stops and restarts every process of
//! a container; `state` says `paused` in between, as runc's.

use anyhow::anyhow;
use peapod_state::{ContainerId, Status};

use crate::context::Context;
use crate::Failure;

pub(crate) fn pause(ctx: &Context, id: &str) -> Result<i32, Failure> {
    let id: ContainerId = id.parse()?;
    let entry = ctx.store()?.load(&id)?;
    let record = entry.record()?;
    let status = record
        .as_ref()
        .map_or(Status::Stopped, |r| r.status(entry.dir()));
    let (Status::Running, Some(record)) = (status, &record) else {
        return Err(Failure::runtime(anyhow!(
            "container {id} is {}: only a running container can be paused",
            status.as_str()
        )));
    };
    let cgroup = crate::cgroups::required(&id, record)?;
    cgroup
        .freeze(crate::cgroups::TIMEOUT)
        .map_err(Failure::runtime)?;
    Ok(0)
}

pub(crate) fn resume(ctx: &Context, id: &str) -> Result<i32, Failure> {
    let id: ContainerId = id.parse()?;
    let entry = ctx.store()?.load(&id)?;
    let record = entry.record()?;
    let status = record
        .as_ref()
        .map_or(Status::Stopped, |r| r.status(entry.dir()));
    let (Status::Paused, Some(record)) = (status, &record) else {
        return Err(Failure::runtime(anyhow!(
            "container {id} is {}, not paused",
            status.as_str()
        )));
    };
    let cgroup = crate::cgroups::required(&id, record)?;
    cgroup.thaw().map_err(Failure::runtime)?;
    Ok(0)
}
