//! `status` and `explain`: is a target cached, and if not, what changed since
//! it was last built or restored. Read-only: never runs a command, never
//! writes the depot.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::depot::entries::InputsSummary;
use crate::depot::locks::LockState;
use crate::depot::Depot;
use crate::digest::{Digest, Key};
use crate::engine::plan::{plan, Planned};
use crate::engine::BuildError;
use crate::file_state::FileState;
use crate::file_state::Resolved;
use crate::manifest::Manifest;

/// A target's state in the depot stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// An entry exists for the current key.
    Ready,
    /// No entry for the current key, but an earlier build of this target exists.
    Stale,
    /// Never built or restored with this depot stack.
    Unstarted,
    /// A build holds (or a crashed one left) the lock of the current key.
    Started,
}

impl Status {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Stale => "stale",
            Status::Unstarted => "unstarted",
            Status::Started => "started",
        }
    }
}

/// How an input file differs from the last build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Read now, not then.
    Added,
    /// Read then, not now.
    Removed,
    /// Read both times, different content (or kind, or mode).
    Modified,
}

/// One changed input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Relative path.
    pub path: String,
    /// Added, removed or modified.
    pub change: ChangeKind,
    /// A directory below a directory input (keyed by its name only).
    #[serde(skip_serializing_if = "is_false")]
    pub directory: bool,
    /// A file the last build's depfile named, not a declared input.
    #[serde(skip_serializing_if = "is_false")]
    pub from_depfile: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `status` of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// Ready, stale, unstarted or started.
    pub status: Status,
    /// Current key; `null` while a dep has no entry.
    pub key: Option<Key>,
    /// Input files changed since the last build (stale targets).
    pub changed: Vec<Change>,
    /// The dep that must be built first to know the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// Who holds the lock (started targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Why the inputs could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the last build's project record was not used (it is damaged, so
    /// the target reads as never built).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Inputs read with `track_content = false`: by size and mtime only, so
    /// an edit that keeps both is not seen (even by a `ready` target).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untracked: Vec<String>,
    /// Ready, from an entry that is not relocatable and was built at another
    /// location: a build restores outputs naming that location (and warns).
    #[serde(skip_serializing_if = "is_false")]
    pub not_relocatable_elsewhere: bool,
}

/// The first damaged project record of `target` in the stack, before any
/// sound one: what `status` says when a record reads as absent.
fn damaged_record(manifest: &Manifest, depots: &[Depot], target: &str) -> Option<String> {
    for d in depots {
        match d.read_record(&manifest.name, target) {
            Ok(Some(_)) => return None,
            Ok(None) => {}
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                return Some(format!("its last build's record is ignored: {first}"));
            }
        }
    }
    None
}

/// The inputs of `summary` keyed by size and mtime only (`track_content = false`).
fn untracked_inputs(summary: Option<&InputsSummary>) -> Vec<String> {
    summary
        .map(|s| {
            s.files
                .iter()
                .filter(|(_, f)| matches!(f, FileState::Untracked { .. }))
                .map(|(p, _)| p.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The summary of the last build of `target` recorded in the stack, with its key.
fn previous(
    manifest: &Manifest,
    depots: &[Depot],
    target: &str,
) -> Option<(Key, Result<InputsSummary, String>)> {
    let key = depots
        .iter()
        .find_map(|d| d.read_record(&manifest.name, target).ok().flatten())?
        .key;
    let mut damage = None;
    for d in depots {
        let read = d
            .read_entry(&key)
            .and_then(|e| e.map(|e| d.read_summary(&e)).transpose());
        match read {
            Ok(Some(summary)) => return Some((key, Ok(summary))),
            Ok(None) => {}
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                damage.get_or_insert(format!("is damaged: {first}"));
            }
        }
    }
    Some((
        key,
        Err(damage.unwrap_or_else(|| "is no longer in the depot".into())),
    ))
}

/// Input files that differ between two summaries, sorted by path.
pub fn changed_files(old: &InputsSummary, new: &InputsSummary) -> Vec<Change> {
    let paths: BTreeSet<_> = old.files.keys().chain(new.files.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (a, b) = (old.files.get(p), new.files.get(p));
            let change = match (a, b) {
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Removed,
                (Some(a), Some(b)) if a != b => ChangeKind::Modified,
                _ => return None,
            };
            let dir = |s: Option<&FileState>| matches!(s, Some(FileState::Dir));
            Some(Change {
                path: p.to_string(),
                change,
                directory: change != ChangeKind::Modified && (dir(a) || dir(b)),
                from_depfile: false,
            })
        })
        .collect()
}

/// The status of `targets` (all when empty) and their deps, in dependency order.
pub fn status(
    manifest: &Manifest,
    depots: &[Depot],
    depot_root: &std::path::Path,
    targets: &[String],
) -> Result<Vec<TargetStatus>, BuildError> {
    let planned = plan(manifest, depots, depot_root, targets)?;
    Ok(planned
        .iter()
        .map(|p| status_of(manifest, depots, p))
        .collect())
}

/// The status of one planned target.
pub fn status_of(manifest: &Manifest, depots: &[Depot], p: &Planned) -> TargetStatus {
    let mut s = TargetStatus {
        name: p.name.clone(),
        status: Status::Unstarted,
        key: p.key,
        changed: vec![],
        blocked_by: p.blocked_by.clone(),
        holder: None,
        error: p.error.clone(),
        record: None,
        untracked: untracked_inputs(p.summary.as_ref()),
        not_relocatable_elsewhere: p.not_relocatable_elsewhere,
    };
    if p.entry.is_some() {
        s.status = Status::Ready;
        return s;
    }
    if let (Some(key), Some(primary)) = (p.key, depots.first()) {
        match primary.lock_state(&key) {
            LockState::Free => {}
            LockState::Held(h) => {
                s.status = Status::Started;
                s.holder = Some(h);
                return s;
            }
            LockState::Abandoned => {
                s.status = Status::Started;
                s.holder = Some("nobody: a build was interrupted".into());
                return s;
            }
        }
    }
    if let Some((_, old)) = previous(manifest, depots, &p.name) {
        s.status = Status::Stale;
        if let (Ok(old), Some(new)) = (old, &p.summary) {
            s.changed = changed_files(&old, new);
        }
        s.changed.extend(discovered_changes(p));
    } else {
        s.record = damaged_record(manifest, depots, &p.name);
    }
    s
}

/// The files the last build's depfile named that differ now.
fn discovered_changes(p: &Planned) -> impl Iterator<Item = Change> + '_ {
    p.discovered.iter().map(|d| Change {
        path: d.path.to_string(),
        change: match d.new {
            Some(_) => ChangeKind::Modified,
            None => ChangeKind::Removed,
        },
        directory: false,
        from_depfile: true,
    })
}

/// One reason a key differs from the last build's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// A new input file.
    InputAdded {
        /// Path.
        path: String,
        /// A directory below a directory input.
        #[serde(skip_serializing_if = "is_false")]
        directory: bool,
    },
    /// An input file no longer read.
    InputRemoved {
        /// Path.
        path: String,
        /// A directory below a directory input.
        #[serde(skip_serializing_if = "is_false")]
        directory: bool,
    },
    /// An input file's content, kind or mode changed.
    InputChanged {
        /// Path.
        path: String,
        /// Old state, short.
        old: String,
        /// New state, short.
        new: String,
    },
    /// A file the last build's depfile named changed or is gone.
    DiscoveredChanged {
        /// Path (absolute outside the project).
        path: String,
        /// Modified or removed.
        change: ChangeKind,
        /// Old digest prefix.
        old: String,
        /// New digest prefix (`None` when gone).
        #[serde(skip_serializing_if = "Option::is_none")]
        new: Option<String>,
    },
    /// A listed environment variable changed (values only with `show_values`).
    EnvChanged {
        /// Variable name.
        name: String,
        /// Old value, when shown.
        #[serde(skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// New value, when shown.
        #[serde(skip_serializing_if = "Option::is_none")]
        new: Option<String>,
    },
    /// A tool's content changed (or it was added or removed).
    ToolChanged {
        /// Tool name.
        name: String,
        /// Old digest prefix.
        old: Option<String>,
        /// New digest prefix.
        new: Option<String>,
        /// Its `check` command, when its digest covers that command's output.
        #[serde(skip_serializing_if = "Option::is_none")]
        check: Option<String>,
    },
    /// `version` changed.
    VersionChanged {
        /// Old version.
        old: i64,
        /// New version.
        new: i64,
    },
    /// The command line changed.
    CommandChanged {
        /// Old command.
        old: String,
        /// New command.
        new: String,
    },
    /// The declared outputs changed.
    OutputsChanged {
        /// Old outputs.
        old: Vec<String>,
        /// New outputs.
        new: Vec<String>,
    },
    /// A dep's outputs changed (or are not known yet); `because` explains the dep.
    DepChanged {
        /// Dep name.
        name: String,
        /// Old outputs digest prefix.
        old: Option<String>,
        /// New outputs digest prefix (`None` while the dep has no entry).
        new: Option<String>,
        /// Why the dep changed.
        because: Box<Explanation>,
    },
    /// Nothing recorded differs: salt, platform or relocache's key schema changed.
    Other {
        /// What could have changed.
        detail: String,
    },
}

/// `explain` of one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// Target name.
    pub target: String,
    /// Current key (`null` while a dep has no entry).
    pub key: Option<Key>,
    /// Key of the last build or restore recorded for the target.
    pub previous_key: Option<Key>,
    /// Current key equals the previous one.
    pub same: bool,
    /// Whether an entry exists for the current key.
    pub ready: bool,
    /// What changed, in plain terms.
    pub differences: Vec<Difference>,
    /// A sentence when there is nothing to diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Inputs read with `track_content = false`: their content changes are
    /// not seen when size and mtime stay.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untracked: Vec<String>,
    /// When the current key's entry is not relocatable and was built at
    /// another location: what names that location (`embedded-path
    /// `build/x.o``, …). Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_relocatable_elsewhere: Vec<String>,
}

/// Explains why `target`'s key differs from the last one built or restored.
pub fn explain(
    manifest: &Manifest,
    depots: &[Depot],
    depot_root: &std::path::Path,
    target: &str,
    show_values: bool,
) -> Result<Explanation, BuildError> {
    let mut all = explain_each(manifest, depots, depot_root, target, show_values)?;
    Ok(all.remove(0))
}

/// [`explain`] for every target `name` stands for: itself, or each instance
/// of a template, planned once.
pub fn explain_each(
    manifest: &Manifest,
    depots: &[Depot],
    depot_root: &std::path::Path,
    name: &str,
    show_values: bool,
) -> Result<Vec<Explanation>, BuildError> {
    let planned = plan(manifest, depots, depot_root, &[name.to_owned()])?;
    let by_name: BTreeMap<&str, &Planned> = planned.iter().map(|p| (p.name.as_str(), p)).collect();
    let names = manifest.select(&[name.to_owned()]).unwrap_or_default();
    Ok(names
        .iter()
        .map(|t| explain_one(manifest, depots, &by_name, t, show_values))
        .collect())
}

fn short_state(s: &FileState) -> String {
    match s {
        FileState::File {
            digest, executable, ..
        } => format!(
            "{}{}",
            digest.short(),
            if *executable { " (executable)" } else { "" }
        ),
        FileState::Symlink {
            target,
            resolved: None,
        } => format!("symlink to {target}"),
        FileState::Symlink {
            target,
            resolved: Some(r),
        } => match r {
            Resolved::File { digest, .. } => {
                format!("symlink to {target}, file {}", digest.short())
            }
            Resolved::Dir { tree, .. } => {
                format!("symlink to {target}, directory {}", tree.short())
            }
        },
        FileState::Dir => "directory".into(),
        FileState::Untracked { size, mtime_ns } => format!("size {size}, mtime {mtime_ns}"),
    }
}

fn command_text(s: &InputsSummary) -> String {
    match (&s.run, &s.argv) {
        (Some(r), _) => r.clone(),
        (None, Some(v)) => format!("{v:?}"),
        _ => String::new(),
    }
}

// Long on purpose: one short comparison per key field (files, env, tools, version, command, outputs, deps) in the order `explain` prints them.
fn explain_one(
    manifest: &Manifest,
    depots: &[Depot],
    planned: &BTreeMap<&str, &Planned>,
    target: &str,
    show_values: bool,
) -> Explanation {
    let p = planned[target];
    let prev = previous(manifest, depots, target);
    let mut ex = Explanation {
        target: target.to_owned(),
        key: p.key,
        previous_key: prev.as_ref().map(|(k, _)| *k),
        same: false,
        ready: p.entry.is_some(),
        differences: vec![],
        note: None,
        untracked: untracked_inputs(p.summary.as_ref()),
        not_relocatable_elsewhere: match &p.entry {
            Some((_, e)) if p.not_relocatable_elsewhere => e.location_reasons(),
            _ => vec![],
        },
    };
    let Some((prev_key, old)) = prev else {
        ex.note = Some(format!(
            "`{target}` has never been built or restored with this depot stack"
        ));
        return ex;
    };
    if p.key == Some(prev_key) {
        ex.same = true;
        ex.note = Some(format!(
            "`{target}` is unchanged: its key {} is the one last built or restored",
            prev_key.short()
        ));
        return ex;
    }
    if let Some(e) = &p.error {
        ex.note = Some(format!("the current inputs cannot be read: {e}"));
        return ex;
    }
    let old = match old {
        Ok(old) => old,
        Err(why) => {
            ex.note = Some(format!(
                "the last build's record (key {}) {why}, so there is nothing to compare with",
                prev_key.short()
            ));
            return ex;
        }
    };
    let Some(new) = p.summary.as_ref() else {
        ex.note = Some("the current inputs summary is not available".into());
        return ex;
    };
    let d = &mut ex.differences;
    for c in changed_files(&old, new) {
        d.push(match c.change {
            ChangeKind::Added => Difference::InputAdded {
                path: c.path,
                directory: c.directory,
            },
            ChangeKind::Removed => Difference::InputRemoved {
                path: c.path,
                directory: c.directory,
            },
            ChangeKind::Modified => {
                let rp = crate::relpath::RelPath::new(&c.path).expect("summary paths are relative");
                Difference::InputChanged {
                    old: short_state(&old.files[&rp]),
                    new: short_state(&new.files[&rp]),
                    path: c.path,
                }
            }
        });
    }
    for c in &p.discovered {
        d.push(Difference::DiscoveredChanged {
            path: c.path.to_string(),
            change: match c.new {
                Some(_) => ChangeKind::Modified,
                None => ChangeKind::Removed,
            },
            old: c.old.short(),
            new: c.new.map(|n| n.short()),
        });
    }
    let names: BTreeSet<&String> = old.env.keys().chain(new.env.keys()).collect();
    for n in names {
        let (a, b) = (
            old.env.get(n).cloned().flatten(),
            new.env.get(n).cloned().flatten(),
        );
        if a != b || old.env.contains_key(n) != new.env.contains_key(n) {
            d.push(Difference::EnvChanged {
                name: n.clone(),
                old: if show_values { a } else { None },
                new: if show_values { b } else { None },
            });
        }
    }
    let tools: BTreeSet<&String> = old.tools.keys().chain(new.tools.keys()).collect();
    for t in tools {
        let (a, b) = (old.tools.get(t), new.tools.get(t));
        if a != b {
            let check = manifest.targets[target]
                .tools
                .iter()
                .find(|tool| tool.name == *t)
                .and_then(|tool| tool.check.clone());
            d.push(Difference::ToolChanged {
                name: t.clone(),
                old: a.map(Digest::short),
                new: b.map(Digest::short),
                check,
            });
        }
    }
    if old.version != new.version {
        d.push(Difference::VersionChanged {
            old: old.version,
            new: new.version,
        });
    }
    let (oc, nc) = (command_text(&old), command_text(new));
    if oc != nc {
        d.push(Difference::CommandChanged { old: oc, new: nc });
    }
    if old.outputs != new.outputs {
        let s = |v: &[crate::relpath::RelPath]| v.iter().map(|p| p.to_string()).collect();
        d.push(Difference::OutputsChanged {
            old: s(&old.outputs),
            new: s(&new.outputs),
        });
    }
    let t = &manifest.targets[target];
    for dep in &t.deps {
        let old_d = old.deps.get(dep).copied();
        // As the current key has it (output symlinks followed).
        let new_d = planned[dep.as_str()]
            .entry
            .as_ref()
            .and_then(|_| new.deps.get(dep).copied());
        if old_d != new_d {
            d.push(Difference::DepChanged {
                name: dep.clone(),
                old: old_d.map(|x| x.short()),
                new: new_d.map(|x| x.short()),
                because: Box::new(explain_one(manifest, depots, planned, dep, show_values)),
            });
        }
    }
    if d.is_empty() {
        d.push(Difference::Other {
            detail: "no input, env, tool, version, command or dep differs: the project salt, the platform or relocache's key schema changed".into(),
        });
    }
    ex
}
