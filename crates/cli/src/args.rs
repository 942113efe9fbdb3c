//! The raw command line, as clap parses it. Values here are checked for form only;
//! `peapod_runtime::flags` turns `run`'s into a spec.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use peapod_ns::Namespace;
use peapod_pod::peapod_net::PortMapping;
use peapod_pod::PodNetwork;
use std::net::IpAddr;

use peapod_runtime::flags::{
    parse_device, parse_key_value, parse_label, parse_mount, parse_tmpfs, parse_ulimit,
    parse_volume, Device, MountArg, Tmpfs, Ulimit, VolumeArg,
};
use peapod_runtime::security::{
    parse_capability, parse_security_opt, parse_user, CapName, SecurityOpt, UserArg,
};

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

pub(crate) use crate::globals::GlobalArgs;

// Parsed once per process: `run`'s many flags make the enum large, which costs nothing here.
// `defer`: clap builds the arguments of the one subcommand given, not of all of them (help,
// completions and man pages build the rest when they need it). Building every subcommand's
// arguments was a tenth of a `peapod run`'s page faults (measured in docs/benchmarks.md).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum Command {
    /// Run a container and wait for it: from an image with `IMAGE [CMD...]`, on a root
    /// directory with `--rootfs DIR -- CMD`, or from an OCI bundle with `[--bundle B] ID`.
    #[command(
        after_long_help = "Example:\n  peapod run busybox echo hi\n  peapod run --rootfs ./rootfs --memory 64m -- /bin/sh -c 'echo hi'\n  peapod run --detach my-container   # the bundle in the current directory\n\nA bundle is run when --bundle is given, or when the one argument comes with a config.json\nin the current directory (runc's `run ID`); else the first argument is an image."
    )]
    Run(RunArgs),
    /// Create a container from an OCI bundle; it waits, set up, for `start`.
    #[command(after_long_help = "Example:\n  peapod create --bundle ./bundle --pid-file pid web")]
    Create(CreateArgs),
    /// Start a created container's process (runc's); docker's: start a `run -d` container
    /// that has exited again, from what it was made from (its log appended to).
    #[command(after_long_help = "Example:\n  peapod start web")]
    Start(StartArgs),
    /// Internal: the end of a foreground `run` whose waiting `peapod-init --watch` took
    /// over: collects the container's status, deletes it, exits with that status.
    #[command(hide = true)]
    Finish(IdArg),
    /// Print a container's state as JSON.
    #[command(after_long_help = "Example:\n  peapod state web")]
    State(IdArg),
    /// Send a signal (default SIGTERM, or the image's StopSignal) to a container's process.
    #[command(after_long_help = "Example:\n  peapod kill web TERM\n  peapod kill --all web KILL")]
    Kill(KillArgs),
    /// Delete a container's state (and, with --force, its running process).
    #[command(after_long_help = "Example:\n  peapod delete --force web")]
    Delete(DeleteArgs),
    /// List containers.
    #[command(
        alias = "ls",
        after_long_help = "Example:\n  peapod list --format json"
    )]
    List(ListArgs),
    /// Run a new process in a running container.
    #[command(
        after_long_help = "Example:\n  peapod exec web ps\n  peapod exec -it web sh\n  echo hi | peapod exec -i web cat\n  peapod exec --tty --console-socket /run/sock --detach web /bin/sh"
    )]
    Exec(ExecArgs),
    /// List containers as docker does (no ID), or the processes of one container as runc
    /// does (one ID).
    #[command(
        after_long_help = "Example:\n  peapod ps -a\n  peapod ps -q\n  peapod ps --format json web\n\nWith no ID: docker's table of containers (running ones; -a: all), 12-digit ids, or with\n--format json an array with docker's field names. With one ID (what containerd's shim\ncalls): runc's list of that container's processes, ps(1)'s table or a JSON array of PIDs,\nunchanged; -a and -q are refused with an ID."
    )]
    Ps(PsArgs),
    /// Write a default config.json to a bundle.
    #[command(after_long_help = "Example:\n  peapod spec --bundle ./bundle")]
    Spec(SpecArgs),
    /// Print what this runtime supports, as the runtime-spec features JSON.
    #[command(after_long_help = "Example:\n  peapod features")]
    Features,
    /// Freeze every process of a running container.
    #[command(after_long_help = "Example:\n  peapod pause web")]
    Pause(IdArg),
    /// Thaw a paused container.
    #[command(after_long_help = "Example:\n  peapod resume web")]
    Resume(IdArg),
    /// Change the resource limits of a running container.
    #[command(after_long_help = "Example:\n  peapod update --memory 128m --pids-limit 200 web")]
    Update(UpdateArgs),
    /// Stream a container's events (OOM kills, and its stats every --interval), or print its
    /// stats once with --stats.
    #[command(after_long_help = "Example:\n  peapod events --stats web")]
    Events(EventsArgs),
    /// Show how a container or a pod is isolated, read live from the kernel.
    Explain(ExplainArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_long_help = "Example:\n  peapod completion bash > /etc/bash_completion.d/peapod"
    )]
    Completion(CompletionArgs),
    /// Write man pages for peapod and every subcommand into a directory.
    #[command(hide = true)]
    Man(ManArgs),
    /// Pull an image from a registry into the image store.
    #[command(
        after_long_help = "Example:\n  peapod pull busybox\n  peapod pull --insecure-registry registry.lan:5000 registry.lan:5000/app:1\n  peapod pull --platform linux/arm64 docker.io/library/alpine:3"
    )]
    Pull(PullArgs),
    /// Pods: containers that share namespaces held by an infra process.
    #[command(
        subcommand,
        after_long_help = "Example:\n  peapod pod create web && peapod pod ps web && peapod pod rm -f web"
    )]
    Pod(PodCommand),
    /// List the images in the store.
    #[command(after_long_help = "Example:\n  peapod images\n  peapod images --format json")]
    Images(ImagesArgs),
    /// Remove images (refused while a container uses one, unless --force); their files go
    /// with `image prune`.
    #[command(after_long_help = "Example:\n  peapod rmi busybox")]
    Rmi(RmiArgs),
    /// Give an image in the store more names (as `docker tag`).
    #[command(after_long_help = "Example:\n  peapod tag busybox localhost/tools:1")]
    Tag(TagArgs),
    /// Print containers or images as JSON, with docker's field names.
    #[command(
        after_long_help = "Example:\n  peapod inspect web\n  peapod inspect --type image busybox\n\nA container is looked for first (its id, a unique prefix of a generated id, or its\nname), then an image; --type asks for one kind only. An image prints what `image\ninspect` prints."
    )]
    Inspect(InspectArgs),
    /// Print a detached container's output (`run -d`), as it wrote it.
    #[command(
        after_long_help = "Example:\n  peapod logs --tail 20 -f web\n  peapod logs --since 10m -t web"
    )]
    Logs(LogsArgs),
    /// Wait for containers to exit and print their exit statuses, one a line.
    #[command(after_long_help = "Example:\n  peapod wait web")]
    Wait(IdsArgs),
    /// Stop running containers: the image's StopSignal (else SIGTERM), then SIGKILL after
    /// the timeout. Prints each id.
    #[command(after_long_help = "Example:\n  peapod stop -t 2 web")]
    Stop(StopArgs),
    /// Stop `run -d` containers as `stop` does, then start them again (same id, log and
    /// writable layer). Prints each id.
    #[command(after_long_help = "Example:\n  peapod restart -t 2 web")]
    Restart(StopArgs),
    /// Remove containers, their state and log (with -f, running ones too). Prints each id.
    #[command(after_long_help = "Example:\n  peapod rm -f web")]
    Rm(RmArgs),
    /// Print a container's published ports (`-p`, `-P`), or the host address of one.
    #[command(after_long_help = "Example:\n  peapod port web\n  peapod port web 80/tcp")]
    Port(PortArgs),
    /// Internal: the monitor of a `run -d` container, which `run` execs: copies its output
    /// into its log and records its exit.
    #[command(hide = true)]
    Monitor(MonitorArgs),
    /// Images: inspect, load, save, import, prune.
    #[command(
        subcommand,
        after_long_help = "Example:\n  peapod image load busybox.tar && peapod image inspect busybox"
    )]
    Image(ImageCommand),
}

/// `peapod image ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// List the images in the store.
    #[command(
        alias = "list",
        after_long_help = "Example:\n  peapod image ls --format json"
    )]
    Ls(ImagesArgs),
    /// Print an image's record and config as JSON.
    #[command(after_long_help = "Example:\n  peapod image inspect busybox")]
    Inspect(InspectImageArgs),
    /// Remove images (as `peapod rmi`).
    #[command(after_long_help = "Example:\n  peapod image rm busybox")]
    Rm(RmiArgs),
    /// Give an image more names (as `peapod tag`).
    #[command(after_long_help = "Example:\n  peapod image tag busybox localhost/tools:1")]
    Tag(TagArgs),
    /// Load images from an OCI layout directory, an OCI archive or a docker-archive (from
    /// standard input when no FILE is given, or FILE is `-`).
    #[command(
        after_long_help = "Example:\n  podman save busybox > busybox.tar && peapod image load busybox.tar\n  podman save busybox | peapod image load"
    )]
    Load(LoadArgs),
    /// Write an image as an OCI archive (which `podman load` reads), to standard output
    /// unless `-o` names a file.
    #[command(
        after_long_help = "Example:\n  peapod image save busybox -o busybox.tar\n  peapod image save busybox | ssh host peapod image load"
    )]
    Save(SaveArgs),
    /// Make a one-layer image from a root file system (a tar or a directory).
    #[command(after_long_help = "Example:\n  peapod image import ./rootfs localhost/mine:1")]
    Import(ImportArgs),
    /// Remove every blob and unpacked layer no image or container uses; says what it freed.
    #[command(after_long_help = "Example:\n  peapod image prune")]
    Prune,
}

/// `peapod images`.
#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// The output format.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: Format,
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `peapod tag` and `peapod image tag`.
#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    /// The image: name[:tag], name@sha256:..., or id.
    pub source: String,
    /// Its new names, NAME[:TAG] (`tools` is docker.io/library/tools:latest, as Docker
    /// reads it); a name another image had moves to this one.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// `peapod rmi`.
#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// Remove the image even if containers use it (their layers stay until they are gone).
    #[arg(short, long)]
    pub force: bool,
    /// Images: name[:tag], name@sha256:..., or id.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `peapod image inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectImageArgs {
    /// Images: name[:tag], name@sha256:..., or id.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `peapod image load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The archive file or layout directory; `-` or none: standard input.
    #[arg(short, long = "input", value_name = "FILE|DIR")]
    pub input_flag: Option<PathBuf>,
    /// The archive file or layout directory; `-` or none: standard input.
    #[arg(value_name = "FILE|DIR", conflicts_with = "input_flag")]
    pub input: Option<PathBuf>,
}

/// `peapod image save`.
#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Where to write the archive (followed if a link; written into if not a regular file);
    /// `-` or none: standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The image.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `peapod image import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The root file system: a tar (plain, gzip or zstd) or a directory.
    #[arg(value_name = "ROOTFS.tar|DIR")]
    pub source: PathBuf,
    /// The new image's name.
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
}

impl Command {
    /// Whether the command starts a process in a container, which must then not be able to
    /// reach the peapod binary (see `sealed.rs`).
    /// How many descriptors after stdio the caller hands to the container (`--preserve-fds`).
    pub(crate) fn preserve_fds(&self) -> u32 {
        match self {
            Command::Create(args) => args.preserve_fds,
            Command::Exec(args) => args.preserve_fds,
            _ => 0,
        }
    }

    /// The container ids a person gave, which may be unique prefixes of generated ids
    /// (`Runtime::resolve` turns them into whole ids before the command runs). Not those of
    /// `run`, `create` and the internal commands, which name a container to make or are given
    /// whole ids by peapod itself; not `inspect`'s, which may be images.
    pub(crate) fn container_ids_mut(&mut self) -> Vec<&mut String> {
        match self {
            Command::Start(a) => a.ids.iter_mut().collect(),
            Command::State(a) | Command::Pause(a) | Command::Resume(a) => vec![&mut a.id],
            Command::Kill(a) => vec![&mut a.id],
            Command::Delete(a) => vec![&mut a.id],
            Command::Exec(a) => vec![&mut a.id],
            Command::Ps(a) => a.id.iter_mut().collect(),
            Command::Update(a) => vec![&mut a.id],
            Command::Events(a) => vec![&mut a.id],
            Command::Explain(a) => vec![&mut a.target],
            Command::Logs(a) => vec![&mut a.id],
            Command::Port(a) => vec![&mut a.id],
            Command::Wait(a) => a.ids.iter_mut().collect(),
            Command::Stop(a) | Command::Restart(a) => a.ids.iter_mut().collect(),
            Command::Rm(a) => a.ids.iter_mut().collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn enters_a_container(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Create(_)
                | Command::Exec(_)
                | Command::Restart(_)
                | Command::Monitor(_)
                | Command::Pod(PodCommand::Monitor(_))
                // A played pod's preStop hooks exec in its containers.
                | Command::Pod(PodCommand::Stop(_) | PodCommand::Rm(_) | PodCommand::Play(_))
        )
    }
}

/// `peapod pull`: the flags of the `peapod-pull` binary, which does the work.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The image: NAME[:TAG] or NAME@sha256:DIGEST (`busybox` is
    /// docker.io/library/busybox:latest).
    pub reference: String,
    #[command(flatten)]
    pub options: crate::pull::PullOptions,
}

/// A container id argument.
#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The container id.
    pub id: String,
}

/// Commands on one or more containers (`wait`).
#[derive(Debug, Args)]
pub(crate) struct IdsArgs {
    /// The container ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `peapod start`: runc's of one created container; docker's of `run -d` containers.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// The container ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// How `logs` and `pod logs` read a log.
#[derive(Debug, Args)]
pub(crate) struct LogReadArgs {
    /// Keep printing what it writes, until it has exited.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all": every one).
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_tail)]
    pub tail: Option<usize>,
    /// Only lines since this time: RFC 3339 (2026-12-06T14:00:00Z), seconds since the epoch,
    /// or a duration ago (10m, 90s, 2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print each line's timestamp before it.
    #[arg(short, long)]
    pub timestamps: bool,
}

/// `peapod logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    pub read: LogReadArgs,
    /// The container id.
    pub id: String,
}

fn parse_tail(text: &str) -> Result<usize, String> {
    match text {
        "all" => Ok(usize::MAX),
        _ => text
            .parse()
            .map_err(|_| format!("expected a number of lines or \"all\", not {text:?}")),
    }
}

/// `peapod stop`.
#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub time: u64,
    /// The container ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `peapod rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
    /// The container ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `peapod port`.
#[derive(Debug, Args)]
pub(crate) struct PortArgs {
    /// The container id or name.
    pub id: String,
    /// Only the mapping of this container port (PORT[/tcp|/udp]; tcp when not said).
    #[arg(value_name = "PRIVATE_PORT[/PROTO]", value_parser = crate::ports::parse_exposed)]
    pub private: Option<crate::ports::Exposed>,
}

/// `peapod monitor` (internal; see `peapod_runtime::DetachedLog`).
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Rotate the log at this size (bytes).
    #[arg(long, value_name = "BYTES")]
    pub max_size: u64,
    /// Keep this many log files.
    #[arg(long, value_name = "N")]
    pub max_file: u32,
    /// Remove the container when it has exited.
    #[arg(long)]
    pub rm: bool,
    /// The container id.
    pub id: String,
    /// The container process (a child of this one).
    pub pid: i32,
    /// The read end of its stdout pipe.
    pub stdout_fd: i32,
    /// The read end of its stderr pipe (-1: none, its stdout is a pty's master).
    #[arg(allow_negative_numbers = true)]
    pub stderr_fd: i32,
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
    /// A unix socket to send the pty master of a process.terminal container to.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one named after the container
    /// (the container then possesses the caller's keys).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) into the container.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

/// `peapod exec`, as runc's.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// A JSON file with the OCI `process` to run; otherwise the container's own process, with
    /// the arguments given and the changes below.
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Give the process a terminal: its pty master goes to --console-socket, or, in the
    /// foreground without one, peapod joins it to its own (raw mode, window size passed on).
    #[arg(short, long)]
    pub tty: bool,
    /// Pass the caller's standard input to the process (typed into its terminal with
    /// --tty). Without it, a command given after the id gets /dev/null (docker's exec);
    /// with --process, --detach or --console-socket the process keeps the descriptors
    /// peapod was given, as runc's.
    #[arg(short, long)]
    pub interactive: bool,
    /// A unix socket to send the pty master to (with --tty or process.terminal).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Do not wait for the process: print nothing, exit once it runs.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the new process's PID to this file.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Add an environment variable (KEY=VALUE); repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The working directory in the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Run as UID[:GID] (numbers).
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Add supplementary group ids; repeatable.
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_NAME) to the bounding, effective and permitted sets of the
    /// process (never inheritable or ambient); repeatable.
    #[arg(short, long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Exec even in a paused container: the process starts frozen, and runs on resume.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) into the process.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `peapod kill`.
#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// Signal every process of the container, not only its first.
    #[arg(short, long)]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// The signal: a name (TERM or SIGTERM) or a number (default: the container's image's
    /// StopSignal, else SIGTERM).
    pub signal: Option<String>,
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

/// `peapod ps`: docker's with no id, runc's with one.
#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// The output format.
    #[arg(short, long, default_value = "table")]
    pub format: Format,
    /// Without an ID: every container, not only running ones.
    #[arg(short, long, conflicts_with = "id")]
    pub all: bool,
    /// Without an ID: only the (short) ids.
    #[arg(short, long, conflicts_with = "id")]
    pub quiet: bool,
    /// Without an ID: whole ids and commands.
    #[arg(long, conflicts_with = "id")]
    pub no_trunc: bool,
    /// One container: its processes, as runc lists them.
    pub id: Option<String>,
    /// Arguments for ps(1) in table format, with an ID (default -ef).
    #[arg(last = true, requires = "id")]
    pub ps_args: Vec<String>,
}

/// `peapod inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Only this kind of object.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<InspectType>,
    /// Containers (id, unique prefix or name) or images (name[:tag], name@sha256:..., id).
    #[arg(required = true, value_name = "ID|IMAGE")]
    pub targets: Vec<String>,
}

/// `peapod inspect --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectType {
    /// A container.
    Container,
    /// An image.
    Image,
}

/// `peapod update`, as runc's: each flag given changes that limit and no other.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// A JSON file (or - for stdin) with the OCI linux.resources to apply; with other flags,
    /// they override its fields.
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// The memory limit in bytes (suffixes k, m, g; -1 for none).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// The memory soft limit in bytes.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap in bytes (-1 for no swap limit).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// The most tasks (processes and threads) the container may have (0 or -1: no limit).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// CPU CFS quota in microseconds per period (-1: none).
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPU shares, a relative weight (v2: converted to cpu.weight).
    #[arg(long, visible_alias = "cpu-share", value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// The CPUs the container may run on (0-3, 0,1).
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// The memory nodes the container may use.
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// The block IO weight (10 to 1000).
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// The container id.
    pub id: String,
}

/// `peapod completion`.
#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `peapod man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The directory to write `peapod.1`, `peapod-run.1`, ... into.
    pub dir: std::path::PathBuf,
}

/// `peapod explain`.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:\n  peapod explain --why web")]
pub(crate) struct ExplainArgs {
    /// `table` (text) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Add a plain sentence on what each isolation means.
    #[arg(long)]
    pub why: bool,
    /// List the container's mount table too.
    #[arg(long)]
    pub mounts: bool,
    /// A container id or a pod name.
    pub target: String,
}

/// `peapod events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Print the container's stats once and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print stats while streaming (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// The container id.
    pub id: String,
}

/// A size in bytes: a number with an optional k, m, g or t suffix (powers of 1024, with or
/// without a trailing b or ib), or -1 for no limit.
pub(crate) fn parse_size(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: expected a size such as 64m, 1g or 1048576")),
    };
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 64m, 1g or 1048576"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// A duration: a number with an ms, s or m suffix.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 500ms, 5s or 1m");
    let (number, scale_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(bad());
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    match n.saturating_mul(scale_ms) {
        0 => Err(format!("{s:?}: must be more than zero")),
        ms => Ok(std::time::Duration::from_millis(ms)),
    }
}

/// `--cpus`: a positive number of CPUs, as quota per 100 ms period.
fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if (0.01..=1024.0).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?}: expected a number of CPUs from 0.01, such as 0.5 or 2"
        )),
    }
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
    /// A unix socket to send the pty master of a process.terminal container to.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Give the command a terminal: in the foreground without --console-socket, peapod joins
    /// it to its own (raw mode, window size passed on).
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open: what a foreground run always does (the container reads the caller's
    /// standard input, typed into its terminal with --tty, as runc's run); for Docker's
    /// command lines (`run -it`).
    #[arg(short, long)]
    pub interactive: bool,
    /// Keep the caller's session keyring instead of a new one named after the container
    /// (the container then possesses the caller's keys).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// A name for the container (letters, digits, '_', '.', '-'); the default host name.
    #[arg(long, value_name = "ID", value_parser = parse_name)]
    pub name: Option<String>,
    /// The container's host name (default: the name, or "peapod").
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Set an environment variable in the container (KEY alone: this shell's value of it,
    /// and unset in the container when this shell has none).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Read environment variables from a file: KEY=VALUE lines (KEY alone as -e KEY), blank
    /// lines and # comments skipped; -e comes after it.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// The working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR", value_parser = parse_inside_path)]
    pub workdir: Option<PathBuf>,
    /// Bind-mount a host path (/abs or ./rel) into the container, read-only with ":ro";
    /// or CTR alone: an anonymous volume, removed with the container (with an image).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]|CTR", value_parser = parse_volume)]
    pub volumes: Vec<VolumeArg>,
    /// Mount a host path (type=bind,source=HOST,target=CTR[,readonly]) or a tmpfs
    /// (type=tmpfs,target=CTR[,tmpfs-size=SIZE][,tmpfs-mode=MODE]), as docker's --mount.
    #[arg(long = "mount", value_name = "type=bind|tmpfs,...", value_parser = parse_mount)]
    pub mounts: Vec<MountArg>,
    /// Mount a tmpfs at PATH (options comma-separated; default noexec,nosuid,nodev, as
    /// docker's).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]", value_parser = parse_tmpfs)]
    pub tmpfs: Vec<Tmpfs>,
    /// Make the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// The network: a new namespace with only lo (none, the default), the host's (host), or
    /// a new namespace on this CNI network (as a pod's: an IP, /etc files, --publish); with
    /// -p and no network, the default network peapod (as root; rootless: pasta, else
    /// slirp4netns, the user-mode networks).
    #[arg(
        long,
        visible_alias = "network",
        value_name = "none|host|NAME|pasta|slirp4netns"
    )]
    pub net: Option<PodNetwork>,
    /// Publish a port of the container on the host (on --net NAME, else on the default
    /// network peapod; as root).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]"
    )]
    pub publish: Vec<PortMapping>,
    /// Publish every port the image exposes (its ExposedPorts) and --expose gives, each on a
    /// free host port of the ephemeral range (`peapod port ID` shows which), as -p does.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// A port the container serves (PORT[/tcp|/udp], or a range FROM-TO), which -P
    /// publishes; repeatable.
    #[arg(long = "expose", value_name = "PORT[/PROTO]", value_parser = crate::ports::parse_expose)]
    pub expose: Vec<Vec<crate::ports::Exposed>>,
    #[command(flatten)]
    pub cni: CniArgs,
    /// Keep the host's namespaces of these kinds (comma-separated: net, ipc, uts, pid, cgroup).
    #[arg(long, value_name = "NS,...", value_delimiter = ',', value_parser = parse_shareable)]
    pub share: Vec<Namespace>,
    /// Run peapod-init as PID 1 with CMD under it, to reap zombies and forward signals.
    #[arg(long)]
    pub init: bool,
    /// The static peapod-init to use (default: `peapod-init` beside the peapod binary).
    #[arg(long, value_name = "FILE", requires = "init")]
    pub init_path: Option<PathBuf>,
    /// Add a capability to Docker's default 14 (NET_ADMIN or CAP_NET_ADMIN; ALL for every one).
    #[arg(long = "cap-add", value_name = "CAP", value_parser = parse_capability)]
    pub cap_add: Vec<CapName>,
    /// Drop a capability from Docker's default 14 (ALL: keep only those of --cap-add).
    #[arg(long = "cap-drop", value_name = "CAP", value_parser = parse_capability)]
    pub cap_drop: Vec<CapName>,
    /// Run as UID[:GID], or NAME[:GROUP] from the rootfs's /etc/passwd and /etc/group.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]", value_parser = parse_user)]
    pub user: Option<UserArg>,
    /// The user namespace: host (root: none, its default; rootless: the default, you as
    /// root and your subordinate ranges above), or keep-id (rootless, with --rootfs: your
    /// uid and gid as themselves, the ranges around them, the command run as you).
    #[arg(long, value_name = "host|keep-id", value_parser = peapod_runtime::userns::parse_userns)]
    pub userns: Option<peapod_runtime::userns::UserNs>,
    /// seccomp=FILE (an OCI or a Docker profile) or seccomp=unconfined (default: podman's
    /// profile, /usr/share/containers/seccomp.json, or peapod's built-in one);
    /// no-new-privileges[=true|false] (default true).
    #[arg(long = "security-opt", value_name = "OPT", value_parser = parse_security_opt)]
    pub security_opt: Vec<SecurityOpt>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Set a namespaced kernel parameter in the container (net.*, kernel.shm*, ...);
    /// repeatable.
    #[arg(long = "sysctl", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub sysctls: Vec<(String, String)>,
    /// Set a resource limit: nofile, nproc, core, stack, memlock, ... (-1 or unlimited for
    /// none; HARD defaults to SOFT); repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    pub ulimits: Vec<Ulimit>,
    /// Give the container a host device (PERMS: some of r, w, m; default rwm); repeatable.
    #[arg(long = "device", value_name = "HOST[:CONTAINER[:PERMS]]", value_parser = parse_device)]
    pub devices: Vec<Device>,
    /// Set a label, one of the container's annotations (`peapod state` shows them);
    /// repeatable.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Its own /etc/hosts (--add-host) and /etc/resolv.conf (--dns, --dns-search); on a CNI
    /// network, its network's files, as a pod's.
    #[command(flatten)]
    pub dns: DnsArgs,
    /// Run the container in this pod: it joins the pod's shared namespaces.
    #[arg(long, value_name = "POD", conflicts_with_all = ["share", "net"])]
    pub pod: Option<String>,
    /// Replace the image's Entrypoint (and drop its Cmd); "" clears it.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["rootfs", "bundle"])]
    pub entrypoint: Option<String>,
    /// When to pull the image: missing (when not in the store), always, or never.
    #[arg(long, value_name = "WHEN", default_value = "missing", conflicts_with_all = ["rootfs", "bundle"])]
    pub pull: crate::pull::PullPolicy,
    /// Remove the container when it exits (what a foreground run always does; with
    /// --detach, its monitor removes it).
    #[arg(long)]
    pub rm: bool,
    /// With --detach: start the container again when it exits: no (the default),
    /// on-failure[:N] (when its status is not 0, at most N times), always or unless-stopped
    /// (until `stop` or `rm`).
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: peapod_runtime::RestartPolicy,
    /// With --detach: max-size=SIZE (rotate the log at SIZE; default 10m) or max-file=N
    /// (keep N files; default 1, in a pod the pod's: 5 unless its --log-opt says).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// IMAGE [CMD [ARG...]]; with --rootfs DIR, CMD [ARG...] (after --); with a bundle
    /// (--bundle B, or a config.json in the current directory and one argument), the
    /// container ID.
    #[arg(value_name = "IMAGE|ID", trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// `--memory`, `--cpus` and `--pids-limit`: of one container (`run`), or of a whole pod, its
/// containers together (`pod create`).
#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// Limit the memory (bytes; suffixes k, m, g: 64m).
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<i64>,
    /// Limit the CPU time to this many CPUs (0.5: half of one).
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Limit the number of tasks (processes and threads).
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,
}

impl LimitArgs {
    /// The limits these flags give.
    pub(crate) fn limits(&self) -> peapod_runtime::flags::Limits {
        peapod_runtime::flags::Limits {
            memory: self.memory,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
        }
    }
}

/// `peapod pod ...`.
// Parsed once per process, as `Command`: the size of `create`'s flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum PodCommand {
    /// Create a pod: an infra process holding new shared namespaces.
    #[command(after_long_help = "Example:\n  peapod pod create --hostname web --memory 256m web")]
    Create(PodCreateArgs),
    /// List pods.
    #[command(
        alias = "ls",
        after_long_help = "Example:\n  peapod pod list --format json"
    )]
    List(ListArgs),
    /// List a pod's containers, their status and host PIDs, and the shared namespaces.
    #[command(after_long_help = "Example:\n  peapod pod ps --format json web")]
    Ps(PodPsArgs),
    /// Print a pod in detail as JSON: `pod ps --format json` (readiness, restarts, last
    /// probe failure of each container).
    #[command(after_long_help = "Example:\n  peapod pod inspect web")]
    Inspect(PodNameArg),
    /// Stop a pod's containers (SIGTERM, then SIGKILL after --timeout) and its infra process.
    #[command(after_long_help = "Example:\n  peapod pod stop --timeout 5 web")]
    Stop(PodStopArgs),
    /// Remove a pod: its containers, infra process, pinned namespaces and state.
    #[command(alias = "remove")]
    #[command(after_long_help = "Example:\n  peapod pod rm -f web")]
    Rm(PodRmArgs),
    /// Print the logs of a pod's detached containers.
    #[command(after_long_help = "Example:\n  peapod pod logs web server")]
    Logs(PodLogsArgs),
    /// Run the pods of Kubernetes manifests (or remove them with --down).
    #[command(
        after_long_help = "Example:\n  peapod pod play pod.yaml\n  peapod pod play --replace app.yaml\n  peapod pod play --down pod.yaml"
    )]
    Play(PodPlayArgs),
    /// Supervise a played pod's containers (started by `pod play`).
    #[command(hide = true)]
    Monitor(PodNameArg),
}

/// A pod name argument.
#[derive(Debug, Args)]
pub(crate) struct PodNameArg {
    /// The pod's name.
    pub name: String,
}

/// `peapod pod create`.
#[derive(Debug, Args)]
pub(crate) struct PodCreateArgs {
    /// The pod's host name (default: its name).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// The namespaces the pod's containers share (net, ipc, uts, pid).
    #[arg(long, value_name = "NS,...", value_delimiter = ',', value_parser = parse_pod_share,
          default_value = "net,ipc,uts")]
    pub share: Vec<Namespace>,
    /// A label; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub labels: Vec<String>,
    /// The static peapod-init to run as the infra process (default: beside peapod).
    #[arg(long, value_name = "FILE")]
    pub init_path: Option<PathBuf>,
    // The limits of the pod's cgroup, which its containers' cgroups are below.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The pod's network: a CNI network's name, none (only lo) or host (default: the
    /// network peapod, written on first use, as root); rootless: pasta or slirp4netns, a
    /// user-mode network (default: pasta where installed, else slirp4netns, else none).
    #[arg(long, value_name = "NAME|none|host|pasta|slirp4netns")]
    pub network: Option<PodNetwork>,
    /// Publish a port of the pod on the host (through the network's portmap plugin).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]"
    )]
    pub publish: Vec<PortMapping>,
    /// Ask the network for this address.
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub cni: CniArgs,
    #[command(flatten)]
    pub log: PodLogOptArgs,
    /// The user namespace of the pod's containers: host (the default) or keep-id (rootless,
    /// containers with --rootfs: your uid and gid as themselves, run as you).
    #[arg(long, value_name = "host|keep-id", value_parser = peapod_runtime::userns::parse_userns)]
    pub userns: Option<peapod_runtime::userns::UserNs>,
    /// The pod's name.
    pub name: String,
}

/// `--log-opt` of a pod: the limits of its detached containers' logs.
#[derive(Debug, Args)]
pub(crate) struct PodLogOptArgs {
    /// max-size=SIZE (rotate each container's log at SIZE; default 10m, the kubelet's
    /// containerLogMaxSize) or max-file=N (keep N files; default 5, its
    /// containerLogMaxFiles); repeatable.
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
}

/// `--dns`, `--dns-search` and `--add-host`: what the pod's `/etc/resolv.conf` and
/// `/etc/hosts` say.
#[derive(Debug, Args)]
pub(crate) struct DnsArgs {
    /// A name server for /etc/resolv.conf, instead of the host's; repeatable.
    #[arg(long = "dns", value_name = "IP")]
    pub servers: Vec<IpAddr>,
    /// A search domain for /etc/resolv.conf, instead of the host's; repeatable.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub search: Vec<String>,
    /// An extra line of /etc/hosts; repeatable.
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = parse_add_host)]
    pub add_hosts: Vec<(String, IpAddr)>,
}

/// Where the CNI networks, plugins and attachment cache are.
#[derive(Debug, Args)]
pub(crate) struct CniArgs {
    /// A directory of CNI configuration lists (*.conflist); repeatable, searched in order
    /// (default /etc/peapod/net.d; add /etc/cni/net.d to use the standard one too).
    #[arg(
        long = "cni-config-dir",
        value_name = "DIR",
        env = "PEAPOD_CNI_CONFIG_DIR",
        value_delimiter = ':'
    )]
    pub config_dirs: Vec<PathBuf>,
    /// A directory of CNI plugins; repeatable (default /usr/lib/cni, /opt/cni/bin).
    #[arg(
        long = "cni-plugin-dir",
        value_name = "DIR",
        env = "PEAPOD_CNI_PLUGIN_DIR",
        value_delimiter = ':'
    )]
    pub plugin_dirs: Vec<PathBuf>,
    /// Where the result of each attachment is kept until DEL (default /var/lib/peapod/cni).
    #[arg(
        long = "cni-cache-dir",
        value_name = "DIR",
        env = "PEAPOD_CNI_CACHE_DIR"
    )]
    pub cache_dir: Option<PathBuf>,
    /// How the default network `peapod` is attached: `fast` (in-process: netlink and one
    /// nftables batch, while its list is the one peapod wrote) or `cni` (its plugins).
    #[arg(
        long = "network-backend",
        value_name = "fast|cni",
        env = "PEAPOD_NETWORK_BACKEND",
        default_value = "fast"
    )]
    pub backend: peapod_pod::peapod_net::Backend,
}

impl CniArgs {
    /// The CNI settings these flags give.
    pub(crate) fn cni(&self) -> peapod_pod::peapod_net::Cni {
        let mut cni = peapod_pod::peapod_net::Cni::default();
        if !self.config_dirs.is_empty() {
            cni.config_dirs.clone_from(&self.config_dirs);
        }
        if !self.plugin_dirs.is_empty() {
            cni.plugin_dirs.clone_from(&self.plugin_dirs);
        }
        if let Some(dir) = &self.cache_dir {
            cni.cache_dir.clone_from(dir);
        }
        cni.backend = self.backend;
        cni
    }
}

fn parse_add_host(s: &str) -> Result<(String, IpAddr), String> {
    // NAME:IP, where an IPv6 address has colons of its own.
    let (name, ip) = s.split_once(':').ok_or("expected NAME:IP")?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    match (name.is_empty(), ip.parse()) {
        (false, Ok(ip)) => Ok((name.to_owned(), ip)),
        _ => Err(format!("expected NAME:IP, got {s:?}")),
    }
}

/// `peapod pod ps`.
#[derive(Debug, Args)]
pub(crate) struct PodPsArgs {
    /// The output format.
    #[arg(short, long, default_value = "table")]
    pub format: Format,
    /// The pod's name.
    pub name: String,
}

/// `peapod pod stop`.
#[derive(Debug, Args)]
pub(crate) struct PodStopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL (default: the manifest's
    /// terminationGracePeriodSeconds, else 10).
    #[arg(short, long, value_name = "S")]
    pub timeout: Option<u64>,
    /// The pod's name.
    pub name: String,
}

/// `peapod pod rm`.
#[derive(Debug, Args)]
pub(crate) struct PodRmArgs {
    /// Remove a running pod too, killing its processes.
    #[arg(short, long)]
    pub force: bool,
    /// The pod's name.
    pub name: String,
    /// Where its network's attachment is cached (for a pod whose record is corrupt).
    #[command(flatten)]
    pub cni: CniArgs,
}

/// `peapod pod logs`.
#[derive(Debug, Args)]
pub(crate) struct PodLogsArgs {
    /// Only this container (its name in the manifest, or its id).
    #[arg(short = 'c', long = "container", value_name = "NAME")]
    pub container_flag: Option<String>,
    /// (`--follow` needs one container; `--tail` counts each container's lines.)
    #[command(flatten)]
    pub read: LogReadArgs,
    /// The log of the container's run before the current one (a played pod's restarted
    /// container), as kubectl logs --previous.
    #[arg(short, long, conflicts_with = "follow")]
    pub previous: bool,
    /// The pod's name.
    pub name: String,
    /// Only this container, as -c says.
    #[arg(conflicts_with = "container_flag")]
    pub container: Option<String>,
}

/// `peapod pod play`.
#[derive(Debug, Args)]
pub(crate) struct PodPlayArgs {
    /// Stop (SIGTERM, SIGKILL after terminationGracePeriodSeconds) and remove the
    /// manifest's pod instead.
    #[arg(long)]
    pub down: bool,
    /// Remove the pods of the same names (and the file's controllers' pods) first.
    #[arg(long, conflicts_with = "down")]
    pub replace: bool,
    /// A file of ConfigMaps and Secrets for the pods' env and volumes (repeatable).
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pub configmap: Vec<PathBuf>,
    /// The static peapod-init to run as the infra process (default: beside peapod).
    #[arg(long, value_name = "FILE")]
    pub init_path: Option<PathBuf>,
    /// The pod's network unless the manifest says hostNetwork (default: peapod as root;
    /// rootless: pasta, else slirp4netns).
    #[arg(long, value_name = "NAME|none|host|pasta|slirp4netns")]
    pub network: Option<PodNetwork>,
    #[command(flatten)]
    pub cni: CniArgs,
    #[command(flatten)]
    pub log: PodLogOptArgs,
    /// The manifest (YAML): Pods, ConfigMaps, Secrets, Deployments, ReplicaSets,
    /// StatefulSets, DaemonSets and Jobs, as `kubectl apply -f` takes them.
    pub file: PathBuf,
}

fn parse_pod_share(s: &str) -> Result<Namespace, String> {
    match parse_shareable(s)? {
        ns @ (Namespace::Net | Namespace::Ipc | Namespace::Uts | Namespace::Pid) => Ok(ns),
        ns => Err(format!(
            "{ns} cannot be shared in a pod (net, ipc, uts, pid)"
        )),
    }
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

/// `KEY=VALUE`, or `KEY` alone: the caller's value of it, as Docker takes it.
fn parse_env(s: &str) -> Result<String, String> {
    let key = s.split('=').next().unwrap_or_default();
    if key.is_empty() {
        return Err("expected KEY=VALUE or KEY".into());
    }
    Ok(s.to_owned())
}

fn parse_inside_path(s: &str) -> Result<PathBuf, String> {
    if s.starts_with('/') {
        Ok(PathBuf::from(s))
    } else {
        Err("must be an absolute path inside the container".into())
    }
}

fn parse_shareable(s: &str) -> Result<Namespace, String> {
    // Only the kinds named here can be shared: the parser's own message would list mnt and
    // user too.
    const SHAREABLE: &str = "pid, ipc, uts, net, cgroup, time";
    let ns: Namespace = s
        .parse()
        .map_err(|_| format!("unknown namespace {s:?} (expected one of: {SHAREABLE})"))?;
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
    fn sizes_and_durations() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("12q").is_err());
        assert!(parse_size("m").is_err());
        assert_eq!(
            parse_duration("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_cpus("0").is_err());
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
    }

    #[test]
    fn every_subcommand_builds_and_globals_follow_a_deferred_one() {
        use clap::{CommandFactory, Parser};
        // Builds the deferred subcommands too, and checks what clap checks of each.
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "peapod",
            "--root",
            "/r",
            "run",
            "--debug",
            "--rootfs",
            "/x",
            "--",
            "/bin/true",
        ])
        .expect("parses");
        assert_eq!(cli.global.root.as_deref(), Some(std::path::Path::new("/r")));
        assert!(cli.global.debug, "a global flag after the subcommand");
        assert!(matches!(cli.command, Command::Run(_)));
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
