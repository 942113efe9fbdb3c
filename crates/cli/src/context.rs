//! What every command shares: the runtime the global flags ask for, and logging.

use std::path::PathBuf;

use peapod_runtime::{Error, Runtime};

use crate::args::{GlobalArgs, LogFormat, Rootless};

/// The runtime the global flags ask for: its state root (`--root`, else `/run/peapod` for
/// root and `$XDG_RUNTIME_DIR/peapod` for others) and whether it runs rootless.
pub(crate) fn runtime(global: &GlobalArgs) -> Result<Runtime, Error> {
    if global.systemd_cgroup {
        return Err(Error::usage(anyhow::anyhow!(
            "--systemd-cgroup: the systemd cgroup driver is not supported; use cgroupfs"
        )));
    }
    let euid = nix::unistd::geteuid();
    let rootless = match global.rootless {
        Rootless::Auto => !euid.is_root(),
        Rootless::True => true,
        Rootless::False => false,
    };
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
    Ok(Runtime::new(root, rootless))
}

/// Sends tracing output to stderr, or to `--log FILE`: as plain lines, or with
/// `--log-format json` as runc writes them (`{"level":"error","msg":"...","time":"..."}`, one a
/// line), which containerd and podman parse for the last error.
pub(crate) fn init_logging(global: &GlobalArgs) {
    let default = if global.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            .init(),
        (Some(file), LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        // Colour only for a person: conmon and shims pass our stderr on as it is.
        (None, _) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .with_writer(std::io::stderr)
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
