//! Never corrupt, never lie: concurrent processes, kill -9 at any instant,
//! bit rot, inputs edited during a build, unwritable depots.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_build(root: &Path, depot: &Path) -> Child {
    let mut c = bin();
    c.arg("-C")
        .arg(root)
        .arg("--depot")
        .arg(depot)
        .args(["build", "--json"]);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn kill_group(child: &mut Child) {
    let pgid = format!("-{}", child.id());
    Command::new("kill")
        .args(["-9", "--", &pgid])
        .status()
        .unwrap();
    let _ = child.wait();
}

const SLOW: &str = r#"
[target.gen]
run = "echo gen >> ../runs.log; sleep 0.3; tr a-z A-Z < in.txt > gen.out"
inputs = ["in.txt"]
outputs = ["gen.out"]
[target.left]
run = "echo left >> ../runs.log; sleep 0.3; cat gen.out gen.out > left.out"
deps = ["gen"]
outputs = ["left.out"]
[target.right]
run = "echo right >> ../runs.log; sleep 0.3; cat gen.out in.txt > right.out"
deps = ["gen"]
outputs = ["right.out"]
[target.top]
run = "echo top >> ../runs.log; cat left.out right.out > top.out"
deps = ["left", "right"]
outputs = ["top.out"]
"#;

#[test]
fn eight_processes_on_one_depot_build_each_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let depot = tmp.path().join("depot");
    // Eight checkouts of one project side by side (like eight CI jobs),
    // sharing ../runs.log and one depot.
    let roots: Vec<PathBuf> = (0..8)
        .map(|i| tmp.path().join(format!("checkout{i}")))
        .collect();
    for r in &roots {
        std::fs::create_dir_all(r).unwrap();
        std::fs::write(r.join("relocache.toml"), SLOW).unwrap();
        std::fs::write(r.join("in.txt"), "shared input\n").unwrap();
    }
    let children: Vec<Child> = roots.iter().map(|r| spawn_build(r, &depot)).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(tmp.path().join("runs.log")).unwrap();
    for t in ["gen", "left", "right", "top"] {
        assert_eq!(
            log.lines().filter(|l| *l == t).count(),
            1,
            "`{t}` must run exactly once:\n{log}"
        );
    }
    let first = std::fs::read(roots[0].join("top.out")).unwrap();
    for r in &roots[1..] {
        assert_eq!(std::fs::read(r.join("top.out")).unwrap(), first);
    }
    check_depot_invariants(&depot);
}

/// The project of the mixed kill test: 400 small outputs (slow to pack one
/// by one), a large one and a target reading both, all salted, so each salt
/// stores new blobs; and an unsalted copy of the large input.
fn kill_manifest(salt: &str) -> String {
    format!(
        r#"
[project]
salt = "{salt}"
[target.many]
run = "mkdir -p many && for i in $(seq 1 400); do echo $i-{salt} > many/f$i; done"
outputs = ["many"]
[target.big]
run = "cat big.bin big.bin > big.out && echo {salt} >> big.out"
inputs = ["big.bin"]
outputs = ["big.out"]
[target.same]
run = "cp big.bin same.out"
inputs = ["big.bin"]
outputs = ["same.out"]
[target.top]
run = "cat big.out many/f400 > top.out"
deps = ["big", "many"]
outputs = ["top.out"]
"#
    )
}

fn clean_kill_outputs(root: &Path) {
    for f in ["many", "big.out", "same.out", "top.out"] {
        let p = root.join(f);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
}

/// Every output of `kill_manifest(salt)` holds what a clean build writes.
#[track_caller]
fn assert_kill_outputs(root: &Path, salt: &str, big: &[u8], context: &str) {
    let mut want = big.repeat(2);
    want.extend_from_slice(format!("{salt}\n").as_bytes());
    assert!(
        std::fs::read(root.join("big.out")).unwrap() == want,
        "{context}: big.out"
    );
    assert!(
        std::fs::read(root.join("same.out")).unwrap() == big,
        "{context}: same.out"
    );
    let last = format!("400-{salt}\n");
    assert_eq!(
        std::fs::read_to_string(root.join("many/f400")).unwrap(),
        last,
        "{context}"
    );
    want.extend_from_slice(last.as_bytes());
    assert!(
        std::fs::read(root.join("top.out")).unwrap() == want,
        "{context}: top.out"
    );
}

/// What the mixed kill test interrupts, in turn.
#[derive(Debug, Clone, Copy)]
enum Killed {
    /// A build: runs and stores (a new salt), or restores (the same salt again).
    Build,
    /// `gc --repack`: packing loose blobs, rewriting and deleting packs.
    Repack,
    /// `unpack` of an archive whose entries and blobs the depot lost.
    Unpack,
    /// A size-bounded `gc`: evicting entries, deleting blobs.
    Gc,
}

impl Killed {
    fn args(self, archive: &Path) -> Vec<String> {
        let v: &[&str] = match self {
            Killed::Build => &["build"],
            Killed::Repack => &["gc", "--repack", "--grace", "0s"],
            Killed::Unpack => &["unpack", archive.to_str().unwrap()],
            Killed::Gc => &["gc", "--max-size", "8M", "--grace", "0s"],
        };
        v.iter().map(|a| a.to_string()).collect()
    }
}

/// Runs relocache to its end, ignoring the outcome (setup between kills).
fn run_quietly(root: &Path, depot: &Path, args: &[&str]) {
    let mut c = bin();
    c.arg("-C").arg(root).arg("--depot").arg(depot).args(args);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c.status().unwrap();
}

#[test]
fn kill_dash_nine_in_build_unpack_gc_and_repack_leaves_a_valid_depot() {
    const ROUNDS: u64 = 50;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("proj");
    let depot = tmp.path().join("depot");
    std::fs::create_dir_all(&root).unwrap();
    let big = noise(4 << 20, 7);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let started = Instant::now();
    // The archive unpack rounds read: one complete build, another depot.
    let archive = tmp.path().join("ci.tar.zst");
    let archive_depot = tmp.path().join("archive-depot");
    std::fs::write(root.join("relocache.toml"), kill_manifest("archived")).unwrap();
    run_quietly(&root, &archive_depot, &["build"]);
    run_quietly(&root, &archive_depot, &["pack", archive.to_str().unwrap()]);
    assert!(archive.is_file(), "the archive was made");
    // How long each operation takes here uninterrupted, so kills spread over
    // it (shortened when a kill comes too late).
    let mut whole = std::collections::HashMap::new();
    for op in [Killed::Build, Killed::Repack, Killed::Unpack, Killed::Gc] {
        clean_kill_outputs(&root);
        std::fs::write(root.join("relocache.toml"), kill_manifest("probe")).unwrap();
        let t = Instant::now();
        let args = op.args(&archive);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_quietly(&root, &depot, &args);
        whole.insert(format!("{op:?}"), t.elapsed().as_millis() as u64 + 20);
    }
    let ops = [Killed::Build, Killed::Repack, Killed::Unpack, Killed::Gc];
    eprintln!("uninterrupted, in ms: {whole:?}");
    let mut salt = String::new();
    // Kills that found the process still running, by operation.
    let mut live = std::collections::HashMap::new();
    for round in 0..ROUNDS {
        let op = ops[round as usize % ops.len()];
        match op {
            // A new salt every other build round: the one between restores.
            Killed::Build => {
                salt = format!("s{}", round / 8);
                std::fs::write(root.join("relocache.toml"), kill_manifest(&salt)).unwrap();
                clean_kill_outputs(&root);
            }
            // The depot loses everything, so the unpack has all to write.
            Killed::Unpack => {
                run_quietly(&root, &depot, &["gc", "--max-age", "0s", "--grace", "0s"])
            }
            Killed::Repack | Killed::Gc => {}
        }
        let args = op.args(&archive);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn_in_group(&root, &depot, &args);
        let span = whole.get_mut(&format!("{op:?}")).unwrap();
        let delay = noise(1, round + 11)[0] as u64 * *span / 255;
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            *live.entry(format!("{op:?}")).or_insert(0) += 1;
        } else {
            // It ran faster than the probe: aim the next kills earlier.
            *span = (*span * 2 / 3).max(10);
        }
        kill_group(&mut child);
        // Shown when the check below fails.
        eprintln!("round {round}: {op:?} killed after {delay} ms");
        check_depot_invariants(&depot);
    }
    eprintln!("live kills by operation: {live:?}");
    // Most kills interrupt the operation (a few land after its end).
    for op in ops {
        let n = live.get(&format!("{op:?}")).copied().unwrap_or(0);
        assert!(
            n >= 6,
            "only {n} kills landed in a running {op:?}: {live:?}"
        );
    }
    // A gc run to its end cleans up after the killed ones.
    run_quietly(&root, &depot, &["gc", "--repack", "--grace", "0s"]);
    check_depot_invariants(&depot);
    // The last salt builds and then restores, byte for byte.
    clean_kill_outputs(&root);
    build_in(&root, &depot).ok();
    assert_kill_outputs(&root, &salt, &big, "after the last build");
    clean_kill_outputs(&root);
    let r = build_in(&root, &depot);
    r.ok();
    assert_eq!(r.json()["hits"], 4, "{}", r.render());
    assert_kill_outputs(&root, &salt, &big, "restored after the kills");
    // An unpack after the kills completes, and its entries restore.
    run_quietly(&root, &depot, &["unpack", archive.to_str().unwrap()]);
    std::fs::write(root.join("relocache.toml"), kill_manifest("archived")).unwrap();
    clean_kill_outputs(&root);
    let r = build_in(&root, &depot);
    r.ok();
    assert_eq!(r.json()["hits"], 4, "{}", r.render());
    assert_kill_outputs(
        &root,
        "archived",
        &big,
        "restored from the unpacked archive",
    );
    check_depot_invariants(&depot);
    let v = output({
        let mut c = bin();
        c.arg("--depot")
            .arg(&depot)
            .args(["verify", "--relocatable", "--integrity"]);
        c
    });
    assert_eq!(
        v.code, 0,
        "verify --integrity after the kills:\n{}{}",
        v.stdout, v.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(180));
}

/// `relocache -C ROOT --depot DEPOT build --json`.
fn build_in(root: &Path, depot: &Path) -> Run {
    let mut c = bin();
    c.arg("-C")
        .arg(root)
        .arg("--depot")
        .arg(depot)
        .args(["build", "--json"]);
    output(c)
}

/// Runs relocache on `depot` in a process group of its own.
fn spawn_in_group(root: &Path, depot: &Path, args: &[&str]) -> Child {
    let mut c = bin();
    c.arg("-C").arg(root).arg("--depot").arg(depot).args(args);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().unwrap()
}

#[test]
fn kill_dash_nine_during_gc_repack_leaves_a_depot_that_verifies_and_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("proj");
    let depot = tmp.path().join("depot");
    std::fs::create_dir_all(&root).unwrap();
    // Many small blobs (slow to pack one by one) and a few large ones.
    std::fs::write(root.join("big.bin"), noise(3 << 20, 5)).unwrap();
    let manifest = |salt: u64| {
        format!(
            r#"
[project]
salt = "{salt}"
[target.many]
run = "mkdir -p many && for i in $(seq 1 600); do echo $i-{salt} > many/f$i; done"
outputs = ["many"]
[target.big]
run = "cat big.bin big.bin > big.out && echo {salt} >> big.out"
inputs = ["big.bin"]
outputs = ["big.out"]
[target.same]
run = "cp big.bin same.out"
inputs = ["big.bin"]
outputs = ["same.out"]
"#
        )
    };
    let clean = |root: &Path| {
        for f in ["many", "big.out", "same.out"] {
            let p = root.join(f);
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::remove_file(&p);
        }
    };
    let started = Instant::now();
    for round in 0..10u64 {
        // New entries each round (loose blobs to pack), old ones evicted
        // every other round (dead and sparse packs to delete and rewrite).
        std::fs::write(root.join("relocache.toml"), manifest(round)).unwrap();
        clean(&root);
        if round % 2 == 1 {
            // Every entry goes; the packs stay (younger than the grace)
            // for the killed gc to delete.
            output({
                let mut c = bin();
                c.arg("--depot").arg(&depot).args(["gc", "--max-age", "0s"]);
                c
            })
            .ok();
        }
        let b = output({
            let mut c = bin();
            c.arg("-C")
                .arg(&root)
                .arg("--depot")
                .arg(&depot)
                .args(["build"]);
            c
        });
        b.ok();
        let args = ["gc", "--repack", "--grace", "0s"];
        let mut child = spawn_in_group(&root, &depot, &args);
        let delay = (noise(1, round + 3)[0] as u64 * 7) % 1200;
        std::thread::sleep(Duration::from_millis(delay));
        kill_group(&mut child);
        check_depot_invariants(&depot);
        let v = output({
            let mut c = bin();
            c.arg("--depot").arg(&depot).args(["verify", "--integrity"]);
            c
        });
        assert_eq!(
            v.code, 0,
            "round {round}, killed after {delay} ms:\n{}{}",
            v.stdout, v.stderr
        );
        // What was stored still restores, byte for byte.
        clean(&root);
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
        assert_eq!(r.json()["hits"], 3, "round {round}: {}", r.render());
        let big = std::fs::read(root.join("big.bin")).unwrap();
        let mut want = big.repeat(2);
        want.extend_from_slice(format!("{round}\n").as_bytes());
        assert!(std::fs::read(root.join("big.out")).unwrap() == want);
        assert!(std::fs::read(root.join("same.out")).unwrap() == big);
        assert_eq!(
            std::fs::read_to_string(root.join("many/f600")).unwrap(),
            format!("600-{round}\n")
        );
    }
    // A gc that runs to its end cleans up after the killed ones.
    let r = output({
        let mut c = bin();
        c.arg("--depot")
            .arg(&depot)
            .args(["gc", "--repack", "--grace", "0s", "--json"]);
        c
    });
    r.ok();
    check_depot_invariants(&depot);
    assert!(
        std::fs::read_dir(depot.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no staging file left"
    );
    assert!(started.elapsed() < Duration::from_secs(180));
}

#[test]
fn a_flipped_byte_in_a_blob_is_reported_rebuilt_and_quarantined() {
    let p = Project::new(
        "[target.t]\nrun = 'echo t >> ../runs.log; cat in.txt in.txt > out.txt'\ninputs = ['in.txt']\noutputs = ['out.txt']\n",
        &[("in.txt", &"some content that compresses well ".repeat(50))],
    );
    p.build(&[]).ok();
    let want = p.read("out.txt");
    // Loose, or (the packed pass) inside its pack.
    let digest = relocache::digest::Digest::of(want.as_bytes());
    let hex = digest.to_hex();
    let blob = stored(&p.depot, &digest);
    blob.flip(blob.len / 2, 0x01);
    std::fs::remove_file(p.path("out.txt")).unwrap();

    let r = p.run(&["build"]);
    r.ok();
    assert!(
        r.stderr.contains("corrupt"),
        "the corruption is reported: {}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("corrupt").count(),
        1,
        "reported once: {}",
        r.stderr
    );
    assert_eq!(p.runs("t"), 2, "rebuilt, never restored corrupt");
    assert_eq!(p.read("out.txt"), want);
    assert_eq!(
        std::fs::read_dir(p.depot.join("quarantine"))
            .unwrap()
            .count(),
        1
    );
    // The rebuild stored a good blob again.
    std::fs::remove_file(p.path("out.txt")).unwrap();
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(p.read("out.txt"), want);
    if blob.packed {
        // The pack keeps its damaged copy (its other blobs are sound); the
        // good blob stays loose through the `gc --repack` above, and
        // `verify --integrity` still names the packed copy.
        assert!(p
            .depot
            .join("objects-v1")
            .join(&hex[..2])
            .join(&hex)
            .is_file());
        let v = p.run(&["verify", "--integrity", "--json"]);
        assert_eq!(v.problem_kinds(), ["corrupt-packed-blob"], "{}", v.stdout);
    } else {
        check_depot_invariants(&p.depot);
    }
}

#[test]
fn an_input_edited_while_its_command_runs_is_not_stored() {
    let p = Project::new(
        "[target.t]\nrun = 'touch ../started; sleep 1; cp in.txt out.txt'\ninputs = ['in.txt']\noutputs = ['out.txt']\n",
        &[("in.txt", "before\n")],
    );
    let child = spawn_build(&p.root, &p.depot);
    let marker = p.tmp.path().join("started");
    let t0 = Instant::now();
    while !marker.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    p.write("in.txt", "after, and longer\n");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`in.txt` changed while `t` was running"),
        "{stderr}"
    );
    assert!(stderr.contains("not stored"), "{stderr}");
    assert_eq!(p.entries(), 0, "nothing stored");
    // The next build sees the new input and stores a consistent result.
    let r = p.build(&[]);
    assert_eq!(r.outcome("t"), "built");
    assert_eq!(p.read("out.txt"), "after, and longer\n");
    assert_eq!(p.entries(), 1);
}

#[test]
fn an_output_edited_after_a_restore_never_changes_the_cache() {
    let p = Project::new(
        "[target.t]\nrun = 'echo original > out.txt'\noutputs = ['out.txt']\n",
        &[],
    );
    p.build(&[]).ok();
    std::fs::remove_file(p.path("out.txt")).unwrap();
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    let md = std::fs::metadata(p.path("out.txt")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&md),
        1,
        "a copy, never a hard link into the depot"
    );
    std::fs::write(p.path("out.txt"), "edited by the user\n").unwrap();
    std::fs::remove_file(p.path("out.txt")).unwrap();
    p.build(&[]).ok();
    assert_eq!(p.read("out.txt"), "original\n");
    check_depot_invariants(&p.depot);
}

#[test]
fn an_edited_output_is_put_back_by_the_next_build() {
    let p = Project::new("[target.t]\nrun = 'echo t >> ../runs.log; echo original > out.txt'\noutputs = ['out.txt']\n", &[]);
    p.build(&[]).ok();
    p.write("out.txt", "tampered\n");
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(p.read("out.txt"), "original\n");
    assert_eq!(p.runs("t"), 1);
}

/// Runs relocache in `p` with `args` as a user who cannot write `dir`, then
/// gives write access back. Root can write anything, so as root the run is
/// as `nobody`, and only write access is taken away: what relocache created
/// must be readable by other users (files 0666 minus umask, not 0600).
fn chmod(mode: &str, path: &Path) {
    let ok = Command::new("chmod")
        .args(["-R", mode])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success(), "chmod {mode} {}", path.display());
}

/// relocache without write access to `dir` (as `nobody` when the tests run
/// as root, who can write anything); give it back with `chmod u+w`.
fn without_write_access(p: &Project, dir: &Path) -> Command {
    if is_root() {
        chmod("a+rwX", &p.root);
        chmod("a+rwX", p.tmp.path());
        chmod("go-w", dir);
        bin_as_nobody(p.tmp.path())
    } else {
        chmod("a-w", dir);
        bin()
    }
}

fn run_without_write_access(p: &Project, dir: &Path, args: &[&str]) -> Run {
    let mut c = without_write_access(p, dir);
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&p.depot)
        .args(args);
    let r = output(c);
    chmod("u+w", dir);
    r
}

/// Stores run beside the next commands; one that fails must still reach the
/// user (and the JSON report), leave no entry behind and not stop the build.
#[test]
fn a_store_that_fails_is_a_warning_and_the_build_goes_on() {
    let p = chain();
    p.build(&["a"]).ok();
    // Blobs can no longer be published; the depot's tmp/ stays writable, so
    // the build believes the depot is writable and tries to store.
    let objects = p.depot.join("objects-v1");
    let r = run_without_write_access(&p, &objects, &["build", "--json", "-j2"]);
    r.ok();
    let json = r.json();
    for (name, outcome) in [("a", "hit"), ("b", "built"), ("c", "built")] {
        let t = json["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap();
        assert_eq!(t["outcome"], outcome, "{name}: {t}");
        if outcome == "built" {
            assert_eq!(t["stored"], false, "{name}: {t}");
            let warnings = t["warnings"].to_string();
            assert!(warnings.contains("could not store"), "{name}: {t}");
        }
    }
    r.assert_stderr_has(&["could not store `b`", "could not store `c`"]);
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");
    check_depot_invariants(&p.depot);
    // Nothing half-stored: the next build (depot writable again) builds and stores them.
    let again = p.build(&[]);
    assert_eq!(again.outcome("b"), "built");
    assert_eq!(again.outcome("c"), "built");
    assert_eq!(p.build(&[]).outcome("c"), "hit");
}

#[test]
fn a_read_only_depot_still_builds_with_a_warning() {
    let p = chain();
    p.build(&["a"]).ok();
    let before = walkdir::WalkDir::new(&p.depot).into_iter().count();
    let r = run_without_write_access(&p, &p.depot, &["build", "--json"]);
    r.ok();
    assert_eq!(r.outcome("a"), "hit", "reading still works");
    assert_eq!(r.outcome("b"), "built");
    assert_eq!(r.outcome("c"), "built");
    r.assert_stderr_has(&["warning", "not cached"]);
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");
    assert_eq!(
        walkdir::WalkDir::new(&p.depot).into_iter().count(),
        before,
        "the depot is unchanged"
    );
    check_depot_invariants(&p.depot);
}

#[test]
fn a_waiting_process_says_who_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let depot = tmp.path().join("depot");
    let roots: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("c{i}"))).collect();
    for r in &roots {
        std::fs::create_dir_all(r).unwrap();
        std::fs::write(
            r.join("relocache.toml"),
            "[target.t]\nrun = 'sleep 1; echo done > out'\noutputs = ['out']\n",
        )
        .unwrap();
    }
    let first = spawn_build(&roots[0], &depot);
    // Wait until the first holds the lock.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let locks = std::fs::read_dir(depot.join("locks"))
            .map(|r| r.count())
            .unwrap_or(0);
        if locks > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = spawn_build(&roots[1], &depot).wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success() && second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("waiting") && err.contains("pid"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(json["targets"][0]["outcome"], "hit");
}

#[test]
fn a_poisoned_entry_never_writes_outside_the_targets_declared_outputs() {
    use relocache::depot::entries::{parse_entry, render_entry, OutputKind, OutputRecord};
    use relocache::relpath::RelPath;
    let manifest = format!(
        "{CHAIN}\n[target.d]\nrun = \"mkdir -p dir/sub && echo d > dir/sub/d.txt\"\noutputs = [\"dir\"]\n"
    );
    let files = [
        ("a.txt", "alpha\n"),
        ("b.txt", "beta\n"),
        ("c.txt", "gamma\n"),
    ];
    let p = Project::new(&manifest, &files);
    p.build(&[]).ok();
    let outside = p.tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("victim")).unwrap();
    std::fs::write(outside.join("victim/data.txt"), "precious\n").unwrap();
    let manifest_before = p.read("relocache.toml");

    // Entries as an archive, a remote or a damaged depot could hand them
    // over: each passes the entry's own shape checks.
    let poison = |target: &str, extra: &dyn Fn(&OutputRecord) -> OutputRecord| {
        let file = PathBuf::from(p.run(&["path", target]).stdout.trim());
        let mut e = parse_entry(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let some_file = e
            .outputs
            .iter()
            .find(|o| o.kind == OutputKind::File)
            .unwrap()
            .clone();
        e.outputs.push(extra(&some_file));
        e.outputs.sort_by(|x, y| x.path.cmp(&y.path));
        std::fs::write(&file, render_entry(&e)).unwrap();
    };
    // a "restores" the manifest, which is no output of a.
    poison("a", &|f| OutputRecord {
        path: RelPath::new("relocache.toml").unwrap(),
        ..f.clone()
    });
    // d writes below dir/sub/link without listing that directory, where a
    // symlink to a directory outside the project now stands.
    poison("d", &|f| OutputRecord {
        path: RelPath::new("dir/sub/link/victim").unwrap(),
        ..f.clone()
    });
    std::fs::remove_file(p.path("out/a.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, p.path("dir/sub/link")).unwrap();

    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("a"), "built", "{}", r.stderr);
    assert_eq!(r.outcome("d"), "built", "{}", r.stderr);
    r.assert_stderr_has(&["not an output of `a`"]);
    assert!(
        r.stderr
            .contains("without restoring its directory `dir/sub/link`"),
        "{}",
        r.stderr
    );
    assert_eq!(p.read("relocache.toml"), manifest_before);
    assert_eq!(
        std::fs::read_to_string(outside.join("victim/data.txt")).unwrap(),
        "precious\n"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(p.read("out/a.txt"), "alpha\n");
    assert_eq!(p.read("dir/sub/d.txt"), "d\n");
    assert!(!p.path("dir/sub/link").exists());
    // The rebuilds stored sound entries over the poisoned ones.
    let again = p.build(&[]);
    assert_eq!(again.json()["hits"], 4, "{}", again.stderr);
    check_depot_invariants(&p.depot);
}

#[test]
fn a_command_outliving_a_killed_build_is_never_run_twice_at_once() {
    // The loop runs in a subshell: a grandchild of relocache, which the
    // kernel does not kill with it.
    let manifest = "[target.gen]\nrun = \"(for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i >> out.txt; sleep 0.1; done); true\"\noutputs = [\"out.txt\"]\n";
    let p = Project::new(manifest, &[]);
    let mut first = bin();
    first
        .arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&p.depot)
        .arg("build")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = first.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.path("out.txt").exists() {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap(); // relocache alone, as kill -9 <pid> would
    first.wait().unwrap();

    // The retry waits for the orphaned loop, then builds from scratch.
    let r = p.build(&[]);
    r.ok();
    r.assert_stderr_has(&["waiting"]);
    let want: String = (1..=10).map(|i| format!("line{i}\n")).collect();
    assert_eq!(p.read("out.txt"), want);
    std::fs::remove_file(p.path("out.txt")).unwrap();
    let hit = p.build(&[]);
    assert_eq!(hit.outcome("gen"), "hit");
    assert_eq!(p.read("out.txt"), want);
}

#[test]
fn a_depot_that_is_not_one_is_a_usage_error_that_says_what_to_do() {
    let p = chain();
    p.build(&[]).ok();
    let file = p.tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&file)
        .arg("build");
    let r = output(c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["is not a directory"]);

    let dir = p.tmp.path().join("adir");
    std::fs::create_dir(&dir).unwrap();
    let r = p.run(&["unpack", dir.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["is a directory, not an archive"]);

    std::fs::write(p.depot.join("DEPOT.toml"), "format = = 1\n").unwrap();
    for args in [&["build"][..], &["verify"][..]] {
        let r = p.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        r.assert_stderr_has(&["DEPOT.toml` is damaged", "format = 1"]);
    }
}

#[test]
fn an_unpack_failing_while_publishing_takes_back_what_it_published() {
    let p = chain();
    p.build(&[]).ok();
    let (_, fresh) = unpack_failing_at_the_last_entry(&p);
    let published = walkdir::WalkDir::new(fresh.join("entries-v2"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(published, 0, "no entry stays published");
}

/// A built project of 600 small outputs and a 5 MiB one, packed into an
/// archive: an unpack of it writes one pack.
fn packed_archive(tmp: &Path) -> (Project, PathBuf) {
    let p = Project::new_in(
        tmp,
        "[target.many]\nrun = '''mkdir -p out && for i in $(seq 1 600); do echo \"file $i\" > out/f$i.txt; done && cp big.bin out/big.bin'''\ninputs = ['big.bin']\noutputs = ['out']\n",
        &[],
    );
    std::fs::write(p.path("big.bin"), noise(5 << 20, 5)).unwrap();
    p.build(&[]).ok();
    let archive = p.tmp.path().join("ci.tar.zst");
    p.run(&["pack", archive.to_str().unwrap()]).ok();
    (p, archive)
}

fn spawn_unpack(depot: &Path, archive: &Path) -> Child {
    let mut c = bin();
    c.arg("--depot").arg(depot).arg("unpack").arg(archive);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// `relocache -C <root> --depot DEPOT build --json`.
fn build_with(p: &Project, depot: &Path) -> Run {
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(depot)
        .args(["build", "--json"]);
    output(c)
}

#[track_caller]
fn assert_verify_integrity_clean(depot: &Path) {
    let v = output({
        let mut c = bin();
        c.arg("--depot")
            .arg(depot)
            .args(["verify", "--relocatable", "--integrity"]);
        c
    });
    assert_eq!(v.code, 0, "verify --integrity:\n{}{}", v.stdout, v.stderr);
}

#[test]
fn kill_dash_nine_during_unpack_leaves_a_valid_depot() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, archive) = packed_archive(tmp.path());
    let want = std::fs::read(p.path("out/big.bin")).unwrap();
    // How long one whole unpack takes here, so kills spread over it.
    let probe = tmp.path().join("probe-depot");
    let started = Instant::now();
    let out = spawn_unpack(&probe, &archive).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = started.elapsed().as_millis() as u64;
    for round in 0..10u64 {
        let depot = tmp.path().join(format!("depot{round}"));
        let mut child = spawn_unpack(&depot, &archive);
        let delay = (noise(2, round + 21)[0] as u64 * (whole + 50)) / 255;
        std::thread::sleep(Duration::from_millis(delay));
        kill_group(&mut child);
        if !depot.join("DEPOT.toml").exists() {
            continue;
        }
        check_depot_invariants(&depot);
        assert_verify_integrity_clean(&depot);
        // The next build restores what the unpack published, or rebuilds.
        let _ = std::fs::remove_dir_all(p.path("out"));
        let b = build_with(&p, &depot);
        b.ok();
        assert_eq!(std::fs::read(p.path("out/big.bin")).unwrap(), want);
        assert_eq!(p.read("out/f377.txt"), "file 377\n");
        // And an unpack after the crash completes the depot.
        let again = spawn_unpack(&depot, &archive).wait_with_output().unwrap();
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        check_depot_invariants(&depot);
        let _ = std::fs::remove_dir_all(depot);
    }
}

#[test]
fn two_unpacks_and_a_build_at_once_on_one_depot() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, archive) = packed_archive(tmp.path());
    let want = std::fs::read(p.path("out/big.bin")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let depot = tmp.path().join("shared-depot");
    let children = vec![
        spawn_unpack(&depot, &archive),
        spawn_unpack(&depot, &archive),
        spawn_build(&p.root, &depot),
    ];
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    check_depot_invariants(&depot);
    assert_verify_integrity_clean(&depot);
    assert_eq!(std::fs::read(p.path("out/big.bin")).unwrap(), want);
    // Whichever came first, the next build is a hit with the same bytes.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = build_with(&p, &depot);
    b.ok();
    assert_eq!(b.outcome("many"), "hit");
    assert_eq!(std::fs::read(p.path("out/big.bin")).unwrap(), want);
    assert_eq!(p.read("out/f600.txt"), "file 600\n");
}

/// The same take-back when the archive is large enough that `unpack` wrote
/// its blobs as a pack: no entry stays published, the pack (complete, with
/// its index) is only unreferenced blobs, and a retry and a build succeed.
#[test]
fn an_unpack_into_a_pack_failing_while_publishing_takes_back_its_entries() {
    let manifest: String = ["a", "b", "c"]
        .iter()
        .map(|t| {
            format!(
                "[target.{t}]\nrun = '''mkdir -p {t} && for i in $(seq 1 60); do echo \"{t} $i\" > {t}/f$i.txt; done'''\noutputs = ['{t}']\n"
            )
        })
        .collect();
    let p = Project::new(&manifest, &[]);
    p.run(&["build", "--json"]).ok();
    let (archive, fresh) = unpack_failing_at_the_last_entry(&p);
    let count = |dir: &str| {
        walkdir::WalkDir::new(fresh.join(dir))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .count()
    };
    assert_eq!(count("entries-v2"), 0, "no entry stays published");
    assert_eq!(
        count("objects-v1/packs"),
        2,
        "the blobs went into one pack and its index"
    );
    check_depot_invariants(&fresh);
    // A retry publishes everything, and a build elsewhere hits from it.
    let mut c = bin();
    c.arg("--depot")
        .arg(&fresh)
        .args(["unpack", archive.to_str().unwrap()]);
    let r = output(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::remove_dir_all(p.path("a")).unwrap();
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&fresh)
        .args(["build", "--json"]);
    let r = output(c);
    r.ok();
    assert!(r.outcomes().iter().all(|(_, o)| o == "hit"), "{}", r.stdout);
    assert_eq!(p.read("a/f7.txt"), "a 7\n");
}

/// Packs `p`'s depot of three entries, then unpacks it into a fresh depot
/// where the last entry's shard cannot be written: the first two entries
/// publish, the third fails (as a full disk would). The archive and the
/// fresh depot.
fn unpack_failing_at_the_last_entry(p: &Project) -> (PathBuf, PathBuf) {
    let archive = p.tmp.path().join("all.tar.zst");
    p.run(&["pack", archive.to_str().unwrap()]).ok();
    let mut keys: Vec<String> = walkdir::WalkDir::new(p.depot.join("entries-v2"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 3);
    let fresh = p.tmp.path().join("fresh");
    let mut c = bin();
    c.arg("--depot")
        .arg(&fresh)
        .args(["unpack", archive.to_str().unwrap(), "--max-size", "0"]);
    assert_eq!(output(c).code, 1, "refused, but the depot exists");
    let shard = fresh.join("entries-v2").join(&keys[2][..2]);
    std::fs::create_dir_all(&shard).unwrap();
    let mut c = without_write_access(p, &shard);
    c.arg("--depot")
        .arg(&fresh)
        .args(["unpack", archive.to_str().unwrap()]);
    let r = output(c);
    chmod("u+w", &shard);
    assert_eq!(r.code, 1, "{}", r.stderr);
    (archive, fresh)
}

/// relocache killed alone (kill -9 of its pid) leaves its command running;
/// the next build, for another key of the same target, waits for that
/// orphan rather than restoring an output the orphan then overwrites.
#[test]
fn a_build_waits_for_the_commands_a_killed_build_left_running() {
    let p = Project::new(
        r#"
[target.a]
run = "X=$(cat in.txt); sleep 1; echo $X > out.txt"
inputs = ["in.txt"]
outputs = ["out.txt"]
"#,
        &[("in.txt", "A\n")],
    );
    build_in(&p.root, &p.depot).ok();
    p.write("in.txt", "B\n");
    let mut killed = spawn_build(&p.root, &p.depot);
    std::thread::sleep(Duration::from_millis(300));
    killed.kill().unwrap();
    let _ = killed.wait();
    p.write("in.txt", "A\n");
    let r = build_in(&p.root, &p.depot);
    r.ok();
    r.assert_stderr_has(&["waiting for the commands of an interrupted build"]);
    assert_eq!(r.outcomes(), [("a".to_owned(), "hit".to_owned())]);
    // The orphan has finished: nothing lands after the build.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(std::fs::read_to_string(p.path("out.txt")).unwrap(), "A\n");
}
