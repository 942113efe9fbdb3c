//! The state root and one locked container directory in it.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::io;
use crate::private_dir::{DirError, PrivateDir};
use crate::{ContainerId, Error, Record, Result};

pub(crate) const STATE_FILE: &str = "state.json";
/// The fifo a created container's process blocks on until `start` reads from it.
pub(crate) const EXEC_FIFO: &str = "exec.fifo";
/// A file beside the record of a container that has an owner (see [`Record::owner`]),
/// holding that owner as `PID START_TIME`: [`Store::abandoned`], which every command calls,
/// looks only at marked entries, and reads the owner from the mark rather than the record
/// (an empty mark, as older peapods wrote, sends it to the record).
pub(crate) const OWNED_MARK: &str = "owned";

/// How old an entry without mark or record must be before [`Store::abandoned`] names it.
pub(crate) const UNMARKED_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The owner an [`OWNED_MARK`] names, or `None` for an empty (older peapod's) or partial one.
fn parse_mark(mark: &[u8]) -> Option<crate::ProcessIdentity> {
    let (pid, start_time) = std::str::from_utf8(mark).ok()?.split_once(' ')?;
    Some(crate::ProcessIdentity {
        pid: pid.parse().ok().filter(|pid| *pid > 0)?,
        start_time: start_time.parse().ok()?,
    })
}

/// Whether `path` was last changed longer than `age` ago.
pub fn is_older_than(path: &Path, age: std::time::Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > age))
}

/// The state root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Whether [`Entry::save`] waits for the record to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`ed: for a container that outlives the command that made it (`create`,
    /// `run --detach`).
    Synced,
    /// Not synced: for a record its command removes again before it returns (a foreground
    /// `run`), where the two `fsync`s would cost more than the rest of the start-up (2 ms
    /// on an ext4 state root) and protect nothing: after a crash of the machine its process
    /// is gone either way.
    Volatile,
}

/// Refuses a state root that is a symlink, or that another user owns or can write to: in a
/// shared directory such as `/tmp` (the fallback of an ordinary user without
/// `XDG_RUNTIME_DIR`) someone else could have made it first, to read or plant state.
/// Makes it (mode 0700) when missing.
fn create_root(root: &Path) -> Result<()> {
    match PrivateDir::create(root, 0o700) {
        Ok(_) => Ok(()),
        Err(DirError::Unsafe { path, problem }) => Err(Error::UnsafeRoot { path, problem }),
        Err(DirError::Io { path, source }) => Err(io("cannot create state root", &path)(source)),
    }
}

/// What [`Entry::salvage`] found in a corrupt record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvaged {
    /// The container process, if its identity was readable.
    pub process: Option<crate::ProcessIdentity>,
    /// Its cgroup directories, if readable.
    pub cgroup_paths: Vec<PathBuf>,
}

/// One container's directory, exclusively locked while this value lives.
#[derive(Debug)]
pub struct Entry {
    id: ContainerId,
    dir: PathBuf,
    // The directory, open: holds the flock (closing it releases the lock), and is what
    // `save` syncs.
    lock: File,
}

impl Store {
    /// Opens the state root, creating it (mode 0700) when missing.
    pub fn open(root: &Path) -> Result<Store> {
        create_root(root)?;
        Ok(Store {
            root: root.to_owned(),
        })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the directory of a new container and locks it.
    pub fn create(&self, id: &ContainerId) -> Result<Entry> {
        let dir = self.root.join(id.as_str());
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(io("cannot create state directory", &dir)(e)),
        }
        lock(id, dir)
    }

    /// Locks the directory of an existing container (waiting while another command holds it).
    pub fn load(&self, id: &ContainerId) -> Result<Entry> {
        let dir = self.root.join(id.as_str());
        let entry = lock(id, dir)?;
        // A `delete` may have removed the directory while we waited for the lock.
        if !entry.dir.exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(entry)
    }

    /// Locks the directory of an existing container if no other command holds it now;
    /// `None` when one does (a `create` still at work, or any command on it).
    pub fn try_load(&self, id: &ContainerId) -> Result<Option<Entry>> {
        let dir = self.root.join(id.as_str());
        let Some(entry) = lock_with(id, dir, FlockOperation::NonBlockingLockExclusive)? else {
            return Ok(None);
        };
        if !entry.dir.exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(Some(entry))
    }

    /// The containers whose record names an owner that is gone (see
    /// [`Record::is_abandoned`]), those marked owned that have no record yet, and those with
    /// neither mark nor record for a minute: found by reading only the owner of the records
    /// marked as owned ([`OWNED_MARK`]), without taking any lock, so that every command can afford to
    /// look however many containers there are. The caller locks each one and checks again
    /// before it removes anything.
    pub fn abandoned(&self) -> Result<Vec<ContainerId>> {
        #[derive(serde::Deserialize)]
        struct Owner {
            #[serde(default)]
            owner: Option<crate::ProcessIdentity>,
        }
        Ok(self
            .ids()?
            .into_iter()
            .filter(|id| {
                let dir = self.root.join(id.as_str());
                let Ok(mark) = fs::read(dir.join(OWNED_MARK)) else {
                    // Neither owned nor recorded: made by a `create` killed in the instant
                    // between making the directory and marking it (or half-made by an older
                    // peapod). One that young may be a live `create`'s, not locked yet.
                    return !dir.join(STATE_FILE).exists() && is_older_than(&dir, UNMARKED_AGE);
                };
                // Many containers made at once each find all the others at work, owned:
                // their owners are read from the marks, not from records of some kilobytes.
                // A mark caught half-written does not parse, and the record is read.
                if let Some(owner) = parse_mark(&mark) {
                    return !owner.is_alive();
                }
                let bytes = match fs::read(dir.join(STATE_FILE)) {
                    Ok(bytes) => bytes,
                    // Owned and no record yet: its owner is creating it, or died doing so;
                    // the caller tells which by the lock (held while it is created).
                    Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
                };
                let owner = serde_json::from_slice::<Owner>(&bytes)
                    .ok()
                    .and_then(|o| o.owner);
                owner.is_some_and(|owner| !owner.is_alive())
            })
            .collect())
    }

    /// The container a person means by `text`, as docker reads it: the container whose id
    /// is `text` (a `--name` is an id), else the one generated id ([`ContainerId::is_generated`])
    /// that begins with `text`, given at least [`ContainerId::MIN_PREFIX`] hex digits.
    /// [`Error::Ambiguous`] when it begins several; `text` itself when it begins none, so
    /// that the command says the container does not exist in its own words (runc's).
    ///
    /// The exact id is tried first, with one `stat` and no scan of the root: containerd,
    /// podman and scripts pass whole ids, and pay nothing for prefixes.
    pub fn resolve(&self, text: &str) -> Result<ContainerId> {
        let id: ContainerId = text.parse()?;
        if !id.could_be_prefix() || fs::symlink_metadata(self.root.join(text)).is_ok() {
            return Ok(id);
        }
        let mut candidates: Vec<ContainerId> = self
            .ids()?
            .into_iter()
            .filter(|c| c.is_generated() && c.as_str().starts_with(text))
            .collect();
        match candidates.len() {
            0 => Ok(id),
            1 => Ok(candidates.remove(0)),
            _ => Err(Error::Ambiguous {
                prefix: text.to_owned(),
                candidates: candidates.into_iter().map(|c| c.to_string()).collect(),
            }),
        }
    }

    /// The ids of every container in the store, sorted.
    pub fn ids(&self) -> Result<Vec<ContainerId>> {
        let mut ids: Vec<ContainerId> = fs::read_dir(&self.root)
            .map_err(io("cannot list", &self.root))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn lock(id: &ContainerId, dir: PathBuf) -> Result<Entry> {
    lock_with(id, dir, FlockOperation::LockExclusive)?
        .ok_or_else(|| Error::NotFound(id.to_string()))
}

/// Opens and locks `dir` with `operation`; `None` when a non-blocking lock is held elsewhere.
fn lock_with(id: &ContainerId, dir: PathBuf, operation: FlockOperation) -> Result<Option<Entry>> {
    let lock = match File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&dir)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.to_string()))
        }
        Err(e) => return Err(io("cannot open state directory", &dir)(e)),
    };
    loop {
        match flock(&lock, operation) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            other => other.map_err(|e| io("cannot lock", &dir)(e.into()))?,
        }
        break;
    }
    Ok(Some(Entry {
        id: id.clone(),
        dir,
        lock,
    }))
}

impl Entry {
    /// The container id.
    pub fn id(&self) -> &ContainerId {
        &self.id
    }

    /// The container's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the exec fifo.
    pub fn exec_fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Writes `record` atomically: a temporary file renamed over `state.json`, so a reader or
    /// a crash of peapod sees the old record or the new one, never half of one. With
    /// [`Durability::Synced`] the file and then the directory are `fsync`ed before and after
    /// the rename, so a crash of the machine cannot lose or tear it either.
    pub fn save(&self, record: &Record, durability: Durability) -> Result<()> {
        // Before the record: an owned record is never without its mark.
        let mark = self.dir.join(OWNED_MARK);
        if let Some(owner) = record.owner {
            self.mark_owned(owner)?;
        }
        // Compact: only programs read it, and an indented record cost a few thousand small
        // writes into the buffer (the indentation), each a `memcpy` call.
        let path = self.dir.join(STATE_FILE);
        let json = serde_json::to_vec(record).map_err(|e| Error::Corrupt {
            path: path.clone(),
            source: e,
        })?;
        self.write_file(STATE_FILE, &json, durability)?;
        // After the record: a record that no longer has an owner (a detached container whose
        // monitor is done) is no longer read by every command.
        if record.owner.is_none() {
            match fs::remove_file(&mark) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("cannot remove", &mark)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Marks the entry as owned by `owner` (see [`OWNED_MARK`]); before its record exists,
    /// so that [`Store::abandoned`] also finds it when its owner dies before saving a record.
    pub fn mark_owned(&self, owner: crate::ProcessIdentity) -> Result<()> {
        let mark = self.dir.join(OWNED_MARK);
        // One write of a few bytes: a reader sees it whole, or an empty or partial mark that
        // does not parse (and reads the record instead).
        fs::write(&mark, format!("{} {}", owner.pid, owner.start_time))
            .map_err(io("cannot write", &mark))
    }

    /// The record, or `None` when `create` died before writing one.
    pub fn record(&self) -> Result<Option<Record>> {
        self.read_json(STATE_FILE)
    }

    /// What can still be read of a `state.json` that does not parse as a record: its
    /// process and cgroup, each taken on its own from whatever JSON is there, so that
    /// `delete --force` can still stop and remove them. Empty when nothing is readable.
    pub fn salvage(&self) -> Salvaged {
        let value: Option<serde_json::Value> = fs::read(self.dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let field = |name: &str| value.as_ref().and_then(|v| v.get(name)).cloned();
        Salvaged {
            process: field("process").and_then(|v| serde_json::from_value(v).ok()),
            cgroup_paths: field("cgroup_paths")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
        }
    }

    /// Writes `value` as the JSON file `name` in this entry's directory, indented, as
    /// atomically and durably as [`Entry::save`] writes `state.json`: for records other than a
    /// container's that live in the same store style (a pod's `pod.json`, whose salvage finds
    /// its fields by their indentation).
    pub fn save_json<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
        durability: Durability,
    ) -> Result<()> {
        let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
            path: self.dir.join(name),
            source: e,
        })?;
        self.write_file(name, &json, durability)
    }

    /// Writes `json` as the file `name` (see [`Entry::save_json`]).
    fn write_file(&self, name: &str, json: &[u8], durability: Durability) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let synced = durability == Durability::Synced;
        let mut file = File::create(&tmp).map_err(io("cannot write", &tmp))?;
        file.write_all(json).map_err(io("cannot write", &tmp))?;
        if synced {
            file.sync_data().map_err(io("cannot sync", &tmp))?;
        }
        if synced {
            fs::rename(&tmp, &path).map_err(io("cannot replace", &path))?;
            self.lock.sync_all().map_err(io("cannot sync", &self.dir))?;
        } else {
            self.replace_unsynced(&tmp, &path)?;
        }
        Ok(())
    }

    /// Puts `tmp` in the place of `path` as atomically as `rename` does, without making the
    /// filesystem write it out: ext4 (`auto_da_alloc`) starts writing a file's data as soon as
    /// it is renamed over another, so that a record nobody syncs would get blocks on the disk,
    /// and freeing them when the container is deleted waits for a discard on a `discard`
    /// mount (0.1 to 4 ms per `run` on an ext4 `/run`). The two names are exchanged instead
    /// (readers see the old record or the new one, as with `rename`), and the old one is
    /// unlinked; where there is nothing to exchange with yet, or the filesystem cannot
    /// exchange, it is a plain `rename`.
    fn replace_unsynced(&self, tmp: &Path, path: &Path) -> Result<()> {
        use rustix::fs::{renameat_with, RenameFlags};
        let (Some(tmp_name), Some(name)) = (tmp.file_name(), path.file_name()) else {
            return fs::rename(tmp, path).map_err(io("cannot replace", path));
        };
        // Relative to the entry's directory, held open: no walk of the state root's path.
        match renameat_with(
            &self.lock,
            tmp_name,
            &self.lock,
            name,
            RenameFlags::EXCHANGE,
        ) {
            Ok(()) => fs::remove_file(tmp).map_err(io("cannot remove", tmp)),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                fs::rename(tmp, path).map_err(io("cannot replace", path))
            }
            Err(e) => Err(io("cannot replace", path)(e.into())),
        }
    }

    /// The JSON file `name` written by [`Entry::save_json`], or `None` when there is none.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", &path)(e)),
        }
    }

    /// Removes the container's directory and everything in it.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(io("cannot remove", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_root_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("state");
        Store::open(&root).expect("a fresh root is ours");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = Store::open(&root).expect_err("world-writable");
        assert!(err.to_string().contains("writable by others"), "{err}");
        fs::remove_dir(&root).expect("rmdir");
        std::os::unix::fs::symlink(dir.path(), &root).expect("symlink");
        let err = Store::open(&root).expect_err("a symlink");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
    }

    #[test]
    fn prefixes_name_one_generated_id_and_names_match_exactly() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&root.path().join("state")).expect("open");
        let abc1 = format!("abc1{}", "0".repeat(60));
        let abc2 = format!("abc2{}", "0".repeat(60));
        for id in [&abc1, &abc2, &"abc".to_owned(), &"abcd".to_owned()] {
            drop(store.create(&id.parse().expect("id")).expect("create"));
        }
        let resolve = |text: &str| store.resolve(text).map(|id| id.to_string());
        assert_eq!(resolve("abc1").expect("unique"), abc1);
        assert_eq!(resolve("abc20").expect("unique"), abc2);
        // A name (an exact id) before any prefix.
        assert_eq!(resolve("abc").expect("exact"), "abc");
        assert_eq!(resolve("abcd").expect("exact"), "abcd");
        // Too short, not hex, or beginning nothing: unchanged.
        assert_eq!(resolve("ab").expect("short"), "ab");
        assert_eq!(resolve("abx").expect("not hex"), "abx");
        assert_eq!(resolve("fff").expect("none"), "fff");
        std::fs::remove_dir(root.path().join("state/abc")).expect("rmdir");
        let err = resolve("abc").expect_err("ambiguous");
        assert!(
            matches!(&err, Error::Ambiguous { candidates, .. } if candidates == &[abc1.clone(), abc2.clone()]),
            "{err}"
        );
    }

    #[test]
    fn create_save_load_remove() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&root.path().join("state")).expect("open");
        let id: ContainerId = "c1".parse().expect("id");
        let entry = store.create(&id).expect("create");
        assert!(matches!(store.create(&id), Err(Error::Exists(_))));
        assert_eq!(entry.record().expect("read"), None);
        let record = Record::new(&id, "/bundle".into());
        entry.save(&record, Durability::Synced).expect("save");
        drop(entry);
        let entry = store.load(&id).expect("load");
        assert_eq!(entry.record().expect("read"), Some(record));
        assert_eq!(store.ids().expect("ids"), vec![id.clone()]);
        entry.remove().expect("remove");
        assert!(matches!(store.load(&id), Err(Error::NotFound(_))));
        assert!(store.ids().expect("ids").is_empty());
    }

    #[test]
    fn an_unsynced_save_replaces_the_record_and_leaves_no_other_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&root.path().join("state")).expect("open");
        let id: ContainerId = "c1".parse().expect("id");
        let entry = store.create(&id).expect("create");
        let mut record = Record::new(&id, "/bundle".into());
        // The first save has no record to exchange with, the second one has.
        entry.save(&record, Durability::Volatile).expect("save");
        let first = fs::metadata(entry.dir().join(STATE_FILE)).expect("stat");
        record.annotations.insert("k".into(), "v".into());
        entry
            .save(&record, Durability::Volatile)
            .expect("save again");
        assert_eq!(entry.record().expect("read"), Some(record));
        use std::os::unix::fs::MetadataExt as _;
        let second = fs::metadata(entry.dir().join(STATE_FILE)).expect("stat");
        assert_ne!(first.ino(), second.ino(), "a new file, put in place whole");
        let mut names: Vec<_> = fs::read_dir(entry.dir())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, [STATE_FILE]);
        entry.remove().expect("remove");
    }

    #[test]
    fn abandoned_lists_the_owned_records_whose_owner_is_gone() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("open");
        let me = crate::ProcessIdentity::of(std::process::id() as i32).expect("own identity");
        // This PID with another start time: a process that is gone.
        let gone = crate::ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        for (name, owner) in [("live", Some(me)), ("gone", Some(gone)), ("detached", None)] {
            let id: ContainerId = name.parse().expect("id");
            let entry = store.create(&id).expect("create");
            let mut record = Record::new(&id, "/bundle".into());
            record.owner = owner;
            entry.save(&record, Durability::Volatile).expect("save");
            assert_eq!(
                entry.dir().join(OWNED_MARK).exists(),
                owner.is_some(),
                "{name}"
            );
        }
        let gone_id: ContainerId = "gone".parse().expect("id");
        assert_eq!(
            store.abandoned().expect("abandoned"),
            std::slice::from_ref(&gone_id)
        );
        // Owned by a process that is gone, and no record: listed, for the caller to check its
        // lock; owned by a live one (at work on it): not.
        let half: ContainerId = "half".parse().expect("id");
        let entry = store.create(&half).expect("create");
        entry.mark_owned(gone).expect("mark");
        assert_eq!(
            fs::read_to_string(entry.dir().join(OWNED_MARK)).expect("mark"),
            format!("{} {}", gone.pid, gone.start_time)
        );
        assert_eq!(
            store.abandoned().expect("abandoned"),
            [gone_id.clone(), half.clone()]
        );
        entry.mark_owned(me).expect("mark");
        assert_eq!(
            store.abandoned().expect("abandoned"),
            std::slice::from_ref(&gone_id)
        );
        // An empty mark (an older peapod's) or a partial one: the record says, and without
        // one the entry is listed.
        for mark in ["", "12"] {
            fs::write(entry.dir().join(OWNED_MARK), mark).expect("mark");
            assert_eq!(
                store.abandoned().expect("abandoned"),
                [gone_id.clone(), half.clone()]
            );
        }
        fs::write(root.path().join("gone").join(OWNED_MARK), "").expect("mark");
        assert_eq!(
            store.abandoned().expect("abandoned"),
            [gone_id.clone(), half.clone()]
        );
        drop(entry);
        store.load(&half).expect("load").remove().expect("remove");
        // Only marked records are read.
        fs::remove_file(root.path().join("gone").join(OWNED_MARK)).expect("unmark");
        assert!(store.abandoned().expect("abandoned").is_empty());
    }

    #[test]
    fn try_load_does_not_wait_for_a_held_lock() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("open");
        let id: ContainerId = "c3".parse().expect("id");
        let entry = store.create(&id).expect("create");
        assert!(store.try_load(&id).expect("try_load").is_none());
        drop(entry);
        assert!(store.try_load(&id).expect("try_load").is_some());
    }

    #[test]
    fn salvage_reads_what_it_can_of_a_corrupt_record() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("open");
        let id: ContainerId = "c4".parse().expect("id");
        let entry = store.create(&id).expect("create");
        let path = entry.dir().join(STATE_FILE);
        // Valid JSON, but not a record (no id): the process and cgroup are still found.
        fs::write(
            &path,
            r#"{"process":{"pid":7,"start_time":9},"cgroup_paths":["/sys/fs/cgroup/x"]}"#,
        )
        .expect("write");
        assert!(matches!(entry.record(), Err(Error::Corrupt { .. })));
        let salvaged = entry.salvage();
        assert_eq!(salvaged.process.map(|p| p.pid), Some(7));
        assert_eq!(salvaged.cgroup_paths, [PathBuf::from("/sys/fs/cgroup/x")]);
        fs::write(&path, "{\"process\": {\"pid\"").expect("write");
        assert_eq!(entry.salvage(), Salvaged::default());
    }

    #[test]
    fn a_second_locker_waits_for_the_first() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::open(root.path()).expect("open");
        let id: ContainerId = "c2".parse().expect("id");
        let entry = store.create(&id).expect("create");
        let (tx, rx) = std::sync::mpsc::channel();
        let store2 = store.clone();
        let id2 = id.clone();
        let waiter = std::thread::spawn(move || {
            let got = store2.load(&id2).map(|_| ());
            tx.send(got.is_ok()).expect("send");
        });
        // While we hold the lock, the other side cannot have it.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        drop(entry);
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(true)
        );
        waiter.join().expect("join");
    }
}
