//! `relocache build`: compute each target's key after its deps are done,
//! restore its outputs from the depot stack on a hit, otherwise run it (once
//! per key across processes, under the per-key lock) and store the result.
//! Independent targets run in parallel on `jobs` workers; a failed target
//! skips its dependents while the others finish.
//!
//! This file is the entry point: [`build`] sets up the context, hands the
//! targets to the scheduler and sums up. Where the rest lives:
//! - `ctx`: the build context and key assembly, shared with `plan`;
//! - `schedule`: the ready queue and the workers, deps first;
//! - `target`: one target, hit (restore) or miss (run, then a store job);
//! - `run`, `restore`, `store`: running a command, writing an entry's
//!   outputs into the project, storing outputs in the depot;
//! - `remote`, `account`: the build's side of the remote, usage counters;
//! - `plan`: keys without building, for `status`, `explain` and friends;
//! - `report`: the options and the per-target and whole-build reports.
//!
//! It must never print (results go to the [`BuildReport`] and progress to
//! the [`Reporter`]) nor write to a depot except through [`crate::depot`].

mod account;
mod ctx;
mod discover;
pub mod plan;
mod remote;
mod report;
pub mod restore;
pub mod run;
mod schedule;
pub mod store;
mod target;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use crate::depot::{DepotError, DepotStack};
use crate::inputs::{InputError, ProjectScan};
use crate::manifest::Manifest;
use crate::memo::StatMemo;
use crate::relpath::RelPath;
use crate::report::Reporter;

pub(crate) use ctx::{scan_skips, Ctx, DepOut, DepOuts};
pub use report::{BuildOptions, BuildReport, Outcome, TargetReport, Warning, WarningKind};

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

/// The targets `names` select (a template: all its instances; none: every
/// target), or the first name that is not a target.
pub fn select_targets(manifest: &Manifest, names: &[String]) -> Result<Vec<String>, BuildError> {
    if names.is_empty() {
        return Ok(manifest.targets.keys().cloned().collect());
    }
    manifest
        .select(names)
        .map_err(|name| BuildError::UnknownTarget {
            help: manifest.unknown_name_help(&name),
            name,
        })
}

/// Builds the selected targets and their deps.
pub fn build(
    manifest: &Manifest,
    depots: &DepotStack,
    opts: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildReport, BuildError> {
    let selected = select_targets(manifest, &opts.targets)?;
    ctx::check_depots_outside_outputs(manifest, depots)?;
    let started = Instant::now();
    // Before anything is hashed or restored: a killed build's commands
    // still running would write over this build's outputs.
    depots.primary().wait_for_orphans(|holder| {
        reporter.warning(&format!(
            "waiting for the commands of an interrupted build to finish ({holder}, killed): they still run and would write over this build's outputs"
        ))
    });
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
    ctx.restore_mode = opts.restore_mode;
    if let Err(e) = depots.primary().probe_writable() {
        ctx.writable = false;
        reporter.warning(&format!(
            "the depot `{}` is not writable ({}): targets still build and hits still restore, but new results are not cached",
            depots.primary().root().display(),
            e.source_text()
        ));
    }
    reporter.build_planned(order.len());
    let targets = schedule::run(&ctx, &order, &forced, opts, reporter, started);
    if ctx.writable {
        // Best effort: a memo that cannot be saved only costs hashing next time.
        let _ = memo.save(depots.primary(), &manifest.root);
        if let Err(e) = ctx.usage.flush(depots.primary()) {
            reporter.warning(&format!("could not record cache usage: {e}"));
        }
    }
    let count = |o: Outcome| targets.iter().filter(|t| t.outcome == o).count();
    let warned = |k: WarningKind| {
        targets
            .iter()
            .flat_map(|t| &t.warnings)
            .filter(|w| w.kind == k)
            .count()
    };
    Ok(BuildReport {
        remote_unsigned: warned(WarningKind::Unsigned),
        remote_bad_signature: warned(WarningKind::BadSignature),
        hits: count(Outcome::Hit),
        built: count(Outcome::Built),
        failed: count(Outcome::Failed),
        skipped: count(Outcome::Skipped),
        not_relocatable_elsewhere: targets
            .iter()
            .filter(|t| {
                t.warnings
                    .iter()
                    .any(|w| w.kind == WarningKind::BuiltElsewhere)
            })
            .count(),
        duration_ms: started.elapsed().as_millis() as u64,
        targets,
    })
}
