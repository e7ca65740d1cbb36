//! The project walk: every file, symlink and directory below a directory
//! that `.gitignore` does not exclude, each file with its stat (or, for a
//! reader that opens the files anyway, only the symlinks'), in one
//! parallel pass; names that cannot be written in a manifest (not UTF-8, or
//! holding `\`) are reported apart, never dropped silently. It only reads
//! the tree; it never follows a symlink or leaves the start directory.
//!
//! This is `ignore::WalkBuilder`'s job done by hand for one reason: speed on
//! the no-op path, which must stat every input. Directories are read with
//! `getdents64` into a reused buffer and each file is stat'ed relative to its
//! open directory (`fstatat`), during the walk that lists it: no path
//! resolution per file, no allocation per entry but its path, and the build
//! never stats the file again. `.gitignore` matching is still the `ignore`
//! crate's ([`Gitignore`]), with git's precedence: the deepest `.gitignore`
//! with a matching pattern decides, and a `!pattern` re-includes. Only
//! `.gitignore` files inside the start directory count (no parents, no global
//! excludes, no `.git/info/exclude`), so a tree gives the same files at any
//! path on any machine.

use std::ffi::{CStr, OsStr};
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rustix::fs::{openat, statat, AtFlags, FileType, Mode, OFlags, RawDir, Stat, CWD};

use crate::file_state::Stamp;
use crate::tempname::is_temp_name;

/// What the walk saw of one file, from the same stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// size, times and inode.
    pub stamp: Stamp,
    /// A symbolic link (never followed).
    pub symlink: bool,
    /// Any execute bit set.
    pub executable: bool,
}

impl Meta {
    /// The meta of `md`, taken without following symlinks.
    pub fn of(md: &fs::Metadata) -> Meta {
        use std::os::unix::fs::PermissionsExt;
        Meta {
            stamp: Stamp::of(md),
            symlink: md.file_type().is_symlink(),
            executable: md.permissions().mode() & 0o111 != 0,
        }
    }

    /// The same fields from a raw `stat` (as [`std::fs::Metadata`] reads them).
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    fn of_stat(st: &Stat) -> Meta {
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        Meta {
            stamp: Stamp {
                size: st.st_size as u64,
                mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
                ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
                ino: st.st_ino as u64,
            },
            symlink: FileType::from_raw_mode(st.st_mode as _) == FileType::Symlink,
            executable: st.st_mode & 0o111 != 0,
        }
    }
}

/// One file found by the walk: its path relative to the walk's base, with
/// `/` separators, and its meta (`None` when the stat failed for a reason
/// other than the file vanishing, whoever reads the file reports it; or
/// when [`Stats::NotRegularFiles`] left a regular file unstat'ed).
pub type Found = (String, Option<Meta>);

/// A file, symlink or directory whose path cannot be written in a manifest:
/// one of its components is not UTF-8 or holds a `\`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unusable {
    /// The raw path relative to the walk's base, `/`-separated.
    pub path: Vec<u8>,
    /// The length of its leading part that is a manifest path: the directory
    /// holding its first unusable component ("" when that is the base).
    pub clean: usize,
    /// A directory (everything below it is reported too).
    pub dir: bool,
}

impl Unusable {
    /// The path for a message: UTF-8 as is, other bytes as `\xFF`.
    pub fn display(&self) -> String {
        escape(&self.path)
    }

    /// Why it cannot be an input, after "whose name".
    pub fn why(&self) -> &'static str {
        let bad = self.path[self.clean..]
            .split(|b| *b == b'/')
            .find(|c| !c.is_empty())
            .unwrap_or_default();
        if std::str::from_utf8(bad).is_err() {
            "is not valid UTF-8"
        } else {
            "holds a `\\`"
        }
    }

    /// The raw path, for glob matching.
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }
}

/// `bytes` as text: valid UTF-8 as is, every other byte as `\xFF`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// Everything a walk found below its base. Unsorted.
#[derive(Debug, Default)]
pub struct Walked {
    /// Files and symlinks.
    pub files: Vec<Found>,
    /// Directories (not the base), relative to the base.
    pub dirs: Vec<String>,
    /// Not-ignored files, symlinks and directories whose paths cannot be
    /// written in a manifest.
    pub unusable: Vec<Unusable>,
}

/// The `.gitignore` of one directory, chained to those above it.
struct Level {
    /// The directory, relative to the walk's base ("" for the base).
    rel: Vec<u8>,
    rules: Gitignore,
    parent: Option<Arc<Level>>,
}

impl Level {
    /// Whether `rel` (relative to the base) is ignored: the deepest level
    /// with a matching pattern decides.
    fn ignores(level: &Option<Arc<Level>>, rel: &[u8], is_dir: bool) -> bool {
        let mut at = level.as_deref();
        while let Some(l) = at {
            let below = if l.rel.is_empty() {
                rel
            } else {
                &rel[l.rel.len() + 1..]
            };
            match l.rules.matched(Path::new(OsStr::from_bytes(below)), is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => at = l.parent.as_deref(),
            }
        }
        false
    }
}

/// A directory the walk could not open or list; the first one met ends it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct WalkError {
    /// The directory.
    pub path: PathBuf,
    /// What the system said.
    pub source: io::Error,
}

/// Which files the walk stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stats {
    /// Every file and symlink: a build compares each stat with its memo.
    All,
    /// Only symlinks and entries whose type the directory did not say;
    /// a regular file comes with `None` (a reader learns its size from the
    /// open file). For readers that never compare stamps (`hash`, template
    /// listing, the files below a directory input): a stat is a path
    /// lookup, a tenth of hashing a small file.
    NotRegularFiles,
}

struct Walk<'a> {
    skip: &'a [PathBuf],
    stats: Stats,
    /// The names only the base directory cannot hold as inputs.
    top_only: &'a [&'a str],
    found: Mutex<Vec<Vec<Found>>>,
    dirs: Mutex<Vec<Vec<String>>>,
    unusable: Mutex<Vec<Unusable>>,
    error: Mutex<Option<WalkError>>,
    failed: AtomicBool,
}

impl Walk<'_> {
    fn fail(&self, what: WalkError) {
        self.failed.store(true, Ordering::Relaxed);
        self.error.lock().unwrap().get_or_insert(what);
    }
}

/// Walks `base` in parallel: files, symlinks and directories not excluded by
/// a `.gitignore` inside `base`, never entering `.git` or the directories in
/// `skip`. relocache's own temporary files ([`crate::tempname`]) and, at the
/// top only, the names in `top_only` are left out. Paths that cannot be
/// written in a manifest (not UTF-8, or holding `\`) go to
/// [`Walked::unusable`], with everything below such a directory. `stats`
/// says which files come with their stat. Unsorted.
pub fn walk(
    base: &Path,
    skip: &[PathBuf],
    top_only: &[&str],
    stats: Stats,
) -> Result<Walked, WalkError> {
    let _span = tracing::debug_span!("walk", base = %base.display()).entered();
    let w = Walk {
        skip,
        stats,
        top_only,
        found: Mutex::new(Vec::new()),
        dirs: Mutex::new(Vec::new()),
        unusable: Mutex::new(Vec::new()),
        error: Mutex::new(None),
        failed: AtomicBool::new(false),
    };
    rayon::scope(|s| visit(s, &w, base.to_path_buf(), Vec::new(), None, None));
    if let Some(e) = w.error.into_inner().unwrap() {
        tracing::debug!(error = %e, "walk failed");
        return Err(e);
    }
    let walked = Walked {
        files: w
            .found
            .into_inner()
            .unwrap()
            .into_iter()
            .flatten()
            .collect(),
        dirs: w.dirs.into_inner().unwrap().into_iter().flatten().collect(),
        unusable: w.unusable.into_inner().unwrap(),
    };
    tracing::debug!(
        files = walked.files.len(),
        dirs = walked.dirs.len(),
        unusable = walked.unusable.len(),
        "walked"
    );
    Ok(walked)
}

/// Visits directory `abs` (`rel` below the base). `clean` is `None` while
/// every component of `rel` can be written in a manifest, else the length of
/// the leading part that can.
// Long on purpose: one directory's visit (open, read .gitignore, classify each name) shares the open handle and the name buffer; split, every piece would take them all.
fn visit<'s>(
    s: &rayon::Scope<'s>,
    w: &'s Walk<'s>,
    abs: PathBuf,
    rel: Vec<u8>,
    clean: Option<usize>,
    level: Option<Arc<Level>>,
) {
    if w.failed.load(Ordering::Relaxed) {
        return;
    }
    let fail = |e: rustix::io::Errno| {
        w.fail(WalkError {
            path: abs.clone(),
            source: io::Error::from(e),
        })
    };
    // The base may be reached through a symlink (`-C link`); below it, a
    // directory swapped for a symlink since it was listed is not followed.
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !rel.is_empty() {
        flags |= OFlags::NOFOLLOW;
    }
    let dir = match openat(CWD, &abs, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return fail(e),
    };
    // The names, NUL-terminated, in one buffer: .gitignore must be read
    // before any name of its directory is matched.
    let mut names: Vec<u8> = Vec::with_capacity(4096);
    let mut ents: Vec<(usize, FileType)> = Vec::with_capacity(64);
    let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut rd = RawDir::new(&dir, &mut buf);
    let mut gitignore = false;
    while let Some(ent) = rd.next() {
        let ent = match ent {
            Ok(ent) => ent,
            Err(e) => return fail(e),
        };
        let name = ent.file_name().to_bytes_with_nul();
        if matches!(name, b".\0" | b"..\0" | b".git\0") {
            continue;
        }
        gitignore |= name == b".gitignore\0";
        ents.push((names.len(), ent.file_type()));
        names.extend_from_slice(name);
    }
    let level = if gitignore {
        let mut b = GitignoreBuilder::new(&abs);
        // Like git, a line that is not a valid pattern is skipped.
        let _ = b.add(abs.join(".gitignore"));
        match b.build() {
            Ok(rules) if !rules.is_empty() => Some(Arc::new(Level {
                rel: rel.clone(),
                rules,
                parent: level,
            })),
            _ => level,
        }
    } else {
        level
    };
    let mut local = Vec::with_capacity(ents.len());
    let mut local_dirs = Vec::new();
    for (start, mut ft) in ents {
        let cname = CStr::from_bytes_until_nul(&names[start..]).expect("NUL-terminated");
        let name = cname.to_bytes();
        let usable = manifest_name(cname);
        if usable.is_some_and(is_temp_name) {
            continue;
        }
        let mut stat = None;
        if ft == FileType::Unknown {
            // Filesystems without d_type: ask.
            match statat(&dir, cname, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    ft = FileType::from_raw_mode(st.st_mode as _);
                    stat = Some(st);
                }
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return fail(e),
            }
        }
        let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
        if !rel.is_empty() {
            child.extend_from_slice(&rel);
            child.push(b'/');
        }
        child.extend_from_slice(name);
        // Where the child's path stops being manifest text, if it does.
        let child_clean = match (clean, usable) {
            (Some(c), _) => Some(c),
            (None, Some(_)) => None,
            (None, None) => Some(rel.len()),
        };
        if ft == FileType::Directory {
            let child_abs = abs.join(OsStr::from_bytes(name));
            if w.skip.contains(&child_abs) || Level::ignores(&level, &child, true) {
                continue;
            }
            match child_clean {
                None => local_dirs.push(String::from_utf8(child.clone()).expect("checked")),
                Some(c) => w.unusable.lock().unwrap().push(Unusable {
                    path: child.clone(),
                    clean: c,
                    dir: true,
                }),
            }
            let level = level.clone();
            s.spawn(move |s| visit(s, w, child_abs, child, child_clean, level));
            continue;
        }
        // Like git, fifos, sockets and devices are never inputs (opening a
        // fifo would block the walk's reader until some writer came).
        let special = !matches!(
            ft,
            FileType::RegularFile | FileType::Symlink | FileType::Unknown
        );
        if special
            || (rel.is_empty() && usable.is_some_and(|n| w.top_only.contains(&n)))
            || Level::ignores(&level, &child, false)
        {
            continue;
        }
        if let Some(c) = child_clean {
            w.unusable.lock().unwrap().push(Unusable {
                path: child,
                clean: c,
                dir: false,
            });
            continue;
        }
        let child = String::from_utf8(child).expect("checked");
        if w.stats == Stats::NotRegularFiles && ft == FileType::RegularFile {
            local.push((child, None));
            continue;
        }
        // Relative to the open directory: no path resolution per file.
        let meta = match stat.map_or_else(|| statat(&dir, cname, AtFlags::SYMLINK_NOFOLLOW), Ok) {
            Ok(st) => Some(Meta::of_stat(&st)),
            Err(rustix::io::Errno::NOENT) => continue,
            Err(_) => None,
        };
        local.push((child, meta));
    }
    if !local.is_empty() {
        w.found.lock().unwrap().push(local);
    }
    if !local_dirs.is_empty() {
        w.dirs.lock().unwrap().push(local_dirs);
    }
}

/// `name` as manifest text, if it can be written there at all.
fn manifest_name(name: &CStr) -> Option<&str> {
    std::str::from_utf8(name.to_bytes())
        .ok()
        .filter(|n| !n.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_names_are_shown_escaped_with_the_reason() {
        let u = Unusable {
            path: b"src/d\xfe/in.c".to_vec(),
            clean: 3,
            dir: false,
        };
        assert_eq!(u.display(), "src/d\\xFE/in.c");
        assert_eq!(u.why(), "is not valid UTF-8");
        let b = Unusable {
            path: b"a\\b".to_vec(),
            clean: 0,
            dir: false,
        };
        assert_eq!(b.display(), "a\\b");
        assert_eq!(b.why(), "holds a `\\`");
    }
}
