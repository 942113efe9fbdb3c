//! `peapod-oci`: the runtime binary for OCI clients (containerd's runc shim, podman and
//! conmon, cri-o), as small as the container lifecycle allows. It does runc's `create`,
//! `start`, `state`, `kill`, `delete` and `run` of a bundle (`run.rs`) itself, with the same
//! flags, library calls and output as `peapod`; every other command, and anything it does not parse (`--help`, a flag
//! it lacks, a mistake), it hands to `peapod` beside it by `execve` with the same arguments,
//! so that clients told to use `peapod-oci` get all of `peapod`'s commands and errors.
//!
//! Why a second binary: `peapod` links the image store, the registry front, pods, CNI,
//! netlink, YAML manifests, clap's parser and the completion and man-page generators; the
//! clients exec the runtime several times per container, so its size and peak RSS are paid
//! on every call. Nothing here names those, so the linker leaves them out. More weights
//! stay out: serde_path_to_error's second copy of the spec's deserialiser (a `config.json`
//! that does not parse goes to `peapod`, which names the bad field), the deserialisers of
//! other platforms' sections (`solaris`, `windows`, `vm`, `zos`: a `config.json` with one
//! goes to `peapod`), the unwind tables (`peapod-oci.ld`), and, when built
//! without default features as `cargo xtask dist` builds it, zbus (feature `systemd`:
//! `create` and `delete` of the systemd driver's containers go to `peapod`) and the image
//! store (feature `image-store`: `delete` of a container of an image goes to `peapod`).
//!
//! `cargo xtask dist` builds it static for musl where that target is installed: glibc's
//! shared libraries (libc.so, ld.so, libgcc_s, libseccomp) were 1.8 MB of its 2.8 MB peak
//! RSS. That build has no libseccomp (feature `seccomp-compile` off; Debian's is for glibc):
//! a seccomp profile's filter comes from the compiled-filter cache in the state root, and a
//! `create` or `run` of a profile not there goes to `peapod`, which compiles and caches it
//! (once per profile; containerd and podman pass the same profile for every container).

#[path = "../../globals.rs"]
mod globals;
#[path = "../../log.rs"]
mod log;
// `out!` is `peapod`'s only.
#[allow(unused_macros, unused_imports)]
#[path = "../../output.rs"]
mod output;
// A `run -d` monitor's command line is `peapod`'s only.
#[allow(dead_code)]
#[path = "../../context.rs"]
mod context;

mod command;
mod run;

/// In the static musl build, dlmalloc rather than musl's malloc: 10-18% less CPU per command
/// (see Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;

use peapod_runtime::bundle::{self, BundleError};
use peapod_runtime::{CreateOptions, Error, Runtime};

use crate::command::Lifecycle;
use crate::output::outln;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let Some((mut global, command)) = command::parse(argv.get(1..).unwrap_or_default()) else {
        hand_over(&argv)
    };
    // Before anything is opened (the log file, the state lock): see the function.
    if let Err(e) = peapod_container::reserve_preserved_fds(command.preserve_fds()) {
        eprintln!("peapod: {e}");
        std::process::exit(125);
    }
    if global.systemd_cgroup && !Runtime::SYSTEMD_DRIVER {
        match command {
            // These make or stop a systemd scope, over D-Bus: `peapod`'s.
            Lifecycle::Create(_)
            | Lifecycle::Run { .. }
            | Lifecycle::Delete { .. }
            | Lifecycle::Finish { .. } => hand_over(&argv),
            // These never talk to systemd: the flag changes nothing for them.
            _ => global.systemd_cgroup = false,
        }
    }
    globals::init_logging(&global);
    let result = globals::runtime(&global).and_then(|rt| run(rt, &global, command, &argv));
    globals::exit(result, &global)
}

/// Runs one lifecycle command, or hands it to `peapod` when what the container is needs
/// `peapod` (a docker-style `run -d` container, a container with a network of its own).
fn run(
    rt: Runtime,
    global: &globals::GlobalArgs,
    command: Lifecycle,
    argv: &[OsString],
) -> Result<i32, Error> {
    let id = match &command {
        // A new container's id, taken as it is (as `peapod run` takes it).
        Lifecycle::Run { args, .. } => args.id.clone(),
        command => rt.resolve(command.id())?,
    };
    match command {
        Lifecycle::Create(args) => {
            let (rt, bundle, spec) = ready_to_create(rt, &args.bundle, argv)?;
            let options = CreateOptions {
                fifo: true,
                pid_file: args.pid_file,
                preserve_fds: args.preserve_fds,
                no_pivot: args.no_pivot,
                no_new_keyring: args.no_new_keyring,
                console_socket: args.console_socket,
                ..CreateOptions::default()
            };
            match rt.create(&id, &spec, &bundle, &options) {
                Ok(created) => {
                    created.detach();
                }
                // A seccomp profile this build (musl, no libseccomp) finds no filter of.
                Err(e) if e.needs_seccomp_compiler() => {
                    tracing::debug!("the seccomp profile is not cached: peapod compiles it");
                    hand_over(argv)
                }
                Err(e) => return Err(e),
            }
        }
        // docker's `start` of a `run -d` container makes it again under a monitor.
        Lifecycle::Start { .. } if rt.is_detached_run(&id) => hand_over(argv),
        Lifecycle::Start { .. } => rt.start(&id)?,
        Lifecycle::State { .. } => outln!("{}", to_json(&rt.state(&id)?)?),
        Lifecycle::Kill { signal, all, .. } => {
            let signal = match &signal {
                Some(signal) => peapod_runtime::parse_signal(signal)?,
                None => rt.stop_signal(&id)?,
            };
            rt.kill(&id, signal, all)?;
        }
        // Its network goes with it, or its systemd scope or image layers, which this build
        // cannot stop or release.
        Lifecycle::Delete { .. }
            if peapod_pod::has_container_network(&rt.root, &id)
                || (!Runtime::SYSTEMD_DRIVER && matches!(rt.systemd_unit(&id), Ok(Some(_))))
                || (!Runtime::IMAGE_STORE && matches!(rt.has_image_layers(&id), Ok(true))) =>
        {
            hand_over(argv)
        }
        Lifecycle::Delete { force, .. } => rt.delete(&id, force)?,
        Lifecycle::Run { args, detach } => return run::run(rt, global, args, detach, argv),
        // A foreground `run --net` of `peapod`'s ends in `peapod finish`, which removes the
        // network; one of a bundle has none.
        Lifecycle::Finish { .. } if peapod_pod::has_container_network(&rt.root, &id) => {
            hand_over(argv)
        }
        Lifecycle::Finish { .. } => return rt.finish(&id),
    }
    Ok(0)
}

/// What `create` and `run` do first: the runtime as a new container needs it, what killed
/// `peapod` processes left reaped (pods and networks are `peapod`'s commands), and the
/// bundle's spec read; one that does not parse goes to `peapod`, which names the field.
fn ready_to_create(
    rt: Runtime,
    bundle: &std::path::Path,
    argv: &[OsString],
) -> Result<(Runtime, std::path::PathBuf, oci_spec::runtime::Spec), Error> {
    let rt = rt.with_entrypoint_guard()?.with_seccomp_cache();
    rt.reap_leftovers();
    let (bundle, spec) = match bundle::load_untracked(bundle) {
        Err(BundleError::Parse { .. }) => hand_over(argv),
        loaded => loaded.map_err(Error::runtime)?,
    };
    Ok((rt, bundle, spec))
}

/// `value` as pretty JSON, as `peapod` prints it.
fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|e| Error::runtime(anyhow::anyhow!(e)))
}

/// `peapod`, installed beside this binary.
fn peapod_beside() -> std::path::PathBuf {
    context::installed_exe()
        .map(|exe| exe.with_file_name("peapod"))
        .unwrap_or_else(|| "peapod".into())
}

/// Execs `peapod` beside this binary with the same arguments; returns only to exit 125 with
/// a line saying why it could not.
fn hand_over(argv: &[OsString]) -> ! {
    let peapod = peapod_beside();
    let e = std::process::Command::new(&peapod)
        .arg0("peapod")
        .args(argv.get(1..).unwrap_or_default())
        .exec();
    eprintln!(
        "peapod: error: {}: cannot run {}: {e} (peapod-oci hands every command but create, \
         start, state, kill, delete, run of a bundle and finish to peapod, installed beside \
         it)",
        argv.get(1..)
            .unwrap_or_default()
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        peapod.display()
    );
    std::process::exit(125)
}
