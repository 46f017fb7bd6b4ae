//! `vault completions SHELL` and the man pages (`cargo xtask release` ships both): generated
//! from the same clap definitions as the parser, so they cannot drift from it.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::Stdout;
use crate::{Failure, fail};

/// `vault completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    // Without the hidden commands (the agent process, the man pages): some generators list
    // them anyway.
    let root = Cli::command();
    let mut cmd = clap::Command::new("vault")
        .args(root.get_arguments().cloned())
        .subcommands(root.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "vault", &mut buf);
    let mut out = Stdout::lock();
    out.write(&buf)?;
    out.finish()
}

/// Writes `vault.1` and a page per command (`vault-get.1`, `vault-key-encrypt.1`, …) into `dir`.
pub(crate) fn man_pages(dir: &std::path::Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(Exit::Other, format!("cannot create {}: {e}", dir.display())))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| fail(Exit::Other, format!("cannot write the man pages: {e}")))
}
