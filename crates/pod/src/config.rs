//! ConfigMaps and Secrets, and what a pod takes from them and from its own fields (the
//! downward API): `env[].valueFrom`, `envFrom`, `$(VAR)` expansion, and the files of
//! `configMap`, `secret`, `downwardAPI` and `projected` volumes.
//!
//! Everything is resolved as Kubernetes does: ConfigMaps and Secrets from the played file(s)
//! when the manifest is checked; the pod's own fields (its uid, IP, node) when `play` knows
//! them, just before the plan is saved for the monitor.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::manifest::{bad, ManifestError};
use crate::PodPlan;

/// The keys and values of one ConfigMap or Secret.
type Data = BTreeMap<String, Vec<u8>>;

/// The ConfigMaps and Secrets a played file (and `--configmap` files) hold, by name.
#[derive(Debug, Clone, Default)]
pub struct Config {
    config_maps: BTreeMap<String, Data>,
    secrets: BTreeMap<String, Data>,
    /// The `resources` of the pod being checked, by container name (`resourceFieldRef`).
    resources: BTreeMap<String, Value>,
}

/// What the kind of a referenced object is called in messages.
#[derive(Debug, Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Config {
    /// Takes in a `ConfigMap` or `Secret` document (`kind` says which), `at` naming it in
    /// errors.
    pub fn add(&mut self, kind: &str, doc: &Value, at: &str) -> Result<(), ManifestError> {
        let name = doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{at}metadata.name"), "missing"))?;
        let mut data = Data::new();
        let (plain, encoded) = match kind {
            "ConfigMap" => ("data", "binaryData"),
            _ => ("stringData", "data"),
        };
        for (key, value) in strings(doc, encoded, at)? {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|e| bad(format!("{at}{encoded}.{key}"), format!("not base64: {e}")))?;
            data.insert(key, bytes);
        }
        // A Secret's stringData wins over its data, as the API server merges them.
        for (key, value) in strings(doc, plain, at)? {
            data.insert(key, value.into_bytes());
        }
        for key in data.keys() {
            check_key(&format!("{at}data.{key}"), key)?;
        }
        let objects = match kind {
            "ConfigMap" => &mut self.config_maps,
            _ => &mut self.secrets,
        };
        if objects.insert(name.to_owned(), data).is_some() {
            return Err(bad(
                format!("{at}metadata.name"),
                format!("{kind} {name:?} given twice"),
            ));
        }
        Ok(())
    }

    fn object(&self, kind: Kind, name: &str) -> Option<&Data> {
        match kind {
            Kind::ConfigMap => self.config_maps.get(name),
            Kind::Secret => self.secrets.get(name),
        }
    }

    /// The data of the object a reference at `at` names; `None` for a missing optional one.
    fn lookup(
        &self,
        kind: Kind,
        reference: &ObjectRef,
        at: &str,
        name_field: &str,
    ) -> Result<Option<&Data>, ManifestError> {
        let name = reference
            .name
            .as_deref()
            .ok_or_else(|| bad(format!("{at}.{name_field}"), "missing"))?;
        match self.object(kind, name) {
            Some(data) => Ok(Some(data)),
            None if reference.optional == Some(true) => Ok(None),
            None => Err(bad(
                format!("{at}.{name_field}"),
                format!("no {kind:?} {name:?} in the played file(s) (give it there, or with --configmap FILE)"),
            )),
        }
    }

    /// This, with the containers' `resources` of the Pod spec `spec` (for
    /// `resourceFieldRef`).
    pub(crate) fn for_pod(&self, spec: Option<&Value>) -> Config {
        let mut config = self.clone();
        for list in ["initContainers", "containers"] {
            let containers = spec.and_then(|s| s.get(list)).and_then(Value::as_sequence);
            for c in containers.into_iter().flatten() {
                if let (Some(name), Some(resources)) =
                    (c.get("name").and_then(Value::as_str), c.get("resources"))
                {
                    config.resources.insert(name.to_owned(), resources.clone());
                }
            }
        }
        config
    }

    /// The value of a `resourceFieldRef` (at `at`) of container `container` (unless it
    /// names another), as the kubelet gives it: the limit, else the host's capacity;
    /// the request, else the limit, else 0; divided by `divisor`, rounded up.
    fn resource(
        &self,
        at: &str,
        r: &RawResourceRef,
        container: Option<&str>,
    ) -> Result<String, ManifestError> {
        let container = r
            .container_name
            .as_deref()
            .or(container)
            .ok_or_else(|| bad(format!("{at}.containerName"), "missing"))?;
        let resource = r
            .resource
            .as_deref()
            .ok_or_else(|| bad(format!("{at}.resource"), "missing"))?;
        let (kind, name) = resource.split_once('.').unwrap_or_default();
        if !matches!(kind, "limits" | "requests") || !matches!(name, "cpu" | "memory") {
            return Err(bad(
                format!("{at}.resource"),
                format!("{resource:?} not supported: limits.cpu, limits.memory, requests.cpu or requests.memory"),
            ));
        }
        let resources = self.resources.get(container);
        let get = |kind: &str| -> Result<Option<u64>, ManifestError> {
            resources
                .and_then(|r| r.get(kind))
                .and_then(|k| k.get(name))
                .map(|q| quantity(&format!("{at} ({container} {kind}.{name})"), q))
                .transpose()
        };
        let limit = get("limits")?;
        let value = match kind {
            "limits" => limit.unwrap_or_else(|| capacity(name)),
            _ => get("requests")?.or(limit).unwrap_or(0),
        };
        let divisor = match &r.divisor {
            Some(d) => quantity(&format!("{at}.divisor"), d)?,
            None => 1000,
        };
        if divisor == 0 {
            return Err(bad(format!("{at}.divisor"), "must be more than 0"));
        }
        Ok(value.div_ceil(divisor).to_string())
    }

    /// A container's `envFrom` then `env` (at `at`), in order, as the variables to set.
    pub fn env(
        &self,
        at: &str,
        container: &str,
        env_from: &[RawEnvFrom],
        env: &[RawEnv],
    ) -> Result<Vec<EnvVar>, ManifestError> {
        let mut vars = Vec::new();
        for (i, source) in env_from.iter().enumerate() {
            let at = format!("{at}.envFrom[{i}]");
            let (kind, reference, field) = match (&source.config_map_ref, &source.secret_ref) {
                (Some(r), None) => (Kind::ConfigMap, r, "configMapRef"),
                (None, Some(r)) => (Kind::Secret, r, "secretRef"),
                _ => return Err(bad(&at, "give one of configMapRef or secretRef")),
            };
            let Some(data) = self.lookup(kind, reference, &format!("{at}.{field}"), "name")? else {
                continue;
            };
            let prefix = source.prefix.as_deref().unwrap_or_default();
            for (key, value) in data {
                let name = format!("{prefix}{key}");
                // Kubernetes skips (with an event) keys that are no variable names.
                if is_env_name(&name) {
                    vars.push(EnvVar::value(name, value));
                }
            }
        }
        for (i, var) in env.iter().enumerate() {
            let at = format!("{at}.env[{i}]");
            let name = var
                .name
                .clone()
                .filter(|n| !n.is_empty() && !n.contains('='))
                .ok_or_else(|| bad(format!("{at}.name"), "missing or not a variable name"))?;
            let value = match (&var.value, &var.value_from) {
                (Some(_), Some(_)) => {
                    return Err(bad(&at, "give value or valueFrom, not both"));
                }
                (value, None) => EnvValue::Value(value.clone().unwrap_or_default()),
                (None, Some(from)) => {
                    match self.value_from(&format!("{at}.valueFrom"), from, container)? {
                        Some(value) => value,
                        None => continue,
                    }
                }
            };
            vars.push(EnvVar { name, value });
        }
        Ok(vars)
    }

    /// One `valueFrom`; `None` for a missing optional key or object.
    fn value_from(
        &self,
        at: &str,
        from: &RawValueFrom,
        container: &str,
    ) -> Result<Option<EnvValue>, ManifestError> {
        let key_ref = |kind, field: &str, r: &KeyRef| -> Result<Option<EnvValue>, ManifestError> {
            let at = format!("{at}.{field}");
            let Some(data) = self.lookup(kind, &r.object, &at, "name")? else {
                return Ok(None);
            };
            let key = r
                .key
                .as_deref()
                .ok_or_else(|| bad(format!("{at}.key"), "missing"))?;
            match data.get(key) {
                Some(value) => Ok(Some(EnvValue::Value(
                    String::from_utf8_lossy(value).into_owned(),
                ))),
                None if r.object.optional == Some(true) => Ok(None),
                None => Err(bad(
                    format!("{at}.key"),
                    format!(
                        "{kind:?} {:?} has no key {key:?}",
                        r.object.name.as_deref().unwrap_or_default()
                    ),
                )),
            }
        };
        match from {
            RawValueFrom {
                config_map_key_ref: Some(r),
                secret_key_ref: None,
                field_ref: None,
                resource_field_ref: None,
            } => key_ref(Kind::ConfigMap, "configMapKeyRef", r),
            RawValueFrom {
                config_map_key_ref: None,
                secret_key_ref: Some(r),
                field_ref: None,
                resource_field_ref: None,
            } => key_ref(Kind::Secret, "secretKeyRef", r),
            RawValueFrom {
                config_map_key_ref: None,
                secret_key_ref: None,
                field_ref: Some(f),
                resource_field_ref: None,
            } => Ok(Some(EnvValue::Field(field_path(
                &format!("{at}.fieldRef"),
                f,
                ENV_FIELDS,
            )?))),
            RawValueFrom {
                config_map_key_ref: None,
                secret_key_ref: None,
                field_ref: None,
                resource_field_ref: Some(r),
            } => Ok(Some(EnvValue::Value(self.resource(
                &format!("{at}.resourceFieldRef"),
                r,
                Some(container),
            )?))),
            _ => Err(bad(
                at,
                "give one of configMapKeyRef, secretKeyRef or fieldRef",
            )),
        }
    }

    /// The files of a `configMap`, `secret`, `downwardAPI` or `projected` volume (`kind`, its
    /// fields `fields`, at `at`): `None` when `kind` is another volume type.
    pub fn volume(
        &self,
        kind: &str,
        fields: &Value,
        at: &str,
    ) -> Result<Option<Vec<ProjectedFile>>, ManifestError> {
        let at = format!("{at}.{kind}");
        let de = |v: &Value| -> Result<RawProjection, ManifestError> {
            serde_norway::from_value(v.clone()).map_err(|e| bad(&at, e.to_string()))
        };
        let raw = match kind {
            "configMap" | "secret" | "downwardAPI" | "projected" => de(fields)?,
            _ => return Ok(None),
        };
        let default_mode = mode(&format!("{at}.defaultMode"), raw.default_mode.as_ref())?;
        let mut files = Vec::new();
        match kind {
            "projected" => {
                for (i, source) in raw.sources.iter().enumerate() {
                    let at = format!("{at}.sources[{i}]");
                    let Value::Mapping(map) = source else {
                        return Err(bad(at, "expected a mapping"));
                    };
                    if map.len() != 1 {
                        return Err(bad(at, "give one source: configMap, secret or downwardAPI"));
                    }
                    for (key, value) in map {
                        let key = key.as_str().unwrap_or_default();
                        let at = format!("{at}.{key}");
                        match key {
                            "configMap" | "secret" | "downwardAPI" => {
                                let inner: RawProjection = serde_norway::from_value(value.clone())
                                    .map_err(|e| bad(&at, e.to_string()))?;
                                self.source(key, &inner, &at, default_mode, &mut files)?
                            }
                            _ => return Err(bad(
                                at,
                                "not supported: peapod has no service account tokens or cluster trust bundles (configMap, secret and downwardAPI are)",
                            )),
                        }
                    }
                }
            }
            _ => self.source(kind, &raw, &at, default_mode, &mut files)?,
        }
        // Later sources would overwrite earlier ones at the same path: refused instead.
        let mut seen = std::collections::BTreeSet::new();
        for file in &files {
            if !seen.insert(&file.path) {
                return Err(bad(&at, format!("two files at path {:?}", file.path)));
            }
        }
        Ok(Some(files))
    }

    /// The files one source (`kind`) gives.
    fn source(
        &self,
        kind: &str,
        raw: &RawProjection,
        at: &str,
        default_mode: u32,
        files: &mut Vec<ProjectedFile>,
    ) -> Result<(), ManifestError> {
        if kind == "downwardAPI" {
            for (i, item) in raw.items.iter().enumerate() {
                let at = format!("{at}.items[{i}]");
                let path = item_path(&format!("{at}.path"), item.path.as_deref())?;
                let content = match (&item.field_ref, &item.resource_field_ref) {
                    (Some(field), None) => FileContent::Field(field_path(
                        &format!("{at}.fieldRef"),
                        field,
                        VOLUME_FIELDS,
                    )?),
                    (None, Some(r)) => FileContent::Bytes(
                        self.resource(&format!("{at}.resourceFieldRef"), r, None)?
                            .into_bytes(),
                    ),
                    _ => return Err(bad(&at, "give one of fieldRef or resourceFieldRef")),
                };
                files.push(ProjectedFile {
                    path,
                    mode: match &item.mode {
                        Some(_) => mode(&format!("{at}.mode"), item.mode.as_ref())?,
                        None => default_mode,
                    },
                    content,
                });
            }
            return Ok(());
        }
        let (object_kind, name_field) = match kind {
            "configMap" => (Kind::ConfigMap, "name"),
            _ => (
                Kind::Secret,
                if raw.secret_name.is_some() {
                    "secretName"
                } else {
                    "name"
                },
            ),
        };
        let reference = ObjectRef {
            name: raw.secret_name.clone().or_else(|| raw.name.clone()),
            optional: raw.optional,
        };
        let Some(data) = self.lookup(object_kind, &reference, at, name_field)? else {
            return Ok(());
        };
        if raw.items.is_empty() {
            for (key, value) in data {
                files.push(ProjectedFile {
                    path: key.clone(),
                    mode: default_mode,
                    content: FileContent::Bytes(value.clone()),
                });
            }
            return Ok(());
        }
        for (i, item) in raw.items.iter().enumerate() {
            let at = format!("{at}.items[{i}]");
            let key = item
                .key
                .as_deref()
                .ok_or_else(|| bad(format!("{at}.key"), "missing"))?;
            let Some(value) = data.get(key) else {
                if raw.optional == Some(true) {
                    continue;
                }
                return Err(bad(
                    format!("{at}.key"),
                    format!(
                        "{object_kind:?} {:?} has no key {key:?}",
                        reference.name.as_deref().unwrap_or_default()
                    ),
                ));
            };
            files.push(ProjectedFile {
                path: item_path(&format!("{at}.path"), item.path.as_deref())?,
                mode: match &item.mode {
                    Some(_) => mode(&format!("{at}.mode"), item.mode.as_ref())?,
                    None => default_mode,
                },
                content: FileContent::Bytes(value.clone()),
            });
        }
        Ok(())
    }
}

/// `env[]` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEnv {
    name: Option<String>,
    value: Option<String>,
    value_from: Option<RawValueFrom>,
}

/// `env[].valueFrom` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawValueFrom {
    config_map_key_ref: Option<KeyRef>,
    secret_key_ref: Option<KeyRef>,
    field_ref: Option<RawFieldRef>,
    resource_field_ref: Option<RawResourceRef>,
}

/// A `resourceFieldRef` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawResourceRef {
    container_name: Option<String>,
    resource: Option<String>,
    divisor: Option<Value>,
}

/// `envFrom[]` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawEnvFrom {
    config_map_ref: Option<ObjectRef>,
    secret_ref: Option<ObjectRef>,
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRef {
    name: Option<String>,
    optional: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct KeyRef {
    #[serde(flatten)]
    object: ObjectRef,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFieldRef {
    field_path: Option<String>,
    api_version: Option<String>,
}

/// A `configMap`, `secret`, `downwardAPI` or `projected` volume (or projected source) as
/// written: the fields of all of them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProjection {
    name: Option<String>,
    secret_name: Option<String>,
    optional: Option<bool>,
    default_mode: Option<Value>,
    #[serde(default)]
    items: Vec<RawItem>,
    #[serde(default)]
    sources: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawItem {
    key: Option<String>,
    path: Option<String>,
    mode: Option<Value>,
    field_ref: Option<RawFieldRef>,
    resource_field_ref: Option<RawResourceRef>,
}

/// One variable of a container's environment, in the order Kubernetes sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Its value, or the pod field it comes from.
    pub value: EnvValue,
}

impl EnvVar {
    fn value(name: String, value: &[u8]) -> EnvVar {
        EnvVar {
            name,
            value: EnvValue::Value(String::from_utf8_lossy(value).into_owned()),
        }
    }
}

/// The value of an [`EnvVar`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvValue {
    /// A value (`value`, a ConfigMap's or Secret's key), `$(VAR)` not yet expanded.
    Value(String),
    /// A field of the pod (`fieldRef.fieldPath`), known when the pod is made.
    Field(String),
}

/// One file of a `configMap`, `secret`, `downwardAPI` or `projected` volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedFile {
    /// Its path in the volume (relative, checked).
    pub path: String,
    /// Its permission bits.
    pub mode: u32,
    /// What it holds.
    pub content: FileContent,
}

/// What a [`ProjectedFile`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// These bytes (a ConfigMap's or Secret's key).
    Bytes(Vec<u8>),
    /// A field of the pod (`fieldRef.fieldPath`).
    Field(String),
}

/// The pod's own fields, for `fieldRef`: the downward API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` unless given).
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.serviceAccountName`.
    pub service_account: String,
    /// `spec.nodeName`: the host's name.
    pub node_name: String,
    /// `status.podIPs`.
    pub pod_ips: Vec<String>,
    /// `status.hostIPs`.
    pub host_ips: Vec<String>,
}

impl PodFacts {
    /// The value of `path` (a field `fieldRef` may name, checked when parsed).
    pub fn field(&self, path: &str) -> String {
        let keyed = |prefix: &str, map: &BTreeMap<String, String>| {
            let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
            Some(map.get(key).cloned().unwrap_or_default())
        };
        let listed = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect::<String>()
        };
        if let Some(value) = keyed("metadata.labels['", &self.labels)
            .or_else(|| keyed("metadata.annotations['", &self.annotations))
        {
            return value;
        }
        match path {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "metadata.uid" => self.uid.clone(),
            "metadata.labels" => listed(&self.labels),
            "metadata.annotations" => listed(&self.annotations),
            "spec.nodeName" => self.node_name.clone(),
            "spec.serviceAccountName" => self.service_account.clone(),
            "status.podIP" => self.pod_ips.first().cloned().unwrap_or_default(),
            "status.podIPs" => self.pod_ips.join(","),
            "status.hostIP" => self.host_ips.first().cloned().unwrap_or_default(),
            "status.hostIPs" => self.host_ips.join(","),
            _ => String::new(),
        }
    }
}

/// The fields `env[].valueFrom.fieldRef` may name (Kubernetes' list).
const ENV_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels['",
    "metadata.annotations['",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The fields a `downwardAPI` volume's `fieldRef` may name (Kubernetes' list).
const VOLUME_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "metadata.labels['",
    "metadata.annotations['",
];

/// A `fieldRef`'s `fieldPath`, checked against `allowed` (entries ending in `['` take a key).
fn field_path(at: &str, field: &RawFieldRef, allowed: &[&str]) -> Result<String, ManifestError> {
    if let Some(version) = field.api_version.as_deref().filter(|v| *v != "v1") {
        return Err(bad(
            format!("{at}.apiVersion"),
            format!("{version:?}: expected v1"),
        ));
    }
    let path = field
        .field_path
        .as_deref()
        .ok_or_else(|| bad(format!("{at}.fieldPath"), "missing"))?;
    let ok = allowed.iter().any(|a| match a.strip_suffix("['") {
        Some(_) => path.starts_with(a) && path.ends_with("']") && path.len() > a.len() + 2,
        None => path == *a,
    });
    if !ok {
        let names: Vec<_> = allowed.iter().map(|a| a.replace("['", "['KEY']")).collect();
        return Err(bad(
            format!("{at}.fieldPath"),
            format!(
                "{path:?} not supported: expected one of {}",
                names.join(", ")
            ),
        ));
    }
    Ok(path.to_owned())
}

/// The string values of the mapping `doc.field`.
fn strings(doc: &Value, field: &str, at: &str) -> Result<Vec<(String, String)>, ManifestError> {
    let Some(map) = doc.get(field) else {
        return Ok(Vec::new());
    };
    let Value::Mapping(map) = map else {
        return Err(bad(
            format!("{at}{field}"),
            "expected a mapping of keys to strings",
        ));
    };
    map.iter()
        .map(|(k, v)| {
            let key = k
                .as_str()
                .ok_or_else(|| bad(format!("{at}{field}"), "a key is not a string"))?;
            let value = match v {
                Value::String(s) => s.clone(),
                _ => {
                    return Err(bad(
                        format!("{at}{field}.{key}"),
                        "expected a string (quote numbers and booleans)",
                    ))
                }
            };
            Ok((key.to_owned(), value))
        })
        .collect()
}

/// A ConfigMap's or Secret's key: letters, digits, `-`, `_` and `.`, not `.` or `..`.
fn check_key(at: &str, key: &str) -> Result<(), ManifestError> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match ok {
        true => Ok(()),
        false => Err(bad(
            at,
            "not a valid key: letters, digits, '-', '_' and '.' (not ., nor starting with ..)",
        )),
    }
}

/// An item's `path`: relative, no `..` component, not starting with `..`, as the API server
/// checks it.
fn item_path(at: &str, path: Option<&str>) -> Result<String, ManifestError> {
    let path = path.ok_or_else(|| bad(at, "missing"))?;
    if path.is_empty() || path.starts_with('/') {
        return Err(bad(at, format!("{path:?} must be a relative path")));
    }
    if path.starts_with("..")
        || Path::new(path)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        return Err(bad(at, format!("{path:?} must not contain '..'")));
    }
    if !Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(bad(at, format!("{path:?} is not a plain relative path")));
    }
    Ok(path.to_owned())
}

/// A file mode (`defaultMode`, `mode`): a number 0 to 0777, written as decimal (420), YAML
/// octal (`0o644`) or with a leading zero as Kubernetes' YAML reads it (`0644`); 0644 when
/// absent.
fn mode(at: &str, value: Option<&Value>) -> Result<u32, ManifestError> {
    let mode = match value {
        None => return Ok(0o644),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.starts_with('0') => u64::from_str_radix(s, 8).ok(),
        Some(_) => None,
    };
    mode.filter(|m| *m <= 0o777)
        .and_then(|m| u32::try_from(m).ok())
        .ok_or_else(|| bad(at, "expected a mode from 0 to 0777 (511)"))
}

/// A Kubernetes quantity (`500m`, `2`, `0.5`, `64Mi`, `1G`, `1e3`) at `at`, in thousandths
/// (the exact parser `resources` uses).
fn quantity(at: &str, value: &Value) -> Result<u64, ManifestError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => String::new(),
    };
    crate::resources::quantity(&text, 1000).map_err(|e| bad(at, e))
}

/// The host's capacity of `resource` (`cpu`: its online CPUs; `memory`: its MemTotal), the
/// kubelet's node allocatable for a container without a limit.
/// In thousandths, as [`quantity`].
fn capacity(resource: &str) -> u64 {
    let whole = match resource {
        "cpu" => nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(1)
            .max(1),
        _ => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| kib.saturating_mul(1024)),
    };
    whole.saturating_mul(1000)
}

/// A name `envFrom` may set (C identifier-ish, as Kubernetes' relaxed check).
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('=')
        && name.chars().all(|c| c.is_ascii_graphic())
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// `$(VAR)` in `text` replaced by VAR's value in `vars`, as Kubernetes expands: `$$` is a
/// `$`, an unknown `$(VAR)` stays as written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
        {
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment `vars` gives, fields from `facts`, each value expanded with the
/// variables before it; as `KEY=VALUE`, in order, the last of a name winning.
pub fn resolve_env(vars: &[EnvVar], facts: &PodFacts) -> (Vec<String>, BTreeMap<String, String>) {
    let mut map = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for var in vars {
        let value = match &var.value {
            EnvValue::Value(v) => expand(v, &map),
            EnvValue::Field(path) => facts.field(path),
        };
        if map.insert(var.name.clone(), value).is_none() {
            order.push(var.name.clone());
        }
    }
    let env = order
        .iter()
        .map(|name| {
            format!(
                "{name}={}",
                map.get(name).map(String::as_str).unwrap_or_default()
            )
        })
        .collect();
    (env, map)
}

/// Resolves what depends on the pod's fields (`facts`) in every container of `plan`: its
/// environment (`env`, from `env_spec`), `$(VAR)` in `command` and `args`, and
/// `subPathExpr`.
pub fn resolve(plan: &mut PodPlan, facts: &PodFacts) -> Result<(), ManifestError> {
    for (kind, list) in [
        ("initContainers", &mut plan.init_containers),
        ("containers", &mut plan.containers),
    ] {
        for (i, c) in list.iter_mut().enumerate() {
            let (env, vars) = resolve_env(&c.env_spec, facts);
            c.env = env;
            for arg in [&mut c.command, &mut c.args]
                .into_iter()
                .flatten()
                .flat_map(|list| list.iter_mut())
            {
                *arg = expand(arg, &vars);
            }
            for (j, m) in c.mounts.iter_mut().enumerate() {
                if let Some(expr) = m.sub_path_expr.take() {
                    let at = format!("spec.{kind}[{i}].volumeMounts[{j}].subPathExpr");
                    m.sub_path = sub_path(&at, &expand(&expr, &vars))?;
                }
            }
        }
    }
    Ok(())
}

/// A `subPath` (at `at`): relative, without `..`; `None` when empty (the whole volume).
pub(crate) fn sub_path(at: &str, path: &str) -> Result<Option<String>, ManifestError> {
    if path.is_empty() {
        return Ok(None);
    }
    if path.starts_with('/') {
        return Err(bad(at, format!("{path:?} must be a relative path")));
    }
    if Path::new(path)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(at, format!("{path:?} must not contain '..'")));
    }
    Ok(Some(path.to_owned()))
}

/// Writes `files` into the new directory `dir` as the kubelet lays out such volumes: the
/// files in a timestamped directory, `..data` a symbolic link to it, and each top-level
/// name a symbolic link through `..data`; fields from `facts`. Nothing in `dir` is reachable
/// by a container yet (it is mounted read-only later), so plain paths are safe here.
pub fn write_volume(dir: &Path, files: &[ProjectedFile], facts: &PodFacts) -> std::io::Result<()> {
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let data = dir.join(&stamp);
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o755);
    builder.create(&data)?;
    let mut top = std::collections::BTreeSet::new();
    for file in files {
        let path = data.join(&file.path);
        if let Some(parent) = path.parent() {
            builder.recursive(true).create(parent)?;
        }
        let bytes = match &file.content {
            FileContent::Bytes(bytes) => bytes.clone(),
            FileContent::Field(field) => facts.field(field).into_bytes(),
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&path)?;
        out.write_all(&bytes)?;
        // The umask does not narrow what the manifest asks.
        std::fs::set_permissions(
            &path,
            std::os::unix::fs::PermissionsExt::from_mode(file.mode),
        )?;
        if let Some(Component::Normal(first)) = Path::new(&file.path).components().next() {
            top.insert(first.to_owned());
        }
    }
    std::os::unix::fs::symlink(&stamp, dir.join("..data"))?;
    for name in top {
        let target = Path::new("..data").join(&name);
        std::os::unix::fs::symlink(target, dir.join(&name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_is_as_kubernetes_does_it() {
        let vars = BTreeMap::from([("A".to_owned(), "x".to_owned())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$-$", &vars), "x-$(B)-$(A)-$-$");
        assert_eq!(expand("$(A", &vars), "$(A");
    }

    #[test]
    fn modes_are_read_as_kubernetes_reads_them() {
        let v = |s: &str| serde_norway::from_str::<Value>(s).expect("yaml");
        assert_eq!(mode("m", Some(&v("420"))), Ok(0o644));
        assert_eq!(mode("m", Some(&v("0400"))), Ok(0o400));
        assert_eq!(mode("m", Some(&v("0o600"))), Ok(0o600));
        assert!(mode("m", Some(&v("0999"))).is_err());
        assert!(mode("m", Some(&v("1000"))).is_err());
    }

    #[test]
    fn resource_field_refs_are_as_the_kubelet_gives_them() {
        let spec: Value = serde_norway::from_str(
            "containers: [{name: app, resources: {limits: {cpu: 500m, memory: 64Mi}, requests: {cpu: 250m}}}, {name: free}]",
        )
        .expect("yaml");
        let config = Config::default().for_pod(Some(&spec));
        let value = |yaml: &str, container: &str| {
            let r: RawResourceRef = serde_norway::from_str(yaml).expect("yaml");
            config.resource("r", &r, Some(container))
        };
        assert_eq!(value("{resource: limits.cpu}", "app"), Ok("1".to_owned()));
        assert_eq!(
            value("{resource: limits.cpu, divisor: 1m}", "app"),
            Ok("500".to_owned())
        );
        assert_eq!(
            value("{resource: requests.cpu, divisor: 1m}", "app"),
            Ok("250".to_owned())
        );
        assert_eq!(
            value("{resource: limits.memory, divisor: 1Mi}", "app"),
            Ok("64".to_owned())
        );
        assert_eq!(
            value("{resource: requests.memory}", "app"),
            Ok("67108864".to_owned())
        );
        assert_eq!(
            value("{resource: requests.memory}", "free"),
            Ok("0".to_owned())
        );
        assert_eq!(
            value("{resource: limits.cpu}", "free"),
            Ok((capacity("cpu") / 1000).to_string())
        );
        assert!(value("{resource: limits.hugepages-2Mi}", "app").is_err());
        assert!(value("{resource: limits.cpu, divisor: lots}", "app").is_err());
    }

    #[test]
    fn sub_paths_stay_in_the_volume() {
        assert_eq!(sub_path("s", "a/b"), Ok(Some("a/b".to_owned())));
        assert_eq!(sub_path("s", ""), Ok(None));
        for hostile in ["/etc", "../x", "a/../../x", "a/.."] {
            assert!(sub_path("s", hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn item_paths_stay_in_the_volume() {
        assert!(item_path("p", Some("a/b")).is_ok());
        for hostile in ["/etc/passwd", "../x", "a/../../x", "..x", ""] {
            assert!(item_path("p", Some(hostile)).is_err(), "{hostile}");
        }
    }
}
