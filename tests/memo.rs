//! The stat memo only ever saves hashing: it never yields a wrong digest.

mod common;

use common::*;

fn touch_d(p: &std::path::Path, when: &str) {
    assert!(std::process::Command::new("touch")
        .args(["-d", when])
        .arg(p)
        .status()
        .unwrap()
        .success());
}

fn key(p: &Project, target: &str) -> String {
    let r = p.run(&["key", target]);
    r.ok();
    r.stdout.trim().to_owned()
}

fn memo_files(p: &Project) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(p.depot.join("projects-v2"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("stat-v1-"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn an_edit_keeping_size_and_mtime_still_changes_the_key() {
    let p = Project::new(
        "[target.t]\nrun = 'echo t >> ../runs.log; cp in.txt out.txt'\ninputs = ['in.txt']\noutputs = ['out.txt']\n",
        &[("in.txt", "aaaa\n")],
    );
    // An old mtime, so the memo trusts the file (it is not racy).
    touch_d(&p.path("in.txt"), "2020-01-01 00:00:00");
    p.build(&[]).ok();
    assert_eq!(memo_files(&p).len(), 1, "the build wrote a memo");
    let before = key(&p, "t");
    assert_eq!(p.build(&[]).outcome("t"), "hit");

    // Same size, same mtime, different bytes.
    p.write("in.txt", "bbbb\n");
    touch_d(&p.path("in.txt"), "2020-01-01 00:00:00");
    let after = key(&p, "t");
    assert_ne!(before, after, "ctime (and the racy rule) catch the edit");
    let r = p.build(&[]);
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(p.read("out.txt"), "bbbb\n");
}

#[test]
fn a_file_changed_within_the_racy_window_is_rehashed() {
    let p = Project::new(
        "[target.t]\nrun = 'cp in.txt out.txt'\ninputs = ['in.txt']\noutputs = ['out.txt']\n",
        &[("in.txt", "one\n")],
    );
    p.build(&[]).ok();
    // Written just now: newer than the memo allows to trust, whatever its stat.
    p.write("in.txt", "two\n");
    assert_eq!(p.build(&[]).outcome("t"), "built");
    assert_eq!(p.read("out.txt"), "two\n");
}

#[test]
fn a_file_hashed_while_racy_is_trusted_once_the_memo_is_rewritten() {
    let p = Project::new(
        "[target.t]\nrun = 'cp in.txt out.txt'\ninputs = ['in.txt']\noutputs = ['out.txt']\n",
        &[("in.txt", "one\n")],
    );
    // Modified 1.5 s ago: racy for a memo written now. The output, written by
    // the build, is racy too; both are trusted by a memo written 2 s later.
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.5;
    touch_d(&p.path("in.txt"), &format!("@{when:.3}"));
    p.build(&[]).ok();
    let memo = || std::fs::read(&memo_files(&p)[0]).unwrap();
    let first = memo();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Racy, so hashed again: the memo must be rewritten (with a later write
    // time) even though the record itself is unchanged, or the file would be
    // hashed on every build.
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    let second = memo();
    assert_ne!(first, second, "a racy re-hash rewrites the memo");
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(second, memo(), "a trusted file costs no rewrite");
}

#[test]
fn a_copied_tree_with_all_new_mtimes_gives_the_same_keys() {
    let p = Project::c_demo();
    p.build(&[]).ok();
    let keys: Vec<String> = [
        "gen",
        "obj:src/greet.c",
        "obj:src/main.c",
        "obj:src/squares.c",
        "app",
    ]
    .iter()
    .map(|t| key(&p, t))
    .collect();
    let other = tempfile::tempdir().unwrap();
    let copy = other.path().join("copy");
    copy_tree(&p.root, &copy);
    for e in walkdir::WalkDir::new(&copy)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if e.file_type().is_file() {
            touch_d(e.path(), "2031-05-05 05:05:05");
        }
    }
    for (t, k) in [
        "gen",
        "obj:src/greet.c",
        "obj:src/main.c",
        "obj:src/squares.c",
        "app",
    ]
    .iter()
    .zip(&keys)
    {
        let mut c = bin();
        c.arg("-C")
            .arg(&copy)
            .arg("--depot")
            .arg(&p.depot)
            .args(["key", t]);
        let r = output(c);
        r.ok();
        assert_eq!(r.stdout.trim(), k, "key of {t}");
    }
}

#[test]
fn a_missing_or_damaged_memo_changes_nothing_but_speed() {
    let p = chain();
    p.build(&[]).ok();
    let keys: Vec<String> = ["a", "b", "c"].iter().map(|t| key(&p, t)).collect();
    for f in memo_files(&p) {
        std::fs::write(&f, b"relocache stat memo v1\ngarbage that does not decode").unwrap();
    }
    assert_eq!(
        ["a", "b", "c"]
            .iter()
            .map(|t| key(&p, t))
            .collect::<Vec<_>>(),
        keys
    );
    assert_eq!(p.build(&[]).json()["hits"], 3);
    for f in memo_files(&p) {
        std::fs::remove_file(f).unwrap();
    }
    assert_eq!(
        ["a", "b", "c"]
            .iter()
            .map(|t| key(&p, t))
            .collect::<Vec<_>>(),
        keys
    );
    assert_eq!(p.build(&[]).json()["hits"], 3);
    assert_eq!(p.total_runs(), 3);
}

#[test]
fn the_memo_names_no_absolute_path() {
    let p = chain();
    p.build(&[]).ok();
    let files = memo_files(&p);
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(&files[0]).unwrap();
    let root = p.root.to_string_lossy().into_owned();
    assert!(!String::from_utf8_lossy(&bytes).contains(&root));
    assert!(!files[0].to_string_lossy()[p.depot.to_string_lossy().len()..].contains(&root));
}

#[test]
fn a_tool_and_a_header_outside_the_project_are_memoized_and_an_edit_still_rebuilds() {
    // Outside the project: a tool found on PATH and a header a depfile names,
    // as a compiler and a system header are. Both old, so the memo trusts them.
    let outside = tempfile::tempdir().unwrap();
    let (tool, header) = (outside.path().join("mytool"), outside.path().join("ext.h"));
    std::fs::write(&tool, "#!/bin/sh\ncat \"$1\"\n").unwrap();
    assert!(std::process::Command::new("chmod")
        .args(["755"])
        .arg(&tool)
        .status()
        .unwrap()
        .success());
    std::fs::write(&header, "one\n").unwrap();
    touch_d(&tool, "2020-01-01 00:00:00");
    touch_d(&header, "2020-01-01 00:00:00");
    let h = header.display();
    let p = Project::new(
        &format!(
            "[target.t]\ntools = ['mytool']\nrun = \"mytool {h} > out.txt && printf 'out.txt: {h}\\\\n' > out.d\"\ndepfile = 'out.d'\noutputs = ['out.txt']\n"
        ),
        &[],
    );
    let path = format!(
        "{}:{}",
        outside.path().display(),
        std::env::var("PATH").unwrap()
    );
    let build = || {
        let mut c = p.cmd(&["build", "--json"]);
        c.env("PATH", &path);
        output(c)
    };
    assert_eq!(build().outcome("t"), "built");
    assert_eq!(p.read("out.txt"), "one\n");
    assert_eq!(build().outcome("t"), "hit");
    let memo = String::from_utf8_lossy(&std::fs::read(&memo_files(&p)[0]).unwrap()).into_owned();
    for f in [&tool, &header] {
        assert!(
            memo.contains(&f.display().to_string()),
            "{} is memoized: a no-op build does not hash it again",
            f.display()
        );
    }
    assert!(!memo.contains(&p.root.display().to_string()));

    // Same size, same mtime, other bytes: the stat (ctime) tells, and the key changes.
    std::fs::write(&header, "two\n").unwrap();
    touch_d(&header, "2020-01-01 00:00:00");
    assert_eq!(build().outcome("t"), "built");
    assert_eq!(p.read("out.txt"), "two\n");
    std::fs::write(&tool, "#!/bin/sh\ntac \"$1\"\n").unwrap();
    touch_d(&tool, "2020-01-01 00:00:00");
    assert_eq!(
        build().outcome("t"),
        "built",
        "an edited tool changes the key"
    );
}
