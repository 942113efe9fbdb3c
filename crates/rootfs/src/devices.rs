//! Device nodes and the standard links of a container's `/dev`.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use rustix::fs::{FileType, Mode};

use crate::error::os;
use crate::in_root::FdPath;
use crate::{Error, InRoot, Result};

/// A character device to create in the container's `/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// The name under `/dev`.
    pub name: &'static str,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// The devices every container gets, as runc and the OCI runtime spec list them.
pub const DEFAULT_DEVICES: [Device; 6] = [
    Device {
        name: "null",
        major: 1,
        minor: 3,
    },
    Device {
        name: "zero",
        major: 1,
        minor: 5,
    },
    Device {
        name: "full",
        major: 1,
        minor: 7,
    },
    Device {
        name: "random",
        major: 1,
        minor: 8,
    },
    Device {
        name: "urandom",
        major: 1,
        minor: 9,
    },
    Device {
        name: "tty",
        major: 5,
        minor: 0,
    },
];

/// The links of a standard `/dev`: name, target.
const LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

fn dev_path(name: &str) -> PathBuf {
    Path::new("/dev").join(name)
}

/// Creates `devices` in the root's `/dev` with mode 0666: with `mknod` where allowed, else
/// (in a user namespace, where the kernel refuses `mknod`) as bind mounts of the host's nodes.
/// Then adds the standard links.
pub(crate) fn populate_dev(root: &InRoot, devices: &[Device]) -> Result<()> {
    let dev = root.create_dir_all(Path::new("/dev"))?;
    for device in devices {
        let path = dev_path(device.name);
        let err = |source| Error::Device {
            path: path.clone(),
            source,
        };
        let made = rustix::fs::mknodat(
            &dev,
            device.name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(device.major, device.minor),
        );
        match made {
            Ok(()) => {
                // mknod's mode is filtered by the umask; the nodes must be usable by anyone.
                rustix::fs::chmodat(
                    &dev,
                    device.name,
                    Mode::from_raw_mode(0o666),
                    rustix::fs::AtFlags::empty(),
                )
                .map_err(|e| err(e.into()))?;
            }
            Err(e) if e == rustix::io::Errno::PERM => {
                let target = FdPath::new(root.create_file(&path)?);
                let host = dev_path(device.name);
                mount(
                    Some(host.as_path()),
                    target.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| err(os(e)))?;
            }
            Err(e) if e == rustix::io::Errno::EXIST => {}
            Err(e) => return Err(err(e.into())),
        }
    }
    for (name, target) in LINKS {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::EXIST => {}
            Err(e) => {
                return Err(Error::Device {
                    path: dev_path(name),
                    source: e.into(),
                })
            }
        }
    }
    Ok(())
}

/// The kind of a node in `linux.devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `c` (or `u`, unbuffered): a character device.
    Char,
    /// `b`: a block device.
    Block,
    /// `p`: a named pipe.
    Fifo,
}

/// A device node the spec asks for (`linux.devices`), at any path inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The path inside the container (`/dev/fuse`).
    pub path: PathBuf,
    /// Character, block or fifo.
    pub kind: NodeKind,
    /// Major number (not for a fifo).
    pub major: u32,
    /// Minor number (not for a fifo).
    pub minor: u32,
    /// Permission bits; 0666 when the spec gives none, as runc.
    pub mode: u32,
    /// Owner, as the container's ids.
    pub uid: u32,
    /// Group, as the container's ids.
    pub gid: u32,
}

/// Creates `nodes` inside the root, their directories too: `mknod`, then the owner and mode.
/// Where the kernel refuses `mknod` (a user namespace), the host's node at the same path is
/// bind-mounted instead, as runc does.
pub(crate) fn make_nodes(root: &InRoot, nodes: &[Node]) -> Result<()> {
    for node in nodes {
        let err = |source| Error::Device {
            path: node.path.clone(),
            source,
        };
        let (Some(parent), Some(name)) = (node.path.parent(), node.path.file_name()) else {
            return Err(err(std::io::Error::from_raw_os_error(libc::EINVAL)));
        };
        let dir = root.create_dir_all(parent)?;
        let kind = match node.kind {
            NodeKind::Char => FileType::CharacterDevice,
            NodeKind::Block => FileType::BlockDevice,
            NodeKind::Fifo => FileType::Fifo,
        };
        let mode = Mode::from_raw_mode(node.mode & 0o7777);
        let dev = rustix::fs::makedev(node.major, node.minor);
        match rustix::fs::mknodat(&dir, name, kind, mode, dev) {
            Ok(()) => {}
            // Whatever is there stays as it is, as runc leaves it: it may be a link, and
            // changing its owner or mode could reach through it.
            Err(rustix::io::Errno::EXIST) => continue,
            Err(rustix::io::Errno::PERM) => {
                let target = FdPath::new(root.create_file(&node.path)?);
                mount(
                    Some(node.path.as_path()),
                    target.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| err(os(e)))?;
                continue;
            }
            Err(e) => return Err(err(e.into())),
        }
        let no_follow = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(node.uid)),
            Some(rustix::fs::Gid::from_raw(node.gid)),
            no_follow,
        )
        .map_err(|e| err(e.into()))?;
        // mknod's mode is filtered by the umask; the spec's mode is meant exactly. The node
        // was made just now, in a directory opened inside the root.
        rustix::fs::chmodat(&dir, name, mode, rustix::fs::AtFlags::empty())
            .map_err(|e| err(e.into()))?;
    }
    Ok(())
}
