//! `cargo xtask bench [run] [init] [lifecycle] [pod] [podnet] [cri]`: whole-process timings,
//! median of several runs, side by side with the floor `unshare` sets and with runc, crun,
//! tini, dumb-init, catatonit, podman and containerd's runc handler where they are installed.
//! With no argument, every section: every row of issue 28's table.

mod cri;
mod init;
mod lifecycle;
mod pod;
mod podnet;

pub(crate) use init::orphan_burst;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{build_peapod, rootfs, Result};

const RUNS: usize = 30;

/// An OCI seccomp profile as Docker and podman would give a container with the default
/// capabilities on x86_64 (made from containers-common's `seccomp.json`).
const SECCOMP_PROFILE: &str = include_str!("bench/seccomp-profile.json");

pub(crate) fn run(args: &[String]) -> Result {
    let all = args.is_empty();
    let wants = |section: &str| all || args.iter().any(|a| a == section);
    if let Some(unknown) = args
        .iter()
        .find(|a| !["run", "init", "lifecycle", "pod", "podnet", "cri"].contains(&a.as_str()))
    {
        return Err(format!(
            "unknown bench section {unknown:?} (try: run, init, lifecycle, pod, podnet, cri)"
        ));
    }
    if wants("run") {
        run_vs_floor()?;
    }
    if wants("init") {
        init::run()?;
    }
    if wants("lifecycle") {
        lifecycle::run()?;
    }
    if wants("pod") {
        pod::run()?;
    }
    if wants("podnet") {
        podnet::run()?;
    }
    if wants("cri") {
        cri::run()?;
    }
    Ok(())
}

/// `peapod run --rootfs R -- /bin/true` and `peapod-oci run` of a bundle of R next to
/// `unshare ... chroot R /bin/true`.
fn run_vs_floor() -> Result {
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let root = rootfs_dir.to_string_lossy().into_owned();
    let bundles = lifecycle::Bundles::make(&peapod)?;
    let result = run_vs_floor_with(&peapod, &root, &bundles);
    let _ = std::fs::remove_dir_all(&bundles.dir);
    result
}

fn run_vs_floor_with(peapod: &Path, root: &str, bundles: &lifecycle::Bundles) -> Result {
    println!(
        "== peapod run: median of {RUNS} runs, /bin/true in a new container (after 3 warm-up runs)\n"
    );
    let mut peapod_cmd = Command::new(peapod);
    peapod_cmd.args(["run", "--rootfs", root, "--", "/bin/true"]);
    // The same with a profile the size of Docker's default (434 syscalls in 19 rules, for
    // its default capabilities on x86_64): what compiling and loading a filter costs.
    let profile = crate::target_dir().join("bench-seccomp.json");
    std::fs::write(&profile, SECCOMP_PROFILE)
        .map_err(|e| format!("cannot write {}: {e}", profile.display()))?;
    let mut seccomp_cmd = Command::new(peapod);
    seccomp_cmd.args(["run", "--rootfs", root, "--security-opt"]);
    seccomp_cmd.arg(format!("seccomp={}", profile.display()));
    seccomp_cmd.args(["--", "/bin/true"]);
    // What OCI clients exec, on a bundle of the same root (runc's `run`).
    let mut oci_cmd = Command::new(peapod.with_file_name("peapod-oci"));
    oci_cmd.args(["run", "--bundle", &bundles.plain, "bench-floor-oci"]);
    if !which("unshare") {
        let times = median_of(&mut [peapod_cmd, seccomp_cmd, oci_cmd], RUNS)?;
        report("peapod run", times[0], None);
        report("peapod run + seccomp", times[1], None);
        report("peapod-oci run (bundle)", times[2], None);
        println!("unshare not installed: no floor to compare with");
        return Ok(());
    }
    let mut floor = Command::new("unshare");
    floor.args([
        "--fork",
        "--pid",
        "--mount",
        "--ipc",
        "--uts",
        "--net",
        "--mount-proc",
        "chroot",
        root,
        "/bin/true",
    ]);
    // Interleaved, so that a noisy neighbour slows all alike.
    let times = median_of(&mut [peapod_cmd, seccomp_cmd, oci_cmd, floor], RUNS)?;
    report("peapod run", times[0], None);
    report("peapod run + seccomp", times[1], None);
    report("peapod-oci run (bundle)", times[2], None);
    report("unshare + chroot (floor)", times[3], None);
    report("peapod / floor", times[0], Some(times[3]));
    report("peapod-oci / floor", times[2], Some(times[3]));
    report("peapod+seccomp / peapod", times[1], Some(times[0]));
    println!();
    Ok(())
}

/// The path of `tool` in the usual system directories, if installed.
fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn which(tool: &str) -> bool {
    find_tool(tool).is_some()
}

fn report(label: &str, time: Duration, base: Option<Duration>) {
    match base {
        Some(base) => println!(
            "{label:<28} {:>8.2}x",
            time.as_secs_f64() / base.as_secs_f64()
        ),
        None => println!("{label:<28} {:>8.2} ms", time.as_secs_f64() * 1e3),
    }
}

/// Runs each of `cmds` 3 times to warm caches, then `runs` times, taking turns; the median
/// wall time of each.
fn median_of(cmds: &mut [Command], runs: usize) -> Result<Vec<Duration>> {
    let mut times = vec![Vec::with_capacity(runs); cmds.len()];
    for i in 0..runs + 3 {
        for k in turns(i, cmds.len()) {
            let (cmd, times) = (&mut cmds[k], &mut times[k]);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let start = Instant::now();
            let status = cmd
                .status()
                .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
            let elapsed = start.elapsed();
            if !status.success() {
                return Err(format!("{cmd:?} failed ({status})"));
            }
            if i >= 3 {
                times.push(elapsed);
            }
        }
    }
    Ok(times.into_iter().map(median).collect())
}

/// The order in which `n` commands (or runtimes) take their turn in round `round`: each round
/// starts one further along, so that each follows every other one equally often. What a
/// command leaves the kernel to finish after it exits (a network namespace, cgroups, mounts
/// torn down from work queues) slows whichever runs next; in a fixed order one row would
/// always pay for the same neighbour.
fn turns(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (round + k) % n)
}

/// The median of `values` (which must not be empty).
fn median<T: Ord + Copy + Default>(mut values: Vec<T>) -> T {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
