//! `pack --current`: choosing exactly what the next build needs from a plan —
//! each target's entry for its current key (for a target with a depfile, the
//! entry its variants record leads to) — and naming each target that has
//! none. Pure selection over [`Planned`]: reads and writes nothing; the
//! blobs and the variants records of the chosen entries are added by
//! [`pack()`](super::pack()) as for any entry.

use serde::Serialize;

use crate::depot::entries::Entry;
use crate::engine::plan::Planned;

/// A target `pack --current` left out: it has no entry for its current
/// inputs (a build that failed, was skipped or never ran), which the next
/// build will run anyway.
#[derive(Debug, Clone, Serialize)]
pub struct Unbuilt {
    /// The target.
    pub target: String,
    /// Why, as a kind: `no-entry`, `dep-has-no-entry` or `inputs-failed`.
    pub kind: &'static str,
    /// Why, in words.
    pub reason: String,
}

/// The entries of every planned target's current key, and the targets that
/// have none.
pub fn current_entries(planned: Vec<Planned>) -> (Vec<Entry>, Vec<Unbuilt>) {
    let mut entries = Vec::new();
    let mut unbuilt = Vec::new();
    for p in planned {
        if let Some(missing) = p.missing() {
            unbuilt.push(Unbuilt {
                target: p.name,
                kind: missing.kind(),
                reason: missing.to_string(),
            });
        } else if let Some((_, e)) = p.entry {
            entries.push(e);
        }
    }
    (entries, unbuilt)
}
