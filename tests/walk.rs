//! The project walk decides what a glob can match. It must agree with git
//! about what `.gitignore` leaves in, and it must see exactly the tree.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The files `relocache hash .` sees below `root`.
fn walked(root: &Path) -> BTreeSet<String> {
    let mut c = bin();
    c.arg("-C").arg(root).args(["hash", ".", "--json"]);
    let run = output(c);
    run.ok();
    run.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

/// The files git considers not ignored below `root` (a fresh repository, no
/// global or per-repository excludes).
fn git_sees(root: &Path) -> BTreeSet<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(root)
            .env("HOME", root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "core.excludesFile=/dev/null"])
            .args(args)
            .output()
            .expect("git is installed (.ci/deps installs it)");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q", "."]);
    git(&["ls-files", "--others", "--exclude-standard", "-z"])
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn gitignore_rules_leave_in_what_git_leaves_in() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let gitignore = [
        (
            ".gitignore",
            "*.o\n/build/\nlogs\n!keep.o\ndocs/**/*.tmp\n\\#hash\n*.swp\n",
        ),
        ("src/.gitignore", "!main.o\ngen/\n/local.txt\n*.c~\n"),
        ("src/deep/.gitignore", "*\n!*.rs\n!.gitignore\n"),
        ("vendor/.gitignore", "# a comment\n\n  \n[ab].txt\n"),
    ];
    for (p, text) in gitignore {
        write(root, p, text);
    }
    for p in [
        "a.c",
        "a.o",
        "keep.o",
        "#hash",
        "x.swp",
        "build/out.bin",
        "sub/build/kept.bin",
        "logs",
        "src/logs/l.txt",
        "src/main.o",
        "src/other.o",
        "src/gen/g.c",
        "src/local.txt",
        "src/sub/local.txt",
        "src/x.c~",
        "src/deep/lib.rs",
        "src/deep/lib.o",
        "src/deep/inner/m.rs",
        "docs/a/b/c.tmp",
        "docs/c.tmp",
        "docs/readme.md",
        "vendor/a.txt",
        "vendor/c.txt",
        ".hidden/file",
        "sp ace/f i.txt",
    ] {
        write(root, p, p);
    }
    std::os::unix::fs::symlink("a.c", root.join("link-to-a")).unwrap();
    std::os::unix::fs::symlink("src", root.join("link-to-dir")).unwrap();
    let ours = walked(root);
    let git = git_sees(root);
    assert_eq!(
        ours, git,
        "relocache's walk differs from git's view of the tree"
    );
    // The check above must have something to disagree about.
    assert!(ours.contains("keep.o") && ours.contains("src/main.o") && ours.contains("link-to-dir"));
    assert!(!ours.contains("a.o") && !ours.contains("src/deep/lib.o"));
}

#[test]
fn the_walk_sees_every_file_of_a_wide_deep_tree_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut want = BTreeSet::new();
    for d in 0..40 {
        for f in 0..25 {
            let rel = format!("d{d}/e{}/f{f}.txt", d % 7);
            write(root, &rel, &rel);
            want.insert(rel);
        }
    }
    // A directory with more entries than one read of it returns.
    for f in 0..3000 {
        let rel = format!("wide/{f:05}-{}", "n".repeat(40));
        write(root, &rel, "");
        want.insert(rel);
    }
    assert_eq!(walked(root), want);
}

#[test]
fn a_project_reached_through_a_symlink_is_walked() {
    let p = Project::new(
        "[target.t]\nrun = 'cat src/*.c > out.txt'\ninputs = ['src/*.c']\noutputs = ['out.txt']\n",
        &[("src/a.c", "a\n"), ("src/b.c", "b\n")],
    );
    p.build(&[]).ok();
    let link = p.tmp.path().join("link-to-proj");
    std::os::unix::fs::symlink(&p.root, &link).unwrap();
    let mut c = bin();
    c.arg("-C")
        .arg(&link)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    let r = output(c);
    r.ok();
    assert_eq!(r.outcome("t"), "hit", "{}", r.stderr);
    assert_eq!(walked(&link), walked(&p.root));
    assert_eq!(walked(&link).len(), 4); // relocache.toml, src/a.c, src/b.c, out.txt
}

#[test]
fn an_unreadable_directory_is_a_clear_error_until_it_is_ignored() {
    let p = Project::new(
        "[target.t]\nrun = 'cat src/*.c > out.txt'\ninputs = ['src/*.c']\noutputs = ['out.txt']\n",
        &[("src/a.c", "a\n"), ("secret/key", "k\n")],
    );
    let is_root = is_root();
    let chmod = |args: &[&str], path: &Path| {
        assert!(Command::new("chmod")
            .args(args)
            .arg(path)
            .status()
            .unwrap()
            .success());
    };
    if is_root {
        // root reads everything: the builds below run as `nobody`.
        chmod(&["-R", "a+rwX"], p.tmp.path());
    }
    let build = || {
        let mut c = if is_root {
            bin_as_nobody(p.tmp.path())
        } else {
            bin()
        };
        c.arg("-C")
            .arg(&p.root)
            .arg("--depot")
            .arg(&p.depot)
            .arg("build");
        output(c)
    };
    chmod(&["000"], &p.path("secret"));
    let r = build();
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["secret", "help: make it readable"]);
    // Ignored, it is never entered.
    std::fs::write(p.path(".gitignore"), "secret/\n").unwrap();
    let ok = build();
    chmod(&["755"], &p.path("secret"));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}
