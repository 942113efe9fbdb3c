//! What a container process leaves behind of its caller's login: the session (with its
//! controlling terminal and process group) and the session keyring.
//!
//! A process that stays in its caller's session can push characters into the caller's
//! terminal with `ioctl(TIOCSTI)` (the kernel allows it on the process's own controlling
//! terminal) and signal the caller's whole process group with `kill(0, ...)`. A process that
//! keeps its caller's session keyring possesses every key reachable from it, root's user
//! keyring among them. So every container process and every `exec`'d process starts a
//! session and joins a session keyring of its own, as runc does.

use std::ffi::{CStr, CString};

/// Which session keyring the process joins before its entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionKeyring {
    /// A new keyring of this name (runc names it after the container, `_ses.ID` for an
    /// `exec`); `None` for an anonymous one.
    New(Option<CString>),
    /// The caller's (runc's `--no-new-keyring`).
    Inherit,
}

/// `KEYCTL_JOIN_SESSION_KEYRING` from `linux/keyctl.h`.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;

impl SessionKeyring {
    /// A new keyring named `name` (no name, or one with a NUL byte, gives an anonymous one).
    pub(crate) fn named(name: Option<&str>) -> SessionKeyring {
        SessionKeyring::New(name.and_then(|n| CString::new(n).ok()))
    }

    /// Joins it. `Ok(())` also when the kernel has no keyrings at all (`ENOSYS`), as runc
    /// goes on then; other refusals (a user namespace over its key quota: `EDQUOT`) are the
    /// caller's to report.
    pub(crate) fn join(&self) -> std::io::Result<()> {
        let SessionKeyring::New(name) = self else {
            return Ok(());
        };
        let name: *const libc::c_char = name.as_deref().map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING reads a NUL-terminated name from a valid
        // pointer, or takes NULL for an anonymous keyring; it writes no memory of ours.
        let serial = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name) };
        if serial >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) => Ok(()),
            _ => Err(err),
        }
    }
}

/// Starts a new session (and process group) led by this process: it has no controlling
/// terminal afterwards, until the container's own pty is made its controlling terminal.
pub(crate) fn leave_callers_session() -> Result<(), String> {
    nix::unistd::setsid()
        .map(drop)
        .map_err(|e| format!("cannot start a session of its own (setsid): {e}"))
}

/// Joins `keyring`; a refusal is said once on the process's stderr (the container's, where
/// its user looks) and the process goes on in its caller's keyring, as runc does in a user
/// namespace that may not make one.
pub(crate) fn join_keyring(keyring: &SessionKeyring) {
    if let Err(e) = keyring.join() {
        eprintln!(
            "peapod: warning: cannot join a session keyring of the container's own ({e}); \
             it shares its caller's"
        );
    }
}
