//! `peapod`: the command line. Parses arguments ([`args`]), turns them into a checked
//! configuration, and hands that to `peapod-container`. Errors end here as one line on
//! stderr and an exit status: 2 for bad usage, 125 for a runtime failure, 126 and 127 when
//! the entrypoint cannot run or does not exist, else the container's own status.

mod args;
mod run;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => exit_on_usage_error(err),
    };
    init_logging(cli.debug);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("peapod: {:#}", err.error);
            std::process::exit(err.code);
        }
    }
}

/// An error with the exit status it ends the program with.
#[derive(Debug)]
pub(crate) struct Failure {
    error: anyhow::Error,
    code: i32,
}

impl Failure {
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            error: error.into(),
            code: 2,
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
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim_start_matches("error: ").to_owned())
        .or(rendered)
        .unwrap_or_else(|| "invalid usage".to_owned());
    eprintln!("peapod: {line} (see 'peapod --help')");
    std::process::exit(2)
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
