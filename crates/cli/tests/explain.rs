//! `peapod explain` says what the kernel says: each claim is checked against `/proc` read
//! here, for a plain container, a `--share` one, pods with and without a shared PID
//! namespace, and a stopped container.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::Value;
use support::pods::Pods;
use support::{finish, wait_until, Outcome, TestRootfs};

/// The inode of each namespace of `pid`, by kind, as `readlink /proc/PID/ns/*` gives it.
fn namespaces_of(pid: i64) -> BTreeMap<String, u64> {
    std::fs::read_dir(format!("/proc/{pid}/ns"))
        .expect("/proc/PID/ns")
        .flatten()
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let link = link.to_str()?.to_owned();
            let inode = link.split_once('[')?.1.trim_end_matches(']').parse().ok()?;
            let kind = e.file_name().to_str()?.to_owned();
            (!kind.ends_with("_for_children")).then_some((kind, inode))
        })
        .collect()
}

/// `peapod explain --format json TARGET`, which must succeed.
fn explain(rootfs: &TestRootfs, target: &str) -> Value {
    let out = peapod(rootfs, &["explain", "--format", "json", target]);
    assert_eq!(out.code, 0, "explain {target}: {out:?}");
    serde_json::from_str(&out.stdout).expect("explain JSON")
}

fn peapod(rootfs: &TestRootfs, args: &[&str]) -> Outcome {
    finish(rootfs.peapod().args(args).spawn().expect("spawn peapod"))
}

/// Whose the namespace `kind` is in a container report: `own`, `host`, or the peers.
fn whose(report: &Value, kind: &str) -> String {
    let row = report["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["kind"] == kind)
        .unwrap_or_else(|| panic!("{kind} in {report:#}"));
    match row["owner"]["whose"].as_str().expect("whose") {
        "shared" => format!("shared:{}", row["owner"]["with"]),
        other => other.to_owned(),
    }
}

/// Checks every namespace inode of the report against `/proc/PID/ns` of its process.
fn assert_inodes_match_the_kernel(report: &Value) {
    let pid = report["pid"].as_i64().expect("pid");
    let kernel = namespaces_of(pid);
    for row in report["namespaces"].as_array().expect("namespaces") {
        let kind = row["kind"].as_str().expect("kind");
        assert_eq!(
            Some(row["inode"].as_u64().expect("inode")),
            kernel.get(kind).copied(),
            "{kind}: {report:#}"
        );
    }
}

/// `run --detach --rootfs ... --name ID EXTRA -- CMD`; deleted by [`Detached`]'s drop.
struct Detached<'a> {
    rootfs: &'a TestRootfs,
    id: String,
}

impl<'a> Detached<'a> {
    fn run(rootfs: &'a TestRootfs, id: &str, extra: &[&str], cmd: &[&str]) -> Detached<'a> {
        let guard = Detached {
            rootfs,
            id: id.to_owned(),
        };
        let mut run = rootfs.peapod();
        run.args(["run", "--detach", "--rootfs", rootfs.arg(), "--name", id])
            .args(extra)
            .arg("--")
            .args(cmd)
            // The container keeps what it inherits: no pipe the test would wait on.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let out = finish(run.spawn().expect("spawn run"));
        assert_eq!(out.code, 0, "run --detach {id}");
        guard
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = peapod(self.rootfs, &["delete", "--force", &self.id]);
    }
}

#[test]
fn a_plain_container_is_explained_as_the_kernel_has_it() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let c = Detached::run(
        &rootfs,
        "ex-plain",
        &["--memory", "64m"],
        &["sh", "-c", "sleep 60 & exec sleep 61"],
    );
    // The shell forks and execs after `run -d` has returned: wait until both are there.
    let mut report = Value::Null;
    wait_until("the container's two processes", || {
        report = explain(&rootfs, "ex-plain");
        report["processes"].as_array().is_some_and(|p| {
            p.len() == 2
                && p.iter().all(|p| {
                    p["command"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("sleep"))
                })
        })
    });
    assert_inodes_match_the_kernel(&report);
    for kind in ["mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        assert_eq!(whose(&report, kind), "own", "{kind}");
    }
    assert_eq!(whose(&report, "user"), "host", "no user namespace as root");
    // Its processes with their PIDs inside, as NSpid says: the entrypoint is PID 1.
    let pid = report["pid"].as_i64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid");
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
    let processes = report["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 2, "{report:#}");
    assert!(processes
        .iter()
        .any(|p| p["pid"] == pid && p["pid_inside"] == 1));
    assert_eq!(report["limits"]["memory_limit"], 64 * 1024 * 1024);
    assert_eq!(report["root"], rootfs.arg());
    assert_eq!(report["interfaces"], serde_json::json!(["lo"]));
    assert_eq!(report["no_new_privs"], true);
    let capabilities = report["capabilities"]["bounding"].as_array().expect("caps");
    assert_eq!(capabilities.len(), 14, "Docker's default set: {report:#}");

    let text = peapod(&rootfs, &["explain", "--why", "ex-plain"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("PID 1 of its own PID namespace"),
        "{text:?}"
    );
    assert!(text.stdout.contains("its own network stack"), "{text:?}");
    drop(c);
    rootfs.assert_nothing_left();
}

#[test]
fn a_shared_namespace_is_the_hosts() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let c = Detached::run(
        &rootfs,
        "ex-share",
        &["--share", "ipc,uts"],
        &["sleep", "60"],
    );
    let report = explain(&rootfs, "ex-share");
    assert_inodes_match_the_kernel(&report);
    assert_eq!(whose(&report, "ipc"), "host");
    assert_eq!(whose(&report, "uts"), "host");
    assert_eq!(whose(&report, "net"), "own");
    drop(c);
    rootfs.assert_nothing_left();
}

#[test]
fn a_stopped_container_gets_one_clear_line() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let c = Detached::run(&rootfs, "ex-stopped", &[], &["true"]);
    wait_until("the container to stop", || {
        let out = peapod(&rootfs, &["state", "ex-stopped"]);
        out.stdout.contains("\"stopped\"")
    });
    let out = peapod(&rootfs, &["explain", "ex-stopped"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("container ex-stopped is stopped"),
        "{out:?}"
    );
    let out = peapod(&rootfs, &["explain", "no-such-thing"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr
            .contains("no container or pod is named no-such-thing"),
        "{out:?}"
    );
    drop(c);
    rootfs.assert_nothing_left();
}

#[test]
fn pods_show_who_shares_what_with_and_without_a_shared_pid_namespace() {
    let Some(mut pods) = Pods::new() else {
        return;
    };
    for (pod, share_pid) in [("ex-pod", false), ("ex-pidpod", true)] {
        let extra: &[&str] = if share_pid {
            &["--share", "net,ipc,uts,pid"]
        } else {
            &[]
        };
        pods.create(pod, extra);
        let rootfs = pods.rootfs.path.clone();
        for member in ["a", "b"] {
            let name = format!("{pod}-{member}");
            let out = pods.run(
                pod,
                &rootfs,
                &["--name", &name, "--detach"],
                "exec sleep 60",
            );
            assert_eq!(out.code, 0, "{out:?}");
        }
        let report = explain(&pods.rootfs, pod);
        let rows = report["members"].as_array().expect("members");
        assert_eq!(rows.len(), 3, "infra and two members: {report:#}");
        let infra_pid = report["infra_pid"].as_i64().expect("infra runs");
        let pinned = report["pinned"].as_object().expect("pinned");
        let kernel = namespaces_of(infra_pid);
        for (kind, inode) in pinned {
            assert_eq!(inode.as_u64(), kernel.get(kind).copied(), "{kind}");
        }
        for row in rows {
            let ns = &row["namespaces"];
            for kind in ["net", "ipc", "uts"] {
                assert_eq!(ns[kind], "pod", "{kind} of {row}");
            }
            // Without a shared PID namespace the infra process stays in the host's.
            let pid_whose = match (share_pid, row["name"] == "infra") {
                (true, _) => "pod",
                (false, true) => "host",
                (false, false) => "own",
            };
            assert_eq!(ns["pid"], pid_whose, "pid of {row}");
            if row["name"] != "infra" {
                assert_eq!(ns["mnt"], "own", "each keeps its own mounts: {row}");
            }
        }
        // A member's own report names the others it shares with, and agrees with /proc.
        let member = explain(&pods.rootfs, &format!("{pod}-a"));
        assert_inodes_match_the_kernel(&member);
        let net = whose(&member, "net");
        assert!(
            net.contains(&format!("{pod}-b")) && net.contains("infra"),
            "{net}"
        );
        let pid = whose(&member, "pid");
        assert_eq!(pid.starts_with("shared"), share_pid, "{pid}");
    }
    pods.remove_all();
}
