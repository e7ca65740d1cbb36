//! What enters a key, driven through the real binary: text that spells a
//! root marker literally, and tools behind launchers and shims.

mod common;

use common::*;

const ECHO_V: &str =
    "[target.t]\nrun = \"echo \\\"$V\\\" > out\"\nenv = [\"V\"]\noutputs = [\"out\"]\n";

fn build_with_v(p: &Project, v: &str) -> Run {
    let mut c = p.cmd(&["build", "--json"]);
    c.env("V", v);
    let r = output(c);
    r.ok();
    r
}

#[test]
fn a_literal_project_marker_in_env_does_not_hit_the_real_root() {
    let p = Project::new(ECHO_V, &[]);
    assert_eq!(build_with_v(&p, "@project/x").outcome("t"), "built");
    assert_eq!(p.read("out"), "@project/x\n");
    let real = format!("{}/x", p.root.display());
    let r = build_with_v(&p, &real);
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), format!("{real}\n"));
    // And back: the literal value hits its own entry, not the root's.
    assert_eq!(build_with_v(&p, "@project/x").outcome("t"), "hit");
    assert_eq!(p.read("out"), "@project/x\n");
}

#[test]
fn a_literal_depot_marker_in_env_does_not_hit_the_real_depot() {
    let p = Project::new(ECHO_V, &[]);
    assert_eq!(build_with_v(&p, "@depot/x").outcome("t"), "built");
    let real = format!("{}/x", p.depot.display());
    let r = build_with_v(&p, &real);
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), format!("{real}\n"));
}

#[test]
fn a_command_spelling_out_the_root_does_not_hit_the_literal_marker() {
    let p = Project::new(
        "[target.t]\nrun = \"echo @project/y > out\"\noutputs = [\"out\"]\n",
        &[],
    );
    assert_eq!(p.build(&[]).ok().outcome("t"), "built");
    assert_eq!(p.read("out"), "@project/y\n");
    let real = format!("{}/y", p.root.display());
    p.write(
        "relocache.toml",
        &format!("[target.t]\nrun = \"echo {real} > out\"\noutputs = [\"out\"]\n"),
    );
    let r = p.build(&[]);
    r.ok();
    assert_eq!(r.outcome("t"), "built", "{}", r.stderr);
    assert_eq!(p.read("out"), format!("{real}\n"));
}

#[test]
fn explain_shows_a_literal_marker_escaped_and_the_root_as_a_marker() {
    let p = Project::new(ECHO_V, &[]);
    build_with_v(&p, "@project/x");
    let mut c = p.cmd(&["explain", "t", "--show-values"]);
    c.env("V", format!("{}/x", p.root.display()));
    let r = output(c);
    assert!(
        r.stdout
            .contains("env changed: V (@@project/x -> @project/x)"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}
