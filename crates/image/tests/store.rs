//! The store on real files: blobs, names, layers unpacked once, container layers.

mod support;

use std::os::unix::fs::MetadataExt;

use peapod_image::{Reference, Store, OCI_MANIFEST};
use support::Entry;

#[test]
fn an_added_image_resolves_by_name_and_id_and_its_layers_are_unpacked_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let base = support::layer(&[
        Entry::Dir("bin/", 0o755),
        Entry::File("bin/sh", b"#!shell", 0o4755),
    ]);
    let top = support::layer(&[Entry::File("etc/motd", b"hello\n", 0o644)]);
    let manifest = support::image(
        &store,
        &[
            (base.clone(), support::gzip(&base)),
            (top.clone(), top.clone()),
        ],
    );
    let name: Reference = "busybox".parse().expect("reference");
    let image = store
        .add_image(Some(&name), OCI_MANIFEST, &manifest)
        .expect("add");
    assert_eq!(image.names, ["docker.io/library/busybox:latest"]);
    assert_eq!(image.layers.len(), 2);
    let sh = image.layers[0].join("bin/sh");
    let meta = std::fs::metadata(&sh).expect("bin/sh");
    assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(
        std::fs::read(image.layers[1].join("etc/motd")).expect("motd"),
        b"hello\n"
    );
    assert_eq!(image.size, (base.len() + top.len()) as u64);

    for reference in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        image.id.as_ref(),
        &image.id.digest()[..12],
    ] {
        let found = store.resolve(reference).expect("resolve");
        assert_eq!(
            found.map(|i| i.manifest_digest),
            Some(image.manifest_digest.clone()),
            "{reference}"
        );
    }
    assert!(store.resolve("alpine").expect("resolve").is_none());

    // A second image sharing the base layer reuses its directory.
    let other_top = support::layer(&[Entry::File("etc/other", b"x", 0o644)]);
    let manifest2 = support::image(
        &store,
        &[(base.clone(), base.clone()), (other_top.clone(), other_top)],
    );
    let ino = std::fs::metadata(&sh).expect("sh").ino();
    let image2 = store
        .add_image(Some(&"other:1".parse().expect("ref")), "", &manifest2)
        .expect("add 2");
    assert_eq!(image2.layers[0], image.layers[0]);
    assert_eq!(std::fs::metadata(&sh).expect("sh").ino(), ino);
    assert_eq!(store.list().expect("list").len(), 2);
}

#[test]
fn a_container_records_its_use_and_release_removes_its_upper_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let base = support::layer(&[Entry::File("hello", b"hi", 0o644)]);
    let manifest = support::image(&store, &[(base.clone(), base)]);
    let image = store
        .add_image(
            Some(&"used:1".parse().expect("ref")),
            OCI_MANIFEST,
            &manifest,
        )
        .expect("add");
    let layers = store
        .prepare_container(&image, "c1", false)
        .expect("prepare");
    let upper = layers.upper.clone().expect("upper");
    assert!(upper.is_dir() && layers.work.as_ref().expect("work").is_dir());
    assert_eq!(layers.lower, image.layers);
    let read_only = store
        .prepare_container(&image, "c2", true)
        .expect("prepare ro");
    assert!(read_only.upper.is_none());
    assert_eq!(store.containers_using(&image).expect("using"), ["c1", "c2"]);
    let err = store.remove("used:1", false).unwrap_err();
    assert!(err.to_string().contains("c1"), "{err}");
    assert!(store.prepare_container(&image, "../x", false).is_err());
    store.release_container("c1").expect("release");
    store.release_container("c1").expect("release again");
    store.release_container("c2").expect("release c2");
    assert!(!upper.exists());
    assert!(store.containers_using(&image).expect("using").is_empty());
    store.remove("used:1", false).expect("rmi");
    assert!(store.resolve("used:1").expect("resolve").is_none());
}

#[test]
fn schema_1_manifests_and_indexes_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let schema1 = br#"{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}"#;
    let err = store
        .add_image(
            None,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            schema1,
        )
        .expect_err("schema 1")
        .to_string();
    assert!(err.contains("schema 1"), "{err}");
    let index = br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#;
    let err = store
        .add_image(None, "", index)
        .expect_err("index")
        .to_string();
    assert!(err.contains("index of manifests"), "{err}");
    let missing = support::image(&store, &[]);
    std::fs::remove_dir_all(dir.path().join("blobs/sha256")).expect("rm blobs");
    std::fs::create_dir(dir.path().join("blobs/sha256")).expect("mkdir");
    let err = store
        .add_image(None, OCI_MANIFEST, &missing)
        .expect_err("missing config")
        .to_string();
    assert!(err.contains("is not in the store"), "{err}");
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn release_removes_the_mode_0_work_directory_overlayfs_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let layer = support::layer(&[Entry::File("f", b"x", 0o644)]);
    let manifest = support::image(&store, &[(layer.clone(), layer)]);
    let image = store.add_image(None, OCI_MANIFEST, &manifest).expect("add");
    let layers = store
        .prepare_container(&image, "locked", false)
        .expect("prepare");
    let work = layers.work.expect("work").join("work");
    std::fs::create_dir(&work).expect("mkdir");
    std::fs::write(work.join("file"), b"x").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    store.release_container("locked").expect("release");
    assert!(!dir.path().join("containers/locked").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

#[test]
fn a_blob_of_the_wrong_content_or_size_is_never_stored() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let good = support::digest(b"content");
    let mut writer = store.begin_blob(&good).expect("begin");
    writer.write_all(b"contents").expect("write");
    let err = writer.commit().expect_err("wrong digest").to_string();
    assert!(err.contains(good.as_ref()), "{err}");
    assert!(!store.has_blob(&good));
    let mut writer = store.begin_blob_sized(&good, 3).expect("begin");
    assert!(writer.write_all(b"content").is_err(), "more than announced");
    drop(writer);
    let mut writer = store.begin_blob_sized(&good, 7).expect("begin");
    writer.write_all(b"content").expect("write");
    assert_eq!(writer.commit().expect("commit"), good);
    assert!(store.has_blob(&good));
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

/// The one-line error opening the store at `root` gives, which must name `path`.
fn refusal(root: &std::path::Path, path: &std::path::Path) -> String {
    let err = Store::open(root).expect_err("an unsafe store is refused");
    let line = err.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
    line
}

#[test]
fn a_symlink_planted_in_the_store_is_refused_and_nothing_is_written_through_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    Store::open(&root).expect("a new store");
    for planted in ["layers", "blobs/sha256", "tmp", "containers"] {
        let path = root.join(planted);
        std::fs::remove_dir_all(&path).expect("rm");
        std::os::unix::fs::symlink(&outside, &path).expect("symlink");
        let line = refusal(&root, &path);
        assert!(line.contains("is a symbolic link"), "{line}");
        std::fs::remove_file(&path).expect("rm link");
        Store::open(&root).expect("remade");
    }
    // The root itself as a link to a directory of ours.
    let link = dir.path().join("store-link");
    std::os::unix::fs::symlink(&root, &link).expect("symlink");
    assert!(refusal(&link, &link).contains("is a symbolic link"));
    // The records and locks as links: refused (ELOOP), never followed.
    let store = Store::open(&root).expect("open");
    let target = outside.join("images.json");
    std::fs::write(&target, r#"{"images":[]}"#).expect("write");
    std::os::unix::fs::symlink(&target, root.join("images.json")).expect("symlink");
    store.list().expect_err("images.json through a link");
    std::fs::remove_file(root.join("images.json")).expect("rm");
    std::os::unix::fs::symlink(outside.join("lock"), root.join("lock")).expect("symlink");
    let layer = support::layer(&[Entry::File("f", b"x", 0o644)]);
    let manifest = support::image(&store, &[(layer.clone(), layer)]);
    store
        .add_image(None, OCI_MANIFEST, &manifest)
        .expect_err("a lock through a link");
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        1,
        "only the test's own images.json is outside"
    );
}

#[test]
fn a_store_others_can_write_or_another_user_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    // A world-writable directory someone made for us: refused before anything is made in it.
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let line = refusal(&root, &root);
    assert!(line.contains("writable by others (mode 777)"), "{line}");
    assert_eq!(std::fs::read_dir(&root).expect("root").count(), 0);
    // 0755 is fine for the root (nothing below it is open), not for what is below.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Store::open(&root).expect("a 0755 root");
    let layers = root.join("layers");
    std::fs::set_permissions(&layers, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(refusal(&root, &layers).contains("open to other users"));
    std::fs::set_permissions(&layers, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    if !is_root() {
        eprintln!("skipped the part with another owner: needs root to chown");
        return;
    }
    // Another user's store (nobody's): refused to root, whatever its mode.
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).expect("chown");
    assert!(refusal(&root, &root).contains("owned by uid 65534"));
    std::os::unix::fs::chown(&root, Some(0), Some(0)).expect("chown back");
    std::os::unix::fs::chown(root.join("tmp"), Some(65534), Some(65534)).expect("chown");
    assert!(refusal(&root, &root.join("tmp")).contains("owned by uid 65534"));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
