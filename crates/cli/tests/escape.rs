//! No way out of a default container, tried as an attacker inside would: its processes
//! lead sessions of their own (no typing into the caller's terminal with TIOCSTI, no `kill 0`
//! of the caller's process group), hold a session keyring of their own (root's keys are
//! not theirs), run under the default seccomp profile, and find the cgroup tmpfs and the
//! masked files read-only.

mod support;

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use support::terminal::Terminal;
use support::{facts, finish, probe, run_in, wait_with_timeout, Deleted, TestRootfs, TIMEOUT};

/// `peapod run -d --name NAME ... -- sleep 600`; its output to /dev/null (the container keeps
/// what it inherits, so a pipe would stay open as long as it runs).
fn run_detached(rootfs: &TestRootfs, name: &str) -> support::Outcome {
    let mut command = rootfs.peapod();
    command
        .args(["run", "-d", "--name", name, "--rootfs", rootfs.arg(), "--"])
        .args(["/bin/sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    finish(command.spawn().expect("spawn peapod run -d"))
}

/// Whether the kernel lets a process push input into its own controlling terminal
/// (`dev.tty.legacy_tiocsti`, since 6.2; older kernels always do).
fn tiocsti_allowed() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").map_or(true, |v| v.trim() == "1")
}

/// A shell command line for this test's peapod.
fn peapod_line(rootfs: &TestRootfs, args: &str) -> String {
    format!(
        "{} --root {} {args}",
        env!("CARGO_BIN_EXE_peapod"),
        rootfs.state_root().display()
    )
}

/// Runs `command_line` (which starts the probe in a container) from a shell on a terminal
/// the test owns; the probe pushes a command into its terminal. Returns what the shell
/// showed, checked to hold no output of the pushed command.
fn pushed_command_never_runs(shell: &mut Terminal, command_line: &str) {
    // `$((6*7))` is echoed by the terminal as typed; only a shell running it prints 42.
    shell.type_line(&format!(
        "{command_line} tiocsti 'echo INJECTED-$((6*7))'; echo DONE-$((1+1))"
    ));
    let shown = shell.read_until("DONE-2");
    assert!(
        shown.contains("fd0-errno="),
        "the probe did not run: {shown}"
    );
    // Whatever the probe pushed sits in the terminal's input ahead of this line.
    shell.type_line("echo END-$((2+2))");
    let after = shell.read_until("END-4");
    let all = format!("{shown}{after}");
    assert!(
        !all.contains("INJECTED-42"),
        "a command pushed from inside the container ran in the caller's shell:\n{all}"
    );
    if tiocsti_allowed() {
        // EPERM: not its controlling terminal, and no CAP_SYS_ADMIN.
        assert!(all.contains("fd0-errno=1\r\n"), "{all}");
    }
    // ENXIO: the process has no controlling terminal at all.
    assert!(all.contains("devtty-errno=6\r\n"), "{all}");
}

#[test]
fn a_container_cannot_type_into_the_terminal_of_the_shell_that_started_it() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(probe) = probe(&rootfs) else {
        return;
    };
    if !tiocsti_allowed() {
        eprintln!("dev.tty.legacy_tiocsti is 0: TIOCSTI is refused by the kernel here; only /dev/tty is checked");
    }
    let mut shell = Terminal::shell();
    let run = peapod_line(
        &rootfs,
        &format!("run --rootfs {} -- {probe}", rootfs.arg()),
    );
    pushed_command_never_runs(&mut shell, &run);

    // The same for a process `exec`'d into a running container.
    let _deleted = Deleted(&rootfs, "tty-target");
    let detached = run_detached(&rootfs, "tty-target");
    assert_eq!(detached.code, 0, "{detached:?}");
    // `-i`: the caller's terminal is its stdin (without it, /dev/null).
    let exec = peapod_line(&rootfs, &format!("exec -i tty-target {probe}"));
    pushed_command_never_runs(&mut shell, &exec);
    let out = finish(
        rootfs
            .peapod()
            .args(["delete", "--force", "tty-target"])
            .spawn()
            .expect("spawn delete"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    drop(shell);
    rootfs.assert_nothing_left();
}

/// The session and process group ids of `pid`, as the host sees them (`/proc/PID/stat`).
fn session_of(pid: i32) -> (i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the command name in parentheses: state, ppid, pgrp, session.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<i32> = rest
        .split(' ')
        .skip(1)
        .take(3)
        .map(|f| f.parse().expect("number"))
        .collect();
    (fields[1], fields[2])
}

#[test]
fn detached_and_execd_processes_lead_sessions_of_their_own() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let _deleted = Deleted(&rootfs, "leader");
    let out = run_detached(&rootfs, "leader");
    assert_eq!(out.code, 0, "{out:?}");
    let state = finish(
        rootfs
            .peapod()
            .args(["state", "leader"])
            .spawn()
            .expect("state"),
    );
    let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("state JSON");
    let pid = i32::try_from(state["pid"].as_i64().expect("pid")).expect("pid fits");
    let ours = nix::unistd::getsid(None).expect("getsid").as_raw();
    assert_eq!(
        session_of(pid),
        (pid, pid),
        "the container's process leads its session"
    );
    assert_ne!(session_of(pid).1, ours);
    // An exec'd shell reports its own session from inside: itself, as PID N of the
    // container's PID namespace (0 would be a session outside it).
    let exec = finish(
        rootfs
            .peapod()
            .args(["exec", "leader", "/bin/sh", "-c"])
            .arg("read -r pid comm state ppid pgrp sid rest < /proc/self/stat; echo pid=$pid sid=$sid pgrp=$pgrp")
            .spawn()
            .expect("exec"),
    );
    assert_eq!(exec.code, 0, "{exec:?}");
    let line = exec.stdout.trim();
    let pid_inside = line
        .split(' ')
        .next()
        .and_then(|f| f.strip_prefix("pid="))
        .expect("pid=");
    assert_eq!(
        line,
        format!("pid={pid_inside} sid={pid_inside} pgrp={pid_inside}"),
        "{exec:?}"
    );
    let out = finish(
        rootfs
            .peapod()
            .args(["delete", "--force", "leader"])
            .spawn()
            .expect("delete"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn kill_zero_inside_reaches_the_container_and_not_its_caller() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // peapod in a process group of its own, as a shell's job is: before each container led
    // its own session, `kill -KILL 0` inside killed peapod (and would have killed this test).
    let mut command = rootfs.peapod();
    command
        .args(["run", "--name", "kill-zero", "--rootfs", rootfs.arg(), "--"])
        // The container's PID 1 ignores SIGKILL from inside its namespace: a child shell
        // sends it, to its whole process group, and PID 1 reports what became of it.
        .args(["/bin/sh", "-c", "/bin/sh -c 'kill -KILL 0'; echo inner=$?"])
        .process_group(0);
    command.stdout(Stdio::piped());
    let _deleted = Deleted(&rootfs, "kill-zero");
    let mut child = command.spawn().expect("spawn peapod");
    let pid = child.id();
    let status = wait_with_timeout(&mut child, TIMEOUT);
    let Some(status) = status else {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-(pid as i32)),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        panic!("peapod did not finish within {TIMEOUT:?}");
    };
    assert_eq!(
        status.signal(),
        None,
        "peapod itself was killed by the container's kill 0"
    );
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut said);
    }
    // The child shell died of the SIGKILL (128 + 9), and nothing else of the container did.
    assert_eq!(said, "inner=137\n");
    assert_eq!(status.code(), Some(0), "{status:?}");
    rootfs.assert_nothing_left();
}

/// A key in root's user keyring, readable only by who possesses it (as fscrypt's and
/// Kerberos's are): the caller possesses it through its session keyring, to which the user
/// keyring is linked. The kernel drops it after a minute whatever happens to the test.
const KEY_SCRIPT: &str = r#"set -e
keyctl link @u @s
id=$(keyctl add user peapod-escape-test-$$ s3cret-42 @u)
trap 'keyctl unlink "$id" @u >/dev/null 2>&1 || true' EXIT
keyctl timeout "$id" 60
keyctl setperm "$id" 0x3f010000
echo caller=$(keyctl pipe "$id")
echo new=$("$PEAPOD" --root "$STATE" run --rootfs "$ROOTFS" --security-opt seccomp=unconfined -- /probe keyread "$id")
echo inherited=$("$PEAPOD" --root "$STATE" run --rootfs "$ROOTFS" --security-opt seccomp=unconfined --no-new-keyring -- /probe keyread "$id")
"#;

#[test]
fn a_key_in_roots_user_keyring_is_out_of_a_containers_reach() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    if probe(&rootfs).is_none() {
        return;
    }
    if Command::new("keyctl").arg("--version").output().is_err() {
        eprintln!("skipped: no keyctl (Debian's keyutils) to add a key with");
        return;
    }
    // A session keyring of the test's own, so that the key's possession does not depend on
    // the session the tests were started in.
    let child = Command::new("keyctl")
        .args(["session", "-", "sh", "-c", KEY_SCRIPT])
        .env("PEAPOD", env!("CARGO_BIN_EXE_peapod"))
        .env("STATE", rootfs.state_root())
        .env("ROOTFS", &rootfs.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyctl session");
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    let facts = facts(&out.stdout);
    assert_eq!(facts["caller"], "s3cret-42", "the caller reads it: {out:?}");
    // EACCES: the container's own session keyring does not lead to root's user keyring.
    assert_eq!(facts["new"], "key-errno=13", "{out:?}");
    // With runc's --no-new-keyring the caller's keyring is kept, and the key with it.
    assert_eq!(facts["inherited"], "key=s3cret-42", "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn the_default_seccomp_profile_applies_unless_unconfined() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(probe) = probe(&rootfs) else {
        return;
    };
    let script = format!("grep '^Seccomp:' /proc/self/status; {probe} userfaultfd");
    let confined = run_in(&rootfs, &[], &["/bin/sh", "-c", &script]);
    assert_eq!(confined.code, 0, "{confined:?}");
    assert!(confined.stdout.contains("Seccomp:\t2"), "{confined:?}");
    // Refused with EPERM by podman's, Docker's and peapod's default profiles alike.
    assert!(confined.stdout.contains("uffd-errno=1"), "{confined:?}");
    let free = run_in(
        &rootfs,
        &["--security-opt", "seccomp=unconfined"],
        &["/bin/sh", "-c", &script],
    );
    assert_eq!(free.code, 0, "{free:?}");
    assert!(free.stdout.contains("Seccomp:\t0"), "{free:?}");
    assert!(free.stdout.contains("uffd=ok"), "{free:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn the_cgroup_tree_and_masked_files_are_read_only() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // The fourth and sixth fields of mountinfo: the mount point and its options.
    let out = run_in(
        &rootfs,
        &[],
        &[
            "/bin/sh",
            "-c",
            "mkdir /sys/fs/cgroup/made 2>&1; echo mkdir=$?; \
             awk '$5 == \"/sys/fs/cgroup\" || $5 == \"/proc/keys\" { print $5 \"=\" $6 }' \
                 /proc/self/mountinfo; \
             echo x > /proc/keys; echo keys-now=$(wc -c < /proc/keys)",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let facts = facts(&out.stdout);
    assert_ne!(
        facts["mkdir"], "0",
        "made a directory in /sys/fs/cgroup: {out:?}"
    );
    assert!(out.stdout.contains("Read-only file system"), "{out:?}");
    let read_only = |point: &str| {
        facts[point]
            .split(',')
            .next()
            .is_some_and(|first| first == "ro")
    };
    assert!(read_only("/sys/fs/cgroup"), "{out:?}");
    // Masked by /dev/null, bound read-only: a write goes nowhere (a device node takes writes
    // on a read-only mount; it is the null device), and the kernel's file stays hidden.
    assert!(read_only("/proc/keys"), "{out:?}");
    assert_eq!(facts["keys-now"], "0", "{out:?}");
    rootfs.assert_nothing_left();
}
