//! A container's state as runc reports it (`state`, `list`): what the store records, with
//! the status read live.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::anyhow;
use peapod_state::{rfc3339, ContainerId, Entry, Record, Status};
use serde::Serialize;

use crate::{Error, Result, Runtime};

/// The state JSON of the OCI runtime spec, with runc's extra fields.
#[derive(Debug, Serialize)]
pub struct StateJson {
    /// The spec version the container was made with.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// The container's id.
    pub id: String,
    /// Its process (0 once it has exited).
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused`, `stopped` (or `unknown`).
    pub status: &'static str,
    /// Its bundle directory.
    pub bundle: PathBuf,
    /// Its root on the host.
    pub rootfs: PathBuf,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Who owns its state: `root` or a uid.
    pub owner: String,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its exit status, once its monitor (`run -d`) has collected it. Not in the runtime
    /// spec's state; an extra field, which containerd and podman (Go structs) skip.
    #[serde(rename = "exitCode", skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When it exited (RFC 3339, nanoseconds), with `exitCode`.
    #[serde(rename = "finishedAt", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl StateJson {
    /// The state of the container of `entry`, recorded as `record`.
    pub fn of(entry: &Entry, record: &Record) -> StateJson {
        let status = record.status(entry.dir());
        let pid = match status {
            Status::Created | Status::Running | Status::Paused => {
                record.process.map_or(0, |p| p.pid)
            }
            Status::Stopped | Status::Creating => 0,
        };
        let owner = std::fs::metadata(entry.dir())
            .map(|m| {
                if m.uid() == 0 {
                    "root".to_owned()
                } else {
                    m.uid().to_string()
                }
            })
            .unwrap_or_default();
        StateJson {
            oci_version: record.oci_version.clone(),
            id: record.id.clone(),
            pid,
            status: status.as_str(),
            bundle: record.bundle.clone(),
            rootfs: record.rootfs.clone(),
            created: rfc3339(record.created),
            owner,
            annotations: record.annotations.clone(),
            exit_code: record.exit.map(|e| e.code),
            finished_at: record
                .exit
                .map(|e| peapod_state::rfc3339_nanos(e.finished, e.finished_nanos)),
        }
    }
}

impl StateJson {
    /// A container whose record is missing or unreadable, in status `status`.
    fn unrecorded(entry: &Entry, status: &'static str) -> StateJson {
        let record = Record::new(entry.id(), PathBuf::new());
        StateJson {
            status,
            created: String::new(),
            ..StateJson::of(entry, &record)
        }
    }
}

pub(crate) fn state(rt: &Runtime, id: &str) -> Result<StateJson> {
    let id: ContainerId = id.parse()?;
    let entry = rt.store()?.load(&id)?;
    let record = recorded(&entry)?;
    Ok(StateJson::of(&entry, &record))
}

/// The record of a container whose `create` finished.
pub(crate) fn recorded(entry: &Entry) -> Result<Record> {
    entry
        .record()?
        .ok_or_else(|| Error::runtime(anyhow!("container {} was never fully created", entry.id())))
}

/// The record of container `id` and its status now, with the lock released again: for
/// commands that take long (`exec`, `events`) and must not keep `kill` or `delete` out.
pub(crate) fn snapshot(rt: &Runtime, id: &ContainerId) -> Result<(Record, Status)> {
    let entry = rt.store()?.load(id)?;
    let record = recorded(&entry)?;
    let status = record.status(entry.dir());
    Ok((record, status))
}

pub(crate) fn list(rt: &Runtime) -> Result<Vec<StateJson>> {
    crate::leftovers::reap(rt);
    let store = rt.store()?;
    let mut states = Vec::new();
    for id in store.ids()? {
        // A container deleted meanwhile is simply not listed.
        let Ok(entry) = store.load(&id) else { continue };
        match entry.record() {
            Ok(Some(record)) => states.push(StateJson::of(&entry, &record)),
            // Its `create` died before it recorded anything: listed, so that it is seen and
            // `delete` can be told to remove it.
            Ok(None) => states.push(StateJson::unrecorded(&entry, Status::Creating.as_str())),
            Err(e) => {
                tracing::warn!("container {id}: {e}; `peapod delete --force {id}` removes it");
                states.push(StateJson::unrecorded(&entry, "unknown"));
            }
        }
    }
    Ok(states)
}
