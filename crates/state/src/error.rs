//! The error type of this crate.

use std::path::PathBuf;

/// A state operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id is not usable.
    #[error("invalid container id {id:?}: {problem}")]
    InvalidId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A container with this id exists already.
    #[error("container {0} already exists")]
    Exists(String),
    /// The state root is not safe to use.
    #[error("state root {path} {problem}")]
    UnsafeRoot {
        /// The state root.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// No container has this id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A prefix of more than one generated id (see [`crate::Store::resolve`]).
    #[error("container id prefix {prefix} is ambiguous: it begins {}", .candidates.join(", "))]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// The ids it begins.
        candidates: Vec<String>,
    },
    /// Reading or writing the state failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `state.json` is not valid.
    #[error("corrupt state file {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io { what, path, source }
}
