//! Which libseccomp the cache's entries are keyed by (see `cache.rs`): its native
//! architecture and version, as `ARCH\0VERSION`.
//!
//! A build with the compiler (feature `compile`) asks the libseccomp it links, and notes the
//! answer in the cache directory (`.compiler`), with the identity of that library's file
//! (its path, device, inode, size and modification time). A build without it (`peapod-oci`
//! for musl, which cannot link Debian's libseccomp) reads the note, and believes it only
//! while the library's file is still the one noted: after an upgrade the note is stale, no
//! key is made, and the profile goes to a build that compiles (which notes the new one).
//! The note decides only which entries are looked at: each entry is still checked against
//! its full key and digest, so a filter read is always the one that libseccomp version
//! compiled from exactly this profile.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The note's name in the cache directory: a dot, so eviction passes it over.
pub(crate) const NOTE: &str = ".compiler";
const NOTE_HEADER: &str = "peapod seccomp compiler 1";

/// The identity of a file as the note keeps it: device, inode, size, modification time.
fn file_identity(meta: &std::fs::Metadata) -> String {
    format!(
        "{} {} {} {} {}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// The note's fields: architecture, version, library path, its identity.
fn read_note(dir: &Path) -> Option<[String; 4]> {
    let text = std::fs::read_to_string(dir.join(NOTE)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != NOTE_HEADER {
        return None;
    }
    let mut field = || lines.next().map(str::to_owned);
    let note = [field()?, field()?, field()?, field()?];
    (lines.next().is_none() && !note.iter().any(|f| f.contains('\0'))).then_some(note)
}

/// The architecture and version of the library the note names, while its file is the one
/// noted.
fn noted(dir: &Path) -> Option<(String, String)> {
    let [arch, version, library, identity] = read_note(dir)?;
    let meta = std::fs::metadata(&library).ok()?;
    (file_identity(&meta) == identity).then_some((arch, version))
}

/// The compiler's identity for the cache in `dir`: this build's libseccomp (noted in `dir`
/// when the note says otherwise).
#[cfg(feature = "compile")]
pub(crate) fn identity(dir: &Path) -> Option<String> {
    let arch = format!("{:?}", libseccomp::ScmpArch::native());
    let version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    if noted(dir) != Some((arch.clone(), version.clone())) {
        if let Err(e) = note(dir, &arch, &version) {
            tracing::debug!("seccomp cache: cannot note the compiler: {e}");
        }
    }
    Some(format!("{arch}\0{version}"))
}

/// The compiler's identity for the cache in `dir`, as a build that compiles noted it there;
/// `None` when there is no sound note.
#[cfg(not(feature = "compile"))]
pub(crate) fn identity(dir: &Path) -> Option<String> {
    noted(dir).map(|(arch, version)| format!("{arch}\0{version}"))
}

/// Writes the note: the libseccomp this process maps (its file in `/proc/self/maps`, which
/// must still be that file: same inode, not deleted).
#[cfg(feature = "compile")]
fn note(dir: &Path, arch: &str, version: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let other = |what: &str| std::io::Error::other(what.to_owned());
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let (inode, library) = maps
        .lines()
        .find_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let inode = fields.nth(4)?;
            let path = fields.next()?;
            let name = path.rsplit('/').next()?;
            (path.starts_with('/') && name.starts_with("libseccomp.so") && fields.next().is_none())
                .then(|| (inode.to_owned(), path.to_owned()))
        })
        .ok_or_else(|| other("no libseccomp.so file is mapped (linked statically?)"))?;
    let meta = std::fs::metadata(&library)?;
    if meta.ino().to_string() != inode {
        return Err(other("the mapped libseccomp's file was replaced"));
    }
    let text = format!(
        "{NOTE_HEADER}\n{arch}\n{version}\n{library}\n{}\n",
        file_identity(&meta)
    );
    if text.matches('\n').count() != 5 {
        return Err(other("a field of the note has a line break"));
    }
    // A name of this writer's own, as the cache's entries have.
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-note-{}-{serial}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, dir.join(NOTE)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(all(test, feature = "compile"))]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_linked_library_and_goes_stale_with_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = identity(dir.path()).expect("identity");
        let (arch, version) = noted(dir.path()).expect("noted");
        assert_eq!(live, format!("{arch}\0{version}"));
        // Another file at the noted path (an upgraded library): the note is not believed.
        let [_, _, library, _] = read_note(dir.path()).expect("note");
        let note = std::fs::read_to_string(dir.path().join(NOTE)).expect("note");
        let moved = note.replace(&library, "/proc/self/exe");
        std::fs::write(dir.path().join(NOTE), moved).expect("write");
        assert_eq!(noted(dir.path()), None);
        // The compiling build notes it again.
        assert_eq!(identity(dir.path()).as_deref(), Some(live.as_str()));
        assert!(noted(dir.path()).is_some());
    }
}
