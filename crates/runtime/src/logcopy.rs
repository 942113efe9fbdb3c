//! The log of a container whose parent is not a `run -d` monitor (a played pod's, whose
//! monitor must be the parent to learn exit statuses; a `run -d --pod` of a bundle): its
//! stdout and stderr are pipes, and a small process of its own, the copier, writes them
//! into the container's log ([`crate::logfile`]: the CRI format, rotated) as the monitor
//! of `run -d` does, with the same policy: a log that cannot be written (a full disk) is
//! given up and the output read on and dropped, so the container never blocks on more than
//! a full pipe; readers (`logs -f`) read the file and never slow the copier.
//!
//! ```text
//! let (output, copier) = logcopy::pipes(limits)?;   // the container's stdout/stderr: output
//! ... create the container with them, then drop `output` ...
//! copier.spawn(&rt, "web-app")?;   // once its state directory exists
//! ```
//!
//! The copier ends when both pipes are closed: when the last process of the container
//! holding them is gone. Its identity is kept beside the log (`container.log.writer`), so
//! that `logs -f` knows when the log is complete.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::anyhow;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use peapod_state::ProcessIdentity;

use crate::logfile::{LogLimits, LogWriter, Stream};
use crate::monitor::Pipe;
use crate::{Error, Result, Runtime};

/// The copier's identity, beside the log.
const WRITER_FILE: &str = "container.log.writer";

/// The write ends: what the container gets as stdout and stderr.
#[derive(Debug)]
pub struct OutputPipes {
    /// Its stdout.
    pub stdout: OwnedFd,
    /// Its stderr.
    pub stderr: OwnedFd,
}

/// The read ends, to hand to [`LogCopier::spawn`] once the container exists.
#[derive(Debug)]
pub struct LogCopier {
    stdout: OwnedFd,
    stderr: OwnedFd,
    limits: LogLimits,
}

/// Two pipes for a container's output, and the copier of what comes out of them into a log
/// kept within `limits`.
pub fn pipes(limits: LogLimits) -> Result<(OutputPipes, LogCopier)> {
    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| Error::runtime(anyhow!("cannot make a pipe: {e}")))
    };
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    Ok((
        OutputPipes {
            stdout: out_write,
            stderr: err_write,
        },
        LogCopier {
            stdout: out_read,
            stderr: err_read,
            limits,
        },
    ))
}

impl LogCopier {
    /// Starts the copier of container `id`'s output into its log (in its state directory,
    /// which must exist): a process of its own, in a session of its own.
    pub fn spawn(self, rt: &Runtime, id: &str) -> Result<()> {
        let id: peapod_state::ContainerId = id.parse()?;
        let dir = rt.root.join(id.as_str());
        let writer = LogWriter::open(&dir, self.limits)
            .map_err(|e| Error::runtime(anyhow!("container {id}: cannot make its log: {e}")))?;
        let mut keep = writer.fds().to_vec();
        keep.extend([self.stdout.as_raw_fd(), self.stderr.as_raw_fd()]);
        let LogCopier { stdout, stderr, .. } = self;
        let pid = crate::daemon::spawn(c"peapod-log", &keep, move || {
            copy(stdout, stderr, writer);
            0
        })?;
        if let Some(identity) = ProcessIdentity::of(pid.as_raw()) {
            let text = serde_json::to_vec(&identity).unwrap_or_default();
            if let Err(e) = std::fs::write(dir.join(WRITER_FILE), text) {
                tracing::warn!("container {id}: cannot record its log's writer: {e}");
            }
        }
        Ok(())
    }
}

/// The copier of the log in container state directory `dir`, if it has one.
pub fn writer(dir: &Path) -> Option<ProcessIdentity> {
    std::fs::read(dir.join(WRITER_FILE))
        .ok()
        .and_then(|text| serde_json::from_slice::<ProcessIdentity>(&text).ok())
}

/// Whether the copier of the log in state directory `dir` still runs (its log may grow).
pub(crate) fn writer_alive(dir: &Path) -> bool {
    writer(dir).is_some_and(|p| p.is_alive())
}

/// The copier: both pipes into the log until both are closed.
fn copy(stdout: OwnedFd, stderr: OwnedFd, writer: LogWriter) {
    let mut log = Some(writer);
    let mut pipes = [
        Pipe::new(stdout, Stream::Stdout),
        Pipe::new(stderr, Stream::Stderr),
    ];
    while pipes.iter().any(Pipe::is_open) {
        let mut fds: Vec<PollFd> = pipes
            .iter()
            .filter_map(Pipe::fd)
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let mut ready = ready.into_iter();
        for pipe in pipes.iter_mut().filter(|p| p.is_open()) {
            if ready.next() == Some(true) {
                pipe.read(&mut log);
            }
        }
    }
}
