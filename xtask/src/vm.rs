//! `cargo xtask vm [FILTER] [TEST-ARGS...]`: the integration tests that touch cgroups (limits,
//! `update`, pause, OOM, pods, explain, devices) on a pure cgroup-v2 machine, whatever the
//! host has: Debian's kernel (`linux-image-amd64`) under `qemu-system-x86_64` with TCG (KVM
//! does not work on the development machines; see /work/shared/docs/cgroup-v2-vm.md).
//! The arguments go to every test binary, as `cargo test`'s do.
//!
//! The guest sees the host's whole root, read-only, so the test binaries find everything at
//! the paths compiled into them (`CARGO_BIN_EXE_peapod`, the rootfs) and every host tool the
//! tests run (`cp`, `ipcmk`):
//!
//! ```text
//! initramfs (written here, in memory: initramfs.rs)
//!   /init                    init.sh: loads the modules, mounts, switch_root
//!   /bin/busybox             the host's busybox-static
//!   /modules/NN-NAME.ko      virtio, 9p, overlayfs, numbered in dependency order
//!   /tests.sh, /plan.sh      the second stage and what it runs
//! /host                      the host's `/` over 9p (-virtfs, read-only)
//! /rw                        tmpfs: the overlay's upper and work directories
//! /newroot = overlay(/host, /rw/upper)   becomes `/` (switch_root), writable, lost at power-off
//!   /run, /tmp, /var/tmp, /dev/shm   tmpfs     /sys/fs/cgroup   cgroup2, every controller
//! ```
//!
//! tests.sh prints `PEAPOD-VM-RESULT: N` (N test binaries failed) on the serial console,
//! which is qemu's stdout; that line, not qemu's exit status, is the result.

mod initramfs;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{cargo, dist, rootfs, target_dir, test, Result};
use initramfs::{modules_in_order, Cpio};

/// The test binaries of `crates/cli/tests/` that run in the guest; one that does not exist
/// (yet) is left out. The rest need nothing a cgroup-v2 machine changes, or need a network
/// the guest does not have (network, pull), or the host's daemons (podman, CRI).
const TESTS: &[&str] = &["cgroups", "pod", "explain", "devices"];

/// What the guest loads: the virtio PCI transport and 9p for the host's root, overlayfs for
/// the writable layer over it (and for containers of images). No veth or bridge: the pods of
/// these tests have `--network none`.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// How long the whole run may take, boot to power-off (`PEAPOD_VM_TIMEOUT`, in seconds,
/// overrides it). Measured on two busy cores: about four minutes.
const TIMEOUT: Duration = Duration::from_secs(20 * 60);

const RESULT: &str = "PEAPOD-VM-RESULT: ";

pub(crate) fn run(args: &[String]) -> Result {
    let (kernel, version) = kernel()?;
    let modules = modules_in_order(&Path::new("/lib/modules").join(&version), MODULES)?;
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        return Err("no /bin/busybox: install busybox-static".into());
    }
    let timeout = match std::env::var("PEAPOD_VM_TIMEOUT") {
        Ok(secs) => Duration::from_secs(
            secs.parse()
                .map_err(|_| format!("PEAPOD_VM_TIMEOUT={secs:?} is not a number of seconds"))?,
        ),
        Err(_) => TIMEOUT,
    };

    // What `cargo xtask test` prepares, for the same variables.
    let rootfs_dir = rootfs::default_dir();
    let how = rootfs::ensure(&rootfs_dir)?;
    println!("xtask: rootfs at {} ({how})", rootfs_dir.display());
    let init = dist::build_init()?;
    let (pause, busybox_image) = test::write_cri_images(&init, &rootfs_dir)?;
    let binaries = build_tests()?;

    let mut plan = String::new();
    for (name, value) in [
        ("PEAPOD_TEST_ROOTFS", &rootfs_dir),
        ("PEAPOD_INIT_BIN", &init),
        ("PEAPOD_INIT", &init),
        ("PEAPOD_PAUSE_IMAGE", &pause),
        ("PEAPOD_BUSYBOX_IMAGE", &busybox_image),
    ] {
        plan += &format!("export {name}={}\n", quote(&value.display().to_string()));
    }
    for test in &binaries {
        plan += &format!(
            "run_test {} {} {}",
            quote(&test.name),
            quote(&test.dir.display().to_string()),
            quote(&test.executable.display().to_string())
        );
        for arg in args {
            plan += &format!(" {}", quote(arg));
        }
        plan.push('\n');
    }

    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "modules", "host", "rw", "newroot",
    ] {
        cpio.dir(dir);
    }
    // The console PID 1 starts on, before devtmpfs is mounted.
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &read(busybox)?);
    cpio.file("init", 0o755, include_bytes!("vm/init.sh"));
    cpio.file("tests.sh", 0o755, include_bytes!("vm/tests.sh"));
    cpio.file("plan.sh", 0o644, plan.as_bytes());
    for (i, module) in modules.iter().enumerate() {
        let name = module.file_name().unwrap_or_default().to_string_lossy();
        cpio.file(&format!("modules/{i:02}-{name}"), 0o644, &read(module)?);
    }
    let scratch = Scratch::new()?;
    let initrd = scratch.0.join("initramfs.cpio");
    std::fs::write(&initrd, cpio.finish())
        .map_err(|e| format!("cannot write {}: {e}", initrd.display()))?;

    let names: Vec<&str> = binaries.iter().map(|t| t.name.as_str()).collect();
    println!(
        "xtask: booting {} under qemu (TCG) with {}",
        kernel.display(),
        names.join(", ")
    );
    let started = Instant::now();
    let outcome = boot(&kernel, &initrd, timeout)?;
    println!(
        "xtask: vm: {} passed, {} failed, {} ignored in {} test binaries, {:.0?} wall time",
        outcome.passed,
        outcome.failed,
        outcome.ignored,
        binaries.len(),
        started.elapsed()
    );
    match outcome.result.as_deref() {
        Some("0") => Ok(()),
        Some(n) if n.parse::<u32>().is_ok() => Err(format!("{n} test binaries failed in the vm")),
        Some(other) => Err(format!("the vm's set-up failed ({other})")),
        None => Err(format!("the vm printed no {RESULT:?} line")),
    }
}

/// Debian's kernel from `/boot` (the newest installed, when there are several) and its
/// version, which names its modules' directory.
fn kernel() -> Result<(PathBuf, String)> {
    let entries = std::fs::read_dir("/boot").map_err(|e| format!("cannot read /boot: {e}"))?;
    let newest = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path)
        .ok_or("no /boot/vmlinuz-*: install linux-image-amd64")?;
    let name = newest.file_name().unwrap_or_default().to_string_lossy();
    let version = name.trim_start_matches("vmlinuz-").to_owned();
    Ok((newest, version))
}

/// A test binary of the `peapod` package.
#[derive(Debug)]
struct TestBinary {
    name: String,
    executable: PathBuf,
    /// Its package's directory, where cargo runs it.
    dir: PathBuf,
}

/// Builds the [`TESTS`] that exist and returns their paths, read from cargo's JSON messages.
fn build_tests() -> Result<Vec<TestBinary>> {
    let mut cmd = cargo();
    cmd.args(["test", "--no-run", "--message-format=json", "-p", "peapod"]);
    let tests = crate::root().join("crates/cli/tests");
    for name in TESTS {
        if tests.join(format!("{name}.rs")).exists() {
            cmd.args(["--test", name]);
        }
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed ({})", out.status));
    }
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true;
        let (Some(name), Some(executable), Some(manifest)) = (
            msg["target"]["name"].as_str(),
            msg["executable"].as_str(),
            msg["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if is_test {
            binaries.push(TestBinary {
                name: name.to_owned(),
                executable: executable.into(),
                dir: Path::new(manifest)
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .into(),
            });
        }
    }
    if binaries.is_empty() {
        return Err(format!("{cmd:?} named no test binary"));
    }
    Ok(binaries)
}

/// What the serial console said.
#[derive(Debug, Default)]
struct Outcome {
    /// What follows [`RESULT`], when the guest got that far.
    result: Option<String>,
    passed: u32,
    failed: u32,
    ignored: u32,
}

/// Boots the guest and streams its console to stdout until it powers off, or kills it
/// after `timeout`.
fn boot(kernel: &Path, initrd: &Path, timeout: Duration) -> Result<Outcome> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine",
        "q35,accel=tcg",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "2048",
    ])
    .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
    // A guest that panics or reboots ends qemu instead of booting again.
    .arg("-no-reboot")
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    // cgroup_no_v1=all: pure v2 even if something tried to mount a v1 hierarchy.
    .args([
        "-append",
        "console=ttyS0 quiet panic=-1 rdinit=/init cgroup_no_v1=all",
    ])
    // multidevs=remap: the host's / spans several file systems (/proc, /dev, ...) whose
    // inode numbers would otherwise collide in the guest.
    .args([
        "-virtfs",
        "local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = qemu
        .spawn()
        .map_err(|e| format!("cannot run qemu-system-x86_64 (install qemu-system-x86): {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("qemu's stdout was not piped".into());
    };
    // The console is read on a thread, so that the wait for it can time out.
    let (lines, console) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut outcome = Outcome::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match console.recv_timeout(left) {
            Ok(line) => {
                println!("{line}");
                outcome.read(&line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // By its pid: the qemu this run started, and nothing else.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the vm did not finish within {timeout:?}; killed it"
                ));
            }
        }
    }
    // The console closed: qemu is exiting. Reaped with the same deadline.
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if outcome.result.is_none() && !status.success() {
        return Err(format!("qemu failed ({status})"));
    }
    Ok(outcome)
}

impl Outcome {
    /// Takes the result line and libtest's `test result: ok. 3 passed; 0 failed; 1 ignored;
    /// ...` lines from the console.
    fn read(&mut self, line: &str) {
        if let Some(result) = line.strip_prefix(RESULT) {
            self.result = Some(result.trim().to_owned());
        }
        let Some((_, counts)) = line.split_once("test result: ") else {
            return;
        };
        for count in counts.split(['.', ';']) {
            let mut words = count.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// `s` as one word of sh: single-quoted, a `'` inside as `'\''`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A directory of this run under the target directory, removed when dropped, so also when
/// the run fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = target_dir().join(format!("vm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_and_the_result_line_are_counted() {
        let mut outcome = Outcome::default();
        outcome.read("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 3 filtered out; finished in 9.1s");
        outcome
            .read("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        outcome.read("PEAPOD-VM-RESULT: 1");
        assert_eq!(
            (outcome.passed, outcome.failed, outcome.ignored),
            (14, 1, 1)
        );
        assert_eq!(outcome.result.as_deref(), Some("1"));
    }

    #[test]
    fn quoted_words_survive_the_shell() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
