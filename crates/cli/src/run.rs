//! `peapod run`: builds an OCI spec from the command line and runs it in the foreground, the
//! same code path a bundle's `config.json` takes.

use anyhow::Context;
use oci_spec::runtime::{Mount, MountBuilder, Spec};
use peapod_container::{create, default_spec, ContainerConfig, SignalForwarder};
use peapod_ns::Namespace;

use crate::args::{Network, RunArgs};
use crate::Failure;

/// Runs the container and returns the exit status `peapod` should end with.
pub(crate) fn run(args: RunArgs) -> Result<i32, Failure> {
    let spec = spec_from_args(&args)?;
    let bundle = std::env::current_dir()
        .context("cannot read the current directory")
        .map_err(|e| Failure {
            error: e,
            code: 125,
        })?;
    let config =
        ContainerConfig::from_spec(&spec, &bundle).map_err(peapod_container::Error::from)?;
    let forwarder = SignalForwarder::install()?;
    let pid = create(&config)?.start()?;
    tracing::debug!("container process {pid} started");
    Ok(forwarder.wait(pid)?.code())
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
fn spec_from_args(args: &RunArgs) -> Result<Spec, Failure> {
    let euid = nix::unistd::geteuid();
    let rootless = (!euid.is_root()).then(|| (euid.as_raw(), nix::unistd::getegid().as_raw()));
    let mut spec = default_spec(rootless);

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

    let root_path = std::path::absolute(&args.rootfs)
        .with_context(|| format!("invalid rootfs path {}", args.rootfs.display()))
        .map_err(Failure::usage)?;
    if let Some(root) = spec.root_mut() {
        root.set_path(root_path).set_readonly(Some(args.read_only));
    }

    if let Some(process) = spec.process_mut() {
        process.set_args(Some(args.command.clone()));
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
    spec.set_mounts(Some(mounts));
    Ok(spec)
}
