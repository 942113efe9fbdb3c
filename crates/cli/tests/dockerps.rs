//! What a docker user sees of containers beyond running them: generated names
//! (`adjective_surname`) usable wherever a name is, `ps` STATUS and `inspect` times read
//! from the real start and end, `-P` publishing an image's ExposedPorts on free host ports
//! (`port`, ps PORTS), and one line for each docker command peapod spells differently or
//! lacks. Every container is removed by a guard's `Drop`; the network is the test's own.

mod support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::bundle::set_command;
use support::net::{available, TestNet};
use support::pods::Pods;
use support::tcp::fetch;
use support::{finish, wait_until, Outcome, TestRootfs};

/// `peapod --root STATE ARGS` for the test's rootfs.
fn peapod(rootfs: &TestRootfs, args: &[&str]) -> Outcome {
    finish(rootfs.peapod().args(args).spawn().expect("spawn peapod"))
}

fn ok(rootfs: &TestRootfs, args: &[&str]) -> String {
    let out = peapod(rootfs, args);
    assert_eq!(out.code, 0, "peapod {args:?}: {out:?}");
    out.stdout
}

/// Containers removed (`rm -f`) on drop.
struct Removed<'a> {
    rootfs: &'a TestRootfs,
    ids: Vec<String>,
}

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = peapod(self.rootfs, &["rm", "-f", id]);
        }
    }
}

fn inspect(rootfs: &TestRootfs, target: &str) -> Value {
    let out: Value = serde_json::from_str(&ok(rootfs, &["inspect", target])).expect("JSON");
    out[0].clone()
}

/// The ps table's row for `name` (its last column), split into columns.
fn ps_row(table: &str, name: &str) -> Option<Vec<String>> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))?;
    Some(
        line.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// Whether RFC 3339 `time` is within whole seconds `from..=to` (compared as text, which
/// orders these fixed-width times).
fn within(time: &str, from: u64, to: u64) -> bool {
    let second = &time[..19];
    peapod_state::rfc3339(from)[..19] <= *second && *second <= peapod_state::rfc3339(to)[..19]
}

#[test]
fn a_generated_name_is_unique_and_names_the_container_everywhere() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let mut guard = Removed {
        rootfs: &rootfs,
        ids: Vec::new(),
    };
    let script = "echo hello; exec sleep 600";
    let mut names = Vec::new();
    for _ in 0..3 {
        let id = ok(
            &rootfs,
            &[
                "run",
                "-d",
                "--rootfs",
                rootfs.arg(),
                "--",
                "sh",
                "-c",
                script,
            ],
        )
        .trim()
        .to_owned();
        assert_eq!(id.len(), 64, "{id:?}");
        guard.ids.push(id.clone());
        let it = inspect(&rootfs, &id);
        let name = it["Name"].as_str().expect("Name").to_owned();
        let bare = name.strip_prefix('/').expect("a docker name begins with /");
        let (adjective, surname) = bare.split_once('_').expect("adjective_surname");
        assert!(
            [adjective, surname]
                .iter()
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
            "{name}"
        );
        assert_eq!(it["Id"], id.as_str(), "the id stays the id");
        names.push(bare.to_owned());
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");

    // Shown in ps, and usable for every command that takes a container.
    let table = ok(&rootfs, &["ps"]);
    for (name, id) in names.iter().zip(&guard.ids) {
        let row = ps_row(&table, name).unwrap_or_else(|| panic!("no {name} in {table}"));
        assert_eq!(row[0], id[..12], "{table}");
    }
    let json: Value =
        serde_json::from_str(&ok(&rootfs, &["ps", "--format", "json"])).expect("JSON");
    assert!(
        json.as_array()
            .expect("array")
            .iter()
            .any(|c| c["Names"] == json!([names[0]])),
        "{json}"
    );
    let first = names[0].as_str();
    wait_until("its log", || {
        peapod(&rootfs, &["logs", first]).stdout == "hello\n"
    });
    assert_eq!(inspect(&rootfs, first)["Id"], guard.ids[0].as_str());
    let state: Value = serde_json::from_str(&ok(&rootfs, &["state", first])).expect("JSON");
    assert_eq!(state["id"], guard.ids[0].as_str());
    assert_eq!(
        ok(&rootfs, &["stop", "-t", "1", first]).trim(),
        guard.ids[0]
    );
    let all = ok(&rootfs, &["ps", "-a"]);
    let row = ps_row(&all, first).unwrap_or_else(|| panic!("{all}"));
    assert!(row[4].starts_with("Exited ("), "{all}");
    ok(&rootfs, &["rm", first]);
    assert!(!rootfs.state_root().join(&guard.ids[0]).exists());
    let out = peapod(&rootfs, &["logs", first]);
    assert_eq!(out.code, 1, "{out:?}");

    // A name given that another container has as its generated name is refused.
    let taken = names[1].as_str();
    let out = peapod(
        &rootfs,
        &[
            "run",
            "-d",
            "--name",
            taken,
            "--rootfs",
            rootfs.arg(),
            "--",
            "true",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("in use by container"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(!rootfs.state_root().join(taken).exists());
    drop(guard);
    rootfs.assert_nothing_left();
}

#[test]
fn runs_at_once_get_different_names() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let mut guard = Removed {
        rootfs: &rootfs,
        ids: Vec::new(),
    };
    // Four `run -d` at once: each chooses its name under the state root's lock.
    let children: Vec<_> = (0..4)
        .map(|_| {
            rootfs
                .peapod()
                .args(["run", "-d", "--rootfs", rootfs.arg(), "--", "sleep", "600"])
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = finish(child);
        assert_eq!(out.code, 0, "{out:?}");
        guard.ids.push(out.stdout.trim().to_owned());
    }
    let json: Value =
        serde_json::from_str(&ok(&rootfs, &["ps", "--format", "json"])).expect("JSON");
    let mut names: Vec<String> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["Names"][0].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 4, "{json}");
    drop(guard);
    rootfs.assert_nothing_left();
}

#[test]
fn a_callers_id_gets_no_generated_name() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // runc's path, as containerd and podman take it: the id is the name, nothing added.
    let bundle = rootfs.spec_bundle("bundle", |spec| set_command(spec, &["true"]));
    let status = rootfs
        .peapod()
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg("shim-id")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("create");
    let guard = Removed {
        rootfs: &rootfs,
        ids: vec!["shim-id".to_owned()],
    };
    assert!(status.success());
    let state: Value = serde_json::from_str(&ok(&rootfs, &["state", "shim-id"])).expect("JSON");
    assert_eq!(state["annotations"], json!({}), "{state}");
    let it = inspect(&rootfs, "shim-id");
    assert_eq!(it["Name"], "/shim-id");
    // Created, not started: no start time, as docker's zero time.
    assert_eq!(it["State"]["StartedAt"], "0001-01-01T00:00:00Z");
    ok(&rootfs, &["delete", "--force", "shim-id"]);
    drop(guard);
    rootfs.assert_nothing_left();
}

#[test]
fn ps_status_and_inspect_times_are_the_real_start_and_end() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let before = now();
    let id = ok(
        &rootfs,
        &["run", "-d", "--rootfs", rootfs.arg(), "--", "sleep", "600"],
    )
    .trim()
    .to_owned();
    let guard = Removed {
        rootfs: &rootfs,
        ids: vec![id.clone()],
    };
    let started_by = now();
    let it = inspect(&rootfs, &id);
    let started = it["State"]["StartedAt"]
        .as_str()
        .expect("StartedAt")
        .to_owned();
    assert!(
        within(&started, before, started_by),
        "{started} not in {before}..{started_by}"
    );
    assert!(started.len() > 20, "nanoseconds: {started}");
    assert!(
        it["Created"].as_str().expect("Created")[..19] <= started[..19],
        "{it}"
    );
    assert_eq!(it["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    // Read again: the same time (not recomputed from a clock that moved).
    assert_eq!(
        inspect(&rootfs, &id)["State"]["StartedAt"],
        started.as_str()
    );
    let name = it["Name"].as_str().expect("Name")[1..].to_owned();
    let status = |all: bool| {
        let table = ok(&rootfs, if all { &["ps", "-a"] } else { &["ps"] });
        ps_row(&table, &name).unwrap_or_else(|| panic!("{table}"))[4].clone()
    };
    // "Up N seconds" counts from the start: at most the seconds since `before`.
    let up = status(false);
    let seconds = match up.as_str() {
        "Up Less than a second" => 0,
        "Up 1 second" => 1,
        other => other
            .strip_prefix("Up ")
            .and_then(|s| s.strip_suffix(" seconds"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{other:?}")),
    };
    assert!(seconds <= now() - before + 1, "{up} since {before}");

    let stopping = now();
    ok(&rootfs, &["kill", &id, "KILL"]);
    assert_eq!(ok(&rootfs, &["wait", &id]).trim(), "137");
    let stopped_by = now();
    let it = inspect(&rootfs, &id);
    let finished = it["State"]["FinishedAt"].as_str().expect("FinishedAt");
    assert!(within(finished, stopping, stopped_by), "{finished}");
    assert!(started.as_str() < finished, "{started} {finished}");
    assert_eq!(
        it["State"]["StartedAt"],
        started.as_str(),
        "kept after the end"
    );
    let down = status(true);
    assert!(
        down.starts_with("Exited (137) ") && down.ends_with(" ago"),
        "{down}"
    );
    drop(guard);
    rootfs.assert_nothing_left();
}

#[test]
fn unknown_commands_say_peapods_spelling_or_why_not_in_one_line() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let cases: &[(&[&str], &str)] = &[
        (&["pss"], "did you mean 'ps'?"),
        (&["top", "web"], "peapod has no top; use `peapod ps ID`"),
        (
            &["container", "ls", "-a"],
            "peapod has no container ls; use `peapod ps`",
        ),
        (&["unpause", "web"], "use `peapod resume ID`"),
        (&["volume", "ls"], "volume is not supported ("),
        (
            &["image", "history", "busybox"],
            "history is not supported (",
        ),
        (&["commit", "web"], "commit is not supported ("),
    ];
    for (args, says) in cases {
        let out = peapod(&rootfs, args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
    }
    rootfs.assert_nothing_left();
}

#[test]
fn publish_all_without_a_cni_network_is_refused_in_one_line() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let args = [
        "run",
        "-P",
        "--expose",
        "80",
        "--expose",
        "53/udp",
        "--net",
        "none",
        "--rootfs",
        rootfs.arg(),
        "--",
        "true",
    ];
    let out = peapod(&rootfs, &args);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("-P publishes 80/tcp, 53/udp on a CNI network only: not --net none"),
        "{out:?}"
    );
    // Nothing exposed: nothing to publish, and the container runs (as docker's).
    let out = peapod(
        &rootfs,
        &[
            "run",
            "-P",
            "--net",
            "none",
            "--rootfs",
            rootfs.arg(),
            "--",
            "true",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    // A malformed --expose names the flag.
    let out = peapod(
        &rootfs,
        &[
            "run",
            "--expose",
            "80/icmp",
            "--rootfs",
            rootfs.arg(),
            "--",
            "true",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--expose"), "{out:?}");
    rootfs.assert_nothing_left();
}

/// Makes `name` in the store at `storage`: the test rootfs as one layer, its config
/// exposing `ports` (what `EXPOSE` writes), through the store's library.
fn exposing_image(storage: &Path, rootfs: &Path, name: &str, ports: &[&str]) {
    let store = peapod_image::Store::open(storage).expect("store");
    let source: peapod_image::Reference = "localhost/dockerps-source:1".parse().expect("ref");
    let image = store.import(rootfs, &source).expect("import");
    let mut manifest: Value =
        serde_json::from_slice(&store.read_blob(&image.manifest_digest).expect("manifest"))
            .expect("JSON");
    let config_digest: peapod_image::Digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .parse()
        .expect("digest");
    let mut config: Value =
        serde_json::from_slice(&store.read_blob(&config_digest).expect("config")).expect("JSON");
    let exposed: serde_json::Map<String, Value> =
        ports.iter().map(|p| (p.to_string(), json!({}))).collect();
    config["config"]["ExposedPorts"] = Value::Object(exposed);
    let config = serde_json::to_vec(&config).expect("JSON");
    let digest = store.put_blob(&config).expect("put config");
    manifest["config"]["digest"] = json!(digest.to_string());
    manifest["config"]["size"] = json!(config.len());
    let manifest = serde_json::to_vec(&manifest).expect("JSON");
    store.put_blob(&manifest).expect("put manifest");
    let reference: peapod_image::Reference = name.parse().expect("ref");
    store
        .add_image(Some(&reference), &image.manifest_media_type, &manifest)
        .expect("add image");
}

#[test]
fn publish_all_maps_the_exposed_ports_to_free_host_ports() {
    if !available() {
        return;
    }
    // The default network `peapod`, of this test's own (bridge, subnet, files).
    let net = TestNet::named(Some("peapod"), 24);
    let Some(mut pods) = Pods::new() else {
        return;
    };
    let storage = pods.rootfs.scratch().join("storage");
    exposing_image(
        &storage,
        &pods.rootfs.path,
        "localhost/exposed:1",
        &["80/tcp"],
    );
    pods.env = net.env();
    pods.env.push(("PEAPOD_STORAGE".to_owned(), storage));
    let out = pods.peapod(&[
        "run",
        "-d",
        "-P",
        "--expose",
        "81/udp",
        "--pull",
        "never",
        "localhost/exposed:1",
        "nc",
        "-ll",
        "-p",
        "80",
        "-e",
        "/bin/echo",
        "exposed",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.trim().to_owned();
    // Should the test fail, its network goes with `pods` (`pod rm -f` of the hidden pod
    // kills the container too).
    pods.names.push(format!("net-{id}"));
    let ports = pods.peapod(&["port", &id]);
    assert_eq!(ports.code, 0, "{ports:?}");
    let mut lines: Vec<&str> = ports.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{ports:?}");
    let host_port = |line: &str, private: &str| -> u16 {
        line.strip_prefix(&format!("{private} -> 0.0.0.0:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"))
    };
    let tcp = host_port(lines[0], "80/tcp");
    let udp = host_port(lines[1], "81/udp");
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("range");
    let bounds: Vec<u16> = range
        .split_whitespace()
        .map(|n| n.parse().expect("n"))
        .collect();
    for port in [tcp, udp] {
        assert!((bounds[0]..=bounds[1]).contains(&port), "{port} {range}");
    }
    // One private port: its host address only, as docker's `port ID 80/tcp`.
    let one = pods.peapod(&["port", &id, "80"]);
    assert_eq!(one.stdout, format!("0.0.0.0:{tcp}\n"), "{one:?}");
    let none = pods.peapod(&["port", &id, "82/tcp"]);
    assert_eq!(none.code, 1, "{none:?}");
    assert!(none.stderr.contains("no public port '82/tcp'"), "{none:?}");
    // The listener in the container answers on the host's loopback.
    assert_eq!(fetch(&format!("127.0.0.1:{tcp}")), "exposed\n");
    let table = pods.peapod(&["ps"]).stdout;
    let columns: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(columns[5..], ["PORTS", "NAMES"], "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains(&format!("0.0.0.0:{tcp}->80/tcp, 0.0.0.0:{udp}->81/udp")),
        "{table}"
    );
    let it: Value = serde_json::from_str(&pods.peapod(&["inspect", &id]).stdout).expect("JSON");
    assert_eq!(
        it[0]["NetworkSettings"]["Ports"]["80/tcp"],
        json!([{"HostIp": "0.0.0.0", "HostPort": tcp.to_string()}])
    );
    // Once it has exited it publishes nothing, as docker shows it.
    let out = pods.peapod(&["stop", "-t", "1", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(pods.peapod(&["port", &id]).stdout, "");
    let all = pods.peapod(&["ps", "-a"]).stdout;
    assert!(!all.contains("->80/tcp"), "{all}");
    let out = pods.peapod(&["rm", "-f", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    pods.names.clear();
    assert_eq!(net.leftovers(), Vec::<String>::new());
    pods.rootfs.assert_nothing_left();
}
