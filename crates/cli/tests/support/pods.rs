//! The pods of a test: made with the static peapod-init, removed (`pod rm -f`) on drop.

use std::path::{Path, PathBuf};

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

    /// `peapod --root STATE ARGS...`, finished within the timeout.
    pub fn peapod(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.rootfs.peapod();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(args);
        finish(cmd.spawn().expect("spawn peapod"))
    }

    /// `peapod pod create` with the test's init; the pod is removed on drop.
    pub fn create(&mut self, name: &str, extra: &[&str]) {
        self.names.push(name.to_owned());
        let init = self.init.display().to_string();
        let mut args = vec!["pod", "create", "--init-path", &init];
        // Only `lo` unless the test asks for a network: the default network would make a
        // bridge on the host (the network tests make their own, see `support::net`).
        if !extra.contains(&"--network") {
            args.extend(["--network", "none"]);
        }
        args.extend(extra);
        args.push(name);
        let out = self.peapod(&args);
        assert_eq!(out.code, 0, "pod create {name}: {out:?}");
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

    pub fn ps_json(&self, pod: &str) -> serde_json::Value {
        let out = self.peapod(&["pod", "ps", "--format", "json", pod]);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).expect("pod ps json")
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

/// A pod name of this test process: pod cgroups are host-wide (`peapod/pod:NAME` below the
/// test's own cgroup), unlike the per-test state roots.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The cgroup `peapod/pod:NAME` (and anything below it) killed and removed on drop, should
/// `pod rm -f` have failed to: declared before the [`Pods`], so it runs after their drop.
pub struct PodCgroupGuard(pub peapod_cgroups::Cgroup);

impl PodCgroupGuard {
    pub fn new(layout: &peapod_cgroups::Layout, pod: &str) -> PodCgroupGuard {
        let path = Path::new(peapod_cgroups::DEFAULT_PARENT).join(format!("pod:{pod}"));
        PodCgroupGuard(peapod_cgroups::Cgroup::locate(layout, &path).expect("locate"))
    }

    /// Its directory in the hierarchy of `controller`.
    pub fn dir(&self, controller: &str) -> PathBuf {
        self.0
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
        let left: Vec<_> = self.0.paths().into_iter().filter(|p| p.exists()).collect();
        assert!(
            left.is_empty(),
            "pod cgroup directories left behind: {left:?}"
        );
    }
}

impl Drop for PodCgroupGuard {
    fn drop(&mut self) {
        for dir in self.0.paths().into_iter().filter(|p| p.exists()) {
            let children = std::fs::read_dir(&dir).into_iter().flatten().flatten();
            for child in children.filter(|c| c.path().is_dir()) {
                let layout = peapod_cgroups::Layout::detect().expect("layout");
                let cgroup = peapod_cgroups::Cgroup::open(&layout, &[child.path()]);
                let _ = cgroup.kill_all(std::time::Duration::from_secs(5));
                let _ = cgroup.remove();
            }
        }
        let _ = self.0.kill_all(std::time::Duration::from_secs(5));
        let _ = self.0.remove();
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
