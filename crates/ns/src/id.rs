//! Namespace identities: the device and inode of `/proc/PID/ns/KIND`.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::unistd::Pid;

use crate::{Error, Namespace, Result};

/// The identity of one namespace: two processes are in the same namespace of a kind exactly
/// when their `/proc/PID/ns/KIND` files have the same device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamespaceId {
    /// The nsfs device.
    pub dev: u64,
    /// The inode, as `ls -l /proc/PID/ns` shows it (`net:[4026531840]`).
    pub inode: u64,
}

impl NamespaceId {
    /// The `kind` namespace of process `pid`, or of the calling process when `pid` is `None`.
    pub fn of(pid: Option<Pid>, kind: Namespace) -> Result<NamespaceId> {
        let path = match pid {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_name())),
            None => PathBuf::from(format!("/proc/self/ns/{}", kind.proc_name())),
        };
        let meta = std::fs::metadata(&path).map_err(|source| Error::Identify { path, source })?;
        Ok(NamespaceId {
            dev: meta.dev(),
            inode: meta.ino(),
        })
    }
}

impl fmt::Display for NamespaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_equals_self_by_pid() {
        let me = Pid::this();
        for ns in [
            Namespace::Mount,
            Namespace::Pid,
            Namespace::Net,
            Namespace::Uts,
        ] {
            assert_eq!(
                NamespaceId::of(None, ns).expect("self"),
                NamespaceId::of(Some(me), ns).expect("by pid")
            );
        }
    }

    #[test]
    fn missing_process_is_an_error_naming_the_path() {
        let err = NamespaceId::of(Some(Pid::from_raw(i32::MAX)), Namespace::Net).unwrap_err();
        assert!(err.to_string().contains("/ns/net"), "{err}");
    }
}
