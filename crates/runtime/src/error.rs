//! The error of every lifecycle operation, with the exit status a command-line runtime ends
//! with when it fails.

use std::fmt;

/// Why a lifecycle operation failed. [`Error::exit_code`] is the status `peapod` exits with,
/// and [`Error::one_line`] the message it prints; both are runc's where containerd's shim or
/// podman read them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input (an invalid flag value, a malformed file named on the command line):
    /// exit status 2.
    #[error(transparent)]
    Usage(Cause),
    /// The container is not running (its process has exited, or it never started): runc's
    /// words and exit status 1. containerd's shim matches "container not running" to tell
    /// an exited process (NotFound: done) from a failed kill.
    #[error("container not running")]
    NotRunning,
    /// The state store refused: an invalid id (status 2), a container that does not exist
    /// (status 1: "does not exist" is what containerd's shim matches), or anything else (125).
    #[error(transparent)]
    State(#[from] peapod_state::Error),
    /// The container could not be created, started or waited for: 127 when the entrypoint
    /// does not exist, 126 when it cannot be executed, else 125.
    #[error(transparent)]
    Container(#[from] peapod_container::Error),
    /// Any other failure of the runtime itself: exit status 125.
    #[error(transparent)]
    Runtime(Cause),
    /// A failure another process had and reported with its exit status (the process that
    /// starts a `run -d` container and stays as its monitor): its one-line message and
    /// status, passed on as they were.
    #[error("{message}")]
    Reported {
        /// The exit status it would have ended with.
        code: i32,
        /// Its [`Error::one_line`].
        message: String,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Bad usage (exit status 2), with `error`'s message and causes.
    pub fn usage(error: impl Into<anyhow::Error>) -> Error {
        Error::Usage(Cause::from(error.into()))
    }

    /// A failure of the runtime (exit status 125), with `error`'s message and causes.
    pub fn runtime(error: impl Into<anyhow::Error>) -> Error {
        Error::Runtime(Cause::from(error.into()))
    }

    /// The exit status a command line should end with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::NotRunning => 1,
            Error::State(peapod_state::Error::InvalidId { .. }) => 2,
            Error::State(peapod_state::Error::NotFound(_)) => 1,
            // As docker's "multiple IDs found with provided prefix".
            Error::State(peapod_state::Error::Ambiguous { .. }) => 1,
            Error::State(_) | Error::Runtime(_) => 125,
            Error::Container(e) => e.exit_code(),
            Error::Reported { code, .. } => *code,
        }
    }

    /// Whether this is the failure of a build without the seccomp compiler (feature
    /// `seccomp-compile` off) to create a container whose profile is not in the
    /// compiled-filter cache. It comes before anything is made, so a caller may hand the same
    /// command to a build with the compiler, which compiles and caches the filter.
    pub fn needs_seccomp_compiler(&self) -> bool {
        matches!(
            self,
            Error::Container(peapod_container::Error::Config(e))
                if e.problem == peapod_seccomp::NO_COMPILER
        )
    }

    /// The error and its causes on one line, each cause once: library errors already quote
    /// their OS error in their message, so a cause that is already there is not repeated.
    pub fn one_line(&self) -> String {
        let mut line = String::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !line.contains(&text) {
                if !line.is_empty() {
                    line.push_str(": ");
                }
                line.push_str(&text);
            }
            next = cause.source();
        }
        line.replace('\n', " ")
    }
}

/// An error message and its chain of causes, as the operation that failed put them.
pub struct Cause(Box<dyn std::error::Error + Send + Sync + 'static>);

impl From<anyhow::Error> for Cause {
    fn from(error: anyhow::Error) -> Cause {
        Cause(error.into())
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn one_line_joins_the_causes_once_each() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::runtime(
            Err::<(), _>(io)
                .context("cannot write x: disk on fire")
                .context("saving")
                .unwrap_err(),
        );
        assert_eq!(err.one_line(), "saving: cannot write x: disk on fire");
        assert_eq!(err.exit_code(), 125);
        assert_eq!(Error::NotRunning.one_line(), "container not running");
        assert_eq!(Error::NotRunning.exit_code(), 1);
    }
}
