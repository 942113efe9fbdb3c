//! The `peapod-init` binary: command-line front end of the library.
//!
//! Built normally (dev, test and release profiles) it is an ordinary `std`
//! program. Built statically for distribution,
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist \
//!     -p peapod-init --target x86_64-unknown-linux-gnu
//! ```
//!
//! it is freestanding: no `std`, no libc, its own entry point, linked
//! statically without a C library (see build.rs and freestanding.rs). Both
//! forms run the same `real_main` on the same library code; only the way
//! `argv`/`envp` arrive and the process exits differ.

#![cfg_attr(all(target_feature = "crt-static", panic = "abort"), no_std, no_main)]

#[cfg(all(target_feature = "crt-static", panic = "abort"))]
mod freestanding;

// The freestanding form has no unwinder, and build.rs links every static
// build without a C library, so a static build must abort on panic.
#[cfg(all(target_feature = "crt-static", not(panic = "abort")))]
compile_error!("a static peapod-init is freestanding and needs panic = \"abort\": build it with --profile dist");

use peapod_init::diag::write_all;
use peapod_init::options::{self, Invocation, HELP, USAGE};
use peapod_init::CStrArray;

/// Exit status for a command line that cannot be used.
const EXIT_USAGE: u8 = 2;
/// Exit status when the init itself fails (e.g. cannot fork).
const EXIT_INIT_FAILED: u8 = 1;

/// Parses the command line and runs the requested mode; returns the exit
/// status.
fn real_main(argv: CStrArray<'_>, envp: CStrArray<'_>) -> u8 {
    let result = match options::parse(argv) {
        Ok(Invocation::Help) => {
            write_all(1, USAGE.as_bytes());
            write_all(1, HELP.as_bytes());
            return 0;
        }
        Ok(Invocation::Version) => {
            write_all(
                1,
                concat!("peapod-init ", env!("CARGO_PKG_VERSION"), "\n").as_bytes(),
            );
            return 0;
        }
        Ok(Invocation::Run(opts, command)) => peapod_init::run(&opts, command, envp),
        Ok(Invocation::Pause(opts)) => peapod_init::pause(&opts),
        Ok(Invocation::Exec(target)) => return peapod_init::spawn::replace(target, envp),
        Ok(Invocation::Watch(pid, then)) => match peapod_init::watch(pid) {
            Ok(()) => return peapod_init::spawn::replace(then, envp),
            Err(e) => Err(e),
        },
        Err(usage) => {
            usage.report();
            return EXIT_USAGE;
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            e.report();
            EXIT_INIT_FAILED
        }
    }
}

#[cfg(not(target_feature = "crt-static"))]
fn main() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStringExt;

    // std ignored SIGPIPE before main; the command must not inherit that.
    if let Err(e) = peapod_init::signals::restore_default_sigpipe() {
        e.report();
    }

    // Arguments and environment strings come from the kernel as C strings,
    // so they cannot contain NUL bytes and `CString::new` cannot fail.
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.into_vec()).ok())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    let null_terminated = |strings: &[CString]| {
        let mut ptrs: Vec<*const u8> = strings.iter().map(|s| s.as_ptr().cast()).collect();
        ptrs.push(std::ptr::null());
        ptrs
    };
    let (arg_ptrs, env_ptrs) = (null_terminated(&args), null_terminated(&env));
    // SAFETY: both pointer arrays are null-terminated and point into
    // `args`/`env`, which outlive the call.
    let code = unsafe {
        real_main(
            CStrArray::from_raw(arg_ptrs.as_ptr()),
            CStrArray::from_raw(env_ptrs.as_ptr()),
        )
    };
    std::process::exit(i32::from(code));
}
