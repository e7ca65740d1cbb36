//! `verify`: checks a depot without changing it and returns a [`VerifyReport`].
//!
//! Three layers, each a superset of the previous one's guarantees:
//! - structure (always): every entry file is named `<key>.toml` in its shard,
//!   parses, and records that key; every blob it names exists; no symlink
//!   stands in for a blob or an entry;
//! - relocatability (`relocatable`): no stored file (entries, project records,
//!   `DEPOT.toml`) names an absolute or escaping path, no symlink anywhere in
//!   the depot leaves it, and no entry is marked non-relocatable;
//! - integrity (`integrity`): every blob is re-hashed, in parallel.
//!
//! `--target` narrows the check to the entries of the named targets' current
//! keys; `--simulate` ([`simulate`]) copies depot and project elsewhere and
//! proves every cached target would still hit. This module never prints and
//! never writes into the depot it checks (a corrupt blob is reported, not
//! quarantined).

pub mod simulate;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::build::BuildError;
use crate::depot::blobs::BlobHealth;
use crate::depot::entries::{parse_entry, Entry, OutputKind, Reason};
use crate::depot::{Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::manifest::Manifest;
use crate::relpath::{RelPath, RelPathError};
use crate::report::Reporter;

/// The `kind` of every [`Problem`] `verify` reports. Entries marked
/// non-relocatable are reported under their reason's own kind
/// (`embedded-path`, `untracked-input`, `absolute-symlink`, `escaping-symlink`).
pub mod kind {
    /// A stored file names an absolute path.
    pub const ABSOLUTE_PATH: &str = "absolute-path";
    /// A stored path climbs out of its root with `..`.
    pub const ESCAPING_PATH: &str = "escaping-path";
    /// A stored path is not normalized (`.`, `//`, `\`).
    pub const UNNORMALIZED_PATH: &str = "unnormalized-path";
    /// A symlink in the depot points outside it (or is absolute).
    pub const SYMLINK_LEAVES_DEPOT: &str = "symlink-leaves-depot";
    /// A symlink where a blob or an entry must be a regular file.
    pub const SYMLINK_IN_STORE: &str = "symlink-in-store";
    /// An entry file whose name is not `<key>.toml` in shard `<key[..2]>`, or
    /// that records another key.
    pub const MISNAMED_ENTRY: &str = "misnamed-entry";
    /// A file in `objects-v1/` not named like a blob in its shard.
    pub const MISNAMED_BLOB: &str = "misnamed-blob";
    /// An entry that fails its checksum or does not parse: damaged, never
    /// restored (checked always, without `--integrity`).
    pub const CORRUPT_ENTRY: &str = "corrupt-entry";
    /// A project record or `DEPOT.toml` that does not parse.
    pub const UNPARSEABLE_FILE: &str = "unparseable-file";
    /// A depot file or directory that cannot be read.
    pub const UNREADABLE: &str = "unreadable";
    /// A blob an entry names is absent.
    pub const MISSING_BLOB: &str = "missing-blob";
    /// A blob whose content does not hash to its name (`--integrity`).
    pub const CORRUPT_BLOB: &str = "corrupt-blob";
    /// An entry marked `relocatable = false` without a recorded reason.
    pub const NOT_RELOCATABLE: &str = "not-relocatable";
    /// `--target`: the target's current key has no entry.
    pub const NOT_CACHED: &str = "not-cached";
    /// `--simulate`: the target would not hit after the move.
    pub const WOULD_MISS: &str = "would-miss";
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Also check that the depot can be moved (absolute paths, symlinks,
    /// non-relocatable entries).
    pub relocatable: bool,
    /// Re-hash every blob checked.
    pub integrity: bool,
    /// Only the entries of these targets' current keys (needs the project).
    pub targets: Vec<String>,
    /// Copy depot and project elsewhere and plan there (needs the project).
    pub simulate: bool,
}

/// One thing wrong with the depot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// See [`kind`].
    pub kind: &'static str,
    /// The entry concerned, if any.
    pub entry: Option<Key>,
    /// The file concerned: relative to the depot for depot files, relative
    /// to the project for an entry's outputs and inputs.
    pub path: Option<String>,
    /// What is wrong and what to do.
    pub detail: String,
    /// `project/target` of the entry, for grouping by humans.
    #[serde(skip)]
    pub label: Option<String>,
}

/// The result of `--simulate`, for the human summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Simulated {
    /// Targets cached in the original location.
    pub targets: usize,
    /// Of those, how many would hit after the move.
    pub hits: usize,
}

/// What `verify` found. Serializes to exactly
/// `{"relocatable","entries_checked","blobs_checked","problems"}`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when relocatability was checked and no problem of any kind found.
    pub relocatable: bool,
    /// Entry files examined.
    pub entries_checked: usize,
    /// Distinct blobs checked for presence or re-hashed.
    pub blobs_checked: usize,
    /// Everything found, grouped by entry (depot-wide problems first).
    pub problems: Vec<Problem>,
    /// Set by `--simulate`.
    #[serde(skip)]
    pub simulated: Option<Simulated>,
}

impl VerifyReport {
    /// True when nothing was found.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why `verify` could not run (problems it finds are not errors).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `--target` or `--simulate` without a manifest.
    #[error(
        "{0} needs the project's relocache.toml\n  help: run inside the project or pass `-C DIR`"
    )]
    NeedsProject(&'static str),
    /// Planning the project failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The depot could not be read.
    #[error(transparent)]
    Depot(#[from] DepotError),
    /// Copying for `--simulate` failed.
    #[error("could not {action} `{}` for the simulated move: {source}\n  help: check free space and permissions in the temporary directory ($TMPDIR)", .path.display())]
    Copy {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The copied manifest failed to load.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
}

/// Checks `depots[0]`. The other depots of the stack are read to plan
/// `--target` and `--simulate`, and hold entries found only there.
/// `manifest` is optional: without it only whole-depot checks run.
pub fn verify(
    depots: &[Depot],
    manifest: Option<&Manifest>,
    opts: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<VerifyReport, VerifyError> {
    let depot = &depots[0];
    let project = manifest.map(|m| ProjectView {
        name: m.name.clone(),
        roots: forms(&m.root),
    });
    let mut roots = forms(depot.root());
    roots.extend(project.iter().flat_map(|p| p.roots.iter().cloned()));
    let c = Checker {
        depot,
        project: project.as_ref(),
        roots,
        opts,
        walked: opts.targets.is_empty(),
    };
    let mut problems = c.depot_toml();
    let mut entries_checked = 0;
    let mut referenced: BTreeSet<(usize, Digest)> = BTreeSet::new();
    let mut stored: Vec<Digest> = Vec::new();
    let mut groups: Vec<(Option<Key>, Vec<Problem>)> = Vec::new();

    if opts.targets.is_empty() {
        let walk = c.walk();
        problems.extend(walk.problems);
        stored = walk.blobs;
        let done = AtomicU64::new(0);
        let total = walk.entries.len() as u64;
        let checked: Vec<EntryCheck> = walk
            .entries
            .par_iter()
            .map(|(path, name_key)| {
                let r = c.entry(depot, path, *name_key);
                reporter.progress("entries", done.fetch_add(1, Ordering::Relaxed) + 1, total);
                r
            })
            .collect();
        entries_checked = checked.len();
        for e in checked {
            referenced.extend(e.blobs.into_iter().map(|b| (0, b)));
            groups.push((e.key, e.problems));
        }
        problems.extend(c.records(&walk.records));
    } else {
        let m = manifest.ok_or(VerifyError::NeedsProject("`verify --target`"))?;
        let planned = crate::plan::plan(m, depots, depot.root(), &opts.targets)?;
        for p in planned.iter().filter(|p| opts.targets.contains(&p.name)) {
            match &p.entry {
                Some((i, entry)) => {
                    let d = &depots[*i];
                    let e = c.entry(d, &d.entry_path(&entry.key), Some(entry.key));
                    entries_checked += 1;
                    referenced.extend(e.blobs.into_iter().map(|b| (*i, b)));
                    groups.push((e.key, e.problems));
                }
                None => problems.push(not_cached(p)),
            }
        }
    }

    // Integrity: every blob in objects-v1 (or only the targets' blobs).
    let mut blobs_checked: BTreeSet<(usize, Digest)> = referenced.clone();
    if opts.integrity {
        let mut todo: BTreeSet<(usize, Digest)> = referenced
            .iter()
            .filter(|(i, d)| depots[*i].has_blob(d))
            .copied()
            .collect();
        todo.extend(stored.iter().map(|d| (0, *d)));
        blobs_checked.extend(todo.iter().copied());
        let todo: Vec<(usize, Digest)> = todo.into_iter().collect();
        let done = AtomicU64::new(0);
        let total = todo.len() as u64;
        let corrupt: Vec<Problem> = todo
            .par_iter()
            .filter_map(|(i, d)| {
                let health = depots[*i].check_blob(d);
                reporter.progress("hashing", done.fetch_add(1, Ordering::Relaxed) + 1, total);
                let path = Some(rel_to(depots[*i].root(), &depots[*i].blob_path(d)));
                match health {
                    Ok(BlobHealth::Sound { .. }) | Ok(BlobHealth::Missing) => None,
                    Ok(BlobHealth::Corrupt { why }) => Some(Problem {
                        kind: kind::CORRUPT_BLOB,
                        entry: None,
                        path,
                        detail: format!(
                            "blob {d} is corrupt: {why}\n  help: entries using it miss (and the blob is quarantined) at the next build; rebuild them, or restore the depot from a good copy"
                        ),
                        label: None,
                    }),
                    Err(e) => Some(Problem {
                        kind: kind::UNREADABLE,
                        entry: None,
                        path,
                        detail: e.to_string(),
                        label: None,
                    }),
                }
            })
            .collect();
        problems.extend(corrupt);
    }

    let mut simulated = None;
    if opts.simulate {
        let m = manifest.ok_or(VerifyError::NeedsProject("`verify --simulate`"))?;
        let (found, sim) = simulate::simulate(m, depots, &opts.targets, reporter)?;
        groups.extend(found.into_iter().map(|p| (p.entry, vec![p])));
        simulated = Some(sim);
    }
    let mut report = finish(opts, problems, groups, entries_checked, blobs_checked.len());
    report.simulated = simulated;
    Ok(report)
}

fn finish(
    opts: &VerifyOptions,
    mut problems: Vec<Problem>,
    groups: Vec<(Option<Key>, Vec<Problem>)>,
    entries_checked: usize,
    blobs_checked: usize,
) -> VerifyReport {
    // Depot-wide problems first, then per entry, by key: stable output.
    let mut keyed: Vec<Problem> = groups.into_iter().flat_map(|(_, p)| p).collect();
    problems.extend(keyed.iter().filter(|p| p.entry.is_none()).cloned());
    keyed.retain(|p| p.entry.is_some());
    keyed.sort_by_key(|p| p.entry);
    problems.extend(keyed);
    VerifyReport {
        relocatable: opts.relocatable && problems.is_empty(),
        entries_checked,
        blobs_checked,
        problems,
        simulated: None,
    }
}

fn not_cached(p: &crate::plan::Planned) -> Problem {
    let why = if let Some(d) = &p.blocked_by {
        format!("its dep `{d}` is not cached, so its key is unknown")
    } else if let Some(e) = &p.error {
        format!("its inputs cannot be resolved: {e}")
    } else {
        "no entry is stored for its current key (never built, or its inputs changed since)".into()
    };
    Problem {
        kind: kind::NOT_CACHED,
        entry: p.key,
        path: None,
        detail: format!(
            "target `{}` is not cached: {why}\n  help: run `relocache build {}`",
            p.name, p.name
        ),
        label: Some(p.name.clone()),
    }
}

/// The project whose roots `@project` stands for, when known.
struct ProjectView {
    name: String,
    /// The root as given and canonicalized.
    roots: Vec<String>,
}

/// `p` as given and canonicalized (when different), without trailing `/`.
fn forms(p: &Path) -> Vec<String> {
    let mut v = vec![p.to_string_lossy().trim_end_matches('/').to_owned()];
    if let Ok(c) = std::fs::canonicalize(p) {
        let c = c.to_string_lossy().trim_end_matches('/').to_owned();
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v.retain(|s| s.len() > 1);
    v
}

fn rel_to(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| p.to_string_lossy().into_owned())
}

struct Checker<'a> {
    depot: &'a Depot,
    project: Option<&'a ProjectView>,
    /// Absolute paths the depot and project are known under.
    roots: Vec<String>,
    opts: &'a VerifyOptions,
    /// Whether the whole depot was walked (so symlinks are already reported).
    walked: bool,
}

/// What one walk of the depot found.
#[derive(Default)]
struct Walk {
    problems: Vec<Problem>,
    /// Entry files and the key their name gives.
    entries: Vec<(PathBuf, Option<Key>)>,
    /// Correctly named blob files.
    blobs: Vec<Digest>,
    /// `projects-v2/**/*.toml`.
    records: Vec<PathBuf>,
}

struct EntryCheck {
    key: Option<Key>,
    problems: Vec<Problem>,
    blobs: Vec<Digest>,
}

impl Checker<'_> {
    fn problem(&self, kind: &'static str, path: &Path, detail: String) -> Problem {
        Problem {
            kind,
            entry: None,
            path: Some(rel_to(self.depot.root(), path)),
            detail,
            label: None,
        }
    }

    fn depot_toml(&self) -> Vec<Problem> {
        let path = self.depot.root().join("DEPOT.toml");
        let mut out = Vec::new();
        if !self.opts.relocatable {
            return out;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => match toml::from_str::<toml::Value>(&text) {
                Ok(v) => {
                    for (field, what) in scan_value(&v, "", &self.roots) {
                        out.push(self.problem(what.kind(), &path, what.detail(&field)));
                    }
                }
                Err(e) => out.push(self.problem(
                    kind::UNPARSEABLE_FILE,
                    &path,
                    format!("DEPOT.toml does not parse: {}", e.message()),
                )),
            },
            Err(e) => out.push(self.problem(kind::UNREADABLE, &path, e.to_string())),
        }
        out
    }

    /// One pass over the whole depot: symlinks, misnamed files, and the
    /// entries, blobs and records to check.
    fn walk(&self) -> Walk {
        let root = self.depot.root();
        let mut w = Walk::default();
        let mut it = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = it.next() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    let p = e.path().unwrap_or(root).to_path_buf();
                    w.problems.push(self.problem(
                        kind::UNREADABLE,
                        &p,
                        format!("cannot be read: {e}"),
                    ));
                    continue;
                }
            };
            let Ok(rel) = item.path().strip_prefix(root) else {
                continue;
            };
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let Some(top) = parts.first().map(String::as_str) else {
                continue;
            };
            let in_store = top == "objects-v1" || top == "entries-v2";
            let ft = item.file_type();
            if ft.is_symlink() {
                if let Some(p) = self.symlink(item.path(), &parts, in_store) {
                    w.problems.push(p);
                }
                continue;
            }
            if in_store && parts.len() >= 3 && !ft.is_file() {
                // objects-v1/ab/<x> and entries-v2/ab/<x> are files, or
                // nothing; anything else stands where a blob or entry goes.
                w.problems.push(self.problem(
                    kind::UNREADABLE,
                    item.path(),
                    "is not a regular file where only blobs and entries belong; relocache cannot read it\n  help: remove it".into(),
                ));
                if ft.is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            match top {
                "objects-v1" => match sharded_name(&parts, "") {
                    Some(d) => w.blobs.push(d),
                    None => w.problems.push(self.problem(
                        kind::MISNAMED_BLOB,
                        item.path(),
                        "not named like a blob (`objects-v1/ab/<64 hex digits starting with ab>`); relocache never reads it\n  help: remove it".into(),
                    )),
                },
                "entries-v2" => {
                    let key = sharded_name(&parts, ".toml").map(Key);
                    if key.is_none() {
                        w.problems.push(self.problem(
                            kind::MISNAMED_ENTRY,
                            item.path(),
                            "not named like an entry (`entries-v2/ab/<key>.toml`), so no build will ever find it\n  help: remove it".into(),
                        ));
                    }
                    w.entries.push((item.path().to_path_buf(), key));
                }
                "projects-v2" if rel.extension().is_some_and(|e| e == "toml") => {
                    w.records.push(item.path().to_path_buf())
                }
                _ => {}
            }
        }
        w
    }

    fn symlink(&self, abs: &Path, parts: &[String], in_store: bool) -> Option<Problem> {
        let target = match std::fs::read_link(abs) {
            Ok(t) => t.to_string_lossy().into_owned(),
            Err(e) => return Some(self.problem(kind::UNREADABLE, abs, e.to_string())),
        };
        if in_store {
            return Some(self.problem(
                kind::SYMLINK_IN_STORE,
                abs,
                format!("is a symlink (to `{target}`); blobs and entries must be regular files, or a copy of the depot loses or changes them\n  help: replace it with the file it points to, or remove it"),
            ));
        }
        if !self.opts.relocatable {
            return None;
        }
        if target.starts_with('/') {
            return Some(self.problem(
                kind::SYMLINK_LEAVES_DEPOT,
                abs,
                format!("is a symlink to the absolute path `{target}`, which does not move with the depot\n  help: replace it with a relative link inside the depot, or with the file itself"),
            ));
        }
        let parent = parts[..parts.len() - 1].join("/");
        let joined = if parent.is_empty() {
            target.clone()
        } else {
            format!("{parent}/{target}")
        };
        match RelPath::normalize(&joined) {
            Err(RelPathError::Escapes(_)) => Some(self.problem(
                kind::SYMLINK_LEAVES_DEPOT,
                abs,
                format!("is a symlink to `{target}`, which is outside the depot\n  help: copy what it points to into the depot, or remove the link"),
            )),
            _ => None,
        }
    }

    fn records(&self, records: &[PathBuf]) -> Vec<Problem> {
        let mut out = Vec::new();
        for path in records {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    out.push(self.problem(kind::UNREADABLE, path, e.to_string()));
                    continue;
                }
            };
            if let Err(why) = crate::depot::checksum::open(&text) {
                out.push(self.problem(
                    kind::UNPARSEABLE_FILE,
                    path,
                    format!("project record is damaged: {why}\n  help: remove it; the next build or restore writes it again"),
                ));
                continue;
            }
            let value = match toml::from_str::<toml::Value>(&text) {
                Ok(v) => v,
                Err(e) => {
                    out.push(self.problem(
                        kind::UNPARSEABLE_FILE,
                        path,
                        format!("project record does not parse: {}\n  help: remove it; the next build or restore writes it again", e.message()),
                    ));
                    continue;
                }
            };
            if let Err(e) = value.clone().try_into::<crate::depot::records::Record>() {
                out.push(self.problem(
                    kind::UNPARSEABLE_FILE,
                    path,
                    format!("project record is damaged: {}\n  help: remove it; the next build or restore writes it again", e.message()),
                ));
            }
            if self.opts.relocatable {
                for (field, what) in scan_value(&value, "", &self.roots) {
                    out.push(self.problem(what.kind(), path, what.detail(&field)));
                }
            }
        }
        out
    }

    /// Checks one entry file of `depot` (whose name gives `name_key`).
    fn entry(&self, depot: &Depot, path: &Path, name_key: Option<Key>) -> EntryCheck {
        let mut out = EntryCheck {
            key: name_key,
            problems: Vec::new(),
            blobs: Vec::new(),
        };
        let rel = rel_to(depot.root(), path);
        let mut push =
            |kind: &'static str, p: Option<String>, detail: String, label: &Option<String>| {
                out.problems.push(Problem {
                    kind,
                    entry: name_key,
                    path: p,
                    detail,
                    label: label.clone(),
                })
            };
        if !self.walked {
            if let Ok(md) = std::fs::symlink_metadata(path) {
                if md.file_type().is_symlink() {
                    push(
                        kind::SYMLINK_IN_STORE,
                        Some(rel.clone()),
                        "the entry is a symlink; entries must be regular files\n  help: replace it with the file it points to".into(),
                        &None,
                    );
                }
            }
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                push(kind::UNREADABLE, Some(rel), e.to_string(), &None);
                return out;
            }
        };
        // Path problems first: they explain why the entry may not parse.
        let mut path_problems = 0;
        if self.opts.relocatable {
            if let Ok(v) = toml::from_str::<toml::Value>(&text) {
                for (field, what) in scan_value(&v, "", &self.roots) {
                    path_problems += 1;
                    push(what.kind(), Some(rel.clone()), what.detail(&field), &None);
                }
            }
        }
        let entry = match parse_entry(&text) {
            Ok(e) => e,
            Err(msg) => {
                if path_problems == 0 {
                    push(
                        kind::CORRUPT_ENTRY,
                        Some(rel),
                        format!("the entry is damaged: {msg}\n  help: remove it (a build quarantines it); the target rebuilds and stores a new one"),
                        &None,
                    );
                }
                return out;
            }
        };
        let label = Some(format!("{}/{}", entry.project, entry.target));
        for p in out.problems.iter_mut() {
            p.label = label.clone();
        }
        let mut push = |kind: &'static str, p: Option<String>, detail: String| {
            out.problems.push(Problem {
                kind,
                entry: name_key.or(Some(entry.key)),
                path: p,
                detail,
                label: label.clone(),
            })
        };
        if let Some(k) = name_key {
            if k != entry.key {
                push(
                    kind::MISNAMED_ENTRY,
                    Some(rel.clone()),
                    format!("the entry records key {} but is stored under {k}, so no build finds it under its own key\n  help: remove it", entry.key),
                );
            }
        }
        for (d, used_for) in blob_uses(&entry) {
            let bp = depot.blob_path(&d);
            match std::fs::symlink_metadata(&bp) {
                Ok(md) if md.file_type().is_symlink() && !self.walked => push(
                    kind::SYMLINK_IN_STORE,
                    Some(rel_to(depot.root(), &bp)),
                    format!("blob {d} ({used_for}) is a symlink; blobs must be regular files\n  help: replace it with the file it points to"),
                ),
                Ok(_) => {}
                Err(_) => push(
                    kind::MISSING_BLOB,
                    Some(rel_to(depot.root(), &bp)),
                    format!("blob {d} ({used_for}) is missing, so `{}` cannot be restored from this entry\n  help: rebuild the target (`relocache build --force {}`), or restore the depot from a complete copy", entry.target, entry.target),
                ),
            }
            out.blobs.push(d);
        }
        if self.opts.relocatable {
            let reasons = self.reasons(depot, &entry);
            for (kind, path, detail) in reasons {
                push(kind, path, detail);
            }
        }
        out.key = name_key.or(Some(entry.key));
        out
    }

    /// The entry's recorded reasons, rendered for the user, plus symlink
    /// outputs that leave the project although no reason says so.
    fn reasons(&self, depot: &Depot, e: &Entry) -> Vec<(&'static str, Option<String>, String)> {
        let mut out = Vec::new();
        let project_root = self
            .project
            .filter(|p| p.name == e.project)
            .map(|p| p.roots[0].clone());
        let depot_root = depot.root().to_string_lossy().into_owned();
        for r in &e.reasons {
            out.push((
                kind_of(r),
                r.path.as_ref().map(|p| p.to_string()),
                render_reason(e, r, project_root.as_deref(), &depot_root),
            ));
        }
        if !e.relocatable && e.reasons.is_empty() {
            out.push((
                kind::NOT_RELOCATABLE,
                None,
                format!("`{}` is marked not relocatable, without a recorded reason\n  help: rebuild it (`relocache build --force {}`) to record why", e.target, e.target),
            ));
        }
        for o in e.outputs.iter().filter(|o| o.kind == OutputKind::Symlink) {
            let t = o.target.as_deref().unwrap_or("");
            let covered = e.reasons.iter().any(|r| r.path.as_ref() == Some(&o.path));
            if covered {
                continue;
            }
            let escapes = !t.starts_with('/') && {
                let base = o.path.parent().map(|p| format!("{p}/")).unwrap_or_default();
                matches!(
                    RelPath::normalize(&format!("{base}{t}")),
                    Err(RelPathError::Escapes(_))
                )
            };
            if t.starts_with('/') || escapes {
                out.push((
                    if escapes { kind::ESCAPING_PATH } else { kind::ABSOLUTE_PATH },
                    Some(o.path.to_string()),
                    format!("output symlink `{}` of `{}` points to `{t}`, outside the project, but the entry does not say so\n  help: make the link relative to its directory (e.g. `ln -sr`) and rebuild", o.path, e.target),
                ));
            }
        }
        out
    }
}

/// Every blob of `e` with what it holds, for messages.
fn blob_uses(e: &Entry) -> Vec<(Digest, String)> {
    let mut v: Vec<(Digest, String)> = Vec::new();
    for o in &e.outputs {
        if let Some(d) = o.digest {
            v.push((d, format!("output `{}`", o.path)));
        }
    }
    v.extend(e.stdout.map(|d| (d, "captured stdout".to_owned())));
    v.extend(e.stderr.map(|d| (d, "captured stderr".to_owned())));
    v.push((e.inputs, "inputs summary".to_owned()));
    let mut seen = BTreeSet::new();
    v.retain(|(d, _)| seen.insert(*d));
    v
}

fn kind_of(r: &Reason) -> &'static str {
    match r.kind.as_str() {
        "embedded-path" => "embedded-path",
        "absolute-symlink" => "absolute-symlink",
        "escaping-symlink" => "escaping-symlink",
        "untracked-input" => "untracked-input",
        _ => kind::NOT_RELOCATABLE,
    }
}

/// A stored reason as the user should read it: the target, the file, the
/// absolute path (when the project is known) and the fix.
fn render_reason(e: &Entry, r: &Reason, project_root: Option<&str>, depot_root: &str) -> String {
    let file = r.path.as_ref().map(|p| p.as_str()).unwrap_or("?");
    match r.kind.as_str() {
        "embedded-path" => {
            let on_depot = r.detail.contains("@depot");
            let (what, abs) = if on_depot {
                ("depot root", Some(depot_root))
            } else {
                ("project root", project_root)
            };
            let offset = r
                .offset
                .map(|o| format!(" at byte {o}"))
                .unwrap_or_default();
            let (found, prefix) = match abs {
                Some(a) => (format!("the absolute path `{a}` (the {what})"), a.to_owned()),
                None => (
                    format!("the absolute {what} it was built in (@project; run verify inside the project to see it)"),
                    "<project root>".to_owned(),
                ),
            };
            format!(
                "output `{file}` of `{}` embeds {found}{offset}, so it is wrong anywhere else\n  help: build with relative paths, e.g. `-ffile-prefix-map={prefix}=.` for C/C++, `--remap-path-prefix={prefix}=.` for Rust, or write paths relative to the project; then rebuild",
                e.target
            )
        }
        "untracked-input" => format!(
            "`{}` reads `{file}` with track_content = false: its size and mtime enter the key, and a copy or checkout changes the mtime, so it misses after a move\n  help: drop `track_content = false` for `{file}` so its content is hashed instead",
            e.target
        ),
        "absolute-symlink" | "escaping-symlink" => format!(
            "output symlink `{file}` of `{}` points outside the project ({})\n  help: make the link relative to its directory (e.g. `ln -sr`) and rebuild",
            e.target, r.detail
        ),
        _ => format!("`{}` is not relocatable: {}", e.target, r.detail),
    }
}

/// `dir/ab/<hex><suffix>` with a valid digest in the right shard.
fn sharded_name(parts: &[String], suffix: &str) -> Option<Digest> {
    let [_, shard, name] = parts else {
        return None;
    };
    let hex = name.strip_suffix(suffix)?;
    let d: Digest = hex.parse().ok()?;
    (shard.len() == 2 && hex.starts_with(shard.as_str())).then_some(d)
}

/// A path problem found in a stored TOML value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathFlaw {
    /// An absolute path, with the text found.
    Absolute(String),
    /// A path with `..` climbing out of its root.
    Escapes(String),
    /// A path field that is not normalized.
    Unnormalized(String),
}

impl PathFlaw {
    fn kind(&self) -> &'static str {
        match self {
            PathFlaw::Absolute(_) => kind::ABSOLUTE_PATH,
            PathFlaw::Escapes(_) => kind::ESCAPING_PATH,
            PathFlaw::Unnormalized(_) => kind::UNNORMALIZED_PATH,
        }
    }

    fn detail(&self, field: &str) -> String {
        match self {
            PathFlaw::Absolute(s) => format!(
                "field `{field}` names the absolute path `{s}`, which does not exist once the depot moves\n  help: the depot must store only relative paths; remove the file (rebuilding rewrites it) or restore the depot from a good copy"
            ),
            PathFlaw::Escapes(s) => format!(
                "field `{field}` holds `{s}`, which climbs out of its root with `..`\n  help: remove the file (rebuilding rewrites it) or restore the depot from a good copy"
            ),
            PathFlaw::Unnormalized(s) => format!(
                "field `{field}` holds `{s}`, which is not a normalized relative path\n  help: remove the file (rebuilding rewrites it) or restore the depot from a good copy"
            ),
        }
    }
}

/// Every absolute or escaping path in a stored TOML value, with its field.
/// Fields named `path` must be normalized relative paths; symlink output
/// targets are judged against their directory elsewhere; every other string
/// must not contain an absolute path or a known root.
fn scan_value(v: &toml::Value, field: &str, roots: &[String]) -> Vec<(String, PathFlaw)> {
    let mut out = Vec::new();
    match v {
        toml::Value::String(s) => {
            let name = field.rsplit('.').next().unwrap_or(field);
            if name == "path" {
                match RelPath::new(s) {
                    Ok(_) => {}
                    Err(RelPathError::Absolute(_)) => {
                        out.push((field.to_owned(), PathFlaw::Absolute(s.clone())))
                    }
                    Err(RelPathError::Escapes(_)) => {
                        out.push((field.to_owned(), PathFlaw::Escapes(s.clone())))
                    }
                    Err(_) => out.push((field.to_owned(), PathFlaw::Unnormalized(s.clone()))),
                }
            } else if !(name == "target" && field.starts_with("outputs[")) {
                if let Some(found) = absolute_in(s, roots) {
                    out.push((field.to_owned(), PathFlaw::Absolute(found)));
                }
            }
        }
        toml::Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                out.extend(scan_value(item, &format!("{field}[{i}]"), roots));
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t {
                let f = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                out.extend(scan_value(item, &f, roots));
            }
        }
        _ => {}
    }
    out
}

/// The absolute path in `s`, if any: one of the known `roots` anywhere, or a
/// word that starts with `/`, `~/` or a drive letter.
fn absolute_in(s: &str, roots: &[String]) -> Option<String> {
    if let Some(r) = roots.iter().find(|r| s.contains(r.as_str())) {
        return Some(r.clone());
    }
    let separators = |c: char| c.is_whitespace() || "=()'\"`,;<>[]{}".contains(c);
    s.split(separators).find_map(|w| {
        let b = w.as_bytes();
        let unix = b.len() > 1
            && b[0] == b'/'
            && (b[1].is_ascii_alphanumeric() || b"._-~@".contains(&b[1]));
        let home = w.starts_with("~/");
        let drive = b.len() > 2
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'/' || b[2] == b'\\');
        (unix || home || drive).then(|| w.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_are_found_in_words_but_not_in_prose() {
        let none: [String; 0] = [];
        for clean in [
            "embeds the absolute project root (@project) at byte 12",
            "2026-11-21T00:00:00Z",
            "symlink points outside the project",
            "a/b and c/d",
            "10G",
            "/",
        ] {
            assert_eq!(absolute_in(clean, &none), None, "{clean}");
        }
        assert_eq!(
            absolute_in("built in /home/u/proj today", &none).as_deref(),
            Some("/home/u/proj")
        );
        assert_eq!(
            absolute_in("-ffile-prefix-map=/src/x=.", &none).as_deref(),
            Some("/src/x")
        );
        assert_eq!(absolute_in("C:\\work", &none).as_deref(), Some("C:\\work"));
        assert_eq!(absolute_in("~/cache", &none).as_deref(), Some("~/cache"));
        let roots = ["/tmp/depot".to_owned()];
        assert_eq!(
            absolute_in("x@/tmp/depot/y", &roots).as_deref(),
            Some("/tmp/depot")
        );
    }

    #[test]
    fn path_fields_must_be_normalized_relative_paths() {
        let v: toml::Value = toml::from_str(
            r#"
            detail = "fine"
            [[outputs]]
            path = "/abs/out.o"
            target = "/symlink/targets/are/judged/elsewhere"
            [[outputs]]
            path = "../up"
            [[outputs]]
            path = "a//b"
            "#,
        )
        .unwrap();
        let found = scan_value(&v, "", &[]);
        assert_eq!(
            found,
            vec![
                (
                    "outputs[0].path".to_owned(),
                    PathFlaw::Absolute("/abs/out.o".into())
                ),
                (
                    "outputs[1].path".to_owned(),
                    PathFlaw::Escapes("../up".into())
                ),
                (
                    "outputs[2].path".to_owned(),
                    PathFlaw::Unnormalized("a//b".into())
                ),
            ]
        );
    }

    #[test]
    fn sharded_names_must_match_their_shard() {
        let d = Digest::of(b"x").to_hex();
        let ok = [
            "entries-v2".to_owned(),
            d[..2].to_owned(),
            format!("{d}.toml"),
        ];
        assert!(sharded_name(&ok, ".toml").is_some());
        let wrong = [
            "entries-v2".to_owned(),
            "zz".to_owned(),
            format!("{d}.toml"),
        ];
        assert!(sharded_name(&wrong, ".toml").is_none());
        let stray = [
            "entries-v2".to_owned(),
            d[..2].to_owned(),
            "notes.txt".into(),
        ];
        assert!(sharded_name(&stray, ".toml").is_none());
    }
}
