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
//! Built without its default feature `compile`, the crate links no libseccomp: it loads
//! filters, and reads those a build with the compiler stored in a [`FilterCache`]
//! (`peapod-oci`'s static musl build, which hands a profile not in the cache to `peapod`).
//!
//! It does not support `SCMP_ACT_NOTIFY` (a seccomp agent listening on a socket): a profile
//! that asks for it is refused. It does not read Docker's profile format (`archMap`,
//! `includes`, `excludes`), only the OCI one.
#![deny(missing_docs)]

mod cache;
mod compile;
mod compiler;
mod error;
mod filter;
#[cfg(not(feature = "compile"))]
mod uncompiled;

pub use cache::{FilterCache, MAX_ENTRIES};
#[cfg(feature = "compile")]
pub use compile::supported_architectures;
pub use compile::{ACTIONS, FLAGS, OPERATORS};
#[cfg(not(feature = "compile"))]
pub use uncompiled::supported_architectures;

/// The problem of the error [`Filter::compile`] gives in a build without the compiler (and
/// so [`FilterCache::compile`] for a profile not in the cache): a caller that finds it hands
/// the work to a build with one.
pub const NO_COMPILER: &str =
    "this build compiles no seccomp profile (built without libseccomp), and the profile is \
     not in the compiled-filter cache";

pub use error::Error;
pub use filter::Filter;
