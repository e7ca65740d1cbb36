//! `relocache verify`: renders a [`VerifyReport`] grouped by entry, or as
//! `--json`; exit 0 when clean, 1 when a problem was found, 2 for usage.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use relocache::depot::{Depot, DepotError};
use relocache::digest::Key;
use relocache::manifest::ManifestError;
use relocache::verify::{verify, VerifyError, VerifyOptions, VerifyReport};

use super::progress::Bars;
use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache verify                              structure: entries parse, blobs exist
  relocache verify --relocatable                exit 0: this depot can be copied anywhere
  relocache verify --relocatable --integrity    also re-hash every blob
  relocache verify --relocatable --target app   only the entry of `app`'s current build
  relocache verify --relocatable --simulate     copy project and depot to a temp dir and
                                                prove every cached target still hits there
  relocache verify --relocatable --json         {\"relocatable\",\"entries_checked\",\"blobs_checked\",
                                                 \"problems\":[{\"kind\",\"entry\",\"path\",\"detail\"}]}

The depot checked is the first of the stack (see `relocache --help`). It is never
modified: a corrupt blob is reported, not quarantined. A manifest is needed only
for --target and --simulate; when one is found, `@project` in stored reasons is
shown as the project's absolute path.

Exit status: 0 when no problem was found, 1 when one was, 2 for usage errors or
when there is no depot.")]
pub struct VerifyArgs {
    /// Also check that the depot can move: no absolute or escaping path, no symlink leaving it, no entry marked non-relocatable
    #[arg(long)]
    pub relocatable: bool,
    /// Re-hash every blob, in parallel, and report those whose content does not match their name
    #[arg(long)]
    pub integrity: bool,
    /// Check only the entries of these targets' current keys (needs the project)
    #[arg(long = "target", value_name = "NAME", num_args = 1..)]
    pub targets: Vec<String>,
    /// Copy project and depot to a temporary directory, recompute keys there, and report cached targets that would not hit
    #[arg(long, requires = "relocatable")]
    pub simulate: bool,
}

pub fn run(env: &Env, args: &VerifyArgs) -> Result<i32> {
    let needs_project = !args.targets.is_empty() || args.simulate;
    let manifest = match env.manifest() {
        Ok(m) => Some(m),
        Err(e @ ManifestError::NotFound { .. }) if needs_project => {
            return Err(UsageError(format!("--target and --simulate need the project: {e}")).into())
        }
        Err(ManifestError::NotFound { .. }) => None,
        Err(e) if needs_project => return Err(e.into()),
        Err(e) => {
            eprintln!("warning: ignoring the project: {e}");
            None
        }
    };
    let paths = env.depot_paths(manifest.as_ref())?;
    if !paths[0].join(relocache::depot::layout::DEPOT_TOML).exists() {
        return Err(UsageError(format!(
            "no depot at `{}` (no DEPOT.toml)\n  help: pass --depot DIR, or run `relocache build` first",
            paths[0].display()
        ))
        .into());
    }
    let mut depots = vec![Depot::open_existing(&paths[0])?];
    for p in &paths[1..] {
        match Depot::open_existing(p) {
            Ok(d) => depots.push(d),
            Err(DepotError::NotADepot(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let opts = VerifyOptions {
        relocatable: args.relocatable,
        integrity: args.integrity,
        targets: args.targets.clone(),
        simulate: args.simulate,
    };
    super::note_legacy(&depots[0]);
    let bars = Bars::new(!env.cli.json && !env.cli.quiet);
    let result = verify(&depots, manifest.as_ref(), &opts, &bars);
    bars.finish();
    let report = match result {
        Ok(r) => r,
        Err(VerifyError::Build(e)) => return Err(e.into()),
        Err(VerifyError::Depot(e)) => return Err(e.into()),
        Err(VerifyError::Manifest(e)) => return Err(e.into()),
        Err(e @ VerifyError::NeedsProject(_)) => return Err(UsageError(e.to_string()).into()),
        Err(e @ VerifyError::Copy { .. }) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    if env.cli.json {
        super::print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        render(&mut out, &report, depots[0].root(), args.relocatable)?;
    }
    Ok(if report.clean() { 0 } else { 1 })
}

/// Problems grouped by entry (depot-wide ones first), then one summary line.
fn render(
    out: &mut impl Write,
    r: &VerifyReport,
    depot: &std::path::Path,
    relocatable: bool,
) -> std::io::Result<()> {
    let mut last: Option<Option<Key>> = None;
    for p in &r.problems {
        if last != Some(p.entry) {
            match (&p.entry, &p.label) {
                (None, _) => writeln!(out, "depot {}", depot.display())?,
                (Some(k), Some(l)) => writeln!(out, "entry {} ({l})", k.short())?,
                (Some(k), None) => writeln!(out, "entry {}", k.short())?,
            }
        }
        last = Some(p.entry);
        writeln!(out, "  {}  {}", p.kind, p.path.as_deref().unwrap_or("-"))?;
        for line in p.detail.lines() {
            writeln!(out, "      {}", line.trim_start())?;
        }
    }
    if !r.problems.is_empty() {
        writeln!(out)?;
    }
    if let Some(s) = r.simulated {
        writeln!(
            out,
            "simulated a move: {} of {} cached target{} would hit",
            s.hits,
            s.targets,
            if s.targets == 1 { "" } else { "s" }
        )?;
    }
    let checked = format!(
        "{} entr{}, {} blob{} checked",
        r.entries_checked,
        if r.entries_checked == 1 { "y" } else { "ies" },
        r.blobs_checked,
        if r.blobs_checked == 1 { "" } else { "s" }
    );
    let verdict = match (r.problems.len(), relocatable) {
        (0, true) => "no problems; the depot is relocatable".to_owned(),
        (0, false) => "no problems".to_owned(),
        (1, _) => "1 problem".to_owned(),
        (n, _) => format!("{n} problems"),
    };
    writeln!(out, "verify: {checked}: {verdict}")
}
