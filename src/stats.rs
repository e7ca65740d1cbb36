//! `stats`: the counters of the usage logs (hits, misses, builds, failures,
//! bytes, time saved) with the depot's size, entry and blob counts and dedup
//! ratio, in total and per target. Reading never changes the depot; only
//! [`reset`] writes (through the usage compaction).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::depot::entries::OutputKind;
use crate::depot::usage::{self, CompactOptions, Counters};
use crate::depot::{Depot, DepotError};
use crate::digest::Digest;
use crate::gc::inventory;
use crate::report::Reporter;

/// One target's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStats {
    /// Project name.
    pub project: String,
    /// Target name.
    pub target: String,
    /// Entries of it in the depot.
    pub entries: usize,
    /// Output bytes of those entries (before dedup and compression).
    pub logical_bytes: u64,
    /// Its counters since the last reset.
    #[serde(flatten)]
    pub counters: Counters,
}

/// What `stats` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// When the counters were last reset (RFC 3339), if ever.
    pub since: Option<String>,
    /// Counters of every target.
    #[serde(flatten)]
    pub totals: Counters,
    /// hits / (hits + misses), when there was a lookup.
    pub hit_rate: Option<f64>,
    /// Bytes of every file in the depot.
    pub size: u64,
    /// Entries.
    pub entries: usize,
    /// Blobs, loose or packed, each counted once.
    pub blobs: usize,
    /// Bytes of all stored blobs (compressed, each stored once), including
    /// the replayed logs and inputs summaries.
    pub stored_bytes: u64,
    /// Loose blobs (one file each).
    pub loose_blobs: usize,
    /// Bytes of the loose blobs.
    pub loose_bytes: u64,
    /// Blobs inside packs (a blob also loose counts in both).
    pub packed_blobs: usize,
    /// Stored bytes of the packed blobs.
    pub packed_bytes: u64,
    /// Packs with a usable index.
    pub packs: usize,
    /// Output bytes of every entry, as restored.
    pub logical_bytes: u64,
    /// Bytes of the distinct blobs holding those outputs.
    pub output_blob_bytes: u64,
    /// `logical_bytes / output_blob_bytes`: what dedup and compression save.
    pub dedup_ratio: Option<f64>,
    /// Usage logs not yet merged (gc merges them).
    pub pending_logs: usize,
    /// Per project and target, sorted.
    pub targets: Vec<TargetStats>,
    /// Things the user should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Computes the stats of `depot` without writing to it.
pub fn stats(depot: &Depot, reporter: &dyn Reporter) -> Result<StatsReport, DepotError> {
    let inv = inventory(depot, reporter)?;
    let mut per: BTreeMap<(String, String), TargetStats> = BTreeMap::new();
    for ((p, t), c) in &inv.usage.counters {
        slot(&mut per, p, t).counters = *c;
    }
    let mut logical_bytes = 0;
    let mut output_blobs = std::collections::BTreeSet::new();
    for e in inv.items.iter().filter_map(|i| i.entry.as_ref()) {
        let bytes: u64 = e
            .outputs
            .iter()
            .filter(|o| o.kind == OutputKind::File)
            .map(|o| o.size)
            .sum();
        logical_bytes += bytes;
        output_blobs.extend(e.outputs.iter().filter_map(|o| o.digest));
        let s = slot(&mut per, &e.project, &e.target);
        s.entries += 1;
        s.logical_bytes += bytes;
    }
    let totals = inv.usage.totals();
    let loose: BTreeMap<Digest, u64> = inv.blobs.iter().map(|(d, b)| (*d, b.bytes)).collect();
    let pack_set = depot.packs()?;
    let mut packed: BTreeMap<Digest, u64> = BTreeMap::new();
    for e in pack_set.packs.iter().flat_map(|p| &p.entries) {
        packed.insert(e.digest, e.length);
    }
    // Loose wins, as for readers: a blob in both is counted once.
    let mut all = packed.clone();
    all.extend(loose.iter().map(|(d, n)| (*d, *n)));
    let stored_bytes: u64 = all.values().sum();
    let output_blob_bytes: u64 = output_blobs.iter().filter_map(|d| all.get(d)).sum();
    let lookups = totals.hits + totals.misses;
    Ok(StatsReport {
        since: inv.usage.since.map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        }),
        totals,
        hit_rate: (lookups > 0).then(|| totals.hits as f64 / lookups as f64),
        size: inv.size,
        entries: inv.items.len(),
        blobs: all.len(),
        stored_bytes,
        loose_blobs: loose.len(),
        loose_bytes: loose.values().sum(),
        packed_blobs: packed.len(),
        packed_bytes: packed.values().sum(),
        packs: pack_set.packs.len(),
        logical_bytes,
        output_blob_bytes,
        dedup_ratio: (output_blob_bytes > 0)
            .then(|| logical_bytes as f64 / output_blob_bytes as f64),
        pending_logs: inv.usage.pending_logs,
        targets: per.into_values().collect(),
        warnings: inv.warnings,
    })
}

fn slot<'m>(
    per: &'m mut BTreeMap<(String, String), TargetStats>,
    project: &str,
    target: &str,
) -> &'m mut TargetStats {
    per.entry((project.to_owned(), target.to_owned()))
        .or_insert_with(|| TargetStats {
            project: project.to_owned(),
            target: target.to_owned(),
            entries: 0,
            logical_bytes: 0,
            counters: Counters::default(),
        })
}

/// Zeroes the counters. Events recorded by builds running meanwhile are
/// kept: they land in logs the reset did not fold, and count afterwards.
pub fn reset(depot: &Depot) -> Result<(), DepotError> {
    usage::compact(
        depot,
        CompactOptions {
            reset: true,
            wait: true,
            keep: None,
        },
    )?;
    Ok(())
}
