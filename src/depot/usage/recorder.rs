//! [`Recorder`]: one process's uses and counters, written as one new log
//! when the build ends. Never rewrites or deletes a file (a compaction it
//! triggers goes through [`super::compact`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use super::files::{last_uses_of, list_logs, lock, usage_dir};
use super::lines::{render, Counters, Line};
use super::{compact, interval, now_ms, CompactOptions};
use crate::depot::layout::{USAGE_LOG_PREFIX as LOG_PREFIX, USAGE_SUFFIX as SUFFIX};
use crate::depot::{write, Depot, DepotError};
use crate::digest::Key;

/// A build folds the logs into the merged file once this many pile up.
const COMPACT_AT: usize = 32;

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
