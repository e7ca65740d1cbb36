//! Templates in the graph: an instance is named `TEMPLATE:PATH`, so the
//! template of a target is the part of its name before the first `:` (a plain
//! target name never holds one). This module summarises each template's
//! instances ([`Group`]) and collapses them into one node for the pictures
//! ([`Graph::collapsed`]). Names only: it never reads the manifest's tables.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Edge, Graph, Node, NodeKind};
use crate::manifest::Manifest;

/// Target statuses in the order a mix is spelled and, after `ready`, in the
/// order that picks the colour of a mixed template (what a build would do
/// first: rebuild stale instances, then build unstarted ones).
const ORDER: [&str; 4] = ["ready", "stale", "unstarted", "started"];

/// The template `name` is an instance of, if it is one.
pub fn template_of(name: &str) -> Option<&str> {
    name.split_once(':').map(|(template, _)| template)
}

/// Whether `name` is the name of a template of `manifest` (some target is
/// `name:…`).
pub(crate) fn is_template(manifest: &Manifest, name: &str) -> bool {
    manifest
        .targets
        .keys()
        .any(|t| template_of(t) == Some(name))
}

/// How many instances a template node stands for, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Number of instances.
    pub instances: usize,
    /// Instances per status (`ready`, `stale`, …); only statuses present.
    pub statuses: BTreeMap<String, usize>,
}

impl Mix {
    fn add(&mut self, status: &str) {
        self.instances += 1;
        *self.statuses.entry(status.to_owned()).or_default() += 1;
    }

    /// The statuses present with their counts, in a fixed order
    /// (`ready`, `stale`, `unstarted`, `started`, then any other).
    pub fn counts(&self) -> Vec<(&str, usize)> {
        let mut out: Vec<(&str, usize)> = ORDER
            .iter()
            .filter_map(|s| Some((*s, *self.statuses.get(*s)?)))
            .collect();
        for (s, n) in &self.statuses {
            if !ORDER.contains(&s.as_str()) {
                out.push((s, *n));
            }
        }
        out
    }

    /// `180 ready, 20 stale`.
    pub fn summary(&self) -> String {
        self.counts()
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The status the template node is coloured with: the one status its
    /// instances share, else the first of stale, unstarted, started present.
    pub fn status(&self) -> &str {
        let counts = self.counts();
        match counts.as_slice() {
            [(only, _)] => only,
            _ => ORDER[1..]
                .iter()
                .find(|s| self.statuses.contains_key(**s))
                .copied()
                .unwrap_or_else(|| counts.first().map_or("ready", |(s, _)| s)),
        }
    }
}

/// One template of the graph: its instances (in the graph's order) and
/// their status mix.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The template's name (`obj`).
    pub name: String,
    /// Its instances' full names (`obj:src/net/http.c`).
    pub instances: Vec<String>,
    /// Instances per status.
    pub statuses: BTreeMap<String, usize>,
}

/// The templates among the target nodes of `nodes`, sorted by name.
pub(crate) fn groups(nodes: &[Node]) -> Vec<Group> {
    let mut by_name: BTreeMap<&str, (Vec<String>, Mix)> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.kind == NodeKind::Target) {
        if let Some(t) = template_of(&n.id) {
            let (names, mix) = by_name.entry(t).or_default();
            names.push(n.id.clone());
            mix.add(&n.status);
        }
    }
    by_name
        .into_iter()
        .map(|(name, (instances, mix))| Group {
            name: name.to_owned(),
            instances,
            statuses: mix.statuses,
        })
        .collect()
}

impl Graph {
    /// The graph with each template's instances replaced by one
    /// [`NodeKind::Template`] node (id and label the template's name, at the
    /// place of its first instance) and their edges merged; edges between
    /// instances of one template disappear. Files and plain targets stay.
    pub fn collapsed(&self) -> Graph {
        let id_of = |id: &str| -> String {
            match self.nodes.iter().find(|n| n.id == id) {
                Some(n) if n.kind == NodeKind::Target => {
                    template_of(id).map_or_else(|| id.to_owned(), str::to_owned)
                }
                _ => id.to_owned(),
            }
        };
        let mut nodes: Vec<Node> = Vec::new();
        let mut at: BTreeMap<String, usize> = BTreeMap::new();
        let mut changed: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for n in &self.nodes {
            let template = match n.kind {
                NodeKind::Target => template_of(&n.id),
                _ => None,
            };
            let Some(t) = template else {
                nodes.push(n.clone());
                continue;
            };
            let i = *at.entry(t.to_owned()).or_insert_with(|| {
                nodes.push(Node {
                    id: t.to_owned(),
                    kind: NodeKind::Template,
                    status: String::new(),
                    label: t.to_owned(),
                    changed: vec![],
                    group: Some(Mix::default()),
                });
                nodes.len() - 1
            });
            if let Some(mix) = &mut nodes[i].group {
                mix.add(&n.status);
            }
            changed
                .entry(i)
                .or_default()
                .extend(n.changed.iter().cloned());
        }
        for (i, files) in changed {
            nodes[i].changed = files.into_iter().collect();
        }
        for n in &mut nodes {
            if let Some(mix) = &n.group {
                n.status = mix.status().to_owned();
            }
        }
        // Edges are looked up by id once, not once per edge per node.
        let index: BTreeMap<&str, String> = self
            .edges
            .iter()
            .flat_map(|e| [e.from.as_str(), e.to.as_str()])
            .map(|id| (id, id_of(id)))
            .collect();
        let edges: BTreeSet<Edge> = self
            .edges
            .iter()
            .map(|e| Edge {
                from: index[e.from.as_str()].clone(),
                to: index[e.to.as_str()].clone(),
            })
            .filter(|e| e.from != e.to)
            .collect();
        Graph {
            nodes,
            edges: edges.into_iter().collect(),
            groups: self.groups.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, status: &str) -> Node {
        Node {
            id: id.into(),
            kind: NodeKind::Target,
            status: status.into(),
            label: id.into(),
            changed: if status == "stale" {
                vec![format!("{}.h", id.replace(':', "/"))]
            } else {
                vec![]
            },
            group: None,
        }
    }

    fn edge(from: &str, to: &str) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
        }
    }

    /// `gen`, three `obj` instances (two ready, one stale) reading `gen`,
    /// and `lib` needing all of them.
    fn templated() -> Graph {
        let nodes = vec![
            target("gen", "ready"),
            target("obj:a.c", "ready"),
            target("obj:b.c", "stale"),
            target("obj:sub/c.c", "ready"),
            target("lib", "stale"),
        ];
        let edges = vec![
            edge("gen", "obj:a.c"),
            edge("gen", "obj:b.c"),
            edge("gen", "obj:sub/c.c"),
            edge("obj:a.c", "lib"),
            edge("obj:b.c", "lib"),
            edge("obj:sub/c.c", "lib"),
        ];
        let groups = groups(&nodes);
        Graph {
            nodes,
            edges,
            groups,
        }
    }

    #[test]
    fn the_template_is_the_name_before_the_first_colon() {
        assert_eq!(template_of("obj:src/net/http.c"), Some("obj"));
        assert_eq!(template_of("obj:a:b.c"), Some("obj"));
        assert_eq!(template_of("lib"), None);
    }

    #[test]
    fn instances_collapse_into_one_node_with_their_status_mix() {
        let g = templated().collapsed();
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["gen", "obj", "lib"]);
        let obj = &g.nodes[1];
        assert_eq!(obj.kind, NodeKind::Template);
        let mix = obj.group.as_ref().unwrap();
        assert_eq!(mix.instances, 3);
        assert_eq!(mix.summary(), "2 ready, 1 stale");
        assert_eq!(obj.status, "stale", "a mix is coloured by its stale part");
        assert_eq!(obj.changed, ["obj/b.c.h"]);
        assert_eq!(g.edges, [edge("gen", "obj"), edge("obj", "lib")]);
    }

    #[test]
    fn groups_list_every_instance_and_the_graph_keeps_them() {
        let g = templated();
        assert_eq!(g.groups.len(), 1);
        assert_eq!(g.groups[0].name, "obj");
        assert_eq!(g.groups[0].instances, ["obj:a.c", "obj:b.c", "obj:sub/c.c"]);
        assert_eq!(g.groups[0].statuses["ready"], 2);
        assert_eq!(g.nodes.len(), 5, "the full graph keeps the instances");
    }

    #[test]
    fn a_uniform_template_takes_its_status_and_plain_graphs_are_unchanged() {
        let mut g = templated();
        for n in &mut g.nodes {
            n.status = "ready".into();
            n.changed.clear();
        }
        assert_eq!(g.collapsed().nodes[1].status, "ready");
        let plain = Graph {
            nodes: vec![target("a", "ready"), target("b", "stale")],
            edges: vec![edge("a", "b")],
            groups: vec![],
        };
        let c = plain.collapsed();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.edges, plain.edges);
        assert!(groups(&plain.nodes).is_empty());
    }

    #[test]
    fn edges_between_instances_of_one_template_disappear() {
        let mut g = templated();
        g.edges.push(edge("obj:a.c", "obj:b.c"));
        let c = g.collapsed();
        assert!(c.edges.iter().all(|e| e.from != e.to));
    }
}
