//! `pod play` of the `securityContext`, `resources` and `emptyDir` fields a Kubernetes user
//! writes, checked as that user checks them: `id`, `stat`, `/proc/self/status`,
//! `/proc/mounts`, `/proc/sys` inside, and the cgroup files on the host.

mod support;

use support::pods::{cgroup_of, member_pid, unique, PodCgroupGuard, Pods};
use support::wait_until;

/// Writes `manifest` (its `ROOTFS` the test rootfs) next to the rootfs and plays it.
fn play(pods: &mut Pods, name: &str, manifest: &str) -> support::Outcome {
    let file = pods.rootfs.scratch().join(format!("{name}.yaml"));
    let text = manifest
        .replace("ROOTFS", pods.rootfs.arg())
        .replace("NAME", name);
    std::fs::write(&file, text).expect("manifest");
    pods.play(name, &file, &["--network", "none"])
}

/// The log of container `container` once it has written `done`.
fn output(pods: &Pods, pod: &str, container: &str) -> String {
    wait_until(&format!("{container}'s output"), || {
        pods.logs(pod, container).contains("done")
    });
    pods.logs(pod, container)
}

/// The value of `field` in `id`'s output (`uid=1000 gid=3000 groups=2000,4000`), numbers
/// only.
fn id_field(id: &str, field: &str) -> Vec<u32> {
    let value = id
        .split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {id:?}"));
    value
        .split(',')
        .filter_map(|g| g.split('(').next()?.parse().ok())
        .collect()
}

const USERS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
  volumes:
  - {name: data, emptyDir: {}}
  containers:
  - name: app
    image: ROOTFS
    command: [/bin/sh, -c, 'id; touch /data/f; stat -c \"file %u %g\" /data/f; stat -c \"dir %g %a\" /data; echo done; exec sleep 100']
    volumeMounts: [{name: data, mountPath: /data}]
  - name: other
    image: ROOTFS
    securityContext: {runAsUser: 1001}
    command: [/bin/sh, -c, 'id; echo done; exec sleep 100']
";

#[test]
fn run_as_user_group_fs_group_and_supplemental_groups_show_in_id_and_stat() {
    let Some(mut pods) = Pods::new() else { return };
    let out = play(&mut pods, "users", USERS);
    assert_eq!(out.code, 0, "{out:?}");
    let app = output(&pods, "users", "app");
    let id = app.lines().next().expect("id's line");
    assert_eq!(id_field(id, "uid"), [1000], "{app}");
    assert_eq!(id_field(id, "gid"), [3000], "{app}");
    let groups = id_field(id, "groups");
    assert!(
        groups.contains(&2000) && groups.contains(&4000),
        "fsGroup and supplementalGroups: {app}"
    );
    // The emptyDir is the fsGroup's and setgid: the new file gets the group.
    assert!(app.contains("file 1000 2000"), "{app}");
    assert!(app.contains("dir 2000 2777"), "{app}");
    // The container's runAsUser over the pod's; the pod's group and groups still hold.
    let other = output(&pods, "users", "other");
    assert_eq!(id_field(&other, "uid"), [1001], "{other}");
    assert_eq!(id_field(&other, "gid"), [3000], "{other}");
    pods.remove_all();
}

#[test]
fn run_as_non_root_with_a_root_image_is_refused_with_the_kubelets_message() {
    let Some(mut pods) = Pods::new() else { return };
    let manifest = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: app, image: ROOTFS, command: [/bin/true]}
";
    let out = play(&mut pods, "nonroot", manifest);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot\", container: app)"
        ),
        "{out:?}"
    );
    // With runAsUser 0 as well: the kubelet's other message.
    let out = play(
        &mut pods,
        "nonroot",
        &manifest.replace("{runAsNonRoot: true}", "{runAsNonRoot: true, runAsUser: 0}"),
    );
    assert!(
        out.stderr
            .contains("container's runAsUser breaks non-root policy"),
        "{out:?}"
    );
    // Refused before anything was made.
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
    // And a non-root user plays.
    let out = play(
        &mut pods,
        "nonroot",
        &manifest.replace(
            "{runAsNonRoot: true}",
            "{runAsNonRoot: true, runAsUser: 65534}",
        ),
    );
    assert_eq!(out.code, 0, "{out:?}");
    pods.remove_all();
}

const CAPS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  containers:
  - name: locked
    image: ROOTFS
    command: [/bin/sh, -c, 'grep -E \"^(CapEff|CapBnd|NoNewPrivs)\" /proc/self/status; touch /x 2>&1; echo done; exec sleep 100']
    securityContext:
      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
  - name: open
    image: ROOTFS
    command: [/bin/sh, -c, 'grep -E \"^NoNewPrivs\" /proc/self/status; touch /x && echo wrote; echo done; exec sleep 100']
    securityContext: {allowPrivilegeEscalation: true}
";

#[test]
fn capabilities_privilege_escalation_and_a_read_only_root_show_in_proc_status() {
    let Some(mut pods) = Pods::new() else { return };
    let out = play(&mut pods, "caps", CAPS);
    assert_eq!(out.code, 0, "{out:?}");
    let locked = output(&pods, "caps", "locked");
    let facts = support::facts(&locked.replace(":\t", "="));
    // CAP_NET_BIND_SERVICE is bit 10.
    assert_eq!(facts["CapEff"], "0000000000000400", "{locked}");
    assert_eq!(facts["CapBnd"], "0000000000000400", "{locked}");
    assert_eq!(facts["NoNewPrivs"], "1", "{locked}");
    assert!(locked.contains("Read-only file system"), "{locked}");
    let open = output(&pods, "caps", "open");
    assert!(open.contains("NoNewPrivs:\t0"), "{open}");
    assert!(open.contains("wrote"), "{open}");
    pods.remove_all();
}

#[test]
fn a_safe_sysctl_is_set_in_the_pod_and_an_unsafe_one_is_refused() {
    let Some(mut pods) = Pods::new() else { return };
    let manifest = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  securityContext:
    sysctls:
    - {name: net.ipv4.ip_unprivileged_port_start, value: '80'}
    - {name: kernel.shm_rmid_forced, value: '1'}
  containers:
  - name: app
    image: ROOTFS
    command: [/bin/sh, -c, 'cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced; echo done; exec sleep 100']
";
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("the host's value");
    let out = play(&mut pods, "sysctls", manifest);
    assert_eq!(out.code, 0, "{out:?}");
    let app = output(&pods, "sysctls", "app");
    assert_eq!(
        app.lines().take(2).collect::<Vec<_>>(),
        ["80", "1"],
        "{app}"
    );
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("the host's value");
    assert_eq!(host_before, host_after, "the host's own is untouched");
    pods.remove_all();

    let unsafe_one = manifest.replace("kernel.shm_rmid_forced", "kernel.msgmax");
    let out = play(&mut pods, "unsafe", &unsafe_one);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "spec.securityContext.sysctls[1].name: \"kernel.msgmax\" is not one of Kubernetes' safe sysctls"
        ),
        "{out:?}"
    );
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}

const RESOURCES: &str = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - name: a
    image: ROOTFS
    command: [/bin/sleep, '100']
    resources:
      limits: {memory: 64Mi, cpu: 500m}
      requests: {cpu: 250m, memory: 32Mi}
  - name: b
    image: ROOTFS
    command: [/bin/sleep, '100']
    resources:
      limits: {memory: 32Mi, cpu: '1'}
";

/// The host directory of `cgroup`'s child `child` in the hierarchy of `controller`.
fn child_file(guard: &PodCgroupGuard, controller: &str, child: &str, file: &str) -> String {
    let path = guard.dir(controller).join(child).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn resources_are_written_into_the_containers_and_the_pods_cgroups() {
    let Some(layout) = support::cgroup_layout_with(&["memory", "cpu"]) else {
        return;
    };
    let pod = unique("limits");
    let guard = PodCgroupGuard::new(&layout, &pod);
    let Some(mut pods) = Pods::new() else { return };
    guard.of(&pods);
    let out = play(&mut pods, &pod, RESOURCES);
    assert_eq!(out.code, 0, "{out:?}");
    let (a, b) = (format!("{pod}-a"), format!("{pod}-b"));
    let ps = pods.ps_json(&pod);
    let pid = member_pid(&ps, &a);
    let member = cgroup_of(pid, "memory");
    assert!(
        guard
            .dir("memory")
            .join(&a)
            .ends_with(member.trim_start_matches('/')),
        "{member}"
    );
    // 500m: 50 ms of every 100 ms; a request of 250m: 256 shares, or on cgroup v2 the
    // weight runc converts them to (1 + (256 - 2) * 9999 / 262142 = 10).
    if layout.is_v2() {
        assert_eq!(
            child_file(&guard, "memory", &a, "memory.max"),
            (64u64 << 20).to_string()
        );
        assert_eq!(child_file(&guard, "cpu", &a, "cpu.max"), "50000 100000");
        assert_eq!(child_file(&guard, "cpu", &a, "cpu.weight"), "10");
        assert_eq!(child_file(&guard, "cpu", &b, "cpu.max"), "100000 100000");
        // The pod: the sums (96Mi, 1.5 CPU) and the requests' 1250m as 1280 shares.
        assert_eq!(guard.number("memory", "memory.max"), 96 << 20);
        assert_eq!(guard.read("cpu", "cpu.max"), "150000 100000");
        assert_eq!(guard.read("cpu", "cpu.weight"), "49");
    } else {
        assert_eq!(
            child_file(&guard, "memory", &a, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(child_file(&guard, "cpu", &a, "cpu.cfs_quota_us"), "50000");
        assert_eq!(child_file(&guard, "cpu", &a, "cpu.cfs_period_us"), "100000");
        assert_eq!(child_file(&guard, "cpu", &a, "cpu.shares"), "256");
        assert_eq!(child_file(&guard, "cpu", &b, "cpu.shares"), "1024");
        assert_eq!(guard.number("memory", "memory.limit_in_bytes"), 96 << 20);
        assert_eq!(guard.number("cpu", "cpu.cfs_quota_us"), 150_000);
        assert_eq!(guard.number("cpu", "cpu.shares"), 1280);
    }
    pods.remove_all();
    guard.assert_gone();
}

#[test]
fn an_empty_dir_in_memory_is_a_tmpfs_of_its_size_limit_gone_with_the_pod() {
    let Some(mut pods) = Pods::new() else { return };
    let manifest = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  volumes:
  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 16Mi}}
  - {name: disk, emptyDir: {sizeLimit: 1Gi}}
  - {name: sized-by-pod, emptyDir: {medium: Memory}}
  containers:
  - name: app
    image: ROOTFS
    command: [/bin/sh, -c, 'grep \" /scratch \" /proc/mounts; grep \" /pod \" /proc/mounts; echo hi > /scratch/f && cat /scratch/f; echo done; exec sleep 100']
    resources: {limits: {memory: 64Mi}}
    volumeMounts: [{name: scratch, mountPath: /scratch}, {name: disk, mountPath: /disk}, {name: sized-by-pod, mountPath: /pod}]
";
    let out = play(&mut pods, "memdir", manifest);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("spec.volumes[1].emptyDir.sizeLimit: not enforced"),
        "{out:?}"
    );
    let app = output(&pods, "memdir", "app");
    let mount = app.lines().next().expect("the mount's line");
    let fields: Vec<&str> = mount.split_whitespace().collect();
    assert_eq!(fields[2], "tmpfs", "{app}");
    assert!(fields[3].split(',').any(|o| o == "size=16384k"), "{app}");
    assert!(fields[3].split(',').any(|o| o == "nosuid"), "{app}");
    assert!(app.contains("hi"), "{app}");
    // Without sizeLimit: the pod's memory limit, as the kubelet sizes it.
    let pod_sized = app.lines().nth(1).expect("the second mount's line");
    assert!(
        pod_sized
            .split_whitespace()
            .nth(3)
            .is_some_and(|o| o.split(',').any(|o| o == "size=65536k")),
        "{app}"
    );
    // The tmpfs is mounted in the pod's state on the host, and `pod rm` takes it away.
    let state = pods.rootfs.state_root();
    let on_host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        on_host
            .lines()
            .any(|l| l.contains(&*state.to_string_lossy()) && l.contains("scratch")),
        "no tmpfs under {}",
        state.display()
    );
    // No mount left under the test's directory either (remove_all checks).
    pods.remove_all();
}

#[test]
fn a_localhost_seccomp_profile_is_found_in_the_manifests_directory_and_applied() {
    let Some(mut pods) = Pods::new() else { return };
    let profiles = pods.rootfs.scratch().join("profiles");
    std::fs::create_dir(&profiles).expect("profiles");
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("profile");
    let manifest = "
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  securityContext:
    seccompProfile: {type: Localhost, localhostProfile: profiles/no-mkdir.json}
  containers:
  - name: app
    image: ROOTFS
    command: [/bin/sh, -c, 'mkdir /tmp/d 2>&1; echo done; exec sleep 100']
  - name: free
    image: ROOTFS
    securityContext: {seccompProfile: {type: Unconfined}}
    command: [/bin/sh, -c, 'mkdir /tmp/d && echo made; echo done; exec sleep 100']
";
    let out = play(&mut pods, "profiled", manifest);
    assert_eq!(out.code, 0, "{out:?}");
    let app = output(&pods, "profiled", "app");
    assert!(app.contains("Operation not permitted"), "{app}");
    // The container's own profile over the pod's.
    assert!(output(&pods, "profiled", "free").contains("made"));
    pods.remove_all();
    // A profile outside the manifest's directory is not found there, nor through a link.
    std::os::unix::fs::symlink("/etc/passwd", profiles.join("link.json")).expect("symlink");
    for escape in ["../../etc/passwd", "profiles/link.json", "/etc/passwd"] {
        let out = play(
            &mut pods,
            "escape",
            &manifest.replace("profiles/no-mkdir.json", escape),
        );
        assert_eq!(out.code, 2, "{escape}: {out:?}");
        assert!(
            out.stderr
                .contains("spec.securityContext.seccompProfile.localhostProfile"),
            "{escape}: {out:?}"
        );
        pods.names.clear();
    }
    pods.rootfs.assert_nothing_left();
}
