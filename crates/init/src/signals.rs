//! Signals: names, the init's signal mask, race-free waiting and forwarding.
//!
//! The init blocks every catchable signal and collects them synchronously
//! with `rt_sigtimedwait`. Nothing runs in a signal handler, so there is no
//! window in which a `SIGCHLD` or a `SIGTERM` can be lost between checking
//! for work and going to sleep: blocked signals stay pending until the next
//! wait picks them up.

use crate::error::Error;
use crate::sys::{self, errno, SigAction, Timespec};

/// A signal number (1..=64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(i32);

/// Names of the standard signals, indexed by number.
const NAMES: [&str; 32] = [
    "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

impl Signal {
    /// `SIGHUP`.
    pub const HUP: Signal = Signal(1);
    /// `SIGINT`.
    pub const INT: Signal = Signal(2);
    /// `SIGKILL`.
    pub const KILL: Signal = Signal(9);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal(10);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal(12);
    /// `SIGTERM`.
    pub const TERM: Signal = Signal(15);
    /// `SIGCHLD`.
    pub const CHLD: Signal = Signal(sys::SIGCHLD);
    /// `SIGSTOP`.
    pub const STOP: Signal = Signal(19);
    /// `SIGTSTP`.
    pub const TSTP: Signal = Signal(20);
    /// `SIGTTIN`.
    pub const TTIN: Signal = Signal(21);
    /// `SIGTTOU`.
    pub const TTOU: Signal = Signal(22);
    /// `SIGWINCH`.
    pub const WINCH: Signal = Signal(28);

    /// The signal with number `n`, if `n` is a valid signal number.
    pub const fn from_raw(n: i32) -> Option<Signal> {
        if n >= 1 && n <= 64 {
            Some(Signal(n))
        } else {
            None
        }
    }

    /// The signal number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The name without the `SIG` prefix (`"TERM"`), or `None` for real-time
    /// signals.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .get(self.0 as usize)
            .copied()
            .filter(|n| !n.is_empty())
    }

    /// Parses `TERM`, `SIGTERM`, `sigterm` or `15`.
    pub fn parse(text: &[u8]) -> Option<Signal> {
        if !text.is_empty() && text.iter().all(u8::is_ascii_digit) {
            let mut n: i32 = 0;
            for &d in text {
                n = n.checked_mul(10)?.checked_add(i32::from(d - b'0'))?;
            }
            return Signal::from_raw(n);
        }
        let bare = match text {
            [b'S' | b's', b'I' | b'i', b'G' | b'g', rest @ ..] => rest,
            _ => text,
        };
        NAMES
            .iter()
            .position(|name| !name.is_empty() && name.as_bytes().eq_ignore_ascii_case(bare))
            .and_then(|n| Signal::from_raw(n as i32))
    }

    fn bit(self) -> u64 {
        1u64 << (self.0 - 1)
    }
}

/// Signals the init never blocks.
///
/// Faults (`SIGSEGV`, `SIGBUS`, ...) must keep their default action, or a
/// bug would make the init spin instead of crash. `SIGTTIN` and `SIGTTOU`
/// are ignored instead (see [`SavedSignals::block`]).
const NEVER_BLOCKED: [i32; 9] = [4, 5, 6, 7, 8, 11, 31, 21, 22];

/// The signal state the init replaced, restored in the child before exec.
#[derive(Clone, Copy, Debug)]
pub struct SavedSignals {
    mask: u64,
    ttin: SigAction,
    ttou: SigAction,
}

impl SavedSignals {
    /// Blocks every catchable signal except synchronous faults, and ignores
    /// `SIGTTIN`/`SIGTTOU`.
    ///
    /// Ignoring the terminal job-control signals matters when the init runs
    /// in a terminal but hands the foreground process group to its child: a
    /// diagnostic written by the (then background) init must not stop it.
    pub fn block() -> Result<SavedSignals, Error> {
        let mut set = u64::MAX;
        for n in NEVER_BLOCKED {
            set &= !Signal(n).bit();
        }
        let mask = sys::set_signal_mask(set).map_err(|e| Error::new("blocking signals", e))?;
        let ttin = sys::set_signal_action(Signal::TTIN.0, &SigAction::IGNORE)
            .map_err(|e| Error::new("ignoring SIGTTIN", e))?;
        let ttou = sys::set_signal_action(Signal::TTOU.0, &SigAction::IGNORE)
            .map_err(|e| Error::new("ignoring SIGTTOU", e))?;
        Ok(SavedSignals { mask, ttin, ttou })
    }

    /// Restores the mask and actions that were in place before [`block`].
    ///
    /// Called in the child between fork and exec, so that the command starts
    /// with the signal state the init itself was started with.
    ///
    /// [`block`]: SavedSignals::block
    pub fn restore(&self) -> Result<(), Error> {
        sys::set_signal_action(Signal::TTIN.0, &self.ttin)
            .map_err(|e| Error::new("restoring SIGTTIN", e))?;
        sys::set_signal_action(Signal::TTOU.0, &self.ttou)
            .map_err(|e| Error::new("restoring SIGTTOU", e))?;
        sys::set_signal_mask(self.mask).map_err(|e| Error::new("restoring the signal mask", e))?;
        Ok(())
    }
}

/// Sets `SIGPIPE` back to its default action.
///
/// The Rust `std` runtime ignores `SIGPIPE` before `main`, and an ignored
/// signal stays ignored across `exec`: without this, every command started
/// from a `std` program would get `EPIPE` instead of dying quietly in a
/// pipeline (`yes | head`). The freestanding binary never ignores it.
pub fn restore_default_sigpipe() -> Result<(), Error> {
    sys::set_signal_action(13, &SigAction::DEFAULT)
        .map(drop)
        .map_err(|e| Error::new("restoring SIGPIPE", e))
}

/// Waits for any blocked signal, for at most `timeout_ms` milliseconds when
/// given. Returns `None` on timeout or when interrupted.
pub fn wait(timeout_ms: Option<u64>) -> Result<Option<Signal>, Error> {
    let ts = timeout_ms.map(|ms| Timespec {
        sec: (ms / 1000) as i64,
        nsec: ((ms % 1000) * 1_000_000) as i64,
    });
    match sys::sigtimedwait(u64::MAX, ts.as_ref()) {
        Ok(info) => Ok(Signal::from_raw(info.signo)),
        Err(errno::EAGAIN | errno::EINTR) => Ok(None),
        Err(e) => Err(Error::new("waiting for signals", e)),
    }
}

/// Sends `sig` to `pid`, or to the process group `pid` leads when `group`
/// is set. A target that is already gone is not an error.
pub fn forward(sig: Signal, pid: i32, group: bool) -> Result<(), Error> {
    let target = if group { -pid } else { pid };
    match sys::kill(target, sig.0) {
        Ok(()) | Err(errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::new("forwarding a signal", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_and_numbers() {
        assert_eq!(Signal::parse(b"TERM"), Some(Signal::TERM));
        assert_eq!(Signal::parse(b"SIGKILL"), Some(Signal::KILL));
        assert_eq!(Signal::parse(b"sigusr1"), Some(Signal::USR1));
        assert_eq!(Signal::parse(b"28"), Some(Signal::WINCH));
        assert_eq!(Signal::parse(b"64").map(Signal::as_raw), Some(64));
        assert_eq!(Signal::parse(b"0"), None);
        assert_eq!(Signal::parse(b"65"), None);
        assert_eq!(Signal::parse(b"99999999999"), None);
        assert_eq!(Signal::parse(b"SIG"), None);
        assert_eq!(Signal::parse(b""), None);
        assert_eq!(Signal::parse(b"NOPE"), None);
        assert_eq!(Signal::HUP.name(), Some("HUP"));
        assert_eq!(Signal::CHLD.name(), Some("CHLD"));
        assert_eq!(Signal::from_raw(40).and_then(Signal::name), None);
    }
}
