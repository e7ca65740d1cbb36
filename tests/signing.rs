//! Signed entries (issue 20): with a signing key, uploads carry a keyed
//! blake3 MAC and only entries signed with that key are restored; archives
//! carry signatures and `unpack --require-signed` refuses any without.
//! Against a real S3 server (`s3s-fs`) on 127.0.0.1, as in tests/remote.rs:
//! two projects in two temp dirs with two depots stand for two machines.

mod common;
#[path = "support/servers.rs"]
mod servers;

use common::*;
use relocache::digest::Digest;
use servers::S3;

const KEY: &str = "team-signing-key-0123456789abcdef";
const OTHER_KEY: &str = "someone-elses-key-0123456789abcdef";

/// `relocache ARGS` in `p` with the server's environment, the signing key
/// `key` (none: the variable removed, whatever the test runner has) and
/// `extra`.
fn run_with(p: &Project, s3: &S3, key: Option<&str>, extra: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = p.cmd(args);
    c.env_remove("RELOCACHE_SIGNING_KEY");
    for (k, v) in s3.env() {
        c.env(k, v);
    }
    if let Some(key) = key {
        c.env("RELOCACHE_SIGNING_KEY", key);
    }
    for (k, v) in extra {
        c.env(k, v);
    }
    output(c)
}

fn build(p: &Project, s3: &S3, key: Option<&str>) -> Run {
    run_with(p, s3, key, &[], &["build", "--json", "-j", "1"])
}

fn stat(p: &Project, name: &str) -> u64 {
    p.run(&["stats", "--json"]).json()[name]
        .as_u64()
        .unwrap_or(0)
}

fn outcomes_are(r: &Run, want: &str) {
    r.ok();
    let got: Vec<String> = r.outcomes().into_iter().map(|(_, o)| o).collect();
    assert_eq!(got, [want, want, want], "stderr:\n{}", r.stderr);
}

fn outputs_are_right(p: &Project) {
    assert_eq!(p.read("out/a.txt"), "alpha\n");
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");
    assert_eq!(p.read("out-c.txt"), "gamma\n");
}

fn entry_object(s3: &S3, key_hex: &str) -> std::path::PathBuf {
    s3.data()
        .join(&s3.bucket)
        .join("ci/relocache/v1/entries")
        .join(key_hex)
}

#[test]
fn a_signed_upload_hits_on_another_machine_with_the_key_and_without_one() {
    let s3 = S3::start();
    let first = chain();
    let r = build(&first, &s3, Some(KEY));
    outcomes_are(&r, "built");
    let objects = s3.objects();
    let signatures: Vec<_> = objects
        .iter()
        .filter(|o| o.starts_with("signatures/"))
        .collect();
    assert_eq!(signatures.len(), 3, "{objects:?}");
    for s in &signatures {
        let text =
            std::fs::read_to_string(s3.data().join(&s3.bucket).join("ci/relocache/v1").join(s))
                .unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline: {text:?}");
        assert!(!text.contains(KEY));
    }

    let second = chain();
    let r = build(&second, &s3, Some(KEY));
    outcomes_are(&r, "hit");
    r.assert_stderr_lacks(&["warning"]);
    assert_eq!(second.total_runs(), 0);
    outputs_are_right(&second);
    check_depot_invariants(&second.depot);
    assert_eq!(stat(&second, "remote_hits"), 3);

    // Signing off: signed entries read as before.
    let third = chain();
    let r = build(&third, &s3, None);
    outcomes_are(&r, "hit");
    outputs_are_right(&third);

    // remote check names where the key came from, never the key.
    let check = run_with(&second, &s3, Some(KEY), &[], &["remote", "check"]);
    assert_eq!(check.code, 0, "{}", check.render());
    check.assert_stdout_has(&["signing      on (key from RELOCACHE_SIGNING_KEY)"]);
    assert!(!check.stdout.contains(KEY) && !check.stderr.contains(KEY));
    let json = run_with(&second, &s3, Some(KEY), &[], &["remote", "check", "--json"]);
    assert_eq!(json.json()["signing"]["var"], "RELOCACHE_SIGNING_KEY");
    assert!(!json.stdout.contains(KEY));
    let off = run_with(&second, &s3, None, &[], &["remote", "check"]);
    off.assert_stdout_has(&["signing      off (set RELOCACHE_SIGNING_KEY"]);
}

#[test]
fn without_a_key_nothing_is_signed_and_a_forged_entry_is_restored_as_before() {
    // The threat itself, and that signing off changes nothing: whoever can
    // write the bucket decides what a machine without the key restores.
    let s3 = S3::start();
    let first = chain();
    outcomes_are(&build(&first, &s3, None), "built");
    assert!(
        !s3.objects().iter().any(|o| o.starts_with("signatures/")),
        "{:?}",
        s3.objects()
    );
    forge_c(&first, &s3);
    let victim = chain();
    outcomes_are(&build(&victim, &s3, None), "hit");
    assert_eq!(
        victim.read("out-c.txt"),
        "alpha\n",
        "the forged entry was restored"
    );
}

/// Rewrites c's entry in the bucket the way someone with write access but
/// without the key would: its output now names the blob of `alpha\n` (the
/// same size as `gamma\n`), resealed so that it parses as a sound entry.
fn forge_c(p: &Project, s3: &S3) {
    let c_key = p.run(&["key", "c"]).stdout.trim().to_owned();
    let object = entry_object(s3, &c_key);
    let text = std::fs::read_to_string(&object).unwrap();
    let (gamma, alpha) = (
        Digest::of(b"gamma\n").to_hex(),
        Digest::of(b"alpha\n").to_hex(),
    );
    assert!(text.contains(&gamma), "{text}");
    let body = relocache::depot::checksum::open(&text).unwrap();
    let forged = relocache::depot::checksum::seal(&body.replace(&gamma, &alpha));
    relocache::depot::entries::parse_entry(&forged).expect("the forgery parses");
    std::fs::write(&object, forged).unwrap();
}

#[test]
fn a_tampered_entry_is_a_bad_signature_miss_rebuilt_right_and_healed() {
    let s3 = S3::start();
    let first = chain();
    outcomes_are(&build(&first, &s3, Some(KEY)), "built");
    forge_c(&first, &s3);

    let second = chain();
    let r = build(&second, &s3, Some(KEY));
    r.ok();
    assert_eq!(r.outcome("a"), "hit");
    assert_eq!(r.outcome("b"), "hit");
    assert_eq!(r.outcome("c"), "built", "{}", r.stderr);
    assert_eq!(second.read("out-c.txt"), "gamma\n");
    assert_eq!(r.json()["remote_bad_signature"], 1);
    assert_eq!(
        r.stderr.matches("warning:").count(),
        1,
        "one warning for the build:\n{}",
        r.stderr
    );
    r.assert_stderr_has(&[
        "1 remote entry had a wrong signature and was not used (`c`)",
        "help: ",
    ]);
    assert_eq!(stat(&second, "remote_bad_signature"), 1);
    let text = second.run(&["stats"]).stdout;
    assert!(
        text.contains("0 corrupt, 0 unsigned, 1 bad signature;"),
        "{text}"
    );
    // The forgery never entered the depot: only the rebuilt entry did.
    check_depot_invariants(&second.depot);
    std::fs::remove_file(second.path("out-c.txt")).unwrap();
    let again = second.build(&["c"]);
    again.ok();
    assert_eq!(again.outcome("c"), "hit");
    assert_eq!(second.read("out-c.txt"), "gamma\n");

    // The rebuild uploaded its own entry and signature over the forgery.
    let third = chain();
    let r = build(&third, &s3, Some(KEY));
    outcomes_are(&r, "hit");
    outputs_are_right(&third);
}

#[test]
fn entries_uploaded_without_the_key_are_unsigned_misses_then_replaced() {
    let s3 = S3::start();
    outcomes_are(&build(&chain(), &s3, None), "built");

    let second = chain();
    let r = build(&second, &s3, Some(KEY));
    outcomes_are(&r, "built");
    outputs_are_right(&second);
    assert_eq!(r.json()["remote_unsigned"], 3);
    assert_eq!(r.stderr.matches("warning:").count(), 1, "{}", r.stderr);
    r.assert_stderr_has(&["3 remote entries had no signature and were not used (`a`, `b`, `c`)"]);
    assert_eq!(stat(&second, "remote_unsigned"), 3);
    assert_eq!(second.entries(), 3, "only the rebuilt entries");

    let third = chain();
    outcomes_are(&build(&third, &s3, Some(KEY)), "hit");
}

#[test]
fn entries_signed_with_another_key_are_bad_signature_misses() {
    let s3 = S3::start();
    outcomes_are(&build(&chain(), &s3, Some(OTHER_KEY)), "built");
    let second = chain();
    let r = build(&second, &s3, Some(KEY));
    outcomes_are(&r, "built");
    outputs_are_right(&second);
    assert_eq!(r.json()["remote_bad_signature"], 3);
    r.assert_stderr_has(&["3 remote entries had a wrong signature"]);
    assert_eq!(stat(&second, "remote_bad_signature"), 3);
}

#[test]
fn signing_key_env_names_the_variable_and_an_unset_one_is_exit_2() {
    let s3 = S3::start();
    let manifest = format!(
        "{CHAIN}\n[remote]\nurl = \"{}\"\nsigning_key_env = \"TEAM_CACHE_KEY\"\n",
        s3.url()
    );
    let p = Project::new(
        &manifest,
        &[
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    );
    let r = run_with(&p, &s3, Some(KEY), &[], &["build"]);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["TEAM_CACHE_KEY", "is not set"]);
    assert_eq!(p.total_runs(), 0);

    // The named variable wins over RELOCACHE_SIGNING_KEY.
    let named = [("TEAM_CACHE_KEY", KEY)];
    let check = run_with(&p, &s3, Some(OTHER_KEY), &named, &["remote", "check"]);
    assert_eq!(check.code, 0, "{}", check.render());
    check.assert_stdout_has(&[
        "signing      on (key from TEAM_CACHE_KEY (named by [remote] signing_key_env))",
    ]);
    outcomes_are(
        &run_with(&p, &s3, Some(OTHER_KEY), &named, &["build", "--json"]),
        "built",
    );
    // Signed with KEY, not OTHER_KEY: a machine with KEY hits.
    outcomes_are(&build(&chain(), &s3, Some(KEY)), "hit");

    let bad = Project::new(
        &manifest.replace("TEAM_CACHE_KEY", "not a name"),
        &[("a.txt", "alpha\n")],
    );
    let r = bad.run(&["build"]);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["relocache.toml:", "is not an environment variable name"]);
}

// ------------------------------------------------------------- archives

/// `relocache ARGS` in `p` against depot `depot`, with signing key `key`.
fn archive_cmd(p: &Project, depot: &std::path::Path, key: Option<&str>, args: &[&str]) -> Run {
    let mut c = bin();
    c.env_remove("RELOCACHE_SIGNING_KEY");
    if let Some(key) = key {
        c.env("RELOCACHE_SIGNING_KEY", key);
    }
    c.arg("-C")
        .arg(&p.root)
        .arg("--depot")
        .arg(depot)
        .args(args);
    output(c)
}

#[test]
fn pack_signs_with_the_key_and_unpack_require_signed_accepts_or_refuses_whole() {
    let p = chain();
    p.build(&[]).ok();
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("signed.tar.zst");
    let plain = dir.path().join("plain.tar.zst");
    let r = archive_cmd(&p, &p.depot, Some(KEY), &["pack", signed.to_str().unwrap()]);
    r.ok();
    r.assert_stderr_has(&["signed with the key from RELOCACHE_SIGNING_KEY"]);
    archive_cmd(&p, &p.depot, None, &["pack", plain.to_str().unwrap()]).ok();
    let listing = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(&signed)
        .output()
        .expect("tar runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.starts_with("signatures-v1/") && l.ends_with(".mac"))
            .count(),
        3,
        "{listing}"
    );

    let unpack = |depot: &std::path::Path, key: Option<&str>, archive: &std::path::Path| {
        archive_cmd(
            &p,
            depot,
            key,
            &[
                "unpack",
                archive.to_str().unwrap(),
                "--require-signed",
                "--json",
            ],
        )
    };
    let entries_in = |depot: &std::path::Path| {
        walkdir::WalkDir::new(depot.join("entries-v2"))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .count()
    };

    // The right key: accepted whole.
    let good = dir.path().join("good-depot");
    let r = unpack(&good, Some(KEY), &signed);
    r.ok();
    assert_eq!(r.json()["entries_added"].as_array().unwrap().len(), 3);
    assert_eq!(entries_in(&good), 3);

    // Another key: refused, exit 1, naming the first entry, nothing published.
    let wrong = dir.path().join("wrong-depot");
    let r = unpack(&wrong, Some(OTHER_KEY), &signed);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&[
        "archive member `entries-v2/",
        "is not signed with this signing key",
        "nothing was published",
    ]);
    assert_eq!(entries_in(&wrong), 0);

    // An unsigned archive: refused the same way.
    let unsigned = dir.path().join("unsigned-depot");
    let r = unpack(&unsigned, Some(KEY), &plain);
    assert_eq!(r.code, 1, "{}", r.render());
    r.assert_stderr_has(&["has no signature (--require-signed)"]);
    assert_eq!(entries_in(&unsigned), 0);

    // --require-signed without a key is a usage error.
    let r = unpack(&unsigned, None, &signed);
    assert_eq!(r.code, 2, "{}", r.render());
    r.assert_stderr_has(&["--require-signed needs the signing key"]);

    // Without --require-signed both unpack as before.
    let any = dir.path().join("any-depot");
    for a in [&signed, &plain] {
        archive_cmd(&p, &any, None, &["unpack", a.to_str().unwrap()]).ok();
    }
    assert_eq!(entries_in(&any), 3);
}

// ------------------------------------------------------------- depfiles

/// A target whose depfile lists a header: looked up on the remote through
/// its variants record (unsigned), then its entry (signed).
const DEPFILE: &str = r#"
[target.gen]
run = "echo gen >> ../runs.log && mkdir -p build && cat src/x.in src/inc.h > build/x.out && printf 'build/x.out: src/x.in src/inc.h\n' > build/x.d"
inputs = ["src/x.in"]
depfile = "build/x.d"
outputs = ["build/x.out"]
"#;

fn depfile_project() -> Project {
    Project::new(DEPFILE, &[("src/x.in", "x\n"), ("src/inc.h", "h1\n")])
}

#[test]
fn a_depfile_target_hits_through_the_variants_record_only_when_its_entry_is_signed() {
    let s3 = S3::start();
    let first = depfile_project();
    let r = build(&first, &s3, None);
    r.ok();
    assert_eq!(r.outcome("gen"), "built", "{}", r.stderr);
    assert!(
        s3.objects().iter().any(|o| o.starts_with("variants/")),
        "{:?}",
        s3.objects()
    );

    // Uploaded without the key: the record leads to an unsigned entry.
    let second = depfile_project();
    let r = build(&second, &s3, Some(KEY));
    r.ok();
    assert_eq!(r.outcome("gen"), "built", "{}", r.stderr);
    assert_eq!(r.json()["remote_unsigned"], 1);
    assert_eq!(second.read("build/x.out"), "x\nh1\n");

    // Its upload signed the entry: now a machine with the key hits.
    let third = depfile_project();
    let r = build(&third, &s3, Some(KEY));
    r.ok();
    assert_eq!(r.outcome("gen"), "hit", "{}", r.stderr);
    r.assert_stderr_lacks(&["warning"]);
    assert_eq!(third.read("build/x.out"), "x\nh1\n");
    assert_eq!(third.total_runs(), 0);
}
