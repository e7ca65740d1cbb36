//! What a target reads: one walk of the project per build, glob expansion
//! against that walk, and each file's state (digest, symlink target or stat)
//! computed once per build however many targets read it. Nothing a target's
//! inputs cover is left out silently: a directory input keys the directories
//! below it too, and a covered name that cannot be keyed (not UTF-8, or
//! holding `\`) fails the target instead of being skipped.
//!
//! `.gitignore` files inside the project are honoured whether or not the tree
//! is a git checkout, and nothing outside the root (parent ignores, global git
//! config) is consulted, so the same tree gives the same inputs at any path on
//! any machine.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use crate::file_hash::hash_file_len;
use crate::follow::Follow;
mod deps;
mod scan;

pub use deps::{DepFiles, Excluded};
pub use scan::ProjectScan;
use scan::{first_unusable, walk_files};

use crate::manifest::{Location, Pattern, Target};
use crate::memo::{Slot, StatMemo};
use crate::relpath::{prefix_range, RelPath};
use crate::walk::Stats;

use crate::digest::Digest;
use crate::file_state::{FileState, Stamp};

/// One resolved input of a target.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Path relative to the project root.
    pub path: RelPath,
    /// What enters the key.
    pub state: FileState,
    /// stat at hashing time, for the after-build re-check; `None` for a
    /// dep's output, whose state comes from the dep's entry.
    pub stamp: Option<Stamp>,
}

/// Why a target's inputs could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A glob matched no file.
    #[error("input glob `{glob}` (relocache.toml:{loc}) matched no files\n  help: fix the pattern (`*` stays in one directory, `**/` crosses them) or create the files; ignored files match only when named literally")]
    NoMatch {
        /// The pattern.
        glob: String,
        /// Where it was written.
        loc: Location,
    },
    /// A literally named input does not exist.
    #[error("input `{path}` (relocache.toml:{loc}) does not exist\n  help: create it, fix the path, or make the target that writes it a dep")]
    Missing {
        /// The path.
        path: RelPath,
        /// Where it was written.
        loc: Location,
    },
    /// A tool could not be found or keyed.
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    /// Reading or walking failed.
    #[error("could not read `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The walk failed.
    #[error("could not walk the project: {0}\n  help: make it readable, or list it in .gitignore if it is not an input")]
    Walk(#[from] crate::walk::WalkError),
    /// A symlink an input or a dep's output holds leads to a directory
    /// holding a path that cannot be written in a manifest.
    #[error("a symlink leads to `{dir}`, which holds `{path}`, whose name {why}\n  help: rename it, or list it in .gitignore if it is not an input")]
    UnusableBehindLink {
        /// The directory the link resolves to.
        dir: RelPath,
        /// The path, escaped.
        path: String,
        /// What is wrong with the name.
        why: &'static str,
    },
    /// An input covers a path that cannot be written in a manifest (and so
    /// in a key or an entry): refused, never silently left out.
    #[error("input `{input}` (relocache.toml:{loc}) covers `{path}`, whose name {why}\n  help: rename it, or list it in .gitignore if it is not an input")]
    Unusable {
        /// The input as written.
        input: String,
        /// Where it was written.
        loc: Location,
        /// The path, escaped (see [`crate::walk::escape`]).
        path: String,
        /// What is wrong with the name.
        why: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Resolves and hashes inputs for the targets of one build, sharing work
/// between targets that read the same files.
pub struct Inputs<'a> {
    root: &'a Path,
    scan: &'a ProjectScan,
    memo: Option<&'a StatMemo>,
    /// The memo's record of each scanned file, by its index in the scan.
    slots: Vec<Slot>,
    /// Tracked states of the scanned files, by their index in the scan.
    scanned: Vec<OnceLock<(FileState, Stamp)>>,
    /// Tracked states of files outside the scan (ignored files named literally).
    others: Mutex<HashMap<RelPath, (FileState, Stamp)>>,
}

/// Where an input's state comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `scan.files[i]`.
    Scan(usize),
    /// A dep's entry.
    Dep,
    /// Disk, outside the scan.
    Other,
    /// A directory below a directory input: its name is its state.
    Dir,
}

/// One wanted input while resolving.
struct Want<'p> {
    path: &'p RelPath,
    source: Source,
    track: bool,
}

/// A path found by walking a literal directory input: a directory (keyed by
/// name) or a file.
type WalkedPath = (RelPath, bool);

/// Below this many files, hashing runs on the calling thread: waking the
/// pool costs more than it saves.
const PAR_MIN: usize = 64;

impl<'a> Inputs<'a> {
    /// Over the project at `root`, as walked by `scan`, skipping the hashing
    /// of files whose stat `memo` vouches for.
    pub fn new(root: &'a Path, scan: &'a ProjectScan, memo: Option<&'a StatMemo>) -> Inputs<'a> {
        Inputs {
            root,
            scan,
            memo,
            slots: memo.map(|m| m.align(&scan.files)).unwrap_or_default(),
            scanned: (0..scan.files.len()).map(|_| OnceLock::new()).collect(),
            others: Mutex::new(HashMap::new()),
        }
    }

    /// The sorted inputs of `target`. `excluded` are outputs it may not read
    /// (its own, and those of targets it does not depend on). Files below its
    /// deps' declared outputs are taken from `deps` — the deps' entries — not
    /// from disk, so a key can be computed before the deps are restored.
    ///
    /// An input symlink resolving inside the project carries what it
    /// resolves to ([`crate::follow`]); `hidden` says which paths a link
    /// may not lead into.
    pub fn resolve(
        &self,
        target: &Target,
        excluded: &Excluded<'_>,
        deps: &DepFiles<'_>,
        hidden: &(dyn Fn(&RelPath) -> bool + Sync),
    ) -> Result<Vec<InputFile>, InputError> {
        let is_excluded = |p: &RelPath| excluded.contains(p);
        // Files and directories found by walking literal directories.
        let mut walked: Vec<(Vec<WalkedPath>, bool)> = Vec::new();
        let mut wanted: Vec<Want<'_>> = Vec::new();
        let mut literals: Vec<(&RelPath, bool, Location, &str)> = Vec::new();
        for input in &target.inputs {
            match &input.pattern {
                Pattern::Literal(p) => literals.push((p, true, input.loc, &input.text)),
                Pattern::Glob(g) => {
                    first_unusable(
                        &self.scan.unusable,
                        "",
                        |u| !u.dir && g.is_match(u.as_path()),
                        |at| deps.covers(at) || is_excluded(at),
                        &input.text,
                        input.loc,
                    )?;
                    let before = wanted.len();
                    // Only the sorted scan's run below the glob's literal
                    // directory can match: many targets with globs over a
                    // big tree cost a binary search each, not a pass each.
                    let prefix = glob_dir_prefix(g.glob().glob());
                    let files = &self.scan.files;
                    for i in prefix_range(files, prefix, |f| f.as_str()) {
                        let f = &files[i];
                        if g.is_match(f.as_str()) && !deps.covers(f) && !is_excluded(f) {
                            wanted.push(Want {
                                path: f,
                                source: Source::Scan(i),
                                track: true,
                            });
                        }
                    }
                    for f in deps.paths() {
                        if g.is_match(f.as_str()) && !is_excluded(f) {
                            wanted.push(Want {
                                path: f,
                                source: Source::Dep,
                                track: true,
                            });
                        }
                    }
                    if wanted.len() == before {
                        return Err(InputError::NoMatch {
                            glob: input.text.clone(),
                            loc: input.loc,
                        });
                    }
                }
            }
        }
        let texts: Vec<String> = target
            .include_dependency
            .iter()
            .map(|d| d.path.to_string())
            .collect();
        for (dep, text) in target.include_dependency.iter().zip(&texts) {
            literals.push((&dep.path, dep.track_content, dep.loc, text));
        }
        for (p, track, loc, text) in literals {
            if let Some(files) = self.literal(p, track, (loc, text), deps, &mut wanted)? {
                walked.push(files);
            }
        }
        for (files, track) in &walked {
            for (f, dir) in files.iter().filter(|(f, _)| !deps.covers(f)) {
                let source = match self.scan.files.binary_search(f) {
                    _ if *dir => Source::Dir,
                    Ok(i) => Source::Scan(i),
                    Err(_) => Source::Other,
                };
                wanted.push(Want {
                    path: f,
                    source,
                    track: *track,
                });
            }
        }
        // A file named both ways is tracked by content.
        wanted.sort_unstable_by(|a, b| a.path.cmp(b.path).then(b.track.cmp(&a.track)));
        wanted.dedup_by(|later, first| later.path == first.path);
        let follow = Follow {
            inputs: self,
            deps,
            hidden,
        };
        self.states(&wanted, deps, &follow)
    }

    /// What `p` is on disk now, for following a symlink: a file by its
    /// content, a symlink by its text, a directory; `None` when absent.
    pub(crate) fn on_disk(&self, p: &RelPath) -> Result<Option<FileState>, InputError> {
        let abs = p.to_path(self.root);
        match stat_if_there(&abs, false)? {
            Some(md) if md.is_dir() => return Ok(Some(FileState::Dir)),
            Some(_) => {}
            None => return Ok(None),
        }
        let source = match self.scan.files.binary_search(p) {
            Ok(i) => Source::Scan(i),
            Err(_) => Source::Other,
        };
        let want = Want {
            path: p,
            source,
            track: true,
        };
        Ok(Some(self.state_of(&want, &DepFiles::default())?.0))
    }

    /// The content digest of project file `p` as a command reads it (a
    /// symlink followed) and the stat it was hashed under, for a file a
    /// depfile named: through the same per-build states and stat memo as
    /// declared inputs, so it is hashed once per build. `None` when it is
    /// absent or not a file.
    pub(crate) fn content(&self, p: &RelPath) -> Result<Option<(Digest, Stamp)>, InputError> {
        let abs = p.to_path(self.root);
        let Some(md) = stat_if_there(&abs, false)? else {
            return Ok(None);
        };
        if md.file_type().is_symlink() {
            return outside_content(&abs, None);
        }
        if !md.is_file() {
            return Ok(None);
        }
        let source = match self.scan.files.binary_search(p) {
            Ok(i) => Source::Scan(i),
            Err(_) => Source::Other,
        };
        let want = Want {
            path: p,
            source,
            track: true,
        };
        match self.state_of(&want, &DepFiles::default())? {
            (FileState::File { digest, .. }, Some(stamp)) => Ok(Some((digest, stamp))),
            _ => outside_content(&abs, None),
        }
    }

    /// The files, symlinks and directories below directory `dir` on disk
    /// (`.gitignore` respected), for following a symlink to it.
    pub(crate) fn below_on_disk(&self, dir: &RelPath) -> Result<Vec<RelPath>, InputError> {
        let below = walk_files(&dir.to_path(self.root), &[], Stats::NotRegularFiles)?;
        if let Some(u) = below.unusable.first() {
            return Err(InputError::UnusableBehindLink {
                dir: dir.clone(),
                path: format!("{dir}/{}", u.display()),
                why: u.why(),
            });
        }
        let join = |f: &RelPath| RelPath::trusted(format!("{dir}/{f}"));
        Ok(below
            .dirs
            .iter()
            .map(join)
            .chain(below.files.iter().map(|(f, _)| join(f)))
            .collect())
    }

    /// Adds literal input `p` (written `text` at `loc`): a dep's output, a
    /// scanned or ignored file, or a directory (whose files and directories
    /// are returned to be added by the caller).
    fn literal<'p>(
        &self,
        p: &'p RelPath,
        track: bool,
        (loc, text): (Location, &str),
        deps: &'p DepFiles<'p>,
        wanted: &mut Vec<Want<'p>>,
    ) -> Result<Option<(Vec<WalkedPath>, bool)>, InputError> {
        let mut any = false;
        for f in deps.within(p) {
            wanted.push(Want {
                path: f,
                source: Source::Dep,
                track,
            });
            any = true;
        }
        if deps.covers(p) {
            return if any {
                Ok(None)
            } else {
                Err(InputError::Missing {
                    path: p.clone(),
                    loc,
                })
            };
        }
        // A file the walk found needs no stat here: the walk took it.
        if let Ok(i) = self.scan.files.binary_search(p) {
            wanted.push(Want {
                path: p,
                source: Source::Scan(i),
                track,
            });
            return Ok(None);
        }
        let abs = p.to_path(self.root);
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && any => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InputError::Missing {
                    path: p.clone(),
                    loc,
                })
            }
            Err(e) => return Err(io_err(&abs)(e)),
        };
        if md.is_dir() {
            let below = walk_files(&abs, &[], Stats::NotRegularFiles)?;
            first_unusable(
                &below.unusable,
                p.as_str(),
                |_| true,
                |at| deps.covers(at),
                text,
                loc,
            )?;
            // Both parts are normalized, so their join is too.
            let join = |f: &RelPath| RelPath::trusted(format!("{p}/{f}"));
            let files = below
                .dirs
                .iter()
                .map(|d| (join(d), true))
                .chain(below.files.iter().map(|(f, _)| (join(f), false)))
                .collect();
            return Ok(Some((files, track)));
        }
        wanted.push(Want {
            path: p,
            source: Source::Other,
            track,
        });
        Ok(None)
    }

    /// The state of one wanted input, computing and sharing it as needed.
    fn state_of(
        &self,
        w: &Want<'_>,
        deps: &DepFiles<'_>,
    ) -> Result<(FileState, Option<Stamp>), InputError> {
        if let Source::Dep = w.source {
            let state = deps
                .state(w.path)
                .expect("dep inputs come from the deps' files");
            return Ok((state.clone(), None));
        }
        if let Source::Dir = w.source {
            return Ok((FileState::Dir, None));
        }
        if !w.track {
            let (s, st) = file_state(self.root, w.path, false, None)?;
            return Ok((s, Some(st)));
        }
        match w.source {
            Source::Scan(i) => {
                if let Some((s, st)) = self.scanned[i].get() {
                    return Ok((s.clone(), Some(*st)));
                }
                let (s, st) = match self.known_from_walk(i) {
                    Some(known) => known,
                    None => file_state(self.root, w.path, true, self.memo)?,
                };
                let _ = self.scanned[i].set((s.clone(), st));
                Ok((s, Some(st)))
            }
            _ => {
                if let Some((s, st)) = self.others.lock().unwrap().get(w.path) {
                    return Ok((s.clone(), Some(*st)));
                }
                let (s, st) = file_state(self.root, w.path, true, self.memo)?;
                self.others
                    .lock()
                    .unwrap()
                    .insert(w.path.clone(), (s.clone(), st));
                Ok((s, Some(st)))
            }
        }
    }

    /// The state of scanned file `i` from the walk's stat, when the memo
    /// vouches for its digest: the no-op path, with no further syscall.
    fn known_from_walk(&self, i: usize) -> Option<(FileState, Stamp)> {
        let meta = self.scan.meta[i]?;
        if meta.symlink {
            return None;
        }
        let slot = *self.slots.get(i)?;
        let digest = self.memo?.lookup_slot(slot, &meta.stamp)?;
        let state = FileState::File {
            digest,
            size: meta.stamp.size,
            executable: meta.executable,
        };
        Some((state, meta.stamp))
    }

    fn states(
        &self,
        wanted: &[Want<'_>],
        deps: &DepFiles<'_>,
        follow: &Follow<'_>,
    ) -> Result<Vec<InputFile>, InputError> {
        let one = |w: &Want<'_>| {
            let (mut state, stamp) = self.state_of(w, deps)?;
            // A command reads what a link leads to: keyed by that too
            // (not for `track_content = false`, which promises no hashing).
            if let (FileState::Symlink { target, resolved }, true) = (&mut state, w.track) {
                *resolved = follow.resolve(w.path, target)?;
            }
            Ok(InputFile {
                path: w.path.clone(),
                state,
                stamp,
            })
        };
        if wanted.len() < PAR_MIN {
            wanted.iter().map(one).collect()
        } else {
            wanted.par_iter().map(one).collect()
        }
    }

    /// The first input that changed since it was hashed (re-hashing only the
    /// files whose stat changed), or `None`.
    pub fn first_changed(&self, inputs: &[InputFile]) -> Option<RelPath> {
        let changed = |i: &&InputFile| {
            let abs = i.path.to_path(self.root);
            let md = match std::fs::symlink_metadata(&abs) {
                Ok(md) => md,
                Err(_) => return true,
            };
            if i.stamp.is_none_or(|s| Stamp::of(&md) == s) {
                return false;
            }
            let track = !matches!(i.state, FileState::Untracked { .. });
            // A link is re-checked by its text (`file_state` does not follow).
            let was = match &i.state {
                FileState::Symlink { target, .. } => FileState::Symlink {
                    target: target.clone(),
                    resolved: None,
                },
                s => s.clone(),
            };
            match file_state(self.root, &i.path, track, None) {
                Ok((state, _)) => state != was,
                Err(_) => true,
            }
        };
        let found = if inputs.len() < PAR_MIN {
            inputs.iter().find(changed)
        } else {
            inputs.par_iter().find_first(changed)
        };
        found.map(|i| i.path.clone())
    }
}

/// The content digest of the file at `abs` (symlinks followed) and the
/// stat it was hashed under; `None` when absent or not a regular file. For
/// discovered files outside the project, and links inside it. `memo`
/// (only for a path outside the project: the memo names none inside it)
/// spares hashing a file whose stat is unchanged.
pub(crate) fn outside_content(
    abs: &Path,
    memo: Option<&StatMemo>,
) -> Result<Option<(Digest, Stamp)>, InputError> {
    let md = match stat_if_there(abs, true)? {
        Some(md) if md.is_file() => md,
        _ => return Ok(None),
    };
    let stamp = Stamp::of(&md);
    if let Some(digest) = memo.and_then(|m| m.lookup_outside(abs, &stamp)) {
        return Ok(Some((digest, stamp)));
    }
    let (digest, _) = hash_file_len(abs, md.len()).map_err(io_err(abs))?;
    if let Some(m) = memo {
        m.record_outside(abs, stamp, digest);
    }
    Ok(Some((digest, stamp)))
}

/// `stat(abs)` when `follow`, else `lstat`; `None` when nothing is there:
/// absent, or a component of its path is not a directory.
fn stat_if_there(abs: &Path, follow: bool) -> Result<Option<std::fs::Metadata>, InputError> {
    let md = if follow {
        std::fs::metadata(abs)
    } else {
        std::fs::symlink_metadata(abs)
    };
    match md {
        Ok(md) => Ok(Some(md)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(abs)(e)),
    }
}

fn file_state(
    root: &Path,
    rel: &RelPath,
    track: bool,
    memo: Option<&StatMemo>,
) -> Result<(FileState, Stamp), InputError> {
    let abs = &rel.to_path(root);
    let md = std::fs::symlink_metadata(abs).map_err(io_err(abs))?;
    let stamp = Stamp::of(&md);
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(abs).map_err(io_err(abs))?;
        return Ok((
            FileState::Symlink {
                target: target.to_string_lossy().into_owned(),
                resolved: None,
            },
            stamp,
        ));
    }
    if !track {
        return Ok((
            FileState::Untracked {
                size: stamp.size,
                mtime_ns: stamp.mtime_ns,
            },
            stamp,
        ));
    }
    let digest = match memo.and_then(|m| m.lookup(rel, &stamp)) {
        Some(d) => d,
        None => {
            let (d, _) = hash_file_len(abs, stamp.size).map_err(io_err(abs))?;
            if let Some(m) = memo {
                m.record(rel, stamp, d);
            }
            d
        }
    };
    Ok((
        FileState::File {
            digest,
            size: stamp.size,
            executable: md.permissions().mode() & 0o111 != 0,
        },
        stamp,
    ))
}

/// The directory part of a (cleaned) glob before its first metacharacter,
/// with its trailing `/`: `src/a/` for `src/a/**/*.c`, empty for `*.c` or
/// `**/x`. Every path the glob matches starts with it (an escape ends it too).
pub(crate) fn glob_dir_prefix(pattern: &str) -> &str {
    let meta = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    match pattern[..meta].rfind('/') {
        Some(i) => &pattern[..=i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_matches_only_below_its_literal_directory() {
        for (glob, prefix) in [
            ("src/a/**/*.c", "src/a/"),
            ("src/*.c", "src/"),
            ("src/a/b.{c,h}", "src/a/"),
            ("*.c", ""),
            ("**/x", ""),
            ("a/[bc]/d", "a/"),
            ("a\\*/b/*", ""),
            ("docs/x?y/z", "docs/"),
        ] {
            assert_eq!(glob_dir_prefix(glob), prefix, "{glob}");
        }
    }

    #[test]
    fn outputs_of_non_deps_are_excluded_with_everything_below_them() {
        let p = |s: &str| RelPath::normalize(s).unwrap();
        let (a, dist, gen, gen2) = (p("build/a.o"), p("dist"), p("gen/x.h"), p("gen"));
        let mut outputs = vec![(&a, "a"), (&dist, "pkg"), (&gen, "gen"), (&gen2, "other")];
        outputs.sort_unstable();
        let deps = ["gen"];
        let ex = Excluded {
            outputs: &outputs,
            deps: &deps,
        };
        for (path, excluded) in [
            ("build/a.o", true),
            ("build/b.o", false),
            ("dist", true),
            ("dist/sub/file", true),
            ("distx/y", false),
            ("gen/x.h", true), // below `gen`, which a non-dep declares
            ("src/main.c", false),
        ] {
            assert_eq!(ex.contains(&p(path)), excluded, "{path}");
        }
        let only_dep = [(&gen, "gen")];
        let ex = Excluded {
            outputs: &only_dep,
            deps: &deps,
        };
        assert!(!ex.contains(&p("gen/x.h")), "a dep's output is readable");
    }
}
