//! Guards that kill, on drop, what a test started: also when the test fails midway.

use std::process::Child;

use super::TestRootfs;

/// A child process the test kills: SIGKILLed and reaped on drop, whatever happened.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a process the test spawned (by its PID) when dropped, while the test keeps its
/// `Child` to wait for.
pub struct KillPid(pub i32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl TestRootfs {
    /// SIGKILLs process `pid` if it still runs in this test's directory (its root is there):
    /// a pid the kernel has given to another process since is left alone.
    pub fn kill_if_inside(&self, pid: i32) {
        let root = std::fs::read_link(format!("/proc/{pid}/root"));
        if root.is_ok_and(|r| r.starts_with(self.scratch())) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
