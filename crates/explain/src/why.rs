//! The plain sentences of `explain --why`: what each kind of isolation means for a program
//! inside, for a reader who is learning how containers are made.

use crate::report::Owner;

pub(crate) const PID_1: &str = "PID 1 of its own PID namespace: it sees only its own processes, \
     and when it exits the kernel kills every other process in there.";

pub(crate) const HOST_ROOT: &str =
    "no user namespace: uid 0 inside is uid 0 on the host, held back only by capabilities, \
     seccomp and the other namespaces.";

pub(crate) const ROOT: &str = "pivot_root made this directory its `/`: no host path is reachable, \
     and its mounts live and die with its mount namespace.";

pub(crate) const CGROUP: &str = "its cgroup holds every process it starts: the kernel enforces \
     the limits on all of them together and counts their usage.";

pub(crate) fn mapped_root(inside: u64, outside: u64) -> String {
    format!(
        "its own user namespace: uid {inside} inside (its root, if 0) is only uid {outside} on \
         the host, with no privilege over anything the host owns."
    )
}

pub(crate) fn namespace(kind: &str, owner: &Owner) -> String {
    let what = match kind {
        "mnt" => "mount table: mounts made inside are invisible outside",
        "pid" => "process numbering: it cannot see or signal processes outside",
        "ipc" => {
            "System V IPC and POSIX message queues: shared memory made elsewhere is invisible here"
        }
        "uts" => "host name and domain name",
        "net" => "network stack: interfaces, addresses, routes, ports and firewall rules",
        "cgroup" => "view of the cgroup tree: its own cgroup looks like the root",
        "user" => "user and group ids and the capabilities that go with them",
        "time" => "boot-time and monotonic clocks (offsets of its own)",
        _ => "namespace",
    };
    match owner {
        Owner::Own => format!("its own {what}."),
        Owner::Host => format!("the host's {what}: nothing separates it here."),
        Owner::Shared(with) => format!(
            "the {what} it shares with {}: that is what makes them one pod.",
            with.join(", ")
        ),
    }
}

pub(crate) fn capabilities(bounding: usize) -> String {
    format!(
        "{bounding} of the kernel's 41 capabilities can ever be used inside; the rest are gone \
         for good, whatever it execs."
    )
}

pub(crate) fn seccomp(mode: &str, no_new_privs: bool) -> String {
    let filter = match mode {
        "filter" => "a seccomp filter decides which system calls it may make",
        _ => "no seccomp filter: every system call reaches the kernel",
    };
    let nnp = match no_new_privs {
        true => "no_new_privs: setuid programs cannot raise its privileges",
        false => "without no_new_privs a setuid program inside could gain privileges",
    };
    format!("{filter}; {nnp}.")
}

pub(crate) fn network(interfaces: &[String]) -> String {
    match interfaces {
        [only] if only == "lo" => {
            "only loopback: it can reach nothing outside and nothing can reach it.".to_owned()
        }
        _ => "these interfaces are all the network it has.".to_owned(),
    }
}
