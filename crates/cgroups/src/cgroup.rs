//! One container's cgroup: a directory in every hierarchy that has controllers (v1), or one
//! directory in the unified hierarchy (v2), and what can be done with it. On v1 it has a
//! directory in each hierarchy that only tracks processes too (`name=systemd`, a hybrid
//! host's cgroup2 mount), as runc makes it; no limit is ever written there.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::io;
use crate::layout::join_inside;
use crate::systemd::{expand_slice, Properties, SystemdPath};
use crate::{DeviceFilter, Error, Layout, Result};

/// The parent of containers' cgroups when the spec names none: `peapod/<id>` below the
/// runtime's own cgroup (on v2 beside it, see [`Cgroup::locate`]). [`Cgroup::remove`]
/// removes it too once it is empty.
pub const DEFAULT_PARENT: &str = "peapod";

/// How long [`Cgroup::remove`] retries a directory the kernel still finds busy (a killed
/// process not yet reaped keeps its cgroup populated).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The controllers a v2 cgroup asks its parents to enable, where they are available.
const V2_CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "hugetlb", "pids"];

/// A container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    v2: bool,
    dirs: Vec<Dir>,
    /// The directories [`Cgroup::create`] found there already (joined, as runc does): they
    /// are not peapod's to remove when the creation fails. Per directory, since a cgroup made
    /// by another tool may lack the tracking hierarchies that peapod adds.
    existed: Vec<PathBuf>,
    /// The systemd driver's scope, made by [`Cgroup::add`] with the container's init in it
    /// (a scope cannot be made empty); `None` on cgroupfs and for a cgroup opened again.
    scope: Option<Box<(SystemdPath, Properties)>>,
    /// The systemd driver's slice this cgroup is (a pod's, see [`Cgroup::systemd_slice`]):
    /// what is made below it is a scope in it ([`Cgroup::scope_in_slice`]).
    slice: Option<String>,
}

/// The cgroup's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dir {
    /// The hierarchy's mount point.
    pub(crate) mount: PathBuf,
    /// Its controllers.
    pub(crate) controllers: Vec<String>,
    /// The cgroup's directory.
    pub(crate) path: PathBuf,
    /// What the hierarchy is to the container.
    pub(crate) kind: Kind,
}

/// What a hierarchy is to a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Its controllers take the container's limits (v1 controller hierarchies, or v2).
    Controllers,
    /// A named v1 hierarchy (`name=systemd`): joined through `tasks`, never limited.
    Named,
    /// A hybrid host's cgroup2 mount: joined through `cgroup.procs`, never limited (its
    /// controllers, if any, are left alone as runc leaves them).
    Unified,
}

impl Kind {
    fn of(hierarchy: &crate::Hierarchy, tracking: bool) -> Kind {
        match (tracking, &hierarchy.name) {
            (false, _) => Kind::Controllers,
            (true, Some(_)) => Kind::Named,
            (true, None) => Kind::Unified,
        }
    }

    /// The controllers of `hierarchy` that peapod may write limits to.
    fn controllers(self, hierarchy: &crate::Hierarchy) -> Vec<String> {
        match self {
            Kind::Controllers => hierarchy.controllers.clone(),
            Kind::Named | Kind::Unified => Vec::new(),
        }
    }
}

/// What the freezer says of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    /// Its processes run.
    Thawed,
    /// Being frozen (v1 only: some processes are not stopped yet).
    Freezing,
    /// Every process is stopped.
    Frozen,
}

/// Usage figures of a cgroup, as `runc events --stats` reports them. Zero where this host's
/// cgroups do not count it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory now in use, in bytes.
    pub memory_usage: u64,
    /// The highest memory use seen, in bytes (v2: `memory.peak`, where the kernel has it).
    pub memory_max_usage: u64,
    /// The memory limit in bytes (`u64::MAX` when there is none).
    pub memory_limit: u64,
    /// How often the limit was hit (v1 `memory.failcnt`, v2 the `max` events).
    pub memory_failcnt: u64,
    /// How many processes the OOM killer killed in it.
    pub oom_kills: u64,
    /// CPU time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Of that, in user mode.
    pub cpu_user_ns: u64,
    /// Of that, in kernel mode.
    pub cpu_system_ns: u64,
    /// Enforcement periods that elapsed under a quota.
    pub cpu_periods: u64,
    /// Of those, the periods in which it was throttled.
    pub cpu_throttled_periods: u64,
    /// How long it was throttled, in nanoseconds.
    pub cpu_throttled_ns: u64,
    /// How many processes (tasks) it holds.
    pub pids_current: u64,
    /// Its pids limit (0 when there is none).
    pub pids_limit: u64,
}

impl Cgroup {
    /// The path of a container's cgroup when the spec gives none, relative to the runtime's
    /// own cgroup (see [`Cgroup::locate`]): `peapod/<id>`.
    pub fn default_path(id: &str) -> PathBuf {
        Path::new(DEFAULT_PARENT).join(id)
    }

    /// Where the cgroup `path` is in every hierarchy, without creating anything. An absolute
    /// path is below each hierarchy's root; a relative one below this process's own cgroup,
    /// on v2 below its parent (as runc treats `linux.cgroupsPath`): a v2 cgroup that holds
    /// processes cannot hand controllers down, and peapod's own holds at least peapod (a
    /// login session's scope, a service), while its parent (a slice) holds none.
    pub fn locate(layout: &Layout, path: &Path) -> Result<Cgroup> {
        if !path.components().any(|c| matches!(c, Component::Normal(_))) {
            return Err(Error::BadPath(path.to_owned()));
        }
        let mut dirs = Vec::new();
        for (h, kind) in every_hierarchy(layout) {
            let base = if path.is_absolute() {
                h.mount.clone()
            } else if layout.is_v2() {
                join_inside(&h.mount, h.own.parent().unwrap_or(&h.own))?
            } else {
                join_inside(&h.mount, &h.own)?
            };
            dirs.push(Dir {
                mount: h.mount.clone(),
                controllers: kind.controllers(h),
                path: join_inside(&base, path)?,
                kind,
            });
        }
        Ok(Cgroup {
            v2: layout.is_v2(),
            dirs,
            existed: Vec::new(),
            scope: None,
            slice: None,
        })
    }

    /// The cgroup whose directories are `paths` (as [`Cgroup::paths`] gave them), for a
    /// later command on the same container.
    pub fn open(layout: &Layout, paths: &[PathBuf]) -> Cgroup {
        let dirs = paths
            .iter()
            .filter_map(|path| {
                let (h, kind) = every_hierarchy(layout)
                    .into_iter()
                    .filter(|(h, _)| path.starts_with(&h.mount))
                    .max_by_key(|(h, _)| h.mount.as_os_str().len())?;
                Some(Dir {
                    mount: h.mount.clone(),
                    controllers: kind.controllers(h),
                    path: path.clone(),
                    kind,
                })
            })
            .collect();
        Cgroup {
            v2: layout.is_v2(),
            dirs,
            existed: Vec::new(),
            scope: None,
            slice: None,
        }
    }

    /// The systemd driver's cgroup: the scope `path`, made with `properties` when
    /// [`Cgroup::add`] puts the container's init in it. Nothing is made here. On v2 it is one
    /// directory; on a hybrid host (`systemd.unified_cgroup_hierarchy=0`) it has one in every
    /// hierarchy, as runc's: systemd makes those of the controllers it manages there, the
    /// `name=systemd` one and the cgroup2 one, and [`Cgroup::add`] the rest (cpuset,
    /// freezer, ...). A pure v1 host (no cgroup2 mount) is refused: the device program goes
    /// to the cgroup2 directory, and systemd writes a scope's v1 devices rules itself (allow
    /// all, for a unit without device properties) whenever it applies the unit's settings.
    pub fn systemd(layout: &Layout, path: SystemdPath, properties: Properties) -> Result<Cgroup> {
        let hybrid = matches!(
            layout,
            Layout::V1 {
                unified: Some(_),
                ..
            }
        );
        if !layout.is_v2() && !hybrid {
            return Err(Error::Systemd(
                "the systemd driver needs a cgroup2 hierarchy (v2, or a hybrid host's \
                 /sys/fs/cgroup/unified) to filter devices; this host has only cgroup v1"
                    .into(),
            ));
        }
        let mut cgroup = Cgroup::locate(layout, &Path::new("/").join(path.relative()?))?;
        if cgroup.dirs.iter().any(|d| d.path.exists()) {
            return Err(Error::Systemd(format!("unit {} exists already", path.unit)));
        }
        cgroup.scope = Some(Box::new((path, properties)));
        Ok(cgroup)
    }

    /// The systemd driver's slice `slice` (a pod's), made over D-Bus with `properties` (the
    /// pod's limits, which hold for the scopes in it together) unless `make` is false (a
    /// slice made before, opened again). What is made below it is a scope in it
    /// ([`Cgroup::scope_in_slice`]); removed by stopping the unit ([`crate::systemd::stop_unit`]).
    pub fn systemd_slice(
        layout: &Layout,
        slice: &str,
        properties: Option<&Properties>,
    ) -> Result<Cgroup> {
        if !layout.is_v2() {
            return Err(Error::Systemd(
                "a pod under the systemd driver needs the unified cgroup hierarchy (cgroup v2); \
                 on this hybrid host its containers can each have a scope, the pod no slice"
                    .into(),
            ));
        }
        let mut cgroup = Cgroup::locate(layout, &Path::new("/").join(expand_slice(slice)?))?;
        if let Some(properties) = properties {
            if cgroup.dirs.iter().any(|d| d.path.exists()) {
                return Err(Error::Systemd(format!("unit {slice} exists already")));
            }
            crate::systemd::start_slice(slice, properties)?;
        }
        cgroup.slice = Some(slice.to_owned());
        Ok(cgroup)
    }

    /// The systemd driver's slice this cgroup is, if it is one.
    pub fn slice(&self) -> Option<&str> {
        self.slice.as_deref()
    }

    /// The scope `STEM-NAME.scope` in this slice (STEM: the slice's own part of its name, so
    /// that the names of two pods' scopes differ), with `properties`, made when
    /// [`Cgroup::add`] puts the first process in it. Nothing is made here.
    pub fn scope_in_slice(&self, name: &str, properties: Properties) -> Result<Cgroup> {
        let Some(slice) = &self.slice else {
            return Err(Error::Systemd(format!("not a slice: {:?}", self.paths())));
        };
        let stem = slice.trim_end_matches(".slice");
        let stem = stem.rsplit('-').next().unwrap_or(stem);
        let unit = format!("{stem}-{}.scope", crate::systemd::escape(name));
        let dirs = self
            .dirs
            .iter()
            .map(|d| Dir {
                path: d.path.join(&unit),
                ..d.clone()
            })
            .collect();
        let path = SystemdPath {
            slice: slice.clone(),
            unit,
        };
        Ok(Cgroup {
            v2: self.v2,
            dirs,
            existed: Vec::new(),
            scope: Some(Box::new((path, properties))),
            slice: None,
        })
    }

    /// Makes the cgroup `path` (see [`Cgroup::locate`]) in every hierarchy. On v1 a new
    /// cpuset cgroup gets its parent's cpus and mems (a new one has none, and no process
    /// could join it); on v2 the parents enable the controllers peapod sets limits with.
    /// An existing cgroup is joined, as runc does. On failure, what was made is removed.
    pub fn create(layout: &Layout, path: &Path) -> Result<Cgroup> {
        Cgroup::locate(layout, path)?.made()
    }

    /// Makes the cgroup `path` below this one, in each of its hierarchies, as
    /// [`Cgroup::create`] does: a pod's container below the pod's cgroup. It is found from
    /// this cgroup's directories, so it lands below them even when the caller runs in
    /// another cgroup than the one that made this.
    ///
    /// Below a systemd slice it is the scope [`Cgroup::scope_in_slice`] names, without limits.
    pub fn create_child(&self, path: &Path) -> Result<Cgroup> {
        if path.is_absolute() || !path.components().any(|c| matches!(c, Component::Normal(_))) {
            return Err(Error::BadPath(path.to_owned()));
        }
        if self.slice.is_some() {
            let name = path.to_str().filter(|p| !p.contains('/'));
            let name = name.ok_or_else(|| Error::BadPath(path.to_owned()))?;
            return self.scope_in_slice(name, Properties::default());
        }
        let mut dirs = Vec::new();
        for dir in &self.dirs {
            dirs.push(Dir {
                path: join_inside(&dir.path, path)?,
                ..dir.clone()
            });
        }
        Cgroup {
            v2: self.v2,
            dirs,
            existed: Vec::new(),
            scope: None,
            slice: None,
        }
        .made()
    }

    /// Makes its directories; on failure, removes what was made.
    fn made(mut self) -> Result<Cgroup> {
        if let Err(e) = self.make() {
            self.undo();
            return Err(e);
        }
        Ok(self)
    }

    /// Removes the cgroup after a creation that failed, except the directories that existed
    /// before [`Cgroup::create`] joined them: those stay as they were found.
    pub fn undo(&self) {
        if let Some(scope) = &self.scope {
            if let Err(e) = crate::systemd::stop_unit(&scope.0.unit) {
                tracing::debug!("{e}");
            }
        }
        let made = self.dirs.iter().filter(|d| !self.existed.contains(&d.path));
        let _ = remove_dirs(made);
    }

    /// Makes every directory. One of a tracking hierarchy that cannot be made (a read-only
    /// `name=systemd` mount, say) is left out with a warning rather than failing the
    /// container: no limit depends on it, and peapod ran there without it before.
    ///
    /// Which directories were there already ([`Cgroup::undo`] leaves them) is told by their
    /// `mkdir` failing with `EEXIST`, not by a `stat` of each first: on v1 that is one lookup
    /// fewer in each of 9-10 hierarchies, in a directory where every other container being
    /// made at the same time takes the lock for its own `mkdir`. Those not reached when one
    /// fails count as found there, so that the undo never removes what it did not make.
    fn make(&mut self) -> Result<()> {
        let mut left_out = Vec::new();
        for i in 0..self.dirs.len() {
            let dir = &self.dirs[i];
            let mut found = false;
            match self.make_with_retries(dir, &mut found) {
                Ok(()) => {}
                Err(e) if dir.kind != Kind::Controllers => {
                    tracing::warn!(
                        "{e}; the container's cgroup is left out of {}",
                        dir.mount.display()
                    );
                    if !found {
                        let _ = remove_dirs([dir]);
                    }
                    left_out.push(i);
                }
                Err(e) => {
                    let not_reached = self.dirs[i..].iter().skip(usize::from(!found));
                    let not_made: Vec<PathBuf> = not_reached.map(|d| d.path.clone()).collect();
                    self.existed.extend(not_made);
                    return Err(e);
                }
            }
            if found {
                self.existed.push(self.dirs[i].path.clone());
            }
        }
        for i in left_out.into_iter().rev() {
            self.dirs.remove(i);
        }
        Ok(())
    }

    /// [`Cgroup::make_dir`], again when a parent went away meanwhile; `found` says whether
    /// the cgroup's directory was there already.
    fn make_with_retries(&self, dir: &Dir, found: &mut bool) -> Result<()> {
        // Another container's `remove` may take away an empty `peapod` parent between our
        // `mkdir` of it (or finding it there) and of the cgroup below: start again.
        let mut attempts = 0;
        loop {
            match self.make_dir(dir, found) {
                // ENOENT, or ENODEV from a file of a directory removed meanwhile.
                Err(Error::Io { source, .. } | Error::Write { source, .. })
                    if attempts < 5
                        && (source.kind() == ErrorKind::NotFound
                            || source.raw_os_error() == Some(libc::ENODEV)) =>
                {
                    attempts += 1;
                }
                other => break other,
            }
        }
    }

    /// Makes `dir` and every missing directory above it, below its hierarchy's root; `found`
    /// says whether `dir` itself was there already.
    ///
    /// On v1 the cgroup's own directory is made first, and the walk from the root only when
    /// a parent is missing (`ENOENT`): the parents (`peapod`) are there but for the first
    /// container. Not for cpuset, whose parents' `cpus` and `mems` are checked on the way
    /// (a child cannot have what its parent lacks), nor on v2, where each parent enables the
    /// controllers for the next.
    fn make_dir(&self, dir: &Dir, found: &mut bool) -> Result<()> {
        *found = false;
        let cpuset = !self.v2 && dir.has("cpuset");
        if !self.v2 && !cpuset {
            match std::fs::create_dir(&dir.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    *found = true;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("cannot create cgroup", &dir.path)(e)),
            }
        }
        let relative = dir.path.strip_prefix(&dir.mount).unwrap_or(&dir.path);
        let mut current = dir.mount.clone();
        for part in relative.components() {
            if self.v2 {
                enable_controllers(&current)?;
            }
            let parent = current.clone();
            current.push(part);
            let fresh = match std::fs::create_dir(&current) {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io("cannot create cgroup", &current)(e)),
            };
            *found = !fresh;
            if cpuset {
                inherit_cpuset(&parent, &current, fresh)?;
            }
        }
        Ok(())
    }

    /// Whether this is a cgroup of the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// Its directories, each with the mount point of its hierarchy (`/sys/fs/cgroup/memory`,
    /// `/sys/fs/cgroup/memory/peapod/web`): what a container without a cgroup namespace is
    /// shown of them.
    pub fn dirs_by_hierarchy(&self) -> Vec<(PathBuf, PathBuf)> {
        self.dirs
            .iter()
            .map(|d| (d.mount.clone(), d.path.clone()))
            .collect()
    }

    /// The systemd driver's scope unit, for the record.
    pub fn unit(&self) -> Option<&str> {
        self.scope.as_ref().map(|s| s.0.unit.as_str())
    }

    /// Its directories, one per hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Moves process `pid` (and all its threads) into the cgroup, in every hierarchy.
    /// With the systemd driver, the first process makes the scope ([`Cgroup::systemd`]).
    pub fn add(&self, pid: u32) -> Result<()> {
        if let Some(scope) = &self.scope {
            crate::systemd::start_scope(&scope.0, pid, &scope.1)?;
            return self.join_unmanaged(pid);
        }
        for dir in &self.dirs {
            write(&dir.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// On v1, after systemd made the scope: process `pid` joins the scope's directory in
    /// each controller hierarchy systemd does not manage (cpuset, freezer, net_cls, ...;
    /// systemd 252 manages cpu, cpuacct, blkio, memory, devices and pids there), made as
    /// [`Cgroup::create`] makes it, as runc's `joinCgroups` does. Those systemd already put
    /// it in are left: moving a process takes the kernel's global lock.
    fn join_unmanaged(&self, pid: u32) -> Result<()> {
        if self.v2 {
            return Ok(());
        }
        let pid = pid.to_string();
        for dir in self.dirs.iter().filter(|d| d.kind == Kind::Controllers) {
            let procs = dir.path.join("cgroup.procs");
            let joined = read_optional(&procs)?.is_some_and(|p| p.lines().any(|l| l == pid));
            if !joined {
                self.make_with_retries(dir, &mut false)?;
                write(&procs, &pid)?;
            }
        }
        Ok(())
    }

    /// Whether the runtime moves the container's init into the cgroup ([`Cgroup::add`])
    /// while the init waits, rather than the init moving itself ([`Cgroup::add_self`]): on
    /// v2 (see there) when the init was not cloned into it ([`Cgroup::clone_target`]), and
    /// for a systemd scope, which systemd makes with the process in it.
    pub fn added_by_runtime(&self) -> bool {
        self.v2 || self.scope.is_some()
    }

    /// Moves the calling thread into the cgroup, in every hierarchy: on v1 by writing `0` to
    /// `tasks`, for which the kernel skips the global lock that moving another process
    /// takes (that lock waits for an RCU grace period: about 13 ms a move on the test
    /// machine, against 0.1 ms for this). A single-threaded process moves itself whole.
    /// On v2 a thread can only move within its domain, so this is [`Cgroup::add`] of the
    /// calling process.
    ///
    /// A hybrid host's cgroup2 hierarchy has no `tasks`, and moving a thread alone there is
    /// refused for the same reason: its directory is entered by a clone into it
    /// ([`Cgroup::clone_target`]), which costs no lock; `in_unified` says that happened.
    /// Otherwise `0` is written to its `cgroup.procs` (which moves the writer's process,
    /// taking the lock).
    pub fn add_self(&self, in_unified: bool) -> Result<()> {
        if self.v2 {
            return self.add(std::process::id());
        }
        for dir in &self.dirs {
            match dir.kind {
                Kind::Controllers | Kind::Named => write(&dir.path.join("tasks"), "0")?,
                Kind::Unified if in_unified => {}
                Kind::Unified => write(&dir.path.join("cgroup.procs"), "0")?,
            }
        }
        Ok(())
    }

    /// The cgroup's directory where a new process can start (`clone3` with
    /// `CLONE_INTO_CGROUP`) instead of being moved in afterwards, which would take the global
    /// lock [`Cgroup::add_self`] avoids on v1 (a write of `cgroup.procs` takes the cgroup
    /// threadgroup lock for writing, which waits for an RCU grace period; containers started
    /// at once wait in turn): its one directory on v2, its cgroup2 directory on a hybrid host.
    /// `None` on a pure v1 host.
    /// A systemd scope has none: systemd makes that directory with the process in it.
    pub fn clone_target(&self) -> Option<&Path> {
        match (&self.scope, self.v2) {
            (Some(_), _) => None,
            (None, true) => self.dirs.first().map(|d| d.path.as_path()),
            (None, false) => self.hybrid_unified_dir(),
        }
    }

    /// A hybrid host's cgroup2 directory of the cgroup.
    fn hybrid_unified_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.kind == Kind::Unified)
            .map(|d| d.path.as_path())
    }

    /// The cgroup's directory in a cgroup2 hierarchy, where device programs are attached:
    /// its one directory on v2, the one in the cgroup2 mount of a hybrid host. `None` on a
    /// pure v1 host, or where that directory was left out (see [`Cgroup::create`]).
    pub fn unified_dir(&self) -> Option<&Path> {
        match self.v2 {
            true => self.dirs.first().map(|d| d.path.as_path()),
            false => self.hybrid_unified_dir(),
        }
    }

    /// Makes `filter`'s eBPF program the one device program of the cgroup's cgroup2
    /// directory ([`Cgroup::unified_dir`]), replacing any attached before (as `update`
    /// needs): the new one is attached first, then the old ones are detached. Rules that
    /// allow everything need no program, and remove the old ones. Removing the cgroup
    /// detaches its programs (the kernel does when the directory goes).
    ///
    /// Where the rules deny something and the program cannot be attached, or there is no
    /// cgroup2 directory and no v1 devices controller either, this is
    /// [`Error::DeviceFilter`]: a container must not run with its devices unfiltered. On a
    /// pure v1 host the devices controller enforces the rules ([`Cgroup::apply`]).
    pub fn filter_devices(&self, filter: &DeviceFilter) -> Result<()> {
        let Some(dir) = self.unified_dir() else {
            let v1 = self.file("devices", "devices.allow").is_some();
            if v1 || !filter.denies_any() {
                return Ok(());
            }
            let path = self
                .dirs
                .first()
                .map(|d| d.path.clone())
                .unwrap_or_default();
            return Err(Error::DeviceFilter {
                path,
                source: crate::BpfError {
                    what: "no cgroup2 directory",
                    source: std::io::Error::from(ErrorKind::NotFound),
                },
            });
        };
        let program = filter.program();
        let denies = program.is_some();
        match crate::bpf::replace(dir, program.as_deref()) {
            Ok(()) => {
                tracing::debug!("{}: device program attached", dir.display());
                Ok(())
            }
            // Nothing is denied: there is nothing to enforce, only old programs to remove.
            Err(e) if !denies => {
                tracing::debug!("{}: {e}", dir.display());
                Ok(())
            }
            Err(source) => Err(Error::DeviceFilter {
                path: dir.to_owned(),
                source,
            }),
        }
    }

    /// The ids of the device programs attached to the cgroup's cgroup2 directory (empty
    /// without one), as `bpftool cgroup list` shows them.
    pub fn device_programs(&self) -> Result<Vec<u32>> {
        let Some(dir) = self.unified_dir() else {
            return Ok(Vec::new());
        };
        let fail = |e: crate::BpfError| Error::Io {
            what: "cannot list the device programs of",
            path: dir.to_owned(),
            source: e.source,
        };
        let cgroup = crate::bpf::open_cgroup(dir).map_err(fail)?;
        crate::bpf::attached(std::os::fd::AsFd::as_fd(&cgroup)).map_err(fail)
    }

    /// The processes in the cgroup, in every hierarchy, sorted.
    pub fn procs(&self) -> Result<Vec<u32>> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            let path = dir.path.join("cgroup.procs");
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("cannot read", path)(e)),
            };
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// The freezer's state (`Thawed` when there is no freezer).
    pub fn freezer_state(&self) -> Result<FreezerState> {
        if self.v2 {
            let Some(dir) = self.dirs.first() else {
                return Ok(FreezerState::Thawed);
            };
            let events = read(&dir.path.join("cgroup.events"))?;
            let frozen = key_value(&events, "frozen") == Some(1);
            let asked = read(&dir.path.join("cgroup.freeze"))?.trim() == "1";
            return Ok(match (asked, frozen) {
                (_, true) => FreezerState::Frozen,
                (true, false) => FreezerState::Freezing,
                (false, false) => FreezerState::Thawed,
            });
        }
        let Some(file) = self.file("freezer", "freezer.state") else {
            return Ok(FreezerState::Thawed);
        };
        Ok(match read(&file)?.trim() {
            "FROZEN" => FreezerState::Frozen,
            "FREEZING" => FreezerState::Freezing,
            _ => FreezerState::Thawed,
        })
    }

    /// Stops every process in the cgroup and returns once all are stopped; after `timeout`
    /// it thaws them again and fails.
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        let (file, value) = self.freezer_file(true)?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            // v1: a write that finds a task it cannot stop yet leaves FREEZING; writing
            // again retries those tasks.
            write(&file, value)?;
            if self.freezer_state()? == FreezerState::Frozen {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.thaw();
                return Err(Error::FreezeTimeout {
                    path: file.parent().unwrap_or(&file).to_owned(),
                    timeout,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Lets the processes of a frozen cgroup run again.
    pub fn thaw(&self) -> Result<()> {
        let (file, value) = self.freezer_file(false)?;
        write(&file, value)
    }

    fn freezer_file(&self, freeze: bool) -> Result<(PathBuf, &'static str)> {
        let unsupported = || Error::Unsupported {
            field: "freezer",
            problem: "the freezer controller is not mounted".into(),
        };
        if self.v2 {
            let dir = self.dirs.first().ok_or_else(unsupported)?;
            return Ok((
                dir.path.join("cgroup.freeze"),
                if freeze { "1" } else { "0" },
            ));
        }
        let file = self
            .file("freezer", "freezer.state")
            .ok_or_else(unsupported)?;
        Ok((file, if freeze { "FROZEN" } else { "THAWED" }))
    }

    /// Whether a process is in the cgroup or, on v2, in one below it (`populated` in
    /// `cgroup.events`): a v2 cgroup that hands controllers down, as a pod's does, holds no
    /// process of its own, only its leaves do. A cgroup that is gone is empty.
    pub fn populated(&self) -> Result<bool> {
        if self.v2 {
            let Some(dir) = self.dirs.first() else {
                return Ok(false);
            };
            let events = read_optional(&dir.path.join("cgroup.events"))?;
            return Ok(events.is_some_and(|e| key_value(&e, "populated") == Some(1)));
        }
        Ok(!self.procs()?.is_empty())
    }

    /// Kills every process in the cgroup with SIGKILL and waits until it is empty. The
    /// processes are frozen first, so none can fork a new one between the listing and the
    /// kill (v2 with `cgroup.kill` lets the kernel do this itself, and kills the processes
    /// of the cgroups below too, which are then waited for as well).
    pub fn kill_all(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let kill_file = self
            .dirs
            .first()
            .filter(|_| self.v2)
            .map(|d| d.path.join("cgroup.kill"))
            .filter(|f| f.exists());
        // Whether every process got its SIGKILL while none could fork or exit: then the loop
        // below only waits, and never signals a pid that may have been reused meanwhile.
        let mut all_killed = false;
        let mut killed_below = false;
        if let Some(file) = kill_file {
            write(&file, "1")?;
            all_killed = true;
            killed_below = true;
        } else {
            // Half the time at most, so that waiting for the dead keeps the other half.
            let frozen = self.freeze(timeout / 2).is_ok();
            for pid in self.procs()? {
                signal_kill(pid);
            }
            if frozen {
                self.thaw()?;
                all_killed = true;
            }
        }
        let mut pause = Duration::from_micros(100);
        loop {
            let left = self.procs()?;
            if left.is_empty() && !(killed_below && self.populated()?) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Busy {
                    path: self
                        .dirs
                        .first()
                        .map(|d| d.path.clone())
                        .unwrap_or_default(),
                    pids: left,
                    timeout,
                });
            }
            // Without a freezer a process may have forked after the listing.
            if !all_killed {
                for pid in left {
                    signal_kill(pid);
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Removes the cgroup's directory in every hierarchy, retrying for a while those the
    /// kernel finds busy (a killed process that is not reaped yet still counts). A missing
    /// directory is fine. The [`DEFAULT_PARENT`] above it goes too once it is empty; a
    /// parent still holding another container's cgroup stays.
    pub fn remove(&self) -> Result<()> {
        remove_dirs(&self.dirs)
    }

    /// Removes the cgroup as [`Cgroup::remove`] does if the kernel finds it empty, without
    /// waiting: `false`, with the rest left as it is, at the first directory it finds busy
    /// (a process in it, or a cgroup below it). What a `delete` of a container already seen
    /// dead tries first, instead of listing every hierarchy's `cgroup.procs` (on v1 each
    /// listing builds a pid list the kernel frees later from a work queue).
    ///
    /// On v1 a process is in the container's cgroup of every hierarchy at once, unless
    /// something moved it out of some: then the first directories may be gone already when
    /// a later one is busy, and the caller's [`Cgroup::kill_all`] then finds the process in
    /// those that are left.
    pub fn remove_if_empty(&self) -> Result<bool> {
        for dir in &self.dirs {
            match std::fs::remove_dir(&dir.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // ENOTEMPTY too, though cgroupfs says EBUSY for a cgroup below.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                    return Ok(false)
                }
                Err(e) => return Err(io("cannot remove cgroup", &dir.path)(e)),
            }
            remove_empty_parent(dir);
        }
        Ok(true)
    }

    /// The current usage figures.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if self.v2 {
            let Some(dir) = self.dirs.first() else {
                return Ok(s);
            };
            let p = &dir.path;
            s.memory_usage = read_u64_or_zero(&p.join("memory.current"))?;
            s.memory_max_usage = read_u64_or_zero(&p.join("memory.peak"))?;
            s.memory_limit = read_u64_or_zero(&p.join("memory.max"))?;
            if let Some(events) = read_optional(&p.join("memory.events"))? {
                s.oom_kills = key_value(&events, "oom_kill").unwrap_or(0);
                s.memory_failcnt = key_value(&events, "max").unwrap_or(0);
            }
            if let Some(cpu) = read_optional(&p.join("cpu.stat"))? {
                let us = |k| key_value(&cpu, k).unwrap_or(0).saturating_mul(1000);
                s.cpu_usage_ns = us("usage_usec");
                s.cpu_user_ns = us("user_usec");
                s.cpu_system_ns = us("system_usec");
                s.cpu_throttled_ns = us("throttled_usec");
                s.cpu_periods = key_value(&cpu, "nr_periods").unwrap_or(0);
                s.cpu_throttled_periods = key_value(&cpu, "nr_throttled").unwrap_or(0);
            }
            s.pids_current = read_u64_or_zero(&p.join("pids.current"))?;
            s.pids_limit = read_u64_or_zero(&p.join("pids.max"))?;
            if s.pids_limit == u64::MAX {
                s.pids_limit = 0;
            }
            return Ok(s);
        }
        let file = |controller, name| self.file(controller, name);
        if let Some(f) = file("memory", "memory.usage_in_bytes") {
            s.memory_usage = read_u64_or_zero(&f)?;
        }
        if let Some(f) = file("memory", "memory.max_usage_in_bytes") {
            s.memory_max_usage = read_u64_or_zero(&f)?;
        }
        if let Some(f) = file("memory", "memory.limit_in_bytes") {
            s.memory_limit = read_u64_or_zero(&f)?;
        }
        if let Some(f) = file("memory", "memory.failcnt") {
            s.memory_failcnt = read_u64_or_zero(&f)?;
        }
        if let Some(f) = file("memory", "memory.oom_control") {
            let text = read_optional(&f)?.unwrap_or_default();
            s.oom_kills = key_value(&text, "oom_kill").unwrap_or(0);
        }
        if let Some(f) = file("cpuacct", "cpuacct.usage") {
            s.cpu_usage_ns = read_u64_or_zero(&f)?;
        }
        if let Some(f) = file("cpuacct", "cpuacct.stat") {
            // In USER_HZ ticks, which Linux fixes at 100 a second.
            let text = read_optional(&f)?.unwrap_or_default();
            let tick_ns = 10_000_000u64;
            s.cpu_user_ns = key_value(&text, "user")
                .unwrap_or(0)
                .saturating_mul(tick_ns);
            s.cpu_system_ns = key_value(&text, "system")
                .unwrap_or(0)
                .saturating_mul(tick_ns);
        }
        if let Some(f) = file("cpu", "cpu.stat") {
            let text = read_optional(&f)?.unwrap_or_default();
            s.cpu_periods = key_value(&text, "nr_periods").unwrap_or(0);
            s.cpu_throttled_periods = key_value(&text, "nr_throttled").unwrap_or(0);
            s.cpu_throttled_ns = key_value(&text, "throttled_time").unwrap_or(0);
        }
        if let Some(f) = file("pids", "pids.current") {
            s.pids_current = read_u64_or_zero(&f)?;
        }
        if let Some(f) = file("pids", "pids.max") {
            s.pids_limit = read_u64_or_zero(&f)?;
            if s.pids_limit == u64::MAX {
                s.pids_limit = 0;
            }
        }
        Ok(s)
    }

    /// The file `name` of `controller` (v1: in that controller's hierarchy; v2: in the one
    /// directory), or `None` when no hierarchy carries the controller.
    pub fn file(&self, controller: &str, name: &str) -> Option<PathBuf> {
        if self.v2 {
            return self.dirs.first().map(|d| d.path.join(name));
        }
        self.dirs
            .iter()
            .find(|d| d.has(controller))
            .map(|d| d.path.join(name))
    }

    /// A cgroup over given directories, for tests of the file writing against a fake tree.
    #[cfg(test)]
    pub(crate) fn fake(v2: bool, dirs: Vec<Dir>) -> Cgroup {
        Cgroup {
            v2,
            dirs,
            existed: Vec::new(),
            scope: None,
            slice: None,
        }
    }
}

impl Dir {
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The hierarchies a container's cgroup has a directory in, with what each is to it.
fn every_hierarchy(layout: &Layout) -> Vec<(&crate::Hierarchy, Kind)> {
    let limited = layout
        .hierarchies()
        .into_iter()
        .map(|h| (h, Kind::of(h, false)));
    let tracking = layout
        .tracking()
        .into_iter()
        .map(|h| (h, Kind::of(h, true)));
    limited.chain(tracking).collect()
}

/// Removes each of `dirs`, retrying for a while those the kernel finds busy, and the empty
/// [`DEFAULT_PARENT`] above each (see [`Cgroup::remove`]).
fn remove_dirs<'a>(dirs: impl IntoIterator<Item = &'a Dir>) -> Result<()> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    let mut result = Ok(());
    for dir in dirs {
        let mut pause = Duration::from_micros(100);
        loop {
            match std::fs::remove_dir(&dir.path) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(e) => {
                    result = Err(io("cannot remove cgroup", &dir.path)(e));
                    break;
                }
            }
        }
        remove_empty_parent(dir);
    }
    result
}

/// Removes the [`DEFAULT_PARENT`] above `dir` if it is empty now.
fn remove_empty_parent(dir: &Dir) {
    if let Some(parent) = dir.path.parent() {
        if parent.file_name() == Some(DEFAULT_PARENT.as_ref()) && parent != dir.mount {
            // Busy or not empty: another container's cgroup is in it.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn signal_kill(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // ESRCH: it is gone already.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

/// v1: a new cpuset cgroup has empty `cpuset.cpus` and `cpuset.mems`, and a process cannot
/// join it until both are set; they are copied from the parent. One found there (not `fresh`)
/// keeps what it has, unless that is empty.
fn inherit_cpuset(parent: &Path, dir: &Path, fresh: bool) -> Result<()> {
    for name in ["cpuset.cpus", "cpuset.mems"] {
        if !fresh && !read(&dir.join(name))?.trim().is_empty() {
            continue;
        }
        let value = read(&parent.join(name))?;
        write(&dir.join(name), value.trim())?;
    }
    Ok(())
}

/// v2: enables in `dir`'s `cgroup.subtree_control` those of [`V2_CONTROLLERS`] that `dir`
/// has and does not enable yet.
fn enable_controllers(dir: &Path) -> Result<()> {
    let available = read(&dir.join("cgroup.controllers"))?;
    let enabled = read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    match write(&dir.join("cgroup.subtree_control"), &missing.join(" ")) {
        // EBUSY: the cgroup holds processes (v2's "no internal processes" rule), as a login
        // session's own cgroup does. The cgroups below it go without those controllers:
        // fine without limits, and a limit then fails naming its missing file.
        Err(Error::Write { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            tracing::debug!(
                "{}: holds processes, cannot enable {}",
                dir.display(),
                missing.join(" ")
            );
            Ok(())
        }
        // EACCES: above a subtree delegated to an ordinary user (systemd's user@UID.service,
        // or a directory chowned to it), whose controllers are the ones delegated.
        Err(Error::Write { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied
                && !nix::unistd::geteuid().is_root() =>
        {
            tracing::debug!(
                "{}: not ours, {} not enabled there (as delegated)",
                dir.display(),
                missing.join(" ")
            );
            Ok(())
        }
        other => other,
    }
}

/// Writes `value` to an existing cgroup file in one `write`, as the kernel wants it.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let fail = |source| Error::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(fail)?;
    file.write_all(value.as_bytes()).map_err(fail)
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io("cannot read", path))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read", path)(e)),
    }
}

/// A number, `max` (as `u64::MAX`), or 0 when the file does not exist on this kernel.
fn read_u64_or_zero(path: &Path) -> Result<u64> {
    let Some(text) = read_optional(path)? else {
        return Ok(0);
    };
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse().map_err(|_| Error::Parse {
        path: path.to_owned(),
        text: text.to_owned(),
    })
}

/// The value of `key` in a flat-keyed file (`key value` lines, as `memory.events`).
pub(crate) fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hierarchy;

    fn v1_layout(root: &Path) -> Layout {
        let h = |name: &str, own: &str| Hierarchy {
            mount: root.join(name),
            controllers: vec![name.to_owned()],
            own: own.into(),
            name: None,
        };
        Layout::V1 {
            hierarchies: vec![h("memory", "/harness/x"), h("pids", "/")],
            named: Vec::new(),
            unified: None,
        }
    }

    /// [`v1_layout`] with `name=systemd` and a cgroup2 mount that has `hugetlb`, as the
    /// test machine has.
    fn hybrid_layout(root: &Path) -> Layout {
        let Layout::V1 { hierarchies, .. } = v1_layout(root) else {
            unreachable!()
        };
        let tracking = |dir: &str, name: Option<&str>, controllers: &[&str]| Hierarchy {
            mount: root.join(dir),
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
            own: "/".into(),
            name: name.map(str::to_owned),
        };
        Layout::V1 {
            hierarchies,
            named: vec![tracking("systemd", Some("systemd"), &[])],
            unified: Some(tracking("unified", None, &["hugetlb", "pids"])),
        }
    }

    #[test]
    fn on_a_hybrid_host_the_cgroup_is_in_the_named_and_unified_hierarchies_too() {
        let layout = hybrid_layout(Path::new("/cg"));
        let cgroup = Cgroup::locate(&layout, &Cgroup::default_path("web")).unwrap();
        assert_eq!(
            cgroup.paths(),
            [
                Path::new("/cg/memory/harness/x/peapod/web"),
                Path::new("/cg/pids/peapod/web"),
                Path::new("/cg/systemd/peapod/web"),
                Path::new("/cg/unified/peapod/web"),
            ]
        );
        assert_eq!(
            cgroup.clone_target(),
            Some(Path::new("/cg/unified/peapod/web"))
        );
        // Found again from its recorded paths, each in its own hierarchy.
        assert_eq!(Cgroup::open(&layout, &cgroup.paths()), cgroup);
        // Limits only ever go to the controller hierarchies, even for a controller the
        // unified mount lists.
        assert_eq!(
            cgroup.file("pids", "pids.max").unwrap(),
            Path::new("/cg/pids/peapod/web/pids.max")
        );
        assert_eq!(cgroup.file("hugetlb", "hugetlb.2MB.limit_in_bytes"), None);
        assert_eq!(cgroup.file("systemd", "tasks"), None);
    }

    #[test]
    fn undo_removes_only_the_directories_create_made() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["memory", "pids", "systemd", "unified"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        // Made by another tool in the controller hierarchies only.
        for dir in ["memory/harness/x/pods/a", "pids/pods/a"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let layout = hybrid_layout(root.path());
        let cgroup = Cgroup::create(&layout, Path::new("pods/a")).unwrap();
        assert!(cgroup.paths().iter().all(|p| p.is_dir()), "{cgroup:?}");
        cgroup.undo();
        let left: Vec<bool> = cgroup.paths().iter().map(|p| p.is_dir()).collect();
        assert_eq!(left, [true, true, false, false], "{:?}", cgroup.paths());
    }

    #[test]
    fn a_failed_create_leaves_what_it_found_in_the_hierarchies_it_did_not_reach() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["memory", "systemd/pods/a", "unified"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        // The pids hierarchy cannot take it (a file where its mount should be), so the
        // creation fails there, before it reaches `systemd`, where the cgroup exists.
        std::fs::write(root.path().join("pids"), "").unwrap();
        let layout = hybrid_layout(root.path());
        assert!(Cgroup::create(&layout, Path::new("pods/a")).is_err());
        assert!(!root.path().join("memory/harness/x/pods/a").exists());
        assert!(root.path().join("systemd/pods/a").is_dir());
        assert!(!root.path().join("unified/pods").exists());
    }

    #[test]
    fn a_tracking_hierarchy_that_cannot_take_the_cgroup_is_left_out() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["memory", "pids", "unified"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        // No directory can be made below a file (root ignores permission bits).
        std::fs::write(root.path().join("systemd"), "").unwrap();
        let layout = hybrid_layout(root.path());
        let cgroup = Cgroup::create(&layout, Path::new("peapod/a")).unwrap();
        assert_eq!(
            cgroup.paths(),
            [
                root.path().join("memory/harness/x/peapod/a"),
                root.path().join("pids/peapod/a"),
                root.path().join("unified/peapod/a"),
            ]
        );
        cgroup.remove().unwrap();
        // A controller hierarchy that cannot take it fails the creation, leaving nothing.
        std::fs::remove_file(root.path().join("systemd")).unwrap();
        std::fs::create_dir(root.path().join("systemd")).unwrap();
        std::fs::remove_dir(root.path().join("pids")).unwrap();
        std::fs::write(root.path().join("pids"), "").unwrap();
        assert!(Cgroup::create(&layout, Path::new("peapod/a")).is_err());
        for dir in [
            "memory/harness/x/peapod",
            "systemd/peapod",
            "unified/peapod",
        ] {
            assert!(!root.path().join(dir).exists(), "{dir} left");
        }
    }

    #[test]
    fn a_pure_v1_cgroup_has_no_clone_target_a_v2_one_its_directory() {
        let v1 = Cgroup::locate(&v1_layout(Path::new("/cg")), Path::new("a")).unwrap();
        assert_eq!(v1.clone_target(), None);
        let v2 = Layout::V2(Hierarchy {
            mount: "/cg".into(),
            controllers: vec!["memory".into()],
            own: "/".into(),
            name: None,
        });
        let v2 = Cgroup::locate(&v2, Path::new("a")).unwrap();
        assert_eq!(v2.paths(), [Path::new("/cg/a")]);
        assert_eq!(v2.clone_target(), Some(Path::new("/cg/a")));
    }

    #[test]
    fn relative_paths_are_below_the_own_cgroup_absolute_below_the_root() {
        let layout = v1_layout(Path::new("/cg"));
        let relative = Cgroup::locate(&layout, &Cgroup::default_path("web")).unwrap();
        assert_eq!(
            relative.paths(),
            [
                Path::new("/cg/memory/harness/x/peapod/web"),
                Path::new("/cg/pids/peapod/web")
            ]
        );
        let absolute = Cgroup::locate(&layout, Path::new("/pods/a")).unwrap();
        assert_eq!(
            absolute.paths(),
            [Path::new("/cg/memory/pods/a"), Path::new("/cg/pids/pods/a")]
        );
        assert_eq!(Cgroup::open(&layout, &absolute.paths()), absolute);
    }

    #[test]
    fn on_v2_relative_paths_are_below_the_parent_of_the_own_cgroup() {
        let in_a_scope = Layout::V2(Hierarchy {
            mount: "/cg".into(),
            controllers: vec!["memory".into()],
            own: "/user.slice/session-1.scope".into(),
            name: None,
        });
        let relative = Cgroup::locate(&in_a_scope, &Cgroup::default_path("web")).unwrap();
        assert_eq!(relative.paths(), [Path::new("/cg/user.slice/peapod/web")]);
        let absolute = Cgroup::locate(&in_a_scope, Path::new("/pods/a")).unwrap();
        assert_eq!(absolute.paths(), [Path::new("/cg/pods/a")]);
    }

    #[test]
    fn root_and_dotdot_paths_are_refused() {
        let layout = v1_layout(Path::new("/cg"));
        for bad in ["/", "", "a/../../b", "."] {
            let err = Cgroup::locate(&layout, Path::new(bad)).unwrap_err();
            assert!(err.to_string().starts_with("linux.cgroupsPath"), "{err}");
        }
    }

    #[test]
    fn a_child_is_made_below_each_directory_of_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let dirs = ["memory", "pids"]
            .iter()
            .inspect(|c| std::fs::create_dir(root.path().join(c)).unwrap())
            .map(|c| Dir {
                mount: root.path().join(c),
                controllers: vec![(*c).to_owned()],
                path: root.path().join(c).join("elsewhere/peapod/pod-web"),
                kind: Kind::Controllers,
            })
            .collect();
        let pod = Cgroup::fake(false, dirs);
        let child = pod.create_child(Path::new("web-1")).unwrap();
        for (parent, dir) in pod.paths().iter().zip(child.paths()) {
            assert_eq!(dir, parent.join("web-1"));
            assert!(dir.is_dir(), "{dir:?}");
        }
        for bad in ["/abs", "", "../x"] {
            let err = pod.create_child(Path::new(bad)).unwrap_err();
            assert!(err.to_string().starts_with("linux.cgroupsPath"), "{err}");
        }
    }

    /// A v2 cgroup whose directory is `path`, or a v1 one of `controllers` there.
    fn at(v2: bool, path: &Path, controllers: &[&str]) -> Cgroup {
        let dir = Dir {
            mount: path.parent().unwrap().to_owned(),
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
            path: path.to_owned(),
            kind: Kind::Controllers,
        };
        Cgroup::fake(v2, vec![dir])
    }

    fn filter(json: &str) -> DeviceFilter {
        DeviceFilter::new(&serde_json::from_str::<Vec<_>>(json).unwrap()).unwrap()
    }

    #[test]
    fn rules_that_deny_are_refused_where_no_program_can_be_attached() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        // A directory that is no cgroup: the kernel refuses the program (an unprivileged
        // test already refuses to load it).
        let denying = filter(r#"[{"allow": false}]"#);
        let err = at(true, &dir, &[]).filter_devices(&denying).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "linux.resources.devices: the kernel cannot filter devices for {} (bpf(",
                dir.display()
            )),
            "{text}"
        );
        assert!(
            text.ends_with("refusing to run the container with every device open to it"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
        // Rules that deny nothing need no program.
        let allowing = filter(r#"[{"allow": true, "type": "a"}]"#);
        at(true, &dir, &[]).filter_devices(&allowing).unwrap();
        // A v1 cgroup without a cgroup2 directory: the devices controller filters, or
        // nothing does and the container is refused.
        at(false, &dir, &["devices"])
            .filter_devices(&denying)
            .unwrap();
        let err = at(false, &dir, &["memory"])
            .filter_devices(&denying)
            .unwrap_err();
        assert!(err.to_string().contains("(no cgroup2 directory: "), "{err}");
    }

    #[test]
    fn flat_keyed_files() {
        let text = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(key_value(text, "oom_kill"), Some(2));
        assert_eq!(key_value(text, "oom"), Some(1));
        assert_eq!(key_value(text, "nope"), None);
    }
}
