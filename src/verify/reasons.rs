//! How a stored non-relocatability reason reads in a `verify` report: its
//! problem kind and the message with the fix.

use std::collections::BTreeSet;

use super::ProblemKind;
use crate::depot::entries::{Entry, Reason, ReasonKind};
use crate::digest::Digest;

/// Every blob of `e` with what it holds, for messages.
pub(super) fn blob_uses(e: &Entry) -> Vec<(Digest, String)> {
    let mut v: Vec<(Digest, String)> = Vec::new();
    for o in &e.outputs {
        if let Some(d) = o.digest {
            v.push((d, format!("output `{}`", o.path)));
        }
    }
    v.extend(e.stdout.map(|d| (d, "captured stdout".to_owned())));
    v.extend(e.stderr.map(|d| (d, "captured stderr".to_owned())));
    v.push((e.inputs, "inputs summary".to_owned()));
    let mut seen = BTreeSet::new();
    v.retain(|(d, _)| seen.insert(*d));
    v
}

pub(super) fn kind_of(r: &Reason) -> ProblemKind {
    match r.kind {
        ReasonKind::EmbeddedPath => ProblemKind::EmbeddedPath,
        ReasonKind::AbsoluteSymlink => ProblemKind::AbsoluteSymlink,
        ReasonKind::EscapingSymlink => ProblemKind::EscapingSymlink,
        ReasonKind::UntrackedInput => ProblemKind::UntrackedInput,
        ReasonKind::Other(_) => ProblemKind::NotRelocatable,
    }
}

/// A stored reason as the user should read it: the target, the file, the
/// absolute path (when the project is known) and the fix.
pub(super) fn render_reason(
    e: &Entry,
    r: &Reason,
    project_root: Option<&str>,
    depot_root: &str,
) -> String {
    let file = r.path.as_ref().map(|p| p.as_str()).unwrap_or("?");
    let help = |root: &str| r.kind.help(root, file).unwrap_or_default();
    match &r.kind {
        ReasonKind::EmbeddedPath => {
            let on_depot = r.detail.contains("@depot");
            let (what, abs) = if on_depot {
                ("depot root", Some(depot_root))
            } else {
                ("project root", project_root)
            };
            let offset = r
                .offset
                .map(|o| format!(" at byte {o}"))
                .unwrap_or_default();
            let (found, prefix) = match abs {
                Some(a) => (format!("the absolute path `{a}` (the {what})"), a.to_owned()),
                None => (
                    format!("the absolute {what} it was built in (@project; run verify inside the project to see it)"),
                    "<project root>".to_owned(),
                ),
            };
            format!(
                "output `{file}` of `{}` embeds {found}{offset}, so it is wrong anywhere else\n  help: {}; then rebuild",
                e.target,
                help(&prefix)
            )
        }
        ReasonKind::UntrackedInput => format!(
            "`{}` reads `{file}` with track_content = false: its size and mtime enter the key, and a copy or checkout changes the mtime, so it misses after a move\n  help: {}",
            e.target,
            help("")
        ),
        ReasonKind::AbsoluteSymlink | ReasonKind::EscapingSymlink => format!(
            "output symlink `{file}` of `{}` points outside the project ({})\n  help: {} and rebuild",
            e.target,
            r.detail,
            help("")
        ),
        ReasonKind::Other(_) => format!("`{}` is not relocatable: {}", e.target, r.detail),
    }
}
