//! Starting a child process in new namespaces with one `clone3(2)`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::unistd::Pid;

use crate::{Error, Namespace, NamespaceSet, Result};

/// Which side of [`clone_into`] the caller is on.
#[derive(Debug)]
pub enum Forked {
    /// The new process, inside the new namespaces.
    Child,
    /// The caller, with a handle on the new process.
    Parent(ChildProcess),
}

/// The process [`clone_into`] started, as the parent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildProcess {
    /// Its PID in the caller's PID namespace.
    pub pid: Pid,
}

/// The kernel's `struct clone_args` (include/uapi/linux/sched.h), up to `cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts a child in new namespaces of every kind in `set`, like `fork(2)`: both processes
/// return, the child with [`Forked::Child`]. The child's exit is reported with `SIGCHLD`.
///
/// One `clone3(2)` creates all namespaces at once, so the kernel creates the user namespace
/// first and makes it the owner of the others, and a new PID namespace has the child as PID 1.
/// On kernels without `clone3` it falls back to `clone(2)` with the same flags.
///
/// # Safety
///
/// As with `fork(2)`: when the calling process has other threads, the child may only call
/// async-signal-safe functions (no allocation) until it execs or exits, and it must leave
/// with `exec` or `_exit`, never by returning through the caller's stack frames into code that
/// assumes it is the parent.
pub unsafe fn clone_into(set: NamespaceSet) -> Result<Forked> {
    // SAFETY: the caller upholds this function's contract, which is clone_with's.
    unsafe { clone_with(set, None) }.map(|(forked, _)| forked)
}

/// [`clone_into`], with the child starting in the cgroup v2 directory `cgroup` (an open
/// descriptor of it) instead of the caller's (`CLONE_INTO_CGROUP`, Linux 5.7): the kernel then
/// places it at the fork, without the global lock a later move into a cgroup2 directory
/// takes. The flag says whether it did: `false` when this kernel cannot or refuses (no
/// `clone3`, an older kernel, a cgroup that cannot take it), and the child started in the
/// caller's cgroup, for the caller to move it. Both processes get the same flag.
///
/// # Safety
///
/// As [`clone_into`].
pub unsafe fn clone_into_cgroup(
    set: NamespaceSet,
    cgroup: BorrowedFd<'_>,
) -> Result<(Forked, bool)> {
    // SAFETY: as above.
    unsafe { clone_with(set, Some(cgroup)) }
}

/// `clone3` with the flags of `set` (and `CLONE_INTO_CGROUP` with `cgroup`), falling back to
/// `clone3` without the cgroup and then to `clone`.
///
/// # Safety
///
/// As [`clone_into`].
unsafe fn clone_with(set: NamespaceSet, cgroup: Option<BorrowedFd<'_>>) -> Result<(Forked, bool)> {
    let flags = set.clone_flags() as u64;
    let mut in_cgroup = false;
    let mut ret = -1;
    if let Some(fd) = cgroup.and_then(|fd| u64::try_from(fd.as_raw_fd()).ok()) {
        // SAFETY: as in `clone3` below.
        ret = unsafe { clone3(flags | CLONE_INTO_CGROUP, fd) };
        // Whatever the refusal (an old kernel's EINVAL or E2BIG, a cgroup that cannot take
        // the process), the plain clone below says what is wrong with the namespaces, and
        // the caller's move says what is wrong with the cgroup.
        in_cgroup = ret != -1;
    }
    if ret == -1 {
        // SAFETY: as in `clone3` below.
        ret = unsafe { clone3(flags, 0) };
    }
    if ret == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: clone(2) with a null stack behaves as fork(2), as above; the remaining
        // arguments (parent_tid, child_tid, tls) are unused without the matching flags.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as u64,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
    }
    match ret {
        -1 => {
            let source = io::Error::last_os_error();
            Err(Error::Clone {
                what: set.to_string(),
                hint: refusal_hint(set, &source),
                source,
            })
        }
        0 => Ok((Forked::Child, in_cgroup)),
        pid => Ok((
            Forked::Parent(ChildProcess {
                pid: Pid::from_raw(pid as libc::pid_t),
            }),
            in_cgroup,
        )),
    }
}

/// `CLONE_INTO_CGROUP` (include/uapi/linux/sched.h), which the libc crate lacks.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// One `clone3(2)` with `flags`, `SIGCHLD` on exit and the cgroup descriptor `cgroup` (read
/// only with `CLONE_INTO_CGROUP`): -1 (errno set), 0 in the child, the child's pid.
///
/// # Safety
///
/// As [`clone_into`].
unsafe fn clone3(flags: u64, cgroup: u64) -> libc::c_long {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid, initialised clone_args of the size passed. Without CLONE_VM
    // the child gets a copy of the address space and continues on its own copy of this stack,
    // exactly like fork(2); the caller upholds fork's rules (see clone_into's contract).
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// Why the kernel most likely refused to create `set`, as "; reason", or "".
fn refusal_hint(set: NamespaceSet, err: &io::Error) -> String {
    let read = |path: &str| -> Option<String> {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let errno = err.raw_os_error().unwrap_or(0);
    if set.contains(Namespace::User) && matches!(errno, libc::EPERM | libc::ENOSPC | libc::EINVAL) {
        if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
            return "; user namespaces are disabled: /proc/sys/user/max_user_namespaces is 0"
                .into();
        }
        if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
            return "; unprivileged user namespaces are disabled: \
                    /proc/sys/kernel/unprivileged_userns_clone is 0"
                .into();
        }
    }
    if errno == libc::ENOSPC {
        for ns in set.iter() {
            let path = format!("/proc/sys/user/max_{}_namespaces", ns.proc_name());
            if read(&path).as_deref() == Some("0") {
                return format!("; {ns} namespaces are disabled: {path} is 0");
            }
        }
        return "; a per-user namespace limit in /proc/sys/user/ is reached".into();
    }
    if errno == libc::EPERM && !set.contains(Namespace::User) && !nix::unistd::geteuid().is_root() {
        return "; creating namespaces needs CAP_SYS_ADMIN: run as root or in a new user namespace"
            .into();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NamespaceId;
    use nix::sys::wait::{waitpid, WaitStatus};
    use std::os::fd::AsFd;

    fn root_or_skip() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("skipped: creating namespaces needs root");
        false
    }

    #[test]
    fn new_pid_namespace_makes_child_pid_1() {
        if !root_or_skip() {
            return;
        }
        let set: NamespaceSet = [Namespace::Pid, Namespace::Uts].into_iter().collect();
        // SAFETY: the child only calls getpid and _exit, both async-signal-safe.
        match unsafe { clone_into(set) }.expect("clone") {
            Forked::Child => {
                // SAFETY: async-signal-safe calls only, then _exit.
                unsafe { libc::_exit(if libc::getpid() == 1 { 0 } else { 3 }) }
            }
            Forked::Parent(child) => {
                assert_ne!(child.pid.as_raw(), 1);
                let status = waitpid(child.pid, None).expect("waitpid");
                assert_eq!(status, WaitStatus::Exited(child.pid, 0));
            }
        }
    }

    #[test]
    fn child_namespaces_differ_from_parent() {
        if !root_or_skip() {
            return;
        }
        let set: NamespaceSet = [Namespace::Uts, Namespace::Ipc].into_iter().collect();
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child only reads from a pipe and exits, both async-signal-safe.
        match unsafe { clone_into(set) }.expect("clone") {
            Forked::Child => {
                let mut byte = [0u8];
                // Our copy of the write end must go, or the read below never sees end-of-file;
                // the alarm ends the child should the parent never close its end.
                // SAFETY: close, alarm and read on valid descriptors and buffers; then _exit.
                unsafe {
                    libc::close(std::os::fd::AsRawFd::as_raw_fd(&wr));
                    libc::alarm(10);
                    libc::read(
                        std::os::fd::AsRawFd::as_raw_fd(&rd),
                        byte.as_mut_ptr().cast(),
                        1,
                    );
                    libc::_exit(0)
                }
            }
            Forked::Parent(child) => {
                drop(rd);
                for ns in set.iter() {
                    let inside = NamespaceId::of(Some(child.pid), ns).expect("child ns");
                    let outside = NamespaceId::of(None, ns).expect("own ns");
                    assert_ne!(inside, outside, "{ns}");
                }
                let inside = NamespaceId::of(Some(child.pid), Namespace::Net).expect("net");
                assert_eq!(inside, NamespaceId::of(None, Namespace::Net).expect("net"));
                drop(wr);
                waitpid(child.pid, None).expect("waitpid");
            }
        }
    }

    /// The mount point of a cgroup2 file system, from this process's mount table.
    fn cgroup2_mount() -> Option<std::path::PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        mounts.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next() == Some("cgroup2"))
                .then(|| left.split(' ').nth(4).map(std::path::PathBuf::from))?
        })
    }

    #[test]
    fn a_child_cloned_into_a_cgroup2_directory_starts_there() {
        if !root_or_skip() {
            return;
        }
        let Some(mount) = cgroup2_mount() else {
            eprintln!("skipped: no cgroup2 file system is mounted");
            return;
        };
        let name = format!("peapod-ns-clone-{}", std::process::id());
        let dir = mount.join(&name);
        std::fs::create_dir(&dir).expect("mkdir cgroup");
        // Removed however the test ends; the child is reaped before.
        struct Remove(std::path::PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _remove = Remove(dir.clone());
        let fd = std::fs::File::open(&dir).expect("open cgroup");
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child only closes, reads from a pipe and exits, all async-signal-safe.
        let (forked, in_cgroup) =
            unsafe { clone_into_cgroup(NamespaceSet::empty(), fd.as_fd()) }.expect("clone");
        match forked {
            Forked::Child => {
                let mut byte = [0u8];
                // SAFETY: as in child_namespaces_differ_from_parent.
                unsafe {
                    libc::close(wr.as_raw_fd());
                    libc::alarm(10);
                    libc::read(rd.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
                    libc::_exit(0)
                }
            }
            Forked::Parent(child) => {
                drop(rd);
                let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid))
                    .expect("child's cgroup");
                drop(wr);
                waitpid(child.pid, None).expect("waitpid");
                if !in_cgroup {
                    eprintln!("skipped: this kernel has no CLONE_INTO_CGROUP (5.7+)");
                    return;
                }
                assert!(
                    cgroup.lines().any(|l| l == format!("0::/{name}")),
                    "{cgroup}"
                );
            }
        }
    }
}
