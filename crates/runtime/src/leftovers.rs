//! What a killed `peapod` leaves behind, reaped by the next command: the record and cgroup
//! of a foreground container whose `peapod run` died of SIGKILL (its container died with it,
//! through `PR_SET_PDEATHSIG`, but nobody removed the rest), the container of a `run -d`
//! whose monitor was killed, and the half-made entry of either killed during `create`.

use crate::Runtime;

/// Deletes every container whose owning `peapod` process is gone (see
/// `peapod_state::Record::owner`). Never fails the command that calls it: what cannot be
/// removed now is said in a warning and tried again by the next command.
pub(crate) fn reap(rt: &Runtime) {
    let Ok(store) = rt.store() else { return };
    let Ok(abandoned) = store.abandoned() else {
        return;
    };
    for id in abandoned {
        let Some(entry) = lock_abandoned(&store, &id) else {
            continue;
        };
        let owner = match entry.record() {
            Ok(Some(record)) if record.is_abandoned() => record.owner,
            // Owned, unlocked and without a record: its owner died while creating it.
            Ok(None) => None,
            _ => continue,
        };
        match crate::delete::delete_entry(entry, true) {
            Ok(()) => tracing::info!(
                "removed container {id}, left behind by peapod process {} that is gone",
                owner.map_or(0, |o| o.pid)
            ),
            Err(e) => tracing::warn!("cannot remove the leftovers of container {id}: {e:?}"),
        }
    }
}

/// How long [`lock_abandoned`] waits for the lock of a container whose owner is gone.
const ORPHAN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Locks the entry of a container found abandoned, without waiting on a command at work on
/// it. Its lock may still be held for a moment by what its killed owner forked (the
/// container's process before it execs, a hook before it execs), which dies with it: that is
/// waited for, a little; a lock held longer is a live command's, and the entry is left to it.
fn lock_abandoned(
    store: &peapod_state::Store,
    id: &peapod_state::ContainerId,
) -> Option<peapod_state::Entry> {
    // Owned without a record: its owner may be at work on it still; not waited for.
    let recorded = store.root().join(id.as_str()).join("state.json").exists();
    let wait = if recorded {
        ORPHAN_LOCK_WAIT
    } else {
        std::time::Duration::ZERO
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        match store.try_load(id) {
            Ok(Some(entry)) => return Some(entry),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => return None,
        }
    }
}

/// The variable that stops `peapod` at a named point of its work, for the crash tests: when
/// it names `point`, [`failpoint`] says `failpoint POINT` on stderr and waits there until the
/// process is killed (or two minutes have passed: then it exits). A test thus kills peapod exactly where it means to, and checks that
/// the next command reaps what was made so far. Documented in ARCHITECTURE.md ("Crashes").
pub const FAILPOINT_VAR: &str = "PEAPOD_FAILPOINT";

/// With [`FAILPOINT_VAR`], where the process that stands at the failpoint writes its pid
/// (a `run -d` monitor's stderr is its container's log, which the test does not read).
pub const FAILPOINT_PID_VAR: &str = "PEAPOD_FAILPOINT_PID_FILE";

/// Waits (at most two minutes) at `point` when [`FAILPOINT_VAR`] names it (see there); else
/// nothing.
pub fn failpoint(point: &str) {
    match std::env::var_os(FAILPOINT_VAR) {
        Some(v) if v == point => {}
        _ => return,
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "failpoint {point}");
    if let Some(file) = std::env::var_os(FAILPOINT_PID_VAR) {
        let file = std::path::PathBuf::from(file);
        let tmp = file.with_extension("tmp");
        let _ = std::fs::write(&tmp, std::process::id().to_string())
            .and_then(|()| std::fs::rename(&tmp, &file));
    }
    // Bounded, so that one whose test was itself killed does not stay: the tests kill it
    // within seconds of its standing here.
    let deadline = std::time::Instant::now() + FAILPOINT_WAIT;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        std::thread::park_timeout(left);
    }
    let _ = writeln!(std::io::stderr(), "failpoint {point}: nobody came, exiting");
    std::process::exit(125);
}

/// How long a process waits at its failpoint for the test to kill it.
const FAILPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(120);
