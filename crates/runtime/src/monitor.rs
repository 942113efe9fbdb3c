//! A detached container's monitor (`run -d` with a log): the process that creates the
//! container, stays as its parent, copies its output into its log, records how it ended,
//! and removes it after `--rm`.
//!
//! `run` forks twice, as a daemon does: the first child starts a session of its own (no
//! terminal's signals reach it) and exits at once, so the caller reaps it and is left with
//! no child; the grandchild creates the container with its stdout and stderr on two pipes
//! and its stdin on `/dev/null`, starts it, reports the result to the caller over a pipe
//! (`ok`, or the exit status and message of the error) and, its own stdio on `/dev/null`,
//! execs the monitor command (`peapod monitor ... ID PID OUT ERR`). The caller prints the ID
//! and returns while the container runs: none of its descriptors stays with the container
//! or the monitor, so `ID=$(peapod run -d ...)` returns at once.
//!
//! The monitor is recorded as the container's owner (its identity survives the exec): if it
//! is killed, the next command finds the record abandoned and removes the container, as
//! for a killed foreground `run` (see `leftovers.rs`). When the container has exited and
//! its pipes are drained, the monitor records the exit and clears the owner; `logs -f` and
//! `wait` take that as the end.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{anyhow, Context as _};
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{dup2, fork, ForkResult, Pid};
use peapod_container::Created;
use peapod_state::{ContainerId, Durability, ExitRecord, ProcessIdentity};

use crate::create::CreateOptions;
use crate::logfile::{LogLimits, LogWriter, Stream, MAX_RECORD};
use crate::restart::{self, Backoff, Launch};
use crate::run::DetachedLog;
use crate::{Error, Result, Runtime};

/// What `peapod monitor` is handed by the process that made the container.
#[derive(Debug)]
pub struct MonitorOptions {
    /// The container process, a child of this process.
    pub pid: i32,
    /// The read end of the container's stdout pipe, or the master of its pty (`run -dt`).
    pub stdout: OwnedFd,
    /// The read end of its stderr pipe (none with a pty, which has both streams).
    pub stderr: Option<OwnedFd>,
    /// How much log is kept.
    pub limits: LogLimits,
    /// Remove the container once it has exited.
    pub remove: bool,
}

/// Runs container `id` detached under a monitor (see the module doc); returns in the
/// caller once the container runs (0), or with the error that kept it from running.
/// `terminal`: its process has a pty, whose master the monitor holds and logs.
pub(crate) fn run_detached(
    rt: &Runtime,
    id: &str,
    mut options: CreateOptions,
    log: DetachedLog,
    terminal: bool,
    create: impl FnOnce(&CreateOptions) -> Result<Created>,
) -> Result<i32> {
    let (report_read, report_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("cannot make a pipe"))?;
    // SAFETY: the runtime is single-threaded (see the crate doc), so the child may do
    // anything the parent could.
    match unsafe { fork() }.map_err(os("cannot fork the monitor"))? {
        ForkResult::Parent { child } => {
            drop(report_write);
            // The middle process exits at once (below); the monitor is not our child.
            let _ = waitpid(child, None);
            read_report(report_read)
        }
        ForkResult::Child => {
            drop(report_read);
            let _ = nix::unistd::setsid();
            // SAFETY: as above: one thread.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {}
                Ok(ForkResult::Parent { .. }) => exit_now(0),
                Err(e) => {
                    report(
                        &report_write,
                        Err(&Error::runtime(anyhow!("cannot fork: {e}"))),
                    );
                    exit_now(0)
                }
            }
            options.monitored = true;
            match start_with_output(rt, id, &mut options, terminal, create) {
                Ok((pid, stdout, stderr)) => {
                    // Made before the caller returns, so that a `logs` right after it finds
                    // the log (the exec'd monitor opens it again).
                    if let Err(e) = LogWriter::open(&rt.root.join(id), log.limits) {
                        tracing::warn!("container {id}: cannot make its log: {e}");
                    }
                    report(&report_write, Ok(()));
                    drop(report_write);
                    let monitor = MonitorOptions {
                        pid: pid.as_raw(),
                        stdout,
                        stderr,
                        limits: log.limits,
                        remove: log.remove,
                    };
                    let monitor = match &log.exec {
                        Some(command) => exec_monitor(command, id, monitor),
                        None => monitor,
                    };
                    if let Err(e) = self::monitor(rt, id, monitor) {
                        tracing::warn!("monitor of container {id}: {}", e.one_line());
                    }
                    exit_now(0)
                }
                Err(e) => {
                    report(&report_write, Err(&e));
                    exit_now(0)
                }
            }
        }
    }
}

/// Ends this forked process without running anything of the parent's (no atexit, no
/// buffered output of the caller written twice).
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(code) }
}

fn os(what: &'static str) -> impl Fn(nix::Error) -> Error {
    move |e| Error::runtime(anyhow!("{what}: {e}"))
}

/// Sends the outcome to the caller: `ok`, or `CODE MESSAGE`.
fn report(to: &OwnedFd, outcome: std::result::Result<(), &Error>) {
    let text = match outcome {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("{} {}", e.exit_code(), e.one_line()),
    };
    // The caller may be gone (killed): nobody to tell, and the container runs anyway. Short
    // enough to go in one write (a pipe takes 4 KiB atomically).
    let _ = nix::unistd::write(to, text.as_bytes());
}

/// The caller's side of [`report`]: the monitor's outcome as this call's.
fn read_report(from: OwnedFd) -> Result<i32> {
    let mut text = String::new();
    std::fs::File::from(from)
        .read_to_string(&mut text)
        .context("cannot read the monitor's report")
        .map_err(Error::runtime)?;
    if text == "ok" {
        return Ok(0);
    }
    match text.split_once(' ') {
        Some((code, message)) => Err(Error::Reported {
            code: code.parse().unwrap_or(125),
            message: message.to_owned(),
        }),
        None => Err(Error::runtime(anyhow!(
            "the process starting the container died before it reported"
        ))),
    }
}

/// In the monitor: creates and starts the container with stdin on `/dev/null` and stdout
/// and stderr on pipes, or with a `terminal` (a pty of its own); its PID and what the
/// monitor reads (the pipes' read ends, or the pty's master). This process's own stdio ends
/// on `/dev/null`, letting the caller's go.
fn start_with_output(
    rt: &Runtime,
    id: &str,
    options: &mut CreateOptions,
    terminal: bool,
    create: impl FnOnce(&CreateOptions) -> Result<Created>,
) -> Result<(Pid, OwnedFd, Option<OwnedFd>)> {
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")
        .map_err(Error::runtime)?;
    if terminal {
        return start_with_pty(rt, id, options, &null, create);
    }
    let (out_read, out_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("cannot make a pipe"))?;
    let (err_read, err_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("cannot make a pipe"))?;
    // What the container process inherits. While it is made, this process's own messages
    // (warnings) go to its stderr too, so into its log, where they concern it.
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (out_write.as_raw_fd(), 1),
        (err_write.as_raw_fd(), 2),
    ] {
        dup2(from, to).map_err(os("cannot redirect stdio"))?;
    }
    drop((out_write, err_write));
    let started = crate::run::start_detached(rt, id, options, create);
    // Ours go, whatever happened: the caller's were let go above, the pipes are the
    // container's alone, so that they end when its processes do.
    for fd in [1, 2] {
        let _ = dup2(null.as_raw_fd(), fd);
    }
    let pid = started?;
    // Not to keep a directory of the caller's busy (a mount point it may unmount).
    let _ = std::env::set_current_dir("/");
    Ok((pid, out_read, Some(err_read)))
}

/// [`start_with_output`] with a pty: the container makes it and sends its master through a
/// socket while it is created.
fn start_with_pty(
    rt: &Runtime,
    id: &str,
    options: &mut CreateOptions,
    null: &std::fs::File,
    create: impl FnOnce(&CreateOptions) -> Result<Created>,
) -> Result<(Pid, OwnedFd, Option<OwnedFd>)> {
    for fd in [0, 1, 2] {
        dup2(null.as_raw_fd(), fd).map_err(os("cannot redirect stdio"))?;
    }
    let (ours, theirs) = crate::tty::socket_pair().map_err(Error::runtime)?;
    options.console_stream = Some(theirs);
    let started = crate::run::start_detached(rt, id, options, create);
    options.console_stream = None;
    let pid = started?;
    // Sent while it was created; waiting in the socket.
    let master = crate::tty::receive_master(&ours).map_err(Error::runtime)?;
    let _ = std::env::set_current_dir("/");
    Ok((pid, master, None))
}

/// Becomes the monitor command with `ID PID OUT ERR` appended; returns the options back only
/// when the exec failed.
fn exec_monitor(command: &[CString], id: &str, options: MonitorOptions) -> MonitorOptions {
    let Some(program) = command.first() else {
        return options;
    };
    let mut argv = command.to_vec();
    let stderr = options.stderr.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    for arg in [
        id.to_owned(),
        options.pid.to_string(),
        options.stdout.as_raw_fd().to_string(),
        stderr.to_string(),
    ] {
        match CString::new(arg) {
            Ok(arg) => argv.push(arg),
            Err(_) => return options,
        }
    }
    // Inherited across the exec: stdio and the two pipes only. Nothing the caller left open
    // without close-on-exec (a harness's pipe, say) is kept open for the container's life:
    // whoever waits for its end would wait as long.
    let keep = [options.stdout.as_raw_fd(), stderr];
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        let _ = nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    for fd in keep.into_iter().filter(|fd| *fd >= 0) {
        if nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).is_err() {
            return options;
        }
    }
    // This very program when the command names it (through /proc/self/exe, which also
    // works when it runs from a sealed in-memory copy of itself, whose path is none).
    let this_program = std::env::current_exe()
        .is_ok_and(|exe| exe.as_os_str().as_encoded_bytes() == program.to_bytes());
    let path = if this_program {
        c"/proc/self/exe"
    } else {
        program.as_c_str()
    };
    let e = nix::unistd::execv(path, &argv).unwrap_err();
    tracing::debug!(
        "cannot exec the monitor {} ({e}); monitoring in this process",
        program.to_string_lossy()
    );
    for fd in keep.into_iter().filter(|fd| *fd >= 0) {
        let _ = nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    options
}

/// The read end of a pipe (or a pty's master) handed over as descriptor `fd` (`peapod
/// monitor`'s arguments): refused unless it is one.
pub fn inherited_pipe(fd: RawFd) -> Result<OwnedFd> {
    let stat = nix::sys::stat::fstat(fd).map_err(os("not an open descriptor"))?;
    if !matches!(stat.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFCHR) {
        return Err(Error::usage(anyhow!("descriptor {fd} is not a pipe")));
    }
    let _ = nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    // SAFETY: the descriptor was handed to this process to own (checked open and a pipe
    // above); nothing else in it uses it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One of the container's output pipes, and its line not yet written.
pub(crate) struct Pipe {
    fd: Option<OwnedFd>,
    stream: Stream,
    line: Vec<u8>,
}

impl Pipe {
    /// The read end of the pipe of `stream`.
    pub(crate) fn new(fd: OwnedFd, stream: Stream) -> Pipe {
        Pipe {
            fd: Some(fd),
            stream,
            line: Vec::new(),
        }
    }

    /// Whether it has not been closed yet.
    pub(crate) fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    /// Its descriptor, while open.
    pub(crate) fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// Reads what is there; writes every whole line (and full records of a long one).
    pub(crate) fn read(&mut self, log: &mut Option<LogWriter>) {
        let Some(fd) = &self.fd else { return };
        let mut buf = [0u8; 64 << 10];
        let n = match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(n) => n,
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => return,
            Err(_) => 0,
        };
        if n == 0 {
            // Closed: what is left is a line without its newline.
            if !self.line.is_empty() {
                write(log, self.stream, true, &self.line);
            }
            flush(log);
            self.line.clear();
            self.fd = None;
            return;
        }
        self.line.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = self.line[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.line[start..start + end];
            while line.len() > MAX_RECORD {
                write(log, self.stream, true, &line[..MAX_RECORD]);
                line = &line[MAX_RECORD..];
            }
            write(log, self.stream, false, line);
            start += end + 1;
        }
        self.line.drain(..start);
        while self.line.len() >= MAX_RECORD {
            write(log, self.stream, true, &self.line[..MAX_RECORD]);
            self.line.drain(..MAX_RECORD);
        }
        flush(log);
    }
}

/// Writes the records gathered from one read; as [`write`], a failure gives the log up.
fn flush(log: &mut Option<LogWriter>) {
    if let Some(writer) = log {
        if let Err(e) = writer.flush() {
            tracing::warn!("cannot write the container's log: {e}");
            *log = None;
        }
    }
}

/// Writes a record; a log that cannot be written is given up (the output is then dropped,
/// never left to fill the pipe and block the container).
fn write(log: &mut Option<LogWriter>, stream: Stream, partial: bool, content: &[u8]) {
    if let Some(writer) = log {
        if let Err(e) = writer.write(stream, partial, content) {
            tracing::warn!("cannot write the container's log: {e}");
            *log = None;
        }
    }
}

/// The monitor itself: copies the pipes into the log until both close, collects the
/// container when it exits and records it; starts it again when its restart policy says so
/// (see `restart.rs`); at the end removes the container (`remove`) or clears its owner.
/// Holds no lock but for the moments it saves the record.
pub(crate) fn monitor(rt: &Runtime, id: &str, options: MonitorOptions) -> Result<i32> {
    let id: ContainerId = id.parse()?;
    let dir = rt.root.join(id.as_str());
    let mut log = match LogWriter::open(&dir, options.limits) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::warn!("container {id}: cannot open its log: {e}");
            None
        }
    };
    let mut current = (Pid::from_raw(options.pid), options.stdout, options.stderr);
    let mut backoff = Backoff::new();
    loop {
        let started = std::time::Instant::now();
        let (pid, stdout, stderr) = current;
        let code = watch(pid, stdout, stderr, &mut log, |code| {
            record_exit(rt, &id, code)
        })?;
        let Some(delay) = restart::next_start(rt, &id, code, started.elapsed(), &mut backoff)
        else {
            break;
        };
        if !restart::wait_to_restart(rt, &id, delay) {
            break;
        }
        match start_again_by_policy(rt, &id) {
            Ok(next) => current = next,
            Err(e) => {
                let message = format!("peapod: cannot start it again: {}", e.one_line());
                write(&mut log, Stream::Stderr, false, message.as_bytes());
                break;
            }
        }
    }
    drop(log);
    if options.remove {
        match crate::delete::delete(rt, &id, true) {
            Ok(()) | Err(Error::State(peapod_state::Error::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
        return Ok(0);
    }
    // Unless a `start` has given it a monitor of its own meanwhile.
    let this = ProcessIdentity::of(std::process::id() as i32);
    update_record(rt, &id, |record| {
        if record.owner == this {
            record.owner = None;
            record.restarting = false;
        }
    });
    Ok(0)
}

/// In the monitor: container `id` made and started again by its restart policy.
fn start_again_by_policy(
    rt: &Runtime,
    id: &ContainerId,
) -> Result<(Pid, OwnedFd, Option<OwnedFd>)> {
    let launch = Launch::load(rt, id)?;
    let mut options = launch.create_options()?;
    start_with_output(
        rt,
        id.as_str(),
        &mut options,
        launch.terminal(),
        |options| launch.recreate(rt, id.as_str(), options, restart::by_policy),
    )
}

/// Container `id`, a `run -d` container that has exited, made and started again under a
/// new monitor (`peapod start`, `restart`); `exec` is the monitor's command line for the
/// log's limits (see [`DetachedLog::exec`]).
pub(crate) fn start_again(
    rt: &Runtime,
    id: &str,
    exec: impl FnOnce(crate::logfile::LogLimits) -> Option<Vec<CString>>,
) -> Result<()> {
    let cid: ContainerId = id.parse()?;
    let launch = Launch::load(rt, &cid)?;
    let options = launch.create_options()?;
    let log = DetachedLog {
        limits: launch.limits(),
        remove: false,
        exec: exec(launch.limits()),
        // Its record keeps the policy.
        ..DetachedLog::default()
    };
    run_detached(rt, id, options, log, launch.terminal(), |options| {
        launch.recreate(rt, id, options, restart::by_hand)
    })?;
    Ok(())
}

/// Copies the container's output into the log until it has exited (told to `on_exit` at
/// once) and its pipes (or pty) are drained; its exit status.
fn watch(
    pid: Pid,
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    log: &mut Option<LogWriter>,
    on_exit: impl FnOnce(i32),
) -> Result<i32> {
    let mut on_exit = Some(on_exit);
    // Without pidfd_open (before Linux 5.3) the monitor looks every 100 ms.
    let pidfd = crate::daemon::pidfd_open(pid.as_raw());
    let mut pipes = [
        Pipe {
            fd: Some(stdout),
            stream: Stream::Stdout,
            line: Vec::new(),
        },
        Pipe {
            fd: stderr,
            stream: Stream::Stderr,
            line: Vec::new(),
        },
    ];
    let mut exited = None;
    while exited.is_none() || pipes.iter().any(|p| p.fd.is_some()) {
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        for pipe in &pipes {
            if let Some(fd) = &pipe.fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        let watch_exit = exited.is_none() && pidfd.is_some();
        if let (true, Some(pidfd)) = (watch_exit, &pidfd) {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = match exited.is_some() || pidfd.is_some() {
            true => PollTimeout::NONE,
            false => PollTimeout::from(100u8),
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::runtime(anyhow!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let mut ready = ready.into_iter();
        for pipe in pipes.iter_mut().filter(|p| p.fd.is_some()) {
            if ready.next() == Some(true) {
                pipe.read(log);
            }
        }
        if exited.is_none() {
            exited = collect(pid)?;
            if let Some(code) = exited {
                if let Some(on_exit) = on_exit.take() {
                    on_exit(code);
                }
            }
        }
    }
    Ok(exited.unwrap_or_default())
}

/// The container's exit status once it has exited (as a shell reports a signal: 128 + it).
fn collect(pid: Pid) -> Result<Option<i32>> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
        Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some(128 + signal as i32)),
        Ok(_) | Err(nix::Error::EINTR) => Ok(None),
        // Not our child (cannot happen but for a monitor started by hand): nothing to wait.
        Err(e) => Err(Error::runtime(anyhow!(
            "cannot wait for process {pid}: {e}"
        ))),
    }
}

/// Records the exit: code and time, synced (`wait` and `state` read it after a crash too).
fn record_exit(rt: &Runtime, id: &ContainerId, code: i32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if code == 128 + libc::SIGKILL {
        crate::cgroups::report_oom(rt, id);
    }
    update_record(rt, id, |record| {
        record.exit = Some(ExitRecord {
            code,
            finished: now.as_secs(),
            finished_nanos: now.subsec_nanos(),
        })
    });
}

/// Changes the container's record under its lock; a container deleted meanwhile (`rm -f`)
/// has nothing to change.
fn update_record(rt: &Runtime, id: &ContainerId, change: impl FnOnce(&mut peapod_state::Record)) {
    let result = (|| {
        let entry = rt.store()?.load(id)?;
        if let Some(mut record) = entry.record()? {
            change(&mut record);
            entry.save(&record, Durability::Synced)?;
        }
        Ok::<(), Error>(())
    })();
    match result {
        Ok(()) | Err(Error::State(peapod_state::Error::NotFound(_))) => {}
        Err(e) => tracing::warn!("container {id}: cannot update its record: {}", e.one_line()),
    }
}
