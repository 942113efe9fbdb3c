//! The OCI lifecycle, peapod side by side with runc and crun on the same bundles, taking turns
//! so that a noisy neighbour slows all alike: `run` of `/bin/true` (wall time, peak RSS), the
//! same with podman's default seccomp profile, `create` + `start` + `delete`, the RSS of a
//! foreground `run` while its container runs, 50 containers `run --detach` at once and their
//! `delete --force` (medians of [`MANY_ROUNDS`]), and each runtime's binary size.
//! `peapod-oci` (the binary OCI clients exec) is a row of its own: it runs every command here
//! itself (a `create` or `run` whose seccomp profile is not in its cache yet goes to `peapod`
//! once, in the warm-ups).
//!
//! All runtimes run in a private mount namespace with the cgroup2 mount hidden: crun 1.8
//! refuses this host's hybrid cgroups otherwise, and runc and peapod use the v1 hierarchies
//! either way. Their state roots are on a tmpfs there, as `/run` (their default) is on a
//! machine with systemd: on this VM's disk, peapod's `fsync` of a detached container's record
//! would cost it 2-3 ms a `create` that crun and runc, which do not sync, do not pay. xtask makes itself a child subreaper, as containerd's shim and conmon are: the
//! container processes that `create` and `run --detach` leave behind are re-parented to it and
//! reaped here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_tool, median, turns};
use crate::{build_peapod, rootfs, target_dir, Result};

const RUNS: usize = 20;
const WARM_UP: usize = 3;
/// Containers started at once in the "many" case.
const MANY: usize = 50;
/// Rounds of the "many" case, runtimes taking turns: one round moves with the machine's
/// neighbours by a third either way.
const MANY_ROUNDS: usize = 5;

/// One runtime under test.
struct Runtime {
    name: &'static str,
    binary: PathBuf,
    state: PathBuf,
}

/// Medians of one runtime's measurements.
#[derive(Default)]
struct Row {
    run: Vec<Duration>,
    run_rss_kb: Vec<i64>,
    /// The largest peak RSS of one iteration's `create`, `start` and `delete`.
    lifecycle_rss_kb: Vec<i64>,
    seccomp: Vec<Duration>,
    create: Vec<Duration>,
    start: Vec<Duration>,
    delete: Vec<Duration>,
    waiting_rss_kb: Vec<i64>,
    many_up: Vec<Duration>,
    many_down: Vec<Duration>,
    /// The CPU time (user + system) of the 50 `run --detach` commands, and of the deletes.
    many_up_cpu: Vec<Duration>,
    many_down_cpu: Vec<Duration>,
    /// The whole machine's busy CPU time over those windows (`/proc/stat`), and its CPU
    /// time available then (CPUs x wall time): what the containers' own set-up and exit and
    /// the kernel's threads cost too, and whether the CPUs were ever idle.
    many_up_busy: Vec<(Duration, Duration)>,
    many_down_busy: Vec<(Duration, Duration)>,
}

pub(crate) fn run() -> Result {
    let peapod = build_peapod()?;
    let bundles = Bundles::make(&peapod)?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER and 1 only changes this process's flags.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let oci = peapod.with_file_name("peapod-oci");
    let mut runtimes = vec![
        Runtime::new("peapod", peapod),
        Runtime::new("peapod-oci", oci),
    ];
    for name in ["crun", "runc"] {
        match find_tool(name) {
            Some(binary) => runtimes.push(Runtime::new(name, binary)),
            None => println!("{name}: not installed, left out"),
        }
    }
    private_mounts(runtimes.len() > 1)?;
    let result = measure_all(&runtimes, &bundles);
    for runtime in &runtimes {
        let _ = std::fs::remove_dir_all(&runtime.state);
    }
    if let Ok(base) = std::ffi::CString::new(state_base().as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 takes the C string given; the mount is this process's own.
        unsafe { libc::umount2(base.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(state_base());
    let _ = std::fs::remove_dir_all(&bundles.dir);
    let rows = result?;
    print(&runtimes, &rows);
    Ok(())
}

/// Where the runtimes' state roots are: a tmpfs in the private mount namespace.
fn state_base() -> PathBuf {
    target_dir().join("bench-state")
}

impl Runtime {
    fn new(name: &'static str, binary: PathBuf) -> Self {
        let state = state_base().join(name);
        Runtime {
            name,
            binary,
            state,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs one command of this runtime to its end; its wall time and resource usage.
    fn timed(&self, args: &[&str]) -> Result<(Duration, libc::rusage)> {
        timed(&mut self.command(args)).map_err(|e| format!("{} {}: {e}", self.name, args[0]))
    }
}

/// The bundles every runtime runs: `/bin/true`, `/bin/true` with podman's seccomp profile,
/// and `sleep` (for the waiting and the many containers).
pub(super) struct Bundles {
    pub(super) dir: PathBuf,
    pub(super) plain: String,
    seccomp: String,
    sleep: String,
}

impl Bundles {
    /// Bundles under target/ sharing one copy of the default rootfs (runc refuses a symlinked
    /// one), each with peapod's default config and its own process.
    pub(super) fn make(peapod: &Path) -> Result<Bundles> {
        let rootfs_dir = rootfs::default_dir();
        rootfs::ensure(&rootfs_dir)?;
        let dir = target_dir().join("bench-bundles");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the bundles: {e}"))?;
        crate::run_status(
            Command::new("cp")
                .arg("-a")
                .arg(&rootfs_dir)
                .arg(dir.join("rootfs")),
        )?;
        crate::run_status(Command::new(peapod).args(["spec", "--bundle"]).arg(&dir))?;
        let text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| format!("cannot read config: {e}"))?;
        let base: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("peapod spec wrote bad JSON: {e}"))?;
        let profile: serde_json::Value = serde_json::from_str(super::SECCOMP_PROFILE)
            .map_err(|e| format!("the bench's seccomp profile: {e}"))?;
        let write = |name: &str, args: &[&str], seccomp: Option<&serde_json::Value>| {
            let bundle = dir.join(name);
            std::fs::create_dir_all(&bundle).map_err(|e| format!("cannot create {name}: {e}"))?;
            let mut config = base.clone();
            // crun 1.8 knows spec versions up to 1.1; nothing here needs a later one.
            config["ociVersion"] = serde_json::json!("1.0.2");
            config["root"]["path"] = serde_json::json!(dir.join("rootfs"));
            config["process"]["args"] = serde_json::json!(args);
            config["process"]["terminal"] = serde_json::json!(false);
            if let Some(profile) = seccomp {
                config["linux"]["seccomp"] = profile.clone();
            }
            std::fs::write(bundle.join("config.json"), config.to_string())
                .map_err(|e| format!("cannot write {name}/config.json: {e}"))?;
            Ok::<_, String>(bundle.to_string_lossy().into_owned())
        };
        Ok(Bundles {
            plain: write("true", &["/bin/true"], None)?,
            seccomp: write("seccomp", &["/bin/true"], Some(&profile))?,
            sleep: write("sleep", &["/bin/sleep", "60"], None)?,
            dir,
        })
    }
}

fn measure_all(runtimes: &[Runtime], bundles: &Bundles) -> Result<Vec<Row>> {
    println!(
        "== OCI lifecycle: median of {RUNS} after {WARM_UP} warm-ups, runtimes taking turns\n"
    );
    let mut rows: Vec<Row> = runtimes.iter().map(|_| Row::default()).collect();
    for i in 0..RUNS + WARM_UP {
        for k in turns(i, runtimes.len()) {
            let (runtime, row) = (&runtimes[k], &mut rows[k]);
            let id = format!("bench-{}-{i}", runtime.name);
            let (run, _) = runtime.timed(&["run", "--bundle", &bundles.plain, &id])?;
            let (seccomp, _) = runtime.timed(&["run", "--bundle", &bundles.seccomp, &id])?;
            let pid_file = Path::new(&bundles.plain).join(format!("{}.pid", runtime.name));
            let [create, start, delete] =
                create_start_delete(&bundles.plain, &pid_file, &id, |args| {
                    runtime.timed(args).map(|(elapsed, _)| elapsed)
                })?;
            if i >= WARM_UP {
                row.run.push(run);
                row.seccomp.push(seccomp);
                row.create.push(create);
                row.start.push(start);
                row.delete.push(delete);
            }
        }
    }
    if Path::new(GNU_TIME).exists() {
        for i in 0..5 {
            for k in turns(i, runtimes.len()) {
                let (runtime, row) = (&runtimes[k], &mut rows[k]);
                let [run, lifecycle] = peak_rss_kb(runtime, bundles, i)?;
                row.run_rss_kb.push(run);
                row.lifecycle_rss_kb.push(lifecycle);
            }
        }
    } else {
        println!("{GNU_TIME} not installed (Debian package time): no peak RSS figures\n");
    }
    for i in 0..5 {
        for k in turns(i, runtimes.len()) {
            let (runtime, row) = (&runtimes[k], &mut rows[k]);
            row.waiting_rss_kb
                .push(waiting_rss_kb(runtime, &bundles.sleep, i)?);
        }
    }
    for round in 0..MANY_ROUNDS {
        for k in turns(round, runtimes.len()) {
            let (runtime, row) = (&runtimes[k], &mut rows[k]);
            let [up, down, up_cpu, down_cpu, up_busy, down_busy] = many(runtime, &bundles.sleep)?;
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            row.many_up.push(up);
            row.many_down.push(down);
            row.many_up_cpu.push(up_cpu);
            row.many_down_cpu.push(down_cpu);
            row.many_up_busy.push((up_busy, up * cpus));
            row.many_down_busy.push((down_busy, down * cpus));
        }
    }
    Ok(rows)
}

/// `create` (with a pid file), `start`, the container's exit, and `delete` of `id` on
/// `bundle`, each command run by `step`; what `step` gave for each.
fn create_start_delete<T>(
    bundle: &str,
    pid_file: &Path,
    id: &str,
    mut step: impl FnMut(&[&str]) -> Result<T>,
) -> Result<[T; 3]> {
    let pid_arg = pid_file.to_string_lossy();
    let create = step(&["create", "--bundle", bundle, "--pid-file", &pid_arg, id])?;
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or("no pid file after create")?;
    let start = step(&["start", id])?;
    reap(pid)?;
    let delete = step(&["delete", id])?;
    Ok([create, start, delete])
}

/// GNU time, which measures a command's peak RSS from a fork of its own (see
/// [`peak_rss_kb`]).
const GNU_TIME: &str = "/usr/bin/time";

/// The peak RSS in kB of a `run` of `/bin/true`, and the largest of a `create`, `start` and
/// `delete`'s, each under GNU time. Not the `ru_maxrss` of [`timed`]: a process's peak
/// counts the memory it had before its `exec`, and std spawns with `vfork`, whose child runs
/// in this process's memory until then, so every figure would be at least xtask's own RSS
/// (~4 MB). GNU time forks a child of its own, whose memory before the `exec` is ~1 MB.
fn peak_rss_kb(runtime: &Runtime, bundles: &Bundles, i: usize) -> Result<[i64; 2]> {
    let out = target_dir().join(format!("bench-rss-{}", std::process::id()));
    let id = format!("bench-rss-{}-{i}", runtime.name);
    let pid_file = Path::new(&bundles.plain).join(format!("{}.rss.pid", runtime.name));
    let rss = |args: &[&str]| -> Result<i64> {
        let mut cmd = Command::new(GNU_TIME);
        cmd.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&out)
            .arg(&runtime.binary)
            .arg("--root")
            .arg(&runtime.state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        timed(&mut cmd).map_err(|e| format!("{} {}: {e}", runtime.name, args[0]))?;
        let kb = std::fs::read_to_string(&out)
            .map_err(|e| format!("cannot read {}: {e}", out.display()))?;
        // The last line: GNU time writes a "Command exited with" line before it on failure.
        kb.lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("{GNU_TIME} wrote no peak RSS: {kb}"))
    };
    let result = rss(&["run", "--bundle", &bundles.plain, &id]).and_then(|run| {
        let [create, start, delete] = create_start_delete(&bundles.plain, &pid_file, &id, &rss)?;
        Ok([run, create.max(start).max(delete)])
    });
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&pid_file);
    result
}

/// The RSS of a foreground `run` half a second into its container's run: what each waiting
/// `run` costs.
fn waiting_rss_kb(runtime: &Runtime, bundle: &str, i: usize) -> Result<i64> {
    let id = format!("bench-wait-{}-{i}", runtime.name);
    let child = runtime
        .command(&["run", "--bundle", bundle, &id])
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", runtime.name))?;
    let mut guard = Foreground {
        runtime,
        id: &id,
        child,
    };
    let pid = guard.child.id();
    wait_until(Duration::from_secs(10), || running(runtime, &id)).map_err(|()| {
        format!(
            "{} run: the container did not start within 10 s",
            runtime.name
        )
    })?;
    // What a long-running container costs, not the start-up: peapod hands its waiting to
    // peapod-init after 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the status of {} run: {e}", runtime.name))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS")?;
    guard.stop();
    Ok(rss)
}

/// A foreground `run`, killed with its container when dropped.
struct Foreground<'a> {
    runtime: &'a Runtime,
    id: &'a str,
    child: Child,
}

impl Foreground<'_> {
    fn stop(&mut self) {
        let _ = self
            .runtime
            .command(&["kill", self.id, "KILL"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self
            .runtime
            .command(&["delete", "--force", self.id])
            .stderr(Stdio::null())
            .status();
        reap_all();
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Whether `runtime state ID` says running.
fn running(runtime: &Runtime, id: &str) -> bool {
    runtime
        .command(&["state", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .is_some_and(|state| state["status"] == "running")
}

/// `MANY` x `run --detach` at once (until every one has returned, each container running),
/// then `MANY` x `delete --force` at once (until all are gone): the wall time of each, then
/// the CPU time their commands took (the containers, reaped later, are not in it), then the
/// machine's busy CPU time over each (theirs, the containers' and the kernel threads').
fn many(runtime: &Runtime, bundle: &str) -> Result<[Duration; 6]> {
    let ids: Vec<String> = (0..MANY)
        .map(|i| format!("bench-many-{}-{i}", runtime.name))
        .collect();
    let all = |args: &dyn Fn(&str) -> Vec<String>| -> Result<(Duration, Duration, Duration)> {
        let cpu = children_cpu();
        let busy = machine_busy();
        let start = Instant::now();
        let children = ids
            .iter()
            .map(|id| {
                let args = args(id);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                runtime.command(&args).stderr(Stdio::null()).spawn()
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot run {}: {e}", runtime.name))?;
        let mut failed = 0;
        for mut child in children {
            if !wait_child(&mut child, Duration::from_secs(60)) {
                failed += 1;
            }
        }
        let elapsed = start.elapsed();
        let busy = machine_busy().saturating_sub(busy);
        if failed > 0 {
            return Err(format!("{}: {failed} of {MANY} failed", runtime.name));
        }
        Ok((elapsed, children_cpu().saturating_sub(cpu), busy))
    };
    let up = all(&|id| {
        vec![
            "run".into(),
            "--detach".into(),
            "--bundle".into(),
            bundle.into(),
            id.into(),
        ]
    });
    let down = all(&|id| vec!["delete".into(), "--force".into(), id.into()]);
    reap_all();
    let ((up, up_cpu, up_busy), (down, down_cpu, down_busy)) = (up?, down?);
    Ok([up, down, up_cpu, down_cpu, up_busy, down_busy])
}

/// The CPU time every CPU of the machine has spent busy since boot (user, nice, system, irq
/// and softirq of `/proc/stat`; not idle, iowait or a hypervisor's steal), in its 10 ms ticks.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            let fields: Vec<u64> = l
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// The user and system time of every child waited for so far.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Waits for `child` at most `limit`; whether it exited with 0. Killed when it takes longer.
fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn print(runtimes: &[Runtime], rows: &[Row]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let crun = runtimes.iter().position(|r| r.name == "crun");
    println!(
        "{:<15} {:>9} {:>11} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "runtime",
        "run (ms)",
        "peak RSS",
        "+seccomp ms",
        "c+s+d (ms)",
        "c/s/d RSS",
        "wait RSS",
        "binary",
        "50 up (ms)",
        "50 rm (ms)"
    );
    let mut medians = Vec::new();
    for (runtime, row) in runtimes.iter().zip(rows) {
        let cells = [
            ms(median(row.run.clone())),
            ms(median(row.seccomp.clone())),
            ms(median(row.create.clone()))
                + ms(median(row.start.clone()))
                + ms(median(row.delete.clone())),
            ms(median(row.many_up.clone())),
            ms(median(row.many_down.clone())),
        ];
        // Sizes in kB: peak RSS of `run`, of the lifecycle commands, of the waiting `run`,
        // and the binary's.
        let size = std::fs::metadata(&runtime.binary)
            .map(|m| m.len() as i64 / 1024)
            .unwrap_or(0);
        let kb = [
            median(row.run_rss_kb.clone()),
            median(row.lifecycle_rss_kb.clone()),
            median(row.waiting_rss_kb.clone()),
            size,
        ];
        println!(
            "{:<15} {:>9.2} {:>8} kB {:>12.2} {:>11.2} {:>8} kB {:>8} kB {:>8} kB {:>11.1} {:>11.1}",
            runtime.name, cells[0], kb[0], cells[1], cells[2], kb[1], kb[2], kb[3], cells[3], cells[4]
        );
        medians.push((cells, kb));
    }
    if let Some(crun) = crun {
        let (base, base_kb) = medians[crun];
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        for (runtime, (cells, kb)) in runtimes.iter().zip(&medians) {
            if runtime.name == "crun" {
                continue;
            }
            let r = |i: usize| ratio(kb[i] as f64, base_kb[i] as f64);
            println!(
                "{:<15} {:>8.2}x {:>10.2}x {:>11.2}x {:>10.2}x {:>10.2}x {:>10.2}x {:>10.2}x {:>10.2}x {:>10.2}x",
                format!("{}/crun", runtime.name),
                ratio(cells[0], base[0]),
                r(0),
                ratio(cells[1], base[1]),
                ratio(cells[2], base[2]),
                r(1),
                r(2),
                r(3),
                ratio(cells[3], base[3]),
                ratio(cells[4], base[4]),
            );
        }
    }
    println!();
    for (runtime, row) in runtimes.iter().zip(rows) {
        let busy = |b: &[(Duration, Duration)]| {
            let (busy, available) = median(b.to_vec());
            format!("{:.0} of {:.0}", ms(busy), ms(available))
        };
        println!(
            "{}: create {:.2} + start {:.2} + delete {:.2} ms; CPU of {MANY} run -d {:.1} ms, \
             of {MANY} delete -f {:.1} ms; the machine busy {} ms, {} ms",
            runtime.name,
            ms(median(row.create.clone())),
            ms(median(row.start.clone())),
            ms(median(row.delete.clone())),
            ms(median(row.many_up_cpu.clone())),
            ms(median(row.many_down_cpu.clone())),
            busy(&row.many_up_busy),
            busy(&row.many_down_busy),
        );
    }
    println!();
}

/// Waits (polling, at most `limit`) until `ready` holds.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> std::result::Result<(), ()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(())
}

/// Runs `cmd` to its end (at most 30 s); its wall time and resource usage.
fn timed(cmd: &mut Command) -> Result<(Duration, libc::rusage)> {
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let pid = child.id() as i32;
    let mut stderr = child.stderr.take();
    let deadline = start + Duration::from_secs(30);
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; both pointers are valid for writes.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == pid {
            let elapsed = start.elapsed();
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                return Ok((elapsed, usage));
            }
            let mut said = String::new();
            if let Some(err) = stderr.as_mut() {
                let _ = std::io::Read::read_to_string(err, &mut said);
            }
            return Err(format!("{} (status {status:#x})", said.trim()));
        }
        if got < 0 || Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{cmd:?} did not finish within 30 s"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits (at most 10 s) for the container process `pid`, re-parented to us, to exit.
fn reap(pid: i32) -> Result {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waits for a child of ours (a subreaper); status is a valid out-pointer.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if got == pid || got < 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("container process {pid} did not exit within 10 s"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reaps every exited child re-parented to us (the killed containers of detached runs).
fn reap_all() {
    loop {
        let mut status = 0;
        // SAFETY: reaps any exited child of ours, without blocking; status is an out-pointer.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

/// Moves this process (and what it starts) into a private mount namespace with a tmpfs for
/// the state roots and, when other runtimes run too, without the cgroup2 mount, whose hybrid
/// layout crun 1.8 refuses.
fn private_mounts(hide_cgroup2: bool) -> Result {
    let base = state_base();
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot make {}: {e}", base.display()))?;
    let base = std::ffi::CString::new(base.as_os_str().as_encoded_bytes())
        .map_err(|e| format!("state directory: {e}"))?;
    // SAFETY: unshare and mount take no pointers but the C strings given; xtask is
    // single-threaded, as CLONE_NEWNS requires.
    let ok = unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
            && libc::mount(
                c"tmpfs".as_ptr(),
                base.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"mode=0700".as_ptr().cast(),
            ) == 0
    };
    if !ok {
        return Err(format!(
            "cannot make a private mount namespace with a tmpfs for the state: {}",
            std::io::Error::last_os_error()
        ));
    }
    println!("(state roots on a tmpfs, as /run is, in a private mount namespace)");
    let unified = c"/sys/fs/cgroup/unified";
    if !hide_cgroup2 || !Path::new("/sys/fs/cgroup/unified").exists() {
        return Ok(());
    }
    // SAFETY: umount2 takes the C string given.
    if unsafe { libc::umount2(unified.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(format!(
            "cannot hide the cgroup2 mount: {}",
            std::io::Error::last_os_error()
        ));
    }
    println!("(the cgroup2 mount hidden there, which crun needs on this host)");
    Ok(())
}
