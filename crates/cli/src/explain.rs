//! `peapod explain`: how a container or a pod is isolated, read live from the kernel by
//! `peapod-explain`; this finds the processes to read from the state.

use anyhow::anyhow;
use peapod_explain::{ContainerReport, Peer, PodMember, PodReport};
use peapod_pod::{PodRecord, PodStore};
use peapod_state::ContainerId;

use crate::args::{ExplainArgs, Format};
use crate::context::Context;
use crate::Failure;

pub(crate) fn run(ctx: &Context, args: ExplainArgs) -> Result<i32, Failure> {
    let name: ContainerId = args.target.parse()?;
    let pods = PodStore::open(&ctx.store_root)?;
    let text = if ctx.store()?.ids()?.contains(&name) {
        let report = container(ctx, &pods, &name)?;
        match args.format {
            Format::Json => json(&report)?,
            Format::Table => report.render(args.why, args.mounts),
        }
    } else if pods.names()?.contains(&name) {
        let report = pod(ctx, &pods, &name)?;
        match args.format {
            Format::Json => json(&report)?,
            Format::Table => report.render(args.why),
        }
    } else {
        return Err(Failure::runtime(anyhow!(
            "no container or pod is named {name}"
        )));
    };
    print!("{text}");
    Ok(0)
}

fn json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|t| t + "\n")
        .map_err(|e| Failure::runtime(anyhow!(e)))
}

/// The live process of container `id`, or a one-line error saying why there is none.
fn live_pid(ctx: &Context, id: &ContainerId) -> Result<(i32, peapod_state::Record), Failure> {
    let (record, status) = crate::state::snapshot(ctx, id)?;
    match (record.process, crate::kill::is_live(status)) {
        (Some(process), true) => Ok((process.pid, record)),
        _ => Err(Failure::runtime(anyhow!(
            "container {id} is {}: its processes are gone, so the kernel holds nothing to explain",
            status.as_str()
        ))),
    }
}

fn container(ctx: &Context, pods: &PodStore, id: &ContainerId) -> Result<ContainerReport, Failure> {
    let (pid, record) = live_pid(ctx, id)?;
    // Its pod's other members and infra process, to say which namespaces it shares.
    let mut peers = Vec::new();
    for name in pods.names()? {
        let Ok(entry) = pods.load(&name) else {
            continue;
        };
        let Ok(Some(pod)) = entry.record() else {
            continue;
        };
        if !pod.containers.iter().any(|m| m.id == id.as_str()) {
            continue;
        }
        peers.extend(pod.infra.filter(|p| p.is_alive()).map(|p| Peer {
            name: format!("pod {name} (infra)"),
            pid: p.pid,
        }));
        for member in pod.containers.iter().filter(|m| m.id != id.as_str()) {
            let Ok(member_id) = member.id.parse() else {
                continue;
            };
            if let Ok((pid, _)) = live_pid(ctx, &member_id) {
                peers.push(Peer {
                    name: member.id.clone(),
                    pid,
                });
            }
        }
    }
    let cgroup = crate::cgroups::of_record(&record)?;
    let mut report = ContainerReport::build(id.as_str(), pid, &peers, cgroup.as_ref())
        .map_err(|e| Failure::runtime(anyhow!(e)))?;
    // After pivot_root the kernel names its root `/` from anywhere; the host directory is
    // the one it was made from.
    if !record.rootfs.as_os_str().is_empty() {
        report.root = record.rootfs.clone();
    }
    Ok(report)
}

fn pod(ctx: &Context, pods: &PodStore, name: &ContainerId) -> Result<PodReport, Failure> {
    let entry = pods.load(name)?;
    let record: PodRecord = entry.record()?.ok_or_else(|| {
        Failure::runtime(anyhow!(
            "pod {name} has no record (its creation died half-way)"
        ))
    })?;
    drop(entry);
    let members: Vec<PodMember> = record
        .containers
        .iter()
        .map(|m| PodMember {
            name: m.id.clone(),
            pid: m
                .id
                .parse()
                .ok()
                .and_then(|id| live_pid(ctx, &id).ok())
                .map(|(pid, _)| pid),
        })
        .collect();
    let infra = record.infra.filter(|p| p.is_alive()).map(|p| p.pid);
    let cgroup = crate::cgroups::open(&record.cgroup_paths)?;
    PodReport::build(
        name.as_str(),
        infra,
        record.namespaces.clone(),
        &members,
        cgroup.as_ref(),
    )
    .map_err(|e| Failure::runtime(anyhow!(e)))
}
