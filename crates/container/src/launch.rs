//! The runtime's side of starting a container: clone, map ids, wait for the barrier, start.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{geteuid, Pid};
use peapod_cgroups::Cgroup;
use peapod_ns::{clone_into_cgroup, write_id_maps, Forked, Namespace};

use crate::channel::{self, Channel, Message};
use crate::{child, ContainerConfig, Error, Result};

/// A container process that is fully set up and waiting, just before `execve`, for
/// [`Created::start`]. Dropping it without starting kills and reaps the process, so an
/// abandoned creation leaves nothing behind.
#[derive(Debug)]
pub struct Created {
    pid: Pid,
    channel: Channel,
    armed: bool,
}

/// Where a created container process waits for its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Barrier {
    /// On the channel to this process: [`Created::start`] releases it. The container process
    /// dies with this process until then (`PR_SET_PDEATHSIG`).
    Channel,
    /// On a fifo that [`create`] makes at this path: [`start_fifo`] releases it, from any
    /// process (this is the OCI `create`/`start` split). The container process outlives the
    /// runtime once it is ready, so the caller must record it ([`Created::detach`]).
    Fifo(PathBuf),
}

/// Starts the container process for `config` and returns once it waits at `barrier`, with
/// its entrypoint found and everything set up.
///
/// Nothing is changed on the host before the checks of `config` pass. The process is made
/// with one `clone3` into all new namespaces; when one of them is a user namespace, this
/// process writes its id maps (denying `setgroups` first when not root).
pub fn create(config: &ContainerConfig, barrier: &Barrier) -> Result<Created> {
    create_in(config, barrier, None)
}

/// [`create`], with the container process moved into `cgroup` before it does anything else:
/// its set-up is accounted there, and a new cgroup namespace (made by the process once it is
/// in, instead of by `clone3`) has the container's own cgroup as its root. The caller makes
/// the cgroup, applies its limits, and removes it.
pub fn create_in(
    config: &ContainerConfig,
    barrier: &Barrier,
    cgroup: Option<&Cgroup>,
) -> Result<Created> {
    launch(config, barrier, cgroup, &mut |_| true)
}

/// [`create_in`], calling `cloned` with the process's PID as soon as the process exists and
/// has been let go (in its cgroup, its id maps written), while it sets itself up: work of the
/// caller that needs the PID but not a finished container (writing its record) is done then,
/// beside the container's set-up rather than after it. Should `cloned` fail, the process is
/// killed and reaped, and its error returned.
pub fn create_in_then<E: From<Error>>(
    config: &ContainerConfig,
    barrier: &Barrier,
    cgroup: Option<&Cgroup>,
    cloned: impl FnOnce(Pid) -> Result<(), E>,
) -> Result<Created, E> {
    let mut cloned = Some(cloned);
    let mut failed = None;
    let created = launch(config, barrier, cgroup, &mut |pid| match cloned
        .take()
        .map(|cloned| cloned(pid))
    {
        Some(Err(e)) => {
            failed = Some(e);
            false
        }
        _ => true,
    });
    match failed {
        Some(e) => Err(e),
        None => created.map_err(E::from),
    }
}

/// What [`create_in`] and [`create_in_then`] do; `cloned` returning false abandons the process
/// (its caller has the reason).
fn launch(
    config: &ContainerConfig,
    barrier: &Barrier,
    cgroup: Option<&Cgroup>,
    cloned: &mut dyn FnMut(Pid) -> bool,
) -> Result<Created> {
    config.rootfs.validate()?;
    crate::console::check_console(config.terminal, config.console.as_ref())?;
    let fifo = match barrier {
        Barrier::Channel => None,
        Barrier::Fifo(path) => Some(make_fifo(path)?),
    };
    let (parent_end, child_end) = channel::pair().map_err(|e| Error::os("socketpair", e))?;
    let mut pid_namespace = None;
    for (kind, path) in &config.joined_namespaces {
        match kind {
            Namespace::User => join_user_namespace(path)?,
            Namespace::Pid => pid_namespace = Some(PidNamespaceForChildren::join(path)?),
            _ => {}
        }
    }
    let mut namespaces = config.new_namespaces;
    if cgroup.is_some() {
        namespaces.remove(Namespace::Cgroup);
    }
    if !config.new_namespaces.contains(Namespace::User) {
        // The child is a copy of peapod inside the container until its exec: not dumpable
        // from its first instant (it inherits this), so that no process of a shared PID
        // namespace can open its /proc/PID/exe, the runtime's binary. With a new user
        // namespace the child does it itself, once this process has written its id maps.
        // SAFETY: prctl with PR_SET_DUMPABLE and 0 has no memory effects.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    }
    // Offsets can only be written before any process is in the time namespace, so it is not
    // made by clone3 with the child in it: this process unshares it for its children, writes
    // them, and returns to its own after the clone (`TimeNamespace`).
    let time_namespace = match &config.time_offsets {
        Some(offsets) => {
            namespaces.remove(Namespace::Time);
            Some(TimeNamespace::for_children(offsets)?)
        }
        None => None,
    };
    // On v2 the child starts in the cgroup, and on a hybrid host in its cgroup2 directory,
    // where moving it in later would wait for the global lock (see `Cgroup::clone_target`).
    // Should the directory not open, or the kernel not take it, it is moved in as before.
    let clone_target = cgroup
        .and_then(Cgroup::clone_target)
        .and_then(|dir| open_cgroup_dir(dir).ok());
    let forked = match &clone_target {
        // SAFETY: the runtime is single-threaded when it creates containers (the CLI starts
        // no threads), so the child may allocate; it leaves only through exec or _exit
        // (child::run).
        Some(dir) => unsafe { clone_into_cgroup(namespaces, dir.as_fd()) }?,
        // SAFETY: as above.
        None => (unsafe { peapod_ns::clone_into(namespaces) }?, false),
    };
    drop(clone_target);
    let in_cgroup2 = forked.1;
    match forked.0 {
        Forked::Child => {
            drop(parent_end);
            let fifo = fifo.as_ref().map(AsRawFd::as_raw_fd);
            child::run(config, child_end, fifo, cgroup, forked.1)
        }
        Forked::Parent(process) => {
            drop(time_namespace);
            drop(pid_namespace);
            drop(child_end);
            let mut created = Created {
                pid: process.pid,
                channel: parent_end,
                armed: true,
            };
            // On v1 the process moves itself, which is cheaper (see `Cgroup::add_self`),
            // except into a systemd scope, which systemd makes with it in; on v2 it is in
            // already when cloned there.
            let cloned_in = |c: &Cgroup| c.is_v2() && in_cgroup2;
            if let Some(cgroup) = cgroup.filter(|c| c.added_by_runtime() && !cloned_in(c)) {
                if let Err(e) = u32::try_from(created.pid.as_raw())
                    .map_err(|_| Error::ChildDied(format!("odd pid {}", created.pid)))
                    .and_then(|pid| Ok(cgroup.add(pid)?))
                {
                    created.abandon();
                    return Err(e);
                }
                created
                    .send(Message::InCgroup)
                    .map_err(|e| oom_explained(e, Some(cgroup)))?;
            }
            if config.new_namespaces.contains(Namespace::User) {
                let unprivileged = !geteuid().is_root();
                write_id_maps(
                    created.pid,
                    &config.uid_maps,
                    &config.gid_maps,
                    unprivileged,
                )?;
                created
                    .send(Message::Mapped)
                    .map_err(|e| oom_explained(e, cgroup))?;
            }
            if !cloned(created.pid) {
                created.abandon();
                return Err(Error::ChildDied("abandoned by the runtime".into()));
            }
            loop {
                match created.recv().map_err(|e| oom_explained(e, cgroup))? {
                    Some(Message::Ready) => return Ok(created),
                    // Mounted, before pivot_root: the runtime's hooks run now.
                    Some(Message::HooksDue) => {
                        let pid = created.pid.as_raw();
                        let ran = ["prestart", "createRuntime"]
                            .iter()
                            .try_for_each(|phase| config.hooks.run(phase, "creating", pid));
                        if let Err(e) = ran {
                            created.abandon();
                            return Err(e.into());
                        }
                        created
                            .send(Message::HooksDone)
                            .map_err(|e| oom_explained(e, cgroup))?;
                    }
                    other => return Err(oom_explained(created.failed(other), cgroup)),
                }
            }
        }
    }
}

/// Joins the user namespace at `path` in this process (it stays there), before the clone:
/// the namespaces the container makes must be owned by it, and an unprivileged process can
/// make them only there (a rootless pod's members). Already in it (the second container a
/// process makes in the pod) is fine.
fn join_user_namespace(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let ours = peapod_ns::NamespaceId::of(None, Namespace::User)?;
    let theirs = std::fs::metadata(path)
        .map_err(|e| Error::os("cannot read the user namespace to join", e))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev, ours.inode) {
        return Ok(());
    }
    peapod_ns::join(path, Namespace::User)?;
    Ok(())
}

/// A set-up that died of SIGKILL in a cgroup whose OOM killer struck was killed for its
/// memory limit, and says so: "killed by SIGKILL" alone sends the user looking elsewhere.
/// The death may also show first as a failed write to, or read from, its channel (which
/// depends on the moment it strikes): explained alike.
fn oom_explained(err: Error, cgroup: Option<&Cgroup>) -> Error {
    let oom = || {
        cgroup
            .and_then(|c| c.stats().ok())
            .is_some_and(|s| s.oom_kills > 0)
    };
    match err {
        Error::ChildDied(_) | Error::Os { .. } if oom() => Error::OomDuringSetUp,
        other => other,
    }
}

/// A new time namespace for this process's children, with its clock offsets written;
/// dropping it puts the children's time namespace back to this process's own.
struct TimeNamespace {
    own: std::fs::File,
}

impl TimeNamespace {
    fn for_children(offsets: &str) -> Result<TimeNamespace> {
        let own = std::fs::File::open("/proc/self/ns/time")
            .map_err(|e| Error::os("cannot open /proc/self/ns/time", e))?;
        nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
            libc::CLONE_NEWTIME,
        ))
        .map_err(|e| Error::os("cannot make a time namespace (unshare)", e))?;
        let restore = TimeNamespace { own };
        std::fs::write("/proc/self/timens_offsets", offsets)
            .map_err(|e| Error::os("cannot write linux.timeOffsets", e))?;
        Ok(restore)
    }
}

impl Drop for TimeNamespace {
    fn drop(&mut self) {
        // Later children of the runtime (hooks) are not the container's.
        let _ = nix::sched::setns(
            &self.own,
            nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        );
    }
}

/// A joined PID namespace for this process's children (`linux.namespaces` with a `pid` path,
/// a pod's shared one), left for its own again after the clone: a process whose children's
/// PID namespace is not its own can start no thread (`clone` with `CLONE_THREAD` is EINVAL),
/// and the systemd driver's D-Bus client starts threads to make the scope; the runtime's
/// later children (hooks) are not the container's either. Rootless, in a pod's user
/// namespace, going back is not allowed and is not needed (cgroupfs starts no thread).
struct PidNamespaceForChildren {
    own: std::fs::File,
}

impl PidNamespaceForChildren {
    fn join(path: &Path) -> Result<PidNamespaceForChildren> {
        let own = std::fs::File::open("/proc/self/ns/pid")
            .map_err(|e| Error::os("cannot open /proc/self/ns/pid", e))?;
        peapod_ns::join(path, Namespace::Pid)?;
        Ok(PidNamespaceForChildren { own })
    }
}

impl Drop for PidNamespaceForChildren {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.own, nix::sched::CloneFlags::CLONE_NEWPID);
    }
}

impl Created {
    /// A process at the other end of `channel`, killed and reaped on drop until started.
    pub(crate) fn new(pid: Pid, channel: Channel) -> Created {
        Created {
            pid,
            channel,
            armed: true,
        }
    }

    /// Kills and reaps the process now.
    pub(crate) fn abandon(&mut self) {
        self.kill_and_reap();
    }

    /// The container process's PID, as the runtime sees it.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Leaves the container process waiting on its fifo barrier and forgets it: from now on
    /// it is the caller's to record (its PID) and someone's to start or delete.
    pub fn detach(mut self) -> Pid {
        self.armed = false;
        self.pid
    }

    /// Lets the container process exec its entrypoint; returns its PID once the exec
    /// succeeded (the process's end of the channel closed on exec).
    pub fn start(mut self) -> Result<Pid> {
        self.send(Message::Start)?;
        match self.recv()? {
            None => {
                self.armed = false;
                Ok(self.pid)
            }
            other => Err(self.failed(other)),
        }
    }

    pub(crate) fn send(&self, msg: Message) -> Result<()> {
        self.channel
            .send(&msg)
            .map_err(|e| Error::os("failed to talk to the container process", e))
    }

    pub(crate) fn recv(&self) -> Result<Option<Message>> {
        self.channel
            .recv()
            .map_err(|e| Error::os("failed to hear from the container process", e))
    }

    /// Turns an unexpected answer into the error, after the process is gone.
    pub(crate) fn failed(&mut self, answer: Option<Message>) -> Error {
        let status = self.kill_and_reap();
        match answer {
            Some(Message::Failed(failure)) => Error::Child(failure),
            Some(other) => Error::ChildDied(format!("unexpected message {other:?}; {status}")),
            None => Error::ChildDied(status),
        }
    }

    fn kill_and_reap(&mut self) -> String {
        self.armed = false;
        // It may have exited already (after reporting a failure): ESRCH is fine.
        let _ = kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, None) {
                Err(nix::Error::EINTR) => continue,
                Ok(WaitStatus::Exited(_, code)) => return format!("exit status {code}"),
                Ok(WaitStatus::Signaled(_, sig, _)) => return format!("killed by {sig}"),
                Ok(other) => return format!("{other:?}"),
                Err(e) => return format!("wait failed: {e}"),
            }
        }
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.armed {
            self.kill_and_reap();
        }
    }
}

/// Makes the exec fifo and opens it `O_PATH` for the child to reopen later. Its mode is 0622,
/// as runc's: the container process reopens it for writing after it has become the spec's
/// user, who may not be root; the state directory (0700) keeps everyone else out.
fn make_fifo(path: &Path) -> Result<OwnedFd> {
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o622);
    nix::unistd::mkfifo(path, mode).map_err(|e| Error::os("cannot make the exec fifo", e))?;
    // mkfifo applies the umask; the mode must not depend on the caller's.
    nix::sys::stat::fchmodat(
        None,
        path,
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| Error::os("cannot set the mode of the exec fifo", e))?;
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|e| Error::os("cannot open the exec fifo", e))
}

/// Starts a container created with [`Barrier::Fifo`]: reads the byte its process writes once
/// it may exec, then removes the fifo. `alive` says whether the container process still
/// exists; when it does not, or after `timeout`, this fails instead of waiting forever.
pub fn start_fifo(path: &Path, alive: impl Fn() -> bool, timeout: Duration) -> Result<()> {
    use std::io::Read;
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::os("cannot open the exec fifo", e))?;
    let deadline = Instant::now() + timeout;
    let mut byte = [0u8];
    loop {
        match fifo.read(&mut byte) {
            Ok(1) => break,
            // 0: the writer has not opened its end yet; EAGAIN: opened, not written yet.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::os("cannot read the exec fifo", e)),
        }
        if !alive() {
            return Err(Error::ChildDied("the container process is gone".into()));
        }
        if Instant::now() > deadline {
            return Err(Error::ChildDied(format!(
                "the container process did not reach its start within {timeout:?}"
            )));
        }
        wait_readable(&fifo);
    }
    std::fs::remove_file(path).map_err(|e| Error::os("cannot remove the exec fifo", e))
}

/// Waits until the exec fifo has its byte, or its writer has closed it, or a short while has
/// passed (so that the caller checks again that the container process lives): woken by the
/// kernel rather than polling every millisecond, which 50 `start`s at once pay for in CPU.
/// A fifo whose writer is gone stays readable (hang-up) without data: then a pause instead.
fn wait_readable(fifo: &std::fs::File) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
    let hung_up = match poll(&mut fds, PollTimeout::from(10u8)) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP) && !r.contains(PollFlags::POLLIN)),
        Err(_) => true,
    };
    if hung_up {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An open descriptor of a cgroup directory, for `CLONE_INTO_CGROUP`.
fn open_cgroup_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(OwnedFd::from(file))
}
