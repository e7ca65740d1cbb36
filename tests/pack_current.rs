//! `relocache pack FILE --current` (issue 19, "CI archives that stay
//! bounded"): an archive of exactly what the next build needs — each
//! target's entry for its current key, its blobs and, for a depfile target,
//! its variants record with that entry's path set — driven through the real
//! binary, including twenty CI rounds of fresh checkouts and fresh depots.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use relocache::depot::Depot;

/// Four independent steps each copying one data file, and `all` joining
/// them: the five-target example project of the issue.
const FIVE: &str = r#"
[target.a]
run = "mkdir -p out && cp data/a.txt out/a.txt"
inputs = ["data/a.txt"]
outputs = ["out/a.txt"]

[target.b]
run = "mkdir -p out && cp data/b.txt out/b.txt"
inputs = ["data/b.txt"]
outputs = ["out/b.txt"]

[target.c]
run = "mkdir -p out && cp data/c.txt out/c.txt"
inputs = ["data/c.txt"]
outputs = ["out/c.txt"]

[target.d]
run = "mkdir -p out && cp data/d.txt out/d.txt"
inputs = ["data/d.txt"]
outputs = ["out/d.txt"]

[target.all]
run = "cat out/a.txt out/b.txt out/c.txt out/d.txt > out/all.txt"
inputs = ["out/a.txt", "out/b.txt", "out/c.txt", "out/d.txt"]
deps = ["a", "b", "c", "d"]
outputs = ["out/all.txt"]
"#;

const LEAVES: [&str; 4] = ["a", "b", "c", "d"];

/// A data file's content in a given round: the same length every round, so
/// that the archive's size says how many entries it holds, not how long
/// the texts are.
fn data(leaf: &str, round: usize) -> String {
    format!("{leaf} as of round {round:03}\n{}\n", "x".repeat(200))
}

/// `relocache -C root --depot depot ARGS`.
fn at(root: &Path, depot: &Path, args: &[&str]) -> Run {
    let mut c = bin();
    c.arg("-C").arg(root).arg("--depot").arg(depot).args(args);
    output(c)
}

/// One chain of CI runs: the archive each round saved (`None` before the
/// first), so that a later round can restore an older one.
struct Chain {
    /// `--current`, or the whole depot (the old recipe).
    current: bool,
    archives: Vec<PathBuf>,
    sizes: Vec<u64>,
    entries: Vec<usize>,
}

impl Chain {
    fn new(current: bool) -> Chain {
        Chain {
            current,
            archives: Vec::new(),
            sizes: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// One CI run in `dir`: a fresh checkout of `repo`, a fresh depot,
    /// `unpack` of the archive of round `restore` (if any), `build`, `pack`.
    /// Returns `build --json`.
    fn round(&mut self, dir: &Path, repo: &Path, restore: Option<usize>) -> Run {
        let root = dir.join("checkout");
        let depot = dir.join("depot");
        copy_tree(repo, &root);
        if let Some(r) = restore {
            let archive = self.archives[r].to_str().unwrap().to_owned();
            at(&root, &depot, &["unpack", &archive]).ok();
        }
        let build = at(&root, &depot, &["build", "--json"]);
        build.ok();
        let archive = dir.join("relocache.tar.zst");
        let mut args = vec!["--json", "pack", archive.to_str().unwrap()];
        if self.current {
            args.push("--current");
        }
        let pack = at(&root, &depot, &args);
        pack.ok();
        let summary = pack.json();
        assert!(
            summary["skipped"].as_array().unwrap().is_empty(),
            "{summary}"
        );
        self.sizes.push(std::fs::metadata(&archive).unwrap().len());
        assert_eq!(summary["archive_bytes"], *self.sizes.last().unwrap());
        self.entries
            .push(summary["entries"].as_array().unwrap().len());
        self.archives.push(archive);
        build
    }
}

/// Which earlier round's archive round `round` (1-based) restores: the
/// previous one, except every 4th round, where the cache's exact key and
/// its newest restore-key missed and an older archive came back.
fn restored_from(round: usize) -> Option<usize> {
    match round {
        1 => None,
        r if r % 4 == 0 => Some(r - 3), // index of round r-2
        r => Some(r - 2),               // index of round r-1
    }
}

#[test]
fn twenty_ci_rounds_keep_the_current_archive_flat_while_every_unchanged_target_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("data")).unwrap();
    std::fs::write(repo.join("relocache.toml"), FIVE).unwrap();
    for leaf in LEAVES {
        std::fs::write(repo.join(format!("data/{leaf}.txt")), data(leaf, 0)).unwrap();
    }
    let mut current = Chain::new(true);
    let mut whole = Chain::new(false);
    for round in 1..=20 {
        // The commit of this round changes one data file.
        let changed = LEAVES[round % 4];
        std::fs::write(
            repo.join(format!("data/{changed}.txt")),
            data(changed, round),
        )
        .unwrap();
        let restore = restored_from(round);

        let build = current.round(&tmp.path().join(format!("current-{round}")), &repo, restore);
        let from_previous = round > 1 && restore == Some(round - 2);
        if from_previous {
            for leaf in LEAVES {
                let want = if leaf == changed { "built" } else { "hit" };
                assert_eq!(
                    build.outcome(leaf),
                    want,
                    "round {round} ({changed} changed), restored from round {round_before}:\n{}",
                    build.stdout,
                    round_before = round - 1
                );
            }
            assert_eq!(build.outcome("all"), "built", "round {round}");
        } else if restore.is_some() {
            // An older archive: the leaf the previous round changed misses
            // too, the two others still hit.
            let missed_then = LEAVES[(round - 1) % 4];
            for leaf in LEAVES
                .iter()
                .filter(|l| ![changed, missed_then].contains(l))
            {
                assert_eq!(
                    build.outcome(leaf),
                    "hit",
                    "round {round}: {}",
                    build.stdout
                );
            }
        }
        assert_eq!(
            current.entries[round - 1],
            5,
            "round {round}: --current packs one entry per target"
        );

        // The old recipe, on the same commits and the same restore pattern.
        whole.round(&tmp.path().join(format!("whole-{round}")), &repo, restore);
    }

    let later = &current.sizes[4..];
    let (min, max) = (later.iter().min().unwrap(), later.iter().max().unwrap());
    assert!(
        *max as f64 <= *min as f64 * 1.10,
        "--current archives of rounds 5..20 must stay within 10%: {:?}",
        current.sizes
    );
    // The whole depot grows every round it restored the previous archive:
    // the entries of every old key travel on.
    assert!(
        whole.entries[19] >= whole.entries[4] + 20,
        "the whole-depot archive keeps every old entry: {:?}",
        whole.entries
    );
    assert!(
        whole.sizes[19] as f64 >= whole.sizes[4] as f64 * 2.0,
        "the whole-depot archive grows: {:?}",
        whole.sizes
    );
    assert!(
        whole.sizes[19] > current.sizes[19] * 4,
        "whole {:?}, current {:?}",
        whole.sizes,
        current.sizes
    );
}

/// The chain project (a -> b, c) built, with its archive path.
fn built_chain() -> (Project, PathBuf) {
    let p = chain();
    p.build(&[]).ok();
    let file = p.tmp.path().join("ci.tar.zst");
    (p, file)
}

/// Targets of the entries an archive summary (`pack --json`) names.
fn packed(r: &Run) -> Vec<String> {
    let mut v: Vec<String> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// (target, kind) of each target `pack --current --json` left out.
fn unbuilt(r: &Run) -> Vec<(String, String)> {
    r.json()["unbuilt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["target"].as_str().unwrap().to_owned(),
                u["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn current_leaves_out_targets_whose_current_key_has_no_entry_with_a_note() {
    let (p, file) = built_chain();
    let f = file.to_str().unwrap();
    // a's input changed since the build: a has no entry for its current
    // key, and b's key is unknown until a is built. c is as built.
    p.write("a.txt", "changed\n");
    let r = p.run(&["pack", f, "--current"]);
    r.ok().assert_stderr_has(&[
        "note: not packed: `a`: no entry for its current inputs (the next build runs it)",
        "note: not packed: `b`: its dep `a` has no entry",
        "packed 1 entry and",
        "(2 targets without an entry for their current inputs, see the notes above)",
    ]);
    let j = p.run(&["--json", "pack", f, "--current"]);
    j.ok();
    assert_eq!(packed(&j), ["c"]);
    assert_eq!(
        unbuilt(&j),
        [
            ("a".to_owned(), "no-entry".to_owned()),
            ("b".to_owned(), "dep-has-no-entry".to_owned())
        ]
    );
    assert!(
        j.stderr.is_empty(),
        "--json says it all on stdout: {}",
        j.stderr
    );

    // The archive holds c alone, and it hits in a fresh depot.
    let fresh = p.tmp.path().join("fresh");
    at(&p.root, &fresh, &["unpack", f]).ok();
    let b = at(&p.root, &fresh, &["build", "--json"]);
    b.ok();
    assert_eq!(
        b.outcomes(),
        [
            ("a".to_owned(), "built".to_owned()),
            ("b".to_owned(), "built".to_owned()),
            ("c".to_owned(), "hit".to_owned())
        ]
    );
}

#[test]
fn current_after_a_failed_build_packs_what_succeeded() {
    let p = Project::new(
        &format!(
            "{CHAIN}\n[target.bad]\nrun = \"exit 3\"\ninputs = [\"c.txt\"]\noutputs = [\"bad.txt\"]\n"
        ),
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    );
    assert_eq!(p.build(&[]).code, 1, "bad fails");
    let file = p.tmp.path().join("ci.tar.zst");
    let r = p.run(&["--json", "pack", file.to_str().unwrap(), "--current"]);
    r.ok();
    assert_eq!(packed(&r), ["a", "b", "c"]);
    assert_eq!(unbuilt(&r), [("bad".to_owned(), "no-entry".to_owned())]);
}

#[test]
fn current_with_an_entry_deleted_from_the_depot_packs_the_rest() {
    let (p, file) = built_chain();
    let key = p.run(&["key", "c"]);
    key.ok();
    let hex = key.stdout.trim().to_owned();
    let entry = p.depot.join(format!("entries-v2/{}/{hex}.toml", &hex[..2]));
    std::fs::remove_file(&entry)
        .unwrap_or_else(|e| panic!("c's entry at {}: {e}", entry.display()));
    let r = p.run(&["--json", "pack", file.to_str().unwrap(), "--current"]);
    r.ok();
    assert_eq!(packed(&r), ["a", "b"]);
    assert_eq!(unbuilt(&r), [("c".to_owned(), "no-entry".to_owned())]);
}

#[test]
fn current_packs_only_current_keys_not_older_entries_of_the_same_targets() {
    let (p, file) = built_chain();
    p.write("c.txt", "gamma 2\n");
    p.build(&[]).ok();
    p.write("c.txt", "gamma 3\n");
    p.build(&[]).ok();
    assert_eq!(p.entries(), 5, "three entries of c in the depot");
    let r = p.run(&["--json", "pack", file.to_str().unwrap(), "--current"]);
    r.ok();
    assert_eq!(packed(&r), ["a", "b", "c"]);
    let whole = p.run(&["--json", "pack", file.to_str().unwrap()]);
    assert_eq!(whole.json()["entries"].as_array().unwrap().len(), 5);
}

#[test]
fn current_with_named_targets_packs_them_and_their_deps_as_far_as_they_exist() {
    let (p, file) = built_chain();
    let f = file.to_str().unwrap();
    let r = p.run(&["--json", "pack", f, "--current", "b"]);
    r.ok();
    assert_eq!(packed(&r), ["a", "b"], "b and its dep, not c");
    assert!(unbuilt(&r).is_empty());

    p.write("a.txt", "changed\n");
    let r = p.run(&["--json", "pack", f, "--current", "b"]);
    r.ok();
    assert!(packed(&r).is_empty());
    assert_eq!(
        unbuilt(&r),
        [
            ("a".to_owned(), "no-entry".to_owned()),
            ("b".to_owned(), "dep-has-no-entry".to_owned())
        ]
    );
    // Without --current, naming them stays all-or-nothing.
    let strict = p.run(&["pack", f, "b"]);
    assert_eq!(strict.code, 1, "{}", strict.render());
    strict.assert_stderr_has(&["a: no entry for its current inputs", "--current"]);

    let unknown = p.run(&["pack", f, "--current", "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.render());
    unknown.assert_stderr_has(&["unknown target `nope`"]);
}

#[test]
fn current_needs_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let depot = tmp.path().join("depot");
    let (p, _) = built_chain();
    copy_tree(&p.depot, &depot);
    let file = tmp.path().join("ci.tar.zst");
    let r = at(
        tmp.path(),
        &depot,
        &["pack", file.to_str().unwrap(), "--current"],
    );
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["relocache.toml"]);
}

#[test]
fn current_carries_a_depfile_targets_current_entry_with_only_its_path_set() {
    require_cc();
    let p = Project::new(
        r#"
[target.obj]
run = "mkdir -p build && cc -O2 -c src/m.c -o build/m.o -MD -MF build/m.d"
inputs = ["src/m.c"]
depfile = "build/m.d"
outputs = ["build/m.o"]
"#,
        &[
            (
                "src/m.c",
                "#include \"one.h\"\nint m(void) { return ONE; }\n",
            ),
            ("src/one.h", "#define ONE 1\n"),
            ("src/two.h", "#define TWO 2\n"),
        ],
    );
    p.build(&[]).ok();
    // A second path set under the same base key: m.c now includes two.h too.
    p.write(
        "src/m.c",
        "#include \"one.h\"\n#include \"two.h\"\nint m(void) { return ONE + TWO; }\n",
    );
    assert_eq!(p.build(&[]).outcome("obj"), "built");
    assert_eq!(p.entries(), 2);

    let file = p.tmp.path().join("ci.tar.zst");
    let r = p.run(&["--json", "pack", file.to_str().unwrap(), "--current"]);
    r.ok();
    assert_eq!(packed(&r), ["obj"], "only the current variant");

    // A fresh checkout elsewhere with a fresh depot: unpack, then a hit.
    let tmp = tempfile::tempdir().unwrap();
    let (root, depot) = (tmp.path().join("checkout"), tmp.path().join("depot"));
    copy_tree(&p.root, &root);
    std::fs::remove_dir_all(root.join("build")).unwrap();
    at(&root, &depot, &["unpack", file.to_str().unwrap()]).ok();
    let d = Depot::open_existing(&depot).unwrap();
    let keys = d.list_entries().unwrap();
    assert_eq!(keys.len(), 1);
    let entry = d.read_entry(&keys[0]).unwrap().unwrap();
    let base = entry.base.expect("a depfile entry has a base key");
    let record = d
        .read_variants(&base)
        .unwrap()
        .expect("its variants record");
    assert_eq!(record.sets.len(), 1, "only the packed entry's path set");
    let paths: Vec<String> = record.sets[0].paths.iter().map(|p| p.to_string()).collect();
    assert!(
        paths.iter().any(|p| p == "src/two.h"),
        "the current set names two.h: {paths:?}"
    );
    let b = at(&root, &depot, &["build", "--json"]);
    b.ok();
    assert_eq!(b.outcome("obj"), "hit", "{}", b.stderr);
}
