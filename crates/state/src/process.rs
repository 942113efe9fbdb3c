//! Telling a process apart from a later one that reuses its PID.

use serde::{Deserialize, Serialize};

/// A PID and the process's start time (field 22 of `/proc/PID/stat`, in clock ticks since
/// boot). A PID alone may name a new process once the old one is gone; the pair does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The PID in the runtime's PID namespace.
    pub pid: i32,
    /// The start time.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The identity of the live process `pid`, or `None` when there is none.
    pub fn of(pid: i32) -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether this very process still exists and has not exited (a zombie has).
    pub fn is_alive(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some((state, start)) = parse_stat(&stat) else {
            return false;
        };
        start == self.start_time && state != 'Z' && state != 'X'
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

/// The state letter and start time from a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, starttime field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(22 - 3)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessIdentity::of(std::process::id() as i32).expect("self");
        assert!(me.is_alive());
        let impostor = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn names_with_parentheses_parse() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(parse_stat(line), Some(('S', 12345)));
    }
}
