//! uid and gid maps of a new user namespace.

use std::fmt;
use std::path::PathBuf;

use nix::unistd::Pid;

use crate::{Error, Result};

/// One line of `/proc/PID/uid_map` or `gid_map`: `count` ids from `outside` (in the parent
/// user namespace) appear as the ids from `inside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id outside.
    pub outside: u32,
    /// How many ids.
    pub count: u32,
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.count)
    }
}

fn render(maps: &[IdMap]) -> String {
    maps.iter().map(|m| format!("{m}\n")).collect()
}

/// Which map: the names of its `/proc` file, helper and subordinate-id file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Uid,
    Gid,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Uid => "uid",
            Kind::Gid => "gid",
        }
    }

    pub(crate) fn helper(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }

    pub(crate) fn subordinate_file(self) -> &'static str {
        match self {
            Kind::Uid => "/etc/subuid",
            Kind::Gid => "/etc/subgid",
        }
    }
}

/// Writes the uid and gid maps of the user namespace of process `pid`.
///
/// With `unprivileged` (the caller is not root) the kernel lets the caller write only a map
/// of its own id (one line, one id) and, for the gid map, only after `deny` is written to
/// `/proc/PID/setgroups` (as `unshare -r` does). Any other map goes through the set-uid
/// helpers `newuidmap`/`newgidmap` (shadow's, Debian package `uidmap`), which allow the
/// ranges `/etc/subuid` and `/etc/subgid` delegate to the caller, as runc, podman and
/// bubblewrap use them; setgroups then stays allowed. A missing helper or a range not
/// delegated is an error that names it, found before anything is written.
pub fn write_id_maps(pid: Pid, uids: &[IdMap], gids: &[IdMap], unprivileged: bool) -> Result<()> {
    let write = |name: &str, content: &str| {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::write(&path, content).map_err(|source| Error::IdMap { path, source })
    };
    let own_uid = nix::unistd::geteuid().as_raw();
    let own_gid = nix::unistd::getegid().as_raw();
    let uid_helper = if unprivileged && needs_helper(uids, own_uid) {
        Some(helper_for(Kind::Uid, uids, own_uid)?)
    } else {
        None
    };
    let gid_helper = if unprivileged && needs_helper(gids, own_gid) {
        Some(helper_for(Kind::Gid, gids, own_gid)?)
    } else {
        None
    };
    match uid_helper {
        Some(helper) => run_helper(&helper, Kind::Uid, pid, uids)?,
        None if !uids.is_empty() => write("uid_map", &render(uids))?,
        None => {}
    }
    match gid_helper {
        Some(helper) => run_helper(&helper, Kind::Gid, pid, gids)?,
        None => {
            if unprivileged {
                write("setgroups", "deny")?;
            }
            if !gids.is_empty() {
                write("gid_map", &render(gids))?;
            }
        }
    }
    Ok(())
}

/// Whether an unprivileged caller whose own id is `own` needs the helper for `maps`: the
/// kernel takes from it only one line mapping exactly `own`.
fn needs_helper(maps: &[IdMap], own: u32) -> bool {
    match maps {
        [] => false,
        [map] => map.count != 1 || map.outside != own,
        _ => true,
    }
}

/// The helper for `maps`, after checking that every id they map, other than the caller's own,
/// lies in a range the subordinate-id file delegates to the caller.
fn helper_for(kind: Kind, maps: &[IdMap], own: u32) -> Result<PathBuf> {
    let shown = maps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let helper = find_in_path(kind.helper()).ok_or_else(|| Error::MapHelper {
        message: format!(
            "the {} map {shown} needs {}, which is not installed (Debian package uidmap); \
             without it an unprivileged user can map only its own {} ({own})",
            kind.word(),
            kind.helper(),
            kind.word()
        ),
    })?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name);
    let uid = nix::unistd::geteuid().as_raw();
    let file = kind.subordinate_file();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let ranges = subordinate_ranges(&text, user.as_deref(), uid);
    for map in maps {
        let first = u64::from(map.outside);
        let last = first + u64::from(map.count).saturating_sub(1);
        if map.count == 1 && map.outside == own {
            continue;
        }
        let mut allowed = ranges.clone();
        allowed.push((u64::from(own), u64::from(own)));
        if !covers(&mut allowed, first, last) {
            let who = match &user {
                Some(name) => format!("user {name} (uid {uid})"),
                None => format!("uid {uid}"),
            };
            return Err(Error::MapHelper {
                message: format!(
                    "the {} map {map} needs host {}s {first}-{last}, which {file} does not \
                     delegate to {who}",
                    kind.word(),
                    kind.word()
                ),
            });
        }
    }
    Ok(helper)
}

/// Whether `ranges` (first, last id; sorted here) together cover every id of `first..=last`:
/// a delegation may be split over several lines.
fn covers(ranges: &mut [(u64, u64)], first: u64, last: u64) -> bool {
    ranges.sort_unstable();
    let mut next = first;
    for &(start, end) in ranges.iter() {
        if start > next {
            break;
        }
        next = next.max(end.saturating_add(1));
        if next > last {
            return true;
        }
    }
    next > last
}

/// The ranges (first, last id) that the subordinate-id file `text` gives to the user named
/// `user` or numbered `uid` (`NAME_OR_UID:START:COUNT` lines).
pub(crate) fn subordinate_ranges(text: &str, user: Option<&str>, uid: u32) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            let mine = Some(owner) == user || owner.parse::<u32>().ok() == Some(uid);
            let start: u64 = start.parse().ok()?;
            let count: u64 = count.parse().ok()?;
            (mine && count > 0).then(|| (start, start + count - 1))
        })
        .collect()
}

/// `name` in `$PATH`, or in the directories Debian installs it in when `$PATH` lacks them.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `newuidmap PID INSIDE OUTSIDE COUNT...` (or newgidmap); its complaint becomes the error.
fn run_helper(helper: &std::path::Path, kind: Kind, pid: Pid, maps: &[IdMap]) -> Result<()> {
    let mut command = std::process::Command::new(helper);
    command.arg(pid.to_string());
    for map in maps {
        command.args([
            map.inside.to_string(),
            map.outside.to_string(),
            map.count.to_string(),
        ]);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::MapHelper {
            message: format!("cannot run {}: {e}", helper.display()),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.lines().map(str::trim).filter(|l| !l.is_empty());
    Err(Error::MapHelper {
        message: format!(
            "{} refused the {} map ({}): {}",
            kind.helper(),
            kind.word(),
            output.status,
            said.collect::<Vec<_>>().join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_render_as_proc_lines() {
        let maps = [
            IdMap {
                inside: 0,
                outside: 1000,
                count: 1,
            },
            IdMap {
                inside: 1,
                outside: 100000,
                count: 65536,
            },
        ];
        assert_eq!(render(&maps), "0 1000 1\n1 100000 65536\n");
    }

    #[test]
    fn only_a_map_of_the_callers_own_id_is_written_without_the_helper() {
        let own = |outside, count| IdMap {
            inside: 0,
            outside,
            count,
        };
        assert!(!needs_helper(&[], 1000));
        assert!(!needs_helper(&[own(1000, 1)], 1000));
        assert!(needs_helper(&[own(1000, 2)], 1000));
        assert!(needs_helper(&[own(1001, 1)], 1000));
        assert!(needs_helper(&[own(1000, 1), own(100000, 65536)], 1000));
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let text = "alice:100000:65536\n1000:300000:10\nbob:200000:65536\nbad line\n";
        assert_eq!(
            subordinate_ranges(text, Some("alice"), 1000),
            [(100000, 165535), (300000, 300009)]
        );
        assert_eq!(subordinate_ranges(text, None, 1001), []);
    }

    #[test]
    fn a_range_may_be_covered_by_several_delegations() {
        let mut ranges = [(200, 299), (100, 199), (1000, 1000)];
        assert!(covers(&mut ranges, 100, 299));
        assert!(covers(&mut ranges, 1000, 1000));
        assert!(!covers(&mut ranges, 100, 300));
        assert!(!covers(&mut ranges, 50, 150));
    }
}
