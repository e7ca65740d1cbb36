//! The build's side of the remote cache: after a local miss, fetch from the
//! remote into the first depot (for a target with a depfile, through the
//! remote's variants record); after a store, upload. Every remote problem
//! becomes a warning and a counter, never a failed target.

use super::ctx::DepOuts;
use super::report::{Warning, WarningKind};
use super::{discover, Ctx};
use crate::depot::entries::Entry;
use crate::depot::usage::Counters;
use crate::digest::Key;
use crate::manifest::Target;
use crate::remote::Failure;

/// Counts a failure and turns it into a warning (none for `Disabled`,
/// which was reported when it happened).
fn failed(ctx: &Ctx<'_>, t: &Target, f: &Failure, what: &str, warnings: &mut Vec<Warning>) {
    let (bump, kind): (fn(&mut Counters), _) = match f {
        Failure::Disabled => return,
        Failure::Timeout(_) => (|c| c.remote_timeouts += 1, WarningKind::Remote),
        Failure::Corrupt { .. } => (|c| c.remote_corrupt += 1, WarningKind::Remote),
        Failure::Error(_) | Failure::Incomplete(_) => {
            (|c| c.remote_errors += 1, WarningKind::Remote)
        }
        Failure::Unsigned(_) => (|c| c.remote_unsigned += 1, WarningKind::Unsigned),
        Failure::BadSignature(_) => (|c| c.remote_bad_signature += 1, WarningKind::BadSignature),
    };
    ctx.usage.count(&t.name, bump);
    tracing::debug!(error = %f, "remote: {what}");
    warnings.push(Warning::new(
        kind,
        format!("remote: {what} `{}`: {f}", t.name),
    ));
}

/// Looks `key` up on the remote after every depot missed. On a hit the
/// entry and its blobs are in the first depot, ready to restore.
pub(super) fn fetch(
    ctx: &Ctx<'_>,
    t: &Target,
    key: &Key,
    warnings: &mut Vec<Warning>,
) -> Option<Entry> {
    let remote = ctx.remote?;
    if !ctx.writable {
        // A hit must land in the first depot before it is restored.
        return None;
    }
    match remote.fetch(&ctx.depots[0], key) {
        Ok(Some(f)) => {
            tracing::debug!(bytes = f.bytes_down, "remote: hit");
            ctx.usage.count(&t.name, |c| {
                c.remote_hits += 1;
                c.remote_bytes_down += f.bytes_down;
            });
            Some(f.entry)
        }
        Ok(None) => {
            tracing::debug!("remote: miss: no entry");
            ctx.usage.count(&t.name, |c| c.remote_misses += 1);
            None
        }
        Err(f) => {
            failed(ctx, t, &f, "could not fetch", warnings);
            None
        }
    }
}

/// Uploads a newly stored entry (read-write remotes only).
pub(super) fn upload(ctx: &Ctx<'_>, t: &Target, entry: &Entry, warnings: &mut Vec<Warning>) {
    let Some(remote) = ctx.remote else {
        return;
    };
    match remote.upload(&ctx.depots[0], entry) {
        Ok(u) => {
            tracing::debug!(bytes = u.bytes_up, entry = u.entry, "remote: uploaded");
            ctx.usage.count(&t.name, |c| {
                c.remote_bytes_up += u.bytes_up;
                c.remote_uploads += u64::from(u.entry);
            })
        }
        Err(f) => failed(ctx, t, &f, "could not upload", warnings),
    }
}

/// Looks base key `base` of a target with a depfile up on the remote after
/// every depot missed: the remote's variants record of `base` lists the
/// path sets seen; the first set whose files, hashed now, key an entry on
/// the remote is fetched like a plain entry (blobs, then the entry, into the
/// first depot), and that set is added to the first depot's record so the
/// next build hits locally. A damaged record is a miss counted as corrupt.
pub(super) fn fetch_discovered(
    ctx: &Ctx<'_>,
    t: &Target,
    base: &Key,
    deps: &DepOuts<'_>,
    warnings: &mut Vec<Warning>,
) -> Option<Entry> {
    let remote = ctx.remote?;
    if !ctx.writable {
        return None;
    }
    let record = match remote.fetch_variants(base) {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::debug!("remote: miss: no variants record");
            ctx.usage.count(&t.name, |c| c.remote_misses += 1);
            return None;
        }
        Err(f) => {
            failed(ctx, t, &f, "could not fetch", warnings);
            return None;
        }
    };
    for (key, _) in discover::candidates_of(ctx, &record.variants, deps) {
        match remote.fetch(&ctx.depots[0], &key) {
            Ok(Some(f)) => {
                tracing::debug!(%key, bytes = f.bytes_down, "remote: hit");
                ctx.usage.count(&t.name, |c| {
                    c.remote_hits += 1;
                    c.remote_bytes_down += record.bytes_down + f.bytes_down;
                });
                // Only the set just fetched: the local record names no set
                // whose entry the depot lacks.
                if let Err(e) = ctx.depots[0].add_variant(base, f.entry.discovered_paths()) {
                    warnings.push(Warning::new(
                        WarningKind::Store,
                        format!(
                            "could not record the depfile's inputs of `{}` fetched from the remote: {e}",
                            t.name
                        ),
                    ));
                }
                return Some(f.entry);
            }
            Ok(None) => continue,
            Err(f) => {
                failed(ctx, t, &f, "could not fetch", warnings);
                return None;
            }
        }
    }
    tracing::debug!("remote: miss: no entry for the files as they are now");
    ctx.usage.count(&t.name, |c| c.remote_misses += 1);
    None
}
