//! User namespaces with maps that do not map root to itself, started by root: the container
//! process becomes the mapped root inside, so it runs as uid 0 there and what it makes in its
//! rootfs belongs to the mapped host id.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::bundle::add_bind;
use support::{facts, finish, TestRootfs};

/// A bundle in `rootfs`'s scratch directory: `peapod spec`'s, with a new user namespace
/// mapping container ids 0..65536 to host ids from `host_id`, a bind of `out` at `/out`, and
/// `script` as the entrypoint.
fn write_bundle(rootfs: &TestRootfs, host_id: u32, out: &Path, script: &str) -> PathBuf {
    rootfs.spec_bundle("bundle", |spec| {
        spec["process"]["args"] = json!(["sh", "-c", script]);
        let map = json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
        let linux = &mut spec["linux"];
        linux["uidMappings"] = map.clone();
        linux["gidMappings"] = map;
        linux["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "user"}));
        add_bind(spec, out, "/out");
    })
}

/// Copies the rootfs for a container whose root is host id `host_id`: chowned to it, as an
/// image unpacked for this map would be, with `out` (also `host_id`'s) for it to write to.
fn mapped_rootfs(host_id: u32) -> Option<(TestRootfs, std::path::PathBuf)> {
    let rootfs = TestRootfs::new()?;
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{host_id}:{host_id}")])
        .arg(&rootfs.path)
        .status()
        .expect("chown");
    assert!(chown.success(), "chown of the rootfs failed");
    let out = rootfs.scratch().join("out");
    std::fs::create_dir(&out).expect("out dir");
    nix::unistd::chown(&out, Some(host_id.into()), Some(host_id.into())).expect("chown out");
    Some((rootfs, out))
}

/// Runs a container whose root is host id `host_id` and checks what a user would: it runs,
/// `id` says 0, its uid_map is the spec's, and a file it makes is `host_id`'s on the host.
fn run_mapped_to(host_id: u32, id: &str) {
    let Some((rootfs, out)) = mapped_rootfs(host_id) else {
        return;
    };
    let script = "echo uid=$(id -u); echo gid=$(id -g); echo map=$(cat /proc/self/uid_map); \
                  echo gidmap=$(cat /proc/self/gid_map); touch /out/made; echo made=$?";
    let bundle = write_bundle(&rootfs, host_id, &out, script);
    let ran = rootfs.run_bundle(&bundle, id);
    assert_eq!(ran.code, 0, "{ran:?}");
    let inside = facts(&ran.stdout);
    assert_eq!(inside["uid"], "0", "{ran:?}");
    assert_eq!(inside["gid"], "0", "{ran:?}");
    let expected = ["0", &host_id.to_string(), "65536"];
    let map: Vec<&str> = inside["map"].split_whitespace().collect();
    assert_eq!(map, expected, "{ran:?}");
    let gid_map: Vec<&str> = inside["gidmap"].split_whitespace().collect();
    assert_eq!(gid_map, expected, "{ran:?}");
    assert_eq!(inside["made"], "0", "{ran:?}");
    let made = std::fs::metadata(out.join("made")).expect("the file made inside");
    assert_eq!((made.uid(), made.gid()), (host_id, host_id));
    rootfs.assert_nothing_left();
}

#[test]
fn root_mapped_to_host_id_100000_runs_as_uid_0_inside_and_makes_files_as_100000() {
    run_mapped_to(100_000, "userns-100000");
}

#[test]
fn root_mapped_to_host_id_1000_runs_as_uid_0_inside_and_makes_files_as_1000() {
    run_mapped_to(1000, "userns-1000");
}

/// A detached container of a test: deleted on drop (also when the test fails), and its
/// process, when still in the test's rootfs, killed by its pid.
struct Detached<'a> {
    rootfs: &'a TestRootfs,
    id: &'a str,
    pid: Option<i32>,
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a failed test unwinds.
        if let Ok(child) = self
            .rootfs
            .peapod()
            .args(["delete", "--force", self.id])
            .spawn()
        {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| finish(child)));
        }
        if let Some(pid) = self.pid {
            self.rootfs.kill_if_inside(pid);
        }
    }
}

#[test]
fn exec_in_a_container_with_root_mapped_to_100000_runs_as_its_uid_0() {
    let host_id = 100_000;
    let Some((rootfs, out)) = mapped_rootfs(host_id) else {
        return;
    };
    // The shell lets go of peapod's pipes before it waits, so `run -d` is finished at once.
    let bundle = write_bundle(&rootfs, host_id, &out, "exec sleep 60 >/dev/null 2>&1");
    let mut container = Detached {
        rootfs: &rootfs,
        id: "userns-exec",
        pid: None,
    };
    let ran = finish(
        rootfs
            .peapod()
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(container.id)
            .spawn()
            .expect("spawn peapod run"),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let state = finish(
        rootfs
            .peapod()
            .args(["state", container.id])
            .spawn()
            .expect("spawn peapod state"),
    );
    let state: Value = serde_json::from_str(&state.stdout).expect("state JSON");
    container.pid = state["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
    let script = "echo uid=$(id -u); echo map=$(cat /proc/self/uid_map); \
                  touch /out/exec-made; echo made=$?";
    let exec = finish(
        rootfs
            .peapod()
            .args(["exec", container.id, "sh", "-c", script])
            .spawn()
            .expect("spawn peapod exec"),
    );
    assert_eq!(exec.code, 0, "{exec:?}");
    let inside = facts(&exec.stdout);
    assert_eq!(inside["uid"], "0", "{exec:?}");
    let map: Vec<&str> = inside["map"].split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"], "{exec:?}");
    assert_eq!(inside["made"], "0", "{exec:?}");
    let made = std::fs::metadata(out.join("exec-made")).expect("the file exec made");
    assert_eq!((made.uid(), made.gid()), (host_id, host_id));
    drop(container);
    rootfs.assert_nothing_left();
}
