//! A pod through the libraries, without the `peapod` binary: made with `peapod_pod::create`,
//! two containers attached to it and run with `peapod_runtime`, checked the way a user
//! would (both in the pod's network and uts namespaces, below its cgroup), then removed with
//! nothing left.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use peapod_ns::Namespace;
use peapod_pod::PodOptions;
use peapod_runtime::{CreateOptions, Runtime};

/// How long a container may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A private copy of the test rootfs and the static peapod-init, or `None` after saying why
/// the test is skipped.
fn fixtures(scratch: &Path) -> Option<(PathBuf, PathBuf)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: pods pin namespaces with bind mounts and need root");
        return None;
    }
    let base = std::env::var_os("PEAPOD_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/rootfs"));
    if !base.join("bin/sh").exists() {
        eprintln!("skipped: no test rootfs; run `cargo xtask rootfs` or `cargo xtask test`");
        return None;
    }
    let Some(init) = std::env::var_os("PEAPOD_INIT_BIN").map(PathBuf::from) else {
        eprintln!("skipped: PEAPOD_INIT_BIN names no static peapod-init (`cargo xtask dist`)");
        return None;
    };
    let copy = scratch.join("rootfs");
    let copied = Command::new("cp").arg("-a").arg(&base).arg(&copy).status();
    assert!(
        copied.is_ok_and(|s| s.success()),
        "copying the rootfs failed"
    );
    Some((copy, init))
}

/// Removes the pod (its containers, infra process, pins, cgroup and state) and reaps the
/// container processes started on drop, whatever the test got to.
struct PodGuard<'a> {
    rt: &'a Runtime,
    name: &'a str,
    pids: Vec<Pid>,
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        let _ = peapod_pod::remove(self.rt, self.name, true);
        for pid in &self.pids {
            let _ = waitpid(*pid, None);
        }
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

fn namespace_inode(pid: Pid, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .expect("namespace")
        .ino()
}

#[test]
fn a_pod_with_two_containers_is_made_run_and_removed_through_the_libraries() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let Some((rootfs, init)) = fixtures(scratch.path()) else {
        return;
    };
    let rt = Runtime::new(scratch.path().join("state"), false);
    let name = format!("libpod-{}", std::process::id());
    let mut guard = PodGuard {
        rt: &rt,
        name: &name,
        pids: Vec::new(),
    };
    let options = PodOptions {
        name: name.clone(),
        hostname: Some("shared-host".into()),
        share: vec![Namespace::Net, Namespace::Ipc, Namespace::Uts],
        labels: Vec::new(),
        init_path: Some(init),
        limits: Default::default(),
        network: Default::default(),
        log_opts: Vec::new(),
        userns: None,
    };
    peapod_pod::create(&rt, &options).expect("pod create");

    let ids = [format!("{name}-a"), format!("{name}-b")];
    for id in &ids {
        let mut spec = peapod_container::default_spec(None);
        spec.root_mut()
            .as_mut()
            .expect("a root")
            .set_path(rootfs.clone());
        spec.process_mut()
            .as_mut()
            .expect("a process")
            .set_args(Some(vec!["/bin/sleep".into(), "60".into()]));
        let attached = peapod_pod::attach(&rt, &name, id, &mut spec, false, None).expect("attach");
        let options = CreateOptions {
            fifo: true,
            cgroup_parent: attached.cgroup(),
            ..CreateOptions::default()
        };
        let pid = rt
            .create(id, &spec, scratch.path(), &options)
            .expect("create")
            .detach();
        guard.pids.push(pid);
        drop(attached);
        rt.start(id).expect("start");
    }

    let pod = peapod_pod::details(&rt, &name).expect("pod ps");
    assert_eq!(pod.status, "running");
    let running: Vec<&str> = pod.containers.iter().map(|c| c.status).collect();
    assert_eq!(running, ["running", "running"]);
    for pid in &guard.pids {
        for kind in ["net", "uts"] {
            assert_eq!(
                Some(&namespace_inode(*pid, kind)),
                pod.namespaces.get(kind),
                "container {pid} is in the pod's {kind} namespace"
            );
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
        assert!(
            cgroup.contains(&format!("pod:{name}:")),
            "container {pid} is below the pod's cgroup: {cgroup}"
        );
    }

    for (id, pid) in ids.iter().zip(guard.pids.clone()) {
        rt.kill(id, Signal::SIGKILL, false).expect("kill");
        assert_eq!(wait_exit(pid, TIMEOUT), Some(128 + Signal::SIGKILL as i32));
    }
    guard.pids.clear();
    peapod_pod::remove(&rt, &name, true).expect("pod rm");
    assert!(
        peapod_pod::list(&rt).expect("list").is_empty(),
        "no pod is left"
    );
    for id in &ids {
        assert!(!rt.exists(id), "container {id} is gone");
    }
    for dir in &pod.cgroup_paths {
        assert!(!dir.exists(), "the pod's cgroup {} is gone", dir.display());
    }
}
