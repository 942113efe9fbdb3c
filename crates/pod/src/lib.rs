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
//!   errors naming them. [`parse_file`] reads a file of several documents as `kubectl apply
//!   -f` does: ConfigMaps and Secrets feed the pods (env, volumes), and controllers' pod
//!   templates become pods named as their controllers name them.
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
//! On these, through `peapod-runtime`, a pod's life: [`create`] (its cgroup and its infra
//! process, `peapod-init -P` in an empty read-only root), [`attach`] a container to it
//! (joining its namespaces, below its cgroup), [`stop_pod`], [`remove`], [`list`],
//! [`details`], [`logs`], [`explain`] (what the kernel holds for a container or a pod, through
//! `peapod-explain`), and [`play`] of a manifest with its [`monitor`], which runs the
//! init containers and restarts the containers as `restartPolicy` says.
//!
//! A pod with two containers (as root):
//!
//! ```no_run
//! use peapod_pod::PodOptions;
//! use peapod_runtime::{CreateOptions, Runtime};
//!
//! let rt = Runtime::new("/run/peapod".into(), false);
//! let pod = PodOptions {
//!     name: "web".into(),
//!     hostname: None,
//!     share: vec![peapod_ns::Namespace::Net, peapod_ns::Namespace::Uts],
//!     labels: Vec::new(),
//!     init_path: Some("/usr/lib/peapod/peapod-init".into()),
//!     limits: Default::default(),
//!     network: Default::default(),
//!     log_opts: Vec::new(),
//!     userns: None,
//! };
//! peapod_pod::create(&rt, &pod)?;
//! let mut pids = Vec::new();
//! for id in ["web-server", "web-client"] {
//!     let mut spec = peapod_container::default_spec(None);
//!     spec.root_mut().as_mut().expect("a root").set_path("/srv/busybox".into());
//!     spec.process_mut()
//!         .as_mut()
//!         .expect("a process")
//!         .set_args(Some(vec!["/bin/hostname".into()]));
//!     // Holds the pod's lock until the container is recorded.
//!     let attached = peapod_pod::attach(&rt, "web", id, &mut spec, false, None)?;
//!     let options = CreateOptions {
//!         fifo: true,
//!         cgroup_parent: attached.cgroup(),
//!         ..CreateOptions::default()
//!     };
//!     pids.push(rt.create(id, &spec, "/srv".as_ref(), &options)?.detach());
//!     drop(attached);
//!     rt.start(id)?;
//! }
//! for pid in pids {
//!     assert_eq!(peapod_runtime::wait(pid)?, 0);
//! }
//! peapod_pod::remove(&rt, "web", true)?;
//! # Ok::<(), peapod_runtime::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod documents;
mod error;
mod explain;
mod hooks;
mod infra;
mod lifecycle;
mod manifest;
mod network;
mod pin;
mod play;
mod ports;
mod probes;
mod record;
mod resources;
mod security;
mod store;
mod subpath;
mod userns;

pub use config::{EnvValue, EnvVar, FileContent, PodFacts, ProjectedFile};
pub use documents::{parse_file, Documents, Owner, PlannedPod};
pub use error::{Error, Result};
pub use explain::{explain, Explained};
pub use lifecycle::{
    attach, create, details, join, list, log_limits, logs, monitor_ended, reap, remove, stop_pod,
    Attached, MemberDetails, PodDetails, PodOptions, PodSummary, POD_ANNOTATION,
};
pub use manifest::{
    parse as parse_manifest, ContainerPlan, ImageSource, ManifestError, MountPlan, NetworkPlan,
    Parsed, PodPlan, PullPolicy, RestartPolicy, VolumePlan, VolumeSource,
};
pub use network::{
    container_ports, create_container_network, has_container_network, published_ports,
    reap as reap_networks, remove_container_network, NetworkOptions, NetworkRecord, PodNetwork,
    CONTAINER_NETWORK_LABEL, IFNAME,
};
pub use peapod_net;
pub use pin::{pin, unpin};
pub use play::{monitor, play, Images, PlayArgs};
pub use record::{Member, PodRecord, PodStatus};
pub use resources::{quantity, ResourcesPlan};
pub use security::{Seccomp, SecurityPlan, SAFE_SYSCTLS};
pub use store::{PodEntry, PodStore};
pub use userns::user_namespace;

// Probes and lifecycle hooks of played containers (`probes.rs`, `hooks.rs`).
pub use probes::{Handler, Health, MemberHealth, Probe, BACKOFF_ANNOTATION};
