//! What the kernel holds for a container or a pod, read live from `/proc` and the cgroup
//! files rather than from any configuration: the answer to "how is this isolated?".
//!
//! [`Snapshot::of`] reads one process ([`Snapshot`]: its status, namespaces, id maps, root,
//! mounts, cgroups, network); [`ContainerReport::build`] compares a container's process with
//! the host's and its pod's, and [`PodReport::build`] lays a pod's members side by side.
//! Both serialize to JSON and render as text, with `why` adding one plain sentence per line.
//!
//! ```no_run
//! use peapod_explain::{ContainerReport, Peer};
//!
//! let pid = 4242; // a container's process, as its state records it
//! let report = ContainerReport::build("web", pid, &[] as &[Peer], None)?;
//! print!("{}", report.render(true, false));
//! # Ok::<(), peapod_explain::Error>(())
//! ```
//!
//! It reads; it never changes a process, a namespace or a cgroup. It knows nothing of peapod's
//! state store: the caller says which process is the container's and which are its peers.
#![deny(missing_docs)]

mod error;
mod pod;
mod report;
mod snapshot;
mod why;

pub use error::{Error, Result};
pub use pod::{PodMember, PodReport};
pub use report::{ContainerReport, NamespaceRow, Owner, Peer};
pub use snapshot::{CgroupLine, Limits, Snapshot};
