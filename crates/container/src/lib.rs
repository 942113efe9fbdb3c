//! Turns an OCI runtime spec into a running container process and reports how it ended.
//!
//! The flow has three steps, so that the OCI `create`/`start` split fits on top:
//!
//! 1. [`ContainerConfig::from_spec`] checks a [`Spec`](oci_spec::runtime::Spec) and turns it
//!    into what the runtime trusts. Nothing on the host has changed yet; a bad field is an
//!    error naming its JSON path (`process.args: must not be empty`).
//! 2. [`create`] starts the container process with one `clone3` in its new namespaces. The
//!    process maps its ids (via the parent), sets the host name, brings up `lo`, prepares and
//!    enters the rootfs, and then waits, fully set up, at a barrier just before `execve`.
//! 3. [`Created::start`] releases the barrier; the process execs the entrypoint and stops
//!    talking to us. Any failure on the way reaches the caller as a [`ChildFailure`], with the
//!    exit status a shell would give (127 for a missing command, 126 for one that cannot run).
//!
//! [`SignalForwarder`] then waits for the container while passing on the signals the caller
//! receives.
//!
//! ```no_run
//! use peapod_container::{create, Barrier, ContainerConfig, SignalForwarder};
//!
//! let spec = oci_spec::runtime::Spec::load("bundle/config.json")?;
//! let config = ContainerConfig::from_spec(&spec, std::path::Path::new("bundle"))?;
//! let forwarder = SignalForwarder::install()?;
//! let pid = create(&config, &Barrier::Channel)?.start()?;
//! let exit = forwarder.wait(pid)?;
//! std::process::exit(exit.code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate keeps no state on disk and knows nothing of command lines: the CLI does both.
#![deny(missing_docs)]

mod channel;
mod child;
mod config;
mod console;
mod enter;
mod error;
mod exec;
mod hooks;
mod launch;
mod process;
mod session;
mod signals;
mod spec;

pub use child::ChildFailure;
pub use config::{oci_namespace_type, use_seccomp_cache, ConfigError, ContainerConfig};
pub use console::{set_window_size, WindowSize};
pub use enter::{enter, ExecConfig};
pub use error::{Error, Result};
pub use exec::reserve_preserved_fds;
pub use hooks::{HookError, Hooks};
pub use launch::{create, create_in, create_in_then, start_fifo, Barrier, Created};
pub use process::ALL_CAPABILITIES;
pub use signals::{Exit, SignalForwarder, FORWARDED_SIGNALS};
pub use spec::{default_spec, spec_with_maps, DEFAULT_CAPABILITIES, DEFAULT_PATH};
