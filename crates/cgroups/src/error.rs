//! The error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a cgroup file or making or removing a directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing a value to a cgroup file failed.
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The host's cgroup layout could not be understood.
    #[error("cgroups: {0}")]
    Layout(String),
    /// A resource the spec asks for cannot be applied on this host.
    #[error("linux.resources.{field}: {problem}")]
    Unsupported {
        /// The JSON path below `linux.resources`.
        field: &'static str,
        /// Why not.
        problem: String,
    },
    /// A path that would leave the cgroup hierarchy, or name its root.
    #[error("linux.cgroupsPath {0:?}: must name a cgroup below the root, without '..'")]
    BadPath(PathBuf),
    /// A file held something this crate cannot read.
    #[error("cannot parse {path}: {text:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
    /// Processes were still in the cgroup after being killed.
    #[error("cgroup {path}: processes {pids:?} survived SIGKILL for {timeout:?}")]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// What is left.
        pids: Vec<u32>,
        /// How long they were given.
        timeout: Duration,
    },
    /// The freezer did not reach the state asked for in time.
    #[error("cgroup {path}: not frozen within {timeout:?} (thawed again)")]
    FreezeTimeout {
        /// The cgroup directory.
        path: PathBuf,
        /// How long it was given.
        timeout: Duration,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}
