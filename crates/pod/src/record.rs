//! What `pod.json` holds, and the pod's status derived from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use peapod_ns::Namespace;
use peapod_state::{ContainerId, ProcessIdentity};
use serde::{Deserialize, Serialize};

/// The recorded facts about one pod. Its status is not stored but read off the infra process
/// ([`PodRecord::status`]), so it cannot go stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The pod's name.
    pub name: String,
    /// Seconds since the epoch at creation.
    pub created: u64,
    /// The host name of the pod's UTS namespace.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The namespaces the pod's containers share (`/proc/PID/ns` names: net, ipc, uts, pid).
    pub shared: Vec<String>,
    /// The pod's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The infra process, once it exists.
    #[serde(default)]
    pub infra: Option<ProcessIdentity>,
    /// The inode of each shared namespace, by kind.
    #[serde(default)]
    pub namespaces: BTreeMap<String, u64>,
    /// The containers of the pod, in the order they were added.
    #[serde(default)]
    pub containers: Vec<Member>,
    /// The process that restarts the containers of a played manifest, while it runs.
    #[serde(default)]
    pub monitor: Option<ProcessIdentity>,
    /// Set by `pod stop`: the pod ended on purpose, rather than failed.
    #[serde(default)]
    pub stopped: bool,
    /// How long `pod stop` waits after SIGTERM (a manifest's
    /// `terminationGracePeriodSeconds`).
    #[serde(default)]
    pub grace_seconds: Option<u64>,
    /// The pod's cgroup (`peapod/pod:NAME:TAG`: the pod's limits, its containers' cgroups
    /// below it), one directory per hierarchy; empty when it has none.
    #[serde(default)]
    pub cgroup_paths: Vec<PathBuf>,
    /// Under the systemd driver, the pod's slice (`machine-peapod_pod_NAME_TAG.slice`), which
    /// those paths are; its containers are scopes in it, and `pod rm` stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_unit: Option<String>,
    /// The pod's network and its `/etc` files; `None` for a pod made before peapod had
    /// networks (only `lo`, no `/etc` files).
    #[serde(default)]
    pub network: Option<crate::NetworkRecord>,
    /// `--log-opt` of `pod create` / `pod play`: the limits of its containers' logs, over
    /// the kubelet's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_opts: Vec<String>,
    /// Made by an ordinary user: the pod's namespaces are owned by a user namespace of its
    /// own and held by the infra process alone (no pins), joined through its
    /// `/proc/PID/ns` files once its identity is checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rootless: bool,
    /// Made with `--userns keep-id`: its user namespace maps the caller's ids as themselves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_id: bool,
    /// The process that holds the pod's published host ports (see `ports.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_holder: Option<ProcessIdentity>,
    /// The `peapod` process making the pod, until it is made (its infra process runs and its
    /// network is set up): the pod is `creating` while that process lives, and `failed`
    /// once it is gone, killed half-way (the next pod command removes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<ProcessIdentity>,
    /// For the hidden pod of a lone container's network (`run --net`): the `peapod run` that
    /// made it. Once that process is gone and the container does not exist, nobody will
    /// remove the network: the next command does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ProcessIdentity>,
}

/// Sets `into` to the top-level field `name` of the pretty-printed JSON `bytes`, when its
/// value is whole and parses: one value is read where the field begins, whatever follows
/// (a file cut short, garbage), so that the fields before the damage are still found.
fn take<T: serde::de::DeserializeOwned>(bytes: &[u8], name: &str, into: &mut T) {
    // `save_json` writes pretty JSON: the record's own fields are indented by two spaces.
    let key = format!("\n  \"{name}\": ");
    let Some(at) = bytes.windows(key.len()).position(|w| w == key.as_bytes()) else {
        return;
    };
    let rest = &bytes[at + key.len()..];
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
    if let Some(Ok(value)) = values.next() {
        *into = value;
    }
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its container id in the state store.
    pub id: String,
    /// Its name in the manifest, for a played pod.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether it is an init container (run to completion before the others).
    #[serde(default)]
    pub init: bool,
    /// How often the monitor restarted it.
    #[serde(default)]
    pub restarts: u32,
    /// What a played pod's monitor last saw of it: started, ready, its last probe failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::MemberHealth>,
}

/// A pod's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodStatus {
    /// `pod create` has not finished (or died half-way).
    Creating,
    /// The infra process holds the namespaces.
    Running,
    /// The infra process is gone though nobody stopped the pod.
    Failed,
    /// `pod stop` ended it.
    Stopped,
}

impl PodStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PodStatus::Creating => "creating",
            PodStatus::Running => "running",
            PodStatus::Failed => "failed",
            PodStatus::Stopped => "stopped",
        }
    }
}

impl PodRecord {
    /// A record for a pod being created now.
    pub fn new(name: &ContainerId) -> PodRecord {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PodRecord {
            name: name.to_string(),
            created,
            hostname: None,
            shared: Vec::new(),
            labels: BTreeMap::new(),
            infra: None,
            namespaces: BTreeMap::new(),
            containers: Vec::new(),
            monitor: None,
            stopped: false,
            grace_seconds: None,
            cgroup_paths: Vec::new(),
            cgroup_unit: None,
            network: None,
            log_opts: Vec::new(),
            rootless: false,
            keep_id: false,
            port_holder: None,
            setup: None,
            owner: None,
        }
    }

    /// The limits of its containers' logs: the kubelet's defaults, changed by its
    /// `--log-opt`s (checked when it was made).
    pub fn log_limits(&self) -> peapod_runtime::logfile::LogLimits {
        let mut limits = peapod_runtime::logfile::LogLimits::KUBELET;
        for opt in &self.log_opts {
            let _ = limits.apply(opt);
        }
        limits
    }

    /// What can be read of a `pod.json` that does not parse as a record: each field taken on
    /// its own from whatever JSON is there (the rest as [`PodRecord::new`] has it), so that
    /// `pod rm -f` can still stop and remove its infra process, containers, pins, cgroups
    /// and network.
    pub fn salvage(name: &ContainerId, bytes: &[u8]) -> PodRecord {
        let mut record = PodRecord::new(name);
        take(bytes, "shared", &mut record.shared);
        take(bytes, "infra", &mut record.infra);
        take(bytes, "containers", &mut record.containers);
        take(bytes, "monitor", &mut record.monitor);
        take(bytes, "cgroup_paths", &mut record.cgroup_paths);
        take(bytes, "cgroup_unit", &mut record.cgroup_unit);
        take(bytes, "network", &mut record.network);
        take(bytes, "port_holder", &mut record.port_holder);
        record
    }

    /// Whether the monitor of a played pod was killed: it is recorded, but gone, while the
    /// pod runs (a monitor that ends on its own clears the record first). `None` for a pod
    /// without a monitor.
    pub fn supervised(&self) -> Option<bool> {
        self.monitor.map(|m| m.is_alive())
    }

    /// The status now.
    pub fn status(&self) -> PodStatus {
        match self.infra {
            _ if self.stopped => PodStatus::Stopped,
            _ if self.setup.is_some_and(|p| p.is_alive()) => PodStatus::Creating,
            _ if self.setup.is_some() => PodStatus::Failed,
            None => PodStatus::Creating,
            Some(p) if p.is_alive() => PodStatus::Running,
            Some(_) => PodStatus::Failed,
        }
    }

    /// The shared namespace kinds, in the order they must be joined.
    pub fn shared_kinds(&self) -> Vec<Namespace> {
        let mut kinds: Vec<Namespace> = self.shared.iter().filter_map(|s| s.parse().ok()).collect();
        kinds.sort();
        kinds
    }

    /// Whether the pod shares `kind`.
    pub fn shares(&self, kind: Namespace) -> bool {
        self.shared_kinds().contains(&kind)
    }

    /// The pinned namespace files of the pod whose directory is `dir`, by kind; of a
    /// rootless pod, its infra process's `/proc/PID/ns` files (check that it is still the
    /// same process, [`ProcessIdentity::is_alive`], before joining them).
    pub fn pins(&self, dir: &Path) -> Vec<(Namespace, PathBuf)> {
        self.shared_kinds()
            .into_iter()
            .map(|kind| {
                let file = match (self.rootless, self.infra) {
                    (true, Some(infra)) => {
                        PathBuf::from(format!("/proc/{}/ns/{}", infra.pid, kind.proc_name()))
                    }
                    _ => dir.join("ns").join(kind.proc_name()),
                };
                (kind, file)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_cut_short_gives_the_fields_before_the_cut() {
        let name: ContainerId = "web".parse().expect("name");
        let mut record = PodRecord::new(&name);
        record.shared = vec!["net".to_owned(), "ipc".to_owned()];
        record.infra = Some(ProcessIdentity {
            pid: 42,
            start_time: 7,
        });
        record.cgroup_paths = vec![PathBuf::from("/sys/fs/cgroup/peapod/pod:web")];
        let json = serde_json::to_vec_pretty(&record).expect("json");
        let text = String::from_utf8(json.clone()).expect("utf-8");
        let cut = text.find("\"cgroup_paths\"").expect("field") + 20;
        let salvaged = PodRecord::salvage(&name, &json[..cut]);
        assert_eq!(salvaged.shared, record.shared);
        assert_eq!(salvaged.infra, record.infra);
        assert!(salvaged.cgroup_paths.is_empty(), "{salvaged:?}");
        let whole = PodRecord::salvage(&name, &json);
        assert_eq!(whole.cgroup_paths, record.cgroup_paths);
        let garbage = PodRecord::salvage(&name, b"\x00garbage");
        assert!(
            garbage.infra.is_none() && garbage.shared.is_empty(),
            "{garbage:?}"
        );
    }
}
