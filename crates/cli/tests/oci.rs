//! The OCI lifecycle of the runc-compatible commands as the runtime spec (runtime.md) has a
//! user see it: `create` leaves a process set up but short of its entrypoint, `start` runs
//! it, `state` tells each step, `kill` signals, `delete` leaves nothing; a command in the
//! wrong state fails without harm, and a `create` that fails half-way leaves no trace.

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{finish, wait_until, wait_with_timeout, Outcome, TestRootfs, TIMEOUT};

/// Waits (bounded) in the entrypoint until the test creates `out/go`, so a container runs
/// exactly as long as a test needs it, and never much longer than [`TIMEOUT`] if the test dies.
const UNTIL_GO: &str =
    "i=0; until [ -e /out/go ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done";

/// A bundle in the test's scratch directory: `config.json` from `peapod spec` (its
/// `root.path` is `rootfs`, the test's private copy) and `out/`, bind-mounted at `/out`, for
/// what entrypoints report.
struct Bundle {
    rootfs: TestRootfs,
    /// What `peapod spec` wrote, which every `configure` starts from.
    spec: Value,
    /// Numbers the log and pid files of this test's commands.
    serial: AtomicUsize,
}

impl Bundle {
    /// The bundle, or `None` when the test is skipped (see [`TestRootfs::new`]).
    fn new() -> Option<Bundle> {
        let rootfs = TestRootfs::new()?;
        let dir = rootfs.scratch().to_owned();
        let out = finish(
            rootfs
                .peapod_oci()
                .arg("spec")
                .arg("--bundle")
                .arg(&dir)
                .spawn()
                .expect("spawn peapod spec"),
        );
        assert_eq!(out.code, 0, "peapod spec: {out:?}");
        let text = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
        let spec: Value = serde_json::from_str(&text).expect("peapod spec writes JSON");
        assert_eq!(spec["root"]["path"], "rootfs", "{spec:#}");
        assert_eq!(spec["process"]["args"], json!(["sh"]), "{spec:#}");
        std::fs::create_dir(dir.join("out")).expect("out dir");
        std::fs::create_dir(dir.join("logs")).expect("logs dir");
        Some(Bundle {
            rootfs,
            spec,
            serial: AtomicUsize::new(0),
        })
    }

    fn dir(&self) -> &Path {
        self.rootfs.scratch()
    }

    fn arg(&self) -> &str {
        self.dir().to_str().expect("utf-8 path")
    }

    /// The bundle as `state` reports it: absolute, without symlinks.
    fn recorded(&self) -> String {
        let path = std::fs::canonicalize(self.dir()).expect("canonical bundle");
        path.to_str().expect("utf-8 path").to_owned()
    }

    /// The host side of the container's `/out`.
    fn out(&self) -> PathBuf {
        self.dir().join("out")
    }

    /// Lets every entrypoint waiting in [`UNTIL_GO`] go on.
    fn go(&self) {
        File::create(self.out().join("go")).expect("go file");
    }

    /// Writes `config.json`: the spec with `args` as its entrypoint and `/out` bind-mounted.
    fn configure(&self, args: &[&str]) {
        self.configure_with(args, |_| {});
    }

    /// As [`Bundle::configure`], then `edit` changes the JSON.
    fn configure_with(&self, args: &[&str], edit: impl FnOnce(&mut Value)) {
        let mut spec = self.spec.clone();
        spec["process"]["args"] = json!(args);
        spec["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/out",
            "type": "bind",
            "source": self.out(),
            "options": ["rbind"],
        }));
        edit(&mut spec);
        let text = serde_json::to_string_pretty(&spec).expect("JSON");
        std::fs::write(self.dir().join("config.json"), text).expect("write config.json");
    }

    /// `peapod --root STATE ARGS` for a command that leaves no process behind.
    fn peapod(&self, args: &[&str]) -> Outcome {
        finish(
            self.rootfs
                .peapod_oci()
                .args(args)
                .spawn()
                .expect("spawn peapod"),
        )
    }

    /// A fresh path in `logs/` ending in `suffix`.
    fn log_path(&self, suffix: &str) -> PathBuf {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        self.dir().join("logs").join(format!("{n}.{suffix}"))
    }

    /// `peapod create --bundle DIR --pid-file PIDFILE EXTRA... ID`, which must succeed.
    fn create(&self, id: &str, extra: &[&str]) -> Container<'_> {
        let (container, out) = self.try_create(id, extra);
        assert_eq!(out.code, 0, "create {id}: {out:?}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
        container
    }

    /// As [`Bundle::create`], returning what `create` said however it ended.
    fn try_create(&self, id: &str, extra: &[&str]) -> (Container<'_>, Outcome) {
        let pid_file = self.log_path("pid");
        let mut cmd = self.rootfs.peapod_oci();
        cmd.args(["create", "--bundle", self.arg(), "--pid-file"])
            .arg(&pid_file)
            .args(extra)
            .arg(id);
        self.launch(id, cmd, pid_file)
    }

    /// Runs `cmd`, which leaves the container `id` behind (its process writes its pid to
    /// `pid_file`), and returns the guard that cleans it up, and what `cmd` said. The stdio of
    /// `cmd` are log files: the container process inherits them and holds them open after
    /// `cmd` exits, so pipes would never reach their end.
    fn launch(&self, id: &str, mut cmd: Command, pid_file: PathBuf) -> (Container<'_>, Outcome) {
        let stdout = self.log_path("out");
        let stderr = self.log_path("err");
        // The guard exists before the process does, so that even a timeout cleans up.
        let container = Container {
            bundle: self,
            id: id.to_owned(),
            pid_file,
            stdout: stdout.clone(),
        };
        let mut child = cmd
            .stdout(File::create(&stdout).expect("stdout log"))
            .stderr(File::create(&stderr).expect("stderr log"))
            .spawn()
            .expect("spawn peapod");
        let Some(status) = wait_with_timeout(&mut child, TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("peapod did not finish within {TIMEOUT:?}");
        };
        use std::os::unix::process::ExitStatusExt;
        let out = Outcome {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout: std::fs::read_to_string(&stdout).expect("stdout log"),
            stderr: std::fs::read_to_string(&stderr).expect("stderr log"),
        };
        (container, out)
    }

    /// Whether `pid` is a live process whose root is in this test's directory.
    fn runs_in_rootfs(&self, pid: i32) -> bool {
        let root = std::fs::read_link(format!("/proc/{pid}/root"));
        pid > 1 && root.is_ok_and(|root| root.starts_with(self.dir()))
    }

    /// The ids in the state root.
    fn state_entries(&self) -> Vec<String> {
        support::state_entries(&self.rootfs.state_root())
    }
}

/// One container of a test. Dropping it runs `delete --force` and kills the process named in
/// its pid file if that process still runs in this test's rootfs: a failed test leaves nothing.
struct Container<'a> {
    bundle: &'a Bundle,
    id: String,
    pid_file: PathBuf,
    stdout: PathBuf,
}

impl Container<'_> {
    fn peapod(&self, command: &str) -> Outcome {
        self.bundle.peapod(&[command, &self.id])
    }

    /// The state JSON; `state` must succeed.
    fn state(&self) -> Value {
        let out = self.peapod("state");
        assert_eq!(out.code, 0, "state {}: {out:?}", self.id);
        serde_json::from_str(&out.stdout).expect("state prints JSON")
    }

    fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("status is a string")
            .to_owned()
    }

    /// The container process's PID from `state` (0 once it is stopped).
    fn pid(&self) -> i32 {
        let pid = self.state()["pid"].as_i64().expect("pid is a number");
        i32::try_from(pid).expect("pid fits i32")
    }

    fn wait_for_status(&self, status: &str) {
        wait_until(&format!("container {} to be {status}", self.id), || {
            self.status() == status
        });
    }

    /// What the entrypoint wrote to its stdout so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).expect("stdout log")
    }

    fn start(&self) {
        let out = self.peapod("start");
        assert_eq!(out.code, 0, "start {}: {out:?}", self.id);
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    }

    fn kill(&self, signal: &str) -> Outcome {
        self.bundle.peapod(&["kill", &self.id, signal])
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a failed test unwinds.
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let delete = self
            .bundle
            .rootfs
            .peapod_oci()
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = delete {
            let deadline = Instant::now() + TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = pid {
            // Only a process in this test's rootfs: the PID may have been reused.
            if self.bundle.runs_in_rootfs(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// `["sh", "-c", script]`.
fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

/// The NUL-separated command line of `pid`, as a list.
fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The open descriptors of `pid` and what they name.
fn open_fds(pid: i32) -> Vec<(u32, PathBuf)> {
    let mut fds: Vec<(u32, PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?))
        })
        .collect();
    fds.sort();
    fds
}

/// `fds` without the sealed copy of peapod-init that a created container holds to exec its
/// entrypoint through (it is in memory, and nothing can write to it); at most one.
fn without_guard(fds: Vec<(u32, PathBuf)>) -> Vec<(u32, PathBuf)> {
    let guard = Path::new("/memfd:peapod-init (deleted)");
    let count = fds.iter().filter(|(_, path)| path == guard).count();
    assert!(count <= 1, "{fds:#?}");
    fds.into_iter().filter(|(_, path)| path != guard).collect()
}

/// Checks a failure: status `code`, one line on stderr holding every one of `needles`.
fn assert_failed(out: &Outcome, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "not one line: {out:?}");
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "{:?} lacks {needle:?}",
            out.stderr
        );
    }
}

/// A copy of `peapod-oci` in `dir/alone`, with no `peapod` beside it to hand a command to,
/// and what makes its commands on `state_root`: stdin closed, output piped. Its first run goes
/// through `support::spawn_copied` (another test's fork may hold the fresh copy open).
fn lone_peapod_oci(dir: &Path, state_root: &Path) -> impl Fn(&[&str]) -> Command {
    let alone = dir.join("alone");
    std::fs::create_dir(&alone).expect("mkdir");
    let binary = alone.join("peapod-oci");
    std::fs::copy(support::peapod_oci_bin(), &binary).expect("copy peapod-oci");
    let state_root = state_root.to_owned();
    move |args| {
        let mut cmd = Command::new(&binary);
        cmd.arg("--root")
            .arg(&state_root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

#[test]
fn lifecycle_create_start_stop_delete() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let script = format!("echo started > /out/marker; echo on stdout; {UNTIL_GO}; exit 0");
    let entrypoint = sh(&script);
    bundle.configure_with(&entrypoint, |spec| {
        spec["annotations"] = json!({"org.example.purpose": "lifecycle", "b": "2"});
    });
    let c = bundle.create("life", &[]);

    // created: the state names it all, and the process waits short of its entrypoint.
    let state = c.state();
    assert_eq!(state["status"], "created", "{state:#}");
    assert_eq!(state["id"], "life", "{state:#}");
    assert_eq!(state["ociVersion"], "1.2.0", "{state:#}");
    assert_eq!(state["bundle"], bundle.recorded(), "{state:#}");
    assert!(Path::new(state["bundle"].as_str().expect("bundle")).is_absolute());
    assert_eq!(
        state["annotations"],
        json!({"org.example.purpose": "lifecycle", "b": "2"}),
        "{state:#}"
    );
    let pid = c.pid();
    assert!(pid > 0, "{state:#}");
    let pid_file = std::fs::read_to_string(&c.pid_file).expect("pid file");
    assert_eq!(
        pid_file,
        pid.to_string(),
        "the pid file holds the state's pid"
    );
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "no process {pid}"
    );
    assert_ne!(cmdline(pid), entrypoint, "the entrypoint ran before start");
    assert!(
        !bundle.out().join("marker").exists(),
        "the entrypoint ran before start"
    );
    assert_eq!(c.output(), "", "the entrypoint ran before start");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "peapod:created");

    // running: the entrypoint is this very process now.
    c.start();
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid, "start keeps the process");
    wait_until("the entrypoint's marker", || {
        bundle.out().join("marker").exists()
    });
    assert_eq!(cmdline(pid), entrypoint);
    // Its stdio are those `create` had, as with runc's detached containers.
    wait_until("the entrypoint's output", || c.output() == "on stdout\n");

    // stopped, once the entrypoint exits; then delete takes every trace.
    bundle.go();
    c.wait_for_status("stopped");
    let state = c.state();
    assert_eq!(state["pid"], 0, "{state:#}");
    assert_eq!(state["id"], "life", "{state:#}");
    let out = c.peapod("delete");
    assert_eq!(out.code, 0, "{out:?}");
    let out = c.peapod("state");
    assert_failed(&out, 1, &["container life does not exist"]);
    // A second delete fails, but `delete --force` of a missing container succeeds, as runc's
    // does: podman and containerd use it to clean up after a failed create.
    assert_failed(&c.peapod("delete"), 1, &["container life does not exist"]);
    let out = bundle.peapod(&["delete", "--force", "life"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert!(!bundle.rootfs.state_root().join("life").exists());
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn commands_in_the_wrong_state_fail_without_harm() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh(UNTIL_GO));

    // start twice.
    let a = bundle.create("a", &[]);
    a.start();
    let out = a.peapod("start");
    assert_failed(&out, 125, &["container a is already running"]);
    assert_eq!(a.status(), "running");

    // delete of a running container needs --force, and without it changes nothing.
    let pid = a.pid();
    let out = a.peapod("delete");
    assert_failed(&out, 125, &["container a is running", "--force"]);
    assert_eq!(a.status(), "running");
    assert_eq!(a.pid(), pid);
    let out = bundle.peapod(&["delete", "--force", "a"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !bundle.runs_in_rootfs(pid),
        "process {pid} outlived delete --force"
    );
    assert!(bundle.state_entries().is_empty());

    // kill and start of a stopped container.
    let b = bundle.create("b", &[]);
    b.start();
    let out = b.kill("KILL");
    assert_eq!(out.code, 0, "{out:?}");
    b.wait_for_status("stopped");
    let out = b.kill("KILL");
    assert_failed(&out, 1, &["container not running"]);
    let out = b.peapod("start");
    assert_failed(&out, 125, &["container b is stopped"]);
    let out = b.peapod("delete");
    assert_eq!(out.code, 0, "{out:?}");

    // A second create with a taken id fails and leaves the first as it was.
    let c = bundle.create("c", &[]);
    let before = c.state();
    let (second, out) = bundle.try_create("c", &[]);
    assert_failed(&out, 125, &["container c already exists"]);
    assert!(
        !second.pid_file.exists(),
        "the failed create wrote a pid file"
    );
    std::mem::forget(second); // its delete --force would remove the first
    assert_eq!(c.state(), before);
    assert!(bundle.rootfs.state_root().join("c/exec.fifo").exists());
    c.start();
    assert_eq!(c.status(), "running");
    bundle.go();
    c.wait_for_status("stopped");
    assert_eq!(c.peapod("delete").code, 0);

    // Ids that are not one safe path component are refused before anything is made.
    let long = "a".repeat(1025);
    for bad in ["../x", "a/b", "", ".", long.as_str()] {
        let (guard, out) = bundle.try_create(bad, &[]);
        std::mem::forget(guard); // there is nothing to delete, and no valid id to do it with
        assert_failed(&out, 2, &["invalid container id"]);
        assert!(bundle.state_entries().is_empty(), "{bad:?}");
        assert!(
            !bundle.dir().join("x").exists(),
            "{bad:?} escaped the state root"
        );
    }
    drop((a, b, c));
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn kill_takes_signal_names_and_numbers() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // PID 1 of a PID namespace gets only the signals it has handlers for.
    let script = format!(
        "trap 'echo TERM >> /out/signals' TERM; trap 'echo USR1 >> /out/signals' USR1; \
         echo ready > /out/ready; {UNTIL_GO}"
    );
    bundle.configure(&sh(&script));
    let c = bundle.create("traps", &[]);
    c.start();
    wait_until("the traps", || bundle.out().join("ready").exists());
    let received = || std::fs::read_to_string(bundle.out().join("signals")).unwrap_or_default();
    let mut expected = String::new();
    for (signal, name) in [
        ("TERM", "TERM"),
        ("SIGTERM", "TERM"),
        ("15", "TERM"),
        ("USR1", "USR1"),
        ("sigusr1", "USR1"),
        ("10", "USR1"),
    ] {
        let out = c.kill(signal);
        assert_eq!(out.code, 0, "kill {signal}: {out:?}");
        // One at a time: a second signal of a kind still pending would merge with the first.
        expected.push_str(name);
        expected.push('\n');
        wait_until(&format!("{signal} to arrive"), || received() == expected);
    }
    // With no signal, kill sends SIGTERM.
    let out = c.peapod("kill");
    assert_eq!(out.code, 0, "{out:?}");
    expected.push_str("TERM\n");
    wait_until("the default SIGTERM", || received() == expected);

    for bad in ["NOPE", "SIGNOPE", "99"] {
        let out = c.kill(bad);
        assert_failed(&out, 2, &["unknown signal", bad]);
    }
    assert_eq!(c.status(), "running", "a refused signal was sent");
    assert_eq!(received(), expected);

    // SIGKILL by name to a running container, by number to one only created.
    let out = c.kill("KILL");
    assert_eq!(out.code, 0, "{out:?}");
    c.wait_for_status("stopped");
    let d = bundle.create("created", &[]);
    let out = d.kill("9");
    assert_eq!(out.code, 0, "{out:?}");
    d.wait_for_status("stopped");
    for container in [&c, &d] {
        assert_eq!(container.peapod("delete").code, 0);
    }
    drop((c, d));
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn pid_file_paths_are_relative_to_the_working_directory() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh(UNTIL_GO));
    let cwd = bundle.dir().join("cwd");
    std::fs::create_dir(&cwd).expect("cwd");
    let mut cmd = bundle.rootfs.peapod_oci();
    cmd.current_dir(&cwd)
        .args(["create", "--bundle", "..", "--pid-file", "rel.pid", "rel"]);
    let (c, out) = bundle.launch("rel", cmd, cwd.join("rel.pid"));
    assert_eq!(out.code, 0, "{out:?}");
    let state = c.state();
    // runc writes the bare number, and containerd parses it as such.
    let pid_file = std::fs::read_to_string(cwd.join("rel.pid")).expect("pid file");
    assert_eq!(pid_file, c.pid().to_string(), "{state:#}");
    let names: Vec<_> = std::fs::read_dir(&cwd)
        .expect("cwd")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["rel.pid"], "only the pid file, no temporary file");
    // A relative bundle is recorded as the absolute path it names.
    assert_eq!(state["bundle"], bundle.recorded(), "{state:#}");

    // A pid file in a directory that does not exist fails create, which leaves nothing.
    let missing = bundle.dir().join("no-such-dir/x.pid");
    let mut cmd = bundle.rootfs.peapod_oci();
    cmd.args(["create", "--bundle", bundle.arg(), "--pid-file"])
        .arg(&missing)
        .arg("nodir");
    let (failed, out) = bundle.launch("nodir", cmd, missing);
    assert_failed(&out, 125, &["pid file", "no-such-dir"]);
    drop(failed);
    assert_eq!(bundle.state_entries(), ["rel"]);
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn created_container_holds_only_stdio_and_its_exec_fifo() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&["sleep", "30"]);
    let c = bundle.create("fds", &[]);
    let pid = c.pid();
    let fds = without_guard(open_fds(pid));
    let fifo = bundle.rootfs.state_root().join("fds/exec.fifo");
    let numbers: Vec<u32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(&numbers[..3], [0, 1, 2], "{fds:#?}");
    assert_eq!(
        fds.len(),
        4,
        "descriptors beyond stdio and the exec fifo: {fds:#?}"
    );
    assert_eq!(fds[3].1, fifo, "{fds:#?}");

    // After start, the exec fifo is gone too: the entrypoint has exactly stdio.
    c.start();
    wait_until("the entrypoint", || cmdline(pid) == ["sleep", "30"]);
    let fds = open_fds(pid);
    let numbers: Vec<u32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(numbers, [0, 1, 2], "{fds:#?}");
    assert!(!fifo.exists());
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn preserve_fds_passes_exactly_the_extra_descriptor() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh("cat <&3 > /out/fd3; exec sleep 30"));
    let passed = bundle.dir().join("passed");
    std::fs::write(&passed, "through fd 3").expect("passed file");
    let pid_file = bundle.log_path("pid");
    // A shell opens fd 3 for peapod: std's Command has no way to place a descriptor.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "f=$1; shift; exec \"$@\" 3<\"$f\"", "sh"])
        .arg(&passed)
        .arg(env!("CARGO_BIN_EXE_peapod"))
        .arg("--root")
        .arg(bundle.rootfs.state_root())
        .args(["create", "--bundle", bundle.arg(), "--preserve-fds", "1"])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("fd3")
        .stdin(Stdio::null());
    let (c, out) = bundle.launch("fd3", cmd, pid_file);
    assert_eq!(out.code, 0, "{out:?}");
    let pid = c.pid();
    let fds = without_guard(open_fds(pid));
    let fifo = bundle.rootfs.state_root().join("fd3/exec.fifo");
    let numbers: Vec<u32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(&numbers[..4], [0, 1, 2, 3], "{fds:#?}");
    assert_eq!(fds[3].1, passed, "{fds:#?}");
    assert_eq!(
        fds.len(),
        5,
        "descriptors beyond stdio, fd 3 and the fifo: {fds:#?}"
    );
    assert_eq!(fds[4].1, fifo, "{fds:#?}");

    c.start();
    wait_until("the entrypoint to read fd 3", || {
        std::fs::read_to_string(bundle.out().join("fd3")).unwrap_or_default() == "through fd 3"
    });
    wait_until("the entrypoint's exec", || cmdline(pid) == ["sleep", "30"]);
    let fds = open_fds(pid);
    let numbers: Vec<u32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(numbers, [0, 1, 2, 3], "{fds:#?}");
    assert_eq!(fds[3].1, passed, "{fds:#?}");
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn preserve_fds_lets_only_the_callers_descriptors_in_whatever_the_count() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh("cat <&3 <&4 > /out/passed; exec sleep 30"));
    let passed = bundle.dir().join("passed");
    std::fs::write(&passed, "passed").expect("passed file");
    for n in [0u32, 5, 100] {
        let id = format!("keep{n}");
        let pid_file = bundle.log_path("pid");
        // The caller passes two descriptors (3 and 4) whatever it says to preserve, and no
        // other: with a larger count the rest of the range is not the caller's, and none of
        // peapod's own descriptors may land there.
        let file = File::open(&passed).expect("passed file");
        let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut cmd = bundle.rootfs.peapod_oci();
        cmd.args(["create", "--bundle", bundle.arg(), "--preserve-fds"])
            .arg(n.to_string())
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&id);
        // SAFETY: between fork and exec only dup2 and close_range run, both async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                // Out of the way first: the file may itself be 3 or 4, close-on-exec.
                let high = libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 1000);
                for target in [3, 4] {
                    if high == -1 || libc::dup2(high, target) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let (c, out) = bundle.launch(&id, cmd, pid_file);
        assert_eq!(out.code, 0, "--preserve-fds {n}: {out:?}");
        // Each command on the container must finish: a leaked copy of its lock would block.
        assert_eq!(c.status(), "created", "--preserve-fds {n}");
        let pid = c.pid();
        let state_dir = bundle.rootfs.state_root().join(&id);
        let fifo = state_dir.join("exec.fifo");
        let fds = without_guard(open_fds(pid));
        let expected: Vec<PathBuf> = match n {
            0 => vec![],
            _ => vec![passed.clone(), passed.clone()],
        };
        let passed_on: Vec<PathBuf> = fds
            .iter()
            .filter(|(fd, _)| (3..3 + n).contains(fd))
            .map(|(_, path)| path.clone())
            .collect();
        assert_eq!(passed_on, expected, "--preserve-fds {n}: {fds:#?}");
        let others: Vec<&(u32, PathBuf)> = fds.iter().filter(|(fd, _)| *fd >= 3 + n).collect();
        assert_eq!(
            others.iter().map(|(_, p)| p).collect::<Vec<_>>(),
            [&fifo],
            "--preserve-fds {n}: only the exec fifo beyond the range: {fds:#?}"
        );
        c.start();
        wait_until("the entrypoint's exec", || cmdline(pid) == ["sleep", "30"]);
        let numbers: Vec<u32> = open_fds(pid).iter().map(|(fd, _)| *fd).collect();
        let want: Vec<u32> = if n == 0 {
            vec![0, 1, 2]
        } else {
            vec![0, 1, 2, 3, 4]
        };
        assert_eq!(numbers, want, "--preserve-fds {n}");
        let out = c.kill("KILL");
        assert_eq!(out.code, 0, "{out:?}");
        c.wait_for_status("stopped");
        let out = c.peapod("delete");
        assert_eq!(out.code, 0, "{out:?}");
        assert!(!state_dir.exists());
        drop(c);
    }
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn a_spec_without_a_mount_namespace_runs_chrooted_in_the_runtimes() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let without_mnt = |spec: &mut Value| {
        let namespaces = spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        namespaces.retain(|ns| ns["type"] != "mount");
    };
    // The default spec masks /proc paths: that needs a mount namespace, as runc says.
    bundle.configure_with(&["true"], without_mnt);
    let (guard, out) = bundle.try_create("mnt-refused", &[]);
    drop(guard);
    assert_failed(
        &out,
        125,
        &["linux.maskedPaths: unable to restrict sys entries without a private mount namespace"],
    );
    assert!(bundle.state_entries().is_empty());

    bundle.configure_with(&sh("echo here > /marker; exec sleep 30"), |spec| {
        without_mnt(spec);
        spec["mounts"] = json!([]);
        spec["linux"]["maskedPaths"] = json!([]);
        spec["linux"]["readonlyPaths"] = json!([]);
        spec["root"]["readonly"] = json!(false);
    });
    let c = bundle.create("no-mnt", &[]);
    c.start();
    let pid = c.pid();
    let marker = bundle.rootfs.path.join("marker");
    wait_until("the entrypoint to write its marker", || marker.exists());
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("its mnt ns"),
        std::fs::read_link("/proc/self/ns/mnt").expect("ours"),
        "the runtime's mount namespace"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).expect("its root"),
        bundle.rootfs.path,
        "chrooted into the rootfs"
    );
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("its pid ns"),
        std::fs::read_link("/proc/self/ns/pid").expect("ours"),
        "its other namespaces are its own"
    );
    // exec takes the container's root too, though it has no mount namespace to join.
    let out = bundle.peapod(&["exec", "no-mnt", "cat", "/marker"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "here\n"), "{out:?}");
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn tmpcopyup_fills_a_tmpfs_with_what_it_covers() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let data = bundle.rootfs.path.join("data");
    std::fs::create_dir_all(data.join("sub")).expect("data/sub");
    std::fs::write(data.join("f"), "hello").expect("data/f");
    std::fs::write(data.join("sub/g"), "deep").expect("data/sub/g");
    std::os::unix::fs::symlink("/etc/passwd", data.join("link")).expect("data/link");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.join("f"), std::fs::Permissions::from_mode(0o4750))
        .expect("chmod");
    nix::unistd::chown(&data.join("sub/g"), Some(12.into()), Some(34.into())).expect("chown");
    let script = "stat -c '%n %a %u:%g' /data/f /data/sub/g; readlink /data/link; \
                  cat /data/f /data/sub/g; echo; echo new > /data/new && \
                  grep -c ' /data .* - tmpfs ' /proc/self/mountinfo";
    bundle.configure_with(&sh(script), |spec| {
        spec["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/data", "type": "tmpfs", "source": "tmpfs",
            "options": ["tmpcopyup", "nosuid"],
        }));
    });
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "copyup"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout, "/data/f 4750 0:0\n/data/sub/g 644 12:34\n/etc/passwd\nhellodeep\n1\n",
        "{out:?}"
    );
    assert!(!data.join("new").exists(), "the write went to the tmpfs");
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn time_offsets_reach_a_new_time_namespace() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: this kernel has no time namespaces");
        return;
    }
    let with_time = |spec: &mut Value, offsets: Value| {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "time"}));
        spec["linux"]["timeOffsets"] = offsets;
    };
    // Ten years of boot time: /proc/uptime counts from there.
    bundle.configure_with(
        &sh("cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime"),
        |spec| {
            with_time(
                spec,
                json!({"boottime": {"secs": 315360000, "nanosecs": 0},
                       "monotonic": {"secs": 86400, "nanosecs": 5}}),
            )
        },
    );
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "timens"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let offsets: Vec<Vec<&str>> = lines[..2]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        offsets.contains(&vec!["monotonic", "86400", "5"]),
        "{out:?}"
    );
    assert!(
        offsets.contains(&vec!["boottime", "315360000", "0"]),
        "{out:?}"
    );
    let uptime: u64 = lines[2].parse().expect("uptime");
    assert!(
        uptime >= 315_360_000,
        "uptime {uptime} lacks the offset: {out:?}"
    );

    bundle.configure_with(&["true"], |spec| {
        with_time(spec, json!({"realtime": {"secs": 1}}))
    });
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "timens-bad"]);
    assert_failed(&out, 125, &["linux.timeOffsets.realtime: unknown clock"]);
    bundle.rootfs.assert_nothing_left();
}

/// Unmounts (lazily) the mount at its path when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn recursive_mount_options_reach_every_submount() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let source = bundle.dir().join("tree");
    let inner = source.join("inner");
    std::fs::create_dir_all(&inner).expect("tree/inner");
    nix::mount::mount(
        Some("tmpfs"),
        &inner,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("a tmpfs below the bind source");
    let _inner = Unmount(inner.clone());
    let script = "for d in /r /r/inner; do touch $d/x 2>/dev/null && echo $d writable; done; \
                  grep -E ' /r(/inner)? ' /proc/self/mountinfo | cut -d' ' -f5,6";
    for (options, expected) in [
        (
            json!(["rbind", "ro"]),
            "/r/inner writable\n/r ro,relatime\n/r/inner rw,relatime\n",
        ),
        (
            json!(["rbind", "rro", "rnosuid"]),
            "/r ro,nosuid,relatime\n/r/inner ro,nosuid,relatime\n",
        ),
    ] {
        bundle.configure_with(&sh(script), |spec| {
            spec["mounts"].as_array_mut().expect("mounts").push(json!({
                "destination": "/r", "type": "bind", "source": source, "options": options,
            }));
        });
        let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "rro"]);
        assert_eq!(out.code, 0, "{options}: {out:?}");
        assert_eq!(out.stdout, expected, "{options}: {out:?}");
    }
    drop(_inner);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn failed_create_leaves_nothing_and_names_the_problem() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let check = |id: &str, code: i32, needles: &[&str]| {
        let (guard, out) = bundle.try_create(id, &[]);
        drop(guard);
        assert_failed(&out, code, needles);
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(bundle.state_entries().is_empty(), "{id}: {out:?}");
        bundle.rootfs.assert_nothing_left();
    };

    let missing = bundle.dir().join("no-such-rootfs");
    bundle.configure_with(&["true"], |spec| {
        spec["root"]["path"] = json!("no-such-rootfs")
    });
    check(
        "missing-rootfs",
        125,
        &[&format!("rootfs {}: does not exist", missing.display())],
    );

    std::fs::write(
        bundle.dir().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\"\n  \"process\": {}\n}\n",
    )
    .expect("config.json");
    check(
        "bad-json",
        125,
        &["config.json: expected", "line 3 column 3"],
    );

    bundle.configure_with(&["true"], |spec| {
        spec["linux"]["namespaces"][2]["type"] = json!("sideways");
    });
    check(
        "bad-namespace",
        125,
        &["config.json: linux.namespaces[2].type: unknown variant `sideways`"],
    );

    bundle.configure_with(&["true"], |spec| spec["ociVersion"] = json!("2.0.0"));
    check(
        "bad-version",
        125,
        &[r#"config.json: ociVersion: "2.0.0" is not a version 1.x.y of the runtime spec"#],
    );

    bundle.configure(&["/bin/no-such-tool"]);
    check(
        "no-entrypoint",
        127,
        &["/bin/no-such-tool: no such file or directory in the container"],
    );
    bundle.configure(&["no-such-tool"]);
    check(
        "not-on-path",
        127,
        &["no-such-tool: command not found in the container"],
    );

    std::fs::remove_file(bundle.dir().join("config.json")).expect("rm config.json");
    check("no-config", 125, &["config.json"]);
}

#[test]
fn ps_and_list_show_processes_ids_and_statuses() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // Exactly two processes: the shell as PID 1, waiting for its one child.
    bundle.configure(&sh("sleep 30 & echo $! > /out/child; wait"));
    let running = bundle.create("b-running", &[]);
    running.start();
    let created = bundle.create("a-created", &[]);
    wait_until("the child", || {
        std::fs::read_to_string(bundle.out().join("child")).is_ok_and(|s| s.ends_with('\n'))
    });
    let child: String = std::fs::read_to_string(bundle.out().join("child"))
        .expect("child")
        .trim()
        .to_owned();

    // ps --format json: the host PIDs of the container's processes, its init first.
    let init = running.pid();
    let out = bundle.peapod(&["ps", "--format", "json", "b-running"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pids: Vec<i32> = serde_json::from_str(&out.stdout).expect("ps prints a JSON list");
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.contains(&init), "{pids:?} lacks {init}");
    let other = pids.iter().find(|&&p| p != init).expect("the child");
    let status = std::fs::read_to_string(format!("/proc/{other}/status")).expect("status");
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .expect("NSpid");
    assert_eq!(
        nspid.split_whitespace().last(),
        Some(child.as_str()),
        "{nspid}"
    );
    let out = bundle.peapod(&["ps", "--format", "json", "a-created"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), format!("[{}]", created.pid()));

    // ps as a table: ps(1)'s header, then only the container's processes.
    let out = bundle.peapod(&["ps", "b-running"]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines = out.stdout.lines();
    let header = lines.next().expect("header");
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .expect("a PID column");
    let mut listed: Vec<i32> = lines
        .map(|l| {
            l.split_whitespace()
                .nth(column)
                .expect("pid")
                .parse()
                .expect("pid")
        })
        .collect();
    listed.sort_unstable();
    let mut expected = pids.clone();
    expected.sort_unstable();
    assert_eq!(listed, expected, "{}", out.stdout);

    // list: every container with its status, as a table, as JSON, and ids only.
    let out = bundle.peapod(&["list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert_eq!(rows[0][..3], ["ID", "PID", "STATUS"], "{}", out.stdout);
    let (created_pid, init_pid) = (created.pid().to_string(), init.to_string());
    assert_eq!(
        rows[1][..4],
        [
            "a-created",
            created_pid.as_str(),
            "created",
            &bundle.recorded()
        ]
    );
    assert_eq!(
        rows[2][..4],
        [
            "b-running",
            init_pid.as_str(),
            "running",
            &bundle.recorded()
        ]
    );
    let out = bundle.peapod(&["list", "--format", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let list: Value = serde_json::from_str(&out.stdout).expect("list prints JSON");
    let summary: BTreeSet<(&str, &str)> = list
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id"),
                s["status"].as_str().expect("status"),
            )
        })
        .collect();
    let expected = BTreeSet::from([("a-created", "created"), ("b-running", "running")]);
    assert_eq!(summary, expected, "{}", out.stdout);
    let out = bundle.peapod(&["list", "-q"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "a-created\nb-running\n");

    // ps of a container whose process is gone lists nothing, as runc's does.
    assert_eq!(running.kill("KILL").code, 0);
    running.wait_for_status("stopped");
    let out = bundle.peapod(&["ps", "--format", "json", "b-running"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "[]\n"), "{out:?}");
    for c in [&running, &created] {
        assert_eq!(c.peapod("delete").code, 0);
    }
    let out = bundle.peapod(&["list", "-q"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    drop((running, created));
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn run_detach_returns_while_the_container_runs() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh(&format!("echo up > /out/up; {UNTIL_GO}")));
    let pid_file = bundle.log_path("pid");
    let mut cmd = bundle.rootfs.peapod_oci();
    cmd.args(["run", "--detach", "--bundle", bundle.arg(), "--pid-file"])
        .arg(&pid_file)
        .arg("detached");
    let (c, out) = bundle.launch("detached", cmd, pid_file);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.status(), "running");
    wait_until("the entrypoint", || bundle.out().join("up").exists());
    assert_eq!(
        std::fs::read_to_string(&c.pid_file).expect("pid file"),
        c.pid().to_string()
    );
    let out = c.kill("KILL");
    assert_eq!(out.code, 0, "{out:?}");
    c.wait_for_status("stopped");
    assert_eq!(c.peapod("delete").code, 0);
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

/// `peapod-oci run` of a bundle is its own, as crun's `run` is crun's: a copy with no
/// `peapod` beside it runs the container detached, leaves it running with its pid in the pid
/// file, and deletes it; in the foreground it returns the container's status and output, and
/// one that outlives the hand-off to `peapod-init --watch` ends in the copy's own `finish`.
#[test]
fn peapod_oci_runs_a_bundle_itself_detached_or_in_the_foreground() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh(&format!("echo up > /out/up; {UNTIL_GO}")));
    let oci = lone_peapod_oci(bundle.dir(), &bundle.rootfs.state_root());
    // The copy's first run waits out another test's fork holding it open for writing.
    let out = finish(support::spawn_copied(oci(&["state", "solo"])));
    assert_failed(&out, 1, &["container solo does not exist"]);

    let pid_file = bundle.log_path("pid");
    let mut cmd = oci(&["run", "-d", "--bundle", bundle.arg(), "--pid-file"]);
    cmd.arg(&pid_file).arg("solo");
    let (c, out) = bundle.launch("solo", cmd, pid_file);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert_eq!(c.status(), "running");
    wait_until("the entrypoint", || bundle.out().join("up").exists());
    assert_eq!(
        std::fs::read_to_string(&c.pid_file).expect("pid file"),
        c.pid().to_string()
    );
    let out = finish(oci(&["delete", "--force", "solo"]).spawn().expect("spawn"));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(bundle.state_entries().is_empty());

    drop(c);

    bundle.configure(&sh("echo hello from $$; exit 7"));
    let out = finish(
        oci(&["run", "--bundle", bundle.arg(), "fg"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (7, "hello from 1\n"),
        "{out:?}"
    );
    assert!(bundle.state_entries().is_empty());

    // Past the hand-off: the same process becomes `peapod-init --watch`, which execs the
    // copy's `finish` once the container exits.
    bundle.configure(&sh(&format!("{UNTIL_GO}; exit 3")));
    let pid_file = bundle.log_path("pid");
    let _guard = Container {
        bundle: &bundle,
        id: "long".to_owned(),
        pid_file: pid_file.clone(),
        stdout: bundle.log_path("out"),
    };
    let mut cmd = oci(&["run", "--bundle", bundle.arg(), "--pid-file"]);
    cmd.arg(&pid_file).arg("long");
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    wait_until("peapod-init --watch to take over", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.starts_with(b"peapod-init\0--watch\0"))
    });
    bundle.go();
    let out = finish(child);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(bundle.state_entries().is_empty());
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn run_in_the_foreground_returns_the_exit_status_and_leaves_nothing() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh("echo hello from $$; exit 7"));
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "fg"]);
    assert_eq!(out.code, 7, "{out:?}");
    assert_eq!(out.stdout, "hello from 1\n");
    assert!(bundle.state_entries().is_empty());
    let out = bundle.peapod(&["state", "fg"]);
    assert_failed(&out, 1, &["container fg does not exist"]);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn features_is_json_with_the_supported_versions() {
    let out = finish(
        support::peapod_oci()
            .arg("features")
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let doc: Value = serde_json::from_str(&out.stdout).expect("features prints JSON");
    let version = |key: &str| -> Vec<u32> {
        let text = doc[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {doc:#}"));
        let parts: Vec<u32> = text
            .split('.')
            .map(|p| p.parse().unwrap_or_else(|_| panic!("{key} {text:?}")))
            .collect();
        assert_eq!(parts.len(), 3, "{key} {text:?}");
        parts
    };
    let (min, max) = (version("ociVersionMin"), version("ociVersionMax"));
    assert!(min <= max, "{min:?} > {max:?}");
    assert_eq!(min[0], 1);
    // The newest version it speaks is the one its state reports.
    assert_eq!(doc["ociVersionMax"], "1.2.0");
    assert!(doc["linux"]["namespaces"].is_array(), "{doc:#}");
    // It applies capabilities, so it lists every one it knows, by the spec's names.
    let caps = doc["linux"]["capabilities"]
        .as_array()
        .expect("capabilities");
    assert_eq!(caps.len(), 41, "{caps:?}");
    for name in [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
        "CAP_NET_RAW",
        "CAP_CHECKPOINT_RESTORE",
    ] {
        assert!(caps.iter().any(|c| c == name), "{name} missing: {caps:?}");
    }
}

#[test]
fn spec_writes_a_config_of_the_version_it_speaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = finish(
        support::peapod_oci()
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let text = std::fs::read_to_string(dir.path().join("config.json")).expect("config.json");
    let spec: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(spec["ociVersion"], "1.2.0");
    assert_eq!(spec["root"]["path"], "rootfs");
    let bounding = spec["process"]["capabilities"]["bounding"]
        .as_array()
        .expect("bounding set");
    assert_eq!(bounding.len(), 14, "Docker's default set: {bounding:?}");
    let names: Vec<&str> = bounding.iter().filter_map(Value::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "in a stable (sorted) order");
    // A second spec does not overwrite the first.
    let out = finish(
        support::peapod_oci()
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .spawn()
            .expect("spawn"),
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("exists already"), "{out:?}");
}

/// The namespace links of `pid` (`mnt:[4026531840]`, ...), by kind.
fn namespaces(pid: i32) -> Vec<(String, PathBuf)> {
    ["cgroup", "ipc", "mnt", "net", "pid", "uts"]
        .iter()
        .map(|kind| {
            let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns link");
            (kind.to_string(), link)
        })
        .collect()
}

#[test]
fn exec_joins_every_namespace_of_the_container_and_returns_its_status() {
    use std::os::unix::fs::MetadataExt;
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure_with(&sh(UNTIL_GO), |spec| {
        spec["hostname"] = json!("inside");
        spec["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!("FROM_SPEC=spec"));
    });
    let c = bundle.create("ex", &[]);
    // exec works on a created container too, as runc's does.
    let out = bundle.peapod(&["exec", "ex", "hostname"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "inside\n"), "{out:?}");
    c.start();
    let container = c.pid();

    // The exec'd process reports its own namespaces and environment; it runs in the
    // container's root, in the given directory, with the spec's environment plus --env.
    let script = "echo self=$$; for n in cgroup ipc mnt net pid uts; do echo $n=$(readlink /proc/self/ns/$n); done; \
                  echo cwd=$(pwd); echo spec=$FROM_SPEC; echo flag=$EXTRA; echo uid=$(id -u); \
                  ls /proc/self/fd | tr '\\n' ' ' | sed 's/ $//;s/^/fds=/'; echo; exit 9";
    let out = bundle.peapod(&[
        "exec",
        "--cwd",
        "/tmp",
        "--env",
        "EXTRA=flag",
        "ex",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.code, 9, "{out:?}");
    let facts = support::facts(&out.stdout);
    for (kind, link) in namespaces(container) {
        assert_eq!(
            facts[&kind],
            link.to_string_lossy(),
            "{kind} namespace differs from the container's: {out:?}"
        );
    }
    let inside_pid: i32 = facts["self"].parse().expect("pid");
    assert!(
        inside_pid > 1,
        "a new process of the container's PID namespace: {out:?}"
    );
    assert_eq!(facts["cwd"], "/tmp");
    assert_eq!(facts["spec"], "spec");
    assert_eq!(facts["flag"], "flag");
    assert_eq!(facts["uid"], "0");
    // 0, 1, 2 and the one ls itself opens for /proc/self/fd: nothing of peapod's leaks in.
    assert_eq!(facts["fds"], "0 1 2 3", "{out:?}");

    // --user, and a missing command's 127.
    let out = bundle.peapod(&[
        "exec",
        "--user",
        "1000:1001",
        "ex",
        "sh",
        "-c",
        "echo $(id -u):$(id -g)",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "1000:1001\n"),
        "{out:?}"
    );
    let out = bundle.peapod(&["exec", "ex", "/no/such/program"]);
    assert_failed(&out, 127, &["/no/such/program"]);

    // --detach with a pid file: the process runs in the container after exec returns.
    let pid_file = bundle.log_path("exec-pid");
    // Its stdio are files: it keeps them open, so a pipe would not end before it does.
    let log = bundle.log_path("exec-err");
    let mut detach = bundle.rootfs.peapod_oci();
    detach
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args(["ex", "sh", "-c", UNTIL_GO])
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("log"));
    let mut child = detach.spawn().expect("spawn exec");
    let status = wait_with_timeout(&mut child, TIMEOUT).expect("exec --detach returns");
    assert!(
        status.success(),
        "{status}: {:?}",
        std::fs::read_to_string(&log)
    );
    let detached: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("a pid");
    let root = |pid: i32| {
        let meta = std::fs::metadata(format!("/proc/{pid}/root/")).expect("root of a process");
        (meta.dev(), meta.ino())
    };
    assert_eq!(
        root(detached),
        root(container),
        "the detached process has the container's root"
    );
    assert_eq!(
        namespaces(detached),
        namespaces(container),
        "the detached process is in the container's namespaces"
    );
    let listed = c.peapod("ps");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == detached.to_string())),
        "ps lists the exec'd process: {listed:?}"
    );

    // A stopped container refuses exec.
    let mnt = namespaces(container)[2].1.clone();
    bundle.go();
    c.wait_for_status("stopped");
    let out = bundle.peapod(&["exec", "ex", "true"]);
    assert_failed(&out, 125, &["container ex is stopped"]);
    // It shared the container's PID namespace, so it died with the container's PID 1.
    wait_until("the detached process to end", || {
        std::fs::read_link(format!("/proc/{detached}/ns/mnt")).ok() != Some(mnt.clone())
    });
}

#[test]
fn exec_with_a_process_file_and_its_errors() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh(UNTIL_GO));
    let c = bundle.create("exf", &[]);
    c.start();
    let process = bundle.dir().join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["sh", "-c", "echo $GREETING; grep CapEff /proc/self/status"],
            "env": ["GREETING=from the file", "PATH=/bin:/usr/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        })
        .to_string(),
    )
    .expect("process.json");
    let path = process.to_str().expect("utf-8");
    let out = bundle.peapod(&["exec", "--process", path, "exf"]);
    assert_eq!(out.code, 0, "{out:?}");
    // CAP_KILL is bit 5.
    assert_eq!(out.stdout, "from the file\nCapEff:\t0000000000000020\n");

    std::fs::write(
        &process,
        r#"{"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
    )
    .expect("process.json");
    assert_failed(
        &bundle.peapod(&["exec", "--process", path, "exf"]),
        125,
        &["args: must not be empty"],
    );
    std::fs::write(&process, r#"{"args": ["true"], "cwd": 7}"#).expect("process.json");
    assert_failed(
        &bundle.peapod(&["exec", "--process", path, "exf"]),
        125,
        &["cwd"],
    );
    assert_failed(&bundle.peapod(&["exec", "exf"]), 2, &["no command"]);
    assert_failed(
        &bundle.peapod(&["exec", "nosuch", "true"]),
        1,
        &["container nosuch does not exist"],
    );
    assert_failed(
        &bundle.peapod(&["exec", "--cap", "CAP_NOPE", "exf", "true"]),
        2,
        &["unknown capability"],
    );
    bundle.go();
    c.wait_for_status("stopped");
}

/// Prints every `HOME` of the process's environment (the shell's own `$HOME` could not tell
/// a missing one from an empty one), or `no HOME`.
const PRINT_HOME: &str = "env | grep '^HOME=' || echo 'no HOME'";

/// Adds `app` (uid 1000, home `/home/app`) to the test rootfs's `/etc/passwd`, which has
/// `root` (`/root`) and `nobody` (`/`) already.
fn add_app_user(bundle: &Bundle) {
    let passwd = bundle.rootfs.path.join("etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).expect("passwd");
    assert!(text.contains("root:x:0:0:root:/root:"), "{text}");
    text.push_str("app:x:1000:1000::/home/app:/bin/sh\n");
    std::fs::write(&passwd, text).expect("write passwd");
}

#[test]
fn home_comes_from_the_containers_passwd_when_the_spec_sets_none() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    add_app_user(&bundle);
    // A passwd mounted over the image's: HOME is read in the container's final root.
    let mounted = bundle.dir().join("mounted-passwd");
    std::fs::write(&mounted, "root:x:0:0:root:/from-the-mount:/bin/sh\n").expect("passwd");
    let run = |name: &str, edit: &dyn Fn(&mut Value)| {
        bundle.configure_with(&sh(PRINT_HOME), |spec| edit(spec));
        let out = bundle.peapod(&["run", "--bundle", bundle.arg(), name]);
        assert_eq!(out.code, 0, "{name}: {out:?}");
        out.stdout
    };
    let user = |uid: u32| {
        move |spec: &mut Value| spec["process"]["user"] = json!({"uid": uid, "gid": uid})
    };
    let env = |home: &'static str| {
        move |spec: &mut Value| {
            spec["process"]["env"]
                .as_array_mut()
                .expect("env")
                .push(json!(home))
        }
    };
    assert_eq!(run("home-root", &|_| {}), "HOME=/root\n");
    assert_eq!(run("home-app", &user(1000)), "HOME=/home/app\n");
    assert_eq!(run("home-none", &user(4242)), "HOME=/\n");
    assert_eq!(run("home-given", &env("HOME=/mine")), "HOME=/mine\n");
    // runc takes an empty HOME for none.
    assert_eq!(run("home-empty", &env("HOME=")), "HOME=/root\n");
    let over_passwd = |spec: &mut Value| {
        spec["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/etc/passwd", "type": "bind",
            "source": mounted.clone(), "options": ["bind", "ro"],
        }))
    };
    assert_eq!(run("home-mounted", &over_passwd), "HOME=/from-the-mount\n");
    // Without process.env at all runc adds nothing either.
    let no_env = |spec: &mut Value| {
        spec["process"]
            .as_object_mut()
            .expect("process")
            .remove("env");
    };
    assert_eq!(run("home-no-env", &no_env), "no HOME\n");
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn exec_gets_the_home_of_its_own_user() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    add_app_user(&bundle);
    bundle.configure(&sh(UNTIL_GO));
    let c = bundle.create("exhome", &[]);
    c.start();
    let exec = |extra: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["exhome", "sh", "-c", PRINT_HOME]);
        let out = bundle.peapod(&args);
        assert_eq!(out.code, 0, "{extra:?}: {out:?}");
        out.stdout
    };
    assert_eq!(exec(&[]), "HOME=/root\n");
    assert_eq!(exec(&["--user", "1000:1000"]), "HOME=/home/app\n");
    assert_eq!(exec(&["--user", "65534"]), "HOME=/\n");
    assert_eq!(exec(&["--user", "4242"]), "HOME=/\n");
    assert_eq!(
        exec(&["--user", "1000", "--env", "HOME=/mine"]),
        "HOME=/mine\n"
    );
    bundle.go();
    c.wait_for_status("stopped");
    assert_eq!(c.peapod("delete").code, 0);
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

/// Accepts the runtime's connection on `listener` and receives the pty master it sends.
fn receive_pty(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("no connection on the console socket: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut name = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for cmsg in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel gave us this descriptor; nothing else owns it.
            return unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

/// Reads from the pty `master` until the output holds `needle` (or fails after TIMEOUT).
fn read_until(master: &std::os::fd::OwnedFd, needle: &str) -> String {
    use std::os::fd::AsFd;
    let mut seen = String::new();
    let deadline = Instant::now() + TIMEOUT;
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {needle:?} on the terminal; it said {seen:?}"
        );
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if nix::poll::poll(&mut fds, ms).expect("poll") == 0 {
            continue;
        }
        let mut buf = [0u8; 1024];
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(master), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                panic!("the terminal closed before {needle:?}; it said {seen:?}")
            }
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => panic!("read from the pty: {e}"),
        }
    }
    seen
}

#[test]
fn console_socket_receives_a_working_pty_for_create_and_exec() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let script =
        "tty; stty size; [ -c /dev/console ] && echo console-ok; read line; echo got:$line";
    bundle.configure_with(&sh(script), |spec| {
        spec["process"]["terminal"] = json!(true);
        spec["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    let socket = bundle.dir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let c = bundle.create(
        "tty",
        &["--console-socket", socket.to_str().expect("utf-8")],
    );
    let master = receive_pty(&listener);
    // The created container holds the pty, not the socket: still only stdio and the fifo.
    let fds = without_guard(open_fds(c.pid()));
    let fifo = bundle.rootfs.state_root().join("tty/exec.fifo");
    assert_eq!(fds.len(), 4, "stdio and the exec fifo: {fds:#?}");
    assert_eq!(fds[3].1, fifo, "{fds:#?}");
    c.start();
    let said = read_until(&master, "console-ok");
    assert!(said.contains("/dev/pts/0"), "{said:?}");
    assert!(said.contains("30 100"), "the spec's console size: {said:?}");

    // exec --tty sends a second pty of the same devpts, its own session.
    let out = bundle.peapod(&[
        "exec",
        "--tty",
        "--console-socket",
        socket.to_str().expect("utf-8"),
        "--detach",
        "tty",
        "sh",
        "-c",
        "tty; echo sid=$(cut -d' ' -f6 /proc/self/stat) pid=$$; sleep 1",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let exec_master = receive_pty(&listener);
    let said = read_until(&exec_master, "pid=");
    assert!(said.contains("/dev/pts/1"), "{said:?}");

    // What is typed on the first terminal reaches the entrypoint's stdin.
    nix::unistd::write(&master, b"hello\n").expect("type");
    read_until(&master, "got:hello");
    c.wait_for_status("stopped");

    // A terminal without a socket, and a socket without a terminal, are refused.
    assert_failed(
        &bundle.peapod(&["create", "--bundle", bundle.arg(), "nosock"]),
        125,
        &["process.terminal", "console socket"],
    );
    bundle.configure(&sh("true"));
    let out = bundle.peapod(&[
        "create",
        "--bundle",
        bundle.arg(),
        "--console-socket",
        socket.to_str().expect("utf-8"),
        "notty",
    ]);
    assert_failed(&out, 125, &["only for a process with a terminal"]);
    assert_eq!(
        bundle.state_entries(),
        ["tty"],
        "failed creates leave nothing"
    );
}

#[test]
fn container_processes_cannot_reach_the_peapod_binary() {
    // CVE-2019-5736: an entrypoint that names /proc/self/exe must not run the runtime's
    // binary (a process of the container could then hold it open and overwrite it). peapod
    // execs entrypoints through a sealed in-memory copy of peapod-init, so that is what runs.
    if std::env::var_os("PEAPOD_INIT").is_none() {
        eprintln!("skipped: PEAPOD_INIT is not set (`cargo xtask test` builds the static peapod-init and sets it)");
        return;
    }
    let Some(bundle) = Bundle::new() else {
        return;
    };
    std::os::unix::fs::symlink("/proc/self/exe", bundle.dir().join("rootfs/x")).expect("link");
    // `-P`: whatever runs as /x pauses if it is peapod-init, and fails if it is peapod.
    bundle.configure(&["/x", "-P"]);
    let c = bundle.create("sealed", &[]);
    c.start();
    let pid = c.pid();
    let exe = format!("/proc/{pid}/exe");
    wait_until("the entrypoint to exec", || {
        std::fs::read_link(&exe).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:"))
    });
    let target = std::fs::read_link(&exe).expect("exe link");
    assert_eq!(
        target.to_string_lossy(),
        "/memfd:peapod-init (deleted)",
        "the container runs {target:?}"
    );
    let file = File::open(&exe).expect("open exe");
    // SAFETY: F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GET_SEALS) };
    assert!(
        seals >= 0 && seals & libc::F_SEAL_WRITE != 0,
        "seals {seals:#x}"
    );
    assert!(
        std::fs::OpenOptions::new().write(true).open(&exe).is_err(),
        "the binary of a container process can be opened for writing"
    );
    assert_eq!(c.kill("TERM").code, 0);
    c.wait_for_status("stopped");
}

#[test]
fn exec_runs_under_the_containers_seccomp_filter() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure_with(&sh(UNTIL_GO), |spec| {
        spec["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let c = bundle.create("exsec", &[]);
    c.start();
    // What exec runs under is what the container was created with: a config.json changed
    // since cannot take the filter away.
    bundle.configure(&sh(UNTIL_GO));
    let out = bundle.peapod(&[
        "exec",
        "exsec",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir /dev/shm/x; echo mkdir=$?",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{out:?}");
    assert!(out.stdout.contains("mkdir=1"), "{out:?}");
    assert!(out.stderr.contains("Operation not permitted"), "{out:?}");
    bundle.go();
    c.wait_for_status("stopped");
}

/// A seccomp profile not yet in the compiled-filter cache works through `peapod-oci`: a build
/// without libseccomp (the static musl one `cargo xtask test` runs) hands the `create` to
/// `peapod`, which compiles the filter and caches it in the state root; the next `create` of
/// that profile reads it from the cache, here by a copy with no `peapod` beside it, which
/// such a build could not hand anything to. Both containers run under the filter: the denied
/// call fails with the profile's errno. A profile that copy finds no filter of is either
/// compiled (a build with libseccomp) or refused before anything is made.
#[test]
fn peapod_oci_compiles_a_new_profile_once_and_reads_it_from_the_cache_after() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // ENOSPC: a failure mkdir in /tmp has for no other reason here.
    let deny = |errno: u32| {
        move |spec: &mut Value| {
            spec["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": errno}]
            });
        }
    };
    let script = "mkdir /tmp/denied 2>&1; echo mkdir=$?";
    bundle.configure_with(&sh(script), deny(28));
    let cache = bundle.rootfs.state_root().join(".seccomp");
    let entries = || -> Vec<String> {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(entries().is_empty(), "{:?}", entries());
    let denied = |c: &Container<'_>| {
        c.start();
        c.wait_for_status("stopped");
        let output = c.output();
        assert!(output.contains("mkdir=1"), "{output:?}");
        assert!(output.contains("No space left on device"), "{output:?}");
    };
    let first = bundle.create("first", &[]);
    let cached = entries();
    assert_eq!(cached.len(), 1, "one compiled filter: {cached:?}");
    assert!(
        cache.join(".compiler").exists(),
        "the compiler is not noted"
    );
    denied(&first);

    let oci = lone_peapod_oci(bundle.dir(), &bundle.rootfs.state_root());
    // The copy's first run waits out another test's fork holding it open for writing.
    let mut state = oci(&["state", "second"]);
    state.stdout(Stdio::null()).stderr(Stdio::piped());
    assert_eq!(finish(support::spawn_copied(state)).code, 1);
    let create = |id: &str| {
        let pid_file = bundle.log_path("pid");
        let mut cmd = oci(&["create", "--bundle", bundle.arg(), "--pid-file"]);
        cmd.arg(&pid_file).arg(id);
        bundle.launch(id, cmd, pid_file)
    };
    let (second, out) = create("second");
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert_eq!(entries(), cached, "the filter was not read from the cache");
    denied(&second);

    bundle.configure_with(&sh(script), deny(27));
    let (third, out) = create("third");
    if out.code == 0 {
        // A build with libseccomp compiles what the cache lacks.
        assert_eq!(entries().len(), 2, "{:?}", entries());
    } else {
        assert_failed(&out, 125, &["cannot run", "peapod"]);
        assert!(!bundle.state_entries().contains(&"third".to_owned()));
    }
    drop(third);
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // One script, at a host path for the hooks that run in the runtime's root and inside the
    // rootfs for startContainer (which runs after pivot_root); both append to out/log.
    let script = "#!/bin/sh\necho \"$1 $(cat)\" >> \"$2\"\n";
    let host_hook = bundle.dir().join("hook.sh");
    let log = bundle.out().join("log");
    for path in [host_hook.clone(), bundle.dir().join("rootfs/hook.sh")] {
        std::fs::write(&path, script).expect("hook script");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    let hook = |phase: &str, path: &Path, log: &Path| json!({"path": path, "args": ["hook", phase, log], "env": ["PATH=/bin:/usr/bin"], "timeout": 10});
    let (h, l) = (host_hook.as_path(), log.as_path());
    bundle.configure_with(&["true"], |spec| {
        spec["hooks"] = json!({
            "prestart": [hook("prestart", h, l)],
            "createRuntime": [hook("createRuntime", h, l)],
            "createContainer": [hook("createContainer", h, l)],
            "startContainer": [hook("startContainer", Path::new("/hook.sh"), Path::new("/out/log"))],
            "poststart": [hook("poststart", h, l)],
            "poststop": [hook("poststop", h, l)],
        });
    });
    let c = bundle.create("hooked", &[]);
    let pid = c.pid();
    c.start();
    c.wait_for_status("stopped");
    assert_eq!(c.peapod("delete").code, 0);
    let text = std::fs::read_to_string(&log).expect("hook log");
    let lines: Vec<(&str, Value)> = text
        .lines()
        .map(|line| {
            let (phase, state) = line.split_once(' ').expect("phase and state");
            (
                phase,
                serde_json::from_str(state).expect("state JSON on stdin"),
            )
        })
        .collect();
    let phases: Vec<&str> = lines.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        phases,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    for (phase, state) in &lines {
        assert_eq!(state["id"], "hooked", "{phase}: {state}");
        assert_eq!(state["bundle"], bundle.recorded(), "{phase}: {state}");
        assert_eq!(state["ociVersion"], "1.2.0", "{phase}: {state}");
        let expected = match *phase {
            "prestart" | "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(state["status"], expected, "{phase}: {state}");
    }
    // The runtime's hooks see the container process as the host does; those in the
    // container see it in its PID namespace.
    assert_eq!(lines[0].1["pid"], pid, "{text}");
    assert_eq!(lines[2].1["pid"], 1, "{text}");
    drop(c);

    // A failing createRuntime hook fails create, naming it, and leaves nothing; so does one
    // that outlives its timeout.
    for (body, needle) in [
        ("exit 3", "exit status: 3"),
        ("sleep 5", "timed out after 1s"),
    ] {
        let failing = bundle.dir().join("failing.sh");
        std::fs::write(
            &failing,
            format!("#!/bin/sh\necho about to fail >&2\n{body}\n"),
        )
        .expect("script");
        std::fs::set_permissions(
            &failing,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        bundle.configure_with(&["true"], |spec| {
            spec["hooks"] = json!({"createRuntime": [{"path": failing, "timeout": 1}]});
        });
        let (failed, out) = bundle.try_create("badhook", &[]);
        assert_failed(&out, 125, &["createRuntime hook", "failing.sh", needle]);
        drop(failed);
        assert!(
            bundle.state_entries().is_empty(),
            "{:?}",
            bundle.state_entries()
        );
    }
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn a_cgroup_mount_shows_only_the_containers_own_cgroup() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let script = "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  ls /sys/fs/cgroup/pids | grep -c peapod; grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo";
    bundle.configure_with(&sh(script), |spec| {
        // This one alone (peapod spec has one already).
        let mounts = spec["mounts"].as_array_mut().expect("mounts");
        mounts.retain(|m| m["type"] != "cgroup");
        mounts.push(json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }));
        spec["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 77}});
    });
    if !Path::new("/sys/fs/cgroup/pids").is_dir() || !Path::new("/sys/fs/cgroup/memory").is_dir() {
        eprintln!(
            "skipped: this test reads the v1 pids and memory hierarchies, which this host lacks"
        );
        return;
    }
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "cgmount"]);
    // The container's own limits are at the root of what it sees; no other cgroup (and no
    // `peapod` parent) is visible; the mount is read-only.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.get(..3),
        Some(&["77", "67108864", "0"][..]),
        "{out:?}"
    );
    assert!(
        lines
            .get(3)
            .is_some_and(|l| l.contains(" ro,") && l.contains("cgroup")),
        "{out:?}"
    );
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn a_cgroup_mount_has_name_systemd_and_cgroup2_with_the_container_at_their_root() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let Ok(peapod_cgroups::Layout::V1 { named, unified, .. }) = peapod_cgroups::Layout::detect()
    else {
        eprintln!("skipped: not a cgroup v1 host, which alone has name=systemd beside cgroup2");
        return;
    };
    if !named.iter().any(|h| h.name.as_deref() == Some("systemd")) || unified.is_none() {
        eprintln!("skipped: this v1 host lacks the name=systemd hierarchy or a cgroup2 mount");
        return;
    }
    // PID 1 is the shell: it alone is in the root of each (no `peapod` parent is seen).
    let script = "for h in systemd unified; do \
                  echo $h $(cat /sys/fs/cgroup/$h/cgroup.procs | tr '\\n' ' ')$(ls /sys/fs/cgroup/$h | grep -c peapod); \
                  done; grep -c ' /sys/fs/cgroup/systemd .* - cgroup cgroup .*name=systemd' /proc/self/mountinfo";
    bundle.configure_with(&sh(script), |spec| {
        // This one alone (peapod spec has one already).
        let mounts = spec["mounts"].as_array_mut().expect("mounts");
        mounts.retain(|m| m["type"] != "cgroup");
        mounts.push(json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }));
    });
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "cgnamed"]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines = out.stdout.lines();
    for h in ["systemd", "unified"] {
        let line = lines.next().unwrap_or_default();
        // The shell's subshells and `cat` are in it too while it reads.
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&h), "{out:?}");
        let procs = fields
            .get(1..fields.len().saturating_sub(1))
            .unwrap_or_default();
        assert!(procs.contains(&"1"), "{h}: {out:?}");
        assert_eq!(fields.last(), Some(&"0"), "{h}: {out:?}");
    }
    assert_eq!(lines.next(), Some("1"), "{out:?}");
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn linux_devices_are_made_with_their_type_numbers_mode_and_owner() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure_with(
        &sh("stat -c '%F %t:%T %a %u:%g' /dev/fuse /dev/extra/loop7 /dev/extra/fifo"),
        |spec| {
            spec["linux"]["devices"] = json!([
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438},
                {"path": "/dev/extra/loop7", "type": "b", "major": 7, "minor": 7,
                 "fileMode": 416, "uid": 0, "gid": 6},
                {"path": "/dev/extra/fifo", "type": "p", "fileMode": 384, "uid": 1000, "gid": 1000},
            ]);
        },
    );
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "devs"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "character special file a:e5 666 0:0\nblock special file 7:7 640 0:6\nfifo 0:0 600 1000:1000\n"
    );
    // A node type that is no node is refused, naming the field, before anything is made.
    bundle.configure_with(&["true"], |spec| {
        spec["linux"]["devices"] = json!([{"path": "/dev/x", "type": "a"}]);
    });
    let out = bundle.peapod(&["run", "--bundle", bundle.arg(), "baddev"]);
    assert_failed(&out, 125, &["linux.devices[0].type"]);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn run_tty_joins_the_containers_terminal_to_peapods_stdio() {
    // `run -t` without a console socket: peapod holds the pty master itself; what it reads
    // reaches the shell through the terminal, what the shell writes comes back, and the
    // exit status is the shell's. The same for a bundle's `process.terminal`, which
    // `peapod-oci` runs itself (`-t` goes to `peapod`).
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure_with(&["/bin/sh"], |spec| {
        spec["process"]["terminal"] = json!(true);
    });
    let mut with_flags = bundle.rootfs.peapod_oci();
    with_flags
        .args(["run", "-t", "--rootfs"])
        .arg(bundle.dir().join("rootfs"))
        .args(["--", "/bin/sh"]);
    let mut of_bundle = bundle.rootfs.peapod_oci();
    of_bundle.args(["run", "--bundle", bundle.arg(), "tty"]);
    for mut command in [with_flags, of_bundle] {
        let mut child = command.stdin(Stdio::piped()).spawn().expect("spawn peapod");
        std::io::Write::write_all(
            &mut child.stdin.take().expect("stdin"),
            // The terminal echoes the input: what is asserted is only in the output.
            b"tty; [ -t 0 ] && echo terminal$((40+2)); exit 3\n",
        )
        .expect("type");
        let out = finish(child);
        assert_eq!(out.code, 3, "{command:?}: {out:?}");
        assert!(out.stdout.contains("/dev/pts/0"), "{command:?}: {out:?}");
        assert!(out.stdout.contains("terminal42"), "{command:?}: {out:?}");
        assert!(bundle.state_entries().is_empty());
    }
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn exec_works_in_a_container_made_from_a_rootfs_without_a_bundle() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // The working directory has a config.json of its own, which must play no part.
    bundle.configure(&["false"]);
    let mut cmd = bundle.rootfs.peapod_oci();
    cmd.current_dir(bundle.dir())
        .args([
            "run",
            "--detach",
            "--name",
            "plain",
            "--hostname",
            "plainhost",
            "--rootfs",
        ])
        .arg(bundle.dir().join("rootfs"))
        .arg("-v")
        .arg(format!("{}:/out", bundle.out().display()))
        .args(["--", "sh", "-c", UNTIL_GO])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let status = wait_with_timeout(&mut child, TIMEOUT).expect("run --detach returns");
    let guard = Container {
        bundle: &bundle,
        id: "plain".to_owned(),
        pid_file: bundle.log_path("unused"),
        stdout: bundle.log_path("unused"),
    };
    assert!(status.success(), "{status}");
    let out = bundle.peapod(&["exec", "plain", "sh", "-c", "hostname; echo $PATH"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("plainhost\n"), "{out:?}");
    bundle.go();
    guard.wait_for_status("stopped");
}

#[test]
fn a_working_directory_through_a_leaked_descriptor_is_refused() {
    // CVE-2024-21626: process.cwd of /proc/self/fd/N, where N is a descriptor of the
    // runtime's still open on a host directory, must never make it the entrypoint's cwd.
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let mut refused_as_outside = 0;
    for fd in 3..12 {
        bundle.configure_with(&sh("pwd; ls /"), |spec| {
            spec["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}"));
        });
        let out = bundle.peapod(&["run", "--bundle", bundle.arg(), &format!("cwd{fd}")]);
        assert_eq!(out.code, 125, "fd {fd}: {out:?}");
        assert!(
            out.stdout.is_empty(),
            "fd {fd}: the entrypoint ran: {out:?}"
        );
        if out.stderr.contains("outside the container's root") {
            refused_as_outside += 1;
        }
    }
    // At least one of them is a directory of peapod's (the state entry): the check matters.
    assert!(refused_as_outside > 0, "no descriptor was a host directory");
    bundle.rootfs.assert_nothing_left();
}

/// `peapod --root STATE --log LOG --log-format json ARGS...`, the argv containerd's shim
/// (go-runc) builds for every command, with `stdin` as its standard input (`update
/// --resources -` reads it): what peapod said, and the `msg` of the last `error` line of LOG,
/// which the shim reads for the error it reports.
fn as_the_shim(bundle: &Bundle, args: &[&str], stdin: Option<&Path>) -> (Outcome, Option<String>) {
    let log = bundle.log_path("log.json");
    let mut cmd = bundle.rootfs.peapod_oci();
    cmd.arg("--log")
        .arg(&log)
        .args(["--log-format", "json"])
        .args(args);
    if let Some(path) = stdin {
        cmd.stdin(File::open(path).expect("stdin file"));
    }
    let out = finish(cmd.spawn().expect("spawn peapod"));
    (out, last_log_error(&log))
}

/// The `msg` of the last `"level":"error"` line of a JSON log, after checking that every
/// line is what go-runc decodes: an object with `level`, `msg` and an RFC 3339 `time`.
fn last_log_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut last = None;
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).expect("a JSON log line");
        let time = entry["time"].as_str().expect("time");
        assert!(
            time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "not RFC 3339: {line}"
        );
        assert!(entry["msg"].is_string(), "{line}");
        if entry["level"] == "error" {
            last = entry["msg"].as_str().map(str::to_owned);
        }
    }
    last
}

/// The one stderr line containerd's shim gets from a failed command: `peapod: error:`, then
/// the message.
fn assert_shim_error(out: &Outcome, code: i32, needle: &str) {
    assert_failed(out, code, &[needle]);
    assert!(out.stderr.starts_with("peapod: error: "), "{out:?}");
}

#[test]
fn kill_of_an_exited_container_says_container_not_running() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh("exit 3"));
    let c = bundle.create("gone", &[]);
    c.start();
    c.wait_for_status("stopped");

    // The shim stops a task with `kill ID 9` (or 15), and treats "container not running" as
    // "already exited"; `--all` (a sandbox's or a shared PID namespace's clean-up) succeeds.
    for signal in ["9", "15"] {
        let (out, logged) = as_the_shim(&bundle, &["kill", "gone", signal], None);
        assert_shim_error(&out, 1, "container not running");
        assert_eq!(logged.as_deref(), Some("container not running"));
        let (out, logged) = as_the_shim(&bundle, &["kill", "--all", "gone", signal], None);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
        assert_eq!(logged, None);
    }
    // Its state still says stopped, and delete (without --force, as the shim deletes an
    // exited task) removes it.
    assert_eq!(c.status(), "stopped");
    let (out, logged) = as_the_shim(&bundle, &["delete", "gone"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert_eq!(logged, None);

    // Once gone, every command says "does not exist" (the shim's other NotFound), status 1.
    for args in [
        &["kill", "gone", "9"][..],
        &["kill", "--all", "gone", "9"],
        &["state", "gone"],
        &["delete", "gone"],
        &["ps", "--format", "json", "gone"],
        &["pause", "gone"],
        &["resume", "gone"],
    ] {
        let (out, logged) = as_the_shim(&bundle, args, None);
        assert_shim_error(&out, 1, "does not exist");
        assert!(
            logged
                .as_deref()
                .is_some_and(|m| m.contains("does not exist")),
            "{args:?}: {logged:?}"
        );
    }
    let (out, _) = as_the_shim(&bundle, &["delete", "--force", "gone"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn the_shims_lifecycle_argv_gets_runcs_answers() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure(&sh(UNTIL_GO));
    // create as go-runc builds it (--no-pivot only when the shim is configured so).
    let pid_file = bundle.log_path("pid");
    let log = bundle.log_path("log.json");
    let mut cmd = bundle.rootfs.peapod_oci();
    cmd.arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle", bundle.arg()])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("task");
    let (c, out) = bundle.launch("task", cmd, pid_file);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert_eq!(last_log_error(&log), None);
    let (out, _) = as_the_shim(&bundle, &["start", "task"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let pid = c.pid();

    let (out, _) = as_the_shim(&bundle, &["ps", "--format", "json", "task"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let pids: Vec<i32> = serde_json::from_str(&out.stdout).expect("a JSON list of pids");
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");

    // exec --process FILE --detach --pid-file FILE: the process runs, its pid is written.
    let process = bundle.dir().join("process.json");
    let mut proc_spec = bundle.spec["process"].clone();
    proc_spec["args"] = json!(["sh", "-c", "echo $$ > /out/exec-ran"]);
    std::fs::write(&process, proc_spec.to_string()).expect("process.json");
    let exec_pid = bundle.log_path("pid");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let (out, logged) = as_the_shim(
        &bundle,
        &[
            "exec",
            "--process",
            &path(&process),
            "--detach",
            "--pid-file",
            &path(&exec_pid),
            "task",
        ],
        None,
    );
    assert_eq!((out.code, logged), (0, None), "{out:?}");
    wait_until("the exec'd process", || {
        bundle.out().join("exec-ran").exists()
    });
    assert!(exec_pid.exists(), "exec wrote no pid file");

    // update --resources - reads linux.resources JSON from stdin.
    let resources = bundle.dir().join("resources.json");
    std::fs::write(&resources, r#"{"pids": {"limit": 100}}"#).expect("resources");
    let (out, _) = as_the_shim(
        &bundle,
        &["update", "--resources", "-", "task"],
        Some(&resources),
    );
    assert_eq!(out.code, 0, "{out:?}");

    let (out, _) = as_the_shim(&bundle, &["pause", "task"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.status(), "paused");
    let (out, _) = as_the_shim(&bundle, &["resume", "task"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.status(), "running");

    // Stop as the shim does: kill 9, then, the process gone, kill again is "not running",
    // ps lists nothing, and delete removes it.
    let (out, _) = as_the_shim(&bundle, &["kill", "task", "9"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    c.wait_for_status("stopped");
    let (out, logged) = as_the_shim(&bundle, &["kill", "task", "9"], None);
    assert_shim_error(&out, 1, "container not running");
    assert_eq!(logged.as_deref(), Some("container not running"));
    let (out, _) = as_the_shim(&bundle, &["ps", "--format", "json", "task"], None);
    assert_eq!((out.code, out.stdout.as_str()), (0, "[]\n"), "{out:?}");
    let (out, _) = as_the_shim(&bundle, &["delete", "task"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert!(bundle.state_entries().is_empty());
    drop(c);
    bundle.rootfs.assert_nothing_left();
}

/// A directory of the test made a mount point of its own (a bind onto itself), private and
/// then shared, so that it is a peer group of one that nothing outside the test belongs to.
/// Dropping it detaches it and everything mounted below it, on the host side.
struct SharedDir {
    path: PathBuf,
}

impl SharedDir {
    fn new(path: PathBuf) -> SharedDir {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(&path).expect("shared dir");
        // The guard exists before the mount, so a failure below still unmounts.
        let dir = SharedDir { path };
        mount(
            Some(&dir.path),
            &dir.path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind the shared dir");
        for flag in [MsFlags::MS_PRIVATE, MsFlags::MS_SHARED] {
            mount(None::<&str>, &dir.path, None::<&str>, flag, None::<&str>)
                .expect("propagation of the shared dir");
        }
        dir
    }

    /// Mounts a tmpfs at `name` below the directory, from the host's side.
    fn mount_tmpfs(&self, name: &str) {
        let target = self.path.join(name);
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("tmpfs on the host");
    }

    /// Whether `name` below the directory is a mount point in the test's (the host's)
    /// mount namespace.
    fn is_mounted(&self, name: &str) -> bool {
        let target = self.path.join(name);
        let target = target.to_str().expect("utf-8 path");
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(target))
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        // Detaching the bind takes every mount below it along; repeated while a mount is
        // stacked on the same point (bounded: a mount that will not go is not looped on).
        for _ in 0..8 {
            if nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

/// The spec with `CAP_SYS_ADMIN` (to mount inside), a bind of `source` at `/shared` with
/// `options`, and `linux.rootfsPropagation`.
fn with_shared_bind(spec: &mut Value, source: &Path, options: &[&str], root_propagation: &str) {
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set]
            .as_array_mut()
            .expect("capability set")
            .push(json!("CAP_SYS_ADMIN"));
    }
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/shared",
        "type": "bind",
        "source": source,
        "options": options,
    }));
    spec["linux"]["rootfsPropagation"] = json!(root_propagation);
}

/// The entrypoint of the propagation tests: waits for the host's mount to show up at
/// `/shared/host`, says so, mounts a tmpfs at `/shared/in` with a file in it, says so, then
/// waits for the test.
const SEE_HOST_THEN_MOUNT: &str = "\
    i=0; until [ -e /shared/host/file ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done; \
    [ -e /shared/host/file ] && touch /out/saw-host; \
    mount -t tmpfs -o size=64k tmpfs /shared/in && echo inside > /shared/in/file \
    && touch /out/mounted; touch /out/done; \
    i=0; until [ -e /out/go ] || [ $i -ge 600 ]; do sleep 0.05; i=$((i+1)); done";

#[test]
fn bidirectional_bind_propagates_mounts_both_ways() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let shared = SharedDir::new(bundle.dir().join("bidirectional"));
    for name in ["host", "in"] {
        std::fs::create_dir(shared.path.join(name)).expect("mount point");
    }
    // What containerd asks for a CRI mount with `propagation: Bidirectional`.
    bundle.configure_with(&sh(SEE_HOST_THEN_MOUNT), |spec| {
        with_shared_bind(spec, &shared.path, &["rbind", "rshared"], "rshared");
    });
    let c = bundle.create("bidi", &[]);
    c.start();
    // A mount the host makes after the container started reaches it.
    shared.mount_tmpfs("host");
    std::fs::write(shared.path.join("host/file"), "host\n").expect("host file");
    wait_until("the container to finish its mounts", || {
        bundle.out().join("done").exists()
    });
    assert!(bundle.out().join("saw-host").exists(), "{}", c.output());
    assert!(bundle.out().join("mounted").exists(), "{}", c.output());
    // And the container's mount reaches the host.
    assert!(
        shared.is_mounted("in"),
        "the container's tmpfs is not on the host"
    );
    assert_eq!(
        std::fs::read_to_string(shared.path.join("in/file")).expect("the container's file"),
        "inside\n"
    );
    bundle.go();
    c.wait_for_status("stopped");
    assert_eq!(c.peapod("delete").code, 0);
    drop(c);
    drop(shared);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn host_to_container_bind_sees_host_mounts_but_does_not_show_its_own() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    let shared = SharedDir::new(bundle.dir().join("host-to-container"));
    for name in ["host", "in"] {
        std::fs::create_dir(shared.path.join(name)).expect("mount point");
    }
    // What containerd asks for `propagation: HostToContainer`.
    bundle.configure_with(&sh(SEE_HOST_THEN_MOUNT), |spec| {
        with_shared_bind(spec, &shared.path, &["rbind", "rslave"], "rslave");
    });
    let c = bundle.create("h2c", &[]);
    c.start();
    shared.mount_tmpfs("host");
    std::fs::write(shared.path.join("host/file"), "host\n").expect("host file");
    wait_until("the container to finish its mounts", || {
        bundle.out().join("done").exists()
    });
    assert!(bundle.out().join("saw-host").exists(), "{}", c.output());
    // The container could mount there, but only it sees that mount.
    assert!(bundle.out().join("mounted").exists(), "{}", c.output());
    assert!(
        !shared.is_mounted("in"),
        "the container's mount reached the host"
    );
    assert!(!shared.path.join("in/file").exists());
    bundle.go();
    c.wait_for_status("stopped");
    assert_eq!(c.peapod("delete").code, 0);
    drop(c);
    drop(shared);
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn shared_root_propagation_runs_and_keeps_container_mounts_off_the_host() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // The root's first optional mountinfo field: its peer group, or "-" for none.
    let tag = "awk '$5 == \"/\" { print $7 }' /proc/self/mountinfo";
    for (propagation, expected) in [
        ("shared", "shared:"),
        ("rshared", "shared:"),
        ("private", "-"),
        ("rprivate", "-"),
        ("slave", "-"),
        ("unbindable", "unbindable"),
    ] {
        bundle.configure_with(&sh(tag), |spec| {
            spec["linux"]["rootfsPropagation"] = json!(propagation);
        });
        let id = format!("root-{propagation}");
        let out = bundle.peapod(&["run", "--bundle", bundle.arg(), &id]);
        assert_eq!(out.code, 0, "{propagation}: {out:?}");
        assert!(
            out.stdout.starts_with(expected),
            "{propagation}: {}",
            out.stdout
        );
        // The container's /proc, /dev, ... stayed in its namespace.
        bundle.rootfs.assert_nothing_left();
    }
}

#[test]
fn a_host_with_a_shared_root_can_run_any_root_propagation_without_leaking_mounts() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: no unshare(1) (util-linux)");
        return;
    }
    // A host whose `/` is shared (systemd's default), simulated in a mount namespace of the
    // test's own: after the container, none of its mounts may be left in that namespace.
    let rootfs = bundle.rootfs.arg().to_owned();
    for propagation in [None, Some("rshared"), Some("shared"), Some("rprivate")] {
        bundle.configure_with(&sh("echo ran"), |spec| match propagation {
            Some(p) => spec["linux"]["rootfsPropagation"] = json!(p),
            None => {
                if let Some(linux) = spec["linux"].as_object_mut() {
                    linux.remove("rootfsPropagation");
                }
            }
        });
        let script = "\"$0\" --root \"$1\" run --bundle \"$2\" shared-host || exit 90; \
                      grep \" $3/\" /proc/self/mountinfo && exit 91; exit 0";
        let out = finish(
            Command::new("unshare")
                .args([
                    "--mount",
                    "--propagation",
                    "shared",
                    "--",
                    "sh",
                    "-c",
                    script,
                ])
                .arg(env!("CARGO_BIN_EXE_peapod"))
                .arg(bundle.rootfs.state_root())
                .arg(bundle.arg())
                .arg(&rootfs)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn unshare"),
        );
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "ran\n"),
            "{propagation:?}: {out:?}"
        );
    }
    bundle.rootfs.assert_nothing_left();
}

#[test]
fn exec_takes_the_containers_oom_score_whatever_its_process_says() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    bundle.configure_with(&sh(UNTIL_GO), |spec| {
        spec["process"]["oomScoreAdj"] = json!(432);
    });
    let c = bundle.create("oom", &[]);
    c.start();
    let out = bundle.peapod(&["exec", "oom", "cat", "/proc/self/oom_score_adj"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "432", "{out:?}");
    // As runc: the container's score, also for a process file that says another.
    let process = bundle.dir().join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["cat", "/proc/self/oom_score_adj"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "oomScoreAdj": 7
        })
        .to_string(),
    )
    .expect("process.json");
    let path = process.to_str().expect("utf-8");
    let out = bundle.peapod(&["exec", "--process", path, "oom"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "432", "{out:?}");
    bundle.go();
    c.wait_for_status("stopped");
}

/// A process the test's container `id` left behind: alive (not a zombie) and still in the
/// container's cgroup, which a reused pid would not be. Killed on drop.
struct Leftover<'a>(&'a str, i32);

impl Leftover<'_> {
    fn runs(&self) -> bool {
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", self.1));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.1)).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split(' ').nth(1));
        cgroup.is_ok_and(|c| c.contains(&format!("/{}\n", self.0))) && state != Some("Z")
    }
}

impl Drop for Leftover<'_> {
    fn drop(&mut self) {
        if self.runs() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.1),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn kill_all_reaches_what_is_left_in_the_cgroup_of_a_stopped_container() {
    let Some(bundle) = Bundle::new() else {
        return;
    };
    // Without a PID namespace of its own, nothing kills what the first process started
    // when it exits (as in a pod sharing one): it stays in the container's cgroup.
    bundle.configure_with(
        &sh("sleep 600 & echo $! > /out/left.tmp; mv /out/left.tmp /out/left; exit 0"),
        |spec| {
            spec["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .retain(|ns| ns["type"] != "pid");
        },
    );
    let c = bundle.create("left", &[]);
    c.start();
    c.wait_for_status("stopped");
    let left = bundle.out().join("left");
    wait_until("the leftover's pid", || left.exists());
    let pid: i32 = std::fs::read_to_string(&left)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    let leftover = Leftover("left", pid);
    assert!(leftover.runs(), "the leftover runs");
    assert_eq!(
        c.kill("KILL").code,
        1,
        "the stopped first process: not running"
    );
    let out = bundle.peapod(&["kill", "--all", "left", "KILL"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the leftover to die", || !leftover.runs());
}

/// `peapod-oci` (what the clients exec) runs the five lifecycle commands itself and hands
/// everything else to `peapod` beside it: help and mistakes come out as `peapod`'s, word for
/// word; installed alone, its own commands work and any other fails in one line naming why.
#[test]
fn peapod_oci_hands_what_it_does_not_run_to_peapod_beside_it() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    for args in [
        &["--help"][..],
        &["kill", "--signal", "9", "web"],
        &["stat", "web"],
    ] {
        let oci = finish(support::peapod_oci().args(args).spawn().expect("spawn"));
        let full = finish(support::peapod().args(args).spawn().expect("spawn"));
        assert_eq!(
            (oci.code, &oci.stdout, &oci.stderr),
            (full.code, &full.stdout, &full.stderr),
            "{args:?}"
        );
    }
    let oci = lone_peapod_oci(rootfs.scratch(), &rootfs.state_root());
    let run = |args: &[&str]| finish(support::spawn_copied(oci(args)));
    let state = run(&["state", "web"]);
    assert_eq!(state.code, 1, "{state:?}");
    assert!(
        state.stderr.contains("container web does not exist"),
        "{state:?}"
    );
    let list = run(&["list"]);
    assert_eq!(list.code, 125, "{list:?}");
    assert!(
        list.stderr.contains("cannot run")
            && list
                .stderr
                .contains("peapod-oci hands every command but create"),
        "{list:?}"
    );

    // With `peapod` beside it but no `peapod-init` anywhere, it runs from a sealed copy of
    // itself (a memfd), and still finds `peapod` where it was started from: here to name the
    // field of a config.json that does not parse.
    let dir = rootfs.scratch().join("no-init");
    std::fs::create_dir_all(dir.join("bundle")).expect("mkdir");
    std::fs::copy(support::peapod_oci_bin(), dir.join("peapod-oci")).expect("copy");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_peapod"), dir.join("peapod")).expect("link");
    std::fs::write(dir.join("bundle/config.json"), r#"{"ociVersion": 1}"#).expect("config");
    let mut create = Command::new(dir.join("peapod-oci"));
    create
        .arg("--root")
        .arg(rootfs.state_root())
        .args(["create", "--bundle"])
        .arg(dir.join("bundle"))
        .arg("no-init")
        .env_remove("PEAPOD_INIT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = finish(support::spawn_copied(create));
    assert_failed(&out, 125, &["ociVersion"]);
    assert!(!out.stderr.contains("cannot run"), "{out:?}");
    rootfs.assert_nothing_left();
}
