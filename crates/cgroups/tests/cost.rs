//! What a container's cgroup costs `peapod run`: create, the default device rules (v1 files,
//! then the cgroup2 device program compiled, loaded and attached), a new process joining it as
//! the container process does (cloned into its cgroup2 directory on a hybrid host), and
//! removal. Not a test but a
//! measurement: `cargo test --release -p peapod-cgroups --test cost -- --ignored --nocapture`.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use peapod_cgroups::{Cgroup, DeviceFilter, Layout};

#[test]
#[ignore = "a measurement; run it by name with --ignored"]
fn cost_of_a_cgroup_per_container() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: making cgroups needs root");
        return;
    }
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_str(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#)
            .expect("resources");
    let mut times: Vec<Duration> = Vec::new();
    let mut phases: [Vec<Duration>; 5] = Default::default();
    let mut dirs = 0;
    for i in 0..33 {
        let started = Instant::now();
        let layout = Layout::detect().expect("layout");
        let path = PathBuf::from(format!("peapod/cost-{}-{i}", std::process::id()));
        let cgroup = Cgroup::create(&layout, &path).expect("create");
        let created = started.elapsed();
        cgroup.apply(&resources).expect("apply");
        let written = started.elapsed();
        let rules = resources.devices().as_deref().unwrap_or_default();
        let filter = DeviceFilter::new(rules).expect("rules");
        cgroup.filter_devices(&filter).expect("device program");
        let applied = started.elapsed();
        // The container process starts in the cgroup2 directory of a hybrid host and moves
        // itself into the rest, as peapod's does.
        let target = cgroup
            .clone_target()
            .map(|dir| std::fs::File::open(dir).expect("open the cgroup2 directory"));
        let none = peapod_ns::NamespaceSet::empty();
        let (forked, in_unified) = match &target {
            // SAFETY: the test harness runs this test alone (--test cost), and the child
            // only writes files and _exits.
            Some(dir) => unsafe { peapod_ns::clone_into_cgroup(none, dir.as_fd()) },
            // SAFETY: as above.
            None => unsafe { peapod_ns::clone_into(none) }.map(|f| (f, false)),
        }
        .expect("clone");
        match forked {
            peapod_ns::Forked::Child => {
                let code = i32::from(cgroup.add_self(in_unified).is_err());
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            peapod_ns::Forked::Parent(child) => {
                let status = nix::sys::wait::waitpid(child.pid, None).expect("wait");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child.pid, 0));
            }
        }
        dirs = cgroup.paths().len();
        let joined = started.elapsed();
        cgroup.remove().expect("remove");
        if i >= 3 {
            let all = started.elapsed();
            times.push(all);
            phases[0].push(created);
            phases[1].push(written - created);
            phases[2].push(applied - written);
            phases[3].push(joined - applied);
            phases[4].push(all - joined);
        }
    }
    times.sort();
    let mut forks: Vec<Duration> = (0..30)
        .map(|_| {
            let started = Instant::now();
            // SAFETY: as above; the child only _exits.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                // SAFETY: _exit ends the child at once.
                nix::unistd::ForkResult::Child => unsafe { libc::_exit(0) },
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None).expect("wait");
                }
            }
            started.elapsed()
        })
        .collect();
    forks.sort();
    let names = [
        "create",
        "v1 device files",
        "device program",
        "fork + join",
        "remove",
    ];
    for (name, mut phase) in names.into_iter().zip(phases) {
        phase.sort();
        eprintln!("  {name}: median {:?}", phase[phase.len() / 2]);
    }
    eprintln!(
        "of which a bare fork and wait: median {:?}",
        forks[forks.len() / 2]
    );
    eprintln!(
        "cgroup per container ({dirs} hierarchies): median {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
