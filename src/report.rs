//! [`Reporter`]: how the library tells its caller what is happening, without
//! ever printing. The CLI implements it with text lines and progress bars;
//! tests and embedders can ignore it.

use crate::engine::TargetReport;

/// Receives progress from long operations. Every method has a no-op default.
pub trait Reporter: Sync {
    /// A build is about to process `targets` targets (the selection and
    /// its deps), before the first [`Reporter::target_started`].
    fn build_planned(&self, _targets: usize) {}
    /// A target's work (key computation, restore or build) begins.
    fn target_started(&self, _name: &str) {}
    /// A target is done; its output has been captured in `report`.
    fn target_finished(&self, _report: &TargetReport) {}
    /// Another process holds the build lock of a target's key.
    fn waiting(&self, _target: &str, _holder: &str) {}
    /// Something the user should know that does not fail the operation.
    fn warning(&self, _message: &str) {}
    /// Progress of a counted task (`pack`, `unpack`, `gc`, `verify`).
    fn progress(&self, _task: &str, _done: u64, _total: u64) {}
}

/// A [`Reporter`] that ignores everything.
pub struct Silent;
impl Reporter for Silent {}
