//! `verify`'s checks of packs: every index (its checksum, order, entries in
//! bounds and not overlapping, its pack present) and, with `--integrity`,
//! every packed blob re-hashed from its range. Reads only: a damaged pack or
//! blob is reported, never moved or rewritten.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::checker::rel_to;
use super::{Problem, ProblemKind};
use crate::depot::blobs::{check_stored, BlobHealth};
use crate::depot::packs::{IndexFault, PackSet};
use crate::depot::{Depot, DepotError};
use crate::digest::Digest;
use crate::report::Reporter;

/// The problems of `depot`'s packs, and the packed blobs re-hashed.
pub(super) fn check(
    depot: &Depot,
    integrity: bool,
    reporter: &dyn Reporter,
) -> Result<(Vec<Problem>, Vec<Digest>), DepotError> {
    // Loaded afresh, with the overlap check readers skip.
    let set = PackSet::load(depot, true)?;
    let mut problems: Vec<Problem> = set
        .faults
        .iter()
        .map(|f| {
            let kind = match f.fault {
                IndexFault::MissingPack => ProblemKind::MissingPack,
                _ => ProblemKind::DamagedPackIndex,
            };
            Problem {
                kind,
                entry: None,
                path: Some(rel_to(depot.root(), &f.index)),
                detail: format!(
                    "the pack index is not used: {}\n  help: {}",
                    f.fault,
                    kind.help()
                ),
                label: None,
            }
        })
        .collect();
    if !integrity {
        return Ok((problems, Vec::new()));
    }
    let todo: Vec<_> = set
        .packs
        .iter()
        .flat_map(|p| p.entries.iter().map(move |e| (p, e)))
        .collect();
    let done = AtomicU64::new(0);
    let total = todo.len() as u64;
    let corrupt: Vec<Problem> = todo
        .par_iter()
        .filter_map(|(pack, e)| {
            let blob = pack.open(e);
            let at = blob.location().to_string();
            let health = check_stored(blob);
            reporter.progress(
                "hashing packs",
                done.fetch_add(1, Ordering::Relaxed) + 1,
                total,
            );
            let BlobHealth::Corrupt { why } = health else {
                return None;
            };
            Some(Problem {
                kind: ProblemKind::CorruptPackedBlob,
                entry: None,
                path: Some(rel_to(depot.root(), &pack.path)),
                detail: format!(
                    "blob {} at {at} is corrupt: {why}\n  help: {}",
                    e.digest,
                    ProblemKind::CorruptPackedBlob.help()
                ),
                label: None,
            })
        })
        .collect();
    problems.extend(corrupt);
    Ok((problems, todo.iter().map(|(_, e)| e.digest).collect()))
}
