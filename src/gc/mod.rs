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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::depot::entries::Entry;
use crate::depot::usage::{self, CompactOptions, Usage};
use crate::depot::{sync_dir, Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::report::Reporter;

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
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            max_size: None,
            max_age: None,
            grace: DEFAULT_GRACE,
            dry_run: false,
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
    /// Total bytes freed.
    pub bytes_freed: u64,
    /// Usage logs folded into the merged log.
    pub usage_logs_merged: usize,
    /// Things the user should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Which entries `clear` drops.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every entry, record and blob of the depot.
    All,
    /// Every entry and record of one project.
    Project(String),
    /// The entries and records of some targets of one project.
    Targets {
        /// The project.
        project: String,
        /// Its targets.
        targets: Vec<String>,
    },
    /// One entry.
    Key(Key),
}

/// The result of `clear`.
#[derive(Debug, Clone, Serialize)]
pub struct ClearReport {
    /// Entries removed.
    pub removed: Vec<RemovedEntry>,
    /// Project records removed.
    pub records_removed: usize,
    /// Blobs that became unreferenced and were removed.
    pub blobs_removed: usize,
    /// Orphans swept (`clear --all` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphans: Option<Orphans>,
    /// Total bytes freed.
    pub bytes_freed: u64,
    /// Things the user should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why `clear --key` could not pick an entry.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Too short or not hex.
    #[error("`{0}` is not a key or key prefix (at least 6 lowercase hex digits)\n  help: copy the key from `relocache build --json` or `relocache stats -v --json`")]
    Malformed(String),
    /// No entry matches.
    #[error("no entry has a key starting with `{0}`\n  help: it may already be gone; `relocache build --json` shows the current keys")]
    NotFound(String),
    /// Several entries match.
    #[error("`{prefix}` matches {count} entries\n  help: give more digits of the key")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many entries it matches.
        count: usize,
    },
    /// Listing the entries failed.
    #[error(transparent)]
    Depot(#[from] DepotError),
}

/// The entry whose key is `prefix` or starts with it.
pub fn resolve_key(depot: &Depot, prefix: &str) -> Result<Key, KeyError> {
    let ok = prefix.len() >= 6
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(KeyError::Malformed(prefix.to_owned()));
    }
    let found: Vec<Key> = depot
        .list_entries()?
        .into_iter()
        .filter(|k| k.to_hex().starts_with(prefix))
        .collect();
    match found.len() {
        0 => Err(KeyError::NotFound(prefix.to_owned())),
        1 => Ok(found[0]),
        count => Err(KeyError::Ambiguous {
            prefix: prefix.to_owned(),
            count,
        }),
    }
}

/// One entry as gc sees it.
pub(crate) struct Item {
    pub key: Key,
    /// `None` when the entry could not be read (damaged, or a newer schema).
    pub entry: Option<Entry>,
    /// Blobs it references; for an unreadable entry, every digest-looking
    /// word in its file, so its blobs are kept.
    pub blobs: Vec<Digest>,
    /// Size of the entry file.
    pub file_bytes: u64,
    /// Last recorded use, else creation, unix ms.
    pub last_use: u64,
}

/// A stored blob's size and age.
#[derive(Clone, Copy)]
pub(crate) struct BlobInfo {
    pub bytes: u64,
    pub age: Duration,
}

/// Everything in a depot that gc, clear and stats decide on.
pub(crate) struct Inventory {
    pub items: Vec<Item>,
    pub blobs: BTreeMap<Digest, BlobInfo>,
    /// Bytes of every file in the depot.
    pub size: u64,
    pub usage: Usage,
    pub warnings: Vec<String>,
}

impl Inventory {
    /// How many entries reference each blob.
    fn refs(&self) -> HashMap<Digest, usize> {
        let mut refs = HashMap::new();
        for i in &self.items {
            for b in &i.blobs {
                *refs.entry(*b).or_insert(0) += 1;
            }
        }
        refs
    }
}

fn age_of(md: &std::fs::Metadata) -> Duration {
    md.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO)
}

fn ms_of_rfc3339(s: &str) -> u64 {
    humantime::parse_rfc3339(s)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rfc3339_of_ms(ms: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Every digest-looking word of an unreadable entry's text.
fn conservative_blobs(text: &str) -> Vec<Digest> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Bytes of every regular file below `root` (no symlinks followed).
pub(crate) fn tree_size(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Reads one entry for the inventory, tolerating damage.
fn read_item(depot: &Depot, key: Key, usage: &Usage, warnings: &mut Vec<String>) -> Item {
    let path = depot.entry_path(&key);
    let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let (entry, blobs) = match depot.read_entry(&key) {
        Ok(Some(e)) => {
            let b = e.blobs();
            (Some(e), b)
        }
        Ok(None) => (None, vec![]),
        Err(e) => {
            warnings.push(format!(
                "could not read an entry ({e}); it and its blobs are kept"
            ));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            (None, conservative_blobs(&text))
        }
    };
    let created = entry.as_ref().map(|e| ms_of_rfc3339(&e.created));
    let last_use = usage.last_use.get(&key).copied().or(created).unwrap_or(0);
    Item {
        key,
        entry,
        blobs,
        file_bytes,
        last_use,
    }
}

/// Reads every entry, blob and usage log of `depot`.
pub(crate) fn inventory(depot: &Depot, reporter: &dyn Reporter) -> Result<Inventory, DepotError> {
    let usage = usage::read(depot)?;
    let keys = depot.list_entries()?;
    let mut warnings = Vec::new();
    let mut items = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        reporter.progress("entries", i as u64, keys.len() as u64);
        items.push(read_item(depot, *key, &usage, &mut warnings));
    }
    let digests = depot.list_blobs()?;
    let mut blobs = BTreeMap::new();
    for (i, d) in digests.iter().enumerate() {
        reporter.progress("blobs", i as u64, digests.len() as u64);
        // A blob removed by someone else meanwhile is simply not there.
        if let Ok(md) = std::fs::symlink_metadata(depot.blob_path(d)) {
            blobs.insert(
                *d,
                BlobInfo {
                    bytes: md.len(),
                    age: age_of(&md),
                },
            );
        }
    }
    Ok(Inventory {
        items,
        blobs,
        size: tree_size(depot.root()),
        usage,
        warnings,
    })
}

/// A planned removal: entries (by index into the inventory) and blobs.
#[derive(Default)]
struct Plan {
    removed: Vec<RemovedEntry>,
    victims: Vec<Key>,
    /// Blobs only the victims referenced.
    blobs: Vec<Digest>,
    bytes: u64,
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
    // From reading the entries present to the last blob deleted, no entry
    // is published (see `Depot::write_entry`).
    let _exclusive = depot.gc_lock(true);
    for key in depot.list_entries()? {
        if !known.contains(&key) {
            let mut ignored = Vec::new();
            protected.extend(read_item(depot, key, &Usage::default(), &mut ignored).blobs);
            present.insert(key);
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
    let bytes_freed = plan.bytes + swept;
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
        bytes_freed,
        usage_logs_merged: inv.usage.pending_logs,
        warnings: inv.warnings.clone(),
    };
    if opts.dry_run {
        return Ok(report);
    }
    let (present, blobs_removed) = execute(depot, &inv, &plan, &sweep, opts.grace, reporter)?;
    report.blobs_removed = blobs_removed;
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

/// Drops the selected entries, their project records and the blobs that
/// become unreferenced (`--all` also sweeps orphans past the grace period).
pub fn clear(
    depot: &Depot,
    sel: &Selection,
    reporter: &dyn Reporter,
) -> Result<ClearReport, DepotError> {
    let inv = inventory(depot, reporter)?;
    let mut refs = inv.refs();
    let mut plan = Plan::default();
    for (i, item) in inv.items.iter().enumerate() {
        let chosen = match (sel, &item.entry) {
            (Selection::All, _) => true,
            (Selection::Key(k), _) => item.key == *k,
            (Selection::Project(p), Some(e)) => e.project == *p,
            (Selection::Targets { project, targets }, Some(e)) => {
                e.project == *project && targets.contains(&e.target)
            }
            (_, None) => false,
        };
        if chosen {
            plan.take(&inv, &mut refs, i, Why::Cleared);
        }
    }
    let sweep = match sel {
        Selection::All => plan_sweep(depot, &inv, &refs, DEFAULT_GRACE)?,
        _ => Sweep::default(),
    };
    let (present, blobs_removed) = execute(depot, &inv, &plan, &sweep, DEFAULT_GRACE, reporter)?;
    let mut records_removed = 0;
    match sel {
        Selection::All => {
            for p in depot.record_projects()? {
                records_removed += depot.remove_project_records(&p)?;
            }
        }
        Selection::Project(p) => records_removed += depot.remove_project_records(p)?,
        Selection::Targets { project, targets } => {
            for t in targets {
                records_removed += usize::from(depot.remove_record(project, t)?);
            }
        }
        Selection::Key(k) => {
            for r in &plan.removed {
                if let Ok(Some(rec)) = depot.read_record(&r.project, &r.target) {
                    if rec.key == *k {
                        records_removed += usize::from(depot.remove_record(&r.project, &r.target)?);
                    }
                }
            }
        }
    }
    usage::compact(
        depot,
        CompactOptions {
            keep: Some(&present),
            wait: true,
            reset: false,
        },
    )?;
    let orphans = matches!(sel, Selection::All).then(|| sweep.report.clone());
    let mut warnings = inv.warnings;
    if matches!(sel, Selection::All) {
        warnings.extend(legacy_note(depot.remove_legacy()?));
    }
    Ok(ClearReport {
        removed: plan.removed,
        records_removed,
        blobs_removed,
        bytes_freed: plan.bytes + sweep.report.blob_bytes + sweep.report.tmp_bytes,
        orphans,
        warnings,
    })
}
