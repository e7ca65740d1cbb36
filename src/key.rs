//! Action keys: the canonical encoding of everything a target's execution
//! depends on, hashed with `blake3::derive_key("relocache action key v1", …)`.
//!
//! # Canonical encoding (schema 2)
//!
//! The encoding is a sequence of *fields*. A field is its tag (UTF-8), then its
//! value, each prefixed by its length as a little-endian `u64`:
//!
//! ```text
//! field(tag, value) = u64le(len(tag)) tag u64le(len(value)) value
//! ```
//!
//! Lists are written as a `*.count` field holding `u64le(n)` followed by the
//! items' fields in order. The fields, in this fixed order:
//!
//! 1. `schema` = `u32le(2)`; `salt` = the `[project] salt` bytes
//! 2. `command.shell` = the `run` string, or `command.argv` = count + one
//!    `arg` field per argument; *rooted* (see below)
//! 3. `env.count`, then per variable sorted by name: `env.name`, and
//!    `env.set` = the value (rooted) or `env.unset` = empty
//! 4. `version` = `i64le`
//! 5. `tools.count`, then per tool sorted by name: `tool.name`, `tool.digest`
//!    = the content digest of the executable that runs (a launcher resolved,
//!    see [`crate::tools`]), or with a `check`, `derive_key("relocache tool
//!    check v1", content digest ‖ u64le(len(check)) check ‖ its stdout)`
//! 6. `inputs.count`, then per input sorted by path: `input.path` and one of
//!    `input.file` = digest (32 bytes) + `u8` executable bit,
//!    `input.symlink` = the link text, followed, when the link resolves
//!    inside the project, by `input.resolved` = what it resolves to
//!    ([`Resolved::encode`](crate::file_state::Resolved::encode)),
//!    `input.dir` = empty (a directory below a directory input),
//!    `input.untracked` = `u64le(size)` + `i128le(mtime_ns)`
//! 7. `deps.count`, then per dep sorted by name: `dep.name`, `dep.outputs` =
//!    the dep's [`outputs digest`](crate::depot::entries::Entry::outputs_digest),
//!    or, when some of its output symlinks resolve inside the project, that
//!    digest with what they resolve to
//!    ([`Follow::dep_digest`](crate::follow)
//! 8. `outputs.count`, then `output` per declared output path, in manifest order
//! 9. `platform.os`, `platform.arch`
//!
//! # Rooted text
//!
//! The command, its arguments and env values are *rooted* before they are
//! encoded ([`Rooted::apply`]), in two steps:
//!
//! 1. **Escape.** Every maximal run of `@` immediately followed by `project`,
//!    `depot` or `0x` gets one more `@`: a literal `@project/x` becomes
//!    `@@project/x`, `@@depot` becomes `@@@depot`. Any other `@` (`user@host`,
//!    `"$@"`) is left alone, so text that never spells a marker reads as
//!    written.
//! 2. **Replace.** Every occurrence of an absolute project or depot root (in
//!    each of its spellings: as given, symlink-resolved, and as `$PWD` names
//!    it), escaped the same way, on whole path components only (preceded by
//!    neither `/` nor a path character, followed by `/` or a non-path
//!    character; path characters are alphanumerics and `._-+~@%#`), becomes
//!    `@project` / `@depot`; longer roots first.
//!
//! This is injective up to the spelling of a root. A root never starts or ends
//! next to an `@` (it is bounded by non-path characters), so in the result a
//! run of exactly one `@` followed by `project`/`depot` is a marker, and a run
//! of `k >= 2` is `k - 1` literal `@`s: reading left to right, the original
//! text is recovered (a unit test decodes this way). So `V=@project/x` and
//! `V=$ROOT/x` can never share a key.
//!
//! An env value that is not UTF-8 ([`Rooted::apply_os`]) is its lossy text
//! rooted, then ` @0x` and the hex of all its bytes: a single `@` before `0x`
//! occurs in no rooted UTF-8 text, so such a value never shares a key with a
//! UTF-8 one, and the hex tells any two of them apart.
//!
//! # Discovered inputs
//!
//! A target with a `depfile` (ccache's direct mode) is looked up by the key
//! above, its *base key* `K`, but stored under a second key that adds what
//! its depfile named after it ran: its *path set* (the discovered paths,
//! sorted) with each file's content digest. With the same field encoding:
//!
//! ```text
//! K2 = derive_key("relocache discovered key v1",
//!        field("base", K) field("discovered.count", u64le(n))
//!        per path sorted: field("discovered.path", path) field("discovered.digest", digest))
//! ```
//!
//! A path is project-relative (`src/x.h`) or, outside the project, absolute
//! (`/usr/include/stdio.h`) ([`crate::discovered`]): the two never spell the
//! same text. A depot's variants record lists the path sets seen under `K`;
//! a lookup hashes each set's files as they are now and asks for that `K2`.
//! `with_discovered_is_pinned` pins one value.
//!
//! Absolute paths, mtimes (except untracked inputs), host and user names and
//! the time never enter a key. A unit test pins one known key so the encoding
//! cannot drift silently; change [`KEY_SCHEMA`] when it must change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Key};
use crate::file_state::FileState;
use crate::inputs::InputFile;
use crate::manifest::Command;
use crate::relpath::RelPath;

/// blake3 `derive_key` context for action keys.
pub const KEY_CONTEXT: &str = "relocache action key v1";
/// Version of the canonical encoding below.
pub const KEY_SCHEMA: u32 = 2;

/// Everything that identifies one execution of a target.
#[derive(Debug, Clone)]
pub struct KeyInputs<'a> {
    /// `[project] salt`.
    pub salt: &'a str,
    /// The command, already rooted (see [`Rooted::command`]).
    pub command: &'a Command,
    /// Env names to values (rooted); `None` when unset.
    pub env: &'a BTreeMap<String, Option<String>>,
    /// `version`.
    pub version: i64,
    /// Tool name → content digest.
    pub tools: &'a BTreeMap<String, Digest>,
    /// Inputs, sorted by path.
    pub inputs: &'a [InputFile],
    /// Dep name → outputs digest.
    pub deps: &'a BTreeMap<String, Digest>,
    /// Declared outputs.
    pub outputs: &'a [RelPath],
}

struct Enc(Vec<u8>);

impl Enc {
    fn field(&mut self, tag: &str, value: &[u8]) {
        self.0.extend_from_slice(&(tag.len() as u64).to_le_bytes());
        self.0.extend_from_slice(tag.as_bytes());
        self.0
            .extend_from_slice(&(value.len() as u64).to_le_bytes());
        self.0.extend_from_slice(value);
    }
    fn count(&mut self, tag: &str, n: usize) {
        self.field(tag, &(n as u64).to_le_bytes());
    }
}

/// The canonical bytes of `k`, as documented at the top of this module.
pub fn canonical_bytes(k: &KeyInputs<'_>) -> Vec<u8> {
    let size: usize = k.inputs.iter().map(|i| 96 + i.path.as_str().len()).sum();
    let mut e = Enc(Vec::with_capacity(256 + size));
    e.field("schema", &KEY_SCHEMA.to_le_bytes());
    e.field("salt", k.salt.as_bytes());
    match k.command {
        Command::Shell(s) => e.field("command.shell", s.as_bytes()),
        Command::Argv(argv) => {
            e.count("command.argv", argv.len());
            for a in argv {
                e.field("arg", a.as_bytes());
            }
        }
    }
    e.count("env.count", k.env.len());
    for (name, value) in k.env {
        e.field("env.name", name.as_bytes());
        match value {
            Some(v) => e.field("env.set", v.as_bytes()),
            None => e.field("env.unset", b""),
        }
    }
    e.field("version", &k.version.to_le_bytes());
    e.count("tools.count", k.tools.len());
    for (name, d) in k.tools {
        e.field("tool.name", name.as_bytes());
        e.field("tool.digest", &d.0);
    }
    e.count("inputs.count", k.inputs.len());
    for i in k.inputs {
        e.field("input.path", i.path.as_str().as_bytes());
        match &i.state {
            FileState::File {
                digest, executable, ..
            } => {
                let mut v = digest.0.to_vec();
                v.push(*executable as u8);
                e.field("input.file", &v);
            }
            FileState::Symlink { target, resolved } => {
                e.field("input.symlink", target.as_bytes());
                if let Some(r) = resolved {
                    e.field("input.resolved", &r.encode());
                }
            }
            FileState::Dir => e.field("input.dir", b""),
            FileState::Untracked { size, mtime_ns } => {
                let mut v = size.to_le_bytes().to_vec();
                v.extend_from_slice(&mtime_ns.to_le_bytes());
                e.field("input.untracked", &v);
            }
        }
    }
    e.count("deps.count", k.deps.len());
    for (name, d) in k.deps {
        e.field("dep.name", name.as_bytes());
        e.field("dep.outputs", &d.0);
    }
    e.count("outputs.count", k.outputs.len());
    for o in k.outputs {
        e.field("output", o.as_str().as_bytes());
    }
    e.field("platform.os", std::env::consts::OS.as_bytes());
    e.field("platform.arch", std::env::consts::ARCH.as_bytes());
    e.0
}

/// The action key of `k`.
pub fn compute(k: &KeyInputs<'_>) -> Key {
    Key(Digest(blake3::derive_key(KEY_CONTEXT, &canonical_bytes(k))))
}

/// blake3 `derive_key` context for the keys of executions with
/// depfile-discovered inputs (see "Discovered inputs" in the module docs).
pub const DISCOVERED_CONTEXT: &str = "relocache discovered key v1";

/// The key an execution of a target with a `depfile` is stored under: its
/// base key `base` (the action key above) with the files its depfile named
/// and their digests, sorted by path (see the module docs).
/// `discovered` is (path as stored, content digest) per file.
pub fn with_discovered<'a>(
    base: &Key,
    discovered: impl ExactSizeIterator<Item = (&'a str, &'a Digest)>,
) -> Key {
    let mut e = Enc(Vec::with_capacity(64 + discovered.len() * 128));
    e.field("base", &base.0 .0);
    e.count("discovered.count", discovered.len());
    for (path, digest) in discovered {
        e.field("discovered.path", path.as_bytes());
        e.field("discovered.digest", &digest.0);
    }
    Key(Digest(blake3::derive_key(DISCOVERED_CONTEXT, &e.0)))
}

/// How the shell spells `canonical` when the current directory was reached
/// through a symlink: `$PWD` names the current directory that way, and
/// users write it into flags (`-ffile-prefix-map=$PWD=.`). Only for a
/// `canonical` at, above or below the current directory.
pub fn logical_spelling(canonical: &Path) -> Option<PathBuf> {
    let pwd = PathBuf::from(std::env::var_os("PWD")?);
    if !pwd.is_absolute() {
        return None;
    }
    let here = std::fs::canonicalize(".").ok()?;
    if std::fs::canonicalize(&pwd).ok()? != here || pwd == here {
        return None;
    }
    // `$PWD` may end in `/`, and joining an empty path adds one: rebuild
    // the name from its components so it never ends in a separator.
    let pwd: PathBuf = pwd.components().collect();
    if let Ok(below) = canonical.strip_prefix(&here) {
        return Some(pwd.components().chain(below.components()).collect());
    }
    let above = here.strip_prefix(canonical).ok()?;
    let mut logical = pwd;
    for _ in above.components() {
        logical = logical.parent()?.to_path_buf();
    }
    // Only when the symlink lies above `canonical`: then `logical` names it.
    (std::fs::canonicalize(&logical).ok()? == canonical).then_some(logical)
}

/// Replaces absolute roots by placeholders, on whole path components only:
/// the match must start at a non-path character and be followed by `/` or a
/// non-path character, so `/src/app` never rewrites `/src/application`.
/// Literal markers in the text are escaped first, so the result is injective
/// (see "Rooted text" in the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Rooted {
    /// (absolute path text, placeholder), longest first.
    pairs: Vec<(String, &'static str)>,
}

impl Rooted {
    /// Placeholders for the project root and the depot root, in both the
    /// given and the canonical (symlink-resolved) spellings.
    pub fn new(project: &Path, depot: &Path) -> Rooted {
        let mut pairs: Vec<(String, &'static str)> = Vec::new();
        for (p, ph) in [(project, "@project"), (depot, "@depot")] {
            for s in spellings(p) {
                if !pairs.iter().any(|(q, _)| *q == s) {
                    pairs.push((s, ph));
                }
            }
        }
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Rooted { pairs }
    }

    /// The absolute forms being replaced, as needles for the relocatability scan.
    pub fn needles(&self) -> Vec<crate::reloc::Needle> {
        self.pairs
            .iter()
            .map(|(text, placeholder)| crate::reloc::Needle {
                text: text.clone(),
                placeholder,
            })
            .collect()
    }

    /// `s` with literal markers escaped, then every whole-component
    /// occurrence of a root replaced by its marker.
    pub fn apply(&self, s: &str) -> String {
        let mut out = escape_markers(s);
        for (root, ph) in &self.pairs {
            out = replace_components(&out, &escape_markers(root), ph);
        }
        out
    }

    /// [`Rooted::apply`] for an env value, which may not be UTF-8: then its
    /// lossy text, rooted, is followed by ` @0x` and the hex of its bytes,
    /// so no two values share a result (see the module docs).
    pub fn apply_os(&self, v: &std::ffi::OsStr) -> String {
        use std::os::unix::ffi::OsStrExt;
        if let Some(s) = v.to_str() {
            return self.apply(s);
        }
        let mut out = self.apply(&v.to_string_lossy());
        out.push_str(" @0x");
        for b in v.as_bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Which root `abs` (an absolute, normalized path) lies in, in any of
    /// its spellings, and the rest of the path below it (empty for the root
    /// itself): `("@project", "src/x.h")`. Longer roots first, so a depot
    /// inside the project is the depot. `None` outside both.
    pub fn locate<'s>(&self, abs: &'s str) -> Option<(&'static str, &'s str)> {
        self.pairs.iter().find_map(|(root, ph)| {
            let rest = abs.strip_prefix(root.as_str())?;
            if rest.is_empty() {
                Some((*ph, rest))
            } else {
                rest.strip_prefix('/').map(|r| (*ph, r))
            }
        })
    }

    /// The command with roots replaced in the shell line or every argument.
    pub fn command(&self, c: &Command) -> Command {
        match c {
            Command::Shell(s) => Command::Shell(self.apply(s)),
            Command::Argv(v) => Command::Argv(v.iter().map(|a| self.apply(a)).collect()),
        }
    }
}

/// The spellings of the absolute directory `p` that text may hold: as
/// given, as `$PWD` names it (see [`logical_spelling`]) and canonical;
/// without a trailing `/`, and never `/` alone.
fn spellings(p: &Path) -> Vec<String> {
    let mut forms = vec![p.to_path_buf()];
    if let Ok(c) = std::fs::canonicalize(p) {
        forms.extend(logical_spelling(&c));
        forms.push(c);
    }
    let mut out: Vec<String> = Vec::new();
    for f in forms {
        let s = f.to_string_lossy().trim_end_matches('/').to_owned();
        if s.len() > 1 && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// A move of the project (and depot) as users make one, applied to env
/// values: a value naming an old root, in any of its spellings, names the
/// new root after the move, because users set it from where they are
/// (`RUSTFLAGS=--remap-path-prefix=$PWD=.`). `verify --simulate` plans the
/// copy with env values moved this way, so it predicts what a real move hits.
#[derive(Debug, Clone)]
pub struct Move {
    /// (a spelling of an old root, the new root), longest first.
    pairs: Vec<(String, String)>,
}

impl Move {
    /// Each `(from, to)`: every spelling of the root `from` becomes `to`.
    pub fn new(roots: &[(&Path, &Path)]) -> Move {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (from, to) in roots {
            let to = to.to_string_lossy().trim_end_matches('/').to_owned();
            for s in spellings(from) {
                if !pairs.iter().any(|(q, _)| *q == s) {
                    pairs.push((s, to.clone()));
                }
            }
        }
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Move { pairs }
    }

    /// `v` after the move: every whole-component occurrence of an old root
    /// replaced by its new root, in one pass (a new root is never searched
    /// again). A value that is not UTF-8 is returned unchanged.
    pub fn apply_os(&self, v: &std::ffi::OsStr) -> std::ffi::OsString {
        match v.to_str() {
            Some(s) => self.apply(s).into(),
            None => v.to_owned(),
        }
    }

    /// [`Move::apply_os`] for text.
    pub fn apply(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut prev: Option<char> = None;
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let start_ok = prev.is_none_or(|p| !is_path_char(p) && p != '/');
            let found = start_ok
                .then(|| {
                    self.pairs.iter().find(|(root, _)| {
                        rest.strip_prefix(root.as_str()).is_some_and(|after| {
                            after
                                .chars()
                                .next()
                                .is_none_or(|a| a == '/' || !is_path_char(a))
                        })
                    })
                })
                .flatten();
            match found {
                Some((root, to)) => {
                    out.push_str(to);
                    prev = to.chars().last();
                    rest = &rest[root.len()..];
                }
                None => {
                    out.push(c);
                    prev = Some(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }
}

/// The words that follow `@` in a marker.
/// (`0x` only marks the bytes of an env value that is not UTF-8.)
const MARKER_WORDS: [&str; 3] = ["project", "depot", "0x"];

/// `s` with one more `@` in front of every maximal run of `@` that is
/// immediately followed by a marker word: `@project` → `@@project`,
/// `@@depot` → `@@@depot`; text without such a run is returned unchanged.
fn escape_markers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        let run = rest[i..].len() - rest[i..].trim_start_matches('@').len();
        let after = &rest[i + run..];
        if MARKER_WORDS.iter().any(|w| after.starts_with(w)) {
            out.push('@');
        }
        out.push_str(&rest[i..i + run]);
        rest = after;
    }
    out.push_str(rest);
    out
}

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || "._-+~@%#".contains(c)
}

fn replace_components(s: &str, root: &str, ph: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(root) {
        let before = rest[..i].chars().next_back().or(prev);
        let after = rest[i + root.len()..].chars().next();
        let start_ok = before.is_none_or(|c| !is_path_char(c) && c != '/');
        let end_ok = after.is_none_or(|c| c == '/' || !is_path_char(c));
        if start_ok && end_ok {
            out.push_str(&rest[..i]);
            out.push_str(ph);
            prev = ph.chars().last();
            rest = &rest[i + root.len()..];
        } else {
            let step = i + root.chars().next().map_or(1, |c| c.len_utf8());
            out.push_str(&rest[..step]);
            prev = rest[..step].chars().last();
            rest = &rest[step..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn known_key_is_pinned() {
        let env: BTreeMap<String, Option<String>> = [
            ("CC".to_owned(), Some("gcc".to_owned())),
            ("X".to_owned(), None),
        ]
        .into();
        let tools: BTreeMap<String, Digest> = [("cc".to_owned(), Digest::of(b"cc"))].into();
        let deps: BTreeMap<String, Digest> = [("gen".to_owned(), Digest::of(b"out"))].into();
        let inputs = vec![];
        let outputs = vec![RelPath::new("build/a.o").unwrap()];
        let cmd = Command::Argv(vec!["cc".into(), "-c".into(), "@project/a.c".into()]);
        let k = KeyInputs {
            salt: "",
            command: &cmd,
            env: &env,
            version: 2,
            tools: &tools,
            inputs: &inputs,
            deps: &deps,
            outputs: &outputs,
        };
        // Pinned for linux/x86_64, where CI runs; any change to the encoding
        // must bump KEY_SCHEMA and this value together.
        if std::env::consts::OS == "linux" && std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                compute(&k).to_hex(),
                "b96548a6c10230d8e292c35c63026923ad0e97874521234c49441ffce6b439df"
            );
        }
        let mut k2 = k.clone();
        k2.version = 3;
        assert_ne!(compute(&k), compute(&k2));
    }

    #[test]
    fn with_discovered_is_pinned() {
        let base = Key(Digest::of(b"base"));
        let (stdio, x, y) = (Digest::of(b"stdio"), Digest::of(b"x"), Digest::of(b"y"));
        let set = [("/usr/include/stdio.h", &stdio), ("src/x.h", &x)];
        let k = |s: &[(&'static str, &Digest)]| with_discovered(&base, s.iter().copied());
        assert_eq!(
            k(&set).to_hex(),
            "3345f1117d3bc70f02e54a3dbcc6900161c95df5d35e722c50ad769ea08f3568"
        );
        assert_ne!(k(&set), k(&[]));
        let edited = [("/usr/include/stdio.h", &stdio), ("src/x.h", &y)];
        assert_ne!(k(&set), k(&edited));
        assert_ne!(k(&[]), base);
    }

    #[test]
    fn directories_and_what_links_resolve_to_enter_the_key() {
        let (env, tools, deps) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let cmd = Command::Shell("cat g".into());
        let key = |inputs: &[InputFile]| {
            compute(&KeyInputs {
                salt: "",
                command: &cmd,
                env: &env,
                version: 0,
                tools: &tools,
                inputs,
                deps: &deps,
                outputs: &[],
            })
        };
        let input = |path: &str, state: FileState| InputFile {
            path: RelPath::new(path).unwrap(),
            state,
            stamp: None,
        };
        let link = |resolved| {
            input(
                "g",
                FileState::Symlink {
                    target: "data.txt".into(),
                    resolved,
                },
            )
        };
        let to = |content: &[u8]| {
            Some(crate::file_state::Resolved::File {
                path: RelPath::new("data.txt").unwrap(),
                digest: Digest::of(content),
                executable: false,
            })
        };
        assert_ne!(key(&[]), key(&[input("src/empty", FileState::Dir)]));
        assert_ne!(key(&[link(None)]), key(&[link(to(b"v1"))]));
        assert_ne!(key(&[link(to(b"v1"))]), key(&[link(to(b"v2"))]));
    }

    #[test]
    fn a_move_renames_whole_components_of_the_old_roots_once() {
        let m = Move {
            pairs: vec![
                ("/src/app/.cache".into(), "/w/new/depot".into()),
                ("/src/app".into(), "/w/src/app".into()),
            ],
        };
        assert_eq!(
            m.apply("--remap-path-prefix=/src/app=."),
            "--remap-path-prefix=/w/src/app=."
        );
        // The new root holds the old one's text: it is not replaced again.
        assert_eq!(m.apply("/src/app/x:/src/app"), "/w/src/app/x:/w/src/app");
        assert_eq!(m.apply("/src/app/.cache/b"), "/w/new/depot/b");
        assert_eq!(
            m.apply("/src/application /x/src/app"),
            "/src/application /x/src/app"
        );
        assert_eq!(m.apply("@project"), "@project");
    }

    #[test]
    fn roots_are_replaced_on_whole_components_only() {
        let r = Rooted {
            pairs: vec![("/src/app".into(), "@project")],
        };
        assert_eq!(r.apply("cc /src/app/a.c"), "cc @project/a.c");
        assert_eq!(
            r.apply("-ffile-prefix-map=/src/app=."),
            "-ffile-prefix-map=@project=."
        );
        assert_eq!(r.apply("/src/application/x"), "/src/application/x");
        assert_eq!(r.apply("/x/src/app/y"), "/x/src/app/y");
        assert_eq!(r.apply("/src/app"), "@project");
        assert_eq!(r.apply("a:/src/app:b"), "a:@project:b");
    }

    /// A key whose command and single env value `V` are rooted by `r`.
    fn rooted_key(r: &Rooted, command: &str, v: &str) -> Key {
        let env: BTreeMap<String, Option<String>> = [("V".to_owned(), Some(r.apply(v)))].into();
        let command = r.command(&Command::Shell(command.to_owned()));
        compute(&KeyInputs {
            salt: "",
            command: &command,
            env: &env,
            version: 0,
            tools: &BTreeMap::new(),
            inputs: &[],
            deps: &BTreeMap::new(),
            outputs: &[],
        })
    }

    #[test]
    fn literal_markers_never_collide_with_the_roots_they_name() {
        let r = Rooted {
            pairs: vec![
                ("/tmp/depot".into(), "@depot"),
                ("/src/app".into(), "@project"),
            ],
        };
        let cmd = "echo \"$V\" > out";
        // env `@project/x` vs `$ROOT/x`
        assert_ne!(
            rooted_key(&r, cmd, "@project/x"),
            rooted_key(&r, cmd, "/src/app/x")
        );
        // env `@depot/x` vs `$DEPOT/x`
        assert_ne!(
            rooted_key(&r, cmd, "@depot/x"),
            rooted_key(&r, cmd, "/tmp/depot/x")
        );
        // command `echo @project/y` vs `echo $ROOT/y` spelled out
        assert_ne!(
            rooted_key(&r, "echo @project/y", ""),
            rooted_key(&r, "echo /src/app/y", "")
        );
        // Roots still map to the same key wherever the project lives.
        let elsewhere = Rooted {
            pairs: vec![
                ("/home/u/depot".into(), "@depot"),
                ("/w/app".into(), "@project"),
            ],
        };
        assert_eq!(
            rooted_key(&r, "echo /src/app/y", "/tmp/depot/x"),
            rooted_key(&elsewhere, "echo /w/app/y", "/home/u/depot/x")
        );
    }

    #[test]
    fn text_without_markers_reads_as_written() {
        let r = Rooted {
            pairs: vec![("/src/app".into(), "@project")],
        };
        for s in [
            "ssh git@host",
            "exec \"$@\"",
            "a@b@@c",
            "@proj",
            "@",
            "@@",
            "x@",
        ] {
            assert_eq!(r.apply(s), s);
        }
        assert_eq!(r.apply("@project/x"), "@@project/x");
        assert_eq!(r.apply("@@depot"), "@@@depot");
        assert_eq!(r.apply("cp /src/app/a @project"), "cp @project/a @@project");
    }

    /// The inverse of [`Rooted::apply`] for a `Rooted` with one spelling per
    /// root: a run of one `@` before a marker word is that root, a run of
    /// `k >= 2` is `k - 1` literal `@`s.
    fn unapply(r: &Rooted, s: &str) -> String {
        let root = |ph: &str| {
            r.pairs
                .iter()
                .find(|(_, p)| p[1..] == *ph)
                .map(|(root, _)| root.clone())
                .expect("one spelling per root")
        };
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('@') {
            out.push_str(&rest[..i]);
            let run = rest[i..].len() - rest[i..].trim_start_matches('@').len();
            let after = &rest[i + run..];
            match MARKER_WORDS.iter().find(|w| after.starts_with(**w)) {
                Some(w) if run == 1 => {
                    out.push_str(&root(w));
                    rest = &after[w.len()..];
                    continue;
                }
                Some(_) => out.push_str(&rest[i..i + run - 1]),
                None => out.push_str(&rest[i..i + run]),
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn rooting_is_injective_over_tricky_strings() {
        let configs = [
            vec![("/r/d".to_owned(), "@depot"), ("/r".to_owned(), "@project")],
            vec![
                ("/w/@project".to_owned(), "@project"),
                ("/d".to_owned(), "@depot"),
            ],
            vec![
                ("/a@depot".to_owned(), "@depot"),
                ("/p@".to_owned(), "@project"),
            ],
        ];
        let pieces = [
            "@",
            "@@",
            "project",
            "depot",
            "/r",
            "/r/d",
            "/d",
            "/w/@project",
            "/a@depot",
            "/p@",
            "/",
            " ",
            "x",
            "=",
            "0x",
        ];
        for pairs in configs {
            let r = Rooted { pairs };
            let mut seen: std::collections::HashMap<String, String> = Default::default();
            let mut strings = vec![String::new()];
            for _ in 0..4 {
                let longer: Vec<String> = strings
                    .iter()
                    .flat_map(|s| pieces.iter().map(move |p| format!("{s}{p}")))
                    .collect();
                strings.extend(longer);
            }
            strings.sort();
            strings.dedup();
            for s in strings {
                let a = r.apply(&s);
                assert_eq!(unapply(&r, &a), s, "apply({s:?}) = {a:?} does not decode");
                if let Some(other) = seen.insert(a.clone(), s.clone()) {
                    panic!("{other:?} and {s:?} both root to {a:?}");
                }
            }
        }
    }

    #[test]
    fn env_values_that_are_not_utf8_never_collide() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let r = Rooted {
            pairs: vec![("/src/app".into(), "@project")],
        };
        let values: Vec<&[u8]> = vec![
            b"\xff",
            "\u{fffd}".as_bytes(),
            "\u{fffd} @0xff".as_bytes(),
            "\u{fffd} @@0xff".as_bytes(),
            b"\xff@",
            b"\xfe",
            b"/src/app/\xff",
            b"@0xff",
            b"",
        ];
        let mut seen = std::collections::HashMap::new();
        for v in values {
            let a = r.apply_os(OsStr::from_bytes(v));
            if let Some(other) = seen.insert(a.clone(), v) {
                panic!("{other:?} and {v:?} both root to {a:?}");
            }
        }
        assert_eq!(r.apply_os(OsStr::new("/src/app/x")), "@project/x");
        assert_eq!(
            r.apply_os(OsStr::from_bytes(b"/src/app/\xff")),
            "@project/\u{fffd} @0x2f7372632f6170702fff"
        );
    }

    #[test]
    fn canonical_root_form_is_replaced_too() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let r = Rooted::new(&link, &PathBuf::from("/nonexistent-depot"));
        let canon = std::fs::canonicalize(&real).unwrap();
        assert_eq!(r.apply(&format!("{}/x", canon.display())), "@project/x");
        assert_eq!(r.apply(&format!("{}/x", link.display())), "@project/x");
    }
}
