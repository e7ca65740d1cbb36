//! `status`, `explain`, `graph`, `key`, `path`: read-only answers to "is it
//! cached?", "why did it rebuild?" and "what depends on this file?".

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn statuses(p: &Project) -> Vec<(String, String)> {
    let r = p.run(&["status", "--json"]);
    r.ok();
    let mut v: Vec<(String, String)> = r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    v.sort();
    v
}

fn status_of(p: &Project, name: &str) -> Value {
    let r = p.run(&["status", "--json"]);
    r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn status_moves_unstarted_ready_stale_ready() {
    let p = chain();
    let all = |s: &str| {
        vec![
            ("a".to_string(), s.to_string()),
            ("b".into(), s.into()),
            ("c".into(), s.into()),
        ]
    };
    assert_eq!(statuses(&p), all("unstarted"));
    assert!(!p.depot.exists(), "status must not create the depot");

    p.build(&[]).ok();
    assert_eq!(statuses(&p), all("ready"));

    p.write("c.txt", "changed\n");
    let c = status_of(&p, "c");
    assert_eq!(c["status"], "stale");
    assert_eq!(
        c["changed"],
        serde_json::json!([{"path": "c.txt", "change": "modified"}])
    );
    assert_eq!(c["key"].as_str().unwrap().len(), 64);
    assert_eq!(status_of(&p, "a")["status"], "ready");

    p.write("a.txt", "other\n");
    // b depends on a, whose outputs are unknown until a is rebuilt.
    assert_eq!(status_of(&p, "b")["status"], "stale");
    assert!(status_of(&p, "b")["key"].is_null());
    let text = p.run(&["status"]);
    text.ok();
    assert_cli_snapshot!(p.tmp.path(), text);

    p.build(&[]).ok();
    assert_eq!(statuses(&p), all("ready"));
}

#[test]
fn status_lists_added_and_removed_inputs() {
    let p = Project::new(
        "[target.t]\nrun = 'cat src/*.c > out'\ninputs = ['src/*.c']\noutputs = ['out']\n",
        &[("src/a.c", "a"), ("src/b.c", "b")],
    );
    p.build(&[]).ok();
    std::fs::remove_file(p.path("src/b.c")).unwrap();
    p.write("src/new.c", "n");
    let t = status_of(&p, "t");
    assert_eq!(
        t["changed"],
        serde_json::json!([{"path": "src/b.c", "change": "removed"}, {"path": "src/new.c", "change": "added"}])
    );
}

#[test]
fn status_explain_graph_key_and_path_write_nothing() {
    let p = chain();
    p.build(&[]).ok();
    p.write("a.txt", "edited\n");
    let before = tree(&p.depot);
    let proj_before = tree(&p.root);
    for args in [
        vec!["status"],
        vec!["explain", "b"],
        vec!["graph", "--files"],
        vec!["key", "c"],
        vec!["path", "c"],
    ] {
        let r = p.run(&args);
        assert!(r.code == 0 || r.code == 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!(tree(&p.depot), before);
    assert_eq!(tree(&p.root), proj_before);
    assert_eq!(p.total_runs(), 3, "no command ran");
}

#[test]
fn a_killed_build_leaves_started() {
    let p = Project::new(
        "[target.slow]\nrun = 'touch ../slow.started; [ -e ../fast ] || sleep 30; touch out'\noutputs = ['out']\n",
        &[],
    );
    let mut c = p.cmd(&["build"]);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let started = p.tmp.path().join("slow.started");
    for _ in 0..200 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(started.exists(), "the build began");
    let running = status_of(&p, "slow");
    assert_eq!(running["status"], "started");
    assert!(
        running["holder"].as_str().unwrap().contains("pid"),
        "{running}"
    );
    // kill -9 the whole process group: relocache and its command.
    let pgid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    child.wait().unwrap();
    let after = status_of(&p, "slow");
    assert_eq!(
        after["status"], "started",
        "a crashed build leaves its placeholder: {after}"
    );
    // The next build of the same key takes the abandoned lock over and finishes.
    std::fs::write(p.tmp.path().join("fast"), "").unwrap();
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("slow"), "built");
    assert_eq!(status_of(&p, "slow")["status"], "ready");
}

fn explain(p: &Project, target: &str, extra: &[&str]) -> Value {
    let mut args = vec!["explain", target, "--json"];
    args.extend_from_slice(extra);
    let r = p.run(&args);
    r.ok();
    r.json()
}

#[test]
fn explain_names_exactly_the_changed_file() {
    let p = chain();
    p.build(&[]).ok();
    p.write("c.txt", "new\n");
    let ex = explain(&p, "c", &[]);
    assert_eq!(ex["same"], false);
    let d = ex["differences"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{ex}");
    assert_eq!(d[0]["kind"], "input_changed");
    assert_eq!(d[0]["path"], "c.txt");
    let text = p.run(&["explain", "c"]);
    text.ok().assert_stdout_has(&["input changed: c.txt"]);
    assert_cli_snapshot!(p.tmp.path(), text);
}

#[test]
fn explain_names_an_env_var_and_hides_its_value_unless_asked() {
    let p = Project::new(
        &CHAIN.replace("[target.c]\n", "[target.c]\nenv = ['TOKEN']\n"),
        &[("a.txt", "a"), ("b.txt", "b"), ("c.txt", "c")],
    );
    let mut c = p.cmd(&["build", "--json"]);
    c.env("TOKEN", "secret-one");
    output(c).ok();
    let run = |extra: &[&str]| {
        let mut args = vec!["explain", "c", "--json"];
        args.extend_from_slice(extra);
        let mut c = p.cmd(&args);
        c.env("TOKEN", "secret-two");
        output(c)
    };
    let ex = run(&[]).json();
    let d = ex["differences"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{ex}");
    assert_eq!(d[0]["kind"], "env_changed");
    assert_eq!(d[0]["name"], "TOKEN");
    assert!(
        !ex.to_string().contains("secret"),
        "values are hidden by default: {ex}"
    );
    let shown = run(&["--show-values"]).json();
    assert_eq!(shown["differences"][0]["old"], "secret-one");
    assert_eq!(shown["differences"][0]["new"], "secret-two");
}

#[test]
fn explain_names_a_version_bump() {
    let p = chain();
    p.build(&[]).ok();
    p.write(
        "relocache.toml",
        &CHAIN.replace("[target.c]\n", "[target.c]\nversion = 7\n"),
    );
    let ex = explain(&p, "c", &[]);
    assert_eq!(
        ex["differences"],
        serde_json::json!([{"kind": "version_changed", "old": 0, "new": 7}])
    );
}

#[test]
fn explain_names_a_changed_dep_and_recurses_to_its_reason() {
    let p = diamond();
    p.build(&[]).ok();
    p.write("right.txt", "R");
    // Before `right` is rebuilt, bottom's reason leads through right to the file.
    let ex = explain(&p, "bottom", &[]);
    let d = ex["differences"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{ex}");
    assert_eq!(d[0]["kind"], "dep_changed");
    assert_eq!(d[0]["name"], "right");
    let because = &d[0]["because"];
    assert_eq!(because["target"], "right");
    assert_eq!(because["differences"][0]["kind"], "input_changed");
    assert_eq!(because["differences"][0]["path"], "right.txt");
    let text = p.run(&["explain", "bottom"]);
    text.assert_stdout_has(&["dep outputs changed: right", "input changed: right.txt"]);
    assert_cli_snapshot!(p.tmp.path(), text);
    // After it is rebuilt, exactly the dep's outputs differ.
    p.build(&["right"]).ok();
    let ex = explain(&p, "bottom", &[]);
    assert_eq!(ex["differences"].as_array().unwrap().len(), 1, "{ex}");
    assert_eq!(ex["differences"][0]["name"], "right");
    assert_eq!(ex["differences"][0]["because"]["same"], true);
}

#[test]
fn explain_says_so_when_nothing_changed() {
    let p = chain();
    p.build(&[]).ok();
    let ex = explain(&p, "b", &[]);
    assert_eq!(ex["same"], true);
    assert!(ex["differences"].as_array().unwrap().is_empty());
    let text = p.run(&["explain", "b"]);
    text.ok().assert_stdout_has(&["unchanged"]);
    assert_cli_snapshot!(p.tmp.path(), text);
}

const DIAMOND: &str = r#"
[target.top]
run = "cat top.txt > top.out"
inputs = ["top.txt"]
outputs = ["top.out"]
[target.left]
run = "cat top.out shared.h > left.out"
inputs = ["shared.h"]
deps = ["top"]
outputs = ["left.out"]
[target.right]
run = "cat top.out right.txt > right.out"
inputs = ["right.txt"]
deps = ["top"]
outputs = ["right.out"]
[target.bottom]
run = "cat left.out right.out > bottom.out"
deps = ["left", "right"]
outputs = ["bottom.out"]
[target.lone]
run = "cat shared.h lone.txt > lone.out"
inputs = ["lone.txt", "shared.h"]
outputs = ["lone.out"]
"#;

fn diamond() -> Project {
    Project::new(
        DIAMOND,
        &[
            ("top.txt", "t"),
            ("shared.h", "s"),
            ("right.txt", "r"),
            ("lone.txt", "l"),
        ],
    )
}

fn graph_json(p: &Project, args: &[&str]) -> Value {
    let mut a = vec!["graph", "--format", "json"];
    a.extend_from_slice(args);
    let r = p.run(&a);
    r.ok();
    r.json()
}

fn targets_of(g: &Value) -> BTreeSet<String> {
    g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "target")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn graph_json_has_nodes_statuses_and_dependency_edges() {
    let p = diamond();
    p.build(&[]).ok();
    p.write("right.txt", "R");
    let g = graph_json(&p, &[]);
    assert_eq!(targets_of(&g).len(), 5);
    let status = |id: &str| {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("top"), "ready");
    assert_eq!(status("right"), "stale");
    assert_eq!(status("bottom"), "stale");
    let edges: BTreeSet<(String, String)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("top", "left"),
        ("top", "right"),
        ("left", "bottom"),
        ("right", "bottom"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(
        edges, want,
        "edges point from a dependency to its dependent"
    );
    let with_files = graph_json(&p, &["--files"]);
    let right_txt = with_files["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "right.txt")
        .unwrap();
    assert_eq!(right_txt["kind"], "file");
    assert_eq!(right_txt["status"], "changed");
    assert!(with_files["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["from"] == "right.txt" && e["to"] == "right"));
}

#[test]
fn graph_for_file_selects_direct_readers_and_their_dependents() {
    let p = diamond();
    p.build(&[]).ok();
    let set = |f: &str| targets_of(&graph_json(&p, &["--for-file", f]));
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(set("shared.h"), names(&["left", "bottom", "lone"]));
    assert_eq!(set("right.txt"), names(&["right", "bottom"]));
    assert_eq!(set("top.txt"), names(&["top", "left", "right", "bottom"]));
    assert_eq!(
        set(&p.path("lone.txt").display().to_string()),
        names(&["lone"]),
        "absolute paths inside the project work"
    );
    assert!(set("nobody-reads-this").is_empty());
}

#[test]
fn graph_dot_is_valid_graphviz() {
    let p = diamond();
    p.build(&["top"]).ok();
    let dot = p.run(&["graph", "--files"]);
    dot.ok();
    for name in ["top", "left", "right", "bottom", "lone", "shared.h"] {
        dot.assert_stdout_has(&[&format!("\"{name}\"")]);
    }
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is required for this test (.ci/run installs it: apt-get install graphviz)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.stdout.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot rejected the graph: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    let mermaid = p.run(&["graph", "--format", "mermaid"]);
    assert!(
        mermaid.stdout.starts_with("graph LR\n") && mermaid.stdout.contains("--> "),
        "{}",
        mermaid.stdout
    );
}

#[test]
fn key_and_path_match_the_build() {
    let p = chain();
    let built = p.build(&[]);
    let key_c = built.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "c")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let k = p.run(&["key", "c"]);
    k.ok();
    assert_eq!(k.stdout.trim(), key_c);
    let path = p.run(&["path", "c"]);
    path.ok();
    let entry = std::path::PathBuf::from(path.stdout.trim());
    assert!(entry.is_file(), "{}", entry.display());
    assert!(std::fs::read_to_string(entry).unwrap().contains(&key_c));
    for cmd in ["key", "path"] {
        let r = p.run(&[cmd, "nope"]);
        assert_eq!(r.code, 2, "{cmd}");
        r.assert_stderr_has(&["unknown target `nope`"]);
    }
}

#[test]
fn explain_tells_a_damaged_record_from_a_missing_one_and_status_points_to_it() {
    let p = chain();
    p.build(&[]).ok();
    // Only the command changes: status is stale with no input file to show.
    p.write(
        "relocache.toml",
        &CHAIN.replace("cp c.txt out-c.txt", "cat c.txt > out-c.txt"),
    );
    let s = p.run(&["status", "c"]);
    s.assert_stdout_has(&["`relocache explain c` says what changed"]);
    assert_cli_snapshot!(p.tmp.path(), s);
    // The last build's inputs summary is damaged.
    let entry = std::fs::read_to_string(p.run(&["path", "a"]).stdout.trim()).unwrap();
    let inputs = entry
        .lines()
        .find_map(|l| l.strip_prefix("inputs = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let blob = p.depot.join("objects-v1").join(&inputs[..2]).join(&inputs);
    std::fs::write(&blob, "not the summary").unwrap();
    p.write("a.txt", "changed\n");
    let r = p.run(&["explain", "a"]);
    r.assert_stdout_has(&["is damaged"])
        .assert_stdout_lacks(&["no longer in the depot"]);
    assert_cli_snapshot!(p.tmp.path(), r);
}

#[test]
fn explain_says_once_why_many_deps_changed_for_the_same_reason() {
    let mut manifest = String::new();
    for t in ["x", "y", "z"] {
        manifest.push_str(&format!(
            "[target.{t}]\nrun = \"cat h.txt > {t}.o\"\ninputs = [\"h.txt\"]\noutputs = [\"{t}.o\"]\n\n"
        ));
    }
    manifest.push_str(
        "[target.app]\nrun = \"cat x.o y.o z.o > app\"\ninputs = [\"x.o\", \"y.o\", \"z.o\"]\ndeps = [\"x\", \"y\", \"z\"]\noutputs = [\"app\"]\n",
    );
    let p = Project::new(&manifest, &[("h.txt", "one\n")]);
    p.build(&[]).ok();
    p.write("h.txt", "two\n");
    let r = p.run(&["explain", "app"]);
    r.ok();
    assert!(
        r.stdout
            .contains("dep outputs changed: 3 deps (x, y, z), each because:"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("input changed: h.txt").count(),
        1,
        "{}",
        r.stdout
    );
}
