//! `relocache pack`, `unpack` and `hash`: moving a depot through a CI cache or
//! to another machine, deterministically and safely, driven through the real
//! binary. Hostile archives are built here with the `tar` and `zstd` crates.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use relocache::depot::entries::{render_entry, Entry, OutputKind, OutputRecord, ENTRY_SCHEMA};
use relocache::depot::Depot;
use relocache::digest::{Digest, Key};
use relocache::relpath::RelPath;

// ---------------------------------------------------------------- helpers

/// A built chain project (a -> b, c) with its depot.
fn built() -> Project {
    let p = chain();
    p.build(&[]).ok();
    assert_eq!(p.total_runs(), 3);
    p
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    let mut c = bin();
    c.current_dir(dir).args(args);
    output(c)
}

/// `relocache -C <root> --depot <depot> ARGS` against another depot.
fn with_depot(p: &Project, depot: &Path, args: &[&str]) -> Run {
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(depot)
        .args(args);
    output(c)
}

fn pack(p: &Project, name: &str, targets: &[&str]) -> PathBuf {
    let file = p.tmp.path().join(name);
    let mut args = vec!["pack", file.to_str().unwrap()];
    args.extend_from_slice(targets);
    p.run(&args).ok();
    file
}

/// Member names of a .tar.zst, read with the system's GNU tar + zstd.
fn tar_list(file: &Path) -> Vec<String> {
    let out = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(file)
        .output()
        .expect("system tar runs");
    assert!(
        out.status.success(),
        "tar --zstd -tf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `relocache verify --relocatable --integrity` passes, and, checked again
/// through the library: every entry parses under its own name, every blob it
/// names is present and matches its name, and no staging file is left behind.
#[track_caller]
fn assert_depot_valid(depot: &Path) {
    let mut c = bin();
    c.arg("--depot")
        .arg(depot)
        .args(["verify", "--relocatable", "--integrity"]);
    let v = output(c);
    assert_eq!(
        v.code, 0,
        "verify must pass\nstdout:\n{}\nstderr:\n{}",
        v.stdout, v.stderr
    );
    let d = Depot::open_existing(depot).expect("the depot opens");
    for key in d.list_entries().unwrap() {
        let entry = d
            .read_entry(&key)
            .unwrap_or_else(|e| panic!("entry {key} is damaged: {e}"))
            .expect("listed entries exist");
        for b in entry.blobs() {
            d.copy_blob(&b, &mut std::io::sink())
                .unwrap_or_else(|e| panic!("entry {key}: blob {b}: {e}"));
        }
    }
    let tmp: Vec<_> = std::fs::read_dir(depot.join("tmp"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "staging files left behind: {tmp:?}");
}

/// Every file below `root` except the depot, with its content: what must not
/// change when an archive is refused.
fn outside_depot(root: &Path, depot: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.path() != depot)
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            let content = std::fs::read(e.path()).unwrap_or_default();
            (e.path().to_path_buf(), content)
        })
        .collect()
}

/// One tar member, written with raw header fields so that anything a
/// hostile archive could hold can be expressed.
struct Member {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<String>,
}

fn file(path: &str, data: &[u8]) -> Member {
    Member {
        path: path.to_owned(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: None,
    }
}

fn special(path: &str, kind: tar::EntryType, link: Option<&str>) -> Member {
    Member {
        path: path.to_owned(),
        kind,
        data: vec![],
        link: link.map(str::to_owned),
    }
}

fn blob_path(d: &Digest) -> String {
    let hex = d.to_hex();
    format!("objects-v1/{}/{hex}", &hex[..2])
}

fn entry_path(k: &Key) -> String {
    let hex = k.to_hex();
    format!("entries-v2/{}/{hex}.toml", &hex[..2])
}

/// A blob member stored raw (content that does not start with the zstd magic).
fn blob(content: &[u8]) -> Member {
    file(&blob_path(&Digest::of(content)), content)
}

fn header(m: &Member) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..m.path.len()].copy_from_slice(m.path.as_bytes());
        if let Some(l) = &m.link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(m.kind);
    h.set_size(m.data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

fn tar_of(members: &[Member]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        b.append(&header(m), &m.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn zst(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

/// The members of a genuine archive followed by `extra`, recompressed.
fn genuine_plus(archive: &Path, extra: &[Member]) -> Vec<u8> {
    let raw = zstd::decode_all(std::fs::File::open(archive).unwrap()).unwrap();
    let mut src = tar::Archive::new(&raw[..]);
    let mut b = tar::Builder::new(Vec::new());
    for m in src.entries().unwrap() {
        let mut m = m.unwrap();
        let h = m.header().clone();
        let mut data = Vec::new();
        m.read_to_end(&mut data).unwrap();
        b.append(&h, &data[..]).unwrap();
    }
    for m in extra {
        b.append(&header(m), &m.data[..]).unwrap();
    }
    zst(&b.into_inner().unwrap())
}

/// An entry whose output is blob `output`; its inputs summary is blob `inputs`.
fn entry(name: &str, output: Digest, inputs: Digest) -> Entry {
    Entry {
        schema: ENTRY_SCHEMA,
        project: "proj".into(),
        target: name.into(),
        key: Key(Digest::of(name.as_bytes())),
        created: "2026-01-01T00:00:00Z".into(),
        duration_ms: 1,
        relocatable: true,
        root_digest: None,
        reasons: vec![],
        stdout: None,
        stderr: None,
        inputs,
        base: None,
        discovered: vec![],
        outputs: vec![OutputRecord {
            path: RelPath::new("out/x").unwrap(),
            kind: OutputKind::File,
            digest: Some(output),
            size: 1,
            executable: false,
            mode: Some(0o644),
            target: None,
        }],
    }
}

fn entry_member(e: &Entry) -> Member {
    file(&entry_path(&e.key), render_entry(e).as_bytes())
}

/// Unpacks `archive` into the built project's depot and checks that it was
/// refused cleanly: exit 1, the reason on stderr, nothing written outside the
/// depot, no entry published, the depot valid and still hitting everything.
#[track_caller]
fn assert_refused(p: &Project, archive: &[u8], reason: &str) {
    let file = p.tmp.path().join("hostile.tar.zst");
    std::fs::write(&file, archive).unwrap();
    let before = outside_depot(p.tmp.path(), &p.depot);
    let entries = p.entries();
    let r = p.run(&["unpack", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "expected exit 1\n{}", r.render());
    r.assert_stderr_has(&[reason, "nothing was published"])
        .assert_stderr_lacks(&["panicked"]);
    assert_cli_snapshot!(p.tmp.path(), r);
    assert_eq!(
        outside_depot(p.tmp.path(), &p.depot),
        before,
        "nothing outside the depot may change"
    );
    assert_eq!(p.entries(), entries, "no entry may be published");
    assert_depot_valid(&p.depot);
    let again = p.build(&[]);
    assert_eq!(again.json()["hits"], 3, "{}", again.stderr);
    assert_eq!(p.total_runs(), 3);
}

// ---------------------------------------------------------- pack / unpack

#[test]
fn pack_then_unpack_into_an_empty_depot_elsewhere_hits_everything() {
    let p = built();
    let archive = pack(&p, "ci.tar.zst", &[]);

    // Another machine: the project at another path, an empty depot elsewhere.
    let other = tempfile::tempdir().unwrap();
    let moved = other.path().join("checkout/deeper/proj");
    std::fs::create_dir_all(&moved).unwrap();
    for f in ["relocache.toml", "a.txt", "b.txt", "c.txt"] {
        std::fs::copy(p.path(f), moved.join(f)).unwrap();
    }
    let depot = other.path().join("restored-depot");
    let r = run_in(
        &moved,
        &[
            "--depot",
            depot.to_str().unwrap(),
            "unpack",
            archive.to_str().unwrap(),
            "--json",
        ],
    );
    r.ok();
    let j = r.json();
    assert_eq!(j["entries_added"].as_array().unwrap().len(), 3);
    assert!(j["blobs_added"].as_u64().unwrap() >= 3);
    assert_eq!(j["blobs_present"], 0);
    assert_depot_valid(&depot);

    let b = run_in(
        &moved,
        &["--depot", depot.to_str().unwrap(), "build", "--json"],
    );
    b.ok();
    assert_eq!(b.json()["hits"], 3, "{}", b.stderr);
    assert_eq!(p.total_runs(), 3, "no command may run after an unpack");
    assert_eq!(
        std::fs::read_to_string(moved.join("out/b.txt")).unwrap(),
        "alpha\nbeta\n"
    );

    // Unpacking again merges nothing new and says so.
    let again = run_in(
        &moved,
        &[
            "--depot",
            depot.to_str().unwrap(),
            "unpack",
            archive.to_str().unwrap(),
        ],
    );
    again.ok();
    again.assert_stderr_has(&["0 entries added (3 already present)"]);
}

#[test]
fn two_packs_of_the_same_depot_are_byte_identical() {
    let p = built();
    let one = std::fs::read(pack(&p, "one.tar.zst", &[])).unwrap();
    let two = std::fs::read(pack(&p, "two.tar.zst", &[])).unwrap();
    assert!(one == two, "two packs of one depot differ");

    // Through stdout, and from the depot copied to another path: same bytes.
    let stdout = output(p.cmd(&["pack", "-"]));
    assert_eq!(stdout.code, 0, "{}", stdout.stderr);
    let mut c = p.cmd(&["pack", "-"]);
    c.stdout(Stdio::piped());
    let raw = c.output().unwrap().stdout;
    assert!(raw == one, "`pack -` differs from `pack FILE`");

    let copy = p.tmp.path().join("elsewhere/depot-copy");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    copy_tree(&p.depot, &copy);
    let moved = p.tmp.path().join("three.tar.zst");
    with_depot(&p, &copy, &["pack", moved.to_str().unwrap()]).ok();
    assert!(
        std::fs::read(&moved).unwrap() == one,
        "a copied depot packs differently"
    );
}

#[test]
fn system_tar_lists_and_extracts_the_archive() {
    let p = built();
    let archive = pack(&p, "depot.tar.zst", &[]);
    let names = tar_list(&archive);
    assert_eq!(names[0], "CACHEDIR.TAG");
    assert_eq!(names[1], "DEPOT.toml");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("entries-v2/") && n.ends_with(".toml"))
            .count(),
        3
    );
    assert!(names.iter().any(|n| n.starts_with("objects-v1/")));
    let first_entry = names
        .iter()
        .position(|n| n.starts_with("entries-v2"))
        .unwrap();
    let last_blob = names
        .iter()
        .rposition(|n| n.starts_with("objects-v1"))
        .unwrap();
    assert!(last_blob < first_entry, "blobs come before entries");
    for local in ["projects-v2", "usage", "locks", "tmp", "quarantine"] {
        assert!(
            !names.iter().any(|n| n.starts_with(local)),
            "{local}/ is local state and must not be packed: {names:?}"
        );
    }
    // Member order: shard directories, then the blobs stored zstd-compressed
    // (sent as they are), then the blobs stored raw (compressed in the
    // archive), each run sorted by digest.
    let blob_names: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("objects-v1/") && !n.ends_with('/'))
        .collect();
    let last_dir = names
        .iter()
        .rposition(|n| n.starts_with("objects-v1/") && n.ends_with('/'))
        .unwrap();
    let first_blob = names
        .iter()
        .position(|n| Some(&n) == blob_names.first())
        .unwrap();
    assert!(last_dir < first_blob, "shard directories come first");
    // Read where the depot stores it: loose, or in the packed pass a pack.
    let is_zstd = |n: &str| {
        let d: Digest = n.rsplit('/').next().unwrap().parse().unwrap();
        stored(&p.depot, &d)
            .read()
            .starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
    };
    let (mut zstd_run, mut raw_run): (Vec<&String>, Vec<&String>) =
        blob_names.iter().partition(|n| is_zstd(n));
    zstd_run.sort();
    raw_run.sort();
    let want: Vec<&String> = zstd_run.into_iter().chain(raw_run).collect();
    assert_eq!(
        blob_names, want,
        "compressed blobs, then raw blobs, each sorted"
    );

    // Plain `tar -x` gives a depot that hits.
    let plain = p.tmp.path().join("plain-depot");
    std::fs::create_dir_all(&plain).unwrap();
    let s = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&plain)
        .status()
        .unwrap();
    assert!(s.success());
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let r = with_depot(&p, &plain, &["build", "--json"]);
    assert_eq!(r.json()["hits"], 3, "{}", r.stderr);
    assert_eq!(p.total_runs(), 3);
}

#[test]
fn pack_of_named_targets_includes_only_what_they_need() {
    let p = built();
    let archive = pack(&p, "b.tar.zst", &["b"]);
    let entries: Vec<_> = tar_list(&archive)
        .into_iter()
        .filter(|n| n.ends_with(".toml") && n.starts_with("entries-v2"))
        .collect();
    assert_eq!(entries.len(), 2, "b and its dep a, not c: {entries:?}");

    let depot = p.tmp.path().join("fresh");
    with_depot(&p, &depot, &["unpack", archive.to_str().unwrap()]).ok();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    std::fs::remove_file(p.path("out-c.txt")).unwrap();
    let r = with_depot(&p, &depot, &["build", "--json"]);
    r.ok();
    assert_eq!(r.outcome("a"), "hit");
    assert_eq!(r.outcome("b"), "hit");
    assert_eq!(r.outcome("c"), "built");
    assert_eq!(p.runs("c"), 2);
    assert_eq!(p.runs("a") + p.runs("b"), 2);
}

#[test]
fn pack_of_an_unbuilt_target_fails_and_leaves_the_file_alone() {
    let p = chain();
    p.build(&["c"]).ok();
    let file = p.tmp.path().join("ci.tar.zst");
    std::fs::write(&file, "previous archive").unwrap();
    let r = p.run(&["pack", file.to_str().unwrap(), "b"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["relocache build b"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "previous archive");
    let leftovers: Vec<_> = std::fs::read_dir(p.tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let unknown = p.run(&["pack", file.to_str().unwrap(), "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("unknown target `nope`"));
}

#[test]
fn pack_leaves_out_an_entry_whose_blob_is_corrupt() {
    let p = built();
    // c's output "gamma\n" is tiny, so its blob is stored raw.
    // "gamma\n" becomes "Gamma\n", loose or (the packed pass) in its pack.
    stored(&p.depot, &Digest::of(b"gamma\n")).flip(0, 0x20);

    // Named targets must be complete: refused, nothing written.
    let strict = p.tmp.path().join("c.tar.zst");
    let r = p.run(&["pack", strict.to_str().unwrap(), "c"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["corrupt"]);
    assert!(!strict.exists());

    // The whole depot: the broken entry is left out with a warning.
    let whole = p.tmp.path().join("whole.tar.zst");
    let r = p.run(&["pack", whole.to_str().unwrap(), "--json"]);
    r.ok();
    r.assert_stderr_has(&["not packed"]);
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 2);
    assert_eq!(r.json()["skipped"].as_array().unwrap().len(), 1);
    let fresh = p.tmp.path().join("fresh");
    with_depot(&p, &fresh, &["unpack", whole.to_str().unwrap()]).ok();
    assert_depot_valid(&fresh);
}

#[test]
fn unpack_streams_from_stdin() {
    let p = built();
    let archive = pack(&p, "ci.tar.zst", &[]);
    let depot = p.tmp.path().join("from-stdin");
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&depot)
        .args(["unpack", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["entries_added"].as_array().unwrap().len(), 3);
    assert_eq!(j["archive_bytes"], bytes.len() as u64);
    assert_depot_valid(&depot);
}

#[test]
fn unpack_of_a_missing_file_is_a_usage_error() {
    let p = built();
    let r = p.run(&["unpack", "no-such.tar.zst"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["does not exist"]);
}

// ------------------------------------------------------- hostile archives

#[test]
fn a_dotdot_member_is_refused() {
    let p = built();
    assert_refused(&p, &zst(&tar_of(&[file("../escaped.txt", b"x")])), "`..`");
    assert_refused(
        &p,
        &zst(&tar_of(&[file("objects-v1/../../escaped.txt", b"x")])),
        "`..`",
    );
}

#[test]
fn an_absolute_member_is_refused() {
    let p = built();
    let target = p.tmp.path().join("absolute-escape.txt");
    assert_refused(
        &p,
        &zst(&tar_of(&[file(target.to_str().unwrap(), b"x")])),
        "absolute",
    );
    assert!(!target.exists());
}

#[test]
fn links_devices_and_fifos_are_refused() {
    let p = built();
    let name = blob_path(&Digest::of(b"whatever"));
    let cases = [
        (
            special(&name, tar::EntryType::Symlink, Some("/etc/passwd")),
            "symbolic link",
        ),
        (
            special(&name, tar::EntryType::Link, Some("DEPOT.toml")),
            "hard link",
        ),
        (special(&name, tar::EntryType::Char, None), "device"),
        (special(&name, tar::EntryType::Block, None), "device"),
        (special(&name, tar::EntryType::Fifo, None), "fifo"),
    ];
    for (m, reason) in cases {
        assert_refused(&p, &zst(&tar_of(&[m])), reason);
    }
}

#[test]
fn members_outside_the_depot_layout_are_refused() {
    let p = built();
    let d = Digest::of(b"content");
    let hex = d.to_hex();
    let wrong_shard = if &hex[..2] == "00" { "01" } else { "00" };
    for (path, reason) in [
        ("notes.txt".to_owned(), "not part of the depot layout"),
        ("tmp/.stage-x".to_owned(), "not part of the depot layout"),
        (
            "projects-v2/proj/evil.toml".to_owned(),
            "not part of the depot layout",
        ),
        (
            format!("objects-v1/{wrong_shard}/{hex}"),
            "first two digits",
        ),
        (
            format!("objects-v1/{}/{hex}.toml", &hex[..2]),
            "first two digits",
        ),
        (
            format!("entries-v2/{}/{hex}", &hex[..2]),
            "first two digits",
        ),
    ] {
        assert_refused(&p, &zst(&tar_of(&[file(&path, b"content")])), reason);
        assert!(!p.depot.join(&path).exists(), "{path} was written");
    }
    assert_refused(
        &p,
        &zst(&tar_of(&[file(
            &format!("objects-v2/{}/{hex}", &hex[..2]),
            b"x",
        )])),
        "newer relocache",
    );
    assert_refused(
        &p,
        &zst(&tar_of(&[file("DEPOT.toml", b"format = 99\n")])),
        "newer than this relocache",
    );
}

#[test]
fn a_blob_whose_content_does_not_match_its_name_is_refused() {
    let p = built();
    let name = blob_path(&Digest::of(b"what the name promises"));
    assert_refused(
        &p,
        &zst(&tar_of(&[file(&name, b"something else entirely")])),
        "not to its name",
    );
    let hex = Digest::of(b"what the name promises").to_hex();
    assert!(!p
        .depot
        .join("objects-v1")
        .join(&hex[..2])
        .join(&hex)
        .exists());
    // A blob that starts like zstd but is not a valid stream.
    let mut fake = vec![0x28, 0xB5, 0x2F, 0xFD];
    fake.extend_from_slice(b"garbage");
    assert_refused(
        &p,
        &zst(&tar_of(&[file(&name, &fake)])),
        "not a valid zstd stream",
    );
}

#[test]
fn an_entry_naming_a_blob_that_is_nowhere_is_refused() {
    let p = built();
    let inputs = b"{\"env\":{}}".to_vec();
    let e = entry(
        "ghost",
        Digest::of(b"in no archive, in no depot"),
        Digest::of(&inputs),
    );
    assert_refused(
        &p,
        &zst(&tar_of(&[blob(&inputs), entry_member(&e)])),
        "neither in the archive nor in the depot",
    );
    // Its key does not appear in the depot.
    assert!(!p.depot.join(entry_path(&e.key)).exists());
}

#[test]
fn an_entry_writing_through_its_own_symlink_is_refused() {
    let p = built();
    let inputs = b"{}".to_vec();
    let out = b"x".to_vec();
    let mut e = entry("linker", Digest::of(&out), Digest::of(&inputs));
    let outside = p.tmp.path().join("outside");
    e.outputs = vec![
        OutputRecord {
            path: RelPath::new("out/link").unwrap(),
            kind: OutputKind::Symlink,
            digest: None,
            size: 0,
            executable: false,
            mode: None,
            target: Some(outside.display().to_string()),
        },
        OutputRecord {
            path: RelPath::new("out/link/evil").unwrap(),
            ..e.outputs[0].clone()
        },
    ];
    assert_refused(
        &p,
        &zst(&tar_of(&[blob(&inputs), blob(&out), entry_member(&e)])),
        "which is not a directory",
    );
    assert!(!outside.exists());
}

#[test]
fn an_entry_member_twice_is_refused() {
    let p = built();
    let inputs = b"{}".to_vec();
    let out = b"x".to_vec();
    let e = entry("twice", Digest::of(&out), Digest::of(&inputs));
    assert_refused(
        &p,
        &zst(&tar_of(&[
            blob(&inputs),
            blob(&out),
            entry_member(&e),
            entry_member(&e),
        ])),
        "appears twice",
    );
}

#[test]
fn an_entry_filed_under_another_key_is_refused() {
    let p = built();
    let inputs = b"{}".to_vec();
    let out = b"x".to_vec();
    let e = entry("impostor", Digest::of(&out), Digest::of(&inputs));
    let mut m = entry_member(&e);
    m.path = entry_path(&Key(Digest::of(b"another key")));
    assert_refused(
        &p,
        &zst(&tar_of(&[blob(&inputs), blob(&out), m])),
        "under another name",
    );
}

#[test]
fn a_rejected_archive_publishes_none_of_its_valid_entries() {
    let p = built();
    let archive = pack(&p, "ci.tar.zst", &[]);
    let bad = genuine_plus(
        &archive,
        &[file(&blob_path(&Digest::of(b"promised")), b"delivered")],
    );
    let fresh = p.tmp.path().join("fresh");
    let file_path = p.tmp.path().join("bad.tar.zst");
    std::fs::write(&file_path, bad).unwrap();
    let r = with_depot(&p, &fresh, &["unpack", file_path.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["not to its name"]);
    let entries = walkdir::WalkDir::new(fresh.join("entries-v2"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(entries, 0, "the three valid entries must not be published");
    assert_depot_valid(&fresh);
    // Nothing hits from it: everything is built again.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = with_depot(&p, &fresh, &["build", "--json"]);
    assert_eq!(b.json()["built"], 3, "{}", b.stderr);
}

#[test]
fn an_archive_over_max_size_is_refused() {
    let p = built();
    let archive = std::fs::read(pack(&p, "ci.tar.zst", &[])).unwrap();
    let file_path = p.tmp.path().join("big.tar.zst");
    std::fs::write(&file_path, &archive).unwrap();
    let before = p.entries();
    let r = p.run(&["unpack", file_path.to_str().unwrap(), "--max-size", "4K"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["--max-size"]);
    assert_eq!(p.entries(), before);
    // Into a fresh depot too: nothing published.
    let fresh = p.tmp.path().join("fresh");
    let r = with_depot(
        &p,
        &fresh,
        &["unpack", file_path.to_str().unwrap(), "--max-size", "4K"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_depot_valid(&fresh);
    assert!(Depot::open_existing(&fresh)
        .unwrap()
        .list_entries()
        .unwrap()
        .is_empty());
    // A bad size is a usage error.
    let r = p.run(&["unpack", file_path.to_str().unwrap(), "--max-size", "lots"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn a_compression_bomb_is_refused() {
    let p = built();
    // 20 MiB of zeros named by their true digest compress to a few KiB.
    const LEN: u64 = 20 << 20;
    let zeros = vec![0u8; 1 << 20];
    let mut h = blake3::Hasher::new();
    for _ in 0..(LEN >> 20) {
        h.update(&zeros);
    }
    let d = Digest::from(h.finalize());
    let path = p.tmp.path().join("bomb.tar.zst");
    let enc = zstd::Encoder::new(std::fs::File::create(&path).unwrap(), 3).unwrap();
    let mut b = tar::Builder::new(enc);
    let mut hd = header(&file(&blob_path(&d), b""));
    hd.set_size(LEN);
    hd.set_cksum();
    b.append(&hd, std::io::repeat(0).take(LEN)).unwrap();
    b.into_inner().unwrap().finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() < 64 * 1024,
        "the bomb is small: {}",
        bytes.len()
    );
    assert_refused(&p, &bytes, "decompression bomb");
    let hex = d.to_hex();
    assert!(!p
        .depot
        .join("objects-v1")
        .join(&hex[..2])
        .join(&hex)
        .exists());
}

#[test]
fn blobs_that_are_small_zstd_frames_of_huge_content_are_refused() {
    // Each blob member is a valid, correctly named zstd frame of 64 MiB of
    // zeros: alone within --max-size, and the archive stream itself barely
    // expands; together their content is a bomb.
    let p = built();
    const LEN: u64 = 64 << 20;
    let zeros = vec![0u8; LEN as usize];
    let d = Digest::of(&zeros);
    let frame = zstd::encode_all(&zeros[..], 19).unwrap();
    assert!(frame.len() < 64 * 1024, "{}", frame.len());
    let members: Vec<Member> = (0..6).map(|_| file(&blob_path(&d), &frame)).collect();
    let started = std::time::Instant::now();
    assert_refused(&p, &zst(&tar_of(&members)), "decompress to more than");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // Trusted, with the ratio rule off, the same blobs are fine.
    let file_path = p.tmp.path().join("zeros.tar.zst");
    std::fs::write(&file_path, zst(&tar_of(&members[..1]))).unwrap();
    let r = p.run(&["unpack", file_path.to_str().unwrap(), "--max-ratio", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_truncated_archive_fails_cleanly() {
    let p = built();
    let archive = std::fs::read(pack(&p, "ci.tar.zst", &[])).unwrap();
    // Cut inside the zstd frame.
    assert_refused(&p, &archive[..archive.len() / 2], "corrupt or truncated");
    assert_refused(&p, &archive[..archive.len() - 1], "corrupt or truncated");
    // A valid zstd stream of a tar cut at a member boundary: every member is
    // complete but tar's end-of-archive marker is missing.
    let raw = zstd::decode_all(&archive[..]).unwrap();
    let cut = raw.len() - 1024;
    assert!(raw[cut..].iter().all(|b| *b == 0));
    let fresh = p.tmp.path().join("fresh");
    let f = p.tmp.path().join("cut.tar.zst");
    std::fs::write(&f, zst(&raw[..cut])).unwrap();
    let r = with_depot(&p, &fresh, &["unpack", f.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    r.assert_stderr_has(&["truncated"]);
    assert!(Depot::open_existing(&fresh)
        .unwrap()
        .list_entries()
        .unwrap()
        .is_empty());
    assert_depot_valid(&fresh);
    // Not zstd at all.
    assert_refused(&p, b"this is not an archive", "corrupt or truncated");
}

// ------------------------------------------------------------------- hash

fn tree(root: &Path) {
    for (path, content) in [
        ("src/main.c", "int main(void) { return 0; }\n"),
        ("src/lib/util.c", "int util(void) { return 1; }\n"),
        ("src/lib/util.h", "int util(void);\n"),
        ("Cargo.lock", "# lock\n"),
        (".gitignore", "build/\n"),
        ("build/generated.c", "int generated;\n"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn digest_of(dir: &Path, args: &[&str]) -> String {
    let mut a = vec!["-C", dir.to_str().unwrap(), "hash"];
    a.extend_from_slice(args);
    let mut c = bin();
    c.args(&a);
    let r = output(c);
    r.ok();
    let line = r.stdout.trim().to_owned();
    assert_eq!(line.len(), 64, "one digest on stdout: {}", r.stdout);
    line
}

#[test]
fn hash_is_the_same_at_another_path_and_changes_with_one_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("somewhere/else/entirely/b");
    tree(&a);
    std::fs::create_dir_all(&b).unwrap();
    copy_tree(&a, &b);
    let args = ["src/**/*.c", "Cargo.lock"];
    let da = digest_of(&a, &args);
    assert_eq!(da, digest_of(&b, &args), "same tree, another path");
    // From inside the directory instead of -C: the same.
    let r = run_in(&b, &["hash", "src/**/*.c", "Cargo.lock"]);
    assert_eq!(r.stdout.trim(), da);
    // Argument order and duplicates do not matter.
    assert_eq!(
        digest_of(&a, &["Cargo.lock", "src/**/*.c", "src/main.c"]),
        da
    );
    // mtimes do not count.
    let s = std::process::Command::new("touch")
        .args(["-d", "2031-01-01 00:00:00"])
        .arg(b.join("src/main.c"))
        .status()
        .unwrap();
    assert!(s.success());
    assert_eq!(digest_of(&b, &args), da);
    // One byte changes it.
    std::fs::write(b.join("src/main.c"), "int main(void) { return 1; }\n").unwrap();
    assert_ne!(digest_of(&b, &args), da);
    // So does a rename.
    std::fs::rename(a.join("src/main.c"), a.join("src/main2.c")).unwrap();
    assert_ne!(digest_of(&a, &args), da);
}

/// (path, digest) of each file in `hash --json`'s output, in its order.
fn hashed_files(j: &serde_json::Value) -> Vec<(String, String)> {
    j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn hash_json_lists_each_file_and_skips_ignored_ones_in_globs() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let mut c = bin();
    c.arg("-C")
        .arg(tmp.path())
        .args(["hash", "--json", "**/*.c"]);
    let r = output(c);
    r.ok();
    let j = r.json();
    let files = hashed_files(&j);
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["src/lib/util.c", "src/main.c"], "build/ is ignored");
    assert_eq!(
        files[1].1,
        blake3::hash(b"int main(void) { return 0; }\n")
            .to_hex()
            .to_string()
    );
    assert_eq!(j["digest"].as_str().unwrap().len(), 64);
    // Named literally, an ignored file counts; a directory means its files.
    let with_ignored = digest_of(tmp.path(), &["**/*.c", "build/generated.c"]);
    assert_ne!(with_ignored, j["digest"].as_str().unwrap());
    assert_eq!(
        digest_of(tmp.path(), &["src"]),
        digest_of(tmp.path(), &["src/**"])
    );
}

/// A walked file is read to its end without a stat; a named one with its
/// size known. Both give every size the blake3 of its bytes, and a link its
/// target text.
#[test]
fn hash_reads_files_of_every_size_alike_walked_or_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    std::fs::create_dir_all(&d).unwrap();
    let k = 64 * 1024;
    let sizes = [0, 1, k - 1, k, k + 1, 300 * 1024, 5 << 20];
    let mut want = std::collections::BTreeMap::new();
    for size in sizes {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let name = format!("d/f{size:08}");
        std::fs::write(tmp.path().join(&name), &data).unwrap();
        want.insert(name, blake3::hash(&data).to_hex().to_string());
    }
    std::os::unix::fs::symlink("f00000001", d.join("link")).unwrap();
    want.insert(
        "d/link".to_owned(),
        blake3::hash(b"f00000001").to_hex().to_string(),
    );
    let mut c = bin();
    c.arg("-C").arg(tmp.path()).args(["hash", "--json", "d"]);
    let r = output(c);
    r.ok();
    let j = r.json();
    let got: std::collections::BTreeMap<String, String> = hashed_files(&j).into_iter().collect();
    assert_eq!(got, want);
    let walked = j["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest_of(tmp.path(), &["d/*"]), walked, "a glob walks too");
    let named: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(digest_of(tmp.path(), &named), walked, "named, with sizes");
}

#[test]
fn hash_of_nothing_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path());
    let d = tmp.path().to_str().unwrap();
    for args in [
        vec!["-C", d, "hash", "**/*.rs"],
        vec!["-C", d, "hash", "missing.txt"],
        vec!["-C", d, "hash", "../outside"],
        vec!["-C", d, "hash", "src/[oops"],
        vec!["-C", d, "hash"],
    ] {
        let mut c = bin();
        c.args(&args);
        let r = output(c);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        r.assert_stderr_lacks(&["panicked"]);
    }
}

#[test]
fn help_shows_examples() {
    for cmd in ["pack", "unpack", "hash"] {
        let mut c = bin();
        c.args([cmd, "--help"]);
        let r = output(c);
        r.ok();
        assert!(r.stdout.contains("Examples:"), "{cmd}: {}", r.stdout);
        r.assert_stdout_has(&[&format!("relocache {cmd}")]);
    }
}

/// A project whose one target writes blobs of every size class the packer
/// treats differently: empty, tiny (raw), around and across the 128 KiB
/// stored-block size, and a raw one past the 4 MiB the verifier keeps in
/// memory.
fn sized_outputs() -> Project {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, n) in [0usize, 1, 131_071, 131_072, 131_073, 400_000, 6_000_000]
        .into_iter()
        .enumerate()
    {
        // Half text, half noise: stored zstd-compressed, and not a multiple
        // of anything once compressed.
        let mut data: Vec<u8> = "compressible text line\n"
            .bytes()
            .cycle()
            .take(n - n / 2)
            .collect();
        data.extend(noise(n / 2, i as u64 + 1));
        files.push((format!("blob{i}.bin"), data));
    }
    // Incompressible, so stored raw: exactly one block, and past 4 MiB
    // (verified and packed by streaming, not in memory).
    files.push(("raw.bin".to_owned(), noise(131_072, 99)));
    files.push(("big-raw.bin".to_owned(), noise(4_500_000, 98)));
    for (name, data) in &files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let src = dir.path().to_str().unwrap().to_owned();
    let p = Project::new(
        &format!("[target.t]\nrun = \"mkdir -p out && cp {src}/*.bin out/\"\noutputs = ['out']\n"),
        &[],
    );
    p.build(&[]).ok();
    // The source files must outlive the build only.
    drop(dir);
    p
}

#[test]
fn blobs_of_every_size_round_trip_through_pack_and_unpack() {
    let p = sized_outputs();
    let want = outside_depot(&p.root.join("out"), &p.depot);
    let archive = pack(&p, "sizes.tar.zst", &[]);
    // A standard stream: the zstd tool checks every frame.
    let t = std::process::Command::new("zstd")
        .arg("-tq")
        .arg(&archive)
        .status()
        .expect("zstd runs");
    assert!(t.success(), "zstd -t rejects the archive");

    // --fsync changes durability, never bytes.
    let synced = p.tmp.path().join("synced.tar.zst");
    p.run(&["pack", synced.to_str().unwrap(), "--fsync"]).ok();
    assert!(std::fs::read(&synced).unwrap() == std::fs::read(&archive).unwrap());

    let fresh = p.tmp.path().join("fresh-depot");
    with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap()]).ok();
    assert_depot_valid(&fresh);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = with_depot(&p, &fresh, &["build", "--json"]);
    b.ok();
    assert_eq!(b.outcome("t"), "hit");
    assert_eq!(outside_depot(&p.root.join("out"), &p.depot), want);
}

#[test]
fn pack_leaves_out_an_entry_whose_compressed_blob_is_damaged() {
    let p = sized_outputs();
    // Flip a byte in the middle of every zstd-stored blob of 400 kB.
    // Loose, or (the packed pass) in a pack.
    let depot = Depot::open_existing(&p.depot).unwrap();
    let mut blobs = depot.list_blobs().unwrap();
    blobs.extend(
        relocache::depot::packs::PackSet::load(&depot, false)
            .unwrap()
            .digests(),
    );
    let mut damaged = 0;
    for d in blobs {
        let at = stored(&p.depot, &d);
        let bytes = at.read();
        if bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
            && bytes.len() > 150_000
            && bytes.len() < 1 << 20
        {
            at.flip(at.len / 2, 0x55);
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1, "one blob of that size class");
    let whole = p.tmp.path().join("whole.tar.zst");
    let r = p.run(&["pack", whole.to_str().unwrap(), "--json"]);
    r.ok();
    r.assert_stderr_has(&["corrupt"]);
    assert_eq!(r.json()["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 0);
    assert!(p.depot.join("quarantine").read_dir().unwrap().count() == 1);
}

#[test]
fn pack_removes_the_temporary_archives_of_packs_that_died() {
    let p = built();
    let dir = p.tmp.path().join("ci");
    std::fs::create_dir(&dir).unwrap();
    // Named as relocache names them: `.relocache-pack-{pid}-{n}-{random}.tmp`.
    let tmp = |n: &str| {
        let f = dir.join(format!(".relocache-pack-1-{n}-0123456789abcdef.tmp"));
        std::fs::write(&f, b"half an archive").unwrap();
        f
    };
    let age = |f: &Path| {
        let ok = std::process::Command::new("touch")
            .args(["-d", "5 minutes ago"])
            .arg(f)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let dead = tmp("1");
    age(&dead);
    let running = tmp("2");
    age(&running);
    let holder = std::fs::File::open(&running).unwrap();
    holder.lock().unwrap(); // a pack still writing it
    let young = tmp("3");
    let users = dir.join(".relocache-pack-notes.tmp");
    std::fs::write(&users, b"a user's file").unwrap();
    age(&users);
    let out = dir.join("a.tar.zst");
    p.run(&["pack", out.to_str().unwrap()]).ok();
    assert!(out.is_file());
    assert!(!dead.exists(), "a dead pack's file is removed");
    assert!(running.exists(), "a live pack's file stays");
    assert!(young.exists(), "a file just created stays");
    assert!(
        users.exists(),
        "a file not named as relocache names them stays"
    );
    drop(holder);
}

#[test]
fn pack_counts_an_entry_that_does_not_parse_as_left_out() {
    let p = built();
    let e = walkdir::WalkDir::new(p.depot.join("entries-v2"))
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.file_type().is_file())
        .unwrap();
    std::fs::write(e.path(), "garbage\n").unwrap();
    let out = p.tmp.path().join("x.tar.zst");
    let r = p.run(&["pack", out.to_str().unwrap()]);
    r.ok();
    r.assert_stderr_has(&["not packed: entry", "(1 left out"]);
    let j = p.run(&["pack", out.to_str().unwrap(), "--json"]).json();
    assert_eq!(j["skipped"].as_array().unwrap().len(), 1, "{j}");
}

// ------------------------------------------------- unpack into one pack

/// A project whose one target writes `n` small files of distinct content
/// (one blob each) and one large incompressible file (streamed, raw).
fn many_outputs(n: usize) -> Project {
    let p = Project::new(
        &format!(
            "[target.many]\nrun = '''mkdir -p out && for i in $(seq 1 {n}); do echo \"file $i of {n}\" > out/f$i.txt; done && cp big.bin out/big.bin'''\ninputs = ['big.bin']\noutputs = ['out']\n"
        ),
        &[],
    );
    std::fs::write(p.path("big.bin"), noise(5 << 20, 3)).unwrap();
    p.build(&[]).ok();
    p
}

#[test]
fn unpack_of_a_thousand_blobs_writes_one_pack_and_no_loose_blob() {
    let p = many_outputs(1000);
    let want = outside_depot(&p.root.join("out"), &p.depot);
    assert_eq!(want.len(), 1001);
    let archive = pack(&p, "many.tar.zst", &[]);

    let fresh = p.tmp.path().join("fresh-depot");
    let r = with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap()]);
    r.ok();
    r.assert_stderr_has(&["written into one pack"]);
    std::fs::remove_dir_all(&fresh).unwrap();
    let r = with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap(), "--json"]);
    r.ok();
    let j = r.json();
    assert!(j["blobs_added"].as_u64().unwrap() >= 1001, "{j}");
    let id = j["pack"].as_str().expect("the summary names the pack");
    let objects = fresh.join("objects-v1");
    assert_eq!(
        files_below(&objects),
        [
            PathBuf::from(format!("packs/pack-{id}.idx")),
            PathBuf::from(format!("packs/pack-{id}.pack")),
        ],
        "one pack and its index, no loose blob"
    );
    assert_depot_valid(&fresh);

    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = with_depot(&p, &fresh, &["build", "--json"]);
    b.ok();
    assert_eq!(b.outcome("many"), "hit");
    assert_eq!(outside_depot(&p.root.join("out"), &p.depot), want);

    // Everything is present now: a second unpack writes nothing.
    let again = with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap(), "--json"]);
    again.ok();
    assert_eq!(again.json()["blobs_added"], 0);
    assert!(again.json()["pack"].is_null());
    assert_eq!(files_below(&objects).len(), 2);
}

#[test]
fn unpack_skips_blobs_the_depot_has_loose_or_packed() {
    let p = many_outputs(300);
    let archive = pack(&p, "many.tar.zst", &[]);
    let packs_before = files_below(&p.depot.join("objects-v1/packs"));
    // The same depot, its blobs loose (or, in the packed pass, packed):
    // none of them is written again.
    let r = p.run(&["unpack", archive.to_str().unwrap(), "--json"]);
    r.ok();
    assert_eq!(r.json()["blobs_added"], 0);
    assert!(r.json()["pack"].is_null());
    assert_eq!(
        files_below(&p.depot.join("objects-v1/packs")),
        packs_before,
        "no pack written"
    );
    // Packed blobs count as present too.
    let d = Depot::open_existing(&p.depot).unwrap();
    relocache::depot::packs::pack_loose_blobs(&d).unwrap();
    let r = p.run(&["unpack", archive.to_str().unwrap(), "--json"]);
    r.ok();
    assert_eq!(r.json()["blobs_added"], 0);
    assert!(r.json()["blobs_present"].as_u64().unwrap() >= 301);
    assert_eq!(files_below(&p.depot.join("objects-v1")).len(), 2);
}

#[test]
fn a_small_archive_keeps_its_blobs_loose() {
    let p = built();
    let archive = pack(&p, "small.tar.zst", &[]);
    let fresh = p.tmp.path().join("fresh-depot");
    let r = with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap(), "--json"]);
    r.ok();
    assert!(r.json()["pack"].is_null());
    let objects = fresh.join("objects-v1");
    let files = files_below(&objects);
    assert_eq!(
        files.len() as u64,
        r.json()["blobs_added"].as_u64().unwrap()
    );
    assert!(files.iter().all(|f| !f.starts_with("packs")), "{files:?}");
    let config = std::fs::read_to_string(fresh.join("DEPOT.toml")).unwrap();
    assert!(
        config.contains("format = 2"),
        "no pack, no format 3: {config}"
    );
}

#[test]
fn a_refused_archive_leaves_no_pack() {
    let p = many_outputs(200);
    let archive = pack(&p, "many.tar.zst", &[]);
    // The genuine archive plus an entry naming a blob that is nowhere: every
    // blob is read (and streamed into the pack) before the refusal.
    let orphan = entry("ghost", Digest::of(b"nowhere"), Digest::of(b"none"));
    let bad = genuine_plus(&archive, &[entry_member(&orphan)]);
    let file = p.tmp.path().join("ghost.tar.zst");
    std::fs::write(&file, bad).unwrap();
    let fresh = p.tmp.path().join("fresh-depot");
    let r = with_depot(&p, &fresh, &["unpack", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["neither in the archive nor in the depot"]);
    assert_eq!(
        files_below(&fresh.join("objects-v1")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(files_below(&fresh.join("tmp")), Vec::<PathBuf>::new());
}

#[test]
fn new_blobs_after_batches_the_depot_all_holds_still_go_into_the_pack() {
    // unpack appends checked batches of small blobs on a thread started by
    // the first batch. When the first batches hold only blobs the depot
    // has, no pack is open yet: the blobs that come after them must still
    // be written, never counted and dropped.
    let p = many_outputs(300);
    let archive = pack(&p, "many.tar.zst", &[]);
    let fresh = p.tmp.path().join("fresh-depot");
    with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap()]).ok();
    // The same archive again (every blob present: two full batches and
    // more), then 150 new blobs and an entry naming two of them.
    let news: Vec<Vec<u8>> = (0..150)
        .map(|i| format!("late blob {i}").into_bytes())
        .collect();
    let mut extra: Vec<Member> = news.iter().map(|c| blob(c)).collect();
    let late = entry("late", Digest::of(&news[0]), Digest::of(&news[1]));
    extra.push(entry_member(&late));
    let file = p.tmp.path().join("late.tar.zst");
    std::fs::write(&file, genuine_plus(&archive, &extra)).unwrap();
    let r = with_depot(&p, &fresh, &["unpack", file.to_str().unwrap(), "--json"]);
    r.ok();
    assert_eq!(r.json()["blobs_added"], 150, "{}", r.render());
    assert!(r.json()["pack"].is_string(), "{}", r.render());
    let d = Depot::open_existing(&fresh).unwrap();
    for c in &news {
        assert!(d.has_blob(&Digest::of(c)), "a new blob was dropped");
        let mut back = Vec::new();
        d.copy_blob(&Digest::of(c), &mut back).unwrap();
        assert_eq!(&back, c);
    }
}

#[test]
fn a_pack_write_that_fails_mid_unpack_publishes_nothing_and_leaves_no_pack() {
    // The appender thread writes checked batches into the pack; a write of
    // it failing (here: past the file size limit, as a full disk would)
    // must fail the unpack, publish no entry and leave no pack behind.
    let p = Project::new(
        "[target.many]\nrun = '''mkdir -p out && for i in $(seq 1 400); do seq $i $((i + 300)) > out/f$i.txt; done'''\noutputs = ['out']\n",
        &[],
    );
    p.build(&[]).ok();
    let archive = pack(&p, "many.tar.zst", &[]);
    let fresh = p.tmp.path().join("fresh-depot");
    let mut c = without_relocache_env(std::process::Command::new("sh"));
    // SIGXFSZ ignored: a write past the limit fails with EFBIG instead.
    c.args(["-c", "trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_relocache"))
        .arg("--depot")
        .arg(&fresh)
        .args(["unpack", archive.to_str().unwrap()]);
    let r = output(c);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["File too large"])
        .assert_stderr_lacks(&["panicked"]);
    let left: Vec<PathBuf> = files_below(&fresh)
        .into_iter()
        .filter(|f| {
            f.starts_with("entries-v2") || f.starts_with("objects-v1") || f.starts_with("tmp")
        })
        .collect();
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "no entry, pack or temporary file"
    );
    // Without the limit the same archive unpacks, complete and sound.
    let r = with_depot(&p, &fresh, &["unpack", archive.to_str().unwrap(), "--json"]);
    r.ok();
    assert!(r.json()["pack"].is_string(), "{}", r.render());
    with_depot(&p, &fresh, &["verify", "--integrity"]).ok();
}
