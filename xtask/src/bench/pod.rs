//! Pods: the time to create a pod and start two containers in it (median of runs), the
//! memory of its infra process, and 50 pods of two containers at once (time until all run,
//! time until all are removed, and what is left behind).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::median;
use crate::{build_peapod, rootfs, target_dir, Result};

const RUNS: usize = 10;
const MANY: usize = 50;

pub(crate) fn run() -> Result {
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let state = target_dir().join("bench-pod");
    let _ = std::fs::remove_dir_all(&state);
    let bench = Bench {
        peapod: &peapod,
        state: &state,
        rootfs: &rootfs_dir,
    };

    println!("== pods: create + 2 detached containers, median of {RUNS} (after a warm-up)\n");
    let mut create_times = Vec::new();
    let mut rm_times = Vec::new();
    let mut rss = Vec::new();
    for i in 0..=RUNS {
        let start = Instant::now();
        bench.pod_with_two("p")?;
        let up = start.elapsed();
        rss.push(bench.infra_rss_kb("p")?);
        let start = Instant::now();
        bench.peapod(&["pod", "rm", "-f", "p"])?;
        let down = start.elapsed();
        reap();
        if i > 0 {
            create_times.push(up);
            rm_times.push(down);
        }
    }
    println!(
        "{:<44} {:>8.1} ms",
        "pod create + 2 x run --detach",
        ms(median(create_times))
    );
    println!(
        "{:<44} {:>8.1} ms",
        "pod rm -f (2 containers)",
        ms(median(rm_times))
    );
    println!(
        "{:<44} {:>8} kB",
        "infra process RSS (peapod-init -P)",
        median(rss)
    );

    println!("\n== {MANY} pods of 2 containers each, made at once (one thread per pod)\n");
    let start = Instant::now();
    let made = at_once(MANY, |i| bench.pod_with_two(&format!("many{i}")));
    let up = start.elapsed();
    let running = bench.count_running()?;
    let start = Instant::now();
    let removed = at_once(MANY, |i| {
        bench
            .peapod(&["pod", "rm", "-f", &format!("many{i}")])
            .map(drop)
    });
    let down = start.elapsed();
    reap();
    println!("{:<44} {:>8.2} s", "time until all run", up.as_secs_f64());
    println!("{:<44} {:>8}", "containers running then", running);
    println!(
        "{:<44} {:>8.2} s",
        "time until all are removed",
        down.as_secs_f64()
    );
    let failures: Vec<String> = made
        .into_iter()
        .chain(removed)
        .filter_map(|r| r.err())
        .collect();
    println!("{:<44} {:>8}", "failed commands", failures.len());
    if let Some(first) = failures.first() {
        println!("  first: {first}");
    }
    let left = leftovers(&state);
    println!(
        "{:<44} {}",
        "left behind",
        if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join("; ")
        }
    );
    println!();
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

struct Bench<'a> {
    peapod: &'a Path,
    state: &'a Path,
    rootfs: &'a Path,
}

impl Bench<'_> {
    fn peapod(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.peapod)
            .arg("--root")
            .arg(self.state)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run peapod: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "peapod {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A pod with two sleeping containers (`POD-a`, `POD-b`).
    fn pod_with_two(&self, pod: &str) -> Result {
        self.peapod(&["pod", "create", pod])?;
        let root = self.rootfs.to_string_lossy();
        for c in ["a", "b"] {
            let name = format!("{pod}-{c}");
            self.peapod(&[
                "run",
                "--pod",
                pod,
                "--rootfs",
                &root,
                "--name",
                &name,
                "--detach",
                "--",
                "/bin/sleep",
                "600",
            ])?;
        }
        Ok(())
    }

    fn infra_rss_kb(&self, pod: &str) -> Result<u64> {
        let ps: serde_json::Value =
            serde_json::from_str(&self.peapod(&["pod", "ps", "--format", "json", pod])?)
                .map_err(|e| e.to_string())?;
        let pid = ps["infra_pid"].as_i64().unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("infra process {pid}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| "no VmRSS".to_owned())
    }

    fn count_running(&self) -> Result<usize> {
        let list: serde_json::Value =
            serde_json::from_str(&self.peapod(&["list", "--format", "json"])?)
                .map_err(|e| e.to_string())?;
        Ok(list
            .as_array()
            .map(|l| l.iter().filter(|c| c["status"] == "running").count())
            .unwrap_or(0))
    }
}

/// Runs `f(0..n)` on `n` threads at once; every result.
fn at_once<F>(n: usize, f: F) -> Vec<Result>
where
    F: Fn(usize) -> Result + Sync,
{
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    })
}

/// Reaps what was re-parented to us (when an earlier section made xtask a subreaper).
fn reap() {
    // SAFETY: waitpid with WNOHANG and a null status pointer only reaps exited children.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// State entries, mounts and processes that mention the state root.
fn leftovers(state: &PathBuf) -> Vec<String> {
    let mut left = Vec::new();
    let entries = std::fs::read_dir(state).map(|d| d.count()).unwrap_or(0);
    if entries > 0 {
        left.push(format!("{entries} state entries"));
    }
    let text = state.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = mounts.lines().filter(|l| l.contains(&text)).count();
    if mounts > 0 {
        left.push(format!("{mounts} mounts"));
    }
    let processes = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .is_ok_and(|c| c.contains("sleep\u{0}600") || c.starts_with("/pause"))
        })
        .count();
    if processes > 0 {
        left.push(format!("{processes} processes"));
    }
    let cgroups = pod_cgroups();
    if cgroups > 0 {
        left.push(format!("{cgroups} pod cgroup directories"));
    }
    left
}

/// The `pod-*` directories in `peapod/` below this process's cgroup, in every hierarchy
/// (v1: `/sys/fs/cgroup/CONTROLLERS/...`, `systemd/...`, `unified/...`; v2: `/sys/fs/cgroup/...`).
fn pod_cgroups() -> usize {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    own.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':').skip(1);
            let (controllers, path) = (fields.next()?, fields.next()?);
            let base = match (controllers, v2) {
                ("", true) => PathBuf::from("/sys/fs/cgroup"),
                (_, true) => return None,
                // A hybrid host's cgroup2 mount and the named hierarchies, where pods'
                // cgroups are made too.
                ("", false) => PathBuf::from("/sys/fs/cgroup/unified"),
                (c, false) => match c.strip_prefix("name=") {
                    Some(name) => Path::new("/sys/fs/cgroup").join(name),
                    None => Path::new("/sys/fs/cgroup").join(c),
                },
            };
            Some(base.join(path.trim_start_matches('/')).join("peapod"))
        })
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pod:"))
        .count()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
