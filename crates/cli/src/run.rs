//! `peapod run`: a container from a bundle (as runc), or from `--rootfs DIR -- CMD`, which
//! builds the spec in memory and then takes exactly the bundle's path; in the foreground
//! (waiting, forwarding signals, deleting it at the end) or `--detach`ed.

use anyhow::Context as _;
use std::path::Path;

use oci_spec::runtime::{LinuxResources, Mount, MountBuilder, Spec};
use peapod_container::{default_spec, SignalForwarder};
use peapod_ns::Namespace;
use peapod_state::ContainerId;

use crate::args::{LimitArgs, Network, RunArgs};
use crate::context::Context;
use crate::create::{create_recorded, CreateOptions};
use crate::security::SecurityArgs;
use crate::{bundle, delete, Failure};

/// Runs the container and returns the exit status `peapod` should end with.
pub(crate) fn run(ctx: &Context, args: RunArgs) -> Result<i32, Failure> {
    crate::leftovers::reap(ctx);
    if args.pod.is_some() && args.hostname.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--hostname: a container in a pod has the pod's host name (pod create --hostname)"
        )));
    }
    let (id, mut spec, bundle) = match &args.rootfs {
        Some(rootfs) => {
            let spec = spec_from_args(&args, rootfs, ctx.rootless)?;
            let bundle = std::env::current_dir()
                .context("cannot read the current directory")
                .map_err(Failure::runtime)?;
            let id = args.name.clone().unwrap_or_else(generated_id);
            (id, spec, bundle)
        }
        None => {
            refuse_rootfs_flags(&args)?;
            let id = args.id.clone().ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "run needs --rootfs DIR -- CMD, or a container id for the bundle"
                ))
            })?;
            let (bundle, spec) = bundle::load(args.bundle.as_deref().unwrap_or(Path::new(".")))
                .map_err(Failure::runtime)?;
            (id, spec, bundle)
        }
    };
    let mut options = CreateOptions {
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        ..CreateOptions::default()
    };
    // In a pod: its namespaces joined, and (detached) the output to the pod's logs.
    let attached = match &args.pod {
        Some(pod) => Some(crate::pod::attach(
            ctx,
            pod,
            &id,
            &mut spec,
            args.detach,
            None,
        )?),
        None => None,
    };
    if let Some(attached) = &attached {
        options.cgroup_parent = attached.cgroup();
    }
    let create = |options: &CreateOptions| {
        let created = create_recorded(ctx, &id, &spec, &bundle, options);
        // Released here: the pod's lock is not held while the container runs.
        match (&created, attached) {
            (Err(_), Some(attached)) => attached.abandon(),
            (_, attached) => drop(attached),
        }
        created
    };
    if args.detach {
        options.fifo = true;
        let created = create(&options)?;
        let pid = created.detach();
        // Not kill(pid, 0): the process is our child, and a zombie would pass for alive.
        let process = peapod_state::ProcessIdentity::of(pid.as_raw());
        let alive = || process.is_some_and(|p| p.is_alive());
        let entry = ctx.store()?.load(&id.parse()?)?;
        peapod_container::start_fifo(
            &entry.exec_fifo(),
            alive,
            std::time::Duration::from_secs(10),
        )?;
        if let Some(record) = entry.record()? {
            crate::create::run_logged_hooks(&record, "poststart", "running", pid.as_raw());
        }
        return Ok(0);
    }
    // A terminal nobody else takes: peapod holds its master and joins it to its own stdio.
    let wants_terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let own_terminal = match wants_terminal && options.console_socket.is_none() {
        true => {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .context("cannot make a socket for the terminal")
                .map_err(Failure::runtime)?;
            options.console_stream = Some(theirs);
            Some(ours)
        }
        false => None,
    };
    // Installed before the container exists, so no signal sent meanwhile is lost.
    let forwarder = match own_terminal {
        Some(_) => SignalForwarder::install_for_terminal()?,
        None => SignalForwarder::install()?,
    };
    let created = create(&options)?;
    // The container sent the master while it was created.
    let master = own_terminal
        .as_ref()
        .map(crate::tty::receive_master)
        .transpose()
        .map_err(Failure::runtime)?;
    let id: ContainerId = id.parse()?;
    let started = created.start();
    let exit = started.and_then(|pid| {
        tracing::debug!("container process {pid} started");
        if spec.hooks().is_some() {
            let record = ctx
                .store()
                .ok()
                .and_then(|s| s.load(&id).ok()?.record().ok()?);
            if let Some(record) = record {
                crate::create::run_logged_hooks(&record, "poststart", "running", pid.as_raw());
            }
        }
        match master {
            Some(master) => crate::tty::proxy(master, &forwarder, pid).map_err(|e| {
                peapod_container::Error::Os {
                    what: "the terminal failed",
                    source: std::io::Error::other(format!("{e:#}")),
                }
            }),
            None => forwarder.wait(pid),
        }
    });
    if let Ok(peapod_container::Exit::Signal(signal)) = exit {
        if signal == nix::sys::signal::Signal::SIGKILL as i32 {
            crate::cgroups::report_oom(ctx, &id);
        }
    }
    // The foreground container is gone (or never ran): so goes its record.
    let cleaned = delete::delete(ctx, &id, true);
    let code = exit?.code();
    cleaned?;
    Ok(code)
}

/// `resources` with `--memory`, `--cpus` and `--pids-limit` added (as `docker run` sets them:
/// `--cpus N` is a CFS quota of N periods of 100 ms); a container's, or a whole pod's.
pub(crate) fn with_limits(
    resources: Option<LinuxResources>,
    limits: &LimitArgs,
) -> Option<LinuxResources> {
    if limits.memory.is_none() && limits.cpus.is_none() && limits.pids_limit.is_none() {
        return resources;
    }
    let mut resources = resources.unwrap_or_default();
    if let Some(bytes) = limits.memory {
        let mut memory = resources.memory().unwrap_or_default();
        memory.set_limit(Some(bytes));
        resources.set_memory(Some(memory));
    }
    if let Some(cpus) = limits.cpus {
        const PERIOD_US: u64 = 100_000;
        let mut cpu = resources.cpu().clone().unwrap_or_default();
        cpu.set_period(Some(PERIOD_US));
        cpu.set_quota(Some((cpus * PERIOD_US as f64).round() as i64));
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = limits.pids_limit {
        let mut pids = oci_spec::runtime::LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    Some(resources)
}

/// An id for a `--rootfs` container without `--name`: unique among live ones on this host.
fn generated_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("run-{}-{nanos:09}", std::process::id())
}

/// The flags that build a spec have no meaning with a bundle, which has its own.
fn refuse_rootfs_flags(args: &RunArgs) -> Result<(), Failure> {
    let security = security_args(args).any();
    let used = [
        ("--name", args.name.is_some()),
        ("--hostname", args.hostname.is_some()),
        ("--env", !args.env.is_empty()),
        ("--workdir", args.workdir.is_some()),
        ("--volume", !args.volumes.is_empty()),
        ("--read-only", args.read_only),
        ("--share", !args.share.is_empty()),
        ("--init", args.init),
        ("--tty", args.tty),
        ("--memory", args.limits.memory.is_some()),
        ("--cpus", args.limits.cpus.is_some()),
        ("--pids-limit", args.limits.pids_limit.is_some()),
        ("-- CMD", !args.command.is_empty()),
        (security.unwrap_or_default(), security.is_some()),
    ];
    match used.iter().find(|(_, used)| *used) {
        Some((flag, _)) => Err(Failure::usage(anyhow::anyhow!(
            "{flag} goes with --rootfs; a bundle's config.json says this itself"
        ))),
        None => Ok(()),
    }
}

/// The privilege flags: `--cap-add`, `--cap-drop`, `--user`, `--security-opt`.
fn security_args(args: &RunArgs) -> SecurityArgs<'_> {
    SecurityArgs {
        cap_add: &args.cap_add,
        cap_drop: &args.cap_drop,
        user: args.user.as_ref(),
        security_opt: &args.security_opt,
    }
}

fn bind_mount(volume: &crate::args::Volume) -> anyhow::Result<Mount> {
    let host = std::path::absolute(&volume.host)
        .with_context(|| format!("invalid volume host path {}", volume.host.display()))?;
    let mut options = vec!["rbind".to_owned()];
    if volume.readonly {
        options.push("ro".to_owned());
    }
    MountBuilder::default()
        .destination(volume.container.clone())
        .typ("bind")
        .source(host)
        .options(options)
        .build()
        .context("cannot describe a bind mount")
}

/// The spec for `args`: runc's defaults, rootless when not run as root, then the flags.
fn spec_from_args(args: &RunArgs, rootfs: &Path, rootless: bool) -> Result<Spec, Failure> {
    if args.command.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "no command: give it after --, as in `peapod run --rootfs DIR -- /bin/sh`"
        )));
    }
    if args.command[0].is_empty() {
        return Err(Failure::usage(anyhow::anyhow!("empty command")));
    }
    let ids = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let mut spec = default_spec(rootless.then_some(ids));

    let mut shared = args.share.clone();
    if args.net == Network::Host {
        shared.push(Namespace::Net);
    }
    if shared.contains(&Namespace::Uts) && args.hostname.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--hostname needs the container's own uts namespace, but --share uts keeps the host's"
        )));
    }
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|ns| {
            let kind = ns.typ().to_string().parse::<Namespace>();
            !kind.is_ok_and(|kind| shared.contains(&kind))
        });
        linux.set_namespaces(Some(namespaces));
    }
    let hostname = if shared.contains(&Namespace::Uts) {
        None
    } else {
        Some(
            args.hostname
                .clone()
                .or_else(|| args.name.clone())
                .unwrap_or_else(|| "peapod".into()),
        )
    };
    spec.set_hostname(hostname);

    let root_path = std::path::absolute(rootfs)
        .with_context(|| format!("invalid rootfs path {}", rootfs.display()))
        .map_err(Failure::usage)?;
    security_args(args)
        .apply(&mut spec, &root_path)
        .map_err(Failure::runtime)?;
    if let Some(root) = spec.root_mut() {
        root.set_path(root_path).set_readonly(Some(args.read_only));
    }

    let init = match args.init {
        true => Some(
            crate::init::locate(args.init_path.as_deref())
                .context("--init")
                .map_err(Failure::usage)?,
        ),
        false => None,
    };
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(match init {
            Some(_) => crate::init::wrap(&args.command),
            None => args.command.clone(),
        }));
        process.set_terminal(Some(args.tty));
        let mut env = process.env().clone().unwrap_or_default();
        for kv in &args.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|existing| existing.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        process.set_env(Some(env));
        if let Some(dir) = &args.workdir {
            process.set_cwd(dir.clone());
        }
    }

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for volume in &args.volumes {
        mounts.push(bind_mount(volume).map_err(Failure::usage)?);
    }
    if let Some(init) = &init {
        mounts.push(
            crate::init::mount(init, crate::init::INIT_IN_CONTAINER).map_err(Failure::runtime)?,
        );
    }
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        let resources = with_limits(linux.resources().clone(), &args.limits);
        linux.set_resources(resources);
    }
    Ok(spec)
}
