//! Layers unpacked for real: whiteouts and opaque directories seen through a real overlay
//! mount, and hostile layers refused with nothing left behind.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use peapod_image::{Store, UnpackOptions, OCI_MANIFEST};
use support::Entry;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// Unmounts (lazily, so a failed test cannot leave it) what it guards.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn whiteouts_and_opaque_directories_give_the_final_tree_in_a_real_overlay_mount() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open");
    let bottom = support::layer(&[
        Entry::Dir("etc/", 0o755),
        Entry::File("etc/deleted", b"gone", 0o644),
        Entry::File("etc/kept", b"kept", 0o644),
        Entry::Dir("opaque/", 0o755),
        Entry::File("opaque/old", b"old", 0o644),
        Entry::Dir("bin/", 0o755),
        Entry::File("bin/su", b"setuid", 0o4755),
        Entry::Char("dev-null", 1, 3),
        Entry::XattrFile("bin/ping", b"ping", 0o755, "security.capability", &NET_RAW),
    ]);
    let middle = support::layer(&[
        Entry::File("etc/.wh.deleted", b"", 0o644),
        Entry::Dir("opaque/", 0o750),
        Entry::File("opaque/.wh..wh..opq", b"", 0o644),
        Entry::File("opaque/new", b"new", 0o644),
        Entry::File("etc/target", b"linked", 0o600),
        Entry::Link("etc/hardlink", "etc/target"),
        Entry::Symlink("etc/symlink", "kept"),
    ]);
    let top = support::layer(&[Entry::File("etc/kept", b"changed", 0o640)]);
    let manifest = support::image(
        &store,
        &[
            (bottom.clone(), support::gzip(&bottom)),
            (middle.clone(), middle.clone()),
            (top.clone(), top.clone()),
        ],
    );
    let image = store
        .add_image(
            Some(&"three:1".parse().expect("ref")),
            OCI_MANIFEST,
            &manifest,
        )
        .expect("add");
    let lower: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let target = dir.path().join("merged");
    std::fs::create_dir(&target).expect("mkdir");
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("ro,lowerdir={}", lower.join(":")))
        .arg(&target)
        .status()
        .expect("mount");
    assert!(status.success(), "overlay mount");
    let _mounted = Mounted(target.clone());

    let names = |sub: &str| {
        let mut names: Vec<String> = std::fs::read_dir(target.join(sub))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("etc"), ["hardlink", "kept", "symlink", "target"]);
    assert_eq!(names("opaque"), ["new"]);
    assert_eq!(
        std::fs::read(target.join("etc/kept")).expect("kept"),
        b"changed"
    );
    assert_eq!(
        std::fs::read(target.join("etc/symlink")).expect("symlink"),
        b"changed"
    );
    let su = std::fs::metadata(target.join("bin/su")).expect("su");
    assert_eq!((su.mode() & 0o7777, su.uid(), su.gid()), (0o4755, 0, 0));
    let hard = std::fs::metadata(target.join("etc/hardlink")).expect("hardlink");
    let linked = std::fs::metadata(target.join("etc/target")).expect("target");
    assert_eq!(hard.ino(), linked.ino());
    assert_eq!(linked.mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::metadata(target.join("opaque"))
            .expect("opaque")
            .mode()
            & 0o777,
        0o750
    );
    let null = std::fs::metadata(target.join("dev-null")).expect("dev-null");
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let getcap = Command::new("getcap")
        .arg(target.join("bin/ping"))
        .output()
        .expect("getcap");
    assert!(
        String::from_utf8_lossy(&getcap.stdout).contains("cap_net_raw=ep"),
        "{getcap:?}"
    );
}

/// `security.capability` of a file with `cap_net_raw=ep`: a `vfs_cap_data` of revision 2
/// (effective flag set, bit 13 permitted).
const NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn a_rootless_store_marks_opaque_directories_for_userxattr_overlay_mounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_with(
        &dir.path().join("store"),
        UnpackOptions {
            rootless: true,
            maps: None,
        },
    )
    .expect("open");
    let bottom = support::layer(&[
        Entry::File("d/old", b"old", 0o644),
        Entry::File("gone", b"", 0o644),
    ]);
    let top = support::layer(&[
        Entry::Dir("d/", 0o755),
        Entry::File("d/.wh..wh..opq", b"", 0o644),
        Entry::File(".wh.gone", b"", 0o644),
    ]);
    let manifest = support::image(&store, &[(bottom.clone(), bottom), (top.clone(), top)]);
    let image = store.add_image(None, OCI_MANIFEST, &manifest).expect("add");
    let mut value = [0u8; 4];
    let opaque = image.layers[1].join("d");
    let path = std::ffi::CString::new(opaque.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: both pointers are valid for the call; the length is the buffer's.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!((n, value[0]), (1, b'y'));
    let whiteout = std::fs::symlink_metadata(image.layers[1].join("gone")).expect("whiteout");
    assert_eq!(whiteout.rdev(), 0);
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &whiteout.file_type()
    ));
}

/// Adds an image of the one layer `entries` and checks it is refused naming `entry`, with
/// nothing of it left in the store.
fn assert_refused(options: &UnpackOptions, entries: &[Entry<'_>], entry: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open_with(&root, options.clone()).expect("open");
    let layer = support::layer(entries);
    let manifest = support::image(&store, &[(layer.clone(), layer)]);
    let err = store
        .add_image(
            Some(&"hostile:1".parse().expect("ref")),
            OCI_MANIFEST,
            &manifest,
        )
        .expect_err("refused")
        .to_string();
    eprintln!("refused: {err}");
    assert!(err.contains(&format!("{entry:?}")), "{entry}: {err}");
    assert!(store.list().expect("list").is_empty());
    for sub in ["layers/sha256", "tmp", "containers"] {
        let left: Vec<_> = std::fs::read_dir(root.join(sub))
            .expect("read_dir")
            .collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}

#[test]
fn hostile_layers_are_refused_naming_the_entry_and_leave_nothing() {
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    let victim_name = victim.display().to_string();
    let link_target = outside.path().display().to_string();
    let rooted = &UnpackOptions {
        rootless: false,
        maps: None,
    };
    assert_refused(rooted, &[Entry::File("../x", b"x", 0o644)], "../x");
    assert_refused(
        rooted,
        &[Entry::File("a/../../x", b"x", 0o644)],
        "a/../../x",
    );
    assert_refused(
        rooted,
        &[Entry::File(&victim_name, b"x", 0o644)],
        &victim_name,
    );
    assert_refused(
        rooted,
        &[
            Entry::Symlink("link", &link_target),
            Entry::File("link/victim", b"x", 0o644),
        ],
        "link/victim",
    );
    assert_refused(
        rooted,
        &[Entry::Symlink("link", "/"), Entry::Dir("link/etc/", 0o755)],
        "link/etc/",
    );
    assert_refused(rooted, &[Entry::Link("shadow", "/etc/shadow")], "shadow");
    assert_refused(rooted, &[Entry::Link("up", "../../../etc/shadow")], "up");
    assert_refused(
        rooted,
        &[
            Entry::Symlink("etc", "/etc"),
            Entry::Link("shadow", "etc/shadow"),
        ],
        "shadow",
    );
    assert!(!victim.exists());
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        0
    );
}

#[test]
fn a_symlink_replaced_by_a_file_is_replaced_not_written_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"untouched").expect("write");
    let store = Store::open(&dir.path().join("store")).expect("open");
    let layer = support::layer(&[
        Entry::Symlink("file", &outside.display().to_string()),
        Entry::File("file", b"inside", 0o644),
    ]);
    let manifest = support::image(&store, &[(layer.clone(), layer)]);
    let image = store.add_image(None, OCI_MANIFEST, &manifest).expect("add");
    assert_eq!(std::fs::read(&outside).expect("outside"), b"untouched");
    assert_eq!(
        std::fs::read(image.layers[0].join("file")).expect("file"),
        b"inside"
    );
    assert!(!Path::new(&image.layers[0].join("file")).is_symlink());
}

#[test]
fn a_rootless_store_skips_device_nodes_and_loads_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = UnpackOptions {
        rootless: true,
        maps: None,
    };
    let store = Store::open_with(&dir.path().join("store"), options).expect("open");
    let layer = support::layer(&[
        Entry::Char("null", 1, 3),
        Entry::File("kept", b"kept", 0o644),
    ]);
    let manifest = support::image(&store, &[(layer.clone(), layer)]);
    store
        .add_image(
            Some(&"devices:1".parse().expect("ref")),
            OCI_MANIFEST,
            &manifest,
        )
        .expect("loaded without its device node");
    let layers = dir.path().join("store/layers/sha256");
    let diff = std::fs::read_dir(&layers)
        .expect("layers")
        .flatten()
        .map(|e| e.path().join("diff"))
        .next()
        .expect("one layer");
    assert_eq!(std::fs::read(diff.join("kept")).expect("kept"), b"kept");
    assert!(std::fs::symlink_metadata(diff.join("null")).is_err());
}
