//! `peapod ps` without an id: docker's table of containers (runc's `ps ID` is in `oci.rs`).
//! Also what docker's `ps` and `inspect` share: a container's record read as docker shows
//! it (short id, name, image, command, status words, relative times).

use std::time::{SystemTime, UNIX_EPOCH};

use peapod_pod::peapod_net::PortMapping;
use peapod_runtime::image::IMAGE_ANNOTATION;
use peapod_runtime::names::NAME_ANNOTATION;
use peapod_runtime::{Error, Runtime, StateJson};
use peapod_state::{ContainerId, Record};
use serde_json::json;

use crate::args::{Format, PsArgs};
use crate::output::outln;

/// The annotation containerd's CRI plugin gives a container's image name, shown when
/// peapod's own is missing (a container containerd made).
const CRI_IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";

/// How much of the command docker's table shows.
const COMMAND_WIDTH: usize = 20;

/// One container as `ps` and `inspect` show it: its OCI state and, once its `create`
/// finished, its record.
pub(crate) struct Container {
    pub state: StateJson,
    pub record: Option<Record>,
}

impl Container {
    /// Container `id` now (a whole id: see `Runtime::resolve`).
    pub(crate) fn load(rt: &Runtime, id: &str) -> Result<Container, Error> {
        let state = rt.state(id)?;
        let (record, _) = rt.snapshot(&id.parse()?)?;
        Ok(Container {
            state,
            record: Some(record),
        })
    }

    /// Every container, sorted by id as `list` gives them.
    fn all(rt: &Runtime) -> Result<Vec<Container>, Error> {
        Ok(rt
            .list()?
            .into_iter()
            .map(|state| {
                // A container half made or deleted meanwhile has no record to read.
                let record = state
                    .id
                    .parse()
                    .ok()
                    .and_then(|id| rt.snapshot(&id).ok())
                    .map(|(record, _)| record);
                Container { state, record }
            })
            .collect())
    }

    /// Its name: the generated one of a container `run` without `--name`, else the id when
    /// it was given one (`--name`, or a caller's id); none for a generated id without one.
    pub(crate) fn name(&self) -> Option<&str> {
        if let Some(name) = self.state.annotations.get(NAME_ANNOTATION) {
            return Some(name);
        }
        let generated = self
            .state
            .id
            .parse::<ContainerId>()
            .is_ok_and(|id| id.is_generated());
        (!generated).then_some(self.state.id.as_str())
    }

    /// When its process started (seconds and nanoseconds since the epoch), once it has
    /// one: read from the process's start time, which its record keeps after it exits.
    pub(crate) fn started(&self) -> Option<(u64, u32)> {
        if matches!(self.state.status, "created" | "creating") {
            return None;
        }
        let process = self.record.as_ref()?.process?;
        peapod_runtime::clock::started_at(process.start_time)
    }

    /// The image it was made from as `run` was given it, else its root directory.
    pub(crate) fn image(&self) -> String {
        let annotations = &self.state.annotations;
        annotations
            .get(IMAGE_ANNOTATION)
            .or_else(|| annotations.get(CRI_IMAGE_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| self.state.rootfs.display().to_string())
    }

    /// Its process's arguments, as its spec gave them.
    pub(crate) fn args(&self) -> Vec<String> {
        self.process_field("args")
            .and_then(|a| serde_json::from_value(a).ok())
            .unwrap_or_default()
    }

    /// A field of its spec's `process`.
    pub(crate) fn process_field(&self, field: &str) -> Option<serde_json::Value> {
        let process = self.record.as_ref()?.spec_process.as_ref()?;
        let mut process: serde_json::Map<String, serde_json::Value> = process.parse().ok()?;
        process.remove(field)
    }

    /// Docker's state word: created, running, paused, exited (peapod's `stopped`).
    pub(crate) fn docker_state(&self) -> &'static str {
        match self.state.status {
            "stopped" if self.is_restarting() => "restarting",
            "stopped" => "exited",
            other => other,
        }
    }

    /// The ports published for it (`-p`, `-P`) while it runs (docker shows none for a
    /// container that has exited).
    pub(crate) fn ports(&self, rt: &Runtime) -> Vec<PortMapping> {
        match self.is_up() {
            true => peapod_pod::container_ports(rt, &self.state.id),
            false => Vec::new(),
        }
    }

    /// Whether it has exited and its monitor waits to start it again (`--restart`).
    pub(crate) fn is_restarting(&self) -> bool {
        self.state.status == "stopped"
            && self
                .record
                .as_ref()
                .is_some_and(|r| r.restarting && r.owner.is_some_and(|o| o.is_alive()))
    }

    /// How often its restart policy started it again (docker's RestartCount).
    pub(crate) fn restart_count(&self) -> u32 {
        self.record.as_ref().map_or(0, |r| r.restart_count)
    }

    /// Whether it runs (paused and restarting ones too, as docker's `ps` lists them without
    /// `-a`).
    fn is_up(&self) -> bool {
        matches!(self.state.status, "running" | "paused") || self.is_restarting()
    }

    /// When it was created, in seconds since the epoch.
    pub(crate) fn created(&self) -> u64 {
        self.record.as_ref().map_or(0, |r| r.created)
    }

    /// Docker's status column: "Up 2 minutes", "Exited (3) 5 seconds ago", "Created".
    fn status(&self, now: u64) -> String {
        let since = self.started().map_or(self.created(), |(secs, _)| secs);
        let up = || human_duration(now.saturating_sub(since));
        match self.state.status {
            "running" => format!("Up {}", up()),
            "paused" => format!("Up {} (Paused)", up()),
            "created" => "Created".to_owned(),
            "stopped" => match self.record.as_ref().and_then(|r| r.exit) {
                Some(exit) if self.is_restarting() => format!(
                    "Restarting ({}) {} ago",
                    exit.code,
                    human_duration(now.saturating_sub(exit.finished))
                ),
                Some(exit) => format!(
                    "Exited ({}) {} ago",
                    exit.code,
                    human_duration(now.saturating_sub(exit.finished))
                ),
                // Nobody peapod knows waited for it (the caller of `create` did).
                None => "Exited".to_owned(),
            },
            "creating" => "Creating".to_owned(),
            _ => "Unknown".to_owned(),
        }
    }
}

/// `id` as tables show it: 12 digits of a generated id, any other whole.
pub(crate) fn short(id: &str) -> &str {
    match id.parse::<ContainerId>() {
        Ok(cid) if cid.is_generated() => &id[..ContainerId::SHORT_LEN],
        _ => id,
    }
}

/// Seconds since the epoch now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A duration as docker words it (go-units' `HumanDuration`): "Less than a second",
/// "About a minute", "5 hours", "3 weeks".
pub(crate) fn human_duration(seconds: u64) -> String {
    let minutes = seconds / 60;
    // Hours are rounded, as go-units rounds them.
    let hours = (seconds + 1800) / 3600;
    match seconds {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        2..=59 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// The command as docker's table shows it: cut to `width` characters with an ellipsis,
/// then quoted (Go's `strconv.Quote`, as docker prints it).
fn quoted_command(args: &[String], width: Option<usize>) -> String {
    let command = args.join(" ");
    let cut = match width {
        Some(width) if command.chars().count() > width => {
            command.chars().take(width - 1).chain(['…']).collect()
        }
        _ => command,
    };
    // serde_json's string escaping is Go's for everything a command line holds.
    serde_json::Value::String(cut).to_string()
}

/// `peapod ps` with no id: docker's table (`-a` all, `-q` ids) or JSON array.
pub(crate) fn table(rt: &Runtime, args: &PsArgs) -> Result<i32, Error> {
    let containers: Vec<Container> = Container::all(rt)?
        .into_iter()
        .filter(|c| args.all || c.is_up())
        .collect();
    if args.quiet {
        for c in &containers {
            match args.no_trunc {
                true => outln!("{}", c.state.id),
                false => outln!("{}", short(&c.state.id)),
            }
        }
        return Ok(0);
    }
    let now = now();
    if args.format == Format::Json {
        let rows: Vec<serde_json::Value> = containers
            .iter()
            .map(|c| {
                json!({
                    "Id": c.state.id,
                    "Names": c.name().into_iter().collect::<Vec<_>>(),
                    "Image": c.image(),
                    "Command": c.args().join(" "),
                    "Created": c.created(),
                    "State": c.docker_state(),
                    "Status": c.status(now),
                    "ExitCode": c.record.as_ref().and_then(|r| r.exit).map_or(0, |e| e.code),
                    "Pid": c.state.pid,
                    "Ports": crate::ports::column(&c.ports(rt)),
                })
            })
            .collect();
        outln!("{}", crate::to_json(&rows)?);
        return Ok(0);
    }
    let mut rows = vec![[
        "CONTAINER ID".to_owned(),
        "IMAGE".to_owned(),
        "COMMAND".to_owned(),
        "CREATED".to_owned(),
        "STATUS".to_owned(),
        "PORTS".to_owned(),
        "NAMES".to_owned(),
    ]];
    let width = (!args.no_trunc).then_some(COMMAND_WIDTH);
    for c in &containers {
        let id = match args.no_trunc {
            true => c.state.id.clone(),
            false => short(&c.state.id).to_owned(),
        };
        rows.push([
            id,
            c.image(),
            quoted_command(&c.args(), width),
            format!("{} ago", human_duration(now.saturating_sub(c.created()))),
            c.status(now),
            crate::ports::column(&c.ports(rt)),
            c.name().unwrap_or_default().to_owned(),
        ]);
    }
    print_columns(&rows);
    Ok(0)
}

/// Rows in columns three spaces apart, as docker's tabwriter sets them.
fn print_columns<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                let pad = w - cell.chars().count() + 3;
                line.push_str(&" ".repeat(pad));
            }
        }
        outln!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_words_them() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(21 * 86400), "3 weeks");
    }

    #[test]
    fn commands_are_cut_and_quoted_as_docker_shows_them() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            quoted_command(&args(&["sleep", "60"]), Some(20)),
            "\"sleep 60\""
        );
        assert_eq!(
            quoted_command(
                &args(&["/bin/sh", "-c", "echo \"hi\"; sleep 600"]),
                Some(20)
            ),
            "\"/bin/sh -c echo \\\"hi…\""
        );
        assert_eq!(quoted_command(&args(&["a", "b"]), None), "\"a b\"");
    }

    #[test]
    fn only_generated_ids_are_shortened() {
        assert_eq!(short(&"0123456789ab".repeat(6)[..64]), "0123456789ab");
        assert_eq!(short("web"), "web");
    }
}
