//! The shared remote cache against real servers on 127.0.0.1: `s3s-fs` (S3)
//! and `redis-server`, started by each test on a free port and killed when
//! it ends. Two projects in two temp dirs with two depots stand for two
//! machines sharing one bucket.

mod common;
#[path = "support/servers.rs"]
mod servers;

use common::*;
use relocache::digest::Digest;
use servers::{Azurite, Redis, Webdav, S3};

/// `relocache ARGS` in `p` with `env` set.
fn run_env(p: &Project, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut c = p.cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    output(c)
}

fn build_env(p: &Project, env: &[(&str, String)]) -> Run {
    run_env(p, env, &["build", "--json", "-j", "1"])
}

fn stats(p: &Project) -> serde_json::Value {
    p.run(&["stats", "--json"]).json()
}

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    stats[name].as_u64().unwrap_or(0)
}

fn all_hits(r: &Run) {
    r.ok();
    assert_eq!(
        r.outcomes(),
        [
            ("a".into(), "hit".into()),
            ("b".into(), "hit".into()),
            ("c".into(), "hit".into())
        ],
        "stderr:\n{}",
        r.stderr
    );
}

fn chain_outputs_are_right(p: &Project) {
    assert_eq!(p.read("out/a.txt"), "alpha\n");
    assert_eq!(p.read("out/b.txt"), "alpha\nbeta\n");
    assert_eq!(p.read("out-c.txt"), "gamma\n");
}

/// A second machine (a fresh checkout and depot) sharing the remote: every
/// target is a remote hit, nothing runs, the outputs and depot are right,
/// and `remote check` finds the remote writable.
fn second_machine_hits_everything(env: &[(&str, String)]) -> Project {
    let second = chain();
    let r = build_env(&second, env);
    all_hits(&r);
    assert_eq!(second.total_runs(), 0);
    chain_outputs_are_right(&second);
    check_depot_invariants(&second.depot);
    assert_eq!(counter(&stats(&second), "remote_hits"), 3);
    let check = run_env(&second, env, &["remote", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    check.assert_stdout_has(&["writable     yes"]);
    second
}

const FILES: [(&str, &str); 3] = [
    ("a.txt", "alpha\n"),
    ("b.txt", "beta\n"),
    ("c.txt", "gamma\n"),
];

#[test]
fn s3_two_depots_share_one_bucket_and_the_second_runs_nothing() {
    let s3 = S3::start();
    // Configured in relocache.toml; credentials only in the environment.
    let manifest = format!(
        "{CHAIN}\n[remote]\nurl = \"{}\"\nmode = \"read-write\"\ntimeout = \"10s\"\n",
        s3.url()
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID", servers::S3_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", servers::S3_SECRET.to_owned()),
    ];
    let first = Project::new(&manifest, &FILES);
    let r = build_env(&first, &env);
    r.ok();
    assert_eq!(r.json()["built"], 3);
    let objects = s3.objects();
    assert_eq!(
        objects.iter().filter(|o| o.starts_with("entries/")).count(),
        3,
        "{objects:?}"
    );
    assert!(
        !objects.iter().any(|o| o.starts_with("probe/")),
        "{objects:?}"
    );
    r.assert_stderr_lacks(&["warning"]);

    // Another machine: another directory, another empty depot.
    let second = Project::new(&manifest, &FILES);
    let r = build_env(&second, &env);
    all_hits(&r);
    assert_eq!(second.total_runs(), 0, "the second machine runs no command");
    chain_outputs_are_right(&second);
    // The hits were copied into its depot: they now hit without the server.
    check_depot_invariants(&second.depot);
    assert_eq!(second.entries(), 3);
    drop(s3);
    std::fs::remove_dir_all(second.path("out")).unwrap();
    let r = build_env(&second, &env);
    all_hits(&r);
    r.assert_stderr_lacks(&["remote"]);

    let s = stats(&second);
    assert_eq!(counter(&s, "remote_hits"), 3, "{s}");
    assert!(counter(&s, "remote_bytes_down") > 0, "{s}");
    let s = stats(&first);
    assert_eq!(counter(&s, "remote_uploads"), 3, "{s}");
    assert_eq!(counter(&s, "remote_misses"), 3, "{s}");
    assert!(counter(&s, "remote_bytes_up") > 0, "{s}");
    let text = first.run(&["stats"]);
    assert!(
        text.stdout
            .contains("remote      0 hits, 3 misses, 0 errors, 0 timeouts, 0 corrupt; 3 uploads"),
        "{}",
        text.stdout
    );
}

#[test]
fn s3_a_blob_or_entry_corrupted_on_the_server_is_detected_rebuilt_and_healed() {
    let s3 = S3::start();
    let env = s3.env();
    let first = chain();
    build_env(&first, &env).ok();
    let c_key = first.run(&["key", "c"]).stdout.trim().to_owned();
    let c_entry = s3
        .data()
        .join(&s3.bucket)
        .join("ci/relocache/v1/entries")
        .join(&c_key);
    std::fs::write(&c_entry, b"schema = \"garbage\"\n").unwrap();

    // Flip the object holding out/a.txt ("alpha\n", small: stored raw).
    let hex = Digest::of(b"alpha\n").to_hex();
    let object = s3.object_file(&hex);
    assert_eq!(std::fs::read(&object).unwrap(), b"alpha\n");
    std::fs::write(&object, b"ALPHA\n").unwrap();

    let second = chain();
    let r = build_env(&second, &env);
    r.ok();
    assert_eq!(r.outcome("a"), "built", "{}", r.stderr);
    assert_eq!(second.runs("a"), 1);
    r.assert_stderr_has(&["corrupt"]);
    // a rebuilt to the same bytes, so b's key is unchanged and it still hits.
    assert_eq!(r.outcome("b"), "hit");
    // c's entry is damaged on the server: a miss, rebuilt.
    assert_eq!(r.outcome("c"), "built");
    r.assert_stderr_has(&["is damaged"]);
    chain_outputs_are_right(&second);
    check_depot_invariants(&second.depot);
    assert_eq!(counter(&stats(&second), "remote_corrupt"), 2);

    // The rebuilds uploaded good copies over the corrupt ones.
    assert_eq!(std::fs::read(&object).unwrap(), b"alpha\n");
    let healed = std::fs::read_to_string(&c_entry).unwrap();
    let healed = relocache::depot::entries::parse_entry(&healed).expect("a sound entry again");
    assert_eq!(healed.key.to_string(), c_key);
    let third = chain();
    all_hits(&build_env(&third, &env));
    assert_eq!(third.total_runs(), 0);
}

#[test]
fn s3_a_read_only_client_never_writes() {
    let s3 = S3::start();
    let env = s3.env();
    build_env(&chain(), &env).ok();
    let before = s3.files();
    let sizes = |files: &[std::path::PathBuf]| -> Vec<u64> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .collect()
    };
    let before_sizes = sizes(&before);

    let mut ro = env.clone();
    ro.push(("RELOCACHE_REMOTE_MODE", "read-only".into()));
    let laptop = chain();
    laptop.write("c.txt", "changed on a laptop\n");
    let r = build_env(&laptop, &ro);
    r.ok();
    assert_eq!(r.outcome("a"), "hit");
    assert_eq!(r.outcome("b"), "hit");
    assert_eq!(r.outcome("c"), "built");
    r.assert_stderr_lacks(&["warning"]);
    assert_eq!(s3.files(), before, "a read-only client wrote to the server");
    assert_eq!(sizes(&s3.files()), before_sizes);
    let s = stats(&laptop);
    assert_eq!(counter(&s, "remote_uploads"), 0);
    assert_eq!(counter(&s, "remote_bytes_up"), 0);
    assert_eq!(counter(&s, "remote_hits"), 2);

    let check = run_env(&laptop, &ro, &["remote", "check", "--json"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let j = check.json();
    assert_eq!(j["mode"], "read-only");
    assert_eq!(j["writable"], serde_json::Value::Null, "no write probe");
    assert_eq!(s3.files(), before, "remote check wrote in read-only mode");
}

#[test]
fn s3_a_server_stopped_mid_build_warns_and_the_local_build_is_correct() {
    let mut s3 = S3::start();
    let env = s3.env();
    // `a` stops the server while it runs: a's upload and everything after fail.
    let manifest = CHAIN.replacen(
        "run = \"echo a >> ../runs.log",
        &format!(
            "run = \"kill {} && sleep 0.3 && echo a >> ../runs.log",
            s3.server.pid()
        ),
        1,
    );
    let p = Project::new(&manifest, &FILES);
    let started = std::time::Instant::now();
    let r = build_env(&p, &env);
    s3.server.stop();
    r.ok();
    assert_eq!(r.json()["built"], 3, "{}", r.stderr);
    chain_outputs_are_right(&p);
    r.assert_stderr_has(&["warning: remote:", "disabled for the rest of this run"]);
    assert_eq!(
        r.stderr.matches("warning: remote:").count(),
        3,
        "after 3 failures the remote stays quiet:\n{}",
        r.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // Everything was stored locally and hits without the server.
    check_depot_invariants(&p.depot);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let r = p.build(&[]);
    assert_eq!(r.json()["hits"], 3);
    let s = stats(&p);
    assert_eq!(counter(&s, "remote_errors"), 3, "{s}");
}

#[test]
fn s3_remote_check_reports_reachability_credentials_and_latency() {
    let s3 = S3::start();
    let p = chain();
    let r = run_env(&p, &s3.env(), &["remote", "check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    r.assert_stdout_has(&[
        "reachable    yes",
        "credentials  yes",
        "writable     yes",
        "mode         read-write",
        "latency      ",
    ]);
    assert!(s3.objects().is_empty(), "the probe object was deleted");

    let mut wrong = s3.env();
    wrong.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()));
    let r = run_env(&p, &wrong, &["remote", "check", "--json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["reachable"], true);
    assert_eq!(j["credentials"], false);
    assert!(
        j["problems"][0]
            .as_str()
            .unwrap()
            .contains("AWS_SECRET_ACCESS_KEY"),
        "{j}"
    );
    assert!(!r.stdout.contains("not-the-secret") && !r.stderr.contains("not-the-secret"));

    let port = servers::free_port();
    let mut gone = s3.env();
    gone.retain(|(k, _)| *k != "RELOCACHE_REMOTE");
    gone.push((
        "RELOCACHE_REMOTE",
        format!("s3://b/p?endpoint=http://127.0.0.1:{port}"),
    ));
    let r = run_env(&p, &gone, &["remote", "check"]);
    assert_eq!(r.code, 1);
    r.assert_stdout_has(&["reachable    no"]);
    r.assert_stderr_has(&["cannot be reached"]);
}

#[test]
fn redis_two_depots_share_one_server() {
    let redis = Redis::start();
    let env = vec![("RELOCACHE_REMOTE", redis.url())];
    let first = chain();
    build_env(&first, &env).ok();
    let keys = redis.keys();
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("relocache/v1/entries/"))
            .count(),
        3,
        "{keys:?}"
    );
    second_machine_hits_everything(&env);
    // Nothing new to upload: the keys are unchanged.
    assert_eq!(redis.keys(), keys);
}

#[test]
fn redis_a_user_who_may_not_write_falls_back_to_read_only_and_its_password_never_shows() {
    let redis = Redis::start();
    build_env(&chain(), &[("RELOCACHE_REMOTE", redis.url())]).ok();
    let keys = redis.keys();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">s3cr3t-pw",
        "~*",
        "+@all",
        "-@write",
    ]);
    let env = vec![(
        "RELOCACHE_REMOTE",
        format!("redis://reader:s3cr3t-pw@127.0.0.1:{}/0", redis.server.port),
    )];
    let p = chain();
    p.write("c.txt", "a change only this machine has\n");
    let r = build_env(&p, &env);
    r.ok();
    assert_eq!(r.outcome("a"), "hit");
    assert_eq!(r.outcome("c"), "built");
    assert!(
        r.stderr
            .contains("using it read-only for the rest of this run"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.matches("read-only").count(), 1, "said once");
    assert_eq!(redis.keys(), keys);

    let check = run_env(&p, &env, &["remote", "check"]);
    assert_eq!(check.code, 1, "read-write was asked for but writes fail");
    check.assert_stdout_has(&["writable     no", "redis://reader:***@127.0.0.1"]);
    for out in [&r.stdout, &r.stderr, &check.stdout, &check.stderr] {
        assert!(!out.contains("s3cr3t-pw"), "password leaked:\n{out}");
    }
    for f in walkdir::WalkDir::new(&p.depot)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
    {
        let bytes = std::fs::read(f.path()).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"s3cr3t-pw"),
            "password in {}",
            f.path().display()
        );
    }
}

#[test]
fn webdav_two_depots_share_one_nginx_server_and_a_wrong_password_is_named() {
    let dav = Webdav::start();
    let env = vec![("RELOCACHE_REMOTE", dav.url(servers::DAV_PW))];
    let first = chain();
    build_env(&first, &env).ok();
    let objects = dav.objects();
    assert_eq!(
        objects.iter().filter(|o| o.starts_with("entries/")).count(),
        3,
        "{objects:?}"
    );
    let second = second_machine_hits_everything(&env);

    // A wrong password is a refused login, not an unreachable server, and
    // the build goes on locally.
    let wrong = vec![("RELOCACHE_REMOTE", dav.url("not-the-password"))];
    let check = run_env(&second, &wrong, &["remote", "check"]);
    assert_eq!(check.code, 1);
    check.assert_stdout_has(&["reachable    yes", "credentials  no"]);
    check.assert_stderr_has(&["refused to read", "HTTP 401"]);
    check.assert_stderr_lacks(&["<html>"]);
    let third = chain();
    let r = build_env(&third, &wrong);
    r.ok();
    assert_eq!(r.json()["built"], 3);
    r.assert_stderr_has(&["HTTP 401"]);
    chain_outputs_are_right(&third);
    for out in [&check.stdout, &check.stderr, &r.stdout, &r.stderr] {
        assert!(!out.contains("not-the-password"), "password leaked:\n{out}");
    }
    assert_eq!(dav.objects(), objects, "nothing written without a login");
}

#[test]
fn azure_two_depots_share_one_container_and_a_missing_one_is_never_written() {
    let az = Azurite::start();
    az.create_container("team");
    let env = az.env("team");
    let first = chain();
    let r = build_env(&first, &env);
    r.ok();
    assert_eq!(r.json()["built"], 3);
    assert_eq!(counter(&stats(&first), "remote_uploads"), 3, "{}", r.stderr);
    let second = second_machine_hits_everything(&env);

    // Azure answers 404 to a write into a container that does not exist:
    // a failed write, never an upload done into nothing.
    let missing = az.env("nobody-made-this");
    let check = run_env(&second, &missing, &["remote", "check"]);
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    check.assert_stdout_has(&["writable     no"]);
    check.assert_stderr_has(&["create the bucket or container"]);
    let third = chain();
    let r = build_env(&third, &missing);
    r.ok();
    assert_eq!(counter(&stats(&third), "remote_uploads"), 0, "{}", r.stderr);
    for out in [&check.stdout, &check.stderr, &r.stdout, &r.stderr] {
        assert!(!out.contains(servers::AZ_KEY), "account key leaked:\n{out}");
    }
}

#[test]
fn depot_path_depots_are_searched_before_the_remote() {
    // A remote that is down: any lookup there would warn.
    let dead = format!("redis://127.0.0.1:{}/0", servers::free_port());
    let shared = chain();
    shared.build(&[]).ok();
    let p = chain();
    let stack = format!(
        "{}:{}",
        p.tmp.path().join("fresh").display(),
        shared.depot.display()
    );
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .args(["build", "--json"])
        .env("RELOCACHE_DEPOT_PATH", &stack)
        .env("RELOCACHE_REMOTE", &dead);
    let r = output(c);
    all_hits(&r);
    r.assert_stderr_lacks(&["remote"]);

    // A miss everywhere else does ask the remote, and only warns.
    p.write("c.txt", "new\n");
    let mut c = bin();
    c.arg("-C")
        .arg(&p.root)
        .args(["build", "--json"])
        .env("RELOCACHE_DEPOT_PATH", &stack)
        .env("RELOCACHE_REMOTE", &dead);
    let r = output(c);
    r.ok();
    assert_eq!(r.outcome("c"), "built");
    r.assert_stderr_has(&["warning: remote:"]);
}

#[test]
fn remote_settings_errors_name_the_place_and_exit_2() {
    for (remote, says, at) in [
        ("url = \"ftp://x/y\"", "unknown remote scheme", "3:7"),
        (
            "url = \"s3://b/p\"\nmode = \"rw\"",
            "unknown remote mode `rw`",
            "4:8",
        ),
        (
            "url = \"s3://b/p\"\ntimeout = \"soon\"",
            "is not a duration",
            "4:11",
        ),
        (
            "url = \"s3://b/p\"\nbucket = \"b\"",
            "unknown field `bucket`",
            "4:1",
        ),
        (
            "url = \"redis://u:hunter2@h:6379/0\"",
            "holds a password",
            "3:7",
        ),
    ] {
        let p = Project::new(&format!("\n[remote]\n{remote}\n"), &[]);
        let r = p.run(&["build"]);
        assert_eq!(r.code, 2, "{remote}: {}", r.stderr);
        r.assert_stderr_has(&[says, &format!("relocache.toml:{at}")])
            .assert_stderr_lacks(&["hunter2"]);
    }

    let p = chain();
    let r = run_env(&p, &[("RELOCACHE_REMOTE", "s3://".into())], &["build"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["RELOCACHE_REMOTE"]);
    let r = run_env(
        &p,
        &[
            ("RELOCACHE_REMOTE", "redis://h:1/0".into()),
            ("RELOCACHE_REMOTE_MODE", "sometimes".into()),
        ],
        &["build"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.assert_stderr_has(&["RELOCACHE_REMOTE_MODE"]);
    let r = p.run(&["remote", "check"]);
    assert_eq!(r.code, 2);
    r.assert_stderr_has(&["no remote is configured"]);

    // `off` wins over the manifest: no lookup, no warning.
    let dead = format!("redis://127.0.0.1:{}/0", servers::free_port());
    let p = Project::new(&format!("{CHAIN}\n[remote]\nurl = \"{dead}\"\n"), &FILES);
    let r = run_env(&p, &[("RELOCACHE_REMOTE", "off".into())], &["build"]);
    r.ok();
    r.assert_stderr_lacks(&["warning"]);
}

#[test]
fn s3_a_large_output_travels_in_chunks_and_arrives_intact() {
    let s3 = S3::start();
    let env = s3.env();
    // 9 MiB of random bytes: stored raw, above the 8 MiB request size, so
    // the upload is a multi-part write and the download several ranged reads.
    let manifest = r#"
[target.big]
run = "echo big >> ../runs.log && head -c 9437184 /dev/urandom > big.bin"
outputs = ["big.bin"]
"#;
    let first = Project::new(manifest, &[]);
    build_env(&first, &env).ok();
    let original = std::fs::read(first.path("big.bin")).unwrap();
    assert_eq!(original.len(), 9 * 1024 * 1024);
    let hex = Digest::of(&original).to_hex();
    assert_eq!(std::fs::read(s3.object_file(&hex)).unwrap(), original);

    let second = Project::new(manifest, &[]);
    let r = build_env(&second, &env);
    r.ok();
    assert_eq!(r.outcome("big"), "hit", "{}", r.stderr);
    assert_eq!(second.total_runs(), 0);
    assert!(std::fs::read(second.path("big.bin")).unwrap() == original);
    check_depot_invariants(&second.depot);
}

#[test]
fn a_remote_that_never_answers_times_out_and_is_disabled_after_three_tries() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let env = vec![
        (
            "RELOCACHE_REMOTE",
            format!("s3://b/p?endpoint=http://127.0.0.1:{port}"),
        ),
        ("AWS_ACCESS_KEY_ID", "k".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "s".to_owned()),
        ("RELOCACHE_REMOTE_TIMEOUT", "300ms".to_owned()),
    ];
    let p = chain();
    let started = std::time::Instant::now();
    let r = build_env(&p, &env);
    r.ok();
    assert_eq!(r.json()["built"], 3);
    chain_outputs_are_right(&p);
    r.assert_stderr_has(&["timed out after 300ms", "disabled for the rest of this run"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a silent remote must cost a few timeouts, not one per request"
    );
    assert_eq!(counter(&stats(&p), "remote_timeouts"), 3);
}
