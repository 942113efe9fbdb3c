//! `peapod explain`: how a container or a pod is isolated, read live from the kernel by
//! `peapod-explain`; this finds the processes to read from the state.

use anyhow::anyhow;
use peapod_explain::{ContainerReport, Peer, PodMember, PodReport};
use peapod_pod::{PodRecord, PodStore};
use peapod_state::ContainerId;

use peapod_runtime::{Error, Runtime};

use crate::args::{ExplainArgs, Format};

pub(crate) fn run(rt: &Runtime, args: ExplainArgs) -> Result<i32, Error> {
    let name: ContainerId = args.target.parse()?;
    let pods = PodStore::open(&rt.root)?;
    let text = if rt.store()?.ids()?.contains(&name) {
        let report = container(rt, &pods, &name)?;
        match args.format {
            Format::Json => json(&report)?,
            Format::Table => report.render(args.why, args.mounts),
        }
    } else if pods.names()?.contains(&name) {
        let report = pod(rt, &pods, &name)?;
        match args.format {
            Format::Json => json(&report)?,
            Format::Table => report.render(args.why),
        }
    } else {
        return Err(Error::runtime(anyhow!(
            "no container or pod is named {name}"
        )));
    };
    print!("{text}");
    Ok(0)
}

fn json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|t| t + "\n")
        .map_err(|e| Error::runtime(anyhow!(e)))
}

/// The live process of container `id`, or a one-line error saying why there is none.
fn live_pid(rt: &Runtime, id: &ContainerId) -> Result<(i32, peapod_state::Record), Error> {
    let (record, status) = rt.snapshot(id)?;
    match (record.process, peapod_runtime::is_live(status)) {
        (Some(process), true) => Ok((process.pid, record)),
        _ => Err(Error::runtime(anyhow!(
            "container {id} is {}: its processes are gone, so the kernel holds nothing to explain",
            status.as_str()
        ))),
    }
}

fn container(rt: &Runtime, pods: &PodStore, id: &ContainerId) -> Result<ContainerReport, Error> {
    let (pid, record) = live_pid(rt, id)?;
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
            if let Ok((pid, _)) = live_pid(rt, &member_id) {
                peers.push(Peer {
                    name: member.id.clone(),
                    pid,
                });
            }
        }
    }
    let cgroup = peapod_runtime::cgroups::of_record(&record)?;
    let mut report = ContainerReport::build(id.as_str(), pid, &peers, cgroup.as_ref())
        .map_err(|e| Error::runtime(anyhow!(e)))?;
    // After pivot_root the kernel names its root `/` from anywhere; the host directory is
    // the one it was made from.
    if !record.rootfs.as_os_str().is_empty() {
        report.root = record.rootfs.clone();
    }
    Ok(report)
}

fn pod(rt: &Runtime, pods: &PodStore, name: &ContainerId) -> Result<PodReport, Error> {
    let entry = pods.load(name)?;
    let record: PodRecord = entry.record()?.ok_or_else(|| {
        Error::runtime(anyhow!(
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
                .and_then(|id| live_pid(rt, &id).ok())
                .map(|(pid, _)| pid),
        })
        .collect();
    let infra = record.infra.filter(|p| p.is_alive()).map(|p| p.pid);
    let cgroup = peapod_runtime::cgroups::open(&record.cgroup_paths)?;
    PodReport::build(
        name.as_str(),
        infra,
        record.namespaces.clone(),
        &members,
        cgroup.as_ref(),
    )
    .map_err(|e| Error::runtime(anyhow!(e)))
}
