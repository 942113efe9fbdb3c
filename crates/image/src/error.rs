//! The error type of this crate: every variant names the thing it is about (a path, a digest,
//! a reference or a layer entry), so that the one line a user sees is enough to act on.

use std::io;
use std::path::PathBuf;

/// What went wrong with the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the store (or an input file) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A directory of the store that another user owns or can write to, or that is a link.
    #[error("image store {0}")]
    UnsafeStore(#[from] peapod_state::DirError),
    /// A digest is not `sha256:` followed by 64 lower-case hex digits.
    #[error("invalid digest {0:?}: only sha256 digests are supported")]
    BadDigest(String),
    /// Written content does not match the digest (or size) it was announced with.
    #[error("blob {expected}: content does not match ({problem})")]
    DigestMismatch {
        /// The announced digest.
        expected: String,
        /// What differs: the digest computed, or the size.
        problem: String,
    },
    /// Rootless, the files of a layer could not be given their owners in a user namespace.
    #[error("layer {layer}: cannot give its files their owners: {problem}")]
    Owners {
        /// The layer (its blob digest).
        layer: String,
        /// What failed.
        problem: String,
    },
    /// A blob the operation needs is not in the store.
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    /// A reference that is not a valid image name.
    #[error("invalid image reference {reference:?}: {problem}")]
    BadReference {
        /// The text given.
        reference: String,
        /// Why it is refused.
        problem: String,
    },
    /// No image has this name or id.
    #[error("image not known: {0}")]
    NotFound(String),
    /// A short id matches more than one image.
    #[error("image id {0} is ambiguous: it matches more than one image")]
    Ambiguous(String),
    /// A manifest or config that cannot be used.
    #[error("{what}: {problem}")]
    BadImage {
        /// The document: "manifest sha256:...", "config sha256:...", "index.json"...
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A layer entry that would escape its layer or that this process may not make.
    #[error("layer {layer}: entry {entry:?} refused: {problem}")]
    HostileEntry {
        /// The layer's blob digest.
        layer: String,
        /// The entry's name in the tar.
        entry: String,
        /// Why it is refused.
        problem: String,
    },
    /// A layer entry that could not be written.
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Entry {
        /// The layer's blob digest.
        layer: String,
        /// The entry's name in the tar.
        entry: String,
        /// The OS error.
        source: io::Error,
    },
    /// A layer that is not a readable tar stream (or not in a known compression).
    #[error("layer {layer}: {problem}")]
    BadLayer {
        /// The layer's blob digest.
        layer: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The image is used by containers and `force` was not given.
    #[error("image {image} is in use by container(s) {}: remove them first or force it", containers.join(", "))]
    InUse {
        /// The image, as named by the caller.
        image: String,
        /// The containers using it.
        containers: Vec<String>,
    },
    /// A container id that cannot be a directory name in the store.
    #[error("invalid container id {0:?}")]
    BadContainerId(String),
    /// An archive or directory given to `load` that is no image format peapod knows.
    #[error("{path}: {problem}")]
    BadArchive {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn bad_image(what: impl Into<String>, problem: impl ToString) -> Error {
        Error::BadImage {
            what: what.into(),
            problem: problem.to_string(),
        }
    }
}

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
