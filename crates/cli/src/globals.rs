//! The flags runc takes before the command, what they make (the runtime, the logging) and
//! how a command's error ends the process: shared by `peapod` and `peapod-oci`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use peapod_runtime::{Error, Runtime};
use tracing::level_filters::LevelFilter;

use crate::log::Sink;

/// The flags runc takes before the command (only `--debug` may also follow it).
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Log what peapod does (or set PEAPOD_LOG=debug).
    #[arg(long, global = true)]
    pub debug: bool,
    /// Where container state lives (default /run/peapod, or $XDG_RUNTIME_DIR/peapod when not root).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write logs and errors to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The log format.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Use systemd to manage cgroups (as runc): a container's cgroup is a transient scope,
    /// and linux.cgroupsPath is "slice:prefix:name".
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Whether to run rootless: auto (when not root), true, or false.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub rootless: Rootless,
    /// Where images live (or set PEAPOD_STORAGE; default /var/lib/peapod, or
    /// $XDG_DATA_HOME/peapod when not root).
    #[arg(long, global = true, value_name = "DIR")]
    pub storage: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Plain lines.
    Text,
    /// One JSON object a line, as containerd and podman read them.
    Json,
}

/// `--rootless`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Rootless {
    /// Rootless when the effective uid is not 0.
    Auto,
    /// Always rootless.
    True,
    /// Never rootless.
    False,
}

/// The runtime the global flags ask for: its state root (`--root`, else `/run/peapod` for
/// root and `$XDG_RUNTIME_DIR/peapod` for others) and whether it runs rootless.
pub(crate) fn runtime(global: &GlobalArgs) -> Result<Runtime, Error> {
    let euid = nix::unistd::geteuid();
    let rootless = match global.rootless {
        Rootless::Auto => !euid.is_root(),
        Rootless::True => true,
        Rootless::False => false,
    };
    if global.systemd_cgroup && !Runtime::SYSTEMD_DRIVER {
        return Err(Error::usage(anyhow::anyhow!(
            "--systemd-cgroup: this peapod was built without the systemd driver (cargo \
             feature `systemd`); use cgroupfs"
        )));
    }
    if global.systemd_cgroup && rootless {
        return Err(Error::usage(anyhow::anyhow!(
            "--systemd-cgroup: the systemd driver talks to the system's systemd, which only \
             root may ask for scopes (a user's systemd instance is not supported); use cgroupfs"
        )));
    }
    let root = match &global.root {
        Some(root) => root.clone(),
        // As runc: an empty or relative XDG_RUNTIME_DIR counts as unset.
        None if !euid.is_root() => std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join("peapod"))
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/peapod-{euid}"))),
        None => PathBuf::from("/run/peapod"),
    };
    Ok(Runtime::new(root, rootless).with_systemd_cgroup(global.systemd_cgroup))
}

/// Ends the process with `result`: its exit status, or the error as one line on stderr (and
/// in the `--log` file, where containerd and podman read the last error).
pub(crate) fn exit(result: Result<i32, Error>, global: &GlobalArgs) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let message = err.one_line();
            if global.log.is_some() {
                tracing::error!("{message}");
            }
            // "error" in the line, as runc's `ERRO` and wrapping tools look for it.
            eprintln!("peapod: error: {message}");
            std::process::exit(err.exit_code());
        }
    }
}

/// Sends tracing output to stderr, or to `--log FILE` as plain lines or, with `--log-format
/// json`, as runc writes them (see `log.rs`).
pub(crate) fn init_logging(global: &GlobalArgs) {
    let default = if global.debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let file = global.log.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let sink = match (file, global.log_format) {
        (Some(file), LogFormat::Json) => Sink::Json(file),
        (Some(file), LogFormat::Text) => Sink::Text(file),
        (None, _) => Sink::Stderr,
    };
    crate::log::init(default, sink);
}
