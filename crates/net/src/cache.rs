//! What each attachment was made with, kept on disk as libcni's cache keeps it
//! (`CACHE/results/NETWORK-CONTAINERID-IFNAME`), so that DEL gets exactly the configuration,
//! arguments and result ADD had, also after the configuration file changed, peapod was
//! killed, or the machine rebooted.
//!
//! Unlike libcni, the entry is written *before* the first plugin runs (with no result yet),
//! so that an ADD cut short by a crash is still found and undone by a later DEL.

use std::path::{Path, PathBuf};

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
    /// The result of the last plugin; `None` while ADD has not finished.
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

/// Writes an entry atomically.
pub(crate) fn save(file: &Path, entry: &CacheEntry) -> Result<()> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io("cannot make", dir))?;
    let text = serde_json::to_vec(entry).map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
    ));
    std::fs::write(&tmp, text).map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, file).map_err(io("cannot write", file))
}

/// Reads an entry; `None` when there is none.
pub fn load(file: &Path) -> Result<Option<CacheEntry>> {
    match std::fs::read(file) {
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
