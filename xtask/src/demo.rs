//! `cargo xtask run`: the main job. Builds peapod, imports the rootfs it assembles (offline)
//! as an image, starts one container of that image and shows through `peapod explain --why`
//! how the kernel isolates it, then a two-container pod (`pod.rs`); with arguments, runs
//! `peapod ARGS` instead.

mod pod;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};

use crate::{build_peapod, rootfs, run_status, Result};

/// The image the demo imports its rootfs as.
const DEMO_IMAGE: &str = "localhost/peapod/demo:latest";

pub(crate) fn run(args: &[String]) -> Result {
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let args: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    if !args.is_empty() {
        return run_status(Command::new(&peapod).args(args));
    }

    let mode = if is_root() {
        "as root"
    } else {
        "rootless: in a user namespace"
    };
    let name = format!("demo-{}", std::process::id());
    println!(
        "peapod image import {} {DEMO_IMAGE}\n",
        rootfs_dir.display()
    );
    run_status(
        Command::new(&peapod)
            .args(["image", "import"])
            .arg(&rootfs_dir)
            .arg(DEMO_IMAGE)
            .stdout(Stdio::null()),
    )?;
    println!(
        "peapod run --detach --name {name} --hostname peapod-demo {DEMO_IMAGE} sleep 60  ({mode})\n"
    );
    let started = Command::new(&peapod)
        .args([
            "run",
            "--detach",
            "--name",
            &name,
            "--hostname",
            "peapod-demo",
        ])
        .args([DEMO_IMAGE, "/bin/sh", "-c", "sleep 30 & exec sleep 60"])
        // The container keeps what it inherits: nothing this demo would wait on.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run peapod: {e}"))?;
    if !started.success() {
        return Err(format!("peapod run --detach failed ({started})"));
    }
    println!("peapod explain --why {name}\n");
    let explained = run_status(Command::new(&peapod).args(["explain", "--why", &name]));
    let deleted = run_status(Command::new(&peapod).args(["delete", "--force", &name]));
    explained?;
    deleted?;
    println!(
        "\npeapod delete --force {name}: its processes, mounts, cgroup, state and writable layer are gone."
    );
    match is_root() {
        true => pod::run(&peapod, &rootfs_dir),
        false => {
            println!("\n(The pod demo needs root: pods pin their namespaces with bind mounts.)");
            Ok(())
        }
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn parse_facts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}
