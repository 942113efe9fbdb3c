//! load, save and import on real archives: the xtask OCI archive, the docker-archive and
//! OCI layout skopeo makes of it, and `podman load` of what `save` writes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use peapod_image::Store;

/// The busybox OCI archive `cargo xtask test` writes, or `None` (with a skip message).
fn busybox_archive() -> Option<PathBuf> {
    match std::env::var_os("PEAPOD_BUSYBOX_IMAGE") {
        Some(path) if Path::new(&path).is_file() => Some(PathBuf::from(path)),
        _ => {
            eprintln!("skipped: PEAPOD_BUSYBOX_IMAGE is not set (cargo xtask test sets it)");
            None
        }
    }
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn run(command: &mut Command) {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn assert_is_busybox(store: &Store, reference: &str) {
    let image = store
        .resolve(reference)
        .expect("resolve")
        .unwrap_or_else(|| panic!("{reference} not found"));
    assert_eq!(image.layers.len(), 1);
    assert!(
        image.layers[0].join("bin/busybox").is_file(),
        "{:?}",
        image.layers
    );
    assert!(image.config.config().is_some());
}

#[test]
fn load_of_the_busybox_oci_archive_names_it_and_unpacks_its_layer() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let images = store.load(&archive).expect("load");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].names, ["localhost/peapod/busybox:latest"]);
    assert_is_busybox(&store, "localhost/peapod/busybox");
    // Loading again changes nothing.
    store.load(&archive).expect("load again");
    assert_eq!(store.list().expect("list").len(), 1);
}

#[test]
fn load_of_a_docker_archive_and_of_an_oci_layout_directory() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let docker = dir.path().join("docker.tar");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci-archive:{}", archive.display()),
        &format!(
            "docker-archive:{}:example.com/team/box:v1",
            docker.display()
        ),
    ]));
    let layout = dir.path().join("layout");
    run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-compress-format",
        "zstd",
        "--dest-compress",
        &format!("oci-archive:{}", archive.display()),
        &format!("oci:{}:quay.io/other/box:v2", layout.display()),
    ]));
    let store = Store::open(&dir.path().join("store")).expect("open");
    let loaded = store.load(&docker).expect("load docker-archive");
    assert_eq!(loaded[0].names, ["example.com/team/box:v1"]);
    assert_is_busybox(&store, "example.com/team/box:v1");
    let loaded = store.load(&layout).expect("load layout");
    assert_eq!(loaded[0].names, ["quay.io/other/box:v2"]);
    assert_is_busybox(&store, "quay.io/other/box:v2");
    // Same diff_id (zstd or plain): one unpacked layer for both images.
    let images = store.list().expect("list");
    assert_eq!(images[0].layers, images[1].layers);
}

#[test]
fn a_blob_whose_content_does_not_match_its_digest_is_never_stored() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    run(Command::new("tar")
        .arg("xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));
    // The biggest blob is the layer: one byte of it changed.
    let mut blobs: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect();
    blobs.sort_by_key(|p| std::fs::metadata(p).expect("meta").len());
    let layer = blobs.last().expect("layer").clone();
    let mut bytes = std::fs::read(&layer).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, bytes).expect("write");
    let hex = layer
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();

    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).expect("open");
    let err = store.load(&layout).unwrap_err().to_string();
    assert!(err.contains(&hex), "{err}");
    assert!(!store_dir.join("blobs/sha256").join(&hex).exists());
    assert!(store.list().expect("list").is_empty());
    assert_eq!(
        std::fs::read_dir(store_dir.join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(store_dir.join("layers/sha256"))
            .expect("layers")
            .count(),
        0
    );
}

#[test]
fn save_writes_an_oci_archive_podman_loads_and_runs_and_podman_save_loads_back() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    if !have("podman") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open");
    store.load(&archive).expect("load");
    let image = store
        .resolve("localhost/peapod/busybox")
        .expect("resolve")
        .expect("found");
    let out = dir.path().join("saved.tar");
    store
        .save(&image, Some("localhost/peapod/saved:1"), &out)
        .expect("save");
    // A podman of its own: nothing of the host's podman store is touched. Root here lacks
    // CAP_SYS_RESOURCE, so podman's default RLIMIT_NOFILE is turned off; runc, as crun refuses
    // this host's hybrid cgroups.
    let conf = dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .expect("containers.conf");
    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(dir.path().join("podman-root"))
            .arg("--runroot")
            .arg(dir.path().join("podman-run"))
            .arg("--tmpdir")
            .arg(dir.path().join("podman-tmp"))
            .arg("--storage-driver=vfs")
            .args(["--runtime", "runc"])
            .args(args);
        command
    };
    run(podman(&["load", "-q", "-i", &out.display().to_string()]).env("TMPDIR", dir.path()));
    let output = podman(&[
        "run",
        "--rm",
        "--net=none",
        "--entrypoint",
        "/bin/echo",
        "localhost/peapod/saved:1",
        "round trip",
    ])
    .env("TMPDIR", dir.path())
    .output()
    .expect("podman run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "round trip\n");

    // And back: podman's docker-archive loads into a fresh store.
    let docker = dir.path().join("podman-saved.tar");
    run(podman(&[
        "save",
        "-q",
        "-o",
        &docker.display().to_string(),
        "localhost/peapod/saved:1",
    ])
    .env("TMPDIR", dir.path()));
    let store2 = Store::open(&dir.path().join("store2")).expect("open");
    let loaded = store2.load(&docker).expect("load podman save");
    assert_eq!(loaded[0].names, ["localhost/peapod/saved:1"]);
    assert_is_busybox(&store2, "localhost/peapod/saved:1");
}

#[test]
fn import_of_a_directory_and_of_a_tar_makes_one_layer_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::write(rootfs.join("etc/hostname"), "imported\n").expect("write");
    std::os::unix::fs::symlink("hostname", rootfs.join("etc/link")).expect("symlink");
    let store = Store::open(&dir.path().join("store")).expect("open");
    let image = store
        .import(&rootfs, &"imported:1".parse().expect("ref"))
        .expect("import dir");
    assert_eq!(image.names, ["docker.io/library/imported:1"]);
    let layer = &image.layers[0];
    assert_eq!(
        std::fs::read(layer.join("etc/hostname")).expect("read"),
        b"imported\n"
    );
    assert_eq!(
        std::fs::read_link(layer.join("etc/link")).expect("link"),
        Path::new("hostname")
    );
    assert!(image.created.is_some());

    let tar = dir.path().join("rootfs.tar.gz");
    std::fs::write(
        &tar,
        support::gzip(&support::layer(&[support::Entry::File(
            "hello", b"hi", 0o644,
        )])),
    )
    .expect("write tar");
    let image = store
        .import(&tar, &"localhost/from-tar".parse().expect("ref"))
        .expect("import tar");
    assert_eq!(
        std::fs::read(image.layers[0].join("hello")).expect("read"),
        b"hi"
    );
}

#[test]
fn a_docker_v2s2_image_is_saved_as_its_oci_equivalent_and_loads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open");
    let layer = support::layer(&[support::Entry::File("etc/os", b"docker", 0o644)]);
    let manifest = support::image(&store, &[(layer.clone(), support::gzip(&layer))]);
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    manifest["mediaType"] = peapod_image::DOCKER_MANIFEST.into();
    manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    manifest["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    let manifest = serde_json::to_vec(&manifest).expect("bytes");
    let image = store
        .add_image(
            Some(&"registry.example/docker:v2".parse().expect("ref")),
            peapod_image::DOCKER_MANIFEST,
            &manifest,
        )
        .expect("add v2s2");
    assert_eq!(image.manifest_media_type, peapod_image::DOCKER_MANIFEST);
    let out = dir.path().join("out.tar");
    store.save(&image, None, &out).expect("save");

    let store2 = Store::open(&dir.path().join("store2")).expect("open");
    let loaded = store2.load(&out).expect("load");
    assert_eq!(loaded[0].names, ["registry.example/docker:v2"]);
    assert_eq!(loaded[0].manifest_media_type, peapod_image::OCI_MANIFEST);
    assert_eq!(loaded[0].id, image.id, "the same config");
    assert_ne!(loaded[0].manifest_digest, image.manifest_digest);
    let saved = store2
        .read_blob(&loaded[0].manifest_digest)
        .expect("manifest");
    let saved: serde_json::Value = serde_json::from_slice(&saved).expect("json");
    assert_eq!(
        saved["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        std::fs::read(loaded[0].layers[0].join("etc/os")).expect("read"),
        b"docker"
    );
}
