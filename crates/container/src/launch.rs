//! The runtime's side of starting a container: clone, map ids, wait for the barrier, start.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{geteuid, Pid};
use peapod_ns::{clone_into, write_id_maps, Forked, Namespace};

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

/// Starts the container process for `config` and returns once it waits at the barrier.
///
/// Nothing is changed on the host before the checks of `config` pass. The process is made
/// with one `clone3` into all new namespaces; when one of them is a user namespace, this
/// process writes its id maps (denying `setgroups` first when not root).
pub fn create(config: &ContainerConfig) -> Result<Created> {
    config.rootfs.validate()?;
    let (parent_end, child_end) = channel::pair().map_err(|e| Error::os("socketpair", e))?;
    for (kind, path) in &config.joined_namespaces {
        if *kind == Namespace::Pid {
            peapod_ns::join(path, *kind)?;
        }
    }
    // SAFETY: the runtime is single-threaded when it creates containers (the CLI starts no
    // threads), so the child may allocate; it leaves only through exec or _exit (child::run).
    match unsafe { clone_into(config.new_namespaces) }? {
        Forked::Child => {
            drop(parent_end);
            child::run(config, child_end)
        }
        Forked::Parent(process) => {
            drop(child_end);
            let mut created = Created {
                pid: process.pid,
                channel: parent_end,
                armed: true,
            };
            if config.new_namespaces.contains(Namespace::User) {
                let unprivileged = !geteuid().is_root();
                write_id_maps(
                    created.pid,
                    &config.uid_maps,
                    &config.gid_maps,
                    unprivileged,
                )?;
                created.send(Message::Mapped)?;
            }
            match created.recv()? {
                Some(Message::Ready) => Ok(created),
                other => Err(created.failed(other)),
            }
        }
    }
}

impl Created {
    /// The container process's PID, as the runtime sees it.
    pub fn pid(&self) -> Pid {
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

    fn send(&self, msg: Message) -> Result<()> {
        self.channel
            .send(&msg)
            .map_err(|e| Error::os("failed to talk to the container process", e))
    }

    fn recv(&self) -> Result<Option<Message>> {
        self.channel
            .recv()
            .map_err(|e| Error::os("failed to hear from the container process", e))
    }

    /// Turns an unexpected answer into the error, after the process is gone.
    fn failed(&mut self, answer: Option<Message>) -> Error {
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
