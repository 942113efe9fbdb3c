//! Pods: containers that share the network, IPC, UTS (and with `--share ...,pid` the PID)
//! namespaces of an infra process, each with its own rootfs; `pod ps`, `pod rm`, and
//! Kubernetes manifests with `pod play`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{finish, wait_until, Outcome, TestRootfs};

/// The static peapod-init `cargo xtask test` builds, or `None` after saying why we skip.
fn static_init() -> Option<PathBuf> {
    let init = std::env::var_os("PEAPOD_INIT_BIN").map(PathBuf::from);
    if init.is_none() {
        eprintln!("skipped: PEAPOD_INIT_BIN is not set (`cargo xtask test` builds the static peapod-init and sets it)");
    }
    init
}

/// A test's rootfs and init, and the pods it made: removed (`pod rm -f`) on drop, so a
/// failing test leaves nothing either.
struct Pods {
    rootfs: TestRootfs,
    init: PathBuf,
    names: Vec<String>,
}

impl Pods {
    fn new() -> Option<Pods> {
        let (Some(rootfs), Some(init)) = (TestRootfs::new(), static_init()) else {
            return None;
        };
        Some(Pods {
            rootfs,
            init,
            names: Vec::new(),
        })
    }

    /// `peapod --root STATE ARGS...`, finished within the timeout.
    fn peapod(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.rootfs.peapod();
        cmd.args(args);
        finish(cmd.spawn().expect("spawn peapod"))
    }

    /// `peapod pod create` with the test's init; the pod is removed on drop.
    fn create(&mut self, name: &str, extra: &[&str]) {
        self.names.push(name.to_owned());
        let init = self.init.display().to_string();
        let mut args = vec!["pod", "create", "--init-path", &init];
        args.extend(extra);
        args.push(name);
        let out = self.peapod(&args);
        assert_eq!(out.code, 0, "pod create {name}: {out:?}");
    }

    /// `peapod run --pod POD --rootfs ROOTFS EXTRA... -- sh -c SCRIPT`.
    fn run(&self, pod: &str, rootfs: &Path, extra: &[&str], script: &str) -> Outcome {
        let rootfs = rootfs.display().to_string();
        let mut args = vec!["run", "--pod", pod, "--rootfs", &rootfs];
        args.extend(extra);
        args.extend(["--", "/bin/sh", "-c", script]);
        self.peapod(&args)
    }

    fn ps_json(&self, pod: &str) -> serde_json::Value {
        let out = self.peapod(&["pod", "ps", "--format", "json", pod]);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).expect("pod ps json")
    }

    fn logs(&self, pod: &str, container: &str) -> String {
        let out = self.peapod(&["pod", "logs", pod, container]);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
    }

    /// Removes every pod made and checks that nothing at all is left.
    fn remove_all(&mut self) {
        for name in std::mem::take(&mut self.names) {
            let out = self.peapod(&["pod", "rm", "-f", &name]);
            assert_eq!(out.code, 0, "pod rm -f {name}: {out:?}");
        }
        self.rootfs.assert_nothing_left();
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.names) {
            let _ = self.peapod(&["pod", "rm", "-f", &name]);
        }
    }
}

/// A second root filesystem: a copy of the test rootfs with a marker file of its own.
fn second_rootfs(pods: &Pods) -> PathBuf {
    let path = pods.rootfs.scratch().join("rootfs2");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&pods.rootfs.path)
        .arg(&path)
        .status()
        .expect("cp");
    assert!(status.success());
    std::fs::write(path.join("marker-b"), "b\n").expect("marker");
    std::fs::write(pods.rootfs.path.join("marker-a"), "a\n").expect("marker");
    path
}

/// The host's `ipcmk` (util-linux) with its libraries copied into `rootfs`: busybox has no
/// SysV IPC tools. `false` after saying why, when the host has none.
fn install_ipcmk(rootfs: &Path) -> bool {
    let Some(ipcmk) = ["/usr/bin/ipcmk", "/bin/ipcmk"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        eprintln!("skipped: no ipcmk on the host (util-linux) to make a SysV segment with");
        return false;
    };
    let ldd = Command::new("ldd").arg(ipcmk).output().expect("ldd");
    let libs = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| {
            l.split("=>")
                .last()?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .filter(|p| p.starts_with('/'))
        .collect::<Vec<_>>();
    for file in libs
        .iter()
        .map(String::as_str)
        .chain([ipcmk.to_str().expect("utf-8")])
    {
        let dest = rootfs.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(file, &dest).expect("copy");
    }
    true
}

#[test]
fn containers_in_a_pod_talk_over_localhost_and_others_cannot() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("net", &[]);
    let rootfs = pods.rootfs.path.clone();
    let server = pods.peapod(&[
        "run",
        "--pod",
        "net",
        "--rootfs",
        pods.rootfs.arg(),
        "--name",
        "server",
        "--detach",
        "--",
        "/bin/nc",
        "-ll",
        "-p",
        "7777",
        "-e",
        "/bin/echo",
        "hello-from-server",
    ]);
    assert_eq!(server.code, 0, "{server:?}");
    // The client retries until the server listens.
    let client = pods.run(
        "net",
        &rootfs,
        &[],
        "i=0; while [ $i -lt 200 ]; do nc 127.0.0.1 7777 </dev/null && exit 0; i=$((i+1)); sleep 0.05; done; exit 1",
    );
    assert_eq!(client.code, 0, "{client:?}");
    assert_eq!(client.stdout.trim(), "hello-from-server");
    // The server still listens, but not in this container's network namespace.
    let outside = support::run_in(
        &pods.rootfs,
        &[],
        &["/bin/sh", "-c", "nc 127.0.0.1 7777 </dev/null"],
    );
    assert_ne!(outside.code, 0, "{outside:?}");
    assert!(outside.stderr.contains("refused"), "{outside:?}");
    pods.remove_all();
}

#[test]
fn a_pod_shares_ipc_and_hostname_but_not_root_filesystems() {
    let Some(mut pods) = Pods::new() else { return };
    if !install_ipcmk(&pods.rootfs.path) {
        return;
    }
    let rootfs_b = second_rootfs(&pods);
    pods.create("ipc", &["--hostname", "podhost"]);
    let a = pods.run(
        "ipc",
        &pods.rootfs.path,
        &["--name", "a"],
        "ipcmk -M 4096 >/dev/null && awk 'NR>1 {print \"key=\" $1}' /proc/sysvipc/shm; echo host=$(hostname); ls / | grep marker",
    );
    assert_eq!(a.code, 0, "{a:?}");
    let facts = support::facts(&a.stdout);
    let key = facts.get("key").expect("a segment").clone();
    assert_ne!(key, "0", "{a:?}");
    assert_eq!(facts["host"], "podhost");
    assert!(
        a.stdout.contains("marker-a") && !a.stdout.contains("marker-b"),
        "{a:?}"
    );
    let b = pods.run(
        "ipc",
        &rootfs_b,
        &["--name", "b"],
        "cat /proc/sysvipc/shm; echo host=$(hostname); ls / | grep marker",
    );
    assert_eq!(b.code, 0, "{b:?}");
    // The segment A made (and left) is in B's IPC namespace, and not in the host's.
    let in_b = b
        .stdout
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next() == Some(&key));
    assert!(in_b, "key {key} not in B: {b:?}");
    let host = std::fs::read_to_string("/proc/sysvipc/shm").expect("host shm");
    assert!(
        !host
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&key)),
        "key {key} on the host"
    );
    assert_eq!(support::facts(&b.stdout)["host"], "podhost");
    assert!(
        b.stdout.contains("marker-b") && !b.stdout.contains("marker-a"),
        "{b:?}"
    );
    pods.remove_all();
}

#[test]
fn with_a_shared_pid_namespace_infra_is_pid_1_and_reaps_orphans() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("pids", &["--share", "net,ipc,uts,pid"]);
    // A's shell leaves an orphan: its parent exits at once.
    let a = pods.peapod(&[
        "run",
        "--pod",
        "pids",
        "--rootfs",
        pods.rootfs.arg(),
        "--name",
        "a",
        "--detach",
        "--",
        "/bin/sh",
        "-c",
        "sh -c 'sleep 2 & echo orphan=$!'; exec sleep 100",
    ]);
    assert_eq!(a.code, 0, "{a:?}");
    let mut orphan = String::new();
    wait_until("the orphan's pid in the log", || {
        orphan = support::facts(&pods.logs("pids", "a"))
            .get("orphan")
            .cloned()
            .unwrap_or_default();
        !orphan.is_empty()
    });
    let b = pods.run(
        "pids",
        &pods.rootfs.path,
        &[],
        &format!(
            "echo init=$(tr '\\0' ' ' < /proc/1/cmdline); grep PPid /proc/{orphan}/status; ps -o pid,args | grep -c '[s]leep 100'"
        ),
    );
    assert_eq!(b.code, 0, "{b:?}");
    assert!(b.stdout.contains("init=/pause -P"), "{b:?}");
    // Adopted by the infra process, PID 1 of the pod.
    assert!(b.stdout.contains("PPid:\t1"), "{b:?}");
    // B sees A's processes.
    assert!(b.stdout.trim_end().ends_with('1'), "{b:?}");
    // Once it has exited, it is reaped: no zombie is left.
    let c = pods.run(
        "pids",
        &pods.rootfs.path,
        &[],
        &format!("sleep 2.5; test -e /proc/{orphan} && cat /proc/{orphan}/stat; ps -o stat | grep -c Z; true"),
    );
    assert_eq!(c.stdout.trim(), "0", "{c:?}");
    pods.remove_all();
}

#[test]
fn pod_rm_force_leaves_no_process_mount_namespace_or_state() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("gone", &["--share", "net,ipc,uts,pid", "--label", "app=x"]);
    for name in ["one", "two"] {
        let out = pods.peapod(&[
            "run",
            "--pod",
            "gone",
            "--rootfs",
            pods.rootfs.arg(),
            "--name",
            name,
            "--detach",
            "--",
            "/bin/sleep",
            "100",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let ps = pods.ps_json("gone");
    assert_eq!(ps["status"], "running", "{ps}");
    let containers = ps["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2, "{ps}");
    assert!(containers
        .iter()
        .all(|c| c["status"] == "running" && c["pid"].as_i64() > Some(0)));
    let net = ps["namespaces"]["net"].as_u64().expect("net inode");
    let list = pods.peapod(&["pod", "list"]);
    assert!(
        list.stdout.contains("gone") && list.stdout.contains("running"),
        "{list:?}"
    );
    // Running: plain rm refuses.
    let rm = pods.peapod(&["pod", "rm", "gone"]);
    assert_eq!(rm.code, 125, "{rm:?}");
    assert!(rm.stderr.contains("is running"), "{rm:?}");
    pods.remove_all();
    // No process holds the pod's network namespace.
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) {
            use std::os::unix::fs::MetadataExt;
            assert_ne!(
                meta.ino(),
                net,
                "process {:?} is in the pod's netns",
                entry.file_name()
            );
        }
    }
}

#[test]
fn a_pod_whose_infra_process_died_is_failed_and_rm_still_cleans_up() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("dead", &[]);
    let out = pods.peapod(&[
        "run",
        "--pod",
        "dead",
        "--rootfs",
        pods.rootfs.arg(),
        "--name",
        "c",
        "--detach",
        "--",
        "/bin/sleep",
        "100",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let infra = pods.ps_json("dead")["infra_pid"]
        .as_i64()
        .expect("infra pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(infra),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill infra");
    wait_until("the pod to be failed", || {
        pods.ps_json("dead")["status"] == "failed"
    });
    let run = pods.run("dead", &pods.rootfs.path, &[], "true");
    assert_eq!(run.code, 125, "{run:?}");
    assert!(run.stderr.contains("pod dead is failed"), "{run:?}");
    // Not running: no --force needed.
    let rm = pods.peapod(&["pod", "rm", "dead"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}

const MANIFEST: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: played
  labels: {app: demo}
spec:
  restartPolicy: OnFailure
  volumes:
  - name: shared
    emptyDir: {}
  initContainers:
  - name: prepare
    image: ROOTFS
    command: [/bin/sh, -c, 'echo made-by-init > /data/msg']
    volumeMounts: [{name: shared, mountPath: /data}]
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c]
    args: ['cat /data/msg; exec sleep 100']
    resources: {limits: {memory: 64Mi}}
    volumeMounts: [{name: shared, mountPath: /data, readOnly: true}]
  - name: flaky
    image: ROOTFS
    command: [/bin/sh, -c, 'echo attempt; exit 3']
";

#[test]
fn pod_play_runs_init_containers_first_and_restarts_on_failure() {
    let Some(mut pods) = Pods::new() else { return };
    let file = pods.rootfs.scratch().join("pod.yaml");
    std::fs::write(&file, MANIFEST.replace("ROOTFS", pods.rootfs.arg())).expect("manifest");
    let init = pods.init.display().to_string();
    let file_arg = file.display().to_string();
    pods.names.push("played".into());
    let play = pods.peapod(&["pod", "play", "--init-path", &init, &file_arg]);
    assert_eq!(play.code, 0, "{play:?}");
    assert!(
        play.stderr
            .contains("spec.containers[0].resources: ignored"),
        "{play:?}"
    );
    wait_until("main's output", || {
        pods.logs("played", "main").contains("made-by-init")
    });
    // OnFailure: the failing container comes back, with back-off (0.1 s, 0.2 s, ...).
    wait_until("two restarts", || {
        let ps = pods.ps_json("played");
        let flaky = ps["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == "flaky")
            .cloned();
        flaky.is_some_and(|f| f["restarts"].as_u64() >= Some(2))
    });
    let ps = pods.ps_json("played");
    let by_name = |n: &str| {
        ps["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["name"] == n)
            .cloned()
            .expect(n)
    };
    assert_eq!(by_name("prepare")["status"], "stopped", "{ps}");
    assert_eq!(by_name("prepare")["init"], true, "{ps}");
    assert_eq!(by_name("main")["status"], "running", "{ps}");
    assert!(pods.logs("played", "flaky").matches("attempt").count() >= 2);
    let down = pods.peapod(&["pod", "play", "--down", &file_arg]);
    assert_eq!(down.code, 0, "{down:?}");
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}

#[test]
fn bad_manifests_are_refused_naming_the_field_and_create_nothing() {
    let Some(pods) = Pods::new() else { return };
    let good = MANIFEST.replace("ROOTFS", pods.rootfs.arg());
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("  containers:\n", "  containerz:\n"),
            "spec.containers: a pod needs at least one container",
        ),
        (good.replace("kind: Pod", "kind: Deployment"), "kind: unknown kind \"Deployment\""),
        (
            good.replace("{name: shared, mountPath: /data, readOnly", "{name: missing, mountPath: /data, readOnly"),
            "spec.containers[0].volumeMounts[0].name: no volume named \"missing\"",
        ),
        (good.replace("  labels: {app: demo}", "  labels: {app: demo"), "malformed YAML at line 7"),
        (
            good.replace(&format!("image: {}\n    command: [/bin/sh, -c]\n", pods.rootfs.arg()), "image: nginx:latest\n    command: [/bin/sh, -c]\n"),
            "spec.containers[0].image: \"nginx:latest\" is not a directory: image is a local rootfs directory",
        ),
    ];
    let init = pods.init.display().to_string();
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = pods.rootfs.scratch().join(format!("bad{i}.yaml"));
        std::fs::write(&file, text).expect("manifest");
        let out = pods.peapod(&[
            "pod",
            "play",
            "--init-path",
            &init,
            &file.display().to_string(),
        ]);
        assert_eq!(out.code, 2, "case {i}: {out:?}");
        assert!(
            out.stderr.contains(expected),
            "case {i}: expected {expected:?} in {out:?}"
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "case {i}: {out:?}");
    }
    let out = pods.peapod(&["pod", "list", "-q"]);
    assert_eq!(out.stdout, "", "{out:?}");
    pods.rootfs.assert_nothing_left();
}

#[test]
fn a_bundle_run_with_pod_joins_the_pods_namespaces() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("bundled", &["--hostname", "bundlehost"]);
    let bundle = pods.rootfs.scratch().join("bundle");
    std::fs::create_dir(&bundle).expect("mkdir");
    let spec = pods.peapod(&["spec", "--bundle", bundle.to_str().expect("utf-8")]);
    assert_eq!(spec.code, 0, "{spec:?}");
    let config = bundle.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("read")).expect("json");
    json["root"]["path"] = pods.rootfs.arg().into();
    json["process"]["terminal"] = false.into();
    json["process"]["args"] = serde_json::json!([
        "/bin/sh",
        "-c",
        "echo host=$(hostname); echo net=$(readlink /proc/self/ns/net)"
    ]);
    std::fs::write(&config, json.to_string()).expect("write");
    let out = pods.peapod(&[
        "run",
        "--pod",
        "bundled",
        "--bundle",
        bundle.to_str().expect("utf-8"),
        "b1",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let facts = support::facts(&out.stdout);
    assert_eq!(facts["host"], "bundlehost", "{out:?}");
    let net = pods.ps_json("bundled")["namespaces"]["net"].clone();
    assert_eq!(facts["net"], format!("net:[{net}]"), "{out:?}");
    pods.remove_all();
}

#[test]
fn pod_stop_sends_sigterm_then_sigkill_after_the_timeout() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("halt", &["--share", "net,ipc,uts,pid"]);
    // One ends on SIGTERM; the other ignores it and needs the SIGKILL.
    for (name, script) in [
        (
            "polite",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ),
        ("stubborn", "trap '' TERM; while true; do sleep 0.1; done"),
    ] {
        let out = pods.peapod(&[
            "run",
            "--pod",
            "halt",
            "--rootfs",
            pods.rootfs.arg(),
            "--name",
            name,
            "--detach",
            "--",
            "/bin/sh",
            "-c",
            script,
        ]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let started = std::time::Instant::now();
    let stop = pods.peapod(&["pod", "stop", "--timeout", "1", "halt"]);
    let took = started.elapsed();
    assert_eq!(stop.code, 0, "{stop:?}");
    assert!(took >= std::time::Duration::from_millis(900), "{took:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let ps = pods.ps_json("halt");
    assert_eq!(ps["status"], "stopped", "{ps}");
    let containers = ps["containers"].as_array().expect("containers");
    assert!(containers.iter().all(|c| c["status"] == "stopped"), "{ps}");
    // Stopped, not running: rm needs no --force.
    let rm = pods.peapod(&["pod", "rm", "halt"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}
