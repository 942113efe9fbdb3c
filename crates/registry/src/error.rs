//! The error type of this crate: each variant names the registry, reference, URL or digest it
//! is about, so that the one line a user sees says what to fix.

/// What went wrong while pulling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference is not a valid image name.
    #[error("invalid image reference {reference:?}: {problem}")]
    BadReference {
        /// The text given.
        reference: String,
        /// Why it is refused.
        problem: String,
    },
    /// A `--platform` that is not `OS/ARCH[/VARIANT]`.
    #[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], such as linux/amd64")]
    BadPlatform(String),
    /// The registry could not be reached (DNS, connection, TLS).
    #[error("{url}: {source}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// The HTTP client's error.
        source: Box<ureq::Error>,
    },
    /// The registry answered with an error status.
    #[error("{url}: {status}{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    Status {
        /// The URL asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own error message, when it sent one.
        message: String,
    },
    /// No manifest has this tag or digest.
    #[error("{0}: image not found in the registry (manifest unknown)")]
    NotFound(String),
    /// The registry wants credentials peapod does not have or that it refused.
    #[error("{registry}: authentication required or refused{}", if *had_credentials { " (the credentials from the auth file were refused)" } else { " (log in with podman login or docker login, or set REGISTRY_AUTH_FILE)" })]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// Whether credentials from an auth file were sent.
        had_credentials: bool,
    },
    /// Plain HTTP was needed but the registry is not one where peapod allows it.
    #[error("{registry}: {problem}")]
    Insecure {
        /// The registry host.
        registry: String,
        /// What happened and what to do.
        problem: String,
    },
    /// A manifest or index peapod cannot use.
    #[error("{what}: {problem}")]
    BadManifest {
        /// The document: the reference or digest.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An auth file that cannot be read or parsed.
    #[error("auth file {path}: {problem}")]
    AuthFile {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A CA certificate file (`--cert-dir`) that cannot be read.
    #[error("certificate {path}: {problem}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A blob download failed part way.
    #[error("blob {digest}: {source}")]
    Download {
        /// The blob.
        digest: String,
        /// The read or write error.
        source: std::io::Error,
    },
    /// The store refused: a blob that did not match its digest, a layer it could not unpack.
    #[error(transparent)]
    Store(#[from] peapod_image::Error),
}

impl Error {
    pub(crate) fn bad_manifest(what: impl Into<String>, problem: impl ToString) -> Error {
        Error::BadManifest {
            what: what.into(),
            problem: problem.to_string(),
        }
    }
}

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
