//! `relocache stats`: renders a [`StatsReport`] (totals, per target with
//! `-v`) and `--reset`.

use anyhow::Result;
use clap::Args;

use relocache::stats::{reset, stats, StatsReport};
use relocache::units::format_size;

use super::open::{existing_depot, no_depot, optional_manifest};
use super::progress::Bars;
use super::Env;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  relocache stats                 hits, misses, builds, bytes restored, time saved, depot size
  relocache stats -v              the same per project and target
  relocache stats --json          {\"hits\",\"misses\",\"saved_ms\",\"size\",\"dedup_ratio\",\"targets\":[…],…}
  relocache stats --reset         zero the counters (entries and last-use times stay)

With a remote cache, `remote` shows its hits, misses, errors, timeouts and corrupt
downloads (with signing, entries refused as unsigned or with a bad signature), and
`transferred` the bytes down and up (the JSON's remote_* fields).

Counters live in the depot (usage/), so they move with it and add up across every
process and machine that uses it. Time saved is the stored build time of each hit.")]
pub struct StatsArgs {
    /// Show the numbers of each project and target too
    #[arg(short, long)]
    pub verbose: bool,
    /// Zero the counters (events of builds running meanwhile are kept)
    #[arg(long)]
    pub reset: bool,
}

pub fn run(env: &Env, args: &StatsArgs) -> Result<i32> {
    let manifest = optional_manifest(env)?;
    let Some(depot) = existing_depot(env, manifest.as_ref())? else {
        no_depot(env, manifest.as_ref())?;
        return Ok(0);
    };
    if args.reset {
        reset(&depot)?;
        if !env.cli.quiet && !env.cli.json {
            eprintln!("counters reset");
        }
    }
    let bars = Bars::new(!env.cli.quiet && !env.cli.json);
    let report = stats(&depot, &bars);
    bars.finish();
    let report = report?;
    if env.cli.json {
        super::print_json(&report)?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        print!(
            "{}",
            render(&report, &depot.root().display().to_string(), args.verbose)
        );
    }
    Ok(0)
}

fn secs(ms: u64) -> String {
    if ms >= 3_600_000 {
        format!("{:.1}h", ms as f64 / 3_600_000.0)
    } else {
        format!("{:.2}s", ms as f64 / 1000.0)
    }
}

// Long on purpose: a text template, one row per counter.
fn render(r: &StatsReport, depot: &str, verbose: bool) -> String {
    let t = &r.totals;
    let mut s = String::new();
    let mut row = |k: &str, v: String| s.push_str(&format!("{k:<12}{v}\n"));
    row("depot", depot.to_owned());
    row(
        "size",
        format!(
            "{} ({} entries, {} blobs)",
            format_size(r.size),
            r.entries,
            r.blobs
        ),
    );
    row(
        "outputs",
        match r.dedup_ratio {
            Some(x) => format!(
                "{} stored as {} (dedup ratio {x:.2}); all blobs {}",
                format_size(r.logical_bytes),
                format_size(r.output_blob_bytes),
                format_size(r.stored_bytes)
            ),
            None => "none stored".to_owned(),
        },
    );
    if r.packs > 0 {
        row(
            "packed",
            format!(
                "{} blobs in {} pack{} ({}); {} loose ({})",
                r.packed_blobs,
                r.packs,
                if r.packs == 1 { "" } else { "s" },
                format_size(r.packed_bytes),
                r.loose_blobs,
                format_size(r.loose_bytes)
            ),
        );
    }
    row(
        "hits",
        match r.hit_rate {
            Some(rate) => format!(
                "{} of {} lookups ({:.1}%)",
                t.hits,
                t.hits + t.misses,
                rate * 100.0
            ),
            None => t.hits.to_string(),
        },
    );
    row("misses", t.misses.to_string());
    row("builds", format!("{} ({})", t.builds, secs(t.build_ms)));
    row("failures", t.failures.to_string());
    row("restored", format_size(t.bytes_restored));
    row("stored", format_size(t.bytes_stored));
    row("time saved", secs(t.saved_ms));
    let remote_used = t.remote_hits
        + t.remote_misses
        + t.remote_errors
        + t.remote_timeouts
        + t.remote_corrupt
        + t.remote_unsigned
        + t.remote_bad_signature
        + t.remote_uploads
        + t.remote_bytes_up
        > 0;
    if remote_used {
        row(
            "remote",
            format!(
                "{} hits, {} misses, {} errors, {} timeouts, {} corrupt{}; {} uploads",
                t.remote_hits,
                t.remote_misses,
                t.remote_errors,
                t.remote_timeouts,
                t.remote_corrupt,
                // Only where signing ever refused one: lines stay as they were.
                if t.remote_unsigned + t.remote_bad_signature > 0 {
                    format!(
                        ", {} unsigned, {} bad signature",
                        t.remote_unsigned, t.remote_bad_signature
                    )
                } else {
                    String::new()
                },
                t.remote_uploads
            ),
        );
        row(
            "transferred",
            format!(
                "{} down, {} up",
                format_size(t.remote_bytes_down),
                format_size(t.remote_bytes_up)
            ),
        );
    }
    row(
        "since",
        r.since
            .clone()
            .unwrap_or_else(|| "the depot was created".to_owned()),
    );
    if verbose && !r.targets.is_empty() {
        s.push_str(&format!(
            "\n{:<28} {:>7} {:>10} {:>6} {:>6} {:>6} {:>8} {:>9}\n",
            "project/target", "entries", "size", "hits", "misses", "builds", "failures", "saved"
        ));
        for x in &r.targets {
            let c = &x.counters;
            s.push_str(&format!(
                "{:<28} {:>7} {:>10} {:>6} {:>6} {:>6} {:>8} {:>9}\n",
                format!("{}/{}", x.project, x.target),
                x.entries,
                format_size(x.logical_bytes),
                c.hits,
                c.misses,
                c.builds,
                c.failures,
                secs(c.saved_ms)
            ));
        }
    }
    s
}
