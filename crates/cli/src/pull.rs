//! `peapod pull`, and the pull of an image a command needs ([`ensure`]): both run the
//! `peapod-pull` binary, so that the `peapod` binary, which every container start loads (and
//! copies, sealed), carries no HTTP or TLS code.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, ValueEnum};
use peapod_image::{Image, Store};
use peapod_runtime::Error;

use crate::args::GlobalArgs;

/// When to pull an image a command needs (`--pull`; Kubernetes' `imagePullPolicy` maps
/// onto it: `IfNotPresent` is `missing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum PullPolicy {
    /// Only when the store does not have it.
    #[default]
    Missing,
    /// Every time (a tag may have moved).
    Always,
    /// Never: an image the store lacks is an error.
    Never,
}

/// The flags `peapod pull` passes on to `peapod-pull`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PullOptions {
    /// A registry (HOST or HOST:PORT) that may be reached over plain HTTP or unverified
    /// HTTPS (localhost and 127.0.0.1 always may). Repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// The platform to pick from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Credentials from this auth file (default: $REGISTRY_AUTH_FILE,
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Trust the CA certificates (*.crt) in this directory for the registry (default:
    /// /etc/containers/certs.d/HOST[:PORT]).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Print no progress.
    #[arg(long, short)]
    pub quiet: bool,
}

impl PullOptions {
    fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        for registry in &self.insecure_registry {
            args.extend(["--insecure-registry".into(), registry.into()]);
        }
        if let Some(platform) = &self.platform {
            args.extend(["--platform".into(), platform.into()]);
        }
        if let Some(file) = &self.authfile {
            args.extend(["--authfile".into(), file.into()]);
        }
        if let Some(dir) = &self.cert_dir {
            args.extend(["--cert-dir".into(), dir.into()]);
        }
        if self.quiet {
            args.push("--quiet".into());
        }
        args
    }
}

/// The image store's root: `--storage`, else `PEAPOD_STORAGE`, else the default for root or
/// for an ordinary user.
pub(crate) fn storage_root(global: &GlobalArgs, rootless: bool) -> PathBuf {
    peapod_image::root(global.storage.clone(), rootless)
}

/// `peapod pull`: replaces this process with `peapod-pull`, whose progress, one-line error
/// and exit status are then the command's own. Returns only when it cannot be started.
pub(crate) fn exec(storage: &Path, reference: &str, options: &PullOptions) -> Error {
    let binary = match binary() {
        Ok(binary) => binary,
        Err(e) => return e,
    };
    let err = command(&binary, storage, reference, options).exec();
    Error::runtime(anyhow::anyhow!("{}: {err}", binary.display()))
}

/// The image `reference` from the store, pulled first as `policy` says. `peapod-pull`
/// writes its progress (and, on failure, its one-line error) to the inherited stderr.
pub(crate) fn ensure(
    store: &Store,
    reference: &str,
    policy: PullPolicy,
    options: &PullOptions,
) -> Result<Image, Error> {
    if policy != PullPolicy::Always {
        if let Some(image) = store.resolve(reference).map_err(Error::runtime)? {
            return Ok(image);
        }
        if policy == PullPolicy::Never {
            return Err(Error::runtime(anyhow::anyhow!(
                "image {reference} is not in the store and the pull policy is never"
            )));
        }
    }
    let binary = binary()?;
    let mut command = command(&binary, store.root(), reference, options);
    // The image id it prints is for people running `peapod pull`, not for our stdout.
    command.stdout(std::process::Stdio::null());
    let status = command
        .status()
        .map_err(|e| Error::runtime(anyhow::anyhow!("{}: {e}", binary.display())))?;
    if !status.success() {
        return Err(Error::runtime(anyhow::anyhow!(
            "could not pull {reference} ({})",
            match status.code() {
                Some(code) => format!("peapod-pull exited with status {code}"),
                None => "peapod-pull was killed".to_owned(),
            }
        )));
    }
    store
        .resolve(reference)
        .map_err(Error::runtime)?
        .ok_or_else(|| {
            Error::runtime(anyhow::anyhow!(
                "peapod-pull succeeded but the store has no image {reference}"
            ))
        })
}

fn command(binary: &Path, storage: &Path, reference: &str, options: &PullOptions) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--storage")
        .arg(storage)
        .args(options.to_args())
        .arg("--")
        .arg(reference);
    command
}

/// `peapod-pull`: next to this binary (as installed, and in cargo's target directory), else
/// `$PEAPOD_PULL`, else on `PATH`.
fn binary() -> Result<PathBuf, Error> {
    const NAME: &str = "peapod-pull";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(NAME)))
        .filter(|path| path.is_file());
    let from_env = || {
        std::env::var_os("PEAPOD_PULL")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    };
    let on_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(NAME))
                .find(|p| p.is_file())
        })
    };
    beside.or_else(from_env).or_else(on_path).ok_or_else(|| {
        Error::runtime(anyhow::anyhow!(
            "{NAME} not found (next to peapod, in $PEAPOD_PULL or on PATH): it does the pulling"
        ))
    })
}
