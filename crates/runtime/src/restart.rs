//! A `run -d` container started again: by its restart policy (`--restart`, docker's), by
//! `peapod start` once it has exited, or by `peapod restart`. It keeps its id, state
//! directory, log (appended to) and writable layer; only its process (and cgroup) is new.
//!
//! What it was made from is kept in its state directory ([`LAUNCH_FILE`]) when `run -d`
//! makes it: the spec, the bundle, the image and the log's limits, so that neither a changed
//! image name nor a removed directory changes what runs again.
//!
//! The policy is the monitor's: when the container has exited, it asks [`RestartPolicy`]
//! whether to start it again, waits the back-off (docker's: 100 ms, doubled each time, at
//! most a minute, back to 100 ms after a run of 10 s), and starts it again in the same
//! process, counting the restarts in the record. `stop` marks the record first
//! ([`peapod_state::Record::stopped_by_user`]), which the monitor reads under the lock before
//! each start, so that a stopped container stays stopped; `rm -f` removes the entry, which
//! ends the monitor's waiting.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use oci_spec::runtime::Spec;
use peapod_state::{ContainerId, Durability, Record};
use serde::{Deserialize, Serialize};

use crate::create::CreateOptions;
use crate::logfile::LogLimits;
use crate::{Error, Result, Runtime};

/// The file in a `run -d` container's state directory that says how to make it again.
pub(crate) const LAUNCH_FILE: &str = "launch.json";

/// docker's `--restart` policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never started again (the default).
    #[default]
    No,
    /// Started again when it exits with a status other than 0, at most this many times
    /// (`on-failure:N`), else without end.
    OnFailure(Option<u32>),
    /// Started again whatever its status, until `stop` or `rm`.
    Always,
    /// As `always`: docker tells them apart only when its daemon starts, and peapod has none.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<RestartPolicy, String> {
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        match (name, count) {
            ("no", None) => Ok(RestartPolicy::No),
            ("always", None) => Ok(RestartPolicy::Always),
            ("unless-stopped", None) => Ok(RestartPolicy::UnlessStopped),
            ("on-failure", None) => Ok(RestartPolicy::OnFailure(None)),
            ("on-failure", Some(count)) => match count.parse::<u32>() {
                Ok(count) => Ok(RestartPolicy::OnFailure(Some(count))),
                Err(_) => Err(format!(
                    "on-failure:{count}: the count of restarts is a whole number (on-failure:3)"
                )),
            },
            ("no" | "always" | "unless-stopped", Some(_)) => {
                Err(format!("{name} takes no count (only on-failure:N does)"))
            }
            _ => Err(format!(
                "{text:?}: expected no, on-failure[:N], always or unless-stopped"
            )),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure(None) => f.write_str("on-failure"),
            RestartPolicy::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl RestartPolicy {
    /// Whether a container that exited with `code`, started again `restarts` times already,
    /// is started again.
    pub fn restarts(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => {
                code != 0 && !matches!(max, Some(max) if restarts >= max)
            }
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// The policy `record` keeps (none: `no`).
    pub fn of(record: &Record) -> RestartPolicy {
        record
            .restart_policy
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }
}

/// docker's back-off between restarts.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

/// The first delay; each next one is twice the last.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A container that ran this long is back to the first delay.
const RESET_AFTER: Duration = Duration::from_secs(10);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_DELAY }
    }

    /// The delay before the next start of a container that ran for `ran`.
    pub(crate) fn delay(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.next = FIRST_DELAY;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        delay
    }
}

/// How a `run -d` container is made again (see the module doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Launch {
    spec: Spec,
    bundle: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<LaunchImage>,
    #[serde(default)]
    no_new_keyring: bool,
    #[serde(default)]
    hosts: Option<String>,
    #[serde(default)]
    resolv_conf: Option<String>,
    /// The log's limits, for a monitor started anew.
    pub(crate) max_size: u64,
    /// See [`Launch::max_size`].
    pub(crate) max_files: u32,
}

/// The image of a container's root, by its manifest digest in its store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LaunchImage {
    store: PathBuf,
    manifest: String,
    /// Its anonymous volumes' paths (the volumes themselves are kept with its layer).
    #[serde(default)]
    volumes: Vec<PathBuf>,
}

impl Launch {
    /// What `options` and `spec` make, to be kept.
    pub(crate) fn new(
        spec: &Spec,
        bundle: &std::path::Path,
        options: &CreateOptions,
        limits: LogLimits,
    ) -> Launch {
        Launch {
            spec: spec.clone(),
            bundle: bundle.to_owned(),
            image: options.image.as_ref().map(|root| LaunchImage {
                store: root.store.clone(),
                manifest: root.image.manifest_digest.to_string(),
                volumes: root.volumes.clone(),
            }),
            no_new_keyring: options.no_new_keyring,
            hosts: options.etc.hosts.clone(),
            resolv_conf: options.etc.resolv_conf.clone(),
            max_size: limits.max_size,
            max_files: limits.max_files,
        }
    }

    /// The launch of container `id`; an error naming what it is when it has none.
    pub(crate) fn load(rt: &Runtime, id: &ContainerId) -> Result<Launch> {
        let entry = rt.store()?.load(id)?;
        entry
            .read_json(LAUNCH_FILE)?
            .ok_or_else(|| not_restartable(id))
    }

    /// The log's limits.
    pub(crate) fn limits(&self) -> LogLimits {
        LogLimits {
            max_size: self.max_size,
            max_files: self.max_files,
        }
    }

    /// Whether its process has a terminal (`run -dt`).
    pub(crate) fn terminal(&self) -> bool {
        self.spec.process().as_ref().and_then(|p| p.terminal()) == Some(true)
    }

    /// The options it is created with again ([`Launch::recreate`]).
    pub(crate) fn create_options(&self) -> Result<CreateOptions> {
        let image = match &self.image {
            None => None,
            Some(saved) => {
                let store = peapod_image::Store::open(&saved.store).map_err(runtime)?;
                let image = store
                    .resolve(&saved.manifest)
                    .map_err(runtime)?
                    .ok_or_else(|| {
                        Error::runtime(anyhow!(
                            "its image {} is no longer in the store",
                            saved.manifest
                        ))
                    })?;
                Some(crate::image::ImageRoot {
                    store: saved.store.clone(),
                    image,
                    volumes: saved.volumes.clone(),
                })
            }
        };
        Ok(CreateOptions {
            fifo: true,
            monitored: true,
            image,
            no_new_keyring: self.no_new_keyring,
            etc: crate::EtcFiles {
                hosts: self.hosts.clone(),
                resolv_conf: self.resolv_conf.clone(),
            },
            ..CreateOptions::default()
        })
    }

    /// Makes container `id` again, its process at the exec fifo; `check` as
    /// [`crate::create::recreate_recorded`] takes it.
    pub(crate) fn recreate(
        &self,
        rt: &Runtime,
        id: &str,
        options: &CreateOptions,
        check: impl FnMut(&mut Record) -> Result<()>,
    ) -> Result<peapod_container::Created> {
        crate::create::recreate_recorded(rt, id, &self.spec, &self.bundle, options, check)
    }
}

fn runtime(e: impl Into<anyhow::Error>) -> Error {
    Error::runtime(e.into())
}

fn not_restartable(id: &ContainerId) -> Error {
    Error::runtime(anyhow!(
        "container {id} cannot be started again: only a `run -d` container (from an image or \
         --rootfs) keeps what it was made from"
    ))
}

/// Keeps what container `id` was made from, and its policy in its record: in `run -d`, once
/// it is created.
pub(crate) fn save_launch(
    rt: &Runtime,
    id: &str,
    launch: &Launch,
    policy: RestartPolicy,
) -> Result<()> {
    let entry = rt.store()?.load(&id.parse()?)?;
    entry.save_json(LAUNCH_FILE, launch, Durability::Synced)?;
    if policy != RestartPolicy::No {
        let mut record = crate::state::recorded(&entry)?;
        record.restart_policy = Some(policy.to_string());
        entry.save(&record, Durability::Synced)?;
    }
    Ok(())
}

/// In the monitor, container `id` having exited with `code` after running for `ran`:
/// whether its policy starts it again, and after how long. Marks the record `restarting`
/// when it does.
pub(crate) fn next_start(
    rt: &Runtime,
    id: &ContainerId,
    code: i32,
    ran: Duration,
    backoff: &mut Backoff,
) -> Option<Duration> {
    let entry = rt.store().ok()?.load(id).ok()?;
    let mut record = entry.record().ok()??;
    let policy = RestartPolicy::of(&record);
    if record.stopped_by_user || !policy.restarts(code, record.restart_count) {
        return None;
    }
    record.restarting = true;
    entry.save(&record, Durability::Synced).ok()?;
    Some(backoff.delay(ran))
}

/// How often the monitor looks at the record while it waits to start the container again.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Waits `delay` in the monitor before container `id` is started again; false when it
/// must not be any more: `stop` marked it, or `rm` removed it.
pub(crate) fn wait_to_restart(rt: &Runtime, id: &ContainerId, delay: Duration) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let deadline = Instant::now() + delay;
    // The record is read again only when it was saved again (each save renames a new file
    // into place: another inode, time or size): a container that fails every minute costs a
    // `stat` a look, not a parse.
    let file = rt.root.join(id.as_str()).join("state.json");
    let mut seen = None;
    loop {
        let Ok(meta) = std::fs::symlink_metadata(&file) else {
            return false;
        };
        let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len());
        if seen != Some(stamp) {
            seen = Some(stamp);
            let wanted = rt
                .snapshot(id)
                .is_ok_and(|(record, _)| !record.stopped_by_user);
            if !wanted {
                return false;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(WATCH_INTERVAL));
    }
}

/// The check of a start by the restart policy, under the entry's lock: refused once `stop`
/// has marked it; counted.
pub(crate) fn by_policy(record: &mut Record) -> Result<()> {
    if record.stopped_by_user {
        return Err(Error::runtime(anyhow!(
            "container {} was stopped",
            record.id
        )));
    }
    record.restart_count += 1;
    Ok(())
}

/// The check of a start by a person (`start`, `restart`): the policy applies again, counted
/// from 0, as docker's `start` does.
pub(crate) fn by_hand(record: &mut Record) -> Result<()> {
    record.stopped_by_user = false;
    record.restart_count = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_docker_writes_them() {
        for text in [
            "no",
            "always",
            "unless-stopped",
            "on-failure",
            "on-failure:3",
        ] {
            let policy: RestartPolicy = text.parse().expect(text);
            assert_eq!(policy.to_string(), text);
        }
        for bad in ["sometimes", "on-failure:x", "always:2", "on-failure:-1", ""] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn on_failure_counts_and_ignores_success() {
        let policy = RestartPolicy::OnFailure(Some(3));
        assert!(policy.restarts(1, 0));
        assert!(policy.restarts(1, 2));
        assert!(!policy.restarts(1, 3));
        assert!(!policy.restarts(0, 0));
        assert!(RestartPolicy::OnFailure(None).restarts(137, 1000));
        assert!(RestartPolicy::Always.restarts(0, 1000));
        assert!(!RestartPolicy::No.restarts(1, 0));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let mut backoff = Backoff::new();
        let short = Duration::from_millis(10);
        let delays: Vec<u128> = (0..4).map(|_| backoff.delay(short).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        for _ in 0..20 {
            backoff.delay(short);
        }
        assert_eq!(backoff.delay(short), MAX_DELAY);
        assert_eq!(backoff.delay(Duration::from_secs(10)), FIRST_DELAY);
        assert_eq!(backoff.delay(short), FIRST_DELAY * 2);
    }
}
