//! The default network `peapod` (a test's own: its bridge, subnet, lease and cache
//! directories) through the in-process fast path and, with `PEAPOD_NETWORK_BACKEND=cni`,
//! through its CNI plugins, side by side: addresses in the subnet, two pods reaching each
//! other through the bridge, a published port answering on 127.0.0.1, and `pod rm`
//! leaving no veth, lease, cache entry or nftables element; pods of both paths on one
//! network share the leases and either path removes either. A `pod create` killed in the
//! middle of the fast path, and a fast-path pod lost as in a reboot, are undone too.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::net::{available, TestNet};
use support::pods::{ip_of, Pods};
use support::tcp::{fetch, free_port};
use support::wait_until;

/// The default network of the test's own, through `backend`; `None` after saying why the
/// test is skipped.
fn setup(backend: &str) -> Option<(TestNet, Pods)> {
    if !available() {
        return None;
    }
    if backend == "fast" && Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipped: no nft (the fast path needs it)");
        return None;
    }
    let net = TestNet::named(Some("peapod"), 24);
    let mut pods = Pods::new()?;
    pods.env = net.env();
    pods.env
        .push(("PEAPOD_NETWORK_BACKEND".into(), PathBuf::from(backend)));
    Some((net, pods))
}

/// A pod name of this test process's own: pods' cgroups are named by the pod, and other
/// test processes may be making pods of the same short names at the same time.
fn name(short: &str) -> String {
    format!("nf{}-{short}", std::process::id())
}

/// The `kind` of every cached attachment of the network (which path made them).
fn cached_kinds(net: &TestNet) -> Vec<String> {
    std::fs::read_dir(net.dir.join("cache/results"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `nft list table inet peapod` (empty when there is none).
fn nft_table() -> String {
    Command::new("nft")
        .args(["list", "table", "inet", "peapod"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Two pods and a published port on the default network through `backend`, whose cache
/// entries are of `kind`; then nothing left.
fn pods_talk_and_leave_nothing(backend: &str, kind: &str) {
    let Some((net, mut pods)) = setup(backend) else {
        return;
    };
    let port = free_port();
    let publish = format!("{port}:80");
    let (a, b) = (name(&format!("{backend}-a")), name(&format!("{backend}-b")));
    pods.create(&a, &["--network", "peapod", "-p", &publish]);
    pods.create(&b, &["--network", "peapod"]);
    assert_eq!(cached_kinds(&net), [kind, kind]);
    let (ip_a, ip_b) = (ip_of(&pods, &a), ip_of(&pods, &b));
    for ip in [&ip_a, &ip_b] {
        let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
        assert!(net.subnet.contains(&ip), "{ip} not in {}", net.subnet);
        assert_ne!(ip.to_string(), net.gateway());
    }
    assert_ne!(ip_a, ip_b);
    let rootfs = pods.rootfs.path.clone();
    // Through the bridge, both ways; the pod's eth0 and route as the bridge plugin's.
    let out = pods.run(&b, &rootfs, &[], &format!("ping -c 1 -W 5 {ip_a}"));
    assert_eq!(out.code, 0, "{out:?}");
    let out = pods.run(
        &a,
        &rootfs,
        &[],
        &format!("ping -c 1 -W 5 {ip_b} && ip -4 -o addr show eth0 && ip route"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(&format!("inet {ip_a}/24")), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("default via {}", net.gateway())),
        "{out:?}"
    );
    pods.serve(&a, "server", 80, "published");
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "published\n");
    assert_eq!(fetch(&format!("{}:{port}", net.gateway())), "published\n");
    if backend == "fast" {
        let table = nft_table();
        assert!(table.contains(&format!("{ip_a} . 80")), "{table}");
    }
    let veths = bridge_ports(&net);
    assert_eq!(veths.len(), 2, "{veths:?}");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
    let table = nft_table();
    for ip in [&ip_a, &ip_b] {
        assert!(!table.contains(ip.as_str()), "{ip} left in {table}");
    }
    // The fast path takes each host veth down and off the bridge; the kernel deletes the
    // pair with the pod's namespace, which went with its pin.
    for veth in &veths {
        wait_until(&format!("{veth} deleted with its pod's namespace"), || {
            !Command::new("ip")
                .args(["link", "show", "dev", veth])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }
}

/// The names of the interfaces on the network's bridge.
fn bridge_ports(net: &TestNet) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", &net.bridge])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split('@').next().map(str::to_owned))
        .collect()
}

#[test]
fn the_default_network_through_the_fast_path_talks_publishes_and_leaves_nothing() {
    pods_talk_and_leave_nothing("fast", "peapodFastV2");
}

#[test]
fn the_default_network_through_its_cni_plugins_does_the_same() {
    pods_talk_and_leave_nothing("cni", "cniCacheV1");
}

#[test]
fn a_pod_create_killed_in_the_fast_path_and_a_fast_pod_lost_in_a_crash_are_undone() {
    let Some((net, mut pods)) = setup("fast") else {
        return;
    };
    // The test holds the lease directory's lock, as host-local would: the fast path waits
    // there, after its cache entry is written, and is killed while it waits.
    let leases = net.dir.join("ipam/peapod");
    std::fs::create_dir_all(&leases).expect("lease dir");
    let lock = std::fs::File::create(leases.join("lock")).expect("lock");
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let killed = name("killed");
    pods.names.push(killed.clone());
    let init = pods.init.display().to_string();
    let mut cmd = pods.command();
    cmd.args([
        "pod",
        "create",
        "--init-path",
        &init,
        "--network",
        "peapod",
        &killed,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    wait_until("the fast path's cache entry", || {
        cached_kinds(&net).len() == 1
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    drop(held);
    let out = pods.peapod(&["pod", "rm", "-f", &killed]);
    assert_eq!(out.code, 0, "{out:?}");
    pods.names.clear();
    assert_eq!(net.leftovers(), Vec::<String>::new());
    // A whole fast-path pod lost as in a reboot: its processes, pins and state gone, its
    // lease, cache entry and nftables elements not. The next `pod create` reaps them.
    let lost = name("lost");
    pods.create(&lost, &["--network", "peapod"]);
    let lost_ip = ip_of(&pods, &lost);
    assert!(nft_table().contains(&lost_ip));
    pods.lose(&lost);
    assert!(leases.join(&lost_ip).exists());
    let next = name("next");
    pods.create(&next, &["--network", "peapod"]);
    assert_eq!(
        cached_kinds(&net).len(),
        1,
        "lost's entry reaped, next's made"
    );
    let table = nft_table();
    let next_ip = ip_of(&pods, &next);
    assert!(
        next_ip == lost_ip || !table.contains(&format!("{lost_ip} ")),
        "{table}"
    );
    assert!(next_ip == lost_ip || !leases.join(&lost_ip).exists());
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn pods_made_by_either_path_share_the_leases_and_either_removes_them() {
    let Some((net, mut pods)) = setup("fast") else {
        return;
    };
    let backend = |pods: &mut Pods, b: &str| {
        for (k, v) in pods.env.iter_mut() {
            if k == "PEAPOD_NETWORK_BACKEND" {
                *v = PathBuf::from(b);
            }
        }
    };
    let (fast, cni) = (name("by-fast"), name("by-cni"));
    pods.create(&fast, &["--network", "peapod"]);
    backend(&mut pods, "cni");
    pods.create(&cni, &["--network", "peapod"]);
    let mut kinds = cached_kinds(&net);
    kinds.sort();
    assert_eq!(kinds, ["cniCacheV1", "peapodFastV2"]);
    // host-local's leases: the CNI pod got the next address, not the fast pod's.
    let (ip_fast, ip_cni) = (ip_of(&pods, &fast), ip_of(&pods, &cni));
    assert_ne!(ip_fast, ip_cni);
    let rootfs = pods.rootfs.path.clone();
    let out = pods.run(&cni, &rootfs, &[], &format!("ping -c 1 -W 5 {ip_fast}"));
    assert_eq!(out.code, 0, "{out:?}");
    // A peapod set to the fast path removes the CNI pod through its plugins, and one set
    // to CNI removes the fast pod through the fast path: the cache entry says which.
    backend(&mut pods, "fast");
    let out = pods.peapod(&["pod", "rm", "-f", &cni]);
    assert_eq!(out.code, 0, "{out:?}");
    pods.names.retain(|n| n != &cni);
    assert_eq!(cached_kinds(&net), ["peapodFastV2"]);
    backend(&mut pods, "cni");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
    assert!(!nft_table().contains(&format!("{ip_fast} ")));
}
