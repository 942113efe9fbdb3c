//! Reaping: collecting the exit status of dead children so that they do not
//! linger as zombies.
//!
//! A process whose parent has exited is re-parented to the nearest
//! subreaper or to PID 1 of its PID namespace, which then has to `wait` for
//! it. Two strategies are offered to programs that embed this crate:
//!
//! * [`reap_zombies`] reaps *every* exited child with `waitpid(-1, WNOHANG)`
//!   and hands each status to a callback. It never lets a zombie linger, but
//!   it steals the statuses of the program's own children: a later
//!   `std::process::Child::wait` on such a child fails with `ECHILD`. Use it
//!   when the program routes all its child bookkeeping through the callback
//!   (this is what the `peapod-init` binary does).
//!
//! * [`reap_orphans`] reaps only children the program does not claim, and
//!   leaves the claimed ones for the program's own `wait` calls. It first
//!   looks at an exited child without reaping it (`waitid(WNOWAIT)`), and
//!   reaps it only if the program says it is not one of its own. The price:
//!   the kernel always reports the *first* exited child, so while one of the
//!   program's own children sits unwaited as a zombie, orphans behind it are
//!   not reaped either (the call returns [`OrphanReap::BlockedBy`] so the
//!   program can wait for that child first). A program that waits for its
//!   children promptly never notices.

use crate::error::Error;
use crate::signals::Signal;
use crate::sys::{self, errno};

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStatus {
    /// It called `exit` with this code.
    Exited(u8),
    /// It was killed by this signal.
    Signaled(Signal),
}

impl ChildStatus {
    /// Decodes a `wait` status word.
    pub fn from_wait_status(status: i32) -> ChildStatus {
        let sig = status & 0x7f;
        if sig == 0 {
            ChildStatus::Exited(((status >> 8) & 0xff) as u8)
        } else {
            // Stop and continue reports are never requested, so any other
            // status is a death by signal.
            Signal::from_raw(sig).map_or(ChildStatus::Exited(255), ChildStatus::Signaled)
        }
    }

    /// The exit code a shell would report: the code itself, or 128 plus the
    /// signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            ChildStatus::Exited(code) => code,
            ChildStatus::Signaled(sig) => (128 + sig.as_raw()).min(255) as u8,
        }
    }
}

/// Reaps every child that has exited, without blocking, and calls
/// `on_reaped(pid, status)` for each. Returns how many were reaped.
///
/// Stops when no exited child is left (or the process has no children at
/// all). See the module documentation for the trade-off against
/// [`reap_orphans`].
pub fn reap_zombies(mut on_reaped: impl FnMut(u32, ChildStatus)) -> Result<usize, Error> {
    let mut count = 0;
    loop {
        match sys::waitpid_nohang(-1) {
            Ok(Some((pid, status))) => {
                count += 1;
                on_reaped(pid as u32, ChildStatus::from_wait_status(status.0));
            }
            Ok(None) | Err(errno::ECHILD) => return Ok(count),
            Err(errno::EINTR) => {}
            Err(e) => return Err(Error::new("reaping children", e)),
        }
    }
}

/// The outcome of [`reap_orphans`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrphanReap {
    /// No exited child is left; this many orphans were reaped.
    Done(usize),
    /// This many orphans were reaped, then the next exited child was one the
    /// program claimed: it stays a zombie until the program waits for it, and
    /// it hides any other exited child until then.
    BlockedBy {
        /// Orphans reaped before the claimed child was found.
        reaped: usize,
        /// The program's own exited child.
        pid: u32,
    },
}

/// Reaps exited children for which `is_own(pid)` is false, leaving the
/// program's own children to its own `wait` calls. `on_reaped` is called for
/// each reaped orphan.
///
/// See the module documentation for why a claimed, unwaited child blocks
/// further reaping.
pub fn reap_orphans(
    mut is_own: impl FnMut(u32) -> bool,
    mut on_reaped: impl FnMut(u32, ChildStatus),
) -> Result<OrphanReap, Error> {
    let mut reaped = 0;
    loop {
        let pid = match sys::peek_exited_child() {
            Ok(Some(pid)) => pid,
            Ok(None) | Err(errno::ECHILD) => return Ok(OrphanReap::Done(reaped)),
            Err(errno::EINTR) => continue,
            Err(e) => return Err(Error::new("looking for exited children", e)),
        };
        if is_own(pid as u32) {
            return Ok(OrphanReap::BlockedBy {
                reaped,
                pid: pid as u32,
            });
        }
        match sys::waitpid_nohang(pid) {
            Ok(Some((pid, status))) => {
                reaped += 1;
                on_reaped(pid as u32, ChildStatus::from_wait_status(status.0));
            }
            // Someone else (another thread) reaped it between the two calls.
            Ok(None) | Err(errno::ECHILD) | Err(errno::EINTR) => {}
            Err(e) => return Err(Error::new("reaping an orphan", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    use std::vec;
    use std::vec::Vec;

    /// Reaping with pid -1 takes any child of the test process, so tests that
    /// spawn children must not run concurrently.
    static CHILDREN: Mutex<()> = Mutex::new(());

    fn lock() -> std::sync::MutexGuard<'static, ()> {
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(script: &str) -> std::process::Child {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn /bin/sh")
    }

    /// Polls `f` until it returns true, failing the test after ten seconds.
    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn status_decoding() {
        assert_eq!(
            ChildStatus::from_wait_status(3 << 8),
            ChildStatus::Exited(3)
        );
        assert_eq!(
            ChildStatus::from_wait_status(9),
            ChildStatus::Signaled(Signal::KILL)
        );
        assert_eq!(ChildStatus::from_wait_status(9 | 0x80).exit_code(), 137);
        assert_eq!(ChildStatus::Signaled(Signal::TERM).exit_code(), 143);
        assert_eq!(ChildStatus::Exited(255).exit_code(), 255);
    }

    #[test]
    fn reap_zombies_hands_back_statuses() {
        let _guard = lock();
        let a = spawn("exit 7");
        // Reaped by reap_zombies below, which is what clippy cannot see.
        #[allow(clippy::zombie_processes)]
        let b = spawn("kill -TERM $$");
        let (pa, pb) = (a.id(), b.id());
        let mut seen = Vec::new();
        eventually("both children reaped", || {
            reap_zombies(|pid, st| seen.push((pid, st))).expect("reap");
            seen.len() == 2
        });
        seen.sort_by_key(|&(pid, _)| pid);
        let mut want = vec![
            (pa, ChildStatus::Exited(7)),
            (pb, ChildStatus::Signaled(Signal::TERM)),
        ];
        want.sort_by_key(|&(pid, _)| pid);
        assert_eq!(seen, want);
        // The trade-off: std can no longer wait for a child reaped this way.
        let mut a = a;
        assert!(
            a.wait().is_err(),
            "std's wait must fail with ECHILD after reap_zombies"
        );
        assert_eq!(reap_zombies(|_, _| {}).expect("reap"), 0);
    }

    #[test]
    fn reap_orphans_leaves_own_children_to_std() {
        let _guard = lock();
        // An "orphan": a child the program pretends not to know about.
        let orphan = spawn("exit 3");
        let orphan_pid = orphan.id();
        std::mem::forget(orphan);
        eventually("orphan reaped", || {
            let mut got = None;
            let r = reap_orphans(|_| false, |pid, st| got = Some((pid, st))).expect("reap");
            assert!(matches!(r, OrphanReap::Done(_)));
            if let Some(g) = got {
                assert_eq!(g, (orphan_pid, ChildStatus::Exited(3)));
                return true;
            }
            false
        });

        // The program's own child stays waitable by std.
        let mut own = spawn("exit 5");
        let own_pid = own.id();
        eventually("own child exited", || {
            let r = reap_orphans(
                |pid| pid == own_pid,
                |_, _| panic!("reaped the program's own child"),
            );
            r.expect("reap")
                == OrphanReap::BlockedBy {
                    reaped: 0,
                    pid: own_pid,
                }
        });
        let status = own.wait().expect("std wait still works");
        assert_eq!(status.code(), Some(5));
        assert_eq!(
            reap_orphans(|_| false, |_, _| {}).expect("reap"),
            OrphanReap::Done(0)
        );
    }
}
