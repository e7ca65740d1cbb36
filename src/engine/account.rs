//! Accounting of finished targets for `stats`: turns a [`TargetReport`] into
//! the counters and uses of the depot's usage log. Hits are recorded where
//! they are restored (they know the bytes written); everything else here.
//! It only counts into the build's recorder: it never reads or writes the
//! depot (the recorder is flushed once, at the end of the build).

use super::{DepOut, Outcome, TargetReport};
use crate::depot::usage::Recorder;
use crate::file_state::FileState;

/// Records a target that finished without a hit. A target whose key was
/// computed and that was not forced was looked up and missed.
pub(crate) fn finished(rec: &Recorder, r: &TargetReport, out: Option<&DepOut>, forced: bool) {
    let missed = r.key.is_some() && !forced;
    match r.outcome {
        Outcome::Hit | Outcome::Skipped => {}
        Outcome::Built => {
            let stored_bytes: u64 = match out {
                Some(o) if r.stored => o
                    .files
                    .iter()
                    .map(|(_, s)| match s {
                        FileState::File { size, .. } => *size,
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            };
            if let (true, Some(key)) = (r.stored, &r.key) {
                rec.used(key);
            }
            rec.count(&r.name, |c| {
                c.builds += 1;
                c.misses += u64::from(missed);
                c.bytes_stored += stored_bytes;
                c.build_ms += r.duration_ms;
            });
        }
        Outcome::Failed => rec.count(&r.name, |c| {
            c.failures += 1;
            c.misses += u64::from(missed);
        }),
    }
}
