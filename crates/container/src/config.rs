//! The validated container configuration, made from an OCI spec.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Process, Spec};
use peapod_ns::{IdMap, Namespace, NamespaceSet};
use peapod_rootfs::{Mount, MountOptions, Node, NodeKind, Overlay, Propagation, RootfsPlan};

use crate::console::{Console, WindowSize};
use crate::hooks::Hooks;
use crate::process::ProcessAttrs;
use crate::session::SessionKeyring;

/// A field of the spec that is missing or wrong. Displays as `field: problem`, where the
/// field is its JSON path (`linux.namespaces[2].type`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The JSON path of the field.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

pub(crate) fn bad(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// What the runtime trusts about a container: made by [`ContainerConfig::from_spec`], which
/// checks everything that can be checked before anything on the host changes.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub(crate) command: Command,
    pub(crate) hostname: Option<String>,
    pub(crate) domainname: Option<String>,
    pub(crate) new_namespaces: NamespaceSet,
    pub(crate) joined_namespaces: Vec<(Namespace, PathBuf)>,
    pub(crate) uid_maps: Vec<IdMap>,
    pub(crate) gid_maps: Vec<IdMap>,
    pub(crate) rootfs: RootfsPlan,
    /// `linux.timeOffsets` as `/proc/PID/timens_offsets` takes them, for a new time
    /// namespace.
    pub(crate) time_offsets: Option<String>,
    /// The cgroup mounts of a container without a cgroup namespace, with their place in
    /// the rootfs's mounts: made binds of its own cgroup's directories by `rootfs_in`.
    pub(crate) cgroup_binds: Vec<(usize, Mount)>,
    /// No mount namespace of its own: `chroot` into the root, no mount at all.
    pub(crate) chroot_only: bool,
    pub(crate) preserve_fds: u32,
    /// `process.terminal` and `process.consoleSize`: the pty set-up needs a console socket.
    pub(crate) terminal: Option<Option<WindowSize>>,
    pub(crate) console: Option<Console>,
    pub(crate) hooks: Hooks,
    pub(crate) process: ProcessAttrs,
    /// The compiled `linux.seccomp` filter, loaded by the container process just before
    /// `execve` (see `child.rs` for when exactly).
    pub(crate) seccomp: Option<peapod_seccomp::Filter>,
    /// The session keyring the process joins: an anonymous new one unless
    /// [`ContainerConfig::session_keyring`] says otherwise.
    pub(crate) session_keyring: SessionKeyring,
}

/// `linux.timeOffsets` in the form `/proc/PID/timens_offsets` takes (`monotonic 10 0`, one
/// clock a line), checked: only the two clocks a time namespace has, and only for a new one.
fn time_offsets(
    linux: Option<&oci_spec::runtime::Linux>,
    new_namespaces: &NamespaceSet,
) -> Result<Option<String>, ConfigError> {
    let Some(offsets) = linux.and_then(|l| l.time_offsets().as_ref()) else {
        return Ok(None);
    };
    if offsets.is_empty() {
        return Ok(None);
    }
    if !new_namespaces.contains(Namespace::Time) {
        return Err(bad(
            "linux.timeOffsets",
            "needs a new time namespace ({\"type\": \"time\"} in linux.namespaces, without a path)",
        ));
    }
    let mut clocks: Vec<(&String, _)> = offsets.iter().collect();
    clocks.sort_by_key(|(clock, _)| clock.as_str());
    let mut text = String::new();
    for (clock, offset) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(bad(
                format!("linux.timeOffsets.{clock}"),
                "unknown clock (a time namespace has monotonic and boottime)",
            ));
        }
        let nanosecs = offset.nanosecs().unwrap_or(0);
        if nanosecs >= 1_000_000_000 {
            return Err(bad(
                format!("linux.timeOffsets.{clock}.nanosecs"),
                "must be below 1000000000",
            ));
        }
        text.push_str(&format!(
            "{clock} {} {nanosecs}\n",
            offset.secs().unwrap_or(0)
        ));
    }
    Ok(Some(text))
}

/// What a container without its own mount namespace cannot have: each would be a mount in
/// the runtime's namespace.
fn refuse_mounts_without_a_namespace(spec: &Spec, rootfs: &RootfsPlan) -> Result<(), ConfigError> {
    let linux = spec.linux().as_ref();
    let some = |v: Option<&Vec<String>>| v.is_some_and(|v| !v.is_empty());
    let needs = "needs a mount namespace of the container's own (linux.namespaces)";
    if some(linux.and_then(|l| l.masked_paths().as_ref()))
        || some(linux.and_then(|l| l.readonly_paths().as_ref()))
    {
        return Err(bad(
            "linux.maskedPaths",
            "unable to restrict sys entries without a private mount namespace",
        ));
    }
    if !rootfs.mounts().is_empty() {
        return Err(bad("mounts", needs));
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        return Err(bad("root.readonly", needs));
    }
    if linux.is_some_and(|l| l.devices().as_ref().is_some_and(|d| !d.is_empty())) {
        return Err(bad("linux.devices", needs));
    }
    if linux.is_some_and(|l| l.rootfs_propagation().is_some()) {
        return Err(bad("linux.rootfsPropagation", needs));
    }
    Ok(())
}

fn cstring(field: String, value: &str) -> Result<CString, ConfigError> {
    CString::new(value).map_err(|_| bad(field, "must not contain a NUL byte"))
}

fn namespace_kind(typ: LinuxNamespaceType) -> Namespace {
    match typ {
        LinuxNamespaceType::Mount => Namespace::Mount,
        LinuxNamespaceType::Cgroup => Namespace::Cgroup,
        LinuxNamespaceType::Uts => Namespace::Uts,
        LinuxNamespaceType::Ipc => Namespace::Ipc,
        LinuxNamespaceType::User => Namespace::User,
        LinuxNamespaceType::Pid => Namespace::Pid,
        LinuxNamespaceType::Network => Namespace::Net,
        LinuxNamespaceType::Time => Namespace::Time,
    }
}

/// The spec's name of a namespace kind (`linux.namespaces[].type`).
pub fn oci_namespace_type(kind: Namespace) -> LinuxNamespaceType {
    match kind {
        Namespace::Mount => LinuxNamespaceType::Mount,
        Namespace::Cgroup => LinuxNamespaceType::Cgroup,
        Namespace::Uts => LinuxNamespaceType::Uts,
        Namespace::Ipc => LinuxNamespaceType::Ipc,
        Namespace::User => LinuxNamespaceType::User,
        Namespace::Pid => LinuxNamespaceType::Pid,
        Namespace::Net => LinuxNamespaceType::Network,
        Namespace::Time => LinuxNamespaceType::Time,
    }
}

/// For a rootless caller with only its own id mapped: where more ids come from.
fn subordinate_hint(what: &str, maps: &[IdMap]) -> String {
    let euid = nix::unistd::geteuid();
    if euid.is_root() || maps.len() > 1 {
        return String::new();
    }
    let user = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map_or_else(|| euid.to_string(), |u| u.name);
    format!(
        ": add a range for {user} to /etc/sub{what} (and install newuidmap/newgidmap, Debian \
         package uidmap; see docs/runtime.md, \"User namespaces\")"
    )
}

/// Refuses a `process.user` whose ids the new user namespace does not map: the process
/// could not become them (`setresuid` fails with `EINVAL`), which is typical of a rootless
/// `--user 1000` where only the caller's own id is mapped.
fn check_user_mapped(
    process: Option<&oci_spec::runtime::Process>,
    uid_maps: &[IdMap],
    gid_maps: &[IdMap],
) -> Result<(), ConfigError> {
    let Some(user) = process.map(|p| p.user()) else {
        return Ok(());
    };
    let mapped = |maps: &[IdMap], id: u32| {
        maps.iter()
            .any(|m| id >= m.inside && u64::from(id) < u64::from(m.inside) + u64::from(m.count))
    };
    let shown = |maps: &[IdMap]| {
        maps.iter()
            .map(|m| {
                format!(
                    "{}-{}",
                    m.inside,
                    u64::from(m.inside) + u64::from(m.count) - 1
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unmapped = |field: String, what: &str, id: u32, maps: &[IdMap]| {
        bad(
            field,
            format!(
                "{what} {id} is not mapped in the container (its user namespace maps {what}s {}){}",
                shown(maps),
                subordinate_hint(what, maps)
            ),
        )
    };
    if !mapped(uid_maps, user.uid()) {
        return Err(unmapped(
            "process.user.uid".into(),
            "uid",
            user.uid(),
            uid_maps,
        ));
    }
    if !mapped(gid_maps, user.gid()) {
        return Err(unmapped(
            "process.user.gid".into(),
            "gid",
            user.gid(),
            gid_maps,
        ));
    }
    let extra = user.additional_gids().as_deref().unwrap_or_default();
    if let Some((i, gid)) = extra
        .iter()
        .enumerate()
        .find(|(_, gid)| !mapped(gid_maps, **gid))
    {
        return Err(unmapped(
            format!("process.user.additionalGids[{i}]"),
            "gid",
            *gid,
            gid_maps,
        ));
    }
    Ok(())
}

fn id_maps(field: &str, maps: &Option<Vec<LinuxIdMapping>>) -> Result<Vec<IdMap>, ConfigError> {
    let maps = maps.as_deref().unwrap_or_default();
    maps.iter()
        .enumerate()
        .map(|(i, m)| {
            if m.size() == 0 {
                return Err(bad(format!("{field}[{i}].size"), "must be at least 1"));
            }
            Ok(IdMap {
                inside: m.container_id(),
                outside: m.host_id(),
                count: m.size(),
            })
        })
        .collect()
}

/// Compiles `linux.seccomp` (errors name the field under `linux.seccomp`): in the runtime,
/// before any process exists, so the container process only loads it.
/// Where [`compile_seccomp`] keeps compiled filters, once the runtime has named a place.
static SECCOMP_CACHE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Keeps compiled seccomp filters in `dir` (see `peapod_seccomp::FilterCache`), for every
/// container and exec of this process from now on: the runtime calls it once, with a
/// directory in its state root. The directory is made when the first profile is compiled; one
/// that cannot be used is said in the log and passed over (the filter is then compiled, as
/// without a cache).
pub fn use_seccomp_cache(dir: &Path) {
    let _ = SECCOMP_CACHE.set(dir.to_owned());
}

fn compile_cached(
    profile: &oci_spec::runtime::LinuxSeccomp,
) -> Result<peapod_seccomp::Filter, peapod_seccomp::Error> {
    let Some(dir) = SECCOMP_CACHE.get() else {
        return peapod_seccomp::Filter::compile(profile);
    };
    match peapod_seccomp::FilterCache::open(dir) {
        Ok(cache) => cache.compile(profile),
        Err(e) => {
            tracing::warn!("compiling the seccomp profile without a cache: {e}");
            peapod_seccomp::Filter::compile(profile)
        }
    }
}

pub(crate) fn compile_seccomp(
    profile: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<Option<peapod_seccomp::Filter>, ConfigError> {
    profile
        .map(|profile| {
            let started = std::time::Instant::now();
            let filter = compile_cached(profile);
            tracing::debug!(
                "seccomp profile compiled in {:?}: {filter:?}",
                started.elapsed()
            );
            filter.map_err(|e| {
                let field = match e.field.as_str() {
                    "" => "linux.seccomp".to_owned(),
                    field => format!("linux.seccomp.{field}"),
                };
                bad(field, e.problem)
            })
        })
        .transpose()
}

/// `linux.devices`, checked: absolute paths, a node type, numbers that fit.
fn device_nodes(devices: &[oci_spec::runtime::LinuxDevice]) -> Result<Vec<Node>, ConfigError> {
    use oci_spec::runtime::LinuxDeviceType;
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let field = |name: &str| format!("linux.devices[{i}].{name}");
            if !d.path().is_absolute() {
                return Err(bad(field("path"), "must be an absolute path"));
            }
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => NodeKind::Char,
                LinuxDeviceType::B => NodeKind::Block,
                LinuxDeviceType::P => NodeKind::Fifo,
                LinuxDeviceType::A => {
                    return Err(bad(field("type"), "must be c, b, u or p for a node"))
                }
            };
            let number = |name: &str, n: i64| {
                u32::try_from(n).map_err(|_| bad(field(name), format!("{n} is out of range")))
            };
            Ok(Node {
                path: d.path().clone(),
                kind,
                major: number("major", d.major())?,
                minor: number("minor", d.minor())?,
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            })
        })
        .collect()
}

/// A `cgroup` mount at `destination`, as runc makes it: the host's hierarchies mounted anew
/// in the container's cgroup namespace, so each shows only the container's own subtree as
/// its root. On v2 one `cgroup2` mount; on v1 a tmpfs with one mount per controller
/// hierarchy (named as on the host, `cpu,cpuacct`...), one per named hierarchy (`systemd`),
/// and `unified` on a hybrid host.
fn cgroup_mounts(destination: &Path, options: &MountOptions) -> Result<Vec<Mount>, String> {
    use peapod_cgroups::Layout;
    let layout = Layout::detect().map_err(|e| e.to_string())?;
    let mount = |path: PathBuf, fstype: &str, data: Vec<String>| Mount {
        destination: path,
        fstype: fstype.to_owned(),
        source: Some(PathBuf::from(fstype)),
        options: MountOptions {
            flags: options.flags,
            data,
            ..MountOptions::default()
        },
    };
    let Layout::V1 {
        hierarchies,
        named,
        unified,
    } = layout
    else {
        return Ok(vec![mount(destination.to_owned(), "cgroup2", Vec::new())]);
    };
    let mut mounts = vec![cgroup_tmpfs(destination)];
    for h in &hierarchies {
        let Some(name) = h.mount.file_name() else {
            continue;
        };
        mounts.push(mount(
            destination.join(name),
            "cgroup",
            h.controllers.clone(),
        ));
    }
    // The named ones too (`systemd`, as runc mounts it): the container is in its own cgroup
    // there as well, so it sees that as their root.
    for h in &named {
        let (Some(dir), Some(name)) = (h.mount.file_name(), &h.name) else {
            continue;
        };
        mounts.push(mount(
            destination.join(dir),
            "cgroup",
            vec!["none".to_owned(), format!("name={name}")],
        ));
    }
    if unified.is_some() {
        mounts.push(mount(destination.join("unified"), "cgroup2", Vec::new()));
    }
    mounts.extend(seal_cgroup_tmpfs(destination, options));
    Ok(mounts)
}

/// The mounts that show a container without a cgroup namespace its own cgroup at `m`'s
/// destination: on v1 a tmpfs with a read-only bind of its directory in each hierarchy, named
/// as the hierarchy's mount point (`memory`, `cpu,cpuacct`, `systemd`, `unified`); on v2 the
/// one directory, read-only.
fn cgroup_binds(m: &Mount, cgroup: &peapod_cgroups::Cgroup) -> Vec<Mount> {
    let ro = |source: &Path, destination: PathBuf| {
        let mut bind = Mount::bind(source, &destination, true);
        bind.options.flags |= m.options.flags
            & (nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC);
        bind
    };
    let dirs = cgroup.dirs_by_hierarchy();
    if cgroup.is_v2() {
        return dirs
            .first()
            .map(|(_, dir)| ro(dir, m.destination.clone()))
            .into_iter()
            .collect();
    }
    let mut mounts = vec![cgroup_tmpfs(&m.destination)];
    for (hierarchy, dir) in dirs {
        if let Some(name) = hierarchy.file_name() {
            mounts.push(ro(&dir, m.destination.join(name)));
        }
    }
    mounts.extend(seal_cgroup_tmpfs(&m.destination, &m.options));
    mounts
}

/// The tmpfs at `/sys/fs/cgroup` that a v1 host's hierarchies are mounted (or bound) below.
fn cgroup_tmpfs(destination: &Path) -> Mount {
    Mount {
        destination: destination.to_owned(),
        fstype: "tmpfs".to_owned(),
        source: Some(PathBuf::from("tmpfs")),
        options: MountOptions {
            flags: nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            data: vec!["mode=755".to_owned()],
            ..MountOptions::default()
        },
    }
}

/// For a read-only `cgroup` mount (`ro`, as every default spec has it), the remount that
/// makes the tmpfs at `destination` read-only once its hierarchies are mounted below it, as
/// runc does: otherwise a container could make files and directories there, or mount over
/// the empty names, in a tree its tools take for the kernel's.
fn seal_cgroup_tmpfs(destination: &Path, options: &MountOptions) -> Option<Mount> {
    use nix::mount::MsFlags;
    if !options.flags.contains(MsFlags::MS_RDONLY) {
        return None;
    }
    let mut seal = cgroup_tmpfs(destination);
    seal.options.flags |= MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    Some(seal)
}

/// `Some(consoleSize)` when `process.terminal` is true.
pub(crate) fn terminal(process: &Process) -> Option<Option<WindowSize>> {
    if process.terminal() != Some(true) {
        return None;
    }
    Some(process.console_size().as_ref().map(|b| WindowSize {
        rows: u16::try_from(b.height()).unwrap_or(u16::MAX),
        cols: u16::try_from(b.width()).unwrap_or(u16::MAX),
    }))
}

/// Logs the fields of `spec` that peapod accepts but does not carry out yet. podman and
/// containerd set them in every spec they write, so refusing them would refuse every
/// container; each is named, so that nobody takes it for done.
fn warn_unsupported(spec: &Spec) {
    let process = spec.process().as_ref();
    let linux = spec.linux().as_ref();
    let ignored = [
        (
            "linux.intelRdt",
            linux.is_some_and(|l| l.intel_rdt().is_some()),
            "no Intel RDT",
        ),
        (
            "process.apparmorProfile",
            process.is_some_and(|p| p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty())),
            "no AppArmor profile",
        ),
        (
            "process.selinuxLabel",
            process.is_some_and(|p| p.selinux_label().as_ref().is_some_and(|s| !s.is_empty())),
            "no SELinux label",
        ),
    ];
    // One line: under conmon, this stderr is the container's, and lands in its log.
    let ignored: Vec<String> = ignored
        .into_iter()
        .filter(|(_, present, _)| *present)
        .map(|(field, _, consequence)| format!("{field} ({consequence})"))
        .collect();
    if !ignored.is_empty() {
        tracing::warn!("not supported yet, ignored: {}", ignored.join("; "));
    }
}

/// What a process runs: `process.args`, `process.env` (and the `PATH` in it) and
/// `process.cwd`, checked.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) args: Vec<CString>,
    pub(crate) env: Vec<CString>,
    pub(crate) path_var: Option<String>,
    /// `process.env` is given and has no `HOME`, or an empty one: the process gets the home
    /// directory of its user ([`Command::with_home`]).
    pub(crate) needs_home: bool,
    pub(crate) cwd: PathBuf,
    /// A sealed copy of the static peapod-init to exec the program through (its `--exec`
    /// mode), so that the container never executes the runtime's binary: see
    /// [`ContainerConfig::exec_through`].
    pub(crate) via: Option<RawFd>,
}

impl Command {
    pub(crate) fn from_process(process: &Process) -> Result<Command, ConfigError> {
        let args = process.args().as_deref().unwrap_or_default();
        if args.is_empty() {
            return Err(bad("process.args", "must not be empty"));
        }
        if args[0].is_empty() {
            return Err(bad("process.args[0]", "empty command"));
        }
        let args = args
            .iter()
            .enumerate()
            .map(|(i, a)| cstring(format!("process.args[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut path_var = None;
        let mut home = None;
        let mut env = Vec::new();
        for (i, kv) in process
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let field = format!("process.env[{i}]");
            match kv.split_once('=') {
                Some((key, _)) if !key.is_empty() => {}
                _ => return Err(bad(field, format!("expected KEY=VALUE, got {kv:?}"))),
            }
            if let Some(path) = kv.strip_prefix("PATH=") {
                path_var = Some(path.to_owned());
            }
            if let Some(value) = kv.strip_prefix("HOME=") {
                home = Some(value);
            }
            env.push(cstring(field, kv)?);
        }
        let cwd = process.cwd().clone();
        if !cwd.is_absolute() {
            return Err(bad("process.cwd", "must be an absolute path"));
        }
        // As runc: the last HOME counts, and an empty one is as good as none. Without
        // `process.env` at all runc adds nothing either.
        let needs_home = process.env().is_some() && !home.is_some_and(|h| !h.is_empty());
        Ok(Command {
            args,
            env,
            path_var,
            needs_home,
            cwd,
            via: None,
        })
    }

    /// The command with `HOME` set, as runc sets it, when `process.env` has none (or an
    /// empty one): the home directory of `uid` in the container's `/etc/passwd`, or `/` when
    /// it has no entry or cannot be read. Called in the container, after `pivot_root` (or
    /// `setns` for `exec`), so that `/` is the container's final root with its mounts.
    pub(crate) fn with_home(&self, uid: u32) -> Command {
        let mut command = self.clone();
        if !self.needs_home {
            return command;
        }
        let home = peapod_rootfs::InRoot::open(Path::new("/"))
            .and_then(|root| peapod_rootfs::home_of(&root, uid))
            .unwrap_or_else(|e| {
                tracing::debug!("HOME of uid {uid}: cannot read /etc/passwd: {e}");
                None
            })
            .unwrap_or_else(|| "/".to_owned());
        command
            .env
            .retain(|kv| !kv.as_bytes().starts_with(b"HOME="));
        // A NUL byte in the passwd entry cannot go into the environment.
        let kv = CString::new(format!("HOME={home}")).unwrap_or_else(|_| c"HOME=/".to_owned());
        command.env.push(kv);
        command
    }
}

impl ContainerConfig {
    /// Checks `spec` and makes the configuration. `bundle` is the directory a relative
    /// `root.path` is taken from.
    pub fn from_spec(spec: &Spec, bundle: &Path) -> Result<ContainerConfig, ConfigError> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| bad("process", "missing"))?;
        let command = Command::from_process(process)?;

        let root = spec.root().as_ref().ok_or_else(|| bad("root", "missing"))?;
        let root_path = bundle.join(root.path());

        let linux = spec.linux().as_ref();
        let mut new_namespaces = NamespaceSet::empty();
        let mut joined_namespaces = Vec::new();
        let mut seen = NamespaceSet::empty();
        let namespaces = linux
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default();
        for (i, ns) in namespaces.iter().enumerate() {
            let kind = namespace_kind(ns.typ());
            if seen.contains(kind) {
                return Err(bad(
                    format!("linux.namespaces[{i}].type"),
                    format!("{kind} namespace listed twice"),
                ));
            }
            seen.insert(kind);
            match ns.path() {
                Some(path) => joined_namespaces.push((kind, path.clone())),
                None => new_namespaces.insert(kind),
            }
        }
        joined_namespaces.sort_by_key(|(kind, _)| *kind);

        let uid_maps = id_maps(
            "linux.uidMappings",
            &linux.and_then(|l| l.uid_mappings().clone()),
        )?;
        let gid_maps = id_maps(
            "linux.gidMappings",
            &linux.and_then(|l| l.gid_mappings().clone()),
        )?;
        if new_namespaces.contains(Namespace::User) && uid_maps.is_empty() {
            return Err(bad(
                "linux.uidMappings",
                "required with a new user namespace",
            ));
        }
        if new_namespaces.contains(Namespace::User) && gid_maps.is_empty() {
            return Err(bad(
                "linux.gidMappings",
                "required with a new user namespace",
            ));
        }
        if new_namespaces.contains(Namespace::User) {
            check_user_mapped(spec.process().as_ref(), &uid_maps, &gid_maps)?;
        }

        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        let domainname = spec.domainname().clone().filter(|d| !d.is_empty());
        if (hostname.is_some() || domainname.is_some()) && !seen.contains(Namespace::Uts) {
            let field = if hostname.is_some() {
                "hostname"
            } else {
                "domainname"
            };
            return Err(bad(
                field,
                "setting it needs a uts namespace in linux.namespaces",
            ));
        }

        let mut mounts = Vec::new();
        let mut cgroup_binds = Vec::new();
        for (i, m) in spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let field = |name: &str| format!("mounts[{i}].{name}");
            if !m.destination().is_absolute() {
                return Err(bad(field("destination"), "must be an absolute path"));
            }
            let words = m.options().as_deref().unwrap_or_default();
            let options = MountOptions::parse(m.destination(), words)
                .map_err(|e| bad(field("options"), e.to_string()))?;
            let fstype = m.typ().clone().unwrap_or_else(|| "none".to_owned());
            if fstype == "cgroup" || fstype == "cgroup2" {
                if new_namespaces.contains(Namespace::Cgroup) {
                    let expanded = cgroup_mounts(m.destination(), &options)
                        .map_err(|e| bad(field("type"), e))?;
                    mounts.extend(expanded);
                } else {
                    // Without its own cgroup namespace a cgroup mount would show the host's
                    // whole hierarchy: as runc, the container's own cgroup directories are
                    // bound there instead, once the cgroup exists (`rootfs_in`).
                    cgroup_binds.push((
                        mounts.len(),
                        Mount {
                            destination: m.destination().clone(),
                            fstype,
                            source: None,
                            options,
                        },
                    ));
                }
                continue;
            }
            let mut source = m.source().clone();
            if options.bind {
                let src = source.ok_or_else(|| bad(field("source"), "a bind mount needs one"))?;
                source = Some(if src.is_absolute() {
                    src
                } else {
                    bundle.join(src)
                });
            }
            mounts.push(Mount {
                destination: m.destination().clone(),
                fstype,
                source,
                options,
            });
        }

        let readonly = root.readonly().unwrap_or(false);
        let mut rootfs = RootfsPlan::new(root_path)
            .with_mounts(mounts)
            .readonly(readonly);
        if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            let (kind, recursive) = Propagation::parse(prop)
                .ok_or_else(|| bad("linux.rootfsPropagation", format!("unknown value {prop:?}")))?;
            rootfs = rootfs.propagation(kind, recursive);
        }
        if let Some(linux) = linux {
            rootfs = rootfs
                .with_nodes(device_nodes(
                    linux.devices().as_deref().unwrap_or_default(),
                )?)
                .masked_paths(linux.masked_paths().clone().unwrap_or_default())
                .readonly_paths(linux.readonly_paths().clone().unwrap_or_default());
        }

        let time_offsets = time_offsets(linux, &new_namespaces)?;
        // Without a mount namespace of its own the container runs in the runtime's, as the
        // spec allows: it only gets its root by chroot, and anything that needs a mount is
        // refused rather than done to the host (runc refuses the same).
        let chroot_only = !seen.contains(Namespace::Mount);
        if chroot_only {
            refuse_mounts_without_a_namespace(spec, &rootfs)?;
        }

        let process_attrs =
            ProcessAttrs::from_spec(process, linux.and_then(|l| l.sysctl().as_ref()), seen)?;
        // Compiled here, before any process exists: the container process only loads it.
        crate::hooks::check(spec.hooks().as_ref())?;
        let seccomp = compile_seccomp(linux.and_then(|l| l.seccomp().as_ref()))?;
        warn_unsupported(spec);

        Ok(ContainerConfig {
            process: process_attrs,
            seccomp,
            session_keyring: SessionKeyring::named(None),
            command,
            hostname,
            domainname,
            new_namespaces,
            joined_namespaces,
            uid_maps,
            gid_maps,
            rootfs,
            time_offsets,
            cgroup_binds,
            chroot_only,
            preserve_fds: 0,
            terminal: terminal(process),
            console: None,
            hooks: Hooks::default(),
        })
    }

    /// Mounts `overlay` (an image's layers) on `mount_point`, the new root, inside the container's
    /// mount namespace before anything else. A container without a mount namespace of its
    /// own cannot have one: it would be a mount of the runtime's.
    pub fn with_image_root(
        mut self,
        mount_point: PathBuf,
        overlay: Overlay,
    ) -> Result<ContainerConfig, ConfigError> {
        if self.chroot_only {
            return Err(bad(
                "root",
                "an image's root needs a mount namespace of the container's own (linux.namespaces)",
            ));
        }
        self.rootfs = self.rootfs.with_overlay(mount_point, overlay);
        Ok(self)
    }

    /// Whether the container is in a user namespace other than the runtime's (where an overlay needs the
    /// `userxattr` option).
    pub fn has_user_namespace(&self) -> bool {
        self.new_namespaces.contains(Namespace::User)
            || self
                .joined_namespaces
                .iter()
                .any(|(kind, _)| *kind == Namespace::User)
    }

    /// Passes descriptors 3 to 3+`n`-1 into the container (runc's `--preserve-fds`); all other
    /// descriptors above 2 are closed at exec.
    pub fn preserve_fds(mut self, n: u32) -> ContainerConfig {
        self.preserve_fds = n;
        self
    }

    /// The connected unix socket the pty master of a `process.terminal` container is sent
    /// through (runc's `--console-socket`). It must stay open until [`crate::create`] returns.
    pub fn console_socket(mut self, socket: RawFd) -> ContainerConfig {
        self.console = self.terminal.map(|size| Console { socket, size });
        self
    }

    /// Whether the spec asks for a terminal (`process.terminal`).
    pub fn wants_terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// The hooks that run while the container is created and started (`prestart`,
    /// `createRuntime`, `createContainer`, `startContainer`).
    pub fn hooks(mut self, hooks: Hooks) -> ContainerConfig {
        self.hooks = hooks;
        self
    }

    /// Execs the entrypoint through `trampoline`, a sealed in-memory copy of the static
    /// peapod-init (its `--exec PATH ARGV...` mode) that stays open until [`crate::create`]
    /// returns. An entrypoint that names `/proc/self/exe` then runs that copy, never the
    /// runtime's binary (CVE-2019-5736).
    pub fn exec_through(mut self, trampoline: Option<RawFd>) -> ContainerConfig {
        self.command.via = trampoline;
        self
    }

    /// The session keyring of the container's process: a new one named `name` (runc names it
    /// after the container), or with `None` the caller's (runc's `--no-new-keyring`). A new
    /// anonymous one without this call.
    pub fn session_keyring(mut self, name: Option<&str>) -> ContainerConfig {
        self.session_keyring = match name {
            Some(name) => SessionKeyring::named(Some(name)),
            None => SessionKeyring::Inherit,
        };
        self
    }

    /// Uses `chroot` instead of `pivot_root` (runc's `--no-pivot`).
    pub fn no_pivot(mut self, no_pivot: bool) -> ContainerConfig {
        self.rootfs = self.rootfs.no_pivot(no_pivot);
        self
    }

    /// The namespaces the container gets new, rather than joins or shares with the host.
    pub fn new_namespaces(&self) -> NamespaceSet {
        self.new_namespaces
    }

    /// The rootfs plan.
    pub fn rootfs(&self) -> &RootfsPlan {
        &self.rootfs
    }

    /// The rootfs plan with the cgroup mounts of a container without a cgroup namespace
    /// made concrete: a read-only bind of the container's own directory in each hierarchy
    /// (below a tmpfs on v1), as runc does, so that it sees its limits and usage and nothing
    /// of the host's other cgroups. Without a cgroup they are left out.
    pub(crate) fn rootfs_in(
        &self,
        cgroup: Option<&peapod_cgroups::Cgroup>,
    ) -> std::borrow::Cow<'_, RootfsPlan> {
        if self.cgroup_binds.is_empty() {
            return std::borrow::Cow::Borrowed(&self.rootfs);
        }
        let mut mounts = self.rootfs.mounts().to_vec();
        for (at, m) in self.cgroup_binds.iter().rev() {
            let binds = match cgroup {
                Some(cgroup) => cgroup_binds(m, cgroup),
                None => Vec::new(),
            };
            mounts.splice(*at..*at, binds);
        }
        std::borrow::Cow::Owned(self.rootfs.clone().with_mounts(mounts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::default_spec;

    fn check(edit: impl FnOnce(&mut serde_json::Value)) -> Result<ContainerConfig, ConfigError> {
        let mut json = serde_json::to_value(default_spec(None)).expect("to json");
        json["root"]["path"] = "/rootfs".into();
        edit(&mut json);
        let spec: Spec = serde_json::from_value(json).expect("spec");
        ContainerConfig::from_spec(&spec, Path::new("/bundle"))
    }

    #[test]
    fn default_spec_is_valid() {
        let config = check(|_| {}).expect("valid");
        assert!(config.new_namespaces.contains(Namespace::Pid));
        assert_eq!(config.rootfs.root(), Path::new("/rootfs"));
    }

    #[test]
    fn empty_args_names_the_field() {
        let err = check(|j| j["process"]["args"] = serde_json::json!([])).unwrap_err();
        assert_eq!(err.to_string(), "process.args: must not be empty");
    }

    #[test]
    fn bad_env_names_the_index() {
        let err = check(|j| j["process"]["env"] = serde_json::json!(["A=1", "oops"])).unwrap_err();
        assert_eq!(err.field, "process.env[1]");
    }

    #[test]
    fn duplicate_namespace_names_the_index() {
        let err = check(|j| {
            j["linux"]["namespaces"] =
                serde_json::json!([{"type": "mount"}, {"type": "pid"}, {"type": "pid"}])
        })
        .unwrap_err();
        assert_eq!(err.field, "linux.namespaces[2].type");
    }

    #[test]
    fn unknown_mount_option_names_the_mount() {
        let err = check(|j| {
            j["mounts"] =
                serde_json::json!([{"destination": "/x", "type": "tmpfs", "options": ["bogus"]}])
        })
        .unwrap_err();
        assert_eq!(err.field, "mounts[0].options");
        assert!(err.problem.contains("bogus"), "{err}");
    }

    #[test]
    fn hostname_without_uts_namespace_is_refused() {
        let err = check(|j| {
            j["hostname"] = "h".into();
            j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        })
        .unwrap_err();
        assert_eq!(err.field, "hostname");
    }

    #[test]
    fn seccomp_is_compiled_and_its_errors_name_the_field() {
        let config = check(|j| {
            j["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
        })
        .expect("valid");
        assert!(config.seccomp.is_some());
        let err = check(|j| {
            j["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "nosuchcall"], "action": "SCMP_ACT_ERRNO"}]})
        })
        .unwrap_err();
        assert_eq!(err.field, "linux.seccomp.syscalls[0].names[1]");
        assert!(err.problem.contains("nosuchcall"), "{err}");
    }

    #[test]
    fn relative_bind_source_is_taken_from_the_bundle() {
        let config = check(|j| {
            j["mounts"] =
                serde_json::json!([{"destination": "/d", "source": "data", "options": ["rbind"]}])
        })
        .expect("valid");
        let bind = &config.rootfs.mounts()[0];
        assert_eq!(bind.source.as_deref(), Some(Path::new("/bundle/data")));
    }
}
