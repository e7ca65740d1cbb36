//! What gc and clear see of a depot before deciding anything: every entry
//! with its size, blobs and last use ([`Item`]), every loose blob with its
//! size and age ([`BlobInfo`]), every pack with its blobs' stored sizes from
//! its index ([`PackInfo`]), and the depot's size on disk. Only reads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::depot::entries::Entry;
use crate::depot::packs::{IndexEntry, PackSet};
use crate::depot::usage::{self, Usage};
use crate::depot::{layout, Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::report::Reporter;

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

/// One usable pack (its index passed its checks).
pub(crate) struct PackInfo {
    /// The pack file and its index.
    pub pack: PathBuf,
    pub index: PathBuf,
    /// Bytes of both files.
    pub bytes: u64,
    /// Stored bytes of its blobs, as its index says.
    pub blob_bytes: u64,
    /// Its index's entries, sorted by digest.
    pub entries: Vec<IndexEntry>,
    /// The age of its index: the time since it was published, or since a
    /// build last reused one of its blobs (which touches the index, as it
    /// touches a loose blob).
    pub age: Duration,
}

/// A file of `objects-v1/packs/` that is half of a pack: a pack whose
/// index is absent (an unpack or a gc still writing it, or one that
/// crashed), or an index whose pack is absent.
pub(crate) struct HalfPack {
    pub path: PathBuf,
    pub bytes: u64,
    pub age: Duration,
}

/// Everything in a depot that gc, clear and stats decide on.
pub(crate) struct Inventory {
    pub items: Vec<Item>,
    /// Loose blobs.
    pub blobs: BTreeMap<Digest, BlobInfo>,
    /// Usable packs, in the order readers search them.
    pub packs: Vec<PackInfo>,
    /// Each packed blob's first pack (the one a reader finds) and its
    /// stored length there.
    pub packed: HashMap<Digest, (usize, u64)>,
    /// Pack files without an index, and indexes without a pack.
    pub half_packs: Vec<HalfPack>,
    /// Bytes of every file in the depot.
    pub size: u64,
    pub usage: Usage,
    pub warnings: Vec<String>,
}

impl Inventory {
    /// How many entries reference each blob.
    pub(super) fn refs(&self) -> HashMap<Digest, usize> {
        let mut refs = HashMap::new();
        for i in &self.items {
            for b in &i.blobs {
                *refs.entry(*b).or_insert(0) += 1;
            }
        }
        refs
    }
}

pub(super) fn age_of(md: &std::fs::Metadata) -> Duration {
    md.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO)
}

pub(super) fn ms_of_rfc3339(s: &str) -> u64 {
    humantime::parse_rfc3339(s)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn rfc3339_of_ms(ms: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Every digest-looking word of an unreadable entry's text.
pub(super) fn conservative_blobs(text: &str) -> Vec<Digest> {
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
pub(super) fn read_item(
    depot: &Depot,
    key: Key,
    usage: &Usage,
    warnings: &mut Vec<String>,
) -> Item {
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
    let (packs, packed, half_packs) = pack_inventory(depot)?;
    Ok(Inventory {
        items,
        blobs,
        packs,
        packed,
        half_packs,
        size: tree_size(depot.root()),
        usage,
        warnings,
    })
}

type Packs = (Vec<PackInfo>, HashMap<Digest, (usize, u64)>, Vec<HalfPack>);

/// The depot's packs, read afresh (not this process's cached set: gc
/// decides on what is on disk now), and the half packs beside them.
fn pack_inventory(depot: &Depot) -> Result<Packs, DepotError> {
    let set = PackSet::load(depot, false)?;
    let mut packs = Vec::with_capacity(set.packs.len());
    let mut packed = HashMap::new();
    for p in set.packs {
        let index = depot.root().join(layout::pack_index(&p.id));
        let Ok(imd) = std::fs::symlink_metadata(&index) else {
            continue;
        };
        for e in &p.entries {
            packed.entry(e.digest).or_insert((packs.len(), e.length));
        }
        packs.push(PackInfo {
            bytes: p.len + imd.len(),
            blob_bytes: p.entries.iter().map(|e| e.length).sum(),
            pack: p.path,
            index,
            age: age_of(&imd),
            entries: p.entries,
        });
    }
    let mut half_packs = Vec::new();
    let dir = depot.root().join(layout::PACKS_DIR);
    for e in crate::depot::list_dir(&dir)? {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let half = if let Some(id) = layout::pack_file_id(name) {
            !depot.root().join(layout::pack_index(&id)).exists()
        } else if let Some(id) = layout::pack_index_id(name) {
            !depot.root().join(layout::pack_file(&id)).exists()
        } else {
            false
        };
        if !half {
            continue;
        }
        if let Ok(md) = e.path().symlink_metadata() {
            half_packs.push(HalfPack {
                path: e.path(),
                bytes: md.len(),
                age: age_of(&md),
            });
        }
    }
    half_packs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((packs, packed, half_packs))
}
