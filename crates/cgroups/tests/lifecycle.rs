//! A cgroup's life on this host's real hierarchies: create, add, procs, freeze, stats,
//! kill_all, remove; on the detected layout (v1 here), and on a v2 hierarchy where one is
//! mounted (the unified mount of a hybrid host counts: freezing and killing need no
//! controllers there).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use peapod_cgroups::{Cgroup, FreezerState, Layout};

const TIMEOUT: Duration = Duration::from_secs(10);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A cgroup made for one test, killed and removed on drop whatever happened.
struct Guard(Cgroup);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill_all(Duration::from_secs(5));
        let _ = self.0.remove();
        for dir in self.0.paths() {
            // `peapod-test`, unless another test still uses it.
            let _ = dir.parent().map(std::fs::remove_dir);
        }
    }
}

/// A shell that waits for `go` in `dir`, then forks two sleepers and waits for them.
fn forking_shell(dir: &Path) -> Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg("while [ ! -e go ]; do sleep 0.01; done; sleep 60 & sleep 60 & wait")
        .current_dir(dir)
        .spawn()
        .expect("spawn sh")
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The whole life of a cgroup on `layout`, with a shell and the two children it forks
/// inside: all three are listed, frozen, counted, killed, and the cgroup goes.
fn life_of_a_cgroup(layout: &Layout, name: &str) {
    let path = PathBuf::from(format!("peapod-test/{name}-{}", std::process::id()));
    let cgroup = Guard(Cgroup::create(layout, &path).expect("create"));
    for dir in cgroup.0.paths() {
        assert!(dir.is_dir(), "{} not made", dir.display());
    }
    if let Some(cpus) = cgroup
        .0
        .file("cpuset", "cpuset.cpus")
        .filter(|_| !layout.is_v2())
    {
        let cpus = std::fs::read_to_string(cpus).expect("cpuset.cpus");
        assert!(!cpus.trim().is_empty(), "cpuset.cpus not inherited");
    }

    let scratch = tempfile::tempdir().expect("tempdir");
    let mut shell = forking_shell(scratch.path());
    cgroup.0.add(shell.id()).expect("add");
    std::fs::write(scratch.path().join("go"), "").expect("go");
    wait_until("the shell and its two children", || {
        cgroup.0.procs().expect("procs").len() == 3
    });
    assert!(cgroup.0.procs().expect("procs").contains(&shell.id()));

    cgroup.0.freeze(TIMEOUT).expect("freeze");
    assert_eq!(
        cgroup.0.freezer_state().expect("state"),
        FreezerState::Frozen
    );
    cgroup.0.thaw().expect("thaw");
    assert_eq!(
        cgroup.0.freezer_state().expect("state"),
        FreezerState::Thawed
    );

    if layout.hierarchy_of("pids").is_some() {
        assert_eq!(cgroup.0.stats().expect("stats").pids_current, 3);
    }

    // Busy while they live: nothing is removed, and the first directory says so.
    assert!(!cgroup.0.remove_if_empty().expect("remove_if_empty"));
    for dir in cgroup.0.paths() {
        assert!(dir.is_dir(), "{} removed while busy", dir.display());
    }

    // Frozen while killed: the shell cannot fork again in between.
    cgroup.0.kill_all(TIMEOUT).expect("kill_all");
    assert_eq!(cgroup.0.procs().expect("procs"), Vec::<u32>::new());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = shell.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the shell outlived kill_all");
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // The killed shell is reaped (its status read above): the cgroup is empty, and goes
    // without waiting.
    assert!(cgroup.0.remove_if_empty().expect("remove_if_empty"));
    cgroup.0.remove().expect("remove of what is gone already");
    for dir in cgroup.0.paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
        let parent = dir.parent().expect("parent");
        assert!(
            parent.exists(),
            "only a default `peapod` parent is removed, not {}",
            parent.display()
        );
    }
}

#[test]
fn life_of_a_cgroup_on_this_hosts_layout() {
    if !is_root() {
        eprintln!("skipped: making cgroups needs root");
        return;
    }
    let layout = Layout::detect().expect("layout");
    if layout.hierarchy_of("freezer").is_none() && !layout.is_v2() {
        eprintln!("skipped: cgroup v1 without a freezer hierarchy");
        return;
    }
    life_of_a_cgroup(&layout, "host");
}

/// The v2 hierarchy of this host: the unified layout itself, or a hybrid's unified mount.
fn v2_layout() -> Option<Layout> {
    match Layout::detect().ok()? {
        layout @ Layout::V2(_) => Some(layout),
        Layout::V1 { unified, .. } => unified.map(Layout::V2),
    }
}

#[test]
fn life_of_a_cgroup_on_v2() {
    if !is_root() {
        eprintln!("skipped: making cgroups needs root");
        return;
    }
    let Some(layout) = v2_layout() else {
        eprintln!("skipped: no cgroup2 hierarchy is mounted on this host");
        return;
    };
    if !layout.hierarchies()[0].mount.join("cgroup.freeze").exists() && !has_freeze_below(&layout) {
        eprintln!("skipped: this kernel's cgroup v2 has no freezer (cgroup.freeze, 5.2+)");
        return;
    }
    life_of_a_cgroup(&layout, "v2");
}

/// The root cgroup has no `cgroup.freeze`; whether its children would is seen in a probe.
fn has_freeze_below(layout: &Layout) -> bool {
    let probe = layout.hierarchies()[0]
        .mount
        .join(format!("peapod-probe-{}", std::process::id()));
    if std::fs::create_dir(&probe).is_err() {
        return false;
    }
    let has = probe.join("cgroup.freeze").exists();
    let _ = std::fs::remove_dir(&probe);
    has
}

#[test]
fn limits_on_v2_reach_the_files() {
    if !is_root() {
        eprintln!("skipped: making cgroups needs root");
        return;
    }
    let Some(layout) = v2_layout() else {
        eprintln!("skipped: no cgroup2 hierarchy is mounted on this host");
        return;
    };
    let controllers = &layout.hierarchies()[0].controllers;
    if !["memory", "pids", "cpu"]
        .iter()
        .all(|c| controllers.iter().any(|have| have == c))
    {
        eprintln!(
            "skipped: the cgroup2 hierarchy at {} has controllers {controllers:?}, not memory, \
             pids and cpu (on a hybrid host they are bound to v1); the v2 file writing is \
             unit-tested against a fake tree",
            layout.hierarchies()[0].mount.display()
        );
        return;
    }
    let path = PathBuf::from(format!("peapod-test/limits-{}", std::process::id()));
    let cgroup = Guard(Cgroup::create(&layout, &path).expect("create"));
    let resources = serde_json::from_str(
        r#"{"memory": {"limit": 67108864}, "pids": {"limit": 9},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000}}"#,
    )
    .expect("resources");
    cgroup.0.apply(&resources).expect("apply");
    let read = |name: &str| {
        std::fs::read_to_string(cgroup.0.file("", name).expect("file"))
            .expect("read")
            .trim()
            .to_owned()
    };
    assert_eq!(read("memory.max"), "67108864");
    assert_eq!(read("pids.max"), "9");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("cpu.weight"), "39");
    cgroup.0.remove().expect("remove");
    assert!(cgroup.0.paths().iter().all(|p| !p.exists()));
}

#[test]
fn containers_made_and_removed_at_once_share_the_default_parent() {
    if !is_root() {
        eprintln!("skipped: making cgroups needs root");
        return;
    }
    let layout = Layout::detect().expect("layout");
    // Each removal takes the `peapod` parent away when it is empty, while the other thread
    // may be making a cgroup inside it.
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let layout = layout.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let id = format!("race-{}-{worker}-{i}", std::process::id());
                    let cgroup = Guard(
                        Cgroup::create(&layout, &Cgroup::default_path(&id))
                            .unwrap_or_else(|e| panic!("create {id}: {e}")),
                    );
                    cgroup.0.remove().expect("remove");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
}
