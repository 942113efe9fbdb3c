//! `cargo xtask bench`: whole-process timings, median of several runs, next to the floor
//! that `unshare` and `chroot` set for the same namespaces.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{build_peapod, rootfs, Result};

const RUNS: usize = 30;

pub(crate) fn run(_args: &[String]) -> Result {
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let root = rootfs_dir.to_string_lossy().into_owned();

    println!("median of {RUNS} runs, /bin/true in a new container (after 3 warm-up runs)\n");
    let mut peapod_cmd = Command::new(&peapod);
    peapod_cmd.args(["run", "--rootfs", &root, "--", "/bin/true"]);
    let ours = median_of(&mut peapod_cmd)?;
    report("peapod run", ours, None);

    if which("unshare") {
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
            &root,
            "/bin/true",
        ]);
        let floor_time = median_of(&mut floor)?;
        report("unshare + chroot (floor)", floor_time, None);
        report("peapod / floor", ours, Some(floor_time));
    } else {
        println!("unshare not installed: no floor to compare with");
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
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

/// Runs `cmd` 3 times to warm caches, then `RUNS` times; the median wall time.
fn median_of(cmd: &mut Command) -> Result<Duration> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS + 3 {
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
    times.sort();
    Ok(times[times.len() / 2])
}
