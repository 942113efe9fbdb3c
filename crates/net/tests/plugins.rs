//! The CNI protocol against stand-in plugins (shell scripts in a temporary directory that
//! log what they were given): the variables, stdin with `prevResult`, the order of DEL, a
//! JSON error in one line, a DEL after a failed ADD, the timeout, and the cache.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peapod_net::{Attachment, Cni, Error, NetworkList};
use serde_json::{json, Value};

/// A temporary directory with plugins, a cache and a log each plugin appends to.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("plugins")).expect("plugins");
        Fixture { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// A plugin `name` that logs `NAME COMMAND CONTAINERID NETNS IFNAME ARGS` and its stdin
    /// (one line), then runs `body`.
    fn plugin(&self, name: &str, body: &str) {
        let path = self.dir.path().join("plugins").join(name);
        let script = format!(
            "#!/bin/sh\nin=$(cat)\necho \"{name} $CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS $CNI_PATH\" >> '{log}'\necho \"$in\" | tr -d '\\n' >> '{log}'\necho >> '{log}'\n{body}\n",
            log = self.log().display()
        );
        std::fs::write(&path, script).expect("plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn cni(&self, timeout: Duration) -> Cni {
        Cni {
            config_dirs: vec![self.dir.path().join("net.d")],
            plugin_dirs: vec![self.dir.path().join("plugins")],
            cache_dir: self.dir.path().join("cache"),
            timeout,
            backend: peapod_net::Backend::Cni,
        }
    }

    fn list(&self, version: &str, plugins: &[&str]) -> NetworkList {
        let list = json!({
            "cniVersion": version,
            "name": "fake",
            "plugins": plugins.iter().map(|p| json!({"type": p, "capabilities": {"portMappings": true}})).collect::<Vec<_>>(),
        });
        NetworkList::parse(Path::new("fake.conflist"), list.to_string().as_bytes()).expect("list")
    }

    /// The log as (plugin, command, the rest of the variables, stdin) per call.
    fn calls(&self) -> Vec<(String, String, String, Value)> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|pair| {
                let mut words = pair[0].splitn(3, ' ');
                let plugin = words.next().unwrap_or_default().to_owned();
                let command = words.next().unwrap_or_default().to_owned();
                let rest = words.next().unwrap_or_default().to_owned();
                let stdin = serde_json::from_str(pair.get(1).copied().unwrap_or("null"))
                    .expect("stdin is JSON");
                (plugin, command, rest, stdin)
            })
            .collect()
    }

    fn cache_entries(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("cache/results"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn attachment(netns: &Path) -> Attachment {
    Attachment {
        container_id: "pod-1".into(),
        netns: netns.to_owned(),
        ifname: "eth0".into(),
        ports: vec!["8080:80".parse().expect("port")],
        ip: None,
        owner: json!({"pod": "p"}),
    }
}

const RESULT_100: &str = r#"echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"interface":0,"address":"10.9.0.5/24","gateway":"10.9.0.1"}]}'"#;
const RESULT_040: &str = r#"echo '{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"version":"4","interface":0,"address":"10.9.0.6/24"}],"dns":{}}'"#;

#[test]
fn add_chains_prev_results_and_del_runs_in_reverse_with_the_cached_result() {
    let f = Fixture::new();
    f.plugin(
        "first",
        &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_100}; exit 0"),
    );
    f.plugin(
        "second",
        &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_100}; exit 0"),
    );
    let cni = f.cni(Duration::from_secs(10));
    let list = f.list("1.0.0", &["first", "second"]);
    let netns = f.dir.path().join("netns");
    std::fs::write(&netns, "").expect("netns");
    let added = cni.add(&list, &attachment(&netns)).expect("ADD");
    assert_eq!(added.addresses(), ["10.9.0.5/24".parse().expect("net")]);
    // The first plugin gets no prevResult, the second the first's result.
    let calls = f.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].1, "ADD");
    let expected_vars = format!(
        "pod-1 {} eth0 IgnoreUnknown=1 {}",
        netns.display(),
        f.dir.path().join("plugins").display()
    );
    assert_eq!(calls[0].2, expected_vars);
    assert!(calls[0].3.get("prevResult").is_none(), "{:?}", calls[0].3);
    assert_eq!(calls[0].3["name"], "fake");
    assert_eq!(calls[0].3["cniVersion"], "1.0.0");
    assert_eq!(
        calls[0].3["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert_eq!(calls[1].3["prevResult"]["ips"][0]["address"], "10.9.0.5/24");
    // The cache holds what ADD made; DEL gets it in reverse order, then forgets it.
    let cached = peapod_net::load_cache_entry(&added.cache_file)
        .expect("read")
        .expect("entry");
    assert_eq!(
        cached
            .result
            .as_ref()
            .map(|r| r["ips"][0]["address"].clone()),
        Some(json!("10.9.0.5/24"))
    );
    assert_eq!(cached.config, list.raw);
    cni.del(&added.cache_file).expect("DEL");
    let calls = f.calls();
    let dels: Vec<&str> = calls[2..].iter().map(|c| c.0.as_str()).collect();
    assert_eq!(dels, ["second", "first"]);
    for call in &calls[2..] {
        assert_eq!(call.1, "DEL");
        assert_eq!(call.3["prevResult"]["ips"][0]["address"], "10.9.0.5/24");
    }
    assert_eq!(f.cache_entries(), 0);
    // A second DEL has nothing to do.
    cni.del(&added.cache_file).expect("DEL again");
    assert_eq!(f.calls().len(), 4);
}

#[test]
fn a_0_4_0_result_is_read_and_check_gets_the_cached_result() {
    let f = Fixture::new();
    f.plugin(
        "old",
        &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_040}; exit 0"),
    );
    let cni = f.cni(Duration::from_secs(10));
    let netns = f.dir.path().join("netns");
    std::fs::write(&netns, "").expect("netns");
    let added = cni
        .add(&f.list("0.4.0", &["old"]), &attachment(&netns))
        .expect("ADD");
    assert_eq!(added.addresses(), ["10.9.0.6/24".parse().expect("net")]);
    cni.check(&added.cache_file).expect("CHECK");
    let calls = f.calls();
    assert_eq!(calls[1].1, "CHECK");
    assert_eq!(calls[1].3["prevResult"]["ips"][0]["address"], "10.9.0.6/24");
    cni.del(&added.cache_file).expect("DEL");
}

#[test]
fn a_failed_add_is_reported_in_one_line_and_undone_with_del() {
    let f = Fixture::new();
    f.plugin(
        "good",
        &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_100}; exit 0"),
    );
    f.plugin(
        "bad",
        r#"[ "$CNI_COMMAND" = ADD ] || exit 0
printf '%s\n' '{"cniVersion":"1.0.0","code":11,"msg":"no luck","details":"try\nlater"}'
exit 1"#,
    );
    let cni = f.cni(Duration::from_secs(10));
    let netns = f.dir.path().join("netns");
    std::fs::write(&netns, "").expect("netns");
    let err = cni
        .add(&f.list("1.0.0", &["good", "bad"]), &attachment(&netns))
        .expect_err("fails");
    let line = err.to_string();
    assert_eq!(
        line,
        "network fake: plugin bad ADD failed: code 11: no luck: try later"
    );
    let commands: Vec<(String, String)> = f.calls().into_iter().map(|c| (c.0, c.1)).collect();
    let expected = [
        ("good", "ADD"),
        ("bad", "ADD"),
        ("bad", "DEL"),
        ("good", "DEL"),
    ];
    assert_eq!(
        commands,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(f.cache_entries(), 0, "nothing is left in the cache");
}

#[test]
fn a_missing_plugin_is_named_before_anything_runs() {
    let f = Fixture::new();
    f.plugin(
        "good",
        &format!("[ \"$CNI_COMMAND\" = ADD ] && {RESULT_100}; exit 0"),
    );
    let cni = f.cni(Duration::from_secs(10));
    let netns = f.dir.path().join("netns");
    let err = cni
        .add(&f.list("1.0.0", &["good", "absent"]), &attachment(&netns))
        .expect_err("fails");
    assert!(matches!(err, Error::PluginNotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("network fake: plugin \"absent\" not found in "),
        "{err}"
    );
    assert!(f.calls().is_empty(), "no plugin ran");
    assert_eq!(f.cache_entries(), 0);
}

#[test]
fn a_plugin_that_hangs_is_killed_at_its_timeout_and_the_add_undone() {
    let f = Fixture::new();
    // Only ADD hangs; `exec` so that the kill reaches the sleeping process itself.
    f.plugin(
        "slow",
        "[ \"$CNI_COMMAND\" = ADD ] && exec sleep 60; exit 0",
    );
    let cni = f.cni(Duration::from_millis(500));
    let netns = f.dir.path().join("netns");
    let started = Instant::now();
    let err = cni
        .add(&f.list("1.0.0", &["slow"]), &attachment(&netns))
        .expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let commands: Vec<String> = f.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(commands, ["ADD", "DEL"]);
    assert_eq!(f.cache_entries(), 0);
}
