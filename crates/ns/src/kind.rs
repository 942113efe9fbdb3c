//! The kinds of namespace and a set of them.

use std::fmt;
use std::str::FromStr;

/// One kind of Linux namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// The user namespace (ids and capabilities). Always created or joined first.
    User,
    /// The mount namespace.
    Mount,
    /// The PID namespace: the first process started in a new one is PID 1.
    Pid,
    /// The IPC namespace: SysV IPC objects and POSIX message queues.
    Ipc,
    /// The UTS namespace: host name and domain name.
    Uts,
    /// The network namespace.
    Net,
    /// The cgroup namespace: which cgroup a process sees as its root.
    Cgroup,
    /// The time namespace: offsets of the monotonic and boot clocks.
    Time,
}

impl Namespace {
    /// Every kind, the user namespace first: the order in which they must be joined.
    pub const ALL: [Namespace; 8] = [
        Namespace::User,
        Namespace::Mount,
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Net,
        Namespace::Cgroup,
        Namespace::Time,
    ];

    /// The `CLONE_NEW*` flag that creates this kind.
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
            // libc does not export CLONE_NEWTIME on every target; the value is fixed by the
            // kernel ABI (include/uapi/linux/sched.h).
            Namespace::Time => 0x0000_0080,
        }
    }

    /// The file name under `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Mount => "mnt",
            Namespace::Pid => "pid",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Net => "net",
            Namespace::Cgroup => "cgroup",
            Namespace::Time => "time",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

/// A namespace name that is not one of the kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown namespace {0:?} (expected one of: user, mnt, pid, ipc, uts, net, cgroup, time)")]
pub struct UnknownNamespace(pub String);

impl FromStr for Namespace {
    type Err = UnknownNamespace;

    /// Accepts the `/proc/PID/ns` names and the OCI `linux.namespaces[].type` names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "user" => Namespace::User,
            "mnt" | "mount" => Namespace::Mount,
            "pid" => Namespace::Pid,
            "ipc" => Namespace::Ipc,
            "uts" => Namespace::Uts,
            "net" | "network" => Namespace::Net,
            "cgroup" => Namespace::Cgroup,
            "time" => Namespace::Time,
            other => return Err(UnknownNamespace(other.to_owned())),
        })
    }
}

/// A set of namespace kinds.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NamespaceSet(u8);

impl NamespaceSet {
    /// The empty set.
    pub const fn empty() -> Self {
        NamespaceSet(0)
    }

    /// Every kind.
    pub fn all() -> Self {
        Namespace::ALL.into_iter().collect()
    }

    /// Whether `ns` is in the set.
    pub fn contains(self, ns: Namespace) -> bool {
        self.0 & ns.bit() != 0
    }

    /// Adds `ns`.
    pub fn insert(&mut self, ns: Namespace) {
        self.0 |= ns.bit();
    }

    /// Removes `ns`.
    pub fn remove(&mut self, ns: Namespace) {
        self.0 &= !ns.bit();
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, the user namespace first.
    pub fn iter(self) -> impl Iterator<Item = Namespace> {
        Namespace::ALL
            .into_iter()
            .filter(move |ns| self.contains(*ns))
    }

    /// The `CLONE_NEW*` flags of every kind in the set, or-ed together.
    pub fn clone_flags(self) -> libc::c_int {
        self.iter().fold(0, |flags, ns| flags | ns.clone_flag())
    }
}

impl FromIterator<Namespace> for NamespaceSet {
    fn from_iter<I: IntoIterator<Item = Namespace>>(iter: I) -> Self {
        let mut set = NamespaceSet::empty();
        for ns in iter {
            set.insert(ns);
        }
        set
    }
}

impl fmt::Display for NamespaceSet {
    /// Comma-separated proc names, e.g. `user,pid,net`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ns) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(ns.proc_name())?;
        }
        Ok(())
    }
}

impl fmt::Debug for NamespaceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamespaceSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str() {
        for ns in Namespace::ALL {
            assert_eq!(ns.proc_name().parse::<Namespace>(), Ok(ns));
        }
        assert_eq!("network".parse::<Namespace>(), Ok(Namespace::Net));
        assert_eq!("mount".parse::<Namespace>(), Ok(Namespace::Mount));
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = "nett".parse::<Namespace>().unwrap_err();
        assert!(err.to_string().contains("\"nett\""), "{err}");
    }

    #[test]
    fn set_iterates_user_first_and_combines_flags() {
        let set: NamespaceSet = [Namespace::Net, Namespace::User, Namespace::Pid]
            .into_iter()
            .collect();
        assert_eq!(set.to_string(), "user,pid,net");
        assert_eq!(
            set.clone_flags(),
            libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNET
        );
        let mut set = set;
        set.remove(Namespace::User);
        assert!(!set.contains(Namespace::User));
        assert_eq!(NamespaceSet::all().iter().count(), 8);
    }
}
