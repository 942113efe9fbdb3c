//! The raw command line, as clap parses it. Values here are checked for form only; `run.rs`
//! turns them into a spec.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use peapod_ns::Namespace;

/// peapod: a small container and pod runtime.
#[derive(Debug, Parser)]
#[command(name = "peapod", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// Log what peapod does to stderr (or set PEAPOD_LOG=debug).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a command in a new container on a root directory, and wait for it.
    Run(RunArgs),
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
    /// The directory to use as the container's root.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
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
    /// The command to run and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
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
