//! The checks an archive's bytes pass while they stream: the guard on the
//! decompressed stream (`max_size`, the ratio rule), the content budget
//! shared by all blobs, and the blake3 of a stored blob's uncompressed
//! content. Pure computation over bytes; no file is opened here.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::{ArchiveError, BOMB_MIN};
use crate::depot::blobs::{self, ZSTD_MAGIC};
use crate::digest::Digest;

/// Which limit the stream guard hit (the I/O error it returns travels
/// through tar, which may rewrap it).
#[derive(Debug, Clone, Copy)]
pub(super) enum Trip {
    TooLarge,
    Bomb { decompressed: u64, compressed: u64 },
}

/// Counts the compressed bytes read.
pub(super) struct CountingReader<R> {
    pub(super) inner: R,
    pub(super) n: Arc<AtomicU64>,
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
pub(super) fn expansion_cap(compressed: u64, max_size: u64, max_ratio: u64) -> u64 {
    if max_ratio == 0 {
        return max_size;
    }
    max_size.min(compressed.saturating_mul(max_ratio).max(BOMB_MIN))
}

/// Enforces `max_size` and the ratio rule on the decompressed stream.
pub(super) struct Guard<R> {
    pub(super) inner: R,
    pub(super) compressed: Arc<AtomicU64>,
    pub(super) out: Rc<Cell<u64>>,
    pub(super) max_size: u64,
    pub(super) max_ratio: u64,
    pub(super) trip: Rc<Cell<Option<Trip>>>,
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

/// The blake3 of a stored blob's uncompressed content, fed its stored bytes
/// in chunks (zstd when they start with the zstd magic, else raw — the rule
/// of [`crate::depot::blobs`]).
pub(super) struct ContentCheck {
    /// The first bytes, until the format is known.
    head: Vec<u8>,
    limit: u64,
    budget: Budget,
    decided: Option<Decided>,
}

pub(super) enum Decided {
    Raw(HashCount),
    Zstd(zstd::stream::write::Decoder<'static, HashCount>),
}

/// Hashes and counts content, failing past `limit` or past the archive's
/// shared content budget.
pub(super) struct HashCount {
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
pub(super) struct Budget {
    pub(super) used: Arc<AtomicU64>,
    /// The archive's compressed bytes read so far (`None`: no ratio rule).
    pub(super) compressed: Option<Arc<AtomicU64>>,
    pub(super) max_size: u64,
    pub(super) max_ratio: u64,
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
pub(super) enum CheckError {
    /// Content beyond the limit.
    Over,
    /// All blobs' content beyond the archive's budget.
    OverBudget,
    /// Not a valid zstd stream: it cannot match its name.
    Invalid,
}

impl ContentCheck {
    pub(super) fn new(limit: u64, budget: Budget) -> ContentCheck {
        ContentCheck {
            head: Vec::with_capacity(4),
            limit,
            budget,
            decided: None,
        }
    }

    pub(super) fn feed(&mut self, mut chunk: &[u8]) -> Result<(), CheckError> {
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

    /// The content's digest and size, once every stored byte was fed.
    pub(super) fn finish(self) -> Result<(Digest, u64), CheckError> {
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
        Ok(hc.done())
    }
}

impl HashCount {
    fn done(self) -> (Digest, u64) {
        (self.hasher.finalize().into(), self.n)
    }

    pub(super) fn new(limit: u64, budget: Budget) -> HashCount {
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
pub(super) fn write_checked<W: Write + HasCount>(w: &mut W, data: &[u8]) -> Result<(), CheckError> {
    match w.write_all(data) {
        Ok(()) => Ok(()),
        Err(_) if w.count().over => Err(CheckError::Over),
        Err(_) if w.count().over_budget => Err(CheckError::OverBudget),
        Err(_) => Err(CheckError::Invalid),
    }
}

pub(super) trait HasCount {
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

/// The error for a content check of member `name` that failed.
pub(super) fn check_error(name: &str, limit: u64, budget: &Budget, e: CheckError) -> ArchiveError {
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

/// The digest and size of the content of a blob held whole in memory: what
/// [`ContentCheck`] computes, read the way the depot reads blobs and with
/// this thread's decompression context (creating one per blob was a sixth
/// of unpack's CPU).
pub(super) fn stored_content_digest(
    stored: &[u8],
    limit: u64,
    budget: &Budget,
) -> Result<(Digest, u64), CheckError> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return if stored.len() as u64 > limit {
            Err(CheckError::Over)
        } else {
            let mut hc = HashCount::new(limit, budget.clone());
            write_checked(&mut hc, stored)?;
            Ok(hc.done())
        };
    }
    thread_local! {
        /// Decoded bytes on their way to the hash: one buffer per thread,
        /// not one allocated and zeroed per blob.
        static DECODED: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
    }
    let hashed = blobs::with_stream(stored, |reader| {
        let mut hc = HashCount::new(limit, budget.clone());
        blobs::with_context(
            &DECODED,
            || vec![0; 64 * 1024],
            |buf| loop {
                match reader.read(buf) {
                    Ok(0) => return Ok(hc.done()),
                    Ok(n) => write_checked(&mut hc, &buf[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(CheckError::Invalid),
                }
            },
        )
    });
    hashed.unwrap_or(Err(CheckError::Invalid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_check_hashes_raw_and_zstd_blobs_by_their_content() {
        let data = b"some content ".repeat(1000);
        let packed = zstd::encode_all(&data[..], 3).unwrap();
        for (stored, chunk) in [(&data, 7), (&packed, 3), (&packed, 100_000)] {
            let mut c = ContentCheck::new(u64::MAX, Budget::unlimited());
            for part in stored.chunks(chunk) {
                assert!(c.feed(part).is_ok());
            }
            assert_eq!(
                c.finish().ok(),
                Some((Digest::of(&data), data.len() as u64))
            );
        }
        // Tiny raw blobs never reach the 4-byte decision.
        let mut c = ContentCheck::new(u64::MAX, Budget::unlimited());
        assert!(c.feed(b"ab").is_ok());
        assert_eq!(c.finish().ok(), Some((Digest::of(b"ab"), 2)));
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
        let digest = |b: &[u8], limit| {
            stored_content_digest(b, limit, &Budget::unlimited())
                .ok()
                .map(|(d, _)| d)
        };
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
