//! A container's terminal (`process.terminal`): a pty made in the container's own devpts
//! instance, its slave the process's controlling terminal and stdio, its master sent over a
//! unix socket with `SCM_RIGHTS` to whoever drives it (runc's `--console-socket`: conmon, the
//! containerd shim, or `peapod run -t` itself).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// The size of a terminal, in characters (`process.consoleSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows (`height`).
    pub rows: u16,
    /// Columns (`width`).
    pub cols: u16,
}

/// Where the master of a container's pty goes, and how big the terminal starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Console {
    /// A connected unix socket, open in the runtime (and so inherited by the child).
    pub(crate) socket: RawFd,
    pub(crate) size: Option<WindowSize>,
}

/// A process with `process.terminal` needs somewhere to send its pty to.
pub(crate) fn check_console(
    terminal: Option<Option<WindowSize>>,
    console: Option<&Console>,
) -> crate::Result<()> {
    if terminal.is_some() && console.is_none() {
        return Err(crate::config::bad(
            "process.terminal",
            "a terminal needs a console socket (--console-socket) to send it to",
        )
        .into());
    }
    Ok(())
}

/// Sets `size` on the terminal `fd` (`TIOCSWINSZ`).
pub fn set_window_size(fd: RawFd, size: WindowSize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize from a valid pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// In the container process, after its `/dev` is set up: opens a pty from `/dev/ptmx` (the
/// container's devpts), makes the slave its controlling terminal (in a new session) and its
/// stdin, stdout and stderr, bind-mounts it on `/dev/console` when `mount_console` (as runc
/// does for the container's first process), and sends the master through the socket. The
/// process must lead a session with no controlling terminal.
pub(crate) fn set_up(console: &Console, mount_console: bool) -> Result<(), String> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot open /dev/ptmx: {e}"))?;
    grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let slave_path = ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    if let Some(size) = console.size {
        set_window_size(master.as_raw_fd(), size)
            .map_err(|e| format!("cannot set the console size: {e}"))?;
    }
    let slave: OwnedFd = nix::fcntl::open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    .map(|fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    .map_err(|e| format!("cannot open {slave_path}: {e}"))?;
    if mount_console {
        mount_on_console(&slave_path)?;
    }
    // The process leads a session of its own already (`session::leave_callers_session`),
    // with no controlling terminal: this pty becomes it.
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal from another session).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!(
            "cannot make {slave_path} the controlling terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    for fd in 0..=2 {
        nix::unistd::dup2(slave.as_raw_fd(), fd)
            .map_err(|e| format!("cannot make {slave_path} descriptor {fd}: {e}"))?;
    }
    // runc sends the master under the name of the file it was opened from.
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console.socket,
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| format!("cannot send the pty master to the console socket: {e}"))?;
    // The socket and the master (close-on-exec) go with this process's exec at the latest;
    // the socket now, so that the receiver sees its end.
    let _ = nix::unistd::close(console.socket);
    Ok(())
}

/// Bind-mounts the pty slave on `/dev/console` (a tmpfs of the runtime's making, inside the
/// new root), creating the mount point first.
fn mount_on_console(slave_path: &str) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let target = "/dev/console";
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)
        .map_err(|e| format!("cannot create {target}: {e}"))?;
    mount(
        Some(slave_path),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("cannot bind-mount {slave_path} on {target}: {e}"))
}
