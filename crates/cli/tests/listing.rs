//! Listing and inspecting containers as docker users do: `ps` (docker's table with no id,
//! runc's process list with one), ids by a unique prefix, `inspect` of a container and of an
//! image, and 12-digit ids in `list`'s table. Every container a test makes is removed by a
//! guard's `Drop` (`rm -f` or `delete --force`), also when the test fails.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{json, Value};
use support::bundle::set_command;
use support::{finish, wait_until, Outcome, TestRootfs};

/// The image the tests import from their rootfs.
const IMAGE: &str = "localhost/listing:1";

/// A test's rootfs, state root and image store.
struct Fixture {
    rootfs: TestRootfs,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        Some(Fixture {
            rootfs: TestRootfs::new()?,
        })
    }

    fn storage(&self) -> PathBuf {
        self.rootfs.scratch().join("storage")
    }

    /// `peapod --root STATE --storage STORE ARGS`.
    fn peapod(&self, args: &[&str]) -> Outcome {
        let mut command = self.rootfs.peapod();
        command.arg("--storage").arg(self.storage()).args(args);
        finish(command.spawn().expect("spawn peapod"))
    }

    /// As [`Fixture::peapod`], which must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.peapod(args);
        assert_eq!(out.code, 0, "peapod {args:?}: {out:?}");
        out.stdout
    }

    fn import_image(&self) {
        self.ok(&["image", "import", self.rootfs.arg(), IMAGE]);
    }

    /// `run -d ARGS`, which prints the new container's id; removed again on drop.
    fn run_d(&self, args: &[&str]) -> Removed<'_> {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        let id = self.ok(&all).trim().to_owned();
        assert_eq!(id.len(), 64, "{id:?}");
        Removed { fixture: self, id }
    }

    /// A container made through runc's path with the id `id` (`create --bundle B ID`),
    /// waiting for `start`; deleted on drop.
    fn create(&self, id: &str) -> Deleted<'_> {
        let bundle = self.rootfs.scratch().join("bundle");
        if !bundle.join("config.json").exists() {
            self.rootfs
                .spec_bundle("bundle", |spec| set_command(spec, &["sleep", "600"]));
        }
        let guard = Deleted {
            fixture: self,
            id: id.to_owned(),
        };
        // Its process keeps the descriptors it is given: none of the test's pipes.
        let status = self
            .rootfs
            .peapod()
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("create");
        assert!(status.success(), "create {id}: {status}");
        guard
    }
}

/// A detached container, removed with `rm -f` on drop.
struct Removed<'a> {
    fixture: &'a Fixture,
    id: String,
}

impl Removed<'_> {
    fn short(&self) -> &str {
        &self.id[..12]
    }
}

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.fixture.peapod(&["rm", "-f", &self.id]);
    }
}

/// A created container, deleted with `delete --force` on drop.
struct Deleted<'a> {
    fixture: &'a Fixture,
    id: String,
}

impl Drop for Deleted<'_> {
    fn drop(&mut self) {
        let _ = self.fixture.peapod(&["delete", "--force", &self.id]);
    }
}

/// The row of `table` whose first column is `first`.
fn row<'t>(table: &'t str, first: &str) -> Option<&'t str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
}

#[test]
fn ps_shows_running_containers_as_docker_and_a_all_the_exited_ones() {
    let Some(f) = Fixture::new() else { return };
    f.import_image();
    let running = f.run_d(&[IMAGE, "sleep", "600"]);
    let exited = f.run_d(&["--rootfs", f.rootfs.arg(), "--", "/bin/sh", "-c", "exit 3"]);
    assert_eq!(f.ok(&["wait", &exited.id]).trim(), "3");

    let table = f.ok(&["ps"]);
    let header = table.lines().next().expect("a header");
    // Columns are three spaces apart or more; a column name has at most one inside.
    let columns: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{table}"
    );
    let line = row(&table, running.short()).unwrap_or_else(|| panic!("no row: {table}"));
    assert!(line.contains(IMAGE), "{line}");
    assert!(line.contains("\"sleep 600\""), "{line}");
    assert!(line.contains(" ago   Up "), "{line}");
    assert!(!table.contains(&running.id), "a whole id in {table}");
    assert!(row(&table, exited.short()).is_none(), "{table}");

    let all = f.ok(&["ps", "-a"]);
    let line = row(&all, exited.short()).unwrap_or_else(|| panic!("no row: {all}"));
    assert!(line.contains("Exited (3) "), "{line}");
    assert!(
        line.contains(f.rootfs.arg()),
        "its root as the image: {line}"
    );
    assert!(row(&all, running.short()).is_some(), "{all}");

    assert_eq!(f.ok(&["ps", "-q"]), format!("{}\n", running.short()));
    let mut quiet: Vec<String> = f.ok(&["ps", "-aq"]).lines().map(str::to_owned).collect();
    quiet.sort();
    let mut expected = vec![running.short().to_owned(), exited.short().to_owned()];
    expected.sort();
    assert_eq!(quiet, expected);

    let json: Value = serde_json::from_str(&f.ok(&["ps", "-a", "--format", "json"])).expect("JSON");
    let find = |id: &str| {
        json.as_array()
            .expect("an array")
            .iter()
            .find(|c| c["Id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {json}"))
    };
    let up = find(&running.id);
    assert_eq!(up["Image"], IMAGE, "{up}");
    assert_eq!(up["State"], "running", "{up}");
    assert!(
        up["Status"].as_str().is_some_and(|s| s.starts_with("Up ")),
        "{up}"
    );
    assert_eq!(up["Command"], "sleep 600", "{up}");
    assert!(up["Created"].as_u64().is_some_and(|c| c > 0), "{up}");
    // Without --name: a generated docker-style name beside the 64-hex id.
    let names = up["Names"].as_array().expect("Names");
    assert!(
        names.len() == 1 && names[0].as_str().is_some_and(|n| n.contains('_')),
        "{up}"
    );
    let down = find(&exited.id);
    assert_eq!(down["State"], "exited", "{down}");
    assert_eq!(down["ExitCode"], 3, "{down}");

    // runc's list: 12 digits in the table, whole ids for programs.
    let list = f.ok(&["list"]);
    assert!(row(&list, running.short()).is_some(), "{list}");
    assert!(!list.contains(&running.id), "{list}");
    assert!(f.ok(&["list", "-q"]).lines().any(|l| l == running.id));
    let states: Value = serde_json::from_str(&f.ok(&["list", "--format", "json"])).expect("JSON");
    assert!(
        states
            .as_array()
            .expect("array")
            .iter()
            .any(|s| s["id"] == running.id.as_str()),
        "{states}"
    );
}

#[test]
fn ps_with_an_id_stays_runcs_process_list() {
    let Some(f) = Fixture::new() else { return };
    let c = f.run_d(&["--rootfs", f.rootfs.arg(), "--", "sleep", "600"]);
    let state: Value = serde_json::from_str(&f.ok(&["state", &c.id])).expect("state");
    let pid = state["pid"].as_i64().expect("a pid");
    // What containerd's shim reads: a JSON array of host PIDs and nothing else.
    let out = f.ok(&["ps", "--format", "json", &c.id]);
    assert_eq!(out, format!("[{pid}]\n"));
    // ps(1)'s table, only the container's processes.
    let table = f.ok(&["ps", &c.id]);
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .expect("a PID column");
    let pids: Vec<i64> = lines
        .filter_map(|l| l.split_whitespace().nth(column)?.parse().ok())
        .collect();
    assert_eq!(pids, [pid], "{table}");
    // docker's flags are not runc's: refused with an id.
    assert_eq!(f.peapod(&["ps", "-a", &c.id]).code, 2);
}

#[test]
fn a_unique_prefix_names_a_container_and_an_ambiguous_one_names_both() {
    let Some(f) = Fixture::new() else { return };
    let abc1 = format!("abc1{}", "0".repeat(60));
    let abc2 = format!("abc2{}", "0".repeat(60));
    let _c1 = f.create(&abc1);
    let _c2 = f.create(&abc2);

    let out = f.peapod(&["state", "abc"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&abc1) && out.stderr.contains(&abc2),
        "{out:?}"
    );
    let state: Value = serde_json::from_str(&f.ok(&["state", "abc2"])).expect("state");
    assert_eq!(state["id"], abc2.as_str());
    assert_eq!(state["status"], "created");

    // A name is matched whole before any prefix.
    let _named = f.create("abc");
    let state: Value = serde_json::from_str(&f.ok(&["state", "abc"])).expect("state");
    assert_eq!(state["id"], "abc");

    // Too short a prefix names nothing.
    let out = f.peapod(&["state", "ab"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("does not exist"), "{out:?}");

    // A generated id by its first digits: logs, inspect, rm.
    let c = f.run_d(&[
        "--rootfs",
        f.rootfs.arg(),
        "--",
        "/bin/sh",
        "-c",
        "echo hi; sleep 600",
    ]);
    let prefix = &c.id[..5];
    wait_until("its output", || {
        f.peapod(&["logs", prefix]).stdout == "hi\n"
    });
    let inspected: Value = serde_json::from_str(&f.ok(&["inspect", prefix])).expect("JSON");
    assert_eq!(inspected[0]["Id"], c.id.as_str());
    f.ok(&["rm", "-f", prefix]);
    assert!(
        !f.rootfs.state_root().join(&c.id).exists(),
        "rm by prefix left it"
    );
}

#[test]
fn inspect_shows_a_container_and_an_image_as_docker() {
    let Some(f) = Fixture::new() else { return };
    f.import_image();
    let data = f.rootfs.scratch().join("data");
    std::fs::create_dir(&data).expect("data");
    let volume = format!("{}:/data:ro", data.display());
    let c = f.run_d(&[
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "-v",
        &volume,
        IMAGE,
        "sleep",
        "600",
    ]);
    let out: Value = serde_json::from_str(&f.ok(&["inspect", c.short()])).expect("JSON");
    let it = &out[0];
    assert_eq!(it["Id"], c.id.as_str(), "{it}");
    assert!(
        it["Name"]
            .as_str()
            .is_some_and(|n| n.starts_with('/') && n.contains('_')),
        "a generated name: {it}"
    );
    assert_eq!(it["Path"], "sleep", "{it}");
    assert_eq!(it["Args"], json!(["600"]), "{it}");
    assert_eq!(it["State"]["Status"], "running", "{it}");
    assert_eq!(it["State"]["Running"], true, "{it}");
    assert!(it["State"]["Pid"].as_i64().is_some_and(|p| p > 0), "{it}");
    assert!(
        it["Image"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")),
        "{it}"
    );
    assert_eq!(it["Config"]["Image"], IMAGE, "{it}");
    assert_eq!(it["Config"]["WorkingDir"], "/tmp", "{it}");
    assert!(
        it["Config"]["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .any(|e| e == "GREETING=hi"),
        "{it}"
    );
    assert_eq!(it["HostConfig"]["Memory"], 64 << 20, "{it}");
    assert_eq!(it["HostConfig"]["PidsLimit"], 50, "{it}");
    let mount = it["Mounts"]
        .as_array()
        .expect("Mounts")
        .iter()
        .find(|m| m["Destination"] == "/data")
        .unwrap_or_else(|| panic!("no /data in {it}"));
    assert_eq!(mount["RW"], false, "{mount}");
    assert_eq!(mount["Source"], data.to_str().expect("utf-8"), "{mount}");

    // An image: what `image inspect` prints.
    let image: Value = serde_json::from_str(&f.ok(&["inspect", IMAGE])).expect("JSON");
    let by_image_inspect: Value =
        serde_json::from_str(&f.ok(&["image", "inspect", IMAGE])).expect("JSON");
    assert_eq!(image, by_image_inspect);
    assert_eq!(image[0]["id"], it["Image"], "{image}");

    // A kind asked for that the name is not; a name nothing has.
    let out = f.peapod(&["inspect", "--type", "container", IMAGE]);
    assert_eq!((out.code, out.stderr.lines().count()), (1, 1), "{out:?}");
    assert!(out.stderr.contains("no such container"), "{out:?}");
    let out = f.peapod(&["inspect", "nosuch"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no such object: nosuch"), "{out:?}");
}
