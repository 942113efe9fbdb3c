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

/// Writes the uid and gid maps of the user namespace of process `pid`.
///
/// With `deny_setgroups` it first writes `deny` to `/proc/PID/setgroups`, which the kernel
/// requires before an unprivileged process may write a gid map (as `unshare -r` does).
pub fn write_id_maps(pid: Pid, uids: &[IdMap], gids: &[IdMap], deny_setgroups: bool) -> Result<()> {
    let write = |name: &str, content: &str| {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::write(&path, content).map_err(|source| Error::IdMap { path, source })
    };
    if !uids.is_empty() {
        write("uid_map", &render(uids))?;
    }
    if deny_setgroups {
        write("setgroups", "deny")?;
    }
    if !gids.is_empty() {
        write("gid_map", &render(gids))?;
    }
    Ok(())
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
}
