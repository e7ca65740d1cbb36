//! A layered (Sugiyama-style) drawing of a directed acyclic graph, left to
//! right, so `graph --format svg` needs no graphviz: longest-path layering,
//! dummy nodes on edges that skip layers, barycenter ordering to reduce
//! crossings, and neighbour-averaged vertical placement. A layer too tall for
//! one column wraps into several side by side (row by row, keeping its
//! order), so a thousand targets make a block, not a 50,000 px strip. Pure
//! geometry: it knows sizes and edges, never what the nodes mean.

/// A node's box, top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// Where everything goes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// One box per input node, in input order.
    pub nodes: Vec<Rect>,
    /// One polyline per input edge, in input order: from the right side of
    /// the source, through the skipped layers, to the left side of the target.
    pub edges: Vec<Vec<(f64, f64)>>,
    /// Extent of the drawing (from 0,0).
    pub width: f64,
    /// Extent of the drawing (from 0,0).
    pub height: f64,
}

/// Spacing of the drawing.
#[derive(Debug, Clone, Copy)]
pub struct Spacing {
    /// Horizontal gap between layers.
    pub layer_gap: f64,
    /// Vertical gap between nodes of one layer.
    pub node_gap: f64,
    /// Margin around the drawing.
    pub margin: f64,
    /// A layer taller than this wraps into several columns (the limit grows
    /// when the whole drawing would otherwise be much wider than 16:9).
    pub max_column: f64,
    /// Horizontal gap between the columns of a wrapped layer.
    pub column_gap: f64,
}

impl Default for Spacing {
    fn default() -> Spacing {
        Spacing {
            layer_gap: 70.0,
            node_gap: 18.0,
            margin: 12.0,
            max_column: 1600.0,
            column_gap: 24.0,
        }
    }
}

/// Height reserved for an edge passing through a layer.
const DUMMY_HEIGHT: f64 = 6.0;

/// Lays out `sizes.len()` nodes of the given (width, height) joined by
/// `edges` (from, to). A cycle does not panic: its back edges are drawn
/// straight.
pub fn layered(sizes: &[(f64, f64)], edges: &[(usize, usize)], sp: Spacing) -> Layout {
    let n = sizes.len();
    let layer = longest_path_layers(n, edges);
    // Virtual nodes: the real ones, then one dummy per skipped layer per edge.
    let mut vlayer = layer.clone();
    let mut vsize: Vec<(f64, f64)> = sizes.to_vec();
    let mut vedges: Vec<(usize, usize)> = Vec::new();
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for &(u, v) in edges {
        let mut chain = vec![u];
        if layer[v] > layer[u] + 1 {
            for l in layer[u] + 1..layer[v] {
                vlayer.push(l);
                vsize.push((0.0, DUMMY_HEIGHT));
                chain.push(vlayer.len() - 1);
            }
        }
        chain.push(v);
        if layer[v] > layer[u] {
            for w in chain.windows(2) {
                vedges.push((w[0], w[1]));
            }
        }
        chains.push(chain);
    }
    let layers_n = vlayer.iter().max().map_or(0, |m| m + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layers_n];
    for (v, &l) in vlayer.iter().enumerate() {
        layers[l].push(v);
    }
    let preds = adjacency(vlayer.len(), &vedges, true);
    let succs = adjacency(vlayer.len(), &vedges, false);
    order_layers(&mut layers, &preds, &succs);

    let limit = column_limit(&vsize[..n], sp);
    let cols: Vec<usize> = layers
        .iter()
        .map(|l| columns(l, &vsize, sp.node_gap, limit))
        .collect();
    // x: each column as wide as the layer's widest node.
    let mut x = vec![0.0; vlayer.len()];
    let mut left = sp.margin;
    let mut layer_right = Vec::with_capacity(layers_n);
    for (l, &c) in layers.iter().zip(&cols) {
        let w = l.iter().map(|&v| vsize[v].0).fold(0.0, f64::max);
        for (i, &v) in l.iter().enumerate() {
            let col = (i % c) as f64;
            x[v] = left + col * (w + sp.column_gap) + (w - vsize[v].0) / 2.0;
        }
        let right = left + c as f64 * w + (c - 1) as f64 * sp.column_gap;
        layer_right.push(right);
        left = right + sp.layer_gap;
    }
    let y = place_vertically(&layers, &cols, &vsize, &preds, &succs, sp.node_gap);
    let top = (0..vlayer.len())
        .map(|v| y[v] - vsize[v].1 / 2.0)
        .fold(f64::INFINITY, f64::min);
    let shift = if top.is_finite() {
        sp.margin - top
    } else {
        0.0
    };
    let rect = |v: usize| Rect {
        x: x[v],
        y: y[v] + shift - vsize[v].1 / 2.0,
        w: vsize[v].0,
        h: vsize[v].1,
    };
    let nodes: Vec<Rect> = (0..n).map(rect).collect();
    let edges = chains
        .iter()
        .map(|chain| {
            let last = chain.len() - 1;
            chain
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let r = rect(v);
                    let cy = r.y + r.h / 2.0;
                    if i == 0 {
                        (r.x + r.w, cy)
                    } else if i == last {
                        (r.x, cy)
                    } else {
                        (r.x + r.w / 2.0, cy)
                    }
                })
                .collect()
        })
        .collect();
    let height = (0..vlayer.len())
        .map(|v| rect(v).y + vsize[v].1)
        .fold(0.0, f64::max)
        + sp.margin;
    let width = layer_right.last().copied().unwrap_or(0.0) + sp.margin;
    Layout {
        nodes,
        edges,
        width,
        height,
    }
}

/// The height above which a layer wraps: `max_column`, or more when the
/// nodes' total area would make a drawing of that height much wider than
/// 16:9 (a square-ish block reads better than a long strip).
fn column_limit(sizes: &[(f64, f64)], sp: Spacing) -> f64 {
    let area: f64 = sizes
        .iter()
        .map(|(w, h)| (w + sp.column_gap) * (h + sp.node_gap))
        .sum();
    sp.max_column.max((area * 9.0 / 16.0).sqrt())
}

/// How many columns `layer` needs so that none is taller than `limit`.
fn columns(layer: &[usize], size: &[(f64, f64)], gap: f64, limit: f64) -> usize {
    let tall: f64 = layer.iter().map(|&v| size[v].1 + gap).sum::<f64>() - gap;
    if tall <= limit || layer.len() < 2 {
        return 1;
    }
    ((tall / limit).ceil() as usize).clamp(1, layer.len())
}

/// Layer of each node: 0 for sources, else one more than its deepest
/// predecessor. Nodes left over by a cycle go after everything else.
fn longest_path_layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indeg = vec![0usize; n];
    let mut out = vec![Vec::new(); n];
    for &(u, v) in edges {
        if u != v {
            indeg[v] += 1;
            out[u].push(v);
        }
    }
    let mut layer = vec![0usize; n];
    let mut done = vec![false; n];
    let mut queue: std::collections::VecDeque<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    while let Some(u) = queue.pop_front() {
        done[u] = true;
        for &v in &out[u] {
            layer[v] = layer[v].max(layer[u] + 1);
            indeg[v] -= 1;
            if indeg[v] == 0 {
                queue.push_back(v);
            }
        }
    }
    let deepest = layer.iter().copied().max().unwrap_or(0);
    for v in 0..n {
        if !done[v] {
            layer[v] = deepest + 1;
        }
    }
    layer
}

fn adjacency(n: usize, edges: &[(usize, usize)], reverse: bool) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for &(u, v) in edges {
        if reverse {
            adj[v].push(u);
        } else {
            adj[u].push(v);
        }
    }
    adj
}

/// Edge crossings between two adjacent layers.
fn crossings(upper: &[usize], lower: &[usize], succs: &[Vec<usize>]) -> usize {
    let mut pos = std::collections::HashMap::new();
    for (i, &v) in lower.iter().enumerate() {
        pos.insert(v, i);
    }
    let mut ends: Vec<(usize, usize)> = Vec::new();
    for (i, &u) in upper.iter().enumerate() {
        for v in &succs[u] {
            if let Some(&j) = pos.get(v) {
                ends.push((i, j));
            }
        }
    }
    let mut count = 0;
    for a in 0..ends.len() {
        for b in a + 1..ends.len() {
            let (i1, j1) = ends[a];
            let (i2, j2) = ends[b];
            if (i1 < i2 && j1 > j2) || (i1 > i2 && j1 < j2) {
                count += 1;
            }
        }
    }
    count
}

fn total_crossings(layers: &[Vec<usize>], succs: &[Vec<usize>]) -> usize {
    layers
        .windows(2)
        .map(|w| crossings(&w[0], &w[1], succs))
        .sum()
}

/// Barycenter sweeps down and up, keeping the ordering with fewest crossings.
fn order_layers(layers: &mut [Vec<usize>], preds: &[Vec<usize>], succs: &[Vec<usize>]) {
    let mut best = layers.to_vec();
    let mut best_cross = total_crossings(layers, succs);
    for iter in 0..8 {
        let down = iter % 2 == 0;
        let range: Vec<usize> = if down {
            (1..layers.len()).collect()
        } else {
            (0..layers.len().saturating_sub(1)).rev().collect()
        };
        for l in range {
            let (fixed, neighbours) = if down { (l - 1, preds) } else { (l + 1, succs) };
            let pos: std::collections::HashMap<usize, usize> = layers[fixed]
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, i))
                .collect();
            let mut keyed: Vec<(f64, usize, usize)> = layers[l]
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ps: Vec<usize> = neighbours[v]
                        .iter()
                        .filter_map(|u| pos.get(u).copied())
                        .collect();
                    let bary = if ps.is_empty() {
                        i as f64
                    } else {
                        ps.iter().sum::<usize>() as f64 / ps.len() as f64
                    };
                    (bary, i, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            layers[l] = keyed.into_iter().map(|(_, _, v)| v).collect();
        }
        let c = total_crossings(layers, succs);
        if c < best_cross {
            best_cross = c;
            best = layers.to_vec();
        }
        if best_cross == 0 {
            break;
        }
    }
    layers.clone_from_slice(&best);
}

/// Vertical centres: stack each layer, then pull nodes towards the mean of
/// their neighbours while keeping the order and the gaps.
/// A wrapped layer (`cols > 1`) is a grid filled row by row and stays
/// where it is stacked; the others move towards it.
fn place_vertically(
    layers: &[Vec<usize>],
    cols: &[usize],
    size: &[(f64, f64)],
    preds: &[Vec<usize>],
    succs: &[Vec<usize>],
    gap: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; size.len()];
    for (l, &c) in layers.iter().zip(cols) {
        let mut top = 0.0;
        for row in l.chunks(c) {
            let h = row.iter().map(|&v| size[v].1).fold(0.0, f64::max);
            for &v in row {
                y[v] = top + h / 2.0;
            }
            top += h + gap;
        }
    }
    for iter in 0..12 {
        let down = iter % 2 == 0;
        let order: Vec<usize> = if down {
            (0..layers.len()).collect()
        } else {
            (0..layers.len()).rev().collect()
        };
        for li in order {
            if cols[li] > 1 {
                continue;
            }
            let l = &layers[li];
            let wanted: Vec<f64> = l
                .iter()
                .map(|&v| {
                    let ns: Vec<f64> = preds[v].iter().chain(&succs[v]).map(|&u| y[u]).collect();
                    if ns.is_empty() {
                        y[v]
                    } else {
                        ns.iter().sum::<f64>() / ns.len() as f64
                    }
                })
                .collect();
            // Keep the order and the gaps, then move the whole layer so it
            // sits, on average, where its nodes want to be.
            let mut placed = wanted.clone();
            for i in 1..l.len() {
                let min = placed[i - 1] + (size[l[i - 1]].1 + size[l[i]].1) / 2.0 + gap;
                placed[i] = placed[i].max(min);
            }
            let drift: f64 =
                wanted.iter().zip(&placed).map(|(w, p)| w - p).sum::<f64>() / l.len().max(1) as f64;
            for (i, &v) in l.iter().enumerate() {
                y[v] = placed[i] + drift;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: &Rect, b: &Rect) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn chain_goes_left_to_right() {
        let l = layered(&[(40.0, 20.0); 3], &[(0, 1), (1, 2)], Spacing::default());
        assert!(l.nodes[0].x + l.nodes[0].w < l.nodes[1].x);
        assert!(l.nodes[1].x + l.nodes[1].w < l.nodes[2].x);
        assert!(l.width >= l.nodes[2].x + 40.0);
    }

    #[test]
    fn nodes_never_overlap_and_stay_inside() {
        // A diamond plus a long edge and an isolated node.
        let sizes = [
            (60.0, 30.0),
            (30.0, 30.0),
            (90.0, 30.0),
            (40.0, 30.0),
            (50.0, 30.0),
        ];
        let edges = [(0, 1), (0, 2), (1, 3), (2, 3), (0, 3)];
        let l = layered(&sizes, &edges, Spacing::default());
        for i in 0..sizes.len() {
            let r = &l.nodes[i];
            assert!(r.x >= 0.0 && r.y >= 0.0, "{r:?}");
            assert!(r.x + r.w <= l.width && r.y + r.h <= l.height, "{r:?}");
            for j in i + 1..sizes.len() {
                assert!(!overlap(r, &l.nodes[j]), "{i} and {j} overlap");
            }
        }
        // The edge 0 -> 3 skips a layer: it bends through a dummy point.
        assert_eq!(l.edges[4].len(), 3);
        assert_eq!(l.edges[0].len(), 2);
    }

    #[test]
    fn ordering_removes_avoidable_crossings() {
        // a->d, b->c drawn in input order would cross.
        let sizes = [(20.0, 20.0); 4];
        let edges = [(0, 3), (1, 2)];
        let l = layered(&sizes, &edges, Spacing::default());
        let above = |a: usize, b: usize| l.nodes[a].y < l.nodes[b].y;
        assert_eq!(above(0, 1), above(3, 2));
    }

    #[test]
    fn a_wide_layer_wraps_into_a_block_without_overlaps() {
        // One source feeding 1,000 nodes that all feed one sink.
        let n = 1002;
        let mut sizes = vec![(160.0, 40.0); n];
        sizes[0] = (60.0, 40.0);
        let mut edges = Vec::new();
        for v in 1..n - 1 {
            edges.push((0, v));
            edges.push((v, n - 1));
        }
        let l = layered(&sizes, &edges, Spacing::default());
        // Unwrapped, the middle column alone would be 58,000 px tall.
        assert!(
            l.height < 4000.0 && l.width < 7000.0,
            "{}x{}",
            l.width,
            l.height
        );
        assert!(l.width / l.height < 3.0 && l.height / l.width < 3.0);
        let mut boxes = l.nodes.clone();
        boxes.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= l.width && a.y + a.h <= l.height);
            for b in &boxes[i + 1..] {
                if b.x >= a.x + a.w {
                    break;
                }
                assert!(!overlap(a, b), "{a:?} and {b:?} overlap");
            }
        }
        // The source is left of every middle node, the sink right of them.
        let middle = &l.nodes[1..n - 1];
        assert!(middle.iter().all(|r| r.x > l.nodes[0].x + 60.0));
        assert!(middle.iter().all(|r| r.x + r.w < l.nodes[n - 1].x));
        assert_eq!(l.edges.len(), edges.len(), "every edge is drawn");
    }

    #[test]
    fn a_layer_that_fits_does_not_wrap() {
        let sizes = [(40.0, 40.0); 11];
        let edges: Vec<(usize, usize)> = (1..11).map(|v| (0, v)).collect();
        let l = layered(&sizes, &edges, Spacing::default());
        let xs: std::collections::BTreeSet<i64> = l.nodes[1..].iter().map(|r| r.x as i64).collect();
        assert_eq!(xs.len(), 1, "ten nodes stay one column");
    }

    #[test]
    fn a_cycle_does_not_panic() {
        let l = layered(&[(20.0, 20.0); 2], &[(0, 1), (1, 0)], Spacing::default());
        assert_eq!(l.nodes.len(), 2);
        assert_eq!(l.edges.len(), 2);
    }

    #[test]
    fn empty_graph() {
        let l = layered(&[], &[], Spacing::default());
        assert!(l.nodes.is_empty());
        assert!(l.width >= 0.0 && l.height >= 0.0);
    }
}
