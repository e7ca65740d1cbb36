//! Packs: many blobs in one file, read by offset. `objects-v1/packs/
//! pack-<id>.pack` holds blobs exactly as a loose blob file holds them (a
//! zstd frame, or the raw content), and `pack-<id>.idx` says where each one
//! is: sorted by digest, with its offset, stored length, stored form and
//! uncompressed size, and a checksum of the index's own bytes. `<id>` is the
//! blake3 of the index's entries, so two identical packs are one file.
//!
//! A pack is never modified in place. [`PackWriter`] stages the pack in
//! `tmp/`, verifying every blob against its name while it streams, then
//! makes it durable, renames it into place, and writes the index last
//! (through the write door): a pack without its index is invisible to
//! readers and swept by gc. [`PackSet`] is the depot's indexes, loaded once
//! per process; an index failing a check is treated as absent (its blobs are
//! not found) and reported by `verify`.
//!
//! Readers never call this module directly: they go through
//! [`Depot::open_blob`], which looks loose first, then here. This module
//! never deletes a pack (gc does).
//!
//! Index layout (all integers little-endian):
//!
//! ```text
//! offset  size  field
//! 0       8     magic "RCPKIDX\0"
//! 8       4     version (1)
//! 12      4     reserved, 0
//! 16      8     count N
//! 24      64*N  entries, strictly sorted by digest:
//!                 0  32  digest (blake3 of the uncompressed content)
//!                32   8  offset of the stored bytes in the pack
//!                40   8  length of the stored bytes
//!                48   8  uncompressed size
//!                56   1  stored form: 0 raw, 1 zstd
//!                57   7  reserved, 0
//! 24+64N  32    blake3 of every byte before it
//! ```
//!
//! The pack starts with `RCPACK\0\0`, version 1 (u32) and 4 reserved bytes;
//! blobs follow. A raw blob of at least [`ALIGN`] bytes starts at a multiple
//! of [`ALIGN`] (the gap is zeros), so a reflink of its range can serve it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tempfile::NamedTempFile;

use super::blobs::{hash_stream, with_stream, ZSTD_MAGIC};
use super::{layout, write, Depot, DepotError};
use crate::digest::Digest;

/// The first bytes of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"RCPKIDX\0";
/// The first bytes of a pack file.
pub const PACK_MAGIC: [u8; 8] = *b"RCPACK\0\0";
/// The version of both files this build reads and writes.
pub const PACK_VERSION: u32 = 1;
/// Raw blobs at least this long start at a multiple of it in a pack (the
/// block size reflinks need on btrfs and XFS).
pub const ALIGN: u64 = 4096;
const INDEX_HEADER: usize = 24;
const ENTRY_LEN: usize = 64;
const TRAILER: usize = 32;
const PACK_HEADER: u64 = 16;

/// A pack's name: the blake3 of its index's entries.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PackId(pub [u8; 32]);

impl std::fmt::Display for PackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&Digest(self.0).to_hex())
    }
}

impl std::str::FromStr for PackId {
    type Err = crate::digest::BadHex;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Digest>().map(|d| PackId(d.0))
    }
}

/// How a blob's bytes are stored, loose or packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoredForm {
    /// The content itself.
    Raw,
    /// One zstd frame of the content.
    Zstd,
}

/// One blob of a pack, as its index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The blob's name (the blake3 of its uncompressed content).
    pub digest: Digest,
    /// Where its stored bytes start in the pack.
    pub offset: u64,
    /// How many stored bytes.
    pub length: u64,
    /// Its uncompressed size.
    pub size: u64,
    /// Raw or zstd.
    pub form: StoredForm,
}

/// Why an index is not used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexFault {
    /// Shorter than its header and trailer, or not the length its count says.
    #[error("it is {0} bytes long, which is not the length of an index")]
    BadLength(u64),
    /// Not an index of this version.
    #[error("it does not start with the index magic and version 1")]
    BadHeader,
    /// The final checksum does not match the bytes before it.
    #[error("it fails its checksum (damaged)")]
    Checksum,
    /// The entries are not strictly sorted by digest.
    #[error("its entries are not sorted by digest")]
    Unsorted,
    /// A stored-form byte other than 0 or 1.
    #[error("entry {0} has an unknown stored form")]
    BadForm(u64),
    /// Its entries do not hash to the id in its name.
    #[error("its entries do not hash to the id in its name")]
    WrongId,
    /// Its pack file is absent.
    #[error("its pack file is missing")]
    MissingPack,
    /// An entry reaches past the end of the pack (a truncated pack).
    #[error("blob {digest} reaches byte {end} but the pack is {len} bytes long (truncated?)")]
    PastEnd {
        /// The blob.
        digest: Digest,
        /// Its end offset.
        end: u64,
        /// The pack's length.
        len: u64,
    },
    /// Two entries share bytes, or one overlaps the pack header.
    #[error("blob {0} overlaps another blob or the pack header")]
    Overlap(Digest),
    /// The index or its pack cannot be read.
    #[error("it cannot be read: {0}")]
    Unreadable(String),
}

/// Encodes `entries` (sorted here) as index bytes; returns the pack id too.
pub fn encode_index(entries: &mut [IndexEntry]) -> (PackId, Vec<u8>) {
    entries.sort_by_key(|e| e.digest);
    let mut body = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries.iter() {
        body.extend_from_slice(&e.digest.0);
        body.extend_from_slice(&e.offset.to_le_bytes());
        body.extend_from_slice(&e.length.to_le_bytes());
        body.extend_from_slice(&e.size.to_le_bytes());
        body.push(match e.form {
            StoredForm::Raw => 0,
            StoredForm::Zstd => 1,
        });
        body.extend_from_slice(&[0u8; 7]);
    }
    let id = PackId(*blake3::hash(&body).as_bytes());
    let mut out = Vec::with_capacity(INDEX_HEADER + body.len() + TRAILER);
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&PACK_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    (id, out)
}

/// Decodes index bytes, checking length, header, checksum, order and (when
/// given) that the entries hash to `id`. Bounds are checked against the
/// pack by [`check_bounds`].
pub fn decode_index(bytes: &[u8], id: Option<&PackId>) -> Result<Vec<IndexEntry>, IndexFault> {
    let len = bytes.len();
    if len < INDEX_HEADER + TRAILER || !(len - INDEX_HEADER - TRAILER).is_multiple_of(ENTRY_LEN) {
        return Err(IndexFault::BadLength(len as u64));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if bytes[..8] != INDEX_MAGIC || u32_at(8) != PACK_VERSION {
        return Err(IndexFault::BadHeader);
    }
    let count = (len - INDEX_HEADER - TRAILER) / ENTRY_LEN;
    if u64_at(16) != count as u64 {
        return Err(IndexFault::BadLength(len as u64));
    }
    if blake3::hash(&bytes[..len - TRAILER]).as_bytes()[..] != bytes[len - TRAILER..] {
        return Err(IndexFault::Checksum);
    }
    let body = &bytes[INDEX_HEADER..len - TRAILER];
    if let Some(id) = id {
        if blake3::hash(body).as_bytes() != &id.0 {
            return Err(IndexFault::WrongId);
        }
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(count);
    for (i, raw) in body.chunks_exact(ENTRY_LEN).enumerate() {
        let at = INDEX_HEADER + i * ENTRY_LEN;
        let form = match raw[56] {
            0 => StoredForm::Raw,
            1 => StoredForm::Zstd,
            _ => return Err(IndexFault::BadForm(i as u64)),
        };
        let e = IndexEntry {
            digest: Digest(raw[..32].try_into().expect("32 bytes")),
            offset: u64_at(at + 32),
            length: u64_at(at + 40),
            size: u64_at(at + 48),
            form,
        };
        if entries.last().is_some_and(|p| p.digest >= e.digest) {
            return Err(IndexFault::Unsorted);
        }
        entries.push(e);
    }
    Ok(entries)
}

/// What a damaged index still says, for gc's salvage: every whole entry
/// after the header whose stored form is known, in the order found; the
/// header, checksum, count, order and bounds are not checked. Nothing here
/// is trusted: the caller checks each range against the pack and verifies
/// each blob against its digest before it keeps it.
pub fn lenient_entries(index: &[u8]) -> Vec<IndexEntry> {
    let body = index.get(INDEX_HEADER..).unwrap_or_default();
    body.chunks_exact(ENTRY_LEN)
        .filter_map(|raw| {
            let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8"));
            let form = match raw[56] {
                0 => StoredForm::Raw,
                1 => StoredForm::Zstd,
                _ => return None,
            };
            Some(IndexEntry {
                digest: Digest(raw[..32].try_into().expect("32 bytes")),
                offset: u64_at(32),
                length: u64_at(40),
                size: u64_at(48),
                form,
            })
        })
        .collect()
}

impl IndexEntry {
    /// Whether its stored bytes lie inside a pack of `pack_len` bytes,
    /// past the pack's header.
    pub fn is_inside(&self, pack_len: u64) -> bool {
        self.offset >= PACK_HEADER
            && self
                .offset
                .checked_add(self.length)
                .is_some_and(|end| end <= pack_len)
    }
}

/// Checks that every entry lies inside a pack of `pack_len` bytes, past its
/// header. With `overlap`, also that no two entries share a byte (sorting
/// by offset: `verify` pays for it, readers do not).
pub fn check_bounds(
    entries: &[IndexEntry],
    pack_len: u64,
    overlap: bool,
) -> Result<(), IndexFault> {
    for e in entries {
        let end = e.offset.saturating_add(e.length);
        if end > pack_len {
            return Err(IndexFault::PastEnd {
                digest: e.digest,
                end,
                len: pack_len,
            });
        }
        if e.offset < PACK_HEADER {
            return Err(IndexFault::Overlap(e.digest));
        }
    }
    if overlap {
        let mut by_offset: Vec<&IndexEntry> = entries.iter().collect();
        by_offset.sort_by_key(|e| e.offset);
        for w in by_offset.windows(2) {
            if w[0].offset + w[0].length > w[1].offset {
                return Err(IndexFault::Overlap(w[1].digest));
            }
        }
    }
    Ok(())
}

/// Writes one new pack: blobs are appended as they come, each verified
/// against its name while it streams; [`PackWriter::finish`] publishes the
/// pack and then its index. Dropped unfinished, it leaves nothing.
#[derive(Debug)]
pub struct PackWriter {
    depot: Depot,
    staged: NamedTempFile,
    pos: u64,
    entries: Vec<IndexEntry>,
    seen: HashSet<Digest>,
    /// Bytes before this offset were handed to the kernel's writeback.
    flushed: u64,
}

/// How much a pack writer lets pile up before it starts writing it back:
/// the fsync that makes the pack durable then waits for the tail only,
/// while writeback of the rest overlapped reading and checking the next
/// blobs (a 543 MB unpack: 1.47 s -> 1.25 s, medians of 7 on a quiet machine).
const WRITEBACK_STEP: u64 = 8 << 20;

/// A `Read` that copies every byte it reads into the pack being written.
struct Tee<'a, R> {
    src: R,
    out: &'a mut File,
    written: u64,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            // Reported as the writer's error, not as damage of the blob.
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        self.written += n as u64;
        Ok(n)
    }
}

impl Depot {
    /// Starts writing a new pack into this depot (staged in `tmp/`).
    pub fn pack_writer(&self) -> Result<PackWriter, DepotError> {
        let mut staged = write::staging(self)?;
        let mut header = Vec::with_capacity(PACK_HEADER as usize);
        header.extend_from_slice(&PACK_MAGIC);
        header.extend_from_slice(&PACK_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        staged
            .write_all(&header)
            .map_err(DepotError::io("write", staged.path()))?;
        Ok(PackWriter {
            depot: self.clone(),
            staged,
            pos: PACK_HEADER,
            entries: Vec::new(),
            seen: HashSet::new(),
            flushed: 0,
        })
    }
}

impl PackWriter {
    /// Appends one blob: `stored` yields its bytes exactly as a loose blob
    /// file holds them (a zstd frame, or the content when `raw`), `size` is
    /// its uncompressed size. The content is hashed while it streams; when
    /// it is not `digest` (or not `size` bytes, or `raw` disagrees with the
    /// bytes) nothing of it stays in the pack and [`DepotError::Mismatch`]
    /// or [`DepotError::Damaged`] is returned; the writer stays usable. A
    /// digest already added is skipped.
    pub fn add(
        &mut self,
        digest: &Digest,
        stored: &mut dyn Read,
        raw: bool,
        size: u64,
    ) -> Result<(), DepotError> {
        if self.seen.contains(digest) {
            return Ok(());
        }
        let path = self.staged.path().to_path_buf();
        let start = self.begin(raw, size)?;
        let file = self.staged.as_file_mut();
        let mut tee = Tee {
            src: stored,
            out: file,
            written: 0,
            failed: None,
        };
        let mut magic = [0u8; 4];
        let hashed = with_stream(&mut tee, |r| {
            // Sniffed from the first bytes, as a loose read does.
            hash_stream(r)
        })
        .and_then(|r| r)
        .and_then(|h| io::copy(&mut tee, &mut io::sink()).map(|_| h));
        let written = tee.written;
        let failed = tee.failed.take();
        let outcome = match (hashed, failed) {
            (_, Some(e)) => Err(DepotError::io("write", &path)(e)),
            (Err(e), None) => Err(DepotError::Damaged {
                path: path.clone(),
                message: format!("blob {digest} could not be read into the pack: {e}"),
            }),
            (Ok((actual, got)), None) => {
                let _ = file_read_head(self.staged.as_file(), start, &mut magic);
                let is_zstd = written >= 4 && magic == ZSTD_MAGIC;
                if actual != *digest {
                    Err(DepotError::Mismatch {
                        digest: *digest,
                        actual,
                    })
                } else if got != size || raw == is_zstd {
                    Err(DepotError::Damaged {
                        path: path.clone(),
                        message: format!(
                            "blob {digest} was offered as {} of {size} bytes but is {} of {got}",
                            if raw { "raw" } else { "zstd" },
                            if is_zstd { "zstd" } else { "raw" }
                        ),
                    })
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = outcome {
            // Nothing of a refused blob stays.
            let _ = self.staged.as_file().set_len(self.pos);
            return Err(e);
        }
        self.commit(digest, start, written, raw, size);
        Ok(())
    }

    /// Appends one blob whose stored bytes the caller has already checked
    /// against `digest` (unpack verifies a batch of small blobs in parallel
    /// before it writes them, and must not pay for a second hash here).
    /// `raw` must agree with the bytes' first four, as in [`PackWriter::add`].
    pub fn add_checked(
        &mut self,
        digest: &Digest,
        stored: &[u8],
        raw: bool,
        size: u64,
    ) -> Result<(), DepotError> {
        if self.seen.contains(digest) {
            return Ok(());
        }
        let path = self.staged.path().to_path_buf();
        if raw == stored.starts_with(&ZSTD_MAGIC) || (raw && stored.len() as u64 != size) {
            return Err(DepotError::Damaged {
                path,
                message: format!("blob {digest} was offered in a form its bytes do not have"),
            });
        }
        let start = self.begin(raw, size)?;
        if let Err(e) = self.staged.as_file_mut().write_all(stored) {
            let _ = self.staged.as_file().set_len(self.pos);
            return Err(DepotError::io("write", &path)(e));
        }
        self.commit(digest, start, stored.len() as u64, raw, size);
        Ok(())
    }

    /// Where the next blob starts (a raw blob of a block or more on a block
    /// boundary, so a reflink of its range can serve it), with the file
    /// positioned there.
    fn begin(&mut self, raw: bool, size: u64) -> Result<u64, DepotError> {
        let start = if raw && size >= ALIGN {
            self.pos.div_ceil(ALIGN) * ALIGN
        } else {
            self.pos
        };
        let path = self.staged.path().to_path_buf();
        let file = self.staged.as_file_mut();
        if start > self.pos {
            file.set_len(start)
                .map_err(DepotError::io("write", &path))?;
        }
        file.seek(SeekFrom::Start(start))
            .map_err(DepotError::io("write", &path))?;
        Ok(start)
    }

    /// Records a blob written at `start`, and starts writing back what has
    /// piled up.
    fn commit(&mut self, digest: &Digest, start: u64, length: u64, raw: bool, size: u64) {
        self.entries.push(IndexEntry {
            digest: *digest,
            offset: start,
            length,
            size,
            form: if raw {
                StoredForm::Raw
            } else {
                StoredForm::Zstd
            },
        });
        self.seen.insert(*digest);
        self.pos = start + length;
        if self.pos - self.flushed >= WRITEBACK_STEP {
            start_writeback(self.staged.as_file(), self.flushed, self.pos - self.flushed);
            self.flushed = self.pos;
        }
    }

    /// Appends blob `d` of `from` (loose or packed) as it is stored there,
    /// verified on the way. `Ok(false)` when `from` lacks it.
    pub fn add_from(&mut self, from: &Depot, d: &Digest) -> Result<bool, DepotError> {
        let Some(mut blob) = from.open_blob(d)? else {
            return Ok(false);
        };
        let raw = blob.is_raw();
        let size = match blob.size() {
            Some(s) => s,
            None => from.check_blob_size(d)?,
        };
        self.add(d, &mut blob, raw, size)?;
        Ok(true)
    }

    /// How many blobs were added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Publishes the pack: the depot's format goes to 3 if it was lower,
    /// the pack is made durable and renamed into place, then its index is
    /// written (tmp, fsync, rename, fsync of the directory). Returns the
    /// pack's id, or `None` when nothing was added (nothing is written).
    pub fn finish(mut self) -> Result<Option<PackId>, DepotError> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let depot = self.depot.clone();
        depot.require_packed_format()?;
        let (id, index) = encode_index(&mut self.entries);
        let dir = depot.root().join(layout::PACKS_DIR);
        std::fs::create_dir_all(&dir).map_err(DepotError::io("create", &dir))?;
        let pack = depot.root().join(layout::pack_file(&id));
        write::persist(self.staged, &pack)?;
        write::write_bytes(&depot, &depot.root().join(layout::pack_index(&id)), &index)?;
        depot.forget_packs();
        Ok(Some(id))
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` back to disk
/// without waiting for them (Linux's `sync_file_range`); elsewhere nothing.
/// Only a head start for the fsync that makes the pack durable, never
/// instead of it.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor this writer owns; its
        // result changes nothing but timing, so it is not looked at.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

fn file_read_head(file: &File, at: u64, magic: &mut [u8; 4]) -> io::Result<()> {
    file.read_exact_at(magic, at)
}

/// One usable pack: its index, checked, and an open handle on its file.
#[derive(Debug)]
pub struct LoadedPack {
    /// Its id.
    pub id: PackId,
    /// The pack file.
    pub path: PathBuf,
    /// Its length when it was opened.
    pub len: u64,
    /// The index's entries, sorted by digest.
    pub entries: Vec<IndexEntry>,
    file: Arc<File>,
}

impl LoadedPack {
    /// Opens the stored bytes of `e`, one of this pack's entries.
    pub fn open(&self, e: &IndexEntry) -> StoredBlob {
        StoredBlob {
            digest: e.digest,
            location: BlobLocation::Packed {
                pack: self.path.clone(),
                offset: e.offset,
                length: e.length,
            },
            form: e.form,
            size: Some(e.size),
            stored_len: e.length,
            source: Source::Packed(Range {
                file: self.file.clone(),
                pos: e.offset,
                end: e.offset + e.length,
            }),
        }
    }

    /// The entry of blob `d`, by binary search.
    pub fn find(&self, d: &Digest) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by(|e| e.digest.cmp(d))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// A pack that is not used, and why (for `verify`).
#[derive(Debug, Clone)]
pub struct PackFault {
    /// The index file.
    pub index: PathBuf,
    /// What is wrong.
    pub fault: IndexFault,
}

/// The depot's packs: every index that passed its checks, newest name
/// order being irrelevant (a blob in two packs is the same content).
#[derive(Debug, Default)]
pub struct PackSet {
    /// The usable packs, sorted by id.
    pub packs: Vec<LoadedPack>,
    /// Indexes not used, with the reason.
    pub faults: Vec<PackFault>,
    /// The packs directory as it was just before it was listed, when that
    /// listing can be trusted to stay current while the stamp is unchanged.
    settled: Option<DirStamp>,
}

/// What a change to a directory's entries changes: its mtime (and, for a
/// directory made anew, its inode). `None` in a stamp: the directory is absent.
type DirStamp = Option<(u64, i64, i64)>;

/// A directory modified less than this long before it was listed may be
/// modified again within the same timestamp tick without its mtime
/// changing, so its stamp proves nothing (as the stat memo's racy rule).
const RACY_DIR_NS: i128 = 1_000_000_000;

fn dir_stamp(dir: &Path) -> io::Result<DirStamp> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(md) => Ok(Some((md.ino(), md.mtime(), md.mtime_nsec()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The stamp of `dir` taken now, if a listing made after it stays current
/// as long as the stamp does: the directory is absent, or was last
/// modified more than [`RACY_DIR_NS`] ago.
fn settled_stamp(dir: &Path) -> Option<DirStamp> {
    let stamp = dir_stamp(dir).ok()?;
    let Some((_, secs, nanos)) = stamp else {
        return Some(None);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as i128;
    let modified = secs as i128 * 1_000_000_000 + nanos as i128;
    (now - modified > RACY_DIR_NS).then_some(stamp)
}

impl PackSet {
    /// Reads and checks every index of `depot` (bounds against each pack's
    /// length; overlaps too when `overlap`, as `verify` asks).
    pub fn load(depot: &Depot, overlap: bool) -> Result<PackSet, DepotError> {
        let dir = depot.root().join(layout::PACKS_DIR);
        let mut set = PackSet {
            settled: settled_stamp(&dir),
            ..PackSet::default()
        };
        let mut names: Vec<(PackId, PathBuf)> = super::list_dir(&dir)?
            .into_iter()
            .filter_map(|e| {
                let name = e.file_name();
                let id = layout::pack_index_id(name.to_str()?)?;
                Some((id, e.path()))
            })
            .collect();
        names.sort();
        for (id, index) in names {
            match load_one(depot, &id, &index, overlap) {
                Ok(p) => set.packs.push(p),
                Err(fault) => set.faults.push(PackFault { index, fault }),
            }
        }
        Ok(set)
    }

    /// Where blob `d` is packed, if anywhere.
    pub fn find(&self, d: &Digest) -> Option<(&LoadedPack, &IndexEntry)> {
        self.packs.iter().find_map(|p| p.find(d).map(|e| (p, e)))
    }

    /// The ids of every index loaded, used or not, sorted.
    fn index_ids(&self) -> Vec<PackId> {
        let mut ids: Vec<PackId> = self.packs.iter().map(|p| p.id).collect();
        ids.extend(
            self.faults
                .iter()
                .filter_map(|f| layout::pack_index_id(f.index.file_name()?.to_str()?)),
        );
        ids.sort();
        ids
    }

    /// Every packed blob once, sorted.
    pub fn digests(&self) -> Vec<Digest> {
        let mut all: Vec<Digest> = self
            .packs
            .iter()
            .flat_map(|p| p.entries.iter().map(|e| e.digest))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

fn load_one(
    depot: &Depot,
    id: &PackId,
    index: &Path,
    overlap: bool,
) -> Result<LoadedPack, IndexFault> {
    let unreadable = |e: io::Error| IndexFault::Unreadable(e.to_string());
    let bytes = super::read_regular(index).map_err(unreadable)?;
    let entries = decode_index(&bytes, Some(id))?;
    let path = depot.root().join(layout::pack_file(id));
    let file = match crate::file_hash::open_regular(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(IndexFault::MissingPack),
        Err(e) => return Err(unreadable(e)),
    };
    let len = file.metadata().map_err(unreadable)?.len();
    check_bounds(&entries, len, overlap)?;
    Ok(LoadedPack {
        id: *id,
        path,
        len,
        entries,
        file: Arc::new(file),
    })
}

/// The packs of one depot as this process sees them: loaded on first use,
/// dropped when this process writes a pack, and the packed blobs found
/// damaged so far (skipped from then on).
#[derive(Debug, Default)]
pub(crate) struct PackState {
    set: RwLock<Option<Arc<PackSet>>>,
    damaged: Mutex<HashSet<Digest>>,
}

/// Where a stored blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// Its own file, `objects-v1/ab/<hex>`.
    Loose(PathBuf),
    /// A range of a pack file.
    Packed {
        /// The pack file.
        pack: PathBuf,
        /// Where the stored bytes start.
        offset: u64,
        /// How many stored bytes.
        length: u64,
    },
}

impl BlobLocation {
    /// Opens the stored bytes at this location again (e.g. to stream a
    /// blob a second time after verifying it). Not verified.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            BlobLocation::Loose(p) => Ok(Box::new(crate::file_hash::open_regular(p)?)),
            BlobLocation::Packed {
                pack,
                offset,
                length,
            } => Ok(Box::new(Range {
                file: crate::file_hash::open_regular(pack)?,
                pos: *offset,
                end: offset + length,
            })),
        }
    }

    /// The file holding the blob (its own, or the pack), for messages.
    pub fn file(&self) -> &Path {
        match self {
            BlobLocation::Loose(p) => p,
            BlobLocation::Packed { pack, .. } => pack,
        }
    }
}

/// A range of a file, read with `pread`.
#[derive(Debug)]
struct Range<F> {
    file: F,
    pos: u64,
    end: u64,
}

impl<F: std::borrow::Borrow<File>> Read for Range<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.borrow().read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the pack ends inside this blob",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobLocation::Loose(p) => write!(f, "`{}`", p.display()),
            BlobLocation::Packed {
                pack,
                offset,
                length,
            } => write!(
                f,
                "`{}` (bytes {offset}..{})",
                pack.display(),
                offset + length
            ),
        }
    }
}

/// A blob as stored, open for reading: its stored bytes as a [`Read`] (not
/// verified: callers hash what they read, see `depot/blobs.rs`), its form,
/// size and location.
#[derive(Debug)]
pub struct StoredBlob {
    digest: Digest,
    location: BlobLocation,
    form: StoredForm,
    size: Option<u64>,
    stored_len: u64,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Loose(File),
    Packed(Range<Arc<File>>),
}

impl Read for StoredBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::Loose(f) => f.read(buf),
            Source::Packed(range) => range.read(buf),
        }
    }
}

impl StoredBlob {
    /// The blob's name.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// Whether the stored bytes are the content itself.
    pub fn is_raw(&self) -> bool {
        self.form == StoredForm::Raw
    }
    /// Raw or zstd.
    pub fn form(&self) -> StoredForm {
        self.form
    }
    /// The uncompressed size, when known without decompressing (raw blobs,
    /// packed blobs, zstd frames that record it).
    pub fn size(&self) -> Option<u64> {
        self.size
    }
    /// How many bytes are stored.
    pub fn stored_len(&self) -> u64 {
        self.stored_len
    }
    /// Where it is, for messages, quarantine and reflinks.
    pub fn location(&self) -> &BlobLocation {
        &self.location
    }
    /// Whether it is a loose file.
    pub fn is_loose(&self) -> bool {
        matches!(self.location, BlobLocation::Loose(_))
    }
    /// The open file holding the stored bytes (the blob's own, or the
    /// pack) and the range in it: for reflinks and `copy_file_range`.
    pub fn file_range(&self) -> (&File, u64, u64) {
        match &self.source {
            Source::Loose(f) => (f, 0, self.stored_len),
            Source::Packed(Range { file, .. }) => match self.location {
                BlobLocation::Packed { offset, length, .. } => (file, offset, length),
                BlobLocation::Loose(_) => unreachable!("a packed source has a packed location"),
            },
        }
    }
}

impl Depot {
    /// Opens blob `d` wherever it is stored: its loose file first, then the
    /// packs (a packed blob found damaged earlier in this process is
    /// skipped). `None` when it is stored nowhere.
    pub fn open_blob(&self, d: &Digest) -> Result<Option<StoredBlob>, DepotError> {
        let path = self.blob_path(d);
        match crate::file_hash::open_regular_len(&path) {
            Ok((f, len)) => return Ok(Some(loose(d, path, f, len)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A fifo, device or directory planted in its place.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(DepotError::Damaged {
                    path,
                    message: e.to_string(),
                })
            }
            Err(e) => return Err(DepotError::io("read blob", &path)(e)),
        }
        self.open_packed(d)
    }

    /// Opens blob `d` from the packs only.
    pub fn open_packed(&self, d: &Digest) -> Result<Option<StoredBlob>, DepotError> {
        if self.is_damaged(d) {
            return Ok(None);
        }
        let set = self.packs_for(d, false)?;
        Ok(set.find(d).map(|(pack, e)| pack.open(e)))
    }

    /// Whether blob `d` is in a usable pack (not verified), as the disk is
    /// now: the check an entry's publish relies on (see
    /// [`Depot::write_entry`]), so a pack a gc deleted since this process
    /// loaded its packs does not count.
    pub fn has_packed_blob(&self, d: &Digest) -> bool {
        !self.is_damaged(d) && self.packs_for(d, true).is_ok_and(|s| s.find(d).is_some())
    }

    /// The first of `blobs` the depot does not hold as the disk is now:
    /// [`Depot::has_blob`] of each, but asking the disk once per pack that
    /// holds some (is its index still there) instead of twice per blob —
    /// the publish of one entry of 20k blobs by `unpack` paid 40k `stat`s.
    pub fn first_missing_blob(&self, blobs: impl IntoIterator<Item = Digest>) -> Option<Digest> {
        let mut set = self.packs().ok();
        let mut indexed: HashMap<PackId, bool> = HashMap::new();
        for d in blobs {
            let packed = !self.is_damaged(&d)
                && (set.as_ref().and_then(|s| s.find(&d))).is_some_and(|(pack, _)| {
                    *indexed
                        .entry(pack.id)
                        .or_insert_with(|| self.root().join(layout::pack_index(&pack.id)).exists())
                });
            if packed {
                continue;
            }
            if !self.has_blob(&d) {
                return Some(d);
            }
            // It may be in a pack written since the packs were loaded, which
            // `has_blob` just loaded: look there for the next ones.
            set = self.packs().ok();
        }
        None
    }

    /// Whether blob `d` is in the depot, for a writer asking about many
    /// blobs (unpack) whether to store each again: in a pack as this
    /// process loaded them, or loose, where a fan-out directory `loose_dirs`
    /// found missing is not asked again (on a depot of packs, as CI's is,
    /// every loose lookup would be a failed `stat`). A blob another process
    /// stored since is not seen and is stored again: harmless, a blob may
    /// be held twice. A blob it calls present may still be deleted by a gc
    /// before the writer publishes: [`Depot::write_entry`] checks again
    /// under the gc lock.
    pub fn holds_blob(&self, d: &Digest, loose_dirs: &mut HashMap<PathBuf, bool>) -> bool {
        if !self.is_damaged(d) && self.packs().is_ok_and(|s| s.find(d).is_some()) {
            return true;
        }
        let path = self.blob_path(d);
        let dir = path.parent().expect("a blob path has a fan-out directory");
        let dir_exists = match loose_dirs.get(dir) {
            Some(&exists) => exists,
            None => {
                let exists = dir.is_dir();
                loose_dirs.insert(dir.to_path_buf(), exists);
                exists
            }
        };
        dir_exists && path.is_file()
    }

    /// The loaded packs, read again when they are stale for `d`: `d` is in
    /// none of them and the indexes on disk are not the ones loaded (a gc
    /// moved loose blobs into a new pack, or rewrote the pack holding `d`),
    /// or, with `check_hit`, the index of the pack holding `d` is gone (a gc
    /// deleted it; an open pack still reads, but it is no longer there for
    /// the next process). A lookup that hits costs nothing more without
    /// `check_hit`, one stat with it; a miss costs one stat of the packs
    /// directory, or a listing of it when it changed less than a second
    /// before it was loaded (its mtime could then miss a change).
    fn packs_for(&self, d: &Digest, check_hit: bool) -> Result<Arc<PackSet>, DepotError> {
        let set = self.packs()?;
        let stale = match set.find(d) {
            Some((pack, _)) => {
                check_hit && !self.root().join(layout::pack_index(&pack.id)).exists()
            }
            // A miss: stale when the packs directory changed since it was
            // listed. One stat tells while its stamp holds (a depot without
            // packs, or one whose packs settled); else the listing does.
            None => match &set.settled {
                Some(stamp)
                    if dir_stamp(&self.root().join(layout::PACKS_DIR))
                        .ok()
                        .as_ref()
                        == Some(stamp) =>
                {
                    false
                }
                _ => self.index_ids()? != set.index_ids(),
            },
        };
        if !stale {
            return Ok(set);
        }
        self.forget_packs();
        self.packs()
    }

    /// The ids of the indexes in the packs directory, sorted.
    fn index_ids(&self) -> Result<Vec<PackId>, DepotError> {
        let dir = self.root().join(layout::PACKS_DIR);
        let mut ids: Vec<PackId> = super::list_dir(&dir)?
            .iter()
            .filter_map(|e| layout::pack_index_id(e.file_name().to_str()?))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// This depot's packs, loaded on first use in this process.
    pub fn packs(&self) -> Result<Arc<PackSet>, DepotError> {
        if let Some(set) = self.pack_state.set.read().expect("pack lock").as_ref() {
            return Ok(set.clone());
        }
        let mut slot = self.pack_state.set.write().expect("pack lock");
        if let Some(set) = slot.as_ref() {
            return Ok(set.clone());
        }
        let set = Arc::new(PackSet::load(self, false)?);
        *slot = Some(set.clone());
        Ok(set)
    }

    /// Drops the loaded packs, so the next lookup reads the indexes again
    /// (after this process wrote or deleted a pack).
    pub fn forget_packs(&self) {
        *self.pack_state.set.write().expect("pack lock") = None;
    }

    fn is_damaged(&self, d: &Digest) -> bool {
        self.pack_state
            .damaged
            .lock()
            .expect("pack lock")
            .contains(d)
    }

    /// Records that packed blob `d`, read from `at`, does not match its
    /// name: later reads in this process skip it, and a note goes to
    /// `quarantine/` (the pack itself is left as it is: its other blobs are
    /// sound and may be needed). Returns the error to report.
    pub(crate) fn damaged_packed(&self, d: &Digest, at: &BlobLocation) -> DepotError {
        self.pack_state
            .damaged
            .lock()
            .expect("pack lock")
            .insert(*d);
        let note = format!("blob {d} stored at {at} does not match its name; the pack is left as it is and this blob is skipped\n");
        let _ = write::write_hint(
            self,
            &self.quarantine_path(&format!("{}.packed", d.to_hex())),
            note.as_bytes(),
        );
        let pack = match at {
            BlobLocation::Packed { pack, .. } => pack.clone(),
            BlobLocation::Loose(p) => p.clone(),
        };
        DepotError::CorruptPacked { digest: *d, pack }
    }

    /// The uncompressed size of blob `d`, by decompressing it (verified).
    fn check_blob_size(&self, d: &Digest) -> Result<u64, DepotError> {
        self.copy_blob(d, &mut io::sink())
    }
}

/// A loose blob's [`StoredBlob`]: its form from its first bytes, its size
/// from its length `len` (raw) or its frame header (zstd, when recorded).
fn loose(d: &Digest, path: PathBuf, f: File, len: u64) -> Result<StoredBlob, DepotError> {
    let mut head = [0u8; 18];
    let got = read_head(&f, &mut head).map_err(DepotError::io("read blob", &path))?;
    let zstd = got >= 4 && head[..4] == ZSTD_MAGIC;
    let size = if zstd {
        zstd::zstd_safe::get_frame_content_size(&head[..got])
            .ok()
            .flatten()
    } else {
        Some(len)
    };
    Ok(StoredBlob {
        digest: *d,
        location: BlobLocation::Loose(path),
        form: if zstd {
            StoredForm::Zstd
        } else {
            StoredForm::Raw
        },
        size,
        stored_len: len,
        source: Source::Loose(f),
    })
}

fn read_head(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What [`pack_loose_blobs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackedLoose {
    /// The pack written, if any blob was loose.
    pub pack: Option<String>,
    /// Blobs moved into it.
    pub blobs: u64,
    /// Loose files removed after the pack was durable.
    pub removed: u64,
}

/// Moves every loose blob of `depot` into one new pack: each is verified
/// while it is copied (a damaged one is left loose, for `verify` and the
/// next read to find), the pack and its index are made durable, and only
/// then are the loose files deleted. Callers hold the exclusive gc lock
/// (`gc --repack` does), so no reader or store is between the steps.
#[doc(hidden)]
pub fn pack_loose_blobs(depot: &Depot) -> Result<PackedLoose, DepotError> {
    let loose_blobs = depot.list_blobs()?;
    let mut writer = depot.pack_writer()?;
    let mut packed = Vec::new();
    for d in &loose_blobs {
        let path = depot.blob_path(d);
        let Ok((f, len)) = crate::file_hash::open_regular_len(&path) else {
            continue;
        };
        let mut blob = loose(d, path, f, len)?;
        let raw = blob.is_raw();
        let size = match blob.size() {
            Some(s) => s,
            None => match depot.check_blob(d)? {
                super::blobs::BlobHealth::Sound { size } => size,
                _ => continue,
            },
        };
        match writer.add(d, &mut blob, raw, size) {
            Ok(()) => packed.push(*d),
            Err(DepotError::Mismatch { .. } | DepotError::Damaged { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let Some(id) = writer.finish()? else {
        return Ok(PackedLoose::default());
    };
    let mut removed = 0;
    for d in &packed {
        let path = depot.blob_path(d);
        if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(PackedLoose {
        pack: Some(id.to_string()),
        blobs: packed.len() as u64,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depot::blobs::BlobHealth;

    fn depot() -> (tempfile::TempDir, Depot) {
        let dir = tempfile::tempdir().unwrap();
        let d = Depot::open_or_create(&dir.path().join("depot")).unwrap();
        (dir, d)
    }

    /// Incompressible bytes (stored raw), `n` long.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A depot with a small text, a big text, a small and a big raw blob,
    /// and an empty one, all packed.
    fn packed() -> (tempfile::TempDir, Depot, Vec<Vec<u8>>) {
        let (dir, depot) = depot();
        let contents = vec![
            b"hello hello hello hello hello hello hello hello hello".repeat(3),
            b"compressible ".repeat(50_000),
            noise(100, 1),
            noise(10_000, 2),
            vec![],
        ];
        for c in &contents {
            depot.put_bytes(c).unwrap();
        }
        let done = pack_loose_blobs(&depot).unwrap();
        assert_eq!((done.blobs, done.removed), (5, 5));
        (dir, depot, contents)
    }

    fn only_pack(depot: &Depot) -> (PathBuf, PathBuf) {
        let set = depot.packs().unwrap();
        assert_eq!(set.packs.len(), 1, "{:?}", set.faults);
        let p = &set.packs[0];
        (p.path.clone(), depot.root().join(layout::pack_index(&p.id)))
    }

    #[test]
    fn packed_blobs_read_back_like_loose_ones() {
        let (_dir, depot, contents) = packed();
        assert!(depot.list_blobs().unwrap().is_empty(), "no loose file left");
        for c in &contents {
            let d = Digest::of(c);
            assert!(depot.has_blob(&d));
            assert_eq!(&depot.read_blob(&d).unwrap(), c);
            assert_eq!(
                depot.check_blob(&d).unwrap(),
                BlobHealth::Sound {
                    size: c.len() as u64
                }
            );
            let b = depot.open_blob(&d).unwrap().unwrap();
            assert!(!b.is_loose());
            assert_eq!(b.size(), Some(c.len() as u64));
        }
        let big_raw = depot.open_blob(&Digest::of(&contents[3])).unwrap().unwrap();
        assert!(big_raw.is_raw());
        let (_, offset, _) = big_raw.file_range();
        assert_eq!(offset % ALIGN, 0, "a raw blob of 4 KiB or more is aligned");
        assert!(!depot.blob_is_raw(&Digest::of(&contents[1])));
        let text = std::fs::read_to_string(depot.config_path()).unwrap();
        assert!(text.contains("format = 3"), "{text}");
        assert!(Depot::open_existing(depot.root()).is_ok());
    }

    #[test]
    fn loose_wins_over_packed() {
        let (_dir, depot, contents) = packed();
        let d = depot.put_bytes(&contents[0]).unwrap();
        assert!(depot.open_blob(&d).unwrap().unwrap().is_loose());
    }

    /// Sets `dir`'s mtime an hour back, as a depot whose packs settled.
    fn age(dir: &Path) {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let f = File::open(dir).unwrap();
        f.set_modified(hour_ago).unwrap();
    }

    #[test]
    fn a_pack_another_process_adds_is_found_after_a_miss() {
        let (_dir, depot) = depot();
        depot.put_bytes(b"first").unwrap();
        pack_loose_blobs(&depot).unwrap();
        let packs = depot.root().join(layout::PACKS_DIR);
        age(&packs);
        // This process loads the settled packs and misses "second" with one stat.
        let reader = Depot::open_existing(depot.root()).unwrap();
        let second = Digest::of(b"second");
        assert!(!reader.has_blob(&second));
        assert!(reader.has_blob(&Digest::of(b"first")));
        // Another process packs "second": the packs directory changes.
        let writer = Depot::open_existing(depot.root()).unwrap();
        writer.put_bytes(b"second").unwrap();
        pack_loose_blobs(&writer).unwrap();
        assert!(reader.has_blob(&second), "the miss reads the packs again");
        assert_eq!(reader.read_blob(&second).unwrap(), b"second");
        // A directory changed within the last second is listed on every
        // miss, whatever its stamp says.
        let third = Digest::of(b"third");
        assert!(!reader.has_blob(&third));
        writer.put_bytes(b"third").unwrap();
        pack_loose_blobs(&writer).unwrap();
        assert!(reader.has_blob(&third));
    }

    #[test]
    fn the_publish_check_sees_packs_written_and_deleted_since_they_were_loaded() {
        let (_dir, depot, contents) = packed();
        let (_, index) = only_pack(&depot);
        let reader = Depot::open_existing(depot.root()).unwrap();
        let all: Vec<Digest> = contents.iter().map(|c| Digest::of(c)).collect();
        assert_eq!(reader.first_missing_blob(all.clone()), None);
        // Another process packs a new blob: found though not loaded yet.
        let writer = Depot::open_existing(depot.root()).unwrap();
        let new = writer.put_bytes(b"written since").unwrap();
        pack_loose_blobs(&writer).unwrap();
        assert_eq!(reader.first_missing_blob([all[0], new]), None);
        // A gc deletes the first pack (its index first): its blobs are
        // missing, though this process still has the pack loaded.
        std::fs::remove_file(&index).unwrap();
        assert_eq!(reader.first_missing_blob([new, all[2]]), Some(all[2]));
        let never = Digest::of(b"never stored");
        assert_eq!(reader.first_missing_blob([new, never]), Some(never));
    }

    #[test]
    fn an_unpack_sees_packed_and_loose_blobs_without_asking_per_blob() {
        let (_dir, depot, contents) = packed();
        let mut dirs = HashMap::new();
        assert!(depot.holds_blob(&Digest::of(&contents[1]), &mut dirs));
        assert!(!depot.holds_blob(&Digest::of(b"not stored"), &mut dirs));
        let loose = depot.put_bytes(b"stored loose").unwrap();
        assert!(depot.holds_blob(&loose, &mut HashMap::new()));
        assert!(dirs.values().all(|exists| !exists), "{dirs:?}");
    }

    #[test]
    fn checked_blobs_are_written_as_offered_and_a_wrong_form_is_refused() {
        let (_dir, depot) = depot();
        let big = noise(10_000, 3);
        let text = b"checked ".repeat(1000);
        let frame = zstd::bulk::compress(&text, 3).unwrap();
        let mut w = depot.pack_writer().unwrap();
        w.add_checked(&Digest::of(b"tiny"), b"tiny", true, 4)
            .unwrap();
        let e = w
            .add_checked(&Digest::of(&text), &frame, true, text.len() as u64)
            .unwrap_err();
        assert!(e.to_string().contains("form"), "{e}");
        let e = w
            .add_checked(&Digest::of(b"raw"), b"raw", false, 3)
            .unwrap_err();
        assert!(e.to_string().contains("form"), "{e}");
        w.add_checked(&Digest::of(&big), &big, true, big.len() as u64)
            .unwrap();
        w.add_checked(&Digest::of(&text), &frame, false, text.len() as u64)
            .unwrap();
        assert_eq!(w.len(), 3);
        w.finish().unwrap().unwrap();
        assert_eq!(depot.read_blob(&Digest::of(b"tiny")).unwrap(), b"tiny");
        assert_eq!(depot.read_blob(&Digest::of(&text)).unwrap(), text);
        let b = depot.open_blob(&Digest::of(&big)).unwrap().unwrap();
        assert_eq!(b.file_range().1 % ALIGN, 0, "a raw blob is aligned");
        assert_eq!(depot.read_blob(&Digest::of(&big)).unwrap(), big);
        assert!(!depot.has_blob(&Digest::of(b"raw")));
    }

    #[test]
    fn a_blob_that_is_not_its_name_never_enters_a_pack() {
        let (_dir, depot) = depot();
        let mut w = depot.pack_writer().unwrap();
        let e = w
            .add(&Digest::of(b"claimed"), &mut &b"actual"[..], true, 6)
            .unwrap_err();
        assert!(matches!(e, DepotError::Mismatch { .. }), "{e}");
        let e = w
            .add(&Digest::of(b"actual"), &mut &b"actual"[..], false, 6)
            .unwrap_err();
        assert!(e.to_string().contains("offered as zstd"), "{e}");
        w.add(&Digest::of(b"good"), &mut &b"good"[..], true, 4)
            .unwrap();
        assert_eq!(w.len(), 1);
        w.finish().unwrap().unwrap();
        let (pack, _) = only_pack(&depot);
        assert_eq!(std::fs::metadata(pack).unwrap().len(), PACK_HEADER + 4);
        assert!(!depot.has_blob(&Digest::of(b"actual")));
        assert_eq!(depot.read_blob(&Digest::of(b"good")).unwrap(), b"good");
    }

    #[test]
    fn an_empty_writer_writes_nothing_and_keeps_format_2() {
        let (_dir, depot) = depot();
        assert_eq!(depot.pack_writer().unwrap().finish().unwrap(), None);
        assert!(!depot.root().join(layout::PACKS_DIR).exists());
        let text = std::fs::read_to_string(depot.config_path()).unwrap();
        assert!(text.contains("format = 2"), "{text}");
    }

    #[test]
    fn a_flipped_byte_in_a_pack_is_never_returned_and_the_pack_is_kept() {
        let (_dir, depot, contents) = packed();
        let (pack, _) = only_pack(&depot);
        let d = Digest::of(&contents[3]);
        let BlobLocation::Packed { offset, .. } =
            depot.open_blob(&d).unwrap().unwrap().location().clone()
        else {
            panic!("packed")
        };
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[offset as usize + 10] ^= 0xff;
        std::fs::write(&pack, &bytes).unwrap();
        let fresh = Depot::open_existing(depot.root()).unwrap();
        assert!(matches!(
            fresh.check_blob(&d).unwrap(),
            BlobHealth::Corrupt { .. }
        ));
        let e = fresh.read_blob(&d).unwrap_err();
        assert!(matches!(e, DepotError::CorruptPacked { .. }), "{e}");
        assert_eq!(std::fs::read(&pack).unwrap(), bytes, "the pack is kept");
        assert!(
            fresh.open_blob(&d).unwrap().is_none(),
            "skipped from now on"
        );
        assert!(!fresh.has_blob(&d));
        assert_eq!(
            fresh.read_blob(&Digest::of(&contents[1])).unwrap(),
            contents[1]
        );
        let notes = std::fs::read_dir(fresh.root().join("quarantine"))
            .unwrap()
            .count();
        assert_eq!(notes, 1);
    }

    #[test]
    fn a_truncated_pack_or_damaged_index_hides_the_pack() {
        let (_dir, depot, contents) = packed();
        let (pack, index) = only_pack(&depot);
        let len = std::fs::metadata(&pack).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(&pack)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let fresh = Depot::open_existing(depot.root()).unwrap();
        let set = fresh.packs().unwrap();
        assert!(set.packs.is_empty());
        assert!(matches!(set.faults[0].fault, IndexFault::PastEnd { .. }));
        assert!(!fresh.has_blob(&Digest::of(&contents[0])));

        let mut bytes = std::fs::read(&index).unwrap();
        bytes[INDEX_HEADER + 40] ^= 1;
        std::fs::write(&index, &bytes).unwrap();
        let fresh = Depot::open_existing(depot.root()).unwrap();
        let set = fresh.packs().unwrap();
        assert_eq!(set.faults[0].fault, IndexFault::Checksum);
    }

    #[test]
    fn an_index_out_of_order_or_past_the_end_is_refused_even_when_sealed() {
        let e = |digest: u8, offset: u64| IndexEntry {
            digest: Digest([digest; 32]),
            offset,
            length: 10,
            size: 10,
            form: StoredForm::Raw,
        };
        let (id, mut bytes) = encode_index(&mut [e(1, 16), e(2, 26)]);
        assert_eq!(decode_index(&bytes, Some(&id)).unwrap().len(), 2);
        // Swap the two entries and re-seal: unsorted.
        let (a, b) = (INDEX_HEADER, INDEX_HEADER + ENTRY_LEN);
        let first: Vec<u8> = bytes[a..b].to_vec();
        bytes.copy_within(b..b + ENTRY_LEN, a);
        bytes[b..b + ENTRY_LEN].copy_from_slice(&first);
        let n = bytes.len() - TRAILER;
        let sum = *blake3::hash(&bytes[..n]).as_bytes();
        bytes[n..].copy_from_slice(&sum);
        assert_eq!(decode_index(&bytes, None), Err(IndexFault::Unsorted));
        let entries = [e(1, 16), e(2, 26)];
        assert!(check_bounds(&entries, 36, true).is_ok());
        assert!(matches!(
            check_bounds(&entries, 35, true),
            Err(IndexFault::PastEnd { .. })
        ));
        assert_eq!(
            check_bounds(&[e(1, 16), e(2, 20)], 36, true),
            Err(IndexFault::Overlap(Digest([2; 32])))
        );
        assert!(matches!(
            decode_index(&bytes[..bytes.len() - 1], None),
            Err(IndexFault::BadLength(_))
        ));
    }

    /// The index layout, byte by byte (ARCHITECTURE.md, "Formats on disk").
    #[test]
    fn the_index_layout_is_pinned() {
        let (id, bytes) = encode_index(&mut [IndexEntry {
            digest: Digest([7; 32]),
            offset: 4096,
            length: 3,
            size: 5,
            form: StoredForm::Zstd,
        }]);
        let mut want = b"RCPKIDX\0".to_vec();
        want.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let body_at = want.len();
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[0, 16, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(id.0, *blake3::hash(&want[body_at..]).as_bytes());
        let sum = *blake3::hash(&want).as_bytes();
        want.extend_from_slice(&sum);
        assert_eq!(bytes, want);
    }
}
