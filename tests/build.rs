//! `relocache build`: run-or-restore by content, relocatable across project
//! and depot paths, driven through the real binary.

mod common;

use common::*;

#[test]
fn cold_build_runs_everything_and_warm_build_runs_nothing() {
    let p = chain();
    let cold = p.build(&[]);
    cold.ok();
    assert_eq!(
        cold.outcomes(),
        [
            ("a".into(), "built".into()),
            ("b".into(), "built".into()),
            ("c".into(), "built".into())
        ]
    );
    assert_eq!(cold.json()["built"], 3);
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");

    let warm = p.build(&[]);
    warm.ok();
    assert_eq!(warm.json()["hits"], 3);
    assert_eq!(p.total_runs(), 3, "a warm build must not run any command");
}

#[test]
fn deleted_outputs_are_restored_from_the_depot() {
    let p = chain();
    p.build(&[]).ok();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    std::fs::remove_file(p.path("out-c.txt")).unwrap();
    let r = p.build(&[]);
    assert_eq!(r.json()["hits"], 3);
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");
    assert_eq!(p.read("out-c.txt"), "gamma\n");
    assert_eq!(p.total_runs(), 3);
}

#[test]
fn a_content_change_rebuilds_exactly_that_target_and_its_dependents() {
    let p = chain();
    p.build(&[]).ok();
    p.write("a.txt", "ALPHA\n");
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("a"), "built");
    assert_eq!(r.outcome("b"), "built");
    assert_eq!(r.outcome("c"), "hit");
    assert_eq!(p.read("out/b.txt"), "ALPHA\nbeta\n");
    // Editing it back hits the first entries again.
    p.write("a.txt", "alpha\n");
    assert_eq!(p.build(&[]).json()["hits"], 3);
}

#[test]
fn an_mtime_only_change_rebuilds_nothing() {
    let p = chain();
    p.build(&[]).ok();
    for f in ["a.txt", "b.txt", "c.txt"] {
        let s = std::process::Command::new("touch")
            .args(["-d", "2031-01-01 00:00:00"])
            .arg(p.path(f))
            .status()
            .unwrap();
        assert!(s.success());
    }
    let r = p.build(&[]);
    assert_eq!(r.json()["hits"], 3, "{}", r.stdout);
    assert_eq!(p.total_runs(), 3);
}

#[test]
fn a_dep_rebuilt_to_identical_bytes_leaves_dependents_hits() {
    let p = chain();
    p.build(&[]).ok();
    // `a` strips spaces, so this edit changes a's key but not its output.
    p.write("a.txt", "al pha\n");
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("a"), "built");
    assert_eq!(
        r.outcome("b"),
        "hit",
        "early cutoff: b depends on a's outputs, not a's key"
    );
    assert_eq!(p.runs("b"), 1);
}

#[test]
fn the_project_copied_to_another_path_hits_everything() {
    let manifest = format!("{CHAIN}\n[defaults]\nenv = [\"SRC_DIR\"]\n");
    let p = Project::new(
        &manifest,
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    );
    // An env value naming the project root is rewritten to @project in the key.
    let mut c = p.cmd(&["build", "--json"]);
    c.env("SRC_DIR", p.root.join("src"));
    output(c).ok();

    let other = tempfile::tempdir().unwrap();
    let moved = other.path().join("somewhere/else/proj");
    std::fs::create_dir_all(&moved).unwrap();
    for f in ["relocache.toml", "a.txt", "b.txt", "c.txt"] {
        std::fs::copy(p.path(f), moved.join(f)).unwrap();
    }
    let mut c = bin();
    c.arg("-C")
        .arg(&moved)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    c.env("SRC_DIR", moved.join("src"));
    let r = output(c);
    r.ok();
    assert_eq!(r.json()["hits"], 3, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(moved.join("out/b.txt")).unwrap(),
        "alpha\nbeta\n"
    );
}

#[test]
fn the_depot_copied_to_another_path_hits_everything() {
    let p = chain();
    p.build(&[]).ok();
    let copy = p.tmp.path().join("copied-depot");
    copy_tree(&p.depot, &copy);
    std::fs::remove_dir_all(&p.depot).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    // Through RELOCACHE_DEPOT, relative to the current directory.
    let mut c = bin();
    c.current_dir(p.tmp.path())
        .env("RELOCACHE_DEPOT", "copied-depot")
        .arg("-C")
        .arg("proj")
        .args(["build", "--json"]);
    let r = output(c);
    r.ok();
    assert_eq!(r.json()["hits"], 3);
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");
    assert!(
        !p.depot.exists(),
        "the copy was used, not a new default depot"
    );
}

#[test]
fn a_version_bump_invalidates() {
    let p = chain();
    p.build(&[]).ok();
    p.write(
        "relocache.toml",
        &CHAIN.replace("[target.c]\n", "[target.c]\nversion = 2\n"),
    );
    let r = p.build(&[]);
    assert_eq!(r.outcome("c"), "built");
    assert_eq!(r.outcome("a"), "hit");
}

#[test]
fn listed_env_invalidates_and_unlisted_env_does_not() {
    let manifest = CHAIN.replace("[target.c]\n", "[target.c]\nenv = [\"FLAVOR\"]\n");
    let p = Project::new(
        &manifest,
        &[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")],
    );
    let build = |flavor: &str, other: &str| {
        let mut c = p.cmd(&["build", "--json"]);
        c.env("FLAVOR", flavor).env("UNLISTED", other);
        output(c)
    };
    build("x", "1").ok();
    let r = build("x", "2");
    assert_eq!(
        r.json()["hits"],
        3,
        "an unlisted variable must not enter the key"
    );
    let r = build("y", "2");
    assert_eq!(r.outcome("c"), "built");
    assert_eq!(r.outcome("a"), "hit");
    // Unset differs from set.
    let mut c = p.cmd(&["build", "--json"]);
    c.env_remove("FLAVOR");
    assert_eq!(output(c).outcome("c"), "built");
}

#[test]
fn a_failing_command_stores_nothing_and_skips_its_dependents() {
    let p = chain();
    p.write(
        "relocache.toml",
        &CHAIN.replace("tr -d ' ' < a.txt > out/a.txt", "echo broken >&2; exit 3"),
    );
    let r = p.build(&[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.outcome("a"), "failed");
    assert_eq!(r.outcome("b"), "skipped");
    assert_eq!(r.outcome("c"), "built", "independent targets still finish");
    r.assert_stderr_has(&["broken"]);
    assert_eq!(p.entries(), 1, "only c is stored");
    // Text mode names the failure too (one job: lines in a fixed order).
    let t = p.run(&["build", "-j", "1"]);
    assert_eq!(t.code, 1);
    t.assert_stderr_has(&["failed a", "exit status 3", "skipped b"]);
    assert_cli_snapshot!(p.tmp.path(), t);
}

#[test]
fn a_missing_declared_output_is_an_error_naming_it_and_nothing_is_stored() {
    let p = Project::new(
        "[target.t]\nrun = 'echo hi > made.txt'\noutputs = ['made.txt', 'forgotten.txt']\n",
        &[],
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1);
    r.assert_stderr_has(&["forgotten.txt"]);
    assert_eq!(p.entries(), 0);
}

#[test]
fn a_glob_matching_nothing_is_an_error_naming_it() {
    let p = Project::new(
        "[target.t]\nrun = 'true'\ninputs = ['src/*.cc']\n",
        &[("src/a.c", "")],
    );
    let r = p.run(&["build"]);
    assert_eq!(r.code, 1);
    r.assert_stderr_has(&["`src/*.cc`", "matched no files"]);
}

#[test]
fn globs_follow_path_rules_and_gitignore() {
    let p = Project::new(
        "[target.t]\nrun = 'echo t >> ../runs.log; touch out'\ninputs = ['*.h', 'src/**/*.c']\noutputs = ['out']\n",
        &[
            ("top.h", "1"),
            ("sub/deep.h", "2"),
            ("src/a.c", "3"),
            ("src/x/y/b.c", "4"),
            ("src/gen/ignored.c", "5"),
            ("src/.gitignore", "gen/\n"),
        ],
    );
    p.build(&[]).ok();
    // `*.h` is top-level only; ignored files are not inputs.
    p.write("sub/deep.h", "changed");
    p.write("src/gen/ignored.c", "changed");
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    // `**` crosses directories.
    p.write("src/x/y/b.c", "changed");
    assert_eq!(p.build(&[]).outcome("t"), "built");
    p.write("top.h", "changed");
    assert_eq!(p.build(&[]).outcome("t"), "built");
}

#[test]
fn directories_executables_and_relative_symlinks_are_restored() {
    let p = Project::new(
        r#"[target.t]
run = "mkdir -p dist/bin dist/empty && printf '#!/bin/sh\necho ok\n' > dist/bin/tool && chmod +x dist/bin/tool && ln -s bin/tool dist/link && echo data > dist/data.txt"
outputs = ["dist"]
"#,
        &[],
    );
    p.build(&[]).ok();
    // Restored into: an emptied directory with a stray file, no directory
    // at all, and a tree where a file stands in for a directory.
    for damage in ["emptied", "gone", "file-for-dir"] {
        std::fs::remove_dir_all(p.path("dist")).unwrap();
        match damage {
            "emptied" => {
                std::fs::create_dir_all(p.path("dist")).unwrap();
                p.write("dist/stray.txt", "not part of the entry");
            }
            "gone" => {}
            _ => {
                std::fs::create_dir_all(p.path("dist/empty")).unwrap();
                p.write("dist/bin", "a file where a directory belongs");
                p.write("dist/data.txt", "wrong\n");
            }
        }
        assert_eq!(p.build(&[]).outcome("t"), "hit", "{damage}");
        let tool = std::process::Command::new(p.path("dist/bin/tool"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&tool.stdout), "ok\n", "{damage}");
        assert_eq!(
            std::fs::read_link(p.path("dist/link")).unwrap().to_str(),
            Some("bin/tool")
        );
        assert!(p.path("dist/empty").is_dir());
        assert_eq!(p.read("dist/data.txt"), "data\n", "{damage}");
        assert!(
            !p.path("dist/stray.txt").exists(),
            "a restored directory holds exactly the stored files"
        );
    }
}

#[test]
fn stdout_and_stderr_are_replayed_on_a_hit_with_logs_full() {
    let p = Project::new(
        "[target.t]\nrun = 'echo to-stdout; echo to-stderr >&2; touch o'\noutputs = ['o']\n",
        &[],
    );
    let first = p.run(&["build"]);
    first.ok().assert_stdout_has(&["to-stdout"]);
    first.assert_stderr_has(&["to-stderr"]);
    assert_cli_snapshot!(p.tmp.path(), first);
    let second = p.run(&["build", "--logs=full"]);
    second.ok().assert_stdout_has(&["to-stdout"]);
    second.assert_stderr_has(&["hit t", "to-stderr"]);
    assert_cli_snapshot!(p.tmp.path(), second);
}

#[test]
fn selected_targets_build_with_their_deps_only() {
    let p = chain();
    let r = p.build(&["b"]);
    r.ok();
    assert_eq!(
        r.outcomes(),
        [("a".into(), "built".into()), ("b".into(), "built".into())]
    );
    assert_eq!(p.runs("c"), 0);
    let r = p.run(&["build", "nope"]);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["unknown target `nope`"]);
}

#[test]
fn a_mistyped_target_gets_suggestions_and_a_big_manifest_a_short_list() {
    let mut manifest = String::new();
    for i in 0..40 {
        manifest.push_str(&format!("[target.lib{i:02}]\nrun = 'true'\n"));
    }
    manifest.push_str("[target.install]\nrun = 'true'\n");
    let p = Project::new(&manifest, &[]);
    let r = p.run(&["build", "instal"]);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&[
        "unknown target `instal`",
        "did you mean `install`?",
        "(41 in all;",
    ]);
    r.assert_stderr_lacks(&["lib39"]); // not every name
    assert_cli_snapshot!(p.tmp.path(), r);
    // `--timings PATH` (the value needs `=`) is not taken for a target.
    let r = p.run(&["build", "--timings", "out/t.html"]);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["use `--timings=out/t.html`"]);
    assert_cli_snapshot!(p.tmp.path(), r);
}

#[test]
fn independent_targets_run_in_parallel() {
    // Each target waits until the other has started: this finishes only if both run at once.
    let p = Project::new(
        r#"[target.x]
run = "touch x.started; for i in $(seq 100); do [ -e y.started ] && break; sleep 0.05; done; [ -e y.started ] && touch x.out"
outputs = ["x.out"]
[target.y]
run = "touch y.started; for i in $(seq 100); do [ -e x.started ] && break; sleep 0.05; done; [ -e x.started ] && touch y.out"
outputs = ["y.out"]
"#,
        &[],
    );
    p.build(&["-j", "2"]).ok();
}

#[test]
fn the_depot_stack_reads_every_depot_and_writes_the_first() {
    let p = chain();
    p.build(&[]).ok();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let fresh = p.tmp.path().join("fresh");
    let stack = std::env::join_paths([&fresh, &p.depot]).unwrap();
    let mut c = bin();
    c.env("RELOCACHE_DEPOT_PATH", &stack)
        .arg("-C")
        .arg(&p.root)
        .args(["build", "--json"]);
    let r = output(c);
    r.ok();
    assert_eq!(r.json()["hits"], 3);
    // Hits from the second depot were copied into the first.
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&fresh)
        .args(["build", "--json"]);
    assert_eq!(output(c).json()["hits"], 3);
}

#[test]
fn the_default_depot_is_the_user_cache_dir() {
    let p = chain();
    let home = p.tmp.path().join("home");
    let mut c = bin();
    c.env("HOME", &home)
        .env_remove("XDG_CACHE_HOME")
        .arg("-C")
        .arg(&p.root)
        .arg("build");
    output(c).ok();
    assert!(home.join(".cache/relocache/DEPOT.toml").is_file());
    let xdg = p.tmp.path().join("xdg");
    let mut c = bin();
    c.env("HOME", &home)
        .env("XDG_CACHE_HOME", &xdg)
        .arg("-C")
        .arg(&p.root)
        .arg("build");
    output(c).ok();
    assert!(xdg.join("relocache/DEPOT.toml").is_file());
}

#[test]
fn the_manifest_depot_setting_is_relative_to_the_root() {
    let p = Project::new("[project]\ndepot = '.cache/depot'\n[target.t]\nrun = 'echo t >> ../runs.log; cp *.txt o'\ninputs = ['**/*']\noutputs = ['o']\n", &[("in.txt", "x")]);
    let mut c = bin();
    c.arg("-C").arg(&p.root).args(["build", "--json"]);
    output(c).ok();
    assert!(p.path(".cache/depot/DEPOT.toml").is_file());
    // The depot inside the project is never an input: the second build hits.
    let mut c = bin();
    c.arg("-C").arg(&p.root).args(["build", "--json"]);
    assert_eq!(output(c).json()["hits"], 1);
}

#[test]
fn a_directory_that_is_not_a_depot_is_refused() {
    let p = chain();
    std::fs::create_dir_all(&p.depot).unwrap();
    std::fs::write(p.depot.join("thesis.tex"), "precious").unwrap();
    let r = p.run(&["build"]);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["not a relocache depot"]);
    assert_eq!(std::fs::read_dir(&p.depot).unwrap().count(), 1);
}

#[test]
fn the_c_demo_fixture_builds_runs_and_moves() {
    let p = Project::c_demo();
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.json()["built"], 5, "{}", r.stderr);
    let out = std::process::Command::new(p.path("build/c-demo"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("7^2 = 49"));
    assert_eq!(p.build(&[]).json()["hits"], 5);
    // What a move would do, simulated, agrees with the real move below: the
    // objects are found through their depfiles' headers, the generated one
    // (build/table.h) by what gen's entry holds.
    let sim = p.run(&["verify", "--relocatable", "--simulate"]);
    sim.ok();
    sim.assert_stdout_has(&["5 of 5 cached targets would hit"]);
    std::fs::remove_dir_all(p.path("build")).unwrap();
    let st = p.run(&["status"]);
    st.assert_stdout_has(&["5 of 5 targets ready"]);
    assert_eq!(p.build(&[]).json()["hits"], 5);

    let other = tempfile::tempdir().unwrap();
    let moved = other.path().join("elsewhere");
    copy_tree(&p.root, &moved);
    std::fs::remove_dir_all(moved.join("build")).unwrap();
    let mut c = bin();
    c.arg("-C")
        .arg(&moved)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    let r = output(c);
    assert_eq!(r.json()["hits"], 5, "{}", r.stderr);
    assert_eq!(
        std::fs::read(moved.join("build/c-demo")).unwrap(),
        std::fs::read(p.path("build/c-demo")).unwrap()
    );
}

/// A name that cannot be keyed breaks only the targets whose inputs cover
/// it (they fail naming it: never a silently smaller key).
#[test]
fn a_file_with_a_non_utf8_name_breaks_only_the_targets_that_read_it() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new(
        "[target.t]\nrun = 'cat src/a.c > out'\ninputs = ['src/a.c']\noutputs = ['out']\n\
         [target.all]\nrun = 'cat src/* > all'\ninputs = ['src/**']\noutputs = ['all']\n",
        &[("src/a.c", "int a;\n")],
    );
    let weird = p
        .path("src")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.c"));
    std::fs::write(&weird, "latin-1 name").unwrap();
    let r = p.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(r.outcome("all"), "failed");
    r.assert_stdout_has(&["src/caf\\\\xE9.c"]);
    assert_eq!(p.build(&["t"]).outcome("t"), "hit");
}

/// A target may read what any transitive dep wrote: its key follows that
/// output even when its direct dep's output does not change (early cutoff).
#[test]
fn an_output_of_a_transitive_dep_enters_the_key() {
    let p = Project::new(
        r#"[target.a]
run = "echo $(cat a.txt) > gen/a.out"
inputs = ["a.txt"]
outputs = ["gen/a.out"]
[target.b]
run = "echo b > b.out"
deps = ["a"]
outputs = ["b.out"]
[target.glob]
run = "cat gen/a.out > glob.out"
inputs = ["gen/*.out"]
deps = ["b"]
outputs = ["glob.out"]
[target.literal]
run = "cat gen/a.out > literal.out"
inputs = ["gen/a.out"]
deps = ["b"]
outputs = ["literal.out"]
[target.anywhere]
run = "cat gen/a.out > anywhere.res"
inputs = ["**/a.out"]
deps = ["b"]
outputs = ["anywhere.res"]
"#,
        &[("a.txt", "one\n")],
    );
    p.build(&[]).ok();
    assert_eq!(p.read("glob.out"), "one\n");
    let again = p.build(&[]);
    assert!(
        again.outcomes().iter().all(|(_, o)| o == "hit"),
        "{:?}",
        again.outcomes()
    );
    p.write("a.txt", "two\n");
    let r = p.build(&[]);
    assert_eq!(r.outcome("a"), "built");
    assert_eq!(r.outcome("b"), "built", "its dep's digest changed");
    assert_eq!(r.outcome("glob"), "built");
    assert_eq!(r.outcome("literal"), "built");
    assert_eq!(r.outcome("anywhere"), "built");
    assert_eq!(p.read("anywhere.res"), "two\n");
    assert_eq!(p.read("glob.out"), "two\n");
    assert_eq!(p.read("literal.out"), "two\n");
}

#[test]
fn a_project_entered_through_a_symlink_keys_and_scans_like_its_real_path() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    let link = tmp.path().join("link");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let manifest = "[project]\nname = \"p\"\n[defaults]\nenv = [\"CFLAGS\"]\n[target.obj]\nrun = \"mkdir -p out && cc $CFLAGS -c f.c -o out/f.o\"\ninputs = [\"f.c\"]\noutputs = [\"out/f.o\"]\n";
    std::fs::write(real.join("relocache.toml"), manifest).unwrap();
    std::fs::write(real.join("f.c"), "int f(void) { return 1; }\n").unwrap();
    let depot = tmp.path().join("depot");
    // As a shell does after `cd link`: the current directory's name in $PWD.
    let in_dir = |dir: &std::path::Path, cflags: String, args: &[&str]| {
        let mut c = bin();
        c.current_dir(dir)
            .env("PWD", dir)
            .env("CFLAGS", cflags)
            .arg("--depot")
            .arg(&depot)
            .args(args);
        output(c)
    };
    let map = |dir: &std::path::Path| format!("-g -ffile-prefix-map={}=.", dir.display());
    let k_real = in_dir(&real, map(&real), &["key", "obj"]);
    let k_link = in_dir(&link, map(&link), &["key", "obj"]);
    k_real.ok();
    assert_eq!(
        k_real.stdout, k_link.stdout,
        "$PWD's spelling is the project root too"
    );

    // Without the prefix map, the object names the directory as the shell
    // spells it, which relocache scans for too.
    let r = in_dir(&link, "-g".into(), &["build", "--require-relocatable"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["not relocatable"]);
    let r = in_dir(&link, map(&link), &["build", "--require-relocatable"]);
    r.ok();
}

#[test]
fn commands_in_a_project_entered_through_a_symlink_see_pwd_without_a_trailing_slash() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    let link = tmp.path().join("link");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::write(
        real.join("relocache.toml"),
        "[target.t]\nrun = \"printf '%s' \\\"$PWD\\\" > pwd.txt\"\noutputs = [\"pwd.txt\"]\n",
    )
    .unwrap();
    // As a shell does after `cd link` (with or without a slash typed at the end).
    for pwd in [link.display().to_string(), format!("{}/", link.display())] {
        let _ = std::fs::remove_file(real.join("pwd.txt"));
        let mut c = bin();
        c.current_dir(&link)
            .env("PWD", &pwd)
            .arg("--depot")
            .arg(tmp.path().join(format!("depot-{}", pwd.len())))
            .arg("build");
        output(c).ok();
        assert_eq!(
            std::fs::read_to_string(real.join("pwd.txt")).unwrap(),
            link.display().to_string(),
            "with PWD={pwd}"
        );
    }
}

#[test]
fn a_depot_inside_an_output_is_refused_before_anything_is_deleted() {
    let p = Project::new(
        "[target.b]\nrun = \"mkdir -p build && echo x > build/x\"\noutputs = [\"build\"]\n",
        &[],
    );
    let depot = p.path("build/cache");
    // Another project's entries live in that depot.
    let other = chain();
    let mut c = bin();
    c.arg("-C")
        .arg(&other.root)
        .arg("--depot")
        .arg(&depot)
        .arg("build");
    output(c).ok();
    let before = std::fs::read_dir(&depot).unwrap().count();
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&depot)
        .arg("build");
    let r = output(c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is inside `build`, an output of target `b`"),
        "{}",
        r.stderr
    );
    assert!(depot.join("DEPOT.toml").is_file(), "the depot is intact");
    assert_eq!(std::fs::read_dir(&depot).unwrap().count(), before);
}

/// Runs `relocache ARGS` in `p`, failing the test if it takes over 20 s.
fn run_bounded(p: &Project, args: &[&str]) -> Run {
    output_within(p.cmd(args), std::time::Duration::from_secs(20))
}

#[test]
fn fifos_never_hang_a_build() {
    let p = Project::new(
        "[target.a]\nrun = \"cat src/a.c > o.txt\"\ninputs = [\"src/**\"]\noutputs = [\"o.txt\"]\n\n[target.f]\nrun = \"mkfifo o.fifo\"\noutputs = [\"o.fifo\"]\n",
        &[("src/a.c", "int x;\n")],
    );
    let mkfifo = |rel: &str| {
        let ok = std::process::Command::new("mkfifo")
            .arg(p.path(rel))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    mkfifo("src/pipe");
    // A fifo a glob matches is not an input (as in git).
    let r = run_bounded(&p, &["build", "a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run_bounded(&p, &["hash", "src"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.assert_stderr_has(&["hashed 1 file"]);
    // A fifo as an output is a clear failure.
    let r = run_bounded(&p, &["build", "f"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["not a regular file"]);
    // Named literally as an input, too.
    p.write(
        "relocache.toml",
        "[target.a]\nrun = \"true > o.txt\"\ninputs = [\"src/pipe\"]\noutputs = [\"o.txt\"]\n",
    );
    let r = run_bounded(&p, &["build", "a"]);
    assert!(r.code == 1 || r.code == 2, "{}", r.stderr);
}

/// `-q` hides relocache's own `hit`/`built` lines and the note about
/// unreplayed output; which command output shows is `--logs`'s alone.
#[test]
fn quiet_hides_the_target_lines_and_logs_decide_the_command_output() {
    let p = Project::new(
        // The sleep: a run under a millisecond saves no time, and the
        // summary then says nothing of it.
        "[target.t]\nrun = \"echo hello-out; echo warn-err >&2; sleep 0.02; echo x > o.txt\"\noutputs = [\"o.txt\"]\n",
        &[],
    );
    let r = p.run(&["build", "-q"]);
    r.ok();
    r.assert_stdout_has(&["hello-out"]); // it ran: new-only shows it
    r.assert_stderr_has(&["warn-err"])
        .assert_stderr_lacks(&["built t"]);
    let quiet = p.run(&["build", "-q"]);
    quiet.ok();
    quiet.assert_stdout_lacks(&["hello-out"]);
    quiet.assert_stderr_lacks(&["warn-err", "note:"]);
    assert_cli_snapshot!(p.tmp.path(), quiet);
    let full = p.run(&["build", "-q", "--logs=full"]);
    full.ok().assert_stdout_has(&["hello-out"]);
    full.assert_stderr_has(&["warn-err"])
        .assert_stderr_lacks(&["hit t"]);
}

/// A target writing `dist/` with `n` files in ten directories.
fn dist_of(n: usize) -> Project {
    Project::new(
        &format!(
            "[target.t]\nrun = 'for i in $(seq 1 {n}); do d=dist/d$((i % 10)); mkdir -p $d; echo file-$i > $d/f$i; done'\noutputs = ['dist']\n"
        ),
        &[],
    )
}

#[test]
fn a_missing_output_directory_appears_whole_and_leaves_nothing_beside_it() {
    let n = 3000;
    let p = dist_of(n);
    p.build(&[]).ok();
    for round in 0..3 {
        std::fs::remove_dir_all(p.path("dist")).unwrap();
        // A reader polling while the hit restores: the first time it sees
        // `dist`, every file is in it.
        let dist = p.path("dist");
        let watcher = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(60) {
                if std::fs::symlink_metadata(&dist).is_ok() {
                    return Some(files_below(&dist).len());
                }
                std::thread::yield_now();
            }
            None
        });
        assert_eq!(p.build(&[]).outcome("t"), "hit");
        assert_eq!(
            watcher.join().unwrap(),
            Some(n),
            "round {round}: `dist` was seen before it was complete"
        );
        assert_eq!(p.read("dist/d7/f1237"), "file-1237\n");
        let beside: Vec<_> = std::fs::read_dir(&p.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".relocache-"))
            .collect();
        assert!(beside.is_empty(), "left beside the output: {beside:?}");
    }
}

#[test]
fn a_staging_directory_a_killed_restore_left_is_swept_and_a_live_one_is_not() {
    let p = dist_of(20);
    p.build(&[]).ok();
    // As a restore killed mid-way leaves them: an abandoned one (a minute
    // old, unlocked), one just made, and one a live restore holds locked.
    let stage = |name: &str, age_secs: u64| {
        let dir = p.path(name);
        std::fs::create_dir_all(dir.join("d1")).unwrap();
        std::fs::write(dir.join("d1/f1"), "half").unwrap();
        let f = std::fs::File::open(&dir).unwrap();
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
        f.set_modified(then).unwrap();
        f
    };
    let abandoned = ".relocache-stage-4242-0-0123456789abcdef.tmp";
    let young = ".relocache-stage-4242-1-0123456789abcdef.tmp";
    let live = ".relocache-stage-4243-0-fedcba9876543210.tmp";
    stage(abandoned, 120);
    stage(young, 0);
    let held = stage(live, 120);
    held.lock().unwrap();
    // Never opened: a fifo (the open would block) or a symlink by that name.
    let fifo = p.path(".relocache-stage-4244-0-0123456789abcdef.tmp");
    let link = p.path(".relocache-stage-4245-0-0123456789abcdef.tmp");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("dist", &link).unwrap();
    for odd in [&fifo, &link] {
        assert!(std::process::Command::new("touch")
            .args(["-h", "-d", "2 minutes ago"])
            .arg(odd)
            .status()
            .unwrap()
            .success());
    }
    // Never an input: the build is a hit with them beside it.
    std::fs::remove_dir_all(p.path("dist")).unwrap();
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(files_below(&p.path("dist")).len(), 20);
    assert!(
        !p.path(abandoned).exists(),
        "the abandoned staging directory is removed"
    );
    assert!(
        p.path(young).is_dir(),
        "one made less than a minute ago is left"
    );
    assert!(p.path(live).is_dir(), "one a live process holds is left");
    for odd in [&fifo, &link] {
        assert!(std::fs::symlink_metadata(odd).is_ok(), "{odd:?} is left");
    }
    drop(held);
}

#[test]
fn a_missing_output_directory_with_a_declared_output_inside_it_is_restored() {
    let p = Project::new(
        "[target.t]\nrun = 'mkdir -p dist/sub/deep && echo top > dist/top && echo in > dist/sub/deep/in && chmod 555 dist/sub'\noutputs = ['dist', 'dist/sub']\n",
        &[],
    );
    p.build(&[]).ok();
    for gone in ["dist", "dist/sub"] {
        std::process::Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(p.path("dist"))
            .status()
            .unwrap();
        std::fs::remove_dir_all(p.path(gone)).unwrap();
        assert_eq!(p.build(&[]).outcome("t"), "hit", "{gone}");
        assert_eq!(p.read("dist/top"), "top\n", "{gone}");
        assert_eq!(p.read("dist/sub/deep/in"), "in\n", "{gone}");
        let mode = std::fs::metadata(p.path("dist/sub")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o555,
            "{gone}"
        );
    }
}
