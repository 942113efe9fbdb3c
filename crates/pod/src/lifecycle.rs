//! A pod's life: made (its cgroup and infra process), joined by containers, stopped and
//! removed, on the runtime API of `peapod-runtime`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Member, PodEntry, PodRecord, PodStatus, PodStore};
use anyhow::{anyhow, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxResources, Spec};
use peapod_cgroups::Cgroup;
use peapod_ns::Namespace;
use peapod_state::{ContainerId, ProcessIdentity, Status};
use serde::Serialize;

use peapod_runtime::flags::{with_limits, Limits};
use peapod_runtime::logcopy::LogCopier;
use peapod_runtime::logfile::{LogLimits, LogQuery, LOG_FILE};
use peapod_runtime::{Error as RuntimeError, Runtime};

use crate::infra;
use crate::network::{self, NetworkOptions, PodNetwork};

/// The annotation naming a container's pod.
pub const POD_ANNOTATION: &str = "io.peapod.pod";

/// The pods under the state root.
pub(crate) fn pods(rt: &Runtime) -> Result<PodStore, RuntimeError> {
    Ok(PodStore::open(&rt.root)?)
}

pub(crate) fn record_of(entry: &PodEntry) -> Result<PodRecord, RuntimeError> {
    entry.record()?.ok_or_else(|| {
        RuntimeError::runtime(anyhow!(
            "pod {} has no record (its creation died half-way): remove it with `peapod pod rm -f`",
            entry.name()
        ))
    })
}

/// A rootless pod has no cgroup unless it can be made (a delegated cgroup v2 subtree):
/// elsewhere limits are refused with a line saying why, rather than a bare EPERM.
fn refuse_rootless_limits(
    rt: &Runtime,
    resources: Option<&LinuxResources>,
) -> Result<(), RuntimeError> {
    match resources.is_some() && !peapod_runtime::cgroups::pods_get_cgroups(rt) {
        true => Err(RuntimeError::usage(anyhow!(
            "rootless pods cannot have limits here: they need cgroup v2 with a cgroup \
             delegated to the user (as systemd's user@UID.service has)"
        ))),
        false => Ok(()),
    }
}

/// A pod to make with [`create`], as `peapod pod create` takes it.
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// The pod's name (a container id).
    pub name: String,
    /// Its host name (the pod must share its uts namespace); by default its name.
    pub hostname: Option<String>,
    /// The namespace kinds its containers share.
    pub share: Vec<Namespace>,
    /// `KEY=VALUE` labels.
    pub labels: Vec<String>,
    /// The static peapod-init its infra process runs, where it is not found by itself.
    pub init_path: Option<PathBuf>,
    /// The limits of the pod's cgroup, which hold for its containers together.
    pub limits: Limits,
    /// Its network, published ports and `/etc` files.
    pub network: NetworkOptions,
    /// `--log-opt max-size=SIZE`, `max-file=N`: its detached containers' logs, over the
    /// kubelet's defaults.
    pub log_opts: Vec<String>,
    /// `--userns`: `keep-id` (rootless) maps the caller's ids as themselves in the pod's user
    /// namespace, and its containers run as the caller.
    pub userns: Option<peapod_runtime::userns::UserNs>,
}

/// Checks a pod's `--log-opt`s (see [`PodRecord::log_limits`]).
pub(crate) fn check_log_opts(opts: &[String]) -> Result<(), RuntimeError> {
    let mut limits = peapod_runtime::logfile::LogLimits::KUBELET;
    for opt in opts {
        limits.apply(opt).map_err(RuntimeError::usage)?;
    }
    Ok(())
}

/// The limits of the logs of pod `name`'s containers (`run -d --pod`).
pub fn log_limits(rt: &Runtime, name: &str) -> Result<LogLimits, RuntimeError> {
    let entry = pods(rt)?.load(&PodStore::parse_name(name)?)?;
    Ok(record_of(&entry)?.log_limits())
}

/// Makes a pod (`peapod pod create`): its cgroup and its infra process in new namespaces of
/// the shared kinds, pinned under the state root. On failure nothing is left.
pub fn create(rt: &Runtime, args: &PodOptions) -> Result<(), RuntimeError> {
    let name = PodStore::parse_name(&args.name)?;
    let uts = args.share.contains(&Namespace::Uts);
    if args.hostname.is_some() && !uts {
        return Err(RuntimeError::usage(anyhow!(
            "--hostname needs the pod to share its uts namespace (--share ...,uts)"
        )));
    }
    let labels: BTreeMap<String, String> = args
        .labels
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let init =
        peapod_runtime::init::locate(args.init_path.as_deref()).map_err(RuntimeError::usage)?;
    let mut share = args.share.clone();
    // On the host's network the pod has no network namespace of its own to share.
    if args.network.network == PodNetwork::Host {
        share.retain(|ns| *ns != Namespace::Net);
    }
    network::check(&args.network, share.contains(&Namespace::Net), rt.rootless)?;
    check_log_opts(&args.log_opts)?;
    let keep_id = crate::userns::keep_id(rt, args.userns)?;
    let resources = with_limits(None, &args.limits);
    refuse_rootless_limits(rt, resources.as_ref())?;
    if !rt.rootless {
        network::reap(rt, &args.network.cni);
    }
    let mut record = PodRecord::new(&name);
    record.log_opts = args.log_opts.clone();
    record.hostname = uts.then(|| args.hostname.clone().unwrap_or_else(|| name.to_string()));
    record.shared = share.iter().map(ToString::to_string).collect();
    record.shared.dedup();
    record.labels = labels;
    record.keep_id = keep_id;
    let entry = make(rt, &name, record, &init, resources.as_ref(), &args.network)?;
    made(&entry)
}

/// Marks the pod of `entry` as made (see [`PodRecord::setup`]): from now on, its status is
/// its infra process's. A played pod is made once its monitor runs (the monitor says so).
pub(crate) fn made(entry: &PodEntry) -> Result<(), RuntimeError> {
    let mut record = record_of(entry)?;
    record.setup = None;
    Ok(entry.save(&record)?)
}

/// Makes the pod `name` as `record` describes it: its cgroup, with the limits `resources`,
/// and its infra process in it. On failure nothing is left. Returns the locked entry, still
/// recorded as being set up by this process ([`made`] ends that), so that a `peapod` killed
/// before the pod is whole leaves a `failed` pod the next command removes.
pub(crate) fn make(
    rt: &Runtime,
    name: &ContainerId,
    mut record: PodRecord,
    init: &Path,
    resources: Option<&LinuxResources>,
    net: &NetworkOptions,
) -> Result<PodEntry, RuntimeError> {
    let store = pods(rt)?;
    // Before anything is made: a port someone has refuses the pod; a host port 0 (`-P`)
    // becomes the free one the kernel picked.
    let (mut held, net) = crate::ports::claim(net)?;
    let net = &net;
    // A user-mode network's helper binds the ports itself: they are let go just before.
    let helper_binds = net.network.user_mode().is_some();
    record.rootless = rt.rootless;
    if rt.rootless {
        // The pod's user namespace, made by its infra process, owns the others.
        record.shared.insert(0, Namespace::User.to_string());
    }
    let entry = store.create(name)?;
    // Made by this process until it is done: should it be killed half-way, the pod is
    // `failed` and the next pod command removes it (see [`reap`]).
    record.setup = ProcessIdentity::of(std::process::id() as i32);
    // The cgroup is recorded before it is made, so that `pod rm` finds it after a crash.
    let cgroup = |record: &mut PodRecord| -> Result<(), RuntimeError> {
        if !peapod_runtime::cgroups::pods_get_cgroups(rt) {
            return Ok(());
        }
        record.cgroup_paths = peapod_runtime::cgroups::locate_new_pod(rt, name)?;
        record.cgroup_unit = peapod_runtime::cgroups::pod_slice(rt, name)?;
        entry.save(record)?;
        match peapod_runtime::cgroups::create_pod(rt, name, resources) {
            Ok(_) => Ok(()),
            // Rootless without limits a cgroup is a bonus, as a rootless container's.
            Err(e) if rt.rootless && resources.is_none() => {
                tracing::warn!("pod {name} goes without a cgroup: {}", e.one_line());
                record.cgroup_paths.clear();
                Ok(entry.save(record)?)
            }
            Err(e) => Err(e),
        }
    };
    let started = cgroup(&mut record)
        .and_then(|()| infra::start(&entry, &mut record, init))
        .and_then(|()| match helper_binds {
            true => {
                held.clear();
                Ok(())
            }
            false => crate::ports::hold(std::mem::take(&mut held), &mut record),
        })
        .and_then(|()| Ok(entry.save(&record)?))
        .and_then(|()| network::connect(rt, &entry, &mut record, net));
    match started {
        Ok(()) => Ok(entry),
        Err(e) => {
            let _ = stop(rt, &entry, &mut record, Duration::ZERO);
            let _ = remove_cgroup(&record);
            let _ = store.remove(entry);
            Err(e)
        }
    }
}

/// Removes the pod's cgroup (its containers' cgroups below it must be gone); under the
/// systemd driver stops its slice, which stops what is left in it.
fn remove_cgroup(record: &PodRecord) -> Result<(), RuntimeError> {
    if let Some(unit) = &record.cgroup_unit {
        return peapod_runtime::cgroups::stop_scope(unit);
    }
    let infra = infra::cgroup_paths(record)?;
    // The infra process's leaf first: a cgroup with a child cannot go.
    for paths in [&infra, &record.cgroup_paths] {
        if let Some(cgroup) = peapod_runtime::cgroups::open(paths)? {
            cgroup.remove().map_err(RuntimeError::runtime)?;
        }
    }
    Ok(())
}

/// Fills the spec's `linux.namespaces` with the pod's pinned namespaces (the container keeps
/// its own mount namespace and rootfs), and drops its host name when the pod names it.
pub fn join(spec: &mut Spec, record: &PodRecord, pod_dir: &Path) -> Result<(), RuntimeError> {
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| RuntimeError::runtime(anyhow!("linux: missing")))?;
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
                .map_err(RuntimeError::runtime)?,
        );
    }
    linux.set_namespaces(Some(namespaces));
    if record.shares(Namespace::User) {
        // The pod's user namespace has its maps already.
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
    }
    network::join(spec, record, pod_dir)?;
    if record.shares(Namespace::Uts) {
        spec.set_hostname(None);
    }
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(POD_ANNOTATION.to_owned(), record.name.clone());
    spec.set_annotations(Some(annotations));
    Ok(())
}

/// A container being added to a pod: holds the pod's lock (so that `pod rm` waits until the
/// container is recorded) and, for a detached container, points stdout and stderr at the
/// pipes of its log while the container process is made. Dropping it (the container made)
/// releases both and starts the copier of the pipes into the container's log
/// ([`peapod_runtime::logcopy`]); [`Attached::abandon`] when it was not made.
#[derive(Debug)]
pub struct Attached {
    entry: PodEntry,
    record: PodRecord,
    cgroup: Option<Cgroup>,
    id: String,
    root: PathBuf,
    log: Option<(Stdio, LogCopier)>,
}

/// Adds container `id` to pod `pod`: checks that the pod runs, records the member (before
/// the container exists, so `pod rm` never misses it) and joins `spec` to its namespaces.
pub fn attach(
    rt: &Runtime,
    pod: &str,
    id: &str,
    spec: &mut Spec,
    detach: bool,
    member: Option<(&str, bool)>,
) -> Result<Attached, RuntimeError> {
    // Before the pod's record is touched: a failed create would otherwise drop the live
    // container of that id from the pod (only `pod play` restarts reuse an id).
    if member.is_none() && rt.root.join(id).exists() {
        return Err(RuntimeError::runtime(anyhow!(
            "container {id} already exists"
        )));
    }
    let entry = pods(rt)?.load(&PodStore::parse_name(pod)?)?;
    let mut record = record_of(&entry)?;
    match record.status() {
        PodStatus::Running => {}
        status if record.setup.is_some() => {
            return Err(RuntimeError::runtime(anyhow!(
                "pod {pod} is {}: the peapod making it (pid {}) {}",
                status.as_str(),
                record.setup.map_or(0, |p| p.pid),
                match status {
                    PodStatus::Creating => "has not finished",
                    _ => "was killed half-way; `peapod pod rm` removes it",
                }
            )))
        }
        status => {
            return Err(RuntimeError::runtime(anyhow!(
                "pod {pod} is {}: its infra process is gone",
                status.as_str()
            )))
        }
    }
    join(spec, &record, entry.dir())?;
    // Checked last, just before the container joins: a rootless pod's namespaces are named
    // by its infra process's pid, which must not have been reused since.
    if record.rootless && !record.infra.is_some_and(|p| p.is_alive()) {
        return Err(RuntimeError::runtime(anyhow!(
            "pod {pod}: its infra process is gone"
        )));
    }
    let cgroup =
        peapod_runtime::cgroups::open_pod(&record.cgroup_paths, record.cgroup_unit.as_deref())?;
    // Members whose container is gone (a foreground run that ended) are forgotten now.
    record.containers.retain(|m| m.id == id || rt.exists(&m.id));
    match record.containers.iter_mut().find(|m| m.id == id) {
        Some(existing) => existing.restarts += 1,
        None => record.containers.push(Member {
            id: id.to_owned(),
            name: member.map(|(name, _)| name.to_owned()),
            init: member.is_some_and(|(_, init)| init),
            restarts: 0,
            health: None,
        }),
    }
    entry.save(&record)?;
    let log = match detach {
        true => {
            let (output, copier) = peapod_runtime::logcopy::pipes(record.log_limits())?;
            let stdio = Stdio::redirect_output(&output.stdout, &output.stderr)
                .map_err(RuntimeError::runtime)?;
            Some((stdio, copier))
        }
        false => None,
    };
    Ok(Attached {
        entry,
        record,
        cgroup,
        id: id.to_owned(),
        root: rt.root.clone(),
        log,
    })
}

impl Attached {
    /// The pod's cgroup, which the container's own goes below.
    pub fn cgroup(&self) -> Option<Cgroup> {
        self.cgroup.clone()
    }

    /// The container could not be made: it is no member after all.
    pub fn abandon(mut self) {
        self.log = None;
        self.record.containers.retain(|m| m.id != self.id);
        let _ = self.entry.save(&self.record);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let Some((stdio, copier)) = self.log.take() else {
            return;
        };
        // Ours back first: only the container holds the pipes' write ends now, so that they
        // close when its processes are gone.
        drop(stdio);
        let rt = Runtime::new(self.root.clone(), false);
        if let Err(e) = copier.spawn(&rt, &self.id) {
            tracing::warn!("container {}: {}", self.id, e.one_line());
        }
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
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("cannot open /dev/null")?;
        let out: RawFd = out.map_or(null.as_raw_fd(), AsRawFd::as_raw_fd);
        Self::redirect_to(null.as_raw_fd(), out, out)
    }

    /// Stdin from `/dev/null`, stdout and stderr to the two descriptors (a container's log
    /// pipes).
    pub(crate) fn redirect_output(out: &OwnedFd, err: &OwnedFd) -> anyhow::Result<Stdio> {
        let null = File::options()
            .read(true)
            .open("/dev/null")
            .context("cannot open /dev/null")?;
        Self::redirect_to(null.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd())
    }

    fn redirect_to(stdin: RawFd, stdout: RawFd, stderr: RawFd) -> anyhow::Result<Stdio> {
        use nix::fcntl::{fcntl, FcntlArg};
        use std::os::fd::FromRawFd;
        let mut saved = Vec::new();
        for fd in 0..3 {
            let copy = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)).context("cannot save stdio")?;
            // SAFETY: fcntl returned a fresh descriptor that nothing else owns.
            saved.push(unsafe { OwnedFd::from_raw_fd(copy) });
        }
        for (fd, from) in [(0, stdin), (1, stdout), (2, stderr)] {
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
fn container_process(rt: &Runtime, id: &str) -> Option<(ProcessIdentity, Status)> {
    let id: ContainerId = id.parse().ok()?;
    let entry = rt.store().ok()?.load(&id).ok()?;
    let record = entry.record().ok()??;
    let status = record.status(entry.dir());
    Some((record.process?, status))
}

/// The process of container `id` and the signal that stops it (its image's StopSignal, else
/// SIGTERM), if it has a process.
pub(crate) fn stoppable(rt: &Runtime, id: &str) -> Option<(ProcessIdentity, Signal)> {
    let id: ContainerId = id.parse().ok()?;
    let record = rt.store().ok()?.load(&id).ok()?.record().ok()??;
    let signal = peapod_runtime::image::stop_signal_of(&record).unwrap_or(Signal::SIGTERM);
    Some((record.process?, signal))
}

/// The cgroup of container `id`, if it has a record naming one.
fn container_cgroup(rt: &Runtime, id: &str) -> Option<Cgroup> {
    let id: ContainerId = id.parse().ok()?;
    let record = rt.store().ok()?.load(&id).ok()?.record().ok()??;
    peapod_runtime::cgroups::of_record(&record).ok()?
}

/// Waits until none of `processes` lives, at most `timeout`; returns whether they are gone.
fn signal_all(processes: &[ProcessIdentity], signal: Signal) {
    for p in processes.iter().filter(|p| p.is_alive()) {
        let _ = kill(Pid::from_raw(p.pid), signal);
    }
}

/// Stops the pod: the monitor first (nothing restarts), then the containers (SIGTERM or their
/// image's StopSignal, then
/// SIGKILL after `grace`), then the infra process, then whatever is left in the containers'
/// cgroups and the pod's; unpins the namespaces.
pub(crate) fn stop(
    rt: &Runtime,
    entry: &PodEntry,
    record: &mut PodRecord,
    grace: Duration,
) -> Result<(), RuntimeError> {
    if let Some(monitor) = record.monitor.take() {
        signal_all(&[monitor], Signal::SIGKILL);
        peapod_runtime::wait_gone(&[monitor], peapod_runtime::cgroups::TIMEOUT);
    }
    // Played containers' preStop hooks first, within the grace period (`pod rm -f`, which
    // kills at once, still gives them the pod's).
    let grace = match grace.is_zero() {
        true => {
            let hooks =
                Duration::from_secs(record.grace_seconds.unwrap_or(crate::hooks::DEFAULT_GRACE));
            crate::hooks::pre_stop_all(rt, entry, record, hooks);
            grace
        }
        false => crate::hooks::pre_stop_all(rt, entry, record, grace),
    };
    let stoppable: Vec<(ProcessIdentity, Signal)> = record
        .containers
        .iter()
        .filter_map(|m| stoppable(rt, &m.id))
        .collect();
    if !grace.is_zero() {
        for (process, signal) in &stoppable {
            signal_all(&[*process], *signal);
        }
    }
    let processes: Vec<ProcessIdentity> = stoppable.into_iter().map(|(p, _)| p).collect();
    if !peapod_runtime::wait_gone(&processes, grace) {
        signal_all(&processes, Signal::SIGKILL);
    }
    let mut all = processes;
    all.extend(record.infra);
    // The port holder ends with the infra process; waited for, so that the ports are free
    // when this returns. So does a user-mode network's helper.
    all.extend(record.port_holder);
    all.extend(record.network.as_ref().and_then(|n| n.helper));
    // One whose pid a killed `pod create` never recorded.
    if record.network.as_ref().map_or(true, |n| n.helper.is_none()) {
        let leftover = peapod_net::usermode::leftover(entry.dir());
        all.extend(leftover.and_then(ProcessIdentity::of));
    }
    // peapod-init -P ends on SIGTERM; SIGKILL leaves it no choice.
    signal_all(&all, Signal::SIGKILL);
    if !peapod_runtime::wait_gone(&all, peapod_runtime::cgroups::TIMEOUT) {
        return Err(RuntimeError::runtime(anyhow!(
            "pod {}: processes did not die within {:?}",
            record.name,
            peapod_runtime::cgroups::TIMEOUT
        )));
    }
    // Processes that left their container's process tree (daemons, the orphans of a
    // container without a PID namespace) are still in its cgroup, or in the pod's.
    for member in &record.containers {
        if let Some(cgroup) = container_cgroup(rt, &member.id) {
            peapod_runtime::cgroups::empty(&cgroup, false)?;
        }
    }
    if let Some(cgroup) = peapod_runtime::cgroups::open(&record.cgroup_paths)? {
        peapod_runtime::cgroups::empty(&cgroup, false)?;
    }
    // The log copiers end once the pipes they drain are closed (all writers gone): waited
    // for, not killed, so that the logs are whole and no copier outlives `pod stop`.
    let copiers: Vec<ProcessIdentity> = record
        .containers
        .iter()
        .filter_map(|m| peapod_runtime::logcopy::writer(&rt.root.join(&m.id)))
        .collect();
    peapod_runtime::wait_gone(&copiers, peapod_runtime::cgroups::TIMEOUT);
    // DEL while the network namespace is still pinned, so the plugins find its interface.
    let disconnected = network::disconnect(record);
    entry.save(record)?;
    disconnected?;
    infra::unpin_all(entry)?;
    if record.infra.is_some() {
        record.stopped = true;
    }
    entry.save(record)?;
    Ok(())
}

/// Stops pod `name` (`peapod pod stop`): its containers get SIGTERM, then SIGKILL after
/// `timeout` seconds (else the grace period it was played with, else 10 s).
pub fn stop_pod(rt: &Runtime, name: &str, timeout: Option<u64>) -> Result<(), RuntimeError> {
    let store = pods(rt)?;
    let entry = store.load(&PodStore::parse_name(name)?)?;
    let mut record = record_of(&entry)?;
    let grace = timeout.or(record.grace_seconds).unwrap_or(10);
    stop(rt, &entry, &mut record, Duration::from_secs(grace))
}

/// Removes pod `name` (`peapod pod rm`): containers, infra process, pins, state; a running
/// one only with `force`.
pub fn remove(rt: &Runtime, name: &str, force: bool) -> Result<(), RuntimeError> {
    let store = pods(rt)?;
    let entry = store.load(&PodStore::parse_name(name)?)?;
    let mut record = match entry.record() {
        Ok(Some(record)) => record,
        Ok(None) => {
            infra::unpin_all(&entry)?;
            crate::subpath::unstage_all(entry.dir())?;
            crate::resources::unmount_volumes(entry.dir()).map_err(RuntimeError::runtime)?;
            store.remove(entry)?;
            return Ok(());
        }
        Err(crate::Error::State(peapod_state::Error::Corrupt { .. })) if force => {
            tracing::warn!("pod {name}: its pod.json is corrupt; removing what can be found");
            let mut record = entry.salvage();
            if record.cgroup_paths.is_empty() {
                record.cgroup_paths = peapod_runtime::cgroups::locate_pod(rt, entry.name())?;
            }
            record
        }
        Err(e) => return Err(corrupt_hint(e, name)),
    };
    let status = record.status();
    if status == PodStatus::Running && !force {
        return Err(RuntimeError::runtime(anyhow!(
            "pod {} is running: stop it first, or remove it with --force",
            name
        )));
    }
    stop(rt, &entry, &mut record, Duration::ZERO)?;
    // Every member is tried, whatever happens to one: the first failure is reported after.
    let mut first_failure = None;
    for member in &record.containers {
        let deleted = member
            .id
            .parse::<ContainerId>()
            .map_err(RuntimeError::from)
            .and_then(|id| rt.delete(id.as_str(), true));
        if let Err(e) = deleted {
            first_failure.get_or_insert(e);
        }
    }
    if let Some(failure) = first_failure {
        return Err(failure);
    }
    remove_cgroup(&record)?;
    crate::subpath::unstage_all(entry.dir())?;
    crate::resources::unmount_volumes(entry.dir()).map_err(RuntimeError::runtime)?;
    store.remove(entry)?;
    Ok(())
}

/// A pod's record that does not parse, said with what removes it.
fn corrupt_hint(e: crate::Error, name: &str) -> RuntimeError {
    match e {
        crate::Error::State(peapod_state::Error::Corrupt { .. }) => {
            RuntimeError::runtime(anyhow!("{e}; `peapod pod rm -f {name}` removes the pod"))
        }
        other => other.into(),
    }
}

/// Removes what killed `peapod` processes left of pods: a pod whose `pod create` (or
/// `play`, or `run --net`) died before the pod was made, and the hidden network of a lone
/// container whose `peapod run` is gone without removing it (its container is gone too).
/// Pods another command holds are left alone. Never fails the command that calls it: what
/// cannot be removed now is said in a warning and tried again by the next command.
pub fn reap(rt: &Runtime) {
    if rt.rootless {
        return;
    }
    let Ok(store) = pods(rt) else { return };
    for name in store.names().unwrap_or_default() {
        let Ok(Some(entry)) = store.try_load(&name) else {
            continue;
        };
        // A pod without a record yet may be one whose `pod create` is between making its
        // directory and locking it: removed only once it is a minute old.
        let why = match entry.record() {
            Ok(Some(record)) => left_behind(rt, &record),
            Ok(None) if peapod_state::is_older_than(entry.dir(), UNRECORDED_AGE) => {
                Some("its pod create was killed before it wrote a record".to_owned())
            }
            _ => None,
        };
        drop(entry);
        let Some(why) = why else { continue };
        match remove(rt, name.as_str(), true) {
            Ok(()) => tracing::info!("removed pod {name}: {why}"),
            // Another command removed it meanwhile.
            Err(e) if !pods(rt).is_ok_and(|s| s.dir().join(name.as_str()).exists()) => {
                tracing::debug!("pod {name}: {}", e.one_line());
            }
            Err(e) => tracing::warn!("cannot remove pod {name} ({why}): {}", e.one_line()),
        }
    }
}

/// How old a pod directory without a record must be before [`reap`] removes it.
const UNRECORDED_AGE: Duration = Duration::from_secs(60);

/// Why the pod of `record` is a leftover nobody else will remove, if it is one.
fn left_behind(rt: &Runtime, record: &PodRecord) -> Option<String> {
    if let Some(setup) = record.setup.filter(|p| !p.is_alive()) {
        return Some(format!("peapod process {} died while making it", setup.pid));
    }
    let container = record.labels.get(network::CONTAINER_NETWORK_LABEL)?;
    let owner_gone = !record.owner.is_some_and(|p| p.is_alive());
    (owner_gone && !rt.exists(container))
        .then(|| format!("the network of container {container}, which is gone"))
}

/// Called when the monitor of pod `name` ends on its own (the pod stopped, or nothing is
/// left to restart): it is no longer recorded, so that the pod is not shown as having lost
/// its monitor.
pub fn monitor_ended(rt: &Runtime, name: &str) -> Result<(), RuntimeError> {
    let entry = pods(rt)?.load(&PodStore::parse_name(name)?)?;
    let Some(mut record) = entry.record()? else {
        return Ok(());
    };
    let me = ProcessIdentity::of(std::process::id() as i32);
    if record.monitor.is_some() && record.monitor == me {
        record.monitor = None;
        entry.save(&record)?;
    }
    Ok(())
}

/// The status as `pod list` and `pod ps` print it: `running (unsupervised)` for a played
/// pod whose monitor was killed (nothing restarts its containers any more).
fn shown_status(record: &PodRecord, status: PodStatus) -> &'static str {
    match (status, record.supervised()) {
        (PodStatus::Running, Some(false)) => "running (unsupervised)",
        _ => status.as_str(),
    }
}

/// One line of `pod list`.
#[derive(Debug, Serialize)]
pub struct PodSummary {
    /// The pod's name.
    pub name: String,
    /// `creating`, `running`, `running (unsupervised)` (its monitor was killed), `failed`,
    /// `stopped`, or `unknown` (its record is corrupt).
    pub status: &'static str,
    /// For a played pod, whether its monitor runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervised: Option<bool>,
    /// When it was made (RFC 3339).
    pub created: String,
    /// Its host name, when it shares its uts namespace.
    pub hostname: Option<String>,
    /// The namespace kinds it shares.
    pub shared: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its infra process (0 when not running).
    pub infra_pid: i32,
    /// How many of its containers exist.
    pub containers: usize,
    /// Its network (none, host, or a CNI network's name).
    pub network: String,
    /// Its address on the network, while attached.
    pub ip: Option<String>,
    /// Its published ports (`HOST_PORT->CONTAINER_PORT/PROTOCOL`).
    pub ports: Vec<String>,
}

/// Every pod under the state root (`peapod pod list`).
pub fn list(rt: &Runtime) -> Result<Vec<PodSummary>, RuntimeError> {
    let store = pods(rt)?;
    let mut rows = Vec::new();
    for name in store.names()? {
        let record = match store.peek(&name) {
            Ok(Some(record)) => record,
            // Its creation died before it wrote anything: the next `reap` removes it.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("pod {name}: {}", corrupt_hint(e, name.as_str()).one_line());
                rows.push(PodSummary::unknown(&name));
                continue;
            }
        };
        // The hidden pod of a lone container's network (`run --net`) is the container's.
        if record.labels.contains_key(network::CONTAINER_NETWORK_LABEL) {
            continue;
        }
        let status = record.status();
        rows.push(PodSummary {
            name: record.name.clone(),
            status: shown_status(&record, status),
            supervised: record.supervised(),
            created: peapod_state::rfc3339(record.created),
            hostname: record.hostname.clone(),
            shared: record.shared.clone(),
            labels: record.labels.clone(),
            infra_pid: live_pid(record.infra, status == PodStatus::Running),
            containers: record
                .containers
                .iter()
                .filter(|m| rt.exists(&m.id))
                .count(),
            network: network_name(&record),
            ip: record.network.as_ref().and_then(|n| n.ip()),
            ports: ports(&record),
        });
    }
    Ok(rows)
}

impl PodSummary {
    /// The line of a pod whose record does not parse: its name, and nothing else known.
    fn unknown(name: &ContainerId) -> PodSummary {
        PodSummary {
            name: name.to_string(),
            status: "unknown",
            supervised: None,
            created: String::new(),
            hostname: None,
            shared: Vec::new(),
            labels: BTreeMap::new(),
            infra_pid: 0,
            containers: 0,
            network: String::new(),
            ip: None,
            ports: Vec::new(),
        }
    }
}

fn network_name(record: &PodRecord) -> String {
    record
        .network
        .as_ref()
        .map_or_else(|| "none".to_owned(), |n| n.network.to_string())
}

fn ports(record: &PodRecord) -> Vec<String> {
    record
        .network
        .iter()
        .flat_map(|n| n.ports.iter().map(ToString::to_string))
        .collect()
}

fn live_pid(process: Option<ProcessIdentity>, alive: bool) -> i32 {
    match (process, alive) {
        (Some(p), true) => p.pid,
        _ => 0,
    }
}

/// One pod in detail (`peapod pod ps`).
#[derive(Debug, Serialize)]
pub struct PodDetails {
    /// The pod's name.
    pub name: String,
    /// As [`PodSummary::status`].
    pub status: &'static str,
    /// For a played pod, whether its monitor runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervised: Option<bool>,
    /// Its host name, when it shares its uts namespace.
    pub hostname: Option<String>,
    /// Its infra process (0 when not running).
    pub infra_pid: i32,
    /// The inode of each shared namespace (as `ls -l /proc/PID/ns` shows it).
    pub namespaces: BTreeMap<String, u64>,
    /// The pod's cgroup, one directory per hierarchy.
    pub cgroup_paths: Vec<std::path::PathBuf>,
    /// Under the systemd driver, its slice unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_unit: Option<String>,
    /// Its network (none, host, or a CNI network's name).
    pub network: String,
    /// Its addresses on the network (CIDR), while attached.
    pub addresses: Vec<String>,
    /// Its published ports.
    pub ports: Vec<String>,
    /// Whether it runs and all its (non-init) containers are ready.
    pub ready: bool,
    /// Its containers that exist.
    pub containers: Vec<MemberDetails>,
}

/// One container of [`PodDetails`].
#[derive(Debug, Serialize)]
pub struct MemberDetails {
    /// The container's id.
    pub id: String,
    /// Its name in the manifest.
    pub name: Option<String>,
    /// Whether it is an init container.
    pub init: bool,
    /// Its status.
    pub status: &'static str,
    /// Its process (0 when not live).
    pub pid: i32,
    /// How often the monitor restarted it.
    pub restarts: u32,
    /// Whether it is ready: running, and for a played container started (its postStart
    /// hook ran, its startup probe succeeded) with its readiness probe succeeding.
    pub ready: bool,
    /// The last failure of its probes or hooks.
    pub last_probe_failure: Option<String>,
}

/// Pod `name` in detail (`peapod pod ps`).
pub fn details(rt: &Runtime, name: &str) -> Result<PodDetails, RuntimeError> {
    let record = pods(rt)?
        .peek(&PodStore::parse_name(name)?)
        .map_err(|e| corrupt_hint(e, name))?
        .ok_or_else(|| RuntimeError::from(crate::Error::NotFound(name.to_owned())))?;
    let status = record.status();
    if let Some(monitor) = record
        .monitor
        .filter(|_| record.supervised() == Some(false))
    {
        tracing::warn!(
            "pod {name}: its monitor (pid {}) is gone, so nothing restarts its containers; \
             `peapod pod rm -f {name}` and play its manifest again",
            monitor.pid
        );
    }
    let containers: Vec<MemberDetails> = record
        .containers
        .iter()
        .filter(|m| rt.exists(&m.id))
        .map(|m| {
            let (pid, status) = match container_process(rt, &m.id) {
                Some((p, status)) => (live_pid(Some(p), peapod_runtime::is_live(status)), status),
                None => (0, Status::Stopped),
            };
            let health = m.health.as_ref();
            MemberDetails {
                id: m.id.clone(),
                name: m.name.clone(),
                init: m.init,
                status: status.as_str(),
                pid,
                restarts: m.restarts,
                ready: status == Status::Running && health.map_or(true, |h| h.ready),
                last_probe_failure: health.and_then(|h| h.last_failure.clone()),
            }
        })
        .collect();
    let ready =
        status == PodStatus::Running && containers.iter().filter(|c| !c.init).all(|c| c.ready);
    Ok(PodDetails {
        name: record.name.clone(),
        status: shown_status(&record, status),
        supervised: record.supervised(),
        hostname: record.hostname.clone(),
        infra_pid: live_pid(record.infra, status == PodStatus::Running),
        namespaces: record.namespaces.clone(),
        cgroup_paths: record.cgroup_paths.clone(),
        cgroup_unit: record.cgroup_unit.clone(),
        network: network_name(&record),
        addresses: record
            .network
            .as_ref()
            .map(|n| n.addresses.clone())
            .unwrap_or_default(),
        ports: ports(&record),
        ready,
        containers,
    })
}

/// Where the log of the run before the current one of played container `id` is kept.
fn previous_log_dir(pod_dir: &Path, id: &str) -> PathBuf {
    pod_dir.join("logs/previous").join(id)
}

/// Before played container `id` is made again (a restart), keeps the last file of its log
/// (at most `max-size`) in the pod's directory, as the kubelet keeps the previous
/// container's for `kubectl logs --previous`; replaced at each restart, removed with the pod.
pub(crate) fn keep_previous_log(rt: &Runtime, pod_dir: &Path, id: &str) {
    let from = rt.root.join(id).join(LOG_FILE);
    if !from.exists() {
        return;
    }
    let dir = previous_log_dir(pod_dir, id);
    // Copied, not renamed: the pods' directory is a mount of its own.
    let kept = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::copy(&from, dir.join("log.tmp")))
        .and_then(|_| std::fs::rename(dir.join("log.tmp"), dir.join(LOG_FILE)));
    if let Err(e) = kept {
        tracing::warn!("container {id}: cannot keep its previous log: {e}");
    }
}

/// Writes the logs of pod `name`'s containers to `out` (see [`Runtime::logs`]): of the one
/// whose id or name is `container`, as it wrote it; else of each in turn, each line after
/// its container's label (`NAME | `). `follow` needs one container (as `kubectl logs`);
/// `previous` reads a played container's run before the current one instead.
pub fn logs(
    rt: &Runtime,
    name: &str,
    container: Option<&str>,
    query: &LogQuery,
    follow: bool,
    previous: bool,
    out: &mut dyn Write,
) -> Result<(), RuntimeError> {
    let entry = pods(rt)?.load(&PodStore::parse_name(name)?)?;
    let record = record_of(&entry)?;
    let pod_dir = entry.dir().to_owned();
    drop(entry);
    if previous {
        return previous_logs(&record, &pod_dir, container, query, out);
    }
    let label = |m: &Member| m.name.clone().unwrap_or_else(|| m.id.clone());
    let members: Vec<&Member> = record
        .containers
        .iter()
        .filter(|m| container.map_or(true, |c| m.id == c || m.name.as_deref() == Some(c)))
        .filter(|m| rt.exists(&m.id))
        .collect();
    let wanted_one = match (container, members.as_slice()) {
        (Some(c), []) => {
            return Err(RuntimeError::runtime(anyhow!(
                "pod {name} has no container {c}"
            )))
        }
        (Some(_), [one]) => Some(*one),
        (None, [_, _, ..]) if follow => {
            let names: Vec<String> = members.iter().map(|m| label(m)).collect();
            return Err(RuntimeError::usage(anyhow!(
                "pod {name} has several containers: name the one to follow with -c ({})",
                names.join(", ")
            )));
        }
        (None, [one]) if follow => Some(*one),
        _ => None,
    };
    if let Some(member) = wanted_one {
        return rt.logs(&member.id, query, follow, out);
    }
    // A container run in the foreground keeps no log.
    let logged = |m: &&&Member| rt.root.join(&m.id).join(LOG_FILE).exists();
    for member in members.iter().filter(logged) {
        let mut labelled = Labelled::new(out, format!("{} | ", label(member)));
        rt.logs(&member.id, query, false, &mut labelled)?;
    }
    Ok(())
}

/// `pod logs --previous`: the kept log of the run before the current one of the container
/// whose id or name is `container` (which must be given, as `kubectl logs --previous`).
fn previous_logs(
    record: &PodRecord,
    pod_dir: &Path,
    container: Option<&str>,
    query: &LogQuery,
    out: &mut dyn Write,
) -> Result<(), RuntimeError> {
    let name = &record.name;
    let Some(wanted) = container else {
        return Err(RuntimeError::usage(anyhow!(
            "--previous: name the container with -c"
        )));
    };
    let member = record
        .containers
        .iter()
        .find(|m| m.id == wanted || m.name.as_deref() == Some(wanted))
        .ok_or_else(|| RuntimeError::runtime(anyhow!("pod {name} has no container {wanted}")))?;
    let dir = previous_log_dir(pod_dir, &member.id);
    if !dir.join(LOG_FILE).exists() {
        return Err(RuntimeError::runtime(anyhow!(
            "container {wanted} of pod {name} has no previous run"
        )));
    }
    match peapod_runtime::logfile::print(&dir, query, out) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(RuntimeError::runtime(
            anyhow!("cannot read the previous log of {wanted}: {e}"),
        )),
        _ => Ok(()),
    }
}

/// A writer putting `label` before every line of what goes through it.
struct Labelled<'a> {
    out: &'a mut dyn Write,
    label: String,
    at_line_start: bool,
}

impl<'a> Labelled<'a> {
    fn new(out: &'a mut dyn Write, label: String) -> Labelled<'a> {
        Labelled {
            out,
            label,
            at_line_start: true,
        }
    }
}

impl Write for Labelled<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                self.out.write_all(self.label.as_bytes())?;
            }
            self.out.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
