//! The stat memo: `(path, size, mtime, ctime, inode) → digest`, so a build
//! re-hashes only files whose stat changed. It is a memo of the digest, never
//! a replacement for it: a missing, stale, foreign or damaged memo only means
//! more hashing.
//!
//! Git's racy-timestamp rule applies: a file whose mtime is not clearly older
//! than the moment the memo was written could still change within the same
//! timestamp tick without its stat changing, so it is re-hashed. The memo lives
//! in the depot's per-project area under a name derived from the project's
//! absolute root (hashed, so no absolute path is stored), because inode and
//! ctime numbers only mean something for one checkout on one machine.
//!
//! Files outside the project that a build hashes every time (a tool's
//! executable, the system headers a depfile lists) are memoized too, under
//! their absolute path: a project path never starts with `/`, so the two
//! never meet. Such a path names the host, like a discovered path in an
//! entry; the memo is per checkout and per machine anyway.
//!
//! Format (`stat-v1-<hash>.bin`): the magic line, `i128le` write time in ns,
//! `u64le` count, then per record `u32le` path length, path bytes, `u64le`
//! size, `i128le` mtime ns, `i128le` ctime ns, `u64le` inode, 32 digest bytes.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::depot::{Depot, DepotError};
use crate::digest::Digest;
use crate::file_state::Stamp;
use crate::relpath::RelPath;

const MAGIC: &[u8] = b"relocache stat memo v1\n";
/// Files modified less than this long before the memo was written are re-hashed.
const RACY_MARGIN_NS: i128 = 2_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    stamp: Stamp,
    digest: Digest,
}

/// A record of the loaded memo: its path is a range of the loaded bytes, so
/// loading a memo of 50k files allocates two vectors, not 50k strings.
#[derive(Debug)]
struct Loaded {
    path: Range<usize>,
    rec: Rec,
}

/// An in-memory stat memo, shared by the threads of one build.
#[derive(Debug, Default)]
pub struct StatMemo {
    path: Option<PathBuf>,
    written_ns: i128,
    /// The memo file as read; `old` points into it.
    bytes: Vec<u8>,
    /// The loaded records, sorted by path.
    old: Vec<Loaded>,
    /// Which loaded records this build saw a file for (they are kept on save).
    seen: Vec<AtomicBool>,
    /// Records made by this build, by project path or absolute path; they
    /// win over loaded ones.
    fresh: Mutex<HashMap<String, Rec>>,
    dirty: AtomicBool,
}

/// Where a scanned file's loaded record is, from [`StatMemo::align`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

impl Slot {
    /// No record.
    pub const NONE: Slot = Slot(u32::MAX);
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl StatMemo {
    /// Where the memo of the project at `root` lives in `depot`.
    pub fn location(depot: &Depot, project: &str, root: &Path) -> PathBuf {
        let tag = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
        depot
            .root()
            .join(crate::depot::layout::stat_memo(project, &tag[..16]))
    }

    /// Loads the memo at `path`; anything unreadable gives an empty memo.
    pub fn load(path: PathBuf) -> StatMemo {
        let mut memo = StatMemo {
            path: Some(path.clone()),
            ..StatMemo::default()
        };
        if let Ok(bytes) = crate::depot::read_regular(&path) {
            if let Some((written, old)) = decode(&bytes) {
                memo.written_ns = written;
                memo.seen = old.iter().map(|_| AtomicBool::new(false)).collect();
                memo.old = old;
                memo.bytes = bytes;
            }
        }
        memo
    }

    fn old_path(&self, i: usize) -> &str {
        // decode checked that every path is UTF-8.
        std::str::from_utf8(&self.bytes[self.old[i].path.clone()]).unwrap_or_default()
    }

    /// The loaded record of each of `files` (sorted), in one merge pass.
    pub fn align(&self, files: &[RelPath]) -> Vec<Slot> {
        let mut out = Vec::with_capacity(files.len());
        let mut j = 0;
        for f in files {
            while j < self.old.len() && self.old_path(j) < f.as_str() {
                j += 1;
            }
            if j < self.old.len() && self.old_path(j) == f.as_str() {
                self.seen[j].store(true, Ordering::Relaxed);
                out.push(Slot(j as u32));
            } else {
                out.push(Slot::NONE);
            }
        }
        out
    }

    fn trusted(&self, rec: &Rec, stamp: &Stamp) -> Option<Digest> {
        (rec.stamp == *stamp && stamp.mtime_ns < self.written_ns - RACY_MARGIN_NS)
            .then_some(rec.digest)
    }

    /// The memoized digest of the file in `slot` (from [`StatMemo::align`])
    /// when its stat is unchanged and not racy.
    pub fn lookup_slot(&self, slot: Slot, stamp: &Stamp) -> Option<Digest> {
        let rec = &self.old.get(slot.0 as usize)?.rec;
        self.trusted(rec, stamp)
    }

    /// The memoized digest of `path` when its stat is unchanged and not racy.
    pub fn lookup(&self, path: &RelPath, stamp: &Stamp) -> Option<Digest> {
        self.lookup_text(path.as_str(), stamp)
    }

    /// Remembers that `path` with `stamp` hashed to `digest`.
    pub fn record(&self, path: &RelPath, stamp: Stamp, digest: Digest) {
        self.record_text(path.as_str(), stamp, digest)
    }

    /// [`StatMemo::lookup`] for a file outside the project, by its absolute
    /// path (`None` for a path that is not absolute UTF-8).
    pub fn lookup_outside(&self, abs: &Path, stamp: &Stamp) -> Option<Digest> {
        self.lookup_text(outside_text(abs)?, stamp)
    }

    /// [`StatMemo::record`] for a file outside the project (nothing for a
    /// path that is not absolute UTF-8).
    pub fn record_outside(&self, abs: &Path, stamp: Stamp, digest: Digest) {
        if let Some(text) = outside_text(abs) {
            self.record_text(text, stamp, digest)
        }
    }

    fn lookup_text(&self, path: &str, stamp: &Stamp) -> Option<Digest> {
        if let Some(rec) = self.fresh.lock().unwrap().get(path) {
            return self.trusted(rec, stamp);
        }
        let i = self
            .old
            .binary_search_by(|l| self.bytes[l.path.clone()].cmp(path.as_bytes()))
            .ok()?;
        self.seen[i].store(true, Ordering::Relaxed);
        self.trusted(&self.old[i].rec, stamp)
    }

    fn record_text(&self, path: &str, stamp: Stamp, digest: Digest) {
        let rec = Rec { stamp, digest };
        let mut fresh = self.fresh.lock().unwrap();
        if fresh.get(path) != Some(&rec) {
            fresh.insert(path.to_owned(), rec);
            // Even an unchanged record is news: saving moves the memo's write
            // time past the file's mtime, so a racy entry becomes trusted.
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the memo back (atomically) if anything changed. Loaded records
    /// of files this build did not see are kept only while the file exists
    /// (under `root` for a project path), so deleted files leave the memo.
    pub fn save(&self, depot: &Depot, root: &Path) -> Result<(), DepotError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fresh = self.fresh.lock().unwrap();
        let mut recs: Vec<(&str, Rec)> = fresh.iter().map(|(p, r)| (p.as_str(), *r)).collect();
        for (i, l) in self.old.iter().enumerate() {
            let p = self.old_path(i);
            let keep = self.seen[i].load(Ordering::Relaxed)
                || std::fs::symlink_metadata(root.join(p)).is_ok();
            if keep && !fresh.contains_key(p) {
                recs.push((p, l.rec));
            }
        }
        recs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        depot.write_hint(path, &encode(now_ns(), &recs))
    }
}

/// `abs` as the memo's text for a file outside the project.
fn outside_text(abs: &Path) -> Option<&str> {
    abs.to_str().filter(|t| t.starts_with('/'))
}

fn encode(written: i128, recs: &[(&str, Rec)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 24 + recs.len() * 120);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&written.to_le_bytes());
    out.extend_from_slice(&(recs.len() as u64).to_le_bytes());
    for (p, r) in recs {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(&r.stamp.size.to_le_bytes());
        out.extend_from_slice(&r.stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&r.stamp.ctime_ns.to_le_bytes());
        out.extend_from_slice(&r.stamp.ino.to_le_bytes());
        out.extend_from_slice(&r.digest.0);
    }
    out
}

/// The write time and records of a memo file, sorted by path (whatever order
/// they were written in), or `None` when it is damaged.
fn decode(bytes: &[u8]) -> Option<(i128, Vec<Loaded>)> {
    struct R<'a> {
        all: &'a [u8],
        at: usize,
    }
    impl<'a> R<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let s = self.all.get(self.at..self.at.checked_add(n)?)?;
            self.at += n;
            Some(s)
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn i128(&mut self) -> Option<i128> {
            Some(i128::from_le_bytes(self.take(16)?.try_into().ok()?))
        }
    }
    let mut r = R {
        all: bytes,
        at: bytes.strip_prefix(MAGIC).map(|_| MAGIC.len())?,
    };
    let written = r.i128()?;
    let n = r.u64()? as usize;
    let mut old = Vec::with_capacity(n.min(bytes.len() / 100));
    for _ in 0..n {
        let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        let start = r.at;
        std::str::from_utf8(r.take(len)?).ok()?;
        let stamp = Stamp {
            size: r.u64()?,
            mtime_ns: r.i128()?,
            ctime_ns: r.i128()?,
            ino: r.u64()?,
        };
        let digest = Digest(r.take(32)?.try_into().ok()?);
        old.push(Loaded {
            path: start..start + len,
            rec: Rec { stamp, digest },
        });
    }
    if r.at != bytes.len() {
        return None;
    }
    let key = |l: &Loaded| &bytes[l.path.clone()];
    if !old.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
        old.sort_by(|a, b| key(a).cmp(key(b)));
        old.dedup_by(|b, a| key(a) == key(b));
    }
    Some((written, old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8) -> Rec {
        Rec {
            stamp: Stamp {
                size: n as u64,
                mtime_ns: 5,
                ctime_ns: 6,
                ino: 7,
            },
            digest: Digest::of(&[n]),
        }
    }

    #[test]
    fn round_trips_sorted_and_rejects_damage() {
        // Written out of order (as an older writer did): read back sorted.
        let bytes = encode(99, &[("b", rec(2)), ("a/b", rec(1)), ("a", rec(0))]);
        let (w, back) = decode(&bytes).unwrap();
        assert_eq!(w, 99);
        let got: Vec<(&[u8], Rec)> = back
            .iter()
            .map(|l| (&bytes[l.path.clone()], l.rec))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"a"[..], rec(0)),
                (&b"a/b"[..], rec(1)),
                (&b"b"[..], rec(2))
            ]
        );
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode(&[bytes.as_slice(), b"x"].concat()).is_none());
        assert!(decode(b"garbage").is_none());
    }

    #[test]
    fn aligned_slots_find_the_records_of_scanned_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memo.bin");
        let recs = [("a", rec(0)), ("c/d", rec(1)), ("e", rec(2))];
        std::fs::write(&file, encode(10_000_000_000, &recs)).unwrap();
        let memo = StatMemo::load(file);
        let files: Vec<RelPath> = ["a", "b", "c/d", "z"]
            .iter()
            .map(|p| RelPath::new(p).unwrap())
            .collect();
        let slots = memo.align(&files);
        assert_eq!(slots[1], Slot::NONE);
        assert_eq!(slots[3], Slot::NONE);
        assert_eq!(
            memo.lookup_slot(slots[2], &rec(1).stamp),
            Some(rec(1).digest)
        );
        assert_eq!(
            memo.lookup_slot(slots[0], &rec(9).stamp),
            None,
            "stat changed"
        );
        assert_eq!(memo.lookup(&files[2], &rec(1).stamp), Some(rec(1).digest));
        assert_eq!(memo.lookup(&files[1], &rec(1).stamp), None);
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let memo = StatMemo::default();
        let p = RelPath::new("f").unwrap();
        let old = Stamp {
            size: 1,
            mtime_ns: 1_000,
            ctime_ns: 1_000,
            ino: 1,
        };
        memo.record(&p, old, Digest::of(b"f"));
        // written_ns is 0: nothing is old enough to trust yet.
        assert_eq!(memo.lookup(&p, &old), None);
        let memo = StatMemo {
            written_ns: 10_000_000_000,
            ..memo
        };
        assert_eq!(memo.lookup(&p, &old), Some(Digest::of(b"f")));
        let touched = Stamp {
            ctime_ns: 2_000,
            ..old
        };
        assert_eq!(memo.lookup(&p, &touched), None, "a changed ctime misses");
    }
}
