//! The flags runc takes before the command, what they make (the runtime, the logging) and
//! how a command's error ends the process: shared by `peapod` and `peapod-oci`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use peapod_runtime::{Error, Runtime};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

/// Sends tracing output to stderr, or to `--log FILE`: as plain lines, or with
/// `--log-format json` as runc writes them (`{"level":"error","msg":"...","time":"..."}`, one a
/// line), which containerd and podman parse for the last error.
pub(crate) fn init_logging(global: &GlobalArgs) {
    // `PEAPOD_LOG` takes a level (`debug`) or levels per crate (`peapod_rootfs=trace,warn`):
    // `Targets`, not `EnvFilter`, whose span and field matching would bring a regex engine
    // into the binary for nothing peapod logs.
    let default = if global.debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let filter = std::env::var("PEAPOD_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
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
            .event_format(RuncJson)
            .with_writer(std::sync::Mutex::new(file))
            .finish()
            .with(filter)
            .init(),
        (Some(file), LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .finish()
            .with(filter)
            .init(),
        // Colour only for a person: conmon and shims pass our stderr on as it is.
        (None, _) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .init(),
    }
}

/// runc's JSON log lines (logrus's format): `level` in lower case (`warning` for WARN),
/// `msg`, and `time` in RFC 3339. go-runc and podman read `msg` of the last `error` line.
struct RuncJson;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for RuncJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut line = serde_json::Map::new();
        line.insert("level".into(), level.into());
        line.insert("msg".into(), fields.message.into());
        line.insert("time".into(), peapod_state::rfc3339(now).into());
        for (key, value) in fields.others {
            line.entry(key).or_insert(value.into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// The message of an event and its other fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &tracing::field::Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.others.push((field.name().to_owned(), value));
        }
    }
}
