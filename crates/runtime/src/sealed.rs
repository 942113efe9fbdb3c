//! Keeps containers from reaching the peapod binary (CVE-2019-5736).
//!
//! A container process is a clone of peapod until its `execve`, and so is a process that
//! `peapod exec` puts into a container: their `/proc/PID/exe` is peapod's binary. An
//! entrypoint of `#!/proc/self/exe` (or a link to it) would make the container run that
//! binary, and a container process holding it open could later write to the host's copy.
//!
//! So the entrypoint is not exec'd directly: the container process execs a sealed in-memory
//! copy of the 17 KB static `peapod-init` in its `--exec` mode, which execs the entrypoint.
//! Whatever the entrypoint names through `/proc/self/exe` is then that sealed copy, which
//! nothing can write to. Until that exec the process is not dumpable, so no process in the
//! container can open its `/proc/PID/exe` either. runc and crun copy their whole binary
//! instead (here 6 MB, which cost 18 ms a container); the same is done here only when no
//! static peapod-init is found. Nothing is needed when peapod's binary cannot be written
//! anyway: when it is such a sealed copy, or lies on a read-only mount.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use anyhow::{anyhow, Context as _};

/// What the commands that start processes in containers exec their entrypoints through:
/// `Some(sealed copy of peapod-init)`, or `None` when peapod itself cannot be written.
/// When neither is possible it re-executes peapod from a sealed copy of itself, and so
/// returns `None` in the new image.
pub(crate) fn entrypoint_guard() -> anyhow::Result<Option<OwnedFd>> {
    let exe = File::open("/proc/self/exe").context("cannot open /proc/self/exe")?;
    if is_sealed(&exe) || on_read_only_mount(&exe) {
        return Ok(None);
    }
    match crate::init::locate(None) {
        Ok(init) => {
            let mut file =
                File::open(&init).with_context(|| format!("cannot open {}", init.display()))?;
            sealed_copy(&mut file, c"peapod-init")
                .map(Some)
                .context("cannot make a sealed copy of peapod-init")
        }
        Err(e) => {
            tracing::debug!("{e:#}: running from a sealed copy of peapod itself instead");
            reexec_from_sealed_copy(exe)
        }
    }
}

/// A memfd holding the contents of `file`, sealed against any change.
fn sealed_copy(file: &mut File, name: &std::ffi::CStr) -> anyhow::Result<OwnedFd> {
    let mut copy = File::from(memfd(name).context("memfd_create")?);
    std::io::copy(file, &mut copy).context("cannot copy into memory")?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS takes an integer argument.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error()).context("cannot seal the copy");
    }
    Ok(copy.into())
}

/// Re-executes this program, with the same arguments and environment, from a sealed copy
/// of itself. Returns only on failure.
fn reexec_from_sealed_copy(mut exe: File) -> anyhow::Result<Option<OwnedFd>> {
    let copy = sealed_copy(&mut exe, c"peapod").context("cannot make a sealed copy of peapod")?;
    let args = cstrings(std::env::args_os().map(OsStringExt::into_vec))?;
    let env = cstrings(std::env::vars_os().map(|(k, v)| {
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend(v.into_vec());
        kv
    }))?;
    let errno = nix::unistd::execveat(
        Some(copy.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .err();
    Err(anyhow!(
        "cannot re-execute peapod from its sealed copy: {}",
        errno.map_or("unknown error", |e| e.desc())
    ))
}

/// `MFD_EXEC` (Linux 6.3): asks for an executable memfd where `vm.memfd_noexec` would
/// otherwise refuse one.
const MFD_EXEC: libc::c_uint = 0x10;

fn memfd(name: &std::ffi::CStr) -> std::io::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create reads a NUL-terminated name and returns a new descriptor or -1.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Before Linux 6.3, where every memfd is executable.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `file` is a memfd sealed against writes (regular files have no seals).
fn is_sealed(file: &File) -> bool {
    // SAFETY: F_GET_SEALS takes no argument and returns the seals or -1.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

fn on_read_only_mount(file: &File) -> bool {
    nix::sys::statvfs::fstatvfs(file)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

fn cstrings(items: impl Iterator<Item = Vec<u8>>) -> anyhow::Result<Vec<CString>> {
    items
        .map(|item| CString::new(item).map_err(|_| anyhow!("an argument holds a NUL byte")))
        .collect()
}
