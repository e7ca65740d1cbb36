//! `pack` and `unpack`: depot entries moved between machines and CI caches as
//! one standard tar stream compressed with zstd. This module owns the archive
//! format and every check an archive must pass before it reaches a depot; it
//! writes a depot only through [`Depot`] and [`crate::depot::write`], and never
//! writes anywhere else (the one exception, [`pack_to_path`], writes the
//! archive the user named).
//!
//! # The archive
//!
//! A POSIX ustar stream, zstd-compressed as a sequence of frames that any
//! zstd decoder reads as one stream (`tar --zstd -xf` works): compressed
//! frames (multithreaded, with a content checksum) around a run of *stored*
//! frames — raw blocks — carrying the blobs that are already zstd-compressed,
//! so nothing is compressed twice. Members, in this order:
//!
//! ```text
//! CACHEDIR.TAG                      so that `tar -x` gives a directory backup tools skip
//! DEPOT.toml                        `format = 2`: the layout version, never local settings; sealed
//! objects-v1/  objects-v1/ab/…      directories (0755)
//! objects-v1/ab/<blake3-hex>        blobs stored zstd-compressed, by digest, in stored frames
//! objects-v1/ab/<blake3-hex>        blobs stored raw, by digest, in a compressed frame (0644)
//! entries-v2/  entries-v2/ab/
//! entries-v2/ab/<key-hex>.toml      entries, by key (0644)
//! ```
//!
//! Blobs come before entries, the depot's own publish order, so even a plain
//! `tar -x` that is interrupted never leaves an entry without its blobs.
//! Every header has mtime 0, uid and gid 0, empty owner names and a fixed
//! mode, members are sorted, and zstd's multithreaded streaming output does
//! not depend on the number of threads: the same entries give the same bytes
//! on any machine. Project records (`projects-v2/`), `usage/`, `locks/`,
//! `tmp/` and `quarantine/` are local state and never packed.
//!
//! # What `unpack` accepts
//!
//! The stream is read once, never held in memory. Each member must be a
//! regular file or directory whose path is exactly one of the forms above;
//! `..`, absolute paths, links, devices, fifos and anything else are refused.
//! Each blob is streamed into a staging file while the blake3 of its
//! *uncompressed* content is computed, and renamed into place only when that
//! matches its name (a blob the depot already has is verified and skipped).
//! Entries are parsed, checked against their file name and held; they are
//! published only after the whole archive was read, its tar end marker seen,
//! and every blob each entry names is in the archive or the depot. A failed
//! unpack publishes no entry; blobs it already verified stay (they are
//! content-addressed and harmless, and `gc` reclaims them).
//!
//! Limits: the decompressed tar stream may not exceed `max_size`; once it is
//! past [`BOMB_MIN`], it may not be more than `max_ratio` times the compressed
//! bytes read so far (a relocache archive holds already-compressed blobs, so
//! its ratio stays near 1); each blob's uncompressed content may not exceed
//! `max_size` either, which bounds the work of hashing a compressed blob.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::depot::blobs::{self, ZSTD_MAGIC};
use crate::depot::entries::{parse_entry, render_entry, Entry};
use crate::depot::{
    checksum, parse_config, write, Depot, DepotConfig, DepotError, CACHEDIR_TAG, DEPOT_FORMAT,
};
use crate::digest::{Digest, Key};
use crate::report::Reporter;
use crate::units::format_size;

/// Temporary archives beside the destination are named for this purpose
/// ([`crate::tempname`]).
const PACK_TMP: &str = "pack";

/// Removes the temporary archives that packs killed mid-way (kill -9, a
/// lost CI runner) left in `dir`: unlocked (a running pack holds a lock on
/// its own) and untouched for a minute (a pack that just created its file
/// may not have locked it yet).
fn sweep_dead_packs(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if crate::tempname::temp_purpose(&name) != Some(PACK_TMP) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= 60);
        let Ok(f) = File::open(e.path()) else {
            continue;
        };
        if old && f.try_lock().is_ok() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Default bound on an archive's decompressed size: 64 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;
/// Default bound on decompressed / compressed bytes.
pub const DEFAULT_MAX_RATIO: u64 = 1000;
/// The ratio rule applies once this much was decompressed (16 MiB).
pub const BOMB_MIN: u64 = 16 << 20;
/// Default zstd level of the archive stream.
pub const DEFAULT_LEVEL: i32 = 1;
/// An entry file larger than this is refused (entries are small TOML files).
const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// `DEPOT.toml` and `CACHEDIR.TAG` larger than this are refused.
const MAX_SMALL_FILE: u64 = 64 << 10;
const BUF: usize = 64 * 1024;

/// Why a pack or unpack failed. Every variant of an unpack failure means
/// that no entry of the archive was published.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The depot failed.
    #[error("{0}")]
    Depot(#[source] DepotError),
    /// Reading or writing a file other than the depot failed.
    #[error("could not {action} `{}`: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("could not write the archive: {0}")]
    Write(#[source] io::Error),
    /// The stream is not a valid zstd-compressed tar archive.
    #[error("the archive is corrupt or truncated: {0}; nothing was published\n  help: make it again with `relocache pack`, or check the download or cache step that produced it")]
    Corrupt(#[source] io::Error),
    /// The tar stream ended without its end-of-archive marker.
    #[error("the archive is truncated (it ends without tar's end-of-archive marker); nothing was published\n  help: make it again with `relocache pack`, or check the download or cache step that produced it")]
    Truncated,
    /// A member that a depot archive never holds.
    #[error("archive member `{member}` {problem}; nothing was published\n  help: unpack only archives made by `relocache pack`; a depot archive holds regular files under objects-v1/ and entries-v2/ (plus DEPOT.toml and CACHEDIR.TAG)")]
    BadMember {
        /// The member's path as written in the archive.
        member: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A blob's content does not match its name.
    #[error("archive member `{member}`: its content hashes to {actual}, not to its name; nothing was published\n  help: the archive is corrupt or was tampered with; make it again with `relocache pack`")]
    BlobMismatch {
        /// The member.
        member: String,
        /// The digest of what it holds.
        actual: Digest,
    },
    /// An entry names a blob that is neither in the archive nor in the depot.
    #[error("entry {key} ({target}) needs blob {blob}, which is neither in the archive nor in the depot; nothing was published\n  help: pack the entry together with its blobs (`relocache pack` always does)")]
    MissingBlob {
        /// The entry.
        key: Key,
        /// `project/target` of the entry.
        target: String,
        /// The blob.
        blob: Digest,
    },
    /// The decompressed stream exceeds `max_size`.
    #[error("the archive decompresses to more than {} (--max-size); nothing was published\n  help: if you trust it, raise --max-size (e.g. --max-size 200G)", format_size(*.limit))]
    TooLarge {
        /// The bound, in bytes.
        limit: u64,
    },
    /// One blob's content exceeds `max_size`.
    #[error("archive member `{member}` holds more than {} of content (--max-size); nothing was published\n  help: if you trust the archive, raise --max-size", format_size(*.limit))]
    BlobTooLarge {
        /// The member.
        member: String,
        /// The bound, in bytes.
        limit: u64,
    },
    /// The blobs' contents add up to more than the archive's limits: blobs
    /// that are small zstd frames of huge content.
    #[error("the blobs in the archive decompress to more than {} in all (--max-size, and --max-ratio times the compressed bytes read): refusing a likely decompression bomb; nothing was published\n  help: if you trust it, raise --max-size or pass --max-ratio 0", format_size(*.cap))]
    ContentTooLarge {
        /// The bound the content crossed, in bytes.
        cap: u64,
    },
    /// The compression ratio signals a decompression bomb.
    #[error("the archive expands more than {ratio}x ({} from {} compressed): refusing a likely decompression bomb; nothing was published\n  help: if you trust it, pass --max-ratio 0 to turn this check off", format_size(*.decompressed), format_size(*.compressed))]
    Bomb {
        /// The bound.
        ratio: u64,
        /// Decompressed bytes so far.
        decompressed: u64,
        /// Compressed bytes so far.
        compressed: u64,
    },
    /// The archive was made by a relocache whose entries carry no checksum.
    #[error("the archive has depot format {found}, whose entries carry no checksum, so this relocache cannot trust them; nothing was published\n  help: make the archive again with this relocache (`relocache build`, then `relocache pack`)")]
    OlderFormat {
        /// Its format.
        found: u32,
    },
    /// The archive was made by a newer relocache.
    #[error("the archive has depot format {found}, newer than this relocache supports ({DEPOT_FORMAT}); nothing was published\n  help: upgrade relocache")]
    NewerFormat {
        /// Its format.
        found: u32,
    },
    /// `pack` of named targets could not include every entry they need.
    #[error("cannot pack every entry the targets need:{}\n  help: run `relocache build` for them (a corrupt blob was quarantined and is rebuilt then), then pack again", .0.iter().map(|s| format!("\n  {} {}: {}", s.target.as_deref().unwrap_or("?"), s.key.short(), s.reason)).collect::<String>())]
    Incomplete(Vec<Skipped>),
}

impl From<DepotError> for ArchiveError {
    fn from(e: DepotError) -> Self {
        ArchiveError::Depot(e)
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io {
        action,
        path,
        source,
    }
}

/// An entry named in a summary.
#[derive(Debug, Clone, Serialize)]
pub struct EntryRef {
    /// Its key.
    pub key: Key,
    /// The project that stored it.
    pub project: String,
    /// The target that stored it.
    pub target: String,
}

impl EntryRef {
    fn of(e: &Entry) -> EntryRef {
        EntryRef {
            key: e.key,
            project: e.project.clone(),
            target: e.target.clone(),
        }
    }
}

/// An entry `pack` left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Its key.
    pub key: Key,
    /// `project/target`, when the entry could be read.
    pub target: Option<String>,
    /// Why it was left out.
    pub reason: String,
}

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// zstd level of the stream (1–19).
    pub level: i32,
    /// Fail instead of leaving out an entry whose blobs are missing or corrupt.
    pub strict: bool,
    /// [`pack_to_path`]: fsync the archive (and its directory) before returning.
    pub fsync: bool,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            level: DEFAULT_LEVEL,
            strict: false,
            fsync: false,
        }
    }
}

/// What `pack` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PackSummary {
    /// Entries packed, by key.
    pub entries: Vec<EntryRef>,
    /// Number of blobs packed.
    pub blobs: u64,
    /// Their stored (possibly compressed) size.
    pub blob_bytes: u64,
    /// Size of the archive written.
    pub archive_bytes: u64,
    /// Entries left out.
    pub skipped: Vec<Skipped>,
}

/// Every entry of `depot`, sorted by key; unreadable ones are reported as
/// skipped.
pub fn depot_entries(depot: &Depot) -> Result<(Vec<Entry>, Vec<Skipped>), ArchiveError> {
    let keys = depot.list_entries()?;
    let read: Vec<_> = keys.par_iter().map(|k| depot.read_entry(k)).collect();
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (key, r) in keys.into_iter().zip(read) {
        match r {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => {} // removed meanwhile
            Err(e) => skipped.push(Skipped {
                key,
                target: None,
                reason: e.to_string(),
            }),
        }
    }
    Ok((entries, skipped))
}

/// Packs `entries` and every blob they reference into `out`. Blobs are taken
/// from the first depot of `stack` holding them and verified first: an entry
/// with a missing or corrupt blob is left out (and reported through
/// `reporter`), or fails the pack when `opts.strict`.
pub fn pack<W: Write + Send>(
    stack: &[Depot],
    entries: Vec<Entry>,
    out: W,
    opts: &PackOptions,
    reporter: &dyn Reporter,
) -> Result<PackSummary, ArchiveError> {
    let mut by_key: BTreeMap<Key, Entry> = BTreeMap::new();
    for e in entries {
        by_key.entry(e.key).or_insert(e);
    }
    let wanted: BTreeSet<Digest> = by_key.values().flat_map(|e| e.blobs()).collect();
    let located = locate_blobs(stack, &wanted);
    let mut skipped = Vec::new();
    drop_entries(&mut by_key, &mut skipped, |d| {
        located[d].as_ref().err().cloned()
    });
    if opts.strict && !skipped.is_empty() {
        return Err(ArchiveError::Incomplete(skipped));
    }
    let blobs: BTreeMap<Digest, Located> = by_key
        .values()
        .flat_map(|e| e.blobs())
        .map(|d| {
            (
                d,
                located[&d].clone().expect("kept entries have their blobs"),
            )
        })
        .collect();

    let mut counter = CountingWriter { inner: out, n: 0 };
    let written = write_archive(&mut counter, stack, &mut by_key, &blobs, opts, reporter)?;
    counter.flush().map_err(ArchiveError::Write)?;
    skipped.extend(written.skipped);
    for s in &skipped {
        reporter.warning(&format!(
            "not packed: entry {} ({}): {}",
            s.key.short(),
            s.target.as_deref().unwrap_or("?"),
            s.reason
        ));
    }
    Ok(PackSummary {
        entries: by_key.values().map(EntryRef::of).collect(),
        blobs: written.blobs,
        blob_bytes: written.blob_bytes,
        archive_bytes: counter.n,
        skipped,
    })
}

/// Removes the entries naming a blob for which `problem` has something to say.
fn drop_entries(
    by_key: &mut BTreeMap<Key, Entry>,
    skipped: &mut Vec<Skipped>,
    problem: impl Fn(&Digest) -> Option<String>,
) {
    by_key.retain(|key, e| {
        let bad = e
            .blobs()
            .into_iter()
            .find_map(|d| problem(&d).map(|why| format!("blob {} {why}", d.short())));
        match bad {
            None => true,
            Some(reason) => {
                skipped.push(Skipped {
                    key: *key,
                    target: Some(format!("{}/{}", e.project, e.target)),
                    reason,
                });
                false
            }
        }
    });
}

/// [`pack`] into the file `dest`, atomically: a temporary file beside it,
/// then a rename. A failed pack leaves `dest` as it was. Like `tar` and
/// `zstd`, the file is not fsync'ed unless `opts.fsync`: an archive is a copy
/// (the depot stays the source), and one cut short by a power loss is refused
/// whole by [`unpack`], never half-used.
pub fn pack_to_path(
    stack: &[Depot],
    entries: Vec<Entry>,
    dest: &Path,
    opts: &PackOptions,
    reporter: &dyn Reporter,
) -> Result<PackSummary, ArchiveError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sweep_dead_packs(&dir);
    let tmp = tempfile::Builder::new()
        .prefix(&crate::tempname::temp_name(PACK_TMP))
        .rand_bytes(0)
        .tempfile_in(&dir)
        .map_err(io_err("create a temporary file in", &dir))?;
    // Held until the archive is renamed into place: tells a later pack that
    // this one is alive (see `sweep_dead_packs`).
    let _ = tmp.as_file().lock();
    let summary = pack(
        stack,
        entries,
        BufWriter::with_capacity(BUF, tmp.as_file()),
        opts,
        reporter,
    )?;
    if opts.fsync {
        tmp.as_file()
            .sync_all()
            .map_err(io_err("sync", tmp.path()))?;
    }
    // Temporary files are created 0600; an archive is an ordinary file.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(io_err("set permissions of", tmp.path()))?;
    }
    tmp.persist(dest)
        .map_err(|e| io_err("rename the archive into", dest)(e.error))?;
    if opts.fsync {
        write::sync_dir(&dir);
    }
    Ok(summary)
}

/// Where a blob is: its depot (index in the stack), stored file, size and
/// whether it is stored zstd-compressed.
#[derive(Debug, Clone)]
struct Located {
    depot: usize,
    path: PathBuf,
    size: u64,
    zstd: bool,
}

/// Finds each blob in the stack, in parallel, with one `open` each (no
/// hashing yet: [`write_archive`] verifies each blob while the previous ones
/// are being written).
fn locate_blobs(
    stack: &[Depot],
    wanted: &BTreeSet<Digest>,
) -> BTreeMap<Digest, Result<Located, String>> {
    let locate = |d: &Digest| -> Result<Located, String> {
        for (depot, dep) in stack.iter().enumerate() {
            let path = dep.blob_path(d);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot be read: {e}")),
            };
            let size = file
                .metadata()
                .map_err(|e| format!("cannot be read: {e}"))?
                .len();
            let mut magic = [0u8; 4];
            let zstd = file.read_exact(&mut magic).is_ok() && magic == ZSTD_MAGIC;
            return Ok(Located {
                depot,
                path,
                size,
                zstd,
            });
        }
        Err("is missing from the depot".to_owned())
    };
    let found: Vec<_> = wanted.par_iter().map(|d| (*d, locate(d))).collect();
    found.into_iter().collect()
}

/// Blobs up to this size are read once, by the verifier, which hands the
/// verified bytes to the writer; larger ones are streamed twice.
const KEEP_MAX: u64 = 4 << 20;

/// Verifies one blob against its name (a corrupt one is quarantined), and
/// returns its stored bytes when they are small enough to keep.
fn verify_blob(stack: &[Depot], d: &Digest, at: &Located) -> Result<Option<Vec<u8>>, String> {
    let depot = &stack[at.depot];
    if at.size <= KEEP_MAX {
        let stored = std::fs::read(&at.path).map_err(|e| format!("cannot be read: {e}"))?;
        return if blobs::stored_bytes_match(d, &stored) {
            Ok(Some(stored))
        } else {
            depot.quarantine(d);
            Err("is corrupt (moved to quarantine/)".to_owned())
        };
    }
    match depot.copy_blob(d, &mut io::sink()) {
        Ok(_) => Ok(None),
        Err(DepotError::Corrupt { .. }) => Err("is corrupt (moved to quarantine/)".to_owned()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// What [`write_archive`] wrote.
struct Written {
    blobs: u64,
    blob_bytes: u64,
    skipped: Vec<Skipped>,
}

/// Blobs are verified this many at a time, one batch ahead of the writer.
const VERIFY_BATCH: usize = 64;

fn write_archive<W: Write + Send>(
    out: W,
    stack: &[Depot],
    entries: &mut BTreeMap<Key, Entry>,
    blobs: &BTreeMap<Digest, Located>,
    opts: &PackOptions,
    reporter: &dyn Reporter,
) -> Result<Written, ArchiveError> {
    let frames = Frames::new(out, opts.level).map_err(ArchiveError::Write)?;
    let mut tar = tar::Builder::new(frames);

    let config = DepotConfig {
        format: DEPOT_FORMAT,
        ..DepotConfig::default()
    };
    let depot_toml = checksum::seal(&format!(
        "# relocache depot archive: the layout version of the members below.\n{}",
        toml::to_string(&config).expect("DEPOT.toml serializes")
    ));
    append(&mut tar, "CACHEDIR.TAG", CACHEDIR_TAG.as_bytes())?;
    append(&mut tar, "DEPOT.toml", depot_toml.as_bytes())?;

    let total: u64 = blobs.values().map(|l| l.size).sum();
    append_dir(&mut tar, "objects-v1/")?;
    let shards: BTreeSet<String> = blobs.keys().map(|d| d.to_hex()[..2].to_owned()).collect();
    for shard in &shards {
        append_dir(&mut tar, &format!("objects-v1/{shard}/"))?;
    }
    // Blobs stored zstd-compressed go out as they are, in stored frames (no
    // second compression); blobs stored raw (incompressible by their sample,
    // or tiny) go into a compressed frame, where their tar padding and any
    // redundancy still shrink. Each run is sorted by digest.
    let (zstd_blobs, raw_blobs): (Vec<_>, Vec<_>) = blobs.iter().partition(|(_, l)| l.zstd);
    let mut done = 0u64;
    let mut bad: BTreeMap<Digest, String> = BTreeMap::new();
    let mut written = Written {
        blobs: 0,
        blob_bytes: 0,
        skipped: Vec::new(),
    };
    for (run, stored) in [(zstd_blobs, true), (raw_blobs, false)] {
        if stored {
            tar.get_mut().stored().map_err(ArchiveError::Write)?;
        } else {
            tar.get_mut().compressed().map_err(ArchiveError::Write)?;
        }
        // A blob goes into the archive only once it is verified; the next
        // batch is verified (on the pool) while this one is written.
        let batches: Vec<&[(&Digest, &Located)]> = run.chunks(VERIFY_BATCH).collect();
        type Verified = Result<Option<Vec<u8>>, String>;
        let verify = |batch: &[(&Digest, &Located)]| -> Vec<Verified> {
            batch
                .par_iter()
                .map(|(d, l)| verify_blob(stack, d, l))
                .collect()
        };
        let mut checked = batches.first().map(|b| verify(b));
        for (i, batch) in batches.iter().enumerate() {
            let results = checked.take().expect("verified ahead");
            let (next, wrote) = rayon::join(
                || batches.get(i + 1).map(|b| verify(b)),
                || -> Result<(), ArchiveError> {
                    for ((d, l), verified) in batch.iter().zip(results) {
                        let stored = match verified {
                            Ok(stored) => stored,
                            Err(why) => {
                                bad.insert(**d, why);
                                continue;
                            }
                        };
                        append_blob(&mut tar, d, l, stored)?;
                        written.blobs += 1;
                        written.blob_bytes += l.size;
                        done += l.size;
                        reporter.progress("pack", done, total);
                    }
                    Ok(())
                },
            );
            wrote?;
            checked = next;
        }
    }
    if !bad.is_empty() {
        drop_entries(entries, &mut written.skipped, |d| bad.get(d).cloned());
        if opts.strict {
            return Err(ArchiveError::Incomplete(written.skipped));
        }
    }
    tar.get_mut().compressed().map_err(ArchiveError::Write)?;
    append_dir(&mut tar, "entries-v2/")?;
    let mut shard = String::new();
    for (key, e) in entries {
        let hex = key.to_hex();
        if hex[..2] != shard {
            shard = hex[..2].to_owned();
            append_dir(&mut tar, &format!("entries-v2/{shard}/"))?;
        }
        let text = render_entry(e);
        append(
            &mut tar,
            &format!("entries-v2/{shard}/{hex}.toml"),
            text.as_bytes(),
        )?;
    }
    let frames = tar.into_inner().map_err(ArchiveError::Write)?;
    frames.finish().map_err(ArchiveError::Write)?;
    Ok(written)
}

/// Appends blob `d`: `stored` when the verifier kept its bytes (they are
/// what was verified), else read from its file.
fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    d: &Digest,
    l: &Located,
    stored: Option<Vec<u8>>,
) -> Result<(), ArchiveError> {
    let hex = d.to_hex();
    if let Some(bytes) = stored {
        let h = header(
            &format!("objects-v1/{}/{hex}", &hex[..2]),
            tar::EntryType::Regular,
            bytes.len() as u64,
        );
        // The record tar::Builder::append writes (header, data, zero padding
        // to 512), in three writes instead of a copy through an 8 KiB buffer.
        let out = tar.get_mut();
        let pad = (512 - bytes.len() % 512) % 512;
        return out
            .write_all(h.as_bytes())
            .and_then(|()| out.write_all(&bytes))
            .and_then(|()| out.write_all(&[0; 512][..pad]))
            .map_err(ArchiveError::Write);
    }
    let file = File::open(&l.path).map_err(io_err("read blob", &l.path))?;
    let data = Exact {
        inner: file.take(l.size),
        remaining: l.size,
    };
    let h = header(
        &format!("objects-v1/{}/{hex}", &hex[..2]),
        tar::EntryType::Regular,
        l.size,
    );
    tar.append(&h, data).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io_err("read blob (it shrank while packing)", &l.path)(e),
        _ => ArchiveError::Write(e),
    })
}

/// The archive's zstd stream as a sequence of frames (decoders read
/// concatenated frames as one stream): compressed frames — multithreaded,
/// checksummed — for tar headers and entries, and *stored* frames of raw
/// blocks for blob bytes, which are already compressed or incompressible.
/// Each frame kind is written deterministically, so equal depots still give
/// equal bytes.
struct Frames<W: Write> {
    state: FrameState<W>,
    level: i32,
}

enum FrameState<W: Write> {
    Compressed(zstd::Encoder<'static, W>),
    Stored { out: W, buf: Vec<u8> },
    Done,
}

/// A stored frame's blocks: 128 KiB each (zstd's block limit), with a 128 KiB
/// window declared in the frame header. Full blocks are written as soon as
/// they are complete; the frame ends with a last block holding the rest
/// (empty when nothing is left, which the format allows).
const STORED_BLOCK: usize = 128 * 1024;

impl<W: Write> Frames<W> {
    fn new(out: W, level: i32) -> io::Result<Frames<W>> {
        Ok(Frames {
            state: FrameState::Compressed(Self::encoder(out, level)?),
            level,
        })
    }

    fn encoder(out: W, level: i32) -> io::Result<zstd::Encoder<'static, W>> {
        let mut enc = zstd::Encoder::new(out, level)?;
        // Multithreaded streaming output is the same for any number of
        // workers (>= 1), so the worker count is free to follow the machine.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(16)) as u32;
        enc.multithread(workers)?;
        enc.include_checksum(true)?;
        Ok(enc)
    }

    /// Ends the current frame and hands back the writer.
    fn end_frame(&mut self) -> io::Result<W> {
        match std::mem::replace(&mut self.state, FrameState::Done) {
            FrameState::Compressed(enc) => enc.finish(),
            FrameState::Stored { mut out, buf } => {
                stored_block(&mut out, &buf, true)?;
                Ok(out)
            }
            FrameState::Done => Err(io::Error::other("archive stream already finished")),
        }
    }

    /// Continues in a stored frame.
    fn stored(&mut self) -> io::Result<()> {
        if let FrameState::Stored { .. } = self.state {
            return Ok(());
        }
        let mut out = self.end_frame()?;
        // Magic, then a frame header descriptor with no content size, no
        // checksum, no dictionary, and a window descriptor of 2^17 bytes.
        out.write_all(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, (17 - 10) << 3])?;
        self.state = FrameState::Stored {
            out,
            buf: Vec::with_capacity(STORED_BLOCK),
        };
        Ok(())
    }

    /// Continues in a compressed frame.
    fn compressed(&mut self) -> io::Result<()> {
        if let FrameState::Compressed(_) = self.state {
            return Ok(());
        }
        let out = self.end_frame()?;
        self.state = FrameState::Compressed(Self::encoder(out, self.level)?);
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        let mut out = self.end_frame()?;
        out.flush()?;
        Ok(out)
    }
}

/// One raw block of a stored frame: a 3-byte little-endian header (last-block
/// bit, block type 0 = raw, size) and the bytes as they are.
fn stored_block(out: &mut impl Write, data: &[u8], last: bool) -> io::Result<()> {
    debug_assert!(data.len() <= STORED_BLOCK);
    let h = (last as u32) | ((data.len() as u32) << 3);
    out.write_all(&h.to_le_bytes()[..3])?;
    out.write_all(data)
}

impl<W: Write> Write for Frames<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            FrameState::Compressed(enc) => enc.write(data),
            FrameState::Stored { out, buf } => {
                if buf.is_empty() && data.len() >= STORED_BLOCK {
                    // Straight from the caller's bytes, no copy.
                    stored_block(out, &data[..STORED_BLOCK], false)?;
                    return Ok(STORED_BLOCK);
                }
                let n = data.len().min(STORED_BLOCK - buf.len());
                buf.extend_from_slice(&data[..n]);
                if buf.len() == STORED_BLOCK {
                    stored_block(out, buf, false)?;
                    buf.clear();
                }
                Ok(n)
            }
            FrameState::Done => Err(io::Error::other("archive stream already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            FrameState::Compressed(enc) => enc.flush(),
            FrameState::Stored { out, .. } => out.flush(),
            FrameState::Done => Ok(()),
        }
    }
}

/// A ustar header with everything but the path, type and size fixed.
fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let name = &mut h.as_ustar_mut().expect("a ustar header").name;
    debug_assert!(path.len() <= name.len(), "depot paths fit in 100 bytes");
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    let h = header(path, tar::EntryType::Regular, data.len() as u64);
    tar.append(&h, data).map_err(ArchiveError::Write)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    let h = header(path, tar::EntryType::Directory, 0);
    tar.append(&h, io::empty()).map_err(ArchiveError::Write)
}

/// Yields exactly `remaining` bytes or fails: a tar member must hold as many
/// bytes as its header says.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than when it was listed",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Bound on the decompressed stream, and on each blob's content.
    pub max_size: u64,
    /// Bound on decompressed / compressed bytes past [`BOMB_MIN`]; 0 turns it off.
    pub max_ratio: u64,
    /// The archive's size when known, for progress.
    pub archive_len: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            max_size: DEFAULT_MAX_SIZE,
            max_ratio: DEFAULT_MAX_RATIO,
            archive_len: None,
        }
    }
}

/// What `unpack` added to the depot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnpackSummary {
    /// Entries published, by key.
    pub entries_added: Vec<EntryRef>,
    /// Entries the depot already had.
    pub entries_present: u64,
    /// Blobs written.
    pub blobs_added: u64,
    /// Blobs the depot already had (verified, not written).
    pub blobs_present: u64,
    /// Bytes written into the depot (blobs as stored).
    pub bytes_added: u64,
    /// Compressed bytes read.
    pub archive_bytes: u64,
    /// Decompressed tar bytes read.
    pub tar_bytes: u64,
}

/// Which limit the stream guard hit (the I/O error it returns travels
/// through tar, which may rewrap it).
#[derive(Debug, Clone, Copy)]
enum Trip {
    TooLarge,
    Bomb { decompressed: u64, compressed: u64 },
}

/// Counts the compressed bytes read.
struct CountingReader<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

/// How many bytes may have been decompressed from `compressed` bytes: at
/// most `max_size`, and past [`BOMB_MIN`] at most `max_ratio` times
/// `compressed` (no ratio rule when it is 0). The one rule for the stream
/// and for the blobs' content.
fn expansion_cap(compressed: u64, max_size: u64, max_ratio: u64) -> u64 {
    if max_ratio == 0 {
        return max_size;
    }
    max_size.min(compressed.saturating_mul(max_ratio).max(BOMB_MIN))
}

/// Enforces `max_size` and the ratio rule on the decompressed stream.
struct Guard<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    out: Rc<Cell<u64>>,
    max_size: u64,
    max_ratio: u64,
    trip: Rc<Cell<Option<Trip>>>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.trip.get().is_some() {
            return Err(io::Error::other("archive limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        let out = self.out.get() + n as u64;
        self.out.set(out);
        let compressed = self.compressed.load(Relaxed);
        if out <= expansion_cap(compressed, self.max_size, self.max_ratio) {
            return Ok(n);
        }
        self.trip.set(Some(if out > self.max_size {
            Trip::TooLarge
        } else {
            Trip::Bomb {
                decompressed: out,
                compressed: compressed.max(1),
            }
        }));
        Err(io::Error::other("archive limit exceeded"))
    }
}

/// What a member path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Dir,
    CacheTag,
    DepotToml,
    Blob(Digest),
    Entry(Key),
}

fn is_shard(s: &str) -> bool {
    s.len() == 2
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Maps a member path to the one depot layout form it must be, or says why not.
fn classify(path: &str, is_dir: bool) -> Result<Member, String> {
    if path.starts_with('/') {
        return Err("is an absolute path".into());
    }
    let trimmed = if is_dir {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.contains(&"..") {
        return Err("climbs out of the depot with `..`".into());
    }
    if trimmed.contains('\\') || parts.iter().any(|c| c.is_empty() || *c == ".") {
        return Err("is not a normalized relative path".into());
    }
    let outside = || {
        let top = parts[0];
        let local = [
            "projects-v2",
            "projects-v1",
            "usage",
            "locks",
            "tmp",
            "quarantine",
        ];
        let newer = ["objects-v", "entries-v", "projects-v"]
            .iter()
            .any(|p| top.starts_with(p));
        if local.contains(&top) {
            format!("is not part of the depot layout an archive carries (`{top}/` is local state)")
        } else if top == "entries-v1" {
            "uses depot layout `entries-v1` of an older relocache, whose entries carry no checksum (make the archive again with this relocache)".to_owned()
        } else if newer && top != "objects-v1" && top != "entries-v2" {
            format!("uses depot layout `{top}`, which this relocache does not know (made by a newer relocache? then upgrade)")
        } else {
            "is not part of the depot layout".to_owned()
        }
    };
    if is_dir {
        return match parts.as_slice() {
            ["objects-v1" | "entries-v2"] => Ok(Member::Dir),
            ["objects-v1" | "entries-v2", s] if is_shard(s) => Ok(Member::Dir),
            _ => Err(outside()),
        };
    }
    match parts.as_slice() {
        ["CACHEDIR.TAG"] => Ok(Member::CacheTag),
        ["DEPOT.toml"] => Ok(Member::DepotToml),
        ["objects-v1", s, name] if is_shard(s) => match name.parse::<Digest>() {
            Ok(d) if name.starts_with(s) => Ok(Member::Blob(d)),
            _ => Err(
                "is not named `objects-v1/ab/<blake3 hex>` with `ab` its first two digits".into(),
            ),
        },
        ["entries-v2", s, name] if is_shard(s) => {
            match name.strip_suffix(".toml").map(|h| (h, h.parse::<Key>())) {
                Some((h, Ok(k))) if h.starts_with(s) => Ok(Member::Entry(k)),
                _ => Err(
                    "is not named `entries-v2/ab/<key hex>.toml` with `ab` its first two digits"
                        .into(),
                ),
            }
        }
        _ => Err(outside()),
    }
}

/// The blake3 of a stored blob's uncompressed content, fed its stored bytes
/// in chunks (zstd when they start with the zstd magic, else raw — the rule
/// of [`crate::depot::blobs`]).
struct ContentCheck {
    /// The first bytes, until the format is known.
    head: Vec<u8>,
    limit: u64,
    budget: Budget,
    decided: Option<Decided>,
}

enum Decided {
    Raw(HashCount),
    Zstd(zstd::stream::write::Decoder<'static, HashCount>),
}

/// Hashes and counts content, failing past `limit` or past the archive's
/// shared content budget.
struct HashCount {
    hasher: blake3::Hasher,
    n: u64,
    limit: u64,
    over: bool,
    budget: Budget,
    over_budget: bool,
}

/// The content all of an archive's blobs may decompress to, shared by the
/// threads checking them: each blob alone within `--max-size` is not
/// enough, when a few hundred bytes of archive can hold many small zstd
/// frames of gigabytes each.
#[derive(Clone)]
struct Budget {
    used: Arc<AtomicU64>,
    /// The archive's compressed bytes read so far (`None`: no ratio rule).
    compressed: Option<Arc<AtomicU64>>,
    max_size: u64,
    max_ratio: u64,
}

impl Budget {
    #[cfg(test)]
    fn unlimited() -> Budget {
        Budget {
            used: Default::default(),
            compressed: None,
            max_size: u64::MAX,
            max_ratio: 0,
        }
    }

    /// What the content may add up to now (see [`expansion_cap`]).
    fn cap(&self) -> u64 {
        match &self.compressed {
            Some(c) => expansion_cap(c.load(Relaxed), self.max_size, self.max_ratio),
            None => self.max_size,
        }
    }
}

impl Write for HashCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        self.n += len;
        if self.n > self.limit {
            self.over = true;
            return Err(io::Error::other("blob content exceeds the limit"));
        }
        let used = self.budget.used.fetch_add(len, Relaxed) + len;
        if used > self.budget.cap() {
            self.over_budget = true;
            return Err(io::Error::other("archive content exceeds the limit"));
        }
        self.hasher.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a blob's content could not be hashed.
enum CheckError {
    /// Content beyond the limit.
    Over,
    /// All blobs' content beyond the archive's budget.
    OverBudget,
    /// Not a valid zstd stream: it cannot match its name.
    Invalid,
}

impl ContentCheck {
    fn new(limit: u64, budget: Budget) -> ContentCheck {
        ContentCheck {
            head: Vec::with_capacity(4),
            limit,
            budget,
            decided: None,
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), CheckError> {
        if self.decided.is_none() {
            let take = (4 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.head.len() < 4 {
                return Ok(());
            }
            let hc = HashCount::new(self.limit, self.budget.clone());
            self.decided = Some(if self.head == ZSTD_MAGIC {
                let mut dec =
                    zstd::stream::write::Decoder::new(hc).map_err(|_| CheckError::Invalid)?;
                write_checked(&mut dec, &self.head)?;
                Decided::Zstd(dec)
            } else {
                let mut hc = hc;
                write_checked(&mut hc, &self.head)?;
                Decided::Raw(hc)
            });
        }
        match self.decided.as_mut() {
            Some(Decided::Raw(hc)) => write_checked(hc, chunk),
            Some(Decided::Zstd(dec)) => write_checked(dec, chunk),
            None => Ok(()), // fewer than 4 bytes so far
        }
    }

    fn finish(self) -> Result<Digest, CheckError> {
        let hc = match self.decided {
            // Fewer than 4 bytes: raw.
            None => {
                let mut hc = HashCount::new(self.limit, self.budget);
                write_checked(&mut hc, &self.head)?;
                hc
            }
            Some(Decided::Raw(hc)) => hc,
            Some(Decided::Zstd(mut dec)) => match dec.do_finish() {
                Ok(()) => dec.into_inner(),
                Err(_) if dec.get_ref().over => return Err(CheckError::Over),
                Err(_) if dec.get_ref().over_budget => return Err(CheckError::OverBudget),
                Err(_) => return Err(CheckError::Invalid),
            },
        };
        Ok(hc.hasher.finalize().into())
    }
}

impl HashCount {
    fn new(limit: u64, budget: Budget) -> HashCount {
        HashCount {
            hasher: blake3::Hasher::new(),
            n: 0,
            limit,
            over: false,
            budget,
            over_budget: false,
        }
    }
}

/// Writes into a [`HashCount`] or a decoder over one, telling the limit
/// apart from invalid data.
fn write_checked<W: Write + HasCount>(w: &mut W, data: &[u8]) -> Result<(), CheckError> {
    match w.write_all(data) {
        Ok(()) => Ok(()),
        Err(_) if w.count().over => Err(CheckError::Over),
        Err(_) if w.count().over_budget => Err(CheckError::OverBudget),
        Err(_) => Err(CheckError::Invalid),
    }
}

trait HasCount {
    fn count(&self) -> &HashCount;
}
impl HasCount for HashCount {
    fn count(&self) -> &HashCount {
        self
    }
}
impl HasCount for zstd::stream::write::Decoder<'static, HashCount> {
    fn count(&self) -> &HashCount {
        self.get_ref()
    }
}

/// State of one unpack.
struct Unpacking<'a> {
    depot: &'a Depot,
    opts: &'a UnpackOptions,
    summary: UnpackSummary,
    entries: BTreeMap<Key, Entry>,
    blobs: HashSet<Digest>,
    trip: Rc<Cell<Option<Trip>>>,
    /// Small blobs read but not yet checked and written (see [`Pending`]).
    pending: Vec<Pending>,
    pending_bytes: usize,
    /// Compressed bytes read so far.
    compressed: Arc<AtomicU64>,
    /// Content of every blob checked so far.
    content: Arc<AtomicU64>,
}

/// A small blob member read into memory, to be checked and written with the
/// rest of its batch on all cores while the stream is read on.
struct Pending {
    name: String,
    digest: Digest,
    bytes: Vec<u8>,
    /// Already in the depot or earlier in the archive: check only.
    present: bool,
}

/// Blobs up to this size are batched; larger ones are streamed one by one.
const PENDING_MAX_BLOB: u64 = 4 << 20;
/// A batch is processed once it holds this many blobs or bytes.
const PENDING_COUNT: usize = 128;
const PENDING_BYTES: usize = 32 << 20;

/// The error for a content check of member `name` that failed.
fn check_error(name: &str, limit: u64, budget: &Budget, e: CheckError) -> ArchiveError {
    match e {
        CheckError::OverBudget => ArchiveError::ContentTooLarge { cap: budget.cap() },
        CheckError::Over => ArchiveError::BlobTooLarge {
            member: name.to_owned(),
            limit,
        },
        // Not a decodable stream: whatever it holds, it is not the blob its
        // name says.
        CheckError::Invalid => ArchiveError::BadMember {
            member: name.to_owned(),
            problem: "starts like zstd but is not a valid zstd stream, so it cannot hold the blob its name says".into(),
        },
    }
}

/// Checks one batched blob against its name and, unless present, writes it
/// into the depot (durable with the batch's `syncfs`).
fn settle_pending(
    depot: &Depot,
    limit: u64,
    budget: &Budget,
    p: &Pending,
) -> Result<(), ArchiveError> {
    let actual = stored_content_digest(&p.bytes, limit, budget)
        .map_err(|e| check_error(&p.name, limit, budget, e))?;
    if actual != p.digest {
        return Err(ArchiveError::BlobMismatch {
            member: p.name.clone(),
            actual,
        });
    }
    if !p.present {
        let mut staged = write::staging(depot)?;
        let path = staged.path().to_path_buf();
        staged
            .write_all(&p.bytes)
            .map_err(DepotError::io("write", &path))?;
        write::persist_batched(staged, &depot.blob_path(&p.digest))?;
    }
    Ok(())
}

/// The digest of the content of a blob held whole in memory: what
/// [`ContentCheck`] computes, read the way the depot reads blobs and with
/// this thread's decompression context (creating one per blob was a sixth
/// of unpack's CPU).
fn stored_content_digest(stored: &[u8], limit: u64, budget: &Budget) -> Result<Digest, CheckError> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return if stored.len() as u64 > limit {
            Err(CheckError::Over)
        } else {
            let mut hc = HashCount::new(limit, budget.clone());
            write_checked(&mut hc, stored)?;
            Ok(hc.hasher.finalize().into())
        };
    }
    let hashed = blobs::with_stream(stored, |reader| {
        let mut hc = HashCount::new(limit, budget.clone());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(hc.hasher.finalize().into()),
                Ok(n) => write_checked(&mut hc, &buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(CheckError::Invalid),
            }
        }
    });
    hashed.unwrap_or(Err(CheckError::Invalid))
}

impl Unpacking<'_> {
    /// What the blobs' content may add up to now: `--max-size`, and past
    /// [`BOMB_MIN`] `--max-ratio` times the compressed bytes read so far.
    fn budget(&self) -> Budget {
        Budget {
            used: self.content.clone(),
            compressed: Some(self.compressed.clone()),
            max_size: self.opts.max_size,
            max_ratio: self.opts.max_ratio,
        }
    }

    /// Checks and writes the pending blobs, in parallel; the first failure
    /// in archive order is the one reported.
    fn flush_pending(&mut self) -> Result<(), ArchiveError> {
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let (depot, limit, budget) = (self.depot, self.opts.max_size, self.budget());
        let results: Vec<Result<(), ArchiveError>> = batch
            .par_iter()
            .map(|p| settle_pending(depot, limit, &budget, p))
            .collect();
        for (p, r) in batch.iter().zip(results) {
            r?;
            if p.present {
                self.summary.blobs_present += 1;
            } else {
                self.summary.blobs_added += 1;
                self.summary.bytes_added += p.bytes.len() as u64;
            }
        }
        Ok(())
    }

    /// An I/O error from the stream: a tripped limit, or corruption.
    fn read_err(&self, e: io::Error) -> ArchiveError {
        match self.trip.get() {
            Some(Trip::TooLarge) => ArchiveError::TooLarge {
                limit: self.opts.max_size,
            },
            Some(Trip::Bomb {
                decompressed,
                compressed,
            }) => ArchiveError::Bomb {
                ratio: self.opts.max_ratio,
                decompressed,
                compressed,
            },
            None => ArchiveError::Corrupt(e),
        }
    }

    fn member<R: Read>(&mut self, mut m: tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let name = String::from_utf8_lossy(&m.path_bytes()).into_owned();
        let bad = |problem: &str| ArchiveError::BadMember {
            member: name.clone(),
            problem: problem.to_owned(),
        };
        use tar::EntryType as T;
        let kind = m.header().entry_type();
        let is_dir = match kind {
            T::Regular => false,
            T::Directory => true,
            T::Symlink => return Err(bad("is a symbolic link (a depot archive holds none)")),
            T::Link => return Err(bad("is a hard link (a depot archive holds none)")),
            T::Char | T::Block => return Err(bad("is a device file")),
            T::Fifo => return Err(bad("is a fifo")),
            other => {
                return Err(bad(&format!(
                    "has tar type `{}`, not a regular file or directory",
                    other.as_byte() as char
                )))
            }
        };
        if std::str::from_utf8(&m.path_bytes()).is_err() {
            return Err(bad("is not valid UTF-8"));
        }
        let size = m.size();
        match classify(&name, is_dir).map_err(|p| bad(&p))? {
            Member::Dir => Ok(()),
            Member::CacheTag => {
                self.small(&mut m, &name, size)?;
                Ok(())
            }
            Member::DepotToml => {
                let text = self.small(&mut m, &name, size)?;
                let config = parse_config(&text, Path::new("DEPOT.toml")).map_err(|e| {
                    bad(&format!(
                        "is not a valid DEPOT.toml: {}",
                        e.source_text().lines().next().unwrap_or_default()
                    ))
                })?;
                if config.format > DEPOT_FORMAT {
                    return Err(ArchiveError::NewerFormat {
                        found: config.format,
                    });
                }
                if config.format < DEPOT_FORMAT {
                    return Err(ArchiveError::OlderFormat {
                        found: config.format,
                    });
                }
                Ok(())
            }
            Member::Blob(d) => self.blob(&mut m, &name, d, size),
            Member::Entry(k) => self.entry(&mut m, &name, k, size),
        }
    }

    /// Reads a member of at most `limit` bytes completely.
    fn read_all(
        &self,
        m: &mut impl Read,
        name: &str,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<String, ArchiveError> {
        if size > limit {
            return Err(ArchiveError::BadMember {
                member: name.to_owned(),
                problem: format!(
                    "is {}, too large for {what} (at most {})",
                    format_size(size),
                    format_size(limit)
                ),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        m.read_to_end(&mut bytes).map_err(|e| self.read_err(e))?;
        if bytes.len() as u64 != size {
            return Err(ArchiveError::Truncated);
        }
        String::from_utf8(bytes).map_err(|_| ArchiveError::BadMember {
            member: name.to_owned(),
            problem: "is not UTF-8 text".into(),
        })
    }

    fn small(&self, m: &mut impl Read, name: &str, size: u64) -> Result<String, ArchiveError> {
        self.read_all(m, name, size, MAX_SMALL_FILE, "this file")
    }

    fn entry(
        &mut self,
        m: &mut impl Read,
        name: &str,
        key: Key,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let text = self.read_all(m, name, size, MAX_ENTRY_BYTES, "an entry")?;
        let entry = parse_entry(&text).map_err(|message| ArchiveError::BadMember {
            member: name.to_owned(),
            problem: format!("is not a valid entry: {message}"),
        })?;
        if entry.key != key {
            return Err(ArchiveError::BadMember {
                member: name.to_owned(),
                problem: format!("records key {} under another name", entry.key),
            });
        }
        if self.entries.insert(key, entry).is_some() {
            // `pack` writes each entry once; which copy would count is a
            // question a sound archive never raises.
            return Err(ArchiveError::BadMember {
                member: name.to_owned(),
                problem: "appears twice".into(),
            });
        }
        Ok(())
    }

    fn blob(
        &mut self,
        m: &mut impl Read,
        name: &str,
        d: Digest,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let present = self.blobs.contains(&d) || self.depot.has_blob(&d);
        if size <= PENDING_MAX_BLOB {
            let mut bytes = Vec::with_capacity(size as usize);
            m.read_to_end(&mut bytes).map_err(|e| self.read_err(e))?;
            if bytes.len() as u64 != size {
                return Err(ArchiveError::Truncated);
            }
            self.blobs.insert(d);
            self.pending_bytes += bytes.len();
            self.pending.push(Pending {
                name: name.to_owned(),
                digest: d,
                bytes,
                present,
            });
            if self.pending.len() >= PENDING_COUNT || self.pending_bytes >= PENDING_BYTES {
                self.flush_pending()?;
            }
            return Ok(());
        }
        let mut staged = if present {
            None
        } else {
            Some(write::staging(self.depot)?)
        };
        let budget = self.budget();
        let mut check = ContentCheck::new(self.opts.max_size, budget.clone());
        let mut buf = vec![0u8; BUF];
        let mut got = 0u64;
        let limit = self.opts.max_size;
        let checked =
            |r: Result<(), CheckError>| r.map_err(|e| check_error(name, limit, &budget, e));
        loop {
            let n = match m.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(e)),
            };
            got += n as u64;
            if let Some(s) = staged.as_mut() {
                let path = s.path().to_path_buf();
                s.write_all(&buf[..n])
                    .map_err(DepotError::io("write", &path))?;
            }
            checked(check.feed(&buf[..n]))?;
        }
        if got != size {
            return Err(ArchiveError::Truncated);
        }
        let actual = match check.finish() {
            Ok(a) => a,
            Err(e) => return checked(Err(e)),
        };
        if actual != d {
            return Err(ArchiveError::BlobMismatch {
                member: name.to_owned(),
                actual,
            });
        }
        match staged {
            Some(s) => {
                // Synced all at once before any entry is published.
                write::persist_batched(s, &self.depot.blob_path(&d))?;
                self.summary.blobs_added += 1;
                self.summary.bytes_added += got;
            }
            None => self.summary.blobs_present += 1,
        }
        self.blobs.insert(d);
        Ok(())
    }

    /// Publishes the held entries once every blob they name is available
    /// and durable.
    fn publish(&mut self) -> Result<(), ArchiveError> {
        self.flush_pending()?;
        self.depot.sync_batch()?;
        for e in self.entries.values() {
            for b in e.blobs() {
                if !self.blobs.contains(&b) && !self.depot.has_blob(&b) {
                    return Err(ArchiveError::MissingBlob {
                        key: e.key,
                        target: format!("{}/{}", e.project, e.target),
                        blob: b,
                    });
                }
            }
        }
        for e in self.entries.values() {
            match self.depot.read_entry(&e.key) {
                Ok(Some(_)) => self.summary.entries_present += 1,
                // Absent, or damaged: the verified copy replaces it.
                Ok(None) | Err(_) => {
                    if let Err(err) = self.depot.write_entry(e) {
                        // All or nothing: take back what this unpack published
                        // (complete entries, seen by others only for a moment).
                        for added in &self.summary.entries_added {
                            let _ = self.depot.remove_entry(&added.key);
                        }
                        return Err(err.into());
                    }
                    self.summary.entries_added.push(EntryRef::of(e));
                }
            }
        }
        Ok(())
    }
}

/// Merges the archive read from `input` into `depot`; see the module docs
/// for what is accepted. On any error no entry of the archive is published.
pub fn unpack(
    depot: &Depot,
    input: impl Read,
    opts: &UnpackOptions,
    reporter: &dyn Reporter,
) -> Result<UnpackSummary, ArchiveError> {
    let compressed = Arc::new(AtomicU64::new(0));
    let decompressed = Rc::new(Cell::new(0u64));
    let trip = Rc::new(Cell::new(None));
    let counting = CountingReader {
        inner: input,
        n: compressed.clone(),
    };
    let decoder = zstd::Decoder::new(counting).map_err(ArchiveError::Corrupt)?;
    let guard = Guard {
        inner: decoder,
        compressed: compressed.clone(),
        out: decompressed.clone(),
        max_size: opts.max_size,
        max_ratio: opts.max_ratio,
        trip: trip.clone(),
    };
    let mut state = Unpacking {
        depot,
        opts,
        summary: UnpackSummary::default(),
        entries: BTreeMap::new(),
        blobs: HashSet::new(),
        trip,
        pending: Vec::new(),
        pending_bytes: 0,
        compressed: compressed.clone(),
        content: Default::default(),
    };
    let mut archive = tar::Archive::new(guard);
    {
        let members = archive.entries().map_err(|e| state.read_err(e))?;
        for m in members {
            let m = m.map_err(|e| state.read_err(e))?;
            state.member(m)?;
            if let Some(total) = opts.archive_len {
                reporter.progress("unpack", compressed.load(Relaxed).min(total), total);
            }
        }
    }
    // tar stops at the first zero block. A complete archive has at least one
    // more (and maybe record padding), all zeros; a stream that simply ends
    // was cut at a member boundary.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    let mut trailer = 0u64;
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(state.read_err(e)),
        };
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(ArchiveError::BadMember {
                member: "(after the end of the archive)".into(),
                problem: "is data after tar's end-of-archive marker".into(),
            });
        }
        trailer += n as u64;
    }
    if trailer < 512 {
        return Err(ArchiveError::Truncated);
    }
    state.publish()?;
    if let Some(total) = opts.archive_len {
        reporter.progress("unpack", total, total);
    }
    state.summary.archive_bytes = compressed.load(Relaxed);
    state.summary.tar_bytes = decompressed.get();
    Ok(state.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_depot_layout_is_accepted() {
        let hex = Digest::of(b"x").to_hex();
        let blob = format!("objects-v1/{}/{hex}", &hex[..2]);
        assert!(matches!(classify(&blob, false), Ok(Member::Blob(_))));
        let entry = format!("entries-v2/{}/{hex}.toml", &hex[..2]);
        assert!(matches!(classify(&entry, false), Ok(Member::Entry(_))));
        assert_eq!(classify("objects-v1/", true), Ok(Member::Dir));
        assert_eq!(classify("entries-v2/0a/", true), Ok(Member::Dir));
        assert_eq!(classify("DEPOT.toml", false), Ok(Member::DepotToml));
        let wrong_shard = if &hex[..2] == "00" { "01" } else { "00" };
        for bad in [
            format!("objects-v1/{wrong_shard}/{hex}"),
            format!("objects-v1/{}/{}", &hex[..2], hex.to_uppercase()),
            format!("entries-v2/{}/{hex}", &hex[..2]),
            format!("./{blob}"),
            format!("/{blob}"),
            format!("objects-v1/{}/../../{hex}", &hex[..2]),
            "objects-v1//x".into(),
            "tmp/x".into(),
            "projects-v2/p/t.toml".into(),
            "DEPOT.toml/x".into(),
        ] {
            assert!(classify(&bad, false).is_err(), "{bad}");
        }
        assert!(classify("tmp/", true).is_err());
        assert!(classify("objects-v2/ab/x", false)
            .unwrap_err()
            .contains("newer relocache"));
        assert!(classify("../x", false).unwrap_err().contains(".."));
        assert!(classify("/etc/passwd", false)
            .unwrap_err()
            .contains("absolute"));
    }

    #[test]
    fn content_check_hashes_raw_and_zstd_blobs_by_their_content() {
        let data = b"some content ".repeat(1000);
        let packed = zstd::encode_all(&data[..], 3).unwrap();
        for (stored, chunk) in [(&data, 7), (&packed, 3), (&packed, 100_000)] {
            let mut c = ContentCheck::new(u64::MAX, Budget::unlimited());
            for part in stored.chunks(chunk) {
                assert!(c.feed(part).is_ok());
            }
            assert_eq!(c.finish().ok(), Some(Digest::of(&data)));
        }
        // Tiny raw blobs never reach the 4-byte decision.
        let mut c = ContentCheck::new(u64::MAX, Budget::unlimited());
        assert!(c.feed(b"ab").is_ok());
        assert_eq!(c.finish().ok(), Some(Digest::of(b"ab")));
        // A truncated frame is invalid, never a prefix's digest.
        let mut c = ContentCheck::new(u64::MAX, Budget::unlimited());
        assert!(c.feed(&packed[..packed.len() - 3]).is_ok());
        assert!(matches!(c.finish(), Err(CheckError::Invalid)));
        // Content past the limit is refused while streaming.
        // (The decoder may hold decoded bytes until the next write or the end.)
        let mut c = ContentCheck::new(100, Budget::unlimited());
        let over = match c.feed(&packed) {
            Err(e) => matches!(e, CheckError::Over),
            Ok(()) => matches!(c.finish(), Err(CheckError::Over)),
        };
        assert!(over);
    }

    #[test]
    fn in_memory_blobs_are_judged_like_streamed_ones() {
        let data = b"some content ".repeat(10_000);
        let packed = zstd::encode_all(&data[..], 3).unwrap();
        let digest = |b: &[u8], limit| stored_content_digest(b, limit, &Budget::unlimited()).ok();
        // Twice each: the thread's reused context must not carry state over.
        for _ in 0..2 {
            assert_eq!(digest(&data, u64::MAX), Some(Digest::of(&data)));
            assert_eq!(digest(&packed, u64::MAX), Some(Digest::of(&data)));
            assert_eq!(digest(b"ab", u64::MAX), Some(Digest::of(b"ab")));
            let cut =
                stored_content_digest(&packed[..packed.len() - 3], u64::MAX, &Budget::unlimited());
            assert!(matches!(cut, Err(CheckError::Invalid)));
            let mut junk = ZSTD_MAGIC.to_vec();
            junk.extend_from_slice(b"not a frame at all");
            assert!(matches!(
                stored_content_digest(&junk, u64::MAX, &Budget::unlimited()),
                Err(CheckError::Invalid)
            ));
            assert!(matches!(
                stored_content_digest(&packed, 100, &Budget::unlimited()),
                Err(CheckError::Over)
            ));
            assert!(matches!(
                stored_content_digest(&data, 100, &Budget::unlimited()),
                Err(CheckError::Over)
            ));
        }
    }
}
