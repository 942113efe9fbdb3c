//! Containers from images: what an image's configuration gives a container (as `docker run`
//! and Kubernetes merge it with what the user asked for), and a root made of the image's
//! layers in the image store, prepared with the container and released with it.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use oci_spec::image::Config;
use oci_spec::runtime::{Mount, MountBuilder, Spec};

use crate::flags::RunFlags;
use crate::security::parse_user;
use crate::{Error, Result};

/// The annotation that carries an image's `StopSignal` to its container, as the OCI image
/// spec's conversion to a runtime bundle names it.
pub const STOP_SIGNAL_ANNOTATION: &str = "org.opencontainers.image.stopSignal";

/// A container's command from its image's `Entrypoint` and `Cmd` and what the user gave, as
/// Docker and Kubernetes both define it: `entrypoint` (`--entrypoint`, a Pod's `command`)
/// replaces the image's Entrypoint and drops its Cmd; `cmd` (the CMD after the image, a Pod's
/// `args`) replaces the image's Cmd. The result is Entrypoint followed by Cmd.
pub fn command(
    config: Option<&Config>,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Vec<String> {
    let image_entrypoint = config.and_then(|c| c.entrypoint().as_deref());
    let image_cmd = config.and_then(|c| c.cmd().as_deref());
    let (entry, default_cmd) = match entrypoint {
        Some(entry) => (entry, None),
        None => (image_entrypoint.unwrap_or_default(), image_cmd),
    };
    let cmd = cmd.or(default_cmd).unwrap_or_default();
    entry.iter().chain(cmd).cloned().collect()
}

/// `flags` for a container of an image configured by `config`: its command from
/// [`command`] (`flags.entrypoint` and `flags.command`), its environment the image's `Env`
/// with `--env` over it, its working directory and user the image's `WorkingDir` and
/// `User` unless `--workdir` or `--user` say otherwise. `image` names it in errors.
pub fn run_flags(image: &str, config: Option<&Config>, mut flags: RunFlags) -> Result<RunFlags> {
    let entrypoint = flags.entrypoint.take().map(|e| match e.is_empty() {
        // `--entrypoint ""` clears the image's Entrypoint, as Docker's does.
        true => Vec::new(),
        false => vec![e],
    });
    let cmd = (!flags.command.is_empty()).then_some(flags.command.as_slice());
    let args = command(config, entrypoint.as_deref(), cmd);
    if args.is_empty() {
        return Err(Error::usage(anyhow!(
            "image {image} has no Entrypoint or Cmd: give a command after the image, or --entrypoint"
        )));
    }
    flags.command = args;
    // An image's entry without `=` has no value to give, and is not the caller's to fill in
    // from its own environment (as `-e KEY` is): left out.
    let image_env = config.and_then(|c| c.env().as_deref()).unwrap_or_default();
    let image_env = image_env.iter().filter(|kv| kv.contains('='));
    flags.env = image_env.chain(&flags.env).cloned().collect();
    if flags.workdir.is_none() {
        flags.workdir = config
            .and_then(|c| c.working_dir().as_deref())
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
    }
    if flags.user.is_none() {
        let user = config
            .and_then(|c| c.user().as_deref())
            .filter(|u| !u.is_empty());
        flags.user = user
            .map(|u| {
                parse_user(u).map_err(|e| {
                    Error::runtime(anyhow!("image {image}: its User {u:?} is not valid: {e}"))
                })
            })
            .transpose()?;
    }
    Ok(flags)
}

/// The annotation naming the image a container was made from, as `run` was given it.
pub const IMAGE_ANNOTATION: &str = "io.peapod.image";

/// The annotation holding that image's id (its config digest, `sha256:...`).
pub const IMAGE_ID_ANNOTATION: &str = "io.peapod.image.id";

/// The stop signal an image's config names, for [`STOP_SIGNAL_ANNOTATION`].
pub fn stop_signal(config: Option<&Config>) -> Option<String> {
    config
        .and_then(|c| c.stop_signal().clone())
        .filter(|s| !s.is_empty())
}

/// Writes `paths`, one a line, to `file`.
fn write_lines(file: &Path, paths: &[&Path]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut bytes = Vec::new();
    for path in paths {
        bytes.extend_from_slice(path.as_os_str().as_bytes());
        bytes.push(b'\n');
    }
    std::fs::write(file, bytes).with_context(|| format!("cannot write {}", file.display()))
}

/// Makes the directories the kernel made in an overlay's work directory removable by their
/// owner: overlayfs leaves `work/work` with mode 0, which only root can remove, and a
/// rootless container's writable layer would otherwise never go.
fn open_up_work_dir(work: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// The signal that stops the container of `record`: its image's StopSignal, else SIGTERM.
pub fn stop_signal_of(record: &peapod_state::Record) -> Result<nix::sys::signal::Signal> {
    match record.annotations.get(STOP_SIGNAL_ANNOTATION) {
        Some(signal) => crate::kill::parse_signal(signal),
        None => Ok(nix::sys::signal::Signal::SIGTERM),
    }
}

/// The layer directory whose `/etc/passwd` the image's container sees: the highest that has
/// one (user names are looked up there before the container's overlay exists). `None` when
/// no layer has one.
pub fn accounts_layer(layers: &[PathBuf]) -> Option<&Path> {
    layers
        .iter()
        .rev()
        .find(|layer| {
            std::fs::symlink_metadata(layer.join("etc/passwd")).is_ok()
                || std::fs::symlink_metadata(layer.join("etc/group")).is_ok()
        })
        .map(PathBuf::as_path)
}

/// The spec and root of a container of `image` (from `store`, named `name` in errors), with
/// `flags` merged over the image's configuration as [`run_flags`] does; its stop signal in
/// the [`STOP_SIGNAL_ANNOTATION`]. Give the root to [`crate::CreateOptions::image`].
pub fn spec_from_image(
    store: &Path,
    image: peapod_image::Image,
    name: &str,
    flags: RunFlags,
    rootless: bool,
) -> Result<(oci_spec::runtime::Spec, ImageRoot)> {
    let config = image.config.config().as_ref();
    let flags = run_flags(name, config, flags)?;
    let volumes = anonymous_volumes(name, config, &flags)?;
    let top = image.layers.last().ok_or_else(|| {
        Error::runtime(anyhow!(
            "image {name} has no layers: there is no root to run"
        ))
    })?;
    // The root path is a placeholder until the container's mount point exists; user names
    // are looked up in the layers meanwhile.
    let accounts = accounts_layer(&image.layers).unwrap_or(top);
    let mut spec = crate::flags::spec_with_accounts(&flags, top, accounts, rootless)?;
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    if let Some(signal) = stop_signal(config) {
        annotations.insert(STOP_SIGNAL_ANNOTATION.to_owned(), signal);
    }
    // For `ps` and `inspect`: the record keeps annotations, and nothing else of the image.
    annotations.insert(IMAGE_ANNOTATION.to_owned(), name.to_owned());
    annotations.insert(IMAGE_ID_ANNOTATION.to_owned(), image.id.to_string());
    spec.set_annotations(Some(annotations));
    let root = ImageRoot {
        store: store.to_owned(),
        image,
        volumes,
    };
    Ok((spec, root))
}

/// The anonymous volumes of a container of the image `name` (configured by `config`), as
/// Docker makes them: one for each of the image's `Volumes` that no mount of `flags` (`-v`,
/// `--mount`, `--tmpfs`) is at, and one for each `-v CTR`. Each path is checked as
/// [`crate::flags::volume_path`] checks a `-v CTR`.
fn anonymous_volumes(
    name: &str,
    config: Option<&Config>,
    flags: &RunFlags,
) -> Result<Vec<PathBuf>> {
    let declared = config.and_then(|c| c.volumes().as_ref());
    let mounted = |path: &Path| {
        let at = |m: &PathBuf| m.components().eq(path.components());
        flags.volumes.iter().map(|v| &v.container).any(at)
            || flags.tmpfs.iter().map(|t| &t.target).any(at)
    };
    let mut paths = Vec::new();
    for declared in declared.into_iter().flatten() {
        let path = crate::flags::volume_path(declared)
            .map_err(|e| Error::runtime(anyhow!("image {name}: its VOLUME {e}")))?;
        if !mounted(&path) {
            paths.push(path);
        }
    }
    // The config's Volumes are a JSON object, whose order the parser does not keep: in the
    // order of their paths, so that a volume's directory is the same from run to run.
    paths.sort();
    for path in &flags.anonymous_volumes {
        // Docker's "duplicate mount point": one of the two would hide the other.
        if mounted(path) {
            return Err(Error::usage(anyhow!(
                "-v {}: another -v, --mount or --tmpfs is at that path",
                path.display()
            )));
        }
        if !paths.contains(path) {
            paths.push(path.clone());
        }
    }
    Ok(paths)
}

/// The file in a container's state directory naming the image store its layers are in,
/// written before the store is asked for them, so that a `peapod` killed at any point
/// leaves a container whose layers the next command can release.
const STORE_FILE: &str = "image-store";

/// The image store at `path`, for a container's layers. Without the cargo feature
/// `image-store` (the build of `peapod-oci`, which makes no container of an image) always an
/// error, inlined so that the store's code is left out of such a binary; see
/// [`crate::Runtime::IMAGE_STORE`].
#[inline(always)]
fn open_store(path: &Path) -> anyhow::Result<peapod_image::Store> {
    #[cfg(feature = "image-store")]
    return Ok(peapod_image::Store::open(path)?);
    #[cfg(not(feature = "image-store"))]
    Err(anyhow::anyhow!(
        "the container's layers are in the image store {}, and this build has none (cargo \
         feature `image-store`): use peapod",
        path.display()
    ))
}

/// Whether the container whose state directory is `dir` has layers in an image store (to
/// release at its deletion).
pub(crate) fn has_layers(dir: &Path) -> bool {
    dir.join(STORE_FILE).exists()
}

/// The directory in a container's state directory that its overlay is mounted on (in the
/// container's mount namespace only).
const MOUNT_POINT: &str = "rootfs";

/// A container's root made of an image's layers: an overlay of them under a writable layer of
/// the container's own in the image store. A read-only root (the spec's `root.readonly`)
/// has one too, as podman's: the mount points are made in it, and the root is then
/// remounted read-only, so the container cannot write to it at all.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    /// The image store's root directory.
    pub store: PathBuf,
    /// The image, as the store resolved it.
    pub image: peapod_image::Image,
    /// Where the container's anonymous volumes are mounted (absolute, checked): a directory
    /// of each, in the store beside its writable layer, filled with what the image has
    /// there when the container is set up, and removed with the container.
    pub volumes: Vec<PathBuf>,
}

/// The options of an anonymous volume's bind mount: `nosuid` and `nodev` as podman mounts
/// one, and `copyup`, which fills an empty volume with the image's content at its path
/// (see `peapod_rootfs::MountOptions::copyup`).
const VOLUME_OPTIONS: [&str; 4] = ["rbind", "nosuid", "nodev", "copyup"];

impl ImageRoot {
    /// `spec` with a bind mount of each anonymous volume of container `id` (its directory
    /// `STORE/containers/ID/volumes/N`, made by [`prepare`]); then the mounts after the
    /// runtime's defaults in order of depth, as Docker orders them, so a volume at `/a` never
    /// hides a mount at `/a/b`.
    pub(crate) fn with_volumes(&self, spec: &Spec, id: &str) -> anyhow::Result<Spec> {
        let mut spec = spec.clone();
        if self.volumes.is_empty() {
            return Ok(spec);
        }
        let dir = open_store(&self.store)?.container_volumes_dir(id)?;
        let defaults = peapod_container::default_spec(None)
            .mounts()
            .clone()
            .unwrap_or_default();
        let (mut mounts, mut others): (Vec<Mount>, Vec<Mount>) = spec
            .mounts()
            .iter()
            .flatten()
            .cloned()
            .partition(|m| defaults.contains(m));
        for (n, path) in self.volumes.iter().enumerate() {
            others.push(
                MountBuilder::default()
                    .destination(path.clone())
                    .typ("bind")
                    .source(dir.join(n.to_string()))
                    .options(VOLUME_OPTIONS.map(str::to_owned).to_vec())
                    .build()?,
            );
        }
        others.sort_by_key(|m| m.destination().components().count());
        mounts.extend(others);
        spec.set_mounts(Some(mounts));
        Ok(spec)
    }
}

/// Makes the directories of `count` anonymous volumes in `dir` (0700, the store's), each
/// 0755 until the image's content at its path gives it its own owner and mode.
fn make_volume_dirs(dir: &Path, count: usize) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::os::unix::fs::DirBuilderExt as _;
    if count == 0 {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot make {}", dir.display()))?;
    for n in 0..count {
        let volume = dir.join(n.to_string());
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&volume)
            .with_context(|| format!("cannot make {}", volume.display()))?;
    }
    Ok(())
}

/// Prepares the layers of container `id` (whose state directory is `dir`): records the
/// store, asks it for the layers, makes the mount point. Returns the mount point and the
/// overlay; on failure [`release`] undoes what was done.
pub(crate) fn prepare(
    root: &ImageRoot,
    id: &str,
    dir: &Path,
    userxattr: bool,
) -> anyhow::Result<(PathBuf, peapod_rootfs::Overlay)> {
    use anyhow::Context as _;
    let store_file = dir.join(STORE_FILE);
    write_lines(&store_file, &[&root.store])?;
    let store = open_store(&root.store)?;
    // A writable layer also for a read-only root: see `ImageRoot`.
    let layers = store.prepare_container(&root.image, id, false)?;
    make_volume_dirs(&store.container_volumes_dir(id)?, root.volumes.len())?;
    if let Some(work) = &layers.work {
        // The work directory is remembered too: see `release`.
        write_lines(&store_file, &[&root.store, work])?;
    }
    let mount_point = dir.join(MOUNT_POINT);
    std::fs::create_dir(&mount_point)
        .with_context(|| format!("cannot make {}", mount_point.display()))?;
    let upper = match (layers.upper, layers.work) {
        (Some(upper), Some(work)) => Some((upper, work)),
        _ => None,
    };
    let overlay = peapod_rootfs::Overlay {
        lower: layers.lower,
        upper,
        userxattr,
    };
    Ok((mount_point, overlay))
}

/// [`prepare`] for a container started again: the layers it was given, its writable layer as
/// it left it, and the mount point it had.
pub(crate) fn prepare_again(
    root: &ImageRoot,
    id: &str,
    dir: &Path,
    userxattr: bool,
) -> anyhow::Result<(PathBuf, peapod_rootfs::Overlay)> {
    let layers = open_store(&root.store)?.container_layers(&root.image, id)?;
    let upper = match (layers.upper, layers.work) {
        (Some(upper), Some(work)) => {
            empty_work_dir(&work)?;
            Some((upper, work))
        }
        _ => None,
    };
    let overlay = peapod_rootfs::Overlay {
        lower: layers.lower,
        upper,
        userxattr,
    };
    Ok((dir.join(MOUNT_POINT), overlay))
}

/// Empties the work directory of an overlay no longer mounted (its container has exited):
/// the kernel refuses to mount a `volatile` overlay again on the `work/incompat/volatile`
/// it left (overlayfs.rst, "Volatile mount"), and makes what it needs anew.
fn empty_work_dir(work: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    open_up_work_dir(work);
    let entries =
        std::fs::read_dir(work).with_context(|| format!("cannot read {}", work.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = match entry.file_type().is_ok_and(|t| t.is_dir()) {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Releases the layers of container `id` (state directory `dir`) if it has any: its writable
/// layer goes, and the image is no longer in use by it. Idempotent.
pub(crate) fn release(id: &str, dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let store_file = dir.join(STORE_FILE);
    let lines = match std::fs::read(&store_file) {
        Ok(bytes) => bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", store_file.display())),
    };
    let Some(store) = lines.first() else {
        return std::fs::remove_file(&store_file)
            .with_context(|| format!("cannot remove {}", store_file.display()));
    };
    if let Some(work) = lines.get(1) {
        open_up_work_dir(work);
    }
    open_store(store)?
        .release_container(id)
        .with_context(|| format!("cannot release the image layers of container {id}"))?;
    std::fs::remove_file(&store_file)
        .with_context(|| format!("cannot remove {}", store_file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn config(entrypoint: &[&str], cmd: &[&str]) -> Config {
        ConfigBuilder::default()
            .entrypoint(strings(entrypoint))
            .cmd(strings(cmd))
            .env(strings(&["PATH=/bin", "A=image", "B=image"]))
            .working_dir("/srv".to_owned())
            .user("1000:1000".to_owned())
            .build()
            .expect("config")
    }

    #[test]
    fn cmd_replaces_cmd_and_entrypoint_replaces_both() {
        let c = config(&["/bin/ep"], &["default"]);
        let c = Some(&c);
        assert_eq!(command(c, None, None), strings(&["/bin/ep", "default"]));
        let mine = strings(&["mine", "too"]);
        assert_eq!(
            command(c, None, Some(&mine)),
            strings(&["/bin/ep", "mine", "too"])
        );
        let entry = strings(&["/bin/other"]);
        assert_eq!(command(c, Some(&entry), None), strings(&["/bin/other"]));
        assert_eq!(
            command(c, Some(&entry), Some(&mine)),
            strings(&["/bin/other", "mine", "too"])
        );
        assert_eq!(command(None, None, Some(&mine)), mine);
    }

    #[test]
    fn flags_take_the_image_defaults_unless_given() {
        let c = config(&[], &["/bin/sh"]);
        let flags = RunFlags {
            env: strings(&["B=mine"]),
            ..RunFlags::default()
        };
        let merged = run_flags("img", Some(&c), flags).expect("merged");
        assert_eq!(merged.command, strings(&["/bin/sh"]));
        assert_eq!(
            merged.env,
            strings(&["PATH=/bin", "A=image", "B=image", "B=mine"])
        );
        assert_eq!(merged.workdir.as_deref(), Some(Path::new("/srv")));
        assert_eq!(merged.user, parse_user("1000:1000").ok());

        let flags = RunFlags {
            workdir: Some("/tmp".into()),
            user: parse_user("0").ok(),
            entrypoint: Some(String::new()),
            command: strings(&["/bin/true"]),
            ..RunFlags::default()
        };
        let merged = run_flags("img", Some(&c), flags).expect("merged");
        assert_eq!(merged.command, strings(&["/bin/true"]));
        assert_eq!(merged.workdir.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(merged.user, parse_user("0").ok());
    }

    #[test]
    fn an_image_env_entry_without_a_value_is_left_out() {
        let mut c = config(&[], &["/bin/sh"]);
        c.set_env(Some(strings(&["A=1", "NOVALUE", "B=2"])));
        let merged = run_flags("img", Some(&c), RunFlags::default()).expect("merged");
        assert_eq!(merged.env, strings(&["A=1", "B=2"]));
    }

    #[test]
    fn anonymous_volumes_are_the_images_unless_mounted_and_the_users() {
        let mut c = config(&[], &["/bin/sh"]);
        c.set_volumes(Some(strings(&["/data", "/cache/", "/logs"])));
        let flags = RunFlags {
            volumes: vec![crate::flags::Volume {
                host: "/srv".into(),
                container: "/data".into(),
                readonly: false,
            }],
            tmpfs: vec![crate::flags::parse_tmpfs("/logs").expect("tmpfs")],
            anonymous_volumes: vec!["/extra".into(), "/cache".into()],
            ..RunFlags::default()
        };
        let paths = anonymous_volumes("img", Some(&c), &flags).expect("volumes");
        assert_eq!(paths, [PathBuf::from("/cache"), PathBuf::from("/extra")]);
        let duplicate = RunFlags {
            anonymous_volumes: vec!["/logs".into()],
            ..flags.clone()
        };
        let e = anonymous_volumes("img", Some(&c), &duplicate).expect_err("duplicate");
        assert_eq!(e.exit_code(), 2, "{}", e.one_line());
        c.set_volumes(Some(strings(&["/proc/sys"])));
        let e = anonymous_volumes("img", Some(&c), &flags).expect_err("/proc");
        assert!(
            e.one_line().contains("image img: its VOLUME"),
            "{}",
            e.one_line()
        );
    }

    #[test]
    fn an_image_without_a_command_needs_one() {
        let e = run_flags("img", None, RunFlags::default()).expect_err("no command");
        assert!(
            e.one_line().contains("image img has no Entrypoint or Cmd"),
            "{}",
            e.one_line()
        );
    }
}
