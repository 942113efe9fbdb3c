//! What every command shares: the state store, whether peapod runs rootless, and logging.

use std::path::PathBuf;

use peapod_state::Store;

use crate::args::{GlobalArgs, LogFormat, Rootless};
use crate::Failure;

/// The checked global flags.
#[derive(Debug)]
pub(crate) struct Context {
    pub store_root: PathBuf,
    pub rootless: bool,
}

impl Context {
    pub(crate) fn new(global: &GlobalArgs) -> Result<Context, Failure> {
        if global.systemd_cgroup {
            return Err(Failure::usage(anyhow::anyhow!(
                "--systemd-cgroup: the systemd cgroup driver is not supported; use cgroupfs"
            )));
        }
        let euid = nix::unistd::geteuid();
        let rootless = match global.rootless {
            Rootless::Auto => !euid.is_root(),
            Rootless::True => true,
            Rootless::False => false,
        };
        let store_root = match &global.root {
            Some(root) => root.clone(),
            None if !euid.is_root() => std::env::var_os("XDG_RUNTIME_DIR")
                .map(|dir| PathBuf::from(dir).join("peapod"))
                .unwrap_or_else(|| PathBuf::from(format!("/tmp/peapod-{euid}"))),
            None => PathBuf::from("/run/peapod"),
        };
        Ok(Context {
            store_root,
            rootless,
        })
    }

    /// The state store, created when missing.
    pub(crate) fn store(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.store_root)?)
    }
}

/// Sends tracing output to stderr, or to `--log FILE` (as JSON lines with
/// `--log-format json`, which containerd and podman read).
pub(crate) fn init_logging(global: &GlobalArgs) {
    let default = if global.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let file = global.log.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    match (file, global.log_format) {
        (Some(file), LogFormat::Json) => builder
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        (Some(file), LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        (None, _) => builder.without_time().with_writer(std::io::stderr).init(),
    }
}
