//! `relocache completions SHELL` and `relocache man`: shell completion scripts
//! (clap_complete) and a roff man page (clap_mangen), both generated from the
//! same clap definition as `--help`, so they never drift from the real options.
//! Writes only to stdout; never reads a project or a depot.

use std::io::Write;

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

const COMPLETIONS_HELP: &str = "\
Examples:
  relocache completions bash > ~/.local/share/bash-completion/completions/relocache
  relocache completions zsh > ~/.zfunc/_relocache        # with `fpath+=~/.zfunc` in .zshrc
  relocache completions fish > ~/.config/fish/completions/relocache.fish";

const MAN_HELP: &str = "\
Examples:
  relocache man | man -l -                                 read it now
  relocache man > ~/.local/share/man/man1/relocache.1      install it for `man relocache`";

#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_HELP)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
#[command(after_help = MAN_HELP)]
pub struct ManArgs {}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut Cli::command(), "relocache", &mut out);
    out.flush()?;
    Ok(0)
}

/// Prints the man page (roff, section 1) on stdout.
pub fn man(_args: &ManArgs) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    out.flush()?;
    Ok(0)
}
