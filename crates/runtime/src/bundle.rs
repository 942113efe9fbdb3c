//! Reading a bundle's `config.json`, with errors that name the JSON path and position.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::de::value::{Error as ValueError, MapDeserializer};
use serde::Deserialize as _;

/// A `config.json` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// It cannot be read (or the bundle directory resolved).
    #[error("{path}: {source}")]
    Read {
        /// The `config.json`.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `field` is the JSON path (`linux.namespaces[2].type`); it is left out when it says
    /// nothing: the document itself (`.`), or a syntax error between its keys (`?`).
    #[error("{path}: {}{source}", if matches!(field.as_str(), "" | "." | "?") { String::new() } else { format!("{field}: ") })]
    Parse {
        /// The `config.json`.
        path: PathBuf,
        /// The JSON path of the bad value.
        field: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// Its `ociVersion` is not 1.x.y.
    #[error("{path}: ociVersion: {version:?} is not a version 1.x.y of the runtime spec")]
    Version {
        /// The `config.json`.
        path: PathBuf,
        /// The version it gives.
        version: String,
    },
}

/// The bundle directory, absolute and without `.`, `..` or symlinks (as the state records
/// it, and as a relative `root.path` is resolved against), and its parsed spec.
pub fn load(bundle: &Path) -> Result<(PathBuf, Spec), BundleError> {
    load_with(bundle, |text| {
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de).map_err(|e| (e.path().to_string(), e.into_inner()))
    })
}

/// As [`load`], but a `config.json` that does not parse is a [`BundleError::Parse`] without
/// its `field`: serde_path_to_error's tracking is a second copy of the spec's whole
/// deserialiser, which a small binary (`peapod-oci`) leaves out, handing such a bundle to
/// `peapod` for the message. So is one with a section of another platform (`solaris`,
/// `windows`, `vm`, `zos`), which that binary does not parse (see [`LinuxSpec`]).
pub fn load_untracked(bundle: &Path) -> Result<(PathBuf, Spec), BundleError> {
    load_with(bundle, |text| {
        serde_json::from_slice::<LinuxSpec>(text)
            .and_then(LinuxSpec::into_spec)
            .map_err(|e| (String::new(), e))
    })
}

/// A `config.json` as [`Spec`] reads it, but for the sections of other platforms, which are
/// only noted: their deserialisers were ~40 kB of the static `peapod-oci`, for values nothing
/// on Linux reads. Fields, names, defaults and duplicate checks are `Spec`'s own.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinuxSpec {
    #[serde(default, rename = "ociVersion")]
    version: String,
    #[serde(default)]
    root: Option<oci_spec::runtime::Root>,
    #[serde(default)]
    mounts: Option<Vec<oci_spec::runtime::Mount>>,
    #[serde(default)]
    process: Option<oci_spec::runtime::Process>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    domainname: Option<String>,
    #[serde(default)]
    hooks: Option<oci_spec::runtime::Hooks>,
    #[serde(default)]
    annotations: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    linux: Option<oci_spec::runtime::Linux>,
    #[serde(default)]
    solaris: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    windows: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    vm: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    zos: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    uid_mappings: Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
    #[serde(default)]
    gid_mappings: Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
}

impl LinuxSpec {
    /// The [`Spec`] of the same content, or an error naming the other platform's section.
    fn into_spec(self) -> Result<Spec, serde_json::Error> {
        use serde::de::Error as _;
        let other = [
            ("solaris", self.solaris.is_some()),
            ("windows", self.windows.is_some()),
            ("vm", self.vm.is_some()),
            ("zos", self.zos.is_some()),
        ];
        if let Some((name, _)) = other.iter().find(|(_, present)| *present) {
            return Err(serde_json::Error::custom(format!(
                "{name}: not read by this binary"
            )));
        }
        // An empty spec (all fields unset, as `{}` gives) without a second JSON deserialiser
        // or `Spec::default`'s example container: `Spec`'s derive on a map of no entries.
        let none = std::iter::empty::<(&str, ())>();
        let mut spec = Spec::deserialize(MapDeserializer::<_, ValueError>::new(none))
            .map_err(serde_json::Error::custom)?;
        spec.set_version(self.version);
        spec.set_root(self.root);
        spec.set_mounts(self.mounts);
        spec.set_process(self.process);
        spec.set_hostname(self.hostname);
        spec.set_domainname(self.domainname);
        spec.set_hooks(self.hooks);
        spec.set_annotations(self.annotations);
        spec.set_linux(self.linux);
        // Not in the runtime spec (oci-spec deprecates them), but `Spec` reads them.
        #[allow(deprecated)]
        {
            spec.set_uid_mappings(self.uid_mappings);
            spec.set_gid_mappings(self.gid_mappings);
        }
        Ok(spec)
    }
}

/// [`load`] with `parse` turning the text into a spec, or the JSON path and the error.
fn load_with(
    bundle: &Path,
    parse: impl FnOnce(&[u8]) -> Result<Spec, (String, serde_json::Error)>,
) -> Result<(PathBuf, Spec), BundleError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| BundleError::Read {
        path: path.clone(),
        source,
    })?;
    // `std::path::absolute` would keep `..`: `--bundle ..` must not be recorded as `cwd/..`.
    let bundle = std::fs::canonicalize(bundle).map_err(|source| BundleError::Read {
        path: path.clone(),
        source,
    })?;
    let spec = parse(&text).map_err(|(field, source)| BundleError::Parse {
        path: path.clone(),
        field,
        source,
    })?;
    if !is_spec_version_1(spec.version()) {
        return Err(BundleError::Version {
            path,
            version: spec.version().clone(),
        });
    }
    Ok((bundle, spec))
}

/// Whether `version` is a semantic version `1.MINOR.PATCH` (with an optional pre-release
/// and build part), as runc requires of `ociVersion`.
fn is_spec_version_1(version: &str) -> bool {
    let core = version.split_once('+').map_or(version, |(core, _)| core);
    let core = core.split_once('-').map_or(core, |(core, _)| core);
    let parts: Vec<&str> = core.split('.').collect();
    let number = |p: &&str| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    };
    parts.len() == 3 && parts.iter().all(number) && parts[0] == "1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), text).expect("write");
        load(dir.path()).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn unknown_namespace_names_its_path() {
        let msg = load_text(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"foo"}]}}"#,
        );
        assert!(
            msg.contains("linux.namespaces[2].type: unknown variant `foo`"),
            "{msg}"
        );
    }

    #[test]
    fn oci_version_must_be_a_1_x_semver() {
        for good in [
            "1.0.0",
            "1.2.0",
            "1.0.2-dev",
            "1.1.0+build.5",
            "1.10.3-rc.1+x",
        ] {
            assert!(is_spec_version_1(good), "{good}");
        }
        for bad in [
            "", "1", "1.0", "2.0.0", "0.9.0", "1.0.x", "v1.0.0", "01.0.0", "1.0.0.0",
        ] {
            assert!(!is_spec_version_1(bad), "{bad}");
        }
        let msg = load_text(r#"{"ociVersion":"2.0.0"}"#);
        assert!(
            msg.contains(r#"ociVersion: "2.0.0" is not a version 1.x.y"#),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let msg = load_text("{\n  \"ociVersion\": \"1.0.2\"\n  \"process\": {}\n}");
        assert!(msg.contains("line 3 column 3"), "{msg}");
        assert!(!msg.contains("?"), "a path that says nothing: {msg}");
    }

    /// Both loaders on `spec` (a JSON object) in a bundle of their own.
    fn load_both(spec: &serde_json::Value) -> (Result<Spec, String>, Result<Spec, String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), spec.to_string()).expect("write");
        let spec = |loaded: Result<(PathBuf, Spec), BundleError>| {
            loaded.map(|(_, spec)| spec).map_err(|e| e.to_string())
        };
        (spec(load(dir.path())), spec(load_untracked(dir.path())))
    }

    #[test]
    fn untracked_reads_the_spec_load_reads() {
        let mut spec = serde_json::to_value(peapod_container::default_spec(Some((1000, 1000))))
            .expect("spec as JSON");
        spec["hooks"] = serde_json::json!({"poststop": [{"path": "/bin/true", "args": ["true"]}]});
        spec["annotations"] = serde_json::json!({"a": "b"});
        spec["domainname"] = serde_json::json!("example.org");
        spec["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        spec["windows"] = serde_json::Value::Null;
        let (tracked, untracked) = load_both(&spec);
        let tracked = tracked.expect("load");
        assert_eq!(Ok(tracked.clone()), untracked);
        assert!(
            tracked.hooks().is_some() && tracked.linux().is_some(),
            "{tracked:?}"
        );
        // `{}`: every field unset, as `Spec`'s own derive leaves it.
        let (tracked, untracked) = load_both(&serde_json::json!({"ociVersion": "1.0.2"}));
        assert_eq!(tracked, untracked);
    }

    #[test]
    fn untracked_leaves_other_platforms_sections_to_load() {
        for (platform, section) in [
            ("solaris", serde_json::json!({})),
            ("windows", serde_json::json!({})),
            ("vm", serde_json::json!({"kernel": {"path": "/vmlinuz"}})),
            ("zos", serde_json::json!({})),
        ] {
            let spec = serde_json::json!({"ociVersion": "1.0.2", platform: section});
            let (tracked, untracked) = load_both(&spec);
            assert!(tracked.is_ok(), "{platform}: {tracked:?}");
            let msg = untracked.expect_err(platform);
            assert!(msg.contains(&format!("{platform}: not read")), "{msg}");
        }
        // Their errors are the same: the same derive reads both.
        let spec = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": 1}, "hostname": "h"});
        let (tracked, untracked) = load_both(&spec);
        assert!(
            tracked.is_err() && untracked.is_err(),
            "{tracked:?} {untracked:?}"
        );
    }
}
