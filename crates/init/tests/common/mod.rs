//! Helpers shared by the integration tests: locating the binary, running
//! processes with a deadline, and root detection.
//!
//! Every wait has a deadline. On timeout the helper kills the process it
//! started (by pid, never by name) and fails the test, so nothing can hang.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test. `PEAPOD_INIT_BIN` overrides it, which allows
/// running this suite against the freestanding `dist` build.
pub fn bin() -> PathBuf {
    std::env::var_os("PEAPOD_INIT_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_peapod-init")),
        PathBuf::from,
    )
}

/// True when running as root; otherwise prints why the test is skipped.
pub fn root_or_skip(test: &str) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        eprintln!("{test}: skipped: needs root (for a PID namespace)");
    }
    root
}

/// A fresh scratch directory for one test, removed (with everything in it) on drop, so that
/// a run of the suite leaves nothing in the temporary directory, failed or not.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory for one test (see [`Scratch`]).
pub fn scratch(test: &str) -> Scratch {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("peapod-init-{test}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    Scratch(dir)
}

/// A process started by a test, with stdout and stderr going to files (so
/// that leftover grandchildren holding them open cannot block the test).
pub struct Proc {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code; fails the test if the process was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }
}

/// Starts `cmd` with stdin from /dev/null (so the child never takes over
/// the terminal the tests run in) and output captured in `dir`.
pub fn start(mut cmd: Command, dir: &Path) -> Proc {
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout file"))
        .stderr(fs::File::create(&err).expect("stderr file"));
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    Proc { child, out, err }
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the process to exit, for at most `secs` seconds; on timeout
    /// kills it and fails.
    pub fn finish(mut self, secs: u64) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Finished {
                        status,
                        stdout: fs::read_to_string(&self.out).unwrap_or_default(),
                        stderr: fs::read_to_string(&self.err).unwrap_or_default(),
                    }
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    self.kill_tree();
                    panic!(
                        "timed out after {secs}s; stdout: {:?} stderr: {:?}",
                        fs::read_to_string(&self.out).unwrap_or_default(),
                        fs::read_to_string(&self.err).unwrap_or_default()
                    );
                }
                Err(e) => panic!("try_wait: {e}"),
            }
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }
}

impl Proc {
    /// Kills the process and every descendant it has, by their pids, and reaps it.
    ///
    /// peapod-init puts its child in a process group of its own, so the group of the
    /// process is not enough; and a descendant whose parent died first would be re-parented
    /// out of reach. So the whole tree is stopped first (again until no new process shows
    /// up: a stopped process cannot fork), then killed.
    fn kill_tree(&mut self) {
        let mut tree = vec![self.pid()];
        for _ in 0..100 {
            send(&tree, "STOP");
            let new: Vec<i32> = descendants(self.pid())
                .into_iter()
                .filter(|pid| !tree.contains(pid))
                .collect();
            if new.is_empty() {
                break;
            }
            tree.extend(new);
        }
        send(&tree, "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A test that fails midway must leave neither its process nor anything it started
        // (a shell polling for a file the test never made) running.
        if let Ok(None) = self.child.try_wait() {
            self.kill_tree();
        }
    }
}

/// The pids of every process below `pid` (children of each of its threads, recursively).
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !found.contains(&child) {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

/// `kill -SIG PID...`, ignoring processes that are gone: for clean-up, which must not fail.
fn send(pids: &[i32], sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(ToString::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends signal `sig` to `pid` with kill(1): the tests need no libc binding.
pub fn signal(pid: i32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Polls `f` every few milliseconds until it returns `Some`, failing after
/// `secs` seconds with `what`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `peapod-init ARGS...`.
pub fn init(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    cmd
}

/// `unshare --pid --fork --mount-proc --kill-child peapod-init ARGS...`:
/// peapod-init as PID 1 of a new PID namespace. `--kill-child` makes a
/// timeout's kill of unshare take the namespace down with it.
pub fn init_as_pid1(args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(bin())
        .args(args);
    cmd
}

/// A field of /proc/PID/status, e.g. "PPid" or "State".
pub fn proc_status(pid: i32, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
}
