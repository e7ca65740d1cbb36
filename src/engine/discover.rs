//! A target's depfile-discovered inputs during a build (ccache's direct
//! mode): after its command, reading the depfile and naming and hashing the
//! files it lists; before it, finding the entries a base key may hit through
//! the variants records. Shared by `target` (build) and `plan` (status,
//! explain). It never runs a command and never writes the depot: the store
//! does, under the base key's lock.

use std::path::Path;
use std::time::SystemTime;

use super::{Ctx, DepOuts};
use crate::depfile;
use crate::depot::variants::Variants;
use crate::depot::{Depot, DepotError};
use crate::digest::{Digest, Key};
use crate::discovered::{self, DiscoveredInput, DiscoveredPath, NameError};
use crate::file_state::FileState;
use crate::file_state::Stamp;
use crate::inputs::InputError;
use crate::manifest::Target;
use crate::relpath::RelPath;

/// Why a target's depfile could not give its discovered inputs; the target
/// fails and nothing is stored.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The command succeeded without writing the depfile.
    #[error("depfile `{0}` was not written by the command; nothing was stored\n  help: make the command write it (gcc/clang: `-MD -MF {0}`), or fix `depfile` in relocache.toml")]
    Missing(RelPath),
    /// The depfile could not be read.
    #[error("could not read depfile `{path}`: {source}")]
    Unreadable {
        /// The depfile.
        path: RelPath,
        /// The error.
        source: std::io::Error,
    },
    /// The depfile is not Make syntax.
    #[error("depfile `{path}` is malformed: {path}:{}: {}; nothing was stored\n  help: {}", .error.line, .error.kind, .error.kind.help())]
    Malformed {
        /// The depfile.
        path: RelPath,
        /// What is wrong, and on which line.
        error: depfile::DepfileError,
    },
    /// A prerequisite that cannot be keyed.
    #[error("depfile `{path}` lists {error}; nothing was stored")]
    Name {
        /// The depfile.
        path: RelPath,
        /// Why.
        error: NameError,
    },
    /// A prerequisite that is not a file after the command.
    #[error("depfile `{path}` lists `{file}`, which is not a file after the command ran; nothing was stored\n  help: a depfile must list only files the command read")]
    Gone {
        /// The depfile.
        path: RelPath,
        /// The prerequisite.
        file: DiscoveredPath,
    },
    /// Hashing a prerequisite failed.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// One discovered input as hashed, with the stat it was hashed under.
pub(crate) type Hashed = (DiscoveredInput, Stamp);

/// The files `t`'s depfile lists after its command ran, named for the depot,
/// sorted and unique; `t`'s own outputs (and below) and the depfile itself
/// left out.
pub(super) fn read(
    ctx: &Ctx<'_>,
    t: &Target,
    depfile: &RelPath,
) -> Result<Vec<DiscoveredPath>, DiscoverError> {
    let root = &ctx.manifest.root;
    let text = match std::fs::read(depfile.to_path(root)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DiscoverError::Missing(depfile.clone()))
        }
        Err(source) => {
            return Err(DiscoverError::Unreadable {
                path: depfile.clone(),
                source,
            })
        }
    };
    let prereqs = depfile::parse(&text).map_err(|error| DiscoverError::Malformed {
        path: depfile.clone(),
        error,
    })?;
    let project = root.to_string_lossy();
    let mut paths = Vec::with_capacity(prereqs.len());
    let mut root_real: Option<String> = None;
    for p in &prereqs {
        let relative = !p.starts_with('/');
        // `dir/../x.h` names what the kernel found, which is not `x.h` when
        // `dir` is a symlink: such a path is resolved as the command's open
        // resolved it, never shortened by its spelling alone.
        let resolved;
        let p = if p.split('/').any(|c| c == "..") {
            match std::fs::canonicalize(root.join(p)) {
                Ok(real) => {
                    resolved = real.to_string_lossy().into_owned();
                    &resolved
                }
                // Gone: reported as not a file when it is hashed.
                Err(_) => p,
            }
        } else {
            p
        };
        let mut name =
            discovered::name(p, &project, &ctx.rooted).map_err(|error| DiscoverError::Name {
                path: depfile.clone(),
                error,
            })?;
        // Reached by a relative path from the root: named from the root, so
        // another checkout reads its own sibling, not this one's.
        if let (DiscoveredPath::Outside(abs), true) = (&name, relative) {
            let real = root_real.get_or_insert_with(|| {
                std::fs::canonicalize(root)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| project.to_string())
            });
            if let Some(b) = discovered::beside(abs, real) {
                name = b;
            }
        }
        let own = match &name {
            DiscoveredPath::Project(rel) => {
                rel == depfile || t.outputs.iter().any(|o| rel.is_within(o))
            }
            DiscoveredPath::Beside(_) | DiscoveredPath::Outside(_) => false,
        };
        if !own {
            paths.push(name);
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// Hashes `paths` as they are now (project files through the build's
/// [`crate::inputs::Inputs`], outside files once per build); `None` when one
/// is absent or not a file.
pub(crate) fn hash(
    ctx: &Ctx<'_>,
    paths: &[DiscoveredPath],
) -> Result<Option<Vec<Hashed>>, InputError> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let Some((digest, stamp)) = now(ctx, p)? else {
            return Ok(None);
        };
        out.push((
            DiscoveredInput {
                path: p.clone(),
                digest,
            },
            stamp,
        ));
    }
    Ok(Some(out))
}

/// One discovered file's digest as it is now, and the stat it was hashed under.
fn now(ctx: &Ctx<'_>, p: &DiscoveredPath) -> Result<Option<(Digest, Stamp)>, InputError> {
    match p {
        DiscoveredPath::Project(rel) => ctx.inputs.content(rel),
        DiscoveredPath::Beside(rel) => outside(ctx, &beside_path(ctx, rel)),
        DiscoveredPath::Outside(abs) => outside(ctx, abs),
    }
}

/// The digests of `paths` as a build would see them once `deps` are done: a
/// file a dep's entry lists by what the entry says (so `status` and
/// `verify --simulate` agree with a build that restores the dep first),
/// others as they are now; `None` when one is absent or not a file.
pub(crate) fn digests(
    ctx: &Ctx<'_>,
    paths: &[DiscoveredPath],
    deps: &DepOuts<'_>,
) -> Result<Option<Vec<DiscoveredInput>>, InputError> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let from_dep = match p {
            DiscoveredPath::Project(rel) => deps.values().find_map(|d| {
                d.files.iter().find_map(|(f, st)| match st {
                    FileState::File { digest, .. } if f == rel => Some(*digest),
                    _ => None,
                })
            }),
            DiscoveredPath::Beside(_) | DiscoveredPath::Outside(_) => None,
        };
        let found = match from_dep {
            Some(d) => Some(d),
            None => now(ctx, p)?.map(|(d, _)| d),
        };
        let Some(digest) = found else {
            return Ok(None);
        };
        out.push(DiscoveredInput {
            path: p.clone(),
            digest,
        });
    }
    Ok(Some(out))
}

/// Where beside path `rel` is for this checkout: joined to the root as the
/// command's relative open would (`..` taken by the kernel, after symlinks).
fn beside_path(ctx: &Ctx<'_>, rel: &str) -> String {
    format!(
        "{}/{rel}",
        ctx.manifest.root.to_string_lossy().trim_end_matches('/')
    )
}

fn outside(ctx: &Ctx<'_>, abs: &str) -> Result<Option<(Digest, Stamp)>, InputError> {
    if let Some(known) = ctx.outside.lock().unwrap().get(abs) {
        return Ok(*known);
    }
    let found = crate::inputs::outside_content(Path::new(abs), ctx.memo)?;
    ctx.outside.lock().unwrap().insert(abs.to_owned(), found);
    Ok(found)
}

/// Hashes what `t`'s depfile lists after its command succeeded.
pub(super) fn after_run(
    ctx: &Ctx<'_>,
    t: &Target,
    depfile: &RelPath,
) -> Result<Vec<Hashed>, DiscoverError> {
    let paths = read(ctx, t, depfile)?;
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        match hash(ctx, std::slice::from_ref(&p))? {
            Some(mut h) => out.append(&mut h),
            None => {
                return Err(DiscoverError::Gone {
                    path: depfile.clone(),
                    file: p,
                })
            }
        }
    }
    Ok(out)
}

/// The input-race rule for discovered files: the first one whose mtime or
/// ctime is not older than the command's `start` (it may have changed while
/// the command read it).
pub(super) fn raced(hashed: &[Hashed], start: SystemTime) -> Option<&DiscoveredPath> {
    let start_ns = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    hashed
        .iter()
        .find(|(_, s)| s.mtime_ns >= start_ns || s.ctime_ns >= start_ns)
        .map(|(d, _)| &d.path)
}

/// The first discovered file whose stat changed since it was hashed (or
/// that is gone): checked again just before the store.
pub(super) fn first_changed<'h>(ctx: &Ctx<'_>, hashed: &'h [Hashed]) -> Option<&'h DiscoveredPath> {
    hashed
        .iter()
        .find(|(d, stamp)| {
            let abs = match &d.path {
                DiscoveredPath::Project(rel) => rel.to_path(&ctx.manifest.root),
                DiscoveredPath::Beside(rel) => beside_path(ctx, rel).into(),
                DiscoveredPath::Outside(abs) => abs.into(),
            };
            std::fs::metadata(abs).map_or(true, |md| Stamp::of(&md) != *stamp)
        })
        .map(|(d, _)| &d.path)
}

/// The keys base key `base` may hit in `depot`: [`candidates_of`] its
/// variants record, if any.
pub(crate) fn candidates(
    ctx: &Ctx<'_>,
    depot: &Depot,
    base: &Key,
    deps: &DepOuts<'_>,
) -> Result<Vec<(Key, Vec<DiscoveredInput>)>, DepotError> {
    Ok(match depot.read_variants(base)? {
        Some(v) => candidates_of(ctx, &v, deps),
        None => vec![],
    })
}

/// The keys a variants record (a depot's or the remote's) may lead to: for
/// each path set, newest first, the key of that set's files as they are now
/// (sets with a file now absent are skipped), with those inputs.
pub(crate) fn candidates_of(
    ctx: &Ctx<'_>,
    v: &Variants,
    deps: &DepOuts<'_>,
) -> Vec<(Key, Vec<DiscoveredInput>)> {
    let mut out = Vec::with_capacity(v.sets.len());
    for set in &v.sets {
        // A set whose files cannot be read now cannot hit.
        if let Ok(Some(inputs)) = digests(ctx, &set.paths, deps) {
            out.push((discovered::key_with(&v.key, &inputs), inputs));
        }
    }
    out
}
