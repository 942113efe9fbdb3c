//! A container's lifecycle as a library: what `peapod`'s OCI commands do, for any Rust
//! program. [`Runtime`] holds what every operation shares (the state root, whether it runs
//! rootless, the entrypoint guard) and has one method per operation: [`Runtime::create`],
//! [`Runtime::start`], [`Runtime::state`], [`Runtime::kill`], [`Runtime::delete`],
//! [`Runtime::exec`], [`Runtime::pause`], [`Runtime::resume`], [`Runtime::update`],
//! [`Runtime::events`], [`Runtime::list`] and [`Runtime::run`] (create and start in one).
//! Every error is an [`Error`] that carries the exit status a command line should end with.
//!
//! Beside them, what turns friendly flags into a [`Spec`](oci_spec::runtime::Spec):
//! [`flags::spec_from_flags`] (`peapod run --rootfs`), [`security`] (`--cap-add`, `--user`,
//! `--security-opt`, Docker's seccomp profiles) and [`bundle::load`] (a bundle's
//! `config.json`, errors naming the JSON path).
//!
//! A container from a spec, created, started, waited for and deleted (as root):
//!
//! ```no_run
//! use peapod_runtime::{CreateOptions, Runtime};
//!
//! let rt = Runtime::new("/run/peapod".into(), false).with_entrypoint_guard()?;
//! let mut spec = peapod_container::default_spec(None);
//! spec.root_mut().as_mut().expect("a root").set_path("/srv/busybox".into());
//! spec.process_mut()
//!     .as_mut()
//!     .expect("a process")
//!     .set_args(Some(vec!["/bin/sh".into(), "-c".into(), "exit 3".into()]));
//! let options = CreateOptions { fifo: true, ..CreateOptions::default() };
//! let pid = rt.create("demo", &spec, "/srv".as_ref(), &options)?.detach();
//! rt.start("demo")?;
//! assert_eq!(peapod_runtime::wait(pid)?, 3);
//! rt.delete("demo", false)?;
//! # Ok::<(), peapod_runtime::Error>(())
//! ```
//!
//! It knows nothing of pods (`peapod-pod` builds them on this API) and prints nothing: the
//! CLI formats what the methods return. The process stays single-threaded: containers are
//! cloned without an exec, which a second thread would make unsafe.
#![deny(missing_docs)]

pub mod bundle;
pub mod cgroups;
pub mod clock;
mod create;
pub mod daemon;
mod delete;
mod error;
mod events;
mod exec;
pub mod flags;
pub mod image;
pub mod init;
mod kill;
mod leftovers;
pub mod logcopy;
pub mod logfile;
mod monitor;
pub mod names;
mod pause;
mod restart;
mod run;
mod sealed;
mod seccomp_profile;
pub mod security;
mod spec;
mod start;
mod state;
mod stop;
mod tty;
mod update;
pub mod userns;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use peapod_container::Created;
use peapod_state::{ContainerId, Record, Status, Store};

pub use create::{CreateOptions, EtcFiles};
pub use error::{Cause, Error, Result};
pub use exec::ExecOptions;
pub use kill::{is_live, parse_signal, wait_gone};
pub use monitor::{inherited_pipe, MonitorOptions};
pub use restart::RestartPolicy;
pub use run::{DetachedLog, RunOptions};
pub use spec::{features, write_default_spec};
pub use state::StateJson;
pub use update::UpdateRequest;

/// What every lifecycle operation shares.
#[derive(Debug)]
pub struct Runtime {
    /// The state root: one directory per container (and `.pods` for pods).
    pub root: PathBuf,
    /// Running without root: no cgroup unless limits are asked for, and a spec without a
    /// user namespace is refused with a sentence rather than a bare `EPERM`.
    pub rootless: bool,
    /// The sealed copy of peapod-init that entrypoints are exec'd through (CVE-2019-5736),
    /// set by [`Runtime::with_entrypoint_guard`]; without it entrypoints are exec'd directly.
    pub entrypoint_guard: Option<OwnedFd>,
    /// `--systemd-cgroup`: containers' cgroups are transient systemd scopes
    /// (`peapod_cgroups::systemd`), `linux.cgroupsPath` is `slice:prefix:name`.
    pub systemd_cgroup: bool,
}

impl Runtime {
    /// A runtime keeping its state under `root`, without an entrypoint guard.
    pub fn new(root: PathBuf, rootless: bool) -> Runtime {
        Runtime {
            root,
            rootless,
            entrypoint_guard: None,
            systemd_cgroup: false,
        }
    }

    /// Whether this build has the systemd cgroup driver (the cargo feature `systemd`).
    pub const SYSTEMD_DRIVER: bool = cfg!(feature = "systemd");

    /// Whether this build has the image store (the cargo feature `image-store`): without it,
    /// a container of an image is refused, and so is the deletion of one
    /// ([`Runtime::has_image_layers`]), whose layers only the store can release.
    pub const IMAGE_STORE: bool = cfg!(feature = "image-store");

    /// This runtime with the systemd cgroup driver (`--systemd-cgroup`) or without.
    pub fn with_systemd_cgroup(mut self, systemd: bool) -> Runtime {
        self.systemd_cgroup = systemd;
        self
    }

    /// This runtime with the entrypoint guard: a sealed copy of the static peapod-init
    /// (`$PEAPOD_INIT`, or beside the running program), or nothing when the running program
    /// cannot be written anyway. When neither is possible the program re-executes itself from
    /// a sealed copy of itself: call this early, before anything worth keeping is done.
    pub fn with_entrypoint_guard(mut self) -> Result<Runtime> {
        self.entrypoint_guard = sealed::entrypoint_guard().map_err(Error::runtime)?;
        Ok(self)
    }

    /// This runtime, keeping compiled seccomp filters in `ROOT/.seccomp` (a name no container
    /// id can take), so that a profile is compiled by libseccomp once rather than for every
    /// container. For this whole process: see `peapod_container::use_seccomp_cache`.
    pub fn with_seccomp_cache(self) -> Runtime {
        peapod_container::use_seccomp_cache(&self.root.join(".seccomp"));
        self
    }

    /// The descriptor of the entrypoint guard, for the container's configuration.
    pub(crate) fn exec_through(&self) -> Option<RawFd> {
        self.entrypoint_guard.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The state store, created when missing.
    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.root)?)
    }

    /// The id of the container a person means by `text`: `text` itself when a container has
    /// that id, else the container whose generated name it is ([`names`]), else the
    /// generated id it is a unique prefix of (see [`Store::resolve`]); an error when it
    /// begins several.
    pub fn resolve(&self, text: &str) -> Result<String> {
        let id: ContainerId = text.parse()?;
        // A whole id (what containerd and podman pass) costs one `stat`, not even the checks
        // of opening the store, which the command itself makes next.
        if std::fs::symlink_metadata(self.root.join(id.as_str())).is_ok() {
            return Ok(text.to_owned());
        }
        if let Some(named) = names::find(self, text)? {
            return Ok(named);
        }
        Ok(self.store()?.resolve(text)?.to_string())
    }

    /// Whether container `id` has a state directory (live or not).
    pub fn exists(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// Creates container `id` from `spec` (its relative paths resolved against `bundle`) and
    /// records it; its process waits at the barrier `options` names. On any failure nothing
    /// is left: no state directory, no process, no cgroup.
    pub fn create(
        &self,
        id: &str,
        spec: &Spec,
        bundle: &Path,
        options: &CreateOptions,
    ) -> Result<Created> {
        create::create_recorded(self, id, spec, bundle, options)
    }

    /// Starts created container `id`: releases its process from the exec fifo, then runs
    /// the `poststart` hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        start::start(self, id)
    }

    /// Runs container `id`: see [`RunOptions`]. `created` is told whether the creation
    /// succeeded as soon as that is known. Returns the container's exit status in the
    /// foreground, else 0.
    pub fn run(
        &self,
        id: &str,
        spec: &Spec,
        bundle: &Path,
        options: RunOptions,
        created: impl FnOnce(bool),
    ) -> Result<i32> {
        run::run(self, id, spec, bundle, options, created)
    }

    /// Runs container `id` detached, keeping the caller's stdio (runc's `run -d`): what
    /// [`Runtime::run`] does with `detach` and no [`RunOptions::log`], the creation as
    /// `options` say (`fifo` is set). Linked alone, it leaves out the foreground's and the
    /// monitor's code.
    pub fn run_detached(
        &self,
        id: &str,
        spec: &Spec,
        bundle: &Path,
        options: CreateOptions,
    ) -> Result<()> {
        run::run_detached(self, id, spec, bundle, options)
    }

    /// Runs container `id` in the foreground (runc's `run` of a bundle): what
    /// [`Runtime::run`] does without `detach`, the creation as `options` say, and the waiting
    /// handed to the small init as [`RunOptions::then_finish`] says. Returns the container's
    /// exit status. Linked alone, it leaves out the monitor's and the log's code.
    pub fn run_foreground(
        &self,
        id: &str,
        spec: &Spec,
        bundle: &Path,
        options: CreateOptions,
        then_finish: Option<&[std::ffi::CString]>,
    ) -> Result<i32> {
        run::run_foreground(self, id, spec, bundle, options, then_finish)
    }

    /// Ends a foreground run handed to the small init ([`RunOptions::then_finish`]): waits
    /// for the container (a child of this process), deletes it, and returns its status.
    pub fn finish(&self, id: &str) -> Result<i32> {
        run::finish(self, id)
    }

    /// The OCI state of container `id`, its status read live.
    pub fn state(&self, id: &str) -> Result<StateJson> {
        state::state(self, id)
    }

    /// The states of every container (after removing what a killed `peapod run` left).
    pub fn list(&self) -> Result<Vec<StateJson>> {
        state::list(self)
    }

    /// The record of container `id` and its status now, the lock released again.
    pub fn snapshot(&self, id: &ContainerId) -> Result<(Record, Status)> {
        state::snapshot(self, id)
    }

    /// Sends `signal` to container `id`'s process, or with `all` to every process in it.
    /// [`Error::NotRunning`] when its process has exited (but `all` of none is done).
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        kill::kill_container(self, id, signal, all)
    }

    /// The signal that stops container `id`: its image's StopSignal (the
    /// [`image::STOP_SIGNAL_ANNOTATION`]), else SIGTERM.
    pub fn stop_signal(&self, id: &str) -> Result<Signal> {
        let (record, _) = self.snapshot(&id.parse()?)?;
        image::stop_signal_of(&record)
    }

    /// The systemd scope that is container `id`'s cgroup (`--systemd-cgroup`), if it has one:
    /// only a build with the systemd driver ([`Runtime::SYSTEMD_DRIVER`]) can stop it.
    pub fn systemd_unit(&self, id: &str) -> Result<Option<String>> {
        // The record alone: no status read (`peapod-oci` asks before every `delete`).
        let entry = self.store()?.load(&id.parse()?)?;
        Ok(state::recorded(&entry)?.cgroup_unit)
    }

    /// Whether container `id` has layers in an image store, which its deletion releases
    /// (only a build with the store, [`Runtime::IMAGE_STORE`], can).
    pub fn has_image_layers(&self, id: &str) -> Result<bool> {
        let entry = self.store()?.load(&id.parse()?)?;
        Ok(image::has_layers(entry.dir()))
    }

    /// The PIDs of every process of container `id` (none when it is not live).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        kill::pids(self, id)
    }

    /// Deletes container `id`: a created one is killed first, a running or paused one only
    /// with `force`; `force` also accepts one that does not exist, or whose record is corrupt.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        delete::delete(self, &id.parse()?, force)
    }

    /// Runs a new process in container `id`; its exit status in the foreground, else 0.
    pub fn exec(&self, id: &str, options: &ExecOptions) -> Result<i32> {
        exec::exec(self, id, options)
    }

    /// Starts `command` in running container `id` as its own process runs (user,
    /// capabilities, seccomp, environment), reading `/dev/null` and writing to the caller's
    /// stdout and stderr, and returns its pid without waiting: a child of the caller, which
    /// reaps it. Unlike [`Runtime::exec`] it leaves the caller's PID namespace for children
    /// as it was, so a supervisor may call it often (a pod's probes and hooks).
    pub fn exec_spawn(&self, id: &str, command: &[String]) -> Result<nix::unistd::Pid> {
        exec::spawn(self, id, command)
    }

    /// Freezes every process of running container `id`.
    pub fn pause(&self, id: &str) -> Result<()> {
        pause::pause(self, id)
    }

    /// Thaws paused container `id`.
    pub fn resume(&self, id: &str) -> Result<()> {
        pause::resume(self, id)
    }

    /// Writes new limits into live container `id`'s cgroup.
    pub fn update(&self, id: &str, request: &UpdateRequest) -> Result<()> {
        update::update(self, id, request)
    }

    /// runc's events of container `id`, given to `emit`: one stats event when `interval` is
    /// `None`; else stats every `interval` and OOM kills as they happen until it exits.
    pub fn events(
        &self,
        id: &str,
        interval: Option<Duration>,
        emit: impl FnMut(serde_json::Value),
    ) -> Result<()> {
        events::events(self, id, interval, emit)
    }

    /// Writes the log of a detached container (`run -d`) to `out` as it wrote its output;
    /// with `follow`, goes on with what it writes until it has exited and its monitor is
    /// done. A closed `out` (`logs | head`) ends it quietly.
    pub fn logs(
        &self,
        id: &str,
        query: &logfile::LogQuery,
        follow: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let cid: ContainerId = id.parse()?;
        let dir = self.store()?.load(&cid)?.dir().to_owned();
        if !dir.join(logfile::LOG_FILE).exists() {
            return Err(Error::runtime(anyhow::anyhow!(
                "container {id} has no log: only a detached container keeps one (`run -d`, \
                 a played pod's)"
            )));
        }
        // Complete once neither a `run -d` monitor nor a pod container's copier writes it.
        let mut done = || match self.snapshot(&cid) {
            Ok((record, _)) => {
                !record.owner.is_some_and(|o| o.is_alive()) && !logcopy::writer_alive(&dir)
            }
            Err(_) => true,
        };
        let follow = follow.then_some(&mut done as &mut dyn FnMut() -> bool);
        match logfile::copy(&dir, query, out, follow) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other
                .map_err(|e| Error::runtime(anyhow::anyhow!("cannot read the log of {id}: {e}"))),
        }
    }

    /// Blocks until container `id` has exited; its exit status (recorded by the monitor of a
    /// `run -d` container; an error for one without).
    pub fn wait_exit(&self, id: &str) -> Result<i32> {
        stop::wait(self, id)
    }

    /// Stops container `id` as `docker stop` does: its StopSignal (else SIGTERM), then
    /// SIGKILL after `timeout`. A container that is not running is left as it is.
    pub fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        stop::stop(self, id, timeout)
    }

    /// Whether container `id` was made by `run -d` with a monitor (from an image or
    /// `--rootfs`), and so can be started again ([`Runtime::start_again`]).
    pub fn is_detached_run(&self, id: &str) -> bool {
        self.root.join(id).join(restart::LAUNCH_FILE).exists()
    }

    /// docker's `start` of a `run -d` container ([`Runtime::is_detached_run`]): once it has
    /// exited, it is made again from what it was made from (its id, state, writable layer and
    /// log kept; the log appended to) and started under a new monitor, whose command line
    /// `monitor` gives for the log's limits (see [`DetachedLog::exec`]). Nothing is done
    /// while it runs. runc's `start` of a created container is [`Runtime::start`].
    pub fn start_again(
        &self,
        id: &str,
        monitor: impl FnOnce(logfile::LogLimits) -> Option<Vec<std::ffi::CString>>,
    ) -> Result<()> {
        stop::start(self, id, monitor)
    }

    /// docker's `restart` of a `run -d` container: [`Runtime::stop`], then
    /// [`Runtime::start_again`].
    pub fn restart(
        &self,
        id: &str,
        timeout: Duration,
        monitor: impl FnOnce(logfile::LogLimits) -> Option<Vec<std::ffi::CString>>,
    ) -> Result<()> {
        stop::restart(self, id, timeout, monitor)
    }

    /// Removes container `id` as `docker rm` does: `delete` (with `force`, of a running one
    /// too), then waits for its monitor to be gone.
    pub fn remove(&self, id: &str, force: bool) -> Result<()> {
        stop::remove(self, id, force)
    }

    /// The monitor of a `run -d` container (`peapod monitor`, see [`DetachedLog::exec`]):
    /// returns when the container has exited, its output is in its log and its exit in its
    /// record.
    pub fn monitor(&self, id: &str, options: MonitorOptions) -> Result<i32> {
        monitor::monitor(self, id, options)
    }

    /// Removes the containers whose foreground `peapod run` or monitor was killed; never fails.
    pub fn reap_leftovers(&self) {
        leftovers::reap(self)
    }
}

pub use leftovers::{failpoint, FAILPOINT_PID_VAR, FAILPOINT_VAR};

/// Waits for our child `pid` (a container created and detached by this process) to exit;
/// its status as a shell gives it (128 + the signal for a killed one).
pub fn wait(pid: Pid) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::runtime(anyhow::anyhow!("waitpid {pid}: {e}"))),
        }
    }
}
