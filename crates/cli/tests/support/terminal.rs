//! A pty the test owns, with a process (a shell, or peapod itself) as the controlling process
//! of its slave: the caller's terminal, as a person's terminal emulator would hold it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use nix::sys::termios::{self, LocalFlags, Termios};

use super::TIMEOUT;

/// A process on a pty of the test's; killed on drop. The test keeps the slave open too, so
/// the terminal's settings can be read after the process has ended.
pub struct Terminal {
    master: std::fs::File,
    slave: OwnedFd,
    pub child: Child,
    /// Everything read from the terminal so far.
    seen: String,
}

impl Terminal {
    /// `/bin/sh` on a new terminal.
    pub fn shell() -> Terminal {
        Terminal::spawn(Command::new("/bin/sh"), 24, 80)
    }

    /// Starts `command` on a new terminal of `rows` by `cols`, as the leader of a new session
    /// whose controlling terminal it is, with the slave as its stdin, stdout and stderr.
    pub fn spawn(mut command: Command, rows: u16, cols: u16) -> Terminal {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        // Close-on-exec: the other tests' processes, started meanwhile from this process,
        // must not hold this terminal open.
        for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .expect("close-on-exec");
        }
        let slave: OwnedFd = pty.slave;
        let slave_fd = slave.as_raw_fd();
        command
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave.try_clone().expect("dup")));
        // SAFETY: setsid and ioctl are async-signal-safe; the closure touches only the
        // descriptor number it copied.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setsid()?;
                if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let master = std::fs::File::from(pty.master);
        set_size(&master, rows, cols);
        let child = command.spawn().expect("spawn a process on the pty");
        nix::fcntl::fcntl(
            master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("non-blocking master");
        Terminal {
            master,
            slave,
            child,
            seen: String::new(),
        }
    }

    /// Types `line` into the terminal, as its user would.
    pub fn type_line(&mut self, line: &str) {
        self.type_bytes(format!("{line}\n").as_bytes());
    }

    /// Types `bytes` (0x03 is Ctrl-C) into the terminal.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to the pty");
    }

    /// Reads the terminal until `needle` has appeared after what was seen before; returns
    /// what came meanwhile.
    pub fn read_until(&mut self, needle: &str) -> String {
        let start = self.seen.len();
        let deadline = Instant::now() + TIMEOUT;
        while !self.seen[start..].contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} on the terminal; it showed {:?}",
                &self.seen[start..]
            );
            self.read_some(100);
        }
        self.seen[start..].to_owned()
    }

    /// Waits up to `ms` for output and adds what one read gives to what was seen.
    fn read_some(&mut self, ms: u16) {
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => {
                let mut fds = [nix::poll::PollFd::new(
                    self.master.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            }
        }
    }

    /// Gives the terminal a new size, as a terminal emulator does when its window changes
    /// (the kernel signals the terminal's foreground process group).
    pub fn resize(&self, rows: u16, cols: u16) {
        set_size(&self.master, rows, cols);
    }

    /// Sends `signal` to the terminal's process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    /// Waits at most [`TIMEOUT`] for the process to end, reading its output meanwhile (a full
    /// terminal would block it); its exit code, or 128 + the signal that ended it.
    pub fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // What it wrote last.
                self.read_some(0);
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            assert!(
                Instant::now() < deadline,
                "the terminal's process did not end; it showed {:?}",
                self.seen
            );
            self.read_some(10);
        }
    }

    /// Everything shown on the terminal so far.
    pub fn seen(&self) -> &str {
        &self.seen
    }

    /// The terminal's settings now.
    pub fn termios(&self) -> Termios {
        termios::tcgetattr(self.slave.as_fd()).expect("tcgetattr")
    }

    /// Whether the terminal is in cooked mode: it echoes and edits lines, as a shell leaves it.
    pub fn is_cooked(&self) -> bool {
        let flags = self.termios().local_flags;
        flags.contains(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG)
    }
}

fn set_size(master: &std::fs::File, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize from a valid pointer.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
