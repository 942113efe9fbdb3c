//! Creating a container, the one way every command that starts one shares (`create`, `run`,
//! a pod's containers): check the spec, record the container, start its process at a
//! barrier, record the process.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use oci_spec::runtime::Spec;
use peapod_cgroups::Cgroup;
use peapod_container::{create_in_then, Barrier, ContainerConfig, Created, Hooks};
use peapod_state::{ContainerId, Durability, Entry, ProcessIdentity, Record, OCI_VERSION};

use crate::{Error, Result, Runtime};

/// How a container is created, beyond its spec.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// Wait on the exec fifo (the process outlives this command) rather than the channel.
    pub fifo: bool,
    /// Where the container process's PID is written (atomically, as runc does).
    pub pid_file: Option<PathBuf>,
    /// How many descriptors after stdio the process keeps (`--preserve-fds`).
    pub preserve_fds: u32,
    /// `chroot` rather than `pivot_root` (`--no-pivot`).
    pub no_pivot: bool,
    /// Keep the caller's session keyring (`--no-new-keyring`) rather than join a new one
    /// named after the container.
    pub no_new_keyring: bool,
    /// Where the pty master of a `process.terminal` container is sent.
    pub console_socket: Option<PathBuf>,
    /// Or a connected socket to send it through (`run -t`, which receives it itself).
    pub console_stream: Option<UnixStream>,
    /// The cgroup of the container's pod, which its own is made below.
    pub cgroup_parent: Option<Cgroup>,
    /// A root made of an image's layers: the spec's `root.path` is then ignored, and an
    /// overlay of the layers is mounted in the container's mount namespace instead.
    pub image: Option<crate::image::ImageRoot>,
    /// The calling process stays as the container's monitor (`run -d` with a log): it is
    /// recorded as the owner, so that once it is gone without having finished (killed), the
    /// next command removes the container as a leftover.
    pub monitored: bool,
    /// The container's own `/etc/hosts` and `/etc/resolv.conf` (`run --add-host`, `--dns`).
    pub etc: EtcFiles,
}

/// Files of `/etc` a container gets of its own, written into its state directory and
/// bind-mounted over the root's: the image's or the directory's own file is never changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcFiles {
    /// The text of `/etc/hosts`, if the container gets its own.
    pub hosts: Option<String>,
    /// The text of `/etc/resolv.conf`, if the container gets its own.
    pub resolv_conf: Option<String>,
}

impl EtcFiles {
    /// Each file given: its name in `/etc`, its name in the state directory, its text.
    fn files(&self) -> impl Iterator<Item = (&'static str, &'static str, &str)> {
        [
            ("hosts", "etc-hosts", self.hosts.as_deref()),
            (
                "resolv.conf",
                "etc-resolv.conf",
                self.resolv_conf.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, file, text)| Some((name, file, text?)))
    }

    /// `spec` with a bind mount of each file from `state_dir` (where [`EtcFiles::write`]
    /// puts them), over any mount of the spec at the same place.
    fn mounted(&self, spec: &Spec, state_dir: &Path) -> Result<Spec> {
        let mut spec = spec.clone();
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for (name, file, _) in self.files() {
            let destination = Path::new("/etc").join(name);
            mounts.retain(|m| m.destination() != &destination);
            mounts.push(
                oci_spec::runtime::MountBuilder::default()
                    .destination(destination)
                    .typ("bind")
                    .source(state_dir.join(file))
                    .options(vec!["bind".to_owned()])
                    .build()
                    .map_err(|e| Error::runtime(anyhow!("cannot describe a mount: {e}")))?,
            );
        }
        spec.set_mounts(Some(mounts));
        Ok(spec)
    }

    /// Writes the files into `state_dir`.
    fn write(&self, state_dir: &Path) -> Result<()> {
        for (_, file, text) in self.files() {
            let path = state_dir.join(file);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Error::runtime)?;
        }
        Ok(())
    }
}

/// Creates the container `id` and records it in the store. On any failure nothing is left:
/// no state directory, no process. The lock on the container is released on return, so other
/// commands (`kill`, `state`) can reach it while it runs.
pub(crate) fn create_recorded(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    options: &CreateOptions,
) -> Result<Created> {
    create_in_entry(rt, id, spec, bundle, options, None)
}

/// Makes the process of stopped container `id` again, in its existing entry, from the spec
/// it was made from (`peapod start` of a `run -d` container, or its restart policy): the
/// same state directory, log and writable layer. `check` is given the record under the
/// entry's lock and may refuse (a `stop` came meanwhile) or change it (the restart count).
/// On failure the container is left stopped as it was.
pub(crate) fn recreate_recorded(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    options: &CreateOptions,
    mut check: impl FnMut(&mut Record) -> Result<()>,
) -> Result<Created> {
    create_in_entry(rt, id, spec, bundle, options, Some(&mut check))
}

/// What [`recreate_recorded`] checks and changes in the previous record.
type Again<'a> = &'a mut dyn FnMut(&mut Record) -> Result<()>;

fn create_in_entry(
    rt: &Runtime,
    id: &str,
    spec: &Spec,
    bundle: &Path,
    options: &CreateOptions,
    again: Option<Again<'_>>,
) -> Result<Created> {
    let id: ContainerId = id.parse()?;
    // The state directory is the store's `<root>/<id>`, made below; its files are written
    // before the container's process mounts them.
    let with_volumes;
    let spec = match &options.image {
        Some(image) if !image.volumes.is_empty() => {
            with_volumes = image
                .with_volumes(spec, id.as_str())
                .map_err(Error::runtime)?;
            &with_volumes
        }
        _ => spec,
    };
    let with_etc;
    let spec = match options.etc == EtcFiles::default() {
        true => spec,
        false => {
            with_etc = options.etc.mounted(spec, &rt.root.join(id.as_str()))?;
            &with_etc
        }
    };
    let mut config = ContainerConfig::from_spec(spec, bundle)
        .map_err(peapod_container::Error::from)?
        .preserve_fds(options.preserve_fds)
        .no_pivot(options.no_pivot)
        .session_keyring((!options.no_new_keyring).then_some(id.as_str()))
        .exec_through(rt.exec_through());
    // Connected before anything is made, and kept open until the container has sent the
    // pty master through it.
    let connected = console_socket(options.console_socket.as_deref(), config.wants_terminal())?;
    let console = connected.as_ref().or(options.console_stream.as_ref());
    if let Some(socket) = console {
        config = config.console_socket(socket.as_raw_fd());
    }
    // Checked before the store is touched, so that bad input leaves no trace at all.
    refuse_rootless_without_userns(spec)?;
    // An image's root is checked once its mount point exists, below, and so is a root with
    // `/etc` files of its own, once they are written.
    let own_etc = options.etc != EtcFiles::default();
    if options.image.is_none() && !own_etc {
        config
            .rootfs()
            .validate()
            .map_err(peapod_container::Error::from)?;
    }
    let mut record = Record::new(&id, bundle.to_owned());
    record.rootfs = config.rootfs().root().to_owned();
    record.annotations = spec
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // What later commands need of the spec is kept with the record, never read again from
    // a bundle that may have changed or gone.
    record.hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| peapod_state::RawJson::of(h).ok());
    record.spec_process = spec
        .process()
        .as_ref()
        .and_then(|p| peapod_state::RawJson::of(p).ok());
    record.spec_seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .and_then(|s| peapod_state::RawJson::of(s).ok());
    record.spec_resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| peapod_state::RawJson::of(r).ok());
    record.spec_mounts = spec
        .mounts()
        .as_ref()
        .and_then(|m| peapod_state::RawJson::of(m).ok());
    let mut config = config.hooks(hooks_for(spec.hooks().as_ref(), &record));
    let store = rt.store()?;
    let (entry, previous) = match again {
        None => (store.create(&id)?, None),
        Some(check) => {
            let entry = store.load(&id)?;
            let previous = stopped_record(&entry, &mut record, check)?;
            (entry, Some(previous))
        }
    };
    // Every container is owned by this process from the start, also one that outlives it
    // (`create`, `run -d`): should it be killed at any point, the next command finds the
    // entry owned, unlocked and its owner gone, and removes what the record says was made
    // (see `leftovers.rs`). Marked before the first record, which says where its cgroup
    // will be before it is made.
    record.owner = ProcessIdentity::of(std::process::id() as i32);
    if let Some(owner) = record.owner {
        entry.mark_owned(owner)?;
    }
    let mut cgroup = None;
    let result = (|| {
        record.cgroup_paths = match options.cgroup_parent.as_ref() {
            // The scope systemd will make, and its unit, for the reaper should this die.
            None if rt.systemd_cgroup => {
                let (paths, unit) = crate::cgroups::scope_paths(&id, spec)?;
                record.cgroup_unit = unit;
                paths
            }
            parent => crate::cgroups::locate(&id, spec, rt.rootless, parent)?,
        };
        entry.save(&record, Durability::Volatile)?;
        options.etc.write(entry.dir())?;
        if options.image.is_none() && own_etc {
            config
                .rootfs()
                .validate()
                .map_err(peapod_container::Error::from)?;
        }
        // After the entry is made, so that the id is known to be free: the store's layers
        // of a container are named by its id.
        if let Some(image) = &options.image {
            let userxattr = config.has_user_namespace();
            let (mount_point, overlay) = match previous {
                None => crate::image::prepare(image, id.as_str(), entry.dir(), userxattr),
                Some(_) => crate::image::prepare_again(image, id.as_str(), entry.dir(), userxattr),
            }
            .map_err(Error::runtime)?;
            config = config
                .with_image_root(mount_point, overlay)
                .map_err(peapod_container::Error::from)?;
            config
                .rootfs()
                .validate()
                .map_err(peapod_container::Error::from)?;
            record.rootfs = config.rootfs().root().to_owned();
        }
        // Until the process is recorded the entry stays locked, and a `create` that dies
        // half-way leaves a record without a process whose owner is gone.
        let barrier = if options.fifo {
            Barrier::Fifo(entry.exec_fifo())
        } else {
            Barrier::Channel
        };
        cgroup = crate::cgroups::create(
            &id,
            spec,
            rt.rootless,
            options.cgroup_parent.as_ref(),
            rt.systemd_cgroup,
        )?;
        if let Some(cgroup) = &cgroup {
            record.cgroup_paths = cgroup.paths();
            record.cgroup_unit = cgroup.unit().map(str::to_owned);
        }
        // Everything but the process is made: where the crash tests kill `create`.
        crate::failpoint("create");
        // A container that dies with this process (no fifo: it waits on the channel, and
        // keeps PR_SET_PDEATHSIG) stays this process's to remove; should it be killed first,
        // a later command finds the record abandoned (see `leftovers.rs`). Its record, with the
        // process, needs no sync (it is removed again before this command returns, and after a
        // crash of the machine the process is gone either way), so it is written as soon as
        // the process exists, while the process sets itself up, rather than after.
        let created = create_in_then(&config, &barrier, cgroup.as_ref(), |pid| {
            if !options.fifo {
                record.process = ProcessIdentity::of(pid.as_raw());
                entry.save(&record, Durability::Volatile)?;
            }
            Ok::<_, Error>(())
        })?;
        // The scope exists now, with the container's init in it, stopped at the barrier.
        if let Some(cgroup) = cgroup.as_ref().filter(|c| c.unit().is_some()) {
            // Where the systemd tests kill `create` with its scope made.
            crate::failpoint("create-scope");
            crate::cgroups::limit_scope(cgroup, spec, rt.rootless)?;
        }
        // One that outlives this command (`create`) is recorded once it is ready, with no
        // owner (unless a monitor stays), and synced: the record must survive a crash of the
        // machine.
        if options.fifo {
            record.process = ProcessIdentity::of(created.pid().as_raw());
            if !options.monitored {
                record.owner = None;
            }
            entry.save(&record, Durability::Synced)?;
        }
        if let Some(path) = &options.pid_file {
            write_pid_file(path, created.pid().as_raw()).map_err(Error::runtime)?;
        }
        Ok(created)
    })();
    if result.is_err() {
        // A dropped `Created` has already killed and reaped the process.
        if let Some(cgroup) = &cgroup {
            cgroup.undo();
        }
        if let Some(previous) = &previous {
            // Started again: what it had stays, its record too, for `rm` (or another
            // `start`).
            if let Err(e) = entry.save(previous, Durability::Synced) {
                tracing::warn!("cannot put back the record of {id}: {e}");
            }
            return result;
        }
        if let Err(e) = crate::image::release(id.as_str(), entry.dir()) {
            tracing::warn!("{e:#}");
        }
        let _ = entry.remove();
    }
    result
}

/// The record of the stopped container of `entry`, checked by `check`, whose kept fields
/// `record` (the one being made) takes over; its cgroup removed, for the new one.
fn stopped_record(entry: &Entry, record: &mut Record, check: Again<'_>) -> Result<Record> {
    let id = entry.id();
    let mut previous = crate::state::recorded(entry)?;
    let status = previous.status(entry.dir());
    if status != peapod_state::Status::Stopped {
        return Err(Error::runtime(anyhow!(
            "container {id} is {}: only a stopped one is started again",
            status.as_str()
        )));
    }
    check(&mut previous)?;
    if let Some(cgroup) = crate::cgroups::of_record(&previous)? {
        crate::cgroups::empty(&cgroup, true)?;
        cgroup.remove().map_err(Error::runtime)?;
    }
    // What an earlier attempt that failed may have left.
    match std::fs::remove_file(entry.exec_fifo()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::runtime(anyhow!(
                "cannot remove the old exec fifo: {e}"
            )))
        }
    }
    record.created = previous.created;
    record.restart_policy = previous.restart_policy.clone();
    record.restart_count = previous.restart_count;
    record.stopped_by_user = previous.stopped_by_user;
    Ok(previous)
}

/// Refuses a spec without a user namespace when peapod is not root: the kernel would refuse
/// every other namespace (or the cgroup) with a bare `EPERM`; say what is missing instead.
fn refuse_rootless_without_userns(spec: &Spec) -> Result<()> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return Ok(());
    }
    let has_userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::User)
        });
    if has_userns {
        return Ok(());
    }
    Err(Error::runtime(anyhow!(
        "rootless containers need a user namespace (peapod runs as uid {euid}): add \
         {{\"type\": \"user\"}} to linux.namespaces, with uidMappings and gidMappings \
         (`peapod spec --rootless` writes such a config.json)"
    )))
}

/// Connects to `--console-socket PATH`, which only a container with a terminal may be given
/// (as runc: a socket nobody would send anything to is a mistake).
pub(crate) fn console_socket(path: Option<&Path>, terminal: bool) -> Result<Option<UnixStream>> {
    match (path, terminal) {
        (None, _) => Ok(None),
        (Some(path), true) => UnixStream::connect(path)
            .map(Some)
            .with_context(|| format!("cannot connect to console socket {}", path.display()))
            .map_err(Error::runtime),
        (Some(_), false) => Err(Error::runtime(anyhow!(
            "--console-socket is only for a process with a terminal (process.terminal is false)"
        ))),
    }
}

/// Writes the PID atomically, as runc does: callers poll for this file.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let tmp = path.with_extension("peapod-tmp");
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("cannot write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write pid file {}", path.display()))
}

/// `hooks`, to be given the state of `record`.
fn hooks_for(hooks: Option<&oci_spec::runtime::Hooks>, record: &Record) -> Hooks {
    let mut state = serde_json::Map::new();
    state.insert("ociVersion".into(), OCI_VERSION.into());
    state.insert("id".into(), record.id.clone().into());
    state.insert("bundle".into(), record.bundle.display().to_string().into());
    state.insert(
        "annotations".into(),
        serde_json::to_value(&record.annotations).unwrap_or_default(),
    );
    Hooks::new(hooks, state)
}

/// Runs the `poststart` or `poststop` hooks recorded for the container: a failure is logged,
/// and changes nothing (runtime-spec, "Lifecycle").
pub(crate) fn run_logged_hooks(record: &Record, phase: &str, status: &str, pid: i32) {
    let Some(hooks) = &record.hooks else {
        return;
    };
    // From the JSON text: the spec's `hooks` deserialiser for text is in every build already
    // (`create` reads the spec); one for a `Value` would be a second copy (5 kB of
    // `peapod-oci`).
    let hooks = match hooks.parse::<oci_spec::runtime::Hooks>() {
        Ok(hooks) => hooks,
        Err(e) => {
            tracing::warn!("{phase} hooks not run: the recorded hooks are unreadable: {e}");
            return;
        }
    };
    if let Err(e) = hooks_for(Some(&hooks), record).run(phase, status, pid) {
        tracing::warn!("{e}");
    }
}
