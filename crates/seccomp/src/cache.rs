//! A cache of compiled filters, so that the same profile is compiled by libseccomp once, not
//! for every container (a Docker-sized profile takes about 20 ms to compile, its load one
//! system call).
//!
//! A filter is a security boundary, so the cache is trusted only as far as it must be: it
//! lives in a directory only its owner can write (made mode 0700, refused when another user
//! owns it or others may write it), each entry is written to a temporary file and renamed,
//! and on reading every entry is checked whole: its magic, format, the complete key (the
//! SHA-256 of the profile's canonical JSON, the native architecture and the libseccomp
//! version), its length, and a SHA-256 of its content. Anything that fails a check is ignored
//! and compiled afresh, then written again. The cache keeps at most [`MAX_ENTRIES`] entries,
//! removing the least recently written.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use crate::error::{bad, Error};
use crate::filter::{Filter, Instruction};

/// How many compiled filters the cache keeps.
pub const MAX_ENTRIES: usize = 64;

const MAGIC: &[u8; 8] = b"PPSECCMP";
const FORMAT: u32 = 1;
/// magic, format, key, flags, count.
const HEADER: usize = 8 + 4 + 32 + 4 + 4;
const DIGEST: usize = 32;

/// A directory of compiled filters.
#[derive(Debug, Clone)]
pub struct FilterCache {
    dir: PathBuf,
}

impl FilterCache {
    /// The cache in `dir`, made (mode 0700) when missing. A directory that is a link, that
    /// another user owns, or that others may write is refused: whoever can write it could
    /// plant a filter.
    pub fn open(dir: &Path) -> Result<FilterCache, Error> {
        let problem = |what: String| bad("", format!("seccomp cache {}: {what}", dir.display()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| problem(e.to_string()))?;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| problem(e.to_string()))?;
        let euid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() {
            return Err(problem("is not a directory".into()));
        }
        if meta.uid() != euid {
            return Err(problem(format!(
                "is owned by uid {}, not {euid}",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(problem(format!(
                "is writable by others (mode {:o})",
                meta.mode() & 0o7777
            )));
        }
        Ok(FilterCache {
            dir: dir.to_owned(),
        })
    }

    /// The filter of `profile`: from the cache when a sound entry is there, else compiled
    /// (which checks the profile, so a bad one is refused as [`Filter::compile`] refuses it)
    /// and stored. A cache that cannot be written is passed over: the filter is what counts.
    ///
    /// In a build without the compiler (feature `compile` off) only a sound entry of the
    /// libseccomp a compiling build noted here gives a filter; anything else is the error of
    /// [`Filter::compile`] (`NO_COMPILER`).
    pub fn compile(&self, profile: &LinuxSeccomp) -> Result<Filter, Error> {
        let Some(compiler) = crate::compiler::identity(&self.dir) else {
            return Filter::compile(profile);
        };
        let key = key(profile, &compiler)?;
        let path = self.dir.join(hex(&key));
        if let Some(filter) = read_entry(&path, &key) {
            return Ok(filter);
        }
        let filter = Filter::compile(profile)?;
        if let Err(e) = self.store(&path, &key, &filter) {
            tracing::debug!("seccomp cache: cannot store {}: {e}", path.display());
        }
        Ok(filter)
    }

    fn store(&self, path: &Path, key: &[u8; 32], filter: &Filter) -> std::io::Result<()> {
        let bytes = encode(key, filter);
        // A name of this process's own: two writers never share a temporary file, and the
        // rename makes the entry appear whole or not at all.
        static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{serial}-{}",
            std::process::id(),
            hex(&key[..8])
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        renamed?;
        self.evict();
        Ok(())
    }

    /// Removes the least recently written entries beyond [`MAX_ENTRIES`].
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, path) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// SHA-256 of what decides the program: the profile as canonical JSON (its fields are
/// structs and lists, so serde writes them in one order), and the compiler: the native
/// architecture and the libseccomp version that compiles it (`ARCH\0VERSION`, see
/// `compiler.rs`).
fn key(profile: &LinuxSeccomp, compiler: &str) -> Result<[u8; 32], Error> {
    let json = serde_json::to_vec(profile).map_err(|e| bad("", e.to_string()))?;
    let mut hash = Sha256::new();
    hash.update(json);
    hash.update(format!("\0{compiler}\0{FORMAT}"));
    Ok(hash.finalize().into())
}

fn encode(key: &[u8; 32], filter: &Filter) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + filter.program.len() * 8 + DIGEST);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&filter.flags.to_le_bytes());
    out.extend_from_slice(&(filter.program.len() as u32).to_le_bytes());
    for i in &filter.program {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    let digest: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&digest);
    out
}

/// The filter in the entry at `path`, if it is whole and for `key`; `None` otherwise.
fn read_entry(path: &Path, key: &[u8; 32]) -> Option<Filter> {
    let bytes = std::fs::read(path).ok()?;
    decode(&bytes, key)
}

fn decode(bytes: &[u8], key: &[u8; 32]) -> Option<Filter> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if bytes.get(..8)? != MAGIC || u32_at(8)? != FORMAT || bytes.get(12..44)? != key {
        return None;
    }
    let flags = u32_at(44)?;
    let count = usize::try_from(u32_at(48)?).ok()?;
    // A classic BPF program has at most BPF_MAXINSNS (4096) instructions.
    if count == 0 || count > 4096 || bytes.len() != HEADER + count * 8 + DIGEST {
        return None;
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let program = body[HEADER..]
        .chunks_exact(8)
        .map(|c| Instruction {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some(Filter { program, flags })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(all(test, feature = "compile"))]
mod tests {
    use super::*;

    fn profile(names: &[&str]) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["personality"], "action": "SCMP_ACT_KILL",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .expect("profile")
    }

    /// The directory's files but the compiler's note.
    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name() != crate::compiler::NOTE)
            .map(|e| e.path())
            .collect()
    }

    #[test]
    fn a_cached_filter_is_the_fresh_one_bit_for_bit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FilterCache::open(&dir.path().join("c")).expect("open");
        let p = profile(&["mkdir", "mkdirat"]);
        let fresh = Filter::compile(&p).expect("compile");
        let first = cache.compile(&p).expect("first");
        assert_eq!(entries(&dir.path().join("c")).len(), 1);
        let second = cache.compile(&p).expect("second");
        assert_eq!(first, fresh);
        assert_eq!(second, fresh, "from the cache, the same program and flags");
        // Another profile is another entry, never the first one's filter.
        let other = cache.compile(&profile(&["rmdir"])).expect("other");
        assert_ne!(other, fresh);
        assert_eq!(entries(&dir.path().join("c")).len(), 2);
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_compiled_afresh_and_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FilterCache::open(dir.path()).expect("open");
        let p = profile(&["mkdir"]);
        let fresh = cache.compile(&p).expect("compile");
        let path = entries(dir.path()).pop().expect("an entry");
        let good = std::fs::read(&path).expect("entry");
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        let truncated = good[..good.len() - 9].to_vec();
        // An entry for another key, copied under this one's name.
        let mut foreign = good.clone();
        foreign[20] ^= 1;
        for damaged in [flipped, truncated, foreign, b"garbage".to_vec(), Vec::new()] {
            std::fs::write(&path, &damaged).expect("damage");
            let compiler = crate::compiler::identity(dir.path()).expect("compiler");
            assert_eq!(decode(&damaged, &key(&p, &compiler).expect("key")), None);
            assert_eq!(cache.compile(&p).expect("recompiled"), fresh);
            assert_eq!(std::fs::read(&path).expect("rewritten"), good);
        }
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = FilterCache::open(dir.path()).expect_err("world-writable");
        assert!(err.to_string().contains("writable by others"), "{err}");
    }

    #[test]
    fn writers_filling_the_cache_at_once_all_get_the_filter() {
        // Each writer opens the cache on its own, as separate peapod processes do; what keeps
        // them apart is the temporary file per writer and the atomic rename.

        let dir = tempfile::tempdir().expect("tempdir");
        let p = profile(&["mkdir"]);
        let fresh = Filter::compile(&p).expect("compile");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, p) = (dir.path().to_owned(), p.clone());
                std::thread::spawn(move || FilterCache::open(&dir).expect("open").compile(&p))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread").expect("filter"), fresh);
        }
        let left = entries(dir.path());
        assert_eq!(left.len(), 1, "one entry, no temporary file left: {left:?}");
    }

    #[test]
    fn the_oldest_entries_go_beyond_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FilterCache::open(dir.path()).expect("open");
        for i in 0..MAX_ENTRIES + 3 {
            let name = format!("fake-{i:03}");
            std::fs::write(dir.path().join(&name), b"x").expect("entry");
        }
        cache.compile(&profile(&["mkdir"])).expect("compile");
        assert_eq!(entries(dir.path()).len(), MAX_ENTRIES);
    }
}
