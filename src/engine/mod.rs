//! `relocache build`: compute each target's key after its deps are done,
//! restore its outputs from the depot stack on a hit, otherwise run it (once
//! per key across processes, under the per-key lock) and store the result.
//! Independent targets run in parallel on `jobs` workers; a failed target
//! skips its dependents while the others finish.

mod account;
pub mod plan;
mod remote;
pub mod restore;
pub mod run;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::depot::entries::{
    outputs_digest, Entry, InputsSummary, OutputKind, OutputRecord, Reason,
};
use crate::depot::{Depot, DepotError, DepotStack};
use crate::digest::{Digest, Key};
use crate::follow::Follow;
use crate::inputs::{
    glob_dir_prefix, DepFiles, Excluded, FileState, InputError, InputFile, Inputs, ProjectScan,
};
use crate::key::{self, KeyInputs, Rooted};
use crate::manifest::{reachable_deps, transitive_deps, Command, Manifest, Pattern, Target};
use crate::memo::StatMemo;
use crate::relpath::{equal_range, prefix_range, self_and_ancestors_of, RelPath};
use crate::report::Reporter;
use crate::tools::{ToolWarning, Tools};

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
    pub warnings: Vec<String>,
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
    /// Wall time of the whole build.
    pub duration_ms: u64,
}

impl BuildReport {
    /// True when every target hit or built.
    pub fn success(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

/// Why a build could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A named target does not exist.
    #[error("unknown target `{name}`\n  help: {help}")]
    UnknownTarget {
        /// The name given.
        name: String,
        /// Close names and known targets.
        help: String,
    },
    /// A depot lies inside a target's output (or holds one): building the
    /// target would delete it.
    #[error("the depot `{}` is inside `{output}`, an output of target `{target}`: building it would delete the depot\n  help: put the depot elsewhere (--depot DIR, RELOCACHE_DEPOT or `depot =` in relocache.toml)", .depot.display())]
    DepotInOutput {
        /// The depot's path.
        depot: PathBuf,
        /// The target.
        target: String,
        /// Its output holding the depot.
        output: RelPath,
    },
    /// The project could not be walked.
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// The depot failed.
    #[error(transparent)]
    Depot(#[from] DepotError),
}

/// What a build warning about an output tying its entry to this location
/// says after the target's name; the CLI shows a few and counts the rest.
pub const NOT_RELOCATABLE: &str = "` is not relocatable: ";

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

/// Checks that every name is a target of `manifest`.
pub fn check_targets(manifest: &Manifest, names: &[String]) -> Result<(), BuildError> {
    for n in names {
        if !manifest.targets.contains_key(n) {
            return Err(BuildError::UnknownTarget {
                name: n.clone(),
                help: crate::manifest::unknown_target_help(
                    manifest.targets.keys().map(|k| k.as_str()),
                    n,
                ),
            });
        }
    }
    Ok(())
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
    /// Uses and counters of this run, written to the depot's usage log at the end.
    pub usage: crate::depot::usage::Recorder,
    /// The shared remote cache, if any.
    pub remote: Option<&'a crate::remote::Remote>,
    /// `$PWD` for commands: the project root as relocache names it.
    pub pwd: std::path::PathBuf,
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

/// Depot directories inside the project are never inputs.
/// Refuses a depot at, inside or around a declared output: a build removes
/// its outputs before running the command (and a restore prunes them).
fn check_depots_outside_outputs(
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
            usage: crate::depot::usage::Recorder::new(&manifest.name),
            remote: None,
            pwd: run::pwd_for(&manifest.root),
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
        let (tools, warnings) = self.tools.digests(&t.tools)?;
        let env: BTreeMap<String, Option<String>> = t
            .env
            .iter()
            .map(|n| {
                let v = std::env::var_os(n).map(|v| self.rooted.apply_os(&v));
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

/// Builds the selected targets and their deps.
pub fn build(
    manifest: &Manifest,
    depots: &DepotStack,
    opts: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildReport, BuildError> {
    check_targets(manifest, &opts.targets)?;
    check_depots_outside_outputs(manifest, depots)?;
    let started = Instant::now();
    let selected: Vec<String> = if opts.targets.is_empty() {
        manifest.targets.keys().cloned().collect()
    } else {
        opts.targets.clone()
    };
    let forced: BTreeSet<String> = if opts.force {
        selected.iter().cloned().collect()
    } else {
        BTreeSet::new()
    };
    let order = manifest.closure(&selected);
    let roots: Vec<PathBuf> = depots
        .all()
        .iter()
        .map(|d| d.root().to_path_buf())
        .collect();
    let memo_at = StatMemo::location(depots.primary(), &manifest.name, &manifest.root);
    let (scan, memo) = rayon::join(
        || ProjectScan::walk(&manifest.root, &scan_skips(manifest, &roots)),
        || StatMemo::load(memo_at),
    );
    let scan = scan?;
    let mut ctx = Ctx::new(manifest, depots.all(), &roots[0], &scan, Some(&memo));
    ctx.remote = opts.remote.as_deref();
    if let Err(e) = depots.primary().probe_writable() {
        ctx.writable = false;
        reporter.warning(&format!(
            "the depot `{}` is not writable ({}): targets still build and hits still restore, but new results are not cached",
            depots.primary().root().display(),
            e.source_text()
        ));
    }
    let n = order.len();
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    for (i, name) in order.iter().enumerate() {
        for d in &manifest.targets[name].deps {
            dependents[index[d.as_str()]].push(i);
            waiting[i] += 1;
        }
    }
    struct Sched {
        ready: BTreeSet<usize>,
        waiting: Vec<usize>,
        done: usize,
        results: Vec<Option<TargetReport>>,
        outs: HashMap<String, Arc<DepOut>>,
    }
    let sched = Mutex::new(Sched {
        ready: (0..n).filter(|i| waiting[*i] == 0).collect(),
        waiting,
        done: 0,
        results: vec![None; n],
        outs: HashMap::new(),
    });
    let cv = Condvar::new();
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.jobs
    };
    let next_worker = AtomicUsize::new(0);
    // Stores run beside the workers, at most `jobs` at a time; past that a
    // worker stores its own target before it takes the next.
    let storing = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let (sched, cv, ctx, order, forced, dependents, next_worker, storing) = (
            &sched,
            &cv,
            &ctx,
            &order,
            &forced,
            &dependents,
            &next_worker,
            &storing,
        );
        for _ in 0..jobs.min(n.max(1)) {
            s.spawn(move || {
                let worker = next_worker.fetch_add(1, Ordering::Relaxed);
                loop {
                    let (i, deps) = {
                        let mut g = sched.lock().unwrap();
                        loop {
                            if let Some(i) = g.ready.pop_first() {
                                let deps: DepOuts<'_> = ctx.visible[&order[i]]
                                    .iter()
                                    .filter_map(|d| g.outs.get(*d).map(|o| (*d, o.clone())))
                                    .collect();
                                break (i, deps);
                            }
                            if g.done == n {
                                return;
                            }
                            g = cv.wait(g).unwrap();
                        }
                    };
                    let t = &manifest.targets[&order[i]];
                    reporter.target_started(&t.name);
                    let start_ms = started.elapsed().as_millis() as u64;
                    let is_forced = forced.contains(&t.name);
                    let (mut done, out, job) = process(ctx, t, &deps, is_forced, opts, reporter);
                    done.start_ms = start_ms;
                    done.worker = worker;
                    let job = match job {
                        Some(job) => {
                            Some((job, done.stdout.clone(), done.stderr.clone(), out.clone()))
                        }
                        None => {
                            account::finished(&ctx.usage, &done, out.as_ref(), is_forced);
                            None
                        }
                    };
                    let mut g = sched.lock().unwrap();
                    reporter.target_finished(&done);
                    let ok = out.is_some();
                    if let Some(o) = out {
                        g.outs.insert(t.name.clone(), Arc::new(o));
                    }
                    g.results[i] = Some(done);
                    g.done += 1;
                    let mut stack = vec![(i, t.name.clone())];
                    while let Some((j, cause)) = stack.pop() {
                        for &k in &dependents[j] {
                            if ok && j == i {
                                g.waiting[k] -= 1;
                                if g.waiting[k] == 0 {
                                    g.ready.insert(k);
                                }
                            } else if g.results[k].is_none() {
                                let mut r =
                                    report(&order[k], None, Outcome::Skipped, Instant::now());
                                r.start_ms = started.elapsed().as_millis() as u64;
                                r.worker = worker;
                                r.error = Some(format!("dependency `{cause}` failed"));
                                reporter.target_finished(&r);
                                g.results[k] = Some(r);
                                g.done += 1;
                                stack.push((k, cause.clone()));
                            }
                        }
                    }
                    cv.notify_all();
                    drop(g);
                    let Some((job, stdout, stderr, out)) = job else {
                        continue;
                    };
                    let background = storing
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
                            (k < jobs).then_some(k + 1)
                        })
                        .is_ok();
                    let store = move || {
                        let (stored, warnings) = job.run(ctx, &stdout, &stderr);
                        for w in &warnings {
                            reporter.warning(w);
                        }
                        let mut g = sched.lock().unwrap();
                        let r = g.results[i].as_mut().expect("published before its store");
                        r.stored = stored;
                        r.warnings.extend(warnings);
                        account::finished(&ctx.usage, r, out.as_ref(), is_forced);
                        if background {
                            storing.fetch_sub(1, Ordering::AcqRel);
                        }
                    };
                    if background {
                        s.spawn(store);
                    } else {
                        store();
                    }
                }
            });
        }
    });
    if ctx.writable {
        // Best effort: a memo that cannot be saved only costs hashing next time.
        let _ = memo.save(depots.primary(), &manifest.root);
        if let Err(e) = ctx.usage.flush(depots.primary()) {
            reporter.warning(&format!("could not record cache usage: {e}"));
        }
    }
    let g = sched.into_inner().unwrap();
    let targets: Vec<TargetReport> = g
        .results
        .into_iter()
        .map(|r| r.expect("every target finishes"))
        .collect();
    let count = |o: Outcome| targets.iter().filter(|t| t.outcome == o).count();
    Ok(BuildReport {
        hits: count(Outcome::Hit),
        built: count(Outcome::Built),
        failed: count(Outcome::Failed),
        skipped: count(Outcome::Skipped),
        duration_ms: started.elapsed().as_millis() as u64,
        targets,
    })
}

fn report(name: &str, key: Option<Key>, outcome: Outcome, started: Instant) -> TargetReport {
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

/// Computes `t`'s key, restores a hit or runs the command. A successful run
/// comes back with the [`StoreJob`] that caches it (holding the key's lock).
fn process<'a>(
    ctx: &Ctx<'_>,
    t: &'a Target,
    deps: &DepOuts<'_>,
    forced: bool,
    opts: &BuildOptions,
    reporter: &dyn Reporter,
) -> (TargetReport, Option<DepOut>, Option<StoreJob<'a>>) {
    let started = Instant::now();
    let computed = match ctx.compute_with(t, deps) {
        Ok(c) => c,
        Err(e) => {
            let mut r = report(&t.name, None, Outcome::Failed, started);
            r.error = Some(e.to_string());
            return (r, None, None);
        }
    };
    let key = computed.key;
    // Neither a restore nor a cleanup writes or deletes through a symlink.
    if let Err(e) = restore::check_no_symlinked_parent(&ctx.manifest.root, &t.name, &t.outputs) {
        let mut r = report(&t.name, Some(key), Outcome::Failed, started);
        r.error = Some(e.to_string());
        return (r, None, None);
    }
    let mut warnings: Vec<String> = computed.warnings.iter().map(|w| w.to_string()).collect();
    if !forced {
        if let Some(hit) = try_hit(ctx, t, &key, &mut warnings) {
            let (r, out) = finish_hit(t, key, hit, warnings, started, opts);
            return (r, out, None);
        }
    }
    let primary = &ctx.depots[0];
    let mut waited = false;
    let lock = if !ctx.writable {
        None
    } else {
        match primary.lock_key(&key, |holder| {
            waited = true;
            reporter.waiting(&t.name, holder);
        }) {
            Ok(l) => Some(l),
            Err(e) => {
                warnings.push(format!(
                    "could not take the build lock ({e}); building without it"
                ));
                None
            }
        }
    };
    if waited && !forced {
        if let Some(hit) = try_hit(ctx, t, &key, &mut warnings) {
            if let Some(l) = lock {
                l.release();
            }
            let (r, out) = finish_hit(t, key, hit, warnings, started, opts);
            return (r, out, None);
        }
    }
    let lock_fd = lock.as_ref().map(|l| l.raw_fd());
    let (mut r, out, mut job) = build_miss(ctx, t, computed, opts, &mut warnings, started, lock_fd);
    match &mut job {
        Some(job) => job.lock = lock,
        None => {
            if let Some(l) = lock {
                l.release();
            }
        }
    }
    r.warnings = warnings;
    (r, out, job)
}

struct Hit {
    entry: Entry,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn finish_hit(
    t: &Target,
    key: Key,
    hit: Hit,
    warnings: Vec<String>,
    started: Instant,
    opts: &BuildOptions,
) -> (TargetReport, Option<DepOut>) {
    // CI's relocatability gate holds for what a warm cache hands out too.
    if opts.require_relocatable && !hit.entry.relocatable {
        let why: Vec<String> = hit
            .entry
            .reasons
            .iter()
            .map(|r| match &r.path {
                Some(p) => format!("{} `{p}`", r.kind),
                None => r.kind.clone(),
            })
            .collect();
        let mut r = report(&t.name, Some(key), Outcome::Failed, started);
        r.error = Some(format!(
            "`{}` was restored from an entry that is not relocatable ({}) and --require-relocatable is set\n  help: fix the build (see `relocache verify --relocatable`), then `relocache build --force {}`",
            t.name,
            why.join(", "),
            t.name
        ));
        r.warnings = warnings;
        return (r, None);
    }
    let out = DepOut::of(&t.outputs, &hit.entry.outputs);
    let mut r = report(&t.name, Some(key), Outcome::Hit, started);
    r.saved_ms = Some(hit.entry.duration_ms);
    r.stdout = hit.stdout;
    r.stderr = hit.stderr;
    r.warnings = warnings;
    (r, Some(out))
}

/// Looks `key` up in every depot of the stack, then on the remote; restores
/// the first usable entry. Damaged entries, corrupt blobs and remote failures
/// are warnings and count as misses.
fn try_hit(ctx: &Ctx<'_>, t: &Target, key: &Key, warnings: &mut Vec<String>) -> Option<Hit> {
    for (i, depot) in ctx.depots.iter().enumerate() {
        let entry = match depot.read_entry(key) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                let moved = quarantine_damaged(ctx, i, key, &e);
                warnings.push(format!("ignoring a damaged entry{moved}: {e}"));
                continue;
            }
        };
        if let Some(hit) = restore_entry(ctx, t, key, i, entry, warnings) {
            return Some(hit);
        }
    }
    remote::fetch(ctx, t, key, warnings)
        .and_then(|entry| restore_entry(ctx, t, key, 0, entry, warnings))
}

/// Moves a damaged entry of the first depot to its `quarantine/`, so it no
/// longer stands where the rebuild stores a sound one; entries of the other
/// depots of a stack are only read. Returns a note for the warning.
fn quarantine_damaged(ctx: &Ctx<'_>, i: usize, key: &Key, e: &DepotError) -> &'static str {
    if i == 0 && matches!(e, DepotError::Damaged { .. }) {
        ctx.depots[0].quarantine_entry(key);
        " (moved to quarantine/)"
    } else {
        ""
    }
}

/// Restores `entry`, found in depot `i` of the stack, and copies it into
/// the first depot when it came from another.
fn restore_entry(
    ctx: &Ctx<'_>,
    t: &Target,
    key: &Key,
    i: usize,
    entry: Entry,
    warnings: &mut Vec<String>,
) -> Option<Hit> {
    let primary = &ctx.depots[0];
    let depot = &ctx.depots[i];
    let logs = entry
        .stdout
        .map(|d| depot.read_blob(&d))
        .transpose()
        .and_then(|o| Ok((o, entry.stderr.map(|d| depot.read_blob(&d)).transpose()?)));
    let (stdout, stderr) = match logs {
        Ok((o, e)) => (o.unwrap_or_default(), e.unwrap_or_default()),
        Err(e) => {
            warnings.push(format!(
                "cannot restore `{}` from the cache: {e}; rebuilding",
                t.name
            ));
            return None;
        }
    };
    let restored = match restore::restore(depot, &entry, &ctx.manifest.root, &t.outputs, ctx.memo) {
        Ok(r) => r,
        Err(e) => {
            let moved = quarantine_damaged(ctx, i, key, &e);
            warnings.push(format!(
                "cannot restore `{}` from the cache{moved}: {e}; rebuilding",
                t.name
            ));
            return None;
        }
    };
    ctx.usage
        .hit(&t.name, key, entry.duration_ms, restored.bytes_written);
    if i > 0 {
        let copied = entry
            .blobs()
            .iter()
            .try_for_each(|b| primary.import_blob(depot, b))
            .and_then(|_| primary.write_entry(&entry));
        if let Err(e) = copied {
            warnings.push(format!(
                "could not copy the entry into `{}`: {e}",
                primary.root().display()
            ));
        }
    }
    let _ = primary.write_record(&ctx.manifest.name, &t.name, key);
    Some(Hit {
        entry,
        stdout,
        stderr,
    })
}

fn build_miss<'a>(
    ctx: &Ctx<'_>,
    t: &'a Target,
    computed: Computed,
    opts: &BuildOptions,
    warnings: &mut Vec<String>,
    started: Instant,
    lock_fd: Option<std::os::fd::RawFd>,
) -> (TargetReport, Option<DepOut>, Option<StoreJob<'a>>) {
    let root = &ctx.manifest.root;
    let key = computed.key;
    let fail = |msg: String, stdout: Vec<u8>, stderr: Vec<u8>| {
        let mut r = report(&t.name, Some(key), Outcome::Failed, started);
        r.error = Some(msg);
        r.stdout = stdout;
        r.stderr = stderr;
        (r, None, None)
    };
    // Checked again: a wait on the build lock may have passed since.
    if let Err(e) = restore::check_no_symlinked_parent(root, &t.name, &t.outputs) {
        return fail(e.to_string(), vec![], vec![]);
    }
    // Stale outputs go first, so a command that forgets one is caught.
    for o in &t.outputs {
        let abs = o.to_path(root);
        if let Err(e) = restore::remove_any(&abs) {
            return fail(
                format!("could not remove the old output: {e}"),
                vec![],
                vec![],
            );
        }
        if let Some(parent) = abs.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let run = match run::run(&t.command, root, &ctx.pwd, lock_fd) {
        Ok(r) => r,
        Err(e) => {
            let what = match &t.command {
                Command::Shell(_) => "sh".to_owned(),
                Command::Argv(v) => v[0].clone(),
            };
            return fail(format!("could not start `{what}`: {e}"), vec![], vec![]);
        }
    };
    if !run.success {
        return fail(
            format!("command failed ({})", run.status),
            run.stdout,
            run.stderr,
        );
    }
    // Outputs the command wrote through a symlink it made would be restored
    // into real directories: not what a clean build leaves.
    if let Err(e) = restore::check_no_symlinked_parent(root, &t.name, &t.outputs) {
        return fail(
            format!(
                "the command left a symlink on the way to an output, so nothing was stored: {e}"
            ),
            run.stdout,
            run.stderr,
        );
    }
    let records = match store::collect(root, &t.outputs, ctx.memo) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string(), run.stdout, run.stderr),
    };
    let out = DepOut::of(&t.outputs, &records);
    let mut r = report(&t.name, Some(key), Outcome::Built, started);
    let duration_ms = run.duration.as_millis() as u64;
    if let Some(p) = ctx.inputs.first_changed(&computed.inputs) {
        warnings.push(format!(
            "input `{p}` changed while `{}` was running; its outputs were not stored (they may mix old and new input)\n  help: run the build again",
            t.name
        ));
        r.stdout = run.stdout;
        r.stderr = run.stderr;
        return (r, Some(out), None);
    }
    let findings = store::relocatability(root, &records, &ctx.rooted.needles());
    let mut reasons: Vec<Reason> = findings.iter().map(|f| f.reason.clone()).collect();
    for i in &computed.inputs {
        if let FileState::Untracked { .. } = i.state {
            reasons.push(Reason {
                kind: "untracked-input".into(),
                path: Some(i.path.clone()),
                offset: None,
                detail:
                    "tracked by size and mtime (track_content = false), which differ on every copy"
                        .into(),
            });
            warnings.push(format!(
                "`{}` reads `{}` with track_content = false: its entry is not relocatable",
                t.name, i.path
            ));
        }
    }
    for f in &findings {
        warnings.push(format!("`{}{NOT_RELOCATABLE}{}", t.name, f.message));
    }
    if opts.require_relocatable && !reasons.is_empty() {
        let mut r = fail(
            format!(
                "`{}` is not relocatable and --require-relocatable is set; nothing was stored",
                t.name
            ),
            run.stdout,
            run.stderr,
        );
        r.1 = None;
        return r;
    }
    r.stdout = run.stdout;
    r.stderr = run.stderr;
    if !ctx.writable {
        return (r, Some(out), None);
    }
    let job = StoreJob {
        target: t,
        key,
        duration_ms,
        outputs: records,
        reasons,
        summary: computed.summary(),
        lock: None,
    };
    (r, Some(out), Some(job))
}

/// Storing a built target's outputs, which the worker hands off so that it
/// can start the next command while the blobs and the entry are written and
/// made durable (the fsyncs are most of a small target's store). The target's
/// outputs are already on disk and its dependents already have their
/// [`DepOut`]; the per-key build lock moves with the job and is released once
/// the entry is published.
pub(crate) struct StoreJob<'a> {
    target: &'a Target,
    key: Key,
    duration_ms: u64,
    outputs: Vec<OutputRecord>,
    reasons: Vec<Reason>,
    summary: InputsSummary,
    lock: Option<crate::depot::locks::KeyLock>,
}

impl StoreJob<'_> {
    /// Stores the entry; returns whether it was stored and what went wrong.
    fn run(self, ctx: &Ctx<'_>, stdout: &[u8], stderr: &[u8]) -> (bool, Vec<String>) {
        let t = self.target;
        let mut warnings = Vec::new();
        let primary = &ctx.depots[0];
        let req = store::StoreRequest {
            project: &ctx.manifest.name,
            target: &t.name,
            key: self.key,
            duration_ms: self.duration_ms,
            outputs: self.outputs,
            reasons: self.reasons,
            stdout,
            stderr,
            summary: &self.summary,
        };
        let stored = match store::store(primary, &ctx.manifest.root, req) {
            Ok(entry) => {
                if let Err(e) = primary.write_record(&ctx.manifest.name, &t.name, &self.key) {
                    warnings.push(format!("could not record the build of `{}`: {e}", t.name));
                }
                remote::upload(ctx, t, &entry, &mut warnings);
                true
            }
            Err(e) => {
                warnings.push(format!(
                    "could not store `{}` in the depot: {e}\n  the build succeeded; its result is not cached",
                    t.name
                ));
                false
            }
        };
        if let Some(l) = self.lock {
            l.release();
        }
        (stored, warnings)
    }
}
