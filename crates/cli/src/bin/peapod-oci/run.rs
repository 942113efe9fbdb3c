//! runc's `run --detach` of a bundle (`run -d [--bundle DIR] [--pid-file F]
//! [--console-socket S] [--no-new-keyring] ID`): `create` and `start` in one process, as
//! `peapod run -d --bundle` does them, returning once the container runs with the caller's
//! stdio, as `crun run -d` does. Scripts and benchmarks that start many containers at once
//! pay for this small binary, not for `peapod`. A foreground `run` (signals forwarded, a
//! terminal relayed, the exit status waited for) is `peapod`'s: its code would weigh here.

use std::ffi::OsString;

use peapod_runtime::{CreateOptions, Error, Runtime};

use crate::command::CreateArgs;

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
