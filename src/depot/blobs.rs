//! Blobs: file contents stored once under `objects-v1/ab/<blake3>`, zstd
//! compressed, or raw when compression does not pay. Every read is verified
//! while it streams; a blob whose bytes do not match its name is moved to
//! `quarantine/` and reported, never handed back.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zstd::zstd_safe::{CCtx, CParameter, DCtx, ResetDirective};

use super::packs::BlobLocation;
use super::{write, Depot, DepotError};
use crate::digest::Digest;

/// The zstd frame magic; a blob starting with it is compressed.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Compression level for blobs.
const LEVEL: i32 = 3;
/// Sample used to decide whether compressing a file pays.
const SAMPLE: usize = 128 * 1024;
/// Files this large are compressed on several threads.
const MT_MIN: u64 = 8 * 1024 * 1024;

pub use super::ingest::Durability;

impl Depot {
    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join(super::layout::blob(d))
    }

    /// Whether blob `d` is present, marking it as just used when it is: a
    /// store that reuses an existing blob refreshes its mtime so gc's grace
    /// period protects it until the entry that references it is published.
    fn reuse_blob(&self, d: &Digest) -> bool {
        let path = self.blob_path(d);
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            // Anything but a regular file there is damage: store the blob.
            Ok(f) if !f.metadata().is_ok_and(|m| m.is_file()) => false,
            Ok(f) => {
                let _ = f.set_modified(std::time::SystemTime::now());
                true
            }
            // Present but not ours to touch (a shared, read-only depot).
            Err(_) => path.is_file(),
        }
    }

    /// Whether blob `d` is present, loose or packed (not verified).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file() || self.has_packed_blob(d)
    }

    /// Whether blob `d` is stored uncompressed (so its stored bytes are its
    /// content), loose or packed.
    pub fn blob_is_raw(&self, d: &Digest) -> bool {
        matches!(self.open_blob(d), Ok(Some(b)) if b.is_raw())
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, DepotError> {
        self.put_bytes_with(bytes, Durability::Now)
    }

    /// [`Depot::put_bytes`] with a choice of durability.
    pub fn put_bytes_with(
        &self,
        bytes: &[u8],
        durability: Durability,
    ) -> Result<Digest, DepotError> {
        let d = Digest::of(bytes);
        if self.reuse_blob(&d) {
            return Ok(d);
        }
        let mut staged = self.ingest_blob()?;
        let sample = &bytes[..bytes.len().min(SAMPLE)];
        let path = staged.path().to_path_buf();
        if should_compress(sample) {
            with_cctx(LEVEL, |ctx| {
                let mut enc = zstd::stream::write::Encoder::with_context(staged.file_mut(), ctx);
                enc.write_all(bytes)?;
                enc.finish().map(|_| ())
            })
            .map_err(DepotError::io("compress", &path))?;
        } else {
            staged.write_all(bytes)?;
        }
        // Named by the digest of the very bytes compressed.
        staged.persist(&d, &d, durability)?;
        Ok(d)
    }

    /// Stores the file at `src`, streaming. When `expected` is given the file
    /// must still hash to it (it was hashed before); otherwise the file
    /// changed while being stored and nothing is kept.
    pub fn put_file(&self, src: &Path, expected: Option<Digest>) -> Result<Digest, DepotError> {
        self.put_file_with(src, expected, Durability::Now)
    }

    /// [`Depot::put_file`] with a choice of durability.
    pub fn put_file_with(
        &self,
        src: &Path,
        expected: Option<Digest>,
        durability: Durability,
    ) -> Result<Digest, DepotError> {
        if let Some(d) = expected {
            if self.reuse_blob(&d) {
                return Ok(d);
            }
        }
        let mut file = File::open(src).map_err(DepotError::io("read output", src))?;
        let len = file.metadata().map_err(DepotError::io("stat", src))?.len();
        let mut head = vec![0u8; SAMPLE.min(len as usize)];
        file.read_exact(&mut head)
            .map_err(DepotError::io("read output", src))?;
        let mut staged = self.ingest_blob()?;
        let stage_path = staged.path().to_path_buf();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&head);
        let wio = DepotError::io("write", &stage_path);
        let compress = should_compress(&head);
        let result = if compress && len >= MT_MIN {
            let mut enc = zstd::Encoder::new(staged.file_mut(), LEVEL)
                .map_err(DepotError::io("compress", src))?;
            let _ = enc.multithread(rayon::current_num_threads() as u32);
            enc.write_all(&head)
                .and_then(|_| copy_hashing(&mut file, &mut enc, &mut hasher))
                .and_then(|_| enc.finish().map(|_| ()))
        } else if compress {
            with_cctx(LEVEL, |ctx| {
                let mut enc = zstd::stream::write::Encoder::with_context(staged.file_mut(), ctx);
                enc.write_all(&head)?;
                copy_hashing(&mut file, &mut enc, &mut hasher)?;
                enc.finish().map(|_| ())
            })
        } else {
            let out = staged.file_mut();
            out.write_all(&head)
                .and_then(|_| copy_hashing(&mut file, out, &mut hasher))
        };
        result.map_err(wio)?;
        let d: Digest = hasher.finalize().into();
        if let Some(e) = expected {
            if e != d {
                return Err(DepotError::Io {
                    action: "store output (it changed while being stored)",
                    path: src.to_path_buf(),
                    source: io::Error::other("content changed during the store"),
                });
            }
        }
        if self.reuse_blob(&d) {
            return Ok(d);
        }
        // Named by the digest of the content as it streamed.
        staged.persist(&d, &d, durability)?;
        Ok(d)
    }

    /// Makes all [`Durability::Batched`] writes so far durable (one `syncfs`).
    pub fn sync_batch(&self) -> Result<(), DepotError> {
        write::sync_batch(self)
    }

    /// Streams blob `d` (loose or packed) into `out`, verifying it. On a
    /// mismatch or a damaged stream a loose blob is quarantined, a packed
    /// one skipped from then on ([`DepotError::CorruptPacked`]), and an
    /// error returned; `out` may then hold a prefix and must be discarded
    /// by the caller.
    pub fn copy_blob(&self, d: &Digest, out: &mut impl Write) -> Result<u64, DepotError> {
        let Some(blob) = self.open_blob(d)? else {
            return Err(DepotError::MissingBlob(*d));
        };
        self.copy_opened(blob, out)
    }

    /// [`Depot::copy_blob`] of a blob already opened.
    pub fn copy_opened(
        &self,
        blob: super::packs::StoredBlob,
        out: &mut impl Write,
    ) -> Result<u64, DepotError> {
        let d = *blob.digest();
        let location = blob.location().clone();
        let write_err = |e| DepotError::Io {
            action: "write restored data for blob",
            path: location_path(&location),
            source: e,
        };
        match copy_whole(&blob, out) {
            Whole::Copied(n) => return Ok(n),
            Whole::WriteFailed(e) => return Err(write_err(e)),
            Whole::Stream => {}
        }
        let copied = with_stream(blob, |reader| {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Ok(None),
                };
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(write_err)?;
                total += n as u64;
            }
            Ok((Digest::from(hasher.finalize()) == d).then_some(total))
        });
        match copied {
            Ok(Ok(Some(total))) => Ok(total),
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) | Err(_) => Err(self.corrupt(&d, &location)),
        }
    }

    /// Re-hashes blob `d` (loose first, else packed) without changing
    /// anything: unlike [`Depot::copy_blob`] a mismatch is reported, not
    /// quarantined, so `verify` can inspect a depot it must not modify.
    /// `Err` only for I/O failures other than the blob being absent or
    /// undecodable.
    pub fn check_blob(&self, d: &Digest) -> Result<BlobHealth, DepotError> {
        match self.open_blob(d)? {
            Some(blob) => Ok(check_stored(blob)),
            None => Ok(BlobHealth::Missing),
        }
    }

    /// Copies blob `d` from `other` into this depot exactly as stored (no
    /// verification, no recompression), for throwaway copies such as
    /// `verify --simulate`. Returns false when `other` lacks it.
    pub(crate) fn copy_stored_blob(&self, other: &Depot, d: &Digest) -> Result<bool, DepotError> {
        let Some(mut blob) = other.open_blob(d)? else {
            return Ok(false);
        };
        if self.has_blob(d) {
            return Ok(true);
        }
        let mut staged = self.ingest_blob()?;
        // A loose blob is copied with copy_file_range: a reflink on btrfs and XFS.
        let copied = match &mut blob {
            b if b.is_loose() => io::copy(&mut b.file_range().0, staged.file_mut()),
            b => io::copy(b, staged.file_mut()),
        };
        copied.map_err(|e| DepotError::Io {
            action: "copy blob",
            path: location_path(blob.location()),
            source: e,
        })?;
        // Not re-hashed: a throwaway copy, whose reads verify it anyway.
        staged.persist(d, d, Durability::Now)?;
        Ok(true)
    }

    /// Reads and verifies a whole (small) blob into memory.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, DepotError> {
        let mut v = Vec::new();
        self.copy_blob(d, &mut v)?;
        Ok(v)
    }

    /// Copies blob `d` from `other` (loose or packed there) into this depot
    /// as a loose blob, as stored (no recompression), verifying it on the way.
    pub fn import_blob(&self, other: &Depot, d: &Digest) -> Result<(), DepotError> {
        if self.has_blob(d) {
            return Ok(());
        }
        // Verify first, then copy the stored bytes.
        other.copy_blob(d, &mut io::sink())?;
        let Some(mut blob) = other.open_blob(d)? else {
            return Err(DepotError::MissingBlob(*d));
        };
        let mut staged = self.ingest_blob()?;
        io::copy(&mut blob, staged.file_mut()).map_err(|e| DepotError::Io {
            action: "copy blob",
            path: location_path(blob.location()),
            source: e,
        })?;
        staged.persist(d, d, Durability::Now)
    }

    /// Moves a corrupt loose blob out of the way and returns the error to
    /// report.
    pub fn quarantine(&self, d: &Digest) -> DepotError {
        let from = self.blob_path(d);
        let _ = std::fs::rename(&from, self.quarantine_path(&d.to_hex()));
        DepotError::Corrupt { digest: *d }
    }

    /// Handles blob `d` found damaged at `at`: a loose file is quarantined,
    /// a packed one recorded as damaged (the pack is left as it is).
    pub(crate) fn corrupt(&self, d: &Digest, at: &BlobLocation) -> DepotError {
        match at {
            BlobLocation::Loose(_) => self.quarantine(d),
            BlobLocation::Packed { .. } => self.damaged_packed(d, at),
        }
    }
}

/// The file a location names, for error messages.
pub(crate) fn location_path(at: &BlobLocation) -> PathBuf {
    at.file().to_path_buf()
}

/// Re-hashes an opened blob: what [`Depot::check_blob`] reports.
pub(crate) fn check_stored(blob: super::packs::StoredBlob) -> BlobHealth {
    let d = *blob.digest();
    let hashed = with_stream(blob, hash_stream);
    let (actual, size) = match hashed {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return BlobHealth::Corrupt {
                why: format!("its stored bytes are damaged ({e})"),
            }
        }
        Err(e) => {
            return BlobHealth::Corrupt {
                why: format!("its stored bytes cannot be read ({e})"),
            }
        }
    };
    if actual != d {
        return BlobHealth::Corrupt {
            why: format!("its content hashes to {actual}"),
        };
    }
    BlobHealth::Sound { size }
}

/// What [`Depot::check_blob`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobHealth {
    /// Present and its content hashes to its name.
    Sound {
        /// Uncompressed size.
        size: u64,
    },
    /// No such file.
    Missing,
    /// Present but its content does not match its name.
    Corrupt {
        /// What is wrong, for the user.
        why: String,
    },
}

thread_local! {
    /// One zstd decompression context per thread, reused for every blob:
    /// creating one costs more than decompressing a typical small blob.
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    /// The same for compression (single-threaded streams only).
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
}

/// Blobs whose content and stored bytes are at most this large are copied
/// whole by [`copy_whole`].
const WHOLE_MAX: u64 = 4 << 20;

thread_local! {
    /// [`copy_whole`]'s buffers: the stored bytes, and the decoded content.
    static WHOLE: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// What [`copy_whole`] did.
enum Whole {
    /// Checked and written: the content's size.
    Copied(u64),
    /// Checked, but writing it failed.
    WriteFailed(io::Error),
    /// Nothing written: too large, of unknown size, this thread's buffers
    /// in use, or not read, decoded and checked in one go (damaged, or a
    /// form only the stream reads, such as several frames): the caller
    /// streams it, which decides, and quarantines what is damaged.
    Stream,
}

/// Copies a blob of known size up to [`WHOLE_MAX`] the way a restore of
/// many small outputs wants it: its stored bytes in one read, decoded in one
/// call into this thread's buffer (no per-blob allocation, no stream
/// buffers), checked against its name before the first byte goes out, then
/// written in one call. A frame that decodes to more than the blob's size
/// fails within the buffer, never past it. Reads by offset: the blob's own
/// reader is left where it was, for the stream.
fn copy_whole(blob: &super::packs::StoredBlob, out: &mut impl Write) -> Whole {
    let (Some(size), stored_len) = (blob.size(), blob.stored_len()) else {
        return Whole::Stream;
    };
    if size > WHOLE_MAX || stored_len > WHOLE_MAX {
        return Whole::Stream;
    }
    WHOLE.with(|cell| {
        let Ok(mut bufs) = cell.try_borrow_mut() else {
            return Whole::Stream;
        };
        let (stored, content) = &mut *bufs;
        // Grown (and zeroed) only when a larger blob comes along.
        if stored.len() < stored_len as usize {
            stored.resize(stored_len as usize, 0);
        }
        let stored = &mut stored[..stored_len as usize];
        let (file, offset, _) = blob.file_range();
        if file.read_exact_at(stored, offset).is_err() {
            return Whole::Stream;
        }
        let bytes: &[u8] = if !stored.starts_with(&ZSTD_MAGIC) {
            stored
        } else {
            content.clear();
            content.reserve(size as usize);
            let decoded = with_context(&DCTX, DCtx::create, |ctx| {
                ctx.reset(ResetDirective::SessionOnly).is_ok()
                    && ctx.decompress(content, stored).is_ok()
            });
            if !decoded {
                return Whole::Stream;
            }
            content
        };
        if bytes.len() as u64 != size || Digest::of(bytes) != *blob.digest() {
            return Whole::Stream;
        }
        match out.write_all(bytes) {
            Ok(()) => Whole::Copied(size),
            Err(e) => Whole::WriteFailed(e),
        }
    })
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

/// Runs `f` with this thread's context kept in `slot` (made by `create` on
/// first use); a nested use on one thread gets a context of its own.
pub(crate) fn with_context<C, T>(
    slot: &'static std::thread::LocalKey<RefCell<Option<C>>>,
    create: fn() -> C,
    f: impl FnOnce(&mut C) -> T,
) -> T {
    slot.with(|cell| {
        let mut own;
        let mut borrowed = cell.try_borrow_mut().ok();
        let ctx = match borrowed.as_deref_mut() {
            Some(s) => s.get_or_insert_with(create),
            None => {
                own = create();
                &mut own
            }
        };
        f(ctx)
    })
}

/// Runs `f` with this thread's compression context, reset to defaults and
/// set to `level` (a nested use on one thread gets a context of its own).
fn with_cctx<T>(level: i32, f: impl FnOnce(&mut CCtx<'static>) -> io::Result<T>) -> io::Result<T> {
    with_context(&CCTX, CCtx::create, |ctx| {
        ctx.reset(ResetDirective::SessionAndParameters)
            .map_err(zstd_error)?;
        ctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(zstd_error)?;
        f(ctx)
    })
}

/// Runs `f` over a reader of a stored blob's uncompressed bytes (not yet
/// verified). `Err` when the file cannot be read or its zstd stream cannot be
/// started; errors while reading come out of the reader.
pub(crate) fn with_stream<R: Read, T>(
    mut file: R,
    f: impl FnOnce(&mut dyn Read) -> T,
) -> io::Result<T> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let mut chained = io::Cursor::new(magic).take(got as u64).chain(file);
    if got < 4 || magic != ZSTD_MAGIC {
        return Ok(f(&mut chained));
    }
    let input = BufReader::with_capacity(64 * 1024, chained);
    DCTX.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Nested use on one thread: a context of its own.
            return Ok(f(&mut zstd::Decoder::with_buffer(input)?));
        };
        let ctx = slot.get_or_insert_with(DCtx::create);
        // A previous stream may have stopped half-way (a corrupt blob).
        ctx.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
        let out = f(&mut zstd::Decoder::with_context(input, ctx));
        Ok(out)
    })
}

/// Whether `stored` (a blob's stored bytes, a zstd frame or raw) is the
/// content named `d`, `size` bytes long: what a dry-run salvage checks.
pub(crate) fn stream_matches(stored: &mut dyn Read, d: &Digest, size: u64) -> bool {
    matches!(
        with_stream(stored, hash_stream),
        Ok(Ok((actual, got))) if actual == *d && got == size
    )
}

/// The digest and length of everything `reader` yields, read in big chunks
/// so blake3 hashes many at once.
pub(crate) fn hash_stream(reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok((hasher.finalize().into(), size)),
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether `stored` (the bytes of a blob file, zstd or raw) decodes to
/// content named `d`.
pub(crate) fn stored_bytes_match(d: &Digest, stored: &[u8]) -> bool {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Digest::of(stored) == *d;
    }
    let hashed = with_stream(stored, hash_stream);
    matches!(hashed, Ok(Ok((actual, _))) if actual == *d)
}

fn copy_hashing(
    src: &mut File,
    dst: &mut impl Write,
    hasher: &mut blake3::Hasher,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
}

/// Compress unless a quick level-1 pass over the sample saves under 10%.
/// Data that starts with the zstd magic is always compressed, so a raw blob
/// can never be mistaken for a compressed one.
fn should_compress(sample: &[u8]) -> bool {
    if sample.starts_with(&ZSTD_MAGIC) {
        return true;
    }
    if sample.len() < 64 {
        return false;
    }
    let compressed = with_cctx(1, |ctx| {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(sample.len()));
        ctx.compress2(&mut out, sample).map_err(zstd_error)?;
        Ok(out.len())
    });
    match compressed {
        Ok(n) => n * 10 < sample.len() * 9,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depot() -> (tempfile::TempDir, Depot) {
        let dir = tempfile::tempdir().unwrap();
        let d = Depot::open_or_create(&dir.path().join("depot")).unwrap();
        (dir, d)
    }

    #[test]
    fn compressible_and_random_blobs_round_trip() {
        let (dir, depot) = depot();
        let text = b"hello hello hello hello ".repeat(1000);
        let mut x = 1u64;
        let random: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut magic = ZSTD_MAGIC.to_vec();
        magic.extend_from_slice(b"not really zstd");
        for data in [
            text.clone(),
            random.clone(),
            magic,
            vec![],
            b"tiny".to_vec(),
        ] {
            let src = dir.path().join("src");
            std::fs::write(&src, &data).unwrap();
            let d = depot.put_file(&src, None).unwrap();
            assert_eq!(d, Digest::of(&data));
            assert_eq!(depot.read_blob(&d).unwrap(), data);
            assert_eq!(depot.put_bytes(&data).unwrap(), d);
        }
        let stored = std::fs::metadata(depot.blob_path(&Digest::of(&text)))
            .unwrap()
            .len();
        assert!(stored < text.len() as u64 / 10, "text should compress");
        let stored = std::fs::read(depot.blob_path(&Digest::of(&random))).unwrap();
        assert_eq!(stored, random, "incompressible data is stored raw");
    }

    #[test]
    fn reusing_a_blob_marks_it_fresh_for_gc() {
        let (_dir, depot) = depot();
        let d = depot.put_bytes(b"shared output").unwrap();
        let p = depot.blob_path(&d);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .append(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(depot.put_bytes(b"shared output").unwrap(), d);
        let age = std::fs::metadata(&p)
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap();
        assert!(
            age.as_secs() < 60,
            "a reused blob looks new to gc's grace period"
        );
    }

    #[test]
    fn a_flipped_byte_is_quarantined_never_returned() {
        let (_dir, depot) = depot();
        let d = depot.put_bytes(&b"abc".repeat(100)).unwrap();
        let p = depot.blob_path(&d);
        let mut raw = std::fs::read(&p).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        std::fs::write(&p, raw).unwrap();
        assert!(matches!(
            depot.read_blob(&d),
            Err(DepotError::Corrupt { .. })
        ));
        assert!(!p.exists());
        assert_eq!(
            std::fs::read_dir(depot.root().join("quarantine"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn check_blob_reports_a_flipped_byte_without_touching_the_depot() {
        let (_dir, depot) = depot();
        let d = depot.put_bytes(&b"abc".repeat(100)).unwrap();
        assert_eq!(
            depot.check_blob(&d).unwrap(),
            BlobHealth::Sound { size: 300 }
        );
        let p = depot.blob_path(&d);
        let mut raw = std::fs::read(&p).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        std::fs::write(&p, &raw).unwrap();
        assert!(matches!(
            depot.check_blob(&d).unwrap(),
            BlobHealth::Corrupt { .. }
        ));
        assert_eq!(std::fs::read(&p).unwrap(), raw, "left in place, unchanged");
        assert!(!depot.root().join("quarantine").exists());
        std::fs::remove_file(&p).unwrap();
        assert_eq!(depot.check_blob(&d).unwrap(), BlobHealth::Missing);
    }

    #[test]
    fn put_file_refuses_content_that_changed_since_it_was_hashed() {
        let (dir, depot) = depot();
        let src = dir.path().join("src");
        std::fs::write(&src, b"new content").unwrap();
        let e = depot
            .put_file(&src, Some(Digest::of(b"old content")))
            .unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");
        assert!(!depot.has_blob(&Digest::of(b"new content")));
    }
}
