//! Exec: runs a new process in a created or running container, as runc's: in all
//! its namespaces and its cgroup, with the container's `process` (or a `process` file) and
//! the changes asked for; in the foreground (waiting, forwarding signals, exiting with
//! its status) or `--detach`ed. A foreground process with a terminal and no
//! `--console-socket` gets it relayed by peapod itself, as `run -t` (docker's `exec -it`).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use nix::unistd::Pid;
use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp, Process};
use peapod_container::{enter, ExecConfig, SignalForwarder};
use peapod_ns::Target;
use peapod_state::{ContainerId, ProcessIdentity, Record, Status};

use crate::create::{console_socket, write_pid_file};
use crate::{Error, Result, Runtime};

/// A process to run in a container, as `runc exec` takes it: a `process` JSON file, or a
/// command with changes to the container's own process.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    /// A `process` JSON file (then `command` must be empty).
    pub process: Option<PathBuf>,
    /// Give the process a terminal.
    pub tty: bool,
    /// Keep the caller's standard input from the process (docker's `exec` without `-i`): it
    /// reads /dev/null, or, with a terminal peapod relays, nothing is typed into it. Without
    /// this it inherits the caller's, as runc's `exec` (which the containerd shim and conmon
    /// run with the descriptors they want the process to have).
    pub no_stdin: bool,
    /// Where the pty master is sent.
    pub console_socket: Option<PathBuf>,
    /// Return once it runs, rather than wait for it and forward signals.
    pub detach: bool,
    /// Where its PID is written.
    pub pid_file: Option<PathBuf>,
    /// `KEY=VALUE` added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// `UID[:GID]`, numbers.
    pub user: Option<String>,
    /// Supplementary groups added.
    pub additional_gids: Vec<u32>,
    /// Capabilities added (to the bounding, effective and permitted sets).
    pub caps: Vec<String>,
    /// Run it in a paused container (it runs once the container is resumed).
    pub ignore_paused: bool,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
    /// How many descriptors after stdio it keeps.
    pub preserve_fds: u32,
    /// The command and its arguments.
    pub command: Vec<String>,
}

pub(crate) fn exec(rt: &Runtime, id: &str, args: &ExecOptions) -> Result<i32> {
    let (id, record, process) = running(rt, id, args.ignore_paused)?;
    let (process_spec, seccomp) = process_spec(args, &record)?;
    let mut config = exec_config(rt, &id, &process_spec, seccomp.as_ref(), args.preserve_fds)?;
    let console = console_socket(args.console_socket.as_deref(), config.wants_terminal())?;
    // A terminal nobody else takes, in the foreground: peapod holds its master and relays
    // it, as `run -t` does. Detached, it still needs --console-socket, as runc's.
    let own_terminal = match console.is_none() && config.wants_terminal() && !args.detach {
        true => Some(crate::tty::socket_pair().map_err(Error::runtime)?),
        false => None,
    };
    let theirs = own_terminal.as_ref().map(|(_, theirs)| theirs);
    if let Some(socket) = console.as_ref().or(theirs) {
        config = config.console_socket(socket.as_raw_fd());
    }
    let null = match args.no_stdin && !config.wants_terminal() {
        true => Some(dev_null()?),
        false => None,
    };
    if let Some(null) = &null {
        config = config.stdin(null.as_raw_fd());
    }

    // Installed before the process exists, so no signal sent meanwhile is lost.
    let forwarder = match (args.detach, &own_terminal) {
        (true, _) => None,
        (false, Some(_)) => Some(SignalForwarder::install_for_terminal()?),
        (false, None) => Some(SignalForwarder::install()?),
    };
    let created = enter_container(&id, &record, process, &config)?;
    // The process sent the master while it was set up.
    let master = own_terminal
        .as_ref()
        .map(|(ours, _)| crate::tty::receive_master(ours))
        .transpose()
        .map_err(Error::runtime)?;
    let pid = created.start()?;
    tracing::debug!("exec process {pid} started in container {id}");
    if let Some(path) = &args.pid_file {
        write_pid_file(path, pid.as_raw()).map_err(Error::runtime)?;
    }
    match (forwarder, master) {
        (None, _) => Ok(0),
        (Some(forwarder), Some(master)) => {
            Ok(crate::tty::relay(master, &forwarder, pid, !args.no_stdin)?.code())
        }
        (Some(forwarder), None) => Ok(forwarder.wait(pid)?.code()),
    }
}

/// Container `id`, its record and its process, when it can take a new process (created or
/// running; paused with `ignore_paused`).
fn running(
    rt: &Runtime,
    id: &str,
    ignore_paused: bool,
) -> Result<(ContainerId, Record, ProcessIdentity)> {
    let id: ContainerId = id.parse()?;
    let (record, status) = crate::state::snapshot(rt, &id)?;
    match (status, record.process) {
        (Status::Created | Status::Running, Some(process)) => Ok((id, record, process)),
        // As runc: the new process joins the frozen cgroup, and runs once it is thawed.
        (Status::Paused, Some(process)) if ignore_paused => Ok((id, record, process)),
        (Status::Paused, _) => Err(Error::runtime(anyhow!(
            "container {id} is paused: cannot exec in it (use --ignore-paused to override)"
        ))),
        _ => Err(Error::runtime(anyhow!(
            "container {id} is {}: cannot exec in it",
            status.as_str()
        ))),
    }
}

/// The checked configuration of a process of container `id`.
fn exec_config(
    rt: &Runtime,
    id: &ContainerId,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    preserve_fds: u32,
) -> Result<ExecConfig> {
    Ok(ExecConfig::from_process(process)
        .and_then(|c| c.seccomp(seccomp))
        .map_err(peapod_container::Error::from)?
        .session_keyring(&format!("_ses.{id}"))
        .preserve_fds(preserve_fds)
        .exec_through(rt.exec_through()))
}

fn dev_null() -> Result<std::fs::File> {
    std::fs::File::open("/dev/null")
        .context("cannot open /dev/null")
        .map_err(Error::runtime)
}

/// Makes the process of `config` in the namespaces and cgroup of the container whose process
/// is `process`; it waits for [`peapod_container::Created::start`].
fn enter_container(
    id: &ContainerId,
    record: &Record,
    process: ProcessIdentity,
    config: &ExecConfig,
) -> Result<peapod_container::Created> {
    let target = Target::open(Pid::from_raw(process.pid)).map_err(peapod_container::Error::from)?;
    // The pidfd pins the process; the start time proves it is still the container's.
    if !process.is_alive() {
        return Err(Error::runtime(anyhow!(
            "container {id} is stopped: cannot exec in it"
        )));
    }
    let cgroup = crate::cgroups::of_record(record)?;
    Ok(enter(&target, config, |pid| match &cgroup {
        // Before it is set up, so that everything it does counts against the container.
        Some(cgroup) => Ok(cgroup.add(pid.as_raw().unsigned_abs())?),
        None => Ok(()),
    })?)
}

/// Starts `command` in running container `id` as its own process is (user, capabilities,
/// seccomp, environment), without a terminal, reading `/dev/null`, writing to the caller's
/// stdout and stderr, and returns its pid: a child of the caller, which must reap it. The
/// caller's PID namespace for children is its own again afterwards, so it may start other
/// children (a pod's monitor runs its probes and hooks this way).
pub(crate) fn spawn(rt: &Runtime, id: &str, command: &[String]) -> Result<Pid> {
    let (id, record, process) = running(rt, id, false)?;
    let args = ExecOptions {
        command: command.to_vec(),
        ..ExecOptions::default()
    };
    let (process_spec, seccomp) = process_spec(&args, &record)?;
    let null = dev_null()?;
    let config = exec_config(rt, &id, &process_spec, seccomp.as_ref(), 0)?.stdin(null.as_raw_fd());
    // `enter` joins the container's PID namespace for our children: ours is joined back.
    let own = std::fs::File::open("/proc/self/ns/pid")
        .context("cannot open /proc/self/ns/pid")
        .map_err(Error::runtime)?;
    let created = enter_container(&id, &record, process, &config);
    nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWPID)
        .context("cannot join our own PID namespace again")
        .map_err(Error::runtime)?;
    Ok(created?.start()?)
}

/// The process to run: `--process FILE`, or the container's own (as recorded at create) with
/// the command and changes given on the command line; and the container's seccomp profile.
fn process_spec(args: &ExecOptions, record: &Record) -> Result<(Process, Option<LinuxSeccomp>)> {
    let seccomp: Option<LinuxSeccomp> = record
        .spec_seccomp
        .as_ref()
        .map(peapod_state::RawJson::parse)
        .transpose()
        .map_err(|e| {
            Error::runtime(anyhow!(
                "the container's recorded seccomp profile is unreadable: {e}"
            ))
        })?;
    if let Some(path) = &args.process {
        if !args.command.is_empty() {
            return Err(Error::usage(anyhow!(
                "give the command either in --process or after the id, not both"
            )));
        }
        let mut process = read_process(path).map_err(Error::runtime)?;
        // As runc: the OOM score is the container's, whatever the process file says.
        process.set_oom_score_adj(container_oom_score(record)?);
        return Ok((process, seccomp));
    }
    if args.command.is_empty() {
        return Err(Error::usage(anyhow!(
            "no command: give it after the id, or a process file with --process"
        )));
    }
    let mut process: Process = recorded("process", &record.spec_process)?.unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    let mut env = process.env().clone().unwrap_or_default();
    for kv in &args.env {
        let Some((key, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Error::usage(anyhow!("--env {kv:?}: expected KEY=VALUE")));
        };
        env.retain(|old| old.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut user = process.user().clone();
    if let Some(spec) = &args.user {
        let (uid, gid) = parse_user(spec)?;
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
    }
    if !args.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&args.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    process.set_user(user);
    if !args.caps.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        for name in &args.caps {
            add_capability(&mut caps, name)?;
        }
        process.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    Ok((process, seccomp))
}

/// The container's own `process.oomScoreAdj`, which every process run in it gets (the
/// kernel's OOM killer then weighs them alike, as runc sets it for `exec`).
fn container_oom_score(record: &Record) -> Result<Option<i32>> {
    let process: Option<Process> = recorded("process", &record.spec_process)?;
    Ok(process.and_then(|p| p.oom_score_adj()))
}

/// A part of the spec kept in the container's record.
fn recorded<T: serde::de::DeserializeOwned>(
    what: &str,
    value: &Option<peapod_state::RawJson>,
) -> Result<Option<T>> {
    value
        .as_ref()
        .map(peapod_state::RawJson::parse)
        .transpose()
        .map_err(|e| {
            Error::runtime(anyhow!(
                "the container's recorded {what} is unreadable: {e}"
            ))
        })
}

/// A `process` JSON file, with errors naming the field.
fn read_process(path: &Path) -> anyhow::Result<Process> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read process file {}", path.display()))?;
    let de = &mut serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        anyhow!("{}: {field}: {}", path.display(), e.into_inner())
    })
}

/// `UID` or `UID:GID`, both numbers.
fn parse_user(spec: &str) -> Result<(u32, Option<u32>)> {
    let bad = || {
        Error::usage(anyhow!(
            "--user {spec:?}: expected UID or UID:GID (numbers)"
        ))
    };
    let (uid, gid) = match spec.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (spec, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

/// Adds capability `name` (`CAP_NET_ADMIN`, or without the prefix) to the bounding, effective
/// and permitted sets, as runc does since 1.1.2: never to the inheritable or ambient ones,
/// through which a program the process execs would keep it (CVE-2022-29162).
fn add_capability(caps: &mut LinuxCapabilities, name: &str) -> Result<()> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let cap: Capability = bare
        .parse()
        .map_err(|_| Error::usage(anyhow!("--cap {name:?}: unknown capability")))?;
    let add = |set: &Option<oci_spec::runtime::Capabilities>| {
        let mut set = set.clone().unwrap_or_default();
        set.insert(cap);
        Some(set)
    };
    caps.set_bounding(add(caps.bounding()));
    caps.set_effective(add(caps.effective()));
    caps.set_permitted(add(caps.permitted()));
    Ok(())
}
