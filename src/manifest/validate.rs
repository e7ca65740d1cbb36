//! Checking one target at a time: turning the raw tables into validated
//! [`Target`]s, [`Tool`]s, input patterns and `[remote]` settings, every
//! path a [`RelPath`] inside the root, every error at `relocache.toml:LINE:COL`
//! with a fix. The checks across targets live in `graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use globset::GlobBuilder;
use toml::Spanned;

use super::raw::{RawDefaults, RawRemote, RawTarget};
use super::{
    Command, InputPattern, Location, LogMode, ManifestError, Pattern, Target, Tool, TrackedPath,
    MANIFEST_NAME,
};
use crate::relpath::{RelPath, RelPathError};

/// The manifest's text and file, for errors at `relocache.toml:LINE:COL`.
pub(super) struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    /// Byte offset where each line starts, for span → line:column.
    line_starts: Vec<usize>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(text: &'a str, file: &'a Path) -> Cx<'a> {
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
    /// project), a mode, a timeout and the name of the variable holding the
    /// signing key.
    pub(super) fn remote(
        &self,
        raw: &Spanned<RawRemote>,
    ) -> Result<crate::remote::config::RemoteSettings, ManifestError> {
        use crate::remote::config::{self, Mode, Origin, RemoteSettings, RemoteUrl};
        let r = raw.get_ref();
        let url = RemoteUrl::parse(r.url.get_ref()).map_err(|e| {
            self.err(
                r.url.span(),
                e.to_string(),
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
            Some(t) => config::parse_timeout(t.get_ref()).map_err(|e| {
                self.err(
                    t.span(),
                    e.to_string(),
                    "write a duration such as timeout = \"30s\", \"500ms\" or \"2m\"",
                )
            })?,
        };
        let signing_key_env = match &r.signing_key_env {
            None => None,
            Some(v) => {
                let name = v.get_ref();
                let mut chars = name.chars();
                let ok = chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(self.err(
                        v.span(),
                        format!("`{name}` is not an environment variable name"),
                        "write the variable's name, never the key: signing_key_env = \"TEAM_CACHE_KEY\"",
                    ));
                }
                Some(name.clone())
            }
        };
        Ok(RemoteSettings {
            url,
            mode,
            timeout,
            origin: Origin::Manifest,
            signing_key_env,
        })
    }

    pub(super) fn loc(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..start].chars().count() + 1;
        Location { line, column }
    }

    pub(super) fn invalid(&self, loc: Location, message: String, help: &str) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_path_buf(),
            loc,
            message,
            help: help.to_owned(),
        }
    }

    pub(super) fn err(&self, span: Range<usize>, message: String, help: &str) -> ManifestError {
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

    // Long on purpose: one short check per field of a target table, in the table's order, all reporting through the same span helpers.
    pub(super) fn target(
        &self,
        name: &str,
        spanned: &Spanned<RawTarget>,
        defaults: &RawDefaults,
    ) -> Result<Target, ManifestError> {
        let raw = spanned.get_ref();
        let span = spanned.span();
        let loc = self.loc(span.clone());
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
        let depfile = match &raw.depfile {
            None => None,
            Some(d) => Some(
                RelPath::normalize(d.get_ref())
                    .map_err(|e| self.path_err(d.span(), "depfile", e))?,
            ),
        };
        let logs = match &raw.logs {
            None => None,
            Some(l) => Some(LogMode::parse(l.get_ref()).ok_or_else(|| {
                self.err(
                    l.span(),
                    format!("unknown logs mode `{}`", l.get_ref()),
                    &format!("use one of: {}", LogMode::NAMES.join(", ")),
                )
            })?),
        };
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
            depfile,
            logs,
            template: None,
            source: None,
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

/// A project or target name: letters, digits, `.`, `_` and `-`, and not `.`
/// or `..`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The project name when `[project] name` is not set: the root directory's
/// name, with characters a name cannot hold replaced by `_`.
pub(super) fn default_name(root: &Path) -> String {
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
