//! `peapod`: the command line. Parses arguments ([`args`]), makes one call of
//! `peapod-runtime` (containers), `peapod-pod` (pods) or `peapod-image` (images) per command, and prints the result. Errors end here as one line on
//! stderr (`peapod: error: ...`) and an exit status: 2 for bad usage, 1 for a container that
//! does not exist or is not running (runc's status and wording, which containerd's shim
//! matches), 125 for any other runtime failure, 126 and 127 when the entrypoint cannot run or
//! does not exist, else the container's own status.

mod args;
mod context;
mod docs;
mod explain;
mod globals;
mod image;
mod images;
mod inspect;
mod log;
mod names;
mod oci;
mod output;
mod pod;
mod ports;
mod ps;
mod pull;
mod unknown;

use clap::Parser;
use peapod_runtime::{Error, Runtime};

use crate::args::{Cli, Command};
use crate::globals::GlobalArgs;
use crate::output::outln;

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
    globals::init_logging(&cli.global);
    let mut command = cli.command;
    let result = globals::runtime(&cli.global).and_then(|rt| {
        let rt = match command.enters_a_container() {
            true => rt.with_entrypoint_guard()?.with_seccomp_cache(),
            false => rt,
        };
        // Here once for every command, as docker takes ids: a unique prefix of a generated
        // id stands for it (a whole id or a name is found first, without a scan).
        for id in command.container_ids_mut() {
            *id = rt.resolve(id)?;
        }
        dispatch(&rt, &cli.global, command)
    });
    globals::exit(result, &cli.global)
}

/// Whether `command` first removes what killed `peapod` processes left behind (containers
/// whose owner is gone, then pods half-made and the networks of containers that are gone):
/// the commands that make or list containers and pods, not the hot OCI ones (`state`,
/// `start`, `kill`, `exec`) that containerd calls in loops, nor the monitors.
fn reaps(command: &Command) -> bool {
    match command {
        // `pod rm` removes a half-made pod itself, and `pod ps` shows it (`failed`) rather
        // than saying it does not exist.
        Command::Pod(pod) => !matches!(
            pod,
            args::PodCommand::Monitor(_) | args::PodCommand::Rm(_) | args::PodCommand::Ps(_)
        ),
        Command::Run(_) | Command::Create(_) | Command::List(_) | Command::Ps(_) => true,
        Command::Rm(_) => true,
        _ => false,
    }
}

/// Runs one command: one call of the runtime (or the pod library), its result printed.
fn dispatch(rt: &Runtime, global: &GlobalArgs, command: Command) -> Result<i32, Error> {
    let done = |()| 0;
    if reaps(&command) {
        rt.reap_leftovers();
        peapod_pod::reap(rt);
    }
    match command {
        Command::Run(args) => oci::run(rt, global, args),
        Command::Create(args) => oci::create(rt, args),
        Command::Start(args) => oci::start(rt, global, args),
        Command::Finish(args) => {
            let code = rt.finish(&args.id);
            // The network of a foreground `run --net NAME`, which `run` hands on to here.
            peapod_pod::remove_container_network(rt, &args.id)?;
            code
        }
        Command::State(args) => {
            outln!("{}", to_json(&rt.state(&args.id)?)?);
            Ok(0)
        }
        Command::Kill(args) => {
            let signal = match &args.signal {
                Some(signal) => peapod_runtime::parse_signal(signal)?,
                None => rt.stop_signal(&args.id)?,
            };
            rt.kill(&args.id, signal, args.all).map(done)
        }
        Command::Delete(args) => {
            rt.delete(&args.id, args.force)?;
            // The network of a container of `run --net NAME --detach`, if it has one.
            peapod_pod::remove_container_network(rt, &args.id).map(done)
        }
        Command::List(args) => oci::list(rt, args),
        Command::Exec(args) => oci::exec(rt, args),
        Command::Ps(args) => match args.id {
            Some(id) => oci::ps(rt, &id, args.format, args.ps_args),
            None => ps::table(rt, &args),
        },
        Command::Inspect(args) => inspect::run(rt, global, &args),
        Command::Spec(args) => {
            peapod_runtime::write_default_spec(&args.bundle, args.rootless).map(done)
        }
        Command::Features => {
            outln!("{}", to_json(&peapod_runtime::features())?);
            Ok(0)
        }
        Command::Pause(args) => rt.pause(&args.id).map(done),
        Command::Resume(args) => rt.resume(&args.id).map(done),
        Command::Update(args) => oci::update(rt, args),
        Command::Events(args) => {
            let interval = (!args.stats).then_some(args.interval);
            rt.events(&args.id, interval, |event| outln!("{event}"))
                .map(done)
        }
        Command::Explain(args) => explain::run(rt, args),
        Command::Completion(args) => docs::completion(args.shell),
        Command::Man(args) => docs::man(&args.dir),
        Command::Pod(command) => pod::dispatch(rt, global, command),
        Command::Logs(args) => oci::logs(rt, args),
        Command::Wait(args) => oci::wait(rt, args),
        Command::Stop(args) => oci::stop(rt, args),
        Command::Restart(args) => oci::restart(rt, global, args),
        Command::Rm(args) => oci::rm(rt, args),
        Command::Monitor(args) => oci::monitor(rt, args),
        Command::Port(args) => ports::print(rt, &args),
        Command::Images(args) => image::list(&image::store(rt, global)?, &args),
        Command::Rmi(args) => image::remove(&image::store(rt, global)?, &args),
        Command::Tag(args) => image::tag(&image::store(rt, global)?, &args),
        Command::Image(command) => image::dispatch(&image::store(rt, global)?, command),
        Command::Pull(args) => Err(pull::exec(
            &pull::storage_root(global, rt.rootless),
            &args.reference,
            &args.options,
        )),
    }
}

/// `value` as pretty JSON, as every command prints it.
pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|e| Error::runtime(anyhow::anyhow!(e)))
}

/// Prints help and version as clap does; any other parse error as one line, exit status 2.
fn exit_on_usage_error(err: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || matches!(
        err.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit()
    }
    if let Some(hint) = docker_hint(&err) {
        eprintln!("peapod: error: {hint}");
        std::process::exit(2)
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
    let mut line = Some(paragraph.join(" ").trim_start_matches("error: ").to_owned())
        .filter(|l| !l.is_empty())
        .or(rendered)
        .unwrap_or_else(|| "invalid usage".to_owned());
    // clap's near spelling of a subcommand, which its later paragraph gives.
    if let Some(ContextValue::Strings(similar)) = err.get(ContextKind::SuggestedSubcommand) {
        line.push_str(&format!("; did you mean '{}'?", similar.join("' or '")));
    }
    eprintln!("peapod: error: {line} (see 'peapod --help')");
    std::process::exit(2)
}

/// For a subcommand clap does not know: docker's command peapod spells differently or
/// lacks, as one line (see `unknown.rs`).
fn docker_hint(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::InvalidSubcommand {
        return None;
    }
    let Some(ContextValue::String(invalid)) = err.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    let argv: Vec<String> = std::env::args().collect();
    unknown::hint_for(&argv, invalid)
}
