//! `peapod images`, `rmi`, `image load|prune` on real stores: use records, bytes freed,
//! a load killed midway, and several peapod processes at once.

mod support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use support::kill::Killed;
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
    // Read as nobody: root refuses to open a store another user owns.
    let out = as_nobody(dir.path(), &store, &["image", "inspect", "wh:1"]);
    assert_eq!(out.code, 0, "{out:?}");
    let inspect: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let layer = PathBuf::from(inspect[0]["layers"][0].as_str().expect("layer"));
    let gone = std::fs::symlink_metadata(layer.join("gone")).expect("whiteout");
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    let path = std::ffi::CString::new(layer.join("d").into_os_string().into_encoded_bytes())
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

    // A device node: skipped for an ordinary user, with one warning naming it.
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
    assert_eq!(out.code, 0, "{out:?}");
    let warned: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("./null"))
        .collect();
    assert_eq!(warned.len(), 1, "{out:?}");
    assert!(warned[0].contains("device nodes skipped"), "{out:?}");
    assert!(entries(&store.join("tmp")).is_empty());
    assert_eq!(entries(&store.join("layers/sha256")).len(), 3);
}

/// The image id `peapod image inspect REFERENCE` prints.
fn image_id(storage: &Path, reference: &str) -> String {
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(storage, &["image", "inspect", reference])).expect("json");
    inspect[0]["id"].as_str().expect("id").to_owned()
}

/// Whether `bytes` begin with a POSIX tar header (`ustar` at offset 257).
fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 1024 && bytes.get(257..262) == Some(b"ustar".as_slice())
}

/// A store with the busybox image loaded, in `dir`.
fn loaded_store(dir: &Path, archive: &Path) -> PathBuf {
    let storage = dir.join("store");
    ok(
        &storage,
        &["image", "load", archive.to_str().expect("utf-8")],
    );
    storage
}

#[test]
fn image_save_to_a_pipe_loads_back_from_standard_input_with_the_same_id() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = loaded_store(dir.path(), &archive);
    let id = image_id(&storage, BUSYBOX);

    // `image save IMAGE | image load`: no -o, no argument.
    let mut save = peapod();
    save.arg("--storage")
        .arg(&storage)
        .args(["image", "save", BUSYBOX]);
    let mut saver = Killed(save.spawn().expect("spawn save"));
    let pipe = saver.0.stdout.take().expect("stdout");
    let other = dir.path().join("other");
    let mut load = peapod();
    load.arg("--storage")
        .arg(&other)
        .args(["image", "load"])
        .stdin(pipe);
    let loaded = finish(load.spawn().expect("spawn load"));
    assert_eq!(loaded.code, 0, "{loaded:?}");
    assert_eq!(loaded.stdout, format!("Loaded image: {BUSYBOX}\n"));
    let saved = support::wait_with_timeout(&mut saver.0, std::time::Duration::from_secs(60))
        .expect("image save finishes");
    assert!(saved.success(), "{saved:?}");
    assert_eq!(image_id(&other, BUSYBOX), id);

    // `-o -` into the test's own reader: a tar, which `image load -` takes from stdin.
    let mut save = peapod();
    save.arg("--storage")
        .arg(&storage)
        .args(["image", "save", "-o", "-", BUSYBOX]);
    let mut child = save.spawn().expect("spawn save");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().expect("stdout"), &mut bytes)
        .expect("read");
    assert_eq!(finish(child).code, 0);
    assert!(is_tar(&bytes), "not a tar: {} bytes", bytes.len());
    let third = dir.path().join("third");
    let mut load = peapod();
    load.arg("--storage")
        .arg(&third)
        .args(["image", "load", "-"])
        .stdin(Stdio::piped());
    let mut child = load.spawn().expect("spawn load");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = finish(child);
    writer.join().expect("writer").expect("write");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(image_id(&third, BUSYBOX), id);
}

#[test]
fn image_save_and_load_refuse_a_terminal_in_one_line() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = loaded_store(dir.path(), &archive);
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let tty = std::fs::File::from(pty.slave);
    let mut save = peapod();
    save.arg("--storage")
        .arg(&storage)
        .args(["image", "save", BUSYBOX])
        .stdout(tty.try_clone().expect("dup"));
    let out = finish(save.spawn().expect("spawn"));
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("terminal"), "{out:?}");
    let mut load = peapod();
    load.arg("--storage")
        .arg(&storage)
        .args(["image", "load"])
        .stdin(tty);
    let out = finish(load.spawn().expect("spawn"));
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    drop(pty.master);
}

#[test]
fn image_save_follows_a_symlink_writes_into_a_fifo_and_replaces_a_regular_file_atomically() {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = loaded_store(dir.path(), &archive);
    let id = image_id(&storage, BUSYBOX);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let save = |path: &Path| {
        let out = images(
            &storage,
            &[
                "image",
                "save",
                "-o",
                path.to_str().expect("utf-8"),
                BUSYBOX,
            ],
        );
        assert_eq!(out.code, 0, "{out:?}");
    };
    let loads_back = |path: &Path| {
        let other = tempfile::tempdir().expect("tempdir");
        let store = other.path().join("store");
        ok(&store, &["image", "load", path.to_str().expect("utf-8")]);
        assert_eq!(image_id(&store, BUSYBOX), id);
    };

    // A new file, and then over it: renamed into place (a new inode), its mode kept.
    let file = out_dir.join("busybox.tar");
    save(&file);
    loads_back(&file);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = std::fs::metadata(&file).expect("stat").ino();
    save(&file);
    let after = std::fs::metadata(&file).expect("stat");
    assert_ne!(after.ino(), before, "replaced by a rename");
    assert_eq!(after.permissions().mode() & 0o777, 0o640);
    loads_back(&file);

    // Through a symlink to a regular file: the link stays, its target gets the tar.
    let link = out_dir.join("link.tar");
    std::os::unix::fs::symlink("busybox.tar", &link).expect("symlink");
    std::fs::write(&file, b"old").expect("write");
    save(&link);
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    loads_back(&file);
    // A dangling symlink: its target is made, as the shell's `>` makes it.
    let dangling = out_dir.join("dangling.tar");
    std::os::unix::fs::symlink("made.tar", &dangling).expect("symlink");
    save(&dangling);
    assert!(std::fs::symlink_metadata(&dangling)
        .expect("lstat")
        .file_type()
        .is_symlink());
    loads_back(&out_dir.join("made.tar"));

    // A link to the process's own standard output (what /dev/stdout is): written into.
    let stdout_link = out_dir.join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &stdout_link).expect("symlink");
    let out = images(
        &storage,
        &[
            "image",
            "save",
            "-o",
            stdout_link.to_str().expect("utf-8"),
            BUSYBOX,
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(std::fs::symlink_metadata(&stdout_link)
        .expect("lstat")
        .file_type()
        .is_symlink());

    // A FIFO: written into, and still a FIFO; a reader thread gets the bytes.
    let fifo = out_dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo))
    };
    let out = images(
        &storage,
        &[
            "image",
            "save",
            "-o",
            fifo.to_str().expect("utf-8"),
            BUSYBOX,
        ],
    );
    // Should peapod have failed before opening the FIFO, the reader is still blocked in
    // open(2): a writer opened and closed here lets it go (ENXIO when it is gone already).
    let _ = std::fs::File::options()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    let bytes = reader.join().expect("reader").expect("read the fifo");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(is_tar(&bytes));
    assert!(std::fs::symlink_metadata(&fifo)
        .expect("lstat")
        .file_type()
        .is_fifo());
    let copy = out_dir.join("from-fifo.tar");
    std::fs::write(&copy, &bytes).expect("write");
    loads_back(&copy);

    // Nothing but what was asked for: no temporary files left beside them.
    assert_eq!(
        entries(&out_dir),
        [
            "busybox.tar",
            "dangling.tar",
            "fifo",
            "from-fifo.tar",
            "link.tar",
            "made.tar",
            "stdout"
        ]
    );
}

#[test]
fn a_store_with_a_planted_symlink_a_world_writable_root_or_another_owner_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("store");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let refused = |reason: &str, named: &Path| {
        let out = images(
            &storage,
            &["image", "load", archive.to_str().expect("utf-8")],
        );
        assert_ne!(out.code, 0, "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(
            out.stderr.contains(reason) && out.stderr.contains(&named.display().to_string()),
            "{out:?}"
        );
    };
    ok(&storage, &["images"]);
    // `layers` a link to a directory outside: refused, nothing unpacked there.
    std::fs::remove_dir_all(storage.join("layers")).expect("rm");
    std::os::unix::fs::symlink(&outside, storage.join("layers")).expect("symlink");
    refused("is a symbolic link", &storage.join("layers"));
    assert!(entries(&outside).is_empty());
    std::fs::remove_file(storage.join("layers")).expect("rm");
    // World-writable.
    std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    refused("is writable by others (mode 777)", &storage);
    std::fs::set_permissions(&storage, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    if !support::is_root() {
        eprintln!("skipped the part with another owner: needs root to chown");
        return;
    }
    // Another user's (nobody's): root does not use it.
    nix::unistd::chown(
        &storage,
        Some(support::NOBODY.into()),
        Some(support::NOBODY.into()),
    )
    .expect("chown");
    refused("is owned by uid 65534", &storage);
    assert!(entries(&storage.join("layers/sha256")).is_empty());
}

#[test]
fn tag_gives_an_image_more_names_and_takes_a_name_from_another() {
    let Some(archive) = busybox_archive() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = loaded_store(dir.path(), &archive);
    let id = image_id(&storage, BUSYBOX);
    ok(&storage, &["tag", BUSYBOX, "localhost/tools:1", "tools"]);
    assert_eq!(image_id(&storage, "localhost/tools:1"), id);
    // Normalized as Docker reads a short name.
    assert_eq!(image_id(&storage, "docker.io/library/tools:latest"), id);
    let names = ok(&storage, &["images", "--format", "json"]);
    for name in [
        BUSYBOX,
        "localhost/tools:1",
        "docker.io/library/tools:latest",
    ] {
        assert!(names.contains(name), "{name} in {names}");
    }
    // `image tag` is the same; by id; a digest as the new name is refused in one line.
    ok(&storage, &["image", "tag", &id[..12], "localhost/tools:2"]);
    assert_eq!(image_id(&storage, "localhost/tools:2"), id);
    let bad = images(
        &storage,
        &["tag", BUSYBOX, &format!("x@sha256:{}", "a".repeat(64))],
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert_eq!(bad.stderr.lines().count(), 1, "{bad:?}");
    let missing = images(&storage, &["tag", "localhost/nothing", "localhost/x"]);
    assert_ne!(missing.code, 0, "{missing:?}");
    // Removing one name leaves the image and its other names.
    ok(&storage, &["rmi", "localhost/tools:1"]);
    assert_eq!(image_id(&storage, BUSYBOX), id);
}
