//! `peapod run` as an ordinary user: a user namespace maps the caller to root inside.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use support::{facts, finish, TestRootfs};

const NOBODY: u32 = 65534;

#[test]
fn rootless_run_maps_the_caller_to_root_inside() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        eprintln!(
            "skipped: user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
        );
        return;
    }
    // The unprivileged user must reach the binary: copy it next to the rootfs.
    let binary = rootfs.scratch().join("peapod");
    // The state root must belong to the unprivileged user, as $XDG_RUNTIME_DIR would.
    std::fs::create_dir(rootfs.state_root()).expect("state root");
    nix::unistd::chown(
        &rootfs.state_root(),
        Some(NOBODY.into()),
        Some(NOBODY.into()),
    )
    .expect("chown");
    std::fs::copy(env!("CARGO_BIN_EXE_peapod"), &binary).expect("copy peapod");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = "echo pid=$$; echo uid=$(id -u); echo map=$(cat /proc/self/uid_map); \
                  echo host=$(hostname); echo user=$(readlink /proc/self/ns/user); \
                  echo net=$(readlink /proc/self/ns/net); ls /sys/class/net";
    let child = Command::new(&binary)
        .args([
            "run",
            "--rootfs",
            rootfs.arg(),
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir(rootfs.scratch())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn as nobody");
    let out = finish(child);
    if out.code != 0 && out.stderr.contains("user namespaces are disabled") {
        eprintln!("skipped: {}", out.stderr.trim());
        return;
    }
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
