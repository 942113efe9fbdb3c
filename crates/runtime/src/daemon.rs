//! A small process of peapod's that outlives the command making it, as conmon and
//! docker-proxy do: a pod container's log copier ([`crate::logcopy`]), a pod's port holder.
//!
//! Forked twice, as a daemon is: the middle process starts a session of its own (no
//! terminal's signals reach it), reports the last one's PID and exits, so the caller is
//! left with no child to reap. The last one has its stdio on `/dev/null` and no descriptor
//! of the caller's but those it is given (no state lock, no caller's pipe that someone waits
//! on to close), no signal blocked, and a name of its own for `ps`; it runs its job and
//! exits. No exec: it runs what the caller forked it with, so it needs no command of its
//! own, and the pages it shares with the caller cost nothing until written.

use std::ffi::CStr;
use std::io::Read as _;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::anyhow;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use crate::{Error, Result};

/// Starts `job` in a daemon process named `name` (at most 15 bytes show) that keeps only
/// the descriptors `keep` (at their numbers) and exits with what `job` returns; its PID.
/// The caller must be single-threaded.
pub fn spawn(name: &CStr, keep: &[RawFd], job: impl FnOnce() -> i32) -> Result<Pid> {
    let os = |what: &'static str| move |e: nix::Error| Error::runtime(anyhow!("{what}: {e}"));
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("cannot make a pipe"))?;
    // SAFETY: the caller is single-threaded (see above), so the child may do anything the
    // parent could.
    match unsafe { fork() }.map_err(os("cannot fork"))? {
        ForkResult::Parent { child } => {
            drop(report_write);
            let _ = waitpid(child, None);
            let mut text = String::new();
            let _ = std::fs::File::from(report_read).read_to_string(&mut text);
            text.trim()
                .parse()
                .map(Pid::from_raw)
                .map_err(|_| Error::runtime(anyhow!("the {name:?} process did not start")))
        }
        ForkResult::Child => {
            drop(report_read);
            let _ = nix::unistd::setsid();
            // SAFETY: as above: one thread.
            match unsafe { fork() } {
                Ok(ForkResult::Parent { child }) => {
                    let _ = nix::unistd::write(&report_write, child.to_string().as_bytes());
                    exit_now(0)
                }
                Ok(ForkResult::Child) => {}
                Err(_) => exit_now(1),
            }
            drop(report_write);
            detach_from_caller(name, keep);
            // A panic must not unwind into the caller's code, which would then run twice.
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            exit_now(code.unwrap_or(101))
        }
    }
}

/// In the daemon: stdio on `/dev/null`, every other descriptor but `keep` closed, no signal
/// blocked, the name set.
fn detach_from_caller(name: &CStr, keep: &[RawFd]) {
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        let _ = nix::unistd::close(fd);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    // Not to keep a directory of the caller's busy (a mount point it may unmount).
    let _ = std::env::set_current_dir("/");
}

/// Ends this forked process without running anything of the caller's (no atexit, no
/// buffered output written twice).
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(code) }
}

/// `pidfd_open(2)`: a descriptor that polls readable once `pid` has exited. `None` on a
/// kernel without it (before 5.3).
pub fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
