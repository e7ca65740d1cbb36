//! The names of relocache's own temporary files and directories beside
//! users' files (a restore's `tmp + rename` in an output directory, a pack's
//! archive in progress, a depot being created), and the one predicate that
//! recognizes them. The project walk leaves out exactly these names; a user's
//! file called `.relocache-anything` is an input like any other. Never
//! creates anything itself.
//!
//! A name is `.relocache-{purpose}-{pid}-{n}-{r}.tmp`: `purpose` lowercase
//! ASCII letters, `pid` and `n` (a per-process counter) in decimal, `r` 16
//! lowercase hex digits of a per-process random value. The random part makes
//! the name unguessable, so no file a user writes carries it by accident,
//! and keeps two processes with the same pid (containers) apart.
//!
//! A process using a temporary name holds an advisory lock (`flock`) on it
//! where it can be left behind at length (a pack's archive, a restore's
//! staging directory); [`abandoned`] finds the ones whose process died.

use std::fs::File;
use std::hash::BuildHasher;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// What every temporary name starts with.
const PREFIX: &str = ".relocache-";
/// What every temporary name ends with.
const SUFFIX: &str = ".tmp";

/// A random 64-bit value, drawn once per process: std's `RandomState` is
/// seeded from the operating system's random source.
fn process_random() -> u64 {
    static R: OnceLock<u64> = OnceLock::new();
    *R.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(std::process::id()))
}

/// A fresh temporary name for `purpose` (lowercase ASCII letters, e.g.
/// `restore`), unique within this process and unguessable outside it.
pub fn temp_name(purpose: &str) -> String {
    debug_assert!(is_purpose(purpose), "purpose `{purpose}`");
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The pid, asked once: a restore names a file per output, and relocache
    // never forks without exec.
    static PID: OnceLock<u32> = OnceLock::new();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{PREFIX}{purpose}-{}-{n}-{:016x}{SUFFIX}",
        PID.get_or_init(std::process::id),
        process_random()
    )
}

/// The temporary files or directories for `purpose` in `dir` that a killed
/// process left (kill -9, a lost CI runner): untouched for a minute (one
/// just created may not be locked yet) and not locked by a live process.
/// Each comes with its lock, held, for the caller to remove it under.
pub fn abandoned(dir: &Path, purpose: &str) -> Vec<(PathBuf, File)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in rd.flatten() {
        if temp_purpose(&e.file_name().to_string_lossy()) != Some(purpose) {
            continue;
        }
        // Only what relocache makes: a fifo would block the open below, and
        // a symlink is never followed.
        if !e.file_type().is_ok_and(|t| t.is_file() || t.is_dir()) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= 60);
        if !old {
            continue;
        }
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(e.path());
        let Ok(f) = opened else {
            continue;
        };
        if f.try_lock().is_ok() {
            found.push((e.path(), f));
        }
    }
    found
}

/// The purpose of `name` when it has exactly the shape [`temp_name`] gives.
pub fn temp_purpose(name: &str) -> Option<&str> {
    let inner = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let mut parts = inner.split('-');
    let (purpose, pid, n, r) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = r.len() == 16 && r.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (parts.next().is_none() && is_purpose(purpose) && decimal(pid) && decimal(n) && hex)
        .then_some(purpose)
}

/// Whether `name` is one of relocache's temporary names.
pub fn is_temp_name(name: &str) -> bool {
    temp_purpose(name).is_some()
}

fn is_purpose(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognized_and_users_names_are_not() {
        let a = temp_name("restore");
        let b = temp_name("restore");
        assert_ne!(a, b);
        assert_eq!(temp_purpose(&a), Some("restore"));
        assert_eq!(temp_purpose(&temp_name("pack")), Some("pack"));
        for user in [
            ".relocache-cfg",
            ".relocache-",
            ".relocache-restore-1-2-0123456789abcdef",
            ".relocache-restore-1-2-0123456789abcde.tmp",
            ".relocache-restore-1-2-0123456789ABCDEF.tmp",
            ".relocache-restore-x-2-0123456789abcdef.tmp",
            ".relocache-Restore-1-2-0123456789abcdef.tmp",
            ".relocache-restore-1-2-3-0123456789abcdef.tmp",
            ".relocache-1234-0-0123456789abcdef",
            "relocache-restore-1-2-0123456789abcdef.tmp",
        ] {
            assert!(!is_temp_name(user), "{user}");
        }
        assert!(is_temp_name(".relocache-link-1-2-0123456789abcdef.tmp"));
    }
}
