//! `volumeMounts[].subPath`: a path inside a volume, mounted instead of the whole volume.
//!
//! The volume may be written by another container of the pod (an emptyDir) or by the host
//! (a hostPath), so the path is an attacker's: it is resolved once, with `openat2`
//! `RESOLVE_BENEATH` (a symbolic link or `..` out of the volume fails, `/proc` magic links
//! fail), and the object found is bind-mounted from its descriptor onto a staging file in
//! the pod's state, which the container's mount is made from. No path is looked up twice,
//! so a link swapped in after the check is never followed (as the kubelet does since
//! CVE-2017-1002101). The staging mount is removed once the container has made its mounts.

use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;
use peapod_runtime::Error as RuntimeError;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::{ContainerPlan, PodPlan};

/// The staging mounts of one container's start; unmounted and removed on drop.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    paths: Vec<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for path in &self.paths {
            unstage(path);
        }
    }
}

/// Unmounts and removes a staging file or directory (one a killed monitor left, too).
fn unstage(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
}

/// Unmounts and removes every staging mount of the pod in `pod_dir` (a monitor killed
/// while starting a container leaves one). Must succeed before the pod's directory is
/// removed: removing it recursively would otherwise descend into the mounted volume.
pub(crate) fn unstage_all(pod_dir: &Path) -> Result<(), RuntimeError> {
    let dir = pod_dir.join(STAGING);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        unstage(&entry.path());
    }
    match std::fs::remove_dir(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::runtime(anyhow!(
            "cannot remove the subPath staging mounts in {}: {e}",
            dir.display()
        ))),
    }
}

/// The directory of the staging mounts in a pod's directory.
const STAGING: &str = "subpaths";

/// Points each mount of `spec` that container `c` (id `id`) has with a `subPath` at a
/// staging mount of that path, resolved inside its volume; errors name the mount.
pub(crate) fn stage(
    spec: &mut Spec,
    plan: &PodPlan,
    c: &ContainerPlan,
    pod_dir: &Path,
    id: &str,
) -> Result<Staged, RuntimeError> {
    let mut staged = Staged::default();
    if c.mounts.iter().all(|m| m.sub_path.is_none()) {
        return Ok(staged);
    }
    let dir = pod_dir.join(STAGING);
    std::fs::create_dir_all(&dir)
        .map_err(|e| RuntimeError::runtime(anyhow!("{}: {e}", dir.display())))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (j, m) in c.mounts.iter().enumerate() {
        let Some(sub) = &m.sub_path else { continue };
        let (volume, _) =
            crate::play::volume_dir(plan, &m.volume, pod_dir).map_err(RuntimeError::runtime)?;
        let target = dir.join(format!("{id}-{j}"));
        unstage(&target);
        let fail = |problem: String| {
            RuntimeError::runtime(anyhow!(
                "container {}: volumeMounts[{j}].subPath {sub:?} of volume {}: {problem}",
                c.name,
                m.volume
            ))
        };
        bind_beneath(&volume, Path::new(sub), &target).map_err(fail)?;
        staged.paths.push(target.clone());
        let entry = mounts
            .iter_mut()
            .find(|x| {
                x.destination() == &m.destination && x.source().as_deref() == Some(volume.as_path())
            })
            .ok_or_else(|| fail("no mount of the volume in the spec".to_owned()))?;
        entry.set_source(Some(target));
    }
    spec.set_mounts(Some(mounts));
    Ok(staged)
}

/// Bind-mounts `sub`, resolved beneath `volume` (made as a directory when missing, as the
/// kubelet does), onto `target` (made as an empty file or directory).
fn bind_beneath(volume: &Path, sub: &Path, target: &Path) -> Result<(), String> {
    let root = rustix::fs::open(
        volume,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open the volume: {e}"))?;
    let open = || {
        rustix::fs::openat2(
            &root,
            sub,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let fd = match open() {
        Err(rustix::io::Errno::NOENT) => {
            // Made inside the volume (RESOLVE_IN_ROOT): a link out of it resolves inside.
            peapod_rootfs::InRoot::open(volume)
                .and_then(|r| r.create_dir_all(sub))
                .map_err(|e| format!("cannot make it: {e}"))?;
            open()
        }
        other => other,
    }
    .map_err(|e| match e {
        rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => {
            "leaves the volume (a symbolic link or '..' out of it): refused".to_owned()
        }
        e => format!("cannot open it: {e}"),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("cannot stat it: {e}"))?;
    let is_dir =
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory;
    let made = match is_dir {
        true => std::fs::create_dir(target),
        false => std::fs::File::create(target).map(drop),
    };
    made.map_err(|e| format!("cannot make {}: {e}", target.display()))?;
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        unstage(target);
        format!("cannot mount it: {e}")
    })
}
