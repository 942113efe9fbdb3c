//! The error type of this crate: every variant prints as one line that names the network,
//! the plugin and what went wrong.

use std::path::PathBuf;

/// A network operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No configuration list of that name in the configuration directories.
    #[error("network {name} not found in {dirs}")]
    NotFound {
        /// The network asked for.
        name: String,
        /// The directories searched, `:`-separated.
        dirs: String,
    },
    /// A configuration list that cannot be used.
    #[error("{path}: {problem}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A plugin binary is in none of the plugin directories.
    #[error("network {network}: plugin {plugin:?} not found in {dirs}")]
    PluginNotFound {
        /// The network.
        network: String,
        /// The plugin's type.
        plugin: String,
        /// The directories searched.
        dirs: String,
    },
    /// A plugin failed: its JSON error (code, message, details) or what it wrote to stderr.
    #[error("network {network}: plugin {plugin} {command} failed: {message}")]
    Plugin {
        /// The network.
        network: String,
        /// The plugin's type.
        plugin: String,
        /// ADD, CHECK or DEL.
        command: &'static str,
        /// The plugin's error as one line.
        message: String,
    },
    /// A plugin did not answer in time (and was killed).
    #[error("network {network}: plugin {plugin} {command} did not finish within {seconds} s")]
    Timeout {
        /// The network.
        network: String,
        /// The plugin's type.
        plugin: String,
        /// ADD, CHECK or DEL.
        command: &'static str,
        /// The time it had.
        seconds: u64,
    },
    /// A file of the cache or the configuration could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cache directory (or its `results/`) is a link, another user's, or writable by
    /// others: its entries decide what DEL runs, so they are not trusted then.
    #[error("CNI cache {0}")]
    UnsafeCache(#[from] peapod_state::DirError),
    /// An address or range that does not fit.
    #[error("{0}")]
    Invalid(String),
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
