//! `peapod run` isolates: PID 1 inside, new namespaces, its own hostname, IPC, mounts and
//! network; and it passes exit statuses and signals through.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::{container_pid, facts, finish, run_in, sh, wait_until, TestRootfs};

const NAMESPACES: [&str; 6] = ["mnt", "pid", "ipc", "uts", "net", "cgroup"];

fn host_ns(ns: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{ns}"))
        .expect("own ns")
        .display()
        .to_string()
}

const PRINT_NS: &str =
    "for ns in mnt pid ipc uts net cgroup; do echo \"$ns=$(readlink /proc/self/ns/$ns)\"; done";

#[test]
fn pid_namespace_makes_entrypoint_pid_1() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let mut child = rootfs
        .peapod()
        .args([
            "run",
            "--rootfs",
            rootfs.arg(),
            "--",
            "/bin/sh",
            "-c",
            "echo pid=$$; read _; exit 0",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let host_pid = container_pid(child.id());
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).expect("status");
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid line");
    drop(child.stdin.take()); // lets `read` return
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(facts(&out.stdout)["pid"], "1");
    assert_ne!(host_pid, 1);
    // The kernel's view: the same process is host_pid outside and 1 inside.
    let ids: Vec<&str> = nspid.split_whitespace().skip(1).collect();
    assert_eq!(ids, [host_pid.to_string().as_str(), "1"]);
    rootfs.assert_nothing_left();
}

#[test]
fn every_namespace_differs_from_the_host() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = sh(&rootfs, PRINT_NS);
    assert_eq!(out.code, 0, "{out:?}");
    let inside = facts(&out.stdout);
    for ns in NAMESPACES {
        assert_ne!(inside[ns], host_ns(ns), "{ns} namespace is the host's");
    }
    rootfs.assert_nothing_left();
}

#[test]
fn share_keeps_the_hosts_namespaces() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(
        &rootfs,
        &["--share", "net,ipc,uts,pid,cgroup"],
        &["/bin/sh", "-c", PRINT_NS],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let inside = facts(&out.stdout);
    for ns in ["net", "ipc", "uts", "pid", "cgroup"] {
        assert_eq!(inside[ns], host_ns(ns), "{ns} namespace should be shared");
    }
    assert_ne!(
        inside["mnt"],
        host_ns("mnt"),
        "the mount namespace is never shared"
    );
    rootfs.assert_nothing_left();
}

#[test]
fn net_host_keeps_the_hosts_network_namespace() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(&rootfs, &["--net", "host"], &["/bin/sh", "-c", PRINT_NS]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(facts(&out.stdout)["net"], host_ns("net"));
    rootfs.assert_nothing_left();
}

#[test]
fn hostname_is_set_inside_and_unchanged_outside() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let before = nix::unistd::gethostname().expect("hostname");
    let out = run_in(&rootfs, &["--hostname", "inside-pod"], &["/bin/hostname"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "inside-pod");
    assert_eq!(nix::unistd::gethostname().expect("hostname"), before);
    let named = run_in(&rootfs, &["--name", "web-1"], &["/bin/hostname"]);
    assert_eq!(
        named.stdout.trim(),
        "web-1",
        "the name is the default hostname"
    );
    rootfs.assert_nothing_left();
}

/// A SysV shared-memory segment with `key` in the calling thread's IPC namespace.
fn make_shm(key: i32) -> i32 {
    // SAFETY: shmget allocates a kernel object; no memory of ours is passed.
    let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    id
}

fn remove_shm(id: i32) {
    // SAFETY: IPC_RMID with a null buffer only removes the segment.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

fn shm_keys(sysvipc_shm: &str) -> Vec<i64> {
    sysvipc_shm
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn sysv_shm_and_posix_queues_are_isolated_both_ways() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    const HOST_KEY: i32 = 0x5eed_0001;
    const CONTAINER_KEY: i32 = 0x5eed_0002;
    let host_segment = make_shm(HOST_KEY);
    let queue_name = format!("/peapod-test-{}", std::process::id());
    let queue = nix::mqueue::mq_open(
        queue_name.as_str(),
        nix::mqueue::MQ_OFlag::O_CREAT | nix::mqueue::MQ_OFlag::O_RDWR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        Some(&nix::mqueue::MqAttr::new(0, 4, 64, 0)),
    )
    .expect("mq_open on the host");

    // The container reports what it sees, makes a queue of its own, then waits until the test
    // has put a segment into its IPC namespace and checks that it sees that one.
    let script = format!(
        "cat /proc/sysvipc/shm; ls /dev/mqueue; touch /dev/mqueue/from-container; echo ready; \
         i=0; while [ $i -lt 300 ]; do grep -q {CONTAINER_KEY} /proc/sysvipc/shm && echo seen-own && break; \
         sleep 0.05; i=$((i+1)); done"
    );
    let mut child = rootfs
        .peapod()
        .args([
            "run",
            "--rootfs",
            rootfs.arg(),
            "--",
            "/bin/sh",
            "-c",
            &script,
        ])
        .spawn()
        .expect("spawn");
    let pid = container_pid(child.id());
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut before = String::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line == "ready" {
            break;
        }
        before.push_str(&line);
        before.push('\n');
    }
    // Put a segment into the container's IPC namespace from a thread of ours (IPC namespaces
    // are per thread), so the host never joins it.
    let ns_path = format!("/proc/{pid}/ns/ipc");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(ns_path).expect("open ipc ns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWIPC).expect("setns");
        make_shm(CONTAINER_KEY);
    })
    .join()
    .expect("thread");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = finish(child);

    let host_shm = std::fs::read_to_string("/proc/sysvipc/shm").expect("host shm");
    let host_queue_visible_inside = before.contains(queue_name.trim_start_matches('/'));
    let container_queue_on_host = nix::mqueue::mq_open(
        "/from-container",
        nix::mqueue::MQ_OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
        None,
    );
    remove_shm(host_segment);
    nix::mqueue::mq_close(queue).expect("mq_close");
    let _ = nix::mqueue::mq_unlink(queue_name.as_str());

    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !shm_keys(&before).contains(&(HOST_KEY as i64)),
        "host segment seen inside: {before}"
    );
    assert!(
        !host_queue_visible_inside,
        "host queue seen inside: {before}"
    );
    assert!(
        rest.iter().any(|l| l == "seen-own"),
        "container missed its own segment: {rest:?}"
    );
    assert!(
        !shm_keys(&host_shm).contains(&(CONTAINER_KEY as i64)),
        "container segment on the host"
    );
    assert_eq!(container_queue_on_host.err(), Some(nix::Error::ENOENT));
    rootfs.assert_nothing_left();
}

#[test]
fn root_is_the_rootfs_and_no_host_mount_is_visible() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    std::fs::write(rootfs.path.join("marker"), "in the rootfs").expect("marker");
    let out = sh(&rootfs, "cat /marker; echo; cat /proc/self/mountinfo");
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("in the rootfs"));
    let mount_points: Vec<&str> = lines.filter_map(|l| l.split_whitespace().nth(4)).collect();
    let expected = [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ];
    for point in &mount_points {
        // The container's own cgroups, read-only (as docker run shows them).
        if point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        assert!(
            expected.contains(point),
            "unexpected mount point {point} in {mount_points:?}"
        );
    }
    assert_eq!(mount_points.first(), Some(&"/"));
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(mount_points.len() < host_mounts.lines().count() + 20);
    rootfs.assert_nothing_left();
}

#[test]
fn only_loopback_exists_and_it_is_up() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = sh(&rootfs, "ls /sys/class/net; cat /sys/class/net/lo/flags; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ping-ok");
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "lo", "interfaces: {lines:?}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 0x1, 0x1, "lo is not up (flags {flags:#x})");
    assert_eq!(lines.get(2), Some(&"ping-ok"));
    rootfs.assert_nothing_left();
}

#[test]
fn exit_status_of_the_command_is_peapods() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    assert_eq!(sh(&rootfs, "exit 0").code, 0);
    assert_eq!(sh(&rootfs, "exit 7").code, 7);
    assert_eq!(sh(&rootfs, "exit 255").code, 255);
    rootfs.assert_nothing_left();
}

#[test]
fn death_by_signal_gives_128_plus_the_signal() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let mut child = rootfs
        .peapod()
        .args([
            "run",
            "--rootfs",
            rootfs.arg(),
            "--",
            "/bin/sh",
            "-c",
            "echo ready; exec sleep 30",
        ])
        .spawn()
        .expect("spawn");
    let pid = container_pid(child.id());
    // Killed only once the command runs: a kill during set-up is a set-up failure (125).
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready");
    assert_eq!(ready.trim(), "ready");
    // SIGKILL from the parent PID namespace reaches even a PID 1.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .expect("kill");
    let out = finish(child);
    assert_eq!(out.code, 128 + 9, "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn forwarded_signals_reach_the_command() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    use nix::sys::signal::Signal::*;
    for sig in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2] {
        let name = sig.as_str().trim_start_matches("SIG");
        let script = format!(
            "trap 'echo got-{name}; exit 3' {name}; echo ready; i=0; \
             while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"
        );
        let mut child = rootfs
            .peapod()
            .args([
                "run",
                "--rootfs",
                rootfs.arg(),
                "--",
                "/bin/sh",
                "-c",
                &script,
            ])
            .spawn()
            .expect("spawn");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("kill");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).expect("rest");
        let out = finish(child);
        assert_eq!(rest.trim(), format!("got-{name}"), "{sig}: {out:?}");
        assert_eq!(out.code, 3, "{sig}: {out:?}");
    }
    rootfs.assert_nothing_left();
}

#[test]
fn a_long_foreground_run_is_waited_for_by_peapod_init_and_ends_with_the_containers_status() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script = "trap 'echo got-TERM; exit 7' TERM; echo ready; i=0; \
                  while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done";
    let mut child = rootfs
        .peapod()
        .args([
            "run",
            "--rootfs",
            rootfs.arg(),
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    // The same process (the record's owner) now runs the small init, watching its child.
    wait_until("peapod-init --watch to take over", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.starts_with(b"peapod-init\0--watch\0"))
    });
    let container = container_pid(pid);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == container.to_string().as_bytes()),
        "the init watches the container process {container}: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("rest");
    let out = finish(child);
    assert_eq!(rest.trim(), "got-TERM", "{out:?}");
    assert_eq!(out.code, 7, "{out:?}");
    // `peapod finish` collected the container and deleted it: no record, no zombie.
    assert!(
        !std::path::Path::new(&format!("/proc/{container}")).exists(),
        "the container process {container} is left (as a zombie?)"
    );
    rootfs.assert_nothing_left();
}

#[test]
fn env_key_alone_takes_the_callers_value_or_unsets_it() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let mut command = rootfs.peapod();
    command
        .args(["run", "--rootfs", rootfs.arg()])
        .args(["-e", "FROM_CALLER", "-e", "UNSET_HERE", "--"])
        .args(["/bin/sh", "-c", "echo \"$FROM_CALLER|${UNSET_HERE-unset}\""])
        .env("FROM_CALLER", "given")
        .env_remove("UNSET_HERE");
    let out = finish(command.spawn().expect("spawn"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "given|unset\n", "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn env_workdir_and_volumes_apply() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let data = rootfs.scratch().join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::write(data.join("hello"), "from the host").expect("file");
    let rw = format!("{}:/mnt/rw", data.display());
    let ro = format!("{}:/mnt/ro:ro", data.display());
    let out = run_in(
        &rootfs,
        &["-e", "GREETING=hi there", "-w", "/mnt/rw", "-v", &rw, "-v", &ro],
        &["/bin/sh", "-c", "echo \"$GREETING\"; pwd; cat hello; echo; echo x > /mnt/rw/new && echo rw-ok; echo x > /mnt/ro/new2 || echo ro-refused"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "hi there",
            "/mnt/rw",
            "from the host",
            "rw-ok",
            "ro-refused"
        ]
    );
    assert!(data.join("new").exists());
    assert!(!data.join("new2").exists());
    rootfs.assert_nothing_left();
}

#[test]
fn read_only_root_refuses_writes_but_tmpfs_mounts_work() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(
        &rootfs,
        &["--read-only"],
        &[
            "/bin/sh",
            "-c",
            "touch /new-file 2>/dev/null || echo root-ro; touch /dev/shm/x && echo shm-rw",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["root-ro", "shm-rw"]
    );
    assert!(!rootfs.path.join("new-file").exists());
    rootfs.assert_nothing_left();
}
