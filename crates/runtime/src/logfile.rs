//! A detached container's log: what its stdout and stderr wrote, in the kubelet's CRI log
//! format, one record a line: `2016-10-06T00:17:09.669794202Z stdout F text`, `F` for a whole
//! line (its newline dropped) and `P` for part of one (a line longer than [`MAX_RECORD`], or
//! the last bytes before the stream closed without a newline).
//!
//! That format rather than docker's JSON lines: the content is written as it came, so bytes
//! that are not UTF-8 pass through unchanged (JSON would have to replace or escape them), a
//! record costs no encoding, and podman's `k8s-file` driver and `crictl logs` read the same
//! lines. Timestamps are fixed-width UTC, so `--since` compares them as text.
//!
//! The file is `container.log` in the container's state directory, so it goes with the
//! container (`delete`, `rm`), under the state root's 0700 and never where the container can
//! reach. It is opened relative to that directory with `O_NOFOLLOW` (no symlink planted in
//! its place is followed), mode 0600. Rotated at [`LogLimits::max_size`]: with
//! `max_files` 1 (the default, docker's) the full file is unlinked and a new one begun, else
//! renamed to `container.log.1` (older ones shifted up to `container.log.{max_files - 1}`);
//! so the disk holds at most `max_size × max_files` however fast the container writes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// The log's file name in the container's state directory.
pub const LOG_FILE: &str = "container.log";
/// The default rotation size: the kubelet's `containerLogMaxSize` (10 MiB). Docker's
/// json-file and podman's k8s-file default to no limit at all, which a container that
/// floods its output would turn into a full disk (or, on `/run`, full memory).
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// The smallest `max-size` accepted: well above one record, so that a file never holds
/// more than its limit.
pub const MIN_MAX_SIZE: u64 = 64 << 10;
/// The longest content of one record: a longer line is split into `P` records.
pub const MAX_RECORD: usize = 16 << 10;
/// How often `logs -f` looks for more: the latency of a follower, not a correctness bound.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// How much log a container may keep (`--log-opt max-size=SIZE`, `--log-opt max-file=N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// A file is rotated before it would grow past this many bytes.
    pub max_size: u64,
    /// How many files are kept, the one written included.
    pub max_files: u32,
}

impl LogLimits {
    /// The kubelet's defaults (`containerLogMaxSize` 10Mi, `containerLogMaxFiles` 5), for
    /// the containers of a pod.
    pub const KUBELET: LogLimits = LogLimits {
        max_size: DEFAULT_MAX_SIZE,
        max_files: 5,
    };
}

impl Default for LogLimits {
    fn default() -> LogLimits {
        LogLimits {
            max_size: DEFAULT_MAX_SIZE,
            max_files: 1,
        }
    }
}

/// A `--log-opt` the limits cannot take.
#[derive(Debug, thiserror::Error)]
#[error("--log-opt {opt}: {problem}")]
pub struct LogOptError {
    opt: String,
    problem: &'static str,
}

impl LogLimits {
    /// Applies one `--log-opt KEY=VALUE`: `max-size` (bytes, suffixes k, m, g) or `max-file`.
    pub fn apply(&mut self, opt: &str) -> Result<(), LogOptError> {
        let fail = |problem| LogOptError {
            opt: opt.to_owned(),
            problem,
        };
        let (key, value) = opt
            .split_once('=')
            .ok_or_else(|| fail("expected KEY=VALUE"))?;
        match key {
            "max-size" => {
                let size = parse_size(value).ok_or_else(|| fail("expected a size: 10m, 512k"))?;
                if size < MIN_MAX_SIZE {
                    return Err(fail("the smallest max-size is 64k"));
                }
                self.max_size = size;
            }
            "max-file" => {
                self.max_files = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| fail("expected a number of files from 1 to 100"))?;
            }
            _ => return Err(fail("known options: max-size, max-file")),
        }
        Ok(())
    }
}

/// `10m`, `512k`, `1g`, `4096` (docker's units: powers of 1024, a trailing `b` allowed).
fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, shift) = match lower.char_indices().last()? {
        (i, 'k') => (&lower[..i], 10),
        (i, 'm') => (&lower[..i], 20),
        (i, 'g') => (&lower[..i], 30),
        _ => (lower, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How many bytes of records are gathered before they are written: one write per read of
/// the container's pipe (up to this), not one per line, so that a container writing short
/// lines fast costs a write(2) per 64 KiB.
const BATCH: usize = 64 << 10;

/// The writing side, held by the container's monitor (or its copier). Records are gathered
/// and written whole ([`LogWriter::flush`]): a reader may see the last record of a file
/// unfinished, never two interleaved.
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: OwnedFd,
    file: File,
    /// Bytes in the file, those in `batch` not counted.
    size: u64,
    batch: Vec<u8>,
    limits: LogLimits,
}

impl LogWriter {
    /// Opens (or creates) the log in the state directory `dir`.
    pub(crate) fn open(dir: &Path, limits: LogLimits) -> io::Result<LogWriter> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        let raw = nix::fcntl::open(dir, flags, Mode::empty())?;
        // SAFETY: open returned a new descriptor that nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = open_log(&dir)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            dir,
            file,
            size,
            batch: Vec::with_capacity(BATCH),
            limits,
        })
    }

    /// The descriptors it writes with (its directory and its file), for a process that is
    /// to keep them.
    pub(crate) fn fds(&self) -> [std::os::fd::RawFd; 2] {
        [self.dir.as_raw_fd(), self.file.as_raw_fd()]
    }

    /// Appends one record (`content` without its newline; `partial` when the line goes on
    /// in the next record), rotating first when it would not fit. It is in the file once
    /// [`LogWriter::flush`]ed (or a batch is full).
    pub(crate) fn write(
        &mut self,
        stream: Stream,
        partial: bool,
        content: &[u8],
    ) -> io::Result<()> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = peapod_state::rfc3339_nanos(now.as_secs(), now.subsec_nanos());
        let len = stamp.len() + stream.as_str().len() + 4 + content.len();
        let pending = self.size + self.batch.len() as u64;
        if pending > 0 && pending + len as u64 > self.limits.max_size {
            self.flush()?;
            self.rotate()?;
        }
        self.batch.extend_from_slice(stamp.as_bytes());
        self.batch.push(b' ');
        self.batch.extend_from_slice(stream.as_str().as_bytes());
        self.batch
            .extend_from_slice(if partial { b" P " } else { b" F " });
        self.batch.extend_from_slice(content);
        self.batch.push(b'\n');
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the records gathered, in one write: whole records only.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.batch);
        // Dropped whether written or not: a log that fails is given up by its writer.
        self.size += self.batch.len() as u64;
        self.batch.clear();
        written
    }

    fn rotate(&mut self) -> io::Result<()> {
        let dir = Some(self.dir.as_raw_fd());
        if self.limits.max_files <= 1 {
            // Unlinked rather than truncated: a `logs -f` reading it finishes it first.
            nix::unistd::unlinkat(dir, LOG_FILE, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
        } else {
            for n in (1..self.limits.max_files - 1).rev() {
                let from = format!("{LOG_FILE}.{n}");
                let to = format!("{LOG_FILE}.{}", n + 1);
                match nix::fcntl::renameat(dir, from.as_str(), dir, to.as_str()) {
                    Ok(()) | Err(nix::Error::ENOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            nix::fcntl::renameat(dir, LOG_FILE, dir, format!("{LOG_FILE}.1").as_str())?;
        }
        self.file = open_log(&self.dir)?;
        self.size = 0;
        Ok(())
    }
}

/// Opens `container.log` in `dir` for appending: created 0600, never through a symlink, and
/// only a regular file (`O_NONBLOCK` so that a fifo put in its place fails the open instead
/// of blocking it).
fn open_log(dir: &OwnedFd) -> io::Result<File> {
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_APPEND
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NONBLOCK;
    let raw = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        LOG_FILE,
        flags,
        Mode::from_bits_truncate(0o600),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(raw) };
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other(format!(
            "{LOG_FILE} is not a regular file"
        )));
    }
    Ok(file)
}

/// What `logs` prints.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only the last this many records.
    pub tail: Option<usize>,
    /// Only records stamped at or after this instant (see [`parse_since`]).
    pub since: Option<String>,
    /// Each line preceded by its timestamp.
    pub timestamps: bool,
}

/// The log files in `dir`, oldest first: the rotated ones (`container.log.N` ... `.1`), then
/// `container.log`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<PathBuf> = (1..=100)
        .map(|n| dir.join(format!("{LOG_FILE}.{n}")))
        .take_while(|p| p.exists())
        .collect();
    rotated.reverse();
    rotated.push(dir.join(LOG_FILE));
    rotated
}

/// Opens a log file for reading, never through a symlink.
fn open_for_reading(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes the records of the log in `dir` (a container's state directory, or where its
/// `container.log` was kept) to `out` as the container wrote them.
pub fn print(dir: &Path, query: &LogQuery, out: &mut dyn Write) -> io::Result<()> {
    copy(dir, query, out, None)
}

/// Writes the records of the log in `dir` to `out` as the container wrote them; with
/// `follow`, keeps reading what comes until `done()` says the writer is gone, and the file
/// is drained.
pub(crate) fn copy(
    dir: &Path,
    query: &LogQuery,
    out: &mut dyn Write,
    follow: Option<&mut dyn FnMut() -> bool>,
) -> io::Result<()> {
    let files = files(dir);
    // Where to begin in each file: everything, or from the start of the last `tail` records.
    let mut starts = vec![Some(0u64); files.len()];
    if let Some(mut wanted) = query.tail {
        for (i, path) in files.iter().enumerate().rev() {
            let Ok(file) = open_for_reading(path) else {
                starts[i] = None;
                continue;
            };
            let (start, found) = tail_start(&file, wanted)?;
            starts[i] = Some(start);
            wanted -= found;
            if wanted == 0 {
                starts[..i].iter_mut().for_each(|s| *s = None);
                break;
            }
        }
    }
    let mut printer = Printer {
        query,
        at_line_start: true,
    };
    let last = files.len() - 1;
    let mut current = None;
    for (i, path) in files.iter().enumerate() {
        let Some(start) = starts[i] else { continue };
        let file = match open_for_reading(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(start))?;
        let mut pending = Vec::new();
        printer.drain(&mut reader, &mut pending, out)?;
        if i == last {
            current = Some((reader, pending));
        }
    }
    out.flush()?;
    let Some(done) = follow else { return Ok(()) };
    let (mut reader, mut pending) = match current {
        Some(current) => current,
        None => (BufReader::new(open_for_reading(&files[last])?), Vec::new()),
    };
    loop {
        // Asked before the last read: whatever the writer wrote before it went is read.
        let finished = done();
        let read = printer.drain(&mut reader, &mut pending, out)?;
        out.flush()?;
        if read {
            continue;
        }
        // Rotated: the old file is read to its end (above), then the new one from its start.
        let path = &files[last];
        let rotated = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta.ino() != reader.get_ref().metadata()?.ino(),
            Err(_) => false,
        };
        if rotated {
            if let Ok(file) = open_for_reading(path) {
                reader = BufReader::new(file);
                pending.clear();
                continue;
            }
        }
        if finished {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}

/// Turns records back into the container's output.
struct Printer<'a> {
    query: &'a LogQuery,
    at_line_start: bool,
}

impl Printer<'_> {
    /// Prints every whole record `reader` has now, keeping an unfinished one in `pending`;
    /// whether anything was read.
    fn drain(
        &mut self,
        reader: &mut BufReader<File>,
        pending: &mut Vec<u8>,
        out: &mut dyn Write,
    ) -> io::Result<bool> {
        let mut read = false;
        loop {
            let n = reader.read_until(b'\n', pending)?;
            if n == 0 {
                return Ok(read);
            }
            read = true;
            if pending.last() == Some(&b'\n') {
                self.print(pending, out)?;
                pending.clear();
            }
        }
    }

    fn print(&mut self, line: &[u8], out: &mut dyn Write) -> io::Result<()> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let mut fields = line.splitn(4, |&b| b == b' ');
        let (Some(stamp), Some(_stream), Some(tag), content) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Ok(());
        };
        if let Some(since) = &self.query.since {
            if stamp < since.as_bytes() {
                return Ok(());
            }
        }
        if self.query.timestamps && self.at_line_start {
            out.write_all(stamp)?;
            out.write_all(b" ")?;
        }
        out.write_all(content.unwrap_or_default())?;
        self.at_line_start = tag != b"P";
        if self.at_line_start {
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Where the last `wanted` records of `file` begin, and how many of them it has (fewer
/// when the file has fewer): read backwards a block at a time, never the whole file.
fn tail_start(file: &File, wanted: usize) -> io::Result<(u64, usize)> {
    const BLOCK: u64 = 64 << 10;
    let len = file.metadata()?.len();
    if wanted == 0 {
        return Ok((len, 0));
    }
    let mut file = file;
    let mut end = len;
    let mut block = vec![0u8; BLOCK as usize];
    // Each record ends with a newline: the start of the last `wanted` is just after the
    // newline `wanted + 1` counted from the end (the file's last byte is the first).
    let mut newlines = 0usize;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            if b != b'\n' {
                continue;
            }
            // A last record still being written (no newline yet) counts as none.
            if newlines == wanted {
                return Ok((start + i as u64 + 1, wanted));
            }
            newlines += 1;
        }
        end = start;
    }
    Ok((0, newlines))
}

/// `--since`: an RFC 3339 time (`2026-12-06T14:00:00Z`, fractions allowed), seconds since
/// the epoch (`1733493600`), or a duration before `now` (`10m`, `90s`, `2h`), as docker
/// takes them; as the fixed-width stamp of the log lines, to compare with them as text.
pub fn parse_since(text: &str, now: SystemTime) -> Option<String> {
    let since_epoch = |d: Duration| peapod_state::rfc3339_nanos(d.as_secs(), d.subsec_nanos());
    if let Ok(secs) = text.parse::<u64>() {
        return Some(since_epoch(Duration::from_secs(secs)));
    }
    if let Some(ago) = parse_duration(text) {
        let at = now
            .checked_sub(ago)?
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?;
        return Some(since_epoch(at));
    }
    parse_rfc3339(text).map(since_epoch)
}

/// `90s`, `10m`, `2h`, `1h30m`.
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            's' | 'm' | 'h' => {
                let n: u64 = digits.parse().ok()?;
                digits.clear();
                total += n * match c {
                    's' => 1,
                    'm' => 60,
                    _ => 3600,
                };
            }
            _ => return None,
        }
    }
    digits.is_empty().then_some(Duration::from_secs(total))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC only) as time since the epoch.
fn parse_rfc3339(text: &str) -> Option<Duration> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()?;
    let nanos = match fraction {
        "" => 0,
        f if f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<9}").parse().ok()?
        }
        _ => return None,
    };
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path, query: &LogQuery) -> Vec<u8> {
        let mut out = Vec::new();
        copy(dir, query, &mut out, None).expect("copy");
        out
    }

    #[test]
    fn records_come_back_as_written_with_partial_lines_joined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = LogWriter::open(dir.path(), LogLimits::default()).expect("open");
        log.write(Stream::Stdout, false, b"one").expect("write");
        log.write(Stream::Stderr, true, b"tw\xff").expect("write");
        log.write(Stream::Stderr, false, b"o").expect("write");
        log.write(Stream::Stdout, true, b"no newline")
            .expect("write");
        log.flush().expect("flush");
        assert_eq!(
            read_all(dir.path(), &LogQuery::default()),
            b"one\ntw\xffo\nno newline"
        );
        let text = std::fs::read(dir.path().join(LOG_FILE)).expect("read");
        let first = text.split(|&b| b == b'\n').next().expect("a line");
        assert!(first.ends_with(b" stdout F one"), "{first:?}");
        assert_eq!(first[29], b'Z', "{first:?}");
    }

    #[test]
    fn tail_reads_the_last_records_across_rotated_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = LogLimits {
            max_size: MIN_MAX_SIZE,
            max_files: 3,
        };
        let mut log = LogWriter::open(dir.path(), limits).expect("open");
        let filler = vec![b'x'; 1000];
        for _ in 0..150 {
            log.write(Stream::Stdout, false, &filler).expect("write");
        }
        log.write(Stream::Stdout, false, b"last-but-one")
            .expect("write");
        log.write(Stream::Stdout, false, b"last").expect("write");
        log.flush().expect("flush");
        let tail = |n| {
            let query = LogQuery {
                tail: Some(n),
                ..LogQuery::default()
            };
            read_all(dir.path(), &query)
        };
        assert_eq!(tail(2), b"last-but-one\nlast\n");
        assert_eq!(tail(0), b"");
        // Past the current file's records, into the rotated one.
        let many = tail(100);
        assert_eq!(many.iter().filter(|&&b| b == b'\n').count(), 100);
        let total: u64 = files(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        assert!(total <= 3 * MIN_MAX_SIZE, "{total}");
        assert!(!dir.path().join(format!("{LOG_FILE}.3")).exists());
    }

    #[test]
    fn follow_reads_on_across_a_rotation_until_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = LogLimits {
            max_size: MIN_MAX_SIZE,
            max_files: 1,
        };
        let mut log = LogWriter::open(dir.path(), limits).expect("open");
        log.write(Stream::Stdout, false, b"first").expect("write");
        log.flush().expect("flush");
        let line = vec![b'y'; 1000];
        let mut calls = 0;
        // The writer goes on while the reader follows: enough to unlink the file it reads
        // and begin a new one, then a last line, then it is done.
        let mut done = || {
            calls += 1;
            if calls == 1 {
                for _ in 0..100 {
                    log.write(Stream::Stdout, false, &line).expect("write");
                }
                log.write(Stream::Stderr, false, b"last").expect("write");
                log.flush().expect("flush");
            }
            calls > 1
        };
        let mut out = Vec::new();
        let follow: &mut dyn FnMut() -> bool = &mut done;
        copy(dir.path(), &LogQuery::default(), &mut out, Some(follow)).expect("copy");
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(lines.first().copied(), Some(&b"first"[..]));
        assert_eq!(lines.iter().filter(|l| **l == &line[..]).count(), 100);
        assert_eq!(lines[lines.len() - 2], b"last");
    }

    #[test]
    fn a_symlink_in_place_of_the_log_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join(LOG_FILE)).expect("symlink");
        assert!(LogWriter::open(dir.path(), LogLimits::default()).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn log_opts_and_since() {
        let mut limits = LogLimits::default();
        limits.apply("max-size=1m").expect("max-size");
        limits.apply("max-file=3").expect("max-file");
        assert_eq!(
            limits,
            LogLimits {
                max_size: 1 << 20,
                max_files: 3
            }
        );
        assert!(limits.apply("max-size=1k").is_err());
        assert!(limits.apply("mode=non-blocking").is_err());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            parse_since("10m", now).as_deref(),
            Some("1970-01-01T00:06:40.000000000Z")
        );
        assert_eq!(
            parse_since("2000-02-29T00:00:00.5Z", now).as_deref(),
            Some("2000-02-29T00:00:00.500000000Z")
        );
        assert_eq!(
            parse_since("60", now).as_deref(),
            Some("1970-01-01T00:01:00.000000000Z")
        );
        assert_eq!(parse_since("yesterday", now), None);
    }
}
