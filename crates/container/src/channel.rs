//! The parent/child protocol: one typed [`Message`] per datagram over a `SOCK_SEQPACKET`
//! socketpair.
//!
//! Datagrams keep message boundaries, and end-of-file is unambiguous: when the container
//! process execs, its end (close-on-exec) closes, so the parent reads "nothing more" exactly
//! when the entrypoint is running. When either side dies the other reads end-of-file too, so
//! no wait here can hang on a dead peer.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::ChildFailure;

/// What the two processes say to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Parent to child: the uid and gid maps of the new user namespace are written.
    Mapped,
    /// Parent to child (cgroup v2): the process is in its cgroup, and may now make its cgroup
    /// namespace, whose root is the cgroup it is in. On v1 the child moves itself.
    InCgroup,
    /// Child to parent: set up completely, waiting at the barrier before exec.
    Ready,
    /// Child to parent: the rootfs is mounted, `pivot_root` not done: run the `prestart`
    /// and `createRuntime` hooks.
    HooksDue,
    /// Parent to child: the runtime's hooks succeeded; run `createContainer` and go on.
    HooksDone,
    /// Parent to child: go on and exec the entrypoint.
    Start,
    /// Child to parent: a step failed; the child exits next.
    Failed(ChildFailure),
}

/// One end of the channel.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// Creates a connected pair: (parent's end, child's end), both close-on-exec.
pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Channel {
    /// Sends one message.
    pub(crate) fn send(&self, msg: &Message) -> io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Receives one message, or `None` at end-of-file (the peer closed or exec'd).
    pub(crate) fn recv(&self) -> io::Result<Option<Message>> {
        // The datagram's length first (MSG_PEEK | MSG_TRUNC reports it whole), then a buffer
        // of that size: not a zeroed 64 KiB one per message, whose pages the parent and the
        // child each copied after the clone (copy-on-write) only to read a few bytes.
        let len = match self.recv_into(&mut [0u8; 1], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            // The peer went (died, or exec'd) with a message of ours unread: it closed too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            other => other?,
        };
        if len == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        let n = self.recv_into(&mut buf, MsgFlags::empty())?;
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn recv_into(&self, buf: &mut [u8], flags: MsgFlags) -> io::Result<usize> {
        loop {
            match recv(self.fd.as_raw_fd(), buf, flags) {
                Err(nix::Error::EINTR) => continue,
                other => return Ok(other?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_follows_close() {
        let (parent, child) = pair().expect("pair");
        child.send(&Message::Ready).expect("send");
        let failure = ChildFailure {
            stage: "exec".into(),
            message: "/bin/nope: not found".into(),
            exit_code: 127,
        };
        child.send(&Message::Failed(failure.clone())).expect("send");
        // A long one arrives whole too (its length is read before it).
        let long = ChildFailure {
            message: "x".repeat(100_000),
            ..failure.clone()
        };
        child.send(&Message::Failed(long.clone())).expect("send");
        assert_eq!(parent.recv().expect("recv"), Some(Message::Ready));
        assert_eq!(parent.recv().expect("recv"), Some(Message::Failed(failure)));
        assert_eq!(parent.recv().expect("recv"), Some(Message::Failed(long)));
        drop(child);
        assert_eq!(parent.recv().expect("recv"), None);
    }

    /// A container process killed during set-up (by the OOM killer, say) before it read what
    /// the runtime sent: the kernel reports the reset once, and it reads as the end too.
    #[test]
    fn a_peer_gone_with_a_message_unread_is_an_end() {
        let (parent, child) = pair().expect("pair");
        parent.send(&Message::Start).expect("send");
        drop(child);
        assert_eq!(parent.recv().expect("recv"), None);
    }
}
