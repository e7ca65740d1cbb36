//! Parsing Make-syntax dependency files ("depfiles"): the prerequisites a compiler says it
//! read (`gcc -MD`, `rustc --emit=dep-info`, `nvcc -M`, `sass --dependency-file`).
//!
//! Pure text → data: no I/O, no path resolution (a prerequisite is returned as the depfile
//! spells it, absolute or relative to where the command ran; the caller resolves it). One
//! pass over the bytes, no regex: it runs on every miss of a target with a depfile.
//!
//! What is accepted is what real tools write, read the way GNU make and ninja read it:
//! - rules `TARGETS: PREREQUISITES`, several per file, several targets per rule; the
//!   prerequisites of every rule are returned, targets never (so the phony `header.h:`
//!   rules of `-MP` add nothing). The separator is a `:` followed by whitespace or the end
//!   of the line (so `a:b.o` and `C:x` stay names; nvcc's `x.o : x.cu` works);
//! - `\` + space or tab: a space in a name. Backslashes before it follow gcc and make:
//!   2N+1 backslashes and a space are N backslashes and a space; 2N and a space are N
//!   backslashes ending the name;
//! - `\#` is `#` (with any backslashes before it kept, as gcc writes `a\#` as `a\\#`);
//!   a `#` not escaped starts a comment to the end of the line (rustc's `# env-dep:`);
//! - `$$` is `$`; a lone `$` is kept;
//! - `\` + LF or CRLF continues the line; CRLF line ends; blank lines; trailing whitespace;
//!   a last line without a newline; an empty file (no prerequisites);
//! - any other backslash is literal (`a\b` stays `a\b`); gcc does not escape `:`, so
//!   neither is `\:` unescaped.
//!
//! Refused, with the 1-based line: prerequisites without a `:` (a line of names with no
//! separator), an empty target before `:`, a NUL byte, a name that is not UTF-8.
//! Not representable (gcc writes it ambiguously): a name that ends in a backslash.

use std::collections::HashSet;
use std::fmt;

/// A depfile that cannot be read, with the 1-based line where the problem is.
///
/// The path of the depfile is not part of it: the caller knows it and renders
/// `PATH:LINE: REASON` from [`DepfileError::line`] and [`DepfileError::kind`]
/// (`Display` alone gives `line LINE: REASON`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct DepfileError {
    /// 1-based line in the depfile (a physical line: continuations count).
    pub line: usize,
    /// What is wrong there.
    pub kind: DepfileErrorKind,
}

/// What is wrong with a depfile line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepfileErrorKind {
    /// Names on a line with no `target:` before them.
    MissingColon,
    /// A `:` with no target before it.
    EmptyTarget,
    /// A NUL byte.
    Nul,
    /// A name that is not valid UTF-8 (shown lossily).
    NotUtf8(String),
}

impl fmt::Display for DepfileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepfileErrorKind::MissingColon => f.write_str(
                "names without a `target:` before them (expected `target: prerequisites`)",
            ),
            DepfileErrorKind::EmptyTarget => f.write_str("a `:` with no target before it"),
            DepfileErrorKind::Nul => f.write_str("a NUL byte"),
            DepfileErrorKind::NotUtf8(lossy) => write!(f, "`{lossy}` is not valid UTF-8"),
        }
    }
}

impl DepfileErrorKind {
    /// What the user can do about it.
    pub fn help(&self) -> &'static str {
        match self {
            DepfileErrorKind::NotUtf8(_) => "relocache keys only UTF-8 file names; rename the file",
            _ => "the command must write a Make-syntax depfile (`target: prerequisites`), as `gcc -MD -MF FILE` does",
        }
    }
}

/// Where the parser is within a logical line (a line with its continuations joined).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Section {
    /// Before the `:`: names here are targets, discarded.
    #[default]
    Targets,
    /// After the `:`: names here are prerequisites.
    Prereqs,
}

/// The prerequisites of every rule in `text`, in first-seen order, each once, spelled as
/// the depfile spells them once unescaped (absolute or relative to the directory the
/// command ran in). Targets are never included. An empty file, or rules with no
/// prerequisites, give an empty list.
pub fn parse(text: &[u8]) -> Result<Vec<String>, DepfileError> {
    let mut parser = Parser::default();
    parser.run(text)?;
    Ok(parser.prereqs)
}

#[derive(Default)]
struct Parser {
    /// The current physical line (1-based once running).
    line: usize,
    section: Section,
    /// Targets seen on the current logical line, and the line the first one is on.
    targets: usize,
    targets_line: usize,
    /// The name being read (unescaped bytes) and the line it started on.
    name: Vec<u8>,
    name_line: usize,
    prereqs: Vec<String>,
    seen: HashSet<String>,
}

impl Parser {
    fn run(&mut self, text: &[u8]) -> Result<(), DepfileError> {
        self.line = 1;
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            match b {
                b'\\' => i = self.backslashes(text, i)?,
                b'$' => {
                    self.push(b'$');
                    i += if text.get(i + 1) == Some(&b'$') { 2 } else { 1 };
                }
                b' ' | b'\t' => {
                    self.end_name()?;
                    i += 1;
                }
                b'\r' if text.get(i + 1) == Some(&b'\n') => i += 1, // the LF ends the line
                b'\r' => {
                    self.end_name()?;
                    i += 1;
                }
                b'\n' => {
                    self.end_line()?;
                    i += 1;
                }
                b'#' => {
                    self.end_name()?;
                    i = memchr::memchr(b'\n', &text[i..]).map_or(text.len(), |n| i + n);
                }
                b':' if self.section == Section::Targets && ends_name(text, i + 1) => {
                    self.end_name()?;
                    if self.targets == 0 {
                        return Err(self.error(self.line, DepfileErrorKind::EmptyTarget));
                    }
                    self.section = Section::Prereqs;
                    i += 1;
                }
                0 => return Err(self.error(self.line, DepfileErrorKind::Nul)),
                _ => {
                    self.push(b);
                    i += 1;
                }
            }
        }
        self.end_line()
    }

    /// Reads a run of backslashes at `i` and what follows it; returns the next index.
    fn backslashes(&mut self, text: &[u8], i: usize) -> Result<usize, DepfileError> {
        let run = text[i..].iter().take_while(|&&c| c == b'\\').count();
        let next = i + run;
        match text.get(next) {
            Some(b' ' | b'\t') if run % 2 == 1 => {
                self.push_n(b'\\', run / 2);
                self.push(text[next]);
                Ok(next + 1)
            }
            Some(b' ' | b'\t') => {
                // 2N backslashes: N of them end the name; the blank separates.
                self.push_n(b'\\', run / 2);
                Ok(next)
            }
            Some(b'#') => {
                self.push_n(b'\\', run - 1);
                self.push(b'#');
                Ok(next + 1)
            }
            Some(b'\n') => {
                self.continuation(run)?;
                Ok(next + 1)
            }
            Some(b'\r') if text.get(next + 1) == Some(&b'\n') => {
                self.continuation(run)?;
                Ok(next + 2)
            }
            None => {
                // A continuation into the end of the file.
                self.push_n(b'\\', run - 1);
                Ok(next)
            }
            Some(_) => {
                self.push_n(b'\\', run);
                Ok(next)
            }
        }
    }

    /// A `\` + newline (after `run - 1` literal backslashes): the line goes on, the name
    /// ends there, as make reads a continuation as one blank.
    fn continuation(&mut self, run: usize) -> Result<(), DepfileError> {
        self.push_n(b'\\', run - 1);
        self.end_name()?;
        self.line += 1;
        Ok(())
    }

    fn push(&mut self, b: u8) {
        if self.name.is_empty() {
            self.name_line = self.line;
        }
        self.name.push(b);
    }

    fn push_n(&mut self, b: u8, n: usize) {
        for _ in 0..n {
            self.push(b);
        }
    }

    /// Ends the name being read, if any: a target is counted, a prerequisite kept.
    fn end_name(&mut self) -> Result<(), DepfileError> {
        if self.name.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.name);
        match self.section {
            Section::Prereqs => {
                let name = String::from_utf8(bytes).map_err(|e| {
                    let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    self.error(self.name_line, DepfileErrorKind::NotUtf8(lossy))
                })?;
                if self.seen.insert(name.clone()) {
                    self.prereqs.push(name);
                }
            }
            Section::Targets => {
                if self.targets == 0 {
                    self.targets_line = self.name_line;
                }
                self.targets += 1;
            }
        }
        Ok(())
    }

    /// Ends a logical line: names with no `:` after them are an error.
    fn end_line(&mut self) -> Result<(), DepfileError> {
        self.end_name()?;
        if self.section == Section::Targets && self.targets > 0 {
            return Err(self.error(self.targets_line, DepfileErrorKind::MissingColon));
        }
        self.section = Section::Targets;
        self.targets = 0;
        self.line += 1;
        Ok(())
    }

    fn error(&self, line: usize, kind: DepfileErrorKind) -> DepfileError {
        DepfileError { line, kind }
    }
}

/// Whether the byte at `i` ends a name: a blank, a line end (LF, CRLF, or a `\`
/// continuation), or the end of the text.
fn ends_name(text: &[u8], i: usize) -> bool {
    match text.get(i) {
        None | Some(b' ' | b'\t' | b'\n') => true,
        Some(b'\r') => text.get(i + 1) == Some(&b'\n'),
        Some(b'\\') => matches!(
            (text.get(i + 1), text.get(i + 2)),
            (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n'))
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<String> {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &[u8]) -> DepfileError {
        match parse(text) {
            Ok(p) => panic!("{:?} parsed as {p:?}", String::from_utf8_lossy(text)),
            Err(e) => e,
        }
    }

    /// `gcc -MD -MP -MF out.d -MT '$weird target' -MT 'x y.o'` (gcc 12.2, Debian 12) on
    /// `dir with space/a b.c` including `h#1.h`, `sp ace.h`, `dol$lar.h` and `<stdio.h>`,
    /// verbatim except the middle of the system headers.
    const GCC_MD_MP: &str =
        "$weird target x y.o: dir\\ with\\ space/a\\ b.c /usr/include/stdc-predef.h \\
 dir\\ with\\ space/h\\#1.h dir\\ with\\ space/sp\\ ace.h \\
 dir\\ with\\ space/dol$$lar.h /usr/include/stdio.h \\
 /usr/include/x86_64-linux-gnu/bits/libc-header-start.h \\
 /usr/include/features.h /usr/include/features-time64.h \\
 /usr/include/x86_64-linux-gnu/bits/floatn-common.h
/usr/include/stdc-predef.h:
dir\\ with\\ space/h\\#1.h:
dir\\ with\\ space/sp\\ ace.h:
dir\\ with\\ space/dol$$lar.h:
/usr/include/stdio.h:
";

    #[test]
    fn gcc_md_mp_with_spaces_hash_dollar_and_raw_mt_targets() {
        assert_eq!(
            ok(GCC_MD_MP),
            [
                "dir with space/a b.c",
                "/usr/include/stdc-predef.h",
                "dir with space/h#1.h",
                "dir with space/sp ace.h",
                "dir with space/dol$lar.h",
                "/usr/include/stdio.h",
                "/usr/include/x86_64-linux-gnu/bits/libc-header-start.h",
                "/usr/include/features.h",
                "/usr/include/features-time64.h",
                "/usr/include/x86_64-linux-gnu/bits/floatn-common.h",
            ]
        );
    }

    /// `gcc -MMD -MP -MQ '$weird target'` on an absolute source path, verbatim: `-MQ`
    /// quotes the target (`$$`, `\ `), system headers are left out.
    #[test]
    fn gcc_mmd_mq_absolute() {
        let text = "$$weird\\ target: /tmp/pdf/dir\\ with\\ space/a\\ b.c \\
 /tmp/pdf/dir\\ with\\ space/h\\#1.h /tmp/pdf/dir\\ with\\ space/sp\\ ace.h \\
 /tmp/pdf/dir\\ with\\ space/dol$$lar.h
/tmp/pdf/dir\\ with\\ space/h\\#1.h:
/tmp/pdf/dir\\ with\\ space/sp\\ ace.h:
/tmp/pdf/dir\\ with\\ space/dol$$lar.h:
";
        assert_eq!(
            ok(text),
            [
                "/tmp/pdf/dir with space/a b.c",
                "/tmp/pdf/dir with space/h#1.h",
                "/tmp/pdf/dir with space/sp ace.h",
                "/tmp/pdf/dir with space/dol$lar.h",
            ]
        );
    }

    /// gcc 12 verbatim on headers named `a\b.h`, `c\ d.h`, `co:lon.h`, `tab<TAB>x.h`,
    /// `pct%.h`, with `-MQ 'o:bj.o' -MQ 'a b#$c.o'`: gcc escapes neither `:` nor a lone
    /// backslash, doubles backslashes before a blank, and escapes a tab like a space.
    #[test]
    fn gcc_backslashes_colons_and_tabs() {
        let text = "o:bj.o a\\ b\\#$$c.o: w.c /usr/include/stdc-predef.h weird/a\\b.h \\
 weird/c\\\\\\ d.h weird/co:lon.h weird/tab\\\tx.h weird/pct%.h
/usr/include/stdc-predef.h:
weird/a\\b.h:
weird/c\\\\\\ d.h:
weird/co:lon.h:
weird/tab\\\tx.h:
weird/pct%.h:
";
        assert_eq!(
            ok(text),
            [
                "w.c",
                "/usr/include/stdc-predef.h",
                "weird/a\\b.h",
                "weird/c\\ d.h",
                "weird/co:lon.h",
                "weird/tab\tx.h",
                "weird/pct%.h",
            ]
        );
    }

    /// gcc writes a name `e\#f.h` as `e\\#f.h` (its backslashes as they are, then `\#`)
    /// and `dd\\ x.h` as `dd\\\\\ x.h` (doubled, then `\ `).
    #[test]
    fn gcc_backslashes_before_hash_and_space() {
        let text = "w2.o: w2.c weird/e\\\\#f.h \\\n weird/dd\\\\\\\\\\ x.h\n";
        assert_eq!(ok(text), ["w2.c", "weird/e\\#f.h", "weird/dd\\\\ x.h"]);
    }

    /// `rustc --emit=dep-info,link,metadata --crate-type lib --out-dir out src/main.rs`
    /// (rustc 1.9x) verbatim: one rule per output, phony rules per source, `# env-dep:`
    /// comments, blank lines.
    #[test]
    fn rustc_dep_info() {
        let text = "out/main.d: src/main.rs src/m.rs src/../data\\ with\\ space.txt

out/libmain.rlib: src/main.rs src/m.rs src/../data\\ with\\ space.txt

out/libmain.rmeta: src/main.rs src/m.rs src/../data\\ with\\ space.txt

src/main.rs:
src/m.rs:
src/../data\\ with\\ space.txt:

# env-dep:HOME=/root
# env-dep:RELO_X
";
        assert_eq!(
            ok(text),
            ["src/main.rs", "src/m.rs", "src/../data with space.txt"]
        );
    }

    /// The shape `nvcc -M` writes: a blank before the `:`, indented continuations.
    #[test]
    fn nvcc_blank_before_colon() {
        let text =
            "kernel.o : kernel.cu \\\n    /usr/include/stdc-predef.h \\\n    include/k.cuh\n";
        assert_eq!(
            ok(text),
            ["kernel.cu", "/usr/include/stdc-predef.h", "include/k.cuh"]
        );
    }

    /// The shape of a sass dependency file: one rule, no continuation, no final newline.
    #[test]
    fn sass_one_line_without_final_newline() {
        assert_eq!(
            ok("out/site.css: styles/site.scss styles/_vars.scss"),
            ["styles/site.scss", "styles/_vars.scss"]
        );
    }

    #[test]
    fn several_targets_on_one_line_and_several_rules() {
        assert_eq!(
            ok("a.o b.o: x.c y.h\nc.o: z.c y.h\nd.o:\n"),
            ["x.c", "y.h", "z.c"]
        );
    }

    #[test]
    fn phony_targets_are_not_prerequisites() {
        assert_eq!(ok("x.o: x.c\nonly-phony.h:\n"), ["x.c"]);
    }

    #[test]
    fn a_target_without_prerequisites_is_valid_and_empty() {
        assert_eq!(ok("x.o:\n"), Vec::<String>::new());
        assert_eq!(ok("x.o:"), Vec::<String>::new());
    }

    #[test]
    fn empty_blank_and_comment_only_files_are_empty() {
        for text in [
            "",
            "\n",
            "\r\n\r\n",
            "   \n\t\n",
            "# nothing\n",
            "# no newline",
        ] {
            assert_eq!(ok(text), Vec::<String>::new(), "{text:?}");
        }
    }

    #[test]
    fn crlf_everywhere_with_crlf_continuations() {
        let text = "a.o: a.c \\\r\n  a.h\r\nb.o: b\\ c.c\r\n\r\nb\\ c.c:\r\n";
        assert_eq!(ok(text), ["a.c", "a.h", "b c.c"]);
    }

    #[test]
    fn trailing_whitespace_and_comments_after_names() {
        let text = "a.o: a.c   \t\n# a comment line\nb.o: b.c # trailing comment with b.h\n";
        assert_eq!(ok(text), ["a.c", "b.c"]);
    }

    #[test]
    fn escapes_hash_dollar_and_literal_backslashes() {
        let text = "t: a\\#b $$HOME/c x$y d\\e\\:f g\\$$\n";
        assert_eq!(ok(text), ["a#b", "$HOME/c", "x$y", "d\\e\\:f", "g\\$"]);
    }

    #[test]
    fn two_backslashes_before_a_blank_end_the_name_with_one() {
        assert_eq!(ok("t: a\\\\ b\n"), ["a\\", "b"]);
    }

    #[test]
    fn a_continuation_ends_a_name_and_a_final_backslash_is_dropped() {
        assert_eq!(ok("t: a\\\nb\\"), ["a", "b"]);
    }

    #[test]
    fn colons_not_followed_by_a_blank_are_part_of_names() {
        assert_eq!(ok("C:x.o a::b: c:d e:\n"), ["c:d", "e:"]);
        assert_eq!(ok("t:\\\n x\n"), ["x"]);
    }

    #[test]
    fn duplicates_are_kept_once_in_first_seen_order() {
        assert_eq!(ok("a: x y x\nb: y z x\n"), ["x", "y", "z"]);
    }

    #[test]
    fn names_without_a_target_are_refused_with_their_line() {
        let e = err(b"a.o: a.c\n\nstray.h other.h\n");
        assert_eq!(
            e,
            DepfileError {
                line: 3,
                kind: DepfileErrorKind::MissingColon
            }
        );
        assert_eq!(
            e.to_string(),
            "line 3: names without a `target:` before them (expected `target: prerequisites`)"
        );
        // A prerequisite line that lost its continuation backslash.
        assert_eq!(err(b"a.o: a.c\n  a.h\n").line, 2);
        // A rule whose colon is missing, over a continuation: the line it starts on.
        assert_eq!(err(b"x\n\na.o a.c \\\n a.h\n").line, 1);
        assert_eq!(err(b"a.o: a.c\r\n\r\na.o a.c \\\r\n a.h").line, 3);
    }

    #[test]
    fn an_empty_target_is_refused() {
        let e = err(b"a.o: a.c\n: b.c\n");
        assert_eq!((e.line, e.kind), (2, DepfileErrorKind::EmptyTarget));
        assert_eq!(err(b"  : b.c").kind, DepfileErrorKind::EmptyTarget);
    }

    #[test]
    fn a_nul_is_refused() {
        let e = err(b"a.o: a.c \\\n a\0.h\n");
        assert_eq!((e.line, e.kind), (2, DepfileErrorKind::Nul));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        let e = err(b"a.o: a.c\nb.o: \\\n  b\xff.h\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.kind, DepfileErrorKind::NotUtf8("b\u{fffd}.h".into()));
        assert!(e.to_string().starts_with("line 3: `b"), "{e}");
        assert!(e.kind.help().contains("rename"));
    }

    /// Escapes one name the way gcc 12's `mkdeps.cc` does: backslashes before a blank
    /// doubled, then `\` before the blank or a `#`, `$` doubled, everything else as is.
    fn gcc_escape(name: &str) -> String {
        let mut out = String::new();
        let mut slashes = 0;
        for c in name.chars() {
            match c {
                '\\' => slashes += 1,
                ' ' | '\t' => {
                    out.extend(std::iter::repeat_n('\\', slashes + 1));
                    slashes = 0;
                }
                '#' => {
                    out.push('\\');
                    slashes = 0;
                }
                '$' => {
                    out.push('$');
                    slashes = 0;
                }
                _ => slashes = 0,
            }
            out.push(c);
        }
        out
    }

    /// Random lists of names over an alphabet heavy in what needs escaping, escaped as gcc
    /// does (one rule with continuations, then `-MP` phony rules) and parsed back.
    /// A name ending in a backslash is left out: gcc's own output for it is ambiguous.
    #[test]
    fn roundtrip_of_gcc_escaped_names() {
        const ALPHABET: &[char] = &[
            'a', 'b', 'z', '0', '.', '/', '_', '-', ' ', '\t', '#', '$', '\\', ':', '%', 'é', '字',
            '(', '*', '=',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..2000 {
            let count = next(6);
            let mut names: Vec<String> = Vec::new();
            for _ in 0..count {
                let len = 1 + next(12);
                let mut name: String = (0..len).map(|_| ALPHABET[next(ALPHABET.len())]).collect();
                while name.ends_with('\\') {
                    name.pop();
                }
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
            let mut text = String::from("out/x.o:");
            for name in &names {
                text.push_str(" \\\n ");
                text.push_str(&gcc_escape(name));
            }
            text.push('\n');
            for name in &names {
                text.push_str(&gcc_escape(name));
                text.push_str(":\n");
            }
            assert_eq!(
                parse(text.as_bytes()),
                Ok(names.clone()),
                "round {round}: {text:?}"
            );
        }
    }
}
