//! The init's main loop: run one command, forward signals, reap, exit with
//! the command's status. Also pause mode, which runs no command at all.

use crate::argv::CStrArray;
use crate::diag::Line;
use crate::error::Error;
use crate::options::Options;
use crate::reaper::{reap_zombies, ChildStatus};
use crate::signals::{self, SavedSignals, Signal};
use crate::spawn::spawn;
use crate::sys::{self, errno};

/// Runs `command` with environment `env` under the init and returns the
/// exit status the init should exit with: the command's exit code, 128+N if
/// it was killed by signal N, and 0 for statuses listed in `opts.remap`.
///
/// Every signal the init receives (other than `SIGCHLD`) is forwarded to the
/// command, or to its process group with `opts.group`; every exited child
/// is reaped. The function returns as soon as the command itself has exited
/// (after the optional `kill_group_grace_ms` clean-up); remaining
/// descendants are killed by the kernel when a PID 1 exits, or are
/// re-parented when the init is only a subreaper.
pub fn run(opts: &Options, command: CStrArray<'_>, env: CStrArray<'_>) -> Result<u8, Error> {
    let saved = prepare(opts)?;
    let child = spawn(command, env, &saved)?;
    if opts.verbosity > 0 {
        let mut line = Line::new();
        line.push("peapod-init: started pid ")
            .num(i64::from(child))
            .stderr();
    }
    let mut status = None;
    while status.is_none() {
        match signals::wait(None)? {
            Some(Signal::CHLD) | None => {}
            Some(sig) => {
                if opts.verbosity > 0 {
                    let mut line = Line::new();
                    line.push("peapod-init: forwarding SIG")
                        .push(sig.name().unwrap_or("RT"))
                        .stderr();
                }
                signals::forward(sig, child as i32, opts.group)?;
            }
        }
        // Reap after every wake-up, not only on SIGCHLD: several exits can
        // be folded into a single pending SIGCHLD.
        reap(opts, |pid, st| {
            if pid == child {
                status = Some(st);
            }
        })?;
    }
    if let Some(grace) = opts.kill_group_grace_ms {
        kill_group(opts, child as i32, grace)?;
    }
    let code = status.map_or(0, ChildStatus::exit_code);
    if opts.verbosity > 0 {
        let mut line = Line::new();
        line.push("peapod-init: child exited with status ")
            .num(i64::from(code))
            .stderr();
    }
    Ok(if opts.remap.contains(code) { 0 } else { code })
}

/// Pause mode: runs no command, reaps whatever gets re-parented to the
/// init, and returns 0 on `SIGTERM` or `SIGINT` (the Kubernetes "pause"
/// container). Works in `/` so that it holds no other directory busy.
pub fn pause(opts: &Options) -> Result<u8, Error> {
    sys::chdir(c"/").map_err(|e| Error::new("changing directory to /", e))?;
    prepare(opts)?;
    loop {
        match signals::wait(None)? {
            Some(Signal::TERM | Signal::INT) => return Ok(0),
            _ => {
                reap(opts, |_, _| {})?;
            }
        }
    }
}

/// Watch mode (`--watch PID`): forwards every signal this process gets to its child `pid`
/// until that child has exited, and returns without reaping it, so that the program the
/// caller execs next (still its parent) collects the status. Other children are left alone.
pub fn watch(pid: i32) -> Result<(), Error> {
    SavedSignals::block()?;
    loop {
        // Checked before every wait: the child may have exited before the signals were
        // blocked, and its SIGCHLD may have been taken by whoever exec'd us.
        if sys::has_exited(pid).map_err(|e| Error::new("watching the child", e))? {
            return Ok(());
        }
        match signals::wait(None)? {
            Some(Signal::CHLD) | None => {}
            Some(sig) => signals::forward(sig, pid, false)?,
        }
    }
}

/// Reaps all exited children, reporting orphans when asked to.
fn reap(opts: &Options, mut on_child: impl FnMut(u32, ChildStatus)) -> Result<usize, Error> {
    reap_zombies(|pid, st| {
        if opts.warn_on_reap || opts.verbosity > 1 {
            let mut line = Line::new();
            line.push("peapod-init: reaped pid ")
                .num(i64::from(pid))
                .push(" status ")
                .num(i64::from(st.exit_code()));
            line.stderr();
        }
        on_child(pid, st);
    })
}

/// The process-wide set-up shared by both modes: reaping responsibility,
/// parent-death signal, signal mask.
fn prepare(opts: &Options) -> Result<SavedSignals, Error> {
    if sys::getpid() != 1 {
        // Outside PID 1, orphans would go to whatever reaper is above us and
        // we could not collect them; becoming a subreaper makes them ours.
        match sys::set_child_subreaper() {
            Ok(()) => {}
            Err(e) if opts.require_subreaper => {
                return Err(Error::new("registering as a child subreaper", e));
            }
            Err(_) => {
                let mut line = Line::new();
                line.push("peapod-init: warning: not PID 1 and not a child subreaper; orphans will not be reaped");
                line.stderr();
            }
        }
    }
    if let Some(sig) = opts.parent_death_signal {
        sys::set_parent_death_signal(sig.as_raw())
            .map_err(|e| Error::new("setting the parent death signal", e))?;
    }
    SavedSignals::block()
}

/// How long to wait for the process group to disappear after SIGKILL.
/// SIGKILL cannot be ignored, but `kill` returns before the targets have
/// died, and a process stuck in uninterruptible sleep dies only when the
/// kernel lets it; the bound keeps the init from hanging on such a process.
const AFTER_SIGKILL_MS: u64 = 2000;

/// Ends what is left of the child's process group: SIGTERM, up to
/// `grace_ms` for it to exit, then SIGKILL, reaping all the while so that
/// the members (re-parented to the init) do not outlive it as zombies.
fn kill_group(opts: &Options, pgid: i32, grace_ms: u64) -> Result<(), Error> {
    if sys::kill(-pgid, Signal::TERM.as_raw()) == Err(errno::ESRCH) {
        return Ok(());
    }
    if wait_for_group(opts, pgid, grace_ms)? {
        return Ok(());
    }
    match sys::kill(-pgid, Signal::KILL.as_raw()) {
        Ok(()) | Err(errno::ESRCH) => {}
        Err(e) => return Err(Error::new("killing the child's process group", e)),
    }
    wait_for_group(opts, pgid, AFTER_SIGKILL_MS).map(drop)
}

/// Reaps until process group `pgid` is empty or `timeout_ms` has passed;
/// returns whether the group is gone.
fn wait_for_group(opts: &Options, pgid: i32, timeout_ms: u64) -> Result<bool, Error> {
    let deadline = sys::monotonic_ms().saturating_add(timeout_ms);
    loop {
        reap(opts, |_, _| {})?;
        // Signal 0 only checks whether any member is left; unreaped zombies
        // count as members, which is why this follows the reaping.
        if sys::kill(-pgid, 0) == Err(errno::ESRCH) {
            return Ok(true);
        }
        let now = sys::monotonic_ms();
        if now >= deadline {
            return Ok(false);
        }
        // Wake up on SIGCHLD, or at the latest every 100 ms: members that are
        // not (yet) our children do not send us SIGCHLD when they exit.
        let _ = signals::wait(Some((deadline - now).min(100)))?;
    }
}
