//! An image's root: an overlay of its unpacked layers (shared, never written) under an upper
//! directory of the container's own, mounted by the container process inside its new mount
//! namespace, so that the host never sees it and it goes when the container does.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::error::os;
use crate::{Error, Result};

/// The most of mount data the kernel takes (one page); longer option strings are cut or
/// refused, so many layers with long paths are named relative to their common directory.
const MOUNT_DATA_LIMIT: usize = 4095;

/// The layers of a container's root, for [`crate::RootfsPlan::with_overlay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The image's unpacked layer directories, lowest first (at least one).
    pub lower: Vec<PathBuf>,
    /// The container's writable layer and the overlay's work directory (on the same file
    /// system); `None` for a read-only root, which then has no layer of its own at all.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Use the `user.overlay.*` extended attributes (the `userxattr` option), as an overlay
    /// mounted in a user namespace must, and as layers unpacked without root are written.
    pub userxattr: bool,
}

impl Overlay {
    /// Checks, before any namespace exists, that every directory is there.
    pub fn validate(&self) -> Result<()> {
        if self.lower.is_empty() {
            return Err(Error::Root {
                path: PathBuf::new(),
                problem: "an overlay needs at least one layer".into(),
            });
        }
        let dirs = self.lower.iter().chain(
            self.upper
                .iter()
                .flat_map(|(upper, work)| [upper, work].into_iter()),
        );
        for dir in dirs {
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(not_a_layer(dir, "not a directory".into())),
                Err(e) => return Err(not_a_layer(dir, e.to_string())),
            }
        }
        for dir in &self.lower {
            // The kernel splits lowerdir at ':' and ',' (escaped or not, depending on its
            // version): such a path is refused here rather than misread there.
            if dir
                .as_os_str()
                .as_bytes()
                .iter()
                .any(|b| b":,\\".contains(b))
            {
                return Err(not_a_layer(dir, "has ':', ',' or '\\' in its path".into()));
            }
        }
        Ok(())
    }

    /// Mounts the overlay on `target` (in the calling process's mount namespace).
    pub(crate) fn mount_on(&self, target: &Path) -> Result<()> {
        self.validate()?;
        // A read-only root of one layer is that layer, bound read-only: the kernel wants two
        // lower layers for an overlay without an upper one on older versions, and a bind is
        // the cheaper mount anyway.
        if let ([only], None) = (self.lower.as_slice(), &self.upper) {
            let bind = |flags| {
                mount(Some(only), target, None::<&str>, flags, None::<&str>)
                    .map_err(|e| self.error(target, os(e)))
            };
            bind(MsFlags::MS_BIND)?;
            return bind(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
        }
        let mut data = self.data(None);
        let mut relative_to = None;
        if data.len() > MOUNT_DATA_LIMIT {
            // As containers/storage does: name the layers relative to their common parent,
            // made the working directory for the mount (the container process chdirs again
            // into its new root later).
            if let Some(parent) = common_parent(&self.lower) {
                nix::unistd::chdir(&parent).map_err(|e| self.error(target, os(e)))?;
                data = self.data(Some(&parent));
                relative_to = Some(parent);
            }
        }
        if data.len() > MOUNT_DATA_LIMIT {
            return Err(Error::Mount {
                what: format!("overlay of {} layers", self.lower.len()),
                target: target.to_owned(),
                source: std::io::Error::other(format!(
                    "its options are {} bytes, more than the kernel's {MOUNT_DATA_LIMIT}",
                    data.len()
                )),
            });
        }
        let data = CString::new(data).map_err(|e| self.error(target, std::io::Error::other(e)))?;
        let flags = match self.upper {
            Some(_) => MsFlags::empty(),
            None => MsFlags::MS_RDONLY,
        };
        let result = mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(data.as_c_str()),
        );
        if relative_to.is_some() {
            let _ = nix::unistd::chdir("/");
        }
        result.map_err(|e| self.error(target, os(e)))
    }

    /// The mount options: `lowerdir` highest first, as the kernel lists them.
    fn data(&self, relative_to: Option<&Path>) -> String {
        let name = |p: &Path| {
            let p = relative_to
                .and_then(|base| p.strip_prefix(base).ok())
                .unwrap_or(p);
            p.display().to_string()
        };
        let lower: Vec<String> = self.lower.iter().rev().map(|p| name(p)).collect();
        let mut data = format!("lowerdir={}", lower.join(":"));
        if let Some((upper, work)) = &self.upper {
            // `volatile`: no sync of the upper layer, at any write or at the unmount when
            // the container's last process exits (which otherwise syncs the whole file
            // system holding it). A container's upper layer never outlives it, so a crash
            // of the machine, after which the kernel would refuse to mount it again, loses
            // nothing that would have been used.
            data.push_str(&format!(
                ",upperdir={},workdir={},volatile",
                upper.display(),
                work.display()
            ));
        }
        if self.userxattr {
            data.push_str(",userxattr");
        }
        data
    }

    /// The error of a failed overlay mount, saying what the kernel needs where it refuses
    /// one in a user namespace.
    fn error(&self, target: &Path, source: std::io::Error) -> Error {
        let refused = matches!(source.raw_os_error(), Some(libc::EPERM | libc::EINVAL));
        if self.userxattr && refused {
            return Error::Mount {
                what: "the image's overlay in a user namespace".into(),
                target: target.to_owned(),
                source: std::io::Error::new(
                    source.kind(),
                    format!(
                        "{source} (the kernel refuses unprivileged overlay mounts: it needs \
                         Linux 5.11 or later, with overlay not disabled for user namespaces)"
                    ),
                ),
            };
        }
        Error::Mount {
            what: "the image's overlay".into(),
            target: target.to_owned(),
            source,
        }
    }
}

fn not_a_layer(dir: &Path, problem: String) -> Error {
    Error::Root {
        path: dir.to_owned(),
        problem: format!("image layer directory: {problem}"),
    }
}

/// The directory every one of `paths` is directly in, when they share one.
fn common_parent(paths: &[PathBuf]) -> Option<PathBuf> {
    let first = paths.first()?.parent()?;
    paths
        .iter()
        .all(|p| p.parent() == Some(first))
        .then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_lists_the_highest_layer_first() {
        let overlay = Overlay {
            lower: vec!["/s/l/a".into(), "/s/l/b".into()],
            upper: Some(("/s/c/u".into(), "/s/c/w".into())),
            userxattr: true,
        };
        assert_eq!(
            overlay.data(None),
            "lowerdir=/s/l/b:/s/l/a,upperdir=/s/c/u,workdir=/s/c/w,volatile,userxattr"
        );
        assert_eq!(
            common_parent(&overlay.lower).as_deref(),
            Some(Path::new("/s/l"))
        );
        assert!(overlay
            .data(Some(Path::new("/s/l")))
            .starts_with("lowerdir=b:a,"));
    }
}
