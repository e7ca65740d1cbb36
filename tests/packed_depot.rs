//! A depot whose blobs live in packs (`objects-v1/packs/`) behaves like the
//! same depot with every blob loose: builds restore the same bytes and
//! modes, `verify --integrity` is clean, `pack` writes the same archive; and
//! a damaged pack is detected by `verify`, never restored from, and the
//! targets that needed it rebuild. The depot is built by the real binary and
//! packed through the library (`pack_loose_blobs`, what `gc --repack` uses).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use relocache::depot::packs::{self, decode_index, encode_index, PackId};
use relocache::depot::Depot;
use relocache::digest::Digest;

/// Targets whose outputs cover every stored form: a small text (zstd), a
/// large compressible file (zstd), an executable script, a small and a
/// large incompressible file (raw; the large one aligned in a pack).
fn project() -> Project {
    let p = Project::new(
        r#"
[target.text]
run = "mkdir -p out && cp small.txt out/small.txt && cp big.txt out/big.txt"
inputs = ["small.txt", "big.txt"]
outputs = ["out/small.txt", "out/big.txt"]

[target.tool]
run = "cp tool.sh out-tool.sh && chmod 0750 out-tool.sh"
inputs = ["tool.sh"]
outputs = ["out-tool.sh"]

[target.noise]
run = "cp noise.bin out-noise.bin && cp tiny.bin out-tiny.bin && chmod 0600 out-tiny.bin"
inputs = ["noise.bin", "tiny.bin"]
outputs = ["out-noise.bin", "out-tiny.bin"]
"#,
        &[
            ("small.txt", "hello\n"),
            ("tool.sh", "#!/bin/sh\necho tool\n"),
        ],
    );
    std::fs::write(p.path("big.txt"), "compressible line\n".repeat(20_000)).unwrap();
    std::fs::write(p.path("noise.bin"), noise(50_000, 7)).unwrap();
    std::fs::write(p.path("tiny.bin"), noise(300, 9)).unwrap();
    p
}

const OUTPUTS: [&str; 5] = [
    "out/small.txt",
    "out/big.txt",
    "out-tool.sh",
    "out-noise.bin",
    "out-tiny.bin",
];

/// Each output's bytes and permission bits.
fn snapshot(p: &Project) -> Vec<(Vec<u8>, u32)> {
    OUTPUTS
        .iter()
        .map(|o| {
            let path = p.path(o);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            (std::fs::read(&path).unwrap(), mode)
        })
        .collect()
}

fn remove_outputs(p: &Project) {
    for o in OUTPUTS {
        std::fs::remove_file(p.path(o)).unwrap();
    }
}

/// Moves every loose blob of the project's depot into one pack.
fn pack_depot(p: &Project) {
    let depot = Depot::open_existing(&p.depot).unwrap();
    let done = packs::pack_loose_blobs(&depot).unwrap();
    assert!(done.blobs > 0 && done.blobs == done.removed, "{done:?}");
}

fn problem_kinds(p: &Project, args: &[&str]) -> (i32, Vec<String>) {
    let mut a = vec!["verify", "--json"];
    a.extend_from_slice(args);
    let r = p.run(&a);
    (r.code, r.problem_kinds())
}

fn archive(p: &Project, name: &str) -> Vec<u8> {
    let file = p.tmp.path().join(name);
    p.run(&["pack", file.to_str().unwrap()]).ok();
    std::fs::read(file).unwrap()
}

#[test]
fn a_packed_depot_restores_verifies_and_archives_like_a_loose_one() {
    let p = project();
    p.build(&[]).ok();
    let built = snapshot(&p);
    let loose_archive = archive(&p, "loose.tar.zst");

    pack_depot(&p);
    let toml = std::fs::read_to_string(p.depot.join("DEPOT.toml")).unwrap();
    assert!(
        toml.contains("format = 3"),
        "the first pack bumps the format: {toml}"
    );
    assert_eq!(problem_kinds(&p, &["--integrity"]), (0, vec![]));
    assert_eq!(
        archive(&p, "packed.tar.zst"),
        loose_archive,
        "an archive of packed blobs is byte-identical to one of the same blobs loose"
    );
    let stats = p.run(&["stats", "--json"]);
    let s = stats.ok().json();
    assert_eq!(
        (s["packs"].as_u64(), s["loose_blobs"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(s["packed_blobs"].as_u64().unwrap() >= 5, "{s}");

    for mode in ["copy", "reflink", "hardlink"] {
        remove_outputs(&p);
        let mut c = p.cmd(&["build", "--json"]);
        c.env("RELOCACHE_RESTORE", mode);
        let r = output(c);
        r.ok();
        for t in ["text", "tool", "noise"] {
            assert_eq!(r.outcome(t), "hit", "{mode}: {}", r.stdout);
        }
        assert_eq!(snapshot(&p), built, "{mode}: same bytes and modes as built");
    }
    // Nothing was written loose by the hits.
    let depot = Depot::open_existing(&p.depot).unwrap();
    assert!(depot.list_blobs().unwrap().is_empty());
}

/// The one pack of the project's depot: its id, pack and index paths.
fn the_pack(p: &Project) -> (PackId, PathBuf, PathBuf) {
    let dir = p.depot.join("objects-v1/packs");
    let idx = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("an index");
    let stem = idx.file_stem().unwrap().to_str().unwrap();
    let id: PackId = stem.strip_prefix("pack-").unwrap().parse().unwrap();
    (id, dir.join(format!("pack-{id}.pack")), idx)
}

/// Writes `index` bytes for `pack` under the id `body` hashes to, as a
/// damage that also forged the checksum and the name would leave it.
fn republish(pack: &Path, old_index: &Path, index: &[u8]) {
    let body = &index[24..index.len() - 32];
    let id = Digest(*blake3::hash(body).as_bytes()).to_hex();
    let dir = pack.parent().unwrap();
    std::fs::remove_file(old_index).unwrap();
    std::fs::rename(pack, dir.join(format!("pack-{id}.pack"))).unwrap();
    std::fs::write(dir.join(format!("pack-{id}.idx")), index).unwrap();
}

/// Builds, packs, damages the pack with `damage`, then checks `verify`
/// reports `kind`, and that a build after deleting the outputs restores
/// nothing from the damage: the affected targets rebuild, with correct
/// outputs.
fn damaged(kind: &str, integrity: bool, damage: impl FnOnce(&Project)) {
    let p = project();
    p.build(&[]).ok();
    let built = snapshot(&p);
    pack_depot(&p);
    damage(&p);
    let args: &[&str] = if integrity { &["--integrity"] } else { &[] };
    let (code, kinds) = problem_kinds(&p, args);
    assert_eq!(code, 1, "{kind}: {kinds:?}");
    assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    remove_outputs(&p);
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("noise"), "built", "{kind}: {}", r.stdout);
    assert_eq!(
        snapshot(&p),
        built,
        "{kind}: outputs are what a clean build makes"
    );
    // The rebuilt blobs are loose again, and loose wins: the next build hits.
    remove_outputs(&p);
    let r = p.build(&[]);
    assert_eq!(r.outcome("noise"), "hit", "{kind}: {}", r.stdout);
    assert_eq!(snapshot(&p), built);
    // `gc --repack` keeps the rebuilt blob loose where its packed copy is
    // damaged (readers never look past it): the next build still hits.
    p.run(&["gc", "--repack"]).ok();
    remove_outputs(&p);
    let r = p.build(&[]);
    assert_eq!(r.outcome("noise"), "hit", "{kind}: {}", r.stdout);
    assert_eq!(snapshot(&p), built);
}

/// Flips a byte inside `noise.bin`'s blob, stored in a pack.
fn flip_packed_noise(p: &Project) {
    let d = Digest::of(&std::fs::read(p.path("noise.bin")).unwrap());
    let at = stored(&p.depot, &d);
    assert!(at.packed, "noise.bin's blob is packed");
    at.flip(1000, 0x40);
}

#[test]
fn a_flipped_byte_in_a_pack_is_never_restored_and_its_target_rebuilds() {
    damaged("corrupt-packed-blob", true, |p| {
        flip_packed_noise(p);
    });
}

#[test]
fn a_truncated_pack_hides_its_blobs_and_their_targets_rebuild() {
    damaged("damaged-pack-index", false, |p| {
        let (_, pack, _) = the_pack(p);
        let len = std::fs::metadata(&pack).unwrap().len();
        let f = std::fs::File::options().write(true).open(&pack).unwrap();
        f.set_len(len - 100).unwrap();
    });
}

/// Rewrites the pack's index, sealed, with every entry past the pack's end.
fn point_past_the_end(p: &Project) {
    let (id, pack, idx) = the_pack(p);
    let mut entries = decode_index(&std::fs::read(&idx).unwrap(), Some(&id)).unwrap();
    let len = std::fs::metadata(&pack).unwrap().len();
    for e in entries.iter_mut() {
        e.offset += len;
    }
    let (_, bytes) = encode_index(&mut entries);
    republish(&pack, &idx, &bytes);
}

#[test]
fn a_sealed_index_pointing_past_the_end_is_refused() {
    damaged("damaged-pack-index", false, |p| {
        point_past_the_end(p);
    });
}

/// The index at `idx` with its first two entries swapped, sealed again:
/// out of order, though its checksum holds.
fn swapped_and_resealed(idx: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(idx).unwrap();
    let (a, b) = (24, 24 + 64);
    let first = bytes[a..b].to_vec();
    bytes.copy_within(b..b + 64, a);
    bytes[b..b + 64].copy_from_slice(&first);
    let n = bytes.len() - 32;
    let sum = *blake3::hash(&bytes[..n]).as_bytes();
    bytes[n..].copy_from_slice(&sum);
    bytes
}

#[test]
fn a_sealed_index_out_of_order_is_refused() {
    damaged("damaged-pack-index", false, |p| {
        let (_, pack, idx) = the_pack(p);
        republish(&pack, &idx, &swapped_and_resealed(&idx));
    });
}

#[test]
fn an_index_without_its_pack_is_reported_as_missing_pack() {
    damaged("missing-pack", false, |p| {
        let (_, pack, _) = the_pack(p);
        std::fs::remove_file(pack).unwrap();
    });
}

/// Builds, packs, damages the pack's index (or pack) with `damage`, which
/// returns the targets whose blobs it left sound; then runs `gc`: the
/// damaged pair goes to `quarantine/`, `verify --integrity` is clean, and
/// after deleting the outputs those targets restore while every other one
/// rebuilds; every output is what a clean build makes. Returns gc's
/// `salvaged` report.
fn salvaged(damage: impl FnOnce(&Project) -> Vec<&'static str>) -> serde_json::Value {
    let p = project();
    p.build(&[]).ok();
    let built = snapshot(&p);
    pack_depot(&p);
    let hits = damage(&p);
    let (code, kinds) = problem_kinds(&p, &[]);
    assert_eq!(code, 1);
    assert!(kinds.iter().any(|k| k == "damaged-pack-index"), "{kinds:?}");

    let dry = p.run(&["gc", "--dry-run", "--json"]);
    let dry_report = dry.ok().json()["salvaged"].clone();
    assert!(
        std::fs::read_dir(p.depot.join("objects-v1/packs"))
            .unwrap()
            .count()
            == 2,
        "a dry run moves nothing"
    );
    let gc = p.run(&["gc", "--json"]);
    let report = gc.ok().json()["salvaged"].clone();
    assert_eq!(report["packs"], 1, "{}", gc.stdout);
    assert_eq!(report["blobs"], dry_report["blobs"], "{}", dry.stdout);
    assert_eq!(report["lost"], dry_report["lost"], "{}", dry.stdout);
    assert!(
        gc.stdout.contains("moved to quarantine/"),
        "a warning says where the pack went: {}",
        gc.stdout
    );
    let mut moved: Vec<String> = std::fs::read_dir(p.depot.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pack-"))
        .map(|n| {
            n.rsplit_once('.')
                .unwrap()
                .0
                .rsplit_once('.')
                .unwrap()
                .1
                .to_owned()
        })
        .collect();
    moved.sort();
    assert_eq!(moved, ["idx", "pack"], "the pair is kept, not deleted");
    assert_eq!(problem_kinds(&p, &["--integrity"]), (0, vec![]));
    check_depot_invariants(&p.depot);

    remove_outputs(&p);
    let r = p.build(&[]);
    r.ok();
    for t in ["text", "tool", "noise"] {
        let want = if hits.contains(&t) { "hit" } else { "built" };
        assert_eq!(r.outcome(t), want, "{t}: {}", r.stdout);
    }
    assert_eq!(snapshot(&p), built, "outputs are what a clean build makes");
    report
}

/// Flips one byte of the index, past its header.
fn flip_index_byte(p: &Project, at_from_end: usize) {
    let (_, _, idx) = the_pack(p);
    let mut bytes = std::fs::read(&idx).unwrap();
    let n = bytes.len();
    bytes[n - at_from_end] ^= 0x10;
    std::fs::write(&idx, bytes).unwrap();
}

const ALL: [&str; 3] = ["text", "tool", "noise"];

/// The targets whose entries name blob `d` (an output, or the entry's
/// inputs summary).
fn owners(p: &Project, d: &Digest) -> Vec<&'static str> {
    let depot = Depot::open_existing(&p.depot).unwrap();
    depot
        .list_entries()
        .unwrap()
        .iter()
        .map(|k| depot.read_entry(k).unwrap().unwrap())
        .filter(|e| e.blobs().contains(d))
        .map(|e| *ALL.iter().find(|t| **t == e.target).unwrap())
        .collect()
}

#[test]
fn gc_salvages_every_blob_of_a_pack_whose_index_fails_its_checksum() {
    let report = salvaged(|p| {
        flip_index_byte(p, 1);
        ALL.to_vec()
    });
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["blobs"].as_u64().unwrap() >= 5, "{report}");
}

#[test]
fn gc_salvages_a_pack_whose_index_is_out_of_order() {
    let report = salvaged(|p| {
        let (_, pack, idx) = the_pack(p);
        republish(&pack, &idx, &swapped_and_resealed(&idx));
        ALL.to_vec()
    });
    assert_eq!(report["lost"], 0, "{report}");
}

#[test]
fn gc_salvages_a_truncated_pack_but_the_blob_it_cut_rebuilds() {
    let report = salvaged(|p| {
        // Cut inside the pack's last blob: only its target loses a blob.
        let (id, pack, idx) = the_pack(p);
        let entries = decode_index(&std::fs::read(&idx).unwrap(), Some(&id)).unwrap();
        let last = entries.iter().max_by_key(|e| e.offset).unwrap();
        let f = std::fs::File::options().write(true).open(&pack).unwrap();
        f.set_len(last.offset + last.length / 2).unwrap();
        let cut = owners(p, &last.digest);
        ALL.into_iter().filter(|t| !cut.contains(t)).collect()
    });
    assert_eq!(report["lost"], 1, "{report}");
    assert_eq!(report["entries"], 1, "its entry is quarantined: {report}");
}

#[test]
fn gc_salvages_nothing_from_an_index_pointing_past_the_end_and_every_target_rebuilds() {
    let report = salvaged(|p| {
        point_past_the_end(p);
        vec![]
    });
    assert_eq!(report["blobs"], 0, "{report}");
    assert_eq!(report["entries"], 3, "{report}");
}

#[test]
fn gc_never_salvages_a_blob_whose_bytes_are_not_its_name() {
    // The index is damaged and one blob inside the pack too: salvage keeps
    // the sound blobs and drops that one, whose target rebuilds.
    let report = salvaged(|p| {
        flip_packed_noise(p);
        flip_index_byte(p, 1);
        vec!["text", "tool"]
    });
    assert_eq!(report["lost"], 1, "{report}");
    assert_eq!(report["entries"], 1, "{report}");
}

#[test]
fn gc_salvages_the_entries_a_truncated_index_still_holds() {
    // Cutting 100 bytes takes the checksum and the last two entries: their
    // blobs are not even named any more, so salvage cannot copy them, and
    // the entries needing them go to quarantine/ by their missing blobs.
    let report = salvaged(|p| {
        let (id, _, idx) = the_pack(p);
        let bytes = std::fs::read(&idx).unwrap();
        let entries = decode_index(&bytes, Some(&id)).unwrap();
        std::fs::write(&idx, &bytes[..bytes.len() - 100]).unwrap();
        let cut: Vec<&str> = entries[entries.len() - 2..]
            .iter()
            .flat_map(|e| owners(p, &e.digest))
            .collect();
        ALL.into_iter().filter(|t| !cut.contains(t)).collect()
    });
    assert!(report["entries"].as_u64().unwrap() >= 1, "{report}");
}
