//! The lifecycle through the library, without the `peapod` binary: a container made from a
//! `Spec` with `Runtime::create`, started, waited for and deleted, as root, checked the way
//! a user would (its exit status, its state, its cgroup and state directory gone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use peapod_runtime::{CreateOptions, Runtime};

/// How long the container may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A private copy of the test rootfs, or `None` after saying why the test is skipped.
fn rootfs(scratch: &Path) -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: this test creates namespaces, mounts and cgroups and needs root");
        return None;
    }
    let base = std::env::var_os("PEAPOD_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/rootfs"));
    if !base.join("bin/sh").exists() {
        eprintln!("skipped: no test rootfs; run `cargo xtask rootfs` or `cargo xtask test`");
        return None;
    }
    let copy = scratch.join("rootfs");
    let copied = Command::new("cp").arg("-a").arg(&base).arg(&copy).status();
    assert!(
        copied.is_ok_and(|s| s.success()),
        "copying the rootfs failed"
    );
    Some(copy)
}

/// Deletes the container (killing its process, removing its cgroup and state) and reaps
/// its process on drop, whatever the test got to.
struct ContainerGuard<'a> {
    rt: &'a Runtime,
    id: &'a str,
    pid: Option<Pid>,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        let _ = self.rt.delete(self.id, true);
    }
}

/// Waits for our child `pid` at most `timeout`; its status as a shell gives it.
fn wait_exit(pid: Pid, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Some(128 + signal as i32),
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
    }
    None
}

#[test]
fn a_container_is_created_started_waited_for_and_deleted_through_the_library() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let Some(rootfs) = rootfs(scratch.path()) else {
        return;
    };
    let rt = Runtime::new(scratch.path().join("state"), false);
    let id = format!("library-{}", std::process::id());
    let mut spec = peapod_container::default_spec(None);
    spec.root_mut()
        .as_mut()
        .expect("a root")
        .set_path(rootfs.clone());
    spec.process_mut()
        .as_mut()
        .expect("a process")
        .set_args(Some(vec!["/bin/sh".into(), "-c".into(), "exit 3".into()]));
    let options = CreateOptions {
        fifo: true,
        ..CreateOptions::default()
    };
    let mut guard = ContainerGuard {
        rt: &rt,
        id: &id,
        pid: None,
    };
    let pid = rt
        .create(&id, &spec, scratch.path(), &options)
        .expect("create")
        .detach();
    guard.pid = Some(pid);

    let state = rt.state(&id).expect("state");
    assert_eq!((state.status, state.pid), ("created", pid.as_raw()));
    let (record, _) = rt.snapshot(&id.parse().expect("id")).expect("snapshot");
    assert!(
        !record.cgroup_paths.is_empty() && record.cgroup_paths.iter().all(|p| p.exists()),
        "its cgroup exists: {:?}",
        record.cgroup_paths
    );
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert!(
        cgroup.contains(&id),
        "the process is in its cgroup: {cgroup}"
    );

    rt.start(&id).expect("start");
    assert_eq!(
        wait_exit(pid, TIMEOUT),
        Some(3),
        "the entrypoint's exit status"
    );
    guard.pid = None;
    assert_eq!(rt.state(&id).expect("state").status, "stopped");

    rt.delete(&id, false).expect("delete");
    let gone = rt.state(&id).expect_err("deleted");
    assert_eq!(gone.exit_code(), 1, "{}", gone.one_line());
    assert!(
        gone.one_line().contains("does not exist"),
        "{}",
        gone.one_line()
    );
    assert!(!rt.root.join(&id).exists(), "its state directory is gone");
    for dir in &record.cgroup_paths {
        assert!(!dir.exists(), "its cgroup {} is gone", dir.display());
    }
}
