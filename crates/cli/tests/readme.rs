//! Every command in the README works when pasted: each fenced `sh` block runs, in order, as a
//! shell script in a scratch directory that has the test rootfs at `target/rootfs`, with
//! `peapod` on the PATH (this build, with a state root and an image store of the test's own).
//! Two kinds of line are left out, because they are what runs this test or change the
//! machine: `cargo xtask ...` and `apt-get ...`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::net::TestNet;
use support::pods::static_init;
use support::{finish, wait_with_timeout, TestRootfs};

/// How long one block may take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The `sh` blocks of `text`, without the lines this test does not run.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(lines), "```") => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (Some(lines), line) => {
                if !line.starts_with("cargo xtask") && !line.starts_with("apt-get ") {
                    lines.push(line);
                }
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Removes what a failed block may have left: its containers and pods, by this test's own
/// state root.
struct Cleanup {
    peapod: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let list = |args: &[&str]| {
            Command::new(&self.peapod)
                .args(args)
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let pods: Vec<serde_json::Value> =
            serde_json::from_str(&list(&["pod", "list", "--format", "json"])).unwrap_or_default();
        for pod in pods {
            if let Some(name) = pod["name"].as_str() {
                let _ = list(&["pod", "rm", "-f", name]);
            }
        }
        for id in list(&["list", "-q"]).lines() {
            let _ = list(&["delete", "--force", id]);
        }
    }
}

#[test]
fn every_command_in_the_readme_runs() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let Some(init) = static_init() else {
        return;
    };
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 6, "the README's sh blocks: {blocks:#?}");

    let scratch = rootfs.scratch().to_owned();
    std::fs::create_dir(scratch.join("target")).expect("target");
    std::os::unix::fs::symlink(&rootfs.path, scratch.join("target/rootfs")).expect("symlink");
    let bin = scratch.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    // The README's pods are on the default network `peapod`: one of this test's own (its
    // bridge, subnet, configuration and cache), dropped after the pods are.
    let net = TestNet::named(Some("peapod"), 24);
    let wrapper = bin.join("peapod");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport PEAPOD_CNI_CONFIG_DIR='{}' PEAPOD_CNI_CACHE_DIR='{}'\nexec '{}' --root '{}' --storage '{}' \"$@\"\n",
            net.dir.join("net.d").display(),
            net.dir.join("cache").display(),
            env!("CARGO_BIN_EXE_peapod"),
            rootfs.state_root().display(),
            scratch.join("storage").display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _cleanup = Cleanup {
        peapod: wrapper.clone(),
    };
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    for (n, block) in blocks.iter().enumerate() {
        let script = scratch.join(format!("block-{n}.sh"));
        std::fs::write(&script, format!("set -eu\n{block}\n")).expect("script");
        // Output to files: a detached container keeps what it inherits open.
        let out = scratch.join(format!("block-{n}.out"));
        let mut child = Command::new("/bin/sh")
            .arg(&script)
            .current_dir(&scratch)
            .env("PATH", &path)
            .env("PEAPOD_INIT", &init)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(scratch.join(format!("block-{n}.err"))).expect("err"))
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let status = wait_with_timeout(&mut child, BLOCK_TIMEOUT);
        if status.is_none() {
            // The whole group: the shell and whatever it started.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
        }
        let read = |suffix: &str| {
            std::fs::read_to_string(scratch.join(format!("block-{n}.{suffix}"))).unwrap_or_default()
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "README block {n} failed ({status:?}):\n{block}\n--- stdout:\n{}--- stderr:\n{}",
            read("out"),
            read("err")
        );
    }
    // The README cleans up after itself: no container, pod or process is left.
    let left = finish(
        Command::new(&wrapper)
            .args(["list", "-q"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("list"),
    );
    assert_eq!(left.stdout, "", "containers the README leaves behind");
    drop(_cleanup);
    rootfs.assert_nothing_left();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn blocks_leave_out_the_lines_that_build_or_install() {
    let text =
        "x\n```sh\napt-get install -y a\ncargo xtask run\npeapod list\n```\n```text\nno\n```\n";
    assert_eq!(sh_blocks(text), ["peapod list"]);
}
