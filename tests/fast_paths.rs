//! Fast paths never change results: reflink and copy restores give identical
//! bytes, and a no-op build leaves correct outputs untouched.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

fn noise(len: usize) -> String {
    let mut x = 88172645463325252u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

const MANIFEST: &str = "[target.t]\nrun = 'mkdir -p out && cp random.txt out/random.txt && cat text.txt text.txt > out/text.txt && chmod +x out/text.txt'\ninputs = ['*.txt']\noutputs = ['out']\n";

#[test]
fn reflink_and_copy_restores_give_identical_bytes() {
    let random = noise(300_000); // incompressible enough to be stored raw
    let text = "compressible line\n".repeat(10_000);
    let p = Project::new(MANIFEST, &[("random.txt", &random), ("text.txt", &text)]);
    p.build(&[]).ok();
    let want_random = std::fs::read(p.path("out/random.txt")).unwrap();
    let want_text = std::fs::read(p.path("out/text.txt")).unwrap();
    for mode in ["auto", "copy"] {
        std::fs::remove_dir_all(p.path("out")).unwrap();
        let mut c = p.cmd(&["build", "--json"]);
        c.env("RELOCACHE_RESTORE", mode);
        let r = output(c);
        assert_eq!(r.outcome("t"), "hit", "{mode}: {}", r.stderr);
        assert_eq!(
            std::fs::read(p.path("out/random.txt")).unwrap(),
            want_random,
            "{mode}"
        );
        assert_eq!(
            std::fs::read(p.path("out/text.txt")).unwrap(),
            want_text,
            "{mode}"
        );
        let md = std::fs::metadata(p.path("out/text.txt")).unwrap();
        assert!(
            md.mode() & 0o111 != 0,
            "{mode}: the executable bit is restored"
        );
        assert_eq!(md.nlink(), 1, "{mode}: never a hard link");
    }
}

#[test]
fn a_no_op_build_leaves_correct_outputs_untouched() {
    let p = Project::new(
        MANIFEST,
        &[("random.txt", &noise(5000)), ("text.txt", "x\n")],
    );
    p.build(&[]).ok();
    let before: Vec<(u64, i64, i64)> = ["out/random.txt", "out/text.txt"]
        .iter()
        .map(|f| {
            let md = std::fs::metadata(p.path(f)).unwrap();
            (md.ino(), md.mtime(), md.mtime_nsec())
        })
        .collect();
    for _ in 0..2 {
        assert_eq!(p.build(&[]).outcome("t"), "hit");
    }
    let after: Vec<(u64, i64, i64)> = ["out/random.txt", "out/text.txt"]
        .iter()
        .map(|f| {
            let md = std::fs::metadata(p.path(f)).unwrap();
            (md.ino(), md.mtime(), md.mtime_nsec())
        })
        .collect();
    assert_eq!(
        before, after,
        "outputs with the right content are never rewritten"
    );
}
