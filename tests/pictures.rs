//! Seeing the build: `build --timings` (an HTML timeline), `build --profile`
//! (a Chrome trace) and `graph --format svg|html` (a picture without
//! graphviz). The pages are parsed as XML and, at the end of this file,
//! opened in a real headless Chromium.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The chain (`a -> b`, `c`) plus `d`, which fails, and `e`, skipped because
/// it needs `d`: every outcome a timeline can show.
fn mixed() -> Project {
    let manifest = format!(
        "{CHAIN}
[target.d]
run = \"echo d >> ../runs.log && echo 'no such compiler' >&2 && exit 3\"
inputs = [\"c.txt\"]
outputs = [\"out-d.txt\"]

[target.e]
run = \"cp out-d.txt out-e.txt\"
deps = [\"d\"]
outputs = [\"out-e.txt\"]
"
    );
    Project::new(
        &manifest,
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    )
}

const ALL: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Parses `text` as XML (the pages are XML-compatible HTML), or fails the
/// test with the parser's message and the offending line.
fn parse(text: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, opts).unwrap_or_else(|e| {
        let line = text.lines().nth(e.pos().row as usize - 1).unwrap_or("");
        panic!("not well-formed: {e}\n{line}")
    })
}

/// Elements carrying `attr`, by its value.
fn by_attr<'a>(
    doc: &'a roxmltree::Document<'a>,
    tag: &str,
    attr: &str,
) -> BTreeMap<String, roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .filter_map(|n| Some((n.attribute(attr)?.to_owned(), n)))
        .collect()
}

/// A self-contained page loads nothing: no external script, style, image or font.
fn assert_self_contained(page: &str, doc: &roxmltree::Document) {
    for n in doc.descendants().filter(|n| n.is_element()) {
        for a in ["src", "href"] {
            assert!(
                n.attribute(a).is_none(),
                "<{}> has {a}: the page must not load anything",
                n.tag_name().name()
            );
        }
        assert_ne!(n.tag_name().name(), "link", "no external stylesheets");
    }
    assert!(!page.contains("@import") && !page.contains("url(http"));
}

fn outcome_of(report: &Value, name: &str) -> (String, Option<String>) {
    let t = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the report"));
    (
        t["outcome"].as_str().unwrap().to_owned(),
        t["key"].as_str().map(|k| k[..12].to_owned()),
    )
}

#[test]
fn profile_has_one_complete_event_per_target_with_outcome_and_key() {
    let p = mixed();
    let trace_path = p.tmp.path().join("trace.json");
    let first = p.build(&["--profile", trace_path.to_str().unwrap()]);
    assert_eq!(first.code, 1, "d fails: {}", first.stderr);
    assert!(
        first.stderr.contains("profile: ") && first.stderr.contains("trace.json"),
        "the path is printed: {}",
        first.stderr
    );
    // Second build: a, b and c hit, so hits carry the time they saved.
    let second = p.build(&["--profile", trace_path.to_str().unwrap()]);
    let report = second.json();
    let trace: Value =
        serde_json::from_slice(&std::fs::read(&trace_path).unwrap()).expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let names: Vec<&str> = complete
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        complete.len(),
        ALL.len(),
        "one complete event per target: {names:?}"
    );
    assert_eq!(
        names.iter().copied().collect::<BTreeSet<_>>(),
        ALL.into_iter().collect::<BTreeSet<_>>()
    );
    for e in &complete {
        let name = e["name"].as_str().unwrap();
        let (outcome, key) = outcome_of(&report, name);
        assert_eq!(e["args"]["outcome"], outcome.as_str(), "{e}");
        assert_eq!(e["cat"], outcome.as_str());
        assert_eq!(e["args"]["key"].as_str().map(str::to_owned), key, "{e}");
        for field in ["ts", "dur", "pid", "tid"] {
            assert!(e[field].is_u64(), "{field} is a number in {e}");
        }
    }
    let a = complete.iter().find(|e| e["name"] == "a").unwrap();
    assert_eq!(a["args"]["outcome"], "hit");
    assert!(a["args"]["saved_ms"].is_u64(), "a hit says what it saved");
    // b waited for a: its event starts no earlier than a's.
    let b = complete.iter().find(|e| e["name"] == "b").unwrap();
    assert!(b["ts"].as_u64() >= a["ts"].as_u64());
    // Lanes are named for Perfetto.
    assert!(events
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "thread_name"));
}

#[test]
fn timings_page_is_well_formed_self_contained_and_shows_every_target() {
    let p = mixed();
    p.build(&[]);
    p.write("c.txt", "gamma 2\n");
    let r = p.run(&["build", "--timings"]);
    assert_eq!(r.code, 1, "d still fails");
    let path = p.path("relocache-timings.html");
    assert!(
        r.stderr.contains(&format!("timings: {}", path.display())),
        "the default path is printed: {}",
        r.stderr
    );
    let page = std::fs::read_to_string(&path).expect("the page is written by default");
    let doc = parse(&page);
    assert_self_contained(&page, &doc);
    let bars = by_attr(&doc, "g", "data-target");
    let rows = by_attr(&doc, "tr", "data-target");
    let want = [
        ("a", "hit"),
        ("b", "hit"),
        ("c", "built"),
        ("d", "failed"),
        ("e", "skipped"),
    ];
    for (name, outcome) in want {
        let bar = bars
            .get(name)
            .unwrap_or_else(|| panic!("no bar for {name}"));
        assert_eq!(bar.attribute("data-outcome"), Some(outcome), "bar {name}");
        assert!(
            bar.descendants().any(|n| n.tag_name().name() == "rect"),
            "bar {name} is drawn"
        );
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        assert_eq!(row.attribute("data-outcome"), Some(outcome), "row {name}");
    }
    assert_eq!(bars.len(), 5);
    // The failure's message is on the page.
    assert!(page.contains("command failed (exit status 3)"), "{page}");
    // Totals: 2 hits, 1 built, 1 failed, 1 skipped; the hits saved time.
    let total = |id: &str| {
        doc.descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no #{id}"))
            .descendants()
            .find(|n| n.tag_name().name() == "b")
            .and_then(|b| b.text())
            .unwrap()
            .to_owned()
    };
    assert_eq!(total("total-hits"), "2");
    assert_eq!(total("total-built"), "1");
    assert_eq!(total("total-failed"), "1");
    assert_eq!(total("total-skipped"), "1");
    assert!(total("total-saved").ends_with('s'));
    // The table starts sorted by duration, longest first.
    let durations: Vec<u64> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "tr" && n.attribute("data-target").is_some())
        .map(|tr| {
            tr.descendants()
                .filter(|n| n.tag_name().name() == "td")
                .nth(2)
                .and_then(|td| td.attribute("data-v"))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut sorted = durations.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(durations, sorted);
}

#[test]
fn critical_path_is_the_slowest_dependency_chain() {
    let p = Project::new(
        r#"
[target.slow]
run = "sleep 0.3 && echo s > s.out"
outputs = ["s.out"]

[target.after]
run = "cat s.out > after.out"
deps = ["slow"]
outputs = ["after.out"]

[target.quick]
run = "echo q > q.out"
outputs = ["q.out"]
"#,
        &[],
    );
    let out = p.tmp.path().join("t.html");
    p.run(&["build", &format!("--timings={}", out.display())])
        .ok();
    let page = std::fs::read_to_string(&out).unwrap();
    let doc = parse(&page);
    let bars = by_attr(&doc, "g", "data-target");
    let critical = |n: &str| bars[n].attribute("class").unwrap().contains("critical");
    assert!(
        critical("slow") && critical("after"),
        "slow -> after is critical"
    );
    assert!(!critical("quick"), "quick is not on the critical path");
    let text: String = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("critical-path"))
        .expect("the critical path is spelled out")
        .descendants()
        .filter_map(|n| n.text())
        .collect();
    assert!(text.contains("slow → after"), "{text}");
}

#[test]
fn bad_timings_or_profile_paths_fail_before_anything_is_built() {
    let p = chain();
    let missing = p.tmp.path().join("no/such/dir/t.html");
    let r = p.run(&["build", &format!("--timings={}", missing.display())]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["does not exist", "help:"]);
    let r = p.run(&["build", "--profile", p.tmp.path().to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["is a directory"]);
    assert_eq!(p.total_runs(), 0, "nothing was built");
    assert!(!p.depot.join("entries-v2").exists() || p.entries() == 0);
    // `--timings` takes its value only with `=`, so a target name after it
    // is still a target.
    let r = p.run(&["build", "--json", "--timings", "c"]);
    r.ok();
    assert_eq!(r.outcomes().len(), 1, "only c was built");
    assert!(p.path("relocache-timings.html").is_file());
}

/// `graph --format FORMAT ARGS` after a build and an edit of a.txt.
fn picture(p: &Project, format: &str, args: &[&str]) -> String {
    let mut a = vec!["graph", "--format", format];
    a.extend_from_slice(args);
    let r = p.run(&a);
    r.ok();
    r.stdout
}

fn stale_chain() -> Project {
    let p = chain();
    p.build(&[]).ok();
    p.write("a.txt", "alpha 2\n");
    p
}

#[test]
fn graph_svg_is_well_formed_with_every_target_status_legend_and_changed_files() {
    let p = stale_chain();
    let svg = picture(&p, "svg", &[]);
    assert!(svg.starts_with("<?xml"), "a standalone SVG document");
    let doc = parse(&svg);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let nodes = by_attr(&doc, "g", "data-node");
    assert_eq!(
        nodes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(nodes["a"].attribute("data-status"), Some("stale"));
    assert_eq!(nodes["c"].attribute("data-status"), Some("ready"));
    // Hovering a stale node names its changed file.
    let title = nodes["a"]
        .children()
        .find(|n| n.tag_name().name() == "title")
        .and_then(|t| t.text())
        .unwrap();
    assert!(
        title.contains("stale") && title.contains("a.txt"),
        "{title}"
    );
    // Every node's label is drawn, every edge joins two drawn nodes.
    for (name, node) in &nodes {
        assert!(node
            .descendants()
            .any(|n| n.tag_name().name() == "text" && n.text() == Some(name.as_str())));
    }
    let edges: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("edge"))
        .map(|e| {
            (
                e.attribute("data-from").unwrap().into(),
                e.attribute("data-to").unwrap().into(),
            )
        })
        .collect();
    assert_eq!(edges, [("a".to_string(), "b".to_string())]);
    let legend = by_attr(&doc, "g", "data-legend");
    for s in ["ready", "stale", "unstarted", "started"] {
        assert!(legend.contains_key(s), "legend shows {s}");
    }
    // The drawing fits its canvas: no node outside the viewBox.
    let num = |n: roxmltree::Node, a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
    let root = doc.root_element();
    let (w, h) = (num(root, "width"), num(root, "height"));
    for node in nodes.values() {
        let r = node
            .children()
            .find(|n| n.tag_name().name() == "rect")
            .unwrap();
        assert!(num(r, "x") >= 0.0 && num(r, "x") + num(r, "width") <= w);
        assert!(num(r, "y") >= 0.0 && num(r, "y") + num(r, "height") + 34.0 <= h);
    }
}

#[test]
fn graph_pictures_escape_file_names_and_show_files() {
    let p = Project::new(
        r#"
[target.odd]
run = "cat *.txt > odd.out"
inputs = ["*.txt"]
outputs = ["odd.out"]
"#,
        &[("we<ird> & \"q\" 'name'.txt", "x"), ("plain.txt", "y")],
    );
    p.build(&[]).ok();
    p.write("we<ird> & \"q\" 'name'.txt", "changed");
    for format in ["svg", "html"] {
        let text = picture(&p, format, &["--files"]);
        let doc = parse(&text);
        let nodes = by_attr(&doc, "g", "data-node");
        let odd = &nodes["we<ird> & \"q\" 'name'.txt"];
        assert_eq!(odd.attribute("data-status"), Some("changed"), "{format}");
        assert_eq!(
            nodes["plain.txt"].attribute("data-status"),
            Some("unchanged")
        );
        assert_eq!(nodes["odd"].attribute("data-status"), Some("stale"));
        let legend = by_attr(&doc, "g", "data-legend");
        assert!(legend.contains_key("changed") && legend.contains_key("unchanged"));
        if format == "html" {
            assert_self_contained(&text, &doc);
        }
    }
}

#[test]
fn graph_picture_of_nothing_is_still_a_picture() {
    let p = chain();
    let svg = picture(&p, "svg", &["--for-file", "nobody-reads-this.txt"]);
    let doc = parse(&svg);
    assert!(by_attr(&doc, "g", "data-node").is_empty());
    assert!(svg.contains("no targets to draw"));
}

// ---------------------------------------------------------------------------
// In a real browser. `.ci/run` installs Debian's `chromium`; without it these
// tests fail, loudly, rather than pass without looking.

fn chromium() -> PathBuf {
    let names = ["chromium", "chromium-browser", "google-chrome"];
    if let Some(p) = std::env::var_os("RELOCACHE_CHROMIUM") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        for n in names {
            if dir.join(n).is_file() {
                return dir.join(n);
            }
        }
    }
    panic!(
        "chromium is required to check the pages in a browser: apt-get install chromium \
         (.ci/run installs it), or set RELOCACHE_CHROMIUM to a Chrome/Chromium binary"
    );
}

/// Runs headless Chromium on `page` with `args`, killing it after a minute.
fn headless(page: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(format!("file://{}", page.display()))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("chromium starts");
    // Read the pipes on threads so a chatty browser cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    assert!(status.success(), "chromium failed ({status}):\n{stderr}");
    stdout
}

/// Screenshots go to `target/screenshots/` (CI keeps them as artifacts).
fn screenshot(page: &Path, name: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(name);
    let _ = std::fs::remove_file(&png);
    headless(
        page,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,800".into(),
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {png:?}: {e}"));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{png:?} is a PNG");
}

/// The page as the browser built it, after its scripts ran. Fails when a
/// script raised an error or did not reach its end.
fn rendered_dom(page: &Path) -> String {
    let dom = headless(page, &["--dump-dom".into()]);
    assert!(
        !dom.contains("data-errors="),
        "script errors on {}:\n{}",
        page.display(),
        dom.lines()
            .find(|l| l.contains("data-errors="))
            .unwrap_or_default()
    );
    assert!(
        dom.contains("data-ok=\"1\""),
        "the page's script did not finish:\n{dom}"
    );
    dom
}

#[test]
fn timings_page_renders_in_chromium() {
    let p = mixed();
    p.build(&[]);
    p.write("c.txt", "gamma 2\n");
    let page = p.tmp.path().join("timings.html");
    p.run(&["build", &format!("--timings={}", page.display())]);
    let dom = rendered_dom(&page);
    let bars: Vec<&str> = dom
        .lines()
        .filter(|l| l.starts_with("<g class=\"bar "))
        .collect();
    for name in ALL {
        assert!(
            bars.iter()
                .any(|b| b.contains(&format!("data-target=\"{name}\""))),
            "no bar for {name} in the rendered page:\n{}",
            bars.join("\n")
        );
    }
    // The script sorted the table by duration and marked the column.
    assert!(dom.contains("aria-sort=\"descending\""), "table sorted");
    screenshot(&page, "timings.png");
}

#[test]
fn graph_page_renders_in_chromium() {
    let p = stale_chain();
    let page = p.tmp.path().join("graph.html");
    std::fs::write(&page, picture(&p, "html", &["--files"])).unwrap();
    let dom = rendered_dom(&page);
    for name in ["a", "b", "c", "a.txt", "b.txt", "c.txt"] {
        assert!(
            dom.contains(&format!("data-node=\"{name}\"")),
            "no node {name} in the rendered page"
        );
    }
    screenshot(&page, "graph.png");
}

// ---------------------------------------------------------------------------
// Pictures that scale: 1,000 targets.

/// Node boxes of a graph SVG: (id, x, y, w, h).
fn node_boxes(doc: &roxmltree::Document) -> Vec<(String, f64, f64, f64, f64)> {
    let num = |n: roxmltree::Node, a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
    by_attr(doc, "g", "data-node")
        .into_iter()
        .map(|(id, g)| {
            let r = g
                .children()
                .find(|n| n.tag_name().name() == "rect")
                .unwrap();
            (
                id,
                num(r, "x"),
                num(r, "y"),
                num(r, "width"),
                num(r, "height"),
            )
        })
        .collect()
}

/// The picture's size, and that no two node boxes (which hold the labels)
/// overlap and every box is inside the picture.
fn assert_bounded_without_overlaps(svg: &str, max_w: f64, max_h: f64) -> usize {
    let doc = parse(svg);
    let root = doc.root_element();
    let (w, h): (f64, f64) = (
        root.attribute("width").unwrap().parse().unwrap(),
        root.attribute("height").unwrap().parse().unwrap(),
    );
    assert!(w <= max_w && h <= max_h, "the picture is {w}x{h}");
    let mut boxes = node_boxes(&doc);
    boxes.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (i, a) in boxes.iter().enumerate() {
        assert!(a.1 >= 0.0 && a.1 + a.3 <= w && a.2 >= 0.0 && a.2 + a.4 + 34.0 <= h);
        for b in boxes[i + 1..].iter().take_while(|b| b.1 < a.1 + a.3) {
            let apart = b.2 >= a.2 + a.4 || a.2 >= b.2 + b.4;
            assert!(apart, "{a:?} and {b:?} overlap");
        }
    }
    boxes.len()
}

#[test]
fn a_thousand_targets_wrap_into_a_bounded_readable_graph_in_chromium() {
    let mut manifest = String::new();
    let names: Vec<String> = (0..1000).map(|i| format!("f{i:04}")).collect();
    for n in &names {
        manifest.push_str(&format!("[target.{n}]\nrun = \"true\"\n\n"));
    }
    manifest.push_str(&format!(
        "[target.all]\nrun = \"true\"\ndeps = [{}]\n",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let p = Project::new(&manifest, &[]);
    let svg = picture(&p, "svg", &[]);
    // Before wrapping this was one 58,000 px column.
    let drawn = assert_bounded_without_overlaps(&svg, 5000.0, 3000.0);
    assert_eq!(drawn, 1001);
    let edges = svg.matches("class=\"edge\"").count();
    assert_eq!(edges, 1000, "every edge is still drawn");
    let page = p.tmp.path().join("graph-1000.html");
    std::fs::write(&page, picture(&p, "html", &[])).unwrap();
    let dom = rendered_dom(&page);
    assert!(dom.contains("data-node=\"f0999\"") && dom.contains("data-node=\"all\""));
    screenshot(&page, "graph-1000.png");
}

/// `gen` → 1,000 instances of `obj` (every tenth stale) → `lib`, as the
/// graph of a templated project is built (names only: `obj:PATH`).
fn templated_graph() -> relocache::graph::Graph {
    use relocache::graph::{Edge, Graph, Node, NodeKind};
    let node = |id: &str, status: &str| Node {
        id: id.into(),
        kind: NodeKind::Target,
        status: status.into(),
        label: id.into(),
        changed: vec![],
        group: None,
    };
    let mut nodes = vec![node("gen", "ready")];
    let mut edges = Vec::new();
    for i in 0..1000 {
        let id = format!("obj:src/module{:02}/file{i:04}.c", i % 40);
        nodes.push(node(&id, if i % 10 == 0 { "stale" } else { "ready" }));
        edges.push(Edge {
            from: "gen".into(),
            to: id.clone(),
        });
        edges.push(Edge {
            from: id,
            to: "lib".into(),
        });
    }
    nodes.push(node("lib", "stale"));
    edges.sort();
    let mut g = Graph {
        nodes,
        edges,
        groups: vec![],
    };
    // The groups as `graph` fills them.
    g.groups = g.collapsed().groups;
    g
}

#[test]
fn a_template_of_a_thousand_instances_draws_as_one_node_or_a_bounded_block() {
    let full = templated_graph();
    let collapsed = full.collapsed();
    let svg = collapsed.to_svg();
    assert_eq!(assert_bounded_without_overlaps(&svg, 1200.0, 400.0), 3);
    let doc = parse(&svg);
    let obj = &by_attr(&doc, "g", "data-node")["obj"];
    let texts: Vec<&str> = obj.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.contains(&"obj ×1000"), "{texts:?}");
    assert!(texts.contains(&"900 ready, 100 stale"), "{texts:?}");
    assert_eq!(obj.attribute("data-status"), Some("stale"));
    assert_eq!(svg.matches("class=\"edge\"").count(), 2, "gen → obj → lib");
    // --expand: every instance, wrapped into a block.
    let expanded = full.to_svg();
    assert_eq!(
        assert_bounded_without_overlaps(&expanded, 7000.0, 4000.0),
        1002
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, g) in [("template", &collapsed), ("expanded", &full)] {
        let page = dir.path().join(format!("{name}.html"));
        std::fs::write(&page, g.to_html("thousand")).unwrap();
        rendered_dom(&page);
        screenshot(&page, &format!("graph-{name}-1000.png"));
    }
}

#[test]
fn timings_of_a_thousand_instances_render_without_overprinting_in_chromium() {
    use relocache::engine::{BuildReport, Outcome, TargetReport};
    let mut targets = Vec::new();
    let mut at = [0u64; 2];
    for i in 0..1000u64 {
        let lane = (i % 2) as usize;
        let dur = if i % 97 == 0 { 900 } else { 5 + i % 11 };
        targets.push(TargetReport {
            name: format!("obj:src/module{:02}/file{i:04}.c", i % 40),
            key: None,
            outcome: if i % 5 == 0 {
                Outcome::Built
            } else {
                Outcome::Hit
            },
            duration_ms: dur,
            start_ms: at[lane],
            worker: lane,
            saved_ms: None,
            stored: false,
            error: None,
            warnings: vec![],
            stdout: vec![],
            stderr: vec![],
        });
        at[lane] += dur;
    }
    let report = BuildReport {
        hits: 800,
        built: 200,
        failed: 0,
        skipped: 0,
        not_relocatable_elsewhere: 0,
        duration_ms: at[0].max(at[1]),
        targets,
        remote_unsigned: 0,
        remote_bad_signature: 0,
    };
    let root = Path::new("/project");
    let manifest = relocache::manifest::Manifest::parse(
        "[target.lib]\nrun = \"true\"\n",
        &root.join("relocache.toml"),
        root,
    )
    .unwrap();
    let html = relocache::timings::html(
        &report,
        &manifest,
        &relocache::timings::PageInfo {
            project: "thousand".into(),
            generated: "now".into(),
        },
    );
    let doc = parse(&html);
    let gantt = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("gantt"))
        .unwrap();
    let height: f64 = gantt.attribute("height").unwrap().parse().unwrap();
    assert!(height < 200.0, "two lanes and one template row: {height}");
    // Drawn labels on one lane never overlap (monospace: 0.62 em per char).
    let mut spans: Vec<(String, f64, f64)> = gantt
        .descendants()
        .filter(|n| {
            n.tag_name().name() == "text" && n.parent().unwrap().attribute("data-target").is_some()
        })
        .map(|t| {
            let x: f64 = t.attribute("x").unwrap().parse().unwrap();
            let w = t.text().unwrap().chars().count() as f64 * 12.0 * 0.62;
            (t.attribute("y").unwrap().to_owned(), x, x + w)
        })
        .collect();
    assert!(spans.len() >= 10, "the long bars keep a label");
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for w in spans.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[0].2 <= w[1].1, "{:?} overprints {:?}", w[0], w[1]);
        }
    }
    let rows = by_attr(&doc, "g", "data-template");
    assert!(rows["obj"]
        .descendants()
        .any(|n| n.text() == Some("obj ×1000")));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("timings-1000.html");
    std::fs::write(&page, &html).unwrap();
    rendered_dom(&page);
    screenshot(&page, "timings-1000.png");
}

#[test]
fn graph_without_templates_is_the_same_with_or_without_expand() {
    let p = stale_chain();
    for format in ["dot", "mermaid", "json", "svg"] {
        assert_eq!(
            picture(&p, format, &[]),
            picture(&p, format, &["--expand"]),
            "{format}"
        );
    }
    let json: Value = serde_json::from_str(&picture(&p, "json", &[])).unwrap();
    assert!(
        json.get("groups").is_none(),
        "no templates, no groups: {json}"
    );
}
