//! `relocache hash`: one digest over a set of files, for CI cache keys. It
//! depends only on the files' paths relative to a base directory and their
//! contents, so the same tree gives the same digest at any checkout path on
//! any machine. Owns argument expansion and the encoding below; never writes.
//!
//! # Arguments
//!
//! Each argument is relative to the base directory (the current directory,
//! or `-C DIR`), or an absolute path inside it:
//! - a glob (it contains `*`, `?`, `[` or `{`) is matched against every file
//!   below the base, like manifest inputs: `/`-separated paths, `*` and `?`
//!   stay in one directory, `**` crosses them, files ignored by `.gitignore`
//!   are left out;
//! - a file is itself (even when ignored);
//! - a directory is every non-ignored file below it (`.` is the whole base).
//!
//! An argument that matches nothing is an error, and so is one that covers a
//! non-ignored file or directory whose name is not UTF-8 or holds a `\`
//! (such a name cannot be encoded below, and is never silently left out).
//! Symbolic links are never followed; a link contributes its target text.
//! Directories contribute only through the files below them.
//!
//! # Encoding
//!
//! ```text
//! digest = blake3::derive_key("relocache tree hash v1",
//!            for each file, sorted by path (bytewise, `/`-separated):
//!              u64 little-endian byte length of the path ‖ path (UTF-8)
//!              ‖ kind: b'F' (regular file) or b'L' (symbolic link)
//!              ‖ 32-byte blake3 of the content (file) or of the link text (link))
//! ```
//!
//! Each file appears once however many arguments match it. Modes, sizes and
//! mtimes are not part of the digest.

use std::path::{Path, PathBuf};

use globset::GlobBuilder;
use serde::Serialize;

use crate::digest::Digest;
use crate::file_hash::{hash_file_len, hash_file_unsized};
use crate::inputs::{InputError, ProjectScan};
use crate::relpath::RelPath;
use crate::walk::Meta;

/// The derive-key context of the encoding.
const CONTEXT: &str = "relocache tree hash v1";

/// What a hashed path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A regular file, by content.
    File,
    /// A symbolic link, by its target text.
    Symlink,
}

/// One file in a [`TreeHash`].
#[derive(Debug, Clone, Serialize)]
pub struct HashedFile {
    /// Relative to the base directory.
    pub path: RelPath,
    /// File or symlink.
    pub kind: Kind,
    /// blake3 of the content or link text.
    pub digest: Digest,
}

/// The digest of a set of files, and the files.
#[derive(Debug, Clone, Serialize)]
pub struct TreeHash {
    /// The combined digest (see the module docs).
    pub digest: Digest,
    /// Every file, sorted by path.
    pub files: Vec<HashedFile>,
}

/// Why `hash` failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeHashError {
    /// An argument matched no file.
    #[error("`{0}` matches no file\n  help: paths and globs are relative to the current directory (or -C DIR); `*` stays in one directory, `**/` crosses them, and ignored files match only when named")]
    NoMatch(String),
    /// An argument leaves the base directory.
    #[error("`{arg}` is outside `{}`\n  help: name files inside the directory being hashed (use -C DIR to hash another one), so the digest does not depend on where it is checked out", .base.display())]
    Outside {
        /// The argument.
        arg: String,
        /// The base directory.
        base: PathBuf,
    },
    /// A glob does not parse.
    #[error("invalid glob `{arg}`: {message}\n  help: `*` and `?` match within one directory, `**` across directories, `{{a,b}}` alternatives")]
    BadGlob {
        /// The argument.
        arg: String,
        /// The parser's complaint.
        message: String,
    },
    /// A path is not valid UTF-8.
    #[error("`{0}` is not valid UTF-8\n  help: rename it; hashed paths must be portable text")]
    NotUtf8(String),
    /// Reading a file or walking failed.
    #[error("could not read `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The walk failed.
    #[error("{0}")]
    Walk(#[source] InputError),
    /// An argument covers a path whose name cannot be hashed.
    #[error("`{arg}` covers `{path}`, whose name {why}\n  help: rename it, or list it in .gitignore if it is not an input")]
    Unusable {
        /// The argument.
        arg: String,
        /// The path, escaped.
        path: String,
        /// What is wrong with the name.
        why: &'static str,
    },
}

impl TreeHashError {
    /// True for mistakes in the arguments (exit 2), false for I/O failures.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TreeHashError::NoMatch(_)
                | TreeHashError::Outside { .. }
                | TreeHashError::BadGlob { .. }
                | TreeHashError::NotUtf8(_)
        )
    }
}

/// Hashes the files `args` name below `base` (see the module docs).
pub fn hash_paths(base: &Path, args: &[String]) -> Result<TreeHash, TreeHashError> {
    let mut scan: Option<ProjectScan> = None;
    // Each file with its stat when it has one (a literal argument, a
    // symlink): a walked regular file is not stat'ed at all, only opened
    // and read to its end (one `open` + `read` + `close`).
    let mut wanted: Vec<(RelPath, Option<Meta>)> = Vec::new();
    for arg in args {
        let mut any = false;
        if arg.contains(['*', '?', '[', '{']) {
            let glob = glob(base, arg)?;
            if scan.is_none() {
                scan = Some(ProjectScan::list(base).map_err(TreeHashError::Walk)?);
            }
            let scan = scan.as_ref().expect("walked");
            if let Some(u) = scan
                .unusable()
                .iter()
                .find(|u| !u.dir && glob.is_match(u.as_path()))
            {
                return Err(unusable(arg, None, u));
            }
            for (f, meta) in scan.files_with_meta() {
                if glob.is_match(f.as_str()) {
                    wanted.push((f.clone(), meta));
                    any = true;
                }
            }
        } else {
            let rel = literal(base, arg)?;
            let abs = rel.as_ref().map_or(base.to_path_buf(), |r| r.to_path(base));
            // The base itself may be reached through a symlink (`-C link`).
            let stat = match rel {
                None => std::fs::metadata,
                Some(_) => std::fs::symlink_metadata,
            };
            let md = match stat(&abs) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(TreeHashError::NoMatch(arg.clone()))
                }
                Err(source) => return Err(TreeHashError::Io { path: abs, source }),
            };
            if md.is_dir() {
                let below = ProjectScan::list(&abs).map_err(TreeHashError::Walk)?;
                if let Some(u) = below.unusable().first() {
                    return Err(unusable(arg, rel.as_ref(), u));
                }
                for (f, meta) in below.files_with_meta() {
                    // Both parts are normalized, so their join is too.
                    let p = match &rel {
                        Some(r) => RelPath::trusted(format!("{r}/{f}")),
                        None => f.clone(),
                    };
                    wanted.push((p, meta));
                    any = true;
                }
            } else if let Some(r) = rel {
                wanted.push((r, Some(Meta::of(&md))));
                any = true;
            }
        }
        if !any {
            return Err(TreeHashError::NoMatch(arg.clone()));
        }
    }
    wanted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    // A large file is hashed by every core (blake3's rayon mode, as b3sum
    // does), nested in this loop over the files. A few files (a lockfile
    // for a CI cache key) are hashed on this thread: starting the pool's
    // threads would cost more than hashing them.
    let parallel = wanted.len() >= crate::par::MIN_ITEMS;
    let hashed: Result<Vec<HashedFile>, TreeHashError> =
        crate::par::map(&wanted, parallel, |(path, meta)| {
            hash_one(base, path.clone(), *meta)
        });
    let mut files = hashed?;
    files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(TreeHash {
        digest: combine(&files),
        files,
    })
}

/// The error for `arg` covering `u`, found below `rel` (`None`: the base).
fn unusable(arg: &str, rel: Option<&RelPath>, u: &crate::walk::Unusable) -> TreeHashError {
    TreeHashError::Unusable {
        arg: arg.to_owned(),
        path: match rel {
            Some(r) => format!("{r}/{}", u.display()),
            None => u.display(),
        },
        why: u.why(),
    }
}

/// A literal argument as a path relative to `base`; `None` for `base` itself.
fn literal(base: &Path, arg: &str) -> Result<Option<RelPath>, TreeHashError> {
    let outside = || TreeHashError::Outside {
        arg: arg.to_owned(),
        base: base.to_path_buf(),
    };
    let text = if Path::new(arg).is_absolute() {
        let rest = Path::new(arg).strip_prefix(base).map_err(|_| outside())?;
        match rest.to_str() {
            Some(s) => s.to_owned(),
            None => return Err(TreeHashError::NotUtf8(arg.to_owned())),
        }
    } else {
        arg.to_owned()
    };
    match RelPath::normalize(&text) {
        Ok(p) => Ok(Some(p)),
        Err(crate::relpath::RelPathError::Empty) => Ok(None),
        Err(_) => Err(outside()),
    }
}

fn glob(base: &Path, arg: &str) -> Result<globset::GlobMatcher, TreeHashError> {
    if arg.starts_with('/') || arg.split('/').any(|c| c == "..") {
        return Err(TreeHashError::Outside {
            arg: arg.to_owned(),
            base: base.to_path_buf(),
        });
    }
    let cleaned: Vec<&str> = arg
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    GlobBuilder::new(&cleaned.join("/"))
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| TreeHashError::BadGlob {
            arg: arg.to_owned(),
            message: e.kind().to_string(),
        })
}

/// Hashes `path`, whose stat (without following links) is `meta` when the
/// caller has it; without it, `path` is a regular file by its directory's
/// word.
fn hash_one(base: &Path, path: RelPath, meta: Option<Meta>) -> Result<HashedFile, TreeHashError> {
    let abs = path.to_path(base);
    let io = |source| TreeHashError::Io {
        path: abs.clone(),
        source,
    };
    let Some(meta) = meta else {
        let digest = hash_file_unsized(&abs).map_err(io)?.0;
        return Ok(HashedFile {
            path,
            kind: Kind::File,
            digest,
        });
    };
    let (kind, digest) = if meta.symlink {
        let target = std::fs::read_link(&abs).map_err(io)?;
        let text = target
            .to_str()
            .ok_or_else(|| TreeHashError::NotUtf8(target.display().to_string()))?;
        (Kind::Symlink, Digest::of(text.as_bytes()))
    } else {
        (
            Kind::File,
            hash_file_len(&abs, meta.stamp.size).map_err(io)?.0,
        )
    };
    Ok(HashedFile { path, kind, digest })
}

/// The encoding of the module docs.
fn combine(files: &[HashedFile]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    for f in files {
        let p = f.path.as_str().as_bytes();
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
        h.update(match f.kind {
            Kind::File => b"F",
            Kind::Symlink => b"L",
        });
        h.update(&f.digest.0);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the encoding: changing it changes every CI cache key.
    #[test]
    fn encoding_is_pinned() {
        let files = vec![
            HashedFile {
                path: RelPath::new("a.txt").unwrap(),
                kind: Kind::File,
                digest: Digest::of(b"alpha\n"),
            },
            HashedFile {
                path: RelPath::new("src/link").unwrap(),
                kind: Kind::Symlink,
                digest: Digest::of(b"../a.txt"),
            },
        ];
        let mut h = blake3::Hasher::new_derive_key("relocache tree hash v1");
        h.update(&5u64.to_le_bytes());
        h.update(b"a.txt");
        h.update(b"F");
        h.update(blake3::hash(b"alpha\n").as_bytes());
        h.update(&8u64.to_le_bytes());
        h.update(b"src/link");
        h.update(b"L");
        h.update(blake3::hash(b"../a.txt").as_bytes());
        assert_eq!(combine(&files), Digest::from(h.finalize()));
        assert_ne!(combine(&files[..1]), combine(&files));
    }

    #[test]
    fn large_files_hashed_one_at_a_time_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; crate::file_hash::RAYON_MIN as usize + 1];
        let contents: [(&str, &[u8]); 4] = [
            ("a.txt", b"a"),
            ("b.bin", &big),
            ("c.txt", b"c"),
            ("d.bin", &big[1..]),
        ];
        for (name, bytes) in contents {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let tree = hash_paths(dir.path(), &["*".to_owned()]).unwrap();
        let names: Vec<&str> = tree.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.bin", "c.txt", "d.bin"]);
        let want: Vec<HashedFile> = contents
            .iter()
            .map(|(name, bytes)| HashedFile {
                path: RelPath::new(name).unwrap(),
                kind: Kind::File,
                digest: Digest::of(bytes),
            })
            .collect();
        assert_eq!(tree.digest, combine(&want));
    }

    #[test]
    fn literal_paths_stay_inside_the_base() {
        let base = Path::new("/work/proj");
        assert_eq!(
            literal(base, "./src//a.c").unwrap().unwrap().as_str(),
            "src/a.c"
        );
        assert_eq!(
            literal(base, "/work/proj/src/a.c")
                .unwrap()
                .unwrap()
                .as_str(),
            "src/a.c"
        );
        assert!(literal(base, ".").unwrap().is_none());
        assert!(literal(base, "../other").is_err());
        assert!(literal(base, "/work/other/a.c").is_err());
        assert!(glob(base, "../*.c").is_err());
        assert!(glob(base, "/work/proj/*.c").is_err());
    }
}
