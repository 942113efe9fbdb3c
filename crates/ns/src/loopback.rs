//! Bringing up `lo` through rtnetlink.
//!
//! One fixed `RTM_NEWLINK` request and its acknowledgement are all peapod needs, so they are
//! written here (about forty lines) rather than pulling in a netlink crate family.

use std::io;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use crate::{Error, Result};

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const IFLA_IFNAME: u16 = 3;
const IFF_UP: u32 = 0x1;

/// The request: `nlmsghdr` (16 bytes), `ifinfomsg` (16 bytes), then an `IFLA_IFNAME` attribute
/// holding "lo\0" padded to 4 bytes (8 bytes in all).
fn set_up_request(name: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    let payload_len = name.len() + 1;
    attr.extend_from_slice(&((4 + payload_len) as u16).to_ne_bytes());
    attr.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
    attr.extend_from_slice(name.as_bytes());
    attr.push(0);
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let total = 16 + 16 + attr.len();
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    msg.push(libc::AF_UNSPEC as u8); // ifi_family
    msg.push(0); // padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&0i32.to_ne_bytes()); // ifi_index: 0, look up by IFLA_IFNAME
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    msg.extend_from_slice(&attr);
    msg
}

/// Sets the loopback interface `lo` of the caller's network namespace up, as
/// `ip link set lo up` does. A new network namespace has `lo`, but down.
pub fn bring_up_loopback() -> Result<()> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| Error::Loopback(e.into()))?;
    let request = set_up_request("lo");
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| Error::Loopback(e.into()))?;
    let mut reply = [0u8; 1024];
    let n = recv(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &mut reply,
        MsgFlags::empty(),
    )
    .map_err(|e| Error::Loopback(e.into()))?;
    // The acknowledgement is an NLMSG_ERROR message whose error field is 0 on success.
    if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err(Error::Loopback(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected rtnetlink reply",
        )));
    }
    let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if errno != 0 {
        return Err(Error::Loopback(io::Error::from_raw_os_error(-errno)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_the_rtnetlink_layout() {
        let msg = set_up_request("lo");
        assert_eq!(msg.len(), 40);
        assert_eq!(u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]), 40);
        assert_eq!(&msg[36..39], b"lo\0");
    }
}
