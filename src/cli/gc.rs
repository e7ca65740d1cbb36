//! `relocache gc`: renders a [`GcReport`], and the removed-entry lines `clear`
//! shares; runs the automatic gc after a build.

use anyhow::Result;
use clap::Args;

use relocache::depot::Depot;
use relocache::gc::{gc, GcOptions, GcReport, PacksReport, RemovedEntry};
use relocache::units::{format_size, parse_age, parse_size};

use super::open::{existing_depot, no_depot, optional_manifest};
use super::progress::Bars;
use super::{Env, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache gc --max-size 2G      evict least recently used entries until under 2G (cleans to 80%)
  relocache gc --max-age 30d      drop entries not used for 30 days
  relocache gc --dry-run          say what would go and how much it frees
  relocache gc                    only sweep orphans, and the DEPOT.toml max_size if set
  relocache gc --repack           also move every loose blob into one pack (fast to copy)
  relocache gc --json             {\"removed\":[…],\"bytes_freed\",\"size_before\",\"size_after\",…}

Last use is recorded inside the depot (usage/), so a copied depot keeps its LRU order.
Unreferenced blobs and staging files younger than --grace are kept: a running build
may be writing them. Every gc deletes packs none of whose blobs is referenced and
rewrites packs less than half live; packs younger than --grace are left alone. With `max_size = \"10G\"` in DEPOT.toml, `build` runs this gc
whenever it stores something and the depot is over the bound.")]
pub struct GcArgs {
    /// Evict least recently used entries while the depot is larger than SIZE (e.g. 500M, 2G); default: DEPOT.toml max_size
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Evict entries not used for AGE (e.g. 30d, 12h)
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<String>,
    /// Keep unreferenced blobs and staging files younger than AGE
    #[arg(long, value_name = "AGE", default_value = "1h")]
    pub grace: String,
    /// Only say what would be removed
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Also move every loose blob into one new pack, so the depot is a few large files
    #[arg(long)]
    pub repack: bool,
}

pub(super) fn entry_line(r: &RemovedEntry) -> String {
    format!(
        "  {}/{}  {}  last used {}  {}",
        r.project,
        r.target,
        r.key.short(),
        r.last_used,
        format_size(r.bytes)
    )
}

pub fn run(env: &Env, args: &GcArgs) -> Result<i32> {
    let usage = |e: relocache::units::UnitError| UsageError(e.to_string());
    let max_size = args
        .max_size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(usage)?;
    let max_age = args
        .max_age
        .as_deref()
        .map(parse_age)
        .transpose()
        .map_err(usage)?;
    let grace = parse_age(&args.grace).map_err(usage)?;
    let manifest = optional_manifest(env)?;
    let Some(depot) = existing_depot(env, manifest.as_ref())? else {
        no_depot(env, manifest.as_ref())?;
        return Ok(0);
    };
    let max_size = match max_size {
        Some(s) => Some(s),
        None => relocache::gc::configured_max_size(&depot)?,
    };
    let opts = GcOptions {
        max_size,
        max_age,
        grace,
        dry_run: args.dry_run,
        repack: args.repack,
    };
    let bars = Bars::new(!env.cli.quiet && !env.cli.json);
    let report = gc(&depot, &opts, &bars);
    bars.finish();
    let report = report?;
    if env.cli.json {
        super::print_json(&report)?;
    } else {
        print_report(&report, env.cli.quiet);
    }
    Ok(0)
}

/// The automatic gc after a build that stored something, when DEPOT.toml
/// sets `max_size`. Its problems are warnings: the build itself succeeded.
pub(super) fn after_build(env: &Env, depot: &Depot) {
    match relocache::gc::auto(depot, &relocache::report::Silent) {
        Ok(None) => {}
        Ok(Some(r)) => {
            if !env.cli.quiet {
                eprintln!(
                    "gc: the depot exceeded its max_size of {}; removed {} entr{} least recently used, freed {}",
                    format_size(r.max_size.unwrap_or(0)),
                    r.removed.len(),
                    if r.removed.len() == 1 { "y" } else { "ies" },
                    format_size(r.bytes_freed)
                );
            }
        }
        Err(e) => eprintln!("warning: automatic gc failed: {e}"),
    }
}

/// Text rendering, on stderr like every human-facing line.
pub(super) fn print_report(r: &GcReport, quiet: bool) {
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    let (verb, freed) = if r.dry_run {
        ("would remove", "would free")
    } else {
        ("removed", "freed")
    };
    if !r.removed.is_empty() {
        if !quiet {
            eprintln!(
                "{verb} {} entr{} (least recently used first):",
                r.removed.len(),
                if r.removed.len() == 1 { "y" } else { "ies" }
            );
            for e in &r.removed {
                let why = match e.why {
                    relocache::gc::Why::MaxAge => "max-age",
                    relocache::gc::Why::MaxSize => "max-size",
                    relocache::gc::Why::Cleared => "cleared",
                };
                eprintln!("{}  ({why})", entry_line(e));
            }
        }
    } else if !quiet {
        eprintln!("{verb} no entries");
    }
    let o = &r.orphans;
    if !quiet {
        eprintln!(
            "orphans: {} blob{} ({}), {} staging file{} ({}), {} dead lock{}",
            o.blobs,
            plural(o.blobs),
            format_size(o.blob_bytes),
            o.tmp_files,
            plural(o.tmp_files),
            format_size(o.tmp_bytes),
            o.dead_locks,
            plural(o.dead_locks)
        );
        if o.kept_young > 0 {
            eprintln!(
                "kept {} unreferenced file{} younger than {} (a running build may be writing {})",
                o.kept_young,
                plural(o.kept_young),
                humantime::format_duration(std::time::Duration::from_secs(r.grace_secs)),
                if o.kept_young == 1 { "it" } else { "them" }
            );
        }
    }
    if !quiet {
        if let Some(l) = packs_line(&r.packs, r.dry_run) {
            eprintln!("{l}");
        }
    }
    let mut line = format!(
        "{freed} {}: {} -> {}, {} entr{} left",
        format_size(r.bytes_freed),
        format_size(r.size_before),
        format_size(r.size_after),
        r.entries_after,
        if r.entries_after == 1 { "y" } else { "ies" }
    );
    if let (Some(b), Some(c)) = (r.max_size, r.clean_to) {
        line.push_str(&format!(
            " (over the bound of {}, cleaned to {})",
            format_size(b),
            format_size(c)
        ));
    } else if let Some(b) = r.max_size {
        line.push_str(&format!(" (under the bound of {})", format_size(b)));
    }
    eprintln!("{line}");
}

/// The line about packs, when gc did (or would do) anything to them.
fn packs_line(p: &PacksReport, dry_run: bool) -> Option<String> {
    // (count, what is counted, what happened to them), in the order shown.
    let happened: [(usize, &str, &str); 7] = [
        (p.loose_packed, "loose blob", "packed"),
        (p.repacked, "pack", "rewritten"),
        (p.deleted, "pack", "deleted (no live blob)"),
        (
            p.half_packs,
            "pack file",
            "left by an interrupted write swept",
        ),
        (
            p.damaged,
            "blob",
            "left out (damaged: run `relocache verify --integrity`)",
        ),
        (p.kept_young, "pack", "younger than the grace period kept"),
        (
            p.kept_for_new_entries,
            "pack",
            "kept for entries published meanwhile",
        ),
    ];
    let parts: Vec<String> = happened
        .iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, what, done)| format!("{} {done}", count(*n, what)))
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut line = format!("packs: {}", parts.join(", "));
    if p.blobs_written > 0 {
        line.push_str(&format!(
            "; {} {} into {} ({})",
            if dry_run { "would write" } else { "wrote" },
            count(p.blobs_written, "blob"),
            p.new_pack
                .as_deref()
                .map_or("a new pack".to_owned(), |id| format!("pack-{}", &id[..12])),
            format_size(p.bytes_written)
        ));
    }
    Some(line)
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", plural(n))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `DEFAULT_GRACE` is what `--grace` defaults to; keep them in step.
#[cfg(test)]
#[test]
fn grace_default_matches_the_library() {
    assert_eq!(parse_age("1h").unwrap(), relocache::gc::DEFAULT_GRACE);
}
