//! `relocache clear`: drops entries by target, key, project or all, after
//! asking on a terminal for `--all`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use clap::Args;

use relocache::gc::{clear, resolve_key, ClearReport, KeyError, Selection};
use relocache::units::format_size;

use super::gc::entry_line;
use super::open::{existing_depot, no_depot, optional_manifest};
use super::progress::Bars;
use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache clear lib             drop every entry of target `lib` of this project
  relocache clear lib --key 3f2a1b9c   drop one entry of `lib` (a unique key prefix is enough)
  relocache clear --key 3f2a1b9c  drop one entry, whatever project stored it
  relocache clear --project       drop every entry of this project
  relocache clear --all --yes     empty the depot without asking

The project records of what is cleared go too, and then the blobs nothing else
references. `--all` asks first when stdin is a terminal.")]
pub struct ClearArgs {
    /// Targets of this project whose entries to drop
    pub targets: Vec<String>,
    /// Drop only the entry with this key (or unique prefix of at least 6 hex digits)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Drop every entry of this project
    #[arg(long, conflicts_with_all = ["targets", "key", "all"])]
    pub project: bool,
    /// Drop every entry of the depot
    #[arg(long, conflicts_with_all = ["targets", "key"])]
    pub all: bool,
    /// Do not ask before `--all`
    #[arg(long, short)]
    pub yes: bool,
}

pub fn run(env: &Env, args: &ClearArgs) -> Result<i32> {
    if args.targets.is_empty() && args.key.is_none() && !args.project && !args.all {
        return Err(UsageError(
            "nothing to clear\n  help: name targets, or pass --key KEY, --project or --all".into(),
        )
        .into());
    }
    if args.key.is_some() && args.targets.len() > 1 {
        return Err(UsageError("--key takes at most one target".into()).into());
    }
    let needs_project = args.project || !args.targets.is_empty();
    let manifest = if needs_project {
        Some(env.manifest()?)
    } else {
        optional_manifest(env)?
    };
    if let Some(m) = &manifest {
        if let Err(t) = m.select(&args.targets) {
            return Err(UsageError(format!(
                "unknown target `{t}`\n  help: {}; entries of a target that no longer exists go with `relocache clear --project`",
                m.unknown_name_help(&t)
            ))
            .into());
        }
    }
    let Some(depot) = existing_depot(env, manifest.as_ref())? else {
        no_depot(env, manifest.as_ref())?;
        return Ok(0);
    };
    let selection = if let Some(prefix) = &args.key {
        let key = resolve_key(&depot, prefix).map_err(|e| match e {
            KeyError::NotFound(_) | KeyError::Depot(_) => anyhow::Error::from(e),
            other => UsageError(other.to_string()).into(),
        })?;
        if let (Some(t), Some(m)) = (args.targets.first(), &manifest) {
            let entry = depot.read_entry(&key)?;
            if let Some(e) = entry.filter(|e| e.target != *t || e.project != m.name) {
                return Err(UsageError(format!(
                    "entry {} belongs to `{}/{}`, not `{}/{t}`\n  help: drop the target name to clear it anyway",
                    key.short(),
                    e.project,
                    e.target,
                    m.name
                ))
                .into());
            }
        }
        Selection::Key(key)
    } else if args.all {
        if !args.yes && std::io::stdin().is_terminal() && !confirm(&depot)? {
            eprintln!("nothing removed");
            return Ok(1);
        }
        Selection::All
    } else {
        let m = manifest.as_ref().expect("loaded above");
        if args.project {
            Selection::Project(m.name.clone())
        } else {
            // The names as typed (a template's name takes its gone
            // instances' entries too) and what they select.
            let mut targets = args.targets.clone();
            targets.extend(m.select(&args.targets).unwrap_or_default());
            targets.sort_unstable();
            targets.dedup();
            Selection::Targets {
                project: m.name.clone(),
                targets,
            }
        }
    };
    let bars = Bars::new(!env.cli.quiet && !env.cli.json);
    let report = clear(&depot, &selection, &bars);
    bars.finish();
    let report = report?;
    if env.cli.json {
        super::print_json(&report)?;
    } else {
        print_report(&report, env.cli.quiet);
    }
    Ok(0)
}

fn confirm(depot: &relocache::depot::Depot) -> Result<bool> {
    let n = depot.list_entries()?.len();
    eprint!(
        "remove all {n} entries of the depot `{}`? [y/N] ",
        depot.root().display()
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn print_report(r: &ClearReport, quiet: bool) {
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if !quiet {
        for e in &r.removed {
            eprintln!("{}", entry_line(e));
        }
    }
    let mut line = format!(
        "removed {} entr{}, {} record{} and {} blob{}",
        r.removed.len(),
        if r.removed.len() == 1 { "y" } else { "ies" },
        r.records_removed,
        if r.records_removed == 1 { "" } else { "s" },
        r.blobs_removed,
        if r.blobs_removed == 1 { "" } else { "s" },
    );
    if let Some(o) = &r.orphans {
        line.push_str(&format!(
            ", swept {} orphan blob{} and {} staging file{}",
            o.blobs,
            if o.blobs == 1 { "" } else { "s" },
            o.tmp_files,
            if o.tmp_files == 1 { "" } else { "s" }
        ));
    }
    line.push_str(&format!(" (freed {})", format_size(r.bytes_freed)));
    eprintln!("{line}");
}
