//! Credentials and challenges: basic credentials from the auth files podman and docker
//! write, and the `WWW-Authenticate` header a registry answers an anonymous request with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::{Error, Result};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub(crate) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The auth files looked at, in order, as podman and skopeo do: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, then docker's `~/.docker/config.json`.
pub fn default_auth_files() -> Vec<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut files = Vec::new();
    files.extend(var("REGISTRY_AUTH_FILE").map(PathBuf::from));
    files.extend(var("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("containers/auth.json")));
    files.extend(var("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")));
    files
}

/// The credentials for `registry` (`host[:port]`) in the first of `files` that has any.
/// Missing files are skipped; a file that exists but cannot be parsed is an error, since
/// silently pulling anonymously would hide the mistake.
pub fn find_credentials(files: &[PathBuf], registry: &str) -> Result<Option<Credentials>> {
    for file in files {
        if let Some(credentials) = credentials_in(file, registry)? {
            return Ok(Some(credentials));
        }
    }
    Ok(None)
}

fn credentials_in(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let bad = |problem: String| Error::AuthFile {
        path: path.display().to_string(),
        problem,
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let file: AuthFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    for (key, entry) in &file.auths {
        if key_host(key) != registry && !(is_docker_hub(registry) && is_docker_hub(key_host(key))) {
            continue;
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        let Some(auth) = &entry.auth else { continue };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| bad(format!("entry {key}: auth is not base64: {e}")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| bad(format!("entry {key}: auth is not UTF-8")))?;
        let Some((username, password)) = decoded.split_once(':') else {
            return Err(bad(format!("entry {key}: auth is not user:password")));
        };
        return Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    Ok(None)
}

/// The `host[:port]` of an auth file key, which may be a bare host, `host/path`, or a URL
/// (docker writes `https://index.docker.io/v1/`).
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm=...`: send the credentials themselves.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: get a token from `realm` first.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header (one challenge; the parameters quoted or not).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

/// `k="v", k2=v2`: values may be quoted (with commas inside quotes) or bare.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scope() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
    }

    #[test]
    fn a_basic_challenge_is_basic_and_unknown_schemes_are_none() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn credentials_are_found_by_host_url_or_docker_hub_alias() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("auth.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("ann:s3cr:et");
        std::fs::write(
            &file,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#
            ),
        )
        .expect("write");
        let files = vec![dir.path().join("missing.json"), file];
        let expected = Credentials {
            username: "ann".into(),
            password: "s3cr:et".into(),
        };
        assert_eq!(
            find_credentials(&files, "docker.io").expect("read"),
            Some(expected.clone())
        );
        assert_eq!(
            find_credentials(&files, "127.0.0.1:5000").expect("read"),
            Some(expected)
        );
        assert_eq!(find_credentials(&files, "quay.io").expect("read"), None);
    }

    #[test]
    fn a_malformed_auth_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("auth.json");
        std::fs::write(&file, "{not json").expect("write");
        let err = find_credentials(std::slice::from_ref(&file), "quay.io").expect_err("refused");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}
