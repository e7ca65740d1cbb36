//! Reading a compilation database (`compile_commands.json`, as CMake, Meson
//! and Bear write it) into compile steps that run from the project root:
//! every path in the command made relative to the root, the output taken
//! from `-o`, and a Make-syntax depfile asked of gcc/clang-like compilers.
//! Pure text and path arithmetic: never reads the source tree.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::InitError;

/// One entry of the database, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    directory: String,
    file: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    arguments: Option<Vec<String>>,
    #[serde(default)]
    output: Option<String>,
}

/// A compile step rewritten to run from the project root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The source file, relative to the root (`src/net/http.c`).
    pub file: String,
    /// The command, every path argument relative to the root (or absolute
    /// when outside it, like `/usr/include`).
    pub argv: Vec<Arg>,
    /// The object file, relative to the root.
    pub output: String,
    /// The depfile the command writes, relative to the root, when the
    /// compiler is gcc/clang-like.
    pub depfile: Option<String>,
}

/// One argument of a [`Step`]'s command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Text that stays as it is for every file.
    Fixed(String),
    /// A path that depends on the file compiled: the source itself, the
    /// output, the depfile or the depfile's target name.
    PerFile(String),
}

impl Arg {
    pub fn text(&self) -> &str {
        match self {
            Arg::Fixed(s) | Arg::PerFile(s) => s,
        }
    }
}

/// What reading the database gave: the steps in the project, and the entries
/// left out with the reason (shown as comments in the manifest).
#[derive(Debug, Default)]
pub struct Database {
    pub steps: Vec<Step>,
    pub skipped: Vec<Skipped>,
}

/// An entry that cannot become a target, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// The `file` of the entry, as written.
    pub file: String,
    pub reason: String,
}

/// Parses the database text read from `path` (absolute: a relative
/// `directory` is relative to its directory; `shown` names it in errors) for
/// a project whose root is spelled `roots` (absolute: given and canonical).
pub fn read(
    text: &str,
    path: &Path,
    shown: &Path,
    roots: &[PathBuf],
) -> Result<Database, InitError> {
    let source = shown;
    let raw: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| InitError::BadJson {
            path: source.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut db = Database::default();
    for (index, value) in raw.into_iter().enumerate() {
        let entry: RawEntry = serde_json::from_value(value).map_err(|e| InitError::BadEntry {
            path: source.to_path_buf(),
            index,
            message: e.to_string(),
        })?;
        match step(&entry, base, roots) {
            Ok(s) => db.steps.push(s),
            Err(Refusal::Skip(reason)) => db.skipped.push(Skipped {
                file: entry.file.clone(),
                reason,
            }),
            Err(Refusal::Bad(message)) => {
                return Err(InitError::BadEntry {
                    path: source.to_path_buf(),
                    index,
                    message,
                })
            }
        }
    }
    Ok(db)
}

enum Refusal {
    /// The entry is valid but cannot become a target (outside the project…).
    Skip(String),
    /// The entry is malformed.
    Bad(String),
}

/// Options whose value is a path, in the separate (`-I dir`) or joined
/// (`-Idir`) form. `-o`, `-MF`, `-MT` and `-MQ` are handled on their own.
const PATH_OPTIONS: &[&str] = &[
    "-I",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-include",
    "-imacros",
    "-L",
    "-B",
    "--sysroot",
    "-isysroot",
];

/// Options whose separate value is not a path (so it is not rewritten).
const VALUE_OPTIONS: &[&str] = &[
    "-D",
    "-U",
    "-x",
    "-arch",
    "-target",
    "-Xclang",
    "-Xlinker",
    "-Xassembler",
    "-Xpreprocessor",
    "-aux-info",
];

fn step(e: &RawEntry, base: &Path, roots: &[PathBuf]) -> Result<Step, Refusal> {
    let argv = match (&e.arguments, &e.command) {
        (Some(a), None) => a.clone(),
        (None, Some(c)) => shlex::split(c)
            .ok_or_else(|| Refusal::Bad(format!("`command` is not a valid shell string: {c}")))?,
        (Some(_), Some(_)) => {
            return Err(Refusal::Bad(
                "has both `command` and `arguments` (it needs exactly one)".into(),
            ))
        }
        (None, None) => {
            return Err(Refusal::Bad(
                "has neither `command` nor `arguments` (it needs exactly one)".into(),
            ))
        }
    };
    if argv.is_empty() {
        return Err(Refusal::Bad("has an empty command".into()));
    }
    let dir = lexical(&base.join(&e.directory));
    let file = inside(&dir.join(&e.file), roots).ok_or_else(|| {
        Refusal::Skip("outside the project root (relocache keys files inside it only)".into())
    })?;
    let rewriter = Rewriter {
        dir: &dir,
        roots,
        file: &file,
    };
    let mut out = rewriter.args(&argv)?;
    let output = match (&out.output, &e.output) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => {
            let o = rewriter.path(o);
            out.argv.push(Arg::Fixed("-o".into()));
            out.argv.push(Arg::PerFile(o.clone()));
            o
        }
        (None, None) => {
            return Err(Refusal::Skip(
                "no `-o` and no `output`: relocache needs to know what the command writes".into(),
            ))
        }
    };
    if Path::new(&output).is_absolute() {
        return Err(Refusal::Skip(format!(
            "its output `{output}` is outside the project root"
        )));
    }
    let depfile = if gcc_like(&argv[0]) {
        Some(ask_depfile(&mut out, &output))
    } else {
        None
    };
    Ok(Step {
        file,
        argv: out.argv,
        output,
        depfile,
    })
}

/// Makes the command write a depfile (`-MD -MF <output>.d` unless it already
/// asks for one) and returns its path.
fn ask_depfile(out: &mut Rewritten, output: &str) -> String {
    if !out.makes_deps {
        out.argv.push(Arg::Fixed("-MD".into()));
    }
    match &out.depfile {
        Some(d) => d.clone(),
        None => {
            let d = format!("{output}.d");
            out.argv.push(Arg::Fixed("-MF".into()));
            out.argv.push(Arg::PerFile(d.clone()));
            d
        }
    }
}

/// Whether the compiler takes gcc's `-MD -MF` (cc, gcc, clang, c++, g++,
/// clang++, with a version suffix like `gcc-12` or a target prefix like
/// `x86_64-linux-gnu-gcc`).
pub fn gcc_like(program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    // `gcc-12`, `clang-17`, `clang++-17.0.1`: drop a numeric version suffix.
    let name = match name.rsplit_once('-') {
        Some((head, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            head
        }
        _ => name,
    };
    ["cc", "gcc", "clang", "c++", "g++", "clang++"]
        .iter()
        .any(|c| name == *c || name.ends_with(&format!("-{c}")))
}

struct Rewriter<'a> {
    dir: &'a Path,
    roots: &'a [PathBuf],
    file: &'a str,
}

struct Rewritten {
    argv: Vec<Arg>,
    output: Option<String>,
    depfile: Option<String>,
    /// `-MD` or `-MMD` is there already.
    makes_deps: bool,
}

impl Rewriter<'_> {
    /// `p` (relative to the entry's directory, or absolute) relative to the
    /// root, or absolute when it is outside the root.
    fn path(&self, p: &str) -> String {
        let abs = lexical(&self.dir.join(p));
        inside(&abs, self.roots).unwrap_or_else(|| abs.to_string_lossy().into_owned())
    }

    fn args(&self, argv: &[String]) -> Result<Rewritten, Refusal> {
        let mut r = Rewritten {
            argv: vec![Arg::Fixed(argv[0].clone())],
            output: None,
            depfile: None,
            makes_deps: false,
        };
        let mut i = 1;
        while i < argv.len() {
            let a = argv[i].as_str();
            let next = || {
                argv.get(i + 1)
                    .ok_or_else(|| Refusal::Bad(format!("`{a}` at the end of the command")))
            };
            if matches!(a, "-o" | "-MF" | "-MT" | "-MQ") {
                let v = self.path(next()?);
                match a {
                    "-o" => r.output = Some(v.clone()),
                    "-MF" => r.depfile = Some(v.clone()),
                    _ => {}
                }
                r.argv.push(Arg::Fixed(a.into()));
                r.argv.push(Arg::PerFile(v));
                i += 2;
                continue;
            }
            if let Some(v) = a.strip_prefix("-o").filter(|v| !v.is_empty()) {
                // `-ofile`: split, so the output is an argument of its own.
                let v = self.path(v);
                r.output = Some(v.clone());
                r.argv.push(Arg::Fixed("-o".into()));
                r.argv.push(Arg::PerFile(v));
            } else if matches!(a, "-MD" | "-MMD") {
                r.makes_deps = true;
                r.argv.push(Arg::Fixed(a.into()));
            } else if PATH_OPTIONS.contains(&a) {
                r.argv.push(Arg::Fixed(a.into()));
                r.argv.push(Arg::Fixed(self.path(next()?)));
                i += 1;
            } else if let Some((opt, v)) = joined_path_option(a) {
                r.argv.push(Arg::Fixed(format!("{opt}{}", self.path(v))));
            } else if VALUE_OPTIONS.contains(&a) {
                r.argv.push(Arg::Fixed(a.into()));
                r.argv.push(Arg::Fixed(next()?.clone()));
                i += 1;
            } else if a.starts_with('-') {
                r.argv.push(Arg::Fixed(a.into()));
            } else {
                // A positional argument is a file: the source, or another input.
                let v = self.path(a);
                if v == self.file {
                    r.argv.push(Arg::PerFile(v));
                } else {
                    r.argv.push(Arg::Fixed(v));
                }
            }
            i += 1;
        }
        Ok(r)
    }
}

/// `-Iinclude` → (`-I`, `include`); `--sysroot=/x` → (`--sysroot=`, `/x`).
fn joined_path_option(a: &str) -> Option<(&str, &str)> {
    for opt in PATH_OPTIONS {
        if let Some(v) = a.strip_prefix(opt) {
            if let Some(v) = v.strip_prefix('=') {
                return Some((&a[..opt.len() + 1], v));
            }
            // Only the one-letter options are written joined (`-Idir`): for
            // `-include`, a longer option like `-includefoo` is not a path.
            if !v.is_empty() && opt.len() == 2 {
                return Some((opt, v));
            }
        }
    }
    None
}

/// `abs` relative to the first root it is inside (`.` for the root itself),
/// `/`-separated; `None` when it is outside every root.
fn inside(abs: &Path, roots: &[PathBuf]) -> Option<String> {
    roots.iter().find_map(|root| {
        let rel = abs.strip_prefix(root).ok()?;
        let s = rel.to_str()?.to_owned();
        Some(if s.is_empty() { ".".into() } else { s })
    })
}

/// `p` with `.` and `a/..` removed, without reading the disk (the paths of a
/// compilation database name where files will be, not always where they are).
pub fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<PathBuf> {
        vec![PathBuf::from("/p")]
    }

    fn read_one(json: &str) -> Database {
        let path = Path::new("/p/build/compile_commands.json");
        read(json, path, path, &roots()).unwrap()
    }

    fn texts(s: &Step) -> Vec<&str> {
        s.argv.iter().map(Arg::text).collect()
    }

    #[test]
    fn paths_become_relative_to_the_root_and_a_depfile_is_asked() {
        let db = read_one(
            r#"[{"directory": "/p/build", "file": "/p/src/a.c",
                "command": "/usr/bin/cc -I/p/include -I../gen -isystem /usr/include/x -DX=1 -o CMakeFiles/a.dir/src/a.c.o -c /p/src/a.c"}]"#,
        );
        let s = &db.steps[0];
        assert_eq!(s.file, "src/a.c");
        assert_eq!(s.output, "build/CMakeFiles/a.dir/src/a.c.o");
        assert_eq!(
            s.depfile.as_deref(),
            Some("build/CMakeFiles/a.dir/src/a.c.o.d")
        );
        assert_eq!(
            texts(s),
            [
                "/usr/bin/cc",
                "-Iinclude",
                "-Igen",
                "-isystem",
                "/usr/include/x",
                "-DX=1",
                "-o",
                "build/CMakeFiles/a.dir/src/a.c.o",
                "-c",
                "src/a.c",
                "-MD",
                "-MF",
                "build/CMakeFiles/a.dir/src/a.c.o.d"
            ]
        );
    }

    #[test]
    fn an_existing_depfile_is_kept_and_arguments_are_taken_as_argv() {
        let db = read_one(
            r#"[{"directory": "/p", "file": "a.c", "output": "a.o",
                "arguments": ["clang-17", "-MMD", "-MF", "deps/a.d", "-MT", "a.o", "-c", "a.c", "-oa.o"]}]"#,
        );
        let s = &db.steps[0];
        assert_eq!(s.depfile.as_deref(), Some("deps/a.d"));
        assert_eq!(
            texts(s),
            ["clang-17", "-MMD", "-MF", "deps/a.d", "-MT", "a.o", "-c", "a.c", "-o", "a.o"]
        );
    }

    #[test]
    fn output_comes_from_the_entry_when_the_command_has_no_o() {
        let db = read_one(
            r#"[{"directory": "/p/build", "file": "../a.c", "output": "a.o", "arguments": ["gcc", "-c", "../a.c"]}]"#,
        );
        assert_eq!(db.steps[0].output, "build/a.o");
        assert_eq!(
            texts(&db.steps[0]),
            [
                "gcc",
                "-c",
                "a.c",
                "-o",
                "build/a.o",
                "-MD",
                "-MF",
                "build/a.o.d"
            ]
        );
    }

    #[test]
    fn other_compilers_get_no_depfile() {
        let db = read_one(
            r#"[{"directory": "/p", "file": "a.cu", "arguments": ["nvcc", "-c", "a.cu", "-o", "a.o"]}]"#,
        );
        assert_eq!(db.steps[0].depfile, None);
        assert_eq!(texts(&db.steps[0]), ["nvcc", "-c", "a.cu", "-o", "a.o"]);
    }

    #[test]
    fn files_and_outputs_outside_the_project_are_skipped_with_the_reason() {
        let db = read_one(
            r#"[{"directory": "/elsewhere", "file": "x.c", "arguments": ["cc", "-c", "x.c", "-o", "x.o"]},
                {"directory": "/p", "file": "y.c", "arguments": ["cc", "-c", "y.c", "-o", "/tmp/y.o"]},
                {"directory": "/p", "file": "z.c", "arguments": ["cc", "-c", "z.c"]}]"#,
        );
        assert!(db.steps.is_empty());
        let reasons: Vec<&str> = db.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(
            reasons[0].contains("outside the project root"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("`/tmp/y.o` is outside"), "{reasons:?}");
        assert!(reasons[2].contains("no `-o`"), "{reasons:?}");
    }

    #[test]
    fn malformed_databases_are_refused_with_the_place() {
        let src = Path::new("/p/cc.json");
        let e = read("[{\"directory\": ", src, src, &roots()).unwrap_err();
        assert!(matches!(e, InitError::BadJson { line: 1, .. }), "{e}");
        let e = read("{}", src, src, &roots()).unwrap_err();
        assert!(matches!(e, InitError::BadJson { .. }), "{e}");
        for (entry, words) in [
            (
                r#"{"file": "a.c", "command": "cc"}"#,
                "missing field `directory`",
            ),
            (r#"{"directory": "/p", "file": "a.c"}"#, "neither `command`"),
            (
                r#"{"directory": "/p", "file": "a.c", "command": "cc", "arguments": ["cc"]}"#,
                "both `command`",
            ),
            (
                r#"{"directory": "/p", "file": "a.c", "command": "cc 'a"}"#,
                "not a valid shell",
            ),
            (
                r#"{"directory": "/p", "file": "a.c", "arguments": []}"#,
                "empty command",
            ),
            (
                r#"{"directory": "/p", "file": "a.c", "arguments": ["cc", "-o"]}"#,
                "`-o` at the end",
            ),
        ] {
            let e = read(&format!("[{entry}]"), src, src, &roots()).unwrap_err();
            let text = e.to_string();
            assert!(
                matches!(e, InitError::BadEntry { index: 0, .. }) && text.contains(words),
                "{entry}: {text}"
            );
        }
    }

    #[test]
    fn gcc_like_compilers_are_recognized_by_name() {
        for c in [
            "cc",
            "/usr/bin/gcc",
            "gcc-12",
            "clang++-17.0.1",
            "x86_64-linux-gnu-gcc-12",
            "c++",
            "g++",
        ] {
            assert!(gcc_like(c), "{c}");
        }
        for c in ["nvcc", "cl.exe", "icc-x", "tcc", "gcc-wrapper"] {
            assert!(!gcc_like(c), "{c}");
        }
    }
}
