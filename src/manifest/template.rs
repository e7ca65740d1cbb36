//! Templates: a `[target.NAME]` table with `foreach` becomes one target
//! (an *instance*, named `NAME:PATH`) per file of the project its patterns
//! match, with the placeholders of its strings filled in from that file.
//!
//! - `{path}` the file relative to the root, `{dir}` its directory (`.` at the
//!   root), `{name}`, `{stem}`, `{ext}`; `{{` and `}}` are literal braces.
//!   In `run` a value is shell-quoted when it needs to be; elsewhere it is
//!   written as is.
//! - `{outputs:NAME}`, in any target's `run` or `command`: the outputs of the
//!   target or template NAME, which must be among its deps.
//!
//! In a table without `foreach` only `{outputs:NAME}` is a placeholder, and
//! naming a file placeholder is an error; other braces are kept as written
//! (globs such as `src/{a,b}.c`). In a template, `{IDENT}` that names no
//! placeholder is an error, so `${HOME}` must be written `${{HOME}}`; braces
//! around anything else (`{a,b}`, `{ print $1 }`) are kept.

use crate::relpath::RelPath;

/// The file an instance was made for, and the values of its placeholders.
#[derive(Debug, Clone)]
pub(super) struct Matched {
    path: String,
    dir: String,
    name: String,
    stem: String,
    ext: String,
}

impl Matched {
    pub(super) fn new(path: &RelPath) -> Matched {
        let p = path.as_str();
        let (dir, name) = match p.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => (".", p),
        };
        // `.bashrc` has no extension; `a.tar.gz` has stem `a.tar`, ext `gz`.
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, e),
            _ => (name, ""),
        };
        Matched {
            path: p.to_owned(),
            dir: dir.to_owned(),
            name: name.to_owned(),
            stem: stem.to_owned(),
            ext: ext.to_owned(),
        }
    }

    fn value(&self, var: &str) -> Option<&str> {
        Some(match var {
            "path" => &self.path,
            "dir" => &self.dir,
            "name" => &self.name,
            "stem" => &self.stem,
            "ext" => &self.ext,
            _ => return None,
        })
    }
}

/// The file placeholders, as written in errors and help.
pub(super) const VARS: [&str; 5] = ["path", "dir", "name", "stem", "ext"];

/// One piece of a string with placeholders.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(std::borrow::Cow<'a, str>),
    Var(&'a str),
    Outputs(&'a str),
}

/// Why a string's placeholders cannot be filled in.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FillError {
    /// `{IDENT}` naming no placeholder (in a template).
    Unknown(String),
    /// A file placeholder in a table without `foreach`.
    NotATemplate(String),
    /// `{outputs:NAME}` where it cannot be used.
    OutputsHere(String),
    /// `{outputs:NAME}` without NAME among the deps.
    OutputsNotADep(String),
    /// `{outputs:NAME}` naming no target or template.
    OutputsUnknown(String),
}

impl FillError {
    /// The message and the help line.
    pub(super) fn describe(&self, target: &str) -> (String, String) {
        match self {
            FillError::Unknown(p) => (
                format!("unknown placeholder `{{{p}}}` in template `{target}`"),
                format!(
                    "the placeholders are {}, and {{outputs:NAME}}; write `{{{{` and `}}}}` for literal braces (`${{{{VAR}}}}` in a shell line)",
                    VARS.iter().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", ")
                ),
            ),
            FillError::NotATemplate(p) => (
                format!("placeholder `{{{p}}}` in target `{target}`, which has no `foreach`"),
                "add `foreach = \"GLOB\"` to make it a template (one target per matching file), or write the path".to_owned(),
            ),
            FillError::OutputsHere(n) => (
                format!("`{{outputs:{n}}}` can only be used in `run` and `command`"),
                "list the paths here, or read them in the command".to_owned(),
            ),
            FillError::OutputsNotADep(n) => (
                format!("target `{target}` uses `{{outputs:{n}}}` without depending on `{n}`"),
                format!("add `\"{n}\"` to its `deps`"),
            ),
            FillError::OutputsUnknown(n) => (
                format!("`{{outputs:{n}}}` names no target or template"),
                "name a target or template of this manifest".to_owned(),
            ),
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits `s` into text, placeholders and `{outputs:NAME}`. In a template
/// `{{`/`}}` are braces; elsewhere the text is kept as written.
fn pieces(s: &str, template: bool) -> Result<Vec<Piece<'_>>, FillError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        text.push_str(&rest[..i]);
        let at = &rest[i..];
        if template && (at.starts_with("{{") || at.starts_with("}}")) {
            text.push_str(&at[..1]);
            rest = &at[2..];
            continue;
        }
        if let Some(after) = at.strip_prefix('}') {
            text.push('}');
            rest = after;
            continue;
        }
        let Some(end) = at.find('}') else {
            text.push_str(at);
            rest = "";
            break;
        };
        let inner = &at[1..end];
        // Outside templates `${name}` is the shell's, as it always was.
        let shell_var = !template && text.ends_with('$');
        let piece = if shell_var {
            None
        } else if let Some(n) = inner.strip_prefix("outputs:") {
            Some(Piece::Outputs(n))
        } else if VARS.contains(&inner) {
            if !template {
                return Err(FillError::NotATemplate(inner.to_owned()));
            }
            Some(Piece::Var(inner))
        } else if template && is_ident(inner) {
            return Err(FillError::Unknown(inner.to_owned()));
        } else {
            None
        };
        match piece {
            Some(p) => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text).into()));
                }
                out.push(p);
                rest = &at[end + 1..];
            }
            None => {
                text.push('{');
                rest = &at[1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text.into()));
    }
    Ok(out)
}

/// What `{outputs:NAME}` may name, for one target.
pub(super) trait OutputsOf {
    /// The sorted outputs of `name`, or why they cannot be used.
    fn outputs(&self, name: &str) -> Result<Vec<String>, FillError>;
}

/// No `{outputs:NAME}` allowed here.
pub(super) struct NoOutputs;

impl OutputsOf for NoOutputs {
    fn outputs(&self, name: &str) -> Result<Vec<String>, FillError> {
        Err(FillError::OutputsHere(name.to_owned()))
    }
}

/// How a filled-in value is written into its string.
#[derive(Clone, Copy)]
pub(super) enum Quote {
    /// As is (paths, argv elements).
    None,
    /// Shell-quoted when it holds anything but safe characters (`run`).
    Shell,
}

/// Fills in `s` for the instance `m` (`None`: not a template).
pub(super) fn fill(
    s: &str,
    m: Option<&Matched>,
    outputs: &dyn OutputsOf,
    quote: Quote,
) -> Result<String, FillError> {
    let mut out = String::with_capacity(s.len());
    for p in pieces(s, m.is_some())? {
        match p {
            Piece::Text(t) => out.push_str(&t),
            Piece::Var(v) => {
                let value = m.and_then(|m| m.value(v)).unwrap_or_default();
                push_quoted(&mut out, value, quote);
            }
            Piece::Outputs(n) => {
                for (i, o) in outputs.outputs(n)?.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    push_quoted(&mut out, o, quote);
                }
            }
        }
    }
    Ok(out)
}

/// Fills in one element of `command`: an element that is exactly
/// `{outputs:NAME}` becomes one element per output.
pub(super) fn fill_argv(
    s: &str,
    m: Option<&Matched>,
    outputs: &dyn OutputsOf,
) -> Result<Vec<String>, FillError> {
    let pieces = pieces(s, m.is_some())?;
    if let [Piece::Outputs(n)] = pieces.as_slice() {
        return outputs.outputs(n);
    }
    if let Some(Piece::Outputs(n)) = pieces.iter().find(|p| matches!(p, Piece::Outputs(_))) {
        // Part of a larger element, the paths would be joined into one argument.
        return Err(FillError::OutputsHere(format!(
            "{n}}}` inside a larger `command` element; make it an element of its own, `\"{{outputs:{n}}}\""
        )));
    }
    Ok(vec![fill(s, m, outputs, Quote::None)?])
}

fn push_quoted(out: &mut String, value: &str, quote: Quote) {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:@%+=,-".contains(c);
    match quote {
        Quote::Shell if value.is_empty() || !value.chars().all(safe) => {
            out.push('\'');
            out.push_str(&value.replace('\'', r"'\''"));
            out.push('\'');
        }
        _ => out.push_str(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str) -> Matched {
        Matched::new(&RelPath::normalize(p).unwrap())
    }

    struct Outs;
    impl OutputsOf for Outs {
        fn outputs(&self, name: &str) -> Result<Vec<String>, FillError> {
            match name {
                "obj" => Ok(vec!["build/a b.o".into(), "build/c.o".into()]),
                _ => Err(FillError::OutputsNotADep(name.into())),
            }
        }
    }

    #[test]
    fn placeholders_are_the_parts_of_the_matched_path() {
        let x = m("src/net/http.c");
        let f = |s| fill(s, Some(&x), &NoOutputs, Quote::None).unwrap();
        assert_eq!(
            f("{path}|{dir}|{name}|{stem}|{ext}"),
            "src/net/http.c|src/net|http.c|http|c"
        );
        let top = m("main.c");
        assert_eq!(
            fill("build/{dir}/{stem}.o", Some(&top), &NoOutputs, Quote::None).unwrap(),
            "build/./main.o"
        );
        let dot = m("d/.bashrc");
        assert_eq!(
            fill("{stem}+{ext}", Some(&dot), &NoOutputs, Quote::None).unwrap(),
            ".bashrc+"
        );
        let two = m("a.tar.gz");
        assert_eq!(
            fill("{stem}+{ext}", Some(&two), &NoOutputs, Quote::None).unwrap(),
            "a.tar+gz"
        );
    }

    #[test]
    fn braces_escape_in_templates_and_globs_stay() {
        let x = m("a.c");
        let f = |s| fill(s, Some(&x), &NoOutputs, Quote::None);
        assert_eq!(
            f("awk '{{print}}' ${{HOME}}").unwrap(),
            "awk '{print}' ${HOME}"
        );
        assert_eq!(f("src/{a,b}.h {x y}").unwrap(), "src/{a,b}.h {x y}");
        assert_eq!(f("${HOME}"), Err(FillError::Unknown("HOME".into())));
        assert_eq!(f("{stems}"), Err(FillError::Unknown("stems".into())));
        // Outside templates, text is kept as written and file placeholders are errors.
        let g = |s| fill(s, None, &NoOutputs, Quote::None);
        assert_eq!(
            g("echo {{x}} ${HOME} src/{a,b}").unwrap(),
            "echo {{x}} ${HOME} src/{a,b}"
        );
        assert_eq!(g("cc {path}"), Err(FillError::NotATemplate("path".into())));
        // A shell variable of that name outside a template is the shell's.
        assert_eq!(g("echo ${name} ${dir}/x").unwrap(), "echo ${name} ${dir}/x");
    }

    #[test]
    fn run_values_are_shell_quoted_when_needed() {
        let x = m("my dir/it's.c");
        let s = fill(
            "cc -c {path} -o build/{dir}/{stem}.o",
            Some(&x),
            &NoOutputs,
            Quote::Shell,
        )
        .unwrap();
        assert_eq!(s, r"cc -c 'my dir/it'\''s.c' -o build/'my dir'/'it'\''s'.o");
        let s = fill("ar rcs lib.a {outputs:obj}", None, &Outs, Quote::Shell).unwrap();
        assert_eq!(s, "ar rcs lib.a 'build/a b.o' build/c.o");
    }

    #[test]
    fn outputs_in_argv_splat_into_elements() {
        assert_eq!(
            fill_argv("{outputs:obj}", None, &Outs).unwrap(),
            ["build/a b.o", "build/c.o"]
        );
        assert!(matches!(
            fill_argv("-l{outputs:obj}", None, &Outs),
            Err(FillError::OutputsHere(_))
        ));
        assert_eq!(
            fill_argv("{outputs:nope}", None, &Outs),
            Err(FillError::OutputsNotADep("nope".into()))
        );
    }
}
