//! Kubernetes probes of a played pod's containers (`livenessProbe`, `readinessProbe`,
//! `startupProbe`), run by the pod's monitor as the kubelet's prober does.
//!
//! A probe's action ([`Handler`]) is an [`Attempt`]: `exec` is a process started in the
//! container through the runtime's exec (a child of the monitor, which reaps it); `httpGet`
//! and `tcpSocket` connect from inside the pod's network namespace, over a socket a
//! short-lived thread makes there (the monitor itself never leaves the host's namespaces, and
//! a pod without a network is reached all the same). Every attempt is non-blocking and polled
//! from the monitor's one loop, with a deadline: no thread or process outlives it.
//!
//! The semantics are the kubelet's: a probe runs every `periodSeconds` from
//! `initialDelaySeconds` after the container started, an attempt slower than `timeoutSeconds`
//! fails, a result counts once it was seen `successThreshold` (`failureThreshold`) times in a
//! row; until the startup probe succeeds no other probe runs, and once it has it runs no more;
//! a failed liveness (or startup) probe has the container killed (see `hooks.rs`) and
//! restarted as `restartPolicy` says; readiness only marks the container Ready.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use peapod_runtime::Runtime;
use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::manifest::{bad, ManifestError};

/// What a probe or a hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handler {
    /// `exec.command`, run in the container; exit status 0 is success.
    Exec(Vec<String>),
    /// `httpGet`: a GET over HTTP/1.1; a status from 200 to 399 is success.
    Http {
        /// `host`; the pod's IP (else 127.0.0.1) when absent.
        host: Option<IpAddr>,
        /// `port`, a name resolved against the container's ports.
        port: u16,
        /// `path`.
        path: String,
        /// `httpHeaders`.
        headers: Vec<(String, String)>,
    },
    /// `tcpSocket`: success when a connection is made.
    Tcp {
        /// `host`; the pod's IP (else 127.0.0.1) when absent.
        host: Option<IpAddr>,
        /// `port`.
        port: u16,
    },
    /// `sleep.seconds` (hooks only).
    Sleep(u64),
}

/// One probe, with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// What it runs.
    pub handler: Handler,
    /// `initialDelaySeconds` (0).
    pub initial_delay: u64,
    /// `periodSeconds` (10).
    pub period: u64,
    /// `timeoutSeconds` (1).
    pub timeout: u64,
    /// `successThreshold` (1).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` of a liveness or startup probe: the grace of the kill
    /// it causes, instead of the pod's.
    pub grace_seconds: Option<u64>,
}

/// A container's probes and lifecycle hooks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `livenessProbe`.
    pub liveness: Option<Probe>,
    /// `readinessProbe`.
    pub readiness: Option<Probe>,
    /// `startupProbe`.
    pub startup: Option<Probe>,
    /// `lifecycle.postStart`.
    pub post_start: Option<Handler>,
    /// `lifecycle.preStop`.
    pub pre_stop: Option<Handler>,
}

impl Health {
    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        *self == Health::default()
    }
}

/// What the monitor last recorded of a played container (in `pod.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHealth {
    /// Its startup probe succeeded (or it has none) and its postStart hook ran.
    pub started: bool,
    /// It is ready: started, and its readiness probe succeeds (or it has none).
    pub ready: bool,
    /// The last failure of a probe or hook, as the kubelet words it.
    pub last_failure: Option<String>,
}

/// The annotation that shortens the restart back-off's first step (the kubelet's 10 s), as
/// a duration (`100ms`, `2s`): for tests and impatient people.
pub const BACKOFF_ANNOTATION: &str = "peapod.io/restart-backoff-base";

/// `metadata.annotations[BACKOFF_ANNOTATION]`, from the fields of `metadata` that the
/// manifest's checker does not know.
pub(crate) fn restart_backoff(metadata: &BTreeMapExtra) -> Result<Option<Duration>, ManifestError> {
    let Some(value) = metadata
        .get("annotations")
        .and_then(|a| a.get(BACKOFF_ANNOTATION))
    else {
        return Ok(None);
    };
    let at = format!("metadata.annotations.{BACKOFF_ANNOTATION}");
    let text = value.as_str().unwrap_or_default();
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => (text.strip_suffix('s').unwrap_or_default(), 1000),
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_millis(n.saturating_mul(unit)))),
        _ => Err(bad(
            at,
            format!("{value:?}: expected a duration such as 100ms or 2s"),
        )),
    }
}

type BTreeMapExtra = std::collections::BTreeMap<String, Value>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProbe {
    #[serde(flatten)]
    handler: RawHandler,
    initial_delay_seconds: Option<i64>,
    period_seconds: Option<i64>,
    timeout_seconds: Option<i64>,
    success_threshold: Option<i64>,
    failure_threshold: Option<i64>,
    termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHandler {
    exec: Option<RawExec>,
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcp>,
    grpc: Option<Value>,
    sleep: Option<RawSleep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    #[serde(default)]
    command: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHttpGet {
    path: Option<String>,
    port: Option<Value>,
    host: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    http_headers: Vec<RawHeader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    port: Option<Value>,
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSleep {
    seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLifecycle {
    post_start: Option<Value>,
    pre_stop: Option<Value>,
}

/// A value of the manifest as `T`, errors naming the field below `at`.
fn typed<T: serde::de::DeserializeOwned>(at: &str, value: Value) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." => at.to_owned(),
            path => format!("{at}.{path}"),
        };
        bad(field, e.into_inner().to_string())
    })
}

/// The probes and hooks of the container at `at` (`spec.containers[0]`), taken out of its
/// unknown fields `extra`; `ports` are its `ports[]` (name, containerPort), for ports given
/// by name.
pub(crate) fn parse(
    at: &str,
    extra: &mut BTreeMapExtra,
    ports: &[(Option<String>, Option<i64>)],
) -> Result<Health, ManifestError> {
    let mut health = Health::default();
    for (key, kind) in [
        ("livenessProbe", Kind::Liveness),
        ("readinessProbe", Kind::Readiness),
        ("startupProbe", Kind::Startup),
    ] {
        let Some(value) = extra.remove(key) else {
            continue;
        };
        let at = format!("{at}.{key}");
        let probe = probe(&at, typed(&at, value)?, kind, ports)?;
        match kind {
            Kind::Liveness => health.liveness = Some(probe),
            Kind::Readiness => health.readiness = Some(probe),
            Kind::Startup => health.startup = Some(probe),
        }
    }
    if let Some(value) = extra.remove("lifecycle") {
        let at = format!("{at}.lifecycle");
        let raw: RawLifecycle = typed(&at, value)?;
        for (key, value, slot) in [
            ("postStart", raw.post_start, &mut health.post_start),
            ("preStop", raw.pre_stop, &mut health.pre_stop),
        ] {
            if let Some(value) = value {
                let at = format!("{at}.{key}");
                let raw: RawHandler = typed(&at, value)?;
                *slot = Some(handler(&at, raw, true, ports)?);
            }
        }
    }
    if at.starts_with("spec.initContainers") && !health.is_empty() {
        return Err(bad(
            at,
            "probes and lifecycle hooks must not be set for init containers (as in Kubernetes)",
        ));
    }
    Ok(health)
}

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

fn probe(
    at: &str,
    raw: RawProbe,
    kind: Kind,
    ports: &[(Option<String>, Option<i64>)],
) -> Result<Probe, ManifestError> {
    let number = |field: &str, value: Option<i64>, default: i64, min: i64| {
        let value = value.unwrap_or(default);
        match value >= min {
            true => Ok(value.unsigned_abs()),
            false => Err(bad(
                format!("{at}.{field}"),
                format!("{value}: must be at least {min}"),
            )),
        }
    };
    let success_threshold = number("successThreshold", raw.success_threshold, 1, 1)?;
    if kind != Kind::Readiness && success_threshold != 1 {
        return Err(bad(
            format!("{at}.successThreshold"),
            "must be 1 for liveness and startup probes",
        ));
    }
    let grace_seconds = match raw.termination_grace_period_seconds {
        Some(_) if kind == Kind::Readiness => {
            return Err(bad(
                format!("{at}.terminationGracePeriodSeconds"),
                "must not be set for readiness probes",
            ))
        }
        Some(v) => Some(number("terminationGracePeriodSeconds", Some(v), 1, 1)?),
        None => None,
    };
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(Probe {
        handler: handler(at, raw.handler, false, ports)?,
        initial_delay: number("initialDelaySeconds", raw.initial_delay_seconds, 0, 0)?,
        period: number("periodSeconds", raw.period_seconds, 10, 1)?,
        timeout: number("timeoutSeconds", raw.timeout_seconds, 1, 1)?,
        success_threshold: to_u32(success_threshold),
        failure_threshold: to_u32(number("failureThreshold", raw.failure_threshold, 3, 1)?),
        grace_seconds,
    })
}

/// One handler of a probe, or of a hook (`hook`: `sleep` allowed, `tcpSocket` not, as in
/// Kubernetes).
fn handler(
    at: &str,
    raw: RawHandler,
    hook: bool,
    ports: &[(Option<String>, Option<i64>)],
) -> Result<Handler, ManifestError> {
    let given = [
        raw.exec.is_some(),
        raw.http_get.is_some(),
        raw.tcp_socket.is_some(),
        raw.grpc.is_some(),
        raw.sleep.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        let kinds = match hook {
            true => "exec, httpGet or sleep",
            false => "exec, httpGet or tcpSocket",
        };
        return Err(bad(at, format!("give exactly one of {kinds}")));
    }
    if raw.grpc.is_some() {
        return Err(bad(
            format!("{at}.grpc"),
            "not supported: peapod has no gRPC client; give exec, httpGet or tcpSocket",
        ));
    }
    if let Some(exec) = raw.exec {
        if exec.command.is_empty() {
            return Err(bad(format!("{at}.exec.command"), "missing"));
        }
        return Ok(Handler::Exec(exec.command));
    }
    if let Some(http) = raw.http_get {
        let at = format!("{at}.httpGet");
        match http.scheme.as_deref() {
            None | Some("HTTP") => {}
            Some("HTTPS") => {
                return Err(bad(
                    format!("{at}.scheme"),
                    "HTTPS is not supported (peapod links no TLS client): give HTTP, or a tcpSocket or exec probe",
                ))
            }
            Some(other) => return Err(bad(format!("{at}.scheme"), format!("{other:?}: expected HTTP"))),
        }
        let path = http.path.unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                format!("{at}.path"),
                format!("{path:?} is not an absolute URL path"),
            ));
        }
        let mut headers = Vec::new();
        for (i, h) in http.http_headers.into_iter().enumerate() {
            let name = h.name.filter(|n| is_token(n)).ok_or_else(|| {
                bad(
                    format!("{at}.httpHeaders[{i}].name"),
                    "missing or not a header name",
                )
            })?;
            let value = h.value.unwrap_or_default();
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad(
                    format!("{at}.httpHeaders[{i}].value"),
                    "has control characters",
                ));
            }
            headers.push((name, value));
        }
        return Ok(Handler::Http {
            host: host(&at, http.host)?,
            port: port(&at, http.port, ports)?,
            path,
            headers,
        });
    }
    if let Some(tcp) = raw.tcp_socket {
        let at = format!("{at}.tcpSocket");
        if hook {
            return Err(bad(
                at,
                "not supported in a lifecycle hook (as in Kubernetes): give exec, httpGet or sleep",
            ));
        }
        return Ok(Handler::Tcp {
            host: host(&at, tcp.host)?,
            port: port(&at, tcp.port, ports)?,
        });
    }
    match raw.sleep {
        Some(sleep) if hook => match sleep.seconds {
            Some(s) if s >= 0 => Ok(Handler::Sleep(s.unsigned_abs())),
            _ => Err(bad(format!("{at}.sleep.seconds"), "missing or negative")),
        },
        _ => Err(bad(
            format!("{at}.sleep"),
            "only lifecycle hooks sleep: give exec, httpGet or tcpSocket",
        )),
    }
}

/// An HTTP token (a header name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `host`: an IP address (or `localhost`); names are not resolved.
fn host(at: &str, host: Option<String>) -> Result<Option<IpAddr>, ManifestError> {
    match host.as_deref() {
        None | Some("") => Ok(None),
        Some("localhost") => Ok(Some(IpAddr::from([127, 0, 0, 1]))),
        Some(h) => h.parse().map(Some).map_err(|_| {
            bad(
                format!("{at}.host"),
                format!("{h:?}: give an IP address (peapod resolves no names for probes), or leave it out for the pod's IP"),
            )
        }),
    }
}

/// `port`: a number, or the name of one of the container's ports.
fn port(
    at: &str,
    value: Option<Value>,
    ports: &[(Option<String>, Option<i64>)],
) -> Result<u16, ManifestError> {
    let at = format!("{at}.port");
    let number = match &value {
        None => return Err(bad(at, "missing")),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => {
            let found = ports
                .iter()
                .find(|(n, _)| n.as_deref() == Some(name.as_str()))
                .and_then(|(_, number)| *number);
            match found {
                Some(number) => Some(number),
                None => {
                    return Err(bad(
                        at,
                        format!("no container port named {name:?} in ports"),
                    ))
                }
            }
        }
        Some(other) => {
            return Err(bad(
                at,
                format!("{other:?}: expected a number or a port name"),
            ))
        }
    };
    number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(at, "not a port (1 to 65535)"))
}

/// Where a container's probes and hooks go: the container, its pod's network namespace (none
/// on the host's network) and the address its network handlers use by default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub rt: &'a Runtime,
    /// The container's id.
    pub id: &'a str,
    /// The pod's pinned network namespace.
    pub netns: Option<&'a Path>,
    /// The pod's IP, else 127.0.0.1.
    pub host: IpAddr,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Why it failed, as the kubelet words it.
    Failure(String),
}

/// What an exec attempt keeps of the process's output (the kubelet keeps 10 KiB; the first
/// line of it is the failure's message).
const OUTPUT_LIMIT: usize = 1024;
/// What an HTTP attempt reads at most: the status line and headers must fit.
const RESPONSE_LIMIT: usize = 4096;

/// One run of a handler, in progress: polled, never waited for.
#[derive(Debug)]
pub(crate) struct Attempt {
    deadline: Instant,
    step: Step,
}

#[derive(Debug)]
enum Step {
    Exec {
        pid: Option<Pid>,
        output: Option<File>,
        captured: Vec<u8>,
        program: String,
    },
    Net {
        stream: TcpStream,
        connected: bool,
        request: Vec<u8>,
        response: Option<Vec<u8>>,
        /// `Get "URL"` or `dial tcp ADDR`, and with `: dial tcp ADDR` for a connect's failure.
        what: String,
        dial: String,
    },
    Sleep(Instant),
    Done(Outcome),
}

impl Attempt {
    /// Starts `handler` for `target`, to be over by `timeout`.
    pub(crate) fn start(target: &Target<'_>, handler: &Handler, timeout: Duration) -> Attempt {
        let deadline = Instant::now() + timeout;
        let step = match handler {
            Handler::Exec(command) => start_exec(target, command),
            Handler::Http {
                host,
                port,
                path,
                headers,
            } => {
                let addr = SocketAddr::new(host.unwrap_or(target.host), *port);
                let mut request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-probe/peapod\r\nAccept: */*\r\nConnection: close\r\n",
                    host_header(&addr)
                );
                for (name, value) in headers {
                    request.push_str(&format!("{name}: {value}\r\n"));
                }
                request.push_str("\r\n");
                let what = format!("Get \"http://{}{path}\"", host_header(&addr));
                start_connect(target, addr, request.into_bytes(), Some(what))
            }
            Handler::Tcp { host, port } => {
                let addr = SocketAddr::new(host.unwrap_or(target.host), *port);
                start_connect(target, addr, Vec::new(), None)
            }
            Handler::Sleep(seconds) => Step::Sleep(Instant::now() + Duration::from_secs(*seconds)),
        };
        Attempt { deadline, step }
    }

    /// Where it stands: `None` while it runs.
    pub(crate) fn poll(&mut self) -> Option<Outcome> {
        let outcome = match &mut self.step {
            Step::Done(outcome) => Some(outcome.clone()),
            Step::Sleep(until) => (Instant::now() >= *until).then_some(Outcome::Success),
            Step::Exec {
                pid,
                output,
                captured,
                program,
            } => poll_exec(pid, output, captured, program),
            Step::Net {
                stream,
                connected,
                request,
                response,
                what,
                dial,
            } => poll_net(stream, connected, request, response, what, dial),
        };
        if let Some(outcome) = outcome {
            self.step = Step::Done(outcome.clone());
            return Some(outcome);
        }
        if Instant::now() >= self.deadline {
            let message = match &self.step {
                Step::Exec { program, .. } => format!("command {program:?} timed out"),
                Step::Net { what, .. } => format!("{what}: timed out"),
                _ => "timed out".to_owned(),
            };
            self.finish();
            let outcome = Outcome::Failure(message);
            self.step = Step::Done(outcome.clone());
            return Some(outcome);
        }
        None
    }

    /// Kills what it started, if it still runs, and reaps it; one that does not die at once
    /// (in a frozen cgroup v1) is reaped later by [`reap_killed`].
    fn finish(&mut self) {
        if let Step::Exec { pid, .. } = &mut self.step {
            if let Some(p) = pid.take() {
                // Our unreaped child: the pid cannot have been reused.
                let _ = kill(p, Signal::SIGKILL);
                if let Ok(WaitStatus::StillAlive) = waitpid(p, Some(WaitPidFlag::WNOHANG)) {
                    if let Ok(mut killed) = KILLED.lock() {
                        killed.push(p);
                    }
                }
            }
        }
    }
}

/// Killed exec processes not reaped yet.
static KILLED: std::sync::Mutex<Vec<Pid>> = std::sync::Mutex::new(Vec::new());

/// Reaps the killed exec processes that have died since: the monitor calls it on each turn,
/// so none stays a zombie and the monitor never blocks on one.
pub(crate) fn reap_killed() {
    if let Ok(mut killed) = KILLED.lock() {
        killed.retain(|p| {
            matches!(
                waitpid(*p, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive)
            )
        });
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `HOST:PORT` of `addr` as a `Host` header takes it (IPv6 in brackets).
fn host_header(addr: &SocketAddr) -> String {
    addr.to_string()
}

fn start_exec(target: &Target<'_>, command: &[String]) -> Step {
    let program = command.first().cloned().unwrap_or_default();
    let failed = |e: String| Step::Done(Outcome::Failure(e));
    let (read, write) =
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(pipe) => pipe,
            Err(e) => return failed(format!("cannot make a pipe: {e}")),
        };
    // The process writes into the pipe (set blocking for it: its end is its own).
    let write = File::from(write);
    if let Err(e) = nix::fcntl::fcntl(
        write.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    ) {
        return failed(format!("cannot set up a pipe: {e}"));
    }
    let spawned = crate::lifecycle::Stdio::redirect(Some(&write))
        .map_err(|e| e.to_string())
        .and_then(|stdio| {
            let pid = target
                .rt
                .exec_spawn(target.id, command)
                .map_err(|e| e.one_line());
            drop(stdio);
            pid
        });
    match spawned {
        Ok(pid) => Step::Exec {
            pid: Some(pid),
            output: Some(File::from(read)),
            captured: Vec::new(),
            program,
        },
        Err(e) => failed(format!("cannot exec {program:?}: {e}")),
    }
}

fn poll_exec(
    pid: &mut Option<Pid>,
    output: &mut Option<File>,
    captured: &mut Vec<u8>,
    program: &str,
) -> Option<Outcome> {
    drain(output, captured);
    let p = (*pid)?;
    let code = match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
        Ok(_) | Err(nix::Error::EINTR) => return None,
        Err(e) => {
            *pid = None;
            return Some(Outcome::Failure(format!(
                "cannot wait for {program:?}: {e}"
            )));
        }
    };
    *pid = None;
    drain(output, captured);
    if code == 0 {
        return Some(Outcome::Success);
    }
    let text = String::from_utf8_lossy(captured);
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Some(Outcome::Failure(match first.is_empty() {
        true => format!("command {program:?} exited with status {code}"),
        false => format!("command {program:?} exited with status {code}: {first}"),
    }))
}

/// Reads what is in the pipe, keeping at most [`OUTPUT_LIMIT`] bytes; past that the pipe is
/// closed, so a process that writes on gets `EPIPE` rather than peapod's memory.
fn drain(output: &mut Option<File>, captured: &mut Vec<u8>) {
    let Some(file) = output else { return };
    let mut buf = [0u8; 512];
    loop {
        match file.read(&mut buf) {
            Ok(0) => {
                *output = None;
                return;
            }
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(captured.len());
                captured.extend_from_slice(&buf[..n.min(room)]);
                if captured.len() >= OUTPUT_LIMIT {
                    *output = None;
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A non-blocking TCP socket made in the network namespace `netns` (the caller's when
/// `None`), by a thread that joins it and ends: a socket stays in the namespace it was made
/// in, whoever uses it after.
fn socket_in(netns: Option<&Path>, addr: &SocketAddr) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let make = move || {
        socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(std::io::Error::from)
    };
    let Some(path) = netns else {
        return make();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                peapod_ns::join(path, peapod_ns::Namespace::Net).map_err(std::io::Error::other)?;
                make()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the thread that joins the pod's network namespace panicked",
                ))
            })
    })
}

fn start_connect(
    target: &Target<'_>,
    addr: SocketAddr,
    request: Vec<u8>,
    http: Option<String>,
) -> Step {
    let dial = format!("dial tcp {addr}");
    let what = http
        .clone()
        .map_or_else(|| dial.clone(), |get| format!("{get}: {dial}"));
    let fd = match socket_in(target.netns, &addr) {
        Ok(fd) => fd,
        Err(e) => return Step::Done(Outcome::Failure(format!("{what}: {e}"))),
    };
    use nix::sys::socket::{connect, SockaddrIn, SockaddrIn6};
    let connecting = match addr {
        SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    let connected = match connecting {
        Ok(()) => true,
        Err(nix::Error::EINPROGRESS) => false,
        Err(e) => {
            return Step::Done(Outcome::Failure(format!(
                "{what}: connect: {}",
                std::io::Error::from(e)
            )))
        }
    };
    Step::Net {
        stream: TcpStream::from(fd),
        connected,
        request,
        response: http.as_ref().map(|_| Vec::new()),
        what: http.unwrap_or_else(|| dial.clone()),
        dial: what,
    }
}

fn poll_net(
    stream: &mut TcpStream,
    connected: &mut bool,
    request: &mut Vec<u8>,
    response: &mut Option<Vec<u8>>,
    what: &str,
    dial: &str,
) -> Option<Outcome> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    if !*connected {
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) | Err(nix::Error::EINTR) => return None,
            Ok(_) => {}
            Err(e) => return Some(Outcome::Failure(format!("{what}: poll: {e}"))),
        }
        match stream.take_error() {
            Ok(None) => *connected = true,
            Ok(Some(e)) | Err(e) => return Some(Outcome::Failure(format!("{dial}: connect: {e}"))),
        }
    }
    let Some(buffer) = response else {
        // tcpSocket: the connection is the answer; it is closed at once.
        return Some(Outcome::Success);
    };
    while !request.is_empty() {
        match stream.write(request) {
            Ok(n) => {
                request.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Outcome::Failure(format!("{what}: write: {e}"))),
        }
    }
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Some(status_of(buffer, what).unwrap_or_else(|| {
                    Outcome::Failure(format!(
                        "{what}: the connection closed before a whole response head"
                    ))
                }))
            }
            Ok(n) => {
                let room = RESPONSE_LIMIT.saturating_sub(buffer.len());
                buffer.extend_from_slice(&chunk[..n.min(room)]);
                if let Some(outcome) = status_of(buffer, what) {
                    return Some(outcome);
                }
                if buffer.len() >= RESPONSE_LIMIT {
                    return Some(Outcome::Failure(format!(
                        "{what}: no response head in the first {RESPONSE_LIMIT} bytes"
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Outcome::Failure(format!("{what}: read: {e}"))),
        }
    }
}

/// The outcome of a whole response head in `buffer` (`None` while it is partial): a status
/// from 200 to 399 is success, as the kubelet counts it (redirects are not followed).
fn status_of(buffer: &[u8], what: &str) -> Option<Outcome> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(buffer) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(_)) => match head.code {
            Some(code) if (200..400).contains(&code) => Some(Outcome::Success),
            Some(code) => Some(Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {code}"
            ))),
            None => Some(Outcome::Failure(format!("{what}: no status code"))),
        },
        Err(e) => Some(Outcome::Failure(format!(
            "{what}: malformed HTTP response: {e}"
        ))),
    }
}

/// One probe of a container, as the kubelet's worker keeps it.
#[derive(Debug)]
struct Worker {
    kind: Kind,
    probe: Probe,
    next: Instant,
    attempt: Option<Attempt>,
    last: Option<bool>,
    run: u32,
}

/// What the monitor must do after a [`Prober::tick`].
#[derive(Debug, Default)]
pub(crate) struct Tick {
    /// The recorded health changed.
    pub changed: bool,
    /// Kill the container (a failed liveness or startup probe, or postStart hook): why, and
    /// the probe's own grace period.
    pub kill: Option<(String, Option<u64>)>,
}

/// The probes and postStart hook of one container, through its restarts.
#[derive(Debug)]
pub(crate) struct Prober {
    workers: Vec<Worker>,
    post_start: Option<Handler>,
    hook: Option<Attempt>,
    /// The container's start.
    since: Instant,
    /// Probing stopped until the container starts again (it is being killed, or exited).
    on_hold: bool,
    /// Its health as the probes see it.
    pub health: MemberHealth,
}

/// The most a postStart hook may take (the kubelet has no bound: peapod's every wait has one).
pub(crate) fn post_start_timeout(grace_seconds: Option<u64>) -> Duration {
    Duration::from_secs(grace_seconds.unwrap_or(crate::hooks::DEFAULT_GRACE))
}

impl Prober {
    pub(crate) fn new(health: &Health) -> Prober {
        let workers = [
            (Kind::Startup, &health.startup),
            (Kind::Liveness, &health.liveness),
            (Kind::Readiness, &health.readiness),
        ]
        .into_iter()
        .filter_map(|(kind, probe)| {
            probe.clone().map(|probe| Worker {
                kind,
                probe,
                next: Instant::now(),
                attempt: None,
                last: None,
                run: 0,
            })
        })
        .collect();
        Prober {
            workers,
            post_start: health.post_start.clone(),
            hook: None,
            since: Instant::now(),
            on_hold: true,
            health: MemberHealth::default(),
        }
    }

    /// The container (re)started now: its postStart hook runs, then its probes, afresh.
    pub(crate) fn started(&mut self, target: &Target<'_>, hook_timeout: Duration) {
        self.since = Instant::now();
        self.on_hold = false;
        for w in &mut self.workers {
            w.attempt = None;
            w.last = None;
            w.run = 0;
            w.next = self.since + Duration::from_secs(w.probe.initial_delay);
        }
        self.hook = self
            .post_start
            .as_ref()
            .map(|h| Attempt::start(target, h, hook_timeout));
        self.settle_started();
    }

    /// Started once its postStart hook ran and its startup probe succeeded; ready then too
    /// when it has no readiness probe.
    fn settle_started(&mut self) {
        let startup = self.workers.iter().any(|w| w.kind == Kind::Startup);
        self.health.started = self.hook.is_none() && !startup;
        self.health.ready = self.health.started && !self.has(Kind::Readiness);
    }

    fn has(&self, kind: Kind) -> bool {
        self.workers.iter().any(|w| w.kind == kind)
    }

    /// The container is gone or going: nothing more runs until it starts again.
    pub(crate) fn hold(&mut self) {
        self.on_hold = true;
        self.hook = None;
        for w in &mut self.workers {
            w.attempt = None;
        }
        self.health.ready = false;
        self.health.started = false;
    }

    /// Runs what is due and collects what ended.
    pub(crate) fn tick(&mut self, target: &Target<'_>) -> Tick {
        let mut tick = Tick::default();
        if self.on_hold {
            return tick;
        }
        let before = self.health.clone();
        if let Some(hook) = &mut self.hook {
            match hook.poll() {
                None => return tick,
                Some(Outcome::Success) => {
                    self.hook = None;
                    let startup = self.has(Kind::Startup);
                    self.health.started = !startup;
                    self.health.ready = !startup && !self.has(Kind::Readiness);
                }
                Some(Outcome::Failure(why)) => {
                    let why = format!("PostStartHookError: {why}");
                    self.health.last_failure = Some(why.clone());
                    self.hold();
                    tick.kill = Some((why, None));
                    tick.changed = true;
                    return tick;
                }
            }
        }
        let now = Instant::now();
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            let runs = match w.kind {
                Kind::Startup => !self.health.started,
                _ => self.health.started,
            };
            if !runs {
                continue;
            }
            if w.attempt.is_none() && now >= w.next {
                w.attempt = Some(Attempt::start(
                    target,
                    &w.probe.handler,
                    Duration::from_secs(w.probe.timeout),
                ));
                w.next = now + Duration::from_secs(w.probe.period);
            }
            let Some(outcome) = w.attempt.as_mut().and_then(Attempt::poll) else {
                continue;
            };
            w.attempt = None;
            if let Some(kill) = self.count(i, outcome) {
                self.hold();
                tick.kill = Some(kill);
                break;
            }
        }
        tick.changed |= self.health != before;
        tick
    }

    /// Counts one result of worker `i`; a kill when a liveness or startup probe failed for
    /// good.
    fn count(&mut self, i: usize, outcome: Outcome) -> Option<(String, Option<u64>)> {
        let w = &mut self.workers[i];
        let success = outcome == Outcome::Success;
        if let Outcome::Failure(why) = &outcome {
            self.health.last_failure = Some(format!("{} probe failed: {why}", w.kind.label()));
        }
        match w.last == Some(success) {
            true => w.run = w.run.saturating_add(1),
            false => {
                w.last = Some(success);
                w.run = 1;
            }
        }
        let threshold = match success {
            true => w.probe.success_threshold,
            false => w.probe.failure_threshold,
        };
        if w.run < threshold {
            return None;
        }
        match (w.kind, success) {
            (Kind::Readiness, ready) => self.health.ready = ready,
            (Kind::Startup, true) => {
                self.health.started = true;
                self.health.ready = !self.has(Kind::Readiness);
            }
            (Kind::Liveness, true) => {}
            (Kind::Liveness | Kind::Startup, false) => {
                let why = self.health.last_failure.clone().unwrap_or_default();
                return Some((why, w.probe.grace_seconds));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations: {peapod.io/restart-backoff-base: 250ms, other: x}
spec:
  containers:
  - name: main
    image: busybox
    ports: [{name: http, containerPort: 8080}]
    PROBES
";

    fn parse(probes: &str) -> Result<crate::Parsed, ManifestError> {
        crate::parse_manifest(&POD.replace("PROBES", probes), Path::new("/"))
    }

    fn error(probes: &str) -> String {
        parse(probes).expect_err("refused").to_string()
    }

    #[test]
    fn probes_get_kubernetes_defaults_and_ports_by_name() {
        let parsed = parse(
            "livenessProbe: {httpGet: {port: http, path: /healthz}}\n    readinessProbe: {tcpSocket: {port: 9000, host: 10.0.0.1}, periodSeconds: 2, successThreshold: 2}\n    lifecycle: {preStop: {sleep: {seconds: 3}}, postStart: {exec: {command: [touch, /x]}}}",
        )
        .expect("parses");
        let health = &parsed.plan.containers[0].health;
        let live = health.liveness.as_ref().expect("liveness");
        assert_eq!(
            live.handler,
            Handler::Http {
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: Vec::new()
            }
        );
        assert_eq!(
            (
                live.initial_delay,
                live.period,
                live.timeout,
                live.success_threshold,
                live.failure_threshold
            ),
            (0, 10, 1, 1, 3)
        );
        let ready = health.readiness.as_ref().expect("readiness");
        assert_eq!((ready.period, ready.success_threshold), (2, 2));
        assert_eq!(health.pre_stop, Some(Handler::Sleep(3)));
        assert_eq!(
            health.post_start,
            Some(Handler::Exec(vec!["touch".into(), "/x".into()]))
        );
        assert_eq!(
            parsed.plan.restart_backoff,
            Some(Duration::from_millis(250))
        );
        let w = parsed.warnings.join("\n");
        assert!(!w.contains("Probe") && !w.contains("lifecycle"), "{w}");
    }

    #[test]
    fn what_peapod_cannot_do_is_refused_naming_the_field() {
        for (probes, expected) in [
            (
                "livenessProbe: {grpc: {port: 9000}}",
                "spec.containers[0].livenessProbe.grpc: not supported",
            ),
            (
                "livenessProbe: {httpGet: {port: 80, scheme: HTTPS}}",
                "spec.containers[0].livenessProbe.httpGet.scheme: HTTPS is not supported",
            ),
            (
                "livenessProbe: {exec: {command: [x]}, successThreshold: 2}",
                "spec.containers[0].livenessProbe.successThreshold: must be 1",
            ),
            (
                "readinessProbe: {httpGet: {port: https}}",
                "spec.containers[0].readinessProbe.httpGet.port: no container port named \"https\"",
            ),
            (
                "readinessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}",
                "spec.containers[0].readinessProbe: give exactly one of",
            ),
            (
                "readinessProbe: {exec: {command: [x]}, periodSeconds: 0}",
                "spec.containers[0].readinessProbe.periodSeconds: 0: must be at least 1",
            ),
            (
                "readinessProbe: {exec: {command: [x]}, terminationGracePeriodSeconds: 5}",
                "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: must not be set",
            ),
            (
                "startupProbe: {exec: {command: [x]}, perodSeconds: 1}",
                "spec.containers[0].startupProbe: unknown field `perodSeconds`",
            ),
            (
                "lifecycle: {preStop: {tcpSocket: {port: 1}}}",
                "spec.containers[0].lifecycle.preStop.tcpSocket: not supported",
            ),
            (
                "livenessProbe: {tcpSocket: {port: 1, host: db.local}}",
                "spec.containers[0].livenessProbe.tcpSocket.host: \"db.local\": give an IP address",
            ),
        ] {
            let e = error(probes);
            assert!(e.starts_with(expected), "{probes}: {e}");
        }
    }

    #[test]
    fn a_sleep_hook_lasts_its_seconds_and_no_longer_than_its_timeout() {
        let rt = Runtime::new("/nonexistent".into(), false);
        let target = Target {
            rt: &rt,
            id: "x",
            netns: None,
            host: IpAddr::from([127, 0, 0, 1]),
        };
        let mut quick = Attempt::start(&target, &Handler::Sleep(0), Duration::from_secs(60));
        assert_eq!(quick.poll(), Some(Outcome::Success));
        let mut long = Attempt::start(&target, &Handler::Sleep(60), Duration::ZERO);
        assert!(matches!(long.poll(), Some(Outcome::Failure(why)) if why == "timed out"));
    }

    #[test]
    fn the_kubelets_backoff_restarts_at_once_then_doubles_to_five_minutes() {
        let base = Duration::from_secs(10);
        let steps: Vec<u64> = (0..8)
            .map(|n| crate::play::backoff(base, n).as_secs())
            .collect();
        assert_eq!(steps, [0, 10, 20, 40, 80, 160, 300, 300]);
    }
}
