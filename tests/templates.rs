//! Templates through the binary: one table, one target per matching file,
//! instances named `TEMPLATE:PATH` on every command, `{outputs:NAME}`, and
//! the set of instances following the files of the project.

mod common;

use common::*;

/// A template "up" upper-casing each `src/**/*.txt` into `out/`, and "all"
/// joining every instance's output through `{outputs:up}`.
const MANIFEST: &str = r#"
[target.up]
foreach = "src/**/*.txt"
run = "echo {path} >> ../runs.log && mkdir -p out/{dir} && tr a-z A-Z < {path} > out/{dir}/{stem}.up"
outputs = ["out/{dir}/{stem}.up"]

[target.all]
run = "echo all >> ../runs.log && cat {outputs:up} > all.txt"
deps = ["up"]
outputs = ["all.txt"]
"#;

fn project() -> Project {
    Project::new(
        MANIFEST,
        &[
            ("src/a.txt", "alpha\n"),
            ("src/deep/b.txt", "beta\n"),
            ("src/with space.txt", "gamma\n"),
        ],
    )
}

#[test]
fn a_template_builds_one_instance_per_file_and_follows_the_files() {
    let p = project();
    let r = p.build(&[]);
    r.ok();
    let mut names: Vec<String> = r.outcomes().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "all",
            "up:src/a.txt",
            "up:src/deep/b.txt",
            "up:src/with space.txt"
        ],
        "{}",
        r.stdout
    );
    assert_eq!(p.read("out/src/deep/b.up"), "BETA\n");
    assert_eq!(p.read("out/src/with space.up"), "GAMMA\n");
    assert_eq!(p.read("all.txt"), "ALPHA\nBETA\nGAMMA\n");
    assert_eq!(p.total_runs(), 4);

    // Warm: all hits.
    let r = p.build(&[]);
    assert!(r.outcomes().iter().all(|(_, o)| o == "hit"), "{}", r.stdout);
    assert_eq!(p.total_runs(), 4);

    // A new file: exactly one new instance, and its dependent.
    p.write("src/c.txt", "delta\n");
    let r = p.build(&[]);
    assert_eq!(r.outcome("up:src/c.txt"), "built");
    assert_eq!(r.outcome("up:src/a.txt"), "hit");
    assert_eq!(r.outcome("all"), "built");
    assert_eq!(p.total_runs(), 6);
    assert_eq!(p.read("all.txt"), "ALPHA\nDELTA\nBETA\nGAMMA\n");

    // A deleted file drops its instance; its entry stays until gc.
    let entries = p.entries();
    std::fs::remove_file(p.path("src/c.txt")).unwrap();
    let r = p.build(&[]);
    assert!(
        r.outcomes().iter().all(|(n, _)| n != "up:src/c.txt"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.outcome("all"),
        "hit",
        "back to the first set: {}",
        r.stdout
    );
    assert_eq!(p.entries(), entries);
}

#[test]
fn every_command_takes_an_instance_or_a_template() {
    let p = project();
    // One instance: only it builds.
    let r = p.build(&["up:src/a.txt"]);
    r.ok();
    assert_eq!(
        r.outcomes(),
        [("up:src/a.txt".to_owned(), "built".to_owned())]
    );
    // A template: all its instances.
    let r = p.build(&["up"]);
    assert_eq!(r.outcomes().len(), 3, "{}", r.stdout);
    assert_eq!(r.outcome("up:src/a.txt"), "hit");

    let r = p.run(&["--json", "status", "up"]);
    r.ok();
    let listed = r.stdout.matches("\"up:src/").count();
    assert!(listed >= 3, "{}", r.stdout);
    p.run(&["explain", "up:src/deep/b.txt"]).ok();
    let k = p.run(&["key", "up:src/a.txt"]);
    k.ok();
    assert_eq!(k.stdout.trim().len(), 64, "{}", k.stdout);
    p.run(&["path", "up:src/a.txt"]).ok();
    // A template's name on the one-target commands: one line per instance.
    let k = p.run(&["key", "up"]);
    k.ok();
    let lines: Vec<&str> = k.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", k.stdout);
    assert!(
        lines[0].ends_with(" up:src/a.txt") && lines[0].len() == 64 + " up:src/a.txt".len(),
        "{}",
        k.stdout
    );
    let path = p.run(&["path", "up"]);
    path.ok();
    assert_eq!(path.stdout.lines().count(), 3, "{}", path.stdout);
    let ex = p.run(&["--json", "explain", "up"]);
    ex.ok();
    assert_eq!(
        ex.json().as_array().map(|a| a.len()),
        Some(3),
        "{}",
        ex.stdout
    );
    let v = p.run(&["--json", "verify", "--target", "up"]);
    v.ok();
    assert_eq!(v.json()["entries_checked"], 3, "{}", v.stdout);
    let g = p.run(&["graph", "--expand", "up:src/a.txt"]);
    g.ok();
    assert!(
        g.stdout.contains("up:src/a.txt") && !g.stdout.contains("up:src/deep"),
        "{}",
        g.stdout
    );
    let g = p.run(&["graph", "all"]);
    g.ok();
    assert!(
        g.stdout.contains("×3"),
        "one node for the template: {}",
        g.stdout
    );
    p.run(&["verify", "--relocatable", "--target", "up:src/a.txt"])
        .ok();
    let archive = p.tmp.path().join("up.tar.zst");
    p.run(&["pack", archive.to_str().unwrap(), "up"]).ok();

    // An unknown instance: exit 2, with the close name.
    let r = p.run(&["build", "up:src/z.txt"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["unknown target `up:src/z.txt`", "up"]);

    // clear takes a template: every instance's entry and record goes.
    let before = p.entries();
    let r = p.run(&["clear", "up"]);
    r.ok();
    assert_eq!(p.entries(), before - 3, "{}", r.stderr);
    let r = p.build(&["up"]);
    assert!(
        r.outcomes().iter().all(|(_, o)| o == "built"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_relocated_copy_hits_every_instance() {
    let p = project();
    p.build(&[]).ok();
    let moved = tempfile::tempdir().unwrap();
    let root = moved.path().join("elsewhere/proj");
    copy_tree(&p.root, &root);
    let depot = moved.path().join("depot");
    copy_tree(&p.depot, &depot);
    let r = output({
        let mut c = bin();
        c.arg("-C")
            .arg(&root)
            .arg("--depot")
            .arg(&depot)
            .args(["build", "--json"]);
        c
    });
    r.ok();
    assert!(r.outcomes().iter().all(|(_, o)| o == "hit"), "{}", r.stdout);
    assert_eq!(r.outcomes().len(), 4);
}

#[test]
fn template_mistakes_are_manifest_errors_with_their_position() {
    for (manifest, needle) in [
        (
            "[target.t]\nforeach = 'src/*.c'\nrun = 'x'\n",
            "relocache.toml:2:11: `foreach` of template `t` matches no file",
        ),
        (
            "[target.t]\nforeach = 'src/*.txt'\nrun = 'echo {path} ${HOME}'\n",
            "relocache.toml:3:7: unknown placeholder `{HOME}` in template `t`",
        ),
        (
            "[target.t]\nrun = 'cat {path}'\n",
            "placeholder `{path}` in target `t`, which has no `foreach`",
        ),
        (
            "[target.t]\nforeach = 'src/*.txt'\nrun = 'x'\noutputs = ['out/all']\n",
            "output `out/all` of target `t:src/a.txt` overlaps output `out/all` of target `t:src/b.txt`",
        ),
        (
            "[target.t]\nforeach = 'src/*.txt'\nrun = 'x'\noutputs = ['o/{stem}']\n[target.u]\nrun = 'cat {outputs:t}'\n",
            "target `u` uses `{outputs:t}` without depending on `t`",
        ),
    ] {
        let p = Project::new(manifest, &[("src/a.txt", "a"), ("src/b.txt", "b")]);
        let r = p.run(&["build"]);
        assert_eq!(r.code, 2, "{manifest}\n{}", r.stderr);
        r.assert_stderr_has(&[needle, "help:"]);
    }
}

#[test]
fn files_in_outputs_and_in_a_depot_inside_the_project_are_never_instances() {
    let p = Project::new(
        "[project]\ndepot = 'cache'\n[target.gen]\nrun = 'mkdir -p gen && echo made > gen/g.txt'\noutputs = ['gen']\n\
         [target.t]\nforeach = '**/*.txt'\nrun = 'cp {path} {path}.copy'\noutputs = ['{path}.copy']\n",
        &[("src/a.txt", "a\n")],
    );
    let mut c = bin();
    c.arg("-C").arg(&p.root).args(["build", "--json"]);
    let r = output(c);
    r.ok();
    let r = output({
        let mut c = bin();
        c.arg("-C").arg(&p.root).args(["build", "--json"]);
        c
    });
    r.ok();
    let mut names: Vec<String> = r.outcomes().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, ["gen", "t:src/a.txt"], "{}", r.stdout);
}

/// The README's manifest, as printed, builds a small C tree with the real
/// compiler: every object, then all hits; a header edit rebuilds only the
/// object that includes it.
#[test]
fn the_readme_manifest_builds_a_c_tree() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let manifest: String = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block in README.md")
        .to_owned();
    let p = Project::new(
        &manifest,
        &[
            (
                "src/main.c",
                "#include \"net/http.h\"\nint main(void) { return http(); }\n",
            ),
            (
                "src/net/http.c",
                "#include \"http.h\"\nint http(void) { return 0; }\n",
            ),
            ("src/net/http.h", "int http(void);\n"),
            ("src/util.c", "int util(void) { return 1; }\n"),
        ],
    );
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcomes().len(), 4, "{}", r.stdout);
    assert!(p.path("build/app").is_file());
    let r = p.build(&[]);
    assert!(r.outcomes().iter().all(|(_, o)| o == "hit"), "{}", r.stdout);
    p.write("src/net/http.h", "int http(void);\n/* edited */\n");
    let r = p.build(&[]);
    r.ok();
    let mut built: Vec<String> = r
        .outcomes()
        .into_iter()
        .filter(|(_, o)| o == "built")
        .map(|(n, _)| n)
        .collect();
    built.sort();
    assert_eq!(
        built,
        ["obj:src/main.c", "obj:src/net/http.c"],
        "{}",
        r.stdout
    );
}
