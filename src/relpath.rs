//! [`RelPath`]: a normalized, `/`-separated path relative to a root.
//!
//! This is the only path type that is ever serialized into the depot, so a depot
//! cannot name an absolute path by construction. It must never hold `..`, `.`,
//! an empty component, a leading `/` or a NUL byte.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// A normalized relative path such as `build/lib.o`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RelPath(String);

/// Why a string is not a valid [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    /// The path is empty or only `.`.
    #[error("the path is empty")]
    Empty,
    /// The path starts at the filesystem root (or a drive).
    #[error("`{0}` is absolute; write it relative to the project root")]
    Absolute(String),
    /// The path climbs out of its root with `..`.
    #[error("`{0}` escapes the project root through `..`")]
    Escapes(String),
    /// The path is not normalized (contains `.`, `..`, `//` or `\`) where a normalized one is required.
    #[error("`{0}` is not a normalized relative path")]
    NotNormalized(String),
    /// The path is not valid UTF-8.
    #[error("`{0}` is not valid UTF-8")]
    NotUtf8(String),
}

impl RelPath {
    /// Accepts only an already-normalized path (what the depot stores).
    pub fn new(s: &str) -> Result<RelPath, RelPathError> {
        if s.is_empty() {
            return Err(RelPathError::Empty);
        }
        if s.starts_with('/') || looks_like_drive(s) {
            return Err(RelPathError::Absolute(s.to_owned()));
        }
        let bad = s.contains('\\')
            || s.contains('\0')
            || s.split('/').any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            if s.split('/').any(|c| c == "..") {
                return Err(RelPathError::Escapes(s.to_owned()));
            }
            return Err(RelPathError::NotNormalized(s.to_owned()));
        }
        Ok(RelPath(s.to_owned()))
    }

    /// Lexically normalizes a user-written path: drops `.` and empty components,
    /// resolves `a/../b`, and rejects absolute paths and paths that escape the root.
    pub fn normalize(s: &str) -> Result<RelPath, RelPathError> {
        if s.starts_with('/') || looks_like_drive(s) {
            return Err(RelPathError::Absolute(s.to_owned()));
        }
        if s.contains('\0') {
            return Err(RelPathError::NotNormalized(s.to_owned()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(RelPathError::Escapes(s.to_owned()));
                    }
                }
                c => parts.push(c),
            }
        }
        if parts.is_empty() {
            return Err(RelPathError::Empty);
        }
        Ok(RelPath(parts.join("/")))
    }

    /// Converts a relative filesystem path (as produced by stripping a root prefix).
    pub fn from_path(p: &Path) -> Result<RelPath, RelPathError> {
        let mut parts = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(os) => match os.to_str() {
                    Some(s) => parts.push(s),
                    None => return Err(RelPathError::NotUtf8(p.display().to_string())),
                },
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(RelPathError::Escapes(p.display().to_string()));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(RelPathError::Absolute(p.display().to_string()));
                }
            }
        }
        if parts.is_empty() {
            return Err(RelPathError::Empty);
        }
        RelPath::new(&parts.join("/"))
    }

    /// Wraps text already known to be normalized (a walker's output).
    pub(crate) fn trusted(s: String) -> RelPath {
        debug_assert!(RelPath::new(&s).is_ok(), "{s}");
        RelPath(s)
    }

    /// The `/`-separated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below `root` on this machine (one join: on Unix the
    /// `/`-separated text is already a native relative path).
    pub fn to_path(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// `self` with one more component.
    pub fn join(&self, name: &str) -> Result<RelPath, RelPathError> {
        RelPath::new(&format!("{}/{}", self.0, name))
    }

    /// True when `self` is `dir` or lies below it (whole components only).
    pub fn is_within(&self, dir: &RelPath) -> bool {
        self.0 == dir.0
            || (self.0.len() > dir.0.len()
                && self.0.starts_with(&dir.0)
                && self.0.as_bytes()[dir.0.len()] == b'/')
    }

    /// Each directory above `self`, outermost first, then `self`: the paths
    /// `self` is within (`a`, `a/b`, `a/b/c` for `a/b/c`).
    pub fn self_and_ancestors(&self) -> impl Iterator<Item = &str> {
        self_and_ancestors_of(&self.0)
    }

    /// The parent path, or `None` for a top-level name.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rfind('/').map(|i| RelPath(self.0[..i].to_owned()))
    }
}

/// [`RelPath::self_and_ancestors`] of a normalized path held as text.
pub fn self_and_ancestors_of(s: &str) -> impl Iterator<Item = &str> {
    s.match_indices('/')
        .map(move |(end, _)| &s[..end])
        .chain(std::iter::once(s))
}

/// The positions in `sorted` (in path order, by `path`) of the entries whose
/// path starts with `prefix`: with a trailing `/`, everything below a
/// directory; empty, everything.
pub fn prefix_range<T>(
    sorted: &[T],
    prefix: &str,
    path: impl Fn(&T) -> &str,
) -> std::ops::Range<usize> {
    let lo = sorted.partition_point(|e| path(e) < prefix);
    lo..lo + sorted[lo..].partition_point(|e| path(e).starts_with(prefix))
}

/// The positions in `sorted` (in path order, by `path`) of the entries whose
/// path is exactly `p`.
pub fn equal_range<T>(sorted: &[T], p: &str, path: impl Fn(&T) -> &str) -> std::ops::Range<usize> {
    let lo = sorted.partition_point(|e| path(e) < p);
    lo..lo + sorted[lo..].partition_point(|e| path(e) == p)
}

fn looks_like_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Maps keyed by `RelPath` can be searched with a `&str` (same hash, same order).
impl std::borrow::Borrow<str> for RelPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_everything_but_normalized_relative_paths() {
        assert!(RelPath::new("a/b.c").is_ok());
        for bad in [
            "", "/a", "a/../b", "./a", "a//b", "a/", "..", "C:/x", "a\\b",
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn a_path_is_within_itself_and_each_directory_above_it() {
        let p = RelPath::new("a/b/c.o").unwrap();
        let all: Vec<&str> = p.self_and_ancestors().collect();
        assert_eq!(all, ["a", "a/b", "a/b/c.o"]);
        for a in &all {
            assert!(p.is_within(&RelPath::new(a).unwrap()));
        }
        let top = RelPath::new("x").unwrap();
        assert_eq!(top.self_and_ancestors().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn ranges_of_sorted_paths() {
        let paths = ["a", "a-b", "a/b", "a/c/d", "ab", "b"];
        fn by<'b>(s: &'b &str) -> &'b str {
            s
        }
        assert_eq!(prefix_range(&paths, "a/", by), 2..4);
        assert_eq!(prefix_range(&paths, "", by), 0..6);
        assert_eq!(prefix_range(&paths, "c/", by), 6..6);
        assert_eq!(equal_range(&paths, "a", by), 0..1);
        assert_eq!(equal_range(&paths, "a/c", by), 3..3);
    }

    #[test]
    fn normalize_resolves_dots_but_never_escapes() {
        assert_eq!(RelPath::normalize("./a//b/../c").unwrap().as_str(), "a/c");
        assert!(matches!(
            RelPath::normalize("a/../../x"),
            Err(RelPathError::Escapes(_))
        ));
        assert!(matches!(
            RelPath::normalize("/etc/passwd"),
            Err(RelPathError::Absolute(_))
        ));
        assert_eq!(RelPath::normalize("."), Err(RelPathError::Empty));
    }

    #[test]
    fn is_within_matches_whole_components() {
        let dir = RelPath::new("build").unwrap();
        assert!(RelPath::new("build/a.o").unwrap().is_within(&dir));
        assert!(RelPath::new("build").unwrap().is_within(&dir));
        assert!(!RelPath::new("buildx/a.o").unwrap().is_within(&dir));
    }
}
