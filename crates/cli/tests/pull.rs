//! `peapod pull` against a real registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on a loopback address with its own storage, filled by `skopeo copy` from the
//! busybox OCI archive `cargo xtask test` writes. Authentication goes through a small proxy
//! written here, which answers like a registry with a token server (or basic auth) in front.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{finish, wait_until, Outcome};

/// The busybox OCI archive, or `None` (and a skip line) when a tool or it is missing.
fn prerequisites() -> Option<PathBuf> {
    for tool in ["docker-registry", "skopeo"] {
        if !on_path(tool) {
            eprintln!("skipped: {tool} is not installed");
            return None;
        }
    }
    let archive = std::env::var_os("PEAPOD_BUSYBOX_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cri-images/busybox.tar")
        });
    if !archive.is_file() {
        eprintln!("skipped: no busybox OCI archive (`cargo xtask cri-images` writes it and PEAPOD_BUSYBOX_IMAGE names it)");
        return None;
    }
    Some(archive)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// A port nobody listens on at `ip` right now.
fn free_port(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A running `docker-registry`, killed (by its pid) and its storage removed on drop.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `IP:PORT`.
    host: String,
    archive: PathBuf,
}

impl Registry {
    /// A plain-HTTP registry on `ip`; `extra` is appended to its config (TLS, auth).
    fn start(archive: &Path, ip: &str, extra: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = format!("{ip}:{}", free_port(ip));
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{extra}",
                dir.path().join("storage").display()
            ),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut registry = Registry {
            child,
            dir,
            host,
            archive: archive.to_owned(),
        };
        wait_until("the registry to listen", || {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            TcpStream::connect(&registry.host).is_ok()
        });
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Copies the busybox archive to `HOST/NAME` with skopeo and `extra` flags.
    fn push(&self, name: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci-archive:{}", self.archive.display()))
            .arg(format!("docker://{}/{name}", self.host))
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Tags `TAG` in `REPOSITORY` as an OCI index of the manifest tagged `FROM`, listed for
    /// linux/arm64/v8 and (second) linux/amd64, as multi-platform images are pushed.
    fn push_index(&self, repository: &str, from: &str, tag: &str) {
        let v2 = self.dir.path().join("storage/docker/registry/v2");
        let link = v2.join(format!(
            "repositories/{repository}/_manifests/tags/{from}/current/link"
        ));
        let digest = std::fs::read_to_string(link).expect("tag link");
        let hex = digest.trim().trim_start_matches("sha256:");
        let size = std::fs::metadata(v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])))
            .expect("manifest blob")
            .len();
        let entry = |platform: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{size},"platform":{platform}}}"#,
                digest.trim()
            )
        };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
            entry(r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#),
            entry(r#"{"architecture":"amd64","os":"linux"}"#),
        );
        let mut stream = TcpStream::connect(&self.host).expect("connect");
        write!(
            stream,
            "PUT /v2/{repository}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{index}",
            self.host,
            index.len()
        )
        .expect("send index");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read answer");
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "index refused: {answer}"
        );
    }

    fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// How many blob downloads the registry has served.
    fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// The registry's file for the biggest blob (the layer), and its digest.
    fn biggest_blob(&self) -> (PathBuf, String) {
        let blobs = self
            .dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256");
        let mut best: Option<(u64, PathBuf, String)> = None;
        for prefix in std::fs::read_dir(&blobs).expect("blobs dir") {
            for blob in std::fs::read_dir(prefix.expect("entry").path()).expect("prefix dir") {
                let blob = blob.expect("entry").path();
                let data = blob.join("data");
                let size = std::fs::metadata(&data).expect("blob data").len();
                if best.as_ref().map_or(true, |(s, _, _)| size > *s) {
                    let hex = blob
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned();
                    best = Some((size, data, format!("sha256:{hex}")));
                }
            }
        }
        let (_, path, digest) = best.expect("the registry has blobs");
        (path, digest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store directory, its own per test.
struct Pulls {
    dir: tempfile::TempDir,
}

impl Pulls {
    fn new() -> Pulls {
        Pulls {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// `peapod --storage S pull ARGS`, with no auth file of the host's in sight.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = support::peapod();
        command
            .arg("--storage")
            .arg(self.storage())
            .arg("pull")
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("no-auth.json"));
        command
    }

    fn pull(&self, args: &[&str]) -> Outcome {
        finish(self.command(args).spawn().expect("spawn peapod pull"))
    }

    fn store(&self) -> peapod_image::Store {
        peapod_image::Store::open(&self.storage()).expect("open store")
    }

    fn resolve(&self, reference: &str) -> Option<peapod_image::Image> {
        self.store().resolve(reference).expect("resolve")
    }

    /// What is left in the store's temporary directory.
    fn temp_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.storage().join("tmp"))
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn assert_pulled(outcome: &Outcome) {
    assert_eq!(outcome.code, 0, "pull failed: {}", outcome.stderr);
}

/// The one line a failed command printed.
fn one_line_error(outcome: &Outcome) -> &str {
    assert_ne!(outcome.code, 0, "pull succeeded: {}", outcome.stderr);
    let lines: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains("error"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {}", outcome.stderr);
    lines[0]
}

#[test]
fn pull_stores_the_image_and_a_second_pull_downloads_nothing() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/busybox:1", &[]);
    let pulls = Pulls::new();
    let reference = registry.reference("test/busybox:1");

    let first = pulls.pull(&[&reference]);
    assert_pulled(&first);
    let image = pulls
        .resolve(&reference)
        .expect("the image is in the store");
    assert_eq!(
        first.stdout.trim(),
        image.id.to_string(),
        "the id on stdout"
    );
    assert!(
        image.layers[0].join("bin/busybox").is_file(),
        "the layer is unpacked"
    );
    assert_eq!(image.manifest_media_type, peapod_image::OCI_MANIFEST);
    let downloads = registry.blob_gets();
    assert_eq!(downloads, 2, "config and layer: {}", registry.log());
    assert!(
        pulls.temp_entries().is_empty(),
        "{:?}",
        pulls.temp_entries()
    );

    let second = pulls.pull(&[&reference]);
    assert_pulled(&second);
    assert_eq!(
        registry.blob_gets(),
        downloads,
        "the second pull downloaded a blob"
    );
    assert!(
        second.stderr.contains("0 blob(s) to download"),
        "{}",
        second.stderr
    );
    assert_eq!(second.stdout.trim(), image.id.to_string());

    // --quiet: the id and nothing on stderr.
    let quiet = pulls.pull(&["--quiet", &reference]);
    assert_pulled(&quiet);
    assert_eq!(quiet.stderr, "");

    // By digest: the same image, under that name too.
    let pinned = format!(
        "{}@{}",
        registry.reference("test/busybox"),
        image.manifest_digest
    );
    assert_pulled(&pulls.pull(&["--quiet", &pinned]));
    let by_digest = pulls.resolve(&pinned).expect("named by digest");
    assert_eq!(by_digest.id, image.id);
    assert_eq!(registry.blob_gets(), downloads);
}

#[test]
fn pull_of_an_index_picks_this_machines_platform_and_platform_chooses() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/multi:single", &[]);
    registry.push_index("test/multi", "single", "1");
    let pulls = Pulls::new();
    let reference = registry.reference("test/multi:1");

    let missing = pulls.pull(&["--platform", "linux/riscv64", &reference]);
    let line = one_line_error(&missing);
    assert!(line.contains("no manifest for linux/riscv64"), "{line}");
    assert!(
        line.contains("linux/amd64"),
        "names what the index has: {line}"
    );
    assert!(pulls.resolve(&reference).is_none());

    assert_pulled(&pulls.pull(&[&reference]));
    let image = pulls.resolve(&reference).expect("pulled");
    assert_eq!(
        image.manifest_media_type,
        peapod_image::OCI_MANIFEST,
        "the platform's manifest, not the index"
    );
    assert!(image.layers[0].join("bin/busybox").is_file());
}

#[test]
fn pull_of_a_docker_v2s2_image_with_a_gzip_layer() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push(
        "test/docker:1",
        &[
            "--format",
            "v2s2",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
        ],
    );
    let pulls = Pulls::new();
    let reference = registry.reference("test/docker:1");
    assert_pulled(&pulls.pull(&[&reference]));
    let image = pulls.resolve(&reference).expect("pulled");
    assert_eq!(image.manifest_media_type, peapod_image::DOCKER_MANIFEST);
    let manifest = pulls
        .store()
        .read_blob(&image.manifest_digest)
        .expect("manifest");
    let manifest = String::from_utf8_lossy(&manifest);
    assert!(
        manifest.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{manifest}"
    );
    assert!(image.layers[0].join("bin/busybox").is_file());
}

#[test]
fn pull_of_an_oci_image_with_a_zstd_layer() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push(
        "test/zstd:1",
        &["--dest-compress", "--dest-compress-format", "zstd"],
    );
    let pulls = Pulls::new();
    let reference = registry.reference("test/zstd:1");
    assert_pulled(&pulls.pull(&[&reference]));
    let image = pulls.resolve(&reference).expect("pulled");
    let manifest = pulls
        .store()
        .read_blob(&image.manifest_digest)
        .expect("manifest");
    let manifest = String::from_utf8_lossy(&manifest);
    assert!(
        manifest.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{manifest}"
    );
    assert!(image.layers[0].join("bin/busybox").is_file());
}

#[test]
fn a_blob_corrupted_in_the_registry_is_refused_and_nothing_is_stored() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/busybox:1", &[]);
    let (data, digest) = registry.biggest_blob();
    // Same size, different bytes: only the digest can tell.
    let mut bytes = std::fs::read(&data).expect("read blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).expect("tamper");

    let pulls = Pulls::new();
    let reference = registry.reference("test/busybox:1");
    let outcome = pulls.pull(&[&reference]);
    let line = one_line_error(&outcome);
    assert!(line.contains(&digest), "names the digest: {line}");
    assert!(line.contains("does not match"), "{line}");
    assert!(pulls.resolve(&reference).is_none(), "no image recorded");
    let digest: peapod_image::Digest = digest.parse().expect("digest");
    assert!(
        !pulls.store().has_blob(&digest),
        "the bad blob is not stored"
    );
    assert!(
        pulls.temp_entries().is_empty(),
        "{:?}",
        pulls.temp_entries()
    );
}

#[test]
fn a_missing_tag_or_a_bad_reference_gives_a_one_line_error() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/busybox:1", &[]);
    let pulls = Pulls::new();

    let reference = registry.reference("test/busybox:nope");
    let outcome = pulls.pull(&[&reference]);
    let line = one_line_error(&outcome);
    assert!(
        line.contains(&reference) && line.contains("not found"),
        "{line}"
    );
    assert_eq!(outcome.code, 125);

    let outcome = pulls.pull(&["UPPER/Case:x"]);
    let line = one_line_error(&outcome);
    assert!(line.contains("invalid image reference"), "{line}");
    assert_eq!(outcome.code, 2);
}

#[test]
fn plain_http_is_refused_for_a_registry_not_named_insecure() {
    let Some(archive) = prerequisites() else {
        return;
    };
    // 127.0.0.2 is loopback too, but not a name peapod trusts with plain HTTP.
    let registry = Registry::start(&archive, "127.0.0.2", "");
    registry.push("test/busybox:1", &[]);
    let pulls = Pulls::new();
    let reference = registry.reference("test/busybox:1");

    let refused = pulls.pull(&[&reference]);
    let line = one_line_error(&refused);
    assert!(
        line.contains(&format!("--insecure-registry {}", registry.host)),
        "says how to allow it: {line}"
    );
    assert!(pulls.resolve(&reference).is_none());
    assert_eq!(registry.blob_gets(), 0);

    assert_pulled(&pulls.pull(&["--insecure-registry", &registry.host, &reference]));
    assert!(pulls.resolve(&reference).is_some());
}

#[test]
fn https_with_a_ca_trusted_through_cert_dir() {
    let Some(archive) = prerequisites() else {
        return;
    };
    if !on_path("openssl") {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let certs = tempfile::tempdir().expect("tempdir");
    let ip = "127.0.0.2";
    make_certificates(certs.path(), ip);
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        certs.path().join("server.crt").display(),
        certs.path().join("server.key").display()
    );
    let registry = Registry::start(&archive, ip, &tls);
    registry.push("test/busybox:1", &[]);
    let pulls = Pulls::new();
    let reference = registry.reference("test/busybox:1");

    // Without the CA the certificate is not trusted, and plain HTTP is not tried.
    let untrusted = pulls.pull(&[&reference]);
    let line = one_line_error(&untrusted);
    assert!(line.to_lowercase().contains("certificate"), "{line}");

    let ca_dir = certs.path().join("ca");
    assert_pulled(&pulls.pull(&["--cert-dir", &ca_dir.display().to_string(), &reference]));
    assert!(pulls.resolve(&reference).is_some());
}

/// A CA (in `DIR/ca/ca.crt`) and a server certificate for `ip` that it signed.
fn make_certificates(dir: &Path, ip: &str) {
    std::fs::create_dir(dir.join("ca")).expect("ca dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca/ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=peapod test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        &format!("/CN={ip}"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca/ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

/// What the proxy in front of the registry demands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// A bearer token from its `/token` endpoint, which wants basic credentials.
    Bearer,
    /// Basic credentials on every request.
    Basic,
    /// Nothing, but blob downloads stall after their first bytes until the proxy stops.
    Stall,
}

const USER: &str = "pea";
const PASSWORD: &str = "pod:s3cret";
const TOKEN: &str = "token-for-test-busybox";

/// A registry front written for these tests: it answers `401` with the challenge a `Gate`
/// calls for, hands out a token at `/token`, and forwards what it lets through.
struct Proxy {
    host: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: &str, gate: Gate) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let host = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, upstream, host) = (stop.clone(), upstream.to_owned(), host.clone());
            std::thread::spawn(move || {
                let mut connections = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (stop, upstream, host) =
                                (stop.clone(), upstream.clone(), host.clone());
                            connections.push(std::thread::spawn(move || {
                                let _ = serve(stream, &upstream, &host, gate, &stop);
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for connection in connections {
                    let _ = connection.join();
                }
            })
        };
        Proxy {
            host,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// One request (the client is told the connection closes after it).
fn serve(
    stream: TcpStream,
    upstream: &str,
    host: &str,
    gate: Gate,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    // A TLS handshake (peapod tries HTTPS first, even on loopback): this front speaks only
    // plain HTTP, so it hangs up, as a plain server's error would end the attempt.
    if reader.fill_buf()?.first() == Some(&0x16) {
        return Ok(());
    }
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        headers.push(line.trim().to_owned());
    }
    let authorization = headers
        .iter()
        .find_map(|h| {
            h.strip_prefix("Authorization: ")
                .or_else(|| h.strip_prefix("authorization: "))
        })
        .unwrap_or("")
        .to_owned();
    let mut out = stream;
    let reply = |out: &mut TcpStream, status: &str, extra: &str, body: &str| {
        write!(
            out,
            "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if path.starts_with("/token") {
        return match authorization == basic(USER, PASSWORD)
            && path.contains("scope=repository%3Atest%2Fbusybox%3Apull")
        {
            true => reply(
                &mut out,
                "200 OK",
                "",
                &format!("{{\"token\":\"{TOKEN}\"}}"),
            ),
            false => reply(&mut out, "401 Unauthorized", "", "{}"),
        };
    }
    let challenge = match gate {
        Gate::Bearer if authorization != format!("Bearer {TOKEN}") => Some(format!(
            "WWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"test\",scope=\"repository:test/busybox:pull\"\r\n"
        )),
        Gate::Basic if authorization != basic(USER, PASSWORD) => {
            Some("WWW-Authenticate: Basic realm=\"test\"\r\n".to_owned())
        }
        _ => None,
    };
    if let Some(challenge) = challenge {
        return reply(
            &mut out,
            "401 Unauthorized",
            &challenge,
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
        );
    }
    let accept = headers
        .iter()
        .find(|h| h.to_ascii_lowercase().starts_with("accept:"))
        .cloned()
        .unwrap_or_else(|| "Accept: */*".to_owned());
    let mut registry = TcpStream::connect(upstream)?;
    write!(
        registry,
        "GET {path} HTTP/1.1\r\nHost: {upstream}\r\n{accept}\r\nConnection: close\r\n\r\n"
    )?;
    // The response head, with its Connection header replaced.
    let mut upstream_reader = BufReader::new(registry);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if upstream_reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    out.write_all(head.as_bytes())?;
    if gate == Gate::Stall && path.contains("/blobs/") {
        let mut first = Vec::new();
        (&mut upstream_reader)
            .take(64 << 10)
            .read_to_end(&mut first)?;
        out.write_all(&first)?;
        out.flush()?;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        return Ok(());
    }
    std::io::copy(&mut upstream_reader, &mut out)?;
    Ok(())
}

/// An auth file with the test's credentials for `host`, as podman login writes it.
fn write_auth_file(path: &Path, host: &str, password: &str) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    std::fs::write(
        path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("write auth file");
}

#[test]
fn bearer_token_auth_with_credentials_from_the_auth_file() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/busybox:1", &[]);
    let proxy = Proxy::start(&registry.host, Gate::Bearer);
    let pulls = Pulls::new();
    let reference = format!("{}/test/busybox:1", proxy.host);

    let anonymous = pulls.pull(&[&reference]);
    let line = one_line_error(&anonymous);
    assert!(line.contains("authentication required"), "{line}");

    let auth_file = pulls.dir.path().join("auth.json");
    write_auth_file(&auth_file, &proxy.host, PASSWORD);
    let mut command = pulls.command(&[&reference]);
    command.env("REGISTRY_AUTH_FILE", &auth_file);
    assert_pulled(&finish(command.spawn().expect("spawn")));
    assert!(pulls.resolve(&reference).is_some());
}

#[test]
fn basic_auth_with_credentials_from_authfile_and_wrong_ones_refused() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/busybox:1", &[]);
    let proxy = Proxy::start(&registry.host, Gate::Basic);
    let pulls = Pulls::new();
    let reference = format!("{}/test/busybox:1", proxy.host);

    let wrong = pulls.dir.path().join("wrong.json");
    write_auth_file(&wrong, &proxy.host, "wrong");
    let outcome = pulls.pull(&["--authfile", &wrong.display().to_string(), &reference]);
    let line = one_line_error(&outcome);
    assert!(
        line.contains("credentials from the auth file were refused"),
        "{line}"
    );

    let right = pulls.dir.path().join("auth.json");
    write_auth_file(&right, &proxy.host, PASSWORD);
    assert_pulled(&pulls.pull(&["--authfile", &right.display().to_string(), &reference]));
    assert!(pulls.resolve(&reference).is_some());
}

#[test]
fn a_pull_killed_midway_leaves_nothing_taken_as_complete() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/busybox:1", &[]);
    let proxy = Proxy::start(&registry.host, Gate::Stall);
    let pulls = Pulls::new();
    let stalled = format!("{}/test/busybox:1", proxy.host);
    let (_, layer) = registry.biggest_blob();
    let layer: peapod_image::Digest = layer.parse().expect("digest");

    let mut child = pulls.command(&[&stalled]).spawn().expect("spawn");
    // `peapod pull` execs peapod-pull: the pid is the puller's.
    // More than the config's few hundred bytes: the layer is part way in.
    wait_until("a partial layer in the store", || {
        std::fs::read_dir(pulls.storage().join("tmp")).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 4096))
        })
    });
    child.kill().expect("SIGKILL the pull");
    let _ = child.wait();
    drop(proxy);

    assert!(pulls.resolve(&stalled).is_none(), "no image recorded");
    assert!(
        !pulls.store().has_blob(&layer),
        "no partial blob taken as complete"
    );

    // The same image, straight from the registry: complete, and the leftovers swept.
    let direct = registry.reference("test/busybox:1");
    assert_pulled(&pulls.pull(&[&direct]));
    assert!(pulls.resolve(&direct).is_some());
    assert!(
        pulls.temp_entries().is_empty(),
        "{:?}",
        pulls.temp_entries()
    );
}

/// How many manifest requests the registry has served.
fn manifest_requests(registry: &Registry) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| l.contains(" /v2/") && l.contains("/manifests/"))
        .count()
}

#[test]
fn run_of_a_missing_image_pulls_it_and_pull_always_pulls_again() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let Some(rootfs) = support::TestRootfs::new() else {
        return;
    };
    let registry = Registry::start(&archive, "127.0.0.1", "");
    registry.push("test/run:1", &[]);
    let pulls = Pulls::new();
    let reference = registry.reference("test/run:1");
    let run = |extra: &[&str]| {
        let mut command = rootfs.peapod();
        command
            .arg("--storage")
            .arg(pulls.storage())
            .arg("run")
            .args(extra)
            .args([reference.as_str(), "-c", "echo ran"])
            .env("HOME", pulls.dir.path())
            .env("REGISTRY_AUTH_FILE", pulls.dir.path().join("no-auth.json"));
        finish(command.spawn().expect("spawn peapod run"))
    };
    let out = run(&["--pull", "never"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(one_line_error(&out).contains(&reference), "{out:?}");
    assert!(pulls.resolve(&reference).is_none());
    // missing (the default): pulled once, then run from the store.
    let out = run(&[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ran\n"), "{out:?}");
    let (blobs, manifests) = (registry.blob_gets(), manifest_requests(&registry));
    assert!(blobs > 0 && manifests > 0, "{}", registry.log());
    let out = run(&[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ran\n"), "{out:?}");
    assert_eq!(manifest_requests(&registry), manifests, "pulled again");
    // always: asks the registry again (and downloads no blob it has).
    let out = run(&["--pull", "always"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ran\n"), "{out:?}");
    assert!(manifest_requests(&registry) > manifests, "not pulled again");
    assert_eq!(registry.blob_gets(), blobs);
    rootfs.assert_nothing_left();
}

#[test]
fn basic_auth_on_a_registry_with_an_htpasswd_file() {
    let Some(archive) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = dir.path().join("htpasswd");
    // USER:PASSWORD, bcrypt (cost 4), the only scheme the registry's htpasswd accepts.
    std::fs::write(
        &htpasswd,
        "pea:$2b$04$3XoUZfmxblywmO8kLr6ERu6s3rGvD2oxpE3WjoeWSV83or8u7VYxS\n",
    )
    .expect("htpasswd");
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        htpasswd.display()
    );
    let registry = Registry::start(&archive, "127.0.0.1", &auth);
    registry.push(
        "test/busybox:1",
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    let pulls = Pulls::new();
    let reference = registry.reference("test/busybox:1");

    let anonymous = pulls.pull(&[&reference]);
    assert!(one_line_error(&anonymous).contains("authentication required"));

    let auth_file = pulls.dir.path().join("auth.json");
    write_auth_file(&auth_file, &registry.host, PASSWORD);
    let mut command = pulls.command(&[&reference]);
    command.env("REGISTRY_AUTH_FILE", &auth_file);
    assert_pulled(&finish(command.spawn().expect("spawn")));
    assert!(pulls.resolve(&reference).is_some());
}
