//! The dependency graph between targets: the closure of a set of targets in
//! dependency order, reachability, and the checks across targets (unknown
//! deps, cycles, overlapping outputs, reading another target's output without
//! depending on it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use toml::Spanned;

use super::raw::RawTarget;
use super::validate::Cx;
use super::{Manifest, ManifestError, Pattern, Target};
use crate::relpath::{prefix_range, RelPath};

impl Manifest {
    /// What target names typed by a user mean: a target or an instance
    /// (`obj:src/a.c`) as itself, a template as all its instances; in the
    /// order given, each once. The first name that is none of these is the
    /// error.
    pub fn select(&self, names: &[String]) -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(names.len());
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let many = match self.templates.get(n) {
                Some(t) => t.instances.as_slice(),
                None if self.targets.contains_key(n) => std::slice::from_ref(n),
                None => return Err(n.clone()),
            };
            for m in many {
                if seen.insert(m.as_str()) {
                    out.push(m.clone());
                }
            }
        }
        Ok(out)
    }

    /// Whether `name` is a target, an instance or a template.
    pub fn has_name(&self, name: &str) -> bool {
        self.targets.contains_key(name) || self.templates.contains_key(name)
    }

    /// The help line for an unknown name: close names (instances too) and
    /// the names a user types (targets and templates, not each instance).
    pub fn unknown_name_help(&self, wanted: &str) -> String {
        let typed: Vec<&str> = self
            .targets
            .iter()
            .filter(|(_, t)| t.template.is_none())
            .map(|(n, _)| n.as_str())
            .chain(self.templates.keys().map(|k| k.as_str()))
            .collect();
        let close = if wanted.contains(':') {
            unknown_target_help(self.targets.keys().map(|k| k.as_str()), wanted)
        } else {
            String::new()
        };
        let help = unknown_target_help(typed, wanted);
        match close.split_once("known targets:") {
            Some((did, _)) if !did.is_empty() && !help.starts_with("did you mean") => {
                format!("{did}{help}")
            }
            _ => help,
        }
    }

    /// The names of `names` and everything they depend on, in dependency order
    /// (deps before dependents, ties broken by name).
    pub fn closure(&self, names: &[String]) -> Vec<String> {
        let sorted_deps = |n: &str| -> Vec<&str> {
            let mut deps: Vec<&str> = self
                .targets
                .get(n)
                .map(|t| t.deps.iter().map(String::as_str).collect())
                .unwrap_or_default();
            deps.sort_unstable();
            deps
        };
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::new();
        // Depth-first, post-order, on an explicit stack: a chain of a
        // hundred thousand targets must not overflow the thread's stack.
        for n in names {
            if !seen.insert(n) {
                continue;
            }
            let mut stack = vec![(n.as_str(), sorted_deps(n), 0)];
            while let Some(top) = stack.last_mut() {
                if let Some(&d) = top.1.get(top.2) {
                    top.2 += 1;
                    if seen.insert(d) {
                        stack.push((d, sorted_deps(d), 0));
                    }
                } else {
                    order.push(top.0.to_owned());
                    stack.pop();
                }
            }
        }
        order
    }
}

/// Which of `wanted` the target `from` depends on, directly or not: a
/// breadth-first walk of its deps that stops once all are found — usually at
/// once, since a target mostly reads what its direct deps write — so a deep
/// graph never costs a whole closure per target unless a target asks for it.
pub fn reachable_deps<'t>(
    targets: &'t BTreeMap<String, Target>,
    from: &str,
    wanted: &BTreeSet<&str>,
) -> BTreeSet<&'t str> {
    let mut found = BTreeSet::new();
    if wanted.is_empty() {
        return found;
    }
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut queue: std::collections::VecDeque<&'t str> = targets
        .get(from)
        .map(|t| t.deps.iter().map(|d| d.as_str()).collect())
        .unwrap_or_default();
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) {
            continue;
        }
        if wanted.contains(n) {
            found.insert(n);
            if found.len() == wanted.len() {
                break;
            }
        }
        if let Some(t) = targets.get(n) {
            queue.extend(t.deps.iter().map(|d| d.as_str()));
        }
    }
    found
}

/// Every target `from` depends on, directly or not.
pub fn transitive_deps<'t>(targets: &'t BTreeMap<String, Target>, from: &str) -> BTreeSet<&'t str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&'t str> = targets
        .get(from)
        .map(|t| t.deps.iter().map(|d| d.as_str()).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if seen.insert(n) {
            if let Some(t) = targets.get(n) {
                stack.extend(t.deps.iter().map(|d| d.as_str()));
            }
        }
    }
    seen
}

/// Every dep names a target, and the deps have no cycle (the cycle found
/// first is named, shortened when long).
pub(super) fn check_deps(
    cx: &Cx<'_>,
    targets: &BTreeMap<String, Target>,
    raw: &BTreeMap<String, Spanned<RawTarget>>,
) -> Result<(), ManifestError> {
    for (name, t) in targets {
        for (i, d) in t.deps.iter().enumerate() {
            if !targets.contains_key(d) {
                let span = raw[name].get_ref().deps.as_ref().map(|v| v[i].span());
                let known = targets.keys().map(|s| s.as_str());
                return Err(cx.err(
                    span.unwrap_or(0..0),
                    format!("target `{name}` depends on unknown target `{d}`"),
                    &format!(
                        "define `[target.{d}]` or fix the name; {}",
                        unknown_target_help(known, d)
                    ),
                ));
            }
        }
    }
    // Cycle detection: a colouring DFS on an explicit stack, which is the
    // path to report.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = targets.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for root in targets.keys() {
        if mark[root.as_str()] != Mark::New {
            continue;
        }
        // (target, index of its next dep): the path from `root`.
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        mark.insert(root.as_str(), Mark::Active);
        while let Some(top) = stack.last_mut() {
            let (n, i) = *top;
            let Some(d) = targets[n].deps.get(i) else {
                mark.insert(n, Mark::Done);
                stack.pop();
                continue;
            };
            top.1 += 1;
            match mark[d.as_str()] {
                Mark::Active => {
                    let start = stack.iter().position(|(p, _)| *p == d).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|(p, _)| p.to_string()).collect();
                    cycle.push(d.clone());
                    // A cycle through thousands of targets: its ends say enough.
                    let shown = if cycle.len() > 12 {
                        format!(
                            "{} -> … ({} more) … -> {}",
                            cycle[..8].join(" -> "),
                            cycle.len() - 11,
                            cycle[cycle.len() - 3..].join(" -> ")
                        )
                    } else {
                        cycle.join(" -> ")
                    };
                    return Err(cx.invalid(
                        targets[&cycle[0]].loc,
                        format!("dependency cycle: {shown}"),
                        "remove one of these `deps` so the targets can be ordered",
                    ));
                }
                Mark::New => {
                    mark.insert(d.as_str(), Mark::Active);
                    stack.push((d.as_str(), 0));
                }
                Mark::Done => {}
            }
        }
    }
    Ok(())
}

/// No two targets' outputs overlap, and a target that names another's output
/// (or a path within or above it) literally depends on it.
// Long on purpose: two passes (overlaps, then literal names that need a dep) over one index of outputs they share.
pub(super) fn check_outputs(
    cx: &Cx<'_>,
    targets: &BTreeMap<String, Target>,
    raw: &BTreeMap<String, Spanned<RawTarget>>,
) -> Result<(), ManifestError> {
    let all: Vec<(&str, usize, &RelPath)> = targets
        .iter()
        .flat_map(|(n, t)| {
            t.outputs
                .iter()
                .enumerate()
                .map(move |(i, o)| (n.as_str(), i, o))
        })
        .collect();
    let span_of = |name: &str, i: usize| {
        raw[name]
            .get_ref()
            .outputs
            .as_ref()
            .map(|v| v[i].span())
            .unwrap_or(0..0)
    };
    // Outputs by path, so that overlaps are found by looking up each
    // output's directories (not by comparing every pair: big projects have
    // thousands of outputs).
    let mut by_path: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, _, p)) in all.iter().enumerate() {
        by_path.entry(p.as_str()).or_default().push(i);
    }
    // Indices into `all` of the outputs that `p` is, or is below.
    let at_or_above = |p: &RelPath| -> Vec<usize> {
        p.self_and_ancestors()
            .filter_map(|a| by_path.get(a))
            .flatten()
            .copied()
            .collect()
    };
    // The first overlapping pair in declaration order, as a pairwise scan finds it.
    let all_ref = &all;
    let overlap = all
        .iter()
        .enumerate()
        .flat_map(|(j, (nj, _, pj))| {
            at_or_above(pj)
                .into_iter()
                .filter(move |&i| all_ref[i].0 != *nj)
                .map(move |i| (i.min(j), i.max(j)))
        })
        .min();
    if let Some((a, b)) = overlap {
        let ((na, ia, pa), (nb, _, pb)) = (all[a], all[b]);
        return Err(cx.err(
            span_of(na, ia),
            format!("output `{pa}` of target `{na}` overlaps output `{pb}` of target `{nb}`"),
            match (targets[na].template.as_deref(), targets[nb].template.as_deref()) {
                (Some(x), Some(y)) if x == y => "two files of one template make the same output: build the output path from `{dir}` and `{stem}` (e.g. `build/{dir}/{stem}.o`)",
                _ => "each file may be written by one target only; give the targets distinct outputs",
            },
        ));
    }
    let mut sorted: Vec<(&str, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, (_, _, p))| (p.as_str(), i))
        .collect();
    sorted.sort_unstable();
    // A target that names another target's output literally must depend on it;
    // otherwise the order of the two would be a race.
    for (name, t) in targets {
        let literals = t
            .inputs
            .iter()
            .filter_map(|i| match &i.pattern {
                Pattern::Literal(p) => Some((p, i.loc)),
                Pattern::Glob(_) => None,
            })
            .chain(t.include_dependency.iter().map(|d| (&d.path, d.loc)));
        for (p, loc) in literals {
            // The outputs `p` is within, and those within `p`, in declaration order.
            let below = prefix_range(&sorted, &format!("{p}/"), |(path, _)| path);
            let mut related = at_or_above(p);
            related.extend(sorted[below].iter().map(|(_, i)| *i));
            related.sort_unstable();
            related.dedup();
            for (owner, _, o) in related.into_iter().map(|i| &all[i]) {
                if *owner == name.as_str() {
                    if p.is_within(o) {
                        return Err(cx.invalid(
                            loc,
                            format!("target `{name}` reads its own output `{o}`"),
                            "remove the output from the inputs",
                        ));
                    }
                    continue;
                }
                if p.is_within(o) || o.is_within(p) {
                    let wanted = BTreeSet::from([*owner]);
                    if reachable_deps(targets, name, &wanted).is_empty() {
                        return Err(cx.invalid(
                            loc,
                            format!("target `{name}` reads `{p}`, an output of target `{owner}`, without depending on it"),
                            &format!("add `\"{owner}\"` to the `deps` of `{name}`"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The `help:` for a target name the manifest does not define: the closest
/// names first, then the known ones — a few of them in a big manifest, where
/// all would be thousands of names.
pub fn unknown_target_help<'a>(known: impl IntoIterator<Item = &'a str>, wanted: &str) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let mut close: Vec<(f64, &str)> = known
        .iter()
        .map(|k| (strsim::jaro_winkler(wanted, k), *k))
        .filter(|(score, _)| *score >= 0.85)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let mut help = String::new();
    if !close.is_empty() {
        let names: Vec<String> = close
            .iter()
            .take(3)
            .map(|(_, k)| format!("`{k}`"))
            .collect();
        help.push_str(&format!("did you mean {}? ", names.join(" or ")));
    }
    const SHOWN: usize = 12;
    if known.len() <= SHOWN {
        help.push_str(&format!("known targets: {}", known.join(", ")));
    } else {
        help.push_str(&format!(
            "known targets: {}, … ({} in all; `relocache status` lists them)",
            known[..SHOWN].join(", "),
            known.len()
        ));
    }
    help
}
