//! Keeping a depot healthy: `gc`, `clear`, `stats`, access tracking and
//! `build --force`, driven through the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Four independent targets, each copying 64 KiB of incompressible bytes,
/// so each entry weighs about 64 KiB in the depot.
fn four() -> Project {
    let mut manifest = String::new();
    for t in ["w", "x", "y", "z"] {
        manifest.push_str(&format!(
            "[target.{t}]\nrun = \"echo {t} >> ../runs.log && cp {t}.src {t}.bin\"\ninputs = [\"{t}.src\"]\noutputs = [\"{t}.bin\"]\n\n"
        ));
    }
    let p = Project::new(&manifest, &[]);
    for (i, t) in ["w", "x", "y", "z"].iter().enumerate() {
        std::fs::write(p.path(&format!("{t}.src")), noise(64 * 1024, i as u64 + 1)).unwrap();
    }
    p
}

/// Builds the targets one process at a time, in this order.
fn build_in_order(p: &Project, targets: &[&str]) {
    for t in targets {
        p.build(&[t]).ok();
    }
}

fn set_depot_toml(depot: &Path, extra: &str) {
    let body = format!("format = 2\n{extra}\n");
    let sealed = format!(
        "{body}checksum = \"{}\"\n",
        blake3::hash(body.as_bytes()).to_hex()
    );
    std::fs::write(depot.join("DEPOT.toml"), sealed).unwrap();
}

/// Target names of `gc --json`'s removed entries, in eviction order.
fn removed(r: &Run) -> Vec<String> {
    r.json()["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn touch(path: &Path, when: &str) {
    let s = std::process::Command::new("touch")
        .args(["-h", "-d", when])
        .arg(path)
        .status()
        .unwrap();
    assert!(s.success());
}

fn stats(p: &Project) -> Value {
    let r = p.run(&["stats", "--json"]);
    r.ok();
    r.json()
}

fn target_stats(s: &Value, target: &str) -> Value {
    s["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target} in {s}"))
        .clone()
}

fn key_of(r: &Run, target: &str) -> String {
    r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == target)
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn gc_with_a_size_bound_keeps_the_most_recently_used_entries_and_frees_the_rest() {
    let p = four();
    build_in_order(&p, &["w"]);
    // Log every use, so the hits below reorder the LRU within the test.
    set_depot_toml(&p.depot, "usage_interval = \"0s\"");
    build_in_order(&p, &["x", "y", "z"]);
    // w and x are used again: y and z are now the least recently used.
    build_in_order(&p, &["w", "x"]);
    assert_eq!(p.total_runs(), 4);

    let r = p.run(&["gc", "--max-size", "200K", "--json"]);
    r.ok();
    let j = r.json();
    assert_eq!(removed(&r), ["y", "z"], "{j}");
    assert!(j["size_before"].as_u64().unwrap() > 200 * 1024, "{j}");
    assert!(
        j["size_after"].as_u64().unwrap() <= 160 * 1024,
        "cleaned to 80% of the bound: {j}"
    );
    assert!(j["bytes_freed"].as_u64().unwrap() >= 2 * 64 * 1024, "{j}");
    assert_eq!(p.entries(), 2);
    assert!(
        walkdir_size(&p.depot) <= 160 * 1024,
        "the depot really shrank"
    );

    // The kept entries still restore; the evicted ones rebuild.
    for t in ["w", "x", "y", "z"] {
        std::fs::remove_file(p.path(&format!("{t}.bin"))).unwrap();
    }
    let b = p.build(&[]);
    b.ok();
    assert_eq!(b.outcome("w"), "hit");
    assert_eq!(b.outcome("x"), "hit");
    assert_eq!(b.outcome("y"), "built");
    assert_eq!(b.outcome("z"), "built");
    assert_eq!(p.runs("w"), 1, "zero commands run for the kept entries");
    assert_eq!(p.runs("x"), 1);
    assert_eq!(
        std::fs::read(p.path("w.bin")).unwrap(),
        noise(64 * 1024, 1),
        "restored bytes are the original bytes"
    );
}

fn walkdir_size(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

#[test]
fn gc_under_the_bound_removes_nothing_and_dry_run_changes_nothing() {
    let p = four();
    build_in_order(&p, &["w", "x", "y", "z"]);
    let r = p.run(&["gc", "--max-size", "10M", "--json"]);
    r.ok();
    assert!(removed(&r).is_empty());
    assert_eq!(p.entries(), 4);

    let before = files_under(&p.depot).len();
    let r = p.run(&["gc", "--max-size", "200K", "--dry-run", "--json"]);
    r.ok();
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(removed(&r), ["w", "x"]);
    assert!(r.json()["bytes_freed"].as_u64().unwrap() >= 2 * 64 * 1024);
    assert_eq!(p.entries(), 4, "a dry run removes nothing");
    assert_eq!(files_under(&p.depot).len(), before);

    let text = p.run(&["gc", "--max-size", "200K", "--dry-run"]);
    text.ok();
    text.assert_stderr_has(&["would remove 2 entries", "would free"]);
}

#[test]
fn last_use_survives_a_depot_copy_whose_mtimes_are_all_new() {
    let p = four();
    build_in_order(&p, &["w", "x", "y", "z"]);
    let copy = p.tmp.path().join("copied-depot");
    copy_tree(&p.depot, &copy);
    // The copy's mtimes are new and say nothing; make the entries' say the
    // opposite of the real order (w newest), as a careless copy might.
    for f in files_under(&copy) {
        touch(&f, "2030-01-01 00:00:00");
    }
    for (t, when) in [("w", "2030-04-01"), ("x", "2030-03-01")] {
        let r = p.run(&["build", "--json", t]);
        let key = key_of(&r, t);
        touch(
            &copy
                .join("entries-v2")
                .join(&key[..2])
                .join(format!("{key}.toml")),
            when,
        );
    }
    let gc = |depot: &Path| {
        let mut c = bin();
        c.arg("-C").arg(&p.root).arg("--depot").arg(depot).args([
            "gc",
            "--max-size",
            "200K",
            "--json",
        ]);
        let r = output(c);
        r.ok();
        removed(&r)
    };
    assert_eq!(gc(&copy), ["w", "x"], "the copy keeps the LRU order");
    assert_eq!(gc(&p.depot), ["w", "x"]);

    // A fresh checkout on the copy restores the kept entries.
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&copy)
        .args(["build", "--json", "y", "z"]);
    let r = output(c);
    r.ok();
    assert_eq!(r.json()["hits"], 2);
}

#[test]
fn gc_never_takes_what_a_running_build_is_writing() {
    let p = chain();
    p.build(&[]).ok();
    let d = &p.depot;
    // A blob just written by a build that has not published its entry yet,
    // and its staging file: both fresh, both unreferenced.
    let fresh = b"fresh output of a running build".to_vec();
    let fresh_blob = blob_path(d, &fresh);
    std::fs::create_dir_all(fresh_blob.parent().unwrap()).unwrap();
    std::fs::write(&fresh_blob, &fresh).unwrap();
    let fresh_tmp = d.join("tmp/.stage-running");
    std::fs::write(&fresh_tmp, b"half written").unwrap();
    // The same from a build that died two hours ago.
    let old = b"left behind by a crash".to_vec();
    let old_blob = blob_path(d, &old);
    std::fs::create_dir_all(old_blob.parent().unwrap()).unwrap();
    std::fs::write(&old_blob, &old).unwrap();
    touch(&old_blob, "2 hours ago");
    let old_tmp = d.join("tmp/.stage-crashed");
    std::fs::write(&old_tmp, b"never renamed").unwrap();
    touch(&old_tmp, "2 hours ago");
    // A placeholder of a crashed build, and one a live build holds.
    let dead_lock = d.join(format!("locks/{}.lock", "1".repeat(64)));
    std::fs::write(&dead_lock, "pid 1 since then").unwrap();
    touch(&dead_lock, "2 hours ago");
    let live_lock = d.join(format!("locks/{}.lock", "2".repeat(64)));
    let held = std::fs::File::create(&live_lock).unwrap();
    held.lock().unwrap();
    touch(&live_lock, "2 hours ago");

    let r = p.run(&["gc", "--json"]);
    r.ok();
    let o = &r.json()["orphans"];
    assert_eq!(o["blobs"], 1, "{o}");
    assert_eq!(o["tmp_files"], 1, "{o}");
    assert_eq!(o["dead_locks"], 1, "{o}");
    assert_eq!(o["kept_young"], 2, "{o}");
    assert!(fresh_blob.exists(), "a running build's blob must stay");
    assert!(
        fresh_tmp.exists(),
        "a running build's staging file must stay"
    );
    assert!(live_lock.exists(), "a held lock must stay");
    assert!(!old_blob.exists());
    assert!(!old_tmp.exists());
    assert!(!dead_lock.exists());
    drop(held);
    // Every entry is intact.
    assert_eq!(p.entries(), 3);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    assert_eq!(p.build(&[]).json()["hits"], 3);

    // With a zero grace period the fresh orphans go too.
    let r = p.run(&["gc", "--grace", "0s", "--json"]);
    r.ok();
    assert!(!fresh_blob.exists());
    assert!(!fresh_tmp.exists());
}

fn blob_path(depot: &Path, content: &[u8]) -> PathBuf {
    let hex = relocache::digest::Digest::of(content).to_hex();
    depot.join("objects-v1").join(&hex[..2]).join(hex)
}

#[test]
fn max_age_drops_entries_unused_for_that_long() {
    let p = chain();
    let r = p.build(&[]);
    r.ok();
    let key = key_of(&r, "a");
    // No recorded use (as in a depot from before access tracking), and an
    // entry created long ago: its creation time is its last use.
    for f in files_under(&p.depot.join("usage")) {
        std::fs::remove_file(f).unwrap();
    }
    let entry = p
        .depot
        .join("entries-v2")
        .join(&key[..2])
        .join(format!("{key}.toml"));
    let text = std::fs::read_to_string(&entry).unwrap();
    let created = text.lines().find(|l| l.starts_with("created")).unwrap();
    // Its checksum recomputed: an entry that fails it is never read.
    let body = text
        .replace(created, "created = \"2020-01-01T00:00:00Z\"")
        .lines()
        .filter(|l| !l.starts_with("checksum = "))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let sum = blake3::hash(body.as_bytes()).to_hex();
    std::fs::write(&entry, format!("{body}checksum = \"{sum}\"\n")).unwrap();

    let dry = p.run(&["gc", "--max-age", "30d", "--dry-run", "--json"]);
    dry.ok();
    assert_eq!(removed(&dry), ["a"]);
    assert_eq!(dry.json()["removed"][0]["why"], "max-age");
    assert_eq!(p.entries(), 3);
    let r = p.run(&["gc", "--max-age", "30d", "--json"]);
    r.ok();
    assert_eq!(removed(&r), ["a"]);
    assert_eq!(p.entries(), 2);
    let b = p.build(&[]);
    assert_eq!(b.outcome("a"), "built");
    assert_eq!(b.outcome("c"), "hit");
}

#[test]
fn clear_by_target_and_by_key() {
    let p = chain();
    p.build(&[]).ok();
    let r = p.run(&["clear", "a", "--json"]);
    r.ok();
    let j = r.json();
    assert_eq!(j["removed"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["removed"][0]["target"], "a");
    assert_eq!(j["records_removed"], 1);
    assert!(j["blobs_removed"].as_u64().unwrap() >= 1);
    assert_eq!(p.entries(), 2);
    assert!(!p.depot.join("projects-v2/proj/a.toml").exists());
    assert!(p.depot.join("projects-v2/proj/b.toml").exists());
    let b = p.build(&[]);
    assert_eq!(b.outcome("a"), "built");
    assert_eq!(b.outcome("b"), "hit", "b's blobs were not touched");
    assert_eq!(b.outcome("c"), "hit");

    let key = key_of(&b, "b");
    let wrong = p.run(&["clear", "c", "--key", &key[..10]]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    wrong.assert_stderr_has(&["belongs to `proj/b`"]);
    assert_eq!(p.entries(), 3);
    let r = p.run(&["clear", "b", "--key", &key[..10]]);
    r.ok();
    assert!(
        r.stderr.lines().last().unwrap().contains("removed 1 entry"),
        "{}",
        r.stderr
    );
    assert_eq!(p.entries(), 2);
    assert_eq!(p.build(&[]).outcome("b"), "built");
    assert_eq!(p.runs("b"), 2);

    let missing = p.run(&["clear", "--key", "abcdef"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    missing.assert_stderr_has(&["no entry has a key"]);
    let unknown = p.run(&["clear", "nosuch"]);
    assert_eq!(unknown.code, 2);
    unknown.assert_stderr_has(&["unknown target `nosuch`"]);
    let nothing = p.run(&["clear"]);
    assert_eq!(nothing.code, 2);

    p.run(&["clear", "--project"]).ok();
    assert_eq!(p.entries(), 0);
    assert!(!p.depot.join("projects-v2/proj").exists());
}

#[test]
fn clear_keeps_blobs_that_other_entries_share() {
    let p = Project::new(
        r#"
[target.one]
run = "echo one >> ../runs.log && cp same.txt one.out"
inputs = ["same.txt"]
outputs = ["one.out"]

[target.two]
run = "echo two >> ../runs.log && cp same.txt two.out"
inputs = ["same.txt"]
outputs = ["two.out"]
"#,
        &[("same.txt", "shared bytes\n")],
    );
    p.build(&[]).ok();
    p.run(&["clear", "one"]).ok();
    std::fs::remove_file(p.path("two.out")).unwrap();
    let r = p.build(&["two"]);
    assert_eq!(r.outcome("two"), "hit");
    assert_eq!(p.read("two.out"), "shared bytes\n");
}

#[test]
fn clear_all_empties_the_depot_without_asking_when_not_a_terminal() {
    let p = chain();
    p.build(&[]).ok();
    let r = p.run(&["clear", "--all"]);
    r.ok();
    assert_eq!(p.entries(), 0);
    assert!(files_under(&p.depot.join("objects-v1")).is_empty());
    assert!(files_under(&p.depot.join("projects-v2")).is_empty());
    assert!(p.depot.join("DEPOT.toml").exists());
    assert_eq!(p.build(&[]).json()["built"], 3);
}

#[test]
fn stats_counts_are_exact_after_a_known_sequence_of_builds() {
    let manifest = format!(
        "{CHAIN}\n[target.f]\nrun = \"echo f >> ../runs.log && sh f.sh\"\ninputs = [\"f.sh\"]\noutputs = [\"f.out\"]\n"
    );
    let p = Project::new(
        &manifest,
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
            ("f.sh", "exit 3\n"),
        ],
    );
    let mut saved = 0;
    let mut saved_of = |r: &Run| {
        saved += r.json()["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["saved_ms"].as_u64())
            .sum::<u64>();
    };
    // 1. a, b, c built; f fails: 4 misses, 3 builds, 1 failure.
    let r = p.build(&[]);
    assert_eq!(r.code, 1);
    // 2. three hits; c's output was deleted, so 6 bytes are restored.
    std::fs::remove_file(p.path("out-c.txt")).unwrap();
    let r = p.build(&["a", "b", "c"]);
    r.ok();
    assert_eq!(r.json()["hits"], 3);
    saved_of(&r);
    // 3. f fixed: a miss and a build storing 3 bytes.
    p.write("f.sh", "echo ok > f.out\n");
    p.build(&["f"]).ok();
    // 4. forced: a build, not a miss.
    p.build(&["f", "--force"]).ok();

    let s = stats(&p);
    assert_eq!(s["hits"], 3, "{s}");
    assert_eq!(s["misses"], 5, "{s}");
    assert_eq!(s["builds"], 5, "{s}");
    assert_eq!(s["failures"], 1, "{s}");
    assert_eq!(s["bytes_restored"], 6, "{s}");
    // out/a.txt 6 + out/b.txt 11 + out-c.txt 6 + f.out 3 + 3.
    assert_eq!(s["bytes_stored"], 29, "{s}");
    assert_eq!(s["saved_ms"], saved, "{s}");
    assert_eq!(s["entries"], 4, "{s}");
    assert_eq!(s["hit_rate"], 3.0 / 8.0);
    assert_eq!(s["logical_bytes"], 6 + 11 + 6 + 3);
    assert!(s["blobs"].as_u64().unwrap() >= 4);
    assert!(s["dedup_ratio"].as_f64().unwrap() > 0.0);
    let f = target_stats(&s, "f");
    assert_eq!(
        (&f["misses"], &f["builds"], &f["failures"], &f["entries"]),
        (&2.into(), &2.into(), &1.into(), &1.into()),
        "{f}"
    );
    assert_eq!(target_stats(&s, "c")["bytes_restored"], 6);

    let text = p.run(&["stats", "-v"]);
    text.ok();
    text.assert_stdout_has(&["3 of 8 lookups (37.5%)", "proj/f"]);

    // Reset: counters restart, entries stay.
    let r = p.run(&["stats", "--reset", "--json"]);
    r.ok();
    assert_eq!(r.json()["hits"], 0);
    assert_eq!(r.json()["entries"], 4);
    assert!(r.json()["since"].is_string());
    p.build(&[]).ok();
    let s = stats(&p);
    assert_eq!(
        (&s["hits"], &s["misses"], &s["builds"]),
        (&4.into(), &0.into(), &0.into())
    );
}

#[test]
fn access_logs_written_by_processes_at_once_are_merged_without_losing_any() {
    let p = chain();
    p.build(&[]).ok();
    // Builds and compacting gcs, all at once on one depot.
    let mut children = Vec::new();
    for i in 0..12 {
        let args: &[&str] = if i % 2 == 1 {
            &["gc", "--json"]
        } else {
            &["build", "--json"]
        };
        let mut c = p.cmd(args);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        children.push(c.spawn().unwrap());
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let s = stats(&p);
    assert_eq!(s["hits"], 6 * 3, "{s}");
    assert_eq!(s["builds"], 3, "{s}");
    assert_eq!(p.total_runs(), 3);
    // Merged once more, nothing changes.
    p.run(&["gc"]).ok();
    let again = stats(&p);
    assert_eq!(again["hits"], 18);
    assert_eq!(again["pending_logs"], 0);
}

#[test]
fn a_no_op_build_within_the_interval_records_counts_but_no_uses() {
    let p = chain();
    p.build(&[]).ok();
    let before: Vec<PathBuf> = files_under(&p.depot.join("usage"));
    p.build(&[]).ok();
    let new: Vec<PathBuf> = files_under(&p.depot.join("usage"))
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert_eq!(new.len(), 1, "one log per process: {new:?}");
    let text = std::fs::read_to_string(&new[0]).unwrap();
    assert!(!text.contains("\"use\""), "{text}");
    assert_eq!(text.matches("\"count\"").count(), 3, "{text}");
    for f in &before {
        assert!(f.exists(), "earlier logs are never rewritten");
    }
}

#[test]
fn force_rebuilds_and_overwrites_the_entry() {
    let p = Project::new(
        r#"
[target.n]
run = "echo n >> ../runs.log && wc -l < ../runs.log | tr -d ' ' > n.txt"
inputs = ["seed.txt"]
outputs = ["n.txt"]

[target.m]
run = "echo m >> ../runs.log && cp seed.txt m.txt"
inputs = ["seed.txt"]
outputs = ["m.txt"]
"#,
        &[("seed.txt", "seed\n")],
    );
    p.build(&[]).ok();
    let first = p.read("n.txt");
    assert_eq!(p.build(&[]).json()["hits"], 2);
    let r = p.build(&["--force", "n"]);
    r.ok();
    assert_eq!(r.outcome("n"), "built");
    assert_eq!(r.json()["targets"][0]["stored"], true);
    assert_eq!(p.runs("n"), 2);
    assert_eq!(p.runs("m"), 1, "only the named target is forced");
    let second = p.read("n.txt");
    assert_ne!(first, second);
    assert_eq!(p.entries(), 2, "the entry was overwritten, not added");
    std::fs::remove_file(p.path("n.txt")).unwrap();
    let r = p.build(&[]);
    assert_eq!(r.outcome("n"), "hit");
    assert_eq!(
        p.read("n.txt"),
        second,
        "the forced build's output is what restores"
    );
}

#[test]
fn build_runs_gc_when_the_depot_exceeds_its_configured_max_size() {
    let p = four();
    build_in_order(&p, &["w"]);
    set_depot_toml(&p.depot, "max_size = \"150K\"");
    let r = p.build(&["x"]);
    assert!(!r.stderr.contains("gc:"), "under the bound: {}", r.stderr);
    let r = p.build(&["y"]);
    r.ok();
    r.assert_stderr_has(&["gc: the depot exceeded its max_size"]);
    assert!(walkdir_size(&p.depot) <= 150 * 1024);
    assert_eq!(p.entries(), 1);
    std::fs::remove_file(p.path("y.bin")).unwrap();
    assert_eq!(
        p.build(&["y"]).outcome("y"),
        "hit",
        "the newest entry is kept"
    );
    // gc without --max-size uses DEPOT.toml's.
    let g = p.run(&["gc", "--json"]);
    g.ok();
    assert_eq!(g.json()["max_size"], 150 * 1024);
}

#[test]
fn maintenance_commands_explain_themselves_and_reject_bad_units() {
    for cmd in ["gc", "clear", "stats"] {
        let r = output({
            let mut c = bin();
            c.args([cmd, "--help"]);
            c
        });
        r.ok();
        assert!(r.stdout.contains("Examples:"), "{cmd}: {}", r.stdout);
    }
    let p = chain();
    p.build(&[]).ok();
    let r = p.run(&["gc", "--max-size", "lots"]);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["not a valid size"]);
    set_depot_toml(&p.depot, "max_size = \"huge\"");
    let r = p.run(&["gc"]);
    assert_eq!(r.code, 1);
    r.assert_stderr_has(&["DEPOT.toml", "max_size"]);
    // On a depot that does not exist yet: nothing to do, nothing created.
    let empty = p.tmp.path().join("no-depot");
    let mut c = bin();
    c.arg("--depot").arg(&empty).arg("stats");
    output(c).ok();
    assert!(!empty.exists());
}

#[test]
fn an_entry_published_during_a_gc_keeps_the_blobs_it_reuses() {
    // Each round salts the keys: new entries whose outputs are the bytes of
    // the entries a concurrent gc is evicting, so their blobs are reused.
    let targets: String = (1..=20)
        .map(|i| {
            format!(
                "[target.t{i}]\nrun = \"mkdir -p out && seq 1 {} > out/t{i}.txt\"\noutputs = [\"out/t{i}.txt\"]\n",
                i * 2000
            )
        })
        .collect();
    let manifest =
        |salt: usize| format!("[project]\nname = \"gcrace\"\nsalt = \"{salt}\"\n{targets}");
    let p = Project::new(&manifest(0), &[]);
    p.build(&[]).ok();
    for round in 1..=20 {
        p.write("relocache.toml", &manifest(round));
        std::fs::remove_dir_all(p.path("out")).unwrap();
        let mut gc = bin();
        gc.arg("--depot")
            .arg(&p.depot)
            .args(["gc", "--max-size", "1", "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut gc = gc.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round as u64 % 3 * 10));
        p.build(&["-j", "2"]).ok();
        gc.wait().unwrap();
        let v = p.run(&["verify"]);
        assert_eq!(v.code, 0, "round {round}:\n{}{}", v.stdout, v.stderr);
    }
    check_depot_invariants(&p.depot);
}

#[test]
fn a_damaged_usage_log_costs_its_line_not_the_depot() {
    let p = four();
    p.build(&[]).ok();
    let usage = p.depot.join("usage");
    let log = std::fs::read_dir(&usage)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.file_name().unwrap().to_string_lossy().starts_with("log-"))
        .expect("a usage log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"\xff\xfe torn write\n");
    std::fs::write(&log, bytes).unwrap();
    let s = p.run(&["stats", "--json"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.json()["builds"], 4, "{}", s.stdout);
    let g = p.run(&["gc", "--max-size", "1K"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    let b = p.build(&[]);
    b.ok();
    b.assert_stderr_lacks(&["usage"]);
}

#[test]
fn a_broken_manifest_does_not_block_the_maintenance_of_a_named_depot() {
    let p = four();
    p.build(&[]).ok();
    let ws = p.tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::write(ws.join("relocache.toml"), "[project\n").unwrap();
    let depot = p.depot.to_str().unwrap();
    for args in [
        vec!["--depot", depot, "stats"],
        vec!["--depot", depot, "gc", "--dry-run"],
        vec!["--depot", depot, "verify"],
    ] {
        let mut c = bin();
        c.current_dir(ws.join("sub")).args(&args);
        let r = output(c);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r.assert_stderr_has(&["ignoring the project", "relocache.toml:1"]);
    }
    // Without a named depot the manifest might name it: an error, exit 2.
    let mut c = without_relocache_env(bin());
    c.current_dir(ws.join("sub")).arg("stats");
    let r = output(c);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// The files of `objects-v1/packs/`, by name.
fn pack_files(depot: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(depot.join("objects-v1/packs"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Loose blob files (`objects-v1/ab/<hex>`).
fn loose_blobs(depot: &Path) -> usize {
    files_under(&depot.join("objects-v1"))
        .iter()
        .filter(|f| !f.starts_with(depot.join("objects-v1/packs")))
        .count()
}

fn verify_integrity(p: &Project) {
    let v = p.run(&["verify", "--integrity"]);
    assert_eq!(v.code, 0, "verify --integrity:\n{}{}", v.stdout, v.stderr);
}

/// Removes the outputs of `four()`, builds, and checks every target hit
/// with its source's bytes.
fn restore_four(p: &Project, targets: &[&str]) {
    for t in targets {
        let _ = std::fs::remove_file(p.path(&format!("{t}.bin")));
    }
    let r = p.build(targets);
    r.ok();
    for t in targets {
        assert_eq!(r.outcome(t), "hit", "{}", r.render());
        assert!(
            std::fs::read(p.path(&format!("{t}.bin"))).unwrap()
                == std::fs::read(p.path(&format!("{t}.src"))).unwrap(),
            "{t}.bin restored with other bytes"
        );
    }
}

#[test]
fn gc_repack_moves_every_loose_blob_into_one_pack_and_everything_still_restores() {
    let p = four();
    p.build(&[]).ok();
    let loose_before = loose_blobs(&p.depot);
    assert!(loose_before >= 4, "{loose_before}");
    let r = p.run(&["gc", "--repack", "--json"]);
    r.ok();
    let packs = &r.json()["packs"];
    assert_eq!(packs["loose_packed"], loose_before as u64, "{packs}");
    assert_eq!(packs["blobs_written"], loose_before as u64, "{packs}");
    assert!(packs["new_pack"].is_string(), "{packs}");
    assert_eq!(loose_blobs(&p.depot), 0, "no loose blob left");
    let files = pack_files(&p.depot);
    assert_eq!(files.len(), 2, "one pack and its index: {files:?}");
    check_depot_invariants(&p.depot);
    verify_integrity(&p);
    restore_four(&p, &["w", "x", "y", "z"]);
    assert_eq!(p.total_runs(), 4, "nothing rebuilt");

    // The text summary says what moved; a second repack has nothing to do.
    let again = p.run(&["gc", "--repack"]);
    again.ok();
    assert_eq!(pack_files(&p.depot), files, "an up-to-date pack is kept");
    let text = p.run(&["gc", "--repack", "--dry-run"]);
    text.ok();
    text.assert_stderr_lacks(&["packs:"]);
}

#[test]
fn gc_repack_text_names_the_blobs_packed() {
    let p = four();
    p.build(&[]).ok();
    let dry = p.run(&["gc", "--repack", "--dry-run"]);
    dry.ok();
    dry.assert_stderr_has(&["loose blobs packed", "would write"]);
    assert_eq!(pack_files(&p.depot).len(), 0, "a dry run writes no pack");
    let r = p.run(&["gc", "--repack"]);
    r.ok();
    r.assert_stderr_has(&["loose blobs packed", "wrote", "into pack-"]);
}

#[test]
fn a_pack_none_of_whose_blobs_is_referenced_is_deleted() {
    let p = four();
    p.build(&[]).ok();
    p.run(&["gc", "--repack"]).ok();
    assert_eq!(pack_files(&p.depot).len(), 2);
    for t in ["w", "x", "y", "z"] {
        p.run(&["clear", t]).ok();
    }
    // Within the grace period the pack stays: an unpack may be about to
    // publish the entries that need it.
    let young = p.run(&["gc", "--json"]);
    young.ok();
    assert_eq!(young.json()["packs"]["kept_young"], 1);
    assert_eq!(pack_files(&p.depot).len(), 2);
    let r = p.run(&["gc", "--grace", "0s", "--json"]);
    r.ok();
    let j = r.json();
    assert_eq!(j["packs"]["deleted"], 1, "{j}");
    assert!(
        pack_files(&p.depot).is_empty(),
        "{:?}",
        pack_files(&p.depot)
    );
    assert!(j["bytes_freed"].as_u64().unwrap() >= 4 * 64 * 1024, "{j}");
    check_depot_invariants(&p.depot);
    verify_integrity(&p);
}

#[test]
fn a_pack_less_than_half_live_is_rewritten_and_its_live_blobs_still_restore() {
    let p = four();
    p.build(&[]).ok();
    p.run(&["gc", "--repack"]).ok();
    let first = pack_files(&p.depot);
    // Three quarters live: kept as it is.
    p.run(&["clear", "w"]).ok();
    let r = p.run(&["gc", "--grace", "0s", "--json"]);
    r.ok();
    assert_eq!(r.json()["packs"]["repacked"], 0, "{}", r.stdout);
    assert_eq!(pack_files(&p.depot), first);
    // One quarter live: its live blobs go into a new pack, the old one goes.
    p.run(&["clear", "x"]).ok();
    p.run(&["clear", "y"]).ok();
    let r = p.run(&["gc", "--grace", "0s", "--json"]);
    r.ok();
    let j = r.json();
    assert_eq!(j["packs"]["repacked"], 1, "{j}");
    let second = pack_files(&p.depot);
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second.iter().all(|f| !first.contains(f)),
        "the old pack went"
    );
    let pack = second.iter().find(|f| f.ends_with(".pack")).unwrap();
    let len = std::fs::metadata(p.depot.join("objects-v1/packs").join(pack))
        .unwrap()
        .len();
    assert!(
        len < 2 * 64 * 1024,
        "only z's blobs are left in the new pack ({len} bytes)"
    );
    check_depot_invariants(&p.depot);
    verify_integrity(&p);
    restore_four(&p, &["z"]);
    assert_eq!(p.runs("z"), 1, "z was not rebuilt");
}

#[test]
fn lru_eviction_counts_packed_blobs_and_frees_their_bytes() {
    let p = four();
    build_in_order(&p, &["w", "x", "y", "z"]);
    p.run(&["gc", "--repack"]).ok();
    let before = walkdir_size(&p.depot);
    // Room for about two of the four 64 KiB entries: the two least
    // recently used go, and their packed bytes really leave the disk.
    let r = p.run(&["gc", "--max-size", "200K", "--grace", "0s", "--json"]);
    r.ok();
    assert_eq!(removed(&r), ["w", "x"], "{}", r.stdout);
    let j = r.json();
    assert_eq!(j["packs"]["repacked"], 1, "{j}");
    let after = walkdir_size(&p.depot);
    assert!(after <= 160 * 1024, "{before} -> {after}");
    assert_eq!(j["size_after"].as_u64().unwrap(), after, "{j}");
    check_depot_invariants(&p.depot);
    restore_four(&p, &["y", "z"]);
}

#[test]
fn gc_repack_beside_running_builds_never_loses_a_blob_an_entry_needs() {
    // Each round salts the keys: new entries whose outputs are the bytes the
    // previous round stored (loose, then packed by the gc racing the build).
    let targets: String = (1..=12)
        .map(|i| {
            format!(
                "[target.t{i}]\nrun = \"mkdir -p out && seq 1 {} > out/t{i}.txt\"\noutputs = [\"out/t{i}.txt\"]\n",
                i * 3000
            )
        })
        .collect();
    let manifest =
        |salt: usize| format!("[project]\nname = \"gcrace\"\nsalt = \"{salt}\"\n{targets}");
    let p = Project::new(&manifest(0), &[]);
    p.build(&[]).ok();
    for round in 1..=12 {
        p.write("relocache.toml", &manifest(round));
        std::fs::remove_dir_all(p.path("out")).unwrap();
        let mut gc = bin();
        gc.arg("--depot")
            .arg(&p.depot)
            .args(["gc", "--repack", "-q"]);
        // Every other round also evicts, so packs are deleted and rewritten
        // while entries reusing their blobs are published.
        if round % 2 == 0 {
            gc.args(["--max-size", "1", "--grace", "0s"]);
        }
        gc.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut gc = gc.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round as u64 % 3 * 10));
        let b = p.build(&["-j", "2"]);
        assert_eq!(b.code, 0, "round {round}: {}", b.render());
        gc.wait().unwrap();
        check_depot_invariants(&p.depot);
        let v = p.run(&["verify", "--integrity"]);
        assert_eq!(v.code, 0, "round {round}:\n{}{}", v.stdout, v.stderr);
    }
    // Whatever survived restores with the right bytes.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.build(&[]).ok();
    for i in 1..=12 {
        let want: String = (1..=i * 3000).map(|n| format!("{n}\n")).collect();
        assert!(p.read(&format!("out/t{i}.txt")) == want, "t{i}");
    }
}
