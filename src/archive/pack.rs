//! `pack`: writing a depot archive. Picks the entries, finds and verifies
//! each blob in the depot stack (a corrupt one is quarantined and its
//! entries left out), and writes the tar members in the pinned order with
//! fixed headers, so equal depots give equal bytes. Never writes a depot;
//! writes only the archive the user named.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::frames::Frames;
use super::{io_err, ArchiveError, EntryRef, PackOptions, PackSummary, Skipped, BUF};
use crate::depot::blobs;
use crate::depot::entries::{render_entry, Entry};
use crate::depot::layout;
use crate::depot::packs::BlobLocation;
use crate::depot::variants::{render_variants, PathSet, Variants, MAX_SETS};
use crate::depot::{checksum, Depot, DepotConfig, DepotError, CACHEDIR_TAG, DEPOT_FORMAT};
use crate::digest::{Digest, Key};
use crate::discovered::DiscoveredPath;
use crate::report::Reporter;

/// Temporary archives beside the destination are named for this purpose
/// ([`crate::tempname`]).
pub(super) const PACK_TMP: &str = "pack";

/// Removes the temporary archives that packs killed mid-way (kill -9, a
/// lost CI runner) left in `dir`: unlocked (a running pack holds a lock on
/// its own) and untouched for a minute (a pack that just created its file
/// may not have locked it yet).
pub(super) fn sweep_dead_packs(dir: &Path) {
    for (path, _lock) in crate::tempname::abandoned(dir, PACK_TMP) {
        let _ = std::fs::remove_file(path);
    }
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
        unbuilt: Vec::new(),
        signed: opts.signing.as_ref().map(|k| k.source().clone()),
    })
}

/// Removes the entries naming a blob for which `problem` has something to say.
pub(super) fn drop_entries(
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

/// [`pack()`] into the file `dest`, atomically: a temporary file beside it,
/// then a rename. A failed pack leaves `dest` as it was. Like `tar` and
/// `zstd`, the file is not fsync'ed unless `opts.fsync`: an archive is a copy
/// (the depot stays the source), and one cut short by a power loss is refused
/// whole by [`unpack()`](super::unpack()), never half-used.
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
        crate::depot::sync_dir(&dir);
    }
    Ok(summary)
}

/// Where a blob is: its depot (index in the stack), stored file, size and
/// whether it is stored zstd-compressed.
#[derive(Debug, Clone)]
pub(super) struct Located {
    depot: usize,
    location: BlobLocation,
    size: u64,
    zstd: bool,
}

/// Finds each blob in the stack, in parallel, with one `open` each (no
/// hashing yet: [`write_archive`] verifies each blob while the previous ones
/// are being written).
pub(super) fn locate_blobs(
    stack: &[Depot],
    wanted: &BTreeSet<Digest>,
) -> BTreeMap<Digest, Result<Located, String>> {
    let locate = |d: &Digest| -> Result<Located, String> {
        for (depot, dep) in stack.iter().enumerate() {
            // Loose or packed: the stored bytes are the same either way, so
            // the archive is too.
            let blob = match dep.open_blob(d) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => return Err(format!("cannot be read: {e}")),
            };
            return Ok(Located {
                depot,
                location: blob.location().clone(),
                size: blob.stored_len(),
                zstd: !blob.is_raw(),
            });
        }
        Err("is missing from the depot".to_owned())
    };
    let found: Vec<_> = wanted.par_iter().map(|d| (*d, locate(d))).collect();
    found.into_iter().collect()
}

/// Blobs up to this size are read once, by the verifier, which hands the
/// verified bytes to the writer; larger ones are streamed twice.
pub(super) const KEEP_MAX: u64 = 4 << 20;

/// Verifies one blob against its name (a corrupt one is quarantined), and
/// returns its stored bytes when they are small enough to keep.
pub(super) fn verify_blob(
    stack: &[Depot],
    d: &Digest,
    at: &Located,
) -> Result<Option<Vec<u8>>, String> {
    let depot = &stack[at.depot];
    if at.size <= KEEP_MAX {
        let mut stored = Vec::with_capacity(at.size as usize);
        at.location
            .open()
            .and_then(|mut r| r.read_to_end(&mut stored))
            .map_err(|e| format!("cannot be read: {e}"))?;
        return if blobs::stored_bytes_match(d, &stored) {
            Ok(Some(stored))
        } else {
            Err(corrupt(depot.corrupt(d, &at.location)))
        };
    }
    match depot.copy_blob(d, &mut io::sink()) {
        Ok(_) => Ok(None),
        Err(e @ (DepotError::Corrupt { .. } | DepotError::CorruptPacked { .. })) => Err(corrupt(e)),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// How a blob found damaged while packing is reported.
fn corrupt(e: DepotError) -> String {
    match e {
        DepotError::CorruptPacked { .. } => {
            "is corrupt (inside a pack; skipped from now on)".to_owned()
        }
        _ => "is corrupt (moved to quarantine/)".to_owned(),
    }
}

/// What [`write_archive`] wrote.
pub(super) struct Written {
    blobs: u64,
    blob_bytes: u64,
    skipped: Vec<Skipped>,
}

/// Blobs are verified this many at a time, one batch ahead of the writer.
pub(super) const VERIFY_BATCH: usize = 64;

// Long on purpose: the members in the pinned order (the order is the format), with blobs verified one batch ahead of the writer.
pub(super) fn write_archive<W: Write + Send>(
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
    append(&mut tar, layout::CACHEDIR_TAG_FILE, CACHEDIR_TAG.as_bytes())?;
    append(&mut tar, layout::DEPOT_TOML, depot_toml.as_bytes())?;

    let total: u64 = blobs.values().map(|l| l.size).sum();
    append_dir(&mut tar, &format!("{}/", layout::OBJECTS_DIR))?;
    let shards: BTreeSet<String> = blobs
        .keys()
        .map(|d| layout::shard(&d.to_hex()).to_owned())
        .collect();
    for shard in &shards {
        append_dir(&mut tar, &format!("{}/{shard}/", layout::OBJECTS_DIR))?;
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
    append_dir(&mut tar, &format!("{}/", layout::ENTRIES_DIR))?;
    let mut signatures = Vec::new();
    let mut shard = String::new();
    for (key, e) in entries.iter() {
        let hex = key.to_hex();
        if layout::shard(&hex) != shard {
            shard = layout::shard(&hex).to_owned();
            append_dir(&mut tar, &format!("{}/{shard}/", layout::ENTRIES_DIR))?;
        }
        let text = render_entry(e);
        append(&mut tar, &layout::entry(key), text.as_bytes())?;
        if let Some(signing) = &opts.signing {
            // Over the exact bytes of the member just written.
            signatures.push((*key, signing.signature(key, text.as_bytes())));
        }
    }
    if !signatures.is_empty() {
        append_dir(&mut tar, &format!("{}/", layout::SIGNATURES_DIR))?;
        let mut shard = String::new();
        for (key, sig) in &signatures {
            let hex = key.to_hex();
            if layout::shard(&hex) != shard {
                shard = layout::shard(&hex).to_owned();
                append_dir(&mut tar, &format!("{}/{shard}/", layout::SIGNATURES_DIR))?;
            }
            append(&mut tar, &layout::signature(key), sig.as_bytes())?;
        }
    }
    let records = variants_for(stack, entries);
    if !records.is_empty() {
        append_dir(&mut tar, &format!("{}/", layout::VARIANTS_DIR))?;
        let mut shard = String::new();
        for v in &records {
            let hex = v.key.to_hex();
            if layout::shard(&hex) != shard {
                shard = layout::shard(&hex).to_owned();
                append_dir(&mut tar, &format!("{}/{shard}/", layout::VARIANTS_DIR))?;
            }
            append(
                &mut tar,
                &layout::variants(&v.key),
                render_variants(v).as_bytes(),
            )?;
        }
    }
    let frames = tar.into_inner().map_err(ArchiveError::Write)?;
    frames.finish().map_err(ArchiveError::Write)?;
    Ok(written)
}

/// The variants records of the entries packed (those with a depfile), by
/// base key: the path sets of exactly those entries, in the order of the
/// stack's record (newest first) where it has them, else by path.
fn variants_for(stack: &[Depot], entries: &BTreeMap<Key, Entry>) -> Vec<Variants> {
    let mut sets: BTreeMap<Key, BTreeSet<Vec<DiscoveredPath>>> = BTreeMap::new();
    for e in entries.values() {
        if let Some(base) = e.base {
            sets.entry(base).or_default().insert(e.discovered_paths());
        }
    }
    sets.into_iter()
        .map(|(base, mut carried)| {
            let mut v = Variants::new(base);
            let local = stack
                .iter()
                .find_map(|d| d.read_variants(&base).ok().flatten());
            for s in local.iter().flat_map(|l| &l.sets) {
                if carried.remove(&s.paths) {
                    v.sets.push(s.clone());
                }
            }
            v.sets
                .extend(carried.into_iter().map(|paths| PathSet { paths }));
            v.sets.truncate(MAX_SETS);
            v
        })
        .collect()
}

/// Appends blob `d`: `stored` when the verifier kept its bytes (they are
/// what was verified), else read from its file.
pub(super) fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    d: &Digest,
    l: &Located,
    stored: Option<Vec<u8>>,
) -> Result<(), ArchiveError> {
    let name = layout::blob(d);
    if let Some(bytes) = stored {
        let h = header(&name, tar::EntryType::Regular, bytes.len() as u64);
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
    let path = l.location.file();
    let file = l.location.open().map_err(io_err("read blob", path))?;
    let data = Exact {
        inner: file.take(l.size),
        remaining: l.size,
    };
    let h = header(&name, tar::EntryType::Regular, l.size);
    tar.append(&h, data).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io_err("read blob (it shrank while packing)", path)(e),
        _ => ArchiveError::Write(e),
    })
}

/// A ustar header with everything but the path, type and size fixed.
pub(super) fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
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

pub(super) fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    let h = header(path, tar::EntryType::Regular, data.len() as u64);
    tar.append(&h, data).map_err(ArchiveError::Write)
}

pub(super) fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
) -> Result<(), ArchiveError> {
    let h = header(path, tar::EntryType::Directory, 0);
    tar.append(&h, io::empty()).map_err(ArchiveError::Write)
}

/// Yields exactly `remaining` bytes or fails: a tar member must hold as many
/// bytes as its header says.
pub(super) struct Exact<R> {
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

pub(super) struct CountingWriter<W> {
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
