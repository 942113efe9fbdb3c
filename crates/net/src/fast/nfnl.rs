//! One nf_tables transaction of set elements over netlink, in-process: the messages of
//! `netlink-packet-netfilter` (rust-netlink, as `netlink-packet-route` for the links) between
//! a batch's begin and end, sent at once on a `NETLINK_NETFILTER` socket, every message
//! acknowledged. The kernel applies all of a batch or none of it.

use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// `NFNL_SUBSYS_NFTABLES`: the subsystem a batch's begin and end name.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFTA_DATA_VALUE`, the attribute of a range's end.
const DATA_VALUE: u16 = 1;
/// How long the kernel may take to answer a batch.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What an element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    /// A set's element: nothing.
    None,
    /// A map's value (its bytes as the kernel keeps them).
    Value(Vec<u8>),
    /// A verdict map's `jump CHAIN`.
    Jump(&'static str),
}

/// One element of a set or map of an `inet` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The set or map.
    pub set: &'static str,
    /// The key's bytes (a concatenation's fields each padded to 4 bytes).
    pub key: Vec<u8>,
    /// The last key of a range (a set with `flags interval`).
    pub key_end: Option<Vec<u8>>,
    pub data: Data,
}

/// What a batch does with each element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Adds it (there already: fine).
    Add,
    /// Adds it, then deletes it: gone whether or not it was there.
    Remove,
}

/// Applies `change` to `elements` of table `table` (family inet) in one transaction.
/// `ENOENT` when the table, a set or a chain a verdict jumps to does not exist.
pub(crate) fn apply(table: &str, elements: &[Element], change: Change) -> io::Result<()> {
    let mut sets: Vec<&'static str> = elements.iter().map(|e| e.set).collect();
    sets.sort_unstable();
    sets.dedup();
    let of = |set: &'static str| elements.iter().filter(move |e| e.set == set);
    let mut changes: Vec<(NetfilterMessage, u16)> = sets
        .iter()
        .map(|set| (elements_message(table, set, of(set), true), NLM_F_CREATE))
        .collect();
    if change == Change::Remove {
        changes.extend(
            sets.iter()
                .map(|set| (elements_message(table, set, of(set), false), 0)),
        );
    }
    transact(changes)
}

fn control(message: ControlMessage) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, SUBSYS_NFTABLES),
        message,
    )
}

fn elements_message<'a>(
    table: &str,
    set: &str,
    elements: impl Iterator<Item = &'a Element>,
    add: bool,
) -> NetfilterMessage {
    let list = elements.map(|e| ListAttribute::Element(attributes(e, add)));
    let message = SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_owned()),
            SetElementList::Set(set.to_owned()),
            SetElementList::Elements(list.collect()),
        ],
    };
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
        match add {
            true => NfTablesMessage::NewSetElement(message),
            false => NfTablesMessage::DeleteSetElement(message),
        },
    )
}

/// An element's attributes: its key, its range's end, and (when added) its data.
fn attributes(element: &Element, add: bool) -> Vec<SetElementAttribute> {
    let mut out = vec![SetElementAttribute::Key(DataAttribute::Value(
        element.key.clone(),
    ))];
    if let Some(end) = &element.key_end {
        out.push(SetElementAttribute::KeyEnd(vec![DefaultNla::new(
            DATA_VALUE,
            end.clone(),
        )]));
    }
    match (&element.data, add) {
        (_, false) | (Data::None, _) => {}
        (Data::Value(bytes), true) => {
            out.push(SetElementAttribute::Data(DataAttribute::Value(
                bytes.clone(),
            )));
        }
        (Data::Jump(chain), true) => {
            out.push(SetElementAttribute::Data(DataAttribute::Verdict(vec![
                VerdictAttribute::Code(Verdict::Jump),
                VerdictAttribute::Chain((*chain).to_owned()),
            ])));
        }
    }
    out
}

/// The process's socket, kept open once made: closing a socket whose transaction removed
/// something waits for the kernel to free it after a grace period (nf_tables flushes that
/// work when the socket is released: 8-16 ms measured), which the process's exit does
/// later, by when it is mostly done.
/// Kept with the network namespace it acts in (the caller's, when made).
static SOCKET: Mutex<Option<(Socket, NetNs)>> = Mutex::new(None);
/// The next sequence number: unique across the transactions of the kept socket.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

/// A network namespace's identity: the device and inode of its `ns/net`.
type NetNs = (u64, u64);

fn current_netns() -> io::Result<NetNs> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((meta.dev(), meta.ino()))
}

fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(ANSWER_WITHIN.as_secs() as _, 0),
    )?;
    Ok(socket)
}

/// Sends `changes` (each with its flags) between a batch's begin and end in one datagram and
/// reads every change's acknowledgement; the first error the kernel reports.
fn transact(changes: Vec<(NetfilterMessage, u16)>) -> io::Result<()> {
    let here = current_netns()?;
    let mut kept = SOCKET.lock().unwrap_or_else(PoisonError::into_inner);
    let socket = match kept.take() {
        Some((socket, netns)) if netns == here => socket,
        _ => open()?,
    };
    let count = changes.len() as u32;
    let first = NEXT_SEQ.fetch_add(count + 2, Ordering::Relaxed);
    // The begin and end of a batch are not acknowledged; every change is, so that the
    // reader knows when the kernel is done with it.
    let mut batch = vec![(control(ControlMessage::BatchBegin), 0)];
    batch.extend(
        changes
            .into_iter()
            .map(|(message, flags)| (message, flags | NLM_F_ACK)),
    );
    batch.push((control(ControlMessage::BatchEnd), 0));
    let mut buf = Vec::new();
    for (seq, (message, flags)) in (first..).zip(batch) {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let at = buf.len();
        buf.resize(at + packet.buffer_len(), 0);
        packet.serialize(&mut buf[at..]);
    }
    let answered = socket
        .send(&buf, 0)
        .and_then(|_| read_acks(&socket, first, first + 1..=first + count));
    // A socket that failed to answer may hold a late answer: it goes.
    if answered.is_ok() {
        *kept = Some((socket, here));
    }
    answered.and_then(|errors| errors)
}

/// Reads the acknowledgements of the batch whose begin is `begin` until each of `changes`
/// has one: `Err` when reading failed, else the first error the kernel reported.
fn read_acks(
    socket: &Socket,
    begin: u32,
    changes: RangeInclusive<u32>,
) -> io::Result<io::Result<()>> {
    let mut awaited: Vec<u32> = changes.clone().collect();
    let mut first: Option<io::Error> = None;
    let mut buf = vec![0u8; 16 * 1024];
    while !awaited.is_empty() {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        let mut at = 0;
        while at < n {
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            let seq = reply.header.sequence_number;
            if let NetlinkPayload::Error(e) = reply.payload {
                if changes.contains(&seq) {
                    awaited.retain(|s| *s != seq);
                    if e.code.is_some() {
                        first.get_or_insert(e.to_io());
                    }
                } else if seq == begin || seq == changes.end() + 1 {
                    // The batch itself was refused: no other answer comes.
                    return Ok(Err(e.to_io()));
                }
            }
            if len == 0 {
                break;
            }
            at += (len + 3) & !3;
        }
    }
    Ok(first.map_or(Ok(()), Err))
}
