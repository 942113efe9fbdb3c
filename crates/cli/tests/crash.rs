//! `peapod` killed with SIGKILL at chosen points (the `PEAPOD_FAILPOINT` variable, or a CNI
//! plugin of the test's that blocks on a fifo), then one ordinary command, then nothing
//! left: records, cgroups, writable layers, mounts, veths, leases, iptables lines,
//! processes. And a corrupt `images.json` or `pod.json` that no longer breaks every command.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use peapod_cgroups::{Cgroup, Layout};
use support::kill::Killed;
use support::net::{available, pods_on, TestNet};
use support::pods::Pods;
use support::{finish, wait_until, Outcome, TestRootfs};

/// Kills the process whose pid is in a file (a plugin the test's `peapod` started) on drop.
struct KillPidFile(PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Removes the default cgroup of a container on drop (the test's own clean-up).
struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    fn of(id: &str) -> CgroupGuard {
        CgroupGuard(
            Layout::detect()
                .ok()
                .and_then(|layout| Cgroup::locate(&layout, &Cgroup::default_path(id)).ok()),
        )
    }

    fn existing(&self) -> Vec<PathBuf> {
        self.0
            .iter()
            .flat_map(Cgroup::paths)
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cgroup) = &self.0 {
            let _ = cgroup.kill_all(std::time::Duration::from_secs(5));
            let _ = cgroup.remove();
        }
    }
}

/// A `peapod` standing at a failpoint: the process started, and the one at the point (the
/// same, or the monitor a `run -d` forked); both SIGKILLed and reaped on drop.
struct AtFailpoint {
    started: Killed,
    pid: Option<i32>,
}

impl AtFailpoint {
    /// SIGKILL to the process at the failpoint, and waits for the one started to end.
    fn kill(mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = self.started.0.wait();
        wait_until("the killed peapod to be gone", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
        });
    }
}

impl Drop for AtFailpoint {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Starts `command` with `PEAPOD_FAILPOINT=point` and waits until it stands there.
fn stopped_at(mut command: Command, point: &str, scratch: &Path) -> AtFailpoint {
    let pid_file = scratch.join(format!("failpoint-{point}.pid"));
    let _ = std::fs::remove_file(&pid_file);
    command
        .env("PEAPOD_FAILPOINT", point)
        .env("PEAPOD_FAILPOINT_PID_FILE", &pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Killed(command.spawn().expect("spawn peapod"));
    wait_until("peapod at its failpoint", || pid_file.exists());
    let pid = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    AtFailpoint {
        started,
        pid: Some(pid),
    }
}

/// A store of the test's own with the busybox image loaded: its directory and what `image
/// load` printed; `None` (said why) without the image.
fn busybox_store(rootfs: &TestRootfs) -> Option<(PathBuf, Outcome)> {
    let Some(archive) = std::env::var_os("PEAPOD_BUSYBOX_IMAGE") else {
        eprintln!("skipped: PEAPOD_BUSYBOX_IMAGE is not set (`cargo xtask test` writes it)");
        return None;
    };
    let storage = rootfs.scratch().join("storage");
    let load = out(in_store(rootfs, &storage)
        .args(["image", "load", "-i"])
        .arg(&archive));
    assert_eq!(load.code, 0, "{load:?}");
    Some((storage, load))
}

/// `peapod` of the test's state root, with its image store at `storage`.
fn in_store(rootfs: &TestRootfs, storage: &Path) -> Command {
    let mut cmd = rootfs.peapod();
    cmd.env("PEAPOD_STORAGE", storage);
    cmd
}

fn out(command: &mut Command) -> Outcome {
    finish(command.spawn().expect("spawn peapod"))
}

#[test]
fn a_run_or_create_killed_before_its_process_is_reaped_by_the_next_command() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let bundle = rootfs.spec_bundle("bundle", |_| {});
    let bundle_arg = bundle.to_str().expect("utf-8").to_owned();
    let cases: [(&str, Vec<&str>, Vec<&str>); 3] = [
        (
            "crash-run",
            vec![
                "run",
                "--rootfs",
                rootfs.arg(),
                "--name",
                "crash-run",
                "--",
                "/bin/true",
            ],
            vec!["list"],
        ),
        (
            "crash-detached",
            vec![
                "run",
                "-d",
                "--rootfs",
                rootfs.arg(),
                "--name",
                "crash-detached",
            ],
            vec!["ps", "-a"],
        ),
        (
            "crash-create",
            vec!["create", "--bundle", &bundle_arg, "crash-create"],
            vec!["run", "--rootfs", rootfs.arg(), "--", "/bin/true"],
        ),
    ];
    for (id, args, next) in cases {
        let cgroup = CgroupGuard::of(id);
        let mut command = rootfs.peapod();
        command.args(&args);
        if id == "crash-detached" {
            command.args(["--", "/bin/sleep", "30"]);
        }
        let at = stopped_at(command, "create", rootfs.scratch());
        // What it made so far: its record and its cgroup.
        let dir = rootfs.state_root().join(id);
        assert!(dir.join("state.json").exists(), "{id}: no record yet");
        assert!(!cgroup.existing().is_empty(), "{id}: no cgroup yet");
        at.kill();
        let next_out = out(rootfs.peapod().args(&next));
        assert_eq!(next_out.code, 0, "{id}: {next:?}: {next_out:?}");
        assert!(
            !next_out.stdout.contains(id),
            "{next:?} lists {id}: {next_out:?}"
        );
        assert!(!dir.exists(), "{id}: {next:?} left its record");
        assert_eq!(
            cgroup.existing(),
            Vec::<PathBuf>::new(),
            "{id}: cgroup left"
        );
    }
    rootfs.assert_nothing_left();
}

#[test]
fn an_image_container_killed_in_create_loses_its_writable_layer_to_the_next_ps() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some((storage, load)) = busybox_store(&rootfs) else {
        return;
    };
    let peapod = || in_store(&rootfs, &storage);
    let image = load
        .stdout
        .lines()
        .chain(load.stderr.lines())
        .find_map(|l| l.split_whitespace().find(|w| w.contains("busybox")))
        .map(|w| w.trim_matches(|c: char| c == '"' || c == ',').to_owned())
        .unwrap_or_else(|| "busybox".to_owned());
    let cgroup = CgroupGuard::of("crash-image");
    let mut command = peapod();
    command.args(["run", "--name", "crash-image", &image, "/bin/true"]);
    let at = stopped_at(command, "create", rootfs.scratch());
    let layer = storage.join("containers/crash-image");
    assert!(layer.join("upper").is_dir(), "no writable layer yet");
    at.kill();
    let ps = out(peapod().args(["ps", "-a"]));
    assert_eq!(ps.code, 0, "{ps:?}");
    assert!(!layer.exists(), "ps left the writable layer");
    assert!(!rootfs.state_root().join("crash-image").exists());
    assert_eq!(cgroup.existing(), Vec::<PathBuf>::new());
    rootfs.assert_nothing_left();
}

#[test]
fn a_corrupt_images_json_is_rebuilt_from_the_store() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some((storage, _)) = busybox_store(&rootfs) else {
        return;
    };
    let peapod = || in_store(&rootfs, &storage);
    let listed = |out: &Outcome| -> Vec<serde_json::Value> {
        serde_json::from_str(&out.stdout).expect("images JSON")
    };
    let before = out(peapod().args(["images", "--format", "json"]));
    assert_eq!(before.code, 0, "{before:?}");
    let before = listed(&before);
    assert_eq!(before.len(), 1, "{before:#?}");
    // Cut after the first record's names: the name can be read, the file cannot.
    let file = storage.join("images.json");
    let text = std::fs::read_to_string(&file).expect("images.json");
    let cut = text.find(']').expect("names") + 1;
    std::fs::write(&file, &text[..cut]).expect("truncate");

    let after = out(peapod().args(["images", "--format", "json"]));
    assert_eq!(after.code, 0, "{after:?}");
    let warnings: Vec<&str> = after
        .stderr
        .lines()
        .filter(|l| l.contains("images.json"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {after:?}");
    assert!(warnings[0].contains("rebuilt"), "{warnings:?}");
    let after = listed(&after);
    assert_eq!(after.len(), 1, "{after:#?}");
    for key in ["id", "names"] {
        assert_eq!(
            after[0][key], before[0][key],
            "{key}: {after:#?} {before:#?}"
        );
    }
    // Written back: the next command says nothing, and a container runs from the image.
    let name = before[0]["names"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!name.is_empty(), "{before:#?}");
    let run = out(peapod().args([
        "run",
        "--rm",
        "--entrypoint",
        "/bin/echo",
        &name,
        "still here",
    ]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.trim(), "still here");
    assert!(!run.stderr.contains("images.json"), "{run:?}");
    rootfs.assert_nothing_left();
}

/// A test network whose chain ends in `slow`, a plugin of the test's that says its pid and
/// then waits on a fifo nobody opens: `peapod` stands in the middle of ADD, after bridge,
/// portmap and firewall made their veth, lease and rules.
struct SlowNet {
    net: TestNet,
    plugins: PathBuf,
    _plugin: KillPidFile,
}

impl SlowNet {
    fn new() -> SlowNet {
        let net = TestNet::new(24);
        let plugins = net.dir.join("plugins");
        std::fs::create_dir(&plugins).expect("plugins");
        for kind in ["bridge", "host-local", "portmap", "firewall", "tuning"] {
            std::os::unix::fs::symlink(Path::new("/usr/lib/cni").join(kind), plugins.join(kind))
                .expect("symlink");
        }
        let fifo = net.dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let pid_file = net.dir.join("slow.pid");
        let script = format!(
            "#!/bin/sh\n# ADD: says its pid, then waits for a writer on the fifo; DEL: nothing to undo.\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho $$ > {pid}.tmp && mv {pid}.tmp {pid}\nread line < {fifo}\nexit 1\n",
            pid = pid_file.display(),
            fifo = fifo.display()
        );
        let slow = plugins.join("slow");
        std::fs::write(&slow, script).expect("plugin");
        std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let conflist = net.dir.join(format!("net.d/{}.conflist", net.name));
        let mut list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&conflist).expect("conflist")).expect("json");
        list["plugins"]
            .as_array_mut()
            .expect("plugins")
            .push(serde_json::json!({"type": "slow"}));
        std::fs::write(&conflist, list.to_string()).expect("conflist");
        SlowNet {
            _plugin: KillPidFile(pid_file),
            net,
            plugins,
        }
    }

    fn env(&self) -> Vec<(String, PathBuf)> {
        let mut env = self.net.env();
        env.push(("PEAPOD_CNI_PLUGIN_DIR".into(), self.plugins.clone()));
        env
    }

    /// Waits until the slow plugin runs, and removes its pid file for the next time.
    fn wait_in_add(&self) {
        let pid_file = &self._plugin.0;
        wait_until("the slow plugin's ADD", || pid_file.exists());
    }

    fn plugin_done(&self) {
        drop(KillPidFile(self._plugin.0.clone()));
        let _ = std::fs::remove_file(&self._plugin.0);
    }
}

fn pod_list(pods: &Pods) -> Vec<serde_json::Value> {
    let out = pods.peapod(&["pod", "list", "--format", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).expect("pod list JSON")
}

/// The directories of the cgroup of pod `name` of the state root of `pods` that exist.
fn pod_cgroup_dirs(pods: &Pods, name: &str) -> Vec<PathBuf> {
    let Ok(layout) = Layout::detect() else {
        return Vec::new();
    };
    support::pods::pod_cgroup(&layout, &pods.rootfs.state_root(), name)
        .paths()
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

fn infra_of(pods: &Pods, name: &str) -> Option<i32> {
    let record = pods
        .rootfs
        .state_root()
        .join(".pods")
        .join(name)
        .join("pod.json");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(record).ok()?).ok()?;
    record["infra"]["pid"].as_i64().map(|p| p as i32)
}

#[test]
fn a_pod_create_killed_in_cni_add_is_creating_then_removed_with_its_rules() {
    if !available() {
        return;
    }
    let slow = SlowNet::new();
    let Some(mut pods) = Pods::new() else {
        return;
    };
    pods.env = slow.env();
    let init = pods.init.display().to_string();
    for (round, next) in ["pod rm", "pod list"].iter().enumerate() {
        let name = format!("crashpod{round}x{}", std::process::id());
        pods.names.push(name.clone());
        let mut create = pods.command();
        create
            .args([
                "pod",
                "create",
                "--init-path",
                &init,
                "--network",
                &slow.net.name,
            ])
            .args([
                "-p",
                &format!("{}:80", 20_000 + std::process::id() % 20_000 + round as u32),
            ])
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut killed = Killed(create.spawn().expect("spawn pod create"));
        slow.wait_in_add();
        let infra = infra_of(&pods, &name).expect("the infra process runs");
        // While its creator lives: `creating`, with no address; `pod list` does not wait.
        let listed = pod_list(&pods);
        let row = listed.iter().find(|p| p["name"] == *name).expect("listed");
        assert_eq!(row["status"], "creating", "{listed:#?}");
        assert!(row["ip"].is_null(), "{listed:#?}");
        assert!(
            !slow.net.leftovers().is_empty(),
            "the plugins before `slow` made nothing"
        );
        killed.0.kill().expect("SIGKILL pod create");
        killed.0.wait().expect("reap");
        slow.plugin_done();
        let out = match *next {
            "pod rm" => {
                let listed = pod_list_without_reaping(&pods, &name);
                assert_eq!(listed, "failed");
                pods.peapod(&["pod", "rm", &name])
            }
            _ => pods.peapod(&["pod", "list"]),
        };
        assert_eq!(out.code, 0, "{next}: {out:?}");
        assert!(!out.stdout.contains(&name), "{next}: {out:?}");
        assert!(
            !pods.rootfs.state_root().join(".pods").join(&name).exists(),
            "{next} left the pod"
        );
        wait_until("the infra process to be gone", || {
            std::fs::read_to_string(format!("/proc/{infra}/stat"))
                .map_or(true, |s| s.contains(") Z"))
        });
        assert_eq!(slow.net.leftovers(), Vec::<String>::new(), "{next}");
        assert_eq!(
            pod_cgroup_dirs(&pods, &name),
            Vec::<PathBuf>::new(),
            "{next}"
        );
        pods.names.retain(|n| *n != name);
    }
    pods.remove_all();
}

/// The status `pod ps --format json` gives (it does not reap).
fn pod_list_without_reaping(pods: &Pods, name: &str) -> String {
    let ps = pods.ps_json(name);
    ps["status"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_killed_run_with_a_network_is_undone_by_the_next_list() {
    if !available() {
        return;
    }
    let net = TestNet::new(24);
    let Some(pods) = Pods::new() else {
        return;
    };
    // Its own name: its network's CNI attachments are the host's, not the state root's.
    let id = format!("crash-net-{}", std::process::id());
    let mut run = pods.rootfs.peapod();
    run.envs(net.env())
        .args(["run", "--net", &net.name])
        .args([
            "-p",
            &format!("{}:80", 40_000 + std::process::id() % 20_000),
        ])
        .args(["--rootfs", pods.rootfs.arg(), "--name", &id])
        .args(["--", "/bin/sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(pods.rootfs.scratch().join("run.err")).expect("file"));
    let mut killed = Killed(run.spawn().expect("spawn run --net"));
    wait_until("the container to run", || {
        if let Ok(Some(status)) = killed.0.try_wait() {
            let err = std::fs::read_to_string(pods.rootfs.scratch().join("run.err"));
            panic!("run --net ended ({status}): {err:?}");
        }
        let state = pods.peapod(&["state", &id]);
        serde_json::from_str::<serde_json::Value>(&state.stdout)
            .is_ok_and(|s| s["status"] == "running")
    });
    assert!(!net.leftovers().is_empty(), "no attachment made");
    killed.0.kill().expect("SIGKILL run");
    killed.0.wait().expect("reap");
    let out = finish(
        pods.rootfs
            .peapod()
            .envs(net.env())
            .arg("list")
            .spawn()
            .expect("list"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains(&id), "{out:?}");
    assert_eq!(net.leftovers(), Vec::<String>::new(), "{out:?}");
    assert_eq!(
        pod_cgroup_dirs(&pods, &format!("net-{id}")),
        Vec::<PathBuf>::new(),
        "{out:?}"
    );
    pods.rootfs.assert_nothing_left();
}

#[test]
fn a_corrupt_pod_json_is_listed_unknown_and_pod_rm_f_salvages_it() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let (whole, broken) = (
        format!("whole{}", std::process::id()),
        format!("broken{}", std::process::id()),
    );
    pods.create(&whole, &[]);
    pods.create(&broken, &["--network", &net.name]);
    let infra = infra_of(&pods, &broken).expect("infra");
    let record = pods
        .rootfs
        .state_root()
        .join(".pods")
        .join(&broken)
        .join("pod.json");
    let text = std::fs::read_to_string(&record).expect("pod.json");
    std::fs::write(&record, &text[..text.len() / 2]).expect("truncate");

    let out = pods.peapod(&["pod", "list", "--format", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("json");
    let status = |name: &str| {
        listed
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["status"].clone())
    };
    assert_eq!(status(&whole), Some("running".into()), "{listed:#?}");
    assert_eq!(status(&broken), Some("unknown".into()), "{listed:#?}");
    assert!(
        out.stderr.contains(&format!("pod rm -f {broken}")),
        "{out:?}"
    );

    let rm = pods.peapod(&["pod", "rm", &broken]);
    assert_ne!(rm.code, 0, "{rm:?}");
    let rm = pods.peapod(&["pod", "rm", "-f", &broken]);
    assert_eq!(rm.code, 0, "{rm:?}");
    pods.names.retain(|n| *n != broken);
    wait_until("the infra process to be gone", || {
        std::fs::read_to_string(format!("/proc/{infra}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    assert_eq!(
        pod_cgroup_dirs(&pods, &broken),
        Vec::<PathBuf>::new(),
        "its cgroup"
    );
    assert_eq!(net.leftovers(), Vec::<String>::new());
    pods.remove_all();
}

#[test]
fn the_default_network_of_another_config_dir_has_its_own_bridge_and_leases() {
    if !available() {
        return;
    }
    let Some(mut pods) = Pods::new() else {
        return;
    };
    let dir = pods.rootfs.scratch().join("cni");
    let (config, cache) = (dir.join("net.d"), dir.join("cache"));
    std::fs::create_dir_all(&config).expect("net.d");
    pods.env = vec![
        ("PEAPOD_CNI_CONFIG_DIR".into(), config.clone()),
        ("PEAPOD_CNI_CACHE_DIR".into(), cache.clone()),
    ];
    let bridge = peapod_pod::peapod_net::default_bridge(&config);
    // Whatever happens below, the bridge and its rules go with the test.
    struct Bridge(String);
    impl Drop for Bridge {
        fn drop(&mut self) {
            support::net::remove_rules_naming(&[&self.0]);
            let _ = Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    let _bridge = Bridge(bridge.clone());
    let name = format!("defaultnet{}", std::process::id());
    pods.create(&name, &["--network", "peapod"]);
    let list: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config.join("peapod.conflist")).expect("the default network written"),
    )
    .expect("json");
    assert_eq!(list["name"], "peapod");
    assert_eq!(list["plugins"][0]["bridge"], *bridge, "{list:#}");
    assert_ne!(bridge, "peapod0");
    let leases = cache.join("networks").join(&bridge).join("peapod");
    assert_eq!(
        list["plugins"][0]["ipam"]["dataDir"],
        *leases.parent().expect("dir").to_str().expect("utf-8")
    );
    let ip = pod_list(&pods)[0]["ip"]
        .as_str()
        .expect("an address")
        .to_owned();
    assert!(
        leases.join(&ip).exists(),
        "no lease {ip} in {}",
        leases.display()
    );
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .expect("ip");
    assert!(link.status.success(), "no bridge {bridge}");
    let subnet = list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
        .as_str()
        .expect("subnet")
        .to_owned();
    pods.remove_all();
    assert!(!leases.join(&ip).exists(), "the lease stayed");
    let rules = String::from_utf8_lossy(
        &Command::new("iptables-save")
            .output()
            .expect("iptables-save")
            .stdout,
    )
    .into_owned();
    let prefix = &subnet[..subnet.rfind('.').expect("dotted")];
    assert!(
        !rules
            .lines()
            .any(|l| l.contains(&bridge) || l.contains(&format!("{prefix}."))),
        "rules left naming {bridge} or {subnet}"
    );
}

#[test]
fn a_pod_play_killed_before_its_monitor_runs_is_removed_by_the_next_pod_list() {
    let Some(mut pods) = Pods::new() else {
        return;
    };
    let name = format!("halfplayed{}", std::process::id());
    // Removed on drop should the test fail before the pod is reaped.
    pods.names.push(name.clone());
    let file = pods.rootfs.scratch().join("pod.yaml");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {}\n    command: [/bin/sleep, '100']\n",
        pods.rootfs.arg()
    );
    std::fs::write(&file, manifest).expect("manifest");
    let mut play = pods.rootfs.peapod();
    play.args(["pod", "play", "--network", "none", "--init-path"])
        .arg(&pods.init)
        .arg(&file);
    let at = stopped_at(play, "play", pods.rootfs.scratch());
    let infra = infra_of(&pods, &name).expect("the infra process runs");
    assert_eq!(pods.ps_json(&name)["status"], "creating");
    at.kill();
    assert_eq!(pods.ps_json(&name)["status"], "failed");
    let out = pods.peapod(&["pod", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains(&name), "{out:?}");
    wait_until("the infra process to be gone", || {
        std::fs::read_to_string(format!("/proc/{infra}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    assert_eq!(pod_cgroup_dirs(&pods, &name), Vec::<PathBuf>::new());
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}

#[test]
fn a_pod_whose_monitor_was_killed_shows_it() {
    let Some(mut pods) = Pods::new() else {
        return;
    };
    let name = format!("unsup{}", std::process::id());
    let file = pods.rootfs.scratch().join("pod.yaml");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {}\n    command: [/bin/sleep, '100']\n",
        pods.rootfs.arg()
    );
    std::fs::write(&file, manifest).expect("manifest");
    let play = pods.play(&name, &file, &["--network", "none"]);
    assert_eq!(play.code, 0, "{play:?}");
    let ps = pods.ps_json(&name);
    assert_eq!(ps["status"], "running", "{ps:#}");
    assert_eq!(ps["supervised"], true, "{ps:#}");
    let record = pods
        .rootfs
        .state_root()
        .join(".pods")
        .join(&name)
        .join("pod.json");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record).expect("pod.json")).expect("json");
    let monitor = record["monitor"]["pid"].as_i64().expect("a monitor") as i32;
    kill(Pid::from_raw(monitor), Signal::SIGKILL).expect("SIGKILL the monitor");
    wait_until("the monitor to be gone", || {
        std::fs::read_to_string(format!("/proc/{monitor}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    let out = pods.peapod(&["pod", "ps", &name]);
    assert!(
        out.stderr.contains(&format!("peapod pod rm -f {name}")),
        "says how: {out:?}"
    );
    let ps = pods.ps_json(&name);
    assert_eq!(ps["status"], "running (unsupervised)", "{ps:#}");
    assert_eq!(ps["supervised"], false, "{ps:#}");
    let listed = pod_list(&pods);
    let row = listed.iter().find(|p| p["name"] == *name).expect("listed");
    assert_eq!(row["status"], "running (unsupervised)", "{listed:#?}");
    let table = pods.peapod(&["pod", "list"]);
    assert!(table.stdout.contains("running (unsupervised)"), "{table:?}");
    pods.remove_all();
}

#[test]
fn an_entry_killed_before_its_mark_is_reaped_once_a_minute_old() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let state = rootfs.state_root();
    // What a `create` or `pod create` killed between its mkdir and its first write leaves:
    // an empty directory. A young one may be a live command's, an old one is not.
    let (young, old) = (state.join("young"), state.join("old"));
    let old_pod = state.join(".pods/oldpod");
    for dir in [&young, &old, &old_pod] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    for dir in [&old, &old_pod] {
        let touched = Command::new("touch")
            .args(["-m", "-d", "2 minutes ago"])
            .arg(dir)
            .status()
            .expect("touch");
        assert!(touched.success());
    }
    let list = out(rootfs.peapod().args(["list", "--format", "json"]));
    assert_eq!(list.code, 0, "{list:?}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).expect("json");
    let ids: Vec<&str> = listed.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["young"], "{list:?}");
    assert_eq!(listed[0]["status"], "creating");
    assert!(!old.exists() && young.exists());
    let pods = out(rootfs.peapod().args(["pod", "list", "-q"]));
    assert_eq!(pods.code, 0, "{pods:?}");
    assert!(!old_pod.exists(), "{pods:?}");
    let delete = out(rootfs.peapod().args(["delete", "young"]));
    assert_eq!(delete.code, 0, "{delete:?}");
    rootfs.assert_nothing_left();
}
