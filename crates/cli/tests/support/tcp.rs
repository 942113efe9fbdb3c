//! Loopback TCP of the tests: a free port to publish, and what a server answers.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::wait_until;

/// A TCP port of 127.0.0.1 that nothing listens on (the kernel's pick, let go at once).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// What the server at `addr` says, once it answers.
pub fn fetch(addr: &str) -> String {
    let addr: SocketAddr = addr.parse().expect("address");
    let mut text = String::new();
    wait_until(&format!("an answer from {addr}"), || {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        text.clear();
        stream.read_to_string(&mut text).is_ok() && !text.is_empty()
    });
    text
}
