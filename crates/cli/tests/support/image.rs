//! An image whose `User` is `1000:1000`, with a file owned by 1000, one by an id beyond a
//! subordinate range of 65536, and a device node: what rootless images and pods are tested
//! with.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestRootfs;

/// The image's name in the store [`image_archive`]'s archive loads into.
pub const IMAGE: &str = "localhost/rootids:latest";

/// A docker-archive of the test rootfs plus a layer with `/data/owned` (1000:1000, as
/// `/data`), `/far` (70000:70000, beyond a range of 65536) and a character device
/// `/dev/mydev`; its `User` is `1000:1000`. Returns the archive.
pub fn image_archive(rootfs: &TestRootfs) -> PathBuf {
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
    archive_of(rootfs, &dir)
}

fn tar(args: &[&str], dir: &Path) {
    let status = Command::new("tar")
        .args(["--numeric-owner", "--format=posix"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("tar");
    assert!(status.success(), "tar {args:?}");
}

/// A docker-archive `DIR.tar` of the test rootfs and the layer `DIR/extra.tar`, `User`
/// `1000:1000`.
pub fn archive_of(rootfs: &TestRootfs, dir: &Path) -> PathBuf {
    tar(&["-cf", "../base.tar", "."], &rootfs.path);
    std::fs::rename(rootfs.scratch().join("base.tar"), dir.join("base.tar")).expect("mv");
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
    let archive = dir.with_extension("tar");
    let files = ["manifest.json", "config.json", "base.tar", "extra.tar"];
    tar(
        &[&["-cf", archive.to_str().expect("utf-8")][..], &files].concat(),
        dir,
    );
    let readable = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(&archive, readable).expect("chmod");
    archive
}
