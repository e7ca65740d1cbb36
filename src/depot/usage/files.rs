//! The usage files on disk: listing the logs, the compaction lock, reading
//! every file merged, and compaction (folding the logs into the merged file,
//! then deleting them). Never deletes anything but usage files.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::lines::{Line, Usage};
use super::{now_ms, USAGE_FORMAT};
use crate::depot::layout::{
    USAGE_LEGACY_LOG_PREFIX, USAGE_LEGACY_MERGED, USAGE_LOCK as LOCK,
    USAGE_LOG_PREFIX as LOG_PREFIX, USAGE_LOG_VERSIONED, USAGE_MERGED as MERGED,
    USAGE_MERGED_VERSIONED, USAGE_SUFFIX as SUFFIX,
};
use crate::depot::{checksum, list_dir, write, Depot, DepotError};
use crate::digest::Key;

pub(super) fn usage_dir(depot: &Depot) -> PathBuf {
    depot.root().join(crate::depot::layout::USAGE_DIR)
}

/// The per-process logs present now, sorted. A usage file of a newer format
/// stops the reader, as ARCHITECTURE.md asks of every on-disk name.
pub(super) fn list_logs(depot: &Depot) -> Result<Vec<String>, DepotError> {
    let dir = usage_dir(depot);
    let mut logs = Vec::new();
    for f in list_dir(&dir)? {
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
pub(super) fn lock(depot: &Depot, exclusive: bool, wait: bool) -> Result<Option<File>, DepotError> {
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
pub(super) fn last_uses_of<'k>(
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
    for f in list_dir(&usage_dir(depot))? {
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
