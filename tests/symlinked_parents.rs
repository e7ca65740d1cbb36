//! relocache never writes or deletes through a symlink: a symlink standing
//! where a parent directory of a declared output goes fails the target,
//! on a hit (no restore), on a miss (no cleanup, no command) and after a
//! command that made one (nothing stored).

mod common;

use std::path::Path;

use common::*;

/// `t` copies `a` to `out/f`; `u` is independent and must go on.
const MANIFEST: &str = r#"[target.t]
run = "echo t >> ../runs.log; mkdir -p out && cp a out/f"
inputs = ["a"]
outputs = ["out/f"]
[target.u]
run = "echo u >> ../runs.log; cp a u.txt"
inputs = ["a"]
outputs = ["u.txt"]
"#;

fn target_error(r: &Run, name: &str) -> String {
    r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Replaces `out` by a symlink to `../elsewhere` holding a precious `f`.
fn symlink_out(p: &Project) -> std::path::PathBuf {
    let elsewhere = p.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("f"), "precious\n").unwrap();
    let _ = std::fs::remove_dir_all(p.path("out"));
    std::os::unix::fs::symlink("../elsewhere", p.path("out")).unwrap();
    elsewhere
}

#[test]
fn a_hit_never_restores_through_a_symlinked_output_parent() {
    for mode in ["reflink", "copy", "hardlink"] {
        let p = Project::new(MANIFEST, &[("a", "hi\n")]);
        p.build(&[]).ok();
        std::fs::remove_file(p.path("u.txt")).unwrap();
        let elsewhere = symlink_out(&p);

        let mut c = p.cmd(&["build", "--json"]);
        c.env("RELOCACHE_RESTORE", mode);
        let r = output(c);
        assert_eq!(r.code, 1, "{mode}: {}", r.stderr);
        assert_eq!(r.outcome("t"), "failed", "{mode}");
        assert_eq!(r.outcome("u"), "hit", "{mode}: other targets go on");
        let err = target_error(&r, "t");
        assert!(
            err.contains(
                "output `out/f` of `t` lies below `out`, a symlink to `../elsewhere`; relocache never writes or deletes through a symlink"
            ) && err.contains("help: make `out` a real directory"),
            "{mode}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("f")).unwrap(),
            "precious\n",
            "{mode}: nothing is written through the symlink"
        );
        assert_eq!(p.runs("t"), 1, "{mode}: the command did not run again");
        assert!(p.path("u.txt").exists());
    }
}

#[test]
fn a_miss_never_cleans_up_through_a_symlinked_output_parent() {
    let manifest = r#"[target.t]
run = "echo t >> ../runs.log; mkdir -p out/d && cp a out/d/f"
inputs = ["a"]
outputs = ["out/d"]
"#;
    let p = Project::new(manifest, &[("a", "v1\n")]);
    let other = p.tmp.path().join("other");
    std::fs::create_dir_all(other.join("d")).unwrap();
    std::fs::write(other.join("d/keep"), "precious\n").unwrap();
    std::os::unix::fs::symlink("../other", p.path("out")).unwrap();

    let r = p.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.outcome("t"), "failed");
    assert!(
        target_error(&r, "t").contains("lies below `out`, a symlink to `../other`"),
        "{}",
        r.stdout
    );
    assert_eq!(
        std::fs::read_to_string(other.join("d/keep")).unwrap(),
        "precious\n",
        "the pre-run cleanup does not remove ../other/d"
    );
    assert_eq!(p.runs("t"), 0, "the command is not run");
    assert_eq!(p.entries(), 0);

    // Once `out` is a real directory the target builds.
    std::fs::remove_file(p.path("out")).unwrap();
    p.build(&[]).ok();
    assert_eq!(p.read("out/d/f"), "v1\n");
}

#[test]
fn a_command_making_a_symlinked_output_parent_stores_nothing() {
    let manifest = r#"[target.t]
run = "echo t >> ../runs.log; mkdir -p ../elsewhere && rmdir out && ln -s ../elsewhere out && cp a out/f"
inputs = ["a"]
outputs = ["out/f"]
"#;
    let p = Project::new(manifest, &[("a", "hi\n")]);
    let r = p.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.outcome("t"), "failed");
    assert!(
        target_error(&r, "t").contains("the command left a symlink on the way to an output"),
        "{}",
        r.stdout
    );
    assert_eq!(
        p.entries(),
        0,
        "a restore would make `out` a real directory: not what the build left"
    );
}

#[test]
fn real_directories_a_symlinked_root_and_a_symlink_output_still_work() {
    let p = Project::new(MANIFEST, &[("a", "hi\n")]);
    p.build(&[]).ok();
    // A real directory: restored.
    std::fs::remove_file(p.path("out/f")).unwrap();
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(p.read("out/f"), "hi\n");

    // The declared output itself a symlink: replaced, never followed.
    let elsewhere = p.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("f"), "precious\n").unwrap();
    std::fs::remove_file(p.path("out/f")).unwrap();
    std::os::unix::fs::symlink("../../elsewhere/f", p.path("out/f")).unwrap();
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert!(!std::fs::symlink_metadata(p.path("out/f"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(p.read("out/f"), "hi\n");
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("f")).unwrap(),
        "precious\n"
    );

    // The project root reached through a symlink: only what lies below the
    // root counts.
    let link = p.tmp.path().join("via-link");
    std::os::unix::fs::symlink(&p.root, &link).unwrap();
    std::fs::remove_file(p.path("out/f")).unwrap();
    let mut c = bin();
    c.arg("-C")
        .arg(&link)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    let r = output(c);
    assert_eq!(r.outcome("t"), "hit", "{}", r.stderr);
    assert_eq!(p.read("out/f"), "hi\n");
    assert!(Path::new(&link).join("out/f").is_file());
}
