//! Switching the calling process's root to the prepared rootfs.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, pivot_root};

use crate::error::os;
use crate::{Error, Result};

fn step(step: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let step = step.into();
    move |e| Error::Pivot {
        step,
        source: os(e),
    }
}

/// Makes `root` (a mount point) the process's `/` and detaches the old root, so no host path
/// stays reachable. Uses `pivot_root(".", ".")`: the old root ends up stacked on the new one
/// and is then unmounted lazily, which needs no directory for it inside the rootfs.
///
/// Where `pivot_root` cannot work (a rootfs on the initramfs), it moves the mount onto `/`
/// and `chroot`s instead, and logs that it did.
pub(crate) fn pivot_into(root: &Path, no_pivot: bool) -> Result<()> {
    chdir(root).map_err(step(format!("chdir into {}", root.display())))?;
    if no_pivot {
        return move_and_chroot();
    }
    // The old root, to name it after the pivot: `mount(2)` does not follow the old root
    // stacked on the current directory, so "." there would be the new root, and making
    // "." rslave would make the container's own mounts (a Bidirectional bind among them)
    // slaves of the host's.
    let old_root = rustix::fs::open(
        "/",
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| step("open the old root")(nix::Error::from_raw(e.raw_os_error())))?;
    match pivot_root(".", ".") {
        Ok(()) => {
            rustix::process::fchdir(&old_root).map_err(|e| {
                step("chdir into the old root")(nix::Error::from_raw(e.raw_os_error()))
            })?;
            drop(old_root);
            // Keep the unmount below from propagating to the host's mounts.
            mount(
                None::<&str>,
                ".",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(step("make the old root a slave"))?;
            umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the old root"))?;
        }
        Err(nix::Error::EINVAL) if is_ramfs(Path::new("/")) => {
            tracing::info!("rootfs is on ramfs, where pivot_root cannot work: using chroot");
            return move_and_chroot();
        }
        Err(e) => return Err(step(format!("pivot_root into {}", root.display()))(e)),
    }
    chdir("/").map_err(step("chdir to the new root"))
}

/// Changes the root directory to `root` without touching any mount.
pub(crate) fn chroot_into(root: &Path) -> Result<()> {
    chroot(root).map_err(step(format!("chroot into {}", root.display())))?;
    chdir("/").map_err(step("chdir to the new root"))
}

/// Moves the rootfs mount (the current directory) onto `/` and chroots into it.
fn move_and_chroot() -> Result<()> {
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(step("move the rootfs onto /"))?;
    chroot(".").map_err(step("chroot into the rootfs"))?;
    chdir("/").map_err(step("chdir to the new root"))
}

fn is_ramfs(path: &Path) -> bool {
    // statfs(2) magic numbers (include/uapi/linux/magic.h); their type is glibc's or musl's.
    use nix::sys::statfs::FsType;
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    const TMPFS_MAGIC: FsType = FsType(0x0102_1994);
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == RAMFS_MAGIC || s.filesystem_type() == TMPFS_MAGIC)
        .unwrap_or(false)
}
