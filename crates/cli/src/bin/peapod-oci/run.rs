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

/// Runs the bundle's container `args.id`, detached or in the foreground (see the module
/// doc); the status to exit with: the container's own in the foreground, else 0.
pub(crate) fn run(
    rt: Runtime,
    global: &GlobalArgs,
    args: CreateArgs,
    detach: bool,
    argv: &[OsString],
) -> Result<i32, Error> {
    let (rt, bundle, spec) = crate::ready_to_create(rt, &args.bundle, argv)?;
    let options = CreateOptions {
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        no_new_keyring: args.no_new_keyring,
        ..CreateOptions::default()
    };
    let ran = match detach {
        true => rt
            .run_detached(&args.id, &spec, &bundle, options)
            .map(|()| 0),
        false => {
            let then_finish = crate::context::finish_command(&rt, global, &args.id);
            rt.run_foreground(&args.id, &spec, &bundle, options, then_finish.as_deref())
        }
    };
    match ran {
        // A seccomp profile this build (musl, no libseccomp) finds no filter of: nothing was
        // made yet.
        Err(e) if e.needs_seccomp_compiler() => crate::hand_over(argv),
        ran => ran,
    }
}
