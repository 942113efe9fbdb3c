//! Linux namespaces for peapod: the kinds, a typed set of them, and the few operations a
//! runtime needs on them.
//!
//! - [`Namespace`] and [`NamespaceSet`] name the kinds with their clone flags and their
//!   `/proc/PID/ns` file names.
//! - [`clone_into`] starts a child process in new namespaces with a single `clone3(2)` (one
//!   process, no exec), so a new PID namespace makes that child PID 1 at once;
//!   [`clone_into_cgroup`] also starts it in a cgroup v2 directory.
//! - [`join`] enters an existing namespace by path (`setns(2)`), [`NamespaceId::of`] reads a
//!   process's namespace identity (the inode of `/proc/PID/ns/KIND`).
//! - [`bring_up_loopback`] sets `lo` up in a fresh network namespace through rtnetlink;
//!   [`set_hostname`] and [`set_domainname`] name a fresh UTS namespace; [`write_id_maps`]
//!   maps ids into a fresh user namespace.
//!
//! ```no_run
//! use peapod_ns::{clone_into, Forked, Namespace, NamespaceSet};
//!
//! let set: NamespaceSet = [Namespace::Pid, Namespace::Uts].into_iter().collect();
//! // SAFETY: the program is single-threaded here, and the child only calls async-signal-safe
//! // functions before it exits.
//! match unsafe { clone_into(set) }? {
//!     Forked::Child => unsafe { libc::_exit(if libc::getpid() == 1 { 0 } else { 1 }) },
//!     Forked::Parent(child) => println!("started {}", child.pid),
//! }
//! # Ok::<(), peapod_ns::Error>(())
//! ```
//!
//! This crate does not decide *which* namespaces a container gets, nor mount anything: that is
//! the container and rootfs crates' job.
#![deny(missing_docs)]

mod clone;
mod error;
mod id;
mod idmap;
mod join;
mod kind;
mod loopback;
mod userns;
mod uts;

pub use clone::{clone_into, clone_into_cgroup, ChildProcess, Forked};
pub use error::{Error, Result};
pub use id::NamespaceId;
pub use idmap::{write_id_maps, IdMap};
pub use join::{join, Target};
pub use kind::{Namespace, NamespaceSet, UnknownNamespace};
pub use loopback::bring_up_loopback;
pub use userns::{in_user_namespace, is_mapped, RootlessMaps};
pub use uts::{set_domainname, set_hostname};
