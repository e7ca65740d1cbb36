//! Human units on the command line and in DEPOT.toml: sizes (`512K`, `2G`,
//! `1.5GiB`, powers of 1024) and ages (`30d`, `12h`, via humantime).

use std::time::Duration;

/// A size or age that could not be parsed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{text}` is not a valid {what}\n  help: {help}")]
pub struct UnitError {
    text: String,
    what: &'static str,
    help: &'static str,
}

/// Parses `123`, `64K`, `2G`, `1.5GiB`, `10MB` (all powers of 1024) into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        text: text.to_owned(),
        what: "size",
        help: "write bytes with an optional K, M, G or T suffix, e.g. 500M or 2G",
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(err()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(err());
    }
    Ok(v as u64)
}

/// Parses an age such as `30d`, `12h`, `90min`.
pub fn parse_age(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim()).map_err(|_| UnitError {
        text: text.to_owned(),
        what: "duration",
        help: "write a number and a unit, e.g. 30d, 12h or 45min",
    })
}

/// `1.5 GiB`-style rendering.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("100").unwrap(), 100);
        for bad in ["", "G", "-1G", "2X", "1..2G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(3 << 29), "1.5 GiB");
    }

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert!(parse_age("soon").is_err());
    }
}
