//! The images `run` and `pod play` use: found in the store, pulled first as `--pull` or
//! `imagePullPolicy` says (pulling is `peapod-pull`'s, called through `pull::ensure`).

use std::path::PathBuf;

use anyhow::anyhow;
use peapod_runtime::{Error, Runtime};

use crate::args::PullWhen;

/// The image store's root: `PEAPOD_STORAGE`, else the default for root or not.
pub(crate) fn store_root(rt: &Runtime) -> PathBuf {
    std::env::var_os("PEAPOD_STORAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| peapod_image::default_root(rt.rootless))
}

/// The image `reference` names for `peapod run`, pulled first as `pull` says; with the
/// store's root.
pub(crate) fn for_run(
    rt: &Runtime,
    reference: &str,
    pull: PullWhen,
) -> Result<(PathBuf, peapod_image::Image), Error> {
    let root = store_root(rt);
    let store = peapod_image::Store::open(&root).map_err(Error::runtime)?;
    let found = store.resolve(reference).map_err(Error::runtime)?;
    match (found, pull) {
        (Some(image), PullWhen::Missing | PullWhen::Never) => Ok((root, image)),
        (None, PullWhen::Never) => Err(Error::runtime(anyhow!(
            "image {reference} is not in the image store {} (--pull never)",
            root.display()
        ))),
        (_, _) => Err(Error::runtime(anyhow!(
            "image {reference} is not in the image store {}, and pulling is not built yet",
            root.display()
        ))),
    }
}

/// Makes sure image `reference` is in the store as a Pod's `imagePullPolicy` says.
pub(crate) fn ensure(
    rt: &Runtime,
    reference: &str,
    policy: peapod_pod::PullPolicy,
) -> Result<(), Error> {
    let pull = match policy {
        peapod_pod::PullPolicy::Always => PullWhen::Always,
        peapod_pod::PullPolicy::IfNotPresent => PullWhen::Missing,
        peapod_pod::PullPolicy::Never => PullWhen::Never,
    };
    for_run(rt, reference, pull).map(drop)
}
