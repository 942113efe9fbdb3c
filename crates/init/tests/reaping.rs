//! Zombie reaping: as PID 1 of a PID namespace, as a child subreaper, in
//! pause mode, and the process-group clean-up after the child exits.

mod common;

use common::{eventually, init, init_as_pid1, proc_status, root_or_skip, scratch, start};
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

/// Counts zombies in the PID namespace, retrying for up to 10 seconds, and
/// exits 42 so the test can check that the child's status survives.
const COUNT_ZOMBIES_AND_EXIT_42: &str = r#"
    tries=0
    while :; do
        n=0
        for s in /proc/[0-9]*/stat; do
            read -r l < "$s" 2>/dev/null || continue
            case "${l##*) }" in Z*) n=$((n+1));; esac
        done
        [ $n -eq 0 ] || [ $tries -ge 200 ] && break
        tries=$((tries+1)); sleep 0.05
    done
    echo zombies=$n
    exit 42
"#;

#[test]
fn burst_of_10000_orphans_is_reaped_as_pid1() {
    if !root_or_skip("burst_of_10000_orphans_is_reaped_as_pid1") {
        return;
    }
    // Two shells each start 5,000 background children and exit without
    // waiting; dash never reaps background jobs on its own, so all 10,000
    // end up re-parented to PID 1.
    let burst = "i=0; while [ $i -lt 5000 ]; do true & i=$((i+1)); done";
    let script = format!("sh -c '{burst}' & sh -c '{burst}' & wait\n{COUNT_ZOMBIES_AND_EXIT_42}");
    let dir = scratch("burst");
    let f = start(init_as_pid1(&["sh", "-c", &script]), &dir).finish(50);
    assert_eq!(f.stdout, "zombies=0\n", "{f:?}");
    assert_eq!(f.code(), 42, "{f:?}");
}

#[test]
fn orphans_are_reaped_by_the_subreaper_when_not_pid1() {
    let dir = scratch("subreaper");
    let pidfile = dir.join("orphan");
    let orphaned = dir.join("orphaned");
    let go = dir.join("go");
    let release = dir.join("release");
    // The inner shell leaves an orphan behind that runs until the test creates `go`, and
    // exits. The outer shell has waited for it, so when it writes `orphaned` the orphan has
    // been re-parented already. It then waits until the test has checked who the orphan's
    // parent is and that it is reaped, and exits 5. Every loop is bounded (30 s), so even a
    // process the test failed to kill ends on its own.
    let script = r#"
        sh -c '(i=0; while [ ! -e "$2" ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done) &
               echo $! > "$0"' "$0" "$1" "$2"
        : > "$3"
        i=0; while [ ! -e "$1" ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done
        exit 5
    "#;
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
    let p = start(
        init(&[
            "sh",
            "-c",
            script,
            &path(&pidfile),
            &path(&release),
            &path(&go),
            &path(&orphaned),
        ]),
        &dir,
    );
    eventually(10, "the inner shell to have exited", || {
        orphaned.exists().then_some(())
    });
    let orphan: i32 = fs::read_to_string(&pidfile)
        .expect("orphan pid")
        .trim()
        .parse()
        .expect("a pid");
    let ppid = proc_status(orphan, "PPid");
    assert_eq!(
        ppid,
        Some(p.pid().to_string()),
        "orphan {orphan} not adopted by peapod-init {}",
        p.pid()
    );
    // After it exits it must vanish, not linger as a zombie, while
    // peapod-init is still running.
    fs::write(&go, "").expect("go");
    eventually(10, "orphan reaped", || {
        proc_status(orphan, "State").is_none().then_some(())
    });
    assert_eq!(
        proc_status(p.pid(), "State").map(|s| s.starts_with('Z')),
        Some(false)
    );
    fs::write(&release, "").expect("release");
    let f = p.finish(10);
    assert_eq!(f.code(), 5, "{f:?}");
    assert!(!f.stderr.contains("warning"), "{f:?}");
}

fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn pause_mode_exits_0_on(sig: i32) {
    let dir = scratch("pause");
    let p = start(init_as_pid1(&["-P"]), &dir);
    // peapod-init is unshare's only child.
    let init_pid = eventually(10, "peapod-init pid", || children(p.pid()).first().copied());
    eventually(10, "chdir /", || {
        (fs::read_link(format!("/proc/{init_pid}/cwd")).ok()? == std::path::Path::new("/"))
            .then_some(())
    });
    // Orphans created inside the namespace are re-parented to its PID 1.
    let status = Command::new("nsenter")
        .args([
            "-t",
            &init_pid.to_string(),
            "-p",
            "--",
            "sh",
            "-c",
            "sleep 0.3 & sleep 0.2 & exit 0",
        ])
        .status()
        .expect("nsenter");
    assert!(status.success());
    eventually(10, "orphans adopted", || {
        (children(init_pid).len() == 2).then_some(())
    });
    // Zombies stay in the children list until reaped.
    eventually(10, "orphans reaped", || {
        children(init_pid).is_empty().then_some(())
    });
    // Signals other than TERM and INT do not end pause mode.
    common::signal(init_pid, 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        proc_status(init_pid, "State").is_some(),
        "pause exited on SIGHUP"
    );
    common::signal(init_pid, sig);
    let f = p.finish(10);
    assert_eq!(f.code(), 0, "{f:?}");
}

#[test]
fn pause_mode_reaps_and_exits_0_on_sigterm() {
    if root_or_skip("pause_mode_reaps_and_exits_0_on_sigterm") {
        pause_mode_exits_0_on(15);
    }
}

#[test]
fn pause_mode_exits_0_on_sigint() {
    if root_or_skip("pause_mode_exits_0_on_sigint") {
        pause_mode_exits_0_on(2);
    }
}

#[test]
fn kill_group_terminates_leftovers_after_the_child_exits() {
    let dir = scratch("killgroup");
    let pidfile = dir.join("pids");
    // One leftover dies on SIGTERM, the other ignores it and needs SIGKILL
    // after the one-second grace period. The child exits only once the
    // second one has set up its trap.
    let script = r#"
        sleep 30 & echo $! >> "$0"
        (trap "" TERM; : > "$0.ready"; exec sleep 30) & echo $! >> "$0"
        while [ ! -e "$0.ready" ]; do sleep 0.01; done
        exit 3
    "#;
    let started = Instant::now();
    let f = start(
        init(&[
            "-k",
            "1",
            "sh",
            "-c",
            script,
            pidfile.to_str().expect("utf-8"),
        ]),
        &dir,
    )
    .finish(20);
    let elapsed = started.elapsed();
    assert_eq!(f.code(), 3, "{f:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "SIGKILL came before the grace period: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    for pid in fs::read_to_string(&pidfile)
        .expect("pids")
        .split_whitespace()
    {
        let pid: i32 = pid.parse().expect("pid");
        assert_eq!(
            proc_status(pid, "State"),
            None,
            "leftover {pid} still exists"
        );
    }
}
