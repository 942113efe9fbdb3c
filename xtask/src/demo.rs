//! `cargo xtask run`: the main job. Builds peapod and shows one container's isolation next
//! to the host's view, row by row, then a two-container pod (`pod.rs`); with arguments, runs
//! `peapod ARGS` instead.

mod pod;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use crate::{build_peapod, rootfs, run_status, Result};

const NAMESPACES: [&str; 6] = ["mnt", "pid", "ipc", "uts", "net", "cgroup"];

/// Prints the same facts as the host side below, as KEY=VALUE lines, from inside.
const INSIDE: &str = r#"
echo "pid=$$"
echo "hostname=$(hostname)"
for ns in mnt pid ipc uts net cgroup; do echo "ns_$ns=$(readlink /proc/self/ns/$ns)"; done
echo "mounts=$(wc -l < /proc/self/mountinfo)"
echo "ipc=$(( $(cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem | wc -l) - 3 ))"
echo "interfaces=$(ls /sys/class/net | tr '\n' ' ')"
echo "root=$(ls / | tr '\n' ' ')"
"#;

pub(crate) fn run(args: &[String]) -> Result {
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let args: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    if !args.is_empty() {
        return run_status(Command::new(&peapod).args(args));
    }

    // A SysV shared-memory segment on the host, which the container must not see.
    let segment = make_shm_segment();
    let outside = host_facts();
    let output = Command::new(&peapod)
        .args(["run", "--rootfs"])
        .arg(&rootfs_dir)
        .args(["--hostname", "peapod-demo", "--", "/bin/sh", "-c", INSIDE])
        .output()
        .map_err(|e| format!("cannot run peapod: {e}"));
    if let Some(id) = &segment {
        let _ = Command::new("ipcrm").args(["-m", id]).status();
    }
    let output = output?;
    if !output.status.success() {
        return Err(format!(
            "peapod run failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let inside = parse_facts(&String::from_utf8_lossy(&output.stdout));

    let mode = if is_root() {
        "as root"
    } else {
        "rootless: in a user namespace"
    };
    println!(
        "peapod run --rootfs {} -- /bin/sh  ({mode})\n",
        rootfs_dir.display()
    );
    println!("{:<18} {:<28} inside (container)", "", "outside (host)");
    let mut rows = vec![("pid", "pid"), ("hostname", "hostname")];
    let ns_keys: Vec<(String, String)> = NAMESPACES
        .iter()
        .map(|ns| (format!("{ns} namespace"), format!("ns_{ns}")))
        .collect();
    rows.extend(ns_keys.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    rows.extend([
        ("mounts", "mounts"),
        ("SysV IPC objects", "ipc"),
        ("interfaces", "interfaces"),
        ("/ holds", "root"),
    ]);
    for (label, key) in rows {
        let get = |facts: &BTreeMap<String, String>| facts.get(key).cloned().unwrap_or_default();
        println!(
            "{label:<18} {:<28} {}",
            shorten(&get(&outside)),
            get(&inside)
        );
    }
    println!("\nThe container is gone: peapod waited for it, and its mounts died with its mount namespace.");
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

fn shorten(s: &str) -> String {
    if s.len() > 27 {
        format!("{}…", &s[..26])
    } else {
        s.to_owned()
    }
}

fn make_shm_segment() -> Option<String> {
    let out = Command::new("ipcmk").args(["-M", "4096"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':').nth(1).map(|id| id.trim().to_owned())
}

fn count_lines(path: &str) -> usize {
    fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn host_facts() -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    facts.insert("pid".into(), std::process::id().to_string());
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    facts.insert("hostname".into(), hostname.trim().to_owned());
    for ns in NAMESPACES {
        let link = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap_or_default();
        facts.insert(format!("ns_{ns}"), link.display().to_string());
    }
    facts.insert(
        "mounts".into(),
        count_lines("/proc/self/mountinfo").to_string(),
    );
    let ipc = ["shm", "msg", "sem"]
        .iter()
        .map(|k| count_lines(&format!("/proc/sysvipc/{k}")).saturating_sub(1))
        .sum::<usize>();
    facts.insert("ipc".into(), ipc.to_string());
    let mut ifaces: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ifaces.sort();
    facts.insert("interfaces".into(), ifaces.join(" "));
    let mut root: Vec<String> = fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    root.sort();
    facts.insert("root".into(), root.join(" "));
    facts
}

fn parse_facts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}
