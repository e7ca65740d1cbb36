//! Fast paths never change results: reflink and copy restores give identical
//! bytes, and a no-op build leaves correct outputs untouched.

mod common;

use std::io::Write;
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
    for mode in ["reflink", "copy"] {
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

/// The stored file of `content`'s blob, if stored raw.
fn raw_blob(p: &Project, content: &[u8]) -> std::path::PathBuf {
    let hex = relocache::digest::Digest::of(content).to_hex();
    p.depot.join("objects-v1").join(&hex[..2]).join(&hex)
}

#[test]
fn hard_links_are_opt_in_and_an_edit_through_one_is_caught() {
    let random = common::noise(300_000, 7); // incompressible: stored raw, can be linked
    let p = Project::new(MANIFEST, &[("text.txt", "x\n")]);
    std::fs::write(p.path("random.txt"), &random).unwrap();
    // Not `p.build`: a hard link needs a loose blob, which the packed pass
    // would move into a pack (a packed blob is copied instead, as
    // tests/packed_depot.rs checks for every restore mode).
    p.run(&["build"]).ok();
    let blob = raw_blob(&p, &random);
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open(&blob).unwrap(), &mut magic).unwrap();
    assert_ne!(magic, [0x28, 0xB5, 0x2F, 0xFD], "the blob is stored raw");

    // A typo is a usage error, before anything is built.
    let mut c = p.cmd(&["build"]);
    c.env("RELOCACHE_RESTORE", "hardlinks");
    let r = output(c);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["hardlink"]);

    std::fs::remove_dir_all(p.path("out")).unwrap();
    let mut c = p.cmd(&["build", "--json"]);
    c.env("RELOCACHE_RESTORE", "hardlink");
    let r = output(c);
    assert_eq!(r.outcome("t"), "hit", "{}", r.stderr);
    let out = std::fs::metadata(p.path("out/random.txt")).unwrap();
    assert_eq!(out.ino(), std::fs::metadata(&blob).unwrap().ino(), "linked");
    // The executable output is never linked (it would share the blob's mode).
    let text = std::fs::metadata(p.path("out/text.txt")).unwrap();
    assert_eq!(text.nlink(), 1);
    assert!(text.mode() & 0o111 != 0);

    // An edit in place goes through to the depot: verify --integrity says so.
    std::fs::OpenOptions::new()
        .append(true)
        .open(p.path("out/random.txt"))
        .unwrap()
        .write_all(b"edited in place")
        .unwrap();
    let v = p.run(&["verify", "--integrity"]);
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(
        (v.stdout.clone() + &v.stderr).contains("corrupt"),
        "{}{}",
        v.stdout,
        v.stderr
    );

    // The next build notices the output changed, finds the blob damaged,
    // quarantines it and builds again: the right bytes, no link any more.
    let r = p.build(&[]);
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(std::fs::read(p.path("out/random.txt")).unwrap(), random);
    assert_eq!(
        std::fs::metadata(p.path("out/random.txt")).unwrap().nlink(),
        1
    );
    assert!(p.run(&["verify", "--integrity"]).code == 0);
}

/// A btrfs filesystem in a loop image, mounted for one test (reflinks need a
/// filesystem that can share extents; the usual ext4 cannot).
struct LoopFs {
    _image_dir: tempfile::TempDir,
    mnt: std::path::PathBuf,
}

impl LoopFs {
    /// Mounts a fresh image, or fails the test saying why: a test that
    /// needs this is marked ignored (with its reason), and `.ci/run` runs it only where its
    /// probe could mount one. A missing mkfs.btrfs fails the test too.
    fn mount() -> LoopFs {
        assert!(
            is_root(),
            "the reflink test needs a btrfs loop mount, and mounting needs root"
        );
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("fs.img");
        let mnt = image_dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("{cmd:?}: {e} (.ci/deps installs btrfs-progs)"));
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (made, err) = run(std::process::Command::new("mkfs.btrfs")
            .arg("-q")
            .arg(&image));
        assert!(made, "mkfs.btrfs: {err}");
        let (mounted, err) = run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        assert!(
            mounted,
            "the reflink test needs a btrfs loop mount, and mount failed: {}",
            err.trim()
        );
        LoopFs {
            _image_dir: image_dir,
            mnt,
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

/// Whether every extent of `path` is shared with another file (FIEMAP, as
/// `filefrag -v` reports it).
fn shares_extents(path: &std::path::Path) -> bool {
    let out = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .expect("filefrag (e2fsprogs)");
    let text = String::from_utf8_lossy(&out.stdout);
    let extents: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(':'))
        .collect();
    assert!(!extents.is_empty(), "no extents in:\n{text}");
    extents.iter().all(|l| l.contains("shared"))
}

#[test]
#[ignore = "needs root and a btrfs loop mount; .ci/run runs it where it can mount one"]
fn raw_blobs_are_restored_as_reflinks_where_the_filesystem_can() {
    let fs = LoopFs::mount();
    let text = "compressible line\n".repeat(10_000); // stored zstd: decompressed
    let p = Project::new_in(&fs.mnt, MANIFEST, &[("text.txt", &text)]);
    let random = common::noise(2_000_000, 7); // stored raw: a reflink candidate
    std::fs::write(p.path("random.txt"), &random).unwrap();
    p.build(&[]).ok();
    let want_text = std::fs::read(p.path("out/text.txt")).unwrap();
    let mode_of = |f: &str| std::fs::metadata(p.path(f)).unwrap().mode() & 0o7777;
    let want_modes = (mode_of("out/random.txt"), mode_of("out/text.txt"));
    std::fs::remove_dir_all(p.path("out")).unwrap();
    std::process::Command::new("sync").status().unwrap();
    // Under umask 027, to see that clones get the recorded modes, as copies
    // do, not the restoring process's umask.
    let mut c = without_relocache_env(std::process::Command::new("sh"));
    c.arg("-c")
        .arg("umask 027; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_relocache"))
        .arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&p.depot)
        .args(["build", "--json"]);
    assert_eq!(output(c).outcome("t"), "hit");
    let random_out = p.path("out/random.txt");
    assert_eq!(std::fs::read(&random_out).unwrap(), random);
    assert_eq!(std::fs::read(p.path("out/text.txt")).unwrap(), want_text);
    std::process::Command::new("sync").status().unwrap();
    assert!(
        shares_extents(&random_out),
        "the raw output was cloned from the depot"
    );
    assert!(
        !shares_extents(&p.path("out/text.txt")),
        "a zstd blob is written out"
    );
    // Modes exactly as the build left them, whatever the umask.
    let md = std::fs::metadata(&random_out).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        want_modes.0,
        "mode of the cloned output"
    );
    assert_eq!(md.nlink(), 1, "a clone, never a hard link");
    let md = std::fs::metadata(p.path("out/text.txt")).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        want_modes.1,
        "mode of the written output"
    );
    assert!(md.mode() & 0o111 != 0, "the exec bit is kept");
    // An edit of the clone does not reach the depot.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&random_out)
        .unwrap()
        .write_all(b"edited in place")
        .unwrap();
    p.run(&["verify", "--integrity"]).ok();
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(std::fs::read(&random_out).unwrap(), random);
    // RELOCACHE_RESTORE=copy writes the bytes out instead.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let mut c = p.cmd(&["build", "--json"]);
    c.env("RELOCACHE_RESTORE", "copy");
    assert_eq!(output(c).outcome("t"), "hit");
    std::process::Command::new("sync").status().unwrap();
    assert_eq!(std::fs::read(&random_out).unwrap(), random);
    assert!(!shares_extents(&random_out), "copy mode does not clone");
    drop(p);
}
