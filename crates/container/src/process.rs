//! What the container process becomes just before its entrypoint: its resource limits,
//! sysctls, OOM score, user and groups, capabilities, `no_new_privs` and umask
//! (`process.*` and `linux.sysctl` of the spec).

use std::collections::BTreeMap;

use oci_spec::runtime::{Capabilities, Capability, PosixRlimitType, Process};
use peapod_ns::{Namespace, NamespaceSet};

use crate::config::{bad, ConfigError};

/// `setrlimit`'s resource type: `__rlimit_resource_t` with glibc, `c_int` elsewhere.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// One `process.rlimits` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rlimit {
    name: &'static str,
    resource: Resource,
    soft: u64,
    hard: u64,
}

/// The five capability sets, as bit masks (bit N is capability number N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CapSets {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
}

/// The process attributes of the spec, checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessAttrs {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    umask: Option<u32>,
    /// `None`: the spec sets no capabilities, so the process keeps the runtime's.
    caps: Option<CapSets>,
    no_new_privileges: bool,
    rlimits: Vec<Rlimit>,
    oom_score_adj: Option<i32>,
    sysctls: Vec<(String, String)>,
}

/// Every capability the runtime spec names, in the kernel's order: a capability's index here
/// is its number in `linux/capability.h`.
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The bit of a capability in the kernel's masks (`1 << CAP_X`).
fn cap_bit(cap: Capability) -> u64 {
    // Every variant is in the table (a unit test checks it): the 0 is never taken.
    ALL_CAPABILITIES
        .iter()
        .position(|c| *c == cap)
        .map_or(0, |number| 1u64 << number)
}

fn cap_mask(set: &Option<Capabilities>) -> u64 {
    set.iter()
        .flatten()
        .fold(0u64, |mask, cap| mask | cap_bit(*cap))
}

fn rlimit_resource(typ: PosixRlimitType) -> (&'static str, Resource) {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => ("RLIMIT_CPU", libc::RLIMIT_CPU),
        RlimitFsize => ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        RlimitData => ("RLIMIT_DATA", libc::RLIMIT_DATA),
        RlimitStack => ("RLIMIT_STACK", libc::RLIMIT_STACK),
        RlimitCore => ("RLIMIT_CORE", libc::RLIMIT_CORE),
        RlimitRss => ("RLIMIT_RSS", libc::RLIMIT_RSS),
        RlimitNproc => ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        RlimitNofile => ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        RlimitMemlock => ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        RlimitAs => ("RLIMIT_AS", libc::RLIMIT_AS),
        RlimitLocks => ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        RlimitSigpending => ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        RlimitMsgqueue => ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        RlimitNice => ("RLIMIT_NICE", libc::RLIMIT_NICE),
        RlimitRtprio => ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        RlimitRttime => ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    }
}

/// The namespace a sysctl belongs to, or `None` for a host-wide one (which a container must
/// not set). The same list as runc's.
fn sysctl_namespace(key: &str) -> Option<Namespace> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(Namespace::Ipc)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(Namespace::Uts)
    } else if key.starts_with("net.") {
        Some(Namespace::Net)
    } else {
        None
    }
}

impl ProcessAttrs {
    /// Checks the process attributes and `linux.sysctl`. `own_namespaces` are those the
    /// container gets new or joins (a sysctl may only be set in one of them).
    pub(crate) fn from_spec(
        process: &Process,
        sysctl: Option<&std::collections::HashMap<String, String>>,
        own_namespaces: NamespaceSet,
    ) -> Result<ProcessAttrs, ConfigError> {
        let user = process.user();
        if let Some(mask) = user.umask() {
            if mask > 0o777 {
                return Err(bad(
                    "process.user.umask",
                    format!("{mask:#o} is above 0777"),
                ));
            }
        }
        let caps = process.capabilities().as_ref().map(|c| CapSets {
            bounding: cap_mask(c.bounding()),
            effective: cap_mask(c.effective()),
            permitted: cap_mask(c.permitted()),
            inheritable: cap_mask(c.inheritable()),
            ambient: cap_mask(c.ambient()),
        });
        let mut rlimits: Vec<Rlimit> = Vec::new();
        for (i, r) in process.rlimits().iter().flatten().enumerate() {
            let (name, resource) = rlimit_resource(r.typ());
            if r.soft() > r.hard() {
                return Err(bad(
                    format!("process.rlimits[{i}]"),
                    format!(
                        "{name}: soft limit {} is above hard limit {}",
                        r.soft(),
                        r.hard()
                    ),
                ));
            }
            if rlimits.iter().any(|seen| seen.resource == resource) {
                return Err(bad(
                    format!("process.rlimits[{i}].type"),
                    format!("{name} listed twice"),
                ));
            }
            rlimits.push(Rlimit {
                name,
                resource,
                soft: r.soft(),
                hard: r.hard(),
            });
        }
        // Sorted, so that the order of the writes does not depend on a hash map.
        let sorted: BTreeMap<&String, &String> = sysctl.into_iter().flatten().collect();
        let mut sysctls = Vec::new();
        for (key, value) in sorted {
            let field = format!("linux.sysctl.{key}");
            let valid_key = !key.is_empty()
                && key
                    .split(['.', '/'])
                    .all(|part| !part.is_empty() && part != "." && part != "..");
            if !valid_key {
                return Err(bad(field, "not a sysctl name"));
            }
            let key = key.replace('/', ".");
            match sysctl_namespace(&key) {
                Some(ns) if own_namespaces.contains(ns) => {}
                Some(ns) => {
                    return Err(bad(
                        field,
                        format!(
                            "the container shares the host's {ns} namespace; it cannot set this"
                        ),
                    ))
                }
                None => {
                    return Err(bad(
                        field,
                        "a host-wide sysctl, not one of a namespace; a container cannot set it",
                    ))
                }
            }
            sysctls.push((key, value.clone()));
        }
        Ok(ProcessAttrs {
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            caps,
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            rlimits,
            oom_score_adj: process.oom_score_adj(),
            sysctls,
        })
    }

    /// Whether the process gets `no_new_privs` (`process.noNewPrivileges`).
    pub(crate) fn no_new_privileges(&self) -> bool {
        self.no_new_privileges
    }

    /// Writes the sysctls and the OOM score. Runs in the container process once it is in its
    /// namespaces and before it enters its rootfs: `/proc/sys` is still the host's mount,
    /// writable, and a namespaced sysctl takes effect in the namespace of the writer.
    pub(crate) fn apply_kernel_settings(&self) -> Result<(), String> {
        for (key, value) in &self.sysctls {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| format!("cannot set sysctl {key} to {value:?}: {e}"))?;
        }
        if let Some(score) = self.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", score.to_string())
                .map_err(|e| format!("cannot set the OOM score adjustment to {score}: {e}"))?;
        }
        Ok(())
    }

    /// Sets the resource limits, in the container process before it drops its privileges (a
    /// raised hard limit needs `CAP_SYS_RESOURCE`).
    pub(crate) fn apply_rlimits(&self) -> Result<(), String> {
        for r in &self.rlimits {
            let limit = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            // SAFETY: setrlimit reads one rlimit struct from a valid reference.
            if unsafe { libc::setrlimit(r.resource, &limit) } != 0 {
                let err = std::io::Error::last_os_error();
                return Err(format!(
                    "cannot set {} to soft {} hard {}: {err}",
                    r.name, r.soft, r.hard
                ));
            }
        }
        Ok(())
    }

    /// The uid the process runs as (`process.user.uid`).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// Becomes the spec's user, with its groups and capabilities, sets `no_new_privs` and the
    /// umask. As runc: the bounding set is cut first (that needs `CAP_SETPCAP`), the ids change
    /// with `PR_SET_KEEPCAPS` so the permitted set survives, then the sets are set exactly.
    /// The parent-death signal, which a change of credentials clears, is set again.
    pub(crate) fn become_user(&self, pdeathsig: Option<libc::c_int>) -> Result<(), String> {
        let last_cap = last_cap();
        let known = if last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (last_cap + 1)) - 1
        };
        if let Some(caps) = &self.caps {
            let unknown =
                (caps.bounding | caps.effective | caps.permitted | caps.inheritable | caps.ambient)
                    & !known;
            if unknown != 0 {
                tracing::warn!(
                    "process.capabilities: this kernel knows capabilities up to {last_cap}; \
                     leaving out the others (mask {unknown:#x})"
                );
            }
            for cap in 0..=last_cap {
                if caps.bounding & (1 << cap) == 0 {
                    prctl(libc::PR_CAPBSET_DROP, cap.into(), 0).map_err(|e| {
                        format!("cannot drop capability {cap} from the bounding set: {e}")
                    })?;
                }
            }
            prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
        }
        self.set_ids()?;
        if let Some(caps) = &self.caps {
            prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
            capset(
                caps.effective & known,
                caps.permitted & known,
                caps.inheritable & known,
            )
            .map_err(|e| format!("cannot set capabilities: {e}"))?;
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
            )
            .map_err(|e| format!("cannot clear the ambient capabilities: {e}"))?;
            for cap in 0..=last_cap {
                if caps.ambient & known & (1 << cap) != 0 {
                    // As runc: an ambient capability that is not also permitted and inheritable
                    // cannot be raised; that is not an error.
                    if let Err(e) = prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap.into(),
                    ) {
                        tracing::debug!("cannot raise ambient capability {cap}: {e}");
                    }
                }
            }
        }
        if let Some(sig) = pdeathsig {
            let sig = libc::c_ulong::try_from(sig).unwrap_or(0);
            prctl(libc::PR_SET_PDEATHSIG, sig, 0).map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
        }
        if self.no_new_privileges {
            prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
                .map_err(|e| format!("cannot set no_new_privs: {e}"))?;
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask only changes this process's file mode mask; it cannot fail.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        Ok(())
    }

    fn set_ids(&self) -> Result<(), String> {
        // A user namespace made without privilege denies setgroups: then the groups stay as
        // they are (none but the mapped ones), and asking for more is an error.
        let setgroups_denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !setgroups_denied {
            nix::unistd::setgroups(
                &self
                    .additional_gids
                    .iter()
                    .map(|g| nix::unistd::Gid::from_raw(*g))
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| format!("cannot set the additional groups: {e}"))?;
        } else if !self.additional_gids.is_empty() {
            return Err(
                "process.user.additionalGids: setgroups is denied in this user namespace".into(),
            );
        }
        let gid = nix::unistd::Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| format!("cannot become group {}: {e}", self.gid))?;
        let uid = nix::unistd::Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| format!("cannot become user {}: {e}", self.uid))?;
        Ok(())
    }
}

/// The highest capability number this kernel knows (`CAP_LAST_CAP`).
fn last_cap() -> u32 {
    // PR_CAPBSET_READ fails with EINVAL for a capability the kernel does not know.
    let mut last = 0;
    while last < 63 && prctl(libc::PR_CAPBSET_READ, (last + 1).into(), 0).is_ok() {
        last += 1;
    }
    last
}

/// `prctl` with integer arguments, the unused ones zero (as `PR_CAP_AMBIENT` and
/// `PR_SET_NO_NEW_PRIVS` require).
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: the options used here take integer arguments only; no memory is passed.
    let ret = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `capset(2)` on this process, with the 64-bit (version 3) layout.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |mask: u64, high: bool| (if high { mask >> 32 } else { mask & 0xffff_ffff }) as u32;
    let data = [false, true].map(|high| Data {
        effective: half(effective, high),
        permitted: half(permitted, high),
        inheritable: half(inheritable, high),
    });
    // SAFETY: capset reads one header and two data structs (version 3) from valid memory.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        process: serde_json::Value,
        sysctl: serde_json::Value,
    ) -> Result<ProcessAttrs, ConfigError> {
        let process: Process = serde_json::from_value(process).expect("process");
        let sysctl: std::collections::HashMap<String, String> =
            serde_json::from_value(sysctl).expect("sysctl");
        let mut own = NamespaceSet::empty();
        own.insert(Namespace::Ipc);
        own.insert(Namespace::Net);
        ProcessAttrs::from_spec(&process, Some(&sysctl), own)
    }

    #[test]
    fn capabilities_become_masks() {
        let a = attrs(
            serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"]}}),
            serde_json::json!({}),
        )
        .expect("valid");
        let caps = a.caps.expect("caps");
        assert_eq!(caps.bounding, 1 << 0 | 1 << 5);
        assert_eq!(caps.effective, 1 << 5);
        assert_eq!(caps.ambient, 0);
    }

    #[test]
    fn capability_table_is_in_kernel_order() {
        // Spot checks against linux/capability.h, and every entry distinct.
        assert_eq!(cap_bit(Capability::Chown), 1 << 0);
        assert_eq!(cap_bit(Capability::SysAdmin), 1 << 21);
        assert_eq!(cap_bit(Capability::Setfcap), 1 << 31);
        assert_eq!(cap_bit(Capability::CheckpointRestore), 1 << 40);
        let all = ALL_CAPABILITIES.iter().fold(0u64, |m, c| m | cap_bit(*c));
        assert_eq!(all, (1u64 << 41) - 1);
    }

    #[test]
    fn no_capabilities_field_keeps_them() {
        let a = attrs(
            serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}}),
            serde_json::json!({}),
        )
        .expect("valid");
        assert!(a.caps.is_none());
    }

    #[test]
    fn rlimits_are_checked() {
        let err = attrs(
            serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]}),
            serde_json::json!({}),
        )
        .unwrap_err();
        assert_eq!(err.field, "process.rlimits[0]");
        let err = attrs(
            serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 5},
                            {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 5}]}),
            serde_json::json!({}),
        )
        .unwrap_err();
        assert_eq!(err.field, "process.rlimits[1].type");
    }

    #[test]
    fn sysctls_must_belong_to_an_own_namespace() {
        let user = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}});
        let ok = attrs(
            user.clone(),
            serde_json::json!({"net.ipv4.ping_group_range": "0 0"}),
        )
        .expect("valid");
        assert_eq!(ok.sysctls[0].0, "net.ipv4.ping_group_range");
        let err = attrs(user.clone(), serde_json::json!({"kernel.hostname": "x"})).unwrap_err();
        assert!(err.problem.contains("uts"), "{err}");
        let err = attrs(user.clone(), serde_json::json!({"vm.swappiness": "1"})).unwrap_err();
        assert!(err.problem.contains("host-wide"), "{err}");
        let err = attrs(user, serde_json::json!({"net.../x": "1"})).unwrap_err();
        assert_eq!(err.problem, "not a sysctl name");
    }
}
