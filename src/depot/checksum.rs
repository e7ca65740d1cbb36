//! Self-checking records: every text file the depot reads back (entries,
//! project records, `DEPOT.toml`) ends with a line
//! `checksum = "<blake3 hex of every byte before this line>"`, and every
//! usage log line ends with a space and the first 16 hex digits of the
//! blake3 of the rest of the line. A record failing its checksum is damaged
//! and never trusted. This module only seals and checks text; it never
//! reads or writes files.
//!
//! The checksum is plain blake3, so `head -n -1 FILE | b3sum` recomputes it.

const PREFIX: &str = "checksum = \"";
/// Hex digits of a usage line's checksum.
const LINE_DIGITS: usize = 16;

/// Why a record failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsealed {
    /// There is no final `checksum = "…"` line.
    Missing,
    /// The checksum does not match the bytes before it.
    Mismatch {
        /// The checksum the bytes have now.
        actual: String,
    },
}

impl std::fmt::Display for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsealed::Missing => f.write_str("its final `checksum = \"…\"` line is missing"),
            Unsealed::Mismatch { .. } => {
                f.write_str("its bytes do not match its checksum (the file was changed or damaged)")
            }
        }
    }
}

/// `body` followed by its checksum line. `body` must be empty or end with a
/// newline (TOML as `toml::to_string` writes it does).
pub fn seal(body: &str) -> String {
    debug_assert!(body.is_empty() || body.ends_with('\n'));
    format!(
        "{body}{PREFIX}{}\"\n",
        blake3::hash(body.as_bytes()).to_hex()
    )
}

/// The body of a sealed `text` (everything before its checksum line), when
/// the checksum matches. Nothing may follow the checksum line.
pub fn open(text: &str) -> Result<&str, Unsealed> {
    let last = text.strip_suffix('\n').ok_or(Unsealed::Missing)?;
    let start = last.rfind('\n').map_or(0, |i| i + 1);
    let (body, line) = text.split_at(start);
    let hex = line
        .strip_prefix(PREFIX)
        .and_then(|l| l.strip_suffix("\"\n"))
        .ok_or(Unsealed::Missing)?;
    let actual = blake3::hash(body.as_bytes()).to_hex();
    if hex == actual.as_str() {
        Ok(body)
    } else {
        Err(Unsealed::Mismatch {
            actual: actual.to_string(),
        })
    }
}

/// One usage log line (without its newline) with its checksum appended.
pub fn seal_line(line: &str) -> String {
    let hex = blake3::hash(line.as_bytes()).to_hex();
    format!("{line} {}", &hex[..LINE_DIGITS])
}

/// The content of a sealed usage line, when its checksum matches.
pub fn open_line(sealed: &str) -> Option<&str> {
    let (line, hex) = sealed.rsplit_once(' ')?;
    let actual = blake3::hash(line.as_bytes()).to_hex();
    (hex.len() == LINE_DIGITS && hex == &actual[..LINE_DIGITS]).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_text_opens_to_its_body() {
        let body = "a = 1\n[t]\nb = \"x\"\n";
        let text = seal(body);
        assert_eq!(
            text,
            format!(
                "{body}checksum = \"{}\"\n",
                blake3::hash(body.as_bytes()).to_hex()
            )
        );
        assert_eq!(open(&text), Ok(body));
        assert_eq!(open(&seal("")), Ok(""));
    }

    #[test]
    fn any_change_breaks_the_seal() {
        let text = seal("a = 1\nb = 2\n");
        let flipped = text.replacen("a = 1", "a = 3", 1);
        assert!(matches!(open(&flipped), Err(Unsealed::Mismatch { .. })));
        let deleted = text.replacen("b = 2\n", "", 1);
        assert!(matches!(open(&deleted), Err(Unsealed::Mismatch { .. })));
        let trailing = format!("{text}c = 3\n");
        assert_eq!(open(&trailing), Err(Unsealed::Missing));
        assert_eq!(open("a = 1\n"), Err(Unsealed::Missing));
        assert_eq!(open(text.trim_end()), Err(Unsealed::Missing));
        // The hex itself damaged.
        let bad_hex = text.replacen("checksum = \"", "checksum = \"0", 1);
        assert!(open(&bad_hex).is_err());
    }

    #[test]
    fn usage_lines_check_themselves() {
        let line = r#"{"ev":"use","t":1,"key":"ab"}"#;
        let sealed = seal_line(line);
        assert_eq!(open_line(&sealed), Some(line));
        assert_eq!(open_line(line), None);
        assert_eq!(open_line(&sealed.replacen("1", "2", 1)), None);
        assert_eq!(open_line(&sealed[..sealed.len() - 1]), None);
    }
}
