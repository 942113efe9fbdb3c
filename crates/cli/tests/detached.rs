//! Detached containers as docker users know them: `run -d` prints a 64-hex id and returns
//! while the container runs, its output in a bounded log of its own (`logs`, `-f`,
//! `--tail`), its exit status recorded (`wait`, `state`), `stop`, `rm -f`, `-d --rm`, and a
//! killed monitor's container reaped by the next command. Every container a test starts is
//! removed, and its processes killed, by a guard's `Drop`, also when the test fails.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::kill::KillPid;
use support::{finish, wait_until, Outcome, TestRootfs};

/// A process by PID and start time, so that a guard never signals a reuse of its PID.
#[derive(Debug, Clone, Copy)]
struct Identity {
    pid: i32,
    start_time: u64,
}

impl Identity {
    fn from_json(value: &serde_json::Value) -> Option<Identity> {
        Some(Identity {
            pid: i32::try_from(value.get("pid")?.as_i64()?).ok()?,
            start_time: value.get("start_time")?.as_u64()?,
        })
    }

    fn is_alive(self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first().copied().unwrap_or("X");
        fields.get(19).and_then(|s| s.parse().ok()) == Some(self.start_time)
            && state != "Z"
            && state != "X"
    }

    fn kill(self) {
        if self.is_alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A container started with `run -d`: removed (`rm -f`) on drop, and its container process
/// and monitor killed by identity should that leave them.
struct Detached<'a> {
    rootfs: &'a TestRootfs,
    id: String,
    /// The container process and its monitor, as the record had them after `run -d`.
    processes: Vec<Identity>,
    cgroups: Vec<PathBuf>,
}

impl<'a> Detached<'a> {
    /// `peapod run -d --rootfs ROOTFS EXTRA... -- CMD...`, which must succeed.
    fn run(rootfs: &'a TestRootfs, extra: &[&str], cmd: &[&str]) -> (Detached<'a>, Duration) {
        let mut command = rootfs.peapod();
        command
            .args(["run", "-d", "--rootfs", rootfs.arg()])
            .args(extra)
            .arg("--")
            .args(cmd);
        Detached::spawn(rootfs, command)
    }

    /// The container `command` (a `run -d`, which must succeed) makes.
    fn spawn(
        rootfs: &'a TestRootfs,
        mut command: std::process::Command,
    ) -> (Detached<'a>, Duration) {
        let started = Instant::now();
        // `finish` reads stdout to its end: it returns only once no process holds it, as
        // `ID=$(peapod run -d ...)` does.
        let out = finish(command.spawn().expect("spawn peapod"));
        let took = started.elapsed();
        assert_eq!(out.code, 0, "run -d failed: {out:?}");
        let id = out.stdout.trim().to_owned();
        let mut detached = Detached {
            rootfs,
            id,
            processes: Vec::new(),
            cgroups: Vec::new(),
        };
        if let Some(record) = detached.record() {
            for key in ["process", "owner"] {
                if let Some(identity) = record.get(key).and_then(Identity::from_json) {
                    detached.processes.push(identity);
                }
            }
            detached.cgroups = record
                .get("cgroup_paths")
                .and_then(|v| v.as_array())
                .map(|paths| {
                    paths
                        .iter()
                        .filter_map(|p| p.as_str().map(PathBuf::from))
                        .collect()
                })
                .unwrap_or_default();
        }
        (detached, took)
    }

    /// Its `state.json`, if it still has one.
    fn record(&self) -> Option<serde_json::Value> {
        let path = self.rootfs.state_root().join(&self.id).join("state.json");
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Its process and monitor as its record has them now.
    fn current_processes(&self) -> Vec<Identity> {
        let Some(record) = self.record() else {
            return Vec::new();
        };
        ["process", "owner"]
            .iter()
            .filter_map(|key| record.get(*key).and_then(Identity::from_json))
            .collect()
    }

    /// `inspect`'s object of it.
    fn inspect(&self) -> serde_json::Value {
        let out = self.peapod(&["inspect"]);
        assert_eq!(out.code, 0, "inspect: {out:?}");
        let all: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect JSON");
        all[0].clone()
    }

    /// Its monitor, as recorded after `run -d` (the record's owner).
    fn monitor(&self) -> Identity {
        *self.processes.get(1).expect("a monitor is recorded")
    }

    fn peapod(&self, args: &[&str]) -> Outcome {
        let mut command = self.rootfs.peapod();
        command.args(args).arg(&self.id);
        finish(command.spawn().expect("spawn peapod"))
    }

    fn status(&self) -> String {
        let out = self.peapod(&["state"]);
        let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        state["status"].as_str().unwrap_or("gone").to_owned()
    }

    fn logs(&self, args: &[&str]) -> String {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        let out = self.peapod(&all);
        assert_eq!(out.code, 0, "logs: {out:?}");
        out.stdout
    }

    /// SIGKILLs its monitor; the next `list` must not show it, and must have removed all
    /// of it ([`Detached::assert_gone`]).
    fn kill_monitor_then_list_reaps_it(&self) {
        self.monitor().kill();
        wait_until("the monitor to die", || !self.monitor().is_alive());
        let out = finish(
            self.rootfs
                .peapod()
                .arg("list")
                .spawn()
                .expect("spawn list"),
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert!(!out.stdout.contains(&self.id), "{}", out.stdout);
        self.assert_gone();
    }

    /// Asserts that nothing of it is left: no state, no log, no process, no cgroup.
    fn assert_gone(&self) {
        let dir = self.rootfs.state_root().join(&self.id);
        assert!(!dir.exists(), "{} is left", dir.display());
        for p in &self.processes {
            assert!(!p.is_alive(), "process {} is left", p.pid);
        }
        for cgroup in &self.cgroups {
            assert!(!cgroup.exists(), "cgroup {} is left", cgroup.display());
        }
        self.rootfs.assert_nothing_left();
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // Started again since `run -d` (a restart policy, `start`): its process and monitor
        // now too.
        self.processes.extend(self.current_processes());
        let _ = self.peapod(&["rm", "-f"]);
        for p in &self.processes {
            p.kill();
        }
    }
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn run_d_prints_a_64_hex_id_returns_at_once_and_keeps_both_streams_in_its_log() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script =
        "echo out-1; echo err-1 >&2; for i in 2 3 4 5; do echo out-$i; done; exec sleep 60";
    let (container, took) = Detached::run(&rootfs, &[], &["/bin/sh", "-c", script]);
    println!("run -d returned in {took:?}");
    assert_eq!(container.id.len(), 64, "{:?}", container.id);
    assert!(
        container.id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{:?}",
        container.id
    );
    assert!(took < Duration::from_secs(10), "run -d took {took:?}");
    assert_eq!(container.status(), "running");
    wait_until("the output in the log", || {
        container.logs(&[]).lines().count() == 6
    });
    let logs = container.logs(&[]);
    let stdout: Vec<&str> = logs.lines().filter(|l| l.starts_with("out-")).collect();
    assert_eq!(
        stdout,
        ["out-1", "out-2", "out-3", "out-4", "out-5"],
        "{logs}"
    );
    assert!(logs.lines().any(|l| l == "err-1"), "{logs}");
    // The order of the two streams is the monitor's reading order: the tail is that of
    // the whole log, whichever it is.
    let last: Vec<&str> = logs.lines().skip(4).collect();
    assert_eq!(
        container.logs(&["--tail", "2"]),
        format!("{}\n{}\n", last[0], last[1])
    );
    let stamped = container.logs(&["-t", "--tail", "1"]);
    assert!(
        stamped.ends_with(&format!("Z {}\n", last[1])),
        "{stamped:?}"
    );
    assert_eq!(stamped.find('Z'), Some(29), "{stamped:?}");
    assert_eq!(
        container.logs(&["--since", "1h", "--tail", "1"]),
        format!("{}\n", last[1])
    );
    // The log and its directory are root's alone.
    use std::os::unix::fs::PermissionsExt;
    let dir = rootfs.state_root().join(&container.id);
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode();
    assert_eq!(mode(&dir) & 0o777, 0o700);
    assert_eq!(mode(&dir.join("container.log")) & 0o777, 0o600);
    // What the monitor costs while the container runs.
    let monitor = container.monitor();
    let rss = rss_kib(monitor.pid).expect("the monitor runs");
    println!("monitor RSS: {rss} KiB");
    // rm -f of a running container: nothing left, the monitor gone too.
    let out = container.peapod(&["rm", "-f"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), container.id);
    container.assert_gone();
}

#[test]
fn logs_follow_prints_new_lines_and_ends_when_the_container_exits() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let control = rootfs.scratch().join("control");
    std::fs::create_dir(&control).expect("mkdir");
    let fifo = control.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let volume = format!("{}:/control", control.display());
    let script = "echo one; read line < /control/fifo; echo $line; exit 0";
    let (container, _) = Detached::run(&rootfs, &["-v", &volume], &["/bin/sh", "-c", script]);
    let mut follow = rootfs.peapod();
    follow.args(["logs", "-f", &container.id]);
    let mut child = follow.spawn().expect("spawn logs -f");
    let guard = KillPid(child.id() as i32);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("one"));
    // A new line while it follows.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"two\n"))
        .expect("write the fifo");
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("two"));
    // The container exits: `logs -f` ends.
    let status = support::wait_with_timeout(&mut child, support::TIMEOUT)
        .expect("logs -f ends once the container has exited");
    assert!(status.success(), "{status:?}");
    assert!(lines.next().is_none());
    drop(guard);
    let out = container.peapod(&["wait"]);
    assert_eq!(out.stdout, "0\n", "{out:?}");
}

#[test]
fn a_container_flooding_its_output_keeps_at_most_the_bound_on_disk() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // 4 MB of output against a bound of 2 × 64 KiB.
    let script = "seq 1 500000; echo last";
    let (container, _) = Detached::run(
        &rootfs,
        &["--log-opt", "max-size=64k", "--log-opt", "max-file=2"],
        &["/bin/sh", "-c", script],
    );
    let out = container.peapod(&["wait"]);
    assert_eq!(out.stdout, "0\n", "{out:?}");
    wait_until("the monitor to finish", || !container.monitor().is_alive());
    let dir = rootfs.state_root().join(&container.id);
    let logs: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("container.log"))
        .map(|name| {
            let len = std::fs::metadata(dir.join(&name)).expect("stat").len();
            (name, len)
        })
        .collect();
    let total: u64 = logs.iter().map(|(_, len)| len).sum();
    println!("log files after 4 MB of output: {logs:?}");
    assert!(total <= 2 * 64 * 1024, "{total} bytes on disk: {logs:?}");
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(container.logs(&["--tail", "2"]), "500000\nlast\n");
}

#[test]
fn wait_and_state_report_the_exit_status() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(&rootfs, &[], &["/bin/sh", "-c", "exit 3"]);
    let out = container.peapod(&["wait"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "3\n"), "{out:?}");
    let out = container.peapod(&["state"]);
    let state: serde_json::Value = serde_json::from_str(&out.stdout).expect("state JSON");
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["exitCode"], 3);
    assert!(
        state["finishedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{state}"
    );
    // A stopped container is kept until `rm`, which needs no --force.
    let out = container.peapod(&["rm"]);
    assert_eq!(out.code, 0, "{out:?}");
    container.assert_gone();
}

#[test]
fn stop_ends_a_container_that_traps_sigterm_with_its_status() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script = "trap 'exit 0' TERM; echo ready; sleep 60 & wait";
    let (container, _) = Detached::run(&rootfs, &[], &["/bin/sh", "-c", script]);
    wait_until("the trap", || container.logs(&[]) == "ready\n");
    let started = Instant::now();
    let out = container.peapod(&["stop", "-t", "10"]);
    let took = started.elapsed();
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, container.id.as_str()),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(container.status(), "stopped");
    assert_eq!(container.peapod(&["wait"]).stdout, "0\n");
}

#[test]
fn stop_kills_a_container_that_ignores_sigterm_after_the_timeout() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script = "trap '' TERM; echo ready; sleep 60 & wait";
    let (container, _) = Detached::run(&rootfs, &[], &["/bin/sh", "-c", script]);
    wait_until("the trap", || container.logs(&[]) == "ready\n");
    let started = Instant::now();
    let out = container.peapod(&["stop", "-t", "1"]);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(took >= Duration::from_secs(1), "stop took {took:?}");
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    assert_eq!(container.peapod(&["wait"]).stdout, "137\n");
}

#[test]
fn run_d_rm_leaves_nothing_once_the_container_exits() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let control = rootfs.scratch().join("control");
    std::fs::create_dir(&control).expect("mkdir");
    let volume = format!("{}:/control", control.display());
    // It waits for the test to have read its record.
    let script = "while [ ! -e /control/go ]; do sleep 0.05; done; echo bye";
    let (container, _) = Detached::run(
        &rootfs,
        &["--rm", "-v", &volume],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(container.processes.len(), 2, "process and monitor recorded");
    std::fs::write(control.join("go"), "").expect("go");
    wait_until("the container to be removed", || {
        container.processes.iter().all(|p| !p.is_alive())
    });
    container.assert_gone();
}

#[test]
fn a_killed_monitor_leaves_a_container_the_next_command_removes() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(&rootfs, &[], &["/bin/sleep", "60"]);
    container.kill_monitor_then_list_reaps_it();
}

#[test]
fn run_d_of_a_bundle_and_bad_log_opts_keep_their_old_meaning() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = finish(
        rootfs
            .peapod()
            .args([
                "run",
                "-d",
                "--rootfs",
                rootfs.arg(),
                "--log-opt",
                "max-size=1k",
            ])
            .args(["--", "/bin/true"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("max-size"), "{}", out.stderr);
    let out = finish(
        rootfs
            .peapod()
            .args(["run", "-d", "--rm", "--bundle", "/nonexistent", "some-id"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--rm with --detach"), "{}", out.stderr);
    rootfs.assert_nothing_left();
}

#[test]
fn an_entry_whose_run_d_died_while_creating_it_is_removed_by_the_next_command() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // What a `run -d` killed between making the container's directory and saving its
    // record leaves: an owned directory, unlocked, without a record.
    let out = finish(rootfs.peapod().arg("list").spawn().expect("spawn list"));
    assert_eq!(out.code, 0, "{out:?}");
    let dir = rootfs.state_root().join("half-made");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("owned"), "").expect("mark");
    let out = finish(rootfs.peapod().arg("list").spawn().expect("spawn list"));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!dir.exists(), "the half-made entry is left");
    rootfs.assert_nothing_left();
}

#[test]
fn run_d_keeps_none_of_the_callers_descriptors() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // A pipe whose write end the caller leaves open across exec (no close-on-exec), as a
    // harness's may be: its reader must see its end once `run -d` has returned, although
    // the container and its monitor run on.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    let mut command = rootfs.peapod();
    command.args([
        "run",
        "-d",
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sleep",
        "60",
    ]);
    let child = command.spawn().expect("spawn peapod");
    drop(write);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    let container = Detached {
        rootfs: &rootfs,
        id: out.stdout.trim().to_owned(),
        processes: Vec::new(),
        cgroups: Vec::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let read = std::io::Read::read_to_end(&mut std::fs::File::from(read), &mut rest);
        let _ = tx.send(read.map(|_| ()));
    });
    let ended = rx.recv_timeout(support::TIMEOUT);
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the caller's pipe is still held: {ended:?}"
    );
    assert_eq!(container.status(), "running");
}

/// How many lines of its log are `line`.
fn count_lines(logs: &str, line: &str) -> usize {
    logs.lines().filter(|l| *l == line).count()
}

#[test]
fn restart_on_failure_3_restarts_a_failing_container_exactly_three_times() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(
        &rootfs,
        &["--restart", "on-failure:3"],
        &["/bin/sh", "-c", "echo run; exit 1"],
    );
    // Its monitor ends once the policy gives up.
    wait_until("the monitor to give up", || !container.monitor().is_alive());
    let state = container.inspect();
    assert_eq!(state["RestartCount"], 3, "{state}");
    assert_eq!(state["State"]["Status"], "exited", "{state}");
    assert_eq!(state["State"]["ExitCode"], 1, "{state}");
    assert_eq!(state["State"]["Restarting"], false, "{state}");
    assert_eq!(
        state["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 3})
    );
    assert_eq!(count_lines(&container.logs(&[]), "run"), 4);
    assert_eq!(container.peapod(&["wait"]).stdout, "1\n");
    let out = container.peapod(&["rm"]);
    assert_eq!(out.code, 0, "{out:?}");
    container.assert_gone();
}

#[test]
fn restart_always_restarts_a_container_that_exits_0_until_stop() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(
        &rootfs,
        &["--restart", "always"],
        &["/bin/sh", "-c", "echo run; exit 0"],
    );
    wait_until("three runs", || {
        count_lines(&container.logs(&[]), "run") >= 3
    });
    assert!(container.inspect()["RestartCount"].as_u64() >= Some(2));
    let out = container.peapod(&["stop", "-t", "1"]);
    assert_eq!(out.code, 0, "{out:?}");
    // `stop` returns once the monitor has ended its supervision: nothing starts it again.
    wait_until("the monitor to end", || !container.monitor().is_alive());
    let runs = count_lines(&container.logs(&[]), "run");
    let state = container.inspect();
    assert_eq!(state["State"]["Status"], "exited", "{state}");
    assert_eq!(state["State"]["Restarting"], false, "{state}");
    assert_eq!(container.status(), "stopped");
    assert_eq!(count_lines(&container.logs(&[]), "run"), runs);
}

#[test]
fn stop_of_a_container_waiting_to_restart_keeps_it_stopped() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(
        &rootfs,
        &["--restart", "on-failure"],
        &["/bin/sh", "-c", "echo run; exit 2"],
    );
    // Caught between two runs, as `ps` shows it.
    wait_until("a restart back-off", || {
        let out = container.rootfs.peapod().arg("ps").output();
        let table = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        table.is_ok_and(|t| t.contains("Restarting (2)"))
    });
    let out = container.peapod(&["stop"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the monitor to end", || !container.monitor().is_alive());
    let runs = count_lines(&container.logs(&[]), "run");
    let state = container.inspect();
    assert_eq!(state["State"]["Status"], "exited", "{state}");
    assert_eq!(state["State"]["ExitCode"], 2, "{state}");
    assert_eq!(state["State"]["Restarting"], false, "{state}");
    assert_eq!(count_lines(&container.logs(&[]), "run"), runs);
    let out = container.peapod(&["rm"]);
    assert_eq!(out.code, 0, "{out:?}");
    container.assert_gone();
}

#[test]
fn restart_keeps_the_id_and_gives_a_new_process_and_start_time() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(&rootfs, &[], &["/bin/sleep", "60"]);
    let before = container.inspect();
    let out = container.peapod(&["restart", "-t", "1"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, container.id.as_str()),
        "{out:?}"
    );
    let after = container.inspect();
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["State"]["Status"], "running", "{after}");
    assert_ne!(after["State"]["Pid"], before["State"]["Pid"]);
    assert!(
        after["State"]["StartedAt"].as_str() > before["State"]["StartedAt"].as_str(),
        "{before} {after}"
    );
    assert_eq!(after["Created"], before["Created"]);
    // The first monitor is gone; a new one watches it.
    assert!(!container.monitor().is_alive());
    let now = container.current_processes();
    assert_eq!(now.len(), 2, "process and monitor recorded");
    assert!(now.iter().all(|p| p.is_alive()));
}

#[test]
fn start_runs_an_exited_container_again_and_appends_to_its_log() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let control = rootfs.scratch().join("control");
    std::fs::create_dir(&control).expect("mkdir");
    let volume = format!("{}:/control", control.display());
    // Each run counts itself in a file of the volume (the first once the test has read its
    // record).
    let script = "while [ ! -e /control/go ]; do sleep 0.05; done; echo run >> /control/runs; \
                  echo run; exit 4";
    let (container, _) = Detached::run(&rootfs, &["-v", &volume], &["/bin/sh", "-c", script]);
    std::fs::write(control.join("go"), "").expect("go");
    assert_eq!(container.peapod(&["wait"]).stdout, "4\n");
    // Right after the exit: `start` waits for the first monitor to be done.
    let out = container.peapod(&["start"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, container.id.as_str()),
        "{out:?}"
    );
    wait_until("the second run in the log", || {
        container.logs(&[]) == "run\nrun\n"
    });
    assert_eq!(container.peapod(&["wait"]).stdout, "4\n");
    let runs = std::fs::read_to_string(control.join("runs")).expect("runs");
    assert_eq!(runs, "run\nrun\n");
    let state = container.inspect();
    assert_eq!(state["RestartCount"], 0, "{state}");
    assert_eq!(state["State"]["ExitCode"], 4, "{state}");
}

#[test]
fn run_dt_keeps_the_tty_output_in_its_log() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (container, _) = Detached::run(
        &rootfs,
        &["-t"],
        &["/bin/sh", "-c", "tty; stty size; echo hello"],
    );
    assert_eq!(container.peapod(&["wait"]).stdout, "0\n");
    wait_until("its output", || container.logs(&[]).contains("hello"));
    let logs = container.logs(&[]);
    // A pty ends its lines with CR LF, kept as docker keeps them.
    let lines: Vec<&str> = logs.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("/dev/pts/")),
        "{logs:?}"
    );
    assert_eq!(lines.last(), Some(&"hello"), "{logs:?}");
}

#[test]
fn a_killed_monitor_of_a_restarting_container_leaves_nothing_after_the_next_command() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (mut container, _) = Detached::run(
        &rootfs,
        &["--restart", "always"],
        &["/bin/sh", "-c", "echo run; sleep 0.2"],
    );
    wait_until("a restart", || container.inspect()["RestartCount"] != 0);
    let now = container.current_processes();
    container.processes.extend(now);
    container.kill_monitor_then_list_reaps_it();
}

#[test]
fn restart_flags_are_refused_where_they_cannot_apply() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let run = |extra: &[&str]| {
        let mut command = rootfs.peapod();
        command
            .args(["run", "--rootfs", rootfs.arg()])
            .args(extra)
            .args(["--", "/bin/true"]);
        finish(command.spawn().expect("spawn"))
    };
    let out = run(&["-d", "--rm", "--restart", "always"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--restart always and --rm conflict"),
        "{}",
        out.stderr
    );
    let out = run(&["--restart", "on-failure:2"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--restart is for --detach"),
        "{}",
        out.stderr
    );
    let out = run(&["-d", "--restart", "sometimes"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("on-failure[:N]"), "{}", out.stderr);
    rootfs.assert_nothing_left();
}

#[test]
fn run_d_in_a_pod_prints_its_id_and_stop_and_rm_reach_it() {
    let Some(mut pods) = support::pods::Pods::new() else {
        return;
    };
    pods.create("web", &[]);
    let rootfs = pods.rootfs.arg().to_owned();
    let script = "trap 'exit 0' TERM; echo hi; sleep 60 & wait";
    let out = pods.peapod(&[
        "run", "-d", "--pod", "web", "--rootfs", &rootfs, "--name", "srv", "--", "/bin/sh", "-c",
        script,
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "srv\n"), "{out:?}");
    // Its output goes to the pod's log.
    wait_until("its output", || pods.logs("web", "srv") == "hi\n");
    let table = pods.peapod(&["ps"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("srv ") && l.contains(" Up ")),
        "{table:?}"
    );
    let out = pods.peapod(&["stop", "-t", "5", "srv"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "srv\n"), "{out:?}");
    let state = pods.peapod(&["state", "srv"]);
    assert!(state.stdout.contains("\"stopped\""), "{state:?}");
    let out = pods.peapod(&["rm", "srv"]);
    assert_eq!(out.code, 0, "{out:?}");
    pods.remove_all();
    pods.rootfs.assert_nothing_left();
}

/// The busybox test image loaded into a store in the scratch directory: the store's path
/// and the image's name; `None` (with a skip line) where `cargo xtask test` did not write it.
fn load_busybox(rootfs: &TestRootfs) -> Option<(String, String)> {
    let Some(archive) = std::env::var_os("PEAPOD_BUSYBOX_IMAGE") else {
        eprintln!("skipped: PEAPOD_BUSYBOX_IMAGE is not set (`cargo xtask test` writes it)");
        return None;
    };
    let storage = rootfs.scratch().join("storage");
    let storage = storage.to_str().expect("utf-8 path").to_owned();
    let mut load = rootfs.peapod();
    load.args(["--storage", &storage, "image", "load", "-i"])
        .arg(&archive);
    let out = finish(load.spawn().expect("spawn image load"));
    assert_eq!(out.code, 0, "{out:?}");
    let image = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .expect("the loaded image's name")
        .trim()
        .to_owned();
    Some((storage, image))
}

/// `peapod-oci delete` of a container of an image (one a client did not make, but may list
/// and delete): its writable layer is released. A `peapod-oci` built without the image store
/// (`cargo xtask dist`) hands the delete to `peapod`; this one (the test build) does it
/// itself: the outcome is the same.
#[test]
fn peapod_oci_delete_of_an_image_container_releases_its_layers() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some((storage, image)) = load_busybox(&rootfs) else {
        return;
    };
    let mut run = rootfs.peapod();
    run.args(["--storage", &storage, "run", "-d", "--pull", "never"])
        .args(["--entrypoint", "/bin/sh", &image, "-c", "echo x > /file"]);
    let (container, _) = Detached::spawn(&rootfs, run);
    assert_eq!(container.peapod(&["wait"]).stdout, "0\n");
    let layers = || {
        std::fs::read_dir(rootfs.scratch().join("storage/containers"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(layers(), 1, "no writable layer");
    let mut delete = rootfs.peapod_oci();
    delete.args(["delete", &container.id]);
    let out = finish(delete.spawn().expect("spawn peapod-oci"));
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    container.assert_gone();
    assert_eq!(layers(), 0, "its writable layer is left");
}

#[test]
fn start_and_restart_keep_the_writable_layer_of_an_image_container() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some((storage, image)) = load_busybox(&rootfs) else {
        return;
    };
    let storage = storage.as_str();
    // Each run adds a line to a file of its root, and prints how many there are.
    let script = "echo x >> /runs; echo runs=$(wc -l < /runs)";
    let mut run = rootfs.peapod();
    run.args(["--storage", storage, "run", "-d", "--pull", "never"])
        .args(["--entrypoint", "/bin/sh", &image, "-c", script]);
    let (container, _) = Detached::spawn(&rootfs, run);
    assert_eq!(container.peapod(&["wait"]).stdout, "0\n");
    let out = container.peapod(&["start"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(container.peapod(&["wait"]).stdout, "0\n");
    wait_until("the second run", || {
        container.logs(&[]).lines().count() == 2
    });
    let out = container.peapod(&["restart"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(container.peapod(&["wait"]).stdout, "0\n");
    wait_until("the third run", || container.logs(&[]).lines().count() == 3);
    assert_eq!(container.logs(&[]), "runs=1\nruns=2\nruns=3\n");
    let out = container.peapod(&["rm"]);
    assert_eq!(out.code, 0, "{out:?}");
    container.assert_gone();
    let layers = std::fs::read_dir(rootfs.scratch().join("storage/containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(layers, 0, "its writable layer is left");
}

#[test]
fn rm_f_of_a_container_waiting_to_restart_ends_its_monitor_and_leaves_nothing() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let (mut container, _) = Detached::run(
        &rootfs,
        &["--restart", "always"],
        &["/bin/sh", "-c", "echo run; exit 0"],
    );
    wait_until("a restart back-off", || {
        container.inspect()["State"]["Restarting"] == true
    });
    let now = container.current_processes();
    container.processes.extend(now);
    let out = container.peapod(&["rm", "-f"]);
    assert_eq!(out.code, 0, "{out:?}");
    // `rm` returns once the monitor is gone.
    assert!(!container.monitor().is_alive());
    container.assert_gone();
}
