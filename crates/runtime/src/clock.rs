//! When a process started, in wall-clock time: `/proc/PID/stat` gives its start in clock
//! ticks since boot; the boot's wall-clock time is the real-time clock less the boot-time
//! clock (which counts from boot, suspended time included, as the start time does).

use std::time::Duration;

/// The wall-clock time (seconds and nanoseconds since the epoch) of a process that started
/// `start_ticks` clock ticks after boot (a `ProcessIdentity`'s `start_time`).
pub fn started_at(start_ticks: u64) -> Option<(u64, u32)> {
    let since_boot = clock(libc::CLOCK_BOOTTIME)?;
    let boot = clock(libc::CLOCK_REALTIME)?.checked_sub(since_boot)?;
    // The two clocks are read a moment apart: rounded to the start time's own resolution,
    // the boot time (and so every answer) is the same from one call to the next.
    let tick = 1_000_000_000 / clock_ticks_per_second();
    let boot = (boot.as_nanos() as u64 + tick / 2) / tick;
    let started = Duration::from_nanos((boot + start_ticks) * tick);
    Some((started.as_secs(), started.subsec_nanos()))
}

/// The time of `clock`, as a duration from its zero.
fn clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the buffer it is given.
    let done = unsafe { libc::clock_gettime(clock, &mut now) };
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    (done == 0).then(|| Duration::new(secs, nanos))
}

fn clock_ticks_per_second() -> u64 {
    // A clock tick is a whole number of nanoseconds for every rate Linux has used.
    // SAFETY: sysconf reads a constant of the system; it takes and returns plain integers.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        ticks if ticks > 0 => ticks as u64,
        // USER_HZ, which the kernel's ABI fixes at 100 where sysconf cannot say.
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_started_before_now_and_after_boot() {
        let me = peapod_state::ProcessIdentity::of(std::process::id() as i32).expect("self");
        let (secs, _) = started_at(me.start_time).expect("a time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("now")
            .as_secs();
        // Within the test binary's life (allowing the 10 ms rounding of both sources).
        assert!(secs <= now + 1, "{secs} > {now}");
        assert!(secs + 3600 > now, "{secs} long before {now}");
    }
}
