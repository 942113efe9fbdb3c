//! What a killed `peapod` leaves behind is found and removed by the next command, and a
//! container with a missing or corrupt record is still listed and can be deleted.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use peapod_cgroups::{Cgroup, Layout};
use support::{container_pid, finish, wait_until, Outcome, TestRootfs};

/// Kills the process `pid` (if it still runs in the test's rootfs or is the process the test
/// started) when dropped, so that a failing test leaves nothing running.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(self.0),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// Runs `delete --force ID` on drop, and removes the container's default cgroup if it is
/// still there: the test's own clean-up, whatever peapod did.
struct ContainerGuard<'a> {
    rootfs: &'a TestRootfs,
    id: String,
    cgroup: Option<Cgroup>,
}

impl<'a> ContainerGuard<'a> {
    fn new(rootfs: &'a TestRootfs, id: &str) -> ContainerGuard<'a> {
        let cgroup = Layout::detect()
            .ok()
            .and_then(|layout| Cgroup::locate(&layout, &Cgroup::default_path(id)).ok());
        ContainerGuard {
            rootfs,
            id: id.to_owned(),
            cgroup,
        }
    }

    /// The cgroup directories of the container that exist now.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.cgroup
            .iter()
            .flat_map(Cgroup::paths)
            .filter(|p| p.exists())
            .collect()
    }

    fn state_dir(&self) -> PathBuf {
        self.rootfs.state_root().join(&self.id)
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = finish(
            self.rootfs
                .peapod()
                .args(["delete", "--force", &self.id])
                .spawn()
                .expect("spawn delete"),
        );
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.kill_all(std::time::Duration::from_secs(5));
            let _ = cgroup.remove();
        }
    }
}

fn peapod(rootfs: &TestRootfs, args: &[&str]) -> Outcome {
    finish(rootfs.peapod().args(args).spawn().expect("spawn peapod"))
}

fn list_json(rootfs: &TestRootfs) -> (Vec<serde_json::Value>, String) {
    let out = peapod(rootfs, &["list", "--format", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("list JSON");
    (list, out.stderr)
}

/// Starts `peapod run --name ID -- sleep 30` in the foreground, kills it with SIGKILL once
/// its container runs, and waits for the container to die with it.
fn kill_a_foreground_run(rootfs: &TestRootfs, id: &str) {
    let mut child = rootfs
        .peapod()
        .args([
            "run",
            "--rootfs",
            rootfs.arg(),
            "--name",
            id,
            "--",
            "/bin/sleep",
            "30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peapod run");
    let _run = KillOnDrop(child.id() as i32);
    let container = container_pid(child.id());
    let _container = KillOnDrop(container as i32);
    wait_until("the entrypoint", || {
        std::fs::read_to_string(format!("/proc/{container}/cmdline"))
            .is_ok_and(|c| c.starts_with("/bin/sleep"))
    });
    child.kill().expect("SIGKILL peapod run");
    child.wait().expect("reap peapod run");
    // PR_SET_PDEATHSIG: the container dies with its `peapod run`.
    wait_until("the container to die with peapod run", || {
        !std::path::Path::new(&format!("/proc/{container}")).exists()
            || std::fs::read_to_string(format!("/proc/{container}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    });
}

#[test]
fn a_killed_foreground_run_is_reaped_by_the_next_list_or_run() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    for (id, next) in [("left-list", "list"), ("left-run", "run")] {
        let guard = ContainerGuard::new(&rootfs, id);
        kill_a_foreground_run(&rootfs, id);
        // What SIGKILL left: the record and the cgroup.
        assert!(guard.state_dir().exists(), "{id}: no record left to reap");
        assert!(
            !guard.cgroup_dirs().is_empty(),
            "{id}: no cgroup left to reap"
        );
        let out = match next {
            "list" => peapod(&rootfs, &["list"]),
            _ => peapod(
                &rootfs,
                &["run", "--rootfs", rootfs.arg(), "--", "/bin/true"],
            ),
        };
        assert_eq!(out.code, 0, "{next}: {out:?}");
        assert!(
            !out.stdout.contains(id),
            "{next} lists the leftover: {out:?}"
        );
        assert!(
            !guard.state_dir().exists(),
            "{next} left the record of {id}"
        );
        assert_eq!(
            guard.cgroup_dirs(),
            Vec::<PathBuf>::new(),
            "{next} left the cgroup"
        );
        drop(guard);
    }
    rootfs.assert_nothing_left();
}

#[test]
fn a_create_killed_half_way_is_reaped_by_the_next_list() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let id = "half-made";
    let guard = ContainerGuard::new(&rootfs, id);
    // A createRuntime hook that says it runs (with its pid, for the clean-up) and waits:
    // `create` is killed while it is there, half-way.
    let marker = rootfs.scratch().join("hook-pid");
    let bundle = rootfs.spec_bundle("bundle", |spec| {
        spec["hooks"]["createRuntime"] = serde_json::json!([{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 30", marker.display())],
        }]);
    });
    let mut create = rootfs
        .peapod()
        .args(["create", "--bundle", bundle.to_str().expect("utf-8"), id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn create");
    let _create = KillOnDrop(create.id() as i32);
    wait_until("the hook", || marker.exists());
    let hook: i32 = std::fs::read_to_string(&marker)
        .expect("hook pid")
        .trim()
        .parse()
        .expect("a pid");
    let _hook = KillOnDrop(hook);
    create.kill().expect("SIGKILL create");
    create.wait().expect("reap create");

    // Its owner is gone: the next command removes it (and lists nothing of it).
    let (list, _) = list_json(&rootfs);
    assert!(list.iter().all(|c| c["id"] != id), "{list:#?}");
    assert!(!guard.state_dir().exists());
    assert_eq!(guard.cgroup_dirs(), Vec::<PathBuf>::new());
    drop(guard);
    drop(_hook);
    rootfs.assert_nothing_left();
}

#[test]
fn a_corrupt_record_is_listed_with_a_warning_and_delete_force_removes_all() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let id = "corrupt";
    let guard = ContainerGuard::new(&rootfs, id);
    // The container keeps what it inherits: no pipe that the test would wait on.
    let mut detached = rootfs.peapod();
    detached
        .args(["run", "--detach", "--rootfs", rootfs.arg(), "--name", id])
        .args(["--", "/bin/sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let out = finish(detached.spawn().expect("spawn run --detach"));
    assert_eq!(out.code, 0, "{out:?}");
    let state = peapod(&rootfs, &["state", id]);
    let pid = serde_json::from_str::<serde_json::Value>(&state.stdout).expect("state")["pid"]
        .as_i64()
        .expect("pid") as i32;
    let _container = KillOnDrop(pid);
    std::fs::write(
        guard.state_dir().join("state.json"),
        "{\"ociVersion\": \"1.2",
    )
    .expect("corrupt");

    let (list, stderr) = list_json(&rootfs);
    let listed: Vec<&serde_json::Value> = list.iter().filter(|c| c["id"] == id).collect();
    assert_eq!(listed.len(), 1, "{list:#?}");
    assert_eq!(listed[0]["status"], "unknown", "{list:#?}");
    assert!(
        stderr.contains("corrupt state file"),
        "no warning: {stderr:?}"
    );
    assert!(
        stderr.contains(&format!("delete --force {id}")),
        "{stderr:?}"
    );

    let out = peapod(&rootfs, &["delete", id]);
    assert_ne!(
        out.code, 0,
        "delete without --force of a corrupt record: {out:?}"
    );
    assert!(out.stderr.contains("corrupt state file"), "{out:?}");

    let out = peapod(&rootfs, &["delete", "--force", id]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the container process to be gone", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    assert!(!guard.state_dir().exists());
    assert_eq!(guard.cgroup_dirs(), Vec::<PathBuf>::new());
    drop(guard);
    rootfs.assert_nothing_left();
}
