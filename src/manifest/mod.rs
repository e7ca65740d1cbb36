//! `relocache.toml`: find it, parse it and validate it into a [`Manifest`].
//!
//! Every manifest rule of ARCHITECTURE.md and the README is checked here, before anything
//! runs, and every error carries file, line, column and a one-line fix. This
//! module never touches the depot, the project tree (beyond reading the
//! manifest) or runs a command.

//!
//! - `mod.rs` — the validated types, finding and loading the file;
//! - `raw` — the tables as serde reads them, with their spans;
//! - `validate` — one target at a time: paths, patterns, tools, `[remote]`;
//! - `graph` — across targets: deps, cycles, outputs, the dependency closure.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;

use crate::relpath::RelPath;

mod graph;
mod raw;
mod validate;

pub use graph::{reachable_deps, transitive_deps, unknown_target_help};

use graph::{check_deps, check_outputs};
use raw::RawManifest;
use validate::{default_name, valid_name, Cx};

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
    /// `depfile = "PATH"`: a Make-syntax dependency file the command writes;
    /// its prerequisites become the entry's discovered inputs.
    pub depfile: Option<RelPath>,
    /// `logs = "..."`: how the target's logs are shown (the CLI's `--logs`
    /// wins when given).
    pub logs: Option<LogMode>,
    /// Where the table starts.
    pub loc: Location,
}

/// Which stored logs a build shows (Turborepo's `outputLogs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogMode {
    /// Every target's logs, replayed on hits too.
    Full,
    /// Only the logs of targets that ran (hits replay nothing).
    NewOnly,
    /// Only the logs of targets that failed.
    ErrorsOnly,
    /// No command output at all.
    None,
}

impl LogMode {
    /// Every mode, as written in `--logs` and `logs =`.
    pub const NAMES: [&'static str; 4] = ["full", "new-only", "errors-only", "none"];

    /// Parses `full`, `new-only`, `errors-only` or `none`.
    pub fn parse(s: &str) -> Option<LogMode> {
        Some(match s {
            "full" => LogMode::Full,
            "new-only" => LogMode::NewOnly,
            "errors-only" => LogMode::ErrorsOnly,
            "none" => LogMode::None,
            _ => return None,
        })
    }

    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            LogMode::Full => "full",
            LogMode::NewOnly => "new-only",
            LogMode::ErrorsOnly => "errors-only",
            LogMode::None => "none",
        }
    }
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
