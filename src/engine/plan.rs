//! Current keys without building: for each target, the key it would have now
//! and the entry stored for it, computed from the tree and the depot stack.
//! Used by `status`, `explain`, `key`, `path`, `pack TARGET…`,
//! `pack --current` and `verify --simulate`. Never runs a command and never writes anything.
//!
//! A target's key needs its deps' outputs. They are taken from the deps'
//! entries for their current keys, so a fresh checkout with a copied depot
//! plans exactly like the original; when a dep has no entry, the dependent's
//! key is unknown until that dep is built.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{discover, scan_skips, select_targets, BuildError, Ctx, DepOut, DepOuts};
use crate::depot::entries::{Entry, InputsSummary};
use crate::depot::Depot;
use crate::digest::{Digest, Key};
use crate::discovered::DiscoveredPath;
use crate::inputs::ProjectScan;
use crate::manifest::Manifest;
use crate::memo::StatMemo;

/// One target's current state.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Target name.
    pub name: String,
    /// The key it has now; `None` when a dep has no entry or inputs failed.
    pub key: Option<Key>,
    /// The stored entry for `key`, and the index of the depot holding it.
    pub entry: Option<(usize, Entry)>,
    /// What went into `key`.
    pub summary: Option<InputsSummary>,
    /// The dep whose outputs are unknown, making `key` unknown.
    pub blocked_by: Option<String>,
    /// Why the inputs could not be resolved.
    pub error: Option<String>,
    /// With a depfile and no entry for the files it would read now: the
    /// files the last build's depfile named that differ now.
    pub discovered: Vec<DiscoveredChange>,
    /// Its entry is not relocatable and was built at another location
    /// ([`Entry::built_elsewhere`]): a build would restore outputs naming
    /// that location, and warn.
    pub not_relocatable_elsewhere: bool,
}

impl Planned {
    /// Why the target has no entry for its current inputs, or `None` when it
    /// has one: its inputs failed, a dep has no entry (so its key is
    /// unknown), or nothing is stored under its key (never built, or its
    /// last build failed).
    pub fn missing(&self) -> Option<Missing> {
        if self.entry.is_some() {
            return None;
        }
        Some(match (&self.error, &self.blocked_by) {
            (Some(err), _) => Missing::InputsFailed(err.clone()),
            (None, Some(dep)) => Missing::DepHasNoEntry(dep.clone()),
            (None, None) => Missing::NoEntry,
        })
    }
}

/// Why a planned target has no entry for its current inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Nothing is stored under its current key: never built with these
    /// inputs, or that build failed.
    NoEntry,
    /// This dep has no entry, so the target's key is unknown.
    DepHasNoEntry(String),
    /// Its inputs could not be resolved (the error).
    InputsFailed(String),
}

impl Missing {
    /// The kind, kebab-case, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Missing::NoEntry => "no-entry",
            Missing::DepHasNoEntry(_) => "dep-has-no-entry",
            Missing::InputsFailed(_) => "inputs-failed",
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::NoEntry => f.write_str("no entry for its current inputs"),
            Missing::DepHasNoEntry(dep) => write!(f, "its dep `{dep}` has no entry"),
            Missing::InputsFailed(err) => f.write_str(err),
        }
    }
}

/// A file a depfile named at the last build, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredChange {
    /// The file.
    pub path: DiscoveredPath,
    /// Its digest then.
    pub old: Digest,
    /// Its digest now; `None` when it is gone.
    pub new: Option<Digest>,
}

/// Plans `targets` (all when empty) and their deps, in dependency order.
/// `depots` may be empty (no depot yet); `depot_root` is the path that would
/// be written, replaced by `@depot` in keys.
pub fn plan(
    manifest: &Manifest,
    depots: &[Depot],
    depot_root: &std::path::Path,
    targets: &[String],
) -> Result<Vec<Planned>, BuildError> {
    plan_moved(manifest, depots, depot_root, targets, None)
}

/// [`plan`] in a moved copy of the project: env values are read through
/// `moved` (an old root names the new one), as a user at the new place
/// would set them. For `verify --simulate`.
pub(crate) fn plan_moved(
    manifest: &Manifest,
    depots: &[Depot],
    depot_root: &std::path::Path,
    targets: &[String],
    moved: Option<crate::key::Move>,
) -> Result<Vec<Planned>, BuildError> {
    let selected = select_targets(manifest, targets)?;
    let mut roots: Vec<PathBuf> = depots.iter().map(|d| d.root().to_path_buf()).collect();
    roots.push(depot_root.to_path_buf());
    let scan = ProjectScan::walk(&manifest.root, &scan_skips(manifest, &roots))?;
    // Read the memo of the first depot to avoid re-hashing; never write it.
    let memo = depots
        .first()
        .map(|d| StatMemo::load(StatMemo::location(d, &manifest.name, &manifest.root)));
    let mut ctx = Ctx::new(manifest, depots, depot_root, &scan, memo.as_ref());
    ctx.moved = moved;
    let order = manifest.closure(&selected);
    let mut outs: DepOuts<'_> = HashMap::new();
    let mut result = Vec::new();
    for name in &order {
        let t = &manifest.targets[name];
        let mut p = Planned {
            name: name.clone(),
            key: None,
            entry: None,
            summary: None,
            blocked_by: None,
            error: None,
            discovered: vec![],
            not_relocatable_elsewhere: false,
        };
        if let Some(d) = t.deps.iter().find(|d| !outs.contains_key(d.as_str())) {
            // The key is unknown, but what the target reads on disk now is
            // still worth showing (graph --files, explain).
            p.blocked_by = Some(d.clone());
            p.summary = ctx.compute_with(t, &outs).ok().map(|c| c.summary());
            result.push(p);
            continue;
        }
        match ctx.compute_with(t, &outs) {
            Ok(c) => {
                p.key = Some(c.key);
                p.summary = Some(c.summary());
                p.entry = match t.depfile {
                    None => depots
                        .iter()
                        .enumerate()
                        .find_map(|(i, d)| d.read_entry(&c.key).ok().flatten().map(|e| (i, e))),
                    Some(_) => discovered_entry(&ctx, &c.key, &outs),
                }
                // One that does not cover the outputs is rebuilt, not ready.
                .filter(|(_, e)| e.check_covers(&t.outputs).is_ok());
                match &p.entry {
                    // The entry's key: with a depfile, with its discovered inputs.
                    Some((_, e)) => p.key = Some(e.key),
                    None if t.depfile.is_some() => {
                        p.discovered = discovered_changes(&ctx, &t.name, &outs);
                    }
                    None => {}
                }
                if let Some((_, e)) = &p.entry {
                    outs.insert(name, Arc::new(DepOut::of(&t.outputs, &e.outputs)));
                    p.not_relocatable_elsewhere = e.built_elsewhere(&ctx.root_digest);
                }
            }
            Err(e) => p.error = Some(e.to_string()),
        }
        result.push(p);
    }
    Ok(result)
}

/// The first entry base key `base` hits through the variants records of the
/// stack (the files of a path set hashed as they are now).
fn discovered_entry(ctx: &Ctx<'_>, base: &Key, deps: &DepOuts<'_>) -> Option<(usize, Entry)> {
    ctx.depots.iter().enumerate().find_map(|(i, d)| {
        discover::candidates(ctx, d, base, deps)
            .ok()?
            .into_iter()
            .find_map(|(k, _)| d.read_entry(&k).ok().flatten().map(|e| (i, e)))
    })
}

/// The files the depfile of `target`'s last recorded build named that
/// differ now (content or gone), sorted by path.
fn discovered_changes(ctx: &Ctx<'_>, target: &str, deps: &DepOuts<'_>) -> Vec<DiscoveredChange> {
    let project = &ctx.manifest.name;
    let Some(key) = ctx
        .depots
        .iter()
        .find_map(|d| d.read_record(project, target).ok().flatten())
        .map(|r| r.key)
    else {
        return vec![];
    };
    let Some(last) = ctx
        .depots
        .iter()
        .find_map(|d| d.read_entry(&key).ok().flatten())
    else {
        return vec![];
    };
    last.discovered
        .iter()
        .filter_map(|d| {
            let now = discover::digests(ctx, std::slice::from_ref(&d.path), deps)
                .ok()
                .flatten()
                .map(|h| h[0].digest);
            (now != Some(d.digest)).then(|| DiscoveredChange {
                path: d.path.clone(),
                old: d.digest,
                new: now,
            })
        })
        .collect()
}
