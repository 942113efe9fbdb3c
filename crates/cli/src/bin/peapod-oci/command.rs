//! runc's command line for the five lifecycle commands and `run` of a bundle, as `peapod`'s
//! clap parser reads them (`--flag value` and `--flag=value`, short flags, options among the
//! arguments).
//! Anything else is `None`: `peapod` parses it and says what is wrong.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::globals::{GlobalArgs, LogFormat, Rootless};

/// `create`'s flags, as `peapod create`'s.
#[derive(Debug, Default)]
pub(crate) struct CreateArgs {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub id: String,
}

/// A command `peapod-oci` runs itself.
#[derive(Debug)]
pub(crate) enum Lifecycle {
    Create(CreateArgs),
    Start {
        id: String,
    },
    State {
        id: String,
    },
    Kill {
        id: String,
        signal: Option<String>,
        all: bool,
    },
    Delete {
        id: String,
        force: bool,
    },
    /// runc's `run` of a bundle, with `create`'s flags (but `--no-pivot` and
    /// `--preserve-fds`, which `peapod run` lacks): detached, or in the foreground.
    Run {
        args: CreateArgs,
        detach: bool,
    },
    /// The end of a foreground `run` whose waiting went to `peapod-init --watch` (`peapod
    /// finish ID`, which the run's command line names).
    Finish {
        id: String,
    },
}

impl Lifecycle {
    /// The container the command is about.
    pub(crate) fn id(&self) -> &str {
        match self {
            Lifecycle::Create(args) | Lifecycle::Run { args, .. } => &args.id,
            Lifecycle::Start { id }
            | Lifecycle::Finish { id }
            | Lifecycle::State { id }
            | Lifecycle::Kill { id, .. }
            | Lifecycle::Delete { id, .. } => id,
        }
    }

    /// How many descriptors after stdio the container keeps.
    pub(crate) fn preserve_fds(&self) -> u32 {
        match self {
            Lifecycle::Create(args) => args.preserve_fds,
            _ => 0,
        }
    }
}

/// The arguments after the program's name, or `None` for anything but one of the five
/// commands with flags and values it knows.
pub(crate) fn parse(argv: &[OsString]) -> Option<(GlobalArgs, Lifecycle)> {
    let mut words = Words::new(argv)?;
    let mut global = GlobalArgs {
        debug: false,
        root: None,
        log: None,
        log_format: LogFormat::Text,
        systemd_cgroup: false,
        rootless: Rootless::Auto,
        storage: None,
    };
    let name = loop {
        match words.next()?? {
            Word::Flag(flag) if global_flag(&mut global, &flag, &mut words)? => {}
            Word::Flag(_) => return None,
            Word::Value(name) => break name,
        }
    };
    let mut args = Vec::new();
    let mut create = CreateArgs {
        bundle: PathBuf::from("."),
        ..CreateArgs::default()
    };
    let (mut all, mut force, mut detach, mut bundle_given) = (false, false, false, false);
    while let Some(word) = words.next()? {
        match (name.as_str(), word) {
            (_, Word::Flag(f)) if f == "--debug" && words.no_value()? => global.debug = true,
            ("run", Word::Flag(f)) if matches!(f.as_str(), "-d" | "--detach") => {
                detach = words.no_value()?
            }
            ("create" | "run", Word::Flag(f)) => {
                bundle_given |= matches!(f.as_str(), "-b" | "--bundle");
                create_flag(&mut create, &f, &mut words)?
            }
            ("kill", Word::Flag(f)) if matches!(f.as_str(), "-a" | "--all") => {
                all = words.no_value()?
            }
            ("delete", Word::Flag(f)) if matches!(f.as_str(), "-f" | "--force") => {
                force = words.no_value()?
            }
            (_, Word::Flag(_)) => return None,
            (_, Word::Value(value)) => args.push(value),
        }
    }
    let mut args = args.into_iter();
    let id = args.next()?;
    let command = match name.as_str() {
        "create" => Lifecycle::Create(CreateArgs { id, ..create }),
        "start" => Lifecycle::Start { id },
        "state" => Lifecycle::State { id },
        "kill" => Lifecycle::Kill {
            id,
            signal: args.next(),
            all,
        },
        "delete" => Lifecycle::Delete { id, force },
        // `peapod run` has neither flag; `run ID` without `--bundle` is runc's only with a
        // `config.json` here (`peapod` reads ID as an image otherwise).
        "run" if create.no_pivot || create.preserve_fds > 0 => return None,
        "run" if !bundle_given && !std::path::Path::new("config.json").exists() => return None,
        "run" => Lifecycle::Run {
            args: CreateArgs { id, ..create },
            detach,
        },
        "finish" => Lifecycle::Finish { id },
        _ => return None,
    };
    args.next().is_none().then_some((global, command))
}

/// Reads one of runc's global flags into `global`; `Some(false)` for a flag that is not one.
fn global_flag(global: &mut GlobalArgs, flag: &str, words: &mut Words) -> Option<bool> {
    match flag {
        "--debug" => global.debug = words.no_value()?,
        "--systemd-cgroup" => global.systemd_cgroup = words.no_value()?,
        "--root" => global.root = Some(words.value()?.into()),
        "--log" => global.log = Some(words.value()?.into()),
        "--log-format" => {
            global.log_format = match words.value()?.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return None,
            }
        }
        "--rootless" => {
            global.rootless = match words.value()?.as_str() {
                "auto" => Rootless::Auto,
                "true" => Rootless::True,
                "false" => Rootless::False,
                _ => return None,
            }
        }
        _ => return Some(false),
    }
    Some(true)
}

/// Reads one of `create`'s flags into `args`.
fn create_flag(args: &mut CreateArgs, flag: &str, words: &mut Words) -> Option<()> {
    match flag {
        "-b" | "--bundle" => args.bundle = words.value()?.into(),
        "--pid-file" => args.pid_file = Some(words.value()?.into()),
        "--console-socket" => args.console_socket = Some(words.value()?.into()),
        "--preserve-fds" => args.preserve_fds = words.value()?.parse().ok()?,
        "--no-pivot" => args.no_pivot = words.no_value()?,
        "--no-new-keyring" => args.no_new_keyring = words.no_value()?,
        _ => return None,
    }
    Some(())
}

/// One argument: a flag (`--name`, `-x`; a value given with `=` is kept for the flag's
/// reader) or a value.
enum Word {
    Flag(String),
    Value(String),
}

/// The arguments, all UTF-8 (else `None`: `peapod` says which is not).
struct Words {
    rest: std::vec::IntoIter<String>,
    /// The value of the last flag given as `--flag=value`, until read.
    attached: Option<String>,
}

impl Words {
    fn new(argv: &[OsString]) -> Option<Words> {
        let words: Option<Vec<String>> =
            argv.iter().map(|a| a.to_str().map(str::to_owned)).collect();
        Some(Words {
            rest: words?.into_iter(),
            attached: None,
        })
    }

    /// The next argument: `Some(None)` after the last, `None` for what `peapod` must parse
    /// (a value given to a flag that takes none, `--`, `-ab`, `-bDIR`, `-`).
    fn next(&mut self) -> Option<Option<Word>> {
        if self.attached.is_some() {
            return None;
        }
        let Some(word) = self.rest.next() else {
            return Some(None);
        };
        let word = match word.strip_prefix("--") {
            Some("") => return None,
            Some(long) => match long.split_once('=') {
                Some((name, value)) => {
                    self.attached = Some(value.to_owned());
                    Word::Flag(format!("--{name}"))
                }
                None => Word::Flag(word),
            },
            None if word.len() == 2 && word.starts_with('-') => Word::Flag(word),
            None if word.starts_with('-') => return None,
            None => Word::Value(word),
        };
        Some(Some(word))
    }

    /// The value of the flag just read: attached (`--flag=value`) or the next argument.
    fn value(&mut self) -> Option<String> {
        self.attached.take().or_else(|| self.rest.next())
    }

    /// `Some(true)` for a flag that takes no value and was given none.
    fn no_value(&self) -> Option<bool> {
        self.attached.is_none().then_some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Option<(GlobalArgs, Lifecycle)> {
        let argv: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        parse(&argv)
    }

    #[test]
    fn reads_containerds_and_podmans_command_lines() {
        let (global, command) = parsed(
            "--root /run/r --log /x/log.json --log-format json --systemd-cgroup create \
             --bundle /b --pid-file /b/pid --console-socket=/s -b /b2 --no-pivot \
             --no-new-keyring --preserve-fds 2 web",
        )
        .expect("parsed");
        assert_eq!(global.root, Some(PathBuf::from("/run/r")));
        assert_eq!(global.log, Some(PathBuf::from("/x/log.json")));
        assert_eq!(global.log_format, LogFormat::Json);
        assert!(global.systemd_cgroup && !global.debug);
        let Lifecycle::Create(args) = command else {
            panic!("not create: {command:?}")
        };
        assert_eq!(args.bundle, PathBuf::from("/b2"));
        assert_eq!(args.pid_file, Some(PathBuf::from("/b/pid")));
        assert_eq!(args.console_socket, Some(PathBuf::from("/s")));
        assert!(args.no_pivot && args.no_new_keyring);
        assert_eq!((args.preserve_fds, args.id.as_str()), (2, "web"));
    }

    #[test]
    fn reads_options_among_the_arguments_as_clap_does() {
        let Some((_, Lifecycle::Kill { id, signal, all })) = parsed("kill web --all 9") else {
            panic!("kill not parsed")
        };
        assert_eq!(
            (id.as_str(), signal.as_deref(), all),
            ("web", Some("9"), true)
        );
        let Some((global, Lifecycle::Delete { id, force })) =
            parsed("--rootless=true delete -f web --debug")
        else {
            panic!("delete not parsed")
        };
        assert_eq!((id.as_str(), force), ("web", true));
        assert!(global.debug && global.rootless == Rootless::True);
        let Some((_, Lifecycle::Create(args))) = parsed("create web") else {
            panic!("create not parsed")
        };
        assert_eq!(args.bundle, PathBuf::from("."));
    }

    #[test]
    fn reads_runcs_run_of_a_bundle_detached_or_not() {
        let Some((_, Lifecycle::Run { args, detach })) =
            parsed("run -d --bundle /b --pid-file /p --no-new-keyring web")
        else {
            panic!("run -d not parsed")
        };
        assert_eq!(args.bundle, PathBuf::from("/b"));
        assert_eq!(args.pid_file, Some(PathBuf::from("/p")));
        assert!(detach && args.no_new_keyring && args.id == "web");
        let Some((_, Lifecycle::Run { args, detach })) = parsed("run web --detach --bundle=/b")
        else {
            panic!("run --detach not parsed")
        };
        assert_eq!(
            (args.bundle, args.id.as_str(), detach),
            (PathBuf::from("/b"), "web", true)
        );
        let Some((_, Lifecycle::Run { args, detach })) =
            parsed("run --bundle /b --console-socket /s web")
        else {
            panic!("run not parsed")
        };
        assert_eq!(
            (args.console_socket, args.id.as_str(), detach),
            (Some(PathBuf::from("/s")), "web", false)
        );
        let Some((global, Lifecycle::Finish { id })) =
            parsed("--root /r --rootless=false finish web")
        else {
            panic!("finish not parsed")
        };
        assert_eq!(
            (global.root, id.as_str()),
            (Some(PathBuf::from("/r")), "web")
        );
    }

    /// Everything else is `peapod`'s to parse (and to refuse in its words).
    #[test]
    fn leaves_other_commands_flags_and_mistakes_to_peapod() {
        for line in [
            "list",
            "exec web ls",
            "--help",
            "start --help",
            "state",
            "state a b",
            "start a b",
            "kill web 9 extra",
            "create --bundle",
            "create --preserve-fds x web",
            "create --no-pivot=yes web",
            "--log-format yaml state web",
            "--rootless maybe state web",
            "--storage /s state web",
            "delete --force=1 web",
            "kill -s 9 web",
            "delete -fa web",
            "create -b=/b web",
            "state -- web",
            "pause web",
            // Flags `peapod run` lacks, and (no config.json here) an image.
            "run -d --bundle /b --no-pivot web",
            "run -d --bundle /b --preserve-fds 1 web",
            "run -d busybox",
            "run -d --bundle /b web sh",
            "create -d --bundle /b web",
            "finish",
            "finish -f web",
        ] {
            assert!(parsed(line).is_none(), "{line:?} parsed");
        }
    }
}
