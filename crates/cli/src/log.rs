//! The log of `peapod`, `peapod-oci` and `peapod-pull`: `tracing` events as lines on stderr,
//! or in a file as plain lines or as runc writes them (`{"level":"error","msg":"...",
//! "time":"..."}`, one a line), which containerd and podman parse for the last error.
//!
//! A subscriber of its own rather than tracing-subscriber's `fmt`: peapod opens no spans and
//! needs only a level per crate (`PEAPOD_LOG`) and these two line formats, and the clients
//! exec `peapod-oci` on every call, where tracing-subscriber's formatter, registry and filter
//! were ~45 kB of the binary.

use std::io::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata};

/// Where the lines go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Plain lines without the time, coloured for a terminal.
    Stderr,
    /// Plain lines with the time.
    Text(std::fs::File),
    /// runc's JSON lines.
    Json(std::fs::File),
}

/// Logs events of `default` level and above (or what `PEAPOD_LOG` asks for: a level,
/// `debug`, or levels per crate, `peapod_rootfs=trace,warn`) to `sink`.
pub(crate) fn init(default: LevelFilter, sink: Sink) {
    let filter = std::env::var("PEAPOD_LOG")
        .ok()
        .and_then(|directives| Filter::parse(&directives))
        .unwrap_or(Filter {
            targets: Vec::new(),
            default,
        });
    let colour =
        matches!(sink, Sink::Stderr) && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = Log {
        filter,
        colour,
        sink: Mutex::new(sink),
    };
    // Only fails when a subscriber is already set: the first one stays.
    let _ = tracing::subscriber::set_global_default(log);
}

/// The levels per target, as tracing-subscriber's `Targets` reads and applies them: the
/// longest target that prefixes an event's wins; without one, `default`.
#[derive(Debug, PartialEq)]
struct Filter {
    /// Longest first.
    targets: Vec<(String, LevelFilter)>,
    default: LevelFilter,
}

impl Filter {
    /// `None` when a directive is not `LEVEL`, `TARGET` or `TARGET=LEVEL`.
    fn parse(directives: &str) -> Option<Filter> {
        let mut filter = Filter {
            targets: Vec::new(),
            default: LevelFilter::OFF,
        };
        for directive in directives.split(',').filter(|d| !d.is_empty()) {
            match directive.split_once('=') {
                Some((target, level)) => filter
                    .targets
                    .push((target.to_owned(), level.parse().ok()?)),
                None => match directive.parse() {
                    Ok(level) => filter.default = level,
                    Err(_) if is_target(directive) => filter
                        .targets
                        .push((directive.to_owned(), LevelFilter::TRACE)),
                    Err(_) => return None,
                },
            }
        }
        filter
            .targets
            .sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
        Some(filter)
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(prefix, _)| target.starts_with(prefix.as_str()))
            .map_or(self.default, |(_, level)| *level)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, level)| *level)
            .fold(self.default, std::cmp::max)
    }
}

/// A Rust module path.
fn is_target(word: &str) -> bool {
    word.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The subscriber.
#[derive(Debug)]
struct Log {
    filter: Filter,
    colour: bool,
    sink: Mutex<Sink>,
}

impl tracing::Subscriber for Log {
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.filter.max())
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.filter.level_for(metadata.target())
    }

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        // A log that cannot be written is not worth failing the command for.
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().write_all(fields.text(level, self.colour).as_bytes()),
            Sink::Text(file) => {
                let line = format!(
                    "{} {}",
                    peapod_state::rfc3339(now()),
                    fields.text(level, false)
                );
                file.write_all(line.as_bytes())
            }
            Sink::Json(file) => file.write_all(fields.runc_json(level).as_bytes()),
        };
    }

    // peapod opens no spans: they are given one id and otherwise ignored.
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Seconds since the epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The message of an event and its other fields, as text.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.others.push((field.name(), value));
        }
    }

    /// `LEVEL message key=value ...` and a newline, the level in colour if asked.
    fn text(&self, level: Level, colour: bool) -> String {
        let mut line = match colour {
            true => format!(
                "\x1b[{}m{level:>5}\x1b[0m {}",
                colour_of(level),
                self.message
            ),
            false => format!("{level:>5} {}", self.message),
        };
        for (key, value) in &self.others {
            line.push_str(&format!(" {key}={value}"));
        }
        line.push('\n');
        line
    }

    /// runc's JSON line (logrus's format): `level` in lower case (`warning` for WARN), `msg`,
    /// and `time` in RFC 3339, then the other fields. go-runc and podman read `msg` of the
    /// last `error` line.
    fn runc_json(&self, level: Level) -> String {
        let level = match level {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut line = serde_json::Map::new();
        line.insert("level".into(), level.into());
        line.insert("msg".into(), self.message.as_str().into());
        line.insert("time".into(), peapod_state::rfc3339(now()).into());
        for (key, value) in &self.others {
            line.entry(*key).or_insert(value.as_str().into());
        }
        format!("{}\n", serde_json::Value::Object(line))
    }
}

/// tracing-subscriber's colours: ANSI SGR codes.
fn colour_of(level: Level) -> &'static str {
    match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        Level::DEBUG => "34",
        Level::TRACE => "35",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peapod_log_reads_a_level_or_levels_per_crate_as_targets_did() {
        let filter =
            Filter::parse("peapod_rootfs=trace,warn,peapod_rootfs::overlay=off").expect("parsed");
        assert_eq!(filter.level_for("peapod_rootfs::mount"), LevelFilter::TRACE);
        assert_eq!(filter.level_for("peapod_rootfs::overlay"), LevelFilter::OFF);
        assert_eq!(filter.level_for("peapod_runtime"), LevelFilter::WARN);
        assert_eq!(filter.max(), LevelFilter::TRACE);
        let only = Filter::parse("peapod_cgroups=debug").expect("parsed");
        assert_eq!(
            only.level_for("peapod_cgroups::systemd"),
            LevelFilter::DEBUG
        );
        assert_eq!(only.level_for("peapod_runtime"), LevelFilter::OFF);
        assert_eq!(
            Filter::parse("DEBUG").map(|f| f.default),
            Some(LevelFilter::DEBUG)
        );
        assert_eq!(
            Filter::parse("peapod_net").map(|f| f.max()),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(Filter::parse("peapod_net=loud"), None);
        assert_eq!(Filter::parse("what ever"), None);
    }

    #[test]
    fn lines_are_plain_text_or_runcs_json() {
        let fields = Fields {
            message: "cannot \"start\"".to_owned(),
            others: vec![("id", "web".to_owned())],
        };
        assert_eq!(
            fields.text(Level::WARN, false),
            " WARN cannot \"start\" id=web\n"
        );
        assert_eq!(
            fields.text(Level::ERROR, true),
            "\x1b[31mERROR\x1b[0m cannot \"start\" id=web\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&fields.runc_json(Level::WARN)).expect("JSON");
        assert_eq!(json["level"], "warning");
        assert_eq!(json["msg"], "cannot \"start\"");
        assert_eq!(json["id"], "web");
        assert!(json["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
