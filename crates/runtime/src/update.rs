//! Updating: changes the limits of a live container, as `runc update`: from a
//! `linux.resources` JSON file, from flags, or both (the flags win).

use std::io::Read;

use anyhow::{anyhow, Context as _};
use oci_spec::runtime::LinuxResources;
use peapod_state::ContainerId;

use std::path::PathBuf;

use crate::kill::is_live;
use crate::{Error, Result, Runtime};

/// The new limits of a container, as `runc update` takes them: a `linux.resources` JSON file
/// (`-` for stdin) and single limits written over it.
#[derive(Debug, Default, Clone)]
pub struct UpdateRequest {
    /// A `linux.resources` JSON file, or `-` for stdin.
    pub resources: Option<PathBuf>,
    /// `memory.limit` in bytes (-1: none).
    pub memory: Option<i64>,
    /// `memory.reservation` in bytes.
    pub memory_reservation: Option<i64>,
    /// `memory.swap` in bytes (memory plus swap).
    pub memory_swap: Option<i64>,
    /// `pids.limit`.
    pub pids_limit: Option<i64>,
    /// `cpu.quota` in microseconds a period.
    pub cpu_quota: Option<i64>,
    /// `cpu.period` in microseconds.
    pub cpu_period: Option<u64>,
    /// `cpu.shares`.
    pub cpu_shares: Option<u64>,
    /// `cpu.cpus`: the CPUs it may run on.
    pub cpuset_cpus: Option<String>,
    /// `cpu.mems`: the memory nodes it may use.
    pub cpuset_mems: Option<String>,
    /// `blockIO.weight`.
    pub blkio_weight: Option<u16>,
}

pub(crate) fn update(rt: &Runtime, id: &str, args: &UpdateRequest) -> Result<()> {
    let id: ContainerId = id.parse()?;
    // The container first, as runc: a missing one is "does not exist" whatever the input.
    let entry = rt.store()?.load(&id)?;
    let resources = resources(args)?;
    let record = entry.record()?;
    let status = record
        .as_ref()
        .map_or(peapod_state::Status::Stopped, |r| r.status(entry.dir()));
    let (true, Some(record)) = (is_live(status), &record) else {
        return Err(Error::runtime(anyhow!(
            "container {id} is {}: cannot update it",
            status.as_str()
        )));
    };
    let cgroup = crate::cgroups::required(&id, record)?;
    // New device rules are checked before any limit is written, and replace the device
    // program after: the old one stays until the new one is attached.
    let devices = resources
        .devices()
        .as_deref()
        .map(peapod_cgroups::DeviceFilter::new)
        .transpose()
        .map_err(Error::runtime)?;
    if let Some(unit) = &record.cgroup_unit {
        crate::cgroups::update_scope(unit, &resources)?;
    }
    cgroup.apply(&resources).map_err(Error::runtime)?;
    if let Some(devices) = devices {
        crate::cgroups::filter_devices(&cgroup, &devices, rt.rootless)?;
    }
    Ok(())
}

/// The resources to apply: `--resources`, with the flags written over it.
fn resources(args: &UpdateRequest) -> Result<LinuxResources> {
    let mut r = match &args.resources {
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the resources from stdin")
                    .map_err(Error::runtime)?;
                text
            } else {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
                    .map_err(Error::runtime)?
            };
            let de = &mut serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| Error::usage(anyhow!("--resources: {}: {}", e.path(), e.inner())))?
        }
        None => LinuxResources::default(),
    };
    let flags_given = [
        args.memory.is_some(),
        args.memory_reservation.is_some(),
        args.memory_swap.is_some(),
        args.pids_limit.is_some(),
        args.cpu_quota.is_some(),
        args.cpu_period.is_some(),
        args.cpu_shares.is_some(),
        args.cpuset_cpus.is_some(),
        args.cpuset_mems.is_some(),
        args.blkio_weight.is_some(),
    ];
    if args.resources.is_none() && !flags_given.contains(&true) {
        return Err(Error::usage(anyhow!(
            "nothing to update: give --resources FILE or a limit such as --memory 64m"
        )));
    }
    if args.memory.is_some() || args.memory_reservation.is_some() || args.memory_swap.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = args.memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = args.memory_reservation {
            m.set_reservation(Some(v));
        }
        if let Some(v) = args.memory_swap {
            m.set_swap(Some(v));
        }
        r.set_memory(Some(m));
    }
    if let Some(limit) = args.pids_limit {
        let mut pids = oci_spec::runtime::LinuxPids::default();
        pids.set_limit(limit);
        r.set_pids(Some(pids));
    }
    let cpu_given = [
        args.cpu_quota.is_some(),
        args.cpu_period.is_some(),
        args.cpu_shares.is_some(),
        args.cpuset_cpus.is_some(),
        args.cpuset_mems.is_some(),
    ];
    if cpu_given.contains(&true) {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = args.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = args.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = args.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = &args.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &args.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some(c));
    }
    if let Some(weight) = args.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(weight));
        r.set_block_io(Some(b));
    }
    Ok(r)
}
