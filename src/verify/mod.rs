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

mod checker;
mod packs;
mod paths;
mod reasons;
pub mod simulate;

use checker::{forms, rel_to, Checker, EntryCheck, ProjectView};

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::depot::blobs::BlobHealth;
use crate::depot::{Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::engine::BuildError;
use crate::manifest::Manifest;
use crate::report::Reporter;

/// The `kind` of every [`Problem`] `verify` reports, kebab-case in `--json`.
/// Entries marked non-relocatable are reported under their reason's own kind
/// (`embedded-path`, `untracked-input`, `absolute-symlink`, `escaping-symlink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A stored file names an absolute path.
    AbsolutePath,
    /// A stored path climbs out of its root with `..`.
    EscapingPath,
    /// A stored path is not normalized (`.`, `//`, `\`).
    UnnormalizedPath,
    /// A symlink in the depot points outside it (or is absolute).
    SymlinkLeavesDepot,
    /// A symlink where a blob or an entry must be a regular file.
    SymlinkInStore,
    /// An entry file whose name is not `<key>.toml` in shard `<key[..2]>`, or
    /// that records another key.
    MisnamedEntry,
    /// A file in `objects-v1/` not named like a blob in its shard.
    MisnamedBlob,
    /// An entry that fails its checksum or does not parse: damaged, never
    /// restored (checked always, without `--integrity`).
    CorruptEntry,
    /// A variants record (path sets of a target with a depfile) that fails
    /// its checksum, does not parse, or is misnamed: ignored by lookups (a
    /// miss), replaced by the next store.
    CorruptVariants,
    /// A project record or `DEPOT.toml` that does not parse.
    UnparseableFile,
    /// A depot file or directory that cannot be read.
    Unreadable,
    /// A blob an entry names is absent.
    MissingBlob,
    /// A blob whose content does not hash to its name (`--integrity`).
    CorruptBlob,
    /// An entry marked `relocatable = false` without a recorded reason.
    NotRelocatable,
    /// `--target`: the target's current key has no entry.
    NotCached,
    /// `--simulate`: the target would not hit after the move.
    WouldMiss,
    /// An output embeds the absolute project or depot root (a stored reason).
    EmbeddedPath,
    /// An output symlink points to an absolute path (a stored reason).
    AbsoluteSymlink,
    /// An output symlink climbs out of the project (a stored reason).
    EscapingSymlink,
    /// An input is tracked by size and mtime (a stored reason).
    UntrackedInput,
    /// A pack index that fails its checksum, is unsorted, or whose entries
    /// reach past its pack's end or overlap: its pack is ignored.
    DamagedPackIndex,
    /// A pack index whose pack file is absent.
    MissingPack,
    /// A blob inside a pack whose content does not hash to its name
    /// (`--integrity`).
    CorruptPackedBlob,
}

impl ProblemKind {
    /// The name `--json` and the text report use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AbsolutePath => "absolute-path",
            Self::EscapingPath => "escaping-path",
            Self::UnnormalizedPath => "unnormalized-path",
            Self::SymlinkLeavesDepot => "symlink-leaves-depot",
            Self::SymlinkInStore => "symlink-in-store",
            Self::MisnamedEntry => "misnamed-entry",
            Self::MisnamedBlob => "misnamed-blob",
            Self::CorruptEntry => "corrupt-entry",
            Self::CorruptVariants => "corrupt-variants",
            Self::UnparseableFile => "unparseable-file",
            Self::Unreadable => "unreadable",
            Self::MissingBlob => "missing-blob",
            Self::CorruptBlob => "corrupt-blob",
            Self::NotRelocatable => "not-relocatable",
            Self::NotCached => "not-cached",
            Self::WouldMiss => "would-miss",
            Self::EmbeddedPath => "embedded-path",
            Self::AbsoluteSymlink => "absolute-symlink",
            Self::EscapingSymlink => "escaping-symlink",
            Self::UntrackedInput => "untracked-input",
            Self::DamagedPackIndex => "damaged-pack-index",
            Self::MissingPack => "missing-pack",
            Self::CorruptPackedBlob => "corrupt-packed-blob",
        }
    }

    /// What to do about a problem of this kind, in general; a
    /// [`Problem::detail`] gives the fix for the one case found. The
    /// relocatability kinds share [`ReasonKind::help`].
    pub fn help(self) -> &'static str {
        match self {
            Self::AbsolutePath => "the depot must store only relative paths; remove the file (rebuilding rewrites it) or restore the depot from a good copy",
            Self::EscapingPath => "remove the file (rebuilding rewrites it) or restore the depot from a good copy",
            Self::UnnormalizedPath => "remove the file (rebuilding rewrites it) or restore the depot from a good copy",
            Self::SymlinkLeavesDepot => "replace it with a relative link inside the depot, or with the file itself",
            Self::SymlinkInStore => "replace it with the file it points to",
            Self::MisnamedEntry => "remove it",
            Self::MisnamedBlob => "remove it",
            Self::CorruptEntry => "remove it (a build quarantines it); the target rebuilds and stores a new one",
            Self::CorruptVariants => "remove it; its targets miss until they are rebuilt, which writes it again",
            Self::UnparseableFile => "remove it; the next build or restore writes it again",
            Self::Unreadable => "check the permissions of the depot",
            Self::MissingBlob => "rebuild the target, or restore the depot from a complete copy",
            Self::CorruptBlob => "entries using it miss (and the blob is quarantined) at the next build; rebuild them, or restore the depot from a good copy",
            Self::NotRelocatable => "rebuild it to record why",
            Self::NotCached => "build the target",
            Self::WouldMiss => "see `relocache explain` for the full key difference",
            Self::EmbeddedPath => "build with relative paths (`-ffile-prefix-map`, `--remap-path-prefix`), then rebuild",
            Self::AbsoluteSymlink | Self::EscapingSymlink => "make the link relative to its directory (e.g. `ln -sr`) and rebuild",
            Self::UntrackedInput => "drop `track_content = false` so the input's content is hashed",
            Self::DamagedPackIndex => "builds ignore the pack, so entries needing only its blobs miss and rebuild (storing them loose); run `relocache gc`: it copies the pack's sound blobs into a new pack and moves the damaged pair to quarantine/",
            Self::MissingPack => "builds ignore the index; remove it, or restore the pack from a good copy of the depot",
            Self::CorruptPackedBlob => "builds skip that blob (its targets rebuild and store it loose) and leave the pack as it is, since its other blobs are sound; restore the depot from a good copy to get it back",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// What kind of problem.
    pub kind: ProblemKind,
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
// Long on purpose: the order of the checks, each a short block adding to one report; the checks themselves live in `checker.rs`.
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
        problems.extend(c.variants(&walk.variants));
    } else {
        let m = manifest.ok_or(VerifyError::NeedsProject("`verify --target`"))?;
        let planned = crate::engine::plan::plan(m, depots, depot.root(), &opts.targets)?;
        // A template's name stands for its instances.
        let wanted = m.select(&opts.targets).unwrap_or_default();
        for p in planned.iter().filter(|p| wanted.contains(&p.name)) {
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
            // The primary depot's packed blobs are re-hashed with its packs below.
            .filter(|(i, d)| match i {
                0 => depots[0].blob_path(d).is_file(),
                _ => depots[*i].has_blob(d),
            })
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
                        kind: ProblemKind::CorruptBlob,
                        entry: None,
                        path,
                        detail: format!(
                            "blob {d} is corrupt: {why}\n  help: {}",
                            ProblemKind::CorruptBlob.help()
                        ),
                        label: None,
                    }),
                    Err(e) => Some(Problem {
                        kind: ProblemKind::Unreadable,
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

    // Packs: every index checked; with --integrity every packed blob too.
    if opts.targets.is_empty() {
        let (found, checked) = packs::check(depot, opts.integrity, reporter)?;
        problems.extend(found);
        for d in checked {
            blobs_checked.insert((0, d));
        }
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

fn not_cached(p: &crate::engine::plan::Planned) -> Problem {
    let why = if let Some(d) = &p.blocked_by {
        format!("its dep `{d}` is not cached, so its key is unknown")
    } else if let Some(e) = &p.error {
        format!("its inputs cannot be resolved: {e}")
    } else {
        "no entry is stored for its current key (never built, or its inputs changed since)".into()
    };
    Problem {
        kind: ProblemKind::NotCached,
        entry: p.key,
        path: None,
        detail: format!(
            "target `{}` is not cached: {why}\n  help: run `relocache build {}`",
            p.name, p.name
        ),
        label: Some(p.name.clone()),
    }
}
