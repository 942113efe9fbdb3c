//! What `peapod explain` reads: the processes of a container or a pod, found in the state
//! (a container's pod peers included), handed to `peapod-explain`, which reads the kernel.

use anyhow::anyhow;
use peapod_explain::{ContainerReport, Peer, PodMember, PodReport};
use peapod_runtime::{Error, Runtime};
use peapod_state::ContainerId;

use crate::{PodRecord, PodStore};

/// The report on a container or a pod.
#[derive(Debug)]
pub enum Explained {
    /// `target` is a container.
    Container(Box<ContainerReport>),
    /// `target` is a pod.
    Pod(PodReport),
}

/// How the container or pod named `target` is isolated, read live from the kernel.
pub fn explain(rt: &Runtime, target: &str) -> Result<Explained, Error> {
    let name: ContainerId = target.parse()?;
    let pods = PodStore::open(&rt.root)?;
    if rt.store()?.ids()?.contains(&name) {
        Ok(Explained::Container(Box::new(container(rt, &pods, &name)?)))
    } else if pods.names()?.contains(&name) {
        Ok(Explained::Pod(pod(rt, &pods, &name)?))
    } else {
        Err(Error::runtime(anyhow!(
            "no container or pod is named {name}"
        )))
    }
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
