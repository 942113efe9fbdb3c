//! A manifest's `resources` and `emptyDir` sizes: Kubernetes quantities (`64Mi`, `500m`,
//! `1e9`), turned into the limits the kubelet gives a container's cgroup (memory limit, CFS
//! quota over a 100 ms period, cpu shares, which cgroup v2 takes as a weight) and the pod's
//! cgroup (the sums, as `ResourceConfigForPod` computes them); and `emptyDir.medium:
//! Memory`, a tmpfs mounted in the pod's state, which `pod rm` unmounts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources, Spec};
use serde::{Deserialize, Serialize};
use serde_norway::Value;

use crate::{ContainerPlan, ManifestError, PodPlan, VolumeSource};

/// The CFS period the kubelet uses (100 ms, in µs).
const PERIOD_US: u64 = 100_000;
/// The kubelet's bounds of `cpu.shares` and smallest quota (`MinShares`, `MaxShares`,
/// `MinQuotaPeriod`).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const MIN_QUOTA: u64 = 1000;

fn bad(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A container's `resources` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawResources {
    #[serde(default)]
    limits: BTreeMap<String, Value>,
    #[serde(default)]
    requests: BTreeMap<String, Value>,
    claims: Option<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

/// What a container's `resources` ask of its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesPlan {
    /// Whether `resources` gave a cpu or memory request or limit (then the container gets
    /// cpu shares from its request, 2 without one, as the kubelet gives them).
    pub given: bool,
    /// `limits.memory`, in bytes.
    pub memory_limit: Option<u64>,
    /// `limits.cpu`, in thousandths of a CPU.
    pub cpu_limit: Option<u64>,
    /// `requests.cpu` (else `limits.cpu`, as Kubernetes defaults it), in thousandths.
    pub cpu_request: Option<u64>,
}

/// A Kubernetes quantity (`resource.Quantity`: `128974848`, `129e6`, `129M`, `123Mi`,
/// `0.5`, `500m`) times `scale` (1000 for thousandths), rounded up as Kubernetes rounds
/// `Value()` and `MilliValue()`. Negative and overflowing ones are refused.
pub fn quantity(text: &str, scale: u32) -> Result<u64, String> {
    let err = || format!("{text:?} is not a quantity (e.g. 128Mi, 1G, 500m, 0.5, 1e9)");
    let s = text.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    if scale == 0 || 10u32.pow(scale.ilog10()) != scale {
        return Err(format!("scale {scale} is not a power of ten"));
    }
    let too_big = || format!("{text:?} is too large");
    // value = digits * 10^exp10 * 1024^exp2
    let all = format!("{whole}{fraction}");
    let significant = all.trim_start_matches('0');
    let digits: u128 = match significant.is_empty() {
        true => 0,
        false => significant.parse().map_err(|_| too_big())?,
    };
    let mut exp10 = i64::from(scale.ilog10()) - fraction.len() as i64;
    let mut exp2 = 0u32;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 1,
        "Mi" => exp2 = 2,
        "Gi" => exp2 = 3,
        "Ti" => exp2 = 4,
        "Pi" => exp2 = 5,
        "Ei" => exp2 = 6,
        e if e.starts_with(['e', 'E']) => {
            let exponent: i64 = e[1..].parse().map_err(|_| err())?;
            exp10 += exponent;
        }
        _ => return Err(err()),
    }
    if !(-40..=40).contains(&exp10) {
        return match digits == 0 || exp10 < 0 {
            // So small it rounds up to the smallest unit (or is zero).
            true => Ok(u64::from(digits != 0)),
            false => Err(too_big()),
        };
    }
    let mut value = digits.checked_mul(1024u128.pow(exp2)).ok_or_else(too_big)?;
    if exp10 >= 0 {
        value = value
            .checked_mul(10u128.pow(exp10 as u32))
            .ok_or_else(too_big)?;
    } else {
        value = value.div_ceil(10u128.pow((-exp10) as u32));
    }
    u64::try_from(value)
        .ok()
        .filter(|v| *v <= i64::MAX as u64)
        .ok_or_else(too_big)
}

/// A quantity written in YAML (a string or a number), at `at`.
fn quantity_at(at: &str, value: &Value, scale: u32) -> Result<u64, ManifestError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(bad(at, "expected a quantity (e.g. 128Mi, 500m)")),
    };
    quantity(&text, scale).map_err(|e| bad(at, e))
}

/// Checks a container's `resources` (at `at`).
pub(crate) fn container(
    at: &str,
    raw: Option<RawResources>,
    warnings: &mut Vec<String>,
) -> Result<ResourcesPlan, ManifestError> {
    let Some(raw) = raw else {
        return Ok(ResourcesPlan::default());
    };
    if let Some(key) = raw.extra.keys().next() {
        return Err(bad(format!("{at}.{key}"), "unknown field"));
    }
    if raw.claims.is_some() {
        return Err(bad(
            format!("{at}.claims"),
            "not supported: peapod has no dynamic resource allocation",
        ));
    }
    let mut plan = ResourcesPlan::default();
    for (kind, map) in [("limits", &raw.limits), ("requests", &raw.requests)] {
        for (name, value) in map {
            let field = format!("{at}.{kind}.{name}");
            match (kind, name.as_str()) {
                ("limits", "memory") => plan.memory_limit = Some(quantity_at(&field, value, 1)?),
                ("limits", "cpu") => plan.cpu_limit = Some(quantity_at(&field, value, 1000)?),
                ("requests", "cpu") => plan.cpu_request = Some(quantity_at(&field, value, 1000)?),
                ("requests", "memory") => {
                    // Checked, and a scheduling hint only: the kubelet writes nothing for it
                    // (but with the alpha MemoryQoS on cgroup v2).
                    quantity_at(&field, value, 1)?;
                }
                (_, "ephemeral-storage") => {
                    quantity_at(&field, value, 1)?;
                    warnings.push(format!(
                        "{field}: not enforced (the kubelet enforces it only by evicting the pod)"
                    ));
                }
                (_, hugepages) if hugepages.starts_with("hugepages-") => {
                    return Err(bad(field, "not supported: peapod reserves no huge pages"))
                }
                _ => {
                    return Err(bad(
                        field,
                        "not supported: peapod knows cpu, memory and ephemeral-storage (no device plugins)",
                    ))
                }
            }
        }
    }
    if let (Some(request), Some(limit)) = (plan.cpu_request, plan.cpu_limit) {
        if request > limit {
            return Err(bad(
                format!("{at}.requests.cpu"),
                "must be less than or equal to the cpu limit",
            ));
        }
    }
    plan.cpu_request = plan.cpu_request.or(plan.cpu_limit);
    plan.given = plan.cpu_request.is_some()
        || plan.memory_limit.is_some()
        || raw.requests.contains_key("memory");
    Ok(plan)
}

/// The kubelet's `MilliCPUToShares`.
pub fn shares(milli_cpu: u64) -> u64 {
    (milli_cpu * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The kubelet's `MilliCPUToQuota` over [`PERIOD_US`].
pub fn quota(milli_cpu: u64) -> i64 {
    (milli_cpu * PERIOD_US / 1000).max(MIN_QUOTA) as i64
}

/// The cgroup limits of `memory`, `cpu_limit` and `cpu_request` (each `None` for none).
fn limits(memory: Option<u64>, cpu_limit: Option<u64>, cpu_request: Option<u64>) -> LinuxResources {
    let mut resources = LinuxResources::default();
    if let Some(bytes) = memory {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(bytes as i64));
        resources.set_memory(Some(m));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(cpu_request.map(shares));
    if let Some(milli) = cpu_limit {
        cpu.set_quota(Some(quota(milli)));
        cpu.set_period(Some(PERIOD_US));
    }
    resources.set_cpu(Some(cpu));
    resources
}

/// Writes container `c`'s limits into its spec's `linux.resources` (its device rules kept).
pub(crate) fn apply(spec: &mut Spec, c: &ContainerPlan) {
    let r = &c.resources;
    if !r.given {
        return;
    }
    let own = limits(
        r.memory_limit,
        r.cpu_limit,
        Some(r.cpu_request.unwrap_or(0)),
    );
    if let Some(linux) = spec.linux_mut() {
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_memory(*own.memory());
        resources.set_cpu(own.cpu().clone());
        linux.set_resources(Some(resources));
    }
}

/// The kubelet's pod total of one value: the sum over the containers, or the largest init
/// container's where that is more (init containers run one at a time, before them). `None`
/// unless every container gives it.
fn pod_total(plan: &PodPlan, value: impl Fn(&ResourcesPlan) -> Option<u64>) -> Option<u64> {
    let sum = plan
        .containers
        .iter()
        .map(|c| value(&c.resources))
        .sum::<Option<u64>>()?;
    let init = plan
        .init_containers
        .iter()
        .map(|c| value(&c.resources))
        .collect::<Option<Vec<u64>>>()?;
    Some(init.into_iter().fold(sum, u64::max))
}

/// The limits of the pod's cgroup, as the kubelet sets them: memory and cpu limits the totals
/// when every container has one, cpu shares from the total of the requests; `None` when no
/// container gives `resources`.
pub(crate) fn pod(plan: &PodPlan) -> Option<LinuxResources> {
    let all = || plan.init_containers.iter().chain(&plan.containers);
    if !all().any(|c| c.resources.given) {
        return None;
    }
    let requests = pod_total(plan, |r| Some(r.cpu_request.unwrap_or(0)));
    Some(limits(
        pod_total(plan, |r| r.memory_limit),
        pod_total(plan, |r| r.cpu_limit),
        requests,
    ))
}

/// Checks `emptyDir` (at `at`): a directory of the pod's state, or with `medium: Memory` a
/// tmpfs of `sizeLimit` bytes.
pub(crate) fn empty_dir(
    at: &str,
    raw: &Value,
    warnings: &mut Vec<String>,
) -> Result<VolumeSource, ManifestError> {
    let (mut memory, mut size) = (false, None);
    for (key, value) in raw.as_mapping().into_iter().flatten() {
        let key = key.as_str().unwrap_or_default();
        let field = format!("{at}.emptyDir.{key}");
        match (key, value) {
            ("medium", Value::String(m)) if m.is_empty() => {}
            ("medium", Value::String(m)) if m == "Memory" => memory = true,
            ("medium", _) => {
                return Err(bad(
                    field,
                    "not supported: expected \"\" (the disk) or Memory (no huge pages)",
                ))
            }
            ("sizeLimit", value) => size = Some(quantity_at(&field, value, 1)?),
            _ => warnings.push(format!("{field}: ignored")),
        }
    }
    match (memory, size) {
        (true, size) => Ok(VolumeSource::Memory { size }),
        (false, Some(_)) => {
            warnings.push(format!(
                "{at}.emptyDir.sizeLimit: not enforced on the disk (the kubelet enforces it only by evicting the pod)"
            ));
            Ok(VolumeSource::EmptyDir)
        }
        (false, None) => Ok(VolumeSource::EmptyDir),
    }
}

/// Makes emptyDir `dir` as the kubelet does: mode 0777, and with `fs_group` owned by that
/// group and setgid (files made in it get the group); for `medium: Memory` a tmpfs of `size`
/// bytes (else the pod's memory limit `pod_memory`, else the kernel's default, half the RAM).
pub(crate) fn make_empty_dir(
    dir: &Path,
    memory: Option<Option<u64>>,
    pod_memory: Option<u64>,
    fs_group: Option<u32>,
) -> anyhow::Result<()> {
    let mode = match fs_group {
        Some(_) => 0o2777,
        None => 0o777,
    };
    if let Some(size) = memory {
        let mut options = format!("mode={mode:o}");
        if let Some(bytes) = size.or(pod_memory) {
            options.push_str(&format!(",size={bytes}"));
        }
        if let Some(gid) = fs_group {
            options.push_str(&format!(",gid={gid}"));
        }
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .with_context(|| format!("cannot mount a tmpfs on {}", dir.display()))?;
        return Ok(());
    }
    if let Some(gid) = fs_group {
        std::os::unix::fs::chown(dir, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// Unmounts the tmpfs volumes of the pod whose directory is `pod_dir` (before it is
/// removed); directories that are no mount point are left as they are.
pub(crate) fn unmount_volumes(pod_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // NOFOLLOW: a link there (none of peapod's) must not unmount what it points at.
        match umount2(&path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
            Err(e) => return Err(anyhow::anyhow!("cannot unmount {}: {e}", path.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_parses_them() {
        for (text, scale, want) in [
            ("64Mi", 1, 64 << 20),
            ("1Gi", 1, 1 << 30),
            ("1G", 1, 1_000_000_000),
            ("129e6", 1, 129_000_000),
            ("1.5Gi", 1, 3 << 29),
            ("128974848", 1, 128_974_848),
            ("1k", 1, 1000),
            ("0.5", 1000, 500),
            ("500m", 1000, 500),
            ("2", 1000, 2000),
            ("1.5m", 1000, 2),
            ("100m", 1, 1),
            ("0", 1000, 0),
            ("1E3", 1, 1000),
        ] {
            assert_eq!(quantity(text, scale), Ok(want), "{text}");
        }
        for text in ["", "-1", "1Mb", "Mi", "1..2", "1e", "abc", "1e100", "9Ei"] {
            assert!(quantity(text, 1).is_err(), "{text}");
        }
    }

    #[test]
    fn cpu_converts_as_the_kubelet_converts() {
        assert_eq!(shares(0), 2);
        assert_eq!(shares(1), 2);
        assert_eq!(shares(250), 256);
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(1_000_000), 262_144);
        assert_eq!(quota(500), 50_000);
        assert_eq!(quota(1), 1000);
    }

    fn parse(text: &str) -> Result<crate::Parsed, ManifestError> {
        crate::parse_manifest(text, Path::new("/"))
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers: [{name: i, image: busybox, resources: {limits: {memory: 300Mi, cpu: 100m}}}]\n  containers:\n  - {name: a, image: busybox, resources: {limits: {memory: 64Mi, cpu: 500m}, requests: {cpu: 250m}}}\n  - {name: b, image: busybox, resources: {limits: {memory: 128Mi, cpu: 1}}}\n";

    #[test]
    fn the_pod_gets_the_sums_as_the_kubelet_gives_them() {
        let plan = parse(POD).expect("parses").plan;
        let a = &plan.containers[0].resources;
        assert_eq!(
            (a.memory_limit, a.cpu_limit, a.cpu_request),
            (Some(64 << 20), Some(500), Some(250))
        );
        // b's request is its limit.
        assert_eq!(plan.containers[1].resources.cpu_request, Some(1000));
        let pod = super::pod(&plan).expect("limits");
        // Memory: the init container's 300Mi is more than 64Mi + 128Mi.
        assert_eq!(
            pod.memory().as_ref().and_then(|m| m.limit()),
            Some(300 << 20)
        );
        let cpu = pod.cpu().clone().expect("cpu");
        assert_eq!(cpu.quota(), Some(150_000));
        assert_eq!(cpu.shares(), Some(shares(1250)));
        // One container without a memory limit: no pod memory limit.
        let plan = parse(&POD.replace("{limits: {memory: 128Mi, cpu: 1}}", "{limits: {cpu: 1}}"))
            .expect("parses")
            .plan;
        assert_eq!(super::pod(&plan).and_then(|p| *p.memory()), None);
    }

    #[test]
    fn bad_resources_name_the_field() {
        let e = parse(&POD.replace("memory: 64Mi", "memory: 64MB")).expect_err("bad");
        assert!(
            e.to_string().starts_with(
                "spec.containers[0].resources.limits.memory: \"64MB\" is not a quantity"
            ),
            "{e}"
        );
        let e = parse(&POD.replace("memory: 64Mi", "hugepages-2Mi: 4Mi")).expect_err("bad");
        assert!(
            e.to_string()
                .contains("limits.hugepages-2Mi: not supported"),
            "{e}"
        );
        let e = parse(&POD.replace("cpu: 250m", "cpu: 2")).expect_err("bad");
        assert!(
            e.to_string().contains("requests.cpu: must be less than"),
            "{e}"
        );
        let w = parse(&POD.replace("memory: 64Mi", "ephemeral-storage: 1Gi"))
            .expect("parses")
            .warnings
            .join("\n");
        assert!(w.contains("limits.ephemeral-storage: not enforced"), "{w}");
    }
}
