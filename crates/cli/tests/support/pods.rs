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
