//! Executing the entrypoint, with the shell's exit statuses when that fails.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::config::Command;
use crate::{ChildFailure, DEFAULT_PATH};

/// Marks every descriptor from `first` on close-on-exec, so nothing the runtime (or its caller) had
/// open reaches the container. The channel to the parent stays usable until the exec itself.
fn close_inherited_fds(first: u32) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    close_range(first, u32::MAX, CLOSE_RANGE_CLOEXEC)
}

/// Closes every descriptor from `first` on except those in `keep`.
pub(crate) fn close_fds_except(first: u32, keep: &[RawFd]) -> std::io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= first)
        .collect();
    keep.sort_unstable();
    let mut from = first;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > from {
            close_range(from, fd - 1, 0)?;
        }
        from = fd.saturating_add(1);
    }
    Ok(())
}

/// Keeps descriptors 3 to 3+`n`-1 for the caller's own, before this process opens anything:
/// each one the caller did not pass is taken by a close-on-exec `/dev/null`, so that no
/// descriptor of the runtime's (the state lock, the exec fifo, the channel) gets a number in
/// the range that `--preserve-fds` lets into the container. Those would outlive this command
/// in a created container, and a copy of the state lock there blocks every later command.
/// What the caller passed stays as it is; the placeholders vanish at the container's exec.
pub fn reserve_preserved_fds(n: u32) -> std::io::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if u64::from(n) + 3 > limit.rlim_cur {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "--preserve-fds {n}: more descriptors than the limit ({}) allows",
                limit.rlim_cur
            ),
        ));
    }
    for fd in 3..(3 + n) as RawFd {
        // SAFETY: F_GETFD only asks whether `fd` is open; no memory is passed.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // Every lower number is open, so open() takes exactly `fd` (the lowest free one).
        // SAFETY: a NUL-terminated path and flags; the descriptor is deliberately never
        // closed by us: it holds its number until the container's exec closes it.
        let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if got == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if got != fd {
            // SAFETY: `got` is the descriptor just opened here; dup3 onto the free `fd`
            // replaces nothing, and closing `got` afterwards loses nothing.
            let ret = unsafe { libc::dup3(got, fd, libc::O_CLOEXEC) };
            // SAFETY: as above.
            unsafe { libc::close(got) };
            if ret == -1 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Closes the descriptors in `first..end` that are close-on-exec: in the `--preserve-fds`
/// range those are the placeholders of [`reserve_preserved_fds`], never the caller's (a
/// descriptor passed through an exec cannot be close-on-exec). A created container then
/// waits holding only what it will keep.
pub(crate) fn close_placeholders(first: u32, end: u32) {
    for fd in first..end {
        let Ok(fd) = RawFd::try_from(fd) else { return };
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags != -1 && flags & libc::FD_CLOEXEC != 0 {
            // SAFETY: a placeholder of ours, used by nothing.
            unsafe { libc::close(fd) };
        }
    }
}

fn close_range(first: u32, last: u32, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: close_range only closes or flags descriptors of this process; no memory is
    // passed, and nothing of ours in [first, last] is used afterwards.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if ret == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd instead.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| u32::try_from(fd).is_ok_and(|fd| (first..=last).contains(&fd)))
        .collect();
    for fd in fds {
        // SAFETY: as above, on one descriptor; a stale number fails with EBADF, harmlessly.
        unsafe {
            if flags == 0 {
                libc::close(fd);
            } else {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

fn execve(path: &CStr, command: &Command) -> Errno {
    let result = match command.via {
        None => nix::unistd::execve(path, &command.args, &command.env),
        Some(trampoline) => {
            // `peapod-init --exec PATH ARGV...` becomes PATH with exactly that argv.
            let mut argv = vec![
                c"peapod-init".to_owned(),
                c"--exec".to_owned(),
                path.to_owned(),
            ];
            argv.extend(command.args.iter().cloned());
            nix::unistd::execveat(
                Some(trampoline),
                c"",
                &argv,
                &command.env,
                nix::fcntl::AtFlags::AT_EMPTY_PATH,
            )
        }
    };
    match result {
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

/// Finds the entrypoint before the barrier, so that a missing or unusable program is
/// reported by `create` (with 127 or 126), while someone still listens: `args[0]` itself when
/// it has a slash, else the first match in the container's `PATH`, as `execvp` would pick it.
pub(crate) fn find_program(command: &Command) -> Result<CString, ChildFailure> {
    let program = &command.args[0];
    let name = program.to_string_lossy().into_owned();
    if program.as_bytes().contains(&b'/') {
        return check(program)
            .map(|()| program.clone())
            .map_err(|e| exec_failure(&name, e));
    }
    let path_var = command.path_var.as_deref().unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(&name);
        let Ok(c_candidate) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        match check(&c_candidate) {
            Ok(()) => return Ok(c_candidate),
            Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
            Err(e) => denied = denied.or(Some((candidate.display().to_string(), e))),
        }
    }
    Err(match denied {
        Some((path, errno)) => exec_failure(&path, errno),
        None => failure(
            127,
            format!("{name}: command not found in the container (PATH={path_var})"),
        ),
    })
}

/// Whether `path` is an existing, executable regular file (for the current credentials).
fn check(path: &CStr) -> Result<(), Errno> {
    let stat = nix::sys::stat::stat(path)?;
    if stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(Errno::EISDIR);
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
}

/// Execs `program` (found by [`find_program`]) with the command's arguments and environment,
/// after closing every descriptor above 2 but the `preserve_fds` after them. Returns only on
/// failure.
pub(crate) fn exec(program: &CStr, command: &Command, preserve_fds: u32) -> ChildFailure {
    // The preserved descriptors were opened by the caller without close-on-exec; everything
    // after them goes.
    if let Err(e) = close_inherited_fds(3 + preserve_fds) {
        return failure(125, format!("cannot close inherited descriptors: {e}"));
    }
    exec_failure(&program.to_string_lossy(), execve(program, command))
}
