//! Outputs come back with exactly the permission bits the clean build left:
//! a `0600` secret stays `0600`, a `0700` directory stays `0700`, whatever
//! the restoring process's umask, on every restore path.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// Under `umask 077`: private files and directories, plus a public
/// directory, an executable `0750`, and a read-only `0555` directory.
const MANIFEST: &str = r#"[target.t]
run = "umask 077; mkdir -p out/priv out/shared out/ro && cp random.txt out/priv/secret.bin && echo key > out/key.pem && cp random.txt out/shared/blob.bin && chmod 644 out/shared/blob.bin && chmod 755 out/shared && printf '#!/bin/sh\necho ok\n' > out/tool && chmod 750 out/tool && echo r > out/ro/r && chmod 555 out/ro"
inputs = ["random.txt"]
outputs = ["out"]
"#;

fn project() -> Project {
    let p = Project::new(MANIFEST, &[]);
    // Incompressible: stored raw, so hard links and reflinks are possible.
    std::fs::write(p.path("random.txt"), noise(200_000, 3)).unwrap();
    p
}

/// Path → permission bits of everything below `out`, and `out` itself.
fn modes(p: &Project) -> BTreeMap<String, u32> {
    walkdir::WalkDir::new(p.path("out"))
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e.path().strip_prefix(&p.root).unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            (rel.display().to_string(), mode)
        })
        .collect()
}

/// Removes `out`, read-only directories included.
fn remove_out(p: &Project) {
    if p.path("out/ro").is_dir() {
        std::fs::set_permissions(p.path("out/ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::remove_dir_all(p.path("out")).unwrap();
}

/// `relocache ARGS` against `depot`, run under `umask`.
fn under_umask(p: &Project, depot: &Path, umask: &str, args: &[&str]) -> Command {
    let mut c = without_relocache_env(Command::new("sh"));
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_relocache"))
        .arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(depot)
        .args(args);
    c
}

fn expected() -> BTreeMap<String, u32> {
    [
        ("out", 0o700),
        ("out/key.pem", 0o600),
        ("out/priv", 0o700),
        ("out/priv/secret.bin", 0o600),
        ("out/ro", 0o555),
        ("out/ro/r", 0o600),
        ("out/shared", 0o755),
        ("out/shared/blob.bin", 0o644),
        ("out/tool", 0o750),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m))
    .collect()
}

#[test]
fn outputs_are_restored_with_their_exact_modes_on_every_path_and_umask() {
    let p = project();
    output(under_umask(&p, &p.depot, "022", &["build", "--json"])).ok();
    let clean = modes(&p);
    assert_eq!(clean, expected(), "the clean build");
    for restore in ["reflink", "copy", "hardlink"] {
        for umask in ["022", "077", "002"] {
            remove_out(&p);
            let mut c = under_umask(&p, &p.depot, umask, &["build", "--json"]);
            c.env("RELOCACHE_RESTORE", restore);
            let r = output(c);
            assert_eq!(r.outcome("t"), "hit", "{restore} {umask}: {}", r.stderr);
            assert_eq!(modes(&p), clean, "{restore}, umask {umask}");
            assert_eq!(p.read("out/key.pem"), "key\n");
            let secret = std::fs::metadata(p.path("out/priv/secret.bin")).unwrap();
            assert_eq!(
                std::os::unix::fs::MetadataExt::nlink(&secret),
                1,
                "{restore}: never linked to a blob file of another mode"
            );
        }
    }
}

#[test]
fn existing_outputs_with_other_modes_are_corrected() {
    let p = project();
    p.build(&[]).ok();
    let clean = modes(&p);
    // Same content, other modes: a hit puts the recorded ones back.
    for (path, mode) in [
        ("out", 0o755),
        ("out/priv", 0o755),
        ("out/priv/secret.bin", 0o644),
        ("out/key.pem", 0o4600),
        ("out/ro", 0o777),
        ("out/tool", 0o755),
    ] {
        std::fs::set_permissions(p.path(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    assert_eq!(p.build(&[]).outcome("t"), "hit");
    assert_eq!(modes(&p), clean);
    remove_out(&p);
}

#[test]
fn modes_travel_through_pack_and_unpack() {
    let p = project();
    output(under_umask(&p, &p.depot, "022", &["build", "--json"])).ok();
    let clean = modes(&p);
    let archive = p.tmp.path().join("a.tar.zst");
    p.run(&["pack", archive.to_str().unwrap()]).ok();
    let fresh = p.tmp.path().join("fresh");
    output(under_umask(
        &p,
        &fresh,
        "022",
        &["unpack", archive.to_str().unwrap()],
    ))
    .ok();
    for restore in ["copy", "hardlink"] {
        remove_out(&p);
        let mut c = under_umask(&p, &fresh, "022", &["build", "--json"]);
        c.env("RELOCACHE_RESTORE", restore);
        let r = output(c);
        assert_eq!(r.outcome("t"), "hit", "{restore}: {}", r.stderr);
        assert_eq!(modes(&p), clean, "{restore}");
    }
    remove_out(&p);
}

#[test]
fn a_mode_change_alone_reaches_the_dependents_key() {
    let p = Project::new(
        r#"[target.gen]
run = "cp a g && chmod $M g"
env = ["M"]
inputs = ["a"]
outputs = ["g"]
[target.use]
run = "echo use >> ../runs.log; stat -c %a g > u"
deps = ["gen"]
outputs = ["u"]
"#,
        &[("a", "same bytes\n")],
    );
    let build = |m: &str| {
        let mut c = p.cmd(&["build", "--json"]);
        c.env("M", m);
        output(c)
    };
    build("644").ok();
    assert_eq!(p.read("u"), "644\n");
    let r = build("600");
    r.ok();
    assert_eq!(r.outcome("gen"), "built");
    assert_eq!(
        r.outcome("use"),
        "built",
        "same bytes, another mode: not an early cutoff"
    );
    assert_eq!(p.read("u"), "600\n");
    assert_eq!(p.runs("use"), 2);
}

/// `relocache ARGS` as a user the permission bits apply to (`nobody` when
/// the tests run as root).
fn as_user(p: &Project, args: &[&str]) -> Run {
    let mut c = if is_root() {
        for dir in [p.tmp.path(), &p.root] {
            let ok = Command::new("chmod")
                .arg("a+rwX")
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        for f in ["relocache.toml", "a"] {
            std::fs::set_permissions(p.path(f), std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        bin_as_nobody(p.tmp.path())
    } else {
        bin()
    };
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(&p.depot)
        .args(args);
    output(c)
}

#[test]
fn a_read_only_output_directory_is_rebuilt_and_restored_into() {
    let p = Project::new(
        "[target.t]\nrun = 'mkdir -p out/ro && cat a > out/ro/f && chmod 555 out/ro'\ninputs = ['a']\noutputs = ['out']\n",
        &[("a", "v1\n")],
    );
    assert_eq!(as_user(&p, &["build", "--json"]).outcome("t"), "built");
    // A miss: the stale outputs, read-only directory included, go first.
    p.write("a", "v2\n");
    let r = as_user(&p, &["build", "--json"]);
    assert_eq!(r.outcome("t"), "built", "{}", r.stdout);
    assert_eq!(p.read("out/ro/f"), "v2\n");
    // A hit restores into the read-only directory and leaves it read-only.
    p.write("a", "v1\n");
    let r = as_user(&p, &["build", "--json"]);
    assert_eq!(r.outcome("t"), "hit", "{}", r.stdout);
    assert_eq!(p.read("out/ro/f"), "v1\n");
    let md = std::fs::metadata(p.path("out/ro")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o555);
}
