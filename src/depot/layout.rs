//! The depot layout: the one place that spells the names of a depot's files
//! and directories, relative to its root. Names only, no I/O: [`super::Depot`]
//! joins them to its root; `pack`/`unpack` use them as archive member names
//! (which are pinned, so a name here changes only with a format version);
//! `verify` uses them to judge what it finds.
//!
//! ```text
//! DEPOT.toml  CACHEDIR.TAG
//! objects-v1/ab/<blake3-hex>          blobs (loose)
//! objects-v1/packs/pack-<id>.pack     blobs (packed), and their index:
//! objects-v1/packs/pack-<id>.idx
//! entries-v2/ab/<key-hex>.toml        entries
//! variants-v1/ab/<key-hex>.toml       path sets seen per base key (depfiles)
//! projects-v2/<project>/<target>.toml project records (and stat memos)
//! usage/log-v2-<unique>.jsonl  usage/merged-v2.jsonl  usage/compact.lock
//! locks/<key-hex>.lock  locks/gc
//! tmp/  quarantine/
//! entries-v1/  projects-v1/  usage/*-v1*   format 1, never read
//! ```

use crate::digest::{Digest, Key};

/// The depot's settings file, sealed.
pub const DEPOT_TOML: &str = "DEPOT.toml";
/// The cache directory tag (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG_FILE: &str = "CACHEDIR.TAG";
/// Blobs, sharded by the first two hex digits of their digest.
pub const OBJECTS_DIR: &str = "objects-v1";
/// Packs and their indexes, inside [`OBJECTS_DIR`] (never a shard name).
pub const PACKS_DIR: &str = "objects-v1/packs";
/// The name of [`PACKS_DIR`] inside [`OBJECTS_DIR`].
pub const PACKS_SUBDIR: &str = "packs";
/// How a pack or index file name starts, before its id.
pub const PACK_PREFIX: &str = "pack-";
/// The suffix of a pack file.
pub const PACK_SUFFIX: &str = ".pack";
/// The suffix of a pack's index.
pub const PACK_INDEX_SUFFIX: &str = ".idx";
/// Entries, sharded like blobs, each `<key-hex>.toml`.
pub const ENTRIES_DIR: &str = "entries-v2";
/// The suffix of an entry file.
pub const ENTRY_SUFFIX: &str = ".toml";
/// Variants records of targets with a depfile, sharded like entries, each
/// `<base-key-hex>.toml`; created when first written.
pub const VARIANTS_DIR: &str = "variants-v1";
/// Archives only (never a depot directory): an entry's signature, by key
/// (see [`crate::signing`]).
pub const SIGNATURES_DIR: &str = "signatures-v1";
/// Suffix of an archive's signature members.
pub const SIGNATURE_SUFFIX: &str = ".mac";
/// The suffix of a variants record.
pub const VARIANTS_SUFFIX: &str = ".toml";
/// Project records: `<project>/<target>.toml`.
pub const PROJECTS_DIR: &str = "projects-v2";
/// Usage logs.
pub const USAGE_DIR: &str = "usage";
/// How every per-process usage log's name starts, then a unique part.
pub const USAGE_LOG_PREFIX: &str = "log-v2-";
/// The suffix of every usage file.
pub const USAGE_SUFFIX: &str = ".jsonl";
/// What gc folded from the logs.
pub const USAGE_MERGED: &str = "merged-v2.jsonl";
/// Held while the logs are folded.
pub const USAGE_LOCK: &str = "compact.lock";
/// How a usage log's name starts, before its format number.
pub const USAGE_LOG_VERSIONED: &str = "log-v";
/// How the merged file's name starts, before its format number.
pub const USAGE_MERGED_VERSIONED: &str = "merged-v";
/// Usage logs of format 1 (lines without a checksum, never read).
pub const USAGE_LEGACY_LOG_PREFIX: &str = "log-v1-";
/// The merged file of format 1.
pub const USAGE_LEGACY_MERGED: &str = "merged-v1.jsonl";
/// Per-key build locks and the gc lock.
pub const LOCKS_DIR: &str = "locks";
/// The gc lock, in [`LOCKS_DIR`].
pub const GC_LOCK: &str = "gc";
/// The suffix of a per-key lock in [`LOCKS_DIR`].
pub const LOCK_SUFFIX: &str = ".lock";
/// Staging files, renamed into place when complete.
pub const TMP_DIR: &str = "tmp";
/// Damaged blobs and entries, moved aside.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The entries of format 1, whose records carry no checksum.
pub const LEGACY_ENTRIES_DIR: &str = "entries-v1";
/// The project records of format 1.
pub const LEGACY_PROJECTS_DIR: &str = "projects-v1";
/// Directories of format 1, whose records carry no checksum: never read,
/// removed by `gc` and `clear --all`.
pub const LEGACY_DIRS: [&str; 2] = [LEGACY_ENTRIES_DIR, LEGACY_PROJECTS_DIR];
/// The directories every depot has (created when missing).
pub const DIRS: [&str; 6] = [
    OBJECTS_DIR,
    ENTRIES_DIR,
    PROJECTS_DIR,
    USAGE_DIR,
    LOCKS_DIR,
    TMP_DIR,
];
/// Directories of one machine's state, which an archive never carries.
pub const LOCAL_DIRS: [&str; 6] = [
    PROJECTS_DIR,
    LEGACY_PROJECTS_DIR,
    USAGE_DIR,
    LOCKS_DIR,
    TMP_DIR,
    QUARANTINE_DIR,
];
/// How every versioned directory name starts; a name with one of these
/// prefixes that is not a directory above is another relocache's layout.
pub const VERSIONED_PREFIXES: [&str; 4] = ["objects-v", "entries-v", "projects-v", "variants-v"];

/// The shard of a digest's hex spelling: its first two digits.
pub fn shard(hex: &str) -> &str {
    &hex[..2]
}

/// Whether `s` is a shard directory name: two lowercase hex digits.
pub fn is_shard(s: &str) -> bool {
    s.len() == 2
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The digest the file `<shard>/<hex><suffix>` of a sharded directory
/// names, when its name is a digest in its own shard.
pub fn sharded_digest(shard: &str, name: &str, suffix: &str) -> Option<Digest> {
    let hex = name.strip_suffix(suffix)?;
    let d: Digest = hex.parse().ok()?;
    (shard.len() == 2 && hex.starts_with(shard)).then_some(d)
}

/// `objects-v1/ab/<hex>`: where blob `d` lives, relative to the root.
pub fn blob(d: &Digest) -> String {
    let hex = d.to_hex();
    format!("{OBJECTS_DIR}/{}/{hex}", shard(&hex))
}

/// `objects-v1/packs/pack-<id>.pack`: the pack `id`.
pub fn pack_file(id: &super::packs::PackId) -> String {
    format!("{PACKS_DIR}/{PACK_PREFIX}{id}{PACK_SUFFIX}")
}

/// `objects-v1/packs/pack-<id>.idx`: the index of pack `id`.
pub fn pack_index(id: &super::packs::PackId) -> String {
    format!("{PACKS_DIR}/{PACK_PREFIX}{id}{PACK_INDEX_SUFFIX}")
}

/// The pack id a file name in [`PACKS_DIR`] names when it is an index
/// (`pack-<64 hex>.idx`).
pub fn pack_index_id(name: &str) -> Option<super::packs::PackId> {
    pack_name_id(name, PACK_INDEX_SUFFIX)
}

/// The pack id a file name in [`PACKS_DIR`] names when it is a pack
/// (`pack-<64 hex>.pack`).
pub fn pack_file_id(name: &str) -> Option<super::packs::PackId> {
    pack_name_id(name, PACK_SUFFIX)
}

fn pack_name_id(name: &str, suffix: &str) -> Option<super::packs::PackId> {
    let hex = name.strip_prefix(PACK_PREFIX)?.strip_suffix(suffix)?;
    let lower = hex.bytes().all(|b| !b.is_ascii_uppercase());
    hex.parse().ok().filter(|_| lower)
}

/// `entries-v2/ab/<hex>.toml`: where the entry of `key` lives.
pub fn entry(key: &Key) -> String {
    let hex = key.to_hex();
    format!("{ENTRIES_DIR}/{}/{hex}{ENTRY_SUFFIX}", shard(&hex))
}

/// `signatures-v1/ab/<hex>.mac`: the archive member holding the signature
/// of the entry of `key`.
pub fn signature(key: &Key) -> String {
    let hex = key.to_hex();
    format!("{SIGNATURES_DIR}/{}/{hex}{SIGNATURE_SUFFIX}", shard(&hex))
}

/// `variants-v1/ab/<hex>.toml`: the path sets seen under base key `key`.
pub fn variants(key: &Key) -> String {
    let hex = key.to_hex();
    format!("{VARIANTS_DIR}/{}/{hex}{VARIANTS_SUFFIX}", shard(&hex))
}

/// `projects-v2/<project>/<target>.toml`: the record of a target. A
/// template instance's name (`obj:src/a.c`) is written with every byte
/// outside `[A-Za-z0-9._-]` as `%XX` (`obj%3Asrc%2Fa.c`), so a name is one
/// file name and two names never share one; plain target names are unchanged.
/// A name too long for a file name keeps its start and gains a digest of
/// the whole.
pub fn record(project: &str, target: &str) -> String {
    let mut name = String::with_capacity(target.len());
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    if name.len() > 200 {
        let digest = Digest::of(target.as_bytes()).to_hex();
        name = format!("{}%~{}", &name[..150], &digest[..32]);
    }
    format!("{PROJECTS_DIR}/{project}/{name}.toml")
}

/// `projects-v2/<project>/stat-v1-<tag>.bin`: the stat memo of one
/// checkout of a project (`tag` names its root).
pub fn stat_memo(project: &str, tag: &str) -> String {
    format!("{PROJECTS_DIR}/{project}/stat-v1-{tag}.bin")
}

/// `locks/<hex>.lock`: the build lock of `key`.
pub fn key_lock(key: &Key) -> String {
    format!("{LOCKS_DIR}/{}{LOCK_SUFFIX}", key.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_pinned_layout() {
        let d = Digest::of(b"x");
        let hex = d.to_hex();
        assert_eq!(blob(&d), format!("objects-v1/{}/{hex}", &hex[..2]));
        assert_eq!(
            entry(&Key(d)),
            format!("entries-v2/{}/{hex}.toml", &hex[..2])
        );
        assert_eq!(record("p", "t"), "projects-v2/p/t.toml");
        assert_eq!(
            record("p", "obj:src/a b.c"),
            "projects-v2/p/obj%3Asrc%2Fa%20b.c.toml"
        );
        assert_ne!(record("p", "a:b"), record("p", "a%3Ab"));
        let long = format!("obj:{}", "d/".repeat(300));
        let r = record("p", &long);
        assert!(
            r.len() < 240 && !r["projects-v2/p/".len()..].contains('/'),
            "{r}"
        );
        assert_ne!(r, record("p", &format!("{long}x")));
        assert_eq!(
            variants(&Key(d)),
            format!("variants-v1/{}/{hex}.toml", &hex[..2])
        );
        assert_eq!(key_lock(&Key(d)), format!("locks/{hex}.lock"));
        assert!(is_shard("0a") && !is_shard("0A") && !is_shard("0ab"));
        let id = super::super::packs::PackId(d.0);
        assert_eq!(pack_file(&id), format!("objects-v1/packs/pack-{hex}.pack"));
        assert_eq!(pack_index(&id), format!("objects-v1/packs/pack-{hex}.idx"));
        assert_eq!(pack_index_id(&format!("pack-{hex}.idx")), Some(id));
        assert_eq!(pack_file_id(&format!("pack-{hex}.pack")), Some(id));
        assert_eq!(pack_index_id(&format!("pack-{hex}.pack")), None);
        assert!(!is_shard(PACKS_SUBDIR));
    }
}
