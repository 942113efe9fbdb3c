//! Bad input gets one clear line on stderr and a distinct exit status, and leaves nothing.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};

use support::{finish, run_in, TestRootfs};

/// Checks the status, that stderr is one line holding `needle`, and that nothing is left.
fn assert_fails(rootfs: &TestRootfs, out: &support::Outcome, code: i32, needle: &str) {
    assert_eq!(out.code, code, "{out:?}");
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "not one line: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains(needle),
        "{:?} lacks {needle:?}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    rootfs.assert_nothing_left();
}

fn run_args(rootfs: &TestRootfs, args: &[&str]) -> support::Outcome {
    finish(rootfs.peapod().args(args).spawn().expect("spawn"))
}

#[test]
fn missing_rootfs_is_named() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let missing = rootfs.scratch().join("no-such-rootfs");
    let missing = missing.to_str().expect("utf-8");
    let out = run_args(&rootfs, &["run", "--rootfs", missing, "--", "/bin/true"]);
    assert_fails(
        &rootfs,
        &out,
        125,
        &format!("rootfs {missing}: does not exist"),
    );
}

#[test]
fn rootfs_that_is_a_file_is_refused() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let file = rootfs.scratch().join("file");
    std::fs::write(&file, "").expect("file");
    let out = run_args(
        &rootfs,
        &[
            "run",
            "--rootfs",
            file.to_str().expect("utf-8"),
            "--",
            "/bin/true",
        ],
    );
    assert_fails(&rootfs, &out, 125, "not a directory");
}

#[test]
fn missing_command_gives_127_naming_the_path_inside() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(&rootfs, &[], &["/bin/no-such-tool"]);
    assert_fails(
        &rootfs,
        &out,
        127,
        "/bin/no-such-tool: no such file or directory in the container",
    );
    let out = run_in(&rootfs, &[], &["no-such-tool"]);
    assert_fails(
        &rootfs,
        &out,
        127,
        "no-such-tool: command not found in the container",
    );
}

#[test]
fn command_that_cannot_execute_gives_126() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let path = rootfs.path.join("bin/not-executable");
    std::fs::write(&path, "#!/bin/sh\necho never\n").expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run_in(&rootfs, &[], &["/bin/not-executable"]);
    assert_fails(&rootfs, &out, 126, "/bin/not-executable: cannot execute");
    let out = run_in(&rootfs, &[], &["/etc"]);
    assert_fails(&rootfs, &out, 126, "/etc: cannot execute");
}

#[test]
fn a_missing_workdir_is_made_and_on_a_read_only_root_named() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // As runc and Docker: made, 0755.
    let out = run_in(
        &rootfs,
        &["-w", "/no/such/dir"],
        &["/bin/sh", "-c", "pwd; ls -ld /no/such/dir | cut -c1-10"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "/no/such/dir\ndrwxr-xr-x\n", "{out:?}");
    let out = run_in(
        &rootfs,
        &["--read-only", "-w", "/no/such/other"],
        &["/bin/true"],
    );
    assert_fails(&rootfs, &out, 125, "working directory /no/such/other");
}

#[test]
fn malformed_flags_are_usage_errors() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let cases: [(&[&str], &str); 6] = [
        (&["-v", "/only-one-part"], "HOST:CTR"),
        (&["-v", "/a:relative"], "absolute path"),
        (&["-e", "=novalue"], "KEY=VALUE"),
        (&["--share", "nett"], "unknown namespace \"nett\""),
        (&["--bogus-flag"], "--bogus-flag"),
        (&["--name", "../x"], "a name is"),
    ];
    for (flags, needle) in cases {
        let out = run_in(&rootfs, flags, &["/bin/true"]);
        assert_fails(&rootfs, &out, 2, needle);
    }
}

#[test]
fn missing_bind_source_is_named_and_nothing_starts() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let source = rootfs.scratch().join("absent");
    let volume = format!("{}:/data", source.display());
    let out = run_in(&rootfs, &["-v", &volume], &["/bin/true"]);
    assert_fails(
        &rootfs,
        &out,
        125,
        &format!("bind mount source {}", source.display()),
    );
}

#[test]
fn hostile_symlinks_never_escape_the_rootfs() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let outside = tempfile::tempdir().expect("outside dir");
    let tag = std::process::id();
    symlink("/", rootfs.path.join("evil")).expect("symlink");
    symlink("../../../../../../..", rootfs.path.join("up")).expect("symlink");
    // An absolute link to a real host directory: inside, it must resolve within the rootfs.
    symlink(outside.path(), rootfs.path.join("host-dir")).expect("symlink");
    let data = rootfs.scratch().join("data");
    std::fs::create_dir(&data).expect("data");
    std::fs::write(data.join("payload"), "ok").expect("payload");
    let vols = [
        format!("{}:/evil/escape-a-{tag}", data.display()),
        format!("{}:/up/tmp/escape-b-{tag}", data.display()),
        format!("{}:/host-dir/escape-c", data.display()),
    ];
    let out = run_in(
        &rootfs,
        &["-v", &vols[0], "-v", &vols[1], "-v", &vols[2]],
        &["/bin/sh", "-c", &format!("cat /escape-a-{tag}/payload /tmp/escape-b-{tag}/payload /host-dir/escape-c/payload")],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "okokok");
    assert!(!std::path::Path::new(&format!("/escape-a-{tag}")).exists());
    assert!(!std::path::Path::new(&format!("/tmp/escape-b-{tag}")).exists());
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        0
    );
    // Everything was made inside the rootfs instead.
    assert!(rootfs.path.join(format!("escape-a-{tag}")).is_dir());
    assert!(rootfs.path.join(format!("tmp/escape-b-{tag}")).is_dir());
    let inner = rootfs
        .path
        .join(outside.path().strip_prefix("/").expect("absolute"));
    assert!(inner.join("escape-c").is_dir());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&outside.path().display().to_string()));
    rootfs.assert_nothing_left();
}

#[test]
fn proc_on_a_symlink_is_refused_and_nothing_is_mounted_at_its_target() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let outside = tempfile::tempdir().expect("outside dir");
    std::fs::remove_dir(rootfs.path.join("proc")).expect("rmdir proc");
    symlink(outside.path(), rootfs.path.join("proc")).expect("symlink");
    let out = run_in(&rootfs, &[], &["/bin/true"]);
    assert_fails(
        &rootfs,
        &out,
        125,
        "/proc: proc must be mounted on an ordinary directory, not a symbolic link",
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        0
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&outside.path().display().to_string()));
}

#[test]
fn bad_destinations_commands_and_names_are_one_line_errors() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let host = rootfs.scratch().to_str().expect("utf-8").to_owned();
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["-v", &format!("{host}:/proc")],
            125,
            "/proc cannot be a bind-mount destination",
        ),
        (
            &["-v", &format!("{host}:/proc/sys")],
            125,
            "mount destination /proc/sys: mounts inside /proc are refused",
        ),
        (&["--share", "mnt"], 2, "mnt cannot be shared"),
        (
            &["--share", "foo"],
            2,
            "unknown namespace \"foo\" (expected one of: pid, ipc, uts, net, cgroup, time)",
        ),
        (&[], 2, "empty command"),
    ];
    for (flags, code, needle) in cases {
        let cmd: &[&str] = if flags.is_empty() {
            &[""]
        } else {
            &["/bin/true"]
        };
        let out = run_in(&rootfs, flags, cmd);
        assert_fails(&rootfs, &out, code, needle);
    }
}

#[test]
fn a_closed_standard_output_ends_a_listing_quietly() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let storage = rootfs.scratch().join("store");
    let storage = storage.to_str().expect("utf-8");
    for args in [
        &["features"][..],
        &["completion", "bash"],
        &["list"],
        &["images", "--storage", storage],
        &["pod", "list"],
    ] {
        // A pipe whose reader is gone before peapod writes: every write fails with EPIPE,
        // as `peapod images | head -1` does once head has its line.
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        drop(reader);
        let mut command = rootfs.peapod();
        command.args(args).stdout(std::process::Stdio::from(writer));
        let out = finish(command.spawn().expect("spawn"));
        // Ended by SIGPIPE (128 + 13) as any Unix tool, or done with nothing left to say.
        assert!(out.code == 141 || out.code == 0, "{args:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
    rootfs.assert_nothing_left();
}
