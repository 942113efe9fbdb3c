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
//!   /keep.sh                 the host directories kept visible under the guest's tmpfs
//! /host                      the host's `/` over 9p (-virtfs, read-only)
//! /rw                        tmpfs: the overlay's upper and work directories
//! /newroot = overlay(/host, /rw/upper)   becomes `/` (switch_root), writable, lost at power-off
//!   /run, /tmp, /var/tmp, /dev/shm   tmpfs     /sys/fs/cgroup   cgroup2, every controller
//!   the tests run in /sys/fs/cgroup/test.slice/test.scope, as a systemd host runs a shell
//! ```
//!
//! tests.sh prints `PEAPOD-VM-RESULT: N` (N test binaries failed) on the serial console,
//! which is qemu's stdout; that line, not qemu's exit status, is the result.

mod initramfs;
mod qemu;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{cargo, dist, rootfs, target_dir, test, Result};
use initramfs::{modules_in_order, Cpio};
use qemu::{boot, RESULT};

/// The test binaries of `crates/cli/tests/` that run in the guest; one that does not exist
/// (yet) is left out. The rest need nothing a cgroup-v2 machine changes, or need a network
/// the guest does not have (network, pull), or the host's daemons (podman, CRI).
const TESTS: &[&str] = &[
    "cgroups",
    "pod",
    "pod_security",
    "explain",
    "devices",
    "escape",
    "rootless_ids",
];

/// Those of `cargo xtask vm --systemd [--hybrid]`: the systemd cgroup driver's, which need systemd as
/// PID 1 and its D-Bus API, and the CRI test (`crates/cri-tests/tests/cri.rs`), whose
/// containerd runs peapod and runc with `SystemdCgroup = true` there.
const SYSTEMD_TESTS: &[&str] = &["systemd", "cri"];

/// The packages whose `tests/NAME.rs` may be a test of the lists above.
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("peapod", "crates/cli/tests"),
    ("peapod-cri-tests", "crates/cri-tests/tests"),
];

/// What the guest loads: the virtio PCI transport and 9p for the host's root, overlayfs for
/// the writable layer over it (and for containers of images). No veth or bridge: the pods of
/// these tests have `--network none`.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// And under `--systemd`: veth and bridge for the CRI test's pods (containerd's CNI bridge
/// network of Debian's plugins, as on a node).
const SYSTEMD_MODULES: &[&str] = &["veth", "bridge"];

/// How long the whole run may take, boot to power-off (`PEAPOD_VM_TIMEOUT`, in seconds,
/// overrides it). The whole set took about two minutes on two busy cores; TCG on a slower
/// or busier machine gets ten times that.
const TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub(crate) fn run(args: &[String]) -> Result {
    let systemd = args.first().is_some_and(|a| a == "--systemd");
    let args = if systemd { &args[1..] } else { args };
    // `--systemd --hybrid`: systemd boots the cgroup v1 hybrid layout (qemu.rs).
    let hybrid = systemd && args.first().is_some_and(|a| a == "--hybrid");
    let args = if hybrid { &args[1..] } else { args };
    if systemd {
        for program in [
            "/lib/systemd/systemd",
            "/usr/bin/dbus-daemon",
            "/usr/bin/systemctl",
        ] {
            if !Path::new(program).exists() {
                return Err(format!("no {program}: install systemd and dbus"));
            }
        }
    }
    let (kernel, version) = kernel()?;
    let mut wanted = MODULES.to_vec();
    if systemd {
        wanted.extend(SYSTEMD_MODULES);
    }
    let modules = modules_in_order(&Path::new("/lib/modules").join(&version), &wanted)?;
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
    let (binaries, peapod) = build_tests(if systemd { SYSTEMD_TESTS } else { TESTS })?;

    let mut plan = String::new();
    for (name, value) in [
        // The CRI test's runtime (cargo's `CARGO_BIN_EXE_peapod` for the others).
        ("PEAPOD_BIN", &peapod),
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
        // A test that cannot run here passes after printing why ("skipped: ..."), which
        // libtest shows only with --show-output: it is then counted and named.
        plan += " --show-output";
        for arg in args {
            plan += &format!(" {}", quote(arg));
        }
        plan.push('\n');
    }

    // The host directories the tests read, kept visible in the guest where its own tmpfs on
    // /tmp, /var/tmp or /run would cover them (CI's clone may well be under /tmp).
    let mut keep = String::from("KEEP=");
    let target = std::path::absolute(target_dir()).map_err(|e| format!("target dir: {e}"))?;
    let root = std::path::absolute(crate::root()).map_err(|e| format!("workspace: {e}"))?;
    let mut kept = vec![root.clone()];
    if !target.starts_with(&root) {
        kept.push(target);
    }
    let words: Vec<String> = kept
        .iter()
        .map(|p| quote(&p.display().to_string()))
        .collect();
    keep += &quote(&words.join(" "));
    keep.push('\n');

    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "modules", "host", "rw", "newroot", "keep",
    ] {
        cpio.dir(dir);
    }
    // The console PID 1 starts on, before devtmpfs is mounted.
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &read(busybox)?);
    cpio.file("init", 0o755, include_bytes!("vm/init.sh"));
    cpio.file("tests.sh", 0o755, include_bytes!("vm/tests.sh"));
    cpio.file("plan.sh", 0o644, plan.as_bytes());
    cpio.file("keep.sh", 0o644, keep.as_bytes());
    if systemd {
        cpio.file("peapod-vm.service", 0o644, systemd_unit(timeout).as_bytes());
    }
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
    let outcome = boot(&kernel, &initrd, timeout, systemd, hybrid)?;
    for skip in &outcome.skipped {
        println!("xtask: vm: {skip}");
    }
    println!(
        "xtask: vm: {} passed ({} of them skipped), {} failed, {} ignored in {} test binaries, \
         {:.0?} wall time",
        outcome.passed,
        outcome.skipped.len(),
        outcome.failed,
        outcome.ignored,
        binaries.len(),
        started.elapsed()
    );
    match outcome.result.as_deref() {
        Some("0") => Ok(()),
        Some(n) if n.parse::<u32>().is_ok() => Err(format!("{n} test binaries failed in the vm")),
        Some(other) => Err(format!("the vm failed: {other}")),
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

/// A test binary of one of [`TEST_PACKAGES`].
#[derive(Debug)]
struct TestBinary {
    name: String,
    executable: PathBuf,
    /// Its package's directory, where cargo runs it.
    dir: PathBuf,
}

/// The unit systemd starts at boot (`--unit=peapod-vm.service`, init.sh) under
/// `cargo xtask vm --systemd`: tests.sh with D-Bus up, its output on the console, and the
/// machine powered off when it ends, whether it passed, failed or ran out of time (a minute
/// before xtask would kill qemu, so that the console says which).
fn systemd_unit(timeout: Duration) -> String {
    let limit = timeout
        .saturating_sub(Duration::from_secs(60))
        .max(Duration::from_secs(60));
    format!(
        "[Unit]\n\
         Description=peapod VM tests\n\
         Wants=dbus.service\n\
         After=dbus.service\n\
         SuccessAction=poweroff-force\n\
         FailureAction=poweroff-force\n\
         [Service]\n\
         Type=oneshot\n\
         Environment=PEAPOD_VM_INIT=systemd\n\
         ExecStart=/bin/busybox sh /run/peapod-vm/tests.sh\n\
         ExecStopPost=/bin/busybox sh -c '[ \"$$SERVICE_RESULT\" = success ] || \
         echo \"PEAPOD-VM-RESULT: the test unit ended with $$SERVICE_RESULT\"'\n\
         TimeoutStartSec={}\n\
         StandardOutput=tty\n\
         StandardError=inherit\n\
         TTYPath=/dev/console\n",
        limit.as_secs()
    )
}

/// Builds the `tests` that exist and returns their paths, and the `peapod` binary's, read
/// from cargo's JSON messages.
fn build_tests(tests_wanted: &[&str]) -> Result<(Vec<TestBinary>, PathBuf)> {
    let mut cmd = cargo();
    cmd.args(["test", "--no-run", "--message-format=json"]);
    let mut packages = vec!["peapod"];
    for name in tests_wanted {
        for (package, dir) in TEST_PACKAGES {
            if crate::root().join(dir).join(format!("{name}.rs")).exists() {
                cmd.args(["--test", name]);
                if !packages.contains(package) {
                    packages.push(package);
                }
            }
        }
    }
    for package in packages {
        cmd.args(["-p", package]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed ({})", out.status));
    }
    let mut binaries = Vec::new();
    let mut peapod = None;
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
        if msg["reason"] == "compiler-artifact" && name == "peapod" && !is_test {
            peapod = Some(PathBuf::from(executable));
        } else if is_test {
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
    let peapod = peapod.ok_or_else(|| format!("{cmd:?} named no peapod binary"))?;
    Ok((binaries, peapod))
}

/// `s` as one word of sh: single-quoted, a `'` inside as `'\''`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A directory of this run under the target directory, removed when dropped, so also when
/// the run fails. Those of runs that were killed (their pid is gone) go at the next run.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let target = target_dir();
        for entry in std::fs::read_dir(&target).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("vm-").and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = target.join(format!("vm-{}", std::process::id()));
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
    fn quoted_words_survive_the_shell() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
