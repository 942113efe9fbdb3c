//! Containers from images: `peapod run IMAGE` merges the image's config with the flags as
//! `docker run` does, every container gets an overlay of the shared layers with a writable
//! layer of its own that goes with it, and `pod play` takes image references as Kubernetes.
//! The images are the busybox test image (`PEAPOD_BUSYBOX_IMAGE`), re-configured with umoci
//! and loaded into each test's own store.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::bundle::set_command;
use support::user::overlay_refused;
use support::{container_pid, facts, finish, wait_until, Outcome, TestRootfs};

/// The name every test gives its image.
const IMAGE: &str = "localhost/test/busybox:1";

/// A test's state root, image store and images; everything under its temporary directory.
struct Images {
    rootfs: TestRootfs,
}

impl Images {
    /// The fixture, with the busybox test image loaded as [`IMAGE`], configured by the umoci
    /// `config` flags given (`--config.cmd=...`); `None` after saying why the test is skipped.
    fn new(config: &[&str]) -> Option<Images> {
        Images::with(config, None::<fn(&Path)>)
    }

    /// [`Images::new`], with `change` run on the image's root (unpacked by umoci) and what it
    /// changed added to the image as a layer of its own, before the configuration.
    fn changed(config: &[&str], change: impl FnOnce(&Path)) -> Option<Images> {
        Images::with(config, Some(change))
    }

    fn with(config: &[&str], change: Option<impl FnOnce(&Path)>) -> Option<Images> {
        let rootfs = TestRootfs::new()?;
        let Some(archive) = std::env::var_os("PEAPOD_BUSYBOX_IMAGE") else {
            eprintln!("skipped: PEAPOD_BUSYBOX_IMAGE is not set (`cargo xtask test` writes it)");
            return None;
        };
        if Command::new("umoci").arg("--version").output().is_err() {
            eprintln!("skipped: umoci is not installed");
            return None;
        }
        let images = Images { rootfs };
        images.load(Path::new(&archive), IMAGE, config, change);
        Some(images)
    }

    fn scratch(&self) -> &Path {
        self.rootfs.scratch()
    }

    fn storage(&self) -> PathBuf {
        self.scratch().join("storage")
    }

    /// `peapod --root STATE` with this test's store.
    fn peapod(&self) -> Command {
        let mut cmd = self.rootfs.peapod();
        cmd.env("PEAPOD_STORAGE", self.storage());
        cmd
    }

    fn out(&self, args: &[&str]) -> Outcome {
        finish(self.peapod().args(args).spawn().expect("spawn peapod"))
    }

    /// Loads the OCI archive `archive` as `name`, its root changed by `change` (see
    /// [`Images::changed`]) and its config by the umoci flags.
    fn load(
        &self,
        archive: &Path,
        name: &str,
        config: &[&str],
        change: Option<impl FnOnce(&Path)>,
    ) {
        let layout = self.layout(name);
        std::fs::create_dir(&layout).expect("layout dir");
        let untar = Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&layout)
            .status()
            .expect("tar");
        assert!(untar.success());
        if let Some(change) = change {
            let image = format!("{}:latest", layout.display());
            let bundle = self.scratch().join("bundle");
            umoci(&["unpack", "--image", &image], &bundle);
            change(&bundle.join("rootfs"));
            umoci(&["repack", "--image", &image], &bundle);
            std::fs::remove_dir_all(&bundle).expect("remove the bundle");
        }
        let tag = "configured";
        let configured = Command::new("umoci")
            .arg("config")
            .arg("--image")
            .arg(format!("{}:latest", layout.display()))
            .args(["--tag", tag])
            .args(config)
            .output()
            .expect("umoci");
        assert!(
            configured.status.success(),
            "umoci config: {}",
            String::from_utf8_lossy(&configured.stderr)
        );
        load_layout(&self.storage(), &layout, tag, name);
    }

    /// The OCI layout the image `name` was loaded from: its tag `configured` is the image.
    fn layout(&self, name: &str) -> PathBuf {
        self.scratch()
            .join(format!("layout-{}", name.replace(['/', ':'], "_")))
    }

    /// `peapod run ARGS...`, finished.
    fn run(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["run"];
        all.extend(args);
        self.out(&all)
    }

    /// `peapod run --detach ARGS...`: its output to files (the container keeps what it
    /// inherits, so a pipe would stay open as long as it runs).
    fn run_detached(&self, args: &[&str]) -> Outcome {
        let out = self.scratch().join("detached.out");
        let err = self.scratch().join("detached.err");
        let status = self
            .peapod()
            .args(["run", "--detach"])
            .args(args)
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .status()
            .expect("peapod run --detach");
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        }
    }

    /// The container directories of the store (writable layers).
    fn container_layers(&self) -> Vec<String> {
        std::fs::read_dir(self.storage().join("containers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The unpacked layer directories of the store.
    fn layer_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.storage().join("layers/sha256"))
            .expect("layers")
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    fn assert_nothing_left(&self) {
        self.rootfs.assert_nothing_left();
        assert_eq!(
            self.container_layers(),
            Vec::<String>::new(),
            "writable layers left"
        );
    }
}

/// `umoci ARGS... BUNDLE`, which must succeed.
fn umoci(args: &[&str], bundle: &Path) {
    let out = Command::new("umoci")
        .args(args)
        .arg(bundle)
        .output()
        .expect("umoci");
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Loads the image tagged `tag` in the OCI layout `layout` into the store at `storage` as
/// `name`: its blobs stored, then the image added (its layers unpacked), as `image load`
/// does, through the store's library.
fn load_layout(storage: &Path, layout: &Path, tag: &str, name: &str) {
    let store = peapod_image::Store::open(storage).expect("store");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let manifest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("the tagged manifest");
    for blob in std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
    {
        store
            .put_blob(&std::fs::read(blob.path()).expect("blob"))
            .expect("put blob");
    }
    let digest = manifest["digest"].as_str().expect("digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..]))
        .expect("manifest");
    let reference: peapod_image::Reference = name.parse().expect("reference");
    let media_type = manifest["mediaType"].as_str().expect("media type");
    store
        .add_image(Some(&reference), media_type, &bytes)
        .expect("add image");
}

/// Deletes the test's containers (`delete --force`) on drop, and kills the processes it
/// started, so a failing test leaves nothing running.
struct Cleanup<'a> {
    images: &'a Images,
    ids: Vec<&'a str>,
    pids: Vec<i32>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(*pid), None);
        }
        for id in &self.ids {
            let _ = self.images.out(&["delete", "--force", id]);
        }
    }
}

const SHOW: &str =
    "echo args=$0,$1; echo a=$A; echo b=$B; echo cwd=$(pwd); echo uid=$(id -u); echo gid=$(id -g)";

fn configured() -> Option<Images> {
    Images::new(&[
        "--config.entrypoint=/bin/sh",
        "--config.entrypoint=-c",
        &format!("--config.cmd={SHOW}"),
        "--config.cmd=first",
        "--config.env=A=image",
        "--config.env=B=image",
        "--config.workingdir=/tmp",
        "--config.user=1000:1000",
        "--config.stopsignal=SIGUSR1",
    ])
}

#[test]
fn run_of_an_image_uses_its_entrypoint_cmd_env_workdir_and_user() {
    let Some(images) = configured() else { return };
    let out = images.run(&["--pull", "never", IMAGE]);
    assert_eq!(out.code, 0, "{out:?}");
    let f = facts(&out.stdout);
    assert_eq!(f["args"], "first,", "{out:?}");
    assert_eq!(f["a"], "image");
    assert_eq!(f["cwd"], "/tmp");
    assert_eq!(f["uid"], "1000");
    assert_eq!(f["gid"], "1000");
    images.assert_nothing_left();
}

#[test]
fn run_flags_override_the_images_cmd_entrypoint_env_workdir_and_user() {
    let Some(images) = configured() else { return };
    // CMD replaces Cmd (the Entrypoint stays); -e over Env; -w; --user.
    let out = images.run(&[
        "-e",
        "B=mine",
        "-w",
        "/",
        "--user",
        "0:0",
        IMAGE,
        "echo args=$0; echo a=$A; echo b=$B; echo cwd=$(pwd); echo uid=$(id -u)",
        "given",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let f = facts(&out.stdout);
    assert_eq!(f["args"], "given");
    assert_eq!((f["a"].as_str(), f["b"].as_str()), ("image", "mine"));
    assert_eq!((f["cwd"].as_str(), f["uid"].as_str()), ("/", "0"));
    // --entrypoint replaces the Entrypoint and drops the image's Cmd.
    let out = images.run(&["--entrypoint", "/bin/echo", IMAGE]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "\n"), "{out:?}");
    let out = images.run(&["--entrypoint", "/bin/echo", IMAGE, "hello", "-n"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hello -n\n"),
        "{out:?}"
    );
    images.assert_nothing_left();
}

#[test]
fn kill_without_a_signal_sends_the_images_stop_signal() {
    let Some(images) = configured() else { return };
    let _cleanup = Cleanup {
        images: &images,
        ids: vec!["stopper"],
        pids: vec![],
    };
    let script = "trap 'echo got-usr1 > /tmp/stopped; exit 7' USR1; while :; do sleep 0.05; done";
    let out = images.run_detached(&["--name", "stopper", "--user", "0", IMAGE, script]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = images.out(&["kill", "stopper"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the container stops on its StopSignal", || {
        images
            .out(&["state", "stopper"])
            .stdout
            .contains("\"stopped\"")
    });
    let out = images.out(&["delete", "stopper"]);
    assert_eq!(out.code, 0, "{out:?}");
    images.assert_nothing_left();
}

#[test]
fn a_file_written_in_one_container_is_seen_by_neither_the_next_nor_the_layers() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let out = images.run(&[
        IMAGE,
        "-c",
        "echo secret > /bin/written && cat /bin/written",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "secret\n"), "{out:?}");
    let out = images.run(&[IMAGE, "-c", "test ! -e /bin/written"]);
    assert_eq!(out.code, 0, "the next container saw the file: {out:?}");
    for layer in images.layer_dirs() {
        assert!(
            !layer.join("bin/written").exists(),
            "written into {}",
            layer.display()
        );
    }
    images.assert_nothing_left();
}

#[test]
fn read_only_image_container_cannot_write() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let out = images.run(&[
        "--read-only",
        IMAGE,
        "-c",
        "touch /x 2>&1; echo rc=$?; awk '$5 == \"/\"' /proc/self/mountinfo",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Read-only file system"), "{out:?}");
    assert!(!out.stdout.contains("rc=0"), "{out:?}");
    // A writable layer below, as podman's (for the mount points), but `/` itself read-only.
    assert!(out.stdout.contains(" / / ro,"), "{out:?}");
    images.assert_nothing_left();
}

#[test]
fn the_writable_layer_goes_with_delete_and_with_a_killed_foreground_run() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let mut cleanup = Cleanup {
        images: &images,
        ids: vec!["kept", "killed"],
        pids: vec![],
    };
    let out = images.run_detached(&["--name", "kept", IMAGE, "-c", "echo x > /x; sleep 60"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(images.container_layers(), ["kept"]);
    let out = images.out(&["delete", "--force", "kept"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(images.container_layers(), Vec::<String>::new());

    // A foreground run killed with SIGKILL: the next command reaps its writable layer.
    let mut child = images
        .peapod()
        .args([
            "run",
            "--name",
            "killed",
            "-v",
            "/vol",
            IMAGE,
            "-c",
            "echo x > /x; echo up; sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    cleanup.pids.push(child.id() as i32);
    let pid = container_pid(child.id());
    wait_until("the entrypoint", || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            // sh execs its last command itself.
            .is_ok_and(|c| c.starts_with("/bin/sh") || c.starts_with("sleep"))
    });
    assert_eq!(images.container_layers(), ["killed"]);
    // Its anonymous volume is with its writable layer, and goes with it.
    assert!(images
        .storage()
        .join("containers/killed/volumes/0")
        .is_dir());
    child.kill().expect("kill");
    child.wait().expect("wait");
    cleanup.pids.clear();
    // PR_SET_PDEATHSIG: the container dies with its `peapod run`.
    wait_until("the container to die with peapod run", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    let out = images.out(&["list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        images.container_layers(),
        Vec::<String>::new(),
        "not reaped: {out:?}"
    );
    images.assert_nothing_left();
}

/// A foreground run that outlives the hand-off is waited for by `peapod-init --watch`, and the
/// `peapod finish` it execs at the end removes the writable layer as `delete` does.
#[test]
fn a_long_foreground_run_of_an_image_ends_without_its_writable_layer() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let mut cleanup = Cleanup {
        images: &images,
        ids: vec!["long"],
        pids: vec![],
    };
    let script = "trap 'exit 7' TERM; echo x > /x; echo ready; i=0; \
                  while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done";
    let mut child = images
        .peapod()
        .args(["run", "--name", "long", IMAGE, "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    cleanup.pids.push(pid as i32);
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    std::io::BufRead::read_line(&mut reader, &mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    wait_until("peapod-init --watch to take over", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.starts_with(b"peapod-init\0--watch\0"))
    });
    assert_eq!(images.container_layers(), ["long"]);
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("kill");
    let out = finish(child);
    cleanup.pids.clear();
    assert_eq!(out.code, 7, "{out:?}");
    images.assert_nothing_left();
}

#[test]
fn two_containers_of_one_image_share_its_layer_directories() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let _cleanup = Cleanup {
        images: &images,
        ids: vec!["one", "two"],
        pids: vec![],
    };
    let mut lowers = Vec::new();
    for id in ["one", "two"] {
        let out = images.run_detached(&["--name", id, IMAGE, "-c", "sleep 60"]);
        assert_eq!(out.code, 0, "{out:?}");
        let state: serde_json::Value =
            serde_json::from_str(&images.out(&["state", id]).stdout).expect("state");
        let pid = state["pid"].as_i64().expect("pid");
        let mountinfo =
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        let root = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .expect("a root mount")
            .to_owned();
        assert!(root.contains(" - overlay "), "{root}");
        let lower = root
            .split("lowerdir=")
            .nth(1)
            .expect("lowerdir")
            .split(',')
            .next()
            .expect("lower")
            .to_owned();
        let upper = root
            .split("upperdir=")
            .nth(1)
            .expect("upperdir")
            .split(',')
            .next()
            .expect("upper")
            .to_owned();
        assert!(upper.contains(id), "{upper}");
        lowers.push(lower);
    }
    assert_eq!(lowers[0], lowers[1]);
    assert!(
        lowers[0].starts_with(images.storage().join("layers").to_str().expect("utf-8")),
        "{}",
        lowers[0]
    );
    // Not on the host: the overlay is the containers' own.
    let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !host.contains(&lowers[0]),
        "the overlay is visible on the host"
    );
}

#[test]
fn run_tells_a_bundle_from_an_image_by_one_rule() {
    let Some(images) = Images::new(&["--config.cmd=-c", "--config.cmd=echo from-the-image"]) else {
        return;
    };
    // A directory with a config.json and one argument: runc's `run ID` of the bundle there.
    let bundle = images.rootfs.spec_bundle("bundle", |spec| {
        set_command(spec, &["/bin/echo", "from-the-bundle"]);
    });
    let in_bundle = |args: &[&str]| {
        finish(
            images
                .peapod()
                .arg("run")
                .args(args)
                .current_dir(&bundle)
                .spawn()
                .expect("spawn"),
        )
    };
    let out = in_bundle(&["bundled"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "from-the-bundle\n"),
        "{out:?}"
    );
    // With a command, or a flag only images take, the argument is an image.
    let out = in_bundle(&[IMAGE, "-c", "echo from-the-image"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "from-the-image\n"),
        "{out:?}"
    );
    let out = in_bundle(&["--pull", "never", IMAGE]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "from-the-image\n"),
        "{out:?}"
    );
    // Elsewhere, one argument is an image.
    let out = images.run(&[IMAGE]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "from-the-image\n"),
        "{out:?}"
    );
    images.assert_nothing_left();
}

#[test]
fn run_of_a_missing_image_with_pull_never_names_it_and_leaves_nothing() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let out = images.run(&["--pull", "never", "localhost/test/nothere:1", "/bin/true"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("localhost/test/nothere:1"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    images.assert_nothing_left();
}

/// `pod play` of `manifest` (written to the scratch directory), with the static init, on
/// no network: the default one would make a bridge and leases on the host.
fn play(images: &Images, manifest: &str, down: bool) -> Outcome {
    let file = images.scratch().join("pod.yaml");
    std::fs::write(&file, manifest).expect("manifest");
    let init = std::env::var("PEAPOD_INIT_BIN").unwrap_or_default();
    let mut args = vec![
        "pod",
        "play",
        "--init-path",
        init.as_str(),
        "--network",
        "none",
        file.to_str().expect("utf-8"),
    ];
    if down {
        args = vec!["pod", "play", "--down", file.to_str().expect("utf-8")];
    }
    images.out(&args)
}

/// Removes pod `name` on drop.
struct PodGuard<'a>(&'a Images, &'a str);

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.out(&["pod", "rm", "--force", self.1]);
    }
}

#[test]
fn pod_play_runs_image_references_with_command_and_args_as_kubernetes() {
    let Some(images) = configured() else { return };
    if support::pods::static_init().is_none() {
        return;
    }
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: imgpod}}
spec:
  restartPolicy: Never
  containers:
  - name: plain
    image: {IMAGE}
    imagePullPolicy: Never
  - name: args
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    args: ['echo args=$0; echo a=$A', given]
    env: [{{name: A, value: pod}}]
  - name: command
    image: {IMAGE}
    imagePullPolicy: Never
    command: [/bin/echo, cmd=replaced]
    workingDir: /
  - name: local
    image: {}
    command: [/bin/echo, local=dir]
",
        images.rootfs.arg()
    );
    let _guard = PodGuard(&images, "imgpod");
    let out = play(&images, &manifest, false);
    assert_eq!(out.code, 0, "{out:?}");
    let logs = || images.out(&["pod", "logs", "imgpod"]).stdout;
    wait_until("every container has written", || {
        let l = logs();
        [
            "plain | gid=",
            "args | a=",
            "command | cmd=",
            "local | local=",
        ]
        .iter()
        .all(|s| l.contains(s))
    });
    let logs = logs();
    for line in [
        "plain | args=first,",
        "plain | a=image",
        "plain | cwd=/tmp",
        "plain | uid=1000",
        "args | args=given",
        "args | a=pod",
        "command | cmd=replaced",
        "local | local=dir",
    ] {
        assert!(logs.lines().any(|l| l == line), "no {line:?} in {logs}");
    }
    assert_eq!(
        images.container_layers().len(),
        3,
        "{:?}",
        images.container_layers()
    );
    let out = play(&images, &manifest, true);
    assert_eq!(out.code, 0, "{out:?}");
    images.assert_nothing_left();
}

#[test]
fn pod_play_with_a_read_only_root_mounts_a_volume_at_a_path_the_image_lacks() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    if support::pods::static_init().is_none() {
        return;
    }
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: ropod}}
spec:
  restartPolicy: Never
  containers:
  - name: ro
    image: {IMAGE}
    imagePullPolicy: Never
    args: [-c, 'echo kept > /newdir/f && cat /newdir/f; touch /x 2>&1; true']
    securityContext: {{readOnlyRootFilesystem: true}}
    volumeMounts: [{{name: scratch, mountPath: /newdir}}]
  volumes: [{{name: scratch, emptyDir: {{}}}}]
"
    );
    let _guard = PodGuard(&images, "ropod");
    let out = play(&images, &manifest, false);
    assert_eq!(out.code, 0, "{out:?}");
    let logs = || images.out(&["pod", "logs", "ropod"]).stdout;
    wait_until("the container has written", || logs().contains("touch"));
    let logs = logs();
    assert!(logs.contains("ro | kept\n"), "{logs}");
    assert!(
        logs.contains("ro | touch: /x: Read-only file system\n"),
        "{logs}"
    );
    let out = play(&images, &manifest, true);
    assert_eq!(out.code, 0, "{out:?}");
    images.assert_nothing_left();
}

#[test]
fn pod_play_with_pull_policy_never_and_a_missing_image_names_it_and_leaves_nothing() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    if support::pods::static_init().is_none() {
        return;
    }
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: nopod}}
spec:
  containers:
  - name: there
    image: {IMAGE}
    imagePullPolicy: Never
  - name: missing
    image: localhost/test/nothere:2
    imagePullPolicy: Never
"
    );
    let _guard = PodGuard(&images, "nopod");
    let out = play(&images, &manifest, false);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("localhost/test/nothere:2"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    let pods = images.out(&["pod", "ps", "nopod"]);
    assert_ne!(pods.code, 0, "the pod was made: {pods:?}");
    images.assert_nothing_left();
}

#[test]
fn rootless_image_container_runs_on_an_unprivileged_overlay() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        eprintln!("skipped: user namespaces are disabled");
        return;
    }
    // As nobody: a copy of peapod it can reach, a state root and a store of its own.
    let nobody = support::NOBODY;
    let binary = images.scratch().join("peapod");
    std::fs::copy(env!("CARGO_BIN_EXE_peapod"), &binary).expect("copy peapod");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = images.scratch().join("nobody");
    for dir in [home.clone(), home.join("state"), home.join("storage")] {
        std::fs::create_dir(&dir).expect("mkdir");
        nix::unistd::chown(&dir, Some(nobody.into()), Some(nobody.into())).expect("chown");
    }
    let as_nobody = |args: &[&str]| {
        let mut child = Command::new(&binary);
        child
            .arg("--root")
            .arg(home.join("state"))
            .args(args)
            .env("PEAPOD_STORAGE", home.join("storage"))
            .uid(nobody)
            .gid(nobody)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        finish(support::spawn_copied(child))
    };
    let layout = std::fs::read_dir(images.scratch())
        .expect("scratch")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("layout-"))
        })
        .expect("the layout");
    // umoci writes its files for their owner only.
    let readable = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&layout)
        .status()
        .expect("chmod");
    assert!(readable.success());
    // Loaded as nobody (so unpacked as a rootless store is), by this test binary itself:
    // see `load_as_the_caller`.
    let test_binary = images.scratch().join("images-test");
    std::fs::copy(std::env::current_exe().expect("test binary"), &test_binary).expect("copy");
    let mut load = Command::new(&test_binary);
    load.args(["--ignored", "--exact", "load_as_the_caller", "--nocapture"])
        .env(
            "PEAPOD_TEST_LOAD",
            format!("{}\n{}", home.join("storage").display(), layout.display()),
        )
        .uid(nobody)
        .gid(nobody)
        .current_dir(&home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let loaded = finish(support::spawn_copied(load));
    assert!(
        loaded.code == 0,
        "rootless load: {}",
        loaded.stdout + &loaded.stderr
    );
    // With an anonymous volume too, filled from the image in the user namespace.
    let out = as_nobody(&[
        "run",
        "--user",
        "0",
        "-v",
        "/etc",
        IMAGE,
        "-c",
        "echo mine > /bin/x && cat /bin/x && awk '$5 == \"/\"' /proc/self/mountinfo \
         && grep -c '^root:' /etc/passwd && echo mine > /etc/x",
    ]);
    if overlay_refused(&out) {
        return;
    }
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("mine\n"), "{out:?}");
    assert!(out.stdout.contains("userxattr"), "{out:?}");
    // The volume had the image's /etc/passwd, with one root line.
    assert!(out.stdout.ends_with("\n1\n"), "{out:?}");
    let left = std::fs::read_dir(home.join("storage/containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "the rootless writable layer is left");
    assert!(support::state_entries(&home.join("state")).is_empty());
}

/// Not a test of its own: the rootless test runs it as another user, to load an image into
/// that user's store (`PEAPOD_TEST_LOAD` = the store, a newline, the OCI layout).
#[test]
#[ignore = "a helper the rootless test runs as another user"]
fn load_as_the_caller() {
    let Ok(what) = std::env::var("PEAPOD_TEST_LOAD") else {
        return;
    };
    let (storage, layout) = what.split_once('\n').expect("store and layout");
    load_layout(Path::new(storage), Path::new(layout), "configured", IMAGE);
}

#[test]
fn an_images_missing_workdir_is_made() {
    let Some(images) = Images::new(&[
        // The test image's Entrypoint is /bin/sh.
        "--config.cmd=-c",
        "--config.cmd=pwd",
        "--config.workingdir=/srv/app",
    ]) else {
        return;
    };
    let out = images.run(&["--pull", "never", IMAGE]);
    assert_eq!(out.code, 0, "{out:?}");
    // The layers have no /srv/app: made, as Docker makes it.
    assert_eq!(out.stdout, "/srv/app\n", "{out:?}");
    images.assert_nothing_left();
}

/// podman beside peapod on a test's image (its OCI layout): a store (vfs, so it makes no
/// mounts), run root and configuration of its own in the test's directory, and runc as its
/// runtime (crun refuses a hybrid cgroup host).
struct Podman {
    dir: PathBuf,
    image: String,
}

impl Podman {
    /// podman for `images`' [`IMAGE`], or `None` after saying why it cannot run here.
    fn new(images: &Images) -> Option<Podman> {
        for tool in ["podman", "runc"] {
            let found = Command::new(tool).arg("--version").output();
            if !found.is_ok_and(|o| o.status.success()) {
                eprintln!("podman's side skipped: {tool} is not installed");
                return None;
            }
        }
        // podman names an `oci:` image after its path, which must then be lowercase: a
        // directory of this test's own, removed on drop, rather than the random tempdir.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("peapod-podman-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).expect("podman dir");
        let podman = Podman {
            image: format!("oci:{}:configured", dir.join("image").display()),
            dir,
        };
        let copied = Command::new("cp")
            .arg("-a")
            .arg(images.layout(IMAGE))
            .arg(podman.dir.join("image"))
            .status()
            .expect("cp");
        assert!(copied.success(), "copying the layout for podman");
        // Root here has no CAP_SYS_RESOURCE: podman's default RLIMIT_NOFILE would fail.
        std::fs::write(
            podman.dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .expect("containers.conf");
        let probe = podman.run(&[], &["-c", "true"]);
        if probe.code != 0 {
            eprintln!("podman's side skipped: podman cannot run a container here: {probe:?}");
            return None;
        }
        Some(podman)
    }

    /// `podman ARGS...` with this test's store.
    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `podman run --rm --network none FLAGS... IMAGE ARGS...`, finished.
    fn run(&self, flags: &[&str], args: &[&str]) -> Outcome {
        let mut cmd = self.command();
        cmd.args(["run", "--rm", "--network", "none"])
            .args(flags)
            .arg(&self.image)
            .args(args);
        finish(cmd.spawn().expect("spawn podman"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `peapod run --pull never FLAGS... IMAGE ARGS...` of `images`, and the same with podman
/// where it can run: each must succeed with the same output, which is returned.
fn beside_podman(images: &Images, flags: &[&str], args: &[&str]) -> String {
    let mut all = vec!["--pull", "never"];
    all.extend(flags);
    all.push(IMAGE);
    all.extend(args);
    let out = images.run(&all);
    assert_eq!(out.code, 0, "{out:?}");
    if let Some(podman) = Podman::new(images) {
        let theirs = podman.run(flags, args);
        assert_eq!(theirs.code, 0, "podman: {theirs:?}");
        assert_eq!(out.stdout, theirs.stdout, "peapod, then podman");
    }
    out.stdout
}

#[test]
fn read_only_with_a_volume_at_a_path_the_image_lacks_makes_the_mount_point() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let data = images.scratch().join("data");
    std::fs::create_dir(&data).expect("data");
    let volume = format!("{}:/newdir", data.display());
    // /newdir is in no layer: its mount point is made in the writable layer, before the root
    // is made read-only.
    let script = "echo written > /newdir/file && cat /newdir/file; touch /x 2>&1; \
                  awk '$5 == \"/\" {print substr($6, 1, 3)}' /proc/self/mountinfo";
    let out = beside_podman(&images, &["--read-only", "-v", &volume], &["-c", script]);
    assert_eq!(
        out, "written\ntouch: /x: Read-only file system\nro,\n",
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("file")).expect("file"),
        "written\n"
    );
    images.assert_nothing_left();
}

/// What the container sees of its volumes /data, /cache and /extra.
const SHOW_VOLUMES: &str = "for v in /data /cache /extra; do \
    grep -q \" $v \" /proc/self/mountinfo && echo \"$v mounted\"; done; \
    stat -c '%n %u:%g %a' /data /data/seed /cache; cat /data/seed; readlink /data/link; \
    ls -A /cache | wc -l";

/// The image with `VOLUME /data /cache`: /data the image's, 1000:1000 0750, with a file and
/// a link in it; /cache in no layer.
fn image_with_volumes() -> Option<Images> {
    use std::os::unix::fs::PermissionsExt as _;
    Images::changed(
        &["--config.volume=/data", "--config.volume=/cache"],
        |root| {
            let data = root.join("data");
            std::fs::create_dir(&data).expect("data");
            std::fs::write(data.join("seed"), "from the image\n").expect("seed");
            std::os::unix::fs::symlink("/etc/passwd", data.join("link")).expect("link");
            for (path, mode) in [(data.join("seed"), 0o640), (data.clone(), 0o750)] {
                std::os::unix::fs::chown(&path, Some(1000), Some(1000)).expect("chown");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
            }
        },
    )
}

#[test]
fn an_images_volumes_are_anonymous_volumes_filled_from_the_image_as_podman_fills_them() {
    let Some(images) = image_with_volumes() else {
        return;
    };
    let out = beside_podman(&images, &["-v", "/extra"], &["-c", SHOW_VOLUMES]);
    assert_eq!(
        out,
        "/data mounted\n/cache mounted\n/extra mounted\n\
         /data 1000:1000 750\n/data/seed 1000:1000 640\n/cache 0:0 755\n\
         from the image\n/etc/passwd\n0\n",
        "{out:?}"
    );
    // A host path given at one of the paths is mounted there instead.
    let host = images.scratch().join("host");
    std::fs::create_dir(&host).expect("host dir");
    let volume = format!("{}:/data", host.display());
    let out = images.run(&[
        "--pull",
        "never",
        "-v",
        &volume,
        IMAGE,
        "-c",
        "ls -A /data; touch /data/mine",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert!(host.join("mine").exists());
    images.assert_nothing_left();
}

#[test]
fn anonymous_volumes_are_private_to_their_container_and_go_with_rm() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let Some(images) = image_with_volumes() else {
        return;
    };
    let _cleanup = Cleanup {
        images: &images,
        ids: vec!["vols"],
        pids: vec![],
    };
    let script = "echo mine > /data/written; sleep 60";
    let out = images.run_detached(&["--name", "vols", "-v", "/extra", IMAGE, "-c", script]);
    assert_eq!(out.code, 0, "{out:?}");
    let volumes = images.storage().join("containers/vols/volumes");
    // The image's in the order of their paths (/cache, /data), then the flags'.
    wait_until("the container's write", || {
        volumes.join("1/written").exists()
    });
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777;
    assert_eq!(mode(&volumes), 0o700, "the volumes' directory is private");
    let data = std::fs::metadata(volumes.join("1")).expect("data volume");
    assert_eq!(
        (data.uid(), data.gid(), mode(&volumes.join("1"))),
        (1000, 1000, 0o750)
    );
    let entries = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(entries(&volumes), ["0", "1", "2"]);
    assert_eq!(entries(&volumes.join("1")), ["link", "seed", "written"]);
    // The link is copied as a link, never followed out of the volume.
    assert_eq!(
        std::fs::read_link(volumes.join("1/link")).expect("link"),
        Path::new("/etc/passwd")
    );
    // `inspect` lists them as docker does: of type volume.
    let out = images.out(&["inspect", "vols"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    let mounts = json[0]["Mounts"].as_array().expect("Mounts").clone();
    let volume_of = |at: &str| {
        let m = mounts.iter().find(|m| m["Destination"] == at);
        m.map(|m| (m["Type"].clone(), m["Source"].clone()))
    };
    let source = volumes.join("1").display().to_string();
    assert_eq!(
        volume_of("/data"),
        Some((serde_json::json!("volume"), serde_json::json!(source))),
        "{mounts:?}"
    );
    // Another container of the image gets volumes of its own, filled from the image.
    let out = images.run(&["--pull", "never", IMAGE, "-c", "ls /data"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "link\nseed\n"),
        "{out:?}"
    );
    let out = images.out(&["rm", "-f", "vols"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!volumes.exists(), "the volumes outlived rm");
    images.assert_nothing_left();
}

#[test]
fn a_volume_path_through_a_link_stays_in_the_root_and_kernel_paths_are_refused() {
    // A directory of the host that the image's links name.
    let host_dir = tempfile::Builder::new()
        .prefix("peapod-host-")
        .tempdir()
        .expect("tempdir");
    let host = host_dir.path().to_owned();
    std::fs::write(host.join("secret"), "the host's\n").expect("secret");
    let relative = Path::new("../../../../../../../..").join(host.strip_prefix("/").expect("abs"));
    let Some(images) =
        Images::changed(&["--config.volume=/abs", "--config.volume=/rel/"], |root| {
            std::os::unix::fs::symlink(&host, root.join("abs")).expect("link");
            std::os::unix::fs::symlink(&relative, root.join("rel")).expect("link");
        })
    else {
        return;
    };
    let script = "ls -A /abs/ /rel/; echo x > /abs/new; echo y > /rel/new";
    let out = images.run(&["--pull", "never", IMAGE, "-c", script]);
    assert_eq!(out.code, 0, "{out:?}");
    // Both resolve inside the root (to its own `host-secrets`): nothing of the host's is
    // copied in, and nothing written reaches it.
    assert!(!out.stdout.contains("secret"), "{out:?}");
    let mut names: Vec<_> = std::fs::read_dir(&host)
        .expect("host dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"]);
    images.assert_nothing_left();
}

#[test]
fn an_image_volume_in_the_kernels_directories_is_refused_in_one_line() {
    for volume in ["/proc/sys", "/dev", "relative"] {
        let Some(images) = Images::new(&[&format!("--config.volume={volume}")]) else {
            return;
        };
        let out = images.run(&["--pull", "never", IMAGE, "-c", "true"]);
        assert_eq!(out.code, 125, "{volume}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{volume}: {out:?}");
        assert!(out.stderr.contains("VOLUME"), "{volume}: {out:?}");
        images.assert_nothing_left();
    }
}

#[test]
fn an_image_user_by_name_gets_its_supplementary_groups_from_etc_group() {
    let Some(images) = Images::changed(&["--config.user=app"], |root| {
        use std::io::Write as _;
        let append = |file: &str, text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(root.join(file))
                .expect(file);
            f.write_all(text.as_bytes()).expect(file);
        };
        append("etc/passwd", "app:x:1234:1234::/home/app:/bin/sh\n");
        append(
            "etc/group",
            "app:x:1234:\naudio:x:63:app\nvideo:x:44:other,app\nstaff:x:50:other\n",
        );
    }) else {
        return;
    };
    let script = "id -u; id -g; id -G | tr ' ' '\\n' | sort -n | tr '\\n' ' '";
    let out = beside_podman(&images, &[], &["-c", script]);
    assert_eq!(out, "1234\n1234\n44 63 1234 ", "{out:?}");
    images.assert_nothing_left();
}

/// `TOOL ARGS...`, which must succeed; `None` after saying why where TOOL is missing.
fn tool(name: &str, args: &[&str]) -> Option<()> {
    let out = match Command::new(name).args(args).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: {name} cannot run ({e})");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} {args:?}: {stderr}");
    Some(())
}

/// The names of a `Loaded image: NAME` output, in order.
fn loaded(out: &Outcome) -> Vec<String> {
    assert_eq!(out.code, 0, "{out:?}");
    let names = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Loaded image: "));
    names.map(str::to_owned).collect()
}

#[test]
fn image_load_names_skopeo_and_umoci_layouts_as_podman_does() {
    let Some(images) = Images::new(&[]) else {
        return;
    };
    let source = format!("oci:{}:configured", images.layout(IMAGE).display());
    let podman = Podman::new(&images);
    // skopeo writes the reference given after the layout's path as the ref.name, a tag
    // alone or a whole reference; umoci a tag.
    let cases = [
        ("latest", "localhost/latest:latest"),
        ("app:2", "localhost/app:2"),
        ("docker.io/acme/app:2", "docker.io/acme/app:2"),
        ("v3 (umoci)", "localhost/v3:latest"),
    ];
    for (n, (ref_name, expected)) in cases.iter().enumerate() {
        let layout = images.scratch().join(format!("made-{n}"));
        let layout_arg = layout.to_str().expect("utf-8");
        if let Some(tag) = ref_name.strip_suffix(" (umoci)") {
            let Some(()) = tool(
                "skopeo",
                &["copy", "-q", &source, &format!("oci:{layout_arg}:base")],
            ) else {
                return;
            };
            let Some(()) = tool(
                "umoci",
                &["tag", "--image", &format!("{layout_arg}:base"), tag],
            ) else {
                return;
            };
            tool("umoci", &["rm", "--image", &format!("{layout_arg}:base")]);
        } else {
            let target = format!("oci:{layout_arg}:{ref_name}");
            let Some(()) = tool("skopeo", &["copy", "-q", &source, &target]) else {
                return;
            };
        }
        let archive = images.scratch().join(format!("made-{n}.tar"));
        let archive_arg = archive.to_str().expect("utf-8");
        tool("tar", &["-C", layout_arg, "-cf", archive_arg, "."]);
        let ours = loaded(&images.out(&["image", "load", archive_arg]));
        assert_eq!(ours, [*expected], "{ref_name}");
        let listed = images.out(&["images"]);
        let repository = expected.rsplit_once(':').map_or(*expected, |(r, _)| r);
        assert!(listed.stdout.contains(repository), "{ref_name}: {listed:?}");
        if let Some(podman) = &podman {
            let mut load = podman.command();
            load.args(["load", "-i", archive_arg]);
            let theirs = loaded(&finish(load.spawn().expect("podman load")));
            assert_eq!(ours, theirs, "{ref_name}: peapod, then podman");
        }
    }
    images.assert_nothing_left();
}

#[test]
fn pod_play_checks_run_as_non_root_against_the_images_user_as_the_kubelet() {
    let Some(images) = Images::new(&["--config.user=app"]) else {
        return;
    };
    if support::pods::static_init().is_none() {
        return;
    }
    images.load(
        Path::new(&std::env::var_os("PEAPOD_BUSYBOX_IMAGE").expect("checked by Images::new")),
        "localhost/test/numeric:1",
        &["--config.user=1000:1000"],
        None::<fn(&Path)>,
    );
    let manifest = |image: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: nonroot}}
spec:
  restartPolicy: Never
  securityContext: {{runAsNonRoot: true}}
  containers:
  - name: app
    image: {image}
    imagePullPolicy: Never
    command: [/bin/sh, -c, 'echo uid=$(id -u)']
"
        )
    };
    let _guard = PodGuard(&images, "nonroot");
    // A user named, not numbered: the kubelet cannot tell it is not root, and refuses.
    let out = play(&images, &manifest(IMAGE), false);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: \"nonroot\", container: app)"
        ),
        "{out:?}"
    );
    images.assert_nothing_left();
    // A numeric uid other than 0 runs.
    let out = play(&images, &manifest("localhost/test/numeric:1"), false);
    assert_eq!(out.code, 0, "{out:?}");
    wait_until("the container's output", || {
        images
            .out(&["pod", "logs", "nonroot"])
            .stdout
            .contains("uid=1000")
    });
    let out = play(&images, &manifest("localhost/test/numeric:1"), true);
    assert_eq!(out.code, 0, "{out:?}");
    images.assert_nothing_left();
}
