//! `peapod`: the command line. Parses arguments ([`args`]), turns them into a checked
//! configuration, and hands that to `peapod-container`. Errors end here as one line on
//! stderr (`peapod: error: ...`) and an exit status: 2 for bad usage, 1 for a container that
//! does not exist or is not running (runc's status and wording, which containerd's shim
//! matches), 125 for any other runtime failure, 126 and 127 when the entrypoint cannot run or
//! does not exist, else the container's own status.

mod args;
mod bundle;
mod cgroups;
mod context;
mod create;
mod delete;
mod docs;
mod events;
mod exec;
mod explain;
mod init;
mod kill;
mod leftovers;
mod pause;
mod pod;
mod ps;
mod run;
mod sealed;
mod seccomp_profile;
mod security;
mod spec;
mod start;
mod state;
mod tty;
mod update;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Context;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => exit_on_usage_error(err),
    };
    // Before peapod opens anything (the log file, the state lock): see the function.
    if let Err(e) = peapod_container::reserve_preserved_fds(cli.command.preserve_fds()) {
        eprintln!("peapod: {e}");
        std::process::exit(125);
    }
    context::init_logging(&cli.global);
    let result = Context::new(&cli.global).and_then(|mut ctx| {
        if cli.command.enters_a_container() {
            ctx.entrypoint_guard = sealed::entrypoint_guard().map_err(Failure::runtime)?;
            // Beside the containers, under a name no container id can take.
            peapod_container::use_seccomp_cache(&ctx.store_root.join(".seccomp"));
        }
        dispatch(&ctx, cli.command)
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let message = one_line(&err.error);
            // containerd and podman read the last error from the --log file.
            if cli.global.log.is_some() {
                tracing::error!("{message}");
            }
            // "error" in the line, as runc's `ERRO` and wrapping tools look for it.
            eprintln!("peapod: error: {message}");
            std::process::exit(err.code);
        }
    }
}

/// Runs one command.
fn dispatch(ctx: &Context, command: Command) -> Result<i32, Failure> {
    match command {
        Command::Run(args) => run::run(ctx, args),
        Command::Create(args) => create::run(ctx, args),
        Command::Start(args) => start::run(ctx, &args.id),
        Command::State(args) => state::state(ctx, &args.id),
        Command::Kill(args) => kill::run(ctx, args),
        Command::Delete(args) => delete::run(ctx, args),
        Command::List(args) => state::list(ctx, args),
        Command::Exec(args) => exec::run(ctx, args),
        Command::Ps(args) => ps::run(ctx, args),
        Command::Spec(args) => spec::spec(args),
        Command::Features => spec::features(),
        Command::Pause(args) => pause::pause(ctx, &args.id),
        Command::Resume(args) => pause::resume(ctx, &args.id),
        Command::Update(args) => update::run(ctx, args),
        Command::Events(args) => events::run(ctx, args),
        Command::Explain(args) => explain::run(ctx, args),
        Command::Completion(args) => docs::completion(args.shell),
        Command::Man(args) => docs::man(&args.dir),
        Command::Pod(command) => pod::dispatch(ctx, command),
    }
}

/// The error and its causes on one line, each cause once: library errors already quote
/// their OS error in their message, so a cause that is already there is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// An error with the exit status it ends the program with.
#[derive(Debug)]
pub(crate) struct Failure {
    error: anyhow::Error,
    code: i32,
}

impl Failure {
    /// Bad usage: exit status 2.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            error: error.into(),
            code: 2,
        }
    }

    /// The container is not running (its process has exited, or it never started): runc's
    /// words and exit status 1. containerd's shim matches "container not running" in our
    /// stderr to tell an exited process (NotFound: done) from a failed kill.
    pub(crate) fn not_running() -> Failure {
        Failure {
            error: anyhow::anyhow!("container not running"),
            code: 1,
        }
    }

    /// A failure of peapod itself: exit status 125.
    pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            error: error.into(),
            code: 125,
        }
    }
}

impl From<peapod_state::Error> for Failure {
    fn from(err: peapod_state::Error) -> Failure {
        match err {
            peapod_state::Error::InvalidId { .. } => Failure::usage(err),
            // "does not exist" is what containerd's shim matches (NotFound); runc exits 1.
            peapod_state::Error::NotFound(_) => Failure {
                error: err.into(),
                code: 1,
            },
            other => Failure::runtime(other),
        }
    }
}

impl From<peapod_container::Error> for Failure {
    fn from(err: peapod_container::Error) -> Failure {
        Failure {
            code: err.exit_code(),
            error: err.into(),
        }
    }
}

/// Prints help and version as clap does; any other parse error as one line, exit status 2.
fn exit_on_usage_error(err: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || matches!(
        err.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit()
    }
    let rendered = err.kind().as_str().map(str::to_owned);
    let text = err.to_string();
    // The first paragraph: the message, and what it lists (e.g. the missing arguments).
    let paragraph: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let line = Some(paragraph.join(" ").trim_start_matches("error: ").to_owned())
        .filter(|l| !l.is_empty())
        .or(rendered)
        .unwrap_or_else(|| "invalid usage".to_owned());
    eprintln!("peapod: error: {line} (see 'peapod --help')");
    std::process::exit(2)
}
