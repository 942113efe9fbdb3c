//! What each attachment was made with, kept on disk as libcni's cache keeps it
//! (`CACHE/results/NETWORK-CONTAINERID-IFNAME`), so that DEL gets exactly the configuration,
//! arguments and result ADD had, also after the configuration file changed, peapod was
//! killed, or the machine rebooted.
//!
//! Unlike libcni, the entry is written *before* the first plugin runs (with no result yet),
//! and again after each plugin with its result, so that an ADD cut short by a crash is still
//! found and undone by a later DEL that gives every plugin a `prevResult`.
//!
//! An entry decides what DEL runs (the configuration, the plugins' arguments, the network
//! namespace), so the cache directory and `results/` are checked as the state root is
//! ([`PrivateDir`]: this user's, not writable by others, not a link) before an entry is
//! written or read, and entries are never opened through a link.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use peapod_state::{DirError, PrivateDir};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::io;
use crate::{Error, Result};

/// One attachment, as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    /// `cniCacheV1`, as libcni's.
    pub kind: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// The network's name.
    pub network_name: String,
    /// `CNI_NETNS` at ADD.
    pub netns: PathBuf,
    /// `CNI_ARGS`.
    pub cni_args: String,
    /// The runtime's capability arguments (`portMappings`, ...), by capability.
    pub capability_args: serde_json::Map<String, Value>,
    /// The whole configuration list ADD ran with.
    pub config: Value,
    /// The result of the last plugin that gave one, cached after each plugin while ADD goes
    /// on; `None` before the first.
    pub result: Option<Value>,
    /// Who made it (peapod's state root and pod), for finding leftovers.
    #[serde(default)]
    pub owner: Value,
}

/// The cache file of an attachment.
pub fn path(cache_dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

/// The `results/` directory of the cache that holds `file`, checked; made (the cache 0700,
/// `results/` 0755 as before) only when `create`. `None` when there is no cache yet.
fn results_dir(file: &Path, create: bool) -> Result<Option<PrivateDir>> {
    let results = file.parent().unwrap_or(Path::new("/"));
    let cache = results.parent().unwrap_or(Path::new("/"));
    let name = results
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("results");
    let cache = if create {
        PrivateDir::create(cache, 0o700)
    } else {
        PrivateDir::open(cache)
    };
    match cache {
        Ok(cache) => Ok(Some(cache.subdir(name, 0o755)?)),
        Err(DirError::Io { source, .. })
            if !create && source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes an entry atomically.
pub(crate) fn save(file: &Path, entry: &CacheEntry) -> Result<()> {
    let Some(dir) = results_dir(file, true)? else {
        unreachable!("results_dir makes the directory when asked to");
    };
    let dir = dir.path();
    let text = serde_json::to_vec(entry).map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
    ));
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &text))
        .map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, file).map_err(io("cannot write", file))
}

/// Reads an entry; `None` when there is none.
pub fn load(file: &Path) -> Result<Option<CacheEntry>> {
    if results_dir(file, false)?.is_none() {
        return Ok(None);
    }
    let read = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        });
    match read {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::BadConfig {
                path: file.to_owned(),
                problem: format!("not a cached attachment: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read", file)(e)),
    }
}

/// Every entry in the cache, with its file.
pub fn entries(cache_dir: &Path) -> Vec<(PathBuf, CacheEntry)> {
    let dir = cache_dir.join("results");
    if let Err(e) = results_dir(&dir.join("entry"), false) {
        // What an untrusted cache says is not acted on; the warning says why.
        tracing::warn!("{e}");
        return Vec::new();
    }
    let Ok(files) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, CacheEntry)> = files
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter_map(|p| load(&p).ok().flatten().map(|e| (p, e)))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry() -> CacheEntry {
        CacheEntry {
            kind: "cniCacheV1".into(),
            container_id: "c1".into(),
            if_name: "eth0".into(),
            network_name: "net".into(),
            netns: "/proc/1/ns/net".into(),
            cni_args: String::new(),
            capability_args: serde_json::Map::new(),
            config: serde_json::json!({}),
            result: None,
            owner: Value::Null,
        }
    }

    /// The one-line error of saving into `cache`, which must name `named`.
    fn refusal(cache: &Path, named: &Path) -> String {
        let file = path(cache, "net", "c1", "eth0");
        let line = save(&file, &entry())
            .expect_err("an unsafe cache is refused")
            .to_string();
        assert!(line.contains(&named.display().to_string()), "{line}");
        assert!(!line.contains('\n'), "{line}");
        load(&file).expect_err("and not read");
        assert!(entries(cache).is_empty());
        line
    }

    #[test]
    fn entries_are_saved_loaded_and_listed_in_a_cache_of_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let file = path(&cache, "net", "c1", "eth0");
        assert_eq!(load(&file).expect("no cache yet"), None);
        save(&file, &entry()).expect("save");
        assert_eq!(load(&file).expect("load"), Some(entry()));
        assert_eq!(entries(&cache), vec![(file, entry())]);
        let mode = std::fs::metadata(&cache)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_planted_link_or_a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::create_dir(&cache).expect("mkdir");
        // `results` a link to a directory elsewhere: not followed, nothing written there.
        std::os::unix::fs::symlink(&outside, cache.join("results")).expect("symlink");
        let line = refusal(&cache, &cache.join("results"));
        assert!(line.contains("symbolic link"), "{line}");
        assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
        std::fs::remove_file(cache.join("results")).expect("rm");
        // A file planted as an entry through a link is not read.
        let file = path(&cache, "net", "c1", "eth0");
        save(&file, &entry()).expect("save");
        std::fs::remove_file(&file).expect("rm");
        std::fs::write(
            outside.join("x"),
            serde_json::to_vec(&entry()).expect("json"),
        )
        .expect("write");
        std::os::unix::fs::symlink(outside.join("x"), &file).expect("symlink");
        load(&file).expect_err("an entry through a link");
        std::fs::remove_file(&file).expect("rm");
        // World-writable.
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let line = refusal(&cache, &cache);
        assert!(line.contains("writable by others (mode 777)"), "{line}");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let results = cache.join("results");
        std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        refusal(&cache, &results);
        std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Another user's (nobody's), for root.
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).expect("chown");
            let line = refusal(&cache, &cache);
            assert!(line.contains("owned by uid 65534"), "{line}");
        }
    }
}
