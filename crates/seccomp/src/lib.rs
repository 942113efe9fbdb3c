//! Compiles an OCI seccomp profile (`linux.seccomp` of `config.json`) to a classic BPF
//! program, and loads that program into the calling process.
//!
//! The two steps are apart on purpose. [`Filter::compile`] runs in the runtime before the
//! container process exists: it checks the profile (every syscall name, action, operator and
//! flag; an unknown one is an error naming its place in the profile) and has libseccomp turn
//! it into BPF. [`Filter::load`] runs in the container process just before `execve`: one
//! `seccomp(2)` call, no allocation, no libseccomp, so the process's last steps stay small.
//!
//! ```no_run
//! use peapod_seccomp::Filter;
//!
//! let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(
//!     r#"{"defaultAction": "SCMP_ACT_ALLOW",
//!         "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
//! )?;
//! let filter = Filter::compile(&profile)?;
//! // In the process to be confined, after no_new_privs (or while it holds CAP_SYS_ADMIN):
//! filter.load()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It does not support `SCMP_ACT_NOTIFY` (a seccomp agent listening on a socket): a profile
//! that asks for it is refused. It does not read Docker's profile format (`archMap`,
//! `includes`, `excludes`), only the OCI one.
#![deny(missing_docs)]

mod cache;
mod compile;
mod error;
mod filter;

pub use cache::{FilterCache, MAX_ENTRIES};
pub use compile::{supported_architectures, ACTIONS, FLAGS, OPERATORS};
pub use error::Error;
pub use filter::Filter;
