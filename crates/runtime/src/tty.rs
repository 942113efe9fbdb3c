//! `peapod run -t` and `peapod exec -t` without `--console-socket`: peapod itself holds the
//! process's pty and joins it to its own standard input and output, as `runc run -t` and
//! `docker exec -it` do: the caller's terminal in raw mode (restored at the end), its size
//! passed on at start and on every `SIGWINCH`.
//!
//! The relay only reads and writes bytes: the process can change its own pty as it likes,
//! but never the caller's terminal, on which peapod makes no call on its behalf (the only
//! ones are reading its size and setting and restoring raw mode).

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;
use peapod_container::{Exit, SignalForwarder};

/// A connected pair of unix sockets: the first end is the runtime's, to receive the pty master
/// through; the second goes to the process that makes the pty.
pub(crate) fn socket_pair() -> anyhow::Result<(UnixStream, UnixStream)> {
    UnixStream::pair().context("cannot make a socket for the terminal")
}

/// Receives the pty master the container process sent through `socket`.
pub(crate) fn receive_master(socket: &UnixStream) -> anyhow::Result<OwnedFd> {
    let mut name = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("cannot receive the container's terminal")?;
    for cmsg in msg
        .cmsgs()
        .context("cannot read the container's terminal")?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(anyhow!("the container sent no terminal"))
}

/// The caller's terminal in raw mode while this lives.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> anyhow::Result<RawMode> {
        let saved = termios::tcgetattr(fd).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).context("cannot make the terminal raw")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Copies the size of the caller's terminal (its stdin, else its stdout) to terminal `to`.
fn copy_caller_size(to: RawFd) {
    for from in [0, 1] {
        if copy_size(from, to) {
            return;
        }
    }
}

/// Copies the size of terminal `from` to terminal `to`, if `from` is one; whether it is.
fn copy_size(from: RawFd, to: RawFd) -> bool {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize through a valid pointer.
    if unsafe { libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) } == 0 {
        let size = peapod_container::WindowSize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        };
        let _ = peapod_container::set_window_size(to, size);
        return true;
    }
    false
}

/// Joins stdout, and stdin when `input`, to `master` until `pid` ends (forwarding signals
/// meanwhile), then returns its exit. Without `input` (docker's `-t` without `-i`) the
/// caller's terminal stays as it is: its keys are its own (Ctrl-C signals peapod, which
/// forwards the signal).
fn proxy(
    master: OwnedFd,
    forwarder: &SignalForwarder,
    pid: Pid,
    input: bool,
) -> anyhow::Result<Exit> {
    let stdin = std::io::stdin();
    // Restored when this returns, by any path: the `?`s below included. (A panic aborts
    // the release build without unwinding; nothing here panics.)
    let _raw = match input && stdin.is_terminal() {
        true => Some(RawMode::enter(stdin.as_fd())?),
        false => None,
    };
    copy_caller_size(master.as_raw_fd());
    let mut stdin_open = input;
    let mut master_open = true;
    let mut buf = [0u8; 8192];
    loop {
        // A closed end is left out: it would poll as ready (hung up) forever.
        let watched = [
            Some(forwarder.as_fd()),
            master_open.then(|| master.as_fd()),
            stdin_open.then(|| stdin.as_fd()),
        ];
        let mut fds: Vec<PollFd> = watched
            .iter()
            .flatten()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(anyhow!("poll: {e}")),
        }
        let mut ready = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()));
        let mut next_if = |watching: bool| watching && ready.next().unwrap_or(false);
        let signal = next_if(true);
        let output = next_if(master_open);
        let input = next_if(stdin_open);
        drop(fds);
        if output && master_open {
            master_open = copy(master.as_raw_fd(), 1, &mut buf);
        }
        if input {
            // End of input, as a terminal would send it: ^D, once; then stdin is done.
            if !copy(0, master.as_raw_fd(), &mut buf) {
                stdin_open = false;
                let _ = nix::unistd::write(&master, &[4]);
            }
        }
        if signal {
            let resized = forwarder.step(pid, |_| copy_caller_size(master.as_raw_fd()))?;
            if let Some(exit) = resized {
                if master_open {
                    drain(master.as_fd(), &mut buf);
                }
                return Ok(exit);
            }
        }
    }
}

/// [`proxy`] with its error as the container crate's, as the runtime's waits return it.
pub(crate) fn relay(
    master: OwnedFd,
    forwarder: &SignalForwarder,
    pid: Pid,
    input: bool,
) -> Result<Exit, peapod_container::Error> {
    proxy(master, forwarder, pid, input).map_err(|e| peapod_container::Error::Os {
        what: "the terminal failed",
        source: std::io::Error::other(format!("{e:#}")),
    })
}

/// How long [`drain`] waits for more output, in milliseconds.
const DRAIN_QUIET: u16 = 100;
/// How long [`drain`] reads, at most.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Copies what the process wrote last to standard output. Its exit does not make that
/// readable at once: the pty hands bytes to the master's side from a kernel work queue, which
/// a busy machine runs late. So the master is read until it reports the end (EIO, once no
/// process holds the slave; that read waits for the queue), or until nothing comes for
/// [`DRAIN_QUIET`] ms (a process the container left behind may hold the terminal open), and
/// never longer than [`DRAIN_LIMIT`] (one that keeps writing).
fn drain(master: BorrowedFd<'_>, buf: &mut [u8]) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < deadline && ready_within(master, DRAIN_QUIET) {
        if !copy(master.as_raw_fd(), 1, buf) {
            return;
        }
    }
}

/// Whether `fd` has something to read, or has hung up, within `ms` milliseconds.
fn ready_within(fd: BorrowedFd<'_>, ms: u16) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).is_ok_and(|n| n > 0)
        && fds[0].revents().is_some_and(|r| !r.is_empty())
}

/// Copies what one read of `from` gives to `to`; false at end of file or on an error (a
/// pty master reads EIO once no process holds the slave).
fn copy(from: RawFd, to: RawFd, buf: &mut [u8]) -> bool {
    // SAFETY: reading into a buffer we own, of its length.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    let Ok(n) = usize::try_from(n) else {
        return Errno::last() == Errno::EINTR || Errno::last() == Errno::EAGAIN;
    };
    if n == 0 {
        return false;
    }
    let mut written = 0;
    while written < n {
        // SAFETY: writing bytes of a buffer we own, within the part read.
        let w = unsafe { libc::write(to, buf[written..n].as_ptr().cast(), n - written) };
        match usize::try_from(w) {
            Ok(w) => written += w,
            Err(_) if Errno::last() == Errno::EINTR => {}
            Err(_) => return false,
        }
    }
    true
}
