//! Kubernetes' path to peapod, as a kubelet drives it: a private containerd (its own
//! config, root, state and socket in a temporary directory; the CRI plugin; cgroupfs; a CNI
//! bridge network of Debian's plugins) with a runtime handler `peapod` (the runc shim,
//! `io.containerd.runc.v2`, with `BinaryName` = the built peapod-oci), driven over its socket
//! through the CRI gRPC API: a pod sandbox of the pause image made of peapod-init, busybox
//! containers with a security context and Bidirectional and HostToContainer mounts, `ExecSync`, their status
//! and logs, then stop and removal, after which nothing may be left: no shim, no container
//! in peapod's state, no mount, no veth.
//!
//! Needs root, `containerd` and `ctr`, the CNI plugins in `/usr/lib/cni`, and the images
//! `cargo xtask test` writes (`PEAPOD_PAUSE_IMAGE`, `PEAPOD_BUSYBOX_IMAGE`, and the static
//! init `PEAPOD_INIT`); it says `skipped:` and why when one is missing.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ExecSyncResponse, ImageSpec, ImageStatusRequest,
    Int64Value, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, Mount, MountPropagation, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxState, PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long any one step may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The images `cargo xtask test` writes and imports here (see xtask's `image.rs`).
const PAUSE_IMAGE: &str = "localhost/peapod/pause:latest";
const BUSYBOX_IMAGE: &str = "localhost/peapod/busybox:latest";

/// The CNI plugins the network configuration names, in Debian's directory.
const CNI_DIR: &str = "/usr/lib/cni";

/// Numbers the pods of one test process, so their names and uids differ.
static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// What the test needs from the machine and the build.
struct Prerequisites {
    containerd: PathBuf,
    ctr: PathBuf,
    peapod: PathBuf,
    init: PathBuf,
    pause_image: PathBuf,
    busybox_image: PathBuf,
}

impl Prerequisites {
    /// Everything, or `None` after saying what is missing.
    fn find() -> Option<Prerequisites> {
        let skip = |why: String| {
            eprintln!("skipped: {why}");
            None
        };
        if !nix::unistd::geteuid().is_root() {
            return skip("the CRI test runs containerd and needs root".into());
        }
        let Some(containerd) = which("containerd") else {
            return skip("containerd is not installed (Debian: containerd)".into());
        };
        let Some(ctr) = which("ctr") else {
            return skip("ctr is not installed (Debian: containerd)".into());
        };
        for plugin in ["bridge", "host-local", "loopback"] {
            if !Path::new(CNI_DIR).join(plugin).exists() {
                return skip(format!(
                    "no CNI plugin {CNI_DIR}/{plugin} (Debian: containernetworking-plugins)"
                ));
            }
        }
        // The workspace's debug build, which `cargo test --workspace` has just built, unless
        // PEAPOD_BIN names another (a release build, for the measurement).
        let peapod = std::env::var_os("PEAPOD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/peapod")
            });
        if !peapod.exists() {
            return skip(format!("no peapod binary at {}", peapod.display()));
        }
        let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let (Some(init), Some(pause_image), Some(busybox_image)) = (
            from_env("PEAPOD_INIT"),
            from_env("PEAPOD_PAUSE_IMAGE"),
            from_env("PEAPOD_BUSYBOX_IMAGE"),
        ) else {
            return skip(
                "PEAPOD_INIT, PEAPOD_PAUSE_IMAGE or PEAPOD_BUSYBOX_IMAGE is not set \
                 (run `cargo xtask test`, or `cargo xtask cri-images` for the values)"
                    .into(),
            );
        };
        Some(Prerequisites {
            containerd,
            ctr,
            peapod,
            init,
            pause_image,
            busybox_image,
        })
    }
}

/// The first `name` on PATH (with the sbin directories, which root's PATH may lack).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

/// A runtime handler of the private containerd: the runc shim with another binary.
struct Handler {
    name: &'static str,
    binary: PathBuf,
    /// `SystemdCgroup = true`: the shim passes `--systemd-cgroup`, and the pods of this
    /// handler get a systemd slice as their parent (see [`pod_config`]).
    systemd: bool,
}

/// A private containerd, started by the test. Dropping it kills the shims it started and
/// then containerd itself, by pid, deletes any container its runtimes still hold, detaches
/// every mount below its directory, deletes its bridge and removes its cgroups: a failed
/// test leaves nothing behind.
struct Containerd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// The CNI bridge (its name is this test process's own).
    bridge: String,
    /// The cgroup parent of the pods, below each hierarchy's root.
    cgroup_parent: String,
    /// `(binary, state root)` of each handler, for the clean-up.
    runtimes: Vec<(PathBuf, PathBuf)>,
    /// The top slice of the pods of `SystemdCgroup` handlers (without `.slice`), which the
    /// clean-up stops; `None` without such a handler.
    slice: Option<String>,
}

impl Containerd {
    /// Writes the configuration and starts containerd; waits until it answers.
    fn start(pre: &Prerequisites, handlers: &[Handler]) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("peapod-cri-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let id = std::process::id();
        let bridge = format!("ppcri{:x}", id % 0xff_ffff);
        let cgroup_parent = format!("peapod-cri-{id}");
        let socket = dir.path().join("containerd.sock");
        let mut containerd = Containerd {
            child: None,
            socket: socket.clone(),
            bridge: bridge.clone(),
            cgroup_parent,
            runtimes: handlers
                .iter()
                .map(|h| (h.binary.clone(), dir.path().join(h.name).join("k8s.io")))
                .collect(),
            slice: handlers
                .iter()
                .any(|h| h.systemd)
                .then(|| format!("peapodcri{id}")),
            dir,
        };
        let base = containerd.dir.path().to_owned();
        let cni = base.join("cni");
        std::fs::create_dir_all(&cni).expect("cni dir");
        // A subnet of this process's own, unlikely to meet a real network.
        let subnet = format!("10.{}.{}.0/24", 128 + id % 100, (id / 100) % 250);
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": format!("peapod-cri-{id}"),
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": base.join("ipam"),
                },
            }, {
                "type": "loopback",
            }],
        });
        std::fs::write(cni.join("10-peapod.conflist"), conflist.to_string()).expect("conflist");
        let mut runtimes = String::new();
        for h in handlers {
            runtimes.push_str(&format!(
                r#"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
            BinaryName = "{binary}"
            Root = "{root}"
            SystemdCgroup = {systemd}
"#,
                name = h.name,
                systemd = h.systemd,
                binary = h.binary.display(),
                root = base.join(h.name).display(),
            ));
        }
        let config = format!(
            r#"version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = "{base}/debug.sock"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{base}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    enable_selinux = false
    disable_apparmor = true
    # Root here may lack CAP_SYS_RESOURCE (a VM's), which a negative oom_score_adj needs
    # (the sandbox's -998): containerd then keeps scores at or above its own, for runc too.
    restrict_oom_score_adj = true
    # The pods' network namespaces under the state directory, not /var/run/netns: the
    # clean-up's unmount of everything below the test's directory then frees them (and
    # their veths) even when a failed test never removed its pod.
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_DIR}"
      conf_dir = "{cni}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "{default}"
{runtimes}"#,
            base = base.display(),
            socket = socket.display(),
            cni = cni.display(),
            default = handlers[0].name,
        );
        let config_path = base.join("config.toml");
        std::fs::write(&config_path, config).expect("config.toml");
        let log = File::create(base.join("containerd.log")).expect("containerd log");
        let child = Command::new(&pre.containerd)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        containerd.child = Some(child);
        containerd.wait_until_serving();
        containerd
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.base().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("containerd exited ({status}):\n{}", self.log_tail());
            }
            if self.socket.exists() {
                let ready = block_on(async {
                    let Ok(channel) = connect(&self.socket).await else {
                        return false;
                    };
                    RuntimeServiceClient::new(channel)
                        .version(VersionRequest::default())
                        .await
                        .is_ok()
                });
                if ready {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within {TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ctr --address SOCKET -n k8s.io images import ARCHIVE`, which must succeed.
    fn import(&self, pre: &Prerequisites, archive: &Path) {
        let out = Command::new(&pre.ctr)
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr images import {}: {}{}",
            archive.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The pids of the shims this containerd started: processes whose command line names
    /// its socket.
    fn shims(&self) -> Vec<i32> {
        let address = self.socket.to_string_lossy().into_owned();
        let own = self.child.as_ref().map(|c| c.id() as i32);
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| Some(*pid) != own)
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("containerd-shim") && cmdline.contains(&address)
            })
            .collect()
    }

    /// The container ids a handler's runtime holds (`BINARY --root ROOT list -q`).
    fn runtime_containers(&self, handler: usize) -> Vec<String> {
        let (binary, root) = &self.runtimes[handler];
        let out = Command::new(binary)
            .arg("--root")
            .arg(root)
            .args(["list", "-q"])
            .output()
            .expect("list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The mounts below the test's directory, deepest last, as mountinfo lists them.
    fn mounts(&self) -> Vec<String> {
        let base = self.base().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|point| point.starts_with(&base))
            .collect()
    }

    /// The interfaces enslaved to the test's bridge (the pods' veths).
    fn veths(&self) -> Vec<String> {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What a failed test shows: containerd's log, the runtimes' logs (the shims' `log.json`),
    /// the runtime processes still there, and systemd's queued jobs.
    fn report(&self) {
        eprintln!("containerd's log (its end):\n{}", self.log_tail());
        let tasks = self
            .base()
            .join("state/io.containerd.runtime.v2.task/k8s.io");
        for task in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(task.path().join("log.json")).unwrap_or_default();
            if !log.is_empty() {
                eprintln!("{}/log.json:\n{log}", task.path().display());
            }
        }
        // Each with where its threads wait (`wchan`, `syscall`).
        let runtimes: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.path(), std::fs::read(e.path().join("cmdline")).ok()?)))
            .map(|(dir, c)| (dir, String::from_utf8_lossy(&c).replace('\0', " ")))
            .filter(|(_, c)| c.contains(&*self.base().to_string_lossy()) && !c.contains("shim"))
            .map(|(dir, c)| {
                let threads: Vec<String> = std::fs::read_dir(dir.join("task"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|t| {
                        let read =
                            |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
                        format!(
                            "{} {} wchan={} syscall={}",
                            t.file_name().to_string_lossy(),
                            read("comm").trim(),
                            read("wchan"),
                            read("syscall").trim()
                        )
                    })
                    .collect();
                format!("{} {c}: {threads:?}", dir.display())
            })
            .collect();
        eprintln!("processes naming the test's directory: {runtimes:#?}");
        if self.slice.is_some() {
            if let Ok(out) = Command::new("systemctl").arg("list-jobs").output() {
                eprintln!(
                    "systemctl list-jobs:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
    }

    /// Waits (bounded) until no veth is left on the test's bridge: the kernel unregisters
    /// a removed pod's veth after RemovePodSandbox returns (it lagged under TCG).
    async fn wait_veths_gone(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.veths().is_empty() {
            assert!(Instant::now() < deadline, "veths left: {:?}", self.veths());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cgroup directories of the pods' parent, in every v1 hierarchy and the v2 one.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = hierarchy.path().join(&self.cgroup_parent);
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        let unified = Path::new("/sys/fs/cgroup").join(&self.cgroup_parent);
        if unified.is_dir() && !dirs.contains(&unified) {
            dirs.push(unified);
        }
        dirs
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a failed test unwinds.
        if std::thread::panicking() {
            self.report();
        }
        for pid in self.shims() {
            let _ = kill(pid, libc::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = kill(child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Containers the killed shims left to their runtimes.
        for (handler, (binary, root)) in self.runtimes.clone().iter().enumerate() {
            for id in self.runtime_containers(handler) {
                let _ = Command::new(binary)
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for point in self.mounts().iter().rev() {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for dir in self.cgroup_dirs() {
            remove_cgroup_tree(&dir);
        }
        // Stopping the top slice stops the slices and scopes below it (as kubelet removes a
        // pod's slice: containerd leaves it).
        if let Some(slice) = &self.slice {
            let unit = format!("{slice}.slice");
            for verb in ["stop", "reset-failed"] {
                let _ = Command::new("systemctl")
                    .args([verb, &unit])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Removes a cgroup directory and its children (deepest first); a cgroup is removed with
/// `rmdir`, whatever files it seems to hold.
fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn kill(pid: i32, signal: libc::c_int) -> nix::Result<()> {
    let signal = nix::sys::signal::Signal::try_from(signal)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
}

/// Runs a future to completion on a runtime of its own (the test is synchronous; its
/// guards are too).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// A gRPC channel over the unix socket.
async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    Endpoint::from_static("http://[::]:0")
        .connect_timeout(Duration::from_secs(5))
        // Every call bounded: a runtime that hangs fails the step that called it.
        .timeout(TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

/// Waits (polling, bounded by [`TIMEOUT`]) until `cond` holds.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CRI clients of one containerd.
struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    async fn connect(containerd: &Containerd) -> Cri {
        let channel = connect(&containerd.socket).await.expect("connect");
        Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// Whether the image is known to the CRI (imported and unpacked).
    async fn has_image(&mut self, name: &str) -> bool {
        let status = self
            .images
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: name.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .expect("ImageStatus");
        status.into_inner().image.is_some()
    }

    async fn run_pod(&mut self, handler: &str, config: &PodSandboxConfig) -> String {
        let response = self
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox ({handler}): {e}"));
        response.into_inner().pod_sandbox_id
    }

    async fn pod_state(&mut self, pod: &str) -> i32 {
        let status = self
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.to_owned(),
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus");
        status.into_inner().status.map_or(-1, |s| s.state)
    }

    /// CreateContainer and StartContainer; the container's id.
    async fn start(
        &mut self,
        pod: &str,
        sandbox: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let id = self
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.to_owned(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
            .into_inner()
            .container_id;
        self.runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        id
    }

    /// `(state, exit code)` of a container.
    async fn container_state(&mut self, id: &str) -> (i32, i32) {
        let status = self
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status");
        (status.state, status.exit_code)
    }

    /// Waits (bounded) until the container shows as exited.
    async fn wait_exited(&mut self, id: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while self.container_state(id).await.0 != ContainerState::ContainerExited as i32 {
            assert!(
                Instant::now() < deadline,
                "container {id} never showed as exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn exec(&mut self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        self.runtime
            .exec_sync(ExecSyncRequest {
                container_id: id.to_owned(),
                cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                timeout: 30,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
            .into_inner()
    }

    async fn stop_and_remove(&mut self, id: &str, timeout: i64) {
        self.runtime
            .stop_container(StopContainerRequest {
                container_id: id.to_owned(),
                timeout,
            })
            .await
            .unwrap_or_else(|e| panic!("StopContainer {id}: {e}"));
        let (state, _) = self.container_state(id).await;
        assert_eq!(
            state,
            ContainerState::ContainerExited as i32,
            "after StopContainer"
        );
        self.runtime
            .remove_container(RemoveContainerRequest {
                container_id: id.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}"));
    }

    async fn stop_and_remove_pod(&mut self, pod: &str) {
        self.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
        self.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
    }
}

/// A pod's configuration as kubelet would send it (cgroupfs parent, a log directory).
fn sandbox_config(containerd: &Containerd, name: &str) -> PodSandboxConfig {
    pod_config(containerd, name, false)
}

/// A pod's configuration as kubelet would send it with its cgroup driver: with `systemd`,
/// kubelet's `cgroupDriver: systemd` parent (`/kubepods.slice/kubepods-besteffort.slice/
/// kubepods-besteffort-podUID.slice`, with the test's slice in place of `kubepods`), else
/// a cgroupfs path below the test's directory.
fn pod_config(containerd: &Containerd, name: &str, systemd: bool) -> PodSandboxConfig {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let cgroup_parent = match (&containerd.slice, systemd) {
        (Some(s), true) => format!("/{s}.slice/{s}-besteffort.slice/{s}-besteffort-pod{n}.slice"),
        _ => format!("/{}/pod{n}", containerd.cgroup_parent),
    };
    let logs = containerd.base().join("logs").join(format!("{name}-{n}"));
    std::fs::create_dir_all(&logs).expect("log dir");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("{name}-{n}"),
            uid: format!("uid-{}-{n}", std::process::id()),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A busybox container running `script`.
fn busybox(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.to_owned(),
            ..Default::default()
        }),
        command: vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// A directory of the test made a mount point of its own (a bind onto itself), private and
/// then shared, as a Bidirectional host path must be. Dropping it detaches it and every
/// mount below it.
struct SharedDir {
    path: PathBuf,
}

impl SharedDir {
    fn new(path: PathBuf) -> SharedDir {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(&path).expect("shared dir");
        let dir = SharedDir { path };
        mount(
            Some(&dir.path),
            &dir.path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind the shared dir");
        for flag in [MsFlags::MS_PRIVATE, MsFlags::MS_SHARED] {
            mount(None::<&str>, &dir.path, None::<&str>, flag, None::<&str>)
                .expect("propagation of the shared dir");
        }
        for name in ["host", "in"] {
            std::fs::create_dir(dir.path.join(name)).expect("mount point");
        }
        dir
    }

    fn is_mounted(&self, name: &str) -> bool {
        let target = self.path.join(name);
        let target = target.to_string_lossy();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*target))
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        for _ in 0..8 {
            if nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

/// peapod installed as an operator would (docs/kubernetes.md): `peapod-oci`, the binary the
/// shim is told to use, with `peapod` (which it hands other commands to) and `peapod-init`
/// beside it, where they are found; in a temporary directory of its own. Returns the path of
/// `peapod-oci`.
fn staged_peapod(pre: &Prerequisites) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("peapod-cri-bin-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::copy(&pre.peapod, dir.path().join("peapod")).expect("copy peapod");
    // The static musl build `cargo xtask test` names, or the one built with peapod.
    let oci = std::env::var_os("PEAPOD_OCI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| pre.peapod.with_file_name("peapod-oci"));
    std::fs::copy(&oci, dir.path().join("peapod-oci"))
        .unwrap_or_else(|e| panic!("copy {} (built with peapod): {e}", oci.display()));
    std::fs::copy(&pre.init, dir.path().join("peapod-init")).expect("copy peapod-init");
    let peapod = dir.path().join("peapod-oci");
    (dir, peapod)
}

/// For the tests that compare peapod with runc: peapod staged ([`staged_peapod`]) and runc's
/// path, or `None` after saying why the test is skipped.
fn peapod_and_runc(pre: &Prerequisites) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let Some(runc) = which("runc") else {
        eprintln!("skipped: runc is not installed, nothing to compare with");
        return None;
    };
    let (bin, peapod) = staged_peapod(pre);
    Some((bin, peapod, runc))
}

/// A private containerd with a handler for each `(name, binary, SystemdCgroup)`, the pause
/// and busybox images imported; and the handlers.
fn containerd_with(
    pre: &Prerequisites,
    handlers: &[(&'static str, &PathBuf, bool)],
) -> (Containerd, Vec<Handler>) {
    let handlers: Vec<Handler> = handlers
        .iter()
        .map(|&(name, binary, systemd)| Handler {
            name,
            binary: binary.clone(),
            systemd,
        })
        .collect();
    let containerd = Containerd::start(pre, &handlers);
    containerd.import(pre, &pre.pause_image);
    containerd.import(pre, &pre.busybox_image);
    (containerd, handlers)
}

#[test]
fn a_pod_runs_stops_and_leaves_nothing_on_the_peapod_handler() {
    let Some(pre) = Prerequisites::find() else {
        return;
    };
    let (_bin, peapod) = staged_peapod(&pre);
    let containerd = Containerd::start(
        &pre,
        &[Handler {
            name: "peapod",
            binary: peapod,
            systemd: false,
        }],
    );
    containerd.import(&pre, &pre.pause_image);
    containerd.import(&pre, &pre.busybox_image);
    let shared = SharedDir::new(containerd.base().join("bidirectional"));
    let slave = SharedDir::new(containerd.base().join("host-to-container"));
    let shared_path = shared.path.to_string_lossy().into_owned();

    block_on(async {
        let mut cri = Cri::connect(&containerd).await;
        // pause.tar and the busybox archive imported as the CRI sees images.
        assert!(
            cri.has_image(PAUSE_IMAGE).await,
            "{PAUSE_IMAGE} not imported"
        );
        assert!(
            cri.has_image(BUSYBOX_IMAGE).await,
            "{BUSYBOX_IMAGE} not imported"
        );

        let sandbox = sandbox_config(&containerd, "pod");
        let pod = cri.run_pod("peapod", &sandbox).await;
        assert_eq!(
            cri.pod_state(&pod).await,
            PodSandboxState::SandboxReady as i32
        );
        // The sandbox (the pause container) is peapod's.
        assert!(
            containerd.runtime_containers(0).contains(&pod),
            "peapod does not hold the sandbox {pod}"
        );

        // A container that exits on its own shows as exited with its status, and can still
        // be stopped and removed (the shim's kill of it is "container not running"). It
        // mounts a tmpfs in its Bidirectional mount, which the host must see.
        let mut exits = busybox(
            "exits",
            "mount -t tmpfs -o size=64k tmpfs /shared/in && echo inside > /shared/in/file; \
             echo bye; exit 7",
        );
        exits.mounts = vec![Mount {
            container_path: "/shared".to_owned(),
            host_path: shared_path.clone(),
            propagation: MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        }];
        exits.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["CAP_SYS_ADMIN".to_owned()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let exited = cri.start(&pod, &sandbox, exits).await;
        cri.wait_exited(&exited).await;
        assert_eq!(cri.container_state(&exited).await.1, 7, "exit code");
        assert!(
            shared.is_mounted("in"),
            "the container's mount is not on the host"
        );
        assert_eq!(
            std::fs::read_to_string(shared.path.join("in/file")).expect("the container's file"),
            "inside\n"
        );
        // containerd copies the output to the log on its own: the exit may be seen first.
        let log = Path::new(&sandbox.log_directory).join("exits.log");
        wait_until("the exited container's line in its log", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { text.contains(" stdout F bye") }
        })
        .await;
        cri.stop_and_remove(&exited, 2).await;

        // A long-running container with a security context and the Bidirectional mount.
        let mut secure = busybox("secure", "echo out-line; echo err-line >&2; exec sleep 600");
        secure.mounts = vec![
            Mount {
                container_path: "/shared".to_owned(),
                host_path: shared_path.clone(),
                propagation: MountPropagation::PropagationBidirectional as i32,
                ..Default::default()
            },
            Mount {
                container_path: "/slave".to_owned(),
                host_path: slave.path.to_string_lossy().into_owned(),
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            },
        ];
        secure.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 1000 }),
                run_as_group: Some(Int64Value { value: 1000 }),
                readonly_rootfs: true,
                no_new_privs: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        let running = cri.start(&pod, &sandbox, secure).await;
        assert_eq!(
            cri.container_state(&running).await.0,
            ContainerState::ContainerRunning as i32
        );
        let out = cri.exec(&running, &["id", "-u"]).await;
        assert_eq!(
            (out.exit_code, &out.stdout[..]),
            (0, &b"1000\n"[..]),
            "{out:?}"
        );
        let out = cri.exec(&running, &["id", "-g"]).await;
        assert_eq!(
            (out.exit_code, &out.stdout[..]),
            (0, &b"1000\n"[..]),
            "{out:?}"
        );
        let out = cri
            .exec(&running, &["grep", "NoNewPrivs", "/proc/self/status"])
            .await;
        assert!(
            String::from_utf8_lossy(&out.stdout).contains('1'),
            "{out:?}"
        );
        let out = cri.exec(&running, &["touch", "/written"]).await;
        assert_ne!(
            out.exit_code, 0,
            "the root file system is writable: {out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
            "{out:?}"
        );
        let out = cri.exec(&running, &["sh", "-c", "exit 3"]).await;
        assert_eq!(out.exit_code, 3, "{out:?}");
        // A mount the host makes below the Bidirectional path after the start shows inside.
        nix::mount::mount(
            Some("tmpfs"),
            &shared.path.join("host"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("tmpfs on the host");
        std::fs::write(shared.path.join("host/file"), "from the host\n").expect("host file");
        let out = cri.exec(&running, &["cat", "/shared/host/file"]).await;
        assert_eq!(
            (out.exit_code, &out.stdout[..]),
            (0, &b"from the host\n"[..]),
            "{out:?}"
        );
        // The same through the HostToContainer (rslave) mount.
        nix::mount::mount(
            Some("tmpfs"),
            &slave.path.join("host"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("tmpfs on the host");
        std::fs::write(slave.path.join("host/file"), "to the slave\n").expect("host file");
        let out = cri.exec(&running, &["cat", "/slave/host/file"]).await;
        assert_eq!(
            (out.exit_code, &out.stdout[..]),
            (0, &b"to the slave\n"[..]),
            "{out:?}"
        );
        let log = Path::new(&sandbox.log_directory).join("secure.log");
        wait_until("both lines in the log", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { text.contains(" stdout F out-line") && text.contains(" stderr F err-line") }
        })
        .await;
        // sleep as PID 1 ignores SIGTERM: StopContainer kills it after the timeout.
        cri.stop_and_remove(&running, 1).await;

        cri.stop_and_remove_pod(&pod).await;
        assert_eq!(containerd.runtime_containers(0), Vec::<String>::new());
        wait_until("the shims to exit", || {
            let left = containerd.shims().is_empty();
            async move { left }
        })
        .await;
        containerd.wait_veths_gone().await;
    });
    drop(shared);
    drop(slave);
    assert_eq!(containerd.mounts(), Vec::<String>::new(), "mounts left");
    drop(containerd);
}

/// The median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// One pod's life as kubelet drives it: RunPodSandbox, CreateContainer + StartContainer,
/// StopContainer + RemoveContainer, StopPodSandbox + RemovePodSandbox.
async fn one_pod(cri: &mut Cri, containerd: &Containerd, handler: &str) -> Duration {
    let start = Instant::now();
    let sandbox = sandbox_config(containerd, handler);
    let pod = cri.run_pod(handler, &sandbox).await;
    let id = cri
        .start(&pod, &sandbox, busybox("sleeper", "exec sleep 600"))
        .await;
    // Timeout 0: SIGKILL at once, so the measure is the runtime's, not a grace period.
    cri.stop_and_remove(&id, 0).await;
    cri.stop_and_remove_pod(&pod).await;
    start.elapsed()
}

/// `cargo test -p peapod-cri-tests --test cri -- --ignored --nocapture` (with the variables
/// of `cargo xtask cri-images`, and `PEAPOD_BIN=target/dist/peapod` for a release build
/// after `cargo xtask dist`): the median of 10 pod lives on the peapod handler against
/// the same on a runc handler, alternated so that both see the same machine.
#[test]
#[ignore = "a measurement, not a check; run it by name"]
fn pod_life_on_peapod_against_runc() {
    let Some(pre) = Prerequisites::find() else {
        return;
    };
    let Some((_bin, peapod, runc)) = peapod_and_runc(&pre) else {
        return;
    };
    let (containerd, _) =
        containerd_with(&pre, &[("peapod", &peapod, false), ("runc", &runc, false)]);
    const ROUNDS: usize = 10;
    let (peapod_times, runc_times) = block_on(async {
        let mut cri = Cri::connect(&containerd).await;
        // One unmeasured round each: the first pod pays for the snapshots and CNI's set-up.
        one_pod(&mut cri, &containerd, "peapod").await;
        one_pod(&mut cri, &containerd, "runc").await;
        let (mut p, mut r) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                p.push(one_pod(&mut cri, &containerd, "peapod").await);
                r.push(one_pod(&mut cri, &containerd, "runc").await);
            } else {
                r.push(one_pod(&mut cri, &containerd, "runc").await);
                p.push(one_pod(&mut cri, &containerd, "peapod").await);
            }
        }
        (p, r)
    });
    let (p, r) = (median(peapod_times), median(runc_times));
    println!(
        "pod life (RunPodSandbox + Create/StartContainer + Stop/RemoveContainer + \
         Stop/RemovePodSandbox), median of {ROUNDS}: peapod {:.1} ms, runc {:.1} ms, \
         peapod/runc {:.2}",
        p.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        p.as_secs_f64() / r.as_secs_f64()
    );
    assert_eq!(containerd.runtime_containers(0), Vec::<String>::new());
    assert_eq!(containerd.runtime_containers(1), Vec::<String>::new());
    drop(containerd);
}

/// Whether PID 1 is systemd (its `/run/systemd/system`, as `sd_booted(3)` checks) on the
/// unified hierarchy, whose files these tests read; says why the test is skipped when not.
fn systemd_on_v2() -> bool {
    let skip = |why: &str| {
        eprintln!(
            "skipped: {why} (the systemd driver's CRI tests run under `cargo xtask vm --systemd`)"
        );
        false
    };
    if !Path::new("/run/systemd/system").is_dir() {
        return skip("PID 1 is not systemd");
    }
    if Path::new("/sys/fs/cgroup/unified").is_dir() {
        return skip("systemd runs on cgroup v1 hybrid here, and the test reads cgroup v2 files");
    }
    true
}

/// What is compared between peapod's scopes and runc's.
const SCOPE_PROPERTIES: &[&str] = &[
    "ActiveState",
    "Delegate",
    "MemoryMax",
    "MemorySwapMax",
    "CPUWeight",
    "CPUQuotaPerSecUSec",
    "TasksMax",
];

/// `systemctl show UNIT -p P...` as `P=VALUE` lines, sorted.
fn unit_properties(unit: &str, properties: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("systemctl");
    cmd.args(["show", unit]);
    for p in properties {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().expect("run systemctl");
    assert!(
        out.status.success(),
        "systemctl show {unit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Whether systemd has `unit` loaded (in any state).
fn unit_listed(unit: &str) -> bool {
    let out = Command::new("systemctl")
        .args(["list-units", "--all", "--plain", "--no-legend", unit])
        .output()
        .expect("run systemctl");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// Checks that `unit` is an active scope in the slice that ends `parent` (a cgroup path of
/// slices, as kubelet passes it), at `parent/unit` in the cgroup tree, with a process in
/// it; returns its cgroup directory.
fn assert_scope(unit: &str, parent: &str) -> PathBuf {
    let slice = parent.rsplit('/').next().unwrap_or_default();
    assert_eq!(
        unit_properties(unit, &["ActiveState", "Slice", "ControlGroup"]),
        [
            "ActiveState=active".to_owned(),
            format!("ControlGroup={parent}/{unit}"),
            format!("Slice={slice}"),
        ],
        "{unit}"
    );
    let dir = Path::new("/sys/fs/cgroup").join(format!("{}/{unit}", &parent[1..]));
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
    assert!(!procs.trim().is_empty(), "no process in {}", dir.display());
    dir
}

/// Waits (bounded) until systemd has no `unit` any more.
async fn wait_unit_gone(unit: &str) {
    wait_until(&format!("{unit} to be gone"), || {
        let listed = unit_listed(unit);
        async move { !listed }
    })
    .await;
}

/// One pod under the systemd driver on `handler` (a `SystemdCgroup` one): its sandbox and a
/// container with limits are scopes `cri-containerd-ID.scope` in the pod's slice, the
/// container's limits are in its scope's cgroup files, and no unit is left once they are
/// removed. Returns the two scopes' properties, to compare handlers.
async fn systemd_pod(cri: &mut Cri, containerd: &Containerd, handler: &str) -> Vec<String> {
    let sandbox = pod_config(containerd, handler, true);
    let parent = sandbox
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let pod = cri.run_pod(handler, &sandbox).await;
    let pod_unit = format!("cri-containerd-{pod}.scope");
    assert_scope(&pod_unit, &parent);

    let mut config = busybox("limited", "echo started; exec sleep 600");
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = cri.start(&pod, &sandbox, config).await;
    let unit = format!("cri-containerd-{id}.scope");
    let cgroup = assert_scope(&unit, &parent);
    let file = |name: &str| {
        std::fs::read_to_string(cgroup.join(name))
            .unwrap_or_else(|e| panic!("{handler}: {name}: {e}"))
            .trim()
            .to_owned()
    };
    assert_eq!(file("memory.max"), "67108864", "{handler}");
    assert_eq!(file("cpu.max"), "50000 100000", "{handler}");
    assert_eq!(file("cpu.weight"), "20", "{handler}: shares 512");
    // An exec joins the container's scope too: the root of its cgroup namespace, or the
    // scope's path without one.
    let out = cri.exec(&id, &["cat", "/proc/self/cgroup"]).await;
    let exec_cgroup = String::from_utf8_lossy(&out.stdout)
        .replace(&id, "ID")
        .replace(&parent, "PARENT");
    assert!(
        out.exit_code == 0
            && ["0::/\n", "0::PARENT/cri-containerd-ID.scope\n"].contains(&&*exec_cgroup),
        "{handler}: {out:?}"
    );
    let log = Path::new(&sandbox.log_directory).join("limited.log");
    wait_until("the container's line in its log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains(" stdout F started") }
    })
    .await;

    let mut seen = vec![format!("exec's /proc/self/cgroup: {exec_cgroup}")];
    seen.extend(
        unit_properties(&pod_unit, SCOPE_PROPERTIES)
            .into_iter()
            .map(|p| format!("sandbox {p}")),
    );
    seen.extend(
        unit_properties(&unit, SCOPE_PROPERTIES)
            .into_iter()
            .map(|p| format!("container {p}")),
    );
    cri.stop_and_remove(&id, 0).await;
    wait_unit_gone(&unit).await;
    assert!(!cgroup.exists(), "{handler} left {}", cgroup.display());
    cri.stop_and_remove_pod(&pod).await;
    wait_unit_gone(&pod_unit).await;
    seen
}

/// A kubeadm node's containerd (`SystemdCgroup = true`, kubelet's `cgroupDriver: systemd`
/// slices): the same pod on the peapod handler and on runc's, each container a scope with
/// the same properties, and nothing left after.
#[test]
fn pods_under_the_systemd_driver_get_the_scopes_runc_gets() {
    let Some(pre) = Prerequisites::find() else {
        return;
    };
    if !systemd_on_v2() {
        return;
    }
    let Some((_bin, peapod, runc)) = peapod_and_runc(&pre) else {
        return;
    };
    let (containerd, _) =
        containerd_with(&pre, &[("peapod", &peapod, true), ("runc", &runc, true)]);
    let (peapod, runc) = block_on(async {
        let mut cri = Cri::connect(&containerd).await;
        let peapod = systemd_pod(&mut cri, &containerd, "peapod").await;
        let runc = systemd_pod(&mut cri, &containerd, "runc").await;
        wait_until("the shims to exit", || {
            let left = containerd.shims().is_empty();
            async move { left }
        })
        .await;
        (peapod, runc)
    });
    assert_eq!(
        peapod, runc,
        "peapod's scopes (left) against runc's (right)"
    );
    assert_eq!(containerd.runtime_containers(0), Vec::<String>::new());
    assert_eq!(containerd.runtime_containers(1), Vec::<String>::new());
    block_on(containerd.wait_veths_gone());
    drop(containerd);
}

/// A pod's life in two halves, as kubelet drives it: up (RunPodSandbox, CreateContainer,
/// StartContainer) and down (StopContainer, RemoveContainer, StopPodSandbox,
/// RemovePodSandbox).
async fn timed_pod(
    cri: &mut Cri,
    containerd: &Containerd,
    handler: &Handler,
) -> (Duration, Duration) {
    let sandbox = pod_config(containerd, handler.name, handler.systemd);
    let start = Instant::now();
    let pod = cri.run_pod(handler.name, &sandbox).await;
    let id = cri
        .start(&pod, &sandbox, busybox("sleeper", "exec sleep 600"))
        .await;
    let up = start.elapsed();
    let start = Instant::now();
    cri.stop_and_remove(&id, 0).await;
    cri.stop_and_remove_pod(&pod).await;
    (up, start.elapsed())
}

/// `cargo xtask vm --systemd pod_life_under_each_cgroup_driver --ignored`: the cost of the
/// scopes, as kubelet sees it. The median of several pod lives (up and down, see
/// [`timed_pod`]) on peapod and runc, each with `SystemdCgroup = true` and false, in
/// rotating order so that all see the same machine.
#[test]
#[ignore = "a measurement, not a check; run it by name under systemd"]
fn pod_life_under_each_cgroup_driver() {
    let Some(pre) = Prerequisites::find() else {
        return;
    };
    if !systemd_on_v2() {
        return;
    }
    let Some((_bin, peapod, runc)) = peapod_and_runc(&pre) else {
        return;
    };
    let (containerd, handlers) = containerd_with(
        &pre,
        &[
            ("peapod-systemd", &peapod, true),
            ("runc-systemd", &runc, true),
            ("peapod-cgroupfs", &peapod, false),
            ("runc-cgroupfs", &runc, false),
        ],
    );
    const ROUNDS: usize = 7;
    let times = block_on(async {
        let mut cri = Cri::connect(&containerd).await;
        // One unmeasured pod each: the first pays for the snapshots and CNI's set-up.
        for h in &handlers {
            timed_pod(&mut cri, &containerd, h).await;
        }
        let mut times = vec![(Vec::new(), Vec::new()); handlers.len()];
        for round in 0..ROUNDS {
            for i in 0..handlers.len() {
                let i = (i + round) % handlers.len();
                let (up, down) = timed_pod(&mut cri, &containerd, &handlers[i]).await;
                times[i].0.push(up);
                times[i].1.push(down);
            }
        }
        times
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (h, (up, down)) in handlers.iter().zip(times) {
        println!(
            "measured: {} median of {ROUNDS}: up {:.0} ms (RunPodSandbox + Create/StartContainer), \
             down {:.0} ms (Stop/Remove container and sandbox)",
            h.name,
            ms(median(up)),
            ms(median(down)),
        );
    }
    for i in 0..handlers.len() {
        assert_eq!(containerd.runtime_containers(i), Vec::<String>::new());
    }
    drop(containerd);
}
