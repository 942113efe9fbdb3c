//! Entering an existing namespace.

use std::fs::File;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;

use crate::{Error, Namespace, NamespaceId, NamespaceSet, Result};

/// Moves the calling thread into the namespace of kind `kind` that the file at `path` names
/// (a `/proc/PID/ns/KIND` file or a bind mount of one).
///
/// The kind is checked by the kernel: a file of another kind is refused with `EINVAL`. Join a
/// user namespace before the others it owns, and a mount namespace only from a single-threaded
/// process. A PID namespace joined this way applies to the caller's future children only.
pub fn join(path: &Path, kind: Namespace) -> Result<()> {
    let err = |source| Error::Join {
        kind: kind.proc_name(),
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    setns(&file, CloneFlags::from_bits_retain(kind.clone_flag())).map_err(|e| err(e.into()))
}

/// A running process whose namespaces can be joined: a pidfd, so that a pid reused after the
/// process died can never be joined by mistake.
#[derive(Debug)]
pub struct Target {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Target {
    /// Opens `pid` (`pidfd_open`, Linux 5.3).
    pub fn open(pid: Pid) -> Result<Target> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return Err(Error::Identify {
                path: format!("pid {pid}").into(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Target { pid, pidfd })
    }

    /// The target's pid, in the caller's PID namespace.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The kinds of namespace in which the target differs from the calling process: what a
    /// process must join to be where the target is.
    pub fn differing(&self) -> Result<NamespaceSet> {
        let mut kinds = NamespaceSet::empty();
        for kind in Namespace::ALL {
            let theirs = NamespaceId::of(Some(self.pid), kind)?;
            if NamespaceId::of(None, kind)? != theirs {
                kinds.insert(kind);
            }
        }
        Ok(kinds)
    }

    /// Moves the caller into the target's namespaces of the kinds in `kinds`, all at once
    /// (`setns` on the pidfd, Linux 5.8): the kernel joins the user namespace first, and
    /// either every namespace is joined or none. As with [`join`], PID and time namespaces
    /// apply to the caller's future children; a mount namespace needs a single-threaded
    /// caller, whose root and working directory become the target's root.
    pub fn join(&self, kinds: NamespaceSet) -> Result<()> {
        if kinds.is_empty() {
            return Ok(());
        }
        setns(
            self.pidfd.as_fd(),
            CloneFlags::from_bits_retain(kinds.clone_flags()),
        )
        .map_err(|e| Error::Join {
            kind: "the target's",
            path: format!("/proc/{}/ns", self.pid).into(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NamespaceId;
    use std::process::{Command, Stdio};

    /// A `sleep` in new namespaces (`unshare` flags), with host name `hostname`; killed on
    /// drop, so a failing test leaves nothing.
    struct Holder(std::process::Child);

    impl Holder {
        /// `None` (the test is skipped) when not root.
        fn start(flags: &[&str], hostname: &str) -> Option<Holder> {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("skipped: joining another process's namespace needs root");
                return None;
            }
            let script = format!("hostname {hostname} && echo ready && exec sleep 30");
            let mut child = Command::new("unshare")
                .args(flags)
                .args(["sh", "-c", &script])
                .stdout(Stdio::piped())
                .spawn()
                .expect("unshare");
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
                &mut line,
            )
            .expect("ready line");
            Some(Holder(child))
        }

        fn pid(&self) -> Pid {
            Pid::from_raw(self.0.id() as i32)
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Runs `join` on a fresh thread (namespaces are per thread: the harness keeps its own)
    /// and returns the thread's host name and inode of its namespace of kind `kind`.
    fn joined(kind: &str, join: impl FnOnce() + Send + 'static) -> (String, u64) {
        let path = format!("/proc/thread-self/ns/{kind}");
        std::thread::spawn(move || {
            join();
            let me = std::fs::metadata(path).expect("thread ns");
            let name = nix::unistd::gethostname().expect("hostname");
            (
                name.to_string_lossy().into_owned(),
                std::os::unix::fs::MetadataExt::ino(&me),
            )
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn joining_a_uts_namespace_gives_its_inode_and_hostname() {
        let Some(holder) = Holder::start(&["--uts"], "joined-test") else {
            return;
        };
        let target = NamespaceId::of(Some(holder.pid()), Namespace::Uts).expect("target ns");
        let path = format!("/proc/{}/ns/uts", holder.pid());
        let (hostname, inode) = joined("uts", move || {
            join(Path::new(&path), Namespace::Uts).expect("join");
        });
        assert_eq!(inode, target.inode);
        assert_eq!(hostname, "joined-test");
    }

    #[test]
    fn joining_a_target_gives_all_its_namespaces_at_once() {
        let Some(holder) = Holder::start(&["--uts", "--ipc"], "target-test") else {
            return;
        };
        let target = Target::open(holder.pid()).expect("pidfd");
        let kinds = target.differing().expect("compare");
        let ipc = NamespaceId::of(Some(holder.pid()), Namespace::Ipc).expect("ipc");
        assert!(kinds.contains(Namespace::Uts) && kinds.contains(Namespace::Ipc));
        assert!(!kinds.contains(Namespace::Mount), "{kinds:?}");
        let (hostname, ipc_inode) = joined("ipc", move || target.join(kinds).expect("join"));
        assert_eq!(hostname, "target-test");
        assert_eq!(ipc_inode, ipc.inode);
    }

    #[test]
    fn joining_a_file_of_the_wrong_kind_fails_with_context() {
        let err = join(Path::new("/proc/self/ns/net"), Namespace::Uts).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("uts namespace /proc/self/ns/net"), "{msg}");
    }
}
