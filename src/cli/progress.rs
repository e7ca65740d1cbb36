//! Progress bars for long work (`pack`, `unpack`, `gc`, `verify`): an
//! indicatif bar on stderr, hidden when stderr is not a terminal or with
//! `--quiet`/`--json`.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
