//! Playing a manifest (`peapod pod play FILE.yaml`): a Kubernetes Pod manifest run as a pod, and the monitor that
//! runs its init containers and restarts its containers as `restartPolicy` says.
//!
//! `play` checks the manifest, makes the pod (infra process, volumes) and starts one monitor
//! process (`peapod pod monitor NAME`, in its own process group). The monitor starts the
//! containers as its children, so it learns each exit status with `waitpid`: it runs the
//! init containers in order, each to completion, then the containers, tells `play` over a
//! pipe that they run, and restarts those that exit as the policy says, with back-off.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{MountBuilder, Spec};
use peapod_runtime::image::ImageRoot;
use peapod_runtime::{CreateOptions, Error as RuntimeError, Runtime};
use peapod_state::{ContainerId, ProcessIdentity};

use crate::hooks::Kill;
use crate::lifecycle::{attach, make, pods, record_of, remove, stop};
use crate::probes::{Prober, Target};
use crate::{
    ContainerPlan, ImageSource, MemberHealth, NetworkOptions, PodNetwork, PodPlan, PodRecord,
    PodStore, PullPolicy, RestartPolicy, VolumeSource,
};

/// The played manifest, kept in the pod's directory for the monitor.
pub(crate) const PLAN_FILE: &str = "plan.json";
/// The kubelet's restart back-off: the first restart at once, then after 10 s (or the
/// manifest's `peapod.io/restart-backoff-base`), doubling up to [`MAX_BACKOFF`]; from the
/// start again once a container has run for [`RESET_AFTER`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const RESET_AFTER: Duration = Duration::from_secs(600);
/// How often a failing init container is tried before the pod is given up.
const INIT_ATTEMPTS: u32 = 5;

/// How `pod play` reaches images: the image store, and the function that brings an image
/// into it as an `imagePullPolicy` says (the caller's: this library does not pull).
pub struct Images<'a> {
    /// The image store's root directory.
    pub store: PathBuf,
    /// Makes sure the image named by the reference is in the store, pulling it as the policy
    /// says; an error names the image.
    pub ensure: &'a dyn Fn(&str, PullPolicy) -> Result<(), RuntimeError>,
}

impl std::fmt::Debug for Images<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What `pod play` is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct PlayArgs<'a> {
    /// The manifest: one or more YAML documents.
    pub file: &'a Path,
    /// `--down`: stop and remove the pods the file makes instead.
    pub down: bool,
    /// `--replace`: remove the pods of the same names (and a controller's pods) first.
    pub replace: bool,
    /// `--configmap FILE`: more ConfigMaps and Secrets for the pods.
    pub configmaps: &'a [PathBuf],
    /// The static peapod-init of the infra processes (default: beside peapod).
    pub init_path: Option<&'a Path>,
    /// The `--log-opt`s of its containers' logs.
    pub log_opts: &'a [String],
}

/// Plays the manifest `args.file`: makes each of its pods and starts each pod's monitor,
/// which runs the containers; returns the pods' names. With `down`, stops and removes the
/// pods it names (and its controllers' pods) instead, and returns none. `network` is each
/// pod's network unless the manifest says `hostNetwork` (its published ports, resolver
/// settings and host aliases are added to it). Every image the manifest names is brought
/// into the store through `images` first, and pinned by its id for the pod's life, before
/// anything is made. Should one pod fail, the pods made before it are removed.
pub fn play(
    rt: &Runtime,
    args: &PlayArgs<'_>,
    network: &NetworkOptions,
    images: &Images<'_>,
) -> Result<Vec<String>, RuntimeError> {
    let file = args.file;
    crate::lifecycle::check_log_opts(args.log_opts)?;
    let read = |file: &Path| {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))
            .map_err(RuntimeError::usage)
    };
    let text = read(file)?;
    let mut configs = Vec::new();
    for config in args.configmaps {
        configs.push((config.display().to_string(), read(config)?));
    }
    let base = std::path::absolute(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_else(|| PathBuf::from("."));
    let documents = crate::parse_file(&text, &base, &configs)
        .map_err(|e| RuntimeError::usage(anyhow!("{}: {e}", file.display())))?;
    // A controller's replicas share their template's warnings: each said once.
    let mut said = std::collections::BTreeSet::new();
    for line in documents
        .pods
        .iter()
        .flat_map(|p| &p.parsed.warnings)
        .chain(&documents.warnings)
        .chain(&documents.skipped)
    {
        if said.insert(line) {
            tracing::warn!("{}: {line}", file.display());
        }
    }
    let present = present(rt, &documents)?;
    if args.down {
        if present.is_empty() {
            let name = documents.pods.first().map(|p| p.parsed.plan.name.clone());
            let name = name.or_else(|| {
                documents
                    .owners
                    .first()
                    .map(|o| format!("of {} {}", o.kind, o.name))
            });
            return Err(crate::Error::NotFound(name.unwrap_or_default()).into());
        }
        for (name, grace) in &present {
            take_down(rt, name, *grace)?;
        }
        return Ok(Vec::new());
    }
    if !present.is_empty() {
        if !args.replace {
            return Err(RuntimeError::runtime(anyhow!(
                "pod {} exists (played already: give --replace to make it again, or remove it with --down)",
                present.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", pod ")
            )));
        }
        for (name, _) in &present {
            remove(rt, name, true)?;
        }
    }
    // Every container id is checked before anything is made.
    for plan in documents.pods.iter().map(|p| &p.parsed.plan) {
        PodStore::parse_name(&plan.name)?;
        for c in plan.init_containers.iter().chain(&plan.containers) {
            let id: ContainerId = container_id(plan, c).parse()?;
            if rt.exists(id.as_str()) {
                return Err(RuntimeError::runtime(anyhow!(
                    "container {id} already exists (not of a pod this file plays)"
                )));
            }
        }
    }
    let init = peapod_runtime::init::locate(args.init_path).map_err(RuntimeError::usage)?;
    let mut played = Vec::new();
    for pod in documents.pods {
        match play_one(rt, pod, &init, network, images, args.log_opts) {
            Ok(name) => played.push(name),
            Err(e) => {
                for name in &played {
                    let _ = remove(rt, name, true);
                }
                return Err(e);
            }
        }
    }
    Ok(played)
}

/// The pods of `documents` that exist now: its pods, and its controllers' pods (by their
/// names' shape and their selectors' labels), each with its grace period in the file (a
/// controller's pod: its template's).
fn present(
    rt: &Runtime,
    documents: &crate::Documents,
) -> Result<Vec<(String, Option<u64>)>, RuntimeError> {
    let planned = |name: &str, labels: &BTreeMap<String, String>| {
        let by_name = documents.pods.iter().find(|p| p.parsed.plan.name == name);
        let owner = documents.owners.iter().find(|o| o.owns(name, labels));
        let grace = by_name
            .or_else(|| {
                // A pod of the same template (its replicas differ only by name).
                let owner = owner?;
                documents
                    .pods
                    .iter()
                    .find(|p| owner.owns(&p.parsed.plan.name, &p.parsed.plan.labels))
            })
            .and_then(|p| p.parsed.plan.grace_seconds);
        (by_name.is_some() || owner.is_some()).then_some(grace)
    };
    let store = pods(rt)?;
    let mut present = Vec::new();
    for name in store.names()? {
        // A pod whose record cannot be read still counts by its name.
        let labels = store
            .load(&name)
            .ok()
            .and_then(|entry| entry.record().ok().flatten())
            .map(|record| record.labels)
            .unwrap_or_default();
        let name = name.to_string();
        if let Some(grace) = planned(&name, &labels) {
            present.push((name, grace));
        }
    }
    Ok(present)
}

/// Makes one pod of the file and starts its monitor; returns its name.
fn play_one(
    rt: &Runtime,
    pod: crate::PlannedPod,
    init: &Path,
    network: &NetworkOptions,
    images: &Images<'_>,
    log_opts: &[String],
) -> Result<String, RuntimeError> {
    let crate::PlannedPod { parsed, mut facts } = pod;
    let mut plan = parsed.plan;
    let name = PodStore::parse_name(&plan.name)?;
    let mut record = PodRecord::new(&name);
    record.hostname = Some(plan.hostname.clone());
    let mut net = network.clone();
    if plan.network.host_network {
        net.network = PodNetwork::Host;
    }
    net.ports.extend(plan.network.ports.iter().cloned());
    if plan.network.dns != Default::default() {
        net.dns = plan.network.dns.clone();
    }
    net.add_hosts
        .extend(plan.network.host_aliases.iter().cloned());
    record.shared = ["net", "ipc", "uts"].map(str::to_owned).to_vec();
    // On the host's network the pod has no network namespace of its own to share.
    if net.network == PodNetwork::Host {
        record.shared.retain(|kind| kind != "net");
    }
    crate::network::check(&net, net.network != PodNetwork::Host, rt.rootless)?;
    record.log_opts = log_opts.to_vec();
    if !rt.rootless {
        crate::network::reap(rt, &net.cni);
    }
    pin_images(&mut plan, images)?;
    crate::security::verify(&plan, |c| image_user(&plan, c))?;
    let pod_resources = crate::resources::pod(&plan);
    let pod_memory = pod_resources
        .as_ref()
        .and_then(|r| r.memory().as_ref()?.limit())
        .and_then(|l| u64::try_from(l).ok());
    if plan.share_pid {
        record.shared.push("pid".to_owned());
    }
    record.labels = plan.labels.clone();
    record.grace_seconds = plan.grace_seconds;
    let entry = make(rt, &name, record, init, pod_resources.as_ref(), &net)?;
    let prepared = (|| {
        network_facts(
            &mut facts,
            &record_of(&entry)?,
            net.network == PodNetwork::Host,
        );
        crate::config::resolve(&mut plan, &facts)
            .map_err(|e| RuntimeError::usage(anyhow!("{e}")))?;
        for volume in &plan.volumes {
            match &volume.source {
                VolumeSource::EmptyDir | VolumeSource::Memory { .. } => {
                    let dir = entry.subdir(&format!("volumes/{}", volume.name))?;
                    let memory = match volume.source {
                        VolumeSource::Memory { size } => Some(size),
                        _ => None,
                    };
                    crate::resources::make_empty_dir(&dir, memory, pod_memory, plan.fs_group)
                        .map_err(RuntimeError::runtime)?;
                }
                VolumeSource::Projected => {
                    let dir = entry.subdir(&format!("volumes/{}", volume.name))?;
                    let files = parsed.volume_files.get(&volume.name).map(Vec::as_slice);
                    crate::config::write_volume(&dir, files.unwrap_or_default(), &facts)
                        .with_context(|| {
                            format!("cannot write the files of volume {}", volume.name)
                        })
                        .map_err(RuntimeError::runtime)?;
                }
                VolumeSource::HostPath { path, create: true } => {
                    std::fs::create_dir_all(path)
                        .with_context(|| format!("cannot make hostPath {}", path.display()))
                        .map_err(RuntimeError::runtime)?;
                }
                VolumeSource::HostPath { .. } => {}
            }
        }
        entry.save_json(PLAN_FILE, &plan)?;
        Ok::<(), RuntimeError>(())
    })();
    drop(entry);
    // The pod is made, its monitor not started: where the crash tests kill `play`.
    peapod_runtime::failpoint("play");
    let started = prepared.and_then(|()| spawn_monitor(rt, &plan.name));
    if let Err(e) = started {
        let _ = remove(rt, &plan.name, true);
        return Err(e);
    }
    Ok(plan.name)
}

/// The downward API's fields that the pod's network gives: its addresses (the host's on
/// the host's network), the host's address and name.
fn network_facts(facts: &mut crate::PodFacts, record: &PodRecord, host_network: bool) {
    facts.node_name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The address the host reaches the world from; connecting a UDP socket sends nothing.
    let host_ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_owned());
    facts.host_ips = vec![host_ip];
    facts.pod_ips = match host_network {
        true => facts.host_ips.clone(),
        false => record
            .network
            .iter()
            .flat_map(|n| &n.addresses)
            .map(|cidr| cidr.split('/').next().unwrap_or_default().to_owned())
            .collect(),
    };
}

/// Brings every image of `plan` into the store (each once, as its policy says) and records
/// the id it has now in the plan.
fn pin_images(plan: &mut PodPlan, images: &Images<'_>) -> Result<(), RuntimeError> {
    let containers = plan
        .init_containers
        .iter_mut()
        .chain(plan.containers.iter_mut());
    let mut ensured = std::collections::BTreeSet::new();
    let mut store = None;
    for c in containers {
        let ImageSource::Reference(reference) = &c.image else {
            continue;
        };
        if ensured.insert((reference.clone(), c.pull_policy)) {
            (images.ensure)(reference, c.pull_policy)?;
        }
        let store = match &mut store {
            Some(store) => store,
            None => store
                .insert(peapod_image::Store::open(&images.store).map_err(RuntimeError::runtime)?),
        };
        let image = store
            .resolve(reference)
            .map_err(RuntimeError::runtime)?
            .ok_or_else(|| {
                RuntimeError::runtime(anyhow!(
                    "image {reference} is not in the image store {} (container {}, imagePullPolicy {:?})",
                    images.store.display(),
                    c.name,
                    c.pull_policy
                ))
            })?;
        c.image_id = Some(image.id.to_string());
        plan.image_store = Some(images.store.clone());
    }
    Ok(())
}

/// `pod play --down`: stops the pod as `pod stop` does, SIGTERM and, after the manifest's
/// `terminationGracePeriodSeconds` (`grace`, else the one it was played with, else 10 s),
/// SIGKILL, so its containers may end cleanly as under Kubernetes; then removes it.
fn take_down(rt: &Runtime, pod: &str, grace: Option<u64>) -> Result<(), RuntimeError> {
    let name = PodStore::parse_name(pod)?;
    {
        // Released before `remove` takes the pod's lock again.
        let entry = pods(rt)?.load(&name)?;
        if let Some(mut record) = entry.record()? {
            if record.status() == crate::PodStatus::Running {
                let grace = grace.or(record.grace_seconds).unwrap_or(10);
                stop(rt, &entry, &mut record, Duration::from_secs(grace))?;
            }
        }
    }
    remove(rt, pod, true)
}

/// A played container's id: `POD-NAME`.
pub(crate) fn container_id(plan: &PodPlan, c: &ContainerPlan) -> String {
    format!("{}-{}", plan.name, c.name)
}

/// Starts `peapod pod monitor NAME` and waits for its first line: `ok` once the containers
/// run, or the error that stopped it.
fn spawn_monitor(rt: &Runtime, name: &str) -> Result<(), RuntimeError> {
    let exe = std::env::current_exe()
        .context("cannot find the peapod binary")
        .map_err(RuntimeError::runtime)?;
    let entry = pods(rt)?.load(&PodStore::parse_name(name)?)?;
    let log = std::fs::File::create(entry.subdir("logs")?.join("monitor.log"))
        .context("cannot make the monitor's log")
        .map_err(RuntimeError::runtime)?;
    drop(entry);
    let mut command = std::process::Command::new(exe);
    command
        .arg("--root")
        .arg(&rt.root)
        .args(["pod", "monitor", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    // A session of its own, as a daemon's: a ^C to `play` must not reach the pod, the
    // caller's terminal is no controlling terminal of the monitor's (nor, through it, of a
    // container it restarts), and the terminal's hang-up does not end it.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .context("cannot start the pod's monitor")
        .map_err(RuntimeError::runtime)?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    match line.trim() {
        "ok" => Ok(()),
        "" => Err(RuntimeError::runtime(anyhow!(
            "the pod's monitor ended before the containers ran (see its log)"
        ))),
        error => Err(RuntimeError::runtime(anyhow!("{error}"))),
    }
}

/// One container the monitor looks after.
struct Watched {
    plan: ContainerPlan,
    id: String,
    pid: Option<Pid>,
    started: Instant,
    /// Back-off steps taken since it last ran long enough.
    backoffs: u32,
    due: Option<Instant>,
    prober: Prober,
    kill: Option<Kill>,
    /// Its health as last written into `pod.json`.
    recorded: Option<MemberHealth>,
}

/// Where the pod's probes and hooks go: its pinned network namespace (none on the host's
/// network) and its default address.
struct Reach {
    netns: Option<PathBuf>,
    host: IpAddr,
}

impl Reach {
    fn target<'a>(&'a self, rt: &'a Runtime, id: &'a str) -> Target<'a> {
        Target {
            rt,
            id,
            netns: self.netns.as_deref(),
            host: self.host,
        }
    }
}

/// The pinned network namespace of the pod `record` whose directory is `dir`; `None` when it
/// has none of its own (the host's network).
pub(crate) fn netns_of(record: &PodRecord, dir: &Path) -> Option<PathBuf> {
    record
        .pins(dir)
        .into_iter()
        .find(|(kind, _)| *kind == peapod_ns::Namespace::Net)
        .map(|(_, pin)| pin)
}

/// The address probes and hooks reach by default: the pod's IP, else 127.0.0.1 (in the
/// pod's network namespace either way).
pub(crate) fn default_host(record: &PodRecord) -> IpAddr {
    record
        .network
        .as_ref()
        .and_then(|n| n.ip())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The monitor of pod `name` (`peapod pod monitor NAME`, which [`play`] starts): see the
/// module doc. Returns when the pod stops, or it is told to (SIGTERM, SIGINT, SIGHUP).
pub fn monitor(rt: &Runtime, name: &str) -> Result<(), RuntimeError> {
    let pod = PodStore::parse_name(name)?;
    let store = pods(rt)?;
    let (plan, reach): (PodPlan, Reach) = {
        let entry = store.load(&pod)?;
        let mut record = record_of(&entry)?;
        record.monitor = ProcessIdentity::of(std::process::id() as i32);
        // The pod is made once its monitor runs: a `play` killed before leaves it `failed`.
        record.setup = None;
        entry.save(&record)?;
        let reach = Reach {
            netns: netns_of(&record, entry.dir()),
            host: default_host(&record),
        };
        let plan = entry
            .read_json(PLAN_FILE)?
            .ok_or_else(|| RuntimeError::runtime(anyhow!("pod {name} has no manifest to play")))?;
        (plan, reach)
    };
    let base = plan.restart_backoff.unwrap_or(FIRST_BACKOFF);
    let hook_timeout = crate::probes::post_start_timeout(plan.grace_seconds);
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(signal);
    }
    mask.thread_block()
        .map_err(|e| RuntimeError::runtime(anyhow!("sigprocmask: {e}")))?;
    let mut signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| RuntimeError::runtime(anyhow!("signalfd: {e}")))?;
    let stop_asked = |signals: &mut SignalFd| matches!(signals.read_signal(), Ok(Some(_)));

    let report = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let started = (|| {
        for c in &plan.init_containers {
            let mut attempts = 0;
            loop {
                let pid = start(rt, &plan, c, true)?;
                let code = wait_exit(pid, &mut signals)?;
                if code == 0 {
                    break;
                }
                attempts += 1;
                if !plan.restart.restarts(code) || attempts >= INIT_ATTEMPTS {
                    return Err(RuntimeError::runtime(anyhow!(
                        "init container {} exited with status {code} (see `peapod pod logs {} {}`)",
                        c.name,
                        plan.name,
                        c.name
                    )));
                }
                std::thread::sleep(backoff(base, attempts - 1));
            }
        }
        let mut watched = Vec::new();
        for c in &plan.containers {
            let pid = start(rt, &plan, c, false)?;
            let id = container_id(&plan, c);
            let mut prober = Prober::new(&c.health);
            prober.started(&reach.target(rt, &id), hook_timeout);
            watched.push(Watched {
                plan: c.clone(),
                id,
                pid: Some(pid),
                started: Instant::now(),
                backoffs: 0,
                due: None,
                prober,
                kill: None,
                recorded: None,
            });
        }
        Ok(watched)
    })();
    let mut watched = match started {
        Ok(watched) => watched,
        Err(e) => {
            report(&e.one_line());
            return Err(e);
        }
    };
    report("ok");
    // Nobody reads any more: `play` has returned.
    if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
    }

    loop {
        if stop_asked(&mut signals) {
            return Ok(());
        }
        let infra_alive = {
            let entry = store.load(&pod);
            let record = entry.ok().and_then(|e| e.record().ok().flatten());
            record.is_some_and(|r| r.status() == crate::PodStatus::Running)
        };
        if !infra_alive {
            return Ok(());
        }
        // Only the containers are reaped here: the processes of exec probes and hooks are
        // their attempts' to reap.
        for w in &mut watched {
            if let Some(code) = w.pid.and_then(exit_status) {
                exited(w, code, plan.restart, base);
            }
        }
        let now = Instant::now();
        for w in watched
            .iter_mut()
            .filter(|w| w.due.is_some_and(|due| due <= now))
        {
            w.due = None;
            match start(rt, &plan, &w.plan, false) {
                Ok(pid) => {
                    w.pid = Some(pid);
                    w.started = Instant::now();
                    w.prober.started(&reach.target(rt, &w.id), hook_timeout);
                }
                Err(e) => {
                    tracing::error!("cannot restart {}: {}", w.plan.name, e.one_line());
                    w.due = Some(now + backoff(base, w.backoffs.max(1)));
                    w.backoffs += 1;
                }
            }
        }
        for w in &mut watched {
            probe(rt, &reach, &plan, w);
        }
        crate::probes::reap_killed();
        record_health(&store, &pod, &mut watched);
        if watched.iter().all(|w| w.pid.is_none() && w.due.is_none()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit status of our child `pid` (as a shell gives it) once it has exited.
fn exit_status(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
        Ok(_) | Err(nix::Error::EINTR) => None,
        // Not our child any more: nothing will say how it ended.
        Err(e) => {
            tracing::error!("waitpid {pid}: {e}");
            Some(255)
        }
    }
}

/// Container `w` exited with `code`: it is restarted, after its back-off, as `policy` says;
/// one its liveness probe killed is restarted unless the policy is `Never`, as the kubelet does.
fn exited(w: &mut Watched, code: i32, policy: RestartPolicy, base: Duration) {
    w.pid = None;
    w.prober.hold();
    let killed = w.kill.take().is_some();
    tracing::info!("container {} exited with status {code}", w.plan.name);
    let restarts = match killed {
        true => policy != RestartPolicy::Never,
        false => policy.restarts(code),
    };
    if restarts {
        if w.started.elapsed() > RESET_AFTER {
            w.backoffs = 0;
        }
        w.due = Some(Instant::now() + backoff(base, w.backoffs));
        w.backoffs += 1;
    }
}

/// Runs container `w`'s probes and postStart hook, and its kill once they ask for it.
fn probe(rt: &Runtime, reach: &Reach, plan: &PodPlan, w: &mut Watched) {
    let Some(pid) = w.pid else { return };
    if let Some(kill) = &mut w.kill {
        kill.tick();
        return;
    }
    let target = reach.target(rt, &w.id);
    let Some((why, grace)) = w.prober.tick(&target).kill else {
        return;
    };
    let grace = grace
        .or(plan.grace_seconds)
        .unwrap_or(crate::hooks::DEFAULT_GRACE);
    tracing::warn!("container {}: {why}: killed (grace {grace} s)", w.plan.name);
    let signal = crate::lifecycle::stoppable(rt, &w.id).map_or(Signal::SIGTERM, |(_, s)| s);
    w.kill = Some(Kill::start(
        &target,
        w.plan.health.pre_stop.as_ref(),
        pid,
        signal,
        Duration::from_secs(grace),
    ));
}

/// Writes into `pod.json` the health of the containers whose health changed.
fn record_health(store: &PodStore, pod: &ContainerId, watched: &mut [Watched]) {
    if watched
        .iter()
        .all(|w| w.recorded.as_ref() == Some(&w.prober.health))
    {
        return;
    }
    let saved = store
        .load(pod)
        .map_err(RuntimeError::from)
        .and_then(|entry| {
            let mut record = record_of(&entry)?;
            for w in watched.iter() {
                if let Some(member) = record.containers.iter_mut().find(|m| m.id == w.id) {
                    member.health = Some(w.prober.health.clone());
                }
            }
            Ok(entry.save(&record)?)
        });
    match saved {
        Ok(()) => {
            for w in watched {
                w.recorded = Some(w.prober.health.clone());
            }
        }
        Err(e) => tracing::error!("cannot record the containers' health: {}", e.one_line()),
    }
}

/// The pause before restart number `restarts + 1`: none before the first, then `base`,
/// doubling up to [`MAX_BACKOFF`] (the kubelet's).
pub(crate) fn backoff(base: Duration, restarts: u32) -> Duration {
    match restarts {
        0 => Duration::ZERO,
        n => base.saturating_mul(1 << (n - 1).min(16)).min(MAX_BACKOFF),
    }
}

/// Waits for our child `pid` to exit; its status as a shell gives it.
fn wait_exit(pid: Pid, signals: &mut SignalFd) -> Result<i32, RuntimeError> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(RuntimeError::runtime(anyhow!("waitpid: {e}"))),
        }
        if matches!(signals.read_signal(), Ok(Some(_))) {
            return Err(RuntimeError::runtime(anyhow!("stopped")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts one container of the plan, detached, its output to its log; returns its PID (a
/// child of this process).
fn start(rt: &Runtime, plan: &PodPlan, c: &ContainerPlan, init: bool) -> Result<Pid, RuntimeError> {
    let id = container_id(plan, c);
    let cid: ContainerId = id.parse()?;
    let pod_dir = pods(rt)?.dir().join(&plan.name);
    // The record of an earlier run of it (a restart), its log kept as the previous one.
    crate::lifecycle::keep_previous_log(rt, &pod_dir, cid.as_str());
    rt.delete(cid.as_str(), true)?;
    let image = image_root(plan, c)?;
    let mut spec =
        spec(plan, c, &pod_dir, image.as_ref(), rt.rootless).map_err(RuntimeError::runtime)?;
    // Held until the container has made its mounts.
    let _staged = crate::subpath::stage(&mut spec, plan, c, &pod_dir, &id)?;
    let attached = attach(rt, &plan.name, &id, &mut spec, true, Some((&c.name, init)))?;
    let options = CreateOptions {
        fifo: true,
        cgroup_parent: attached.cgroup(),
        image,
        ..CreateOptions::default()
    };
    let created = match rt.create(&id, &spec, &pod_dir, &options) {
        Ok(created) => created,
        Err(e) => {
            attached.abandon();
            return Err(e);
        }
    };
    let pid = created.detach();
    drop(attached);
    let fifo = rt.store()?.load(&cid)?.exec_fifo();
    peapod_container::start_fifo(
        &fifo,
        || crate::infra::child_alive(pid),
        Duration::from_secs(10),
    )?;
    Ok(pid)
}

/// The User of container `c`'s image, from the image `play` pinned; `None` for a rootfs
/// directory or an image without one.
fn image_user(plan: &PodPlan, c: &ContainerPlan) -> Result<Option<String>, RuntimeError> {
    let image = image_root(plan, c)?;
    let config = image
        .as_ref()
        .and_then(|i| i.image.config.config().as_ref());
    Ok(config.and_then(|c| c.user().clone()))
}

/// The image root of container `c`, from the image `play` pinned; `None` for a rootfs
/// directory.
fn image_root(plan: &PodPlan, c: &ContainerPlan) -> Result<Option<ImageRoot>, RuntimeError> {
    let ImageSource::Reference(reference) = &c.image else {
        return Ok(None);
    };
    let (Some(store), Some(id)) = (&plan.image_store, &c.image_id) else {
        return Err(RuntimeError::runtime(anyhow!(
            "container {}: image {reference} was not pinned when the pod was played",
            c.name
        )));
    };
    let image = peapod_image::Store::open(store)
        .and_then(|s| s.resolve(id))
        .map_err(RuntimeError::runtime)?
        .ok_or_else(|| {
            RuntimeError::runtime(anyhow!(
                "image {reference} ({id}) is no longer in the image store {}",
                store.display()
            ))
        })?;
    Ok(Some(ImageRoot {
        store: store.clone(),
        image,
        volumes: Vec::new(),
    }))
}

/// Where the files of volume `name` of `plan` are, and whether they are a projection
/// (configMap, secret, downwardAPI, projected: always mounted read-only).
pub(crate) fn volume_dir(
    plan: &PodPlan,
    name: &str,
    pod_dir: &Path,
) -> anyhow::Result<(PathBuf, bool)> {
    let volume = plan
        .volumes
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| anyhow!("no volume {name}"))?;
    let in_state = || pod_dir.join("volumes").join(&volume.name);
    Ok(match &volume.source {
        VolumeSource::EmptyDir | VolumeSource::Memory { .. } => (in_state(), false),
        VolumeSource::Projected => (in_state(), true),
        VolumeSource::HostPath { path, .. } => (path.clone(), false),
    })
}

/// The spec of one container of the plan (before it joins the pod): for an image, its
/// Entrypoint and Cmd as `command` and `args` replace them, its Env under `env`, its
/// WorkingDir unless `workingDir`, its User; its stop signal in the annotation.
fn spec(
    plan: &PodPlan,
    c: &ContainerPlan,
    pod_dir: &Path,
    image: Option<&ImageRoot>,
    rootless: bool,
) -> anyhow::Result<Spec> {
    // Rootless: no limits nor cgroup mount, as a rootless `run`'s (its user namespace is
    // the pod's, joined instead).
    let ids = rootless.then(peapod_runtime::flags::rootless_ids);
    let mut spec = peapod_container::default_spec(ids);
    let config = image.and_then(|i| i.image.config.config().as_ref());
    let root_path = match (&c.image, image) {
        (ImageSource::Directory(dir), _) => dir.clone(),
        // A placeholder: the runtime mounts the layers on the container's own mount point.
        (ImageSource::Reference(_), Some(image)) => {
            image.image.layers.last().cloned().unwrap_or_default()
        }
        (ImageSource::Reference(r), None) => return Err(anyhow!("image {r} is not resolved")),
    };
    if let Some(root) = spec.root_mut() {
        root.set_path(root_path)
            .set_readonly(Some(c.read_only_root));
    }
    let args = peapod_runtime::image::command(config, c.command.as_deref(), c.args.as_deref());
    if args.is_empty() {
        return Err(anyhow!(
            "container {}: its image has no Entrypoint or Cmd, and the manifest gives no command",
            c.name
        ));
    }
    if let Some(signal) = peapod_runtime::image::stop_signal(config) {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(
            peapod_runtime::image::STOP_SIGNAL_ANNOTATION.to_owned(),
            signal,
        );
        spec.set_annotations(Some(annotations));
    }
    // Names are looked up in the image's `/etc/passwd` (the highest layer that has one) or
    // the rootfs directory's.
    let accounts = match (&c.image, image) {
        (ImageSource::Directory(dir), _) => dir.clone(),
        (ImageSource::Reference(_), Some(image)) => {
            let layers = &image.image.layers;
            peapod_runtime::image::accounts_layer(layers)
                .or(layers.last().map(PathBuf::as_path))
                .unwrap_or(Path::new("/nonexistent"))
                .to_owned()
        }
        (ImageSource::Reference(r), None) => return Err(anyhow!("image {r} is not resolved")),
    };
    let image_user = config.and_then(|c| c.user().as_deref());
    crate::security::apply(&mut spec, c, &accounts, image_user)?;
    crate::resources::apply(&mut spec, c);
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(args));
        let image_env = config.and_then(|c| c.env().as_deref()).unwrap_or_default();
        let mut env: BTreeMap<String, String> = process
            .env()
            .iter()
            .flatten()
            .chain(image_env)
            .chain(&c.env)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        env.insert("HOSTNAME".to_owned(), plan.hostname.clone());
        process.set_env(Some(
            env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ));
        let image_dir = config
            .and_then(|c| c.working_dir().as_deref())
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        if let Some(dir) = c.working_dir.clone().or(image_dir) {
            process.set_cwd(dir);
        }
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in &c.mounts {
        let (source, projected) = volume_dir(plan, &m.volume, pod_dir)?;
        let mut options = vec!["rbind".to_owned()];
        if m.read_only || projected {
            options.push("ro".to_owned());
        }
        mounts.push(
            MountBuilder::default()
                .destination(m.destination.clone())
                .typ("bind")
                .source(source)
                .options(options)
                .build()?,
        );
    }
    spec.set_mounts(Some(mounts));
    Ok(spec)
}
