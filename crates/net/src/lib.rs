//! Networking for peapod's pods: CNI plugins run as the
//! [specification](https://www.cni.dev/docs/spec/) says, and the `/etc` files a pod's
//! containers get.
//!
//! - [`Cni`] finds a network's configuration list by name ([`Cni::network`]; peapod's
//!   default network `peapod` is written when missing, on a free subnet) and runs its plugins:
//!   [`Cni::add`], [`Cni::check`], [`Cni::del`], each plugin with `CNI_COMMAND`,
//!   `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH`, its
//!   configuration on stdin with the previous plugin's result as `prevResult`, within a
//!   timeout. A failed ADD is followed by a DEL.
//! - Each attachment is cached on disk ([`CacheEntry`], as libcni's `results/` cache) before
//!   its first plugin runs, so that DEL runs with exactly what ADD had, also after a crash.
//! - [`fast`]: the default network `peapod`, while its list is the one peapod wrote,
//!   attached in-process (netlink, host-local's leases, one nftables transaction) unless
//!   [`Backend::Cni`] is asked for; cached as the plugins' attachments are.
//! - [`ports`]: the host ports a pod publishes, checked free and held ([`ports::claim`]).
//! - [`usermode`]: pasta or slirp4netns, the user-mode network of a rootless pod.
//! - [`etc`]: `/etc/hosts` and `/etc/resolv.conf` (loopback resolvers replaced by the
//!   upstream ones, as podman does).
//!
//! The CNI types (configuration lists, results of cniVersion 1.0.0 and 0.4.0) are those of
//! the `rscni-types` crate.
//!
//! ```no_run
//! use peapod_net::{Attachment, Cni};
//!
//! let cni = Cni::default();
//! let network = cni.network("peapod")?;
//! let added = cni.add(&network, &Attachment {
//!     container_id: "web".into(),
//!     netns: "/run/netns/web".into(),
//!     ifname: "eth0".into(),
//!     ports: vec!["8080:80".parse()?],
//!     ip: None,
//!     owner: serde_json::Value::Null,
//! })?;
//! println!("{:?}", added.addresses());
//! cni.del(&added.cache_file)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod cni;
mod config;
mod error;
pub mod etc;
mod exec;
pub mod fast;
pub mod ports;
pub mod usermode;

pub use cache::{
    entries as cache_entries, load as load_cache_entry, path as cache_path, CacheEntry,
};
pub use cni::{addresses, parse_result, Added, Attachment, Backend, Cni, PortMapping};
pub use config::{
    default_bridge, default_lease_dir, default_list, find, find_or_default, host_routes, overlaps,
    pick_subnet, NetworkList, DEFAULT_BRIDGE, DEFAULT_CONFIG_DIR, DEFAULT_NETWORK,
};
pub use error::{Error, Result};
pub use rscni_types::ipnet;
