//! `peapod run` as an ordinary user: a user namespace maps the caller to root inside.

mod support;

use support::{facts, TestRootfs};

#[test]
fn rootless_run_maps_the_caller_to_root_inside() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script = "echo pid=$$; echo uid=$(id -u); echo map=$(cat /proc/self/uid_map); \
                  echo host=$(hostname); echo user=$(readlink /proc/self/ns/user); \
                  echo net=$(readlink /proc/self/ns/net); ls /sys/class/net";
    let args = [
        "run",
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        script,
    ];
    let Some(out) = support::run_as_nobody(&rootfs, &args) else {
        return;
    };
    assert_eq!(out.code, 0, "{out:?}");
    let inside = facts(&out.stdout);
    assert_eq!(inside["pid"], "1");
    assert_eq!(inside["uid"], "0");
    let map: Vec<&str> = inside["map"].split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"]);
    assert_eq!(inside["host"], "peapod");
    let own = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .expect("ns")
            .display()
            .to_string()
    };
    assert_ne!(inside["user"], own("user"));
    assert_ne!(inside["net"], own("net"));
    assert!(out.stdout.lines().any(|l| l == "lo"), "{out:?}");
    rootfs.assert_nothing_left();
}

/// A detached rootless container of a test: on drop (also when the test fails) it is deleted
/// as the user who made it, and its process, when known and still in the test's rootfs, is
/// killed by its pid.
struct Detached<'a> {
    rootfs: &'a TestRootfs,
    name: &'a str,
    pid: std::cell::Cell<Option<i32>>,
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a failed test unwinds.
        let _ = std::panic::catch_unwind(|| {
            support::run_as_nobody(self.rootfs, &["delete", "--force", self.name])
        });
        if let Some(pid) = self.pid.get() {
            let root = std::fs::read_link(format!("/proc/{pid}/root"));
            if root.is_ok_and(|r| r.starts_with(self.rootfs.scratch())) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[test]
fn rootless_exec_joins_the_containers_user_namespace_and_the_others() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let name = "rootless-exec";
    let container = Detached {
        rootfs: &rootfs,
        name,
        pid: std::cell::Cell::new(None),
    };
    // The shell lets go of peapod's pipes before it waits, so `run -d` is finished at once.
    let args = [
        "run",
        "--detach",
        "--name",
        name,
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        "exec sleep 60 >/dev/null 2>&1",
    ];
    let Some(out) = support::run_as_nobody(&rootfs, &args) else {
        return;
    };
    assert_eq!(out.code, 0, "{out:?}");
    let state = support::run_as_nobody(&rootfs, &["state", name]).expect("state");
    assert_eq!(state.code, 0, "{state:?}");
    let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("state JSON");
    let pid = i32::try_from(state["pid"].as_i64().expect("pid")).expect("pid fits");
    container.pid.set(Some(pid));

    let script = "echo uid=$(id -u); echo user=$(readlink /proc/self/ns/user); \
                  echo pid=$(readlink /proc/self/ns/pid); echo mnt=$(readlink /proc/self/ns/mnt); \
                  echo net=$(readlink /proc/self/ns/net); echo host=$(hostname)";
    let exec =
        support::run_as_nobody(&rootfs, &["exec", name, "/bin/sh", "-c", script]).expect("exec");
    assert_eq!(exec.code, 0, "{exec:?}");
    let inside = facts(&exec.stdout);
    assert_eq!(inside["uid"], "0", "{exec:?}");
    let theirs = |ns: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
            .expect("ns")
            .display()
            .to_string()
    };
    for ns in ["user", "pid", "mnt", "net"] {
        assert_eq!(inside[ns], theirs(ns), "{ns}: {exec:?}");
    }
    assert_eq!(inside["host"], name, "the host name given by --name");
    drop(container);
    rootfs.assert_nothing_left();
}
