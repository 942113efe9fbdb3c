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
        // Not waiting: a command that holds the lock is working on it.
        let Ok(Some(entry)) = store.try_load(&id) else {
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
