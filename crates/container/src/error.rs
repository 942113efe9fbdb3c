//! The error type of this crate.

use crate::{ChildFailure, ConfigError};

/// Why a container could not be created, started or waited for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid; nothing was created.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rootfs or a bind source is unusable; nothing was created.
    #[error(transparent)]
    Rootfs(#[from] peapod_rootfs::Error),
    /// Creating or entering namespaces failed in the runtime process.
    #[error(transparent)]
    Namespace(#[from] peapod_ns::Error),
    /// The container's cgroup could not be joined.
    #[error(transparent)]
    Cgroup(#[from] peapod_cgroups::Error),
    /// A `prestart`, `createRuntime` or `createContainer` hook failed; the container
    /// process has been reaped.
    #[error(transparent)]
    Hook(#[from] crate::HookError),
    /// The container process reported a failure; it has been reaped.
    #[error("{0}")]
    Child(ChildFailure),
    /// The container process died without saying why; it has been reaped.
    #[error("container process died during set-up ({0})")]
    ChildDied(String),
    /// The container process was killed by the OOM killer before its entrypoint ran.
    #[error("the container was OOM-killed during set-up: its memory limit is probably too low")]
    OomDuringSetUp,
    /// A system call of the runtime itself failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// The exit status a command-line runtime should end with: 127 when the entrypoint does
    /// not exist, 126 when it cannot be executed, 125 for every other failure (as podman).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Child(failure) => failure.exit_code,
            _ => 125,
        }
    }

    pub(crate) fn os(what: &'static str, source: impl Into<std::io::Error>) -> Error {
        Error::Os {
            what,
            source: source.into(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
