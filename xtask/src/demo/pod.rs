//! The pod part of `cargo xtask run`: two containers in one pod, a server and a client, each
//! on its own copy of the rootfs, sharing the pod's network (with its IP on peapod's default
//! network `peapod`), IPC, UTS and PID namespaces. Shown side by side, then the pod is
//! removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::parse_facts;
use crate::{target_dir, Result};

/// What each container prints about itself, as KEY=VALUE lines.
const FACTS: &str = r#"
echo "pid=$$"
echo "hostname=$(hostname)"
for ns in net ipc uts pid mnt; do echo "ns_$ns=$(readlink /proc/self/ns/$ns)"; done
echo "root=$(ls / | grep -- -the- | tr '\n' ' ')"
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "ip=$(ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}')"
"#;

/// The server: makes a SysV shared-memory segment, then answers on 127.0.0.1:8080.
const SERVER: &str = r#"
key=$(ipcmk -M 4096 >/dev/null 2>&1 && awk 'NR==2 {print $1}' /proc/sysvipc/shm)
echo "shm=made key $key"
echo "net=listens on 127.0.0.1:8080"
exec nc -ll -p 8080 -e /bin/echo "hello from the server"
"#;

/// The client: talks to the server over the pod's localhost and looks for its segment.
const CLIENT: &str = r#"
i=0; while [ $i -lt 100 ]; do reply=$(nc 127.0.0.1 8080 </dev/null) && break; i=$((i+1)); sleep 0.05; done
echo "net=got \"$reply\""
echo "shm=sees key $(awk 'NR==2 {print $1}' /proc/sysvipc/shm)"
echo done=1
exec sleep 60
"#;

pub(super) fn run(peapod: &Path, rootfs: &Path) -> Result {
    let dir = target_dir().join("demo-pod");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let state = dir.join("state");
    let mut roots = Vec::new();
    for role in ["server", "client"] {
        let root = dir.join(role);
        copy_tree(rootfs, &root)?;
        fs::write(root.join(format!("I-am-the-{role}")), "")
            .map_err(|e| format!("cannot write a marker: {e}"))?;
        install_host_tool(&root, "ipcmk")?;
        roots.push(root);
    }
    let pod = Pod {
        peapod,
        state: &state,
    };
    let shown = show(&pod, &roots);
    let removed = pod.peapod(&["pod", "rm", "--force", "demo"]);
    shown?;
    removed?;
    let left = fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
    println!("\npeapod pod rm --force demo: containers, infra process, pinned namespaces and state removed ({left} entries left in the state root).");
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

struct Pod<'a> {
    peapod: &'a Path,
    state: &'a Path,
}

impl Pod<'_> {
    fn peapod(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.peapod)
            .arg("--root")
            .arg(self.state)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run peapod: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "peapod {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start(&self, name: &str, root: &Path, script: &str) -> Result {
        let root = root.to_string_lossy();
        let script = format!("{FACTS}{script}");
        self.peapod(&[
            "run", "--pod", "demo", "--rootfs", &root, "--name", name, "--detach", "--", "/bin/sh",
            "-c", &script,
        ])
        .map(drop)
    }
}

fn show(pod: &Pod, roots: &[PathBuf]) -> Result {
    pod.peapod(&[
        "pod",
        "create",
        "--hostname",
        "demo-pod",
        "--share",
        "net,ipc,uts,pid",
        "demo",
    ])?;
    pod.start("server", &roots[0], SERVER)?;
    pod.start("client", &roots[1], CLIENT)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let facts = loop {
        let server = parse_facts(&pod.peapod(&["pod", "logs", "demo", "server"])?);
        let client = parse_facts(&pod.peapod(&["pod", "logs", "demo", "client"])?);
        if client.contains_key("done") {
            break [server, client];
        }
        if Instant::now() > deadline {
            return Err("the pod demo's client did not finish within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ps: serde_json::Value =
        serde_json::from_str(&pod.peapod(&["pod", "ps", "--format", "json", "demo"])?)
            .map_err(|e| format!("pod ps: {e}"))?;
    let host_pid = |name: &str| {
        ps["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == name))
            .map(|c| c["pid"].to_string())
            .unwrap_or_default()
    };

    let addresses: Vec<&str> = ps["addresses"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    println!("\npeapod pod create demo; peapod run --pod demo ... (server, client)");
    println!(
        "the pod's IP on network {}: {}",
        ps["network"].as_str().unwrap_or("?"),
        addresses.join(" ")
    );
    println!("peapod explain --why demo\n");
    print!("{}", pod.peapod(&["explain", "--why", "demo"])?);
    println!("\nWhat each container saw of the other:");
    println!("\n{:<18} {:<32} client", "", "server");
    let rows: [(&str, &str); 12] = [
        ("PID on the host", ""),
        ("PID in the pod", "pid"),
        ("PID 1 in the pod", "pid1"),
        ("hostname", "hostname"),
        ("net namespace", "ns_net"),
        ("IP on eth0", "ip"),
        ("ipc namespace", "ns_ipc"),
        ("uts namespace", "ns_uts"),
        ("mnt namespace", "ns_mnt"),
        ("/ holds", "root"),
        ("over 127.0.0.1", "net"),
        ("SysV shm", "shm"),
    ];
    for (label, key) in rows {
        let get = |i: usize, facts: &BTreeMap<String, String>| match key {
            "" => host_pid(["server", "client"][i]),
            key => facts.get(key).cloned().unwrap_or_default(),
        };
        println!(
            "{label:<18} {:<32} {}",
            get(0, &facts[0]),
            get(1, &facts[1])
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!(
            "cannot copy {} to {}",
            from.display(),
            to.display()
        )),
    }
}

/// Copies a host tool and its shared libraries into `root` (busybox has no SysV IPC tools).
fn install_host_tool(root: &Path, tool: &str) -> Result {
    let Some(path) = ["/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
    else {
        return Err(format!(
            "the pod demo needs {tool} (util-linux) on the host for its SysV segment"
        ));
    };
    let ldd = Command::new("ldd")
        .arg(&path)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    let libs: Vec<PathBuf> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|l| {
            l.split("=>")
                .last()?
                .split_whitespace()
                .next()
                .map(PathBuf::from)
        })
        .filter(|p| p.is_absolute())
        .collect();
    for file in libs.iter().chain([&path]) {
        let dest = root.join(file.strip_prefix("/").unwrap_or(file));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        fs::copy(file, &dest).map_err(|e| format!("cannot copy {}: {e}", file.display()))?;
    }
    Ok(())
}
