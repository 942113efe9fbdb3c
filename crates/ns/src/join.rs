//! Entering an existing namespace.

use std::fs::File;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

use crate::{Error, Namespace, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NamespaceId;
    use std::process::{Command, Stdio};

    #[test]
    fn joining_a_uts_namespace_gives_its_inode_and_hostname() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: joining another process's namespace needs root");
            return;
        }
        let mut holder = Command::new("unshare")
            .args([
                "--uts",
                "sh",
                "-c",
                "hostname joined-test && echo ready && exec sleep 30",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("ready line");
        let pid = nix::unistd::Pid::from_raw(holder.id() as i32);
        let target = NamespaceId::of(Some(pid), Namespace::Uts).expect("target ns");
        let path = format!("/proc/{pid}/ns/uts");
        // UTS namespaces are per thread: join from a fresh thread so the test harness keeps its own.
        let (inode, hostname) = std::thread::spawn(move || {
            join(Path::new(&path), Namespace::Uts).expect("join");
            let me = std::fs::metadata("/proc/thread-self/ns/uts").expect("thread ns");
            let name = nix::unistd::gethostname().expect("hostname");
            (std::os::unix::fs::MetadataExt::ino(&me), name)
        })
        .join()
        .expect("thread");
        holder.kill().expect("kill holder");
        holder.wait().expect("wait holder");
        assert_eq!(inode, target.inode);
        assert_eq!(hostname, "joined-test");
    }

    #[test]
    fn joining_a_file_of_the_wrong_kind_fails_with_context() {
        let err = join(Path::new("/proc/self/ns/net"), Namespace::Uts).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("uts namespace /proc/self/ns/net"), "{msg}");
    }
}
