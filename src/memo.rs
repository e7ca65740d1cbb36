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
//! Format (`stat-v1-<hash>.bin`): the magic line, `i128le` write time in ns,
//! `u64le` count, then per record `u32le` path length, path bytes, `u64le`
//! size, `i128le` mtime ns, `i128le` ctime ns, `u64le` inode, 32 digest bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::depot::{write, Depot, DepotError};
use crate::digest::Digest;
use crate::inputs::Stamp;
use crate::relpath::RelPath;

const MAGIC: &[u8] = b"relocache stat memo v1\n";
/// Files modified less than this long before the memo was written are re-hashed.
const RACY_MARGIN_NS: i128 = 2_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    stamp: Stamp,
    digest: Digest,
}

/// An in-memory stat memo, shared by the threads of one build.
#[derive(Debug, Default)]
pub struct StatMemo {
    path: Option<PathBuf>,
    written_ns: i128,
    map: Mutex<HashMap<RelPath, Rec>>,
    dirty: std::sync::atomic::AtomicBool,
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
            .join("projects-v1")
            .join(project)
            .join(format!("stat-v1-{}.bin", &tag[..16]))
    }

    /// Loads the memo at `path`; anything unreadable gives an empty memo.
    pub fn load(path: PathBuf) -> StatMemo {
        let mut memo = StatMemo {
            path: Some(path.clone()),
            ..StatMemo::default()
        };
        if let Ok(bytes) = std::fs::read(&path) {
            if let Some((written, map)) = decode(&bytes) {
                memo.written_ns = written;
                memo.map = Mutex::new(map);
            }
        }
        memo
    }

    /// The memoized digest of `path` when its stat is unchanged and not racy.
    pub fn lookup(&self, path: &RelPath, stamp: &Stamp) -> Option<Digest> {
        let map = self.map.lock().unwrap();
        let rec = map.get(path)?;
        (rec.stamp == *stamp && stamp.mtime_ns < self.written_ns - RACY_MARGIN_NS)
            .then_some(rec.digest)
    }

    /// Remembers that `path` with `stamp` hashed to `digest`.
    pub fn record(&self, path: &RelPath, stamp: Stamp, digest: Digest) {
        let rec = Rec { stamp, digest };
        let mut map = self.map.lock().unwrap();
        if map.get(path) != Some(&rec) {
            map.insert(path.clone(), rec);
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Writes the memo back (atomically) if anything changed.
    pub fn save(&self, depot: &Depot) -> Result<(), DepotError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let map = self.map.lock().unwrap();
        let bytes = encode(now_ns(), &map);
        write::write_hint(depot, path, &bytes)
    }
}

fn encode(written: i128, map: &HashMap<RelPath, Rec>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 24 + map.len() * 120);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&written.to_le_bytes());
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (p, r) in map {
        let s = p.as_str().as_bytes();
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
        out.extend_from_slice(&r.stamp.size.to_le_bytes());
        out.extend_from_slice(&r.stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&r.stamp.ctime_ns.to_le_bytes());
        out.extend_from_slice(&r.stamp.ino.to_le_bytes());
        out.extend_from_slice(&r.digest.0);
    }
    out
}

fn decode(bytes: &[u8]) -> Option<(i128, HashMap<RelPath, Rec>)> {
    struct R<'a>(&'a [u8]);
    impl<'a> R<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Some(a)
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn i128(&mut self) -> Option<i128> {
            Some(i128::from_le_bytes(self.take(16)?.try_into().ok()?))
        }
    }
    let mut r = R(bytes.strip_prefix(MAGIC)?);
    let written = r.i128()?;
    let n = r.u64()? as usize;
    let mut map = HashMap::with_capacity(n.min(1 << 22));
    for _ in 0..n {
        let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        // Memo paths are only lookup keys; see RelPath::lookup_key.
        let p = RelPath::lookup_key(std::str::from_utf8(r.take(len)?).ok()?.to_owned());
        let stamp = Stamp {
            size: r.u64()?,
            mtime_ns: r.i128()?,
            ctime_ns: r.i128()?,
            ino: r.u64()?,
        };
        let digest = Digest(r.take(32)?.try_into().ok()?);
        map.insert(p, Rec { stamp, digest });
    }
    r.0.is_empty().then_some((written, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut map = HashMap::new();
        let stamp = Stamp {
            size: 3,
            mtime_ns: 5,
            ctime_ns: 6,
            ino: 7,
        };
        map.insert(
            RelPath::new("a/b").unwrap(),
            Rec {
                stamp,
                digest: Digest::of(b"x"),
            },
        );
        let bytes = encode(99, &map);
        let (w, back) = decode(&bytes).unwrap();
        assert_eq!(w, 99);
        assert_eq!(back, map);
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode(b"garbage").is_none());
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
