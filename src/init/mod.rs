//! `relocache init`: the text of a new `relocache.toml`, either a commented
//! starter or one generated from a compilation database
//! (`compile_commands.json`), and writing it without ever replacing a
//! manifest. Reads only the database; writes only `relocache.toml`.
//!
//! `compdb.rs` reads the database into compile steps that run from the
//! project root; `template.rs` folds the steps that differ only by their file
//! into templates; this file names the targets and writes the TOML.

pub mod compdb;
pub mod template;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::MANIFEST_NAME;
use compdb::Skipped;
use template::{expand, run_line, FileVars, Group};

/// Why `init` could not write a manifest. Every variant is the user's to fix
/// (the CLI exits 2).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("`{}` already exists\n  help: edit it, or move it away and run `relocache init` again", .0.display())]
    Exists(PathBuf),
    #[error("cannot write `{}`: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the compilation database `{}`: {source}\n  help: configure the build with `cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON` (or run Meson or `bear -- make`) and give the path of the compile_commands.json it writes", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: not a compilation database: {message}\n  help: it must be a JSON array of objects with `directory`, `file` and `command` or `arguments`", .path.display())]
    BadJson {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: entry {index} (counting from 0) {message}\n  help: each entry needs `directory`, `file` and exactly one of `command` (a shell string) or `arguments` (a list); `output` is optional", .path.display())]
    BadEntry {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("{}: no compile command is inside the project `{}`\n  help: run `relocache init` in (or `-C`) the directory holding the sources", .path.display(), .root.display())]
    NothingInside { path: PathBuf, root: PathBuf },
}

/// What `init` wrote.
#[derive(Debug, Serialize)]
pub struct InitSummary {
    /// The manifest written.
    pub manifest: PathBuf,
    /// The templates generated, with how many files each covers.
    pub templates: Vec<TemplateSummary>,
    /// The plain targets generated (one compile command each).
    pub targets: Vec<String>,
    /// Database entries left out (as comments in the manifest), with why.
    pub skipped: Vec<Skipped>,
}

/// One generated template.
#[derive(Debug, Serialize)]
pub struct TemplateSummary {
    pub name: String,
    pub files: usize,
}

/// The commented starter manifest: a template compiling every C file with a
/// depfile, and a link step over its outputs.
pub const STARTER: &str = r#"# relocache.toml: what to build, what each step reads and writes.
# Reference: the manifest page of the relocache book (docs/src/manifest.md).
# Try it: `relocache build`, then `relocache build` again (all hits),
# `relocache status`, `relocache explain TARGET`.

[project]
# Where the cache lives (relative to this file). Default: ~/.cache/relocache.
# depot = ".relocache"

[defaults]
# Programs whose content enters every key: a compiler upgrade rebuilds.
tools = ["cc"]

# A template: one target ("instance") per file matching `foreach`, named
# `obj:src/main.c`. In its fields, {path} is the file relative to this
# directory (src/net/http.c), {dir} its directory (src/net, `.` at the top),
# {name} (http.c), {stem} (http), {ext} (c); write {{ and }} for literal braces.
[target.obj]
foreach = ["src/**/*.c"]
# Commands run in this directory, with `sh -c`. Keep them free of absolute
# paths, so the cache stays valid when the project moves.
run = "cc -O2 -Iinclude -c {path} -o build/{dir}/{stem}.o -MD -MF build/{dir}/{stem}.d"
# The compiler's depfile names every header it read: relocache keys each
# object by exactly those, so editing a header rebuilds only its includers.
depfile = "build/{dir}/{stem}.d"
outputs = ["build/{dir}/{stem}.o"]
# Files a command reads that no depfile lists (globs allowed):
# inputs = ["data/*.txt"]
# Environment variables that change the result:
# env = ["CFLAGS"]

# The link step: {outputs:obj} is every object of the template `obj`
# (which must be in `deps`).
[target.app]
run = "cc -o build/app {outputs:obj}"
deps = ["obj"]
outputs = ["build/app"]
"#;

/// Writes `text` as `root/relocache.toml`, never replacing an existing one
/// (the file is created exclusively, so a race cannot replace it either).
pub fn write_new(root: &Path, text: &str) -> Result<PathBuf, InitError> {
    let path = root.join(MANIFEST_NAME);
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(InitError::Exists(path))
        }
        Err(source) => return Err(InitError::Write { path, source }),
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| InitError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// The manifest for the compilation database at `db_path` (absolute; `shown`
/// is how the user spelled it, for messages and the header comment), for the
/// project at `root` (absolute), and what it holds (its `manifest` left empty
/// for the caller, who writes it).
pub fn from_compile_commands(
    root: &Path,
    db_path: &Path,
    shown: &Path,
) -> Result<(String, InitSummary), InitError> {
    let text = std::fs::read_to_string(db_path).map_err(|source| InitError::Read {
        path: shown.to_path_buf(),
        source,
    })?;
    // The database spells paths from the canonical root (CMake does), the
    // user may have given another spelling: both count as inside.
    let mut roots = vec![compdb::lexical(root)];
    if let Ok(real) = std::fs::canonicalize(root) {
        if !roots.contains(&real) {
            roots.push(real);
        }
    }
    let db = compdb::read(&text, &compdb::lexical(db_path), shown, &roots)?;
    if db.steps.is_empty() {
        return Err(InitError::NothingInside {
            path: shown.to_path_buf(),
            root: root.to_path_buf(),
        });
    }
    let groups = template::group(&db.steps);
    Ok(render(&groups, &db.skipped, shown))
}

/// A target name for `group`: the CMake target (`CMakeFiles/NAME.dir`) or
/// Meson target (`NAME.p`) its outputs are under, else the last directory
/// of its outputs, else `obj`; then the extension for a template or the
/// file's stem for a single command; `-2`, `-3`… when taken.
fn name_of(group: &Group, taken: &[String]) -> String {
    let out = &group.pattern.output;
    let fixed = &out[..out.find('{').unwrap_or(out.len())];
    let dirs: Vec<&str> = fixed.split('/').collect();
    let dirs = &dirs[..dirs.len().saturating_sub(1)];
    let base = dirs
        .iter()
        .rev()
        .find_map(|d| d.strip_suffix(".dir").or_else(|| d.strip_suffix(".p")))
        .or_else(|| dirs.last().copied())
        .filter(|b| !b.is_empty())
        .unwrap_or("obj");
    let v = FileVars::of(&group.files[0]);
    let suffix = if group.is_template() { &v.ext } else { &v.stem };
    let raw = if suffix.is_empty() {
        base.to_owned()
    } else {
        format!("{base}-{suffix}")
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = clean.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{clean}-{n}");
        n += 1;
    }
    name
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(toml_str).collect();
    format!("[{}]", items.join(", "))
}

fn render(groups: &[Group], skipped: &[Skipped], db_path: &Path) -> (String, InitSummary) {
    let mut s = String::new();
    let steps: usize = groups.iter().map(|g| g.files.len()).sum();
    s.push_str(&format!(
        "# Generated by `relocache init --from-compile-commands {}` from {steps} compile\n",
        db_path.display()
    ));
    s.push_str(
        "# commands. Each runs from this directory (paths rewritten from the build\n\
         # directory); gcc and clang write a depfile naming the headers they read.\n\
         # A template covers the commands that differ only by their file.\n\
         # Reference: docs/src/manifest.md.\n",
    );
    if !skipped.is_empty() {
        s.push_str("#\n# Left out (relocache cannot run these from this project):\n");
        for k in skipped {
            s.push_str(&format!("#   {}: {}\n", k.file, k.reason));
        }
    }
    // The compilers' content keys every step: a compiler upgrade must miss.
    // Tools are named as PATH finds them, so only names found there are listed.
    let mut compilers: Vec<String> = groups
        .iter()
        .filter_map(|g| g.pattern.argv.first())
        .filter_map(|(prog, _)| on_path_as(prog))
        .collect();
    compilers.sort();
    compilers.dedup();
    if !compilers.is_empty() {
        s.push_str(&format!(
            "\n[defaults]\ntools = {}   # their content enters every key\n",
            toml_list(compilers.iter().map(String::as_str))
        ));
    }
    let mut summary = InitSummary {
        manifest: PathBuf::new(),
        templates: Vec::new(),
        targets: Vec::new(),
        skipped: skipped.to_vec(),
    };
    let mut names: Vec<String> = Vec::new();
    for g in groups {
        let name = name_of(g, &names);
        s.push('\n');
        if g.is_template() {
            render_template(&mut s, &name, g);
            summary.templates.push(TemplateSummary {
                name: name.clone(),
                files: g.files.len(),
            });
        } else {
            render_target(&mut s, &name, g);
            summary.targets.push(name.clone());
        }
        names.push(name);
    }
    render_link_stub(&mut s, &names);
    (s, summary)
}

/// The name PATH finds `prog` under (`/usr/bin/cc` → `cc`), when the
/// program PATH finds by that name is `prog` itself.
fn on_path_as(prog: &str) -> Option<String> {
    let name = Path::new(prog).file_name()?.to_str()?.to_owned();
    if !prog.contains('/') {
        return Some(name);
    }
    let want = std::fs::canonicalize(prog).ok()?;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(&name))
        .find(|c| c.is_file())
        .and_then(|c| std::fs::canonicalize(c).ok())
        .filter(|found| *found == want)
        .map(|_| name)
}

fn render_template(s: &mut String, name: &str, g: &Group) {
    let p = &g.pattern;
    s.push_str(&format!("[target.{name}]\n"));
    s.push_str(&format!(
        "foreach = {}\n",
        toml_list(g.files.iter().map(String::as_str))
    ));
    s.push_str(&format!("run = {}\n", toml_str(&run_line(p))));
    if let Some(d) = &p.depfile {
        s.push_str(&format!("depfile = {}\n", toml_str(d)));
    } else {
        s.push_str(NO_DEPFILE);
    }
    s.push_str(&format!("outputs = {}\n", toml_list([p.output.as_str()])));
}

/// A single command: the pattern expanded back for its one file (it holds no
/// literal brace, or it would be a template).
fn render_target(s: &mut String, name: &str, g: &Group) {
    let p = &g.pattern;
    let v = FileVars::of(&g.files[0]);
    s.push_str(&format!("[target.{name}]\n"));
    s.push_str(&format!("run = {}\n", toml_str(&expand(&run_line(p), &v))));
    s.push_str(&format!("inputs = {}\n", toml_list([v.path.as_str()])));
    if let Some(d) = &p.depfile {
        s.push_str(&format!("depfile = {}\n", toml_str(&expand(d, &v))));
    } else {
        s.push_str(NO_DEPFILE);
    }
    s.push_str(&format!(
        "outputs = {}\n",
        toml_list([expand(&p.output, &v).as_str()])
    ));
}

const NO_DEPFILE: &str = "# Not a gcc/clang-like compiler: no depfile. List the headers it reads:\n# inputs = [\"include/**/*.h\"]\n";

/// The link step, commented: the database lists compile commands only.
fn render_link_stub(s: &mut String, names: &[String]) {
    let outputs: Vec<String> = names.iter().map(|n| format!("{{outputs:{n}}}")).collect();
    s.push_str(&format!(
        "\n# The link step (compile_commands.json lists compile commands only):\n\
         # uncomment, then edit the command and the output.\n\
         # [target.link]\n\
         # run = \"cc -o build/app {}\"\n\
         # deps = {}\n\
         # outputs = [\"build/app\"]\n",
        outputs.join(" "),
        toml_list(names.iter().map(String::as_str))
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_is_valid_toml_with_a_template_a_depfile_and_a_link_step() {
        let v: toml::Table = toml::from_str(STARTER).unwrap();
        let obj = &v["target"]["obj"];
        assert!(obj["foreach"].is_array());
        assert!(obj["depfile"].as_str().unwrap().contains("{stem}"));
        assert!(v["target"]["app"]["run"]
            .as_str()
            .unwrap()
            .contains("{outputs:obj}"));
    }

    fn generate(json: &str) -> String {
        let roots = [PathBuf::from("/p")];
        let path = Path::new("/p/build/compile_commands.json");
        let db = compdb::read(json, path, path, &roots).unwrap();
        render(
            &template::group(&db.steps),
            &db.skipped,
            Path::new("build/compile_commands.json"),
        )
        .0
    }

    #[test]
    fn a_database_becomes_templates_a_target_and_a_link_stub_that_parse() {
        let cmd = |f: &str, flags: &str| {
            format!(
                r#"{{"directory": "/p/build", "file": "/p/{f}", "command": "cc {flags} -I/p/include -o CMakeFiles/foo.dir/{f}.o -c /p/{f}"}}"#
            )
        };
        let json = format!(
            "[{}, {}, {}, {}]",
            cmd("src/a.c", "-O2"),
            cmd("src/net/b.c", "-O2"),
            cmd("src/odd.c", "-O0"),
            r#"{"directory": "/x", "file": "/x/y.c", "command": "cc -c y.c -o y.o"}"#
        );
        let text = generate(&json);
        let v: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let t = &v["target"];
        assert_eq!(t["foo-c"]["foreach"].as_array().unwrap().len(), 2, "{text}");
        assert_eq!(
            t["foo-c"]["run"].as_str().unwrap(),
            "cc -O2 -Iinclude -o build/CMakeFiles/foo.dir/{path}.o -c {path} -MD -MF build/CMakeFiles/foo.dir/{path}.o.d"
        );
        assert_eq!(
            t["foo-odd"]["inputs"].as_array().unwrap()[0].as_str(),
            Some("src/odd.c")
        );
        assert_eq!(
            t["foo-odd"]["depfile"].as_str(),
            Some("build/CMakeFiles/foo.dir/src/odd.c.o.d")
        );
        assert!(
            text.contains("#   /x/y.c: outside the project root"),
            "{text}"
        );
        assert!(
            text.contains("# run = \"cc -o build/app {outputs:foo-c} {outputs:foo-odd}\""),
            "{text}"
        );
    }

    #[test]
    fn names_come_from_the_cmake_target_and_stay_unique() {
        let json = r#"[
          {"directory": "/p/b", "file": "/p/a.c", "command": "cc -o CMakeFiles/z.dir/a.c.o -c /p/a.c"},
          {"directory": "/p/b", "file": "/p/c.c", "command": "cc -o CMakeFiles/z.dir/c.c.o -c /p/c.c"},
          {"directory": "/p/b", "file": "/p/d.c", "command": "cc -g -o CMakeFiles/z.dir/d.c.o -c /p/d.c"},
          {"directory": "/p/b", "file": "/p/e.c", "command": "cc -g -o CMakeFiles/z.dir/e.c.o -c /p/e.c"},
          {"directory": "/p", "file": "f.c", "command": "cc -o f.o -c f.c"}
        ]"#;
        let v: toml::Table = toml::from_str(&generate(json)).unwrap();
        let names: Vec<&String> = v["target"].as_table().unwrap().keys().collect();
        assert_eq!(names, ["obj-f", "z-c", "z-c-2"]);
    }
}
