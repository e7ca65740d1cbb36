//! Depfile-discovered inputs (issue 18, section 2), driven through the real
//! binary on a small C project compiled by the machine's real `cc`: headers
//! the compiler reports key the entry, so editing one rebuilds exactly the
//! objects that include it, reverting it hits again, and a relocated copy
//! with its depot hits everything.

mod common;

use std::path::Path;

use common::*;

/// One object target per source, each logging its run to ../runs.log.
fn object(name: &str) -> String {
    format!(
        r#"
[target.{name}]
run = "echo {name} >> ../runs.log && mkdir -p build && cc -O2 -c src/{name}.c -o build/{name}.o -MD -MF build/{name}.d"
inputs = ["src/{name}.c"]
depfile = "build/{name}.d"
outputs = ["build/{name}.o"]
"#
    )
}

/// `a.c` and `b.c` include `common.h`, `c.c` includes `only_c.h`; all
/// include `<stdio.h>` (a system header, outside the project).
fn c_project() -> Project {
    let manifest: String = ["a", "b", "c"].iter().map(|n| object(n)).collect();
    let p = Project::new(
        &manifest,
        &[
            (
                "src/a.c",
                "#include <stdio.h>\n#include \"common.h\"\nint a(void) { printf(\"a\"); return COMMON; }\n",
            ),
            (
                "src/b.c",
                "#include <stdio.h>\n#include \"common.h\"\nint b(void) { printf(\"b\"); return COMMON + 1; }\n",
            ),
            (
                "src/c.c",
                "#include <stdio.h>\n#include \"only_c.h\"\nint c(void) { printf(\"c\"); return ONLY_C; }\n",
            ),
            ("src/common.h", "#define COMMON 1\n"),
            ("src/only_c.h", "#define ONLY_C 3\n"),
        ],
    );
    require_cc();
    p
}

fn outcomes(r: &Run) -> Vec<(String, String)> {
    r.ok();
    r.outcomes()
}

fn all(outcome: &str) -> Vec<(String, String)> {
    ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), outcome.to_owned()))
        .collect()
}

#[test]
fn a_header_edit_rebuilds_exactly_the_objects_including_it_and_a_revert_hits() {
    let p = c_project();
    assert_eq!(outcomes(&p.build(&[])), all("built"));
    assert_eq!(outcomes(&p.build(&[])), all("hit"));

    p.write("src/common.h", "#define COMMON 2\n");
    let r = p.build(&[]);
    assert_eq!(
        outcomes(&r),
        vec![
            ("a".into(), "built".into()),
            ("b".into(), "built".into()),
            ("c".into(), "hit".into())
        ]
    );
    assert_eq!((p.runs("a"), p.runs("b"), p.runs("c")), (2, 2, 1));

    // Reverting: the first path set with the old digests, stored: all hits.
    p.write("src/common.h", "#define COMMON 1\n");
    assert_eq!(outcomes(&p.build(&[])), all("hit"));
    assert_eq!(p.total_runs(), 5);
    check_depot_invariants(&p.depot);
}

#[test]
fn a_new_include_changes_the_path_set_and_both_sets_are_remembered() {
    let p = c_project();
    p.build(&[]).ok();
    let old = p.read("src/c.c");
    p.write("src/extra.h", "#define EXTRA 7\n");
    p.write(
        "src/c.c",
        "#include <stdio.h>\n#include \"only_c.h\"\n#include \"extra.h\"\nint c(void) { return ONLY_C + EXTRA; }\n",
    );
    assert_eq!(p.build(&[]).outcome("c"), "built");
    // Only the new set names extra.h: editing it misses that set alone.
    p.write("src/extra.h", "#define EXTRA 8\n");
    assert_eq!(p.build(&[]).outcome("c"), "built");
    p.write("src/c.c", &old);
    assert_eq!(p.build(&[]).outcome("c"), "hit", "the first path set");
    p.write(
        "src/c.c",
        "#include <stdio.h>\n#include \"only_c.h\"\n#include \"extra.h\"\nint c(void) { return ONLY_C + EXTRA; }\n",
    );
    assert_eq!(p.build(&[]).outcome("c"), "hit", "the second path set");
    assert_eq!(p.runs("c"), 3);
}

#[test]
fn a_relocated_copy_with_its_depot_hits_everything_with_identical_bytes() {
    let p = c_project();
    p.build(&[]).ok();
    let other = tempfile::tempdir().unwrap();
    let root = other.path().join("elsewhere/proj");
    let depot = other.path().join("elsewhere/depot");
    copy_tree(&p.root, &root);
    copy_tree(&p.depot, &depot);
    std::fs::remove_dir_all(root.join("build")).unwrap();
    let mut c = bin();
    c.arg("-C")
        .arg(&root)
        .arg("--depot")
        .arg(&depot)
        .args(["build", "--json"]);
    let r = output(c);
    assert_eq!(outcomes(&r), all("hit"));
    for n in ["a", "b", "c"] {
        let o = format!("build/{n}.o");
        assert_eq!(
            std::fs::read(root.join(&o)).unwrap(),
            std::fs::read(p.path(&o)).unwrap(),
            "{o}"
        );
        // The depfile is not an output: never restored.
        assert!(!root.join(format!("build/{n}.d")).exists());
    }
    // System headers are absolute but name the host, not the project.
    let v = p.run(&["verify", "--relocatable"]);
    v.ok();
    v.assert_stdout_lacks(&["/usr/include"]);
    v.assert_stderr_lacks(&["/usr/include"]);
    let entry = entries_text(&p.depot);
    assert!(entry.contains("/usr/include/stdio.h"), "{entry}");
    assert!(entry.contains("\"src/common.h\""), "{entry}");
}

#[test]
fn a_missing_depfile_fails_the_target_naming_it_and_stores_nothing() {
    let p = Project::new(
        r#"
[target.x]
run = "mkdir -p build && cc -c x.c -o build/x.o"
inputs = ["x.c"]
depfile = "build/x.d"
outputs = ["build/x.o"]
"#,
        &[("x.c", "int x(void) { return 1; }\n")],
    );
    require_cc();
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["depfile `build/x.d` was not written", "-MD -MF build/x.d"]);
    assert_eq!(p.entries(), 0);
}

#[test]
fn a_stale_depfile_from_an_earlier_run_is_never_read() {
    let p = Project::new(
        r#"
[target.x]
run = "mkdir -p build && cc -c x.c -o build/x.o $FLAGS"
env = ["FLAGS"]
inputs = ["x.c"]
depfile = "build/x.d"
outputs = ["build/x.o"]
"#,
        &[("x.c", "int x(void) { return 1; }\n")],
    );
    require_cc();
    let mut c = p.cmd(&["build"]);
    c.env("FLAGS", "-MD -MF build/x.d");
    output(c).ok();
    let mut c = p.cmd(&["build"]);
    c.env("FLAGS", "");
    let r = output(c);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["depfile `build/x.d` was not written"]);
    assert_eq!(p.entries(), 1);
}

#[test]
fn a_malformed_depfile_fails_the_target_naming_the_file_and_line() {
    let p = Project::new(
        r#"
[target.x]
run = "printf 'out: x.c\\nthis line has no colon\\n' > x.d && cp x.c out"
inputs = ["x.c"]
depfile = "x.d"
outputs = ["out"]
"#,
        &[("x.c", "x\n")],
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["depfile `x.d` is malformed: x.d:2:"]);
    assert_eq!(p.entries(), 0);
}

#[test]
fn a_prerequisite_inside_the_depot_is_refused() {
    let p = Project::new("", &[("x.c", "x\n")]);
    let depot = p.depot.display().to_string();
    p.write(
        "relocache.toml",
        &format!(
            r#"
[target.x]
run = "printf 'out: x.c {depot}/DEPOT.toml\\n' > x.d && cp x.c out"
inputs = ["x.c"]
depfile = "x.d"
outputs = ["out"]
"#
        ),
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["lies inside the depot"]);
    assert_eq!(p.entries(), 0);
}

#[test]
fn a_damaged_variants_record_is_a_miss_never_a_wrong_artifact() {
    let p = c_project();
    p.build(&[]).ok();
    let records: Vec<_> = walkdir::WalkDir::new(p.depot.join("variants-v1"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    assert_eq!(records.len(), 3, "one record per base key");
    for r in &records {
        let text = std::fs::read_to_string(r).unwrap();
        std::fs::write(r, text.replace("src/", "src/x")).unwrap();
    }
    let v = p.run(&["verify", "--json"]);
    assert_eq!(v.code, 1, "{}", v.render());
    assert_eq!(
        v.stdout.matches("\"corrupt-variants\"").count(),
        3,
        "{}",
        v.render()
    );
    p.write("src/common.h", "#define COMMON 5\n");
    let r = p.build(&[]);
    assert_eq!(outcomes(&r), all("built"));
    r.assert_stderr_has(&["damaged variants record"]);
    // Rebuilt and recorded afresh: the next build hits.
    assert_eq!(outcomes(&p.build(&[])), all("hit"));
    p.run(&["verify"]).ok();
}

/// Every entry's text, concatenated.
fn entries_text(depot: &Path) -> String {
    walkdir::WalkDir::new(depot.join("entries-v2"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

#[test]
fn status_and_explain_name_a_changed_header_from_the_depfile() {
    let p = c_project();
    p.build(&[]).ok();
    let s = p.run(&["status"]);
    s.ok().assert_stdout_has(&["3 of 3 targets ready"]);
    p.write("src/common.h", "#define COMMON 9\n");
    let s = p.run(&["status"]);
    s.assert_stdout_has(&[
        "src/common.h (from depfile) modified",
        "1 of 3 targets ready",
    ]);
    let e = p.run(&["explain", "a"]);
    e.ok()
        .assert_stdout_has(&["input changed: src/common.h (from depfile) modified ("]);
    e.assert_stdout_lacks(&["no input, env, tool"]);
    let j = p.run(&["status", "--json", "b"]).json();
    let changed = &j["targets"][0]["changed"][0];
    assert_eq!(changed["path"], "src/common.h");
    assert_eq!(changed["from_depfile"], true);
    std::fs::remove_file(p.path("src/only_c.h")).unwrap();
    p.run(&["explain", "c"])
        .assert_stdout_has(&["input changed: src/only_c.h (from depfile) removed"]);
}

#[test]
fn graph_shows_the_headers_a_depfile_named() {
    let p = c_project();
    p.build(&[]).ok();
    let g = p.run(&["graph", "--files", "--for-file", "src/common.h"]);
    g.ok()
        .assert_stdout_has(&["src/common.h", "\"a\"", "\"b\""]);
    g.assert_stdout_lacks(&["\"c\"", "/usr/include"]);
}

/// `relocache --depot DEPOT ARGS` in the project of `p`.
fn with_depot(p: &Project, depot: &Path, args: &[&str]) -> Run {
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(depot)
        .args(args);
    output(c)
}

fn variants_records(depot: &Path) -> usize {
    walkdir::WalkDir::new(depot.join("variants-v1"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count()
}

#[test]
fn pack_carries_the_variants_records_and_unpack_into_a_fresh_depot_hits() {
    let p = c_project();
    p.build(&[]).ok();
    let archive = p.tmp.path().join("cache.tar.zst");
    p.run(&["pack", archive.to_str().unwrap()]).ok();
    let fresh = p.tmp.path().join("fresh");
    with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap()]).ok();
    assert_eq!(variants_records(&fresh), 3);
    std::fs::remove_dir_all(p.path("build")).unwrap();
    let r = with_depot(&p, &fresh, &["build", "--json"]);
    assert_eq!(outcomes(&r), all("hit"));
    with_depot(&p, &fresh, &["verify", "--relocatable", "--integrity"]).ok();

    // Packing one target carries its record alone.
    let one = p.tmp.path().join("one.tar.zst");
    p.run(&["pack", one.to_str().unwrap(), "c"]).ok();
    let listed = String::from_utf8(
        std::process::Command::new("tar")
            .arg("--zstd")
            .arg("-tf")
            .arg(&one)
            .output()
            .expect("system tar runs")
            .stdout,
    )
    .unwrap();
    assert_eq!(listed.matches("variants-v1/").count(), 3, "{listed}");
}

#[test]
fn unpack_refuses_a_variants_record_that_fails_its_seal() {
    let p = c_project();
    // The archive is made by hand from the depot's loose layout: built
    // without the packed-mode `gc --repack` of `Project::build`.
    p.run(&["build", "--json"]).ok();
    let staged = p.tmp.path().join("staged");
    copy_tree(&p.depot, &staged);
    for e in walkdir::WalkDir::new(staged.join("variants-v1")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            std::fs::write(e.path(), text.replacen("src/", "/etc/", 1)).unwrap();
        }
    }
    for d in ["projects-v2", "usage", "locks", "tmp"] {
        let _ = std::fs::remove_dir_all(staged.join(d));
    }
    let archive = p.tmp.path().join("bad.tar.zst");
    let tar = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&staged)
        .args(["DEPOT.toml", "objects-v1", "entries-v2", "variants-v1"])
        .status()
        .expect("system tar runs");
    assert!(tar.success());
    let fresh = p.tmp.path().join("fresh");
    let r = with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["variants-v1/", "not a valid variants record"]);
    assert_eq!(variants_records(&fresh), 0);
}

#[test]
fn gc_keeps_the_records_its_entries_need_and_drops_the_others() {
    let p = c_project();
    p.build(&[]).ok();
    assert_eq!(variants_records(&p.depot), 3);
    p.run(&["gc"]).ok();
    assert_eq!(variants_records(&p.depot), 3);
    std::fs::remove_dir_all(p.path("build")).unwrap();
    assert_eq!(outcomes(&p.build(&[])), all("hit"));
    let entries = p.run(&["clear", "c"]);
    entries.ok();
    p.run(&["gc"]).ok();
    assert_eq!(variants_records(&p.depot), 2);
    p.run(&["clear", "--all"]).ok();
    assert_eq!(variants_records(&p.depot), 0);
}

/// `link/../x.h` is what the kernel finds through `link`, not `x.h`: with
/// `link` a symlink into `sub/deep`, the compiler reads `sub/x.h`, so an edit
/// there must rebuild (keyed by the lexical spelling, it would hit stale).
#[test]
fn a_depfile_path_through_a_symlinked_directory_and_dotdot_keys_what_was_read() {
    let p = Project::new(
        "[target.m]\nrun = 'mkdir -p build && cc -Ilink/.. -c src/m.c -o build/m.o -MD -MF build/m.d'\ninputs = ['src/m.c']\ndepfile = 'build/m.d'\noutputs = ['build/m.o']\n",
        &[
            ("src/m.c", "#include \"x.h\"\nint m(void) { return X; }\n"),
            ("x.h", "#define X 1\n"),
            ("sub/x.h", "#define X 2\n"),
            ("sub/deep/.keep", ""),
        ],
    );
    require_cc();
    std::os::unix::fs::symlink("sub/deep", p.path("link")).unwrap();
    p.build(&[]).ok();
    let d = p.read("build/m.d");
    assert!(
        d.contains("link/../x.h"),
        "gcc spells it through the link: {d}"
    );
    // The file the compiler read changes: the object must be rebuilt.
    p.write("sub/x.h", "#define X 3\n");
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("m"), "built", "{}", r.stdout);
    // The file its spelling shortens to changes: nothing the command read.
    p.write("x.h", "#define X 9\n");
    let r = p.build(&[]);
    assert_eq!(r.outcome("m"), "hit", "{}", r.stdout);
}

/// Builds `ws/app` (whose `a.o` includes `../lib/x.h` through `-I../lib`)
/// with `depot`; the outcome of its one target.
fn build_beside(ws: &Path, depot: &Path) -> String {
    let mut c = bin();
    c.arg("-C")
        .arg(ws.join("app"))
        .arg("--depot")
        .arg(depot)
        .args(["build", "--json"]);
    let r = output(c);
    r.ok();
    r.outcomes()[0].1.clone()
}

/// Two checkouts of a workspace share a depot; each app's object includes
/// a header of its sibling `lib/` through a relative `-I../lib`. The second
/// checkout's different header must rebuild, never hit on the first one's
/// (its absolute path still exists); a third checkout with the first one's
/// header hits, wherever it is.
#[test]
fn a_header_beside_the_project_is_read_from_this_checkout_not_the_first() {
    require_cc();
    let tmp = tempfile::tempdir().unwrap();
    let depot = tmp.path().join("depot");
    let ws1 = tmp.path().join("ws1");
    std::fs::create_dir_all(ws1.join("app/src")).unwrap();
    std::fs::create_dir_all(ws1.join("lib")).unwrap();
    std::fs::write(
        ws1.join("app/relocache.toml"),
        r#"[target.a]
run = "mkdir -p build && cc -I../lib -c src/a.c -o build/a.o -MMD -MF build/a.d"
inputs = ["src/a.c"]
depfile = "build/a.d"
outputs = ["build/a.o"]
"#,
    )
    .unwrap();
    std::fs::write(
        ws1.join("app/src/a.c"),
        "#include \"x.h\"\nint f(void) { return X; }\n",
    )
    .unwrap();
    std::fs::write(ws1.join("lib/x.h"), "#define X 1\n").unwrap();
    let ws2 = tmp.path().join("ws2");
    copy_tree(&ws1, &ws2);
    std::fs::write(ws2.join("lib/x.h"), "#define X 2\n").unwrap();
    let ws3 = tmp.path().join("deeper/ws3");
    copy_tree(&ws1, &ws3);

    assert_eq!(build_beside(&ws1, &depot), "built");
    assert_eq!(build_beside(&ws2, &depot), "built", "ws2's own x.h differs");
    let o1 = std::fs::read(ws1.join("app/build/a.o")).unwrap();
    let o2 = std::fs::read(ws2.join("app/build/a.o")).unwrap();
    assert_ne!(o1, o2, "X is 1 in ws1 and 2 in ws2");
    assert_eq!(build_beside(&ws3, &depot), "hit", "ws1's header, elsewhere");
    assert_eq!(std::fs::read(ws3.join("app/build/a.o")).unwrap(), o1);
    let entries = entries_text(&depot);
    assert!(entries.contains("\"../lib/x.h\""), "{entries}");
    assert!(!entries.contains(&*ws1.to_string_lossy()), "{entries}");
    // An edit of the sibling header in one checkout rebuilds there only.
    std::fs::write(ws3.join("lib/x.h"), "#define X 2\n").unwrap();
    assert_eq!(build_beside(&ws3, &depot), "hit", "the same as ws2's now");
    assert_eq!(std::fs::read(ws3.join("app/build/a.o")).unwrap(), o2);
    assert_eq!(build_beside(&ws1, &depot), "hit");
}
