//! A new process in a running container (`peapod exec`): it joins the container's namespaces,
//! takes the process attributes of its own `process` spec, and waits, like a created
//! container, for [`Created::start`] before its `execve`.
//!
//! The runtime forks once. The PID namespace is joined by the runtime itself before the fork
//! (it applies to children only), together with the user namespace when the runtime is not
//! root (only its owner's user namespace may join it); the fork joins all the others at once
//! through a pidfd of the container's process, so a recycled pid can never be joined by
//! mistake.

use std::convert::Infallible;
use std::os::fd::RawFd;

use nix::unistd::Pid;
use oci_spec::runtime::Process;
use peapod_ns::{clone_into, Forked, Namespace, NamespaceSet, Target};

use crate::channel::{self, Channel, Message};
use crate::child::{load_seccomp, reset_signals, seccomp_stages, set_name, wait_for};
use crate::config::{compile_seccomp, terminal, Command, ConfigError};
use crate::console::{self, Console, WindowSize};
use crate::process::ProcessAttrs;
use crate::session::{self, SessionKeyring};
use crate::{exec, ChildFailure, Created, Error, Result};

/// A process to run in an existing container: made by [`ExecConfig::from_process`] from an
/// OCI `process` object (runc's `exec --process FILE`, or the container's own with changes).
#[derive(Debug, Clone)]
pub struct ExecConfig {
    command: Command,
    attrs: ProcessAttrs,
    preserve_fds: u32,
    terminal: Option<Option<WindowSize>>,
    console: Option<Console>,
    stdin: Option<RawFd>,
    seccomp: Option<peapod_seccomp::Filter>,
    keyring: SessionKeyring,
}

impl ExecConfig {
    /// Checks `process` (errors name the JSON path within it, as `process.args`).
    pub fn from_process(process: &Process) -> std::result::Result<ExecConfig, ConfigError> {
        Ok(ExecConfig {
            command: Command::from_process(process)?,
            // No sysctls: they belong to the container, which has set them already.
            attrs: ProcessAttrs::from_spec(process, None, NamespaceSet::empty())?,
            preserve_fds: 0,
            terminal: terminal(process),
            console: None,
            stdin: None,
            seccomp: None,
            keyring: SessionKeyring::named(None),
        })
    }

    /// Adds the container's `linux.seccomp` filter, which its every process runs under, as
    /// runc does (errors name the field under `linux.seccomp`).
    pub fn seccomp(
        mut self,
        profile: Option<&oci_spec::runtime::LinuxSeccomp>,
    ) -> std::result::Result<ExecConfig, ConfigError> {
        self.seccomp = compile_seccomp(profile)?;
        Ok(self)
    }

    /// The connected unix socket the pty master is sent through when `process.terminal` is
    /// true. It must stay open until [`enter`] returns.
    pub fn console_socket(mut self, socket: RawFd) -> ExecConfig {
        self.console = self.terminal.map(|size| Console { socket, size });
        self
    }

    /// The descriptor the process gets as its standard input instead of the caller's (docker's
    /// `exec` without `-i` gives it /dev/null); a terminal's slave replaces it. It must stay
    /// open until [`enter`] returns.
    pub fn stdin(mut self, fd: RawFd) -> ExecConfig {
        self.stdin = Some(fd);
        self
    }

    /// Whether the process asks for a terminal (`process.terminal`).
    pub fn wants_terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// Execs the program through a sealed copy of peapod-init, as
    /// [`crate::ContainerConfig::exec_through`].
    pub fn exec_through(mut self, trampoline: Option<RawFd>) -> ExecConfig {
        self.command.via = trampoline;
        self
    }

    /// Names the new session keyring the process joins (runc's `_ses.ID`); an anonymous one
    /// without this call.
    pub fn session_keyring(mut self, name: &str) -> ExecConfig {
        self.keyring = SessionKeyring::named(Some(name));
        self
    }

    /// Passes descriptors 3 to 3+`n`-1 into the process; all others above 2 are closed.
    pub fn preserve_fds(mut self, n: u32) -> ExecConfig {
        self.preserve_fds = n;
        self
    }
}

/// Starts a process for `config` in every namespace in which `target` (the container's
/// process) differs from the caller, and returns once it waits, set up, before its `execve`:
/// [`Created::start`] lets it run. `prepare` is called with the new process's pid while
/// it waits, before it is set up: the place to move it into the container's cgroup.
///
/// Changes the caller's PID namespace for children: call it from a process that starts no
/// other children afterwards.
pub fn enter(
    target: &Target,
    config: &ExecConfig,
    prepare: impl FnOnce(Pid) -> Result<()>,
) -> Result<Created> {
    crate::console::check_console(config.terminal, config.console.as_ref())?;
    let kinds = target.differing()?;
    let (parent_end, child_end) = channel::pair().map_err(|e| Error::os("socketpair", e))?;
    // What this process joins itself: the PID namespace, which applies to children only, so
    // the fork must be made inside it. Without privilege the kernel lets a process join a
    // PID namespace only from the user namespace that owns it: then the user namespace is
    // joined first, in the same call (the kernel orders it first), as runc's nsexec does.
    let mut here = NamespaceSet::empty();
    if kinds.contains(Namespace::Pid) {
        here.insert(Namespace::Pid);
        if kinds.contains(Namespace::User) && !nix::unistd::geteuid().is_root() {
            here.insert(Namespace::User);
        }
        target.join(here)?;
    }
    // The fork joins the rest; a user namespace cannot be joined again by a process already
    // in it (EINVAL).
    let mut rest = kinds;
    for kind in Namespace::ALL {
        if here.contains(kind) {
            rest.remove(kind);
        }
    }
    // The fork is a copy of peapod in the container's PID namespace until its exec: not
    // dumpable from its first instant (it inherits this), so no process of the container
    // can open its /proc/PID/exe, the runtime's binary.
    // SAFETY: prctl with PR_SET_DUMPABLE and 0 has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    // SAFETY: the runtime is single-threaded (the CLI starts no threads), so the child may
    // allocate; it leaves only through exec or _exit (`run`).
    match unsafe { clone_into(NamespaceSet::empty()) }? {
        Forked::Child => {
            drop(parent_end);
            run(target, rest, config, child_end)
        }
        Forked::Parent(process) => {
            drop(child_end);
            let mut created = Created::new(process.pid, parent_end);
            if let Err(e) = prepare(process.pid) {
                created.abandon();
                return Err(e);
            }
            created.send(Message::Mapped)?;
            match created.recv()? {
                Some(Message::Ready) => Ok(created),
                other => Err(created.failed(other)),
            }
        }
    }
}

/// The new process: joins the namespaces of `kinds`, sets up, waits, execs. Never returns.
fn run(target: &Target, kinds: NamespaceSet, config: &ExecConfig, channel: Channel) -> ! {
    let Err(failure) = set_up_and_exec(target, kinds, config, &channel);
    let _ = channel.send(&Message::Failed(failure.clone()));
    // SAFETY: _exit ends this process at once without running the parent's atexit handlers or
    // destructors, which belong to the parent's copy of this memory.
    unsafe { libc::_exit(failure.exit_code) }
}

fn set_up_and_exec(
    target: &Target,
    kinds: NamespaceSet,
    config: &ExecConfig,
    channel: &Channel,
) -> std::result::Result<Infallible, ChildFailure> {
    reset_signals().map_err(|e| ChildFailure::new("signals", e))?;
    if let Some(fd) = config.stdin {
        // Opened by the runtime on the host, before any namespace is joined: nothing of the
        // container decides what it is.
        nix::unistd::dup2(fd, 0).map_err(|e| ChildFailure::new("stdin", e))?;
    }
    // As the container's first process: out of the caller's session and keyring.
    session::leave_callers_session().map_err(|e| ChildFailure::new("session", e))?;
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    set_name(c"peapod:exec");
    wait_for(channel, Message::Mapped)?;
    // The container's OOM score (`exec` is counted as the container is), written while the
    // host's /proc is still this process's and it may still lower it.
    config
        .attrs
        .apply_kernel_settings()
        .map_err(|e| ChildFailure::new("oom_score_adj", e))?;
    target
        .join(kinds)
        .map_err(|e| ChildFailure::new("namespaces", e))?;
    // In the container's user namespace (when it has one), so the keyring is owned there.
    session::join_keyring(&config.keyring);
    if !kinds.contains(Namespace::Mount) {
        // A container in the runtime's mount namespace has its root by chroot only (no
        // mount namespace of its own): the new process takes the same root, through the
        // target's root link, or it would run in the host's.
        let root = format!("/proc/{}/root", target.pid());
        nix::unistd::chroot(root.as_str())
            .map_err(|e| ChildFailure::new("rootfs", format!("cannot chroot into {root}: {e}")))?;
    }
    // The root is the container's now: the working directory resolves inside it.
    crate::child::change_dir(&config.command.cwd)?;
    // Its own user's home, from the container's /etc/passwd (the root is the container's).
    let command = config.command.with_home(config.attrs.uid());
    if let Some(console) = &config.console {
        console::set_up(console, false).map_err(|e| ChildFailure::new("terminal", e))?;
    }
    config
        .attrs
        .apply_rlimits()
        .map_err(|e| ChildFailure::new("rlimits", e))?;
    let (early_seccomp, late_seccomp) =
        seccomp_stages(config.seccomp.as_ref(), config.attrs.no_new_privileges());
    if let Some(filter) = early_seccomp {
        load_seccomp(filter)?;
    }
    config
        .attrs
        .become_user(Some(libc::SIGKILL))
        .map_err(|e| ChildFailure::new("user", e))?;
    let program = exec::find_program(&command)?;
    channel
        .send(&Message::Ready)
        .map_err(|e| ChildFailure::new("sync", e))?;
    wait_for(channel, Message::Start)?;
    // It outlives `peapod exec --detach`, and a foreground one as runc's does.
    // SAFETY: prctl with PR_SET_PDEATHSIG and 0 has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
    if let Some(filter) = late_seccomp {
        load_seccomp(filter)?;
    }
    Err(exec::exec(&program, &command, config.preserve_fds))
}
