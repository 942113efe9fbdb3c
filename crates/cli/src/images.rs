//! The images `run` and `pod play` use: found in the store, pulled first as `--pull` or
//! `imagePullPolicy` says (by `peapod-pull`, through `pull::ensure`).

use std::path::PathBuf;

use peapod_runtime::{Error, Runtime};

use crate::args::GlobalArgs;
use crate::pull::{PullOptions, PullPolicy};

/// The image store's root, as `--storage`, `PEAPOD_STORAGE` or the default name it.
pub(crate) fn store_root(rt: &Runtime, global: &GlobalArgs) -> PathBuf {
    crate::pull::storage_root(global, rt.rootless)
}

/// The image `reference` names for `peapod run`, pulled first as `policy` says; with the
/// store's root.
pub(crate) fn for_run(
    rt: &Runtime,
    global: &GlobalArgs,
    reference: &str,
    policy: PullPolicy,
) -> Result<(PathBuf, peapod_image::Image), Error> {
    let store = crate::image::store(rt, global)?;
    let image = crate::pull::ensure(&store, reference, policy, &PullOptions::default())?;
    Ok((store.root().to_owned(), image))
}

/// Makes sure image `reference` is in the store as a Pod's `imagePullPolicy` says.
pub(crate) fn ensure(
    rt: &Runtime,
    global: &GlobalArgs,
    reference: &str,
    policy: peapod_pod::PullPolicy,
) -> Result<(), Error> {
    let policy = match policy {
        peapod_pod::PullPolicy::Always => PullPolicy::Always,
        peapod_pod::PullPolicy::IfNotPresent => PullPolicy::Missing,
        peapod_pod::PullPolicy::Never => PullPolicy::Never,
    };
    for_run(rt, global, reference, policy).map(drop)
}
