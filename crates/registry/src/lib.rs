//! Pulling OCI images from registries (the OCI distribution spec) into peapod's image store.
//!
//! A blocking client on ureq and rustls, with oci-spec's types: no async runtime. Only the
//! `peapod-pull` binary links it, so `peapod` itself carries no HTTP or TLS code.
//!
//! ```no_run
//! # fn main() -> Result<(), peapod_registry::Error> {
//! let store = peapod_image::Store::open(std::path::Path::new("/var/lib/peapod"))?;
//! let image = peapod_registry::pull(&store, "busybox", &peapod_registry::Options::default())?;
//! println!("{}", image.id);
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod error;
mod progress;
mod pull;

use std::path::PathBuf;

pub use auth::{default_auth_files, find_credentials, Credentials};
pub use error::{Error, Result};
pub use progress::ProgressMode;
pub use pull::{pull, Platform};

/// How to pull.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registries (`HOST` or `HOST:PORT`) that may be reached over plain HTTP or HTTPS
    /// without verification, besides localhost.
    pub insecure_registries: Vec<String>,
    /// The platform an index is searched for; this machine's when `None`.
    pub platform: Option<Platform>,
    /// Auth files, first match wins; [`default_auth_files`] by default.
    pub auth_files: Vec<PathBuf>,
    /// A directory of `*.crt` CA certificates to trust for this registry, instead of
    /// `/etc/containers/certs.d/HOST[:PORT]`.
    pub cert_dir: Option<PathBuf>,
    /// How progress is shown on stderr.
    pub progress: ProgressMode,
    /// At most this many blobs download at once.
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            insecure_registries: Vec::new(),
            platform: None,
            auth_files: default_auth_files(),
            cert_dir: None,
            progress: ProgressMode::Auto,
            // As docker's and podman's default of three parallel layer downloads.
            jobs: 3,
        }
    }
}
