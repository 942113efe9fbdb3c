//! A directory only its owner can change: what peapod keeps on disk (the state root, the
//! image store, the CNI result cache) lives in one, so that no other user can plant a
//! symbolic link or a file there for root to follow or trust.
//!
//! [`PrivateDir::create`] and [`PrivateDir::subdir`] open the directory with `O_NOFOLLOW`
//! (a subdirectory with `openat` relative to its parent's descriptor, so that no component
//! below the first is resolved by name) and check the open descriptor with `fstat`, so that
//! what is checked is what was opened: a directory, owned by this process's effective uid,
//! not writable by group or others.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

/// Why a directory was not used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory is not safe: it is a link, not a directory, someone else's, or writable
    /// by others.
    #[error("{path} {problem}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it, as the end of a sentence naming the path.
        problem: String,
    },
    /// It could not be made or opened.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl DirError {
    fn io(path: &Path) -> impl FnOnce(Errno) -> DirError + '_ {
        move |e| DirError::Io {
            path: path.to_owned(),
            source: e.into(),
        }
    }
}

/// An open directory that only its owner, this process's user, can change.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl PrivateDir {
    /// Opens the directory `path`, making it (and any missing parent) with `mode` when it is
    /// missing, and checks it. The last component must not be a symbolic link; the parents
    /// are resolved as usual (`/var/run` is a link to `/run` on most systems).
    pub fn create(path: &Path, mode: u32) -> Result<PrivateDir, DirError> {
        match PrivateDir::open(path) {
            Err(DirError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                // Only the missing ones are made; each with `mode` (less the umask), as
                // `mkdir -p -m` makes them.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(path)
                    .or_else(|e| match e.kind() {
                        // A link planted meanwhile is refused below, by its name.
                        io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|source| DirError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
                PrivateDir::open(path)
            }
            other => other,
        }
    }

    /// Opens the existing directory `path` and checks it as [`PrivateDir::create`] does.
    pub fn open(path: &Path) -> Result<PrivateDir, DirError> {
        PrivateDir::checked(CWD, path, path, 0o022)
    }

    /// Opens the subdirectory `name` (one component), making it with `mode` when missing,
    /// without following a link, and checks it: besides being this user's and not writable
    /// by others, it may not give group or others any permission `mode` does not (a store's
    /// `layers/` is 0700 because the layers below hold world-writable directories such as
    /// `tmp/`, which another user must not reach).
    pub fn subdir(&self, name: &str, mode: u32) -> Result<PrivateDir, DirError> {
        let path = self.path.join(name);
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(DirError::Unsafe {
                path,
                problem: "is not one path component".into(),
            });
        }
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(DirError::io(&path)(e)),
        }
        let refused = 0o022 | (0o077 & !mode);
        PrivateDir::checked(self.fd.as_fd(), Path::new(name), &path, refused)
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` relative to `dir` (`path` in messages) and checks the descriptor: a
    /// directory (not a link to one), owned by this process's effective uid, with none of
    /// the mode bits `refused`.
    fn checked<Fd: AsFd>(
        dir: Fd,
        name: &Path,
        path: &Path,
        refused: u32,
    ) -> Result<PrivateDir, DirError> {
        let unsafe_dir = |problem: String| DirError::Unsafe {
            path: path.to_owned(),
            problem,
        };
        let fd = match open_dir(dir.as_fd(), name) {
            Ok(fd) => fd,
            // With O_DIRECTORY the kernel answers ENOTDIR for a link as the last component
            // (ELOOP without it); which one it was is told by its lstat.
            Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                let link = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(DirError::io(path))?;
                return Err(match FileType::from_raw_mode(link.st_mode) {
                    FileType::Symlink => unsafe_dir(
                        "is a symbolic link (not followed: it must be a directory)".into(),
                    ),
                    FileType::Directory => DirError::io(path)(e),
                    _ => unsafe_dir("is not a directory".into()),
                });
            }
            Err(e) => return Err(DirError::io(path)(e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(DirError::io(path))?;
        let euid = rustix::process::geteuid().as_raw();
        let mode = stat.st_mode & 0o7777;
        if stat.st_uid != euid {
            return Err(unsafe_dir(format!(
                "is owned by uid {}, not by uid {euid}",
                stat.st_uid
            )));
        }
        if mode & 0o022 != 0 {
            return Err(unsafe_dir(format!("is writable by others (mode {mode:o})")));
        }
        if mode & refused != 0 {
            return Err(unsafe_dir(format!(
                "is open to other users (mode {mode:o}, expected {:o})",
                mode & !refused
            )));
        }
        Ok(PrivateDir {
            fd,
            path: path.to_owned(),
        })
    }
}

impl AsFd for PrivateDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn open_dir<Fd: AsFd>(dir: Fd, path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn problem(result: Result<PrivateDir, DirError>) -> String {
        match result {
            Err(DirError::Unsafe { problem, .. }) => problem,
            other => panic!("expected an unsafe directory, got {other:?}"),
        }
    }

    #[test]
    fn a_new_directory_is_made_with_its_mode_and_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = PrivateDir::create(&dir.path().join("a/b"), 0o700).expect("create");
        let sub = root.subdir("c", 0o700).expect("subdir");
        assert_eq!(sub.path(), dir.path().join("a/b/c"));
        let meta = std::fs::metadata(sub.path()).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        PrivateDir::open(root.path()).expect("open again");
    }

    #[test]
    fn links_other_users_and_loose_modes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = PrivateDir::create(&dir.path().join("root"), 0o700).expect("create");
        std::os::unix::fs::symlink(dir.path(), root.path().join("link")).expect("symlink");
        assert!(problem(root.subdir("link", 0o700)).contains("symbolic link"));
        std::os::unix::fs::symlink(root.path(), dir.path().join("root-link")).expect("symlink");
        assert!(problem(PrivateDir::open(&dir.path().join("root-link"))).contains("symbolic link"));
        std::fs::write(root.path().join("file"), "").expect("file");
        assert!(problem(root.subdir("file", 0o700)).contains("not a directory"));
        let open = root.subdir("open", 0o700).expect("subdir");
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        assert!(problem(root.subdir("open", 0o700)).contains("open to other users"));
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        assert!(problem(PrivateDir::open(root.path())).contains("writable by others (mode 777)"));
        if rustix::process::geteuid().is_root() {
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            rustix::fs::chown(
                root.path(),
                Some(rustix::fs::Uid::from_raw(65534)),
                Some(rustix::fs::Gid::from_raw(65534)),
            )
            .expect("chown");
            assert!(problem(PrivateDir::open(root.path())).contains("owned by uid 65534"));
        }
    }
}
