//! The maps of a rootless container (the caller's id and its subordinate ranges), and work
//! done in a throwaway user namespace with them (owners of a layer's files, removing them).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::{ForkResult, Pid};

use crate::idmap::{find_in_path, subordinate_ranges, Kind};
use crate::{write_id_maps, Error, IdMap, Result};

/// The uid and gid maps a rootless container gets, as podman's: the caller's own id as 0 and,
/// above it, every range `/etc/subuid` (`/etc/subgid`) delegates to the caller (by name or
/// uid, several lines in the order of the file), when `newuidmap` (`newgidmap`) is
/// installed. Without ranges or helper: the caller's id alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootlessMaps {
    /// The uid map.
    pub uids: Vec<IdMap>,
    /// The gid map.
    pub gids: Vec<IdMap>,
}

impl RootlessMaps {
    /// The maps for the caller whose effective ids are `uid` and `gid`.
    pub fn for_ids(uid: u32, gid: u32) -> RootlessMaps {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let maps = |kind: Kind, own: u32| {
            let text = match find_in_path(kind.helper()) {
                Some(_) => std::fs::read_to_string(kind.subordinate_file()).unwrap_or_default(),
                None => String::new(),
            };
            stacked(own, &subordinate_ranges(&text, user.as_deref(), uid))
        };
        RootlessMaps {
            uids: maps(Kind::Uid, uid),
            gids: maps(Kind::Gid, gid),
        }
    }

    /// podman's `--userns keep-id` maps for the caller whose effective ids are `uid` and
    /// `gid`: the caller's ids as themselves, the subordinate ranges around them (inside ids
    /// from 0 up, skipping the caller's). Without ranges or helper: the caller's id alone.
    pub fn keep_id(uid: u32, gid: u32) -> RootlessMaps {
        let default = RootlessMaps::for_ids(uid, gid);
        let ranges = |maps: &[IdMap]| -> Vec<(u64, u64)> {
            maps.iter()
                .skip(1)
                .map(|m| {
                    let first = u64::from(m.outside);
                    (first, first + u64::from(m.count) - 1)
                })
                .collect()
        };
        RootlessMaps {
            uids: around(uid, &ranges(&default.uids)),
            gids: around(gid, &ranges(&default.gids)),
        }
    }

    /// The maps for this process's effective ids.
    pub fn for_this_process() -> RootlessMaps {
        RootlessMaps::for_ids(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    /// Whether the maps give more than the caller's own ids.
    pub fn has_ranges(&self) -> bool {
        self.uids.len() > 1 || self.gids.len() > 1
    }
}

/// `own` as 0, then each range (first, last) in turn from 1 up.
fn stacked(own: u32, ranges: &[(u64, u64)]) -> Vec<IdMap> {
    let mut maps = vec![IdMap {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next: u64 = 1;
    for &(first, last) in ranges {
        let (Ok(inside), Ok(outside), Ok(count)) = (
            u32::try_from(next),
            u32::try_from(first),
            u32::try_from(last - first + 1),
        ) else {
            break;
        };
        if inside.checked_add(count).is_none() {
            break;
        }
        maps.push(IdMap {
            inside,
            outside,
            count,
        });
        next += u64::from(count);
    }
    maps
}

/// `own` as itself, and each range (first, last) in turn on the inside ids from 0 up, split
/// where it would cover `own`; sorted by inside id.
fn around(own: u32, ranges: &[(u64, u64)]) -> Vec<IdMap> {
    let mut maps = vec![IdMap {
        inside: own,
        outside: own,
        count: 1,
    }];
    let own = u64::from(own);
    // 4294967295 is the kernel's "no id": the last one a map may reach is one below.
    let end = u64::from(u32::MAX);
    let mut next: u64 = 0;
    'ranges: for &(first, last) in ranges {
        let mut outside = first;
        while outside <= last {
            if next == own {
                next += 1;
            }
            let room = if next < own { own - next } else { end - next };
            let count = (last - outside + 1).min(room);
            let (Ok(inside), Ok(host), Ok(count)) = (
                u32::try_from(next),
                u32::try_from(outside),
                u32::try_from(count),
            ) else {
                break 'ranges;
            };
            if count == 0 || host.checked_add(count - 1).is_none() {
                break 'ranges;
            }
            maps.push(IdMap {
                inside,
                outside: host,
                count,
            });
            next += u64::from(count);
            outside += u64::from(count);
        }
    }
    maps.sort_by_key(|m| m.inside);
    maps
}

/// Whether `maps` map the id `inside`.
pub fn is_mapped(maps: &[IdMap], inside: u32) -> bool {
    maps.iter()
        .any(|m| inside >= m.inside && u64::from(inside) < u64::from(m.inside) + u64::from(m.count))
}

/// Runs `work` in a child process in a new user namespace with `maps` written (through
/// `newuidmap`/`newgidmap`), where it is root with every capability over the files of the
/// mapped ids: it may chown a file to any mapped id and remove what they own. The child's
/// exit code is `work`'s result; `Ok(false)` when `work` said it failed.
///
/// # Safety
///
/// As with `fork(2)`: when the calling process has other threads, `work` may only call
/// async-signal-safe functions (glibc's `malloc` is safe in a fork child, locks held by other
/// threads are not: no logging, no stdio).
pub unsafe fn in_user_namespace(maps: &RootlessMaps, work: impl FnOnce() -> bool) -> Result<bool> {
    let io = |e: nix::Error| Error::MapHelper {
        message: format!("cannot start a user namespace for the layer's owners: {e}"),
    };
    let (ready_read, ready_write) = nix::unistd::pipe().map_err(io)?;
    let (go_read, go_write) = nix::unistd::pipe().map_err(io)?;
    // SAFETY: the caller upholds the contract above; the child leaves only through _exit.
    match unsafe { nix::unistd::fork() }.map_err(io)? {
        ForkResult::Child => {
            drop(ready_read);
            drop(go_write);
            // SAFETY: unshare, write, read and _exit are async-signal-safe.
            unsafe {
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                let byte = [u8::from(ok)];
                libc::write(ready_write.as_raw_fd(), byte.as_ptr().cast(), 1);
                let mut go = [0u8];
                let mapped = libc::read(go_read.as_raw_fd(), go.as_mut_ptr().cast(), 1) == 1;
                let code = if ok && mapped && work() { 0 } else { 1 };
                libc::_exit(code)
            }
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            drop(go_read);
            let result = map_child(child, maps, ready_read, go_write);
            let status = nix::sys::wait::waitpid(child, None).map_err(io)?;
            result?;
            Ok(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)))
        }
    }
}

/// The parent's side: waits for the child's new namespace, maps it, lets it go on (closing
/// `go` without a byte stops it).
fn map_child(child: Pid, maps: &RootlessMaps, ready: OwnedFd, go: OwnedFd) -> Result<()> {
    let mut byte = [0u8];
    let read = nix::unistd::read(ready.as_raw_fd(), &mut byte).unwrap_or(0);
    if read != 1 || byte[0] != 1 {
        return Err(Error::MapHelper {
            message: "cannot make a user namespace (unshare failed)".into(),
        });
    }
    write_id_maps(child, &maps.uids, &maps.gids, true)?;
    nix::unistd::write(&go, &[1])
        .map(|_| ())
        .map_err(|e| Error::MapHelper {
            message: format!("the user namespace's process is gone: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stack_above_the_callers_id() {
        let maps = stacked(1000, &[(100000, 165535), (300000, 300009)]);
        let shown: Vec<String> = maps.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["0 1000 1", "1 100000 65536", "65537 300000 10"]);
        assert!(is_mapped(&maps, 65546));
        assert!(!is_mapped(&maps, 65547));
        assert_eq!(stacked(1000, &[]).len(), 1);
    }

    #[test]
    fn keep_id_puts_the_ranges_around_the_callers_own_id() {
        let shown = |maps: Vec<IdMap>| maps.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(around(1000, &[(100000, 165535)])),
            ["0 100000 1000", "1000 1000 1", "1001 101000 64536"]
        );
        // Split over two ranges, the second across the caller's id.
        assert_eq!(
            shown(around(5, &[(100, 102), (200, 209)])),
            ["0 100 3", "3 200 2", "5 5 1", "6 202 8"]
        );
        // A range smaller than the caller's id leaves a gap below it.
        assert_eq!(
            shown(around(1000, &[(100000, 100009)])),
            ["0 100000 10", "1000 1000 1"]
        );
        assert_eq!(shown(around(1000, &[])), ["1000 1000 1"]);
    }
}
