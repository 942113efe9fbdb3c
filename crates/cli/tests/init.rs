//! `peapod run --init`: peapod-init is PID 1, the command runs under it, orphans are reaped,
//! and a command without signal handlers still dies of SIGTERM.

mod support;

use std::path::PathBuf;

use support::{container_pid, facts, finish, run_in, wait_until, TestRootfs};

/// The static peapod-init `cargo xtask test` builds, or `None` after saying why we skip.
fn static_init() -> Option<PathBuf> {
    let init = std::env::var_os("PEAPOD_INIT_BIN").map(PathBuf::from);
    if init.is_none() {
        eprintln!("skipped: PEAPOD_INIT_BIN is not set (`cargo xtask test` builds the static peapod-init and sets it)");
    }
    init
}

fn init_flags(init: &std::path::Path) -> Vec<String> {
    vec![
        "--init".into(),
        "--init-path".into(),
        init.display().to_string(),
    ]
}

#[test]
fn init_is_pid_1_and_the_command_its_child() {
    let (Some(rootfs), Some(init)) = (TestRootfs::new(), static_init()) else {
        return;
    };
    let flags = init_flags(&init);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for read_only in [false, true] {
        let mut extra = flags.clone();
        if read_only {
            extra.push("--read-only");
        }
        let out = run_in(
            &rootfs,
            &extra,
            &[
                "/bin/sh",
                "-c",
                "echo pid=$$; echo ppid=$PPID; echo init=$(tr '\\0' ' ' < /proc/1/cmdline); exit 7",
            ],
        );
        assert_eq!(out.code, 7, "read-only {read_only}: {out:?}");
        let facts = facts(&out.stdout);
        assert_eq!(facts["pid"], "2", "{out:?}");
        assert_eq!(facts["ppid"], "1", "{out:?}");
        assert!(
            facts["init"].starts_with("/dev/init -- /bin/sh -c"),
            "{out:?}"
        );
    }
    // Bind-mounted on the container's /dev tmpfs: nothing was added to the rootfs.
    assert!(!rootfs.path.join("dev/init").exists());
    rootfs.assert_nothing_left();
}

#[test]
fn orphans_are_reaped_and_sigterm_ends_a_command_without_handlers() {
    let (Some(rootfs), Some(init)) = (TestRootfs::new(), static_init()) else {
        return;
    };
    // 50 grandchildren whose parents exit at once are re-parented to PID 1; then the command
    // becomes `sleep`, which reaps nothing and, as PID 1, would ignore SIGTERM.
    let script = "i=0; while [ $i -lt 50 ]; do (sleep 0.01 &); i=$((i+1)); done; \
                  touch /mnt/ready; exec sleep 100";
    let shared = rootfs.scratch().join("shared");
    std::fs::create_dir(&shared).expect("shared dir");
    let volume = format!("{}:/mnt", shared.display());
    let child = rootfs
        .peapod()
        .args(["run", "--rootfs", rootfs.arg()])
        .args(init_flags(&init))
        .args(["-v", &volume, "--", "/bin/sh", "-c", script])
        .spawn()
        .expect("spawn");
    let init_pid = container_pid(child.id());
    wait_until("the command to run", || shared.join("ready").exists());
    // Seen from the host: init is left with one child, `sleep`, and no zombie.
    let children = format!("/proc/{init_pid}/task/{init_pid}/children");
    wait_until("the orphans to be reaped", || {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        let pids: Vec<&str> = text.split_whitespace().collect();
        pids.len() == 1
            && std::fs::read_to_string(format!("/proc/{}/comm", pids[0]))
                .is_ok_and(|comm| comm.trim() == "sleep")
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).expect("kill");
    let out = finish(child);
    assert_eq!(out.code, 128 + 15, "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn a_dynamic_init_is_refused() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(
        &rootfs,
        &["--init", "--init-path", "/bin/true"],
        &["/bin/true"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("dynamically linked"), "{out:?}");
    rootfs.assert_nothing_left();
}
