//! The commands' results on standard output. A reader that goes away early (`peapod images |
//! head -1`) ends peapod as it ends any Unix tool: by SIGPIPE, quietly (status 141 in a
//! shell). Rust ignores SIGPIPE and `println!` panics on the broken pipe instead; peapod keeps
//! SIGPIPE ignored everywhere else, so that a CNI plugin or a hook that exits early is an
//! error it reports, not a signal that kills it half-way.

use std::io::Write as _;

/// Writes `text` to standard output; see the module's doc for a broken pipe. Any other write
/// error ends peapod with status 1 and one line on stderr.
pub(crate) fn write(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) else {
        return;
    };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        use nix::sys::signal::{raise, signal, SigHandler, Signal};
        // SAFETY: the default action runs no code of ours in signal context; it ends the
        // process when the signal is raised next.
        if unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.is_ok() {
            let _ = raise(Signal::SIGPIPE);
        }
        std::process::exit(141);
    }
    eprintln!("peapod: error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `println!` through [`write`].
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

#[cfg(test)]
mod tests {
    /// Every result goes through [`super::write`]: a `println!` or `print!` anywhere else in
    /// the command line would panic again on a closed pipe.
    #[test]
    fn nothing_prints_to_stdout_but_through_write() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(&src).expect("src").flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "output.rs") || path.is_dir() {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                let prints = ["println!(", "print!("].iter().any(|m| {
                    code.match_indices(m)
                        .any(|(at, _)| at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric())
                });
                assert!(
                    !prints || code.starts_with("//"),
                    "{}:{}: print through output::write (outln!/out!)",
                    path.display(),
                    i + 1
                );
            }
        }
    }
}
