//! The command line and exit statuses of the `peapod-init` binary.
//!
//! These run peapod-init as a child subreaper (not PID 1), which needs no
//! privileges and keeps the 256-status loop fast.

mod common;

use common::{init, scratch, start};

fn run(args: &[&str], test: &str) -> common::Finished {
    let dir = scratch(test);
    start(init(args), &dir).finish(20)
}

#[test]
fn every_exit_code_comes_back_unchanged() {
    let dir = scratch("codes");
    for code in 0..=255 {
        let script = format!("exit {code}");
        let f = start(init(&["sh", "-c", &script]), &dir).finish(10);
        assert_eq!(f.code(), code, "exit {code}: {f:?}");
    }
}

#[test]
fn death_by_signal_gives_128_plus_signal() {
    assert_eq!(run(&["sh", "-c", "kill -KILL $$"], "kill").code(), 137);
    assert_eq!(run(&["sh", "-c", "kill -TERM $$"], "term").code(), 143);
    assert_eq!(
        run(&["--", "sh", "-c", "kill -USR1 $$"], "usr1").code(),
        138
    );
}

#[test]
fn exit_codes_can_be_remapped_to_zero() {
    assert_eq!(run(&["-e", "3", "sh", "-c", "exit 3"], "remap3").code(), 0);
    assert_eq!(run(&["-e", "3", "sh", "-c", "exit 4"], "remap4").code(), 4);
    assert_eq!(
        run(
            &["-e", "1", "-e143", "sh", "-c", "kill -TERM $$"],
            "remap143"
        )
        .code(),
        0
    );
}

#[test]
fn bad_usage_exits_2_with_usage() {
    for (args, needle) in [
        (&["-x", "true"][..], "unknown option: -x"),
        (&["--frobnicate"][..], "unknown option: --frobnicate"),
        (&[][..], "no command"),
        (&["-g", "--"][..], "no command"),
        (&["-e"][..], "needs a value"),
        (&["-e", "300", "true"][..], "bad value for -e"),
        (&["-P", "true"][..], "pause mode takes no command"),
    ] {
        let f = run(args, "usage");
        assert_eq!(f.code(), 2, "{args:?}: {f:?}");
        assert!(f.stderr.contains(needle), "{args:?}: {:?}", f.stderr);
        assert!(
            f.stderr.contains("usage: peapod-init"),
            "{args:?}: {:?}",
            f.stderr
        );
    }
}

#[test]
fn help_and_version() {
    let f = run(&["-h"], "help");
    assert_eq!(f.code(), 0);
    assert!(f.stdout.starts_with("usage: peapod-init"), "{f:?}");
    let f = run(&["--version"], "version");
    assert_eq!(f.code(), 0);
    assert_eq!(
        f.stdout,
        format!("peapod-init {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn missing_command_gives_127_and_not_executable_126() {
    let f = run(&["peapod-init-no-such-command"], "notfound");
    assert_eq!(f.code(), 127, "{f:?}");
    assert_eq!(
        f.stderr,
        "peapod-init: peapod-init-no-such-command: command not found\n"
    );
    let f = run(&["/nonexistent/cmd"], "notfound-path");
    assert_eq!(f.code(), 127, "{f:?}");

    let dir = scratch("noexec");
    let script = dir.join("script");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    let f = start(init(&[script.to_str().expect("utf-8 path")]), &dir).finish(10);
    assert_eq!(f.code(), 126, "{f:?}");
    assert!(f.stderr.ends_with(": permission denied\n"), "{f:?}");
    assert_eq!(f.stderr.lines().count(), 1, "{f:?}");
}

#[test]
fn no_descriptor_above_2_leaks_into_the_child() {
    // The shell opens 7 and 8 without close-on-exec, then becomes
    // peapod-init, whose child lists its own descriptors. The init's own
    // list shows that the descriptors really were inherited. `ls` writes
    // straight to the output file: a command substitution would add a pipe
    // to the shell's descriptors.
    let dir = scratch("fds");
    let inner = r#"ls /proc/$$/fd; echo init:; ls /proc/$PPID/fd"#;
    let outer = format!("exec 7</dev/null 8>/dev/null; exec \"$0\" sh -c '{inner}'");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(outer).arg(common::bin());
    let f = start(cmd, &dir).finish(10);
    assert_eq!(f.code(), 0, "{f:?}");
    let (child, init) = f
        .stdout
        .split_once("init:\n")
        .unwrap_or_else(|| panic!("{f:?}"));
    assert_eq!(
        child.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    let init_fds: Vec<&str> = init.split_whitespace().collect();
    assert!(
        init_fds.contains(&"7") && init_fds.contains(&"8"),
        "{init_fds:?}"
    );
}

#[test]
fn the_child_does_not_inherit_the_inits_signal_state() {
    // The init blocks signals and ignores SIGTTIN/SIGTTOU (and the std form
    // of the binary starts with SIGPIPE ignored): none of that may reach the
    // child. Whatever else the init was started with is passed on, so the
    // child's ignored set is the init's minus those three. The shell reads
    // the status files with builtins only: an external command would report
    // its own state.
    let script = r#"
        for p in $$ $PPID; do
            while read -r l; do case $l in SigBlk*|SigIgn*) echo "$l";; esac; done < /proc/$p/status
        done
    "#;
    let f = run(&["sh", "-c", script], "dispositions");
    assert_eq!(f.code(), 0, "{f:?}");
    let values: Vec<u64> = f
        .stdout
        .lines()
        .map(|l| u64::from_str_radix(l.split_whitespace().nth(1).expect("value"), 16).expect("hex"))
        .collect();
    // The init's blocked set is not checked: while it sleeps in
    // rt_sigtimedwait the kernel reports the waited-for signals unblocked.
    let [child_blocked, child_ignored, _, init_ignored] = values[..] else {
        panic!("{f:?}")
    };
    let bit = |sig: u32| 1u64 << (sig - 1);
    assert_eq!(child_blocked, 0, "{f:?}");
    assert_eq!(
        init_ignored & (bit(21) | bit(22)),
        bit(21) | bit(22),
        "{f:?}"
    );
    assert_eq!(
        child_ignored,
        init_ignored & !(bit(13) | bit(21) | bit(22)),
        "{f:?}"
    );
}

#[test]
fn exec_mode_becomes_the_program_with_its_own_argv0() {
    // `--exec PATH ARGV0 ARGS...`: the program replaces the init (same pid, no fork), with
    // argv[0] as given.
    let f = run(
        &["--exec", "/bin/sh", "custom-name", "-c", "echo $0; exit 3"],
        "exec-mode",
    );
    assert_eq!(f.code(), 3, "{f:?}");
    assert_eq!(f.stdout, "custom-name\n", "{f:?}");
    let f = run(&["--exec", "/nonexistent/cmd", "cmd"], "exec-missing");
    assert_eq!(f.code(), 127, "{f:?}");
    assert_eq!(f.stderr.lines().count(), 1, "{f:?}");
    let f = run(&["--exec", "/bin/sh"], "exec-no-argv");
    assert_eq!(f.code(), 2, "{f:?}");
}
