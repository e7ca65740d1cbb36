//! [`ProjectScan`]: the one walk of the project per build (with the stat
//! the walk took of each file) and the names below a directory that cannot
//! be keyed. Only reads; never hashes a file.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::InputError;
use crate::manifest::Location;
use crate::relpath::RelPath;
use crate::walk::{self, Meta, Stats, Unusable};

/// Every non-ignored file and symlink below the project root, walked once,
/// with the stat the walk took of each.
#[derive(Debug, Default)]
pub struct ProjectScan {
    pub(super) files: Vec<RelPath>,
    pub(super) meta: Vec<Option<Meta>>,
    pub(super) unusable: Vec<Unusable>,
}

impl ProjectScan {
    /// Walks `root` in parallel, skipping `.git` and every directory in `skip`
    /// (the depot, when it lives inside the project).
    pub fn walk(root: &Path, skip: &[PathBuf]) -> Result<ProjectScan, InputError> {
        Self::walk_with(root, skip, Stats::All)
    }

    /// [`ProjectScan::walk`] for a reader that opens every file it wants
    /// anyway (`hash`): only symlinks are stat'ed, and a regular file's meta
    /// is `None`.
    pub fn list(root: &Path) -> Result<ProjectScan, InputError> {
        Self::walk_with(root, &[], Stats::NotRegularFiles)
    }

    fn walk_with(root: &Path, skip: &[PathBuf], stats: Stats) -> Result<ProjectScan, InputError> {
        let Below {
            files: mut found,
            unusable,
            ..
        } = walk_files(root, skip, stats)?;
        found.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let (files, meta) = found.into_iter().unzip();
        Ok(ProjectScan {
            files,
            meta,
            unusable,
        })
    }

    /// The files, sorted.
    pub fn files(&self) -> &[RelPath] {
        &self.files
    }

    /// The files, sorted, each with the stat the walk took of it (`None`
    /// when that stat failed, whoever reads the file reports why; or when
    /// [`ProjectScan::list`] did not stat a regular file).
    pub fn files_with_meta(&self) -> impl Iterator<Item = (&RelPath, Option<Meta>)> {
        self.files.iter().zip(self.meta.iter().copied())
    }

    /// The not-ignored paths that cannot be inputs (see
    /// [`walk::Unusable`]), sorted: an input covering one fails.
    pub fn unusable(&self) -> &[Unusable] {
        &self.unusable
    }
}

/// What [`walk_files`] found below a directory, relative to it.
pub(super) struct Below {
    pub(super) files: Vec<(RelPath, Option<Meta>)>,
    /// Directories, sorted.
    pub(super) dirs: Vec<RelPath>,
    /// Sorted.
    pub(super) unusable: Vec<Unusable>,
}

/// The files and directories below `dir`, relative to `dir`; `build
/// --timings`' default report at the top is never an input.
pub(super) fn walk_files(dir: &Path, skip: &[PathBuf], stats: Stats) -> Result<Below, InputError> {
    let walked = walk::walk(dir, skip, &["relocache-timings.html"], stats)?;
    let mut unusable = walked.unusable;
    unusable.sort_unstable();
    // The walk joins normal, manifest-writable components: already normalized.
    let mut dirs: Vec<RelPath> = walked.dirs.into_iter().map(RelPath::trusted).collect();
    dirs.sort_unstable();
    let files = walked
        .files
        .into_iter()
        .map(|(p, m)| (RelPath::trusted(p), m))
        .collect();
    Ok(Below {
        files,
        dirs,
        unusable,
    })
}

/// The first of `unusable` (below `base`, "" for the root) that `covers`
/// and that no output shadows (`shadowed`, asked about the directory
/// holding its first unusable component), as the error for `input`.
pub(super) fn first_unusable(
    unusable: &[Unusable],
    base: &str,
    covers: impl Fn(&Unusable) -> bool,
    shadowed: impl Fn(&RelPath) -> bool,
    input: &str,
    loc: Location,
) -> Result<(), InputError> {
    let join = |rest: &str| match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{base}/{rest}"),
    };
    for u in unusable.iter().filter(|u| covers(u)) {
        let clean = std::str::from_utf8(&u.path[..u.clean]).expect("the clean part is UTF-8");
        let at = join(clean);
        if !at.is_empty() && shadowed(&RelPath::trusted(at)) {
            continue;
        }
        return Err(InputError::Unusable {
            input: input.to_owned(),
            loc,
            path: join(&u.display()),
            why: u.why(),
        });
    }
    Ok(())
}
