//! Rootless images with any user: the caller's subordinate ranges are mapped by default, a
//! layer's owners are kept (shifted through the ranges), device nodes are skipped with a
//! warning, and without ranges an image that needs another id says how to get one.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::user::{TestUser, RANGE};
use support::TestRootfs;

const IMAGE: &str = "localhost/rootids:latest";

/// A docker-archive of the test rootfs plus a layer with `/data/owned` (1000:1000, as
/// `/data`), `/far` (70000:70000, beyond a range of 65536) and a character device
/// `/dev/mydev`; its `User` is `1000:1000`. Returns the archive.
fn image_archive(rootfs: &TestRootfs) -> PathBuf {
    let dir = rootfs.scratch().join("image");
    let extra = dir.join("extra");
    std::fs::create_dir_all(extra.join("data")).expect("mkdir");
    std::fs::create_dir_all(extra.join("dev")).expect("mkdir");
    std::fs::write(extra.join("data/owned"), "mine\n").expect("write");
    std::fs::write(extra.join("far"), "far\n").expect("write");
    let dev = nix::sys::stat::makedev(1, 3);
    nix::sys::stat::mknod(
        &extra.join("dev/mydev"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        dev,
    )
    .expect("mknod");
    let tar = |args: &[&str], dir: &Path| {
        let status = Command::new("tar")
            .args(["--numeric-owner", "--format=posix"])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("tar");
        assert!(status.success(), "tar {args:?}");
    };
    tar(&["-cf", "../base.tar", "."], &rootfs.path);
    std::fs::rename(rootfs.scratch().join("base.tar"), dir.join("base.tar")).expect("mv");
    tar(
        &[
            "-cf",
            "../extra.tar",
            "--owner=:0",
            "--group=:0",
            "dev/mydev",
        ],
        &extra,
    );
    tar(
        &[
            "-rf",
            "../extra.tar",
            "--owner=:1000",
            "--group=:1000",
            "data",
        ],
        &extra,
    );
    tar(
        &[
            "-rf",
            "../extra.tar",
            "--owner=:70000",
            "--group=:70000",
            "far",
        ],
        &extra,
    );
    let digest = |name: &str| {
        let out = Command::new("sha256sum")
            .arg(dir.join(name))
            .output()
            .expect("sha256sum");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        format!(
            "sha256:{}",
            text.split_whitespace().next().expect("a digest")
        )
    };
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "1000:1000",
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"]
        },
        "rootfs": {"type": "layers", "diff_ids": [digest("base.tar"), digest("extra.tar")]}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [IMAGE],
        "Layers": ["base.tar", "extra.tar"]
    }]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("manifest");
    let archive = rootfs.scratch().join("image.tar");
    let files = ["manifest.json", "config.json", "base.tar", "extra.tar"];
    tar(
        &[&["-cf", archive.to_str().expect("utf-8")][..], &files].concat(),
        &dir,
    );
    let readable = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(&archive, readable).expect("chmod");
    archive
}

use std::os::unix::fs::PermissionsExt as _;

fn loaded(user: &TestUser, archive: &Path) -> support::Outcome {
    user.peapod(&["image", "load", "-i", archive.to_str().expect("utf-8")])
}

#[test]
fn rootless_image_with_user_1000_keeps_its_owners_through_the_subordinate_range() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), true) else {
        return;
    };
    let start = user.range_start.expect("a range");
    let archive = image_archive(&rootfs);
    let load = loaded(&user, &archive);
    assert_eq!(load.code, 0, "{load:?}");
    // The device node is skipped with one warning naming it; the far ids with another.
    let warnings: Vec<&str> = load
        .stderr
        .lines()
        .filter(|l| l.contains("dev/mydev"))
        .collect();
    assert_eq!(warnings.len(), 1, "{load:?}");
    assert!(warnings[0].contains("device nodes skipped"), "{load:?}");
    assert!(load.stderr.contains("uids [70000]"), "{load:?}");

    let script = "echo id=$(id -u):$(id -g); echo owned=$(stat -c %u:%g /data/owned); \
                  echo far=$(stat -c %u /far); echo map=$(head -n 2 /proc/self/uid_map | tr -s ' ' ' '); \
                  test -e /dev/mydev && echo dev=yes; cat /data/owned";
    let run = user.peapod(&["run", "--rm", IMAGE, "sh", "-c", script]);
    if run
        .stderr
        .contains("the kernel refuses unprivileged overlay")
    {
        eprintln!("skipped: {}", run.stderr.trim());
        return;
    }
    assert_eq!(run.code, 0, "{run:?}");
    let inside = support::facts(&run.stdout);
    assert_eq!(inside["id"], "1000:1000", "{run:?}");
    assert_eq!(inside["owned"], "1000:1000", "{run:?}");
    assert_eq!(
        inside["far"], "0",
        "an id beyond the range is the caller's: {run:?}"
    );
    assert!(!inside.contains_key("dev"), "{run:?}");
    assert!(run.stdout.ends_with("mine\n"), "{run:?}");
    let map: Vec<&str> = inside["map"].split_whitespace().collect();
    let (own, start_text, range) = (user.uid.to_string(), start.to_string(), RANGE.to_string());
    assert_eq!(
        map,
        [
            "0",
            own.as_str(),
            "1",
            "1",
            start_text.as_str(),
            range.as_str()
        ]
    );

    // On the host the file is the range's id 1000 maps to: start + 999.
    let layers = user.home.join("storage");
    let found = Command::new("find")
        .arg(&layers)
        .args(["-path", "*/diff/data/owned", "-printf", "%U:%G\n"])
        .output()
        .expect("find");
    let owners = String::from_utf8_lossy(&found.stdout);
    let host = start + 999;
    assert_eq!(
        owners.trim(),
        format!("{host}:{host}"),
        "subgid start is the same here"
    );

    // And the image goes again as the user, though its files are the range's.
    let rm = user.peapod(&["image", "rm", IMAGE]);
    assert_eq!(rm.code, 0, "{rm:?}");
    let prune = user.peapod(&["image", "prune"]);
    assert_eq!(prune.code, 0, "{prune:?}");
    let left = Command::new("find")
        .arg(&layers)
        .args(["-path", "*/diff/data/owned"])
        .output()
        .expect("find");
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
    rootfs.assert_nothing_left();
}

#[test]
fn rootless_image_with_user_1000_without_ranges_says_how_to_get_them() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), false) else {
        return;
    };
    let archive = image_archive(&rootfs);
    let load = loaded(&user, &archive);
    assert_eq!(load.code, 0, "{load:?}");
    assert!(load.stderr.contains("dev/mydev"), "{load:?}");
    let run = user.peapod(&["run", "--rm", IMAGE, "id"]);
    assert_ne!(run.code, 0, "{run:?}");
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(said.len(), 1, "one line: {run:?}");
    for needle in [
        "uid 1000 is not mapped",
        &format!("add a range for {} to /etc/subuid", user.name),
    ] {
        assert!(said[0].contains(needle), "{needle:?} in {run:?}");
    }
    // Its own id alone is still enough for root's.
    let root = user.peapod(&["run", "--rm", "--user", "0", IMAGE, "cat", "/data/owned"]);
    if root
        .stderr
        .contains("the kernel refuses unprivileged overlay")
    {
        eprintln!("skipped: {}", root.stderr.trim());
        return;
    }
    assert_eq!(root.code, 0, "{root:?}");
    assert_eq!(root.stdout, "mine\n");
    rootfs.assert_nothing_left();
}
