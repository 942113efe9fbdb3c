//! What a container's cgroup costs `peapod run`: create, the default device rules, a new
//! process joining it as the container process does, and removal. Not a test but a
//! measurement: `cargo test --release -p peapod-cgroups --test cost -- --ignored --nocapture`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use peapod_cgroups::{Cgroup, Layout};

#[test]
#[ignore = "a measurement; run it by name with --ignored"]
fn cost_of_a_cgroup_per_container() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: making cgroups needs root");
        return;
    }
    let resources = serde_json::from_str(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#)
        .expect("resources");
    let mut times: Vec<Duration> = Vec::new();
    let mut phases: [Vec<Duration>; 4] = Default::default();
    for i in 0..33 {
        let started = Instant::now();
        let layout = Layout::detect().expect("layout");
        let path = PathBuf::from(format!("peapod/cost-{}-{i}", std::process::id()));
        let cgroup = Cgroup::create(&layout, &path).expect("create");
        let created = started.elapsed();
        cgroup.apply(&resources).expect("apply");
        let applied = started.elapsed();
        // The container process moves itself in, as after its clone.
        // SAFETY: the test harness runs this test alone (--test cost), and the child only
        // writes files and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = i32::from(cgroup.add_self(false).is_err());
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        let joined = started.elapsed();
        cgroup.remove().expect("remove");
        if i >= 3 {
            let all = started.elapsed();
            times.push(all);
            phases[0].push(created);
            phases[1].push(applied - created);
            phases[2].push(joined - applied);
            phases[3].push(all - joined);
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
    for (name, mut phase) in ["create", "apply devices", "fork + join", "remove"]
        .into_iter()
        .zip(phases)
    {
        phase.sort();
        eprintln!("  {name}: median {:?}", phase[phase.len() / 2]);
    }
    eprintln!(
        "of which a bare fork and wait: median {:?}",
        forks[forks.len() / 2]
    );
    eprintln!(
        "cgroup per container ({} hierarchies): median {:?}, min {:?}, max {:?}",
        Layout::detect().expect("layout").hierarchies().len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
