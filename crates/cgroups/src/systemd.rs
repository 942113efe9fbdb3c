//! The systemd cgroup driver (`--systemd-cgroup`, as runc's): a container's cgroup is a
//! transient scope unit that systemd makes over D-Bus (`StartTransientUnit` on
//! `org.freedesktop.systemd1`) with the container's init as its one process, `Delegate=yes`
//! (the container's cgroup is then peapod's to write), in the slice `linux.cgroupsPath`
//! names, and the limits systemd knows as unit properties; the rest are written to the cgroup
//! files as on cgroupfs ([`crate::Cgroup::apply`]).
//!
//! The D-Bus client is zbus's blocking API: a well-kept pure-Rust implementation (no
//! libdbus), only linked into the paths that use this driver.

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use crate::{Error, Result};

/// Where a container's scope goes: `linux.cgroupsPath` as `slice:prefix:name`, parsed as
/// runc parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdPath {
    /// The slice unit the scope goes into (`system.slice` when empty).
    pub slice: String,
    /// The scope unit: `prefix-name.scope` (or `name` itself when it is a slice).
    pub unit: String,
}

impl SystemdPath {
    /// `cgroups_path` as `slice:prefix:name`; without one, `:peapod:ID` (runc's `:runc:ID`).
    /// An empty slice is `system.slice`; an empty name is the container's `id`.
    pub fn parse(cgroups_path: Option<&str>, id: &str) -> Result<SystemdPath> {
        let path = cgroups_path.filter(|p| !p.is_empty());
        let (slice, prefix, name) = match path.map(|p| p.split(':').collect::<Vec<_>>()) {
            None => ("", "peapod", id),
            Some(parts) => match parts[..] {
                [slice, prefix, name] => (slice, prefix, name),
                _ => {
                    return Err(Error::Systemd(format!(
                        "linux.cgroupsPath {:?}: the systemd driver expects \"slice:prefix:name\"",
                        path.unwrap_or_default()
                    )))
                }
            },
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        let name = if name.is_empty() { id } else { name };
        let unit = if name.ends_with(".slice") {
            name.to_owned()
        } else {
            format!("{prefix}-{name}.scope")
        };
        if unit.contains('/') || unit.starts_with('.') {
            return Err(Error::Systemd(format!(
                "linux.cgroupsPath: {unit:?} is not a unit name"
            )));
        }
        expand_slice(slice)?;
        Ok(SystemdPath {
            slice: slice.to_owned(),
            unit,
        })
    }

    /// The scope's cgroup, relative to the cgroup2 mount: the slice expanded into its
    /// parents, then the unit (`a-b.slice:p:n` is `a.slice/a-b.slice/p-n.scope`).
    pub fn relative(&self) -> Result<PathBuf> {
        Ok(expand_slice(&self.slice)?.join(&self.unit))
    }
}

/// The cgroup of slice `slice` relative to the root, as systemd (and runc's `ExpandSlice`)
/// names it: `a-b-c.slice` is `a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::Systemd(format!("slice {slice:?}: {why}"));
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(bad("a slice's name ends in \".slice\""));
    };
    if slice.contains('/') {
        return Err(bad("a slice's name has no '/'"));
    }
    if stem == "-" {
        return Ok(PathBuf::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(bad("not a slice name"));
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// `text` as a part of a unit name, escaped as `systemd-escape` does: every byte but ASCII
/// letters, digits, `:`, `_` and `.` (and a leading `.`) becomes `\xNN`, so that a `-` does
/// not make a slice's parent.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The slice of pod `name` (of the state root whose tag is `tag`) under the systemd driver,
/// in `parent`, as podman names its pods' (`machine-libpod_pod_ID.slice`):
/// `PARENT-peapod_pod_NAME_TAG.slice`, NAME escaped ([`escape`]). The slice of the root,
/// `-.slice`, has the pod's slice at the top.
pub fn pod_slice(parent: &str, name: &str, tag: &str) -> Result<String> {
    let parent_stem = parent.strip_suffix(".slice").unwrap_or(parent);
    expand_slice(parent)?;
    let own = format!("peapod_pod_{}_{}", escape(name), escape(tag));
    Ok(match parent_stem {
        "-" => format!("{own}.slice"),
        stem => format!("{stem}-{own}.slice"),
    })
}

/// The limits of `linux.resources` that systemd has unit properties for, as runc sets them:
/// systemd writes them to the scope's cgroup itself, and keeps them on a daemon-reload.
/// On a hybrid host they go by their v1 names, as runc's legacy driver sends them
/// (`MemoryLimit`, `CPUShares`; no `AllowedCPUs`: systemd has no cpuset there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    memory_max: Option<u64>,
    tasks_max: Option<u64>,
    cpu_shares: Option<u64>,
    /// `CPUQuotaPerSecUSec` and `CPUQuotaPeriodUSec`.
    cpu_quota: Option<(u64, u64)>,
    allowed_cpus: Option<Vec<u8>>,
    allowed_memory_nodes: Option<Vec<u8>>,
}

impl Properties {
    /// Those of `resources` (a limit of -1 is systemd's "infinity").
    pub fn of(resources: &LinuxResources) -> Result<Properties> {
        let unlimited = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        let mut props = Properties::default();
        if let Some(memory) = resources.memory() {
            props.memory_max = memory.limit().map(unlimited);
        }
        if let Some(pids) = resources.pids() {
            props.tasks_max = Some(unlimited(pids.limit())).filter(|v| *v != 0);
        }
        if let Some(cpu) = resources.cpu() {
            props.cpu_shares = cpu.shares().filter(|s| *s != 0);
            if let Some(quota) = cpu.quota() {
                let period = cpu.period().filter(|p| *p != 0).unwrap_or(100_000);
                props.cpu_quota = Some((quota_per_sec(quota, period), period));
            }
            props.allowed_cpus = cpu.cpus().as_deref().map(bitmask).transpose()?;
            props.allowed_memory_nodes = cpu.mems().as_deref().map(bitmask).transpose()?;
        }
        Ok(props)
    }
}

/// runc's `CPUQuotaPerSecUSec`: the quota per second, rounded up to 10 ms (systemd's unit);
/// -1 (no quota) is infinity.
fn quota_per_sec(quota: i64, period: u64) -> u64 {
    let Ok(quota) = u64::try_from(quota) else {
        return u64::MAX;
    };
    let per_sec = quota.saturating_mul(1_000_000) / period;
    per_sec.div_ceil(10_000) * 10_000
}

/// A cpuset list (`0-2,7`) as systemd's bitmask: bit N of byte N/8 for cpu (or node) N.
fn bitmask(list: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::Systemd(format!(
            "linux.resources.cpu: cannot parse the cpuset {list:?}"
        ))
    };
    let mut mask = Vec::new();
    for range in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first: usize = first.trim().parse().map_err(|_| bad())?;
        let last: usize = last.trim().parse().map_err(|_| bad())?;
        if first > last || last >= 8192 {
            return Err(bad());
        }
        for n in first..=last {
            if mask.len() <= n / 8 {
                mask.resize(n / 8 + 1, 0);
            }
            mask[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(mask)
}

pub use bus::{set_properties, start_scope, start_slice, stop_peapod_scope, stop_unit};

/// The description [`start_scope`] gives scope `unit`: how [`stop_peapod_scope`] knows a
/// scope is peapod's. (Only the D-Bus client, the feature `systemd`, uses it.)
#[cfg(feature = "systemd")]
fn description(unit: &str) -> String {
    format!("peapod container {unit}")
}

/// The D-Bus calls, with zbus (the cargo feature `systemd`, on by default).
#[cfg(feature = "systemd")]
mod bus {
    use std::time::{Duration, Instant};

    use zbus::blocking::{Connection, Proxy};
    use zbus::zvariant::{OwnedObjectPath, Value};

    use super::{Properties, SystemdPath};
    use crate::{Error, Result};

    /// How long systemd may take to start or stop a unit (runc waits as long).
    const JOB_TIMEOUT: Duration = Duration::from_secs(30);

    const SERVICE: &str = "org.freedesktop.systemd1";
    const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
    const MANAGER: &str = "org.freedesktop.systemd1.Manager";

    /// As D-Bus `(sv)` pairs, by the names of the unified hierarchy (`unified`) or of v1.
    fn pairs(props: &Properties, unified: bool) -> Vec<(&'static str, Value<'_>)> {
        let mut out: Vec<(&'static str, Value<'_>)> = Vec::new();
        if let Some(v) = props.memory_max {
            out.push((
                if unified { "MemoryMax" } else { "MemoryLimit" },
                Value::U64(v),
            ));
        }
        if let Some(v) = props.tasks_max {
            out.push(("TasksMax", Value::U64(v)));
        }
        match props.cpu_shares {
            Some(v) if unified => out.push((
                "CPUWeight",
                Value::U64(crate::resources::shares_to_weight(v)),
            )),
            Some(v) => out.push(("CPUShares", Value::U64(v))),
            None => {}
        }
        if let Some((per_sec, period)) = props.cpu_quota {
            out.push(("CPUQuotaPerSecUSec", Value::U64(per_sec)));
            out.push(("CPUQuotaPeriodUSec", Value::U64(period)));
        }
        // systemd has cpuset only on the unified hierarchy; on v1 the files are written.
        if let Some(mask) = props.allowed_cpus.as_ref().filter(|_| unified) {
            out.push(("AllowedCPUs", Value::from(mask.clone())));
        }
        if let Some(mask) = props.allowed_memory_nodes.as_ref().filter(|_| unified) {
            out.push(("AllowedMemoryNodes", Value::from(mask.clone())));
        }
        out
    }

    /// Whether systemd runs on the unified hierarchy, as it decides it itself: whether
    /// `/sys/fs/cgroup` is cgroup2 (a hybrid or legacy host has a tmpfs there).
    /// The accounting a scope or slice turns on: memory, CPU, tasks and I/O (blkio's name on
    /// v1, as runc's legacy driver has it).
    fn accounting(unified: bool) -> [(&'static str, Value<'static>); 4] {
        let io = if unified {
            "IOAccounting"
        } else {
            "BlockIOAccounting"
        };
        [
            ("MemoryAccounting", Value::Bool(true)),
            ("CPUAccounting", Value::Bool(true)),
            ("TasksAccounting", Value::Bool(true)),
            (io, Value::Bool(true)),
        ]
    }

    fn unified() -> bool {
        nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    }

    /// A connection to systemd's manager on the system bus.
    struct Manager {
        connection: Connection,
    }

    impl Manager {
        fn connect() -> Result<Manager> {
            let connection =
                Connection::system().map_err(|e| dbus("connect to the system bus", e))?;
            Ok(Manager { connection })
        }

        fn proxy(&self) -> Result<Proxy<'static>> {
            Proxy::new(&self.connection, SERVICE, MANAGER_PATH, MANAGER)
                .map_err(|e| dbus("reach systemd's manager", e))
        }

        /// Calls `method` (which queues a job and returns its path) and waits for the job's
        /// `JobRemoved`, with a deadline; an outcome other than "done" is an error.
        fn job<B>(&self, unit: &str, method: &str, body: &B) -> Result<()>
        where
            B: serde::Serialize + zbus::zvariant::DynamicType,
        {
            let proxy = self.proxy()?;
            // systemd sends its job signals only once a client has asked (`Subscribe`, as
            // go-systemd does); subscribed before the call, so that a job that ends at once is
            // not missed.
            proxy
                .call::<_, _, ()>("Subscribe", &())
                .map_err(|e| dbus("Subscribe to systemd's signals", e))?;
            let signals = proxy
                .receive_signal("JobRemoved")
                .map_err(|e| dbus("subscribe to JobRemoved", e))?;
            let job: OwnedObjectPath = proxy
                .call(method, body)
                .map_err(|e| dbus(&format!("{method} {unit}"), e))?;
            let deadline = Instant::now() + JOB_TIMEOUT;
            let (tx, rx) = std::sync::mpsc::channel();
            // The iterator blocks; a thread reads it so that the wait has a deadline.
            std::thread::spawn(move || {
                for message in signals {
                    let body = message.body();
                    let Ok((_, path, _, result)) =
                        body.deserialize::<(u32, OwnedObjectPath, String, String)>()
                    else {
                        continue;
                    };
                    if path == job {
                        let _ = tx.send(result);
                        return;
                    }
                }
            });
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(result) if result == "done" => Ok(()),
                Ok(result) => Err(Error::Systemd(format!(
                    "{method} {unit}: systemd's job ended \"{result}\""
                ))),
                Err(_) => Err(Error::Systemd(format!(
                    "{method} {unit}: systemd did not finish the job within {JOB_TIMEOUT:?}"
                ))),
            }
        }
    }

    fn dbus(what: &str, e: zbus::Error) -> Error {
        Error::Systemd(format!("cannot {what} over D-Bus: {e}"))
    }

    /// Makes the transient scope `path.unit` in `path.slice` with process `pid` in it (the
    /// container's init, stopped before it runs anything of the container), `Delegate=yes`
    /// and `properties`; returns once systemd has made it.
    pub fn start_scope(path: &SystemdPath, pid: u32, properties: &Properties) -> Result<()> {
        let connecting = Instant::now();
        let manager = Manager::connect()?;
        let connected = connecting.elapsed();
        let description = super::description(&path.unit);
        let unified = unified();
        let mut props: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(description.as_str())),
            ("Slice", Value::from(path.slice.as_str())),
            ("Delegate", Value::Bool(true)),
            ("PIDs", Value::from(vec![pid])),
            ("DefaultDependencies", Value::Bool(false)),
        ];
        props.extend(accounting(unified));
        props.extend(pairs(properties, unified));
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let started = Instant::now();
        manager.job(
            &path.unit,
            "StartTransientUnit",
            &(path.unit.as_str(), "replace", props, aux),
        )?;
        tracing::debug!(
            "scope {} made in {:?} (connected to the bus in {connected:?})",
            path.unit,
            started.elapsed()
        );
        Ok(())
    }

    /// Makes the transient slice `slice` (a pod's) with `properties`, the limits of
    /// everything in it together, as podman makes a pod's; returns once systemd has made it.
    pub fn start_slice(slice: &str, properties: &Properties) -> Result<()> {
        let manager = Manager::connect()?;
        let description = format!("peapod pod {slice}");
        let mut props: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(description.as_str())),
            ("DefaultDependencies", Value::Bool(false)),
        ];
        let unified = unified();
        props.extend(accounting(unified));
        props.extend(pairs(properties, unified));
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        manager.job(slice, "StartTransientUnit", &(slice, "replace", props, aux))
    }

    /// Stops unit `unit` (killing what is left in it) and forgets it if it failed, as runc's
    /// `delete` does; a unit systemd no longer knows is not an error.
    pub fn stop_unit(unit: &str) -> Result<()> {
        let manager = Manager::connect()?;
        match manager.job(unit, "StopUnit", &(unit, "replace")) {
            Ok(()) => {}
            Err(Error::Systemd(e)) if e.contains("NoSuchUnit") => {}
            Err(e) => return Err(e),
        }
        let proxy = manager.proxy()?;
        let reset: zbus::Result<()> = proxy.call("ResetFailedUnit", &(unit,));
        match reset {
            Err(zbus::Error::MethodError(name, _, _)) if name.contains("NoSuchUnit") => Ok(()),
            other => other.map_err(|e| dbus(&format!("ResetFailedUnit {unit}"), e)),
        }
    }

    /// Stops scope `unit` as [`stop_unit`] does, but only when systemd has it as one that
    /// peapod made (its description is the one [`start_scope`] gives): for a record that does
    /// not name its unit, whose name is then read off its cgroup's directory, which could be
    /// any unit's. Returns whether it was stopped; a unit systemd does not know is not.
    pub fn stop_peapod_scope(unit: &str) -> Result<bool> {
        let manager = Manager::connect()?;
        let path: OwnedObjectPath = match manager.proxy()?.call("GetUnit", &(unit,)) {
            Ok(path) => path,
            Err(zbus::Error::MethodError(name, _, _)) if name.contains("NoSuchUnit") => {
                return Ok(false)
            }
            Err(e) => return Err(dbus(&format!("GetUnit {unit}"), e)),
        };
        let read = |e: zbus::Error| dbus(&format!("read the Description of {unit}"), e);
        let described: String = Proxy::new(
            &manager.connection,
            SERVICE,
            path,
            "org.freedesktop.systemd1.Unit",
        )
        .map_err(read)?
        .get_property("Description")
        .map_err(read)?;
        if described != super::description(unit) {
            tracing::debug!("{unit} is not a peapod scope ({described:?}): left alone");
            return Ok(false);
        }
        stop_unit(unit)?;
        Ok(true)
    }

    /// Sets `properties` on the running unit `unit` (`update`), at once and for good.
    pub fn set_properties(unit: &str, properties: &Properties) -> Result<()> {
        let pairs = pairs(properties, unified());
        if pairs.is_empty() {
            return Ok(());
        }
        let manager = Manager::connect()?;
        let proxy = manager.proxy()?;
        proxy
            .call::<_, _, ()>("SetUnitProperties", &(unit, true, pairs))
            .map_err(|e| dbus(&format!("SetUnitProperties {unit}"), e))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn v1_gets_runc_legacy_names_and_no_cpuset() {
            let resources: oci_spec::runtime::LinuxResources =
                serde_json::from_value(serde_json::json!({
                    "memory": { "limit": 1024 },
                    "pids": { "limit": 5 },
                    "cpu": { "shares": 512, "cpus": "0", "mems": "0" }
                }))
                .unwrap();
            let props = Properties::of(&resources).unwrap();
            let names =
                |unified| -> Vec<&str> { pairs(&props, unified).iter().map(|(n, _)| *n).collect() };
            assert_eq!(names(false), ["MemoryLimit", "TasksMax", "CPUShares"]);
            assert_eq!(
                names(true),
                [
                    "MemoryMax",
                    "TasksMax",
                    "CPUWeight",
                    "AllowedCPUs",
                    "AllowedMemoryNodes"
                ]
            );
            let v1 = pairs(&props, false);
            assert_eq!(v1[2].1, Value::U64(512));
            let v2 = pairs(&props, true);
            assert_eq!(v2[2].1, Value::U64(crate::resources::shares_to_weight(512)));
        }
    }
}

/// Without zbus (built without the cargo feature `systemd`): every call says so.
#[cfg(not(feature = "systemd"))]
mod bus {
    use super::{Properties, SystemdPath};
    use crate::{Error, Result};

    fn missing() -> Error {
        Error::Systemd(
            "this peapod was built without the systemd driver (cargo feature `systemd`)".into(),
        )
    }

    /// See the zbus version.
    pub fn start_scope(_: &SystemdPath, _: u32, _: &Properties) -> Result<()> {
        Err(missing())
    }

    /// See the zbus version.
    pub fn start_slice(_: &str, _: &Properties) -> Result<()> {
        Err(missing())
    }

    /// See the zbus version.
    pub fn stop_unit(_: &str) -> Result<()> {
        Err(missing())
    }

    /// See the zbus version.
    pub fn stop_peapod_scope(_: &str) -> Result<bool> {
        Err(missing())
    }

    /// See the zbus version.
    pub fn set_properties(_: &str, _: &Properties) -> Result<()> {
        Err(missing())
    }
}

/// Whether PID 1 is systemd (its `/run/systemd/system`, as `sd_booted(3)` checks).
pub fn booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path_is_parsed_as_runc_parses_it() {
        let p = SystemdPath::parse(Some("machine.slice:peapod:web"), "id").unwrap();
        assert_eq!(
            (p.slice.as_str(), p.unit.as_str()),
            ("machine.slice", "peapod-web.scope")
        );
        let p = SystemdPath::parse(None, "id").unwrap();
        assert_eq!(
            (p.slice.as_str(), p.unit.as_str()),
            ("system.slice", "peapod-id.scope")
        );
        let p = SystemdPath::parse(Some("::"), "id").unwrap();
        assert_eq!(
            (p.slice.as_str(), p.unit.as_str()),
            ("system.slice", "-id.scope")
        );
        let p = SystemdPath::parse(Some("kubepods-burstable-pod1.slice:cri-containerd:c1"), "x")
            .unwrap();
        assert_eq!(
            p.relative().unwrap(),
            PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-c1.scope"
            )
        );
        for bad in [
            "a:b",
            "a.slice:b:c:d",
            "/x.slice:p:n",
            "x:p:n",
            "a--b.slice:p:n",
        ] {
            assert!(SystemdPath::parse(Some(bad), "id").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pods_slice_is_named_with_its_name_escaped() {
        assert_eq!(escape("web-1.a+b"), "web\\x2d1.a\\x2bb");
        assert_eq!(escape(".x"), "\\x2ex");
        let slice = pod_slice("machine.slice", "twin-7", "0a1b2c3d").unwrap();
        assert_eq!(slice, "machine-peapod_pod_twin\\x2d7_0a1b2c3d.slice");
        assert_eq!(
            expand_slice(&slice).unwrap(),
            PathBuf::from("machine.slice").join(&slice)
        );
        assert_eq!(
            pod_slice("-.slice", "web", "0a").unwrap(),
            "peapod_pod_web_0a.slice"
        );
        assert!(pod_slice("machine", "web", "0a").is_err());
    }

    #[test]
    fn the_root_slice_expands_to_the_root() {
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::new());
        assert_eq!(
            expand_slice("a-b.slice").unwrap(),
            PathBuf::from("a.slice/a-b.slice")
        );
    }

    #[test]
    fn cpusets_become_bitmasks_and_quotas_round_up() {
        assert_eq!(bitmask("0-2,9").unwrap(), vec![0b0000_0111, 0b0000_0010]);
        assert!(bitmask("3-1").is_err());
        assert_eq!(quota_per_sec(50_000, 100_000), 500_000);
        assert_eq!(quota_per_sec(1_234, 100_000), 20_000);
        assert_eq!(quota_per_sec(-1, 100_000), u64::MAX);
    }
}
