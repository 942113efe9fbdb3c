//! `cargo xtask rootfs [DIR]`: the default rootfs, made from what the host has, with no
//! network: a static busybox when there is one, else the host's own `sh` and a few tools with
//! the shared libraries they need (read from `ldd`).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{target_dir, Result};

/// The marker a finished rootfs holds; its absence means "build it again".
const STAMP: &str = ".peapod-rootfs";

/// Tools copied from the host when there is no static busybox.
const HOST_TOOLS: &[&str] = &[
    "sh", "ls", "cat", "ps", "hostname", "mount", "id", "sleep", "true", "false", "echo", "env",
    "readlink", "wc", "tr", "mkdir", "touch", "kill", "seq", "grep", "head", "test", "rm",
];

pub(crate) fn run(args: &[String]) -> Result {
    let dir = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => default_dir(),
    };
    let how = ensure(&dir)?;
    println!("rootfs at {} ({how})", dir.display());
    Ok(())
}

/// Where `cargo xtask run` and the tests find the rootfs.
pub(crate) fn default_dir() -> PathBuf {
    target_dir().join("rootfs")
}

/// Makes the rootfs at `dir` unless a finished one is there; says how it was made.
pub(crate) fn ensure(dir: &Path) -> Result<String> {
    if let Ok(how) = fs::read_to_string(dir.join(STAMP)) {
        return Ok(how.trim().to_owned());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    // Built beside the final place and renamed into it, so an interrupted build is never
    // mistaken for a finished one.
    let staging = parent.join(format!(".rootfs-staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let how = build(&staging).inspect_err(|_| {
        let _ = fs::remove_dir_all(&staging);
    })?;
    fs::write(staging.join(STAMP), format!("{how}\n")).map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&staging, dir).map_err(|e| format!("cannot move rootfs into place: {e}"))?;
    Ok(how)
}

fn build(dir: &Path) -> Result<String> {
    for sub in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "var/tmp",
    ] {
        mkdir(&dir.join(sub))?;
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .map_err(|e| e.to_string())?;
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    )
    .map_err(|e| e.to_string())?;
    // Empty, as a distribution's root has them: the files a container's or a pod's own
    // `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` are bind-mounted onto, which an
    // ordinary user could not create in a root of root's (rootless `run --pod --rootfs`).
    for file in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        fs::write(dir.join(file), "").map_err(|e| e.to_string())?;
    }
    let tmp = dir.join("tmp");
    set_mode(&tmp, 0o1777)?;
    match find_static_busybox() {
        Some(busybox) => {
            install_busybox(dir, &busybox)?;
            Ok(format!("static busybox from {}", busybox.display()))
        }
        None => {
            install_host_tools(dir)?;
            Ok("host sh and tools with their shared libraries".to_owned())
        }
    }
}

fn mkdir(path: &Path) -> Result {
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

fn find_static_busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| fs::read(p).is_ok_and(|elf| is_static_elf(&elf)))
}

/// Whether an ELF64 file has no program interpreter (PT_INTERP), i.e. runs with no loader.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return false;
    }
    let u16_at = |off: usize| u16::from_le_bytes([elf[off], elf[off + 1]]) as usize;
    let Some(phoff) = elf
        .get(32..40)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
    else {
        return false;
    };
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let off = phoff as usize + i * phentsize;
        elf.get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .is_some_and(|typ| typ != PT_INTERP)
    })
}

fn install_busybox(dir: &Path, busybox: &Path) -> Result {
    let dest = dir.join("bin/busybox");
    fs::copy(busybox, &dest).map_err(|e| format!("cannot copy busybox: {e}"))?;
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("cannot list busybox applets: {e}"))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", dir.join("bin").join(applet)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// The shared libraries (and loader) `binary` needs, from `ldd`.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("cannot run ldd: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies `path` to the same place under `dir`, following links to the real file.
fn copy_into(dir: &Path, path: &Path) -> Result {
    let dest = dir.join(path.strip_prefix("/").unwrap_or(path));
    if let Some(parent) = dest.parent() {
        mkdir(parent)?;
    }
    fs::copy(path, &dest).map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
    Ok(())
}

fn install_host_tools(dir: &Path) -> Result {
    let mut files = BTreeSet::new();
    for tool in HOST_TOOLS {
        let Some(path) = which(tool) else {
            continue;
        };
        files.extend(libraries(&path)?);
        let dest = dir.join("bin").join(tool);
        fs::copy(&path, &dest).map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
    }
    if !dir.join("bin/sh").exists() {
        return Err("the host has neither a static busybox nor /bin/sh".into());
    }
    for lib in files {
        copy_into(dir, &lib)?;
    }
    Ok(())
}
