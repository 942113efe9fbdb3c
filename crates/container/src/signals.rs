//! Waiting for the container while forwarding the runtime's signals to it.

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::{Error, Result};

/// The signals a foreground runtime passes on to the container, as runc and docker do.
pub const FORWARDED_SIGNALS: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The status a shell reports: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(sig) => 128 + sig,
        }
    }
}

/// Blocks [`FORWARDED_SIGNALS`] and `SIGCHLD` and reads them from a signalfd: race-free, no
/// handler code. Install it *before* creating the container, so no signal sent in between is
/// lost; the container process unblocks them for itself. Dropping it restores the mask.
#[derive(Debug)]
pub struct SignalForwarder {
    fd: SignalFd,
    old_mask: SigSet,
}

impl SignalForwarder {
    /// Blocks the signals and opens the signalfd.
    pub fn install() -> Result<SignalForwarder> {
        let mut mask = SigSet::empty();
        for sig in FORWARDED_SIGNALS {
            mask.add(sig);
        }
        mask.add(Signal::SIGCHLD);
        let mut old_mask = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
            .map_err(|e| Error::os("failed to block signals", e))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Error::os("failed to open a signalfd", e))?;
        Ok(SignalForwarder { fd, old_mask })
    }

    /// As [`SignalForwarder::install`], and `SIGWINCH` too, which [`SignalForwarder::step`]
    /// hands back instead of forwarding (a terminal's size goes to the pty, not the process).
    pub fn install_for_terminal() -> Result<SignalForwarder> {
        let forwarder = SignalForwarder::install()?;
        let mut winch = SigSet::empty();
        winch.add(Signal::SIGWINCH);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&winch), None)
            .map_err(|e| Error::os("failed to block signals", e))?;
        let mut mask = SigSet::empty();
        for sig in FORWARDED_SIGNALS {
            mask.add(sig);
        }
        mask.add(Signal::SIGCHLD);
        mask.add(Signal::SIGWINCH);
        forwarder
            .fd
            .set_mask(&mask)
            .map_err(|e| Error::os("failed to change the signalfd", e))?;
        Ok(forwarder)
    }

    /// The signalfd, to poll alongside other descriptors.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// Waits for `pid` to end, forwarding every blocked signal that arrives meanwhile.
    pub fn wait(&self, pid: Pid) -> Result<Exit> {
        loop {
            if let Some(exit) = self.step(pid, |_| {})? {
                return Ok(exit);
            }
        }
    }

    /// `pid`'s exit if it has ended; else reads one signal (blocking until one comes) and
    /// forwards it, or hands `SIGWINCH` to `on_resize`.
    pub fn step(&self, pid: Pid, mut on_resize: impl FnMut(Signal)) -> Result<Option<Exit>> {
        // Checked before each read: the child may have ended before the first SIGCHLD was
        // read, and several exits can share one SIGCHLD.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(Exit::Code(code))),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(Exit::Signal(sig as i32))),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::os("failed to wait for the container", e)),
        }
        let info = match self.fd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::Error::EINTR) => return Ok(None),
            Err(e) => return Err(Error::os("failed to read a signal", e)),
        };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(Signal::SIGWINCH) => on_resize(Signal::SIGWINCH),
            Ok(sig) => {
                tracing::debug!("forwarding {sig} to {pid}");
                // The container may be exiting: ESRCH is expected then.
                let _ = kill(pid, sig);
            }
        }
        Ok(None)
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}
