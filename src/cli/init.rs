//! `relocache init`: writes a new relocache.toml, a commented starter or one
//! generated from compile_commands.json, and says what it wrote. Parses
//! arguments and renders the library's [`relocache::init`] summary.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use relocache::init::{self, InitError, InitSummary};

use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache init                       a commented starter: a template, a depfile, a link step
  relocache init --from-compile-commands build/compile_commands.json
  cmake -B build -DCMAKE_EXPORT_COMPILE_COMMANDS=ON && relocache init --from-compile-commands build/compile_commands.json

The manifest is written in the project directory (-C DIR or the current one) and
never replaces an existing relocache.toml. From a compilation database (CMake,
Meson, Bear), each compile command becomes a target run from the project root,
with paths rewritten from the build directory; commands that differ only by their
file become one template. gcc/clang-like compilers get `-MD -MF <output>.d` and a
`depfile`. Entries for files outside the project are left out, listed in a comment.
The link step is a commented stub to edit.")]
pub struct InitArgs {
    /// Generate the targets from this compile_commands.json (relative to the current directory)
    #[arg(long, value_name = "PATH")]
    pub from_compile_commands: Option<PathBuf>,
}

pub fn run(env: &Env, args: &InitArgs) -> Result<i32> {
    let root = env.project_dir();
    let usage = |e: InitError| anyhow::Error::new(UsageError(e.to_string()));
    let (text, mut summary) = match &args.from_compile_commands {
        Some(db) => init::from_compile_commands(&root, &env.cwd.join(db), db).map_err(usage)?,
        None => (
            init::STARTER.to_owned(),
            InitSummary {
                manifest: PathBuf::new(),
                templates: Vec::new(),
                targets: Vec::new(),
                skipped: Vec::new(),
            },
        ),
    };
    summary.manifest = init::write_new(&root, &text).map_err(usage)?;
    if env.cli.json {
        super::print_json(&summary)?;
    } else if !env.cli.quiet {
        render(&summary, args.from_compile_commands.is_some());
    }
    Ok(0)
}

fn render(s: &InitSummary, generated: bool) {
    let path = s.manifest.display();
    if !generated {
        eprintln!("wrote {path}: a starter to edit (a template, a depfile, a link step)");
        return;
    }
    let files: usize = s.templates.iter().map(|t| t.files).sum();
    eprintln!(
        "wrote {path}: {} covering {files} compile commands, {}, and a commented link step",
        plural(s.templates.len(), "template", "templates"),
        plural(s.targets.len(), "single target", "single targets"),
    );
    if !s.skipped.is_empty() {
        eprintln!(
            "note: left out {} (listed at the top of the manifest)",
            plural(s.skipped.len(), "entry", "entries")
        );
        for k in &s.skipped {
            eprintln!("  {}: {}", k.file, k.reason);
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
