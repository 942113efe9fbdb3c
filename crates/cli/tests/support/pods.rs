//! The pods of a test: made with the static peapod-init, removed (`pod rm -f`) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{finish, Outcome, TestRootfs};

/// The static peapod-init `cargo xtask test` builds, or `None` after saying why we skip.
pub fn static_init() -> Option<PathBuf> {
    let init = std::env::var_os("PEAPOD_INIT_BIN").map(PathBuf::from);
    if init.is_none() {
        eprintln!("skipped: PEAPOD_INIT_BIN is not set (`cargo xtask test` builds the static peapod-init and sets it)");
    }
    init
}

/// A test's rootfs and init, and the pods it made: removed (`pod rm -f`) on drop, so a
/// failing test leaves nothing either.
pub struct Pods {
    pub rootfs: TestRootfs,
    pub init: PathBuf,
    pub names: Vec<String>,
    /// Variables every `peapod` of the test gets (a test network's directories).
    pub env: Vec<(String, PathBuf)>,
}

impl Pods {
    pub fn new() -> Option<Pods> {
        let (Some(rootfs), Some(init)) = (TestRootfs::new(), static_init()) else {
            return None;
        };
        Some(Pods {
            rootfs,
            init,
            names: Vec::new(),
            env: Vec::new(),
        })
    }

    /// `peapod --root STATE` with the test's variables, for a test that spawns it.
    pub fn command(&self) -> Command {
        let mut cmd = self.rootfs.peapod();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `peapod --root STATE ARGS...`, finished within the timeout.
    pub fn peapod(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.command();
        cmd.args(args);
        finish(cmd.spawn().expect("spawn peapod"))
    }

    /// `peapod pod create` with the test's init; the pod is removed on drop.
    pub fn create(&mut self, name: &str, extra: &[&str]) {
        self.names.push(name.to_owned());
        let out = self.try_create(name, extra);
        assert_eq!(out.code, 0, "pod create {name}: {out:?}");
    }

    /// `peapod pod create EXTRA... NAME` with the test's init, whatever it says (the pod is
    /// not removed on drop: see [`Pods::create`]).
    pub fn try_create(&self, name: &str, extra: &[&str]) -> Outcome {
        let init = self.init.display().to_string();
        let mut args = vec!["pod", "create", "--init-path", &init];
        // Only `lo` unless the test asks for a network: the default network would make a
        // bridge on the host (the network tests make their own, see `support::net`).
        if !extra.contains(&"--network") {
            args.extend(["--network", "none"]);
        }
        args.extend(extra);
        args.push(name);
        self.peapod(&args)
    }

    /// `peapod pod play --init-path INIT EXTRA... FILE` with the test's init; the pod `name`
    /// the manifest makes is removed on drop.
    pub fn play(&mut self, name: &str, file: &Path, extra: &[&str]) -> Outcome {
        self.names.push(name.to_owned());
        let init = self.init.display().to_string();
        let file = file.display().to_string();
        let mut args = vec!["pod", "play", "--init-path", &init];
        args.extend(extra);
        args.push(&file);
        self.peapod(&args)
    }

    /// `peapod run --pod POD --rootfs ROOTFS EXTRA... -- sh -c SCRIPT`.
    pub fn run(&self, pod: &str, rootfs: &Path, extra: &[&str], script: &str) -> Outcome {
        let rootfs = rootfs.display().to_string();
        let mut args = vec!["run", "--pod", pod, "--rootfs", &rootfs];
        args.extend(extra);
        args.extend(["--", "/bin/sh", "-c", script]);
        self.peapod(&args)
    }

    /// Starts container `name` in `pod`, detached: `nc` answering `reply` to every
    /// connection on `port`.
    pub fn serve(&self, pod: &str, name: &str, port: u16, reply: &str) {
        let port = port.to_string();
        let out = self.peapod(&[
            "run",
            "--pod",
            pod,
            "--rootfs",
            self.rootfs.arg(),
            "--name",
            name,
            "--detach",
            "--",
            "/bin/nc",
            "-ll",
            "-p",
            &port,
            "-e",
            "/bin/echo",
            reply,
        ]);
        assert_eq!(out.code, 0, "{out:?}");
    }

    pub fn ps_json(&self, pod: &str) -> serde_json::Value {
        let out = self.peapod(&["pod", "ps", "--format", "json", pod]);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).expect("pod ps json")
    }

    /// Kills the infra process of `pod` with SIGKILL, as a crash would.
    pub fn kill_infra(&self, pod: &str) {
        let infra = self.ps_json(pod)["infra_pid"].as_i64().expect("infra pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(infra as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the infra process");
    }

    /// Loses `pod` as a reboot would: its infra process, namespace pins, state and cgroups
    /// go, by hand; what its network keeps on disk (lease, cache entry) stays, for the next
    /// command to reap.
    pub fn lose(&mut self, pod: &str) {
        let dir = self.rootfs.state_root().join(".pods").join(pod);
        self.kill_infra(pod);
        for pin in std::fs::read_dir(dir.join("ns")).expect("ns").flatten() {
            let _ = nix::mount::umount2(&pin.path(), nix::mount::MntFlags::MNT_DETACH);
        }
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("pod.json")).expect("record"))
                .expect("json");
        std::fs::remove_dir_all(&dir).expect("remove the pod's state");
        self.names.retain(|n| n != pod);
        for path in record["cgroup_paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
        {
            let _ = std::fs::remove_dir(format!("{path}/infra"));
            let _ = std::fs::remove_dir(path);
        }
    }

    pub fn logs(&self, pod: &str, container: &str) -> String {
        let out = self.peapod(&["pod", "logs", pod, container]);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
    }

    /// Removes every pod made and checks that nothing at all is left.
    pub fn remove_all(&mut self) {
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

/// The pod's address on its network, without the prefix.
pub fn ip_of(pods: &Pods, pod: &str) -> String {
    let ps = pods.ps_json(pod);
    let address = ps["addresses"][0].as_str().unwrap_or_default();
    address.split('/').next().unwrap_or_default().to_owned()
}

/// A pod name of this test process, for tests that look at cgroups the host shares.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The directories of the cgroup of pod `pod` of the state root `state_root`
/// (`peapod/pod:NAME:TAG`, see `peapod_runtime::cgroups::pod_path`), existing or not. The
/// state root need not exist yet: its parent is resolved, as peapod resolves the root.
pub fn pod_cgroup(
    layout: &peapod_cgroups::Layout,
    state_root: &Path,
    pod: &str,
) -> peapod_cgroups::Cgroup {
    let parent = state_root.parent().expect("a state root below a directory");
    let parent = std::fs::canonicalize(parent).expect("the state root's parent");
    let root = parent.join(state_root.file_name().expect("a state root's name"));
    let path = peapod_runtime::cgroups::pod_path(&root, &pod.parse().expect("a pod name"));
    peapod_cgroups::Cgroup::locate(layout, &path).expect("locate")
}

/// The cgroup of a pod (and anything below it) killed and removed on drop, should `pod rm -f`
/// have failed to: declared before the [`Pods`], so it runs after their drop, and pointed at
/// their state root ([`PodCgroupGuard::of`]) once they are made.
pub struct PodCgroupGuard {
    layout: peapod_cgroups::Layout,
    pod: String,
    cgroup: std::cell::OnceCell<peapod_cgroups::Cgroup>,
}

impl PodCgroupGuard {
    pub fn new(layout: &peapod_cgroups::Layout, pod: &str) -> PodCgroupGuard {
        PodCgroupGuard {
            layout: layout.clone(),
            pod: pod.to_owned(),
            cgroup: std::cell::OnceCell::new(),
        }
    }

    /// Guards the pod's cgroup of the state root of `pods`.
    pub fn of(&self, pods: &Pods) {
        let cgroup = pod_cgroup(&self.layout, &pods.rootfs.state_root(), &self.pod);
        let _ = self.cgroup.set(cgroup);
    }

    fn cgroup(&self) -> &peapod_cgroups::Cgroup {
        self.cgroup.get().expect("PodCgroupGuard::of was called")
    }

    /// Its directories, one per hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.cgroup().paths()
    }

    /// Its directory in the hierarchy of `controller`.
    pub fn dir(&self, controller: &str) -> PathBuf {
        self.cgroup()
            .file(controller, "")
            .expect("a hierarchy with the controller")
    }

    pub fn read(&self, controller: &str, file: &str) -> String {
        let path = self.dir(controller).join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    pub fn number(&self, controller: &str, file: &str) -> u64 {
        let text = self.read(controller, file);
        text.parse()
            .unwrap_or_else(|_| panic!("{controller}/{file}: {text:?}"))
    }

    /// Fails when the pod's cgroup directory is left in any hierarchy.
    pub fn assert_gone(&self) {
        let paths = self.cgroup().paths();
        let left: Vec<_> = paths.into_iter().filter(|p| p.exists()).collect();
        assert!(
            left.is_empty(),
            "pod cgroup directories left behind: {left:?}"
        );
    }
}

impl Drop for PodCgroupGuard {
    fn drop(&mut self) {
        let Some(cgroup) = self.cgroup.get() else {
            return;
        };
        for dir in cgroup.paths().into_iter().filter(|p| p.exists()) {
            let children = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            for child in children.filter(|c| c.path().is_dir()) {
                let child = peapod_cgroups::Cgroup::open(&self.layout, &[child.path()]);
                let _ = child.kill_all(std::time::Duration::from_secs(5));
                let _ = child.remove();
            }
        }
        let _ = cgroup.kill_all(std::time::Duration::from_secs(5));
        let _ = cgroup.remove();
    }
}

/// The host PID of the pod's container `id`, from `pod ps`.
pub fn member_pid(ps: &serde_json::Value, id: &str) -> u32 {
    let containers = ps["containers"].as_array().expect("containers");
    let member = containers
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no container {id}: {ps}"));
    member["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("container {id} has no live pid: {ps}"))
}

/// The cgroup path of process `pid` in the hierarchy of `controller`, as the host sees it
/// (`/proc/PID/cgroup`). A controller no v1 hierarchy names is on the unified one (`0::`),
/// which names none: every controller of a pure v2 host.
pub fn cgroup_of(pid: u32, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/PID/cgroup");
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':').skip(1);
            Some((fields.next()?, fields.next()?))
        })
        .collect();
    let named = lines
        .iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == controller));
    named
        .or_else(|| lines.iter().find(|(controllers, _)| controllers.is_empty()))
        .map(|(_, path)| (*path).to_owned())
        .unwrap_or_else(|| panic!("process {pid} is in no {controller} cgroup: {text}"))
}
