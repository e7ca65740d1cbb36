//! Progress bars for long work (`pack`, `unpack`, `gc`, `verify`, a large
//! `build`): an indicatif bar on stderr, hidden when stderr is not a
//! terminal or with `--quiet`/`--json`.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relocache::engine::Outcome;
use relocache::report::Reporter;

/// A [`Reporter`] that draws one bar per task and prints warnings.
pub struct Bars {
    bar: Mutex<Option<(String, ProgressBar)>>,
    visible: bool,
}

impl Bars {
    /// Bars drawn only when `visible` and stderr is a terminal.
    pub fn new(visible: bool) -> Bars {
        Bars {
            bar: Mutex::new(None),
            visible: visible && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    /// Removes the bar, if any.
    pub fn finish(&self) {
        if let Some((_, b)) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

impl Reporter for Bars {
    fn progress(&self, task: &str, done: u64, total: u64) {
        if !self.visible {
            return;
        }
        let mut g = self.bar.lock().unwrap();
        if g.as_ref().is_none_or(|(t, _)| t != task) {
            if let Some((_, old)) = g.take() {
                old.finish_and_clear();
            }
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_message(task.to_owned());
            *g = Some((task.to_owned(), b));
        }
        if let Some((_, b)) = g.as_ref() {
            b.set_length(total);
            b.set_position(done);
        }
    }

    fn warning(&self, message: &str) {
        let g = self.bar.lock().unwrap();
        match g.as_ref() {
            Some((_, b)) => b.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

/// From how many targets `build` draws a bar instead of one line each.
pub const BUILD_BAR_FROM: usize = 21;

/// Whether `build` draws a [`BuildBar`]: on a terminal, neither `--quiet`
/// nor `--json`, and more than 20 targets, where one line per target would
/// scroll away the failures and warnings. Below that, and in logs, CI and
/// pipes, the lines are the better record.
pub fn build_bar_wanted(stderr_is_terminal: bool, visible: bool, targets: usize) -> bool {
    stderr_is_terminal && visible && targets >= BUILD_BAR_FROM
}

/// The bar of a large build: done/total, hits, built, failed and the
/// targets being worked on. Lines printed through [`BuildBar::suspend`]
/// appear above it.
pub struct BuildBar {
    bar: ProgressBar,
    state: Mutex<BuildState>,
}

#[derive(Default)]
struct BuildState {
    /// Started and not finished, oldest first.
    running: Vec<String>,
    hits: usize,
    built: usize,
    failed: usize,
    skipped: usize,
}

/// Running targets named in the bar before the rest are counted.
const RUNNING_SHOWN: usize = 3;

impl BuildBar {
    /// A bar on stderr for a build of `total` targets.
    pub fn new(total: usize) -> BuildBar {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:25}] {pos}/{len} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let state = BuildState::default();
        bar.set_message(state.message());
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        BuildBar {
            bar,
            state: Mutex::new(state),
        }
    }

    /// `name`'s work began.
    pub fn started(&self, name: &str) {
        let mut s = self.state.lock().unwrap();
        s.running.push(name.to_owned());
        self.bar.set_message(s.message());
    }

    /// `name` ended in `outcome` (skipped targets never started).
    pub fn finished(&self, name: &str, outcome: Outcome) {
        let mut s = self.state.lock().unwrap();
        s.running.retain(|r| r != name);
        match outcome {
            Outcome::Hit => s.hits += 1,
            Outcome::Built => s.built += 1,
            Outcome::Failed => s.failed += 1,
            Outcome::Skipped => s.skipped += 1,
        }
        self.bar.inc(1);
        self.bar.set_message(s.message());
    }

    /// Runs `print` with the bar cleared, then redraws it below.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        self.bar.suspend(print)
    }

    /// Removes the bar, before the summary.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl BuildState {
    /// `12 hit, 3 built, 0 failed: obj:a.c, obj:b.c, obj:c.c +2`
    fn message(&self) -> String {
        let mut m = format!(
            "{} hit, {} built, {} failed",
            self.hits, self.built, self.failed
        );
        if self.skipped > 0 {
            m.push_str(&format!(", {} skipped", self.skipped));
        }
        if !self.running.is_empty() {
            let shown = &self.running[..self.running.len().min(RUNNING_SHOWN)];
            m.push_str(&format!(": {}", shown.join(", ")));
            if self.running.len() > RUNNING_SHOWN {
                m.push_str(&format!(" +{}", self.running.len() - RUNNING_SHOWN));
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_draws_a_bar_only_when_large_on_a_terminal_and_not_quiet() {
        assert!(build_bar_wanted(true, true, 21));
        assert!(!build_bar_wanted(true, true, 20), "20 lines fit a screen");
        assert!(
            !build_bar_wanted(false, true, 500),
            "pipes and CI get lines"
        );
        assert!(
            !build_bar_wanted(true, false, 500),
            "-q and --json draw nothing"
        );
    }

    #[test]
    fn the_bar_counts_outcomes_and_names_a_few_running_targets() {
        let mut s = BuildState {
            running: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            hits: 12,
            built: 3,
            ..BuildState::default()
        };
        assert_eq!(s.message(), "12 hit, 3 built, 0 failed: a, b, c +2");
        s.running.clear();
        s.skipped = 1;
        assert_eq!(s.message(), "12 hit, 3 built, 0 failed, 1 skipped");
    }
}
