//! Pods as an ordinary user: a user created for the test makes them, with the user-mode
//! network (pasta, else slirp4netns), and nothing of theirs is left after `pod rm`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::tcp::{fetch, free_port};
use support::user::{overlay_refused, uid_map_lines, TestUser, RANGE, UID_MAP};
use support::{finish, Outcome, TestRootfs, TIMEOUT};

/// The fixture: a rootfs, the user, and the pods it made (`pod rm -f` on drop, before the
/// user goes).
struct Rootless {
    pods: Vec<String>,
    /// Pods made by [`TestUser::sh`], with peapod's default state root.
    shell_pods: Vec<String>,
    user: TestUser,
    rootfs: TestRootfs,
}

impl Rootless {
    /// The fixture; with `ranges`, the user has subordinate ids (as podman's users have).
    fn new(ranges: bool) -> Option<Rootless> {
        let rootfs = TestRootfs::new()?;
        let user = TestUser::new(rootfs.scratch(), ranges)?;
        Some(Rootless {
            pods: Vec::new(),
            shell_pods: Vec::new(),
            user,
            rootfs,
        })
    }

    /// `peapod --root STATE --storage STORE ARGS...` as the user, in its home, finished.
    fn peapod(&self, args: &[&str]) -> Outcome {
        self.user.peapod(args)
    }

    fn ok(&self, args: &[&str]) -> Outcome {
        let out = self.peapod(args);
        assert_eq!(out.code, 0, "peapod {args:?}: {out:?}");
        out
    }

    fn create(&mut self, name: &str, extra: &[&str]) {
        self.pods.push(name.to_owned());
        let mut args = vec!["pod", "create"];
        args.extend(extra);
        args.push(name);
        self.ok(&args);
    }

    /// `pod rm -f` of every pod, then: no process of the user, no state.
    fn remove_all_and_check(&mut self) {
        for name in std::mem::take(&mut self.pods) {
            self.ok(&["pod", "rm", "-f", &name]);
        }
        self.user.assert_no_process();
        let left = support::state_entries(&self.user.state_root());
        assert!(left.is_empty(), "state left: {left:?}");
        self.rootfs.assert_nothing_left();
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.pods) {
            let _ = std::panic::catch_unwind(|| self.peapod(&["pod", "rm", "-f", &name]));
        }
        for name in std::mem::take(&mut self.shell_pods) {
            let _ = std::panic::catch_unwind(|| self.user.sh(&format!("peapod pod rm -f {name}")));
        }
    }
}

/// The user-mode networks installed here; empty (after saying so) when neither is.
fn user_mode_networks() -> Vec<&'static str> {
    let found: Vec<&str> = ["pasta", "slirp4netns"]
        .into_iter()
        .filter(|p| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|dir| dir.join(p).is_file())
        })
        .collect();
    if found.is_empty() {
        eprintln!("skipped: neither pasta (Debian passt) nor slirp4netns is installed");
    }
    found
}

const SERVER: &str = "/bin/nc -ll -p 80 -e /bin/echo hi";

#[test]
fn rootless_pod_containers_share_loopback_and_hostname() {
    let Some(mut t) = Rootless::new(false) else {
        return;
    };
    if user_mode_networks().is_empty() {
        return;
    }
    t.create("web", &["--hostname", "web"]);
    let root = t.rootfs.arg().to_owned();
    let server = [
        "run", "--pod", "web", "--rootfs", &root, "--name", "server", "--detach",
    ];
    let mut args = server.to_vec();
    args.extend(["--", "/bin/sh", "-c", SERVER]);
    t.ok(&args);
    let client = "echo host=$(hostname); echo uid=$(id -u); \
                  for i in $(seq 100); do nc 127.0.0.1 80 && exit; sleep 0.1; done; exit 1";
    let out = t.ok(&[
        "run", "--pod", "web", "--rootfs", &root, "--", "/bin/sh", "-c", client,
    ]);
    let facts = support::facts(&out.stdout);
    assert_eq!(facts["host"], "web", "{out:?}");
    assert_eq!(facts["uid"], "0", "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "hi"), "{out:?}");
    let ps = t.ok(&["pod", "ps", "web"]);
    assert!(ps.stdout.contains("user:["), "{ps:?}");
    t.remove_all_and_check();
}

#[test]
fn rootless_pod_published_port_answers_on_the_hosts_loopback() {
    let Some(mut t) = Rootless::new(false) else {
        return;
    };
    let root = t.rootfs.arg().to_owned();
    for network in user_mode_networks() {
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:80");
        let name = format!("pub-{network}");
        t.create(&name, &["--network", network, "-p", &publish]);
        let ps = t.ok(&["pod", "ps", &name]);
        assert!(
            ps.stdout
                .contains(&format!("network {network}: 10.0.2.100/24")),
            "{ps:?}"
        );
        let mut args = vec!["run", "--pod", &name, "--rootfs", &root, "--detach"];
        args.extend(["--", "/bin/sh", "-c", SERVER]);
        t.ok(&args);
        assert_eq!(fetch(&format!("127.0.0.1:{port}")), "hi\n", "{network}");
        // The pod's resolver is the helper's forwarder.
        let resolv = t.ok(&[
            "run",
            "--pod",
            &name,
            "--rootfs",
            &root,
            "--",
            "/bin/cat",
            "/etc/resolv.conf",
        ]);
        assert!(resolv.stdout.contains("nameserver 10.0.2.3"), "{resolv:?}");
    }
    t.remove_all_and_check();
}

/// The `sh` blocks of the README's section `## Pods`, in order.
fn readme_pod_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let section = &readme[readme.find("\n## Pods\n").expect("## Pods in README.md")..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block[..block.find("```").expect("a block's end")].to_owned())
        .collect()
}

/// The line of the README's Quick start that imports `target/rootfs` as `localhost/demo`.
fn readme_import_line() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("peapod image import target/rootfs localhost/demo"))
        .expect("the import in README.md");
    line.split('#').next().unwrap_or(line).trim().to_owned()
}

/// The README's pod section as its reader types it, unchanged, as an ordinary user with
/// subordinate ranges and peapod's defaults (state in `$XDG_RUNTIME_DIR/peapod`, images in
/// `~/.local/share/peapod`, pasta or slirp4netns): the first block (a pod, a server and a
/// client sharing `127.0.0.1` and the host name, `pod ps`, `pod rm`) and `pod play` of the
/// manifest, whose `pod logs` shows each container's line. (The second block is root's: its
/// pods talk over a CNI network.)
#[test]
fn rootless_readme_pod_section_works_unchanged() {
    let Some(mut t) = Rootless::new(true) else {
        return;
    };
    if user_mode_networks().is_empty() {
        return;
    }
    // `target/rootfs` in the working directory, as after `cargo xtask rootfs`.
    let target = t.user.dir("target");
    std::os::unix::fs::symlink(&t.rootfs.path, target.join("rootfs")).expect("symlink");
    let blocks = readme_pod_blocks();
    assert_eq!(blocks.len(), 3, "{blocks:#?}");
    t.shell_pods = vec!["web".to_owned(), "hello".to_owned()];

    let first = t.user.sh(&format!("set -e\n{}", blocks[0]));
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.lines().any(|l| l == "hi"), "{first:?}");
    assert!(first.stdout.contains("user:["), "pod ps: {first:?}");

    // The manifest's block, with its `pod logs` asked until both containers have written.
    let play = &blocks[2];
    let logs_at = play
        .find("peapod pod logs hello")
        .expect("pod logs in the block");
    let (up, rest) = play.split_at(logs_at);
    let (logs_line, down) = rest.split_at(rest.find('\n').expect("a line"));
    let out = t
        .user
        .sh(&format!("set -e\n{}\n{up}", readme_import_line()));
    assert_eq!(out.code, 0, "{out:?}");
    let deadline = Instant::now() + TIMEOUT;
    let logs = loop {
        let logs = t.user.sh(logs_line);
        assert_eq!(logs.code, 0, "{logs:?}");
        if logs.stdout.contains("local | hello from a directory")
            && logs.stdout.contains("greet | hello from a pod")
        {
            break logs.stdout;
        }
        assert!(Instant::now() < deadline, "the pod's logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(logs.lines().count(), 2, "{logs:?}");
    let out = t.user.sh(&format!("set -e\n{down}"));
    assert_eq!(out.code, 0, "{out:?}");
    t.shell_pods.clear();

    let out = t
        .user
        .sh("peapod pod list; peapod rmi localhost/demo:latest");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !out.stdout.contains("web") && !out.stdout.contains("hello"),
        "{out:?}"
    );
    t.user.assert_no_process();
    let state = t.user.home.join("run/peapod");
    let left = support::state_entries(&state);
    assert!(left.is_empty(), "state left: {left:?}");
    t.rootfs.assert_nothing_left();
}

const IDS_SCRIPT: &str = "echo id=$(id -u):$(id -g); echo owned=$(stat -c %u:%g /data/owned); \
                          echo map=$(sed -n 2p /proc/self/uid_map | tr -s ' ' ' '); cat /data/owned";

/// What [`IDS_SCRIPT`] printed, checked: the image's user 1000:1000, its file owned by
/// 1000:1000, and the second line of the uid map the user's range.
fn assert_image_ids(t: &Rootless, stdout: &str) {
    let inside = support::facts(stdout);
    assert_eq!(inside["id"], "1000:1000", "{stdout}");
    assert_eq!(inside["owned"], "1000:1000", "{stdout}");
    let start = t.user.range_start.expect("a range");
    let map = format!("1 {start} {}", support::user::RANGE);
    assert_eq!(inside["map"].trim(), map, "{stdout}");
    assert!(stdout.contains("mine\n"), "{stdout}");
}

/// A rootless pod's containers from an image whose `User` is `1000:1000`, by `run --pod` and
/// by `pod play`: each runs as 1000 and sees the layer's file as 1000's, since the pod's user
/// namespace maps the caller's subordinate range as a lone container's does.
#[test]
fn rootless_pod_container_from_an_image_with_user_1000_shows_its_owners() {
    let Some(mut t) = Rootless::new(true) else {
        return;
    };
    let archive = support::image::image_archive(&t.rootfs);
    t.ok(&["image", "load", "-i", archive.to_str().expect("utf-8")]);
    t.create("ids", &["--network", "none"]);
    let image = support::image::IMAGE;
    let run = t.peapod(&["run", "--pod", "ids", image, "sh", "-c", IDS_SCRIPT]);
    if overlay_refused(&run) {
        return;
    }
    assert_eq!(run.code, 0, "{run:?}");
    assert_image_ids(&t, &run.stdout);

    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: played}}\nspec:\n  restartPolicy: Never\n  \
         containers:\n  - name: ids\n    image: {image}\n    imagePullPolicy: Never\n    \
         command: [\"sh\", \"-c\", {IDS_SCRIPT:?}]\n"
    );
    let file = t.user.dir("manifests").join("ids.yaml");
    std::fs::write(&file, manifest).expect("manifest");
    t.pods.push("played".to_owned());
    t.ok(&[
        "pod",
        "play",
        "--network",
        "none",
        file.to_str().expect("utf-8"),
    ]);
    let deadline = Instant::now() + TIMEOUT;
    let logs = loop {
        let logs = t.ok(&["pod", "logs", "played"]).stdout;
        if logs.contains("mine") {
            break logs;
        }
        assert!(Instant::now() < deadline, "the pod's logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let unprefixed: String = logs
        .lines()
        .map(|l| l.strip_prefix("ids | ").unwrap_or(l).to_owned() + "\n")
        .collect();
    assert_image_ids(&t, &unprefixed);
    t.remove_all_and_check();
    let rm = t.peapod(&["rmi", image]);
    assert_eq!(rm.code, 0, "{rm:?}");
}

/// `pod create --userns keep-id` as an ordinary user with ranges: the pod's user namespace
/// has keep-id's maps, its containers run as the caller (and share the pod's host name); an
/// image in it is refused in one line, as keep-id is to root; nothing is left after `pod rm`.
#[test]
fn rootless_pod_with_userns_keep_id_runs_its_containers_as_the_caller() {
    let Some(mut t) = Rootless::new(true) else {
        return;
    };
    let (uid, gid) = (t.user.uid, t.user.gid);
    let start = t.user.range_start.expect("a range");
    // On the user-mode network where there is one: its helper joins keep-id's namespace.
    let network = user_mode_networks().first().copied().unwrap_or("none");
    t.create("keep", &["--userns", "keep-id", "--network", network]);
    if network != "none" {
        let ps = t.ok(&["pod", "ps", "keep"]);
        let line = format!("network {network}: 10.0.2.100/24");
        assert!(ps.stdout.contains(&line), "{ps:?}");
    }
    let root = t.rootfs.arg().to_owned();
    let script = format!("echo id=$(id -u):$(id -g); echo host=$(hostname); {UID_MAP}");
    let out = t.ok(&[
        "run", "--pod", "keep", "--rootfs", &root, "--", "/bin/sh", "-c", &script,
    ]);
    let facts = support::facts(&out.stdout);
    assert_eq!(facts["id"], format!("{uid}:{gid}"), "{out:?}");
    assert_eq!(facts["host"], "keep", "{out:?}");
    assert_eq!(
        uid_map_lines(&out.stdout),
        [
            format!("0 {start} {uid}"),
            format!("{uid} {uid} 1"),
            format!("{} {} {}", uid + 1, start + uid, RANGE - uid),
        ],
        "{out:?}"
    );
    let image = t.peapod(&["run", "--pod", "keep", "localhost/none", "/bin/true"]);
    assert_eq!(image.code, 2, "{image:?}");
    assert!(
        image.stderr.contains("your pod's) goes with --rootfs"),
        "{image:?}"
    );
    let mut as_root = t.rootfs.peapod();
    as_root
        .args(["pod", "create", "--userns", "keep-id", "rootkeep"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let refused = finish(as_root.spawn().expect("spawn"));
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("for rootless pods"), "{refused:?}");
    t.remove_all_and_check();
}

#[test]
fn rootless_lone_container_publishes_a_port_through_the_user_mode_network() {
    let Some(mut t) = Rootless::new(false) else {
        return;
    };
    if user_mode_networks().is_empty() {
        return;
    }
    let root = t.rootfs.arg().to_owned();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let args = [
        "run", "-d", "--name", "lone", "-p", &publish, "--rootfs", &root, "--", "/bin/sh", "-c",
        SERVER,
    ];
    t.ok(&args);
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "hi\n");
    t.ok(&["rm", "-f", "lone"]);
    t.remove_all_and_check();
}

/// A `pod create` killed after its network helper started but before it recorded its pid
/// (its record edited to look so): `pod rm` still finds the helper, through its pid file,
/// and nothing is left.
#[test]
fn rootless_pod_rm_kills_a_helper_whose_pid_was_never_recorded() {
    let Some(mut t) = Rootless::new(false) else {
        return;
    };
    for network in user_mode_networks() {
        let name = format!("crash-{network}");
        t.create(&name, &["--network", network]);
        let file = t
            .user
            .state_root()
            .join(".pods")
            .join(&name)
            .join("pod.json");
        let mut record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("pod.json")).expect("json");
        let helper = record["network"]["helper"]["pid"]
            .as_i64()
            .expect("a helper pid");
        assert!(Path::new(&format!("/proc/{helper}")).exists());
        record["network"]
            .as_object_mut()
            .expect("network")
            .remove("helper");
        std::fs::write(&file, record.to_string()).expect("write pod.json");
        t.ok(&["pod", "rm", "-f", &name]);
        t.pods.retain(|p| *p != name);
        t.user.assert_no_process();
    }
    t.remove_all_and_check();
}

/// What a rootless pod cannot have is refused before anything is made, naming the flag: limits
/// (no delegated cgroup here) and a CNI network; and root is refused pasta (root keeps CNI).
#[test]
fn rootless_pod_refusals_name_the_flag_and_leave_nothing() {
    let Some(mut t) = Rootless::new(false) else {
        return;
    };
    for (args, needle) in [
        (
            &["pod", "create", "--memory", "64m", "lim"][..],
            "rootless pods cannot have limits",
        ),
        (
            &["pod", "create", "--network", "peapod", "cni"][..],
            "--network peapod: a CNI network needs root",
        ),
    ] {
        let out = t.peapod(args);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains(needle), "{out:?}");
    }
    let root = t
        .rootfs
        .peapod()
        .args(["pod", "create", "--network", "pasta", "p"])
        .spawn()
        .expect("spawn");
    let out = finish(root);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--network pasta is for rootless pods"),
        "{out:?}"
    );
    t.remove_all_and_check();
}
