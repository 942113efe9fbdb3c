//! The default spec, as `runc spec` writes it, for containers made from a command line.

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxDeviceCgroupBuilder, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, Spec,
};

/// The `PATH` a container gets when its spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities of a container from [`default_spec`]: Docker's default set (podman 4's is
/// the same less `AUDIT_WRITE`, `MKNOD` and `NET_RAW`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// A spec with runc's defaults: new mount, pid, ipc, uts, network and cgroup namespaces; proc,
/// a tmpfs `/dev` with devpts, shm and mqueue, a read-only sysfs and cgroup mount (as
/// `docker run`: programs size themselves from the limits they see); the default masked and
/// read-only paths; `sh` as the command and `peapod` as the host name; `no_new_privs` and
/// `RLIMIT_NOFILE` 1024. Two differences: the capabilities are Docker's and podman's default
/// set ([`DEFAULT_CAPABILITIES`]; with `NET_RAW`, `ping` works) rather than runc's three. As
/// runc's, `linux.resources.devices` denies every device; the runtime adds the standard ones
/// (`/dev/null`, `/dev/zero`, ..., `mknod`) after the spec's rules.
///
/// With `rootless = Some((uid, gid))` it adds a user namespace that maps that uid and gid to
/// root inside and the subordinate ranges `/etc/subuid` and `/etc/subgid` give that user
/// above it, as podman does ([`peapod_ns::RootlessMaps`]; without ranges only the one id,
/// as `unshare -r`), and drops the devpts `gid=5` option, which needs a
/// mapped gid 5.
pub fn default_spec(rootless: Option<(u32, u32)>) -> Spec {
    spec_with_maps(rootless.map(|(uid, gid)| peapod_ns::RootlessMaps::for_ids(uid, gid)))
}

/// [`default_spec`] with a user namespace of the maps `rootless` gives (other than the
/// default ones, such as [`peapod_ns::RootlessMaps::keep_id`]'s), or none.
pub fn spec_with_maps(rootless: Option<peapod_ns::RootlessMaps>) -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("peapod".to_owned()));
    if let Some(linux) = spec.linux_mut() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build();
        // Building a rule with every field set cannot fail.
        let resources = deny_all.ok().map(|rule| {
            let mut resources = LinuxResources::default();
            resources.set_devices(Some(vec![rule]));
            resources
        });
        linux.set_resources(resources);
    }
    if let Some(process) = spec.process_mut() {
        let set: oci_spec::runtime::Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        caps.set_inheritable(None);
        caps.set_ambient(None);
        process.set_capabilities(Some(caps));
    }
    let Some(maps) = rootless else {
        return spec;
    };
    // devpts's `gid=5` needs gid 5 mapped.
    let gid5 = peapod_ns::is_mapped(&maps.gids, 5);
    if let Some(mounts) = spec.mounts_mut() {
        // An unprivileged user has no cgroup of its own to show (as runc's rootless spec).
        mounts.retain(|m| m.typ().as_deref() != Some("cgroup"));
        for m in mounts.iter_mut() {
            if let Some(options) = m.options().clone() {
                m.set_options(Some(
                    options
                        .into_iter()
                        .filter(|o| gid5 || o != "gid=5")
                        .collect(),
                ));
            }
        }
    }
    if let Some(linux) = spec.linux_mut() {
        // As `runc spec --rootless`: an unprivileged user cannot write cgroups.
        linux.set_resources(None);
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        let mut user = LinuxNamespace::default();
        user.set_typ(LinuxNamespaceType::User);
        namespaces.insert(0, user);
        linux.set_namespaces(Some(namespaces));
        let build = |maps: &[peapod_ns::IdMap]| {
            maps.iter()
                .map(|m| {
                    LinuxIdMappingBuilder::default()
                        .container_id(m.inside)
                        .host_id(m.outside)
                        .size(m.count)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
        };
        // Building a mapping with every field set cannot fail.
        if let (Ok(uids), Ok(gids)) = (build(&maps.uids), build(&maps.gids)) {
            linux.set_uid_mappings(Some(uids));
            linux.set_gid_mappings(Some(gids));
        }
    }
    spec
}
