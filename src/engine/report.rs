//! What `build` is asked to do and what it answers: [`BuildOptions`], the
//! per-target [`TargetReport`] and the whole [`BuildReport`], serialized for
//! `--json` and `--timings`. Plain data: nothing here reads or writes a file.

use std::time::Instant;

use serde::Serialize;

use crate::digest::Key;

/// What `build` should do.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Targets to build (with their deps); empty means all.
    pub targets: Vec<String>,
    /// Parallel workers; 0 means the number of cores.
    pub jobs: usize,
    /// Fail a target whose new entry would not be relocatable.
    pub require_relocatable: bool,
    /// Ignore existing entries of the named targets (all if none named) and overwrite them.
    pub force: bool,
    /// The shared remote cache, looked up after the depot stack and written after a store.
    pub remote: Option<std::sync::Arc<crate::remote::Remote>>,
    /// How hits write their outputs (the CLI reads `RELOCACHE_RESTORE`).
    pub restore_mode: super::restore::RestoreMode,
}

/// What happened to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Restored from the depot; the command did not run.
    Hit,
    /// The command ran and succeeded.
    Built,
    /// The command (or preparing it) failed.
    Failed,
    /// Not attempted because a dependency failed.
    Skipped,
}

/// The result of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Target name.
    pub name: String,
    /// Its key, when it could be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// Hit, built, failed or skipped.
    pub outcome: Outcome,
    /// Wall time spent on it in this run.
    pub duration_ms: u64,
    /// When its work began, in milliseconds since the build started.
    pub start_ms: u64,
    /// Which of the `-j` workers ran it (0-based; lanes of `--timings`).
    pub worker: usize,
    /// For a hit: how long the stored build took (time saved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_ms: Option<u64>,
    /// Whether a new entry was stored for it.
    pub stored: bool,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Things the user should know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// Captured (or replayed) standard output.
    #[serde(skip)]
    pub stdout: Vec<u8>,
    /// Captured (or replayed) standard error.
    #[serde(skip)]
    pub stderr: Vec<u8>,
}

/// The result of a build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Per target, in dependency order.
    pub targets: Vec<TargetReport>,
    /// Count of hits.
    pub hits: usize,
    /// Count of targets built.
    pub built: usize,
    /// Count of failures.
    pub failed: usize,
    /// Count of skipped targets.
    pub skipped: usize,
    /// Count of hits restored from an entry that is not relocatable and was
    /// built at another location (its outputs name that location).
    pub not_relocatable_elsewhere: usize,
    /// Wall time of the whole build.
    pub duration_ms: u64,
    /// Remote entries not used for lack of a signature (signing on).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_unsigned: usize,
    /// Remote entries not used for a wrong signature (signing on).
    #[serde(skip_serializing_if = "is_zero")]
    pub remote_bad_signature: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl BuildReport {
    /// True when every target hit or built.
    pub fn success(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

/// Something the user should know about a target; `--json` shows only
/// its message, as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Warning {
    /// What it is about, for the CLI to group or hold back.
    pub kind: WarningKind,
    /// The full text, with its `help:` line when there is one.
    pub message: String,
}

impl Warning {
    /// A warning of `kind` saying `message`.
    pub fn new(kind: WarningKind, message: String) -> Self {
        Self { kind, message }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Warning> for String {
    fn from(w: Warning) -> Self {
        w.message
    }
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A tool of the target looks wrong (see [`crate::tools`]).
    Tool,
    /// The per-key build lock could not be taken.
    Lock,
    /// A stored entry is damaged and was ignored.
    DamagedEntry,
    /// An entry could not be restored or copied into the first depot.
    Restore,
    /// An input changed while the command ran; nothing was stored.
    InputChanged,
    /// An input tracked by size and mtime makes the entry not relocatable.
    UntrackedInput,
    /// An output ties the entry to this location (an embedded root, a
    /// symlink leaving the project); a compiled tree can have hundreds,
    /// so the CLI shows a few and counts the rest.
    NotRelocatable,
    /// A hit restored an entry that is not relocatable and was built at
    /// another project location: its outputs name that location. The CLI
    /// says it once per build, with the count and the first targets.
    BuiltElsewhere,
    /// The entry or the project record could not be written.
    Store,
    /// The remote failed to fetch or upload.
    Remote,
    /// Signing is on and a remote entry had no signature (a miss); the CLI
    /// says so once per build, with the count.
    Unsigned,
    /// Signing is on and a remote entry's signature was wrong (a miss); the
    /// CLI says so once per build, with the count.
    BadSignature,
}

pub(super) fn report(
    name: &str,
    key: Option<Key>,
    outcome: Outcome,
    started: Instant,
) -> TargetReport {
    TargetReport {
        name: name.to_owned(),
        key,
        outcome,
        duration_ms: started.elapsed().as_millis() as u64,
        start_ms: 0,
        worker: 0,
        saved_ms: None,
        stored: false,
        error: None,
        warnings: vec![],
        stdout: vec![],
        stderr: vec![],
    }
}
