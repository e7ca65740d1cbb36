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

mod expand;
mod graph;
mod raw;
mod template;
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
    /// Targets by name, sorted; a template's instances are targets named
    /// `TEMPLATE:PATH`.
    pub targets: BTreeMap<String, Target>,
    /// Templates (tables with `foreach`) by name, with their instances.
    pub templates: BTreeMap<String, Template>,
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
    /// The template this target is an instance of.
    pub template: Option<String>,
    /// The file an instance was made for (one of its inputs).
    pub source: Option<RelPath>,
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

/// A `[target.NAME]` table with `foreach`: one target per matching file.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its instances' names (`NAME:PATH`), sorted.
    pub instances: Vec<String>,
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

    /// Parses `text` as if read from `file` in project `root`; templates
    /// match the files of `root` (walked only when there is one).
    pub fn parse(text: &str, file: &Path, root: &Path) -> Result<Manifest, ManifestError> {
        Manifest::parse_with(text, file, root, &mut || list_project(root))
    }

    /// [`Manifest::parse`] with templates matching `files` (relative to
    /// the root) instead of a walk of the project.
    pub fn parse_with_files(
        text: &str,
        file: &Path,
        root: &Path,
        files: &[&str],
    ) -> Result<Manifest, ManifestError> {
        let mut files: Vec<RelPath> = files.iter().filter_map(|f| RelPath::new(f).ok()).collect();
        files.sort_unstable();
        Manifest::parse_with(text, file, root, &mut || {
            Ok(expand::ProjectFiles {
                files: files.clone(),
                unusable: Vec::new(),
            })
        })
    }

    fn parse_with(
        text: &str,
        file: &Path,
        root: &Path,
        files: &mut dyn FnMut() -> Result<expand::ProjectFiles, String>,
    ) -> Result<Manifest, ManifestError> {
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
        let raw_targets = raw.target.unwrap_or_default();
        let expand::Expanded {
            targets,
            tables,
            templates,
        } = expand::expand(&cx, &raw_targets, &defaults, files)?;
        check_deps(&cx, &targets, &tables)?;
        check_outputs(&cx, &targets, &tables)?;
        let remote = raw.remote.as_ref().map(|r| cx.remote(r)).transpose()?;
        Ok(Manifest {
            file: file.to_path_buf(),
            root: root.to_path_buf(),
            name,
            salt,
            depot,
            targets,
            templates,
            remote,
        })
    }
}

/// The project's files for templates: one walk (`.gitignore` honoured,
/// `.git` and relocache's own temporary files left out).
fn list_project(root: &Path) -> Result<expand::ProjectFiles, String> {
    let walked = crate::walk::walk(
        root,
        &[],
        &["relocache-timings.html"],
        crate::walk::Stats::NotRegularFiles,
    )
    .map_err(|e| e.to_string())?;
    let mut files: Vec<RelPath> = walked
        .files
        .into_iter()
        .map(|(p, _)| RelPath::trusted(p))
        .collect();
    files.sort_unstable();
    let unusable = walked.unusable.iter().map(|u| u.display()).collect();
    Ok(expand::ProjectFiles { files, unusable })
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

#[cfg(test)]
mod template_tests {
    use super::*;

    const FILES: &[&str] = &[
        "src/main.c",
        "src/net/http.c",
        "src/net/tcp.c",
        "src/net/tcp.h",
        "build/gen.c",
        "depot/DEPOT.toml",
        "depot/CACHEDIR.TAG",
        "depot/x.c",
    ];

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse_with_files(text, Path::new("/p/relocache.toml"), Path::new("/p"), FILES)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const OBJ: &str = "[target.obj]\nforeach = ['**/*.c']\nrun = 'mkdir -p build/{dir} && cc -c {path} -o build/{dir}/{stem}.o -MD -MF build/{dir}/{stem}.d'\ndepfile = 'build/{dir}/{stem}.d'\noutputs = ['build/{dir}/{stem}.o']\n";

    #[test]
    fn a_template_becomes_one_target_per_matching_file() {
        let m = parse(&format!("{OBJ}[target.gen]\nrun = 'x'\noutputs = ['build/gen.c']\n[target.lib]\nrun = 'ar rcs build/lib.a {{outputs:obj}}'\ndeps = ['obj']\noutputs = ['build/lib.a']\n")).unwrap();
        let obj = &m.templates["obj"];
        // build/gen.c is an output, depot/x.c is in a depot.
        assert_eq!(
            obj.instances,
            ["obj:src/main.c", "obj:src/net/http.c", "obj:src/net/tcp.c"]
        );
        let t = &m.targets["obj:src/net/http.c"];
        assert_eq!(t.command, Command::Shell("mkdir -p build/src/net && cc -c src/net/http.c -o build/src/net/http.o -MD -MF build/src/net/http.d".into()));
        assert_eq!(t.outputs[0].as_str(), "build/src/net/http.o");
        assert_eq!(t.depfile.as_ref().unwrap().as_str(), "build/src/net/http.d");
        assert_eq!(t.template.as_deref(), Some("obj"));
        assert!(t.inputs.iter().any(|i| i.text == "src/net/http.c"));
        let lib = &m.targets["lib"];
        assert_eq!(lib.deps, obj.instances);
        assert_eq!(
            lib.command,
            Command::Shell(
                "ar rcs build/lib.a build/src/main.o build/src/net/http.o build/src/net/tcp.o"
                    .into()
            )
        );
        assert_eq!(
            m.select(&["obj".into(), "lib".into(), "obj:src/main.c".into()])
                .unwrap()
                .len(),
            4
        );
        assert_eq!(m.select(&["nope".into()]), Err("nope".into()));
    }

    #[test]
    fn outputs_in_command_become_arguments_and_need_the_dep() {
        let m = parse(&format!("{OBJ}[target.app]\ncommand = ['cc', '{{outputs:obj}}', '-o', 'build/app']\ndeps = ['obj']\noutputs = ['build/app']\n")).unwrap();
        let Command::Argv(argv) = &m.targets["app"].command else {
            panic!()
        };
        assert_eq!(argv.len(), 7, "{argv:?}");
        assert_eq!(argv[1], "build/build/gen.o");
        let e = err(&format!(
            "{OBJ}[target.app]\nrun = 'cc {{outputs:obj}}'\noutputs = ['build/app']\n"
        ));
        assert!(
            e.contains("without depending on `obj`") && e.contains("relocache.toml:"),
            "{e}"
        );
        let e = err(&format!(
            "{OBJ}[target.app]\nrun = 'cc {{outputs:ob}}'\ndeps = ['obj']\n"
        ));
        assert!(e.contains("names no target or template"), "{e}");
        // One instance as a dep.
        let m = parse(&format!("{OBJ}[target.one]\nrun = 'cp {{outputs:obj:src/main.c}} build/one'\ndeps = ['obj:src/main.c']\noutputs = ['build/one']\n")).unwrap();
        assert_eq!(
            m.targets["one"].command,
            Command::Shell("cp build/src/main.o build/one".into())
        );
    }

    #[test]
    fn template_errors_name_the_line_and_the_fix() {
        let e = err("[target.t]\nforeach = '**/*.c'\nrun = 'echo ${HOME} {path}'\n");
        assert!(
            e.contains("relocache.toml:3:7")
                && e.contains("unknown placeholder `{HOME}`")
                && e.contains("${{VAR}}"),
            "{e}"
        );
        let e = err("[target.t]\nrun = 'cc {path}'\n");
        assert!(e.contains("which has no `foreach`"), "{e}");
        let e = err("[target.t]\nforeach = '**/*.rs'\nrun = 'x'\n");
        assert!(e.contains("2:11") && e.contains("matches no file"), "{e}");
        let e = err("[target.t]\nforeach = ['src/nope.c']\nrun = 'x'\n");
        assert!(e.contains("not a file of the project"), "{e}");
        assert!(parse(
            "[target.t]\nforeach = 'src/**/*.c'\nrun = 'x'\noutputs = ['build/{dir}/{stem}.o']\n"
        )
        .is_ok());
        let e =
            err("[target.t]\nforeach = ['src/net/*.c']\nrun = 'x'\noutputs = ['build/all.o']\n");
        assert!(e.contains("output `build/all.o` of target `t:src/net/http.c` overlaps output `build/all.o` of target `t:src/net/tcp.c`") && e.contains("{dir}"), "{e}");
        let e = err("[target.t]\nforeach = '../*.c'\nrun = 'x'\n");
        assert!(e.contains("leaves the project"), "{e}");
        let e = err("[target.t]\nforeach = 3\nrun = 'x'\n");
        assert!(e.contains("must be a glob"), "{e}");
        let e = err(&format!(
            "{OBJ}[target.b]\nrun = 'x'\ndeps = ['obj:src/gone.c']\n"
        ));
        assert!(e.contains("unknown target `obj:src/gone.c`"), "{e}");
        let e = err("[target.t]\nforeach = '**/*.c'\ncommand = ['cc', '-x{outputs:t}']\n");
        assert!(e.contains("can only be used"), "{e}");
    }

    #[test]
    fn placeholders_normalize_paths_and_fill_every_field() {
        let m = parse("[target.t]\nforeach = 'src/main.c'\ncommand = ['cc', '{path}', '{{x}}']\ninputs = ['{dir}/*.h']\ninclude_dependency = [{ path = '{dir}', track_content = true }]\noutputs = ['build/./{dir}/../{stem}.o']\n").unwrap();
        let t = &m.targets["t:src/main.c"];
        assert_eq!(
            t.command,
            Command::Argv(vec!["cc".into(), "src/main.c".into(), "{x}".into()])
        );
        assert_eq!(t.outputs[0].as_str(), "build/main.o");
        assert_eq!(t.inputs[0].text, "src/*.h");
        assert_eq!(t.include_dependency[0].path.as_str(), "src");
    }
}
