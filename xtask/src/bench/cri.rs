//! The CRI pod life through containerd: `RunPodSandbox`, a container created and started,
//! stopped and removed, the sandbox stopped and removed, on a peapod handler against a runc
//! handler of the same containerd, taking turns. The measurement is the CRI test's
//! `pod_life_on_peapod_against_runc` (crates/cri-tests), run here on the release build.

use crate::{build_peapod, cargo, rootfs, test, Result};

pub(crate) fn run() -> Result {
    println!("== CRI pod life through containerd, peapod handler against runc\n");
    if super::find_tool("containerd").is_none() {
        println!("containerd: not installed, skipped\n");
        return Ok(());
    }
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let init = crate::dist::build_init()?;
    let (pause, busybox) = test::write_cri_images(&init, &rootfs_dir)?;
    let out = cargo()
        .args(["test", "--quiet", "-p", "peapod-cri-tests", "--test", "cri"])
        .args([
            "--",
            "--ignored",
            "--exact",
            "pod_life_on_peapod_against_runc",
        ])
        .arg("--nocapture")
        .env("PEAPOD_BIN", &peapod)
        .env("PEAPOD_INIT", &init)
        .env("PEAPOD_PAUSE_IMAGE", &pause)
        .env("PEAPOD_BUSYBOX_IMAGE", &busybox)
        .output()
        .map_err(|e| format!("cannot run the CRI measurement: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let said = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .chain(said.lines())
        .find(|l| l.starts_with("pod life") || l.starts_with("skipped:"));
    match (out.status.success(), line) {
        (true, Some(line)) => println!("{line}\n"),
        _ => {
            return Err(format!(
                "the CRI measurement failed ({}):\n{text}\n{said}",
                out.status
            ))
        }
    }
    Ok(())
}
