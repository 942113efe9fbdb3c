//! peapod-init next to tini, tini-static, dumb-init and catatonit: binary size, idle RSS as
//! PID 1, and the time to reap a burst of orphans (made by `cargo xtask orphan-burst`, so no
//! shell's forking speed is in the number).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_tool, median};
use crate::{dist, Result};

const ORPHANS: usize = 20_000;
const RUNS: usize = 5;

pub(crate) fn run() -> Result {
    if !super::which("unshare") {
        println!("== init: skipped, unshare (util-linux) is not installed\n");
        return Ok(());
    }
    let mut inits = vec![("peapod-init".to_owned(), dist::build_init()?)];
    for name in ["tini", "tini-static", "dumb-init", "catatonit"] {
        match find_tool(name) {
            Some(path) => inits.push((name.to_owned(), path)),
            None => println!("{name}: not installed, left out"),
        }
    }
    let burst = std::env::current_exe().map_err(|e| format!("cannot find xtask itself: {e}"))?;
    println!(
        "== init as PID 1 of a new PID namespace: size, idle RSS (median of {RUNS}), \
         time to reap {ORPHANS} orphans (median of {RUNS})\n"
    );
    println!(
        "{:<14} {:>10} {:>12} {:>14}",
        "init", "size (KB)", "idle RSS", "reap (ms)"
    );
    for (name, path) in &inits {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let rss = idle_rss(path)?;
        let reap = reap_time(path, &burst)?;
        println!(
            "{name:<14} {:>10.1} {:>9} kB {:>14.0}",
            size as f64 / 1024.0,
            rss,
            reap.as_secs_f64() * 1e3
        );
    }
    println!();
    Ok(())
}

/// `unshare` with a new PID namespace (and its own /proc), running `init -- ARGS`.
fn under_init(init: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--fork", "--pid", "--mount-proc", "--kill-child"])
        .arg(init)
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The first child of `pid`, waiting at most 5 s for one to appear.
fn first_child(pid: u32) -> Result<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(child) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            return Err(format!("process {pid} started no child within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// VmRSS (kB) of `init` as PID 1 once it supervises a `sleep`: median of [`RUNS`].
fn idle_rss(init: &Path) -> Result<u64> {
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut unshare = under_init(init, &["sleep", "60"])
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let sample = first_child(unshare.id())
            .and_then(|init_pid| first_child(init_pid).map(|_| init_pid))
            .and_then(|init_pid| {
                std::thread::sleep(Duration::from_millis(50));
                vm_rss(init_pid)
            });
        // --kill-child: the init dies with unshare, and the namespace with it.
        let _ = unshare.kill();
        let _ = unshare.wait();
        samples.push(sample?);
    }
    Ok(median(samples))
}

fn vm_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no VmRSS for process {pid}"))
}

/// The time `init` takes to reap [`ORPHANS`] zombies handed to it at once, as the burst
/// measures it from inside. Median of [`RUNS`] after one warm-up.
fn reap_time(init: &Path, burst: &Path) -> Result<Duration> {
    let count = ORPHANS.to_string();
    let burst = burst.to_string_lossy().into_owned();
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..=RUNS {
        let out = tempfile_path(i);
        let mut child = under_init(init, &[&burst, "orphan-burst", &count])
            .stdout(
                std::fs::File::create(&out)
                    .map_err(|e| format!("cannot create {}: {e}", out.display()))?,
            )
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let status = wait_at_most(&mut child, Duration::from_secs(120))?;
        let said = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        if !status.success() {
            return Err(format!(
                "orphan burst under {} failed ({status})",
                init.display()
            ));
        }
        let micros: u64 = said
            .trim()
            .strip_prefix("reaped_us=")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("orphan burst said {said:?}"))?;
        if i > 0 {
            times.push(Duration::from_micros(micros));
        }
    }
    Ok(median(times))
}

fn tempfile_path(i: usize) -> PathBuf {
    crate::target_dir().join(format!("bench-orphans-{}-{i}.out", std::process::id()))
}

fn wait_at_most(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("gave up after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `cargo xtask orphan-burst N`, run as the child of an init under test: a spawner process
/// forks `N` children that exit at once and exits itself without waiting, so `N` zombies are
/// re-parented to PID 1 together. Returns once PID 1 has no child left but this process, and
/// prints how long that took from the spawner's exit, in microseconds (`reaped_us=N`).
pub(crate) fn orphan_burst(args: &[String]) -> Result {
    let n: usize = match args.first() {
        Some(n) => n.parse().map_err(|_| format!("not a count: {n:?}"))?,
        None => ORPHANS,
    };
    // SAFETY: xtask is single-threaded here; the child calls only fork and _exit.
    let spawner = unsafe { libc::fork() };
    match spawner {
        -1 => return Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            for _ in 0..n {
                // SAFETY: as above; the grandchild exits at once.
                if unsafe { libc::fork() } == 0 {
                    // SAFETY: ends the grandchild without running any of the parent's code.
                    unsafe { libc::_exit(0) }
                }
            }
            // SAFETY: ends the spawner; its children are orphaned to PID 1.
            unsafe { libc::_exit(0) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out-pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
    }
    let orphaned = Instant::now();
    let me = std::process::id().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let children = std::fs::read_to_string("/proc/1/task/1/children")
            .map_err(|e| format!("cannot read PID 1's children: {e}"))?;
        if children.split_whitespace().all(|pid| pid == me) {
            println!("reaped_us={}", orphaned.elapsed().as_micros());
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("PID 1 did not reap the orphans within 60 s".into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
