//! Diagnostics: `RELOCACHE_LOG` / `--log` turn on the library's `tracing`
//! spans and events on stderr; without them stderr is what it always was.

mod common;

use common::*;

/// `build --json ARGS` with `RELOCACHE_LOG=debug`.
fn build_logged(p: &Project, args: &[&str]) -> Run {
    let mut c = p.cmd(&["build", "--json"]);
    c.args(args).env("RELOCACHE_LOG", "debug");
    output(c)
}

/// The stderr lines of `target`'s span.
fn lines_of<'a>(r: &'a Run, target: &str) -> Vec<&'a str> {
    let span = format!("target{{name={target}}}");
    r.stderr.lines().filter(|l| l.contains(&span)).collect()
}

fn has(lines: &[&str], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

#[test]
fn relocache_log_debug_shows_each_target_with_its_key_and_why_it_hit_or_missed() {
    let p = chain();
    let cold = build_logged(&p, &[]);
    cold.ok();
    // stdout stays the summary alone.
    assert_eq!(cold.json()["built"], 3);
    assert!(
        cold.stderr.contains("relocache::walk: walked"),
        "{}",
        cold.stderr
    );
    for t in ["a", "b", "c"] {
        let key = p.run(&["key", t]).stdout.trim().to_owned();
        assert_eq!(key.len(), 64, "`relocache key {t}` prints a key");
        let lines = lines_of(&cold, t);
        assert!(
            has(&lines, &format!("key computed key={key}")),
            "{t}: {}",
            cold.stderr
        );
        assert!(has(&lines, "miss: no entry"), "{t}: {}", cold.stderr);
        assert!(has(&lines, "running the command"), "{t}: {}", cold.stderr);
    }
    assert!(cold.stderr.contains("store{target=a"), "{}", cold.stderr);

    let warm = build_logged(&p, &[]);
    assert_eq!(warm.json()["hits"], 3);
    for t in ["a", "b", "c"] {
        let lines = lines_of(&warm, t);
        assert!(has(&lines, "hit depot=0"), "{t}: {}", warm.stderr);
        assert!(!has(&lines, "running the command"), "{t}: {}", warm.stderr);
    }
}

#[test]
fn relocache_log_names_a_damaged_entry_as_the_reason_for_a_miss() {
    let p = chain();
    p.build(&[]).ok();
    let entry = p.run(&["path", "c"]).stdout.trim().to_owned();
    std::fs::write(&entry, "not an entry\n").unwrap();
    let r = build_logged(&p, &["c"]);
    r.ok();
    assert_eq!(r.outcome("c"), "built");
    assert!(
        has(&lines_of(&r, "c"), "miss: damaged entry"),
        "{}",
        r.stderr
    );
}

#[test]
fn without_relocache_log_stderr_holds_no_diagnostics() {
    let p = chain();
    p.build(&[]).ok();
    let quiet = p.build(&[]);
    assert!(!quiet.stderr.contains("DEBUG"), "{}", quiet.stderr);
    // The tests' helper drops a RELOCACHE_LOG the test runner may have set.
    let mut c = p.cmd(&["build", "--json"]);
    c.env("RELOCACHE_LOG", "debug");
    let r = output(without_relocache_env(c));
    assert_eq!(r.json()["hits"], 3);
    assert_eq!(r.stderr, quiet.stderr);
}

#[test]
fn the_log_flag_overrides_relocache_log_and_a_bad_filter_is_a_usage_error() {
    let p = chain();
    let mut c = p.cmd(&["--log", "relocache=off", "build", "--json"]);
    c.env("RELOCACHE_LOG", "debug");
    let r = output(c);
    r.ok();
    assert!(!r.stderr.contains("DEBUG"), "{}", r.stderr);

    let bad = p.run(&["--log", "relocache=loud", "build"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("invalid log filter"), "{}", bad.stderr);
    assert_eq!(p.total_runs(), 3, "a bad filter stops before building");
}
