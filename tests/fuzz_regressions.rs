//! Every committed fuzz input — the seed corpus (`fuzz/corpus/<target>/`)
//! and each crash a fuzzer found (`fuzz/regressions/<target>/`, named for
//! what broke) — through its target's checks (`relocache::fuzzing`), under
//! plain `cargo test`, without nightly or libFuzzer.

use std::path::{Path, PathBuf};

/// The inputs of `target`: its corpus and its regressions, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, naming the input that fails.
fn run_all(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no committed input for fuzz target `{target}` (fuzz/corpus/{target}/ is missing)"
    );
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "fuzz input {} fails its checks",
            f.display()
        );
    }
}

#[test]
fn manifest_inputs_pass() {
    run_all("manifest", relocache::fuzzing::manifest);
}

#[test]
fn entry_inputs_pass() {
    run_all("entry", relocache::fuzzing::entry);
}

#[test]
fn archive_member_inputs_pass() {
    run_all("archive_member", relocache::fuzzing::archive_member);
}

#[test]
fn unpack_inputs_pass() {
    run_all("unpack", relocache::fuzzing::unpack);
}

#[test]
fn hash_glob_inputs_pass() {
    run_all("hash_glob", relocache::fuzzing::hash_glob);
}

#[test]
fn depfile_inputs_pass() {
    run_all("depfile", relocache::fuzzing::depfile);
}
