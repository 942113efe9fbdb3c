//! The container commands: each turns its arguments into one call of `peapod-runtime` and
//! prints what it returns, as runc prints it.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Context as _};
use peapod_runtime::flags::{refuse_with_bundle, run_target, spec_from_flags, RunFlags, RunTarget};
use peapod_runtime::{
    bundle, CreateOptions, Error, ExecOptions, RestartPolicy, RunOptions, Runtime, UpdateRequest,
};

use crate::args::{
    CreateArgs, ExecArgs, Format, GlobalArgs, IdsArgs, ListArgs, LogsArgs, MonitorArgs, RmArgs,
    RunArgs, StartArgs, StopArgs, UpdateArgs,
};
use crate::output::outln;
use crate::pull::PullPolicy;
use crate::to_json;
use peapod_pod::peapod_net::etc::DnsSettings;
use peapod_pod::{NetworkOptions, PodNetwork};
use peapod_runtime::flags::{MountArg, VolumeArg};
use peapod_runtime::userns::UserNs;
use peapod_runtime::EtcFiles;

pub(crate) fn run(rt: &Runtime, global: &GlobalArgs, args: RunArgs) -> Result<i32, Error> {
    if args.pod.is_some() && args.hostname.is_some() {
        return Err(Error::usage(anyhow!(
            "--hostname: a container in a pod has the pod's host name (pod create --hostname)"
        )));
    }
    let image_flags = args.entrypoint.is_some() || args.pull != PullPolicy::Missing;
    // In a pod, the pod's limits (the kubelet's defaults unless its --log-opt said).
    let mut limits = match (&args.pod, args.detach) {
        (Some(pod), true) => peapod_pod::log_limits(rt, pod)?,
        _ => peapod_runtime::logfile::LogLimits::default(),
    };
    for opt in &args.log_opt {
        limits.apply(opt).map_err(Error::usage)?;
    }
    let target = run_target(
        args.rootfs,
        args.bundle,
        args.args,
        Path::new("config.json").exists(),
        image_flags,
    )?;
    // `-p` alone, as podman's: on the default network, which only root can give (in a pod,
    // the pod's network is the container's).
    let net = match args.net {
        Some(net) => net,
        None if (!args.publish.is_empty() || args.publish_all) && args.pod.is_none() => {
            match rt.rootless {
                false => PodNetwork::Cni(peapod_pod::peapod_net::DEFAULT_NETWORK.to_owned()),
                true => PodNetwork::rootless_default(),
            }
        }
        None => PodNetwork::None,
    };
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(env_file(file)?);
    }
    env.extend(args.env);
    let (mut volumes, mut anonymous_volumes) = (Vec::new(), Vec::new());
    for volume in args.volumes {
        match volume {
            VolumeArg::Bind(volume) => volumes.push(volume),
            VolumeArg::Anonymous(path) => anonymous_volumes.push(path),
        }
    }
    let mut tmpfs = args.tmpfs;
    for mount in args.mounts {
        match mount {
            MountArg::Bind(volume) => volumes.push(volume),
            MountArg::Tmpfs(t) => tmpfs.push(t),
        }
    }
    refuse_userns(args.userns, args.pod.is_some(), &net, rt.rootless)?;
    let own_etc = !args.dns.add_hosts.is_empty()
        || !args.dns.servers.is_empty()
        || !args.dns.search.is_empty();
    if own_etc && args.pod.is_some() {
        return Err(Error::usage(anyhow!(
            "--add-host, --dns and --dns-search: a container in a pod has the pod's /etc files \
             (pod create --add-host, --dns)"
        )));
    }
    let mut flags = RunFlags {
        name: args.name,
        hostname: args.hostname,
        env,
        workdir: args.workdir,
        volumes,
        anonymous_volumes,
        tmpfs,
        sysctls: args.sysctls,
        ulimits: args.ulimits,
        labels: args.labels,
        devices: args.devices,
        read_only: args.read_only,
        net_host: net == PodNetwork::Host,
        share: args.share,
        init: args.init,
        init_path: args.init_path,
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        user: args.user,
        security_opt: args.security_opt,
        limits: args.limits.limits(),
        tty: args.tty,
        entrypoint: args.entrypoint,
        command: Vec::new(),
        userns: args.userns,
    };
    // A keep-id pod's containers run as keep-id's (a bundle's config.json says its own).
    match &args.pod {
        Some(pod) if !matches!(target, RunTarget::Bundle { .. }) => {
            flags.userns = peapod_pod::user_namespace(rt, pod)?;
        }
        _ => {}
    }
    let current_dir = || {
        std::env::current_dir()
            .context("cannot read the current directory")
            .map_err(Error::runtime)
    };
    let new_id = |flags: &RunFlags| {
        flags
            .name
            .clone()
            .unwrap_or_else(peapod_runtime::flags::generated_id)
    };
    let mut image_root = None;
    let mut exposed: Vec<crate::ports::Exposed> = args.expose.into_iter().flatten().collect();
    // A friendly detached run (an image or --rootfs, in a pod or not) gets docker's: a log
    // of its own and a monitor; runc's `run -d ID` of a bundle keeps the caller's stdio, as
    // containerd and podman expect (in a pod, its output goes to a log through a copier).
    let friendly = !matches!(target, RunTarget::Bundle { .. });
    let logged = args.detach && friendly;
    if args.detach && args.rm && !logged {
        return Err(Error::usage(anyhow!(
            "--rm with --detach needs an image or --rootfs"
        )));
    }
    if args.restart != RestartPolicy::No {
        if !logged {
            return Err(Error::usage(anyhow!(
                "--restart is for --detach with an image or --rootfs, outside a pod (a pod's \
                 containers restart by its restartPolicy)"
            )));
        }
        if args.rm {
            // As docker: "Conflicting options: --restart and --rm".
            return Err(Error::usage(anyhow!(
                "--restart {} and --rm conflict: a container removed when it exits cannot be \
                 started again",
                args.restart
            )));
        }
    }
    if !args.log_opt.is_empty() && !logged {
        return Err(Error::usage(anyhow!(
            "--log-opt is for --detach with an image or --rootfs"
        )));
    }
    let (id, mut spec, bundle) = match target {
        RunTarget::Rootfs { dir, command } => {
            flags.command = command;
            let spec = spec_from_flags(&flags, &dir, rt.rootless)?;
            (new_id(&flags), spec, current_dir()?)
        }
        RunTarget::Image { reference, command } => {
            flags.command = command;
            peapod_runtime::userns::refuse_with_image(&flags, rt.rootless)?;
            let (store, image) = crate::images::for_run(rt, global, &reference, args.pull)?;
            let image_exposed_keys = image
                .config
                .config()
                .as_ref()
                .and_then(|c| c.exposed_ports().clone())
                .unwrap_or_default();
            let (spec, root) = peapod_runtime::image::spec_from_image(
                &store,
                image,
                &reference,
                flags.clone(),
                rt.rootless,
            )?;
            image_root = Some(root);
            exposed.extend(crate::ports::image_exposed(&reference, image_exposed_keys)?);
            (new_id(&flags), spec, current_dir()?)
        }
        RunTarget::Bundle { dir, id } => {
            refuse_with_bundle(&flags)?;
            if own_etc {
                return Err(Error::usage(anyhow!(
                    "--add-host, --dns and --dns-search go with --rootfs; a bundle's \
                     config.json says this itself"
                )));
            }
            let (bundle, spec) = bundle::load(&dir).map_err(Error::runtime)?;
            (id, spec, bundle)
        }
    };
    // -P: the exposed ports each on a free host port, on the container's own network.
    let publish = match (&net, args.publish_all) {
        (PodNetwork::Cni(_) | PodNetwork::Pasta | PodNetwork::Slirp4netns, true) => {
            crate::ports::publish_all(rt, &args.publish, &exposed)?
        }
        (_, true) if !exposed.is_empty() => {
            let why = match (&args.pod, rt.rootless) {
                (Some(_), _) => "a container in a pod is on the pod's network".to_owned(),
                (None, true) => "a rootless container cannot have one".to_owned(),
                (None, false) => format!("not --net {net}"),
            };
            return Err(Error::usage(anyhow!(
                "-P publishes {} on a CNI network only: {why}",
                crate::ports::list(&exposed)
            )));
        }
        _ => args.publish,
    };
    // A docker-style container gets a name: checked, or generated (the lock held until it
    // is recorded).
    let name_lock = match friendly {
        true => crate::names::name_container(rt, &mut spec, &id)?,
        false => None,
    };
    // On a CNI network: a network namespace of its own, held as a hidden pod's (see
    // `peapod_pod::create_container_network`), which it then joins.
    let dns = DnsSettings {
        servers: args.dns.servers,
        search: args.dns.search,
        ..DnsSettings::default()
    };
    let net_pod = match &net {
        PodNetwork::Cni(_) | PodNetwork::Pasta | PodNetwork::Slirp4netns => {
            let hostname = spec.hostname().clone().unwrap_or_else(|| id.clone());
            let network = NetworkOptions {
                network: net.clone(),
                ports: publish.clone(),
                cni: args.cni.cni(),
                dns: dns.clone(),
                add_hosts: args.dns.add_hosts.clone(),
                ..NetworkOptions::default()
            };
            let init = flags.init_path.as_deref();
            Some(peapod_pod::create_container_network(
                rt, &id, &hostname, &network, init,
            )?)
        }
        _ if !publish.is_empty() && args.pod.is_some() => {
            return Err(Error::usage(anyhow!(
                "--publish: a container in a pod is on the pod's network (pod create -p)"
            )))
        }
        _ if !publish.is_empty() && rt.rootless => {
            return Err(Error::usage(anyhow!(
                "--publish needs a network (pasta or slirp4netns), not --net {net}"
            )))
        }
        _ if !publish.is_empty() => {
            return Err(Error::usage(anyhow!(
                "--publish needs a CNI network (--net NAME, or no --net for the default one), \
                 not --net {net}"
            )))
        }
        _ => None,
    };
    // In a pod: its namespaces joined, and (detached) the output to the pod's logs.
    let attached = match args.pod.as_ref().or(net_pod.as_ref()) {
        Some(pod) => {
            match peapod_pod::attach(rt, pod, &id, &mut spec, args.detach && !logged, None) {
                Ok(attached) => Some(attached),
                Err(e) => {
                    let _ = peapod_pod::remove_container_network(rt, &id);
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let options = RunOptions {
        detach: args.detach,
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        cgroup_parent: attached.as_ref().and_then(|a| a.cgroup()),
        then_finish: (!args.detach)
            .then(|| crate::context::finish_command(rt, global, &id))
            .flatten(),
        image: image_root,
        no_new_keyring: args.no_new_keyring,
        etc: match net_pod {
            // On a network, the hidden pod's files have them.
            Some(_) => EtcFiles::default(),
            None => etc_files(spec.hostname().clone(), &dns, &args.dns.add_hosts),
        },
        log: logged.then(|| peapod_runtime::DetachedLog {
            limits,
            remove: args.rm,
            exec: crate::context::monitor_command(rt, global, limits, args.rm),
            restart: args.restart,
        }),
    };
    // Released once the container is made: the pod's lock is not held while it runs.
    let ran = rt.run(&id, &spec, &bundle, options, |created| {
        drop(name_lock);
        match attached {
            Some(attached) if !created => attached.abandon(),
            attached => drop(attached),
        }
    });
    // A detached container's network goes with `delete`; a foreground one's now.
    if net_pod.is_some() && (!args.detach || ran.is_err()) {
        peapod_pod::remove_container_network(rt, &id)?;
    }
    // As docker and podman (in a pod too): the id on stdout, for `ID=$(peapod run -d ...)`.
    if args.detach && friendly && ran.is_ok() {
        outln!("{id}");
    }
    ran
}

/// `--userns` where the container joins another user namespace: a pod's, or (rootless) the
/// one owning its user-mode network's namespace, which has the default map.
fn refuse_userns(
    userns: Option<UserNs>,
    in_pod: bool,
    net: &PodNetwork,
    rootless: bool,
) -> Result<(), Error> {
    let user_mode = matches!(net, PodNetwork::Pasta | PodNetwork::Slirp4netns);
    match userns {
        Some(_) if in_pod => Err(Error::usage(anyhow!(
            "--userns: a container in a pod joins the pod's user namespace"
        ))),
        Some(mode) if rootless && user_mode && mode != UserNs::Host => {
            Err(Error::usage(anyhow!(
                "--userns keep-id: a rootless network ({net}) is owned by a user namespace of                  the default map, which the container joins; use --net none"
            )))
        }
        _ => Ok(()),
    }
}

/// The entries of `--env-file FILE`; an error names the file and the line.
fn env_file(file: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--env-file {}", file.display()))
        .map_err(Error::usage)?;
    peapod_runtime::flags::parse_env_file(&text).map_err(|(line, problem)| {
        Error::usage(anyhow!("--env-file {}:{line}: {problem}", file.display()))
    })
}

/// A container's own `/etc/hosts` with the `--add-host` entries and `/etc/resolv.conf` with
/// the `--dns` settings, as a pod's are written, for a container without a CNI network.
fn etc_files(
    hostname: Option<String>,
    dns: &DnsSettings,
    add_hosts: &[(String, std::net::IpAddr)],
) -> EtcFiles {
    let hostname = hostname.unwrap_or_else(|| {
        // In the host's uts namespace, the host's name.
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_owned())
    });
    EtcFiles {
        hosts: (!add_hosts.is_empty())
            .then(|| peapod_pod::peapod_net::etc::hosts(&hostname, &[], add_hosts)),
        resolv_conf: (*dns != DnsSettings::default())
            .then(|| peapod_pod::peapod_net::etc::host_resolv_conf(dns)),
    }
}

/// `peapod logs`.
pub(crate) fn logs(rt: &Runtime, args: LogsArgs) -> Result<i32, Error> {
    let query = log_query(&args.read)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    rt.logs(&args.id, &query, args.read.follow, &mut out)?;
    Ok(0)
}

/// What `logs` and `pod logs` print: `--tail`, `--since` (checked), `--timestamps`.
pub(crate) fn log_query(
    read: &crate::args::LogReadArgs,
) -> Result<peapod_runtime::logfile::LogQuery, Error> {
    let since = match &read.since {
        Some(text) => Some(
            peapod_runtime::logfile::parse_since(text, std::time::SystemTime::now()).ok_or_else(
                || {
                    Error::usage(anyhow!(
                        "--since {text}: expected RFC 3339 (2026-12-06T14:00:00Z), seconds \
                         since the epoch, or a duration (10m)"
                    ))
                },
            )?,
        ),
        None => None,
    };
    Ok(peapod_runtime::logfile::LogQuery {
        tail: read.tail,
        since,
        timestamps: read.timestamps,
    })
}

/// `peapod wait`: each exit status, one a line, as docker prints them.
pub(crate) fn wait(rt: &Runtime, args: IdsArgs) -> Result<i32, Error> {
    for id in &args.ids {
        outln!("{}", rt.wait_exit(id)?);
    }
    Ok(0)
}

/// `peapod stop`: each id once stopped, as docker prints them.
pub(crate) fn stop(rt: &Runtime, args: StopArgs) -> Result<i32, Error> {
    for id in &args.ids {
        rt.stop(id, std::time::Duration::from_secs(args.time))?;
        outln!("{id}");
    }
    Ok(0)
}

/// `peapod start`: runc's of a created container (what containerd and podman call, one id);
/// docker's of a `run -d` container, which starts it again once it has exited. Prints each
/// id as docker does, for docker's only.
pub(crate) fn start(rt: &Runtime, global: &GlobalArgs, args: StartArgs) -> Result<i32, Error> {
    let docker = args.ids.len() > 1 || args.ids.iter().any(|id| rt.is_detached_run(id));
    if !docker {
        for id in &args.ids {
            rt.start(id)?;
        }
        return Ok(0);
    }
    // Its entrypoint is exec'd through the guard as `run`'s is.
    let guarded = Runtime::new(rt.root.clone(), rt.rootless)
        .with_entrypoint_guard()?
        .with_seccomp_cache();
    for id in &args.ids {
        match rt.is_detached_run(id) {
            true => guarded.start_again(id, |limits| {
                crate::context::monitor_command(rt, global, limits, false)
            })?,
            false => rt.start(id)?,
        }
        outln!("{id}");
    }
    Ok(0)
}

/// `peapod restart`: each id once started again, as docker prints them.
pub(crate) fn restart(rt: &Runtime, global: &GlobalArgs, args: StopArgs) -> Result<i32, Error> {
    for id in &args.ids {
        rt.restart(id, std::time::Duration::from_secs(args.time), |limits| {
            crate::context::monitor_command(rt, global, limits, false)
        })?;
        outln!("{id}");
    }
    Ok(0)
}

/// `peapod rm`: each id once removed (its network too), as docker prints them.
pub(crate) fn rm(rt: &Runtime, args: RmArgs) -> Result<i32, Error> {
    for id in &args.ids {
        rt.remove(id, args.force)?;
        peapod_pod::remove_container_network(rt, id)?;
        outln!("{id}");
    }
    Ok(0)
}

/// `peapod monitor` (internal): the monitor `run -d` execs.
pub(crate) fn monitor(rt: &Runtime, args: MonitorArgs) -> Result<i32, Error> {
    let options = peapod_runtime::MonitorOptions {
        pid: args.pid,
        stdout: peapod_runtime::inherited_pipe(args.stdout_fd)?,
        stderr: match args.stderr_fd {
            -1 => None,
            fd => Some(peapod_runtime::inherited_pipe(fd)?),
        },
        limits: peapod_runtime::logfile::LogLimits {
            max_size: args.max_size,
            max_files: args.max_file,
        },
        remove: args.rm,
    };
    let code = rt.monitor(&args.id, options)?;
    // The network of a `run -d --rm --net NAME` container goes with it.
    if args.rm {
        peapod_pod::remove_container_network(rt, &args.id)?;
    }
    Ok(code)
}

pub(crate) fn create(rt: &Runtime, args: CreateArgs) -> Result<i32, Error> {
    let (bundle, spec) = bundle::load(&args.bundle).map_err(Error::runtime)?;
    let options = CreateOptions {
        fifo: true,
        pid_file: args.pid_file,
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        console_socket: args.console_socket,
        ..CreateOptions::default()
    };
    rt.create(&args.id, &spec, &bundle, &options)?.detach();
    Ok(0)
}

pub(crate) fn list(rt: &Runtime, args: ListArgs) -> Result<i32, Error> {
    let states = rt.list()?;
    if args.quiet {
        for s in &states {
            outln!("{}", s.id);
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => outln!("{}", to_json(&states)?),
        Format::Table => {
            outln!(
                "{:<20} {:<8} {:<10} {:<40} {:<22} OWNER",
                "ID",
                "PID",
                "STATUS",
                "BUNDLE",
                "CREATED"
            );
            for s in &states {
                // A generated id shortened, as docker's tables show it; `-q` and JSON
                // keep whole ids for programs.
                outln!(
                    "{:<20} {:<8} {:<10} {:<40} {:<22} {}",
                    crate::ps::short(&s.id),
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
        }
    }
    Ok(0)
}

pub(crate) fn exec(rt: &Runtime, args: ExecArgs) -> Result<i32, Error> {
    // runc's argv, as the containerd shim and conmon give it: they hand the process its
    // stdio as peapod's own descriptors, which it must keep. Typed by a person, as docker's:
    // stdin only with -i.
    let runc_argv = args.process.is_some() || args.detach || args.console_socket.is_some();
    let options = ExecOptions {
        process: args.process,
        tty: args.tty,
        no_stdin: !args.interactive && !runc_argv,
        console_socket: args.console_socket,
        detach: args.detach,
        pid_file: args.pid_file,
        env: args.env,
        cwd: args.cwd,
        user: args.user,
        additional_gids: args.additional_gids,
        caps: args.caps,
        ignore_paused: args.ignore_paused,
        no_new_privs: args.no_new_privs,
        preserve_fds: args.preserve_fds,
        command: args.command,
    };
    rt.exec(&args.id, &options)
}

/// `peapod ps ID`: the container's processes, as ps(1) shows them or as a JSON list of PIDs,
/// exactly as runc prints them (containerd's shim reads the JSON).
pub(crate) fn ps(
    rt: &Runtime,
    id: &str,
    format: Format,
    ps_args: Vec<String>,
) -> Result<i32, Error> {
    let pids = rt.pids(id)?;
    if format == Format::Json {
        outln!(
            "{}",
            serde_json::to_string(&pids).map_err(|e| Error::runtime(anyhow!(e)))?
        );
        return Ok(0);
    }
    let ps_args = if ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        ps_args
    };
    let out = Command::new("ps")
        .args(&ps_args)
        .output()
        .map_err(|e| Error::runtime(anyhow!("cannot run ps: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::runtime(anyhow!("ps output has no PID column")))?;
    outln!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            outln!("{line}");
        }
    }
    Ok(0)
}

pub(crate) fn update(rt: &Runtime, args: UpdateArgs) -> Result<i32, Error> {
    let request = UpdateRequest {
        resources: args.resources,
        memory: args.memory,
        memory_reservation: args.memory_reservation,
        memory_swap: args.memory_swap,
        pids_limit: args.pids_limit,
        cpu_quota: args.cpu_quota,
        cpu_period: args.cpu_period,
        cpu_shares: args.cpu_shares,
        cpuset_cpus: args.cpuset_cpus,
        cpuset_mems: args.cpuset_mems,
        blkio_weight: args.blkio_weight,
    };
    rt.update(&args.id, &request).map(|()| 0)
}
