//! TEMPORARY stand-in for the Make-syntax depfile parser (written on branch
//! `i18-parser`; this copy is deleted when that branch is merged). Same API:
//! [`parse`] returns the prerequisites as spelled, first-seen order, unique.

/// Why a depfile cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepfileError {
    /// A line that is not `targets: prerequisites`.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The prerequisites of every rule in `text`, as spelled, unique, in the
/// order first seen.
pub fn parse(text: &[u8]) -> Result<Vec<String>, DepfileError> {
    let text = String::from_utf8_lossy(text).replace("\r\n", "\n");
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Join continuation lines, remembering where each logical line starts.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, line) in text.split('\n').enumerate() {
        if cur.is_empty() {
            start = i + 1;
        }
        if let Some(body) = line.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
        } else {
            cur.push_str(line);
            logical.push((start, std::mem::take(&mut cur)));
        }
    }
    if !cur.is_empty() {
        logical.push((start, cur));
    }
    for (line, l) in logical {
        if l.trim().is_empty() {
            continue;
        }
        let words = split_words(&l);
        let Some(colon) = words.iter().position(|w| w.ends_with(':') && !w.is_empty()) else {
            return Err(DepfileError::Syntax {
                line,
                message: "expected `target: prerequisites`".into(),
            });
        };
        for w in &words[colon + 1..] {
            if seen.insert(w.clone()) {
                out.push(w.clone());
            }
        }
    }
    Ok(out)
}

fn split_words(l: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut w = String::new();
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                w.push(' ');
                chars.next();
            }
            '$' if chars.peek() == Some(&'$') => {
                w.push('$');
                chars.next();
            }
            ' ' | '\t' => {
                if !w.is_empty() {
                    words.push(std::mem::take(&mut w));
                }
            }
            ':' if chars.peek().is_none_or(|n| *n == ' ' || *n == '\t') => {
                w.push(':');
                words.push(std::mem::take(&mut w));
            }
            c => w.push(c),
        }
    }
    if !w.is_empty() {
        words.push(w);
    }
    words
}
