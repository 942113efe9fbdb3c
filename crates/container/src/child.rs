//! What the container process does between `clone3` and `execve`.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use peapod_ns::Namespace;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Message};
use crate::{console, exec, session, ContainerConfig};

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
/// With a `cgroup`, it first joins it (v1) or waits until the runtime has moved it in (v2, or
/// a systemd scope);
/// `in_unified`: it was cloned into the cgroup's cgroup2 directory already (v2: the cgroup;
/// a hybrid host: its directory in the cgroup2 hierarchy).
pub(crate) fn run(
    config: &ContainerConfig,
    channel: Channel,
    fifo: Option<RawFd>,
    cgroup: Option<&peapod_cgroups::Cgroup>,
    in_unified: bool,
) -> ! {
    let mut channel = Some(channel);
    let Err(failure) = set_up_and_exec(config, &mut channel, fifo, cgroup, in_unified);
    match channel {
        Some(channel) => {
            let _ = channel.send(&Message::Failed(failure.clone()));
        }
        // After `create` returned nobody listens: the container's stderr (conmon's log, or
        // the terminal) is the place for it, with the exit status.
        None => eprintln!("peapod: error: {}: {}", failure.stage, failure.message),
    }
    // SAFETY: _exit ends this process at once without running the parent's atexit handlers or
    // destructors, which belong to the parent's copy of this memory.
    unsafe { libc::_exit(failure.exit_code) }
}

fn set_up_and_exec(
    config: &ContainerConfig,
    channel_slot: &mut Option<Channel>,
    fifo: Option<RawFd>,
    cgroup: Option<&peapod_cgroups::Cgroup>,
    in_unified: bool,
) -> Result<Infallible, ChildFailure> {
    let Some(channel) = channel_slot.as_ref() else {
        return Err(ChildFailure::new("sync", "no channel to the runtime"));
    };
    reset_signals().map_err(|e| ChildFailure::new("signals", e))?;
    // Out of the caller's session at once: nothing of the container may type into the
    // caller's terminal (TIOCSTI) or signal the caller's process group (`kill 0`).
    session::leave_callers_session().map_err(|e| ChildFailure::new("session", e))?;
    // Should the runtime die during set-up, this process must not live on half-made.
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    set_name(c"peapod:setup");

    let wait_for = |expected| wait_for(channel, expected);

    if let Some(cgroup) = cgroup {
        if cgroup.is_v2() && in_unified {
            // Cloned into it (`Cgroup::clone_target`): nothing to wait for.
        } else if cgroup.added_by_runtime() {
            wait_for(Message::InCgroup)?;
        } else {
            cgroup
                .add_self(in_unified)
                .map_err(|e| ChildFailure::new("cgroup", e))?;
        }
        // Made now rather than by clone3, so that its root is the container's own cgroup
        // (clone3 would have made it at the runtime's).
        if config.new_namespaces.contains(Namespace::Cgroup) {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| ChildFailure::new("namespaces", format!("unshare(cgroup): {e}")))?;
        }
    }
    if config.new_namespaces.contains(Namespace::User) {
        wait_for(Message::Mapped)?;
        become_mapped_root().map_err(|e| ChildFailure::new("user", e))?;
    }
    for (kind, path) in &config.joined_namespaces {
        // The PID namespace was joined by the parent before clone: setns(CLONE_NEWPID) only
        // takes effect for children. So was the user namespace (see `launch.rs`).
        if *kind != Namespace::Pid && *kind != Namespace::User {
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
    // Owned by the container's root (mapped by now), made before the process gives up its
    // privileges: no key of the caller's is reachable from the container's processes.
    session::join_keyring(&config.session_keyring);
    // Through the host's /proc, still mounted and writable: a namespaced sysctl is set in
    // the namespaces of the process that writes it, which are the container's now.
    config
        .process
        .apply_kernel_settings()
        .map_err(|e| ChildFailure::new("sysctl", e))?;
    // Not dumpable from here on (see `create`): /proc/self was needed as ours until now.
    // SAFETY: prctl with PR_SET_DUMPABLE and 0 has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    // Chrooted into a root that has no /proc of its own, the fifo can only be reopened
    // through the runtime's procfs, held open until then.
    let host_proc = match (config.chroot_only, fifo) {
        (true, Some(_)) => Some(
            rustix::fs::open(
                "/proc",
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| ChildFailure::new("rootfs", format!("cannot open /proc: {e}")))?,
        ),
        _ => None,
    };
    let rootfs_failed = |e| ChildFailure::new("rootfs", e);
    let rootfs = config.rootfs_in(cgroup);
    if !config.chroot_only {
        rootfs.mount_all().map_err(rootfs_failed)?;
    }
    if config.hooks.any_at_create() {
        // The runtime runs prestart and createRuntime now; createContainer runs here, in
        // the container's namespaces, where its path still resolves in the runtime's root.
        channel
            .send(&Message::HooksDue)
            .map_err(|e| ChildFailure::new("sync", e))?;
        wait_for(Message::HooksDone)?;
        config
            .hooks
            .run("createContainer", "creating", std::process::id() as i32)
            .map_err(|e| ChildFailure::new("hooks", e))?;
    }
    match config.chroot_only {
        true => rootfs.chroot_only(),
        false => rootfs.pivot(),
    }
    .map_err(rootfs_failed)?;
    if let Some(console) = &config.console {
        // In the new root: the pty comes from the container's devpts, and mounting it on
        // /dev/console still needs the runtime's capabilities.
        console::set_up(console, true).map_err(|e| ChildFailure::new("terminal", e))?;
    }
    make_cwd(&config.command.cwd)?;
    change_dir(&config.command.cwd)?;
    // In the container's final root, still privileged: as runc, after pivot_root.
    let command = config.command.with_home(config.process.uid());
    config
        .process
        .apply_rlimits()
        .map_err(|e| ChildFailure::new("rlimits", e))?;
    // seccomp, ordered as runc and crun do. Without no_new_privs the kernel lets only a
    // process holding CAP_SYS_ADMIN load a filter: then it goes in now, before the
    // capabilities are dropped. With no_new_privs, as late as possible (just before execve),
    // so that the profile has to allow as few of peapod's own system calls as possible.
    let (early_seccomp, late_seccomp) =
        seccomp_stages(config.seccomp.as_ref(), config.process.no_new_privileges());
    if let Some(filter) = early_seccomp {
        load_seccomp(filter)?;
    }
    // The last privileged step: from here on the process has only the spec's credentials,
    // and the entrypoint is looked up with them.
    config
        .process
        .become_user(Some(libc::SIGKILL))
        .map_err(|e| ChildFailure::new("user", e))?;
    let program = exec::find_program(&command)?;

    match fifo {
        None => {
            channel
                .send(&Message::Ready)
                .map_err(|e| ChildFailure::new("sync", e))?;
            set_name(c"peapod:created");
            wait_for(Message::Start)?;
            start_container_hooks(config)?;
        }
        Some(fifo) => {
            // From here on this process outlives the runtime that created it.
            // SAFETY: prctl with PR_SET_PDEATHSIG and 0 has no memory effects.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
            // It must not hold anything of the runtime's while it waits: a copy of the
            // state lock would block every later command on this container.
            // It keeps the fifo, the channel and the sealed peapod-init it execs through.
            let keep = [
                Some(fifo),
                Some(channel.as_raw_fd()),
                config.command.via,
                host_proc.as_ref().map(AsRawFd::as_raw_fd),
            ];
            exec::close_fds_except(
                3 + config.preserve_fds,
                &keep.into_iter().flatten().collect::<Vec<_>>(),
            )
            .map_err(|e| ChildFailure::new("fds", format!("cannot close descriptors: {e}")))?;
            exec::close_placeholders(3, 3 + config.preserve_fds);
            channel
                .send(&Message::Ready)
                .map_err(|e| ChildFailure::new("sync", e))?;
            // Nobody listens any more: the runtime exits once it has read `Ready`.
            *channel_slot = None;
            set_name(c"peapod:created");
            wait_on_fifo(fifo, host_proc, || start_container_hooks(config))?;
        }
    }
    if let Some(filter) = late_seccomp {
        // Only close_range (marking descriptors close-on-exec), the execveat of the sealed
        // peapod-init and its execve of the entrypoint follow: a profile must allow those.
        load_seccomp(filter)?;
    }
    Err(exec::exec(&program, &command, config.preserve_fds))
}

/// When to load `filter`: `(early, late)`. Without no_new_privs the kernel lets only a
/// process holding CAP_SYS_ADMIN load a filter, so it goes in early, before the capabilities
/// are dropped; with no_new_privs late, just before the exec, so that it has to allow as few
/// of peapod's own system calls as possible. As runc and crun do.
pub(crate) fn seccomp_stages(
    filter: Option<&peapod_seccomp::Filter>,
    no_new_privileges: bool,
) -> (
    Option<&peapod_seccomp::Filter>,
    Option<&peapod_seccomp::Filter>,
) {
    match filter {
        Some(filter) if !no_new_privileges => (Some(filter), None),
        filter => (None, filter),
    }
}

/// Installs the container's seccomp filter (compiled by the runtime before the clone).
pub(crate) fn load_seccomp(filter: &peapod_seccomp::Filter) -> Result<(), ChildFailure> {
    filter
        .load()
        .map_err(|e| ChildFailure::new("seccomp", format!("cannot load the seccomp filter: {e}")))
}

/// Becomes uid and gid 0 of the new user namespace, now that its maps are written, as runc
/// does. The process was cloned by the runtime's user: when that is host root and the maps
/// give container root another host id (`0 100000 65536`), the process's ids are unmapped in
/// its namespace until it changes them, and every file it made in the rootfs would fail
/// (`EOVERFLOW`) or belong to nobody. Becoming root inside keeps its capabilities in the
/// namespace (a change to uid 0 raises the effective set to the permitted one). When root is
/// not mapped the process stays as it is; `process.user` is checked against the maps before.
fn become_mapped_root() -> Result<(), String> {
    let mapped = |file: &str| {
        std::fs::read_to_string(file).map(|text| {
            text.lines().any(|line| {
                let mut fields = line.split_whitespace().map(str::parse::<u64>);
                matches!(
                    (fields.next(), fields.nth(1)),
                    (Some(Ok(inside)), Some(Ok(count))) if inside == 0 && count > 0
                )
            })
        })
    };
    let root_gid = mapped("/proc/self/gid_map").map_err(|e| format!("gid_map: {e}"))?;
    let root_uid = mapped("/proc/self/uid_map").map_err(|e| format!("uid_map: {e}"))?;
    if root_gid {
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root)
            .map_err(|e| format!("cannot become group 0 in the user namespace: {e}"))?;
        // The supplementary groups inherited from the runtime are host groups, unmapped
        // here. Allowed only where setgroups is not denied (a namespace made by root, or
        // mapped by newgidmap); elsewhere the kernel already shows them as the overflow gid.
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !denied {
            nix::unistd::setgroups(&[])
                .map_err(|e| format!("cannot drop the runtime's groups: {e}"))?;
        }
    }
    if root_uid {
        let root = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root)
            .map_err(|e| format!("cannot become user 0 in the user namespace: {e}"))?;
    }
    Ok(())
}

/// Waits for the runtime to send `expected`; anything else, or its death, is a failure.
pub(crate) fn wait_for(channel: &Channel, expected: Message) -> Result<(), ChildFailure> {
    match channel.recv() {
        Ok(Some(m)) if m == expected => Ok(()),
        Ok(other) => Err(ChildFailure::new(
            "sync",
            format!("expected {expected:?} from the runtime, got {other:?}"),
        )),
        Err(e) => Err(ChildFailure::new("sync", e)),
    }
}

/// Blocks until `peapod start` opens the exec fifo for reading, then tells it we go on.
/// The fifo was opened (`O_PATH`) before `pivot_root`; it is reopened for writing through
/// `/proc/self/fd` (of `proc`, the runtime's procfs, when the root has none), which names
/// the very file even though its host path is out of reach.
/// `started` runs once `start` has opened the fifo, before the byte that tells it the
/// container goes on: when it fails, `start` reads end-of-file and reports the container gone.
fn wait_on_fifo(
    fifo: RawFd,
    proc: Option<std::os::fd::OwnedFd>,
    started: impl FnOnce() -> Result<(), ChildFailure>,
) -> Result<(), ChildFailure> {
    let fail = |e: std::io::Error| ChildFailure::new("sync", format!("exec fifo: {e}"));
    let mut file = match proc {
        Some(proc) => rustix::fs::openat(
            &proc,
            format!("self/fd/{fifo}"),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(|e| fail(e.into()))?,
        None => std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fifo}"))
            .map_err(fail)?,
    };
    started()?;
    std::io::Write::write_all(&mut file, &[0]).map_err(fail)
}

/// The `startContainer` hooks: in the container, after `start`, before the entrypoint.
fn start_container_hooks(config: &ContainerConfig) -> Result<(), ChildFailure> {
    config
        .hooks
        .run("startContainer", "created", std::process::id() as i32)
        .map_err(|e| ChildFailure::new("hooks", e))
}

/// The runtime blocks the signals it forwards and Rust ignores SIGPIPE; neither may reach the
/// entrypoint, since a blocked mask and ignored dispositions survive `execve`.
pub(crate) fn reset_signals() -> nix::Result<()> {
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
pub(crate) fn set_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a valid pointer.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Makes the working directory when the root lacks it (mode 0755, owned by the container's
/// root), as runc does and as Docker does for an image's `WorkingDir`. The root is the
/// container's by now, so every link on the way resolves inside it; a read-only root that
/// lacks the directory fails here, naming it.
fn make_cwd(cwd: &Path) -> Result<(), ChildFailure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(cwd)
        .map_err(|e| {
            ChildFailure::new(
                "cwd",
                format!(
                    "cannot make working directory {} in the container: {e}",
                    cwd.display()
                ),
            )
        })
}

pub(crate) fn change_dir(cwd: &Path) -> Result<(), ChildFailure> {
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
    })?;
    // Except a magic link to a descriptor still open here on a host directory
    // (`/proc/self/fd/N`, CVE-2024-21626): then the directory lies outside the root, and the
    // kernel has no path for it from there (getcwd fails with ENOENT).
    match nix::unistd::getcwd() {
        Ok(path) if path.is_absolute() => Ok(()),
        _ => Err(ChildFailure::new(
            "cwd",
            format!(
                "working directory {} is outside the container's root",
                cwd.display()
            ),
        )),
    }
}
