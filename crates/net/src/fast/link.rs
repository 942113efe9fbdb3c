//! The rtnetlink requests of the fast path, made synchronously on a `netlink-sys` socket
//! with the messages of `netlink-packet-route`: a request, then its acknowledgement (or
//! error) read before the next. A socket opened inside a network namespace
//! ([`Rtnl::inside`]) keeps acting there after the thread went back to its own.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::CloneFlags;

/// A route netlink socket of one network namespace.
pub(crate) struct Rtnl {
    socket: Socket,
    seq: u32,
}

/// What a request to change something tolerates: that it is already so.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exists {
    Fail,
    Ok,
}

impl Rtnl {
    /// A socket in the caller's network namespace.
    pub(crate) fn new() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// A socket in the network namespace `netns` (a pinned `ns/net`): the thread enters it,
    /// opens the socket and goes back.
    pub(crate) fn inside(netns: &Path) -> io::Result<Rtnl> {
        let own = std::fs::File::open("/proc/thread-self/ns/net")?;
        let target = std::fs::File::open(netns)?;
        nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWNET)?;
        let made = Rtnl::new();
        // Back before anything else: the thread must not stay in the pod's namespace.
        nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWNET)?;
        made
    }

    /// Sends `message` with `flags` (plus REQUEST and ACK) and reads until its
    /// acknowledgement; returns the messages that came before it.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        exists: Exists,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut at = 0;
            while at < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(replies),
                                Some(_) => {
                                    let err = e.to_io();
                                    match (exists, err.raw_os_error()) {
                                        (Exists::Ok, Some(libc::EEXIST)) => Ok(replies),
                                        _ => Err(err),
                                    }
                                }
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                at += (len + 3) & !3;
            }
        }
    }

    /// The index of the interface `name`; `None` when there is none.
    pub(crate) fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0, Exists::Fail) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes the bridge `name` unless it exists; returns its index.
    pub(crate) fn ensure_bridge(&mut self, name: &str) -> io::Result<u32> {
        if let Some(index) = self.index(name)? {
            return Ok(index);
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        // Another command may make it at the same time.
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Exists::Ok,
        )?;
        self.index(name)?
            .ok_or_else(|| io::Error::other(format!("bridge {name} vanished")))
    }

    /// Makes the veth pair `host` (here) and `peer` (in the namespace `netns`).
    pub(crate) fn create_veth(&mut self, host: &str, peer: &str, netns: &Path) -> io::Result<()> {
        let ns = std::fs::File::open(netns)?;
        let mut inner = LinkMessage::default();
        inner
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        inner
            .attributes
            .push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_owned()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(inner))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Exists::Fail,
        )?;
        Ok(())
    }

    /// Sets interface `index` up, attached to `master` when given.
    pub(crate) fn set_up(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.extend(master.map(LinkAttribute::Controller));
        self.request(RouteNetlinkMessage::NewLink(msg), 0, Exists::Fail)?;
        Ok(())
    }

    /// Turns on hairpin mode of bridge port `index` (a pod reaches itself through the
    /// host's published ports), as the bridge plugin's `hairpinMode`.
    pub(crate) fn hairpin(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), 0, Exists::Fail)?;
        Ok(())
    }

    /// Gives interface `index` the address `ip/prefix` (already there: fine when `shared`,
    /// as the bridge's gateway address, which every pod's attachment asks for).
    pub(crate) fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        shared: bool,
    ) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        let broadcast =
            Ipv4Addr::from(u32::from(ip) | (u32::MAX.checked_shr(prefix.into()).unwrap_or(0)));
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        let exists = if shared { Exists::Ok } else { Exists::Fail };
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            exists,
        )?;
        Ok(())
    }

    /// The default route through `gateway` on interface `index`.
    pub(crate) fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Exists::Fail,
        )?;
        Ok(())
    }

    /// Takes the interface `name` down and off its bridge, leaving its deletion to the
    /// kernel's teardown of the namespace its peer is in; none is fine. A deletion here
    /// would wait for RCU callbacks (`rcu_barrier` after the device is unregistered: 10-50
    /// ms), this for an expedited grace period at most; a detached veth passes nothing.
    pub(crate) fn detach(&mut self, name: &str) -> io::Result<()> {
        let Some(index) = self.index(name)? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::Controller(0));
        match self.request(RouteNetlinkMessage::NewLink(msg), 0, Exists::Fail) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes the interface `name` (a veth takes its peer with it); none is fine.
    pub(crate) fn delete(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0, Exists::Fail) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => Err(e),
            _ => Ok(()),
        }
    }
}
