//! The logs of a pod's containers: the CRI log of runtime's `logfile.rs`, written by a copier
//! process per container, rotated at the kubelet's limits (or `--log-opt`), read back as the
//! bytes the container wrote (`pod logs -c -f --tail`, `peapod logs ID`), and removed with
//! the container.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use support::kill::KillPid;
use support::pods::Pods;
use support::{finish, wait_until};

/// Writes `manifest` (with `ROOTFS` replaced by the test rootfs) and plays it as pod `name`.
fn play(pods: &mut Pods, name: &str, manifest: &str, extra: &[&str]) {
    let file = pods.rootfs.scratch().join(format!("{name}.yaml"));
    std::fs::write(&file, manifest.replace("ROOTFS", pods.rootfs.arg())).expect("manifest");
    let mut args = vec!["--network", "none"];
    args.extend(extra);
    let out = pods.play(name, &file, &args);
    assert_eq!(out.code, 0, "{out:?}");
}

/// What `peapod ARGS...` writes to stdout, as bytes (the `Outcome` of `finish` is text).
fn stdout_bytes(pods: &Pods, args: &[&str]) -> Vec<u8> {
    let file = pods.rootfs.scratch().join("stdout");
    let mut cmd = pods.rootfs.peapod();
    cmd.args(args)
        .stdout(std::fs::File::create(&file).expect("stdout file"));
    let out = finish(cmd.spawn().expect("spawn peapod"));
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    std::fs::read(&file).expect("read stdout")
}

/// Whether container `name` of pod `pod` has exited.
fn exited(pods: &Pods, pod: &str, name: &str) -> bool {
    let ps = pods.ps_json(pod);
    ps["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c["status"] == "stopped")
}

/// The log files of container `id` and their total size.
fn log_files(state: &Path, id: &str) -> (Vec<PathBuf>, u64) {
    let files: Vec<PathBuf> = std::fs::read_dir(state.join(id))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    name == "container.log"
                        || name
                            .strip_prefix("container.log.")
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .collect()
        })
        .unwrap_or_default();
    let total = files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    (files, total)
}

const FLOOD: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: flood}
spec:
  restartPolicy: Never
  containers:
  - name: yes
    image: ROOTFS
    command: [/bin/sh, -c, 'yes $(seq -s - 100) | head -c 209715200; echo; echo done']
";

#[test]
fn a_container_writing_200_mb_leaves_at_most_the_kubelets_limit_on_disk() {
    let Some(mut pods) = Pods::new() else { return };
    play(&mut pods, "flood", FLOOD, &[]);
    let state = pods.rootfs.state_root();
    wait_until("the flood to end", || exited(&pods, "flood", "yes"));
    // Its copier writes the last records once the pipe is drained: `logs -f` waits for it.
    let last = stdout_bytes(
        &pods,
        &["pod", "logs", "-f", "--tail", "1", "-c", "yes", "flood"],
    );
    assert_eq!(last, b"done\n");
    let (files, total) = log_files(&state, "flood-yes");
    // The kubelet's containerLogMaxSize (10Mi) and containerLogMaxFiles (5).
    assert!(total <= 5 * (10 << 20), "{total} bytes in {files:?}");
    assert!(files.len() <= 5, "{files:?}");
    // It did rotate: more than one full file is kept.
    assert!(total > 10 << 20, "{total} bytes in {files:?}");
    // The last line `head` cut, then ours.
    let lines = stdout_bytes(&pods, &["logs", "--tail", "2", "flood-yes"]);
    assert!(lines.starts_with(b"1-2-3-"), "{lines:?}");
    assert!(lines.ends_with(b"\ndone\n"), "{lines:?}");
    pods.remove_all();
}

const ECHO: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  restartPolicy: Never
  volumes:
  - {name: control, hostPath: {path: CONTROL}}
  containers:
  - name: talker
    image: ROOTFS
    volumeMounts: [{name: control, mountPath: /control}]
    command: [/bin/sh, -c, 'printf \"bin \\377\\376\\n\"; echo one; echo err >&2; read line < /control/fifo; echo $line']
  - name: quiet
    image: ROOTFS
    command: [/bin/sh, -c, 'echo hush; exec sleep 1000']
";

#[test]
fn pod_logs_follows_tails_and_gives_the_bytes_as_written_until_rm() {
    let Some(mut pods) = Pods::new() else { return };
    let control = pods.rootfs.scratch().join("control");
    std::fs::create_dir(&control).expect("mkdir");
    let fifo = control.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let manifest = ECHO.replace("CONTROL", &control.display().to_string());
    play(
        &mut pods,
        "talk",
        &manifest,
        &["--log-opt", "max-size=128k"],
    );

    // Followed: the lines so far, bytes that are not UTF-8 unchanged, then a new one.
    let mut follow = pods.rootfs.peapod();
    follow
        .args(["pod", "logs", "-f", "-c", "talker", "talk"])
        .stdout(Stdio::piped());
    let mut child = follow.spawn().expect("spawn pod logs -f");
    let guard = KillPid(child.id() as i32);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).split(b'\n');
    let mut next = || lines.next().and_then(Result::ok);
    assert_eq!(next().as_deref(), Some(&b"bin \xff\xfe"[..]));
    assert_eq!(next().as_deref(), Some(&b"one"[..]));
    assert_eq!(next().as_deref(), Some(&b"err"[..]));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"two\n"))
        .expect("write the fifo");
    assert_eq!(next().as_deref(), Some(&b"two"[..]));
    // The container exits: `pod logs -f` ends.
    let status = support::wait_with_timeout(&mut child, support::TIMEOUT)
        .expect("pod logs -f ends once the container has exited");
    assert!(status.success(), "{status:?}");
    assert_eq!(next(), None);
    drop(guard);

    // --tail, per container; `peapod logs` of a pod container; -t stamps each line.
    assert_eq!(
        stdout_bytes(&pods, &["pod", "logs", "--tail", "1", "talk", "talker"]),
        b"two\n"
    );
    assert_eq!(
        stdout_bytes(&pods, &["logs", "talk-talker"]),
        b"bin \xff\xfe\none\nerr\ntwo\n"
    );
    wait_until("quiet's line", || {
        stdout_bytes(&pods, &["pod", "logs", "-c", "quiet", "talk"]) == b"hush\n"
    });
    let stamped = stdout_bytes(&pods, &["pod", "logs", "-t", "-c", "quiet", "talk"]);
    assert!(stamped.ends_with(b"Z hush\n"), "{stamped:?}");
    // Both, each line labelled.
    let all = stdout_bytes(&pods, &["pod", "logs", "--tail", "1", "talk"]);
    assert_eq!(all, b"talker | two\nquiet | hush\n");
    // -f of a pod of several containers needs -c, as kubectl's.
    let out = pods.peapod(&["pod", "logs", "-f", "talk"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("-c (talker, quiet)"), "{out:?}");

    // Removed with the container; the copier of the one still running gone when `pod rm`
    // returns.
    let state = pods.rootfs.state_root();
    assert!(!log_files(&state, "talk-talker").0.is_empty());
    let writer = std::fs::read(state.join("talk-quiet/container.log.writer")).expect("writer");
    let writer: peapod_state::ProcessIdentity = serde_json::from_slice(&writer).expect("json");
    assert!(writer.is_alive(), "the copier of a running container");
    pods.remove_all();
    assert!(!writer.is_alive(), "copier {writer:?} outlived pod rm");
    assert!(!state.join("talk-talker").exists());
    let out = pods.peapod(&["logs", "talk-talker"]);
    assert_ne!(out.code, 0, "{out:?}");
}

#[test]
fn run_d_in_a_pod_keeps_its_log_within_the_pods_log_opts() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create(
        "small",
        &["--log-opt", "max-size=64k", "--log-opt", "max-file=2"],
    );
    let script = "yes $(seq -s - 100) | head -c 2000000; echo; echo done";
    let out = pods.run(
        "small",
        &pods.rootfs.path,
        &["-d", "--name", "small-w"],
        script,
    );
    assert_eq!(out.code, 0, "{out:?}");
    // `run -d`'s monitor writes it: `wait` returns once it has recorded the exit.
    let out = pods.peapod(&["wait", "small-w"]);
    assert_eq!(out.stdout, "0\n", "{out:?}");
    let last = stdout_bytes(&pods, &["pod", "logs", "--tail", "1", "small", "small-w"]);
    assert_eq!(last, b"done\n");
    let (files, total) = log_files(&pods.rootfs.state_root(), "small-w");
    assert!(total <= 2 * (64 << 10), "{total} bytes in {files:?}");
    assert_eq!(files.len(), 2, "{files:?}");
    // A bad option is refused, naming it, and makes no pod.
    let out = pods.try_create("tiny", &["--log-opt", "max-size=1k"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--log-opt max-size=1k"), "{out:?}");
    pods.remove_all();
}
