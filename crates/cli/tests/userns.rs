//! User namespaces with maps that do not map root to itself, started by root: the container
//! process becomes the mapped root inside, so it runs as uid 0 there and what it makes in its
//! rootfs belongs to the mapped host id.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};
use support::{facts, finish, TestRootfs};

/// Writes `config.json` for a bundle in `rootfs`'s scratch directory: `peapod spec`'s, with
/// a new user namespace mapping container ids 0..65536 to host ids from `host_id`, a bind of
/// `out` at `/out`, and `script` as the entrypoint.
fn write_bundle(rootfs: &TestRootfs, host_id: u32, out: &Path, script: &str) {
    let dir = rootfs.scratch();
    let spec_out = finish(
        rootfs
            .peapod()
            .args(["spec", "--bundle"])
            .arg(dir)
            .spawn()
            .expect("spawn peapod spec"),
    );
    assert_eq!(spec_out.code, 0, "{spec_out:?}");
    let text = std::fs::read_to_string(dir.join("config.json")).expect("config.json");
    let mut spec: Value = serde_json::from_str(&text).expect("JSON");
    spec["process"]["args"] = json!(["sh", "-c", script]);
    let map = json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
    let linux = &mut spec["linux"];
    linux["uidMappings"] = map.clone();
    linux["gidMappings"] = map;
    linux["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/out",
        "type": "bind",
        "source": out,
        "options": ["rbind"],
    }));
    let text = serde_json::to_string_pretty(&spec).expect("JSON");
    std::fs::write(dir.join("config.json"), text).expect("write config.json");
}

/// Runs a container whose root is host id `host_id` and checks what a user would: it runs,
/// `id` says 0, its uid_map is the spec's, and a file it makes is `host_id`'s on the host.
fn run_mapped_to(host_id: u32, id: &str) {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // The rootfs belongs to the container's root, as an image unpacked for this map would.
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{host_id}:{host_id}")])
        .arg(&rootfs.path)
        .status()
        .expect("chown");
    assert!(chown.success(), "chown of the rootfs failed");
    let out = rootfs.scratch().join("out");
    std::fs::create_dir(&out).expect("out dir");
    nix::unistd::chown(&out, Some(host_id.into()), Some(host_id.into())).expect("chown out");
    let script = "echo uid=$(id -u); echo gid=$(id -g); echo map=$(cat /proc/self/uid_map); \
                  echo gidmap=$(cat /proc/self/gid_map); touch /out/made; echo made=$?";
    write_bundle(&rootfs, host_id, &out, script);
    let ran = finish(
        rootfs
            .peapod()
            .args(["run", "--bundle"])
            .arg(rootfs.scratch())
            .arg(id)
            .spawn()
            .expect("spawn peapod run"),
    );
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
