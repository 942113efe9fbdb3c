//! The error type of this crate.

/// What could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process is gone (or was never there).
    #[error("process {0} is not running")]
    Gone(i32),
    /// A file of the process could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
