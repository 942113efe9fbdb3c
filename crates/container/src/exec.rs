//! Executing the entrypoint, with the shell's exit statuses when that fails.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::{ChildFailure, ContainerConfig, DEFAULT_PATH};

/// Marks every descriptor above 2 close-on-exec, so nothing the runtime (or its caller) had
/// open reaches the container. The channel to the parent stays usable until the exec itself.
fn close_inherited_fds() -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd instead.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd: i32 = match entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            Some(fd) if fd > 2 => fd,
            _ => continue,
        };
        // SAFETY: F_SETFD on a descriptor number only changes its flags; a stale number fails
        // with EBADF, which is harmless.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

fn execve(path: &CStr, config: &ContainerConfig) -> Errno {
    match nix::unistd::execve(path, &config.args, &config.env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn failure(exit_code: i32, message: String) -> ChildFailure {
    ChildFailure {
        stage: "exec".to_owned(),
        message,
        exit_code,
    }
}

/// Classifies a failed `execve` of `shown` the way shells do: 127 when there is no such file,
/// 126 when there is one that cannot be executed.
fn exec_failure(shown: &str, errno: Errno) -> ChildFailure {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => failure(
            127,
            format!("{shown}: no such file or directory in the container"),
        ),
        Errno::EACCES | Errno::EPERM | Errno::EISDIR | Errno::ENOEXEC => failure(
            126,
            format!("{shown}: cannot execute in the container: {}", errno.desc()),
        ),
        other => failure(125, format!("{shown}: exec failed: {}", other.desc())),
    }
}

/// Execs `config.args[0]`, looked up in the container's `PATH` when it has no slash (as
/// `execvp` does, but with the container's environment). Returns only on failure.
pub(crate) fn exec(config: &ContainerConfig) -> ChildFailure {
    if let Err(e) = close_inherited_fds() {
        return failure(125, format!("cannot close inherited descriptors: {e}"));
    }
    let program = &config.args[0];
    let name = program.to_string_lossy().into_owned();
    if program.as_bytes().contains(&b'/') {
        return exec_failure(&name, execve(program, config));
    }
    let path_var = config.path_var.as_deref().unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(&name);
        let Ok(c_candidate) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        match execve(&c_candidate, config) {
            Errno::ENOENT | Errno::ENOTDIR => continue,
            Errno::EACCES => denied = Some(candidate.display().to_string()),
            other => return exec_failure(&candidate.display().to_string(), other),
        }
    }
    match denied {
        Some(path) => exec_failure(&path, Errno::EACCES),
        None => failure(
            127,
            format!("{name}: command not found in the container (PATH={path_var})"),
        ),
    }
}
