//! Damaged depot records: an entry, project record, usage line or DEPOT.toml
//! whose bytes changed is never trusted, and a hit always leaves every
//! declared output in place with the bytes and modes a clean build makes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// Where this relocache keeps its entries inside a depot.
const ENTRIES: &str = "entries-v2";

/// Every entry file of the depot, sorted.
fn entry_files(depot: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(depot.join(ENTRIES))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// The entry file of `target`.
fn entry_of(depot: &Path, target: &str) -> PathBuf {
    entry_files(depot)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains(&format!("target = \"{target}\""))
        })
        .unwrap_or_else(|| panic!("no entry for {target}"))
}

/// `body` sealed with a correct checksum line, as a damage that also forged
/// the checksum would leave it.
fn seal(body: &str) -> String {
    format!(
        "{body}checksum = \"{}\"\n",
        blake3::hash(body.as_bytes()).to_hex()
    )
}

/// gen writes `out/gen.txt` (executable) and `out/data.txt`; use reads them.
fn two_step() -> Project {
    Project::new(
        r#"
[target.gen]
run = "mkdir -p out && cp gen.sh out/gen.txt && chmod +x out/gen.txt && echo data > out/data.txt"
inputs = ["gen.sh"]
outputs = ["out/gen.txt", "out/data.txt"]

[target.use]
run = "cat out/gen.txt out/data.txt > use.txt"
deps = ["gen"]
outputs = ["use.txt"]
"#,
        &[("gen.sh", "#!/bin/sh\necho generated\n")],
    )
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o111 != 0
}

/// The reported bug: an entry whose `[[outputs]]` were gone was a hit that
/// left `out/gen.txt` missing. Even with its checksum forged to match, the
/// entry does not cover the declared outputs, so it is rebuilt.
#[test]
fn an_entry_missing_its_outputs_is_rebuilt_not_hit() {
    let p = two_step();
    p.build(&[]).ok();
    let path = entry_of(&p.depot, "gen");
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.find("[[outputs]]").expect("the entry lists outputs");
    let damaged = seal(&text[..cut]);
    std::fs::write(&path, damaged).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();

    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("gen"), "built", "{}", r.stderr);
    r.assert_stderr_has(&["out/gen.txt"]);
    assert_eq!(p.read("out/gen.txt"), "#!/bin/sh\necho generated\n");
    assert_eq!(p.read("use.txt"), "#!/bin/sh\necho generated\ndata\n");
    // The rebuild stored a sound entry again.
    assert_eq!(p.build(&[]).ok().outcome("gen"), "hit");
}

/// `text` without its first line containing `needle`.
fn without_line(text: &str, needle: &str) -> String {
    let mut done = false;
    text.lines()
        .filter(|l| {
            let drop = !done && l.contains(needle);
            done |= drop;
            !drop
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The reported bug: `executable = true` deleted from an entry restored
/// the file without its executable bit. The entry fails its checksum, is
/// quarantined, and the target rebuilt.
#[test]
fn an_entry_with_a_deleted_line_is_rebuilt_and_the_output_stays_executable() {
    let p = two_step();
    p.build(&[]).ok();
    let path = entry_of(&p.depot, "gen");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("executable = true"), "{text}");
    std::fs::write(&path, without_line(&text, "executable = true")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();

    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("gen"), "built", "{}", r.stderr);
    r.assert_stderr_has(&["checksum"]);
    assert!(is_executable(&p.path("out/gen.txt")));
    // Kept for inspection, out of the way of the sound entry now stored.
    let quarantined = std::fs::read_dir(p.depot.join("quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 1);
    assert_eq!(p.build(&[]).ok().outcome("gen"), "hit");
}

/// Every declared output below the project, with its kind, mode bits and
/// content (or link text): what a restore must reproduce exactly.
fn snapshot(p: &Project, outputs: &[&str]) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for o in outputs {
        for e in walkdir::WalkDir::new(p.path(o)).sort_by_file_name() {
            let e = e.unwrap_or_else(|err| panic!("{o}: {err}"));
            let rel = e
                .path()
                .strip_prefix(&p.root)
                .unwrap()
                .display()
                .to_string();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(e.path()).unwrap().display())
            } else if md.is_dir() {
                format!("dir {:o}", md.permissions().mode() & 0o777)
            } else {
                format!(
                    "file {:o} {:?}",
                    md.permissions().mode() & 0o777,
                    std::fs::read(e.path()).unwrap()
                )
            };
            v.push((rel, what));
        }
    }
    v
}

/// A few targets: files (one executable), a dependent, a directory with a
/// symlink inside.
fn several() -> Project {
    Project::new(
        r#"
[target.gen]
run = "mkdir -p out && cp gen.sh out/gen.txt && chmod +x out/gen.txt && echo data > out/data.txt"
inputs = ["gen.sh"]
outputs = ["out/gen.txt", "out/data.txt"]

[target.use]
run = "cat out/gen.txt out/data.txt > use.txt"
deps = ["gen"]
outputs = ["use.txt"]

[target.tree]
run = "mkdir -p tree/sub && echo t > tree/sub/t.txt && chmod +x tree/sub/t.txt && ln -s sub/t.txt tree/link && echo u > tree/u.txt"
outputs = ["tree"]
"#,
        &[("gen.sh", "#!/bin/sh\necho generated\n")],
    )
}

const SEVERAL_OUTPUTS: [&str; 4] = ["out", "use.txt", "tree", "tree/link"];

/// Damage of one kind at `at` (a pseudo-random number) in `text`.
fn damage(text: &str, kind: usize, at: u64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let i = (at as usize) % lines.len();
    let join = |v: Vec<&str>| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    match kind {
        // A byte changed.
        0 => {
            let mut b = text.as_bytes().to_vec();
            let j = (at as usize) % b.len();
            b[j] = if b[j] == b'1' { b'0' } else { b'1' };
            String::from_utf8_lossy(&b).into_owned()
        }
        // A line deleted.
        1 => {
            let mut v = lines.clone();
            v.remove(i);
            join(v)
        }
        // A line duplicated.
        2 => {
            let mut v = lines.clone();
            v.insert(i, lines[i]);
            join(v)
        }
        // A snippet inserted at a line boundary.
        _ => {
            let snippets = [
                "executable = true",
                "[[outputs]]\npath = \"out\"\nkind = \"dir\"",
                "size = 0",
                "relocatable = true",
            ];
            let mut v = lines.clone();
            v.insert(i, snippets[(at as usize / 7) % snippets.len()]);
            join(v)
        }
    }
}

/// Each entry of a warm depot damaged one way at a time (a byte flipped, a
/// line deleted or duplicated, a snippet inserted), then `build` from
/// scratch: every output is exactly what a clean build makes, and the
/// depot is sound afterwards.
#[test]
fn damaged_entries_never_restore_a_wrong_output() {
    let p = several();
    p.build(&[]).ok();
    let clean = snapshot(&p, &SEVERAL_OUTPUTS);
    let pristine = p.tmp.path().join("pristine");
    copy_tree(&p.depot, &pristine);
    let entries: Vec<PathBuf> = entry_files(&p.depot)
        .iter()
        .map(|e| e.strip_prefix(&p.depot).unwrap().to_path_buf())
        .collect();
    assert_eq!(entries.len(), 3);
    let mut variants = 0;
    for (n, rel) in entries.iter().enumerate() {
        let text = std::fs::read_to_string(pristine.join(rel)).unwrap();
        // The line the reported bug lost, then pseudo-random places.
        let exec_line = text.lines().position(|l| l == "executable = true");
        for kind in 0..4 {
            let mut places: Vec<u64> = noise(3 * 8, (n * 4 + kind) as u64 + 1)
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            if let (1, Some(l)) = (kind, exec_line) {
                places[0] = l as u64;
            }
            for at in places {
                let damaged = damage(&text, kind, at);
                if damaged == text {
                    continue;
                }
                std::fs::remove_dir_all(&p.depot).unwrap();
                copy_tree(&pristine, &p.depot);
                std::fs::write(p.depot.join(rel), &damaged).unwrap();
                for o in ["out", "use.txt", "tree"] {
                    let path = p.path(o);
                    let _ = std::fs::remove_dir_all(&path);
                    let _ = std::fs::remove_file(&path);
                }
                let r = p.build(&[]);
                assert_eq!(
                    r.code,
                    0,
                    "kind {kind} at {at} in {}:\n{damaged}\n{}",
                    rel.display(),
                    r.stderr
                );
                assert_eq!(
                    snapshot(&p, &SEVERAL_OUTPUTS),
                    clean,
                    "kind {kind} at {at} in {}:\n{damaged}\n{}",
                    rel.display(),
                    r.stderr
                );
                variants += 1;
            }
        }
    }
    assert!(variants >= 30, "{variants}");
    check_depot_invariants(&p.depot);
}

/// `verify` reports an entry failing its checksum without `--integrity`.
#[test]
fn verify_reports_a_damaged_entry_as_corrupt_without_integrity() {
    let p = two_step();
    p.build(&[]).ok();
    let path = entry_of(&p.depot, "gen");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, without_line(&text, "executable = true")).unwrap();
    let r = p.run(&["verify", "--json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.problem_kinds(), ["corrupt-entry"]);
    let human = p.run(&["verify"]);
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("checksum") || human.stderr.contains("checksum"));
}

/// Rewrites the archive at `path`, passing each member's content through
/// `edit(name, content)`.
fn rewrite_archive(path: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    use std::io::Read;
    let tar_bytes = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    for m in archive.entries().unwrap() {
        let mut m = m.unwrap();
        let name = m.path().unwrap().display().to_string();
        let mut data = Vec::new();
        m.read_to_end(&mut data).unwrap();
        let data = edit(&name, data);
        let mut h = m.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, &data[..]).unwrap();
    }
    let tar_bytes = out.into_inner().unwrap();
    std::fs::write(path, zstd::encode_all(&tar_bytes[..], 3).unwrap()).unwrap();
}

/// `unpack` refuses an archive holding an entry that fails its checksum,
/// and publishes nothing of it.
#[test]
fn unpack_refuses_an_archive_with_a_damaged_entry() {
    let p = two_step();
    p.build(&[]).ok();
    let archive = p.tmp.path().join("depot.tar.zst");
    p.run(&["pack", archive.to_str().unwrap()]).ok();
    rewrite_archive(&archive, |name, data| {
        let text = String::from_utf8_lossy(&data);
        if name.starts_with(ENTRIES) && text.contains("executable = true") {
            without_line(&text, "executable = true").into_bytes()
        } else {
            data
        }
    });
    let other = two_step();
    let r = other.run(&["unpack", archive.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    r.assert_stderr_has(&["checksum", "nothing was published"]);
    assert_eq!(other.entries(), 0);
}

/// A usage log line failing its checksum is skipped: `stats` does not
/// count what it claims.
#[test]
fn a_damaged_usage_line_is_skipped() {
    let p = two_step();
    p.build(&[]).ok();
    p.build(&[]).ok();
    let stats = p.run(&["stats", "--json"]).json();
    assert_eq!(stats["hits"], 2, "{stats}");
    let logs: Vec<PathBuf> = std::fs::read_dir(p.depot.join("usage"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
        .collect();
    let mut damaged = 0;
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("\"hits\":1,") {
            std::fs::write(&log, text.replacen("\"hits\":1,", "\"hits\":7,", 1)).unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1, "one log has the second build's hits");
    let stats = p.run(&["stats", "--json"]).json();
    assert_eq!(stats["hits"], 1, "the damaged line counts nothing: {stats}");
}

/// A project record failing its checksum reads as absent: `status` does
/// not call the target stale against a key nobody can vouch for, and says
/// why.
#[test]
fn a_damaged_project_record_reads_as_absent() {
    let p = two_step();
    p.build(&[]).ok();
    p.write("gen.sh", "#!/bin/sh\necho changed\n");
    let r = p.run(&["status", "--json"]).json();
    assert_eq!(r["targets"][0]["status"], "stale", "{r}");
    let record = walkdir::WalkDir::new(&p.depot)
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.path().ends_with("gen.toml"))
        .expect("a record for gen")
        .into_path();
    let text = std::fs::read_to_string(&record).unwrap();
    let i = text.find("updated = \"").unwrap() + "updated = \"".len();
    let mut b = text.into_bytes();
    b[i] = if b[i] == b'2' { b'3' } else { b'2' };
    std::fs::write(&record, b).unwrap();

    let r = p.run(&["status", "--json"]).json();
    let gen = &r["targets"][0];
    assert_eq!(gen["name"], "gen");
    assert_eq!(gen["status"], "unstarted", "{r}");
    assert!(
        gen["record"].as_str().unwrap_or("").contains("checksum"),
        "{r}"
    );
    let human = p.run(&["status"]);
    human.assert_stdout_has(&["checksum"]);
    // The next build writes a sound record again.
    p.build(&[]).ok();
    let r = p.run(&["status", "--json"]).json();
    assert_eq!(r["targets"][0]["status"], "ready", "{r}");
}

/// `text` without its final checksum line.
fn unsealed(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("checksum = "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A depot of format 1 (entries without checksums in `entries-v1/`): its
/// entries are never read, so every target misses once and is rebuilt;
/// `DEPOT.toml` is upgraded; `gc` removes the old directories with a note.
#[test]
fn an_old_format_depot_is_never_restored_from_and_gc_removes_its_directories() {
    let p = two_step();
    // Not `p.build`: a format-1 depot never had packs, and the packed
    // pass's `gc --repack` after each build would be the gc under test.
    let build = || p.run(&["build", "--json"]);
    build().ok();
    into_format_1(&p);
    let d = &p.depot;
    std::fs::remove_dir_all(p.path("out")).unwrap();

    let r = build();
    r.ok();
    assert_eq!(r.outcome("gen"), "built", "{}", r.stderr);
    assert_eq!(r.outcome("use"), "built", "{}", r.stderr);
    r.assert_stderr_lacks(&["damaged"]);
    assert!(is_executable(&p.path("out/gen.txt")));
    let conf = std::fs::read_to_string(d.join("DEPOT.toml")).unwrap();
    assert!(
        conf.contains("format = 2") && conf.contains("max_size = \"10G\""),
        "{conf}"
    );
    assert!(
        conf.lines().last().unwrap().starts_with("checksum = \""),
        "{conf}"
    );
    assert_eq!(build().ok().outcome("gen"), "hit");

    let gc = p.run(&["gc"]);
    gc.ok();
    let said = format!("{}{}", gc.stdout, gc.stderr);
    assert!(
        said.contains("entries-v1") && said.contains("format 1"),
        "{said}"
    );
    assert!(!d.join("entries-v1").exists() && !d.join("projects-v1").exists());
    assert_eq!(build().ok().outcome("gen"), "hit");
}

/// An archive of depot format 1 is refused whole: its entries carry no
/// checksum.
#[test]
fn unpack_refuses_an_archive_of_the_old_format() {
    let p = two_step();
    p.build(&[]).ok();
    let archive = p.tmp.path().join("depot.tar.zst");
    p.run(&["pack", archive.to_str().unwrap()]).ok();
    rewrite_archive(&archive, |name, data| {
        if name == "DEPOT.toml" {
            b"format = 1\n".to_vec()
        } else {
            data
        }
    });
    let other = two_step();
    let r = other.run(&["unpack", archive.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    r.assert_stderr_has(&["format 1", "nothing was published"]);
    assert_eq!(other.entries(), 0);
}

#[path = "support/servers.rs"]
mod servers;

/// An entry damaged on the remote (a line deleted: it still parses) is a
/// miss counted as corrupt, never a restore without the executable bit.
#[test]
fn a_damaged_remote_entry_is_a_miss_counted_as_corrupt() {
    let redis = servers::Redis::start();
    let env = [("RELOCACHE_REMOTE", redis.url())];
    let first = two_step();
    let mut c = first.cmd(&["build", "--json", "-j", "1"]);
    c.envs(env.iter().cloned());
    output(c).ok();
    let key = first.run(&["key", "gen"]).stdout.trim().to_owned();
    let name = format!("relocache/v1/entries/{key}");
    let text = redis.cli(&["--raw", "get", &name]);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    assert!(text.contains("executable = true"), "{text}");
    redis.cli(&["set", &name, &without_line(text, "executable = true")]);

    let second = two_step();
    let mut c = second.cmd(&["build", "--json", "-j", "1"]);
    c.envs(env.iter().cloned());
    let r = output(c);
    r.ok();
    assert_eq!(r.outcome("gen"), "built", "{}", r.stderr);
    assert!(is_executable(&second.path("out/gen.txt")));
    let stats = second.run(&["stats", "--json"]).json();
    assert_eq!(stats["remote_corrupt"], 1, "{stats}");
    // The rebuild uploaded a sound entry over the damaged one.
    let healed = redis.cli(&["--raw", "get", &name]);
    let healed = healed.strip_suffix('\n').unwrap_or(&healed);
    relocache::depot::entries::parse_entry(healed).expect("a sound entry again");
}

/// Turns `p`'s depot into what format 1 wrote: entries and records in the
/// v1 directories, unsealed, schema 1, and an unsealed `DEPOT.toml`.
fn into_format_1(p: &Project) {
    let d = &p.depot;
    std::fs::rename(d.join(ENTRIES), d.join("entries-v1")).unwrap();
    std::fs::rename(d.join("projects-v2"), d.join("projects-v1")).unwrap();
    for e in walkdir::WalkDir::new(d.join("entries-v1"))
        .into_iter()
        .chain(walkdir::WalkDir::new(d.join("projects-v1")))
    {
        let e = e.unwrap();
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            std::fs::write(
                e.path(),
                unsealed(&text).replace("schema = 2", "schema = 1"),
            )
            .unwrap();
        }
    }
    std::fs::write(d.join("DEPOT.toml"), "format = 1\nmax_size = \"10G\"\n").unwrap();
}

/// `status` and `verify` on a depot of format 1 say that its old entries
/// are never read, instead of presenting it as empty and sound.
#[test]
fn status_and_verify_say_an_old_format_depot_holds_entries_they_never_read() {
    let p = two_step();
    p.build(&[]).ok();
    into_format_1(&p);
    let note = "still holds `entries-v1` and `projects-v1` of depot format 1";
    let status = p.run(&["status"]);
    status
        .ok()
        .assert_stderr_has(&[note, "`relocache gc` removes them"]);
    let verify = p.run(&["verify"]);
    verify.ok().assert_stderr_has(&[note]);
    // Once rebuilt and collected, nothing is left to say.
    p.build(&[]).ok();
    p.run(&["gc"]).ok();
    p.run(&["status"]).ok().assert_stderr_lacks(&["format 1"]);
    p.run(&["verify"]).ok().assert_stderr_lacks(&["format 1"]);
}

/// Every file below `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    files_below(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .map(|p| dir.join(p))
        .collect()
}

fn mkfifo(p: &Path) {
    std::fs::remove_file(p).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap()
        .success());
}

/// A fifo planted in a depot (a loose blob, a pack index, a pack, an entry)
/// is damage: no command waits on it for a writer that never comes, and the
/// target still builds right.
#[test]
fn a_fifo_in_place_of_a_blob_a_pack_or_an_entry_never_hangs_a_command() {
    let limit = std::time::Duration::from_secs(20);
    let run = |p: &Project, args: &[&str]| output_within(p.cmd(args), limit);
    // A loose blob.
    let p = two_step();
    p.build(&[]).ok();
    for b in files_ending(&p.depot.join("objects-v1"), "") {
        mkfifo(&b);
    }
    std::fs::remove_dir_all(p.path("out")).unwrap();
    std::fs::remove_file(p.path("use.txt")).unwrap();
    run(&p, &["build"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.path("use.txt")).unwrap(),
        "#!/bin/sh\necho generated\ndata\n"
    );
    for args in [
        &["verify", "--integrity"][..],
        &["gc", "--repack"],
        &["stats"],
    ] {
        let r = run(&p, args);
        assert!(r.code == 0 || r.code == 1, "{args:?}: {}", r.stderr);
    }
    // A pack index, a pack, an entry.
    for (dir, suffix) in [
        ("objects-v1", ".idx"),
        ("objects-v1", ".pack"),
        (ENTRIES, ".toml"),
    ] {
        let p = two_step();
        p.build(&[]).ok();
        p.run(&["gc", "--repack"]).ok();
        let planted = files_ending(&p.depot.join(dir), suffix);
        assert!(!planted.is_empty(), "{suffix}");
        for f in &planted {
            mkfifo(f);
        }
        for args in [
            &["build"][..],
            &["verify", "--integrity"],
            &["gc"],
            &["gc", "--repack"],
            &["stats"],
            &["status"],
        ] {
            let r = run(&p, args);
            assert!(
                r.code == 0 || r.code == 1,
                "{suffix} {args:?}: {}",
                r.stderr
            );
        }
        p.run(&["build"]).ok();
    }
    // DEPOT.toml: every command stops with its usual damage message.
    let p = two_step();
    p.build(&[]).ok();
    mkfifo(&p.depot.join("DEPOT.toml"));
    let r = run(&p, &["build"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["DEPOT.toml` is damaged: it is not a regular file"]);
}

/// A depot directory swapped for a symlink (a restored CI cache can hold
/// one) would let builds write and gc/clear delete wherever it points:
/// every command refuses the depot instead, and nothing there changes.
#[test]
fn a_depot_directory_that_is_a_symlink_is_refused_and_nothing_outside_changes() {
    for dir in ["objects-v1", ENTRIES, "usage", "locks"] {
        let p = two_step();
        p.build(&[]).ok();
        let outside = p.tmp.path().join("elsewhere");
        std::fs::rename(p.depot.join(dir), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, p.depot.join(dir)).unwrap();
        let before = tree(&outside);
        p.write("gen.sh", "#!/bin/sh\necho changed\n");
        for args in [
            &["build"][..],
            &["gc", "--max-size", "1"],
            &["clear", "--all"],
        ] {
            let r = p.run(args);
            assert_eq!(r.code, 2, "{dir} {args:?}: {}", r.stderr);
            r.assert_stderr_has(&["is a symbolic link", dir]);
        }
        assert_eq!(tree(&outside), before, "{dir}: nothing outside changed");
    }
}
