//! The default network's two paths side by side: a pod on the default network `peapod`
//! (the bench's own: bridge `ppbench1`, its files in `target/bench-podnet-net`) with two
//! detached containers, made and removed, through the in-process fast path and through
//! the CNI plugins (`PEAPOD_NETWORK_BACKEND=cni`), taking turns, medians of [`RUNS`]; then
//! podman making the same pod on a network of its own (issue 28's goal: 0.1x podman).

use std::time::{Duration, Instant};

use super::median;
use super::pod::{ms, podman, reap, Bench, BenchNet};
use crate::{build_peapod, rootfs, target_dir, Result};

const RUNS: usize = 5;

pub(crate) fn run() -> Result {
    let peapod = build_peapod()?;
    let rootfs_dir = rootfs::default_dir();
    rootfs::ensure(&rootfs_dir)?;
    let state = target_dir().join("bench-podnet");
    let _ = std::fs::remove_dir_all(&state);
    let net = BenchNet::with("peapod", "ppbench1", "bench-podnet-net")?;
    let bench = |backend| Bench {
        peapod: &peapod,
        state: &state,
        rootfs: &rootfs_dir,
        net: &net,
        backend: Some(backend),
    };
    println!(
        "== the default network: pod create + 2 x run -d, pod rm -f; fast path vs CNI, median of {RUNS}\n"
    );
    let backends = ["fast", "cni"];
    let mut times: Vec<(Vec<Duration>, Vec<Duration>)> = vec![Default::default(); 2];
    for i in 0..=RUNS {
        for n in super::turns(i, backends.len()) {
            let bench = bench(backends[n]);
            let start = Instant::now();
            bench.pod_with_two("p", "peapod")?;
            let up = start.elapsed();
            let start = Instant::now();
            bench.peapod(&["pod", "rm", "-f", "p"])?;
            let down = start.elapsed();
            reap();
            if i > 0 {
                times[n].0.push(up);
                times[n].1.push(down);
            }
        }
    }
    let medians: Vec<(Duration, Duration)> = times
        .into_iter()
        .map(|(ups, downs)| (median(ups), median(downs)))
        .collect();
    for ((up, down), backend) in medians.iter().zip(backends) {
        println!(
            "{:<44} {:>8.1} ms  (create {:.1}, rm {:.1})",
            format!("default network, {backend}"),
            ms(*up + *down),
            ms(*up),
            ms(*down)
        );
    }
    let total = |(up, down): (Duration, Duration)| (up + down).as_secs_f64();
    println!(
        "{:<44} {:>8.2}x",
        "fast path / CNI",
        total(medians[0]) / total(medians[1])
    );
    let (up, down) = medians[0];
    match podman(&rootfs_dir, &net) {
        Ok(Some((podman_up, podman_down))) => {
            for (what, theirs, ours) in [
                ("podman pod create + 2 x run -d --pod", podman_up, up),
                ("podman pod rm -f -t 0", podman_down, down),
            ] {
                println!(
                    "{what:<44} {:>8.1} ms   (fast path: {:.2}x)",
                    ms(theirs),
                    ours.as_secs_f64() / theirs.as_secs_f64()
                );
            }
        }
        Ok(None) => println!("podman: not installed, skipped"),
        Err(e) => println!("podman: {e}"),
    }
    let left = net.leftovers();
    println!(
        "{:<44} {}\n",
        "left behind",
        if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join("; ")
        }
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
