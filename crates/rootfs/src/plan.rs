//! The whole preparation of a rootfs, in order.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::devices::{make_nodes, populate_dev, Node};
use crate::error::os;
use crate::in_root::FdPath;
use crate::mount::locked_flags;
use crate::pivot::{chroot_into, pivot_into};
use crate::{Device, Error, InRoot, Mount, Overlay, Propagation, Result, DEFAULT_DEVICES};

/// What a container's root file system should look like. Built by the caller, carried out by
/// [`RootfsPlan::enter`] from inside the container's new mount namespace.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    root: PathBuf,
    mounts: Vec<Mount>,
    devices: Vec<Device>,
    nodes: Vec<Node>,
    readonly: bool,
    propagation: (Propagation, bool),
    masked_paths: Vec<PathBuf>,
    readonly_paths: Vec<PathBuf>,
    no_pivot: bool,
    overlay: Option<Overlay>,
}

impl RootfsPlan {
    /// A plan for the rootfs directory `root` (a host path) with no mounts, the default
    /// devices, writable, and `rslave` propagation (host mounts still reach the container,
    /// nothing from the container reaches the host), as runc does by default.
    pub fn new(root: PathBuf) -> RootfsPlan {
        RootfsPlan {
            root,
            mounts: Vec::new(),
            devices: DEFAULT_DEVICES.to_vec(),
            nodes: Vec::new(),
            readonly: false,
            propagation: (Propagation::Slave, true),
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            no_pivot: false,
            overlay: None,
        }
    }

    /// Sets the mounts, done in this order (so `/dev` before `/dev/pts`).
    pub fn with_mounts(mut self, mounts: Vec<Mount>) -> RootfsPlan {
        self.mounts = mounts;
        self
    }

    /// Adds device nodes (OCI `linux.devices`), made after the standard `/dev`.
    pub fn with_nodes(mut self, nodes: Vec<Node>) -> RootfsPlan {
        self.nodes = nodes;
        self
    }

    /// Makes the root read-only (its submounts keep their own options).
    pub fn readonly(mut self, readonly: bool) -> RootfsPlan {
        self.readonly = readonly;
        self
    }

    /// Sets the propagation of the container's mount tree (OCI `linux.rootfsPropagation`).
    pub fn propagation(mut self, kind: Propagation, recursive: bool) -> RootfsPlan {
        self.propagation = (kind, recursive);
        self
    }

    /// Paths to hide (OCI `linux.maskedPaths`): `/dev/null` is bound over files, an empty
    /// read-only tmpfs over directories. Missing paths are skipped.
    pub fn masked_paths<P: Into<PathBuf>>(
        mut self,
        paths: impl IntoIterator<Item = P>,
    ) -> RootfsPlan {
        self.masked_paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Paths to make read-only (OCI `linux.readonlyPaths`). Missing paths are skipped.
    pub fn readonly_paths<P: Into<PathBuf>>(
        mut self,
        paths: impl IntoIterator<Item = P>,
    ) -> RootfsPlan {
        self.readonly_paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Switches root with `MS_MOVE` and `chroot` instead of `pivot_root` (runc's
    /// `--no-pivot`, for a rootfs on ramfs). The old root then stays reachable to a process
    /// that can escape a chroot, so this is only for where `pivot_root` cannot work.
    pub fn no_pivot(mut self, no_pivot: bool) -> RootfsPlan {
        self.no_pivot = no_pivot;
        self
    }

    /// Makes the root `mount_point` with `overlay` (an image's layers) mounted on it first,
    /// inside the container's mount namespace: the root is then a mount of the container's
    /// own, which the host never sees.
    pub fn with_overlay(mut self, mount_point: PathBuf, overlay: Overlay) -> RootfsPlan {
        self.root = mount_point;
        self.overlay = Some(overlay);
        self
    }

    /// The overlay mounted on the root, if any.
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    /// The mounts, in order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The rootfs directory on the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks what can be checked before any namespace or mount exists: the root is an
    /// existing directory and every bind source exists.
    pub fn validate(&self) -> Result<()> {
        let problem = match std::fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => None,
            Ok(_) => Some("not a directory".to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".into()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            return Err(Error::Root {
                path: self.root.clone(),
                problem,
            });
        }
        if let Some(overlay) = &self.overlay {
            overlay.validate()?;
        }
        for m in &self.mounts {
            check_proc_destination(m)?;
        }
        for m in self.mounts.iter().filter(|m| m.options.bind) {
            let source = m.source.as_deref().unwrap_or(Path::new(""));
            std::fs::metadata(source).map_err(|e| Error::Source {
                path: source.to_owned(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Carries out the plan and makes the rootfs the calling process's `/`. Call it from a
    /// process that is alone in a new mount namespace: it changes that namespace's mounts.
    pub fn enter(&self) -> Result<()> {
        self.mount_all()?;
        self.pivot()
    }

    /// The first half of [`RootfsPlan::enter`]: propagation, the self-bind, the mounts and
    /// `/dev`, all still below the old root (where the OCI `createContainer` hooks run).
    pub fn mount_all(&self) -> Result<()> {
        self.validate()?;
        let (kind, recursive) = match self.propagation {
            // An unbindable root could not be bound onto itself: private until the pivot,
            // unbindable after it.
            (Propagation::Unbindable, recursive) => (Propagation::Private, recursive),
            other => other,
        };
        set_root_propagation(kind, recursive, "propagation")?;
        // With `shared` or `rshared` asked for (or a host whose `/` is shared and a spec that
        // keeps it so), the mount holding the rootfs is a peer of the host's: the self-bind
        // below would then join the host's peer group, every mount made in the rootfs would
        // appear on the host, and pivot_root refuses a new root whose parent is shared
        // (EINVAL). Making that one mount private in our namespace (not recursively, and not
        // on the host) cuts it off, as runc does; the requested propagation is applied to the
        // new root after the pivot. After a recursive `slave` or `private` (the default
        // `rslave`, `rprivate`) no mount of this namespace is shared any more: no need to read
        // the mount table to find out.
        if !(recursive && matches!(kind, Propagation::Slave | Propagation::Private)) {
            make_parent_mount_private(&self.root)?;
        }
        if let Some(overlay) = &self.overlay {
            overlay.mount_on(&self.root)?;
        }
        // pivot_root needs the new root to be a mount point; binding it onto itself makes it
        // one. The InRoot is opened after this, so that it names the bind mount and not the
        // directory underneath.
        mount(
            Some(self.root.as_path()),
            self.root.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::Mount {
            what: self.root.display().to_string(),
            target: "/".into(),
            source: os(e),
        })?;
        let in_root = InRoot::open(&self.root)?;
        for m in &self.mounts {
            match m.apply(&in_root) {
                // sysfs belongs to the network namespace: a user namespace that shares the
                // host's network namespace may not mount it.
                Err(Error::Mount { source, .. })
                    if m.fstype == "sysfs" && source.raw_os_error() == Some(libc::EPERM) =>
                {
                    tracing::warn!(
                        "not mounting sysfs on {}: the kernel forbids it here \
                         (a user namespace without its own network namespace)",
                        m.destination.display()
                    );
                }
                other => other?,
            }
        }
        if self
            .mounts
            .iter()
            .any(|m| m.destination == Path::new("/dev"))
        {
            populate_dev(&in_root, &self.devices)?;
        }
        make_nodes(&in_root, &self.nodes)?;
        Ok(())
    }

    /// For a container without a mount namespace of its own: only `chroot` into the root,
    /// with no mount made, since every mount would be the runtime's (and the host's). The
    /// plan must hold no mounts, devices, masked or read-only paths (the caller checks).
    pub fn chroot_only(&self) -> Result<()> {
        self.validate()?;
        chroot_into(&self.root)
    }

    /// The second half of [`RootfsPlan::enter`], after [`RootfsPlan::mount_all`]:
    /// `pivot_root` (or `chroot`), the read-only and masked paths, the read-only root.
    pub fn pivot(&self) -> Result<()> {
        pivot_into(&self.root, self.no_pivot)?;
        // The new root was bound from a private parent, so it is private whatever `/` was
        // before: now it gets the propagation the spec asked for (`rshared` makes it and its
        // submounts shared; the host-path binds with their own propagation keep their peers).
        let (kind, recursive) = self.propagation;
        set_root_propagation(kind, recursive, "propagation of the new root")?;
        let in_root = InRoot::open(Path::new("/"))?;
        for path in &self.readonly_paths {
            make_readonly(&in_root, path)?;
        }
        for path in &self.masked_paths {
            mask(&in_root, path)?;
        }
        if self.readonly {
            let flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags("/");
            mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|e| {
                Error::Mount {
                    what: "read-only root".into(),
                    target: "/".into(),
                    source: os(e),
                }
            })?;
        }
        Ok(())
    }
}

/// Sets the propagation of the mount at `/` (`what` names the step in the error).
fn set_root_propagation(kind: Propagation, recursive: bool, what: &str) -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        kind.flags(recursive),
        None::<&str>,
    )
    .map_err(|e| Error::Mount {
        what: what.into(),
        target: "/".into(),
        source: os(e),
    })
}

/// The files below `/proc` that a mount may cover, as runc allows them: those that lxcfs
/// provides in its own view, and the one CRIU writes.
const PROC_FILES_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// `/proc` takes only a procfs, and nothing below it but a few files (as runc): a bind
/// mount there would hide the container's own process view, and one over `/proc/sys` or
/// `/proc/sysrq-trigger` would undo the protections peapod puts on them.
fn check_proc_destination(m: &Mount) -> Result<()> {
    let dest = lexically_clean(&m.destination);
    let refuse = |problem: &str| {
        Err(Error::Destination {
            path: m.destination.clone(),
            problem: problem.to_owned(),
        })
    };
    if dest == Path::new("/proc") {
        if m.options.bind || m.fstype != "proc" {
            return refuse("/proc cannot be a bind-mount destination; it only takes a proc mount");
        }
        return Ok(());
    }
    if dest.starts_with("/proc") && !PROC_FILES_ALLOWED.iter().any(|f| dest == Path::new(f)) {
        return refuse("mounts inside /proc are refused (only over the files lxcfs provides)");
    }
    Ok(())
}

/// `path` as an absolute path without `.`, `..` or repeated separators (`..` stops at `/`),
/// as the kernel will resolve it inside the root.
fn lexically_clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Resolves `path` inside `root`, or `None` when it does not exist.
fn resolve_existing(root: &InRoot, path: &Path) -> Result<Option<std::os::fd::OwnedFd>> {
    match root.resolve(path) {
        Ok(fd) => Ok(Some(fd)),
        Err(Error::Resolve { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn mount_error(what: &str, path: &Path) -> impl FnOnce(nix::Error) -> Error {
    let (what, target) = (what.to_owned(), path.to_owned());
    move |e| Error::Mount {
        what,
        target,
        source: os(e),
    }
}

/// Binds `path` onto itself and remounts the bind read-only.
fn make_readonly(root: &InRoot, path: &Path) -> Result<()> {
    let Some(fd) = resolve_existing(root, path)? else {
        return Ok(());
    };
    let target = FdPath::new(fd);
    mount(
        Some(target.as_str()),
        target.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(mount_error("read-only bind", path))?;
    remount_readonly(root, path, "read-only remount")
}

/// Remounts the bind mount at `path` read-only (`what` names the step in the error). The
/// path is resolved again: a descriptor taken before the bind names what it covers.
fn remount_readonly(root: &InRoot, path: &Path, what: &str) -> Result<()> {
    let mounted = FdPath::new(root.resolve(path)?);
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | locked_flags(mounted.as_str());
    mount(
        None::<&str>,
        mounted.as_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(mount_error(what, path))
}

/// Hides `path`: `/dev/null` over a file, bound read-only (writes still reach only the null
/// device: a device node takes them on a read-only mount), an empty read-only tmpfs over a
/// directory.
fn mask(root: &InRoot, path: &Path) -> Result<()> {
    let Some(fd) = resolve_existing(root, path)? else {
        return Ok(());
    };
    let target = FdPath::new(fd);
    let is_dir = std::fs::metadata(target.as_str())
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if is_dir {
        mount(
            Some("tmpfs"),
            target.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(mount_error("tmpfs (mask)", path))
    } else {
        let null = FdPath::new(root.resolve(Path::new("/dev/null"))?);
        mount(
            Some(null.as_str()),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(mount_error("/dev/null (mask)", path))?;
        remount_readonly(root, path, "read-only remount (mask)")
    }
}

/// Makes the mount that holds `root` (in the calling process's mount namespace) private when
/// it is shared, so that binding `root` and mounting below it stay in this namespace and
/// `pivot_root` accepts it.
fn make_parent_mount_private(root: &Path) -> Result<()> {
    let root = std::fs::canonicalize(root).map_err(|e| Error::Root {
        path: root.to_owned(),
        problem: e.to_string(),
    })?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Root {
        path: "/proc/self/mountinfo".into(),
        problem: e.to_string(),
    })?;
    let Some((mount_point, shared)) = holding_mount(&mountinfo, &root) else {
        return Ok(());
    };
    if !shared {
        return Ok(());
    }
    mount(
        None::<&str>,
        &mount_point,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(mount_error("private parent of the rootfs", &mount_point))
}

/// The mount point (from mountinfo's text) that holds `path`, the deepest one and, of mounts
/// stacked on the same point, the last; and whether it is shared (has a `shared:N` tag).
fn holding_mount(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool)> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4).map(|f| PathBuf::from(unescape(f))) else {
            continue;
        };
        if !path.starts_with(&point) {
            continue;
        }
        let shared = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .any(|f| f.starts_with("shared:"));
        let deeper = match &best {
            Some((b, _)) => point.components().count() >= b.components().count(),
            None => true,
        };
        if deeper {
            best = Some((point, shared));
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as a backslash and three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw shared:5 - tmpfs tmpfs rw
31 30 0:26 / /tmp/a\\040b rw - tmpfs tmpfs rw
32 22 0:27 / /tmp2 rw master:3 - tmpfs tmpfs rw
";

    #[test]
    fn the_deepest_mount_holding_a_path_and_whether_it_is_shared() {
        let find = |p: &str| holding_mount(MOUNTINFO, Path::new(p));
        assert_eq!(find("/srv/rootfs"), Some(("/".into(), true)));
        assert_eq!(find("/tmp/x/rootfs"), Some(("/tmp".into(), true)));
        assert_eq!(find("/tmp/a b/rootfs"), Some(("/tmp/a b".into(), false)));
        // A path prefix that is not a whole component is not the mount point.
        assert_eq!(find("/tmp2x/rootfs"), Some(("/".into(), true)));
        assert_eq!(find("/tmp2/rootfs"), Some(("/tmp2".into(), false)));
    }
}
