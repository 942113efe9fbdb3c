//! Images in and out of files: `load` (an OCI image layout directory, an OCI archive, or a
//! docker-archive as `docker save` and `podman save` write it, optionally gzipped), `save`
//! (an OCI archive, which `podman load`, `skopeo` and `ctr images import` read), and `import`
//! (a one-layer image from a root file system, a tar or a directory).
//!
//! An archive is read in one pass: every blob in it goes straight into the store through a
//! [`crate::BlobWriter`] (verified against its name `blobs/sha256/HEX` where it has one),
//! small files (the JSON documents) are kept in memory. Nothing is unpacked outside the
//! store, so an archive's member names cannot write anywhere.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};

use crate::blob::{hex_of, is_sha256_hex};
use crate::store::{DOCKER_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::{parse_digest, Digest, Error, Image, Reference, Result, Store};

/// Files of an archive at most this big are kept in memory; bigger ones (layers) go to the
/// store as blobs at once.
const SMALL: u64 = 1 << 20;

/// Where the members of an image archive are.
enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        small: HashMap<String, Vec<u8>>,
        blobs: HashMap<String, Digest>,
        links: HashMap<String, String>,
    },
}

impl Source {
    fn open(store: &Store, path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).map_err(Error::io(path))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_owned()));
        }
        let file = File::open(path).map_err(Error::io(path))?;
        Source::tar(store, file, path)
    }

    /// Reads a tar stream (plain, gzip or zstd) in one pass, so that a pipe serves as well
    /// as a file: blobs go into the store, small members into memory. `path` names it in
    /// errors.
    fn tar(store: &Store, input: impl Read, path: &Path) -> Result<Source> {
        let bad = |e: io::Error| Error::BadArchive {
            path: path.to_owned(),
            problem: format!("not a readable tar archive: {e}"),
        };
        let reader = crate::unpack::decompress(input).map_err(bad)?;
        let mut archive = tar::Archive::new(reader);
        let (mut small, mut blobs, mut links) = (HashMap::new(), HashMap::new(), HashMap::new());
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let Some(name) = member_name(&entry.path().map_err(bad)?) else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    // docker save writes a layer shared by two images once and links it.
                    if let Ok(Some(target)) = entry.link_name() {
                        let target = if entry.header().entry_type() == tar::EntryType::Link {
                            member_name(&target)
                        } else {
                            let parent = Path::new(&name).parent().unwrap_or(Path::new(""));
                            member_name(&parent.join(&target))
                        };
                        if let Some(target) = target {
                            links.insert(name, target);
                        }
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let hex = name
                        .strip_prefix("blobs/sha256/")
                        .filter(|h| is_sha256_hex(h));
                    if let Some(hex) = hex {
                        let digest = parse_digest(&format!("sha256:{hex}"))?;
                        if !store.has_blob(&digest) {
                            let mut writer = store.begin_blob(&digest)?;
                            io::copy(&mut entry, &mut writer).map_err(bad)?;
                            writer.commit()?;
                        }
                        blobs.insert(name, digest);
                    } else if entry.header().size().unwrap_or(u64::MAX) <= SMALL {
                        let mut bytes = Vec::new();
                        entry.read_to_end(&mut bytes).map_err(bad)?;
                        small.insert(name, bytes);
                    } else {
                        let mut writer = store.begin_blob_unknown()?;
                        io::copy(&mut entry, &mut writer).map_err(bad)?;
                        blobs.insert(name, writer.commit()?);
                    }
                }
                _ => {}
            }
        }
        Ok(Source::Tar {
            path: path.to_owned(),
            small,
            blobs,
            links,
        })
    }

    fn path(&self) -> &Path {
        match self {
            Source::Dir(path) | Source::Tar { path, .. } => path,
        }
    }

    fn missing(&self, name: &str) -> Error {
        Error::BadArchive {
            path: self.path().to_owned(),
            problem: format!("{name} is missing"),
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(dir) => dir.join(name).is_file(),
            Source::Tar {
                small,
                blobs,
                links,
                ..
            } => small.contains_key(name) || blobs.contains_key(name) || links.contains_key(name),
        }
    }

    /// A small member's bytes (a JSON document, or a blob read back from the store).
    fn read(&self, store: &Store, name: &str) -> Result<Vec<u8>> {
        let name = member_name(Path::new(name)).ok_or_else(|| self.missing(name))?;
        match self {
            Source::Dir(dir) => {
                let path = dir.join(&name);
                let file = File::open(&path).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => self.missing(&name),
                    _ => Error::io(&path)(e),
                })?;
                let mut bytes = Vec::new();
                file.take(64 << 20)
                    .read_to_end(&mut bytes)
                    .map_err(Error::io(&path))?;
                Ok(bytes)
            }
            Source::Tar {
                small,
                blobs,
                links,
                ..
            } => {
                let name = links.get(&name).unwrap_or(&name);
                if let Some(bytes) = small.get(name) {
                    return Ok(bytes.clone());
                }
                match blobs.get(name) {
                    Some(digest) => store.read_blob(digest),
                    None => Err(self.missing(name)),
                }
            }
        }
    }

    /// Puts a member into the store as a blob, checked against `expected` when given.
    fn blob(&self, store: &Store, name: &str, expected: Option<&Digest>) -> Result<Digest> {
        if let Some(digest) = expected.filter(|d| store.has_blob(d)) {
            return Ok(digest.clone());
        }
        let clean = member_name(Path::new(name)).ok_or_else(|| self.missing(name))?;
        let digest = match self {
            Source::Dir(dir) => {
                let path = dir.join(&clean);
                let mut file = File::open(&path).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => self.missing(&clean),
                    _ => Error::io(&path)(e),
                })?;
                let mut writer = match expected {
                    Some(digest) => store.begin_blob(digest)?,
                    None => store.begin_blob_unknown()?,
                };
                io::copy(&mut file, &mut writer).map_err(Error::io(&path))?;
                writer.commit()?
            }
            Source::Tar {
                small,
                blobs,
                links,
                ..
            } => {
                let clean = links.get(&clean).unwrap_or(&clean);
                match (blobs.get(clean), small.get(clean)) {
                    (Some(digest), _) => digest.clone(),
                    (None, Some(bytes)) => store.put_blob(bytes)?,
                    (None, None) => return Err(self.missing(clean)),
                }
            }
        };
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    problem: format!("its digest is {digest}"),
                });
            }
        }
        Ok(digest)
    }
}

/// A member's name without `./` and leading `/`; `None` for names with `..` or none at all.
fn member_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The Go name of this machine's architecture, as image configs and platforms write it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl Store {
    /// Loads every image of an OCI image layout directory, an OCI archive, or a
    /// docker-archive (`docker save`, `podman save`); gzip-compressed archives too.
    pub fn load(&self, path: &Path) -> Result<Vec<Image>> {
        let _lease = self.lease()?;
        let source = Source::open(self, path)?;
        self.load_source(&source)
    }

    /// Loads every image of an archive read from `input` (standard input, a pipe): an OCI
    /// archive or a docker-archive, plain or compressed, as [`Store::load`] takes them. The
    /// archive is read once from start to end, never sought; `name` names it in errors.
    pub fn load_from(&self, input: impl Read, name: &Path) -> Result<Vec<Image>> {
        let _lease = self.lease()?;
        let source = Source::tar(self, input, name)?;
        self.load_source(&source)
    }

    fn load_source(&self, source: &Source) -> Result<Vec<Image>> {
        let path = source.path();
        if source.has("index.json") {
            self.load_oci(source)
        } else if source.has("manifest.json") {
            self.load_docker(source)
        } else {
            Err(Error::BadArchive {
                path: path.to_owned(),
                problem:
                    "neither an OCI image layout (index.json) nor a docker-archive (manifest.json)"
                        .into(),
            })
        }
    }

    fn load_oci(&self, source: &Source) -> Result<Vec<Image>> {
        let index = json_of(source, &source.read(self, "index.json")?, "index.json")?;
        let mut images = Vec::new();
        for descriptor in index
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = descriptor_name(descriptor);
            if let Some(image) = self.load_descriptor(source, descriptor, name.as_ref(), 0)? {
                images.push(image);
            }
        }
        if images.is_empty() {
            return Err(Error::BadArchive {
                path: source.path().to_owned(),
                problem: format!("no image for linux/{} in index.json", go_arch()),
            });
        }
        Ok(images)
    }

    fn load_descriptor(
        &self,
        source: &Source,
        descriptor: &Value,
        name: Option<&Reference>,
        depth: u32,
    ) -> Result<Option<Image>> {
        let what = || format!("descriptor {descriptor}");
        let digest = descriptor
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_image(what(), "no digest"))?;
        let digest = parse_digest(digest)?;
        let media_type = descriptor
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(OCI_MANIFEST);
        let blob_name = format!("blobs/sha256/{}", hex_of(&digest)?);
        let digest = source.blob(self, &blob_name, Some(&digest))?;
        let bytes = self.read_blob(&digest)?;
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            if depth > 4 {
                return Err(Error::bad_image(what(), "indexes nested too deep"));
            }
            let index = json_of(source, &bytes, &blob_name)?;
            let chosen = index
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|m| is_this_platform(m));
            return match chosen {
                Some(m) => self.load_descriptor(source, m, name, depth + 1),
                None => Ok(None),
            };
        }
        if !is_this_platform(descriptor) {
            return Ok(None);
        }
        let manifest = json_of(source, &bytes, &blob_name)?;
        let config = manifest.get("config");
        let layers = manifest.get("layers").and_then(Value::as_array);
        for blob in config.into_iter().chain(layers.into_iter().flatten()) {
            let blob_digest = blob.get("digest").and_then(Value::as_str).ok_or_else(|| {
                Error::bad_image(format!("manifest {digest}"), "a blob without digest")
            })?;
            let blob_digest = parse_digest(blob_digest)?;
            source.blob(
                self,
                &format!("blobs/sha256/{}", hex_of(&blob_digest)?),
                Some(&blob_digest),
            )?;
        }
        self.add_image(name, media_type, &bytes).map(Some)
    }

    fn load_docker(&self, source: &Source) -> Result<Vec<Image>> {
        let manifest = json_of(
            source,
            &source.read(self, "manifest.json")?,
            "manifest.json",
        )?;
        let entries = manifest.as_array().ok_or_else(|| Error::BadArchive {
            path: source.path().to_owned(),
            problem: "manifest.json is not a list".into(),
        })?;
        let mut images = Vec::new();
        for entry in entries {
            let field = |key: &str| {
                entry.get(key).ok_or_else(|| Error::BadArchive {
                    path: source.path().to_owned(),
                    problem: format!("manifest.json: an image without {key}"),
                })
            };
            let config_name = field("Config")?.as_str().unwrap_or_default();
            let config = source.read(self, config_name)?;
            let config_digest = self.put_blob(&config)?;
            let mut layers = Vec::new();
            for layer in field("Layers")?.as_array().into_iter().flatten() {
                let layer_name = layer.as_str().unwrap_or_default();
                let digest = source.blob(self, layer_name, None)?;
                let size = self
                    .open_blob(&digest)?
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or(0);
                layers.push(json!({
                    "mediaType": layer_media_type(&mut self.open_blob(&digest)?),
                    "digest": digest,
                    "size": size,
                }));
            }
            let oci_manifest = oci_manifest(&config_digest, config.len(), layers)?;
            let tags: Vec<Reference> = entry
                .get("RepoTags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|t| t.parse().ok())
                .collect();
            let image = self.add_image(tags.first(), OCI_MANIFEST, &oci_manifest)?;
            for tag in tags.iter().skip(1) {
                self.tag(&image, tag)?;
            }
            images.push(
                self.resolve(image.manifest_digest.as_ref())?
                    .unwrap_or(image),
            );
        }
        Ok(images)
    }

    /// Writes `image` as an OCI archive to `out`, named `name` (or its first name):
    /// through a symbolic link, and straight into anything that is not a regular file (a
    /// FIFO, a terminal, `/dev/stdout`); a new file or an existing regular file is written
    /// atomically (a temporary file beside it, synced, renamed over it, keeping its mode),
    /// so that a failed save never leaves half an archive under the name. A Docker v2s2
    /// manifest is written as the OCI manifest it is equivalent to.
    pub fn save(&self, image: &Image, name: Option<&str>, out: &Path) -> Result<()> {
        let target = match std::fs::metadata(out) {
            Ok(meta) if meta.is_file() => {
                // Through any link, to the file itself: the link stays, the file is replaced.
                let real = std::fs::canonicalize(out).map_err(Error::io(out))?;
                Some((real, Some(meta.permissions().mode() & 0o777)))
            }
            Ok(_) => None,
            // A dangling link: written through, which makes its target (as the shell's `>`).
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(out).is_ok() =>
            {
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some((out.to_owned(), None)),
            Err(e) => return Err(Error::io(out)(e)),
        };
        let Some((path, mode)) = target else {
            let file = File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(out)
                .map_err(Error::io(out))?;
            return self.save_to(image, name, file, out);
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let temp = tempfile_in(dir, &path)?;
        let result = (|| -> Result<()> {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(Error::io(&temp))?;
            if let Some(mode) = mode {
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(Error::io(&temp))?;
            }
            self.save_to(image, name, &file, &path)?;
            file.sync_all().map_err(Error::io(&temp))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        std::fs::rename(&temp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Error::io(&path)(e)
        })
    }

    /// Writes `image` as an OCI archive to `out` (standard output, a pipe), in one pass;
    /// `path` names it in errors. See [`Store::save`].
    pub fn save_to(
        &self,
        image: &Image,
        name: Option<&str>,
        out: impl Write,
        path: &Path,
    ) -> Result<()> {
        let manifest_bytes = self.read_blob(&image.manifest_digest)?;
        let mut manifest: Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| Error::bad_image(format!("manifest {}", image.manifest_digest), e))?;
        let converted = to_oci(&mut manifest);
        let manifest_bytes = if converted {
            serde_json::to_vec(&manifest).map_err(|e| Error::bad_image("manifest", e))?
        } else {
            manifest_bytes
        };
        let manifest_digest = crate::digest_of(&manifest_bytes);
        let mut annotations = serde_json::Map::new();
        if let Some(name) = name
            .map(str::to_owned)
            .or_else(|| image.names.first().cloned())
        {
            annotations.insert("org.opencontainers.image.ref.name".into(), json!(name));
            annotations.insert("io.containerd.image.name".into(), json!(name));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_bytes.len(),
                "annotations": annotations,
            }],
        }))
        .map_err(|e| Error::bad_image("index.json", e))?;
        let written = (|| -> io::Result<()> {
            let mut builder = tar::Builder::new(io::BufWriter::with_capacity(256 * 1024, out));
            append_bytes(
                &mut builder,
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
            append_bytes(&mut builder, "index.json", &index)?;
            for name in ["blobs/", "blobs/sha256/"] {
                let mut header = blob_header(0);
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                builder.append_data(&mut header, name, io::empty())?;
            }
            let mut written = std::collections::HashSet::new();
            let config = manifest
                .get("config")
                .and_then(|c| c.get("digest"))
                .and_then(Value::as_str);
            let layers = manifest.get("layers").and_then(Value::as_array);
            let mut digests: Vec<String> = config.into_iter().map(str::to_owned).collect();
            digests.extend(
                layers
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.get("digest").and_then(Value::as_str))
                    .map(str::to_owned),
            );
            append_bytes(
                &mut builder,
                &format!("blobs/sha256/{}", manifest_digest.digest()),
                &manifest_bytes,
            )?;
            for digest in digests {
                if !written.insert(digest.clone()) {
                    continue;
                }
                let parsed = parse_digest(&digest).map_err(io::Error::other)?;
                let mut file = self.open_blob(&parsed).map_err(io::Error::other)?;
                let mut header = blob_header(file.metadata()?.len());
                builder.append_data(
                    &mut header,
                    format!("blobs/sha256/{}", parsed.digest()),
                    &mut file,
                )?;
            }
            let mut writer = builder.into_inner()?;
            writer.flush()
        })();
        written.map_err(Error::io(path))
    }

    /// Makes a one-layer image named `name` from a root file system: a tar (plain, gzip or
    /// zstd) or a directory.
    pub fn import(&self, rootfs: &Path, name: &Reference) -> Result<Image> {
        let _lease = self.lease()?;
        let meta = std::fs::metadata(rootfs).map_err(Error::io(rootfs))?;
        let mut writer = self.begin_blob_unknown()?;
        if meta.is_dir() {
            let mut builder = tar::Builder::new(&mut writer);
            builder.follow_symlinks(false);
            builder
                .append_dir_all(".", rootfs)
                .and_then(|()| builder.finish())
                .map_err(Error::io(rootfs))?;
        } else {
            let file = File::open(rootfs).map_err(Error::io(rootfs))?;
            let mut reader = crate::unpack::decompress(file).map_err(Error::io(rootfs))?;
            io::copy(&mut reader, &mut writer).map_err(Error::io(rootfs))?;
        }
        let size = writer.written();
        let layer = writer.commit()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let created = peapod_state::rfc3339(now);
        let config = serde_json::to_vec(&json!({
            "created": created,
            "architecture": go_arch(),
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": [layer]},
            "history": [{"created": created, "created_by": format!("peapod image import {}", rootfs.display())}],
        }))
        .map_err(|e| Error::bad_image("config", e))?;
        let config_digest = self.put_blob(&config)?;
        let layers = vec![json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer,
            "size": size,
        })];
        let manifest = oci_manifest(&config_digest, config.len(), layers)?;
        self.add_image(Some(name), OCI_MANIFEST, &manifest)
    }
}

/// An OCI image manifest of the config blob `config_digest` (`config_size` bytes) and
/// `layers` (their descriptors), as bytes.
fn oci_manifest(
    config_digest: &impl serde::Serialize,
    config_size: usize,
    layers: Vec<Value>,
) -> Result<Vec<u8>> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers,
    }))
    .map_err(|e| Error::bad_image("manifest", e))
}

fn json_of(source: &Source, bytes: &[u8], name: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadArchive {
        path: source.path().to_owned(),
        problem: format!("{name}: {e}"),
    })
}

/// The name a descriptor of an index carries: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` read as podman reads it (see [`ref_name`]).
fn descriptor_name(descriptor: &Value) -> Option<Reference> {
    let annotations = descriptor.get("annotations")?;
    let get = |key: &str| annotations.get(key).and_then(Value::as_str);
    match get("io.containerd.image.name") {
        Some(full) => full.parse().ok(),
        None => ref_name(get("org.opencontainers.image.ref.name")?),
    }
}

/// An `org.opencontainers.image.ref.name` as `podman load` names the image: a reference
/// with a registry (`docker.io/acme/app:2`) as it is; one without (`app:2`, `acme/app`, or
/// only a tag such as `latest`, as `skopeo copy ... oci:DIR:latest` and umoci write it) under
/// `localhost/`, so `latest` is `localhost/latest:latest`. A name that is no reference
/// leaves the image unnamed.
fn ref_name(name: &str) -> Option<Reference> {
    let first = name.split('/').next()?;
    let has_registry = name.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    match has_registry {
        true => name.parse().ok(),
        false => format!("localhost/{name}").parse().ok(),
    }
}

fn is_this_platform(descriptor: &Value) -> bool {
    let Some(platform) = descriptor.get("platform") else {
        return true;
    };
    let os = platform
        .get("os")
        .and_then(Value::as_str)
        .unwrap_or("linux");
    let arch = platform
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or(go_arch());
    os == "linux" && arch == go_arch()
}

/// The OCI media type of a layer blob, from its first bytes.
fn layer_media_type(file: &mut File) -> &'static str {
    let mut head = [0u8; 4];
    let n = file.read(&mut head).unwrap_or(0);
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    }
}

/// Rewrites a Docker v2s2 manifest's media types to OCI ones; whether anything changed.
fn to_oci(manifest: &mut Value) -> bool {
    let Some(object) = manifest.as_object_mut() else {
        return false;
    };
    if object.get("mediaType").and_then(Value::as_str) != Some(crate::DOCKER_MANIFEST) {
        return false;
    }
    object.insert("mediaType".into(), json!(OCI_MANIFEST));
    if let Some(config) = object.get_mut("config").and_then(Value::as_object_mut) {
        config.insert(
            "mediaType".into(),
            json!("application/vnd.oci.image.config.v1+json"),
        );
    }
    for layer in object
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(layer) = layer.as_object_mut() {
            let docker = layer
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let oci = if docker.ends_with("tar.gzip") {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else if docker.ends_with("tar.zstd") {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            layer.insert("mediaType".into(), json!(oci));
        }
    }
    true
}

fn blob_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let mut header = blob_header(bytes.len() as u64);
    builder.append_data(&mut header, name, bytes)
}

/// A temporary path next to `out`, so that the final rename stays on one file system.
fn tempfile_in(dir: &Path, out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    Ok(dir.join(format!(".{name}.{}.tmp", std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_name_without_a_registry_is_named_under_localhost_as_podman_does() {
        let name = |n: &str| ref_name(n).map(|r| r.whole());
        assert_eq!(name("latest").as_deref(), Some("localhost/latest:latest"));
        assert_eq!(name("app:2").as_deref(), Some("localhost/app:2"));
        assert_eq!(
            name("acme/app").as_deref(),
            Some("localhost/acme/app:latest")
        );
        assert_eq!(
            name("docker.io/acme/app:2").as_deref(),
            Some("docker.io/acme/app:2")
        );
        assert_eq!(
            name("registry:5000/app").as_deref(),
            Some("registry:5000/app:latest")
        );
        assert_eq!(name("Not A Name"), None);
    }
}
