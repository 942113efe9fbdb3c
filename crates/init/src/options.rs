//! Command-line options, parsed by hand.
//!
//! The syntax follows tini's short flags where they overlap (`-s`, `-g`,
//! `-e`, `-p`, `-v`, `-w`), so images that call `tini -g -- cmd` can call
//! `peapod-init -g -- cmd` instead. Like getopt with a leading `+`, parsing
//! stops at the first non-option, so the command's own flags are never
//! mistaken for ours; short flags can be clustered (`-sg`) and values can be
//! attached (`-e143`).

use crate::argv::CStrArray;
use crate::diag::Line;
use crate::signals::Signal;

/// The one-line usage message.
pub const USAGE: &str =
    "usage: peapod-init [-s] [-g] [-w] [-v] [-e CODE]... [-p SIG] [-k SECS] [--] CMD [ARGS...]\n       peapod-init -P|--pause\n       peapod-init --watch PID PATH ARGV0 [ARGS...]\n       peapod-init -h|--help|--version\n";

/// The help text printed by `-h`.
pub const HELP: &str = "\
A tiny PID 1: runs CMD, forwards signals to it, reaps zombies and exits with
CMD's status (128+N when CMD was killed by signal N).

  -s         fail unless it can be a child subreaper (automatic when not PID 1)
  -g         forward signals to CMD's whole process group
  -e CODE    exit with 0 when CMD's status is CODE (repeatable)
  -p SIG     receive SIG when peapod-init's parent dies (e.g. -p SIGKILL)
  -k SECS    when CMD exits, SIGTERM what is left of its process group,
             wait up to SECS seconds, then SIGKILL it
  -w         print a line for every orphan reaped
  -v         print what peapod-init does (repeat for more)
  -P         pause: no command, sleep until SIGTERM or SIGINT, reaping
  --watch PID PATH ARGV0 [ARGS...]
             forward signals to child PID until it exits (left unreaped),
             then exec PATH (a foreground `peapod run` waits this way)
  -h         this help; --version prints the version
";

/// A set of exit codes, for `-e`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCodeSet([u64; 4]);

impl ExitCodeSet {
    /// Adds `code` to the set.
    pub fn insert(&mut self, code: u8) {
        self.0[usize::from(code / 64)] |= 1 << (code % 64);
    }

    /// True when `code` is in the set.
    pub fn contains(&self, code: u8) -> bool {
        self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }
}

/// How the init behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Treat failing to become a child subreaper as an error (`-s`). Without
    /// it the init still tries when it is not PID 1, and only warns.
    pub require_subreaper: bool,
    /// Forward signals to the child's process group, not only the child (`-g`).
    pub group: bool,
    /// Child statuses reported as 0 (`-e`).
    pub remap: ExitCodeSet,
    /// Signal the init asks to receive when its parent dies (`-p`).
    pub parent_death_signal: Option<Signal>,
    /// After the child exits, SIGTERM its process group, wait this many
    /// milliseconds, then SIGKILL it (`-k`, given in seconds).
    pub kill_group_grace_ms: Option<u64>,
    /// Print a line for every reaped orphan (`-w`).
    pub warn_on_reap: bool,
    /// How chatty to be on standard error (`-v`, repeatable).
    pub verbosity: u8,
}

/// What the command line asks for.
#[derive(Clone, Copy, Debug)]
pub enum Invocation<'a> {
    /// Run a command (its argv, never empty) under the init.
    Run(Options, CStrArray<'a>),
    /// Pause mode: no command.
    Pause(Options),
    /// `--exec PATH ARGV0 [ARG]...`: become `PATH` with that argv, no init at all. peapod
    /// runs a container's entrypoint through a sealed in-memory copy of this binary, so that
    /// the container never executes, through `/proc/self/exe`, the runtime's own binary.
    Exec(CStrArray<'a>),
    /// `--watch PID PATH ARGV0 [ARG]...`: forward every signal to child `PID` until it exits,
    /// leaving it unreaped, then become `PATH`. A foreground `peapod run` hands its waiting
    /// to this mode, so that a long-running container is watched by a process of a few
    /// hundred kilobytes, and `PATH` (peapod again) collects the status and cleans up.
    Watch(i32, CStrArray<'a>),
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// A command line that cannot be used; the binary exits with status 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageError<'a> {
    /// An option that does not exist.
    UnknownOption(&'a [u8]),
    /// An option that needs a value was last.
    MissingValue(&'static str),
    /// An option's value could not be parsed.
    BadValue(&'static str, &'a [u8]),
    /// Neither a command nor pause mode.
    MissingCommand,
    /// Pause mode was combined with a command.
    PauseWithCommand,
}

impl UsageError<'_> {
    /// Writes the problem and the usage line to standard error.
    pub fn report(&self) {
        let mut line = Line::new();
        line.push("peapod-init: ");
        match *self {
            UsageError::UnknownOption(opt) => line.push("unknown option: ").push(opt),
            UsageError::MissingValue(opt) => line.push("option ").push(opt).push(" needs a value"),
            UsageError::BadValue(opt, value) => {
                line.push("bad value for ").push(opt).push(": ").push(value)
            }
            UsageError::MissingCommand => line.push("no command given (use -P for pause mode)"),
            UsageError::PauseWithCommand => line.push("pause mode takes no command"),
        };
        line.stderr();
        crate::diag::write_all(2, USAGE.as_bytes());
    }
}

/// Parses a decimal number no larger than `max`.
fn number(text: &[u8], max: u64) -> Option<u64> {
    if text.is_empty() || text.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in text {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    (n <= max).then_some(n)
}

/// Parses the full `argv` (including the program name).
pub fn parse(argv: CStrArray<'_>) -> Result<Invocation<'_>, UsageError<'_>> {
    let mut opts = Options::default();
    let mut pause = false;
    let mut i = 1;
    while let Some(arg) = argv.get(i).map(|a| a.to_bytes()) {
        match arg {
            b"--" => {
                i += 1;
                break;
            }
            b"--help" => return Ok(Invocation::Help),
            b"--version" => return Ok(Invocation::Version),
            b"--exec" if i == 1 => {
                let target = argv.skip(2);
                return match target.len() {
                    0 | 1 => Err(UsageError::MissingCommand),
                    _ => Ok(Invocation::Exec(target)),
                };
            }
            b"--watch" if i == 1 => {
                let pid = argv
                    .get(2)
                    .ok_or(UsageError::MissingValue("--watch"))?
                    .to_bytes();
                let pid = number(pid, i32::MAX as u64)
                    .filter(|&pid| pid > 0)
                    .ok_or(UsageError::BadValue("--watch", pid))?;
                let target = argv.skip(3);
                return match target.len() {
                    0 | 1 => Err(UsageError::MissingCommand),
                    _ => Ok(Invocation::Watch(pid as i32, target)),
                };
            }
            b"--pause" => {
                pause = true;
                i += 1;
                continue;
            }
            _ if arg.starts_with(b"--") => return Err(UsageError::UnknownOption(arg)),
            [b'-', flags @ ..] if !flags.is_empty() => {
                i += 1;
                let mut j = 0;
                while j < flags.len() {
                    let flag = flags[j];
                    j += 1;
                    // Options with a value take the rest of this argument, or
                    // the next argument when nothing is attached.
                    let takes_value = matches!(flag, b'e' | b'p' | b'k');
                    let value = if takes_value {
                        let attached = &flags[j..];
                        j = flags.len();
                        if attached.is_empty() {
                            let name = match flag {
                                b'e' => "-e",
                                b'p' => "-p",
                                _ => "-k",
                            };
                            let next = argv.get(i).ok_or(UsageError::MissingValue(name))?;
                            i += 1;
                            next.to_bytes()
                        } else {
                            attached
                        }
                    } else {
                        &[]
                    };
                    match flag {
                        b's' => opts.require_subreaper = true,
                        b'g' => opts.group = true,
                        b'w' => opts.warn_on_reap = true,
                        b'v' => opts.verbosity = opts.verbosity.saturating_add(1),
                        b'P' => pause = true,
                        b'h' => return Ok(Invocation::Help),
                        b'e' => {
                            let code =
                                number(value, 255).ok_or(UsageError::BadValue("-e", value))?;
                            opts.remap.insert(code as u8);
                        }
                        b'p' => {
                            let sig =
                                Signal::parse(value).ok_or(UsageError::BadValue("-p", value))?;
                            opts.parent_death_signal = Some(sig);
                        }
                        b'k' => {
                            let secs =
                                number(value, 86_400).ok_or(UsageError::BadValue("-k", value))?;
                            opts.kill_group_grace_ms = Some(secs * 1000);
                        }
                        _ => return Err(UsageError::UnknownOption(arg)),
                    }
                }
            }
            _ => break,
        }
    }
    let command = argv.skip(i);
    match (pause, command.is_empty()) {
        (true, true) => Ok(Invocation::Pause(opts)),
        (true, false) => Err(UsageError::PauseWithCommand),
        (false, true) => Err(UsageError::MissingCommand),
        (false, false) => Ok(Invocation::Run(opts, command)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::vec::Vec;

    /// Parses `args` (without the program name) and hands the result and the
    /// remaining command (as strings) to `check`.
    fn with_parsed(args: &[&str], check: impl FnOnce(Result<Invocation<'_>, UsageError<'_>>)) {
        let owned: Vec<CString> = core::iter::once("peapod-init")
            .chain(args.iter().copied())
            .map(|a| CString::new(a).expect("no NUL"))
            .collect();
        let mut ptrs: Vec<*const u8> = owned.iter().map(|a| a.as_ptr().cast()).collect();
        ptrs.push(core::ptr::null());
        // SAFETY: `ptrs` is null-terminated and its strings outlive the call.
        let argv = unsafe { CStrArray::from_raw(ptrs.as_ptr()) };
        check(parse(argv));
    }

    fn command(inv: &Invocation<'_>) -> Vec<Vec<u8>> {
        match inv {
            Invocation::Run(_, cmd) => cmd.iter().map(<[u8]>::to_vec).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn tini_style_flags() {
        with_parsed(
            &[
                "-s", "-g", "-e", "143", "-e3", "-p", "SIGKILL", "-vv", "--", "sh", "-c", "x",
            ],
            |r| {
                let inv = r.expect("valid");
                assert_eq!(command(&inv), [&b"sh"[..], b"-c", b"x"]);
                let Invocation::Run(o, _) = inv else {
                    panic!("not run")
                };
                assert!(o.require_subreaper && o.group);
                assert!(o.remap.contains(143) && o.remap.contains(3) && !o.remap.contains(0));
                assert_eq!(o.parent_death_signal, Some(Signal::KILL));
                assert_eq!(o.verbosity, 2);
            },
        );
    }

    #[test]
    fn stops_at_first_non_option() {
        with_parsed(&["-gk", "5", "ls", "-l", "--", "-x"], |r| {
            let inv = r.expect("valid");
            assert_eq!(command(&inv), [&b"ls"[..], b"-l", b"--", b"-x"]);
            let Invocation::Run(o, _) = inv else {
                panic!("not run")
            };
            assert_eq!(o.kill_group_grace_ms, Some(5000));
        });
    }

    #[test]
    fn modes_and_errors() {
        with_parsed(&["-P"], |r| assert!(matches!(r, Ok(Invocation::Pause(_)))));
        with_parsed(&["--pause"], |r| {
            assert!(matches!(r, Ok(Invocation::Pause(_))))
        });
        with_parsed(&["-h"], |r| assert!(matches!(r, Ok(Invocation::Help))));
        with_parsed(&["--version"], |r| {
            assert!(matches!(r, Ok(Invocation::Version)))
        });
        with_parsed(&[], |r| {
            assert_eq!(r.err(), Some(UsageError::MissingCommand))
        });
        with_parsed(&["-g", "--"], |r| {
            assert_eq!(r.err(), Some(UsageError::MissingCommand))
        });
        with_parsed(&["-P", "sh"], |r| {
            assert_eq!(r.err(), Some(UsageError::PauseWithCommand))
        });
        with_parsed(&["-x", "sh"], |r| {
            assert_eq!(r.err(), Some(UsageError::UnknownOption(b"-x")))
        });
        with_parsed(&["--nope"], |r| {
            assert_eq!(r.err(), Some(UsageError::UnknownOption(b"--nope")))
        });
        with_parsed(&["-e"], |r| {
            assert_eq!(r.err(), Some(UsageError::MissingValue("-e")))
        });
        with_parsed(&["-e", "256", "sh"], |r| {
            assert_eq!(r.err(), Some(UsageError::BadValue("-e", b"256")))
        });
        with_parsed(&["-p", "NOPE", "sh"], |r| {
            assert_eq!(r.err(), Some(UsageError::BadValue("-p", b"NOPE")))
        });
        with_parsed(
            &["--watch", "42", "/bin/peapod", "peapod", "finish", "c"],
            |r| {
                let Ok(Invocation::Watch(pid, then)) = r else {
                    panic!("not watch: {r:?}")
                };
                assert_eq!(pid, 42);
                let then: Vec<&[u8]> = then.iter().collect();
                assert_eq!(then, [&b"/bin/peapod"[..], b"peapod", b"finish", b"c"]);
            },
        );
        with_parsed(&["--watch"], |r| {
            assert_eq!(r.err(), Some(UsageError::MissingValue("--watch")))
        });
        with_parsed(&["--watch", "0", "/bin/true", "true"], |r| {
            assert_eq!(r.err(), Some(UsageError::BadValue("--watch", b"0")))
        });
        with_parsed(&["--watch", "42", "/bin/true"], |r| {
            assert_eq!(r.err(), Some(UsageError::MissingCommand))
        });
        // A lone "-" is a command name, as for getopt.
        with_parsed(&["-"], |r| {
            assert_eq!(command(&r.expect("valid")), [&b"-"[..]])
        });
    }
}
