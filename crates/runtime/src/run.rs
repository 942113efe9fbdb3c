//! Running a container: created and started in one go, in the foreground (waiting,
//! forwarding signals, deleting it at the end) or detached.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use peapod_cgroups::Cgroup;
use peapod_container::SignalForwarder;
use peapod_state::ContainerId;

use crate::create::{create_recorded, CreateOptions};
use crate::{Error, Result, Runtime};

/// How a container is run, beyond its spec.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Return once it runs, leaving it to run on its own (its process waits on the exec
    /// fifo until then), rather than wait for it and delete it.
    pub detach: bool,
    /// Where its PID is written.
    pub pid_file: Option<PathBuf>,
    /// Where the pty master of a `process.terminal` container is sent; without it, a
    /// foreground run joins the terminal to its own stdio.
    pub console_socket: Option<PathBuf>,
    /// The cgroup of its pod, which its own is made below.
    pub cgroup_parent: Option<Cgroup>,
    /// In the foreground, without a terminal to relay: hand the waiting over to the small
    /// init (`peapod-init --watch`, exec'd from the entrypoint guard's sealed copy) and have
    /// it exec this command line when the container has exited, which must end in
    /// [`Runtime::finish`](crate::Runtime::finish). A container that runs for hours is then
    /// waited for by a process of a few hundred kilobytes instead of the whole runtime.
    /// Only an exec replaces the caller, so only a program's own `main` should ask for it;
    /// without the guard, or if the exec fails, the run waits itself.
    pub then_finish: Option<Vec<std::ffi::CString>>,
    /// A root made of an image's layers (see [`CreateOptions::image`]).
    pub image: Option<crate::image::ImageRoot>,
    /// Keep the caller's session keyring (see [`CreateOptions::no_new_keyring`]).
    pub no_new_keyring: bool,
    /// Detached, with the output in a log of its own and a monitor process that waits for
    /// it (see [`DetachedLog`]); without it, a detached container keeps the caller's stdio.
    pub log: Option<DetachedLog>,
    /// Its own `/etc/hosts` and `/etc/resolv.conf` (see [`crate::EtcFiles`]).
    pub etc: crate::EtcFiles,
}

/// A detached container's log and monitor (`run -d` from an image or `--rootfs`): `run`
/// forks a process that creates the container with pipes for its stdout and stderr, and
/// returns once it runs; that process stays, in a session of its own, as the container's
/// parent: it copies the pipes into the log (see [`crate::logfile`]), collects the exit
/// status into the record, and removes the container after it when `remove` is set.
#[derive(Debug, Default)]
pub struct DetachedLog {
    /// How much log is kept.
    pub limits: crate::logfile::LogLimits,
    /// Remove the container when it exits (`run -d --rm`).
    pub remove: bool,
    /// The monitor becomes this command line with `ID PID STDOUT_FD STDERR_FD` appended,
    /// which must end in [`Runtime::monitor`](crate::Runtime::monitor): a fresh process
    /// holds nothing of the runtime's (no lock, no heap of the create) and costs less memory
    /// than the one that made the container. Without it, or if the exec fails, the monitor
    /// goes on in the process as it is.
    pub exec: Option<Vec<std::ffi::CString>>,
    /// When its monitor starts it again after it has exited (`--restart`).
    pub restart: crate::RestartPolicy,
}

/// Runs container `id`; `created` is told whether its creation succeeded, as soon as that is
/// known (a pod releases its lock, or forgets the member, there). Returns the status the
/// caller should exit with: the container's own in the foreground, else 0.
pub(crate) fn run(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    run: RunOptions,
    created: impl FnOnce(bool),
) -> Result<i32> {
    let mut options = CreateOptions {
        pid_file: run.pid_file,
        console_socket: run.console_socket,
        cgroup_parent: run.cgroup_parent,
        image: run.image,
        no_new_keyring: run.no_new_keyring,
        etc: run.etc,
        ..CreateOptions::default()
    };
    let create = |options: &CreateOptions| {
        let result = create_recorded(rt, id, spec, bundle, options);
        created(result.is_ok());
        result
    };
    if run.detach {
        options.fifo = true;
        if let Some(log) = run.log {
            return run_logged(rt, id, spec, bundle, options, log, create);
        }
        start_detached(rt, id, &options, create)?;
        return Ok(0);
    }
    foreground(rt, id, spec, options, run.then_finish.as_deref(), create)
}

/// A foreground `run` of container `id` with nothing but `options` (a bundle's, as runc's
/// `run`): what [`run`] does without `detach`. Linked alone, it leaves out the monitor's and
/// the log's code.
pub(crate) fn run_foreground(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    options: CreateOptions,
    then_finish: Option<&[std::ffi::CString]>,
) -> Result<i32> {
    foreground(rt, id, spec, options, then_finish, |options| {
        create_recorded(rt, id, spec, bundle, options)
    })
}

/// Creates container `id` with `create`, starts it, waits for it forwarding signals (and
/// relaying its terminal when nobody else takes it) or hands the waiting to the small init
/// (see [`RunOptions::then_finish`]), and deletes it; its exit status.
fn foreground(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    mut options: CreateOptions,
    then_finish: Option<&[std::ffi::CString]>,
    create: impl FnOnce(&CreateOptions) -> Result<peapod_container::Created>,
) -> Result<i32> {
    // A terminal nobody else takes: peapod holds its master and joins it to its own stdio.
    let wants_terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let own_terminal = match wants_terminal && options.console_socket.is_none() {
        true => {
            let (ours, theirs) = crate::tty::socket_pair().map_err(Error::runtime)?;
            options.console_stream = Some(theirs);
            Some(ours)
        }
        false => None,
    };
    // Installed before the container exists, so no signal sent meanwhile is lost.
    let forwarder = match own_terminal {
        Some(_) => SignalForwarder::install_for_terminal()?,
        None => SignalForwarder::install()?,
    };
    let created = create(&options)?;
    // The container sent the master while it was created.
    let master = own_terminal
        .as_ref()
        .map(crate::tty::receive_master)
        .transpose()
        .map_err(Error::runtime)?;
    let id: ContainerId = id.parse()?;
    let started = created.start();
    let exit = started.and_then(|pid| {
        tracing::debug!("container process {pid} started");
        if spec.hooks().is_some() {
            let record = rt
                .store()
                .ok()
                .and_then(|s| s.load(&id).ok()?.record().ok()?);
            if let Some(record) = record {
                crate::create::run_logged_hooks(&record, "poststart", "running", pid.as_raw());
            }
        }
        if let (None, Some(then)) = (&master, then_finish) {
            match wait_briefly(&forwarder, pid)? {
                Some(exit) => return Ok(exit),
                None => hand_off(rt, pid, then),
            }
        }
        match master {
            // A foreground run always passes its stdin on (as `runc run`, with or without
            // `-i`), so the terminal's input is relayed too.
            Some(master) => crate::tty::relay(master, &forwarder, pid, true),
            None => forwarder.wait(pid),
        }
    });
    if let Ok(peapod_container::Exit::Signal(signal)) = exit {
        if signal == nix::sys::signal::Signal::SIGKILL as i32 {
            crate::cgroups::report_oom(rt, &id);
        }
    }
    // The foreground container is gone (or never ran): so goes its record.
    let cleaned = crate::delete::delete(rt, &id, true);
    let code = exit?.code();
    cleaned?;
    Ok(code)
}

/// `run -d` with a log and monitor: what the container is made from is kept with it, so that
/// it can be started again (see `restart.rs`).
fn run_logged(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    options: CreateOptions,
    log: DetachedLog,
    create: impl FnOnce(&CreateOptions) -> Result<peapod_container::Created>,
) -> Result<i32> {
    let launch = crate::restart::Launch::new(spec, bundle, &options, log.limits);
    let policy = log.restart;
    // A pty whose master goes to the caller's `--console-socket` is not the monitor's.
    let terminal = launch.terminal() && options.console_socket.is_none();
    crate::monitor::run_detached(rt, id, options, log, terminal, |options| {
        let created = create(options)?;
        if let Err(e) = crate::restart::save_launch(rt, id, &launch, policy) {
            // Its process dies with `created`; the rest goes with the entry.
            drop(created);
            let _ = crate::delete::delete(rt, &id.parse()?, true);
            return Err(e);
        }
        Ok(created)
    })
}

/// `run --detach` without a log or monitor (runc's `run -d`): creates container `id` at its
/// exec fifo and starts it, leaving it with the caller's stdio. What [`run`] does for such a
/// run, without the code of the others (a small binary links only this).
pub(crate) fn run_detached(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    mut options: CreateOptions,
) -> Result<()> {
    options.fifo = true;
    start_detached(rt, id, &options, |options| {
        create_recorded(rt, id, spec, bundle, options)
    })?;
    Ok(())
}

/// Creates container `id` at its exec fifo and starts it, leaving it to run on its own;
/// its PID.
pub(crate) fn start_detached(
    rt: &Runtime,
    id: &str,
    options: &CreateOptions,
    create: impl FnOnce(&CreateOptions) -> Result<peapod_container::Created>,
) -> Result<nix::unistd::Pid> {
    let created = create(options)?;
    let pid = created.detach();
    // Not kill(pid, 0): the process is our child, and a zombie would pass for alive.
    let process = peapod_state::ProcessIdentity::of(pid.as_raw());
    let alive = || process.is_some_and(|p| p.is_alive());
    let entry = rt.store()?.load(&id.parse()?)?;
    peapod_container::start_fifo(
        &entry.exec_fifo(),
        alive,
        std::time::Duration::from_secs(10),
    )?;
    if let Some(record) = entry.record()? {
        crate::create::run_logged_hooks(&record, "poststart", "running", pid.as_raw());
    }
    Ok(pid)
}

/// How long a foreground run waits itself before handing the waiting to the small init: a
/// short job ends sooner than the two execs of the hand-off would take (about 1.5 ms), and
/// only a container that keeps running is worth the memory saved.
const HAND_OFF_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits for `pid` for at most [`HAND_OFF_AFTER`], forwarding signals meanwhile; its exit,
/// or `None` when it still runs.
fn wait_briefly(
    forwarder: &SignalForwarder,
    pid: nix::unistd::Pid,
) -> std::result::Result<Option<peapod_container::Exit>, peapod_container::Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = std::time::Instant::now() + HAND_OFF_AFTER;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [PollFd::new(forwarder.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, timeout) {
            // Nothing came: the container still runs.
            Ok(0) if left.is_zero() => return Ok(None),
            Ok(0) => continue,
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                return Err(peapod_container::Error::Os {
                    what: "failed to poll for signals",
                    source: e.into(),
                })
            }
        }
        // Readable: one signal to read (or forward), which does not block.
        if let Some(exit) = forwarder.step(pid, |_| {})? {
            return Ok(Some(exit));
        }
    }
}

/// Becomes `peapod-init --watch PID THEN...` through the entrypoint guard; returns only when
/// that cannot be done (no guard, or the exec failed), and the caller then waits itself.
fn hand_off(rt: &Runtime, pid: nix::unistd::Pid, then: &[std::ffi::CString]) {
    let Some(guard) = &rt.entrypoint_guard else {
        return;
    };
    let (Some(program), Ok(pid)) = (then.first(), std::ffi::CString::new(pid.to_string())) else {
        return;
    };
    let mut argv = vec![
        c"peapod-init".to_owned(),
        c"--watch".to_owned(),
        pid,
        program.clone(),
    ];
    argv.extend(then.iter().cloned());
    let env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(key, value)| {
            let mut pair = key.into_encoded_bytes();
            pair.push(b'=');
            pair.extend(value.into_encoded_bytes());
            std::ffi::CString::new(pair).ok()
        })
        .collect();
    use std::os::fd::AsRawFd as _;
    // The signals stay blocked across the exec, so none sent meanwhile is lost: the init
    // blocks the same set and forwards what is pending.
    let e = nix::unistd::fexecve(guard.as_raw_fd(), &argv, &env).unwrap_err();
    tracing::debug!("cannot hand the waiting to peapod-init ({e}); waiting here");
}

/// The end of a foreground run handed to `peapod-init --watch`: collects the container's
/// status (it is still our child, unreaped), reports an OOM kill, deletes the container.
pub(crate) fn finish(rt: &Runtime, id: &str) -> Result<i32> {
    let id: ContainerId = id.parse()?;
    let record =
        rt.store()?.load(&id)?.record()?.ok_or_else(|| {
            Error::runtime(anyhow::anyhow!("container {id} has no record to finish"))
        })?;
    let pid = record
        .process
        .map(|process| nix::unistd::Pid::from_raw(process.pid))
        .ok_or_else(|| Error::runtime(anyhow::anyhow!("container {id} has no process")))?;
    let exit = loop {
        use nix::sys::wait::{waitpid, WaitStatus};
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break Ok(peapod_container::Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                break Ok(peapod_container::Exit::Signal(signal as i32))
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                break Err(anyhow::anyhow!(
                    "cannot collect container {id} (process {pid}): {e}"
                ))
            }
        }
    };
    if let Ok(peapod_container::Exit::Signal(signal)) = exit {
        if signal == nix::sys::signal::Signal::SIGKILL as i32 {
            crate::cgroups::report_oom(rt, &id);
        }
    }
    let cleaned = crate::delete::delete(rt, &id, true);
    let code = exit.map_err(Error::runtime)?.code();
    cleaned?;
    Ok(code)
}
