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
    /// `linux.resources.devices` holds a rule that is not one, or one runc refuses.
    #[error("linux.resources.devices: {0}")]
    DeviceRules(String),
    /// The rules deny some device, and the kernel cannot enforce them here: the device
    /// program could not be loaded or attached (no `CONFIG_CGROUP_BPF`, no privilege), or
    /// there is neither a cgroup2 directory nor a v1 devices controller. The container is
    /// refused rather than run with every device open to it.
    #[error(
        "linux.resources.devices: the kernel cannot filter devices for {path} ({source}); \
         refusing to run the container with every device open to it"
    )]
    DeviceFilter {
        /// The container's cgroup2 directory, or its cgroup where it has none.
        path: PathBuf,
        /// Why not.
        source: crate::BpfError,
    },
    /// The systemd driver: a path it cannot parse, or systemd refused or failed a job.
    #[error("systemd: {0}")]
    Systemd(String),
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
