//! What gc does to packs: deletes a pack none of whose blobs is referenced,
//! rewrites a pack whose live bytes fell below half (its live blobs go into
//! one new pack, then the old pack goes), sweeps half packs (a pack file
//! without its index, an index without its pack) older than the grace
//! period, and with `gc --repack` moves every loose blob into that new pack
//! too, like `git gc`. Never deletes an entry, never writes one.
//!
//! Crash safety, in the order of the steps: the new pack is written in
//! `tmp/` and published (pack durable, then its index) before anything is
//! deleted, so every blob is somewhere at every instant; an old pack loses
//! its index first (the directory synced), then its file, so a crash leaves
//! a pack without an index, which readers ignore and a later gc sweeps; a
//! loose file goes only once a published pack holds its blob.
//!
//! Concurrent builds and unpacks: a pack whose index is younger than the
//! grace period is never deleted nor rewritten (an unpack publishes its pack
//! before its entries). The deletions run under the exclusive gc lock after
//! reading the entries published since the plan: a pack holding a blob one
//! of them needs, which the new pack does not hold, is kept for the next gc.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::inventory::{age_of, Inventory};
use crate::depot::blobs::{check_stored, BlobHealth};
use crate::depot::{layout, sync_dir, Depot, DepotError};
use crate::digest::Digest;
use crate::report::Reporter;

/// What gc did (or, in a dry run, would do) to packs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PacksReport {
    /// Packs none of whose blobs is referenced, deleted.
    pub deleted: usize,
    /// Packs rewritten into the new pack (less than half their bytes live,
    /// or, when evicting for size, any dead byte).
    pub repacked: usize,
    /// Loose blobs moved into a pack (`--repack`).
    pub loose_packed: usize,
    /// Blobs written into the new pack.
    pub blobs_written: usize,
    /// The new pack's id, if one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_pack: Option<String>,
    /// Pack files without an index (and indexes without a pack) swept.
    pub half_packs: usize,
    /// Packs that would be deleted or rewritten but are younger than the
    /// grace period (an unpack may be about to publish their entries).
    pub kept_young: usize,
    /// Packs kept because an entry published during this gc needs a blob
    /// of theirs that the new pack does not hold.
    pub kept_for_new_entries: usize,
    /// Blobs left out of the new pack because they do not match their name.
    pub damaged: usize,
    /// Bytes of the pack and loose files removed.
    pub bytes_removed: u64,
    /// Bytes of the new pack (in a dry run, its blobs' stored bytes).
    pub bytes_written: u64,
}

impl PacksReport {
    /// What the pack work frees, net of the new pack.
    pub fn bytes_freed(&self) -> u64 {
        self.bytes_removed.saturating_sub(self.bytes_written)
    }
}

/// The pack work of one gc, decided before anything is deleted.
#[derive(Default)]
pub(super) struct PackPlan {
    pub report: PacksReport,
    /// Packs to delete or rewrite (indexes into the inventory's packs),
    /// and whether the pack is wholly dead.
    going: Vec<(usize, bool)>,
    /// Blobs to write into the new pack.
    copy: Vec<Digest>,
    /// Loose blobs whose file goes once a pack holds them: those copied,
    /// and those already in a pack that stays.
    unloose: Vec<Digest>,
    /// Half packs to sweep.
    half: Vec<PathBuf>,
}

/// What [`write_new_pack`] wrote.
#[derive(Default)]
pub(super) struct Written {
    blobs: HashSet<Digest>,
}

/// Decides the pack work. `refs` counts the references left once the
/// planned entries are gone; `doomed` are the loose blobs gc deletes anyway;
/// `repack_loose` moves the other loose blobs into the new pack; `evicting`
/// (a size bound is being enforced) rewrites any old pack with a dead byte,
/// since the eviction counted its dead blobs as freed.
pub(super) fn plan_packs(
    inv: &Inventory,
    refs: &std::collections::HashMap<Digest, usize>,
    doomed: &HashSet<Digest>,
    grace: Duration,
    repack_loose: bool,
    evicting: bool,
) -> PackPlan {
    let live = |d: &Digest| refs.get(d).copied().unwrap_or(0) > 0;
    let mut plan = PackPlan::default();
    // Each live blob counts in one pack only, the one readers find it in,
    // so a blob packed twice leaves its second copy dead.
    let mut live_bytes = vec![0u64; inv.packs.len()];
    for (d, (i, len)) in &inv.packed {
        if live(d) {
            live_bytes[*i] += len;
        }
    }
    for (i, p) in inv.packs.iter().enumerate() {
        let dead = live_bytes[i] == 0;
        let sparse = live_bytes[i] * 2 < p.blob_bytes || (evicting && live_bytes[i] < p.blob_bytes);
        if !dead && !sparse {
            continue;
        }
        if p.age < grace {
            plan.report.kept_young += 1;
            continue;
        }
        plan.going.push((i, dead));
        plan.report.bytes_removed += p.bytes;
        if dead {
            plan.report.deleted += 1;
            continue;
        }
        plan.report.repacked += 1;
        for e in &p.entries {
            if live(&e.digest) && inv.packed.get(&e.digest).map(|o| o.0) == Some(i) {
                plan.copy.push(e.digest);
                plan.report.bytes_written += e.length;
            }
        }
    }
    if repack_loose {
        let going: HashSet<usize> = plan.going.iter().map(|g| g.0).collect();
        for (d, info) in &inv.blobs {
            if doomed.contains(d) {
                continue;
            }
            let in_kept_pack = inv.packed.get(d).is_some_and(|(i, _)| !going.contains(i));
            if !in_kept_pack && !plan.copy.contains(d) {
                plan.copy.push(*d);
                plan.report.bytes_written += info.bytes;
            }
            plan.unloose.push(*d);
            plan.report.loose_packed += 1;
            plan.report.bytes_removed += info.bytes;
        }
    }
    plan.report.blobs_written = plan.copy.len();
    for h in &inv.half_packs {
        if h.age >= grace {
            plan.half.push(h.path.clone());
            plan.report.half_packs += 1;
            plan.report.bytes_removed += h.bytes;
        }
    }
    plan
}

/// Writes the blobs the plan copies into one new pack and publishes it
/// (durable, then its index). Holds no lock: nothing is deleted here. A blob
/// that does not match its name is left out (and stays where it was).
pub(super) fn write_new_pack(
    depot: &Depot,
    plan: &mut PackPlan,
    reporter: &dyn Reporter,
) -> Result<Written, DepotError> {
    let mut written = Written::default();
    if plan.copy.is_empty() {
        plan.report.bytes_written = 0;
        return Ok(written);
    }
    let mut writer = depot.pack_writer()?;
    let total = plan.copy.len() as u64;
    for (i, d) in plan.copy.iter().enumerate() {
        reporter.progress("packing blobs", i as u64, total);
        match writer.add_from(depot, d) {
            Ok(true) => {
                written.blobs.insert(*d);
            }
            // Gone since the plan (another gc): nothing to carry.
            Ok(false) => {}
            Err(
                DepotError::Mismatch { .. }
                | DepotError::Damaged { .. }
                | DepotError::CorruptPacked { .. },
            ) => plan.report.damaged += 1,
            Err(e) => return Err(e),
        }
    }
    plan.report.blobs_written = written.blobs.len();
    let id = writer.finish()?;
    plan.report.bytes_written = match &id {
        Some(id) => [layout::pack_file(id), layout::pack_index(id)]
            .iter()
            .filter_map(|f| std::fs::metadata(depot.root().join(f)).ok())
            .map(|m| m.len())
            .sum(),
        None => 0,
    };
    plan.report.new_pack = id.map(|id| id.to_string());
    Ok(written)
}

/// The deletions, under the exclusive gc lock (the caller holds it):
/// `protected` are the blobs of entries published since the plan.
pub(super) fn delete_old(
    depot: &Depot,
    inv: &Inventory,
    plan: &mut PackPlan,
    written: &Written,
    protected: &HashSet<Digest>,
    grace: Duration,
) -> Result<(), DepotError> {
    let dir = depot.root().join(layout::PACKS_DIR);
    let mut packs = Vec::new();
    for &(i, dead) in &plan.going {
        let p = &inv.packs[i];
        let needed = p.entries.iter().any(|e| {
            protected.contains(&e.digest)
                && !written.blobs.contains(&e.digest)
                && !depot.blob_path(&e.digest).is_file()
        });
        if needed {
            plan.report.kept_for_new_entries += 1;
            if dead {
                plan.report.deleted -= 1;
            } else {
                plan.report.repacked -= 1;
            }
            plan.report.bytes_removed = plan.report.bytes_removed.saturating_sub(p.bytes);
            continue;
        }
        remove(&p.index)?;
        packs.push(p.pack.clone());
    }
    // No index may outlive its pack: the indexes' removal is durable first.
    sync_dir(&dir);
    for pack in &packs {
        remove(pack)?;
    }
    let going: HashSet<usize> = plan.going.iter().map(|g| g.0).collect();
    for d in &plan.unloose {
        // A copy in a kept pack counts only when it is sound: the loose
        // file may be the rebuild of a packed blob found damaged, and
        // readers never look past a damaged packed copy to another pack.
        let in_kept_pack = inv.packed.get(d).is_some_and(|(i, _)| !going.contains(i));
        let still_packed =
            written.blobs.contains(d) || (in_kept_pack && packed_copy_is_sound(depot, d));
        if still_packed {
            remove(&depot.blob_path(d))?;
        } else {
            if in_kept_pack {
                plan.report.damaged += 1;
            }
            // Left out of the new pack (damaged), or its packed copy is:
            // it stays loose.
            plan.report.loose_packed -= 1;
            let bytes = inv.blobs.get(d).map_or(0, |b| b.bytes);
            plan.report.bytes_removed = plan.report.bytes_removed.saturating_sub(bytes);
        }
    }
    for path in &plan.half {
        // Re-checked: a pack may have gained its index since it was listed.
        let whole = is_whole(depot, path);
        if !whole && path.symlink_metadata().is_ok_and(|m| age_of(&m) >= grace) {
            remove(path)?;
        }
    }
    sync_dir(&dir);
    depot.forget_packs();
    Ok(())
}

/// Whether blob `d`'s packed copy (the one readers find) is its content.
fn packed_copy_is_sound(depot: &Depot, d: &Digest) -> bool {
    match depot.open_packed(d) {
        Ok(Some(blob)) => matches!(check_stored(blob), BlobHealth::Sound { .. }),
        _ => false,
    }
}

/// Whether the pack or index at `path` has its other half now.
fn is_whole(depot: &Depot, path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if let Some(id) = layout::pack_file_id(name) {
        depot.root().join(layout::pack_index(&id)).exists()
    } else if let Some(id) = layout::pack_index_id(name) {
        depot.root().join(layout::pack_file(&id)).exists()
    } else {
        false
    }
}

fn remove(path: &Path) -> Result<(), DepotError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DepotError::io("remove", path)(e)),
    }
}
