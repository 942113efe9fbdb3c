//! Rootless layers keep their owners: after a layer is written (every file the caller's), a
//! child process in a user namespace with the caller's maps (its own id as 0, its subordinate
//! ranges above) gives each file the owner the layer names. Inside that namespace the ids are
//! the layer's own, so the kernel stores the host ids they map to, and a container with the
//! same maps sees the layer's ids again, as podman's rootless storage does.
//!
//! The child acts only on what it finds at each path below the layer's directory, opened as
//! the unpacking opened it (`openat2` beneath the layer, no symbolic link followed), and only
//! when it is still the kind of file the entry made: a later entry that replaced it (with a
//! link, say) is not followed. Ids the maps leave out stay the caller's, with one warning.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};

use peapod_ns::{is_mapped, IdMap, RootlessMaps};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};

use crate::{Error, Result};

/// One entry of a layer whose owner is not root.
#[derive(Debug, Clone)]
pub(crate) struct Owned {
    /// Its path below the layer's directory (empty: the directory itself).
    pub(crate) path: Vec<OsString>,
    /// What the entry made.
    pub(crate) file_type: FileType,
    /// The owner the layer gives it.
    pub(crate) uid: u32,
    /// The group the layer gives it.
    pub(crate) gid: u32,
    /// Its mode (set again: a change of owner clears setuid and setgid).
    pub(crate) mode: u32,
}

/// Gives the entries `owned` of the layer directory `root` their owners, in a user
/// namespace with `maps`.
pub(crate) fn shift(
    root: &OwnedFd,
    layer: &str,
    maps: &RootlessMaps,
    owned: &[Owned],
) -> Result<()> {
    warn_unmapped(layer, maps, owned);
    let owned: Vec<Owned> = owned
        .iter()
        .map(|o| mapped_only(o, maps))
        .filter(|o| o.uid != 0 || o.gid != 0)
        .collect();
    if owned.is_empty() {
        return Ok(());
    }
    let failed = |problem: String| Error::Owners {
        layer: layer.to_owned(),
        problem,
    };
    // SAFETY: the child only makes system calls (openat2, fstat, chown, chmod, close) on
    // memory prepared before the fork, and leaves through _exit.
    let done = unsafe { peapod_ns::in_user_namespace(maps, || give_owners(root, &owned)) }
        .map_err(|e| failed(e.to_string()))?;
    match done {
        true => Ok(()),
        false => Err(failed(
            "the process in the user namespace could not change them".into(),
        )),
    }
}

/// `owned` with an id the maps leave out replaced by 0 (the caller).
fn mapped_only(owned: &Owned, maps: &RootlessMaps) -> Owned {
    let keep = |maps: &[IdMap], id: u32| if is_mapped(maps, id) { id } else { 0 };
    Owned {
        uid: keep(&maps.uids, owned.uid),
        gid: keep(&maps.gids, owned.gid),
        ..owned.clone()
    }
}

/// One warning naming the ids of the layer that the maps leave out.
fn warn_unmapped(layer: &str, maps: &RootlessMaps, owned: &[Owned]) {
    let outside = |maps: &[IdMap], ids: &mut dyn Iterator<Item = u32>| {
        ids.filter(|id| !is_mapped(maps, *id))
            .collect::<std::collections::BTreeSet<u32>>()
    };
    let uids = outside(&maps.uids, &mut owned.iter().map(|o| o.uid));
    let gids = outside(&maps.gids, &mut owned.iter().map(|o| o.gid));
    if uids.is_empty() && gids.is_empty() {
        return;
    }
    let list = |ids: &std::collections::BTreeSet<u32>| {
        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    };
    tracing::warn!(
        "layer {layer}: files of uids [{}] and gids [{}] are beyond your subordinate ranges \
         (/etc/subuid, /etc/subgid): they are root's in the container",
        list(&uids),
        list(&gids)
    );
}

/// In the child: each entry's owner, then its mode. False when one failed.
fn give_owners(root: &OwnedFd, owned: &[Owned]) -> bool {
    owned.iter().all(|o| give_owner(root, o).is_ok())
}

fn give_owner(root: &OwnedFd, owned: &Owned) -> rustix::io::Result<()> {
    let Some((name, parents)) = owned.path.split_last() else {
        rustix::fs::fchown(
            root,
            Some(Uid::from_raw(owned.uid)),
            Some(Gid::from_raw(owned.gid)),
        )?;
        return rustix::fs::fchmod(root, Mode::from_raw_mode(owned.mode));
    };
    let mut dir = rustix::io::dup(root)?;
    for part in parents {
        dir = rustix::fs::openat2(
            &dir,
            part.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
    }
    let file = rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let found = FileType::from_raw_mode(rustix::fs::fstat(&file)?.st_mode);
    if found != owned.file_type {
        // A later entry of the layer replaced it; that one has its own record.
        return Ok(());
    }
    rustix::fs::chownat(
        file.as_fd(),
        "",
        Some(Uid::from_raw(owned.uid)),
        Some(Gid::from_raw(owned.gid)),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if found == FileType::Symlink {
        return Ok(());
    }
    // Not a link (checked above, and nothing but this layer's unpacking writes here).
    rustix::fs::chmodat(
        &dir,
        name.as_os_str(),
        Mode::from_raw_mode(owned.mode),
        AtFlags::empty(),
    )
}
