//! `peapod images`, `rmi`, `image load|prune` on real stores: use records, bytes freed,
//! a load killed midway, and several peapod processes at once.

mod support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use support::{finish, peapod, wait_until, Outcome};

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

const BUSYBOX: &str = "localhost/peapod/busybox:latest";

fn images(storage: &Path, args: &[&str]) -> Outcome {
    let mut command = peapod();
    command.arg("--storage").arg(storage).args(args);
    finish(command.spawn().expect("spawn peapod"))
}

fn ok(storage: &Path, args: &[&str]) -> String {
    let out = images(storage, args);
    assert_eq!(out.code, 0, "peapod {args:?}: {out:?}");
    out.stdout
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Bytes of the regular files under `path`, each inode once.
fn tree_bytes(path: &Path, seen: &mut std::collections::BTreeSet<u64>) -> u64 {
    let meta = std::fs::symlink_metadata(path).expect("lstat");
    if meta.is_file() {
        return if seen.insert(meta.ino()) {
            meta.len()
        } else {
            0
        };
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .expect("read_dir")
        .map(|e| tree_bytes(&e.expect("entry").path(), seen))
        .sum()
}

/// Kills (by its pid) and reaps a child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn images_lists_a_table_and_json_and_the_storage_flag_wins_over_the_environment() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    let mut command = peapod();
    command
        .arg("--storage")
        .arg(&storage)
        .args(["image", "load", "-"])
        .stdin(std::fs::File::open(&archive).expect("archive"));
    let out = finish(command.spawn().expect("spawn"));
    assert_eq!(out.stdout, format!("Loaded image: {BUSYBOX}\n"), "{out:?}");
    let table = ok(&storage, &["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{table}");
    assert!(
        lines[1].starts_with("localhost/peapod/busybox  latest"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&storage, &["images", "--format", "json"])).expect("json");
    assert_eq!(json[0]["names"][0], BUSYBOX);
    assert!(json[0]["size"].as_u64().expect("size") > 1_000_000);
    let inspect: serde_json::Value = serde_json::from_str(&ok(
        &storage,
        &["image", "inspect", "localhost/peapod/busybox"],
    ))
    .expect("json");
    assert_eq!(inspect[0]["config"]["Entrypoint"][0], "/bin/sh");

    // PEAPOD_STORAGE names a store; --storage another one, and wins.
    let mut command = peapod();
    command
        .env("PEAPOD_STORAGE", &storage)
        .arg("images")
        .arg("-q");
    let from_env = finish(command.spawn().expect("spawn"));
    assert_eq!(from_env.stdout.lines().count(), 1, "{from_env:?}");
    let mut command = peapod();
    command
        .env("PEAPOD_STORAGE", &storage)
        .arg("--storage")
        .arg(dir.path().join("other"))
        .args(["images", "-q"]);
    let from_flag = finish(command.spawn().expect("spawn"));
    assert_eq!(from_flag.stdout, "", "{from_flag:?}");
}

#[test]
fn rmi_of_an_image_a_container_uses_is_refused_unless_forced() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    ok(
        &storage,
        &["image", "load", archive.to_str().expect("utf-8")],
    );
    let store = peapod_image::Store::open(&storage).expect("open");
    let image = store
        .resolve("localhost/peapod/busybox")
        .expect("resolve")
        .expect("image");
    store
        .prepare_container(&image, "web", false)
        .expect("prepare");

    let out = images(&storage, &["rmi", "localhost/peapod/busybox"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("in use by container(s) web"), "{out:?}");
    assert!(store.resolve(BUSYBOX).expect("resolve").is_some());

    let out = ok(&storage, &["rmi", "--force", "localhost/peapod/busybox"]);
    assert!(out.contains(&format!("Untagged: {BUSYBOX}")), "{out}");
    // The container's layers stay for as long as it does, even through a prune.
    ok(&storage, &["image", "prune"]);
    assert!(image.layers[0].join("bin/busybox").is_file());
    store.release_container("web").expect("release");
    ok(&storage, &["image", "prune"]);
    assert!(!image.layers[0].exists());
}

#[test]
fn image_prune_frees_the_blobs_and_layers_of_removed_images_and_says_how_many_bytes() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    ok(
        &storage,
        &["image", "load", archive.to_str().expect("utf-8")],
    );
    // Nothing to prune while the image is there.
    let out = ok(&storage, &["image", "prune"]);
    assert!(out.contains("(0 bytes)"), "{out}");
    let mut seen = Default::default();
    let expected = tree_bytes(&storage.join("blobs"), &mut seen)
        + tree_bytes(&storage.join("layers"), &mut seen);
    ok(&storage, &["rmi", BUSYBOX]);
    let out = ok(&storage, &["image", "prune"]);
    assert!(out.contains(&format!("({expected} bytes)")), "{out}");
    assert!(out.starts_with("Removed 3 blobs and 1 layers"), "{out}");
    assert!(entries(&storage.join("blobs/sha256")).is_empty());
    assert!(entries(&storage.join("layers/sha256")).is_empty());
}

#[test]
fn a_load_killed_midway_leaves_nothing_a_later_command_takes_as_complete() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    let fifo = dir.path().join("archive.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut command = peapod();
    command
        .arg("--storage")
        .arg(&storage)
        .args(["image", "load"])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut loader = Killed(command.spawn().expect("spawn"));
    // Half of the archive: the load is then inside the layer blob, and waits for more.
    let bytes = std::fs::read(&archive).expect("archive");
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    writer
        .write_all(&bytes[..bytes.len() / 2])
        .expect("write half");
    wait_until("a blob being written", || {
        entries(&storage.join("tmp"))
            .iter()
            .any(|e| e.ends_with(".blob"))
            && std::fs::read_dir(storage.join("tmp"))
                .expect("tmp")
                .any(|e| e.expect("entry").metadata().expect("meta").len() > 0)
    });
    loader.0.kill().expect("SIGKILL");
    loader.0.wait().expect("wait");
    drop(writer);

    assert_eq!(ok(&storage, &["images", "-q"]), "");
    let out = images(&storage, &["image", "inspect", BUSYBOX]);
    assert_ne!(out.code, 0, "{out:?}");
    let blobs = entries(&storage.join("blobs/sha256"));
    let layers = entries(&storage.join("layers/sha256"));
    assert!(layers.is_empty(), "{layers:?}");
    // Only complete blobs have names; the one cut off is not among them.
    for blob in &blobs {
        let digest = peapod_image::digest_of(
            &std::fs::read(storage.join("blobs/sha256").join(blob)).expect("blob"),
        );
        assert_eq!(digest.digest(), blob);
    }
    assert!(!entries(&storage.join("tmp")).is_empty());

    // A later load completes, and sweeps what the killed one left.
    ok(
        &storage,
        &["image", "load", archive.to_str().expect("utf-8")],
    );
    assert_eq!(entries(&storage.join("tmp")), Vec::<String>::new());
    let store = peapod_image::Store::open(&storage).expect("open");
    let image = store.resolve(BUSYBOX).expect("resolve").expect("image");
    assert!(image.layers[0].join("bin/busybox").is_file());
}

#[test]
fn concurrent_loads_removes_and_prunes_leave_a_consistent_store() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    let archive_arg = archive.to_str().expect("utf-8");
    let spawn = |args: &[&str]| {
        let mut command = peapod();
        command.arg("--storage").arg(&storage).args(args);
        command.spawn().expect("spawn")
    };
    // Three loads of one image at once: one unpacked layer, one record.
    let loads: Vec<Child> = (0..3)
        .map(|_| spawn(&["image", "load", archive_arg]))
        .collect();
    for child in loads {
        let out = finish(child);
        assert_eq!(out.code, 0, "{out:?}");
    }
    assert_eq!(ok(&storage, &["images", "-q"]).lines().count(), 1);
    assert_eq!(entries(&storage.join("layers/sha256")).len(), 1);

    // Loads, removals and prunes racing: each either does its work or says the image is
    // not known; the store stays readable throughout.
    for _ in 0..2 {
        let children: Vec<Child> = vec![
            spawn(&["image", "load", archive_arg]),
            spawn(&["rmi", BUSYBOX]),
            spawn(&["image", "prune"]),
            spawn(&["image", "load", archive_arg]),
        ];
        for child in children {
            let out = finish(child);
            assert!(
                out.code == 0 || out.stderr.contains("image not known"),
                "{out:?}"
            );
        }
        let listed = ok(&storage, &["images", "--format", "json"]);
        let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
        for image in listed.as_array().expect("list") {
            let id = image["id"].as_str().expect("id");
            ok(&storage, &["image", "inspect", id]);
        }
    }
    ok(&storage, &["image", "load", archive_arg]);
    ok(&storage, &["image", "prune"]);
    let store = peapod_image::Store::open(&storage).expect("open");
    let image = store.resolve(BUSYBOX).expect("resolve").expect("image");
    assert!(image.layers[0].join("bin/busybox").is_file());
    assert!(entries(&storage.join("tmp")).is_empty());
}

#[test]
fn bad_input_gives_one_line_errors_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not an archive at all").expect("write");
    for args in [
        vec!["image", "load", junk.to_str().expect("utf-8")],
        vec!["image", "load", "/nonexistent/archive.tar"],
        vec!["rmi", "nothing-here"],
        vec!["image", "inspect", "nothing-here"],
        vec!["image", "import", "/nonexistent/rootfs", "x:1"],
        vec![
            "image",
            "import",
            dir.path().to_str().expect("utf-8"),
            "Bad Name",
        ],
    ] {
        let out = images(&storage, &args);
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("peapod: error: "), "{out:?}");
    }
    for sub in ["blobs/sha256", "layers/sha256", "tmp", "containers"] {
        assert!(entries(&storage.join(sub)).is_empty(), "{sub}");
    }
}

/// `peapod --storage STORE ARGS...` as the unprivileged user `nobody`, from `dir` (which holds
/// a copy of the binary nobody can reach).
fn as_nobody(dir: &Path, store: &Path, args: &[&str]) -> Outcome {
    use std::os::unix::process::CommandExt;
    let binary = dir.join("peapod");
    if !binary.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_peapod"), &binary).expect("copy peapod");
    }
    let mut child = std::process::Command::new(&binary);
    child
        .arg("--storage")
        .arg(store)
        .args(args)
        .uid(support::NOBODY)
        .gid(support::NOBODY)
        .current_dir(dir)
        .env_remove("PEAPOD_STORAGE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(support::spawn_copied(child))
}

#[test]
fn an_ordinary_user_loads_and_imports_into_a_rootless_store() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let Some(archive) = busybox_archive() else {
        return;
    };
    if !support::is_root() {
        eprintln!("skipped: needs root to become nobody");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let store = dir.path().join("store");
    std::fs::create_dir(&store).expect("store");
    nix::unistd::chown(
        &store,
        Some(support::NOBODY.into()),
        Some(support::NOBODY.into()),
    )
    .expect("chown");
    let copy = dir.path().join("busybox.tar");
    std::fs::copy(&archive, &copy).expect("copy archive");
    let out = as_nobody(dir.path(), &store, &["image", "load", "busybox.tar"]);
    assert_eq!(out.code, 0, "{out:?}");
    let layer = std::fs::read_dir(store.join("layers/sha256"))
        .expect("layers")
        .next()
        .expect("one layer")
        .expect("entry")
        .path()
        .join("diff");
    let busybox = std::fs::metadata(layer.join("bin/busybox")).expect("busybox");
    assert_eq!(
        busybox.uid(),
        support::NOBODY,
        "owned by the user, not chowned"
    );

    // A layer with whiteouts: overlay's userxattr forms.
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("d")).expect("mkdir");
    std::fs::write(src.join("d/.wh..wh..opq"), "").expect("opaque");
    std::fs::write(src.join(".wh.gone"), "").expect("whiteout");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["-cf", "whiteouts.tar", "."])
        .current_dir(dir.path())
        .status()
        .expect("tar");
    assert!(status.success());
    let out = as_nobody(
        dir.path(),
        &store,
        &["image", "import", "whiteouts.tar", "wh:1"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let store_lib = peapod_image::Store::open(&store).expect("open");
    let image = store_lib.resolve("wh:1").expect("resolve").expect("image");
    let gone = std::fs::symlink_metadata(image.layers[0].join("gone")).expect("whiteout");
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    let path = std::ffi::CString::new(
        image.layers[0]
            .join("d")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("path");
    let mut value = [0u8; 4];
    // SAFETY: both pointers are valid for the call; the length is the buffer's.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!((n, value[0]), (1, b'y'), "user.overlay.opaque of d");

    // A device node: refused for an ordinary user, naming the entry; nothing left.
    let devsrc = dir.path().join("devsrc");
    std::fs::create_dir(&devsrc).expect("mkdir");
    nix::sys::stat::mknod(
        &devsrc.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&devsrc)
        .args(["-cf", "dev.tar", "."])
        .current_dir(dir.path())
        .status()
        .expect("tar");
    assert!(status.success());
    let out = as_nobody(dir.path(), &store, &["image", "import", "dev.tar", "dev:1"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("\"./null\"") && out.stderr.contains("only made by root"),
        "{out:?}"
    );
    assert!(entries(&store.join("tmp")).is_empty());
    assert_eq!(entries(&store.join("layers/sha256")).len(), 2);
}
