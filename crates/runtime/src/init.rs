//! `peapod run --init`: peapod-init as the container's PID 1, bind-mounted read-only from the
//! host onto the container's `/dev` tmpfs, so nothing is copied into (or left in) the rootfs
//! and a read-only root works too.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use oci_spec::runtime::{Mount, MountBuilder};

/// Where peapod-init appears inside the container (`/dev` is the container's own tmpfs).
pub const INIT_IN_CONTAINER: &str = "/dev/init";

/// The environment variable that names the static peapod-init, where it is not beside peapod.
pub const INIT_ENV: &str = "PEAPOD_INIT";

/// The init binary to use: `explicit`, else `$PEAPOD_INIT`, else `peapod-init` beside the
/// running peapod; it must be statically linked.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os(INIT_ENV).map(PathBuf::from);
    let path = match explicit.or(from_env.as_deref()) {
        Some(path) => std::path::absolute(path)
            .with_context(|| format!("invalid init path {}", path.display()))?,
        None => {
            let exe = std::env::current_exe().context("cannot find the peapod binary")?;
            let beside = exe.with_file_name("peapod-init");
            if !beside.exists() {
                bail!(
                    "no peapod-init beside {} (build it with `cargo xtask dist`, or set {INIT_ENV} or --init-path)",
                    exe.display()
                );
            }
            beside
        }
    };
    check_static(&path)?;
    Ok(path)
}

/// The read-only bind mount that puts `init` at `destination` in the container
/// ([`INIT_IN_CONTAINER`] for `run --init`).
pub fn mount(init: &Path, destination: &str) -> anyhow::Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(init)
        .options(
            ["bind", "ro", "nosuid", "nodev"]
                .map(str::to_owned)
                .to_vec(),
        )
        .build()
        .context("cannot describe the init mount")
}

/// The entrypoint under init: `/dev/init -- CMD...`.
pub fn wrap(command: &[String]) -> Vec<String> {
    [INIT_IN_CONTAINER.to_owned(), "--".to_owned()]
        .into_iter()
        .chain(command.iter().cloned())
        .collect()
}

/// A dynamically linked init would fail inside a rootfs without its libc with a baffling "no
/// such file": refuse it here, by the `PT_INTERP` entry of its ELF program headers.
fn check_static(path: &Path) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut elf = Vec::new();
    file.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut elf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    match has_interpreter(&elf) {
        Some(false) => Ok(()),
        Some(true) => bail!(
            "{} is dynamically linked and cannot run in an arbitrary rootfs; use the static peapod-init from `cargo xtask dist`",
            path.display()
        ),
        None => bail!("{} is not a 64-bit ELF executable", path.display()),
    }
}

/// Whether a little-endian ELF64 image asks for a program interpreter; `None` if it is not one
/// (or its program headers lie beyond the bytes given).
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let entry_size = usize::from(u16_at(0x36)?);
    let count = usize::from(u16_at(0x38)?);
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(entry_size)?)?;
        let kind = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_itself_is_dynamic() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are linked against the host's libc.
        assert_eq!(has_interpreter(&me), Some(true));
    }

    #[test]
    fn non_elf_is_refused() {
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
        assert_eq!(has_interpreter(b"\x7fELF\x02\x01"), None);
    }

    #[test]
    fn wrap_puts_init_first() {
        let cmd = ["sleep".to_owned(), "1".to_owned()];
        assert_eq!(wrap(&cmd), ["/dev/init", "--", "sleep", "1"]);
    }
}
