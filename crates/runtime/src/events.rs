//! Events: a container's stats as runc prints them (`{"type":"stats","id":...,
//! "data":{...}}`), once, or streamed every interval together with an
//! `{"type":"oom"}` line for each OOM kill, until the container exits.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use peapod_cgroups::Stats;
use peapod_state::ContainerId;
use serde_json::json;

use crate::kill::is_live;
use crate::{Error, Result, Runtime};

/// How often the OOM kill count is read while streaming: an OOM kill is reported within this.
const OOM_POLL: Duration = Duration::from_millis(100);

/// Streams container `id`'s events to `emit`: only one stats event when `interval` is
/// `None`, else stats every `interval` and OOM kills as they happen, until it exits.
pub(crate) fn events(
    rt: &Runtime,
    id: &str,
    interval: Option<Duration>,
    mut emit: impl FnMut(serde_json::Value),
) -> Result<()> {
    let id: ContainerId = id.parse()?;
    let (record, status) = {
        let entry = rt.store()?.load(&id)?;
        let record = entry
            .record()?
            .ok_or_else(|| Error::runtime(anyhow!("container {id} was never fully created")))?;
        let status = record.status(entry.dir());
        // The lock is released here: `delete` may run while events stream.
        (record, status)
    };
    if !is_live(status) {
        return Err(Error::runtime(anyhow!(
            "container {id} is {}: it has no events",
            status.as_str()
        )));
    }
    let cgroup = crate::cgroups::required(&id, &record)?;
    let stats = || cgroup.stats().map_err(Error::runtime);
    let Some(interval) = interval else {
        emit(stats_event(&id, &stats()?));
        return Ok(());
    };
    let alive = || record.process.is_some_and(|p| p.is_alive());
    let mut oom_kills = stats()?.oom_kills;
    let mut next_stats = Instant::now() + interval;
    loop {
        std::thread::sleep(OOM_POLL);
        let now = match cgroup.stats() {
            Ok(now) => now,
            // Its cgroup is (being) removed: the container was deleted.
            Err(_) if !cgroup.paths().iter().all(|p| p.exists()) => return Ok(()),
            Err(e) => return Err(Error::runtime(e)),
        };
        if now.oom_kills > oom_kills {
            oom_kills = now.oom_kills;
            emit(json!({"type": "oom", "id": id.as_str()}));
        }
        if !alive() {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            next_stats += interval;
            emit(stats_event(&id, &now));
        }
    }
}

/// runc's stats event; `memory.raw.oom_kill` counts the OOM kills in the container's cgroup.
fn stats_event(id: &ContainerId, s: &Stats) -> serde_json::Value {
    json!({
        "type": "stats",
        "id": id.as_str(),
        "data": {
            "cpu": {
                "usage": {
                    "total": s.cpu_usage_ns,
                    "kernel": s.cpu_system_ns,
                    "user": s.cpu_user_ns,
                },
                "throttling": {
                    "periods": s.cpu_periods,
                    "throttledPeriods": s.cpu_throttled_periods,
                    "throttledTime": s.cpu_throttled_ns,
                },
            },
            "memory": {
                "usage": {
                    "limit": s.memory_limit,
                    "usage": s.memory_usage,
                    "max": s.memory_max_usage,
                    "failcnt": s.memory_failcnt,
                },
                "raw": { "oom_kill": s.oom_kills },
            },
            "pids": { "current": s.pids_current, "limit": s.pids_limit },
        }
    })
}
