//! What gc does to a pack whose index is damaged (fails its checksum, its
//! length, its order, or points outside its pack): readers ignore such a
//! pack, so its blobs are lost to every entry that needs them until gc
//! salvages it. A pack holds bare blobs without framing (a raw blob has no
//! mark where it ends), so the pack alone cannot be read back; the damaged
//! index is the only map of it, and salvage uses whatever entries it still
//! yields ([`lenient_entries`]), trusting none: each blob is hashed while
//! it is copied into one new pack ([`crate::depot::packs::PackWriter::add`]
//! refuses one that is not its name, its size or its form). Blobs the depot
//! holds elsewhere (loose, or in a sound pack) are not copied. The damaged
//! index and pack are kept in `quarantine/` (hard links) before the new pack
//! is published, then leave `objects-v1/packs/` (the index first): never
//! deleted, so what could not be salvaged stays there for a person to look
//! at. A blob that could not be salvaged is absent from the depot, and the
//! entries naming a blob stored nowhere go to `quarantine/` too: their
//! targets rebuild, and nothing wrong is restored.
//!
//! The packs need no lock: readers never load a damaged index, so moving
//! it takes nothing from them, and the new pack only adds blobs. The
//! entries are moved under the exclusive gc lock, like every entry gc takes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::depot::packs::{lenient_entries, BlobLocation, IndexFault, PackId, PackSet};
use crate::depot::{layout, sync_dir, Depot, DepotError};
use crate::report::Reporter;

/// What gc did (or, in a dry run, would do) to packs with a damaged index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SalvageReport {
    /// Damaged packs moved to `quarantine/` (index and pack).
    pub packs: usize,
    /// Blobs copied out of them into a new pack, each verified.
    pub blobs: usize,
    /// Blobs of theirs the depot already held elsewhere (loose or in a
    /// sound pack): nothing to copy.
    pub elsewhere: usize,
    /// Entries of their indexes whose bytes are not the blob they name (or
    /// that reach outside the pack): lost; the targets needing them rebuild.
    pub lost: usize,
    /// Entries naming a blob stored nowhere after the salvage, moved to
    /// `quarantine/`: restoring them could only fail, and `verify` would
    /// report each; the next build of their target stores a new one. Found
    /// by their blobs, not by the damaged index, which may no longer name
    /// what it lost.
    pub entries: usize,
    /// The pack the salvaged blobs went into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_pack: Option<String>,
}

impl SalvageReport {
    /// Whether there was no damaged pack (the report is left out of JSON).
    pub fn is_empty(&self) -> bool {
        self.packs == 0
    }
}

/// One damaged pack: its index and pack files.
struct Damaged {
    index: PathBuf,
    pack: PathBuf,
    why: IndexFault,
}

/// Salvages every pack whose index is damaged (see the module docs); in a
/// dry run, only verifies what it would copy. A pack whose index is missing
/// its pack, or cannot be read at all, is not touched: the first is a half
/// pack the sweep handles, the second may be a permission problem, not
/// damage. Returns the report and one warning per damaged pack.
pub(super) fn salvage(
    depot: &Depot,
    dry_run: bool,
    reporter: &dyn Reporter,
) -> Result<(SalvageReport, Vec<String>), DepotError> {
    let set = PackSet::load(depot, true)?;
    let damaged: Vec<Damaged> = set
        .faults
        .iter()
        .filter(|f| !matches!(f.fault, IndexFault::MissingPack | IndexFault::Unreadable(_)))
        .filter_map(|f| {
            let id = layout::pack_index_id(f.index.file_name()?.to_str()?)?;
            Some(Damaged {
                index: f.index.clone(),
                pack: depot.root().join(layout::pack_file(&id)),
                why: f.fault.clone(),
            })
        })
        .collect();
    let mut report = SalvageReport::default();
    if damaged.is_empty() {
        return Ok((report, Vec::new()));
    }
    let mut writer = if dry_run {
        None
    } else {
        Some(depot.pack_writer()?)
    };
    let mut notes = Vec::new();
    for (i, d) in damaged.iter().enumerate() {
        reporter.progress("salvaging packs", i as u64, damaged.len() as u64);
        let before = (report.blobs, report.lost);
        copy_sound_blobs(depot, d, writer.as_mut(), &mut report)?;
        let (salvaged, lost) = (report.blobs - before.0, report.lost - before.1);
        let (would, moved) = if dry_run {
            ("would be ", "would be moved")
        } else {
            ("", "moved")
        };
        notes.push(format!(
            "the index of {} is damaged: {}; {salvaged} blob{} {would}salvaged into a new pack, {lost} lost (their targets rebuild); the pack and its index {moved} to quarantine/",
            rel(depot, &d.pack),
            d.why,
            if salvaged == 1 { "" } else { "s" },
        ));
    }
    if let Some(writer) = writer {
        // Kept first (a hard link, else a copy), so nothing is lost if the
        // new pack's publish replaces the pair: a pack whose damage left
        // its entries intact gets the same id back.
        for d in &damaged {
            depot.keep_in_quarantine(&d.index)?;
            depot.keep_in_quarantine(&d.pack)?;
        }
        let id = writer.finish()?;
        // Every salvaged blob is durable in its new pack: the pair goes,
        // the index first, so no index ever names a pack that is gone.
        let replaced = |path: &Path| {
            id.is_some_and(|id| {
                [layout::pack_file(&id), layout::pack_index(&id)]
                    .iter()
                    .any(|f| depot.root().join(f) == path)
            })
        };
        let dir = depot.root().join(layout::PACKS_DIR);
        for files in [
            damaged.iter().map(|d| &d.index).collect::<Vec<_>>(),
            damaged.iter().map(|d| &d.pack).collect(),
        ] {
            for path in files.into_iter().filter(|p| !replaced(p)) {
                remove(path)?;
            }
            sync_dir(&dir);
        }
        depot.forget_packs();
        report.new_pack = id.map(|id: PackId| id.to_string());
        report.entries = quarantine_entries_missing_blobs(depot)?;
    }
    report.packs = damaged.len();
    Ok((report, notes))
}

/// Copies the blobs of damaged pack `d` that the depot holds nowhere else
/// into `writer` (verified; `None` in a dry run: only verified).
fn copy_sound_blobs(
    depot: &Depot,
    d: &Damaged,
    mut writer: Option<&mut crate::depot::packs::PackWriter>,
    report: &mut SalvageReport,
) -> Result<(), DepotError> {
    let index = std::fs::read(&d.index).map_err(DepotError::io("read", &d.index))?;
    let pack_len = std::fs::metadata(&d.pack)
        .map_err(DepotError::io("read", &d.pack))?
        .len();
    let entries = lenient_entries(&index);
    // Entries whose bytes cannot even be read as one are lost, unnamed.
    let whole = index.len().saturating_sub(24) / 64;
    report.lost += whole.saturating_sub(entries.len());
    for e in entries {
        if depot.blob_path(&e.digest).is_file() || depot.has_packed_blob(&e.digest) {
            report.elsewhere += 1;
            continue;
        }
        if !e.is_inside(pack_len) {
            report.lost += 1;
            continue;
        }
        let at = BlobLocation::Packed {
            pack: d.pack.clone(),
            offset: e.offset,
            length: e.length,
        };
        let mut stored = at.open().map_err(DepotError::io("read", &d.pack))?;
        let raw = e.form == crate::depot::packs::StoredForm::Raw;
        let sound = match writer.as_deref_mut() {
            Some(w) => match w.add(&e.digest, &mut stored, raw, e.size) {
                Ok(()) => true,
                Err(DepotError::Mismatch { .. } | DepotError::Damaged { .. }) => false,
                Err(e) => return Err(e),
            },
            None => crate::depot::blobs::stream_matches(&mut stored, &e.digest, e.size),
        };
        if sound {
            report.blobs += 1;
        } else {
            report.lost += 1;
        }
    }
    Ok(())
}

/// Moves every entry naming a blob the depot stores nowhere to
/// `quarantine/`, under the exclusive gc lock: an entry published while it
/// is held has every blob it names (`Depot::write_entry` checks), so only
/// the damage just salvaged (or a blob deleted by hand) leaves such an
/// entry. Returns how many.
fn quarantine_entries_missing_blobs(depot: &Depot) -> Result<usize, DepotError> {
    let _exclusive = depot.gc_lock(true);
    let mut moved = 0;
    for key in depot.list_entries()? {
        // An unreadable entry is `verify`'s and the next lookup's to report.
        let Ok(Some(entry)) = depot.read_entry(&key) else {
            continue;
        };
        if entry.blobs().iter().any(|d| !depot.has_blob(d)) {
            depot.quarantine_entry(&key);
            moved += 1;
        }
    }
    Ok(moved)
}

/// Removes `path`; gone already is fine (another gc salvaged it).
fn remove(path: &Path) -> Result<(), DepotError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DepotError::io("remove", path)(e)),
    }
}

fn rel(depot: &Depot, path: &Path) -> String {
    path.strip_prefix(depot.root())
        .unwrap_or(path)
        .display()
        .to_string()
}
