//! Pods: the time to create a pod and start two containers in it (median of runs), without
//! a network and on a CNI network of the bench's own (the difference is the cost of CNI ADD
//! and DEL), next to podman doing the same (`pod create` + two `run -d --pod`, `pod rm -f`,
//! in a temporary store and network configuration, through runc); the memory of the infra
//! process; and 50 pods of two containers with IPs at once (time until all run, time until
//! all are removed, and what is left behind: state, mounts, processes, cgroups, veths,
//! leases, cache entries, iptables rules).

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
    let net = BenchNet::new()?;
    let bench = Bench {
        peapod: &peapod,
        state: &state,
        rootfs: &rootfs_dir,
        net: &net,
        backend: None,
    };

    println!("== pods: create + 2 detached containers, median of {RUNS} (after a warm-up)\n");
    let mut medians = Vec::new();
    for network in ["none", NETWORK] {
        let (up, down, rss) = bench.cycle(network)?;
        println!(
            "{:<44} {:>8.1} ms",
            format!("pod create --network {network} + 2 x run -d"),
            ms(up)
        );
        println!("{:<44} {:>8.1} ms", "pod rm -f (2 containers)", ms(down));
        if network == "none" {
            println!("{:<44} {:>8} kB", "infra process RSS (peapod-init -P)", rss);
        }
        medians.push((up, down));
    }
    let add = medians[1].0.saturating_sub(medians[0].0);
    let del = medians[1].1.saturating_sub(medians[0].1);
    println!(
        "{:<44} {:>8.1} ms",
        "CNI ADD per pod (bridge, portmap, firewall, tuning)",
        ms(add)
    );
    println!("{:<44} {:>8.1} ms", "CNI DEL per pod", ms(del));
    match podman(&rootfs_dir, &net) {
        Ok(Some((up, down))) => {
            println!(
                "{:<44} {:>8.1} ms   (peapod: {:.2}x)",
                "podman pod create + 2 x run -d --pod",
                ms(up),
                medians[1].0.as_secs_f64() / up.as_secs_f64()
            );
            println!(
                "{:<44} {:>8.1} ms   (peapod: {:.2}x)",
                "podman pod rm -f -t 0",
                ms(down),
                medians[1].1.as_secs_f64() / down.as_secs_f64()
            );
        }
        Ok(None) => println!("podman: not installed, skipped"),
        Err(e) => println!("podman: {e}"),
    }

    println!(
        "\n== {MANY} pods of 2 containers each on network {NETWORK}, made at once (one thread per pod)\n"
    );
    let start = Instant::now();
    let made = at_once(MANY, |i| bench.pod_with_two(&format!("many{i}"), NETWORK));
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
    let mut left = leftovers(&state);
    left.extend(net.leftovers());
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

/// The bench's network.
const NETWORK: &str = "ppbench";
/// How many times podman makes and removes its pod (it is slower: fewer runs).
const PODMAN_RUNS: usize = 5;

/// A CNI network of the bench's own (bridge `ppbench0`, a free /24 of 10.250.0.0/16, its
/// configuration, leases and cache under `target/bench-pod-net`), removed on drop.
pub(super) struct BenchNet {
    dir: PathBuf,
    subnet: String,
    name: &'static str,
    bridge: &'static str,
}

impl BenchNet {
    fn new() -> Result<BenchNet> {
        BenchNet::with(NETWORK, "ppbench0", "bench-pod-net")
    }

    /// A network `name` on bridge `bridge`, its files in `target/DIR`.
    pub(super) fn with(name: &'static str, bridge: &'static str, dir: &str) -> Result<BenchNet> {
        use peapod_net::ipnet::Ipv4Net;
        let dir = target_dir().join(dir);
        let _ = std::fs::remove_dir_all(&dir);
        let within: Ipv4Net = "10.250.0.0/16".parse().map_err(|e| format!("{e}"))?;
        let subnet = peapod_net::pick_subnet(within, 24, &peapod_net::host_routes())
            .ok_or("no free /24 in 10.250.0.0/16 for the bench's network")?;
        let list = peapod_net::default_list(name, bridge, subnet, Some(&dir.join("ipam")));
        std::fs::create_dir_all(dir.join("net.d")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(format!("net.d/{name}.conflist")), list.to_string())
            .map_err(|e| e.to_string())?;
        Ok(BenchNet {
            dir,
            subnet: subnet.to_string(),
            name,
            bridge,
        })
    }

    /// Veths on the bridge, leases, cache entries and iptables rules naming the subnet.
    pub(super) fn leftovers(&self) -> Vec<String> {
        let out = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let mut left = Vec::new();
        let veths = out(&["ip", "-o", "link", "show", "master", self.bridge])
            .lines()
            .count();
        let count = |dir: PathBuf| {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| {
                            let n = e.file_name().to_string_lossy().into_owned();
                            n != "lock" && !n.starts_with("last_reserved_ip")
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        let leases = count(self.dir.join("ipam").join(self.name));
        let cached = count(self.dir.join("cache/results"));
        let prefix = self.subnet.trim_end_matches(".0/24").to_owned() + ".";
        let rules = out(&["iptables-save"])
            .lines()
            .chain(out(&["nft", "list", "table", "inet", "peapod"]).lines())
            .filter(|l| l.contains(&prefix))
            .count();
        for (n, what) in [
            (veths, "veths"),
            (leases, "leases"),
            (cached, "cache entries"),
            (rules, "iptables or nftables rules"),
        ] {
            if n > 0 {
                left.push(format!("{n} {what}"));
            }
        }
        left
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", self.bridge])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// podman making the same pod (on a network of its own, in a temporary store, through runc:
/// crun refuses this host's hybrid cgroups), median of [`PODMAN_RUNS`]; `None` without
/// podman.
pub(super) fn podman(rootfs: &Path, net: &BenchNet) -> Result<Option<(Duration, Duration)>> {
    if Command::new("podman").arg("--version").output().is_err() {
        return Ok(None);
    }
    let dir = target_dir().join("bench-podman");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Root here may lack CAP_SYS_RESOURCE: podman's default nofile limit would fail.
    std::fs::write(
        dir.join("containers.conf"),
        "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n",
    )
    .map_err(|e| e.to_string())?;
    let podman = |args: &[&str]| -> Result<()> {
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--network-config-dir")
            .arg(dir.join("net"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run podman: {e}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "podman {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    };
    let pause = target_dir().join("cri-images/pause.tar");
    // A /24 of its own: podman refuses a subnet that a route (the bench's bridge) covers.
    let taken: Vec<peapod_net::ipnet::Ipv4Net> = peapod_net::host_routes()
        .into_iter()
        .chain(net.subnet.parse().ok())
        .collect();
    let within: peapod_net::ipnet::Ipv4Net = "10.250.0.0/16".parse().map_err(|e| format!("{e}"))?;
    let subnet = peapod_net::pick_subnet(within, 24, &taken)
        .ok_or("no free /24 in 10.250.0.0/16 for podman's network")?
        .to_string();
    let root = rootfs.to_string_lossy().into_owned();
    let result = (|| {
        podman(&["load", "-i", &pause.to_string_lossy()])?;
        podman(&["network", "create", "--subnet", &subnet, "ppbench-podman"])?;
        let (mut ups, mut downs) = (Vec::new(), Vec::new());
        for i in 0..=PODMAN_RUNS {
            let start = Instant::now();
            podman(&[
                "pod",
                "create",
                "--network",
                "ppbench-podman",
                "--infra-image",
                "localhost/peapod/pause:latest",
                "--name",
                "p",
            ])?;
            for _ in 0..2 {
                podman(&[
                    "run",
                    "-d",
                    "--pod",
                    "p",
                    "--rootfs",
                    &root,
                    "/bin/sleep",
                    "600",
                ])?;
            }
            let up = start.elapsed();
            let start = Instant::now();
            podman(&["pod", "rm", "-f", "-t", "0", "p"])?;
            if i > 0 {
                ups.push(up);
                downs.push(start.elapsed());
            }
        }
        Ok((median(ups), median(downs)))
    })();
    let _ = podman(&["pod", "rm", "-f", "-t", "0", "p"]);
    let _ = podman(&["network", "rm", "-f", "ppbench-podman"]);
    let _ = podman(&["system", "reset", "-f"]);
    let _ = std::fs::remove_dir_all(&dir);
    result.map(Some)
}

pub(super) struct Bench<'a> {
    pub(super) peapod: &'a Path,
    pub(super) state: &'a Path,
    pub(super) rootfs: &'a Path,
    pub(super) net: &'a BenchNet,
    /// `PEAPOD_NETWORK_BACKEND`, when set.
    pub(super) backend: Option<&'a str>,
}

impl Bench<'_> {
    /// Median times of making a pod of two containers on `network` and removing it, and the
    /// infra process's RSS.
    fn cycle(&self, network: &str) -> Result<(Duration, Duration, u64)> {
        let mut create_times = Vec::new();
        let mut rm_times = Vec::new();
        let mut rss = Vec::new();
        for i in 0..=RUNS {
            let start = Instant::now();
            self.pod_with_two("p", network)?;
            let up = start.elapsed();
            rss.push(self.infra_rss_kb("p")?);
            let start = Instant::now();
            self.peapod(&["pod", "rm", "-f", "p"])?;
            let down = start.elapsed();
            reap();
            if i > 0 {
                create_times.push(up);
                rm_times.push(down);
            }
        }
        Ok((median(create_times), median(rm_times), median(rss)))
    }

    pub(super) fn peapod(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.peapod)
            .env("PEAPOD_CNI_CONFIG_DIR", self.net.dir.join("net.d"))
            .env("PEAPOD_CNI_CACHE_DIR", self.net.dir.join("cache"))
            .envs(self.backend.map(|b| ("PEAPOD_NETWORK_BACKEND", b)))
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

    /// A pod on `network` with two sleeping containers (`POD-a`, `POD-b`).
    pub(super) fn pod_with_two(&self, pod: &str, network: &str) -> Result {
        self.peapod(&["pod", "create", "--network", network, pod])?;
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
pub(super) fn reap() {
    // SAFETY: waitpid with WNOHANG and a null status pointer only reaps exited children.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// State entries, mounts and processes that mention the state root.
fn leftovers(state: &PathBuf) -> Vec<String> {
    let mut left = Vec::new();
    // The compiled seccomp filters (`.seccomp`) are a cache the state root keeps on purpose.
    let entries = std::fs::read_dir(state)
        .map(|d| d.flatten().filter(|e| e.file_name() != ".seccomp").count())
        .unwrap_or(0);
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

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
