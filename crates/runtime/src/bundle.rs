//! Reading a bundle's `config.json`, with errors that name the JSON path and position.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

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
/// `peapod` for the message.
pub fn load_untracked(bundle: &Path) -> Result<(PathBuf, Spec), BundleError> {
    load_with(bundle, |text| {
        serde_json::from_slice(text).map_err(|e| (String::new(), e))
    })
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
}
