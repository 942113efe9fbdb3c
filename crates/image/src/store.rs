//! The store on disk and its invariants (see ARCHITECTURE.md, "The image store"):
//!
//! ```text
//! ROOT/blobs/sha256/HEX                 manifests, configs, layer blobs (verified on write)
//! ROOT/layers/sha256/DIFFID/diff/       a layer unpacked (shared by every image that has it)
//! ROOT/layers/sha256/DIFFID/size        its uncompressed tar size, in bytes
//! ROOT/images.json                      image records: manifest digest, media type, names
//! ROOT/containers/ID/image.json         a container's use of an image (rmi refuses it)
//! ROOT/containers/ID/{upper,work}       its overlay upper and work directories
//! ROOT/tmp/PID-START-N.KIND             work in progress of the process PID (start time START)
//! ROOT/lock, ROOT/gc.lock               flock(2) locks
//! ```
//!
//! Everything becomes visible by one `rename(2)` when it is complete: a blob after its digest
//! was checked, a layer directory after its whole tar was unpacked and its diff_id checked,
//! `images.json` after every blob and layer of its images is in place. A killed process
//! leaves only entries under `tmp/`, which the next writer sweeps once their process is gone.
//! `lock` serialises changes of `images.json` and `containers/`; `gc.lock` is held shared by
//! everything that adds content (a [`Lease`]) and exclusively by `prune`, so that prune never
//! removes a blob that a load or pull has written but not yet recorded.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use peapod_state::PrivateDir;
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::blob::{self, hex_of, BlobWriter, HashingReader};
use crate::unpack::{self, UnpackOptions};
use crate::{Digest, Error, Reference, Result};

/// Media types of manifests this store takes.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's image manifest, version 2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker's manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its names, normalized: `docker.io/library/busybox:latest`.
    pub names: Vec<String>,
    /// The config digest, which docker and podman show as the image id.
    pub id: Digest,
    /// The digest of its manifest.
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI or Docker v2 schema 2).
    pub manifest_media_type: String,
    /// The image config: Entrypoint, Cmd, Env, WorkingDir, User, StopSignal...
    pub config: ImageConfiguration,
    /// The unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// The uncompressed size of its layers, in bytes.
    pub size: u64,
    /// When it was created, as its config says (RFC 3339).
    pub created: Option<String>,
}

/// The layers of a container's overlay root.
#[derive(Debug, Clone)]
pub struct ContainerLayers {
    /// The image's layer directories, lowest first.
    pub lower: Vec<PathBuf>,
    /// The container's own upper directory (none for a read-only root).
    pub upper: Option<PathBuf>,
    /// overlayfs's work directory, next to `upper`.
    pub work: Option<PathBuf>,
}

/// What `remove` did.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    /// Names taken off an image.
    pub untagged: Vec<String>,
    /// The image whose record was removed (its blobs and layers go at the next prune).
    pub deleted: Option<Digest>,
}

/// What `prune` freed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes of files removed (blobs, unpacked files and leftovers of killed processes).
    pub bytes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ImagesFile {
    pub(crate) images: Vec<ImageRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub(crate) manifest: String,
    pub(crate) media_type: String,
    pub(crate) names: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ContainerRecord {
    image: String,
    manifest: String,
    layers: Vec<String>,
}

/// A shared hold on the store's content: while it lives, `prune` waits, so blobs written
/// for an image that is not recorded yet stay. Take one before the first blob of a pull.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// An exclusive hold on the store's records.
#[derive(Debug)]
struct Locked {
    _file: File,
}

/// The image store at a root directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    options: UnpackOptions,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (making, mode 0700) the store at `root`. Layers are unpacked as this process
    /// can: see [`UnpackOptions::for_this_process`].
    pub fn open(root: &Path) -> Result<Store> {
        Store::open_with(root, UnpackOptions::for_this_process())
    }

    /// Opens the store at `root`, unpacking layers with `options`.
    ///
    /// The root and every directory of the store are checked as the state root is (see
    /// [`peapod_state::PrivateDir`]): this user's, not writable by others, not a symbolic
    /// link; the directories below the root also closed to other users (mode 0700), since
    /// the layers and containers' upper directories below them hold world-writable
    /// directories. So no other user can make this process unpack, write or remove anything
    /// outside the store, or take a planted file for a record.
    pub fn open_with(root: &Path, options: UnpackOptions) -> Result<Store> {
        let dir = PrivateDir::create(root, 0o700)?;
        for (name, below) in [
            ("blobs", Some("sha256")),
            ("layers", Some("sha256")),
            ("containers", None),
            ("tmp", None),
        ] {
            let sub = dir.subdir(name, 0o700)?;
            if let Some(below) = below {
                sub.subdir(below, 0o700)?;
            }
        }
        Ok(Store {
            root: root.to_owned(),
            options,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.blob_dir().join(hex_of(digest)?))
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        let digest = blob::parse_digest(diff_id)?;
        Ok(self.root.join("layers/sha256").join(hex_of(&digest)?))
    }

    /// Whether the blob is in the store (then it is complete and verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Reads a whole blob (a manifest or config).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingBlob(digest.to_string()),
            _ => Error::io(&path)(e),
        })
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingBlob(digest.to_string()),
            _ => Error::io(&path)(e),
        })
    }

    /// A temporary path under `ROOT/tmp` that names this process, so that a sweep can tell
    /// whether its writer is still alive.
    pub(crate) fn temp_path(&self, kind: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or(0);
        self.root.join(format!("tmp/{pid}-{start}-{n}.{kind}"))
    }

    /// Starts writing the blob `expected`; see [`BlobWriter`].
    pub fn begin_blob(&self, expected: &Digest) -> Result<BlobWriter> {
        hex_of(expected)?;
        BlobWriter::new(
            self.temp_path("blob"),
            self.blob_dir(),
            Some(expected.clone()),
            None,
        )
    }

    /// As [`Store::begin_blob`], also checking the size.
    pub fn begin_blob_sized(&self, expected: &Digest, size: u64) -> Result<BlobWriter> {
        hex_of(expected)?;
        BlobWriter::new(
            self.temp_path("blob"),
            self.blob_dir(),
            Some(expected.clone()),
            Some(size),
        )
    }

    /// Starts writing a blob whose digest is not known yet (it is computed): a Docker
    /// archive's layer, an imported root file system.
    pub fn begin_blob_unknown(&self) -> Result<BlobWriter> {
        BlobWriter::new(self.temp_path("blob"), self.blob_dir(), None, None)
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = blob::digest_of(bytes);
        if !self.has_blob(&digest) {
            let mut writer = self.begin_blob(&digest)?;
            writer
                .write_all(bytes)
                .map_err(Error::io(self.blob_path(&digest)?))?;
            writer.commit()?;
        }
        Ok(digest)
    }

    /// A shared hold on the store's content; see [`Lease`].
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease {
            _file: self.flock("gc.lock", FlockOperation::LockShared)?,
        })
    }

    fn lock(&self) -> Result<Locked> {
        Ok(Locked {
            _file: self.flock("lock", FlockOperation::LockExclusive)?,
        })
    }

    fn flock(&self, name: &str, operation: FlockOperation) -> Result<File> {
        let path = self.root.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(Error::io(&path))?;
        rustix::fs::flock(&file, operation).map_err(|e| Error::io(&path)(e.into()))?;
        Ok(file)
    }

    /// The image records. A corrupt `images.json` is rebuilt first (see
    /// [`Store::read_records_locked`]), under the lock.
    fn read_records(&self) -> Result<ImagesFile> {
        match self.read_records_file()? {
            Ok(records) => Ok(records),
            Err(_) => {
                let locked = self.lock()?;
                self.read_records_locked(&locked)
            }
        }
    }

    /// The image records, read by a caller that holds the lock. A corrupt `images.json`
    /// does not break every image command: it is rebuilt from the store's manifests, config
    /// blobs and layers (see `rebuild.rs`), with one warning, and written back.
    fn read_records_locked(&self, locked: &Locked) -> Result<ImagesFile> {
        let (old, problem) = match self.read_records_file()? {
            Ok(records) => return Ok(records),
            Err(corrupt) => corrupt,
        };
        let records = crate::rebuild::records(
            crate::rebuild::candidate_manifests(&self.blob_dir()),
            &old,
            |digest, bytes| self.complete_image(digest, bytes),
        );
        let named = records
            .images
            .iter()
            .filter(|r| !r.names.is_empty())
            .count();
        tracing::warn!(
            "{}/images.json was corrupt ({problem}): rebuilt from the store, {} images ({named} with their names)",
            self.root.display(),
            records.images.len()
        );
        self.write_records(locked, &records)?;
        Ok(records)
    }

    /// `images.json` parsed; `Err` with its bytes and the parse error when it is corrupt.
    fn read_records_file(&self) -> Result<std::result::Result<ImagesFile, (Vec<u8>, String)>> {
        let path = self.root.join("images.json");
        let read = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut file| {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map(|_| bytes)
            });
        match read {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).map_err(|e| (bytes, e.to_string()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ok(ImagesFile::default())),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }

    /// The media type of the image manifest `bytes` (digest `digest`) when the image is
    /// whole in the store: its config blob readable, every layer unpacked.
    fn complete_image(&self, digest: &Digest, bytes: &[u8]) -> Option<String> {
        let media_type = manifest_type("", bytes).ok()?;
        let manifest = parse_manifest(digest, bytes).ok()?;
        let id = manifest.config().digest().clone();
        let config = parse_config(&id, &self.read_blob(&id).ok()?).ok()?;
        let diff_ids = config.rootfs().diff_ids();
        let whole = diff_ids.len() == manifest.layers().len()
            && diff_ids
                .iter()
                .all(|d| self.layer_dir(d).is_ok_and(|dir| dir.join("diff").is_dir()));
        whole.then_some(media_type)
    }

    fn write_records(&self, _locked: &Locked, records: &ImagesFile) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(records).map_err(|e| Error::bad_image("images.json", e))?;
        write_atomic(
            &self.temp_path("images.json"),
            &self.root.join("images.json"),
            &bytes,
        )
    }

    fn image_of(&self, record: &ImageRecord) -> Result<Image> {
        let manifest_digest = blob::parse_digest(&record.manifest)?;
        let manifest = parse_manifest(&manifest_digest, &self.read_blob(&manifest_digest)?)?;
        let id = manifest.config().digest().clone();
        let config = parse_config(&id, &self.read_blob(&id)?)?;
        let mut layers = Vec::new();
        let mut size = 0;
        for diff_id in config.rootfs().diff_ids() {
            let dir = self.layer_dir(diff_id)?;
            size += std::fs::read_to_string(dir.join("size"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            layers.push(dir.join("diff"));
        }
        Ok(Image {
            names: record.names.clone(),
            id,
            manifest_digest,
            manifest_media_type: record.media_type.clone(),
            created: config.created().clone(),
            config,
            layers,
            size,
        })
    }

    /// Every image, in the order they were added.
    pub fn list(&self) -> Result<Vec<Image>> {
        self.read_records()?
            .images
            .iter()
            .map(|r| self.image_of(r))
            .collect()
    }

    /// The image a reference names: `name[:tag]` (normalized as Docker does),
    /// `name@sha256:...`, or a full or short (at least 4 hex digits) image id.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>> {
        let records = self.read_records()?.images;
        match find(&self.root, &records, reference)? {
            Some(record) => Ok(Some(self.image_of(record)?)),
            None => Ok(None),
        }
    }

    /// Records an image from its manifest, whose config and layer blobs must all be in the
    /// store: unpacks each layer not unpacked yet, then (atomically) names the image.
    /// `name` moves to this image if another one had it.
    pub fn add_image(
        &self,
        name: Option<&Reference>,
        manifest_media_type: &str,
        manifest: &[u8],
    ) -> Result<Image> {
        let _lease = self.lease()?;
        let media_type = manifest_type(manifest_media_type, manifest)?;
        let manifest_digest = blob::digest_of(manifest);
        let parsed = parse_manifest(&manifest_digest, manifest)?;
        let config_desc = parsed.config();
        let config_type = config_desc.media_type().to_string();
        if !matches!(
            config_type.as_str(),
            "application/vnd.oci.image.config.v1+json"
                | "application/vnd.docker.container.image.v1+json"
        ) {
            return Err(Error::bad_image(
                format!("manifest {manifest_digest}"),
                format!("config media type {config_type} is not an image config"),
            ));
        }
        let id = config_desc.digest().clone();
        let config = parse_config(&id, &self.read_blob(&id)?)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != parsed.layers().len() {
            return Err(Error::bad_image(
                format!("config {id}"),
                format!(
                    "{} diff_ids for {} layers",
                    diff_ids.len(),
                    parsed.layers().len()
                ),
            ));
        }
        for (layer, diff_id) in parsed.layers().iter().zip(diff_ids) {
            let layer_type = layer.media_type().to_string();
            if !layer_type.contains(".tar") && !layer_type.contains("rootfs.diff") {
                return Err(Error::bad_image(
                    format!("manifest {manifest_digest}"),
                    format!("layer media type {layer_type} is not a file system layer"),
                ));
            }
            self.unpack_layer(layer.digest(), diff_id)?;
        }
        self.put_blob(manifest)?;
        let locked = self.lock()?;
        let mut records = self.read_records_locked(&locked)?;
        let name = name.map(|n| n.whole());
        if let Some(name) = &name {
            for record in &mut records.images {
                record.names.retain(|n| n != name);
            }
        }
        let manifest_text = manifest_digest.to_string();
        match records
            .images
            .iter_mut()
            .find(|r| r.manifest == manifest_text)
        {
            Some(record) => {
                record.names.extend(name);
            }
            None => records.images.push(ImageRecord {
                manifest: manifest_text.clone(),
                media_type,
                names: name.into_iter().collect(),
            }),
        }
        self.write_records(&locked, &records)?;
        self.sweep_temp(&locked);
        let record = records
            .images
            .iter()
            .find(|r| r.manifest == manifest_text)
            .cloned()
            .ok_or_else(|| Error::NotFound(manifest_text.clone()))?;
        drop(locked);
        self.image_of(&record)
    }

    /// Adds `name` to an image already in the store (taking it from any other image).
    pub fn tag(&self, image: &Image, name: &Reference) -> Result<()> {
        let locked = self.lock()?;
        let mut records = self.read_records_locked(&locked)?;
        let name = name.whole();
        let manifest = image.manifest_digest.to_string();
        if !records.images.iter().any(|r| r.manifest == manifest) {
            return Err(Error::NotFound(manifest));
        }
        for record in &mut records.images {
            record.names.retain(|n| *n != name);
            if record.manifest == manifest {
                record.names.push(name.clone());
            }
        }
        self.write_records(&locked, &records)
    }

    /// Unpacks the layer blob `blob` (whose uncompressed digest must be `diff_id`) unless it
    /// is unpacked already. Returns its directory (`.../diff`).
    pub fn unpack_layer(&self, blob: &Digest, diff_id: &str) -> Result<PathBuf> {
        let final_dir = self.layer_dir(diff_id)?;
        if final_dir.is_dir() {
            return Ok(final_dir.join("diff"));
        }
        let file = self.open_blob(blob)?;
        let temp = TempDir::new(self.temp_path("layer"))?;
        let diff = temp.path.join("diff");
        std::fs::create_dir(&diff).map_err(Error::io(&diff))?;
        // The root of a layer is a container's `/`: 0755 unless the layer says otherwise
        // (its `./` entry), whatever this process's umask.
        std::fs::set_permissions(&diff, std::fs::Permissions::from_mode(0o755))
            .map_err(Error::io(&diff))?;
        let layer_name = blob.to_string();
        let reader = unpack::decompress(file).map_err(|e| Error::BadLayer {
            layer: layer_name.clone(),
            problem: e.to_string(),
        })?;
        let mut hashing = HashingReader::new(reader);
        unpack::unpack(&mut hashing, &diff, &layer_name, &self.options)?;
        let actual = blob::digest_from_hasher(hashing.hasher);
        if actual.as_ref() != diff_id {
            return Err(Error::BadLayer {
                layer: layer_name,
                problem: format!(
                    "its content is {actual}, not the diff_id {diff_id} of the config"
                ),
            });
        }
        let size_path = temp.path.join("size");
        std::fs::write(&size_path, hashing.count.to_string()).map_err(Error::io(&size_path))?;
        match std::fs::rename(&temp.path, &final_dir) {
            Ok(()) => {
                temp.keep();
            }
            // Another process unpacked it meanwhile; ours goes with `temp`.
            Err(_) if final_dir.is_dir() => {}
            Err(e) => return Err(Error::io(&final_dir)(e)),
        }
        Ok(final_dir.join("diff"))
    }

    /// Removes the image `reference` names. A name of an image that has other names is only
    /// taken off; otherwise the image's record goes, unless containers use it and `force` is
    /// not given. Its blobs and layers are freed by [`Store::prune`].
    pub fn remove(&self, reference: &str, force: bool) -> Result<Removed> {
        let locked = self.lock()?;
        let mut records = self.read_records_locked(&locked)?;
        let record = find(&self.root, &records.images, reference)?
            .cloned()
            .ok_or_else(|| Error::NotFound(reference.to_owned()))?;
        let image = self.image_of(&record)?;
        let by_name = normalized_name(reference)
            .filter(|n| record.names.contains(n) && record.names.len() > 1);
        let mut removed = Removed::default();
        if let Some(name) = by_name {
            for r in &mut records.images {
                if r.manifest == record.manifest {
                    r.names.retain(|n| *n != name);
                }
            }
            removed.untagged.push(name);
        } else {
            let users = self.containers_using(&image)?;
            if !users.is_empty() && !force {
                return Err(Error::InUse {
                    image: reference.to_owned(),
                    containers: users,
                });
            }
            records.images.retain(|r| r.manifest != record.manifest);
            removed.untagged = record.names.clone();
            removed.deleted = Some(image.id.clone());
        }
        self.write_records(&locked, &records)?;
        Ok(removed)
    }

    /// Removes every blob and unpacked layer that no image and no container uses, and what
    /// killed processes left in `tmp/`.
    pub fn prune(&self) -> Result<Pruned> {
        let _gc = self.flock("gc.lock", FlockOperation::LockExclusive)?;
        let locked = self.lock()?;
        let mut pruned = Pruned::default();
        pruned.bytes += self.sweep_temp(&locked);
        let mut blobs: HashSet<String> = HashSet::new();
        let mut layers: HashSet<String> = HashSet::new();
        for record in self.read_records_locked(&locked)?.images {
            blobs.insert(hex_text(&record.manifest));
            let manifest_digest = blob::parse_digest(&record.manifest)?;
            let manifest = parse_manifest(&manifest_digest, &self.read_blob(&manifest_digest)?)?;
            blobs.insert(hex_text(manifest.config().digest().as_ref()));
            for layer in manifest.layers() {
                blobs.insert(hex_text(layer.digest().as_ref()));
            }
            let config = parse_config(
                manifest.config().digest(),
                &self.read_blob(manifest.config().digest())?,
            )?;
            for diff_id in config.rootfs().diff_ids() {
                layers.insert(hex_text(diff_id));
            }
        }
        for record in self.container_records()? {
            layers.extend(record.1.layers.iter().map(|l| hex_text(l)));
        }
        for (dir, keep, is_layer) in [
            (self.blob_dir(), &blobs, false),
            (self.root.join("layers/sha256"), &layers, true),
        ] {
            for entry in read_dir(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let path = entry.path();
                pruned.bytes += remove_counting(&path);
                if is_layer {
                    pruned.layers += 1;
                } else {
                    pruned.blobs += 1;
                }
            }
        }
        Ok(pruned)
    }

    /// Removes the entries of `tmp/` whose process is gone; returns the bytes freed.
    fn sweep_temp(&self, _locked: &Locked) -> u64 {
        let mut bytes = 0;
        let Ok(entries) = read_dir(&self.root.join("tmp")) else {
            return 0;
        };
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.splitn(3, '-');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            let start = parts.next().and_then(|s| s.parse::<u64>().ok());
            let alive = match (pid, start) {
                (Some(pid), Some(start)) => process_start(pid) == Some(start),
                _ => false,
            };
            if !alive {
                tracing::debug!(entry = %name, "removing what a killed process left");
                bytes += remove_counting(&entry.path());
            }
        }
        bytes
    }

    fn container_dir(&self, container_id: &str) -> Result<PathBuf> {
        let valid = !container_id.is_empty()
            && container_id.len() <= 1024
            && !container_id.starts_with('.')
            && container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(Error::BadContainerId(container_id.to_owned()));
        }
        Ok(self.root.join("containers").join(container_id))
    }

    /// The directory holding the anonymous volumes of `container_id` (`containers/ID/volumes`),
    /// which [`Store::release_container`] removes with the rest of its directory.
    pub fn container_volumes_dir(&self, container_id: &str) -> Result<PathBuf> {
        Ok(self.container_dir(container_id)?.join("volumes"))
    }

    /// Records that `container_id` uses `image` (so `remove` refuses it) and makes its upper
    /// and work directories unless `read_only`.
    pub fn prepare_container(
        &self,
        image: &Image,
        container_id: &str,
        read_only: bool,
    ) -> Result<ContainerLayers> {
        let dir = self.container_dir(container_id)?;
        let locked = self.lock()?;
        let records = self.read_records_locked(&locked)?;
        if !records
            .images
            .iter()
            .any(|r| r.manifest == image.manifest_digest.as_ref())
        {
            return Err(Error::NotFound(image.manifest_digest.to_string()));
        }
        let record = ContainerRecord {
            image: image.id.to_string(),
            manifest: image.manifest_digest.to_string(),
            layers: image
                .config
                .rootfs()
                .diff_ids()
                .iter()
                .map(|d| d.to_string())
                .collect(),
        };
        let temp = TempDir::new(self.temp_path("container"))?;
        let (mut upper, mut work) = (None, None);
        if !read_only {
            for sub in ["upper", "work"] {
                let path = temp.path.join(sub);
                std::fs::create_dir(&path).map_err(Error::io(&path))?;
            }
            // The upper directory is the container's `/`: as an image root, 0755.
            let path = temp.path.join("upper");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(Error::io(&path))?;
            upper = Some(dir.join("upper"));
            work = Some(dir.join("work"));
        }
        let json = serde_json::to_vec(&record).map_err(|e| Error::bad_image("container", e))?;
        let record_path = temp.path.join("image.json");
        std::fs::write(&record_path, json).map_err(Error::io(&record_path))?;
        std::fs::rename(&temp.path, &dir).map_err(|e| {
            Error::io(&dir)(std::io::Error::new(
                e.kind(),
                format!("container {container_id} already has layers in the store ({e})"),
            ))
        })?;
        temp.keep();
        drop(locked);
        Ok(ContainerLayers {
            lower: image.layers.clone(),
            upper,
            work,
        })
    }

    /// The layers [`Store::prepare_container`] gave `container_id` before, its writable
    /// layer as it left it: for a container started again (`peapod start`, a restart
    /// policy). An error when it has none in the store.
    pub fn container_layers(&self, image: &Image, container_id: &str) -> Result<ContainerLayers> {
        let dir = self.container_dir(container_id)?;
        if !dir.join("image.json").exists() {
            return Err(Error::NotFound(format!(
                "the layers of container {container_id}"
            )));
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let writable = upper.is_dir() && work.is_dir();
        Ok(ContainerLayers {
            lower: image.layers.clone(),
            upper: writable.then_some(upper),
            work: writable.then_some(work),
        })
    }

    /// Removes a container's upper and work directories and its use record; a container
    /// without them is fine.
    pub fn release_container(&self, container_id: &str) -> Result<()> {
        let dir = self.container_dir(container_id)?;
        let _locked = self.lock()?;
        if !dir.exists() {
            return Ok(());
        }
        // Renamed first so that the record is gone at once even if removing the files fails.
        let temp = self.temp_path("released");
        std::fs::rename(&dir, &temp).map_err(Error::io(&dir))?;
        remove_tree(&temp).map_err(Error::io(&temp))
    }

    /// The containers recorded as using `image`.
    pub fn containers_using(&self, image: &Image) -> Result<Vec<String>> {
        Ok(self
            .container_records()?
            .into_iter()
            .filter(|(_, r)| r.image == image.id.as_ref())
            .map(|(id, _)| id)
            .collect())
    }

    fn container_records(&self) -> Result<Vec<(String, ContainerRecord)>> {
        let mut out = Vec::new();
        for entry in read_dir(&self.root.join("containers"))? {
            let path = entry.path().join("image.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice(&bytes) {
                Ok(record) => out.push((entry.file_name().to_string_lossy().into_owned(), record)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable container record")
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A directory under `tmp/` removed on drop unless kept.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub(crate) fn new(path: PathBuf) -> Result<TempDir> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(Error::io(&path))?;
        Ok(TempDir { path, keep: false })
    }

    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_tree(&self.path);
        }
    }
}

fn hex_text(digest: &str) -> String {
    digest.strip_prefix("sha256:").unwrap_or(digest).to_owned()
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(Error::io(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir)(e)),
    }
}

/// Removes a directory tree. A directory its owner may not write (a layer's read-only
/// directory, the `work/work` overlayfs leaves with mode 0) stops an ordinary user's removal,
/// so on failure every directory is made writable and the removal tried once more; what
/// still resists (a rootless layer's files given to subordinate ids) goes in a user namespace
/// that maps those ids ([`crate::owners`]).
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            make_writable(path);
            match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    remove_as_subordinate(path).map_or(Err(e), |()| Ok(()))
                }
                other => other,
            }
        }
        other => other,
    }
}

/// Rootless with subordinate ranges, removes `path` in a user namespace mapping them.
fn remove_as_subordinate(path: &Path) -> Option<()> {
    if rustix::process::geteuid().is_root() {
        return None;
    }
    let maps = peapod_ns::RootlessMaps::for_this_process();
    if !maps.has_ranges() {
        return None;
    }
    // SAFETY: the child only removes files (system calls, and allocation, which glibc keeps
    // usable in a fork child) and leaves through _exit.
    let removed =
        unsafe { peapod_ns::in_user_namespace(&maps, || std::fs::remove_dir_all(path).is_ok()) };
    removed.ok().filter(|done| *done).map(|_| ())
}

fn make_writable(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o700),
    );
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Removes a file or tree; returns the bytes of the regular files it held (each inode once).
fn remove_counting(path: &Path) -> u64 {
    let bytes = tree_bytes(path, &mut BTreeSet::new());
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not remove");
        return 0;
    }
    bytes
}

/// The bytes of the regular files of a tree, hard links counted once.
pub(crate) fn tree_bytes(path: &Path, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return if seen.insert((meta.dev(), meta.ino())) {
            meta.len()
        } else {
            0
        };
    }
    if !meta.is_dir() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| tree_bytes(&e.path(), seen))
        .sum()
}

/// Writes `bytes` to `temp`, syncs it, and renames it to `target`.
pub(crate) fn write_atomic(temp: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(Error::io(temp))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(temp);
        return Err(Error::io(temp)(e));
    }
    std::fs::rename(temp, target).map_err(|e| {
        let _ = std::fs::remove_file(temp);
        Error::io(target)(e)
    })
}

/// A process's start time (field 22 of `/proc/PID/stat`), which tells it from a later
/// process with the same pid.
fn process_start(pid: u32) -> Option<u64> {
    let mut text = String::new();
    File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The media type of a manifest, given or read from it; schema 1 and indexes refused.
fn manifest_type(given: &str, manifest: &[u8]) -> Result<String> {
    let inner = serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    let media_type = if given.is_empty() {
        inner.unwrap_or_else(|| OCI_MANIFEST.to_owned())
    } else {
        given.to_owned()
    };
    let what = format!("manifest {}", blob::digest_of(manifest));
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(media_type),
        "application/vnd.docker.distribution.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v1+prettyjws" => Err(Error::bad_image(
            what,
            "Docker schema 1 manifests are not supported (deprecated since 2017); rebuild or re-push the image",
        )),
        OCI_INDEX | DOCKER_LIST => Err(Error::bad_image(
            what,
            "is an index of manifests: pick one platform's manifest first",
        )),
        other => Err(Error::bad_image(what, format!("unknown media type {other}"))),
    }
}

fn parse_manifest(digest: &Digest, bytes: &[u8]) -> Result<ImageManifest> {
    ImageManifest::from_reader(bytes).map_err(|e| Error::bad_image(format!("manifest {digest}"), e))
}

fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<ImageConfiguration> {
    ImageConfiguration::from_reader(bytes)
        .map_err(|e| Error::bad_image(format!("config {digest}"), e))
}

/// `reference` as a normalized name (`docker.io/library/busybox:latest`), when it is one.
pub fn normalized_name(reference: &str) -> Option<String> {
    reference.parse::<Reference>().ok().map(|r| r.whole())
}

/// The record a reference names: by name first, then by manifest digest, then by image id
/// (full, or a prefix of at least 4 hex digits).
/// `reference` as Docker normalizes a name with a tag or none (`busybox` is
/// `docker.io/library/busybox:latest`), without checking its grammar; `None` for a digest.
/// Only ever compared with names the store holds, which were checked when stored.
fn fast_name(reference: &str) -> Option<String> {
    if reference.contains('@') || reference.is_empty() {
        return None;
    }
    let (first, _) = reference.split_once('/').unwrap_or(("", reference));
    let has_registry = first.contains(['.', ':']) || first == "localhost";
    let mut name = match (reference.contains('/'), has_registry) {
        (false, _) => format!("docker.io/library/{reference}"),
        (true, false) => format!("docker.io/{reference}"),
        (true, true) => reference.to_owned(),
    };
    let last = name.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') {
        name.push_str(":latest");
    }
    Some(name)
}

fn find<'a>(
    root: &Path,
    records: &'a [ImageRecord],
    reference: &str,
) -> Result<Option<&'a ImageRecord>> {
    if reference.is_empty() {
        return Err(Error::BadReference {
            reference: reference.to_owned(),
            problem: "empty".into(),
        });
    }
    // A name as the store keeps it is found without the full parse: oci-spec's reference
    // grammar is a large regex that takes ~80 ms and ~17 MB to compile, which every
    // `peapod run IMAGE` would otherwise pay.
    if let Some(name) = fast_name(reference) {
        if let Some(r) = records.iter().find(|r| r.names.contains(&name)) {
            return Ok(Some(r));
        }
    }
    if let Ok(parsed) = reference.parse::<Reference>() {
        let whole = parsed.whole();
        if let Some(r) = records.iter().find(|r| r.names.contains(&whole)) {
            return Ok(Some(r));
        }
        if let Some(digest) = parsed.digest() {
            let repository = format!("{}/{}", parsed.registry(), parsed.repository());
            if let Some(r) = records.iter().find(|r| {
                r.manifest == digest
                    && (r.names.is_empty() || r.names.iter().any(|n| n.starts_with(&repository)))
            }) {
                return Ok(Some(r));
            }
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hex = hex.to_ascii_lowercase();
    // The image id is the config digest; it is in the manifest, read lazily.
    let mut found: Option<&ImageRecord> = None;
    for record in records {
        let matches = hex_text(&record.manifest).starts_with(&hex)
            || config_hex(root, record).is_some_and(|c| c.starts_with(&hex));
        if matches {
            if found.is_some_and(|f| config_hex(root, f) != config_hex(root, record)) {
                return Err(Error::Ambiguous(reference.to_owned()));
            }
            found = found.or(Some(record));
        }
    }
    Ok(found)
}

fn config_hex(root: &Path, record: &ImageRecord) -> Option<String> {
    let manifest =
        std::fs::read(root.join("blobs/sha256").join(hex_text(&record.manifest))).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&manifest).ok()?;
    Some(hex_text(value.get("config")?.get("digest")?.as_str()?))
}

#[cfg(test)]
mod fast_name_tests {
    use super::*;

    #[test]
    fn names_normalize_as_the_reference_parser_does() {
        for reference in [
            "busybox",
            "busybox:1",
            "library/busybox",
            "team/app:2",
            "localhost/peapod/busybox",
            "localhost:5000/app",
            "registry.example/a/b:c",
            "127.0.0.1:5000/test/run:1",
        ] {
            let parsed: Reference = reference.parse().expect("a reference");
            assert_eq!(fast_name(reference), Some(parsed.whole()), "{reference}");
        }
        assert_eq!(fast_name("busybox@sha256:abcd"), None);
    }
}
