//! The raw command line, as clap parses it. Values here are checked for form only; `run.rs`
//! turns them into a spec.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use peapod_ns::Namespace;

/// peapod: a small container and pod runtime, with runc's command line.
#[derive(Debug, Parser)]
#[command(
    name = "peapod",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0"),
    about,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

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
    /// Use systemd to manage cgroups (not supported: peapod is refused with a clear error).
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Whether to run rootless: auto (when not root), true, or false.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub rootless: Rootless,
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

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a container and wait for it: on a root directory with `--rootfs DIR -- CMD`, or from
    /// an OCI bundle with `[--bundle B] ID`.
    Run(RunArgs),
    /// Create a container from an OCI bundle; it waits, set up, for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start(IdArg),
    /// Print a container's state as JSON.
    State(IdArg),
    /// Send a signal (default SIGTERM) to a container's process.
    Kill(KillArgs),
    /// Delete a container's state (and, with --force, its running process).
    Delete(DeleteArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(ListArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Write a default config.json to a bundle.
    Spec(SpecArgs),
    /// Print what this runtime supports, as the runtime-spec features JSON.
    Features,
}

/// A container id argument.
#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The container id.
    pub id: String,
}

/// `peapod create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The bundle directory, holding config.json.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container process's PID to this file.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the pty master to (process.terminal; not supported yet).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a session keyring (peapod never does).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) into the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

/// `peapod kill`.
#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// Signal every process of the container, not only its first.
    #[arg(short, long)]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// The signal: a name (TERM or SIGTERM) or a number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `peapod delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Kill the container's process if it still runs.
    #[arg(short, long)]
    pub force: bool,
    /// The container id.
    pub id: String,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}

/// `peapod list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The output format.
    #[arg(short, long, default_value = "table")]
    pub format: Format,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `peapod ps`.
#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// The output format.
    #[arg(short, long, default_value = "table")]
    pub format: Format,
    /// The container id.
    pub id: String,
    /// Arguments for ps(1) in table format (default -ef).
    #[arg(last = true)]
    pub ps_args: Vec<String>,
}

/// `peapod spec`.
#[derive(Debug, Args)]
pub(crate) struct SpecArgs {
    /// The bundle directory to write config.json to.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for a rootless container (a user namespace mapping the caller to root).
    #[arg(long)]
    pub rootless: bool,
}

/// The network a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Network {
    /// A new network namespace with only `lo`, up.
    None,
    /// The host's network namespace.
    Host,
}

/// `peapod run`.
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub(crate) struct RunArgs {
    /// The directory to use as the container's root (instead of a bundle).
    #[arg(long, value_name = "DIR", conflicts_with = "bundle")]
    pub rootfs: Option<PathBuf>,
    /// The OCI bundle directory, holding config.json (default: the current directory).
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Return once the container runs, instead of waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the container process's PID to this file.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A name for the container (letters, digits, '_', '.', '-'); the default host name.
    #[arg(long, value_name = "ID", value_parser = parse_name)]
    pub name: Option<String>,
    /// The container's host name (default: the name, or "peapod").
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Set an environment variable in the container.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR", value_parser = parse_inside_path)]
    pub workdir: Option<PathBuf>,
    /// Bind-mount a host path into the container, read-only with ":ro".
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<Volume>,
    /// Make the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// The network: a new namespace with only lo (none), or the host's (host).
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub net: Network,
    /// Keep the host's namespaces of these kinds (comma-separated: net, ipc, uts, pid, cgroup).
    #[arg(long, value_name = "NS,...", value_delimiter = ',', value_parser = parse_shareable)]
    pub share: Vec<Namespace>,
    /// Run peapod-init as PID 1 with CMD under it, to reap zombies and forward signals.
    #[arg(long)]
    pub init: bool,
    /// The static peapod-init to use (default: `peapod-init` beside the peapod binary).
    #[arg(long, value_name = "FILE", requires = "init")]
    pub init_path: Option<PathBuf>,
    /// The container id (with a bundle).
    pub id: Option<String>,
    /// The command to run and its arguments (with --rootfs).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A `-v HOST:CTR[:ro]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
    pub readonly: bool,
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if s.len() <= 128 && first_ok && s.chars().all(ok_char) {
        Ok(s.to_owned())
    } else {
        Err(
            "a name is 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"
                .into(),
        )
    }
}

fn parse_env(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(s.to_owned()),
        _ => Err("expected KEY=VALUE".into()),
    }
}

fn parse_inside_path(s: &str) -> Result<PathBuf, String> {
    if s.starts_with('/') {
        Ok(PathBuf::from(s))
    } else {
        Err("must be an absolute path inside the container".into())
    }
}

fn parse_volume(s: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [host, ctr] => (*host, *ctr, false),
        [host, ctr, "ro"] => (*host, *ctr, true),
        [host, ctr, "rw"] => (*host, *ctr, false),
        [_, _, mode] => return Err(format!("unknown mode {mode:?} (expected ro or rw)")),
        _ => return Err("expected HOST:CTR or HOST:CTR:ro".into()),
    };
    if host.is_empty() {
        return Err("the host path is empty".into());
    }
    Ok(Volume {
        host: PathBuf::from(host),
        container: parse_inside_path(container)?,
        readonly,
    })
}

fn parse_shareable(s: &str) -> Result<Namespace, String> {
    let ns: Namespace = s
        .parse()
        .map_err(|e: peapod_ns::UnknownNamespace| e.to_string())?;
    match ns {
        Namespace::Mount => {
            Err("mnt cannot be shared: a container always gets its own mounts".into())
        }
        Namespace::User => Err("user is not a namespace peapod creates to share".into()),
        ns => Ok(ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_forms() {
        let v = parse_volume("/data:/mnt:ro").expect("valid");
        assert_eq!(
            v,
            Volume {
                host: "/data".into(),
                container: "/mnt".into(),
                readonly: true
            }
        );
        assert!(parse_volume("/data").is_err());
        assert!(parse_volume("/data:mnt").is_err());
        assert!(parse_volume("/data:/mnt:rx").is_err());
    }

    #[test]
    fn names_reject_path_tricks() {
        assert!(parse_name("web-1.a_b").is_ok());
        assert!(parse_name("../x").is_err());
        assert!(parse_name("a/b").is_err());
        assert!(parse_name("").is_err());
    }

    #[test]
    fn share_rejects_mount_and_unknown() {
        assert_eq!(parse_shareable("net"), Ok(Namespace::Net));
        assert!(parse_shareable("mnt").is_err());
        assert!(parse_shareable("nett")
            .unwrap_err()
            .contains("unknown namespace"));
    }
}
