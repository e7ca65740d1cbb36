//! Damaged depot records: an entry, project record, usage line or DEPOT.toml
//! whose bytes changed is never trusted, and a hit always leaves every
//! declared output in place with the bytes and modes a clean build makes.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Where this relocache keeps its entries inside a depot.
const ENTRIES: &str = "entries-v1";

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
    assert!(r.stderr.contains("out/gen.txt"), "{}", r.stderr);
    assert_eq!(p.read("out/gen.txt"), "#!/bin/sh\necho generated\n");
    assert_eq!(p.read("use.txt"), "#!/bin/sh\necho generated\ndata\n");
    // The rebuild stored a sound entry again.
    assert_eq!(p.build(&[]).ok().outcome("gen"), "hit");
}

