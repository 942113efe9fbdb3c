//! A pull: the manifest (through an index to this platform's), then every blob the store
//! lacks, downloaded in parallel and verified while it is written, then the image recorded.
//! Nothing is named before every blob is in: a pull that is killed or fails leaves at most
//! whole, verified blobs, which the next pull does not download again.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use peapod_image::{
    digest_of, parse_digest, Image, Reference, Store, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX,
    OCI_MANIFEST,
};

use crate::client::{status_error, Client};
use crate::progress::{human, short, BlobProgress, Progress};
use crate::{Error, Options, Result};

/// Manifests are small; a bigger answer is not one.
const MANIFEST_LIMIT: u64 = 4 << 20;

const SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// A platform an index is searched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// Go's name: `amd64`, `arm64`...
    pub architecture: String,
    /// `v7`, `v8`... when asked for.
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform (linux and the architecture peapod was built for).
    pub fn this_machine() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: peapod_image::go_arch().into(),
            variant: None,
        }
    }

    /// Parses `OS/ARCH[/VARIANT]`.
    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: parts.get(2).filter(|v| !v.is_empty()).map(|v| (*v).into()),
            }),
            _ => Err(Error::BadPlatform(text.into())),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Pulls `reference` (normalized as Docker does: `busybox` is
/// `docker.io/library/busybox:latest`) into `store`, and returns the image as recorded.
pub fn pull(store: &Store, reference: &str, options: &Options) -> Result<Image> {
    let parsed: Reference = reference.parse().map_err(|e| Error::BadReference {
        reference: reference.into(),
        problem: format!("{e}"),
    })?;
    let registry = parsed.resolve_registry().to_owned();
    let progress = Progress::new(options.progress);
    let client = Client::connect(&registry, parsed.repository(), options)?;
    let wanted = parsed
        .digest()
        .or(parsed.tag())
        .unwrap_or("latest")
        .to_owned();
    let pinned = parsed.digest().map(parse_digest).transpose()?;
    let (mut media_type, mut manifest) = fetch_manifest(&client, &parsed, &wanted, pinned)?;
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        let platform = options
            .platform
            .clone()
            .unwrap_or_else(Platform::this_machine);
        let chosen = choose(&parsed, &manifest, &platform)?;
        tracing::debug!("{}: {platform} is {chosen}", parsed.whole());
        let digest = parse_digest(&chosen)?;
        (media_type, manifest) = fetch_manifest(&client, &parsed, &chosen, Some(digest))?;
    }
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(Error::bad_manifest(
            parsed.whole(),
            format!("the registry sent a manifest of type {media_type:?}, not an image manifest"),
        ));
    }
    let image_manifest = ImageManifest::from_reader(manifest.as_slice())
        .map_err(|e| Error::bad_manifest(parsed.whole(), e))?;
    let blobs: Vec<Descriptor> = std::iter::once(image_manifest.config().clone())
        .chain(image_manifest.layers().iter().cloned())
        .collect();
    // Held until the image is recorded, so that a concurrent prune keeps the new blobs.
    let _lease = store.lease()?;
    let missing: Vec<Descriptor> = blobs
        .into_iter()
        .filter(|d| !store.has_blob(d.digest()))
        .collect();
    let total: u64 = missing.iter().map(|d| d.size()).sum();
    progress.line(&format!(
        "Pulling {} from {}: {} blob(s) to download ({})",
        parsed.whole(),
        client.registry(),
        missing.len(),
        human(total)
    ));
    download_all(store, &client, &progress, missing, options.jobs.max(1))?;
    let image = store.add_image(Some(&parsed), &media_type, &manifest)?;
    progress.line(&format!("Stored {} as {}", parsed.whole(), image.id));
    Ok(image)
}

/// The manifest `wanted` (a tag or digest) and its media type, checked against `pinned`
/// (the digest it must have) or the registry's `Docker-Content-Digest`.
fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    wanted: &str,
    pinned: Option<peapod_image::Digest>,
) -> Result<(String, Vec<u8>)> {
    let accept = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST].join(", ");
    let (url, mut response) = client.get(&format!("manifests/{wanted}"), &accept)?;
    match response.status().as_u16() {
        200 => {}
        404 => return Err(Error::NotFound(reference.whole())),
        status => return Err(status_error(&url, status, &mut response)),
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
    };
    let content_type = header("Content-Type");
    let announced = header("Docker-Content-Digest");
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MANIFEST_LIMIT)
        .read_to_vec()
        .map_err(|e| Error::Transport {
            url: url.clone(),
            source: Box::new(e),
        })?;
    let actual = digest_of(&bytes);
    let expected = match pinned {
        Some(digest) => Some(digest),
        None => announced.as_deref().map(parse_digest).transpose()?,
    };
    if let Some(expected) = expected {
        if expected != actual {
            return Err(Error::bad_manifest(
                format!("manifest {expected}"),
                format!("content does not match (its digest is {actual})"),
            ));
        }
    }
    // The body's own mediaType wins over a generic Content-Type (some registries send
    // application/json).
    let inner = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned));
    let media_type = inner.or(content_type).unwrap_or_default();
    if SCHEMA1.contains(&media_type.as_str()) {
        return Err(Error::bad_manifest(
            reference.whole(),
            "is a Docker schema 1 manifest, which peapod does not pull (deprecated since 2017; \
             re-push the image with a current docker, podman or skopeo)",
        ));
    }
    Ok((media_type, bytes))
}

/// The digest of `platform`'s manifest in an index.
fn choose(reference: &Reference, index: &[u8], platform: &Platform) -> Result<String> {
    let index =
        ImageIndex::from_reader(index).map_err(|e| Error::bad_manifest(reference.whole(), e))?;
    let mut seen = Vec::new();
    for entry in index.manifests() {
        let Some(p) = entry.platform() else { continue };
        let os = p.os().to_string();
        let arch = p.architecture().to_string();
        let variant = p.variant().clone();
        let matches = os == platform.os
            && arch == platform.architecture
            && (platform.variant.is_none() || variant == platform.variant);
        if matches {
            return Ok(entry.digest().to_string());
        }
        seen.push(match variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        });
    }
    Err(Error::bad_manifest(
        reference.whole(),
        format!(
            "no manifest for {platform} (the index has: {}); choose one with --platform",
            if seen.is_empty() {
                "none with a platform".to_owned()
            } else {
                seen.join(", ")
            }
        ),
    ))
}

/// Downloads `blobs` with up to `jobs` at once. The first failure stops the others (their
/// partial files are dropped) and is the error returned.
fn download_all(
    store: &Store,
    client: &Client,
    progress: &Progress,
    blobs: Vec<Descriptor>,
    jobs: usize,
) -> Result<()> {
    let queue = Mutex::new(blobs.into_iter());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let workers = jobs.min(queue_len(&queue));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(blob) = next else { return };
                if let Err(e) = download(store, client, progress, &blob, &failed) {
                    // Only the first error is the cause; the others are its consequences.
                    if !failed.swap(true, Ordering::Relaxed) {
                        *first_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    }
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn queue_len(queue: &Mutex<std::vec::IntoIter<Descriptor>>) -> usize {
    queue.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// One blob, streamed from the registry into the store's verifying writer.
fn download(
    store: &Store,
    client: &Client,
    progress: &Progress,
    blob: &Descriptor,
    failed: &AtomicBool,
) -> Result<()> {
    let digest = blob.digest().clone();
    let size = blob.size();
    let (url, mut response) = client.get(&format!("blobs/{digest}"), "*/*")?;
    match response.status().as_u16() {
        200 => {}
        status => return Err(status_error(&url, status, &mut response)),
    }
    let mut writer = store.begin_blob_sized(&digest, size)?;
    let mut sink = Sink {
        writer: &mut writer,
        progress: progress.blob(digest.as_ref(), size),
        failed,
    };
    // One byte more than announced is enough to tell that the blob is wrong; a registry
    // sending more is not read to the end.
    let mut body = response.body_mut().as_reader().take(size.saturating_add(1));
    io::copy(&mut body, &mut sink).map_err(|source| Error::Download {
        digest: digest.to_string(),
        source,
    })?;
    let Sink { progress: bar, .. } = sink;
    writer.commit()?;
    bar.done();
    tracing::debug!("{}: stored", short(digest.as_ref()));
    Ok(())
}

/// The store's writer, counting for the progress bar and stopping when another download
/// has failed.
struct Sink<'a> {
    writer: &'a mut peapod_image::BlobWriter,
    progress: BlobProgress,
    failed: &'a AtomicBool,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped: another blob failed"));
        }
        let n = self.writer.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_with_and_without_variant() {
        assert_eq!(
            Platform::parse("linux/arm/v7").expect("parses"),
            Platform {
                os: "linux".into(),
                architecture: "arm".into(),
                variant: Some("v7".into())
            }
        );
        assert_eq!(
            Platform::parse("linux/amd64").expect("parses").to_string(),
            "linux/amd64"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("/amd64").is_err());
    }
}
