//! The pods' directory under the state root, and one locked pod directory in it.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use peapod_state::{ContainerId, Durability, Entry, Store};
use rustix::fs::{flock, FlockOperation};

use crate::error::mount_err;
use crate::{Error, PodRecord, Result};

/// The pods' directory, `STATE_ROOT/.pods`: a container id cannot start with `.`, so neither
/// `peapod list` nor a container can take it.
const PODS_DIR: &str = ".pods";
const RECORD_FILE: &str = "pod.json";

/// The pods under one state root.
#[derive(Debug, Clone)]
pub struct PodStore {
    dir: PathBuf,
}

/// One pod's directory, exclusively locked while this value lives. It holds `pod.json`, the
/// pinned namespaces (`ns/`), the infra process's empty root (`infra/`), emptyDir volumes
/// (`volumes/`) and the containers' logs (`logs/`).
#[derive(Debug)]
pub struct PodEntry {
    entry: Entry,
}

impl PodStore {
    /// Opens (making it when missing) the pods' directory under the state root `root`.
    pub fn open(root: &Path) -> Result<PodStore> {
        // The state root itself is made and checked (owner, mode) as for containers; the
        // pods' directory only once there is a pod.
        Store::open(root)?;
        Ok(PodStore {
            dir: Self::dir_of(root),
        })
    }

    /// The pods' directory of state root `root`.
    pub fn dir_of(root: &Path) -> PathBuf {
        root.join(PODS_DIR)
    }

    /// The pods' directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store of pod directories; `None` when there has been no pod since the last one
    /// was removed.
    fn store(&self) -> Result<Option<Store>> {
        match self.dir.exists() {
            true => Ok(Some(Store::open(&self.dir)?)),
            false => Ok(None),
        }
    }

    /// Checks a pod name: the rules of container ids.
    pub fn parse_name(name: &str) -> Result<ContainerId> {
        name.parse().map_err(|e| match e {
            peapod_state::Error::InvalidId { problem, .. } => Error::InvalidName {
                name: name.to_owned(),
                problem: problem.to_owned(),
            },
            other => Error::State(other),
        })
    }

    /// Makes the directory of a new pod and locks it. The pods' directory is made a private
    /// bind mount of itself first (once), as `ip netns` does with `/run/netns`: a namespace
    /// file cannot be bind-mounted where the mount would propagate to a peer (or back into
    /// the namespace itself), and a pin must not spread to other mount namespaces.
    pub fn create(&self, name: &ContainerId) -> Result<PodEntry> {
        self.locked(|| {
            let store = Store::open(self.dir())?;
            // A rootless pod pins nothing (its infra process holds its namespaces), and
            // could not mount.
            if nix::unistd::geteuid().is_root() {
                make_private(self.dir())?;
            }
            let entry = store.create(name).map_err(|e| match e {
                peapod_state::Error::Exists(_) => Error::Exists(name.to_string()),
                other => Error::State(other),
            })?;
            Ok(PodEntry { entry })
        })
    }

    /// Locks the directory of an existing pod.
    pub fn load(&self, name: &ContainerId) -> Result<PodEntry> {
        let Some(store) = self.store()? else {
            return Err(Error::NotFound(name.to_string()));
        };
        match store.load(name) {
            Ok(entry) => Ok(PodEntry { entry }),
            Err(peapod_state::Error::NotFound(_)) => Err(Error::NotFound(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Locks the directory of an existing pod if no other command holds it now; `None` when
    /// one does (or the pod is gone).
    pub fn try_load(&self, name: &ContainerId) -> Result<Option<PodEntry>> {
        let Some(store) = self.store()? else {
            return Ok(None);
        };
        match store.try_load(name) {
            Ok(entry) => Ok(entry.map(|entry| PodEntry { entry })),
            Err(peapod_state::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The record of pod `name` as it is now, read without waiting for its lock (a pod
    /// being made holds it until its network is up, and `pod list` must not wait for
    /// that): `pod.json` is replaced whole by a rename, so a reader sees one version of it.
    /// `None` when the pod is gone or has no record yet.
    pub fn peek(&self, name: &ContainerId) -> Result<Option<PodRecord>> {
        let path = self.dir.join(name.as_str()).join(RECORD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::State(peapod_state::Error::Corrupt { path, source })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Mount {
                what: "cannot read",
                path,
                source,
            }),
        }
    }

    /// The names of every pod, sorted.
    pub fn names(&self) -> Result<Vec<ContainerId>> {
        let Some(store) = self.store()? else {
            return Ok(Vec::new());
        };
        match store.ids() {
            Ok(ids) => Ok(ids),
            // Removed by the last `pod rm` meanwhile: no pods.
            Err(peapod_state::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a pod's directory (its pins must be gone already); after the last pod, also
    /// the private mount and the pods' directory, so that no trace of pods is left.
    pub fn remove(&self, entry: PodEntry) -> Result<()> {
        entry.entry.remove()?;
        self.locked(|| {
            if self.names()?.is_empty() {
                match umount2(self.dir(), MntFlags::MNT_DETACH) {
                    // EPERM: rootless (nothing was mounted).
                    Ok(()) | Err(nix::Error::EINVAL | nix::Error::EPERM) => {}
                    Err(e) => return Err(mount_err("cannot unmount", self.dir())(e)),
                }
                // Another command may have opened it meanwhile: then it stays.
                let _ = std::fs::remove_dir(self.dir());
            }
            Ok(())
        })
    }

    /// Runs `f` holding the lock of the pods' directory (re-made if a `remove` took it away
    /// while we waited).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let dir = self.dir();
        let lock = loop {
            let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
            let file = match File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(dir)
            {
                Ok(file) => file,
                // Removed by the last `remove` between our mkdir and open: again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Mount {
                        what: "cannot open",
                        path: dir.to_owned(),
                        source,
                    })
                }
            };
            loop {
                match flock(&file, FlockOperation::LockExclusive) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => other.map_err(|e| Error::Mount {
                        what: "cannot lock",
                        path: dir.to_owned(),
                        source: e.into(),
                    })?,
                }
                break;
            }
            let same = match (file.metadata(), std::fs::metadata(dir)) {
                (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
                _ => false,
            };
            if same {
                break file;
            }
        };
        let result = f();
        drop(lock);
        result
    }
}

/// Makes `dir` a mount point with private propagation: `mount --make-private DIR`, and when
/// that fails because `dir` is no mount point, a bind mount of itself first.
fn make_private(dir: &Path) -> Result<()> {
    let private = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
    };
    match private() {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(mount_err("cannot bind-mount", dir))?;
            private().map_err(mount_err("cannot make private", dir))
        }
        Err(e) => Err(mount_err("cannot make private", dir)(e)),
    }
}

impl PodEntry {
    /// The pod's name.
    pub fn name(&self) -> &ContainerId {
        self.entry.id()
    }

    /// The pod's directory.
    pub fn dir(&self) -> &Path {
        self.entry.dir()
    }

    /// A subdirectory of the pod's directory, made when missing.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir().join(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&dir)
            .map_err(|source| Error::Mount {
                what: "cannot make directory",
                path: dir.clone(),
                source,
            })?;
        Ok(dir)
    }

    /// The record, or `None` when `pod create` died before writing one.
    pub fn record(&self) -> Result<Option<PodRecord>> {
        Ok(self.entry.read_json(RECORD_FILE)?)
    }

    /// What can be read of a corrupt `pod.json` (see [`PodRecord::salvage`]); its network
    /// from the copy written before ADD when `pod.json` no longer says.
    pub fn salvage(&self) -> PodRecord {
        let bytes = std::fs::read(self.dir().join(RECORD_FILE)).unwrap_or_default();
        let mut record = PodRecord::salvage(self.name(), &bytes);
        if record.network.is_none() {
            record.network = self.read_json(crate::network::NETWORK_FILE).ok().flatten();
        }
        record
    }

    /// Writes the record atomically and durably: a pod outlives the command that made it.
    pub fn save(&self, record: &PodRecord) -> Result<()> {
        Ok(self
            .entry
            .save_json(RECORD_FILE, record, Durability::Synced)?)
    }

    /// Reads and writes another JSON file of the pod (the plan of a played manifest).
    pub fn save_json<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        Ok(self.entry.save_json(name, value, Durability::Synced)?)
    }

    /// Reads a JSON file written by [`PodEntry::save_json`].
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        Ok(self.entry.read_json(name)?)
    }
}
