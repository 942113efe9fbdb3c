//! Published host ports checked and held: a port a host socket or another pod has is
//! refused with "address already in use" naming who holds it, and a pod's port stays bound
//! (by its port holder) while the pod lives, then is free once `pod rm` returns. On
//! networks of the tests' own (`support::net`); sockets only on loopback.

mod support;

use std::net::{TcpListener, UdpSocket};

use support::net::{pods_on, TestNet};
use support::pods::Pods;

/// A port that was free a moment ago (the kernel's pick, let go).
fn free_port(udp: bool) -> u16 {
    match udp {
        false => TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port(),
        true => UdpSocket::bind("127.0.0.1:0")
            .and_then(|u| u.local_addr())
            .expect("bind")
            .port(),
    }
}

/// `pod create --network NET -p PUBLISH NAME`, whatever it says (not removed on drop unless
/// it worked: see [`Pods::create`]).
fn try_create(pods: &mut Pods, net: &TestNet, name: &str, publish: &str) -> support::Outcome {
    let out = pods.try_create(name, &["--network", &net.name, "-p", publish]);
    if out.code == 0 {
        pods.names.push(name.to_owned());
    }
    out
}

#[test]
fn a_port_a_host_socket_listens_on_is_refused_naming_it() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let out = try_create(&mut pods, &net, "taken", &format!("{port}:80"));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("0.0.0.0:{port}/tcp: address already in use")),
        "{out:?}"
    );
    // The holder is this test's own process.
    assert!(
        out.stderr
            .contains(&format!("process {}", std::process::id())),
        "{out:?}"
    );
    // Nothing was made.
    let list = pods.peapod(&["pod", "list", "-q"]);
    assert_eq!(list.stdout, "", "{list:?}");
    drop(listener);
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn a_second_pod_on_the_same_host_port_is_refused_until_the_first_is_removed() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let port = free_port(false);
    let publish = format!("{port}:80");
    pods.create("first", &["--network", &net.name, "-p", &publish]);
    // Held while the pod lives: a host service cannot take it...
    let err = TcpListener::bind(("127.0.0.1", port)).expect_err("the pod holds the port");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // ... nor a second pod, which is told whose it is.
    let out = try_create(&mut pods, &net, "second", &publish);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("address already in use"), "{out:?}");
    assert!(out.stderr.contains("pod first"), "{out:?}");
    // Free again once `pod rm` has returned.
    let out = pods.peapod(&["pod", "rm", "-f", "first"]);
    assert_eq!(out.code, 0, "{out:?}");
    pods.names.retain(|n| n != "first");
    drop(TcpListener::bind(("0.0.0.0", port)).expect("free after pod rm"));
    let out = try_create(&mut pods, &net, "second", &publish);
    assert_eq!(out.code, 0, "{out:?}");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn udp_ports_and_a_host_ip_are_held_as_published() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let udp = free_port(true);
    let tcp = free_port(false);
    pods.create(
        "held",
        &[
            "--network",
            &net.name,
            "-p",
            &format!("{udp}:53/udp"),
            "-p",
            &format!("127.0.0.1:{tcp}:80"),
        ],
    );
    let err = UdpSocket::bind(("127.0.0.1", udp)).expect_err("the pod holds the UDP port");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // hostIP 127.0.0.1: that address is held, another one of the host is not.
    let err = TcpListener::bind(("127.0.0.1", tcp)).expect_err("the pod holds 127.0.0.1");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    drop(TcpListener::bind(("127.0.0.2", tcp)).expect("another address is free"));
    pods.remove_all();
    drop(UdpSocket::bind(("127.0.0.1", udp)).expect("free after pod rm"));
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

#[test]
fn the_port_goes_with_the_infra_process_even_when_it_is_killed() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let port = free_port(false);
    pods.create(
        "doomed",
        &["--network", &net.name, "-p", &format!("{port}:80")],
    );
    assert!(TcpListener::bind(("127.0.0.1", port)).is_err());
    pods.kill_infra("doomed");
    // No peapod command in between: the holder sees the infra process go and lets go.
    support::wait_until("the port to be free", || {
        TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}
