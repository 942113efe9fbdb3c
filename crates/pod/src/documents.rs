//! Files as `kubectl apply -f` takes them: several YAML documents (`---`) and `kind: List`s;
//! ConfigMaps and Secrets feed the pods; every Pod is played, and a Deployment, ReplicaSet,
//! StatefulSet, DaemonSet or Job plays its pod template as its controller would name and
//! label the pods; other kinds are skipped, each named.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde::Deserialize as _;
use serde_norway::{Mapping, Value};

use crate::config::{Config, PodFacts};
use crate::manifest::{bad, ManifestError, Parsed};

/// What a file holds to play.
#[derive(Debug, Clone)]
pub struct Documents {
    /// The pods, in the file's order (a controller's replicas in theirs).
    pub pods: Vec<PlannedPod>,
    /// The controllers whose pods are played (their existing pods are theirs, for
    /// `--replace` and `--down`).
    pub owners: Vec<Owner>,
    /// One line per document skipped, naming its kind and name.
    pub skipped: Vec<String>,
    /// One line per field of a controller that has no effect, naming it.
    pub warnings: Vec<String>,
}

/// One pod to play.
#[derive(Debug, Clone)]
pub struct PlannedPod {
    /// Its checked plan and the warnings of its fields.
    pub parsed: Parsed,
    /// Its fields for the downward API (the network's are filled in by `play`).
    pub facts: PodFacts,
}

/// A controller whose pod template is played, and how it names its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its kind (`Deployment`, ...).
    pub kind: String,
    /// Its `metadata.name`.
    pub name: String,
    /// The labels its pods have (its selector's, else its template's).
    pub selector: BTreeMap<String, String>,
}

impl Owner {
    /// Whether a pod called `pod` with `labels` is this controller's: it has the name the
    /// controller gives its pods and the labels its selector selects.
    pub fn owns(&self, pod: &str, labels: &BTreeMap<String, String>) -> bool {
        if !self.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
        let Some(rest) = pod.strip_prefix(&format!("{}-", self.name)) else {
            return false;
        };
        let safe = |s: &str, n: std::ops::RangeInclusive<usize>| {
            n.contains(&s.len()) && s.chars().all(|c| ALPHABET.contains(&(c as u8)))
        };
        match self.kind.as_str() {
            "StatefulSet" => !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()),
            "Deployment" => rest
                .split_once('-')
                .is_some_and(|(hash, suffix)| safe(hash, 1..=10) && safe(suffix, 5..=5)),
            _ => safe(rest, 5..=5),
        }
    }
}

/// The characters Kubernetes' generated names use (`rand.String`, `SafeEncodeString`): no
/// vowels, no look-alikes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The controllers peapod plays, with the apiVersion each has.
const CONTROLLERS: &[(&str, &str)] = &[
    ("Deployment", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("Job", "batch/v1"),
];

/// The YAML documents of `text`, `kind: List`s opened; empty documents left out. Bad YAML
/// is reported by its line.
fn documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(de).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            bad(format!("malformed YAML{at}"), message)
        })?;
        if value.is_null() {
            continue;
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            match value.get("items") {
                Some(Value::Sequence(items)) => docs.extend(items.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(_) => return Err(bad("items", "a List's items must be a sequence")),
            }
            continue;
        }
        docs.push(value);
    }
    Ok(docs)
}

/// A document's `kind` and `metadata.name`, for messages.
fn describe(doc: &Value) -> (String, String) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    (kind.to_owned(), name.to_owned())
}

/// Checks that `doc` (of kind `kind`) has apiVersion `expected`.
fn api_version(doc: &Value, kind: &str, expected: &str) -> Result<(), ManifestError> {
    match doc.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == expected => Ok(()),
        Some(v) => Err(bad(
            "apiVersion",
            format!("{v:?} for a {kind}: expected {expected}"),
        )),
        None => Err(bad("apiVersion", format!("missing: expected {expected}"))),
    }
}

/// Parses and checks every document of `text` (the ConfigMaps and Secrets of `config_texts`,
/// `--configmap` files, feed its pods too). A relative `image` is taken from `base`.
/// Nothing on the host is changed. An error in a file of several documents names the
/// document.
pub fn parse_file(
    text: &str,
    base: &Path,
    config_texts: &[(String, String)],
) -> Result<Documents, ManifestError> {
    if text.trim().is_empty() {
        return Err(bad(
            "manifest",
            "empty: expected a Pod (apiVersion: v1, kind: Pod)",
        ));
    }
    let docs = documents(text)?;
    let several = docs.len() > 1;
    let in_doc = |i: usize, doc: &Value| {
        let (kind, name) = describe(doc);
        move |mut e: ManifestError| {
            if several {
                e.field = format!("document {} ({kind} {name}): {}", i + 1, e.field);
            }
            e
        }
    };
    let mut config = Config::default();
    for (file, text) in config_texts {
        for doc in documents(text).map_err(|mut e| {
            e.field = format!("{file}: {}", e.field);
            e
        })? {
            let (kind, name) = describe(&doc);
            let named = |mut e: ManifestError| {
                e.field = format!("{file} ({kind} {name}): {}", e.field);
                e
            };
            if kind != "ConfigMap" && kind != "Secret" {
                return Err(named(bad("kind", "expected ConfigMap or Secret")));
            }
            api_version(&doc, &kind, "v1").map_err(named)?;
            config.add(&kind, &doc, "").map_err(named)?;
        }
    }
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "ConfigMap" || kind == "Secret" {
            api_version(doc, kind, "v1")
                .and_then(|()| config.add(kind, doc, ""))
                .map_err(in_doc(i, doc))?;
        }
    }
    let mut played = Documents {
        pods: Vec::new(),
        owners: Vec::new(),
        skipped: Vec::new(),
        warnings: Vec::new(),
    };
    for (i, doc) in docs.iter().enumerate() {
        let (kind, name) = describe(doc);
        let wrap = in_doc(i, doc);
        match kind.as_str() {
            "ConfigMap" | "Secret" => {}
            "Pod" => {
                api_version(doc, "Pod", "v1").map_err(&wrap)?;
                played.pods.push(pod(doc.clone(), base, &config).map_err(&wrap)?);
            }
            _ if doc.get("kind").and_then(Value::as_str).is_none() => {
                return Err(wrap(bad("kind", "missing: expected Pod")));
            }
            _ => match CONTROLLERS.iter().find(|(k, _)| *k == kind) {
                Some((kind, version)) => {
                    api_version(doc, kind, version).map_err(&wrap)?;
                    let (pods, selector) = controller(kind, doc, base, &config).map_err(&wrap)?;
                    for key in controller_extra(doc).map_err(&wrap)? {
                        played.warnings.push(format!(
                            "{kind} {name}: spec.{key}: ignored (no controller keeps watching the pods)"
                        ));
                    }
                    played.pods.extend(pods);
                    played.owners.push(Owner {
                        kind: (*kind).to_owned(),
                        name,
                        selector,
                    });
                }
                None => played.skipped.push(format!(
                    "skipped {kind} {name}: peapod plays Pods and the pod templates of Deployments, ReplicaSets, StatefulSets, DaemonSets and Jobs"
                )),
            },
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &played.pods {
        if !names.insert(p.parsed.plan.name.clone()) {
            return Err(bad(
                "metadata.name",
                format!("two pods named {:?}", p.parsed.plan.name),
            ));
        }
    }
    if played.pods.is_empty() && played.owners.is_empty() {
        return Err(bad(
            "kind",
            match played.skipped.is_empty() {
                true => {
                    "nothing to play: expected a Pod or a controller with a pod template".to_owned()
                }
                false => format!("nothing to play ({})", played.skipped.join("; ")),
            },
        ));
    }
    Ok(played)
}

/// A Pod document, checked, with its facts for the downward API.
fn pod(doc: Value, base: &Path, config: &Config) -> Result<PlannedPod, ManifestError> {
    let metadata = doc.get("metadata");
    let string = |field: &str| {
        metadata
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let annotations = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(|a| serde_norway::from_value(a.clone()).ok())
        .unwrap_or_default();
    let namespace = string("namespace").unwrap_or_else(|| "default".to_owned());
    let service_account = doc
        .get("spec")
        .and_then(|s| s.get("serviceAccountName"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let parsed = crate::manifest::parse_value(doc, base, config)?;
    let facts = PodFacts {
        name: parsed.plan.name.clone(),
        namespace,
        uid: uuid(),
        labels: parsed.plan.labels.clone(),
        annotations,
        service_account,
        ..PodFacts::default()
    };
    Ok(PlannedPod { parsed, facts })
}

/// The pods a controller (`kind`) document makes from its template, and the labels that
/// select them.
fn controller(
    kind: &str,
    doc: &Value,
    base: &Path,
    config: &Config,
) -> Result<(Vec<PlannedPod>, BTreeMap<String, String>), ManifestError> {
    let (_, name) = describe(doc);
    let spec = doc.get("spec").ok_or_else(|| bad("spec", "missing"))?;
    let template = spec
        .get("template")
        .ok_or_else(|| bad("spec.template", "missing"))?;
    let template_labels: BTreeMap<String, String> = template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .map(|l| serde_norway::from_value(l.clone()))
        .transpose()
        .map_err(|e| bad("spec.template.metadata.labels", e.to_string()))?
        .unwrap_or_default();
    let selector = check_selector(spec, &template_labels)?;
    let count = |field: &str| -> Result<u64, ManifestError> {
        match spec.get(field) {
            None | Some(Value::Null) => Ok(1),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(format!("spec.{field}"), "expected a number from 0")),
        }
    };
    let policy = template
        .get("spec")
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str);
    let replicas = match kind {
        "DaemonSet" => 1,
        "Job" => {
            if !matches!(policy, Some("Never" | "OnFailure")) {
                return Err(bad(
                    "spec.template.spec.restartPolicy",
                    "a Job's pods need Never or OnFailure",
                ));
            }
            count("completions")?
        }
        _ => {
            if !matches!(policy, None | Some("Always")) {
                return Err(bad(
                    "spec.template.spec.restartPolicy",
                    format!("a {kind}'s pods restart Always (the only value it takes)"),
                ));
            }
            count("replicas")?
        }
    };
    if replicas > 100 {
        return Err(bad(
            if kind == "Job" {
                "spec.completions"
            } else {
                "spec.replicas"
            },
            format!("{replicas}: peapod plays at most 100 pods of one controller"),
        ));
    }
    let hash = encode(
        &fnv32a(
            serde_json::to_string(&serde_json::to_value(template).unwrap_or_default())
                .unwrap_or_default()
                .as_bytes(),
        )
        .to_string(),
    );
    let mut pods = Vec::new();
    for i in 0..replicas {
        let (pod_name, extra): (String, Vec<(&str, String)>) = match kind {
            "Deployment" => (
                format!("{name}-{hash}-{}", random_suffix()),
                vec![("pod-template-hash", hash.clone())],
            ),
            "StatefulSet" => (
                format!("{name}-{i}"),
                vec![
                    ("statefulset.kubernetes.io/pod-name", format!("{name}-{i}")),
                    ("apps.kubernetes.io/pod-index", i.to_string()),
                ],
            ),
            "Job" => (
                format!("{name}-{}", random_suffix()),
                vec![
                    ("job-name", name.clone()),
                    ("batch.kubernetes.io/job-name", name.clone()),
                ],
            ),
            _ => (format!("{name}-{}", random_suffix()), Vec::new()),
        };
        let mut labels = template_labels.clone();
        labels.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let pod_doc = pod_of_template(template, &pod_name, &labels)?;
        let mut planned = pod(pod_doc, base, config).map_err(in_template)?;
        for warning in &mut planned.parsed.warnings {
            if warning.starts_with("spec") || warning.starts_with("metadata") {
                *warning = format!("spec.template.{warning}");
            }
        }
        pods.push(planned);
    }
    Ok((pods, selector))
}

/// The fields of a controller's spec that peapod does not play; `volumeClaimTemplates`
/// refused.
fn controller_extra(doc: &Value) -> Result<Vec<String>, ManifestError> {
    let Some(Value::Mapping(spec)) = doc.get("spec") else {
        return Ok(Vec::new());
    };
    let mut extra = Vec::new();
    for key in spec.keys().filter_map(Value::as_str) {
        match key {
            "replicas" | "selector" | "template" | "completions" => {}
            "volumeClaimTemplates" => {
                return Err(bad(
                    "spec.volumeClaimTemplates",
                    "not supported: no storage provider to claim volumes from",
                ))
            }
            other => extra.push(other.to_owned()),
        }
    }
    Ok(extra)
}

/// An error in a pod made from a template, named by its field in the controller.
fn in_template(mut e: ManifestError) -> ManifestError {
    if e.field.starts_with("spec") || e.field.starts_with("metadata") {
        e.field = format!("spec.template.{}", e.field);
    }
    e
}

/// A Pod document of `template`, named `name` with `labels`.
fn pod_of_template(
    template: &Value,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Value, ManifestError> {
    let mut metadata = match template.get("metadata") {
        Some(Value::Mapping(m)) => m.clone(),
        None | Some(Value::Null) => Mapping::new(),
        Some(_) => return Err(bad("spec.template.metadata", "expected a mapping")),
    };
    metadata.insert("name".into(), name.into());
    metadata.insert(
        "labels".into(),
        serde_norway::to_value(labels).map_err(|e| bad("spec.template.metadata", e.to_string()))?,
    );
    let mut pod = Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    pod.insert("metadata".into(), Value::Mapping(metadata));
    pod.insert(
        "spec".into(),
        template.get("spec").cloned().unwrap_or(Value::Null),
    );
    Ok(Value::Mapping(pod))
}

/// `spec.selector.matchLabels`, which must select the template's `labels`, as the API
/// server checks; the template's labels when there is none.
fn check_selector(
    spec: &Value,
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let Some(selector) = spec.get("selector").and_then(|s| s.get("matchLabels")) else {
        return Ok(labels.clone());
    };
    let wanted: BTreeMap<String, String> = serde_norway::from_value(selector.clone())
        .map_err(|e| bad("spec.selector.matchLabels", e.to_string()))?;
    for (k, v) in &wanted {
        if labels.get(k) != Some(v) {
            return Err(bad(
                "spec.selector.matchLabels",
                format!("{k}={v} does not select spec.template.metadata.labels"),
            ));
        }
    }
    Ok(wanted)
}

/// FNV-1a, 32 bits: the hash Kubernetes takes of a pod template (`pod-template-hash`).
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Kubernetes' `rand.SafeEncodeString`: each character mapped into [`ALPHABET`].
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// `n` random bytes from the kernel, or (should /dev/urandom be unreadable) bytes of the
/// clock and process id: the names only need to differ.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    bytes
}

/// Five characters of [`ALPHABET`], as a controller's generated pod names end.
fn random_suffix() -> String {
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// A random (version 4) UUID, as `metadata.uid`.
fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello, mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {password: czNjcjN0}
stringData: {user: admin}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox:1
        env:
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
        - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
        - {name: MISSING, valueFrom: {secretKeyRef: {name: creds, key: nope, optional: true}}}
        - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: MSG, value: '$(GREETING) from $(IP) $$(GREETING) $(NOPE)'}
        envFrom: [{configMapRef: {name: settings}, prefix: CFG_}]
";

    #[test]
    fn documents_feed_and_name_the_pods() {
        let dir = tempfile::tempdir().expect("tempdir");
        let played = parse_file(FILE, dir.path(), &[]).expect("parses");
        assert_eq!(played.pods.len(), 2);
        assert_eq!(played.skipped.len(), 1, "{:?}", played.skipped);
        assert!(played.skipped[0].starts_with("skipped Service web"));
        let owner = &played.owners[0];
        let names: Vec<_> = played
            .pods
            .iter()
            .map(|p| p.parsed.plan.name.clone())
            .collect();
        assert_ne!(names[0], names[1]);
        let labels = &played.pods[0].parsed.plan.labels;
        for name in &names {
            assert!(owner.owns(name, labels), "{name}");
            let (hash, suffix) = name["web-".len()..].split_once('-').expect("two parts");
            assert!(hash.len() >= 8 && suffix.len() == 5, "{name}");
        }
        assert!(!owner.owns("web-1", labels) && !owner.owns("webb-abc-bcdfg", labels));
        assert!(!owner.owns(&names[0], &BTreeMap::new()), "not selected");
        let pod = &played.pods[0];
        assert_eq!(pod.parsed.plan.labels["app"], "web");
        assert!(pod.parsed.plan.labels.contains_key("pod-template-hash"));
        let mut facts = pod.facts.clone();
        facts.pod_ips = vec!["10.0.0.7".into()];
        let mut plan = pod.parsed.plan.clone();
        crate::config::resolve(&mut plan, &facts).expect("resolves");
        let env = &plan.containers[0].env;
        for expected in [
            "CFG_greeting=hello",
            "CFG_mode=fast",
            "GREETING=hello",
            "PASSWORD=s3cr3t",
            "IP=10.0.0.7",
            "MSG=hello from 10.0.0.7 $(GREETING) $(NOPE)",
        ] {
            assert!(env.contains(&expected.to_owned()), "{expected} in {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("MISSING=")), "{env:?}");
    }

    const STATEFUL: &str = "
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    replicas: 3
    serviceName: db
    template:
      metadata: {labels: {app: db}}
      spec:
        containers: [{name: main, image: busybox:1}]
- apiVersion: batch/v1
  kind: Job
  metadata: {name: once}
  spec:
    backoffLimit: 2
    template:
      spec:
        restartPolicy: OnFailure
        containers: [{name: main, image: busybox:1}]
";

    #[test]
    fn lists_stateful_sets_and_jobs_are_played_as_their_controllers_name_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let played = parse_file(STATEFUL, dir.path(), &[]).expect("parses");
        let names: Vec<_> = played
            .pods
            .iter()
            .map(|p| p.parsed.plan.name.clone())
            .collect();
        assert_eq!(names[..3], ["db-0", "db-1", "db-2"]);
        assert_eq!(
            played.pods[2].parsed.plan.labels["apps.kubernetes.io/pod-index"],
            "2"
        );
        assert!(
            names[3].starts_with("once-") && names[3].len() == 10,
            "{names:?}"
        );
        let job = &played.pods[3].parsed.plan;
        assert_eq!(job.restart, crate::RestartPolicy::OnFailure);
        assert_eq!(job.labels["job-name"], "once");
        let warnings = played.warnings.join("\n");
        assert!(
            warnings.contains("StatefulSet db: spec.serviceName: ignored"),
            "{warnings}"
        );
        assert!(
            warnings.contains("Job once: spec.backoffLimit: ignored"),
            "{warnings}"
        );
        for (from, to, error) in [
            (
                "restartPolicy: OnFailure",
                "restartPolicy: Always",
                "spec.template.spec.restartPolicy: a Job's pods need Never or OnFailure",
            ),
            (
                "serviceName: db",
                "volumeClaimTemplates: []",
                "spec.volumeClaimTemplates: not supported",
            ),
            (
                "replicas: 3",
                "replicas: 3\n    selector: {matchLabels: {app: web}}",
                "spec.selector.matchLabels: app=web does not select",
            ),
            (
                "containers: [{name: main, image: busybox:1}]\n- api",
                "containers: [{name: main}]\n- api",
                "spec.template.spec.containers[0].image: missing",
            ),
        ] {
            let e = parse_file(&STATEFUL.replacen(from, to, 1), dir.path(), &[])
                .expect_err("refused")
                .to_string();
            assert!(e.contains(error), "{error:?} in {e}");
        }
    }

    #[test]
    fn volume_items_and_keys_stay_in_their_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = |volume: &str| {
            format!("{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  volumes: [{{name: v, {volume}}}]\n  containers: [{{name: c, image: busybox:1}}]\n", &FILE[..FILE.find("---\napiVersion: v1\nkind: Service").expect("service")])
        };
        let files = parse_file(&pod("secret: {secretName: creds}"), dir.path(), &[])
            .expect("parses")
            .pods[0]
            .parsed
            .volume_files["v"]
            .clone();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.mode == 0o644), "{files:?}");
        for (volume, error) in [
            (
                "configMap: {name: settings, items: [{key: greeting, path: ../../etc/x}]}",
                "items[0].path: \"../../etc/x\" must not contain '..'",
            ),
            (
                "configMap: {name: settings, items: [{key: greeting, path: /etc/x}]}",
                "must be a relative path",
            ),
            (
                "configMap: {name: nope}",
                "configMap.name: no ConfigMap \"nope\"",
            ),
            (
                "projected: {sources: [{serviceAccountToken: {path: token}}]}",
                "sources[0].serviceAccountToken: not supported",
            ),
            (
                "secret: {secretName: creds, defaultMode: 0999}",
                "defaultMode: expected a mode",
            ),
        ] {
            let e = parse_file(&pod(volume), dir.path(), &[])
                .expect_err("refused")
                .to_string();
            assert!(e.contains(error), "{error:?} in {e}");
        }
        let optional = parse_file(
            &pod("configMap: {name: nope, optional: true}"),
            dir.path(),
            &[],
        )
        .expect("an optional missing ConfigMap is an empty volume");
        assert!(optional.pods[0].parsed.volume_files["v"].is_empty());
    }

    #[test]
    fn bad_documents_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = parse_file(
            &FILE.replace("apiVersion: apps/v1", "apiVersion: apps/v1beta1"),
            dir.path(),
            &[],
        )
        .expect_err("refused")
        .to_string();
        assert!(
            e.starts_with("document 4 (Deployment web): apiVersion: \"apps/v1beta1\" for a Deployment: expected apps/v1"),
            "{e}"
        );
        let e = parse_file(&FILE.replace("key: greeting", "key: nope"), dir.path(), &[])
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef.key: ConfigMap \"settings\" has no key \"nope\""),
            "{e}"
        );
    }
}
