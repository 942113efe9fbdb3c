//! OCI images on disk for peapod: a content-addressed store of blobs, image names pointing
//! at manifests, and layers unpacked once (safely) and shared by every image that has them;
//! `load`, `save` and `import` of the archive formats docker and podman write.
//!
//! ```no_run
//! # fn main() -> Result<(), peapod_image::Error> {
//! let store = peapod_image::Store::open(&peapod_image::default_root(false))?;
//! if let Some(image) = store.resolve("busybox")? {
//!     println!("{} has {} layers", image.id, image.layers.len());
//! }
//! # Ok(()) }
//! ```
//!
//! No network code lives here: pulling is `peapod-registry`'s, which writes blobs with
//! [`Store::begin_blob`] and records the image with [`Store::add_image`].

mod archive;
mod blob;
mod error;
mod owners;
mod rebuild;
mod store;
pub mod unpack;

use std::path::PathBuf;

pub use archive::go_arch;
pub use blob::{digest_of, parse_digest, BlobWriter};
pub use error::{Error, Result};
pub use oci_spec::distribution::Reference;
pub use oci_spec::image::{Digest, ImageConfiguration, ImageIndex, ImageManifest};
pub use store::{
    normalized_name, ContainerLayers, Image, Lease, Pruned, Removed, Store, DOCKER_LIST,
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
pub use unpack::UnpackOptions;

/// The store's root: `flag` (`--storage`), else `PEAPOD_STORAGE`, else [`default_root`].
pub fn root(flag: Option<PathBuf>, rootless: bool) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("PEAPOD_STORAGE")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| default_root(rootless))
}

/// The store's default root: `/var/lib/peapod` for root, else `$XDG_DATA_HOME/peapod`
/// (`~/.local/share/peapod`).
pub fn default_root(rootless: bool) -> PathBuf {
    if !rootless {
        return PathBuf::from("/var/lib/peapod");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    data.join("peapod")
}
