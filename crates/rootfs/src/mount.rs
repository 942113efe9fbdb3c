//! One mount of a container's file system tree.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::error::os;
use crate::in_root::FdPath;
use crate::{Error, InRoot, MountOptions, Result};

/// A mount: what goes where, with which options. The destination is a path inside the
/// container; the source of a bind mount is a path on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where, inside the container.
    pub destination: PathBuf,
    /// The file system type (`proc`, `tmpfs`, ...); ignored for bind mounts.
    pub fstype: String,
    /// The source: a host path for bind mounts, a label such as `tmpfs` otherwise.
    pub source: Option<PathBuf>,
    /// The parsed options.
    pub options: MountOptions,
}

/// Flags the kernel locks on a mount seen from a less privileged user namespace: a bind
/// remount must repeat them or it fails with EPERM.
const LOCKABLE: [(FsFlags, MsFlags); 6] = [
    (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
    (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
    (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
    (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
    // ST_RELATIME (Linux's statvfs flag 4096), which nix names for glibc only.
    (FsFlags::from_bits_retain(0x1000), MsFlags::MS_RELATIME),
];

/// The flags a bind remount of the mount at `path` has to keep.
pub(crate) fn locked_flags(path: &str) -> MsFlags {
    let Ok(stat) = statvfs(path) else {
        return MsFlags::empty();
    };
    LOCKABLE
        .iter()
        .filter(|(st, _)| stat.flags().contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

/// Flags that a bind mount only takes through a second, remounting `mount(2)` call.
const REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

impl Mount {
    /// A mount of file system `fstype` (also used as the source label) with option words
    /// as in `mount -o` or OCI `mounts[].options`.
    pub fn new<S: AsRef<str>>(destination: &str, fstype: &str, options: &[S]) -> Result<Mount> {
        let destination = PathBuf::from(destination);
        Ok(Mount {
            options: MountOptions::parse(&destination, options)?,
            destination,
            fstype: fstype.to_owned(),
            source: Some(PathBuf::from(fstype)),
        })
    }

    /// A bind mount of the host path `source` at `destination`, read-only when `readonly`.
    pub fn bind(source: &Path, destination: &Path, readonly: bool) -> Mount {
        let mut options = MountOptions {
            bind: true,
            recursive: true,
            ..MountOptions::default()
        };
        if readonly {
            options.flags |= MsFlags::MS_RDONLY;
        }
        Mount {
            destination: destination.to_owned(),
            fstype: "bind".to_owned(),
            source: Some(source.to_owned()),
            options,
        }
    }

    /// Mounts it inside `root`, resolving the destination there (creating it when missing).
    pub(crate) fn apply(&self, root: &InRoot) -> Result<()> {
        if self.options.bind {
            self.apply_bind(root)
        } else {
            self.apply_fs(root)
        }
    }

    fn error(&self, what: String, source: nix::Error) -> Error {
        Error::Mount {
            what,
            target: self.destination.clone(),
            source: os(source),
        }
    }

    fn apply_bind(&self, root: &InRoot) -> Result<()> {
        let source = self.source.as_deref().unwrap_or(Path::new(""));
        let meta = std::fs::metadata(source).map_err(|e| Error::Source {
            path: source.to_owned(),
            source: e,
        })?;
        let target = FdPath::new(if meta.is_dir() {
            root.create_dir_all(&self.destination)?
        } else {
            root.create_file(&self.destination)?
        });
        if self.options.copyup && meta.is_dir() {
            self.copy_up_into(source, &target)?;
        }
        let mut flags = MsFlags::MS_BIND;
        if self.options.recursive {
            flags |= MsFlags::MS_REC;
        }
        let what = source.display().to_string();
        mount(
            Some(source),
            target.as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| self.error(what.clone(), e))?;
        let wanted = self.options.flags & REMOUNT_FLAGS;
        if !wanted.is_empty() {
            // The descriptor still names the directory under the new mount: look it up again.
            let mounted = FdPath::new(root.resolve(&self.destination)?);
            let flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | wanted | locked_flags(mounted.as_str());
            mount(
                None::<&str>,
                mounted.as_str(),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(|e| self.error(format!("{what} (remount)"), e))?;
        }
        self.apply_recursive_attrs(root)?;
        self.apply_propagation(root)
    }

    /// `copyup`: what the root has at the destination (`target`, resolved inside the root),
    /// copied into the source when that is an empty directory (a new anonymous volume);
    /// links are copied as links, never followed. A source with anything in it is used as it
    /// is, as Docker uses a volume that is not new.
    fn copy_up_into(&self, source: &Path, target: &FdPath) -> Result<()> {
        let error = |e: std::io::Error| Error::Mount {
            what: format!("{} (copyup)", source.display()),
            target: self.destination.clone(),
            source: e,
        };
        let mut entries = std::fs::read_dir(source).map_err(error)?;
        if entries.next().is_some() {
            return Ok(());
        }
        crate::copy_up::copy_tree(Path::new(target.as_str()), source).map_err(error)
    }

    /// `rro`, `rnosuid`, ...: one `mount_setattr` on the new mount with `AT_RECURSIVE`, which
    /// also reaches every mount below it (those an `rbind` brought along).
    fn apply_recursive_attrs(&self, root: &InRoot) -> Result<()> {
        let attrs = self.options.recursive_attrs;
        if attrs.is_empty() {
            return Ok(());
        }
        let mounted = root.resolve(&self.destination)?;
        #[repr(C)]
        struct MountAttr {
            attr_set: u64,
            attr_clr: u64,
            propagation: u64,
            userns_fd: u64,
        }
        let attr = MountAttr {
            attr_set: attrs.set,
            attr_clr: attrs.clear,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr reads `size` bytes of the valid struct it is given, and an
        // empty path with AT_EMPTY_PATH names the descriptor itself.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                std::os::fd::AsRawFd::as_raw_fd(&mounted),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Err(Error::Mount {
                what: "recursive options (rro, rnosuid, ...)".into(),
                target: self.destination.clone(),
                source: std::io::Error::new(
                    err.kind(),
                    "this kernel has no mount_setattr (Linux 5.12 or later is needed)",
                ),
            });
        }
        Err(Error::Mount {
            what: "recursive options".into(),
            target: self.destination.clone(),
            source: err,
        })
    }

    fn apply_fs(&self, root: &InRoot) -> Result<()> {
        // As runc: procfs or sysfs through a link of the image's would land wherever the
        // image points it, e.g. over a directory the container is meant to write to.
        if matches!(self.fstype.as_str(), "proc" | "sysfs") && root.is_symlink(&self.destination)? {
            return Err(Error::Destination {
                path: self.destination.clone(),
                problem: format!(
                    "{} must be mounted on an ordinary directory, not a symbolic link",
                    self.fstype
                ),
            });
        }
        let target = FdPath::new(root.create_dir_all(&self.destination)?);
        // The directory the tmpfs will cover, still reachable through this descriptor once
        // it is covered: what `tmpcopyup` copies from.
        let covered = match self.options.tmpcopyup && self.fstype == "tmpfs" {
            true => Some(FdPath::new(root.resolve(&self.destination)?)),
            false => None,
        };
        let data = self.options.data_string();
        let source = self.source.as_deref().unwrap_or(Path::new(&self.fstype));
        mount(
            Some(source),
            target.as_str(),
            Some(self.fstype.as_str()),
            self.options.flags,
            data.as_deref(),
        )
        .map_err(|e| self.error(self.fstype.clone(), e))?;
        if let Some(covered) = covered {
            let tmpfs = FdPath::new(root.resolve(&self.destination)?);
            crate::copy_up::copy_tree(Path::new(covered.as_str()), Path::new(tmpfs.as_str()))
                .map_err(|source| Error::Mount {
                    what: "tmpfs (tmpcopyup)".into(),
                    target: self.destination.clone(),
                    source,
                })?;
        }
        self.apply_recursive_attrs(root)?;
        self.apply_propagation(root)
    }

    fn apply_propagation(&self, root: &InRoot) -> Result<()> {
        let Some((kind, recursive)) = self.options.propagation else {
            return Ok(());
        };
        let mounted = FdPath::new(root.resolve(&self.destination)?);
        mount(
            None::<&str>,
            mounted.as_str(),
            None::<&str>,
            kind.flags(recursive),
            None::<&str>,
        )
        .map_err(|e| self.error("propagation".to_owned(), e))
    }
}
