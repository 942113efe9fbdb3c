//! Resolving and creating paths inside a root directory without ever leaving it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::{Error, Result};

/// An open root directory in which paths are resolved as if it were `/`.
///
/// Every lookup goes through `openat2(2)` with `RESOLVE_IN_ROOT`: absolute symlinks and `..`
/// are clamped to the root, exactly as a process chrooted there would see them, and
/// `RESOLVE_NO_MAGICLINKS` refuses `/proc/*/fd`-style links that could jump anywhere. New
/// directories and files are created one component at a time relative to a descriptor that
/// was itself resolved inside the root.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
    host_path: PathBuf,
}

impl InRoot {
    /// Opens the directory `root` (a host path).
    pub fn open(root: &Path) -> Result<InRoot> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Root {
            path: root.to_owned(),
            problem: io::Error::from(e).to_string(),
        })?;
        Ok(InRoot {
            root: root_fd,
            host_path: root.to_owned(),
        })
    }

    /// The root's path on the host.
    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// An `O_PATH` descriptor of `path` (as seen inside the root), which must exist.
    pub fn resolve(&self, path: &Path) -> Result<OwnedFd> {
        self.openat2(path).map_err(|source| Error::Resolve {
            path: path.to_owned(),
            source,
        })
    }

    /// Whether the last component of `path` (as seen inside the root, its parents resolved
    /// there) is a symbolic link. A missing one is not.
    pub fn is_symlink(&self, path: &Path) -> Result<bool> {
        let relative = relative(path);
        let Some(name) = relative.file_name() else {
            return Ok(false);
        };
        let err = |source| Error::Resolve {
            path: path.to_owned(),
            source,
        };
        let parent = match self.openat2(relative.parent().unwrap_or(Path::new(""))) {
            Ok(parent) => parent,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(err(e)),
        };
        match rustix::fs::readlinkat(&parent, name, Vec::new()) {
            Ok(_) => Ok(true),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => Ok(false),
            Err(e) => Err(err(e.into())),
        }
    }

    /// Reads the regular file `path` (as seen inside the root), at most `limit` bytes: small
    /// files of the image, such as `/etc/passwd`. Anything but a regular file is refused
    /// before it is opened for reading, so a fifo cannot block and a device is not touched.
    pub fn read_file(&self, path: &Path, limit: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        let err = |source| Error::Resolve {
            path: path.to_owned(),
            source,
        };
        let fd = self.openat2(path).map_err(err)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        // Reopened through the descriptor, which names the very file resolved in the root.
        let file = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(err)?;
        let mut bytes = Vec::new();
        file.take(limit).read_to_end(&mut bytes).map_err(err)?;
        Ok(bytes)
    }

    fn openat2(&self, path: &Path) -> io::Result<OwnedFd> {
        let relative = relative(path);
        let relative: &Path = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &relative
        };
        Ok(rustix::fs::openat2(
            &self.root,
            relative,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Resolves `path` inside the root, creating every missing directory on the way (mode
    /// 0755), and returns an `O_PATH` descriptor of the last one.
    pub fn create_dir_all(&self, path: &Path) -> Result<OwnedFd> {
        self.create(path, false)
    }

    /// Resolves `path` inside the root, creating missing parent directories and, when it is
    /// missing, an empty file (mode 0644) as the last component: a mount point for a file
    /// bind mount or a device.
    pub fn create_file(&self, path: &Path) -> Result<OwnedFd> {
        self.create(path, true)
    }

    /// Walks `path` one component at a time, as the kernel would inside the root: a symlink
    /// is read and its target spliced into the rest of the walk (an absolute one restarts at
    /// the root, `..` stops at the root), and a missing component is created in the
    /// directory the walk has reached. So a link to a missing directory, such as
    /// `proc -> /tmp/x`, gets its target made inside the root, never on the host.
    fn create(&self, path: &Path, last_is_file: bool) -> Result<OwnedFd> {
        /// As the kernel's limit on links followed in one lookup (MAXSYMLINKS).
        const MAX_LINKS: usize = 40;
        let err = |source| Error::Resolve {
            path: path.to_owned(),
            source,
        };
        let mut pending: VecDeque<OsString> =
            relative(path).iter().map(OsStr::to_os_string).collect();
        let mut reached = PathBuf::new();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                reached.pop();
                continue;
            }
            let parent = self.openat2(&reached).map_err(err)?;
            match rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new()) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(err(io::Error::from_raw_os_error(libc::ELOOP)));
                    }
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        reached = PathBuf::new();
                    }
                    for component in relative(&target).iter().rev() {
                        pending.push_front(component.to_os_string());
                    }
                    continue;
                }
                // EINVAL: it exists and is not a link.
                Err(e) if e == rustix::io::Errno::INVAL => {}
                Err(e) if e == rustix::io::Errno::NOENT => {
                    // `name` is one plain component and `parent` was resolved inside the
                    // root, so what is created here is inside it. O_NOFOLLOW and mkdir never
                    // follow a link raced into place; EEXIST then just means someone was
                    // faster, and the final lookup below checks the result.
                    let made = if pending.is_empty() && last_is_file {
                        rustix::fs::openat(
                            &parent,
                            name.as_os_str(),
                            OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::WRONLY
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )
                        .map(drop)
                    } else {
                        rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o755))
                    };
                    match made {
                        Ok(()) => {}
                        Err(e) if e == rustix::io::Errno::EXIST => {}
                        Err(e) => return Err(cannot_create(reached.join(&name), e)),
                    }
                }
                Err(e) => return Err(err(e.into())),
            }
            reached.push(name);
        }
        self.openat2(&reached).map_err(err)
    }
}

/// The error of a mount point that could not be made at `path` (inside the root). A
/// permission error says whose directory it is: one the container's root may not write to,
/// as a rootless container's is when the rootfs belongs to another user or to an id outside
/// its map.
fn cannot_create(path: PathBuf, errno: rustix::io::Errno) -> Error {
    let hint = match errno {
        rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
            "; its parent directory is not writable by the container's root (rootless: owned \
             by another user, or by an id outside the map), so make the mount point beforehand"
        }
        rustix::io::Errno::ROFS => "; the rootfs is read-only, so make the mount point beforehand",
        _ => "",
    };
    Error::Create {
        path: Path::new("/").join(path),
        source: errno.into(),
        hint,
    }
}

/// A descriptor together with its `/proc/self/fd/N` path: mounting onto that path mounts onto
/// the very inode the descriptor names, with no second lookup that a symlink swapped in
/// meanwhile could redirect. Holding both keeps the path valid as long as it is used.
#[derive(Debug)]
pub(crate) struct FdPath {
    _fd: OwnedFd,
    path: String,
}

impl FdPath {
    pub(crate) fn new(fd: OwnedFd) -> FdPath {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        FdPath { _fd: fd, path }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.path
    }
}

/// `path` without its leading `/` (and `.` components), to be resolved relative to the root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| {
            !matches!(
                c,
                Component::RootDir | Component::CurDir | Component::Prefix(_)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink")
    }

    #[test]
    fn absolute_symlink_to_slash_stays_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        symlink("/", root.join("etc")).expect("symlink");
        let in_root = InRoot::open(&root).expect("open");
        let fd = in_root
            .create_dir_all(Path::new("/etc/peapod-test"))
            .expect("create");
        assert_eq!(real_path(&fd), root.join("peapod-test"));
        assert!(!Path::new("/peapod-test").exists());
    }

    #[test]
    fn read_file_stays_inside_and_reads_only_regular_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir(root.join("etc")).expect("etc");
        std::fs::write(root.join("etc/passwd"), "inside\n").expect("passwd");
        symlink("/etc/passwd", root.join("link")).expect("symlink");
        let in_root = InRoot::open(&root).expect("open");
        let text = in_root.read_file(Path::new("/link"), 1024).expect("read");
        assert_eq!(text, b"inside\n");
        assert_eq!(
            in_root
                .read_file(Path::new("/etc/passwd"), 3)
                .expect("read"),
            b"ins"
        );
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        let err = in_root.read_file(Path::new("/fifo"), 1024).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(in_root.read_file(Path::new("/etc"), 1024).is_err());
    }

    #[test]
    fn dotdot_symlink_is_clamped_to_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        symlink("../../../../..", root.join("x")).expect("symlink");
        let in_root = InRoot::open(&root).expect("open");
        let fd = in_root
            .create_file(Path::new("/x/tmp/escape-file"))
            .expect("create");
        assert_eq!(real_path(&fd), root.join("tmp/escape-file"));
        assert!(!Path::new("/tmp/escape-file").exists());
    }

    #[test]
    fn dangling_symlink_target_is_made_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let outside = tempfile::tempdir().expect("outside");
        let target = outside.path().join("made-by-peapod");
        symlink(&target, root.join("d")).expect("symlink");
        let in_root = InRoot::open(&root).expect("open");
        let fd = in_root.create_file(Path::new("/d")).expect("create");
        let inside = root.join(target.strip_prefix("/").expect("absolute"));
        assert_eq!(real_path(&fd), inside);
        assert!(!target.exists());
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        symlink("b", root.join("a")).expect("symlink");
        symlink("a", root.join("b")).expect("symlink");
        let in_root = InRoot::open(&root).expect("open");
        let err = in_root.create_dir_all(Path::new("/a/x")).unwrap_err();
        assert!(err.to_string().contains("/a/x"), "{err}");
    }

    #[test]
    fn magic_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        symlink("/proc/self/root", root.join("hostroot")).expect("symlink");
        std::fs::create_dir(root.join("proc")).expect("mkdir");
        let in_root = InRoot::open(&root).expect("open");
        // Inside the root /proc is an empty directory: the link dangles, nothing escapes.
        assert!(in_root.resolve(Path::new("/hostroot/etc")).is_err());
    }

    /// Unmounts the read-only bind mount of the test below, also when it fails.
    struct Unmount(PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn a_mount_point_that_cannot_be_made_is_named_with_the_reason() {
        use nix::mount::{mount, MsFlags};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a read-only bind mount needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir(root.join("ro")).expect("mkdir");
        let ro = root.join("ro");
        mount(Some(&ro), &ro, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        let _unmount = Unmount(ro.clone());
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &ro, None::<&str>, flags, None::<&str>).expect("remount ro");
        let in_root = InRoot::open(&root).expect("open");
        let err = in_root
            .create_dir_all(Path::new("/ro/shared/deeper"))
            .expect_err("a read-only directory");
        let text = err.to_string();
        assert!(text.contains("cannot create /ro/shared inside"), "{text}");
        assert!(text.contains("make the mount point beforehand"), "{text}");
        assert!(!ro.join("shared").exists());
    }

    #[test]
    fn missing_root_names_the_path() {
        let err = InRoot::open(Path::new("/nonexistent-peapod-root")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-peapod-root"),
            "{err}"
        );
    }
}
