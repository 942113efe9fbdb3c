//! The man pages and shell completions cover every command the parser has.

mod support;

use support::{finish, peapod};

/// The visible subcommands `peapod --help` lists.
fn subcommands() -> Vec<String> {
    let out = finish(peapod().arg("--help").spawn().expect("spawn"));
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let commands = subcommands();
    assert!(commands.contains(&"explain".to_owned()), "{commands:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = finish(peapod().arg("man").arg(dir.path()).spawn().expect("spawn"));
    assert_eq!(out.code, 0, "{out:?}");
    for command in &commands {
        let page = dir.path().join(format!("peapod-{command}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{page:?}: {e}"));
        assert!(text.contains(".TH"), "{page:?} is no man page");
    }
    assert!(dir.path().join("peapod.1").exists());
    assert!(dir.path().join("peapod-pod-create.1").exists());
    for shell in ["bash", "zsh", "fish"] {
        let out = finish(peapod().args(["completion", shell]).spawn().expect("spawn"));
        assert_eq!(out.code, 0, "{out:?}");
        for command in &commands {
            assert!(
                out.stdout.contains(command.as_str()),
                "{shell} lacks {command}"
            );
        }
    }
    // Every subcommand's long help ends with an example.
    let pod_commands = ["create", "list", "ps", "stop", "rm", "logs", "play"];
    let all = commands
        .iter()
        .map(|c| vec![c.as_str()])
        .chain(pod_commands.iter().map(|c| vec!["pod", c]));
    for mut words in all {
        words.push("--help");
        let out = finish(peapod().args(&words).spawn().expect("spawn"));
        assert_eq!(out.code, 0, "{words:?}: {out:?}");
        assert!(
            out.stdout.contains("\nExample:\n  peapod "),
            "{words:?} has no example"
        );
    }
    let out = finish(
        peapod()
            .args(["completion", "tcsh"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(out.code, 2, "{out:?}");
}
