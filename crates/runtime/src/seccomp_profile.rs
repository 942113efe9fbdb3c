//! Reading the file of `--security-opt seccomp=FILE`: an OCI `linux.seccomp` object, or a
//! profile in Docker's format (`archMap`, `includes`, `excludes`: Docker's and podman's
//! `seccomp.json`), which is turned into the OCI form for this container as Docker does it.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use oci_spec::runtime::{Capabilities, LinuxSeccomp};
use serde_json::{Map, Value};

/// Where containers-common installs the profile podman (and Docker, in its own copy)
/// applies to every container that asks for no other: Debian's podman brings it along.
pub(crate) const INSTALLED_DEFAULT: &str = "/usr/share/containers/seccomp.json";

/// peapod's own default, in Docker's format, for a host without containers-common: every
/// system call but those Docker's profile refuses to a container lacking the capability
/// they need (see its comments). A deny list, so a system call newer than the list is
/// allowed; containers-common's allow list, where installed, refuses those too.
const BUILTIN_DEFAULT: &str = include_str!("seccomp_default.json");

/// Reads the profile at `path` for a container whose bounding set is `bounding`.
pub(crate) fn load(path: &Path, bounding: &Capabilities) -> anyhow::Result<LinuxSeccomp> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read seccomp profile {}", path.display()))?;
    parse(&text, &path.display().to_string(), bounding)
}

/// The profile `peapod run` and `pod play` apply unless told otherwise, as podman and Docker
/// do: containers-common's where it is installed, else peapod's built-in one.
pub(crate) fn default(bounding: &Capabilities) -> anyhow::Result<LinuxSeccomp> {
    match std::fs::read(INSTALLED_DEFAULT) {
        Ok(text) => parse(&text, INSTALLED_DEFAULT, bounding),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            parse(BUILTIN_DEFAULT.as_bytes(), "(built-in default)", bounding)
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read seccomp profile {INSTALLED_DEFAULT}"))
        }
    }
}

/// A profile's text (`shown` names it in errors), in the OCI form for `bounding`.
fn parse(text: &[u8], shown: &str, bounding: &Capabilities) -> anyhow::Result<LinuxSeccomp> {
    let value: Value =
        serde_json::from_slice(text).with_context(|| format!("seccomp profile {shown}"))?;
    let value = if is_docker_format(&value) {
        let caps: Vec<String> = bounding.iter().map(|c| format!("CAP_{c}")).collect();
        let host = Host::this().with_context(|| format!("seccomp profile {shown}"))?;
        from_docker(value, &caps, &host).with_context(|| format!("seccomp profile {shown}"))?
    } else {
        value
    };
    serde_path_to_error::deserialize(value)
        .map_err(|e| anyhow!("seccomp profile {shown}: {}: {}", e.path(), e.inner()))
}

/// Whether `profile` uses a field only Docker's format has.
fn is_docker_format(profile: &Value) -> bool {
    ["archMap", "defaultErrno"]
        .iter()
        .any(|k| profile.get(k).is_some())
        || profile["syscalls"].as_array().is_some_and(|calls| {
            calls.iter().any(|c| {
                ["includes", "excludes", "name", "comment"]
                    .iter()
                    .any(|k| c.get(k).is_some())
            })
        })
}

/// What Docker's conditional rules are checked against.
#[derive(Debug)]
struct Host {
    /// Go's name of this architecture (`amd64`), as `includes.arches` has it.
    go_arch: &'static str,
    /// libseccomp's name of it (`SCMP_ARCH_X86_64`), as `archMap` has it.
    scmp_arch: &'static str,
    /// The kernel's version, major and minor.
    kernel: (u32, u32),
}

impl Host {
    fn this() -> anyhow::Result<Host> {
        let (go_arch, scmp_arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "x86" => ("386", "SCMP_ARCH_X86"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            other => bail!("Docker's profile format is not supported on {other}"),
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("cannot read the kernel version")?;
        let kernel = parse_version(release.trim())
            .ok_or_else(|| anyhow!("cannot read the kernel version {:?}", release.trim()))?;
        Ok(Host {
            go_arch,
            scmp_arch,
            kernel,
        })
    }
}

/// `5.15.0-91-generic` or `4.8` → (major, minor).
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// Docker's format to the OCI one, as Docker writes `config.json`: the architectures of
/// this machine's `archMap` entry, and only the rules whose `includes` all hold and whose
/// `excludes` do not (capabilities against `caps`, the container's bounding set).
fn from_docker(mut profile: Value, caps: &[String], host: &Host) -> anyhow::Result<Value> {
    let Some(object) = profile.as_object_mut() else {
        bail!("not a JSON object");
    };
    let mut out = Map::new();
    let default_action = object
        .remove("defaultAction")
        .ok_or_else(|| anyhow!("defaultAction: missing"))?;
    out.insert("defaultAction".into(), default_action);
    match (
        object.remove("defaultErrnoRet"),
        object.remove("defaultErrno"),
    ) {
        (Some(ret), _) => {
            out.insert("defaultErrnoRet".into(), ret);
        }
        (None, Some(Value::String(name))) => {
            let ret = match name.as_str() {
                "EPERM" => nix::errno::Errno::EPERM as i32,
                "ENOSYS" => nix::errno::Errno::ENOSYS as i32,
                other => bail!(
                    "defaultErrno: {other:?} (peapod knows EPERM and ENOSYS; use defaultErrnoRet)"
                ),
            };
            out.insert("defaultErrnoRet".into(), ret.into());
        }
        (None, _) => {}
    }
    let archs = object.remove("architectures");
    let arch_map = object.remove("archMap");
    if archs.is_some() && arch_map.is_some() {
        bail!("architectures and archMap: give one of them");
    }
    if let Some(archs) = archs {
        out.insert("architectures".into(), archs);
    }
    for (i, entry) in arch_map.iter().flat_map(array).enumerate() {
        if entry["architecture"].as_str() != Some(host.scmp_arch) {
            continue;
        }
        let mut archs = vec![Value::from(host.scmp_arch)];
        match &entry["subArchitectures"] {
            Value::Null => {}
            Value::Array(subs) => archs.extend(subs.iter().cloned()),
            _ => bail!("archMap[{i}].subArchitectures: expected a list"),
        }
        out.insert("architectures".into(), archs.into());
    }
    if let Some(flags) = object.remove("flags") {
        out.insert("flags".into(), flags);
    }
    let mut syscalls = Vec::new();
    for (i, call) in object.remove("syscalls").iter().flat_map(array).enumerate() {
        let field = format!("syscalls[{i}]");
        if !applies(
            &call["includes"],
            true,
            caps,
            host,
            &format!("{field}.includes"),
        )? || applies(
            &call["excludes"],
            false,
            caps,
            host,
            &format!("{field}.excludes"),
        )? {
            continue;
        }
        let Value::Object(mut call) = call.clone() else {
            bail!("{field}: expected an object");
        };
        let mut names = match call.remove("names") {
            Some(Value::Array(names)) => names,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => bail!("{field}.names: expected a list"),
        };
        match call.remove("name") {
            Some(name @ Value::String(_)) if names.is_empty() => names.push(name),
            Some(Value::String(_)) => bail!("{field}: give either name or names"),
            None | Some(Value::Null) => {}
            Some(_) => bail!("{field}.name: expected a string"),
        }
        let mut oci = Map::new();
        oci.insert("names".into(), names.into());
        for key in ["action", "errnoRet", "args"] {
            if let Some(v) = call.remove(key).filter(|v| !v.is_null()) {
                oci.insert(key.into(), v);
            }
        }
        syscalls.push(Value::Object(oci));
    }
    out.insert("syscalls".into(), syscalls.into());
    Ok(Value::Object(out))
}

fn array(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// Whether Docker's `includes` (`all` = true: every condition given holds) or `excludes`
/// (`all` = false: any condition given holds) filter matches. An absent or empty filter:
/// `all`, i.e. includes match and excludes do not.
fn applies(
    filter: &Value,
    all: bool,
    caps: &[String],
    host: &Host,
    field: &str,
) -> anyhow::Result<bool> {
    if filter.is_null() {
        return Ok(all);
    }
    let strings = |key: &str| -> anyhow::Result<Option<Vec<String>>> {
        match &filter[key] {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("{field}.{key}: expected strings"))
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .map(|v| Some(v).filter(|v| !v.is_empty())),
            _ => bail!("{field}.{key}: expected a list"),
        }
    };
    let mut tests = Vec::new();
    if let Some(arches) = strings("arches")? {
        tests.push(arches.iter().any(|a| a == host.go_arch));
    }
    if let Some(wanted) = strings("caps")? {
        tests.push(if all {
            wanted.iter().all(|c| caps.contains(c))
        } else {
            wanted.iter().any(|c| caps.contains(c))
        });
    }
    match &filter["minKernel"] {
        Value::Null => {}
        Value::String(v) => {
            let min = parse_version(v).ok_or_else(|| anyhow!("{field}.minKernel: {v:?}"))?;
            tests.push(host.kernel >= min);
        }
        _ => bail!("{field}.minKernel: expected a string such as \"4.8\""),
    }
    Ok(match (tests.is_empty(), all) {
        (true, all) => all,
        (false, true) => tests.iter().all(|t| *t),
        (false, false) => tests.iter().any(|t| *t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const X86_64: Host = Host {
        go_arch: "amd64",
        scmp_arch: "SCMP_ARCH_X86_64",
        kernel: (5, 10),
    };

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .flat_map(|c| c["names"].as_array().expect("names").clone())
            .map(|n| n.as_str().expect("name").to_owned())
            .collect()
    }

    #[test]
    fn docker_rules_are_kept_as_docker_keeps_them() {
        let docker = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrno": "ENOSYS",
            "archMap": [
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
                {"name": "arch_prctl", "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["ppc64le"]}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["acct"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "excludes": {"caps": ["CAP_SYS_PACCT"]}},
                {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
                {"names": ["new_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.1"}},
                {"names": ["old_call"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}}
            ]
        });
        let caps = ["CAP_CHOWN".to_owned(), "CAP_SYS_CHROOT".to_owned()];
        let oci = from_docker(docker, &caps, &X86_64).expect("converts");
        assert_eq!(
            oci["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(oci["defaultErrnoRet"], json!(libc::ENOSYS));
        assert_eq!(
            names(&oci),
            ["read", "arch_prctl", "chroot", "acct", "old_call"]
        );
        assert_eq!(oci["syscalls"][3]["errnoRet"], json!(1));
        assert!(serde_json::from_value::<LinuxSeccomp>(oci).is_ok());
    }

    #[test]
    fn the_built_in_default_compiles_and_refuses_only_what_the_capabilities_do_not_allow() {
        let builtin: Value = serde_json::from_str(BUILTIN_DEFAULT).expect("JSON");
        let plain = from_docker(builtin.clone(), &[], &X86_64).expect("converts");
        let admin = from_docker(builtin, &["CAP_SYS_ADMIN".to_owned()], &X86_64).expect("converts");
        for call in ["mount", "unshare", "setns", "bpf", "keyctl", "clone3"] {
            assert!(names(&plain).iter().any(|n| n == call), "{call}");
        }
        for call in ["mount", "unshare", "setns", "bpf", "clone3"] {
            assert!(!names(&admin).iter().any(|n| n == call), "{call}");
        }
        assert!(names(&admin).iter().any(|n| n == "keyctl"));
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ALLOW");
        // Every name is one libseccomp knows, and the rules compile on this machine.
        let profile =
            parse(BUILTIN_DEFAULT.as_bytes(), "built-in", &Capabilities::new()).expect("parses");
        peapod_seccomp::Filter::compile(&profile).expect("compiles");
    }

    #[test]
    fn oci_profiles_are_not_taken_for_docker_ones() {
        let oci = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
        assert!(!is_docker_format(&oci));
        assert!(is_docker_format(
            &json!({"defaultAction": "SCMP_ACT_ALLOW", "archMap": []})
        ));
    }

    #[test]
    fn conflicting_or_malformed_fields_are_named() {
        let both = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [], "archMap": []});
        let err = from_docker(both, &[], &X86_64).unwrap_err().to_string();
        assert!(err.contains("archMap"), "{err}");
        let bad = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": 4}}]});
        let err = from_docker(bad, &[], &X86_64).unwrap_err().to_string();
        assert!(err.contains("syscalls[0].includes.minKernel"), "{err}");
    }

    #[test]
    fn a_bad_field_is_named_with_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_BOOM"}]}"#,
        )
        .expect("write");
        let err = load(&path, &Capabilities::new()).unwrap_err().to_string();
        assert!(
            err.contains("p.json: syscalls[0].action: unknown variant"),
            "{err}"
        );
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_version("4.8"), Some((4, 8)));
        assert_eq!(parse_version("5"), Some((5, 0)));
        assert_eq!(parse_version("x.1"), None);
    }
}
