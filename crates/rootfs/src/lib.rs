//! Prepares a container's root filesystem from inside the container's new mount namespace.
//!
//! [`RootfsPlan`] says what the root should hold: the directory, the [`Mount`]s (proc, sysfs,
//! tmpfs, devpts, mqueue, cgroup and bind mounts, with their [`MountOptions`]), whether the root
//! is read-only. [`RootfsPlan::enter`] carries it out: it sets the mount tree's propagation
//! (rslave unless the plan says otherwise) and makes the mount holding the root private, so
//! nothing propagates to the host but what a mount asks for, binds the root onto itself, mounts everything, fills `/dev`
//! ([`DEFAULT_DEVICES`] and the standard links), then `pivot_root`s into it and detaches the old
//! root.
//!
//! Every path inside the root is resolved by [`InRoot`] with `openat2(RESOLVE_IN_ROOT)`, so a
//! rootfs holding `etc -> /` or `x -> ../../..` can never make peapod create or mount anything
//! outside it.
//!
//! ```no_run
//! use peapod_rootfs::{Mount, RootfsPlan};
//!
//! // In a child that is alone in a new mount (and PID) namespace:
//! let proc = Mount::new("/proc", "proc", &["nosuid", "noexec", "nodev"])?;
//! let dev = Mount::new("/dev", "tmpfs", &["nosuid", "mode=755", "size=65536k"])?;
//! let plan = RootfsPlan::new("/srv/rootfs".into()).with_mounts(vec![proc, dev]);
//! plan.enter()?;
//! // `/` is now /srv/rootfs, with /proc and a /dev holding the default devices.
//! # Ok::<(), peapod_rootfs::Error>(())
//! ```
//!
//! [`account_file`] and [`home_of`] read the image's `/etc/passwd` and `/etc/group` the same
//! way, for user names and `HOME`.
//!
//! An image's root is an [`Overlay`] of its unpacked layers and a writable layer of the
//! container's own, mounted on the root directory first ([`RootfsPlan::with_overlay`]).
//!
//! This crate does not create namespaces or processes, and it does not unpack images.
#![deny(missing_docs)]

mod accounts;
mod copy_up;
mod devices;
mod error;
mod in_root;
mod mount;
mod options;
mod overlay;
mod pivot;
mod plan;

pub use accounts::{account_file, home_of, ACCOUNT_FILE_LIMIT};
pub use devices::{Device, Node, NodeKind, DEFAULT_DEVICES};
pub use error::{Error, Result};
pub use in_root::InRoot;
pub use mount::Mount;
pub use options::{MountOptions, Propagation, RecursiveAttrs};
pub use overlay::Overlay;
pub use plan::RootfsPlan;
