//! Raw Linux system calls.
//!
//! The init process needs about twenty system calls, and going through libc
//! for them would tie the binary to a C library (glibc's static start-up code
//! alone is larger than this whole program). Issuing them directly keeps the
//! library usable from a `#![no_std]`, `#![no_main]` binary and from ordinary
//! `std` programs alike. Every wrapper returns `Err(errno)` on failure, which
//! the callers wrap with context (see `error.rs`).
//!
//! Only x86_64 and aarch64 are supported; both use the generic signal
//! numbers, sigset layout and `struct sigaction` layout assumed here.

use core::arch::asm;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("peapod-init issues raw system calls and supports only x86_64 and aarch64");

/// System call numbers, which differ between architectures.
#[cfg(target_arch = "x86_64")]
mod nr {
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const GETPID: usize = 39;
    pub const CLONE: usize = 56;
    pub const EXECVE: usize = 59;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const CHDIR: usize = 80;
    pub const SETPGID: usize = 109;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const PRCTL: usize = 157;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const WAITID: usize = 247;
    pub const CLOSE_RANGE: usize = 436;
}

/// System call numbers, which differ between architectures.
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const RT_SIGACTION: usize = 134;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const IOCTL: usize = 29;
    pub const GETPID: usize = 172;
    pub const CLONE: usize = 220;
    pub const EXECVE: usize = 221;
    pub const WAIT4: usize = 260;
    pub const KILL: usize = 129;
    pub const CHDIR: usize = 49;
    pub const SETPGID: usize = 154;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const PRCTL: usize = 167;
    pub const CLOCK_GETTIME: usize = 113;
    pub const EXIT_GROUP: usize = 94;
    pub const WAITID: usize = 95;
    pub const CLOSE_RANGE: usize = 436;
}

/// Error numbers this crate reacts to.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// No such process.
    pub const ESRCH: i32 = 3;
    /// Interrupted system call.
    pub const EINTR: i32 = 4;
    /// Exec format error.
    pub const ENOEXEC: i32 = 8;
    /// No child processes.
    pub const ECHILD: i32 = 10;
    /// Try again (here: a signal wait timed out).
    pub const EAGAIN: i32 = 11;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Not a directory.
    pub const ENOTDIR: i32 = 20;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// File name too long.
    pub const ENAMETOOLONG: i32 = 36;
    /// Function not implemented.
    pub const ENOSYS: i32 = 38;
    /// Too many levels of symbolic links.
    pub const ELOOP: i32 = 40;
}

pub const SIGCHLD: i32 = 17;
const WNOHANG: usize = 1;
const WEXITED: usize = 4;
const WNOWAIT: usize = 0x0100_0000;
const P_ALL: usize = 0;
const P_PID: usize = 1;
const SIG_SETMASK: usize = 2;
const PR_SET_PDEATHSIG: usize = 1;
const PR_SET_CHILD_SUBREAPER: usize = 36;
const TIOCSPGRP: usize = 0x5410;
const CLOCK_MONOTONIC: usize = 1;

/// The result of a raw system call: a value or an errno.
pub type SysResult<T> = Result<T, i32>;

/// Performs a system call with six arguments.
///
/// # Safety
///
/// The arguments must be valid for system call `n`: pointers must point to
/// memory of the size and mutability the kernel expects.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments are valid for this call;
    // the `syscall` instruction clobbers only rcx and r11 besides rax.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags)
        );
    }
    ret
}

/// Performs a system call with six arguments.
///
/// # Safety
///
/// The arguments must be valid for system call `n`: pointers must point to
/// memory of the size and mutability the kernel expects.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments are valid for this call;
    // `svc 0` returns in x0 and clobbers nothing else.
    unsafe {
        asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack, preserves_flags)
        );
    }
    ret
}

/// Turns the kernel's "negative errno" convention into a `Result`.
fn check(ret: isize) -> SysResult<usize> {
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

/// A system call whose arguments are plain integers, so it cannot violate
/// memory safety.
fn plain(n: usize, a: [usize; 6]) -> SysResult<usize> {
    // SAFETY: only called for system calls whose arguments are integers
    // (kill, setpgid, prctl options without pointers, close, ...), which the
    // kernel validates itself.
    check(unsafe { syscall6(n, a) })
}

/// `write(fd, buf)`.
pub fn write(fd: i32, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: `buf` is a valid readable slice of `buf.len()` bytes.
    check(unsafe {
        syscall6(
            nr::WRITE,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    })
}

/// `close(fd)`.
pub fn close(fd: i32) -> SysResult<()> {
    plain(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

/// `close_range(first, last, 0)`.
pub fn close_range(first: u32, last: u32) -> SysResult<()> {
    plain(nr::CLOSE_RANGE, [first as usize, last as usize, 0, 0, 0, 0]).map(drop)
}

/// `getpid()`.
pub fn getpid() -> i32 {
    plain(nr::GETPID, [0; 6]).map_or(0, |p| p as i32)
}

/// `kill(pid, sig)`; a negative pid addresses a process group, signal 0
/// only checks for existence.
pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    plain(nr::KILL, [pid as isize as usize, sig as usize, 0, 0, 0, 0]).map(drop)
}

/// `setpgid(pid, pgid)`.
pub fn setpgid(pid: i32, pgid: i32) -> SysResult<()> {
    plain(nr::SETPGID, [pid as usize, pgid as usize, 0, 0, 0, 0]).map(drop)
}

/// `ioctl(fd, TIOCSPGRP, &pgrp)`: makes `pgrp` the terminal's foreground
/// process group.
pub fn tcsetpgrp(fd: i32, pgrp: i32) -> SysResult<()> {
    // SAFETY: TIOCSPGRP reads one `pid_t` through the pointer, which points to
    // a live local.
    check(unsafe {
        syscall6(
            nr::IOCTL,
            [
                fd as usize,
                TIOCSPGRP,
                &pgrp as *const i32 as usize,
                0,
                0,
                0,
            ],
        )
    })
    .map(drop)
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`.
pub fn set_child_subreaper() -> SysResult<()> {
    plain(nr::PRCTL, [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0]).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub fn set_parent_death_signal(sig: i32) -> SysResult<()> {
    plain(nr::PRCTL, [PR_SET_PDEATHSIG, sig as usize, 0, 0, 0, 0]).map(drop)
}

/// `chdir(path)`.
pub fn chdir(path: &core::ffi::CStr) -> SysResult<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    check(unsafe { syscall6(nr::CHDIR, [path.as_ptr() as usize, 0, 0, 0, 0, 0]) }).map(drop)
}

/// `exit_group(code)`: ends the whole process immediately.
pub fn exit_group(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe {
            syscall6(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
        }
    }
}

/// `clone(SIGCHLD)`, the system call behind `fork()`: returns 0 in the
/// child and the child's pid in the parent.
///
/// # Safety
///
/// The child is a copy of this process with only the calling thread; in a
/// multi-threaded program it must restrict itself to raw system calls (no
/// allocation, no locks) until it execs or exits.
pub unsafe fn fork() -> SysResult<i32> {
    // SAFETY: with a null stack pointer the child continues on a copy of the
    // current stack, exactly like fork(); the caller upholds the rest.
    check(unsafe { syscall6(nr::CLONE, [SIGCHLD as usize, 0, 0, 0, 0, 0]) }).map(|p| p as i32)
}

/// `execve(path, argv, envp)`; returns only on failure.
///
/// # Safety
///
/// `argv` and `envp` must point to NULL-terminated arrays of pointers to
/// NUL-terminated strings.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: the caller guarantees the pointer arguments are valid.
    match check(unsafe {
        syscall6(
            nr::EXECVE,
            [path as usize, argv as usize, envp as usize, 0, 0, 0],
        )
    }) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// A wait status as returned by `wait4`.
#[derive(Clone, Copy, Debug)]
pub struct RawStatus(pub i32);

/// `wait4(pid, &status, WNOHANG)`: returns `Ok(None)` when no child has
/// changed state yet.
pub fn waitpid_nohang(pid: i32) -> SysResult<Option<(i32, RawStatus)>> {
    let mut status: i32 = 0;
    // SAFETY: wait4 writes one int through the status pointer, which points
    // to a live local; the rusage pointer is null.
    let ret = check(unsafe {
        syscall6(
            nr::WAIT4,
            [
                pid as isize as usize,
                &mut status as *mut i32 as usize,
                WNOHANG,
                0,
                0,
                0,
            ],
        )
    })?;
    Ok(if ret == 0 {
        None
    } else {
        Some((ret as i32, RawStatus(status)))
    })
}

/// The kernel's `siginfo_t`: 128 bytes, of which the first fields are
/// `si_signo`, `si_errno`, `si_code` and (after padding) `si_pid`.
#[repr(C, align(8))]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// Unused errno field.
    pub errno: i32,
    /// Signal code.
    pub code: i32,
    pad: i32,
    /// Sending or exiting process.
    pub pid: i32,
    rest: [u8; 108],
}

impl SigInfo {
    fn zeroed() -> Self {
        SigInfo {
            signo: 0,
            errno: 0,
            code: 0,
            pad: 0,
            pid: 0,
            rest: [0; 108],
        }
    }
}

/// `waitid(P_ALL, 0, WEXITED | WNOHANG | WNOWAIT)`: the pid of some child
/// that has exited, without reaping it.
pub fn peek_exited_child() -> SysResult<Option<i32>> {
    let mut info = SigInfo::zeroed();
    // SAFETY: waitid writes one siginfo_t (128 bytes) through the pointer,
    // which points to a live local of that size; the rusage pointer is null.
    check(unsafe {
        syscall6(
            nr::WAITID,
            [
                P_ALL,
                0,
                &mut info as *mut SigInfo as usize,
                WEXITED | WNOHANG | WNOWAIT,
                0,
                0,
            ],
        )
    })?;
    // With WNOHANG the kernel leaves si_pid at zero when no child is ready.
    Ok(if info.pid == 0 { None } else { Some(info.pid) })
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: whether child `pid` has exited,
/// without reaping it (its status stays for whoever waits for it next).
pub fn has_exited(pid: i32) -> SysResult<bool> {
    let mut info = SigInfo::zeroed();
    // SAFETY: waitid writes one siginfo_t (128 bytes) through the pointer,
    // which points to a live local of that size; the rusage pointer is null.
    check(unsafe {
        syscall6(
            nr::WAITID,
            [
                P_PID,
                pid as usize,
                &mut info as *mut SigInfo as usize,
                WEXITED | WNOHANG | WNOWAIT,
                0,
                0,
            ],
        )
    })?;
    // With WNOHANG the kernel leaves si_pid at zero while the child runs.
    Ok(info.pid != 0)
}

/// `rt_sigprocmask(SIG_SETMASK, &set, &old)`: returns the previous mask.
pub fn set_signal_mask(set: u64) -> SysResult<u64> {
    let mut old: u64 = 0;
    // SAFETY: both pointers point to live 8-byte sigsets, and 8 is the
    // kernel's sigset size on the supported architectures.
    check(unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            [
                SIG_SETMASK,
                &set as *const u64 as usize,
                &mut old as *mut u64 as usize,
                8,
                0,
                0,
            ],
        )
    })?;
    Ok(old)
}

/// The kernel's `struct sigaction` (handler, flags, restorer, mask).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigAction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

impl SigAction {
    /// `SIG_DFL`.
    pub const DEFAULT: SigAction = SigAction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    /// `SIG_IGN`.
    pub const IGNORE: SigAction = SigAction {
        handler: 1,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
}

/// `rt_sigaction(sig, &new, &old)`: returns the previous action.
///
/// Only `SIG_DFL`, `SIG_IGN` or an action previously returned by this
/// function can be installed, so no handler code (and no restorer) is ever
/// involved.
pub fn set_signal_action(sig: i32, new: &SigAction) -> SysResult<SigAction> {
    let mut old = SigAction::default();
    // SAFETY: both pointers point to live `struct sigaction`s of the layout
    // the kernel expects, and 8 is the kernel's sigset size.
    check(unsafe {
        syscall6(
            nr::RT_SIGACTION,
            [
                sig as usize,
                new as *const SigAction as usize,
                &mut old as *mut SigAction as usize,
                8,
                0,
                0,
            ],
        )
    })?;
    Ok(old)
}

/// The kernel's `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: i64,
}

/// `rt_sigtimedwait(&set, &info, timeout)`: returns the signal number, or
/// `Err(EAGAIN)` when the timeout expired.
pub fn sigtimedwait(set: u64, timeout: Option<&Timespec>) -> SysResult<SigInfo> {
    let mut info = SigInfo::zeroed();
    let timeout = timeout.map_or(0, |t| t as *const Timespec as usize);
    // SAFETY: the set pointer points to a live 8-byte sigset, the info pointer
    // to a live 128-byte siginfo_t, and the timeout is null or points to a live
    // timespec.
    check(unsafe {
        syscall6(
            nr::RT_SIGTIMEDWAIT,
            [
                &set as *const u64 as usize,
                &mut info as *mut SigInfo as usize,
                timeout,
                8,
                0,
                0,
            ],
        )
    })?;
    Ok(info)
}

/// `clock_gettime(CLOCK_MONOTONIC)` in milliseconds.
pub fn monotonic_ms() -> u64 {
    let mut ts = Timespec::default();
    // SAFETY: the kernel writes one timespec through the pointer, which points
    // to a live local.
    let ret = check(unsafe {
        syscall6(
            nr::CLOCK_GETTIME,
            [
                CLOCK_MONOTONIC,
                &mut ts as *mut Timespec as usize,
                0,
                0,
                0,
                0,
            ],
        )
    });
    match ret {
        Ok(_) => (ts.sec as u64).saturating_mul(1000) + (ts.nsec as u64) / 1_000_000,
        Err(_) => 0,
    }
}
