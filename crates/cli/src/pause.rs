//! `peapod pause` and `peapod resume`: the cgroup freezer stops and restarts every process of
//! a container; `state` says `paused` in between, as runc's.

use anyhow::anyhow;
use peapod_cgroups::Cgroup;
use peapod_state::{ContainerId, Status};

use crate::context::Context;
use crate::Failure;

pub(crate) fn pause(ctx: &Context, id: &str) -> Result<i32, Failure> {
    let cgroup = cgroup_if(
        ctx,
        id,
        Status::Running,
        "only a running container can be paused",
    )?;
    cgroup
        .freeze(crate::cgroups::TIMEOUT)
        .map_err(Failure::runtime)?;
    Ok(0)
}

pub(crate) fn resume(ctx: &Context, id: &str) -> Result<i32, Failure> {
    let cgroup = cgroup_if(ctx, id, Status::Paused, "not paused")?;
    cgroup.thaw().map_err(Failure::runtime)?;
    Ok(0)
}

/// The cgroup of container `id` when its status is `wanted`; else the error `refusal`.
fn cgroup_if(ctx: &Context, id: &str, wanted: Status, refusal: &str) -> Result<Cgroup, Failure> {
    let id: ContainerId = id.parse()?;
    let entry = ctx.store()?.load(&id)?;
    let record = entry.record()?;
    let status = record
        .as_ref()
        .map_or(Status::Stopped, |r| r.status(entry.dir()));
    match (status == wanted, &record) {
        (true, Some(record)) => crate::cgroups::required(&id, record),
        _ => Err(Failure::runtime(anyhow!(
            "container {id} is {}: {refusal}",
            status.as_str()
        ))),
    }
}
