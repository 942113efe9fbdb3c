//! What a pull tells the person watching, on stderr: a bar per layer (bytes, rate) when
//! stderr is a terminal, one plain line per blob otherwise (logs, CI), nothing when quiet.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, else plain lines.
    #[default]
    Auto,
    /// Plain lines.
    Lines,
    /// Nothing.
    Quiet,
}

#[derive(Debug)]
pub(crate) enum Progress {
    Bars(MultiProgress),
    Lines,
    Quiet,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode) -> Progress {
        match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            }
            ProgressMode::Auto | ProgressMode::Lines => Progress::Lines,
            ProgressMode::Quiet => Progress::Quiet,
        }
    }

    /// A line of its own (above the bars).
    pub(crate) fn line(&self, text: &str) {
        match self {
            Progress::Bars(bars) => {
                // The line goes to the terminal even if the bars cannot be drawn.
                if bars.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            Progress::Lines => eprintln!("{text}"),
            Progress::Quiet => {}
        }
    }

    /// Starts reporting one blob of `size` bytes.
    pub(crate) fn blob(&self, digest: &str, size: u64) -> BlobProgress {
        let name = short(digest);
        let bar = match self {
            Progress::Bars(bars) => {
                let bar = bars.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(name.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                Some(bar)
            }
            _ => None,
        };
        BlobProgress {
            bar,
            lines: matches!(self, Progress::Lines),
            name,
            started: Instant::now(),
            bytes: 0,
        }
    }
}

/// The progress of one blob's download.
#[derive(Debug)]
pub(crate) struct BlobProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    name: String,
    started: Instant,
    bytes: u64,
}

impl BlobProgress {
    pub(crate) fn advance(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// The blob is complete and verified.
    pub(crate) fn done(self) {
        let seconds = self.started.elapsed().as_secs_f64();
        if let Some(bar) = &self.bar {
            bar.finish();
        } else if self.lines {
            eprintln!(
                "{}: downloaded {} in {seconds:.1} s",
                self.name,
                human(self.bytes)
            );
        }
    }
}

impl Drop for BlobProgress {
    fn drop(&mut self) {
        // A failed download leaves its bar where it stopped instead of a bar that spins on.
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// `sha256:` and the first 12 hex digits, as docker shows blobs.
pub(crate) fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// Bytes for people: `812 B`, `1.4 MB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}
