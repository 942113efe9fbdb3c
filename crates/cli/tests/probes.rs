//! A played pod's probes and lifecycle hooks: liveness restarts, readiness in `pod ps`,
//! startup gating, postStart and preStop, each from a manifest a user could have written.

mod support;

use std::path::Path;

use support::net::pods_on;
use support::pods::Pods;
use support::wait_until;

/// Writes `manifest` (with `ROOTFS` the test's rootfs) and plays it on no network; the pod
/// `name` is removed when `pods` is dropped.
fn play(pods: &mut Pods, name: &str, manifest: &str) {
    let file = pods.rootfs.scratch().join(format!("{name}.yaml"));
    std::fs::write(&file, manifest.replace("ROOTFS", pods.rootfs.arg())).expect("manifest");
    let out = pods.play(name, &file, &["--network", "none"]);
    assert_eq!(out.code, 0, "{out:?}");
}

/// The `pod ps --format json` entry of container `name`.
fn member(pods: &Pods, pod: &str, name: &str) -> serde_json::Value {
    let ps = pods.ps_json(pod);
    ps["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// `peapod exec POD-NAME sh -c SCRIPT` succeeds.
fn exec(pods: &Pods, id: &str, script: &str) {
    let out = pods.peapod(&["exec", id, "/bin/sh", "-c", script]);
    assert_eq!(out.code, 0, "{out:?}");
}

const LIVENESS: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-alive
  annotations: {peapod.io/restart-backoff-base: 100ms}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  volumes:
  - name: data
    hostPath: {path: DATA, type: DirectoryOrCreate}
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c, 'touch /tmp/healthy; echo started >> /data/starts; trap \"exit 0\" TERM; sleep 1000 & wait']
    volumeMounts: [{name: data, mountPath: /data}]
    lifecycle:
      preStop: {exec: {command: [/bin/sh, -c, 'echo killed >> /data/prestop']}}
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
";

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let Some(mut pods) = Pods::new() else { return };
    let data = pods.rootfs.scratch().join("data");
    let manifest = LIVENESS.replace("DATA", &data.display().to_string());
    play(&mut pods, "probe-alive", &manifest);
    wait_until("main ready", || {
        member(&pods, "probe-alive", "main")["ready"] == true
    });
    exec(&pods, "probe-alive-main", "rm /tmp/healthy");
    // Two failures in a row, the kill (the shell's trap exits 0 on SIGTERM), and, although
    // the policy is OnFailure, a restart: a liveness kill is a failure.
    wait_until("one restart, ready again", || {
        let m = member(&pods, "probe-alive", "main");
        m["restarts"] == 1 && m["ready"] == true && m["status"] == "running"
    });
    let m = member(&pods, "probe-alive", "main");
    let failure = m["last_probe_failure"].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("Liveness probe failed: command \"cat\" exited with status 1"),
        "{m}"
    );
    // The restarted container made the file again, and the probe is content.
    exec(&pods, "probe-alive-main", "test -e /tmp/healthy");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap_or_default();
    assert_eq!(read("starts"), "started\nstarted\n");
    // Its preStop hook ran before the kill, once.
    assert_eq!(read("prestop"), "killed\n");
    pods.remove_all();
}

const READINESS: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-web
spec:
  containers:
  - name: httpd
    image: ROOTFS
    command: [/bin/sh, -c, 'mkdir -p /www && exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ready.html, port: http, httpHeaders: [{name: X-Probe, value: peapod}]}
      periodSeconds: 1
  - name: plain
    image: ROOTFS
    command: [/bin/sleep, '1000']
";

/// `pod ps`'s table: the pod's `ready` line and the READY column of container `name`.
fn table_ready(pods: &Pods, pod: &str, name: &str) -> (String, String) {
    let out = pods.peapod(&["pod", "ps", pod]);
    assert_eq!(out.code, 0, "{out:?}");
    let pod_ready = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ready "))
        .unwrap_or_default()
        .to_owned();
    let column = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap_or_default()
        .to_owned();
    (pod_ready, column)
}

#[test]
fn a_readiness_http_get_probe_shows_ready_false_then_true_in_pod_ps() {
    let Some(mut pods) = Pods::new() else { return };
    play(&mut pods, "probe-web", READINESS);
    // httpd answers 404 for the missing page, from inside the pod's network namespace (the
    // pod has no network but `lo`).
    wait_until("a 404 from httpd", || {
        member(&pods, "probe-web", "httpd")["last_probe_failure"]
            .as_str()
            .is_some_and(|f| f.contains("statuscode: 404"))
    });
    assert_eq!(
        table_ready(&pods, "probe-web", "httpd"),
        ("false".into(), "false".into())
    );
    let ps = pods.ps_json("probe-web");
    assert_eq!(ps["ready"], false, "{ps}");
    assert_eq!(member(&pods, "probe-web", "plain")["ready"], true, "{ps}");
    exec(&pods, "probe-web-httpd", "echo ok > /www/ready.html");
    wait_until("httpd ready", || {
        table_ready(&pods, "probe-web", "httpd") == ("true".into(), "true".into())
    });
    assert_eq!(pods.ps_json("probe-web")["ready"], true);
    // Readiness never restarts anything.
    assert_eq!(member(&pods, "probe-web", "httpd")["restarts"], 0);
    pods.remove_all();
}

const TCP: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-tcp
spec:
  containers:
  - name: server
    image: ROOTFS
    command: [/bin/sh, -c, 'while [ ! -e /tmp/listen ]; do sleep 0.1; done; exec nc -ll -p 9000 -e /bin/true']
    readinessProbe:
      tcpSocket: {port: 9000}
      periodSeconds: 1
";

#[test]
fn a_tcp_socket_probe_is_ready_once_the_port_listens() {
    let Some(mut pods) = Pods::new() else { return };
    play(&mut pods, "probe-tcp", TCP);
    wait_until("a refused connection", || {
        member(&pods, "probe-tcp", "server")["last_probe_failure"]
            .as_str()
            .is_some_and(|f| f.contains("dial tcp 127.0.0.1:9000: connect"))
    });
    assert_eq!(member(&pods, "probe-tcp", "server")["ready"], false);
    exec(&pods, "probe-tcp-server", "touch /tmp/listen");
    wait_until("server ready", || {
        member(&pods, "probe-tcp", "server")["ready"] == true
    });
    assert_eq!(pods.ps_json("probe-tcp")["ready"], true);
    pods.remove_all();
}

const STARTUP: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-slow
  annotations: {peapod.io/restart-backoff-base: 100ms}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c, 'trap \"exit 0\" TERM; sleep 1000 & wait']
    startupProbe:
      exec: {command: [/bin/sh, -c, 'echo try >> /tmp/startup-tries; test -e /tmp/started']}
      periodSeconds: 1
      failureThreshold: 60
    livenessProbe:
      exec: {command: [test, -e, /tmp/alive]}
      periodSeconds: 1
      failureThreshold: 1
";

#[test]
fn a_startup_probe_holds_the_liveness_probe_back() {
    let Some(mut pods) = Pods::new() else { return };
    play(&mut pods, "probe-slow", STARTUP);
    let tries = pods.rootfs.path.join("tmp/startup-tries");
    let count = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Three startup tries are three periods, in which a liveness probe (which fails at once)
    // would have killed the container.
    wait_until("three startup tries", || count(&tries) >= 3);
    let m = member(&pods, "probe-slow", "main");
    assert_eq!(m["restarts"], 0, "{m}");
    assert_eq!(m["ready"], false, "{m}");
    assert!(
        m["last_probe_failure"]
            .as_str()
            .is_some_and(|f| f.starts_with("Startup probe failed")),
        "{m}"
    );
    exec(&pods, "probe-slow-main", "touch /tmp/started");
    // Started: the liveness probe runs now, fails, and the container is restarted.
    wait_until("a restart by the liveness probe", || {
        let m = member(&pods, "probe-slow", "main");
        m["restarts"].as_u64() >= Some(1)
            && m["last_probe_failure"]
                .as_str()
                .is_some_and(|f| f.starts_with("Liveness probe failed"))
    });
    pods.remove_all();
}

const HOOKS: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-hooks
spec:
  terminationGracePeriodSeconds: 10
  volumes:
  - name: data
    hostPath: {path: DATA, type: DirectoryOrCreate}
  containers:
  - name: main
    image: ROOTFS
    command:
    - /bin/sh
    - -c
    - |
      trap 'test -e /data/prestop && echo after-prestop > /data/term; exit 0' TERM
      while [ ! -e /tmp/poststart ]; do sleep 0.1; done
      echo saw-$(cat /tmp/poststart)
      sleep 1000 & wait
    volumeMounts: [{name: data, mountPath: /data}]
    lifecycle:
      postStart:
        exec: {command: [/bin/sh, -c, 'echo hello > /tmp/poststart']}
      preStop:
        exec: {command: [/bin/sh, -c, 'echo bye > /data/prestop']}
";

#[test]
fn post_start_runs_in_the_container_and_pre_stop_before_the_stop_signal() {
    let Some(mut pods) = Pods::new() else { return };
    let data = pods.rootfs.scratch().join("data");
    play(
        &mut pods,
        "probe-hooks",
        &HOOKS.replace("DATA", &data.display().to_string()),
    );
    wait_until("the container saw the postStart hook's file", || {
        pods.logs("probe-hooks", "main").contains("saw-hello")
    });
    wait_until("main ready", || {
        member(&pods, "probe-hooks", "main")["ready"] == true
    });
    assert!(!data.join("prestop").exists());
    let stop = pods.peapod(&["pod", "stop", "probe-hooks"]);
    assert_eq!(stop.code, 0, "{stop:?}");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).unwrap_or_default();
    assert_eq!(read("prestop"), "bye\n");
    // The stop signal came after the hook: the trap saw its file.
    assert_eq!(read("term"), "after-prestop\n");
    pods.remove_all();
}

const HANGING: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-hang
spec:
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sleep, '1000']
    readinessProbe:
      exec: {command: [/bin/sh, -c, 'echo probe >> /tmp/probes; exec sleep 100']}
      periodSeconds: 1
      timeoutSeconds: 1
";

#[test]
fn an_exec_probe_past_its_timeout_fails_and_its_process_is_killed() {
    let Some(mut pods) = Pods::new() else { return };
    play(&mut pods, "probe-hang", HANGING);
    let probes = pods.rootfs.path.join("tmp/probes");
    wait_until("three probes", || {
        std::fs::read_to_string(&probes)
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
    });
    let m = member(&pods, "probe-hang", "main");
    assert_eq!(m["ready"], false, "{m}");
    assert_eq!(
        m["last_probe_failure"], "Readiness probe failed: command \"/bin/sh\" timed out",
        "{m}"
    );
    // At most the attempt under way is left of them: the others were killed and reaped.
    let monitor = pods.ps_json("probe-hang");
    let container_pid = m["pid"].as_u64().expect("pid");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pods.rootfs.state_root().join(".pods/probe-hang/pod.json"))
            .expect("pod.json"),
    )
    .expect("json");
    let pid = record["monitor"]["pid"].as_u64().expect("monitor pid");
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
    let others: Vec<&str> = children
        .split_whitespace()
        .filter(|c| c.parse::<u64>().ok() != Some(container_pid))
        .collect();
    assert!(others.len() <= 1, "{others:?} {monitor}");
    pods.remove_all();
}

const ON_A_NETWORK: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: probe-onnet
spec:
  containers:
  - name: web
    image: ROOTFS
    command: [/bin/sh, -c, 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p $(hostname -i):8080 -h /www']
    readinessProbe:
      httpGet: {path: /index.html, port: 8080}
      periodSeconds: 1
";

#[test]
fn an_http_get_probe_reaches_the_pods_ip_on_its_network() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let file = pods.rootfs.scratch().join("onnet.yaml");
    std::fs::write(&file, ON_A_NETWORK.replace("ROOTFS", pods.rootfs.arg())).expect("manifest");
    let out = pods.play("probe-onnet", &file, &["--network", &net.name]);
    assert_eq!(out.code, 0, "{out:?}");
    // httpd listens on the pod's IP only: the probe's default host.
    wait_until("web ready", || {
        member(&pods, "probe-onnet", "web")["ready"] == true
    });
    // Any failure (before httpd listened) names that address too.
    let ps = pods.ps_json("probe-onnet");
    let ip = ps["addresses"][0]
        .as_str()
        .and_then(|a| a.split('/').next());
    let m = member(&pods, "probe-onnet", "web");
    if let (Some(failure), Some(ip)) = (m["last_probe_failure"].as_str(), ip) {
        assert!(failure.contains(&format!("http://{ip}:8080/")), "{m}");
    }
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}
