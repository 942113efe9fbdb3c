//! Unpacking one layer (a tar stream, gzip, zstd or plain) into a directory of its own,
//! safely: no entry can write outside that directory.
//!
//! Every entry's parent directory is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` relative to the layer directory, and the entry is then made relative
//! to that descriptor with `O_NOFOLLOW`-style calls. So absolute names and `..` (refused up
//! front), a path through a symbolic link made by an earlier entry (refused by the kernel with
//! `ELOOP`), and a final component that is a link (replaced, never followed) cannot reach
//! anything but the layer. This is stricter than resolving inside the layer as a root would
//! (peapod-rootfs's `InRoot`): tar writers that record a real file system never put an entry
//! below a symlink, so only a crafted layer is refused.
//!
//! Whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the opaque xattr on its directory (`trusted.overlay.opaque`, or
//! `user.overlay.opaque` for a store an ordinary user mounts with `userxattr`).

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use crate::{Error, Result};

/// How a layer is unpacked.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// For a store of an ordinary user: the files belong to the user (who is root in the
    /// container's user namespace) unless `maps` shift them, device nodes are skipped with a
    /// warning, and the opaque xattr is `user.overlay.opaque` (overlayfs's `userxattr`).
    pub rootless: bool,
    /// Rootless, the maps of the user's containers (its subordinate ranges): a file the layer
    /// gives to id N ≥ 1 is given to the host id N maps to, so that inside the container it
    /// is N's again. Done in a user namespace with these maps, after the layer is written.
    pub maps: Option<peapod_ns::RootlessMaps>,
}

impl UnpackOptions {
    /// Options for this process: rootless unless it runs as uid 0.
    pub fn for_this_process() -> UnpackOptions {
        UnpackOptions::new(!rustix::process::geteuid().is_root())
    }

    /// Options for a store that is rootless or not; rootless, the owners are shifted through
    /// this process's subordinate ranges when it has some.
    pub fn new(rootless: bool) -> UnpackOptions {
        let maps = rootless
            .then(peapod_ns::RootlessMaps::for_this_process)
            .filter(peapod_ns::RootlessMaps::has_ranges);
        UnpackOptions { rootless, maps }
    }

    fn opaque_xattr(&self) -> &'static str {
        if self.rootless {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        }
    }
}

/// The compression of a layer, from its first bytes (the media type can lie, and Docker's
/// archives do not say): gzip, zstd, or none.
pub(crate) fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?))
    } else {
        Ok(Box::new(reader))
    }
}

/// Metadata applied to a directory after everything below it was written (a read-only
/// directory must still take its children, and writing them changes its mtime).
struct DirMeta {
    path: Vec<OsString>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Unpacks the uncompressed tar stream `reader` into the existing empty directory `dest`.
/// `layer` names the layer in errors. On error `dest` is left half-written: the caller
/// unpacks into a temporary directory and removes it.
pub fn unpack(reader: impl Read, dest: &Path, layer: &str, options: &UnpackOptions) -> Result<()> {
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(dest)(e.into()))?;
    let bad_layer = |e: io::Error| Error::BadLayer {
        layer: layer.to_owned(),
        problem: format!("not a valid tar stream: {e}"),
    };
    let mut archive = tar::Archive::new(reader);
    let shift = std::cell::RefCell::new(Shift::default());
    let mut dirs: Vec<DirMeta> = Vec::new();
    let mut root_meta: Option<DirMeta> = None;
    for entry in archive.entries().map_err(bad_layer)? {
        let mut entry = entry.map_err(bad_layer)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut unpacker = Unpacker {
            root: &root,
            layer,
            entry_name: &name,
            options,
            shift: &shift,
        };
        let path = clean_path(&entry.path().map_err(bad_layer)?)
            .map_err(|problem| unpacker.hostile(problem))?;
        if let Some(meta) = unpacker.entry(&mut entry, &path)? {
            if meta.path.is_empty() {
                root_meta = Some(meta);
            } else {
                dirs.push(meta);
            }
        }
    }
    // Children before parents: the deepest directories were pushed last.
    for meta in dirs.iter().rev().chain(root_meta.iter()) {
        let name = meta
            .path
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let unpacker = Unpacker {
            root: &root,
            layer,
            entry_name: &name,
            options,
            shift: &shift,
        };
        let fd = unpacker.open_dir(&meta.path, false)?;
        unpacker.finish(&fd, meta)?;
    }
    // Whatever follows the tar's end-of-archive blocks is read too, so that the caller's
    // digest covers the whole stream.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(bad_layer)?;
    let shift = shift.into_inner();
    shift.warn(layer);
    match &options.maps {
        Some(maps) => crate::owners::shift(&root, layer, maps, &shift.owners),
        None => Ok(()),
    }
}

/// What a rootless unpack leaves to do or to say after the last entry.
#[derive(Default)]
struct Shift {
    /// Entries whose owner is not root, to be given their owners in a user namespace.
    owners: Vec<crate::owners::Owned>,
    /// Device nodes not made (rootless cannot).
    devices: Vec<String>,
}

impl Shift {
    fn warn(&self, layer: &str) {
        if !self.devices.is_empty() {
            tracing::warn!(
                "layer {layer}: device nodes skipped (an ordinary user cannot make them): {}",
                self.devices.join(", ")
            );
        }
    }
}

/// The components of an entry's name, with `.` dropped; absolute names and `..` refused.
fn clean_path(path: &Path) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute names are not allowed in a layer".into())
            }
            Component::ParentDir => return Err("\"..\" is not allowed in a layer".into()),
        }
    }
    Ok(out)
}

struct Unpacker<'a> {
    root: &'a OwnedFd,
    layer: &'a str,
    entry_name: &'a str,
    options: &'a UnpackOptions,
    shift: &'a std::cell::RefCell<Shift>,
}

impl Unpacker<'_> {
    fn hostile(&self, problem: impl Into<String>) -> Error {
        Error::HostileEntry {
            layer: self.layer.to_owned(),
            entry: self.entry_name.to_owned(),
            problem: problem.into(),
        }
    }

    fn failed(&self, source: impl Into<io::Error>) -> Error {
        Error::Entry {
            layer: self.layer.to_owned(),
            entry: self.entry_name.to_owned(),
            source: source.into(),
        }
    }

    /// Opens the directory `path` of the layer (creating missing components, mode 0755, when
    /// `create`), never through a symbolic link and never outside the layer.
    fn open_dir(&self, path: &[OsString], create: bool) -> Result<OwnedFd> {
        let mut fd = rustix::io::dup(self.root).map_err(|e| self.failed(e))?;
        for name in path {
            let open = || {
                rustix::fs::openat2(
                    &fd,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )
            };
            let next = match open() {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, name.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.failed(e)),
                    }
                    open()
                }
                other => other,
            };
            fd = match next {
                Ok(next) => next,
                Err(Errno::LOOP) | Err(Errno::XDEV) | Err(Errno::NOTDIR) => {
                    return Err(self.hostile(format!(
                        "{:?} is not a directory of the layer (a symbolic link or a file)",
                        name
                    )))
                }
                Err(e) => return Err(self.failed(e)),
            };
        }
        Ok(fd)
    }

    /// Removes what is at `name` in `parent` so that a new entry can take its place; a
    /// directory stays when `keep_dir` (a directory entry repeated), and a non-empty one is
    /// never removed.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> Result<bool> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.failed(e)),
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                if keep_dir {
                    return Ok(true);
                }
                rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(|e| {
                    self.failed(io::Error::new(
                        io::Error::from(e).kind(),
                        "replaces a directory that is not empty",
                    ))
                })?;
                Ok(false)
            }
            Ok(_) => {
                rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(|e| self.failed(e))?;
                Ok(false)
            }
        }
    }

    /// Writes one entry; a directory's metadata is returned to be applied at the end.
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &[OsString],
    ) -> Result<Option<DirMeta>> {
        let xattrs = xattrs(entry).map_err(|e| self.failed(e))?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| self.failed(e))? & 0o7777;
        let uid = header.uid().map_err(|e| self.failed(e))?;
        let gid = header.gid().map_err(|e| self.failed(e))?;
        let mtime = header.mtime().unwrap_or(0);
        self.record_owner(path, kind, uid, gid, mode)?;
        let Some((name, parent_path)) = path.split_last() else {
            // The layer's own directory ("./").
            if kind.is_dir() {
                return Ok(Some(DirMeta {
                    path: Vec::new(),
                    mode,
                    uid,
                    gid,
                    mtime,
                    xattrs,
                }));
            }
            return Err(self.hostile("the layer's root must be a directory"));
        };
        let parent = self.open_dir(parent_path, true)?;
        if let Some(whiteout) = name.as_bytes().strip_prefix(b".wh.") {
            return self.whiteout(&parent, whiteout).map(|()| None);
        }
        let times = Timestamps {
            last_access: timespec(mtime),
            last_modification: timespec(mtime),
        };
        match kind {
            EntryType::Directory => {
                if !self.clear(&parent, name, true)? {
                    rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(|e| self.failed(e))?;
                }
                return Ok(Some(DirMeta {
                    path: path.to_vec(),
                    mode,
                    uid,
                    gid,
                    mtime,
                    xattrs,
                }));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&parent, name, false)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.failed(e))?;
                let mut file = std::fs::File::from(fd);
                io::copy(entry, &mut file).map_err(|e| self.failed(e))?;
                self.finish(
                    file.as_fd(),
                    &DirMeta {
                        path: Vec::new(),
                        mode,
                        uid,
                        gid,
                        mtime,
                        xattrs,
                    },
                )?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.hostile("a symbolic link without a target"))?
                    .into_owned();
                self.clear(&parent, name, false)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                    .map_err(|e| self.failed(e))?;
                self.chown_at(&parent, name, uid, gid)?;
                rustix::fs::utimensat(&parent, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.failed(e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.failed(e))?
                    .ok_or_else(|| self.hostile("a hard link without a target"))?
                    .into_owned();
                let target = clean_path(&target)
                    .map_err(|problem| self.hostile(format!("hard link target: {problem}")))?;
                let Some((target_name, target_parent)) = target.split_last() else {
                    return Err(self.hostile("a hard link to the layer's root"));
                };
                let target_dir = self.open_dir(target_parent, false).map_err(|_| {
                    self.hostile(format!(
                        "hard link target {:?} is not a file of this layer",
                        target.join(OsStr::new("/"))
                    ))
                })?;
                match rustix::fs::statat(&target_dir, target_name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) if FileType::from_raw_mode(stat.st_mode) != FileType::Directory => {}
                    _ => {
                        return Err(self.hostile(format!(
                            "hard link target {:?} is not a file of this layer",
                            target.join(OsStr::new("/"))
                        )))
                    }
                }
                self.clear(&parent, name, false)?;
                rustix::fs::linkat(
                    &target_dir,
                    target_name.as_os_str(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| self.failed(e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = if kind == EntryType::Fifo {
                    0
                } else {
                    if self.options.rootless {
                        self.shift
                            .borrow_mut()
                            .devices
                            .push(self.entry_name.to_owned());
                        return Ok(None);
                    }
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    rustix::fs::makedev(major, minor)
                };
                self.clear(&parent, name, false)?;
                rustix::fs::mknodat(
                    &parent,
                    name.as_os_str(),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    dev,
                )
                .map_err(|e| self.failed(e))?;
                self.chown_at(&parent, name, uid, gid)?;
                rustix::fs::chmodat(
                    &parent,
                    name.as_os_str(),
                    Mode::from_raw_mode(mode),
                    AtFlags::empty(),
                )
                .map_err(|e| self.failed(e))?;
                rustix::fs::utimensat(&parent, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.failed(e))?;
            }
            // Global pax headers and other metadata-only records describe nothing to make.
            EntryType::XGlobalHeader => {}
            other => {
                return Err(self.hostile(format!("unsupported entry type {other:?}")));
            }
        }
        Ok(None)
    }

    /// `.wh..wh..opq` marks `parent` opaque; `.wh.NAME` hides `NAME` of the layers below.
    fn whiteout(&self, parent: &OwnedFd, hidden: &[u8]) -> Result<()> {
        if hidden == b".wh..opq" {
            return rustix::fs::fsetxattr(
                parent,
                self.options.opaque_xattr(),
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| self.failed(e));
        }
        if hidden.starts_with(b".wh.") {
            // Other aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`) means nothing to overlayfs.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(self.hostile("a whiteout of no file"));
        }
        let hidden = OsStr::from_bytes(hidden);
        self.clear(parent, hidden, false)?;
        // A 0/0 character device is overlayfs's whiteout; since Linux 5.8 an ordinary user
        // may make one too.
        rustix::fs::mknodat(
            parent,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| self.failed(e))
    }

    /// Rootless with maps, notes an entry that does not belong to root for
    /// [`crate::owners::shift`] (a hard link shares its target's owner; a whiteout is root's).
    fn record_owner(
        &self,
        path: &[OsString],
        kind: EntryType,
        uid: u64,
        gid: u64,
        mode: u32,
    ) -> Result<()> {
        if self.options.maps.is_none() || (uid == 0 && gid == 0) {
            return Ok(());
        }
        let file_type = match kind {
            EntryType::Directory => FileType::Directory,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                FileType::RegularFile
            }
            EntryType::Symlink => FileType::Symlink,
            EntryType::Fifo => FileType::Fifo,
            _ => return Ok(()),
        };
        if path
            .last()
            .is_some_and(|n| n.as_bytes().starts_with(b".wh."))
        {
            return Ok(());
        }
        let (uid, gid) = self.ids(uid, gid)?;
        self.shift.borrow_mut().owners.push(crate::owners::Owned {
            path: path.to_vec(),
            file_type,
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            mode,
        });
        Ok(())
    }

    fn chown_at(&self, parent: &OwnedFd, name: &OsStr, uid: u64, gid: u64) -> Result<()> {
        if self.options.rootless {
            return Ok(());
        }
        let (uid, gid) = self.ids(uid, gid)?;
        rustix::fs::chownat(
            parent,
            name,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.failed(e))
    }

    fn ids(&self, uid: u64, gid: u64) -> Result<(rustix::fs::Uid, rustix::fs::Gid)> {
        let uid = u32::try_from(uid).map_err(|_| self.hostile("uid out of range"))?;
        let gid = u32::try_from(gid).map_err(|_| self.hostile("gid out of range"))?;
        Ok((
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        ))
    }

    /// Owner, then mode (a change of owner clears setuid and setgid), then xattrs (a change
    /// of owner clears `security.capability`), then times, of an open file or directory.
    fn finish(&self, fd: impl AsFd, meta: &DirMeta) -> Result<()> {
        let fd = fd.as_fd();
        if !self.options.rootless {
            let (uid, gid) = self.ids(meta.uid, meta.gid)?;
            rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(|e| self.failed(e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| self.failed(e))?;
        for (name, value) in &meta.xattrs {
            let bytes = name.as_bytes();
            if bytes.starts_with(b"trusted.overlay.") || bytes.starts_with(b"user.overlay.") {
                // Overlay metadata in a layer could redirect lookups to other layers' files.
                tracing::warn!(layer = self.layer, entry = self.entry_name, xattr = ?name, "overlay xattr in a layer ignored");
                continue;
            }
            match rustix::fs::fsetxattr(
                fd,
                name.as_os_str(),
                value,
                rustix::fs::XattrFlags::empty(),
            ) {
                Ok(()) => {}
                Err(e) if self.options.rootless || e == Errno::NOTSUP => {
                    tracing::warn!(layer = self.layer, entry = self.entry_name, xattr = ?name, error = %e, "xattr not set");
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
        let times = Timestamps {
            last_access: timespec(meta.mtime),
            last_modification: timespec(meta.mtime),
        };
        rustix::fs::futimens(fd, &times).map_err(|e| self.failed(e))
    }
}

fn timespec(seconds: u64) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(seconds).unwrap_or(i64::MAX),
        tv_nsec: 0,
    }
}

/// The entry's extended attributes, from its pax `SCHILY.xattr.NAME` records.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            if let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((
                    OsStr::from_bytes(name).to_os_string(),
                    extension.value_bytes().to_vec(),
                ));
            }
        }
    }
    Ok(out)
}
