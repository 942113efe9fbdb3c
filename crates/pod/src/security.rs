//! A manifest's `securityContext`, of the pod (`spec.securityContext`) and of each container
//! (`spec.containers[].securityContext`), merged as Kubernetes merges them (the container's
//! field wins) and mapped onto what `peapod run` does with `--user`, `--cap-add`,
//! `--cap-drop` and `--security-opt` ([`peapod_runtime::security::SecurityArgs`]), so that
//! both mean the same.
//!
//! What peapod cannot do as asked is refused naming the field, never run with other
//! privileges than asked: `privileged: true`, `procMount: Unmasked`, SELinux and AppArmor
//! profiles, sysctls outside Kubernetes' safe list.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, Spec};
use peapod_runtime::security::{parse_capability, parse_user, CapName, SecurityArgs, SecurityOpt};
use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::{ContainerPlan, ManifestError, PodPlan};

/// Kubernetes' safe sysctls (`SafeSysctlAllowlist` of the kubelet, 1.32): namespaced, and
/// unable to affect other pods. Any other one is refused, as a kubelet without
/// `--allowed-unsafe-sysctls` refuses it.
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The largest user or group id Kubernetes accepts (its validation: 0 to 2^31 - 1).
const MAX_ID: i64 = i32::MAX as i64;

fn bad(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A `securityContext` as written, of a pod or of a container (each level's own fields are
/// checked to be at the right level).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSecurityContext {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    seccomp_profile: Option<RawProfile>,
    app_armor_profile: Option<RawProfile>,
    se_linux_options: Option<Value>,
    windows_options: Option<Value>,
    // The pod's only.
    fs_group: Option<i64>,
    supplemental_groups: Option<Vec<i64>>,
    supplemental_groups_policy: Option<String>,
    fs_group_change_policy: Option<String>,
    sysctls: Option<Vec<RawSysctl>>,
    se_linux_change_policy: Option<String>,
    // A container's only.
    capabilities: Option<RawCapabilities>,
    privileged: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    read_only_root_filesystem: Option<bool>,
    proc_mount: Option<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    #[serde(rename = "type")]
    kind: Option<String>,
    localhost_profile: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawSysctl {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawCapabilities {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

/// `seccompProfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// The runtime's default profile, as `peapod run` applies it (also when none is given).
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
    /// The profile in this file (`localhostProfile`, found in the manifest's directory).
    Localhost(PathBuf),
}

/// What a container runs as, from its own and its pod's `securityContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityPlan {
    /// `runAsUser`: else the image's User.
    pub run_as_user: Option<u32>,
    /// `runAsGroup`: else the user's primary group.
    pub run_as_group: Option<u32>,
    /// `runAsNonRoot`: checked against the user it will run as before the pod is made.
    pub run_as_non_root: bool,
    /// `fsGroup` and `supplementalGroups`, added to the process's groups.
    pub groups: Vec<u32>,
    /// `supplementalGroupsPolicy: Strict`: the groups of the image's `/etc/group` are not
    /// added.
    pub strict_groups: bool,
    /// `capabilities.add`.
    pub cap_add: Vec<String>,
    /// `capabilities.drop`.
    pub cap_drop: Vec<String>,
    /// `allowPrivilegeEscalation`, negated; `None` keeps peapod's default (`no_new_privs` set).
    pub no_new_privileges: Option<bool>,
    /// `seccompProfile`.
    pub seccomp: Seccomp,
    /// The pod's `sysctls`, set in the pod's namespaces.
    pub sysctls: BTreeMap<String, String>,
}

/// The pod's `securityContext`, checked: what every container inherits.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodContext {
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    run_as_non_root: Option<bool>,
    seccomp: Option<Seccomp>,
    groups: Vec<u32>,
    strict_groups: bool,
    sysctls: BTreeMap<String, String>,
    /// `fsGroup`: owns the pod's emptyDir volumes.
    pub(crate) fs_group: Option<u32>,
}

fn id(at: &str, value: i64) -> Result<u32, ManifestError> {
    match (0..=MAX_ID).contains(&value) {
        true => Ok(value as u32),
        false => Err(bad(at, format!("{value} is not an id (0 to {MAX_ID})"))),
    }
}

/// Fields Kubernetes has at the other level only, refused naming where they go.
fn misplaced(at: &str, fields: &[(&str, bool)], level: &str) -> Result<(), ManifestError> {
    match fields.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(bad(
            format!("{at}.{name}"),
            format!("not a field here: it belongs in {level}"),
        )),
        None => Ok(()),
    }
}

/// The checks both levels share: unknown fields, SELinux, AppArmor, Windows.
fn common(
    at: &str,
    raw: &RawSecurityContext,
    warnings: &mut Vec<String>,
) -> Result<(), ManifestError> {
    if let Some(key) = raw.extra.keys().next() {
        return Err(bad(format!("{at}.{key}"), "unknown field"));
    }
    if raw.se_linux_options.is_some() || raw.se_linux_change_policy.is_some() {
        let field = match raw.se_linux_options.is_some() {
            true => "seLinuxOptions",
            false => "seLinuxChangePolicy",
        };
        return Err(bad(
            format!("{at}.{field}"),
            "not supported: peapod does not label processes or files for SELinux",
        ));
    }
    if let Some(profile) = &raw.app_armor_profile {
        if profile.kind.as_deref() != Some("Unconfined") {
            return Err(bad(
                format!("{at}.appArmorProfile.type"),
                "not supported: peapod applies no AppArmor profile (only Unconfined, which is what runs)",
            ));
        }
    }
    if raw.windows_options.is_some() {
        warnings.push(format!("{at}.windowsOptions: ignored (Windows only)"));
    }
    Ok(())
}

/// `seccompProfile` at `at`; a `Localhost` profile is a file in `base` (the manifest's
/// directory), found there without leaving it.
fn seccomp(at: &str, raw: &RawProfile, base: &Path) -> Result<Seccomp, ManifestError> {
    match (raw.kind.as_deref(), &raw.localhost_profile) {
        (Some("RuntimeDefault"), None) => Ok(Seccomp::RuntimeDefault),
        (Some("Unconfined"), None) => Ok(Seccomp::Unconfined),
        (Some("Localhost"), Some(file)) => {
            localhost_profile(&format!("{at}.localhostProfile"), file, base)
        }
        (Some("Localhost"), None) => Err(bad(
            format!("{at}.localhostProfile"),
            "missing: type Localhost needs a profile file",
        )),
        (Some("RuntimeDefault" | "Unconfined"), Some(_)) => Err(bad(
            format!("{at}.localhostProfile"),
            "only with type Localhost",
        )),
        _ => Err(bad(
            format!("{at}.type"),
            "expected RuntimeDefault, Unconfined or Localhost",
        )),
    }
}

/// The host path of profile `file`, a regular file inside `base` (resolved there with
/// `RESOLVE_IN_ROOT`, so that neither `..` nor a symbolic link leads out of it).
fn localhost_profile(at: &str, file: &str, base: &Path) -> Result<Seccomp, ManifestError> {
    if file.is_empty() || file.starts_with('/') {
        return Err(bad(
            at,
            format!("{file:?}: expected a path relative to the manifest's directory"),
        ));
    }
    let root = peapod_rootfs::InRoot::open(base).map_err(|e| bad(at, e.to_string()))?;
    let fd = root
        .resolve(Path::new(file))
        .map_err(|e| bad(at, format!("{file:?} in {}: {e}", base.display())))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| bad(at, e.to_string()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(bad(at, format!("{file:?} is not a regular file")));
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| bad(at, e.to_string()))?;
    Ok(Seccomp::Localhost(path))
}

/// `sysctls`: Kubernetes' safe ones only (`net.*` not with `hostNetwork`, whose namespace is
/// the host's); names written with `/` are taken as Kubernetes takes them.
fn sysctls(
    at: &str,
    raw: &[RawSysctl],
    host_network: bool,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut out = BTreeMap::new();
    for (i, sysctl) in raw.iter().enumerate() {
        let at = format!("{at}.sysctls[{i}]");
        let name = sysctl
            .name
            .as_deref()
            .ok_or_else(|| bad(format!("{at}.name"), "missing"))?;
        let key = name.replace('/', ".");
        if !SAFE_SYSCTLS.contains(&key.as_str()) {
            return Err(bad(
                format!("{at}.name"),
                format!(
                    "{name:?} is not one of Kubernetes' safe sysctls ({})",
                    SAFE_SYSCTLS.join(", ")
                ),
            ));
        }
        if host_network && key.starts_with("net.") {
            return Err(bad(
                format!("{at}.name"),
                format!(
                    "{name:?} is not allowed with hostNetwork: it would change the host's network"
                ),
            ));
        }
        let value = sysctl
            .value
            .clone()
            .ok_or_else(|| bad(format!("{at}.value"), "missing"))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// Checks `spec.securityContext` (at `at`).
pub(crate) fn pod(
    at: &str,
    raw: Option<RawSecurityContext>,
    host_network: bool,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<PodContext, ManifestError> {
    let Some(raw) = raw else {
        return Ok(PodContext::default());
    };
    common(at, &raw, warnings)?;
    misplaced(
        at,
        &[
            ("capabilities", raw.capabilities.is_some()),
            ("privileged", raw.privileged.is_some()),
            (
                "allowPrivilegeEscalation",
                raw.allow_privilege_escalation.is_some(),
            ),
            (
                "readOnlyRootFilesystem",
                raw.read_only_root_filesystem.is_some(),
            ),
            ("procMount", raw.proc_mount.is_some()),
        ],
        "a container's securityContext",
    )?;
    let fs_group = raw
        .fs_group
        .map(|g| id(&format!("{at}.fsGroup"), g))
        .transpose()?;
    let mut groups: Vec<u32> = fs_group.into_iter().collect();
    for (i, g) in raw.supplemental_groups.iter().flatten().enumerate() {
        let g = id(&format!("{at}.supplementalGroups[{i}]"), *g)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let strict_groups = match raw.supplemental_groups_policy.as_deref() {
        None | Some("Merge") => false,
        Some("Strict") => true,
        Some(other) => {
            return Err(bad(
                format!("{at}.supplementalGroupsPolicy"),
                format!("{other:?}: expected Merge or Strict"),
            ))
        }
    };
    match raw.fs_group_change_policy.as_deref() {
        // An emptyDir is new: both change its owner, the only volume fsGroup applies to here.
        None | Some("Always" | "OnRootMismatch") => {}
        Some(other) => {
            return Err(bad(
                format!("{at}.fsGroupChangePolicy"),
                format!("{other:?}: expected Always or OnRootMismatch"),
            ))
        }
    }
    Ok(PodContext {
        run_as_user: raw
            .run_as_user
            .map(|u| id(&format!("{at}.runAsUser"), u))
            .transpose()?,
        run_as_group: raw
            .run_as_group
            .map(|g| id(&format!("{at}.runAsGroup"), g))
            .transpose()?,
        run_as_non_root: raw.run_as_non_root,
        seccomp: raw
            .seccomp_profile
            .as_ref()
            .map(|p| seccomp(&format!("{at}.seccompProfile"), p, base))
            .transpose()?,
        groups,
        strict_groups,
        sysctls: sysctls(at, raw.sysctls.as_deref().unwrap_or_default(), host_network)?,
        fs_group,
    })
}

/// Checks a container's `securityContext` (at `at`) over its pod's; returns what it runs as,
/// and whether its root filesystem is read-only.
pub(crate) fn container(
    at: &str,
    raw: Option<RawSecurityContext>,
    pod: &PodContext,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<(SecurityPlan, bool), ManifestError> {
    let raw = raw.unwrap_or_default();
    common(at, &raw, warnings)?;
    misplaced(
        at,
        &[
            ("fsGroup", raw.fs_group.is_some()),
            ("supplementalGroups", raw.supplemental_groups.is_some()),
            (
                "supplementalGroupsPolicy",
                raw.supplemental_groups_policy.is_some(),
            ),
            ("fsGroupChangePolicy", raw.fs_group_change_policy.is_some()),
            ("sysctls", raw.sysctls.is_some()),
        ],
        "spec.securityContext (the pod's)",
    )?;
    if raw.privileged == Some(true) {
        return Err(bad(
            format!("{at}.privileged"),
            "not supported: peapod has no privileged mode (every capability, the host's devices, no seccomp: root on the host); add the capabilities it needs with capabilities.add",
        ));
    }
    match raw.proc_mount.as_deref() {
        None | Some("Default") => {}
        Some("Unmasked") => {
            return Err(bad(
                format!("{at}.procMount"),
                "not supported: peapod always masks /proc's host paths (Default)",
            ))
        }
        Some(other) => {
            return Err(bad(
                format!("{at}.procMount"),
                format!("{other:?}: expected Default or Unmasked"),
            ))
        }
    }
    let (mut cap_add, mut cap_drop) = (Vec::new(), Vec::new());
    if let Some(caps) = &raw.capabilities {
        for (list, names, out) in [
            ("add", &caps.add, &mut cap_add),
            ("drop", &caps.drop, &mut cap_drop),
        ] {
            for (i, name) in names.iter().enumerate() {
                parse_capability(name)
                    .map_err(|e| bad(format!("{at}.capabilities.{list}[{i}]"), e))?;
                out.push(name.clone());
            }
        }
    }
    let sys_admin = cap_add.iter().any(|c| {
        matches!(
            parse_capability(c),
            Ok(CapName::All | CapName::One(Capability::SysAdmin))
        )
    });
    if raw.allow_privilege_escalation == Some(false) && sys_admin {
        return Err(bad(
            format!("{at}.allowPrivilegeEscalation"),
            "cannot be false with CAP_SYS_ADMIN added (as Kubernetes validates)",
        ));
    }
    let seccomp = match &raw.seccomp_profile {
        Some(p) => seccomp(&format!("{at}.seccompProfile"), p, base)?,
        None => pod.seccomp.clone().unwrap_or_default(),
    };
    let plan = SecurityPlan {
        run_as_user: match raw.run_as_user {
            Some(u) => Some(id(&format!("{at}.runAsUser"), u)?),
            None => pod.run_as_user,
        },
        run_as_group: match raw.run_as_group {
            Some(g) => Some(id(&format!("{at}.runAsGroup"), g)?),
            None => pod.run_as_group,
        },
        run_as_non_root: raw.run_as_non_root.or(pod.run_as_non_root).unwrap_or(false),
        groups: pod.groups.clone(),
        strict_groups: pod.strict_groups,
        cap_add,
        cap_drop,
        no_new_privileges: raw.allow_privilege_escalation.map(|allow| !allow),
        seccomp,
        sysctls: pod.sysctls.clone(),
    };
    Ok((plan, raw.read_only_root_filesystem.unwrap_or(false)))
}

/// The `USER[:GROUP]` container `c` runs as: `runAsUser` and `runAsGroup` over the image's
/// User (`image_user`); `None` when neither says anything (root).
fn user_of(security: &SecurityPlan, image_user: Option<&str>) -> Option<String> {
    let image_user = image_user.filter(|u| !u.is_empty());
    let image_name = image_user.map(|u| u.split(':').next().unwrap_or(u));
    match (security.run_as_user, security.run_as_group) {
        (Some(uid), Some(gid)) => Some(format!("{uid}:{gid}")),
        (Some(uid), None) => Some(uid.to_string()),
        (None, Some(gid)) => Some(format!("{}:{gid}", image_name.unwrap_or("0"))),
        (None, None) => image_user.map(str::to_owned),
    }
}

/// The kubelet's `runAsNonRoot` check of container `c` of pod `pod`, whose image's User is
/// `image_user`: with its messages.
pub(crate) fn verify_non_root(
    pod: &str,
    c: &ContainerPlan,
    image_user: Option<&str>,
) -> Result<(), String> {
    if !c.security.run_as_non_root {
        return Ok(());
    }
    let name = &c.name;
    if let Some(uid) = c.security.run_as_user {
        return match uid {
            0 => Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {name})"
            )),
            _ => Ok(()),
        };
    }
    let user = image_user
        .filter(|u| !u.is_empty())
        .map(|u| u.split(':').next().unwrap_or(u));
    match user.map(str::parse::<u32>) {
        Some(Err(_)) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({}), cannot verify user is non-root (pod: {pod:?}, container: {name})",
            user.unwrap_or_default()
        )),
        Some(Ok(0)) | None => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {name})"
        )),
        Some(Ok(_)) => Ok(()),
    }
}

/// Applies `c`'s security plan to its spec, as `peapod run` applies its flags: user (names
/// looked up in `accounts`, the layer or directory with the image's `/etc/passwd`), groups,
/// capabilities, `no_new_privs`, seccomp, and the pod's sysctls.
pub(crate) fn apply(
    spec: &mut Spec,
    c: &ContainerPlan,
    accounts: &Path,
    image_user: Option<&str>,
) -> anyhow::Result<()> {
    let security = &c.security;
    let user = user_of(security, image_user)
        .map(|u| parse_user(&u).map_err(|e| anyhow::anyhow!("user {u:?}: {e}")))
        .transpose()?;
    let names = |list: &[String]| -> anyhow::Result<Vec<CapName>> {
        list.iter()
            .map(|n| parse_capability(n).map_err(anyhow::Error::msg))
            .collect()
    };
    let (add, drop) = (names(&security.cap_add)?, names(&security.cap_drop)?);
    let mut options = Vec::new();
    match &security.seccomp {
        Seccomp::RuntimeDefault => {}
        Seccomp::Unconfined => options.push(SecurityOpt::Unconfined),
        Seccomp::Localhost(path) => options.push(SecurityOpt::Seccomp(path.clone())),
    }
    if let Some(on) = security.no_new_privileges {
        options.push(SecurityOpt::NoNewPrivileges(on));
    }
    SecurityArgs {
        cap_add: &add,
        cap_drop: &drop,
        user: user.as_ref(),
        security_opt: &options,
    }
    .apply(spec, accounts)?;
    if let Some(process) = spec.process_mut() {
        let mut user = process.user().clone();
        let mut gids = match security.strict_groups {
            true => Vec::new(),
            false => user.additional_gids().clone().unwrap_or_default(),
        };
        for g in &security.groups {
            if !gids.contains(g) && *g != user.gid() {
                gids.push(*g);
            }
        }
        user.set_additional_gids(Some(gids).filter(|g| !g.is_empty()));
        process.set_user(user);
    }
    if !security.sysctls.is_empty() {
        if let Some(linux) = spec.linux_mut() {
            let mut all = linux.sysctl().clone().unwrap_or_default();
            all.extend(security.sysctls.clone());
            linux.set_sysctl(Some(all));
        }
    }
    Ok(())
}

/// Refuses the pod before anything is made when a container's `runAsNonRoot` does not hold
/// for the user it would run as (its image's User, read from the image `play` pinned).
pub(crate) fn verify(
    plan: &PodPlan,
    image_user: impl Fn(&ContainerPlan) -> Result<Option<String>, peapod_runtime::Error>,
) -> Result<(), peapod_runtime::Error> {
    for c in plan.init_containers.iter().chain(&plan.containers) {
        if !c.security.run_as_non_root {
            continue;
        }
        let user = image_user(c)?;
        verify_non_root(&plan.name, c, user.as_deref())
            .map_err(|e| peapod_runtime::Error::usage(anyhow::anyhow!("{e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(user: Option<u32>, non_root: bool) -> ContainerPlan {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n";
        let mut c = crate::parse_manifest(text, Path::new("/"))
            .expect("parses")
            .plan
            .containers
            .remove(0);
        c.security.run_as_user = user;
        c.security.run_as_non_root = non_root;
        c
    }

    #[test]
    fn run_as_non_root_is_checked_as_the_kubelet_does() {
        let c = plan(None, true);
        let root = verify_non_root("p", &c, None).expect_err("root");
        assert_eq!(
            root,
            "container has runAsNonRoot and image will run as root (pod: \"p\", container: c)"
        );
        assert!(verify_non_root("p", &c, Some("0:0")).is_err());
        let named = verify_non_root("p", &c, Some("nginx")).expect_err("name");
        assert!(
            named.contains("non-numeric user (nginx), cannot verify user is non-root"),
            "{named}"
        );
        assert_eq!(verify_non_root("p", &c, Some("1000:1000")), Ok(()));
        assert!(verify_non_root("p", &plan(Some(0), true), Some("1000"))
            .expect_err("uid 0")
            .contains("runAsUser breaks non-root policy"));
        assert_eq!(verify_non_root("p", &plan(Some(5), true), None), Ok(()));
        assert_eq!(verify_non_root("p", &plan(None, false), None), Ok(()));
    }

    #[test]
    fn the_user_comes_from_run_as_fields_over_the_image() {
        let with = |u, g| SecurityPlan {
            run_as_user: u,
            run_as_group: g,
            ..SecurityPlan::default()
        };
        assert_eq!(
            user_of(&with(None, None), Some("app:staff")).as_deref(),
            Some("app:staff")
        );
        assert_eq!(
            user_of(&with(Some(7), None), Some("app")).as_deref(),
            Some("7")
        );
        assert_eq!(
            user_of(&with(None, Some(9)), Some("app:staff")).as_deref(),
            Some("app:9")
        );
        assert_eq!(user_of(&with(None, Some(9)), None).as_deref(), Some("0:9"));
        assert_eq!(
            user_of(&with(Some(1), Some(2)), None).as_deref(),
            Some("1:2")
        );
        assert_eq!(user_of(&with(None, None), Some("")), None);
    }

    fn error_of(spec_fields: &str, container_fields: &str) -> String {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec_fields}  containers: [{{name: c, image: busybox{container_fields}}}]\n"
        );
        crate::parse_manifest(&text, Path::new("/"))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn fields_peapod_cannot_honour_are_refused_naming_them() {
        for (spec, container, want) in [
            ("  securityContext: {privileged: true}\n", "", "spec.securityContext.privileged: not a field here"),
            ("", ", securityContext: {fsGroup: 1}", "spec.containers[0].securityContext.fsGroup: not a field here"),
            ("", ", securityContext: {privileged: true}", "spec.containers[0].securityContext.privileged: not supported"),
            ("", ", securityContext: {procMount: Unmasked}", "securityContext.procMount: not supported"),
            ("", ", securityContext: {capabilities: {add: [FLY]}}", "securityContext.capabilities.add[0]: unknown capability"),
            ("", ", securityContext: {runAsUser: -1}", "securityContext.runAsUser: -1 is not an id"),
            ("", ", securityContext: {seLinuxOptions: {level: s0}}", "securityContext.seLinuxOptions: not supported"),
            ("", ", securityContext: {appArmorProfile: {type: RuntimeDefault}}", "appArmorProfile.type: not supported"),
            ("", ", securityContext: {allowPrivilegeEscalation: false, capabilities: {add: [SYS_ADMIN]}}", "allowPrivilegeEscalation: cannot be false"),
            ("", ", securityContext: {seccompProfile: {type: Localhost}}", "seccompProfile.localhostProfile: missing"),
            ("  securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}\n", "", "sysctls[0].name: \"kernel.msgmax\" is not one of Kubernetes' safe sysctls"),
            ("  hostNetwork: true\n  securityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}\n", "", "is not allowed with hostNetwork"),
        ] {
            let e = error_of(spec, container);
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn the_containers_context_goes_over_the_pods() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsUser: 1, runAsGroup: 2, fsGroup: 3, supplementalGroups: [4, 3], seccompProfile: {type: Unconfined}, sysctls: [{name: net/ipv4/tcp_syncookies, value: '0'}]}\n  containers:\n  - {name: a, image: busybox, securityContext: {runAsUser: 5, allowPrivilegeEscalation: true, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}}\n  - {name: b, image: busybox, securityContext: {seccompProfile: {type: RuntimeDefault}, readOnlyRootFilesystem: true}}\n";
        let plan = crate::parse_manifest(text, Path::new("/"))
            .expect("parses")
            .plan;
        let (a, b) = (&plan.containers[0], &plan.containers[1]);
        assert_eq!(
            (a.security.run_as_user, a.security.run_as_group),
            (Some(5), Some(2))
        );
        assert_eq!(b.security.run_as_user, Some(1));
        assert_eq!(a.security.groups, [3, 4]);
        assert_eq!(plan.fs_group, Some(3));
        assert_eq!(a.security.seccomp, Seccomp::Unconfined);
        assert_eq!(b.security.seccomp, Seccomp::RuntimeDefault);
        assert_eq!(a.security.no_new_privileges, Some(false));
        assert_eq!(b.security.no_new_privileges, None);
        assert!(b.read_only_root && !a.read_only_root);
        assert_eq!(a.security.cap_drop, ["ALL"]);
        assert_eq!(
            a.security
                .sysctls
                .get("net.ipv4.tcp_syncookies")
                .map(String::as_str),
            Some("0")
        );
    }
}
