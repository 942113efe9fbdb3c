//! The error type of this crate.

use std::io;
use std::path::PathBuf;

/// A rootfs operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The root directory is missing or is not a directory.
    #[error("rootfs {path}: {problem}")]
    Root {
        /// The rootfs path on the host.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A path inside the root could not be resolved or created.
    #[error("failed to resolve {path} inside the rootfs: {source}")]
    Resolve {
        /// The path, as seen inside the container.
        path: PathBuf,
        /// The OS error (`EXDEV` or `ELOOP` for a link that leads out of the root).
        source: io::Error,
    },
    /// A missing directory or file (a mount point) could not be made inside the root.
    #[error("cannot create {path} inside the rootfs (a mount point): {source}{hint}")]
    Create {
        /// The component that could not be made, as seen inside the container.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
        /// What an `EACCES` most likely means, or nothing.
        hint: &'static str,
    },
    /// A mount failed.
    #[error("failed to mount {what} on {target}: {source}")]
    Mount {
        /// What was mounted: a file system type or a bind source.
        what: String,
        /// The target, as seen inside the container.
        target: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A mount option is not known.
    #[error("mount {target}: unknown option {option:?}")]
    Option {
        /// The target of the mount.
        target: PathBuf,
        /// The option.
        option: String,
    },
    /// A mount destination that a container may not have.
    #[error("mount destination {path}: {problem}")]
    Destination {
        /// The destination, as seen inside the container.
        path: PathBuf,
        /// Why it is refused.
        problem: String,
    },
    /// A bind mount source does not exist on the host.
    #[error("bind mount source {path}: {source}")]
    Source {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Creating a device node or link in /dev failed.
    #[error("failed to create {path}: {source}")]
    Device {
        /// The path inside the container.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `pivot_root` or the chroot fallback failed.
    #[error("failed to {step}: {source}")]
    Pivot {
        /// The step, e.g. "pivot_root into /srv/rootfs".
        step: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn os(err: impl Into<io::Error>) -> io::Error {
    err.into()
}
