//! A container's cgroup as the lifecycle sees it: made from the spec by `create`, found again
//! from the record by `delete`, `kill`, `pids`, `pause`, `resume`, `update` and `events`; and
//! a pod's, which `peapod-pod` makes and its containers' go below.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use oci_spec::runtime::{LinuxResources, Spec};
use peapod_cgroups::systemd::{Properties, SystemdPath};
use peapod_cgroups::{Cgroup, DeviceFilter, Layout};
use peapod_state::{ContainerId, Record};

use crate::{Error, Result, Runtime};

/// How long killing everything in a cgroup, or freezing it, may take.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes the cgroup of container `id` (`linux.cgroupsPath`; or `<id>` below `parent`, the
/// cgroup of the container's pod; or `peapod/<id>` below peapod's own cgroup), writes the
/// limits of `linux.resources` into it and attaches the device program of
/// `linux.resources.devices` (see [`filter_devices`]), all before the container process
/// exists. Rootless it goes where peapod's cgroup v2 parent is delegated to the caller (see
/// [`delegated`]); elsewhere, without limits, there is none (an unprivileged user can rarely
/// write cgroups, and runc goes on without), and limits are refused in one line. On failure
/// nothing is left.
///
/// With `systemd` (`--systemd-cgroup`, and not a pod's container) nothing is made yet: the
/// scope is made when the container's init is added ([`Cgroup::systemd`]), and
/// [`limit_scope`] then writes the rest.
pub fn create(
    id: &ContainerId,
    spec: &Spec,
    rootless: bool,
    parent: Option<&Cgroup>,
    systemd: bool,
) -> Result<Option<Cgroup>> {
    let linux = spec.linux().as_ref();
    let resources = linux.and_then(|l| l.resources().as_ref());
    if systemd && parent.is_none() {
        return scope(id, spec).map(Some);
    }
    let in_path = linux.and_then(|l| l.cgroups_path().as_ref()).is_some();
    if let Some(slice) = parent.filter(|p| p.slice().is_some() && !in_path) {
        return scope_in_pod(id, slice, resources).map(Some);
    }
    // Rootless without limits a cgroup is a bonus: only where delegated, and its failure is
    // a warning, not the container's.
    let optional = rootless && resources.is_none() && parent.is_none();
    if optional && !Layout::detect().is_ok_and(|layout| delegated(&layout)) {
        tracing::debug!("rootless without linux.resources nor a delegated cgroup: no cgroup");
        return Ok(None);
    }
    let layout = Layout::detect().map_err(Error::runtime)?;
    // Checked before anything is made, so that rules the kernel cannot follow leave no trace.
    let rules = resources.and_then(|r| r.devices().as_deref());
    let devices = DeviceFilter::new(rules.unwrap_or_default()).map_err(Error::runtime)?;
    let made = match (linux.and_then(|l| l.cgroups_path().clone()), parent) {
        (Some(path), _) => Cgroup::create(&layout, &path),
        (None, Some(parent)) => parent.create_child(Path::new(id.as_str())),
        (None, None) => Cgroup::create(&layout, &Cgroup::default_path(id.as_str())),
    };
    let cgroup = match made {
        Ok(cgroup) => cgroup,
        Err(e) if optional => {
            tracing::warn!("the container goes without a cgroup: {e}");
            return Ok(None);
        }
        Err(e) => return Err(refused(rootless, &layout, e)),
    };
    let cgroup = limited(cgroup, resources)?;
    if let Err(e) = filter_devices(&cgroup, &devices, rootless) {
        cgroup.undo();
        return Err(e);
    }
    Ok(Some(cgroup))
}

/// Where [`create`] makes the cgroup of container `id`, one directory per hierarchy, without
/// making anything: recorded before it is made, so that a `create` killed while making it
/// leaves a record that says where to look. Empty where [`create`] makes none.
pub fn locate(
    id: &ContainerId,
    spec: &Spec,
    rootless: bool,
    parent: Option<&Cgroup>,
) -> Result<Vec<PathBuf>> {
    let linux = spec.linux().as_ref();
    let optional = rootless && linux.and_then(|l| l.resources().as_ref()).is_none();
    if optional && parent.is_none() && !Layout::detect().is_ok_and(|layout| delegated(&layout)) {
        return Ok(Vec::new());
    }
    let path = match (linux.and_then(|l| l.cgroups_path().clone()), parent) {
        (Some(path), _) => path,
        (None, Some(parent)) if parent.slice().is_some() => {
            return Ok(scope_in_pod(id, parent, None)?.paths())
        }
        (None, Some(parent)) => {
            return Ok(parent.paths().iter().map(|p| p.join(id.as_str())).collect())
        }
        (None, None) => Cgroup::default_path(id.as_str()),
    };
    let layout = Layout::detect().map_err(Error::runtime)?;
    Ok(Cgroup::locate(&layout, &path)
        .map_err(Error::runtime)?
        .paths())
}

/// Whether this process may make cgroups where a container's goes by default on cgroup v2
/// (`peapod/ID` beside its own cgroup, below the parent of the cgroup `/proc/self/cgroup`
/// names): the caller can write that directory, its `cgroup.procs` and its
/// `cgroup.subtree_control`, as systemd's `user@UID.service` delegates them (and as podman and
/// crun check).
pub fn delegated(layout: &Layout) -> bool {
    let Layout::V2(unified) = layout else {
        return false;
    };
    let own = unified.own.strip_prefix("/").unwrap_or(&unified.own);
    let Some(parent) = own.parent() else {
        return false;
    };
    let dir = unified.mount.join(parent);
    let writable = |path: &Path| nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok();
    [
        dir.clone(),
        dir.join("cgroup.procs"),
        dir.join("cgroup.subtree_control"),
    ]
    .iter()
    .all(|p| writable(p))
}

/// Whether a pod of `rt` gets a cgroup: always as root; rootless only on cgroup v2 where
/// peapod's parent is delegated to the caller ([`delegated`]), where its containers' go too.
pub fn pods_get_cgroups(rt: &Runtime) -> bool {
    !rt.rootless || Layout::detect().is_ok_and(|layout| delegated(&layout))
}

/// Attaches `filter`'s device program to `cgroup` (replacing the one there), or refuses the
/// container in one line where the kernel cannot take it and the rules deny something.
///
/// Rootless, the kernel always refuses (loading a cgroup program needs `CAP_SYS_ADMIN` in
/// the initial user namespace), and that is let through, as runc does: the container's user
/// namespace already keeps it from devices, since it cannot `mknod` one and what it mounts
/// is `nodev`; refusing would refuse every rootless container with limits.
pub(crate) fn filter_devices(cgroup: &Cgroup, filter: &DeviceFilter, rootless: bool) -> Result<()> {
    match cgroup.filter_devices(filter) {
        Err(peapod_cgroups::Error::DeviceFilter { source, .. })
            if rootless && source.is_permission() =>
        {
            tracing::debug!("rootless: no device program ({source})");
            Ok(())
        }
        other => other.map_err(Error::runtime),
    }
}

/// The error for a cgroup that could not be made: rootless and refused by the kernel, a
/// sentence that says why (the cgroup files belong to root unless delegated), not a path.
fn refused(rootless: bool, layout: &Layout, e: peapod_cgroups::Error) -> Error {
    let denied = match &e {
        peapod_cgroups::Error::Io { source, .. } | peapod_cgroups::Error::Write { source, .. } => {
            source.kind() == std::io::ErrorKind::PermissionDenied
        }
        _ => false,
    };
    if !(rootless && denied) {
        return Error::runtime(e);
    }
    let version = if layout.is_v2() { "v2" } else { "v1" };
    Error::runtime(anyhow!(
        "rootless containers cannot have limits (linux.resources) here: this host has cgroup \
         {version}, whose cgroups only root may make unless one is delegated to uid {} ({e})",
        nix::unistd::geteuid()
    ))
}

/// The cgroup path of pod `name` of the state root `root`, below peapod's own cgroup:
/// `peapod/pod:NAME:TAG`, beside the default cgroups of containers, which it can never be (a
/// container id has no ':'). TAG ([`state_root_tag`]) tells the pods of one state root from
/// another's: pod names are unique in a state root, but the cgroup tree is the host's.
pub fn pod_path(root: &Path, name: &ContainerId) -> PathBuf {
    Path::new(peapod_cgroups::DEFAULT_PARENT).join(format!("pod:{name}:{}", state_root_tag(root)))
}

/// The first 8 hex digits of the SHA-256 of the state root's canonical path (as given when it
/// cannot be resolved): the same for every command on that state root, different for another.
pub fn state_root_tag(root: &Path) -> String {
    use sha2::Digest as _;
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the cgroup of pod `name` ([`pod_path`]) goes, one directory per hierarchy, to be
/// recorded before [`create_pod`] makes it. One that exists already is refused rather than
/// joined: it is left over from a pod of this name in this state root.
pub fn locate_new_pod(rt: &Runtime, name: &ContainerId) -> Result<Vec<PathBuf>> {
    let paths = locate_pod(rt, name)?;
    match paths.iter().find(|p| p.exists()) {
        Some(dir) => Err(Error::runtime(anyhow!(
            "pod {name}: its cgroup {} exists already",
            dir.display()
        ))),
        None => Ok(paths),
    }
}

/// Where the cgroup of pod `name` ([`pod_path`], or its slice [`pod_slice`]) is, one
/// directory per hierarchy.
pub fn locate_pod(rt: &Runtime, name: &ContainerId) -> Result<Vec<PathBuf>> {
    let layout = Layout::detect().map_err(Error::runtime)?;
    let cgroup = match pod_slice(rt, name)? {
        Some(slice) => Cgroup::systemd_slice(&layout, &slice, None),
        None => Cgroup::locate(&layout, &pod_path(&rt.root, name)),
    };
    Ok(cgroup.map_err(Error::runtime)?.paths())
}

/// Makes the cgroup of pod `name` ([`pod_path`]) with the limits `resources`, which hold
/// for its containers together; under the systemd driver its slice ([`pod_slice`]), the
/// limits its properties. On failure nothing is left.
pub fn create_pod(
    rt: &Runtime,
    name: &ContainerId,
    resources: Option<&LinuxResources>,
) -> Result<Cgroup> {
    let layout = Layout::detect().map_err(Error::runtime)?;
    if let Some(slice) = pod_slice(rt, name)? {
        let properties = properties(resources)?;
        return Cgroup::systemd_slice(&layout, &slice, Some(&properties)).map_err(Error::runtime);
    }
    let cgroup = Cgroup::create(&layout, &pod_path(&rt.root, name)).map_err(Error::runtime)?;
    limited(cgroup, resources)
}

/// Where the systemd driver puts pods' slices, as podman does.
pub const POD_SLICE_PARENT: &str = "machine.slice";

/// The slice of pod `name` under the systemd driver (`--systemd-cgroup`):
/// `machine-peapod_pod_NAME_TAG.slice` (TAG as in [`pod_path`]); `None` on cgroupfs.
pub fn pod_slice(rt: &Runtime, name: &ContainerId) -> Result<Option<String>> {
    if !rt.systemd_cgroup {
        return Ok(None);
    }
    require_systemd()?;
    let tag = state_root_tag(&rt.root);
    peapod_cgroups::systemd::pod_slice(POD_SLICE_PARENT, name.as_str(), &tag)
        .map(Some)
        .map_err(Error::runtime)
}

/// The cgroup of a pod as recorded: its directories, or its slice `unit` (whose scopes its
/// containers are).
pub fn open_pod(paths: &[PathBuf], unit: Option<&str>) -> Result<Option<Cgroup>> {
    let Some(unit) = unit else {
        return open(paths);
    };
    let layout = Layout::detect().map_err(Error::runtime)?;
    Cgroup::systemd_slice(&layout, unit, None)
        .map(Some)
        .map_err(Error::runtime)
}

/// The scope of container `id` in its pod's slice `slice`, with the limits systemd has
/// properties for (the rest are written by [`limit_scope`] once it is made).
fn scope_in_pod(
    id: &ContainerId,
    slice: &Cgroup,
    resources: Option<&LinuxResources>,
) -> Result<Cgroup> {
    slice
        .scope_in_slice(id.as_str(), properties(resources)?)
        .map_err(Error::runtime)
}

/// The unit properties of `resources` (none without).
fn properties(resources: Option<&LinuxResources>) -> Result<Properties> {
    Ok(resources
        .map(Properties::of)
        .transpose()
        .map_err(Error::runtime)?
        .unwrap_or_default())
}

/// Refuses the systemd driver where PID 1 is not systemd.
fn require_systemd() -> Result<()> {
    match peapod_cgroups::systemd::booted() {
        true => Ok(()),
        false => Err(Error::runtime(anyhow!(
            "--systemd-cgroup: PID 1 is not systemd here (no /run/systemd/system); use cgroupfs"
        ))),
    }
}

/// `cgroup` with `resources` written into it; removed when that fails.
fn limited(cgroup: Cgroup, resources: Option<&LinuxResources>) -> Result<Cgroup> {
    if let Some(resources) = resources {
        if let Err(e) = cgroup.apply(resources) {
            cgroup.undo();
            return Err(Error::runtime(e));
        }
    }
    tracing::debug!("cgroup {:?}", cgroup.paths());
    Ok(cgroup)
}

/// The cgroup the record names, if any.
pub fn of_record(record: &Record) -> Result<Option<Cgroup>> {
    open(&record.cgroup_paths)
}

/// The cgroup whose directories are `paths` (a container's or a pod's, as recorded), if any.
pub fn open(paths: &[PathBuf]) -> Result<Option<Cgroup>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let layout = Layout::detect().map_err(Error::runtime)?;
    Ok(Some(Cgroup::open(&layout, paths)))
}

/// The cgroup of a running container, or an error saying it has none.
pub fn required(id: &ContainerId, record: &Record) -> Result<Cgroup> {
    of_record(record)?.ok_or_else(|| {
        Error::runtime(anyhow!(
            "container {id} has no cgroup (it was created rootless without limits)"
        ))
    })
}

/// Kills what is left in, and removes, the cgroup at the default path of a container whose
/// `create` died before it recorded anything (a crash of peapod itself).
pub fn remove_unrecorded(id: &ContainerId) -> Result<()> {
    let Ok(layout) = Layout::detect() else {
        return Ok(());
    };
    let cgroup =
        Cgroup::locate(&layout, &Cgroup::default_path(id.as_str())).map_err(Error::runtime)?;
    if !cgroup.paths().iter().any(|p| p.exists()) {
        return Ok(());
    }
    empty(&cgroup, true)?;
    cgroup.remove().map_err(Error::runtime)
}

/// Kills every process in `cgroup` when `kill` is set, or when there are any left anyway (a
/// stopped container's leftovers, e.g. the children of an init that died; on v2 also in the
/// cgroups below, such as a pod's `infra` leaf).
pub fn empty(cgroup: &Cgroup, kill: bool) -> Result<()> {
    if kill || cgroup.populated().map_err(Error::runtime)? {
        cgroup.kill_all(TIMEOUT).map_err(Error::runtime)?;
    }
    Ok(())
}

/// Says so on stderr when the OOM killer killed in the cgroup of container `id` (called when
/// its process died of SIGKILL, to tell a user why).
pub fn report_oom(rt: &Runtime, id: &ContainerId) {
    let record = rt
        .store()
        .ok()
        .and_then(|s| s.load(id).ok()?.record().ok()?);
    let cgroup = record.as_ref().and_then(|r| of_record(r).ok()?);
    let kills = cgroup
        .and_then(|c| c.stats().ok())
        .map_or(0, |s| s.oom_kills);
    if kills > 0 {
        tracing::warn!("container {id}: the OOM killer killed {kills} process(es): out of memory");
    }
}

/// The systemd driver's cgroup of container `id`: the scope `linux.cgroupsPath`
/// (`slice:prefix:name`) names, with the limits systemd has properties for.
fn scope(id: &ContainerId, spec: &Spec) -> Result<Cgroup> {
    require_systemd()?;
    let linux = spec.linux().as_ref();
    let resources = linux.and_then(|l| l.resources().as_ref());
    let path = linux.and_then(|l| l.cgroups_path().as_ref());
    let path = match path.map(|p| p.to_str()) {
        Some(None) => return Err(Error::runtime(anyhow!("linux.cgroupsPath is not UTF-8"))),
        Some(Some(p)) => Some(p),
        None => None,
    };
    let path = SystemdPath::parse(path, id.as_str()).map_err(Error::runtime)?;
    let properties = properties(resources)?;
    let layout = Layout::detect().map_err(Error::runtime)?;
    Cgroup::systemd(&layout, path, properties).map_err(Error::runtime)
}

/// Writes the limits of `spec` to the files of a scope systemd has just made (those it has
/// properties for again, as runc does) and attaches the device program.
pub fn limit_scope(cgroup: &Cgroup, spec: &Spec, rootless: bool) -> Result<()> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let rules = resources.and_then(|r| r.devices().as_deref());
    let devices = DeviceFilter::new(rules.unwrap_or_default()).map_err(Error::runtime)?;
    if let Some(resources) = resources {
        cgroup.apply(resources).map_err(Error::runtime)?;
    }
    filter_devices(cgroup, &devices, rootless)
}

/// `update` of a container in a systemd scope: its properties first, so that systemd
/// keeps them, then the files (below).
pub fn update_scope(unit: &str, resources: &LinuxResources) -> Result<()> {
    let properties = Properties::of(resources).map_err(Error::runtime)?;
    peapod_cgroups::systemd::set_properties(unit, &properties).map_err(Error::runtime)
}

/// Stops the scope `unit` of a deleted container (its cgroup is then gone) and forgets it.
pub fn stop_scope(unit: &str) -> Result<()> {
    peapod_cgroups::systemd::stop_unit(unit).map_err(Error::runtime)
}

/// Where the systemd driver's scope of container `id` is (its cgroup directories) and its
/// unit, without making anything: what a record made before the scope holds, so that a
/// `create` killed once systemd has made it leaves a record that says which unit to stop.
pub fn scope_paths(id: &ContainerId, spec: &Spec) -> Result<(Vec<PathBuf>, Option<String>)> {
    let scope = scope(id, spec)?;
    Ok((scope.paths(), scope.unit().map(str::to_owned)))
}

/// Stops the systemd scope of a container being deleted: the unit its record names, else
/// (a record written before the unit was recorded, or one salvaged from a corrupt file) the
/// one its cgroup's directory is named after, as create names it (`prefix-name.scope`),
/// when systemd has that as a peapod scope. Nothing without a `.scope` directory.
pub fn stop_recorded_scope(unit: Option<&str>, paths: &[PathBuf]) -> Result<()> {
    if let Some(unit) = unit {
        return stop_scope(unit);
    }
    let derived = paths
        .first()
        .and_then(|p| p.file_name()?.to_str())
        .filter(|name| name.ends_with(".scope"));
    let Some(unit) = derived.filter(|_| peapod_cgroups::systemd::booted()) else {
        return Ok(());
    };
    if peapod_cgroups::systemd::stop_peapod_scope(unit).map_err(Error::runtime)? {
        tracing::info!("stopped {unit}, the unrecorded scope of a deleted container");
    }
    Ok(())
}
