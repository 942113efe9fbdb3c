//! OCI hooks (config.md, "POSIX-platform Hooks"): programs the runtime runs at points of a
//! container's life, each given the container's state JSON on its standard input.
//!
//! `prestart` and `createRuntime` run in the runtime, `createContainer` in the container
//! process before `pivot_root` (these three while `create` runs; a failure fails it),
//! `startContainer` in the container process just before its entrypoint (a failure stops
//! it), `poststart` and `poststop` in the runtime after `start` and `delete` (a failure is
//! only logged).

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// A hook that failed: the phase, the program and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{phase} hook {path}: {problem}")]
pub struct HookError {
    /// `prestart`, `createRuntime`, ...
    pub phase: String,
    /// The hook's program.
    pub path: String,
    /// What went wrong, with the end of what it wrote.
    pub problem: String,
}

/// Which hooks of a spec run where, and the state they are given.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    hooks: Option<oci_spec::runtime::Hooks>,
    /// The state JSON without `status` and `pid`, which each phase sets.
    state: serde_json::Map<String, serde_json::Value>,
}

impl Hooks {
    /// The hooks of `spec`, to be given `state` (the state JSON of the container: its
    /// `ociVersion`, `id`, `bundle` and `annotations`).
    pub fn new(
        hooks: Option<&oci_spec::runtime::Hooks>,
        state: serde_json::Map<String, serde_json::Value>,
    ) -> Hooks {
        Hooks {
            hooks: hooks.cloned(),
            state,
        }
    }

    fn list(&self, phase: &str) -> &[Hook] {
        let Some(hooks) = &self.hooks else {
            return &[];
        };
        #[allow(deprecated)]
        let list = match phase {
            "prestart" => hooks.prestart(),
            "createRuntime" => hooks.create_runtime(),
            "createContainer" => hooks.create_container(),
            "startContainer" => hooks.start_container(),
            "poststart" => hooks.poststart(),
            "poststop" => hooks.poststop(),
            _ => &None,
        };
        list.as_deref().unwrap_or_default()
    }

    /// Whether `create` must stop before `pivot_root` for hooks.
    pub(crate) fn any_at_create(&self) -> bool {
        ["prestart", "createRuntime", "createContainer"]
            .iter()
            .any(|phase| !self.list(phase).is_empty())
    }

    /// Runs the hooks of `phase` in order, each given the state with `status` and `pid`;
    /// the first failure ends the run.
    pub fn run(&self, phase: &str, status: &str, pid: i32) -> Result<(), HookError> {
        let hooks = self.list(phase);
        if hooks.is_empty() {
            return Ok(());
        }
        let mut state = self.state.clone();
        state.insert("status".into(), status.into());
        state.insert("pid".into(), pid.into());
        let json = serde_json::Value::Object(state).to_string();
        hooks
            .iter()
            .try_for_each(|hook| run_one(hook, phase, json.as_bytes()))
    }
}

/// Checks the hooks of a spec before anything is made: each needs an absolute `path`, and a
/// `timeout`, when given, must be above zero (config.md).
pub(crate) fn check(
    hooks: Option<&oci_spec::runtime::Hooks>,
) -> Result<(), crate::config::ConfigError> {
    let Some(hooks) = hooks else {
        return Ok(());
    };
    #[allow(deprecated)]
    let phases = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (phase, list) in phases {
        for (i, hook) in list.iter().flatten().enumerate() {
            if !hook.path().is_absolute() {
                return Err(crate::config::bad(
                    format!("hooks.{phase}[{i}].path"),
                    "must be an absolute path",
                ));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(crate::config::bad(
                    format!("hooks.{phase}[{i}].timeout"),
                    "must be above zero",
                ));
            }
        }
    }
    Ok(())
}

/// Runs one hook: its own argv (`args[0]` as argv[0]) and environment only, `state` on
/// stdin, its output kept for the error, killed after its `timeout`.
fn run_one(hook: &Hook, phase: &str, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let fail = |problem: String| HookError {
        phase: phase.to_owned(),
        path: path.clone(),
        problem,
    };
    // In-memory files, not pipes: nothing to deadlock on, no SIGPIPE, no thread to drain
    // them, and no file system needed (the container's root may be read-only).
    let mut stdin = memfile(c"hook-state").map_err(|e| fail(format!("memfd: {e}")))?;
    stdin
        .write_all(state)
        .and_then(|()| stdin.rewind())
        .map_err(|e| fail(format!("cannot write its input: {e}")))?;
    let mut output = memfile(c"hook-output").map_err(|e| fail(format!("memfd: {e}")))?;
    let output_for_stderr = output
        .try_clone()
        .map_err(|e| fail(format!("memfd: {e}")))?;
    let mut cmd = Command::new(hook.path());
    if let Some((argv0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((key, value)) = kv.split_once('=') {
            cmd.env(key, value);
        }
    }
    let mut child = cmd
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(
            output_for_stderr
                .try_clone()
                .map_err(|e| fail(e.to_string()))?,
        ))
        .stderr(Stdio::from(output_for_stderr))
        // Its own process group, so that a timeout ends what it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let timeout = hook
        .timeout()
        .map(|s| Duration::from_secs(s.unsigned_abs()));
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
        if timeout.is_some_and(|t| started.elapsed() > t) {
            if let Ok(pgid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                timeout.map_or(0, |t| t.as_secs())
            )));
        }
        // Hooks are short as a rule: look again soon, then less and less often.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    let _ = output.rewind();
    let _ = output.read_to_string(&mut said);
    let last = said.lines().rev().find(|l| !l.trim().is_empty());
    Err(fail(match last {
        Some(line) => format!("{status}: {}", line.trim()),
        None => status.to_string(),
    }))
}

fn memfile(name: &std::ffi::CStr) -> nix::Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC).map(std::fs::File::from)
}
