//! What a target reads enters its key, whole: no input file left out (names
//! that cannot be encoded are refused, users' `.relocache-*` files are
//! inputs, directories below a directory input count), and what a symlink
//! leads to counts as much as its text.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::*;

/// `rel` below the project, with raw bytes for a name that is not UTF-8.
fn raw(p: &Project, rel: &[u8]) -> PathBuf {
    p.root.join(std::ffi::OsStr::from_bytes(rel))
}

fn error_of(r: &Run, target: &str) -> String {
    r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .and_then(|t| t["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_name_that_is_not_utf8_under_a_directory_input_fails_the_target_instead_of_hitting_stale() {
    let p = Project::new(
        "[target.t]\nrun = 'cat src/* > o'\ninputs = ['src']\noutputs = ['o']\n\
         [target.other]\nrun = 'cat a.txt > other'\ninputs = ['a.txt']\noutputs = ['other']\n",
        &[("src/s", "s\n"), ("a.txt", "a\n")],
    );
    std::fs::write(raw(&p, b"src/x\xff"), "v1\n").unwrap();
    let r = p.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let e = error_of(&r, "t");
    assert!(
        e.contains("src/x\\xFF") && e.contains("not valid UTF-8"),
        "{e}"
    );
    assert!(
        e.contains("help: rename it, or list it in .gitignore if it is not an input"),
        "{e}"
    );
    // A target whose inputs do not cover the name builds.
    assert_eq!(r.outcome("other"), "built", "{}", r.stderr);
    // Ignored, the file is not an input, and the build goes on.
    p.write("src/.gitignore", "x*\n");
    p.build(&[]).ok();
}

#[test]
fn a_name_holding_a_backslash_under_a_glob_input_fails_the_target() {
    let p = Project::new(
        "[target.t]\nrun = 'cat src/* > o'\ninputs = ['src/*']\noutputs = ['o']\n\
         [target.c]\nrun = 'cat src/*.c > c'\ninputs = ['src/*.c']\noutputs = ['c']\n",
        &[("src/s", "s\n"), ("src/m.c", "m\n")],
    );
    std::fs::write(p.path("src/a\\b"), "b1\n").unwrap();
    let r = p.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let e = error_of(&r, "t");
    assert!(e.contains("src/a\\b") && e.contains("holds a `\\`"), "{e}");
    // `src/*.c` does not match it.
    assert_eq!(r.outcome("c"), "built", "{}", r.stderr);
}

#[test]
fn a_directory_whose_name_is_not_utf8_fails_the_targets_that_read_below_it() {
    let p = Project::new(
        "[target.t]\nrun = 'find src -type f | sort > o'\ninputs = ['src']\noutputs = ['o']\n\
         [target.g]\nrun = 'cat src/**/*.c > g'\ninputs = ['src/**/*.c']\noutputs = ['g']\n\
         [target.h]\nrun = 'cat src/*.h > h'\ninputs = ['src/*.h']\noutputs = ['h']\n",
        &[("src/m.c", "m\n"), ("src/m.h", "h\n")],
    );
    std::fs::create_dir(raw(&p, b"src/d\xfe")).unwrap();
    std::fs::write(raw(&p, b"src/d\xfe/in.c"), "c\n").unwrap();
    let r = p.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(error_of(&r, "t").contains("src/d\\xFE"), "{}", r.stdout);
    assert!(
        error_of(&r, "g").contains("src/d\\xFE/in.c"),
        "{}",
        r.stdout
    );
    assert_eq!(r.outcome("h"), "built", "{}", r.stderr);
}

#[test]
fn relocache_hash_refuses_a_name_it_cannot_encode() {
    let p = Project::new("", &[("src/s", "s\n")]);
    let hash = |arg: &str| p.run(&["hash", arg]);
    hash("src").ok();
    std::fs::write(raw(&p, b"src/x\xff"), "v1\n").unwrap();
    for arg in ["src", "src/*", "."] {
        let r = hash(arg);
        assert_eq!(r.code, 1, "hash {arg}: {}", r.stderr);
        r.assert_stderr_has(&["src/x\\xFF", "help: rename it"]);
    }
    std::fs::remove_file(raw(&p, b"src/x\xff")).unwrap();
    std::fs::write(p.path("src/a\\b"), "b\n").unwrap();
    let r = hash("src");
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["src/a\\b"]);
    // A glob that does not match it is fine.
    hash("src/s*").ok();
}

#[test]
fn a_users_dot_relocache_file_under_an_input_directory_is_an_input() {
    let p = Project::new(
        "[target.t]\nrun = 'cat src/.relocache-cfg > o'\ninputs = ['src']\noutputs = ['o']\n",
        &[("src/.relocache-cfg", "v1\n")],
    );
    p.build(&[]).ok();
    p.write("src/.relocache-cfg", "v2\n");
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(p.read("o"), "v2\n");
}

#[test]
fn an_empty_directory_added_under_a_directory_input_changes_the_key() {
    let p = Project::new(
        "[target.t]\nrun = 'find src | sort > o'\ninputs = ['src']\noutputs = ['o']\n\
         [target.g]\nrun = 'ls src > g'\ninputs = ['src/*']\noutputs = ['g']\n",
        &[("src/a", "a\n")],
    );
    p.build(&[]).ok();
    std::fs::create_dir(p.path("src/empty")).unwrap();
    let st = p.run(&["status", "t", "--json"]);
    assert_eq!(st.json()["targets"][0]["status"], "stale");
    assert_eq!(st.json()["targets"][0]["changed"][0]["path"], "src/empty");
    assert_eq!(st.json()["targets"][0]["changed"][0]["directory"], true);
    let st = p.run(&["status", "t"]);
    st.assert_stdout_has(&["directory added: src/empty"]);
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(p.read("o"), "src\nsrc/a\nsrc/empty\n");
    // A glob keys only the files it matches.
    assert_eq!(r.outcome("g"), "hit");
    std::fs::remove_dir(p.path("src/empty")).unwrap();
    let ex = p.run(&["explain", "t"]);
    ex.ok();
    ex.assert_stdout_has(&["directory removed: src/empty"]);
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(p.read("o"), "src\nsrc/a\n");
}

#[test]
fn a_dependent_reading_through_a_deps_output_symlink_sees_the_new_content() {
    let p = Project::new(
        "[target.gen]\nrun = 'ln -s data.txt g'\ninputs = ['data.txt']\noutputs = ['g']\n\
         [target.use]\nrun = 'cat g > u'\ndeps = ['gen']\noutputs = ['u']\n",
        &[("data.txt", "v1\n")],
    );
    p.build(&[]).ok();
    p.write("data.txt", "v2\n");
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("gen"), "built");
    assert_eq!(r.outcome("use"), "built", "{}", r.stdout);
    assert_eq!(p.read("u"), "v2\n");
    // Early cutoff still holds when nothing the link leads to changed.
    p.write("data.txt", "v2\n");
    assert_eq!(p.build(&[]).json()["hits"], 2);
    // `explain` names the dep.
    p.write("data.txt", "v3\n");
    let ex = p.run(&["explain", "use"]);
    ex.ok();
    ex.assert_stdout_has(&["gen"]);
}

#[test]
fn a_chain_of_dep_output_symlinks_into_a_directory_keys_its_dependents_by_the_tree() {
    let p = Project::new(
        "[target.gen]\nrun = 'ln -s data d1 && ln -s d1 d2'\ninputs = ['data']\noutputs = ['d1', 'd2']\n\
         [target.use]\nrun = 'cat d2/* > u'\ndeps = ['gen']\noutputs = ['u']\n",
        &[("data/a", "a1\n")],
    );
    p.build(&[]).ok();
    p.write("data/a", "a2\n");
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("use"), "built", "{}", r.stdout);
    assert_eq!(p.read("u"), "a2\n");
}

#[test]
fn an_input_symlink_to_a_file_that_is_not_an_input_keys_the_target_by_that_file() {
    let p = Project::new(
        "[target.t]\nrun = 'cat link > o'\ninputs = ['link']\noutputs = ['o']\n",
        &[("data.txt", "v1\n")],
    );
    std::os::unix::fs::symlink("data.txt", p.path("link")).unwrap();
    p.build(&[]).ok();
    p.write("data.txt", "v2\n");
    let ex = p.run(&["explain", "t"]);
    ex.assert_stdout_has(&["input changed: link"]);
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(p.read("o"), "v2\n");
    // Back to v1: hits the first entry.
    p.write("data.txt", "v1\n");
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(p.read("o"), "v1\n");
}

#[test]
fn a_top_level_relative_symlink_output_inside_the_project_gives_no_warning() {
    let p = Project::new(
        "[target.gen]\nrun = 'ln -s data.txt g && ln -s . here'\ninputs = ['data.txt']\noutputs = ['g', 'here']\n\
         [target.out]\nrun = 'ln -s ../outside o'\noutputs = ['o']\n",
        &[("data.txt", "v1\n")],
    );
    let r = p.build(&[]);
    r.ok();
    r.assert_stderr_lacks(&["`g`", "`here`"]);
    assert!(
        r.stderr
            .contains("output symlink `o` points to `../outside`, which is not inside the project"),
        "{}",
        r.stderr
    );
}

#[test]
fn status_and_explain_say_a_target_cannot_see_content_changes_of_untracked_inputs() {
    let p = Project::new(
        "[target.t]\nrun = 'cat big.bin > o'\ninclude_dependency = [{ path = 'big.bin', track_content = false }]\noutputs = ['o']\n",
        &[("big.bin", "v1\n")],
    );
    p.build(&[]).ok();
    let st = p.run(&["status"]);
    st.ok();
    st.assert_stdout_has(&["ready", "untracked inputs: big.bin"]);
    let j = p.run(&["status", "--json"]).json();
    assert_eq!(j["targets"][0]["untracked"][0], "big.bin", "{j}");
    let ex = p.run(&["explain", "t"]);
    ex.ok();
    ex.assert_stdout_has(&["cannot see content changes of big.bin"]);
    let j = p.run(&["explain", "t", "--json"]).json();
    assert_eq!(j["untracked"][0], "big.bin", "{j}");
}

#[test]
fn graph_files_shows_the_files_of_a_directory_input_not_its_directories() {
    let p = Project::new(
        "[target.t]\nrun = 'find src > o'\ninputs = ['src']\noutputs = ['o']\n",
        &[("src/sub/a", "a\n")],
    );
    let j = p.run(&["graph", "--files", "--format", "json"]).json();
    let ids: Vec<&str> = j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t", "src/sub/a"], "{j}");
}
