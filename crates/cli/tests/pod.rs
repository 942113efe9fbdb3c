//! Pods: containers that share the network, IPC, UTS (and with `--share ...,pid` the PID)
//! namespaces of an infra process, each with its own rootfs; `pod ps`, `pod rm`, and
//! Kubernetes manifests with `pod play`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::bundle::set_command;
use support::pods::{cgroup_of, member_pid, unique, PodCgroupGuard, Pods};
use support::wait_until;

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
    pods.serve("net", "server", 7777, "hello-from-server");
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
        "sh -c 'sleep 1000 & echo orphan=$!'; exec sleep 100",
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
            "echo init=$(tr '\\0' ' ' < /proc/1/cmdline); grep PPid /proc/{orphan}/status; ps -o pid,args | grep -c '[s]leep 100$'"
        ),
    );
    assert_eq!(b.code, 0, "{b:?}");
    assert!(b.stdout.contains("init=/pause -P"), "{b:?}");
    // Adopted by the infra process, PID 1 of the pod.
    assert!(b.stdout.contains("PPid:\t1"), "{b:?}");
    // B sees A's processes.
    assert!(b.stdout.trim_end().ends_with('1'), "{b:?}");
    // Once it has exited, it is reaped: no zombie is left. A zombie keeps its /proc entry,
    // so the entry going away is the reaping (waited for at most 30 s).
    let c = pods.run(
        "pids",
        &pods.rootfs.path,
        &[],
        &format!(
            "kill {orphan}; i=0; while [ -e /proc/{orphan} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
             test -e /proc/{orphan} && cat /proc/{orphan}/stat; ps -o stat | grep -c Z; true"
        ),
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
    pods.kill_infra("dead");
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
  annotations: {peapod.io/restart-backoff-base: 100ms}
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
    terminationMessagePath: /dev/termination-log
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
    let file_arg = file.display().to_string();
    let play = pods.play("played", &file, &["--network", "none"]);
    assert_eq!(play.code, 0, "{play:?}");
    assert!(
        play.stderr
            .contains("spec.containers[0].terminationMessagePath: ignored"),
        "{play:?}"
    );
    wait_until("main's output", || {
        pods.logs("played", "main").contains("made-by-init")
    });
    // OnFailure: the failing container comes back, with back-off (at once, then 0.1 s, ...).
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
    // Each run of it has a log of its own, as `kubectl logs` shows the current one.
    // (Between two runs it does not exist.)
    wait_until("flaky's log", || {
        let out = pods.peapod(&["pod", "logs", "played", "flaky"]);
        out.code == 0 && out.stdout == "attempt\n"
    });
    // The run before, kept as the kubelet keeps it for `kubectl logs --previous`.
    let previous = pods.peapod(&["pod", "logs", "--previous", "-c", "flaky", "played"]);
    assert_eq!(previous.stdout, "attempt\n", "{previous:?}");
    let never = pods.peapod(&["pod", "logs", "--previous", "-c", "main", "played"]);
    assert!(never.stderr.contains("has no previous run"), "{never:?}");
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
        (
            good.replace("kind: Pod", "kind: Deployment"),
            "apiVersion: \"v1\" for a Deployment: expected apps/v1",
        ),
        (
            good.replace(
                "{name: shared, mountPath: /data, readOnly",
                "{name: missing, mountPath: /data, readOnly",
            ),
            "spec.containers[0].volumeMounts[0].name: no volume named \"missing\"",
        ),
        (
            good.replace("  labels: {app: demo}", "  labels: {app: demo"),
            "malformed YAML at line 7",
        ),
        (
            good.replace(
                &format!("image: {}\n    command: [/bin/sh, -c]\n", pods.rootfs.arg()),
                "image: ./nowhere\n    command: [/bin/sh, -c]\n",
            ),
            "spec.containers[0].image: \"./nowhere\" is not a directory",
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
    let script = "echo host=$(hostname); echo net=$(readlink /proc/self/ns/net)";
    let bundle = pods.rootfs.spec_bundle("bundle", |spec| {
        set_command(spec, &["/bin/sh", "-c", script]);
    });
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
    for (name, script, mask) in [
        (
            "polite",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            "SigCgt:",
        ),
        (
            "stubborn",
            "trap '' TERM; while true; do sleep 0.1; done",
            "SigIgn:",
        ),
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
        // `run -d` returns once the shell runs, maybe before its `trap`: a SIGTERM then would
        // end the stubborn one too. Waited for until the kernel has the shell's disposition.
        let state = pods.peapod(&["state", name]);
        let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("state");
        let pid = state["pid"].as_i64().expect("pid");
        wait_until(&format!("{name}'s trap of SIGTERM"), || {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix(mask))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
        });
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

/// The cgroup layout, or `None` (after saying why) where the memory and pids controllers the
/// pod cgroup tests need are not available.
fn cgroup_layout() -> Option<peapod_cgroups::Layout> {
    support::cgroup_layout_with(&["memory", "pids"])
}

#[test]
fn a_pod_cgroup_holds_the_pods_limits_and_its_containers_cgroups_below_it() {
    let Some(layout) = cgroup_layout() else {
        return;
    };
    let pod = unique("limited");
    let guard = PodCgroupGuard::new(&layout, &pod);
    let Some(mut pods) = Pods::new() else { return };
    guard.of(&pods);
    pods.create(&pod, &["--memory", "64M", "--pids-limit", "50"]);
    let (memory, pids) = match layout.is_v2() {
        true => ("memory.max", "pids.max"),
        false => ("memory.limit_in_bytes", "pids.max"),
    };
    assert_eq!(guard.number("memory", memory), 64 << 20);
    assert_eq!(guard.number("pids", pids), 50);
    let ps = pods.ps_json(&pod);
    let recorded: Vec<PathBuf> = ps["cgroup_paths"]
        .as_array()
        .expect("cgroup_paths")
        .iter()
        .map(|p| PathBuf::from(p.as_str().expect("a path")))
        .collect();
    assert_eq!(recorded, guard.paths(), "{ps}");
    let infra = ps["infra_pid"].as_u64().expect("infra pid") as u32;
    let id = unique("inside");
    let out = pods.run(
        &pod,
        &pods.rootfs.path,
        &["--name", &id, "--detach"],
        "exec sleep 60",
    );
    assert_eq!(out.code, 0, "{out:?}");
    let container = member_pid(&pods.ps_json(&pod), &id);
    // On a hybrid host also `name=systemd` and the cgroup2 mount (`0::`), as runc does.
    let tracking = layout.tracking().into_iter().map(|h| match &h.name {
        Some(name) => format!("name={name}"),
        None => String::new(),
    });
    let hierarchies: Vec<String> = ["memory".to_owned(), "pids".to_owned()]
        .into_iter()
        .chain(tracking)
        .collect();
    // `pod:NAME:TAG`, TAG the state root's.
    let pod_dir = guard.dir("memory");
    let pod_dir = pod_dir.file_name().expect("a name").to_string_lossy();
    assert!(pod_dir.starts_with(&format!("pod:{pod}:")), "{pod_dir}");
    for controller in &hierarchies {
        let infra_cgroup = cgroup_of(infra, controller);
        assert!(
            infra_cgroup.ends_with(&format!("peapod/{pod_dir}/infra")),
            "infra in {infra_cgroup}"
        );
        let cgroup = cgroup_of(container, controller);
        let pod_cgroup = infra_cgroup.trim_end_matches("/infra");
        assert_eq!(cgroup, format!("{pod_cgroup}/{id}"), "{controller}");
    }
    // Counted in the pod's cgroup too: the infra process and the container's.
    assert_eq!(guard.number("pids", "pids.current"), 2);
    pods.remove_all();
    guard.assert_gone();
}

#[test]
fn pods_of_one_name_in_two_state_roots_have_cgroups_of_their_own() {
    let Some(layout) = cgroup_layout() else {
        return;
    };
    // The same name in both, on purpose: pod names are unique per state root only.
    let pod = "twin";
    let guards = [
        PodCgroupGuard::new(&layout, pod),
        PodCgroupGuard::new(&layout, pod),
    ];
    let (Some(mut first), Some(mut second)) = (Pods::new(), Pods::new()) else {
        return;
    };
    guards[0].of(&first);
    guards[1].of(&second);
    first.create(pod, &["--memory", "64M"]);
    second.create(pod, &["--memory", "32M"]);
    let memory = match layout.is_v2() {
        true => "memory.max",
        false => "memory.limit_in_bytes",
    };
    assert_eq!(guards[0].number("memory", memory), 64 << 20);
    assert_eq!(guards[1].number("memory", memory), 32 << 20);
    for (pods, guard) in [(&first, &guards[0]), (&second, &guards[1])] {
        let ps = pods.ps_json(pod);
        let recorded: Vec<PathBuf> = ps["cgroup_paths"]
            .as_array()
            .expect("cgroup_paths")
            .iter()
            .map(|p| PathBuf::from(p.as_str().expect("a path")))
            .collect();
        assert_eq!(recorded, guard.paths(), "{ps}");
        let infra = ps["infra_pid"].as_u64().expect("infra pid") as u32;
        let infra_cgroup = cgroup_of(infra, "memory");
        let dir = guard.dir("memory").join("infra");
        assert!(
            dir.ends_with(infra_cgroup.trim_start_matches('/')),
            "infra in {infra_cgroup}, not {}",
            dir.display()
        );
    }
    assert_ne!(guards[0].paths(), guards[1].paths());
    // Removing one leaves the other as it was.
    first.remove_all();
    guards[0].assert_gone();
    assert_eq!(second.ps_json(pod)["status"], "running");
    assert_eq!(guards[1].number("memory", memory), 32 << 20);
    second.remove_all();
    guards[1].assert_gone();
}

#[test]
fn a_pods_pids_limit_holds_for_its_containers_together() {
    let Some(layout) = cgroup_layout() else {
        return;
    };
    let pod = unique("forks");
    let guard = PodCgroupGuard::new(&layout, &pod);
    let Some(mut pods) = Pods::new() else { return };
    guard.of(&pods);
    pods.create(&pod, &["--pids-limit", "20"]);
    // Each forks 15 sleeps: one shell and its 15 fit, two do not (20 with the infra process).
    // A fork that fails ends busybox sh ("can't fork").
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do sleep 60 & done; \
                  echo started; wait";
    let first = unique("first");
    let out = pods.run(
        &pod,
        &pods.rootfs.path,
        &["--name", &first, "--detach"],
        script,
    );
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the first container's 15 sleeps", || {
        pods.logs(&pod, &first).contains("started")
    });
    assert_eq!(guard.number("pids", "pids.current"), 17);
    let second = unique("second");
    let out = pods.run(
        &pod,
        &pods.rootfs.path,
        &["--name", &second, "--detach"],
        script,
    );
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the second container's failed fork", || {
        pods.logs(&pod, &second).contains("can't fork")
    });
    assert!(guard.number("pids", "pids.current") <= 20);
    if guard.dir("pids").join("pids.peak").exists() {
        assert!(guard.number("pids", "pids.peak") <= 20);
    }
    // The kernel counts the failed forks (v1: in the forking cgroup, the second container's;
    // v2: in the pod's, whose limit was hit).
    let pids = guard.dir("pids");
    let failed: u64 = [pids.clone(), pids.join(&first), pids.join(&second)]
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("pids.events")).ok())
        .filter_map(|events| {
            events
                .lines()
                .find_map(|l| l.strip_prefix("max "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum();
    assert!(failed > 0, "no failed fork counted in pids.events");
    // The limit is the pod's: the containers' own cgroups have none.
    let own = guard.dir("pids").join(&first).join("pids.max");
    let own = std::fs::read_to_string(&own).expect("the container's pids.max");
    assert_eq!(own.trim(), "max");
    pods.remove_all();
    guard.assert_gone();
}

#[test]
fn a_pod_create_that_fails_leaves_no_cgroup() {
    let Some(layout) = cgroup_layout() else {
        return;
    };
    let pod = unique("tiny");
    let guard = PodCgroupGuard::new(&layout, &pod);
    let Some(pods) = Pods::new() else { return };
    guard.of(&pods);
    // One page of memory: the infra process is OOM-killed while it sets itself up.
    let out = pods.try_create(&pod, &["--memory", "4096"]);
    assert_ne!(out.code, 0, "{out:?}");
    guard.assert_gone();
    let list = pods.peapod(&["pod", "list", "--quiet"]);
    assert_eq!(list.stdout.trim(), "", "{list:?}");
    pods.rootfs.assert_nothing_left();
}

#[test]
fn pod_stop_kills_what_is_left_in_the_pod_cgroup_and_its_containers() {
    use std::os::unix::process::ExitStatusExt;
    let Some(layout) = cgroup_layout() else {
        return;
    };
    let pod = unique("strays");
    let guard = PodCgroupGuard::new(&layout, &pod);
    let Some(mut pods) = Pods::new() else { return };
    guard.of(&pods);
    pods.create(&pod, &[]);
    let id = unique("member");
    let out = pods.run(
        &pod,
        &pods.rootfs.path,
        &["--name", &id, "--detach"],
        "exec sleep 60",
    );
    assert_eq!(out.code, 0, "{out:?}");
    // Processes no container tree holds (as a daemon that escaped one would be): one in the
    // pod's cgroup, one in the container's. Killed on drop should the test fail. On v2 a
    // cgroup that hands controllers down holds no process, so the pod's is in its leaf
    // `infra`, beside the infra process.
    struct Stray(std::process::Child);
    impl Drop for Stray {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let container_cgroup: Vec<PathBuf> = guard.paths().iter().map(|p| p.join(&id)).collect();
    let pod_cgroup: Vec<PathBuf> = match layout.is_v2() {
        true => guard.paths().iter().map(|p| p.join("infra")).collect(),
        false => guard.paths(),
    };
    let mut strays = Vec::new();
    for paths in [pod_cgroup.clone(), container_cgroup.clone()] {
        let stray = Stray(Command::new("sleep").arg("60").spawn().expect("sleep"));
        peapod_cgroups::Cgroup::open(&layout, &paths)
            .add(stray.0.id())
            .expect("move into the cgroup");
        strays.push(stray);
    }
    let stop = pods.peapod(&["pod", "stop", "--timeout", "0", &pod]);
    assert_eq!(stop.code, 0, "{stop:?}");
    for stray in &mut strays {
        let status = support::wait_with_timeout(&mut stray.0, std::time::Duration::from_secs(5))
            .expect("the stray process was not killed");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
    let container = peapod_cgroups::Cgroup::open(&layout, &container_cgroup);
    let pod_cgroup = peapod_cgroups::Cgroup::open(&layout, &pod_cgroup);
    assert_eq!(pod_cgroup.procs().expect("procs"), Vec::<u32>::new());
    assert_eq!(container.procs().expect("procs"), Vec::<u32>::new());
    pods.remove_all();
    guard.assert_gone();
}

/// A pod whose `polite` container ends on SIGTERM (writing a marker to a hostPath volume
/// first) and whose `stubborn` one ignores it; 2 s of grace. ROOTFS and DATA are replaced.
const GRACEFUL_MANIFEST: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: graceful
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: data
    hostPath: {path: DATA}
  containers:
  - name: polite
    image: ROOTFS
    command: [/bin/sh, -c]
    args: ['trap \"echo term > /data/polite-got-term; exit 0\" TERM; : > /data/polite-ready; while true; do sleep 0.05; done']
    volumeMounts: [{name: data, mountPath: /data}]
  - name: stubborn
    image: ROOTFS
    command: [/bin/sh, -c]
    args: ['trap \"\" TERM; : > /data/stubborn-ready; while true; do sleep 0.05; done']
    terminationMessagePath: /dev/termination-log
    volumeMounts: [{name: data, mountPath: /data}]
";

#[test]
fn pod_play_down_sends_sigterm_and_kills_only_after_the_grace_period() {
    let Some(mut pods) = Pods::new() else { return };
    let data = pods.rootfs.scratch().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let manifest = GRACEFUL_MANIFEST
        .replace("ROOTFS", pods.rootfs.arg())
        .replace("DATA", &data.display().to_string());
    let file = pods.rootfs.scratch().join("graceful.yaml");
    std::fs::write(&file, manifest).expect("manifest");
    let file_arg = file.display().to_string();
    let play = pods.play("graceful", &file, &["--network", "none"]);
    assert_eq!(play.code, 0, "{play:?}");
    let warning = "spec.containers[1].terminationMessagePath: ignored";
    assert_eq!(play.stderr.matches(warning).count(), 1, "{play:?}");
    // Both have set up their traps once they wrote their marker.
    wait_until("both containers ready", || {
        data.join("polite-ready").exists() && data.join("stubborn-ready").exists()
    });
    let started = std::time::Instant::now();
    let down = pods.peapod(&["pod", "play", "--down", &file_arg]);
    let took = started.elapsed();
    assert_eq!(down.code, 0, "{down:?}");
    // polite ended on SIGTERM, running its trap; stubborn needed the SIGKILL after 2 s.
    assert_eq!(
        std::fs::read_to_string(data.join("polite-got-term"))
            .ok()
            .as_deref(),
        Some("term\n"),
        "{down:?}"
    );
    assert!(took >= std::time::Duration::from_millis(1900), "{took:?}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    // The manifest's one warning, once.
    assert_eq!(down.stderr.matches(warning).count(), 1, "{down:?}");
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
    assert!(pods.peapod(&["pod", "ps", "graceful"]).code != 0);
}
