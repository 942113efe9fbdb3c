//! `linux.resources` as cgroup file writes, for v1 and v2, as runc writes them.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources, LinuxThrottleDevice,
};

use std::path::PathBuf;

use crate::cgroup::write;
use crate::device_filter::{Rule, STANDARD_DEVICES};
use crate::{Cgroup, Error, Result};

impl Cgroup {
    /// Writes the limits of `resources` into the cgroup. Each field given is written; a field
    /// left out is left as it is (so `update` changes only what it names). A field this host
    /// cannot apply is an error naming it. Device rules go to a v1 devices controller here;
    /// the cgroup2 device program is [`Cgroup::filter_devices`]'s.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        if let Some(memory) = resources.memory() {
            self.apply_memory(memory)?;
        }
        if let Some(cpu) = resources.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(pids) = resources.pids() {
            let value = match pids.limit() {
                n if n <= 0 => "max".to_owned(),
                n => n.to_string(),
            };
            self.set("pids", "pids.max", &value, "pids.limit")?;
        }
        if let Some(block_io) = resources.block_io() {
            self.apply_block_io(block_io)?;
        }
        for limit in resources.hugepage_limits().iter().flatten() {
            let name = match self.is_v2() {
                true => format!("hugetlb.{}.max", limit.page_size()),
                false => format!("hugetlb.{}.limit_in_bytes", limit.page_size()),
            };
            self.set(
                "hugetlb",
                &name,
                &limit.limit().to_string(),
                "hugepageLimits",
            )?;
        }
        if let Some(rules) = resources.devices() {
            self.apply_devices(rules)?;
        }
        if let Some(network) = resources.network() {
            self.apply_network(network)?;
        }
        if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            // Refused rather than dropped, as runc does for a controller it cannot use.
            return Err(unsupported("rdma", "peapod does not set rdma limits"));
        }
        if let Some(unified) = resources.unified() {
            if !unified.is_empty() && !self.is_v2() {
                return Err(unsupported("unified", "needs cgroup v2"));
            }
            for (key, value) in unified {
                if key.contains('/') || key.starts_with('.') {
                    return Err(unsupported(
                        "unified",
                        format!("{key:?} is not a file name"),
                    ));
                }
                self.set("", key, value, "unified")?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, m: &LinuxMemory) -> Result<()> {
        let bytes = |n: i64| {
            if n < 0 {
                "-1".to_owned()
            } else {
                n.to_string()
            }
        };
        if self.is_v2() {
            let max = |n: i64| {
                if n < 0 {
                    "max".to_owned()
                } else {
                    n.to_string()
                }
            };
            if let Some(limit) = m.limit() {
                self.set("memory", "memory.max", &max(limit), "memory.limit")?;
            }
            if let Some(swap) = m.swap() {
                // OCI's swap is memory plus swap (v1's memsw); v2's swap.max is swap alone.
                let value = match (swap, m.limit()) {
                    (s, _) if s < 0 => "max".to_owned(),
                    (s, Some(l)) if l >= 0 && s >= l => (s - l).to_string(),
                    (_, Some(l)) if l >= 0 => {
                        return Err(unsupported("memory.swap", "must not be below memory.limit"))
                    }
                    _ => {
                        return Err(unsupported(
                            "memory.swap",
                            "on cgroup v2 it needs memory.limit as well",
                        ))
                    }
                };
                self.set("memory", "memory.swap.max", &value, "memory.swap")?;
            }
            if let Some(reservation) = m.reservation() {
                self.set(
                    "memory",
                    "memory.low",
                    &max(reservation),
                    "memory.reservation",
                )?;
            }
            if m.disable_oom_killer() == Some(true) {
                tracing::warn!(
                    "linux.resources.memory.disableOOMKiller: cgroup v2 has no such switch; ignored"
                );
            }
            if m.swappiness().is_some() {
                tracing::warn!("linux.resources.memory.swappiness: not on cgroup v2; ignored");
            }
            return Ok(());
        }
        let limit = m.limit().map(bytes);
        let swap = m.swap().map(bytes);
        match (&limit, &swap) {
            (Some(limit), Some(swap)) => {
                // memsw may never be below the limit: raise whichever must go first.
                let first = self.set("memory", "memory.limit_in_bytes", limit, "memory.limit");
                self.set("memory", "memory.memsw.limit_in_bytes", swap, "memory.swap")?;
                if first.is_err() {
                    self.set("memory", "memory.limit_in_bytes", limit, "memory.limit")?;
                }
            }
            (Some(limit), None) => {
                self.set("memory", "memory.limit_in_bytes", limit, "memory.limit")?
            }
            (None, Some(swap)) => {
                self.set("memory", "memory.memsw.limit_in_bytes", swap, "memory.swap")?
            }
            (None, None) => {}
        }
        if let Some(reservation) = m.reservation() {
            let value = bytes(reservation);
            self.set(
                "memory",
                "memory.soft_limit_in_bytes",
                &value,
                "memory.reservation",
            )?;
        }
        if let Some(swappiness) = m.swappiness() {
            if swappiness > 100 {
                return Err(unsupported("memory.swappiness", "must be 0 to 100"));
            }
            let value = swappiness.to_string();
            self.set("memory", "memory.swappiness", &value, "memory.swappiness")?;
        }
        if m.disable_oom_killer() == Some(true) {
            self.set(
                "memory",
                "memory.oom_control",
                "1",
                "memory.disableOOMKiller",
            )?;
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            tracing::warn!("linux.resources.memory.kernel: deprecated by the kernel; ignored");
        }
        Ok(())
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<()> {
        if self.is_v2() {
            if let Some(shares) = c.shares().filter(|s| *s != 0) {
                let weight = shares_to_weight(shares).to_string();
                self.set("cpu", "cpu.weight", &weight, "cpu.shares")?;
            }
            if c.quota().is_some() || c.period().is_some() {
                let quota = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".to_owned(),
                    None => {
                        // Only the period changes: keep the quota there is.
                        let file = self.file("cpu", "cpu.max");
                        let now = file.map(|f| crate::cgroup::read(&f)).transpose()?;
                        now.as_deref()
                            .and_then(|t| t.split_whitespace().next())
                            .unwrap_or("max")
                            .to_owned()
                    }
                };
                let value = match c.period() {
                    Some(period) => format!("{quota} {period}"),
                    None => quota,
                };
                self.set("cpu", "cpu.max", &value, "cpu.quota")?;
            }
            if let Some(burst) = c.burst() {
                self.set("cpu", "cpu.max.burst", &burst.to_string(), "cpu.burst")?;
            }
            if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some() {
                return Err(unsupported("cpu.realtimeRuntime", "not on cgroup v2"));
            }
        } else {
            if let Some(shares) = c.shares().filter(|s| *s != 0) {
                self.set("cpu", "cpu.shares", &shares.to_string(), "cpu.shares")?;
            }
            if let Some(period) = c.period() {
                self.set(
                    "cpu",
                    "cpu.cfs_period_us",
                    &period.to_string(),
                    "cpu.period",
                )?;
            }
            if let Some(quota) = c.quota() {
                let value = if quota > 0 {
                    quota.to_string()
                } else {
                    "-1".to_owned()
                };
                self.set("cpu", "cpu.cfs_quota_us", &value, "cpu.quota")?;
            }
            if let Some(burst) = c.burst() {
                self.set("cpu", "cpu.cfs_burst_us", &burst.to_string(), "cpu.burst")?;
            }
            if let Some(period) = c.realtime_period() {
                let value = period.to_string();
                self.set("cpu", "cpu.rt_period_us", &value, "cpu.realtimePeriod")?;
            }
            if let Some(runtime) = c.realtime_runtime() {
                let value = runtime.to_string();
                self.set("cpu", "cpu.rt_runtime_us", &value, "cpu.realtimeRuntime")?;
            }
        }
        if let Some(idle) = c.idle() {
            self.set("cpu", "cpu.idle", &idle.to_string(), "cpu.idle")?;
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpuset", "cpuset.cpus", cpus, "cpu.cpus")?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpuset", "cpuset.mems", mems, "cpu.mems")?;
        }
        Ok(())
    }

    fn apply_block_io(&self, b: &LinuxBlockIo) -> Result<()> {
        let v2 = self.is_v2();
        // Where the kernel schedules with BFQ, its weight file is the one that counts.
        let bfq = match v2 {
            true => self.file("io", "io.bfq.weight"),
            false => self.file("blkio", "blkio.bfq.weight"),
        }
        .filter(|f| f.exists())
        .and_then(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()));
        let (weight_file, convert): (String, fn(u16) -> u64) = match (&bfq, v2) {
            (Some(bfq), _) => (bfq.clone(), u64::from),
            (None, true) => ("io.weight".to_owned(), blkio_to_io_weight),
            (None, false) => ("blkio.weight".to_owned(), u64::from),
        };
        let controller = if v2 { "io" } else { "blkio" };
        if let Some(weight) = b.weight().filter(|w| *w != 0) {
            let value = convert(weight).to_string();
            self.set(controller, &weight_file, &value, "blockIO.weight")?;
        }
        if let Some(weight) = b.leaf_weight().filter(|w| *w != 0) {
            if v2 {
                return Err(unsupported("blockIO.leafWeight", "not on cgroup v2"));
            }
            let value = weight.to_string();
            self.set("blkio", "blkio.leaf_weight", &value, "blockIO.leafWeight")?;
        }
        for device in b.weight_device().iter().flatten() {
            if let Some(weight) = device.weight() {
                let value = format!("{}:{} {}", device.major(), device.minor(), convert(weight));
                let file = if v2 {
                    weight_file.as_str()
                } else {
                    "blkio.weight_device"
                };
                self.set(controller, file, &value, "blockIO.weightDevice")?;
            }
        }
        let throttles: [(&Option<Vec<LinuxThrottleDevice>>, &str, &str, &'static str); 4] = [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "rbps",
                "blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "wbps",
                "blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "riops",
                "blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "wiops",
                "blockIO.throttleWriteIOPSDevice",
            ),
        ];
        for (devices, v1_file, v2_key, field) in throttles {
            for d in devices.iter().flatten() {
                if v2 {
                    let rate = match d.rate() {
                        0 => "max".to_owned(),
                        r => r.to_string(),
                    };
                    let value = format!("{}:{} {v2_key}={rate}", d.major(), d.minor());
                    self.set("io", "io.max", &value, field)?;
                } else {
                    let value = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                    self.set("blkio", v1_file, &value, field)?;
                }
            }
        }
        Ok(())
    }

    /// v1: the rules, then the standard devices, into `devices.allow` and `devices.deny`,
    /// which the kernel applies in order as [`DeviceFilter`](crate::DeviceFilter) models it.
    /// v2 has no devices controller (nor has a hybrid host's cgroup2 mount, which peapod
    /// writes no limit to): there [`Cgroup::filter_devices`] attaches a program instead.
    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        if rules.is_empty() || self.is_v2() {
            return Ok(());
        }
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::from_oci(i, r))
            .collect::<Result<Vec<Rule>>>()?;
        // Each file opened once and every line written on its own (the kernel takes one
        // rule per write): not an open and close per line, a dozen for the default spec.
        let mut allow = DevicesFile::new(self, "devices.allow")?;
        let mut deny = DevicesFile::new(self, "devices.deny")?;
        for rule in rules.iter().chain(STANDARD_DEVICES) {
            let file = if rule.allow() { &mut allow } else { &mut deny };
            file.write(&rule.v1_line())?;
        }
        Ok(())
    }

    /// `network`: the v1 `net_cls` class id and `net_prio` priorities. Neither controller
    /// exists on v2, and where one is not mounted the limit is refused naming it, as runc
    /// does, never silently left out.
    fn apply_network(&self, network: &oci_spec::runtime::LinuxNetwork) -> Result<()> {
        let priorities = network.priorities().as_deref().unwrap_or_default();
        if network.class_id().is_none() && priorities.is_empty() {
            return Ok(());
        }
        if self.is_v2() {
            return Err(unsupported(
                "network",
                "net_cls and net_prio are cgroup v1 controllers; cgroup v2 has neither",
            ));
        }
        if let Some(class_id) = network.class_id() {
            self.set(
                "net_cls",
                "net_cls.classid",
                &class_id.to_string(),
                "network.classID",
            )?;
        }
        for priority in priorities {
            let line = format!("{} {}", priority.name(), priority.priority());
            self.set(
                "net_prio",
                "net_prio.ifpriomap",
                &line,
                "network.priorities",
            )?;
        }
        Ok(())
    }

    /// Writes `value` to `name` of `controller`, or fails naming `field` when the host has
    /// no hierarchy with that controller.
    fn set(&self, controller: &str, name: &str, value: &str, field: &'static str) -> Result<()> {
        let file = self.file(controller, name).ok_or_else(|| {
            unsupported(field, format!("the {controller} controller is not mounted"))
        })?;
        write(&file, value)
    }
}

/// A v1 `devices.allow` or `devices.deny` file, opened at its first line.
struct DevicesFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl DevicesFile {
    fn new(cgroup: &Cgroup, name: &str) -> Result<DevicesFile> {
        let path = cgroup
            .file("devices", name)
            .ok_or_else(|| unsupported("devices", "the devices controller is not mounted"))?;
        Ok(DevicesFile { path, file: None })
    }

    /// Writes one rule, in one `write`.
    fn write(&mut self, line: &str) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let fail = |source| Error::Write {
            path: self.path.clone(),
            value: line.to_owned(),
            source,
        };
        let file = match &mut self.file {
            Some(file) => file,
            empty => empty.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&self.path)
                    .map_err(fail)?,
            ),
        };
        file.write_all(line.as_bytes()).map_err(fail)
    }
}

fn unsupported(field: &'static str, problem: impl Into<String>) -> Error {
    Error::Unsupported {
        field,
        problem: problem.into(),
    }
}

/// runc's conversion of cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// runc's conversion of a v1 blkio weight (10..1000) to a v2 `io.weight` (1..10000).
fn blkio_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use oci_spec::runtime::LinuxResources;

    use super::*;
    use crate::cgroup::Dir;

    /// A fake cgroup directory holding empty files of these names, as cgroupfs has them.
    fn fake(v2: bool, files: &[&str]) -> (tempfile::TempDir, Cgroup, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("c");
        std::fs::create_dir(&path).expect("mkdir");
        for f in files {
            std::fs::write(path.join(f), "").expect("file");
        }
        let controllers = ["memory", "cpu", "cpuset", "pids", "io", "blkio", "devices"];
        let dir = Dir {
            mount: tmp.path().to_owned(),
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
            path: path.clone(),
            kind: crate::cgroup::Kind::Controllers,
        };
        (tmp, Cgroup::fake(v2, vec![dir]), path)
    }

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("resources json")
    }

    fn content(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).expect("read")
    }

    #[test]
    fn v2_writes_runc_conversions() {
        let files = [
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "cpu.weight",
            "cpu.max",
            "cpuset.cpus",
            "pids.max",
            "io.weight",
        ];
        let (_tmp, cgroup, dir) = fake(true, &files);
        cgroup
            .apply(&resources(
                r#"{"memory": {"limit": 67108864, "swap": 100663296, "reservation": 1048576},
                    "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "cpus": "0"},
                    "pids": {"limit": 16}, "blockIO": {"weight": 500}}"#,
            ))
            .expect("apply");
        assert_eq!(content(&dir, "memory.max"), "67108864");
        assert_eq!(content(&dir, "memory.swap.max"), "33554432");
        assert_eq!(content(&dir, "memory.low"), "1048576");
        assert_eq!(content(&dir, "cpu.weight"), "39");
        assert_eq!(content(&dir, "cpu.max"), "20000 100000");
        assert_eq!(content(&dir, "cpuset.cpus"), "0");
        assert_eq!(content(&dir, "pids.max"), "16");
        assert_eq!(content(&dir, "io.weight"), "4950");
    }

    #[test]
    fn v2_unlimited_values_are_max() {
        let (_tmp, cgroup, dir) = fake(true, &["memory.max", "cpu.max", "pids.max"]);
        cgroup
            .apply(&resources(
                r#"{"memory": {"limit": -1}, "cpu": {"quota": -1, "period": 50000},
                    "pids": {"limit": 0}}"#,
            ))
            .expect("apply");
        assert_eq!(content(&dir, "memory.max"), "max");
        assert_eq!(content(&dir, "cpu.max"), "max 50000");
        assert_eq!(content(&dir, "pids.max"), "max");
    }

    #[test]
    fn v2_device_rules_write_no_file() {
        // They are the device program's (`filter_devices`), not a file's: no warning and no
        // refusal any more, whatever they allow.
        let (_tmp, cgroup, dir) = fake(true, &[]);
        cgroup
            .apply(&resources(
                r#"{"devices": [{"allow": false, "access": "rwm"},
                                {"allow": true, "type": "c", "major": 1, "minor": 3}]}"#,
            ))
            .expect("apply");
        let files = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(files, 0);
    }

    #[test]
    fn v2_swap_needs_a_limit() {
        let (_tmp, cgroup, _dir) = fake(true, &["memory.swap.max"]);
        let err = cgroup
            .apply(&resources(r#"{"memory": {"swap": 1000}}"#))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("linux.resources.memory.swap"),
            "{err}"
        );
    }

    #[test]
    fn v1_writes_files_and_device_rules() {
        let files = [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "pids.max",
            "devices.deny",
            "devices.allow",
        ];
        let (_tmp, cgroup, dir) = fake(false, &files);
        cgroup
            .apply(&resources(
                r#"{"memory": {"limit": 1000, "swap": 2000},
                    "cpu": {"shares": 512, "quota": -1, "period": 100000},
                    "pids": {"limit": 5},
                    "devices": [{"allow": false, "access": "rwm"}]}"#,
            ))
            .expect("apply");
        assert_eq!(content(&dir, "memory.limit_in_bytes"), "1000");
        assert_eq!(content(&dir, "memory.memsw.limit_in_bytes"), "2000");
        assert_eq!(content(&dir, "cpu.shares"), "512");
        assert_eq!(content(&dir, "cpu.cfs_quota_us"), "-1");
        assert_eq!(content(&dir, "pids.max"), "5");
        // Each file is opened once and every rule written on its own, in order (the kernel
        // takes a rule per write; a plain file shows them one after the other).
        assert_eq!(content(&dir, "devices.deny"), "a *:* rwm");
        let standard: String = STANDARD_DEVICES
            .iter()
            .filter(|r| r.allow())
            .map(Rule::v1_line)
            .collect();
        assert!(standard.ends_with("c 10:200 rwm"), "{standard}");
        assert_eq!(content(&dir, "devices.allow"), standard);
    }

    #[test]
    fn missing_controller_names_the_field() {
        let (_tmp, cgroup, _dir) = fake(false, &[]);
        let err = cgroup
            .apply(&resources(
                r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#,
            ))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.hugepageLimits: the hugetlb controller is not mounted"
        );
    }

    #[test]
    fn a_failed_write_names_file_and_value() {
        let (_tmp, cgroup, dir) = fake(false, &[]);
        let err = cgroup
            .apply(&resources(r#"{"pids": {"limit": 7}}"#))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"7\""), "{text}");
        assert!(
            text.contains(&dir.join("pids.max").display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn shares_convert_as_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
