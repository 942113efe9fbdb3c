//! `peapod create`, and the creation every other way of starting a container shares: check
//! the spec, record the container, start its process at a barrier, record the process.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use oci_spec::runtime::Spec;
use peapod_container::{create, Barrier, ContainerConfig, Created};
use peapod_state::{ContainerId, Durability, ProcessIdentity, Record};

use crate::args::CreateArgs;
use crate::context::Context;
use crate::{bundle, Failure};

/// How a container is created, beyond its spec.
#[derive(Debug, Default)]
pub(crate) struct CreateOptions {
    /// Wait on the exec fifo (the process outlives this command) rather than the channel.
    pub fifo: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
}

pub(crate) fn run(ctx: &Context, args: CreateArgs) -> Result<i32, Failure> {
    if args.console_socket.is_some() {
        return Err(Failure::runtime(anyhow!(
            "--console-socket: terminals are not supported yet"
        )));
    }
    let (bundle, spec) = bundle::load(&args.bundle).map_err(Failure::runtime)?;
    let options = CreateOptions {
        fifo: true,
        pid_file: args.pid_file,
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
    };
    let created = create_recorded(ctx, &args.id, &spec, &bundle, &options)?;
    created.detach();
    Ok(0)
}

/// Creates the container `id` and records it in the store. On any failure nothing is left:
/// no state directory, no process. The lock on the container is released on return, so other
/// commands (`kill`, `state`) can reach it while it runs.
pub(crate) fn create_recorded(
    ctx: &Context,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    options: &CreateOptions,
) -> Result<Created, Failure> {
    let id: ContainerId = id.parse()?;
    if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) {
        return Err(Failure::runtime(anyhow!(
            "process.terminal: terminals are not supported yet; set it to false"
        )));
    }
    let config = ContainerConfig::from_spec(spec, bundle)
        .map_err(peapod_container::Error::from)?
        .preserve_fds(options.preserve_fds)
        .no_pivot(options.no_pivot);
    // Checked before the store is touched, so that bad input leaves no trace at all.
    config
        .rootfs()
        .validate()
        .map_err(peapod_container::Error::from)?;
    let store = ctx.store()?;
    let entry = store.create(&id)?;
    let result = (|| {
        let mut record = Record::new(&id, bundle.to_owned());
        record.rootfs = config.rootfs().root().to_owned();
        record.annotations = spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Saved once, with the process: until then the entry is locked, and a `create` that
        // dies half-way leaves a directory without a record, which `delete --force` removes.
        let barrier = if options.fifo {
            Barrier::Fifo(entry.exec_fifo())
        } else {
            Barrier::Channel
        };
        let created = create(&config, &barrier)?;
        record.process = ProcessIdentity::of(created.pid().as_raw());
        // Only a record that outlives this command needs to survive a crash of the machine.
        let durability = if options.fifo {
            Durability::Synced
        } else {
            Durability::Volatile
        };
        entry.save(&record, durability)?;
        if let Some(path) = &options.pid_file {
            write_pid_file(path, created.pid().as_raw()).map_err(Failure::runtime)?;
        }
        Ok(created)
    })();
    if result.is_err() {
        // A dropped `Created` has already killed and reaped the process.
        let _ = entry.remove();
    }
    result
}

/// Writes the PID atomically, as runc does: callers poll for this file.
fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let tmp = path.with_extension("peapod-tmp");
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("cannot write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write pid file {}", path.display()))
}
