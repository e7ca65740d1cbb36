//! Which command output `relocache build` shows (Turborepo's `outputLogs`):
//! the `--logs` flag, else the target's `logs =`, else [`DEFAULT`], applied
//! to how the target ended. It only decides; the build printer writes.

use std::collections::HashMap;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use relocache::engine::{Outcome, TargetReport};
use relocache::manifest::{LogMode, Manifest};

/// The mode when neither `--logs` nor `logs =` chooses: the output of the
/// commands that ran, nothing replayed from the cache, so a no-op build is
/// as silent as `make`'s.
pub const DEFAULT: LogMode = LogMode::NewOnly;

/// What each mode shows, for `--help`.
fn describe(mode: LogMode) -> &'static str {
    match mode {
        LogMode::Full => "the output of every target, replayed from the cache on hits",
        LogMode::NewOnly => "the output of targets that ran (built or failed) [default]",
        LogMode::ErrorsOnly => "only the output of targets that failed",
        LogMode::None => "no command output",
    }
}

/// The `--logs` value parser: the names of [`LogMode::NAMES`], each with
/// its help, so a wrong value is refused (exit 2) listing them.
pub fn parser() -> impl TypedValueParser<Value = LogMode> {
    let values = LogMode::NAMES.map(|name| {
        let mode = LogMode::parse(name).expect("every name in NAMES parses");
        PossibleValue::new(name).help(describe(mode))
    });
    PossibleValuesParser::new(values)
        .map(|name| LogMode::parse(&name).expect("clap admits only NAMES"))
}

/// Whether `mode` shows the output of a target that ended in `outcome`.
pub fn shows(mode: LogMode, outcome: Outcome) -> bool {
    match mode {
        LogMode::Full => true,
        LogMode::NewOnly => matches!(outcome, Outcome::Built | Outcome::Failed),
        LogMode::ErrorsOnly => outcome == Outcome::Failed,
        LogMode::None => false,
    }
}

/// The log mode of every target of one build.
pub struct Replay {
    /// `--logs`, which wins over every `logs =`.
    flag: Option<LogMode>,
    /// The targets with a `logs =` of their own.
    chosen: HashMap<String, LogMode>,
}

/// What to do with one finished target's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write its stdout and stderr.
    Show,
    /// Write nothing, and nobody chose that: a hit with output the default
    /// did not replay, counted for the one note after the build.
    HiddenByDefault,
    /// Write nothing.
    Hide,
}

impl Replay {
    /// The modes for `manifest`'s targets under `--logs` `flag`.
    pub fn new(flag: Option<LogMode>, manifest: &Manifest) -> Replay {
        let chosen = manifest
            .targets
            .iter()
            .filter_map(|(name, t)| t.logs.map(|m| (name.clone(), m)))
            .collect();
        Replay { flag, chosen }
    }

    /// What to do with `r`'s captured (or replayed) output.
    pub fn verdict(&self, r: &TargetReport) -> Verdict {
        let chosen = self.flag.or_else(|| self.chosen.get(&r.name).copied());
        let mode = chosen.unwrap_or(DEFAULT);
        if shows(mode, r.outcome) {
            Verdict::Show
        } else if chosen.is_none()
            && r.outcome == Outcome::Hit
            && !(r.stdout.is_empty() && r.stderr.is_empty())
        {
            Verdict::HiddenByDefault
        } else {
            Verdict::Hide
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_shows_what_its_name_says() {
        use Outcome::*;
        let table = [
            (LogMode::Full, [true, true, true, true]),
            (LogMode::NewOnly, [false, true, true, false]),
            (LogMode::ErrorsOnly, [false, false, true, false]),
            (LogMode::None, [false, false, false, false]),
        ];
        for (mode, want) in table {
            let got = [Hit, Built, Failed, Skipped].map(|o| shows(mode, o));
            assert_eq!(got, want, "{}", mode.as_str());
        }
    }

    #[test]
    fn the_parser_admits_every_name_and_nothing_else() {
        let cmd = clap::Command::new("t");
        let p = parser();
        for name in LogMode::NAMES {
            let got = p.parse_ref(&cmd, None, std::ffi::OsStr::new(name)).unwrap();
            assert_eq!(got.as_str(), name);
        }
        assert!(p
            .parse_ref(&cmd, None, std::ffi::OsStr::new("errors"))
            .is_err());
    }
}
