//! The command lines by which `peapod` runs itself again with the same global flags (the end
//! of a foreground run, a `run -d` monitor); the flags themselves are in `globals.rs`.

use std::ffi::{CString, OsString};
use std::path::PathBuf;

use peapod_runtime::Runtime;

use crate::globals::{GlobalArgs, LogFormat};

/// The command line that ends a foreground run of container `id` once `peapod-init --watch`
/// has waited for it: this program again, with the same global flags, `finish ID`. `None`
/// when this program cannot name itself (the run then waits itself).
pub(crate) fn finish_command(rt: &Runtime, global: &GlobalArgs, id: &str) -> Option<Vec<CString>> {
    let mut args = this_program(rt, global)?;
    args.extend(["finish".into(), id.into()]);
    to_cstrings(args)
}

/// The command line a `run -d` container's monitor execs (see
/// `peapod_runtime::DetachedLog::exec`): `peapod monitor` with the same global flags and
/// the log's limits; the runtime appends the container's id, PID and pipes.
pub(crate) fn monitor_command(
    rt: &Runtime,
    global: &GlobalArgs,
    limits: peapod_runtime::logfile::LogLimits,
    remove: bool,
) -> Option<Vec<CString>> {
    let mut args = this_program(rt, global)?;
    args.push("monitor".into());
    args.push(format!("--max-size={}", limits.max_size).into());
    args.push(format!("--max-file={}", limits.max_files).into());
    if remove {
        args.push("--rm".into());
    }
    to_cstrings(args)
}

fn to_cstrings(args: Vec<OsString>) -> Option<Vec<CString>> {
    args.into_iter()
        .map(|arg| CString::new(arg.into_encoded_bytes()).ok())
        .collect()
}

/// Where this program is installed. Where it runs from a sealed copy of itself (no
/// `peapod-init` found for the entrypoint guard), its own path is a memfd's
/// (`/memfd:peapod (deleted)`), and the path it was started by (`argv[0]`, which containerd
/// and podman give whole) says where it is installed, when that is a whole path.
pub(crate) fn installed_exe() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .filter(|exe| !exe.as_os_str().as_encoded_bytes().starts_with(b"/memfd:"))
        .or_else(|| {
            std::env::args_os()
                .next()
                .map(PathBuf::from)
                .filter(|arg0| arg0.is_absolute())
        })
}

/// This program and the global flags that give another run of it the same runtime.
fn this_program(rt: &Runtime, global: &GlobalArgs) -> Option<Vec<OsString>> {
    let exe = installed_exe()?;
    let mut args: Vec<OsString> = vec![exe.into(), "--root".into(), rt.root.clone().into()];
    args.push(format!("--rootless={}", rt.rootless).into());
    if let Some(log) = &global.log {
        args.extend(["--log".into(), log.clone().into()]);
    }
    if global.log_format == LogFormat::Json {
        args.push("--log-format=json".into());
    }
    if global.debug {
        args.push("--debug".into());
    }
    Some(args)
}
