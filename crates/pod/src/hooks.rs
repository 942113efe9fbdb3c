//! Ending a played container as the kubelet does: its `lifecycle.preStop` hook (exec,
//! httpGet or sleep), then its stop signal, then SIGKILL once the grace period
//! (`terminationGracePeriodSeconds`, counted from the hook's start) is over.
//!
//! [`Kill`] is that sequence for one container, polled by the pod's monitor after a failed
//! liveness or startup probe or postStart hook; [`pre_stop_all`] runs the hooks of every
//! running container of a pod for `pod stop` and `pod rm`, which then signal and kill.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use peapod_runtime::Runtime;

use crate::probes::{Attempt, Handler, Outcome, Target};
use crate::{PodEntry, PodPlan, PodRecord};

/// Kubernetes' `terminationGracePeriodSeconds` when a pod gives none.
pub(crate) const DEFAULT_GRACE: u64 = 30;
/// What a container gets after its stop signal however long its preStop hook took (the
/// kubelet's minimum grace period).
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// A container being killed: its preStop hook, its stop signal, SIGKILL at the deadline.
#[derive(Debug)]
pub(crate) struct Kill {
    pid: Pid,
    signal: Signal,
    hook: Option<Attempt>,
    deadline: Instant,
    signalled: bool,
    killed: bool,
}

impl Kill {
    /// Starts killing the container of `target` whose process is `pid` (the monitor's
    /// unreaped child, so the pid cannot be another process's).
    pub(crate) fn start(
        target: &Target<'_>,
        pre_stop: Option<&Handler>,
        pid: Pid,
        signal: Signal,
        grace: Duration,
    ) -> Kill {
        let mut kill = Kill {
            pid,
            signal,
            hook: pre_stop.map(|h| Attempt::start(target, h, grace)),
            deadline: Instant::now() + grace,
            signalled: false,
            killed: false,
        };
        kill.tick();
        kill
    }

    /// Goes on: signal once the hook is over, SIGKILL once the grace period is.
    pub(crate) fn tick(&mut self) {
        if let Some(hook) = &mut self.hook {
            match hook.poll() {
                None => return,
                Some(Outcome::Success) => {}
                Some(Outcome::Failure(why)) => tracing::warn!("preStop hook failed: {why}"),
            }
            self.hook = None;
        }
        let now = Instant::now();
        if !self.signalled {
            self.signalled = true;
            let _ = kill(self.pid, self.signal);
            self.deadline = self.deadline.max(now + MINIMUM_GRACE);
        }
        if !self.killed && now >= self.deadline {
            self.killed = true;
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }
}

/// Runs the preStop hooks of pod `record`'s running played containers, all at once, for at
/// most `grace`; returns what is left of it.
pub(crate) fn pre_stop_all(
    rt: &Runtime,
    entry: &PodEntry,
    record: &PodRecord,
    grace: Duration,
) -> Duration {
    let start = Instant::now();
    let Ok(Some(plan)) = entry.read_json::<PodPlan>(crate::play::PLAN_FILE) else {
        return grace;
    };
    let netns = crate::play::netns_of(record, entry.dir());
    let host = crate::play::default_host(record);
    let mut running: Vec<Attempt> = Vec::new();
    for c in &plan.containers {
        let Some(handler) = &c.health.pre_stop else {
            continue;
        };
        let id = crate::play::container_id(&plan, c);
        if !record.containers.iter().any(|m| m.id == id) || !is_running(rt, &id) {
            continue;
        }
        let target = Target {
            rt,
            id: &id,
            netns: netns.as_deref(),
            host,
        };
        running.push(Attempt::start(&target, handler, grace));
    }
    // Each attempt ends by its deadline at the latest.
    while !running.is_empty() {
        running.retain_mut(|a| match a.poll() {
            None => true,
            Some(Outcome::Success) => false,
            Some(Outcome::Failure(why)) => {
                tracing::warn!("preStop hook failed: {why}");
                false
            }
        });
        if !running.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    grace.saturating_sub(start.elapsed())
}

fn is_running(rt: &Runtime, id: &str) -> bool {
    id.parse()
        .ok()
        .and_then(|id| rt.snapshot(&id).ok())
        .is_some_and(|(_, status)| status == peapod_state::Status::Running)
}
