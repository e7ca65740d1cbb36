//! The text of the usage files: [`Counters`], the event lines and their
//! sealed rendering, and [`Usage`], what a set of lines adds up to. Text
//! only: never touches a file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::depot::checksum;
use crate::digest::Key;

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
    /// Remote entries without a signature while signing was on (never restored).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_unsigned: u64,
    /// Remote entries whose signature was not this key's (never restored).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_bad_signature: u64,
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
        self.remote_unsigned = self.remote_unsigned.saturating_add(other.remote_unsigned);
        self.remote_bad_signature = self
            .remote_bad_signature
            .saturating_add(other.remote_bad_signature);
        self.remote_uploads = self.remote_uploads.saturating_add(other.remote_uploads);
        self.remote_bytes_down = self
            .remote_bytes_down
            .saturating_add(other.remote_bytes_down);
        self.remote_bytes_up = self.remote_bytes_up.saturating_add(other.remote_bytes_up);
    }

    pub(super) fn is_empty(&self) -> bool {
        *self == Counters::default()
    }
}

/// One line of a usage file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub(super) enum Line {
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
    pub(super) folded: BTreeSet<String>,
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
    pub(super) fn apply_text(&mut self, text: &str) {
        for l in text.lines().filter_map(checksum::open_line) {
            if let Ok(line) = serde_json::from_str::<Line>(l) {
                self.apply(line);
            }
        }
    }

    /// The merged file: sorted, so equal states give equal bytes.
    pub(super) fn to_text(&self) -> String {
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

pub(super) fn render(lines: &[Line]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&checksum::seal_line(
            &serde_json::to_string(l).expect("usage lines serialize"),
        ));
        s.push('\n');
    }
    s
}
