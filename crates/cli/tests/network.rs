//! Pods on CNI networks, with the real plugins (`bridge`, `host-local`, `portmap`,
//! `firewall`, `tuning`) on networks of the tests' own (`support::net`): addresses, traffic
//! between pods and from the host, published ports, the `/etc` files, the host's network,
//! and that `pod rm` (also of a pod whose infra died, or a pod lost in a crash) leaves no
//! veth, lease, rule or cache entry. Traffic only between namespaces the tests made and the
//! host's own addresses.

mod support;

use std::process::{Command, Stdio};

use support::net::pods_on;
use support::pods::{ip_of, Pods};
use support::tcp::{fetch, free_port};
use support::{finish, wait_until};

#[test]
fn two_pods_on_a_network_talk_over_their_ips_and_the_host_reaches_them() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    pods.create("a", &["--network", &net.name]);
    // --ip asks host-local for an address of the subnet.
    let wanted = std::net::Ipv4Addr::from(u32::from(net.subnet.network()) + 77).to_string();
    pods.create("b", &["--network", &net.name, "--ip", &wanted]);
    let (ip_a, ip_b) = (ip_of(&pods, "a"), ip_of(&pods, "b"));
    assert_eq!(ip_b, wanted);
    for ip in [&ip_a, &ip_b] {
        let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
        assert!(net.subnet.contains(&ip), "{ip} not in {}", net.subnet);
    }
    assert_ne!(ip_a, ip_b);
    pods.serve("a", "server", 80, "hi-from-a");
    // The host, by the pod's IP.
    assert_eq!(fetch(&format!("{ip_a}:80")), "hi-from-a\n");
    // Pod b, by pod a's IP; and a second container of pod a sees the pod's address on eth0.
    let rootfs = pods.rootfs.path.clone();
    let out = pods.run("b", &rootfs, &[], &format!("nc {ip_a} 80 </dev/null"));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "hi-from-a\n"),
        "{out:?}"
    );
    let out = pods.run("a", &rootfs, &[], "ip -4 -o addr show eth0");
    assert!(out.stdout.contains(&format!("inet {ip_a}/24")), "{out:?}");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn a_published_port_answers_on_the_gateway_address_and_on_localhost() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let port = free_port();
    let publish = format!("{port}:80");
    pods.create("web", &["--network", &net.name, "-p", &publish]);
    pods.serve("web", "server", 80, "published");
    let list = pods.peapod(&["pod", "list"]);
    assert!(list.stdout.contains(&format!("{port}->80/tcp")), "{list:?}");
    assert!(list.stdout.contains(&ip_of(&pods, "web")), "{list:?}");
    assert_eq!(fetch(&format!("{}:{port}", net.gateway())), "published\n");
    // portmap reaches 127.0.0.1 through its DNAT by setting route_localnet on the bridge
    // (and only there): the host's other interfaces keep the kernel's default.
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "published\n");
    let localnet = |dev: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{dev}/route_localnet"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(localnet(&net.bridge), "1");
    assert_eq!(localnet("all"), "0");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn containers_get_the_pods_etc_hosts_hostname_and_resolv_conf() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    pods.create(
        "named",
        &[
            "--network",
            &net.name,
            "--hostname",
            "web1",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.org",
            "--add-host",
            "db:192.0.2.7",
        ],
    );
    let ip = ip_of(&pods, "named");
    let rootfs = pods.rootfs.path.clone();
    let out = pods.run(
        "named",
        &rootfs,
        &[],
        "cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf",
    );
    assert_eq!(out.code, 0, "{out:?}");
    let parts: Vec<&str> = out.stdout.split("---\n").collect();
    assert!(parts[0].starts_with("127.0.0.1\tlocalhost\n"), "{out:?}");
    assert!(parts[0].contains(&format!("{ip}\tweb1\n")), "{out:?}");
    assert!(parts[0].contains("192.0.2.7\tdb\n"), "{out:?}");
    assert_eq!(parts[1], "web1\n");
    assert_eq!(parts[2], "search example.org\nnameserver 192.0.2.53\n");
    // The image's own files are shadowed, not changed (the rootfs had none: they are
    // empty mount points).
    for file in ["hosts", "hostname", "resolv.conf"] {
        let own = std::fs::read_to_string(rootfs.join("etc").join(file)).unwrap_or_default();
        assert_eq!(own, "", "{file} of the rootfs");
    }
    // Without --dns: the host's resolvers, none of them a loopback address.
    pods.create("plain", &["--network", &net.name]);
    let out = pods.run("plain", &rootfs, &[], "cat /etc/resolv.conf");
    assert!(out.stdout.contains("nameserver "), "{out:?}");
    assert!(!out.stdout.contains("nameserver 127."), "{out:?}");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn a_pod_on_the_host_network_shares_the_hosts_interfaces() {
    let Some(mut pods) = Pods::new() else { return };
    pods.create("hostnet", &["--network", "host"]);
    let rootfs = pods.rootfs.path.clone();
    let out = pods.run("hostnet", &rootfs, &[], "readlink /proc/self/ns/net");
    assert_eq!(out.code, 0, "{out:?}");
    let host = std::fs::read_link("/proc/self/ns/net").expect("ns");
    assert_eq!(out.stdout.trim(), host.to_string_lossy());
    let ps = pods.ps_json("hostnet");
    assert_eq!(ps["network"], "host");
    pods.remove_all();
}

#[test]
fn fifty_pods_made_at_once_get_addresses_and_pod_rm_leaves_nothing() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let before = net.leftovers();
    assert_eq!(before, Vec::<String>::new());
    let names: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    pods.names.extend(names.iter().cloned());
    let init = pods.init.display().to_string();
    let spawn = |args: &[&str]| {
        let mut cmd = pods.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn peapod")
    };
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            spawn(&[
                "pod",
                "create",
                "--init-path",
                &init,
                "--network",
                &net.name,
                n,
            ])
        })
        .collect();
    for (name, child) in names.iter().zip(children) {
        let out = finish(child);
        assert_eq!(out.code, 0, "pod create {name}: {out:?}");
    }
    let mut ips: Vec<String> = names.iter().map(|n| ip_of(&pods, n)).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "50 distinct addresses");
    let links = Command::new("ip")
        .args(["-o", "link", "show", "master", &net.bridge])
        .output()
        .expect("ip");
    assert_eq!(String::from_utf8_lossy(&links.stdout).lines().count(), 50);
    let children: Vec<_> = names
        .iter()
        .map(|n| spawn(&["pod", "rm", "-f", n]))
        .collect();
    for (name, child) in names.iter().zip(children) {
        let out = finish(child);
        assert_eq!(out.code, 0, "pod rm {name}: {out:?}");
    }
    pods.names.clear();
    assert_eq!(net.leftovers(), before);
    pods.rootfs.assert_nothing_left();
}

#[test]
fn a_missing_plugin_a_malformed_conflist_and_an_exhausted_range_each_fail_in_one_line() {
    let Some((net, mut pods)) = pods_on(30) else {
        return;
    };
    let create =
        |pods: &Pods, name: &str, network: &str| pods.try_create(name, &["--network", network]);
    let one_line = |out: &support::Outcome, wanted: &str| {
        assert_ne!(out.code, 0, "{out:?}");
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert!(lines[0].contains(wanted), "{out:?}");
    };
    // A /30 has one address besides the gateway: the first pod takes it.
    pods.create("first", &["--network", &net.name]);
    let out = create(&pods, "second", &net.name);
    one_line(&out, "plugin bridge ADD failed: ");
    assert!(out.stderr.contains("no IP addresses available"), "{out:?}");
    let out = create(&pods, "third", &net.name);
    one_line(&out, "no IP addresses available");
    // A plugin that is not installed.
    let conf = net.dir.join("net.d");
    let missing = std::fs::read_to_string(conf.join(format!("{}.conflist", net.name)))
        .expect("conflist")
        .replace(&net.name, "missing-plugin")
        .replace("\"tuning\"", "\"no-such-plugin\"");
    std::fs::write(conf.join("missing.conflist"), missing).expect("write");
    one_line(
        &create(&pods, "fourth", "missing-plugin"),
        "plugin \"no-such-plugin\" not found in /usr/lib/cni",
    );
    // A malformed list, asked for by a name no good list has.
    std::fs::write(
        conf.join("zz-broken.conflist"),
        "{\"cniVersion\": \"1.0.0\", \"name\": ",
    )
    .expect("write");
    one_line(
        &create(&pods, "fifth", "broken"),
        "zz-broken.conflist: not JSON",
    );
    let list = pods.peapod(&["pod", "list", "-q"]);
    assert_eq!(list.stdout.trim(), "first", "{list:?}");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn a_pod_whose_infra_died_and_a_pod_lost_in_a_crash_are_both_undone() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    pods.create("dead", &["--network", &net.name]);
    pods.create("lost", &["--network", &net.name]);
    // The infra process of `dead` dies: `pod rm -f` still runs DEL on its pinned namespace.
    pods.kill_infra("dead");
    wait_until("the infra process to die", || {
        pods.ps_json("dead")["status"] == "failed"
    });
    let out = pods.peapod(&["pod", "rm", "-f", "dead"]);
    assert_eq!(out.code, 0, "{out:?}");
    pods.names.retain(|n| n != "dead");
    let cache = net.dir.join("cache/results");
    let cached = || std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(cached(), 1, "only lost's attachment is left");
    // `lost` disappears as in a reboot: its state under /run, its namespace (and so its
    // veth) and its iptables rules are gone; its lease and cache entry, on disk, are not.
    // The next `pod create` finds the entry without a pod and runs DEL for it, which
    // releases the lease.
    let lost_ip = ip_of(&pods, "lost");
    pods.lose("lost");
    support::net::remove_rules_naming(&[&format!("{lost_ip}/32"), "-lost\\\""]);
    let lease = net.dir.join("ipam").join(&net.name).join(&lost_ip);
    assert!(lease.exists(), "{}", lease.display());
    assert_eq!(cached(), 1);
    pods.create("next", &["--network", &net.name]);
    assert_eq!(cached(), 1, "lost's entry reaped, next's made");
    assert!(
        ip_of(&pods, "next") == lost_ip || !lease.exists(),
        "lost's lease released"
    );
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn a_played_manifest_publishes_its_host_ports_and_writes_its_aliases_and_dns_config() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let port = free_port();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: played}}
spec:
  dnsPolicy: None
  dnsConfig: {{nameservers: [192.0.2.53], searches: [example.org], options: [{{name: ndots, value: \"2\"}}]}}
  hostAliases: [{{ip: 192.0.2.7, hostnames: [db, db.local]}}]
  containers:
  - name: web
    image: {}
    command: [/bin/sh, -c]
    args: ['cat /etc/hosts /etc/resolv.conf; exec nc -ll -p 80 -e /bin/echo played']
    ports: [{{containerPort: 80, hostPort: {port}}}]
",
        pods.rootfs.arg()
    );
    let file = pods.rootfs.scratch().join("played.yaml");
    std::fs::write(&file, manifest).expect("manifest");
    let out = pods.play("played", &file, &["--network", &net.name]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(fetch(&format!("{}:{port}", net.gateway())), "played\n");
    // The log is copied from the container's pipe on its own time: nc answering does not
    // mean that what `cat` wrote before it is in the file yet.
    wait_until("the files' text in the log", || {
        pods.logs("played", "web").ends_with("options ndots:2\n")
    });
    let log = pods.logs("played", "web");
    assert!(
        log.contains("192.0.2.7\tdb\n192.0.2.7\tdb.local\n"),
        "{log}"
    );
    assert!(
        log.contains(&format!("{}\tplayed\n", ip_of(&pods, "played"))),
        "{log}"
    );
    assert!(
        log.ends_with("search example.org\nnameserver 192.0.2.53\noptions ndots:2\n"),
        "{log}"
    );
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn a_played_manifest_with_host_network_is_in_the_hosts_network_namespace() {
    let Some(mut pods) = Pods::new() else { return };
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: onhost}}
spec:
  hostNetwork: true
  restartPolicy: Never
  containers:
  - name: c
    image: {}
    command: [/bin/sh, -c, 'readlink /proc/self/ns/net']
",
        pods.rootfs.arg()
    );
    let file = pods.rootfs.scratch().join("onhost.yaml");
    std::fs::write(&file, manifest).expect("manifest");
    let out = pods.play("onhost", &file, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let host = std::fs::read_link("/proc/self/ns/net").expect("ns");
    wait_until("the container's output", || {
        !pods.logs("onhost", "c").is_empty()
    });
    assert_eq!(pods.logs("onhost", "c").trim(), host.to_string_lossy());
    pods.remove_all();
}

#[test]
fn a_lone_container_on_a_network_gets_an_ip_and_a_published_port_and_delete_undoes_it() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let rootfs = pods.rootfs.arg().to_owned();
    // Should the test fail, the hidden pods go (`pod rm -f` kills their containers too).
    pods.names
        .extend(["net-solo".to_owned(), "net-srv".to_owned()]);
    // In the foreground: an address on eth0 and /etc files naming the container; all of it
    // undone when it exits.
    let out = pods.peapod(&[
        "run",
        "--rootfs",
        &rootfs,
        "--net",
        &net.name,
        "--name",
        "solo",
        "--",
        "/bin/sh",
        "-c",
        // The sleep outlasts the 100 ms after which a foreground run hands its waiting to
        // peapod-init, so the network is undone by `peapod finish`.
        "ip -4 -o addr show eth0; cat /etc/hostname /etc/hosts; sleep 0.3",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let prefix = net.prefix();
    assert!(out.stdout.contains(&format!("inet {prefix}")), "{out:?}");
    assert!(
        out.stdout.contains("solo\n127.0.0.1\tlocalhost\n"),
        "{out:?}"
    );
    assert_eq!(net.leftovers(), Vec::<String>::new());
    // Detached with a published port: it answers on the gateway address, `pod list` does
    // not show the container's network, and `delete` undoes it.
    let port = free_port();
    let publish = format!("{port}:80");
    let out = pods.peapod(&[
        "run",
        "--rootfs",
        &rootfs,
        "--net",
        &net.name,
        "-p",
        &publish,
        "--name",
        "srv",
        "--detach",
        "--",
        "/bin/nc",
        "-ll",
        "-p",
        "80",
        "-e",
        "/bin/echo",
        "solo",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let delete = || pods.peapod(&["delete", "--force", "srv"]);
    assert_eq!(fetch(&format!("{}:{port}", net.gateway())), "solo\n");
    assert_eq!(pods.peapod(&["pod", "list", "-q"]).stdout, "");
    let out = delete();
    assert_eq!(out.code, 0, "{out:?}");
    pods.names.clear();
    assert_eq!(net.leftovers(), Vec::<String>::new());
    pods.rootfs.assert_nothing_left();
    // -p on no network is refused (without --net, it is on the default network: see
    // runflags.rs).
    let out = pods.peapod(&[
        "run",
        "--rootfs",
        &rootfs,
        "--net",
        "none",
        "-p",
        "1:2",
        "--",
        "/bin/true",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--publish needs a CNI network"),
        "{out:?}"
    );
}
