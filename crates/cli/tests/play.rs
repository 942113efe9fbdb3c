//! `pod play` of files as `kubectl apply -f` takes them: several documents, ConfigMaps and
//! Secrets feeding env and volumes, the downward API, controllers' pod templates, skipped
//! kinds, `--replace`, and `subPath` kept inside its volume.

mod support;

use support::net::pods_on;
use support::pods::Pods;
use support::wait_until;

/// Writes `text` (ROOTFS replaced by the test rootfs) as the test's manifest `name`.
fn manifest(pods: &Pods, name: &str, text: &str) -> std::path::PathBuf {
    let file = pods.rootfs.scratch().join(name);
    std::fs::write(&file, text.replace("ROOTFS", pods.rootfs.arg())).expect("manifest");
    file
}

/// The names of the pods under the test's state root.
fn pod_names(pods: &Pods) -> Vec<String> {
    let out = pods.peapod(&["pod", "list", "-q"]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.lines().map(str::to_owned).collect()
}

/// The status of container `name` of `pod` in `pod ps`.
fn container_status(pods: &Pods, pod: &str, name: &str) -> String {
    let ps = pods.ps_json(pod);
    ps["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Given with `--configmap`, as podman's `kube play --configmap`.
const CONFIG_MAP: &str = "
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  greeting: hello
  app.conf: |
    port=8080
";

const CONFIGURED: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
type: Opaque
data: {password: czNjcjN0}
stringData: {user: admin}
---
apiVersion: v1
kind: Pod
metadata:
  name: configured
  labels: {app: cfg}
spec:
  restartPolicy: Never
  volumes:
  - name: config
    configMap:
      name: app-config
      items: [{key: app.conf, path: conf/app.conf, mode: 0600}]
  - name: secret
    secret: {secretName: app-secret, defaultMode: 0400}
  - name: all
    projected:
      sources:
      - configMap: {name: app-config, items: [{key: greeting, path: greeting}]}
      - secret: {name: app-secret, items: [{key: user, path: user, mode: 0440}]}
      - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c]
    args:
    - |
      echo "greeting=$GREETING pw=$PASSWORD cfg=$CFG_greeting msg=$(MSG) mem=$MEM"
      echo "by expr: $(cat /expr/app.conf)"
      stat -L -c 'mode %a %n' /config/conf/app.conf /secret/password /all/user /etc/app.conf
      echo "conf: $(cat /etc/app.conf) user: $(cat /all/user) greeting: $(cat /all/greeting)"
      cat /all/labels
      echo "top: $(ls /config)"
      touch /secret/x 2>/dev/null || echo secret-read-only
      echo finished
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: app-secret, key: password}}}
    - {name: ABSENT, valueFrom: {secretKeyRef: {name: app-secret, key: nope, optional: true}}}
    - {name: MSG, value: "$(GREETING) world"}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CONF_DIR, value: conf}
    resources: {limits: {memory: 64Mi}}
    envFrom: [{configMapRef: {name: app-config}, prefix: CFG_}]
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret}
    - {name: all, mountPath: /all}
    - {name: config, mountPath: /etc/app.conf, subPath: conf/app.conf}
    - {name: config, mountPath: /expr, subPathExpr: $(CONF_DIR)}
"#;

#[test]
fn config_maps_and_secrets_feed_env_and_volumes() {
    let Some(mut pods) = Pods::new() else { return };
    let file = manifest(&pods, "configured.yaml", CONFIGURED);
    let config_map = manifest(&pods, "cm.yaml", CONFIG_MAP);
    let config_map = config_map.display().to_string();
    let without = pods.play("configured", &file, &["--network", "none"]);
    assert_eq!(without.code, 2, "{without:?}");
    assert!(
        without.stderr.contains("no ConfigMap \"app-config\""),
        "{without:?}"
    );
    let play = pods.play(
        "configured",
        &file,
        &["--network", "none", "--configmap", &config_map],
    );
    assert_eq!(play.code, 0, "{play:?}");
    assert_eq!(play.stdout.trim(), "configured", "{play:?}");
    wait_until("the container's output", || {
        pods.logs("configured", "main").contains("finished")
    });
    let log = pods.logs("configured", "main");
    for expected in [
        "greeting=hello pw=s3cr3t cfg=hello msg=hello world mem=64",
        "by expr: port=8080",
        "mode 600 /config/conf/app.conf",
        "mode 400 /secret/password",
        "mode 440 /all/user",
        "mode 600 /etc/app.conf",
        "conf: port=8080 user: admin greeting: hello",
        "app=\"cfg\"",
        "top: conf",
        "secret-read-only",
    ] {
        assert!(log.contains(expected), "{expected:?} in {log}");
    }
    pods.names.dedup();
    pods.remove_all();
}

#[test]
fn field_refs_give_the_pods_own_name_namespace_and_ip() {
    let Some((net, mut pods)) = pods_on(24) else {
        return;
    };
    let file = manifest(
        &pods,
        "fields.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: fields, namespace: shop}
spec:
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c, 'echo "ip=$POD_IP name=$POD_NAME ns=$POD_NAMESPACE node=$NODE"; exec sleep 1000']
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
"#,
    );
    let play = pods.play("fields", &file, &["--network", &net.name]);
    assert_eq!(play.code, 0, "{play:?}");
    wait_until("the container's output", || {
        pods.logs("fields", "main").contains("ip=")
    });
    let ps = pods.ps_json("fields");
    let ip = ps["addresses"][0]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("an address")
        .to_owned();
    assert!(ip.starts_with(&net.prefix()), "{ip}");
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let expected = format!("ip={ip} name=fields ns=shop node={}", node.trim());
    let log = pods.logs("fields", "main");
    assert!(log.contains(&expected), "{expected:?} in {log}");
    pods.remove_all();
    assert_eq!(net.leftovers(), Vec::<String>::new());
}

const CONTROLLERS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: ROOTFS
        command: [/bin/sh, -c, 'echo serving; exec sleep 1000']
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: once
        image: ROOTFS
        command: [/bin/sh, -c, 'echo migrated']
"#;

/// Whether `name` is as a Deployment `web` names its pods: `web-HASH-XXXXX`.
fn deployment_style(name: &str) -> bool {
    let Some((hash, suffix)) = name.strip_prefix("web-").and_then(|r| r.split_once('-')) else {
        return false;
    };
    let safe = |s: &str| s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c));
    (1..=10).contains(&hash.len()) && suffix.len() == 5 && safe(hash) && safe(suffix)
}

#[test]
fn a_deployment_plays_its_replicas_a_job_runs_once_and_a_service_is_skipped() {
    let Some(mut pods) = Pods::new() else { return };
    let file = manifest(&pods, "app.yaml", CONTROLLERS);
    let file_arg = file.display().to_string();
    // The pods' names are the controllers' to give: each is removed on drop by its own.
    let play = pods.play("-", &file, &["--network", "none"]);
    pods.names.clear();
    let played: Vec<String> = play.stdout.lines().map(str::to_owned).collect();
    pods.names.extend(played.iter().cloned());
    assert_eq!(play.code, 0, "{play:?}");
    assert_eq!(
        play.stderr.matches("skipped Service web").count(),
        1,
        "{play:?}"
    );
    let web: Vec<&String> = played.iter().filter(|n| n.starts_with("web-")).collect();
    assert_eq!(web.len(), 2, "{played:?}");
    assert!(web.iter().all(|n| deployment_style(n)), "{played:?}");
    assert_ne!(web[0], web[1]);
    // Both replicas come from one template: the same pod-template-hash.
    assert_eq!(web[0].split('-').nth(1), web[1].split('-').nth(1));
    let job: Vec<&String> = played
        .iter()
        .filter(|n| n.starts_with("migrate-"))
        .collect();
    assert_eq!(job.len(), 1, "{played:?}");
    assert_eq!(job[0].len(), "migrate-".len() + 5, "{played:?}");
    for pod in &web {
        wait_until("the replica's output", || {
            pods.logs(pod, "server").contains("serving")
        });
        assert_eq!(container_status(&pods, pod, "server"), "running");
    }
    let list = pods.peapod(&["pod", "list", "--format", "json"]);
    assert!(list.stdout.contains("pod-template-hash"), "{list:?}");
    assert!(list.stdout.contains("\"job-name\""), "{list:?}");
    // The Job's pod runs once to completion and is not restarted (restartPolicy: Never).
    wait_until("the job to complete", || {
        container_status(&pods, job[0], "once") == "stopped"
    });
    assert_eq!(pods.logs(job[0], "once").trim(), "migrated");
    assert_eq!(pods.ps_json(job[0])["containers"][0]["restarts"], 0);

    // Played again: the controllers' pods exist, so nothing is made and they run on.
    let again = pods.peapod(&[
        "pod",
        "play",
        "--init-path",
        &pods.init.display().to_string(),
        "--network",
        "none",
        &file_arg,
    ]);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(
        again.stderr.contains(&format!("pod {}", web[0])),
        "{again:?}"
    );
    assert!(again.stderr.contains("exists"), "{again:?}");
    assert_eq!(pod_names(&pods).len(), 3);
    assert_eq!(container_status(&pods, web[0], "server"), "running");

    // --replace: the old pods go, new ones come.
    let init = pods.init.display().to_string();
    let replaced = pods.peapod(&[
        "pod",
        "play",
        "--replace",
        "--init-path",
        &init,
        "--network",
        "none",
        &file_arg,
    ]);
    let new: Vec<String> = replaced.stdout.lines().map(str::to_owned).collect();
    pods.names.extend(new.iter().cloned());
    assert_eq!(replaced.code, 0, "{replaced:?}");
    let mut now = pod_names(&pods);
    now.sort();
    let mut expected = new.clone();
    expected.sort();
    assert_eq!(now, expected, "only the new pods are left");
    assert!(played.iter().all(|old| !now.contains(old)), "{now:?}");

    let down = pods.peapod(&["pod", "play", "--down", &file_arg]);
    assert_eq!(down.code, 0, "{down:?}");
    assert_eq!(pod_names(&pods), Vec::<String>::new());
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}

const SINGLE: &str = "
apiVersion: v1
kind: Pod
metadata: {name: single}
spec:
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c, 'echo started; exec sleep 1000']
";

#[test]
fn a_second_play_names_the_pod_and_replace_makes_it_again() {
    let Some(mut pods) = Pods::new() else { return };
    let file = manifest(&pods, "single.yaml", SINGLE);
    let play = pods.play("single", &file, &["--network", "none"]);
    assert_eq!(play.code, 0, "{play:?}");
    let infra = pods.ps_json("single")["infra_pid"].clone();
    let again = pods.play("single", &file, &["--network", "none"]);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("pod single exists"), "{again:?}");
    assert!(!again.stderr.contains("container"), "{again:?}");
    assert_eq!(pods.ps_json("single")["infra_pid"], infra, "left running");
    assert_eq!(container_status(&pods, "single", "main"), "running");
    let replaced = pods.play("single", &file, &["--network", "none", "--replace"]);
    assert_eq!(replaced.code, 0, "{replaced:?}");
    let ps = pods.ps_json("single");
    assert_ne!(ps["infra_pid"], infra, "made again");
    assert_eq!(ps["status"], "running");
    pods.names.dedup();
    pods.remove_all();
}

#[test]
fn a_sub_path_that_is_a_link_out_of_its_volume_is_refused() {
    let Some(mut pods) = Pods::new() else { return };
    // A container of the pod makes the link; another mounts it with subPath.
    let file = manifest(
        &pods,
        "hostile.yaml",
        "
apiVersion: v1
kind: Pod
metadata: {name: hostile}
spec:
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: plant
    image: ROOTFS
    command: [/bin/sh, -c, 'ln -s /etc /data/evil && mkdir /data/fine && echo ok > /data/fine/x']
    volumeMounts: [{name: shared, mountPath: /data}]
  containers:
  - name: main
    image: ROOTFS
    command: [/bin/sh, -c, 'cat /mnt/SUB/passwd /mnt/SUB/x; exec sleep 1000']
    volumeMounts: [{name: shared, mountPath: /mnt/SUB, subPath: SUB}]
",
    );
    let text = std::fs::read_to_string(&file).expect("manifest");
    std::fs::write(&file, text.replace("SUB", "evil")).expect("manifest");
    let play = pods.play("hostile", &file, &["--network", "none"]);
    assert_ne!(play.code, 0, "{play:?}");
    assert!(
        play.stderr.contains("subPath \"evil\"") && play.stderr.contains("leaves the volume"),
        "{play:?}"
    );
    assert_eq!(pod_names(&pods), Vec::<String>::new(), "nothing left");
    pods.names.clear();
    // The same volume with a subPath inside it works.
    std::fs::write(&file, text.replace("SUB", "fine")).expect("manifest");
    let play = pods.play("hostile", &file, &["--network", "none"]);
    assert_eq!(play.code, 0, "{play:?}");
    wait_until("the container's output", || {
        pods.logs("hostile", "main").contains("ok")
    });
    // A staging mount a killed monitor left is unmounted by `pod rm`, never removed
    // through (which would delete the volume's files).
    let victim = pods.rootfs.scratch().join("victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("keep"), "keep").expect("write");
    let staged = pods
        .rootfs
        .state_root()
        .join(".pods/hostile/subpaths/hostile-main-0");
    std::fs::create_dir_all(&staged).expect("mkdir");
    let status = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&victim)
        .arg(&staged)
        .status()
        .expect("mount");
    assert!(status.success());
    pods.remove_all();
    assert!(
        victim.join("keep").exists(),
        "the mounted directory's files are kept"
    );
}

#[test]
fn a_list_with_a_stateful_set_plays_ordered_names_and_down_removes_them() {
    let Some(mut pods) = Pods::new() else { return };
    let file = manifest(
        &pods,
        "db.yaml",
        "
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    replicas: 2
    serviceName: db
    selector: {matchLabels: {app: db}}
    template:
      metadata: {labels: {app: db}}
      spec:
        terminationGracePeriodSeconds: 1
        containers:
        - name: main
          image: ROOTFS
          command: [/bin/sh, -c, 'echo \"I am $(hostname)\"; exec sleep 1000']
",
    );
    let play = pods.play("db-0", &file, &["--network", "none"]);
    pods.names.push("db-1".to_owned());
    assert_eq!(play.code, 0, "{play:?}");
    assert_eq!(play.stdout, "db-0\ndb-1\n", "{play:?}");
    assert!(
        play.stderr
            .contains("StatefulSet db: spec.serviceName: ignored"),
        "{play:?}"
    );
    for name in ["db-0", "db-1"] {
        wait_until("the replica's output", || {
            pods.logs(name, "main").contains(&format!("I am {name}"))
        });
    }
    let down = pods.peapod(&["pod", "play", "--down", &file.display().to_string()]);
    assert_eq!(down.code, 0, "{down:?}");
    assert_eq!(pod_names(&pods), Vec::<String>::new());
    pods.names.clear();
    pods.rootfs.assert_nothing_left();
}

/// The full manifests of docs/pods.md (the ```yaml blocks that begin with `apiVersion:`),
/// `image: busybox` replaced by the test's rootfs.
fn documented_manifests(rootfs: &str) -> Vec<String> {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/pods.md");
    let text = std::fs::read_to_string(doc).expect("docs/pods.md");
    text.split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.starts_with("apiVersion:"))
        .map(|block| block.replace("image: busybox", &format!("image: {rootfs}")))
        .collect()
}

#[test]
fn the_manifests_of_docs_pods_md_play_until_ready_and_go_with_down() {
    let Some(mut pods) = Pods::new() else { return };
    let manifests = documented_manifests(pods.rootfs.arg());
    assert!(manifests.len() >= 2, "{manifests:#?}");
    for (i, text) in manifests.iter().enumerate() {
        let file = pods.rootfs.scratch().join(format!("doc{i}.yaml"));
        std::fs::write(&file, text).expect("manifest");
        let file_arg = file.display().to_string();
        let init = pods.init.display().to_string();
        let out = pods.peapod(&[
            "pod",
            "play",
            "--init-path",
            &init,
            "--network",
            "none",
            &file_arg,
        ]);
        // Whatever it made is removed on drop, also should an assertion fail.
        let names = pod_names(&pods);
        pods.names.extend(names.iter().cloned());
        assert_eq!(out.code, 0, "manifest {i}: {out:?}\n{text}");
        assert!(!names.is_empty(), "manifest {i} made no pod: {out:?}");
        for name in &names {
            wait_until(&format!("pod {name} of manifest {i} ready"), || {
                pods.ps_json(name)["ready"] == true
            });
        }
        let down = pods.peapod(&["pod", "play", "--down", &file_arg]);
        assert_eq!(down.code, 0, "manifest {i}: {down:?}");
        assert_eq!(pod_names(&pods), Vec::<String>::new(), "manifest {i}");
        pods.names.clear();
    }
}
