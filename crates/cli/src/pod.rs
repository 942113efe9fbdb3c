//! The pod commands: each one call of `peapod-pod`, and its output as a table or JSON.

use std::io::Write as _;

use peapod_pod::peapod_net::etc::DnsSettings;
use peapod_pod::{NetworkOptions, PodNetwork, PodOptions};
use peapod_runtime::{Error, Runtime};

use crate::args::{Format, GlobalArgs, PodCommand};
use crate::output::outln;
use crate::to_json;

pub(crate) fn dispatch(
    rt: &Runtime,
    global: &GlobalArgs,
    command: PodCommand,
) -> Result<i32, Error> {
    match command {
        PodCommand::Create(args) => {
            // As root a pod is on peapod's default network unless told otherwise; rootless
            // on pasta (else slirp4netns).
            let network = args.network.unwrap_or_else(|| default_network(rt));
            let options = PodOptions {
                name: args.name,
                hostname: args.hostname,
                share: args.share,
                labels: args.labels,
                init_path: args.init_path,
                limits: args.limits.limits(),
                network: NetworkOptions {
                    network,
                    ports: args.publish,
                    ip: args.ip,
                    dns: DnsSettings {
                        servers: args.dns.servers,
                        search: args.dns.search,
                        options: Vec::new(),
                    },
                    add_hosts: args.dns.add_hosts,
                    cni: args.cni.cni(),
                    hostname: None,
                },
                log_opts: args.log.log_opts,
                userns: args.userns,
            };
            peapod_pod::create(rt, &options)?;
        }
        PodCommand::List(args) => {
            let rows = peapod_pod::list(rt)?;
            let mut out = std::io::stdout().lock();
            match (args.format, args.quiet) {
                (_, true) => rows.iter().for_each(|r| {
                    let _ = writeln!(out, "{}", r.name);
                }),
                (Format::Json, false) => outln!("{}", to_json(&rows)?),
                (Format::Table, false) => {
                    let _ = writeln!(
                        out,
                        "{:<20} {:<9} {:<10} {:<12} {:<10} {:<15} {:<20} CREATED",
                        "NAME", "STATUS", "CONTAINERS", "SHARED", "INFRA PID", "IP", "PORTS"
                    );
                    for r in &rows {
                        let ports = r.ports.join(",");
                        let _ = writeln!(
                            out,
                            "{:<20} {:<9} {:<10} {:<12} {:<10} {:<15} {:<20} {}",
                            r.name,
                            r.status,
                            r.containers,
                            r.shared.join(","),
                            r.infra_pid,
                            r.ip.as_deref().unwrap_or("-"),
                            if ports.is_empty() { "-" } else { &ports },
                            r.created
                        );
                    }
                }
            }
        }
        PodCommand::Ps(args) => {
            let pod = peapod_pod::details(rt, &args.name)?;
            if args.format == Format::Json {
                outln!("{}", to_json(&pod)?);
                return Ok(0);
            }
            let mut out = std::io::stdout().lock();
            let namespaces: Vec<String> = pod
                .namespaces
                .iter()
                .map(|(kind, inode)| format!("{kind}:[{inode}]"))
                .collect();
            let _ = writeln!(
                out,
                "pod {} {} (infra pid {}; {})",
                pod.name,
                pod.status,
                pod.infra_pid,
                namespaces.join(" ")
            );
            let addresses = match pod.addresses.is_empty() {
                true => "no address".to_owned(),
                false => pod.addresses.join(" "),
            };
            let ports = match pod.ports.is_empty() {
                true => String::new(),
                false => format!("; ports {}", pod.ports.join(" ")),
            };
            let _ = writeln!(out, "network {}: {addresses}{ports}", pod.network);
            let _ = writeln!(out, "ready {}", pod.ready);
            let _ = writeln!(
                out,
                "{:<30} {:<16} {:<8} {:<8} {:<6} {:<8} LAST PROBE FAILURE",
                "CONTAINER", "NAME", "STATUS", "PID", "READY", "RESTARTS"
            );
            for c in &pod.containers {
                let _ = writeln!(
                    out,
                    "{:<30} {:<16} {:<8} {:<8} {:<6} {:<8} {}",
                    c.id,
                    c.name.as_deref().unwrap_or("-"),
                    c.status,
                    c.pid,
                    c.ready,
                    c.restarts,
                    c.last_probe_failure.as_deref().unwrap_or("-")
                );
            }
        }
        PodCommand::Inspect(args) => outln!("{}", to_json(&peapod_pod::details(rt, &args.name)?)?),
        PodCommand::Stop(args) => peapod_pod::stop_pod(rt, &args.name, args.timeout)?,
        PodCommand::Rm(args) => {
            peapod_pod::remove(rt, &args.name, args.force)?;
            // The attachment of a pod whose corrupt record no longer said where it is.
            peapod_pod::reap_networks(rt, &args.cni.cni());
        }
        PodCommand::Logs(args) => {
            let query = crate::oci::log_query(&args.read)?;
            let container = args.container_flag.or(args.container);
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let written = peapod_pod::logs(
                rt,
                &args.name,
                container.as_deref(),
                &query,
                args.read.follow,
                args.previous,
                &mut out,
            );
            // A reader gone (`| head`) is no failure of ours.
            match out.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(Error::runtime(anyhow::anyhow!(
                        "cannot write the logs: {e}"
                    )))
                }
                _ => written?,
            }
        }
        PodCommand::Play(args) => {
            let network = NetworkOptions {
                network: args.network.unwrap_or_else(|| default_network(rt)),
                cni: args.cni.cni(),
                ..NetworkOptions::default()
            };
            let ensure =
                |reference: &str, policy| crate::images::ensure(rt, global, reference, policy);
            let images = peapod_pod::Images {
                store: crate::images::store_root(rt, global),
                ensure: &ensure,
            };
            let play = peapod_pod::PlayArgs {
                file: &args.file,
                down: args.down,
                replace: args.replace,
                configmaps: &args.configmap,
                init_path: args.init_path.as_deref(),
                log_opts: &args.log.log_opts,
            };
            for name in peapod_pod::play(rt, &play, &network, &images)? {
                outln!("{name}");
            }
        }
        PodCommand::Monitor(args) => {
            let ended = peapod_pod::monitor(rt, &args.name);
            // Ended on its own (not killed): the pod is not shown as unsupervised.
            if let Err(e) = peapod_pod::monitor_ended(rt, &args.name) {
                tracing::debug!("pod {}: {}", args.name, e.one_line());
            }
            ended?
        }
    }
    Ok(0)
}

/// A pod's network when none is named: peapod's default network as root; for a rootless
/// one pasta, else slirp4netns (else only `lo`).
fn default_network(rt: &Runtime) -> PodNetwork {
    match rt.rootless {
        false => PodNetwork::Cni(peapod_pod::peapod_net::DEFAULT_NETWORK.to_owned()),
        true => PodNetwork::rootless_default(),
    }
}
