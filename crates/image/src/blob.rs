//! Content-addressed blobs: `ROOT/blobs/sha256/HEX`, written through a temporary file that
//! is hashed on the way in and renamed into place only when its digest (and size) match.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::{Digest, Error, Result};

/// The lower-case hex of a `sha256:` digest, checked so that it can be a file name.
pub(crate) fn hex_of(digest: &Digest) -> Result<&str> {
    let text = digest.as_ref();
    match text.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(hex),
        _ => Err(Error::BadDigest(text.to_owned())),
    }
}

/// Whether `hex` is 64 lower-case hex digits.
pub(crate) fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses `sha256:HEX`, refusing anything else.
pub fn parse_digest(text: &str) -> Result<Digest> {
    let digest: Digest = text
        .parse()
        .map_err(|_| Error::BadDigest(text.to_owned()))?;
    hex_of(&digest)?;
    Ok(digest)
}

/// The digest of `bytes`.
pub fn digest_of(bytes: &[u8]) -> Digest {
    digest_from_hasher(Sha256::new_with_prefix(bytes))
}

pub(crate) fn digest_from_hasher(hasher: Sha256) -> Digest {
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // 64 hex digits with the sha256 prefix always parse.
    format!("sha256:{hex}")
        .parse()
        .unwrap_or_else(|_| unreachable!("a sha256 digest parses"))
}

/// A blob being written. It implements [`Write`]; [`BlobWriter::commit`] checks the content
/// against the expected digest and moves it into the store. Dropped uncommitted, it removes
/// its temporary file, so an interrupted write leaves nothing that looks like a blob.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    temp: PathBuf,
    target_dir: PathBuf,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    pub(crate) fn new(
        temp: PathBuf,
        target_dir: PathBuf,
        expected: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(Error::io(&temp))?;
        Ok(BlobWriter {
            file: Some(file),
            temp,
            target_dir,
            expected,
            expected_size,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks the digest (and the size, when it was given) and renames the blob into place;
    /// returns its digest. A blob already in the store is left as it is.
    pub fn commit(mut self) -> Result<Digest> {
        let actual = digest_from_hasher(std::mem::take(&mut self.hasher));
        let expected = self.expected.clone().unwrap_or_else(|| actual.clone());
        if let Some(size) = self.expected_size {
            if size != self.written {
                return Err(Error::DigestMismatch {
                    expected: expected.to_string(),
                    problem: format!("{} bytes instead of {size}", self.written),
                });
            }
        }
        if actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                problem: format!("its digest is {actual}"),
            });
        }
        let Some(file) = self.file.take() else {
            unreachable!("the file is only taken here");
        };
        // The data must be on disk before the name says it is complete: after a crash a
        // blob file exists only with its full, verified content.
        file.sync_all().map_err(Error::io(&self.temp))?;
        drop(file);
        let target = self.target_dir.join(hex_of(&expected)?);
        std::fs::rename(&self.temp, &target).map_err(Error::io(&target))?;
        Ok(expected)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob already committed"))?;
        // More than the announced size is refused at once, so that a server sending
        // without end cannot fill the disk before `commit` would notice.
        if let Some(size) = self.expected_size {
            if self.written + buf.len() as u64 > size {
                return Err(io::Error::other(format!(
                    "blob {}: more than the {size} bytes announced",
                    self.expected
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                )));
            }
        }
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// A reader that hashes and counts what passes through it.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) count: u64,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
