//! `peapod completion SHELL` and `peapod man DIR`: the shell completions and man pages that
//! clap derives from the same definitions the parser uses, so they never drift.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::args::Cli;
use peapod_runtime::Error;

pub(crate) fn completion(shell: clap_complete::Shell) -> Result<i32, Error> {
    // Made whole first: clap_complete panics on a write error, and a closed pipe is one.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "peapod", &mut script);
    crate::output::out!("{}", String::from_utf8_lossy(&script));
    Ok(0)
}

/// Writes `peapod.1` and one page per subcommand (`peapod-pod-create.1`, ...).
pub(crate) fn man(dir: &Path) -> Result<i32, Error> {
    std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
        .with_context(|| format!("cannot write man pages to {}", dir.display()))
        .map_err(Error::runtime)?;
    Ok(0)
}
