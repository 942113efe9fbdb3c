//! `cargo xtask test`: what CI runs. Formatting, clippy with warnings as errors, then every
//! unit and integration test with the default rootfs in place.

use crate::{cargo, dist, rootfs, run_status, Result};

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
    run_status(
        cargo()
            .args(["test", "--workspace"])
            .args(args)
            .env("PEAPOD_TEST_ROOTFS", &rootfs_dir)
            .env("PEAPOD_INIT_BIN", &init)
            // What peapod execs entrypoints through (and `run --init` mounts).
            .env("PEAPOD_INIT", &init),
    )
}
