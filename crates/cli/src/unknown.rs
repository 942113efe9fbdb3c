//! What peapod says for a docker command it lacks or spells differently: one line naming
//! peapod's way, or why it has none (docs/runtime.md lists every docker command).

/// The words that begin peapod's own for docker's `container X` (which docker also has at
/// the top level).
const TOP_LEVEL: &[&str] = &[
    "run", "exec", "logs", "stop", "rm", "inspect", "wait", "kill", "pause", "port", "update",
    "start", "restart",
];

/// The line for docker's command `word` (the subcommand of `parent`, when one was given),
/// when peapod has it under another name or not at all.
pub(crate) fn docker_hint(parent: Option<&str>, word: &str) -> Option<String> {
    let typed = match parent {
        Some(parent) => format!("{parent} {word}"),
        None => word.to_owned(),
    };
    let use_ = |peapod: &str| Some(format!("peapod has no {typed}; use `peapod {peapod}`"));
    let unsupported = |why: &str| Some(format!("{word} is not supported ({why})"));
    match (parent, word) {
        (Some("container"), "ls" | "list" | "ps") => use_("ps"),
        (Some("container"), "prune") => use_("ps -a` (the exited containers) and `peapod rm ID..."),
        (Some("container"), w) if TOP_LEVEL.contains(&w) => use_(w),
        (Some("container"), w) => docker_hint(None, w),
        (Some("image"), "pull") => use_("pull"),
        (Some("image"), "build" | "history" | "push") => docker_hint(None, word),
        (Some(_), _) => None,
        (None, "container") => Some(
            "peapod has no container; its container commands are top-level: `peapod ps`, \
             `peapod run`, `peapod rm`, ..."
                .to_owned(),
        ),
        (None, "top") => use_("ps ID"),
        (None, "stats") => use_("events --stats ID"),
        (None, "unpause") => use_("resume ID"),
        (None, "import" | "load" | "save") => use_(&format!("image {word}")),
        (None, "version") => use_("--version"),
        (None, "info") => use_("features` (what it supports) or `peapod --version"),
        (None, "system") => Some(
            "peapod has no system; use `peapod image prune` (system prune) and `peapod \
             features` (system info)"
                .to_owned(),
        ),
        (None, "attach") => unsupported(
            "a detached container's output goes to its log: `peapod logs -f ID`, or \
             `peapod exec -it ID sh` for a shell",
        ),
        (None, "build" | "builder" | "buildx") => unsupported(
            "peapod runs images, it does not build them: build with podman or buildah, then \
             `podman save IMAGE | peapod image load`",
        ),
        (None, "commit") => unsupported(
            "peapod makes no image from a container; `peapod image import DIR NAME` makes one \
             from a root directory",
        ),
        (None, "cp") => unsupported(
            "use `peapod exec ID cat FILE > FILE`, or share a directory with `-v HOST:CTR`",
        ),
        (None, "diff") => unsupported("peapod lists no changes of a container's writable layer"),
        (None, "export") => unsupported("use `peapod exec ID tar -c -C / . > rootfs.tar`"),
        (None, "history") => unsupported(
            "the store keeps no layer history; `peapod image inspect IMAGE` shows its config",
        ),
        (None, "login" | "logout") => unsupported(
            "`peapod pull` reads the credentials of `podman login` or `docker login` \
             (--authfile, REGISTRY_AUTH_FILE, ~/.docker/config.json)",
        ),
        (None, "push") => unsupported(
            "peapod only pulls; `peapod image save IMAGE -o FILE` then `skopeo copy \
             oci-archive:FILE docker://...`",
        ),
        (None, "search") => unsupported("peapod pulls by name; search on the registry's site"),
        (None, "rename") => unsupported("a container's name is fixed when it is made"),
        (None, "network") => unsupported(
            "networks are CNI configuration lists in /etc/peapod/net.d, written by hand; \
             `peapod run --network NAME` and `peapod pod create --network NAME` use one",
        ),
        (None, "volume") => unsupported(
            "peapod has no named volumes: `-v HOST_DIR:CTR` or `--mount type=bind` share a \
             directory; `-v /path` and an image's Volumes are anonymous, removed with the \
             container",
        ),
        (None, "compose" | "stack") => {
            unsupported("peapod runs Kubernetes Pod manifests instead: `peapod pod play FILE`")
        }
        (
            None,
            "swarm" | "service" | "node" | "secret" | "config" | "plugin" | "trust" | "context"
            | "manifest" | "checkpoint" | "scout" | "init" | "debug",
        ) => unsupported("a feature of docker's daemon and tools; peapod has no daemon"),
        _ => None,
    }
}

/// The line for the command line `argv` on which clap found no subcommand `invalid`:
/// docker's `container X` is looked up by its `X`, any other by itself and the command
/// word before it.
pub(crate) fn hint_for(argv: &[String], invalid: &str) -> Option<String> {
    if invalid == "container" {
        let mut after = argv.iter().skip_while(|a| *a != invalid).skip(1);
        if let Some(next) = after.find(|a| !a.starts_with('-')) {
            return docker_hint(Some("container"), next);
        }
    }
    docker_hint(parent_of(argv, invalid).as_deref(), invalid)
}

/// The command word the user typed before `word` on the command line (`image` in
/// `peapod image history`), when it was a command peapod has subcommands under or docker's
/// `container`.
pub(crate) fn parent_of(argv: &[String], word: &str) -> Option<String> {
    let at = argv.iter().position(|a| a == word)?;
    let before = argv[..at].iter().rev().find(|a| !a.starts_with('-'))?;
    matches!(before.as_str(), "image" | "pod" | "container").then(|| before.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_commands_get_peapods_spelling_or_a_reason() {
        let hint = |parent, word| docker_hint(parent, word).unwrap_or_default();
        assert_eq!(hint(None, "top"), "peapod has no top; use `peapod ps ID`");
        assert_eq!(
            hint(Some("container"), "ls"),
            "peapod has no container ls; use `peapod ps`"
        );
        assert_eq!(
            hint(Some("container"), "rm"),
            "peapod has no container rm; use `peapod rm`"
        );
        assert!(hint(None, "volume").starts_with("volume is not supported ("));
        assert!(hint(Some("container"), "commit").starts_with("commit is not supported"));
        assert!(hint(Some("image"), "history").starts_with("history is not supported"));
        assert_eq!(docker_hint(None, "nosuch"), None);
        assert_eq!(docker_hint(Some("pod"), "top"), None);
    }

    #[test]
    fn the_parent_is_the_command_word_before() {
        let argv: Vec<String> = ["peapod", "--root", "/r", "image", "history", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // `--root`'s value is a word too, but not a command peapod has subcommands under.
        assert_eq!(parent_of(&argv, "history"), Some("image".to_owned()));
        let argv: Vec<String> = ["peapod", "top"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parent_of(&argv, "top"), None);
        let argv: Vec<String> = ["peapod", "container", "ls", "-a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            hint_for(&argv, "container").as_deref(),
            Some("peapod has no container ls; use `peapod ps`")
        );
    }
}
