//! Control groups for peapod containers, on cgroup v1 (one hierarchy per controller), v2 (the
//! unified hierarchy) and the hybrid of both that many hosts still run.
//!
//! [`Layout::detect`] reads `/proc/self/mountinfo` and `/proc/self/cgroup` instead of assuming
//! a layout. [`Cgroup::create`] makes one cgroup for a container in every mounted hierarchy,
//! as runc does: those with controllers, and on v1 those that only group processes
//! (`name=systemd`, a hybrid host's cgroup2 mount: [`Layout::tracking`]);
//! [`Cgroup::apply`] writes the limits of an OCI `linux.resources`, to controller
//! hierarchies only;
//! [`Cgroup::filter_devices`] attaches the eBPF device program a [`DeviceFilter`] compiles
//! from `linux.resources.devices` to the cgroup2 directory (v2, and a hybrid host's cgroup2
//! mount: the kernel runs it before the v1 devices controller);
//! [`Cgroup::add`] moves a process in; [`Cgroup::freeze`], [`Cgroup::stats`],
//! [`Cgroup::kill_all`] and [`Cgroup::remove`] do the rest of a container's life.
//!
//! ```no_run
//! use peapod_cgroups::{Cgroup, Layout};
//!
//! let layout = Layout::detect()?;
//! let cgroup = Cgroup::create(&layout, &Cgroup::default_path("web-1"))?;
//! cgroup.add(std::process::id())?;
//! cgroup.kill_all(std::time::Duration::from_secs(5))?;
//! cgroup.remove()?;
//! # Ok::<(), peapod_cgroups::Error>(())
//! ```
//!
//! It is a small module of file writes rather than youki's `libcgroups` or kata's
//! `cgroups-rs` (see ARCHITECTURE.md for why); its eBPF is a hand-written program of a few
//! instruction kinds and five `bpf(2)` commands (`bpf.rs`). It does not do
//! rdma limits; the systemd driver ([`systemd`]) makes a transient scope over D-Bus (zbus)
//! and writes the rest as here.
#![deny(missing_docs)]

mod bpf;
mod cgroup;
mod device_filter;
mod error;
mod layout;
mod resources;
pub mod systemd;

pub use bpf::BpfError;
pub use cgroup::{Cgroup, FreezerState, Stats, DEFAULT_PARENT};
pub use device_filter::DeviceFilter;
pub use error::{Error, Result};
pub use layout::{Hierarchy, Layout};
