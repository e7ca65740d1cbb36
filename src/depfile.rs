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
