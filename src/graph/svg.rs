//! `graph --format svg|html`: the [`Graph`] drawn as a standalone SVG (laid
//! out by [`super::layout`], no graphviz) with a status legend, or that SVG in
//! a self-contained HTML page. Every text is XML-escaped; nothing is fetched.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::layout::{layered, Spacing};
use super::{color, Graph, Node, NodeKind};
use crate::page::{self, escape};

const FONT: f64 = 13.0;
const SMALL: f64 = 10.5;
const TARGET_H: f64 = 40.0;
const FILE_H: f64 = 26.0;
/// A template node: a target box with a strip showing its status mix.
const TEMPLATE_H: f64 = 48.0;
/// At most this many changed files or instances are listed in a tooltip.
const TIP_LINES: usize = 20;
const LEGEND_H: f64 = 34.0;

/// Approximate width of `text` in the monospace font of the picture.
fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.62
}

/// The first line of a target's box: `obj ×200` for a template.
fn title(n: &Node) -> String {
    match &n.group {
        Some(mix) => format!("{} ×{}", n.label, mix.instances),
        None => n.label.clone(),
    }
}

/// The second line of a target's box.
fn detail(n: &Node) -> String {
    if let Some(mix) = &n.group {
        return mix.summary();
    }
    match n.changed.len() {
        0 => n.status.clone(),
        1 => format!("{} · 1 file changed", n.status),
        k => format!("{} · {k} files changed", n.status),
    }
}

/// The hover text (`<title>`) of a node.
fn tooltip(n: &Node) -> String {
    let mut t = match n.kind {
        NodeKind::Target => format!("target {}: {}", n.label, n.status),
        NodeKind::File => format!("file {}: {}", n.label, n.status),
        NodeKind::Template => format!("template {}: {}", title(n), detail(n)),
    };
    if !n.changed.is_empty() {
        t.push_str("\nchanged files:");
        for f in n.changed.iter().take(TIP_LINES) {
            t.push_str("\n  ");
            t.push_str(f);
        }
        if n.changed.len() > TIP_LINES {
            t.push_str(&format!("\n  … and {} more", n.changed.len() - TIP_LINES));
        }
    }
    if n.kind == NodeKind::Template {
        t.push_str("\n(relocache graph --expand shows each instance)");
    }
    t
}

fn size(n: &Node) -> (f64, f64) {
    match n.kind {
        NodeKind::Target | NodeKind::Template => (
            text_width(&title(n), FONT)
                .max(text_width(&detail(n), SMALL))
                .max(40.0)
                + 24.0,
            if n.group.is_some() {
                TEMPLATE_H
            } else {
                TARGET_H
            },
        ),
        NodeKind::File => (text_width(&n.label, SMALL).max(30.0) + 24.0, FILE_H),
    }
}

/// The status mix of a template along the bottom of its box: one segment
/// per status, as wide as its share of the instances.
fn mix_strip(s: &mut String, mix: &super::group::Mix, r: &super::layout::Rect) {
    let (x0, w, y) = (r.x + 6.0, r.w - 12.0, r.y + r.h - 10.0);
    let mut x = x0;
    s.push_str("<g class=\"mix\">");
    for (status, n) in mix.counts() {
        let part = w * n as f64 / mix.instances.max(1) as f64;
        let _ = write!(
            s,
            "<rect data-status=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{part:.1}\" height=\"5\" fill=\"{}\"/>",
            escape(status),
            color(status)
        );
        x += part;
    }
    s.push_str("</g>");
}

/// A smooth path through `points`: horizontal tangents at every point.
fn curve(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    if let Some((x, y)) = points.first() {
        let _ = write!(d, "M{x:.1},{y:.1}");
    }
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let mx = (x0 + x1) / 2.0;
        let _ = write!(d, " C{mx:.1},{y0:.1} {mx:.1},{y1:.1} {x1:.1},{y1:.1}");
    }
    d
}

impl Graph {
    /// The statuses drawn in the legend: every target status, and the file
    /// statuses when files are shown.
    fn legend(&self) -> Vec<(&'static str, &'static str)> {
        let mut l = vec![
            ("ready", "ready (in the depot)"),
            ("stale", "stale (inputs changed)"),
            ("unstarted", "unstarted"),
            ("started", "started (being built)"),
        ];
        if self.nodes.iter().any(|n| n.kind == NodeKind::File) {
            l.push(("changed", "file changed"));
            l.push(("unchanged", "file unchanged"));
        }
        l
    }

    /// The `<svg>` element (without an XML declaration). Nodes are
    /// `<g class="node" data-node="ID" data-status="…">` with a `<title>`
    /// (stale targets list their changed files); edges are
    /// `<path class="edge" data-from data-to>`.
    // Long on purpose: an SVG template (nodes, then edges), written in document order.
    fn svg_element(&self) -> String {
        let sizes: Vec<(f64, f64)> = self.nodes.iter().map(size).collect();
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        // Every edge joins two nodes of the graph; one that did not would
        // be left out rather than drawn to nowhere.
        let drawn: Vec<(&super::Edge, (usize, usize))> = self
            .edges
            .iter()
            .filter_map(|e| {
                Some((
                    e,
                    (*index.get(e.from.as_str())?, *index.get(e.to.as_str())?),
                ))
            })
            .collect();
        let pairs: Vec<(usize, usize)> = drawn.iter().map(|(_, p)| *p).collect();
        let lay = layered(&sizes, &pairs, Spacing::default());
        let legend = self.legend();
        let legend_w: f64 = legend
            .iter()
            .map(|(_, text)| 22.0 + text_width(text, SMALL) + 16.0)
            .sum::<f64>()
            + 12.0;
        let width = lay.width.max(legend_w).max(200.0).ceil();
        let empty = self.nodes.is_empty();
        let height = (LEGEND_H + if empty { 40.0 } else { lay.height }).ceil();
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" id="graph" class="relocache-graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace">
<title>relocache dependency graph</title>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#566573"/></marker></defs>
<style>
.edge {{ fill: none; stroke: #95a5a6; stroke-width: 1.4; }}
.edge.hl {{ stroke: #1c2833; stroke-width: 2.4; }}
.node rect {{ stroke: #566573; stroke-width: 1; }}
.node.file rect {{ stroke-dasharray: 4 2; }}
.node.template > rect {{ stroke-width: 2; }}
.node .mix rect {{ stroke: #566573; stroke-width: .5; }}
.node.hl rect {{ stroke: #1c2833; stroke-width: 2.4; }}
.node text, .legend text {{ fill: #1c2833; }}
.node .detail {{ fill: #566573; }}
</style>
<rect width="100%" height="100%" fill="#ffffff"/>"##
        );
        // Legend along the top.
        s.push_str("<g class=\"legend\">");
        let mut lx = 12.0;
        for (status, text) in &legend {
            let _ = write!(
                s,
                "<g data-legend=\"{status}\"><rect x=\"{lx:.1}\" y=\"10\" width=\"14\" height=\"14\" rx=\"3\" fill=\"{}\" stroke=\"#566573\"/><text x=\"{:.1}\" y=\"21\" font-size=\"{SMALL}\">{}</text></g>",
                color(status),
                lx + 20.0,
                escape(text)
            );
            lx += 22.0 + text_width(text, SMALL) + 16.0;
        }
        s.push_str("</g>\n");
        if empty {
            let _ = writeln!(
                s,
                "<text x=\"12\" y=\"{:.1}\" font-size=\"{FONT}\">no targets to draw</text>",
                LEGEND_H + 24.0
            );
        }
        let _ = writeln!(s, "<g transform=\"translate(0,{LEGEND_H})\">");
        for ((e, _), points) in drawn.iter().zip(&lay.edges) {
            let _ = writeln!(
                s,
                "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#arrow)\"/>",
                escape(&e.from),
                escape(&e.to),
                curve(points)
            );
        }
        for (i, (n, r)) in self.nodes.iter().zip(&lay.nodes).enumerate() {
            let kind = match n.kind {
                NodeKind::Target => "target",
                NodeKind::File => "file",
                NodeKind::Template => "template",
            };
            let _ = write!(
                s,
                "<g class=\"node {kind} {status}\" id=\"node-{i}\" data-node=\"{id}\" data-status=\"{status}\"><title>{tip}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{rx}\" fill=\"{fill}\"/>",
                status = escape(&n.status),
                id = escape(&n.id),
                tip = escape(&tooltip(n)),
                x = r.x,
                y = r.y,
                w = r.w,
                h = r.h,
                rx = if n.kind == NodeKind::File { 2 } else { 6 },
                fill = color(&n.status),
            );
            let cx = r.x + r.w / 2.0;
            match n.kind {
                NodeKind::Target | NodeKind::Template => {
                    let _ = write!(
                        s,
                        "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"{FONT}\" font-weight=\"bold\" text-anchor=\"middle\">{}</text><text class=\"detail\" x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"{SMALL}\" text-anchor=\"middle\">{}</text>",
                        r.y + 17.0,
                        escape(&title(n)),
                        r.y + 32.0,
                        escape(&detail(n))
                    );
                    if let Some(mix) = &n.group {
                        mix_strip(&mut s, mix, r);
                    }
                }
                NodeKind::File => {
                    let _ = write!(
                        s,
                        "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"{SMALL}\" text-anchor=\"middle\">{}</text>",
                        r.y + 17.0,
                        escape(&n.label)
                    );
                }
            }
            s.push_str("</g>\n");
        }
        s.push_str("</g>\n</svg>\n");
        s
    }

    /// A standalone SVG document.
    pub fn to_svg(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
            self.svg_element()
        )
    }

    /// A self-contained HTML page showing the SVG; hovering a node
    /// highlights its edges and neighbours.
    pub fn to_html(&self, project: &str) -> String {
        let (mut targets, mut ready, mut templates) = (0, 0, 0);
        for n in &self.nodes {
            match (&n.kind, &n.group) {
                (NodeKind::File, _) => {}
                (_, Some(mix)) => {
                    templates += 1;
                    targets += mix.instances;
                    ready += mix.statuses.get("ready").copied().unwrap_or(0);
                }
                (_, None) => {
                    targets += 1;
                    ready += usize::from(n.status == "ready");
                }
            }
        }
        let grouped = match templates {
            0 => String::new(),
            1 => " (1 template drawn as one node; --expand shows each instance)".into(),
            k => format!(" ({k} templates drawn as one node each; --expand shows each instance)"),
        };
        let body = format!(
            "<h1>relocache graph: {}</h1>\n<p class=\"sub\">{targets} target{}, {ready} ready{grouped}. Hover a node for its status and changed files.</p>\n<div class=\"scroll\">\n{}</div>\n",
            escape(project),
            if targets == 1 { "" } else { "s" },
            self.svg_element()
        );
        page::html(
            &format!("relocache graph: {project}"),
            ".scroll { overflow: auto; border: 1px solid #e5e8e8; border-radius: 6px; display: inline-block; max-width: 100%; }\n",
            &body,
            HTML_SCRIPT,
        )
    }
}

const HTML_SCRIPT: &str = r##"(function () {
  var edges = document.querySelectorAll("#graph .edge");
  function mark(id, on) {
    edges.forEach(function (e) {
      var from = e.getAttribute("data-from"), to = e.getAttribute("data-to");
      if (from === id || to === id) {
        e.classList.toggle("hl", on);
        document.querySelectorAll("#graph .node").forEach(function (n) {
          var nid = n.getAttribute("data-node");
          if (nid === from || nid === to) { n.classList.toggle("hl", on); }
        });
      }
    });
  }
  document.querySelectorAll("#graph .node").forEach(function (n) {
    var id = n.getAttribute("data-node");
    n.addEventListener("mouseenter", function () { mark(id, true); });
    n.addEventListener("mouseleave", function () { mark(id, false); });
  });
  ok();
})();"##;
