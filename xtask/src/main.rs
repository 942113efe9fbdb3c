//! `cargo xtask`: the project's tasks, with nothing but cargo and the host's tools.
//!
//! - `cargo xtask run [-- PEAPOD-ARGS]`: builds peapod, makes the default rootfs, and shows a
//!   container's isolation side by side with the host (or runs `peapod PEAPOD-ARGS`).
//! - `cargo xtask test`: formatting, clippy, and every test.
//! - `cargo xtask rootfs [DIR]`: assembles the default rootfs, with no network.
//! - `cargo xtask bench`: whole-process timings next to the floor `unshare` sets.
//! - `cargo xtask dist`: release `peapod`, the static `peapod-init` and the pause image
//!   `pause.tar` in `target/dist/`.
//! - `cargo xtask vm [FILTER]`: the cgroup tests in a pure cgroup-v2 machine (qemu);
//!   `vm --systemd [--hybrid] [FILTER]`: the systemd driver's, systemd as PID 1 (on cgroup v1
//!   hybrid with `--hybrid`).

mod bench;
mod demo;
mod dist;
mod image;
mod rootfs;
mod test;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = (), E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "run" => demo::run(rest),
        "test" => test::run(rest),
        "rootfs" => rootfs::run(rest),
        "bench" => bench::run(rest),
        "dist" => dist::run(rest),
        "vm" => vm::run(rest),
        // The images of the CRI test (crates/cri-tests), which `test` also writes.
        "cri-images" => test::cri_images(),
        // Internal: the orphan generator of `bench init`.
        "orphan-burst" => bench::orphan_burst(rest),
        "help" | "-h" | "--help" => {
            println!(
                "usage: cargo xtask <run [-- PEAPOD-ARGS] | test | rootfs [DIR] | bench | dist | vm [--systemd [--hybrid]] [FILTER]>"
            );
            Ok(())
        }
        other => Err(format!(
            "unknown task {other:?} (try: run, test, rootfs, bench, dist, vm)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, failing with its description when it does not succeed.
fn run_status(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({status})"))
    }
}

/// Builds the release `peapod` binary and returns its path.
/// Builds `target/release/peapod` with the static peapod-init beside it, where peapod
/// looks for it (to exec entrypoints through, and for `run --init`).
fn build_peapod() -> Result<PathBuf> {
    run_status(cargo().args(["build", "--quiet", "--release", "-p", "peapod"]))?;
    // `peapod-oci` again, without the systemd driver (zbus) and the image store: it hands
    // what needs them to `peapod` (see its main.rs). Features are per package, so this is a
    // build of its own, which replaces the one above: static for musl where that target is
    // installed (no libseccomp, ~1 MB peak RSS instead of ~2.8), else for glibc as before.
    let oci = target_dir().join("release/peapod-oci");
    match dist::build_oci_musl() {
        Ok(musl) => dist::replace(&musl, &oci)?,
        Err(why) => {
            println!("xtask: peapod-oci built for glibc, not musl: {why}");
            run_status(dist::oci_build().args(["--features", "seccomp-compile"]))?;
        }
    }
    dist::check_loads(&oci)?;
    let init = dist::build_init()?;
    let beside = target_dir().join("release/peapod-init");
    std::fs::copy(&init, &beside).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            init.display(),
            beside.display()
        )
    })?;
    Ok(target_dir().join("release/peapod"))
}
