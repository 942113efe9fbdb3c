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
    // RELR relocations (glibc 2.36, which ld.so checks through the GLIBC_ABI_DT_RELR version
    // the linker adds): the ~2400 relative relocations of a PIE in ~1 kB instead of 57 kB,
    // keeping ASLR.
    println!("cargo:rustc-link-arg-bin=peapod-oci=-Wl,-z,pack-relative-relocs");
}
