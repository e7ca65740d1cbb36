//! Variants records: `variants-v1/ab/<base-key>.toml` lists the path sets
//! (the sorted files a depfile named) seen for one base key of a target with
//! a `depfile`, newest first, at most [`MAX_SETS`]. A lookup hashes each
//! set's files as they are now to get the key of the entry to restore
//! ([`crate::key::with_discovered`]). Small and sealed; rewritten only when
//! a new path set appears, under the base key's build lock. A damaged record
//! reads as none (a miss, never a wrong artifact: every entry it leads to is
//! still checked under its own key).

use serde::{Deserialize, Serialize};

use super::{checksum, write, Depot, DepotError};
use crate::digest::Key;
use crate::discovered::DiscoveredPath;

/// Version of the variants record format.
pub const VARIANTS_SCHEMA: u32 = 1;

/// How many path sets a record keeps: a target whose includes keep changing
/// (a header added, then removed) needs a few; the oldest fall off.
pub const MAX_SETS: usize = 8;

/// The path sets known for one base key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variants {
    /// [`VARIANTS_SCHEMA`] when written.
    pub schema: u32,
    /// The base key (also the file name).
    pub key: Key,
    /// Path sets, newest first; each sorted and unique.
    #[serde(default)]
    pub sets: Vec<PathSet>,
}

/// One path set: the files one execution's depfile named, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSet {
    /// Sorted, unique.
    pub paths: Vec<DiscoveredPath>,
}

impl Variants {
    /// An empty record for `key`.
    pub fn new(key: Key) -> Variants {
        Variants {
            schema: VARIANTS_SCHEMA,
            key,
            sets: vec![],
        }
    }

    /// Puts `paths` first; false when it was already known (nothing to
    /// write). Keeps at most [`MAX_SETS`].
    pub fn add(&mut self, paths: Vec<DiscoveredPath>) -> bool {
        if self.sets.iter().any(|s| s.paths == paths) {
            return false;
        }
        self.sets.insert(0, PathSet { paths });
        self.sets.truncate(MAX_SETS);
        true
    }

    /// Adds the sets of `other` this record lacks, after its own (a remote
    /// record merged into the local one); false when nothing was added.
    pub fn merge(&mut self, other: &Variants) -> bool {
        let before = self.sets.len();
        for s in &other.sets {
            if self.sets.len() < MAX_SETS && !self.sets.contains(s) {
                self.sets.push(s.clone());
            }
        }
        self.sets.len() != before
    }
}

/// Why a variants record cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantsError {
    /// The checksum line is missing or does not match.
    #[error("the variants record fails its checksum: {0}")]
    Checksum(checksum::Unsealed),
    /// Not a variants record's TOML, or a newer one.
    #[error("{0}")]
    Syntax(String),
    /// A path set not sorted and unique, or too many sets.
    #[error("a path set is not sorted and unique, or there are more than {MAX_SETS}")]
    Shape,
    /// It names another key than its file name.
    #[error("it records key {0} under another name")]
    OtherKey(Key),
}

/// A record's text as stored: TOML sealed with its checksum line.
pub fn render_variants(v: &Variants) -> String {
    checksum::seal(&toml::to_string(v).expect("variants serialize"))
}

/// Parses a record's text: sealed, this schema, sets sorted and unique.
pub fn parse_variants(text: &str) -> Result<Variants, VariantsError> {
    let body = checksum::open(text).map_err(VariantsError::Checksum)?;
    let v: Variants =
        toml::from_str(body).map_err(|e| VariantsError::Syntax(e.message().to_owned()))?;
    if v.schema != VARIANTS_SCHEMA {
        return Err(VariantsError::Syntax(format!(
            "variants schema {} is not the one this relocache reads ({VARIANTS_SCHEMA})",
            v.schema
        )));
    }
    let sorted = v
        .sets
        .iter()
        .all(|s| s.paths.windows(2).all(|w| w[0] < w[1]));
    if !sorted || v.sets.len() > MAX_SETS {
        return Err(VariantsError::Shape);
    }
    Ok(v)
}

impl Depot {
    /// Where the variants record of base key `key` lives.
    pub fn variants_path(&self, key: &Key) -> std::path::PathBuf {
        self.root.join(super::layout::variants(key))
    }

    /// The variants record of base key `key`, if any; a damaged one is
    /// [`DepotError::Damaged`], which lookups treat as none.
    pub fn read_variants(&self, key: &Key) -> Result<Option<Variants>, DepotError> {
        let path = self.variants_path(key);
        let text = match super::read_regular_text(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DepotError::io("read variants record", &path)(e)),
        };
        let damaged = |message: String| DepotError::Damaged {
            path: path.clone(),
            message,
        };
        let v = parse_variants(&text).map_err(|e| damaged(e.to_string()))?;
        if v.key != *key {
            return Err(damaged(VariantsError::OtherKey(v.key).to_string()));
        }
        Ok(Some(v))
    }

    /// Adds `paths` to the record of `key` (read, modify, write: callers
    /// hold the key's build lock); a damaged record is replaced. Writes
    /// only when the set is new.
    pub fn add_variant(&self, key: &Key, paths: Vec<DiscoveredPath>) -> Result<(), DepotError> {
        let mut v = self
            .read_variants(key)
            .ok()
            .flatten()
            .unwrap_or_else(|| Variants::new(*key));
        if v.add(paths) {
            self.write_variants(&v)?;
        }
        Ok(())
    }

    /// Writes `v` as the record of its key.
    pub fn write_variants(&self, v: &Variants) -> Result<(), DepotError> {
        write::write_bytes(
            self,
            &self.variants_path(&v.key),
            render_variants(v).as_bytes(),
        )
    }

    /// Removes the record of `key`; false when there was none.
    pub fn remove_variants(&self, key: &Key) -> Result<bool, DepotError> {
        let path = self.variants_path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(DepotError::io("remove variants record", &path)(e)),
        }
    }

    /// Every base key with a variants record (names that are not a key in
    /// their own shard are left to `verify`).
    pub fn list_variants(&self) -> Result<Vec<Key>, DepotError> {
        let mut keys =
            self.list_sharded(super::layout::VARIANTS_DIR, super::layout::VARIANTS_SUFFIX)?;
        keys.sort();
        Ok(keys.into_iter().map(Key).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn path(s: &str) -> DiscoveredPath {
        DiscoveredPath::parse(s).unwrap()
    }

    /// Golden file: the variants record on disk. Changing it needs a new
    /// `variants-v*` directory.
    #[test]
    fn variants_format_is_pinned() {
        let mut v = Variants::new(Key(Digest::of(b"base")));
        assert!(v.add(vec![path("/usr/include/stdio.h"), path("src/x.h")]));
        assert!(v.add(vec![path("src/x.h"), path("src/y.h")]));
        assert!(!v.add(vec![path("/usr/include/stdio.h"), path("src/x.h")]));
        let text = render_variants(&v);
        let golden = include_str!("../../tests/golden/variants-v1.toml");
        assert_eq!(text, golden);
        assert_eq!(parse_variants(golden).unwrap(), v);
    }

    #[test]
    fn records_stay_small_and_refuse_damage() {
        let mut v = Variants::new(Key(Digest::of(b"base")));
        for i in 0..20 {
            v.add(vec![path(&format!("h{i}.h"))]);
        }
        assert_eq!(v.sets.len(), MAX_SETS);
        assert_eq!(v.sets[0].paths, vec![path("h19.h")]);
        let text = render_variants(&v);
        assert!(matches!(
            parse_variants(&text.replace("h19.h", "h99.h")),
            Err(VariantsError::Checksum(_))
        ));
        let body = toml::to_string(&v).unwrap();
        let unsorted = checksum::seal(&body.replace("\"h19.h\"", "\"b.h\", \"a.h\""));
        assert_eq!(parse_variants(&unsorted), Err(VariantsError::Shape));
        let absolute_escape = checksum::seal(&body.replace("h19.h", "/usr/../etc/passwd"));
        assert!(matches!(
            parse_variants(&absolute_escape),
            Err(VariantsError::Syntax(_))
        ));
    }
}
