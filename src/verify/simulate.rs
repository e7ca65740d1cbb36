//! `verify --relocatable --simulate`: the end-to-end proof that a depot
//! moves. The project (without its declared outputs, `.git`, or a depot
//! living inside it) and the cached targets' entries and blobs are copied to
//! a fresh temporary directory; keys are planned there exactly as `build`
//! would; every target cached at the original location must be cached at the
//! copy too. Those that are not are reported with the inputs that differ.
//! The copy's env values are those of a user building there: a value naming
//! the original project or depot root names the copy's ([`Move`]).
//!
//! Only the copy is written (through the depot's own write path); the
//! original project and depot are read. The copy is removed when done.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::{Problem, ProblemKind, Simulated, VerifyError};
use crate::depot::entries::InputsSummary;
use crate::depot::Depot;
use crate::engine::plan::{plan, plan_moved, Planned};
use crate::file_state::FileState;
use crate::key::Move;
use crate::manifest::Manifest;
use crate::relpath::RelPath;
use crate::report::Reporter;

/// Plans `targets` (all when empty) here and in a copy; returns a
/// `would-miss` problem per cached target that would not hit in the copy.
// Long on purpose: copy the project, flatten the cached entries into one depot, plan in both places: steps sharing the temporary dirs and the plans.
pub(crate) fn simulate(
    manifest: &Manifest,
    depots: &[Depot],
    targets: &[String],
    reporter: &dyn Reporter,
) -> Result<(Vec<Problem>, Simulated), VerifyError> {
    let here = plan(manifest, depots, depots[0].root(), targets)?;
    let cached: Vec<&Planned> = here.iter().filter(|p| p.entry.is_some()).collect();
    if cached.is_empty() {
        return Ok((Vec::new(), Simulated::default()));
    }

    let tmp = tempfile::Builder::new()
        .prefix("relocache-simulate-")
        .tempdir()
        .map_err(|source| VerifyError::Copy {
            action: "create a temporary directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    // Same directory name, different parent: the default project name holds.
    let base = manifest
        .root
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "project".into());
    let moved_root = tmp.path().join(base);
    let skip = skip_dirs(
        &manifest.root,
        depots
            .iter()
            .map(|d| d.root())
            .chain(std::iter::once(tmp.path())),
    );
    let outputs: Vec<RelPath> = manifest
        .targets
        .values()
        .flat_map(|t| t.outputs.iter().cloned())
        .collect();
    copy_project(&manifest.root, &moved_root, &outputs, &skip)?;

    // The entries of the cached targets and their blobs, flattened into one
    // depot: the part of the stack a build at the new place would read.
    let moved_depot = Depot::open_or_create(&tmp.path().join("depot"))?;
    let entries: Vec<_> = cached.iter().filter_map(|p| p.entry.as_ref()).collect();
    for (n, (i, entry)) in entries.iter().enumerate() {
        for b in entry.blobs() {
            moved_depot.copy_stored_blob(&depots[*i], &b)?;
        }
        moved_depot.write_entry(entry)?;
        // A depfile target is found through its variants record.
        if let Some(base) = &entry.base {
            moved_depot.add_variant(base, entry.discovered_paths())?;
        }
        reporter.progress("copying", n as u64 + 1, entries.len() as u64);
    }

    let rel_manifest = manifest
        .file
        .strip_prefix(&manifest.root)
        .unwrap_or(Path::new(crate::manifest::MANIFEST_NAME));
    let moved_manifest = Manifest::load(&moved_root.join(rel_manifest))?;
    // Env values are set at the new place by whoever builds there: one
    // naming the project or depot names their new location.
    let env_move = Move::new(&[
        (&manifest.root, &moved_root),
        (depots[0].root(), moved_depot.root()),
    ]);
    let there = plan_moved(
        &moved_manifest,
        std::slice::from_ref(&moved_depot),
        moved_depot.root(),
        targets,
        Some(env_move),
    )?;
    let there: HashMap<&str, &Planned> = there.iter().map(|p| (p.name.as_str(), p)).collect();

    let mut problems = Vec::new();
    let mut hits = 0;
    for p in &cached {
        let (_, entry) = p.entry.as_ref().expect("cached");
        let moved = there.get(p.name.as_str()).copied();
        let why = match moved {
            None => vec!["it is not planned after the move".to_owned()],
            Some(m) => why_missed(p, m, &moved_depot),
        };
        if why.is_empty() {
            hits += 1;
            continue;
        }
        let path = moved
            .and_then(|m| first_changed_file(p.summary.as_ref(), m.summary.as_ref()))
            .map(|f| f.to_string());
        let untracked = p.summary.as_ref().is_some_and(|s| {
            s.files
                .values()
                .any(|f| matches!(f, FileState::Untracked { .. }))
        });
        let help = if untracked {
            "\n  help: inputs with `track_content = false` are keyed by size and mtime, which change on every copy or checkout; drop it so their content is hashed"
        } else {
            "\n  help: see `relocache explain` for the full key difference; every input must be named relative to the project"
        };
        problems.push(Problem {
            kind: ProblemKind::WouldMiss,
            entry: Some(entry.key),
            path,
            detail: format!(
                "`{}` would not hit after the project and depot move: {}{help}",
                p.name,
                why.join("; ")
            ),
            label: Some(format!("{}/{}", entry.project, entry.target)),
        });
    }
    drop(tmp);
    Ok((
        problems,
        Simulated {
            targets: cached.len(),
            hits,
        },
    ))
}

/// Why `moved` (planned in the copy) is not the hit `here` was; empty when it is.
fn why_missed(here: &Planned, moved: &Planned, moved_depot: &Depot) -> Vec<String> {
    if let Some(d) = &moved.blocked_by {
        return vec![format!(
            "its dep `{d}` would not hit, so its key cannot be known"
        )];
    }
    if let Some(e) = &moved.error {
        return vec![format!("its inputs cannot be resolved there: {e}")];
    }
    if moved.key != here.key {
        let diff = match (&here.summary, &moved.summary) {
            (Some(a), Some(b)) => diff_summaries(a, b),
            _ => Vec::new(),
        };
        if diff.is_empty() {
            return vec!["its key changes although every recorded input matches".into()];
        }
        return diff;
    }
    match &moved.entry {
        None => vec!["its entry is not found in the copied depot".into()],
        Some((_, e)) => e
            .blobs()
            .iter()
            .filter(|b| !moved_depot.has_blob(b))
            .map(|b| format!("blob {b} is missing from the depot"))
            .collect(),
    }
}

/// The first input file whose state differs, for the problem's `path`.
fn first_changed_file(a: Option<&InputsSummary>, b: Option<&InputsSummary>) -> Option<RelPath> {
    let (a, b) = (a?, b?);
    let paths: BTreeSet<&RelPath> = a.files.keys().chain(b.files.keys()).collect();
    paths
        .into_iter()
        .find(|p| a.files.get(*p) != b.files.get(*p))
        .cloned()
}

/// What differs between the key inputs before and after the move, in words.
fn diff_summaries(a: &InputsSummary, b: &InputsSummary) -> Vec<String> {
    let mut out = Vec::new();
    if a.run != b.run || a.argv != b.argv {
        out.push("its command differs".into());
    }
    let names: BTreeSet<&String> = a.env.keys().chain(b.env.keys()).collect();
    for n in names {
        let (x, y) = (
            a.env.get(n).cloned().flatten(),
            b.env.get(n).cloned().flatten(),
        );
        if x != y {
            out.push(format!(
                "env `{n}` is `{}` there but was `{}`",
                y.as_deref().unwrap_or("<unset>"),
                x.as_deref().unwrap_or("<unset>")
            ));
        }
    }
    diff_map(&a.tools, &b.tools, "tool", &mut out);
    if a.version != b.version {
        out.push(format!("`version` {} → {}", a.version, b.version));
    }
    let paths: BTreeSet<&RelPath> = a.files.keys().chain(b.files.keys()).collect();
    for p in paths {
        match (a.files.get(p), b.files.get(p)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(FileState::Untracked { .. }), Some(FileState::Untracked { .. })) => {
                out.push(format!(
                    "input `{p}` has track_content = false and its mtime changed with the copy"
                ))
            }
            (Some(_), Some(_)) => out.push(format!("input `{p}` differs in the copy")),
            (Some(_), None) => out.push(format!(
                "input `{p}` is missing from the copy (is it a declared output, or inside .git?)"
            )),
            (None, Some(_)) => out.push(format!("input `{p}` appears only in the copy")),
            (None, None) => {}
        }
    }
    diff_map(&a.deps, &b.deps, "dep", &mut out);
    if a.outputs != b.outputs {
        out.push("its declared outputs differ".into());
    }
    out
}

fn diff_map<V: PartialEq>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    what: &str,
    out: &mut Vec<String>,
) {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for n in names {
        if a.get(n) != b.get(n) {
            out.push(format!("{what} `{n}` differs"));
        }
    }
}

/// `dirs` spelled below `root` as the walk of `root` will see them, also
/// when one of them is reached through a symlink or `root` is.
fn skip_dirs<'a>(root: &Path, dirs: impl Iterator<Item = &'a Path>) -> Vec<PathBuf> {
    let canonical_root = std::fs::canonicalize(root).ok();
    let mut out = Vec::new();
    for d in dirs {
        out.push(d.to_path_buf());
        if let (Some(cr), Ok(cd)) = (&canonical_root, std::fs::canonicalize(d)) {
            if let Ok(rel) = cd.strip_prefix(cr) {
                out.push(root.join(rel));
            }
        }
    }
    out
}

/// Copies the project tree at `from` to `to` as a fresh checkout would have
/// it: files (with their modes, new mtimes) and symlinks as they are, but no
/// declared outputs, no `.git`, and nothing below `skip`.
fn copy_project(
    from: &Path,
    to: &Path,
    outputs: &[RelPath],
    skip: &[PathBuf],
) -> Result<(), VerifyError> {
    let err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Copy {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(to).map_err(err("create", to))?;
    let walk = walkdir::WalkDir::new(from)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            let p = e.path();
            if e.file_name() == ".git" || skip.iter().any(|s| p == s) {
                return false;
            }
            let declared = p
                .strip_prefix(from)
                .ok()
                .and_then(|r| RelPath::from_path(r).ok())
                .is_some_and(|r| outputs.iter().any(|o| r.is_within(o)));
            !declared
        });
    for item in walk {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(from).to_path_buf();
            VerifyError::Copy {
                action: "read",
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            }
        })?;
        let rel = item.path().strip_prefix(from).expect("below the root");
        let dest = to.join(rel);
        let ft = item.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).map_err(err("create", &dest))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path()).map_err(err("read", item.path()))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(err("create", &dest))?;
        } else if ft.is_file() {
            // copy_file_range on Linux: a reflink where the filesystem can.
            std::fs::copy(item.path(), &dest).map_err(err("copy", item.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untracked_mtime_changes_are_named_in_the_diff() {
        let p = RelPath::new("vendor/huge.bin").unwrap();
        let mut a = InputsSummary::default();
        a.files.insert(
            p.clone(),
            FileState::Untracked {
                size: 3,
                mtime_ns: 1,
            },
        );
        let mut b = a.clone();
        b.files.insert(
            p.clone(),
            FileState::Untracked {
                size: 3,
                mtime_ns: 2,
            },
        );
        let d = diff_summaries(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].contains("vendor/huge.bin") && d[0].contains("mtime"),
            "{d:?}"
        );
        assert_eq!(first_changed_file(Some(&a), Some(&b)), Some(p));
        assert!(diff_summaries(&a, &a).is_empty());
    }
}
