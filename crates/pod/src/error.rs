//! The error type of this crate.

use std::path::PathBuf;

/// A pod operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pod name is not usable.
    #[error("invalid pod name {name:?}: {problem}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A pod with this name exists already.
    #[error("pod {0} already exists")]
    Exists(String),
    /// No pod has this name.
    #[error("pod {0} does not exist")]
    NotFound(String),
    /// The store below the pods failed.
    #[error(transparent)]
    State(#[from] peapod_state::Error),
    /// A mount for the pod directory or a pin failed.
    #[error("{what} {path}: {source}")]
    Mount {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn mount_err(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(nix::Error) -> Error {
    let path = path.to_owned();
    move |e| Error::Mount {
        what,
        path,
        source: e.into(),
    }
}

/// A pod operation's error as the runtime's, with its exit status: a bad name is bad usage
/// (2), anything else a failure of the runtime (125).
impl From<Error> for peapod_runtime::Error {
    fn from(err: Error) -> peapod_runtime::Error {
        match err {
            Error::InvalidName { .. } => peapod_runtime::Error::usage(err),
            other => peapod_runtime::Error::runtime(other),
        }
    }
}
