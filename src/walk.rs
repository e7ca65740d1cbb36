//! The project walk: every file and symlink below a directory that
//! `.gitignore` does not exclude, each with its stat, in one parallel pass.
//! It only reads the tree; it never follows a symlink or leaves the start
//! directory.
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

use std::ffi::CStr;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rustix::fs::{openat, statat, AtFlags, FileType, Mode, OFlags, RawDir, Stat, CWD};

use crate::inputs::Stamp;

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
/// other than the file vanishing; whoever reads the file reports it).
pub type Found = (String, Option<Meta>);

/// The `.gitignore` of one directory, chained to those above it.
struct Level {
    /// The directory, relative to the walk's base ("" for the base).
    rel: String,
    rules: Gitignore,
    parent: Option<Arc<Level>>,
}

impl Level {
    /// Whether `rel` (relative to the base) is ignored: the deepest level
    /// with a matching pattern decides.
    fn ignores(level: &Option<Arc<Level>>, rel: &str, is_dir: bool) -> bool {
        let mut at = level.as_deref();
        while let Some(l) = at {
            let below = if l.rel.is_empty() {
                rel
            } else {
                &rel[l.rel.len() + 1..]
            };
            match l.rules.matched(below, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => at = l.parent.as_deref(),
            }
        }
        false
    }
}

struct Walk<'a> {
    skip: &'a [PathBuf],
    /// The names only the base directory cannot hold as inputs.
    top_only: &'a [&'a str],
    found: Mutex<Vec<Vec<Found>>>,
    error: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl Walk<'_> {
    fn fail(&self, what: String) {
        self.failed.store(true, Ordering::Relaxed);
        self.error.lock().unwrap().get_or_insert(what);
    }
}

/// Walks `base` in parallel: files and symlinks not excluded by a `.gitignore`
/// inside `base`, never entering `.git`, the directories in `skip`, or
/// directories whose names cannot be written in a manifest (not UTF-8, or
/// holding `\`); files named `.relocache-*` (restore temporaries) and, at the
/// top only, the names in `top_only` are left out. Unsorted.
pub fn walk(base: &Path, skip: &[PathBuf], top_only: &[&str]) -> Result<Vec<Found>, String> {
    let w = Walk {
        skip,
        top_only,
        found: Mutex::new(Vec::new()),
        error: Mutex::new(None),
        failed: AtomicBool::new(false),
    };
    rayon::scope(|s| visit(s, &w, base.to_path_buf(), String::new(), None));
    if let Some(e) = w.error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(w.found
        .into_inner()
        .unwrap()
        .into_iter()
        .flatten()
        .collect())
}

fn visit<'s>(
    s: &rayon::Scope<'s>,
    w: &'s Walk<'s>,
    abs: PathBuf,
    rel: String,
    level: Option<Arc<Level>>,
) {
    if w.failed.load(Ordering::Relaxed) {
        return;
    }
    let fail = |e: rustix::io::Errno| w.fail(format!("{}: {}", abs.display(), io::Error::from(e)));
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
    for (start, mut ft) in ents {
        let cname = CStr::from_bytes_until_nul(&names[start..]).expect("NUL-terminated");
        let Some(name) = manifest_name(cname) else {
            continue;
        };
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
        let mut child = String::with_capacity(rel.len() + 1 + name.len());
        if !rel.is_empty() {
            child.push_str(&rel);
            child.push('/');
        }
        child.push_str(name);
        if ft == FileType::Directory {
            let child_abs = abs.join(name);
            if w.skip.contains(&child_abs) || Level::ignores(&level, &child, true) {
                continue;
            }
            let level = level.clone();
            s.spawn(move |s| visit(s, w, child_abs, child, level));
            continue;
        }
        // Like git, fifos, sockets and devices are never inputs (opening a
        // fifo would block the walk's reader until some writer came).
        let special = !matches!(
            ft,
            FileType::RegularFile | FileType::Symlink | FileType::Unknown
        );
        if special
            || name.starts_with(".relocache-")
            || (rel.is_empty() && w.top_only.contains(&name))
            || Level::ignores(&level, &child, false)
        {
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
}

/// `name` as manifest text, if it can be written there at all.
fn manifest_name(name: &CStr) -> Option<&str> {
    std::str::from_utf8(name.to_bytes())
        .ok()
        .filter(|n| !n.contains('\\'))
}
