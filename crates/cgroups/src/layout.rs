//! Which cgroup hierarchies the host has mounted, and where this process sits in them.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The mount point, e.g. `/sys/fs/cgroup/memory` or `/sys/fs/cgroup`.
    pub mount: PathBuf,
    /// The controllers it carries (for v2: those enabled at its root).
    pub controllers: Vec<String>,
    /// This process's cgroup in it, relative to the hierarchy's root.
    pub own: PathBuf,
    /// The name of a named v1 hierarchy (`systemd` for `name=systemd`), which carries no
    /// controller and only groups processes.
    pub name: Option<String>,
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Only the unified hierarchy.
    V2(Hierarchy),
    /// Controller hierarchies (v1), named ones without controllers (`name=systemd`), and, on
    /// a hybrid host, a unified one without controllers or with only some.
    V1 {
        /// One entry per v1 mount that has controllers.
        hierarchies: Vec<Hierarchy>,
        /// One entry per named v1 hierarchy without controllers (`name=systemd`).
        named: Vec<Hierarchy>,
        /// The cgroup2 mount of a hybrid host.
        unified: Option<Hierarchy>,
    },
}

impl Layout {
    /// Reads the layout from `/proc/self/mountinfo` and `/proc/self/cgroup`. The mount table
    /// is read once per process (see [`mountinfo`]): one `create` asks for the layout three
    /// times.
    ///
    /// The layout parsed from them is kept too, and given again while both read the same:
    /// it is a function of the two (the cgroup2 root's controllers change only with the
    /// mounts of v1 hierarchies), and a `run` asks for it four times.
    pub fn detect() -> Result<Layout> {
        static PARSED: std::sync::Mutex<Option<(String, String, Layout)>> =
            std::sync::Mutex::new(None);
        let mountinfo = mountinfo()?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(crate::error::io("cannot read", "/proc/self/cgroup"))?;
        let mut parsed = PARSED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, layout)) = parsed
            .as_ref()
            .filter(|(m, o, _)| *m == mountinfo && *o == own)
        {
            return Ok(layout.clone());
        }
        let layout = Layout::parse(&mountinfo, &own)?;
        *parsed = Some((mountinfo, own, layout.clone()));
        Ok(layout)
    }

    fn parse(mountinfo: &str, own: &str) -> Result<Layout> {
        let mut v1 = Vec::new();
        let mut named: Vec<Hierarchy> = Vec::new();
        let mut unified = None;
        for Mount {
            mount,
            fstype,
            options,
            ..
        } in visible_mounts(mountinfo)
        {
            match fstype {
                "cgroup2" => {
                    let controllers = std::fs::read_to_string(mount.join("cgroup.controllers"))
                        .unwrap_or_default();
                    unified = Some(Hierarchy {
                        own: own_path(own, |c| c.is_empty()).unwrap_or_else(|| "/".into()),
                        controllers: controllers.split_whitespace().map(str::to_owned).collect(),
                        mount,
                        name: None,
                    });
                }
                "cgroup" => {
                    let controllers: Vec<String> = options
                        .split(',')
                        .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.contains('='))
                        .map(str::to_owned)
                        .collect();
                    let name = options
                        .split(',')
                        .find_map(|o| o.strip_prefix("name="))
                        .map(str::to_owned);
                    if controllers.is_empty() {
                        // A named hierarchy (systemd's) only groups processes; mounted twice,
                        // it is one hierarchy.
                        let Some(name) = name else { continue };
                        if named.iter().any(|h| h.name.as_ref() == Some(&name)) {
                            continue;
                        }
                        let key = format!("name={name}");
                        named.push(Hierarchy {
                            own: own_path(own, |c| c == key).unwrap_or_else(|| "/".into()),
                            mount,
                            controllers,
                            name: Some(name),
                        });
                        continue;
                    }
                    if v1.iter().any(|h: &Hierarchy| h.controllers == controllers) {
                        continue;
                    }
                    let key = controllers.join(",");
                    let own = own_path(own, |c| {
                        // A hierarchy both named and with controllers lists its name too.
                        let mut listed: Vec<&str> =
                            c.split(',').filter(|l| !l.starts_with("name=")).collect();
                        listed.sort_unstable();
                        let mut wanted: Vec<&str> = key.split(',').collect();
                        wanted.sort_unstable();
                        listed == wanted
                    })
                    .unwrap_or_else(|| "/".into());
                    v1.push(Hierarchy {
                        mount,
                        controllers,
                        own,
                        name,
                    });
                }
                _ => {}
            }
        }
        match (v1.is_empty(), unified) {
            (true, Some(unified)) => Ok(Layout::V2(unified)),
            (false, unified) => Ok(Layout::V1 {
                hierarchies: v1,
                named,
                unified,
            }),
            (true, None) => Err(Error::Layout("no cgroup file system is mounted".into())),
        }
    }

    /// The hierarchies whose controllers a container's limits are written to: the unified
    /// one (v2), or those with controllers (v1).
    pub fn hierarchies(&self) -> Vec<&Hierarchy> {
        match self {
            Layout::V2(h) => vec![h],
            Layout::V1 { hierarchies, .. } => hierarchies.iter().collect(),
        }
    }

    /// The hierarchies that only track processes, where a container's cgroup is made and
    /// joined as well but no limit is written, as runc does: on v1 the named ones
    /// (`name=systemd`) and a hybrid host's cgroup2 mount. systemd, monitors and readers of
    /// `/proc/PID/cgroup` find a container by its path there. None on v2.
    pub fn tracking(&self) -> Vec<&Hierarchy> {
        match self {
            Layout::V2(_) => Vec::new(),
            Layout::V1 { named, unified, .. } => named.iter().chain(unified).collect(),
        }
    }

    /// Whether this is the unified layout.
    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2(_))
    }

    /// The hierarchy carrying `controller` (v1), or the unified one if it has it (v2).
    pub fn hierarchy_of(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies()
            .into_iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// Where the mount table is read.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The text of `/proc/self/mountinfo`, kept from the last read: read again only in another
/// process (a forked child) or mount namespace (after `unshare` or `setns`) than the one it
/// was read in, or once the kernel reports that the mount table has changed since (the kept
/// file polls `POLLPRI`, proc(5)), so the answer is always today's.
fn mountinfo() -> Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    struct Kept {
        pid: u32,
        namespace: u64,
        file: std::fs::File,
        text: String,
    }
    static KEPT: std::sync::Mutex<Option<Kept>> = std::sync::Mutex::new(None);
    let pid = std::process::id();
    let namespace = std::fs::metadata("/proc/thread-self/ns/mnt").map_or(0, |m| m.ino());
    let mut kept = KEPT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(kept) = kept
        .as_ref()
        .filter(|k| k.pid == pid && k.namespace == namespace && namespace != 0)
        .filter(|k| !mounts_changed(&k.file))
    {
        return Ok(kept.text.clone());
    }
    let read = || crate::error::io("cannot read", MOUNTINFO);
    let mut file = std::fs::File::open(MOUNTINFO).map_err(read())?;
    // One read for the whole table rather than std's growing from 32 bytes.
    let mut text = String::with_capacity(64 * 1024);
    file.read_to_string(&mut text).map_err(read())?;
    *kept = Some(Kept {
        pid,
        namespace,
        file,
        text: text.clone(),
    });
    Ok(text)
}

/// Whether the mount table of the open `mountinfo` has changed since it was opened (or since
/// the last poll): the kernel then reports `POLLPRI` (proc(5), `/proc/pid/mounts`).
fn mounts_changed(mountinfo: &std::fs::File) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd as _;
    let mut fds = [PollFd::new(mountinfo.as_fd(), PollFlags::POLLPRI)];
    !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

/// One line of mountinfo: the fields the layout needs.
struct Mount<'a> {
    id: &'a str,
    parent: &'a str,
    mount: PathBuf,
    fstype: &'a str,
    options: &'a str,
}

impl<'a> Mount<'a> {
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        let (left, right) = line.split_once(" - ")?;
        let mut left = left.split(' ');
        let (id, parent) = (left.next()?, left.next()?);
        let mount = unescape(left.nth(2)?);
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        Some(Mount {
            id,
            parent,
            mount,
            fstype,
            options,
        })
    }

    /// Whether `other` hides this mount: mounted on top of it, or later on the same parent at
    /// this mount's path or above it.
    /// The ids are compared first: only a child or a later sibling can hide it, and the
    /// path comparison, which the layout would otherwise make for every pair of mounts, is
    /// then made for those alone.
    fn hidden_by(&self, other: &Mount, other_is_later: bool) -> bool {
        (other.parent == self.id && other.mount == self.mount
            || other_is_later && other.parent == self.parent)
            && self.mount.starts_with(&other.mount)
    }
}

/// The cgroup mounts of `mountinfo` a path lookup can reach: a cgroup file system covered by a
/// later mount (a tmpfs over `/sys/fs/cgroup/unified`, as benchmarks make) is no longer where its
/// files are written, and is left out, as is everything mounted below a hidden mount.
fn visible_mounts(mountinfo: &str) -> Vec<Mount<'_>> {
    let all: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    // Whether mount `i` is hidden by one other than `through` (the child the walk came from:
    // a mount stacked on its parent is what makes the parent hidden, and is itself visible).
    let hidden = |i: usize, through: Option<usize>| {
        all.iter()
            .enumerate()
            .any(|(j, other)| j != i && Some(j) != through && all[i].hidden_by(other, j > i))
    };
    let is_visible = |start: usize| {
        let (mut i, mut through) = (start, None);
        // Up the parent chain (bounded by the number of mounts, against a cycle).
        for _ in 0..all.len() {
            if hidden(i, through) {
                return false;
            }
            match all.iter().position(|p| p.id == all[i].parent) {
                Some(parent) if parent != i => (through, i) = (Some(i), parent),
                _ => return true,
            }
        }
        true
    };
    // Only the cgroup mounts are asked about: a handful, whatever the number of mounts.
    let keep: Vec<bool> = (0..all.len())
        .map(|i| all[i].fstype.starts_with("cgroup") && is_visible(i))
        .collect();
    all.into_iter()
        .zip(keep)
        .filter_map(|(m, keep)| keep.then_some(m))
        .collect()
}

/// Super options of a v1 cgroup mount that are not controller names.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "clone_children",
    "noprefix",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
];

/// This process's path in the hierarchy whose `/proc/self/cgroup` controller list matches.
fn own_path(own: &str, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        matches(controllers).then(|| PathBuf::from(path))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(b) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Joins `relative` (which may start with `/`) below `base` without leaving it.
pub(crate) fn join_inside(base: &Path, relative: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let mut out = base.to_path_buf();
    for part in relative.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::BadPath(relative.to_path_buf()))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "9:name=systemd:/s\n4:memory:/a/b\n1:cpuacct,cpu:/\n0::/u\n";

    #[test]
    fn hybrid_is_v1_with_a_unified_mount() {
        let layout = Layout::parse(HYBRID, OWN).unwrap();
        let Layout::V1 {
            hierarchies,
            unified,
            ..
        } = &layout
        else {
            panic!("{layout:?}")
        };
        assert_eq!(
            hierarchies.len(),
            2,
            "the named hierarchy is not one with controllers: {hierarchies:?}"
        );
        assert_eq!(hierarchies[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hierarchies[0].own, Path::new("/"));
        assert_eq!(hierarchies[1].own, Path::new("/a/b"));
        assert_eq!(unified.as_ref().unwrap().own, Path::new("/u"));
        assert_eq!(
            layout.hierarchy_of("cpuacct").unwrap().mount,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
    }

    #[test]
    fn named_and_unified_hierarchies_of_a_hybrid_host_are_tracking_ones() {
        let layout = Layout::parse(HYBRID, OWN).unwrap();
        let tracking = layout.tracking();
        assert_eq!(tracking.len(), 2, "{tracking:?}");
        assert_eq!(tracking[0].name.as_deref(), Some("systemd"));
        assert_eq!(tracking[0].mount, Path::new("/sys/fs/cgroup/systemd"));
        assert!(tracking[0].controllers.is_empty());
        assert_eq!(tracking[0].own, Path::new("/s"));
        assert_eq!(tracking[1].mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(tracking[1].name, None);
        assert_eq!(tracking[1].own, Path::new("/u"));
        // Never a place for a limit.
        assert!(layout.hierarchy_of("name=systemd").is_none());
        assert!(layout.hierarchy_of("systemd").is_none());
    }

    #[test]
    fn a_named_hierarchy_mounted_twice_is_one() {
        let twice = format!(
            "{HYBRID}50 31 0:37 / /run/other rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
        );
        let layout = Layout::parse(&twice, OWN).unwrap();
        let Layout::V1 { named, .. } = &layout else {
            panic!("{layout:?}")
        };
        assert_eq!(named.len(), 1, "{named:?}");
    }

    #[test]
    fn a_named_hierarchy_with_controllers_is_a_controller_one() {
        let mi = "32 31 0:29 / /cg/cpu rw - cgroup cgroup rw,cpu,name=mine\n";
        let layout = Layout::parse(mi, "3:cpu,name=mine:/here\n").unwrap();
        assert!(layout.tracking().is_empty());
        let cpu = layout.hierarchy_of("cpu").unwrap();
        assert_eq!(cpu.name.as_deref(), Some("mine"));
        assert_eq!(cpu.own, Path::new("/here"));
    }

    #[test]
    fn pure_v1_without_named_hierarchies_tracks_nothing() {
        let mi = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let layout = Layout::parse(mi, "4:memory:/\n").unwrap();
        assert!(layout.tracking().is_empty());
        assert_eq!(layout.hierarchies().len(), 1);
    }

    #[test]
    fn unified_only_is_v2() {
        let mi = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        let layout = Layout::parse(mi, "0::/x\n").unwrap();
        assert!(layout.is_v2());
        assert_eq!(layout.hierarchies()[0].own, Path::new("/x"));
        assert!(layout.tracking().is_empty());
    }

    #[test]
    fn a_covered_cgroup2_mount_is_not_the_unified_one() {
        // A tmpfs mounted over the hybrid host's cgroup2 (as benchmarks do for crun).
        let covered =
            format!("{HYBRID}60 41 0:90 / /sys/fs/cgroup/unified rw,relatime - tmpfs tmpfs rw\n");
        let Layout::V1 { unified, .. } = Layout::parse(&covered, OWN).unwrap() else {
            panic!("still v1")
        };
        assert_eq!(unified, None);
        // The same tmpfs over the whole tree hides every hierarchy below it.
        let all = format!("{HYBRID}61 23 0:91 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n");
        assert!(Layout::parse(&all, OWN).is_err());
        // A cgroup2 mounted over that tmpfs is what is visible there.
        let remounted =
            format!("{all}62 61 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n");
        let layout = Layout::parse(&remounted, OWN).unwrap();
        assert!(layout.is_v2(), "{layout:?}");
        assert_eq!(layout.hierarchies()[0].mount, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn nothing_mounted_is_an_error() {
        assert!(Layout::parse("1 1 0:1 / / rw - ext4 /dev/vda rw\n", "").is_err());
    }

    #[test]
    fn join_inside_refuses_dotdot() {
        assert!(join_inside(Path::new("/c"), Path::new("a/../../x")).is_err());
        assert_eq!(
            join_inside(Path::new("/c"), Path::new("/a/b")).unwrap(),
            Path::new("/c/a/b")
        );
    }

    #[test]
    fn mountinfo_octal_escapes() {
        assert_eq!(unescape("/a\\040b"), Path::new("/a b"));
        assert_eq!(unescape("/a\\134"), Path::new("/a\\"));
        // An escape cut short at the end of the field is kept as it is.
        assert_eq!(unescape("/a\\04"), Path::new("/a\\04"));
        assert_eq!(unescape("/a\\"), Path::new("/a\\"));
    }

    /// A mount made after the table was kept is seen by the next read: the kept text is
    /// dropped when the kernel reports a change, and so is it after the unmount.
    #[test]
    fn the_kept_mount_table_follows_a_mount_and_its_unmount() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        struct Mounted<'a>(&'a Path);
        impl Drop for Mounted<'_> {
            fn drop(&mut self) {
                let _ = umount2(self.0, MntFlags::MNT_DETACH);
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let point = dir.path().to_str().expect("a UTF-8 temp path").to_owned();
        let shown = |text: &str| text.lines().any(|l| l.split(' ').nth(4) == Some(&point));
        assert!(!shown(&mountinfo().expect("read")), "not mounted yet");
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("mount a tmpfs");
        let guard = Mounted(dir.path());
        assert!(shown(&mountinfo().expect("read again")), "the new mount");
        drop(guard);
        assert!(!shown(&mountinfo().expect("read after")), "unmounted");
    }
}
