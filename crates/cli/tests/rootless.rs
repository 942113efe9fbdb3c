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
