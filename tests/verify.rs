//! `relocache verify`: a depot's structure, relocatability and integrity,
//! checked through the real binary on real builds and hand-damaged depots.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use relocache::digest::Digest;
use serde_json::Value;

/// `verify --relocatable --json ARGS`.
fn verify(p: &Project, args: &[&str]) -> Run {
    let mut a = vec!["verify", "--relocatable", "--json"];
    a.extend_from_slice(args);
    p.run(&a)
}

fn problems(r: &Run) -> Vec<Value> {
    r.json()["problems"].as_array().unwrap().clone()
}

/// The path of blob `content` in the depot.
fn blob(p: &Project, content: &[u8]) -> PathBuf {
    let hex = Digest::of(content).to_hex();
    p.depot.join("objects-v1").join(&hex[..2]).join(hex)
}

/// Builds without the packed pass's `gc --repack`, for the tests about what
/// stands where a loose blob file belongs (a pack has no such file; its own
/// damage is tests/packed_depot.rs's).
fn build_loose(p: &Project) {
    p.run(&["build"]).ok();
}

/// The entry file whose text contains `needle`.
fn entry_with(p: &Project, needle: &str) -> PathBuf {
    walkdir::WalkDir::new(p.depot.join("entries-v2"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|f| f.is_file() && std::fs::read_to_string(f).unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no entry mentions {needle}"))
}

fn key_of(entry: &Path) -> String {
    entry.file_stem().unwrap().to_string_lossy().into_owned()
}

fn depot_rel(p: &Project, f: &Path) -> String {
    f.strip_prefix(&p.depot)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The project root as written and as the kernel reports it (`pwd`).
fn root_forms(p: &Project) -> [String; 2] {
    [
        p.root.display().to_string(),
        std::fs::canonicalize(&p.root)
            .unwrap()
            .display()
            .to_string(),
    ]
}

const WHERE: &str = r#"
[target.where]
run = "pwd > where.txt"
outputs = ["where.txt"]

[target.clean]
run = "echo hello > clean.txt"
outputs = ["clean.txt"]
"#;

const UNTRACKED: &str = r#"
[target.vendored]
run = "echo b >> ../runs.log && wc -c < vendor.bin > size.txt"
include_dependency = [{ path = "vendor.bin", track_content = false }]
outputs = ["size.txt"]

[target.tracked]
run = "cp a.txt copy.txt"
inputs = ["a.txt"]
outputs = ["copy.txt"]
"#;

fn untracked_project() -> Project {
    let p = Project::new(UNTRACKED, &[("vendor.bin", "0123456789"), ("a.txt", "a\n")]);
    // An old mtime, so the copy's fresh one differs on any filesystem.
    let s = std::process::Command::new("touch")
        .args(["-d", "2001-01-01 00:00:00"])
        .arg(p.path("vendor.bin"))
        .status()
        .unwrap();
    assert!(s.success());
    p
}

#[test]
fn a_clean_depot_verifies_clean_plainly_and_simulated() {
    let p = chain();
    p.build(&[]).ok();

    let r = p.run(&["verify", "--relocatable"]);
    r.ok();
    r.assert_stdout_has(&["3 entries", "the depot is relocatable"]);
    assert_cli_snapshot!(p.tmp.path(), r);
    let j = verify(&p, &["--integrity"]);
    j.ok();
    assert_eq!(j.json()["relocatable"], true);
    assert_eq!(j.json()["entries_checked"], 3);
    // out/a.txt, out/b.txt, out-c.txt and three inputs summaries.
    assert_eq!(j.json()["blobs_checked"], 6);
    assert_eq!(problems(&j), Vec::<Value>::new());

    // The simulated move copies to $TMPDIR and removes it afterwards.
    let tmp = p.tmp.path().join("sim-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut c = p.cmd(&["verify", "--relocatable", "--simulate"]);
    c.env("TMPDIR", &tmp);
    let s = output(c);
    s.ok()
        .assert_stdout_has(&["simulated a move: 3 of 3 cached targets would hit"]);
    assert_cli_snapshot!(p.tmp.path(), s);
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp copy removed"
    );
    assert_eq!(p.total_runs(), 3, "verify never runs a command");
}

#[test]
fn plain_verify_checks_structure_without_judging_relocatability() {
    let p = Project::new(WHERE, &[]);
    p.build(&[]).ok();
    let r = p.run(&["verify", "--json"]);
    r.ok();
    assert_eq!(
        r.json()["relocatable"],
        false,
        "not checked, so not claimed"
    );
    assert_eq!(r.json()["entries_checked"], 2);
    assert_eq!(verify(&p, &[]).code, 1);
}

#[test]
fn an_output_embedding_its_absolute_path_is_flagged_at_build_time_and_by_verify() {
    let p = Project::new(WHERE, &[]);
    let b = p.build(&[]);
    b.ok();
    let forms = root_forms(&p);
    assert!(
        b.stderr.contains("`where` is not relocatable")
            && b.stderr.contains("where.txt")
            && forms.iter().any(|f| b.stderr.contains(f.as_str()))
            && b.stderr.contains("-ffile-prefix-map="),
        "build must warn with the file, the path and the fix:\n{}",
        b.stderr
    );
    let key = b.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "where")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Human output: grouped under the entry, naming target, file, offset, path and fix.
    let h = p.run(&["verify", "--relocatable"]);
    assert_eq!(h.code, 1, "{}", h.stdout);
    h.assert_stdout_has(&[&format!("entry {} (proj/where)", &key[..12])]);
    let root = &forms[0];
    for needle in [
        "embedded-path  where.txt".to_owned(),
        "of `where`".to_owned(),
        format!("`{root}`"),
        "at byte 0".to_owned(),
        format!("-ffile-prefix-map={root}=."),
        format!("--remap-path-prefix={root}=."),
        "1 problem".to_owned(),
    ] {
        h.assert_stdout_has(&[&needle]);
    }
    assert_cli_snapshot!(p.tmp.path(), h);

    let j = verify(&p, &[]);
    assert_eq!(j.code, 1);
    assert_eq!(j.json()["relocatable"], false);
    let ps = problems(&j);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["kind"], "embedded-path");
    assert_eq!(ps[0]["entry"], key.as_str());
    assert_eq!(ps[0]["path"], "where.txt");

    // Without the project, the depot alone still knows file and offset.
    let mut c = bin();
    c.arg("--depot")
        .arg(&p.depot)
        .args(["verify", "--relocatable"])
        .current_dir(p.tmp.path());
    let alone = output(c);
    assert_eq!(alone.code, 1);
    alone.assert_stdout_has(&["where.txt", "@project"]);
    assert_cli_snapshot!(p.tmp.path(), alone);

    // Writing a relative path fixes it: the new entry is clean.
    p.write(
        "relocache.toml",
        &WHERE.replace("pwd > where.txt", "echo . > where.txt"),
    );
    let b = p.build(&[]);
    b.ok();
    b.assert_stderr_lacks(&["not relocatable"]);
    verify(&p, &["--target", "where", "clean"]).ok();
    // The old entry is still in the depot, and still reported.
    let all = verify(&p, &[]);
    assert_eq!(all.code, 1);
    assert_eq!(problems(&all).len(), 1);
    assert_eq!(problems(&all)[0]["entry"], key.as_str());
}

#[test]
fn build_require_relocatable_fails_and_stores_nothing() {
    let p = Project::new(WHERE, &[]);
    let r = p.build(&["--require-relocatable", "where"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.outcome("where"), "failed");
    assert!(
        r.stdout
            .contains("--require-relocatable is set; nothing was stored"),
        "{}",
        r.stdout
    );
    assert_eq!(p.entries(), 0);
    // A relocatable target passes the same gate.
    p.build(&["--require-relocatable", "clean"]).ok();
    assert_eq!(p.entries(), 1);
    verify(&p, &[]).ok();
    // Stored without the gate, the non-relocatable entry is a hit later;
    // the gate fails that hit too.
    p.build(&["where"]).ok();
    let r = p.build(&["--require-relocatable", "where"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.outcome("where"), "failed");
    assert!(
        r.stdout
            .contains("restored from an entry that is not relocatable"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_track_content_false_input_is_flagged() {
    let p = untracked_project();
    let b = p.build(&[]);
    b.ok();
    assert!(
        b.stderr
            .contains("`vendored` reads `vendor.bin` with track_content = false"),
        "{}",
        b.stderr
    );
    let r = verify(&p, &[]);
    assert_eq!(r.code, 1);
    let ps = problems(&r);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["kind"], "untracked-input");
    assert_eq!(ps[0]["path"], "vendor.bin");
    let detail = ps[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("mtime") && detail.contains("drop `track_content = false`"),
        "{detail}"
    );
}

#[test]
fn simulate_reports_a_target_that_would_not_hit_after_a_move() {
    let p = untracked_project();
    p.build(&[]).ok();
    // Restrict to the untracked target so only the simulation can complain.
    let r = p.run(&[
        "verify",
        "--relocatable",
        "--simulate",
        "--target",
        "vendored",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("simulated a move: 0 of 1 cached target would hit"),
        "{}",
        r.stdout
    );
    let j = verify(&p, &["--simulate"]);
    assert_eq!(j.code, 1);
    let miss: Vec<Value> = problems(&j)
        .into_iter()
        .filter(|p| p["kind"] == "would-miss")
        .collect();
    assert_eq!(miss.len(), 1, "only `vendored` misses: {miss:?}");
    assert_eq!(miss[0]["path"], "vendor.bin");
    let detail = miss[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("`vendored` would not hit")
            && detail
                .contains("input `vendor.bin` has track_content = false and its mtime changed"),
        "{detail}"
    );
    // The simulation really would not hit: a moved checkout rebuilds it.
    let moved = p.tmp.path().join("moved");
    copy_tree(&p.root, &moved);
    for out in ["size.txt", "copy.txt"] {
        std::fs::remove_file(moved.join(out)).unwrap();
    }
    let mut c = bin();
    c.arg("-C")
        .arg(&moved)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    let b = output(c);
    assert_eq!(b.outcome("vendored"), "built");
    assert_eq!(b.outcome("tracked"), "hit");
}

#[test]
fn an_absolute_path_written_into_an_entry_is_flagged() {
    let p = chain();
    p.build(&[]).ok();
    let entry = entry_with(&p, "path = \"out-c.txt\"");
    let text = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(
        &entry,
        text.replace("path = \"out-c.txt\"", "path = \"/home/ci/proj/out-c.txt\""),
    )
    .unwrap();
    let r = verify(&p, &[]);
    assert_eq!(r.code, 1);
    let ps = problems(&r);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["kind"], "absolute-path");
    assert_eq!(ps[0]["entry"], key_of(&entry).as_str());
    assert_eq!(ps[0]["path"], depot_rel(&p, &entry).as_str());
    let detail = ps[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("outputs[0].path") && detail.contains("/home/ci/proj/out-c.txt"),
        "{detail}"
    );
}

#[test]
fn a_symlink_leaving_the_depot_is_flagged() {
    let p = chain();
    p.build(&[]).ok();
    let outside = p.tmp.path().join("outside.txt");
    std::fs::write(&outside, "x").unwrap();
    std::os::unix::fs::symlink(&outside, p.depot.join("usage-link")).unwrap();
    std::os::unix::fs::symlink("../../outside.txt", p.depot.join("locks/up")).unwrap();
    // A relative link that stays inside the depot is fine.
    std::os::unix::fs::symlink("../DEPOT.toml", p.depot.join("locks/inside")).unwrap();
    let r = verify(&p, &[]);
    assert_eq!(r.code, 1);
    let ps = problems(&r);
    assert_eq!(
        r.problem_kinds(),
        ["symlink-leaves-depot", "symlink-leaves-depot"]
    );
    let paths: Vec<&str> = ps.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["locks/up", "usage-link"]);
    assert!(ps.iter().all(|p| p["entry"].is_null()));
    // Structure alone does not judge links outside the store.
    p.run(&["verify"]).ok();
}

#[test]
fn a_symlink_standing_in_for_a_blob_is_flagged_even_without_relocatable() {
    let p = chain();
    build_loose(&p);
    let b = blob(&p, b"gamma\n");
    let real = p.tmp.path().join("gamma-blob");
    std::fs::rename(&b, &real).unwrap();
    std::os::unix::fs::symlink(&real, &b).unwrap();
    let r = p.run(&["verify", "--json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.problem_kinds(), ["symlink-in-store"]);
    assert_eq!(problems(&r)[0]["path"], depot_rel(&p, &b).as_str());
}

#[test]
fn a_missing_blob_is_flagged() {
    let p = chain();
    build_loose(&p);
    let b = blob(&p, b"alpha\n");
    std::fs::remove_file(&b).unwrap();
    let entry = entry_with(&p, "path = \"out/a.txt\"");
    for args in [
        &["verify", "--json"][..],
        &["verify", "--relocatable", "--json"],
    ] {
        let r = p.run(args);
        assert_eq!(r.code, 1, "{args:?}");
        let ps = problems(&r);
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!(ps[0]["kind"], "missing-blob");
        assert_eq!(ps[0]["entry"], key_of(&entry).as_str());
        assert_eq!(ps[0]["path"], depot_rel(&p, &b).as_str());
        let detail = ps[0]["detail"].as_str().unwrap();
        assert!(detail.contains("output `out/a.txt`"), "{detail}");
    }
}

#[test]
fn a_flipped_byte_is_found_only_with_integrity_and_the_depot_is_left_untouched() {
    let p = chain();
    p.build(&[]).ok();
    // Loose, or (the packed pass) inside its pack.
    let b = stored(&p.depot, &Digest::of(b"alpha\n"));
    b.flip(0, 0x20);
    let before = tree(&p.depot);

    verify(&p, &[]).ok();
    let r = verify(&p, &["--integrity"]);
    assert_eq!(r.code, 1);
    let ps = problems(&r);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["kind"], b.corrupt_kind());
    assert_eq!(ps[0]["path"], depot_rel(&p, &b.file).as_str());
    assert!(ps[0]["entry"].is_null());
    // --simulate, --integrity and every check read only: not even quarantine.
    assert_eq!(verify(&p, &["--integrity", "--simulate"]).code, 1);
    assert_eq!(tree(&p.depot), before, "verify must not modify the depot");
}

#[test]
fn a_misnamed_entry_is_flagged() {
    let p = chain();
    p.build(&[]).ok();
    let entry = entry_with(&p, "path = \"out-c.txt\"");
    let other = Digest::of(b"another key").to_hex();
    let dest = p
        .depot
        .join("entries-v2")
        .join(&other[..2])
        .join(format!("{other}.toml"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::rename(&entry, &dest).unwrap();
    let r = p.run(&["verify", "--json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.problem_kinds(), ["misnamed-entry"]);
    assert_eq!(problems(&r)[0]["entry"], other.as_str());
}

#[test]
fn an_unparseable_entry_is_flagged() {
    let p = chain();
    p.build(&[]).ok();
    let entry = entry_with(&p, "path = \"out-c.txt\"");
    std::fs::write(&entry, "schema = 1\nthis is not toml").unwrap();
    let r = p.run(&["verify", "--json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.problem_kinds(), ["corrupt-entry"]);
    assert_eq!(problems(&r)[0]["entry"], key_of(&entry).as_str());
}

#[test]
fn the_json_schema_is_exact() {
    let p = Project::new(WHERE, &[]);
    p.build(&[]).ok();
    std::os::unix::fs::symlink("/etc", p.depot.join("escape")).unwrap();
    let r = verify(&p, &["--integrity"]);
    assert_eq!(r.code, 1);
    let j = r.json();
    let top: Vec<&String> = j.as_object().unwrap().keys().collect();
    assert_eq!(
        top,
        [
            "blobs_checked",
            "entries_checked",
            "problems",
            "relocatable"
        ]
    );
    assert_eq!(j["relocatable"], Value::Bool(false));
    assert_eq!(j["entries_checked"].as_u64(), Some(2));
    assert_eq!(j["blobs_checked"].as_u64(), Some(4));
    let ps = j["problems"].as_array().unwrap();
    assert_eq!(ps.len(), 2);
    for p in ps {
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["detail", "entry", "kind", "path"]);
        assert!(p["kind"].is_string() && p["detail"].is_string());
        assert!(p["path"].is_string() || p["path"].is_null());
        assert!(
            p["entry"].is_null()
                || p["entry"]
                    .as_str()
                    .is_some_and(|k| k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit())),
            "{p}"
        );
    }
    // Depot-wide problems come first, with a null entry.
    assert_eq!(ps[0]["kind"], "symlink-leaves-depot");
    assert_eq!(ps[0]["entry"], Value::Null);
    assert_eq!(ps[0]["path"], "escape");
    assert_eq!(ps[1]["kind"], "embedded-path");
    assert_eq!(ps[1]["path"], "where.txt");
    assert!(ps[1]["entry"].is_string());
}

#[test]
fn usage_errors_exit_2() {
    let p = chain();
    p.build(&[]).ok();
    // --simulate is a relocatability check.
    assert_eq!(p.run(&["verify", "--simulate"]).code, 2);
    assert_eq!(
        p.run(&["verify", "--relocatable", "--target", "nope"]).code,
        2
    );
    // No depot: nothing is created.
    let missing = p.tmp.path().join("no-depot");
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&missing)
        .args(["verify", "--relocatable"]);
    let r = output(c);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["no depot at"]);
    assert!(!missing.exists());
    // --target needs the project.
    let mut c = bin();
    c.arg("--depot")
        .arg(&p.depot)
        .args(["verify", "--relocatable", "--target", "a"])
        .current_dir(p.tmp.path());
    assert_eq!(output(c).code, 2);
}

#[test]
fn cc_g_embeds_the_build_directory_and_a_prefix_map_fixes_it() {
    let p = Project::c_demo();
    let mut c = p.cmd(&["build", "--json"]);
    c.env("CFLAGS", "-g");
    let b = output(c);
    b.ok();
    assert!(
        b.stderr
            .contains("`obj:src/greet.c` is not relocatable: output `build/greet.o` embeds"),
        "{}",
        b.stderr
    );
    let r = verify(&p, &[]);
    assert_eq!(r.code, 1);
    let flagged: Vec<(String, String)> = problems(&r)
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for obj in ["build/greet.o", "build/squares.o"] {
        assert!(
            flagged.contains(&("embedded-path".into(), obj.into())),
            "{obj} not flagged: {flagged:?}"
        );
    }

    let q = Project::c_demo();
    let mut c = q.cmd(&["build", "--json"]);
    c.env(
        "CFLAGS",
        format!(
            "-g -ffile-prefix-map={}=.",
            std::fs::canonicalize(&q.root).unwrap().display()
        ),
    );
    let b = output(c);
    b.ok();
    b.assert_stderr_lacks(&["not relocatable"]);
    let r = verify(&q, &["--integrity"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["entries_checked"], 5);
}

#[test]
fn a_directory_where_a_blob_or_an_entry_belongs_is_a_problem() {
    let p = chain();
    build_loose(&p);
    let b = blob(&p, b"alpha\n");
    std::fs::remove_file(&b).unwrap();
    std::fs::create_dir(&b).unwrap();
    let e = entry_with(&p, "out-c.txt");
    std::fs::remove_file(&e).unwrap();
    std::fs::create_dir(&e).unwrap();
    let r = p.run(&["verify", "--integrity", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let paths: Vec<String> = problems(&r)
        .iter()
        .filter(|x| x["kind"] == "unreadable")
        .map(|x| x["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        paths.contains(&depot_rel(&p, &b)),
        "{paths:?}\n{}",
        r.stdout
    );
    assert!(
        paths.contains(&depot_rel(&p, &e)),
        "{paths:?}\n{}",
        r.stdout
    );
}

#[test]
fn many_non_relocatable_targets_warn_three_times_then_count() {
    let manifest: String = (1..=5)
        .map(|i| format!("[target.w{i}]\nrun = \"pwd > w{i}.txt\"\noutputs = [\"w{i}.txt\"]\n"))
        .collect();
    let p = Project::new(&manifest, &[]);
    let r = p.run(&["build", "-j", "1"]);
    r.ok();
    assert_eq!(
        r.stderr.matches("is not relocatable:").count(),
        3,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("2 more relocatability warnings like those above"),
        "{}",
        r.stderr
    );
    // --json keeps every target's warning.
    std::fs::remove_dir_all(&p.depot).unwrap();
    let j = p.build(&["-j", "1"]).json();
    let warned = j["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["warnings"].to_string().contains("is not relocatable"))
        .count();
    assert_eq!(warned, 5, "{j}");
}

/// How a test takes a project to its new place.
#[derive(Clone, Copy, Debug)]
enum MoveBy {
    /// `mv` of the whole directory: files keep their mtimes, outputs stay.
    Mv,
    /// A fresh copy elsewhere (a checkout): every file gets a new mtime.
    Checkout,
}

/// Env values as a user sets them for a project at `root`.
type EnvAt = fn(&Path) -> Vec<(&'static str, String)>;

/// Builds `p` (with `env` from its root), asks `verify --simulate` how many
/// cached targets would hit after a move, moves the project for real
/// (`how`), builds there with `env` set from the new root, and returns the
/// prediction and the real build's `hits`.
fn predicted_and_real_hits(p: &Project, env: EnvAt, how: MoveBy) -> (usize, usize) {
    let with_env = |mut c: std::process::Command, root: &Path| {
        c.envs(env(root));
        output(c)
    };
    with_env(p.cmd(&["build", "--json"]), &p.root).ok();
    let sim = with_env(p.cmd(&["verify", "--relocatable", "--simulate"]), &p.root);
    assert!(sim.code <= 1, "{}", sim.render());
    let line = sim
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("simulated a move: "))
        .unwrap_or_else(|| panic!("no simulation summary\n{}", sim.render()));
    let predicted: usize = line.split(' ').next().unwrap().parse().unwrap();

    let moved = p.tmp.path().join("elsewhere").join("proj");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    match how {
        MoveBy::Mv => {
            let s = std::process::Command::new("mv")
                .arg(&p.root)
                .arg(&moved)
                .status()
                .unwrap();
            assert!(s.success(), "mv failed");
        }
        MoveBy::Checkout => copy_tree(&p.root, &moved),
    }
    let mut c = bin();
    c.arg("-C")
        .arg(&moved)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    let b = with_env(c, &moved);
    b.ok();
    let real = b.json()["hits"].as_u64().unwrap() as usize;
    (predicted, real)
}

fn no_env(_: &Path) -> Vec<(&'static str, String)> {
    vec![]
}

/// The issue's case: the fix relocache recommends, set from `$PWD`. Keyed
/// as `--remap-path-prefix=@project=.` wherever the project is, so a real
/// move hits; the simulation used to read the value naming the old place
/// in the copy and predict `0 of 2`.
const REMAP: &str = r#"
[target.lib]
run = "cp a.txt lib.txt"
inputs = ["a.txt"]
env = ["RUSTFLAGS"]
outputs = ["lib.txt"]

[target.app]
run = "cp lib.txt app.txt"
inputs = ["lib.txt"]
deps = ["lib"]
env = ["RUSTFLAGS"]
outputs = ["app.txt"]
"#;

fn remap_at(root: &Path) -> Vec<(&'static str, String)> {
    vec![(
        "RUSTFLAGS",
        format!("--remap-path-prefix={}=.", root.display()),
    )]
}

fn prefix_map_at(root: &Path) -> Vec<(&'static str, String)> {
    vec![(
        "CFLAGS",
        format!("-g -ffile-prefix-map={}=.", root.display()),
    )]
}

#[test]
fn simulate_predicts_what_a_real_move_hits() {
    let p = Project::new(REMAP, &[("a.txt", "a\n")]);
    let (predicted, real) = predicted_and_real_hits(&p, remap_at, MoveBy::Mv);
    assert_eq!(real, 2, "the real move hits both");
    assert_eq!(predicted, real, "env naming the root");

    let (predicted, real) = predicted_and_real_hits(&chain(), no_env, MoveBy::Mv);
    assert_eq!(predicted, real, "plain chain");

    // A fresh checkout changes the mtime an untracked input is keyed by.
    let p = untracked_project();
    let (predicted, real) = predicted_and_real_hits(&p, no_env, MoveBy::Checkout);
    assert_eq!(predicted, real, "untracked input");

    // A real C project: depfiles, a generated header, the prefix map in CFLAGS.
    require_cc();
    let p = Project::c_demo();
    let (predicted, real) = predicted_and_real_hits(&p, prefix_map_at, MoveBy::Mv);
    assert_eq!(real, 5);
    assert_eq!(predicted, real, "c-demo with -ffile-prefix-map=$PWD=.");
}
