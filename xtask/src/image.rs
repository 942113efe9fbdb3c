//! OCI image archives (`oci-layout`, `index.json`, `blobs/sha256/...` in one tar), written
//! offline from files on this machine: the pause image (`cargo xtask dist`: the static
//! peapod-init as `/pause`) and the busybox image of the CRI test (the test rootfs). Both
//! import with `ctr images import`.
//!
//! The one layer is an uncompressed tar (`application/vnd.oci.image.layer.v1.tar`): the
//! pause binary is 17 KB and the test image is read once, so gzip would buy nothing but a
//! dependency; its digest is then also its `diff_id`.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Result;

/// What goes into the one layer.
pub(crate) enum Layer<'a> {
    /// One file, at this path in the image (no leading `/`), mode 0755.
    File { from: &'a Path, at: &'a str },
    /// A whole directory tree as the image's root.
    Tree(&'a Path),
}

/// An image to write: its name (`io.containerd.image.name`, what `ctr images import` and the
/// CRI call it), the layer, and the config's entrypoint.
pub(crate) struct Image<'a> {
    pub name: &'a str,
    pub layer: Layer<'a>,
    pub entrypoint: &'a [&'a str],
}

/// Writes `image` as an OCI archive at `out`.
pub(crate) fn write_archive(image: &Image<'_>, out: &Path) -> Result {
    let layer = layer_tar(&image.layer)?;
    let layer_digest = digest(&layer);
    let arch = go_arch();
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": image.entrypoint,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "cargo xtask (peapod)"}],
    }))
    .map_err(|e| e.to_string())?;
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .map_err(|e| e.to_string())?;
    let manifest_digest = digest(&manifest);
    let tag = image.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": image.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| e.to_string())?;

    let file =
        std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |path: &str, data: &[u8]| -> Result {
        archive
            .append_data(&mut header(data.len(), 0o644), path, data)
            .map_err(|e| format!("cannot write {path} to {}: {e}", out.display()))
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for (digest, data) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        add(&format!("blobs/sha256/{hex}"), data)?;
    }
    archive
        .into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(|e| format!("cannot finish {}: {e}", out.display()))
}

/// The layer as a tar, with fixed owners and times so the same input gives the same digest.
fn layer_tar(layer: &Layer<'_>) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    match layer {
        Layer::File { from, at } => {
            let data =
                std::fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
            tar.append_data(&mut header(data.len(), 0o755), at, data.as_slice())
                .map_err(|e| format!("cannot add {}: {e}", from.display()))?;
        }
        Layer::Tree(dir) => tar
            .append_dir_all(".", dir)
            .map_err(|e| format!("cannot add {}: {e}", dir.display()))?,
    }
    tar.into_inner().map_err(|e| e.to_string())
}

/// A regular file's header: root-owned, `mode`, a fixed time.
fn header(size: usize, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// This machine's architecture as OCI (Go) names it.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
