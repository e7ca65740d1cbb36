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

mod files;
mod lines;
mod recorder;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Depot, DepotError};

pub(crate) use files::remove_legacy;
pub use files::{compact, read, CompactOptions, Compacted};
pub use lines::{Counters, Usage};
pub use recorder::Recorder;

/// Version of the usage log format (in every usage file name). 2: a
/// checksum on every line.
pub const USAGE_FORMAT: u32 = 2;
/// How often one key's use is logged at most, unless DEPOT.toml says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

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

#[cfg(test)]
mod tests {
    use super::files::{last_uses_of, list_logs, usage_dir};
    use super::lines::{render, Line};
    use super::*;
    use crate::depot::checksum;
    use crate::depot::layout::{USAGE_LOG_PREFIX as LOG_PREFIX, USAGE_SUFFIX as SUFFIX};
    use crate::digest::{Digest, Key};

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
