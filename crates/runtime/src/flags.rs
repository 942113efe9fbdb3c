//! A container's spec from the friendly flags of `peapod run --rootfs DIR -- CMD` (as
//! `docker run` has them): runc's default spec, rootless when not root, then the flags.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, Spec,
};
use peapod_ns::Namespace;

use crate::security::{CapName, SecurityArgs, SecurityOpt, UserArg};
use crate::{Error, Result};

/// A bind mount asked for with `--volume HOST:CTR[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The directory or file on the host.
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub container: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// A tmpfs asked for with `--tmpfs PATH[:OPTIONS]` or `--mount type=tmpfs,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where it is mounted in the container (absolute).
    pub target: PathBuf,
    /// Its mount options: Docker's defaults (`noexec`, `nosuid`, `nodev`) merged with the
    /// user's.
    pub options: Vec<String>,
}

/// A `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    /// The resource.
    pub typ: PosixRlimitType,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// A `--device HOST[:CONTAINER[:PERMS]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device node on the host, whose type and numbers the container's node gets.
    pub host: PathBuf,
    /// Where its node is made in the container.
    pub container: PathBuf,
    /// What the container may do with it: some of `r`, `w`, `m`.
    pub access: String,
}

/// `--memory`, `--cpus` and `--pids-limit`: a container's limits, or a whole pod's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `memory.limit` in bytes.
    pub memory: Option<i64>,
    /// CPUs, as a CFS quota of this many 100 ms periods.
    pub cpus: Option<f64>,
    /// `pids.limit`.
    pub pids_limit: Option<i64>,
}

/// The flags of `peapod run` that build a spec, checked for form.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    /// `--name`: the container's id, and its host name unless `hostname` is given.
    pub name: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--env KEY=VALUE`, added to (or replacing in) the default environment.
    pub env: Vec<String>,
    /// `--workdir`.
    pub workdir: Option<PathBuf>,
    /// `--volume` and `--mount type=bind`.
    pub volumes: Vec<Volume>,
    /// `--volume CTR` alone: an anonymous volume at CTR (with an image only), as Docker's.
    pub anonymous_volumes: Vec<PathBuf>,
    /// `--tmpfs` and `--mount type=tmpfs`.
    pub tmpfs: Vec<Tmpfs>,
    /// `--sysctl KEY=VALUE`, into `linux.sysctl`.
    pub sysctls: Vec<(String, String)>,
    /// `--ulimit`, into `process.rlimits`.
    pub ulimits: Vec<Ulimit>,
    /// `--label KEY=VALUE`, into the annotations.
    pub labels: Vec<(String, String)>,
    /// `--device`, into `linux.devices` and the device rules.
    pub devices: Vec<Device>,
    /// `--read-only`: the root mounted read-only.
    pub read_only: bool,
    /// `--net host`: the host's network namespace.
    pub net_host: bool,
    /// `--share`: the host's namespaces of these kinds.
    pub share: Vec<Namespace>,
    /// `--init`: peapod-init as PID 1.
    pub init: bool,
    /// `--init-path`.
    pub init_path: Option<PathBuf>,
    /// `--cap-add`.
    pub cap_add: Vec<CapName>,
    /// `--cap-drop`.
    pub cap_drop: Vec<CapName>,
    /// `--user`.
    pub user: Option<UserArg>,
    /// `--security-opt`.
    pub security_opt: Vec<SecurityOpt>,
    /// `--memory`, `--cpus`, `--pids-limit`.
    pub limits: Limits,
    /// `--tty`.
    pub tty: bool,
    /// `--entrypoint` (with an image): replaces the image's Entrypoint and drops its Cmd;
    /// empty, it clears the Entrypoint.
    pub entrypoint: Option<String>,
    /// The command: after `--` with `--rootfs`, after the image with an image.
    pub command: Vec<String>,
    /// `--userns`: the user namespace's mode, when not the default.
    pub userns: Option<crate::userns::UserNs>,
}

/// `resources` with `--memory`, `--cpus` and `--pids-limit` added (as `docker run` sets them:
/// `--cpus N` is a CFS quota of N periods of 100 ms); a container's, or a whole pod's.
pub fn with_limits(resources: Option<LinuxResources>, limits: &Limits) -> Option<LinuxResources> {
    if limits.memory.is_none() && limits.cpus.is_none() && limits.pids_limit.is_none() {
        return resources;
    }
    let mut resources = resources.unwrap_or_default();
    if let Some(bytes) = limits.memory {
        let mut memory = resources.memory().unwrap_or_default();
        memory.set_limit(Some(bytes));
        resources.set_memory(Some(memory));
    }
    if let Some(cpus) = limits.cpus {
        const PERIOD_US: u64 = 100_000;
        let mut cpu = resources.cpu().clone().unwrap_or_default();
        cpu.set_period(Some(PERIOD_US));
        cpu.set_quota(Some((cpus * PERIOD_US as f64).round() as i64));
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = limits.pids_limit {
        let mut pids = oci_spec::runtime::LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    Some(resources)
}

/// An id for a container without `--name`: 64 hex digits of the kernel's randomness, as
/// docker's (tables show the first 12). Falls back on the PID and the time, unique among
/// live containers on this host, should `getrandom` fail.
pub fn generated_id() -> String {
    let mut bytes = [0u8; 32];
    // SAFETY: getrandom writes at most `len` bytes into the buffer it is given.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got == bytes.len() as isize {
        return bytes.iter().map(|b| format!("{b:02x}")).collect();
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("run-{}-{nanos:09}", std::process::id())
}

/// Refuses the flags that build a spec: with a bundle they have no meaning, as its
/// `config.json` says all of this itself.
pub fn refuse_with_bundle(args: &RunFlags) -> Result<()> {
    let security = security_args(args).any();
    let used = [
        ("--name", args.name.is_some()),
        ("--hostname", args.hostname.is_some()),
        ("--env", !args.env.is_empty()),
        ("--workdir", args.workdir.is_some()),
        (
            "--volume",
            !args.volumes.is_empty() || !args.anonymous_volumes.is_empty(),
        ),
        ("--tmpfs", !args.tmpfs.is_empty()),
        ("--sysctl", !args.sysctls.is_empty()),
        ("--ulimit", !args.ulimits.is_empty()),
        ("--label", !args.labels.is_empty()),
        ("--device", !args.devices.is_empty()),
        ("--read-only", args.read_only),
        ("--share", !args.share.is_empty()),
        ("--init", args.init),
        ("--tty", args.tty),
        ("--memory", args.limits.memory.is_some()),
        ("--cpus", args.limits.cpus.is_some()),
        ("--pids-limit", args.limits.pids_limit.is_some()),
        ("--entrypoint", args.entrypoint.is_some()),
        ("--userns", args.userns.is_some()),
        ("-- CMD", !args.command.is_empty()),
        (security.unwrap_or_default(), security.is_some()),
    ];
    match used.iter().find(|(_, used)| *used) {
        Some((flag, _)) => Err(Error::usage(anyhow::anyhow!(
            "{flag} goes with --rootfs; a bundle's config.json says this itself"
        ))),
        None => Ok(()),
    }
}

/// The privilege flags: `--cap-add`, `--cap-drop`, `--user`, `--security-opt`.
fn security_args(args: &RunFlags) -> SecurityArgs<'_> {
    SecurityArgs {
        cap_add: &args.cap_add,
        cap_drop: &args.cap_drop,
        user: args.user.as_ref(),
        security_opt: &args.security_opt,
    }
}

fn bind_mount(volume: &Volume) -> anyhow::Result<Mount> {
    let host = std::path::absolute(&volume.host)
        .with_context(|| format!("invalid volume host path {}", volume.host.display()))?;
    let mut options = vec!["rbind".to_owned()];
    if volume.readonly {
        options.push("ro".to_owned());
    }
    MountBuilder::default()
        .destination(volume.container.clone())
        .typ("bind")
        .source(host)
        .options(options)
        .build()
        .context("cannot describe a bind mount")
}

/// The spec for `args` and the root `rootfs`: runc's defaults, rootless (a user namespace
/// mapping the caller's ids) when `rootless`, then the flags.
pub fn spec_from_flags(args: &RunFlags, rootfs: &Path, rootless: bool) -> Result<Spec> {
    // An anonymous volume lives with a container's layers in the image store: a directory
    // given as the root has none.
    if let Some(path) = args.anonymous_volumes.first() {
        return Err(Error::usage(anyhow::anyhow!(
            "-v {} is an anonymous volume, which goes with an image: with --rootfs bind a \
             host directory, -v HOST:CTR",
            path.display()
        )));
    }
    spec_with_accounts(args, rootfs, rootfs, rootless)
}

/// What one `--volume` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeArg {
    /// `HOST:CTR[:ro|rw]`: a bind mount of a host path.
    Bind(Volume),
    /// `CTR`: an anonymous volume.
    Anonymous(PathBuf),
}

/// `--volume HOST:CTR[:ro|rw]` or `--volume CTR`, as Docker and podman read them: a host
/// path starts with `/` or `.`; anything else there would name a volume, and named volumes
/// are refused rather than read as a relative path.
pub fn parse_volume(s: &str) -> std::result::Result<VolumeArg, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [container] => return volume_path(container).map(VolumeArg::Anonymous),
        [host, ctr] => (*host, *ctr, false),
        [host, ctr, "ro"] => (*host, *ctr, true),
        [host, ctr, "rw"] => (*host, *ctr, false),
        [_, _, mode] => return Err(format!("unknown mode {mode:?} (expected ro or rw)")),
        _ => return Err("expected HOST:CTR[:ro], or CTR for an anonymous volume".into()),
    };
    if host.is_empty() {
        return Err("the host path is empty".into());
    }
    if !host.starts_with(['/', '.']) {
        return Err(format!(
            "{host:?} would name a volume, and peapod has no named volumes: give a host path \
             (/abs or ./rel), or -v {container} for an anonymous volume"
        ));
    }
    Ok(VolumeArg::Bind(Volume {
        host: PathBuf::from(host),
        container: absolute_target(container)?,
        readonly,
    }))
}

/// The path of an anonymous volume inside the container (`-v CTR`, an image's `Volumes`):
/// absolute, without `..`, and neither `/` nor in the kernel's `/proc`, `/sys` or `/dev`.
pub fn volume_path(s: &str) -> std::result::Result<PathBuf, String> {
    use std::path::Component;
    let path = absolute_target(s)?;
    let mut clean = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => clean.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{s:?}: a volume path cannot contain .."))
            }
        }
    }
    let kernels = ["/proc", "/sys", "/dev"];
    if clean == Path::new("/") || kernels.iter().any(|k| clean.starts_with(k)) {
        return Err(format!(
            "{s:?}: a volume cannot be /, or in /proc, /sys or /dev"
        ));
    }
    Ok(clean)
}

/// The ids a rootless container's (and pod's) user namespace maps to root: the caller's.
/// The one place where that choice is made.
pub fn rootless_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// [`spec_from_flags`], with user names looked up in `accounts` (a directory with the
/// container's `/etc/passwd` and `/etc/group`) rather than in the root.
pub(crate) fn spec_with_accounts(
    args: &RunFlags,
    rootfs: &Path,
    accounts: &Path,
    rootless: bool,
) -> Result<Spec> {
    if args.entrypoint.is_some() {
        return Err(Error::usage(anyhow::anyhow!(
            "--entrypoint goes with an image; with --rootfs the command after -- is the whole command"
        )));
    }
    if args.command.is_empty() {
        return Err(Error::usage(anyhow::anyhow!(
            "no command: give it after --, as in `peapod run --rootfs DIR -- /bin/sh`"
        )));
    }
    if args.command[0].is_empty() {
        return Err(Error::usage(anyhow::anyhow!("empty command")));
    }
    let mut spec = crate::userns::base_spec(args, rootless)?;

    let mut shared = args.share.clone();
    if args.net_host {
        shared.push(Namespace::Net);
    }
    if shared.contains(&Namespace::Uts) && args.hostname.is_some() {
        return Err(Error::usage(anyhow::anyhow!(
            "--hostname needs the container's own uts namespace, but --share uts keeps the host's"
        )));
    }
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|ns| {
            let kind = ns.typ().to_string().parse::<Namespace>();
            !kind.is_ok_and(|kind| shared.contains(&kind))
        });
        linux.set_namespaces(Some(namespaces));
    }
    let hostname = if shared.contains(&Namespace::Uts) {
        None
    } else {
        Some(
            args.hostname
                .clone()
                .or_else(|| args.name.clone())
                .unwrap_or_else(|| "peapod".into()),
        )
    };
    spec.set_hostname(hostname);

    let root_path = std::path::absolute(rootfs)
        .with_context(|| format!("invalid rootfs path {}", rootfs.display()))
        .map_err(Error::usage)?;
    let caller = crate::userns::keep_id_user(args, rootless);
    let mut security = security_args(args);
    security.user = security.user.or(caller.as_ref());
    security
        .apply(&mut spec, accounts)
        .map_err(Error::runtime)?;
    if let Some(root) = spec.root_mut() {
        root.set_path(root_path).set_readonly(Some(args.read_only));
    }

    let init = match args.init {
        true => Some(
            crate::init::locate(args.init_path.as_deref())
                .context("--init")
                .map_err(Error::usage)?,
        ),
        false => None,
    };
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(match init {
            Some(_) => crate::init::wrap(&args.command),
            None => args.command.clone(),
        }));
        process.set_terminal(Some(args.tty));
        let mut env = process.env().clone().unwrap_or_default();
        for kv in &args.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|existing| existing.split('=').next() != Some(key));
            // `-e KEY` alone, as Docker takes it: the caller's value, and without one the
            // variable is unset (also when the image set it).
            match kv.contains('=') {
                true => env.push(kv.clone()),
                false => env.extend(
                    std::env::var(key)
                        .ok()
                        .map(|value| format!("{key}={value}")),
                ),
            }
        }
        process.set_env(Some(env));
        if let Some(dir) = &args.workdir {
            process.set_cwd(dir.clone());
        }
    }

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for volume in &args.volumes {
        mounts.push(bind_mount(volume).map_err(Error::usage)?);
    }
    for tmpfs in &args.tmpfs {
        mounts.push(tmpfs_mount(tmpfs).map_err(Error::runtime)?);
    }
    if let Some(init) = &init {
        mounts.push(
            crate::init::mount(init, crate::init::INIT_IN_CONTAINER).map_err(Error::runtime)?,
        );
    }
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        let resources = with_limits(linux.resources().clone(), &args.limits);
        linux.set_resources(resources);
        if !args.sysctls.is_empty() {
            let mut sysctl = linux.sysctl().clone().unwrap_or_default();
            sysctl.extend(args.sysctls.iter().cloned());
            linux.set_sysctl(Some(sysctl));
        }
    }
    with_devices(&mut spec, &args.devices)?;
    if let Some(process) = spec.process_mut() {
        if !args.ulimits.is_empty() {
            let mut rlimits = process.rlimits().clone().unwrap_or_default();
            for ulimit in &args.ulimits {
                rlimits.retain(|r| r.typ() != ulimit.typ);
                let rlimit = PosixRlimitBuilder::default()
                    .typ(ulimit.typ)
                    .soft(ulimit.soft)
                    .hard(ulimit.hard)
                    .build()
                    .context("cannot describe an rlimit")
                    .map_err(Error::runtime)?;
                rlimits.push(rlimit);
            }
            process.set_rlimits(Some(rlimits));
        }
    }
    if !args.labels.is_empty() {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.extend(args.labels.iter().cloned());
        spec.set_annotations(Some(annotations));
    }
    Ok(spec)
}

fn tmpfs_mount(tmpfs: &Tmpfs) -> anyhow::Result<Mount> {
    MountBuilder::default()
        .destination(tmpfs.target.clone())
        .typ("tmpfs")
        .source("tmpfs")
        .options(tmpfs.options.clone())
        .build()
        .context("cannot describe a tmpfs mount")
}

/// Adds a node for each `--device` to `linux.devices`, with the host node's type and
/// numbers, and a rule allowing its access after the spec's deny-all: without the rule the
/// device filter (the v1 controller or the v2 program) would refuse it.
fn with_devices(spec: &mut Spec, devices: &[Device]) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    if devices.is_empty() {
        return Ok(());
    }
    let Some(linux) = spec.linux_mut() else {
        return Ok(());
    };
    let mut nodes = linux.devices().clone().unwrap_or_default();
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    for device in devices {
        let flag = || format!("--device {}", device.host.display());
        let meta = std::fs::metadata(&device.host)
            .with_context(flag)
            .map_err(Error::usage)?;
        let typ = match meta.file_type() {
            t if t.is_char_device() => LinuxDeviceType::C,
            t if t.is_block_device() => LinuxDeviceType::B,
            _ => {
                return Err(Error::usage(anyhow::anyhow!(
                    "{}: not a device node",
                    flag()
                )))
            }
        };
        let rdev = meta.rdev();
        let (major, minor) = (
            i64::from(nix::sys::stat::major(rdev) as u32),
            i64::from(nix::sys::stat::minor(rdev) as u32),
        );
        let mut node = LinuxDevice::default();
        node.set_path(device.container.clone());
        node.set_typ(typ);
        node.set_major(major);
        node.set_minor(minor);
        node.set_file_mode(Some(meta.mode() & 0o777));
        node.set_uid(Some(0));
        node.set_gid(Some(0));
        nodes.retain(|n| n.path() != node.path());
        nodes.push(node);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(major));
        rule.set_minor(Some(minor));
        rule.set_access(Some(device.access.clone()));
        rules.push(rule);
    }
    linux.set_devices(Some(nodes));
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    Ok(())
}

/// The options every tmpfs of `--tmpfs` and `--mount type=tmpfs` starts from, as Docker's
/// (its daemon adds them before the user's, which may undo them: `exec` after `noexec`).
const TMPFS_DEFAULTS: [&str; 3] = ["noexec", "nosuid", "nodev"];

/// `--tmpfs PATH[:OPTIONS]`: Docker's form, options comma-separated.
pub fn parse_tmpfs(s: &str) -> std::result::Result<Tmpfs, String> {
    let (target, options) = s.split_once(':').unwrap_or((s, ""));
    let target = absolute_target(target)?;
    let options: Vec<&str> = options.split(',').filter(|o| !o.is_empty()).collect();
    Ok(Tmpfs {
        target,
        options: tmpfs_options(&options)?,
    })
}

fn absolute_target(s: &str) -> std::result::Result<PathBuf, String> {
    match s.starts_with('/') {
        true => Ok(PathBuf::from(s)),
        false => Err(format!(
            "{s:?} must be an absolute path inside the container"
        )),
    }
}

/// Docker's defaults with `user`'s options over them, each checked: a flag tmpfs takes, or
/// one of its `KEY=VALUE` options, so that a typo fails here rather than in the kernel.
fn tmpfs_options(user: &[&str]) -> std::result::Result<Vec<String>, String> {
    const FLAGS: [&str; 18] = [
        "rw",
        "ro",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "atime",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "diratime",
        "nodiratime",
        "sync",
        "async",
        "tmpcopyup",
    ];
    let mut options: Vec<String> = TMPFS_DEFAULTS.iter().map(|o| o.to_string()).collect();
    for option in user {
        match option.split_once('=') {
            Some(("size" | "nr_blocks" | "nr_inodes", value)) if valid_tmpfs_size(value) => {}
            Some(("mode", value)) if u32::from_str_radix(value, 8).is_ok() => {}
            Some(("uid" | "gid", value)) if value.parse::<u32>().is_ok() => {}
            Some(("huge" | "mpol", value)) if !value.is_empty() => {}
            Some((key, value)) => return Err(format!("invalid tmpfs option {key}={value:?}")),
            None if FLAGS.contains(option) => {}
            None => return Err(format!("unknown tmpfs option {option:?}")),
        }
        // A flag undoes its opposite (`exec` the default `noexec`), and a later value of a
        // key replaces an earlier one.
        let key = option.split('=').next().unwrap_or_default();
        let opposite = key
            .strip_prefix("no")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("no{key}"));
        options.retain(|o| {
            let k = o.split('=').next().unwrap_or_default();
            k != key && k != opposite && !(matches!(key, "ro" | "rw") && matches!(k, "ro" | "rw"))
        });
        // Mounted by peapod as every tmpfs is; "tmpcopyup" is podman's and means nothing here.
        if *option != "tmpcopyup" {
            options.push(option.to_string());
        }
    }
    Ok(options)
}

/// A tmpfs size: a number with an optional k, m or g suffix, or a percentage of memory.
fn valid_tmpfs_size(value: &str) -> bool {
    let digits = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && value.len() - digits.len() <= 1 && digits.parse::<u64>().is_ok()
}

/// What one `--mount` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountArg {
    /// `type=bind`: as `--volume`.
    Bind(Volume),
    /// `type=tmpfs`: as `--tmpfs`.
    Tmpfs(Tmpfs),
}

/// `--mount type=bind,source=HOST,target=CTR[,readonly]` or
/// `--mount type=tmpfs,target=CTR[,tmpfs-size=SIZE][,tmpfs-mode=MODE]`: Docker's syntax,
/// with its aliases (`src`, `dst`, `destination`, `ro`). A bind's source must exist, as
/// Docker's `--mount` requires (unlike `-v`).
pub fn parse_mount(s: &str) -> std::result::Result<MountArg, String> {
    let (mut typ, mut source, mut target, mut readonly) = (None, None, None, false);
    let mut tmpfs = Vec::new();
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (field, None),
        };
        let value_of = |key: &str| value.ok_or_else(|| format!("{key} needs a value ({key}=...)"));
        match key {
            "type" => typ = Some(value_of(key)?),
            "source" | "src" => source = Some(value_of(key)?),
            "target" | "destination" | "dst" => target = Some(absolute_target(value_of(key)?)?),
            "readonly" | "ro" => {
                readonly = match value {
                    None | Some("true" | "1") => true,
                    Some("false" | "0") => false,
                    Some(v) => return Err(format!("{key}={v:?}: expected true or false")),
                }
            }
            "tmpfs-size" => {
                let size = value_of(key)?;
                if !valid_tmpfs_size(size) {
                    return Err(format!("tmpfs-size={size:?}: expected a size such as 64m"));
                }
                tmpfs.push(format!("size={size}"));
            }
            "tmpfs-mode" => {
                let mode = value_of(key)?;
                if u32::from_str_radix(mode, 8).is_err() {
                    return Err(format!(
                        "tmpfs-mode={mode:?}: expected an octal mode such as 1777"
                    ));
                }
                tmpfs.push(format!("mode={mode}"));
            }
            key => {
                return Err(format!(
                    "unknown key {key:?} (type, source, target, readonly, tmpfs-size, tmpfs-mode)"
                ))
            }
        }
    }
    let target = target.ok_or("target= is required")?;
    match typ {
        Some("bind") => {
            if !tmpfs.is_empty() {
                return Err("tmpfs-size and tmpfs-mode go with type=tmpfs".into());
            }
            let source = source.ok_or("source= is required with type=bind")?;
            if std::fs::symlink_metadata(source).is_err() {
                return Err(format!("source={source:?} does not exist"));
            }
            Ok(MountArg::Bind(Volume {
                host: PathBuf::from(source),
                container: target,
                readonly,
            }))
        }
        Some("tmpfs") => {
            if source.is_some() {
                return Err("source= does not go with type=tmpfs".into());
            }
            if readonly {
                tmpfs.push("ro".to_owned());
            }
            let tmpfs: Vec<&str> = tmpfs.iter().map(String::as_str).collect();
            Ok(MountArg::Tmpfs(Tmpfs {
                target,
                options: tmpfs_options(&tmpfs)?,
            }))
        }
        Some(other) => Err(format!("type={other:?} is not supported (bind or tmpfs)")),
        None => Err("type= is required (bind or tmpfs)".into()),
    }
}

/// `KEY=VALUE` with a key, for `--sysctl`.
pub fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `KEY[=VALUE]`, for `--label` (a key alone has the empty value, as Docker's).
pub fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    let (key, value) = s.split_once('=').unwrap_or((s, ""));
    match key.is_empty() {
        true => Err(format!("expected KEY=VALUE, got {s:?}")),
        false => Ok((key.to_owned(), value.to_owned())),
    }
}

/// `--ulimit NAME=SOFT[:HARD]` with Docker's names (`nofile`, `nproc`, `core`, ...); a
/// limit is a number, or -1 or `unlimited`. Without HARD, both are SOFT.
pub fn parse_ulimit(s: &str) -> std::result::Result<Ulimit, String> {
    use PosixRlimitType::*;
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=SOFT[:HARD], got {s:?}"))?;
    let typ = match name {
        "as" => RlimitAs,
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        _ => {
            return Err(format!(
                "unknown limit {name:?} (as, core, cpu, data, fsize, locks, memlock, msgqueue, \
                 nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)"
            ))
        }
    };
    let limit = |v: &str| match v {
        "-1" | "unlimited" => Ok(u64::MAX),
        v => v
            .parse::<u64>()
            .map_err(|_| format!("{name}: {v:?} is not a number (or unlimited)")),
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (limit(soft)?, limit(hard)?),
        None => (limit(limits)?, limit(limits)?),
    };
    if soft > hard {
        return Err(format!("{name}: the soft limit is above the hard limit"));
    }
    Ok(Ulimit { typ, soft, hard })
}

/// `--device HOST[:CONTAINER][:PERMS]`: Docker's form (PERMS some of `rwm`, default all;
/// the container's path defaults to the host's).
pub fn parse_device(s: &str) -> std::result::Result<Device, String> {
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, access) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, perms] if is_perms(perms) => (*host, *host, *perms),
        [host, container] => (*host, *container, "rwm"),
        [host, container, perms] if is_perms(perms) => (*host, *container, *perms),
        [_, _, perms] => return Err(format!("{perms:?}: permissions are some of r, w and m")),
        _ => return Err(format!("expected HOST[:CONTAINER[:PERMS]], got {s:?}")),
    };
    if !host.starts_with('/') {
        return Err(format!("{host:?} must be an absolute path on the host"));
    }
    Ok(Device {
        host: PathBuf::from(host),
        container: absolute_target(container)?,
        access: access.to_owned(),
    })
}

/// The entries of an `--env-file` (Docker's format): `KEY=VALUE` lines, the value as
/// written; a `KEY` alone, which `peapod run` treats as `-e KEY` (the caller's value);
/// blank lines and lines starting with `#` skipped. An error gives the line's number.
pub fn parse_env_file(text: &str) -> std::result::Result<Vec<String>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut env = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            return Err((n + 1, format!("no variable name in {line:?}")));
        }
        if key.contains(char::is_whitespace) {
            return Err((
                n + 1,
                format!("the variable name {key:?} contains whitespace"),
            ));
        }
        env.push(match value {
            Some(value) => format!("{key}={value}"),
            None => key.to_owned(),
        });
    }
    Ok(env)
}

/// What the arguments of `peapod run` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTarget {
    /// `--rootfs DIR [--] CMD...`: a root directory and the whole command.
    Rootfs {
        /// The root directory.
        dir: PathBuf,
        /// The command.
        command: Vec<String>,
    },
    /// `[--bundle B] ID`: an OCI bundle (runc's `run`).
    Bundle {
        /// The bundle directory.
        dir: PathBuf,
        /// The container id.
        id: String,
    },
    /// `IMAGE [CMD...]`: an image (`docker run`).
    Image {
        /// The image reference.
        reference: String,
        /// The command replacing the image's Cmd, if any.
        command: Vec<String>,
    },
}

/// Tells `peapod run`'s forms apart by one rule: `--rootfs` is a root directory; `--bundle`,
/// or a single argument with a `config.json` in the current directory (`cwd_has_config`), is
/// an OCI bundle as runc runs it; anything else is `IMAGE [CMD...]`. So runc's callers keep
/// working, and an image is run from a bundle directory by giving it a command, or
/// `--pull`/`--entrypoint`, or from elsewhere.
pub fn run_target(
    rootfs: Option<PathBuf>,
    bundle: Option<PathBuf>,
    mut args: Vec<String>,
    cwd_has_config: bool,
    image_flags: bool,
) -> Result<RunTarget> {
    if let Some(dir) = rootfs {
        return Ok(RunTarget::Rootfs { dir, command: args });
    }
    let bundle_mode = bundle.is_some() || (args.len() == 1 && cwd_has_config && !image_flags);
    if bundle_mode {
        return match <[String; 1]>::try_from(args) {
            Ok([id]) => Ok(RunTarget::Bundle {
                dir: bundle.unwrap_or_else(|| PathBuf::from(".")),
                id,
            }),
            Err(args) if args.is_empty() => Err(Error::usage(anyhow::anyhow!(
                "run --bundle needs the container id"
            ))),
            Err(_) => Err(Error::usage(anyhow::anyhow!(
                "run --bundle takes one argument, the container id: the bundle's config.json names the command"
            ))),
        };
    }
    if args.is_empty() {
        return Err(Error::usage(anyhow::anyhow!(
            "run needs an IMAGE [CMD...], --rootfs DIR -- CMD, or a container id for the bundle"
        )));
    }
    let reference = args.remove(0);
    if reference.is_empty() || reference.starts_with('-') {
        return Err(Error::usage(anyhow::anyhow!(
            "{reference:?} is not an image reference"
        )));
    }
    // No image reference starts with `/` or `.`: a path meant as the root.
    if reference.starts_with(['/', '.']) {
        return Err(Error::usage(anyhow::anyhow!(
            "{reference:?} is a path, not an image reference: to run a directory as the root, \
             give it as --rootfs {reference} -- CMD"
        )));
    }
    Ok(RunTarget::Image {
        reference,
        command: args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tmpfs_options_start_from_dockers_and_the_users_win() {
        let t = parse_tmpfs("/run:exec,size=64m,mode=1777").expect("valid");
        assert_eq!(t.target, PathBuf::from("/run"));
        assert_eq!(
            t.options,
            ["nosuid", "nodev", "exec", "size=64m", "mode=1777"]
        );
        assert_eq!(parse_tmpfs("/t").expect("valid").options, TMPFS_DEFAULTS);
        assert!(parse_tmpfs("/t:mode=99x").is_err());
        assert!(parse_tmpfs("/t:size=").is_err());
    }

    #[test]
    fn mount_takes_dockers_keys_and_aliases() {
        let bind = parse_mount("type=bind,src=/,dst=/host,ro").expect("bind");
        assert_eq!(
            bind,
            MountArg::Bind(Volume {
                host: "/".into(),
                container: "/host".into(),
                readonly: true
            })
        );
        let tmpfs = parse_mount("type=tmpfs,destination=/c,tmpfs-size=1m").expect("tmpfs");
        assert!(matches!(tmpfs, MountArg::Tmpfs(t) if t.options.contains(&"size=1m".to_owned())));
        let e = parse_mount("type=bind,source=/,target=/x,bind-propagation=shared");
        assert!(e.expect_err("unknown key").contains("bind-propagation"));
        assert!(parse_mount("type=bind,source=/,target=x").is_err());
    }

    #[test]
    fn ulimits_and_devices_in_dockers_forms() {
        let u = parse_ulimit("nofile=1024:4096").expect("valid");
        assert_eq!(
            (u.typ, u.soft, u.hard),
            (PosixRlimitType::RlimitNofile, 1024, 4096)
        );
        assert_eq!(parse_ulimit("core=-1").expect("valid").hard, u64::MAX);
        let d = parse_device("/dev/fuse").expect("valid");
        assert_eq!(
            (d.container.as_path(), d.access.as_str()),
            (Path::new("/dev/fuse"), "rwm")
        );
        let d = parse_device("/dev/zero:r").expect("valid");
        assert_eq!(
            (d.container.as_path(), d.access.as_str()),
            (Path::new("/dev/zero"), "r")
        );
    }

    #[test]
    fn volumes_are_binds_of_host_paths_or_anonymous_and_never_named() {
        let bind = parse_volume("./data:/mnt:ro").expect("bind");
        assert_eq!(
            bind,
            VolumeArg::Bind(Volume {
                host: "./data".into(),
                container: "/mnt".into(),
                readonly: true
            })
        );
        assert_eq!(
            parse_volume("/var/lib/db/"),
            Ok(VolumeArg::Anonymous("/var/lib/db".into()))
        );
        let named = parse_volume("data:/mnt").expect_err("named");
        assert!(named.contains("no named volumes"), "{named}");
        for bad in [
            "/",
            "/proc/x",
            "/dev",
            "/sys/fs",
            "/a/../proc",
            "rel",
            "/a:rel",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_in_dockers_form() {
        let env = parse_env_file("\u{feff}# c\n\n A=1 \nB\n").expect("valid");
        assert_eq!(env, ["A=1 ", "B"]);
        assert_eq!(parse_env_file("A=1\n=2\n").map_err(|e| e.0), Err(2));
        assert_eq!(parse_env_file("A B=1\n").map_err(|e| e.0), Err(1));
    }

    #[test]
    fn a_device_is_a_node_and_a_rule_after_the_deny_all() {
        let flags = RunFlags {
            devices: vec![parse_device("/dev/null:/dev/nothing:rw").expect("valid")],
            command: vec!["/bin/true".into()],
            ..RunFlags::default()
        };
        let spec = spec_from_flags(&flags, Path::new("/"), false).expect("spec");
        let linux = spec.linux().as_ref().expect("linux");
        let node = &linux.devices().as_ref().expect("devices")[0];
        assert_eq!(
            (node.path().as_path(), node.major(), node.minor()),
            (Path::new("/dev/nothing"), 1, 3)
        );
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .expect("rules");
        let last = rules.last().expect("rule");
        assert!(last.allow() && !rules[0].allow());
        assert_eq!(
            (last.major(), last.minor(), last.access().as_deref()),
            (Some(1), Some(3), Some("rw"))
        );
    }

    #[test]
    fn run_arguments_are_a_rootfs_a_bundle_or_an_image_by_one_rule() {
        let target = |rootfs: Option<&str>, bundle: Option<&str>, args: &[&str], config, image| {
            run_target(
                rootfs.map(PathBuf::from),
                bundle.map(PathBuf::from),
                strings(args),
                config,
                image,
            )
        };
        let rootfs = target(Some("r"), None, &["/bin/sh"], true, false).expect("rootfs");
        assert!(matches!(rootfs, RunTarget::Rootfs { command, .. } if command == ["/bin/sh"]));
        // runc's `run ID` in a bundle directory, and `--bundle`.
        let id = target(None, None, &["web"], true, false).expect("bundle");
        assert_eq!(
            id,
            RunTarget::Bundle {
                dir: ".".into(),
                id: "web".into()
            }
        );
        let id = target(None, Some("b"), &["web"], false, false).expect("bundle");
        assert_eq!(
            id,
            RunTarget::Bundle {
                dir: "b".into(),
                id: "web".into()
            }
        );
        assert!(target(None, Some("b"), &["web", "sh"], false, false).is_err());
        // Without a config.json, with a command or with an image's flags: an image.
        for (args, config, image) in [
            (&["busybox"][..], false, false),
            (&["busybox", "true"][..], true, false),
            (&["busybox"][..], true, true),
        ] {
            let t = target(None, None, args, config, image).expect("image");
            assert!(
                matches!(&t, RunTarget::Image { reference, .. } if reference == "busybox"),
                "{t:?}"
            );
        }
        assert!(target(None, None, &[], false, false).is_err());
        // A path is pointed to --rootfs.
        for path in ["./rootfs", "/srv/rootfs", "../r", "."] {
            let e = target(None, None, &[path, "/bin/true"], false, false).expect_err(path);
            assert_eq!(e.exit_code(), 2, "{path}");
            assert!(e.one_line().contains(&format!("--rootfs {path}")), "{path}");
        }
    }
}
