//! `peapod ps`: the processes of a container, as ps(1) shows them or as a JSON list of PIDs.

use std::process::Command;

use anyhow::anyhow;
use peapod_state::ContainerId;

use crate::args::{Format, PsArgs};
use crate::context::Context;
use crate::kill::{all_pids, is_live};
use crate::Failure;

pub(crate) fn run(ctx: &Context, args: PsArgs) -> Result<i32, Failure> {
    let id: ContainerId = args.id.parse()?;
    let entry = ctx.store()?.load(&id)?;
    let record = entry.record()?;
    let process = match &record {
        Some(r) if is_live(r.status(entry.dir())) => r.process,
        _ => None,
    };
    // A container whose process has exited has no processes: an empty list, as runc
    // answers, so that a client asking (containerd's shim for `ctr task ps`, or while it
    // tears a task down) is not handed an error for a state it can see for itself.
    let pids = match (process, &record) {
        (Some(process), Some(record)) => all_pids(record, process)?,
        _ => Vec::new(),
    };
    drop(entry);
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string(&pids).map_err(|e| Failure::runtime(anyhow!(e)))?
        );
        return Ok(0);
    }
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_args
    };
    let out = Command::new("ps")
        .args(&ps_args)
        .output()
        .map_err(|e| Failure::runtime(anyhow!("cannot run ps: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Failure::runtime(anyhow!("ps output has no PID column")))?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            println!("{line}");
        }
    }
    Ok(0)
}
