//! What the container process does between `clone3` and `execve`.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use peapod_ns::Namespace;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Message};
use crate::{exec, ContainerConfig};

/// A failure inside the container process before its entrypoint ran: the step, a message
/// for the user, and the exit status a CLI should end with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ChildFailure {
    /// The set-up step that failed, e.g. `rootfs` or `exec`.
    pub stage: String,
    /// What went wrong, one line.
    pub message: String,
    /// 127 for a missing entrypoint, 126 for one that cannot run, 125 otherwise.
    pub exit_code: i32,
}

impl ChildFailure {
    pub(crate) fn new(stage: &str, err: impl std::fmt::Display) -> ChildFailure {
        ChildFailure {
            stage: stage.to_owned(),
            message: err.to_string(),
            exit_code: 125,
        }
    }
}

/// Runs in the new process: sets everything up, waits at the barrier, execs. Never returns.
pub(crate) fn run(config: &ContainerConfig, channel: Channel, fifo: Option<RawFd>) -> ! {
    let mut channel = Some(channel);
    let Err(failure) = set_up_and_exec(config, &mut channel, fifo);
    // If the parent is gone there is nobody to tell; the exit status says it all.
    if let Some(channel) = channel {
        let _ = channel.send(&Message::Failed(failure.clone()));
    }
    // SAFETY: _exit ends this process at once without running the parent's atexit handlers or
    // destructors, which belong to the parent's copy of this memory.
    unsafe { libc::_exit(failure.exit_code) }
}

fn set_up_and_exec(
    config: &ContainerConfig,
    channel_slot: &mut Option<Channel>,
    fifo: Option<RawFd>,
) -> Result<Infallible, ChildFailure> {
    let Some(channel) = channel_slot.as_ref() else {
        return Err(ChildFailure::new("sync", "no channel to the runtime"));
    };
    reset_signals().map_err(|e| ChildFailure::new("signals", e))?;
    // Should the runtime die during set-up, this process must not live on half-made.
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    set_name(c"peapod:setup");

    let wait_for = |expected: Message| -> Result<(), ChildFailure> {
        match channel.recv() {
            Ok(Some(m)) if m == expected => Ok(()),
            Ok(other) => Err(ChildFailure::new(
                "sync",
                format!("expected {expected:?} from the runtime, got {other:?}"),
            )),
            Err(e) => Err(ChildFailure::new("sync", e)),
        }
    };

    if config.new_namespaces.contains(Namespace::User) {
        wait_for(Message::Mapped)?;
    }
    for (kind, path) in &config.joined_namespaces {
        // The PID namespace was joined by the parent before clone: setns(CLONE_NEWPID) only
        // takes effect for children.
        if *kind != Namespace::Pid {
            peapod_ns::join(path, *kind).map_err(|e| ChildFailure::new("namespaces", e))?;
        }
    }
    if let Some(name) = &config.hostname {
        peapod_ns::set_hostname(name).map_err(|e| ChildFailure::new("hostname", e))?;
    }
    if let Some(name) = &config.domainname {
        peapod_ns::set_domainname(name).map_err(|e| ChildFailure::new("domainname", e))?;
    }
    if config.new_namespaces.contains(Namespace::Net) {
        peapod_ns::bring_up_loopback().map_err(|e| ChildFailure::new("network", e))?;
    }
    // Through the host's /proc, still mounted and writable: a namespaced sysctl is set in
    // the namespaces of the process that writes it, which are the container's now.
    config
        .process
        .apply_kernel_settings()
        .map_err(|e| ChildFailure::new("sysctl", e))?;
    config
        .rootfs
        .enter()
        .map_err(|e| ChildFailure::new("rootfs", e))?;
    change_dir(&config.cwd)?;
    config
        .process
        .apply_rlimits()
        .map_err(|e| ChildFailure::new("rlimits", e))?;
    // The last privileged step: from here on the process has only the spec's credentials,
    // and the entrypoint is looked up with them.
    config
        .process
        .become_user(Some(libc::SIGKILL))
        .map_err(|e| ChildFailure::new("user", e))?;
    let program = exec::find_program(config)?;

    match fifo {
        None => {
            channel
                .send(&Message::Ready)
                .map_err(|e| ChildFailure::new("sync", e))?;
            set_name(c"peapod:created");
            wait_for(Message::Start)?;
        }
        Some(fifo) => {
            // From here on this process outlives the runtime that created it.
            // SAFETY: prctl with PR_SET_PDEATHSIG and 0 has no memory effects.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
            // It must not hold anything of the runtime's while it waits: a copy of the
            // state lock would block every later command on this container.
            exec::close_fds_except(3 + config.preserve_fds, &[fifo, channel.as_raw_fd()])
                .map_err(|e| ChildFailure::new("fds", format!("cannot close descriptors: {e}")))?;
            channel
                .send(&Message::Ready)
                .map_err(|e| ChildFailure::new("sync", e))?;
            // Nobody listens any more: the runtime exits once it has read `Ready`.
            *channel_slot = None;
            set_name(c"peapod:created");
            wait_on_fifo(fifo)?;
        }
    }
    Err(exec::exec(&program, config))
}

/// Blocks until `peapod start` opens the exec fifo for reading, then tells it we go on.
/// The fifo was opened (`O_PATH`) before `pivot_root`; it is reopened for writing through
/// `/proc/self/fd`, which names the very file even though its host path is out of reach.
fn wait_on_fifo(fifo: RawFd) -> Result<(), ChildFailure> {
    let path = format!("/proc/self/fd/{fifo}");
    let fail = |e: std::io::Error| ChildFailure::new("sync", format!("exec fifo: {e}"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(fail)?;
    std::io::Write::write_all(&mut file, &[0]).map_err(fail)
}

/// The runtime blocks the signals it forwards and Rust ignores SIGPIPE; neither may reach the
/// entrypoint, since a blocked mask and ignored dispositions survive `execve`.
fn reset_signals() -> nix::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        unsafe { signal(sig, SigHandler::SigDfl) }?;
    }
    Ok(())
}

/// Names this process in `ps` (the kernel's `comm`), so a stuck container shows its stage.
fn set_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a valid pointer.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

fn change_dir(cwd: &Path) -> Result<(), ChildFailure> {
    // The root is now the container's: the path, and any link in it, resolves inside it.
    nix::unistd::chdir(cwd).map_err(|e| {
        ChildFailure::new(
            "cwd",
            format!(
                "cannot enter working directory {} in the container: {}",
                cwd.display(),
                e.desc()
            ),
        )
    })
}
