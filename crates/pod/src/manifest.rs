//! Kubernetes Pod manifests: the YAML as written ([`Raw`] types, parsed with `serde_norway`),
//! checked into a [`PodPlan`] the CLI runs.
//!
//! `serde_norway` is a maintained fork of `serde_yaml` (deprecated in 2024) with the same API;
//! `serde_yml`, the other fork, was flagged unsound and unmaintained (RUSTSEC-2025-0068).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// A field of the manifest that is wrong, by its path (`spec.containers[0].image`), or YAML
/// that does not parse, by its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ManifestError {
    /// Where: a field path, or `line L column C` for bad YAML.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

pub(crate) fn bad(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A manifest checked and turned into what peapod runs, with a warning for each field it
/// ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What to run.
    pub plan: PodPlan,
    /// One line per ignored field, naming it.
    pub warnings: Vec<String>,
    /// The files of its `configMap`, `secret`, `downwardAPI` and `projected` volumes, by
    /// volume name (not in the plan, which is saved: a Secret's files are written once).
    pub volume_files: BTreeMap<String, Vec<crate::config::ProjectedFile>>,
}

/// A pod as peapod runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.hostname`, else the pod's name (as Kubernetes).
    pub hostname: String,
    /// `spec.shareProcessNamespace`.
    pub share_pid: bool,
    /// `spec.restartPolicy`.
    pub restart: RestartPolicy,
    /// `spec.terminationGracePeriodSeconds`.
    pub grace_seconds: Option<u64>,
    /// `spec.volumes`.
    pub volumes: Vec<VolumePlan>,
    /// `spec.initContainers`, run in order, each to completion.
    pub init_containers: Vec<ContainerPlan>,
    /// `spec.containers`.
    pub containers: Vec<ContainerPlan>,
    /// The image store the containers' images were found in (set by `play`).
    #[serde(default)]
    pub image_store: Option<PathBuf>,
    /// `hostNetwork`, the containers' `ports[].hostPort`, `dnsPolicy`/`dnsConfig` and
    /// `hostAliases`.
    #[serde(default)]
    pub network: NetworkPlan,
    /// The first step of the restart back-off, when the manifest shortens the kubelet's
    /// 10 s (annotation `peapod.io/restart-backoff-base`).
    #[serde(default)]
    pub restart_backoff: Option<std::time::Duration>,
    /// `spec.securityContext.fsGroup`: the group of its emptyDir volumes.
    #[serde(default)]
    pub fs_group: Option<u32>,
}

/// What a manifest says of its pod's network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// `spec.hostNetwork`: the host's network namespace.
    pub host_network: bool,
    /// The containers' ports with a `hostPort`, published on the host.
    pub ports: Vec<peapod_net::PortMapping>,
    /// `dnsPolicy: None` with `dnsConfig`: the pod's own resolver settings.
    pub dns: peapod_net::etc::DnsSettings,
    /// `spec.hostAliases`, one entry per host name.
    pub host_aliases: Vec<(String, std::net::IpAddr)>,
}

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart a container whenever it exits (the default).
    Always,
    /// Restart a container that exits with a status other than 0.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// One volume of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    /// Its name, which `volumeMounts` refer to.
    pub name: String,
    /// Where its files are.
    pub source: VolumeSource,
}

/// The kinds of volume peapod has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// A directory in the pod's state, shared by its containers, removed with the pod.
    EmptyDir,
    /// `emptyDir.medium: Memory`: a tmpfs, of `size` bytes (`sizeLimit`) if given.
    Memory {
        /// `sizeLimit`, in bytes.
        size: Option<u64>,
    },
    /// A host path; made (a directory) first when `create`.
    HostPath {
        /// The absolute host path.
        path: PathBuf,
        /// `type: DirectoryOrCreate`.
        create: bool,
    },
    /// A `configMap`, `secret`, `downwardAPI` or `projected` volume: files written into the
    /// pod's state when it is played (see [`Parsed::volume_files`]), mounted read-only.
    Projected,
}

/// One container of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPlan {
    /// Its name in the pod.
    pub name: String,
    /// `image`: an image reference, or a local rootfs directory written as a path.
    pub image: ImageSource,
    /// `imagePullPolicy`, or its Kubernetes default for the reference.
    pub pull_policy: PullPolicy,
    /// The id of the image `play` found in the store for the reference, so that every
    /// (re)start of the container runs the same image.
    #[serde(default)]
    pub image_id: Option<String>,
    /// `command`: replaces the image's Entrypoint (and drops its Cmd); for a rootfs
    /// directory, the start of the command.
    pub command: Option<Vec<String>>,
    /// `args`: replaces the image's Cmd; for a rootfs directory, the rest of the command.
    pub args: Option<Vec<String>>,
    /// `env`, as `KEY=VALUE`: `env_spec` resolved when the pod is played.
    pub env: Vec<String>,
    /// `envFrom` and `env` as the manifest gives them (ConfigMaps and Secrets resolved,
    /// fields of the pod not yet).
    #[serde(default)]
    pub env_spec: Vec<crate::config::EnvVar>,
    /// `workingDir`.
    pub working_dir: Option<PathBuf>,
    /// `volumeMounts`.
    pub mounts: Vec<MountPlan>,
    /// `securityContext.readOnlyRootFilesystem`.
    pub read_only_root: bool,
    /// `securityContext`, its own over the pod's.
    #[serde(default)]
    pub security: crate::security::SecurityPlan,
    /// `resources`.
    #[serde(default)]
    pub resources: crate::resources::ResourcesPlan,
    /// Its probes and lifecycle hooks (`probes.rs`).
    #[serde(default)]
    pub health: crate::probes::Health,
}

/// Where a container's root comes from (`image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// An image reference (`busybox`, `registry.example/app:1.2`, `app@sha256:...`), from
    /// the image store.
    Reference(String),
    /// A local rootfs directory, absolute: written as a path (`./rootfs`, `../rootfs`,
    /// `/srv/rootfs`), relative ones taken from the manifest's directory.
    Directory(PathBuf),
}

/// `imagePullPolicy`, as Kubernetes defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Pull every time the pod is played (the default for `:latest` and untagged references).
    Always,
    /// Pull only when the store does not have the image (the default otherwise).
    IfNotPresent,
    /// Never pull: the image must be in the store.
    Never,
}

impl PullPolicy {
    /// Kubernetes' default for `reference`: `Always` when its tag is `latest` or it has
    /// neither a tag nor a digest, else `IfNotPresent`.
    pub fn default_for(reference: &str) -> PullPolicy {
        // The tag is after the last ':' of the last path component (a ':' before a '/'
        // is a registry's port).
        let last = reference.rsplit('/').next().unwrap_or(reference);
        if last.contains('@') {
            return PullPolicy::IfNotPresent;
        }
        match last.split_once(':') {
            Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
            _ => PullPolicy::Always,
        }
    }
}

/// Whether `image` is written as a path (a local rootfs directory) rather than a reference.
fn is_path(image: &str) -> bool {
    image.starts_with('/')
        || image.starts_with("./")
        || image.starts_with("../")
        || image == "."
        || image == ".."
}

/// A `volumeMounts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// The volume's name.
    pub volume: String,
    /// The path inside the container.
    pub destination: PathBuf,
    /// `readOnly`.
    pub read_only: bool,
    /// `subPath` (or `subPathExpr` once expanded): a path inside the volume.
    #[serde(default)]
    pub sub_path: Option<String>,
    /// `subPathExpr`, until the pod is played.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path_expr: Option<String>,
}

/// The fields peapod does not know, kept to name them in warnings.
type Extra = BTreeMap<String, Value>;

/// The manifest as written: every field optional, so that a missing one is reported by its
/// path rather than as a parse error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: RawMetadata,
    spec: Option<RawSpec>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    hostname: Option<String>,
    share_process_namespace: Option<bool>,
    #[serde(default)]
    init_containers: Vec<RawContainer>,
    containers: Option<Vec<RawContainer>>,
    #[serde(default)]
    volumes: Vec<RawVolume>,
    restart_policy: Option<String>,
    termination_grace_period_seconds: Option<u64>,
    host_network: Option<bool>,
    dns_policy: Option<String>,
    dns_config: Option<RawDnsConfig>,
    #[serde(default)]
    host_aliases: Vec<RawHostAlias>,
    #[serde(rename = "hostPID")]
    host_pid: Option<bool>,
    #[serde(rename = "hostIPC")]
    host_ipc: Option<bool>,
    security_context: Option<crate::security::RawSecurityContext>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    name: Option<String>,
    image: Option<String>,
    image_pull_policy: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<crate::config::RawEnv>,
    #[serde(default)]
    env_from: Vec<crate::config::RawEnvFrom>,
    working_dir: Option<String>,
    #[serde(default)]
    volume_mounts: Vec<RawVolumeMount>,
    #[serde(default)]
    ports: Vec<RawPort>,
    resources: Option<crate::resources::RawResources>,
    security_context: Option<crate::security::RawSecurityContext>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolumeMount {
    name: Option<String>,
    mount_path: Option<String>,
    read_only: Option<bool>,
    sub_path: Option<String>,
    sub_path_expr: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPort {
    name: Option<String>,
    container_port: Option<i64>,
    host_port: Option<i64>,
    protocol: Option<String>,
    #[serde(rename = "hostIP")]
    host_ip: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Deserialize)]
struct RawDnsConfig {
    #[serde(default)]
    nameservers: Vec<String>,
    #[serde(default)]
    searches: Vec<String>,
    #[serde(default)]
    options: Vec<RawDnsOption>,
}

#[derive(Debug, Deserialize)]
struct RawDnsOption {
    name: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawHostAlias {
    ip: Option<String>,
    #[serde(default)]
    hostnames: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolume {
    name: Option<String>,
    empty_dir: Option<Value>,
    host_path: Option<RawHostPath>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHostPath {
    path: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Parses and checks a file of one Pod manifest (see [`crate::parse_file`] for files of
/// several documents). A relative `image` is taken from `base` (the manifest's directory).
/// Nothing on the host is changed.
pub fn parse(text: &str, base: &Path) -> Result<Parsed, ManifestError> {
    let mut documents = crate::documents::parse_file(text, base, &[])?;
    match documents.pods.len() {
        1 => Ok(documents.pods.remove(0).parsed),
        n => Err(bad(
            "manifest",
            format!("{n} pods: expected one Pod (play the file with `pod play`)"),
        )),
    }
}

/// Checks one Pod document (`apiVersion` checked already), ConfigMaps and Secrets from
/// `config`.
pub(crate) fn parse_value(
    value: Value,
    base: &Path,
    config: &crate::config::Config,
) -> Result<Parsed, ManifestError> {
    let config = config.for_pod(value.get("spec"));
    let raw: Raw = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // The message may start with the path, which the field says already.
        let message = message
            .strip_prefix(&format!("{path}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        match path.as_str() {
            "." => bad("manifest", message),
            path => bad(path, message),
        }
    })?;
    let checker = Checker {
        config,
        ..Checker::default()
    };
    checker.check(raw, base)
}

/// Collects warnings (and the containers' published ports) while checking.
#[derive(Default)]
struct Checker {
    warnings: Vec<String>,
    ports: Vec<peapod_net::PortMapping>,
    /// The ConfigMaps and Secrets the pod may use.
    config: crate::config::Config,
    /// The files of its configMap, secret, downwardAPI and projected volumes.
    volume_files: BTreeMap<String, Vec<crate::config::ProjectedFile>>,
    /// `spec.securityContext`, which the containers' own go over.
    pod_security: crate::security::PodContext,
}

impl Checker {
    fn ignore(&mut self, at: &str, extra: &Extra) {
        for key in extra.keys() {
            self.warnings.push(format!("{at}{key}: ignored"));
        }
    }

    fn check(mut self, raw: Raw, base: &Path) -> Result<Parsed, ManifestError> {
        match raw.api_version.as_deref() {
            Some("v1") => {}
            Some(other) => return Err(bad("apiVersion", format!("{other:?}: expected v1"))),
            None => return Err(bad("apiVersion", "missing: expected v1")),
        }
        match raw.kind.as_deref() {
            Some("Pod") => {}
            Some(other) => {
                return Err(bad(
                    "kind",
                    format!("unknown kind {other:?}: peapod plays only a Pod"),
                ))
            }
            None => return Err(bad("kind", "missing: expected Pod")),
        }
        let restart_backoff = crate::probes::restart_backoff(&raw.metadata.extra)?;
        let mut extra = raw.extra;
        // The status a cluster writes back is not part of what to run.
        extra.remove("status");
        self.ignore("", &extra);
        let name = raw
            .metadata
            .name
            .ok_or_else(|| bad("metadata.name", "missing"))?;
        check_name("metadata.name", &name)?;
        let mut metadata_extra = raw.metadata.extra;
        // Given to the containers through the downward API (fieldRef).
        for used in ["namespace", "annotations", "uid"] {
            metadata_extra.remove(used);
        }
        self.ignore("metadata.", &metadata_extra);
        let spec = raw.spec.ok_or_else(|| bad("spec", "missing"))?;
        let network = self.network(&spec)?;
        for (field, value) in [
            ("spec.hostPID", spec.host_pid),
            ("spec.hostIPC", spec.host_ipc),
        ] {
            if value == Some(true) {
                return Err(bad(
                    field,
                    "not supported: a pod's namespaces are always its own",
                ));
            }
        }
        self.pod_security = crate::security::pod(
            "spec.securityContext",
            spec.security_context,
            network.host_network,
            base,
            &mut self.warnings,
        )?;
        self.ignore("spec.", &spec.extra);
        let restart = match spec.restart_policy.as_deref() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(other) => {
                return Err(bad(
                    "spec.restartPolicy",
                    format!("{other:?}: expected Always, OnFailure or Never"),
                ))
            }
        };
        let hostname = spec.hostname.unwrap_or_else(|| name.clone());
        check_hostname("spec.hostname", &hostname)?;

        let mut volumes = Vec::new();
        for (i, volume) in spec.volumes.into_iter().enumerate() {
            volumes.push(self.volume(i, volume, &volumes)?);
        }
        let containers = spec
            .containers
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("spec.containers", "a pod needs at least one container"))?;
        let mut names = BTreeSet::new();
        let mut init_containers = Vec::new();
        for (i, c) in spec.init_containers.into_iter().enumerate() {
            let at = format!("spec.initContainers[{i}]");
            init_containers.push(self.container(&at, c, &volumes, &mut names, base)?);
        }
        let mut plans = Vec::new();
        for (i, c) in containers.into_iter().enumerate() {
            let at = format!("spec.containers[{i}]");
            plans.push(self.container(&at, c, &volumes, &mut names, base)?);
        }
        Ok(Parsed {
            plan: PodPlan {
                name,
                labels: raw.metadata.labels,
                hostname,
                share_pid: spec.share_process_namespace.unwrap_or(false),
                restart,
                grace_seconds: spec.termination_grace_period_seconds,
                volumes,
                init_containers,
                containers: plans,
                image_store: None,
                fs_group: self.pod_security.fs_group,
                network: NetworkPlan {
                    ports: std::mem::take(&mut self.ports),
                    ..network
                },
                restart_backoff,
            },
            warnings: self.warnings,
            volume_files: self.volume_files,
        })
    }

    fn volume(
        &mut self,
        i: usize,
        raw: RawVolume,
        seen: &[VolumePlan],
    ) -> Result<VolumePlan, ManifestError> {
        let at = format!("spec.volumes[{i}]");
        let name = raw
            .name
            .ok_or_else(|| bad(format!("{at}.name"), "missing"))?;
        check_name(&format!("{at}.name"), &name)?;
        if seen.iter().any(|v| v.name == name) {
            return Err(bad(format!("{at}.name"), format!("{name:?} named twice")));
        }
        if let Some((kind, fields)) = raw.extra.iter().next() {
            let files = match raw.extra.len()
                + usize::from(raw.empty_dir.is_some())
                + usize::from(raw.host_path.is_some())
            {
                1 => self.config.volume(kind, fields, &at)?,
                _ => return Err(bad(&at, "two sources: give one volume type")),
            };
            let Some(files) = files else {
                return Err(bad(
                    format!("{at}.{kind}"),
                    "not supported: peapod has emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes",
                ));
            };
            self.volume_files.insert(name.clone(), files);
            return Ok(VolumePlan {
                name,
                source: VolumeSource::Projected,
            });
        }
        let source = match (raw.empty_dir, raw.host_path) {
            (Some(empty), None) => crate::resources::empty_dir(&at, &empty, &mut self.warnings)?,
            (None, Some(host)) => {
                let path = host
                    .path
                    .ok_or_else(|| bad(format!("{at}.hostPath.path"), "missing"))?;
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(bad(format!("{at}.hostPath.path"), "must be absolute"));
                }
                let create = match host.kind.as_deref() {
                    None | Some("") => false,
                    Some("DirectoryOrCreate") => true,
                    Some("Directory") if path.is_dir() => false,
                    Some("File") if path.is_file() => false,
                    Some(kind @ ("Directory" | "File")) => {
                        return Err(bad(
                            format!("{at}.hostPath.path"),
                            format!("{} is not a {}", path.display(), kind.to_lowercase()),
                        ))
                    }
                    Some(other) => {
                        return Err(bad(
                            format!("{at}.hostPath.type"),
                            format!(
                                "{other:?} not supported (Directory, DirectoryOrCreate or File)"
                            ),
                        ))
                    }
                };
                if !create && !path.exists() {
                    return Err(bad(
                        format!("{at}.hostPath.path"),
                        format!("{} does not exist", path.display()),
                    ));
                }
                VolumeSource::HostPath { path, create }
            }
            (None, None) => {
                return Err(bad(&at, "no source: give emptyDir or hostPath"));
            }
            (Some(_), Some(_)) => {
                return Err(bad(&at, "two sources: give emptyDir or hostPath"));
            }
        };
        Ok(VolumePlan { name, source })
    }

    fn container(
        &mut self,
        at: &str,
        mut raw: RawContainer,
        volumes: &[VolumePlan],
        names: &mut BTreeSet<String>,
        base: &Path,
    ) -> Result<ContainerPlan, ManifestError> {
        let field = |name: &str| format!("{at}.{name}");
        let name = raw.name.ok_or_else(|| bad(field("name"), "missing"))?;
        check_name(&field("name"), &name)?;
        if !names.insert(name.clone()) {
            return Err(bad(field("name"), format!("{name:?} named twice")));
        }
        let image = raw.image.filter(|i| !i.is_empty()).ok_or_else(|| {
            bad(
                field("image"),
                "missing: give an image reference, or a local rootfs directory as a path (./rootfs)",
            )
        })?;
        // Kubernetes treats an empty list as an absent one.
        let command = Some(raw.command).filter(|c| !c.is_empty());
        let args = Some(raw.args).filter(|a| !a.is_empty());
        let policy = match raw.image_pull_policy.as_deref() {
            None => None,
            Some("Always") => Some(PullPolicy::Always),
            Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
            Some("Never") => Some(PullPolicy::Never),
            Some(other) => {
                return Err(bad(
                    field("imagePullPolicy"),
                    format!("unknown policy {other:?}: Always, IfNotPresent or Never"),
                ))
            }
        };
        let (image, pull_policy) = if is_path(&image) {
            let rootfs = base.join(&image);
            if !rootfs.is_dir() {
                return Err(bad(
                    field("image"),
                    format!("{image:?} is not a directory (written as a path, image is a local rootfs directory)"),
                ));
            }
            let rootfs =
                std::path::absolute(&rootfs).map_err(|e| bad(field("image"), e.to_string()))?;
            if command.is_none() {
                return Err(bad(
                    field("command"),
                    "missing: the image is a rootfs directory, which names no entrypoint of its own",
                ));
            }
            (ImageSource::Directory(rootfs), PullPolicy::Never)
        } else {
            if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    field("image"),
                    format!("{image:?} is not an image reference"),
                ));
            }
            let policy = policy.unwrap_or_else(|| PullPolicy::default_for(&image));
            (ImageSource::Reference(image), policy)
        };
        let env_spec = self.config.env(at, &name, &raw.env_from, &raw.env)?;
        let working_dir = match raw.working_dir {
            Some(dir) if dir.starts_with('/') => Some(PathBuf::from(dir)),
            Some(_) => return Err(bad(field("workingDir"), "must be an absolute path")),
            None => None,
        };
        let mut mounts = Vec::new();
        for (j, m) in raw.volume_mounts.into_iter().enumerate() {
            let at = field(&format!("volumeMounts[{j}]"));
            let volume = m.name.ok_or_else(|| bad(format!("{at}.name"), "missing"))?;
            if !volumes.iter().any(|v| v.name == volume) {
                return Err(bad(
                    format!("{at}.name"),
                    format!("no volume named {volume:?} in spec.volumes"),
                ));
            }
            let destination = m
                .mount_path
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| bad(format!("{at}.mountPath"), "missing or not absolute"))?;
            let sub_path = match (&m.sub_path, &m.sub_path_expr) {
                (Some(_), Some(_)) => {
                    return Err(bad(&at, "give subPath or subPathExpr, not both"));
                }
                (Some(path), None) => crate::config::sub_path(&format!("{at}.subPath"), path)?,
                (None, _) => None,
            };
            self.ignore(&format!("{at}."), &m.extra);
            mounts.push(MountPlan {
                volume,
                destination: destination.into(),
                read_only: m.read_only.unwrap_or(false),
                sub_path,
                sub_path_expr: m.sub_path_expr.filter(|e| !e.is_empty()),
            });
        }
        for (j, port) in raw.ports.iter().enumerate() {
            let at = field(&format!("ports[{j}]"));
            if let Some(mapping) = published(&at, port)? {
                self.ports.push(mapping);
            }
            self.ignore(&format!("{at}."), &port.extra);
        }
        let port_names: Vec<_> = raw
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.container_port))
            .collect();
        let health = crate::probes::parse(at, &mut raw.extra, &port_names)?;
        let (security, read_only_root) = crate::security::container(
            &field("securityContext"),
            raw.security_context,
            &self.pod_security,
            base,
            &mut self.warnings,
        )?;
        let resources =
            crate::resources::container(&field("resources"), raw.resources, &mut self.warnings)?;
        self.ignore(&format!("{at}."), &raw.extra);
        Ok(ContainerPlan {
            name,
            image,
            pull_policy,
            image_id: None,
            command,
            args,
            env: Vec::new(),
            env_spec,
            working_dir,
            mounts,
            read_only_root,
            security,
            resources,
            health,
        })
    }
}

impl Checker {
    /// `hostNetwork`, `dnsPolicy` with `dnsConfig`, and `hostAliases`.
    fn network(&mut self, spec: &RawSpec) -> Result<NetworkPlan, ManifestError> {
        let mut plan = NetworkPlan {
            host_network: spec.host_network.unwrap_or(false),
            ..NetworkPlan::default()
        };
        match spec.dns_policy.as_deref() {
            None | Some("Default") | Some("ClusterFirstWithHostNet") => {}
            Some("ClusterFirst") => self.warnings.push(
                "spec.dnsPolicy: ClusterFirst treated as Default (no cluster DNS): the host's resolvers"
                    .to_owned(),
            ),
            Some("None") if spec.dns_config.is_none() => {
                return Err(bad("spec.dnsConfig", "missing: dnsPolicy None needs dnsConfig"))
            }
            Some("None") => {}
            Some(other) => {
                return Err(bad(
                    "spec.dnsPolicy",
                    format!("{other:?}: expected ClusterFirst, Default, ClusterFirstWithHostNet or None"),
                ))
            }
        }
        if let Some(config) = &spec.dns_config {
            for (i, server) in config.nameservers.iter().enumerate() {
                let ip = server.parse().map_err(|_| {
                    bad(
                        format!("spec.dnsConfig.nameservers[{i}]"),
                        format!("{server:?} is not an IP address"),
                    )
                })?;
                plan.dns.servers.push(ip);
            }
            plan.dns.search.clone_from(&config.searches);
            for (i, option) in config.options.iter().enumerate() {
                let name = option
                    .name
                    .clone()
                    .ok_or_else(|| bad(format!("spec.dnsConfig.options[{i}].name"), "missing"))?;
                plan.dns.options.push(match &option.value {
                    Some(value) => format!("{name}:{value}"),
                    None => name,
                });
            }
        }
        for (i, alias) in spec.host_aliases.iter().enumerate() {
            let at = format!("spec.hostAliases[{i}]");
            let ip = alias
                .ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| bad(format!("{at}.ip"), "missing or not an IP address"))?;
            for name in &alias.hostnames {
                plan.host_aliases.push((name.clone(), ip));
            }
        }
        Ok(plan)
    }
}

/// A container port with a `hostPort`, as a port to publish; `None` for one without.
fn published(at: &str, port: &RawPort) -> Result<Option<peapod_net::PortMapping>, ManifestError> {
    let Some(host_port) = port.host_port else {
        return Ok(None);
    };
    let in_range = |p: i64, field: &str| {
        u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
            bad(
                format!("{at}.{field}"),
                format!("{p} is not a port (1 to 65535)"),
            )
        })
    };
    let container_port = port
        .container_port
        .ok_or_else(|| bad(format!("{at}.containerPort"), "missing"))?;
    let protocol = match port.protocol.as_deref() {
        None | Some("TCP") => "tcp",
        Some("UDP") => "udp",
        Some("SCTP") => "sctp",
        Some(other) => {
            return Err(bad(
                format!("{at}.protocol"),
                format!("{other:?}: expected TCP, UDP or SCTP"),
            ))
        }
    };
    let host_ip = match port.host_ip.as_deref() {
        None | Some("") => None,
        Some(ip) => Some(ip.parse().map_err(|_| {
            bad(
                format!("{at}.hostIP"),
                format!("{ip:?} is not an IP address"),
            )
        })?),
    };
    Ok(Some(peapod_net::PortMapping {
        host_ip,
        host_port: in_range(host_port, "hostPort")?,
        container_port: in_range(container_port, "containerPort")?,
        protocol: protocol.to_owned(),
    }))
}

/// A DNS-1123 label, as Kubernetes names containers and volumes (and a safe container id).
fn check_name(field: &str, name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    match ok {
        true => Ok(()),
        false => Err(bad(
            field,
            format!("{name:?}: expected lower-case letters, digits, '-' and '.' (at most 63)"),
        )),
    }
}

fn check_hostname(field: &str, name: &str) -> Result<(), ManifestError> {
    check_name(field, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_fields_become_the_network_plan() {
        let dir = rootfs();
        let text = GOOD.replace(
            "ports: [{containerPort: 80}]",
            "ports: [{containerPort: 80, hostPort: 18080}, {containerPort: 53, hostPort: 5353, protocol: UDP, hostIP: 127.0.0.1}]",
        ) + "  hostNetwork: false\n  dnsPolicy: None\n  dnsConfig: {nameservers: [192.0.2.53], searches: [example.org], options: [{name: ndots, value: \"2\"}]}\n  hostAliases: [{ip: 192.0.2.7, hostnames: [db, db.local]}]\n";
        let plan = parse(&text, dir.path()).expect("parses").plan.network;
        assert_eq!(
            plan.ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["18080->80/tcp", "127.0.0.1:5353->53/udp"]
        );
        assert_eq!(
            plan.dns.servers,
            ["192.0.2.53".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert_eq!(plan.dns.search, ["example.org"]);
        assert_eq!(plan.dns.options, ["ndots:2"]);
        assert_eq!(plan.host_aliases.len(), 2);
        let e = error_of(&(GOOD.to_owned() + "  dnsPolicy: None\n"));
        assert!(e.starts_with("spec.dnsConfig: missing"), "{e}");
        let w = parse(
            &(GOOD.to_owned() + "  dnsPolicy: ClusterFirst\n"),
            dir.path(),
        )
        .expect("parses")
        .warnings
        .join("\n");
        assert!(w.contains("ClusterFirst treated as Default"), "{w}");
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("mkdir");
        dir
    }

    const GOOD: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  annotations: {a: b}
spec:
  restartPolicy: OnFailure
  volumes:
  - name: shared
    emptyDir: {}
  initContainers:
  - name: prepare
    image: ./rootfs
    command: [/bin/sh, -c]
    args: [echo hi > /data/x]
    volumeMounts: [{name: shared, mountPath: /data}]
  containers:
  - name: main
    image: ./rootfs
    command: [/bin/cat, /data/x]
    env: [{name: A, value: b}]
    workingDir: /tmp
    resources: {limits: {memory: 1Gi}}
    ports: [{containerPort: 80}]
    volumeMounts: [{name: shared, mountPath: /data, readOnly: true}]
";

    #[test]
    fn a_good_manifest_becomes_a_plan_with_warnings() {
        let dir = rootfs();
        let parsed = parse(GOOD, dir.path()).expect("parses");
        let plan = &parsed.plan;
        assert_eq!(plan.name, "web");
        assert_eq!(plan.hostname, "web");
        assert_eq!(plan.restart, RestartPolicy::OnFailure);
        let init = &plan.init_containers[0];
        assert_eq!(
            init.command.as_deref(),
            Some(&["/bin/sh".to_owned(), "-c".to_owned()][..])
        );
        assert_eq!(
            init.args.as_deref(),
            Some(&["echo hi > /data/x".to_owned()][..])
        );
        assert_eq!(
            init.image,
            ImageSource::Directory(dir.path().join("rootfs"))
        );
        assert_eq!(
            plan.containers[0].env_spec,
            [crate::EnvVar {
                name: "A".into(),
                value: crate::EnvValue::Value("b".into())
            }]
        );
        assert!(plan.containers[0].mounts[0].read_only);
        assert_eq!(plan.volumes[0].source, VolumeSource::EmptyDir);
        let w = parsed.warnings.join("\n");
        assert_eq!(
            plan.containers[0].resources.memory_limit,
            Some(1 << 30),
            "{w}"
        );
        assert!(!w.contains("metadata.annotations"), "{w}");
        assert!(!w.contains("containerPort"), "{w}");
        assert!(
            plan.network.ports.is_empty(),
            "no hostPort, nothing published"
        );
    }

    #[test]
    fn image_references_need_no_command_and_get_the_kubernetes_pull_policy() {
        let dir = rootfs();
        let text = GOOD
            .replace(
                "image: ./rootfs\n    command: [/bin/cat, /data/x]",
                "image: busybox\n    args: [/data/x]",
            )
            .replace(
                "image: ./rootfs\n    command: [/bin/sh, -c]",
                "image: reg:5000/app:1.2\n    command: [/bin/sh, -c]",
            );
        let plan = parse(&text, dir.path()).expect("parses").plan;
        let main = &plan.containers[0];
        assert_eq!(main.image, ImageSource::Reference("busybox".into()));
        assert_eq!(main.command, None);
        assert_eq!(main.pull_policy, PullPolicy::Always);
        assert_eq!(
            plan.init_containers[0].pull_policy,
            PullPolicy::IfNotPresent
        );
        for (reference, policy) in [
            ("busybox:latest", PullPolicy::Always),
            ("localhost:5000/busybox", PullPolicy::Always),
            ("localhost:5000/busybox:1", PullPolicy::IfNotPresent),
            ("busybox@sha256:abcd", PullPolicy::IfNotPresent),
        ] {
            assert_eq!(PullPolicy::default_for(reference), policy, "{reference}");
        }
        let text = text.replace(
            "args: [/data/x]",
            "args: [/data/x]\n    imagePullPolicy: Never",
        );
        let plan = parse(&text, dir.path()).expect("parses").plan;
        assert_eq!(plan.containers[0].pull_policy, PullPolicy::Never);
    }

    fn error_of(text: &str) -> String {
        let dir = rootfs();
        parse(text, dir.path()).expect_err("refused").to_string()
    }

    #[test]
    fn bad_manifests_name_the_field_or_line() {
        let e = error_of(&GOOD.replace("kind: Pod", "kind: Deployment"));
        assert!(
            e.starts_with("apiVersion: \"v1\" for a Deployment: expected apps/v1"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("kind: Pod", "kind: Pdo"));
        assert!(
            e.starts_with("kind: nothing to play (skipped Pdo web"),
            "{e}"
        );
        let e = error_of(&GOOD.replace(
            "{name: shared, mountPath: /data, readOnly",
            "{name: nope, mountPath: /data, readOnly",
        ));
        assert!(
            e.starts_with("spec.containers[0].volumeMounts[0].name: no volume named \"nope\""),
            "{e}"
        );
        let e =
            error_of("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: []\n");
        assert!(
            e.starts_with("spec.containers: a pod needs at least one container"),
            "{e}"
        );
        let e = error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n");
        assert!(e.starts_with("malformed YAML at line 5"), "{e}");
        let e = error_of(&GOOD.replace("containerPort: 80", "containerPort: 80, hostPort: 80000"));
        assert!(
            e.starts_with("spec.containers[0].ports[0].hostPort: 80000 is not a port"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("workingDir: /tmp", "securityContext: {privileged: true}"));
        assert!(
            e.starts_with("spec.containers[0].securityContext.privileged"),
            "{e}"
        );
        let e = error_of(&GOOD.replace(
            "image: ./rootfs\n    command: [/bin/cat",
            "image: ./nginx\n    command: [/bin/cat",
        ));
        assert!(
            e.contains("spec.containers[0].image: \"./nginx\" is not a directory"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("command: [/bin/cat, /data/x]", "args: [/data/x]"));
        assert!(e.starts_with("spec.containers[0].command: missing"), "{e}");
        let e = error_of(&GOOD.replace("workingDir: /tmp", "imagePullPolicy: Sometimes"));
        assert!(
            e.starts_with("spec.containers[0].imagePullPolicy: unknown policy"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("command: [/bin/cat, /data/x]", "command: /bin/cat"));
        assert!(e.starts_with("spec.containers[0].command"), "{e}");
    }
}
