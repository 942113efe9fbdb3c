//! Link settings for the freestanding form of the `peapod-init` binary.
//!
//! A static build (`-C target-feature=+crt-static`, with the `dist`
//! profile for `panic = "abort"`) makes the binary `#![no_std]` and
//! `#![no_main]` with its own `_start` (see
//! src/bin/peapod-init/freestanding.rs). It must then be linked without the
//! C start files and without libc, as a static, non-PIE executable: the
//! entry point does not relocate itself, so the addresses the linker fixes
//! must be the ones used at run time. Other builds (dev, test, release)
//! produce an ordinary `std` binary and need nothing here.
//!
//! The panic strategy is a profile setting that build scripts cannot see
//! (`CARGO_CFG_PANIC` always says "unwind"), which is why the switch is the
//! `crt-static` target feature: it reaches both this script and the code.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") && os == "linux" {
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--gc-sections",
            "-Wl,--build-id=none",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
