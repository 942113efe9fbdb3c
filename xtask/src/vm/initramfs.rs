//! The guest's initramfs: an uncompressed `newc` cpio archive (the kernel's own format, see
//! the kernel's Documentation/driver-api/early-userspace/buffer-format.rst), written here so
//! that no `cpio` and no staging directory are needed; and the kernel modules it carries, in
//! the order `insmod` must load them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Result;

/// An archive being written in memory (a few MB: busybox, the modules and two scripts).
#[derive(Debug, Default)]
pub(crate) struct Cpio {
    bytes: Vec<u8>,
    /// Inode numbers only have to differ (no entry is a hard link).
    next_ino: u32,
}

impl Cpio {
    pub(crate) fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    pub(crate) fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, (0, 0), data);
    }

    /// A character device node: the archive can hold one although xtask could not mknod it.
    pub(crate) fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // with its NUL
            0,                     // check (only for the "070702" format)
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Names and data start on 4-byte boundaries.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// The `.ko` files under `modules` (`/lib/modules/VERSION`) for the modules `wanted` (file
/// names without `.ko`), each after what it depends on, as `modules.dep` says: busybox's
/// `insmod` loads one file and resolves nothing.
pub(crate) fn modules_in_order(modules: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>> {
    let dep_file = modules.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file)
        .map_err(|e| format!("cannot read {}: {e}", dep_file.display()))?;
    // "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko ..." per line.
    let deps: BTreeMap<&str, Vec<&str>> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, deps)| (module.trim(), deps.split_whitespace().collect()))
        .collect();
    let mut order = Vec::new();
    for name in wanted {
        let file = format!("{name}.ko");
        let module = deps
            .keys()
            .find(|path| path.rsplit('/').next() == Some(file.as_str()))
            .ok_or_else(|| {
                format!(
                    "{} has no {file} (compressed modules are not supported)",
                    dep_file.display()
                )
            })?;
        visit(module, &deps, &mut order);
    }
    Ok(order.into_iter().map(|m| modules.join(m)).collect())
}

/// Appends `module` to `order` after its dependencies (depth first), each once.
fn visit<'a>(module: &'a str, deps: &BTreeMap<&'a str, Vec<&'a str>>, order: &mut Vec<&'a str>) {
    if order.contains(&module) {
        return;
    }
    for dep in deps.get(module).into_iter().flatten() {
        visit(dep, deps, order);
    }
    order.push(module);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_headers_padded_to_four_bytes() {
        let mut cpio = Cpio::default();
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = cpio.finish();
        assert!(bytes.starts_with(b"070701"));
        // 110 bytes of header, "init\0" padded to 116, 10 bytes of data padded to 128.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[128..134], b"070701");
        assert!(bytes.len().is_multiple_of(4));
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/a/9p.ko: kernel/b/9pnet.ko kernel/c/netfs.ko\n\
             kernel/b/9pnet.ko:\n\
             kernel/c/netfs.ko:\n\
             kernel/b/9pnet_virtio.ko: kernel/b/9pnet.ko\n",
        )
        .expect("modules.dep");
        let order = modules_in_order(&dir, &["9pnet_virtio", "9p"]);
        std::fs::remove_dir_all(&dir).expect("clean up");
        let names: Vec<String> = order
            .expect("order")
            .iter()
            .map(|p| {
                p.strip_prefix(&dir)
                    .expect("under dir")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "kernel/b/9pnet.ko",
                "kernel/b/9pnet_virtio.ko",
                "kernel/c/netfs.ko",
                "kernel/a/9p.ko"
            ]
        );
    }
}
