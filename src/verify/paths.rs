//! Finding absolute or escaping paths in stored TOML values, and checking
//! sharded file names. Pure functions over text.

use super::ProblemKind;
use crate::digest::Digest;
use crate::relpath::{RelPath, RelPathError};

/// `dir/ab/<hex><suffix>` with a valid digest in the right shard.
pub(super) fn sharded_name(parts: &[String], suffix: &str) -> Option<Digest> {
    let [_, shard, name] = parts else {
        return None;
    };
    crate::depot::layout::sharded_digest(shard, name, suffix)
}

/// A path problem found in a stored TOML value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathFlaw {
    /// An absolute path, with the text found.
    Absolute(String),
    /// A path with `..` climbing out of its root.
    Escapes(String),
    /// A path field that is not normalized.
    Unnormalized(String),
}

impl PathFlaw {
    pub(super) fn kind(&self) -> ProblemKind {
        match self {
            PathFlaw::Absolute(_) => ProblemKind::AbsolutePath,
            PathFlaw::Escapes(_) => ProblemKind::EscapingPath,
            PathFlaw::Unnormalized(_) => ProblemKind::UnnormalizedPath,
        }
    }

    pub(super) fn detail(&self, field: &str) -> String {
        match self {
            PathFlaw::Absolute(s) => format!(
                "field `{field}` names the absolute path `{s}`, which does not exist once the depot moves\n  help: {}",
                ProblemKind::AbsolutePath.help()
            ),
            PathFlaw::Escapes(s) => format!(
                "field `{field}` holds `{s}`, which climbs out of its root with `..`\n  help: {}",
                ProblemKind::EscapingPath.help()
            ),
            PathFlaw::Unnormalized(s) => format!(
                "field `{field}` holds `{s}`, which is not a normalized relative path\n  help: {}",
                ProblemKind::UnnormalizedPath.help()
            ),
        }
    }
}

/// Every absolute or escaping path in a stored TOML value, with its field.
/// Fields named `path` must be normalized relative paths; symlink output
/// targets are judged against their directory elsewhere; every other string
/// must not contain an absolute path or a known root.
pub(super) fn scan_value(
    v: &toml::Value,
    field: &str,
    roots: &[String],
) -> Vec<(String, PathFlaw)> {
    let mut out = Vec::new();
    match v {
        toml::Value::String(s) => {
            let name = field.rsplit('.').next().unwrap_or(field);
            if is_discovered_path(field) {
                out.extend(discovered_flaw(s, roots).map(|f| (field.to_owned(), f)));
            } else if name == "path" {
                match RelPath::new(s) {
                    Ok(_) => {}
                    Err(RelPathError::Absolute(_)) => {
                        out.push((field.to_owned(), PathFlaw::Absolute(s.clone())))
                    }
                    Err(RelPathError::Escapes(_)) => {
                        out.push((field.to_owned(), PathFlaw::Escapes(s.clone())))
                    }
                    Err(_) => out.push((field.to_owned(), PathFlaw::Unnormalized(s.clone()))),
                }
            } else if !(name == "target" && field.starts_with("outputs[")) {
                if let Some(found) = absolute_in(s, roots) {
                    out.push((field.to_owned(), PathFlaw::Absolute(found)));
                }
            }
        }
        toml::Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                out.extend(scan_value(item, &format!("{field}[{i}]"), roots));
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t {
                let f = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                out.extend(scan_value(item, &f, roots));
            }
        }
        _ => {}
    }
    out
}

/// A discovered input's path in an entry (`discovered[i].path`) or a
/// variants record (`sets[i].paths[j]`): project-relative, or absolute
/// outside the project. Those name the host, not the project (a system
/// header), so they are no problem unless they hold a root of this depot's
/// project or the depot itself.
fn is_discovered_path(field: &str) -> bool {
    (field.starts_with("discovered[") && field.ends_with(".path"))
        || (field.starts_with("sets[") && field.contains(".paths["))
}

/// What is wrong with discovered path `s`, if anything (see
/// [`is_discovered_path`]).
pub(super) fn discovered_flaw(s: &str, roots: &[String]) -> Option<PathFlaw> {
    use crate::discovered::DiscoveredPath;
    match DiscoveredPath::parse(s) {
        Ok(DiscoveredPath::Project(_) | DiscoveredPath::Beside(_)) => None,
        Ok(DiscoveredPath::Outside(abs)) => roots
            .iter()
            .any(|r| abs == *r || abs.starts_with(&format!("{}/", r.trim_end_matches('/'))))
            .then_some(PathFlaw::Absolute(abs)),
        Err(RelPathError::Escapes(_)) => Some(PathFlaw::Escapes(s.to_owned())),
        Err(_) => Some(PathFlaw::Unnormalized(s.to_owned())),
    }
}

/// The absolute path in `s`, if any: one of the known `roots` anywhere, or a
/// word that starts with `/`, `~/` or a drive letter.
pub(super) fn absolute_in(s: &str, roots: &[String]) -> Option<String> {
    if let Some(r) = roots.iter().find(|r| s.contains(r.as_str())) {
        return Some(r.clone());
    }
    let separators = |c: char| c.is_whitespace() || "=()'\"`,;<>[]{}".contains(c);
    s.split(separators).find_map(|w| {
        let b = w.as_bytes();
        let unix = b.len() > 1
            && b[0] == b'/'
            && (b[1].is_ascii_alphanumeric() || b"._-~@".contains(&b[1]));
        let home = w.starts_with("~/");
        let drive = b.len() > 2
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'/' || b[2] == b'\\');
        (unix || home || drive).then(|| w.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_are_found_in_words_but_not_in_prose() {
        let none: [String; 0] = [];
        for clean in [
            "embeds the absolute project root (@project) at byte 12",
            "2026-11-21T00:00:00Z",
            "symlink points outside the project",
            "a/b and c/d",
            "10G",
            "/",
        ] {
            assert_eq!(absolute_in(clean, &none), None, "{clean}");
        }
        assert_eq!(
            absolute_in("built in /home/u/proj today", &none).as_deref(),
            Some("/home/u/proj")
        );
        assert_eq!(
            absolute_in("-ffile-prefix-map=/src/x=.", &none).as_deref(),
            Some("/src/x")
        );
        assert_eq!(absolute_in("C:\\work", &none).as_deref(), Some("C:\\work"));
        assert_eq!(absolute_in("~/cache", &none).as_deref(), Some("~/cache"));
        let roots = ["/tmp/depot".to_owned()];
        assert_eq!(
            absolute_in("x@/tmp/depot/y", &roots).as_deref(),
            Some("/tmp/depot")
        );
    }

    #[test]
    fn path_fields_must_be_normalized_relative_paths() {
        let v: toml::Value = toml::from_str(
            r#"
            detail = "fine"
            [[outputs]]
            path = "/abs/out.o"
            target = "/symlink/targets/are/judged/elsewhere"
            [[outputs]]
            path = "../up"
            [[outputs]]
            path = "a//b"
            "#,
        )
        .unwrap();
        let found = scan_value(&v, "", &[]);
        assert_eq!(
            found,
            vec![
                (
                    "outputs[0].path".to_owned(),
                    PathFlaw::Absolute("/abs/out.o".into())
                ),
                (
                    "outputs[1].path".to_owned(),
                    PathFlaw::Escapes("../up".into())
                ),
                (
                    "outputs[2].path".to_owned(),
                    PathFlaw::Unnormalized("a//b".into())
                ),
            ]
        );
    }

    #[test]
    fn sharded_names_must_match_their_shard() {
        let d = Digest::of(b"x").to_hex();
        let ok = [
            "entries-v2".to_owned(),
            d[..2].to_owned(),
            format!("{d}.toml"),
        ];
        assert!(sharded_name(&ok, ".toml").is_some());
        let wrong = [
            "entries-v2".to_owned(),
            "zz".to_owned(),
            format!("{d}.toml"),
        ];
        assert!(sharded_name(&wrong, ".toml").is_none());
        let stray = [
            "entries-v2".to_owned(),
            d[..2].to_owned(),
            "notes.txt".into(),
        ];
        assert!(sharded_name(&stray, ".toml").is_none());
    }
}
