//! Pods as an ordinary user: a user created for the test makes them, with the user-mode
//! network (pasta, else slirp4netns), and nothing of theirs is left after `pod rm`.

mod support;

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use support::{finish, Outcome, TestRootfs, TIMEOUT};

/// A user made for one test (`useradd`, a unique name, its home in the test's directory):
/// on drop, its processes that are left are killed (by pid) and it is deleted with its home.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl TestUser {
    /// `None` (after saying why) where users cannot be made or user namespaces are off.
    fn new(rootfs: &TestRootfs) -> Option<TestUser> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
        if max.trim() == "0" {
            eprintln!("skipped: user namespaces are disabled");
            return None;
        }
        let name = format!(
            "pprl{}x{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        let home = rootfs.scratch().join("home");
        let made = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "-d"])
            .arg(&home)
            .arg(&name)
            .stdout(Stdio::null())
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot make a user with useradd");
            return None;
        }
        let meta = std::fs::metadata(&home).expect("home");
        let user = TestUser {
            name,
            uid: meta.uid(),
            gid: meta.gid(),
            home,
        };
        // The state root the user owns, as $XDG_RUNTIME_DIR/peapod would be, and a copy of
        // the binary it can run.
        let state = rootfs.state_root();
        std::fs::create_dir(&state).expect("state root");
        nix::unistd::chown(&state, Some(user.uid.into()), Some(user.gid.into())).expect("chown");
        let binary = rootfs.scratch().join("peapod");
        std::fs::copy(env!("CARGO_BIN_EXE_peapod"), &binary).expect("copy peapod");
        Some(user)
    }

    /// The pids of this user's processes.
    fn processes(&self) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let uid = e.metadata().ok()?.uid();
                (uid == self.uid).then_some(pid)
            })
            .collect()
    }

    /// Fails when a process of the user is left (zombies waiting for their reaper aside).
    fn assert_no_process(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let live: Vec<String> = self
                .processes()
                .into_iter()
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let state = stat.rsplit_once(") ")?.1.chars().next()?;
                    (state != 'Z').then(|| {
                        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                            .unwrap_or_default();
                        format!("{pid}: {}", cmd.replace('\0', " "))
                    })
                })
                .collect();
            if live.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "processes left: {live:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The fixture: a rootfs, the user, and the pods it made (`pod rm -f` on drop, before the
/// user goes).
struct Rootless {
    pods: Vec<String>,
    user: TestUser,
    rootfs: TestRootfs,
}

impl Rootless {
    fn new() -> Option<Rootless> {
        let rootfs = TestRootfs::new()?;
        let user = TestUser::new(&rootfs)?;
        Some(Rootless {
            pods: Vec::new(),
            user,
            rootfs,
        })
    }

    /// `peapod --root STATE ARGS...` as the user, in its home, finished.
    fn peapod(&self, args: &[&str]) -> Outcome {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self.rootfs.scratch().join("peapod"));
        command
            .arg("--root")
            .arg(self.rootfs.state_root())
            .args(args)
            .uid(self.user.uid)
            .gid(self.user.gid)
            .env("HOME", &self.user.home)
            .env("XDG_DATA_HOME", self.user.home.join("data"))
            .current_dir(&self.user.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(init) = support::pods::static_init() {
            command.env("PEAPOD_INIT", init);
        }
        finish(support::spawn_copied(command))
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
        let left = support::state_entries(&self.rootfs.state_root());
        assert!(left.is_empty(), "state left: {left:?}");
        self.rootfs.assert_nothing_left();
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.pods) {
            let _ = std::panic::catch_unwind(|| self.peapod(&["pod", "rm", "-f", &name]));
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
    let Some(mut t) = Rootless::new() else {
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

/// A free port on the host's loopback (the kernel's pick, let go at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// What `127.0.0.1:port` answers, tried until it answers or the deadline.
fn answer(port: u16) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut text = String::new();
        if let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read_to_string(&mut text);
            if !text.is_empty() {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rootless_pod_published_port_answers_on_the_hosts_loopback() {
    let Some(mut t) = Rootless::new() else {
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
        assert_eq!(answer(port), "hi\n", "{network}");
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

/// The manifest of the README's pod section.
fn readme_manifest() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let start = readme
        .find("cat > pod.yaml <<'EOF'\n")
        .expect("the manifest in README.md");
    let body = &readme[start..];
    let body = &body[body.find('\n').expect("a line") + 1..];
    body[..body.find("\nEOF\n").expect("its end")].to_owned() + "\n"
}

#[test]
fn rootless_pod_play_of_the_readme_manifest() {
    let Some(mut t) = Rootless::new() else {
        return;
    };
    if user_mode_networks().is_empty() {
        return;
    }
    // As the README has it: `target/rootfs` in the working directory, imported as
    // localhost/demo into the user's own image store.
    let target = t.user.home.join("target");
    std::fs::create_dir(&target).expect("target");
    std::os::unix::fs::symlink(&t.rootfs.path, target.join("rootfs")).expect("symlink");
    std::fs::write(t.user.home.join("pod.yaml"), readme_manifest()).expect("pod.yaml");
    t.ok(&["image", "import", "target/rootfs", "localhost/demo:latest"]);
    t.pods.push("hello".to_owned());
    t.ok(&["pod", "play", "pod.yaml"]);
    let deadline = Instant::now() + TIMEOUT;
    let logs = loop {
        let logs = t.ok(&["pod", "logs", "hello"]).stdout;
        if logs.contains("local | hello from a directory")
            && logs.contains("greet | hello from a pod")
        {
            break logs;
        }
        assert!(Instant::now() < deadline, "the pod's logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(logs.lines().count(), 2, "{logs:?}");
    t.ok(&["pod", "play", "--down", "pod.yaml"]);
    t.pods.clear();
    t.ok(&["rmi", "localhost/demo:latest"]);
    t.remove_all_and_check();
}

#[test]
fn rootless_lone_container_publishes_a_port_through_the_user_mode_network() {
    let Some(mut t) = Rootless::new() else {
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
    assert_eq!(answer(port), "hi\n");
    t.ok(&["rm", "-f", "lone"]);
    t.remove_all_and_check();
}

/// A `pod create` killed after its network helper started but before it recorded its pid
/// (its record edited to look so): `pod rm` still finds the helper, through its pid file,
/// and nothing is left.
#[test]
fn rootless_pod_rm_kills_a_helper_whose_pid_was_never_recorded() {
    let Some(mut t) = Rootless::new() else {
        return;
    };
    for network in user_mode_networks() {
        let name = format!("crash-{network}");
        t.create(&name, &["--network", network]);
        let file = t
            .rootfs
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
    let Some(mut t) = Rootless::new() else {
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
