//! `relocache hash`: one digest over a set of files, for CI cache keys.
//! Parses arguments and renders the library's [`relocache::hash_command`]
//! summary; never opens a depot or reads a manifest.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use relocache::hash_command::hash_paths;

use super::pack::count;
use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache hash 'src/**/*.c' Cargo.lock    one digest of these files, for a CI cache key
  relocache hash . --json                   every non-ignored file below here, with per-file digests
  relocache -C fixtures/c-demo hash src     paths relative to the -C directory

The digest is the blake3 of the sorted (relative path, content digest) list: the
same tree gives the same digest at any path on any machine; mtimes and modes do not
count. Globs work as in relocache.toml (`*` stays in one directory, `**` crosses
them, .gitignore'd files match only when named); a directory means every file below
it. An argument that matches nothing exits 2.")]
pub struct HashArgs {
    /// Files, directories or globs, relative to the current directory (or -C DIR)
    #[arg(required = true, value_name = "PATH|GLOB")]
    pub paths: Vec<String>,
}

pub fn run(env: &Env, args: &HashArgs) -> Result<i32> {
    let base = env.project_dir();
    let tree = hash_paths(&base, &args.paths).map_err(|e| {
        if e.is_usage() {
            anyhow::Error::new(UsageError(e.to_string()))
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if env.cli.json {
        super::print_json(&tree)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", tree.digest)?;
        if !env.cli.quiet {
            eprintln!("hashed {}", count(tree.files.len() as u64, "file", "files"));
        }
    }
    Ok(0)
}
