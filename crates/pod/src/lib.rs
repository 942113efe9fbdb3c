//! Pods for peapod: a group of containers that share some namespaces (network, IPC, UTS and
//! optionally PID) held by an infra process, as a Kubernetes Pod.
//!
//! - [`PodStore`] keeps one locked directory per pod under `STATE_ROOT/.pods/` (a name no
//!   container id can take), with the same id rules, `flock` and atomic writes as
//!   `peapod-state`; [`PodRecord`] is its `pod.json`, and [`PodRecord::status`] is read off
//!   the infra process each time.
//! - [`pin`] bind-mounts `/proc/PID/ns/KIND` onto a file in the pod's directory, so a
//!   namespace outlives any one process, as `ip netns add` does; `.pods` is made a private
//!   bind mount of itself first, so the pins neither propagate nor fail on a shared mount.
//! - [`parse_manifest`] reads a Kubernetes Pod manifest (YAML, with `serde_norway`) into a
//!   checked [`PodPlan`]: ignored fields become warnings, fields peapod would get wrong are
//!   errors naming them.
//!
//! ```no_run
//! use peapod_pod::{PodStore, PodRecord};
//!
//! let store = PodStore::open("/run/peapod".as_ref())?;
//! let name = "web".parse()?;
//! let entry = store.create(&name)?;
//! entry.save(&PodRecord::new(&name))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It starts no process: the CLI starts the infra process and the containers.
#![deny(missing_docs)]

mod error;
mod manifest;
mod pin;
mod record;
mod store;

pub use error::{Error, Result};
pub use manifest::{
    parse as parse_manifest, ContainerPlan, ManifestError, MountPlan, Parsed, PodPlan,
    RestartPolicy, VolumePlan, VolumeSource,
};
pub use pin::{pin, unpin};
pub use record::{Member, PodRecord, PodStatus};
pub use store::{PodEntry, PodStore};
