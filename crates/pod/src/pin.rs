//! Pinning a namespace: a bind mount of its `/proc/PID/ns/KIND` file, which keeps it alive
//! without any process in it (as `ip netns add` does).

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::Pid;
use peapod_ns::Namespace;

use crate::error::mount_err;
use crate::{Error, Result};

/// Bind-mounts the `kind` namespace of `pid` onto `DIR/KIND` (made empty first) and returns
/// that path. `dir` must be below a private mount (see [`crate::PodStore`]).
pub fn pin(pid: Pid, kind: Namespace, dir: &Path) -> Result<PathBuf> {
    let file = dir.join(kind.proc_name());
    std::fs::File::create(&file).map_err(|source| Error::Mount {
        what: "cannot make the pin file",
        path: file.clone(),
        source,
    })?;
    let source = PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_name()));
    mount(
        Some(&source),
        &file,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(mount_err("cannot pin namespace on", &file))?;
    Ok(file)
}

/// Unmounts and removes a pin; a pin that is not mounted, or not there, is fine.
pub fn unpin(file: &Path) -> Result<()> {
    match umount2(file, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(mount_err("cannot unpin namespace", file)(e)),
    }
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Mount {
            what: "cannot remove the pin file",
            path: file.to_owned(),
            source,
        }),
    }
}
