//! What a target reads: one walk of the project per build, glob expansion
//! against that walk, and each file's state (digest, symlink target or stat)
//! computed once per build however many targets read it.
//!
//! `.gitignore` files inside the project are honoured whether or not the tree
//! is a git checkout, and nothing outside the root (parent ignores, global git
//! config) is consulted, so the same tree gives the same inputs at any path on
//! any machine.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::hash::hash_file;
use crate::manifest::{Location, Pattern, Target};
use crate::memo::StatMemo;
use crate::relpath::RelPath;

/// The state of one input file as it enters a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileState {
    /// A regular file, by content.
    File {
        /// blake3 of the content.
        digest: Digest,
        /// Size in bytes.
        size: u64,
        /// Any execute bit set.
        executable: bool,
    },
    /// A symbolic link, by its target text (never followed).
    Symlink {
        /// What the link points to.
        target: String,
    },
    /// `track_content = false`: size and mtime only.
    Untracked {
        /// Size in bytes.
        size: u64,
        /// Modification time in nanoseconds since the epoch.
        mtime_ns: i128,
    },
}

/// stat fields that say whether a file may have changed since it was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) ino: u64,
}

impl Stamp {
    /// The stamp of `md`.
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: md.len(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
            ino: md.ino(),
        }
    }
}

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
    /// A tool is not on PATH.
    #[error("tool `{0}` was not found on PATH\n  help: install it, or remove it from `tools`")]
    ToolNotFound(String),
    /// Reading or walking failed.
    #[error("could not read `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The walk failed.
    #[error("could not walk the project: {0}")]
    Walk(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walker(dir: &Path) -> ignore::WalkBuilder {
    let mut b = ignore::WalkBuilder::new(dir);
    b.hidden(false)
        .parents(false)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .ignore(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git");
    b
}

/// Every non-ignored file and symlink below the project root, walked once.
#[derive(Debug, Default)]
pub struct ProjectScan {
    files: Vec<RelPath>,
}

impl ProjectScan {
    /// Walks `root` in parallel, skipping `.git` and every directory in `skip`
    /// (the depot, when it lives inside the project).
    pub fn walk(root: &Path, skip: &[PathBuf]) -> Result<ProjectScan, InputError> {
        Ok(ProjectScan {
            files: walk_files(root, root, skip)?,
        })
    }

    /// The files, sorted.
    pub fn files(&self) -> &[RelPath] {
        &self.files
    }
}

fn walk_files(root: &Path, dir: &Path, skip: &[PathBuf]) -> Result<Vec<RelPath>, InputError> {
    let found = Mutex::new(Vec::new());
    let error = Mutex::new(None);
    let skip: Vec<PathBuf> = skip.to_vec();
    let mut b = walker(dir);
    b.threads(rayon::current_num_threads().min(8));
    b.build_parallel().run(|| {
        Box::new(|res| {
            use ignore::WalkState;
            let entry = match res {
                Ok(e) => e,
                Err(e) => {
                    *error.lock().unwrap() = Some(e.to_string());
                    return WalkState::Quit;
                }
            };
            let ft = match entry.file_type() {
                Some(ft) => ft,
                None => return WalkState::Continue,
            };
            if ft.is_dir() {
                if skip.iter().any(|s| s == entry.path()) {
                    return WalkState::Skip;
                }
                return WalkState::Continue;
            }
            // Temporaries of an interrupted restore are never inputs.
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".relocache-")
            {
                return WalkState::Continue;
            }
            if let Ok(rel) = entry.path().strip_prefix(root) {
                match RelPath::from_path(rel) {
                    Ok(p) => found.lock().unwrap().push(p),
                    Err(e) => {
                        *error.lock().unwrap() = Some(e.to_string());
                        return WalkState::Quit;
                    }
                }
            }
            WalkState::Continue
        })
    });
    if let Some(e) = error.into_inner().unwrap() {
        return Err(InputError::Walk(e));
    }
    let mut files = found.into_inner().unwrap();
    files.sort();
    Ok(files)
}

/// The files a target's deps produced, by their entries: a key can be
/// computed from these before (or without) restoring them.
#[derive(Debug, Clone, Default)]
pub struct DepFiles {
    /// The deps' declared outputs: below these, disk is not consulted.
    pub declared: Vec<RelPath>,
    /// Every file and symlink the deps' entries list.
    pub files: BTreeMap<RelPath, FileState>,
}

impl DepFiles {
    /// Whether `p` lies below a dep's declared output.
    pub fn covers(&self, p: &RelPath) -> bool {
        self.declared.iter().any(|d| p.is_within(d))
    }
}

/// Resolves and hashes inputs for the targets of one build, sharing work
/// between targets that read the same files.
pub struct Inputs<'a> {
    root: &'a Path,
    scan: &'a ProjectScan,
    memo: Option<&'a StatMemo>,
    states: Mutex<HashMap<RelPath, (FileState, Stamp)>>,
    tools: Mutex<HashMap<String, Digest>>,
}

impl<'a> Inputs<'a> {
    /// Over the project at `root`, as walked by `scan`, skipping the hashing
    /// of files whose stat `memo` vouches for.
    pub fn new(root: &'a Path, scan: &'a ProjectScan, memo: Option<&'a StatMemo>) -> Inputs<'a> {
        Inputs {
            root,
            scan,
            memo,
            states: Mutex::new(HashMap::new()),
            tools: Mutex::new(HashMap::new()),
        }
    }

    /// The sorted inputs of `target`. `excluded` are outputs it may not read
    /// (its own, and those of targets it does not depend on). Files below its
    /// deps' declared outputs are taken from `deps` — the deps' entries — not
    /// from disk, so a key can be computed before the deps are restored.
    pub fn resolve(
        &self,
        target: &Target,
        excluded: &[RelPath],
        deps: &DepFiles,
    ) -> Result<Vec<InputFile>, InputError> {
        let is_excluded = |p: &RelPath| excluded.iter().any(|o| p.is_within(o));
        let mut wanted: BTreeMap<RelPath, bool> = BTreeMap::new();
        for input in &target.inputs {
            match &input.pattern {
                Pattern::Literal(p) => self.literal(p, true, input.loc, deps, &mut wanted)?,
                Pattern::Glob(g) => {
                    let on_disk = self.scan.files.iter().filter(|f| !deps.covers(f));
                    let mut any = false;
                    for f in on_disk.chain(deps.files.keys()) {
                        if g.is_match(f.as_str()) && !is_excluded(f) {
                            wanted.entry(f.clone()).or_insert(true);
                            any = true;
                        }
                    }
                    if !any {
                        return Err(InputError::NoMatch {
                            glob: input.text.clone(),
                            loc: input.loc,
                        });
                    }
                }
            }
        }
        for dep in &target.include_dependency {
            self.literal(&dep.path, dep.track_content, dep.loc, deps, &mut wanted)?;
        }
        self.states(wanted, deps)
    }

    fn literal(
        &self,
        p: &RelPath,
        track: bool,
        loc: Location,
        deps: &DepFiles,
        wanted: &mut BTreeMap<RelPath, bool>,
    ) -> Result<(), InputError> {
        let mut any = false;
        for f in deps.files.keys().filter(|f| f.is_within(p)) {
            merge(wanted, f.clone(), track);
            any = true;
        }
        if deps.covers(p) {
            return if any {
                Ok(())
            } else {
                Err(InputError::Missing {
                    path: p.clone(),
                    loc,
                })
            };
        }
        let abs = p.to_path(self.root);
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && any => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InputError::Missing {
                    path: p.clone(),
                    loc,
                })
            }
            Err(e) => return Err(io_err(&abs)(e)),
        };
        if md.is_dir() {
            for f in walk_files(self.root, &abs, &[])? {
                if !deps.covers(&f) {
                    merge(wanted, f, track);
                }
            }
        } else {
            merge(wanted, p.clone(), track);
        }
        Ok(())
    }

    fn states(
        &self,
        wanted: BTreeMap<RelPath, bool>,
        deps: &DepFiles,
    ) -> Result<Vec<InputFile>, InputError> {
        let known = self.states.lock().unwrap();
        let todo: Vec<(RelPath, bool)> = wanted
            .iter()
            .filter(|(p, track)| {
                !deps.files.contains_key(*p) && (!**track || !known.contains_key(*p))
            })
            .map(|(p, t)| (p.clone(), *t))
            .collect();
        drop(known);
        let fresh: Vec<(RelPath, bool, FileState, Stamp)> = todo
            .into_par_iter()
            .map(|(p, track)| {
                let (state, stamp) = file_state(self.root, &p, track, self.memo)?;
                Ok((p, track, state, stamp))
            })
            .collect::<Result<_, InputError>>()?;
        let mut known = self.states.lock().unwrap();
        let mut out = Vec::with_capacity(wanted.len());
        let mut fresh_untracked = HashMap::new();
        for (p, track, state, stamp) in fresh {
            if track {
                known.insert(p, (state, stamp));
            } else {
                fresh_untracked.insert(p, (state, stamp));
            }
        }
        for (p, track) in wanted {
            let (state, stamp) = if let Some(state) = deps.files.get(&p) {
                (state.clone(), None)
            } else if track {
                let (s, st) = known[&p].clone();
                (s, Some(st))
            } else {
                let (s, st) = fresh_untracked[&p].clone();
                (s, Some(st))
            };
            out.push(InputFile {
                path: p,
                state,
                stamp,
            });
        }
        Ok(out)
    }

    /// The first input that changed since it was hashed (re-hashing only the
    /// files whose stat changed), or `None`.
    pub fn first_changed(&self, inputs: &[InputFile]) -> Option<RelPath> {
        inputs
            .par_iter()
            .find_first(|i| {
                let abs = i.path.to_path(self.root);
                let md = match std::fs::symlink_metadata(&abs) {
                    Ok(md) => md,
                    Err(_) => return true,
                };
                if i.stamp.is_none_or(|s| Stamp::of(&md) == s) {
                    return false;
                }
                let track = !matches!(i.state, FileState::Untracked { .. });
                match file_state(self.root, &i.path, track, None) {
                    Ok((state, _)) => state != i.state,
                    Err(_) => true,
                }
            })
            .map(|i| i.path.clone())
    }

    /// Content digest of each tool, looked up on PATH (or relative to the
    /// root when the name holds a `/`).
    pub fn tools(&self, names: &[String]) -> Result<BTreeMap<String, Digest>, InputError> {
        let mut out = BTreeMap::new();
        for name in names {
            if let Some(d) = self.tools.lock().unwrap().get(name) {
                out.insert(name.clone(), *d);
                continue;
            }
            let path =
                find_tool(self.root, name).ok_or_else(|| InputError::ToolNotFound(name.clone()))?;
            let (d, _) = hash_file(&path).map_err(io_err(&path))?;
            self.tools.lock().unwrap().insert(name.clone(), d);
            out.insert(name.clone(), d);
        }
        Ok(out)
    }
}

fn merge(wanted: &mut BTreeMap<RelPath, bool>, p: RelPath, track: bool) {
    // Tracking by content wins over stat-only when a file is named both ways.
    let slot = wanted.entry(p).or_insert(track);
    *slot |= track;
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
            let (d, _) = hash_file(abs).map_err(io_err(abs))?;
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

/// Resolves a tool name like a shell would (`PATH`), or a relative path with a `/`.
pub fn find_tool(root: &Path, name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = root.join(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}
