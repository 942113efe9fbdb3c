//! `cargo xtask test`: what CI runs. Formatting, clippy with warnings as errors, then every
//! unit and integration test with the default rootfs in place, and the images the CRI test
//! imports into its containerd (the pause image and a busybox image of the rootfs).

use crate::image::{write_archive, Image, Layer};
use std::path::{Path, PathBuf};

use crate::{cargo, dist, rootfs, run_status, target_dir, Result};

/// The name of the CRI test's busybox image.
const BUSYBOX_IMAGE: &str = "localhost/peapod/busybox:latest";

pub(crate) fn run(args: &[String]) -> Result {
    run_status(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_status(cargo().args([
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let rootfs_dir = rootfs::default_dir();
    let how = rootfs::ensure(&rootfs_dir)?;
    println!("xtask: rootfs at {} ({how})", rootfs_dir.display());
    // The init tests run the static binary that ships (and `peapod run --init` needs it).
    let init = dist::build_init()?;
    println!("xtask: static init at {}", init.display());
    let (pause, busybox) = write_cri_images(&init, &rootfs_dir)?;
    println!(
        "xtask: CRI test images {} {}",
        pause.display(),
        busybox.display()
    );
    // The tests of `peapod-oci` run the one that ships: static for musl where that target is
    // installed, beside the test build's `peapod` (which it hands commands to).
    let mut test = cargo();
    match dist::build_oci_musl() {
        Ok(musl) => {
            let debug = target_dir().join("debug");
            std::fs::create_dir_all(&debug)
                .map_err(|e| format!("cannot create {}: {e}", debug.display()))?;
            let beside = debug.join("peapod-oci-musl");
            dist::replace(&musl, &beside)?;
            dist::check_loads(&beside)?;
            println!("xtask: the tests run {}", beside.display());
            test.env("PEAPOD_OCI_BIN", &beside);
        }
        Err(why) => println!("xtask: the tests run the glibc peapod-oci: {why}"),
    }
    run_status(
        test.args(["test", "--workspace"])
            .args(args)
            .env("PEAPOD_PAUSE_IMAGE", &pause)
            .env("PEAPOD_BUSYBOX_IMAGE", &busybox)
            .env("PEAPOD_TEST_ROOTFS", &rootfs_dir)
            .env("PEAPOD_INIT_BIN", &init)
            // What peapod execs entrypoints through (and `run --init` mounts).
            .env("PEAPOD_INIT", &init),
    )
}

/// Writes the CRI test's images into `target/cri-images/`: the pause image of `init` and a
/// busybox image of `rootfs_dir`; returns their paths.
pub(crate) fn write_cri_images(init: &Path, rootfs_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let images = target_dir().join("cri-images");
    std::fs::create_dir_all(&images)
        .map_err(|e| format!("cannot create {}: {e}", images.display()))?;
    let pause = images.join("pause.tar");
    dist::write_pause_image(init, &pause)?;
    let busybox = images.join("busybox.tar");
    write_archive(
        &Image {
            name: BUSYBOX_IMAGE,
            layer: Layer::Tree(rootfs_dir),
            entrypoint: &["/bin/sh"],
        },
        &busybox,
    )?;
    Ok((pause, busybox))
}

/// `cargo xtask cri-images`: the CRI test's images, for running that test alone; prints
/// the variables to set.
pub(crate) fn cri_images() -> Result {
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let init = dist::build_init()?;
    let (pause, busybox) = write_cri_images(&init, &rootfs_dir)?;
    println!("PEAPOD_PAUSE_IMAGE={}", pause.display());
    println!("PEAPOD_BUSYBOX_IMAGE={}", busybox.display());
    println!("PEAPOD_INIT={}", init.display());
    Ok(())
}
