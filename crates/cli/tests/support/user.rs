//! An ordinary user a rootless test creates (`useradd`), with subordinate id ranges it adds to
//! `/etc/subuid` and `/etc/subgid` when asked; on drop its processes that are left are killed
//! (by pid), and the user, its home and exactly the lines it added go again (also when the
//! test fails).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{finish, spawn_copied, Outcome};

/// How many ids a test's range has (as shadow's default `SUB_UID_COUNT`).
pub const RANGE: u32 = 65536;

/// The lines of `/proc/self/uid_map` a script printed as `uidmap INSIDE OUTSIDE COUNT`.
pub const UID_MAP: &str = "sed 's/^ *//; s/  */ /g; s/^/uidmap /' /proc/self/uid_map";

pub fn uid_map_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("uidmap "))
        .collect()
}

/// The files of subordinate ids, with the line of this user in each.
const FILES: [&str; 2] = ["/etc/subuid", "/etc/subgid"];

pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// The first subordinate uid and gid, when the user has a range.
    pub range_start: Option<u32>,
    /// A copy of peapod the user can run.
    binary: PathBuf,
}

impl TestUser {
    /// A new user with a home in `scratch` and, with `ranges`, a range of [`RANGE`] ids in
    /// `/etc/subuid` and `/etc/subgid` past every range there; `None` after saying why the
    /// test is skipped.
    pub fn new(scratch: &Path, ranges: bool) -> Option<TestUser> {
        let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
        if max.trim() == "0" {
            eprintln!("skipped: user namespaces are disabled");
            return None;
        }
        let tools = ["useradd", "userdel", "newuidmap", "newgidmap"];
        if let Some(missing) = tools.iter().find(|t| which(t).is_none()) {
            eprintln!("skipped: {missing} is not installed (Debian packages passwd and uidmap)");
            return None;
        }
        let name = format!(
            "pp{}-{}",
            std::process::id(),
            scratch
                .file_name()
                .map(|n| n
                    .to_string_lossy()
                    .chars()
                    .rev()
                    .take(6)
                    .collect::<String>())
                .unwrap_or_default()
        )
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "x");
        let home = scratch.join("home");
        // A system user: useradd gives no subordinate ids to those, so the test decides.
        let status = Command::new("useradd")
            .args([
                "--system",
                "--create-home",
                "--user-group",
                "--shell",
                "/bin/sh",
            ])
            .arg("--home-dir")
            .arg(&home)
            .arg(&name)
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name} failed");
        let user = nix::unistd::User::from_name(&name)
            .expect("getpwnam")
            .expect("the new user");
        let mut made = TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home,
            range_start: None,
            binary: PathBuf::new(),
        };
        if ranges {
            made.range_start = Some(edit_subordinate(|text| add_range(text, &made.name)));
        }
        made.binary = made.home.join("peapod");
        std::fs::copy(env!("CARGO_BIN_EXE_peapod"), &made.binary).expect("copy peapod");
        std::fs::set_permissions(&made.binary, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Some(made)
    }

    /// A directory of the user's in its home.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.home.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        nix::unistd::chown(&dir, Some(self.uid.into()), Some(self.gid.into())).expect("chown");
        dir
    }

    /// The state root [`TestUser::peapod`] gives peapod.
    pub fn state_root(&self) -> PathBuf {
        self.home.join("state")
    }

    /// `/bin/sh -c SCRIPT` as the user would type it in a login shell, in its home: peapod
    /// on `$PATH`, `$XDG_RUNTIME_DIR` a directory of the user's (so peapod's defaults, its
    /// state root `$XDG_RUNTIME_DIR/peapod` and its store `~/.local/share/peapod`, are used).
    pub fn sh(&self, script: &str) -> Outcome {
        let runtime_dir = self.dir("run");
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.home.display());
        let mut child = Command::new("/bin/sh");
        child
            .args(["-c", script])
            .env("HOME", &self.home)
            .env("PATH", path)
            .env("XDG_RUNTIME_DIR", runtime_dir)
            .env_remove("XDG_DATA_HOME")
            .env_remove("PEAPOD_STORAGE")
            .current_dir(&self.home)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        finish(spawn_copied(child))
    }

    /// The pids of the user's processes.
    pub fn processes(&self) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let uid = e.metadata().ok()?.uid();
                (uid == self.uid).then_some(pid)
            })
            .collect()
    }

    /// Fails when a process of the user is left (zombies waiting for their reaper aside).
    pub fn assert_no_process(&self) {
        let deadline = Instant::now() + super::TIMEOUT;
        loop {
            let live: Vec<String> = self
                .processes()
                .into_iter()
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let state = stat.rsplit_once(") ")?.1.chars().next()?;
                    (state != 'Z').then(|| {
                        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                            .unwrap_or_default();
                        format!("{pid}: {}", cmd.replace('\0', " "))
                    })
                })
                .collect();
            if live.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "processes left: {live:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `peapod --root HOME/state --storage HOME/storage ARGS` as the user.
    pub fn peapod(&self, args: &[&str]) -> Outcome {
        let mut child = self.command(args);
        child.uid(self.uid).gid(self.gid);
        finish(spawn_copied(child))
    }

    /// [`TestUser::peapod`], started in the cgroup v2 directory `cgroup` (moved there while
    /// still root, then becoming the user), as a shell of the user's session would be.
    pub fn peapod_in_cgroup(&self, cgroup: &Path, args: &[&str]) -> Outcome {
        let mut child = self.command(args);
        let procs = cgroup
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes();
        let procs = std::ffi::CString::new(procs).expect("a path without NUL");
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: the closure only makes system calls (open, write, close, setgroups, setgid,
        // setuid) on memory prepared before the fork.
        unsafe {
            child.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        finish(spawn_copied(child))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut child = Command::new(&self.binary);
        child
            .arg("--root")
            .arg(self.dir("state"))
            .arg("--storage")
            .arg(self.dir("storage"))
            .args(args)
            .env("HOME", &self.home)
            .env_remove("XDG_RUNTIME_DIR")
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        child
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if self.range_start.is_some() {
            let name = self.name.clone();
            edit_subordinate(move |text| (remove_lines(text, &name), 0));
        }
        let _ = Command::new("userdel")
            .arg("--remove")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Applies `change` to both subordinate-id files under shadow's lock (`FILE.lock`, a hard link
/// to a file naming this process, as `useradd` takes it), writing each through a temporary
/// file renamed over it. Returns what `change` returned for the first.
fn edit_subordinate(change: impl Fn(&str) -> (String, u32)) -> u32 {
    let mut first = None;
    for file in FILES {
        let _lock = ShadowLock::take(file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let (new, value) = change(&text);
        let temp = format!("{file}.peapod-test-{}", std::process::id());
        std::fs::write(&temp, new).expect("write the subordinate ids");
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::rename(&temp, file).expect("rename the subordinate ids");
        first.get_or_insert(value);
    }
    first.unwrap_or(0)
}

/// Whether `out` failed because the kernel refuses an overlay mount to an unprivileged user,
/// after saying that the test is skipped.
pub fn overlay_refused(out: &Outcome) -> bool {
    let refused = out
        .stderr
        .contains("the kernel refuses unprivileged overlay");
    if refused {
        eprintln!("skipped: {}", out.stderr.trim());
    }
    refused
}

/// The first id past every range of `text` (`/etc/subuid`'s `NAME:START:COUNT` lines), and
/// at least 1,000,000.
pub fn end_of_ranges(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':').skip(1);
            let start: u64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok()?;
            Some(start + count)
        })
        .max()
        .unwrap_or(0)
        .max(1_000_000)
}

/// `text` with a range for `name` past every range in it (and at least 1,000,000).
fn add_range(text: &str, name: &str) -> (String, u32) {
    let start = u32::try_from(end_of_ranges(text)).expect("room for a range");
    let mut new = text.to_owned();
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!("{name}:{start}:{RANGE}\n"));
    (new, start)
}

/// `text` without the lines of `name`.
fn remove_lines(text: &str, name: &str) -> String {
    text.split_inclusive('\n')
        .filter(|line| line.split(':').next() != Some(name))
        .collect()
}

/// shadow's lock of a file: `FILE.lock` hard-linked to `FILE.PID` holding this process's pid.
struct ShadowLock {
    lock: String,
}

impl ShadowLock {
    fn take(file: &str) -> ShadowLock {
        let own = format!("{file}.{}", std::process::id());
        let lock = format!("{file}.lock");
        std::fs::write(&own, std::process::id().to_string()).expect("write the lock file");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match std::fs::hard_link(&own, &lock) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    assert!(Instant::now() < deadline, "{lock} stays taken");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot take {lock}: {e}"),
            }
        }
        let _ = std::fs::remove_file(&own);
        ShadowLock { lock }
    }
}

impl Drop for ShadowLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}
