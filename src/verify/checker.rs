//! The depot walk and the per-file checks behind `verify`: names, symlinks,
//! `DEPOT.toml`, project records, entries and their blobs. Reads only; a
//! corrupt blob is reported, never quarantined.

use std::path::{Path, PathBuf};

use super::paths::{scan_value, sharded_name};
use super::reasons::{blob_uses, kind_of, render_reason};
use super::{Problem, ProblemKind, VerifyOptions};
use crate::depot::entries::{parse_entry, Entry, OutputKind};
use crate::depot::layout::{
    pack_file_id, pack_index_id, ENTRIES_DIR, ENTRY_SUFFIX, OBJECTS_DIR, PACKS_SUBDIR,
    PROJECTS_DIR, VARIANTS_DIR, VARIANTS_SUFFIX,
};
use crate::depot::Depot;
use crate::digest::{Digest, Key};
use crate::relpath::{RelPath, RelPathError};

/// The project whose roots `@project` stands for, when known.
pub(super) struct ProjectView {
    pub(super) name: String,
    /// The root as given and canonicalized.
    pub(super) roots: Vec<String>,
}

/// `p` as given and canonicalized (when different), without trailing `/`.
pub(super) fn forms(p: &Path) -> Vec<String> {
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

pub(super) fn rel_to(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| p.to_string_lossy().into_owned())
}

pub(super) struct Checker<'a> {
    pub(super) depot: &'a Depot,
    pub(super) project: Option<&'a ProjectView>,
    /// Absolute paths the depot and project are known under.
    pub(super) roots: Vec<String>,
    pub(super) opts: &'a VerifyOptions,
    /// Whether the whole depot was walked (so symlinks are already reported).
    pub(super) walked: bool,
}

/// What one walk of the depot found.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) problems: Vec<Problem>,
    /// Entry files and the key their name gives.
    pub(super) entries: Vec<(PathBuf, Option<Key>)>,
    /// Correctly named blob files.
    pub(super) blobs: Vec<Digest>,
    /// `projects-v2/**/*.toml`.
    pub(super) records: Vec<PathBuf>,
    /// Variants record files and the base key their name gives.
    pub(super) variants: Vec<(PathBuf, Option<Key>)>,
}

pub(super) struct EntryCheck {
    pub(super) key: Option<Key>,
    pub(super) problems: Vec<Problem>,
    pub(super) blobs: Vec<Digest>,
}

impl Checker<'_> {
    fn problem(&self, kind: ProblemKind, path: &Path, detail: String) -> Problem {
        Problem {
            kind,
            entry: None,
            path: Some(rel_to(self.depot.root(), path)),
            detail,
            label: None,
        }
    }

    pub(super) fn depot_toml(&self) -> Vec<Problem> {
        let path = self.depot.config_path();
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
                    ProblemKind::UnparseableFile,
                    &path,
                    format!("DEPOT.toml does not parse: {}", e.message()),
                )),
            },
            Err(e) => out.push(self.problem(ProblemKind::Unreadable, &path, e.to_string())),
        }
        out
    }

    /// One pass over the whole depot: symlinks, misnamed files, and the
    /// entries, blobs and records to check.
    pub(super) fn walk(&self) -> Walk {
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
                        ProblemKind::Unreadable,
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
            let in_store = top == OBJECTS_DIR || top == ENTRIES_DIR || top == VARIANTS_DIR;
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
                    ProblemKind::Unreadable,
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
                OBJECTS_DIR if parts.get(1).is_some_and(|p| p == PACKS_SUBDIR) => {
                    let named = parts.len() == 3
                        && (pack_index_id(&parts[2]).is_some() || pack_file_id(&parts[2]).is_some());
                    if !named {
                        w.problems.push(self.problem(
                            ProblemKind::MisnamedBlob,
                            item.path(),
                            "not named like a pack or its index (`objects-v1/packs/pack-<64 hex digits>.pack` or `.idx`); relocache never reads it\n  help: remove it".into(),
                        ));
                    }
                }
                OBJECTS_DIR => match sharded_name(&parts, "") {
                    Some(d) => w.blobs.push(d),
                    None => w.problems.push(self.problem(
                        ProblemKind::MisnamedBlob,
                        item.path(),
                        "not named like a blob (`objects-v1/ab/<64 hex digits starting with ab>`); relocache never reads it\n  help: remove it".into(),
                    )),
                },
                ENTRIES_DIR => {
                    let key = sharded_name(&parts, ENTRY_SUFFIX).map(Key);
                    if key.is_none() {
                        w.problems.push(self.problem(
                            ProblemKind::MisnamedEntry,
                            item.path(),
                            "not named like an entry (`entries-v2/ab/<key>.toml`), so no build will ever find it\n  help: remove it".into(),
                        ));
                    }
                    w.entries.push((item.path().to_path_buf(), key));
                }
                VARIANTS_DIR => w.variants.push((
                    item.path().to_path_buf(),
                    sharded_name(&parts, VARIANTS_SUFFIX).map(Key),
                )),
                PROJECTS_DIR if rel.extension().is_some_and(|e| e == "toml") => {
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
            Err(e) => return Some(self.problem(ProblemKind::Unreadable, abs, e.to_string())),
        };
        if in_store {
            return Some(self.problem(
                ProblemKind::SymlinkInStore,
                abs,
                format!("is a symlink (to `{target}`); blobs and entries must be regular files, or a copy of the depot loses or changes them\n  help: replace it with the file it points to, or remove it"),
            ));
        }
        if !self.opts.relocatable {
            return None;
        }
        if target.starts_with('/') {
            return Some(self.problem(
                ProblemKind::SymlinkLeavesDepot,
                abs,
                format!(
                    "is a symlink to the absolute path `{target}`, which does not move with the depot\n  help: {}",
                    ProblemKind::SymlinkLeavesDepot.help()
                ),
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
                ProblemKind::SymlinkLeavesDepot,
                abs,
                format!("is a symlink to `{target}`, which is outside the depot\n  help: copy what it points to into the depot, or remove the link"),
            )),
            _ => None,
        }
    }

    pub(super) fn records(&self, records: &[PathBuf]) -> Vec<Problem> {
        let mut out = Vec::new();
        for path in records {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    out.push(self.problem(ProblemKind::Unreadable, path, e.to_string()));
                    continue;
                }
            };
            if let Err(why) = crate::depot::checksum::open(&text) {
                out.push(self.problem(
                    ProblemKind::UnparseableFile,
                    path,
                    format!(
                        "project record is damaged: {why}\n  help: {}",
                        ProblemKind::UnparseableFile.help()
                    ),
                ));
                continue;
            }
            let value = match toml::from_str::<toml::Value>(&text) {
                Ok(v) => v,
                Err(e) => {
                    out.push(self.problem(
                        ProblemKind::UnparseableFile,
                        path,
                        format!("project record does not parse: {}\n  help: remove it; the next build or restore writes it again", e.message()),
                    ));
                    continue;
                }
            };
            if let Err(e) = value.clone().try_into::<crate::depot::records::Record>() {
                out.push(self.problem(
                    ProblemKind::UnparseableFile,
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

    /// Checks variants records: named by a key, sealed, parsing, naming that
    /// key; with `--relocatable`, their paths (absolute ones only outside
    /// the project, see [`crate::discovered`]).
    pub(super) fn variants(&self, files: &[(PathBuf, Option<Key>)]) -> Vec<Problem> {
        let mut out = Vec::new();
        for (path, key) in files {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    out.push(self.problem(ProblemKind::Unreadable, path, e.to_string()));
                    continue;
                }
            };
            let why = match (key, crate::depot::variants::parse_variants(&text)) {
                (None, _) => Some(
                    "is not named like a variants record (`variants-v1/ab/<key>.toml`)".to_owned(),
                ),
                (Some(k), Ok(v)) if v.key != *k => {
                    Some(format!("records key {} under another name", v.key))
                }
                (_, Ok(_)) => None,
                (_, Err(e)) => Some(format!("the variants record is damaged: {e}")),
            };
            if let Some(why) = why {
                out.push(self.problem(
                    ProblemKind::CorruptVariants,
                    path,
                    format!("{why}\n  help: {}", ProblemKind::CorruptVariants.help()),
                ));
            }
            if self.opts.relocatable {
                if let Ok(v) = toml::from_str::<toml::Value>(&text) {
                    for (field, what) in scan_value(&v, "", &self.roots) {
                        out.push(self.problem(what.kind(), path, what.detail(&field)));
                    }
                }
            }
        }
        out
    }

    /// Checks one entry file of `depot` (whose name gives `name_key`).
    // Long on purpose: checks one after another on the same entry (paths first, then parse, shape, blobs, reasons), each adding to one problem list.
    pub(super) fn entry(&self, depot: &Depot, path: &Path, name_key: Option<Key>) -> EntryCheck {
        let mut out = EntryCheck {
            key: name_key,
            problems: Vec::new(),
            blobs: Vec::new(),
        };
        let rel = rel_to(depot.root(), path);
        let mut push =
            |kind: ProblemKind, p: Option<String>, detail: String, label: &Option<String>| {
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
                        ProblemKind::SymlinkInStore,
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
                push(ProblemKind::Unreadable, Some(rel), e.to_string(), &None);
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
                        ProblemKind::CorruptEntry,
                        Some(rel),
                        format!(
                            "the entry is damaged: {msg}\n  help: {}",
                            ProblemKind::CorruptEntry.help()
                        ),
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
        let mut push = |kind: ProblemKind, p: Option<String>, detail: String| {
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
                    ProblemKind::MisnamedEntry,
                    Some(rel.clone()),
                    format!("the entry records key {} but is stored under {k}, so no build finds it under its own key\n  help: remove it", entry.key),
                );
            }
        }
        for (d, used_for) in blob_uses(&entry) {
            let bp = depot.blob_path(&d);
            match std::fs::symlink_metadata(&bp) {
                Ok(md) if md.file_type().is_symlink() && !self.walked => push(
                    ProblemKind::SymlinkInStore,
                    Some(rel_to(depot.root(), &bp)),
                    format!("blob {d} ({used_for}) is a symlink; blobs must be regular files\n  help: replace it with the file it points to"),
                ),
                Ok(_) => {}
                Err(_) if depot.has_packed_blob(&d) => {}
                Err(_) => push(
                    ProblemKind::MissingBlob,
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
    fn reasons(&self, depot: &Depot, e: &Entry) -> Vec<(ProblemKind, Option<String>, String)> {
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
                ProblemKind::NotRelocatable,
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
                    if escapes { ProblemKind::EscapingPath } else { ProblemKind::AbsolutePath },
                    Some(o.path.to_string()),
                    format!("output symlink `{}` of `{}` points to `{t}`, outside the project, but the entry does not say so\n  help: make the link relative to its directory (e.g. `ln -sr`) and rebuild", o.path, e.target),
                ));
            }
        }
        out
    }
}
