//! A default `config.json` (`peapod spec`) and the features document (`peapod features`).

use std::path::Path;

use anyhow::{anyhow, Context as _};
use peapod_container::{default_spec, ALL_CAPABILITIES};
use serde_json::json;

use crate::{Error, Result};

/// Writes runc's default `config.json` into `bundle` (rootless: with a user namespace that
/// maps the caller's ids); refuses to overwrite one.
pub fn write_default_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::runtime(anyhow!("{} exists already", path.display())));
    }
    let rootless = rootless.then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    let mut spec = default_spec(rootless);
    spec.set_version(peapod_state::OCI_VERSION.to_owned());
    if let Some(root) = spec.root_mut() {
        root.set_path(Path::new("rootfs").to_owned());
    }
    let mut value = serde_json::to_value(&spec).map_err(|e| Error::runtime(anyhow!(e)))?;
    sort_capabilities(&mut value);
    let json = serde_json::to_string_pretty(&value).map_err(|e| Error::runtime(anyhow!(e)))?;
    std::fs::write(&path, json + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(Error::runtime)?;
    Ok(())
}

/// Sorts each set of `process.capabilities`: the spec types keep them in a hash set, whose
/// order would change from one `peapod spec` to the next.
fn sort_capabilities(spec: &mut serde_json::Value) {
    let Some(sets) = spec
        .pointer_mut("/process/capabilities")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for set in sets.values_mut() {
        if let Some(list) = set.as_array_mut() {
            list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
}

/// The runtime-spec features document (features.md). Only what peapod really does is listed:
/// cgroups v1 and v2 through cgroupfs and the systemd driver (transient scopes over D-Bus, `--systemd-cgroup`).
pub fn features() -> serde_json::Value {
    let capabilities: Vec<String> = ALL_CAPABILITIES
        .iter()
        .map(|cap| format!("CAP_{cap}"))
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": peapod_state::OCI_VERSION,
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "ro", "rprivate", "rshared", "rslave",
            "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": peapod_seccomp::ACTIONS,
                "operators": peapod_seccomp::OPERATORS,
                "archs": peapod_seccomp::supported_architectures(),
                "knownFlags": peapod_seccomp::FLAGS,
                "supportedFlags": peapod_seccomp::FLAGS
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.peapod.version": env!("CARGO_PKG_VERSION")
        }
    })
}
