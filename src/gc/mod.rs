//! `gc` and `clear`: the only code that deletes entries and blobs.
//!
//! gc evicts entries least recently used first — by the last use recorded in
//! the usage logs ([`crate::depot::usage`]), else the entry's creation time,
//! never a file mtime — until the depot is back under a size bound, with
//! hysteresis (it cleans to 80% of the bound, so the next build does not
//! trigger another gc); it drops entries unused for longer than a maximum
//! age; and it sweeps orphans: blobs no entry references, stale staging files
//! and the lock placeholders of crashed builds. clear drops chosen entries.
//!
//! Crash safety: entries go first (their directories synced), then the blobs
//! only they referenced, so no instant has an entry without its blobs.
//! Concurrent builds: an unreferenced blob or staging file younger than the
//! grace period may be a running build's and is kept. Its age is the one
//! thing read from a file's mtime; a copied depot only looks younger, so this
//! errs toward keeping. Entries published while a gc runs are read before any
//! blob is deleted, and their blobs are kept: the re-read and the deletions
//! hold the depot's gc lock exclusively, and every publish holds it shared
//! while it checks that the blobs it names are there.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::depot::usage::{self, CompactOptions, Usage};
use crate::depot::{sync_dir, Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::report::Reporter;

mod clear;
mod inventory;
mod packs;
mod salvage;

pub use clear::{clear, resolve_key, ClearReport, KeyError, Selection};
use inventory::{age_of, read_item, rfc3339_of_ms};
pub(crate) use inventory::{inventory, tree_size, Inventory};
pub use packs::PacksReport;
use packs::{plan_packs, PackPlan};
pub use salvage::SalvageReport;

/// How old an unreferenced blob, staging file or dead lock must be before
/// gc takes it, unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// A size-bounded gc cleans down to this share of the bound (hysteresis).
pub const CLEAN_TO_PERCENT: u64 = 80;

/// What `gc` should do.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Evict least recently used entries when the depot is larger than this.
    pub max_size: Option<u64>,
    /// Evict entries not used for this long.
    pub max_age: Option<Duration>,
    /// Orphans younger than this are kept (they may be a running build's).
    pub grace: Duration,
    /// Only report what would be removed.
    pub dry_run: bool,
    /// Also move every loose blob into a new pack (`gc --repack`).
    pub repack: bool,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            max_size: None,
            max_age: None,
            grace: DEFAULT_GRACE,
            dry_run: false,
            repack: false,
        }
    }
}

/// Why an entry was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// Not used within `--max-age`.
    MaxAge,
    /// Least recently used while the depot exceeded `--max-size`.
    MaxSize,
    /// Named by `clear`.
    Cleared,
}

/// One removed (or, in a dry run, doomed) entry.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedEntry {
    /// Its key.
    pub key: Key,
    /// The project that stored it.
    pub project: String,
    /// The target that stored it.
    pub target: String,
    /// Its last recorded use (else its creation), RFC 3339 UTC.
    pub last_used: String,
    /// Why it goes.
    pub why: Why,
    /// Bytes freed with it: the entry file and the blobs only it referenced.
    pub bytes: u64,
}

/// Orphans swept (or, in a dry run, that would be).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Orphans {
    /// Blobs no entry references.
    pub blobs: usize,
    /// Their size.
    pub blob_bytes: u64,
    /// Stale files in `tmp/`.
    pub tmp_files: usize,
    /// Their size.
    pub tmp_bytes: u64,
    /// Lock placeholders of crashed builds.
    pub dead_locks: usize,
    /// Unreferenced blobs and staging files kept because they are younger
    /// than the grace period (a running build may be writing them).
    pub kept_young: usize,
}

/// The result of `gc`.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// Nothing was removed; the report says what would be.
    pub dry_run: bool,
    /// The size bound, if any.
    pub max_size: Option<u64>,
    /// What a size-bounded eviction cleans down to.
    pub clean_to: Option<u64>,
    /// The age bound, in seconds.
    pub max_age_secs: Option<u64>,
    /// The grace period for orphans, in seconds.
    pub grace_secs: u64,
    /// Bytes of every file in the depot before.
    pub size_before: u64,
    /// … and after.
    pub size_after: u64,
    /// Entries before.
    pub entries_before: usize,
    /// Entries after.
    pub entries_after: usize,
    /// Entries removed, least recently used first.
    pub removed: Vec<RemovedEntry>,
    /// Blobs removed with those entries.
    pub blobs_removed: usize,
    /// Orphans swept.
    pub orphans: Orphans,
    /// Packs deleted, rewritten and written, loose blobs packed.
    pub packs: PacksReport,
    /// Packs whose index was damaged: their sound blobs copied into a new
    /// pack, the pair moved to `quarantine/`.
    #[serde(skip_serializing_if = "SalvageReport::is_empty")]
    pub salvaged: SalvageReport,
    /// Total bytes freed (net of a new pack).
    pub bytes_freed: u64,
    /// Usage logs folded into the merged log.
    pub usage_logs_merged: usize,
    /// Things the user should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A planned removal: entries (by index into the inventory) and blobs.
#[derive(Default)]
struct Plan {
    removed: Vec<RemovedEntry>,
    victims: Vec<Key>,
    /// Loose blobs only the victims referenced.
    blobs: Vec<Digest>,
    bytes: u64,
    /// The part of `bytes` that is packed blobs (freed only when their
    /// pack is deleted or rewritten).
    packed_bytes: u64,
}

impl Plan {
    /// Adds item `i` and the blobs it leaves unreferenced.
    fn take(&mut self, inv: &Inventory, refs: &mut HashMap<Digest, usize>, i: usize, why: Why) {
        let item = &inv.items[i];
        let mut bytes = item.file_bytes;
        for b in &item.blobs {
            let n = refs.get_mut(b).expect("counted");
            *n -= 1;
            if *n == 0 {
                if let Some(info) = inv.blobs.get(b) {
                    bytes += info.bytes;
                    self.blobs.push(*b);
                }
                // Its stored length in its pack, from the index.
                if let Some((_, len)) = inv.packed.get(b) {
                    bytes += len;
                    self.packed_bytes += len;
                }
            }
        }
        let (project, target) = item
            .entry
            .as_ref()
            .map(|e| (e.project.clone(), e.target.clone()))
            .unwrap_or_else(|| ("?".into(), "?".into()));
        self.removed.push(RemovedEntry {
            key: item.key,
            project,
            target,
            last_used: rfc3339_of_ms(item.last_use),
            why,
            bytes,
        });
        self.victims.push(item.key);
        self.bytes += bytes;
    }
}

/// Orphans to sweep.
#[derive(Default)]
struct Sweep {
    report: Orphans,
    blobs: Vec<Digest>,
    tmp: Vec<PathBuf>,
    locks: Vec<PathBuf>,
}

fn plan_sweep(
    depot: &Depot,
    inv: &Inventory,
    refs: &HashMap<Digest, usize>,
    grace: Duration,
) -> Result<Sweep, DepotError> {
    let mut s = Sweep::default();
    for (d, info) in &inv.blobs {
        if refs.get(d).copied().unwrap_or(0) > 0 {
            continue;
        }
        if info.age >= grace {
            s.report.blobs += 1;
            s.report.blob_bytes += info.bytes;
            s.blobs.push(*d);
        } else {
            s.report.kept_young += 1;
        }
    }
    let tmp = depot.tmp_dir();
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            if age_of(&md) >= grace {
                s.report.tmp_files += 1;
                s.report.tmp_bytes += md.len();
                s.tmp.push(e.path());
            } else {
                s.report.kept_young += 1;
            }
        }
    }
    for path in depot.lock_files()? {
        let old = path.symlink_metadata().is_ok_and(|m| age_of(&m) >= grace);
        let abandoned = std::fs::File::open(&path).is_ok_and(|f| f.try_lock_shared().is_ok());
        if old && abandoned {
            s.report.dead_locks += 1;
            s.locks.push(path);
        }
    }
    Ok(s)
}

/// Removes the planned entries, then (after reading entries that appeared
/// meanwhile) the blobs only they referenced and the swept orphans. Returns
/// the keys of the entries present now and the count of blobs removed with
/// entries.
fn execute(
    depot: &Depot,
    inv: &Inventory,
    plan: &Plan,
    sweep: &Sweep,
    packs: &mut PackPlan,
    grace: Duration,
    reporter: &dyn Reporter,
) -> Result<(HashSet<Key>, usize), DepotError> {
    let mut dirs = std::collections::BTreeSet::new();
    for (i, key) in plan.victims.iter().enumerate() {
        reporter.progress("removing entries", i as u64, plan.victims.len() as u64);
        depot.remove_entry(key)?;
        if let Some(p) = depot.entry_path(key).parent() {
            dirs.insert(p.to_path_buf());
        }
    }
    // The removals must be durable before any blob goes.
    for d in &dirs {
        sync_dir(d);
    }
    let known: HashSet<Key> = inv.items.iter().map(|i| i.key).collect();
    let victims: HashSet<Key> = plan.victims.iter().copied().collect();
    let mut present: HashSet<Key> = known.difference(&victims).copied().collect();
    let mut protected: HashSet<Digest> = HashSet::new();
    // Written before the lock: it deletes nothing, and publishes blobs.
    let written = packs::write_new_pack(depot, packs, reporter)?;
    // From reading the entries present to the last blob deleted, no entry
    // is published (see `Depot::write_entry`).
    let _exclusive = depot.gc_lock(true);
    // The base keys of the entries present, whose variants records stay.
    let mut bases: HashSet<Key> = inv
        .items
        .iter()
        .filter(|i| present.contains(&i.key))
        .filter_map(|i| i.entry.as_ref()?.base)
        .collect();
    for key in depot.list_entries()? {
        if !known.contains(&key) {
            let mut ignored = Vec::new();
            let item = read_item(depot, key, &Usage::default(), &mut ignored);
            protected.extend(item.blobs);
            bases.extend(item.entry.and_then(|e| e.base));
            present.insert(key);
        }
    }
    // A variants record only leads to entries: one none of whose entries
    // is left goes with them (an entry is published before its record is
    // written, and not at all while this lock is held).
    for key in depot.list_variants()? {
        if !bases.contains(&key) {
            depot.remove_variants(&key)?;
        }
    }
    let mut removed_with_entries = 0;
    let total = plan.blobs.len() + sweep.blobs.len();
    for (i, d) in plan.blobs.iter().chain(&sweep.blobs).enumerate() {
        reporter.progress("removing blobs", i as u64, total as u64);
        if protected.contains(d) {
            continue;
        }
        let path = depot.blob_path(d);
        match std::fs::remove_file(&path) {
            Ok(()) => removed_with_entries += usize::from(i < plan.blobs.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DepotError::io("remove blob", &path)(e)),
        }
    }
    packs::delete_old(depot, inv, packs, &written, &protected, grace)?;
    for path in &sweep.tmp {
        // Re-checked: a staging file may have been reused since it was listed.
        if path.symlink_metadata().is_ok_and(|m| age_of(&m) >= grace) {
            let _ = std::fs::remove_file(path);
        }
    }
    for path in &sweep.locks {
        depot.remove_abandoned_lock(path);
    }
    Ok((present, removed_with_entries))
}

/// Evicts and sweeps according to `opts`; see the module docs.
pub fn gc(
    depot: &Depot,
    opts: &GcOptions,
    reporter: &dyn Reporter,
) -> Result<GcReport, DepotError> {
    let _span = tracing::debug_span!("gc", depot = %depot.root().display()).entered();
    // First, so the plan below sees the salvaged blobs in their new pack.
    let (salvaged, salvage_notes) = salvage::salvage(depot, opts.dry_run, reporter)?;
    let inv = inventory(depot, reporter)?;
    let mut refs = inv.refs();
    let sweep = plan_sweep(depot, &inv, &refs, opts.grace)?;
    let mut plan = Plan::default();
    // Least recently used first; the key breaks ties so the order is stable.
    let mut order: Vec<usize> = (0..inv.items.len())
        .filter(|i| inv.items[*i].entry.is_some())
        .collect();
    order.sort_by_key(|i| (inv.items[*i].last_use, inv.items[*i].key));
    let mut taken = vec![false; inv.items.len()];
    if let Some(age) = opts.max_age {
        let cutoff = usage::now_ms().saturating_sub(age.as_millis() as u64);
        for &i in &order {
            if inv.items[i].last_use < cutoff {
                plan.take(&inv, &mut refs, i, Why::MaxAge);
                taken[i] = true;
            }
        }
    }
    let swept = sweep.report.blob_bytes + sweep.report.tmp_bytes;
    let mut clean_to = None;
    if let Some(bound) = opts.max_size {
        let mut size = inv.size.saturating_sub(swept + plan.bytes);
        if size > bound {
            let target = bound / 100 * CLEAN_TO_PERCENT + bound % 100 * CLEAN_TO_PERCENT / 100;
            clean_to = Some(target);
            for &i in &order {
                if size <= target {
                    break;
                }
                if !taken[i] {
                    let before = plan.bytes;
                    plan.take(&inv, &mut refs, i, Why::MaxSize);
                    taken[i] = true;
                    size = size.saturating_sub(plan.bytes - before);
                }
            }
        }
    }
    let doomed: HashSet<Digest> = plan.blobs.iter().chain(&sweep.blobs).copied().collect();
    let mut packs = plan_packs(
        &inv,
        &refs,
        &doomed,
        opts.grace,
        opts.repack,
        clean_to.is_some(),
    );
    let bytes_freed = plan.bytes - plan.packed_bytes + swept + packs.report.bytes_freed();
    let mut report = GcReport {
        dry_run: opts.dry_run,
        max_size: opts.max_size,
        clean_to,
        max_age_secs: opts.max_age.map(|a| a.as_secs()),
        grace_secs: opts.grace.as_secs(),
        size_before: inv.size,
        size_after: inv.size.saturating_sub(bytes_freed),
        entries_before: inv.items.len(),
        entries_after: inv.items.len() - plan.victims.len(),
        blobs_removed: plan.blobs.len(),
        removed: std::mem::take(&mut plan.removed),
        orphans: sweep.report.clone(),
        packs: packs.report.clone(),
        salvaged,
        bytes_freed,
        usage_logs_merged: inv.usage.pending_logs,
        warnings: salvage_notes
            .into_iter()
            .chain(inv.warnings.clone())
            .collect(),
    };
    tracing::debug!(
        entries = plan.victims.len(),
        bytes = bytes_freed,
        dry_run = opts.dry_run,
        "gc plan"
    );
    if opts.dry_run {
        return Ok(report);
    }
    let (present, blobs_removed) =
        execute(depot, &inv, &plan, &sweep, &mut packs, opts.grace, reporter)?;
    report.blobs_removed = blobs_removed;
    report.packs = packs.report;
    report.bytes_freed = plan.bytes - plan.packed_bytes + swept + report.packs.bytes_freed();
    report.entries_after = present.len();
    let compacted = usage::compact(
        depot,
        CompactOptions {
            keep: Some(&present),
            wait: true,
            reset: false,
        },
    )?;
    report.usage_logs_merged = compacted.map(|c| c.logs_folded).unwrap_or(0);
    report.warnings.extend(legacy_note(depot.remove_legacy()?));
    report.size_after = tree_size(depot.root());
    Ok(report)
}

/// The one line saying which directories of depot format 1 went.
fn legacy_note(removed: Vec<&str>) -> Option<String> {
    (!removed.is_empty()).then(|| {
        format!(
            "removed {} of depot format 1, whose records carry no checksum and which this relocache never reads",
            removed.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
        )
    })
}

fn setting_error(depot: &Depot, name: &'static str, e: impl ToString) -> DepotError {
    DepotError::Io {
        action: name,
        path: depot.config_path(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The `max_size` of DEPOT.toml, in bytes.
pub fn configured_max_size(depot: &Depot) -> Result<Option<u64>, DepotError> {
    depot
        .config()
        .max_size
        .as_deref()
        .map(|s| {
            crate::units::parse_size(s)
                .map_err(|e| setting_error(depot, "use the max_size setting of", e))
        })
        .transpose()
}

/// The gc `build` runs after storing new entries: when DEPOT.toml sets
/// `max_size` and the depot exceeds it, evict down to 80% of it. The check
/// costs one walk of the depot's directories (a stat per file) and is made
/// only after something was stored.
pub fn auto(depot: &Depot, reporter: &dyn Reporter) -> Result<Option<GcReport>, DepotError> {
    let Some(bound) = configured_max_size(depot)? else {
        return Ok(None);
    };
    if tree_size(depot.root()) <= bound {
        return Ok(None);
    }
    let opts = GcOptions {
        max_size: Some(bound),
        ..GcOptions::default()
    };
    gc(depot, &opts, reporter).map(Some)
}
