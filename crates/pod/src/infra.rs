//! The infra process of a pod: `peapod-init -P`, the only file in an empty, read-only root of
//! its own (so it holds no host mount tree), in the pod's new namespaces, which are then
//! pinned under the pod's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use oci_spec::runtime::{
    LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec,
};
use peapod_container::{create_in, start_fifo, Barrier, ContainerConfig};
use peapod_ns::NamespaceId;
use peapod_runtime::Error as RuntimeError;
use peapod_state::ProcessIdentity;

use crate::lifecycle::Stdio;
use crate::{PodEntry, PodRecord};

/// The infra process's cgroup, below the pod's.
pub(crate) const INFRA_CGROUP: &str = "infra";

/// Where the pause binary appears in the infra process's root.
const PAUSE: &str = "/pause";

/// Starts the infra process of the pod in `entry` (in the pod's cgroup, when it has one),
/// pins its namespaces and records it.
pub(crate) fn start(
    entry: &PodEntry,
    record: &mut PodRecord,
    init: &Path,
) -> Result<(), RuntimeError> {
    // In a leaf of its own below the pod's cgroup, as the kubelet puts the pause container:
    // on cgroup v2 a cgroup holding processes cannot hand controllers to its children.
    let pod_cgroup =
        peapod_runtime::cgroups::open_pod(&record.cgroup_paths, record.cgroup_unit.as_deref())?;
    let cgroup = pod_cgroup
        .map(|pod| pod.create_child(Path::new(INFRA_CGROUP)))
        .transpose()
        .map_err(RuntimeError::runtime)?;
    let root = entry.subdir("infra")?;
    let spec = spec(&root, record, init).map_err(RuntimeError::runtime)?;
    let config =
        ContainerConfig::from_spec(&spec, entry.dir()).map_err(peapod_container::Error::from)?;
    let fifo = entry.dir().join("infra.fifo");
    let created = {
        let _stdio = Stdio::redirect(None).map_err(RuntimeError::runtime)?;
        create_in(&config, &Barrier::Fifo(fifo.clone()), cgroup.as_ref())
    }?;
    let pid = created.pid();
    if record.rootless {
        // Nothing to pin: the infra process holds the namespaces, and is recorded first so
        // that `pod rm` finds it. Their inodes are read once it runs pause (until its exec it
        // is not dumpable, and its /proc/PID/ns closed to us).
        record.infra = ProcessIdentity::of(pid.as_raw());
        entry.save(record)?;
        let pid = created.detach();
        start_fifo(&fifo, || child_alive(pid), Duration::from_secs(10))?;
        record_namespaces_once_exec(record, pid)?;
        return Ok(entry.save(record)?);
    }
    let pins = entry.subdir("ns")?;
    for kind in record.shared_kinds() {
        crate::pin(pid, kind, &pins)?;
    }
    record_namespaces(record, pid)?;
    record.infra = ProcessIdentity::of(pid.as_raw());
    entry.save(record)?;
    let pid = created.detach();
    start_fifo(&fifo, || child_alive(pid), Duration::from_secs(10))?;
    Ok(())
}

/// [`record_namespaces`] of a rootless pod's infra process, released from its fifo: until
/// its exec is through it is not dumpable, and its `/proc/PID/ns` refused to us (EACCES),
/// so that is tried again, for a bounded time, while it lives.
fn record_namespaces_once_exec(
    record: &mut PodRecord,
    pid: nix::unistd::Pid,
) -> Result<(), RuntimeError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match record_namespaces(record, pid) {
            Err(_) if child_alive(pid) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            done => return done,
        }
    }
}

/// The directories of the infra process's cgroup (below the pod's; under the systemd driver
/// its scope in the pod's slice), made or not; empty when the pod has no cgroup.
pub(crate) fn cgroup_paths(record: &PodRecord) -> Result<Vec<PathBuf>, RuntimeError> {
    let Some(unit) = record.cgroup_unit.as_deref() else {
        return Ok(record
            .cgroup_paths
            .iter()
            .map(|p| p.join(INFRA_CGROUP))
            .collect());
    };
    let slice = peapod_runtime::cgroups::open_pod(&record.cgroup_paths, Some(unit))?;
    let scope = slice.map(|s| s.scope_in_slice(INFRA_CGROUP, Default::default()));
    let scope = scope.transpose().map_err(RuntimeError::runtime)?;
    Ok(scope.map(|s| s.paths()).unwrap_or_default())
}

/// Records the inode of each shared namespace of the infra process `pid`.
fn record_namespaces(record: &mut PodRecord, pid: nix::unistd::Pid) -> Result<(), RuntimeError> {
    for kind in record.shared_kinds() {
        let id = NamespaceId::of(Some(pid), kind).map_err(RuntimeError::runtime)?;
        record.namespaces.insert(kind.to_string(), id.inode);
    }
    Ok(())
}

/// Unmounts and removes every pin of the pod (also one its record does not know, left by a
/// `pod create` that died between pinning and saving).
pub(crate) fn unpin_all(entry: &PodEntry) -> Result<(), RuntimeError> {
    let dir = entry.dir().join("ns");
    let Ok(pins) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for pin in pins.flatten() {
        crate::unpin(&pin.path())?;
    }
    Ok(())
}

/// The infra process's spec: the shared namespaces and a mount namespace, the root `root`
/// (empty, read-only) with only the pause binary bound into it, no capabilities. A rootless
/// pod's shared namespaces include its user namespace, with the caller's ids mapped as a
/// rootless container's are, and the infra process gets a PID namespace of its own when the
/// pod shares none (mounting its `/proc` needs one owned by its user namespace).
fn spec(root: &Path, record: &PodRecord, init: &Path) -> anyhow::Result<Spec> {
    let mut spec = crate::userns::infra_base_spec(record);
    let mut namespaces = vec![LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Mount)
        .build()?];
    if record.rootless && !record.shares(peapod_ns::Namespace::Pid) {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Pid)
                .build()?,
        );
    }
    for kind in record.shared_kinds() {
        let typ = peapod_container::oci_namespace_type(kind);
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| anyhow!("the default spec has no linux section"))?;
    linux.set_namespaces(Some(namespaces));
    linux.set_masked_paths(None);
    linux.set_readonly_paths(None);
    linux.set_resources(None);
    spec.set_hostname(record.hostname.clone());
    if let Some(r) = spec.root_mut() {
        r.set_path(root.to_owned()).set_readonly(Some(true));
    }
    // /proc only because the process reopens its exec fifo through /proc/self/fd before it
    // execs (see `child.rs`); pause itself reads nothing.
    let mut mounts: Vec<_> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.destination() == Path::new("/proc"))
        .cloned()
        .collect();
    mounts.push(peapod_runtime::init::mount(init, PAUSE)?);
    spec.set_mounts(Some(mounts));
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(vec![PAUSE.to_owned(), "-P".to_owned()]));
        process.set_terminal(Some(false));
        let none = oci_spec::runtime::Capabilities::new();
        process.set_capabilities(Some(
            LinuxCapabilitiesBuilder::default()
                .bounding(none.clone())
                .effective(none.clone())
                .permitted(none.clone())
                .inheritable(none.clone())
                .ambient(none)
                .build()?,
        ));
    }
    Ok(spec)
}

/// Whether our child `pid` has not exited (a zombie child still answers `kill(pid, 0)`).
pub(crate) fn child_alive(pid: nix::unistd::Pid) -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    // WNOWAIT: the exit status stays for whoever reaps the child.
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED;
    matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive))
}
