//! Rootless images with any user: the caller's subordinate ranges are mapped by default, a
//! layer's owners are kept (shifted through the ranges), device nodes are skipped with a
//! warning, and without ranges an image that needs another id says how to get one.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::image::{archive_of, image_archive, IMAGE};
use support::user::{overlay_refused, uid_map_lines, TestUser, RANGE, UID_MAP};
use support::TestRootfs;

fn loaded(user: &TestUser, archive: &Path) -> support::Outcome {
    user.peapod(&["image", "load", "-i", archive.to_str().expect("utf-8")])
}

#[test]
fn rootless_image_with_user_1000_keeps_its_owners_through_the_subordinate_range() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), true) else {
        return;
    };
    let start = user.range_start.expect("a range");
    let archive = image_archive(&rootfs);
    let load = loaded(&user, &archive);
    assert_eq!(load.code, 0, "{load:?}");
    // The device node is skipped with one warning naming it; the far ids with another.
    let warnings: Vec<&str> = load
        .stderr
        .lines()
        .filter(|l| l.contains("dev/mydev"))
        .collect();
    assert_eq!(warnings.len(), 1, "{load:?}");
    assert!(warnings[0].contains("device nodes skipped"), "{load:?}");
    assert!(load.stderr.contains("uids [70000]"), "{load:?}");

    let script = "echo id=$(id -u):$(id -g); echo owned=$(stat -c %u:%g /data/owned); \
                  echo far=$(stat -c %u /far); echo map=$(head -n 2 /proc/self/uid_map | tr -s ' ' ' '); \
                  test -e /dev/mydev && echo dev=yes; cat /data/owned";
    let run = user.peapod(&["run", "--rm", IMAGE, "sh", "-c", script]);
    if overlay_refused(&run) {
        return;
    }
    assert_eq!(run.code, 0, "{run:?}");
    let inside = support::facts(&run.stdout);
    assert_eq!(inside["id"], "1000:1000", "{run:?}");
    assert_eq!(inside["owned"], "1000:1000", "{run:?}");
    assert_eq!(
        inside["far"], "0",
        "an id beyond the range is the caller's: {run:?}"
    );
    assert!(!inside.contains_key("dev"), "{run:?}");
    assert!(run.stdout.ends_with("mine\n"), "{run:?}");
    let map: Vec<&str> = inside["map"].split_whitespace().collect();
    let (own, start_text, range) = (user.uid.to_string(), start.to_string(), RANGE.to_string());
    assert_eq!(
        map,
        [
            "0",
            own.as_str(),
            "1",
            "1",
            start_text.as_str(),
            range.as_str()
        ]
    );

    // On the host the file is the range's id 1000 maps to: start + 999.
    let layers = user.home.join("storage");
    let found = Command::new("find")
        .arg(&layers)
        .args(["-path", "*/diff/data/owned", "-printf", "%U:%G\n"])
        .output()
        .expect("find");
    let owners = String::from_utf8_lossy(&found.stdout);
    let host = start + 999;
    assert_eq!(
        owners.trim(),
        format!("{host}:{host}"),
        "subgid start is the same here"
    );

    // And the image goes again as the user, though its files are the range's.
    let rm = user.peapod(&["image", "rm", IMAGE]);
    assert_eq!(rm.code, 0, "{rm:?}");
    let prune = user.peapod(&["image", "prune"]);
    assert_eq!(prune.code, 0, "{prune:?}");
    let left = Command::new("find")
        .arg(&layers)
        .args(["-path", "*/diff/data/owned"])
        .output()
        .expect("find");
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
    rootfs.assert_nothing_left();
}

/// `run --userns keep-id` as an ordinary user with ranges: the command runs as the caller's
/// uid and gid without capabilities, the ranges are mapped around the caller's id, and what
/// it makes in a bind mount of the caller's directory is the caller's on the host.
/// `--userns host` is the default map; and where keep-id cannot be, it is refused in one line.
#[test]
fn rootless_userns_keep_id_runs_as_the_caller_with_the_ranges_around_it() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), true) else {
        return;
    };
    let (uid, gid) = (user.uid, user.gid);
    let start = user.range_start.expect("a range");
    let shared = user.dir("shared");
    // The mount point in the rootfs (root's copy, which the user's container cannot write).
    std::fs::create_dir(rootfs.path.join("shared")).expect("mkdir");
    let volume = format!("{}:/shared", shared.display());
    let script = format!(
        "echo id=$(id -u):$(id -g); grep CapEff /proc/self/status | tr -d '\\t'; \
         {UID_MAP}; touch /shared/made"
    );
    let run = user.peapod(&[
        "run",
        "--rm",
        "--userns",
        "keep-id",
        "-v",
        &volume,
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let inside = support::facts(&run.stdout);
    assert_eq!(inside["id"], format!("{uid}:{gid}"), "{run:?}");
    assert!(run.stdout.contains("CapEff:0000000000000000"), "{run:?}");
    assert_eq!(
        uid_map_lines(&run.stdout),
        [
            format!("0 {start} {uid}"),
            format!("{uid} {uid} 1"),
            format!("{} {} {}", uid + 1, start + uid, RANGE - uid),
        ],
        "{run:?}"
    );
    let made = std::fs::metadata(shared.join("made")).expect("the file made inside");
    assert_eq!((made.uid(), made.gid()), (uid, gid));

    let host = user.peapod(&[
        "run",
        "--rm",
        "--userns",
        "host",
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        UID_MAP,
    ]);
    assert_eq!(host.code, 0, "{host:?}");
    assert_eq!(
        uid_map_lines(&host.stdout),
        [format!("0 {uid} 1"), format!("1 {start} {RANGE}")],
        "{host:?}"
    );

    for (args, needle) in [
        (&["--userns", "auto"][..], "pool of ids"),
        (&["--userns", "nomap"][..], "nomap is not supported"),
        (
            &["--userns", "keep-id", "--pod", "p"][..],
            "joins the pod's user namespace",
        ),
        (
            &["--userns", "keep-id", "--net", "slirp4netns"][..],
            "--userns keep-id: a rootless network",
        ),
    ] {
        let mut all = vec!["run", "--rootfs", rootfs.arg()];
        all.extend(args);
        all.extend(["--", "/bin/true"]);
        let out = user.peapod(&all);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {out:?}");
    }
    let image = user.peapod(&["run", "--userns", "keep-id", "localhost/none", "/bin/true"]);
    assert_eq!(image.code, 2, "{image:?}");
    assert!(
        image
            .stderr
            .contains("keep-id (yours or your pod's) goes with --rootfs"),
        "{image:?}"
    );

    // As root: host is root's own default (no user namespace), keep-id is refused.
    let root = |mode: &str, script: &str| {
        let mut command = rootfs.peapod();
        command
            .args(["run", "--rm", "--userns", mode, "--rootfs", rootfs.arg()])
            .args(["--", "/bin/sh", "-c", script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        support::finish(command.spawn().expect("spawn"))
    };
    let host = root("host", UID_MAP);
    assert_eq!(host.code, 0, "{host:?}");
    assert_eq!(uid_map_lines(&host.stdout), ["0 0 4294967295"], "{host:?}");
    let keep = root("keep-id", "true");
    assert_eq!(keep.code, 2, "{keep:?}");
    assert!(keep.stderr.contains("for rootless containers"), "{keep:?}");
    let left = support::state_entries(&user.state_root());
    assert!(left.is_empty(), "state left: {left:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn rootless_image_with_user_1000_without_ranges_says_how_to_get_them() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), false) else {
        return;
    };
    let archive = image_archive(&rootfs);
    let load = loaded(&user, &archive);
    assert_eq!(load.code, 0, "{load:?}");
    assert!(load.stderr.contains("dev/mydev"), "{load:?}");
    let run = user.peapod(&["run", "--rm", IMAGE, "id"]);
    assert_ne!(run.code, 0, "{run:?}");
    let said: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(said.len(), 1, "one line: {run:?}");
    for needle in [
        "uid 1000 is not mapped",
        &format!("add a range for {} to /etc/subuid", user.name),
    ] {
        assert!(said[0].contains(needle), "{needle:?} in {run:?}");
    }
    // Its own id alone is still enough for root's.
    let root = user.peapod(&["run", "--rm", "--user", "0", IMAGE, "cat", "/data/owned"]);
    if overlay_refused(&root) {
        return;
    }
    assert_eq!(root.code, 0, "{root:?}");
    assert_eq!(root.stdout, "mine\n");
    rootfs.assert_nothing_left();
}

/// A cgroup v2 subtree delegated to a test's user, as systemd's `user@UID.service` is: root's
/// `TOP` (memory and pids enabled below it), the user's `TOP/user` (the directory,
/// `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads` chowned to the user) and a
/// leaf `TOP/user/session` for the user's processes. On drop everything in it is killed and
/// the directories are removed, deepest first.
struct Delegated {
    top: PathBuf,
    user: PathBuf,
    session: PathBuf,
}

impl Delegated {
    fn new(mount: &Path, user: &TestUser) -> Option<Delegated> {
        let root_control =
            std::fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap_or_default();
        if !["memory", "pids"]
            .iter()
            .all(|c| root_control.split_whitespace().any(|e| e == *c))
        {
            eprintln!("skipped: the cgroup v2 root does not enable memory and pids for children");
            return None;
        }
        let top = mount.join(format!(
            "peapod-rootids-{}-{}",
            std::process::id(),
            user.uid
        ));
        let made = Delegated {
            user: top.join("user"),
            session: top.join("user/session"),
            top,
        };
        std::fs::create_dir(&made.top).expect("mkdir top");
        std::fs::write(made.top.join("cgroup.subtree_control"), "+memory +pids")
            .expect("enable memory and pids");
        std::fs::create_dir(&made.user).expect("mkdir user");
        std::fs::create_dir(&made.session).expect("mkdir session");
        let (uid, gid) = (Some(user.uid.into()), Some(user.gid.into()));
        for name in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            for dir in [&made.user, &made.session] {
                let path = if name.is_empty() {
                    dir.clone()
                } else {
                    dir.join(name)
                };
                nix::unistd::chown(&path, uid, gid).expect("chown");
            }
        }
        Some(made)
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        // cgroup.kill (Linux 5.14) kills every process below, in one write.
        let _ = std::fs::write(self.top.join("cgroup.kill"), "1");
        support::wait_until("the delegated cgroup to empty", || {
            std::fs::read_to_string(self.top.join("cgroup.events"))
                .map(|e| e.contains("populated 0"))
                .unwrap_or(true)
        });
        let mut dirs = Vec::new();
        let mut stack = vec![self.top.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            dirs.push(dir);
        }
        for dir in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn rootless_limits_go_into_a_delegated_cgroup_v2_subtree() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Ok(peapod_cgroups::Layout::V2(unified)) = peapod_cgroups::Layout::detect() else {
        eprintln!("skipped: not a pure cgroup v2 host (cargo xtask vm runs this test on one)");
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), false) else {
        return;
    };
    let Some(tree) = Delegated::new(&unified.mount, &user) else {
        return;
    };
    let id = "rootless-delegated";
    let run = user.peapod_in_cgroup(
        &tree.session,
        &[
            "run",
            "-d",
            "--name",
            id,
            "--memory",
            "64m",
            "--rootfs",
            rootfs.arg(),
            "--",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // Beside the session's cgroup, in the user's delegated one, as below user@UID.service.
    let cgroup = tree.user.join("peapod").join(id);
    let limit = std::fs::read_to_string(cgroup.join("memory.max")).expect("memory.max");
    assert_eq!(limit.trim(), "67108864");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).expect("cgroup.procs");
    assert!(!procs.trim().is_empty(), "the container runs in its cgroup");
    // Without limits too, as podman's rootless containers on a delegated v2 tree.
    let plain = "rootless-delegated-plain";
    let run = user.peapod_in_cgroup(
        &tree.session,
        &[
            "run",
            "-d",
            "--name",
            plain,
            "--rootfs",
            rootfs.arg(),
            "--",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let plain_cgroup = tree.user.join("peapod").join(plain);
    let procs = std::fs::read_to_string(plain_cgroup.join("cgroup.procs")).expect("its cgroup");
    assert!(!procs.trim().is_empty(), "the container runs in its cgroup");
    let rm = user.peapod(&["rm", "-f", id, plain]);
    assert_eq!(rm.code, 0, "{rm:?}");
    assert!(!cgroup.exists(), "the container's cgroup is left");
    assert!(!plain_cgroup.exists(), "the container's cgroup is left");
    assert!(
        !tree.user.join("peapod").exists(),
        "the empty peapod parent is left"
    );
    drop(tree);
    rootfs.assert_nothing_left();
}

/// The one recorded cgroup directory of pod `name` of `user`, from `pod ps --format json`,
/// and its infra process.
fn pod_cgroup(user: &TestUser, name: &str) -> (PathBuf, u32) {
    let ps = user.peapod(&["pod", "ps", "--format", "json", name]);
    assert_eq!(ps.code, 0, "{ps:?}");
    let ps: serde_json::Value = serde_json::from_str(&ps.stdout).expect("pod ps json");
    let paths = ps["cgroup_paths"].as_array().expect("cgroup_paths");
    assert_eq!(paths.len(), 1, "one cgroup v2 directory: {ps}");
    let dir = PathBuf::from(paths[0].as_str().expect("a path"));
    let infra = ps["infra_pid"].as_u64().expect("the infra pid") as u32;
    (dir, infra)
}

/// `cgroup.procs` of `dir` as pids.
fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_rootless_pod_gets_a_cgroup_with_its_limits_in_a_delegated_cgroup_v2_subtree() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Ok(peapod_cgroups::Layout::V2(unified)) = peapod_cgroups::Layout::detect() else {
        eprintln!("skipped: not a pure cgroup v2 host (cargo xtask vm runs this test on one)");
        return;
    };
    if support::pods::static_init().is_none() {
        return;
    }
    let Some(user) = TestUser::new(rootfs.scratch(), false) else {
        return;
    };
    let Some(tree) = Delegated::new(&unified.mount, &user) else {
        return;
    };
    let pod = "limited";
    let create = user.peapod_in_cgroup(
        &tree.session,
        &[
            "pod",
            "create",
            "--network",
            "none",
            "--memory",
            "64m",
            "--pids-limit",
            "40",
            pod,
        ],
    );
    assert_eq!(create.code, 0, "{create:?}");
    let (dir, infra) = pod_cgroup(&user, pod);
    // Beside the session's cgroup, in the user's delegated one: `peapod/pod:NAME:TAG`.
    assert_eq!(dir.parent(), Some(tree.user.join("peapod").as_path()));
    let base = dir
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    assert!(base.starts_with("pod:limited:"), "{base}");
    let file = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .trim()
            .to_owned()
    };
    assert_eq!(file("memory.max"), "67108864");
    assert_eq!(file("pids.max"), "40");
    assert_eq!(procs(&dir.join("infra")), [infra]);
    let run = user.peapod_in_cgroup(
        &tree.session,
        &[
            "run",
            "-d",
            "--pod",
            pod,
            "--name",
            "member",
            "--rootfs",
            rootfs.arg(),
            "--",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        procs(&dir.join("member")).len(),
        1,
        "the member runs below the pod"
    );
    // Counted against the pod's limit: the infra process and the member's.
    assert_eq!(file("pids.current"), "2");
    let rm = user.peapod(&["pod", "rm", "-f", pod]);
    assert_eq!(rm.code, 0, "{rm:?}");
    assert!(!dir.exists(), "the pod's cgroup is left");
    assert!(
        !tree.user.join("peapod").exists(),
        "the empty peapod parent is left"
    );
    drop(tree);
    rootfs.assert_nothing_left();
}

#[test]
fn a_hostile_rootless_layer_changes_nothing_outside_its_directory() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(user) = TestUser::new(rootfs.scratch(), true) else {
        return;
    };
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: python3 (to write a crafted layer) is not installed");
        return;
    }
    // A file of the user's, the only kind the user namespace's root could touch.
    let victim = user.home.join("victim");
    std::fs::write(&victim, "mine").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    nix::unistd::chown(&victim, Some(user.uid.into()), Some(user.gid.into())).expect("chown");
    let dir = rootfs.scratch().join("hostile");
    std::fs::create_dir(&dir).expect("mkdir");
    // `x`, a setuid file of uid 1000, is replaced by a link to the victim (1000's too), `y`
    // links to it as root's, and `far` has an id past any range.
    let script = r#"
import io, sys, tarfile
victim, out = sys.argv[1], sys.argv[2]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind, uid, mode, link="", data=b""):
        info = tarfile.TarInfo(name)
        info.type, info.uid, info.gid, info.mode, info.linkname = kind, uid, uid, mode, link
        info.size = len(data)
        t.addfile(info, io.BytesIO(data) if data else None)
    add("x", tarfile.REGTYPE, 1000, 0o4755, data=b"x")
    add("x", tarfile.SYMTYPE, 1000, 0o777, link=victim)
    add("y", tarfile.SYMTYPE, 0, 0o777, link=victim)
    add("far", tarfile.REGTYPE, 4000000000, 0o644, data=b"far")
"#;
    let made = Command::new("python3")
        .args(["-c", script])
        .arg(&victim)
        .arg(dir.join("extra.tar"))
        .status()
        .expect("python3");
    assert!(made.success());
    let archive = archive_of(&rootfs, &dir);
    let load = loaded(&user, &archive);
    assert_eq!(load.code, 0, "{load:?}");
    assert!(load.stderr.contains("4000000000"), "one warning: {load:?}");
    let meta = std::fs::metadata(&victim).expect("victim");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (user.uid, user.gid),
        "the victim changed owner"
    );
    assert_eq!(meta.mode() & 0o7777, 0o600, "the victim changed mode");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"mine");
    // The link itself took the owner the layer gave it.
    let start = user.range_start.expect("a range");
    let found = Command::new("find")
        .arg(user.home.join("storage"))
        .args(["-path", "*/diff/x", "-printf", "%U %y\n"])
        .output()
        .expect("find");
    let host = start + 999;
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        format!("{host} l")
    );
}
