//! Access tracking: when each entry was last used (the LRU clock of `gc`) and
//! the counters behind `stats`, kept inside the depot so they move with it.
//! File mtimes are never the clock: a copied depot has all-new mtimes and
//! must keep its LRU order. This module never deletes entries or blobs.
//!
//! ```text
//! usage/log-v2-<unique>.jsonl   one per build process, written once when it ends
//!                               (tmp + fsync + a rename that never replaces a file)
//! usage/merged-v2.jsonl         the fold of every log so far, rewritten (through
//!                               the write door) only under usage/compact.lock
//! usage/compact.lock            advisory lock: compaction exclusive, readers shared
//! ```
//!
//! No file is ever appended to, and none is written by two processes, so any
//! number of processes or machines (NFS) can record at once without losing a
//! line. Compaction folds the logs into the merged file and then deletes them;
//! the merged file names the logs it folded, so a crash between those two
//! steps never counts a log twice.
//!
//! Each line is one JSON object, a space and the first 16 hex digits of the
//! blake3 of the object's text (pinned by `line_format_is_pinned`); a line
//! failing its checksum is skipped, like any line that is not whole:
//!
//! ```text
//! {"ev":"use","t":<unix ms>,"key":"<hex>"} <sum>            an entry was hit or stored
//! {"ev":"count","t":…,"project":…,"target":…,"hits":…} <sum>  counters of one process
//! {"ev":"reset","t":…} <sum>                                 merged only: `stats --reset`
//! {"ev":"folded","logs":["log-v2-….jsonl"]} <sum>            merged only: logs already in it
//! ```
//!
//! A use is logged at most once per process and, when the key's last known
//! use is more recent than `usage_interval` (DEPOT.toml, default one day),
//! not at all: like Scratch.jl's once-a-day usage log, a hit does not cost a
//! write per key. Counters are summed per process into one line per target.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{checksum, write, Depot, DepotError};
use crate::digest::Key;

/// Version of the usage log format (in every usage file name). 2: a
/// checksum on every line.
pub const USAGE_FORMAT: u32 = 2;
/// How often one key's use is logged at most, unless DEPOT.toml says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
use super::layout::{
    USAGE_LEGACY_LOG_PREFIX, USAGE_LEGACY_MERGED, USAGE_LOCK as LOCK,
    USAGE_LOG_PREFIX as LOG_PREFIX, USAGE_LOG_VERSIONED, USAGE_MERGED as MERGED,
    USAGE_MERGED_VERSIONED, USAGE_SUFFIX as SUFFIX,
};
/// A build folds the logs into the merged file once this many pile up.
const COMPACT_AT: usize = 32;

/// Event counters of one target (or a whole depot). Room is left for more
/// (remote hits, uploads) as new fields default to zero in old logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Targets restored from the depot.
    pub hits: u64,
    /// Targets looked up and not found (then built or failed).
    pub misses: u64,
    /// Commands that ran and succeeded.
    pub builds: u64,
    /// Targets that failed.
    pub failures: u64,
    /// Output bytes of newly stored entries (logical, before dedup and compression).
    pub bytes_stored: u64,
    /// Bytes written into projects by restores.
    pub bytes_restored: u64,
    /// Build time saved by hits: the stored build duration of each hit's entry.
    pub saved_ms: u64,
    /// Time spent building.
    pub build_ms: u64,
    /// Local misses restored from the remote cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_hits: u64,
    /// Local misses the remote did not have either.
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_misses: u64,
    /// Remote requests that failed (unreachable, refused, server errors).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_errors: u64,
    /// Remote requests that took longer than the timeout.
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_timeouts: u64,
    /// Downloads whose content did not match their name (never restored).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_corrupt: u64,
    /// Entries uploaded to the remote.
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_uploads: u64,
    /// Bytes downloaded from the remote (as stored: compressed).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_bytes_down: u64,
    /// Bytes uploaded to the remote (as stored: compressed).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_bytes_up: u64,
}

/// Remote counters are left out of a line while zero, so logs without a
/// remote read exactly as before (and older relocaches ignore them).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counters {
    /// Adds `other` to `self`, saturating: a damaged entry or log line with
    /// a huge number must not wrap a total around.
    pub fn add(&mut self, other: &Counters) {
        self.hits = self.hits.saturating_add(other.hits);
        self.misses = self.misses.saturating_add(other.misses);
        self.builds = self.builds.saturating_add(other.builds);
        self.failures = self.failures.saturating_add(other.failures);
        self.bytes_stored = self.bytes_stored.saturating_add(other.bytes_stored);
        self.bytes_restored = self.bytes_restored.saturating_add(other.bytes_restored);
        self.saved_ms = self.saved_ms.saturating_add(other.saved_ms);
        self.build_ms = self.build_ms.saturating_add(other.build_ms);
        self.remote_hits = self.remote_hits.saturating_add(other.remote_hits);
        self.remote_misses = self.remote_misses.saturating_add(other.remote_misses);
        self.remote_errors = self.remote_errors.saturating_add(other.remote_errors);
        self.remote_timeouts = self.remote_timeouts.saturating_add(other.remote_timeouts);
        self.remote_corrupt = self.remote_corrupt.saturating_add(other.remote_corrupt);
        self.remote_uploads = self.remote_uploads.saturating_add(other.remote_uploads);
        self.remote_bytes_down = self
            .remote_bytes_down
            .saturating_add(other.remote_bytes_down);
        self.remote_bytes_up = self.remote_bytes_up.saturating_add(other.remote_bytes_up);
    }

    fn is_empty(&self) -> bool {
        *self == Counters::default()
    }
}

/// One line of a usage file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum Line {
    Use {
        t: u64,
        key: Key,
    },
    Count {
        t: u64,
        project: String,
        target: String,
        #[serde(flatten)]
        counters: Counters,
    },
    Reset {
        t: u64,
    },
    Folded {
        logs: Vec<String>,
    },
}

/// Everything the usage files say, merged.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Last recorded use of each key, unix milliseconds.
    pub last_use: HashMap<Key, u64>,
    /// Counters per (project, target) since the last reset.
    pub counters: BTreeMap<(String, String), Counters>,
    /// When the counters were last reset (unix ms), if ever.
    pub since: Option<u64>,
    /// Logs not yet folded into the merged file.
    pub pending_logs: usize,
    /// Logs the merged file already holds (maybe not yet deleted).
    folded: BTreeSet<String>,
}

impl Usage {
    /// The counters of every target, summed.
    pub fn totals(&self) -> Counters {
        let mut c = Counters::default();
        for v in self.counters.values() {
            c.add(v);
        }
        c
    }

    fn apply(&mut self, line: Line) {
        match line {
            Line::Use { t, key } => {
                let e = self.last_use.entry(key).or_insert(t);
                *e = (*e).max(t);
            }
            Line::Count {
                project,
                target,
                counters,
                ..
            } => self
                .counters
                .entry((project, target))
                .or_default()
                .add(&counters),
            Line::Reset { t } => self.since = Some(self.since.unwrap_or(0).max(t)),
            Line::Folded { logs } => self.folded.extend(logs),
        }
    }

    /// Lines that fail their checksum, are not whole JSON or not a known
    /// event (a newer relocache may add events) are skipped.
    fn apply_text(&mut self, text: &str) {
        for l in text.lines().filter_map(checksum::open_line) {
            if let Ok(line) = serde_json::from_str::<Line>(l) {
                self.apply(line);
            }
        }
    }

    /// The merged file: sorted, so equal states give equal bytes.
    fn to_text(&self) -> String {
        let mut lines = Vec::new();
        if let Some(t) = self.since {
            lines.push(Line::Reset { t });
        }
        for ((project, target), c) in &self.counters {
            lines.push(Line::Count {
                t: 0,
                project: project.clone(),
                target: target.clone(),
                counters: *c,
            });
        }
        let mut uses: Vec<(&Key, &u64)> = self.last_use.iter().collect();
        uses.sort();
        lines.extend(uses.into_iter().map(|(k, t)| Line::Use { t: *t, key: *k }));
        if !self.folded.is_empty() {
            lines.push(Line::Folded {
                logs: self.folded.iter().cloned().collect(),
            });
        }
        render(&lines)
    }
}

fn render(lines: &[Line]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&checksum::seal_line(
            &serde_json::to_string(l).expect("usage lines serialize"),
        ));
        s.push('\n');
    }
    s
}

/// The current time in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The depot's `usage_interval` (DEPOT.toml), or [`DEFAULT_INTERVAL`].
pub fn interval(depot: &Depot) -> Result<Duration, DepotError> {
    match &depot.config().usage_interval {
        None => Ok(DEFAULT_INTERVAL),
        Some(text) => crate::units::parse_age(text).map_err(|e| DepotError::Io {
            action: "use the usage_interval setting of",
            path: depot.config_path(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

fn usage_dir(depot: &Depot) -> PathBuf {
    depot.root().join(super::layout::USAGE_DIR)
}

/// The per-process logs present now, sorted. A usage file of a newer format
/// stops the reader, as ARCHITECTURE.md asks of every on-disk name.
fn list_logs(depot: &Depot) -> Result<Vec<String>, DepotError> {
    let dir = usage_dir(depot);
    let mut logs = Vec::new();
    for f in super::list_dir(&dir)? {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with(LOG_PREFIX) && name.ends_with(SUFFIX) {
            logs.push(name);
            continue;
        }
        let version = name
            .strip_prefix(USAGE_LOG_VERSIONED)
            .or_else(|| name.strip_prefix(USAGE_MERGED_VERSIONED))
            .and_then(|rest| rest.split(['-', '.']).next())
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(v) = version.filter(|v| *v > USAGE_FORMAT) {
            return Err(DepotError::NewerFormat {
                path: dir.join(&name),
                found: v,
            });
        }
    }
    logs.sort();
    Ok(logs)
}

/// A log's text. Bytes that are not UTF-8 (a torn or damaged write) spoil
/// only their line, which then is not JSON and is skipped like any other.
fn read_text(path: &Path) -> Result<Option<String>, DepotError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8(b).unwrap_or_else(|e| {
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }))),
        // A log folded and deleted by a compaction since it was listed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DepotError::io("read usage log", path)(e)),
    }
}

/// The compaction lock, shared for readers and exclusive for compaction.
/// `None` when it is busy and `wait` is false, or (shared only) when the
/// depot is read-only and the lock file cannot be created.
fn lock(depot: &Depot, exclusive: bool, wait: bool) -> Result<Option<File>, DepotError> {
    let dir = usage_dir(depot);
    let path = dir.join(LOCK);
    let opened = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                std::fs::create_dir_all(&dir)?;
            }
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .or_else(|_| File::open(&path));
    let file = match opened {
        Ok(f) => f,
        Err(_) if !exclusive => return Ok(None),
        Err(e) => return Err(DepotError::io("create lock", &path)(e)),
    };
    let res = match (exclusive, wait) {
        (true, true) => file.lock().map(|_| true),
        (false, true) => file.lock_shared().map(|_| true),
        (true, false) => match file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        },
        (false, false) => match file.try_lock_shared() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        },
    };
    match res {
        Ok(true) => Ok(Some(file)),
        Ok(false) => Ok(None),
        Err(e) => Err(DepotError::io("lock", &path)(e)),
    }
}

fn read_unlocked(depot: &Depot) -> Result<Usage, DepotError> {
    let dir = usage_dir(depot);
    let logs = list_logs(depot)?;
    let mut usage = Usage::default();
    if let Some(text) = read_text(&dir.join(MERGED))? {
        usage.apply_text(&text);
    }
    for name in logs {
        if usage.folded.contains(&name) {
            continue;
        }
        if let Some(text) = read_text(&dir.join(&name))? {
            usage.apply_text(&text);
            usage.pending_logs += 1;
        }
    }
    Ok(usage)
}

/// The last recorded use of each of `keys` in every usage file of `depot`.
/// Use lines are matched as text and only those naming one of the keys are
/// looked at, so a build's cost does not grow with the depot's history (the
/// merged file of a depot that has seen 100k keys is 10 MB of JSON).
fn last_uses_of<'k>(
    depot: &Depot,
    keys: impl Iterator<Item = &'k Key>,
) -> Result<HashMap<Key, u64>, DepotError> {
    let wanted: HashMap<String, Key> = keys.map(|k| (k.to_hex(), *k)).collect();
    let mut last: HashMap<Key, u64> = HashMap::new();
    let mut note = |key: Key, t: u64| {
        let e = last.entry(key).or_insert(t);
        *e = (*e).max(t);
    };
    let dir = usage_dir(depot);
    let names = std::iter::once(MERGED.to_owned()).chain(list_logs(depot)?);
    for name in names {
        let Some(text) = read_text(&dir.join(&name))? else {
            continue;
        };
        // Counter lines, most of a log, as this version writes them.
        let lines = text
            .lines()
            .filter(|l| !l.starts_with("{\"ev\":\"count\""))
            .filter_map(checksum::open_line);
        for l in lines {
            match use_line(l) {
                Some((t, hex)) => {
                    if let Some(k) = wanted.get(hex) {
                        note(*k, t);
                    }
                }
                // Any other line (or layout): parse it properly.
                None => {
                    if let Ok(Line::Use { t, key }) = serde_json::from_str::<Line>(l) {
                        if wanted.contains_key(&key.to_hex()) {
                            note(key, t);
                        }
                    }
                }
            }
        }
    }
    Ok(last)
}

/// `(t, key hex)` of a use line exactly as [`render`] writes it.
fn use_line(l: &str) -> Option<(u64, &str)> {
    let rest = l.strip_prefix("{\"ev\":\"use\",\"t\":")?;
    let (t, rest) = rest.split_once(',')?;
    let hex = rest.strip_prefix("\"key\":\"")?.strip_suffix("\"}")?;
    Some((t.parse().ok()?, hex))
}

/// Removes the usage files of format 1 (their lines carry no checksum and
/// are never read); returns how many there were.
pub(crate) fn remove_legacy(depot: &Depot) -> Result<usize, DepotError> {
    let mut n = 0;
    for f in super::list_dir(&usage_dir(depot))? {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with(USAGE_LEGACY_LOG_PREFIX) || name == USAGE_LEGACY_MERGED {
            let p = f.path();
            match std::fs::remove_file(&p) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DepotError::io("remove old usage log", &p)(e)),
            }
        }
    }
    Ok(n)
}

/// Reads every usage file of `depot`, merged. Writes nothing (beyond the
/// empty lock file), so it works on a read-only depot.
pub fn read(depot: &Depot) -> Result<Usage, DepotError> {
    let _shared = lock(depot, false, true)?;
    read_unlocked(depot)
}

/// What [`compact`] should do besides folding the logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactOptions<'a> {
    /// Zero the counters (`stats --reset`); uses are kept.
    pub reset: bool,
    /// Forget the uses of keys not in this set (entries gc or clear removed).
    pub keep: Option<&'a HashSet<Key>>,
    /// Wait for a compaction already running instead of skipping.
    pub wait: bool,
}

/// The result of a compaction.
#[derive(Debug, Clone)]
pub struct Compacted {
    /// The state now in the merged file.
    pub usage: Usage,
    /// How many logs were folded in.
    pub logs_folded: usize,
}

/// Folds every log into the merged file, then deletes the logs. Logs that
/// appear meanwhile stay for the next compaction; none is lost or counted
/// twice. `None` when another compaction runs and `opts.wait` is false.
pub fn compact(depot: &Depot, opts: CompactOptions<'_>) -> Result<Option<Compacted>, DepotError> {
    let Some(_lock) = lock(depot, true, opts.wait)? else {
        return Ok(None);
    };
    let dir = usage_dir(depot);
    let merged_path = dir.join(MERGED);
    let mut usage = Usage::default();
    if let Some(text) = read_text(&merged_path)? {
        usage.apply_text(&text);
    }
    // Logs a crashed compaction folded in but did not delete.
    let already = std::mem::take(&mut usage.folded);
    let mut folded = BTreeSet::new();
    let mut done = Vec::new();
    for name in list_logs(depot)? {
        if already.contains(&name) {
            done.push(name);
            continue;
        }
        if let Some(text) = read_text(&dir.join(&name))? {
            usage.apply_text(&text);
            folded.insert(name);
        }
    }
    if opts.reset {
        usage.counters.clear();
        usage.since = Some(now_ms());
    }
    if let Some(keep) = opts.keep {
        usage.last_use.retain(|k, _| keep.contains(k));
    }
    let logs_folded = folded.len();
    let changed = logs_folded > 0 || !done.is_empty() || opts.reset || opts.keep.is_some();
    usage.folded = folded;
    if changed {
        write::write_bytes(depot, &merged_path, usage.to_text().as_bytes())?;
    }
    for name in usage.folded.iter().chain(&done) {
        let p = dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DepotError::io("remove folded usage log", &p)(e)),
        }
    }
    write::sync_dir(&dir);
    Ok(Some(Compacted { usage, logs_folded }))
}

/// Collects one process's uses and counters, and writes them as one log
/// when [`Recorder::flush`] is called (at the end of a build).
#[derive(Debug, Default)]
pub struct Recorder {
    project: String,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    counts: BTreeMap<String, Counters>,
    used: BTreeMap<Key, u64>,
}

impl Recorder {
    /// A recorder for `project`'s targets.
    pub fn new(project: &str) -> Recorder {
        Recorder {
            project: project.to_owned(),
            pending: Mutex::default(),
        }
    }

    /// Updates the counters of `target`.
    pub fn count(&self, target: &str, f: impl FnOnce(&mut Counters)) {
        let mut p = self.pending.lock().unwrap();
        f(p.counts.entry(target.to_owned()).or_default());
    }

    /// Notes that `key`'s entry was just used (hit or stored).
    pub fn used(&self, key: &Key) {
        self.pending.lock().unwrap().used.insert(*key, now_ms());
    }

    /// A hit of `key`: its stored build took `saved_ms`, the restore wrote `bytes`.
    pub fn hit(&self, target: &str, key: &Key, saved_ms: u64, bytes: u64) {
        self.used(key);
        self.count(target, |c| {
            c.hits += 1;
            c.saved_ms = c.saved_ms.saturating_add(saved_ms);
            c.bytes_restored += bytes;
        });
    }

    /// Writes what was recorded as a new log in `depot` (nothing when
    /// nothing happened). Uses within the depot's interval are left out.
    pub fn flush(&self, depot: &Depot) -> Result<Option<PathBuf>, DepotError> {
        let p = std::mem::take(&mut *self.pending.lock().unwrap());
        let counts: Vec<(String, Counters)> = p
            .counts
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if counts.is_empty() && p.used.is_empty() {
            return Ok(None);
        }
        let interval = interval(depot)?.as_millis() as u64;
        if list_logs(depot)?.len() >= COMPACT_AT {
            // Best effort: gc and stats --reset compact too, and report errors.
            let _ = compact(depot, CompactOptions::default());
        }
        let known = if interval > 0 && !p.used.is_empty() {
            let _shared = lock(depot, false, true)?;
            last_uses_of(depot, p.used.keys())?
        } else {
            HashMap::new()
        };
        let now = now_ms();
        let mut lines: Vec<Line> = counts
            .into_iter()
            .map(|(target, counters)| Line::Count {
                t: now,
                project: self.project.clone(),
                target,
                counters,
            })
            .collect();
        for (key, t) in p.used {
            let recent = known
                .get(&key)
                .is_some_and(|last| t.saturating_sub(*last) < interval);
            if !recent {
                lines.push(Line::Use { t, key });
            }
        }
        let path = write::write_new(
            depot,
            &usage_dir(depot),
            LOG_PREFIX,
            SUFFIX,
            render(&lines).as_bytes(),
        )?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn depot() -> (tempfile::TempDir, Depot) {
        let dir = tempfile::tempdir().unwrap();
        let d = Depot::open_or_create(&dir.path().join("depot")).unwrap();
        (dir, d)
    }

    fn key(n: u32) -> Key {
        Key(Digest::of(&n.to_le_bytes()))
    }

    fn logs(depot: &Depot) -> Vec<String> {
        list_logs(depot).unwrap()
    }

    #[test]
    fn totals_saturate_instead_of_wrapping() {
        let mut c = Counters {
            saved_ms: u64::MAX - 5,
            ..Counters::default()
        };
        c.add(&Counters {
            saved_ms: 10,
            hits: 1,
            ..Counters::default()
        });
        assert_eq!(c.saved_ms, u64::MAX);
        assert_eq!(c.hits, 1);
    }

    /// Remote counters appear in a line only when non-zero, so a log of a
    /// build without a remote is byte-for-byte the v1 format above.
    #[test]
    fn remote_counters_are_written_only_when_used() {
        let line = |c: Counters| Line::Count {
            t: 1,
            project: "p".into(),
            target: "t".into(),
            counters: c,
        };
        let plain = render(&[line(Counters::default())]);
        assert!(!plain.contains("remote"), "{plain}");
        let used = Counters {
            remote_hits: 2,
            remote_bytes_down: 300,
            ..Counters::default()
        };
        let text = render(&[line(used)]);
        assert!(
            text.contains("\"remote_hits\":2,\"remote_bytes_down\":300"),
            "{text}"
        );
        assert!(!text.contains("remote_misses"), "{text}");
        let back: Line = serde_json::from_str(checksum::open_line(text.trim()).unwrap()).unwrap();
        assert_eq!(back, line(used));
    }

    /// Golden lines: the usage format on disk. Changing it needs USAGE_FORMAT + 1.
    #[test]
    fn line_format_is_pinned() {
        let k = Key(Digest([0xab; 32]));
        let lines = vec![
            Line::Use {
                t: 1700000000123,
                key: k,
            },
            Line::Count {
                t: 1700000000456,
                project: "demo".into(),
                target: "lib".into(),
                counters: Counters {
                    hits: 1,
                    misses: 2,
                    builds: 3,
                    failures: 4,
                    bytes_stored: 5,
                    bytes_restored: 6,
                    saved_ms: 7,
                    build_ms: 8,
                    ..Counters::default()
                },
            },
            Line::Reset { t: 9 },
            Line::Folded {
                logs: vec!["log-v2-0123456789abcdef.jsonl".into()],
            },
        ];
        let hex = "ab".repeat(32);
        let golden = format!(
            "{{\"ev\":\"use\",\"t\":1700000000123,\"key\":\"{hex}\"}} 3b29b9856c83d3dd\n\
             {{\"ev\":\"count\",\"t\":1700000000456,\"project\":\"demo\",\"target\":\"lib\",\"hits\":1,\"misses\":2,\"builds\":3,\"failures\":4,\"bytes_stored\":5,\"bytes_restored\":6,\"saved_ms\":7,\"build_ms\":8}} 0a5c2a6144e27c21\n\
             {{\"ev\":\"reset\",\"t\":9}} 886a49956c154479\n\
             {{\"ev\":\"folded\",\"logs\":[\"log-v2-0123456789abcdef.jsonl\"]}} 5f755096832b2fc6\n"
        );
        assert_eq!(render(&lines), golden);
        let parsed: Vec<Line> = golden
            .lines()
            .map(|l| serde_json::from_str(checksum::open_line(l).unwrap()).unwrap())
            .collect();
        assert_eq!(parsed, lines);
        // Older logs without a counter field still parse (it is zero).
        let old: Line =
            serde_json::from_str(r#"{"ev":"count","t":1,"project":"p","target":"t","hits":2}"#)
                .unwrap();
        assert!(
            matches!(old, Line::Count { counters, .. } if counters.hits == 2 && counters.misses == 0)
        );
    }

    #[test]
    fn a_use_is_logged_once_per_interval() {
        let (_dir, depot) = depot();
        let r = Recorder::new("p");
        r.hit("a", &key(1), 10, 5);
        r.hit("a", &key(1), 10, 5);
        let first = std::fs::read_to_string(r.flush(&depot).unwrap().unwrap()).unwrap();
        assert_eq!(first.matches("\"use\"").count(), 1, "{first}");
        // A second process within the interval counts, but logs no use.
        let r = Recorder::new("p");
        r.hit("a", &key(1), 10, 5);
        let second = std::fs::read_to_string(r.flush(&depot).unwrap().unwrap()).unwrap();
        assert!(!second.contains("\"use\""), "{second}");
        let u = read(&depot).unwrap();
        assert_eq!(u.totals().hits, 3);
        assert_eq!(u.totals().saved_ms, 30);
        assert_eq!(u.totals().bytes_restored, 15);
        assert!(Recorder::new("p").flush(&depot).unwrap().is_none());
    }

    /// A build looks up only its own keys' last uses, as text; a use known
    /// from the merged file, or written in another JSON layout, still counts,
    /// and an old use or another key's does not.
    #[test]
    fn recent_uses_are_found_wherever_and_however_they_are_written() {
        let (_dir, depot) = depot();
        let r = Recorder::new("p");
        r.used(&key(1));
        r.flush(&depot).unwrap();
        compact(&depot, CompactOptions::default()).unwrap().unwrap();
        let now = now_ms();
        let dir = usage_dir(&depot);
        std::fs::write(
            dir.join(format!("{LOG_PREFIX}handwritten{SUFFIX}")),
            format!(
                "{}\n{}\nnot json\n{}\n",
                checksum::seal_line(&format!(
                    "{{\"key\":\"{}\",\"t\":{now},\"ev\":\"use\"}}",
                    key(2).to_hex()
                )),
                checksum::seal_line(&format!(
                    "{{\"ev\":\"use\",\"t\":1,\"key\":\"{}\"}}",
                    key(3).to_hex()
                )),
                // A damaged line: its checksum fails, so it is skipped.
                checksum::seal_line(&format!(
                    "{{\"ev\":\"use\",\"t\":1,\"key\":\"{}\"}}",
                    key(4).to_hex()
                ))
                .replacen("\"t\":1", "\"t\":2", 1),
            ),
        )
        .unwrap();
        let keys = [key(1), key(2), key(3), key(4)];
        let last = last_uses_of(&depot, keys.iter()).unwrap();
        assert!(last[&key(1)] + 60_000 > now, "from the merged file");
        assert_eq!(last[&key(2)], now, "a use line in another layout");
        assert_eq!(last[&key(3)], 1);
        assert!(!last.contains_key(&key(4)));
        let r = Recorder::new("p");
        for k in &keys {
            r.used(k);
        }
        let text = std::fs::read_to_string(r.flush(&depot).unwrap().unwrap()).unwrap();
        let logged: Vec<&str> = text.lines().filter(|l| l.contains("\"use\"")).collect();
        assert_eq!(logged.len(), 2, "{text}");
        assert!(text.contains(&key(3).to_hex()) && text.contains(&key(4).to_hex()));
    }

    #[test]
    fn an_interval_of_zero_logs_every_use() {
        let (_dir, depot) = depot();
        let toml = depot.root().join("DEPOT.toml");
        std::fs::write(
            &toml,
            checksum::seal("format = 2\nusage_interval = \"0s\"\n"),
        )
        .unwrap();
        let depot = Depot::open_existing(depot.root()).unwrap();
        for _ in 0..2 {
            let r = Recorder::new("p");
            r.used(&key(1));
            let text = std::fs::read_to_string(r.flush(&depot).unwrap().unwrap()).unwrap();
            assert!(text.contains("\"use\""), "{text}");
        }
        std::fs::write(
            &toml,
            checksum::seal("format = 2\nusage_interval = \"soon\"\n"),
        )
        .unwrap();
        let depot = Depot::open_existing(depot.root()).unwrap();
        let r = Recorder::new("p");
        r.used(&key(1));
        let e = r.flush(&depot).unwrap_err().to_string();
        assert!(e.contains("usage_interval") && e.contains("help:"), "{e}");
    }

    #[test]
    fn compaction_folds_logs_and_a_crash_before_deleting_them_counts_nothing_twice() {
        let (_dir, depot) = depot();
        let r = Recorder::new("p");
        r.hit("a", &key(1), 1, 1);
        let log = r.flush(&depot).unwrap().unwrap();
        let saved = std::fs::read(&log).unwrap();
        let c = compact(&depot, CompactOptions::default()).unwrap().unwrap();
        assert_eq!(c.logs_folded, 1);
        assert!(logs(&depot).is_empty());
        // As if the compaction had crashed after writing merged-v1.jsonl.
        std::fs::write(&log, &saved).unwrap();
        assert_eq!(read(&depot).unwrap().totals().hits, 1);
        let c = compact(&depot, CompactOptions::default()).unwrap().unwrap();
        assert_eq!(c.logs_folded, 0);
        assert_eq!(c.usage.totals().hits, 1);
        assert!(logs(&depot).is_empty());
        assert!(c.usage.last_use.contains_key(&key(1)));
    }

    #[test]
    fn reset_zeroes_counters_but_keeps_last_uses() {
        let (_dir, depot) = depot();
        let r = Recorder::new("p");
        r.hit("a", &key(1), 1, 1);
        r.flush(&depot).unwrap();
        let opts = CompactOptions {
            reset: true,
            wait: true,
            keep: None,
        };
        compact(&depot, opts).unwrap().unwrap();
        let u = read(&depot).unwrap();
        assert_eq!(u.totals(), Counters::default());
        assert!(u.since.is_some());
        assert!(u.last_use.contains_key(&key(1)));
    }

    #[test]
    fn concurrent_writers_and_compactions_lose_nothing() {
        let (_dir, depot) = depot();
        let writers = 4;
        let rounds = 25;
        std::thread::scope(|s| {
            for w in 0..writers {
                let depot = &depot;
                s.spawn(move || {
                    for i in 0..rounds {
                        let r = Recorder::new("p");
                        r.hit("a", &key(w * 100 + i), 1, 2);
                        r.count("b", |c| c.builds += 1);
                        r.flush(depot).unwrap();
                    }
                });
            }
            for _ in 0..2 {
                let depot = &depot;
                s.spawn(move || {
                    for _ in 0..rounds {
                        compact(depot, CompactOptions::default()).unwrap();
                    }
                });
            }
        });
        let u = read(&depot).unwrap();
        let n = u64::from(writers * rounds);
        assert_eq!(u.totals().hits, n);
        assert_eq!(u.totals().builds, n);
        assert_eq!(u.totals().bytes_restored, 2 * n);
        assert_eq!(u.last_use.len() as u64, n);
    }

    #[test]
    fn a_newer_usage_format_stops_the_reader() {
        let (_dir, depot) = depot();
        std::fs::write(depot.root().join("usage/log-v3-abc.jsonl"), "").unwrap();
        let e = read(&depot).unwrap_err().to_string();
        assert!(e.contains("newer than this relocache supports"), "{e}");
    }
}
