//! Privilege reduction as a user sees it from inside the container: a seccomp profile
//! (`--security-opt seccomp=FILE` or `linux.seccomp` in config.json) fails, kills or lets
//! through exactly the calls it names; `--cap-add`/`--cap-drop` and `--user` show in
//! `/proc/self/status` and `id`; `no_new_privs` is on unless turned off; a bad profile is
//! refused, naming the field, before anything exists.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::{finish, run_in, Outcome, TestRootfs};

/// Writes `profile` to a file in the test's scratch directory; returns the
/// `--security-opt seccomp=FILE` argument for it.
fn profile_opt(rootfs: &TestRootfs, name: &str, profile: Value) -> String {
    let path: PathBuf = rootfs.scratch().join(name);
    std::fs::write(&path, profile.to_string()).expect("write profile");
    format!("seccomp={}", path.display())
}

/// The value of `field` in the container's `/proc/self/status` as the script printed it.
fn status_field<'a>(out: &'a Outcome, field: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in {out:?}"))
}

fn mkdir_eperm_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    })
}

const MKDIR_SCRIPT: &str = "echo hello; ls / >/dev/null && echo listed; mkdir /tmp/made; \
     echo mkdir=$?; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status";

#[test]
fn seccomp_errno_profile_fails_mkdir_and_nothing_else() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let opt = profile_opt(&rootfs, "mkdir.json", mkdir_eperm_profile());
    let out = run_in(
        &rootfs,
        &["--security-opt", &opt],
        &["/bin/sh", "-c", MKDIR_SCRIPT],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("hello\nlisted\nmkdir=1\n"), "{out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "mkdir must fail with EPERM: {out:?}"
    );
    // Mode 2 is a filter; the default of `peapod run` sets no_new_privs.
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out:?}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn a_cached_filter_confines_as_the_fresh_one_and_a_damaged_cache_is_rebuilt() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let opt = profile_opt(&rootfs, "mkdir.json", mkdir_eperm_profile());
    let cache = rootfs.state_root().join(".seccomp");
    // The entries, not the compiler's note (`.compiler`).
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let confined = |why: &str| {
        let out = run_in(
            &rootfs,
            &["--security-opt", &opt],
            &["/bin/sh", "-c", MKDIR_SCRIPT],
        );
        assert_eq!(out.code, 0, "{why}: {out:?}");
        assert!(
            out.stdout.contains("hello\nlisted\nmkdir=1\n"),
            "{why}: {out:?}"
        );
        assert_eq!(status_field(&out, "Seccomp"), "2", "{why}: {out:?}");
    };
    confined("compiled");
    let written = entries();
    assert_eq!(written.len(), 1, "one cache entry: {written:?}");
    let good = std::fs::read(&written[0]).expect("entry");
    confined("from the cache");
    // A damaged entry is never trusted: the filter is compiled again and the entry rewritten.
    std::fs::write(&written[0], &good[..good.len() / 2]).expect("truncate");
    confined("after the entry was damaged");
    assert_eq!(std::fs::read(&written[0]).expect("entry"), good);
    rootfs.assert_nothing_left();
}

#[test]
fn seccomp_filter_without_no_new_privs_is_loaded_before_capabilities_go() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // Without no_new_privs only CAP_SYS_ADMIN may load a filter, which the container does
    // not keep: loading it before the capabilities are dropped is what makes this work.
    let opt = profile_opt(&rootfs, "mkdir.json", mkdir_eperm_profile());
    let out = run_in(
        &rootfs,
        &[
            "--security-opt",
            &opt,
            "--security-opt",
            "no-new-privileges=false",
        ],
        &["/bin/sh", "-c", MKDIR_SCRIPT],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("mkdir=1\n"), "{out:?}");
    assert!(out.stderr.contains("Operation not permitted"), "{out:?}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out:?}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out:?}");
    // Docker's 14, without CAP_SYS_ADMIN.
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb", "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn seccomp_kill_actions_kill_with_sigsys() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let kill = profile_opt(
        &rootfs,
        "kill.json",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]
        }),
    );
    // The entrypoint itself dies: peapod exits with 128 + SIGSYS.
    let out = run_in(
        &rootfs,
        &["--security-opt", &kill],
        &["/bin/mkdir", "/tmp/x"],
    );
    assert_eq!(out.code, 128 + libc::SIGSYS, "{out:?}");
    assert!(!rootfs.path.join("tmp/x").exists());

    let kill_process = profile_opt(
        &rootfs,
        "kill-process.json",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]
        }),
    );
    // A child of the shell dies; the shell goes on and sees it.
    let out = run_in(
        &rootfs,
        &["--security-opt", &kill_process],
        &["/bin/sh", "-c", "mkdir /tmp/y; echo status=$?"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("status=159"), "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn seccomp_argument_conditions_pick_out_calls() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // personality(PER_LINUX32) fails with EACCES, personality(PER_LINUX) works; write(2) to
    // descriptor 2 fails, to descriptor 1 works (a shell's `>&2` would still write to 1).
    let opt = profile_opt(
        &rootfs,
        "args.json",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}
            ]
        }),
    );
    let out = run_in(
        &rootfs,
        &["--security-opt", &opt],
        &[
            "/bin/sh",
            "-c",
            "linux64 echo sixty-four; linux32 echo thirty-two; echo linux32=$?; \
             ls /no-such-dir; echo ls=$?",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("sixty-four\nlinux32=1\nls=1\n"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("thirty-two"), "{out:?}");
    // ls's complaint went to descriptor 2, and nowhere.
    assert!(!out.stderr.contains("no-such-dir"), "{out:?}");
    let unfiltered = run_in(&rootfs, &[], &["/bin/ls", "/no-such-dir"]);
    assert!(unfiltered.stderr.contains("no-such-dir"), "{unfiltered:?}");
}

#[test]
fn docker_profile_rules_follow_the_capabilities() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    // As in Docker's default profile: a rule that applies unless the container holds a
    // capability (and a rule for another architecture, which is left out).
    let opt = profile_opt(
        &rootfs,
        "docker.json",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}}
            ]
        }),
    );
    let script = "mkdir /tmp/d; echo mkdir=$?; rmdir /tmp/d; echo rmdir=$?";
    let out = run_in(
        &rootfs,
        &["--security-opt", &opt],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("mkdir=1\n"), "{out:?}");
    let out = run_in(
        &rootfs,
        &["--security-opt", &opt, "--cap-add", "SYS_ADMIN"],
        &["/bin/sh", "-c", script],
    );
    assert!(out.stdout.contains("mkdir=0\nrmdir=0\n"), "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn unknown_syscall_name_is_refused_before_anything_exists() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG"},
                     {"names": ["mkdir", "mkdri"], "action": "SCMP_ACT_ERRNO"}]
    });
    let opt = profile_opt(&rootfs, "typo.json", profile.clone());
    let out = run_in(&rootfs, &["--security-opt", &opt], &["/bin/true"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        "peapod: error: linux.seccomp.syscalls[1].names[1]: unknown system call \"mkdri\"",
    );
    rootfs.assert_nothing_left();

    // The same from a bundle's config.json, through the OCI `create`.
    let bundle = rootfs.spec_bundle("bundle", |spec| spec["linux"]["seccomp"] = profile);
    let out = finish(
        rootfs
            .peapod()
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg("typo")
            .spawn()
            .expect("spawn peapod create"),
    );
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr
            .contains("linux.seccomp.syscalls[1].names[1]: unknown system call \"mkdri\""),
        "{out:?}"
    );
    rootfs.assert_nothing_left();
}

#[test]
fn cap_drop_all_and_cap_add_leave_exactly_that_capability() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(
        &rootfs,
        &["--cap-drop", "ALL", "--cap-add", "net_raw"],
        &["/bin/grep", "^Cap", "/proc/self/status"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let net_raw = format!("{:016x}", 1u64 << 13);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&out, set), net_raw, "{set}: {out:?}");
    }
    assert_eq!(status_field(&out, "CapAmb"), "0000000000000000");
}

#[test]
fn user_flag_sets_ids_and_a_non_root_user_holds_no_capabilities() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let out = run_in(
        &rootfs,
        &["--user", "1000:1000"],
        &[
            "/bin/sh",
            "-c",
            "echo uid=$(id -u) gid=$(id -g); grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("uid=1000 gid=1000\n"), "{out:?}");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out:?}");
    assert_eq!(status_field(&out, "CapPrm"), "0000000000000000", "{out:?}");
    // Docker's 14 stay in the bounding set.
    assert_eq!(status_field(&out, "CapBnd"), "00000000a80425fb", "{out:?}");

    // A name is looked up in the rootfs's own /etc/passwd.
    std::fs::write(
        rootfs.path.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:4321:4322::/:/bin/sh\n",
    )
    .expect("passwd");
    let out = run_in(
        &rootfs,
        &["--user", "web"],
        &["/bin/sh", "-c", "id -u; id -g"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "4321\n4322\n"),
        "{out:?}"
    );
    let out = run_in(&rootfs, &["--user", "nosuchuser"], &["/bin/true"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("no user \"nosuchuser\""), "{out:?}");
    rootfs.assert_nothing_left();
}

#[test]
fn no_new_privileges_is_on_by_default_and_can_be_turned_off() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let nnp = |extra: &[&str]| {
        let out = run_in(
            &rootfs,
            extra,
            &["/bin/grep", "NoNewPrivs", "/proc/self/status"],
        );
        assert_eq!(out.code, 0, "{out:?}");
        status_field(&out, "NoNewPrivs").to_owned()
    };
    assert_eq!(nnp(&["--security-opt", "no-new-privileges"]), "1");
    assert_eq!(nnp(&[]), "1");
    assert_eq!(nnp(&["--security-opt", "no-new-privileges=false"]), "0");
}

#[test]
fn seccomp_works_rootless_with_and_without_no_new_privs() {
    let Some(rootfs) = TestRootfs::new() else {
        return;
    };
    let opt = profile_opt(&rootfs, "mkdir.json", mkdir_eperm_profile());
    // Without no_new_privs the filter needs CAP_SYS_ADMIN in the container's user namespace,
    // which its root holds until the capabilities are dropped.
    for nnp in ["no-new-privileges=true", "no-new-privileges=false"] {
        let args = ["run", "--rootfs", rootfs.arg(), "--security-opt", &opt];
        let script = ["--security-opt", nnp, "--", "/bin/sh", "-c", MKDIR_SCRIPT];
        let Some(out) = support::run_as_nobody(&rootfs, &[&args[..], &script[..]].concat()) else {
            return;
        };
        assert_eq!(out.code, 0, "{nnp}: {out:?}");
        assert!(out.stdout.contains("mkdir=1\n"), "{nnp}: {out:?}");
        assert_eq!(status_field(&out, "Seccomp"), "2", "{nnp}: {out:?}");
    }
    rootfs.assert_nothing_left();
}

#[test]
fn features_lists_what_seccomp_supports() {
    let out = finish(support::peapod().arg("features").spawn().expect("spawn"));
    assert_eq!(out.code, 0, "{out:?}");
    let doc: Value = serde_json::from_str(&out.stdout).expect("features prints JSON");
    let seccomp = &doc["linux"]["seccomp"];
    assert_eq!(seccomp["enabled"], true, "{seccomp:#}");
    let list = |key: &str| -> Vec<String> {
        serde_json::from_value(seccomp[key].clone()).unwrap_or_else(|_| panic!("{key}"))
    };
    let actions = list("actions");
    assert!(
        actions.contains(&"SCMP_ACT_KILL_PROCESS".to_owned()),
        "{actions:?}"
    );
    assert!(
        !actions.contains(&"SCMP_ACT_NOTIFY".to_owned()),
        "{actions:?}"
    );
    assert_eq!(list("operators").len(), 7);
    assert!(list("supportedFlags").contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_owned()));
    if cfg!(target_arch = "x86_64") {
        let archs = list("archs");
        for arch in ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"] {
            assert!(archs.contains(&arch.to_owned()), "{archs:?}");
        }
    }
}
