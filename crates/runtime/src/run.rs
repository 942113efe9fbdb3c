//! Running a container: created and started in one go, in the foreground (waiting,
//! forwarding signals, deleting it at the end) or detached.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use peapod_cgroups::Cgroup;
use peapod_container::SignalForwarder;
use peapod_state::ContainerId;

use crate::create::{create_recorded, CreateOptions};
use crate::{Error, Result, Runtime};

/// How a container is run, beyond its spec.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Return once it runs, leaving it to run on its own (its process waits on the exec
    /// fifo until then), rather than wait for it and delete it.
    pub detach: bool,
    /// Where its PID is written.
    pub pid_file: Option<PathBuf>,
    /// Where the pty master of a `process.terminal` container is sent; without it, a
    /// foreground run joins the terminal to its own stdio.
    pub console_socket: Option<PathBuf>,
    /// The cgroup of its pod, which its own is made below.
    pub cgroup_parent: Option<Cgroup>,
    /// A root made of an image's layers (see [`CreateOptions::image`]).
    pub image: Option<crate::image::ImageRoot>,
}

/// Runs container `id`; `created` is told whether its creation succeeded, as soon as that is
/// known (a pod releases its lock, or forgets the member, there). Returns the status the
/// caller should exit with: the container's own in the foreground, else 0.
pub(crate) fn run(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    run: RunOptions,
    created: impl FnOnce(bool),
) -> Result<i32> {
    let mut options = CreateOptions {
        pid_file: run.pid_file,
        console_socket: run.console_socket,
        cgroup_parent: run.cgroup_parent,
        image: run.image,
        ..CreateOptions::default()
    };
    let create = |options: &CreateOptions| {
        let result = create_recorded(rt, id, spec, bundle, options);
        created(result.is_ok());
        result
    };
    if run.detach {
        options.fifo = true;
        let created = create(&options)?;
        let pid = created.detach();
        // Not kill(pid, 0): the process is our child, and a zombie would pass for alive.
        let process = peapod_state::ProcessIdentity::of(pid.as_raw());
        let alive = || process.is_some_and(|p| p.is_alive());
        let entry = rt.store()?.load(&id.parse()?)?;
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
                .map_err(Error::runtime)?;
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
        .map_err(Error::runtime)?;
    let id: ContainerId = id.parse()?;
    let started = created.start();
    let exit = started.and_then(|pid| {
        tracing::debug!("container process {pid} started");
        if spec.hooks().is_some() {
            let record = rt
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
            crate::cgroups::report_oom(rt, &id);
        }
    }
    // The foreground container is gone (or never ran): so goes its record.
    let cleaned = crate::delete::delete(rt, &id, true);
    let code = exit?.code();
    cleaned?;
    Ok(code)
}
