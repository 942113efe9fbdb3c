//! Shared fixtures of the integration tests: a private copy of the test rootfs per test, a
//! `peapod` runner with a timeout, and the checks that nothing is left behind.
#![allow(dead_code)]

pub mod bundle;
pub mod image;
pub mod kill;
pub mod net;
pub mod pods;
pub mod tcp;
pub mod terminal;
pub mod user;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one container in these tests may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The rootfs `cargo xtask test` assembles (PEAPOD_TEST_ROOTFS), or `target/rootfs`.
fn base_rootfs() -> Option<PathBuf> {
    let dir = std::env::var_os("PEAPOD_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/rootfs"));
    dir.join("bin/sh").exists().then_some(dir)
}

/// A private copy of the test rootfs in a temporary directory, removed on drop.
pub struct TestRootfs {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestRootfs {
    /// The fixture, or `None` after printing why the test is skipped.
    pub fn new() -> Option<TestRootfs> {
        if !is_root() {
            eprintln!("skipped: this test creates namespaces and mounts and needs root");
            return None;
        }
        let Some(base) = base_rootfs() else {
            eprintln!("skipped: no test rootfs; run `cargo xtask rootfs` or `cargo xtask test`");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("peapod-test-")
            .tempdir()
            .expect("tempdir");
        // World-readable, so the rootless tests can use it as another uid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = dir.path().join("rootfs");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&base)
            .arg(&path)
            .status()
            .expect("cp");
        assert!(status.success(), "copying the rootfs failed");
        Some(TestRootfs { dir, path })
    }

    /// The temporary directory holding the rootfs, for other files of the test.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The state root of this test's containers.
    pub fn state_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `peapod --root STATE` for this test.
    pub fn peapod(&self) -> Command {
        let mut cmd = peapod();
        cmd.arg("--root").arg(self.state_root());
        cmd
    }

    /// [`peapod_oci`] with this test's state root.
    pub fn peapod_oci(&self) -> Command {
        let mut cmd = peapod_oci();
        cmd.arg("--root").arg(self.state_root());
        cmd
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// Fails when a mount under this test's directory, or a process rooted in it, is left.
    pub fn assert_nothing_left(&self) {
        let scratch = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&scratch)).collect();
        assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");
        let states = state_entries(&self.state_root());
        assert!(states.is_empty(), "container state left behind: {states:?}");
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let root = std::fs::read_link(entry.path().join("root"));
            if let Ok(root) = root {
                assert!(
                    !root.starts_with(self.dir.path()),
                    "process {} is still running in the test rootfs",
                    entry.file_name().to_string_lossy()
                );
            }
        }
    }
}

/// The entries of the state root `root`: containers (and `.pods`), but not the
/// compiled-filter cache, which is meant to outlive them.
pub fn state_entries(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".seccomp")
                .collect()
        })
        .unwrap_or_default()
}

/// What a finished `peapod` said.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn peapod() -> Command {
    piped(env!("CARGO_BIN_EXE_peapod"))
}

/// `peapod-oci`, the binary OCI clients exec: the lifecycle commands its own, the rest
/// handed to `peapod` beside it.
pub fn peapod_oci() -> Command {
    piped(peapod_oci_bin())
}

/// The `peapod-oci` the tests run: `$PEAPOD_OCI_BIN` when set (`cargo xtask test` sets it to
/// the static musl build that ships, without libseccomp, put beside the test build's
/// `peapod` as `peapod-oci-musl`), else the test build's own.
pub fn peapod_oci_bin() -> PathBuf {
    std::env::var_os("PEAPOD_OCI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_peapod-oci").into())
}

/// `program` reading nothing, its output piped.
fn piped(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `peapod run --rootfs ROOTFS EXTRA... -- CMD...`.
pub fn run_in(rootfs: &TestRootfs, extra: &[&str], cmd: &[&str]) -> Outcome {
    // The test's own state root: nothing of it (records, the seccomp cache) lands in the
    // host's /run/peapod.
    let mut command = rootfs.peapod();
    command
        .args(["run", "--rootfs", rootfs.arg()])
        .args(extra)
        .arg("--")
        .args(cmd);
    finish(command.spawn().expect("spawn peapod"))
}

/// A shell script in a container with default flags.
pub fn sh(rootfs: &TestRootfs, script: &str) -> Outcome {
    run_in(rootfs, &[], &["/bin/sh", "-c", script])
}

/// Deletes container `.1` of the test (`delete --force`) on drop, also when the test failed
/// midway: its record, cgroup and processes go with it.
pub struct Deleted<'a>(pub &'a TestRootfs, pub &'static str);

impl Drop for Deleted<'_> {
    fn drop(&mut self) {
        let delete = self
            .0
            .peapod()
            .args(["delete", "--force", self.1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = delete {
            if wait_with_timeout(&mut child, TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Waits for `child` at most [`TIMEOUT`], killing it (by its pid) when it takes longer.
pub fn finish(mut child: Child) -> Outcome {
    // Whatever the test did not take from the pipes is read here, on threads, so a chatty
    // process cannot block on a full pipe while we wait for it.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut s);
            }
            s
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_with_timeout(&mut child, TIMEOUT);
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("peapod did not finish within {TIMEOUT:?}");
    });
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Outcome {
        code,
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    }
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every 10 ms for at most [`TIMEOUT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The host PID of the container process: the (only) child of the peapod process `pid`.
pub fn container_pid(peapod_pid: u32) -> u32 {
    let path = format!("/proc/{peapod_pid}/task/{peapod_pid}/children");
    let mut found = 0;
    wait_until("the container process", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            Some(pid) => {
                found = pid;
                true
            }
            None => false,
        }
    });
    found
}

/// The `KEY=VALUE` lines of `text`, as a map.
pub fn facts(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The host's cgroup layout when it has every one of `controllers`, else `None` after saying
/// on stderr why the test is skipped.
pub fn cgroup_layout_with(controllers: &[&str]) -> Option<peapod_cgroups::Layout> {
    let Ok(layout) = peapod_cgroups::Layout::detect() else {
        eprintln!("skipped: no cgroup file system is mounted");
        return None;
    };
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| layout.hierarchy_of(c).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: the cgroup controllers {missing:?} are not available here");
        return None;
    }
    Some(layout)
}

/// The unprivileged user the rootless tests run peapod as.
pub const NOBODY: u32 = 65534;

/// `peapod --root STATE ARGS...` run as [`NOBODY`] (a copy of the binary it can reach, a
/// state root it owns, as `$XDG_RUNTIME_DIR` would be), finished; `None` (after saying why)
/// where user namespaces are disabled.
pub fn run_as_nobody(rootfs: &TestRootfs, args: &[&str]) -> Option<Outcome> {
    use std::os::unix::process::CommandExt;
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        eprintln!(
            "skipped: user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
        );
        return None;
    }
    let binary = rootfs.scratch().join("peapod");
    if !binary.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_peapod"), &binary).expect("copy peapod");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir(rootfs.state_root()).expect("state root");
        nix::unistd::chown(
            &rootfs.state_root(),
            Some(NOBODY.into()),
            Some(NOBODY.into()),
        )
        .expect("chown");
    }
    let mut child = Command::new(&binary);
    child
        .arg("--root")
        .arg(rootfs.state_root())
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir(rootfs.scratch())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = finish(spawn_copied(child));
    if out.code != 0 && out.stderr.contains("user namespaces are disabled") {
        eprintln!("skipped: {}", out.stderr.trim());
        return None;
    }
    Some(out)
}

/// Spawns `command`, whose program was just copied: another test's fork can still hold the
/// copy open for writing for a moment (until its exec), which `execve` refuses with
/// ETXTBSY; that is waited out, at most [`TIMEOUT`].
pub fn spawn_copied(mut command: Command) -> Child {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.expect("spawn"),
        }
    }
}

/// Builds `support/probe.c` (what a process inside a container tries against its host)
/// statically into `/probe` of the test's private rootfs; `None` after saying why when no C
/// compiler or static C library is there.
pub fn probe(rootfs: &TestRootfs) -> Option<&'static str> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/probe.c");
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(rootfs.path.join("probe"))
        .arg(&source)
        .stdin(Stdio::null())
        .output();
    match built {
        Ok(out) if out.status.success() => Some("/probe"),
        Ok(out) => {
            eprintln!(
                "skipped: cannot build the static probe (cc -static): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("skipped: no C compiler (cc) to build the probe: {e}");
            None
        }
    }
}
