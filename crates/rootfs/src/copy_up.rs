//! `tmpcopyup`: a new tmpfs gets a copy of the directory it covers, as podman asks for the
//! tmpfs mounts of `podman run --read-only` (`/tmp`, `/run`, ...); `copyup`: a new anonymous
//! volume gets a copy of what the image has at its path, as Docker fills one.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

/// Copies what is in `from` into `to` (an empty directory): directories, regular files and
/// symbolic links, with their modes and owners; the top directory's mode and owner too.
/// Links are copied as links and never followed, so nothing outside `from` is read. Other
/// kinds of file (devices, fifos, sockets) are left out: a tmpfs of the image's is no place
/// for them.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let top = fs::metadata(from)?;
    copy_attributes(&top, to)?;
    copy_entries(from, to)
}

fn copy_entries(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
            lchown(&target, Some(meta.uid()), Some(meta.gid()))?;
        } else if kind.is_dir() {
            fs::create_dir(&target)?;
            copy_attributes(&meta, &target)?;
            copy_entries(&source, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
            copy_attributes(&meta, &target)?;
        } else {
            tracing::debug!(
                "tmpcopyup: {} left out (not a file, directory or link)",
                source.display()
            );
        }
    }
    Ok(())
}

/// Owner first: a chown clears the setuid and setgid bits that the mode then sets again.
fn copy_attributes(meta: &fs::Metadata, target: &Path) -> io::Result<()> {
    lchown(target, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))
}
