//! The OCI lifecycle, peapod next to runc and crun on one bundle: `run` of `/bin/true` (wall
//! time and the runtime's peak RSS), and `create`, `start`, `delete` one by one.
//!
//! xtask makes itself a child subreaper for this, as containerd's shim and conmon are: the
//! container processes that `create` leaves behind are re-parented to it and reaped here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_tool, median};
use crate::{build_peapod, rootfs, target_dir, Result};

const RUNS: usize = 20;
const WARM_UP: usize = 3;

pub(crate) fn run() -> Result {
    let peapod = build_peapod()?;
    let bundle = make_bundle(&peapod)?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER and 1 only changes this process's flags.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };

    println!(
        "== OCI lifecycle on one bundle (/bin/true): median of {RUNS} after {WARM_UP} warm-ups\n"
    );
    println!(
        "{:<8} {:>10} {:>12} {:>11} {:>10} {:>11}",
        "runtime", "run (ms)", "run max RSS", "create (ms)", "start (ms)", "delete (ms)"
    );
    let mut runtimes: Vec<(&str, PathBuf)> = vec![("peapod", peapod)];
    if let Some(runc) = find_tool("runc") {
        runtimes.push(("runc", runc));
    } else {
        println!("runc: not installed, left out");
    }
    for (name, binary) in &runtimes {
        let row = measure(name, binary, &bundle)?;
        row.print(name);
    }
    // Last, because it may change this process's mounts (see below).
    if let Some(crun) = find_tool("crun") {
        match measure("crun", &crun, &bundle) {
            Ok(row) => row.print("crun"),
            Err(first) if hide_cgroup2()? => {
                println!("(crun refused this host's hybrid cgroups ({first}); measured with the cgroup2 mount hidden in a private mount namespace)");
                match measure("crun", &crun, &bundle) {
                    Ok(row) => row.print("crun"),
                    Err(e) => println!("crun: refused this host's cgroups here too: {e}"),
                }
            }
            Err(e) => println!("crun: {e}"),
        }
    } else {
        println!("crun: not installed, left out");
    }
    println!();
    let _ = std::fs::remove_dir_all(&bundle);
    Ok(())
}

struct Row {
    run: Duration,
    run_rss_kb: i64,
    create: Duration,
    start: Duration,
    delete: Duration,
}

impl Row {
    fn print(&self, name: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<8} {:>10.2} {:>9} kB {:>11.2} {:>10.2} {:>11.2}",
            ms(self.run),
            self.run_rss_kb,
            ms(self.create),
            ms(self.start),
            ms(self.delete)
        );
    }
}

/// A bundle under target/ with a copy of the default rootfs (runc refuses a symlinked one)
/// and peapod's default config running `/bin/true`.
fn make_bundle(peapod: &Path) -> Result<PathBuf> {
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let bundle = target_dir().join("bench-bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(&bundle).map_err(|e| format!("cannot create the bundle: {e}"))?;
    crate::run_status(
        Command::new("cp")
            .arg("-a")
            .arg(&rootfs_dir)
            .arg(bundle.join("rootfs")),
    )?;
    crate::run_status(Command::new(peapod).args(["spec", "--bundle"]).arg(&bundle))?;
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read config: {e}"))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("peapod spec wrote bad JSON: {e}"))?;
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&path, config.to_string()).map_err(|e| format!("cannot write config: {e}"))?;
    Ok(bundle)
}

fn measure(name: &str, binary: &Path, bundle: &Path) -> Result<Row> {
    let state = target_dir().join(format!("bench-state-{name}"));
    let runtime = |args: &[&str]| {
        let mut cmd = Command::new(binary);
        cmd.arg("--root")
            .arg(&state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let pid_file = bundle.join(format!("{name}.pid"));
    let pid_arg = pid_file.to_string_lossy().into_owned();
    let (mut run, mut rss, mut create, mut start, mut delete) =
        (vec![], vec![], vec![], vec![], vec![]);
    let result = (|| {
        for i in 0..RUNS + WARM_UP {
            let id = format!("bench-{name}-{i}");
            let (time, usage) = timed(&mut runtime(&["run", "--bundle", &bundle_arg, &id]))?;
            let (c, _) = timed(&mut runtime(&[
                "create",
                "--bundle",
                &bundle_arg,
                "--pid-file",
                &pid_arg,
                &id,
            ]))?;
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .ok_or("no pid file after create")?;
            let (s, _) = timed(&mut runtime(&["start", &id]))?;
            reap(pid)?;
            let (d, _) = timed(&mut runtime(&["delete", &id]))?;
            if i >= WARM_UP {
                run.push(time);
                rss.push(usage.ru_maxrss);
                create.push(c);
                start.push(s);
                delete.push(d);
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_dir_all(&state);
    result.map(|()| Row {
        run: median(run),
        run_rss_kb: median(rss),
        create: median(create),
        start: median(start),
        delete: median(delete),
    })
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

/// crun 1.8 refuses a hybrid cgroup layout: hide the cgroup2 mount from this process (and
/// what it starts) in a private mount namespace. False if there was nothing to hide.
fn hide_cgroup2() -> Result<bool> {
    let unified = c"/sys/fs/cgroup/unified";
    if !Path::new("/sys/fs/cgroup/unified").exists() {
        return Ok(false);
    }
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
            && libc::umount2(unified.as_ptr(), libc::MNT_DETACH) == 0
    };
    if ok {
        Ok(true)
    } else {
        Err(format!(
            "cannot hide the cgroup2 mount: {}",
            std::io::Error::last_os_error()
        ))
    }
}
