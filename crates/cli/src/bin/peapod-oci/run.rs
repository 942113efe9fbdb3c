//! runc's `run` of a bundle (`run [-d] [--bundle DIR] [--pid-file F] [--console-socket S]
//! [--no-new-keyring] ID`), as `peapod run --bundle` does it. Detached: `create` and `start`
//! in one process, returning once the container runs with the caller's stdio, as `crun run
//! -d` does; scripts and benchmarks that start many containers at once pay for this small
//! binary, not for `peapod`. In the foreground: signals forwarded, a terminal relayed, the
//! exit status waited for and returned, the container deleted at the end; a container that
//! keeps running is waited for by `peapod-init --watch`, which then execs this binary's
//! `finish`.

use std::ffi::OsString;

use peapod_runtime::{CreateOptions, Error, Runtime};

use crate::command::CreateArgs;
use crate::globals::GlobalArgs;

/// Runs the bundle's container `args.id` detached (see the module doc).
pub(crate) fn detached(rt: Runtime, args: CreateArgs, argv: &[OsString]) -> Result<i32, Error> {
    let (rt, bundle, spec) = crate::ready_to_create(rt, &args.bundle, argv)?;
    let options = CreateOptions {
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        no_new_keyring: args.no_new_keyring,
        ..CreateOptions::default()
    };
    match rt.run_detached(&args.id, &spec, &bundle, options) {
        // A seccomp profile this build (musl, no libseccomp) finds no filter of.
        Err(e) if e.needs_seccomp_compiler() => crate::hand_over(argv),
        result => result.map(|()| 0),
    }
}

/// Runs the bundle's container `args.id` in the foreground; its exit status.
pub(crate) fn foreground(
    rt: Runtime,
    global: &GlobalArgs,
    args: CreateArgs,
    argv: &[OsString],
) -> Result<i32, Error> {
    let (rt, bundle, spec) = crate::ready_to_create(rt, &args.bundle, argv)?;
    let options = CreateOptions {
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        no_new_keyring: args.no_new_keyring,
        ..CreateOptions::default()
    };
    let then_finish = crate::context::finish_command(&rt, global, &args.id);
    match rt.run_foreground(&args.id, &spec, &bundle, options, then_finish.as_deref()) {
        // A seccomp profile this build (musl, no libseccomp) finds no filter of: nothing was
        // made yet.
        Err(e) if e.needs_seccomp_compiler() => crate::hand_over(argv),
        result => result,
    }
}
