//! The guest's run: qemu started, its serial console (its stdout) streamed to ours and read
//! for the result line and libtest's summaries, and qemu killed when it takes too long.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Result;

/// What tests.sh prints before the number of test binaries that failed.
pub(crate) const RESULT: &str = "PEAPOD-VM-RESULT: ";

/// What the serial console said.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// What follows [`RESULT`], when the guest got that far.
    pub(crate) result: Option<String>,
    pub(crate) passed: u32,
    pub(crate) failed: u32,
    pub(crate) ignored: u32,
    /// "TEST: skipped: WHY" of each test that said it could not run here.
    pub(crate) skipped: Vec<String>,
    /// The test whose output libtest is showing (`---- NAME stdout ----`).
    showing: String,
}

/// Boots the guest and streams its console to stdout until it powers off, or kills it
/// after `timeout`.
/// `systemd`: init.sh hands over to the host's systemd (`cargo xtask vm --systemd`), booted
/// on the unified hierarchy and quiet but for failures; with `hybrid` (`--systemd --hybrid`)
/// on cgroup v1 hybrid instead: a v1 hierarchy per controller, `name=systemd`, and cgroup2
/// without controllers at /sys/fs/cgroup/unified (systemd 252 still boots it; 256 needs
/// `SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1`).
pub(crate) fn boot(
    kernel: &Path,
    initrd: &Path,
    timeout: Duration,
    systemd: bool,
    hybrid: bool,
) -> Result<Outcome> {
    let mut append = String::from("console=ttyS0 quiet panic=-1 rdinit=/init");
    if hybrid {
        append += " systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=0";
    } else {
        // Pure v2 even if something tried to mount a v1 hierarchy.
        append += " cgroup_no_v1=all";
    }
    if systemd {
        append += " systemd.show_status=error";
    }
    if systemd && !hybrid {
        append += " systemd.unified_cgroup_hierarchy=1";
    }
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
    .arg("-append")
    .arg(&append)
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
    /// Takes the result line, libtest's `test result: ok. 3 passed; 0 failed; 1 ignored;
    /// ...` lines and the tests' `skipped: WHY` lines from the console.
    fn read(&mut self, line: &str) {
        if let Some(result) = line.strip_prefix(RESULT) {
            self.result = Some(result.trim().to_owned());
        }
        if let Some(test) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            self.showing = test.to_owned();
        }
        if line.starts_with("skipped") {
            self.skipped.push(format!("{}: {line}", self.showing));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_and_the_result_line_are_counted() {
        let mut outcome = Outcome::default();
        outcome.read("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 3 filtered out; finished in 9.1s");
        outcome
            .read("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        outcome.read("---- a_v1_test stdout ----");
        outcome.read("skipped: no v1 here");
        outcome.read("PEAPOD-VM-RESULT: 1");
        assert_eq!(
            (outcome.passed, outcome.failed, outcome.ignored),
            (14, 1, 1)
        );
        assert_eq!(outcome.result.as_deref(), Some("1"));
        assert_eq!(outcome.skipped, ["a_v1_test: skipped: no v1 here"]);
    }
}
