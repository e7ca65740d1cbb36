//! `clear`: dropping chosen entries (all, one key, a project, some targets),
//! their project records and the blobs only they referenced, through the
//! same plan and execution as gc. Picks entries only as the user named them.

use serde::Serialize;

use super::inventory::inventory;
use super::{
    execute, legacy_note, plan_packs, plan_sweep, Orphans, PackPlan, Plan, RemovedEntry, Sweep,
    Why, DEFAULT_GRACE,
};
use crate::depot::usage::{self, CompactOptions};
use crate::depot::{Depot, DepotError};
use crate::digest::Key;
use crate::report::Reporter;

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
                // A template's name also takes the entries of instances
                // whose files are gone (`obj` takes every `obj:…`).
                e.project == *project
                    && (targets.contains(&e.target)
                        || e.target
                            .split_once(':')
                            .is_some_and(|(t, _)| targets.iter().any(|x| x == t)))
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
    // Packs only on `--all`, where every one is dead (past the grace).
    let mut packs = match sel {
        Selection::All => {
            let doomed = plan.blobs.iter().chain(&sweep.blobs).copied().collect();
            plan_packs(&inv, &refs, &doomed, DEFAULT_GRACE, false, false)
        }
        _ => PackPlan::default(),
    };
    let (present, blobs_removed) = execute(
        depot,
        &inv,
        &plan,
        &sweep,
        &mut packs,
        DEFAULT_GRACE,
        reporter,
    )?;
    let mut records_removed = 0;
    match sel {
        Selection::All => {
            for p in depot.record_projects()? {
                records_removed += depot.remove_project_records(&p)?;
            }
        }
        Selection::Project(p) => records_removed += depot.remove_project_records(p)?,
        Selection::Targets { project, targets } => {
            let removed_targets: std::collections::BTreeSet<&str> =
                plan.removed.iter().map(|r| r.target.as_str()).collect();
            for t in targets.iter().map(String::as_str).chain(removed_targets) {
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
        bytes_freed: plan.bytes - plan.packed_bytes
            + sweep.report.blob_bytes
            + sweep.report.tmp_bytes
            + packs.report.bytes_freed(),
        orphans,
        warnings,
    })
}
