//! What `state.json` holds, and the status derived from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ContainerId, ProcessIdentity};

/// A JSON value kept as its text: written into the record and read back without building a
/// tree of it; [`RawJson::parse`] when its content is needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// `value` as JSON text.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<RawJson> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// Its content as a `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for RawJson {}

/// The runtime spec version peapod implements.
pub const OCI_VERSION: &str = "1.2.0";

/// The recorded facts about one container. The status is not stored: it is read off the
/// process and the exec fifo each time ([`Record::status`]), so it cannot go stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The OCI version of the state.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The rootfs directory (absolute).
    #[serde(default)]
    pub rootfs: PathBuf,
    /// The container process, once it exists.
    #[serde(default)]
    pub process: Option<ProcessIdentity>,
    /// The `peapod` process that removes this record when it is done (a foreground `run`,
    /// whose container dies with it): once it is gone while the record is still here, it was
    /// killed, and the record is a leftover ([`Record::is_abandoned`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ProcessIdentity>,
    /// Seconds since the epoch at creation.
    #[serde(default)]
    pub created: u64,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup: its directory in each hierarchy (one on cgroup v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_paths: Vec<PathBuf>,
    /// The systemd scope unit of the cgroup (`--systemd-cgroup`): stopped by `delete`, its
    /// properties set by `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_unit: Option<String>,
    /// The spec's `hooks` object, for those run after `create` (`poststart`, `poststop`):
    /// kept here, as runc keeps its config, so that a changed or removed bundle cannot
    /// change what runs. Kept as its text, as the parts of the spec below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<RawJson>,
    /// The spec's `process` and `linux.seccomp`, which `exec` starts from: kept for the same
    /// reason, and because a `run --rootfs` container has no bundle file at all.
    ///
    /// These and the two below are kept as their text ([`RawJson`]): a `Value` tree of them
    /// (a process's capability sets alone are some 70 strings, a Docker-sized profile
    /// hundreds) would be built, written and parsed again for every record written or read,
    /// while only `exec`, `ps` and `inspect` read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_process: Option<RawJson>,
    /// See [`Record::spec_process`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_seccomp: Option<RawJson>,
    /// The spec's `linux.resources` and `mounts`, as created: what `inspect` reports of a
    /// container whose bundle may be gone (`run` from an image or `--rootfs` has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_resources: Option<RawJson>,
    /// See [`Record::spec_resources`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_mounts: Option<RawJson>,
    /// How the container ended, written by the process that waited for it (the monitor of
    /// a `run -d` container); `None` while it runs, or when nobody could wait for it (the
    /// parent of a `create`d container is its caller, not peapod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// A `run -d --restart` container's policy, as docker writes it (`on-failure:3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// How often its monitor has started it again by that policy (docker's RestartCount).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
    /// Its process has exited and its monitor waits to start it again (docker's
    /// `Restarting`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarting: bool,
    /// `stop` ended it: its monitor starts it no more (docker's HasBeenManuallyStopped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_by_user: bool,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A container's end, as its waiting parent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal that killed it (as a shell reports it).
    pub code: i32,
    /// When it was collected: seconds and nanoseconds since the epoch.
    pub finished: u64,
    /// See [`ExitRecord::finished`].
    #[serde(default)]
    pub finished_nanos: u32,
}

/// A container's status, as the OCI runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` has not finished (or died half-way).
    Creating,
    /// Set up, waiting for `start`.
    Created,
    /// The entrypoint runs.
    Running,
    /// Its processes are frozen (`pause`).
    Paused,
    /// The process has exited (or never existed).
    Stopped,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl Record {
    /// A record for a container being created now.
    pub fn new(id: &ContainerId, bundle: PathBuf) -> Record {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Record {
            oci_version: OCI_VERSION.to_owned(),
            id: id.to_string(),
            bundle,
            rootfs: PathBuf::new(),
            process: None,
            owner: None,
            created,
            annotations: BTreeMap::new(),
            cgroup_paths: Vec::new(),
            cgroup_unit: None,
            hooks: None,
            spec_process: None,
            spec_seccomp: None,
            spec_resources: None,
            spec_mounts: None,
            exit: None,
            restart_policy: None,
            restart_count: 0,
            restarting: false,
            stopped_by_user: false,
        }
    }

    /// The status now: `creating` while its owner makes it (no process yet), `created` while the process lives and its exec fifo (in the
    /// container's state directory `dir`) is still there, `running` while it lives after that
    /// (`paused` while its cgroup is frozen), `stopped` once it is gone.
    pub fn status(&self, dir: &Path) -> Status {
        match self.process {
            // Recorded before its process exists, by an owner still at work on it.
            None if self.owner.is_some_and(|o| o.is_alive()) => Status::Creating,
            None => Status::Stopped,
            Some(p) if !p.is_alive() => Status::Stopped,
            Some(_) if dir.join(crate::entry::EXEC_FIFO).exists() => Status::Created,
            Some(_) if self.is_frozen() => Status::Paused,
            Some(_) => Status::Running,
        }
    }

    /// Whether the record's owner (see [`Record::owner`]) is gone, leaving it behind.
    pub fn is_abandoned(&self) -> bool {
        self.owner.is_some_and(|owner| !owner.is_alive())
    }

    /// Whether the freezer of the container's cgroup holds it: v1's `freezer.state` or v2's
    /// `cgroup.freeze` (read here, so that this crate needs no cgroup code).
    fn is_frozen(&self) -> bool {
        self.cgroup_paths.iter().any(|dir| {
            let read = |name| std::fs::read_to_string(dir.join(name)).ok();
            match read("freezer.state") {
                Some(state) => state.trim() != "THAWED",
                None => read("cgroup.freeze").is_some_and(|f| f.trim() == "1"),
            }
        })
    }
}

/// `secs` and `nanos` since the epoch as RFC 3339 in UTC with nine fractional digits
/// (`2026-11-28T04:10:50.000000123Z`): fixed width, so that two of them compare as text
/// as they do in time (the kubelet's CRI log lines are stamped so).
pub fn rfc3339_nanos(secs: u64, nanos: u32) -> String {
    let mut text = rfc3339(secs);
    text.pop();
    format!("{text}.{nanos:09}Z")
}

/// `secs` since the epoch as RFC 3339 in UTC (`2026-11-28T04:10:50Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days: the proleptic Gregorian date of a day count.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_seccomp_profile_round_trips_as_text() {
        let profile = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]});
        let mut record = Record::new(&"c1".parse().expect("id"), PathBuf::from("/b"));
        record.spec_seccomp = Some(RawJson::of(&profile).expect("raw"));
        let pretty = serde_json::to_vec_pretty(&record).expect("write");
        let back: Record = serde_json::from_slice(&pretty).expect("read");
        assert_eq!(back, record);
        let parsed: serde_json::Value = back.spec_seccomp.expect("kept").parse().expect("parse");
        assert_eq!(parsed, profile);
        // A record written before, with the profile as an indented object, reads the same.
        let mut old = serde_json::to_value(&record).expect("value");
        old["spec_seccomp"] = profile.clone();
        let old = serde_json::to_vec_pretty(&old).expect("old");
        let back: Record = serde_json::from_slice(&old).expect("read old");
        let parsed: serde_json::Value = back.spec_seccomp.expect("kept").parse().expect("parse");
        assert_eq!(parsed, profile);
    }

    #[test]
    fn a_frozen_cgroup_makes_a_live_container_paused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, v2) = (dir.path().join("freezer"), dir.path().join("unified"));
        for d in [&v1, &v2] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let id: ContainerId = "p".parse().expect("id");
        let mut record = Record::new(&id, dir.path().to_owned());
        record.process = ProcessIdentity::of(std::process::id() as i32);
        record.cgroup_paths = vec![v1.clone(), v2.clone()];
        std::fs::write(v1.join("freezer.state"), "THAWED\n").expect("write");
        std::fs::write(v2.join("cgroup.freeze"), "0\n").expect("write");
        assert_eq!(record.status(dir.path()), Status::Running);
        std::fs::write(v1.join("freezer.state"), "FROZEN\n").expect("write");
        assert_eq!(record.status(dir.path()), Status::Paused);
        std::fs::write(v1.join("freezer.state"), "THAWED\n").expect("write");
        std::fs::write(v2.join("cgroup.freeze"), "1\n").expect("write");
        assert_eq!(record.status(dir.path()), Status::Paused);
        assert_eq!(Status::Paused.as_str(), "paused");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_838_450), "2026-11-28T04:00:50Z");
        assert_eq!(rfc3339_nanos(0, 5), "1970-01-01T00:00:00.000000005Z");
    }
}
