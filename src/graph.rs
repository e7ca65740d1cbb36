//! `graph`: the dependency graph of targets — optionally with the files they
//! read — coloured by status, as DOT, Mermaid or JSON, or drawn as SVG/HTML
//! by [`layout`] and `svg`. Edges point from a dependency to its dependent
//! (file → target, dep → target). A template's instances are kept in the
//! graph and summarised in [`Graph::groups`]; [`group`] collapses each
//! template into one node for the pictures.

pub mod group;
pub mod layout;
mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::depot::Depot;
use crate::engine::plan::plan;
use crate::engine::BuildError;
use crate::inspect::{status_of, TargetStatus};
use crate::manifest::Manifest;

/// Node kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A `[target.NAME]`.
    Target,
    /// A tracked input file.
    File,
    /// A template drawn as one node standing for its instances (only in
    /// [`Graph::collapsed`]).
    Template,
}

/// A node of the graph.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Target name, or the file's relative path (prefixed `file:` only when
    /// it would collide with a target name).
    pub id: String,
    /// Target or file.
    pub kind: NodeKind,
    /// Targets: ready, stale, unstarted, started. Files: changed, unchanged.
    pub status: String,
    /// Target name or file path.
    pub label: String,
    /// For stale targets: their changed input files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// For a template node: its instances and how many have each status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<group::Mix>,
}

/// An edge from a dependency to its dependent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The dependency (dep target or file).
    pub from: String,
    /// The dependent target.
    pub to: String,
}

/// The graph.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// Targets first (dependency order), then files (sorted).
    pub nodes: Vec<Node>,
    /// Sorted edges.
    pub edges: Vec<Edge>,
    /// Each template among the targets, with its instances and status mix
    /// (sorted by name; empty when no target is an instance).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<group::Group>,
}

/// What to draw.
#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    /// Add tracked input files as nodes.
    pub files: bool,
    /// Only the targets that read this file, directly or through deps.
    pub for_file: Option<String>,
    /// Only these targets (instances, templates) and their deps; all when empty.
    pub targets: Vec<String>,
}

/// Builds the graph of every target of `manifest`.
// Long on purpose: nodes, edges and (with --files) file nodes built from the same plan, statuses and kept set, in that order.
pub fn graph(
    manifest: &Manifest,
    depots: &[Depot],
    depot_root: &std::path::Path,
    opts: &GraphOptions,
) -> Result<Graph, BuildError> {
    let planned = plan(manifest, depots, depot_root, &opts.targets)?;
    let statuses: Vec<TargetStatus> = planned
        .iter()
        .map(|p| status_of(manifest, depots, p))
        .collect();
    let files_of: BTreeMap<&str, BTreeSet<String>> = planned
        .iter()
        .map(|p| {
            let mut files: BTreeSet<String> = p
                .summary
                .as_ref()
                .map(|s| {
                    // Files only: directories below a directory input are
                    // keyed by name, but are not files a target reads.
                    s.files
                        .iter()
                        .filter(|(_, st)| !matches!(st, crate::file_state::FileState::Dir))
                        .map(|(f, _)| f.to_string())
                        .collect()
                })
                .unwrap_or_default();
            // Project files its depfile named (its entry's, or the last
            // build's that changed); system headers would only crowd it.
            let discovered = p
                .entry
                .iter()
                .flat_map(|(_, e)| e.discovered.iter().map(|d| &d.path))
                .chain(p.discovered.iter().map(|d| &d.path));
            files.extend(
                discovered
                    .filter(|d| matches!(d, crate::discovered::DiscoveredPath::Project(_)))
                    .map(|d| d.to_string()),
            );
            (p.name.as_str(), files)
        })
        .collect();
    let mut keep: BTreeSet<String> = planned.iter().map(|p| p.name.clone()).collect();
    if let Some(f) = &opts.for_file {
        let direct: Vec<&str> = files_of
            .iter()
            .filter(|(_, fs)| fs.contains(f))
            .map(|(n, _)| *n)
            .collect();
        keep = dependents_closure(manifest, &direct);
    }
    let changed_files: BTreeSet<String> = statuses
        .iter()
        .flat_map(|s| s.changed.iter().map(|c| c.path.clone()))
        .collect();
    let mut nodes = Vec::new();
    let mut edges = BTreeSet::new();
    for s in statuses.iter().filter(|s| keep.contains(&s.name)) {
        nodes.push(Node {
            id: s.name.clone(),
            kind: NodeKind::Target,
            status: s.status.as_str().to_owned(),
            label: s.name.clone(),
            changed: s.changed.iter().map(|c| c.path.clone()).collect(),
            group: None,
        });
        for d in &manifest.targets[&s.name].deps {
            if keep.contains(d) {
                edges.insert(Edge {
                    from: d.clone(),
                    to: s.name.clone(),
                });
            }
        }
    }
    if opts.files {
        let mut file_ids: BTreeMap<String, String> = BTreeMap::new();
        for name in &keep {
            for f in files_of.get(name.as_str()).into_iter().flatten() {
                // With --for-file, only the file asked about and the files of
                // the selected targets are shown.
                let id = file_ids
                    .entry(f.clone())
                    .or_insert_with(|| {
                        if manifest.targets.contains_key(f) || group::is_template(manifest, f) {
                            format!("file:{f}")
                        } else {
                            f.clone()
                        }
                    })
                    .clone();
                edges.insert(Edge {
                    from: id,
                    to: name.clone(),
                });
            }
        }
        for (f, id) in file_ids {
            nodes.push(Node {
                id,
                kind: NodeKind::File,
                status: if changed_files.contains(&f) {
                    "changed"
                } else {
                    "unchanged"
                }
                .into(),
                label: f,
                changed: vec![],
                group: None,
            });
        }
    }
    let groups = group::groups(&nodes);
    Ok(Graph {
        nodes,
        edges: edges.into_iter().collect(),
        groups,
    })
}

/// `names` and every target that depends on them, directly or not.
fn dependents_closure(manifest: &Manifest, names: &[&str]) -> BTreeSet<String> {
    let mut keep: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    loop {
        let before = keep.len();
        for (n, t) in &manifest.targets {
            if t.deps.iter().any(|d| keep.contains(d)) {
                keep.insert(n.clone());
            }
        }
        if keep.len() == before {
            return keep;
        }
    }
}

/// Fill colour of a status.
pub fn color(status: &str) -> &'static str {
    match status {
        "ready" => "#8fd694",
        "stale" => "#f5b041",
        "started" => "#85c1e9",
        "changed" => "#ec7063",
        "unchanged" => "#ffffff",
        _ => "#d5d8dc",
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", dot_escape(s))
}

impl Graph {
    /// Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph relocache {\n  rankdir=LR;\n  node [style=filled, fontname=\"Helvetica\"];\n",
        );
        for n in &self.nodes {
            let shape = match n.kind {
                NodeKind::Target => "box",
                NodeKind::File => "note",
                NodeKind::Template => "box3d",
            };
            let mut tip = n.status.clone();
            let mut label = dot_quote(&n.label);
            if let Some(mix) = &n.group {
                // Two lines: `\n` is DOT's line break, so it is not escaped.
                label = format!(
                    "\"{} ×{}\\n{}\"",
                    dot_escape(&n.label),
                    mix.instances,
                    dot_escape(&mix.summary())
                );
                tip = format!("template {}: {}", n.label, mix.summary());
            }
            if !n.changed.is_empty() {
                tip.push_str(&format!(": changed {}", n.changed.join(", ")));
            }
            let _ = writeln!(
                out,
                "  {} [label={}, shape={shape}, fillcolor=\"{}\", tooltip={}];",
                dot_quote(&n.id),
                label,
                color(&n.status),
                dot_quote(&tip)
            );
        }
        for e in &self.edges {
            let _ = writeln!(out, "  {} -> {};", dot_quote(&e.from), dot_quote(&e.to));
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let ids: BTreeMap<&str, String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), format!("n{i}")))
            .collect();
        let mut out = String::from("graph LR\n");
        for n in &self.nodes {
            let label = n.label.replace('"', "#quot;");
            let shape = match (&n.kind, &n.group) {
                (NodeKind::File, _) => format!("[/\"{label}\"/]"),
                (_, Some(mix)) => {
                    format!("[[\"{label} ×{}<br/>{}\"]]", mix.instances, mix.summary())
                }
                _ => format!("[\"{label}\"]"),
            };
            let _ = writeln!(out, "  {}{shape}:::{}", ids[n.id.as_str()], n.status);
        }
        for e in &self.edges {
            let _ = writeln!(out, "  {} --> {}", ids[e.from.as_str()], ids[e.to.as_str()]);
        }
        for s in [
            "ready",
            "stale",
            "unstarted",
            "started",
            "changed",
            "unchanged",
        ] {
            let _ = writeln!(out, "  classDef {s} fill:{},stroke:#333", color(s));
        }
        out
    }
}
