//! `relocache.toml`: find it, parse it and validate it into a [`Manifest`].
//!
//! Every manifest rule of ARCHITECTURE.md and the README is checked here, before anything
//! runs, and every error carries file, line, column and a one-line fix. This
//! module never touches the depot, the project tree (beyond reading the
//! manifest) or runs a command.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use toml::Spanned;

use crate::relpath::{prefix_range, RelPath, RelPathError};

/// The manifest's file name.
pub const MANIFEST_NAME: &str = "relocache.toml";

/// A validated project manifest.
#[derive(Debug)]
pub struct Manifest {
    /// Absolute path of `relocache.toml`.
    pub file: PathBuf,
    /// Absolute project root (the directory holding the manifest).
    pub root: PathBuf,
    /// Namespace of this project's records in the depot.
    pub name: String,
    /// Mixed into every key; changing it disowns every entry.
    pub salt: String,
    /// `[project] depot`, resolved against the root.
    pub depot: Option<PathBuf>,
    /// Targets by name, sorted.
    pub targets: BTreeMap<String, Target>,
    /// `[remote]`: a shared cache on object storage (before env overrides).
    pub remote: Option<crate::remote::config::RemoteSettings>,
}

/// How a target's command is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `run = "..."`: passed to `sh -c`.
    Shell(String),
    /// `command = [...]`: executed directly, no shell.
    Argv(Vec<String>),
}

/// One entry of `inputs`.
#[derive(Debug, Clone)]
pub struct InputPattern {
    /// The text as written (normalized).
    pub text: String,
    /// A literal path or a glob.
    pub pattern: Pattern,
    /// Where it was written.
    pub loc: Location,
}

/// A literal path (which may name an ignored file or a directory) or a glob.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// No glob metacharacters: exactly this file or directory.
    Literal(RelPath),
    /// Matched against `/`-separated relative paths; `*` never crosses `/`.
    Glob(GlobMatcher),
}

/// One entry of `include_dependency`.
#[derive(Debug, Clone)]
pub struct TrackedPath {
    /// The file or directory.
    pub path: RelPath,
    /// `false`: size and mtime enter the key instead of content (not relocatable).
    pub track_content: bool,
    /// Where it was written.
    pub loc: Location,
}

/// One entry of `tools`: an executable whose content enters the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tool {
    /// A program looked up on PATH (`cc`) or a relative path inside the project.
    pub name: String,
    /// `check = "..."`: a shell line whose standard output also enters the key
    /// (ccache's `compiler_check`), for tools whose executable does not say
    /// which program runs.
    pub check: Option<String>,
}

/// A validated `[target.NAME]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table name.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Input globs and paths (defaults first).
    pub inputs: Vec<InputPattern>,
    /// Julia-style tracked files.
    pub include_dependency: Vec<TrackedPath>,
    /// Declared outputs: files or directories.
    pub outputs: Vec<RelPath>,
    /// Targets built first; their output digests enter this key.
    pub deps: Vec<String>,
    /// Environment variable names whose values enter the key (sorted, unique).
    pub env: Vec<String>,
    /// Executables whose content enters the key (sorted and unique by name).
    pub tools: Vec<Tool>,
    /// Bumped by hand to invalidate.
    pub version: i64,
    /// Where the table starts.
    pub loc: Location,
}

/// A 1-based line and column in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No manifest where one was looked for.
    #[error("no {MANIFEST_NAME} in `{}`{}\n  help: run relocache inside a project, pass `-C DIR`, or create {MANIFEST_NAME} (see README)", .start.display(), if *.searched_parents { " or any parent directory" } else { "" })]
    NotFound {
        /// Where the search started.
        start: PathBuf,
        /// Whether parents were searched too.
        searched_parents: bool,
    },
    /// The file exists but could not be read.
    #[error("could not read `{}`: {source}", .path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content breaks a rule.
    #[error("{}:{}: {message}\n  help: {help}", .file.display(), .loc)]
    Invalid {
        /// The manifest path.
        file: PathBuf,
        /// Where.
        loc: Location,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    project: Option<RawProject>,
    defaults: Option<RawDefaults>,
    target: Option<BTreeMap<String, Spanned<RawTarget>>>,
    remote: Option<Spanned<RawRemote>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    url: Spanned<String>,
    mode: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: Option<Spanned<String>>,
    salt: Option<String>,
    depot: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    env: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<toml::Value>>>,
    inputs: Option<Vec<Spanned<String>>>,
    include_dependency: Option<Vec<Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    run: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    inputs: Option<Vec<Spanned<String>>>,
    include_dependency: Option<Vec<Spanned<toml::Value>>>,
    outputs: Option<Vec<Spanned<String>>>,
    deps: Option<Vec<Spanned<String>>>,
    env: Option<Vec<Spanned<String>>>,
    tools: Option<Vec<Spanned<toml::Value>>>,
    version: Option<Spanned<i64>>,
    /// Free text for humans; accepted and ignored.
    #[allow(dead_code)]
    description: Option<String>,
}

impl Manifest {
    /// Finds `relocache.toml` in `dir`, or (with `search_parents`) in the nearest ancestor.
    pub fn discover(dir: &Path, search_parents: bool) -> Result<Manifest, ManifestError> {
        let mut cur = Some(dir);
        while let Some(d) = cur {
            let candidate = d.join(MANIFEST_NAME);
            if candidate.is_file() {
                return Manifest::load(&candidate);
            }
            if !search_parents {
                break;
            }
            cur = d.parent();
        }
        Err(ManifestError::NotFound {
            start: dir.to_path_buf(),
            searched_parents: search_parents,
        })
    }

    /// Parses and validates the manifest at `file`.
    pub fn load(file: &Path) -> Result<Manifest, ManifestError> {
        let file = std::path::absolute(file).map_err(|source| ManifestError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
            path: file.clone(),
            source,
        })?;
        let root = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        Manifest::parse(&text, &file, &root)
    }

    /// Parses `text` as if read from `file` in project `root`.
    pub fn parse(text: &str, file: &Path, root: &Path) -> Result<Manifest, ManifestError> {
        let cx = Cx::new(text, file);
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let loc = cx.loc(e.span().unwrap_or(0..0));
            let message = e
                .message()
                .trim()
                .replace("expected i64", "expected an integer")
                .replace("expected a sequence", "expected an array")
                .replace("expected a boolean", "expected true or false");
            let help = if message.starts_with("unknown field") {
                "remove the key or fix its spelling; the keys are listed in the README, section \"The manifest\""
            } else if message.contains("missing field") {
                "add the missing key"
            } else {
                "fix the TOML syntax or value type at that position"
            };
            cx.invalid(loc, message, help)
        })?;

        let project = raw.project;
        let name = match project.as_ref().and_then(|p| p.name.as_ref()) {
            Some(n) => {
                if !valid_name(n.get_ref()) {
                    return Err(cx.err(
                        n.span(),
                        format!("invalid project name `{}`", n.get_ref()),
                        "use letters, digits, `.`, `_` and `-` only",
                    ));
                }
                n.get_ref().clone()
            }
            None => default_name(root),
        };
        let salt = project
            .as_ref()
            .and_then(|p| p.salt.clone())
            .unwrap_or_default();
        let depot = match project.as_ref().and_then(|p| p.depot.as_ref()) {
            Some(d) => {
                let s = d.get_ref();
                if s.is_empty() || Path::new(s).is_absolute() {
                    return Err(cx.err(
                        d.span(),
                        format!("`[project] depot = \"{s}\"` must be a relative path"),
                        "write the depot path relative to the project root, or use RELOCACHE_DEPOT for an absolute one",
                    ));
                }
                Some(root.join(s))
            }
            None => None,
        };

        let defaults = raw.defaults.unwrap_or_default();
        let mut targets = BTreeMap::new();
        let raw_targets = raw.target.unwrap_or_default();
        for (tname, spanned) in &raw_targets {
            let t = cx.target(tname, spanned, &defaults)?;
            targets.insert(tname.clone(), t);
        }
        check_deps(&cx, &targets, &raw_targets)?;
        check_outputs(&cx, &targets, &raw_targets)?;
        let remote = raw.remote.as_ref().map(|r| cx.remote(r)).transpose()?;
        Ok(Manifest {
            file: file.to_path_buf(),
            root: root.to_path_buf(),
            name,
            salt,
            depot,
            targets,
            remote,
        })
    }

    /// The names of `names` and everything they depend on, in dependency order
    /// (deps before dependents, ties broken by name).
    pub fn closure(&self, names: &[String]) -> Vec<String> {
        let sorted_deps = |n: &str| -> Vec<&str> {
            let mut deps: Vec<&str> = self
                .targets
                .get(n)
                .map(|t| t.deps.iter().map(String::as_str).collect())
                .unwrap_or_default();
            deps.sort_unstable();
            deps
        };
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::new();
        // Depth-first, post-order, on an explicit stack: a chain of a
        // hundred thousand targets must not overflow the thread's stack.
        for n in names {
            if !seen.insert(n) {
                continue;
            }
            let mut stack = vec![(n.as_str(), sorted_deps(n), 0)];
            while let Some(top) = stack.last_mut() {
                if let Some(&d) = top.1.get(top.2) {
                    top.2 += 1;
                    if seen.insert(d) {
                        stack.push((d, sorted_deps(d), 0));
                    }
                } else {
                    order.push(top.0.to_owned());
                    stack.pop();
                }
            }
        }
        order
    }
}

/// Which of `wanted` the target `from` depends on, directly or not: a
/// breadth-first walk of its deps that stops once all are found — usually at
/// once, since a target mostly reads what its direct deps write — so a deep
/// graph never costs a whole closure per target unless a target asks for it.
pub fn reachable_deps<'t>(
    targets: &'t BTreeMap<String, Target>,
    from: &str,
    wanted: &BTreeSet<&str>,
) -> BTreeSet<&'t str> {
    let mut found = BTreeSet::new();
    if wanted.is_empty() {
        return found;
    }
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut queue: std::collections::VecDeque<&'t str> = targets
        .get(from)
        .map(|t| t.deps.iter().map(|d| d.as_str()).collect())
        .unwrap_or_default();
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) {
            continue;
        }
        if wanted.contains(n) {
            found.insert(n);
            if found.len() == wanted.len() {
                break;
            }
        }
        if let Some(t) = targets.get(n) {
            queue.extend(t.deps.iter().map(|d| d.as_str()));
        }
    }
    found
}

/// Every target `from` depends on, directly or not.
pub fn transitive_deps<'t>(targets: &'t BTreeMap<String, Target>, from: &str) -> BTreeSet<&'t str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&'t str> = targets
        .get(from)
        .map(|t| t.deps.iter().map(|d| d.as_str()).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if seen.insert(n) {
            if let Some(t) = targets.get(n) {
                stack.extend(t.deps.iter().map(|d| d.as_str()));
            }
        }
    }
    seen
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    /// Byte offset where each line starts, for span → line:column.
    line_starts: Vec<usize>,
}

impl<'a> Cx<'a> {
    fn new(text: &'a str, file: &'a Path) -> Cx<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Cx {
            text,
            file,
            line_starts,
        }
    }

    /// `[remote]`: a URL without a password (a secret committed with the
    /// project), a mode and a timeout.
    fn remote(
        &self,
        raw: &Spanned<RawRemote>,
    ) -> Result<crate::remote::config::RemoteSettings, ManifestError> {
        use crate::remote::config::{self, Mode, Origin, RemoteSettings, RemoteUrl};
        let r = raw.get_ref();
        let url = RemoteUrl::parse(r.url.get_ref()).map_err(|m| {
            self.err(
                r.url.span(),
                m,
                "see README \"Sharing a cache across machines\" for the URL forms",
            )
        })?;
        if url.password().is_some() {
            return Err(self.err(
                r.url.span(),
                format!("`[remote] url` holds a password ({url})"),
                "never commit credentials: set RELOCACHE_REMOTE=<url with password> in the environment instead",
            ));
        }
        let mode = match &r.mode {
            None => Mode::ReadWrite,
            Some(m) => Mode::parse(m.get_ref()).ok_or_else(|| {
                self.err(
                    m.span(),
                    format!("unknown remote mode `{}`", m.get_ref()),
                    "use mode = \"read-write\" or mode = \"read-only\"",
                )
            })?,
        };
        let timeout = match &r.timeout {
            None => config::DEFAULT_TIMEOUT,
            Some(t) => config::parse_timeout(t.get_ref()).map_err(|m| {
                self.err(
                    t.span(),
                    m,
                    "write a duration such as timeout = \"30s\", \"500ms\" or \"2m\"",
                )
            })?,
        };
        Ok(RemoteSettings {
            url,
            mode,
            timeout,
            origin: Origin::Manifest,
        })
    }

    fn loc(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..start].chars().count() + 1;
        Location { line, column }
    }

    fn invalid(&self, loc: Location, message: String, help: &str) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_path_buf(),
            loc,
            message,
            help: help.to_owned(),
        }
    }

    fn err(&self, span: Range<usize>, message: String, help: &str) -> ManifestError {
        self.invalid(self.loc(span), message, help)
    }

    fn path_err(&self, span: Range<usize>, what: &str, e: RelPathError) -> ManifestError {
        let help = match e {
            RelPathError::Absolute(_) => {
                "paths in relocache.toml are relative to the project root; drop the leading `/`"
            }
            RelPathError::Escapes(_) => {
                "every path must stay inside the project root; move the file into the project"
            }
            _ => "write a relative path inside the project root",
        };
        self.err(span, format!("{what}: {e}"), help)
    }

    fn target(
        &self,
        name: &str,
        spanned: &Spanned<RawTarget>,
        defaults: &RawDefaults,
    ) -> Result<Target, ManifestError> {
        let raw = spanned.get_ref();
        let span = spanned.span();
        let loc = self.loc(span.clone());
        if !valid_name(name) {
            return Err(self.invalid(
                loc,
                format!("invalid target name `{name}`"),
                "use letters, digits, `.`, `_` and `-` only",
            ));
        }
        let command =
            match (&raw.run, &raw.command) {
                (Some(_), Some(c)) => return Err(self.err(
                    c.span(),
                    format!("target `{name}` has both `run` and `command`"),
                    "keep one: `run = \"...\"` for a shell line, or `command = [\"argv\", ...]`",
                )),
                (None, None) => {
                    return Err(self.invalid(
                        loc,
                        format!("target `{name}` has neither `run` nor `command`"),
                        "add `run = \"shell command\"` or `command = [\"program\", \"arg\"]`",
                    ))
                }
                (Some(r), None) => {
                    if r.get_ref().trim().is_empty() {
                        return Err(self.err(
                            r.span(),
                            format!("target `{name}` has an empty `run`"),
                            "write the shell command to run",
                        ));
                    }
                    Command::Shell(r.get_ref().clone())
                }
                (None, Some(c)) => {
                    if c.get_ref().is_empty() || c.get_ref()[0].is_empty() {
                        return Err(self.err(
                            c.span(),
                            format!("target `{name}` has an empty `command`"),
                            "give at least the program: `command = [\"cc\", ...]`",
                        ));
                    }
                    Command::Argv(c.get_ref().clone())
                }
            };

        let mut inputs = Vec::new();
        for s in defaults
            .inputs
            .iter()
            .flatten()
            .chain(raw.inputs.iter().flatten())
        {
            inputs.push(self.pattern(s)?);
        }
        let mut include_dependency = Vec::new();
        let tracked = defaults
            .include_dependency
            .iter()
            .flatten()
            .chain(raw.include_dependency.iter().flatten());
        for v in tracked {
            include_dependency.push(self.tracked(v)?);
        }
        let mut outputs = Vec::new();
        for s in raw.outputs.iter().flatten() {
            let p = RelPath::normalize(s.get_ref())
                .map_err(|e| self.path_err(s.span(), "output", e))?;
            if p.as_str() == MANIFEST_NAME
                || p.as_str() == ".git"
                || p.as_str().starts_with(".git/")
            {
                return Err(self.err(
                    s.span(),
                    format!("output `{p}` would overwrite project metadata"),
                    "declare the files the command writes, e.g. `build/app`",
                ));
            }
            outputs.push(p);
        }
        let mut deps = Vec::new();
        for d in raw.deps.iter().flatten() {
            if d.get_ref() == name {
                return Err(self.err(
                    d.span(),
                    format!("target `{name}` depends on itself"),
                    "remove it from its own `deps`",
                ));
            }
            if !deps.contains(d.get_ref()) {
                deps.push(d.get_ref().clone());
            }
        }
        let env = self.names(
            defaults
                .env
                .iter()
                .flatten()
                .chain(raw.env.iter().flatten()),
            "environment variable",
            |s| !s.is_empty() && !s.contains('=') && !s.contains('\0'),
        )?;
        let tools = self.tools(
            defaults.tools.as_deref().unwrap_or_default(),
            raw.tools.as_deref().unwrap_or_default(),
        )?;
        Ok(Target {
            name: name.to_owned(),
            command,
            inputs,
            include_dependency,
            outputs,
            deps,
            env,
            tools,
            version: raw.version.as_ref().map(|v| *v.get_ref()).unwrap_or(0),
            loc,
        })
    }

    fn names<'s>(
        &self,
        items: impl Iterator<Item = &'s Spanned<String>>,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, ManifestError> {
        let mut out = BTreeSet::new();
        for s in items {
            if !ok(s.get_ref()) {
                return Err(self.err(
                    s.span(),
                    format!("invalid {what} name `{}`", s.get_ref()),
                    "use the variable's name only, without `=` or a value",
                ));
            }
            out.insert(s.get_ref().clone());
        }
        Ok(out.into_iter().collect())
    }

    /// `[defaults] tools` then the target's: a target's entry replaces a
    /// default of the same name; within one list, the same name twice with
    /// different checks is an error.
    fn tools(
        &self,
        defaults: &[Spanned<toml::Value>],
        target: &[Spanned<toml::Value>],
    ) -> Result<Vec<Tool>, ManifestError> {
        let mut out: BTreeMap<String, Tool> = BTreeMap::new();
        for list in [defaults, target] {
            let mut here: BTreeMap<String, Tool> = BTreeMap::new();
            for v in list {
                let tool = self.tool(v)?;
                if here.get(&tool.name).is_some_and(|t| *t != tool) {
                    return Err(self.err(
                        v.span(),
                        format!("tool `{}` is listed twice with different checks", tool.name),
                        "keep one entry per tool",
                    ));
                }
                here.insert(tool.name.clone(), tool);
            }
            out.extend(here);
        }
        Ok(out.into_values().collect())
    }

    fn tool(&self, v: &Spanned<toml::Value>) -> Result<Tool, ManifestError> {
        let span = v.span();
        let help = "write `\"cc\"` or `{ name = \"cc\", check = \"cc --version\" }`";
        let (name, check) = match v.get_ref() {
            toml::Value::String(s) => (s.clone(), None),
            toml::Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| *k != "name" && *k != "check") {
                    return Err(self.err(
                        span,
                        format!("unknown key `{k}` in a tools entry"),
                        help,
                    ));
                }
                let Some(toml::Value::String(name)) = t.get("name") else {
                    return Err(self.err(span, "a tools entry needs a string `name`".into(), help));
                };
                let check = match t.get("check") {
                    None => None,
                    Some(toml::Value::String(c)) if !c.trim().is_empty() => Some(c.clone()),
                    Some(_) => {
                        return Err(self.err(
                            span,
                            format!(
                                "the `check` of tool `{name}` must be a non-empty shell command"
                            ),
                            "e.g. `check = \"cc --version\"`: its output identifies the tool",
                        ))
                    }
                };
                (name.clone(), check)
            }
            _ => {
                return Err(self.err(span, "tools entries are strings or tables".into(), help));
            }
        };
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(self.err(
                span,
                format!("invalid tool name `{name}`"),
                "name a program found on PATH (`cc`) or a relative path inside the project",
            ));
        }
        Ok(Tool { name, check })
    }

    fn pattern(&self, s: &Spanned<String>) -> Result<InputPattern, ManifestError> {
        let text = s.get_ref();
        let loc = self.loc(s.span());
        let is_glob = text.contains(['*', '?', '[', '{']);
        if !is_glob {
            let p = RelPath::normalize(text).map_err(|e| self.path_err(s.span(), "input", e))?;
            return Ok(InputPattern {
                text: p.to_string(),
                pattern: Pattern::Literal(p),
                loc,
            });
        }
        if text.starts_with('/') {
            return Err(self.path_err(s.span(), "input", RelPathError::Absolute(text.clone())));
        }
        if text.split('/').any(|c| c == "..") {
            return Err(self.path_err(s.span(), "input", RelPathError::Escapes(text.clone())));
        }
        let cleaned: Vec<&str> = text
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let cleaned = cleaned.join("/");
        let glob = GlobBuilder::new(&cleaned)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                self.err(
                    s.span(),
                    format!("invalid glob `{text}`: {}", e.kind()),
                    "`*` and `?` match within one directory, `**` across directories, `{a,b}` alternatives",
                )
            })?;
        Ok(InputPattern {
            text: cleaned,
            pattern: Pattern::Glob(glob.compile_matcher()),
            loc,
        })
    }

    fn tracked(&self, v: &Spanned<toml::Value>) -> Result<TrackedPath, ManifestError> {
        let span = v.span();
        let help = "write `\"path\"` or `{ path = \"path\", track_content = false }`";
        let (path, track_content) = match v.get_ref() {
            toml::Value::String(s) => (s.clone(), true),
            toml::Value::Table(t) => {
                for k in t.keys() {
                    if k != "path" && k != "track_content" {
                        return Err(self.err(
                            span,
                            format!("unknown key `{k}` in include_dependency"),
                            help,
                        ));
                    }
                }
                let path = match t.get("path") {
                    Some(toml::Value::String(s)) => s.clone(),
                    _ => {
                        return Err(self.err(
                            span,
                            "include_dependency entry needs a string `path`".into(),
                            help,
                        ))
                    }
                };
                let track = match t.get("track_content") {
                    None => true,
                    Some(toml::Value::Boolean(b)) => *b,
                    Some(_) => {
                        return Err(self.err(
                            span,
                            "`track_content` must be true or false".into(),
                            help,
                        ))
                    }
                };
                (path, track)
            }
            _ => {
                return Err(self.err(
                    span,
                    "include_dependency entries are strings or tables".into(),
                    help,
                ))
            }
        };
        if path.contains(['*', '?', '[', '{']) {
            return Err(self.err(
                span,
                format!("include_dependency `{path}` is a glob"),
                "include_dependency names exact files or directories; put globs in `inputs`",
            ));
        }
        let p = RelPath::normalize(&path)
            .map_err(|e| self.path_err(span.clone(), "include_dependency", e))?;
        Ok(TrackedPath {
            path: p,
            track_content,
            loc: self.loc(span),
        })
    }
}

fn check_deps(
    cx: &Cx<'_>,
    targets: &BTreeMap<String, Target>,
    raw: &BTreeMap<String, Spanned<RawTarget>>,
) -> Result<(), ManifestError> {
    for (name, t) in targets {
        for (i, d) in t.deps.iter().enumerate() {
            if !targets.contains_key(d) {
                let span = raw[name].get_ref().deps.as_ref().map(|v| v[i].span());
                let known = targets.keys().map(|s| s.as_str());
                return Err(cx.err(
                    span.unwrap_or(0..0),
                    format!("target `{name}` depends on unknown target `{d}`"),
                    &format!(
                        "define `[target.{d}]` or fix the name; {}",
                        unknown_target_help(known, d)
                    ),
                ));
            }
        }
    }
    // Cycle detection: a colouring DFS on an explicit stack, which is the
    // path to report.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = targets.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for root in targets.keys() {
        if mark[root.as_str()] != Mark::New {
            continue;
        }
        // (target, index of its next dep): the path from `root`.
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        mark.insert(root.as_str(), Mark::Active);
        while let Some(top) = stack.last_mut() {
            let (n, i) = *top;
            let Some(d) = targets[n].deps.get(i) else {
                mark.insert(n, Mark::Done);
                stack.pop();
                continue;
            };
            top.1 += 1;
            match mark[d.as_str()] {
                Mark::Active => {
                    let start = stack.iter().position(|(p, _)| *p == d).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|(p, _)| p.to_string()).collect();
                    cycle.push(d.clone());
                    // A cycle through thousands of targets: its ends say enough.
                    let shown = if cycle.len() > 12 {
                        format!(
                            "{} -> … ({} more) … -> {}",
                            cycle[..8].join(" -> "),
                            cycle.len() - 11,
                            cycle[cycle.len() - 3..].join(" -> ")
                        )
                    } else {
                        cycle.join(" -> ")
                    };
                    return Err(cx.invalid(
                        targets[&cycle[0]].loc,
                        format!("dependency cycle: {shown}"),
                        "remove one of these `deps` so the targets can be ordered",
                    ));
                }
                Mark::New => {
                    mark.insert(d.as_str(), Mark::Active);
                    stack.push((d.as_str(), 0));
                }
                Mark::Done => {}
            }
        }
    }
    Ok(())
}

fn check_outputs(
    cx: &Cx<'_>,
    targets: &BTreeMap<String, Target>,
    raw: &BTreeMap<String, Spanned<RawTarget>>,
) -> Result<(), ManifestError> {
    let all: Vec<(&str, usize, &RelPath)> = targets
        .iter()
        .flat_map(|(n, t)| {
            t.outputs
                .iter()
                .enumerate()
                .map(move |(i, o)| (n.as_str(), i, o))
        })
        .collect();
    let span_of = |name: &str, i: usize| {
        raw[name]
            .get_ref()
            .outputs
            .as_ref()
            .map(|v| v[i].span())
            .unwrap_or(0..0)
    };
    // Outputs by path, so that overlaps are found by looking up each
    // output's directories (not by comparing every pair: big projects have
    // thousands of outputs).
    let mut by_path: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, _, p)) in all.iter().enumerate() {
        by_path.entry(p.as_str()).or_default().push(i);
    }
    // Indices into `all` of the outputs that `p` is, or is below.
    let at_or_above = |p: &RelPath| -> Vec<usize> {
        p.self_and_ancestors()
            .filter_map(|a| by_path.get(a))
            .flatten()
            .copied()
            .collect()
    };
    // The first overlapping pair in declaration order, as a pairwise scan finds it.
    let all_ref = &all;
    let overlap = all
        .iter()
        .enumerate()
        .flat_map(|(j, (nj, _, pj))| {
            at_or_above(pj)
                .into_iter()
                .filter(move |&i| all_ref[i].0 != *nj)
                .map(move |i| (i.min(j), i.max(j)))
        })
        .min();
    if let Some((a, b)) = overlap {
        let ((na, ia, pa), (nb, _, pb)) = (all[a], all[b]);
        return Err(cx.err(
            span_of(na, ia),
            format!("output `{pa}` of target `{na}` overlaps output `{pb}` of target `{nb}`"),
            "each file may be written by one target only; give the targets distinct outputs",
        ));
    }
    let mut sorted: Vec<(&str, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, (_, _, p))| (p.as_str(), i))
        .collect();
    sorted.sort_unstable();
    // A target that names another target's output literally must depend on it;
    // otherwise the order of the two would be a race.
    for (name, t) in targets {
        let literals = t
            .inputs
            .iter()
            .filter_map(|i| match &i.pattern {
                Pattern::Literal(p) => Some((p, i.loc)),
                Pattern::Glob(_) => None,
            })
            .chain(t.include_dependency.iter().map(|d| (&d.path, d.loc)));
        for (p, loc) in literals {
            // The outputs `p` is within, and those within `p`, in declaration order.
            let below = prefix_range(&sorted, &format!("{p}/"), |(path, _)| path);
            let mut related = at_or_above(p);
            related.extend(sorted[below].iter().map(|(_, i)| *i));
            related.sort_unstable();
            related.dedup();
            for (owner, _, o) in related.into_iter().map(|i| &all[i]) {
                if *owner == name.as_str() {
                    if p.is_within(o) {
                        return Err(cx.invalid(
                            loc,
                            format!("target `{name}` reads its own output `{o}`"),
                            "remove the output from the inputs",
                        ));
                    }
                    continue;
                }
                if p.is_within(o) || o.is_within(p) {
                    let wanted = BTreeSet::from([*owner]);
                    if reachable_deps(targets, name, &wanted).is_empty() {
                        return Err(cx.invalid(
                            loc,
                            format!("target `{name}` reads `{p}`, an output of target `{owner}`, without depending on it"),
                            &format!("add `\"{owner}\"` to the `deps` of `{name}`"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The `help:` for a target name the manifest does not define: the closest
/// names first, then the known ones — a few of them in a big manifest, where
/// all would be thousands of names.
pub fn unknown_target_help<'a>(known: impl IntoIterator<Item = &'a str>, wanted: &str) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let mut close: Vec<(f64, &str)> = known
        .iter()
        .map(|k| (strsim::jaro_winkler(wanted, k), *k))
        .filter(|(score, _)| *score >= 0.85)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let mut help = String::new();
    if !close.is_empty() {
        let names: Vec<String> = close
            .iter()
            .take(3)
            .map(|(_, k)| format!("`{k}`"))
            .collect();
        help.push_str(&format!("did you mean {}? ", names.join(" or ")));
    }
    const SHOWN: usize = 12;
    if known.len() <= SHOWN {
        help.push_str(&format!("known targets: {}", known.join(", ")));
    } else {
        help.push_str(&format!(
            "known targets: {}, … ({} in all; `relocache status` lists them)",
            known[..SHOWN].join(", "),
            known.len()
        ));
    }
    help
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn default_name(root: &Path) -> String {
    let base = root
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if valid_name(&cleaned) {
        cleaned
    } else {
        "project".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("/p/relocache.toml"), Path::new("/p"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_design_example() {
        let m = parse(
            r#"
[project]
name = "c-demo"
[defaults]
env = ["CC"]
tools = ["cc"]
[target.gen]
run = "python3 gen.py > build/table.h"
inputs = ["gen.py", "data/*.csv"]
outputs = ["build/table.h"]
[target.lib]
command = ["cc", "-c", "src/lib.c"]
inputs = ["src/**/*.c"]
include_dependency = ["config/settings.json", { path = "vendor/huge.bin", track_content = false }]
deps = ["gen"]
outputs = ["build/lib.o"]
version = 2
"#,
        )
        .unwrap();
        assert_eq!(m.name, "c-demo");
        let lib = &m.targets["lib"];
        assert_eq!(lib.version, 2);
        assert_eq!(lib.env, vec!["CC"]);
        assert!(!lib.include_dependency[1].track_content);
        assert_eq!(m.closure(&["lib".into()]), vec!["gen", "lib"]);
    }

    #[test]
    fn a_targets_tool_entry_replaces_the_default_of_that_name() {
        let m = parse(
            "[defaults]\ntools = ['cc', { name = 'rustc', check = 'rustc -vV' }]\n[target.a]\nrun = 'x'\ntools = [{ name = 'cc', check = 'cc -v' }, 'ld']\n",
        )
        .unwrap();
        let tools: Vec<(&str, Option<&str>)> = m.targets["a"]
            .tools
            .iter()
            .map(|t| (t.name.as_str(), t.check.as_deref()))
            .collect();
        assert_eq!(
            tools,
            [
                ("cc", Some("cc -v")),
                ("ld", None),
                ("rustc", Some("rustc -vV"))
            ]
        );
        let e = err("[target.a]\nrun = 'x'\ntools = ['cc', { name = 'cc', check = 'cc -v' }]\n");
        assert!(e.contains("3:16") && e.contains("listed twice"), "{e}");
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = err("[target.a]\nrun = \"x\"\nbogus = 1\n");
        assert!(e.contains("relocache.toml:3:1"), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err("[target.a]\nrun = \"x\"\noutputs = [\"/abs\"]\n");
        assert!(e.contains(":3:12") && e.contains("absolute"), "{e}");
        let e = err("[target.a]\nrun = \"x\"\ninputs = [\"../up/*.c\"]\n");
        assert!(e.contains("escapes"), "{e}");
    }

    #[test]
    fn structural_errors_are_named() {
        assert!(err("[target.a]\nrun='x'\ncommand=['y']").contains("both `run` and `command`"));
        assert!(err("[target.a]\noutputs=[]").contains("neither `run` nor `command`"));
        assert!(err("[target.a]\nrun='x'\ndeps=['nope']").contains("unknown target `nope`"));
        let e = err("[target.a]\nrun='x'\ndeps=['b']\n[target.b]\nrun='y'\ndeps=['a']");
        assert!(e.contains("dependency cycle: a -> b -> a"), "{e}");
        let e = err("[target.a]\nrun='x'\noutputs=['out']\n[target.b]\nrun='y'\noutputs=['out/x']");
        assert!(e.contains("overlaps"), "{e}");
        assert!(err("[target.a]\nrun='x'\ninputs=['src/[']").contains("invalid glob"));
    }

    #[test]
    fn reading_another_targets_output_needs_a_dep() {
        let e =
            err("[target.a]\nrun='x'\noutputs=['gen.h']\n[target.b]\nrun='y'\ninputs=['gen.h']");
        assert!(e.contains("without depending on it"), "{e}");
        assert!(parse("[target.a]\nrun='x'\noutputs=['gen.h']\n[target.b]\nrun='y'\ninputs=['gen.h']\ndeps=['a']").is_ok());
        // A file below another target's output directory, and a directory
        // holding another target's output, need the dep too.
        let e =
            err("[target.a]\nrun='x'\noutputs=['gen']\n[target.b]\nrun='y'\ninputs=['gen/x.h']");
        assert!(
            e.contains("reads `gen/x.h`, an output of target `a`"),
            "{e}"
        );
        let e =
            err("[target.a]\nrun='x'\noutputs=['gen/x.h']\n[target.b]\nrun='y'\ninputs=['gen']");
        assert!(e.contains("reads `gen`, an output of target `a`"), "{e}");
        assert!(parse("[target.a]\nrun='x'\noutputs=['gen/x.h']\n[target.b]\nrun='y'\ninputs=['gen']\ndeps=['a']").is_ok());
        // A sibling that only shares a prefix is not an output.
        assert!(parse(
            "[target.a]\nrun='x'\noutputs=['gen']\n[target.b]\nrun='y'\ninputs=['gen2/x.h', 'ge']"
        )
        .is_ok());
        let e = err("[target.a]\nrun='x'\noutputs=['out']\ninputs=['out/x']");
        assert!(e.contains("reads its own output"), "{e}");
        // A directory input holding the target's own output is allowed.
        assert!(parse("[target.a]\nrun='x'\noutputs=['d/out']\ninputs=['d']").is_ok());
    }

    #[test]
    fn reachable_deps_finds_transitive_deps_only() {
        let m = parse("[target.a]\nrun='x'\n[target.b]\nrun='x'\ndeps=['a']\n[target.c]\nrun='x'\ndeps=['b']\n[target.d]\nrun='x'\n").unwrap();
        let wanted = BTreeSet::from(["a", "d", "c"]);
        assert_eq!(
            reachable_deps(&m.targets, "c", &wanted),
            BTreeSet::from(["a"])
        );
        assert_eq!(
            reachable_deps(&m.targets, "b", &BTreeSet::from(["a"])),
            BTreeSet::from(["a"])
        );
        assert!(reachable_deps(&m.targets, "a", &wanted).is_empty());
        assert_eq!(transitive_deps(&m.targets, "c"), BTreeSet::from(["a", "b"]));
        assert!(transitive_deps(&m.targets, "d").is_empty());
    }

    /// Overlaps are reported as a pairwise scan in declaration order would
    /// report them: the first output that overlaps a later one.
    #[test]
    fn the_first_overlap_in_declaration_order_is_reported() {
        let e = err("[target.a]\nrun='x'\noutputs=['z/deep/file', 'b']\n[target.b]\nrun='y'\noutputs=['z', 'b/x']");
        assert!(
            e.contains("output `z/deep/file` of target `a` overlaps output `z` of target `b`"),
            "{e}"
        );
        let e = err("[target.a]\nrun='x'\noutputs=['one']\n[target.b]\nrun='y'\noutputs=['two/x']\n[target.c]\nrun='z'\noutputs=['two']");
        assert!(
            e.contains("output `two/x` of target `b` overlaps output `two` of target `c`"),
            "{e}"
        );
        let e = err("[target.a]\nrun='x'\noutputs=['same']\n[target.b]\nrun='y'\noutputs=['same']");
        assert!(
            e.contains("output `same` of target `a` overlaps output `same` of target `b`"),
            "{e}"
        );
        assert!(parse(
            "[target.a]\nrun='x'\noutputs=['out', 'out2']\n[target.b]\nrun='y'\noutputs=['out3/x']"
        )
        .is_ok());
    }
}
