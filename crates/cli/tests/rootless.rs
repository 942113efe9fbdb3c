//! `peapod run` as an ordinary user: a user namespace maps the caller to root inside.

mod support;

use std::path::Path;

use support::bundle::add_bind;
use support::user::end_of_ranges;
use support::{facts, TestRootfs};

#[test]
fn rootless_run_maps_the_caller_to_root_inside() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let script = "echo pid=$$; echo uid=$(id -u); echo map=$(head -n 1 /proc/self/uid_map); \
                  echo host=$(hostname); echo user=$(readlink /proc/self/ns/user); \
                  echo net=$(readlink /proc/self/ns/net); ls /sys/class/net";
    let args = [
        "run",
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        script,
    ];
    let Some(out) = support::run_as_nobody(&rootfs, &args) else {
        return;
    };
    assert_eq!(out.code, 0, "{out:?}");
    let inside = facts(&out.stdout);
    assert_eq!(inside["pid"], "1");
    assert_eq!(inside["uid"], "0");
    let map: Vec<&str> = inside["map"].split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"]);
    assert_eq!(inside["host"], "peapod");
    let own = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .expect("ns")
            .display()
            .to_string()
    };
    assert_ne!(inside["user"], own("user"));
    assert_ne!(inside["net"], own("net"));
    assert!(out.stdout.lines().any(|l| l == "lo"), "{out:?}");
    rootfs.assert_nothing_left();
}

/// A detached rootless container of a test: on drop (also when the test fails) it is deleted
/// as the user who made it, and its process, when known and still in the test's rootfs, is
/// killed by its pid.
struct Detached<'a> {
    rootfs: &'a TestRootfs,
    name: &'a str,
    pid: std::cell::Cell<Option<i32>>,
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a failed test unwinds.
        let _ = std::panic::catch_unwind(|| {
            support::run_as_nobody(self.rootfs, &["delete", "--force", self.name])
        });
        if let Some(pid) = self.pid.get() {
            self.rootfs.kill_if_inside(pid);
        }
    }
}

#[test]
fn rootless_exec_joins_the_containers_user_namespace_and_the_others() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let name = "rootless-exec";
    let container = Detached {
        rootfs: &rootfs,
        name,
        pid: std::cell::Cell::new(None),
    };
    // The shell lets go of peapod's pipes before it waits, so `run -d` is finished at once.
    let args = [
        "run",
        "--detach",
        "--name",
        name,
        "--rootfs",
        rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        "exec sleep 60 >/dev/null 2>&1",
    ];
    let Some(out) = support::run_as_nobody(&rootfs, &args) else {
        return;
    };
    assert_eq!(out.code, 0, "{out:?}");
    let state = support::run_as_nobody(&rootfs, &["state", name]).expect("state");
    assert_eq!(state.code, 0, "{state:?}");
    let state: serde_json::Value = serde_json::from_str(&state.stdout).expect("state JSON");
    let pid = i32::try_from(state["pid"].as_i64().expect("pid")).expect("pid fits");
    container.pid.set(Some(pid));

    let script = "echo uid=$(id -u); echo user=$(readlink /proc/self/ns/user); \
                  echo pid=$(readlink /proc/self/ns/pid); echo mnt=$(readlink /proc/self/ns/mnt); \
                  echo net=$(readlink /proc/self/ns/net); echo host=$(hostname)";
    let exec =
        support::run_as_nobody(&rootfs, &["exec", name, "/bin/sh", "-c", script]).expect("exec");
    assert_eq!(exec.code, 0, "{exec:?}");
    let inside = facts(&exec.stdout);
    assert_eq!(inside["uid"], "0", "{exec:?}");
    let theirs = |ns: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
            .expect("ns")
            .display()
            .to_string()
    };
    for ns in ["user", "pid", "mnt", "net"] {
        assert_eq!(inside[ns], theirs(ns), "{ns}: {exec:?}");
    }
    assert_eq!(inside["host"], name, "the host name given by --name");
    drop(container);
    rootfs.assert_nothing_left();
}

/// A range of subordinate ids `/etc/subuid` and `/etc/subgid` delegate to [`support::NOBODY`]
/// for a test. When neither file has one, the test adds its own and removes exactly those
/// lines again on drop (and a file it had to make), so the shared host is left as found.
struct Subordinate {
    uid_start: u32,
    gid_start: u32,
    count: u32,
    /// The files this test changed, the line it added, and whether it made the file.
    added: Vec<(&'static str, String, bool)>,
}

impl Subordinate {
    const FILES: [&'static str; 2] = ["/etc/subuid", "/etc/subgid"];
    const COUNT: u32 = 65536;

    /// The delegation, or `None` after saying why the test is skipped.
    fn for_nobody() -> Option<Subordinate> {
        let texts = Self::FILES.map(|f| std::fs::read_to_string(f).unwrap_or_default());
        let nobody = support::NOBODY.to_string();
        let ranges_of = |text: &str| -> Vec<(u64, u64)> {
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.trim().split(':');
                    let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
                    Some((owner.to_owned(), start.parse().ok()?, count.parse().ok()?))
                })
                .filter(|(owner, _, _)| owner == "nobody" || *owner == nobody)
                .map(|(_, start, count)| (start, count))
                .collect()
        };
        let own = texts.clone().map(|t| ranges_of(&t));
        match (&own[0][..], &own[1][..]) {
            ([], []) => {}
            ([(uid_start, uids), ..], [(gid_start, gids), ..]) if *uids >= 2 && *gids >= 2 => {
                return Some(Subordinate {
                    uid_start: u32::try_from(*uid_start).ok()?,
                    gid_start: u32::try_from(*gid_start).ok()?,
                    count: u32::try_from((*uids).min(*gids).min(Self::COUNT.into())).ok()?,
                    added: Vec::new(),
                });
            }
            _ => {
                eprintln!(
                    "skipped: nobody has an entry in only one of /etc/subuid and /etc/subgid \
                     (or one too small); the test leaves such an entry alone"
                );
                return None;
            }
        }
        // Past every range delegated to anyone, so no other user's ids are handed out.
        let end = texts
            .iter()
            .map(|t| end_of_ranges(t))
            .max()
            .unwrap_or(1_000_000);
        let start = u32::try_from(end)
            .ok()
            .filter(|s| s.checked_add(Self::COUNT).is_some())?;
        let mut grant = Subordinate {
            uid_start: start,
            gid_start: start,
            count: Self::COUNT,
            added: Vec::new(),
        };
        let line = format!("nobody:{start}:{}\n", Self::COUNT);
        for (file, text) in Self::FILES.iter().zip(&texts) {
            let made = !Path::new(file).exists();
            let mut new = text.clone();
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            new.push_str(&line);
            std::fs::write(file, new).expect("add a subordinate range");
            grant.added.push((file, line.clone(), made));
        }
        Some(grant)
    }
}

impl Drop for Subordinate {
    fn drop(&mut self) {
        for (file, line, made) in &self.added {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let kept: String = text
                .split_inclusive('\n')
                .filter(|l| l.trim_end() != line.trim_end())
                .collect();
            let _ = if *made && kept.is_empty() {
                std::fs::remove_file(file)
            } else {
                std::fs::write(file, kept)
            };
        }
    }
}

/// A bundle in the test's scratch directory, as a string: a rootless spec with `uid_maps`
/// and `gid_maps` (`[inside, outside, count]`), `out` bind-mounted at `/out`, and `script`.
fn write_rootless_bundle(
    rootfs: &TestRootfs,
    uid_maps: &[[u32; 3]],
    gid_maps: &[[u32; 3]],
    out: &Path,
    script: &str,
) -> String {
    let maps = |maps: &[[u32; 3]]| -> serde_json::Value {
        maps.iter()
            .map(|[inside, outside, size]| {
                serde_json::json!({"containerID": inside, "hostID": outside, "size": size})
            })
            .collect()
    };
    let dir = rootfs.spec_bundle_with("bundle", &["--rootless"], |spec| {
        spec["linux"]["uidMappings"] = maps(uid_maps);
        spec["linux"]["gidMappings"] = maps(gid_maps);
        spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        add_bind(spec, out, "/out");
    });
    dir.to_str().expect("utf-8").to_owned()
}

/// A directory in the test's scratch directory that [`support::NOBODY`] owns.
fn nobodys_dir(rootfs: &TestRootfs, name: &str) -> std::path::PathBuf {
    let dir = rootfs.scratch().join(name);
    std::fs::create_dir(&dir).expect("dir");
    let nobody = Some(support::NOBODY.into());
    nix::unistd::chown(
        &dir,
        nobody,
        nobody.map(|u: nix::unistd::Uid| u.as_raw().into()),
    )
    .expect("chown");
    dir
}

#[test]
fn rootless_multi_range_maps_go_through_newuidmap_and_newgidmap() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let helpers = ["newuidmap", "newgidmap"];
    if let Some(missing) = helpers
        .iter()
        .find(|h| !Path::new("/usr/bin").join(h).exists())
    {
        eprintln!("skipped: {missing} is not installed (Debian package uidmap)");
        return;
    }
    let Some(grant) = Subordinate::for_nobody() else {
        return;
    };
    let out = nobodys_dir(&rootfs, "out");
    // The rootfs belongs to host root, which the container cannot write as: its mount point
    // is made now, as an image would bring it.
    std::fs::create_dir(rootfs.path.join("out")).expect("mount point");
    let nobody = support::NOBODY;
    let uid_maps = [[0, nobody, 1], [1, grant.uid_start, grant.count - 1]];
    let gid_maps = [[0, nobody, 1], [1, grant.gid_start, grant.count - 1]];
    let script = "echo uid=$(id -u); echo map=$(cat /proc/self/uid_map); \
                  echo gidmap=$(cat /proc/self/gid_map); \
                  touch /out/made && chown 5:7 /out/made; echo chown=$?";
    let bundle = write_rootless_bundle(&rootfs, &uid_maps, &gid_maps, &out, script);
    let Some(ran) = support::run_as_nobody(&rootfs, &["run", "--bundle", &bundle, "multi-range"])
    else {
        return;
    };
    assert_eq!(ran.code, 0, "{ran:?}");
    let inside = facts(&ran.stdout);
    assert_eq!(inside["uid"], "0", "{ran:?}");
    let lines = |maps: &[[u32; 3]]| {
        maps.iter()
            .flat_map(|m| m.map(|n| n.to_string()))
            .collect::<Vec<_>>()
    };
    let map: Vec<String> = inside["map"].split_whitespace().map(Into::into).collect();
    assert_eq!(map, lines(&uid_maps), "{ran:?}");
    let gid_map: Vec<String> = inside["gidmap"]
        .split_whitespace()
        .map(Into::into)
        .collect();
    assert_eq!(gid_map, lines(&gid_maps), "{ran:?}");
    assert_eq!(inside["chown"], "0", "{ran:?}");
    // Container uid 5 and gid 7 are the 5th and 7th delegated ids on the host.
    let made = std::fs::metadata(out.join("made")).expect("the file made inside");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (made.uid(), made.gid()),
        (grant.uid_start + 4, grant.gid_start + 6)
    );
    rootfs.assert_nothing_left();
}

#[test]
fn rootless_maps_beyond_the_delegated_ranges_are_refused_naming_the_range() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = nobodys_dir(&rootfs, "out");
    // Ids near the top of the id space, which no /etc/subuid on a sane host delegates.
    let nobody = support::NOBODY;
    let uid_maps = [[0, nobody, 1], [1, 4_000_000_000, 10]];
    let gid_maps = [[0, nobody, 1]];
    let bundle = write_rootless_bundle(&rootfs, &uid_maps, &gid_maps, &out, "true");
    let Some(ran) = support::run_as_nobody(&rootfs, &["run", "--bundle", &bundle, "undelegated"])
    else {
        return;
    };
    assert_ne!(ran.code, 0, "{ran:?}");
    let line = ran.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{ran:?}");
    for needle in ["4000000000-4000000009", "/etc/subuid", "nobody"] {
        assert!(line.contains(needle), "{needle:?} missing: {ran:?}");
    }
    rootfs.assert_nothing_left();
}

/// Checks a refused rootless command: non-zero, one line on stderr holding every needle, and
/// nothing left: no state, mount or process, and no cgroup named `id` in any hierarchy.
fn assert_refused(rootfs: &TestRootfs, out: &support::Outcome, id: &str, needles: &[&str]) {
    assert_ne!(out.code, 0, "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {out:?}");
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} missing: {out:?}");
    }
    rootfs.assert_nothing_left();
    // Where its cgroup would be: `peapod/ID` below the cgroup peapod ran in (this test's).
    if let Ok(layout) = peapod_cgroups::Layout::detect() {
        for hierarchy in layout.hierarchies() {
            let own = hierarchy.own.strip_prefix("/").unwrap_or(&hierarchy.own);
            let dir = hierarchy.mount.join(own).join("peapod").join(id);
            assert!(!dir.exists(), "cgroup left behind: {}", dir.display());
        }
    }
}

#[test]
fn rootless_spec_without_a_user_namespace_says_it_needs_one() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // root's `peapod spec`: no user namespace.
    let dir = rootfs.spec_bundle("bundle", |_| {});
    let bundle = dir.to_str().expect("utf-8").to_owned();
    let id = "rootless-no-userns";
    let Some(out) = support::run_as_nobody(&rootfs, &["run", "--bundle", &bundle, id]) else {
        return;
    };
    assert_refused(
        &rootfs,
        &out,
        id,
        &[
            "rootless containers need a user namespace",
            "linux.namespaces",
        ],
    );
}

#[test]
fn rootless_user_1000_with_only_the_callers_id_mapped_says_uid_1000_is_not_mapped() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let id = "rootless-unmapped-user";
    let args = [
        "run",
        "--name",
        id,
        "--user",
        "1000",
        "--rootfs",
        rootfs.arg(),
        "--",
        "true",
    ];
    // A user of its own without subordinate ranges (nobody may get some from another test).
    let Some(user) = support::user::TestUser::new(rootfs.scratch(), false) else {
        return;
    };
    let out = user.peapod(&args);
    let hint = format!("add a range for {} to /etc/subuid", user.name);
    assert_refused(
        &rootfs,
        &out,
        id,
        &[
            "process.user.uid",
            "uid 1000 is not mapped in the container",
            &hint,
        ],
    );
    assert!(support::state_entries(&user.home.join("state")).is_empty());
}

#[test]
fn rootless_limits_on_cgroup_v1_say_they_need_root_or_a_delegated_cgroup() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(layout) = support::cgroup_layout_with(&["memory"]) else {
        return;
    };
    if layout.is_v2() {
        eprintln!("skipped: this host has cgroup v2, where a cgroup may be delegated");
        return;
    }
    let id = "rootless-limits";
    let args = [
        "run",
        "--name",
        id,
        "--memory",
        "64m",
        "--rootfs",
        rootfs.arg(),
        "--",
        "true",
    ];
    let Some(out) = support::run_as_nobody(&rootfs, &args) else {
        return;
    };
    assert_refused(
        &rootfs,
        &out,
        id,
        &[
            "rootless containers cannot have limits",
            "cgroup v1",
            "delegated",
        ],
    );
}
