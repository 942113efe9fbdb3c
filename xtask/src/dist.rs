//! `cargo xtask dist`: the release artifacts in `target/dist/`: `peapod`, `peapod-oci` (the
//! binary OCI clients exec: static for musl where that target is installed, see
//! [`build_oci_musl`]) and `peapod-pull` (release builds),
//! `peapod-init`, static, stripped and freestanding (no libc), ready to be bind-mounted into
//! any image, and `pause.tar`, an OCI image archive of that init as `/pause` (entrypoint
//! `/pause -P`), for containerd's `sandbox_image` (see docs/kubernetes.md).

use std::path::{Path, PathBuf};

use crate::image::{write_archive, Image, Layer};
use crate::{build_peapod, cargo, run_status, target_dir, Result};

/// The name the pause image imports as.
pub(crate) const PAUSE_IMAGE: &str = "localhost/peapod/pause:latest";

pub(crate) fn run(_args: &[String]) -> Result {
    let init = build_init()?;
    let peapod = build_peapod()?;
    let dist = target_dir().join("dist");
    std::fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
    // `peapod pull` (and `peapod run IMAGE`) exec `peapod-pull` from beside `peapod`.
    let pull = peapod.with_file_name("peapod-pull");
    // containerd and podman exec `peapod-oci`, which hands all but the lifecycle to `peapod`.
    let oci = peapod.with_file_name("peapod-oci");
    for (from, name) in [
        (&init, "peapod-init"),
        (&peapod, "peapod"),
        (&oci, "peapod-oci"),
        (&pull, "peapod-pull"),
    ] {
        let to = dist.join(name);
        std::fs::copy(from, &to).map_err(|e| format!("cannot copy to {}: {e}", to.display()))?;
        let size = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
        println!("{} ({size} bytes)", to.display());
    }
    let pause = dist.join("pause.tar");
    write_pause_image(&init, &pause)?;
    let size = std::fs::metadata(&pause).map(|m| m.len()).unwrap_or(0);
    println!("{} ({PAUSE_IMAGE}, {size} bytes)", pause.display());
    // Man pages and shell completions, derived from the parser's own definitions.
    let man = dist.join("man");
    run_status(std::process::Command::new(&peapod).arg("man").arg(&man))?;
    println!("{}/ (man pages)", man.display());
    let completions = dist.join("completions");
    std::fs::create_dir_all(&completions)
        .map_err(|e| format!("cannot create {}: {e}", completions.display()))?;
    for (shell, file) in [
        ("bash", "peapod.bash"),
        ("zsh", "_peapod"),
        ("fish", "peapod.fish"),
    ] {
        let out = std::process::Command::new(&peapod)
            .args(["completion", shell])
            .output()
            .map_err(|e| format!("cannot run peapod completion {shell}: {e}"))?;
        if !out.status.success() {
            return Err(format!("peapod completion {shell} failed"));
        }
        let to = completions.join(file);
        std::fs::write(&to, out.stdout)
            .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    println!("{}/ (bash, zsh, fish)", completions.display());
    Ok(())
}

/// Runs the release `peapod-oci` once (`state` of a container that does not exist, in a
/// state root of its own): it is linked with options of its own (crates/cli/build.rs: RELR
/// relocations, which need glibc 2.36's loader, or for the static musl build musl's start
/// code, which relocates it before `main`), so this checks that this system runs it and that
/// it answers as runc does: status 1, "does not exist".
pub(crate) fn check_loads(oci: &Path) -> Result {
    let root = std::env::temp_dir().join(format!("peapod-oci-check-{}", std::process::id()));
    let out = std::process::Command::new(oci)
        .arg("--root")
        .arg(&root)
        .args(["state", "peapod-oci-check"])
        .output();
    let _ = std::fs::remove_dir_all(&root);
    let out = out.map_err(|e| format!("cannot run {}: {e}", oci.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) || !stderr.contains("does not exist") {
        return Err(format!(
            "{} does not run here ({}): {stderr}",
            oci.display(),
            out.status
        ));
    }
    Ok(())
}

/// Builds the release `peapod-oci` for musl (`ARCH-unknown-linux-musl`): static, without
/// libseccomp (Debian's is for glibc), which the binary replaces with the compiled-filter
/// cache and hands a profile not in it to `peapod` (crates/seccomp, feature `compile`).
/// Returns its path, or why it could not be built (the target not installed: `rustup
/// target add`; CI machines may lack it).
pub(crate) fn build_oci_musl() -> Result<PathBuf> {
    let host = host_triple()?;
    let arch = host.split('-').next().unwrap_or("x86_64");
    let target = format!("{arch}-unknown-linux-musl");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = std::process::Command::new(rustc)
        .args(["--print", "target-libdir", "--target", &target])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    let installed = std::fs::read_dir(&libdir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
    });
    if !installed {
        return Err(format!(
            "the {target} target is not installed (rustup target add {target})"
        ));
    }
    let mut build = oci_build();
    build.args(["--target", &target]);
    // The package's other binaries' C dependencies (zstd) are compiled for the target too,
    // though peapod-oci links none of them: the host's C compiler does where musl-gcc is
    // missing.
    let cc = format!("CC_{}", target.replace('-', "_"));
    let musl_gcc = std::process::Command::new("musl-gcc")
        .arg("--version")
        .output();
    if std::env::var_os(&cc).is_none() && musl_gcc.is_err() {
        build.env(&cc, "cc");
    }
    run_status(&mut build).map_err(|e| format!("the musl build failed: {e}"))?;
    Ok(target_dir().join(target).join("release/peapod-oci"))
}

/// The release build of `peapod-oci` alone, without the default features of its package: the
/// systemd driver (zbus) and the image store, whose commands it hands to `peapod` (see its
/// main.rs). Features are per package, so this is a build of its own.
pub(crate) fn oci_build() -> std::process::Command {
    let mut build = cargo();
    build.args(["build", "--quiet", "--release", "-p", "peapod"]);
    build.args(["--no-default-features", "--bin", "peapod-oci"]);
    build
}

/// Puts a copy of `from` at `to`, replacing the file there (not writing into it: cargo's
/// outputs are hard links to its own copies).
pub(crate) fn replace(from: &Path, to: &Path) -> Result {
    match std::fs::remove_file(to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot remove {}: {e}", to.display()))
        }
        _ => {}
    }
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// The pause image: one layer holding the static init as `/pause`, run as `/pause -P` (its
/// pause mode: sleep until a signal, reap, exit 0 on SIGTERM/SIGINT).
pub(crate) fn write_pause_image(init: &Path, out: &Path) -> Result {
    write_archive(
        &Image {
            name: PAUSE_IMAGE,
            layer: Layer::File {
                from: init,
                at: "pause",
            },
            entrypoint: &["/pause", "-P"],
        },
        out,
    )
}

/// Builds the static `peapod-init` and returns its path (under `target/<host>/dist/`).
///
/// `crt-static` is what switches the crate to its freestanding form (see its build.rs); an
/// explicit `--target` keeps that flag away from build scripts and proc macros.
pub(crate) fn build_init() -> Result<PathBuf> {
    let host = host_triple()?;
    run_status(
        cargo()
            .args(["build", "--quiet", "--profile", "dist", "-p", "peapod-init"])
            .args(["--target", &host])
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
    )?;
    Ok(target_dir().join(host).join("dist/peapod-init"))
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV did not name the host triple".to_owned())
}
