//! `peapod-pull`: pulls one image into the image store. `peapod pull` and `peapod run IMAGE`
//! run it, so that the `peapod` binary itself links no HTTP or TLS code; all the work is
//! `peapod_registry::pull`'s. Progress on stderr, the image id on stdout, and on failure one
//! line `peapod pull: error: ...` with exit status 2 (bad input) or 125.

use std::path::PathBuf;

use clap::Parser;
use peapod_registry::{Error, Options, Platform, ProgressMode};
use tracing::level_filters::LevelFilter;

// Only its stderr lines are used here.
#[allow(dead_code)]
#[path = "../log.rs"]
mod log;

/// Pull an image from a registry into peapod's image store.
#[derive(Debug, Parser)]
#[command(name = "peapod-pull", version, max_term_width = 100)]
struct Args {
    /// Where images live (or set PEAPOD_STORAGE; default /var/lib/peapod, or
    /// $XDG_DATA_HOME/peapod when not root).
    #[arg(long, value_name = "DIR")]
    storage: Option<PathBuf>,
    /// A registry (HOST or HOST:PORT) that may be reached over plain HTTP or unverified HTTPS.
    #[arg(long, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// The platform to pick from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Credentials from this auth file instead of the usual ones.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Trust the CA certificates (*.crt) in this directory for the registry.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Print no progress.
    #[arg(long, short)]
    quiet: bool,
    /// At most this many blobs download at once.
    #[arg(long, value_name = "N", default_value_t = 3)]
    jobs: usize,
    /// The image: NAME[:TAG] or NAME@sha256:DIGEST.
    reference: String,
}

fn main() {
    let args = Args::parse();
    // Warnings on stderr, or what `PEAPOD_LOG` asks for, as `peapod` logs.
    log::init(LevelFilter::WARN, log::Sink::Stderr);
    match run(args) {
        Ok(id) => println!("{id}"),
        Err(e) => {
            eprintln!("peapod pull: error: {e}");
            let usage = matches!(e, Error::BadReference { .. } | Error::BadPlatform(_));
            std::process::exit(if usage { 2 } else { 125 });
        }
    }
}

fn run(args: Args) -> Result<String, Error> {
    let rootless = !nix::unistd::geteuid().is_root();
    let root = peapod_image::root(args.storage, rootless);
    let store = peapod_image::Store::open(&root)?;
    let mut options = Options {
        insecure_registries: args.insecure_registry,
        platform: args.platform.as_deref().map(Platform::parse).transpose()?,
        cert_dir: args.cert_dir,
        progress: match args.quiet {
            true => ProgressMode::Quiet,
            false => ProgressMode::Auto,
        },
        jobs: args.jobs,
        ..Options::default()
    };
    if let Some(file) = args.authfile {
        options.auth_files = vec![file];
    }
    let image = peapod_registry::pull(&store, &args.reference, &options)?;
    Ok(image.id.to_string())
}
