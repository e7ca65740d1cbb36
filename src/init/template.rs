//! Folding compile steps that differ only by their file into templates: each
//! per-file path is written with placeholders (`{path}`, `{dir}/{stem}`,
//! `{name}`, `{stem}`), braces elsewhere doubled, and steps whose patterns
//! are equal form one group. Text only.

use super::compdb::{Arg, Step};

/// The placeholder values of one file (as the template syntax defines them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVars {
    pub path: String,
    pub dir: String,
    pub name: String,
    pub stem: String,
    pub ext: String,
}

impl FileVars {
    pub fn of(path: &str) -> FileVars {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_owned(), n.to_owned()),
            None => (".".to_owned(), path.to_owned()),
        };
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_owned(), e.to_owned()),
            _ => (name.clone(), String::new()),
        };
        FileVars {
            path: path.to_owned(),
            dir,
            name,
            stem,
            ext,
        }
    }
}

/// `text` with every literal brace doubled (`{` → `{{`).
pub fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// `text` (a path derived from the file `v`: an output, a depfile) as a
/// pattern: the file's path, `dir/stem`, name or stem, tried in that order,
/// replaced by its placeholder where it ends the path (only a suffix such as
/// `.o` after it) and starts a piece of it (after the start, `/` or `=`);
/// other braces doubled. Only the tail is looked at, so a directory that
/// happens to spell the stem (`blake3.dir/blake3.c.o`) stays literal.
pub fn patternize(text: &str, v: &FileVars) -> String {
    let dir_stem = format!("{}/{}", v.dir, v.stem);
    let mut candidates: Vec<(&str, &str)> = vec![(&v.path, "{path}")];
    if v.dir != "." {
        candidates.push((&dir_stem, "{dir}/{stem}"));
    }
    candidates.push((&v.name, "{name}"));
    candidates.push((&v.stem, "{stem}"));
    for (value, placeholder) in candidates {
        if value.is_empty() {
            continue;
        }
        let Some(start) = text.rfind(value) else {
            continue;
        };
        let end = start + value.len();
        let starts_piece = start == 0 || matches!(text.as_bytes()[start - 1], b'/' | b'=');
        let suffix = &text[end..];
        if starts_piece && !suffix.contains('/') && (suffix.is_empty() || suffix.starts_with('.')) {
            return format!("{}{placeholder}{}", escape(&text[..start]), escape(suffix));
        }
    }
    escape(text)
}

/// The inverse of [`patternize`] and [`escape`]: `pattern` with the
/// placeholders of `v` put in and doubled braces made single. Used to check
/// a template gives back each command exactly.
pub fn expand(pattern: &str, v: &FileVars) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("{{") {
            out.push('{');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            out.push('}');
            rest = r;
        } else if c == '{' {
            let close = rest.find('}').expect("a placeholder is closed");
            out.push_str(match &rest[1..close] {
                "path" => &v.path,
                "dir" => &v.dir,
                "name" => &v.name,
                "stem" => &v.stem,
                "ext" => &v.ext,
                other => panic!("unknown placeholder {other}"),
            });
            rest = &rest[close + 1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// One step as a pattern: what a group's steps share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// Each argument: the pattern text, and whether it needs shell quoting
    /// (decided on the argument itself, so quoting never depends on the file).
    pub argv: Vec<(String, bool)>,
    pub output: String,
    pub depfile: Option<String>,
}

/// Steps sharing one [`Pattern`], in database order.
#[derive(Debug)]
pub struct Group {
    pub pattern: Pattern,
    pub files: Vec<String>,
}

impl Group {
    /// Whether the group holds several files, or one whose command has a
    /// brace: a template (whose doubled braces are well defined) rather
    /// than a plain target.
    pub fn is_template(&self) -> bool {
        self.files.len() > 1
            || self
                .pattern
                .argv
                .iter()
                .any(|(a, _)| a.contains("{{") || a.contains("}}"))
    }
}

/// `step` as a pattern. Only the per-file arguments get placeholders; the
/// rest is taken literally (braces doubled), so a flag that happens to
/// spell a file name never splits or merges groups.
pub fn pattern_of(step: &Step) -> Pattern {
    let v = FileVars::of(&step.file);
    let argv = step
        .argv
        .iter()
        .map(|a| {
            let text = match a {
                Arg::Fixed(s) => escape(s),
                Arg::PerFile(s) => patternize(s, &v),
            };
            (text, needs_quotes(a.text()))
        })
        .collect();
    Pattern {
        argv,
        output: patternize(&step.output, &v),
        depfile: step.depfile.as_deref().map(|d| patternize(d, &v)),
    }
}

/// Groups `steps` by pattern, groups in order of their first step.
pub fn group(steps: &[Step]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for step in steps {
        let pattern = pattern_of(step);
        match groups.iter_mut().find(|g| g.pattern == pattern) {
            Some(g) => g.files.push(step.file.clone()),
            None => groups.push(Group {
                pattern,
                files: vec![step.file.clone()],
            }),
        }
    }
    groups
}

/// Whether a shell would read `arg` as something else than itself (braces
/// included: `{a,b}` is brace expansion).
pub fn needs_quotes(arg: &str) -> bool {
    arg.is_empty()
        || !arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b))
}

/// `text` in single quotes for `sh` (a `'` inside becomes `'\''`).
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The `run` string of a pattern.
pub fn run_line(p: &Pattern) -> String {
    p.argv
        .iter()
        .map(|(a, q)| if *q { quote(a) } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::compdb::Arg::{Fixed, PerFile};
    use super::*;

    fn step(file: &str, out: &str) -> Step {
        Step {
            file: file.into(),
            argv: vec![
                Fixed("cc".into()),
                Fixed("-O2".into()),
                Fixed("-c".into()),
                PerFile(file.into()),
                Fixed("-o".into()),
                PerFile(out.into()),
            ],
            output: out.into(),
            depfile: Some(format!("{out}.d")),
        }
    }

    #[test]
    fn file_vars_follow_the_template_syntax() {
        let v = FileVars::of("src/net/http.c");
        assert_eq!(
            (&*v.dir, &*v.name, &*v.stem, &*v.ext),
            ("src/net", "http.c", "http", "c")
        );
        let v = FileVars::of("main.c");
        assert_eq!((&*v.dir, &*v.stem), (".", "main"));
        assert_eq!(FileVars::of("Makefile").ext, "");
        assert_eq!(FileVars::of(".hidden").stem, ".hidden");
    }

    #[test]
    fn cmake_and_flat_layouts_get_their_placeholders() {
        let v = FileVars::of("src/a.c");
        assert_eq!(
            patternize("build/CMakeFiles/t.dir/src/a.c.o", &v),
            "build/CMakeFiles/t.dir/{path}.o"
        );
        assert_eq!(patternize("build/src/a.o", &v), "build/{dir}/{stem}.o");
        assert_eq!(patternize("obj/a.o", &v), "obj/{stem}.o");
        assert_eq!(patternize("obj/a.c.o", &v), "obj/{name}.o");
        // Only whole pieces: `a` inside `data` or `a.c` inside `xa.c` stays.
        assert_eq!(patternize("data/xa.c.o", &v), "data/xa.c.o");
        // Only the tail: a directory spelling the stem stays literal.
        let v = FileVars::of("blake3.c");
        assert_eq!(
            patternize("build/CMakeFiles/blake3.dir/blake3.c.o", &v),
            "build/CMakeFiles/blake3.dir/{path}.o"
        );
        assert_eq!(patternize("b/blake3/x.o", &v), "b/blake3/x.o");
        assert_eq!(patternize("x{y}", &v), "x{{y}}");
    }

    #[test]
    fn patterns_expand_back_to_every_original() {
        for (file, text) in [
            ("src/a.c", "build/CMakeFiles/t.dir/src/a.c.o"),
            ("src/a.c", "build/src/a.o.d"),
            ("a.c", "build/a.o"),
            ("a.c", "weird{a}/a.c"),
            ("blake3.c", "b/blake3.dir/blake3.c.o"),
            ("a.c", "no/match.o"),
            ("d/a.b.c", "o/d/a.b.o"),
        ] {
            let v = FileVars::of(file);
            assert_eq!(expand(&patternize(text, &v), &v), text, "{file} {text}");
        }
    }

    #[test]
    fn steps_differing_only_by_file_form_one_group_and_others_their_own() {
        let mut odd = step("src/c.c", "build/src/c.o");
        odd.argv[1] = Fixed("-O0".into());
        let steps = [
            step("src/a.c", "build/src/a.o"),
            step("src/b/b.c", "build/src/b/b.o"),
            odd,
        ];
        let groups = group(&steps);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].files, ["src/a.c", "src/b/b.c"]);
        assert!(groups[0].is_template());
        assert!(!groups[1].is_template());
        assert_eq!(
            run_line(&groups[0].pattern),
            "cc -O2 -c {path} -o build/{dir}/{stem}.o"
        );
        assert_eq!(groups[0].pattern.output, "build/{dir}/{stem}.o");
        assert_eq!(
            groups[0].pattern.depfile.as_deref(),
            Some("build/{dir}/{stem}.o.d")
        );
        // Expanding the group's pattern gives back each step's command.
        for s in &steps[..2] {
            let v = FileVars::of(&s.file);
            let args: Vec<String> = groups[0]
                .pattern
                .argv
                .iter()
                .map(|(a, _)| expand(a, &v))
                .collect();
            let want: Vec<&str> = s.argv.iter().map(Arg::text).collect();
            assert_eq!(args, want);
        }
    }

    #[test]
    fn a_root_file_and_a_subdirectory_file_share_a_cmake_pattern() {
        let groups = group(&[
            step("t.c", "build/CMakeFiles/t.dir/t.c.o"),
            step("a.c", "build/CMakeFiles/t.dir/a.c.o"),
            step("src/b.c", "build/CMakeFiles/t.dir/src/b.c.o"),
        ]);
        assert_eq!(groups.len(), 1, "{groups:?}");
    }

    #[test]
    fn braces_and_spaces_are_quoted_and_braces_escaped() {
        let mut s = step("a.c", "a.o");
        s.argv.push(Fixed("-DLIST={1,2}".into()));
        s.argv.push(Fixed("-DMSG=it's".into()));
        let groups = group(&[s]);
        assert!(groups[0].is_template(), "a brace makes it a template");
        assert_eq!(
            run_line(&groups[0].pattern),
            r"cc -O2 -c {path} -o {stem}.o '-DLIST={{1,2}}' '-DMSG=it'\''s'"
        );
    }
}
