//! Running one plugin binary as the CNI specification says: the operation and the
//! attachment in `CNI_*` variables, the configuration on stdin, the result (or a JSON error)
//! on stdout, all within a deadline.
//!
//! No thread is started: peapod clones container processes without an exec, which a second
//! thread would make unsafe. The plugin's stdout and stderr are read with `poll` until both
//! close or the deadline passes; then the plugin is killed.

use std::io::Write as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// One call of a plugin.
#[derive(Debug)]
pub(crate) struct Invocation<'a> {
    /// The plugin binary.
    pub binary: &'a Path,
    /// `ADD`, `CHECK` or `DEL`.
    pub command: &'static str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS` (empty for a DEL whose namespace is gone).
    pub netns: Option<&'a Path>,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_ARGS`.
    pub args: &'a str,
    /// `CNI_PATH`: the plugin directories, for a plugin that runs another (IPAM).
    pub path: &'a [PathBuf],
    /// The configuration, on stdin.
    pub stdin: &'a [u8],
    /// How long it may take.
    pub timeout: Duration,
}

/// What a plugin that ran to its end gave.
#[derive(Debug)]
pub(crate) struct Output {
    /// Whether it exited with status 0.
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a plugin gave no output.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It could not be started or read.
    Io(std::io::Error),
    /// It ran past its deadline and was killed.
    Timeout,
}

/// Runs the plugin and collects its output.
pub(crate) fn invoke(call: &Invocation<'_>) -> Result<Output, Failure> {
    let path =
        std::env::join_paths(call.path).map_err(|e| Failure::Io(std::io::Error::other(e)))?;
    let netns = call
        .netns
        .map(|p| p.as_os_str().to_owned())
        .unwrap_or_default();
    let mut child = Command::new(call.binary)
        // Only what the specification names, plus PATH for plugins that run iptables.
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Failure::Io)?;
    let deadline = Instant::now() + call.timeout;
    let collected = collect(&mut child, call.stdin, deadline);
    match collected {
        Ok((stdout, stderr)) => {
            let status = wait_until(&mut child, deadline).map_err(Failure::Io)?;
            match status {
                Some(status) => Ok(Output {
                    success: status.success(),
                    stdout,
                    stderr,
                }),
                None => {
                    kill(&mut child);
                    Err(Failure::Timeout)
                }
            }
        }
        Err(e) => {
            kill(&mut child);
            Err(e)
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes the configuration (far below a pipe's capacity, so it cannot block), closes
/// stdin, then reads stdout and stderr until both end or the deadline passes.
fn collect(
    child: &mut Child,
    input: &[u8],
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading closes the pipe: its status says why.
        let _ = stdin.write_all(input);
    }
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Failure::Io(std::io::Error::other("no pipes to the plugin")));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Timeout);
        }
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = Vec::new();
        if out_open {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Failure::Io(e.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let mut i = 0;
        if out_open {
            if ready[i] {
                out_open = read_some(&mut out, &mut stdout)?;
            }
            i += 1;
        }
        if err_open && ready[i] {
            err_open = read_some(&mut err, &mut stderr)?;
        }
    }
    Ok((stdout, stderr))
}

/// Reads what is there; false at end of file.
fn read_some(from: &mut impl std::io::Read, into: &mut Vec<u8>) -> Result<bool, Failure> {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// Waits for the plugin to exit, at most until `deadline`.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        // Both pipes are closed: the plugin is exiting; its status follows at once.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A plugin's error as one line: `code N: msg (details)` from its JSON error result, else
/// the last line it wrote to stderr, else its exit.
pub(crate) fn error_line(output: &Output) -> String {
    // The error result's wire form, read here rather than through rscni-types, whose
    // `Error` replaces the message of a well-known code with its own words.
    #[derive(serde::Deserialize)]
    struct ErrorResult {
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(error) = serde_json::from_slice::<ErrorResult>(&output.stdout) {
        let (msg, details) = (error.msg.trim(), error.details.trim());
        return match details.is_empty() || details == msg {
            true => format!("code {}: {msg}", error.code),
            false => format!("code {}: {msg}: {details}", error.code),
        }
        .replace('\n', " ");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| "it exited with an error and said nothing".to_owned())
}
