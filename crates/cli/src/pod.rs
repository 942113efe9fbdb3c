//! `peapod pod ...`: pods as Kubernetes has them. A pod is an infra process (`peapod-init -P`
//! in an empty, read-only root) in new shared namespaces, pinned under the state root, and
//! containers that join them (`peapod run --pod`, or `pod play` of a manifest).

mod infra;
mod play;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxResources, Spec};
use peapod_cgroups::Cgroup;
use peapod_ns::Namespace;
use peapod_pod::{Member, PodEntry, PodRecord, PodStatus, PodStore};
use peapod_state::{ContainerId, ProcessIdentity, Status};
use serde::Serialize;

use crate::args::{Format, ListArgs, PodCommand, PodCreateArgs, PodLogsArgs, PodPsArgs, PodRmArgs};
use crate::context::Context;
use crate::Failure;

/// The annotation naming a container's pod.
pub(crate) const POD_ANNOTATION: &str = "io.peapod.pod";

impl From<peapod_pod::Error> for Failure {
    fn from(err: peapod_pod::Error) -> Failure {
        match err {
            peapod_pod::Error::InvalidName { .. } => Failure::usage(err),
            other => Failure::runtime(other),
        }
    }
}

pub(crate) fn dispatch(ctx: &Context, command: PodCommand) -> Result<i32, Failure> {
    match command {
        PodCommand::Create(args) => create(ctx, args),
        PodCommand::List(args) => list(ctx, args),
        PodCommand::Ps(args) => ps(ctx, args),
        PodCommand::Stop(args) => {
            let store = pods(ctx)?;
            let entry = store.load(&PodStore::parse_name(&args.name)?)?;
            let mut record = record_of(&entry)?;
            let grace = args.timeout.or(record.grace_seconds).unwrap_or(10);
            stop(ctx, &entry, &mut record, Duration::from_secs(grace))?;
            Ok(0)
        }
        PodCommand::Rm(args) => remove(ctx, &args).map(|()| 0),
        PodCommand::Logs(args) => logs(ctx, args),
        PodCommand::Play(args) => play::play(ctx, args),
        PodCommand::Monitor(args) => play::monitor(ctx, &args.name),
    }
}

/// The pods under the state root.
fn pods(ctx: &Context) -> Result<PodStore, Failure> {
    Ok(PodStore::open(&ctx.store_root)?)
}

fn record_of(entry: &PodEntry) -> Result<PodRecord, Failure> {
    entry.record()?.ok_or_else(|| {
        Failure::runtime(anyhow!(
            "pod {} has no record (its creation died half-way): remove it with `peapod pod rm -f`",
            entry.name()
        ))
    })
}

/// Pinning namespaces needs mounts in the host's mount namespace, and a pod's user
/// namespace is not made yet: pods need root.
fn refuse_rootless(ctx: &Context) -> Result<(), Failure> {
    match ctx.rootless {
        true => Err(Failure::runtime(anyhow!(
            "pods need root: their namespaces are pinned with bind mounts"
        ))),
        false => Ok(()),
    }
}

fn create(ctx: &Context, args: PodCreateArgs) -> Result<i32, Failure> {
    refuse_rootless(ctx)?;
    let name = PodStore::parse_name(&args.name)?;
    let uts = args.share.contains(&Namespace::Uts);
    if args.hostname.is_some() && !uts {
        return Err(Failure::usage(anyhow!(
            "--hostname needs the pod to share its uts namespace (--share ...,uts)"
        )));
    }
    let labels: BTreeMap<String, String> = args
        .labels
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let init = crate::init::locate(args.init_path.as_deref()).map_err(Failure::usage)?;
    let mut record = PodRecord::new(&name);
    record.hostname = uts.then(|| args.hostname.clone().unwrap_or_else(|| name.to_string()));
    record.shared = args.share.iter().map(ToString::to_string).collect();
    record.shared.dedup();
    record.labels = labels;
    let resources = crate::run::with_limits(None, &args.limits);
    make(ctx, &name, record, &init, resources.as_ref())?;
    Ok(0)
}

/// Makes the pod `name` as `record` describes it: its cgroup, with the limits `resources`,
/// and its infra process in it. On failure nothing is left. Returns the locked entry.
fn make(
    ctx: &Context,
    name: &ContainerId,
    mut record: PodRecord,
    init: &Path,
    resources: Option<&LinuxResources>,
) -> Result<PodEntry, Failure> {
    let store = pods(ctx)?;
    let entry = store.create(name)?;
    // The cgroup is recorded before it is made, so that `pod rm` finds it after a crash.
    let started = crate::cgroups::locate_new_pod(name)
        .and_then(|paths| {
            record.cgroup_paths = paths;
            Ok(entry.save(&record)?)
        })
        .and_then(|()| crate::cgroups::create_pod(name, resources))
        .and_then(|_| infra::start(&entry, &mut record, init));
    match started {
        Ok(()) => Ok(entry),
        Err(e) => {
            let _ = stop(ctx, &entry, &mut record, Duration::ZERO);
            let _ = remove_cgroup(&record);
            let _ = store.remove(entry);
            Err(e)
        }
    }
}

/// Removes the pod's cgroup (its containers' cgroups below it must be gone).
fn remove_cgroup(record: &PodRecord) -> Result<(), Failure> {
    let infra: Vec<PathBuf> = record
        .cgroup_paths
        .iter()
        .map(|p| p.join(infra::INFRA_CGROUP))
        .collect();
    // The infra process's leaf first: a cgroup with a child cannot go.
    for paths in [&infra, &record.cgroup_paths] {
        if let Some(cgroup) = crate::cgroups::open(paths)? {
            cgroup.remove().map_err(Failure::runtime)?;
        }
    }
    Ok(())
}

/// Fills the spec's `linux.namespaces` with the pod's pinned namespaces (the container keeps
/// its own mount namespace and rootfs), and drops its host name when the pod names it.
pub(crate) fn join(spec: &mut Spec, record: &PodRecord, pod_dir: &Path) -> Result<(), Failure> {
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| Failure::runtime(anyhow!("linux: missing")))?;
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    for (kind, pin) in record.pins(pod_dir) {
        let typ = peapod_container::oci_namespace_type(kind);
        namespaces.retain(|ns| ns.typ() != typ);
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .path(pin)
                .build()
                .context("cannot describe a namespace")
                .map_err(Failure::runtime)?,
        );
    }
    linux.set_namespaces(Some(namespaces));
    if record.shares(Namespace::Uts) {
        spec.set_hostname(None);
    }
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(POD_ANNOTATION.to_owned(), record.name.clone());
    spec.set_annotations(Some(annotations));
    Ok(())
}

/// A container being added to a pod: holds the pod's lock (so that `pod rm` waits until the
/// container is recorded) and, for a detached container, points stdout and stderr at its log
/// file while the container process is made. Dropping it releases both.
#[derive(Debug)]
pub(crate) struct Attached {
    entry: PodEntry,
    record: PodRecord,
    cgroup: Option<Cgroup>,
    id: String,
    _stdio: Option<Stdio>,
}

/// Adds container `id` to pod `pod`: checks that the pod runs, records the member (before
/// the container exists, so `pod rm` never misses it) and joins `spec` to its namespaces.
pub(crate) fn attach(
    ctx: &Context,
    pod: &str,
    id: &str,
    spec: &mut Spec,
    detach: bool,
    member: Option<(&str, bool)>,
) -> Result<Attached, Failure> {
    refuse_rootless(ctx)?;
    // Before the pod's record is touched: a failed create would otherwise drop the live
    // container of that id from the pod (only `pod play` restarts reuse an id).
    if member.is_none() && ctx.store_root.join(id).exists() {
        return Err(Failure::runtime(anyhow!("container {id} already exists")));
    }
    let entry = pods(ctx)?.load(&PodStore::parse_name(pod)?)?;
    let mut record = record_of(&entry)?;
    match record.status() {
        PodStatus::Running => {}
        status => {
            return Err(Failure::runtime(anyhow!(
                "pod {pod} is {}: its infra process is gone",
                status.as_str()
            )))
        }
    }
    join(spec, &record, entry.dir())?;
    let cgroup = crate::cgroups::open(&record.cgroup_paths)?;
    // Members whose container is gone (a foreground run that ended) are forgotten now.
    record
        .containers
        .retain(|m| m.id == id || ctx.store_root.join(&m.id).exists());
    match record.containers.iter_mut().find(|m| m.id == id) {
        Some(existing) => existing.restarts += 1,
        None => record.containers.push(Member {
            id: id.to_owned(),
            name: member.map(|(name, _)| name.to_owned()),
            init: member.is_some_and(|(_, init)| init),
            restarts: 0,
        }),
    }
    entry.save(&record)?;
    let stdio = match detach {
        true => {
            let logs = entry.subdir("logs")?;
            let log = File::options()
                .create(true)
                .append(true)
                .open(logs.join(format!("{id}.log")))
                .context("cannot open the container's log file")
                .map_err(Failure::runtime)?;
            Some(Stdio::redirect(Some(&log)).map_err(Failure::runtime)?)
        }
        false => None,
    };
    Ok(Attached {
        entry,
        record,
        cgroup,
        id: id.to_owned(),
        _stdio: stdio,
    })
}

impl Attached {
    /// The pod's cgroup, which the container's own goes below.
    pub(crate) fn cgroup(&self) -> Option<Cgroup> {
        self.cgroup.clone()
    }

    /// The container could not be made: it is no member after all.
    pub(crate) fn abandon(mut self) {
        self.record.containers.retain(|m| m.id != self.id);
        let _ = self.entry.save(&self.record);
    }
}

/// Stdin from `/dev/null` and stdout and stderr to a file (or `/dev/null`) while this value
/// lives, so that a container process made meanwhile inherits them; the old ones come back
/// on drop. The CLI is single-threaded, so nothing else writes meanwhile but our own logs.
#[derive(Debug)]
pub(crate) struct Stdio {
    saved: Vec<OwnedFd>,
}

impl Stdio {
    pub(crate) fn redirect(out: Option<&File>) -> anyhow::Result<Stdio> {
        use nix::fcntl::{fcntl, FcntlArg};
        use std::os::fd::FromRawFd;
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("cannot open /dev/null")?;
        let mut saved = Vec::new();
        for fd in 0..3 {
            let copy = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)).context("cannot save stdio")?;
            // SAFETY: fcntl returned a fresh descriptor that nothing else owns.
            saved.push(unsafe { OwnedFd::from_raw_fd(copy) });
        }
        let out: RawFd = out.map_or(null.as_raw_fd(), AsRawFd::as_raw_fd);
        for (fd, from) in [(0, null.as_raw_fd()), (1, out), (2, out)] {
            nix::unistd::dup2(from, fd).context("cannot redirect stdio")?;
        }
        Ok(Stdio { saved })
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        for (fd, saved) in self.saved.iter().enumerate() {
            let _ = nix::unistd::dup2(saved.as_raw_fd(), fd as RawFd);
        }
    }
}

/// The live process of container `id`, if it has one.
fn container_process(ctx: &Context, id: &str) -> Option<(ProcessIdentity, Status)> {
    let id: ContainerId = id.parse().ok()?;
    let entry = ctx.store().ok()?.load(&id).ok()?;
    let record = entry.record().ok()??;
    let status = record.status(entry.dir());
    Some((record.process?, status))
}

/// The cgroup of container `id`, if it has a record naming one.
fn container_cgroup(ctx: &Context, id: &str) -> Option<Cgroup> {
    let id: ContainerId = id.parse().ok()?;
    let record = ctx.store().ok()?.load(&id).ok()?.record().ok()??;
    crate::cgroups::of_record(&record).ok()?
}

/// Waits until none of `processes` lives, at most `timeout`; returns whether they are gone.
fn signal_all(processes: &[ProcessIdentity], signal: Signal) {
    for p in processes.iter().filter(|p| p.is_alive()) {
        let _ = kill(Pid::from_raw(p.pid), signal);
    }
}

/// Stops the pod: the monitor first (nothing restarts), then the containers (SIGTERM, then
/// SIGKILL after `grace`), then the infra process, then whatever is left in the containers'
/// cgroups and the pod's; unpins the namespaces.
fn stop(
    ctx: &Context,
    entry: &PodEntry,
    record: &mut PodRecord,
    grace: Duration,
) -> Result<(), Failure> {
    if let Some(monitor) = record.monitor.take() {
        signal_all(&[monitor], Signal::SIGKILL);
        crate::kill::wait_gone(&[monitor], crate::cgroups::TIMEOUT);
    }
    let processes: Vec<ProcessIdentity> = record
        .containers
        .iter()
        .filter_map(|m| container_process(ctx, &m.id))
        .map(|(p, _)| p)
        .collect();
    if !grace.is_zero() {
        signal_all(&processes, Signal::SIGTERM);
    }
    if !crate::kill::wait_gone(&processes, grace) {
        signal_all(&processes, Signal::SIGKILL);
    }
    let mut all = processes;
    all.extend(record.infra);
    // peapod-init -P ends on SIGTERM; SIGKILL leaves it no choice.
    signal_all(&all, Signal::SIGKILL);
    if !crate::kill::wait_gone(&all, crate::cgroups::TIMEOUT) {
        return Err(Failure::runtime(anyhow!(
            "pod {}: processes did not die within {:?}",
            record.name,
            crate::cgroups::TIMEOUT
        )));
    }
    // Processes that left their container's process tree (daemons, the orphans of a
    // container without a PID namespace) are still in its cgroup, or in the pod's.
    for member in &record.containers {
        if let Some(cgroup) = container_cgroup(ctx, &member.id) {
            crate::cgroups::empty(&cgroup, false)?;
        }
    }
    if let Some(cgroup) = crate::cgroups::open(&record.cgroup_paths)? {
        crate::cgroups::empty(&cgroup, false)?;
    }
    infra::unpin_all(entry)?;
    if record.infra.is_some() {
        record.stopped = true;
    }
    entry.save(record)?;
    Ok(())
}

/// `pod rm`: containers, infra process, pins, state.
pub(crate) fn remove(ctx: &Context, args: &PodRmArgs) -> Result<(), Failure> {
    let store = pods(ctx)?;
    let entry = store.load(&PodStore::parse_name(&args.name)?)?;
    let Some(mut record) = entry.record()? else {
        infra::unpin_all(&entry)?;
        store.remove(entry)?;
        return Ok(());
    };
    let status = record.status();
    if status == PodStatus::Running && !args.force {
        return Err(Failure::runtime(anyhow!(
            "pod {} is running: stop it first, or remove it with --force",
            args.name
        )));
    }
    stop(ctx, &entry, &mut record, Duration::ZERO)?;
    // Every member is tried, whatever happens to one: the first failure is reported after.
    let mut first_failure = None;
    for member in &record.containers {
        let deleted = member
            .id
            .parse::<ContainerId>()
            .map_err(Failure::from)
            .and_then(|id| crate::delete::delete(ctx, &id, true));
        if let Err(e) = deleted {
            first_failure.get_or_insert(e);
        }
    }
    if let Some(failure) = first_failure {
        return Err(failure);
    }
    remove_cgroup(&record)?;
    store.remove(entry)?;
    Ok(())
}

/// One line of `pod list`.
#[derive(Debug, Serialize)]
struct PodJson {
    name: String,
    status: &'static str,
    created: String,
    hostname: Option<String>,
    shared: Vec<String>,
    labels: BTreeMap<String, String>,
    infra_pid: i32,
    containers: usize,
}

fn list(ctx: &Context, args: ListArgs) -> Result<i32, Failure> {
    let store = pods(ctx)?;
    let mut rows = Vec::new();
    for name in store.names()? {
        let Ok(entry) = store.load(&name) else {
            continue;
        };
        let Some(record) = entry.record()? else {
            continue;
        };
        let status = record.status();
        rows.push(PodJson {
            name: record.name.clone(),
            status: status.as_str(),
            created: peapod_state::rfc3339(record.created),
            hostname: record.hostname.clone(),
            shared: record.shared.clone(),
            labels: record.labels.clone(),
            infra_pid: live_pid(record.infra, status == PodStatus::Running),
            containers: record
                .containers
                .iter()
                .filter(|m| ctx.store_root.join(&m.id).exists())
                .count(),
        });
    }
    let mut out = std::io::stdout().lock();
    match (args.format, args.quiet) {
        (_, true) => rows.iter().for_each(|r| {
            let _ = writeln!(out, "{}", r.name);
        }),
        (Format::Json, false) => print_json(&rows)?,
        (Format::Table, false) => {
            let _ = writeln!(
                out,
                "{:<20} {:<9} {:<10} {:<20} {:<15} CREATED",
                "NAME", "STATUS", "CONTAINERS", "SHARED", "INFRA PID"
            );
            for r in &rows {
                let _ = writeln!(
                    out,
                    "{:<20} {:<9} {:<10} {:<20} {:<15} {}",
                    r.name,
                    r.status,
                    r.containers,
                    r.shared.join(","),
                    r.infra_pid,
                    r.created
                );
            }
        }
    }
    Ok(0)
}

fn live_pid(process: Option<ProcessIdentity>, alive: bool) -> i32 {
    match (process, alive) {
        (Some(p), true) => p.pid,
        _ => 0,
    }
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .context("cannot write JSON")
        .map_err(Failure::runtime)?;
    println!("{text}");
    Ok(())
}

/// `pod ps --format json`.
#[derive(Debug, Serialize)]
struct PodPsJson {
    name: String,
    status: &'static str,
    hostname: Option<String>,
    infra_pid: i32,
    /// The inode of each shared namespace (as `ls -l /proc/PID/ns` shows it).
    namespaces: BTreeMap<String, u64>,
    /// The pod's cgroup, one directory per hierarchy.
    cgroup_paths: Vec<std::path::PathBuf>,
    containers: Vec<MemberJson>,
}

#[derive(Debug, Serialize)]
struct MemberJson {
    id: String,
    name: Option<String>,
    init: bool,
    status: &'static str,
    pid: i32,
    restarts: u32,
}

fn ps(ctx: &Context, args: PodPsArgs) -> Result<i32, Failure> {
    let entry = pods(ctx)?.load(&PodStore::parse_name(&args.name)?)?;
    let record = record_of(&entry)?;
    drop(entry);
    let status = record.status();
    let containers: Vec<MemberJson> = record
        .containers
        .iter()
        .filter(|m| ctx.store_root.join(&m.id).exists())
        .map(|m| {
            let (pid, status) = match container_process(ctx, &m.id) {
                Some((p, status)) => (live_pid(Some(p), crate::kill::is_live(status)), status),
                None => (0, Status::Stopped),
            };
            MemberJson {
                id: m.id.clone(),
                name: m.name.clone(),
                init: m.init,
                status: status.as_str(),
                pid,
                restarts: m.restarts,
            }
        })
        .collect();
    let json = PodPsJson {
        name: record.name.clone(),
        status: status.as_str(),
        hostname: record.hostname.clone(),
        infra_pid: live_pid(record.infra, status == PodStatus::Running),
        namespaces: record.namespaces.clone(),
        cgroup_paths: record.cgroup_paths.clone(),
        containers,
    };
    if args.format == Format::Json {
        print_json(&json)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    let namespaces: Vec<String> = json
        .namespaces
        .iter()
        .map(|(kind, inode)| format!("{kind}:[{inode}]"))
        .collect();
    let _ = writeln!(
        out,
        "pod {} {} (infra pid {}; {})",
        json.name,
        json.status,
        json.infra_pid,
        namespaces.join(" ")
    );
    let _ = writeln!(
        out,
        "{:<30} {:<16} {:<8} {:<8} RESTARTS",
        "CONTAINER", "NAME", "STATUS", "PID"
    );
    for c in &json.containers {
        let _ = writeln!(
            out,
            "{:<30} {:<16} {:<8} {:<8} {}",
            c.id,
            c.name.as_deref().unwrap_or("-"),
            c.status,
            c.pid,
            c.restarts
        );
    }
    Ok(0)
}

fn logs(ctx: &Context, args: PodLogsArgs) -> Result<i32, Failure> {
    let entry = pods(ctx)?.load(&PodStore::parse_name(&args.name)?)?;
    let record = record_of(&entry)?;
    let dir = entry.dir().join("logs");
    drop(entry);
    let members: Vec<&Member> = match &args.container {
        Some(wanted) => {
            let found: Vec<&Member> = record
                .containers
                .iter()
                .filter(|m| &m.id == wanted || m.name.as_ref() == Some(wanted))
                .collect();
            if found.is_empty() {
                return Err(Failure::runtime(anyhow!(
                    "pod {} has no container {wanted}",
                    args.name
                )));
            }
            found
        }
        None => record.containers.iter().collect(),
    };
    let mut out = std::io::stdout().lock();
    for m in members {
        let text = std::fs::read_to_string(dir.join(format!("{}.log", m.id))).unwrap_or_default();
        if args.container.is_some() {
            let _ = out.write_all(text.as_bytes());
            continue;
        }
        let label = m.name.as_deref().unwrap_or(&m.id);
        for line in text.lines() {
            let _ = writeln!(out, "{label} | {line}");
        }
    }
    Ok(0)
}
