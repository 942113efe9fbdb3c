//! Signals sent to peapod-init reach the child, or its whole process group
//! with `-g`.

mod common;

use common::{eventually, init, scratch, signal, start};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn wait_for_line(path: &Path, line: &str) {
    eventually(10, line, || {
        log(path).lines().any(|l| l == line).then_some(())
    });
}

#[test]
fn signals_are_forwarded_to_the_child() {
    let dir = scratch("forward");
    let file = dir.join("log");
    // The shell records each trapped signal; SIGTERM also ends it. Numbers
    // rather than names keep dash's trap happy for WINCH.
    let script = r#"
        for s in 1:HUP 2:INT 10:USR1 12:USR2 28:WINCH; do
            trap "echo ${s#*:} >> $0" "${s%:*}"
        done
        trap "echo TERM >> $0; exit 0" 15
        echo ready >> "$0"
        while :; do sleep 0.02; done
    "#;
    let p = start(
        init(&["sh", "-c", script, file.to_str().expect("utf-8")]),
        &dir,
    );
    wait_for_line(&file, "ready");
    for (num, name) in [
        (2, "INT"),
        (1, "HUP"),
        (10, "USR1"),
        (12, "USR2"),
        (28, "WINCH"),
    ] {
        p.signal(num);
        wait_for_line(&file, name);
    }
    p.signal(15);
    let f = p.finish(10);
    assert_eq!(f.code(), 0, "{f:?}");
    assert_eq!(log(&file), "ready\nINT\nHUP\nUSR1\nUSR2\nWINCH\nTERM\n");
}

/// Runs a shell with a background subshell, both trapping SIGUSR1, sends
/// SIGUSR1 to peapod-init and returns the log.
fn usr1_with_subshell(group: bool, test: &str) -> String {
    let dir = scratch(test);
    let file = dir.join("log");
    let script = r#"
        ( trap "echo sub:USR1 >> $0" 10; echo sub:ready >> "$0"; while :; do sleep 0.02; done ) &
        sub=$!
        trap "echo main:USR1 >> $0" 10
        trap "kill $sub 2>/dev/null; exit 0" 15
        echo main:ready >> "$0"
        while :; do sleep 0.02; done
    "#;
    let mut args = vec![];
    if group {
        args.push("-g");
    }
    args.extend(["sh", "-c", script, file.to_str().expect("utf-8")]);
    let p = start(init(&args), &dir);
    wait_for_line(&file, "main:ready");
    wait_for_line(&file, "sub:ready");
    p.signal(10);
    wait_for_line(&file, "main:USR1");
    if group {
        wait_for_line(&file, "sub:USR1");
    } else {
        // Give a wrongly delivered signal time to show up.
        std::thread::sleep(Duration::from_millis(300));
    }
    p.signal(15);
    let f = p.finish(10);
    assert_eq!(f.code(), 0, "{f:?}");
    log(&file)
}

#[test]
fn group_flag_signals_the_whole_process_group() {
    let log = usr1_with_subshell(true, "group");
    assert!(log.contains("sub:USR1"), "{log}");
}

#[test]
fn without_group_flag_only_the_child_is_signalled() {
    let log = usr1_with_subshell(false, "nogroup");
    assert!(
        log.contains("main:USR1") && !log.contains("sub:USR1"),
        "{log}"
    );
}

#[test]
fn init_ignores_sigttin_and_sigttou_and_forwards_sigtstp() {
    // TTIN/TTOU would stop a background init; they are ignored, so the
    // child keeps running and never sees them. SIGTSTP is forwarded.
    let dir = scratch("jobctl");
    let file = dir.join("log");
    let script = r#"
        trap "echo TSTP >> $0" 20
        trap "echo TTIN >> $0" 21
        trap "exit 0" 15
        echo ready >> "$0"
        while :; do sleep 0.02; done
    "#;
    let p = start(
        init(&["sh", "-c", script, file.to_str().expect("utf-8")]),
        &dir,
    );
    wait_for_line(&file, "ready");
    signal(p.pid(), 21);
    signal(p.pid(), 22);
    p.signal(20);
    wait_for_line(&file, "TSTP");
    let state = common::proc_status(p.pid(), "State").unwrap_or_default();
    assert!(!state.starts_with('T'), "init was stopped: {state}");
    p.signal(15);
    let f = p.finish(10);
    assert_eq!(f.code(), 0, "{f:?}");
    assert!(!log(&file).contains("TTIN"), "{}", log(&file));
}
