//! `docker run`'s everyday flags on `peapod run`, checked from inside the container as a user
//! would: `--network`, `--env-file`, `--tmpfs`, `--mount`, `--add-host`, `--dns`, `--sysctl`,
//! `--ulimit`, `--label`, `--device`, and `-p` on the default network. Each malformed value
//! is a one-line usage error naming its flag, and leaves nothing behind.

mod support;

use support::net::{available, TestNet};
use support::pods::Pods;
use support::tcp::free_port;
use support::{run_in, Deleted, TestRootfs};

/// Runs `peapod run --rootfs R FLAGS -- /bin/true` for each `flags`, and checks that each is
/// refused in one line naming `flag`, with exit status 2, leaving nothing.
fn refused(rootfs: &TestRootfs, flag: &str, cases: &[&[&str]]) {
    for flags in cases {
        let out = run_in(rootfs, flags, &["/bin/true"]);
        assert_eq!(out.code, 2, "{flags:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{flags:?}: {out:?}");
        assert!(out.stderr.contains(flag), "{flags:?}: {out:?}");
        rootfs.assert_nothing_left();
    }
}

fn own_net_ns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .expect("own ns")
        .display()
        .to_string()
}

#[test]
fn network_is_dockers_spelling_of_net() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script = ["/bin/sh", "-c", "readlink /proc/self/ns/net"];
    let host = run_in(&rootfs, &["--network", "host"], &script);
    assert_eq!(host.code, 0, "{host:?}");
    assert_eq!(host.stdout.trim(), own_net_ns());
    let none = run_in(&rootfs, &["--network", "none"], &script);
    assert_eq!(none.code, 0, "{none:?}");
    assert_ne!(none.stdout.trim(), own_net_ns());
    refused(&rootfs, "--net", &[&["--network", "no/such"]]);
}

#[test]
fn env_file_sets_variables_under_e_and_skips_comments() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let file = rootfs.scratch().join("app.env");
    std::fs::write(
        &file,
        "# the app's settings\n\nGREETING=hello world\n  LEVEL=debug\nFROM_CALLER\nOVERRIDDEN=file\n",
    )
    .expect("env file");
    let file = file.display().to_string();
    let out = rootfs
        .peapod()
        .env("FROM_CALLER", "the caller's")
        .args(["run", "--rootfs", rootfs.arg(), "--env-file", &file])
        .args(["-e", "OVERRIDDEN=flag", "--", "/bin/sh", "-c"])
        .arg("echo \"$GREETING|$LEVEL|$FROM_CALLER|$OVERRIDDEN\"")
        .output()
        .expect("peapod");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout.trim(), "hello world|debug|the caller's|flag");
    rootfs.assert_nothing_left();

    let bad = rootfs.scratch().join("bad.env");
    std::fs::write(&bad, "A=1\n# fine\nNOT VALID=2\n").expect("env file");
    let bad = bad.display().to_string();
    refused(
        &rootfs,
        &format!("--env-file {bad}:3:"),
        &[&["--env-file", &bad]],
    );
    let missing = rootfs.scratch().join("missing.env").display().to_string();
    refused(&rootfs, "--env-file", &[&["--env-file", &missing]]);
}

#[test]
fn tmpfs_and_mount_make_dockers_mounts() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let data = rootfs.scratch().join("data");
    std::fs::create_dir(&data).expect("data");
    std::fs::write(data.join("file"), "from the host\n").expect("file");
    let bind = format!("type=bind,source={},target=/data,readonly", data.display());
    let out = run_in(
        &rootfs,
        &[
            "--tmpfs",
            "/scratch:size=1m",
            "--mount",
            "type=tmpfs,dst=/cache,tmpfs-size=2m,tmpfs-mode=700",
            "--mount",
            &bind,
        ],
        &[
            "/bin/sh",
            "-c",
            "mount | grep -E ' /(scratch|cache) '; stat -c 'cache=%a' /cache; cat /data/file; \
             touch /data/new 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let line = |at: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(&format!(" on {at} type tmpfs ")))
            .unwrap_or_else(|| panic!("no tmpfs at {at}: {out:?}"))
            .to_owned()
    };
    // Docker's defaults: noexec, nosuid, nodev.
    for at in ["/scratch", "/cache"] {
        for option in ["noexec", "nosuid", "nodev"] {
            assert!(line(at).contains(option), "{at}: {out:?}");
        }
    }
    assert!(line("/scratch").contains("size=1024k"), "{out:?}");
    assert!(line("/cache").contains("size=2048k"), "{out:?}");
    assert!(out.stdout.contains("cache=700\n"), "{out:?}");
    assert!(out.stdout.contains("from the host\nread-only\n"), "{out:?}");
    assert!(!data.join("new").exists());
    rootfs.assert_nothing_left();

    refused(
        &rootfs,
        "--tmpfs",
        &[&["--tmpfs", "scratch"], &["--tmpfs", "/scratch:sized=1m"]],
    );
    let missing = format!(
        "type=bind,source={},target=/x",
        rootfs.scratch().join("missing").display()
    );
    refused(
        &rootfs,
        "--mount",
        &[
            &["--mount", "type=volume,target=/x"],
            &["--mount", "type=tmpfs"],
            &["--mount", "type=tmpfs,target=/x,colour=red"],
            &["--mount", "type=bind,target=/x"],
            &["--mount", &missing],
        ],
    );
}

#[test]
fn add_host_and_dns_give_the_container_its_own_etc_files() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // The root's own files, which must stay as they are.
    std::fs::write(rootfs.path.join("etc/hosts"), "# the rootfs's hosts\n").expect("hosts");
    std::fs::write(rootfs.path.join("etc/resolv.conf"), "# the rootfs's\n").expect("resolv");
    let out = run_in(
        &rootfs,
        &[
            "--hostname",
            "app",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "cache:fd00::5",
            "--dns",
            "10.0.0.53",
            "--dns-search",
            "corp.example",
        ],
        &[
            "/bin/sh",
            "-c",
            "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let (hosts, resolv) = out.stdout.split_once("---\n").expect("two files");
    assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{out:?}");
    assert!(hosts.contains("\tapp\n"), "{out:?}");
    assert!(hosts.contains("10.1.2.3\tdb\nfd00::5\tcache\n"), "{out:?}");
    assert_eq!(resolv, "search corp.example\nnameserver 10.0.0.53\n");
    let file = |name: &str| std::fs::read_to_string(rootfs.path.join(name)).expect("file");
    assert_eq!(file("etc/hosts"), "# the rootfs's hosts\n");
    assert_eq!(file("etc/resolv.conf"), "# the rootfs's\n");
    rootfs.assert_nothing_left();

    refused(
        &rootfs,
        "--add-host",
        &[&["--add-host", "db"], &["--add-host", "db:10.1.2"]],
    );
    refused(&rootfs, "--dns", &[&["--dns", "resolver.lan"]]);
}

#[test]
fn sysctl_sets_a_namespaced_parameter_inside_only() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let path = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let host = std::fs::read_to_string(path).expect("host value");
    let out = run_in(
        &rootfs,
        &["--sysctl", "net.ipv4.ip_unprivileged_port_start=99"],
        &["/bin/cat", path],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "99\n");
    assert_eq!(std::fs::read_to_string(path).expect("host value"), host);
    rootfs.assert_nothing_left();

    refused(
        &rootfs,
        "--sysctl",
        &[&["--sysctl", "net.ipv4.ip_forward"], &["--sysctl", "=1"]],
    );
    // A host-wide parameter is refused before anything is made.
    let out = run_in(&rootfs, &["--sysctl", "vm.swappiness=10"], &["/bin/true"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("vm.swappiness"), "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn ulimit_sets_the_soft_and_hard_limits() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(
        &rootfs,
        &["--ulimit", "nofile=100:200", "--ulimit", "core=0"],
        &["/bin/sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "100\n200\n0\n");
    rootfs.assert_nothing_left();

    refused(
        &rootfs,
        "--ulimit",
        &[
            &["--ulimit", "files=10"],
            &["--ulimit", "nofile=ten"],
            &["--ulimit", "nofile=200:100"],
            &["--ulimit", "nofile"],
        ],
    );
}

#[test]
fn label_is_an_annotation_that_state_shows() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let _deleted = Deleted(&rootfs, "labelled");
    let out = run_in(
        &rootfs,
        &[
            "--detach",
            "--name",
            "labelled",
            "--label",
            "team=storage",
            "-l",
            "tier",
        ],
        &["/bin/sleep", "30"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let state = rootfs
        .peapod()
        .args(["state", "labelled"])
        .output()
        .expect("state");
    let json: serde_json::Value = serde_json::from_slice(&state.stdout).expect("json");
    assert_eq!(json["annotations"]["team"], "storage", "{json}");
    assert_eq!(json["annotations"]["tier"], "", "{json}");
    drop(_deleted);
    rootfs.assert_nothing_left();

    refused(&rootfs, "--label", &[&["--label", "=storage"]]);
}

#[test]
fn device_gives_the_container_a_node_it_may_read() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // /dev/zero under another name, read-only: only ever read.
    let out = run_in(
        &rootfs,
        &["--device", "/dev/zero:/dev/myzero:r"],
        &[
            "/bin/sh",
            "-c",
            "stat -c '%t:%T %F' /dev/myzero; head -c 8 /dev/myzero | od -An -tx1",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("1:5 character special file"), "{out:?}");
    assert_eq!(
        lines.next().map(str::trim),
        Some("00 00 00 00 00 00 00 00"),
        "{out:?}"
    );
    rootfs.assert_nothing_left();

    let not_a_device = rootfs.scratch().join("plain");
    std::fs::write(&not_a_device, "").expect("file");
    let not_a_device = not_a_device.display().to_string();
    refused(
        &rootfs,
        "--device",
        &[
            &["--device", "/dev/zero:/dev/myzero:rx"],
            &["--device", "dev/zero"],
            &["--device", &not_a_device],
        ],
    );
}

#[test]
fn publish_without_a_network_uses_the_default_network() {
    if !available() {
        return;
    }
    // The default network `peapod`, of this test's own (bridge, subnet, configuration and
    // cache): never the host's real one.
    let net = TestNet::named(Some("peapod"), 24);
    let Some(mut pods) = Pods::new() else {
        return;
    };
    pods.env = net.env();
    // Should the test fail, its hidden network pod goes with `pods`.
    pods.names.push("net-published".to_owned());
    let rootfs = pods.rootfs.arg().to_owned();
    let publish = format!("{}:80", free_port());
    // --add-host and --dns go to the network's /etc files, as a pod's.
    let out = pods.peapod(&[
        "run",
        "--rootfs",
        &rootfs,
        "--name",
        "published",
        "-p",
        &publish,
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "10.0.0.53",
        "--",
        "/bin/sh",
        "-c",
        "ip -4 -o addr show eth0; cat /etc/hosts /etc/resolv.conf",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let prefix = net.prefix();
    assert!(out.stdout.contains(&format!("inet {prefix}")), "{out:?}");
    assert!(out.stdout.contains("10.1.2.3\tdb\n"), "{out:?}");
    assert!(out.stdout.contains("nameserver 10.0.0.53\n"), "{out:?}");
    pods.names.clear();
    assert_eq!(net.leftovers(), Vec::<String>::new());
    pods.rootfs.assert_nothing_left();
}

#[test]
fn publish_rootless_without_a_network_is_refused_in_one_line() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let root = rootfs.arg().to_owned();
    // (With a network, pasta or slirp4netns, it works: see rootless_pods.rs.)
    let args = [
        "run",
        "--rootfs",
        &root,
        "--net",
        "none",
        "-p",
        "8080:80",
        "--",
        "/bin/true",
    ];
    let Some(out) = support::run_as_nobody(&rootfs, &args) else {
        return;
    };
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("--publish needs a network (pasta or slirp4netns)"),
        "{out:?}"
    );
    rootfs.assert_nothing_left();
}

#[test]
fn read_only_with_a_volume_at_a_new_path_makes_the_mount_point_as_runc_does() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let data = rootfs.scratch().join("data");
    std::fs::create_dir(&data).expect("data");
    let volume = format!("{}:/newdir", data.display());
    let out = run_in(
        &rootfs,
        &["--read-only", "-v", &volume],
        &[
            "/bin/sh",
            "-c",
            "echo written > /newdir/file && cat /newdir/file; touch /x 2>&1; true",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout, "written\ntouch: /x: Read-only file system\n",
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("file")).expect("file"),
        "written\n"
    );
    // As runc: the mount point is made in the directory given, before its root is made
    // read-only, and stays there, empty.
    let left = std::fs::read_dir(rootfs.path.join("newdir")).expect("mount point");
    assert_eq!(left.count(), 0);
    assert!(!rootfs.path.join("x").exists());
    rootfs.assert_nothing_left();
}

#[test]
fn a_named_volume_is_refused_and_an_anonymous_one_needs_an_image() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // `NAME:/path` is a volume's name to docker and podman, never a relative path.
    refused(
        &rootfs,
        "no named volumes",
        &[&["-v", "data:/x"], &["--volume", "data:/x:ro"]],
    );
    refused(&rootfs, "anonymous volume", &[&["-v", "/cache"]]);
}
