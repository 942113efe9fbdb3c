//! podman drives peapod as its OCI runtime (`podman --runtime`, the `peapod-oci` binary as
//! docs/runtime.md tells users), as users run it: the behaviour podman relies on that runc
//! has, checked through podman itself.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{finish, Outcome, TestRootfs};

/// A private podman: its own storage (vfs, so it makes no mounts), run root and config, and
/// peapod as its runtime. Its directory goes with it.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// The podman of this test, or `None` (after saying why) where podman is missing.
    fn new(rootfs: &TestRootfs) -> Option<Podman> {
        if Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            eprintln!("skipped: podman is not installed (apt-get install podman)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("peapod-podman-")
            .tempdir()
            .expect("tempdir");
        // Root here has no CAP_SYS_RESOURCE (a container of its own), so podman's default
        // RLIMIT_NOFILE above the hard limit would fail with runc as with peapod.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .expect("containers.conf");
        // peapod finds the static peapod-init it execs entrypoints through in PEAPOD_INIT,
        // which conmon does not pass on, and podman gives no --root (peapod's would be the
        // host's /run/peapod): a wrapper sets both.
        let init = std::env::var("PEAPOD_INIT").unwrap_or_default();
        let wrapper = dir.path().join("peapod-runtime");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nPEAPOD_INIT='{init}' exec '{}' --root '{}' \"$@\"\n",
                support::peapod_oci_bin().display(),
                dir.path().join("peapod-state").display()
            ),
        )
        .expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let podman = Podman { dir };
        let tar = podman.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs.path)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success(), "tar of the test rootfs");
        let out = podman.run(&[
            "import",
            tar.to_str().expect("utf-8"),
            "localhost/peapod-test:1",
        ]);
        assert_eq!(out.code, 0, "podman import: {out:?}");
        Some(podman)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Outcome {
        finish(self.command(args).spawn().expect("spawn podman"))
    }

    /// `podman ARGS...` with `input` on its stdin, kept open until podman ends.
    fn run_with_input(&self, args: &[&str], input: &str) -> Outcome {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn podman");
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, input.as_bytes()).expect("write stdin");
        let out = finish(child);
        drop(stdin);
        out
    }

    fn command(&self, args: &[&str]) -> Command {
        let dir = self.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args(["--storage-driver", "vfs", "--runtime"])
            .arg(dir.join("peapod-runtime"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `podman run --rm --network none FLAGS IMAGE CMD...`.
    fn run_container(&self, flags: &[&str], cmd: &[&str]) -> Outcome {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(flags);
        args.push("localhost/peapod-test:1");
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// peapod's state root for this podman's containers.
    fn peapod_state(&self) -> PathBuf {
        self.path().join("peapod-state")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Anything a failed test left running goes with the storage.
        let _ = self.run(&["rm", "--all", "--force"]);
    }
}

#[test]
fn podman_read_only_and_memory_limits_work_through_peapod() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(podman) = Podman::new(&rootfs) else {
        return;
    };
    // `--read-only` asks for tmpfs mounts with `tmpcopyup` on /tmp, /var/tmp and /run.
    let out = podman.run_container(
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /tmp/x && echo tmp-writable; touch /x 2>/dev/null || echo root-ro",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "tmp-writable\nroot-ro\n", "{out:?}");

    // On cgroup v1 podman gives no cgroup namespace: /sys/fs/cgroup must still show the
    // container its own limits.
    let layout = peapod_cgroups::Layout::detect().expect("cgroup layout");
    let file = match layout.is_v2() {
        true => "/sys/fs/cgroup/memory.max",
        false => "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    };
    let out = podman.run_container(&["--memory", "64m"], &["cat", file]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "67108864", "{out:?}");

    assert!(podman.peapod_state().is_dir(), "podman did not run peapod");
    let left = support::state_entries(&podman.peapod_state());
    assert!(
        left.is_empty(),
        "peapod state left by podman --rm: {left:?}"
    );
}

#[test]
fn podman_exec_keeps_the_stdio_conmon_gives_peapod() {
    // conmon runs runc's argv (`exec --process FILE --detach ...`, with --console-socket
    // for -t) and hands the process its stdio as peapod's own descriptors: peapod must not
    // put /dev/null in their place as its own `exec` without -i does.
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(podman) = Podman::new(&rootfs) else {
        return;
    };
    let out = podman.run(&[
        "run",
        "-d",
        "--name",
        "exec-target",
        "--network",
        "none",
        "localhost/peapod-test:1",
        "sleep",
        "600",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = podman.run_with_input(&["exec", "-i", "exec-target", "head", "-n", "1"], "hi\n");
    assert_eq!((out.code, out.stdout.as_str()), (0, "hi\n"), "{out:?}");
    let out = podman.run(&["exec", "-t", "exec-target", "tty"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("/dev/pts/"), "{out:?}");
    let out = podman.run(&["rm", "--force", "--time", "0", "exec-target"]);
    assert_eq!(out.code, 0, "{out:?}");
}
