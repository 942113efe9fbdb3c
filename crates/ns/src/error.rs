//! The error type of this crate.

use std::io;
use std::path::PathBuf;

/// A namespace operation that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `clone3`/`clone` refused to create the namespaces.
    #[error("failed to create namespaces {what}: {source}{hint}")]
    Clone {
        /// The namespaces asked for, e.g. `user,pid,net`.
        what: String,
        /// The OS error.
        source: io::Error,
        /// A sentence saying why the kernel likely refused, prefixed by "; ", or empty.
        hint: String,
    },
    /// Opening or entering a namespace file failed.
    #[error("failed to join {kind} namespace {path}: {source}")]
    Join {
        /// The namespace kind.
        kind: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A `/proc/PID/ns/*` file could not be read.
    #[error("failed to read namespace {path}: {source}")]
    Identify {
        /// The namespace file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing a uid/gid map or `setgroups` failed.
    #[error("failed to write {path}: {source}")]
    IdMap {
        /// The file written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A map that needs `newuidmap`/`newgidmap` cannot be written: the helper is missing,
    /// the range is not delegated to the caller, or the helper refused.
    #[error("{message}")]
    MapHelper {
        /// What is missing or what the helper said, one line.
        message: String,
    },
    /// Talking to rtnetlink failed.
    #[error("failed to bring up the loopback interface: {0}")]
    Loopback(io::Error),
    /// Setting the host or domain name failed.
    #[error("failed to set the {what} to {name:?}: {source}")]
    Uts {
        /// "hostname" or "domainname".
        what: &'static str,
        /// The requested name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
