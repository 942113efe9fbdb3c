//! `peapod state` and `peapod list`: what the store records, with the status read live.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::anyhow;
use peapod_state::{rfc3339, ContainerId, Entry, Record, Status};
use serde::Serialize;

use crate::args::{Format, ListArgs};
use crate::context::Context;
use crate::Failure;

/// The state JSON of the OCI runtime spec, with runc's extra fields.
#[derive(Debug, Serialize)]
pub(crate) struct StateJson {
    #[serde(rename = "ociVersion")]
    oci_version: String,
    id: String,
    pid: i32,
    status: &'static str,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    owner: String,
    annotations: BTreeMap<String, String>,
}

impl StateJson {
    pub(crate) fn of(entry: &Entry, record: &Record) -> StateJson {
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

fn to_json<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::runtime(anyhow!(e)))
}

pub(crate) fn state(ctx: &Context, id: &str) -> Result<i32, Failure> {
    let id: ContainerId = id.parse()?;
    let entry = ctx.store()?.load(&id)?;
    let record = recorded(&entry)?;
    println!("{}", to_json(&StateJson::of(&entry, &record))?);
    Ok(0)
}

/// The record of a container whose `create` finished.
pub(crate) fn recorded(entry: &Entry) -> Result<Record, Failure> {
    entry.record()?.ok_or_else(|| {
        Failure::runtime(anyhow!("container {} was never fully created", entry.id()))
    })
}

/// The record of container `id` and its status now, with the lock released again: for
/// commands that take long (`exec`, `events`) and must not keep `kill` or `delete` out.
pub(crate) fn snapshot(ctx: &Context, id: &ContainerId) -> Result<(Record, Status), Failure> {
    let entry = ctx.store()?.load(id)?;
    let record = recorded(&entry)?;
    let status = record.status(entry.dir());
    Ok((record, status))
}

pub(crate) fn list(ctx: &Context, args: ListArgs) -> Result<i32, Failure> {
    crate::leftovers::reap(ctx);
    let store = ctx.store()?;
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
    if args.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => println!("{}", to_json(&states)?),
        Format::Table => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<22} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<22} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
        }
    }
    Ok(0)
}
