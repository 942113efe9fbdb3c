//! Mount options as `mount(8)` and the OCI `mounts[].options` spell them.

use std::path::Path;

use nix::mount::MsFlags;

use crate::{Error, Result};

/// How mount events propagate between a mount and its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `private`: no propagation either way.
    Private,
    /// `shared`: both ways.
    Shared,
    /// `slave`: from the peer group into this mount only.
    Slave,
    /// `unbindable`: private, and cannot be bind-mounted.
    Unbindable,
}

impl Propagation {
    /// The `MS_*` flags that set this propagation, recursively or not.
    pub fn flags(self, recursive: bool) -> MsFlags {
        let kind = match self {
            Propagation::Private => MsFlags::MS_PRIVATE,
            Propagation::Shared => MsFlags::MS_SHARED,
            Propagation::Slave => MsFlags::MS_SLAVE,
            Propagation::Unbindable => MsFlags::MS_UNBINDABLE,
        };
        if recursive {
            kind | MsFlags::MS_REC
        } else {
            kind
        }
    }

    /// Parses `private`, `rprivate`, `shared`, ... into the kind and whether it is recursive.
    pub fn parse(name: &str) -> Option<(Propagation, bool)> {
        let (recursive, base) = match name.strip_prefix('r') {
            Some(rest) if rest != "o" && rest != "w" => (true, rest),
            _ => (false, name),
        };
        let kind = match base {
            "private" => Propagation::Private,
            "shared" => Propagation::Shared,
            "slave" => Propagation::Slave,
            "unbindable" => Propagation::Unbindable,
            _ => return None,
        };
        Some((kind, recursive))
    }
}

/// Parsed mount options: flags to set, whether this is a (recursive) bind mount, the
/// propagation to apply afterwards, and the file-system specific data (`mode=755`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags to set (`ro`, `nosuid`, `nodev`, `noexec`, `relatime`, ...).
    pub flags: MsFlags,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given: submounts of the source come along.
    pub recursive: bool,
    /// A propagation option, applied after the mount.
    pub propagation: Option<(Propagation, bool)>,
    /// Everything else, passed to the file system as `data` (comma-joined).
    pub data: Vec<String>,
    /// Recursive attributes (`rro`, `rnosuid`, ...), set on the mount and every mount below
    /// it with `mount_setattr(AT_RECURSIVE)` after it is made.
    pub recursive_attrs: RecursiveAttrs,
    /// `tmpcopyup`: a tmpfs starts with a copy of what the rootfs has at its destination.
    pub tmpcopyup: bool,
    /// `copyup` (peapod's, for anonymous volumes): a bind mount whose source is an empty
    /// directory first gets a copy of what the rootfs has at its destination, as Docker
    /// fills a new volume from the image.
    pub copyup: bool,
}

/// `MOUNT_ATTR_*` bits to set and to clear, as `struct mount_attr` takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    /// `attr_set`.
    pub set: u64,
    /// `attr_clr`.
    pub clear: u64,
}

impl RecursiveAttrs {
    /// Whether any attribute is asked for.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The recursive option `word` as (whether it clears, the attribute), as runc reads them.
fn recursive_attr(word: &str) -> Option<(bool, u64)> {
    Some(match word {
        "rro" => (false, MOUNT_ATTR_RDONLY),
        "rrw" => (true, MOUNT_ATTR_RDONLY),
        "rnosuid" => (false, MOUNT_ATTR_NOSUID),
        "rsuid" => (true, MOUNT_ATTR_NOSUID),
        "rnodev" => (false, MOUNT_ATTR_NODEV),
        "rdev" => (true, MOUNT_ATTR_NODEV),
        "rnoexec" => (false, MOUNT_ATTR_NOEXEC),
        "rexec" => (true, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (false, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (true, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (false, MOUNT_ATTR_RELATIME),
        "rnorelatime" => (true, MOUNT_ATTR_RELATIME),
        "rnoatime" => (false, MOUNT_ATTR_NOATIME),
        "ratime" => (true, MOUNT_ATTR_NOATIME),
        "rstrictatime" => (false, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (true, MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (false, MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (true, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            bind: false,
            recursive: false,
            propagation: None,
            data: Vec::new(),
            recursive_attrs: RecursiveAttrs::default(),
            tmpcopyup: false,
            copyup: false,
        }
    }
}

/// Options that are passed to the file system as data rather than as flags. Anything that
/// is neither a flag nor `key=value` nor in this list is an error, so a typo is not ignored.
const DATA_WORDS: &[&str] = &["newinstance", "nr_inodes", "inode64", "noswap", "lazytime"];

impl MountOptions {
    /// Parses option words for the mount at `target` (only used in the error).
    pub fn parse<S: AsRef<str>>(target: &Path, words: &[S]) -> Result<MountOptions> {
        let mut opts = MountOptions::default();
        for word in words {
            let word = word.as_ref();
            let (set, clear) = match word {
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "bind" => {
                    opts.bind = true;
                    continue;
                }
                "rbind" => {
                    opts.bind = true;
                    opts.recursive = true;
                    continue;
                }
                "tmpcopyup" => {
                    opts.tmpcopyup = true;
                    continue;
                }
                "notmpcopyup" => {
                    opts.tmpcopyup = false;
                    continue;
                }
                "copyup" => {
                    opts.copyup = true;
                    continue;
                }
                other => {
                    if let Some((clear, attr)) = recursive_attr(other) {
                        let attrs = &mut opts.recursive_attrs;
                        if clear {
                            attrs.clear |= attr;
                            attrs.set &= !attr;
                        } else {
                            attrs.set |= attr;
                            // An access-time mode replaces the others: the kernel wants the
                            // whole field cleared to change it.
                            if attr & MOUNT_ATTR_ATIME_MASK == attr {
                                attrs.clear |= MOUNT_ATTR_ATIME_MASK;
                            }
                        }
                    } else if let Some(prop) = Propagation::parse(other) {
                        opts.propagation = Some(prop);
                    } else if other.contains('=') || DATA_WORDS.contains(&other) {
                        opts.data.push(other.to_owned());
                    } else {
                        return Err(Error::Option {
                            target: target.to_owned(),
                            option: other.to_owned(),
                        });
                    }
                    continue;
                }
            };
            opts.flags.insert(set);
            opts.flags.remove(clear);
        }
        Ok(opts)
    }

    /// The data string passed to `mount(2)`, or `None` when there is none.
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> MountOptions {
        MountOptions::parse(Path::new("/x"), words).expect("parse")
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let opts = parse(&["ro", "nosuid", "rw", "nodev"]);
        assert_eq!(opts.flags, MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
    }

    #[test]
    fn rbind_with_propagation_and_data() {
        let opts = parse(&["rbind", "rslave", "mode=755", "size=64k"]);
        assert!(opts.bind && opts.recursive);
        assert_eq!(opts.propagation, Some((Propagation::Slave, true)));
        assert_eq!(opts.data_string().as_deref(), Some("mode=755,size=64k"));
    }

    #[test]
    fn ro_is_not_mistaken_for_a_recursive_propagation() {
        assert_eq!(Propagation::parse("ro"), None);
        assert_eq!(
            Propagation::parse("rprivate"),
            Some((Propagation::Private, true))
        );
        assert_eq!(
            Propagation::parse("private"),
            Some((Propagation::Private, false))
        );
    }

    #[test]
    fn recursive_attributes_set_and_clear() {
        let opts = parse(&["rbind", "rro", "rnosuid", "rexec", "rnoatime", "tmpcopyup"]);
        assert!(opts.bind && opts.tmpcopyup);
        assert_eq!(
            opts.recursive_attrs.set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(
            opts.recursive_attrs.clear,
            MOUNT_ATTR_NOEXEC | MOUNT_ATTR_ATIME_MASK
        );
        assert!(opts.propagation.is_none(), "rro is no propagation");
        let opts = parse(&["rro", "rrw"]);
        assert_eq!(opts.recursive_attrs.set, 0);
        assert_eq!(opts.recursive_attrs.clear, MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn unknown_word_is_an_error_naming_it() {
        let err = MountOptions::parse(Path::new("/data"), &["nosiud"]).unwrap_err();
        assert_eq!(err.to_string(), "mount /data: unknown option \"nosiud\"");
    }
}
