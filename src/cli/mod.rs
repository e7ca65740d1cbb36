//! Command-line interface: argument parsing, depot and project selection,
//! rendering of the library's summaries as text or `--json`, exit codes
//! (0 success, 1 a check or build failed, 2 usage, manifest or environment).

mod build;
mod clear;
mod completions;
mod gc;
mod hash;
mod init;
mod inspect;
mod log;
mod open;
mod pack;
pub mod progress;
mod remote;
mod replay;
mod stats;
mod verify;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use relocache::depot::{select_paths, DepotError, DepotStack};
use relocache::engine::BuildError;
use relocache::manifest::{Manifest, ManifestError};

const EXAMPLES: &str = "\
Examples:
  relocache build                      build every target, restoring hits from the depot
  relocache -C fixtures/c-demo build   build the project in another directory
  relocache build app -j 4             build `app` and its deps on 4 workers
  RELOCACHE_DEPOT=/ci/cache relocache build --json
  relocache status                     which targets are ready, stale or unstarted
  relocache explain app                why `app` missed: the inputs, env or tools that changed
  relocache completions bash           a completion script (also zsh, fish, elvish, powershell)
  relocache man | man -l -             the man page

Depot selection (first match wins): --depot DIR, RELOCACHE_DEPOT,
RELOCACHE_DEPOT_PATH (a `:`-separated stack: the first is written, all are read),
`[project] depot` in relocache.toml, then $XDG_CACHE_HOME/relocache or ~/.cache/relocache.";

/// A content-addressed, relocatable build-artifact cache.
#[derive(Debug, Parser)]
#[command(name = "relocache", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Run in DIR (the project holding relocache.toml), like `make -C`
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use this depot (relative to the current directory)
    #[arg(long, global = true, value_name = "DIR")]
    pub depot: Option<PathBuf>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only failures, warnings and the summary
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Diagnostics on stderr: `debug`, `trace`, or directives like `relocache::engine=debug`
    #[arg(long, global = true, value_name = "FILTER", env = log::ENV)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build or restore targets and their deps, in dependency order
    Build(build::BuildArgs),
    /// Write a starter relocache.toml, or one generated from compile_commands.json
    Init(init::InitArgs),
    /// Show each target: ready, stale (with changed inputs), unstarted or started
    Status(inspect::StatusArgs),
    /// Explain why a target's key differs from its last build
    Explain(inspect::ExplainArgs),
    /// Print the dependency graph (DOT, Mermaid, JSON, SVG or HTML), coloured by status
    Graph(inspect::GraphArgs),
    /// Print a target's current key
    Key(inspect::TargetArg),
    /// Print where a target's entry is (or would be) in the depot
    Path(inspect::TargetArg),
    /// Check a depot: structure, relocatability (--relocatable), blob integrity (--integrity)
    Verify(verify::VerifyArgs),
    /// Write the depot, or what the next build or some targets need, as a deterministic .tar.zst
    Pack(pack::PackArgs),
    /// Merge a .tar.zst made by `pack` into the depot, verifying every blob
    Unpack(pack::UnpackArgs),
    /// One digest of files, directories or globs, for CI cache keys
    Hash(hash::HashArgs),
    /// Evict least recently used or old entries and sweep orphans
    Gc(gc::GcArgs),
    /// Drop the entries of targets, one key, this project, or all
    Clear(clear::ClearArgs),
    /// Show hits, misses, builds, bytes, time saved and depot size
    Stats(stats::StatsArgs),
    /// The shared remote cache (S3, Redis, WebDAV…): `remote check`
    Remote(remote::RemoteArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff) on stdout: `relocache man | man -l -`
    Man(completions::ManArgs),
}

/// Where the command runs: the original working directory and the project dir.
pub struct Env {
    pub cwd: PathBuf,
    pub cli: Cli,
}

impl Env {
    /// The project directory: `-C DIR` or the current directory.
    pub fn project_dir(&self) -> PathBuf {
        match &self.cli.dir {
            Some(d) => self.cwd.join(d),
            None => self.cwd.clone(),
        }
    }

    /// Loads the manifest: exactly `-C DIR/relocache.toml`, or the nearest one upwards.
    pub fn manifest(&self) -> Result<Manifest, ManifestError> {
        Manifest::discover(&self.project_dir(), self.cli.dir.is_none())
    }

    /// The depot paths for `manifest` (or without one).
    pub fn depot_paths(&self, manifest: Option<&Manifest>) -> Result<Vec<PathBuf>, DepotError> {
        let (paths, _) = select_paths(
            self.cli.depot.as_deref(),
            manifest.and_then(|m| m.depot.as_deref()),
            &self.cwd,
        )?;
        Ok(paths)
    }

    /// Whether the depot comes from `--depot` or the environment, so that no
    /// manifest can change it.
    pub fn depot_named(&self) -> bool {
        use relocache::depot::DepotSource as S;
        matches!(
            select_paths(self.cli.depot.as_deref(), None, &self.cwd),
            Ok((_, S::Flag | S::Env | S::EnvPath))
        )
    }

    /// Opens (creating) the depot stack.
    pub fn depots(&self, manifest: Option<&Manifest>) -> Result<DepotStack, DepotError> {
        DepotStack::open(&self.depot_paths(manifest)?)
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            return 2;
        }
    };
    if let Err(e) = log::init(cli.log.as_deref()) {
        eprintln!("error: {e}");
        return 2;
    }
    let env = Env { cwd, cli };
    let result = match &env.cli.command {
        Cmd::Build(args) => build::run(&env, args),
        Cmd::Init(args) => init::run(&env, args),
        Cmd::Status(args) => inspect::run_status(&env, args),
        Cmd::Explain(args) => inspect::run_explain(&env, args),
        Cmd::Graph(args) => inspect::run_graph(&env, args),
        Cmd::Key(args) => inspect::run_key(&env, args),
        Cmd::Path(args) => inspect::run_path(&env, args),
        Cmd::Verify(args) => verify::run(&env, args),
        Cmd::Pack(args) => pack::pack(&env, args),
        Cmd::Unpack(args) => pack::unpack(&env, args),
        Cmd::Hash(args) => hash::run(&env, args),
        Cmd::Gc(args) => gc::run(&env, args),
        Cmd::Clear(args) => clear::run(&env, args),
        Cmd::Stats(args) => stats::run(&env, args),
        Cmd::Remote(args) => remote::run(&env, args),
        Cmd::Completions(args) => completions::completions(args),
        Cmd::Man(args) => completions::man(args),
    };
    match result {
        Ok(code) => code,
        // `relocache … | head` closing the pipe early is not an error.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            exit_code(&e)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

fn render_error(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!("\n  caused by: {c}"));
        }
    }
    s
}

/// 2 for usage, manifest and environment problems; 1 for everything else.
fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.downcast_ref::<ManifestError>().is_some()
            || cause.downcast_ref::<UsageError>().is_some()
        {
            return 2;
        }
        if let Some(b) = cause.downcast_ref::<BuildError>() {
            return match b {
                BuildError::UnknownTarget { .. } | BuildError::DepotInOutput { .. } => 2,
                BuildError::Depot(d) => depot_code(d),
                BuildError::Inputs(_) => 1,
            };
        }
        if let Some(d) = cause.downcast_ref::<DepotError>() {
            return depot_code(d);
        }
    }
    1
}

fn depot_code(d: &DepotError) -> i32 {
    match d {
        DepotError::NotADepot(_)
        | DepotError::NotADirectory(_)
        | DepotError::SymlinkedDir(_)
        | DepotError::BadConfig { .. }
        | DepotError::ConfigChecksum { .. }
        | DepotError::NewerFormat { .. }
        | DepotError::NoLocation => 2,
        _ => 1,
    }
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Writes `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Says on stderr that `depot` still holds directories of depot format 1,
/// which nothing reads: without it, `status` and `verify` would present an
/// old depot as empty and sound.
pub(crate) fn note_legacy(depot: &relocache::depot::Depot) {
    let dirs = depot.legacy_dirs();
    if dirs.is_empty() {
        return;
    }
    let names: Vec<String> = dirs.iter().map(|d| format!("`{d}`")).collect();
    eprintln!(
        "note: the depot `{}` still holds {} of depot format 1, whose records carry no checksum: this relocache never reads them\n  help: the next `relocache build` rebuilds each target once; then `relocache gc` removes them",
        depot.root().display(),
        names.join(" and ")
    );
}
