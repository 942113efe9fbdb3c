//! The device filter of cgroup v2: the eBPF program peapod attaches to a container's cgroup2
//! directory, seen by the kernel (`bpftool cgroup list`, `BPF_PROG_QUERY`) and by the
//! container (what it may open); replaced by `update`; gone with the container. It runs on a
//! pure cgroup-v2 host and on a hybrid one (v1 controllers, and cgroup2 at
//! `/sys/fs/cgroup/unified`), where the kernel runs the program before the v1 devices
//! controller. That controller enforces the same rules there, so before probing a running
//! container the tests open it up (`a *:* rwm` into the container's `devices.allow`): what
//! they then see is the program's doing alone.
//!
//! Devices are probed harmlessly: a node is made in the container's `/dev`, opened for
//! reading and closed at once, and removed. 1:3 is `/dev/null`; 1:200 and 1:201 are numbers
//! of the kernel's mem driver that no device has. The kernel checks the filter before it looks
//! for a driver, so opening one fails with EPERM when the filter refuses it and with ENXIO
//! ("No such device or address") when the filter lets it through: no driver code runs either
//! way.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use peapod_cgroups::{Cgroup, Layout};
use support::pods::Pods;
use support::{finish, wait_until, wait_with_timeout, Outcome, TestRootfs, TIMEOUT};

/// The fixture and the host's layout, or `None` (after saying why) where there is no cgroup2
/// hierarchy for a device program.
fn fixture() -> Option<(TestRootfs, Layout)> {
    let rootfs = TestRootfs::new()?;
    let layout = cgroup2_layout()?;
    Some((rootfs, layout))
}

fn cgroup2_layout() -> Option<Layout> {
    let Ok(layout) = Layout::detect() else {
        eprintln!("skipped: no cgroup file system is mounted");
        return None;
    };
    if let Layout::V1 { unified: None, .. } = layout {
        eprintln!("skipped: this v1 host has no cgroup2 hierarchy to attach device programs to");
        return None;
    }
    Some(layout)
}

/// A unique container id for this test.
fn unique(name: &str) -> String {
    format!("dev-{name}-{}", std::process::id())
}

/// What opening a device node made inside the container came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Open {
    /// It opened.
    Opened,
    /// EPERM: the filter refused it.
    Denied,
    /// ENXIO: the filter let it through, and no driver has the number.
    ThroughToNoDriver,
    /// Anything else (the shell's message).
    Other(String),
}

/// A shell script that makes, opens for reading and removes a character device of each of
/// `numbers`, printing one line per device: `MAJOR:MINOR RESULT`.
fn probe_script(numbers: &[(u32, u32)]) -> String {
    let mut script = String::new();
    for (major, minor) in numbers {
        script.push_str(&format!(
            "n=/dev/probe-{major}-{minor}; rm -f $n; \
             if ! err=$(mknod $n c {major} {minor} 2>&1); then echo \"{major}:{minor} $err\"; \
             elif err=$( (: < $n) 2>&1 ); then echo '{major}:{minor} opened'; \
             else echo \"{major}:{minor} $err\"; fi; rm -f $n\n"
        ));
    }
    script
}

/// The results [`probe_script`] printed, in order.
fn probed(out: &Outcome, numbers: &[(u32, u32)]) -> Vec<Open> {
    numbers
        .iter()
        .map(|(major, minor)| {
            let prefix = format!("{major}:{minor} ");
            let line = out
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no line for {major}:{minor}: {out:?}"));
            if line == "opened" {
                Open::Opened
            } else if line.contains("Operation not permitted") {
                Open::Denied
            } else if line.contains("No such device or address") {
                Open::ThroughToNoDriver
            } else {
                Open::Other(line.to_owned())
            }
        })
        .collect()
}

const PROBED: &[(u32, u32)] = &[(1, 3), (1, 200), (1, 201)];

/// A container left running (`sleep`), deleted with `--force` on drop.
struct Running<'a> {
    rootfs: &'a TestRootfs,
    id: String,
}

impl<'a> Running<'a> {
    fn start(rootfs: &'a TestRootfs, id: &str) -> Running<'a> {
        let stderr = rootfs.scratch().join(format!("{id}.stderr"));
        let mut cmd = rootfs.peapod();
        cmd.args(["run", "--detach", "--rootfs", rootfs.arg(), "--name", id])
            .args(["--", "/bin/sleep", "600"])
            // The container keeps what it inherits: no pipe a test would wait on.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let mut child = cmd.spawn().expect("spawn peapod");
        let status = wait_with_timeout(&mut child, TIMEOUT).expect("run --detach finished");
        let running = Running {
            rootfs,
            id: id.to_owned(),
        };
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(status.success(), "run --detach failed: {err}");
        running
    }

    fn peapod(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.rootfs.peapod();
        cmd.args(args);
        finish(cmd.spawn().expect("spawn peapod"))
    }

    fn pid(&self) -> u32 {
        let out = self.peapod(&["state", &self.id]);
        assert_eq!(out.code, 0, "{out:?}");
        let state: serde_json::Value = serde_json::from_str(&out.stdout).expect("state json");
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("no pid: {state}"))
    }

    /// [`probe_script`] run in the container by `peapod exec`.
    fn probe(&self, numbers: &[(u32, u32)]) -> Vec<Open> {
        let script = probe_script(numbers);
        let out = self.peapod(&["exec", &self.id, "/bin/sh", "-c", &script]);
        assert_eq!(out.code, 0, "{out:?}");
        probed(&out, numbers)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.peapod(&["delete", "--force", &self.id]);
    }
}

/// The directory of process `pid`'s cgroup in the hierarchy `/proc/PID/cgroup` calls
/// `key` (`""` for cgroup2), below the hierarchy's mount.
fn cgroup_dir_of(pid: u32, key: &str, mount: &Path) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == key)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no {key:?} line in {text}"));
    mount.join(path.trim_start_matches('/'))
}

/// The container process `pid`'s cgroup2 directory.
fn cgroup2_dir(layout: &Layout, pid: u32) -> PathBuf {
    let mount = match layout {
        Layout::V2(h) => &h.mount,
        Layout::V1 {
            unified: Some(h), ..
        } => &h.mount,
        Layout::V1 { .. } => panic!("no cgroup2 hierarchy"),
    };
    cgroup_dir_of(pid, "", mount)
}

/// The ids of the device programs attached to the cgroup2 directory `dir`.
fn programs(layout: &Layout, dir: &Path) -> Vec<u32> {
    Cgroup::open(layout, &[dir.to_owned()])
        .device_programs()
        .expect("BPF_PROG_QUERY")
}

/// On a hybrid host, lets the v1 devices controller allow every device to the process
/// `pid`'s cgroup, so that only the program filters.
fn open_v1_devices(layout: &Layout, pid: u32) {
    let Some(devices) = layout.hierarchy_of("devices").filter(|_| !layout.is_v2()) else {
        return;
    };
    let dir = cgroup_dir_of(pid, "devices", &devices.mount);
    std::fs::write(dir.join("devices.allow"), "a *:* rwm").expect("open up devices.allow");
}

/// Whether the loaded program `id` still exists.
fn program_exists(id: u32) -> bool {
    // `union bpf_attr` of BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags.
    let mut attr = [id, 0u32, 0u32];
    // SAFETY: command 13 (BPF_PROG_GET_FD_BY_ID) reads the 12 bytes of `attr`, which lives
    // through the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 13, attr.as_mut_ptr(), 12u32) };
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor the kernel just gave this process, closed once.
        unsafe { libc::close(fd as libc::c_int) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

/// `bpftool cgroup list DIR`: (id, attach type, name) per program, or `None` (saying so)
/// where bpftool is not installed.
fn bpftool_cgroup_list(dir: &Path) -> Option<Vec<(u32, String, String)>> {
    let out = match Command::new("bpftool")
        .args(["cgroup", "list"])
        .arg(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("(bpftool is not installed: the `bpftool cgroup list` check is skipped)");
            return None;
        }
        Err(e) => panic!("bpftool: {e}"),
    };
    assert!(out.status.success(), "bpftool: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let id = fields.first()?.parse().ok()?;
                Some((id, fields.get(1)?.to_string(), fields.last()?.to_string()))
            })
            .collect(),
    )
}

#[test]
fn a_default_container_has_one_device_program_and_opens_only_the_standard_devices() {
    let Some((rootfs, layout)) = fixture() else {
        return;
    };
    let id = unique("default");
    let (dir, program) = {
        let c = Running::start(&rootfs, &id);
        let pid = c.pid();
        let dir = cgroup2_dir(&layout, pid);
        let ids = programs(&layout, &dir);
        assert_eq!(ids.len(), 1, "{}: {ids:?}", dir.display());
        if let Some(listed) = bpftool_cgroup_list(&dir) {
            assert_eq!(
                listed,
                [(
                    ids[0],
                    "cgroup_device".to_owned(),
                    "peapod_devices".to_owned()
                )],
                "{}",
                dir.display()
            );
        }
        open_v1_devices(&layout, pid);
        assert_eq!(
            c.probe(PROBED),
            [Open::Opened, Open::Denied, Open::Denied],
            "mknod of any node, /dev/null, nothing else"
        );
        let out = c.peapod(&["delete", "--force", &id]);
        assert_eq!(out.code, 0, "{out:?}");
        (dir, ids[0])
    };
    assert!(!dir.exists(), "{} left behind", dir.display());
    // The kernel detaches the program when the directory goes, and frees it once nothing
    // holds it, a moment later.
    wait_until("the device program to be freed", || {
        !program_exists(program)
    });
    rootfs.assert_nothing_left();
}

#[test]
fn a_spec_that_allows_a_device_lets_it_through_the_filter() {
    let Some((rootfs, _layout)) = fixture() else {
        return;
    };
    let id = unique("allowed");
    let bundle = rootfs.spec_bundle("bundle", |json| {
        json["process"]["args"] = serde_json::json!(["/bin/sh", "-c", probe_script(PROBED)]);
        json["linux"]["resources"]["devices"] = serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 200, "access": "r"},
        ]);
    });
    let out = rootfs.run_bundle(&bundle, &id);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        probed(&out, PROBED),
        [Open::Opened, Open::ThroughToNoDriver, Open::Denied]
    );
    rootfs.assert_nothing_left();
}

#[test]
fn update_with_new_device_rules_replaces_the_program() {
    let Some((rootfs, layout)) = fixture() else {
        return;
    };
    let id = unique("update");
    let c = Running::start(&rootfs, &id);
    let pid = c.pid();
    let dir = cgroup2_dir(&layout, pid);
    let before = programs(&layout, &dir);
    assert_eq!(before.len(), 1, "{before:?}");
    open_v1_devices(&layout, pid);
    assert_eq!(c.probe(PROBED)[1], Open::Denied);
    let resources = rootfs.scratch().join("resources.json");
    let allow_1_200 = serde_json::json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 200, "access": "r"},
    ]});
    std::fs::write(&resources, allow_1_200.to_string()).expect("resources");
    let resources = resources.display().to_string();
    let out = c.peapod(&["update", "--resources", &resources, &id]);
    assert_eq!(out.code, 0, "{out:?}");
    let after = programs(&layout, &dir);
    assert_eq!(after.len(), 1, "still exactly one: {after:?}");
    assert_ne!(after, before, "a new program");
    // The update wrote the v1 rules too (a hybrid host): open them up again.
    open_v1_devices(&layout, pid);
    // Had the old program stayed, 1:200 would still be refused.
    assert_eq!(
        c.probe(PROBED),
        [Open::Opened, Open::ThroughToNoDriver, Open::Denied]
    );
    wait_until("the old program to be freed", || !program_exists(before[0]));
    // Limits without device rules leave the program alone.
    let out = c.peapod(&["update", "--pids-limit", "100", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(programs(&layout, &dir), after);
    drop(c);
    assert!(!dir.exists(), "{} left behind", dir.display());
    rootfs.assert_nothing_left();
}

#[test]
fn rules_the_kernel_could_not_follow_are_refused_before_anything_is_made() {
    let Some((rootfs, layout)) = fixture() else {
        return;
    };
    let id = unique("carve");
    let bundle = rootfs.spec_bundle("bundle", |json| {
        json["linux"]["resources"]["devices"] = serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "access": "r"},
            {"allow": false, "type": "c", "major": 1, "minor": 200, "access": "r"},
        ]);
    });
    let out = rootfs.run_bundle(&bundle, &id);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("linux.resources.devices: deny c 1:200 r cannot be carved out"),
        "{out:?}"
    );
    let cgroup = Cgroup::locate(&layout, &Cgroup::default_path(&id)).expect("locate");
    let left: Vec<PathBuf> = cgroup.paths().into_iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "{left:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn a_pod_container_is_filtered_and_its_pod_has_no_program() {
    let Some(layout) = cgroup2_layout() else {
        return;
    };
    let Some(mut pods) = Pods::new() else { return };
    let pod = unique("pod");
    pods.create(&pod, &[]);
    let rootfs = pods.rootfs.arg().to_owned();
    let out = pods.peapod(&[
        "run",
        "--pod",
        &pod,
        "--rootfs",
        &rootfs,
        "--name",
        "c",
        "--detach",
        "--",
        "/bin/sleep",
        "600",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let ps = pods.ps_json(&pod);
    let member = ps["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "c"))
        .unwrap_or_else(|| panic!("no container c: {ps}"));
    let id = "c";
    let pid = member["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid: {member}"));
    let dir = cgroup2_dir(&layout, pid);
    let ids = programs(&layout, &dir);
    assert_eq!(ids.len(), 1, "{}: {ids:?}", dir.display());
    let pod_dir = dir.parent().expect("the pod's cgroup");
    assert_eq!(
        programs(&layout, pod_dir),
        Vec::<u32>::new(),
        "{}: a pod's own program would bound its containers' rules",
        pod_dir.display()
    );
    open_v1_devices(&layout, pid);
    let script = probe_script(PROBED);
    let out = pods.peapod(&["exec", id, "/bin/sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        probed(&out, PROBED),
        [Open::Opened, Open::Denied, Open::Denied]
    );
    pods.remove_all();
    assert!(!dir.exists(), "{} left behind", dir.display());
    wait_until("the device program to be freed", || !program_exists(ids[0]));
}

#[test]
fn without_the_privilege_to_load_the_program_the_container_is_refused_in_one_line() {
    let Some((rootfs, layout)) = fixture() else {
        return;
    };
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: no setpriv (util-linux) to drop CAP_SYS_ADMIN and CAP_BPF with");
        return;
    }
    let id = unique("no-bpf");
    let bundle = rootfs.spec_bundle("bundle", |json| {
        json["process"]["args"] = serde_json::json!(["/bin/true"]);
        // No rules: runc's default (deny all but the standard devices) all the same, and no
        // v1 devices file to write, which would need CAP_SYS_ADMIN first.
        json["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("resources");
    });
    // Root without CAP_SYS_ADMIN and CAP_BPF can still make the cgroup, but the kernel
    // refuses to load the program.
    let mut run = Command::new("setpriv");
    run.args([
        "--bounding-set",
        "-sys_admin,-bpf",
        "--inh-caps",
        "-sys_admin,-bpf",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_peapod"))
    .arg("--root")
    .arg(rootfs.state_root())
    .args(["run", "--bundle"])
    .arg(&bundle)
    .arg(&id)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = finish(run.spawn().expect("setpriv"));
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.starts_with(
            "peapod: error: linux.resources.devices: the kernel cannot filter devices for "
        ) && out.stderr.contains("Operation not permitted")
            && out
                .stderr
                .trim_end()
                .ends_with("refusing to run the container with every device open to it"),
        "{out:?}"
    );
    let cgroup = Cgroup::locate(&layout, &Cgroup::default_path(&id)).expect("locate");
    let left: Vec<PathBuf> = cgroup.paths().into_iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "{left:?}");
    rootfs.assert_nothing_left();
}
