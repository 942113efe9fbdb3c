//! Link options of the release `peapod-oci`, the binary OCI clients exec on every call (see
//! its main.rs): measured in docs/benchmarks.md.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Release builds only (and profiles inheriting release, such as `dist`): tests and
    // debuggers keep the ordinary link.
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    // No binary-search table of the unwind info: with `panic = "abort"` nothing unwinds;
    // only a backtrace (RUST_BACKTRACE) would read it, and prints no frames without it.
    println!("cargo:rustc-link-arg-bin=peapod-oci=-Wl,--no-eh-frame-hdr");
    // Without the unwind tables themselves (`.eh_frame`, `.gcc_except_table`), unreadable
    // without that table and never needed: 160 kB of the musl build's 1.5 MB. peapod-oci.ld
    // says why a compiler flag does not do it.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peapod-oci.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bin=peapod-oci=-T");
    println!("cargo:rustc-link-arg-bin=peapod-oci={}", script.display());
    // RELR relocations: the ~2400 relative relocations of a PIE in ~1 kB instead of 57 kB,
    // keeping ASLR. Only where the glibc built against has a loader that reads them (2.36;
    // the linker adds the GLIBC_ABI_DT_RELR version, which an older one refuses).
    // A static musl build relocates itself, with musl's own start code, which reads RELR
    // since musl 1.2.4 (Rust's bundled musl is 1.2.5).
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if env == "musl" || glibc_version().is_some_and(|version| version >= (2, 36)) {
        println!("cargo:rustc-link-arg-bin=peapod-oci=-Wl,-z,pack-relative-relocs");
    }
}

/// The version of this system's glibc, as `getconf GNU_LIBC_VERSION` says it (`glibc 2.36`);
/// `None` when it says nothing of the kind.
fn glibc_version() -> Option<(u32, u32)> {
    let out = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
