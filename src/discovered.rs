//! Depfile-discovered inputs: the files a command says it read (a
//! Make-syntax depfile, [`crate::depfile`]), each named as a depot may store
//! it ([`DiscoveredPath`]) with its content digest ([`DiscoveredInput`]).
//! This module owns the naming rule — a prerequisite inside the project
//! becomes a [`RelPath`] whatever spelling of the root it used, one outside
//! stays absolute, one inside a depot is refused — and nothing else: it
//! never reads a file (the engine hashes them) nor touches a depot.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Key};
use crate::key::Rooted;
use crate::relpath::{RelPath, RelPathError};

/// A discovered input's name: project-relative; relative to the project
/// root but outside it (`../lib/x.h`, a sibling directory the command
/// reached by a relative path); or absolute outside the project (a system
/// header). Stored as one string: a [`RelPath`] never starts with `/` or
/// `..`, a beside path always starts with `../`, an outside path with `/`.
/// Outside paths name the host, not the project, so they are the one kind
/// of absolute path a depot may hold (and never make an entry
/// non-relocatable). A beside path is read from wherever the project now
/// is: another checkout's `../lib/x.h` is that checkout's sibling, never
/// the first one's (an absolute name would let the second checkout hit on
/// the first one's header).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DiscoveredPath {
    /// A file of the project.
    Project(RelPath),
    /// A file outside the project reached by a relative path: one or more
    /// `..` components, then normal ones (at least one).
    Beside(String),
    /// A file outside the project: absolute, normalized (no `.`, `..` or
    /// empty component).
    Outside(String),
}

impl DiscoveredPath {
    /// The stored spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Project(p) => p.as_str(),
            Self::Beside(s) | Self::Outside(s) => s,
        }
    }

    /// Parses a stored spelling, refusing anything not normalized.
    pub fn parse(s: &str) -> Result<DiscoveredPath, RelPathError> {
        if s.starts_with("../") {
            let rest = s.trim_start_matches("../");
            let normal = !rest.is_empty()
                && !s.contains('\0')
                && rest
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            return if normal {
                Ok(Self::Beside(s.to_owned()))
            } else {
                Err(RelPathError::NotNormalized(s.to_owned()))
            };
        }
        match s.strip_prefix('/') {
            Some(rest) => {
                let normal = !rest.is_empty()
                    && !s.contains('\0')
                    && rest
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != "..");
                if normal {
                    Ok(Self::Outside(s.to_owned()))
                } else {
                    Err(RelPathError::NotNormalized(s.to_owned()))
                }
            }
            None => RelPath::new(s).map(Self::Project),
        }
    }
}

/// Ordered by the stored spelling (byte order), the order path sets and
/// keys use.
impl Ord for DiscoveredPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for DiscoveredPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TryFrom<String> for DiscoveredPath {
    type Error = RelPathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DiscoveredPath::parse(&s)
    }
}

impl From<DiscoveredPath> for String {
    fn from(p: DiscoveredPath) -> String {
        match p {
            DiscoveredPath::Project(p) => p.as_str().to_owned(),
            DiscoveredPath::Beside(s) | DiscoveredPath::Outside(s) => s,
        }
    }
}

impl fmt::Display for DiscoveredPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One discovered input of an entry: its name and the blake3 of its content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DiscoveredInput {
    /// The file.
    pub path: DiscoveredPath,
    /// blake3 of its content (symlinks followed: what the command read).
    pub digest: Digest,
}

/// The key an execution with these discovered inputs (sorted by path) is
/// stored under: [`crate::key::with_discovered`] of its base key.
pub fn key_with(base: &Key, inputs: &[DiscoveredInput]) -> Key {
    crate::key::with_discovered(base, inputs.iter().map(|d| (d.path.as_str(), &d.digest)))
}

/// Why a prerequisite cannot be a discovered input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// It lies inside a depot: a cache's files are never inputs.
    #[error("`{0}` lies inside the depot; a command must not read the cache\n  help: fix the command so it reads no depot file")]
    InDepot(String),
    /// The project root itself, or a name that cannot be normalized.
    #[error("`{0}` cannot be normalized to a file path")]
    Unusable(String),
}

/// The name a depfile prerequisite `prereq` gets. Relative ones are taken
/// relative to the project root (the command's working directory); every
/// path is normalized lexically (`a/../b` is `b`); an absolute path inside
/// the project, in any spelling `rooted` knows (as given, canonical,
/// `$PWD`), becomes project-relative. `project` is the root as given.
pub fn name(prereq: &str, project: &str, rooted: &Rooted) -> Result<DiscoveredPath, NameError> {
    let joined = if prereq.starts_with('/') {
        prereq.to_owned()
    } else {
        format!("{}/{prereq}", project.trim_end_matches('/'))
    };
    let abs = normalize_abs(&joined).ok_or_else(|| NameError::Unusable(prereq.to_owned()))?;
    match rooted.locate(&abs) {
        Some(("@depot", _)) => Err(NameError::InDepot(prereq.to_owned())),
        Some((_, "")) => Err(NameError::Unusable(prereq.to_owned())),
        Some((_, rest)) => RelPath::new(rest)
            .map(DiscoveredPath::Project)
            .map_err(|_| NameError::Unusable(prereq.to_owned())),
        None => Ok(DiscoveredPath::Outside(abs)),
    }
}

/// The beside name of normalized absolute `abs` outside the project whose
/// root's real path is `root_real`: `..` up to their common ancestor, then
/// down. `None` when they share only `/` (then the absolute name is the
/// stable one: a path under another top directory is no sibling).
pub fn beside(abs: &str, root_real: &str) -> Option<DiscoveredPath> {
    let a: Vec<&str> = abs.split('/').filter(|c| !c.is_empty()).collect();
    let r: Vec<&str> = root_real.split('/').filter(|c| !c.is_empty()).collect();
    let common = a.iter().zip(&r).take_while(|(x, y)| x == y).count();
    if common == 0 || common >= a.len() || common >= r.len() {
        return None;
    }
    let ups = "../".repeat(r.len() - common);
    DiscoveredPath::parse(&format!("{ups}{}", a[common..].join("/"))).ok()
}

/// `/`-joined components of absolute `p` with `.` and empty ones dropped
/// and `..` applied (never above `/`); `None` for a NUL byte or the root.
fn normalize_abs(p: &str) -> Option<String> {
    if p.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rooted() -> Rooted {
        Rooted::new(Path::new("/w/proj"), Path::new("/w/proj/.cache"))
    }

    #[test]
    fn beside_names_climb_to_the_common_ancestor_and_parse_back() {
        let b = |abs: &str, root: &str| beside(abs, root).map(|d| d.to_string());
        assert_eq!(b("/w/lib/z.h", "/w/proj").as_deref(), Some("../lib/z.h"));
        assert_eq!(
            b("/w/a/b/c.h", "/w/x/y/proj").as_deref(),
            Some("../../../a/b/c.h")
        );
        assert_eq!(b("/usr/include/stdio.h", "/w/proj"), None, "only / shared");
        assert_eq!(
            b("/w/proj2/x.h", "/w/proj").as_deref(),
            Some("../proj2/x.h")
        );
        assert_eq!(b("/w", "/w/proj"), None, "an ancestor is no file beside");
        for ok in ["../x.h", "../../a/b.h"] {
            assert!(matches!(
                DiscoveredPath::parse(ok),
                Ok(DiscoveredPath::Beside(_))
            ));
        }
        for bad in ["../", "../..", "../a/../b", "../a//b", "../a/./b", ".."] {
            assert!(DiscoveredPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_project_relative_or_absolute_outside() {
        let r = rooted();
        let n = |p: &str| name(p, "/w/proj", &r).map(|d| d.to_string());
        assert_eq!(n("src/x.h").unwrap(), "src/x.h");
        assert_eq!(n("./src/../inc/y.h").unwrap(), "inc/y.h");
        assert_eq!(n("/w/proj/src/x.h").unwrap(), "src/x.h");
        assert_eq!(n("/w/other/../proj/a.h").unwrap(), "a.h");
        assert_eq!(n("../proj/a.h").unwrap(), "a.h");
        assert_eq!(n("../lib/z.h").unwrap(), "/w/lib/z.h");
        assert_eq!(
            n("/usr/include/../include/stdio.h").unwrap(),
            "/usr/include/stdio.h"
        );
        assert_eq!(n("/w/project/x.h").unwrap(), "/w/project/x.h");
        assert!(matches!(
            name(".cache/objects-v1/ab/cd", "/w/proj", &r),
            Err(NameError::InDepot(_))
        ));
        assert!(matches!(
            name("/w/proj", "/w/proj", &r),
            Err(NameError::Unusable(_))
        ));
    }

    #[test]
    fn stored_spellings_round_trip_and_refuse_unnormalized_ones() {
        for s in ["src/x.h", "/usr/include/stdio.h"] {
            assert_eq!(DiscoveredPath::parse(s).unwrap().as_str(), s);
        }
        for s in ["/usr/../etc/x", "/", "//x", "a/../b", "/a/./b", ""] {
            assert!(DiscoveredPath::parse(s).is_err(), "{s}");
        }
    }
}
