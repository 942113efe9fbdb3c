//! Starting the child: fork, prepare the child's process state, exec.
//!
//! Everything between `fork` and `execve` runs in the child on raw system
//! calls only: no allocation, no locks, no `std`. That keeps it correct even
//! when an embedding program has other threads, whose locks the child would
//! otherwise inherit in an unknown state.

use crate::argv::CStrArray;
use crate::diag::Line;
use crate::error::{push_errno, Error};
use crate::signals::SavedSignals;
use crate::sys::{self, errno};

/// The search path used when the environment has no `PATH`.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit status of the child when the command does not exist.
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit status of the child when the command exists but cannot be run.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status of the child when preparing to exec failed.
const EXIT_SETUP_FAILED: u8 = 1;

/// Starts `command` (its `argv`; `argv[0]` is looked up in `PATH` unless
/// it contains a slash) with environment `env`, and returns its pid.
///
/// The child gets its own process group and, if standard input is a
/// terminal, becomes the terminal's foreground group, so that an
/// interactive shell run under the init gets job control and `^C` reaches
/// it. Its signal mask and `SIGTTIN`/`SIGTTOU` actions are restored from
/// `saved`, and every descriptor above 2 is closed, so nothing the init
/// inherited leaks into the command.
///
/// If the command cannot be executed, the child prints one line to standard
/// error and exits with 127 (not found) or 126 (found but not executable),
/// as shells do; the caller sees that as the child's exit status.
pub fn spawn(
    command: CStrArray<'_>,
    env: CStrArray<'_>,
    saved: &SavedSignals,
) -> Result<u32, Error> {
    if command.is_empty() {
        return Err(Error::new("starting the command", errno::EINVAL));
    }
    // SAFETY: the child only issues raw system calls and writes to a stack
    // buffer until it execs or exits (see `child`).
    let pid = unsafe { sys::fork() }.map_err(|e| Error::new("forking the child", e))?;
    if pid == 0 {
        child(command, env, saved);
    }
    // The child does the same; doing it here too closes the window in which
    // a signal forwarded to the group would find no group yet. Failing with
    // EACCES just means the child has already exec'd, after doing it itself.
    let _ = sys::setpgid(pid, pid);
    Ok(pid as u32)
}

/// The child side of `spawn`; never returns.
fn child(command: CStrArray<'_>, env: CStrArray<'_>, saved: &SavedSignals) -> ! {
    if let Err(e) = sys::setpgid(0, 0) {
        fail_setup("putting the child in its own process group", e);
    }
    // Errors are expected and harmless here: ENOTTY when stdin is not a
    // terminal, EPERM when it is a terminal of another session. SIGTTOU is
    // still ignored at this point, so a background group may do this.
    let _ = sys::tcsetpgrp(0, sys::getpid());
    if let Err(e) = saved.restore() {
        fail_setup(e.context(), e.raw_os_error());
    }
    close_inherited_fds();
    let e = exec(command, env);
    let mut line = Line::new();
    line.push("peapod-init: ")
        .push(command.get(0).map_or(&b""[..], |c| c.to_bytes()))
        .push(": ");
    let code = if e == errno::ENOENT || e == errno::ENOTDIR {
        line.push("command not found");
        EXIT_NOT_FOUND
    } else {
        push_errno(&mut line, e);
        EXIT_CANNOT_EXECUTE
    };
    line.stderr();
    sys::exit_group(i32::from(code))
}

/// Replaces this process with `target[0]`, run with argv `target[1..]` and `env` (the
/// `--exec` mode). Returns only on failure, after one line on standard error: the exit
/// status, 127 when the program does not exist, 126 when it cannot run.
pub fn replace(target: CStrArray<'_>, env: CStrArray<'_>) -> u8 {
    let (Some(path), argv) = (target.get(0), target.skip(1)) else {
        return EXIT_NOT_FOUND;
    };
    // SAFETY: `path` is NUL-terminated and both arrays are NULL-terminated arrays of C
    // strings (CStrArray's invariant).
    let e = unsafe { sys::execve(path.as_ptr().cast(), argv.as_ptr(), env.as_ptr()) };
    let mut line = Line::new();
    line.push("peapod-init: ").push(path.to_bytes()).push(": ");
    push_errno(&mut line, e);
    line.stderr();
    if e == errno::ENOENT || e == errno::ENOTDIR {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    }
}

fn fail_setup(what: &str, e: i32) -> ! {
    let mut line = Line::new();
    line.push("peapod-init: ").push(what).push(": ");
    push_errno(&mut line, e);
    line.stderr();
    sys::exit_group(i32::from(EXIT_SETUP_FAILED))
}

/// Closes every descriptor above standard error.
fn close_inherited_fds() {
    match sys::close_range(3, u32::MAX) {
        Ok(()) => {}
        // Kernels before 5.9 have no close_range: close one by one up to a
        // generous bound instead.
        Err(_) => {
            for fd in 3..65_536 {
                let _ = sys::close(fd);
            }
        }
    }
}

/// Executes `command` like `execvp`, returning the errno that best explains
/// the failure if no candidate could be executed.
fn exec(command: CStrArray<'_>, env: CStrArray<'_>) -> i32 {
    let Some(name) = command.get(0) else {
        return errno::EINVAL;
    };
    let name_bytes = name.to_bytes();
    if name_bytes.contains(&b'/') {
        // SAFETY: both arrays are NULL-terminated arrays of C strings
        // (CStrArray's invariant) and `name` is NUL-terminated.
        return unsafe { sys::execve(name.as_ptr().cast(), command.as_ptr(), env.as_ptr()) };
    }
    if name_bytes.is_empty() {
        return errno::ENOENT;
    }
    let path = env.var(b"PATH").unwrap_or(DEFAULT_PATH);
    let mut buf = [0u8; 4096];
    // As execvp does: permission problems are reported only if no directory
    // had an executable candidate, and "not found" wins otherwise.
    let mut result = errno::ENOENT;
    for dir in path.split(|&b| b == b':') {
        // An empty entry means the current directory.
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let len = dir.len() + 1 + name_bytes.len();
        if len + 1 > buf.len() {
            result = errno::ENAMETOOLONG;
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..len].copy_from_slice(name_bytes);
        buf[len] = 0;
        // SAFETY: `buf` holds a NUL-terminated path; both arrays are
        // NULL-terminated arrays of C strings (CStrArray's invariant).
        let e = unsafe { sys::execve(buf.as_ptr(), command.as_ptr(), env.as_ptr()) };
        match e {
            errno::ENOENT | errno::ENOTDIR | errno::ELOOP | errno::ENAMETOOLONG => {}
            errno::EACCES => result = errno::EACCES,
            // The file exists but cannot be run (ENOEXEC, ETXTBSY, ...):
            // trying further directories would only hide the real problem.
            other => return other,
        }
    }
    result
}
