//! `peapod inspect`: containers and images as a JSON array, with docker's field names where
//! peapod knows the field.

use peapod_pod::peapod_net::PortMapping;
use peapod_runtime::image::IMAGE_ID_ANNOTATION;
use peapod_runtime::{Error, Runtime};
use serde_json::{json, Value};

use crate::args::{GlobalArgs, InspectArgs, InspectType};
use crate::output::outln;
use crate::ps::Container;

/// Docker's zero time, which it prints for a time that has not come (a container not
/// started or not finished).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn run(rt: &Runtime, global: &GlobalArgs, args: &InspectArgs) -> Result<i32, Error> {
    let mut out = Vec::new();
    for target in &args.targets {
        out.push(inspect_one(rt, global, target, args.kind)?);
    }
    outln!("{}", crate::to_json(&out)?);
    Ok(0)
}

/// A container first (as docker looks), then an image, unless `kind` names one.
fn inspect_one(
    rt: &Runtime,
    global: &GlobalArgs,
    target: &str,
    kind: Option<InspectType>,
) -> Result<Value, Error> {
    if kind != Some(InspectType::Image) {
        // An ambiguous prefix is an error here too, not a reason to look for an image; a
        // name no container could have (`busybox:1`) may still be an image's.
        let found = rt.resolve(target).and_then(|id| Container::load(rt, &id));
        match found {
            Ok(container) => return Ok(container_json(rt, &container)),
            Err(Error::State(
                peapod_state::Error::NotFound(_) | peapod_state::Error::InvalidId { .. },
            )) => {}
            Err(e) => return Err(e),
        }
    }
    if kind != Some(InspectType::Container) {
        let store = crate::image::store(rt, global)?;
        if let Some(image) = store.resolve(target).ok().flatten() {
            return Ok(crate::image::inspect_json(&image));
        }
    }
    let what = match kind {
        Some(InspectType::Container) => "container",
        Some(InspectType::Image) => "image",
        None => "object",
    };
    // Docker's words and status: "No such object", exit 1.
    Err(Error::Reported {
        code: 1,
        message: format!("no such {what}: {target}"),
    })
}

fn container_json(rt: &Runtime, c: &Container) -> Value {
    let args = c.args();
    let (path, rest) = match args.split_first() {
        Some((path, rest)) => (path.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let exit = c.record.as_ref().and_then(|r| r.exit);
    let created = peapod_state::rfc3339(c.created());
    // Its process's start (a container made by `create` and started later: its create).
    let started = c.started().map_or_else(
        || ZERO_TIME.to_owned(),
        |(secs, nanos)| peapod_state::rfc3339_nanos(secs, nanos),
    );
    let policy = c
        .record
        .as_ref()
        .map(peapod_runtime::RestartPolicy::of)
        .unwrap_or_default();
    let user = c.process_field("user").map(|u| {
        let id = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        match (id("uid"), id("gid")) {
            (0, 0) => String::new(),
            (uid, gid) => format!("{uid}:{gid}"),
        }
    });
    json!({
        "Id": c.state.id,
        // Docker's names begin with "/".
        "Name": c.name().map(|n| format!("/{n}")).unwrap_or_default(),
        "Created": created,
        "Path": path,
        "Args": rest,
        "State": {
            "Status": c.docker_state(),
            "Running": c.state.status == "running",
            "Restarting": c.is_restarting(),
            "Paused": c.state.status == "paused",
            "Pid": c.state.pid,
            "ExitCode": exit.map_or(0, |e| e.code),
            "StartedAt": started,
            "FinishedAt": exit.map_or_else(
                || ZERO_TIME.to_owned(),
                |e| peapod_state::rfc3339_nanos(e.finished, e.finished_nanos),
            ),
        },
        "RestartCount": c.restart_count(),
        "Image": c.state.annotations.get(IMAGE_ID_ANNOTATION).cloned().unwrap_or_default(),
        "Config": {
            "Image": c.image(),
            "Env": c.process_field("env").unwrap_or_else(|| json!([])),
            "Cmd": args,
            "WorkingDir": c.process_field("cwd").unwrap_or_else(|| json!("")),
            "User": user.unwrap_or_default(),
            "Labels": c.state.annotations,
        },
        "HostConfig": host_config(c, policy),
        "NetworkSettings": { "Ports": ports(&c.ports(rt)) },
        "Mounts": mounts(c),
        "Rootfs": c.state.rootfs,
        "Bundle": c.state.bundle,
    })
}

/// Docker's `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
fn ports(mappings: &[PortMapping]) -> Value {
    let mut ports = serde_json::Map::new();
    for m in mappings {
        let key = format!("{}/{}", m.container_port, m.protocol);
        let binding = json!({
            "HostIp": m.host_ip.map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string()),
            "HostPort": m.host_port.to_string(),
        });
        if let Value::Array(list) = ports.entry(key).or_insert_with(|| json!([])) {
            list.push(binding);
        }
    }
    Value::Object(ports)
}

/// The limits docker's `HostConfig` has (0: none), from the spec's `linux.resources`.
fn host_config(c: &Container, policy: peapod_runtime::RestartPolicy) -> Value {
    let resources: Option<Value> = c
        .record
        .as_ref()
        .and_then(|r| r.spec_resources.as_ref())
        .and_then(|r| r.parse().ok());
    let resources = resources.as_ref();
    let at = |path: &str| {
        resources
            .and_then(|r| r.pointer(path))
            .and_then(Value::as_i64)
    };
    let nano_cpus = match (at("/cpu/quota"), at("/cpu/period")) {
        (Some(quota), Some(period)) if quota > 0 && period > 0 => quota * 1_000_000_000 / period,
        _ => 0,
    };
    json!({
        "Memory": at("/memory/limit").filter(|m| *m > 0).unwrap_or(0),
        "NanoCpus": nano_cpus,
        "PidsLimit": at("/pids/limit").filter(|p| *p > 0),
        "RestartPolicy": restart_policy(policy),
    })
}

/// docker's `HostConfig.RestartPolicy`: `{"Name": "on-failure", "MaximumRetryCount": 3}`.
fn restart_policy(policy: peapod_runtime::RestartPolicy) -> Value {
    use peapod_runtime::RestartPolicy;
    let text = policy.to_string();
    let (name, count) = match policy {
        RestartPolicy::OnFailure(max) => ("on-failure", max.unwrap_or(0)),
        _ => (text.as_str(), 0),
    };
    json!({ "Name": name, "MaximumRetryCount": count })
}

/// The bind mounts and anonymous volumes, as docker lists them; the file systems every
/// container gets (`/proc`, `/dev`, ...) are left out, as docker leaves them out.
fn mounts(c: &Container) -> Vec<Value> {
    let mounts = c.record.as_ref().and_then(|r| r.spec_mounts.as_ref());
    let Some(Value::Array(mounts)) = mounts.and_then(|m| m.parse().ok()) else {
        return Vec::new();
    };
    mounts
        .iter()
        .filter_map(|m| {
            let options: Vec<&str> = m
                .get("options")
                .and_then(Value::as_array)
                .map(|o| o.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let bind = m.get("type").and_then(Value::as_str) == Some("bind")
                || options.iter().any(|o| matches!(*o, "bind" | "rbind"));
            // An anonymous volume is peapod's only bind with `copyup`.
            let typ = match options.contains(&"copyup") {
                true => "volume",
                false => "bind",
            };
            bind.then(|| {
                json!({
                    "Type": typ,
                    "Source": m.get("source").cloned().unwrap_or(Value::Null),
                    "Destination": m.get("destination").cloned().unwrap_or(Value::Null),
                    "Mode": "",
                    "RW": !options.contains(&"ro"),
                    "Propagation": options
                        .iter()
                        .find(|o| o.ends_with("private") || o.ends_with("shared") || o.ends_with("slave"))
                        .copied()
                        .unwrap_or(""),
                })
            })
        })
        .collect()
}
