//! What a target may see of other targets' outputs: [`DepFiles`], the files
//! its deps' entries list (so a key needs no restore), and [`Excluded`], the
//! outputs it may not read. Plain lookups over sorted slices; no I/O.

use crate::file_state::FileState;
use crate::relpath::{equal_range, prefix_range, RelPath};

/// The files a target's deps produced, by their entries: a key can be
/// computed from these before (or without) restoring them.
#[derive(Debug, Clone, Default)]
pub struct DepFiles<'d> {
    /// The deps' declared outputs, sorted: below these, disk is not consulted.
    declared: Vec<&'d RelPath>,
    /// Every file, symlink and directory the deps' entries list, sorted by path.
    files: Vec<(&'d RelPath, &'d FileState)>,
}

impl<'d> DepFiles<'d> {
    /// The view of some deps' outputs: `(declared outputs, listed files)` of
    /// each. Borrowed, so a target deep in a chain costs pointers, not copies.
    pub fn new<I>(parts: I) -> DepFiles<'d>
    where
        I: IntoIterator<Item = (&'d [RelPath], &'d [(RelPath, FileState)])>,
    {
        let mut declared = Vec::new();
        let mut files = Vec::new();
        for (d, f) in parts {
            declared.extend(d.iter());
            files.extend(f.iter().map(|(p, s)| (p, s)));
        }
        declared.sort_unstable();
        declared.dedup();
        files.sort_unstable_by(|a, b| a.0.cmp(b.0));
        files.dedup_by(|a, b| a.0 == b.0);
        DepFiles { declared, files }
    }

    /// Whether `p` lies below (or is) a dep's declared output: one lookup
    /// per path component.
    pub fn covers(&self, p: &RelPath) -> bool {
        p.self_and_ancestors().any(|a| {
            self.declared
                .binary_search_by(|d| d.as_str().cmp(a))
                .is_ok()
        })
    }

    /// Every listed file and symlink (not directory), in path order.
    pub fn paths(&self) -> impl Iterator<Item = &'d RelPath> + '_ {
        self.files
            .iter()
            .filter(|(_, s)| !matches!(s, FileState::Dir))
            .map(|(p, _)| *p)
    }

    /// The listed files that are `p` or lie below it.
    pub fn within<'s>(&'s self, p: &'s RelPath) -> impl Iterator<Item = &'d RelPath> + 's {
        let exact = equal_range(&self.files, p.as_str(), |(f, _)| f.as_str());
        let below = prefix_range(&self.files, &format!("{p}/"), |(f, _)| f.as_str());
        self.files[exact]
            .iter()
            .chain(&self.files[below])
            .map(|(f, _)| *f)
    }

    /// The state a dep's entry gives for `p`.
    pub fn state(&self, p: &RelPath) -> Option<&'d FileState> {
        self.files
            .binary_search_by(|(f, _)| (*f).cmp(p))
            .ok()
            .map(|i| self.files[i].1)
    }
}

/// The outputs a target may not read: those of every target but its deps,
/// its own included.
pub struct Excluded<'a> {
    /// Every declared output with its target, sorted by path.
    pub outputs: &'a [(&'a RelPath, &'a str)],
    /// The target's deps whose outputs it may read, sorted: at least every
    /// transitive dep owning an output that `contains` may be asked about.
    pub deps: &'a [&'a str],
}

impl Excluded<'_> {
    /// Whether `p` is, or is below, an output the target may not read: one
    /// binary search per path component, however many targets there are.
    pub fn contains(&self, p: &RelPath) -> bool {
        p.self_and_ancestors().any(|a| {
            self.outputs[equal_range(self.outputs, a, |(o, _)| o.as_str())]
                .iter()
                .any(|(_, owner)| self.deps.binary_search(owner).is_err())
        })
    }
}
