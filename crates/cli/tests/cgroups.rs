//! Resource limits through real cgroups: the files written, the kernel enforcing them (OOM
//! kill, fork refused, CPU quota), `update`, `pause`/`resume`, `events`, `delete --force`,
//! and that no cgroup directory outlives a test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use peapod_cgroups::{Cgroup, Layout};
use support::{finish, run_in, wait_until, wait_with_timeout, Outcome, TestRootfs, TIMEOUT};

/// The cgroup a container `id` gets by default, checked and cleaned up on drop: whatever a
/// test leaves (a process, a directory) is removed, and the test then fails in `check`.
struct CgroupGuard {
    cgroup: Cgroup,
}

impl CgroupGuard {
    fn of(id: &str) -> CgroupGuard {
        let layout = Layout::detect().expect("cgroup layout");
        let cgroup = Cgroup::locate(&layout, &Cgroup::default_path(id)).expect("locate");
        CgroupGuard { cgroup }
    }

    fn v2(&self) -> bool {
        self.cgroup.is_v2()
    }

    /// The file `v1` (or `v2` on the unified hierarchy) of `controller`.
    fn file(&self, controller: &str, v1: &str, v2: &str) -> PathBuf {
        let name = if self.v2() { v2 } else { v1 };
        self.cgroup
            .file(controller, name)
            .expect("controller present")
    }

    fn read(&self, controller: &str, v1: &str, v2: &str) -> String {
        let path = self.file(controller, v1, v2);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// CPU time used so far, in nanoseconds.
    fn cpu_usage_ns(&self) -> u64 {
        self.cgroup.stats().expect("stats").cpu_usage_ns
    }

    fn assert_gone(&self) {
        let left: Vec<PathBuf> = self
            .cgroup
            .paths()
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        assert!(left.is_empty(), "cgroup directories left behind: {left:?}");
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if self.cgroup.paths().iter().any(|p| p.exists()) {
            let _ = self.cgroup.kill_all(Duration::from_secs(5));
            let _ = self.cgroup.remove();
        }
    }
}

/// The fixture, or `None` (after saying why) where cgroups with the controllers these tests
/// need are not available.
fn fixture() -> Option<TestRootfs> {
    let rootfs = TestRootfs::new()?;
    support::cgroup_layout_with(&["memory", "cpu", "pids"])?;
    Some(rootfs)
}

/// A unique container id for this test.
fn unique(name: &str) -> String {
    format!("cg-{name}-{}", std::process::id())
}

/// A detached container, deleted with `--force` on drop (before its cgroup guard runs).
struct Detached<'a> {
    rootfs: &'a TestRootfs,
    id: String,
}

impl<'a> Detached<'a> {
    fn run(rootfs: &'a TestRootfs, id: &str, extra: &[&str], script: &str) -> Detached<'a> {
        let stderr = rootfs.scratch().join(format!("{id}.stderr"));
        let mut cmd = rootfs.peapod();
        cmd.args(["run", "--detach", "--rootfs", rootfs.arg(), "--name", id])
            .args(extra)
            .args(["--", "/bin/sh", "-c", script])
            // The container keeps what it inherits: no pipe a test would wait on.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let mut child = cmd.spawn().expect("spawn peapod");
        let status = wait_with_timeout(&mut child, TIMEOUT).expect("run --detach finished");
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(status.success(), "run --detach failed: {err}");
        Detached {
            rootfs,
            id: id.to_owned(),
        }
    }

    fn peapod(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.rootfs.peapod();
        cmd.args(args);
        finish(cmd.spawn().expect("spawn peapod"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.peapod(args);
        assert_eq!(out.code, 0, "peapod {args:?}: {}", out.stderr);
        out.stdout
    }

    fn status(&self) -> String {
        let state: serde_json::Value =
            serde_json::from_str(&self.ok(&["state", &self.id])).expect("state json");
        state["status"].as_str().expect("status").to_owned()
    }

    /// A file in the container's root, seen from the host.
    fn host_path(&self, inside: &str) -> PathBuf {
        self.rootfs.path.join(inside.trim_start_matches('/'))
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.peapod(&["delete", "--force", &self.id]);
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn memory_limit_exceeded_is_oom_killed_with_137_and_said() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("oom");
    let guard = CgroupGuard::of(&id);
    // One 64 MiB buffer in a container limited to 16 MiB (the test host has no swap to
    // escape to; with swap, memory.memsw would have to be limited as well).
    let out = run_in(
        &rootfs,
        &["--name", &id, "--memory", "16m"],
        &[
            "/bin/dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
        ],
    );
    assert_eq!(out.code, 137, "stderr: {}", out.stderr);
    assert!(out.stderr.contains("OOM killer killed 1"), "{}", out.stderr);
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn a_limit_too_low_for_set_up_is_said_to_be_one() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("oom-setup");
    let guard = CgroupGuard::of(&id);
    let out = run_in(&rootfs, &["--name", &id, "--memory", "1k"], &["/bin/true"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("OOM-killed during set-up: its memory limit is probably too low"),
        "{out:?}"
    );
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn oom_kills_are_reported_by_events() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("oom-events");
    let guard = CgroupGuard::of(&id);
    {
        let c = Detached::run(
            &rootfs,
            &id,
            &["--memory", "16m"],
            "while [ ! -e /go ]; do sleep 0.02; done; \
             dd if=/dev/zero of=/dev/null bs=64M count=1; exec sleep 60",
        );
        let mut events = rootfs.peapod();
        events
            .args(["events", "--interval", "1s", &id])
            .stdout(Stdio::piped());
        let mut events = events.spawn().expect("spawn events");
        let stream = events.stdout.take().expect("events stdout");
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stream)) {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let next = || -> serde_json::Value {
            let line = received.recv_timeout(TIMEOUT).expect("an event streamed");
            serde_json::from_str(&line).expect("event json")
        };
        // The first stats event comes after events has read the count it compares with, so
        // the OOM kill made after it is one it must report.
        assert_eq!(next()["type"], "stats");
        std::fs::write(c.host_path("/go"), "").expect("go");
        let oom = std::iter::repeat_with(next)
            .take(120)
            .find(|event| event["type"] != "stats")
            .expect("an oom event within 120 events");
        assert_eq!(oom["type"], "oom");
        assert_eq!(oom["id"], id.as_str());

        let stats: serde_json::Value =
            serde_json::from_str(&c.ok(&["events", "--stats", &id])).expect("stats json");
        assert_eq!(stats["type"], "stats");
        assert_eq!(stats["data"]["memory"]["usage"]["limit"], 16 << 20);
        assert_eq!(stats["data"]["memory"]["raw"]["oom_kill"], 1);

        // The stream ends when the container does.
        c.ok(&["delete", "--force", &id]);
        let ended = finish(events);
        assert_eq!(ended.code, 0, "{}", ended.stderr);
    }
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn fork_fails_beyond_the_pids_limit() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("pids");
    let guard = CgroupGuard::of(&id);
    // The shell and two children fit in 3; the third child does not.
    let out = run_in(
        &rootfs,
        &["--name", &id, "--pids-limit", "3"],
        &[
            "/bin/sh",
            "-c",
            "sleep 30 & sleep 30 & sleep 30 & echo forked-all",
        ],
    );
    assert!(!out.stdout.contains("forked-all"), "{}", out.stdout);
    assert!(out.stderr.contains("fork"), "{}", out.stderr);
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn cpu_quota_shares_and_live_updates_reach_the_cgroup_files() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("cpu");
    let guard = CgroupGuard::of(&id);
    {
        let c = Detached::run(
            &rootfs,
            &id,
            &["--cpus", "0.25", "--memory", "64m", "--pids-limit", "50"],
            "exec sleep 60",
        );
        if guard.v2() {
            assert_eq!(guard.read("cpu", "", "cpu.max"), "25000 100000");
        } else {
            assert_eq!(guard.read("cpu", "cpu.cfs_quota_us", ""), "25000");
            assert_eq!(guard.read("cpu", "cpu.cfs_period_us", ""), "100000");
        }
        let memory = || guard.read("memory", "memory.limit_in_bytes", "memory.max");
        assert_eq!(memory(), (64u64 << 20).to_string());
        assert_eq!(guard.read("pids", "pids.max", "pids.max"), "50");

        c.ok(&[
            "update",
            "--memory",
            "96m",
            "--pids-limit",
            "70",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "50000",
            &id,
        ]);
        assert_eq!(memory(), (96u64 << 20).to_string());
        assert_eq!(guard.read("pids", "pids.max", "pids.max"), "70");
        if guard.v2() {
            assert_eq!(guard.read("cpu", "", "cpu.weight"), "20");
            assert_eq!(guard.read("cpu", "", "cpu.max"), "50000 100000");
        } else {
            assert_eq!(guard.read("cpu", "cpu.shares", ""), "512");
            assert_eq!(guard.read("cpu", "cpu.cfs_quota_us", ""), "50000");
        }

        // --resources, from stdin, as runc update reads it.
        let mut update = rootfs.peapod();
        update
            .args(["update", "--resources", "-", &id])
            .stdin(Stdio::piped());
        let mut child = update.spawn().expect("spawn update");
        std::io::Write::write_all(
            &mut child.stdin.take().expect("stdin"),
            br#"{"pids": {"limit": 90}}"#,
        )
        .expect("write resources");
        let out = finish(child);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(guard.read("pids", "pids.max", "pids.max"), "90");

        // A limit the kernel refuses is one line naming the file and the value: v2 writes
        // the quota with the period into the one file cpu.max.
        let out = c.peapod(&["update", "--cpu-period", "1", &id]);
        assert_eq!(out.code, 125);
        let value = if guard.v2() { "\"50000 1\"" } else { "\"1\"" };
        assert!(out.stderr.contains(value), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn busy_loop_gets_no_more_than_its_cpu_quota() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("quota");
    let guard = CgroupGuard::of(&id);
    {
        let _c = Detached::run(&rootfs, &id, &["--cpus", "0.2"], "while :; do :; done");
        std::thread::sleep(Duration::from_millis(200));
        let (t0, u0) = (Instant::now(), guard.cpu_usage_ns());
        std::thread::sleep(Duration::from_secs(1));
        let (wall, used) = (t0.elapsed(), guard.cpu_usage_ns() - u0);
        let share = used as f64 / wall.as_nanos() as f64;
        eprintln!("busy loop under --cpus 0.2: {share:.3} of a CPU over {wall:?}");
        // Generous: the quota is 0.2; one period of slack either way on a shared machine.
        assert!(share < 0.35, "used {share:.3} of a CPU under a 0.2 quota");
        assert!(
            share > 0.02,
            "the loop hardly ran ({share:.3}): was it in the cgroup?"
        );
    }
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("pause");
    let guard = CgroupGuard::of(&id);
    {
        let c = Detached::run(
            &rootfs,
            &id,
            &[],
            "i=0; while :; do i=$((i+1)); echo $i > /count.tmp; mv /count.tmp /count; done",
        );
        let count = c.host_path("/count");
        let counter = || read_number(&count).unwrap_or(0);
        wait_until("the counter to run", || counter() > 10);

        c.ok(&["pause", &id]);
        assert_eq!(c.status(), "paused");
        let frozen_at = counter();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(counter(), frozen_at, "the counter moved while paused");
        let again = c.peapod(&["pause", &id]);
        assert_eq!(again.code, 125, "pausing twice: {}", again.stderr);

        c.ok(&["resume", &id]);
        assert_eq!(c.status(), "running");
        wait_until("the counter to move again", || counter() > frozen_at + 10);
    }
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn exec_in_a_paused_container_needs_ignore_paused_and_runs_on_resume() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("exec-paused");
    let guard = CgroupGuard::of(&id);
    {
        let c = Detached::run(&rootfs, &id, &[], "exec sleep 30");
        c.ok(&["pause", &id]);
        let refused = c.peapod(&["exec", &id, "true"]);
        assert_eq!(refused.code, 125, "{refused:?}");
        assert!(
            refused.stderr.contains("is paused") && refused.stderr.contains("--ignore-paused"),
            "{refused:?}"
        );
        // Started frozen: it finishes only once the container is resumed.
        let mut exec = rootfs.peapod();
        exec.args([
            "exec",
            "--ignore-paused",
            &id,
            "sh",
            "-c",
            "echo ran > /ran",
        ]);
        let exec = exec.spawn().expect("spawn exec");
        // It joined the frozen cgroup (beside the entrypoint): only a resume lets it go on.
        wait_until("the exec'd process in the paused cgroup", || {
            guard.cgroup.procs().map_or(0, |p| p.len()) >= 2
        });
        assert_eq!(c.status(), "paused");
        c.ok(&["resume", &id]);
        let out = finish(exec);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            std::fs::read_to_string(c.host_path("/ran")).expect("/ran"),
            "ran\n"
        );
    }
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn exec_cap_never_reaches_the_inheritable_or_ambient_sets() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("exec-cap");
    let guard = CgroupGuard::of(&id);
    {
        let c = Detached::run(&rootfs, &id, &[], "exec sleep 30");
        let status = c.ok(&[
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            &id,
            "cat",
            "/proc/self/status",
        ]);
        let field = |name: &str| {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {status}"));
            u64::from_str_radix(line.split_whitespace().nth(1).expect("value"), 16).expect("hex")
        };
        const SYS_ADMIN: u64 = 1 << 21;
        assert_ne!(field("CapEff:") & SYS_ADMIN, 0, "{status}");
        assert_ne!(field("CapBnd:") & SYS_ADMIN, 0, "{status}");
        assert_eq!(field("CapInh:"), 0, "CVE-2022-29162: {status}");
        assert_eq!(field("CapAmb:"), 0, "CVE-2022-29162: {status}");
    }
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn delete_force_kills_every_process_in_the_cgroup_and_removes_it() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("delete");
    let guard = CgroupGuard::of(&id);
    // In the host's PID namespace, so that the container's init dying would not take the
    // forked child with it: only the cgroup finds it.
    let c = Detached::run(
        &rootfs,
        &id,
        &["--share", "pid"],
        "sleep 60 & echo $! > /child; exec sleep 60",
    );
    wait_until("the forked child", || {
        read_number(&c.host_path("/child")).is_some()
    });
    let child = read_number(&c.host_path("/child")).expect("child pid");
    let procs = guard.cgroup.procs().expect("procs");
    assert!(procs.contains(&(child as u32)), "{child} not in {procs:?}");
    assert_eq!(procs.len(), 2, "{procs:?}");

    c.ok(&["delete", "--force", &id]);
    wait_until("the child to be gone", || {
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
    guard.assert_gone();
    drop(c);
    rootfs.assert_nothing_left();
}

/// The other way `delete --force` ends a container: one that is PID 1 of its own PID
/// namespace is killed alone and takes every process of the namespace with it (the cgroup
/// is not frozen for that); a paused one is still killed through its frozen cgroup, where
/// SIGKILL alone would not reach a frozen process on cgroup v1.
#[test]
fn delete_force_of_a_running_and_of_a_paused_namespace_init_leaves_no_process() {
    let Some(rootfs) = fixture() else { return };
    for paused in [false, true] {
        let id = unique(if paused { "del-paused" } else { "del-running" });
        let guard = CgroupGuard::of(&id);
        let c = Detached::run(
            &rootfs,
            &id,
            &[],
            "sleep 60 & (sleep 60 &) ; echo ready > /ready; exec sleep 60",
        );
        wait_until("the forked children", || {
            c.host_path("/ready").exists()
                && guard.cgroup.procs().is_ok_and(|procs| procs.len() == 3)
        });
        let procs = guard.cgroup.procs().expect("procs");
        if paused {
            c.ok(&["pause", &id]);
            assert_eq!(c.status(), "paused");
        }
        c.ok(&["delete", "--force", &id]);
        for pid in procs {
            assert!(
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |stat| stat.contains(") Z ")),
                "process {pid} of {id} (paused: {paused}) outlived delete --force"
            );
        }
        guard.assert_gone();
        drop(c);
    }
    rootfs.assert_nothing_left();
}

/// `peapod run --bundle` of `/bin/true` with `resources` as `linux.resources`.
fn run_with_resources(rootfs: &TestRootfs, id: &str, resources: serde_json::Value) -> Outcome {
    run_bundle(rootfs, id, |json| {
        json["process"]["args"] = serde_json::json!(["/bin/true"]);
        json["linux"]["resources"] = resources;
    })
}

/// `peapod run --bundle` of the spec `peapod spec` writes, changed by `edit`.
fn run_bundle(rootfs: &TestRootfs, id: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Outcome {
    let dir = rootfs.spec_bundle(&format!("bundle-{id}"), edit);
    rootfs.run_bundle(&dir, id)
}

#[test]
fn bad_limit_leaves_no_cgroup_and_no_state() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("bad");
    let guard = CgroupGuard::of(&id);
    // More CPUs than the machine has: the kernel refuses the cpuset.
    let out = run_with_resources(
        &rootfs,
        &id,
        serde_json::json!({"cpu": {"cpus": "4000-4001"}}),
    );
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(out.stderr.contains("cpuset.cpus"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn without_a_cgroup_namespace_the_cgroup_mount_binds_the_containers_own_cgroup() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("no-cgns");
    let guard = CgroupGuard::of(&id);
    // v1: a tmpfs with one bind per hierarchy below it; v2: the one directory, bound at
    // /sys/fs/cgroup itself.
    let (memory, below) = if guard.v2() {
        ("memory.max", " ")
    } else {
        ("memory/memory.limit_in_bytes", "/")
    };
    let dir = memory.rsplit_once('/').map_or("", |(dir, _)| dir);
    let script = format!(
        "cat /sys/fs/cgroup/{memory}; \
         ls /sys/fs/cgroup/{dir} | grep -c '^peapod$' ; \
         touch /sys/fs/cgroup/{dir}/x 2>/dev/null && echo writable; \
         grep -c ' /sys/fs/cgroup{below}' /proc/self/mountinfo"
    );
    let out = run_bundle(&rootfs, &id, |json| {
        json["process"]["args"] = serde_json::json!(["/bin/sh", "-c", &script]);
        json["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
        let namespaces = json["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        namespaces.retain(|ns| ns["type"] != "cgroup");
    });
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "67108864", "its own limit: {out:?}");
    assert_eq!(lines[1], "0", "no other cgroup is seen: {out:?}");
    let hierarchies = guard.cgroup.paths().len();
    assert_eq!(
        lines[2..],
        [hierarchies.to_string()],
        "one read-only bind per hierarchy, nothing writable: {out:?}"
    );
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn run_shows_the_container_its_limits_read_only_under_sys_fs_cgroup() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("sees-limits");
    let guard = CgroupGuard::of(&id);
    let (memory, cpu) = if guard.v2() {
        ("memory.max", "cpu.max")
    } else {
        ("memory/memory.limit_in_bytes", "cpu/cpu.cfs_quota_us")
    };
    let script = format!(
        "cat /sys/fs/cgroup/{memory} /sys/fs/cgroup/{cpu}; \
         echo 1 > /sys/fs/cgroup/{memory} 2>/dev/null && echo writable; true"
    );
    let out = run_in(
        &rootfs,
        &["--name", &id, "--memory", "64m", "--cpus", "0.5"],
        &["/bin/sh", "-c", &script],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let expected = if guard.v2() {
        "67108864\n50000 100000\n"
    } else {
        "67108864\n50000\n"
    };
    assert_eq!(out.stdout, expected, "{out:?}");
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

#[test]
fn limits_of_a_controller_that_is_not_mounted_are_refused_naming_it() {
    let Some(rootfs) = fixture() else { return };
    let layout = Layout::detect().expect("layout");
    for (controller, resources) in [
        (
            "net_cls",
            serde_json::json!({"network": {"classID": 1048577}}),
        ),
        (
            "net_prio",
            serde_json::json!({"network": {"priorities": [{"name": "lo", "priority": 5}]}}),
        ),
    ] {
        if layout.hierarchy_of(controller).is_some() {
            eprintln!("skipped for {controller}: this host mounts it");
            continue;
        }
        let id = unique(controller);
        let guard = CgroupGuard::of(&id);
        let out = run_with_resources(&rootfs, &id, resources);
        assert_eq!(out.code, 125, "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        let wanted = if layout.is_v2() {
            "net_cls and net_prio are cgroup v1 controllers; cgroup v2 has neither".to_owned()
        } else {
            format!("the {controller} controller is not mounted")
        };
        assert!(out.stderr.contains(&wanted), "{out:?}");
        assert!(out.stderr.contains("linux.resources.network"), "{out:?}");
        guard.assert_gone();
        rootfs.assert_nothing_left();
    }
}

#[test]
fn the_container_sees_its_own_cgroup_as_root() {
    let Some(rootfs) = fixture() else { return };
    let id = unique("ns");
    let guard = CgroupGuard::of(&id);
    let out = run_in(
        &rootfs,
        &["--name", &id],
        &["/bin/cat", "/proc/self/cgroup"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in out.stdout.lines() {
        assert!(
            line.ends_with(":/"),
            "not at its cgroup namespace's root: {line}"
        );
    }
    let shared = run_in(
        &rootfs,
        &["--name", &id, "--share", "cgroup"],
        &["/bin/cat", "/proc/self/cgroup"],
    );
    assert!(
        shared.stdout.contains(&format!("peapod/{id}")),
        "{}",
        shared.stdout
    );
    guard.assert_gone();
    rootfs.assert_nothing_left();
}

/// The host PID of a detached container's process, from `state`.
fn state_pid(c: &Detached) -> u32 {
    let state: serde_json::Value =
        serde_json::from_str(&c.ok(&["state", &c.id])).expect("state json");
    state["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("no live pid: {state}"))
}

#[test]
fn a_container_is_in_its_own_cgroup_in_name_systemd_and_cgroup2_and_leaves_nothing_there() {
    let Some(rootfs) = fixture() else { return };
    let layout = Layout::detect().expect("layout");
    let Layout::V1 { named, unified, .. } = &layout else {
        eprintln!("skipped: a pure cgroup v2 host has no name=systemd or hybrid cgroup2 mount");
        return;
    };
    // (the `/proc/PID/cgroup` key of the hierarchy, this process's own cgroup there, its mount)
    let mut wanted: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    match named.iter().find(|h| h.name.as_deref() == Some("systemd")) {
        Some(h) => wanted.push(("name=systemd".into(), h.own.clone(), h.mount.clone())),
        None => eprintln!("(no name=systemd hierarchy here: not checked)"),
    }
    match unified {
        Some(h) => wanted.push((String::new(), h.own.clone(), h.mount.clone())),
        None => eprintln!("(no cgroup2 mount beside the v1 hierarchies here: not checked)"),
    }
    if wanted.is_empty() {
        eprintln!("skipped: this v1 host has neither a name=systemd hierarchy nor a cgroup2 mount");
        return;
    }
    let id = unique("every");
    let guard = CgroupGuard::of(&id);
    let c = Detached::run(&rootfs, &id, &[], "exec sleep 60");
    let pid = state_pid(&c);
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    let mut dirs = Vec::new();
    for (key, own, mount) in &wanted {
        let expected = own.join("peapod").join(&id);
        let line = text
            .lines()
            .find(|l| l.split(':').nth(1) == Some(key.as_str()))
            .unwrap_or_else(|| panic!("no {key:?} line in {text}"));
        assert_eq!(
            line.splitn(3, ':').nth(2),
            expected.to_str(),
            "hierarchy {key:?}: {text}"
        );
        let dir = mount
            .join(own.strip_prefix("/").unwrap_or(own))
            .join("peapod")
            .join(&id);
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
        assert!(
            procs.lines().any(|p| p == pid.to_string()),
            "{pid} not in {}: {procs}",
            dir.display()
        );
        dirs.push(dir);
    }
    // Found again from the record by the other commands.
    let ps = c.ok(&["ps", "--format", "json", &id]);
    assert!(ps.contains(&pid.to_string()), "{ps}");
    c.ok(&["delete", "--force", &id]);
    let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    guard.assert_gone();
    drop(c);
    rootfs.assert_nothing_left();
}

#[test]
fn a_cgroup2_mount_covered_by_a_tmpfs_is_left_alone() {
    let Some(rootfs) = fixture() else { return };
    let Layout::V1 {
        unified: Some(unified),
        ..
    } = Layout::detect().expect("layout")
    else {
        eprintln!("skipped: no hybrid cgroup2 mount here to cover");
        return;
    };
    let id = unique("covered");
    let guard = CgroupGuard::of(&id);
    // In a mount namespace of its own, a tmpfs over the cgroup2 mount (as benchmarks make for
    // crun): peapod must write to the hierarchies it can see, not into that tmpfs.
    // Afterwards the tmpfs must still be empty.
    let script =
        r#"dir=$1; shift; mount -t tmpfs peapod-test "$dir" && "$@" /bin/true && ls -A "$dir""#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&unified.mount)
    .arg(env!("CARGO_BIN_EXE_peapod"))
    .arg("--root")
    .arg(rootfs.state_root())
    .args(["run", "--rootfs", rootfs.arg(), "--name", &id, "--"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = finish(cmd.spawn().expect("spawn unshare"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout, "",
        "peapod wrote into the tmpfs over the cgroup2 mount"
    );
    guard.assert_gone();
    rootfs.assert_nothing_left();
}
