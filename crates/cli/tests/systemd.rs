//! The systemd cgroup driver (`--systemd-cgroup`): a container's cgroup is a transient scope
//! made over D-Bus, in the slice `linux.cgroupsPath` (`slice:prefix:name`) names, with its
//! limits as unit properties; `update` changes them, `delete` leaves no unit; and runc on the
//! same bundle gets the same. These tests need systemd as PID 1 (`cargo xtask vm --systemd`
//! boots one); elsewhere they are skipped with the reason.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::bundle::{edit_config, set_command};
use support::kill::Killed;
use support::{finish, wait_with_timeout, Outcome, TestRootfs, TIMEOUT};

/// The fixture where PID 1 is systemd (its `/run/systemd/system`, as `sd_booted(3)`
/// checks), or `None` after saying why the test is skipped.
fn fixture() -> Option<TestRootfs> {
    if !Path::new("/run/systemd/system").is_dir() {
        eprintln!(
            "skipped: PID 1 is not systemd (these tests run under `cargo xtask vm --systemd`)"
        );
        return None;
    }
    TestRootfs::new()
}

/// Whether this host's systemd runs on cgroup v1 hybrid (`cargo xtask vm --systemd --hybrid`):
/// a cgroup2 mount at /sys/fs/cgroup/unified beside the v1 hierarchies.
fn hybrid() -> bool {
    Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
}

/// The fixture where systemd is PID 1 on `want` (hybrid or not), or `None` after saying why
/// the test is skipped.
fn fixture_on(want_hybrid: bool) -> Option<TestRootfs> {
    let (want, other) = match want_hybrid {
        true => ("cgroup v1 hybrid", "--systemd --hybrid"),
        false => ("the unified hierarchy (cgroup v2)", "--systemd"),
    };
    if Path::new("/run/systemd/system").is_dir() && hybrid() != want_hybrid {
        eprintln!("skipped: this test is for systemd on {want} (`cargo xtask vm {other}`)");
        return None;
    }
    fixture()
}

/// `systemctl ARGS...`'s stdout, failing the test when it fails.
fn systemctl(args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("run systemctl");
    assert!(
        out.status.success(),
        "systemctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `systemctl show UNIT -p P...` as `P=VALUE` lines, sorted.
fn show(unit: &str, properties: &[&str]) -> Vec<String> {
    let mut args = vec!["show", unit];
    for p in properties {
        args.extend(["-p", p]);
    }
    let mut lines: Vec<String> = systemctl(&args).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Whether systemd has `unit` loaded (any state).
fn unit_listed(unit: &str) -> bool {
    !systemctl(&["list-units", "--all", "--plain", "--no-legend", unit])
        .trim()
        .is_empty()
}

/// A bundle of the test rootfs running `sleep 300` with `cgroups_path` and `resources`.
fn bundle(
    rootfs: &TestRootfs,
    name: &str,
    cgroups_path: &str,
    resources: serde_json::Value,
) -> PathBuf {
    rootfs.spec_bundle(&format!("bundle-{name}"), |spec| {
        set_command(spec, &["/bin/sleep", "300"]);
        spec["linux"]["cgroupsPath"] = cgroups_path.into();
        spec["linux"]["resources"] = resources;
    })
}

/// A container made by `runtime --systemd-cgroup --root STATE create`, deleted with
/// `--force` on drop (and its unit stopped, should delete have failed to).
struct Scoped {
    runtime: PathBuf,
    state: PathBuf,
    id: String,
    unit: String,
}

impl Scoped {
    fn create(
        runtime: &Path,
        state: &Path,
        bundle: &Path,
        id: &str,
        unit: &str,
    ) -> (Scoped, Duration, String) {
        let log = state.with_extension("stderr");
        let mut cmd = Command::new(runtime);
        cmd.arg("--root")
            .arg(state)
            .args(["--systemd-cgroup", "create", "--bundle"])
            .arg(bundle)
            .arg(id)
            // peapod's debug line with the time StartTransientUnit took.
            .env("PEAPOD_LOG", "peapod_cgroups=debug")
            // The container keeps what it inherits: no pipe the test would wait on.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("stderr file"));
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the runtime");
        let scoped = Scoped {
            runtime: runtime.to_owned(),
            state: state.to_owned(),
            id: id.to_owned(),
            unit: unit.to_owned(),
        };
        let status = wait_with_timeout(&mut child, TIMEOUT);
        let took = started.elapsed();
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "{} create: {err}",
            runtime.display()
        );
        (scoped, took, err)
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(&self.state)
            .arg("--systemd-cgroup")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        finish(cmd.spawn().expect("spawn the runtime"))
    }

    fn pid(&self) -> u32 {
        let out = self.run(&["state", &self.id]);
        assert_eq!(out.code, 0, "state: {}", out.stderr);
        let state: serde_json::Value = serde_json::from_str(&out.stdout).expect("state json");
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("no live pid: {state}"))
    }

    /// Its process's cgroup (the `0::` line of `/proc/PID/cgroup`: the cgroup2 one, also on
    /// a hybrid host).
    fn cgroup(&self) -> String {
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid())).expect("cgroup");
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or_else(|| panic!("no cgroup2 line in {text}"))
            .to_owned()
    }

    /// Its process's cgroup in every hierarchy: `CONTROLLERS:PATH` lines of
    /// `/proc/PID/cgroup` without the hierarchy ids, sorted.
    fn cgroups(&self) -> Vec<String> {
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid())).expect("cgroup");
        let mut lines: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_once(':').map(|(_, rest)| rest.to_owned()))
            .collect();
        lines.sort();
        lines
    }
}

impl Drop for Scoped {
    fn drop(&mut self) {
        let _ = self.run(&["delete", "--force", &self.id]);
        if unit_listed(&self.unit) {
            let _ = Command::new("systemctl")
                .args(["stop", &self.unit])
                .status();
        }
    }
}

fn peapod_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_peapod"))
}

fn limits() -> serde_json::Value {
    serde_json::json!({
        "memory": { "limit": 64 * 1024 * 1024 },
        "pids": { "limit": 50 },
        "cpu": { "quota": 50000, "period": 100000, "shares": 512 }
    })
}

#[test]
fn without_systemd_as_init_the_driver_refuses_the_container_and_leaves_nothing() {
    if Path::new("/run/systemd/system").is_dir() {
        eprintln!("skipped: PID 1 is systemd here; this test is for hosts without it");
        return;
    }
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let id = format!("sdn-{}", std::process::id());
    let dir = bundle(
        &rootfs,
        &id,
        &format!("machine.slice:peapod:{id}"),
        limits(),
    );
    let mut create = rootfs.peapod();
    create
        .args(["--systemd-cgroup", "create", "--bundle"])
        .arg(&dir)
        .arg(&id);
    let out = finish(create.spawn().expect("create"));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("PID 1 is not systemd"),
        "{}",
        out.stderr
    );
    assert!(!Path::new("/sys/fs/cgroup/machine.slice")
        .join(format!("peapod-{id}.scope"))
        .exists());
    rootfs.assert_nothing_left();
}

#[test]
fn a_scope_in_machine_slice_has_the_limits_update_changes_them_and_delete_removes_it() {
    let Some(rootfs) = fixture_on(false) else {
        return;
    };
    let id = format!("sd-{}", std::process::id());
    let unit = format!("peapod-{id}.scope");
    let dir = bundle(
        &rootfs,
        &id,
        &format!("machine.slice:peapod:{id}"),
        limits(),
    );
    let (c, ..) = Scoped::create(&peapod_bin(), &rootfs.state_root(), &dir, &id, &unit);

    assert_eq!(c.cgroup(), format!("/machine.slice/{unit}"));
    let cgroup = Path::new("/sys/fs/cgroup/machine.slice").join(&unit);
    let file = |name: &str| {
        std::fs::read_to_string(cgroup.join(name))
            .expect(name)
            .trim()
            .to_owned()
    };
    assert_eq!(file("memory.max"), "67108864");
    assert_eq!(file("pids.max"), "50");
    assert_eq!(file("cpu.max"), "50000 100000");
    assert_eq!(
        show(
            &unit,
            &[
                "MemoryMax",
                "TasksMax",
                "Delegate",
                "Slice",
                "CPUQuotaPerSecUSec"
            ]
        ),
        [
            "CPUQuotaPerSecUSec=500ms",
            "Delegate=yes",
            "MemoryMax=67108864",
            "Slice=machine.slice",
            "TasksMax=50"
        ]
    );

    let out = c.run(&["update", "--memory", "128m", "--pids-limit", "70", &id]);
    assert_eq!(out.code, 0, "update: {}", out.stderr);
    assert_eq!(
        show(&unit, &["MemoryMax", "TasksMax"]),
        ["MemoryMax=134217728", "TasksMax=70"]
    );
    assert_eq!(file("memory.max"), "134217728");
    assert_eq!(file("pids.max"), "70");

    let out = c.run(&["delete", "--force", &id]);
    assert_eq!(out.code, 0, "delete: {}", out.stderr);
    assert!(!unit_listed(&unit), "{unit} is still loaded after delete");
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    drop(c);
    rootfs.assert_nothing_left();
}

#[test]
fn a_dashed_slice_is_made_with_its_parents() {
    let Some(rootfs) = fixture() else { return };
    let id = format!("sdk-{}", std::process::id());
    // kubelet's shape (kubepods-burstable-podUID.slice:cri-containerd:ID) under a top slice
    // of the test's own, stopped at the end: a real node's kubepods.slice is left alone.
    let pod_slice = format!("peapodtest-burstable-pod{}.slice", std::process::id());
    let unit = format!("cri-containerd-{id}.scope");
    let dir = bundle(
        &rootfs,
        &id,
        &format!("{pod_slice}:cri-containerd:{id}"),
        limits(),
    );
    let (c, ..) = Scoped::create(&peapod_bin(), &rootfs.state_root(), &dir, &id, &unit);
    let expected = format!("/peapodtest.slice/peapodtest-burstable.slice/{pod_slice}/{unit}");
    let seen = c.cgroup();
    drop(c);
    let _ = Command::new("systemctl")
        .args(["stop", "peapodtest.slice"])
        .status();
    assert_eq!(seen, expected);
    assert!(!unit_listed(&unit));
    rootfs.assert_nothing_left();
}

#[test]
fn runc_on_the_same_bundle_gets_the_same_scope_properties() {
    let Some(rootfs) = fixture() else { return };
    let runc = Path::new("/usr/sbin/runc");
    if !runc.exists() {
        eprintln!("skipped: no /usr/sbin/runc to compare with");
        return;
    }
    let pid = std::process::id();
    // On a hybrid host by their v1 names, as runc's legacy driver sets them.
    let (memory, cpu) = match hybrid() {
        true => ("MemoryLimit", "CPUShares"),
        false => ("MemoryMax", "CPUWeight"),
    };
    let properties = [
        memory,
        "TasksMax",
        "CPUQuotaPerSecUSec",
        cpu,
        "Delegate",
        "Slice",
    ];
    let mut seen = Vec::new();
    // The process's cgroup in every hierarchy, the unit's name left out.
    let mut joined = Vec::new();
    let mut took = Vec::new();
    // Three rounds each, for the times printed at the end (under TCG a single one is noise).
    let runtimes = [("peapod", peapod_bin()), ("runc", runc.to_owned())];
    for (round, (name, runtime)) in (0..3).flat_map(|r| runtimes.iter().map(move |x| (r, x))) {
        let id = format!("sdc-{name}-{round}-{pid}");
        let unit = format!("{name}-{id}.scope");
        let dir = bundle(
            &rootfs,
            &id,
            &format!("machine.slice:{name}:{id}"),
            limits(),
        );
        let state = rootfs.scratch().join(format!("state-{name}"));
        let (c, time, log) = Scoped::create(runtime, &state, &dir, &id, &unit);
        assert_eq!(c.cgroup(), format!("/machine.slice/{unit}"), "{name}");
        if round == 0 {
            seen.push(show(&unit, &properties));
            // runc 1.1 does not know the misc controller (peapod joins it too): left out.
            let cgroups = c.cgroups().into_iter().filter(|l| !l.starts_with("misc:"));
            joined.push(
                cgroups
                    .collect::<Vec<_>>()
                    .join("\n")
                    .replace(&unit, "UNIT"),
            );
        }
        let scope = log
            .lines()
            .find(|l| l.contains("made in"))
            .and_then(|l| l.rsplit("made in ").next())
            .map(|t| format!(" (StartTransientUnit to JobRemoved: {t})"))
            .unwrap_or_default();
        took.push(format!("{name} create {time:.2?}{scope}"));
        let out = c.run(&["delete", "--force", &id]);
        assert_eq!(out.code, 0, "{name} delete: {}", out.stderr);
        assert!(!unit_listed(&unit), "{name} left {unit}");
    }
    // The cost beside cgroupfs: the same bundle's create without the driver.
    for round in 0..3 {
        let id = format!("sdc-fs-{round}-{pid}");
        let dir = bundle(&rootfs, &id, "", limits());
        edit_config(&dir, |spec| {
            spec["linux"]
                .as_object_mut()
                .expect("linux")
                .remove("cgroupsPath");
        });
        let mut create = rootfs.peapod();
        create
            .args(["create", "--bundle"])
            .arg(&dir)
            .arg(&id)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let out = finish(create.spawn().expect("create"));
        took.push(format!(
            "peapod (cgroupfs) create {:.2?}",
            started.elapsed()
        ));
        assert_eq!(out.code, 0);
        let delete = rootfs.peapod().args(["delete", "--force", &id]).spawn();
        let out = finish(delete.expect("delete"));
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    println!("measured: {}", took.join(", "));
    assert_eq!(
        seen[0], seen[1],
        "peapod's scope (left) against runc's (right)"
    );
    assert_eq!(
        joined[0], joined[1],
        "peapod's cgroups (left) against runc's (right)"
    );
    rootfs.assert_nothing_left();
}

/// The scope's directory of `unit` in machine.slice in the v1 hierarchy mounted at
/// /sys/fs/cgroup/`hierarchy`.
fn v1_dir(hierarchy: &str, unit: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join("machine.slice")
        .join(unit)
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn on_hybrid_the_scope_is_joined_in_every_hierarchy_and_its_limits_are_in_the_v1_files() {
    let Some(rootfs) = fixture_on(true) else {
        return;
    };
    let id = format!("sdh-{}", std::process::id());
    let unit = format!("peapod-{id}.scope");
    let mut resources = limits();
    resources["cpu"]["cpus"] = "0".into();
    resources["cpu"]["mems"] = "0".into();
    let dir = bundle(
        &rootfs,
        &id,
        &format!("machine.slice:peapod:{id}"),
        resources,
    );
    let (c, ..) = Scoped::create(&peapod_bin(), &rootfs.state_root(), &dir, &id, &unit);

    // systemd put it in its hierarchies (cpu, memory, pids, name=systemd, the cgroup2 one),
    // peapod in the others (cpuset, freezer, ...): the same cgroup everywhere.
    let path = format!("/machine.slice/{unit}");
    let cgroups = c.cgroups();
    assert!(cgroups.len() > 5, "{cgroups:?}");
    for line in &cgroups {
        assert!(line.ends_with(&format!(":{path}")), "{line} in {cgroups:?}");
    }
    for (hierarchy, file, value) in [
        ("memory", "memory.limit_in_bytes", "67108864"),
        ("pids", "pids.max", "50"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.shares", "512"),
        ("cpuset", "cpuset.cpus", "0"),
    ] {
        let dir = v1_dir(hierarchy, &unit);
        assert_eq!(read_trimmed(&dir.join(file)), value, "{}", dir.display());
    }
    assert_eq!(
        show(
            &unit,
            &["MemoryLimit", "TasksMax", "CPUShares", "Delegate", "Slice"]
        ),
        [
            "CPUShares=512",
            "Delegate=yes",
            "MemoryLimit=67108864",
            "Slice=machine.slice",
            "TasksMax=50"
        ]
    );

    // The freezer is a hierarchy systemd leaves alone on v1: peapod's directory there works.
    let freezer = v1_dir("freezer", &unit).join("freezer.state");
    let out = c.run(&["start", &id]);
    assert_eq!(out.code, 0, "start: {}", out.stderr);
    let out = c.run(&["pause", &id]);
    assert_eq!(out.code, 0, "pause: {}", out.stderr);
    assert_eq!(read_trimmed(&freezer), "FROZEN");
    let out = c.run(&["resume", &id]);
    assert_eq!(out.code, 0, "resume: {}", out.stderr);
    assert_eq!(read_trimmed(&freezer), "THAWED");

    let out = c.run(&["update", "--memory", "128m", "--pids-limit", "70", &id]);
    assert_eq!(out.code, 0, "update: {}", out.stderr);
    assert_eq!(
        show(&unit, &["MemoryLimit", "TasksMax"]),
        ["MemoryLimit=134217728", "TasksMax=70"]
    );
    let memory = v1_dir("memory", &unit).join("memory.limit_in_bytes");
    assert_eq!(read_trimmed(&memory), "134217728");

    // The device program is on the scope's cgroup2 directory: with the v1 devices controller
    // opened up (systemd writes that one itself), opening 1:200 (a number of the mem driver
    // that no device has) is still refused, and /dev/null is not.
    let devices = v1_dir("devices", &unit);
    println!(
        "devices.list after update: {:?}",
        read_trimmed(&devices.join("devices.list"))
    );
    std::fs::write(devices.join("devices.allow"), "a *:* rwm").expect("devices.allow");
    let probe = "for n in 1:3 1:200; do d=/dev/probe-${n#*:}; rm -f $d; \
                 mknod $d c ${n%:*} ${n#*:} && if err=$( (: < $d) 2>&1 ); then echo \"$n opened\"; \
                 else echo \"$n $err\"; fi; rm -f $d; done";
    let out = c.run(&["exec", &id, "/bin/sh", "-c", probe]);
    assert_eq!(out.code, 0, "exec: {}", out.stderr);
    assert!(out.stdout.contains("1:3 opened"), "{}", out.stdout);
    let denied = out.stdout.lines().find(|l| l.starts_with("1:200 "));
    assert!(
        denied.is_some_and(|l| l.contains("Operation not permitted")),
        "{}",
        out.stdout
    );

    let out = c.run(&["delete", "--force", &id]);
    assert_eq!(out.code, 0, "delete: {}", out.stderr);
    assert!(!unit_listed(&unit), "{unit} is still loaded after delete");
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").expect("/sys/fs/cgroup");
    for hierarchy in hierarchies.flatten() {
        let left = hierarchy.path().join("machine.slice").join(&unit);
        assert!(!left.exists(), "{} is left", left.display());
    }
    drop(c);
    rootfs.assert_nothing_left();
}

/// A pod made under the systemd driver: `pod rm -f` on drop, then its slice stopped should
/// that have failed to.
struct SlicedPod {
    pods: support::pods::Pods,
    name: String,
}

impl SlicedPod {
    /// `peapod --systemd-cgroup pod ARGS...` (`create` or `play`) of pod `name`.
    fn make(name: &str, args: &[&str]) -> Option<SlicedPod> {
        let pods = support::pods::Pods::new()?;
        let init = pods.init.display().to_string();
        let made = SlicedPod {
            pods,
            name: name.to_owned(),
        };
        let mut full = vec!["--systemd-cgroup", "pod"];
        full.extend(args.iter().take(1));
        full.extend(["--init-path", &init, "--network", "none"]);
        full.extend(args.iter().skip(1));
        let out = made.pods.peapod(&full);
        assert_eq!(out.code, 0, "{full:?}: {out:?}");
        Some(made)
    }

    /// The slice from `pod ps --format json`, its cgroup directory and the infra pid.
    fn slice(&self) -> (String, PathBuf, u32) {
        let ps = self.pods.ps_json(&self.name);
        let slice = ps["cgroup_unit"].as_str().expect("a slice").to_owned();
        let paths = ps["cgroup_paths"].as_array().expect("cgroup_paths");
        assert_eq!(paths.len(), 1, "{ps}");
        let dir = PathBuf::from(paths[0].as_str().expect("a path"));
        let infra = ps["infra_pid"].as_u64().expect("the infra pid") as u32;
        (slice, dir, infra)
    }

    fn remove(&self) {
        let out = self.pods.peapod(&["pod", "rm", "-f", &self.name]);
        assert_eq!(out.code, 0, "pod rm: {out:?}");
    }
}

impl Drop for SlicedPod {
    fn drop(&mut self) {
        let ps = self
            .pods
            .peapod(&["pod", "ps", "--format", "json", &self.name]);
        let slice = serde_json::from_str::<serde_json::Value>(&ps.stdout)
            .ok()
            .and_then(|ps| ps["cgroup_unit"].as_str().map(str::to_owned));
        let _ = self.pods.peapod(&["pod", "rm", "-f", &self.name]);
        if let Some(slice) = slice.filter(|s| unit_listed(s)) {
            let _ = Command::new("systemctl").args(["stop", &slice]).status();
        }
    }
}

/// `/proc/PID/cgroup` of `pid`, `0::` stripped.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    text.trim().trim_start_matches("0::").to_owned()
}

#[test]
fn a_pod_under_the_driver_is_a_slice_with_its_limits_and_its_members_are_scopes_in_it() {
    // A pod's slice needs v2 (it is refused on hybrid, in one line).
    let Some(_rootfs) = fixture_on(false) else {
        return;
    };
    let name = format!("sdpod-{}", std::process::id());
    let Some(pod) = SlicedPod::make(
        &name,
        &["create", "--memory", "64m", "--pids-limit", "40", &name],
    ) else {
        return;
    };
    let (slice, dir, infra) = pod.slice();
    // As podman names a pod's (`machine-libpod_pod_ID.slice`), the name escaped.
    let own = format!("peapod_pod_sdpod\\x2d{}_", std::process::id());
    assert!(slice.starts_with(&format!("machine-{own}")), "{slice}");
    assert_eq!(dir, Path::new("/sys/fs/cgroup/machine.slice").join(&slice));
    assert_eq!(
        show(&slice, &["MemoryMax", "TasksMax"]),
        ["MemoryMax=67108864", "TasksMax=40"]
    );
    let file = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    assert_eq!(file("memory.max").trim(), "67108864");
    let stem = slice
        .trim_start_matches("machine-")
        .trim_end_matches(".slice");
    let infra_scope = format!("{stem}-infra.scope");
    assert_eq!(
        cgroup_of(infra),
        format!("/machine.slice/{slice}/{infra_scope}")
    );
    // A member, by a `run --pod` without the flag: the pod decides.
    let rootfs = pod.pods.rootfs.arg().to_owned();
    let out = pod.pods.peapod(&[
        "run",
        "-d",
        "--pod",
        &name,
        "--name",
        "member",
        "--memory",
        "32m",
        "--rootfs",
        &rootfs,
        "--",
        "/bin/sleep",
        "300",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let member_scope = format!("{stem}-member.scope");
    let member = support::pods::member_pid(&pod.pods.ps_json(&name), "member");
    assert_eq!(
        cgroup_of(member),
        format!("/machine.slice/{slice}/{member_scope}")
    );
    assert_eq!(
        show(&member_scope, &["Delegate", "MemoryMax", "Slice"]),
        [
            "Delegate=yes",
            "MemoryMax=33554432",
            &format!("Slice={slice}")
        ]
    );
    pod.remove();
    for unit in [&slice, &infra_scope, &member_scope] {
        assert!(!unit_listed(unit), "{unit} is left after pod rm");
    }
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn a_played_pod_under_the_driver_is_a_slice_with_the_sum_of_its_limits() {
    // A pod's slice needs v2 (it is refused on hybrid, in one line).
    let Some(_rootfs) = fixture_on(false) else {
        return;
    };
    let name = format!("sdplay-{}", std::process::id());
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let manifest = rootfs.scratch().join("pod.yaml");
    let member = |name: &str, memory: &str| {
        format!(
            "  - {{name: {name}, image: {}, command: [/bin/sleep, '300'], \
             resources: {{limits: {{memory: {memory}}}}}}}\n",
            rootfs.arg()
        )
    };
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n{}{}",
        member("a", "48Mi"),
        member("b", "16Mi")
    );
    std::fs::write(&manifest, text).expect("manifest");
    let manifest = manifest.display().to_string();
    let Some(pod) = SlicedPod::make(&name, &["play", &manifest]) else {
        return;
    };
    let (slice, dir, _) = pod.slice();
    assert_eq!(show(&slice, &["MemoryMax"]), ["MemoryMax=67108864"]);
    let stem = slice
        .trim_start_matches("machine-")
        .trim_end_matches(".slice");
    let ps = pod.pods.ps_json(&name);
    for (member, limit) in [("a", "50331648"), ("b", "16777216")] {
        let id = format!("{name}-{member}");
        let pid = support::pods::member_pid(&ps, &id);
        let scope = format!("{stem}-{}.scope", id.replace('-', "\\x2d"));
        assert_eq!(cgroup_of(pid), format!("/machine.slice/{slice}/{scope}"));
        assert_eq!(show(&scope, &["MemoryMax"]), [format!("MemoryMax={limit}")]);
    }
    pod.remove();
    assert!(!unit_listed(&slice), "{slice} is left after pod rm");
    assert!(!dir.exists(), "{} is left", dir.display());
}

/// Where a scope's cgroup would be, on v2 and on a hybrid host's cgroup2 mount.
fn scope_dirs(slice: &str, unit: &str) -> [PathBuf; 2] {
    [
        Path::new("/sys/fs/cgroup").join(slice).join(unit),
        Path::new("/sys/fs/cgroup/unified").join(slice).join(unit),
    ]
}

/// Scope `unit` in `slice` is gone: systemd no longer lists it, and it has no cgroup.
fn assert_no_scope(slice: &str, unit: &str) {
    assert!(!unit_listed(unit), "{unit} is left");
    for dir in scope_dirs(slice, unit) {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

/// `peapod --systemd-cgroup create` of container `id` in `machine.slice`, SIGKILLed at the
/// failpoint `point`: `create-scope` once systemd has made the scope, with the container's
/// init in it; `create` just before (the unit is recorded, not made). The returned guard
/// deletes the container and stops its unit, should the test fail.
fn killed_at(rootfs: &TestRootfs, id: &str, point: &str) -> Scoped {
    let unit = format!("peapod-{id}.scope");
    let dir = bundle(rootfs, id, &format!("machine.slice:peapod:{id}"), limits());
    let pid_file = rootfs.scratch().join("failpoint.pid");
    let guard = Scoped {
        runtime: peapod_bin(),
        state: rootfs.state_root(),
        id: id.to_owned(),
        unit: unit.clone(),
    };
    let mut create = Command::new(peapod_bin());
    create
        .arg("--root")
        .arg(rootfs.state_root())
        .args(["--systemd-cgroup", "create", "--bundle"])
        .arg(&dir)
        .arg(id)
        .env("PEAPOD_FAILPOINT", point)
        .env("PEAPOD_FAILPOINT_PID_FILE", &pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut killed = Killed(create.spawn().expect("spawn peapod create"));
    support::wait_until("peapod at its failpoint, or gone", || {
        pid_file.exists() || killed.0.try_wait().ok().flatten().is_some()
    });
    assert!(
        pid_file.exists(),
        "peapod create ended before its failpoint"
    );
    let made = point == "create-scope";
    assert_eq!(unit_listed(&unit), made, "{unit} at the failpoint {point}");
    drop(killed);
    guard
}

#[test]
fn a_create_killed_with_its_scope_made_leaves_no_unit_after_the_next_command() {
    let Some(rootfs) = fixture() else { return };
    let id = format!("sdr-{}", std::process::id());
    let scoped = killed_at(&rootfs, &id, "create-scope");

    // Any command that reaps (as `list` does) removes the killed create's container.
    let out = finish(rootfs.peapod().arg("list").spawn().expect("list"));
    assert_eq!(out.code, 0, "list: {}", out.stderr);
    assert!(
        !out.stdout.contains(&id),
        "{id} is still listed: {}",
        out.stdout
    );
    assert_no_scope("machine.slice", &scoped.unit);
    drop(scoped);
    rootfs.assert_nothing_left();
}

#[test]
fn delete_force_stops_the_scope_of_a_record_that_does_not_name_it() {
    let Some(rootfs) = fixture() else { return };
    let id = format!("sdu-{}", std::process::id());
    let scoped = killed_at(&rootfs, &id, "create-scope");
    // A record without its unit (as an older peapod wrote it): the unit is the one its
    // cgroup's directory is named after, stopped since systemd has it as peapod's.
    let state = rootfs.state_root().join(&id).join("state.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state.json")).expect("json");
    assert_eq!(record["cgroup_unit"], scoped.unit.as_str(), "{record}");
    record
        .as_object_mut()
        .expect("a record")
        .remove("cgroup_unit");
    std::fs::write(&state, record.to_string()).expect("write state.json");

    // Without --systemd-cgroup: the record says all there is.
    let out = finish(
        rootfs
            .peapod()
            .args(["delete", "--force", &id])
            .spawn()
            .expect("delete"),
    );
    assert_eq!(out.code, 0, "delete: {}", out.stderr);
    assert_no_scope("machine.slice", &scoped.unit);
    drop(scoped);
    rootfs.assert_nothing_left();
}

#[test]
fn a_create_killed_before_its_scope_is_made_is_reaped_without_error() {
    let Some(rootfs) = fixture() else { return };
    let id = format!("sdb-{}", std::process::id());
    // The record names a unit systemd never made: stopping it is not an error.
    let scoped = killed_at(&rootfs, &id, "create");
    let out = finish(rootfs.peapod().arg("list").spawn().expect("list"));
    assert_eq!(out.code, 0, "list: {}", out.stderr);
    assert!(
        !out.stderr.contains("cannot remove"),
        "the reaper failed: {}",
        out.stderr
    );
    assert!(!unit_listed(&scoped.unit), "{} is left", scoped.unit);
    drop(scoped);
    rootfs.assert_nothing_left();
}
