//! Interactive containers as docker users drive them: `run -it` and `exec -it` through a
//! terminal the test owns (peapod is its controlling process, as under a terminal
//! emulator), and `-i` without `-t` passing piped input on.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use nix::sys::signal::Signal;
use support::terminal::Terminal;
use support::{finish, wait_until, Deleted, TestRootfs, TIMEOUT};

/// `peapod run -d --name NAME ... -- sleep 600`, deleted when the guard drops; its output to
/// /dev/null (the container keeps what it inherits).
fn running<'a>(rootfs: &'a TestRootfs, name: &'static str) -> Deleted<'a> {
    let deleted = Deleted(rootfs, name);
    let mut command = rootfs.peapod();
    command
        .args(["run", "-d", "--name", name, "--rootfs", rootfs.arg(), "--"])
        .args(["/bin/sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let out = finish(command.spawn().expect("spawn peapod run -d"));
    assert_eq!(out.code, 0, "{out:?}");
    deleted
}

/// Whether a process of the host runs `argv` exactly.
fn runs(argv: &[&str]) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            args.len() == argv.len() && args.iter().zip(argv).all(|(a, b)| *a == b.as_bytes())
        })
    })
}

/// Drives the shell peapod relays on `term` (started at 30x100): its terminal is a pty of the
/// container's, the caller's is raw meanwhile, a resize reaches it, Ctrl-C interrupts what it
/// runs, and `exit 3` is peapod's status; the caller's terminal is cooked again afterwards.
/// `sleep` is a duration no other test uses, to find that sleep among the host's processes.
fn drive_shell(term: &mut Terminal, sleep: &str) {
    // The terminal echoes what is typed: `$((...))` tells the shell's output from the echo.
    term.type_line("tty; stty size; echo READY$((20+1))");
    let shown = term.read_until("READY21");
    assert!(shown.contains("/dev/pts/"), "{shown:?}");
    assert!(shown.contains("30 100"), "the caller's size: {shown:?}");
    assert!(
        !term.is_cooked(),
        "the caller's terminal is raw while peapod relays it"
    );

    // A terminal emulator's window grows: the kernel signals peapod (sent again here, so the
    // test does not depend on which process group the kernel picked), which passes the size
    // on. Asked until it shows (or for at most TIMEOUT): peapod may read the typed line
    // before the signal.
    term.resize(40, 120);
    term.signal(Signal::SIGWINCH);
    let deadline = Instant::now() + TIMEOUT;
    for attempt in 0.. {
        term.type_line(&format!("stty size; echo SIZE$(({attempt}+1000))"));
        let shown = term.read_until(&format!("SIZE{}", attempt + 1000));
        if shown.contains("40 120") {
            break;
        }
        assert!(Instant::now() < deadline, "no new size: {shown:?}");
    }

    // Ctrl-C reaches the process as a character, which the container's terminal turns into
    // SIGINT for its foreground process: the shell is back before the sleep would end.
    term.type_line(&format!("sleep {sleep}"));
    wait_until("the sleep to run", || runs(&["sleep", sleep]));
    term.type_bytes(&[0x03]);
    term.type_line("echo BACK$((2+2))");
    term.read_until("BACK4");
    assert!(!runs(&["sleep", sleep]), "Ctrl-C ended the sleep");

    term.type_line("exit 3");
    assert_eq!(term.wait(), 3, "the shell's status: {:?}", term.seen());
    assert!(term.is_cooked(), "the caller's terminal is restored");
}

#[test]
fn exec_it_relays_a_terminal_of_its_own() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let deleted = running(&rootfs, "it-exec");
    let mut command = rootfs.peapod();
    command.args(["exec", "-it", "it-exec", "sh"]);
    let mut term = Terminal::spawn(command, 30, 100);
    assert!(term.is_cooked());
    drive_shell(&mut term, "101");
    drop(term);
    drop(deleted);
    rootfs.assert_nothing_left();
}

#[test]
fn run_it_relays_a_terminal_and_exits_with_the_shells_status() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let mut command = rootfs.peapod();
    command.args(["run", "-it", "--rootfs", rootfs.arg(), "--", "/bin/sh"]);
    let mut term = Terminal::spawn(command, 30, 100);
    drive_shell(&mut term, "102");
    drop(term);
    rootfs.assert_nothing_left();
}

#[test]
fn exec_t_without_i_relays_output_and_leaves_the_terminal_cooked() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let deleted = running(&rootfs, "t-exec");
    let mut command = rootfs.peapod();
    command.args(["exec", "-t", "t-exec", "sh", "-c", "tty; stty size; exit 4"]);
    let mut term = Terminal::spawn(command, 25, 90);
    // Read before the exit is looked at: this terminal, too, passes bytes on late.
    let shown = term.read_until("25 90");
    assert!(shown.contains("/dev/pts/"), "{shown:?}");
    assert_eq!(term.wait(), 4, "{:?}", term.seen());
    assert!(term.is_cooked());
    drop(term);
    drop(deleted);
    rootfs.assert_nothing_left();
}

/// The last of a process's output is still in the pty's kernel queue when it exits (a busy
/// machine runs that queue late): peapod reads its pty to the end before it exits itself.
#[test]
fn exec_t_relays_everything_written_just_before_the_exit() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let deleted = running(&rootfs, "t-tail");
    let mut command = rootfs.peapod();
    command.args(["exec", "-t", "t-tail", "sh", "-c", "seq 1 20000; exit 5"]);
    let mut term = Terminal::spawn(command, 25, 90);
    let shown = term.read_until("\n20000\r");
    assert!(
        shown.contains("\n19999\r"),
        "{:?}",
        &shown[shown.len() - 40..]
    );
    assert_eq!(term.wait(), 5);
    drop(term);
    drop(deleted);
    rootfs.assert_nothing_left();
}

/// `peapod ARGS...` with `input` on a pipe kept open until it ends (so only a process given
/// the caller's stdin sees `input`, and only one given /dev/null sees an end at once).
fn piped(rootfs: &TestRootfs, args: &[&str], input: &str) -> support::Outcome {
    let mut child = rootfs
        .peapod()
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn peapod");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    let out = finish(child);
    drop(stdin);
    out
}

#[test]
fn i_passes_piped_stdin_and_without_it_exec_reads_dev_null() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let deleted = running(&rootfs, "i-exec");
    // `head -n 1`: it ends after the line, without waiting for the pipe to close.
    let out = piped(
        &rootfs,
        &["exec", "-i", "i-exec", "head", "-n", "1"],
        "hi\n",
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, "hi\n"), "{out:?}");

    // docker's exec without -i: /dev/null, an end of file at once though the pipe is open.
    let out = piped(&rootfs, &["exec", "i-exec", "cat"], "hi\n");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");

    // runc's argv, as the containerd shim gives it: the descriptors peapod was given.
    let process = rootfs.scratch().join("process.json");
    let json = r#"{"args": ["/bin/head", "-n", "1"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#;
    std::fs::write(&process, json).expect("process file");
    let path = process.to_str().expect("utf-8");
    let out = piped(&rootfs, &["exec", "--process", path, "i-exec"], "hi\n");
    assert_eq!((out.code, out.stdout.as_str()), (0, "hi\n"), "{out:?}");

    // A foreground run passes its stdin on, with -i as without (runc's run).
    for i in [&["-i"][..], &[]] {
        let mut args = vec!["run"];
        args.extend(i);
        args.extend(["--rootfs", rootfs.arg(), "--", "head", "-n", "1"]);
        let out = piped(&rootfs, &args, "hi\n");
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "hi\n"),
            "{args:?}: {out:?}"
        );
    }
    drop(deleted);
    rootfs.assert_nothing_left();
}

#[test]
fn a_hangup_reaches_the_shell_and_the_terminal_is_restored() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let deleted = running(&rootfs, "hup-exec");
    let mut command = rootfs.peapod();
    command.args(["exec", "-it", "hup-exec", "sh"]);
    let mut term = Terminal::spawn(command, 30, 100);
    term.type_line("echo UP$((1+1))");
    term.read_until("UP2");
    assert!(!term.is_cooked());
    // The terminal emulator's window is closed: peapod forwards the hangup, the shell ends
    // of it, and peapod with the shell's status, its terminal as it found it.
    term.signal(Signal::SIGHUP);
    assert_eq!(
        term.wait(),
        128 + Signal::SIGHUP as i32,
        "{:?}",
        term.seen()
    );
    assert!(term.is_cooked(), "the caller's terminal is restored");
    drop(term);
    drop(deleted);
    rootfs.assert_nothing_left();
}
