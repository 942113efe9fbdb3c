//! `peapod-init`: a tiny PID 1 for containers.
//!
//! A container's first process has two jobs that ordinary programs do not
//! do: it must reap zombies (orphans are re-parented to it) and it must pass
//! signals on (the kernel does not apply default signal actions to PID 1, so
//! a `SIGTERM` that the program does not handle is silently dropped). This
//! crate does both, as a library and as the `peapod-init` binary, in the
//! spirit of tini, catatonit and dumb-init (written from their behaviour,
//! not their code).
//!
//! The binary runs one command, forwards every signal it gets to it, reaps
//! every zombie with `waitpid(-1, WNOHANG)` and exits with the command's
//! status (N for `exit N`, 128+S for death by signal S). Outside PID 1 it
//! registers as a child subreaper. `peapod-init -P` is a pause process.
//!
//! Programs that are themselves PID 1 and spawn their own children can use
//! the [`reaper`] functions instead of the binary:
//!
//! ```no_run
//! use peapod_init::reaper::{reap_orphans, OrphanReap};
//!
//! let mut own = std::process::Command::new("true").spawn()?;
//! let own_pid = own.id();
//! // Reap zombies that are not ours; leave `own` to `Child::wait`.
//! let outcome = reap_orphans(|pid| pid == own_pid, |pid, status| {
//!     eprintln!("reaped orphan {pid}: {status:?}");
//! })
//! .map_err(|e| e.to_string())?;
//! if let OrphanReap::BlockedBy { .. } = outcome {
//!     own.wait()?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it deliberately does not do: it is not a service manager (one
//! command, no restarts, no logging, no configuration files), it sets up no
//! namespaces, mounts or cgroups (other peapod crates do), and it does not
//! use signal handlers: signals are blocked and collected synchronously.
//! The library issues raw system calls (x86_64 and aarch64 Linux only) and
//! needs neither `std` nor an allocator, which lets the binary be built as a
//! small freestanding static executable.

#![no_std]
#![deny(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod argv;
pub mod diag;
pub mod error;
pub mod options;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod supervise;
mod sys;

pub use argv::CStrArray;
pub use error::Error;
pub use options::{Invocation, Options, UsageError};
pub use reaper::{reap_orphans, reap_zombies, ChildStatus, OrphanReap};
pub use signals::Signal;
pub use supervise::{pause, run, watch};

/// Ends the process immediately with `code`, without running destructors or
/// flushing anything (there is nothing to flush: diagnostics are written
/// unbuffered).
pub fn exit(code: u8) -> ! {
    sys::exit_group(i32::from(code))
}
