//! The context of one build and key assembly: what every target's key is
//! made of ([`Ctx::compute_with`]: inputs, env, tools, command, deps'
//! outputs, all rooted), which deps each target can see, and the checks made
//! before anything is built. Shared by `build` and `plan`. It only reads the
//! project and the depot: it must never run a target's command or write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::{run, BuildError};
use crate::depot::entries::{outputs_digest, InputsSummary, OutputKind, OutputRecord};
use crate::depot::{Depot, DepotStack};
use crate::digest::{Digest, Key, RootDigest};
use crate::file_state::FileState;
use crate::follow::Follow;
use crate::inputs::{
    glob_dir_prefix, DepFiles, Excluded, InputError, InputFile, Inputs, ProjectScan,
};
use crate::key::{self, KeyInputs, Rooted};
use crate::manifest::{reachable_deps, transitive_deps, Command, Manifest, Pattern, Target};
use crate::memo::StatMemo;
use crate::relpath::{equal_range, prefix_range, self_and_ancestors_of, RelPath};
use crate::tools::{ToolWarning, Tools};

/// The finished deps of a target, by name; shared, not copied, between the
/// targets that read them.
pub(crate) type DepOuts<'n> = HashMap<&'n str, Arc<DepOut>>;

/// A finished target as its dependents see it: its outputs by its entry.
#[derive(Debug, Clone)]
pub(crate) struct DepOut {
    pub digest: Digest,
    pub declared: Vec<RelPath>,
    pub files: Vec<(RelPath, FileState)>,
}

impl DepOut {
    pub(crate) fn of(declared: &[RelPath], outputs: &[OutputRecord]) -> DepOut {
        DepOut {
            digest: outputs_digest(outputs),
            declared: declared.to_vec(),
            files: outputs
                .iter()
                .filter_map(|o| {
                    let state = match o.kind {
                        OutputKind::Dir => FileState::Dir,
                        OutputKind::File => FileState::File {
                            digest: o.digest?,
                            size: o.size,
                            executable: o.executable,
                        },
                        OutputKind::Symlink => FileState::Symlink {
                            target: o.target.clone().unwrap_or_default(),
                            resolved: None,
                        },
                    };
                    Some((o.path.clone(), state))
                })
                .collect(),
        }
    }
}

/// Shared, read-only context of one build.
pub(crate) struct Ctx<'a> {
    pub manifest: &'a Manifest,
    /// The depot stack, first written; may be empty for read-only planning.
    pub depots: &'a [Depot],
    pub inputs: Inputs<'a>,
    /// The targets' tools, resolved and digested once per build.
    pub tools: Tools,
    pub rooted: Rooted,
    /// Every target's declared outputs with the target, sorted by path:
    /// what a target may not read unless the owner is one of its deps.
    pub outputs: Vec<(&'a RelPath, &'a str)>,
    /// Per target, sorted: its direct deps, and every other transitive dep
    /// whose outputs its inputs can reach (found through `outputs`). Only
    /// these can matter to its key; a deep graph never materializes whole
    /// closures.
    pub visible: HashMap<String, Vec<&'a str>>,
    /// Whether the first depot accepts writes (locks, blobs, entries).
    pub writable: bool,
    /// Digests of unchanged files, by stat.
    pub memo: Option<&'a StatMemo>,
    /// How hits write their outputs.
    pub restore_mode: super::restore::RestoreMode,
    /// Uses and counters of this run, written to the depot's usage log at the end.
    pub usage: crate::depot::usage::Recorder,
    /// The shared remote cache, if any.
    pub remote: Option<&'a crate::remote::Remote>,
    /// `$PWD` for commands: the project root as relocache names it.
    pub pwd: std::path::PathBuf,
    /// Where this build is, as new entries record it and hits compare it.
    pub root_digest: RootDigest,
    /// Planning a moved copy (`verify --simulate`): env values as they
    /// would read after the move. `None` for builds and every other plan.
    pub moved: Option<key::Move>,
    /// Discovered files outside the project, hashed once per build (their
    /// digest and stat; `None` when absent).
    pub outside: std::sync::Mutex<HashMap<String, Option<(Digest, crate::file_state::Stamp)>>>,
}

/// Everything a target's key is made of, computed from the tree as it is now.
pub(crate) struct Computed {
    pub key: Key,
    pub inputs: Vec<InputFile>,
    /// Tools keyed by a launcher they could not be resolved through (each
    /// reported by the first target that lists it).
    pub warnings: Vec<ToolWarning>,
    /// The summary without its file list, which [`Computed::summary`] adds:
    /// building that map is skipped on hits.
    partial: InputsSummary,
}

impl Computed {
    /// Everything that went into the key, for the entry and for `explain`.
    pub fn summary(&self) -> InputsSummary {
        InputsSummary {
            files: self
                .inputs
                .iter()
                .map(|i| (i.path.clone(), i.state.clone()))
                .collect(),
            ..self.partial.clone()
        }
    }
}

/// Refuses a depot at, inside or around a declared output: a build removes
/// its outputs before running the command (and a restore prunes them).
pub(super) fn check_depots_outside_outputs(
    manifest: &Manifest,
    depots: &DepotStack,
) -> Result<(), BuildError> {
    let real_root = std::fs::canonicalize(&manifest.root).unwrap_or_else(|_| manifest.root.clone());
    for d in depots.all() {
        let at = std::fs::canonicalize(d.root()).unwrap_or_else(|_| d.root().to_path_buf());
        let Some(rel) = at
            .strip_prefix(&real_root)
            .ok()
            .and_then(|r| RelPath::from_path(r).ok())
        else {
            continue;
        };
        for t in manifest.targets.values() {
            if let Some(o) = t
                .outputs
                .iter()
                .find(|o| rel.is_within(o) || o.is_within(&rel))
            {
                return Err(BuildError::DepotInOutput {
                    depot: d.root().to_path_buf(),
                    target: t.name.clone(),
                    output: o.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The [`RootDigest`] of the project at `root`: of its canonical spelling,
/// so a symlinked way in is the same place (as given, if it cannot be
/// resolved).
pub(crate) fn root_digest_of(root: &std::path::Path) -> RootDigest {
    RootDigest::of(&std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()))
}

/// Depot directories inside the project are never inputs.
pub(crate) fn scan_skips(manifest: &Manifest, depot_roots: &[PathBuf]) -> Vec<PathBuf> {
    depot_roots
        .iter()
        .filter(|p| p.starts_with(&manifest.root))
        .cloned()
        .collect()
}

/// `t`'s direct deps and the transitive deps owning an output its inputs
/// can reach: an output at or above a literal input, or below it; for a glob,
/// at or above its literal directory, or below it (any output for a glob
/// without one). Sorted.
fn visible_deps<'m>(
    manifest: &'m Manifest,
    t: &'m Target,
    outputs: &[(&'m RelPath, &'m str)],
) -> Vec<&'m str> {
    let mut related: BTreeSet<&str> = BTreeSet::new();
    // A glob with no literal directory (`**/*.h`) can reach any output.
    let mut anywhere = false;
    let mut reach = |path: &str| {
        if path.is_empty() {
            anywhere = true;
            return;
        }
        let at_or_above =
            self_and_ancestors_of(path).map(|a| equal_range(outputs, a, |(o, _)| o.as_str()));
        let below = prefix_range(outputs, &format!("{path}/"), |(o, _)| o.as_str());
        for range in at_or_above.chain([below]) {
            related.extend(outputs[range].iter().map(|(_, owner)| *owner));
        }
    };
    for input in &t.inputs {
        match &input.pattern {
            Pattern::Literal(p) => reach(p.as_str()),
            Pattern::Glob(g) => reach(glob_dir_prefix(g.glob().glob()).trim_end_matches('/')),
        }
    }
    for d in &t.include_dependency {
        reach(d.path.as_str());
    }
    related.remove(t.name.as_str());
    let reachable = if anywhere {
        transitive_deps(&manifest.targets, &t.name)
    } else {
        reachable_deps(&manifest.targets, &t.name, &related)
    };
    let mut visible: Vec<&str> = reachable
        .into_iter()
        .chain(t.deps.iter().map(|d| d.as_str()))
        .collect();
    visible.sort_unstable();
    visible.dedup();
    visible
}

impl<'a> Ctx<'a> {
    /// `depot_root` is the (first) depot's path, replaced by `@depot` in keys.
    pub(crate) fn new(
        manifest: &'a Manifest,
        depots: &'a [Depot],
        depot_root: &std::path::Path,
        scan: &'a ProjectScan,
        memo: Option<&'a StatMemo>,
    ) -> Ctx<'a> {
        let mut outputs: Vec<(&RelPath, &str)> = manifest
            .targets
            .values()
            .flat_map(|t| t.outputs.iter().map(|o| (o, t.name.as_str())))
            .collect();
        outputs.sort_unstable();
        let visible = manifest
            .targets
            .values()
            .map(|t| (t.name.clone(), visible_deps(manifest, t, &outputs)))
            .collect();
        Ctx {
            manifest,
            depots,
            inputs: Inputs::new(&manifest.root, scan, memo),
            tools: Tools::new(&manifest.root, run::pwd_for(&manifest.root)),
            memo,
            rooted: Rooted::new(&manifest.root, depot_root),
            outputs,
            visible,
            writable: true,
            restore_mode: Default::default(),
            usage: crate::depot::usage::Recorder::new(&manifest.name),
            remote: None,
            pwd: run::pwd_for(&manifest.root),
            root_digest: root_digest_of(&manifest.root),
            moved: None,
            outside: Default::default(),
        }
    }

    /// Whether `p` lies in an output that `t` may not read through a
    /// symlink: its own, or one of a target it does not depend on. `visible`
    /// are its deps known to matter; others are asked about only here, for
    /// links leading into their outputs.
    fn hidden_from(&self, t: &Target, visible: &[&str], p: &RelPath) -> bool {
        p.self_and_ancestors().any(|a| {
            self.outputs[equal_range(&self.outputs, a, |(o, _)| o.as_str())]
                .iter()
                .any(|(_, owner)| {
                    *owner == t.name
                        || (visible.binary_search(owner).is_err()
                            && reachable_deps(&self.manifest.targets, &t.name, &[*owner].into())
                                .is_empty())
                })
        })
    }

    /// The key of `t`, given the output digests and files of its deps.
    pub(crate) fn compute_with(
        &self,
        t: &Target,
        deps: &DepOuts<'_>,
    ) -> Result<Computed, InputError> {
        let visible = &self.visible[&t.name];
        let dep_files = DepFiles::new(
            visible
                .iter()
                .filter_map(|d| deps.get(d))
                .map(|d| (&d.declared[..], &d.files[..])),
        );
        let excluded = Excluded {
            outputs: &self.outputs,
            deps: visible,
        };
        let hidden = |p: &RelPath| self.hidden_from(t, visible, p);
        let inputs = self.inputs.resolve(t, &excluded, &dep_files, &hidden)?;
        let follow = Follow {
            inputs: &self.inputs,
            deps: &dep_files,
            hidden: &hidden,
        };
        let (tools, warnings) = self.tools.digests(&t.tools, self.memo)?;
        let env: BTreeMap<String, Option<String>> = t
            .env
            .iter()
            .map(|n| {
                let v = std::env::var_os(n).map(|v| match &self.moved {
                    Some(m) => self.rooted.apply_os(&m.apply_os(&v)),
                    None => self.rooted.apply_os(&v),
                });
                (n.clone(), v)
            })
            .collect();
        let command = self.rooted.command(&t.command);
        let dep_digests: BTreeMap<String, Digest> = t
            .deps
            .iter()
            .map(|d| {
                let digest = match deps.get(d.as_str()) {
                    Some(o) => follow.dep_digest(o.digest, &o.files)?,
                    None => Digest([0; 32]),
                };
                Ok((d.clone(), digest))
            })
            .collect::<Result<_, InputError>>()?;
        let key = key::compute(&KeyInputs {
            salt: &self.manifest.salt,
            command: &command,
            env: &env,
            version: t.version,
            tools: &tools,
            inputs: &inputs,
            deps: &dep_digests,
            outputs: &t.outputs,
        });
        let (run, argv) = match command {
            Command::Shell(s) => (Some(s), None),
            Command::Argv(v) => (None, Some(v)),
        };
        let partial = InputsSummary {
            run,
            argv,
            env,
            tools,
            version: t.version,
            files: BTreeMap::new(),
            deps: dep_digests,
            outputs: t.outputs.clone(),
        };
        Ok(Computed {
            key,
            inputs,
            warnings,
            partial,
        })
    }
}
