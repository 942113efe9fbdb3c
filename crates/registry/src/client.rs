//! One registry's HTTP API (`/v2/...`) for one repository: the choice of HTTPS or (only where
//! allowed) plain HTTP, and the authentication dance: an anonymous request, its `401` and
//! `WWW-Authenticate` challenge, then basic credentials or a bearer token, kept for the
//! following requests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use ureq::http::Response;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use crate::auth::{self, Challenge, Credentials};
use crate::{Error, Options, Result};

/// The CA bundle of Debian and its derivatives (and Alpine, Arch): the machine's own trust,
/// which includes any CA its administrator added.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A connection to one repository of one registry.
#[derive(Debug)]
pub(crate) struct Client {
    agent: Agent,
    /// `https://host[:port]` or `http://host[:port]`.
    base: String,
    /// `host[:port]`, as auth files and messages name it.
    registry: String,
    repository: String,
    credentials: Option<Credentials>,
    /// Whether plain HTTP is allowed for this registry (and so for its token server).
    insecure: bool,
    /// The `Authorization` header that the last challenge earned.
    authorization: Mutex<Option<String>>,
}

/// Whether a registry is one where plain HTTP is allowed: the loopback names, or one named
/// with `--insecure-registry` (with or without its port).
pub(crate) fn allows_plain_http(registry: &str, insecure_registries: &[String]) -> bool {
    let host = host_of(registry);
    matches!(host, "localhost" | "127.0.0.1" | "::1")
        || insecure_registries
            .iter()
            .any(|r| r == registry || (!r.contains(':') && r == host))
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl Client {
    /// Finds how to talk to `registry`: HTTPS, verified against the machine's CAs (and those
    /// of `--cert-dir` or `/etc/containers/certs.d/HOST`); where plain HTTP is allowed, HTTPS
    /// without verification first and then HTTP, as podman treats insecure registries.
    pub(crate) fn connect(registry: &str, repository: &str, options: &Options) -> Result<Client> {
        let insecure = allows_plain_http(registry, &options.insecure_registries);
        let credentials = auth::find_credentials(&options.auth_files, registry)?;
        // Certificates are not checked where plain HTTP is allowed anyway: reading and
        // parsing the machine's CA bundle would be wasted there.
        let roots = match insecure {
            true => RootCerts::WebPki,
            false => root_certs(registry, options.cert_dir.as_deref())?,
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(insecure)
            .build();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("peapod/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut client = Client {
            agent,
            base: format!("https://{registry}"),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            credentials,
            insecure,
            authorization: Mutex::new(None),
        };
        // The version check tells whether this is a registry at all, and over which scheme.
        let https_error = match client.agent.get(format!("{}/v2/", client.base)).call() {
            Ok(_) => return Ok(client),
            Err(e) => e,
        };
        if !insecure {
            return Err(Error::Insecure {
                registry: registry.to_owned(),
                problem: format!(
                    "HTTPS failed ({https_error}); if this registry serves plain HTTP, name it \
                     with --insecure-registry {registry}"
                ),
            });
        }
        tracing::debug!("{registry}: HTTPS failed ({https_error}), trying plain HTTP");
        client.base = format!("http://{registry}");
        let url = format!("{}/v2/", client.base);
        match client.agent.get(&url).call() {
            Ok(_) => Ok(client),
            Err(e) => Err(Error::Transport {
                url,
                source: Box::new(e),
            }),
        }
    }

    /// The registry's `host[:port]`.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// `GET /v2/REPOSITORY/PATH` with `accept`, authenticating when challenged. Error
    /// statuses are returned as responses for the caller to judge.
    pub(crate) fn get(&self, path: &str, accept: &str) -> Result<(String, Response<Body>)> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        let mut challenged = false;
        loop {
            let mut request = self.agent.get(&url).header("Accept", accept);
            if let Some(authorization) = lock(&self.authorization).clone() {
                request = request.header("Authorization", authorization);
            }
            let response = request.call().map_err(|e| Error::Transport {
                url: url.clone(),
                source: Box::new(e),
            })?;
            if response.status() != 401 {
                return Ok((url, response));
            }
            if challenged {
                return Err(self.unauthorized());
            }
            challenged = true;
            let challenge = response
                .headers()
                .get("WWW-Authenticate")
                .and_then(|h| h.to_str().ok())
                .and_then(auth::parse_challenge)
                .ok_or_else(|| self.unauthorized())?;
            let authorization = self.answer(&challenge)?;
            *lock(&self.authorization) = Some(authorization);
        }
    }

    fn unauthorized(&self) -> Error {
        Error::Unauthorized {
            registry: self.registry.clone(),
            had_credentials: self.credentials.is_some(),
        }
    }

    /// The `Authorization` header that answers `challenge`.
    fn answer(&self, challenge: &Challenge) -> Result<String> {
        let (realm, service, scope) = match challenge {
            Challenge::Basic => {
                return match &self.credentials {
                    Some(credentials) => Ok(credentials.basic_header()),
                    None => Err(self.unauthorized()),
                };
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => (realm, service, scope),
        };
        // The token server gets the credentials too: never over plain HTTP to a registry
        // that must use HTTPS.
        let allowed =
            realm.starts_with("https://") || (self.insecure && realm.starts_with("http://"));
        if !allowed {
            return Err(Error::Insecure {
                registry: self.registry.clone(),
                problem: format!("token realm {realm:?} is not an https:// URL"),
            });
        }
        let scope = scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let mut url = format!("{realm}{}scope={}", query_separator(realm), encode(&scope));
        if let Some(service) = service {
            url.push_str(&format!("&service={}", encode(service)));
        }
        let mut request = self.agent.get(&url);
        if let Some(credentials) = &self.credentials {
            request = request.header("Authorization", credentials.basic_header());
        }
        let mut response = request.call().map_err(|e| Error::Transport {
            url: url.clone(),
            source: Box::new(e),
        })?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(self.unauthorized()),
            status => return Err(status_error(&url, status, &mut response)),
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| Error::Transport {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let body: TokenResponse = serde_json::from_slice(&text).map_err(|e| Error::Status {
            url: url.clone(),
            status: 200,
            message: format!("the token server's answer is not JSON: {e}"),
        })?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Status {
                url,
                status: 200,
                message: "the token server sent no token".into(),
            })?;
        Ok(format!("Bearer {token}"))
    }
}

/// The error for an unexpected status, with the registry's own message (the distribution
/// spec's `{"errors":[{"code","message"}]}`) when it sent one.
pub(crate) fn status_error(url: &str, status: u16, response: &mut Response<Body>) -> Error {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let message = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .ok()
        .and_then(|text| serde_json::from_str::<Errors>(&text).ok())
        .map(|e| {
            e.errors
                .iter()
                .map(|e| match e.message.is_empty() {
                    true => e.code.clone(),
                    false => e.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    Error::Status {
        url: url.to_owned(),
        status,
        message,
    }
}

fn query_separator(url: &str) -> char {
    match url.contains('?') {
        true => '&',
        false => '?',
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking download thread does not make the header unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CAs HTTPS is verified against: the machine's bundle plus `*.crt` of the registry's
/// certificate directory (`--cert-dir`, else `/etc/containers/certs.d/HOST[:PORT]` and
/// `/etc/docker/certs.d/HOST[:PORT]`, as podman and docker read them). Without a system
/// bundle, Mozilla's roots compiled in.
fn root_certs(registry: &str, cert_dir: Option<&Path>) -> Result<RootCerts> {
    let dirs: Vec<PathBuf> = match cert_dir {
        Some(dir) => vec![dir.to_owned()],
        None => ["/etc/containers/certs.d", "/etc/docker/certs.d"]
            .iter()
            .map(|d| Path::new(d).join(registry))
            .collect(),
    };
    let mut extra = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        files.sort();
        for file in files {
            extra.extend(read_pem_certs(&file)?);
        }
    }
    let system = SYSTEM_CA_FILES
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .map(|pem| pem_certs(&pem));
    Ok(match system {
        Some(mut certs) => {
            certs.extend(extra);
            RootCerts::Specific(Arc::new(certs))
        }
        None if extra.is_empty() => RootCerts::WebPki,
        None => RootCerts::Specific(Arc::new(extra)),
    })
}

fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bad = |problem: String| Error::Certificate {
        path: path.display().to_string(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = pem_certs(&pem);
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn pem_certs(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_allowed_for_loopback_and_named_registries_only() {
        let none: &[String] = &[];
        assert!(allows_plain_http("localhost:5000", none));
        assert!(allows_plain_http("127.0.0.1:5000", none));
        assert!(allows_plain_http("[::1]:5000", none));
        assert!(!allows_plain_http("registry.example:5000", none));
        assert!(!allows_plain_http("127.0.0.2:5000", none));
        let named = ["127.0.0.2:5000".to_owned(), "internal".to_owned()];
        assert!(allows_plain_http("127.0.0.2:5000", &named));
        assert!(!allows_plain_http("127.0.0.2:5001", &named));
        assert!(allows_plain_http("internal:8080", &named));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("repository:test/busybox:pull"),
            "repository%3Atest%2Fbusybox%3Apull"
        );
    }
}
