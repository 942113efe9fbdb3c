//! `peapod events`: a container's stats as runc prints them (`{"type":"stats","id":...,
//! "data":{...}}`), once with `--stats`, or streamed every `--interval` together with an
//! `{"type":"oom"}` line for each OOM kill, until the container exits.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use peapod_cgroups::Stats;
use peapod_state::ContainerId;
use serde_json::json;

use crate::args::EventsArgs;
use crate::context::Context;
use crate::kill::is_live;
use crate::Failure;

/// How often the OOM kill count is read while streaming: an OOM kill is reported within this.
const OOM_POLL: Duration = Duration::from_millis(100);

pub(crate) fn run(ctx: &Context, args: EventsArgs) -> Result<i32, Failure> {
    let id: ContainerId = args.id.parse()?;
    let (record, status) = {
        let entry = ctx.store()?.load(&id)?;
        let record = entry
            .record()?
            .ok_or_else(|| Failure::runtime(anyhow!("container {id} was never fully created")))?;
        let status = record.status(entry.dir());
        // The lock is released here: `delete` may run while events stream.
        (record, status)
    };
    if !is_live(status) {
        return Err(Failure::runtime(anyhow!(
            "container {id} is {}: it has no events",
            status.as_str()
        )));
    }
    let cgroup = crate::cgroups::required(&id, &record)?;
    let stats = || cgroup.stats().map_err(Failure::runtime);
    if args.stats {
        println!("{}", stats_event(&id, &stats()?));
        return Ok(0);
    }
    let alive = || record.process.is_some_and(|p| p.is_alive());
    let mut oom_kills = stats()?.oom_kills;
    let mut next_stats = Instant::now() + args.interval;
    loop {
        std::thread::sleep(OOM_POLL);
        let now = match cgroup.stats() {
            Ok(now) => now,
            // Its cgroup is (being) removed: the container was deleted.
            Err(_) if !cgroup.paths().iter().all(|p| p.exists()) => return Ok(0),
            Err(e) => return Err(Failure::runtime(e)),
        };
        if now.oom_kills > oom_kills {
            oom_kills = now.oom_kills;
            println!("{}", json!({"type": "oom", "id": id.as_str()}));
        }
        if !alive() {
            return Ok(0);
        }
        if Instant::now() >= next_stats {
            next_stats += args.interval;
            println!("{}", stats_event(&id, &now));
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
