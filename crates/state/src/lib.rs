//! The on-disk record of containers under a state root (`--root`, default `/run/peapod`).
//!
//! Each container has a directory `ROOT/ID/` holding `state.json` and, between `create` and
//! `start`, the `exec.fifo` its process waits on. [`ContainerId`] keeps ids safe to use as a
//! path component; [`Store::create`] and [`Store::load`] hand out an [`Entry`] that holds an
//! exclusive `flock` on the container for as long as it lives, so two commands never change
//! one container at once; [`Entry::save`] writes atomically (temporary file, `fsync`,
//! `rename`), so a crash leaves either the old or the new state, never half of one.
//!
//! ```no_run
//! use peapod_state::{ContainerId, Durability, Record, Store};
//!
//! let store = Store::open("/run/peapod".as_ref())?;
//! let id: ContainerId = "web-1".parse()?;
//! let entry = store.create(&id)?;
//! entry.save(&Record::new(&id, "/srv/bundle".into()), Durability::Synced)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`PrivateDir`] is the check of a directory only its owner can change, which the image
//! store and the CNI cache use too.
//!
//! It does not start or signal processes; [`Record::status`] only looks at them.
#![deny(missing_docs)]

mod entry;
mod error;
mod id;
mod private_dir;
mod process;
mod record;

pub use entry::{is_older_than, Durability, Entry, Salvaged, Store};
pub use error::{Error, Result};
pub use id::ContainerId;
pub use private_dir::{DirError, PrivateDir};
pub use process::ProcessIdentity;
pub use record::{rfc3339, rfc3339_nanos, ExitRecord, RawJson, Record, Status, OCI_VERSION};
